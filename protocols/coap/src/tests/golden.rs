//! Golden bytes: exchanges from the RFCs or built by hand, stored in `testdata/*.hex` as
//! `>` lines (to the server) and `<` lines (expected back).

use super::*;
use crate::Response;

/// The `>` and `<` datagrams of a golden file, in order.
fn load(text: &str) -> Vec<(char, Vec<u8>)> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let (dir, hex) = l.split_at(1);
            let bytes = hex
                .split_whitespace()
                .map(|b| u8::from_str_radix(b, 16).unwrap())
                .collect();
            (dir.chars().next().unwrap(), bytes)
        })
        .collect()
}

/// Feeds the `>` datagrams, answers any request with `answer`, and compares what is sent
/// with the `<` datagrams.
fn check(text: &str, cfg: Config, answer: impl Fn(&Request) -> Response) {
    let mut h = Harness::with(cfg);
    let mut got = Vec::new();
    let mut want = Vec::new();
    for (dir, bytes) in load(text) {
        if dir == '<' {
            want.push(bytes);
            continue;
        }
        for ev in h.feed(&bytes) {
            match ev {
                Event::Transmit(b) => got.push(b),
                Event::Request(r) => {
                    for ev in h.respond(&r, answer(&r)) {
                        if let Event::Transmit(b) = ev {
                            got.push(b);
                        }
                    }
                }
                other => panic!("unexpected {other:?}"),
            }
        }
    }
    assert_eq!(got, want);
}

#[test]
fn rfc7252_figure4_piggybacked() {
    check(
        include_str!("../../testdata/rfc7252_fig4_piggybacked.hex"),
        Config::default(),
        |r| {
            assert_eq!(r.path, vec!["temperature"]);
            Response::default().with_payload("22.5 C")
        },
    );
}

#[test]
fn ping_rst() {
    check(
        include_str!("../../testdata/ping_rst.hex"),
        Config::default(),
        |_| unreachable!(),
    );
}

#[test]
fn block2_first_block() {
    check(
        include_str!("../../testdata/block2_first_block.hex"),
        Config::default(),
        |_| Response::default().with_payload(vec![b'a'; 100]).with_etag(vec![0xE1]),
    );
}

#[test]
fn block1_continue() {
    check(
        include_str!("../../testdata/block1_continue.hex"),
        Config::default(),
        |_| unreachable!(),
    );
}

#[test]
fn non_notification_bytes() {
    let mut h = Harness::new();
    let mut out = Vec::new();
    let n = crate::Notification {
        token: vec![0x0B],
        confirmable: false,
        response: Response::default()
            .with_observe(12)
            .with_content_format(0)
            .with_payload("21"),
        key: 0,
        uri: "/t".into(),
    };
    let mid = h.peer.notify(h.now, n, &mut out);
    let [hi, lo] = mid.to_be_bytes();
    // NON 2.05, Token 0b, Observe 12, Content-Format 0 (empty value), payload "21".
    assert_eq!(
        out,
        vec![Event::Transmit(vec![
            0x51, 0x45, hi, lo, 0x0B, 0x61, 0x0C, 0x60, 0xFF, b'2', b'1'
        ])]
    );
}
