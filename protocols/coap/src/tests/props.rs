//! Property tests: random datagrams never panic nor overflow a cap; Block1 uploads with random
//! (shrinking) block sizes reassemble exactly; bodies sliced into Block2 blocks reassemble.

use proptest::prelude::*;

use super::*;
use crate::fuzzing;
use crate::Response;

/// Datagrams that are mostly well-formed CoAP, so they reach the deep paths, plus raw noise.
fn datagram() -> impl Strategy<Value = Vec<u8>> {
    let structured = (
        0u8..4,
        prop_oneof![Just(0u8), 1u8..8, Just(0x45), Just(0x5F), Just(0x84), Just(0xE1)],
        0u16..24,
        proptest::collection::vec(any::<u8>(), 0..3),
        proptest::collection::vec(
            (
                prop_oneof![Just(11u16), Just(23), Just(27), Just(60), Just(6), 0u16..300],
                proptest::collection::vec(any::<u8>(), 0..4),
            ),
            0..4,
        ),
        proptest::collection::vec(any::<u8>(), 0..80),
    )
        .prop_map(|(t, code, mid, token, opts, payload)| {
            let mut p = Packet::new();
            p.header.set_type(match t {
                0 => MessageType::Confirmable,
                1 => MessageType::NonConfirmable,
                2 => MessageType::Acknowledgement,
                _ => MessageType::Reset,
            });
            p.header.code = MessageClass::from(code);
            p.header.message_id = mid;
            p.set_token(token);
            for (n, v) in opts {
                p.add_option(n.into(), v);
            }
            p.payload = payload;
            p.to_bytes().unwrap_or_default()
        });
    prop_oneof![3 => structured, 1 => proptest::collection::vec(any::<u8>(), 0..40)]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn random_datagrams_keep_caps(dgrams in proptest::collection::vec((datagram(), 0u64..200_000), 1..60)) {
        let cfg = Arc::new(fuzzing::small_config());
        let mut peer = Peer::new(cfg, 1);
        let mut now = Instant::now();
        let mut out = Vec::new();
        for (d, step_ms) in dgrams {
            now += Duration::from_millis(step_ms);
            peer.handle_timeout(now, &mut out);
            peer.handle_datagram(now, &d, &mut out);
            for ev in std::mem::take(&mut out) {
                match ev {
                    Event::Request(r) => {
                        let mut o = Vec::new();
                        peer.respond(now, &r.meta, Response::default().with_payload(vec![1; r.payload.len() * 3]), &mut o);
                        for e in o {
                            if let Event::Transmit(b) = e {
                                prop_assert!(crate::codec::decode(&b).is_ok());
                            }
                        }
                    }
                    Event::Transmit(b) => prop_assert!(crate::codec::decode(&b).is_ok()),
                    _ => {}
                }
            }
            peer.assert_invariants();
        }
    }

    #[test]
    fn fuzz_script_never_panics(data in proptest::collection::vec(any::<u8>(), 0..400)) {
        fuzzing::peer_script(&data);
    }

    #[test]
    fn block1_random_sizes_reassemble(
        body in proptest::collection::vec(any::<u8>(), 0..3000),
        sizes in proptest::collection::vec(0u8..7, 1..12),
        cfg_szx in 0u8..7,
    ) {
        let cfg = Config { block_size: 16 << cfg_szx, max_body: 1 << 20, ..Config::default() };
        let mut peer = Peer::new(Arc::new(cfg), 3);
        let got = fuzzing::upload(&mut peer, &body, |i| sizes[i % sizes.len()]);
        prop_assert_eq!(got, Some(body));
        prop_assert!(peer.is_quiet());
    }

    #[test]
    fn block2_round_trip(
        body in proptest::collection::vec(any::<u8>(), 0..5000),
        cfg_szx in 0u8..7,
        client_szx in 0u8..7,
    ) {
        let cfg = Config { block_size: 16 << cfg_szx, ..Config::default() };
        let mut h = Harness::with(cfg);
        let first = with_block(con_get(0, &["r"]), option::BLOCK2, BlockOpt { num: 0, more: false, szx: client_szx });
        let req = one_request(h.send(&first));
        let p = one_sent(&h.respond(&req, Response::default().with_payload(body.clone())));
        let mut got = p.payload.clone();
        let mut next = block(&p, option::BLOCK2);
        let mut mid = 1;
        while let Some(b) = next.filter(|b| b.more) {
            let num = b.num + 1;
            let ev = h.send(&with_block(con_get(mid, &["r"]), option::BLOCK2, BlockOpt { num, more: false, szx: b.szx }));
            mid += 1;
            prop_assert!(requests(ev.clone()).is_empty());
            let p = one_sent(&ev);
            prop_assert_eq!(block(&p, option::BLOCK2).map(|b| b.num), Some(num));
            got.extend_from_slice(&p.payload);
            next = block(&p, option::BLOCK2);
        }
        prop_assert_eq!(got, body);
    }
}
