//! HTTP ↔ common model: the JSON publish request (`POST /api/v1/publish`), the raw publish
//! (`POST /topics/{topic}`), and the JSON form of a delivered message (SSE events, the JSON
//! WebSocket).
//!
//! ```json
//! {"topic": "a/b", "payload": "hello", "encoding": "plain", "qos": 1, "retain": false,
//!  "properties": {"content_type": "text/plain", "message_expiry": 60,
//!                 "user_properties": {"k": "v"}, "response_topic": "r", "correlation_data": "…"}}
//! ```

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use unigate_pubsub::{Message, Origin, PayloadFormat, QoS, Topic};

/// How a payload is written in JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    /// UTF-8 text as is.
    #[default]
    Plain,
    /// Base64 (standard alphabet, padding optional).
    Base64,
}

/// User properties as an object (`{"k": "v"}`, EMQX's form) or as a list of pairs
/// (`[["k","v"], …]`, which keeps order and allows repeated keys).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum UserProperties {
    /// `{"k": "v"}`.
    Map(serde_json::Map<String, serde_json::Value>),
    /// `[["k", "v"]]`.
    List(Vec<(String, String)>),
}

/// MQTT 5 properties of a publish request.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublishProperties {
    /// Content type.
    #[serde(default)]
    pub content_type: Option<String>,
    /// Payload format indicator: 0 bytes, 1 UTF-8 (checked).
    #[serde(default)]
    pub payload_format_indicator: Option<u8>,
    /// Message expiry interval in seconds.
    #[serde(default, alias = "message_expiry_interval")]
    pub message_expiry: Option<u32>,
    /// Response topic.
    #[serde(default)]
    pub response_topic: Option<String>,
    /// Correlation data, in the request's `encoding`.
    #[serde(default)]
    pub correlation_data: Option<String>,
    /// User properties.
    #[serde(default)]
    pub user_properties: Option<UserProperties>,
}

/// `POST /api/v1/publish`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublishRequest {
    /// The topic name.
    pub topic: String,
    /// The payload, written per `encoding`.
    #[serde(default)]
    pub payload: String,
    /// `plain` (default) or `base64`.
    #[serde(default)]
    pub encoding: Encoding,
    /// 0, 1 or 2 (default 0).
    #[serde(default)]
    pub qos: u8,
    /// Retain flag.
    #[serde(default)]
    pub retain: bool,
    /// MQTT 5 properties.
    #[serde(default)]
    pub properties: Option<PublishProperties>,
}

/// Why a publish request cannot become a message (HTTP 400, with this text).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    /// The topic is not a valid topic name.
    #[error("invalid topic: {0}")]
    Topic(unigate_pubsub::TopicError),
    /// The response topic is not a valid topic name.
    #[error("invalid response_topic: {0}")]
    ResponseTopic(unigate_pubsub::TopicError),
    /// `qos` is not 0, 1 or 2.
    #[error("qos must be 0, 1 or 2")]
    Qos,
    /// A base64 field does not decode.
    #[error("{0} is not valid base64")]
    Base64(&'static str),
    /// The payload format indicator is not 0 or 1, or says UTF-8 and the payload is not.
    #[error("payload_format_indicator must be 0 or 1, and 1 needs a UTF-8 payload")]
    PayloadFormat,
    /// A user property value is not a string, number or boolean.
    #[error("user_properties values must be strings, numbers or booleans")]
    UserProperty,
}

fn decode(field: &'static str, text: &str, encoding: Encoding) -> Result<Bytes, RequestError> {
    match encoding {
        Encoding::Plain => Ok(Bytes::copy_from_slice(text.as_bytes())),
        Encoding::Base64 => B64
            .decode(text.trim_end_matches('='))
            .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(text.trim_end_matches('=')))
            .map(Bytes::from)
            .map_err(|_| RequestError::Base64(field)),
    }
}

/// The QoS of a number.
pub fn qos(n: u8) -> Result<QoS, RequestError> {
    match n {
        0 => Ok(QoS::AtMostOnce),
        1 => Ok(QoS::AtLeastOnce),
        2 => Ok(QoS::ExactlyOnce),
        _ => Err(RequestError::Qos),
    }
}

/// A publish request as a message (topic checked, payload decoded, properties mapped).
pub fn publish_to_message(req: PublishRequest, origin: Origin, now_ms: u64) -> Result<Message, RequestError> {
    let topic = Topic::new(&req.topic).map_err(RequestError::Topic)?;
    let payload = decode("payload", &req.payload, req.encoding)?;
    let mut msg = Message::new(topic, payload);
    msg.qos = qos(req.qos)?;
    msg.retain = req.retain;
    msg.origin = origin;
    let Some(p) = req.properties else { return Ok(msg) };
    msg.properties.content_type = p.content_type;
    match p.payload_format_indicator {
        None | Some(0) => {}
        Some(1) if std::str::from_utf8(&msg.payload).is_ok() => {
            msg.properties.payload_format = Some(PayloadFormat::Utf8);
        }
        Some(_) => return Err(RequestError::PayloadFormat),
    }
    if let Some(t) = p.response_topic {
        msg.properties.response_topic = Some(Topic::new(&t).map_err(RequestError::ResponseTopic)?);
    }
    if let Some(c) = p.correlation_data {
        msg.properties.correlation_data = Some(decode("correlation_data", &c, req.encoding)?);
    }
    match p.user_properties {
        None => {}
        Some(UserProperties::List(list)) => msg.properties.user_properties = list,
        Some(UserProperties::Map(map)) => {
            for (k, v) in map {
                let v = match v {
                    serde_json::Value::String(s) => s,
                    serde_json::Value::Number(n) => n.to_string(),
                    serde_json::Value::Bool(b) => b.to_string(),
                    _ => return Err(RequestError::UserProperty),
                };
                msg.properties.user_properties.push((k, v));
            }
        }
    }
    Ok(match p.message_expiry {
        Some(secs) if secs > 0 => msg.with_expiry_interval(secs, now_ms),
        _ => msg,
    })
}

/// A raw publish (`POST /topics/{topic}`): the body is the payload, Content-Type the content
/// type.
pub fn raw_to_message(
    topic: &str,
    body: Bytes,
    content_type: Option<&str>,
    qos: QoS,
    retain: bool,
    origin: Origin,
) -> Result<Message, RequestError> {
    let topic = Topic::new(topic).map_err(RequestError::Topic)?;
    let mut msg = Message::new(topic, body);
    msg.qos = qos;
    msg.retain = retain;
    msg.properties.content_type = content_type.map(str::to_string);
    msg.origin = origin;
    Ok(msg)
}

/// A delivered message as JSON (SSE `data:`, JSON WebSocket): the payload as text when it is
/// UTF-8, else base64 (`encoding` says which).
pub fn message_to_json(msg: &Message, qos: QoS, retain: bool, now_ms: u64) -> serde_json::Value {
    let (payload, encoding) = match std::str::from_utf8(&msg.payload) {
        Ok(s) => (s.to_string(), "plain"),
        Err(_) => (B64.encode(&msg.payload), "base64"),
    };
    let mut props = serde_json::Map::new();
    let p = &msg.properties;
    if let Some(ct) = &p.content_type {
        props.insert("content_type".into(), ct.clone().into());
    }
    if let Some(rt) = &p.response_topic {
        props.insert("response_topic".into(), rt.as_str().into());
    }
    if let Some(cd) = &p.correlation_data {
        props.insert("correlation_data".into(), B64.encode(cd).into());
    }
    if let Some(left) = msg.remaining_expiry_secs(now_ms) {
        props.insert("message_expiry".into(), left.into());
    }
    if !p.user_properties.is_empty() {
        let list: Vec<serde_json::Value> = p
            .user_properties
            .iter()
            .map(|(k, v)| serde_json::json!([k, v]))
            .collect();
        props.insert("user_properties".into(), list.into());
    }
    serde_json::json!({
        "topic": msg.topic.as_str(),
        "payload": payload,
        "encoding": encoding,
        "qos": qos as u8,
        "retain": retain,
        "properties": props,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn parse(json: &str) -> Result<Message, RequestError> {
        let req: PublishRequest = serde_json::from_str(json).unwrap();
        publish_to_message(req, Origin::default(), 1_000)
    }

    #[test]
    fn plain_and_base64_with_properties() {
        let m = parse(r#"{"topic":"a/b","payload":"hi","qos":1,"retain":true}"#).unwrap();
        assert_eq!(
            (m.topic.as_str(), &m.payload[..], m.qos, m.retain),
            ("a/b", &b"hi"[..], QoS::AtLeastOnce, true)
        );
        let m = parse(
            r#"{"topic":"t","payload":"AAEC","encoding":"base64","properties":{
                "content_type":"application/octet-stream","message_expiry":5,"response_topic":"r/1",
                "correlation_data":"AQ==","user_properties":{"a":"1","b":2,"c":true},"payload_format_indicator":0}}"#,
        )
        .unwrap();
        assert_eq!(&m.payload[..], &[0, 1, 2]);
        assert_eq!(m.properties.content_type.as_deref(), Some("application/octet-stream"));
        assert_eq!(m.expires_at, Some(6_000));
        assert_eq!(m.properties.response_topic.as_ref().map(|t| t.as_str()), Some("r/1"));
        assert_eq!(m.properties.correlation_data.as_deref(), Some(&[1u8][..]));
        assert_eq!(
            m.properties.user_properties,
            [
                ("a".into(), "1".into()),
                ("b".into(), "2".into()),
                ("c".into(), "true".into())
            ]
        );
        let m = parse(r#"{"topic":"t","properties":{"user_properties":[["k","1"],["k","2"]]}}"#).unwrap();
        assert_eq!(m.properties.user_properties.len(), 2);
        let m = parse(r#"{"topic":"t","payload":"AAE","encoding":"base64"}"#).unwrap();
        assert_eq!(&m.payload[..], &[0, 1], "padding optional");
    }

    #[test]
    fn bad_requests_say_what() {
        assert!(parse(r#"{"topic":"a/+"}"#)
            .unwrap_err()
            .to_string()
            .starts_with("invalid topic: "));
        assert_eq!(parse(r#"{"topic":"a","qos":3}"#).unwrap_err(), RequestError::Qos);
        assert_eq!(
            parse(r#"{"topic":"a","payload":"!!","encoding":"base64"}"#).unwrap_err(),
            RequestError::Base64("payload")
        );
        assert_eq!(
            parse(r#"{"topic":"a","payload":"/w==","encoding":"base64","properties":{"payload_format_indicator":1}}"#)
                .unwrap_err(),
            RequestError::PayloadFormat
        );
        assert!(matches!(
            parse(r#"{"topic":"a","properties":{"response_topic":"x/#"}}"#),
            Err(RequestError::ResponseTopic(_))
        ));
        assert_eq!(
            parse(r#"{"topic":"a","properties":{"user_properties":{"k":[1]}}}"#).unwrap_err(),
            RequestError::UserProperty
        );
        assert!(
            serde_json::from_str::<PublishRequest>(r#"{"topic":"a","bogus":1}"#).is_err(),
            "unknown fields refused"
        );
        assert!(serde_json::from_str::<PublishRequest>(r#"{"topic":"a","encoding":"hex"}"#).is_err());
    }

    #[test]
    fn messages_as_json() {
        let mut m = Message::new(Topic::new("t").unwrap(), Bytes::from_static(b"x"));
        m.properties.content_type = Some("text/plain".into());
        m.properties.user_properties.push(("k".into(), "v".into()));
        let j = message_to_json(&m, QoS::AtLeastOnce, true, 0);
        assert_eq!(j["payload"], "x");
        assert_eq!(j["encoding"], "plain");
        assert_eq!(j["qos"], 1);
        assert_eq!(j["retain"], true);
        assert_eq!(j["properties"]["content_type"], "text/plain");
        assert_eq!(j["properties"]["user_properties"][0][1], "v");
        let b = Message::new(Topic::new("t").unwrap(), Bytes::from_static(&[0xff, 0]));
        let j = message_to_json(&b, QoS::AtMostOnce, false, 0);
        assert_eq!(
            (j["payload"].as_str(), j["encoding"].as_str()),
            (Some("/wA="), Some("base64"))
        );
    }
}
