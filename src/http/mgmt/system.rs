//! The server as a whole: bound listeners, statistics, the auth configuration (names and kinds,
//! never secrets) and its reload.

use std::sync::atomic::Ordering;

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest};
use serde::Serialize;
use utoipa::ToSchema;

use super::clients::Pagination;
use super::openapi::ErrorBody;
use super::{guard, query, Access, Page, Paging};
use crate::auth::{AuthenticatorConfig, NoMatchConfig};
use crate::broker::{Broker, ListenerInfo, Metrics};
use crate::http::error::ApiError;
use crate::http::HttpShared;

/// A bound listener.
#[derive(Debug, Serialize, ToSchema)]
pub struct ListenerEntry {
    /// Its name.
    pub name: String,
    /// `mqtt`, `mqtt-ws`, `coap`, `http`.
    pub protocol: String,
    /// The address it is bound to.
    pub bind: String,
    /// Whether it speaks TLS (DTLS for CoAP).
    pub tls: bool,
    /// Its auth chain (absent: anonymous clients are accepted).
    pub auth: Option<String>,
}

/// `GET /api/v1/listeners`.
#[utoipa::path(get, operation_id = "listListeners", path = "/api/v1/listeners", tag = "system", params(Pagination),
    responses((status = 200, description = "The bound listeners, in configuration order", body = Page<ListenerEntry>),
        (status = 400, description = "Bad query", body = ErrorBody),
        (status = 401, description = "Not authenticated", body = ErrorBody),
        (status = 403, description = "Not allowed", body = ErrorBody)),
    security(("bearer" = []), ("basic" = [])))]
pub async fn listeners(
    req: HttpRequest,
    shared: web::Data<HttpShared>,
) -> Result<web::Json<Page<ListenerEntry>>, ApiError> {
    guard(&req, &shared, Access::Read).await?;
    let q: Pagination = query(&req)?;
    let paging = Paging::new(q.page, q.limit)?;
    let config = shared.broker.config();
    let entries = shared
        .broker
        .listeners()
        .iter()
        .map(|l: &ListenerInfo| ListenerEntry {
            name: l.name.to_string(),
            protocol: l.protocol.clone(),
            bind: l.bind.to_string(),
            tls: l.tls,
            auth: config.as_deref().and_then(|c| chain_of(c, &l.name)),
        })
        .collect();
    Ok(web::Json(paging.apply(entries)))
}

/// The chain a listener uses: its own `auth`, else `auth.default_chain`.
fn chain_of(config: &crate::config::Config, listener: &str) -> Option<String> {
    config
        .listeners
        .iter()
        .find(|l| l.name == listener)
        .and_then(|l| l.auth.clone())
        .or_else(|| config.auth.default_chain.clone())
}

/// Counts by QoS.
#[derive(Debug, Serialize, ToSchema)]
pub struct ByQos {
    /// QoS 0.
    pub qos0: u64,
    /// QoS 1.
    pub qos1: u64,
    /// QoS 2.
    pub qos2: u64,
}

impl ByQos {
    fn of(counters: &[std::sync::atomic::AtomicU64; 3]) -> ByQos {
        ByQos {
            qos0: Metrics::read(&counters[0]),
            qos1: Metrics::read(&counters[1]),
            qos2: Metrics::read(&counters[2]),
        }
    }
}

/// The broker's counters (the same as `/metrics`, as JSON).
#[derive(Debug, Serialize, ToSchema)]
pub struct Stats {
    /// Connections open now.
    pub connections: i64,
    /// Connections accepted since start.
    pub connections_total: u64,
    /// Sessions (online and offline).
    pub sessions: i64,
    /// Subscriptions.
    pub subscriptions: i64,
    /// Retained messages.
    pub retained: i64,
    /// Messages received from clients, by QoS.
    pub messages_received: ByQos,
    /// Messages sent to clients, by QoS.
    pub messages_sent: ByQos,
    /// Bytes read from clients.
    pub bytes_received: u64,
    /// Bytes written to clients.
    pub bytes_sent: u64,
    /// Messages dropped, by reason.
    pub dropped: Dropped,
    /// Connections closed for malformed input or protocol violations.
    pub protocol_errors: u64,
    /// Wills published.
    pub wills_published: u64,
    /// Requests refused by the ACL.
    pub acl_denied: u64,
    /// Authentication results.
    pub auth: Vec<AuthCount>,
    /// CoAP.
    pub coap: CoapStats,
    /// Server-Sent Events streams open now.
    pub sse_streams: i64,
    /// Seconds since start.
    pub uptime_seconds: u64,
}

/// Messages dropped, by reason.
#[derive(Debug, Serialize, ToSchema)]
pub struct Dropped {
    /// A session queue was full.
    pub queue_full: u64,
    /// QoS 0 for an offline session that does not queue it.
    pub offline_qos0: u64,
    /// Expired before delivery.
    pub expired: u64,
    /// Larger than the client's maximum packet size.
    pub too_large: u64,
    /// Published with no matching subscription.
    pub no_subscribers: u64,
}

/// One authentication counter.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuthCount {
    /// The authenticator (`anonymous`: a chain's no-match allow; `chain`: its no-match deny).
    pub authenticator: String,
    /// `allow` or `deny`.
    pub result: String,
    /// How many.
    pub count: u64,
}

/// CoAP counters.
#[derive(Debug, Serialize, ToSchema)]
pub struct CoapStats {
    /// Requests handled.
    pub requests: u64,
    /// Clients (sessions) now.
    pub clients: i64,
    /// Remote addresses with state now.
    pub peers: i64,
    /// Datagrams from new addresses dropped at the listener's limit.
    pub peers_refused: u64,
    /// Observations now.
    pub observations: i64,
    /// Observations ended by deregistration (Observe 1).
    pub observations_cancelled_deregister: u64,
    /// Observations ended by RST.
    pub observations_cancelled_reset: u64,
    /// Observations ended by exhausted retransmissions.
    pub observations_cancelled_timeout: u64,
    /// CON notifications never acknowledged.
    pub con_timeouts: u64,
    /// Datagrams dropped because the socket stayed full.
    pub send_dropped: u64,
}

/// The statistics now.
pub fn stats_of(broker: &Broker) -> Stats {
    let m = &broker.metrics;
    let gauge = |g: &std::sync::atomic::AtomicI64| g.load(Ordering::Relaxed);
    Stats {
        connections: gauge(&m.connections),
        connections_total: Metrics::read(&m.connections_total),
        sessions: gauge(&m.sessions),
        subscriptions: gauge(&m.subscriptions),
        retained: gauge(&m.retained),
        messages_received: ByQos::of(&m.messages_received),
        messages_sent: ByQos::of(&m.messages_sent),
        bytes_received: Metrics::read(&m.bytes_received),
        bytes_sent: Metrics::read(&m.bytes_sent),
        dropped: Dropped {
            queue_full: Metrics::read(&m.dropped_queue_full),
            offline_qos0: Metrics::read(&m.dropped_offline_qos0),
            expired: Metrics::read(&m.dropped_expired),
            too_large: Metrics::read(&m.dropped_too_large),
            no_subscribers: Metrics::read(&m.unrouted),
        },
        protocol_errors: Metrics::read(&m.protocol_errors),
        wills_published: Metrics::read(&m.wills_published),
        acl_denied: Metrics::read(&m.acl_denied),
        auth: m
            .auth_counts()
            .into_iter()
            .map(|(authenticator, result, count)| AuthCount {
                authenticator,
                result: result.to_string(),
                count,
            })
            .collect(),
        coap: CoapStats {
            requests: Metrics::read(&m.coap_requests),
            clients: gauge(&m.coap_clients),
            peers: gauge(&m.coap_peers),
            peers_refused: Metrics::read(&m.coap_peers_refused),
            observations: gauge(&m.coap_observations),
            observations_cancelled_deregister: Metrics::read(&m.coap_observe_cancelled[0]),
            observations_cancelled_reset: Metrics::read(&m.coap_observe_cancelled[1]),
            observations_cancelled_timeout: Metrics::read(&m.coap_observe_cancelled[2]),
            con_timeouts: Metrics::read(&m.coap_con_timeouts),
            send_dropped: Metrics::read(&m.coap_send_dropped),
        },
        sse_streams: gauge(&m.http_sse_streams),
        uptime_seconds: broker.uptime().as_secs(),
    }
}

/// `GET /api/v1/stats`.
#[utoipa::path(get, operation_id = "stats", path = "/api/v1/stats", tag = "system",
    responses((status = 200, body = Stats),
        (status = 401, description = "Not authenticated", body = ErrorBody),
        (status = 403, description = "Not allowed", body = ErrorBody)),
    security(("bearer" = []), ("basic" = [])))]
pub async fn stats(req: HttpRequest, shared: web::Data<HttpShared>) -> Result<web::Json<Stats>, ApiError> {
    guard(&req, &shared, Access::Read).await?;
    Ok(web::Json(stats_of(&shared.broker)))
}

/// The auth configuration: names and kinds, never secrets, keys or file contents.
#[derive(Debug, Default, Serialize, ToSchema)]
pub struct AuthSummary {
    /// The chain of listeners that name none.
    pub default_chain: Option<String>,
    /// Whether decisions are logged.
    pub audit: bool,
    /// How long a chain may take, in milliseconds.
    pub timeout_ms: u64,
    /// The chains.
    pub chains: Vec<ChainSummary>,
    /// The authenticator instances.
    pub authenticators: Vec<AuthenticatorSummary>,
    /// The ACL, if one is configured.
    pub acl: Option<AclSummary>,
    /// Who may use the management API.
    pub management: ManagementSummary,
}

/// A chain.
#[derive(Debug, Serialize, ToSchema)]
pub struct ChainSummary {
    /// Its name.
    pub name: String,
    /// Its authenticators, in order.
    pub authenticators: Vec<String>,
    /// `deny` or `allow` when all of them ignore a client.
    pub no_match: String,
    /// The listeners using it (directly or as the default chain).
    pub listeners: Vec<String>,
}

/// An authenticator instance.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuthenticatorSummary {
    /// Its name.
    pub name: String,
    /// `password`, `jwt`, `oauth2`, `x509` or `psk`.
    pub kind: String,
}

/// The ACL.
#[derive(Debug, Serialize, ToSchema)]
pub struct AclSummary {
    /// Rules.
    pub rules: usize,
    /// What happens when none matches.
    pub no_match: String,
}

/// `[management]`.
#[derive(Debug, Default, Serialize, ToSchema)]
pub struct ManagementSummary {
    /// Whether a `[management]` section exists (without one: loopback only).
    pub configured: bool,
    /// Its chain (absent: each HTTP listener's own).
    pub chain: Option<String>,
    /// Readers.
    pub readers: Vec<String>,
    /// Admins.
    pub admins: Vec<String>,
}

fn kind(a: &AuthenticatorConfig) -> &'static str {
    match a {
        AuthenticatorConfig::X509(_) => "x509",
        AuthenticatorConfig::Password(_) => "password",
        AuthenticatorConfig::Jwt(_) => "jwt",
        AuthenticatorConfig::Psk(_) => "psk",
        AuthenticatorConfig::Oauth2(_) => "oauth2",
    }
}

/// The summary of a configuration; `listeners` are the bound ones.
pub fn auth_summary(config: &crate::config::Config, listeners: &[ListenerInfo]) -> AuthSummary {
    let auth = &config.auth;
    AuthSummary {
        default_chain: auth.default_chain.clone(),
        audit: auth.audit,
        timeout_ms: u64::try_from(auth.timeout.as_millis()).unwrap_or(u64::MAX),
        chains: auth
            .chains
            .iter()
            .map(|(name, c)| ChainSummary {
                name: name.clone(),
                authenticators: c.authenticators.clone(),
                no_match: match c.no_match {
                    NoMatchConfig::Deny => "deny",
                    NoMatchConfig::Allow => "allow",
                }
                .into(),
                listeners: listeners
                    .iter()
                    .filter(|l| chain_of(config, &l.name).as_deref() == Some(name.as_str()))
                    .map(|l| l.name.to_string())
                    .collect(),
            })
            .collect(),
        authenticators: auth
            .authenticators
            .iter()
            .map(|(name, a)| AuthenticatorSummary {
                name: name.clone(),
                kind: kind(a).into(),
            })
            .collect(),
        acl: config.acl.as_ref().map(|a| AclSummary {
            rules: a.rules.len(),
            no_match: a.no_match.to_string(),
        }),
        management: config
            .management
            .as_ref()
            .map(|m| ManagementSummary {
                configured: true,
                chain: m.chain.clone(),
                readers: m.readers.clone(),
                admins: m.admins.clone(),
            })
            .unwrap_or_default(),
    }
}

/// `GET /api/v1/auth`.
#[utoipa::path(get, operation_id = "authSummary", path = "/api/v1/auth", tag = "auth",
    responses((status = 200, body = AuthSummary),
        (status = 401, description = "Not authenticated", body = ErrorBody),
        (status = 403, description = "Not allowed", body = ErrorBody),
        (status = 503, description = "The server has not recorded its configuration", body = ErrorBody)),
    security(("bearer" = []), ("basic" = [])))]
pub async fn auth(req: HttpRequest, shared: web::Data<HttpShared>) -> Result<web::Json<AuthSummary>, ApiError> {
    guard(&req, &shared, Access::Read).await?;
    let config = shared
        .broker
        .config()
        .ok_or_else(|| ApiError::unavailable("the server has not recorded its configuration"))?;
    Ok(web::Json(auth_summary(&config, &shared.broker.listeners())))
}

/// Outcome of a reload.
#[derive(Debug, Serialize, ToSchema)]
pub struct Reloaded {
    /// `reloaded`.
    pub status: String,
}

/// `POST /api/v1/auth/reload`: what SIGHUP does — re-reads the configuration file and swaps in
/// its auth chains, ACL, audit switch and TLS certificates; a file that does not load changes
/// nothing.
#[utoipa::path(post, operation_id = "reloadAuth", path = "/api/v1/auth/reload", tag = "auth",
    responses((status = 200, body = Reloaded),
        (status = 401, description = "Not authenticated", body = ErrorBody),
        (status = 403, description = "Not allowed", body = ErrorBody),
        (status = 409, description = "Started without a configuration file: nothing to reload", body = ErrorBody),
        (status = 500, description = "The file does not load; the running configuration is kept", body = ErrorBody)),
    security(("bearer" = []), ("basic" = [])))]
pub async fn reload(req: HttpRequest, shared: web::Data<HttpShared>) -> Result<web::Json<Reloaded>, ApiError> {
    guard(&req, &shared, Access::Change).await?;
    let broker = shared.broker.clone();
    // Reading files and building authenticators blocks: not on an HTTP worker.
    let outcome = web::block(move || broker.reload())
        .await
        .map_err(|_| ApiError::unavailable("reload did not complete"))?;
    match outcome {
        None => Err(ApiError {
            status: StatusCode::CONFLICT,
            code: "CONFLICT",
            message: "the server was started without a configuration file: nothing to reload".into(),
        }),
        Some(Err(e)) => {
            tracing::error!("reload through the management API failed, keeping the running configuration: {e:#}");
            Err(ApiError {
                status: StatusCode::INTERNAL_SERVER_ERROR,
                code: "RELOAD_FAILED",
                message: format!("{e:#}"),
            })
        }
        Some(Ok(())) => {
            tracing::info!("configuration reloaded through the management API");
            Ok(web::Json(Reloaded {
                status: "reloaded".into(),
            }))
        }
    }
}
