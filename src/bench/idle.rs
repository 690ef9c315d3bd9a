//! `idle` (alias `connect-rate`): open many connections that CONNECT and then only keep
//! alive. Reports how fast the server accepted them (CONNACKs per second, and the connect
//! latency: TCP connect, the TLS handshake with `--tls`, CONNECT → CONNACK) and, given the
//! server's PID, its resident memory before and after: the memory an idle connection costs.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{watch, Semaphore};
use unigate_mqtt::{Packet, ProtocolVersion};

use super::client::{Conn, Fill, SessionSpec, Target, IDLE_READ};
use super::clock;
use super::procfs::{cpu_secs, machine_cpu, rss_kb, MachineCpu};
use super::report::{latency_line, per_sec, Failures, Json};
use super::runtime;
use super::stats::Histogram;
use super::{run_tag, seconds, IdleArgs};

/// How long the server's memory may settle after the last CONNACK before it is read.
const SETTLE: Duration = Duration::from_secs(1);
/// Longest wait for all connections to be made or refused.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(300);

/// Counters every connection task updates.
#[derive(Default)]
struct Shared {
    connected: AtomicU64,
    failures: Failures,
    closed_by_server: AtomicU64,
    last_connack_ns: AtomicU64,
}

#[derive(Clone)]
struct Task {
    target: Target,
    version: ProtocolVersion,
    keep_alive: u16,
    credentials: Option<Arc<(Option<String>, Option<bytes::Bytes>)>>,
    /// `{i}` in the user name or password: each connection gets its own account.
    per_connection: Option<Arc<(Option<String>, Option<String>)>>,
    shared: Arc<Shared>,
    stop: watch::Receiver<bool>,
}

/// What an idle run measured.
#[derive(Debug, Clone)]
pub(crate) struct IdleOutcome {
    /// Connections that got a successful CONNACK.
    pub connected: u64,
    /// Connections that failed to connect.
    pub failed: u64,
    /// Connections the server closed while they were idle.
    pub closed: u64,
    /// Seconds from the first CONNECT to the last CONNACK.
    pub connect_secs: f64,
    /// Connect latency (TCP connect, TLS handshake, CONNECT → CONNACK), ns.
    pub latency: Histogram,
    /// The server's VmRSS before the first connection, kB.
    pub rss_before: Option<u64>,
    /// The server's VmRSS with every connection open, kB.
    pub rss_after: Option<u64>,
    /// CPU seconds the bench and the server (with its PID) spent while the connections were
    /// being made: what a connection costs each side, TLS handshakes included.
    pub cpu_secs: (Option<f64>, Option<f64>),
    /// The whole machine's CPU time over the same span: with the softirq time of the TCP
    /// stack that no process is charged for, and whether the CPUs were saturated.
    pub machine: Option<MachineCpu>,
    /// Local addresses the connections came from (0: the kernel picked).
    pub sources: usize,
    /// The first connection error.
    pub first_error: Option<String>,
}

/// Opens the connections, holds them, closes them.
pub(crate) fn measure(a: &IdleArgs) -> anyhow::Result<IdleOutcome> {
    let target = a.common.target()?;
    let sources = target.sources.len();
    let hold = seconds("hold", a.hold)?;
    let tag = run_tag();
    let n = u64::from(a.connections);
    let rss_before = a.server_pid.map(rss_kb).transpose()?;
    let cpu = || (cpu_secs(None).ok(), a.server_pid.and_then(|p| cpu_secs(Some(p)).ok()));
    let cpu_before = cpu();
    let machine_before = machine_cpu().ok();

    let shared = Arc::new(Shared::default());
    let (stop_tx, stop_rx) = watch::channel(false);
    let task = Task {
        target,
        version: a.common.mqtt_version,
        keep_alive: a.keep_alive,
        credentials: (a.username.is_some() || a.password.is_some()).then(|| {
            Arc::new((
                a.username.clone(),
                a.password.clone().map(|p| bytes::Bytes::from(p.into_bytes())),
            ))
        }),
        per_connection: [&a.username, &a.password]
            .iter()
            .any(|s| s.as_deref().is_some_and(|s| s.contains("{i}")))
            .then(|| Arc::new((a.username.clone(), a.password.clone()))),
        shared: shared.clone(),
        stop: stop_rx,
    };
    let threads = u32::from(a.common.threads).max(1);
    let start_ns = clock::now_ns();
    let mut handles = Vec::new();
    for t in 0..threads {
        let ids: Vec<u32> = (t..a.connections).step_by(threads as usize).collect();
        // Handshakes in flight on this thread: each thread has its own share of
        // --concurrency (the remainder to the first ones), so that a finished handshake starts
        // the next one on the same thread, without a wake-up across threads.
        let share = a.concurrency / threads + u32::from(t < a.concurrency % threads);
        let gate = Arc::new(Semaphore::new(share.max(1) as usize));
        let task = task.clone();
        let tag = tag.clone();
        handles.push(runtime::spawn(format!("bench-idle-{t}"), move || async move {
            let joins: Vec<_> = ids
                .into_iter()
                .map(|i| {
                    let client_id = format!("ub-{tag}-idle-{i}");
                    tokio::task::spawn_local(hold_one(i, client_id, task.clone(), gate.clone()))
                })
                .collect();
            let mut latency = Histogram::default();
            for j in joins {
                if let Some(ns) = j.await? {
                    latency.record(ns);
                }
            }
            Ok(latency)
        })?);
    }
    drop(task);

    // Wait until every connection is up or has failed.
    let deadline = Instant::now() + CONNECT_TIMEOUT;
    loop {
        let done = shared.connected.load(Ordering::Relaxed) + shared.failures.count();
        if done >= n || Instant::now() >= deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let cpu_after = cpu();
    let machine = machine_cpu()
        .ok()
        .zip(machine_before)
        .map(|(after, before)| after - before);
    let spent = |before: Option<f64>, after: Option<f64>| Some(after? - before?);
    let cpu_secs = (spent(cpu_before.0, cpu_after.0), spent(cpu_before.1, cpu_after.1));
    let connected = shared.connected.load(Ordering::Relaxed);
    let connect_secs = clock::secs_between(start_ns, shared.last_connack_ns.load(Ordering::Relaxed));
    let settled_at = Instant::now();
    std::thread::sleep(SETTLE);
    let rss_after = a.server_pid.map(rss_kb).transpose()?;
    std::thread::sleep(hold.saturating_sub(settled_at.elapsed()));
    let _ = stop_tx.send(true);
    let mut latency = Histogram::default();
    for h in handles {
        latency.merge(&runtime::join(h)?);
    }

    Ok(IdleOutcome {
        connected,
        failed: shared.failures.count(),
        closed: shared.closed_by_server.load(Ordering::Relaxed),
        connect_secs,
        latency,
        rss_before,
        rss_after,
        cpu_secs,
        machine,
        sources,
        first_error: shared.failures.first(),
    })
}

/// Runs the scenario and prints its report.
pub(crate) fn run(a: IdleArgs) -> anyhow::Result<()> {
    let IdleOutcome {
        connected,
        failed,
        closed,
        connect_secs,
        latency,
        rss_before,
        rss_after,
        cpu_secs: (bench_cpu, server_cpu),
        machine,
        sources,
        first_error,
    } = measure(&a)?;
    let n = u64::from(a.connections);
    let connects_per_s = per_sec(connected, connect_secs);
    let transport = match (&a.common.tls.tls, &a.common.tls.cert) {
        (false, _) => "tcp",
        (true, None) => "tls",
        (true, Some(_)) => "mtls",
    };
    let from = match sources {
        0 => String::new(),
        1 => ", from 1 local address".to_owned(),
        n => format!(", from {n} local addresses"),
    };
    println!(
        "idle: {} connections, {} handshakes at a time, MQTT {} over {transport}, server {}{from}",
        a.connections,
        a.concurrency,
        if a.common.mqtt_version.is_v5() { "5" } else { "3.1.1" },
        a.common.addr
    );
    println!(
        "  connected  {connected} in {connect_secs:.2} s ({connects_per_s:.0} connects/s); failed {failed}; closed by the server while idle {closed}"
    );
    println!("  CONNACK    {}", latency_line(&latency));
    let us_per_connect = |secs: Option<f64>| secs.filter(|_| connected > 0).map(|s| s * 1e6 / connected as f64);
    let (bench_us, server_us) = (us_per_connect(bench_cpu), us_per_connect(server_cpu));
    if let (Some(bench), Some(server), Some(b), Some(s)) = (bench_cpu, server_cpu, bench_us, server_us) {
        println!(
            "  CPU        server {server:.2} s ({s:.0} µs per connect), bench {bench:.2} s ({b:.0} µs per connect)"
        );
    }
    let machine_us = machine.filter(|_| connected > 0).map(|m| {
        let busy_pct = 100.0 * m.busy / (m.busy + m.idle).max(f64::MIN_POSITIVE);
        (
            m.busy * 1e6 / connected as f64,
            m.softirq * 1e6 / connected as f64,
            busy_pct,
        )
    });
    if let Some((total, softirq, busy_pct)) = machine_us {
        println!(
            "  machine    {total:.0} µs of CPU per connect, {softirq:.0} of them softirq (TCP on loopback); CPUs {busy_pct:.0} % busy"
        );
    }
    let per_conn = match (rss_before, rss_after) {
        (Some(before), Some(after)) if connected > 0 => {
            let bytes = after.saturating_sub(before) as f64 * 1024.0 / connected as f64;
            println!("  memory     server RSS {before} kB → {after} kB: {bytes:.0} bytes per connection");
            Some(bytes)
        }
        _ => None,
    };
    if let Some(e) = &first_error {
        let hint = if e.contains("Too many open files") {
            " (raise the limit with `ulimit -n`)"
        } else {
            ""
        };
        println!("  error      first of {failed}: {e}{hint}");
    }
    let json = Json::default()
        .str("scenario", "idle")
        .str("addr", &a.common.addr)
        .str("transport", transport)
        .str(
            "mqtt_version",
            if a.common.mqtt_version.is_v5() { "5" } else { "3.1.1" },
        )
        .int("connections", n)
        .int("connected", connected)
        .int("failed", failed)
        .int("closed_by_server", closed)
        .num("connect_s", connect_secs)
        .num("connects_per_s", connects_per_s)
        .int("sent", 0)
        .int("received", 0)
        .num("msgs_per_s", 0.0)
        .latency(&latency)
        .int("lost", 0)
        .int("duplicated", 0)
        .int("reordered", 0);
    let json = match (rss_before, rss_after) {
        (Some(b), Some(a)) => json.int("rss_before_kb", b).int("rss_after_kb", a),
        _ => json.null("rss_before_kb").null("rss_after_kb"),
    };
    println!(
        "{}",
        json.opt_num("rss_per_conn_bytes", per_conn)
            .opt_num("server_cpu_us_per_connect", server_us)
            .opt_num("bench_cpu_us_per_connect", bench_us)
            .opt_num("machine_cpu_us_per_connect", machine_us.map(|m| m.0))
            .opt_num("softirq_us_per_connect", machine_us.map(|m| m.1))
            .opt_num("machine_busy_pct", machine_us.map(|m| m.2))
            .int("errors", failed)
            .finish()
    );
    Ok(())
}

/// Opens one connection and keeps it alive until the run stops; the time from the TCP connect
/// to the CONNACK (the TLS handshake included) in ns, or `None` if it failed.
async fn hold_one(i: u32, client_id: String, task: Task, gate: Arc<Semaphore>) -> Option<u64> {
    let own = task.per_connection.as_deref().map(|(user, password)| {
        let fill = |s: &String| s.replace("{i}", &i.to_string());
        (
            user.as_ref().map(fill),
            password.as_ref().map(|p| bytes::Bytes::from(fill(p).into_bytes())),
        )
    });
    let spec = SessionSpec {
        client_id,
        clean_start: true,
        session_expiry: 0,
        keep_alive: task.keep_alive,
    };
    let permit = gate.acquire().await.ok()?;
    let started = clock::now_ns();
    let result = Conn::connect_as(
        &task.target,
        task.version,
        &spec,
        IDLE_READ,
        own.as_ref().or(task.credentials.as_deref()),
    )
    .await;
    drop(permit);
    let mut conn = match result {
        Ok(conn) => conn,
        Err(e) => {
            task.shared.failures.record(format!("{e:#}"));
            return None;
        }
    };
    let done = clock::now_ns();
    task.shared.last_connack_ns.fetch_max(done, Ordering::Relaxed);
    task.shared.connected.fetch_add(1, Ordering::Relaxed);

    let mut stop = task.stop.clone();
    let every = Duration::from_secs(u64::from(task.keep_alive / 2));
    let ping = tokio::time::sleep(every);
    tokio::pin!(ping);
    let closed = loop {
        if *stop.borrow_and_update() {
            break false;
        }
        tokio::select! {
            changed = stop.changed() => {
                if changed.is_err() {
                    break false;
                }
            }
            ready = conn.stream.readable() => {
                if ready.is_err() {
                    break true;
                }
                match conn.try_fill() {
                    Ok(Fill::Data) => {
                        // PINGRESP, or a DISCONNECT before the server closes.
                        while let Ok(Some(packet)) = conn.decode() {
                            if matches!(packet, Packet::Disconnect(_)) {
                                break;
                            }
                        }
                    }
                    Ok(Fill::Empty) => {}
                    Ok(Fill::Eof) | Err(_) => break true,
                }
            }
            () = &mut ping => {
                if conn.queue(&Packet::PingReq).is_err() || conn.flush().await.is_err() {
                    break true;
                }
                ping.as_mut().reset(tokio::time::Instant::now() + every);
            }
        }
    };
    if closed {
        task.shared.closed_by_server.fetch_add(1, Ordering::Relaxed);
    } else {
        conn.disconnect().await;
    }
    Some(done - started)
}
