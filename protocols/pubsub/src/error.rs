//! Errors of the common model.
//!
//! Every variant names the MQTT 5 clause it enforces, so that an operator reading a log line (or a
//! client reading a reason string) can look the rule up. MQTT is the strictest of our protocols
//! about topics, and CoAP, LwM2M and HTTP paths are held to the same rules once translated.

/// Why a string is not a valid [`Topic`](crate::Topic) or [`TopicFilter`](crate::TopicFilter).
///
/// All variants are violations by the peer that sent the string (bad input, not a bug of ours): a
/// protocol maps them to its own refusal (MQTT 5 reason code 0x90 "Topic Name invalid" on PUBLISH,
/// 0x8F "Topic Filter invalid" on SUBSCRIBE, CoAP 4.00, HTTP 400).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum TopicError {
    /// The string is empty; topic names and filters must be at least one character long.
    #[error("[MQTT-4.7.3-1] topic names and topic filters must be at least one character long")]
    Empty,
    /// The string encodes to more than 65535 bytes of UTF-8.
    #[error("[MQTT-4.7.3-3] topic names and topic filters must not encode to more than 65535 bytes")]
    TooLong,
    /// The string contains the null character U+0000.
    #[error("[MQTT-4.7.3-2] topic names and topic filters must not include the null character U+0000")]
    ContainsNul,
    /// A topic name (as opposed to a filter) contains `+` or `#`.
    #[error("[MQTT-3.3.2-2] a topic name must not contain wildcard characters ('+' or '#')")]
    WildcardInTopic,
    /// A filter has a `#` that is not alone in the last level, or a `+` that is not alone in its
    /// level (`sport/tennis#`, `sport/#/ranking`, `sport+`).
    #[error(
        "[MQTT-4.7.1-1] '#' must be alone in the last level of a topic filter and \
         [MQTT-4.7.1-2] '+' must occupy an entire level"
    )]
    InvalidWildcard,
    /// A filter starting with `$share/` is not `$share/{ShareName}/{filter}` with a non-empty
    /// ShareName free of `/`, `+` and `#`, followed by a non-empty, valid filter.
    #[error(
        "[MQTT-4.8.2-1] a shared subscription must be $share/{{ShareName}}/{{filter}} with a \
         non-empty ShareName, [MQTT-4.8.2-2] free of '/', '+' and '#', followed by '/' and a \
         topic filter"
    )]
    InvalidShare,
}

/// A QoS number other than 0, 1 or 2.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
#[error("[MQTT-3.3.1-4] invalid QoS {0}: a QoS must be 0, 1 or 2")]
pub struct InvalidQoS(pub u8);
