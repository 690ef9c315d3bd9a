//! Black-box tests of the MQTT broker driven by a real client library (rumqttc): MQTT 3.1.1
//! through its v4 API, MQTT 5 through its v5 API, and both on the same topics.
//!
//! Every test starts its own server on a loopback port and waits for events (bounded by
//! `common::TIMEOUT`), never for time, except for a short quiet period where a test proves
//! that something does not arrive, and where a test needs time itself to pass (expiry, delay).
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../common/mod.rs"]
mod common;
mod util;

mod configured;
mod flow;
mod matching;
mod qos;
mod retained;
mod sessions;
mod shared;
mod sys;
mod v5_features;
mod will;
