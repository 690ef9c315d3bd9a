//! CON retransmission (RFC 7252 §4.2, §4.8) on the simulated clock, expiry, and memory.

use super::*;
use crate::{Notification, OutgoingRequest, Response};

fn con_notification(key: u64) -> Notification {
    Notification {
        token: vec![1],
        confirmable: true,
        response: Response::default().with_observe(1),
        key,
        uri: "/o".into(),
    }
}

/// Steps the clock to each `poll_timeout` and records when each datagram went out.
fn run_schedule(h: &mut Harness, key: u64) -> (Vec<Duration>, Duration) {
    let mut sends = vec![Duration::ZERO];
    loop {
        let due = h.peer.poll_timeout().expect("a timer while the CON is outstanding");
        assert!(due > h.now);
        let ev = h.advance(due - h.now);
        let at = h.now - h.t0;
        match ev.as_slice() {
            [Event::Transmit(_)] => sends.push(at),
            [Event::TimedOut { key: k }] => {
                assert_eq!(*k, key);
                return (sends, at);
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[test]
fn retransmission_schedule_is_exact() {
    for seed in 0..20u64 {
        let cfg = Config::default();
        let t0 = Instant::now();
        let mut h = Harness {
            peer: Peer::new(Arc::new(cfg.clone()), seed),
            t0,
            now: t0,
        };
        let mut out = Vec::new();
        h.peer.notify(h.now, con_notification(9), &mut out);
        assert_eq!(sent(&out).len(), 1);
        let (sends, timed_out) = run_schedule(&mut h, 9);
        assert_eq!(
            sends.len() as u32,
            cfg.max_retransmit + 1,
            "1 + MAX_RETRANSMIT transmissions"
        );
        let first = sends[1];
        let lo = cfg.ack_timeout;
        let hi = cfg.ack_timeout.mul_f64(cfg.ack_random_factor);
        assert!(
            first >= lo && first <= hi,
            "initial timeout {first:?} outside [{lo:?}, {hi:?}]"
        );
        // Each wait doubles, and the last wait before giving up doubles once more.
        let mut waits: Vec<Duration> = sends.windows(2).map(|w| w[1] - w[0]).collect();
        waits.push(timed_out - sends[sends.len() - 1]);
        for w in waits.windows(2) {
            assert_eq!(w[1], w[0] * 2);
        }
        // Total: initial * (2^(MAX_RETRANSMIT+1) - 1) ≤ MAX_TRANSMIT_WAIT = 93 s.
        assert_eq!(timed_out, first * 31);
        assert!(timed_out <= Duration::from_secs(93));
        assert_eq!(h.peer.outstanding(), 0);
        assert!(h.peer.is_quiet());
    }
}

#[test]
fn random_initial_timeouts_differ_between_seeds() {
    let firsts: std::collections::BTreeSet<Duration> = (0..10u64)
        .map(|seed| {
            let t0 = Instant::now();
            let mut h = Harness {
                peer: Peer::new(Arc::new(Config::default()), seed),
                t0,
                now: t0,
            };
            h.peer.notify(h.now, con_notification(1), &mut Vec::new());
            h.peer.poll_timeout().unwrap() - t0
        })
        .collect();
    assert!(firsts.len() > 5);
}

#[test]
fn late_ack_stops_retransmission() {
    let mut h = Harness::new();
    let mut out = Vec::new();
    let mid = h.peer.notify(h.now, con_notification(2), &mut out);
    h.advance(Duration::from_secs(3));
    let [hi, lo] = mid.to_be_bytes();
    assert_eq!(h.feed(&[0x60, 0, hi, lo]), vec![Event::Delivered { key: 2 }]);
    assert_eq!(h.peer.poll_timeout(), None);
    assert!(h.advance(Duration::from_secs(100)).is_empty());
}

#[test]
fn unanswered_con_request_times_out_and_forgets_its_token() {
    let mut h = Harness::new();
    let mut out = Vec::new();
    let r = OutgoingRequest::new(RequestType::Get, vec!["x".into()], 5);
    let token = h.peer.send_request(h.now, r, &mut out);
    let (sends, _) = run_schedule(&mut h, 5);
    assert_eq!(sends.len(), 5);
    assert!(h.peer.is_quiet());
    let mut late = Packet::new();
    late.header.set_type(MessageType::Confirmable);
    late.header.code = MessageClass::Response(ResponseType::Content);
    late.header.message_id = 77;
    late.set_token(token);
    assert_eq!(h.send(&late), vec![Event::Transmit(vec![0x70, 0, 0, 77])]);
}

#[test]
fn non_request_without_response_expires() {
    let mut h = Harness::new();
    let mut r = OutgoingRequest::new(RequestType::Get, vec!["x".into()], 5);
    r.confirmable = false;
    h.peer.send_request(h.now, r, &mut Vec::new());
    assert!(!h.peer.is_quiet());
    h.advance(Duration::from_secs(248));
    assert!(h.peer.is_quiet());
    assert_eq!(h.peer.poll_timeout(), None);
}

#[test]
fn memory_figures() {
    let size = std::mem::size_of::<Peer>();
    println!("size_of::<Peer>() = {size}");
    assert!(size <= 200, "Peer is {size} bytes");
    let mut h = Harness::new();
    assert_eq!(h.peer.heap_size(), 0, "a fresh peer holds no heap");

    // A typical exchange: ten small CON GETs answered piggy-backed.
    for mid in 0..10u16 {
        let req = one_request(h.send(&con_get(mid, &["sensors", "temp"])));
        h.respond(&req, Response::default().with_payload("21.5").with_content_format(0));
    }
    let after_gets = h.peer.heap_size();
    println!("heap after 10 piggy-backed GETs: {after_gets} bytes");
    // One CON notification awaiting its ACK.
    h.peer.notify(h.now, con_notification(1), &mut Vec::new());
    let with_con = h.peer.heap_size();
    println!("heap with one outstanding CON notification too: {with_con} bytes");
    // A 4 KiB response in blocks, cached.
    let req = one_request(h.send(&con_get(100, &["fw"])));
    h.respond(&req, Response::default().with_payload(vec![0; 4096]));
    let with_cache = h.peer.heap_size();
    println!("heap with a cached 4 KiB body too: {with_cache} bytes");
    assert!(after_gets < 2048);
    assert!(with_cache > 4096 && with_cache < 4096 + 4096);
    while let Some(due) = h.peer.poll_timeout() {
        h.advance(due.saturating_duration_since(h.now));
    }
    assert!(h.now - h.t0 <= Duration::from_secs(248));
    assert_eq!(h.peer.heap_size(), 0, "everything expires");
}
