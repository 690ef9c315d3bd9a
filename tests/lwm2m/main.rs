//! Black-box tests of the LwM2M server: a simulated device (coap-lite, `device.rs`), Python's
//! aiocoap and libcoap's `coap-client-openssl` (DTLS PSK) as devices, rumqttc on the MQTT side
//! and curl on the HTTP side, against the real server on loopback ports picked by the OS.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../common/mod.rs"]
mod common;
#[path = "../coap/util.rs"]
#[allow(dead_code)]
mod util;

mod device;
mod independent;
mod server;
