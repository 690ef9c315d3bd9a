//! The HTTP listener (`protocol = "http"`): actix-web serving HTTP/1.1 and h2c (prior
//! knowledge) on a plain port, HTTP/2 by ALPN (and HTTP/1.1) with `tls`.
//!
//! - `POST /api/v1/publish`, `POST /api/v1/publish/bulk`, `POST /topics/{topic}` publish.
//! - `GET /topics/{filter}` with `Accept: text/event-stream` streams messages as Server-Sent
//!   Events ([`sse`]); without it, reads the retained message of a topic.
//! - `GET /mqtt`: MQTT over WebSocket ([`ws`]); a `protocol = "mqtt-ws"` listener serves only
//!   this.
//! - `GET /health`, `GET /ready`, `GET /metrics` (Prometheus text, [`metrics`]).
//!
//! Browser pages from other origins are refused unless `http.cors_origins` lists them
//! ([`cors`]; `/mqtt` is not checked). Every request passes the listener's auth chain (`Authorization: Bearer` or `Basic`, or the
//! TLS client certificate) and the ACL. Errors are JSON `{"code": "…", "message": "…"}`.

pub mod auth;
pub mod cors;
pub mod error;
pub mod jsonws;
pub mod lwm2m;
pub mod metrics;
pub mod mgmt;
pub mod publish;
pub mod sse;
pub mod ws;

use std::sync::Arc;
use std::time::Duration;

use actix_web::{web, App, HttpServer};
use serde::Deserialize;

use crate::auth::ListenerAuth;
use crate::broker::metrics::HttpRoute;
use crate::broker::Broker;
use crate::config::Limits;

/// `[http]`: settings of every HTTP listener.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Largest request body (bytes); larger ones get 413.
    pub max_body: usize,
    /// Requests in a bulk publish, at most.
    pub max_bulk: usize,
    /// A client must send its request head within this time (slowloris).
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Idle keep-alive connections are closed after this long.
    #[serde(with = "humantime_serde")]
    pub keep_alive: Duration,
    /// An SSE stream sends a comment line this often when it has nothing to say (proxies close
    /// silent connections).
    #[serde(with = "humantime_serde")]
    pub sse_keepalive: Duration,
    /// Events an SSE stream keeps for `Last-Event-ID` resumption.
    pub sse_replay: usize,
    /// How long an SSE stream with a `clientid` may be away and resume without losing messages
    /// (its session keeps queueing meanwhile).
    #[serde(with = "humantime_serde")]
    pub sse_resume_window: Duration,
    /// Messages queued for one SSE stream, at most (the oldest is dropped).
    pub sse_max_queued: usize,
    /// Successful authentications are remembered this long (keyed by a hash of the
    /// credentials), so that a Basic password is not hashed on every request ("0s": never).
    #[serde(with = "humantime_serde")]
    pub auth_cache: Duration,
    /// Origins of browser pages allowed to call this listener (CORS): `"*"` for any, or
    /// origins such as `"https://app.example.com"`. Pages from other origins get 403; the
    /// listener's own origin, non-browser clients and `/mqtt` are never checked.
    pub cors_origins: Vec<String>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            max_body: 1024 * 1024,
            max_bulk: 1000,
            request_timeout: Duration::from_secs(10),
            keep_alive: Duration::from_secs(30),
            sse_keepalive: Duration::from_secs(15),
            sse_replay: 100,
            sse_resume_window: Duration::from_secs(60),
            sse_max_queued: 1000,
            auth_cache: Duration::from_secs(60),
            cors_origins: Vec::new(),
        }
    }
}

impl HttpConfig {
    /// Checks values serde cannot: (key, problem).
    pub fn check(&self) -> Result<(), (&'static str, &'static str)> {
        if self.max_body < 1024 {
            return Err(("max_body", "must be at least 1024 bytes"));
        }
        if self.max_bulk == 0 {
            return Err(("max_bulk", "must be at least 1"));
        }
        if self.request_timeout.is_zero() {
            return Err(("request_timeout", "must be more than 0"));
        }
        if self.sse_keepalive.is_zero() {
            return Err(("sse_keepalive", "must be more than 0"));
        }
        if self.sse_max_queued == 0 {
            return Err(("sse_max_queued", "must be at least 1"));
        }
        if cors::Origins::parse(&self.cors_origins).is_err() {
            return Err((
                "cors_origins",
                "entries are \"*\" or origins such as \"https://app.example.com\" (scheme, host, optional port; no path)",
            ));
        }
        Ok(())
    }
}

/// What every request of one listener shares.
pub struct HttpShared {
    /// Listener name.
    pub name: Arc<str>,
    /// The broker.
    pub broker: Arc<Broker>,
    /// `[http]`.
    pub config: HttpConfig,
    /// Listener limits (`max_connections`, `max_topic_levels`).
    pub limits: Limits,
    /// Remembered authentications.
    pub auth_cache: crate::auth::CredentialCache,
    /// SSE events kept for resumption.
    pub replay: sse::ReplayStore,
    /// The LwM2M server's devices, for `/api/v1/lwm2m`.
    pub lwm2m: Arc<crate::lwm2m::Hub>,
    /// What MQTT-over-WebSocket connections of this listener use (limits, auth chain).
    pub mqtt: Arc<crate::mqtt::protocol::ListenerSettings>,
    /// A `protocol = "mqtt-ws"` listener: only `/mqtt` is served.
    pub ws_only: bool,
}

impl HttpShared {
    /// The listener's auth chain: the one its MQTT-over-WebSocket connections use, so that a
    /// reload (SIGHUP, management API) swaps it for both.
    pub fn auth(&self) -> &ListenerAuth {
        &self.mqtt.auth
    }
}

/// Builds and starts the server on `listener` with `workers` threads; the returned server runs
/// on the current actix system.
pub fn start(
    listener: std::net::TcpListener,
    shared: Arc<HttpShared>,
    tls: Option<Arc<rustls::ServerConfig>>,
    workers: usize,
) -> std::io::Result<actix_web::dev::Server> {
    let max_conn = shared.limits.max_connections.div_ceil(workers.max(1)).max(1);
    let (request_timeout, keep_alive) = (shared.config.request_timeout, shared.config.keep_alive);
    // Every HTTP connection is counted while it is open (its connection data is dropped with
    // it), WebSocket upgrades included.
    let counts = shared.broker.metrics.listener(&shared.name, "http");
    let origins = cors::Origins::parse(&shared.config.cors_origins).map_err(std::io::Error::other)?;
    let data = web::Data::from(shared);
    let server = HttpServer::new(move || {
        let timed = data.clone();
        let origins = origins.clone();
        App::new()
            .wrap_fn(move |req, srv| {
                // Request latency by route (until the response head): one clock read each way
                // and an atomic increment, no allocation.
                let route = HttpRoute::of(req.method().as_str(), req.path());
                let started = std::time::Instant::now();
                let response = actix_web::dev::Service::call(srv, req);
                let shared = timed.clone();
                async move {
                    let response = response.await;
                    shared.broker.metrics.http_route(route).observe(started.elapsed());
                    response
                }
            })
            // Outermost: a refused origin or a preflight is answered before anything else.
            .wrap_fn(move |req, srv| {
                use futures::future::{ready, Either};
                match cors::decide(&origins, req.method(), req.path(), req.headers()) {
                    cors::Decision::Answer(answer) => Either::Left(ready(Ok(req.into_response(answer)))),
                    decision => {
                        let response = actix_web::dev::Service::call(srv, req);
                        Either::Right(async move {
                            let mut response = response.await?;
                            if let cors::Decision::Allow(headers) = decision {
                                for (name, value) in headers {
                                    response.headers_mut().append(name, value);
                                }
                            }
                            Ok(response)
                        })
                    }
                }
            })
            .app_data(data.clone())
            .app_data(web::PayloadConfig::new(data.config.max_body))
            .app_data(
                web::JsonConfig::default()
                    .limit(data.config.max_body)
                    .error_handler(|e, _| error::ApiError::from_json(e).into()),
            )
            // Query strings that do not fit (`?qos=x`, `?retain=maybe`) get the JSON error body
            // too, not actix's plain-text one.
            .app_data(
                web::QueryConfig::default()
                    .error_handler(|e, _| error::ApiError::bad_request(format!("invalid query: {e}")).into()),
            )
            .configure(|cfg| {
                if data.ws_only {
                    cfg.route("/mqtt", web::get().to(ws::handshake));
                } else {
                    routes(cfg);
                }
            })
            .default_service(web::to(|| async { error::ApiError::not_found("no such resource") }))
    })
    .workers(workers.max(1))
    .max_connections(max_conn)
    .client_request_timeout(request_timeout)
    .keep_alive(keep_alive)
    .disable_signals()
    .shutdown_timeout(1)
    .on_connect(move |conn, ext| {
        auth::on_connect(conn, ext);
        ext.insert(counts.opened());
    });
    let server = match tls {
        Some(config) => {
            let mut config = (*config).clone();
            config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
            server.listen_rustls_0_23(listener, config)?
        }
        None => server.listen_auto_h2c(listener)?,
    };
    Ok(server.run())
}

fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/mqtt", web::get().to(ws::handshake))
        .route("/health", web::get().to(health))
        .route("/ready", web::get().to(ready))
        .route("/metrics", web::get().to(metrics::handler))
        .route("/api/v1/ws", web::get().to(jsonws::handshake))
        .route("/api/v1/publish", web::post().to(publish::publish))
        .route("/api/v1/publish/bulk", web::post().to(publish::bulk))
        .route("/topics/{topic:.*}", web::post().to(publish::raw))
        .route("/topics/{topic:.*}", web::put().to(publish::raw))
        .route("/topics/{filter:.*}", web::get().to(sse::get))
        .configure(mgmt::routes)
        .configure(lwm2m::routes);
}

async fn health() -> web::Json<serde_json::Value> {
    web::Json(serde_json::json!({"status": "ok"}))
}

async fn ready(shared: web::Data<HttpShared>) -> Result<web::Json<serde_json::Value>, error::ApiError> {
    if shared.broker.is_shutting_down() {
        return Err(error::ApiError::unavailable("shutting down"));
    }
    Ok(web::Json(serde_json::json!({"status": "ready"})))
}
