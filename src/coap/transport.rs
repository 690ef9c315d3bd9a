//! The datagram side of a CoAP-speaking listener actor, shared by the LwM2M server: the UDP
//! socket (reads with back-pressure, a bounded send backlog), one sans-IO [`Peer`] per remote
//! address with its retransmission timer, and on DTLS listeners the [`DtlsPeer`] under it,
//! whose handshake credentials pass the listener's auth chain before any CoAP is read.
//!
//! The actor owns a [`Transport`] and implements [`CoapApp`]; the free functions here do the
//! I/O and hand the application what the message layer surfaced ([`CoapApp::on_event`]).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use tokio::net::UdpSocket;
use unigate_auth::{Credentials, Identity, Outcome};
use unigate_coap::{Event, Peer};
use unigate_dtls::{DtlsPeer, DtlsServerConfig};
use unigate_pubsub::Protocol;

use crate::auth::ListenerAuth;
use crate::broker::metrics::Metrics;

/// How often retransmission timers are looked at.
pub const TICK: Duration = Duration::from_millis(50);
/// Datagrams waiting for the socket to become writable, at most (UDP: beyond it we drop).
const MAX_SEND_BACKLOG: usize = 4096;
/// Datagrams read per readiness event before other work on the thread gets a turn.
const READS_PER_EVENT: usize = 64;
/// Decrypted datagrams held per peer while its identity is being decided, at most.
const MAX_WAITING: usize = 16;
/// DTLS handshakes in progress per listener, at most (a flood of ClientHellos costs state).
const MAX_HANDSHAKES: usize = 1024;

/// One remote address.
pub struct PeerEntry {
    /// The CoAP message layer.
    pub peer: Peer,
    /// When a datagram last came from it.
    pub last_seen: Instant,
    /// The earliest instant this peer is in the timer heap for.
    scheduled: Option<Instant>,
    /// The DTLS association, on a DTLS listener.
    dtls: Option<Box<DtlsState>>,
    /// The peer in the per-listener counts (`/metrics`).
    _counted: crate::broker::metrics::OpenConnection,
}

impl PeerEntry {
    fn poll_timeout(&self) -> Option<Instant> {
        let coap = self.peer.poll_timeout();
        let dtls = self.dtls.as_ref().and_then(|d| d.conn.poll_timeout());
        match (coap, dtls) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// A DTLS association and what its handshake proved.
struct DtlsState {
    conn: DtlsPeer,
    /// Set when the handshake's credentials passed the auth chain; CoAP is read only then.
    identity: Option<Identity>,
    established: bool,
    /// Decrypted datagrams that arrived while the chain was deciding.
    waiting: Vec<Vec<u8>>,
}

/// The socket, the peers and their timers.
pub struct Transport {
    socket: Rc<UdpSocket>,
    /// Listener name, for logs.
    pub name: Arc<str>,
    /// Protocol named in DTLS credentials.
    protocol: Protocol,
    layer: Arc<unigate_coap::Config>,
    broker: Arc<crate::broker::Broker>,
    /// Remote addresses with state.
    pub peers: HashMap<SocketAddr, PeerEntry>,
    max_peers: usize,
    timers: BinaryHeap<Reverse<(Instant, SocketAddr)>>,
    seed: u64,
    send_backlog: VecDeque<(Vec<u8>, SocketAddr)>,
    flushing: bool,
    dtls: Option<DtlsServerConfig>,
    handshaking: usize,
    recv_buf: Vec<u8>,
    read_armed: bool,
    /// Not reading (back-pressure); see [`resume_reading`].
    pub paused: bool,
    /// Remote addresses with state, per listener (`/metrics`).
    peer_counts: Arc<crate::broker::metrics::ConnectionCounts>,
}

impl Transport {
    /// A listener's transport on `socket` (made non-blocking here); a `tls` table makes it
    /// DTLS, with pre-shared keys looked up in the listener's auth chain (swapped on reload).
    pub fn new(
        socket: std::net::UdpSocket,
        protocol: Protocol,
        layer: Arc<unigate_coap::Config>,
        broker: Arc<crate::broker::Broker>,
        limits: &crate::config::Limits,
        tls: Option<&crate::tls::TlsConfig>,
        settings: &Arc<crate::mqtt::protocol::ListenerSettings>,
    ) -> Result<Self, crate::tls::TlsError> {
        let dtls = match tls {
            Some(tls) => {
                let keys = settings.clone();
                let lookup: unigate_dtls::PskLookup = Arc::new(move |identity: &[u8]| {
                    let identity = std::str::from_utf8(identity).ok()?;
                    keys.auth.chain().psk_key(identity).map(|k| k.expose().to_vec())
                });
                Some(super::dtls::server_config(tls, Some(lookup))?)
            }
            None => None,
        };
        let io = |e: std::io::Error| crate::tls::TlsError::Rustls(e.to_string());
        socket.set_nonblocking(true).map_err(io)?;
        let max_peers = limits.max_connections;
        let name = settings.name.clone();
        let peer_counts = broker.metrics.listener(&name, protocol.as_str());
        Ok(Transport {
            peer_counts,
            socket: Rc::new(UdpSocket::from_std(socket).map_err(io)?),
            name,
            protocol,
            layer,
            broker,
            peers: HashMap::new(),
            max_peers,
            timers: BinaryHeap::new(),
            seed: rand::random(),
            send_backlog: VecDeque::new(),
            flushing: false,
            dtls,
            handshaking: 0,
            recv_buf: vec![0u8; 65_536],
            read_armed: false,
            paused: false,
        })
    }

    /// Whether this is a DTLS listener.
    pub fn is_dtls(&self) -> bool {
        self.dtls.is_some()
    }

    /// What the DTLS handshake of `from` proved, once the chain accepted it.
    pub fn dtls_identity(&self, from: SocketAddr) -> Option<&Identity> {
        self.peers
            .get(&from)
            .and_then(|e| e.dtls.as_ref())
            .and_then(|d| d.identity.as_ref())
    }

    fn next_seed(&mut self) -> u64 {
        // splitmix64 step: distinct, unpredictable-enough message ids and tokens per peer.
        self.seed = self.seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.seed;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn reschedule(&mut self, addr: SocketAddr) {
        let Some(entry) = self.peers.get_mut(&addr) else { return };
        if let Some(at) = entry.poll_timeout() {
            if entry.scheduled.is_none_or(|s| at < s) {
                entry.scheduled = Some(at);
                self.timers.push(Reverse((at, addr)));
            }
        }
    }

    fn new_entry(&mut self, now: Instant, dtls: Option<Box<DtlsState>>) -> PeerEntry {
        Metrics::gauge(&self.broker.metrics.coap_peers, 1);
        PeerEntry {
            peer: Peer::new(self.layer.clone(), self.next_seed()),
            last_seen: now,
            scheduled: None,
            dtls,
            _counted: self.peer_counts.opened(),
        }
    }
}

/// A listener actor built on a [`Transport`].
pub trait CoapApp: Actor<Context = Context<Self>> {
    /// The transport.
    fn transport(&mut self) -> &mut Transport;
    /// The auth chain DTLS handshake credentials pass.
    fn auth(&self) -> &ListenerAuth;
    /// An event of the message layer other than `Transmit` (which is sent).
    fn on_event(&mut self, addr: SocketAddr, event: Event, ctx: &mut Context<Self>);
    /// `addr`'s state is gone (idle, DTLS closed or failed).
    fn on_peer_removed(&mut self, addr: SocketAddr, ctx: &mut Context<Self>);
    /// Called after each datagram was handled.
    fn after_datagram(&mut self, _ctx: &mut Context<Self>) {}
}

/// Starts reading and the retransmission timer; call from `Actor::started`.
pub fn start<A: CoapApp>(act: &mut A, ctx: &mut Context<A>) {
    ctx.run_interval(TICK, |act, ctx| tick(act, ctx));
    arm_read(act, ctx);
}

/// Sends a datagram as it is (already encrypted, or plain UDP).
fn send_raw<A: CoapApp>(act: &mut A, data: Vec<u8>, to: SocketAddr, ctx: &mut Context<A>) {
    let t = act.transport();
    Metrics::add(&t.broker.metrics.bytes_sent, data.len() as u64);
    if t.send_backlog.is_empty() {
        match t.socket.try_send_to(&data, to) {
            Ok(_) => return,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => {
                tracing::trace!(error = %e, peer = %to, "coap send failed");
                return;
            }
        }
    }
    if t.send_backlog.len() >= MAX_SEND_BACKLOG {
        Metrics::add(&t.broker.metrics.coap_send_dropped, 1);
        return;
    }
    t.send_backlog.push_back((data, to));
    schedule_flush(act, ctx);
}

fn schedule_flush<A: CoapApp>(act: &mut A, ctx: &mut Context<A>) {
    let t = act.transport();
    if t.flushing {
        return;
    }
    t.flushing = true;
    let socket = t.socket.clone();
    ctx.spawn(
        async move { socket.writable().await }
            .into_actor(act)
            .map(|_, act, ctx| {
                let t = act.transport();
                t.flushing = false;
                while let Some((data, to)) = t.send_backlog.pop_front() {
                    match t.socket.try_send_to(&data, to) {
                        Ok(_) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                            t.send_backlog.push_front((data, to));
                            schedule_flush(act, ctx);
                            return;
                        }
                        Err(_) => {}
                    }
                }
            }),
    );
}

/// A CoAP datagram to `to`: encrypted first on a DTLS listener.
pub fn send_coap<A: CoapApp>(act: &mut A, data: Vec<u8>, to: SocketAddr, ctx: &mut Context<A>) {
    let t = act.transport();
    if t.dtls.is_none() {
        return send_raw(act, data, to, ctx);
    }
    let mut out = Vec::new();
    if let Some(d) = t.peers.get_mut(&to).and_then(|e| e.dtls.as_mut()) {
        if d.conn.send_app_data(&data).is_ok() {
            while let Some(b) = d.conn.poll_transmit() {
                out.push(b);
            }
        }
    }
    for b in out {
        send_raw(act, b, to, ctx);
    }
}

/// Runs `f` on the peer at `addr` (created if needed, except on DTLS where only an
/// association makes one) and handles what it produced.
pub fn with_peer<A: CoapApp>(
    act: &mut A,
    addr: SocketAddr,
    ctx: &mut Context<A>,
    f: impl FnOnce(&mut Peer, Instant, &mut Vec<Event>),
) {
    let now = Instant::now();
    let mut events = Vec::new();
    let t = act.transport();
    if !t.peers.contains_key(&addr) {
        if t.dtls.is_some() {
            // Without its DTLS association nothing can be said to this address.
            return;
        }
        let entry = t.new_entry(now, None);
        t.peers.insert(addr, entry);
    }
    if let Some(entry) = t.peers.get_mut(&addr) {
        f(&mut entry.peer, now, &mut events);
    }
    t.reschedule(addr);
    dispatch(act, addr, events, ctx);
}

fn dispatch<A: CoapApp>(act: &mut A, addr: SocketAddr, events: Vec<Event>, ctx: &mut Context<A>) {
    for ev in events {
        match ev {
            Event::Transmit(data) => send_coap(act, data, addr, ctx),
            other => act.on_event(addr, other, ctx),
        }
    }
}

fn on_dtls_datagram<A: CoapApp>(act: &mut A, from: SocketAddr, data: &[u8], ctx: &mut Context<A>) {
    let now = Instant::now();
    let t = act.transport();
    if !t.peers.contains_key(&from) {
        if t.handshaking >= MAX_HANDSHAKES {
            Metrics::add(&t.broker.metrics.coap_peers_refused, 1);
            return;
        }
        let Some(cfg) = &t.dtls else { return };
        let Ok(conn) = DtlsPeer::new(cfg, from, now) else {
            return;
        };
        t.handshaking += 1;
        let entry = t.new_entry(
            now,
            Some(Box::new(DtlsState {
                conn,
                identity: None,
                established: false,
                waiting: Vec::new(),
            })),
        );
        t.peers.insert(from, entry);
    }
    let Some(entry) = t.peers.get_mut(&from) else { return };
    let Some(d) = entry.dtls.as_mut() else { return };
    let result = d.conn.handle_datagram(now, data);
    let mut out = Vec::new();
    while let Some(b) = d.conn.poll_transmit() {
        out.push(b);
    }
    let failed = matches!(&result, Err(e) if !matches!(e, unigate_dtls::Error::Dropped(_))) || d.conn.is_closed();
    let just_established = !d.established && d.conn.is_established();
    if just_established {
        d.established = true;
    }
    let mut app = Vec::new();
    while let Some(a) = d.conn.poll_app_data() {
        if d.identity.is_some() {
            app.push(a);
        } else if d.waiting.len() < MAX_WAITING {
            d.waiting.push(a);
        }
    }
    if d.established {
        entry.last_seen = now;
    }
    for b in out {
        send_raw(act, b, from, ctx);
    }
    if failed {
        if let Err(e) = &result {
            tracing::debug!(listener = %act.transport().name, peer = %from, error = %e, "dtls association ended");
        }
        return remove_peer(act, from, false, ctx);
    }
    if just_established {
        let t = act.transport();
        t.handshaking = t.handshaking.saturating_sub(1);
        authenticate_dtls(act, from, ctx);
    }
    for a in app {
        with_peer(act, from, ctx, |peer, now, out| peer.handle_datagram(now, &a, out));
    }
    act.transport().reschedule(from);
}

/// Runs the auth chain on what the handshake proved (PSK identity, client certificate).
fn authenticate_dtls<A: CoapApp>(act: &mut A, from: SocketAddr, ctx: &mut Context<A>) {
    let t = act.transport();
    let Some(d) = t.peers.get(&from).and_then(|e| e.dtls.as_ref()) else {
        return;
    };
    let mut creds = Credentials::new(t.protocol, t.name.clone());
    creds.peer = Some(from);
    if let Some(id) = d.conn.psk_identity() {
        match String::from_utf8(id) {
            Ok(id) => creds.psk_identity = Some(id),
            Err(_) => return remove_peer(act, from, true, ctx),
        }
    }
    creds.peer_certificates = d.conn.peer_certificates().unwrap_or_default();
    let fut = act.auth().run(creds);
    ctx.spawn(fut.into_actor(act).map(move |outcome, act, ctx| match outcome {
        Outcome::Allowed(identity) => {
            let waiting = match act.transport().peers.get_mut(&from).and_then(|e| e.dtls.as_mut()) {
                Some(d) => {
                    d.identity = Some(identity);
                    std::mem::take(&mut d.waiting)
                }
                None => return,
            };
            for a in waiting {
                with_peer(act, from, ctx, |peer, now, out| peer.handle_datagram(now, &a, out));
            }
        }
        Outcome::Denied { .. } => remove_peer(act, from, true, ctx),
    }));
}

/// Forgets a remote address; on DTLS, `close` sends close_notify first. The application hears
/// of it through [`CoapApp::on_peer_removed`].
pub fn remove_peer<A: CoapApp>(act: &mut A, addr: SocketAddr, close: bool, ctx: &mut Context<A>) {
    let t = act.transport();
    let Some(mut entry) = t.peers.remove(&addr) else {
        return;
    };
    Metrics::gauge(&t.broker.metrics.coap_peers, -1);
    let mut out = Vec::new();
    if let Some(d) = entry.dtls.as_mut() {
        if !d.established {
            t.handshaking = t.handshaking.saturating_sub(1);
        }
        if close && !d.conn.is_closed() {
            d.conn.close(Instant::now());
            while let Some(b) = d.conn.poll_transmit() {
                out.push(b);
            }
        }
    }
    for b in out {
        send_raw(act, b, addr, ctx);
    }
    act.on_peer_removed(addr, ctx);
}

/// Drops peers that are quiet, idle for `idle` and not `owned` by the application.
pub fn sweep_idle<A: CoapApp>(act: &mut A, idle: Duration, owned: impl Fn(&SocketAddr) -> bool, ctx: &mut Context<A>) {
    let now = Instant::now();
    let stale: Vec<SocketAddr> = act
        .transport()
        .peers
        .iter()
        .filter(|(addr, e)| !owned(addr) && e.peer.is_quiet() && now.duration_since(e.last_seen) >= idle)
        .map(|(addr, _)| *addr)
        .collect();
    for addr in stale {
        remove_peer(act, addr, true, ctx);
    }
}

fn tick<A: CoapApp>(act: &mut A, ctx: &mut Context<A>) {
    let now = Instant::now();
    loop {
        let t = act.transport();
        let Some(Reverse((at, addr))) = t.timers.peek().copied() else {
            break;
        };
        if at > now {
            break;
        }
        t.timers.pop();
        let Some(entry) = t.peers.get_mut(&addr) else {
            continue;
        };
        if entry.scheduled != Some(at) {
            continue;
        }
        entry.scheduled = None;
        let mut events = Vec::new();
        entry.peer.handle_timeout(now, &mut events);
        let mut closed = false;
        let mut out = Vec::new();
        if let Some(d) = entry.dtls.as_mut() {
            if d.conn.poll_timeout().is_some_and(|t| t <= now) {
                closed = d.conn.handle_timeout(now).is_err() || d.conn.is_closed();
            }
            while let Some(b) = d.conn.poll_transmit() {
                out.push(b);
            }
        }
        for b in out {
            send_raw(act, b, addr, ctx);
        }
        if closed {
            remove_peer(act, addr, false, ctx);
            continue;
        }
        act.transport().reschedule(addr);
        dispatch(act, addr, events, ctx);
    }
}

/// Waits for datagrams unless paused or already waiting.
fn arm_read<A: CoapApp>(act: &mut A, ctx: &mut Context<A>) {
    let t = act.transport();
    if t.read_armed || t.paused {
        return;
    }
    t.read_armed = true;
    let socket = t.socket.clone();
    ctx.spawn(
        async move { socket.readable().await }
            .into_actor(act)
            .map(|_, act, ctx| {
                act.transport().read_armed = false;
                read_datagrams(act, ctx);
                arm_read(act, ctx);
            }),
    );
}

fn read_datagrams<A: CoapApp>(act: &mut A, ctx: &mut Context<A>) {
    let mut buf = std::mem::take(&mut act.transport().recv_buf);
    for _ in 0..READS_PER_EVENT {
        let t = act.transport();
        if t.paused {
            break;
        }
        match t.socket.try_recv_from(&mut buf) {
            Ok((n, from)) => {
                let data = buf.get(..n).unwrap_or_default();
                on_datagram(act, data, from, ctx);
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
            // ICMP port unreachable from an earlier send and the like: not this datagram's
            // problem.
            Err(e) => tracing::trace!(error = %e, "coap recv error"),
        }
    }
    act.transport().recv_buf = buf;
}

/// Reads again after a pause.
pub fn resume_reading<A: CoapApp>(act: &mut A, ctx: &mut Context<A>) {
    if act.transport().paused {
        act.transport().paused = false;
        arm_read(act, ctx);
    }
}

fn on_datagram<A: CoapApp>(act: &mut A, data: &[u8], from: SocketAddr, ctx: &mut Context<A>) {
    let t = act.transport();
    Metrics::add(&t.broker.metrics.bytes_received, data.len() as u64);
    if !t.peers.contains_key(&from) && t.peers.len() >= t.max_peers {
        Metrics::add(&t.broker.metrics.coap_peers_refused, 1);
        return;
    }
    if t.dtls.is_some() {
        on_dtls_datagram(act, from, data, ctx);
    } else {
        with_peer(act, from, ctx, |peer, now, out| peer.handle_datagram(now, data, out));
    }
    if let Some(e) = act.transport().peers.get_mut(&from) {
        e.last_seen = Instant::now();
    }
    act.after_datagram(ctx);
}
