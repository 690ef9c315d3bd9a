//! Starting and stopping the server: the actix system, worker arbiters, listeners, `$SYS`.
//!
//! One actix `System` runs on its own thread; it binds the listeners and accepts connections,
//! handing each socket round-robin to one of N worker arbiters (one per core by default), where
//! its connection actor lives for good. Connections on different arbiters meet only in the
//! shared broker core, never through a central actor.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use actix::{Arbiter, ArbiterHandle};
use anyhow::Context as _;
use bytes::Bytes;
use tokio::net::TcpListener;
use unigate_pubsub::{Message, Origin, Protocol, QoS, Topic};

use crate::broker::{Broker, Detached, KickReason, Metrics, Session};
use crate::config::{Config, ListenerConfig, ListenerProtocol};
use crate::mqtt::connection::Connection;
use crate::mqtt::protocol::ListenerSettings;

/// A listener that is bound.
#[derive(Debug, Clone)]
pub struct BoundListener {
    /// Its name.
    pub name: String,
    /// Its protocol.
    pub protocol: ListenerProtocol,
    /// The address it is bound to (with the OS-chosen port for `:0`).
    pub addr: SocketAddr,
    /// Whether it speaks TLS.
    pub tls: bool,
}

/// Options of a start.
#[derive(Debug, Clone, Default)]
pub struct StartOptions {
    /// Stop gracefully on SIGINT / SIGTERM.
    pub handle_signals: bool,
    /// The configuration file, re-read on SIGHUP (auth chains, ACL, TLS certificates).
    pub config_path: Option<std::path::PathBuf>,
}

/// A running server.
pub struct RunningServer {
    /// The bound listeners.
    pub listeners: Vec<BoundListener>,
    /// The broker core (for inspection in tests and the management API).
    pub broker: Arc<Broker>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<anyhow::Result<()>>>,
}

impl std::fmt::Debug for RunningServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningServer")
            .field("listeners", &self.listeners)
            .finish()
    }
}

impl RunningServer {
    /// The address of the listener named `name`.
    pub fn addr(&self, name: &str) -> Option<SocketAddr> {
        self.listeners.iter().find(|l| l.name == name).map(|l| l.addr)
    }

    /// Stops gracefully and waits for the server thread.
    pub fn stop(mut self) -> anyhow::Result<()> {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        self.join()
    }

    /// Waits until the server stops (on a signal, with `handle_signals`).
    pub fn wait(mut self) -> anyhow::Result<()> {
        self.join()
    }

    fn join(&mut self) -> anyhow::Result<()> {
        match self.thread.take() {
            Some(t) => t.join().map_err(|_| anyhow::anyhow!("server thread panicked"))?,
            None => Ok(()),
        }
    }
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        let _ = self.join();
    }
}

/// An MQTT listener's connection slots: its limit, its `/metrics` counts and the broker's
/// connection gauge, shared by all its connections.
pub struct ListenerSlots {
    /// `limits.max_connections`, as the counter's type (a configured `usize::MAX` saturates
    /// instead of wrapping to -1, which would refuse everyone).
    max: i64,
    counts: Arc<crate::broker::metrics::ConnectionCounts>,
    broker: Arc<Broker>,
}

impl ListenerSlots {
    /// Takes a slot for a new connection, or `None` when the listener is full.
    fn open(self: &Arc<Self>) -> Option<ConnectionGuard> {
        if self.counts.open.fetch_add(1, Ordering::Relaxed) >= self.max {
            self.counts.open.fetch_sub(1, Ordering::Relaxed);
            return None;
        }
        self.counts.accepted.fetch_add(1, Ordering::Relaxed);
        Metrics::gauge(&self.broker.metrics.connections, 1);
        Metrics::add(&self.broker.metrics.connections_total, 1);
        Some(ConnectionGuard(self.clone()))
    }
}

/// One open connection of a listener; dropping it releases the slot (8 bytes per connection).
pub struct ConnectionGuard(Arc<ListenerSlots>);

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.0.counts.open.fetch_sub(1, Ordering::Relaxed);
        Metrics::gauge(&self.0.broker.metrics.connections, -1);
    }
}

/// Starts the server on its own thread and returns once every listener is bound.
pub fn start(config: Config, host: std::net::IpAddr, opts: StartOptions) -> anyhow::Result<RunningServer> {
    let broker = Arc::new(Broker::new(config.mqtt.clone()));
    broker.set_acl(build_acl(&config)?);
    broker.set_audit(config.auth.audit);
    // The broker is rebuilt from the store before any listener opens.
    let restored = open_storage(&config.storage, &broker)?;
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel();
    let core = broker.clone();
    let thread = std::thread::Builder::new()
        .name("unigate-main".into())
        .spawn(move || run_system(config, host, core, opts, restored, ready_tx, stop_rx))
        .context("cannot start the server thread")?;
    match ready_rx.recv() {
        Ok(Ok(listeners)) => Ok(RunningServer {
            listeners,
            broker,
            stop: Some(stop_tx),
            thread: Some(thread),
        }),
        Ok(Err(e)) => {
            let _ = thread.join();
            Err(e)
        }
        Err(_) => match thread.join() {
            Ok(Err(e)) => Err(e),
            _ => Err(anyhow::anyhow!("server thread ended during start-up")),
        },
    }
}

type Ready = std::sync::mpsc::Sender<anyhow::Result<Vec<BoundListener>>>;

fn run_system(
    config: Config,
    host: std::net::IpAddr,
    broker: Arc<Broker>,
    opts: StartOptions,
    restored: Vec<(Arc<Session>, Detached)>,
    ready: Ready,
    stop: tokio::sync::oneshot::Receiver<()>,
) -> anyhow::Result<()> {
    let chains = match config.take_chains() {
        Ok(c) => c,
        Err(e) => {
            let _ = ready.send(Err(anyhow::anyhow!("{e}")));
            return Ok(());
        }
    };
    let auth_runtime = crate::auth::AuthRuntime::new().context("cannot start the auth runtime")?;
    let auth_handle = auth_runtime.handle();
    let system = actix_rt::System::new();
    let result = system.block_on(async move {
        let workers = if config.workers == 0 {
            num_cpus::get()
        } else {
            config.workers
        };
        let arbiters: Vec<Arbiter> = (0..workers).map(|_| Arbiter::new()).collect();
        let handles: Arc<[ArbiterHandle]> = arbiters.iter().map(|a| a.handle()).collect();
        // Expiry and will timers of the sessions loaded from the store (generation 0: any
        // connection resuming a session voids them, as after a normal disconnect).
        for (session, detached) in restored {
            schedule_session_timers(&broker, session, 0, detached);
        }

        let mut started = Started::default();
        let lwm2m = match crate::lwm2m::Hub::new(config.lwm2m.clone()) {
            Ok(h) => h,
            Err(e) => {
                let _ = ready.send(Err(anyhow::anyhow!("lwm2m: {e:#}")));
                return Ok(());
            }
        };
        let ctx = StartCtx {
            lwm2m: &lwm2m,
            config: &config,
            chains: &chains,
            auth_handle: &auth_handle,
            broker: &broker,
            handles: &handles,
        };
        for l in config.effective_listeners(host) {
            if let Err(e) = ctx.start(&l, &mut started) {
                let _ = ready.send(Err(anyhow::anyhow!("{e:#}")));
                return Ok(());
            }
        }
        let Started {
            bound,
            all_settings,
            http_servers,
        } = started;
        crate::http::mgmt::install(
            &broker,
            &config,
            &chains,
            &bound,
            opts.config_path
                .clone()
                .map(|p| crate::http::mgmt::reloader(p, &all_settings)),
        );
        let _ = ready.send(Ok(bound));
        if !config.sys_interval.is_zero() {
            actix_rt::spawn(sys_loop(broker.clone(), config.sys_interval));
        }
        #[cfg(unix)]
        if let (Some(path), true) = (opts.config_path.clone(), opts.handle_signals) {
            actix_rt::spawn(reload_on_sighup(path, broker.clone(), all_settings));
        }

        wait_for_stop(stop, opts.handle_signals).await;
        tracing::info!("stopping");
        broker.set_shutting_down();
        if config.publish_wills_on_shutdown {
            broker.kick_all(KickReason::Administrative);
        } else {
            broker.kick_all(KickReason::ServerShuttingDown);
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
        while broker.metrics.connections.load(Ordering::Relaxed) > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        for h in &http_servers {
            h.stop(true).await;
        }
        for a in &arbiters {
            a.stop();
        }
        if let Some(store) = broker.store() {
            // Commit what the last connections wrote (their records, acknowledgements).
            store.close();
        }
        actix_rt::System::current().stop();
        Ok::<(), anyhow::Error>(())
    });
    auth_runtime.shutdown();
    result
}

/// What starting the listeners produced.
#[derive(Default)]
struct Started {
    bound: Vec<BoundListener>,
    /// Every listener's settings (their auth chains are swapped on reload).
    all_settings: Vec<Arc<ListenerSettings>>,
    http_servers: Vec<actix_web::dev::ServerHandle>,
}

/// What every listener is started with.
struct StartCtx<'a> {
    lwm2m: &'a Arc<crate::lwm2m::Hub>,
    config: &'a Config,
    chains: &'a crate::auth::Chains,
    auth_handle: &'a tokio::runtime::Handle,
    broker: &'a Arc<Broker>,
    handles: &'a [ArbiterHandle],
}

impl StartCtx<'_> {
    /// Binds and starts one listener; errors name it.
    fn start(&self, l: &ListenerConfig, out: &mut Started) -> anyhow::Result<()> {
        let result = match l.protocol {
            ListenerProtocol::Mqtt => self.start_mqtt(l, out),
            ListenerProtocol::Coap => self.start_coap(l, out),
            ListenerProtocol::Lwm2m => self.start_lwm2m(l, out),
            ListenerProtocol::Http | ListenerProtocol::MqttWs => self.start_http(l, out),
        };
        result.with_context(|| format!("listener \"{}\" on {}", l.name, l.bind))
    }

    /// The listener's settings (its auth chain, limits, TLS for MQTT over TLS), registered for
    /// reload.
    fn settings(
        &self,
        l: &ListenerConfig,
        transport: Protocol,
        tls: Option<Arc<rustls::ServerConfig>>,
        out: &mut Started,
    ) -> anyhow::Result<Arc<ListenerSettings>> {
        let chain = self.chains.for_listener(l.auth.as_deref())?;
        if chain.allows_everyone() && !l.bind.ip().is_loopback() {
            tracing::warn!(
                listener = %l.name, bind = %l.bind,
                "listener accepts anonymous clients and is bound beyond loopback"
            );
        }
        let settings = Arc::new(ListenerSettings {
            transport,
            tls: parking_lot::RwLock::new(tls),
            name: Arc::from(l.name.as_str()),
            limits: l.limits.clone(),
            auth: crate::auth::ListenerAuth::new(
                chain,
                self.auth_handle.clone(),
                self.config.auth.timeout,
                self.config.auth.audit,
                self.broker.clone(),
            ),
            broker: self.broker.clone(),
        });
        out.all_settings.push(settings.clone());
        Ok(settings)
    }

    fn bound(l: &ListenerConfig, addr: SocketAddr, out: &mut Started) {
        out.bound.push(BoundListener {
            name: l.name.clone(),
            protocol: l.protocol,
            addr,
            tls: l.tls.is_some(),
        });
    }

    fn start_mqtt(&self, l: &ListenerConfig, out: &mut Started) -> anyhow::Result<()> {
        let (addr, sockets) = bind_per_worker(l, self.handles.len())?;
        let tls = l
            .tls
            .as_ref()
            .map(|t| crate::tls::server_config(t, &["mqtt"]))
            .transpose()?;
        let settings = self.settings(l, Protocol::Mqtt, tls, out)?;
        Self::bound(l, addr, out);
        let slots = Arc::new(ListenerSlots {
            max: i64::try_from(settings.limits.max_connections).unwrap_or(i64::MAX),
            counts: self.broker.metrics.listener(&settings.name, "mqtt"),
            broker: self.broker.clone(),
        });
        for (socket, worker) in sockets.into_iter().zip(self.handles.iter()) {
            let (settings, slots) = (settings.clone(), slots.clone());
            worker.spawn(async move {
                match TcpListener::from_std(socket) {
                    Ok(listener) => accept_loop(listener, settings, slots).await,
                    Err(e) => tracing::error!(error = %e, "cannot register listener"),
                }
            });
        }
        Ok(())
    }

    fn start_coap(&self, l: &ListenerConfig, out: &mut Started) -> anyhow::Result<()> {
        let settings = self.settings(l, Protocol::Coap, None, out)?;
        let socket = crate::coap::bind_udp(l.bind)?;
        Self::bound(l, socket.local_addr().unwrap_or(l.bind), out);
        let shared = Arc::new(crate::coap::listener::CoapShared {
            name: Arc::from(l.name.as_str()),
            config: self.config.coap.clone(),
            layer: Arc::new(self.config.coap.message_layer()),
            settings,
            limits: l.limits.clone(),
            tls: l.tls.clone(),
        });
        let broker = self.broker.clone();
        self.on_first_worker("coap", move || {
            crate::coap::listener::CoapListener::start_on(socket, shared, broker).map(drop)
        })
    }

    /// Starts a UDP listener's actor on the first worker (one actor owns the socket; every
    /// LwM2M listener there also keeps the hub's endpoint table changing on one thread).
    fn on_first_worker(
        &self,
        what: &'static str,
        start: impl FnOnce() -> Result<(), crate::tls::TlsError> + Send + 'static,
    ) -> anyhow::Result<()> {
        let worker = self.handles.first().context("no worker")?;
        let spawned = worker.spawn_fn(move || {
            if let Err(e) = start() {
                tracing::error!(error = %e, "cannot register {what} listener");
            }
        });
        anyhow::ensure!(spawned, "worker not running");
        Ok(())
    }

    fn start_lwm2m(&self, l: &ListenerConfig, out: &mut Started) -> anyhow::Result<()> {
        let settings = self.settings(l, Protocol::Lwm2m, None, out)?;
        let socket = crate::coap::bind_udp(l.bind)?;
        Self::bound(l, socket.local_addr().unwrap_or(l.bind), out);
        let shared = Arc::new(crate::lwm2m::listener::Lwm2mShared {
            name: Arc::from(l.name.as_str()),
            hub: self.lwm2m.clone(),
            layer: Arc::new(self.config.coap.message_layer()),
            settings,
            limits: l.limits.clone(),
            tls: l.tls.clone(),
        });
        let broker = self.broker.clone();
        self.on_first_worker("lwm2m", move || {
            crate::lwm2m::listener::Lwm2mListener::start_on(socket, shared, broker).map(drop)
        })
    }

    fn start_http(&self, l: &ListenerConfig, out: &mut Started) -> anyhow::Result<()> {
        let tls = l
            .tls
            .as_ref()
            .map(|t| crate::tls::server_config(t, &["h2", "http/1.1"]))
            .transpose()?;
        // The settings of its MQTT-over-WebSocket connections; the HTTP side shares their
        // auth chain, so a reload swaps both. The certificate is actix-web's.
        let mqtt = self.settings(l, Protocol::MqttWs, None, out)?;
        let socket = bind_one(l.bind)?;
        let addr = socket.local_addr().unwrap_or(l.bind);
        let shared = Arc::new(crate::http::HttpShared {
            name: Arc::from(l.name.as_str()),
            broker: self.broker.clone(),
            mqtt,
            ws_only: l.protocol == ListenerProtocol::MqttWs,
            config: self.config.http.clone(),
            limits: l.limits.clone(),
            auth_cache: Default::default(),
            replay: Default::default(),
            lwm2m: self.lwm2m.clone(),
        });
        let srv = crate::http::start(socket, shared, tls, self.handles.len())?;
        out.http_servers.push(srv.handle());
        actix_rt::spawn(srv);
        Self::bound(l, addr, out);
        Ok(())
    }
}

async fn wait_for_stop(stop: tokio::sync::oneshot::Receiver<()>, signals: bool) {
    if !signals {
        let _ = stop.await;
        return;
    }
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = stop => {}
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                tokio::select! {
                    _ = stop => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        tokio::select! {
            _ = stop => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    }
}

/// Binds one socket per worker on the listener's address with SO_REUSEPORT, so each worker
/// accepts its own connections (no hand-off between threads, no re-registration of the
/// socket). The first bind resolves port 0; the others bind that port.
fn bind_per_worker(l: &ListenerConfig, workers: usize) -> anyhow::Result<(SocketAddr, Vec<std::net::TcpListener>)> {
    let first = bind_one(l.bind)?;
    let addr = first.local_addr()?;
    let mut sockets = vec![first];
    for _ in 1..workers.max(1) {
        sockets.push(bind_one(addr)?);
    }
    Ok((addr, sockets))
}

fn bind_one(addr: SocketAddr) -> anyhow::Result<std::net::TcpListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    #[cfg(unix)]
    socket.set_reuse_port(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    // Set on the listening socket, these are inherited by every accepted one (Linux), which
    // saves syscalls per connection: no Nagle delay on small MQTT packets, and TCP keepalive to
    // reap half-open connections of clients that asked for no MQTT keep alive.
    socket.set_nodelay(true)?;
    socket.set_tcp_keepalive(
        &socket2::TcpKeepalive::new()
            .with_time(Duration::from_secs(300))
            .with_interval(Duration::from_secs(30)),
    )?;
    socket.bind(&addr.into())?;
    socket.listen(4096)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

/// Accepts connections on one worker and starts their actors right here.
async fn accept_loop(listener: TcpListener, settings: Arc<ListenerSettings>, slots: Arc<ListenerSlots>) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(listener = %settings.name, error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Some(guard) = slots.open() else {
            tracing::debug!(listener = %settings.name, %peer, "connection limit reached; closing");
            continue;
        };
        if let Err(e) = Connection::start(stream, peer, settings.clone(), guard) {
            tracing::debug!(%peer, error = %e, "connection failed at start");
        }
    }
}

/// Opens the configured store and rebuilds the broker from it (sessions, subscriptions,
/// queues, retained messages). Returns the restored sessions' timers. A store that cannot be
/// read is an error with the way out, never an empty start.
pub fn open_storage(
    config: &crate::config::StorageConfig,
    broker: &Broker,
) -> anyhow::Result<Vec<(Arc<Session>, Detached)>> {
    use crate::config::StorageKind;
    use crate::storage::redb_store::{RedbOptions, RedbStore};
    use crate::storage::{writer::BatchSettings, Persister, Store, StoreError};
    if config.kind.unwrap_or(StorageKind::Memory) == StorageKind::Memory {
        return Ok(Vec::new());
    }
    let started = std::time::Instant::now();
    let explain = |e: StoreError| {
        let file = config.path.join(crate::storage::redb_store::FILE_NAME);
        match e {
            StoreError::Corrupt { .. } => anyhow::anyhow!(
                "storage: {e}. Nothing was started. Check it with `unigate store inspect --path {dir}`; \
                 to start with an empty store, move the file aside (`mv {f} {f}.broken`) and start again",
                dir = config.path.display(),
                f = file.display()
            ),
            StoreError::Locked { .. } => {
                anyhow::anyhow!("storage: {e}: another unigate (or `unigate store`) is using it")
            }
            other => anyhow::anyhow!("storage: {other}"),
        }
    };
    let mut store = RedbStore::open(
        &config.path,
        &RedbOptions {
            fsync: config.fsync,
            cache_size: config.cache_size,
        },
    )
    .map_err(explain)?;
    let snap = store.load().map_err(explain)?;
    let (sessions, retained) = (snap.sessions.len(), snap.retained.len());
    let file = store.path().to_path_buf();
    let persister = Persister::start(
        Box::new(store) as Box<dyn Store>,
        BatchSettings {
            window: config.commit_window,
            max_batch: config.max_batch.max(1),
        },
        Some(file.clone()),
    )
    .map_err(explain)?;
    broker.set_store(persister);
    let timers = broker.restore(snap);
    if let Some(store) = broker.store() {
        store.flush().map_err(explain)?;
    }
    tracing::info!(
        path = %file.display(),
        sessions,
        retained,
        fsync = config.fsync,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "storage: loaded"
    );
    if !config.fsync {
        tracing::warn!("storage: fsync = false: a crash may lose about the last second of acknowledged messages");
    }
    Ok(timers)
}

/// Schedules the session-expiry and will-delay timers a detach asked for.
pub fn schedule_session_timers(broker: &Arc<Broker>, session: Arc<Session>, generation: u64, d: Detached) {
    if let Some(after) = d.will_after {
        let (b, s) = (broker.clone(), session.clone());
        actix_rt::spawn(async move {
            sleep_long(after).await;
            b.fire_will(&s, generation);
        });
    }
    if let Some(after) = d.expire_after {
        let b = broker.clone();
        actix_rt::spawn(async move {
            sleep_long(after).await;
            b.expire_session(&session, generation);
        });
    }
}

/// Sleeps for durations longer than the timer wheel supports, in steps.
async fn sleep_long(mut d: Duration) {
    const STEP: Duration = Duration::from_secs(86_400 * 30);
    while d > STEP {
        tokio::time::sleep(STEP).await;
        d -= STEP;
    }
    tokio::time::sleep(d).await;
}

async fn sys_loop(broker: Arc<Broker>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        broker.purge_expired_retained();
        publish_sys(&broker);
    }
}

/// Publishes the `$SYS/broker/…` statistics as retained messages (Mosquitto's names, so
/// existing dashboards work).
pub fn publish_sys(broker: &Broker) {
    let m = &broker.metrics;
    let sum = |a: &[std::sync::atomic::AtomicU64; 3]| a.iter().map(Metrics::read).sum::<u64>();
    let mut stats: Vec<(&str, String)> = vec![
        ("$SYS/broker/version", format!("unigate {}", env!("CARGO_PKG_VERSION"))),
        ("$SYS/broker/uptime", format!("{} seconds", broker.uptime().as_secs())),
        (
            "$SYS/broker/clients/connected",
            m.connections.load(Ordering::Relaxed).to_string(),
        ),
        ("$SYS/broker/clients/total", broker.session_count().to_string()),
        (
            "$SYS/broker/connections/total",
            Metrics::read(&m.connections_total).to_string(),
        ),
        ("$SYS/broker/messages/received", sum(&m.messages_received).to_string()),
        ("$SYS/broker/messages/sent", sum(&m.messages_sent).to_string()),
        (
            "$SYS/broker/messages/dropped",
            (Metrics::read(&m.dropped_queue_full)
                + Metrics::read(&m.dropped_offline_qos0)
                + Metrics::read(&m.dropped_expired)
                + Metrics::read(&m.dropped_too_large))
            .to_string(),
        ),
        (
            "$SYS/broker/subscriptions/count",
            m.subscriptions.load(Ordering::Relaxed).to_string(),
        ),
        (
            "$SYS/broker/retained messages/count",
            m.retained.load(Ordering::Relaxed).to_string(),
        ),
        (
            "$SYS/broker/bytes/received",
            Metrics::read(&m.bytes_received).to_string(),
        ),
        ("$SYS/broker/bytes/sent", Metrics::read(&m.bytes_sent).to_string()),
        (
            "$SYS/broker/wills/published",
            Metrics::read(&m.wills_published).to_string(),
        ),
        (
            "$SYS/broker/protocol_errors",
            Metrics::read(&m.protocol_errors).to_string(),
        ),
    ];
    if let Some(store) = broker.store() {
        stats.extend([
            ("$SYS/broker/store/bytes", store.file_bytes().to_string()),
            (
                "$SYS/broker/store/commits",
                store.metrics.commits.load(Ordering::Relaxed).to_string(),
            ),
        ]);
    }
    stats.extend([
        ("$SYS/broker/coap/requests", Metrics::read(&m.coap_requests).to_string()),
        (
            "$SYS/broker/coap/clients",
            m.coap_clients.load(Ordering::Relaxed).to_string(),
        ),
        (
            "$SYS/broker/coap/peers",
            m.coap_peers.load(Ordering::Relaxed).to_string(),
        ),
        (
            "$SYS/broker/coap/observations",
            m.coap_observations.load(Ordering::Relaxed).to_string(),
        ),
        (
            "$SYS/broker/coap/observations/cancelled/deregister",
            Metrics::read(&m.coap_observe_cancelled[0]).to_string(),
        ),
        (
            "$SYS/broker/coap/observations/cancelled/reset",
            Metrics::read(&m.coap_observe_cancelled[1]).to_string(),
        ),
        (
            "$SYS/broker/coap/observations/cancelled/timeout",
            Metrics::read(&m.coap_observe_cancelled[2]).to_string(),
        ),
    ]);
    for (authenticator, result, n) in m.auth_counts() {
        if let Ok(topic) = Topic::new(&format!("$SYS/broker/auth/{authenticator}/{result}")) {
            let mut msg = Message::new(topic, Bytes::from(n.to_string()));
            msg.retain = true;
            msg.origin = Origin {
                protocol: Some(Protocol::System),
                ..Origin::default()
            };
            broker.publish(msg);
        }
    }
    for (topic, value) in stats {
        let Ok(topic) = Topic::new(topic) else {
            continue;
        };
        let mut msg = Message::new(topic, Bytes::from(value));
        msg.retain = true;
        msg.qos = QoS::AtMostOnce;
        msg.origin = Origin {
            protocol: Some(Protocol::System),
            ..Origin::default()
        };
        broker.publish(msg);
    }
}

fn build_acl(config: &Config) -> anyhow::Result<Option<Arc<unigate_auth::acl::Acl>>> {
    match &config.acl {
        Some(acl) => Ok(Some(Arc::new(
            unigate_auth::acl::Acl::from_config(acl).map_err(|e| anyhow::anyhow!("acl: {e}"))?,
        ))),
        None => Ok(None),
    }
}

/// Re-reads the configuration on every SIGHUP and swaps in its auth chains, ACL and TLS
/// certificates. A file that does not load changes nothing (the error is logged). Listener
/// addresses and limits need a restart.
#[cfg(unix)]
async fn reload_on_sighup(path: std::path::PathBuf, broker: Arc<Broker>, listeners: Vec<Arc<ListenerSettings>>) {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        tracing::warn!("cannot listen for SIGHUP; reload disabled");
        return;
    };
    while hup.recv().await.is_some() {
        match reload(&path, &broker, &listeners) {
            Ok(()) => {
                tracing::info!(file = %path.display(), "configuration reloaded");
                println!("unigate: configuration reloaded from {}", path.display());
            }
            Err(e) => {
                tracing::error!(file = %path.display(), "reload failed, keeping the running configuration: {e:#}");
                println!("unigate: reload failed, keeping the running configuration: {e:#}");
            }
        }
    }
}

/// Applies the auth chains, ACL, audit switch and TLS material of the file at `path`.
pub fn reload(path: &std::path::Path, broker: &Broker, listeners: &[Arc<ListenerSettings>]) -> anyhow::Result<()> {
    let config = Config::load(path, std::env::vars())?;
    let chains = config.take_chains()?;
    let acl = build_acl(&config)?;
    // Build everything first, then swap, so that a bad file changes nothing.
    let mut updates = Vec::new();
    for settings in listeners {
        let Some(l) = config.listeners.iter().find(|l| *l.name == *settings.name) else {
            tracing::warn!(listener = %settings.name, "listener missing from the reloaded file; kept as it was");
            continue;
        };
        let chain = chains.for_listener(l.auth.as_deref())?;
        if matches!(settings.transport, Protocol::MqttWs | Protocol::Coap | Protocol::Lwm2m) {
            // HTTP, MQTT-over-WebSocket and CoAP listeners: the chain is swapped; their
            // certificates (actix-web's, DTLS') need a restart.
            updates.push((settings, chain, None, false));
            continue;
        }
        let tls = match &l.tls {
            Some(t) => Some(
                crate::tls::server_config(t, &["mqtt"]).map_err(|e| anyhow::anyhow!("listener \"{}\": {e}", l.name))?,
            ),
            None => None,
        };
        if tls.is_some() != settings.tls.read().is_some() {
            anyhow::bail!("listener \"{}\": turning TLS on or off needs a restart", l.name);
        }
        updates.push((settings, chain, tls, true));
    }
    for (settings, chain, tls, swap_tls) in updates {
        settings.auth.set_chain(chain);
        if swap_tls {
            *settings.tls.write() = tls;
        }
    }
    broker.set_acl(acl);
    broker.set_audit(config.auth.audit);
    crate::http::mgmt::configure(broker, &config, &chains);
    Ok(())
}
