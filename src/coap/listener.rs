//! The CoAP listener actor: one per `protocol = "coap"` listener.
//!
//! It owns the UDP socket, a [`Peer`] (the sans-IO message layer) per remote address, and the
//! CoAP *clients*: a client is a broker session (client id) with its observations, reached
//! through a [`SessionLink`] like an MQTT connection. Requests are routed to a client by its
//! client id (and token, in connection mode), never only by address, so a device whose carrier
//! NAT changes its port keeps its session: the client simply moves to the new address.
//!
//! Notifications leave a client's session queue one CON at a time (NSTART = 1, RFC 7252
//! §4.7): while a CON notification is unacknowledged the rest wait in the queue, which is
//! bounded and drops its oldest message when full. NON notifications go out as they come,
//! except that one is sent as CON every `con_notify_interval` to find observers that are gone
//! (RFC 7641 §4.5).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use bytes::Bytes;
use unigate_auth::acl::Request as AclRequest;
use unigate_auth::{Credentials, Identity, Outcome, Secret};
use unigate_coap::coap_lite::{RequestType, ResponseType};
use unigate_coap::{Event, Notification, Peer, Request, RequestMeta, Response};
use unigate_pubsub::{Message, Origin, Protocol, QoS, Topic, TopicFilter};
use unigate_translators::coap as tr;

use super::transport::{self, CoapApp, Transport};
use super::{CoapConfig, DefaultQos, NotifyTopic, NotifyType};
use crate::auth::{CredentialCache, ListenerAuth};
use crate::broker::metrics::Metrics;
use crate::broker::session::{ClientId, Delivery, KickReason, QueueLimits, SessionLink, SubOptions};
use crate::broker::{now_ms, Broker};
use crate::config::{Limits, QueueDropPolicy};

/// What every actor of one listener shares.
pub struct CoapShared {
    /// Listener name (logs, metrics, ACL `${listener}`).
    pub name: Arc<str>,
    /// Gateway settings.
    pub config: CoapConfig,
    /// Message-layer settings, shared by every peer.
    pub layer: Arc<unigate_coap::Config>,
    /// The auth chain, in listener settings that a reload (SIGHUP, management API) swaps.
    pub settings: Arc<crate::mqtt::protocol::ListenerSettings>,
    /// Listener limits (`max_connections` caps remote addresses; `max_topic_levels`).
    pub limits: Limits,
    /// DTLS settings; None: plain UDP.
    pub tls: Option<crate::tls::TlsConfig>,
}

impl CoapShared {
    /// The listener's auth chain.
    pub fn auth(&self) -> &ListenerAuth {
        &self.settings.auth
    }
}

/// How often heartbeats and idle peers are swept.
const SWEEP: Duration = Duration::from_secs(1);
/// Observe sequence numbers are 24 bits (RFC 7641 §3.4).
const OBSERVE_MASK: u32 = 0x00FF_FFFF;

/// How a client came to be.
enum Mode {
    /// Created by a request without a connection: lives while it observes something.
    Connectionless,
    /// `POST /mqtt/connection`: lives until `DELETE` or a missed heartbeat.
    Connected(Box<Connection>),
}

/// A connection-mode client's connection.
struct Connection {
    token: String,
    deadline: Instant,
}

/// A CoAP token (0 to 8 bytes), kept inline.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Token {
    len: u8,
    bytes: [u8; 8],
}

impl Token {
    fn new(t: &[u8]) -> Token {
        let mut bytes = [0u8; 8];
        let len = t.len().min(8);
        bytes[..len].copy_from_slice(&t[..len]);
        Token { len: len as u8, bytes }
    }

    fn as_slice(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len).min(8)]
    }
}

/// One observation (RFC 7641) of a client: a subscription whose messages go out as
/// notifications on the registration's token.
struct Observation {
    token: Token,
    filter: TopicFilter,
    sub_id: u32,
    /// The URI as registered (the key of Block2 follow-ups).
    uri: Box<str>,
    seq: u32,
    last_con: Instant,
    /// The client asked for this QoS explicitly (`qos` query), which decides CON/NON.
    qos: QoS,
}

/// A CoAP client: a broker session and its observations.
struct Client {
    session: Arc<crate::broker::session::Session>,
    generation: u64,
    identity: Arc<Identity>,
    addr: SocketAddr,
    mode: Mode,
    observations: Vec<Observation>,
    next_sub_id: u32,
    /// CON notifications sent and not yet acknowledged.
    con_outstanding: u32,
    /// A CON notification timed out (connection mode): wait for the client to be heard of
    /// again before sending more.
    unreachable: bool,
}

/// The key of a NON notification: the session's serial and the observation's subscription
/// id, so that an RST to it finds its observation without anything remembered (CON keys,
/// counted from 1, never have the top bit).
fn non_key(serial: u64, sub_id: u32) -> u64 {
    1 << 63 | (serial & 0x7fff_ffff) << 32 | u64::from(sub_id)
}

/// A CON notification in flight.
struct ConInFlight {
    client_id: ClientId,
    generation: u64,
    token: Token,
    /// The delivery, put back in the queue when the notification is not acknowledged and the
    /// client keeps its session (connection mode). Held by one of a delivery's notifications.
    delivery: Option<Delivery>,
}

/// Who sent a request, once authenticated.
struct Principal {
    client_id: ClientId,
    identity: Arc<Identity>,
}

/// Why an observation ended (counted).
#[derive(Debug, Clone, Copy)]
enum Cancel {
    Deregister,
    Reset,
    Timeout,
}

/// The listener actor.
pub struct CoapListener {
    /// The socket, the peers, DTLS and the retransmission timers.
    transport: Transport,
    shared: Arc<CoapShared>,
    broker: Arc<Broker>,
    clients: HashMap<ClientId, Client>,
    con_keys: HashMap<u64, ConInFlight>,
    next_key: u64,
    auth_cache: CredentialCache,
    /// Clients heard of again (new address, or unreachable before): drained after the request.
    pending_drain: Vec<ClientId>,
    /// How the broker resumes us after a pause (back-pressure: a subscriber of what CoAP
    /// clients publish is congested; devices retransmit CON requests meanwhile, the kernel
    /// buffers the rest).
    publisher: Option<Arc<dyn SessionLink>>,
}

/// A paused listener reads again after this long even if nobody said so.
const PAUSE_LIMIT: Duration = Duration::from_secs(1);

impl CoapListener {
    /// Starts the actor on the current arbiter, reading from `socket`.
    pub fn start_on(
        socket: std::net::UdpSocket,
        shared: Arc<CoapShared>,
        broker: Arc<Broker>,
    ) -> Result<Addr<CoapListener>, crate::tls::TlsError> {
        let transport = Transport::new(
            socket,
            Protocol::Coap,
            shared.layer.clone(),
            broker.clone(),
            &shared.limits,
            shared.tls.as_ref(),
            &shared.settings,
        )?;
        Ok(CoapListener::create(move |_ctx| CoapListener {
            transport,
            shared,
            broker,
            clients: HashMap::new(),
            con_keys: HashMap::new(),
            next_key: 1,
            auth_cache: CredentialCache::default(),
            pending_drain: Vec::new(),
            publisher: None,
        }))
    }

    // ------------------------------------------------------------------ I/O

    /// Runs `f` on the peer at `addr` and sends what it produced.
    fn with_peer(
        &mut self,
        addr: SocketAddr,
        ctx: &mut Context<Self>,
        f: impl FnOnce(&mut Peer, Instant, &mut Vec<Event>),
    ) {
        transport::with_peer(self, addr, ctx, f);
    }

    fn dtls_identity(&self, from: SocketAddr) -> Option<Identity> {
        self.transport.dtls_identity(from).cloned()
    }

    fn respond(&mut self, addr: SocketAddr, meta: &RequestMeta, resp: Response, ctx: &mut Context<Self>) {
        self.with_peer(addr, ctx, |peer, now, out| peer.respond(now, meta, resp, out));
    }

    fn error(&mut self, addr: SocketAddr, meta: &RequestMeta, code: ResponseType, why: &str, ctx: &mut Context<Self>) {
        let mut resp = Response::new(code);
        // A diagnostic payload (RFC 7252 §5.5.2): UTF-8 text, no Content-Format.
        resp.payload = why.as_bytes().to_vec();
        self.respond(addr, meta, resp, ctx);
    }

    // ------------------------------------------------------------------ timers

    fn sweep(&mut self, ctx: &mut Context<Self>) {
        let now = Instant::now();
        let expired: Vec<ClientId> = self
            .clients
            .iter()
            .filter(|(_, c)| matches!(&c.mode, Mode::Connected(conn) if conn.deadline <= now))
            .map(|(id, _)| id.clone())
            .collect();
        for id in expired {
            tracing::debug!(listener = %self.shared.name, client_id = %id, "coap heartbeat missed");
            self.end_client(&id, "heartbeat_timeout", ctx);
        }
        // Remote addresses that own nothing and were quiet for long.
        let idle = self.shared.config.peer_idle_timeout;
        let owned: std::collections::HashSet<SocketAddr> = self.clients.values().map(|c| c.addr).collect();
        transport::sweep_idle(self, idle, |a| owned.contains(a), ctx);
        self.auth_cache.purge();
    }

    // ------------------------------------------------------------------ requests

    fn on_request(&mut self, from: SocketAddr, req: Request, authed: Option<Identity>, ctx: &mut Context<Self>) {
        if self.broker.is_shutting_down() {
            return self.error(
                from,
                &req.meta,
                ResponseType::ServiceUnavailable,
                "server shutting down",
                ctx,
            );
        }
        let query = match tr::parse_query(&req.query) {
            Ok(q) => q,
            Err(e) => return self.error(from, &req.meta, ResponseType::BadRequest, &e.to_string(), ctx),
        };
        match (tr::route(&req.path), req.method) {
            (tr::Route::WellKnownCore, RequestType::Get) => {
                let mut resp = Response::new(ResponseType::Content);
                resp.content_format = Some(40);
                resp.payload = b"</ps>;rt=\"core.ps\";ct=0,</mqtt/connection>".to_vec();
                self.respond(from, &req.meta, resp, ctx);
            }
            (tr::Route::Connection, RequestType::Post) => self.connect(from, req, query, authed, ctx),
            (tr::Route::Connection, RequestType::Put) => match self.connected_client(from, &query) {
                Ok(_) => self.respond(from, &req.meta, Response::new(ResponseType::Changed), ctx),
                Err((code, why)) => self.error(from, &req.meta, code, why, ctx),
            },
            (tr::Route::Connection, RequestType::Delete) => match self.connected_client(from, &query) {
                Ok(p) => {
                    self.end_client(&p.client_id, "disconnected", ctx);
                    self.respond(from, &req.meta, Response::new(ResponseType::Deleted), ctx);
                }
                Err((code, why)) => self.error(from, &req.meta, code, why, ctx),
            },
            (tr::Route::WellKnownCore | tr::Route::Connection, _) => self.error(
                from,
                &req.meta,
                ResponseType::MethodNotAllowed,
                "method not allowed",
                ctx,
            ),
            (tr::Route::MissingTopic, _) => {
                self.error(from, &req.meta, ResponseType::BadRequest, "no topic after /ps", ctx)
            }
            (tr::Route::NotFound, _) => self.error(from, &req.meta, ResponseType::NotFound, "not found", ctx),
            (tr::Route::PubSub(topic), method) => {
                let principal = match self.principal(from, &req, &query, authed, ctx) {
                    Some(Ok(p)) => p,
                    Some(Err((code, why))) => return self.error(from, &req.meta, code, why, ctx),
                    // Authentication is running; the request comes back when it is done.
                    None => return,
                };
                match (method, req.observe) {
                    (RequestType::Post | RequestType::Put, _) => {
                        self.publish(from, &req, &topic, &query, principal, ctx)
                    }
                    (RequestType::Get, Some(0)) => self.observe(from, &req, &topic, &query, principal, ctx),
                    (RequestType::Get, Some(1)) => self.unobserve(from, &req, &topic, principal, ctx),
                    (RequestType::Get, _) => self.read_retained(from, &req, &topic, principal, ctx),
                    _ => self.error(
                        from,
                        &req.meta,
                        ResponseType::MethodNotAllowed,
                        "method not allowed",
                        ctx,
                    ),
                }
            }
        }
    }

    /// Who sent a pub/sub request. `None`: authentication was started and the request will be
    /// handled again with its result.
    fn principal(
        &mut self,
        from: SocketAddr,
        req: &Request,
        query: &tr::Query,
        authed: Option<Identity>,
        ctx: &mut Context<Self>,
    ) -> Option<Result<Principal, (ResponseType, &'static str)>> {
        if query.token.is_some() || self.shared.config.connection_required {
            return Some(self.connected_client(from, query));
        }
        let dtls_identity = self.dtls_identity(from);
        let client_id: ClientId = match (&query.client_id, &dtls_identity) {
            (Some(id), _) => Arc::from(id.as_str()),
            (None, Some(Identity { username: Some(u), .. })) => u.clone(),
            (None, _) => Arc::from(format!("coap-{from}")),
        };
        // A connection-mode client's id cannot be used without its token.
        if self
            .clients
            .get(&client_id)
            .is_some_and(|c| matches!(c.mode, Mode::Connected(_)))
        {
            return Some(Err((
                ResponseType::Unauthorized,
                "client id is connected: token required",
            )));
        }
        // The DTLS handshake authenticated the peer: its identity is the client's.
        if let Some(identity) = authed.or(dtls_identity) {
            return Some(Ok(Principal {
                client_id,
                identity: Arc::new(identity),
            }));
        }
        let chain = self.shared.auth().chain();
        if chain.allows_everyone() {
            return Some(Ok(Principal {
                client_id,
                identity: anonymous(query.username.as_deref()),
            }));
        }
        // An observing client already authenticated keeps its identity for its own requests.
        if let Some(c) = self.clients.get(&client_id) {
            if c.addr == from && query.password.is_none() {
                return Some(Ok(Principal {
                    client_id,
                    identity: c.identity.clone(),
                }));
            }
        }
        let key = CredentialCache::key(
            &chain,
            &[
                client_id.as_bytes(),
                query.username.as_deref().unwrap_or("").as_bytes(),
                query.password.as_deref().unwrap_or("").as_bytes(),
            ],
        );
        if let Some(identity) = self.auth_cache.get(&key) {
            return Some(Ok(Principal {
                client_id,
                identity: Arc::new(identity),
            }));
        }
        self.authenticate(from, req.clone(), client_id, query, Some(key), ctx);
        None
    }

    /// Runs the auth chain, then handles `req` again with the identity (or answers 4.01).
    fn authenticate(
        &mut self,
        from: SocketAddr,
        req: Request,
        client_id: ClientId,
        query: &tr::Query,
        cache: Option<[u8; 32]>,
        ctx: &mut Context<Self>,
    ) {
        let mut creds = Credentials::new(Protocol::Coap, self.shared.name.clone());
        creds.peer = Some(from);
        creds.client_id = Some(client_id.to_string());
        creds.username = query.username.clone();
        creds.password = query.password.as_ref().map(|p| Secret::new(p.as_bytes().to_vec()));
        let fut = self.shared.auth().run(creds);
        ctx.spawn(fut.into_actor(self).map(move |outcome, act, ctx| match outcome {
            Outcome::Allowed(identity) => {
                if let Some(key) = cache {
                    act.auth_cache.put(key, &identity, act.shared.config.auth_cache);
                }
                act.on_request(from, req, Some(identity), ctx);
            }
            Outcome::Denied { .. } => {
                act.error(from, &req.meta, ResponseType::Unauthorized, "not authorized", ctx);
            }
        }));
    }

    /// The connection-mode client named by `clientid` and `token`; it moves to `from` and its
    /// heartbeat is refreshed (any request counts as one).
    fn connected_client(
        &mut self,
        from: SocketAddr,
        query: &tr::Query,
    ) -> Result<Principal, (ResponseType, &'static str)> {
        let (Some(id), Some(token)) = (&query.client_id, &query.token) else {
            return Err((ResponseType::Unauthorized, "clientid and token required"));
        };
        let heartbeat = self.shared.config.heartbeat;
        let Some(c) = self.clients.get_mut(id.as_str()) else {
            return Err((ResponseType::Unauthorized, "no such connection"));
        };
        let Mode::Connected(conn) = &mut c.mode else {
            return Err((ResponseType::Unauthorized, "no such connection"));
        };
        if !bool::from(subtle_eq(conn.token.as_bytes(), token.as_bytes())) {
            return Err((ResponseType::Unauthorized, "wrong token"));
        }
        conn.deadline = Instant::now() + heartbeat;
        let client_id = c.session.client_id.clone();
        let moved = c.addr != from;
        if moved {
            tracing::debug!(client_id = %client_id, old = %c.addr, new = %from, "coap client changed address");
            c.addr = from;
        }
        let wake = std::mem::take(&mut c.unreachable) || moved;
        let principal = Principal {
            client_id: client_id.clone(),
            identity: c.identity.clone(),
        };
        if wake {
            // Messages held while the client was unreachable go to its new address.
            c.session.lock().wake_pending = false;
            self.pending_drain.push(client_id);
        }
        Ok(principal)
    }

    // ------------------------------------------------------------------ connection mode

    fn connect(
        &mut self,
        from: SocketAddr,
        req: Request,
        query: tr::Query,
        authed: Option<Identity>,
        ctx: &mut Context<Self>,
    ) {
        let Some(id) = query.client_id.clone() else {
            return self.error(from, &req.meta, ResponseType::BadRequest, "clientid required", ctx);
        };
        let client_id: ClientId = Arc::from(id.as_str());
        let identity = match authed.or_else(|| self.dtls_identity(from)) {
            Some(i) => i,
            None if self.shared.auth().chain().allows_everyone() => Identity::anonymous(query.username.as_deref()),
            None => {
                // Connection requests always run the chain (no cache): they are rare and are
                // where a changed password must take effect.
                return self.authenticate(from, req, client_id, &query, None, ctx);
            }
        };
        let token = format!("{}", rand::random::<u64>());
        let deadline = Instant::now() + self.shared.config.heartbeat;
        self.attach_client(
            client_id.clone(),
            Arc::new(identity),
            from,
            Mode::Connected(Box::new(Connection {
                token: token.clone(),
                deadline,
            })),
            ctx,
        );
        self.sys_event(&client_id, "connected", None);
        let mut resp = Response::new(ResponseType::Created);
        resp.payload = token.into_bytes();
        self.respond(from, &req.meta, resp, ctx);
    }

    /// Creates a client on a fresh session (a client with that id, here or on another
    /// protocol, is taken over).
    fn attach_client(
        &mut self,
        client_id: ClientId,
        identity: Arc<Identity>,
        addr: SocketAddr,
        mode: Mode,
        ctx: &mut Context<Self>,
    ) {
        if let Some(old) = self.clients.remove(&client_id) {
            // Taken over here: its subscriptions end with its session in attach below.
            self.forget_client(&old);
        }
        let link = Arc::new(CoapLink {
            addr: ctx.address(),
            client_id: client_id.clone(),
            generation: AtomicU64::new(0),
        });
        let limits = QueueLimits {
            max_queued: self.shared.config.max_queued_notifications,
            drop_policy: QueueDropPolicy::Oldest,
            queue_qos0_offline: false,
            persist: false,
        };
        let a = self.broker.attach(client_id.clone(), true, 0, link.clone(), limits);
        link.generation.store(a.generation, Ordering::Relaxed);
        Metrics::gauge(&self.broker.metrics.coap_clients, 1);
        self.clients.insert(
            client_id,
            Client {
                session: a.session,
                generation: a.generation,
                identity,
                addr,
                mode,
                observations: Vec::new(),
                next_sub_id: 1,
                con_outstanding: 0,
                unreachable: false,
            },
        );
    }

    fn forget_client(&mut self, c: &Client) {
        Metrics::gauge(&self.broker.metrics.coap_clients, -1);
        Metrics::gauge(&self.broker.metrics.coap_observations, -(c.observations.len() as i64));
        self.con_keys
            .retain(|_, k| !(k.client_id == c.session.client_id && k.generation == c.generation));
    }

    /// Ends a client and its session.
    fn end_client(&mut self, client_id: &ClientId, reason: &str, _ctx: &mut Context<Self>) {
        let Some(c) = self.clients.remove(client_id) else {
            return;
        };
        self.forget_client(&c);
        let connected = matches!(c.mode, Mode::Connected(_));
        // Expiry 0: the session ends now, its subscriptions with it.
        self.broker.detach(&c.session, c.generation, None);
        if connected {
            self.sys_event(client_id, "disconnected", Some(reason));
        }
    }

    /// `$SYS/broker/clients/{clientid}/connected|disconnected`, JSON, for connection-mode
    /// clients (the "will" of a device that stopped sending heartbeats).
    fn sys_event(&self, client_id: &str, what: &str, reason: Option<&str>) {
        let Ok(topic) = Topic::new(&format!("$SYS/broker/clients/{client_id}/{what}")) else {
            return;
        };
        let username = self
            .clients
            .get(client_id)
            .and_then(|c| c.identity.username.as_deref().map(str::to_string));
        let body = serde_json::json!({
            "clientid": client_id,
            "username": username,
            "protocol": "coap",
            "listener": &*self.shared.name,
            "reason": reason,
            "ts": now_ms(),
        });
        let mut msg = Message::new(topic, Bytes::from(body.to_string()));
        msg.properties.content_type = Some("application/json".into());
        msg.origin = Origin {
            protocol: Some(Protocol::System),
            ..Origin::default()
        };
        self.broker.publish(msg);
    }

    // ------------------------------------------------------------------ pub/sub

    fn publish(
        &mut self,
        from: SocketAddr,
        req: &Request,
        topic: &str,
        query: &tr::Query,
        who: Principal,
        ctx: &mut Context<Self>,
    ) {
        let topic = match tr::topic_name(&self.shared.config.mount_point, topic) {
            Ok(t) => t,
            Err(e) => {
                return self.error(
                    from,
                    &req.meta,
                    ResponseType::BadRequest,
                    &format!("invalid topic: {e}"),
                    ctx,
                )
            }
        };
        if !Broker::topic_levels_ok(&topic, self.shared.limits.max_topic_levels) {
            return self.error(from, &req.meta, ResponseType::BadRequest, "too many topic levels", ctx);
        }
        if query.retain == Some(true) && !self.broker.settings().retain_available {
            return self.error(
                from,
                &req.meta,
                ResponseType::BadRequest,
                "retained messages are not available",
                ctx,
            );
        }
        if !self.broker.authorize(
            &who.identity,
            &who.client_id,
            &self.shared.name,
            AclRequest::Publish(&topic),
        ) {
            return self.error(
                from,
                &req.meta,
                ResponseType::Forbidden,
                "not authorized to publish",
                ctx,
            );
        }
        let qos = default_qos(self.shared.config.publish_qos, req.meta.confirmable()).min(self.broker.max_qos());
        let mut q = query.clone();
        q.qos = q.qos.map(|x| x.min(self.broker.max_qos()));
        let origin = Origin {
            protocol: Some(Protocol::Coap),
            client_id: Some(who.client_id.clone()),
            username: who.identity.username.clone(),
            peer: Some(from),
            listener: Some(self.shared.name.clone()),
        };
        let msg = tr::publish_to_message(
            topic,
            Bytes::copy_from_slice(&req.payload),
            req.content_format,
            &q,
            qos,
            origin,
            now_ms(),
        );
        Metrics::add(&self.broker.metrics.messages_received[msg.qos as usize], 1);
        Metrics::add(&self.broker.metrics.bytes_received, req.payload.len() as u64);
        let (_, congested, commit) = self.broker.publish_durable(msg, self.publisher.as_ref());
        match commit {
            // Answered once durable (persistent sessions, retained); the message layer answers a
            // retransmission meanwhile with an empty ACK.
            Some(rx) => {
                let meta = req.meta.clone();
                ctx.spawn(
                    async move { rx.await.unwrap_or(false) }
                        .into_actor(self)
                        .map(move |ok, act, ctx| {
                            if ok {
                                act.respond(from, &meta, Response::new(ResponseType::Changed), ctx);
                            } else {
                                act.error(
                                    from,
                                    &meta,
                                    ResponseType::ServiceUnavailable,
                                    "could not be stored",
                                    ctx,
                                );
                            }
                        }),
                );
            }
            None => self.respond(from, &req.meta, Response::new(ResponseType::Changed), ctx),
        }
        if congested && !self.transport.paused {
            self.transport.paused = true;
            ctx.run_later(PAUSE_LIMIT, transport::resume_reading);
        }
    }

    fn read_retained(&mut self, from: SocketAddr, req: &Request, topic: &str, who: Principal, ctx: &mut Context<Self>) {
        let topic = match tr::topic_name(&self.shared.config.mount_point, topic) {
            Ok(t) => t,
            Err(_) => {
                return self.error(
                    from,
                    &req.meta,
                    ResponseType::BadRequest,
                    "a read needs a topic name; observe (Observe: 0) to use wildcards",
                    ctx,
                )
            }
        };
        if !self.broker.authorize(
            &who.identity,
            &who.client_id,
            &self.shared.name,
            AclRequest::RetainedRead(&topic),
        ) {
            return self.error(from, &req.meta, ResponseType::Forbidden, "not authorized to read", ctx);
        }
        let Ok(filter) = TopicFilter::new(topic.as_str()) else {
            return self.error(from, &req.meta, ResponseType::BadRequest, "invalid topic", ctx);
        };
        match self.broker.retained_matching(&filter).into_iter().next() {
            Some(msg) => {
                let mut resp = Response::new(ResponseType::Content);
                resp.content_format = msg.properties.content_type.as_deref().and_then(tr::content_format_of);
                resp.payload = msg.payload.to_vec();
                self.respond(from, &req.meta, resp, ctx);
            }
            None => self.error(from, &req.meta, ResponseType::NotFound, "no retained message", ctx),
        }
    }

    fn observe(
        &mut self,
        from: SocketAddr,
        req: &Request,
        filter: &str,
        query: &tr::Query,
        who: Principal,
        ctx: &mut Context<Self>,
    ) {
        let filter = match tr::topic_filter(&self.shared.config.mount_point, filter) {
            Ok(f) => f,
            Err(e) => {
                return self.error(
                    from,
                    &req.meta,
                    ResponseType::BadRequest,
                    &format!("invalid topic filter: {e}"),
                    ctx,
                )
            }
        };
        if filter.level_count() > self.shared.limits.max_topic_levels {
            return self.error(from, &req.meta, ResponseType::BadRequest, "too many topic levels", ctx);
        }
        if let Err(e) = self.broker.check_filter(&filter) {
            return self.error(from, &req.meta, ResponseType::BadRequest, &e.to_string(), ctx);
        }
        if !self.broker.authorize(
            &who.identity,
            &who.client_id,
            &self.shared.name,
            AclRequest::Subscribe(&filter),
        ) {
            return self.error(
                from,
                &req.meta,
                ResponseType::Forbidden,
                "not authorized to subscribe",
                ctx,
            );
        }
        if !self.clients.contains_key(&who.client_id) {
            self.attach_client(
                who.client_id.clone(),
                who.identity.clone(),
                from,
                Mode::Connectionless,
                ctx,
            );
        }
        let max_obs = self.shared.config.max_observations;
        let max_qos = self.broker.max_qos();
        let qos = query
            .qos
            .unwrap_or_else(|| default_qos(self.shared.config.subscribe_qos, req.meta.confirmable()))
            .min(max_qos);
        let Some(c) = self.clients.get_mut(&who.client_id) else {
            return;
        };
        c.addr = from;
        let token = Token::new(req.meta.token());
        let uri = req.meta.uri().to_string();
        let now = Instant::now();
        // Re-registration (same token, or same filter with a new token) replaces the old one.
        let existing = c
            .observations
            .iter()
            .position(|o| o.token == token || o.filter == filter);
        let (sub_id, seq, replaced_filter) = match existing {
            Some(i) => {
                let o = &mut c.observations[i];
                let old = (o.filter != filter).then(|| o.filter.clone());
                o.token = token;
                o.filter = filter.clone();
                o.uri = uri.into_boxed_str();
                o.qos = qos;
                o.seq = (o.seq + 1) & OBSERVE_MASK;
                (o.sub_id, o.seq, old)
            }
            None => {
                if c.observations.len() >= max_obs {
                    return self.error(
                        from,
                        &req.meta,
                        ResponseType::ServiceUnavailable,
                        "too many observations",
                        ctx,
                    );
                }
                // Most clients observe one thing: room for one, not the default four.
                c.observations.reserve_exact(1);
                let sub_id = c.next_sub_id;
                c.next_sub_id = c.next_sub_id.wrapping_add(1).max(1);
                c.observations.push(Observation {
                    token,
                    filter: filter.clone(),
                    sub_id,
                    uri: uri.into_boxed_str(),
                    seq: 1,
                    last_con: now,
                    qos,
                });
                Metrics::gauge(&self.broker.metrics.coap_observations, 1);
                (sub_id, 1, None)
            }
        };
        let session = c.session.clone();
        if let Some(old) = replaced_filter {
            self.broker.unsubscribe(&session, &old);
        }
        let opts = SubOptions {
            qos,
            no_local: query.no_local.unwrap_or(false),
            retain_as_published: false,
            sub_id: Some(sub_id),
        };
        let is_new = self.broker.subscribe(&session, &filter, opts);
        let mut resp = Response::new(ResponseType::Content);
        resp.observe = Some(seq);
        self.respond(from, &req.meta, resp, ctx);
        let send_retained = match query.retain_handling.unwrap_or(0) {
            0 => true,
            1 => is_new,
            _ => false,
        };
        if send_retained {
            let (broker, identity, cid, name) = (
                self.broker.clone(),
                who.identity.clone(),
                who.client_id.clone(),
                self.shared.name.clone(),
            );
            self.broker.deliver_retained(&session, &filter, opts, |t| {
                broker.authorize(&identity, &cid, &name, AclRequest::RetainedRead(t))
            });
        }
    }

    fn unobserve(&mut self, from: SocketAddr, req: &Request, filter: &str, who: Principal, ctx: &mut Context<Self>) {
        let filter = tr::topic_filter(&self.shared.config.mount_point, filter).ok();
        let token = req.meta.token();
        if let Some(c) = self.clients.get_mut(&who.client_id) {
            let found = c
                .observations
                .iter()
                .position(|o| o.token.as_slice() == token)
                .or_else(|| c.observations.iter().position(|o| Some(&o.filter) == filter.as_ref()));
            if let Some(i) = found {
                self.remove_observation(&who.client_id, i, Cancel::Deregister);
            }
        }
        // RFC 7641 §3.6: a deregistration is a plain GET; it is answered like one.
        let mut resp = Response::new(ResponseType::Content);
        resp.payload = Vec::new();
        self.respond(from, &req.meta, resp, ctx);
        self.end_if_idle(&who.client_id, ctx);
    }

    fn remove_observation(&mut self, client_id: &ClientId, index: usize, why: Cancel) {
        let Some(c) = self.clients.get_mut(client_id) else {
            return;
        };
        if index >= c.observations.len() {
            return;
        }
        let o = c.observations.swap_remove(index);
        let session = c.session.clone();
        self.broker.unsubscribe(&session, &o.filter);
        Metrics::gauge(&self.broker.metrics.coap_observations, -1);
        let counter = match why {
            Cancel::Deregister => &self.broker.metrics.coap_observe_cancelled[0],
            Cancel::Reset => &self.broker.metrics.coap_observe_cancelled[1],
            Cancel::Timeout => &self.broker.metrics.coap_observe_cancelled[2],
        };
        Metrics::add(counter, 1);
        tracing::debug!(client_id = %client_id, filter = %o.filter, reason = ?why, "coap observation removed");
    }

    /// A connectionless client with nothing left to observe is gone.
    fn end_if_idle(&mut self, client_id: &ClientId, ctx: &mut Context<Self>) {
        if self
            .clients
            .get(client_id)
            .is_some_and(|c| matches!(c.mode, Mode::Connectionless) && c.observations.is_empty())
        {
            self.end_client(client_id, "no observations", ctx);
        }
    }

    // ------------------------------------------------------------------ notifications

    /// Sends what the client's session has queued, one CON at a time.
    fn drain(&mut self, client_id: &ClientId, ctx: &mut Context<Self>) {
        let now = Instant::now();
        let now_wall = now_ms();
        let cfg = &self.shared.config;
        let (notify_type, con_every, notify_topic) = (cfg.notify_type, cfg.con_notify_interval, cfg.notify_topic);
        let mount = cfg.mount_point.clone();
        loop {
            let Some(c) = self.clients.get_mut(client_id) else {
                return;
            };
            if c.unreachable {
                return;
            }
            let delivery = {
                let mut st = c.session.lock();
                if st.generation != c.generation {
                    return;
                }
                st.wake_pending = false;
                let mut next = None;
                while let Some(front) = st.queue.front() {
                    if front.msg.is_expired(now_wall) {
                        st.pop();
                        Metrics::add(&self.broker.metrics.dropped_expired, 1);
                        continue;
                    }
                    let con = c
                        .observations
                        .iter()
                        .filter(|o| front.sub_ids.contains(&o.sub_id))
                        .any(|o| wants_con(notify_type, front.qos.min(o.qos), o.last_con, con_every, now));
                    if con && c.con_outstanding > 0 {
                        break;
                    }
                    next = st.pop().map(|d| (d, con));
                    st.last_progress = crate::broker::session::Stamp::now();
                    break;
                }
                if st.queue.is_empty() {
                    st.drops_in_episode = 0;
                }
                next
            };
            let Some((d, con)) = delivery else { return };
            let addr = c.addr;
            let generation = c.generation;
            let mut sends: Vec<Notification> = Vec::new();
            let mut holder = Some(d.clone());
            for o in c.observations.iter_mut().filter(|o| d.sub_ids.contains(&o.sub_id)) {
                o.seq = (o.seq + 1) & OBSERVE_MASK;
                let mut resp = Response::new(ResponseType::Content);
                resp.observe = Some(o.seq);
                resp.content_format = d.msg.properties.content_type.as_deref().and_then(tr::content_format_of);
                resp.payload = d.msg.payload.to_vec();
                let show_topic = match notify_topic {
                    NotifyTopic::Always => true,
                    NotifyTopic::Wildcard => o.filter.has_wildcards(),
                    NotifyTopic::Never => false,
                };
                if show_topic {
                    resp.location_path = std::iter::once("ps".to_string())
                        .chain(
                            tr::unmounted(&mount, d.msg.topic.as_str())
                                .split('/')
                                .map(str::to_string),
                        )
                        .collect();
                }
                let key = if con {
                    let key = self.next_key;
                    self.next_key += 1;
                    o.last_con = now;
                    c.con_outstanding += 1;
                    self.con_keys.insert(
                        key,
                        ConInFlight {
                            client_id: client_id.clone(),
                            generation,
                            token: o.token,
                            delivery: holder.take(),
                        },
                    );
                    key
                } else {
                    // Remembered briefly: an RST to a NON notification cancels too (RFC 7641
                    // §3.6); the message layer recognises the last few NON message ids.
                    non_key(c.session.serial, o.sub_id)
                };
                sends.push(Notification {
                    token: o.token.as_slice().to_vec(),
                    confirmable: con,
                    response: resp,
                    key,
                    uri: o.uri.to_string(),
                });
            }
            let qos_index = if con { 1 } else { 0 };
            for n in sends {
                Metrics::add(&self.broker.metrics.messages_sent[qos_index], 1);
                self.with_peer(addr, ctx, |peer, now, out| {
                    peer.notify(now, n, out);
                });
            }
        }
    }

    /// An RST answered a NON notification of a client at `addr`: that observation ends.
    fn on_non_rejected(&mut self, addr: SocketAddr, key: u64, ctx: &mut Context<Self>) {
        let found = self.clients.iter().find_map(|(id, c)| {
            if c.addr != addr {
                return None;
            }
            let obs = c
                .observations
                .iter()
                .position(|o| non_key(c.session.serial, o.sub_id) == key)?;
            Some((id.clone(), obs))
        });
        if let Some((id, obs)) = found {
            self.remove_observation(&id, obs, Cancel::Reset);
            self.end_if_idle(&id, ctx);
        }
    }

    /// A CON notification ended: acknowledged (`None`), reset or timed out.
    fn on_con_done(&mut self, key: u64, cancel: Option<Cancel>, ctx: &mut Context<Self>) {
        let Some(k) = self.con_keys.remove(&key) else { return };
        let Some(c) = self.clients.get_mut(&k.client_id) else {
            return;
        };
        if c.generation != k.generation {
            return;
        }
        c.con_outstanding = c.con_outstanding.saturating_sub(1);
        if matches!(cancel, Some(Cancel::Timeout)) {
            Metrics::add(&self.broker.metrics.coap_con_timeouts, 1);
        }
        match cancel {
            None => {}
            Some(Cancel::Timeout) if matches!(c.mode, Mode::Connected(_)) => {
                // The device may be asleep or behind a new NAT mapping: keep its session and
                // the message, and wait until it is heard of again.
                c.unreachable = true;
                if let Some(d) = k.delivery {
                    c.session.lock().unpop(d);
                }
                return;
            }
            Some(why) => {
                if let Some(i) = c.observations.iter().position(|o| o.token == k.token) {
                    self.remove_observation(&k.client_id, i, why);
                }
                self.end_if_idle(&k.client_id, ctx);
            }
        }
        self.drain(&k.client_id, ctx);
    }
}

impl Actor for CoapListener {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.publisher = Some(Arc::new(PublisherLink(ctx.address())));
        transport::start(self, ctx);
        ctx.run_interval(SWEEP, |act, ctx| act.sweep(ctx));
    }
}

impl CoapApp for CoapListener {
    fn transport(&mut self) -> &mut Transport {
        &mut self.transport
    }

    fn auth(&self) -> &ListenerAuth {
        self.shared.auth()
    }

    fn on_event(&mut self, addr: SocketAddr, event: Event, ctx: &mut Context<Self>) {
        match event {
            Event::Request(req) => {
                Metrics::add(&self.broker.metrics.coap_requests, 1);
                self.on_request(addr, req, None, ctx);
            }
            Event::Delivered { key } => self.on_con_done(key, None, ctx),
            Event::Rejected { key } if !self.con_keys.contains_key(&key) => self.on_non_rejected(addr, key, ctx),
            Event::Rejected { key } => self.on_con_done(key, Some(Cancel::Reset), ctx),
            Event::TimedOut { key } => self.on_con_done(key, Some(Cancel::Timeout), ctx),
            // Responses to requests of ours (LwM2M) and anything newer: not used here.
            _ => {}
        }
    }

    /// Connectionless clients go with their DTLS association (nothing can reach them
    /// without it).
    fn on_peer_removed(&mut self, addr: SocketAddr, ctx: &mut Context<Self>) {
        if !self.transport.is_dtls() {
            return;
        }
        let gone: Vec<ClientId> = self
            .clients
            .iter()
            .filter(|(_, c)| c.addr == addr && matches!(c.mode, Mode::Connectionless))
            .map(|(id, _)| id.clone())
            .collect();
        for id in gone {
            self.end_client(&id, "dtls_closed", ctx);
        }
    }

    fn after_datagram(&mut self, ctx: &mut Context<Self>) {
        for id in std::mem::take(&mut self.pending_drain) {
            self.drain(&id, ctx);
        }
    }
}

/// Resumes the listener when a congested subscriber has caught up.
struct PublisherLink(Addr<CoapListener>);

impl SessionLink for PublisherLink {
    fn wake(&self) {}

    fn kick(&self, _reason: KickReason) {}

    fn resume(&self) {
        self.0.do_send(ResumeReading);
    }
}

/// Read again (back-pressure is over).
#[derive(Message)]
#[rtype(result = "()")]
struct ResumeReading;

impl Handler<ResumeReading> for CoapListener {
    type Result = ();
    fn handle(&mut self, _: ResumeReading, ctx: &mut Self::Context) {
        transport::resume_reading(self, ctx);
    }
}

/// New deliveries for a client.
#[derive(Message)]
#[rtype(result = "()")]
struct Wake(ClientId, u64);

/// A client's session was taken over or the server stops.
#[derive(Message)]
#[rtype(result = "()")]
struct Kick(ClientId, u64, KickReason);

impl Handler<Wake> for CoapListener {
    type Result = ();
    fn handle(&mut self, Wake(id, generation): Wake, ctx: &mut Self::Context) {
        if self.clients.get(&id).is_some_and(|c| c.generation == generation) {
            self.drain(&id, ctx);
        }
    }
}

impl Handler<Kick> for CoapListener {
    type Result = ();
    fn handle(&mut self, Kick(id, generation, reason): Kick, ctx: &mut Self::Context) {
        if self.clients.get(&id).is_some_and(|c| c.generation == generation) {
            let why = match reason {
                KickReason::SessionTakenOver => "taken_over",
                KickReason::ServerShuttingDown => "shutdown",
                KickReason::Administrative => "kicked",
            };
            if reason == KickReason::SessionTakenOver {
                // The new owner has the session: just forget ours.
                if let Some(c) = self.clients.remove(&id) {
                    self.forget_client(&c);
                }
            } else {
                self.end_client(&id, why, ctx);
            }
        }
    }
}

/// How the broker reaches a CoAP client.
struct CoapLink {
    addr: Addr<CoapListener>,
    client_id: ClientId,
    generation: AtomicU64,
}

impl SessionLink for CoapLink {
    fn wake(&self) {
        self.addr
            .do_send(Wake(self.client_id.clone(), self.generation.load(Ordering::Relaxed)));
    }

    fn kick(&self, reason: KickReason) {
        self.addr.do_send(Kick(
            self.client_id.clone(),
            self.generation.load(Ordering::Relaxed),
            reason,
        ));
    }

    fn describe(&self) -> Option<futures::future::BoxFuture<'static, Option<crate::broker::session::ClientInfo>>> {
        let (addr, id) = (self.addr.clone(), self.client_id.clone());
        Some(Box::pin(async move { addr.send(Describe(id)).await.ok().flatten() }))
    }
}

/// What the listener knows of a client.
#[derive(Message)]
#[rtype(result = "Option<crate::broker::session::ClientInfo>")]
struct Describe(ClientId);

impl Handler<Describe> for CoapListener {
    type Result = Option<crate::broker::session::ClientInfo>;
    fn handle(&mut self, Describe(id): Describe, _ctx: &mut Self::Context) -> Self::Result {
        let c = self.clients.get(&id)?;
        let observations: Vec<serde_json::Value> = c
            .observations
            .iter()
            .map(|o| serde_json::json!({"filter": o.filter.as_str(), "qos": o.qos as u8, "observe": o.seq}))
            .collect();
        Some(crate::broker::session::ClientInfo {
            protocol: if self.transport.is_dtls() { "coaps" } else { "coap" },
            listener: self.shared.name.clone(),
            peer: Some(c.addr),
            username: c.identity.username.clone(),
            authenticator: Some(c.identity.authenticator.clone()),
            details: serde_json::json!({
                "mode": if matches!(c.mode, Mode::Connected(_)) { "connection" } else { "connectionless" },
                "observations": observations,
                "unreachable": c.unreachable,
            }),
        })
    }
}

fn default_qos(d: DefaultQos, confirmable: bool) -> QoS {
    match d {
        DefaultQos::Coap if confirmable => QoS::AtLeastOnce,
        DefaultQos::Coap | DefaultQos::Qos0 => QoS::AtMostOnce,
        DefaultQos::Qos1 => QoS::AtLeastOnce,
        DefaultQos::Qos2 => QoS::ExactlyOnce,
    }
}

fn wants_con(t: NotifyType, qos: QoS, last_con: Instant, every: Duration, now: Instant) -> bool {
    match t {
        NotifyType::Con => true,
        _ if now.duration_since(last_con) >= every => true,
        NotifyType::Qos => qos != QoS::AtMostOnce,
        NotifyType::Non => false,
    }
}

/// The identity of an anonymous request: shared when it names no user (every request of an
/// open listener would otherwise allocate one).
fn anonymous(username: Option<&str>) -> Arc<Identity> {
    static NOBODY: std::sync::OnceLock<Arc<Identity>> = std::sync::OnceLock::new();
    match username {
        None => NOBODY.get_or_init(|| Arc::new(Identity::anonymous(None))).clone(),
        Some(u) => Arc::new(Identity::anonymous(Some(u))),
    }
}

fn subtle_eq(a: &[u8], b: &[u8]) -> subtle::Choice {
    use subtle::ConstantTimeEq;
    a.ct_eq(b)
}

#[cfg(test)]
mod size_budget {
    /// The per-observer memory figure (docs/benchmarks.md: about 1.9 KB with the session) rests
    /// on these sizes; a field added carelessly shows here before it shows in the benchmark.
    #[test]
    fn per_device_structures_stay_small() {
        use std::mem::size_of;
        let sizes = [
            ("Client", size_of::<super::Client>(), 112),
            ("Observation", size_of::<super::Observation>(), 96),
            ("PeerEntry", size_of::<crate::coap::transport::PeerEntry>(), 224),
            ("Peer", size_of::<unigate_coap::Peer>(), 184),
            ("Mode", size_of::<super::Mode>(), 8),
        ];
        for (name, size, budget) in sizes {
            assert!(size <= budget, "{name} is {size} bytes, over its budget of {budget}");
        }
    }
}
