//! `GET /api/v1/ws`: a JSON WebSocket for web apps without an MQTT library.
//!
//! In (text frames):
//!
//! ```json
//! {"op": "subscribe", "topic": "sensors/#", "qos": 1, "id": 1}
//! {"op": "unsubscribe", "topic": "sensors/#", "id": 2}
//! {"op": "publish", "topic": "cmd/lamp", "payload": "on", "qos": 1, "id": 3}
//! ```
//!
//! (`publish` takes every field of `POST /api/v1/publish`: `encoding`, `retain`, `properties`.)
//!
//! Out: `{"op": "suback", "id": 1, "topic": "sensors/#", "qos": 1}`, `{"op": "unsuback", "id": 2}`,
//! `{"op": "puback", "id": 3, "routed": 2}` (for QoS 1 and 2 publishes, once routed), errors as
//! `{"op": "error", "id": 3, "code": "NOT_AUTHORIZED", "message": "…"}`, and every message as
//! `{"op": "message", "topic", "payload", "encoding", "qos", "retain", "properties"}`.
//!
//! The socket is a broker session (client id from `?clientid=`, else `ws-…`), authenticated
//! like any HTTP request, with the ACL applied to both directions. A binary frame closes it
//! (1003); a frame that is not a JSON object of a known `op` gets an `error` and the socket
//! stays open.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use actix::prelude::*;
use actix_web::{web, HttpRequest, HttpResponse};
use actix_ws::{AggregatedMessage, AggregatedMessageStream, CloseCode, CloseReason};
use serde::Deserialize;
use tokio::sync::mpsc;
use unigate_auth::acl::Request as AclRequest;
use unigate_pubsub::{Origin, Protocol, QoS, TopicFilter};
use unigate_translators::http as tr;

use super::auth::{authenticate, Principal};
use super::publish::ClientQuery;
use super::HttpShared;
use crate::broker::session::{ClientId, KickReason, QueueLimits, Session, SessionLink, SubOptions};
use crate::broker::{now_ms, Metrics};
use crate::config::QueueDropPolicy;

/// Largest text frame accepted.
const MAX_FRAME: usize = 1024 * 1024;
/// Text held for the writer, at most; beyond it the session is not drained (its queue bounds
/// what waits).
const HIGH_WATER: usize = 256 * 1024;
/// Deliveries turned into frames per turn.
const BATCH: usize = 64;

/// An incoming request.
#[derive(Debug, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
enum Op {
    Subscribe {
        topic: String,
        #[serde(default)]
        qos: Option<u8>,
        #[serde(default)]
        id: Option<serde_json::Value>,
    },
    Unsubscribe {
        topic: String,
        #[serde(default)]
        id: Option<serde_json::Value>,
    },
    Publish {
        #[serde(flatten)]
        request: tr::PublishRequest,
        #[serde(default)]
        id: Option<serde_json::Value>,
    },
}

/// `GET /api/v1/ws`.
pub async fn handshake(
    req: HttpRequest,
    body: web::Payload,
    shared: web::Data<HttpShared>,
    query: web::Query<ClientQuery>,
) -> Result<HttpResponse, actix_web::Error> {
    let who = authenticate(&req, &shared, query.clientid.as_deref()).await?;
    let (response, session, stream) = actix_ws::handle(&req, body)?;
    let stream = stream
        .max_frame_size(MAX_FRAME)
        .aggregate_continuations()
        .max_continuation_size(MAX_FRAME);
    let client_id: ClientId = match &query.clientid {
        Some(_) => who.client_id.clone(),
        None => Arc::from(format!("ws-{:016x}", rand::random::<u64>())),
    };
    let (tx, rx) = mpsc::unbounded_channel();
    let pending = Arc::new(AtomicUsize::new(0));
    let counted = shared.broker.metrics.listener(&shared.name, "http-ws").opened();
    let addr = JsonWs {
        _counted: counted,
        shared: shared.into_inner(),
        who,
        client_id,
        peer: req.peer_addr(),
        session: None,
        generation: 0,
        stream: Some(stream),
        out: tx,
        pending: pending.clone(),
        closing: false,
    }
    .start();
    actix_web::rt::spawn(writer(session, rx, pending, addr));
    Ok(response)
}

enum Out {
    Text(String),
    Pong(bytes::Bytes),
    Close(Option<CloseReason>),
}

async fn writer(
    mut session: actix_ws::Session,
    mut rx: mpsc::UnboundedReceiver<Out>,
    pending: Arc<AtomicUsize>,
    addr: Addr<JsonWs>,
) {
    while let Some(out) = rx.recv().await {
        let ok = match out {
            Out::Text(t) => {
                let n = t.len();
                let ok = session.text(t).await.is_ok();
                if pending.fetch_sub(n, Ordering::Relaxed).saturating_sub(n) < HIGH_WATER / 2 {
                    addr.do_send(Drain);
                }
                ok
            }
            Out::Pong(b) => session.pong(&b).await.is_ok(),
            Out::Close(reason) => {
                let _ = session.close(reason).await;
                addr.do_send(Gone);
                return;
            }
        };
        if !ok {
            addr.do_send(Gone);
            return;
        }
    }
}

/// One JSON WebSocket.
pub struct JsonWs {
    shared: Arc<HttpShared>,
    who: Principal,
    client_id: ClientId,
    peer: Option<std::net::SocketAddr>,
    session: Option<Arc<Session>>,
    generation: u64,
    stream: Option<AggregatedMessageStream>,
    out: mpsc::UnboundedSender<Out>,
    pending: Arc<AtomicUsize>,
    closing: bool,
    /// The connection in the per-listener counts (`/metrics`).
    _counted: crate::broker::metrics::OpenConnection,
}

impl JsonWs {
    fn send(&self, value: serde_json::Value) {
        let text = value.to_string();
        self.pending.fetch_add(text.len(), Ordering::Relaxed);
        Metrics::add(&self.shared.broker.metrics.bytes_sent, text.len() as u64);
        let _ = self.out.send(Out::Text(text));
    }

    fn error(&self, id: Option<serde_json::Value>, code: &str, message: &str) {
        self.send(serde_json::json!({"op": "error", "id": id, "code": code, "message": message}));
    }

    fn read_next(&mut self, ctx: &mut Context<Self>) {
        let Some(mut stream) = self.stream.take() else { return };
        ctx.spawn(
            async move {
                use futures::StreamExt as _;
                let item = stream.next().await;
                (stream, item)
            }
            .into_actor(self)
            .map(|(stream, item), act, ctx| {
                act.stream = Some(stream);
                if act.on_frame(item, ctx) {
                    act.read_next(ctx);
                }
            }),
        );
    }

    /// Handles one frame; false when the socket is done.
    fn on_frame(
        &mut self,
        item: Option<Result<AggregatedMessage, actix_ws::ProtocolError>>,
        ctx: &mut Context<Self>,
    ) -> bool {
        match item {
            Some(Ok(AggregatedMessage::Text(text))) => {
                self.on_text(&text, ctx);
                true
            }
            Some(Ok(AggregatedMessage::Ping(b))) => {
                let _ = self.out.send(Out::Pong(b));
                true
            }
            Some(Ok(AggregatedMessage::Pong(_))) => true,
            Some(Ok(AggregatedMessage::Binary(_))) => {
                self.close(
                    Some(CloseReason {
                        code: CloseCode::Unsupported,
                        description: Some("JSON text frames only".into()),
                    }),
                    ctx,
                );
                false
            }
            Some(Err(e)) => {
                let code = match e {
                    actix_ws::ProtocolError::Overflow => CloseCode::Size,
                    _ => CloseCode::Protocol,
                };
                self.close(
                    Some(CloseReason {
                        code,
                        description: Some(e.to_string()),
                    }),
                    ctx,
                );
                false
            }
            Some(Ok(AggregatedMessage::Close(_))) | None => {
                self.close(None, ctx);
                false
            }
        }
    }

    fn on_text(&mut self, text: &str, ctx: &mut Context<Self>) {
        let value: serde_json::Value = match serde_json::from_str(text) {
            Ok(v) => v,
            Err(e) => return self.error(None, "BAD_REQUEST", &format!("invalid JSON: {e}")),
        };
        let id = value.get("id").cloned();
        let op: Op = match serde_json::from_value(value) {
            Ok(op) => op,
            Err(e) => return self.error(id, "BAD_REQUEST", &e.to_string()),
        };
        match op {
            Op::Subscribe { topic, qos, id } => self.subscribe(&topic, qos, id, ctx),
            Op::Unsubscribe { topic, id } => {
                if let (Some(session), Ok(filter)) = (&self.session, TopicFilter::new(&topic)) {
                    self.shared.broker.unsubscribe(session, &filter);
                }
                self.send(serde_json::json!({"op": "unsuback", "id": id, "topic": topic}));
            }
            Op::Publish { request, id } => self.publish(request, id, ctx),
        }
    }

    fn subscribe(&mut self, topic: &str, qos: Option<u8>, id: Option<serde_json::Value>, ctx: &mut Context<Self>) {
        let broker = self.shared.broker.clone();
        let filter = match TopicFilter::new(topic) {
            Ok(f) => f,
            Err(e) => return self.error(id, "BAD_REQUEST", &format!("invalid topic filter: {e}")),
        };
        if filter.level_count() > self.shared.limits.max_topic_levels {
            return self.error(id, "BAD_REQUEST", "too many topic levels");
        }
        if let Err(e) = broker.check_filter(&filter) {
            return self.error(id, "BAD_REQUEST", &e.to_string());
        }
        let qos = match qos.map(tr::qos).transpose() {
            Ok(q) => q.unwrap_or(QoS::AtMostOnce).min(broker.max_qos()),
            Err(e) => return self.error(id, "BAD_REQUEST", &e.to_string()),
        };
        if !broker.authorize(
            &self.who.identity,
            &self.who.client_id,
            &self.shared.name,
            AclRequest::Subscribe(&filter),
        ) {
            return self.error(
                id,
                "NOT_AUTHORIZED",
                &format!("not authorized to subscribe to {filter}"),
            );
        }
        let session = self.session(ctx);
        let opts = SubOptions {
            qos,
            no_local: false,
            retain_as_published: false,
            sub_id: None,
        };
        broker.subscribe(&session, &filter, opts);
        self.send(serde_json::json!({"op": "suback", "id": id, "topic": topic, "qos": qos as u8}));
        let (identity, cid, name) = (
            self.who.identity.clone(),
            self.who.client_id.clone(),
            self.shared.name.clone(),
        );
        let b = broker.clone();
        broker.deliver_retained(&session, &filter, opts, |t| {
            b.authorize(&identity, &cid, &name, AclRequest::RetainedRead(t))
        });
    }

    fn publish(&mut self, request: tr::PublishRequest, id: Option<serde_json::Value>, ctx: &mut Context<Self>) {
        let broker = &self.shared.broker;
        let origin = Origin {
            protocol: Some(Protocol::Http),
            client_id: Some(self.client_id.clone()),
            username: self.who.identity.username.clone(),
            peer: self.peer,
            listener: Some(self.shared.name.clone()),
        };
        let msg = match tr::publish_to_message(request, origin, now_ms()) {
            Ok(m) => m,
            Err(e) => return self.error(id, "BAD_REQUEST", &e.to_string()),
        };
        if msg.qos > broker.max_qos() {
            return self.error(id, "BAD_REQUEST", "qos above the broker's maximum");
        }
        if !crate::broker::Broker::topic_levels_ok(&msg.topic, self.shared.limits.max_topic_levels) {
            return self.error(id, "BAD_REQUEST", "too many topic levels");
        }
        if !broker.authorize(
            &self.who.identity,
            &self.who.client_id,
            &self.shared.name,
            AclRequest::Publish(&msg.topic),
        ) {
            return self.error(
                id,
                "NOT_AUTHORIZED",
                &format!("not authorized to publish to {}", msg.topic),
            );
        }
        let qos = msg.qos;
        Metrics::add(&broker.metrics.messages_received[qos as usize], 1);
        if qos == QoS::AtMostOnce {
            broker.publish(msg);
            return;
        }
        // Acknowledged once routed and, for persistent sessions and retained messages, durable.
        let (routed, _, commit) = broker.publish_durable(msg, None);
        let Some(rx) = commit else {
            return self.send(serde_json::json!({"op": "puback", "id": id, "routed": routed}));
        };
        ctx.spawn(
            async move { rx.await.unwrap_or(false) }
                .into_actor(self)
                .map(move |ok, act, _| {
                    if ok {
                        act.send(serde_json::json!({"op": "puback", "id": id, "routed": routed}));
                    } else {
                        act.error(id, "UNAVAILABLE", "the message could not be stored");
                    }
                }),
        );
    }

    /// The socket's session, attached on the first subscription.
    fn session(&mut self, ctx: &mut Context<Self>) -> Arc<Session> {
        if let Some(s) = &self.session {
            return s.clone();
        }
        let link = Arc::new(JsonLink(ctx.address()));
        let limits = QueueLimits {
            max_queued: self.shared.config.sse_max_queued,
            drop_policy: QueueDropPolicy::Oldest,
            queue_qos0_offline: false,
            persist: false,
        };
        let a = self.shared.broker.attach(self.client_id.clone(), true, 0, link, limits);
        self.generation = a.generation;
        self.session = Some(a.session.clone());
        a.session
    }

    fn drain(&mut self) {
        if self.closing || self.pending.load(Ordering::Relaxed) >= HIGH_WATER {
            return;
        }
        let Some(session) = &self.session else { return };
        let now = now_ms();
        let batch: Vec<_> = {
            let mut st = session.lock();
            if st.generation != self.generation {
                return;
            }
            st.wake_pending = false;
            let mut batch = Vec::new();
            while batch.len() < BATCH {
                let Some(d) = st.pop() else { break };
                if !d.msg.is_expired(now) {
                    batch.push(d);
                }
            }
            st.last_progress = crate::broker::session::Stamp::now();
            batch
        };
        let more = batch.len() == BATCH;
        for d in batch {
            let mut j = tr::message_to_json(&d.msg, d.qos, d.retain, now);
            j["op"] = "message".into();
            Metrics::add(&self.shared.broker.metrics.messages_sent[d.qos as usize], 1);
            self.send(j);
        }
        if more {
            if let Some(s) = &self.session {
                s.lock().wake();
            }
        }
    }

    fn close(&mut self, reason: Option<CloseReason>, ctx: &mut Context<Self>) {
        if self.closing {
            return;
        }
        self.closing = true;
        let _ = self.out.send(Out::Close(reason));
        ctx.stop();
    }
}

impl Actor for JsonWs {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        Metrics::gauge(&self.shared.broker.metrics.http_sse_streams, 1);
        self.read_next(ctx);
    }

    fn stopped(&mut self, _ctx: &mut Context<Self>) {
        Metrics::gauge(&self.shared.broker.metrics.http_sse_streams, -1);
        if let Some(session) = self.session.take() {
            self.shared.broker.detach(&session, self.generation, None);
        }
    }
}

#[derive(Message)]
#[rtype(result = "()")]
struct Drain;

#[derive(Message)]
#[rtype(result = "()")]
struct Gone;

#[derive(Message)]
#[rtype(result = "()")]
struct Kicked;

impl Handler<Drain> for JsonWs {
    type Result = ();
    fn handle(&mut self, _: Drain, _ctx: &mut Context<Self>) {
        self.drain();
    }
}

impl Handler<Gone> for JsonWs {
    type Result = ();
    fn handle(&mut self, _: Gone, ctx: &mut Context<Self>) {
        self.closing = true;
        ctx.stop();
    }
}

impl Handler<Kicked> for JsonWs {
    type Result = ();
    fn handle(&mut self, _: Kicked, ctx: &mut Context<Self>) {
        self.session = None;
        self.close(
            Some(CloseReason {
                code: CloseCode::Policy,
                description: Some("session taken over or closed".into()),
            }),
            ctx,
        );
    }
}

struct JsonLink(Addr<JsonWs>);

impl SessionLink for JsonLink {
    fn wake(&self) {
        self.0.do_send(Drain);
    }
    fn kick(&self, _reason: KickReason) {
        self.0.do_send(Kicked);
    }
}
