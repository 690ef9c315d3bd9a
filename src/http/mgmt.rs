//! The management API under `/api/v1`: clients (list, show, kick, subscribe and unsubscribe for
//! them), subscriptions, retained messages, listeners, statistics, the auth configuration and
//! its reload, and an OpenAPI 3 description of the whole HTTP API (`/api/v1/openapi.json`).
//!
//! - [`clients`] serves `/api/v1/clients…` and `/api/v1/subscriptions`;
//! - [`retained`] serves `/api/v1/retained…`;
//! - [`system`] serves `/api/v1/listeners`, `/api/v1/stats`, `/api/v1/auth` and
//!   `/api/v1/auth/reload`;
//! - [`openapi`] serves the document, generated from the handlers' annotations (utoipa).
//!
//! **Access.** With a `[management]` section, every request authenticates, through
//! `management.chain` or else the listener's own chain, and the user name must be listed in
//! `readers` or `admins` (`"*"`: anyone the chain lets in; a name a chain's no-match `allow`
//! let in unchecked counts as no name). Reads need either; changes (POST,
//! DELETE) need `admins`. Without the section, only loopback peers are served, anonymously:
//! like the default listeners, nothing is exposed beyond the machine by accident.
//!
//! **What the server tells us.** An HTTP listener knows its own settings only. The bound
//! listeners, the running configuration, the management chain and how to reload are recorded
//! in the broker ([`crate::broker::Broker::set_listeners`] and the methods after it): the
//! server calls [`install`] once the listeners are bound and [`configure`] on every reload.
//!
//! **Lists** are paged: `?page=1&limit=100` (`limit` ≤ 1000) gives
//! `{"data": […], "meta": {"page", "limit", "count"}}`, `count` being the number of matching
//! entries over all pages.

pub mod clients;
pub mod openapi;
pub mod retained;
pub mod system;

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, Weak};

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest};
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use unigate_auth::{Credentials, Identity, Outcome, Protocol, Secret};

use super::auth::authenticate;
use super::error::ApiError;
use super::HttpShared;
use crate::broker::{Broker, ListenerInfo, Reloader};

/// `[management]`: who may use the management API.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManagementConfig {
    /// The auth chain management requests pass (a name under `[auth.chains]`); absent: the
    /// chain of the HTTP listener the request came in on.
    #[serde(default)]
    pub chain: Option<String>,
    /// User names that may read (`GET`); `"*"`: anyone the chain lets in.
    #[serde(default)]
    pub readers: Vec<String>,
    /// User names that may read and change (`POST`, `DELETE`); `"*"`: anyone the chain lets in.
    #[serde(default)]
    pub admins: Vec<String>,
}

impl ManagementConfig {
    /// Checks what serde cannot: (key, problem).
    pub fn check(&self, auth: &crate::auth::AuthConfig) -> Result<(), (&'static str, String)> {
        if let Some(chain) = &self.chain {
            if !auth.chains.contains_key(chain) {
                return Err((
                    "chain",
                    format!("auth chain \"{chain}\" is not defined under [auth.chains]"),
                ));
            }
        }
        if self.readers.iter().any(String::is_empty) {
            return Err(("readers", "user names must not be empty".into()));
        }
        if self.admins.iter().any(String::is_empty) {
            return Err(("admins", "user names must not be empty".into()));
        }
        Ok(())
    }

    /// Whether `username` (None: anonymous) may do `access`.
    pub fn permits(&self, username: Option<&str>, access: Access) -> Result<(), ApiError> {
        let listed = |list: &[String]| list.iter().any(|u| u == "*" || Some(u.as_str()) == username);
        if listed(&self.admins) {
            return Ok(());
        }
        match access {
            Access::Read if listed(&self.readers) => Ok(()),
            Access::Change if listed(&self.readers) => Err(ApiError::forbidden(
                "changes through the management API need a user listed in management.admins",
            )),
            _ => Err(ApiError::forbidden(
                "the management API needs a user listed in management.readers or management.admins",
            )),
        }
    }
}

/// What a request does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Reads (`GET`): `readers` or `admins`.
    Read,
    /// Changes (`POST`, `DELETE`): `admins`.
    Change,
}

/// The decision without a `[management]` section: loopback peers only (an IPv4-mapped IPv6
/// loopback address counts).
pub fn loopback_only(peer: Option<IpAddr>) -> Result<(), ApiError> {
    match peer {
        Some(ip) if ip.to_canonical().is_loopback() => Ok(()),
        _ => Err(ApiError {
            status: StatusCode::FORBIDDEN,
            code: "FORBIDDEN",
            message: "management API is loopback-only until [management] is configured".into(),
        }),
    }
}

/// Lets a management request through, or says why not (401, 403, 503).
pub async fn guard(req: &HttpRequest, shared: &HttpShared, access: Access) -> Result<(), ApiError> {
    let config = shared.broker.config();
    let Some(management) = config.as_deref().and_then(|c| c.management.as_ref()) else {
        return loopback_only(req.peer_addr().map(|a| a.ip()));
    };
    let identity = if management.chain.is_some() {
        let chain = shared
            .broker
            .management_chain()
            .ok_or_else(|| ApiError::unavailable("the management auth chain is not set up"))?;
        authenticate_with(req, shared, chain).await?
    } else {
        authenticate(req, shared, None).await?.identity
    };
    management.permits(verified_username(&identity), access)
}

/// The user name an authenticator vouched for. A chain's no-match `allow` lets a client in
/// under whatever name it presented, unchecked (the `anonymous` authenticator): that name must
/// not pass for a listed reader or admin.
pub fn verified_username(identity: &Identity) -> Option<&str> {
    if &*identity.authenticator == "anonymous" {
        return None;
    }
    identity.username.as_deref()
}

/// Authenticates a request through `chain` rather than the listener's: `Authorization:
/// Bearer` / `Basic`, or the TLS client certificate, as [`authenticate`] does (without its
/// cache: management requests are few).
async fn authenticate_with(
    req: &HttpRequest,
    shared: &HttpShared,
    chain: Arc<unigate_auth::Chain>,
) -> Result<Identity, ApiError> {
    let mut creds = Credentials::new(Protocol::Http, shared.name.clone());
    creds.peer = req.peer_addr();
    creds.peer_certificates = super::auth::peer_certificates(req);
    if let Some(header) = req.headers().get(actix_web::http::header::AUTHORIZATION) {
        let header = header
            .to_str()
            .map_err(|_| ApiError::unauthenticated("malformed Authorization header"))?;
        let (scheme, value) = header.split_once(' ').unwrap_or((header, ""));
        let value = value.trim();
        if scheme.eq_ignore_ascii_case("bearer") && !value.is_empty() {
            creds.password = Some(Secret::new(value.as_bytes().to_vec()));
        } else if scheme.eq_ignore_ascii_case("basic") {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(value)
                .ok()
                .and_then(|d| String::from_utf8(d).ok())
                .ok_or_else(|| ApiError::unauthenticated("malformed Basic credentials"))?;
            let (user, password) = decoded
                .split_once(':')
                .ok_or_else(|| ApiError::unauthenticated("malformed Basic credentials"))?;
            creds.username = Some(user.to_string());
            creds.password = Some(Secret::new(password.as_bytes().to_vec()));
        } else {
            return Err(ApiError::unauthenticated(
                "unsupported Authorization scheme (Bearer or Basic)",
            ));
        }
    } else if creds.peer_certificates.is_empty() && !chain.allows_everyone() {
        return Err(ApiError::unauthenticated("credentials required"));
    }
    let auth = crate::auth::ListenerAuth::new(
        chain,
        shared.auth().runtime.clone(),
        shared.auth().timeout,
        shared.auth().audit,
        shared.broker.clone(),
    );
    match auth.run(creds).await {
        Outcome::Allowed(identity) => Ok(identity),
        Outcome::Denied { reason, .. } => Err(match reason {
            unigate_auth::DenyReason::Unavailable => ApiError::unavailable("identity provider unavailable"),
            other => ApiError::unauthenticated(other.to_string()),
        }),
    }
}

// ---------------------------------------------------------------- what the server records

impl From<&crate::server::BoundListener> for ListenerInfo {
    fn from(l: &crate::server::BoundListener) -> ListenerInfo {
        ListenerInfo {
            name: Arc::from(l.name.as_str()),
            protocol: l.protocol.to_string(),
            bind: l.addr,
            tls: l.tls,
        }
    }
}

/// Records what the management API needs once the listeners are bound: the listeners, how to
/// reload (absent without a configuration file), and what [`configure`] records.
pub fn install(
    broker: &Broker,
    config: &crate::config::Config,
    chains: &crate::auth::Chains,
    bound: &[crate::server::BoundListener],
    reloader: Option<Reloader>,
) {
    broker.set_listeners(bound.iter().map(ListenerInfo::from).collect());
    broker.set_reloader(reloader);
    configure(broker, config, chains);
}

/// Records the running configuration and the management chain (start-up and every reload).
pub fn configure(broker: &Broker, config: &crate::config::Config, chains: &crate::auth::Chains) {
    let chain = config
        .management
        .as_ref()
        .and_then(|m| m.chain.as_deref())
        .and_then(|name| chains.for_listener(Some(name)).ok());
    broker.set_management_chain(chain);
    broker.set_config(Arc::new(config.clone()));
}

/// A reloader doing what SIGHUP does ([`crate::server::reload`]) with the file at `path`. It
/// holds the MQTT listeners' settings weakly: they hold the broker, which holds the reloader.
pub fn reloader(path: PathBuf, listeners: &[Arc<crate::mqtt::protocol::ListenerSettings>]) -> Reloader {
    let listeners: Vec<Weak<crate::mqtt::protocol::ListenerSettings>> = listeners.iter().map(Arc::downgrade).collect();
    Box::new(move |broker| {
        let live: Vec<_> = listeners.iter().filter_map(Weak::upgrade).collect();
        crate::server::reload(&path, broker, &live)
    })
}

// ---------------------------------------------------------------- paging

/// Most entries on one page.
pub const MAX_LIMIT: usize = 1000;
/// Entries on a page when `limit` is not given.
pub const DEFAULT_LIMIT: usize = 100;

/// A checked `page` and `limit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Paging {
    /// 1-based page number.
    pub page: usize,
    /// Entries per page.
    pub limit: usize,
}

impl Paging {
    /// From the query's values: `page` ≥ 1 (default 1), `limit` 1..=1000 (default 100).
    pub fn new(page: Option<usize>, limit: Option<usize>) -> Result<Paging, ApiError> {
        let page = page.unwrap_or(1);
        let limit = limit.unwrap_or(DEFAULT_LIMIT);
        if page == 0 {
            return Err(ApiError::bad_request("page starts at 1"));
        }
        if limit == 0 || limit > MAX_LIMIT {
            return Err(ApiError::bad_request(format!(
                "limit must be between 1 and {MAX_LIMIT}"
            )));
        }
        Ok(Paging { page, limit })
    }

    /// The index range of this page among `count` entries.
    pub fn range(&self, count: usize) -> std::ops::Range<usize> {
        let start = (self.page - 1).saturating_mul(self.limit).min(count);
        start..start.saturating_add(self.limit).min(count)
    }

    /// This page of `items`.
    pub fn apply<T>(&self, mut items: Vec<T>) -> Page<T> {
        let count = items.len();
        let range = self.range(count);
        items.truncate(range.end);
        let data = items.split_off(range.start);
        self.page_of(data, count)
    }

    /// A page holding `data`, out of `count` entries.
    pub fn page_of<T>(&self, data: Vec<T>, count: usize) -> Page<T> {
        Page {
            data,
            meta: PageMeta {
                page: self.page,
                limit: self.limit,
                count,
            },
        }
    }
}

/// One page of a list.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Page<T> {
    /// The entries of this page.
    pub data: Vec<T>,
    /// Where this page is.
    pub meta: PageMeta,
}

/// Where a page is.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PageMeta {
    /// 1-based page number.
    pub page: usize,
    /// Entries per page.
    pub limit: usize,
    /// Matching entries over all pages.
    pub count: usize,
}

/// Parses a query string into `T`, answering a JSON 400 when it does not fit.
pub fn query<T: serde::de::DeserializeOwned>(req: &HttpRequest) -> Result<T, ApiError> {
    web::Query::<T>::from_query(req.query_string())
        .map(web::Query::into_inner)
        .map_err(|e| ApiError::bad_request(format!("invalid query: {e}")))
}

/// Registers the management routes.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/api/v1/clients", web::get().to(clients::list))
        .route("/api/v1/clients/{clientid}", web::get().to(clients::show))
        .route("/api/v1/clients/{clientid}", web::delete().to(clients::kick))
        .route(
            "/api/v1/clients/{clientid}/subscriptions",
            web::get().to(clients::subscriptions),
        )
        .route(
            "/api/v1/clients/{clientid}/subscribe",
            web::post().to(clients::subscribe),
        )
        .route(
            "/api/v1/clients/{clientid}/unsubscribe",
            web::post().to(clients::unsubscribe),
        )
        .route("/api/v1/subscriptions", web::get().to(clients::all_subscriptions))
        .route("/api/v1/retained", web::get().to(retained::list))
        .route("/api/v1/retained/{topic:.*}", web::get().to(retained::show))
        .route("/api/v1/retained/{topic:.*}", web::delete().to(retained::delete))
        .route("/api/v1/listeners", web::get().to(system::listeners))
        .route("/api/v1/stats", web::get().to(system::stats))
        .route("/api/v1/auth", web::get().to(system::auth))
        .route("/api/v1/auth/reload", web::post().to(system::reload))
        .route("/api/v1/openapi.json", web::get().to(openapi::document));
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn without_management_only_loopback_peers_pass() {
        for ok in ["127.0.0.1", "127.8.9.10", "::1", "::ffff:127.0.0.1"] {
            assert!(loopback_only(Some(ok.parse().unwrap())).is_ok(), "{ok}");
        }
        for refused in ["10.0.0.1", "192.168.1.2", "::ffff:10.0.0.1", "2001:db8::1", "0.0.0.0"] {
            let e = loopback_only(Some(refused.parse().unwrap())).unwrap_err();
            assert_eq!((e.status, e.code), (StatusCode::FORBIDDEN, "FORBIDDEN"), "{refused}");
            assert_eq!(
                e.message,
                "management API is loopback-only until [management] is configured"
            );
        }
        assert!(loopback_only(None).is_err(), "an unknown peer is not loopback");
    }

    #[test]
    fn readers_read_admins_change() {
        let m = ManagementConfig {
            chain: None,
            readers: vec!["ro".into()],
            admins: vec!["root".into()],
        };
        assert!(m.permits(Some("ro"), Access::Read).is_ok());
        assert_eq!(
            m.permits(Some("ro"), Access::Change).unwrap_err().status,
            StatusCode::FORBIDDEN
        );
        assert!(m.permits(Some("root"), Access::Read).is_ok());
        assert!(m.permits(Some("root"), Access::Change).is_ok());
        assert!(m.permits(Some("eve"), Access::Read).is_err());
        assert!(m.permits(None, Access::Read).is_err(), "anonymous is nobody listed");
    }

    #[test]
    fn star_is_anyone_the_chain_let_in() {
        let m = ManagementConfig {
            chain: None,
            readers: vec!["*".into()],
            admins: vec![],
        };
        assert!(m.permits(Some("eve"), Access::Read).is_ok());
        assert!(m.permits(None, Access::Read).is_ok());
        assert!(m.permits(Some("eve"), Access::Change).is_err());
    }

    #[test]
    fn a_name_let_in_unchecked_is_nobody() {
        let claimed = Identity::anonymous(Some("root"));
        assert_eq!(verified_username(&claimed), None);
        let checked = Identity {
            username: Some(Arc::from("root")),
            authenticator: Arc::from("staff"),
            ..Identity::default()
        };
        assert_eq!(verified_username(&checked), Some("root"));
    }

    #[test]
    fn check_names_the_missing_chain() {
        let m = ManagementConfig {
            chain: Some("admins".into()),
            ..Default::default()
        };
        let (key, message) = m.check(&Default::default()).unwrap_err();
        assert_eq!(key, "chain");
        assert!(message.contains("admins"), "{message}");
    }

    #[test]
    fn paging_checks_and_slices() {
        assert!(Paging::new(Some(0), None).is_err());
        assert!(Paging::new(None, Some(0)).is_err());
        assert!(Paging::new(None, Some(1001)).is_err());
        let p = Paging::new(Some(2), Some(3)).unwrap();
        let page = p.apply((0..8).collect::<Vec<_>>());
        assert_eq!(page.data, [3, 4, 5]);
        assert_eq!((page.meta.page, page.meta.limit, page.meta.count), (2, 3, 8));
        assert_eq!(p.apply(vec![1, 2]).data, Vec::<i32>::new(), "past the end: empty");
        assert_eq!(
            Paging::new(Some(3), Some(3)).unwrap().apply((0..8).collect()).data,
            [6, 7]
        );
    }
}
