//! MQTT 3.1.1 / 5.0 PUBLISH and will messages <-> common-model [`Message`].
//!
//! MQTT 3.1.1 has no properties: its messages map to a `Message` with empty properties, and a
//! `Message` sent to a 3.1.1 client simply loses them (the encoder drops properties for v3).
//! Message expiry is carried as an absolute deadline so that the interval forwarded to a
//! subscriber is the remaining time (MQTT 5 §3.3.2.3.3).

use bytes::Bytes;
use unigate_mqtt as mqtt;
use unigate_pubsub::{Message, Origin, PayloadFormat, Properties, QoS, Topic};

use crate::TranslateError;

/// MQTT QoS -> common QoS.
pub fn qos_in(q: mqtt::QoS) -> QoS {
    match q {
        mqtt::QoS::AtMostOnce => QoS::AtMostOnce,
        mqtt::QoS::AtLeastOnce => QoS::AtLeastOnce,
        mqtt::QoS::ExactlyOnce => QoS::ExactlyOnce,
    }
}

/// Common QoS -> MQTT QoS.
pub fn qos_out(q: QoS) -> mqtt::QoS {
    match q {
        QoS::AtMostOnce => mqtt::QoS::AtMostOnce,
        QoS::AtLeastOnce => mqtt::QoS::AtLeastOnce,
        QoS::ExactlyOnce => mqtt::QoS::ExactlyOnce,
    }
}

fn payload_format(indicator: Option<u8>, payload: &Bytes) -> Result<Option<PayloadFormat>, TranslateError> {
    match indicator {
        None => Ok(None),
        Some(0) => Ok(Some(PayloadFormat::Unspecified)),
        Some(1) => {
            if std::str::from_utf8(payload).is_err() {
                return Err(TranslateError::PayloadNotUtf8);
            }
            Ok(Some(PayloadFormat::Utf8))
        }
        Some(other) => Err(TranslateError::InvalidPayloadFormat(other)),
    }
}

fn response_topic(t: &Option<String>) -> Result<Option<Topic>, TranslateError> {
    t.as_deref()
        .map(Topic::new)
        .transpose()
        .map_err(TranslateError::InvalidResponseTopic)
}

/// A received PUBLISH (topic alias already resolved into `topic`) -> `Message`.
pub fn publish_to_message(
    p: &mqtt::Publish,
    topic: &str,
    origin: Origin,
    now_ms: u64,
) -> Result<Message, TranslateError> {
    let topic = Topic::new(topic)?;
    let props = &p.properties;
    let properties = Properties {
        payload_format: payload_format(props.payload_format_indicator, &p.payload)?,
        content_type: props.content_type.clone(),
        response_topic: response_topic(&props.response_topic)?,
        correlation_data: props.correlation_data.clone(),
        user_properties: props.user_properties.clone(),
    };
    let mut msg = Message {
        topic,
        payload: p.payload.clone(),
        qos: qos_in(p.qos),
        retain: p.retain,
        properties,
        origin,
        expires_at: None,
    };
    if let Some(secs) = props.message_expiry_interval {
        msg = msg.with_expiry_interval(secs, now_ms);
    }
    Ok(msg)
}

/// A CONNECT's will -> `Message`, and its delay interval in seconds.
pub fn will_to_message(w: &mqtt::Will, origin: Origin, now_ms: u64) -> Result<(Message, u32), TranslateError> {
    let topic = Topic::new(&w.topic)?;
    let props = &w.properties;
    let properties = Properties {
        payload_format: payload_format(props.payload_format_indicator, &w.payload)?,
        content_type: props.content_type.clone(),
        response_topic: response_topic(&props.response_topic)?,
        correlation_data: props.correlation_data.clone(),
        user_properties: props.user_properties.clone(),
    };
    let mut msg = Message {
        topic,
        payload: w.payload.clone(),
        qos: qos_in(w.qos),
        retain: w.retain,
        properties,
        origin,
        expires_at: None,
    };
    // The expiry of a will counts from when it is published (MQTT 5 §3.1.3.2.4), which is not
    // now: the caller applies `props.message_expiry_interval` then, see [`will_expiry`].
    let _ = now_ms;
    msg.expires_at = None;
    Ok((msg, props.will_delay_interval.unwrap_or(0)))
}

/// The message expiry interval of a will, to apply when it is published.
pub fn will_expiry(w: &mqtt::Will) -> Option<u32> {
    w.properties.message_expiry_interval
}

/// A `Message` -> the PUBLISH sent to a subscriber (no packet id, alias or subscription
/// identifiers yet: the session fills those in). The expiry interval is the remaining time.
pub fn message_to_publish(msg: &Message, qos: QoS, retain: bool, now_ms: u64) -> mqtt::Publish {
    let p = &msg.properties;
    mqtt::Publish {
        dup: false,
        qos: qos_out(qos),
        retain,
        topic: msg.topic.as_str().to_string(),
        packet_id: None,
        payload: msg.payload.clone(),
        properties: mqtt::PublishProperties {
            payload_format_indicator: p.payload_format.map(|f| match f {
                PayloadFormat::Unspecified => 0,
                PayloadFormat::Utf8 => 1,
            }),
            message_expiry_interval: msg.remaining_expiry_secs(now_ms),
            topic_alias: None,
            response_topic: p.response_topic.as_ref().map(|t| t.as_str().to_string()),
            correlation_data: p.correlation_data.clone(),
            user_properties: p.user_properties.clone(),
            subscription_identifiers: Vec::new(),
            content_type: p.content_type.clone(),
        },
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn publish(topic: &str) -> mqtt::Publish {
        mqtt::Publish {
            dup: false,
            qos: mqtt::QoS::AtLeastOnce,
            retain: true,
            topic: topic.into(),
            packet_id: mqtt::PacketId::new(7),
            payload: Bytes::from_static(b"hello"),
            properties: mqtt::PublishProperties {
                payload_format_indicator: Some(1),
                message_expiry_interval: Some(60),
                topic_alias: None,
                response_topic: Some("reply/to".into()),
                correlation_data: Some(Bytes::from_static(b"\x01\x02")),
                user_properties: vec![("k".into(), "v".into()), ("k".into(), "v2".into())],
                subscription_identifiers: vec![],
                content_type: Some("text/plain".into()),
            },
        }
    }

    #[test]
    fn round_trip_keeps_every_property() {
        let p = publish("a/b");
        let m = publish_to_message(&p, "a/b", Origin::default(), 1_000_000).unwrap();
        assert_eq!(m.qos, QoS::AtLeastOnce);
        assert!(m.retain);
        assert_eq!(m.expires_at, Some(1_060_000));
        let back = message_to_publish(&m, QoS::AtLeastOnce, true, 1_000_000);
        assert_eq!(back.topic, "a/b");
        assert_eq!(back.properties.user_properties, p.properties.user_properties);
        assert_eq!(back.properties.response_topic, p.properties.response_topic);
        assert_eq!(back.properties.correlation_data, p.properties.correlation_data);
        assert_eq!(back.properties.content_type, p.properties.content_type);
        assert_eq!(back.properties.payload_format_indicator, Some(1));
        assert_eq!(back.properties.message_expiry_interval, Some(60));
    }

    #[test]
    fn expiry_is_decremented_on_forward() {
        let m = publish_to_message(&publish("a"), "a", Origin::default(), 0).unwrap();
        let out = message_to_publish(&m, QoS::AtMostOnce, false, 20_500);
        assert_eq!(out.properties.message_expiry_interval, Some(40));
    }

    #[test]
    fn bad_inputs_are_refused() {
        assert!(matches!(
            publish_to_message(&publish("a/+"), "a/+", Origin::default(), 0),
            Err(TranslateError::InvalidTopic(_))
        ));
        let mut p = publish("a");
        p.payload = Bytes::from_static(b"\xff\xfe");
        assert_eq!(
            publish_to_message(&p, "a", Origin::default(), 0),
            Err(TranslateError::PayloadNotUtf8)
        );
        let mut p = publish("a");
        p.properties.response_topic = Some("r/#".into());
        assert!(matches!(
            publish_to_message(&p, "a", Origin::default(), 0),
            Err(TranslateError::InvalidResponseTopic(_))
        ));
    }

    #[test]
    fn will_maps_with_delay() {
        let w = mqtt::Will {
            topic: "last/will".into(),
            payload: Bytes::from_static(b"gone"),
            qos: mqtt::QoS::ExactlyOnce,
            retain: false,
            properties: mqtt::WillProperties {
                will_delay_interval: Some(5),
                ..Default::default()
            },
        };
        let (m, delay) = will_to_message(&w, Origin::default(), 0).unwrap();
        assert_eq!(delay, 5);
        assert_eq!(m.qos, QoS::ExactlyOnce);
        assert_eq!(m.topic.as_str(), "last/will");
    }
}
