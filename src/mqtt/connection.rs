//! The connection actor: owns one TCP socket and one [`MqttConn`], and does the I/O.
//!
//! Reads and writes are readiness-driven (`readable()` / `try_read`, `writable()` /
//! `try_write`): data is read into a per-thread scratch buffer and decoded in place, and only a
//! partial packet's tail is copied into the connection's own buffer. An idle connection
//! therefore holds no read or write buffer at all, which is what keeps memory per idle
//! connection small.

use std::cell::RefCell;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use actix::prelude::*;
use bytes::Buf;
use tokio::net::TcpStream;

use super::keepalive::{self, Watch, Watched};
use super::protocol::{Close, ListenerSettings, MqttConn, HIGH_WATER};
use crate::broker::session::Stamp;
use crate::broker::{KickReason, Metrics, SessionLink};
use crate::server::ConnectionGuard;
use crate::tls::TlsState;

/// Reads per readiness event before yielding to other connections on the thread.
const READS_PER_EVENT: usize = 4;
const SCRATCH_SIZE: usize = 64 * 1024;
/// How long a closing connection may take to flush its last packets.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

thread_local! {
    static SCRATCH: RefCell<Vec<u8>> = RefCell::new(vec![0; SCRATCH_SIZE]);
}

/// New deliveries are queued for this connection's session.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Wake;

/// Close the connection.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Kick(pub KickReason);

/// A congested subscriber caught up: read from this publisher again.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Resume;

/// The store committed this connection's operations up to a ticket (or failed).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Stored {
    /// The highest ticket now durable.
    pub ticket: u64,
    /// False: the store failed.
    pub ok: bool,
}

/// A paused publisher is resumed after this long even if nobody said so (a safety net: the
/// subscriber may have gone away between our pause and its drain).
const PAUSE_LIMIT: Duration = Duration::from_secs(1);

/// A connect or keep-alive window ended (see [`keepalive`](super::keepalive)).
#[derive(Message)]
#[rtype(result = "()")]
struct Expired;

/// How the broker and the keep-alive sweeper reach a connection.
struct Link {
    addr: Addr<Connection>,
    watch: Watch,
}

impl SessionLink for Link {
    fn wake(&self) {
        self.addr.do_send(Wake);
    }
    fn kick(&self, reason: KickReason) {
        self.addr.do_send(Kick(reason));
    }
    fn resume(&self) {
        self.addr.do_send(Resume);
    }
    fn stored(&self, ticket: u64, ok: bool) {
        // At most one per connection per commit (the writer sends only the highest ticket).
        self.addr.do_send(Stored { ticket, ok });
    }
    fn describe(&self) -> Option<futures::future::BoxFuture<'static, Option<crate::broker::session::ClientInfo>>> {
        let addr = self.addr.clone();
        Some(Box::pin(async move { addr.send(Describe).await.ok().flatten() }))
    }
}

impl Watched for Link {
    fn watch(&self) -> &Watch {
        &self.watch
    }
    fn expired(&self) {
        self.addr.do_send(Expired);
    }
}

/// What the connection can say about itself.
#[derive(Message)]
#[rtype(result = "Option<crate::broker::session::ClientInfo>")]
pub struct Describe;

impl Handler<Describe> for Connection {
    type Result = Option<crate::broker::session::ClientInfo>;
    fn handle(&mut self, _: Describe, _ctx: &mut Context<Self>) -> Self::Result {
        let mut info = self.conn.describe()?;
        if self.tls.is_some() {
            info.details["tls"] = serde_json::Value::Bool(true);
        }
        Some(info)
    }
}

/// One MQTT connection.
pub struct Connection {
    io: TcpStream,
    /// TLS state on TLS listeners (boxed: it is large, and plain connections should not pay).
    tls: Option<Box<TlsState>>,
    conn: MqttConn,
    read_armed: bool,
    write_armed: bool,
    /// Not reading: a subscriber this client publishes to is congested (back-pressure).
    paused: bool,
    closing: Option<Close>,
    /// How others reach this connection, with its connect / keep-alive deadline; set when the
    /// actor starts.
    link: Option<Arc<Link>>,
    awaiting_connect: bool,
    _guard: ConnectionGuard,
}

impl Connection {
    /// Starts the actor for an accepted socket (on the current arbiter).
    pub fn start(
        stream: TcpStream,
        peer: std::net::SocketAddr,
        listener: Arc<ListenerSettings>,
        guard: ConnectionGuard,
    ) -> io::Result<Addr<Connection>> {
        // TCP_NODELAY and keepalive come from the listening socket (see server::bind_one).
        let tls_config = listener.tls.read().clone();
        let tls = match tls_config {
            Some(config) => Some(Box::new(
                TlsState::new(config).map_err(|e| io::Error::other(e.to_string()))?,
            )),
            None => None,
        };
        let conn = MqttConn::new(listener, peer, Instant::now());
        Ok(Connection {
            io: stream,
            tls,
            conn,
            read_armed: false,
            write_armed: false,
            paused: false,
            closing: None,
            link: None,
            awaiting_connect: true,
            _guard: guard,
        }
        .start())
    }

    fn arm_read(&mut self, ctx: &mut Context<Self>) {
        if self.read_armed
            || self.paused
            || self.closing.is_some()
            || self.conn.out.len() >= HIGH_WATER
            || self.conn.is_authenticating()
        {
            return;
        }
        self.read_armed = true;
        ctx.spawn(ReadReady);
    }

    fn arm_write(&mut self, ctx: &mut Context<Self>) {
        if self.write_armed {
            return;
        }
        self.write_armed = true;
        ctx.spawn(WriteReady);
    }

    fn on_readable(&mut self, ctx: &mut Context<Self>) {
        let now = Instant::now();
        for _ in 0..READS_PER_EVENT {
            let io = &self.io;
            let conn = &mut self.conn;
            let tls = &mut self.tls;
            let step = SCRATCH.with(|s| {
                let mut buf = s.borrow_mut();
                let (n, drained) = match read_once(io, &mut buf) {
                    Ok(read) => read,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Err(None),
                    Err(_) => return Err(Some(Close::PeerGone)),
                };
                if n == 0 {
                    return Err(Some(Close::PeerGone));
                }
                match tls {
                    None => conn.handle_bytes(&buf[..n], now).map_err(Some)?,
                    Some(tls) => read_tls(tls, conn, &buf[..n], now)?,
                }
                Ok(drained)
            });
            match step {
                Ok(_) if self.conn.is_authenticating() || self.conn.is_congested() => break,
                Ok(true) => break,
                Ok(false) => {}
                Err(None) => break,
                Err(Some(close)) => {
                    self.close(close, ctx);
                    return;
                }
            }
        }
        if self.tls.as_ref().is_some_and(|t| t.wants_write()) {
            // Handshake messages to send.
            self.flush(ctx);
        }
        if let Some(creds) = self.conn.take_auth_request() {
            self.authenticate(creds, ctx);
            return;
        }
        if self.conn.take_congested() && !self.paused {
            self.paused = true;
            ctx.run_later(PAUSE_LIMIT, |act, ctx| act.unpause(ctx));
        }
        if !self.awaiting_connect {
            if let Some(link) = &self.link {
                link.watch.touch(self.conn.last_packet());
            }
        } else if self.conn.is_connected() {
            self.on_connected();
        }
        self.drain(ctx);
        self.arm_read(ctx);
    }

    /// Runs the listener's auth chain off this thread; reading pauses until it answers.
    fn authenticate(&mut self, creds: unigate_auth::Credentials, ctx: &mut Context<Self>) {
        let answer = self.conn.listener().auth.run(creds);
        ctx.spawn(answer.into_actor(self).map(|outcome, act, ctx| {
            if act.closing.is_some() {
                return;
            }
            let resumed = act
                .conn
                .handle_auth(outcome)
                .and_then(|()| act.conn.handle_bytes(&[], Instant::now()));
            if let Err(close) = resumed {
                act.close(close, ctx);
                return;
            }
            // Packets sent right behind CONNECT were held back; they may hold another CONNECT
            // for the chain (a protocol error caught in handle_packet), so just continue.
            act.on_authenticated(ctx);
        }));
    }

    fn on_authenticated(&mut self, ctx: &mut Context<Self>) {
        if self.awaiting_connect && self.conn.is_connected() {
            self.on_connected();
        }
        self.drain(ctx);
        self.arm_read(ctx);
    }

    /// CONNECT accepted: the connect deadline becomes the keep-alive deadline.
    fn on_connected(&mut self) {
        self.awaiting_connect = false;
        if let Some(link) = &self.link {
            link.watch.set(self.conn.last_packet(), self.conn.keepalive_interval());
        }
    }

    fn drain(&mut self, ctx: &mut Context<Self>) {
        if self.closing.is_some() {
            return;
        }
        if self.conn.drain() {
            // More waiting: come back after other actors had a turn.
            ctx.notify(Wake);
        }
        self.flush(ctx);
    }

    fn flush(&mut self, ctx: &mut Context<Self>) {
        let mut written = 0u64;
        let result = match &mut self.tls {
            None => write_plain(&self.io, &mut self.conn.out, &mut written),
            Some(tls) => {
                if !self.conn.out.is_empty() {
                    let n = tls.write_plaintext(&self.conn.out);
                    self.conn.out.advance(n);
                }
                tls.write_ciphertext(&mut SockWriter {
                    io: &self.io,
                    written: &mut written,
                })
            }
        };
        match result {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.arm_write(ctx),
            Err(_) => {
                self.conn.out.clear();
                if self.closing.is_none() {
                    self.close(Close::PeerGone, ctx);
                } else {
                    ctx.stop();
                }
                return;
            }
        }
        Metrics::add(&self.conn.broker().metrics.bytes_sent, written);
        if self.has_pending_output() {
            if !self.write_armed {
                // rustls took only part of the plaintext: go on once it drained.
                self.flush_later(ctx);
            }
            return;
        }
        if self.closing.is_some() {
            ctx.stop();
            return;
        }
        let more = written > 0 && self.conn.drain();
        if more {
            ctx.notify(Wake);
        }
        if !self.conn.out.is_empty() {
            self.flush_later(ctx);
        } else if !more {
            // Everything is written and nothing waits: the connection is idle, and an idle
            // connection holds no write buffer (a burst once received would otherwise keep up
            // to its high-water mark for good).
            self.conn.out = bytes::BytesMut::new();
        }
        self.arm_read(ctx);
    }

    fn has_pending_output(&self) -> bool {
        !self.conn.out.is_empty() || self.tls.as_ref().is_some_and(|t| t.wants_write())
    }

    fn flush_later(&mut self, ctx: &mut Context<Self>) {
        // Write what the drain produced on the next turn rather than recursing.
        ctx.run_later(Duration::ZERO, |act, ctx| act.flush(ctx));
    }

    /// A connect or keep-alive window ended: close if the exact deadline has passed, or
    /// watch again.
    fn on_expired(&mut self, ctx: &mut Context<Self>) {
        if self.closing.is_some() {
            return;
        }
        match self.conn.check_deadline(Instant::now()) {
            Err(close) => self.close(close, ctx),
            Ok(window) => {
                if let Some(link) = &self.link {
                    link.watch.set(self.conn.last_packet(), window);
                }
            }
        }
    }

    /// Starts closing: the session is detached now; the socket closes when the last bytes
    /// are written (or after a grace period).
    fn close(&mut self, close: Close, ctx: &mut Context<Self>) {
        if self.closing.is_some() {
            return;
        }
        if let Some((session, generation, detached)) = self.conn.handle_closed(&close) {
            crate::server::schedule_session_timers(self.conn.broker(), session, generation, detached);
        }
        self.closing = Some(close);
        if let Some(link) = &self.link {
            link.watch.set(Stamp::NEVER, None);
        }
        if let Some(tls) = &mut self.tls {
            // The last packets (a CONNACK with an error, a DISCONNECT) go before close_notify.
            if !self.conn.out.is_empty() {
                let n = tls.write_plaintext(&self.conn.out);
                self.conn.out.advance(n);
            }
            tls.close();
        }
        if self.has_pending_output() {
            self.flush(ctx);
            ctx.run_later(CLOSE_GRACE, |_, ctx| ctx.stop());
        } else {
            ctx.stop();
        }
    }
}

impl Actor for Connection {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(64);
        let link = Arc::new(Link {
            addr: ctx.address(),
            watch: Watch::new(Stamp::now(), self.conn.connect_timeout()),
        });
        keepalive::watch(&link);
        self.conn.set_link(link.clone());
        self.link = Some(link);
        self.arm_read(ctx);
    }

    fn stopped(&mut self, _ctx: &mut Context<Self>) {
        if self.closing.is_none() {
            if let Some((session, generation, detached)) = self.conn.handle_closed(&Close::PeerGone) {
                crate::server::schedule_session_timers(self.conn.broker(), session, generation, detached);
            }
        }
        // Half-close politely so that the peer reads our last packet before the FIN.
        let _ = socket2::SockRef::from(&self.io).shutdown(std::net::Shutdown::Write);
    }
}

impl Handler<Wake> for Connection {
    type Result = ();
    fn handle(&mut self, _: Wake, ctx: &mut Context<Self>) {
        self.drain(ctx);
    }
}

impl Connection {
    fn unpause(&mut self, ctx: &mut Context<Self>) {
        if !self.paused || self.closing.is_some() {
            return;
        }
        self.paused = false;
        // Packets that arrived behind the congested publish go first.
        if self.conn.has_buffered_input() {
            if let Err(close) = self.conn.handle_bytes(&[], Instant::now()) {
                self.close(close, ctx);
                return;
            }
            if self.conn.take_congested() {
                self.paused = true;
                ctx.run_later(PAUSE_LIMIT, |act, ctx| act.unpause(ctx));
            }
            self.drain(ctx);
        }
        self.arm_read(ctx);
    }
}

impl Handler<Stored> for Connection {
    type Result = ();
    fn handle(&mut self, m: Stored, ctx: &mut Context<Self>) {
        if self.closing.is_some() {
            return;
        }
        match self.conn.handle_stored(m.ticket, m.ok) {
            Ok(()) => self.flush(ctx),
            Err(close) => self.close(close, ctx),
        }
    }
}

impl Handler<Resume> for Connection {
    type Result = ();
    fn handle(&mut self, _: Resume, ctx: &mut Context<Self>) {
        self.unpause(ctx);
    }
}

impl Handler<Expired> for Connection {
    type Result = ();
    fn handle(&mut self, _: Expired, ctx: &mut Context<Self>) {
        self.on_expired(ctx);
    }
}

impl Handler<Kick> for Connection {
    type Result = ();
    fn handle(&mut self, kick: Kick, ctx: &mut Context<Self>) {
        if self.closing.is_some() {
            return;
        }
        let close = self.conn.handle_kick(kick.0);
        self.close(close, ctx);
    }
}

/// Decrypts `data` and feeds the plaintext to the MQTT side. A TLS failure closes the
/// connection (after the alert rustls queued is flushed).
fn read_tls(tls: &mut TlsState, conn: &mut MqttConn, data: &[u8], now: Instant) -> Result<(), Option<Close>> {
    let was_handshaking = tls.is_handshaking();
    let read = match tls.read_ciphertext(data) {
        Ok(r) => r,
        Err(e) => {
            tracing::debug!(peer = %conn.peer(), error = %e, "TLS failed");
            return Err(Some(Close::PeerGone));
        }
    };
    if was_handshaking && !tls.is_handshaking() {
        conn.set_peer_certificates(tls.peer_certificates());
    }
    if !read.plaintext.is_empty() {
        conn.handle_bytes(&read.plaintext, now).map_err(Some)?;
    }
    if read.closed {
        return Err(Some(Close::PeerGone));
    }
    Ok(())
}

/// One read into `buf`: the byte count, and whether the socket is drained. A read shorter than
/// the buffer drained the socket's receive queue, so the readiness is cleared right there
/// (as tokio's own `poll_read` does) instead of by one more `recv` that would only say
/// `EAGAIN`: one system call less per read event. Data arriving meanwhile is a new edge, which
/// tokio does not lose (it clears only the readiness of the event the read saw).
fn read_once(io: &TcpStream, buf: &mut [u8]) -> io::Result<(usize, bool)> {
    let mut got = None;
    let result = io.try_io(tokio::io::Interest::READABLE, || {
        let n = io::Read::read(&mut &*socket2::SockRef::from(io), buf)?;
        got = Some(n);
        if n > 0 && n < buf.len() {
            // Clears the readiness; the bytes are in `got`.
            Err(io::ErrorKind::WouldBlock.into())
        } else {
            Ok(())
        }
    });
    match (result, got) {
        (_, Some(n)) => Ok((n, n < buf.len())),
        (Err(e), None) => Err(e),
        (Ok(()), None) => Err(io::ErrorKind::WouldBlock.into()),
    }
}

/// Writes plaintext straight to the socket until it would block.
fn write_plain(io: &TcpStream, out: &mut bytes::BytesMut, written: &mut u64) -> io::Result<()> {
    while !out.is_empty() {
        let n = io.try_write(out)?;
        out.advance(n);
        *written += n as u64;
    }
    Ok(())
}

/// `io::Write` over a non-blocking socket (for rustls' `write_tls`).
struct SockWriter<'a> {
    io: &'a TcpStream,
    written: &'a mut u64,
}

impl io::Write for SockWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.io.try_write(buf)?;
        *self.written += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Waits for the socket to be readable, then reads. Zero-sized: arming it allocates nothing,
/// and tokio keeps the waker in the socket's own registration.
struct ReadReady;

impl ActorFuture<Connection> for ReadReady {
    type Output = ();

    fn poll(
        self: Pin<&mut Self>,
        act: &mut Connection,
        ctx: &mut Context<Connection>,
        task: &mut std::task::Context<'_>,
    ) -> Poll<()> {
        let Poll::Ready(res) = act.io.poll_read_ready(task) else {
            return Poll::Pending;
        };
        act.read_armed = false;
        match res {
            Ok(()) => act.on_readable(ctx),
            Err(_) => act.close(Close::PeerGone, ctx),
        }
        Poll::Ready(())
    }
}

/// Waits for the socket to be writable, then flushes. Zero-sized, like [`ReadReady`].
struct WriteReady;

impl ActorFuture<Connection> for WriteReady {
    type Output = ();

    fn poll(
        self: Pin<&mut Self>,
        act: &mut Connection,
        ctx: &mut Context<Connection>,
        task: &mut std::task::Context<'_>,
    ) -> Poll<()> {
        let Poll::Ready(res) = act.io.poll_write_ready(task) else {
            return Poll::Pending;
        };
        act.write_armed = false;
        match res {
            Ok(()) => act.flush(ctx),
            Err(_) => ctx.stop(),
        }
        Poll::Ready(())
    }
}

/// Memory per idle connection is a target (at most 2 KB, docs/benchmarks.md), so the sizes
/// that decide it are pinned here; a field added to the connection or session shows up as a
/// failure with the figure, not as a silent regression of the benchmark.
#[cfg(all(test, target_arch = "x86_64"))]
mod size_budget {
    use std::mem::size_of;

    #[test]
    fn connection_task_and_session_stay_in_their_allocation_classes() {
        // The actor runs as a tokio task: header (32) + scheduler and id (16) + stage tag (8)
        // + this future + trailer (48), aligned to 128 bytes on x86_64. At most 536 bytes of
        // future make a 640-byte task; one byte more makes it 768.
        let future = size_of::<actix::dev::ContextFut<super::Connection, actix::Context<super::Connection>>>();
        assert!(
            future <= 536,
            "the connection actor's future is {future} bytes; budget 536"
        );
        // The session lives in an `Arc` (16 bytes of counts): at most 232 bytes keep it in a
        // 256-byte malloc chunk.
        let session = size_of::<crate::broker::session::Session>();
        assert!(session <= 232, "a session is {session} bytes; budget 232");
    }
}
