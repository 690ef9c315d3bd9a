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

use super::protocol::{Close, ListenerSettings, MqttConn, HIGH_WATER};
use crate::broker::{Broker, KickReason, Metrics, SessionLink};
use crate::server::ConnectionGuard;

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

struct Link(Addr<Connection>);

impl SessionLink for Link {
    fn wake(&self) {
        self.0.do_send(Wake);
    }
    fn kick(&self, reason: KickReason) {
        self.0.do_send(Kick(reason));
    }
}

/// One MQTT connection.
pub struct Connection {
    io: TcpStream,
    conn: MqttConn,
    read_armed: bool,
    write_armed: bool,
    closing: Option<Close>,
    timer: Option<SpawnHandle>,
    awaiting_connect: bool,
    _guard: ConnectionGuard,
}

impl Connection {
    /// Starts the actor for an accepted socket (on the current arbiter).
    pub fn start(
        stream: TcpStream,
        broker: Arc<Broker>,
        listener: Arc<ListenerSettings>,
        guard: ConnectionGuard,
    ) -> io::Result<Addr<Connection>> {
        let peer = stream.peer_addr()?;
        stream.set_nodelay(true)?;
        let conn = MqttConn::new(broker.clone(), listener, peer, Instant::now());
        Ok(Connection {
            io: stream,
            conn,
            read_armed: false,
            write_armed: false,
            closing: None,
            timer: None,
            awaiting_connect: true,
            _guard: guard,
        }
        .start())
    }

    fn arm_read(&mut self, ctx: &mut Context<Self>) {
        if self.read_armed
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
            let step = SCRATCH.with(|s| {
                let mut buf = s.borrow_mut();
                match io.try_read(&mut buf) {
                    Ok(0) => Err(Some(Close::PeerGone)),
                    Ok(n) => conn.handle_bytes(&buf[..n], now).map_err(Some),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => Err(None),
                    Err(_) => Err(Some(Close::PeerGone)),
                }
            });
            match step {
                Ok(()) => {}
                Err(None) => break,
                Err(Some(close)) => {
                    self.close(close, ctx);
                    return;
                }
            }
        }
        if let Some(creds) = self.conn.take_auth_request() {
            self.authenticate(creds, ctx);
            return;
        }
        if self.awaiting_connect && self.conn.is_connected() {
            self.awaiting_connect = false;
            if let Some(t) = self.timer.take() {
                ctx.cancel_future(t);
            }
            self.rearm_keepalive(ctx);
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
            self.awaiting_connect = false;
            if let Some(t) = self.timer.take() {
                ctx.cancel_future(t);
            }
            self.rearm_keepalive(ctx);
        }
        self.drain(ctx);
        self.arm_read(ctx);
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
        while !self.conn.out.is_empty() {
            match self.io.try_write(&self.conn.out) {
                Ok(n) => {
                    self.conn.out.advance(n);
                    written += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.arm_write(ctx);
                    break;
                }
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
        }
        Metrics::add(&self.conn.broker().metrics.bytes_sent, written);
        if !self.conn.out.is_empty() {
            return;
        }
        if self.conn.out.capacity() > 2 * HIGH_WATER {
            self.conn.out = bytes::BytesMut::new();
        }
        if self.closing.is_some() {
            ctx.stop();
            return;
        }
        if written > 0 && self.conn.drain() {
            ctx.notify(Wake);
        }
        if !self.conn.out.is_empty() {
            self.flush_later(ctx);
        }
        self.arm_read(ctx);
    }

    fn flush_later(&mut self, ctx: &mut Context<Self>) {
        // Write what the drain produced on the next turn rather than recursing.
        ctx.run_later(Duration::ZERO, |act, ctx| act.flush(ctx));
    }

    fn rearm_keepalive(&mut self, ctx: &mut Context<Self>) {
        if self.timer.is_some() {
            return;
        }
        let Some(deadline) = self.conn.keepalive_deadline() else {
            return;
        };
        let wait = deadline.saturating_duration_since(Instant::now());
        self.timer = Some(ctx.run_later(wait, |act, ctx| {
            act.timer = None;
            match act.conn.keepalive_deadline() {
                Some(d) if d <= Instant::now() => {
                    let close = act.conn.handle_timeout(Close::KeepAliveTimeout);
                    act.close(close, ctx);
                }
                _ => act.rearm_keepalive(ctx),
            }
        }));
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
        if let Some(t) = self.timer.take() {
            ctx.cancel_future(t);
        }
        if self.conn.out.is_empty() {
            ctx.stop();
        } else {
            self.flush(ctx);
            ctx.run_later(CLOSE_GRACE, |_, ctx| ctx.stop());
        }
    }
}

impl Actor for Connection {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(64);
        self.conn.set_link(Arc::new(Link(ctx.address())));
        self.timer = Some(ctx.run_later(self.conn.connect_timeout(), |act, ctx| {
            act.timer = None;
            if !act.conn.is_connected() {
                tracing::debug!("closing: no CONNECT in time");
                let close = act.conn.handle_timeout(Close::ConnectTimeout);
                act.close(close, ctx);
            }
        }));
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
