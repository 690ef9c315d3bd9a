//! unigate: one server that puts MQTT, CoAP, LwM2M and HTTP clients on one pub/sub namespace.
//!
//! Layout of this crate (the runtime; protocol logic lives in the `protocols/*` crates):
//!
//! - [`config`]: the TOML configuration, environment overrides, embedded defaults.
//! - [`broker`]: the broker core — session registry, the shared subscription index, retained
//!   messages, routing. No runtime, no sockets: connections call in on their own threads.
//! - [`mqtt`]: the MQTT connection — a sans-IO protocol state machine ([`mqtt::protocol`]) and
//!   the actix actor that owns its socket ([`mqtt::connection`]).
//! - [`server`]: the actix system, worker arbiters, listeners, `$SYS` statistics, shutdown.
//! - [`bench`]: the load tool behind `unigate bench`.
//!
//! The path of a message: a connection actor reads bytes, `unigate_mqtt` decodes a packet,
//! [`mqtt::protocol::MqttConn`] translates it (`unigate_translators`) into a
//! `unigate_pubsub::Message` and calls [`broker::Broker::publish`], which finds the matching
//! sessions under one read lock and queues a delivery in each; each subscriber's actor is woken
//! and writes. See docs/architecture.md.

pub mod auth;
pub mod bench;
pub mod broker;
pub mod coap;
pub mod config;
pub mod http;
pub mod lwm2m;
pub mod mqtt;
pub mod server;
pub mod storage;
pub mod tls;
