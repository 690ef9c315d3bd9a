//! MQTT over WebSocket (MQTT 5 §6, RFC 6455): `GET /mqtt` with subprotocol `mqtt`, on HTTP
//! listeners and on dedicated `mqtt-ws` listeners (and WSS with `tls`).
//!
//! A WebSocket client is a full MQTT session: the same sans-IO [`MqttConn`] as on TCP, driven
//! by this actor. Binary frames are a byte stream to it (a packet may span frames, a frame may
//! hold several packets); text frames are refused (close 1003). Output goes to a writer task
//! in binary frames; while more than [`HIGH_WATER`] bytes are on their way, the connection
//! stops draining its session (the queue bounds it), and while a subscriber it publishes to
//! is congested it stops reading (back-pressure, as on TCP).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use actix_web::{web, HttpRequest, HttpResponse};
use actix_ws::{AggregatedMessage, AggregatedMessageStream, CloseCode, CloseReason};
use bytes::Bytes;
use tokio::sync::mpsc;

use super::HttpShared;
use crate::broker::session::Stamp;
use crate::broker::{KickReason, Metrics, SessionLink};
use crate::mqtt::keepalive::{self, Watch, Watched};
use crate::mqtt::protocol::{Close, MqttConn, HIGH_WATER};

/// A paused publisher reads again after this long even if nobody said so.
const PAUSE_LIMIT: Duration = Duration::from_secs(1);
/// How long a closing connection may take to send its last frames.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// `GET /mqtt`: the WebSocket handshake, then an MQTT connection.
pub async fn handshake(
    req: HttpRequest,
    body: web::Payload,
    shared: web::Data<HttpShared>,
) -> Result<HttpResponse, actix_web::Error> {
    let offered = req
        .headers()
        .get_all("Sec-WebSocket-Protocol")
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| matches!(p.trim(), "mqtt" | "mqttv3.1"));
    if !offered {
        // [MQTT-6.0.0-3]: a client must offer "mqtt".
        // Close the connection with the answer: the client asked to upgrade it.
        return Ok(HttpResponse::BadRequest().force_close().json(serde_json::json!({
            "code": "BAD_REQUEST",
            "message": "WebSocket subprotocol \"mqtt\" required",
        })));
    }
    let (response, session, stream) = actix_ws::handle_with_protocols(&req, body, &["mqtt", "mqttv3.1"])?;
    let max_frame = shared.mqtt.limits.max_packet_size as usize + 16;
    let stream = stream
        .max_frame_size(max_frame)
        .aggregate_continuations()
        .max_continuation_size(max_frame);
    let peer = req.peer_addr().unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)));
    let certs = super::auth::peer_certificates(&req);
    let shared = shared.into_inner();
    WsConnection::start_with(stream, session, shared, peer, certs);
    Ok(response)
}

enum Out {
    Frame(Bytes),
    Pong(Bytes),
    Close(Option<CloseReason>),
}

/// One MQTT-over-WebSocket connection.
pub struct WsConnection {
    conn: MqttConn,
    stream: Option<AggregatedMessageStream>,
    out: mpsc::UnboundedSender<Out>,
    /// Bytes handed to the writer and not yet sent.
    in_flight: Arc<AtomicUsize>,
    /// The writer should wake us when it has caught up.
    blocked: Arc<AtomicBool>,
    reading: bool,
    paused: bool,
    closing: Option<Close>,
    /// How the broker and the keep-alive sweeper reach this connection, with its connect /
    /// keep-alive deadline; set when the actor starts.
    link: Option<Arc<WsLink>>,
    awaiting_connect: bool,
    broker: Arc<crate::broker::Broker>,
    /// The connection in the per-listener counts (`/metrics`).
    _counted: crate::broker::metrics::OpenConnection,
}

impl WsConnection {
    fn start_with(
        stream: AggregatedMessageStream,
        session: actix_ws::Session,
        shared: Arc<HttpShared>,
        peer: SocketAddr,
        certs: Vec<Vec<u8>>,
    ) {
        let (tx, rx) = mpsc::unbounded_channel();
        let in_flight = Arc::new(AtomicUsize::new(0));
        let blocked = Arc::new(AtomicBool::new(false));
        let mut conn = MqttConn::new(shared.mqtt.clone(), peer, Instant::now());
        if !certs.is_empty() {
            conn.set_peer_certificates(certs);
        }
        Metrics::gauge(&shared.broker.metrics.connections, 1);
        Metrics::add(&shared.broker.metrics.connections_total, 1);
        let broker = shared.broker.clone();
        let addr = WsConnection {
            conn,
            stream: Some(stream),
            out: tx,
            in_flight: in_flight.clone(),
            blocked: blocked.clone(),
            reading: false,
            paused: false,
            closing: None,
            link: None,
            awaiting_connect: true,
            _counted: broker.metrics.listener(&shared.name, "mqtt-ws").opened(),
            broker,
        }
        .start();
        actix_web::rt::spawn(writer(session, rx, in_flight, blocked, addr));
    }

    fn read_next(&mut self, ctx: &mut Context<Self>) {
        if self.reading || self.paused || self.closing.is_some() || self.conn.is_authenticating() {
            return;
        }
        let Some(mut stream) = self.stream.take() else { return };
        self.reading = true;
        ctx.spawn(
            async move {
                use futures::StreamExt as _;
                let item = stream.next().await;
                (stream, item)
            }
            .into_actor(self)
            .map(|(stream, item), act, ctx| {
                act.stream = Some(stream);
                act.reading = false;
                act.on_frame(item, ctx);
            }),
        );
    }

    fn on_frame(&mut self, item: Option<Result<AggregatedMessage, actix_ws::ProtocolError>>, ctx: &mut Context<Self>) {
        if self.closing.is_some() {
            return;
        }
        let now = Instant::now();
        match item {
            Some(Ok(AggregatedMessage::Binary(data))) => {
                if let Err(close) = self.conn.handle_bytes(&data, now) {
                    return self.close(close, ctx);
                }
            }
            Some(Ok(AggregatedMessage::Ping(data))) => {
                let _ = self.out.send(Out::Pong(data));
            }
            Some(Ok(AggregatedMessage::Pong(_))) => {}
            Some(Ok(AggregatedMessage::Text(_))) => {
                // MQTT is carried in binary frames only ([MQTT-6.0.0-1]).
                tracing::debug!(peer = %self.conn.peer(), "closing: text frame on an MQTT WebSocket");
                let _ = self.out.send(Out::Close(Some(CloseReason {
                    code: CloseCode::Unsupported,
                    description: Some("MQTT uses binary frames".into()),
                })));
                return self.close(Close::PeerGone, ctx);
            }
            Some(Ok(AggregatedMessage::Close(_))) | None => return self.close(Close::PeerGone, ctx),
            Some(Err(e)) => {
                tracing::debug!(peer = %self.conn.peer(), error = %e, "closing: bad WebSocket frame");
                let code = match e {
                    actix_ws::ProtocolError::Overflow => CloseCode::Size,
                    _ => CloseCode::Protocol,
                };
                let _ = self.out.send(Out::Close(Some(CloseReason {
                    code,
                    description: Some(e.to_string()),
                })));
                return self.close(Close::PeerGone, ctx);
            }
        }
        if let Some(creds) = self.conn.take_auth_request() {
            self.authenticate(creds, ctx);
            return;
        }
        if self.conn.take_congested() && !self.paused {
            self.paused = true;
            ctx.run_later(PAUSE_LIMIT, |act, ctx| act.unpause(ctx));
        }
        self.after_input(ctx);
    }

    fn after_input(&mut self, ctx: &mut Context<Self>) {
        if !self.awaiting_connect {
            if let Some(link) = &self.link {
                link.watch.touch(self.conn.last_packet());
            }
        } else if self.conn.is_connected() {
            // The connect deadline becomes the keep-alive deadline.
            self.awaiting_connect = false;
            if let Some(link) = &self.link {
                link.watch.set(self.conn.last_packet(), self.conn.keepalive_interval());
            }
        }
        self.drain(ctx);
        self.read_next(ctx);
    }

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
                return act.close(close, ctx);
            }
            act.after_input(ctx);
        }));
    }

    fn unpause(&mut self, ctx: &mut Context<Self>) {
        if !self.paused || self.closing.is_some() {
            return;
        }
        self.paused = false;
        if self.conn.has_buffered_input() {
            if let Err(close) = self.conn.handle_bytes(&[], Instant::now()) {
                return self.close(close, ctx);
            }
            if self.conn.take_congested() {
                self.paused = true;
                ctx.run_later(PAUSE_LIMIT, |act, ctx| act.unpause(ctx));
            }
        }
        self.drain(ctx);
        self.read_next(ctx);
    }

    /// Moves queued deliveries into frames, unless the writer is behind.
    fn drain(&mut self, ctx: &mut Context<Self>) {
        if self.closing.is_some() {
            return;
        }
        if self.in_flight.load(Ordering::Relaxed) >= HIGH_WATER {
            self.blocked.store(true, Ordering::Relaxed);
        } else if self.conn.drain() {
            ctx.notify(Drain);
        }
        self.flush();
    }

    fn flush(&mut self) {
        if self.conn.out.is_empty() {
            return;
        }
        let frame = self.conn.out.split().freeze();
        Metrics::add(&self.broker.metrics.bytes_sent, frame.len() as u64);
        self.in_flight.fetch_add(frame.len(), Ordering::Relaxed);
        let _ = self.out.send(Out::Frame(frame));
    }

    /// A connect or keep-alive window ended: close if the exact deadline has passed, or
    /// watch again (see [`crate::mqtt::keepalive`]).
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
        // The last packets (a CONNACK with an error, a DISCONNECT), then the close frame.
        self.flush();
        let _ = self.out.send(Out::Close(None));
        ctx.run_later(CLOSE_GRACE, |_, ctx| ctx.stop());
    }
}

/// Sends frames in order; reports progress so that a blocked connection drains again.
async fn writer(
    mut session: actix_ws::Session,
    mut rx: mpsc::UnboundedReceiver<Out>,
    in_flight: Arc<AtomicUsize>,
    blocked: Arc<AtomicBool>,
    addr: Addr<WsConnection>,
) {
    while let Some(out) = rx.recv().await {
        match out {
            Out::Frame(b) => {
                let n = b.len();
                if session.binary(b).await.is_err() {
                    addr.do_send(Gone);
                    return;
                }
                let left = in_flight.fetch_sub(n, Ordering::Relaxed).saturating_sub(n);
                if left < HIGH_WATER / 2 && blocked.swap(false, Ordering::Relaxed) {
                    addr.do_send(Drain);
                }
            }
            Out::Pong(b) => {
                if session.pong(&b).await.is_err() {
                    addr.do_send(Gone);
                    return;
                }
            }
            Out::Close(reason) => {
                let _ = session.close(reason).await;
                addr.do_send(Gone);
                return;
            }
        }
    }
}

impl Actor for WsConnection {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(64);
        let link = Arc::new(WsLink {
            addr: ctx.address(),
            watch: Watch::new(Stamp::now(), self.conn.connect_timeout()),
        });
        keepalive::watch(&link);
        self.conn.set_link(link.clone());
        self.link = Some(link);
        self.read_next(ctx);
    }

    fn stopped(&mut self, _ctx: &mut Context<Self>) {
        if self.closing.is_none() {
            if let Some((session, generation, detached)) = self.conn.handle_closed(&Close::PeerGone) {
                crate::server::schedule_session_timers(self.conn.broker(), session, generation, detached);
            }
        }
        Metrics::gauge(&self.broker.metrics.connections, -1);
    }
}

/// Drain the session (new deliveries, or the writer caught up).
#[derive(Message)]
#[rtype(result = "()")]
struct Drain;

/// The WebSocket is gone.
#[derive(Message)]
#[rtype(result = "()")]
struct Gone;

#[derive(Message)]
#[rtype(result = "()")]
struct KickWs(KickReason);

#[derive(Message)]
#[rtype(result = "()")]
struct ResumeWs;

/// The store committed up to a ticket (see `crate::mqtt::connection::Stored`).
#[derive(Message)]
#[rtype(result = "()")]
struct StoredWs(u64, bool);

impl Handler<StoredWs> for WsConnection {
    type Result = ();
    fn handle(&mut self, m: StoredWs, ctx: &mut Context<Self>) {
        if self.closing.is_some() {
            return;
        }
        match self.conn.handle_stored(m.0, m.1) {
            Ok(()) => self.flush(),
            Err(close) => self.close(close, ctx),
        }
    }
}

#[derive(Message)]
#[rtype(result = "Option<crate::broker::session::ClientInfo>")]
struct DescribeWs;

impl Handler<Drain> for WsConnection {
    type Result = ();
    fn handle(&mut self, _: Drain, ctx: &mut Context<Self>) {
        self.drain(ctx);
    }
}

impl Handler<ExpiredWs> for WsConnection {
    type Result = ();
    fn handle(&mut self, _: ExpiredWs, ctx: &mut Context<Self>) {
        self.on_expired(ctx);
    }
}

impl Handler<Gone> for WsConnection {
    type Result = ();
    fn handle(&mut self, _: Gone, ctx: &mut Context<Self>) {
        if self.closing.is_none() {
            self.close(Close::PeerGone, ctx);
        }
        ctx.stop();
    }
}

impl Handler<KickWs> for WsConnection {
    type Result = ();
    fn handle(&mut self, KickWs(reason): KickWs, ctx: &mut Context<Self>) {
        if self.closing.is_some() {
            return;
        }
        let close = self.conn.handle_kick(reason);
        self.close(close, ctx);
    }
}

impl Handler<ResumeWs> for WsConnection {
    type Result = ();
    fn handle(&mut self, _: ResumeWs, ctx: &mut Context<Self>) {
        self.unpause(ctx);
    }
}

impl Handler<DescribeWs> for WsConnection {
    type Result = Option<crate::broker::session::ClientInfo>;
    fn handle(&mut self, _: DescribeWs, _ctx: &mut Context<Self>) -> Self::Result {
        self.conn.describe()
    }
}

/// A connect or keep-alive window ended.
#[derive(Message)]
#[rtype(result = "()")]
struct ExpiredWs;

struct WsLink {
    addr: Addr<WsConnection>,
    watch: Watch,
}

impl Watched for WsLink {
    fn watch(&self) -> &Watch {
        &self.watch
    }
    fn expired(&self) {
        self.addr.do_send(ExpiredWs);
    }
}

impl SessionLink for WsLink {
    fn wake(&self) {
        self.addr.do_send(Drain);
    }
    fn kick(&self, reason: KickReason) {
        self.addr.do_send(KickWs(reason));
    }
    fn resume(&self) {
        self.addr.do_send(ResumeWs);
    }
    fn stored(&self, ticket: u64, ok: bool) {
        self.addr.do_send(StoredWs(ticket, ok));
    }
    fn describe(&self) -> Option<futures::future::BoxFuture<'static, Option<crate::broker::session::ClientInfo>>> {
        let addr = self.addr.clone();
        Some(Box::pin(async move { addr.send(DescribeWs).await.ok().flatten() }))
    }
}
