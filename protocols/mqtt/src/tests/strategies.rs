//! Proptest strategies for every packet, valid by construction for the version they are drawn
//! for, and [`normalise`], the lossy MQTT 3.x mapping the encoder applies, for comparisons.

use bytes::Bytes;
use proptest::collection::vec;
use proptest::option::of;
use proptest::prelude::*;
use proptest::sample::select;

use crate::*;

/// Any string MQTT allows: UTF-8 without U+0000 (short, to keep cases fast).
fn text() -> impl Strategy<Value = String> {
    "[^\u{0}]{0,8}"
}

/// A non-empty topic name without wildcards.
fn topic() -> impl Strategy<Value = String> {
    "[a-z0-9/ $\u{e9}\u{1f600}]{1,10}"
}

fn bin() -> impl Strategy<Value = Bytes> {
    vec(any::<u8>(), 0..12).prop_map(Bytes::from)
}

fn user() -> impl Strategy<Value = UserProperties> {
    vec((text(), text()), 0..3)
}

fn packet_id() -> impl Strategy<Value = PacketId> {
    (1..=u16::MAX).prop_map(|id| PacketId::new(id).unwrap())
}

fn qos() -> impl Strategy<Value = QoS> {
    select(vec![QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce])
}

fn sub_id() -> impl Strategy<Value = u32> {
    1..=268_435_455u32
}

fn reason(kind: PacketType) -> impl Strategy<Value = ReasonCode> {
    let allowed: Vec<ReasonCode> = (0..=255u8).map(ReasonCode).filter(|c| c.is_allowed_in(kind)).collect();
    select(allowed)
}

fn ack_props() -> impl Strategy<Value = AckProperties> {
    (of(text()), user()).prop_map(|(reason_string, user_properties)| AckProperties {
        reason_string,
        user_properties,
    })
}

fn will() -> impl Strategy<Value = Will> {
    let props = (
        of(any::<u32>()),
        of(0..=1u8),
        of(any::<u32>()),
        of(text()),
        of(topic()),
        of(bin()),
        user(),
    )
        .prop_map(
            |(delay, pfi, expiry, content_type, response_topic, correlation, user)| WillProperties {
                will_delay_interval: delay,
                payload_format_indicator: pfi,
                message_expiry_interval: expiry,
                content_type,
                response_topic,
                correlation_data: correlation,
                user_properties: user,
            },
        );
    (topic(), bin(), qos(), any::<bool>(), props).prop_map(|(topic, payload, qos, retain, properties)| Will {
        topic,
        payload,
        qos,
        retain,
        properties,
    })
}

fn connect() -> impl Strategy<Value = Connect> {
    let version = select(vec![
        ProtocolVersion::V3_1,
        ProtocolVersion::V3_1_1,
        ProtocolVersion::V5,
    ]);
    let auth = of((text(), of(bin()))).prop_map(|auth| match auth {
        Some((method, data)) => (Some(method), data),
        None => (None, None),
    });
    let props = (
        (of(any::<u32>()), of(1..=u16::MAX), of(1..=u32::MAX), of(any::<u16>())),
        (of(any::<bool>()), of(any::<bool>()), user(), auth),
    )
        .prop_map(
            |((expiry, receive, packet_size, alias_max), (rri, rpi, user, (method, data)))| ConnectProperties {
                session_expiry_interval: expiry,
                receive_maximum: receive,
                maximum_packet_size: packet_size,
                topic_alias_maximum: alias_max,
                request_response_information: rri,
                request_problem_information: rpi,
                user_properties: user,
                authentication_method: method,
                authentication_data: data,
            },
        );
    (
        version,
        any::<bool>(),
        any::<u16>(),
        text(),
        of(will()),
        of(text()),
        of(bin()),
        props,
    )
        .prop_map(
            |(protocol, clean_start, keep_alive, client_id, will, mut username, password, properties)| {
                // Before MQTT 5 a password needs a user name.
                if !protocol.is_v5() && password.is_some() && username.is_none() {
                    username = Some(String::new());
                }
                Connect {
                    protocol,
                    clean_start,
                    keep_alive,
                    client_id,
                    will,
                    username,
                    password,
                    properties,
                }
            },
        )
}

fn connack() -> impl Strategy<Value = ConnAck> {
    let props = (
        (
            of(any::<u32>()),
            of(1..=u16::MAX),
            of(qos()),
            of(any::<bool>()),
            of(1..=u32::MAX),
            of(text()),
        ),
        (
            of(any::<u16>()),
            of(text()),
            user(),
            of(any::<bool>()),
            of(any::<bool>()),
            of(any::<bool>()),
        ),
        (of(any::<u16>()), of(text()), of(text()), of(text()), of(bin())),
    )
        .prop_map(|(a, b, c)| ConnAckProperties {
            session_expiry_interval: a.0,
            receive_maximum: a.1,
            maximum_qos: a.2,
            retain_available: a.3,
            maximum_packet_size: a.4,
            assigned_client_identifier: a.5,
            topic_alias_maximum: b.0,
            reason_string: b.1,
            user_properties: b.2,
            wildcard_subscription_available: b.3,
            subscription_identifiers_available: b.4,
            shared_subscription_available: b.5,
            server_keep_alive: c.0,
            response_information: c.1,
            server_reference: c.2,
            authentication_method: c.3,
            authentication_data: c.4,
        });
    (any::<bool>(), reason(PacketType::ConnAck), props).prop_map(|(session_present, reason_code, properties)| ConnAck {
        session_present,
        reason_code,
        properties,
    })
}

fn publish(version: ProtocolVersion) -> impl Strategy<Value = Publish> {
    let props = (
        (of(0..=1u8), of(any::<u32>()), of(1..=u16::MAX), of(topic())),
        (of(bin()), user(), vec(sub_id(), 0..3), of(text())),
    )
        .prop_map(
            |((pfi, expiry, alias, response), (correlation, user, sub_ids, content))| PublishProperties {
                payload_format_indicator: pfi,
                message_expiry_interval: expiry,
                topic_alias: alias,
                response_topic: response,
                correlation_data: correlation,
                user_properties: user,
                subscription_identifiers: sub_ids,
                content_type: content,
            },
        );
    let topic = if version.is_v5() {
        prop_oneof![topic(), Just(String::new())].boxed()
    } else {
        topic().boxed()
    };
    (qos(), any::<bool>(), any::<bool>(), topic, packet_id(), bin(), props).prop_map(
        |(qos, dup, retain, topic, id, payload, mut properties)| {
            let at_most_once = qos == QoS::AtMostOnce;
            if topic.is_empty() && properties.topic_alias.is_none() {
                properties.topic_alias = Some(1);
            }
            Publish {
                dup: dup && !at_most_once,
                qos,
                retain,
                topic,
                packet_id: (!at_most_once).then_some(id),
                payload,
                properties,
            }
        },
    )
}

fn pub_resp(kind: PacketType) -> impl Strategy<Value = PubResp> {
    (packet_id(), reason(kind), ack_props()).prop_map(|(packet_id, reason_code, properties)| PubResp {
        packet_id,
        reason_code,
        properties,
    })
}

fn options() -> impl Strategy<Value = SubscriptionOptions> {
    let rh = select(vec![
        RetainHandling::SendAtSubscribe,
        RetainHandling::SendAtSubscribeIfNew,
        RetainHandling::DoNotSend,
    ]);
    (qos(), any::<bool>(), any::<bool>(), rh).prop_map(|(qos, no_local, rap, retain_handling)| SubscriptionOptions {
        qos,
        no_local,
        retain_as_published: rap,
        retain_handling,
    })
}

fn subscribe() -> impl Strategy<Value = Subscribe> {
    let props = (of(sub_id()), user()).prop_map(|(subscription_identifier, user_properties)| SubscribeProperties {
        subscription_identifier,
        user_properties,
    });
    (packet_id(), vec((text(), options()), 1..4), props).prop_map(|(packet_id, filters, properties)| Subscribe {
        packet_id,
        filters,
        properties,
    })
}

fn suback() -> impl Strategy<Value = SubAck> {
    (packet_id(), vec(reason(PacketType::SubAck), 1..4), ack_props()).prop_map(
        |(packet_id, reason_codes, properties)| SubAck {
            packet_id,
            reason_codes,
            properties,
        },
    )
}

fn unsubscribe() -> impl Strategy<Value = Unsubscribe> {
    (packet_id(), vec(text(), 1..4), user()).prop_map(|(packet_id, filters, user_properties)| Unsubscribe {
        packet_id,
        filters,
        properties: UnsubscribeProperties { user_properties },
    })
}

fn unsuback() -> impl Strategy<Value = UnsubAck> {
    (packet_id(), vec(reason(PacketType::UnsubAck), 1..4), ack_props()).prop_map(
        |(packet_id, reason_codes, properties)| UnsubAck {
            packet_id,
            reason_codes,
            properties,
        },
    )
}

fn disconnect() -> impl Strategy<Value = Disconnect> {
    let props = (of(any::<u32>()), of(text()), user(), of(text())).prop_map(|(expiry, reason, user, server)| {
        DisconnectProperties {
            session_expiry_interval: expiry,
            reason_string: reason,
            user_properties: user,
            server_reference: server,
        }
    });
    (reason(PacketType::Disconnect), props).prop_map(|(reason_code, properties)| Disconnect {
        reason_code,
        properties,
    })
}

fn auth() -> impl Strategy<Value = Auth> {
    let props = (of(text()), of(bin()), of(text()), user()).prop_map(|(method, data, reason, user)| AuthProperties {
        authentication_method: method,
        authentication_data: data,
        reason_string: reason,
        user_properties: user,
    });
    (reason(PacketType::Auth), props).prop_map(|(reason_code, properties)| Auth {
        reason_code,
        properties,
    })
}

/// Any packet that can be encoded for `version`.
pub(crate) fn packet(version: ProtocolVersion) -> BoxedStrategy<Packet> {
    let common = prop_oneof![
        connect().prop_map(|c| Packet::Connect(Box::new(c))),
        connack().prop_map(Packet::ConnAck),
        publish(version).prop_map(Packet::Publish),
        pub_resp(PacketType::PubAck).prop_map(Packet::PubAck),
        pub_resp(PacketType::PubRec).prop_map(Packet::PubRec),
        pub_resp(PacketType::PubRel).prop_map(Packet::PubRel),
        pub_resp(PacketType::PubComp).prop_map(Packet::PubComp),
        subscribe().prop_map(Packet::Subscribe),
        suback().prop_map(Packet::SubAck),
        unsubscribe().prop_map(Packet::Unsubscribe),
        unsuback().prop_map(Packet::UnsubAck),
        Just(Packet::PingReq),
        Just(Packet::PingResp),
        disconnect().prop_map(Packet::Disconnect),
    ];
    if version.is_v5() {
        prop_oneof![common, auth().prop_map(Packet::Auth)].boxed()
    } else {
        common.boxed()
    }
}

/// What decoding the encoding of `packet` for `version` gives back: MQTT 3.x loses properties,
/// reason codes and MQTT 5 subscription options; ConnAck drops flags and values the
/// specification does not let it send.
pub(crate) fn normalise(packet: Packet, version: ProtocolVersion) -> Packet {
    let v5 = version.is_v5();
    match packet {
        Packet::Connect(mut connect) => {
            if !connect.protocol.is_v5() {
                connect.properties = ConnectProperties::default();
                if let Some(will) = &mut connect.will {
                    will.properties = WillProperties::default();
                }
            }
            Packet::Connect(connect)
        }
        Packet::ConnAck(mut connack) => {
            connack.session_present &= connack.reason_code == ReasonCode::SUCCESS && version != ProtocolVersion::V3_1;
            if v5 {
                if connack.properties.maximum_qos == Some(QoS::ExactlyOnce) {
                    connack.properties.maximum_qos = None;
                }
            } else {
                connack.reason_code = ReasonCode::from_v3_connack(connack.reason_code.to_v3_connack()).unwrap();
                connack.properties = ConnAckProperties::default();
            }
            Packet::ConnAck(connack)
        }
        Packet::Publish(mut publish) => {
            if !v5 {
                publish.properties = PublishProperties::default();
            }
            Packet::Publish(publish)
        }
        Packet::PubAck(resp) => Packet::PubAck(normalise_resp(resp, v5)),
        Packet::PubRec(resp) => Packet::PubRec(normalise_resp(resp, v5)),
        Packet::PubRel(resp) => Packet::PubRel(normalise_resp(resp, v5)),
        Packet::PubComp(resp) => Packet::PubComp(normalise_resp(resp, v5)),
        Packet::Subscribe(mut subscribe) => {
            if !v5 {
                subscribe.properties = SubscribeProperties::default();
                for (_, options) in &mut subscribe.filters {
                    *options = SubscriptionOptions::new(options.qos);
                }
            }
            Packet::Subscribe(subscribe)
        }
        Packet::SubAck(mut suback) => {
            if !v5 {
                suback.properties = AckProperties::default();
                for code in &mut suback.reason_codes {
                    if code.0 > 0x02 {
                        *code = ReasonCode::UNSPECIFIED_ERROR;
                    }
                }
            }
            Packet::SubAck(suback)
        }
        Packet::Unsubscribe(mut unsubscribe) => {
            if !v5 {
                unsubscribe.properties = UnsubscribeProperties::default();
            }
            Packet::Unsubscribe(unsubscribe)
        }
        Packet::UnsubAck(unsuback) if !v5 => Packet::UnsubAck(UnsubAck::new(unsuback.packet_id, vec![])),
        Packet::Disconnect(_) if !v5 => Packet::Disconnect(Disconnect::default()),
        other => other,
    }
}

fn normalise_resp(resp: PubResp, v5: bool) -> PubResp {
    if v5 {
        resp
    } else {
        PubResp::new(resp.packet_id)
    }
}
