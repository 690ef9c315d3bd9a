//! CoAP ↔ common model, compatible with EMQX's CoAP gateway (so existing firmware works).
//!
//! - `POST /ps/{topic}` (PUT too) publishes the body; `GET /ps/{filter}` with Observe 0
//!   subscribes; `GET` without Observe reads the retained message.
//! - `/mqtt/connection`: connection mode (`POST` connect, `PUT` heartbeat, `DELETE` close).
//! - Query parameters `clientid`, `username`, `password`, `token`, `qos`, `retain`, `expiry`,
//!   `nl`, `rh`, with EMQX's short names `c`, `u`, `p`, `t`, `q`, `r`.
//! - Content-Format numbers ↔ MQTT 5 content types (the IANA CoAP Content-Formats registry).
//!
//! The functions here take plain values (path segments, query strings, numbers) so that they
//! know nothing of the CoAP message layer; the listener passes what it decoded.

use bytes::Bytes;
use unigate_pubsub::{Message, Origin, QoS, Topic, TopicError, TopicFilter};

/// What a request path addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `/ps/{topic}`: the topic (or filter) as the client wrote it, levels joined with `/`,
    /// before any mount point.
    PubSub(String),
    /// `/mqtt/connection`.
    Connection,
    /// `/.well-known/core`.
    WellKnownCore,
    /// `/ps` with nothing after it.
    MissingTopic,
    /// Anything else.
    NotFound,
}

/// Where a request goes, from its Uri-Path segments.
pub fn route(path: &[String]) -> Route {
    match path {
        [ps] if ps == "ps" => Route::MissingTopic,
        [ps, rest @ ..] if ps == "ps" => Route::PubSub(rest.join("/")),
        [m, c] if m == "mqtt" && c == "connection" => Route::Connection,
        [w, c] if w == ".well-known" && c == "core" => Route::WellKnownCore,
        _ => Route::NotFound,
    }
}

/// The query parameters a pub/sub or connection request may carry.
#[derive(Default, Clone, PartialEq, Eq)]
pub struct Query {
    /// `clientid` / `c`.
    pub client_id: Option<String>,
    /// `username` / `u`.
    pub username: Option<String>,
    /// `password` / `p`.
    pub password: Option<String>,
    /// `token` / `t`: the connection-mode token.
    pub token: Option<String>,
    /// `qos` / `q`.
    pub qos: Option<QoS>,
    /// `retain` / `r`.
    pub retain: Option<bool>,
    /// `expiry`: message expiry interval in seconds (0: never).
    pub expiry: Option<u32>,
    /// `nl`: no-local for a subscription.
    pub no_local: Option<bool>,
    /// `rh`: retain handling for a subscription (0 send retained, 1 only for a new
    /// subscription, 2 never).
    pub retain_handling: Option<u8>,
}

impl std::fmt::Debug for Query {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Query")
            .field("client_id", &self.client_id)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("qos", &self.qos)
            .field("retain", &self.retain)
            .field("expiry", &self.expiry)
            .field("no_local", &self.no_local)
            .field("retain_handling", &self.retain_handling)
            .finish()
    }
}

/// A query parameter with a value the gateway cannot take (answered 4.00).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("query parameter `{name}`: {problem}")]
pub struct QueryError {
    /// The parameter, by its long name.
    pub name: &'static str,
    /// What is wrong with it.
    pub problem: &'static str,
}

fn flag(name: &'static str, v: &str) -> Result<bool, QueryError> {
    match v {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        _ => Err(QueryError {
            name,
            problem: "must be true, false, 1 or 0",
        }),
    }
}

fn text(name: &'static str, v: &str) -> Result<String, QueryError> {
    if v.is_empty() {
        return Err(QueryError {
            name,
            problem: "must not be empty",
        });
    }
    if v.contains('\0') {
        return Err(QueryError {
            name,
            problem: "must not contain U+0000",
        });
    }
    Ok(v.to_string())
}

/// Parses the Uri-Query options (`key=value` each). Unknown keys are ignored (firmware sends
/// its own); a known key with a bad value is an error. A key given twice keeps the last value.
pub fn parse_query(items: &[String]) -> Result<Query, QueryError> {
    let mut q = Query::default();
    for item in items {
        let (key, value) = item.split_once('=').unwrap_or((item.as_str(), ""));
        match key {
            "clientid" | "c" => q.client_id = Some(text("clientid", value)?),
            "username" | "u" => q.username = Some(text("username", value)?),
            "password" | "p" => q.password = Some(value.to_string()),
            "token" | "t" => q.token = Some(text("token", value)?),
            "qos" | "q" => {
                q.qos = Some(match value {
                    "0" => QoS::AtMostOnce,
                    "1" => QoS::AtLeastOnce,
                    "2" => QoS::ExactlyOnce,
                    _ => {
                        return Err(QueryError {
                            name: "qos",
                            problem: "must be 0, 1 or 2",
                        })
                    }
                })
            }
            "retain" | "r" => q.retain = Some(flag("retain", value)?),
            "expiry" => {
                q.expiry = Some(value.parse().map_err(|_| QueryError {
                    name: "expiry",
                    problem: "must be a number of seconds (0 to 4294967295)",
                })?)
            }
            "nl" => q.no_local = Some(flag("nl", value)?),
            "rh" => {
                q.retain_handling = Some(match value {
                    "0" => 0,
                    "1" => 1,
                    "2" => 2,
                    _ => {
                        return Err(QueryError {
                            name: "rh",
                            problem: "must be 0, 1 or 2",
                        })
                    }
                })
            }
            _ => {}
        }
    }
    Ok(q)
}

/// The topic a CoAP client addresses, with the listener's mount point (if any) in front.
pub fn mounted(mount_point: &str, topic: &str) -> String {
    let mut s = String::with_capacity(mount_point.len() + topic.len());
    s.push_str(mount_point);
    s.push_str(topic);
    s
}

/// The topic name of a publish request.
pub fn topic_name(mount_point: &str, topic: &str) -> Result<Topic, TopicError> {
    Topic::new(&mounted(mount_point, topic))
}

/// The topic filter of a subscribe or read request.
pub fn topic_filter(mount_point: &str, filter: &str) -> Result<TopicFilter, TopicError> {
    TopicFilter::new(&mounted(mount_point, filter))
}

/// A delivered topic as the CoAP client sees it: the mount point taken off (a message from
/// outside the mount point keeps its full name).
pub fn unmounted<'a>(mount_point: &str, topic: &'a str) -> &'a str {
    topic.strip_prefix(mount_point).unwrap_or(topic)
}

/// A publish request as a message. `default_qos` is what the listener gives a request that
/// names none (by default QoS 1 for CON, QoS 0 for NON).
pub fn publish_to_message(
    topic: Topic,
    payload: Bytes,
    content_format: Option<u16>,
    query: &Query,
    default_qos: QoS,
    origin: Origin,
    now_ms: u64,
) -> Message {
    let mut msg = Message::new(topic, payload);
    msg.qos = query.qos.unwrap_or(default_qos);
    msg.retain = query.retain.unwrap_or(false);
    msg.properties.content_type = content_format.and_then(content_type_of).map(str::to_string);
    msg.origin = origin;
    match query.expiry {
        Some(secs) if secs > 0 => msg.with_expiry_interval(secs, now_ms),
        _ => msg,
    }
}

/// The IANA CoAP Content-Formats this gateway maps (number, media type).
pub const CONTENT_FORMATS: &[(u16, &str)] = &[
    (0, "text/plain;charset=utf-8"),
    (40, "application/link-format"),
    (41, "application/xml"),
    (42, "application/octet-stream"),
    (47, "application/exi"),
    (50, "application/json"),
    (51, "application/json-patch+json"),
    (52, "application/merge-patch+json"),
    (60, "application/cbor"),
    (61, "application/cwt"),
    (110, "application/senml+json"),
    (111, "application/sensml+json"),
    (112, "application/senml+cbor"),
    (113, "application/sensml+cbor"),
    (11542, "application/vnd.oma.lwm2m+tlv"),
    (11543, "application/vnd.oma.lwm2m+json"),
    (11544, "application/vnd.oma.lwm2m+cbor"),
];

/// The media type of a Content-Format number; None for numbers outside [`CONTENT_FORMATS`]
/// (the message then has no content type).
pub fn content_type_of(format: u16) -> Option<&'static str> {
    CONTENT_FORMATS.iter().find(|(n, _)| *n == format).map(|(_, t)| *t)
}

/// The Content-Format number of a media type (as an MQTT 5 or HTTP client wrote it): case and
/// whitespace ignored, parameters ignored except that `text/plain` must be UTF-8 (or say no
/// charset). None when CoAP has no number for it.
pub fn content_format_of(content_type: &str) -> Option<u16> {
    let lower = content_type.to_ascii_lowercase();
    let mut parts = lower.split(';').map(str::trim);
    let media = parts.next().unwrap_or("");
    if media == "text/plain" {
        let charset_ok = parts.all(|p| match p.split_once('=') {
            Some(("charset", v)) => v.trim_matches('"') == "utf-8",
            _ => true,
        });
        return charset_ok.then_some(0);
    }
    CONTENT_FORMATS.iter().find(|(_, t)| *t == media).map(|(n, _)| *n)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn q(items: &[&str]) -> Result<Query, QueryError> {
        parse_query(&items.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    fn segs(p: &[&str]) -> Vec<String> {
        p.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn routes() {
        assert_eq!(route(&segs(&["ps", "a", "b"])), Route::PubSub("a/b".into()));
        assert_eq!(route(&segs(&["ps", "a", "", "b", ""])), Route::PubSub("a//b/".into()));
        assert_eq!(route(&segs(&["ps", "+", "#"])), Route::PubSub("+/#".into()));
        assert_eq!(route(&segs(&["ps"])), Route::MissingTopic);
        assert_eq!(route(&segs(&["mqtt", "connection"])), Route::Connection);
        assert_eq!(route(&segs(&[".well-known", "core"])), Route::WellKnownCore);
        assert_eq!(route(&segs(&[])), Route::NotFound);
        assert_eq!(route(&segs(&["mqtt"])), Route::NotFound);
        assert_eq!(route(&segs(&["other", "x"])), Route::NotFound);
    }

    #[test]
    fn long_and_short_names() {
        let long = q(&[
            "clientid=c1",
            "username=u",
            "password=pw",
            "token=123",
            "qos=2",
            "retain=true",
        ])
        .unwrap();
        let short = q(&["c=c1", "u=u", "p=pw", "t=123", "q=2", "r=1"]).unwrap();
        assert_eq!(long, short);
        assert_eq!(long.client_id.as_deref(), Some("c1"));
        assert_eq!(long.qos, Some(QoS::ExactlyOnce));
        assert_eq!(long.retain, Some(true));
        let sub = q(&["nl=1", "rh=2", "expiry=60"]).unwrap();
        assert_eq!(
            (sub.no_local, sub.retain_handling, sub.expiry),
            (Some(true), Some(2), Some(60))
        );
    }

    #[test]
    fn bad_values_name_the_parameter() {
        assert_eq!(q(&["qos=3"]).unwrap_err().name, "qos");
        assert_eq!(q(&["q=x"]).unwrap_err().name, "qos");
        assert_eq!(q(&["retain=yes"]).unwrap_err().name, "retain");
        assert_eq!(q(&["expiry=-1"]).unwrap_err().name, "expiry");
        assert_eq!(q(&["expiry=4294967296"]).unwrap_err().name, "expiry");
        assert_eq!(q(&["rh=3"]).unwrap_err().name, "rh");
        assert_eq!(q(&["clientid="]).unwrap_err().name, "clientid");
        assert_eq!(q(&["c=a\0b"]).unwrap_err().name, "clientid");
    }

    #[test]
    fn unknown_keys_are_ignored_and_last_wins() {
        let p = q(&["foo=bar", "flag", "qos=0", "qos=1"]).unwrap();
        assert_eq!(p.qos, Some(QoS::AtLeastOnce));
        // An empty password is a password (some firmware sends `p=`).
        assert_eq!(q(&["p="]).unwrap().password.as_deref(), Some(""));
    }

    #[test]
    fn secrets_are_not_in_debug_output() {
        let p = q(&["p=hunter2", "t=987654"]).unwrap();
        let s = format!("{p:?}");
        assert!(!s.contains("hunter2") && !s.contains("987654"), "{s}");
    }

    #[test]
    fn mount_point() {
        assert_eq!(topic_name("coap/", "a/b").unwrap().as_str(), "coap/a/b");
        assert_eq!(topic_filter("coap/", "+/b").unwrap().as_str(), "coap/+/b");
        assert_eq!(unmounted("coap/", "coap/a/b"), "a/b");
        assert_eq!(unmounted("coap/", "other/x"), "other/x");
        assert_eq!(unmounted("", "a"), "a");
        assert!(topic_name("", "a/+").is_err());
        assert!(topic_filter("", "a/#/b").is_err());
    }

    #[test]
    fn publish_mapping() {
        let topic = Topic::new("t").unwrap();
        let query = q(&["qos=2", "retain=1", "expiry=30"]).unwrap();
        let m = publish_to_message(
            topic.clone(),
            Bytes::from_static(b"x"),
            Some(50),
            &query,
            QoS::AtMostOnce,
            Origin::default(),
            1_000,
        );
        assert_eq!(m.qos, QoS::ExactlyOnce);
        assert!(m.retain);
        assert_eq!(m.properties.content_type.as_deref(), Some("application/json"));
        assert_eq!(m.expires_at, Some(31_000));
        let d = publish_to_message(
            topic,
            Bytes::new(),
            Some(9999),
            &Query::default(),
            QoS::AtLeastOnce,
            Origin::default(),
            0,
        );
        assert_eq!((d.qos, d.retain, d.expires_at), (QoS::AtLeastOnce, false, None));
        assert_eq!(d.properties.content_type, None);
    }

    #[test]
    fn content_formats_both_ways() {
        for (n, t) in CONTENT_FORMATS {
            assert_eq!(content_format_of(t), Some(*n), "{t}");
            assert_eq!(content_type_of(*n), Some(*t));
        }
        assert_eq!(content_format_of("text/plain"), Some(0));
        assert_eq!(content_format_of("Text/Plain; charset=\"UTF-8\""), Some(0));
        assert_eq!(content_format_of("text/plain; charset=latin1"), None);
        assert_eq!(content_format_of("application/json; charset=utf-8"), Some(50));
        assert_eq!(content_format_of("image/png"), None);
        assert_eq!(content_type_of(1), None);
    }
}
