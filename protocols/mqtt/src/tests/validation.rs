//! One negative test per validation rule, each checking the reason code the error maps to
//! (and, where it matters, the variant and the clause in the message).

use super::{from_bytes, rejects, V311, V3_1, V5};
use crate::{decode_slice, DecodeError, Packet, ReasonCode};

const MALFORMED: ReasonCode = ReasonCode::MALFORMED_PACKET;
const PROTOCOL: ReasonCode = ReasonCode::PROTOCOL_ERROR;

/// A v5 CONNECT with the given flags, property block and payload (client id included).
fn v5_connect(flags: u8, props: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut body = b"\x00\x04MQTT\x05".to_vec();
    body.push(flags);
    body.extend_from_slice(&[0x00, 0x00]);
    body.push(u8::try_from(props.len()).unwrap());
    body.extend_from_slice(props);
    body.extend_from_slice(payload);
    packet(0x10, &body)
}

/// A v3.1.1 CONNECT with the given flags and payload.
fn v311_connect(flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut body = b"\x00\x04MQTT\x04".to_vec();
    body.push(flags);
    body.extend_from_slice(&[0x00, 0x00]);
    body.extend_from_slice(payload);
    packet(0x10, &body)
}

/// A v5 PUBLISH (QoS 0 unless `first` says otherwise) with topic, properties and payload.
fn v5_publish(first: u8, topic: &str, id: &[u8], props: &[u8]) -> Vec<u8> {
    let mut body = vec![0x00, u8::try_from(topic.len()).unwrap()];
    body.extend_from_slice(topic.as_bytes());
    body.extend_from_slice(id);
    body.push(u8::try_from(props.len()).unwrap());
    body.extend_from_slice(props);
    packet(first, &body)
}

fn packet(first: u8, body: &[u8]) -> Vec<u8> {
    assert!(body.len() < 128);
    let mut out = vec![first, u8::try_from(body.len()).unwrap()];
    out.extend_from_slice(body);
    out
}

// ------------------------------------------------------------------ fixed header

#[test]
fn remaining_length_of_five_bytes_is_malformed() {
    rejects(&[0x30, 0xff, 0xff, 0xff, 0xff, 0x7f], Some(V5), MALFORMED);
    // Detected from the four continuation bytes alone, before the fifth arrives.
    rejects(&[0x30, 0x80, 0x80, 0x80, 0x80], Some(V5), MALFORMED);
}

#[test]
fn packet_type_zero_is_malformed() {
    rejects(&[0x00, 0x00], Some(V311), MALFORMED);
    // Rejected after the first byte, without waiting for more.
    rejects(&[0x00], Some(V5), MALFORMED);
}

#[test]
fn reserved_fixed_header_flags() {
    let err = rejects(&[0x60, 0x02, 0x00, 0x01], Some(V5), MALFORMED); // PUBREL must be 0b0010
    assert_eq!(err, DecodeError::Malformed("[MQTT-2.1.3-1] invalid fixed header flags"));
    rejects(b"\x80\x06\x00\x01\x00\x01a\x00", Some(V311), MALFORMED); // SUBSCRIBE
    rejects(b"\xa0\x05\x00\x01\x00\x01a", Some(V311), MALFORMED); // UNSUBSCRIBE
    rejects(&[0xc1, 0x00], Some(V311), MALFORMED); // PINGREQ
    rejects(&[0xd2, 0x00], Some(V5), MALFORMED); // PINGRESP
    rejects(&[0xe8, 0x00], Some(V5), MALFORMED); // DISCONNECT
    rejects(&[0x42, 0x02, 0x00, 0x01], Some(V5), MALFORMED); // PUBACK
    rejects(&[0x11, 0x00], None, MALFORMED); // CONNECT
}

#[test]
fn v31_allows_dup_on_pubrel() {
    // MQTT 3.1 retransmitted PUBREL / SUBSCRIBE / UNSUBSCRIBE with DUP set.
    assert!(from_bytes(&[0x6a, 0x02, 0x00, 0x01], Some(V3_1)).is_ok());
    rejects(&[0x6a, 0x02, 0x00, 0x01], Some(V311), MALFORMED);
}

#[test]
fn auth_does_not_exist_before_v5() {
    rejects(&[0xf0, 0x00], Some(V311), MALFORMED);
    rejects(&[0xf0, 0x00], None, MALFORMED);
    assert!(from_bytes(&[0xf0, 0x00], Some(V5)).is_ok());
}

#[test]
fn bytes_after_the_last_field_are_malformed() {
    rejects(&[0xc0, 0x01, 0x00], Some(V5), MALFORMED); // PINGREQ with a body
    rejects(&[0xe0, 0x01, 0x00], Some(V311), MALFORMED); // 3.1.1 DISCONNECT with a body
    rejects(&[0x40, 0x03, 0x00, 0x01, 0x00], Some(V311), MALFORMED); // 3.1.1 PUBACK, 3 bytes
    rejects(&[0x20, 0x03, 0x00, 0x00, 0x00], Some(V311), MALFORMED); // 3.1.1 CONNACK, 3 bytes
    rejects(&[0xb0, 0x03, 0x00, 0x01, 0x00], Some(V311), MALFORMED); // 3.1.1 UNSUBACK, 3 bytes
    let mut connect = v311_connect(0x02, b"\x00\x01c");
    connect[1] += 1;
    connect.push(0xff);
    rejects(&connect, None, MALFORMED);
    // Properties present but the block length says fewer.
    rejects(&[0xe0, 0x04, 0x80, 0x00, 0x1f, 0x00], Some(V5), MALFORMED);
}

#[test]
fn fields_running_past_the_remaining_length_are_malformed() {
    // PUBLISH topic length 5 but only 3 bytes in the packet.
    rejects(&[0x30, 0x05, 0x00, 0x05, b'a', b'b', b'c'], Some(V311), MALFORMED);
    // PUBACK cut inside the packet identifier.
    rejects(&[0x40, 0x01, 0x00], Some(V311), MALFORMED);
    // CONNACK property length larger than what is left.
    rejects(&[0x20, 0x03, 0x00, 0x00, 0x05], Some(V5), MALFORMED);
}

// ------------------------------------------------------------------ UTF-8 strings

#[test]
fn strings_must_be_well_formed_utf8() {
    let err = rejects(&[0x30, 0x04, 0x00, 0x02, 0xc3, 0x28], Some(V311), MALFORMED);
    assert_eq!(
        err,
        DecodeError::Malformed("[MQTT-1.5.4-1] string is not well-formed UTF-8")
    );
    // Surrogate U+D800 in a client identifier.
    rejects(&v311_connect(0x02, &[0x00, 0x03, 0xed, 0xa0, 0x80]), None, MALFORMED);
    // U+0000 in a topic filter.
    let err = rejects(b"\x82\x06\x00\x01\x00\x01\x00\x00", Some(V311), MALFORMED);
    assert_eq!(err, DecodeError::Malformed("[MQTT-1.5.4-2] string contains U+0000"));
}

// ------------------------------------------------------------------ CONNECT

#[test]
fn connect_unknown_protocol_name() {
    let err = rejects(b"\x10\x0c\x00\x04MQTX\x04\x02\x00\x00\x00\x00", None, ReasonCode(0x84));
    assert_eq!(err, DecodeError::UnsupportedProtocolName);
}

#[test]
fn connect_unknown_protocol_level() {
    let err = rejects(b"\x10\x0c\x00\x04MQTT\x06\x02\x00\x00\x00\x00", None, ReasonCode(0x84));
    assert_eq!(err, DecodeError::UnsupportedProtocolVersion(6));
    // Name and level must go together.
    let err = rejects(b"\x10\x0c\x00\x04MQTT\x03\x02\x00\x00\x00\x00", None, ReasonCode(0x84));
    assert_eq!(err, DecodeError::UnsupportedProtocolVersion(3));
    let err = rejects(
        b"\x10\x0e\x00\x06MQIsdp\x04\x02\x00\x00\x00\x00",
        None,
        ReasonCode(0x84),
    );
    assert_eq!(err, DecodeError::UnsupportedProtocolVersion(4));
}

#[test]
fn connect_reserved_flag() {
    let err = rejects(&v311_connect(0x03, b"\x00\x00"), None, MALFORMED);
    assert_eq!(
        err,
        DecodeError::Malformed("[MQTT-3.1.2-3] CONNECT reserved flag is not 0")
    );
    rejects(&v5_connect(0x01, &[], b"\x00\x00"), None, MALFORMED);
}

#[test]
fn connect_will_flags() {
    // Will QoS 3 (with the will flag and a will).
    let will = b"\x00\x00\x00\x01t\x00\x00";
    rejects(&v311_connect(0x1c, will), None, MALFORMED);
    // Will QoS 1 without the will flag.
    let err = rejects(&v311_connect(0x08, b"\x00\x00"), None, PROTOCOL);
    assert!(err.to_string().contains("[MQTT-3.1.2-11]"));
    // Will retain without the will flag.
    let err = rejects(&v5_connect(0x20, &[], b"\x00\x00"), None, PROTOCOL);
    assert!(err.to_string().contains("[MQTT-3.1.2-13]"));
    // The same will with QoS 1 is fine.
    assert!(from_bytes(&v311_connect(0x0c, will), None).is_ok());
}

#[test]
fn connect_will_topic_rules() {
    rejects(
        &v311_connect(0x04, b"\x00\x00\x00\x03a/#\x00\x00"),
        None,
        ReasonCode::TOPIC_NAME_INVALID,
    );
    rejects(
        &v311_connect(0x04, b"\x00\x00\x00\x00\x00\x00"),
        None,
        ReasonCode::TOPIC_NAME_INVALID,
    );
}

#[test]
fn connect_password_without_user_name() {
    let err = rejects(&v311_connect(0x42, b"\x00\x00\x00\x01p"), None, MALFORMED);
    assert!(err.to_string().contains("[MQTT-3.1.2-22]"));
    // Allowed in MQTT 5.
    assert!(from_bytes(&v5_connect(0x42, &[], b"\x00\x00\x00\x01p"), None).is_ok());
}

#[test]
fn connect_missing_payload_fields() {
    // User name flag set, no user name.
    rejects(&v311_connect(0x82, b"\x00\x00"), None, MALFORMED);
    // Will flag set, no will.
    rejects(&v5_connect(0x04, &[], b"\x00\x00"), None, MALFORMED);
}

// ------------------------------------------------------------------ properties

#[test]
fn duplicate_property_is_a_protocol_error() {
    let props = [0x11, 0, 0, 0, 1, 0x11, 0, 0, 0, 2];
    let err = rejects(&v5_connect(0x02, &props, b"\x00\x00"), None, PROTOCOL);
    assert!(err.to_string().contains("Session Expiry Interval"));
    // User properties may repeat, even with the same name.
    let users = [0x26, 0, 1, b'a', 0, 0, 0x26, 0, 1, b'a', 0, 0];
    assert!(from_bytes(&v5_connect(0x02, &users, b"\x00\x00"), None).is_ok());
}

#[test]
fn property_not_allowed_in_packet_is_malformed() {
    // Topic Alias in CONNECT.
    let err = rejects(&v5_connect(0x02, &[0x23, 0x00, 0x01], b"\x00\x00"), None, MALFORMED);
    assert!(err.to_string().contains("Topic Alias property is not allowed"));
    // Will Delay Interval in PUBLISH.
    rejects(&v5_publish(0x30, "t", &[], &[0x18, 0, 0, 0, 1]), Some(V5), MALFORMED);
    // Subscription Identifier in UNSUBSCRIBE.
    rejects(b"\xa2\x07\x00\x01\x02\x0b\x01\x00\x00", Some(V5), MALFORMED);
    // Unknown identifier.
    rejects(&v5_publish(0x30, "t", &[], &[0x7f, 0x00]), Some(V5), MALFORMED);
}

#[test]
fn subscription_identifiers() {
    // Zero in SUBSCRIBE and in PUBLISH.
    rejects(b"\x82\x09\x00\x01\x02\x0b\x00\x00\x01a\x00", Some(V5), PROTOCOL);
    rejects(&v5_publish(0x30, "t", &[], &[0x0b, 0x00]), Some(V5), PROTOCOL);
    // Twice in SUBSCRIBE.
    rejects(b"\x82\x0b\x00\x01\x04\x0b\x01\x0b\x02\x00\x01a\x00", Some(V5), PROTOCOL);
    // Several in PUBLISH are fine (one per matching subscription).
    let publish = from_bytes(
        &v5_publish(0x30, "t", &[], &[0x0b, 0x01, 0x0b, 0xff, 0xff, 0xff, 0x7f]),
        Some(V5),
    );
    match publish.unwrap() {
        Packet::Publish(p) => {
            assert_eq!(p.properties.subscription_identifiers, vec![1, 268_435_455])
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn zero_limits_are_protocol_errors() {
    rejects(&v5_connect(0x02, &[0x21, 0x00, 0x00], b"\x00\x00"), None, PROTOCOL); // receive max
    rejects(&v5_connect(0x02, &[0x27, 0, 0, 0, 0], b"\x00\x00"), None, PROTOCOL); // max packet size
    rejects(&[0x20, 0x06, 0x00, 0x00, 0x03, 0x21, 0x00, 0x00], Some(V5), PROTOCOL);
    rejects(&[0x20, 0x08, 0x00, 0x00, 0x05, 0x27, 0, 0, 0, 0], Some(V5), PROTOCOL);
}

#[test]
fn topic_alias_zero() {
    let err = rejects(
        &v5_publish(0x30, "t", &[], &[0x23, 0x00, 0x00]),
        Some(V5),
        ReasonCode::TOPIC_ALIAS_INVALID,
    );
    assert!(err.to_string().contains("[MQTT-3.3.2-8]"));
}

#[test]
fn flag_properties_must_be_zero_or_one() {
    rejects(&v5_publish(0x30, "t", &[], &[0x01, 0x02]), Some(V5), PROTOCOL); // payload format
    rejects(&v5_connect(0x02, &[0x17, 0x02], b"\x00\x00"), None, PROTOCOL); // request problem
    rejects(&v5_connect(0x02, &[0x19, 0x05], b"\x00\x00"), None, PROTOCOL); // request response
    rejects(&[0x20, 0x05, 0x00, 0x00, 0x02, 0x24, 0x02], Some(V5), PROTOCOL); // maximum QoS 2
    rejects(&[0x20, 0x05, 0x00, 0x00, 0x02, 0x25, 0x02], Some(V5), PROTOCOL); // retain available
    rejects(&[0x20, 0x05, 0x00, 0x00, 0x02, 0x28, 0x02], Some(V5), PROTOCOL); // wildcard available
    rejects(&[0x20, 0x05, 0x00, 0x00, 0x02, 0x29, 0x02], Some(V5), PROTOCOL); // sub ids available
    rejects(&[0x20, 0x05, 0x00, 0x00, 0x02, 0x2a, 0x02], Some(V5), PROTOCOL); // shared available
}

#[test]
fn authentication_data_needs_a_method() {
    rejects(
        &v5_connect(0x02, &[0x16, 0x00, 0x01, 0xaa], b"\x00\x00"),
        None,
        PROTOCOL,
    );
}

#[test]
fn response_topic_is_a_topic_name() {
    let err = rejects(
        &v5_publish(0x30, "t", &[], &[0x08, 0x00, 0x01, b'+']),
        Some(V5),
        PROTOCOL,
    );
    assert!(err.to_string().contains("[MQTT-3.3.2-14]"));
    rejects(&v5_publish(0x30, "t", &[], &[0x08, 0x00, 0x00]), Some(V5), PROTOCOL);
}

// ------------------------------------------------------------------ packet identifiers

#[test]
fn zero_packet_identifier_is_malformed() {
    let err = rejects(&v5_publish(0x32, "t", &[0, 0], &[]), Some(V5), MALFORMED);
    assert!(err.to_string().contains("[MQTT-2.2.1-3]"));
    rejects(&[0x40, 0x02, 0x00, 0x00], Some(V311), MALFORMED);
    rejects(&[0x62, 0x02, 0x00, 0x00], Some(V5), MALFORMED);
    rejects(b"\x82\x06\x00\x00\x00\x01a\x00", Some(V311), MALFORMED);
    rejects(b"\xa2\x05\x00\x00\x00\x01a", Some(V311), MALFORMED);
    rejects(&[0x90, 0x03, 0x00, 0x00, 0x00], Some(V311), MALFORMED);
    rejects(&[0xb0, 0x02, 0x00, 0x00], Some(V311), MALFORMED);
}

// ------------------------------------------------------------------ PUBLISH

#[test]
fn publish_qos_3_is_malformed_from_the_first_byte() {
    let err = rejects(&[0x36], Some(V311), MALFORMED);
    assert_eq!(err, DecodeError::Malformed("[MQTT-3.3.1-4] PUBLISH with QoS 3"));
}

#[test]
fn publish_qos_0_with_dup_is_malformed() {
    let err = rejects(b"\x38\x03\x00\x01t", Some(V311), MALFORMED);
    assert!(err.to_string().contains("[MQTT-3.3.1-2]"));
}

#[test]
fn publish_topic_rules() {
    let err = rejects(b"\x30\x05\x00\x03a/+", Some(V311), ReasonCode::TOPIC_NAME_INVALID);
    assert_eq!(
        err,
        DecodeError::InvalidTopic("[MQTT-3.3.2-2] PUBLISH topic contains wildcard")
    );
    rejects(
        &v5_publish(0x30, "a/#", &[], &[]),
        Some(V5),
        ReasonCode::TOPIC_NAME_INVALID,
    );
    // Empty topic: never in 3.x, only with a topic alias in 5.0.
    rejects(b"\x30\x02\x00\x00", Some(V311), ReasonCode::TOPIC_NAME_INVALID);
    rejects(&v5_publish(0x30, "", &[], &[]), Some(V5), PROTOCOL);
    assert!(from_bytes(&v5_publish(0x30, "", &[], &[0x23, 0x00, 0x01]), Some(V5)).is_ok());
}

#[test]
fn publish_properties_are_v5_only() {
    // The same bytes are a PUBLISH with payload "\x00" in 3.1.1 and an empty property block in 5.0.
    let bytes = b"\x30\x04\x00\x01t\x00";
    match (
        from_bytes(bytes, Some(V311)).unwrap(),
        from_bytes(bytes, Some(V5)).unwrap(),
    ) {
        (Packet::Publish(v3), Packet::Publish(v5)) => {
            assert_eq!(&v3.payload[..], b"\x00");
            assert!(v5.payload.is_empty());
        }
        other => panic!("{other:?}"),
    }
}

// ------------------------------------------------------------------ SUBSCRIBE / UNSUBSCRIBE

#[test]
fn subscribe_needs_a_filter() {
    let err = rejects(&[0x82, 0x02, 0x00, 0x01], Some(V311), PROTOCOL);
    assert!(err.to_string().contains("[MQTT-3.8.3-2]"));
    rejects(&[0x82, 0x03, 0x00, 0x01, 0x00], Some(V5), PROTOCOL);
    let err = rejects(&[0xa2, 0x02, 0x00, 0x01], Some(V311), PROTOCOL);
    assert!(err.to_string().contains("[MQTT-3.10.3-2]"));
    rejects(&[0xa2, 0x03, 0x00, 0x01, 0x00], Some(V5), PROTOCOL);
}

#[test]
fn subscribe_options_reserved_bits() {
    // v5: bits 6-7 reserved.
    let err = rejects(b"\x82\x07\x00\x01\x00\x00\x01a\x40", Some(V5), MALFORMED);
    assert!(err.to_string().contains("[MQTT-3.8.3-5]"));
    // v3: bits 2-7 reserved, so No Local is malformed there.
    let err = rejects(b"\x82\x06\x00\x01\x00\x01a\x04", Some(V311), MALFORMED);
    assert!(err.to_string().contains("[MQTT-3.8.3-4]"));
    assert!(from_bytes(b"\x82\x07\x00\x01\x00\x00\x01a\x04", Some(V5)).is_ok());
}

#[test]
fn subscribe_qos_3_and_retain_handling_3() {
    rejects(b"\x82\x07\x00\x01\x00\x00\x01a\x03", Some(V5), PROTOCOL);
    rejects(b"\x82\x06\x00\x01\x00\x01a\x03", Some(V311), MALFORMED);
    rejects(b"\x82\x07\x00\x01\x00\x00\x01a\x30", Some(V5), PROTOCOL);
}

#[test]
fn topic_filters_are_only_checked_as_utf8() {
    // Wildcard placement is the pub/sub crate's job: "a/#/b" decodes.
    assert!(from_bytes(b"\x82\x0a\x00\x01\x00\x05a/#/b\x00", Some(V311)).is_ok());
}

// ------------------------------------------------------------------ acknowledgements

#[test]
fn reason_codes_are_checked_per_packet() {
    rejects(&[0x40, 0x03, 0x00, 0x01, 0x92], Some(V5), PROTOCOL); // PUBACK can't say "not found"
    rejects(&[0x62, 0x03, 0x00, 0x01, 0x10], Some(V5), PROTOCOL); // PUBREL can't say "no subscribers"
    rejects(&[0x90, 0x04, 0x00, 0x01, 0x00, 0x03], Some(V5), PROTOCOL); // SUBACK granted QoS 3
    rejects(&[0x90, 0x03, 0x00, 0x01, 0x87], Some(V311), MALFORMED); // 3.1.1: only 0x80
    rejects(&[0xb0, 0x04, 0x00, 0x01, 0x00, 0x01], Some(V5), PROTOCOL);
    rejects(&[0xe0, 0x01, 0x11], Some(V5), PROTOCOL); // DISCONNECT
    rejects(&[0xf0, 0x02, 0x01, 0x00], Some(V5), PROTOCOL); // AUTH
    rejects(&[0x20, 0x03, 0x00, 0x04, 0x00], Some(V5), PROTOCOL); // CONNACK with "disconnect with will"
}

#[test]
fn auth_reason_code_needs_the_property_length() {
    rejects(&[0xf0, 0x01, 0x19], Some(V5), MALFORMED);
    assert!(from_bytes(&[0xf0, 0x02, 0x19, 0x00], Some(V5)).is_ok());
}

#[test]
fn acks_need_reason_codes_in_v5() {
    rejects(&[0x90, 0x03, 0x00, 0x01, 0x00], Some(V5), PROTOCOL);
    rejects(&[0x90, 0x02, 0x00, 0x01], Some(V311), PROTOCOL);
    rejects(&[0xb0, 0x03, 0x00, 0x01, 0x00], Some(V5), PROTOCOL);
}

#[test]
fn connack_rules() {
    let err = rejects(&[0x20, 0x02, 0x02, 0x00], Some(V311), MALFORMED);
    assert!(err.to_string().contains("[MQTT-3.2.2-1]"));
    let err = rejects(&[0x20, 0x03, 0x01, 0x80, 0x00], Some(V5), PROTOCOL);
    assert!(err.to_string().contains("[MQTT-3.2.2-6]"));
    rejects(&[0x20, 0x02, 0x01, 0x05], Some(V311), PROTOCOL);
    rejects(&[0x20, 0x02, 0x00, 0x06], Some(V311), MALFORMED);
    // MQTT 3.1 has no Session Present flag: the byte is ignored.
    assert!(from_bytes(&[0x20, 0x02, 0xff, 0x00], Some(V3_1)).is_ok());
}

#[test]
fn unknown_packet_needs_no_body_to_fail() {
    // A reserved type is refused even when the rest never arrives.
    assert!(decode_slice(&[0x00, 0x80], Some(V5), 10).is_err());
}
