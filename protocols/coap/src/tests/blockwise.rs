//! Block-wise transfer (RFC 7959): Block1 reassembly and Block2 slicing and caching.

use super::*;
use crate::{Notification, Response};

fn put_block(mid: u16, b: BlockOpt, payload: &[u8]) -> Packet {
    let mut p = request(MessageType::Confirmable, RequestType::Put, mid, &[0x11], &["up"]);
    p.payload = payload.to_vec();
    with_block(p, option::BLOCK1, b)
}

fn b(num: u32, more: bool, szx: u8) -> BlockOpt {
    BlockOpt { num, more, szx }
}

#[test]
fn block1_in_order_reassembles_and_final_response_echoes_block1() {
    let mut h = Harness::new();
    let body: Vec<u8> = (0..300u32).map(|i| i as u8).collect();
    for (i, chunk) in body.chunks(128).take(2).enumerate() {
        let ev = h.send(&put_block(i as u16, b(i as u32, true, 3), chunk));
        let ack = one_sent(&ev);
        assert_eq!(ack.header.get_type(), MessageType::Acknowledgement);
        assert_eq!(code(&ack), resp_code(ResponseType::Continue));
        assert_eq!(block(&ack, option::BLOCK1), Some(b(i as u32, true, 3)));
        assert!(requests(ev).is_empty());
    }
    assert_eq!(h.peer.block_state().0, 1);
    let req = one_request(h.send(&put_block(2, b(2, false, 3), &body[256..])));
    assert_eq!(req.payload, body);
    assert_eq!(req.method, RequestType::Put);
    assert_eq!(h.peer.block_state().0, 0);
    let p = one_sent(&h.respond(&req, Response::new(ResponseType::Changed)));
    assert_eq!(p.header.message_id, 2);
    assert_eq!(block(&p, option::BLOCK1), Some(b(2, false, 3)));
}

#[test]
fn block1_out_of_order_is_4_08() {
    let mut h = Harness::new();
    h.send(&put_block(1, b(0, true, 0), &[1; 16]));
    let ev = h.send(&put_block(2, b(2, true, 0), &[1; 16]));
    assert_eq!(code(&one_sent(&ev)), resp_code(ResponseType::RequestEntityIncomplete));
    assert_eq!(h.peer.block_state().0, 0, "the transfer is dropped");
    // A continuation with no transfer at all.
    let ev = h.send(&put_block(3, b(1, false, 0), &[1; 4]));
    assert_eq!(code(&one_sent(&ev)), resp_code(ResponseType::RequestEntityIncomplete));
    assert!(requests(ev).is_empty());
}

#[test]
fn block1_accumulated_too_large_is_4_13_with_size1() {
    let cfg = Config {
        max_body: 40,
        ..Config::default()
    };
    let mut h = Harness::with(cfg);
    h.send(&put_block(1, b(0, true, 0), &[0; 16]));
    h.send(&put_block(2, b(1, true, 0), &[0; 16]));
    let p = one_sent(&h.send(&put_block(3, b(2, true, 0), &[0; 16])));
    assert_eq!(code(&p), resp_code(ResponseType::RequestEntityTooLarge));
    assert_eq!(uint_opt(&p, option::SIZE1), Some(40));
    assert_eq!(h.peer.block_state().0, 0);
}

#[test]
fn block1_size1_announcing_too_much_is_4_13() {
    let cfg = Config {
        max_body: 1000,
        ..Config::default()
    };
    let mut h = Harness::with(cfg);
    let mut p = put_block(1, b(0, true, 0), &[0; 16]);
    p.add_option(option::SIZE1.into(), crate::codec::encode_uint(5000));
    let ev = h.send(&p);
    let r = one_sent(&ev);
    assert_eq!(code(&r), resp_code(ResponseType::RequestEntityTooLarge));
    assert_eq!(uint_opt(&r, option::SIZE1), Some(1000));
    assert_eq!(h.peer.block_state().0, 0);
}

#[test]
fn plain_request_over_max_body_is_4_13() {
    let cfg = Config {
        max_body: 10,
        ..Config::default()
    };
    let mut h = Harness::with(cfg);
    let mut p = request(MessageType::NonConfirmable, RequestType::Post, 1, &[], &["x"]);
    p.payload = vec![0; 11];
    let ev = h.send(&p);
    assert!(requests(ev.clone()).is_empty());
    let r = one_sent(&ev);
    assert_eq!(r.header.get_type(), MessageType::NonConfirmable);
    assert_eq!(code(&r), resp_code(ResponseType::RequestEntityTooLarge));
    assert_eq!(uint_opt(&r, option::SIZE1), Some(10));
}

#[test]
fn block1_size_may_shrink_but_not_grow() {
    let mut h = Harness::new();
    h.send(&put_block(1, b(0, true, 2), &[1; 64]));
    // 64 bytes in, now 32-byte blocks: num 2.
    let ack = one_sent(&h.send(&put_block(2, b(2, true, 1), &[2; 32])));
    assert_eq!(block(&ack, option::BLOCK1), Some(b(2, true, 1)));
    let req = one_request(h.send(&put_block(3, b(3, false, 1), &[3; 5])));
    assert_eq!(req.payload, [&[1u8; 64][..], &[2; 32], &[3; 5]].concat());
    // Growing is refused.
    h.send(&put_block(4, b(0, true, 0), &[1; 16]));
    let r = one_sent(&h.send(&put_block(5, b(1, true, 1), &[1; 32])));
    assert_eq!(code(&r), resp_code(ResponseType::BadRequest));
}

#[test]
fn block1_negotiates_down_to_configured_size() {
    let cfg = Config {
        block_size: 32,
        ..Config::default()
    };
    let mut h = Harness::with(cfg);
    let ack = one_sent(&h.send(&put_block(1, b(0, true, 6), &[9; 1024])));
    assert_eq!(block(&ack, option::BLOCK1), Some(b(0, true, 1)));
    let req = one_request(h.send(&put_block(2, b(32, false, 1), &[8; 3])));
    assert_eq!(req.payload.len(), 1027);
}

#[test]
fn block1_non_final_block_of_wrong_size_is_4_00() {
    let mut h = Harness::new();
    let r = one_sent(&h.send(&put_block(1, b(0, true, 2), &[1; 10])));
    assert_eq!(code(&r), resp_code(ResponseType::BadRequest));
}

#[test]
fn block1_transfers_capped_and_expire() {
    let cfg = Config {
        max_block1_transfers: 2,
        ..Config::default()
    };
    let mut h = Harness::with(cfg);
    for (i, path) in ["a", "b", "c"].iter().enumerate() {
        let mut p = request(MessageType::Confirmable, RequestType::Put, i as u16, &[], &[path]);
        p.payload = vec![0; 16];
        h.send(&with_block(p, option::BLOCK1, b(0, true, 0)));
    }
    assert_eq!(h.peer.block_state().0, 2);
    // "a" was evicted.
    let mut p = request(MessageType::Confirmable, RequestType::Put, 10, &[], &["a"]);
    p.payload = vec![0; 4];
    let r = one_sent(&h.send(&with_block(p, option::BLOCK1, b(1, false, 0))));
    assert_eq!(code(&r), resp_code(ResponseType::RequestEntityIncomplete));
    assert!(!h.peer.is_quiet());
    assert!(h.peer.poll_timeout().is_some());
    h.advance(Duration::from_secs(248));
    assert_eq!(h.peer.block_state().0, 0);
    assert!(h.peer.is_quiet());
}

#[test]
fn block1_reserved_szx_is_4_00() {
    let mut h = Harness::new();
    let r = one_sent(&h.send(&put_block(1, b(0, true, 7), &[1; 16])));
    assert_eq!(code(&r), resp_code(ResponseType::BadRequest));
}

fn get_block(mid: u16, path: &str, want: BlockOpt) -> Packet {
    with_block(con_get(mid, &[path]), option::BLOCK2, want)
}

#[test]
fn block2_slices_caches_and_serves_follow_ups() {
    let cfg = Config {
        block_size: 64,
        ..Config::default()
    };
    let mut h = Harness::with(cfg);
    let body: Vec<u8> = (0..150u32).map(|i| (i * 7) as u8).collect();
    let req = one_request(h.send(&con_get(1, &["big"])));
    let p0 = one_sent(&h.respond(
        &req,
        Response::default().with_payload(body.clone()).with_content_format(42),
    ));
    assert_eq!(block(&p0, option::BLOCK2), Some(b(0, true, 2)));
    assert_eq!(uint_opt(&p0, option::SIZE2), Some(150));
    let etag = p0
        .get_first_option(option::ETAG.into())
        .cloned()
        .expect("generated ETag");
    assert_eq!(p0.payload, body[..64]);
    assert_eq!(h.peer.block_state().1, 1);

    let ev = h.send(&get_block(2, "big", b(1, false, 2)));
    assert!(requests(ev.clone()).is_empty(), "served from the cache");
    let p1 = one_sent(&ev);
    assert_eq!(p1.header.message_id, 2);
    assert_eq!(block(&p1, option::BLOCK2), Some(b(1, true, 2)));
    assert_eq!(p1.get_first_option(option::ETAG.into()), Some(&etag));
    assert_eq!(uint_opt(&p1, option::CONTENT_FORMAT), Some(42));
    let p2 = one_sent(&h.send(&get_block(3, "big", b(2, false, 2))));
    assert_eq!(block(&p2, option::BLOCK2), Some(b(2, false, 2)));
    assert_eq!([p0.payload, p1.payload, p2.payload].concat(), body);

    // Past the end: 4.00.
    let p = one_sent(&h.send(&get_block(4, "big", b(3, false, 2))));
    assert_eq!(code(&p), resp_code(ResponseType::BadRequest));
    // A smaller size asked for by the client is honoured.
    let p = one_sent(&h.send(&get_block(5, "big", b(5, false, 0))));
    assert_eq!(p.payload, body[80..96]);
    // The cache expires.
    h.advance(Duration::from_secs(248));
    assert_eq!(h.peer.block_state().1, 0);
    assert!(h.peer.is_quiet());
}

#[test]
fn block2_follow_up_without_cache_is_surfaced_and_sliced() {
    let cfg = Config {
        block_size: 64,
        max_block2_cache: 0,
        ..Config::default()
    };
    let mut h = Harness::with(cfg);
    let body = vec![5u8; 100];
    let req = one_request(h.send(&get_block(1, "big", b(1, false, 1))));
    assert_eq!(req.meta.block2_size(), Some(32));
    let p = one_sent(&h.respond(&req, Response::default().with_payload(body.clone()).with_etag(vec![9])));
    assert_eq!(block(&p, option::BLOCK2), Some(b(1, true, 1)));
    assert_eq!(p.payload, body[32..64]);
    assert_eq!(
        p.get_first_option(option::ETAG.into()),
        Some(&vec![9]),
        "application ETag kept"
    );
    assert_eq!(h.peer.block_state().1, 0);
    // Asking past the end of a small body.
    let req = one_request(h.send(&get_block(2, "small", b(1, false, 6))));
    let p = one_sent(&h.respond(&req, Response::default().with_payload("tiny")));
    assert_eq!(code(&p), resp_code(ResponseType::BadRequest));
}

#[test]
fn block2_num0_with_small_szx_slices_at_that_size() {
    let mut h = Harness::new();
    let req = one_request(h.send(&get_block(1, "r", b(0, false, 0))));
    let p = one_sent(&h.respond(&req, Response::default().with_payload(vec![1; 40])));
    assert_eq!(block(&p, option::BLOCK2), Some(b(0, true, 0)));
    assert_eq!(p.payload.len(), 16);
}

#[test]
fn block2_cache_is_lru_capped() {
    let cfg = Config {
        block_size: 16,
        max_block2_cache: 2,
        ..Config::default()
    };
    let mut h = Harness::with(cfg);
    for (i, path) in ["a", "b", "c"].iter().enumerate() {
        let req = one_request(h.send(&con_get(i as u16, &[path])));
        h.respond(&req, Response::default().with_payload(vec![i as u8; 40]));
    }
    assert_eq!(h.peer.block_state().1, 2);
    // "a" was evicted: its follow-up reaches the application.
    assert_eq!(requests(h.send(&get_block(10, "a", b(1, false, 0)))).len(), 1);
    assert!(requests(h.send(&get_block(11, "c", b(1, false, 0)))).is_empty());
}

#[test]
fn big_notification_goes_in_blocks_and_follow_ups_hit_the_cache() {
    let cfg = Config {
        block_size: 32,
        ..Config::default()
    };
    let mut h = Harness::with(cfg);
    let body: Vec<u8> = (0..70u8).collect();
    let mut out = Vec::new();
    let n = Notification {
        token: vec![4, 4],
        confirmable: false,
        response: Response::default().with_payload(body.clone()).with_observe(3),
        key: 1,
        uri: crate::uri_key(&["obs"], &[]),
    };
    h.peer.notify(h.now, n, &mut out);
    let p0 = one_sent(&out);
    assert_eq!(p0.get_observe_value(), Some(Ok(3)));
    assert_eq!(block(&p0, option::BLOCK2), Some(b(0, true, 1)));
    assert_eq!(uint_opt(&p0, option::SIZE2), Some(70));
    assert!(p0.get_first_option(option::ETAG.into()).is_some());
    let mut got = p0.payload.clone();
    for num in 1..3 {
        let ev = h.send(&get_block(num as u16, "obs", b(num, false, 1)));
        assert!(requests(ev.clone()).is_empty());
        let p = one_sent(&ev);
        assert_eq!(p.get_observe_value(), None, "follow-ups carry no Observe");
        assert_eq!(
            p.get_first_option(option::ETAG.into()),
            p0.get_first_option(option::ETAG.into())
        );
        got.extend_from_slice(&p.payload);
    }
    assert_eq!(got, body);
}
