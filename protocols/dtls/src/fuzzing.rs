//! The driver behind the fuzz target (`fuzz/fuzz_targets/dtls_peer.rs`), also run by the
//! crate's tests. Not part of the API. It panics when the peer breaks an invariant: an error
//! that leaves the peer open, a badly framed datagram out, more than a few datagrams out per
//! datagram in, application data without a handshake, or a timer that makes no progress.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use crate::record::check_framing;
use crate::{DtlsPeer, DtlsServerConfig, DtlsServerOptions, Error, PskOptions};

const REMOTE: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 1), 5683));
/// Handshake deadline of the fuzzed peer.
const DEADLINE: Duration = Duration::from_secs(10);
/// A flight is at most a handful of datagrams; anything more from one input is amplification.
const MAX_DATAGRAMS_OUT: usize = 8;

fn config() -> &'static DtlsServerConfig {
    static CFG: OnceLock<DtlsServerConfig> = OnceLock::new();
    CFG.get_or_init(|| {
        let opts = DtlsServerOptions {
            psk: Some(PskOptions {
                lookup: Arc::new(|id: &[u8]| (id == b"fuzz").then(|| b"0123456789abcdef".to_vec())),
                identity_hint: None,
            }),
            handshake_timeout: DEADLINE,
            ..DtlsServerOptions::default()
        };
        match DtlsServerConfig::new(opts) {
            Ok(c) => c,
            Err(e) => panic!("fuzz config: {e}"),
        }
    })
}

/// Drains the peer's output and checks it.
fn drain(peer: &mut DtlsPeer) {
    let mut n = 0;
    while let Some(d) = peer.poll_transmit() {
        n += 1;
        assert!(check_framing(&d).is_ok(), "badly framed datagram out: {d:02x?}");
    }
    assert!(n <= MAX_DATAGRAMS_OUT, "{n} datagrams out for one input");
    assert!(peer.poll_app_data().is_none(), "application data without a handshake");
}

fn check(peer: &DtlsPeer, r: &Result<(), Error>) {
    if let Err(e) = r {
        if !matches!(e, Error::Dropped(_)) {
            assert!(peer.is_closed(), "{e}, yet the peer is open");
        }
    }
}

/// Fires the timer if it is due at `now`, and checks that it moved on.
fn fire(peer: &mut DtlsPeer, now: Instant) {
    if peer.poll_timeout().is_some_and(|t| t <= now) {
        let r = peer.handle_timeout(now);
        check(peer, &r);
        drain(peer);
        if let Some(next) = peer.poll_timeout() {
            assert!(next > now, "timer did not move on");
        }
    }
}

/// Reads fuzz input as a script for one fresh PSK peer. Each step starts with a byte `op`:
/// `op >= 0x80` advances the clock by `(op & 0x7f) * 100 ms` and fires a due timer; otherwise
/// a big-endian `u16` length follows and that many bytes (or what is left) are one datagram.
/// At the end the clock runs on until the handshake deadline has closed the peer.
pub fn server_script(mut data: &[u8]) {
    let start = Instant::now();
    let mut now = start;
    let mut peer = match DtlsPeer::new(config(), REMOTE, now) {
        Ok(p) => p,
        Err(e) => panic!("DtlsPeer::new: {e}"),
    };
    while let Some((&op, rest)) = data.split_first() {
        data = rest;
        if op >= 0x80 {
            now += Duration::from_millis(100) * u32::from(op & 0x7f);
            fire(&mut peer, now);
            continue;
        }
        let len = match data {
            [hi, lo, ..] => usize::from(u16::from_be_bytes([*hi, *lo])),
            _ => data.len(),
        };
        data = data.get(2..).unwrap_or_default();
        let (dgram, rest) = data.split_at(len.min(data.len()));
        data = rest;
        let r = peer.handle_datagram(now, dgram);
        check(&peer, &r);
        drain(&mut peer);
    }
    if peer.is_established() {
        return;
    }
    for _ in 0..64 {
        match peer.poll_timeout() {
            Some(t) => fire(&mut peer, t.max(now)),
            None => break,
        }
    }
    assert!(peer.is_closed(), "peer still open after the handshake deadline");
    assert!(peer.poll_timeout().is_none());
}
