//! Message-layer rules: deduplication, pings, format errors, option checks, piggy-backed and
//! separate responses, and the server acting as a client.

use super::*;
use crate::{Notification, OutgoingRequest, Response, SEPARATE_RESPONSE_KEY};

#[test]
fn piggybacked_response_echoes_mid_and_token() {
    let mut h = Harness::new();
    let req = one_request(h.send(&con_get(0x1234, &["a", "b"])));
    assert_eq!(req.path, vec!["a", "b"]);
    assert_eq!(req.method, RequestType::Get);
    assert!(req.meta.confirmable());
    assert_eq!(req.meta.message_id(), 0x1234);
    assert_eq!(req.meta.uri(), "/a/b");
    let p = one_sent(&h.respond(&req, Response::default().with_payload("hi")));
    assert_eq!(p.header.get_type(), MessageType::Acknowledgement);
    assert_eq!(p.header.message_id, 0x1234);
    assert_eq!(p.get_token(), &[0xAB, 0x34]);
    assert_eq!(code(&p), resp_code(ResponseType::Content));
    assert_eq!(p.payload, b"hi");
}

#[test]
fn duplicate_con_after_response_replays_exact_bytes() {
    let mut h = Harness::new();
    let dgram = con_get(7, &["x"]).to_bytes().unwrap();
    let req = one_request(h.feed(&dgram));
    let first = h.respond(&req, Response::default().with_payload("v1"));
    let again = h.feed(&dgram);
    assert_eq!(again, first, "duplicate must get the same bytes");
    assert!(requests(again).is_empty());
}

#[test]
fn duplicate_con_in_processing_gets_empty_ack_then_separate_response() {
    let mut h = Harness::new();
    let dgram = con_get(8, &["slow"]).to_bytes().unwrap();
    let req = one_request(h.feed(&dgram));
    let dup = h.feed(&dgram);
    assert_eq!(
        dup,
        vec![Event::Transmit(vec![0x60, 0, 0, 8])],
        "empty ACK for a duplicate in processing"
    );
    let p = one_sent(&h.respond(&req, Response::default()));
    assert_eq!(p.header.get_type(), MessageType::Confirmable, "separate response");
    assert_ne!(p.header.message_id, 8);
    assert_eq!(p.get_token(), req.meta.token());
    // A later duplicate of the request gets the empty ACK again, not the response.
    assert_eq!(h.feed(&dgram), vec![Event::Transmit(vec![0x60, 0, 0, 8])]);
}

#[test]
fn duplicate_non_is_dropped() {
    let mut h = Harness::new();
    let dgram = request(MessageType::NonConfirmable, RequestType::Get, 9, &[1], &["n"])
        .to_bytes()
        .unwrap();
    let req = one_request(h.feed(&dgram));
    assert!(!req.meta.confirmable());
    assert!(h.feed(&dgram).is_empty());
    let p = one_sent(&h.respond(&req, Response::default()));
    assert_eq!(p.header.get_type(), MessageType::NonConfirmable);
    assert_ne!(p.header.message_id, 9);
    assert!(h.feed(&dgram).is_empty(), "still a duplicate after the response");
}

#[test]
fn second_respond_is_ignored() {
    let mut h = Harness::new();
    let req = one_request(h.send(&con_get(1, &["a"])));
    assert_eq!(sent(&h.respond(&req, Response::default())).len(), 1);
    assert!(h.respond(&req, Response::default()).is_empty());
}

#[test]
fn dedup_is_capped_oldest_first_and_expires() {
    let cfg = Config {
        max_dedup_entries: 3,
        ..Config::default()
    };
    let mut h = Harness::with(cfg);
    for mid in 0..5u16 {
        let r = one_request(h.send(&con_get(mid, &["a"])));
        h.respond(&r, Response::default());
    }
    assert_eq!(h.peer.dedup_len(), 3);
    // mid 0 was evicted: it is new again; mid 4 is still a duplicate.
    assert_eq!(requests(h.send(&con_get(0, &["a"]))).len(), 1);
    assert!(requests(h.send(&con_get(4, &["a"]))).is_empty());
    assert!(h.peer.heap_size() > 0);
    h.advance(Duration::from_secs(248));
    assert_eq!(h.peer.dedup_len(), 0);
    assert_eq!(h.peer.heap_size(), 0, "expired entries release their memory");
    assert_eq!(requests(h.send(&con_get(4, &["a"]))).len(), 1);
}

#[test]
fn ping_gets_rst() {
    let mut h = Harness::new();
    assert_eq!(
        h.feed(&[0x40, 0x00, 0x12, 0x34]),
        vec![Event::Transmit(vec![0x70, 0x00, 0x12, 0x34])]
    );
}

#[test]
fn format_errors_rst_on_con_and_drop_otherwise() {
    let mut h = Harness::new();
    let rst = |mid: u8| vec![Event::Transmit(vec![0x70, 0, 0, mid])];
    // Payload marker with no payload.
    assert_eq!(h.feed(&[0x40, 0x01, 0, 1, 0xFF]), rst(1));
    assert!(h.feed(&[0x50, 0x01, 0, 2, 0xFF]).is_empty());
    // Token length 9.
    assert_eq!(h.feed(&[0x49, 0x01, 0, 3, 1, 2, 3, 4, 5, 6, 7, 8, 9]), rst(3));
    // Truncated option.
    assert_eq!(h.feed(&[0x40, 0x01, 0, 4, 0xB5, b'a']), rst(4));
    // Empty message with a token.
    assert_eq!(h.feed(&[0x41, 0x00, 0, 5, 0x77]), rst(5));
    // ACK carrying a request, RST carrying a response: dropped.
    assert!(h.feed(&[0x60, 0x01, 0, 6]).is_empty());
    assert!(h.feed(&[0x70, 0x45, 0, 7]).is_empty());
    // Version 2 is ignored even when Confirmable (RFC 7252 §3).
    assert!(h.feed(&[0x80, 0x01, 0, 8]).is_empty());
    // Too short for a header.
    assert!(h.feed(&[0x40, 0x01, 0]).is_empty());
    assert!(h.feed(&[]).is_empty());
    // Reserved class 7 on a CON: RST; on a NON: dropped.
    assert_eq!(h.feed(&[0x40, 0xE1, 0, 9]), rst(9));
    assert!(h.feed(&[0x50, 0xE1, 0, 10]).is_empty());
    assert!(h.peer.is_quiet());
}

#[test]
fn unknown_critical_option_is_4_02_and_not_surfaced() {
    let mut h = Harness::new();
    let mut p = con_get(20, &["a"]);
    p.add_option(2049u16.into(), vec![1]);
    let ev = h.send(&p);
    assert!(requests(ev.clone()).is_empty());
    let r = one_sent(&ev);
    assert_eq!(r.header.get_type(), MessageType::Acknowledgement);
    assert_eq!(code(&r), resp_code(ResponseType::BadOption));
    // NON request: NON 4.02.
    let mut p = request(MessageType::NonConfirmable, RequestType::Get, 21, &[], &["a"]);
    p.add_option(9u16.into(), vec![]); // OSCORE: critical, not understood here.
    let r = one_sent(&h.send(&p));
    assert_eq!(r.header.get_type(), MessageType::NonConfirmable);
    assert_eq!(code(&r), resp_code(ResponseType::BadOption));
    // A repeated Accept (critical, not repeatable) is refused too.
    let mut p = con_get(22, &["a"]);
    p.add_option(option::ACCEPT.into(), vec![0]);
    p.add_option(option::ACCEPT.into(), vec![50]);
    assert_eq!(code(&one_sent(&h.send(&p))), resp_code(ResponseType::BadOption));
}

#[test]
fn unknown_elective_option_is_ignored_and_known_ones_parsed() {
    let mut h = Harness::new();
    let mut p = con_get(23, &["a"]);
    p.add_option(2048u16.into(), vec![1]);
    p.add_option(option::NO_RESPONSE.into(), vec![2]);
    p.add_option(option::URI_QUERY.into(), b"k=v".to_vec());
    p.add_option(option::OBSERVE.into(), vec![]);
    p.add_option(option::CONTENT_FORMAT.into(), vec![50]);
    p.add_option(option::ACCEPT.into(), vec![0x2D, 0x16]);
    p.add_option(option::URI_HOST.into(), b"example".to_vec());
    p.payload = b"body".to_vec();
    let r = one_request(h.send(&p));
    assert_eq!(r.query, vec!["k=v"]);
    assert_eq!(r.observe, Some(0));
    assert_eq!(r.content_format, Some(50));
    assert_eq!(r.accept, Some(11542));
    assert_eq!(r.payload, b"body");
    assert_eq!(r.meta.uri(), "/a?k=v");
}

#[test]
fn proxy_uri_is_5_05() {
    let mut h = Harness::new();
    let mut p = con_get(30, &[]);
    p.add_option(option::PROXY_URI.into(), b"coap://elsewhere/x".to_vec());
    let ev = h.send(&p);
    assert!(requests(ev.clone()).is_empty());
    assert_eq!(code(&one_sent(&ev)), resp_code(ResponseType::ProxyingNotSupported));
    let mut p = con_get(31, &[]);
    p.add_option(option::PROXY_SCHEME.into(), b"http".to_vec());
    assert_eq!(
        code(&one_sent(&h.send(&p))),
        resp_code(ResponseType::ProxyingNotSupported)
    );
}

#[test]
fn unknown_method_is_4_05_and_bad_utf8_is_4_00() {
    let mut h = Harness::new();
    let r = one_sent(&h.feed(&[0x40, 0x08, 0, 40]));
    assert_eq!(code(&r), resp_code(ResponseType::MethodNotAllowed));
    let mut p = con_get(41, &[]);
    p.add_option(option::URI_PATH.into(), vec![0xFF, 0xFE]);
    let ev = h.send(&p);
    assert!(requests(ev.clone()).is_empty());
    assert_eq!(code(&one_sent(&ev)), resp_code(ResponseType::BadRequest));
}

#[test]
fn separate_response_after_ack_empty_is_con_and_retransmitted() {
    let mut h = Harness::new();
    let req = one_request(h.send(&con_get(50, &["slow"])));
    let mut out = Vec::new();
    h.peer.ack_empty(&req.meta, &mut out);
    assert_eq!(out, vec![Event::Transmit(vec![0x60, 0, 0, 50])]);
    out.clear();
    h.peer.ack_empty(&req.meta, &mut out);
    assert!(out.is_empty(), "only one empty ACK");
    let p = one_sent(&h.respond(&req, Response::default().with_payload("late")));
    assert_eq!(p.header.get_type(), MessageType::Confirmable);
    assert_eq!(p.payload, b"late");
    assert_eq!(h.peer.outstanding(), 1);
    let again = one_sent(&h.advance(Duration::from_secs(3)));
    assert_eq!(again, p, "retransmitted unchanged");
    let mut ack = Packet::new();
    ack.header.set_type(MessageType::Acknowledgement);
    ack.header.code = MessageClass::Empty;
    ack.header.message_id = p.header.message_id;
    assert_eq!(
        h.send(&ack),
        vec![Event::Delivered {
            key: SEPARATE_RESPONSE_KEY
        }]
    );
    assert_eq!(h.peer.outstanding(), 0);
}

#[test]
fn separate_response_to_non_request_is_non() {
    let mut h = Harness::new();
    let req = one_request(h.send(&request(
        MessageType::NonConfirmable,
        RequestType::Get,
        51,
        &[5],
        &["x"],
    )));
    let mut out = Vec::new();
    h.peer.ack_empty(&req.meta, &mut out);
    assert!(out.is_empty());
    let p = one_sent(&h.respond(&req, Response::default()));
    assert_eq!(p.header.get_type(), MessageType::NonConfirmable);
    assert_eq!(h.peer.outstanding(), 0);
}

fn notification(confirmable: bool, key: u64, body: &[u8]) -> Notification {
    Notification {
        token: vec![0x0B],
        confirmable,
        response: Response::default()
            .with_payload(body.to_vec())
            .with_observe(12)
            .with_content_format(0),
        key,
        uri: "/obs".into(),
    }
}

#[test]
fn con_notification_ack_is_delivered_rst_is_rejected() {
    let mut h = Harness::new();
    let mut out = Vec::new();
    let mid = h.peer.notify(h.now, notification(true, 77, b"21"), &mut out);
    let p = one_sent(&out);
    assert_eq!(p.header.get_type(), MessageType::Confirmable);
    assert_eq!(p.header.message_id, mid);
    assert_eq!(p.get_observe_value(), Some(Ok(12)));
    assert_eq!(p.get_token(), &[0x0B]);
    // An ACK for an unknown mid is ignored.
    let [hi, lo] = mid.wrapping_add(1).to_be_bytes();
    assert!(h.feed(&[0x60, 0, hi, lo]).is_empty());
    let [hi, lo] = mid.to_be_bytes();
    assert_eq!(h.feed(&[0x60, 0, hi, lo]), vec![Event::Delivered { key: 77 }]);
    assert!(h.feed(&[0x60, 0, hi, lo]).is_empty(), "second ACK ignored");

    let mut out = Vec::new();
    let mid = h.peer.notify(h.now, notification(true, 78, b"22"), &mut out);
    let [hi, lo] = mid.to_be_bytes();
    assert_eq!(h.feed(&[0x70, 0, hi, lo]), vec![Event::Rejected { key: 78 }]);
    assert!(h.peer.is_quiet());
}

#[test]
fn rst_to_non_notification_is_rejected() {
    let mut h = Harness::new();
    let mut out = Vec::new();
    let mid = h.peer.notify(h.now, notification(false, 5, b"x"), &mut out);
    assert_eq!(one_sent(&out).header.get_type(), MessageType::NonConfirmable);
    assert_eq!(h.peer.outstanding(), 0);
    let [hi, lo] = mid.to_be_bytes();
    assert_eq!(h.feed(&[0x70, 0, hi, lo]), vec![Event::Rejected { key: 5 }]);
}

#[test]
fn outstanding_con_cap_refuses_with_timed_out() {
    let mut h = Harness::new();
    let mut out = Vec::new();
    for k in 0..crate::MAX_OUTSTANDING as u64 {
        h.peer.notify(h.now, notification(true, k, b"x"), &mut out);
    }
    assert_eq!(h.peer.outstanding(), crate::MAX_OUTSTANDING);
    assert!(!h.peer.can_send_con());
    out.clear();
    h.peer.notify(h.now, notification(true, 999, b"x"), &mut out);
    assert_eq!(out, vec![Event::TimedOut { key: 999 }]);
    // NON still goes out.
    out.clear();
    h.peer.notify(h.now, notification(false, 1000, b"x"), &mut out);
    assert_eq!(sent(&out).len(), 1);
}

fn outgoing_get(key: u64, confirmable: bool) -> OutgoingRequest {
    let mut r = OutgoingRequest::new(RequestType::Get, vec!["3".into(), "0".into(), "1".into()], key);
    r.confirmable = confirmable;
    r.accept = Some(11542);
    r
}

fn response_to(req: &Packet, t: MessageType, mid: u16, c: ResponseType) -> Packet {
    let mut p = Packet::new();
    p.header.set_type(t);
    p.header.code = MessageClass::Response(c);
    p.header.message_id = mid;
    p.set_token(req.get_token().to_vec());
    p
}

#[test]
fn send_request_piggybacked_response() {
    let mut h = Harness::new();
    let mut out = Vec::new();
    let token = h.peer.send_request(h.now, outgoing_get(3, true), &mut out);
    let req = one_sent(&out);
    assert_eq!(req.get_token(), token.as_slice());
    assert_eq!(token.len(), 8);
    assert_eq!(req.header.get_type(), MessageType::Confirmable);
    assert_eq!(code(&req), MessageClass::Request(RequestType::Get));
    assert_eq!(uint_opt(&req, option::ACCEPT), Some(11542));
    assert!(!h.peer.is_quiet());
    let mut ack = response_to(
        &req,
        MessageType::Acknowledgement,
        req.header.message_id,
        ResponseType::Content,
    );
    ack.payload = b"42".to_vec();
    let ev = h.send(&ack);
    assert_eq!(ev.len(), 2);
    assert_eq!(ev[0], Event::Delivered { key: 3 });
    let Event::Response { key: 3, packet } = &ev[1] else {
        panic!("{ev:?}")
    };
    assert_eq!(packet.payload, b"42");
    assert!(h.peer.is_quiet());
}

#[test]
fn send_request_separate_response_acked_and_surfaced_once() {
    let mut h = Harness::new();
    let mut out = Vec::new();
    h.peer.send_request(h.now, outgoing_get(4, true), &mut out);
    let req = one_sent(&out);
    let [hi, lo] = req.header.message_id.to_be_bytes();
    assert_eq!(h.feed(&[0x60, 0, hi, lo]), vec![Event::Delivered { key: 4 }]);
    assert_eq!(h.peer.outstanding(), 0);
    let resp = response_to(&req, MessageType::Confirmable, 0x5555, ResponseType::Content);
    let ev = h.send(&resp);
    assert_eq!(ev[0], Event::Transmit(vec![0x60, 0, 0x55, 0x55]));
    assert!(matches!(&ev[1], Event::Response { key: 4, .. }));
    assert_eq!(ev.len(), 2);
    // The retransmitted response is ACKed again but not surfaced again.
    assert_eq!(h.send(&resp), vec![Event::Transmit(vec![0x60, 0, 0x55, 0x55])]);
    assert!(h.peer.is_quiet());
}

#[test]
fn separate_response_before_ack_counts_as_ack() {
    let mut h = Harness::new();
    let mut out = Vec::new();
    h.peer.send_request(h.now, outgoing_get(6, true), &mut out);
    let req = one_sent(&out);
    let resp = response_to(&req, MessageType::NonConfirmable, 0x0101, ResponseType::NotFound);
    let ev = h.send(&resp);
    assert_eq!(ev[0], Event::Delivered { key: 6 });
    assert!(matches!(&ev[1], Event::Response { key: 6, .. }));
    assert_eq!(h.peer.outstanding(), 0);
    assert!(h.advance(Duration::from_secs(10)).is_empty(), "no retransmission");
}

#[test]
fn non_request_response_and_rst() {
    let mut h = Harness::new();
    let mut out = Vec::new();
    h.peer.send_request(h.now, outgoing_get(8, false), &mut out);
    let req = one_sent(&out);
    assert_eq!(req.header.get_type(), MessageType::NonConfirmable);
    assert_eq!(h.peer.outstanding(), 0);
    let resp = response_to(&req, MessageType::NonConfirmable, 0x0202, ResponseType::Content);
    assert!(matches!(&h.send(&resp)[..], [Event::Response { key: 8, .. }]));
    // RST to a NON request.
    let mut out = Vec::new();
    h.peer.send_request(h.now, outgoing_get(9, false), &mut out);
    let [hi, lo] = one_sent(&out).header.message_id.to_be_bytes();
    assert_eq!(h.feed(&[0x70, 0, hi, lo]), vec![Event::Rejected { key: 9 }]);
    assert!(h.peer.is_quiet());
}

#[test]
fn unknown_token_response_con_rst_non_dropped() {
    let mut h = Harness::new();
    let mut p = Packet::new();
    p.header.set_type(MessageType::Confirmable);
    p.header.code = MessageClass::Response(ResponseType::Content);
    p.header.message_id = 0x0909;
    p.set_token(vec![1, 2, 3]);
    assert_eq!(h.send(&p), vec![Event::Transmit(vec![0x70, 0, 0x09, 0x09])]);
    p.header.set_type(MessageType::NonConfirmable);
    p.header.message_id = 0x0A0A;
    assert!(h.send(&p).is_empty());
}

#[test]
fn observation_of_the_peer_keeps_token_until_cancelled() {
    let mut h = Harness::new();
    let mut out = Vec::new();
    let mut r = outgoing_get(10, true);
    r.observe = Some(0);
    let token = h.peer.send_request(h.now, r, &mut out);
    let req = one_sent(&out);
    assert_eq!(req.get_observe_value(), Some(Ok(0)));
    let mut ack = response_to(
        &req,
        MessageType::Acknowledgement,
        req.header.message_id,
        ResponseType::Content,
    );
    ack.set_observe_value(1);
    assert_eq!(h.send(&ack).len(), 2);
    for seq in 2..5u16 {
        let mut n = response_to(&req, MessageType::NonConfirmable, 0x1000 + seq, ResponseType::Content);
        n.set_observe_value(u32::from(seq));
        assert!(matches!(&h.send(&n)[..], [Event::Response { key: 10, .. }]));
    }
    // Long after exchange_lifetime, notifications still match.
    h.advance(Duration::from_secs(1000));
    let mut n = response_to(&req, MessageType::Confirmable, 0x2000, ResponseType::Content);
    n.set_observe_value(9);
    assert!(matches!(
        &h.send(&n)[..],
        [Event::Transmit(_), Event::Response { key: 10, .. }]
    ));
    assert!(h.peer.cancel_request(&token));
    n.header.message_id = 0x2001;
    assert_eq!(
        h.send(&n),
        vec![Event::Transmit(vec![0x70, 0, 0x20, 0x01])],
        "cancelled: RST"
    );
}

#[test]
fn observe_registration_surfaces_observe_and_notifications_carry_it() {
    let mut h = Harness::new();
    let mut p = con_get(60, &["temp"]);
    p.add_option(option::OBSERVE.into(), vec![]);
    let req = one_request(h.send(&p));
    assert_eq!(req.observe, Some(0));
    let ack = one_sent(&h.respond(&req, Response::default().with_observe(1).with_payload("20")));
    assert_eq!(ack.get_observe_value(), Some(Ok(1)));
    let mut out = Vec::new();
    let n = Notification {
        token: req.meta.token().to_vec(),
        confirmable: false,
        response: Response::default().with_observe(2).with_payload("21"),
        key: 1,
        uri: req.meta.uri().to_owned(),
    };
    h.peer.notify(h.now, n, &mut out);
    let p = one_sent(&out);
    assert_eq!(p.get_token(), req.meta.token());
    assert_eq!(p.get_observe_value(), Some(Ok(2)));
}

#[test]
fn response_options_are_encoded() {
    let mut h = Harness::new();
    let req = one_request(h.send(&con_get(61, &["r"])));
    let resp = Response::new(ResponseType::Created)
        .with_location_path(vec!["rd".into(), "5".into()])
        .with_max_age(60)
        .with_etag(vec![1, 2])
        .with_content_format(40)
        .with_option(2048, vec![7])
        .with_option(option::BLOCK2, vec![0xFF]);
    let p = one_sent(&h.respond(&req, resp));
    assert_eq!(code(&p), resp_code(ResponseType::Created));
    let loc: Vec<_> = p
        .get_option(option::LOCATION_PATH.into())
        .unwrap()
        .iter()
        .cloned()
        .collect();
    assert_eq!(loc, vec![b"rd".to_vec(), b"5".to_vec()]);
    assert_eq!(uint_opt(&p, option::MAX_AGE), Some(60));
    assert_eq!(p.get_first_option(option::ETAG.into()), Some(&vec![1, 2]));
    assert_eq!(uint_opt(&p, option::CONTENT_FORMAT), Some(40));
    assert_eq!(p.get_first_option(2048u16.into()), Some(&vec![7]));
    assert_eq!(
        block(&p, option::BLOCK2),
        None,
        "managed options are dropped from extras"
    );
}

#[test]
fn body_over_max_body_becomes_5_00() {
    let cfg = Config {
        max_body: 100,
        ..Config::default()
    };
    let mut h = Harness::with(cfg);
    let req = one_request(h.send(&con_get(62, &["big"])));
    let p = one_sent(&h.respond(&req, Response::default().with_payload(vec![0; 101])));
    assert_eq!(code(&p), resp_code(ResponseType::InternalServerError));
    assert!(p.payload.is_empty());
}
