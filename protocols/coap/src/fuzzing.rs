//! Drivers shared by the fuzz targets (`fuzz/fuzz_targets/coap_*.rs`) and the crate's
//! property tests. Not part of the API. They panic when the peer breaks an invariant: a
//! table over its cap, a datagram we emit that does not decode, or a timer that does not make
//! progress.

use std::sync::Arc;
use std::time::{Duration, Instant};

use coap_lite::{MessageClass, MessageType, Packet, RequestType, ResponseType};

use crate::codec::{self, option, BlockOpt};
use crate::{Config, Event, Notification, OutgoingRequest, Peer, Response};

/// The small limits the drivers use, so that caps are reached quickly.
pub fn small_config() -> Config {
    Config {
        block_size: 64,
        max_body: 1024,
        max_dedup_entries: 8,
        max_block1_transfers: 2,
        max_block2_cache: 2,
        ..Config::default()
    }
}

/// Reads fuzz input as a script of operations on one [`Peer`]: datagrams (whose requests are
/// all answered, some after an empty ACK, some with bodies large enough for Block2), time
/// steps with `handle_timeout`, notifications and requests of our own.
pub fn peer_script(data: &[u8]) {
    let cfg = Arc::new(small_config());
    let mut peer = Peer::new(cfg, 7);
    let t0 = Instant::now();
    let mut now = t0;
    let mut out = Vec::new();
    let mut rest = data;
    let mut key = 0u64;
    while let Some((&op, tail)) = rest.split_first() {
        rest = tail;
        let arg = rest.first().copied().unwrap_or(0);
        match op % 5 {
            0 => {
                rest = rest.get(1..).unwrap_or(&[]);
                now += Duration::from_millis(u64::from(arg) * 500);
                let due = peer.poll_timeout();
                peer.handle_timeout(now, &mut out);
                if let Some(due) = due.filter(|d| *d <= now) {
                    assert!(peer.poll_timeout().is_none_or(|t| t > due), "timer made no progress");
                }
            }
            1 | 2 => {
                let len = usize::from(arg).min(rest.len().saturating_sub(1));
                let dgram = rest.get(1..1 + len).unwrap_or(&[]);
                rest = rest.get(1 + len..).unwrap_or(&[]);
                peer.handle_datagram(now, dgram, &mut out);
            }
            3 => {
                rest = rest.get(1..).unwrap_or(&[]);
                key += 1;
                let body = vec![b'n'; usize::from(arg) * 4];
                let n = Notification {
                    token: vec![arg],
                    confirmable: arg & 1 == 1,
                    response: Response::new(ResponseType::Content)
                        .with_payload(body)
                        .with_observe(u32::from(arg)),
                    key,
                    uri: "/obs".into(),
                };
                peer.notify(now, n, &mut out);
            }
            _ => {
                rest = rest.get(1..).unwrap_or(&[]);
                key += 1;
                let mut r = OutgoingRequest::new(RequestType::Get, vec!["3".into(), "0".into()], key);
                r.confirmable = arg & 1 == 1;
                r.observe = (arg & 2 == 2).then_some(0);
                peer.send_request(now, r, &mut out);
            }
        }
        answer_all(&mut peer, now, &mut out);
        peer.assert_invariants();
    }
}

/// Answers every surfaced request and checks every datagram we emit decodes.
fn answer_all(peer: &mut Peer, now: Instant, out: &mut Vec<Event>) {
    let mut i = 0;
    while let Some(ev) = out.get(i).cloned() {
        i += 1;
        match ev {
            Event::Transmit(bytes) => {
                assert!(
                    codec::decode(&bytes).is_ok(),
                    "we emitted a malformed datagram: {bytes:02x?}"
                );
            }
            Event::Request(req) => {
                let size = req.payload.len() + req.path.len() * 50;
                if req.meta.mid % 3 == 0 {
                    peer.ack_empty(&req.meta, out);
                }
                let resp = Response::new(ResponseType::Content).with_payload(vec![b'r'; size]);
                peer.respond(now, &req.meta, resp, out);
            }
            _ => {}
        }
    }
    out.clear();
}

/// Builds a Block1 upload from fuzz input and checks it: the first byte picks the server's
/// block size, the next few the client's SZX for each block (sizes may only shrink, and the
/// client adopts the size the server echoes), the rest is the body. Every block but the last
/// must be answered 2.31 echoing it, and the request must surface once with exactly the body.
pub fn block1_transfer(data: &[u8]) {
    let (&cfg_byte, rest) = data.split_first().unwrap_or((&0, &[]));
    let nctl = usize::from(cfg_byte >> 4).min(rest.len());
    let (ctl, body) = rest.split_at(nctl);
    let cfg = Config {
        block_size: 16 << (cfg_byte % 7),
        max_body: 1 << 20,
        ..Config::default()
    };
    let mut peer = Peer::new(Arc::new(cfg), u64::from(cfg_byte));
    let got = upload(&mut peer, body, |i| ctl.get(i % ctl.len().max(1)).map_or(6, |c| c % 7));
    assert_eq!(got.as_deref(), Some(body), "reassembled body differs");
    peer.assert_invariants();
}

/// Uploads `body` with PUT /up in Block1 blocks of SZX `szx_at(i)` (never growing, adopting
/// the server's echo) and returns the body the application saw.
pub(crate) fn upload(peer: &mut Peer, body: &[u8], mut szx_at: impl FnMut(usize) -> u8) -> Option<Vec<u8>> {
    let now = Instant::now();
    let mut out = Vec::new();
    let mut offset = 0usize;
    let mut szx = 6u8;
    let mut mid = 1u16;
    for i in 0.. {
        szx = szx.min(szx_at(i));
        let size = 16usize << szx;
        let end = (offset + size).min(body.len());
        let more = end < body.len();
        let num = u32::try_from(offset / size).ok()?;
        let mut p = Packet::new();
        p.header.set_type(MessageType::Confirmable);
        p.header.code = MessageClass::Request(RequestType::Put);
        p.header.message_id = mid;
        mid = mid.wrapping_add(1);
        p.set_token(vec![1, 2]);
        p.add_option(option::URI_PATH.into(), b"up".to_vec());
        p.add_option(option::BLOCK1.into(), BlockOpt { num, more, szx }.encode());
        p.payload = body.get(offset..end)?.to_vec();
        peer.handle_datagram(now, &p.to_bytes().ok()?, &mut out);
        let mut ack = None;
        let mut surfaced = None;
        for ev in out.drain(..) {
            match ev {
                Event::Transmit(b) => ack = Some(Packet::from_bytes(&b).ok()?),
                Event::Request(r) => surfaced = Some(r),
                _ => {}
            }
        }
        if let Some(r) = surfaced {
            assert!(!more, "request surfaced before its last block");
            assert_eq!(r.meta.block1, Some(BlockOpt { num, more: false, szx }));
            let mut resp = Vec::new();
            peer.respond(now, &r.meta, Response::new(ResponseType::Changed), &mut resp);
            let Some(Event::Transmit(b)) = resp.first() else {
                panic!("no response")
            };
            let p = Packet::from_bytes(b).ok()?;
            let echo = p
                .get_first_option(option::BLOCK1.into())
                .and_then(|v| BlockOpt::decode(v));
            assert_eq!(
                echo,
                Some(BlockOpt { num, more: false, szx }),
                "final Block1 not echoed"
            );
            return Some(r.payload);
        }
        let ack = ack?;
        assert!(more, "last block not surfaced: {:?}", ack.header.code);
        assert_eq!(ack.header.code, MessageClass::Response(ResponseType::Continue));
        let echo = ack
            .get_first_option(option::BLOCK1.into())
            .and_then(|v| BlockOpt::decode(v))?;
        assert_eq!((echo.num, echo.more), (num, true));
        assert!(echo.szx <= szx);
        offset = end;
        szx = echo.szx;
    }
    None
}
