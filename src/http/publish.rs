//! Publishing over HTTP. A request is answered once the message has been handed to every
//! matching session (for QoS 1 and 2 too: routing is synchronous), with
//! `{"id": "…", "routed": n}` (`routed`: how many sessions it went to).

use actix_web::{web, HttpRequest, HttpResponse};
use bytes::Bytes;
use serde::Deserialize;
use unigate_auth::acl::Request as AclRequest;
use unigate_pubsub::{Message, Origin, Protocol, QoS};
use unigate_translators::http as tr;

use super::auth::{authenticate, Principal};
use super::error::ApiError;
use super::HttpShared;
use crate::broker::{now_ms, Broker, Metrics};

/// The `clientid` a request may name.
#[derive(Debug, Default, Deserialize)]
pub struct ClientQuery {
    /// The client id the request acts as (ACL `${clientid}`).
    #[serde(default)]
    pub clientid: Option<String>,
}

/// Query of `POST /topics/{topic}`.
#[derive(Debug, Default, Deserialize)]
pub struct RawQuery {
    /// QoS (default 0).
    #[serde(default)]
    qos: Option<u8>,
    /// Retain flag.
    #[serde(default)]
    retain: Option<bool>,
    /// The client id.
    #[serde(default)]
    clientid: Option<String>,
}

fn origin(shared: &HttpShared, who: &Principal, req: &HttpRequest) -> Origin {
    Origin {
        protocol: Some(Protocol::Http),
        client_id: Some(who.client_id.clone()),
        username: who.identity.username.clone(),
        peer: req.peer_addr(),
        listener: Some(shared.name.clone()),
    }
}

/// Checks and routes one message; returns the JSON result.
fn route(shared: &HttpShared, who: &Principal, msg: Message) -> Result<Routed, ApiError> {
    if shared.broker.is_shutting_down() {
        return Err(ApiError::unavailable("shutting down"));
    }
    if !Broker::topic_levels_ok(&msg.topic, shared.limits.max_topic_levels) {
        return Err(ApiError::bad_request("too many topic levels"));
    }
    if msg.qos > shared.broker.max_qos() {
        return Err(ApiError::bad_request(format!(
            "qos {} is above the broker's maximum",
            msg.qos as u8
        )));
    }
    if msg.retain && !shared.broker.settings().retain_available {
        return Err(ApiError::bad_request("retained messages are not available"));
    }
    if !shared.broker.authorize(
        &who.identity,
        &who.client_id,
        &shared.name,
        AclRequest::Publish(&msg.topic),
    ) {
        return Err(ApiError::forbidden(format!(
            "not authorized to publish to {}",
            msg.topic
        )));
    }
    Metrics::add(&shared.broker.metrics.messages_received[msg.qos as usize], 1);
    Metrics::add(&shared.broker.metrics.bytes_received, msg.payload.len() as u64);
    let id = format!("{:016x}", rand::random::<u64>());
    // QoS 0 is answered at once; QoS 1/2 once routed and, for persistent sessions and retained
    // messages, durable.
    if msg.qos == QoS::AtMostOnce {
        let routed = shared.broker.publish(msg);
        return Ok(Routed::Done(serde_json::json!({"id": id, "routed": routed})));
    }
    let (routed, _, commit) = shared.broker.publish_durable(msg, None);
    let answer = serde_json::json!({"id": id, "routed": routed});
    Ok(match commit {
        Some(rx) => Routed::Committing(answer, rx),
        None => Routed::Done(answer),
    })
}

/// A routed message's answer, possibly waiting for the store.
enum Routed {
    Done(serde_json::Value),
    Committing(serde_json::Value, tokio::sync::oneshot::Receiver<bool>),
}

impl Routed {
    /// The answer once durable; 503 when the store failed.
    async fn answer(self) -> Result<serde_json::Value, ApiError> {
        match self {
            Routed::Done(v) => Ok(v),
            Routed::Committing(v, rx) => match rx.await {
                Ok(true) => Ok(v),
                _ => Err(ApiError::unavailable("the message could not be stored")),
            },
        }
    }
}

/// `POST /api/v1/publish`.
pub async fn publish(
    req: HttpRequest,
    shared: web::Data<HttpShared>,
    query: web::Query<ClientQuery>,
    body: web::Json<tr::PublishRequest>,
) -> Result<HttpResponse, ApiError> {
    let who = authenticate(&req, &shared, query.clientid.as_deref()).await?;
    let msg = tr::publish_to_message(body.into_inner(), origin(&shared, &who, &req), now_ms())
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    Ok(HttpResponse::Ok().json(route(&shared, &who, msg)?.answer().await?))
}

/// `POST /api/v1/publish/bulk`: an array of publish requests, answered with an array of
/// results in the same order (`{"id", "routed"}` or `{"code", "message"}`); the status is 200
/// when all succeeded, 207-like partial failures are reported per item with status 200 too.
pub async fn bulk(
    req: HttpRequest,
    shared: web::Data<HttpShared>,
    query: web::Query<ClientQuery>,
    body: web::Json<Vec<tr::PublishRequest>>,
) -> Result<HttpResponse, ApiError> {
    let who = authenticate(&req, &shared, query.clientid.as_deref()).await?;
    let items = body.into_inner();
    if items.len() > shared.config.max_bulk {
        return Err(ApiError::too_large(format!(
            "at most {} messages per bulk request",
            shared.config.max_bulk
        )));
    }
    let now = now_ms();
    // All are routed first, then the answers wait for the store together (one group commit).
    let routed: Vec<Result<Routed, ApiError>> = items
        .into_iter()
        .map(|item| {
            tr::publish_to_message(item, origin(&shared, &who, &req), now)
                .map_err(|e| ApiError::bad_request(e.to_string()))
                .and_then(|msg| route(&shared, &who, msg))
        })
        .collect();
    let mut results = Vec::with_capacity(routed.len());
    for r in routed {
        let answer = match r {
            Ok(r) => r.answer().await,
            Err(e) => Err(e),
        };
        results.push(answer.unwrap_or_else(|e| serde_json::json!({"code": e.code, "message": e.message})));
    }
    Ok(HttpResponse::Ok().json(results))
}

/// `POST /topics/{topic}` (or PUT): the body is the payload, Content-Type its content type;
/// query `qos`, `retain`, `clientid`.
pub async fn raw(
    req: HttpRequest,
    shared: web::Data<HttpShared>,
    topic: web::Path<String>,
    query: web::Query<RawQuery>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let who = authenticate(&req, &shared, query.clientid.as_deref()).await?;
    let body = read_body(payload, shared.config.max_body).await?;
    let qos = tr::qos(query.qos.unwrap_or(0)).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let content_type = req
        .headers()
        .get(actix_web::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let msg = tr::raw_to_message(
        &topic,
        body,
        content_type,
        qos,
        query.retain.unwrap_or(false),
        origin(&shared, &who, &req),
    )
    .map_err(|e| ApiError::bad_request(e.to_string()))?;
    Ok(HttpResponse::Ok().json(route(&shared, &who, msg)?.answer().await?))
}

/// Reads a whole request body, refusing more than `limit` bytes with 413.
async fn read_body(mut payload: web::Payload, limit: usize) -> Result<Bytes, ApiError> {
    use futures::StreamExt as _;
    let mut body = bytes::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| ApiError::bad_request(format!("cannot read the body: {e}")))?;
        if body.len() + chunk.len() > limit {
            return Err(ApiError::too_large(format!("the body is larger than {limit} bytes")));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// QoS shorthand for other modules.
pub fn qos_of(n: Option<u8>, default: QoS) -> Result<QoS, ApiError> {
    match n {
        None => Ok(default),
        Some(n) => tr::qos(n).map_err(|e| ApiError::bad_request(e.to_string())),
    }
}
