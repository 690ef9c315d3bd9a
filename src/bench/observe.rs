//! `coap-observers`: many CoAP observers, then MQTT messages fanned out to them.
//!
//! 1. One MQTT publisher per topic connects (before the memory reading, so that what is
//!    measured is the observers alone).
//! 2. With `--server-pid`, the server's VmRSS is read; then every observer, a UDP socket with
//!    its own port, registers `GET /ps/obs/<run>/<i % topics>` with Observe 0 (RFC 7641 §3.1),
//!    `--concurrency` at a time, NON or (`--con`) CON, sent again after `--timeout` (doubling)
//!    up to 4 times. Registration rate and latency are reported; 1 s after the last one the
//!    server's VmRSS is read again: the difference over the observers is what one costs.
//! 3. The publishers send `--messages` messages (bench payloads: topic index, sequence number,
//!    send time) at `--rate`; every observer of a topic should get each of its messages as a
//!    notification. CON notifications are acknowledged (Empty ACK). Counted per observer:
//!    distinct, duplicated, missing; the latency is MQTT publish → notification received.
//! 4. Unless `--keep`, every observer deregisters (`GET` with Observe 1), so that the server
//!    does not keep 10⁴ sessions after the run; the server's VmRSS is read once more.

use std::cell::RefCell;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant as StdInstant};

use anyhow::bail;
use tokio::net::UdpSocket;
use tokio::sync::{watch, Semaphore};
use tokio::time::Instant;
use unigate_coap::coap_lite::RequestType;

use super::client::{Conn, SessionSpec, Target, BUSY_READ};
use super::coap::local_for;
use super::coap_wire::{empty_ack, parse, RequestSpec, Template, ACK, CON};
use super::payload::{self, Stamp, HEADER_LEN};
use super::procfs::{cpu_percent, cpu_secs, rss_kb, udp_rcvbuf_errors};
use super::publisher::{self, PubOutcome, PubPlan};
use super::report::{latency_line, per_sec, Failures, Json};
use super::runtime;
use super::stats::{Acked, Bitset, Histogram};
use super::{qos_of, run_tag, seconds, CoapObserversArgs};

/// How long the server's memory may settle before it is read.
const SETTLE: Duration = Duration::from_secs(1);
/// Longest wait for every registration, or for the publishers to connect.
const SETUP_TIMEOUT: Duration = Duration::from_secs(300);
/// After publishing, stop waiting once no notification arrived for this long.
const QUIET: Duration = Duration::from_secs(2);
/// Transmissions of a registration or deregistration after the first, at most.
const MAX_RETRANSMIT: u32 = 4;
/// Datagrams read per wake-up of an observer.
const READS_PER_WAKE: usize = 16;
/// Token bit that marks a deregistration, so that its answer cannot be taken for a
/// notification of the observation (which carries the registration's token).
const DEREGISTER: u64 = 1 << 63;

/// What every observer of the run shares, across threads.
#[derive(Default)]
struct Shared {
    registered: AtomicU64,
    failures: Failures,
    last_registered_ns: AtomicU64,
    /// Distinct notifications received.
    progress: AtomicU64,
    /// Registered observers per topic.
    per_topic: Vec<AtomicU64>,
}

/// What one observer saw.
#[derive(Debug, Default)]
struct ObsOutcome {
    index: u32,
    registered: bool,
    /// Sequence numbers of its topic's messages received.
    seen: Bitset,
    received: u64,
    duplicated: u64,
    /// The server ended the observation with an error code or a RST.
    cancelled: bool,
    stray: u64,
    last_rx_ns: u64,
}

/// What the observers of one thread share.
struct ThreadCtx {
    server: SocketAddr,
    confirmable: bool,
    timeout: Duration,
    topics: u32,
    keep: bool,
    recv_size: usize,
    register: Vec<Template>,
    deregister: Vec<Template>,
    gate: Semaphore,
    notify_latency: RefCell<Histogram>,
    register_latency: RefCell<Histogram>,
    shared: Arc<Shared>,
    stop: watch::Receiver<bool>,
}

/// Sends the request `template` with token `token` and waits for its answer (matched by
/// token; an Empty ACK stops the retransmissions); the answer's code. CON requests are sent
/// again with the same message id, NON ones with a new one.
async fn exchange(
    sock: &UdpSocket,
    template: &Template,
    token: u64,
    ctx: &ThreadCtx,
    buf: &mut [u8],
) -> Result<u8, String> {
    let mut out = Vec::new();
    let mut mid: u16 = rand::random();
    let no_stamp = Stamp {
        publisher: 0,
        seq: 0,
        sent_ns: 0,
    };
    template.write(&mut out, mid, token, no_stamp);
    let mut attempts = 0;
    let mut deadline = Instant::now() + ctx.timeout;
    loop {
        // Not `try_send`: on a socket the runtime has not yet seen writable it fails with
        // WouldBlock without trying, which would cost the first registration a timeout.
        if let Err(e) = sock.send(&out).await {
            return Err(format!("sending to {}: {e}", ctx.server));
        }
        loop {
            tokio::select! {
                ready = sock.readable() => {
                    ready.map_err(|e| e.to_string())?;
                    for _ in 0..READS_PER_WAKE {
                        let n = match sock.try_recv(buf) {
                            Ok(n) => n,
                            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                            Err(e) => return Err(format!("receiving from {}: {e}", ctx.server)),
                        };
                        let Some(head) = parse(buf.get(..n).unwrap_or_default()) else { continue };
                        if head.ty == CON {
                            let _ = sock.try_send(&empty_ack(head.mid));
                        }
                        if head.ty == ACK && head.code == 0 && head.mid == mid {
                            attempts = MAX_RETRANSMIT;
                            deadline = Instant::now() + ctx.timeout * 8;
                        } else if head.token_u64() == Some(token) {
                            return Ok(head.code);
                        }
                    }
                }
                () = tokio::time::sleep_until(deadline) => break,
            }
        }
        if attempts >= MAX_RETRANSMIT {
            return Err(format!(
                "no answer from {} after {} transmissions",
                ctx.server,
                attempts + 1
            ));
        }
        attempts += 1;
        deadline = Instant::now() + ctx.timeout * (1 << attempts);
        if !ctx.confirmable {
            mid = mid.wrapping_add(1);
            template.write(&mut out, mid, token, no_stamp);
        }
    }
}

/// One observer: registers, counts notifications until the run stops, deregisters.
async fn observer(index: u32, sock: UdpSocket, ctx: Rc<ThreadCtx>) -> ObsOutcome {
    let mut out = ObsOutcome {
        index,
        ..ObsOutcome::default()
    };
    let topic = (index % ctx.topics) as usize;
    let mut buf = vec![0u8; ctx.recv_size];
    let token = u64::from(index);
    {
        let Ok(_permit) = ctx.gate.acquire().await else {
            return out;
        };
        let Some(template) = ctx.register.get(topic) else {
            return out;
        };
        let started = super::clock::now_ns();
        match exchange(&sock, template, token, &ctx, &mut buf).await {
            Ok(0x45) => {
                let now = super::clock::now_ns();
                ctx.register_latency.borrow_mut().record(now.saturating_sub(started));
                ctx.shared.last_registered_ns.fetch_max(now, Ordering::Relaxed);
                if let Some(n) = ctx.shared.per_topic.get(topic) {
                    n.fetch_add(1, Ordering::Relaxed);
                }
                ctx.shared.registered.fetch_add(1, Ordering::Relaxed);
                out.registered = true;
            }
            Ok(code) => ctx
                .shared
                .failures
                .record(format!("registration answered {}.{:02}", code >> 5, code & 0x1F)),
            Err(e) => ctx.shared.failures.record(e),
        }
    }
    if !out.registered {
        return out;
    }
    let mut stop = ctx.stop.clone();
    loop {
        if *stop.borrow_and_update() {
            break;
        }
        tokio::select! {
            changed = stop.changed() => {
                if changed.is_err() {
                    break;
                }
            }
            ready = sock.readable() => {
                if ready.is_err() {
                    break;
                }
                receive(&sock, token, &mut buf, &mut out, &ctx);
            }
        }
    }
    if !ctx.keep && !out.cancelled {
        let _permit = ctx.gate.acquire().await;
        if let Some(template) = ctx.deregister.get(topic) {
            let _ = exchange(&sock, template, token | DEREGISTER, &ctx, &mut buf).await;
        }
    }
    out
}

/// Reads the notifications waiting on `sock`.
fn receive(sock: &UdpSocket, token: u64, buf: &mut [u8], out: &mut ObsOutcome, ctx: &ThreadCtx) {
    let mut fresh = 0;
    for _ in 0..READS_PER_WAKE {
        let n = match sock.try_recv(buf) {
            Ok(n) => n,
            Err(_) => break,
        };
        let now_ns = super::clock::now_ns();
        let Some(head) = parse(buf.get(..n).unwrap_or_default()) else {
            out.stray += 1;
            continue;
        };
        if head.ty == CON {
            // RFC 7641 §4.5: acknowledging a CON notification keeps the observation alive.
            let _ = sock.try_send(&empty_ack(head.mid));
        }
        if head.token_u64() != Some(token) {
            out.stray += 1;
            continue;
        }
        if !head.is_success() || head.ty == super::coap_wire::RST {
            out.cancelled = true;
            continue;
        }
        let Some(stamp) = payload::read(head.payload) else {
            out.stray += 1;
            continue;
        };
        out.received += 1;
        out.last_rx_ns = now_ns;
        if out.seen.insert(stamp.seq) {
            fresh += 1;
            ctx.notify_latency
                .borrow_mut()
                .record(now_ns.saturating_sub(stamp.sent_ns));
        } else {
            out.duplicated += 1;
        }
    }
    if fresh > 0 {
        ctx.shared.progress.fetch_add(fresh, Ordering::Relaxed);
    }
}

/// One thread of observers: binds their sockets, runs them, returns what they saw and the
/// thread's histograms.
async fn observer_thread(ids: Vec<u32>, ctx: ThreadCtx) -> anyhow::Result<(Vec<ObsOutcome>, Histogram, Histogram)> {
    let ctx = Rc::new(ctx);
    let mut tasks = Vec::with_capacity(ids.len());
    for i in ids {
        let bound = async {
            let sock = UdpSocket::bind(local_for(ctx.server)).await?;
            sock.connect(ctx.server).await?;
            io::Result::Ok(sock)
        };
        match bound.await {
            Ok(sock) => tasks.push(tokio::task::spawn_local(observer(i, sock, ctx.clone()))),
            Err(e) => {
                let hint = if e.raw_os_error() == Some(24) {
                    " (raise `ulimit -n`)"
                } else {
                    ""
                };
                ctx.shared.failures.record(format!("opening a UDP socket: {e}{hint}"));
            }
        }
    }
    let mut outcomes = Vec::with_capacity(tasks.len());
    for t in tasks {
        outcomes.push(t.await?);
    }
    let notify = ctx.notify_latency.borrow().clone();
    let register = ctx.register_latency.borrow().clone();
    Ok((outcomes, notify, register))
}

/// The MQTT side: one publisher per topic on one thread. Reports ready once all are
/// connected, publishes on "go", returns their outcomes.
async fn publisher_thread(
    plans: Vec<(SessionSpec, PubPlan)>,
    server: Target,
    version: unigate_mqtt::ProtocolVersion,
    ready: mpsc::Sender<Result<(), String>>,
    go: watch::Receiver<Option<u64>>,
) -> anyhow::Result<Vec<PubOutcome>> {
    let mut conns = Vec::with_capacity(plans.len());
    for (session, plan) in plans {
        match Conn::connect(&server, version, &session, BUSY_READ).await {
            Ok(conn) => conns.push((conn, plan)),
            Err(e) => {
                let why = format!("MQTT publisher: {e:#}");
                let _ = ready.send(Err(why.clone()));
                bail!(why);
            }
        }
    }
    let _ = ready.send(Ok(()));
    let mut go = go;
    let Some(go_ns) = go.wait_for(Option::is_some).await.ok().and_then(|at| *at) else {
        return Ok(Vec::new());
    };
    let tasks: Vec<_> = conns
        .into_iter()
        .map(|(conn, plan)| {
            tokio::task::spawn_local(async move {
                let (conn, outcome) = publisher::run(conn, plan, go_ns).await;
                if outcome.error.is_none() {
                    conn.disconnect().await;
                }
                outcome
            })
        })
        .collect();
    let mut outcomes = Vec::with_capacity(tasks.len());
    for t in tasks {
        outcomes.push(t.await?);
    }
    Ok(outcomes)
}

/// Runs the scenario and prints its report.
pub(crate) fn run(a: CoapObserversArgs) -> anyhow::Result<()> {
    let server = super::resolve(&a.coap.coap)?;
    let mqtt = a.common.target()?;
    let timeout = seconds("timeout", a.timeout)?;
    let drain = seconds("drain", a.drain)?;
    if a.size < HEADER_LEN {
        bail!("--size must be at least {HEADER_LEN} bytes (the bench header)");
    }
    if !(a.rate >= 0.0 && a.rate.is_finite()) || timeout.is_zero() {
        bail!("--rate must be 0 (unlimited) or positive, and --timeout more than 0");
    }
    let qos = qos_of(a.qos.unwrap_or(if a.con { 1 } else { 0 }))?;
    let tag = run_tag();
    let topics = a.topics;
    let uri = |k: u32| format!("ps/obs/{tag}/{k}");
    let templates = |observe: u32| {
        (0..topics)
            .map(|k| {
                Template::new(&RequestSpec {
                    confirmable: a.con,
                    method: RequestType::Get,
                    uri: &uri(k),
                    observe: Some(observe),
                    size: 0,
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()
    };
    let (register, deregister) = (templates(0)?, templates(1)?);

    // 1. Publishers.
    let pubs: Vec<(SessionSpec, PubPlan)> = (0..topics)
        .map(|k| {
            let count = a.messages / u64::from(topics) + u64::from(u64::from(k) < a.messages % u64::from(topics));
            (
                SessionSpec {
                    client_id: format!("ub-{tag}-obs-pub-{k}"),
                    clean_start: true,
                    session_expiry: 0,
                    keep_alive: 60,
                },
                PubPlan {
                    index: k,
                    topic: format!("obs/{tag}/{k}"),
                    qos,
                    size: a.size,
                    rate: a.rate / f64::from(topics),
                    phase: f64::from(k) / f64::from(topics),
                    count: Some(count),
                    duration: None,
                    inflight: 32,
                    drain,
                },
            )
        })
        .collect();
    let (ready_tx, ready_rx) = mpsc::channel();
    let (go_tx, go_rx) = watch::channel(None);
    let version = a.common.mqtt_version;
    let pub_handle = runtime::spawn("bench-obs-pub".into(), move || {
        publisher_thread(pubs, mqtt, version, ready_tx, go_rx)
    })?;
    match ready_rx.recv_timeout(SETUP_TIMEOUT) {
        Ok(Ok(())) => {}
        Ok(Err(why)) => {
            let _ = runtime::join(pub_handle);
            bail!(why);
        }
        Err(_) => bail!("the MQTT publishers did not connect within {SETUP_TIMEOUT:?}"),
    }

    // 2. Registrations.
    let rss = |pid: Option<u32>| pid.map(rss_kb).transpose();
    let rss_before = rss(a.coap.server_pid)?;
    let drops_before = udp_rcvbuf_errors();
    let shared = Arc::new(Shared {
        per_topic: (0..topics).map(|_| AtomicU64::new(0)).collect(),
        ..Shared::default()
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    let threads = u32::from(a.common.threads).saturating_sub(1).max(1);
    let gate = (a.concurrency / threads).max(1) as usize;
    let reg_start = super::clock::now_ns();
    let mut handles = Vec::new();
    for t in 0..threads {
        let ids: Vec<u32> = (t..a.observers).step_by(threads as usize).collect();
        let ctx_parts = (register.clone(), deregister.clone(), shared.clone(), stop_rx.clone());
        let (confirmable, keep, recv_size) = (a.con, a.keep, a.size + 512);
        handles.push(runtime::spawn(format!("bench-obs-{t}"), move || {
            let (register, deregister, shared, stop) = ctx_parts;
            observer_thread(
                ids,
                ThreadCtx {
                    server,
                    confirmable,
                    timeout,
                    topics,
                    keep,
                    recv_size,
                    register,
                    deregister,
                    gate: Semaphore::new(gate),
                    notify_latency: RefCell::new(Histogram::default()),
                    register_latency: RefCell::new(Histogram::default()),
                    shared,
                    stop,
                },
            )
        })?);
    }
    let n = u64::from(a.observers);
    let deadline = StdInstant::now() + SETUP_TIMEOUT;
    while shared.registered.load(Ordering::Relaxed) + shared.failures.count() < n && StdInstant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    let registered = shared.registered.load(Ordering::Relaxed);
    let reg_secs = super::clock::secs_between(reg_start, shared.last_registered_ns.load(Ordering::Relaxed));
    std::thread::sleep(SETTLE);
    let rss_registered = rss(a.coap.server_pid)?;

    // 3. Notifications.
    let cpu_before = (
        cpu_secs(None).ok(),
        a.coap.server_pid.and_then(|p| cpu_secs(Some(p)).ok()),
    );
    let go_ns = super::clock::now_ns();
    let _ = go_tx.send(Some(go_ns));
    let mut pub_outcomes = runtime::join(pub_handle)?;
    pub_outcomes.sort_by_key(|p| p.index);
    let published: u64 = pub_outcomes.iter().map(|p| p.sent).sum();
    let last_publish_ns = pub_outcomes.iter().map(|p| p.last_send_ns).max().unwrap_or(go_ns);
    let expected: u64 = pub_outcomes
        .iter()
        .zip(&shared.per_topic)
        .map(|(p, n)| p.acked_count * n.load(Ordering::Relaxed))
        .sum();
    let drain_end = StdInstant::now() + drain;
    let mut last = shared.progress.load(Ordering::Relaxed);
    let mut last_change = StdInstant::now();
    loop {
        let now = StdInstant::now();
        let got = shared.progress.load(Ordering::Relaxed);
        if got >= expected || now >= drain_end {
            break;
        }
        if got != last {
            last = got;
            last_change = now;
        } else if now.duration_since(last_change) >= QUIET {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let notify_secs = super::clock::secs_between(go_ns, super::clock::now_ns());
    let bench_cpu = cpu_percent(cpu_before.0, cpu_secs(None).ok(), notify_secs);
    let server_cpu = cpu_percent(
        cpu_before.1,
        a.coap.server_pid.and_then(|p| cpu_secs(Some(p)).ok()),
        notify_secs,
    );
    let rss_notified = rss(a.coap.server_pid)?;
    let rcvbuf_drops = match (drops_before, udp_rcvbuf_errors()) {
        (Some(b), Some(a)) => Some(a.saturating_sub(b)),
        _ => None,
    };

    // 4. Deregistration.
    let _ = stop_tx.send(true);
    let mut observers = Vec::new();
    let mut notify_latency = Histogram::default();
    let mut register_latency = Histogram::default();
    for h in handles {
        let (o, nl, rl) = runtime::join(h)?;
        observers.extend(o);
        notify_latency.merge(&nl);
        register_latency.merge(&rl);
    }
    let rss_end = if a.keep {
        None
    } else {
        std::thread::sleep(SETTLE);
        rss(a.coap.server_pid)?
    };

    // Report.
    let acked: Vec<Acked> = pub_outcomes.iter().map(|p| p.acked.clone()).collect();
    let (mut received, mut unique, mut duplicated, mut lost, mut cancelled, mut last_rx) = (0, 0, 0, 0, 0, go_ns);
    for o in observers.iter().filter(|o| o.registered) {
        received += o.received;
        duplicated += o.duplicated;
        unique += o.received - o.duplicated;
        cancelled += u64::from(o.cancelled);
        last_rx = last_rx.max(o.last_rx_ns);
        lost += match acked.get((o.index % topics) as usize) {
            Some(Acked::AllBelow(n)) => o.seen.missing_below(*n),
            Some(Acked::Set(set)) => o.seen.missing_from(set),
            None => 0,
        };
    }
    let stray: u64 = observers.iter().map(|o| o.stray).sum();
    let failed = shared.failures.count();
    let regs_per_s = per_sec(registered, reg_secs);
    let notify_per_s = per_sec(received, super::clock::secs_between(go_ns, last_rx));
    let publish_secs = super::clock::secs_between(go_ns, last_publish_ns);
    let kind = if a.con { "CON" } else { "NON" };
    println!(
        "coap-observers: {} observers ({kind}) over {topics} topics, {} MQTT messages at QoS {} ({}), {}-byte payloads, \
         server {} (MQTT {})",
        a.observers,
        a.messages,
        qos as u8,
        if a.rate > 0.0 { format!("{} msgs/s", a.rate) } else { "unlimited".to_owned() },
        a.size,
        a.coap.coap,
        a.common.addr
    );
    println!(
        "  registered {registered} in {reg_secs:.2} s ({regs_per_s:.0}/s); failed {failed}; {} at a time",
        a.concurrency
    );
    println!("  2.05       {}", latency_line(&register_latency));
    let per_observer = match (rss_before, rss_registered) {
        (Some(before), Some(after)) if registered > 0 => {
            let bytes = after.saturating_sub(before) as f64 * 1024.0 / registered as f64;
            println!("  memory     server RSS {before} kB → {after} kB registered: {bytes:.0} bytes per observer");
            Some(bytes)
        }
        _ => None,
    };
    if let (Some(notified), Some(end)) = (rss_notified, rss_end) {
        println!("             {notified} kB after the notifications, {end} kB after deregistering");
    }
    println!(
        "  published  {published} in {publish_secs:.2} s; expected {expected} notifications ({} per message on average)",
        expected / published.max(1)
    );
    let loss_pct = 100.0 * lost as f64 / expected.max(1) as f64;
    println!(
        "  notified   {received} ({unique} distinct) at {notify_per_s:.0}/s; lost {lost} ({loss_pct:.2} %), duplicated \
         {duplicated}, observations ended by the server {cancelled}, stray datagrams {stray}"
    );
    println!("  latency    {}", latency_line(&notify_latency));
    let pct = |v: Option<f64>| v.map_or("n/a".to_owned(), |v| format!("{v:.0} %"));
    println!(
        "  CPU        bench {} of one core, server {} (over the {notify_secs:.2} s of notifications)",
        pct(bench_cpu),
        pct(server_cpu)
    );
    if let Some(drops) = rcvbuf_drops {
        println!("  UDP        {drops} datagrams dropped on full socket receive buffers (host-wide RcvbufErrors)");
    }
    let first_error = shared.failures.first();
    if let Some(e) = &first_error {
        println!("  error      first of {failed}: {e}");
    }
    let us = |ns: u64| ns as f64 / 1e3;
    let opt_int = |j: Json, key: &str, v: Option<u64>| match v {
        Some(v) => j.int(key, v),
        None => j.null(key),
    };
    let json = Json::default()
        .str("scenario", "coap-observers")
        .str("coap_addr", &a.coap.coap)
        .str("type", kind)
        .int("observers", n)
        .int("topics", u64::from(topics))
        .int("registered", registered)
        .int("failed", failed)
        .num("register_s", reg_secs)
        .num("registrations_per_s", regs_per_s)
        .opt_num("register_p50_us", register_latency.quantile(0.5).map(us))
        .opt_num("register_p99_us", register_latency.quantile(0.99).map(us));
    let json = opt_int(json, "rss_before_kb", rss_before);
    let json = opt_int(json, "rss_registered_kb", rss_registered);
    let json = opt_int(json, "rss_notified_kb", rss_notified);
    let json = opt_int(json, "rss_end_kb", rss_end);
    let json = json
        .opt_num("rss_per_observer_bytes", per_observer)
        .int("qos", qos as u64)
        .int("published", published)
        .int("expected", expected)
        .int("received", received)
        .int("lost", lost)
        .num("loss_pct", loss_pct)
        .int("duplicated", duplicated)
        .int("cancelled", cancelled)
        .num("notifications_per_s", notify_per_s)
        .latency(&notify_latency)
        .opt_num("bench_cpu_pct", bench_cpu)
        .opt_num("server_cpu_pct", server_cpu)
        .opt_num("rcvbuf_drops", rcvbuf_drops.map(|d| d as f64))
        .int("errors", failed);
    println!("{}", json.finish());
    Ok(())
}
