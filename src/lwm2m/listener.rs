//! The LwM2M listener actor: one per `protocol = "lwm2m"` listener.
//!
//! Its datagram side is the shared CoAP [`Transport`]; above it sit the registered devices.
//! A device is reached at the address it last registered or updated from (a NAT rebinding is
//! healed by the device's next Update). Commands to a device go out one at a time (NSTART = 1,
//! RFC 7252 §4.7), the rest wait in a bounded per-device queue; a queue-mode device (binding
//! `UQ` or `Q`) gets them only while it is awake, i.e. within `queue_window` of the last thing
//! it sent. Each command ends in exactly one response: the device's, 5.04 on timeout or when
//! it waited too long in the queue, 5.03 when the queue is full, 4.04 when the device
//! de-registers or expires first.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use bytes::Bytes;
use serde_json::{json, Map, Value as Json};
use unigate_auth::acl::Request as AclRequest;
use unigate_auth::{Credentials, Identity, Outcome};
use unigate_coap::coap_lite::{CoapOption, MessageClass, Packet, RequestType, ResponseType};
use unigate_coap::{BlockOpt, Event, OutgoingRequest, Request, RequestMeta, Response};
use unigate_lwm2m::{ContentFormat, Operation, Path, Registration, RegistrationUpdate, Version};
use unigate_pubsub::{Message, Origin, Protocol, QoS};
use unigate_translators::lwm2m::{self as tr, Command, CommandError, Uplink};

use super::Hub;
use crate::auth::ListenerAuth;
use crate::broker::metrics::Metrics;
use crate::broker::session::{ClientId, KickReason, QueueLimits, Session, SessionLink, SubOptions};
use crate::broker::{now_ms, Broker};
use crate::coap::transport::{self, CoapApp, Transport};
use crate::config::{Limits, QueueDropPolicy};

/// How often lifetimes, queues and request deadlines are looked at.
const SWEEP: Duration = Duration::from_secs(1);
/// Remote addresses that own no registration are dropped after this long.
const PEER_IDLE: Duration = Duration::from_secs(300);

/// What every actor of one listener shares.
pub struct Lwm2mShared {
    /// Listener name.
    pub name: Arc<str>,
    /// The LwM2M settings, registry and topics of every LwM2M listener.
    pub hub: Arc<Hub>,
    /// Message-layer settings.
    pub layer: Arc<unigate_coap::Config>,
    /// The auth chain, swapped on reload.
    pub settings: Arc<crate::mqtt::protocol::ListenerSettings>,
    /// Listener limits (`max_connections` caps remote addresses).
    pub limits: Limits,
    /// DTLS settings; None: plain UDP.
    pub tls: Option<crate::tls::TlsConfig>,
}

/// Where a command's answer goes.
pub enum Reply {
    /// Published on the endpoint's response topic.
    Mqtt,
    /// Returned to an HTTP request (and published too, so MQTT integrations see every
    /// exchange).
    Http(tokio::sync::oneshot::Sender<Json>),
}

/// A command and where its answer goes.
struct Pending {
    echo: Map<String, Json>,
    req_path: String,
    op: Operation,
    reply: Reply,
}

/// A command waiting for its device.
struct Queued {
    cmd: Pending,
    since: Instant,
}

/// A command sent, by message-layer key.
struct InFlight {
    ep: Arc<str>,
    /// The registration it was sent to (a re-registration starts a new one).
    serial: u64,
    cmd: Option<Pending>,
    deadline: Instant,
    /// The request's token.
    token: Vec<u8>,
    /// For observations: what notifications carry.
    observe: Option<ObserveState>,
    /// A block-wise answer (RFC 7959 §2.4) being collected: the request to ask the next block
    /// with, and the blocks so far.
    blocks: Option<Box<Blocks>>,
    /// A request body larger than `[coap] block_size`, going out block by block (Block1).
    upload: Option<Box<Upload>>,
    /// This request fetches the rest of a block-wise notification.
    notify: Option<Box<NotifyBlocks>>,
}

/// A request body sent block by block (RFC 7959 §2.5): each block waits for the device's 2.31
/// Continue, which may ask for smaller blocks from then on; the answer to the last block is the
/// answer to the request.
struct Upload {
    /// The request, without its body.
    request: OutgoingRequest,
    body: Vec<u8>,
    /// Where the last block sent ends.
    sent_end: usize,
    /// Size exponent of the blocks (size 2^(szx+4)).
    szx: u8,
}

impl Upload {
    /// The block of `body` starting at `offset` (a multiple of the block size), as a request;
    /// and where it ends.
    fn block(&self, offset: usize) -> (OutgoingRequest, usize) {
        let size = 16usize << self.szx;
        let end = (offset + size).min(self.body.len());
        let block = BlockOpt {
            num: u32::try_from(offset / size).unwrap_or(u32::MAX),
            more: end < self.body.len(),
            szx: self.szx,
        };
        let mut req = with_block(&self.request, BLOCK1, block);
        if offset == 0 {
            // Size1 (RFC 7959 §4): a device that cannot take the whole body can say so at once.
            let size1 = u32::try_from(self.body.len()).unwrap_or(u32::MAX);
            req.options.push((SIZE1, unigate_coap::codec::encode_uint(size1)));
        }
        req.payload = self.body[offset..end].to_vec();
        (req, end)
    }
}

/// Option numbers (RFC 7959 §2.1, §4).
const BLOCK1: u16 = 27;
const BLOCK2: u16 = 23;
const SIZE1: u16 = 60;

/// A Block2 answer in progress.
struct Blocks {
    /// The request the next block is asked with (for an observation: without Observe, RFC
    /// 7959 §3.4).
    request: OutgoingRequest,
    body: Vec<u8>,
    /// The Observe option of block 0 (the later blocks have none).
    observe_seq: Option<u32>,
}

impl Blocks {
    /// The request asking for block `num` of size exponent `szx`.
    fn ask(&self, num: u32, szx: u8) -> OutgoingRequest {
        with_block(&self.request, BLOCK2, BlockOpt { num, more: false, szx })
    }
}

/// `request` with its Block1 or Block2 option (`option`) set to `block`.
fn with_block(request: &OutgoingRequest, option: u16, block: BlockOpt) -> OutgoingRequest {
    let mut req = request.clone();
    req.options.retain(|(n, _)| *n != option);
    req.options.push((option, block.encode()));
    req
}

/// Whether a response code is a success (class 2).
fn is_success(code: ResponseType) -> bool {
    u8::from(MessageClass::Response(code)) >> 5 == 2
}

/// The rest of a block-wise notification being fetched: observation `obs` got block 0 of
/// notification `seq` in Content-Format `format`.
struct NotifyBlocks {
    obs: u64,
    seq: u32,
    format: Option<u16>,
}

/// Largest answer collected from blocks.
const MAX_BLOCKWISE_BODY: usize = 1 << 20;

/// A Block1 or Block2 option of a packet (the reserved size exponent 7 is none).
fn block_of(p: &Packet, option: CoapOption) -> Option<BlockOpt> {
    BlockOpt::decode(p.get_first_option(option)?).filter(|b| b.szx < 7)
}

struct ObserveState {
    echo: Arc<Map<String, Json>>,
    req_path: String,
    /// Its key among the device's observations: the path, or the paths of a composite one.
    key: String,
    /// What notifications are decoded under (`None`: the root, for composite ones).
    path: Option<Path>,
}

/// What an observation is known by: its path, or a composite one's paths joined by `,`.
fn observation_key(paths: &[Path]) -> String {
    paths.iter().map(ToString::to_string).collect::<Vec<_>>().join(",")
}

/// A registered device.
struct Device {
    reg: Registration,
    serial: u64,
    location: String,
    addr: SocketAddr,
    identity: Arc<Identity>,
    registered_ms: u64,
    updated_ms: u64,
    expires: Instant,
    last_heard: Instant,
    queue: VecDeque<Queued>,
    /// The key of the command in flight.
    busy: Option<u64>,
    /// Observations: path → key of the observe request.
    observations: HashMap<String, u64>,
}

impl Device {
    fn awake(&self, now: Instant, window: Duration) -> bool {
        !self.reg.queue_mode || now.duration_since(self.last_heard) < window
    }
}

/// The listener actor.
pub struct Lwm2mListener {
    transport: Transport,
    shared: Arc<Lwm2mShared>,
    broker: Arc<Broker>,
    devices: HashMap<Arc<str>, Device>,
    by_location: HashMap<String, Arc<str>>,
    by_addr: HashMap<SocketAddr, Arc<str>>,
    requests: HashMap<u64, InFlight>,
    next_key: u64,
    next_serial: u64,
    /// The command subscription, on the first listener.
    commands: Option<(Arc<Session>, u64)>,
}

impl Lwm2mListener {
    /// Starts the actor on the current arbiter, reading from `socket`.
    pub fn start_on(
        socket: std::net::UdpSocket,
        shared: Arc<Lwm2mShared>,
        broker: Arc<Broker>,
    ) -> Result<Addr<Lwm2mListener>, crate::tls::TlsError> {
        let transport = Transport::new(
            socket,
            Protocol::Lwm2m,
            shared.layer.clone(),
            broker.clone(),
            &shared.limits,
            shared.tls.as_ref(),
            &shared.settings,
        )?;
        Ok(Lwm2mListener::create(move |_ctx| Lwm2mListener {
            transport,
            shared,
            broker,
            devices: HashMap::new(),
            by_location: HashMap::new(),
            by_addr: HashMap::new(),
            requests: HashMap::new(),
            next_key: 1,
            next_serial: 1,
            commands: None,
        }))
    }

    fn hub(&self) -> &Hub {
        &self.shared.hub
    }

    fn respond(&mut self, addr: SocketAddr, meta: &RequestMeta, resp: Response, ctx: &mut Context<Self>) {
        transport::with_peer(self, addr, ctx, |peer, now, out| peer.respond(now, meta, resp, out));
    }

    fn error(&mut self, addr: SocketAddr, meta: &RequestMeta, code: ResponseType, why: &str, ctx: &mut Context<Self>) {
        let mut resp = Response::new(code);
        resp.payload = why.as_bytes().to_vec();
        self.respond(addr, meta, resp, ctx);
    }

    /// Publishes an uplink event of `ep`.
    fn publish(&self, ep: &str, kind: Uplink, body: &Json, identity: Option<&Identity>) {
        let Ok(topic) = self.hub().scheme.uplink(ep, kind) else {
            return;
        };
        let mut msg = Message::new(topic, Bytes::from(body.to_string()));
        msg.qos = QoS::AtLeastOnce;
        msg.properties.content_type = Some("application/json".into());
        msg.origin = Origin {
            protocol: Some(Protocol::Lwm2m),
            client_id: Some(Arc::from(ep)),
            username: identity.and_then(|i| i.username.clone()),
            ..Origin::default()
        };
        self.broker.publish(msg);
    }

    // ------------------------------------------------------------------ registration interface

    fn on_request(&mut self, from: SocketAddr, req: Request, ctx: &mut Context<Self>) {
        if self.broker.is_shutting_down() {
            return self.error(
                from,
                &req.meta,
                ResponseType::ServiceUnavailable,
                "server shutting down",
                ctx,
            );
        }
        if self.transport.is_dtls() && self.transport.dtls_identity(from).is_none() {
            return self.error(from, &req.meta, ResponseType::Unauthorized, "not authenticated", ctx);
        }
        let segs: Vec<&str> = req.path.iter().map(String::as_str).collect();
        match (segs.as_slice(), req.method) {
            (["rd"], RequestType::Post) => self.register(from, req, ctx),
            (["rd", loc], RequestType::Post) => {
                let loc = loc.to_string();
                self.update(from, &loc, req, ctx)
            }
            (["rd", loc], RequestType::Delete) => {
                let loc = loc.to_string();
                self.deregister(from, &loc, req, ctx)
            }
            (["dp"], RequestType::Post) => self.send_op(from, req, ctx),
            (["rd"] | ["rd", _] | ["dp"], _) => self.error(
                from,
                &req.meta,
                ResponseType::MethodNotAllowed,
                "method not allowed",
                ctx,
            ),
            (["bs"], _) => self.error(from, &req.meta, ResponseType::NotFound, "not a bootstrap server", ctx),
            _ => self.error(from, &req.meta, ResponseType::NotFound, "not found", ctx),
        }
    }

    fn register(&mut self, from: SocketAddr, req: Request, ctx: &mut Context<Self>) {
        let limits = unigate_lwm2m::Limits::default();
        let mut reg = match Registration::parse(&req.query, &req.payload, &limits) {
            Ok(r) => r,
            Err(e) => return self.error(from, &req.meta, e.response_code(), &e.to_string(), ctx),
        };
        if !tr::valid_endpoint(&reg.endpoint) {
            return self.error(
                from,
                &req.meta,
                ResponseType::BadRequest,
                "endpoint name must not contain '/', '+', '#' or U+0000",
                ctx,
            );
        }
        reg.lifetime = self.clamp_lifetime(reg.lifetime);
        let dtls_identity = self.transport.dtls_identity(from).cloned();
        match dtls_identity {
            Some(identity) => self.admit(from, req, reg, Arc::new(identity), ctx),
            None => {
                let mut creds = Credentials::new(Protocol::Lwm2m, self.shared.name.clone());
                creds.peer = Some(from);
                creds.client_id = Some(reg.endpoint.clone());
                let fut = self.shared.settings.auth.run(creds);
                ctx.spawn(fut.into_actor(self).map(move |outcome, act, ctx| match outcome {
                    Outcome::Allowed(identity) => act.admit(from, req, reg, Arc::new(identity), ctx),
                    Outcome::Denied { .. } => {
                        act.error(from, &req.meta, ResponseType::Unauthorized, "not authorized", ctx)
                    }
                }));
            }
        }
    }

    fn clamp_lifetime(&self, lt: u32) -> u32 {
        let c = &self.hub().config;
        let min = u32::try_from(c.min_lifetime.as_secs()).unwrap_or(u32::MAX);
        let max = u32::try_from(c.max_lifetime.as_secs()).unwrap_or(u32::MAX);
        lt.clamp(min, max.max(min))
    }

    fn expiry(&self, lt: u32, now: Instant) -> Instant {
        now + Duration::from_secs(u64::from(lt)) + self.hub().config.lifetime_grace
    }

    /// Whether `identity` may act as endpoint `ep`: it may publish the endpoint's
    /// registration event (an ACL rule such as `allow publish lwm2m/${username}/up/#` binds
    /// endpoints to credentials).
    fn may_be(&self, identity: &Identity, ep: &str) -> bool {
        match self.hub().scheme.uplink(ep, Uplink::Register) {
            Ok(topic) => self
                .broker
                .authorize(identity, ep, &self.shared.name, AclRequest::Publish(&topic)),
            Err(_) => false,
        }
    }

    fn admit(
        &mut self,
        from: SocketAddr,
        req: Request,
        reg: Registration,
        identity: Arc<Identity>,
        ctx: &mut Context<Self>,
    ) {
        let ep: Arc<str> = Arc::from(reg.endpoint.as_str());
        if !self.may_be(&identity, &ep) {
            return self.error(from, &req.meta, ResponseType::Forbidden, "endpoint not allowed", ctx);
        }
        // A second registration of a known endpoint replaces the first (TS Core §6.2.1),
        // wherever it was.
        // One registration per address: two endpoints cannot both be reached at one
        // address and port, and a flood of endpoint names from one socket stays one entry.
        if let Some(other) = self.by_addr.get(&from).filter(|o| **o != ep).cloned() {
            self.drop_device(&other, "superseded", ctx);
        }
        if self.devices.contains_key(&ep) {
            self.drop_device(&ep, "replaced", ctx);
        } else if let Some(other) = self.hub().devices.get(&*ep).map(|a| a.clone()) {
            if other != ctx.address() {
                other.do_send(Replaced(ep.clone()));
            }
        }
        let now = Instant::now();
        let location = loop {
            let l = format!("{:08x}", rand::random::<u32>());
            if !self.by_location.contains_key(&l) {
                break l;
            }
        };
        let serial = self.next_serial;
        self.next_serial += 1;
        let event = tr::registration_event("register", &reg);
        let device = Device {
            expires: self.expiry(reg.lifetime, now),
            reg,
            serial,
            location: location.clone(),
            addr: from,
            identity: identity.clone(),
            registered_ms: now_ms(),
            updated_ms: now_ms(),
            last_heard: now,
            queue: VecDeque::new(),
            busy: None,
            observations: HashMap::new(),
        };
        self.by_location.insert(location.clone(), ep.clone());
        self.by_addr.insert(from, ep.clone());
        self.devices.insert(ep.clone(), device);
        self.hub().devices.insert(ep.to_string(), ctx.address());
        Metrics::gauge(&self.broker.metrics.lwm2m_registrations, 1);
        let resp = Response::new(ResponseType::Created).with_location_path(vec!["rd".into(), location]);
        self.respond(from, &req.meta, resp, ctx);
        tracing::debug!(listener = %self.shared.name, endpoint = %ep, peer = %from, "lwm2m registered");
        self.publish(&ep, Uplink::Register, &event, Some(&identity));
        self.auto_observe(&ep, ctx);
        self.pump(&ep, ctx);
    }

    fn auto_observe(&mut self, ep: &Arc<str>, ctx: &mut Context<Self>) {
        let paths: Vec<Path> = {
            let Some(d) = self.devices.get(ep) else { return };
            self.hub()
                .config
                .auto_observe
                .iter()
                .filter_map(|p| p.parse::<Path>().ok())
                .filter(|p| d.reg.objects.iter().any(|o| o.path.object_id() == p.object_id()))
                .collect()
        };
        for path in paths {
            let echo = Map::from_iter([
                ("msgType".to_string(), json!("observe")),
                ("auto".to_string(), json!(true)),
            ]);
            let cmd = Pending {
                echo,
                req_path: path.to_string(),
                op: Operation::Observe { path },
                reply: Reply::Mqtt,
            };
            self.enqueue(ep, cmd, ctx);
        }
    }

    /// The device registered at `loc`, if `from` may speak for it.
    fn located(&mut self, from: SocketAddr, loc: &str) -> Result<Arc<str>, (ResponseType, &'static str)> {
        let ep = self
            .by_location
            .get(loc)
            .cloned()
            .ok_or((ResponseType::NotFound, "unknown registration"))?;
        if let Some(id) = self.transport.dtls_identity(from) {
            let owner = self.devices.get(&ep).map(|d| d.identity.username.clone());
            if owner.is_some_and(|o| o != id.username) {
                return Err((ResponseType::Forbidden, "registration belongs to another identity"));
            }
        }
        Ok(ep)
    }

    fn update(&mut self, from: SocketAddr, loc: &str, req: Request, ctx: &mut Context<Self>) {
        let ep = match self.located(from, loc) {
            Ok(ep) => ep,
            Err((code, why)) => return self.error(from, &req.meta, code, why, ctx),
        };
        let limits = unigate_lwm2m::Limits::default();
        let mut update = match RegistrationUpdate::parse(&req.query, &req.payload, &limits) {
            Ok(u) => u,
            Err(e) => return self.error(from, &req.meta, e.response_code(), &e.to_string(), ctx),
        };
        update.lifetime = update.lifetime.map(|lt| self.clamp_lifetime(lt));
        let now = Instant::now();
        let grace = self.hub().config.lifetime_grace;
        let Some(d) = self.devices.get_mut(&ep) else {
            return self.error(from, &req.meta, ResponseType::NotFound, "unknown registration", ctx);
        };
        d.reg.apply(update);
        d.expires = now + Duration::from_secs(u64::from(d.reg.lifetime)) + grace;
        d.last_heard = now;
        d.updated_ms = now_ms();
        let old = std::mem::replace(&mut d.addr, from);
        let event = tr::registration_event("update", &d.reg);
        let identity = d.identity.clone();
        if old != from {
            if self.by_addr.get(&old) == Some(&ep) {
                self.by_addr.remove(&old);
            }
            self.by_addr.insert(from, ep.clone());
        }
        self.respond(from, &req.meta, Response::new(ResponseType::Changed), ctx);
        self.publish(&ep, Uplink::Update, &event, Some(&identity));
        self.pump(&ep, ctx);
    }

    fn deregister(&mut self, from: SocketAddr, loc: &str, req: Request, ctx: &mut Context<Self>) {
        let ep = match self.located(from, loc) {
            Ok(ep) => ep,
            Err((code, why)) => return self.error(from, &req.meta, code, why, ctx),
        };
        self.respond(from, &req.meta, Response::new(ResponseType::Deleted), ctx);
        self.drop_device(&ep, "deregistered", ctx);
    }

    /// Send (`/dp`, LwM2M 1.1): values the device pushes on its own.
    fn send_op(&mut self, from: SocketAddr, req: Request, ctx: &mut Context<Self>) {
        let Some(ep) = self.by_addr.get(&from).cloned() else {
            return self.error(from, &req.meta, ResponseType::NotFound, "not registered", ctx);
        };
        let format = match req.content_format.and_then(ContentFormat::from_code) {
            Some(f @ (ContentFormat::SenmlCbor | ContentFormat::SenmlJson | ContentFormat::Lwm2mCbor)) => f,
            _ => {
                return self.error(
                    from,
                    &req.meta,
                    ResponseType::UnsupportedContentFormat,
                    "Send takes SenML CBOR, SenML JSON or LwM2M CBOR",
                    ctx,
                )
            }
        };
        let decoded = unigate_lwm2m::decode(
            format,
            None,
            &req.payload,
            &self.hub().registry,
            &unigate_lwm2m::Limits::default(),
        );
        match decoded {
            Ok(values) => {
                if let Some(d) = self.devices.get_mut(&ep) {
                    d.last_heard = Instant::now();
                }
                self.respond(from, &req.meta, Response::new(ResponseType::Changed), ctx);
                let identity = self.devices.get(&ep).map(|d| d.identity.clone());
                let body = tr::send_event(unigate_lwm2m::content_to_json(&values));
                self.publish(&ep, Uplink::Send, &body, identity.as_deref());
                self.pump(&ep, ctx);
            }
            Err(e) => self.error(from, &req.meta, ResponseType::BadRequest, &e.to_string(), ctx),
        }
    }

    /// Forgets a device: its observations end, its commands are answered 4.04.
    fn drop_device(&mut self, ep: &Arc<str>, reason: &str, ctx: &mut Context<Self>) {
        let Some(mut d) = self.devices.remove(ep) else {
            return;
        };
        Metrics::gauge(&self.broker.metrics.lwm2m_registrations, -1);
        self.by_location.remove(&d.location);
        if self.by_addr.get(&d.addr) == Some(ep) {
            self.by_addr.remove(&d.addr);
        }
        if self
            .hub()
            .devices
            .get(&**ep)
            .is_some_and(|a| a.value() == &ctx.address())
        {
            self.hub().devices.remove(&**ep);
        }
        let keys: Vec<u64> = self
            .requests
            .iter()
            .filter(|(_, r)| &r.ep == ep && r.serial == d.serial)
            .map(|(k, _)| *k)
            .collect();
        for k in keys {
            if let Some(r) = self.requests.remove(&k) {
                if let Some(e) = self.transport.peers.get_mut(&d.addr) {
                    e.peer.cancel_request(&r.token);
                }
                if let Some(cmd) = r.cmd {
                    self.answer(ep, cmd, ResponseType::NotFound, None, Some("device de-registered"));
                }
            }
        }
        for q in std::mem::take(&mut d.queue) {
            self.answer(ep, q.cmd, ResponseType::NotFound, None, Some("device de-registered"));
        }
        if reason != "replaced" {
            self.publish(
                ep,
                Uplink::Deregister,
                &tr::deregistration_event(ep, reason),
                Some(&d.identity),
            );
        }
        tracing::debug!(listener = %self.shared.name, endpoint = %ep, reason, "lwm2m registration ended");
    }

    // ------------------------------------------------------------------ commands

    /// Answers a command: publishes the response and, for HTTP, returns it.
    fn answer(&self, ep: &str, cmd: Pending, code: ResponseType, content: Option<Json>, error: Option<&str>) {
        let body = tr::response(&cmd.echo, &cmd.req_path, code, content, error);
        self.deliver_answer(ep, body, cmd.reply);
    }

    fn deliver_answer(&self, ep: &str, body: Json, reply: Reply) {
        let identity = self.devices.get(ep).map(|d| d.identity.clone());
        self.publish(ep, Uplink::Response, &body, identity.as_deref());
        if let Reply::Http(tx) = reply {
            let _ = tx.send(body);
        }
    }

    /// Takes a command for `ep`: answered at once when it cannot be carried out, else queued.
    fn command(&mut self, ep: &str, cmd: Result<Command, CommandError>, reply: Reply, ctx: &mut Context<Self>) {
        let cmd = match cmd {
            Ok(c) => Pending {
                echo: c.echo,
                req_path: c.req_path,
                op: c.operation,
                reply,
            },
            Err(e) => {
                let body = tr::response(&e.echo, &e.req_path, ResponseType::BadRequest, None, Some(&e.reason));
                return self.deliver_answer(ep, body, reply);
            }
        };
        let Some(key) = self.devices.get_key_value(ep).map(|(k, _)| k.clone()) else {
            return self.answer(ep, cmd, ResponseType::NotFound, None, Some("device not registered"));
        };
        self.enqueue(&key, cmd, ctx);
    }

    fn enqueue(&mut self, ep: &Arc<str>, cmd: Pending, ctx: &mut Context<Self>) {
        let max = self.hub().config.max_queued;
        let Some(d) = self.devices.get_mut(ep) else { return };
        if d.queue.len() >= max {
            return self.answer(
                ep,
                cmd,
                ResponseType::ServiceUnavailable,
                None,
                Some("command queue full"),
            );
        }
        d.queue.push_back(Queued {
            cmd,
            since: Instant::now(),
        });
        self.pump(ep, ctx);
    }

    /// Sends the device's next command if it is awake and idle.
    fn pump(&mut self, ep: &Arc<str>, ctx: &mut Context<Self>) {
        let now = Instant::now();
        let window = self.hub().config.queue_window;
        let timeout = self.hub().config.request_timeout;
        loop {
            let Some(d) = self.devices.get_mut(ep) else { return };
            if d.busy.is_some() || !d.awake(now, window) {
                return;
            }
            let Some(q) = d.queue.pop_front() else { return };
            let root = d.reg.alternate_path.clone();
            let (format, accept) = formats(&d.reg, q.cmd.op.path().is_none());
            let (addr, serial) = (d.addr, d.serial);
            let parts = match q.cmd.op.to_request(root.as_deref(), format, accept) {
                Ok(p) => p,
                Err(e) => {
                    self.answer(ep, q.cmd, ResponseType::BadRequest, None, Some(&e.to_string()));
                    continue;
                }
            };
            let key = self.next_key;
            self.next_key += 1;
            let observe_path = match &q.cmd.op {
                Operation::Observe { path } => Some((Some(*path), path.to_string())),
                Operation::ObserveComposite { paths } => Some((None, observation_key(paths))),
                _ => None,
            };
            let cancel = match &q.cmd.op {
                Operation::CancelObserve { path } => Some(path.to_string()),
                Operation::CancelObserveComposite { paths } => Some(observation_key(paths)),
                _ => None,
            };
            let blockwise = matches!(
                q.cmd.op,
                Operation::Read { .. }
                    | Operation::Discover { .. }
                    | Operation::ReadComposite { .. }
                    | Operation::Observe { .. }
                    | Operation::ObserveComposite { .. }
            );
            let req = OutgoingRequest {
                method: parts.method,
                path: parts.path,
                query: parts.query,
                confirmable: true,
                content_format: parts.content_format,
                accept: parts.accept,
                observe: parts.observe,
                payload: parts.payload,
                options: Vec::new(),
                key,
            };
            let observe = observe_path.map(|(path, key)| ObserveState {
                echo: Arc::new(q.cmd.echo.clone()),
                req_path: q.cmd.req_path.clone(),
                key,
                path,
            });
            // An observation keeps its Blocks after the answer: a block-wise notification's
            // later blocks are asked with the same request, without Observe (RFC 7959 §3.4).
            let blocks = blockwise.then(|| {
                Box::new(Blocks {
                    request: OutgoingRequest {
                        observe: None,
                        ..req.clone()
                    },
                    body: Vec::new(),
                    observe_seq: None,
                })
            });
            // A body over the block size goes out block by block.
            let (req, upload) = if req.payload.len() > self.shared.layer.block_size {
                let mut upload = Upload {
                    szx: self.shared.layer.block_szx(),
                    body: req.payload,
                    request: OutgoingRequest {
                        payload: Vec::new(),
                        ..req
                    },
                    sent_end: 0,
                };
                let (first, end) = upload.block(0);
                upload.sent_end = end;
                (first, Some(Box::new(upload)))
            } else {
                (req, None)
            };
            self.requests.insert(
                key,
                InFlight {
                    ep: ep.clone(),
                    serial,
                    cmd: Some(q.cmd),
                    deadline: now + timeout,
                    token: Vec::new(),
                    observe,
                    blocks,
                    upload,
                    notify: None,
                },
            );
            if let Some(d) = self.devices.get_mut(ep) {
                d.busy = Some(key);
            }
            let token = self.send_request(addr, req, ctx);
            if let Some(r) = self.requests.get_mut(&key) {
                r.token = token;
            }
            if let Some(path) = cancel {
                // The device is told by the GET with Observe 1; our side forgets the token
                // now, so a late notification gets RST (RFC 7641 §3.6).
                self.forget_observation(ep, &path);
            }
        }
    }

    fn forget_observation(&mut self, ep: &Arc<str>, path: &str) {
        let Some(d) = self.devices.get_mut(ep) else { return };
        let Some(key) = d.observations.remove(path) else { return };
        let addr = d.addr;
        Metrics::gauge(&self.broker.metrics.lwm2m_observations, -1);
        self.cancel_key(addr, key);
    }

    fn on_response(&mut self, from: SocketAddr, key: u64, packet: Packet, ctx: &mut Context<Self>) {
        let Some(r) = self.requests.get_mut(&key) else { return };
        let ep = r.ep.clone();
        let code = match packet.header.code {
            MessageClass::Response(c) => c,
            _ => ResponseType::UnKnown,
        };
        let observe_seq = packet
            .get_first_option(CoapOption::Observe)
            .map(|v| v.iter().fold(0u32, |acc, b| (acc << 8) | u32::from(*b)));
        let format = packet
            .get_first_option(CoapOption::ContentFormat)
            .map(|v| v.iter().fold(0u16, |acc, b| (acc << 8) | u16::from(*b)));
        if let Some(d) = self.devices.get_mut(&ep) {
            d.last_heard = Instant::now();
        }
        let block = block_of(&packet, CoapOption::Block2);
        let mut block_error = None;
        let mut next_block = None;
        if let (true, Some(u)) = (r.cmd.is_some(), r.upload.as_mut()) {
            let finished = u.sent_end >= u.body.len();
            let block1 = block_of(&packet, CoapOption::Block1);
            let success = is_success(code);
            // 2.31 Continue takes a block and asks for the next; so does a 2.xx with Block1
            // M=1 from a device that acts on each block as it comes (RFC 7959 §2.3).
            let more = code == ResponseType::Continue || (success && block1.is_some_and(|b| b.more));
            match (more, finished) {
                (true, false) => {
                    // The device may ask for smaller blocks from now on (§2.5): the next block
                    // starts where the last ended, at the new size.
                    if let Some(b) = block1 {
                        u.szx = u.szx.min(b.szx);
                    }
                    let (next, end) = u.block(u.sent_end);
                    u.sent_end = end;
                    next_block = Some(next);
                }
                (true, true) => {
                    block_error = Some("the device asked for more blocks than the body has".to_owned());
                }
                (false, false) if success => {
                    block_error = Some(format!(
                        "the device answered {} before the last block",
                        unigate_lwm2m::code_string(code)
                    ));
                }
                // The answer to the last block, or the device's refusal (4.13, 4.08, …).
                (false, _) => {}
            }
        }
        let mut payload = packet.payload;
        if let (true, None, ResponseType::Content, Some(BlockOpt { num, more, szx }), Some(b)) = (
            r.cmd.is_some() || r.notify.is_some(),
            &next_block,
            code,
            block,
            r.blocks.as_mut(),
        ) {
            if num == 0 {
                b.observe_seq = observe_seq;
            }
            let size = 16usize << szx;
            if (num as usize).saturating_mul(size) != b.body.len() {
                block_error = Some(format!("block {num} of the answer came out of order"));
            } else if b.body.len() + payload.len() > MAX_BLOCKWISE_BODY {
                block_error = Some(format!("the answer is larger than {MAX_BLOCKWISE_BODY} bytes"));
            } else {
                b.body.extend_from_slice(&payload);
                if more {
                    next_block = Some(b.ask(num + 1, szx));
                } else {
                    payload = std::mem::take(&mut b.body);
                }
            }
        }
        if let Some(next) = next_block {
            // Send or ask for the next block under the same key; the command stays pending,
            // and request_timeout counts from this block (a long upload is not cut off while
            // the device keeps answering).
            let deadline = Instant::now() + self.hub().config.request_timeout;
            let token = self.send_request(from, next, ctx);
            if let Some(r) = self.requests.get_mut(&key) {
                // An observation stays known by its own token (its notifications carry it,
                // and cancelling it uses it); a block's token ends with its answer.
                if r.observe.is_none() {
                    r.token = token;
                }
                r.deadline = deadline;
            }
            return;
        }
        let Some(r) = self.requests.get_mut(&key) else { return };
        // The whole of a block-wise answer to an Observe carries block 0's Observe.
        let observe_seq = match r.blocks.as_ref() {
            Some(b) if block.is_some() && r.cmd.is_some() => b.observe_seq,
            _ => observe_seq,
        };
        if let Some(n) = r.notify.take() {
            // The last block of a block-wise notification: publish it whole.
            self.cancel_key(from, key);
            let whole = match (block_error, code) {
                (Some(e), _) => Err(e),
                (None, ResponseType::Content) => Ok(payload),
                (None, c) => Err(format!(
                    "the device answered {} when asked for the rest of the notification",
                    unigate_lwm2m::code_string(c)
                )),
            };
            self.notified(&ep, n.obs, n.seq, n.format, whole);
            self.pump(&ep, ctx);
            return;
        }
        let obs_key = r.observe.as_ref().map(|o| o.key.clone());
        match r.cmd.take() {
            Some(cmd) => {
                // The answer to a command.
                let content = match block_error {
                    Some(e) => Err(e),
                    None => self.content(&cmd.op, code, format, &payload),
                };
                let observed = code == ResponseType::Content && observe_seq.is_some();
                let (content, error) = match content {
                    Ok(c) => (c, None),
                    Err(e) => (None, Some(e)),
                };
                let code = if error.is_some() {
                    ResponseType::BadGateway
                } else {
                    code
                };
                self.answer(&ep, cmd, code, content, error.as_deref());
                if let Some(d) = self.devices.get_mut(&ep) {
                    if d.busy == Some(key) {
                        d.busy = None;
                    }
                }
                if let (true, Some(path)) = (observed, obs_key) {
                    let max = self.hub().config.max_observations;
                    // Observing the same thing again replaces the older observation.
                    self.forget_observation(&ep, &path);
                    let full = self.devices.get(&ep).is_some_and(|d| d.observations.len() >= max);
                    if full {
                        self.cancel_key(from, key);
                    } else if let Some(d) = self.devices.get_mut(&ep) {
                        d.observations.insert(path, key);
                        Metrics::gauge(&self.broker.metrics.lwm2m_observations, 1);
                    }
                } else {
                    self.cancel_key(from, key);
                }
                self.pump(&ep, ctx);
            }
            None => {
                // A notification of an observation.
                let Some(o) = &r.observe else { return };
                if code != ResponseType::Content || observe_seq.is_none() {
                    // The observation ended on the device's side (RFC 7641 §3.2).
                    let obs_key = o.key.clone();
                    if let Some(d) = self.devices.get_mut(&ep) {
                        if d.observations.get(&obs_key) == Some(&key) {
                            d.observations.remove(&obs_key);
                            Metrics::gauge(&self.broker.metrics.lwm2m_observations, -1);
                        }
                    }
                    self.cancel_key(from, key);
                    return;
                }
                let seq = observe_seq.unwrap_or(0);
                if let (
                    Some(BlockOpt {
                        num: 0,
                        more: true,
                        szx,
                    }),
                    Some(b),
                ) = (block, &r.blocks)
                {
                    // Block 0 of a larger notification: fetch the rest with the observation's
                    // request, without Observe (RFC 7959 §3.4), then publish it whole.
                    let fetch = self.next_key;
                    self.next_key += 1;
                    // Its blocks are answers to the fetch, under its own key.
                    let blocks = Blocks {
                        request: OutgoingRequest {
                            key: fetch,
                            ..b.request.clone()
                        },
                        body: payload,
                        observe_seq: None,
                    };
                    let next = blocks.ask(1, szx);
                    let serial = r.serial;
                    let deadline = Instant::now() + self.hub().config.request_timeout;
                    self.requests.insert(
                        fetch,
                        InFlight {
                            ep: ep.clone(),
                            serial,
                            cmd: None,
                            deadline,
                            token: Vec::new(),
                            observe: None,
                            blocks: Some(Box::new(blocks)),
                            upload: None,
                            notify: Some(Box::new(NotifyBlocks { obs: key, seq, format })),
                        },
                    );
                    let token = self.send_request(from, next, ctx);
                    if let Some(f) = self.requests.get_mut(&fetch) {
                        f.token = token;
                    }
                    return;
                }
                self.notified(&ep, key, seq, format, Ok(payload));
                self.pump(&ep, ctx);
            }
        }
    }

    /// Sends `req` to the device at `addr`; its token.
    fn send_request(&mut self, addr: SocketAddr, req: OutgoingRequest, ctx: &mut Context<Self>) -> Vec<u8> {
        let mut token = Vec::new();
        transport::with_peer(self, addr, ctx, |peer, now, out| {
            token = peer.send_request(now, req, out);
        });
        token
    }

    /// Publishes notification `seq` of observation `obs` (its payload, or why it could not be
    /// had).
    fn notified(&mut self, ep: &Arc<str>, obs: u64, seq: u32, format: Option<u16>, payload: Result<Vec<u8>, String>) {
        let Some(o) = self.requests.get(&obs).and_then(|r| r.observe.as_ref()) else {
            return;
        };
        let (echo, req_path, path) = (o.echo.clone(), o.req_path.clone(), o.path);
        let content =
            payload.and_then(|p| self.decode_content(path.as_ref(), false, ResponseType::Content, format, &p));
        let body = match content {
            Ok(c) => tr::notify_event(&echo, &req_path, seq, c.unwrap_or(Json::Null)),
            Err(e) => {
                let mut b = tr::notify_event(&echo, &req_path, seq, Json::Null);
                b["data"]["error"] = json!(e);
                b
            }
        };
        Metrics::add(&self.broker.metrics.lwm2m_notifications, 1);
        let identity = self.devices.get(ep).map(|d| d.identity.clone());
        self.publish(ep, Uplink::Notify, &body, identity.as_deref());
    }

    /// Forgets a request of ours; the message layer answers anything later for it with RST.
    fn cancel_key(&mut self, addr: SocketAddr, key: u64) {
        if let Some(r) = self.requests.remove(&key) {
            if let Some(e) = self.transport.peers.get_mut(&addr) {
                e.peer.cancel_request(&r.token);
            }
        }
    }

    /// The JSON content of a response to `op`.
    fn content(
        &self,
        op: &Operation,
        code: ResponseType,
        format: Option<u16>,
        payload: &[u8],
    ) -> Result<Option<Json>, String> {
        self.decode_content(
            op.path(),
            matches!(op, Operation::Discover { .. }),
            code,
            format,
            payload,
        )
    }

    fn decode_content(
        &self,
        path: Option<&Path>,
        discover: bool,
        code: ResponseType,
        format: Option<u16>,
        payload: &[u8],
    ) -> Result<Option<Json>, String> {
        if !matches!(code, ResponseType::Content) || payload.is_empty() {
            return Ok(None);
        }
        if discover || format == Some(40) {
            return tr::discover_content(payload, unigate_lwm2m::Limits::default().max_link_entries).map(Some);
        }
        let Some(f) = format.map_or(Some(ContentFormat::Text), ContentFormat::from_code) else {
            return Err(format!("unsupported content format {format:?}"));
        };
        let values = unigate_lwm2m::decode(
            f,
            path,
            payload,
            &self.hub().registry,
            &unigate_lwm2m::Limits::default(),
        )
        .map_err(|e| format!("cannot decode the device's {f}: {e}"))?;
        Ok(Some(unigate_lwm2m::content_to_json(&values)))
    }

    /// A request of ours ended without an answer.
    fn on_failed(&mut self, key: u64, why: &str, ctx: &mut Context<Self>) {
        let Some(mut r) = self.requests.remove(&key) else {
            return;
        };
        let ep = r.ep.clone();
        if let Some(addr) = self.devices.get(&ep).map(|d| d.addr) {
            if let Some(e) = self.transport.peers.get_mut(&addr) {
                e.peer.cancel_request(&r.token);
            }
        }
        if let Some(cmd) = r.cmd.take() {
            self.answer(&ep, cmd, ResponseType::GatewayTimeout, None, Some(why));
        } else if let Some(n) = r.notify.take() {
            let why = format!("the rest of the notification: {why}");
            self.notified(&ep, n.obs, n.seq, n.format, Err(why));
        } else if let Some(o) = &r.observe {
            if let Some(d) = self.devices.get_mut(&ep) {
                if d.observations.get(&o.key) == Some(&key) {
                    d.observations.remove(&o.key);
                    Metrics::gauge(&self.broker.metrics.lwm2m_observations, -1);
                }
            }
        }
        if let Some(d) = self.devices.get_mut(&ep) {
            if d.busy == Some(key) {
                d.busy = None;
            }
        }
        self.pump(&ep, ctx);
    }

    // ------------------------------------------------------------------ housekeeping

    fn sweep(&mut self, ctx: &mut Context<Self>) {
        let now = Instant::now();
        let expired: Vec<Arc<str>> = self
            .devices
            .iter()
            .filter(|(_, d)| d.expires <= now)
            .map(|(ep, _)| ep.clone())
            .collect();
        for ep in expired {
            self.drop_device(&ep, "expired", ctx);
        }
        let late: Vec<u64> = self
            .requests
            .iter()
            .filter(|(_, r)| (r.cmd.is_some() || r.notify.is_some()) && r.deadline <= now)
            .map(|(k, _)| *k)
            .collect();
        for key in late {
            self.on_failed(key, "no response from the device", ctx);
        }
        let ttl = self.hub().config.queue_ttl;
        let mut stale: Vec<(Arc<str>, Pending)> = Vec::new();
        for (ep, d) in self.devices.iter_mut() {
            while d.queue.front().is_some_and(|q| now.duration_since(q.since) >= ttl) {
                if let Some(q) = d.queue.pop_front() {
                    stale.push((ep.clone(), q.cmd));
                }
            }
        }
        for (ep, cmd) in stale {
            self.answer(
                &ep,
                cmd,
                ResponseType::GatewayTimeout,
                None,
                Some("the device did not wake up in time"),
            );
        }
        let owned: std::collections::HashSet<SocketAddr> = self.devices.values().map(|d| d.addr).collect();
        transport::sweep_idle(self, PEER_IDLE, |a| owned.contains(a), ctx);
    }

    // ------------------------------------------------------------------ command subscription

    fn subscribe_commands(&mut self, ctx: &mut Context<Self>) {
        let Ok(filter) = self.hub().scheme.command_filter() else {
            return;
        };
        let client_id: ClientId = ClientId::from(format!("$lwm2m/{}", self.shared.name).as_str());
        let link = Arc::new(CommandLink {
            addr: ctx.address(),
            generation: AtomicU64::new(0),
        });
        let limits = QueueLimits {
            max_queued: 100_000,
            drop_policy: QueueDropPolicy::Oldest,
            queue_qos0_offline: false,
            // Commands are for devices that are registered now; the session ends with the server.
            persist: false,
        };
        let a = self.broker.attach(client_id, true, 0, link.clone(), limits);
        link.generation.store(a.generation, Ordering::Relaxed);
        let opts = SubOptions {
            qos: QoS::AtMostOnce,
            no_local: false,
            retain_as_published: false,
            sub_id: None,
        };
        self.broker.subscribe(&a.session, &filter, opts);
        self.commands = Some((a.session, a.generation));
    }

    /// Takes the commands the subscription received and routes each to its endpoint's
    /// listener.
    fn drain_commands(&mut self, ctx: &mut Context<Self>) {
        let Some((session, generation)) = self.commands.clone() else {
            return;
        };
        loop {
            let d = {
                let mut st = session.lock();
                if st.generation != generation {
                    return;
                }
                st.wake_pending = false;
                st.pop()
            };
            let Some(d) = d else { return };
            let Some(ep) = self.hub().scheme.endpoint_of(d.msg.topic.as_str()).map(str::to_owned) else {
                continue;
            };
            let cmd = tr::parse_command(&d.msg.payload, &self.hub().registry);
            let holder = self.hub().devices.get(&ep).map(|a| a.clone());
            match holder {
                Some(addr) if addr != ctx.address() => addr.do_send(RunCommand {
                    ep,
                    cmd,
                    reply: Reply::Mqtt,
                }),
                _ => self.command(&ep, cmd, Reply::Mqtt, ctx),
            }
        }
    }

    fn describe(&self, d: &Device) -> Json {
        let mut j = tr::registration_event("register", &d.reg)["data"].take();
        if let Some(o) = j.as_object_mut() {
            o.insert("listener".into(), json!(&*self.shared.name));
            o.insert("peer".into(), json!(d.addr.to_string()));
            o.insert("location".into(), json!(format!("/rd/{}", d.location)));
            o.insert("username".into(), json!(d.identity.username.as_deref()));
            o.insert("registeredAt".into(), json!(d.registered_ms));
            o.insert("updatedAt".into(), json!(d.updated_ms));
            o.insert("queueMode".into(), json!(d.reg.queue_mode));
            o.insert("queued".into(), json!(d.queue.len()));
            o.insert("observations".into(), json!(d.observations.keys().collect::<Vec<_>>()));
            o.insert("contentFormats".into(), json!(d.reg.content_formats));
        }
        j
    }
}

/// The format for payloads (Write, Create) and the Accept (none: the device chooses) for a
/// device: what it said it takes in its registration (`ct`), else TLV up to 1.1 and SenML CBOR
/// from 1.2. Composite operations (1.1) take SenML: CBOR unless the device listed only JSON.
fn formats(reg: &Registration, composite: bool) -> (ContentFormat, Option<ContentFormat>) {
    let takes = |f: ContentFormat| reg.content_formats.contains(&f.code());
    let format = if composite {
        if takes(ContentFormat::SenmlJson) && !takes(ContentFormat::SenmlCbor) {
            ContentFormat::SenmlJson
        } else {
            ContentFormat::SenmlCbor
        }
    } else if reg.content_formats.is_empty() {
        if reg.version >= Version::V1_2 {
            ContentFormat::SenmlCbor
        } else {
            ContentFormat::Tlv
        }
    } else if takes(ContentFormat::Tlv) {
        ContentFormat::Tlv
    } else if takes(ContentFormat::SenmlCbor) {
        ContentFormat::SenmlCbor
    } else if takes(ContentFormat::SenmlJson) {
        ContentFormat::SenmlJson
    } else {
        ContentFormat::Tlv
    };
    (format, None)
}

impl CoapApp for Lwm2mListener {
    fn transport(&mut self) -> &mut Transport {
        &mut self.transport
    }

    fn auth(&self) -> &ListenerAuth {
        &self.shared.settings.auth
    }

    fn on_event(&mut self, addr: SocketAddr, event: Event, ctx: &mut Context<Self>) {
        match event {
            Event::Request(req) => {
                Metrics::add(&self.broker.metrics.coap_requests, 1);
                if let Some(ep) = self.by_addr.get(&addr).cloned() {
                    if let Some(d) = self.devices.get_mut(&ep) {
                        d.last_heard = Instant::now();
                    }
                }
                self.on_request(addr, req, ctx);
            }
            Event::Response { key, packet } => self.on_response(addr, key, packet, ctx),
            Event::TimedOut { key } => self.on_failed(key, "the device did not acknowledge", ctx),
            Event::Rejected { key } => self.on_failed(key, "the device answered with RST", ctx),
            _ => {}
        }
    }

    /// A device whose DTLS association ended stays registered: it re-handshakes and sends an
    /// Update when it wakes (queue mode), or the lifetime ends it.
    fn on_peer_removed(&mut self, _addr: SocketAddr, _ctx: &mut Context<Self>) {}
}

impl Actor for Lwm2mListener {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let first = {
            let mut all = self.shared.hub.listeners.lock();
            all.push(ctx.address());
            all.len() == 1
        };
        if first {
            self.subscribe_commands(ctx);
        }
        transport::start(self, ctx);
        ctx.run_interval(SWEEP, |act, ctx| act.sweep(ctx));
    }
}

/// Wakes the command subscription.
struct CommandLink {
    addr: Addr<Lwm2mListener>,
    generation: AtomicU64,
}

impl SessionLink for CommandLink {
    fn wake(&self) {
        self.addr.do_send(WakeCommands(self.generation.load(Ordering::Relaxed)));
    }

    fn kick(&self, reason: KickReason) {
        self.addr
            .do_send(KickCommands(self.generation.load(Ordering::Relaxed), reason));
    }
}

#[derive(Message)]
#[rtype(result = "()")]
struct WakeCommands(u64);

impl Handler<WakeCommands> for Lwm2mListener {
    type Result = ();
    fn handle(&mut self, WakeCommands(generation): WakeCommands, ctx: &mut Self::Context) {
        if self.commands.as_ref().is_some_and(|(_, g)| *g == generation) {
            self.drain_commands(ctx);
        }
    }
}

#[derive(Message)]
#[rtype(result = "()")]
struct KickCommands(u64, KickReason);

impl Handler<KickCommands> for Lwm2mListener {
    type Result = ();
    fn handle(&mut self, KickCommands(generation, reason): KickCommands, ctx: &mut Self::Context) {
        if self.commands.as_ref().is_none_or(|(_, g)| *g != generation) {
            return;
        }
        self.commands = None;
        if reason == KickReason::SessionTakenOver && !self.broker.is_shutting_down() {
            // Someone connected with our internal client id: take the subscription back.
            tracing::warn!(listener = %self.shared.name, "lwm2m command session taken over; re-subscribing");
            self.subscribe_commands(ctx);
        }
    }
}

/// A command for an endpoint this listener holds (from the first listener, or HTTP).
#[derive(Message)]
#[rtype(result = "()")]
pub struct RunCommand {
    /// The endpoint.
    pub ep: String,
    /// The command, or why it cannot be run.
    pub cmd: Result<Command, CommandError>,
    /// Where the answer goes.
    pub reply: Reply,
}

impl Handler<RunCommand> for Lwm2mListener {
    type Result = ();
    fn handle(&mut self, m: RunCommand, ctx: &mut Self::Context) {
        self.command(&m.ep, m.cmd, m.reply, ctx);
    }
}

/// Another listener registered the endpoint anew.
#[derive(Message)]
#[rtype(result = "()")]
struct Replaced(Arc<str>);

impl Handler<Replaced> for Lwm2mListener {
    type Result = ();
    fn handle(&mut self, Replaced(ep): Replaced, ctx: &mut Self::Context) {
        self.drop_device(&ep, "replaced", ctx);
    }
}

/// The registrations of this listener (all, or one endpoint's), for the HTTP API.
#[derive(Message)]
#[rtype(result = "Vec<Json>")]
pub struct ListDevices(pub Option<String>);

impl Handler<ListDevices> for Lwm2mListener {
    type Result = MessageResult<ListDevices>;
    fn handle(&mut self, ListDevices(ep): ListDevices, _ctx: &mut Self::Context) -> Self::Result {
        let out = match ep {
            Some(ep) => self
                .devices
                .get(ep.as_str())
                .map(|d| vec![self.describe(d)])
                .unwrap_or_default(),
            None => self.devices.values().map(|d| self.describe(d)).collect(),
        };
        MessageResult(out)
    }
}
