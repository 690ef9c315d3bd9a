//! MQTT connections: the sans-IO protocol side ([`protocol`]) and the socket-owning actor
//! ([`connection`]).

pub mod connection;
pub mod keepalive;
pub mod protocol;
