//! `GET /topics/{filter}`: with `Accept: text/event-stream`, a Server-Sent Events stream of
//! the messages matching the filter; otherwise the retained message of a topic as JSON.
//!
//! An SSE stream is a broker session like an MQTT client's (client id from the `clientid`
//! query parameter, else `sse-…`), fed through the shared subscription index. Each event is
//!
//! ```text
//! id: 17
//! event: message
//! data: {"topic":"a/b","payload":"…","encoding":"plain","qos":1,"retain":false,"properties":{}}
//! ```
//!
//! with ids rising by one per stream. A stream opened with a `clientid` can resume: its session
//! keeps queueing for `http.sse_resume_window` after the client went away, the last
//! `http.sse_replay` events are kept, and a reconnect with the same `clientid` and
//! `Last-Event-ID: n` (browsers' EventSource send it by themselves) gets the events after `n`
//! and then what was queued meanwhile — nothing lost within the window and the replay buffer.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::{web, HttpRequest, HttpResponse};
use bytes::Bytes;
use parking_lot::Mutex;
use serde::Deserialize;
use tokio::sync::Notify;
use unigate_auth::acl::Request as AclRequest;
use unigate_pubsub::{QoS, Topic, TopicFilter};
use unigate_translators::http as tr;

use super::auth::authenticate;
use super::error::ApiError;
use super::HttpShared;
use crate::broker::session::{ClientId, KickReason, QueueLimits, Session, SessionLink, SubOptions};
use crate::broker::{now_ms, Broker, Metrics};
use crate::config::QueueDropPolicy;

/// Deliveries turned into events per wake-up, at most (then the stream yields).
const BATCH: usize = 64;
/// Resumable streams remembered at most.
const MAX_REPLAY_STREAMS: usize = 10_000;

/// Query of `GET /topics/{filter}`.
#[derive(Debug, Default, Deserialize)]
pub struct SseQuery {
    /// The client id: makes the stream resumable.
    #[serde(default)]
    clientid: Option<String>,
    /// Subscription QoS (default 1): what is queued while the stream is away.
    #[serde(default)]
    qos: Option<u8>,
    /// Retain handling: 0 send retained messages (default), 1 only for a new session, 2 never.
    #[serde(default)]
    rh: Option<u8>,
}

/// Events kept for resumption, by client id.
#[derive(Default)]
pub struct ReplayStore {
    streams: Mutex<HashMap<ClientId, Replay>>,
}

struct Replay {
    next_id: u64,
    events: VecDeque<(u64, Bytes)>,
    until: Instant,
}

impl ReplayStore {
    fn take(&self, client_id: &str) -> Option<Replay> {
        let mut streams = self.streams.lock();
        streams.remove(client_id).filter(|r| r.until > Instant::now())
    }

    fn put(&self, client_id: ClientId, replay: Replay) {
        let mut streams = self.streams.lock();
        if streams.len() >= MAX_REPLAY_STREAMS {
            let now = Instant::now();
            streams.retain(|_, r| r.until > now);
            if streams.len() >= MAX_REPLAY_STREAMS {
                return;
            }
        }
        streams.insert(client_id, replay);
    }
}

/// How the broker reaches a stream.
struct SseLink {
    notify: Arc<Notify>,
    kicked: Arc<AtomicBool>,
    info: crate::broker::session::ClientInfo,
}

impl SessionLink for SseLink {
    fn wake(&self) {
        self.notify.notify_one();
    }

    fn kick(&self, _reason: KickReason) {
        self.kicked.store(true, Ordering::Relaxed);
        self.notify.notify_one();
    }

    fn describe(&self) -> Option<futures::future::BoxFuture<'static, Option<crate::broker::session::ClientInfo>>> {
        let info = self.info.clone();
        Some(Box::pin(async move { Some(info) }))
    }
}

/// Whether the request asks for an event stream (`Accept: text/event-stream`).
pub fn accepts_event_stream(req: &HttpRequest) -> bool {
    req.headers()
        .get_all(actix_web::http::header::ACCEPT)
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("text/event-stream"))
}

/// `GET /topics/{filter}`.
pub async fn get(
    req: HttpRequest,
    shared: web::Data<HttpShared>,
    filter: web::Path<String>,
    query: web::Query<SseQuery>,
) -> Result<HttpResponse, ApiError> {
    let wants_sse = accepts_event_stream(&req);
    let who = authenticate(&req, &shared, query.clientid.as_deref()).await?;
    if !wants_sse {
        return retained(&shared, &who, &filter);
    }
    if shared.broker.is_shutting_down() {
        return Err(ApiError::unavailable("shutting down"));
    }
    let filter = TopicFilter::new(&filter).map_err(|e| ApiError::bad_request(format!("invalid topic filter: {e}")))?;
    if filter.level_count() > shared.limits.max_topic_levels {
        return Err(ApiError::bad_request("too many topic levels"));
    }
    shared
        .broker
        .check_filter(&filter)
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    if !shared.broker.authorize(
        &who.identity,
        &who.client_id,
        &shared.name,
        AclRequest::Subscribe(&filter),
    ) {
        return Err(ApiError::forbidden(format!("not authorized to subscribe to {filter}")));
    }
    let qos = super::publish::qos_of(query.qos, QoS::AtLeastOnce)?.min(shared.broker.max_qos());
    let last_event_id: Option<u64> = req
        .headers()
        .get("Last-Event-ID")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok());
    let resumable = query.clientid.is_some();
    let client_id: ClientId = if resumable {
        who.client_id.clone()
    } else {
        Arc::from(format!("sse-{:016x}", rand::random::<u64>()))
    };
    let notify = Arc::new(Notify::new());
    let kicked = Arc::new(AtomicBool::new(false));
    let link = Arc::new(SseLink {
        notify: notify.clone(),
        kicked: kicked.clone(),
        info: crate::broker::session::ClientInfo {
            protocol: "http-sse",
            listener: shared.name.clone(),
            peer: req.peer_addr(),
            username: who.identity.username.clone(),
            authenticator: Some(who.identity.authenticator.clone()),
            details: serde_json::json!({"filter": filter.as_str(), "qos": qos as u8}),
        },
    });
    let limits = QueueLimits {
        max_queued: shared.config.sse_max_queued,
        drop_policy: QueueDropPolicy::Oldest,
        queue_qos0_offline: true,
        persist: false,
    };
    let expiry = if resumable {
        u32::try_from(shared.config.sse_resume_window.as_secs()).unwrap_or(u32::MAX)
    } else {
        0
    };
    let resuming = resumable && last_event_id.is_some();
    let attached = shared.broker.attach(client_id.clone(), !resuming, expiry, link, limits);
    let opts = SubOptions {
        qos,
        no_local: false,
        retain_as_published: false,
        sub_id: None,
    };
    let is_new = shared.broker.subscribe(&attached.session, &filter, opts);
    let send_retained = match query.rh.unwrap_or(0) {
        0 => true,
        1 => is_new,
        _ => false,
    };
    if send_retained && !(resuming && attached.present) {
        let (broker, identity, cid, name) = (
            shared.broker.clone(),
            who.identity.clone(),
            who.client_id.clone(),
            shared.name.clone(),
        );
        shared.broker.deliver_retained(&attached.session, &filter, opts, |t| {
            broker.authorize(&identity, &cid, &name, AclRequest::RetainedRead(t))
        });
    }
    // Resumption: the events after Last-Event-ID that the client may not have seen.
    let mut next_id = 1;
    let mut replay_events = VecDeque::new();
    let mut first = String::from(": unigate\n\n");
    if let (true, Some(last)) = (resumable, last_event_id) {
        if let Some(r) = shared.replay.take(&client_id) {
            next_id = r.next_id;
            for (id, text) in &r.events {
                if *id > last {
                    first.push_str(&String::from_utf8_lossy(text));
                }
            }
            replay_events = r.events;
        } else {
            next_id = last + 1;
        }
    }
    Metrics::gauge(&shared.broker.metrics.http_sse_streams, 1);
    let stream = SseStream {
        _counted: shared.broker.metrics.listener(&shared.name, "http-sse").opened(),
        shared: shared.clone().into_inner(),
        session: attached.session,
        generation: attached.generation,
        client_id,
        resumable,
        notify,
        kicked,
        next_id: Arc::new(AtomicU64::new(next_id)),
        replay: Some(replay_events),
        first: Some(Bytes::from(first)),
    };
    let body = futures::stream::unfold(stream, |mut s| async move {
        s.next_chunk().await.map(|b| (Ok::<_, actix_web::Error>(b), s))
    });
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header(("Cache-Control", "no-cache"))
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(body))
}

/// A GET without `Accept: text/event-stream`: the retained message of a topic, or 404.
fn retained(shared: &HttpShared, who: &super::auth::Principal, topic: &str) -> Result<HttpResponse, ApiError> {
    let topic = Topic::new(topic).map_err(|_| {
        ApiError::bad_request("a read needs a topic name; ask for text/event-stream to subscribe with wildcards")
    })?;
    if !shared.broker.authorize(
        &who.identity,
        &who.client_id,
        &shared.name,
        AclRequest::RetainedRead(&topic),
    ) {
        return Err(ApiError::forbidden(format!("not authorized to read {topic}")));
    }
    let filter = TopicFilter::new(topic.as_str()).map_err(|e| ApiError::bad_request(e.to_string()))?;
    match shared.broker.retained_matching(&filter).into_iter().next() {
        Some(msg) => Ok(HttpResponse::Ok().json(tr::message_to_json(&msg, msg.qos, true, now_ms()))),
        None => Err(ApiError::not_found(format!("no retained message on {topic}"))),
    }
}

/// One SSE stream's state; dropping it (the client went away) detaches its session.
struct SseStream {
    shared: Arc<HttpShared>,
    session: Arc<Session>,
    generation: u64,
    client_id: ClientId,
    resumable: bool,
    notify: Arc<Notify>,
    kicked: Arc<AtomicBool>,
    next_id: Arc<AtomicU64>,
    replay: Option<VecDeque<(u64, Bytes)>>,
    first: Option<Bytes>,
    /// The stream in the per-listener counts (`/metrics`).
    _counted: crate::broker::metrics::OpenConnection,
}

impl SseStream {
    async fn next_chunk(&mut self) -> Option<Bytes> {
        if let Some(b) = self.first.take() {
            return Some(b);
        }
        loop {
            if self.kicked.load(Ordering::Relaxed) {
                return None;
            }
            match self.drain() {
                Err(()) => return None,
                Ok(Some(chunk)) => return Some(chunk),
                Ok(None) => {}
            }
            let keepalive = self.shared.config.sse_keepalive;
            if tokio::time::timeout(keepalive, self.notify.notified()).await.is_err() {
                return Some(Bytes::from_static(b": keepalive\n\n"));
            }
        }
    }

    /// Turns up to [`BATCH`] queued deliveries into events. `Err`: the session is no longer
    /// ours.
    fn drain(&mut self) -> Result<Option<Bytes>, ()> {
        let now = now_ms();
        let batch: Vec<_> = {
            let mut st = self.session.lock();
            if st.generation != self.generation || st.ended {
                return Err(());
            }
            st.wake_pending = false;
            let mut batch = Vec::new();
            while batch.len() < BATCH {
                let Some(d) = st.pop() else { break };
                if d.msg.is_expired(now) {
                    Metrics::add(&self.shared.broker.metrics.dropped_expired, 1);
                    continue;
                }
                batch.push(d);
            }
            st.last_progress = crate::broker::session::Stamp::now();
            batch
        };
        if batch.is_empty() {
            return Ok(None);
        }
        let mut out = String::new();
        let cap = self.shared.config.sse_replay;
        for d in batch {
            let id = self.next_id.fetch_add(1, Ordering::Relaxed);
            let data = tr::message_to_json(&d.msg, d.qos, d.retain, now);
            let event = format!("id: {id}\nevent: message\ndata: {data}\n\n");
            Metrics::add(&self.shared.broker.metrics.messages_sent[d.qos as usize], 1);
            if let (true, Some(r)) = (self.resumable && cap > 0, self.replay.as_mut()) {
                if r.len() >= cap {
                    r.pop_front();
                }
                r.push_back((id, Bytes::from(event.clone())));
            }
            out.push_str(&event);
        }
        Metrics::add(&self.shared.broker.metrics.bytes_sent, out.len() as u64);
        Ok(Some(Bytes::from(out)))
    }
}

impl Drop for SseStream {
    fn drop(&mut self) {
        Metrics::gauge(&self.shared.broker.metrics.http_sse_streams, -1);
        let broker: &Arc<Broker> = &self.shared.broker;
        let detached = broker.detach(&self.session, self.generation, None);
        if self.resumable && !self.kicked.load(Ordering::Relaxed) {
            if let Some(events) = self.replay.take() {
                self.shared.replay.put(
                    self.client_id.clone(),
                    Replay {
                        next_id: self.next_id.load(Ordering::Relaxed),
                        events,
                        until: Instant::now() + self.shared.config.sse_resume_window,
                    },
                );
            }
        }
        if detached.expire_after.is_some() || detached.will_after.is_some() {
            crate::server::schedule_session_timers(broker, self.session.clone(), self.generation, detached);
        }
    }
}

/// How long SSE resumption state lives (for tests and docs).
pub fn resume_window(shared: &HttpShared) -> Duration {
    shared.config.sse_resume_window
}
