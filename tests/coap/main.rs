//! Black-box tests of the CoAP gateway: Debian's libcoap client (`coap-client-openssl`) and a
//! raw UDP client against the real server, each checked from the MQTT side too (rumqttc).
//!
//! Every test starts its own server on loopback ports picked by the OS and waits for events
//! (output lines, messages, counters), bounded by `common::TIMEOUT`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../common/mod.rs"]
mod common;
mod util;

mod dtls;
mod libcoap;
mod loss;
mod raw;
