//! Black-box MQTT wire tests: the real server on a loopback port, driven byte by byte by a raw
//! client built on the project's codec (`util`), and by independent clients — mosquitto_pub /
//! mosquitto_sub and Python paho-mqtt (`interop`).
//!
//! - `raw`: connection rules and malformed input, with exact reason codes.
//! - `flow`: topic aliases, QoS 2, Receive Maximum both ways, filter rules.
//! - `options`: subscription options, identifiers, message expiry, wills.
//! - `robust`: keep alive, CONNECT timeout, hostile peers.
//! - `interop`: other implementations against ours.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../common/mod.rs"]
mod common;

mod acl;
mod authn;
mod flow;
mod interop;
mod limits;
mod oauth2;
mod options;
mod raw;
mod robust;
mod util;
