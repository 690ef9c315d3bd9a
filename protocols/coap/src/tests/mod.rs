//! In-crate scenario tests: a [`Peer`] driven by hand-built client packets over a simulated
//! clock (no sockets), as in quinn-proto's tests.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod blockwise;
mod exchange;
mod golden;
mod props;
mod timers;

use std::sync::Arc;
use std::time::{Duration, Instant};

use coap_lite::{MessageClass, MessageType, Packet, RequestType, ResponseType};

use crate::codec::{option, BlockOpt};
use crate::{Config, Event, Peer, Request};

/// A peer, a clock and the events of the last step.
struct Harness {
    peer: Peer,
    t0: Instant,
    now: Instant,
}

impl Harness {
    fn new() -> Self {
        Self::with(Config::default())
    }

    fn with(cfg: Config) -> Self {
        let t0 = Instant::now();
        Harness {
            peer: Peer::new(Arc::new(cfg), 42),
            t0,
            now: t0,
        }
    }

    fn feed(&mut self, bytes: &[u8]) -> Vec<Event> {
        let mut out = Vec::new();
        self.peer.handle_datagram(self.now, bytes, &mut out);
        self.peer.assert_invariants();
        out
    }

    fn send(&mut self, p: &Packet) -> Vec<Event> {
        self.feed(&p.to_bytes().unwrap())
    }

    fn advance(&mut self, d: Duration) -> Vec<Event> {
        self.now += d;
        let mut out = Vec::new();
        self.peer.handle_timeout(self.now, &mut out);
        self.peer.assert_invariants();
        out
    }

    fn respond(&mut self, req: &Request, resp: crate::Response) -> Vec<Event> {
        let mut out = Vec::new();
        self.peer.respond(self.now, &req.meta, resp, &mut out);
        out
    }
}

/// A client request.
fn request(t: MessageType, method: RequestType, mid: u16, token: &[u8], path: &[&str]) -> Packet {
    let mut p = Packet::new();
    p.header.set_type(t);
    p.header.code = MessageClass::Request(method);
    p.header.message_id = mid;
    p.set_token(token.to_vec());
    for s in path {
        p.add_option(option::URI_PATH.into(), s.as_bytes().to_vec());
    }
    p
}

fn con_get(mid: u16, path: &[&str]) -> Packet {
    request(
        MessageType::Confirmable,
        RequestType::Get,
        mid,
        &[0xAB, mid as u8],
        path,
    )
}

fn with_block(mut p: Packet, n: u16, b: BlockOpt) -> Packet {
    p.add_option(n.into(), b.encode());
    p
}

/// The datagrams among `events`, decoded.
fn sent(events: &[Event]) -> Vec<Packet> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Transmit(b) => Some(Packet::from_bytes(b).unwrap()),
            _ => None,
        })
        .collect()
}

/// The single datagram among `events`.
fn one_sent(events: &[Event]) -> Packet {
    let s = sent(events);
    assert_eq!(s.len(), 1, "expected one datagram in {events:?}");
    s.into_iter().next().unwrap()
}

fn requests(events: Vec<Event>) -> Vec<Request> {
    events
        .into_iter()
        .filter_map(|e| match e {
            Event::Request(r) => Some(r),
            _ => None,
        })
        .collect()
}

fn one_request(events: Vec<Event>) -> Request {
    let mut r = requests(events);
    assert_eq!(r.len(), 1);
    r.pop().unwrap()
}

fn block(p: &Packet, n: u16) -> Option<BlockOpt> {
    p.get_first_option(n.into()).and_then(|v| BlockOpt::decode(v))
}

fn uint_opt(p: &Packet, n: u16) -> Option<u32> {
    p.get_first_option(n.into())
        .and_then(|v| crate::codec::decode_uint(v, 4))
}

fn code(p: &Packet) -> MessageClass {
    p.header.code
}

fn resp_code(c: ResponseType) -> MessageClass {
    MessageClass::Response(c)
}
