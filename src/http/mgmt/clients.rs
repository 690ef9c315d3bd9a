//! Clients and their subscriptions: list, show, kick, subscribe and unsubscribe on a client's
//! behalf. A "client" is a session (online or not); what its connection says about itself
//! (protocol, listener, peer, user) comes from [`crate::broker::SessionLink::describe`].
//!
//! Subscriptions added here skip the ACL: an operator adding one is the policy.

use std::sync::Arc;
use std::time::Duration;

use actix_web::{web, HttpRequest, HttpResponse};
use futures::StreamExt as _;
use serde::{Deserialize, Serialize};
use unigate_pubsub::{QoS, TopicFilter};
use utoipa::{IntoParams, ToSchema};

use super::openapi::ErrorBody;
use super::{guard, query, Access, Page, Paging};
use crate::broker::session::ClientInfo;
use crate::broker::{Broker, KickReason, Session, SubOptions};
use crate::http::error::ApiError;
use crate::http::HttpShared;

/// How long a connection may take to describe itself before it is listed without details.
const DESCRIBE_TIMEOUT: Duration = Duration::from_secs(2);
/// Connections asked to describe themselves at once while listing.
const DESCRIBE_CONCURRENCY: usize = 64;

/// Query of `GET /api/v1/clients`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ClientsQuery {
    /// Page number, from 1.
    #[param(minimum = 1)]
    pub page: Option<usize>,
    /// Entries per page (at most 1000; default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<usize>,
    /// Only clients speaking this protocol (`mqtt`, `mqtt-ws`, `coap`, `http-sse`, …).
    pub protocol: Option<String>,
    /// Only clients with this user name.
    pub username: Option<String>,
    /// Only clients connected through this listener.
    pub listener: Option<String>,
    /// Only client ids containing this text.
    pub like: Option<String>,
    /// Only online (`true`) or offline (`false`) sessions.
    pub online: Option<bool>,
}

impl ClientsQuery {
    /// Whether a filter needs what connections say about themselves.
    fn needs_details(&self) -> bool {
        self.protocol.is_some() || self.username.is_some() || self.listener.is_some()
    }

    fn keeps(&self, c: &ClientEntry) -> bool {
        let is = |want: &Option<String>, have: &Option<String>| want.is_none() || want == have;
        is(&self.protocol, &c.protocol)
            && is(&self.username, &c.username)
            && is(&self.listener, &c.listener)
            && self.online.is_none_or(|o| o == c.online)
    }
}

/// A client (session) as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct ClientEntry {
    /// The client id.
    pub clientid: String,
    /// Whether a connection is attached.
    pub online: bool,
    /// The protocol of the attached connection (`mqtt`, `mqtt-ws`, `coap`, `http-sse`, …).
    pub protocol: Option<String>,
    /// The listener it came through.
    pub listener: Option<String>,
    /// Its address.
    pub peer: Option<String>,
    /// Its user name.
    pub username: Option<String>,
    /// The authenticator that let it in.
    pub authenticator: Option<String>,
    /// Subscriptions.
    pub subscriptions: usize,
    /// Messages queued for it.
    pub queued: usize,
    /// QoS 1/2 messages sent and not yet acknowledged.
    pub inflight: usize,
    /// Session expiry interval in seconds; `null`: never expires.
    pub session_expiry_interval: Option<u32>,
    /// Protocol details from the connection (MQTT version, keep alive, CoAP observations, …);
    /// `null` while offline.
    #[schema(value_type = Option<Object>)]
    pub details: serde_json::Value,
}

/// One subscription.
#[derive(Debug, Serialize, ToSchema)]
pub struct SubscriptionEntry {
    /// The subscribed client.
    pub clientid: String,
    /// The topic filter (with its `$share/{group}/` prefix for a shared subscription).
    pub topic: String,
    /// The granted QoS.
    pub qos: u8,
    /// MQTT 5 No Local.
    pub no_local: bool,
    /// MQTT 5 Retain As Published.
    pub retain_as_published: bool,
    /// MQTT 5 subscription identifier.
    pub subscription_identifier: Option<u32>,
    /// The share group of a shared subscription.
    pub share_group: Option<String>,
}

impl SubscriptionEntry {
    fn new(clientid: &str, filter: &TopicFilter, opts: &SubOptions) -> SubscriptionEntry {
        SubscriptionEntry {
            clientid: clientid.to_string(),
            topic: filter.as_str().to_string(),
            qos: opts.qos as u8,
            no_local: opts.no_local,
            retain_as_published: opts.retain_as_published,
            subscription_identifier: opts.sub_id,
            share_group: filter.share_group().map(str::to_string),
        }
    }
}

/// Query of `GET /api/v1/subscriptions`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct SubscriptionsQuery {
    /// Page number, from 1.
    #[param(minimum = 1)]
    pub page: Option<usize>,
    /// Entries per page (at most 1000; default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<usize>,
    /// Only this client's subscriptions.
    pub clientid: Option<String>,
    /// Only subscriptions with exactly this topic filter.
    pub topic: Option<String>,
}

/// Body of `POST /api/v1/clients/{clientid}/subscribe`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubscribeRequest {
    /// The topic filter (`$share/{group}/…` for a shared subscription).
    #[schema(min_length = 1)]
    pub topic: String,
    /// The QoS asked for (default 0); the broker's `mqtt.max_qos` caps what is granted.
    #[serde(default)]
    #[schema(minimum = 0, maximum = 2)]
    pub qos: u8,
    /// MQTT 5 No Local: not for shared subscriptions.
    #[serde(default)]
    pub no_local: bool,
    /// MQTT 5 Retain As Published.
    #[serde(default)]
    pub retain_as_published: bool,
}

/// Body of `POST /api/v1/clients/{clientid}/unsubscribe`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UnsubscribeRequest {
    /// The topic filter, as subscribed.
    #[schema(min_length = 1)]
    pub topic: String,
}

fn session(broker: &Broker, clientid: &str) -> Result<Arc<Session>, ApiError> {
    broker
        .session(clientid)
        .ok_or_else(|| ApiError::not_found(format!("no client \"{clientid}\"")))
}

/// A session's entry; asks its connection to describe itself (bounded by [`DESCRIBE_TIMEOUT`]).
async fn entry(session: Arc<Session>) -> ClientEntry {
    let (subscriptions, queued, inflight, expiry, link) = {
        let st = session.lock();
        (
            st.subscriptions.as_ref().map_or(0, |s| s.len()),
            st.queue.len(),
            st.inflight.len(),
            st.expiry_interval,
            st.attached.as_ref().map(|a| a.link.clone()),
        )
    };
    let online = link.is_some();
    let info: Option<ClientInfo> = match link.and_then(|l| l.describe()) {
        Some(f) => tokio::time::timeout(DESCRIBE_TIMEOUT, f).await.ok().flatten(),
        None => None,
    };
    let text = |s: &Option<Arc<str>>| s.as_deref().map(str::to_string);
    ClientEntry {
        clientid: session.client_id.to_string(),
        online,
        protocol: info.as_ref().map(|i| i.protocol.to_string()),
        listener: info.as_ref().map(|i| i.listener.to_string()),
        peer: info.as_ref().and_then(|i| i.peer).map(|p| p.to_string()),
        username: info.as_ref().and_then(|i| text(&i.username)),
        authenticator: info.as_ref().and_then(|i| text(&i.authenticator)),
        subscriptions,
        queued,
        inflight,
        session_expiry_interval: (expiry != u32::MAX).then_some(expiry),
        details: info.map(|i| i.details).unwrap_or(serde_json::Value::Null),
    }
}

/// Describes sessions a few at a time, keeping their order.
async fn entries(sessions: Vec<Arc<Session>>) -> Vec<ClientEntry> {
    futures::stream::iter(sessions)
        .map(entry)
        .buffered(DESCRIBE_CONCURRENCY)
        .collect()
        .await
}

/// `GET /api/v1/clients`.
#[utoipa::path(get, operation_id = "listClients", path = "/api/v1/clients", tag = "clients", params(ClientsQuery),
    responses((status = 200, description = "Clients, sorted by client id", body = Page<ClientEntry>),
        (status = 400, description = "Bad query", body = ErrorBody),
        (status = 401, description = "Not authenticated", body = ErrorBody),
        (status = 403, description = "Not allowed", body = ErrorBody)),
    security(("bearer" = []), ("basic" = [])))]
pub async fn list(req: HttpRequest, shared: web::Data<HttpShared>) -> Result<web::Json<Page<ClientEntry>>, ApiError> {
    guard(&req, &shared, Access::Read).await?;
    let q: ClientsQuery = query(&req)?;
    let paging = Paging::new(q.page, q.limit)?;
    let broker = &shared.broker;
    let sessions: Vec<Arc<Session>> = broker
        .client_ids()
        .into_iter()
        .filter(|id| q.like.as_deref().is_none_or(|l| id.contains(l)))
        .filter_map(|id| broker.session(&id))
        .filter(|s| q.online.is_none_or(|o| o == s.is_online()))
        .collect();
    if q.needs_details() {
        // The filter needs every connection's own account: describe all, then page.
        let all: Vec<ClientEntry> = entries(sessions).await.into_iter().filter(|c| q.keeps(c)).collect();
        return Ok(web::Json(paging.apply(all)));
    }
    // Only this page needs describing.
    let count = sessions.len();
    let page: Vec<Arc<Session>> = sessions.get(paging.range(count)).unwrap_or_default().to_vec();
    Ok(web::Json(paging.page_of(entries(page).await, count)))
}

/// `GET /api/v1/clients/{clientid}`.
#[utoipa::path(get, operation_id = "showClient", path = "/api/v1/clients/{clientid}", tag = "clients",
    params(("clientid" = String, Path, description = "The client id")),
    responses((status = 200, body = ClientEntry),
        (status = 404, description = "No such client", body = ErrorBody),
        (status = 401, description = "Not authenticated", body = ErrorBody),
        (status = 403, description = "Not allowed", body = ErrorBody)),
    security(("bearer" = []), ("basic" = [])))]
pub async fn show(
    req: HttpRequest,
    shared: web::Data<HttpShared>,
    clientid: web::Path<String>,
) -> Result<web::Json<ClientEntry>, ApiError> {
    guard(&req, &shared, Access::Read).await?;
    let s = session(&shared.broker, &clientid)?;
    Ok(web::Json(entry(s).await))
}

/// `DELETE /api/v1/clients/{clientid}`: disconnects an online client (MQTT 5 reason 0x98,
/// Administrative action; a persistent session stays, as after any disconnection), or
/// discards an offline session.
#[utoipa::path(delete, operation_id = "kickClient", path = "/api/v1/clients/{clientid}", tag = "clients",
    params(("clientid" = String, Path, description = "The client id")),
    responses((status = 204, description = "Kicked (online) or discarded (offline)"),
        (status = 404, description = "No such client", body = ErrorBody),
        (status = 401, description = "Not authenticated", body = ErrorBody),
        (status = 403, description = "Not allowed", body = ErrorBody)),
    security(("bearer" = []), ("basic" = [])))]
pub async fn kick(
    req: HttpRequest,
    shared: web::Data<HttpShared>,
    clientid: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    guard(&req, &shared, Access::Change).await?;
    let s = session(&shared.broker, &clientid)?;
    match shared.broker.link_of(&s) {
        Some(link) => link.kick(KickReason::Administrative),
        None => shared.broker.end_session(&s),
    }
    tracing::info!(client_id = %s.client_id, "client kicked through the management API");
    Ok(HttpResponse::NoContent().finish())
}

fn subscriptions_of(session: &Session) -> Vec<SubscriptionEntry> {
    let st = session.lock();
    let mut subs: Vec<SubscriptionEntry> = st
        .subscriptions
        .iter()
        .flat_map(|m| m.iter())
        .map(|(f, o)| SubscriptionEntry::new(&session.client_id, f, o))
        .collect();
    subs.sort_by(|a, b| a.topic.cmp(&b.topic));
    subs
}

/// `GET /api/v1/clients/{clientid}/subscriptions`.
#[utoipa::path(get, operation_id = "clientSubscriptions", path = "/api/v1/clients/{clientid}/subscriptions",
    tag = "clients",
    params(("clientid" = String, Path, description = "The client id"), Pagination),
    responses((status = 200, body = Page<SubscriptionEntry>),
        (status = 400, description = "Bad query", body = ErrorBody),
        (status = 404, description = "No such client", body = ErrorBody),
        (status = 401, description = "Not authenticated", body = ErrorBody),
        (status = 403, description = "Not allowed", body = ErrorBody)),
    security(("bearer" = []), ("basic" = [])))]
pub async fn subscriptions(
    req: HttpRequest,
    shared: web::Data<HttpShared>,
    clientid: web::Path<String>,
) -> Result<web::Json<Page<SubscriptionEntry>>, ApiError> {
    guard(&req, &shared, Access::Read).await?;
    let q: Pagination = query(&req)?;
    let paging = Paging::new(q.page, q.limit)?;
    let s = session(&shared.broker, &clientid)?;
    Ok(web::Json(paging.apply(subscriptions_of(&s))))
}

/// Just `page` and `limit`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct Pagination {
    /// Page number, from 1.
    #[param(minimum = 1)]
    pub page: Option<usize>,
    /// Entries per page (at most 1000; default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<usize>,
}

/// `POST /api/v1/clients/{clientid}/subscribe`: adds (or replaces) a subscription of the
/// session; retained messages are sent for a new, non-shared one (as MQTT retain handling 1).
#[utoipa::path(post, operation_id = "subscribeClient", path = "/api/v1/clients/{clientid}/subscribe", tag = "clients",
    params(("clientid" = String, Path, description = "The client id")),
    request_body = SubscribeRequest,
    responses((status = 200, description = "The subscription as granted", body = SubscriptionEntry),
        (status = 400, description = "Bad topic filter or QoS, or malformed JSON", body = ErrorBody),
        (status = 404, description = "No such client", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Not `Content-Type: application/json`", body = ErrorBody),
        (status = 401, description = "Not authenticated", body = ErrorBody),
        (status = 403, description = "Not allowed", body = ErrorBody)),
    security(("bearer" = []), ("basic" = [])))]
pub async fn subscribe(
    req: HttpRequest,
    shared: web::Data<HttpShared>,
    clientid: web::Path<String>,
    body: web::Json<SubscribeRequest>,
) -> Result<web::Json<SubscriptionEntry>, ApiError> {
    guard(&req, &shared, Access::Change).await?;
    let broker = &shared.broker;
    let s = session(broker, &clientid)?;
    let filter =
        TopicFilter::new(&body.topic).map_err(|e| ApiError::bad_request(format!("invalid topic filter: {e}")))?;
    if filter.level_count() > shared.limits.max_topic_levels {
        return Err(ApiError::bad_request("too many topic levels"));
    }
    broker
        .check_filter(&filter)
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let qos = QoS::try_from(body.qos).map_err(|_| ApiError::bad_request("qos must be 0, 1 or 2"))?;
    if body.no_local && filter.share_group().is_some() {
        return Err(ApiError::bad_request(
            "[MQTT-3.8.3-4] no_local is not allowed on a shared subscription",
        ));
    }
    let opts = SubOptions {
        qos: qos.min(broker.max_qos()),
        no_local: body.no_local,
        retain_as_published: body.retain_as_published,
        sub_id: None,
    };
    let is_new = broker.subscribe(&s, &filter, opts);
    if is_new && filter.share_group().is_none() {
        // No retained messages for a shared subscription (MQTT 5 §4.8.2).
        broker.deliver_retained(&s, &filter, opts, |_| true);
    }
    tracing::info!(client_id = %s.client_id, filter = %filter.as_str(), "subscribed through the management API");
    Ok(web::Json(SubscriptionEntry::new(&s.client_id, &filter, &opts)))
}

/// `POST /api/v1/clients/{clientid}/unsubscribe`.
#[utoipa::path(post, operation_id = "unsubscribeClient", path = "/api/v1/clients/{clientid}/unsubscribe",
    tag = "clients",
    params(("clientid" = String, Path, description = "The client id")),
    request_body = UnsubscribeRequest,
    responses((status = 204, description = "Unsubscribed"),
        (status = 400, description = "Bad topic filter, or malformed JSON", body = ErrorBody),
        (status = 404, description = "No such client or subscription", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Not `Content-Type: application/json`", body = ErrorBody),
        (status = 401, description = "Not authenticated", body = ErrorBody),
        (status = 403, description = "Not allowed", body = ErrorBody)),
    security(("bearer" = []), ("basic" = [])))]
pub async fn unsubscribe(
    req: HttpRequest,
    shared: web::Data<HttpShared>,
    clientid: web::Path<String>,
    body: web::Json<UnsubscribeRequest>,
) -> Result<HttpResponse, ApiError> {
    guard(&req, &shared, Access::Change).await?;
    let s = session(&shared.broker, &clientid)?;
    let filter =
        TopicFilter::new(&body.topic).map_err(|e| ApiError::bad_request(format!("invalid topic filter: {e}")))?;
    if !shared.broker.unsubscribe(&s, &filter) {
        return Err(ApiError::not_found(format!(
            "client \"{}\" has no subscription \"{}\"",
            s.client_id,
            filter.as_str()
        )));
    }
    tracing::info!(client_id = %s.client_id, filter = %filter.as_str(), "unsubscribed through the management API");
    Ok(HttpResponse::NoContent().finish())
}

/// `GET /api/v1/subscriptions`.
#[utoipa::path(get, operation_id = "listSubscriptions", path = "/api/v1/subscriptions",
    tag = "subscriptions", params(SubscriptionsQuery),
    responses((status = 200, description = "Subscriptions, by client id then filter", body = Page<SubscriptionEntry>),
        (status = 400, description = "Bad query", body = ErrorBody),
        (status = 401, description = "Not authenticated", body = ErrorBody),
        (status = 403, description = "Not allowed", body = ErrorBody)),
    security(("bearer" = []), ("basic" = [])))]
pub async fn all_subscriptions(
    req: HttpRequest,
    shared: web::Data<HttpShared>,
) -> Result<web::Json<Page<SubscriptionEntry>>, ApiError> {
    guard(&req, &shared, Access::Read).await?;
    let q: SubscriptionsQuery = query(&req)?;
    let paging = Paging::new(q.page, q.limit)?;
    let broker = &shared.broker;
    let ids = match &q.clientid {
        Some(id) => vec![Arc::from(id.as_str())],
        None => broker.client_ids(),
    };
    let all: Vec<SubscriptionEntry> = ids
        .iter()
        .filter_map(|id| broker.session(id))
        .flat_map(|s| subscriptions_of(&s))
        .filter(|e| q.topic.as_deref().is_none_or(|t| t == e.topic))
        .collect();
    Ok(web::Json(paging.apply(all)))
}
