//! Black-box tests of the HTTP listener: curl (HTTP/1.1, h2c with prior knowledge, HTTP/2 over
//! TLS by ALPN) against the real server, with an MQTT client (rumqttc) on the other side.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../common/mod.rs"]
mod common;
mod util;

mod api;
mod browser;
mod cors;
mod jsonws;
mod metrics;
mod mgmt;
mod schemathesis;
mod sse;
mod ws;
