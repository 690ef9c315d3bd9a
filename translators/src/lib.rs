//! Pure mappings between protocol requests and the unigate common model.
//!
//! Every protocol enters the namespace through a translator: a function from a decoded protocol
//! request to a [`unigate_pubsub::Message`] (or filter), and back. No I/O, no clock (callers
//! pass `now_ms`), no state: each is tested on its own. MQTT is the first; CoAP, LwM2M and
//! HTTP follow the same pattern.

pub mod coap;
pub mod http;
pub mod lwm2m;
pub mod mqtt;

/// Errors of a translation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TranslateError {
    /// The topic is not a valid topic name.
    #[error("invalid topic name: {0}")]
    InvalidTopic(#[from] unigate_pubsub::TopicError),
    /// The response topic is not a valid topic name (MQTT 5 §3.3.2.3.5).
    #[error("invalid response topic: {0}")]
    InvalidResponseTopic(unigate_pubsub::TopicError),
    /// The payload format indicator has a value other than 0 or 1.
    #[error("invalid payload format indicator {0}")]
    InvalidPayloadFormat(u8),
    /// The payload claims to be UTF-8 (payload format indicator 1) and is not (MQTT 5 §3.3.2.3.2).
    #[error("payload format indicator says UTF-8 but the payload is not")]
    PayloadNotUtf8,
}
