//! Timers and hostile peers: keep alive (MQTT 5 §3.1.2.10), the CONNECT timeout, and that
//! garbage, huge length claims and slow senders on some connections do not disturb others.

use std::thread;
use std::time::{Duration, Instant};

use unigate_mqtt::{Packet, ProtocolVersion, PubResp, QoS};

use crate::common::TestServer;
use crate::util::{connect_packet, field, frame, publish, Event, Raw, TIMEOUT};

/// Seconds since `start`, for messages.
fn secs(start: Instant) -> f64 {
    start.elapsed().as_secs_f64()
}

#[test]
fn keep_alive_timeout_closes_silent_clients() {
    let server = TestServer::start();
    let addr = server.addr;
    let mut c5 = connect_packet(ProtocolVersion::V5, "ka-5", true);
    c5.keep_alive = 1;
    let mut c3 = connect_packet(ProtocolVersion::V3_1_1, "ka-3", true);
    c3.keep_alive = 1;
    let mut alive = connect_packet(ProtocolVersion::V5, "ka-pinging", true);
    alive.keep_alive = 1;

    // A client that pings every 400 ms stays connected past the deadline of the silent ones.
    let pinger = thread::spawn(move || {
        let mut c = Raw::accepted(addr, alive);
        for _ in 0..7 {
            thread::sleep(Duration::from_millis(400));
            c.send(&Packet::PingReq);
            assert!(matches!(c.recv(), Packet::PingResp));
        }
        c.disconnect();
    });

    let mut v5 = Raw::accepted(addr, c5);
    let mut v3 = Raw::accepted(addr, c3);
    // 1.5 × keep alive [MQTT-3.1.2-22], then DISCONNECT 0x8D for MQTT 5.
    v5.expect_disconnect(0x8D);
    let t5 = v5.opened.elapsed();
    v3.expect_closed();
    let t3 = v3.opened.elapsed();
    for (v, t) in [("v5", t5), ("v3.1.1", t3)] {
        assert!(
            t >= Duration::from_millis(1400) && t <= Duration::from_millis(2600),
            "{v}: closed after {t:?}, want about 1.5 s"
        );
    }
    pinger.join().expect("pinging client stayed connected");
    server.stop();
}

#[test]
fn connect_timeout_closes_idle_sockets() {
    let server = TestServer::start_with("", "connect_timeout = \"1s\"");
    let mut silent = Raw::open(server.addr);
    // Half a CONNECT does not count as one.
    let mut partial = Raw::open(server.addr);
    let mut connect = Raw::open(server.addr).encode(&Packet::Connect(Box::new(connect_packet(
        ProtocolVersion::V5,
        "partial",
        true,
    ))));
    connect.truncate(6);
    partial.send_bytes(&connect);
    for (what, c) in [("silent", &mut silent), ("partial CONNECT", &mut partial)] {
        assert_eq!(c.raw_until_closed(), Vec::<u8>::new(), "{what}");
        let t = c.opened.elapsed();
        assert!(
            t >= Duration::from_millis(900) && t <= Duration::from_millis(2500),
            "{what}: closed after {t:?}, want about 1 s"
        );
    }
    server.stop();
}

/// A small deterministic generator (xorshift64*), so a failing input can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

#[test]
fn hostile_connections_do_not_disturb_others() {
    let server = TestServer::start();
    let addr = server.addr;
    let mut hostile = Vec::new();

    // 20 connections of random garbage: half from the first byte, half after a good CONNECT.
    for i in 0..20u64 {
        hostile.push(thread::spawn(move || {
            let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (i + 1));
            let mut c = if i % 2 == 0 {
                Raw::open(addr)
            } else {
                Raw::v5(addr, &format!("garbage-{i}"))
            };
            for _ in 0..16 {
                if c.try_send_bytes(&rng.bytes(256)).is_err() {
                    break;
                }
            }
            // Whatever the server made of it, it closes once we stop sending.
            c.shutdown_write();
            c.raw_until_closed();
        }));
    }

    // A remaining length of 268,435,455 (the largest 4-byte varint) before and after CONNECT:
    // refused from the header, long before that much could be buffered.
    hostile.push(thread::spawn(move || {
        let mut c = Raw::open(addr);
        c.send_bytes(&[0x10, 0xFF, 0xFF, 0xFF, 0x7F]);
        assert_eq!(c.raw_until_closed(), Vec::<u8>::new());
        let mut c = Raw::v5(addr, "huge");
        c.send_bytes(&[0x30, 0xFF, 0xFF, 0xFF, 0x7F, 0x00, 0x01, b'a']);
        c.expect_disconnect(0x95);
    }));

    // Slowloris: a valid CONNECT, one byte every 100 ms. It is slow, not wrong: accepted.
    hostile.push(thread::spawn(move || {
        let mut c = Raw::open(addr);
        let connect = c.encode(&Packet::Connect(Box::new(connect_packet(
            ProtocolVersion::V5,
            "slow",
            true,
        ))));
        for b in connect {
            thread::sleep(Duration::from_millis(100));
            c.send_bytes(&[b]);
        }
        match c.recv() {
            Packet::ConnAck(a) => assert!(!a.reason_code.is_error(), "{a:?}"),
            other => panic!("slowloris: expected CONNACK, got {other:?}"),
        }
        c.disconnect();
    }));

    // Meanwhile a good pair of clients moves 100 QoS 1 messages.
    let start = Instant::now();
    let mut sub = Raw::v5(addr, "good-sub");
    sub.subscribe("good/t", QoS::AtLeastOnce);
    let mut publisher = Raw::v5(addr, "good-pub");
    for i in 0..100u16 {
        publisher.publish_acked(publish("good/t", format!("{i}"), QoS::AtLeastOnce, i + 1));
    }
    for i in 0..100 {
        let p = sub.recv_publish();
        assert_eq!(p.payload, format!("{i}").into_bytes());
        sub.send(&Packet::PubAck(PubResp::new(p.packet_id.expect("QoS 1"))));
    }
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "100 messages took {:.1} s next to hostile peers",
        secs(start)
    );
    sub.disconnect();
    publisher.disconnect();

    for h in hostile {
        h.join().expect("hostile connection thread");
    }
    // Still up: a fresh client connects and gets an answer.
    let mut fresh = Raw::v311(addr, "fresh");
    assert!(fresh.barrier().is_empty());
    fresh.disconnect();
    server.stop();
}

#[test]
fn many_packets_in_one_write_and_one_packet_in_many_writes() {
    // Framing does not depend on how TCP cuts the stream.
    let server = TestServer::start();
    let mut sub = Raw::v5(server.addr, "framing-sub");
    sub.subscribe("frame/+", QoS::AtMostOnce);
    let mut c = Raw::open(server.addr);
    let mut all = c.encode(&Packet::Connect(Box::new(connect_packet(
        ProtocolVersion::V5,
        "framing",
        true,
    ))));
    for i in 0..50 {
        let body = [&field(format!("frame/{i}").as_bytes())[..], &[0], b"p"].concat();
        all.extend(frame(0x30, &body));
    }
    // One write with CONNECT and 50 PUBLISHes, then the same again one byte at a time.
    c.send_bytes(&all);
    assert!(matches!(c.recv(), Packet::ConnAck(_)));
    for i in 0..50 {
        assert_eq!(sub.recv_publish().topic, format!("frame/{i}"));
    }
    let mut d = Raw::open(server.addr);
    for b in &all {
        d.send_bytes(&[*b]);
    }
    assert!(matches!(d.recv(), Packet::ConnAck(_)));
    for i in 0..50 {
        assert_eq!(sub.recv_publish().topic, format!("frame/{i}"));
    }
    match c.next_event(TIMEOUT) {
        // Same client id: the second connection took the session over.
        Event::Packet(Packet::Disconnect(dis)) => assert_eq!(dis.reason_code.0, 0x8E),
        other => panic!("expected takeover DISCONNECT, got {other:?}"),
    }
    sub.disconnect();
    d.disconnect();
    server.stop();
}
