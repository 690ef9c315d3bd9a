//! `lwm2m`: many LwM2M devices registering, updating and (unless `--keep`) de-registering.
//!
//! 1. With `--server-pid`, the server's VmRSS is read.
//! 2. Every device, a UDP socket with its own port, registers (`POST /rd?ep=…&lt=…&b=U` with a
//!    link-format payload of `--objects` object instances), `--concurrency` at a time, CON,
//!    sent again after `--timeout` (doubling) up to 4 times. Registration rate and latency are
//!    reported; 1 s after the last one the server's VmRSS is read again: the difference over
//!    the devices is what a registered device costs.
//! 3. Each device sends `--updates` Updates (`POST /rd/{location}`): update rate and latency.
//! 4. Unless `--keep`, every device de-registers (`DELETE /rd/{location}`).

use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant as StdInstant};

use anyhow::bail;
use tokio::net::UdpSocket;
use tokio::sync::Semaphore;
use tokio::time::Instant;
use unigate_coap::coap_lite::{CoapOption, MessageClass, MessageType, Packet, RequestType, ResponseType};

use super::coap::local_for;
use super::procfs::{cpu_percent, cpu_secs, rss_kb};
use super::report::{latency_line, per_sec, Failures, Json};
use super::runtime;
use super::stats::Histogram;
use super::{run_tag, seconds, Lwm2mArgs};

/// How long the server's memory may settle before it is read.
const SETTLE: Duration = Duration::from_secs(1);
/// Transmissions of a request after the first, at most.
const MAX_RETRANSMIT: u32 = 4;

#[derive(Default)]
struct Shared {
    registered: AtomicU64,
    updated: AtomicU64,
    failures: Failures,
}

struct ThreadCtx {
    server: SocketAddr,
    timeout: Duration,
    tag: String,
    lifetime: u32,
    links: Vec<u8>,
    gate: Semaphore,
    register_latency: RefCell<Histogram>,
    update_latency: RefCell<Histogram>,
    shared: Arc<Shared>,
}

/// What one phase of a thread returns.
type Phase = (Vec<Dev>, Histogram);

/// A registered device: its socket, location and next message id (message ids must not repeat
/// within EXCHANGE_LIFETIME, or the server answers a request as a duplicate of an earlier one).
type Dev = (UdpSocket, String, u16);

fn request(method: RequestType, path: &str, query: &[String], payload: &[u8], mid: u16, token: u32) -> Vec<u8> {
    let mut p = Packet::new();
    p.header.set_type(MessageType::Confirmable);
    p.header.code = MessageClass::Request(method);
    p.header.message_id = mid;
    p.set_token(token.to_be_bytes().to_vec());
    for seg in path.split('/').filter(|s| !s.is_empty()) {
        p.add_option(CoapOption::UriPath, seg.as_bytes().to_vec());
    }
    for q in query {
        p.add_option(CoapOption::UriQuery, q.as_bytes().to_vec());
    }
    if !payload.is_empty() {
        p.add_option(CoapOption::ContentFormat, vec![40]);
        p.payload = payload.to_vec();
    }
    p.to_bytes().unwrap_or_default()
}

/// Sends `bytes` (a CON with message id `mid`) until its response arrives; the response.
async fn exchange(sock: &UdpSocket, bytes: &[u8], mid: u16, timeout: Duration) -> Result<Packet, String> {
    let mut buf = vec![0u8; 2048];
    for attempt in 0..=MAX_RETRANSMIT {
        sock.send(bytes).await.map_err(|e| e.to_string())?;
        let deadline = Instant::now() + timeout * (1 << attempt);
        loop {
            let n = tokio::select! {
                r = sock.recv(&mut buf) => r.map_err(|e| e.to_string())?,
                () = tokio::time::sleep_until(deadline) => break,
            };
            let Ok(p) = Packet::from_bytes(buf.get(..n).unwrap_or_default()) else {
                continue;
            };
            if p.header.message_id == mid && matches!(p.header.code, MessageClass::Response(_)) {
                return Ok(p);
            }
        }
    }
    Err(format!("no answer after {} transmissions", MAX_RETRANSMIT + 1))
}

fn is(p: &Packet, code: ResponseType) -> bool {
    p.header.code == MessageClass::Response(code)
}

async fn register_thread(ids: Vec<u32>, ctx: Rc<ThreadCtx>) -> anyhow::Result<Phase> {
    let mut tasks = Vec::with_capacity(ids.len());
    for i in ids {
        let ctx = ctx.clone();
        tasks.push(tokio::task::spawn_local(async move {
            let sock = match UdpSocket::bind(local_for(ctx.server)).await {
                Ok(s) => s,
                Err(e) => {
                    ctx.shared
                        .failures
                        .record(format!("opening a UDP socket: {e} (raise `ulimit -n`?)"));
                    return None;
                }
            };
            if let Err(e) = sock.connect(ctx.server).await {
                ctx.shared.failures.record(e.to_string());
                return None;
            }
            let _permit = ctx.gate.acquire().await.ok()?;
            let mid: u16 = rand::random();
            let query = vec![
                format!("ep=bench-{}-{i}", ctx.tag),
                format!("lt={}", ctx.lifetime),
                "lwm2m=1.1".to_owned(),
                "b=U".to_owned(),
            ];
            let bytes = request(RequestType::Post, "rd", &query, &ctx.links, mid, i);
            let start = StdInstant::now();
            match exchange(&sock, &bytes, mid, ctx.timeout).await {
                Ok(p) if is(&p, ResponseType::Created) => {
                    ctx.register_latency
                        .borrow_mut()
                        .record(start.elapsed().as_nanos() as u64);
                    ctx.shared.registered.fetch_add(1, Ordering::Relaxed);
                    let location = p
                        .get_option(CoapOption::LocationPath)
                        .map(|segs| {
                            segs.iter()
                                .map(|s| String::from_utf8_lossy(s).into_owned())
                                .collect::<Vec<_>>()
                                .join("/")
                        })
                        .unwrap_or_default();
                    Some((sock, location, mid.wrapping_add(1)))
                }
                Ok(p) => {
                    ctx.shared
                        .failures
                        .record(format!("register answered {:?}", p.header.code));
                    None
                }
                Err(e) => {
                    ctx.shared.failures.record(format!("register: {e}"));
                    None
                }
            }
        }));
    }
    let mut out = Vec::with_capacity(tasks.len());
    for t in tasks {
        if let Some(d) = t.await? {
            out.push(d);
        }
    }
    let h = ctx.register_latency.borrow().clone();
    Ok((out, h))
}

/// Sends `updates` Updates from every device (or one DELETE with `deregister`).
async fn update_thread(devices: Vec<Dev>, updates: u32, deregister: bool, ctx: Rc<ThreadCtx>) -> anyhow::Result<Phase> {
    let mut tasks = Vec::with_capacity(devices.len());
    for (n, (sock, location, mut next_mid)) in devices.into_iter().enumerate() {
        let ctx = ctx.clone();
        tasks.push(tokio::task::spawn_local(async move {
            let _permit = ctx.gate.acquire().await.ok()?;
            let rounds = if deregister { 1 } else { updates };
            for _ in 0..rounds {
                let mid = next_mid;
                next_mid = next_mid.wrapping_add(1);
                let (method, want) = if deregister {
                    (RequestType::Delete, ResponseType::Deleted)
                } else {
                    (RequestType::Post, ResponseType::Changed)
                };
                let bytes = request(method, &location, &[], b"", mid, n as u32);
                let start = StdInstant::now();
                match exchange(&sock, &bytes, mid, ctx.timeout).await {
                    Ok(p) if is(&p, want) => {
                        ctx.update_latency
                            .borrow_mut()
                            .record(start.elapsed().as_nanos() as u64);
                        ctx.shared.updated.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(p) => {
                        ctx.shared
                            .failures
                            .record(format!("{method:?} answered {:?}", p.header.code));
                        return None;
                    }
                    Err(e) => {
                        ctx.shared.failures.record(format!("{method:?}: {e}"));
                        return None;
                    }
                }
            }
            Some((sock, location, next_mid))
        }));
    }
    let mut out = Vec::with_capacity(tasks.len());
    for t in tasks {
        if let Some(d) = t.await? {
            out.push(d);
        }
    }
    let h = std::mem::take(&mut *ctx.update_latency.borrow_mut());
    Ok((out, h))
}

/// Runs the scenario and prints its report.
pub(crate) fn run(a: Lwm2mArgs) -> anyhow::Result<()> {
    let server = super::resolve(&a.lwm2m)?;
    let timeout = seconds("timeout", a.timeout)?;
    if timeout.is_zero() {
        bail!("--timeout must be more than 0");
    }
    let tag = run_tag();
    let links: Vec<u8> = {
        let mut l = String::from("</>;rt=\"oma.lwm2m\";ct=11542,</1/0>,</3/0>");
        for k in 0..a.objects.saturating_sub(2) {
            l.push_str(&format!(",</3303/{k}>"));
        }
        l.into_bytes()
    };
    let rss = |pid: Option<u32>| pid.map(rss_kb).transpose();
    let rss_before = rss(a.server_pid)?;
    let shared = Arc::new(Shared::default());
    let threads = u32::from(a.threads).max(1);
    let gate = (a.concurrency / threads).max(1) as usize;
    let make_ctx = |shared: Arc<Shared>, tag: String, links: Vec<u8>| ThreadCtx {
        server,
        timeout,
        tag,
        lifetime: a.lifetime,
        links,
        gate: Semaphore::new(gate),
        register_latency: RefCell::new(Histogram::default()),
        update_latency: RefCell::new(Histogram::default()),
        shared,
    };

    // Registration, one runtime per thread; each thread keeps its devices for the next phases.
    let cpu_before = a.server_pid.and_then(|p| cpu_secs(Some(p)).ok());
    let start = StdInstant::now();
    let mut handles = Vec::new();
    for t in 0..threads {
        let ids: Vec<u32> = (t..a.devices).step_by(threads as usize).collect();
        let ctx = make_ctx(shared.clone(), tag.clone(), links.clone());
        let (updates, keep) = (a.updates, a.keep);
        let (phase_tx, phase_rx) = std::sync::mpsc::channel::<(u8, Histogram, u64)>();
        let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
        let h = runtime::spawn(format!("bench-lwm2m-{t}"), move || async move {
            let ctx = Rc::new(ctx);
            let (devices, reg) = register_thread(ids, ctx.clone()).await?;
            let _ = phase_tx.send((0, reg, devices.len() as u64));
            let _ = go_rx.recv();
            let (devices, upd) = update_thread(devices, updates, false, ctx.clone()).await?;
            let _ = phase_tx.send((1, upd, 0));
            let _ = go_rx.recv();
            if !keep {
                let (_, del) = update_thread(devices, 1, true, ctx).await?;
                let _ = phase_tx.send((2, del, 0));
            } else {
                // Hold the sockets until told to end, so the registrations stay reachable.
                let _ = go_rx.recv();
                drop(devices);
            }
            Ok(())
        })?;
        handles.push((h, phase_rx, go_tx));
    }
    let mut register_latency = Histogram::default();
    for (_, rx, _) in &handles {
        if let Ok((_, h, _)) = rx.recv() {
            register_latency.merge(&h);
        }
    }
    let reg_secs = start.elapsed().as_secs_f64();
    let registered = shared.registered.load(Ordering::Relaxed);
    let server_cpu = cpu_percent(cpu_before, a.server_pid.and_then(|p| cpu_secs(Some(p)).ok()), reg_secs);
    std::thread::sleep(SETTLE);
    let rss_registered = rss(a.server_pid)?;

    let start = StdInstant::now();
    for (_, _, go) in &handles {
        let _ = go.send(());
    }
    let mut update_latency = Histogram::default();
    for (_, rx, _) in &handles {
        if let Ok((_, h, _)) = rx.recv() {
            update_latency.merge(&h);
        }
    }
    let upd_secs = start.elapsed().as_secs_f64();
    let updated = shared.updated.load(Ordering::Relaxed);
    let start = StdInstant::now();
    for (_, _, go) in &handles {
        let _ = go.send(());
    }
    if !a.keep {
        for (_, rx, _) in &handles {
            let _ = rx.recv();
        }
    }
    let dereg_secs = start.elapsed().as_secs_f64();
    let deregistered = shared.updated.load(Ordering::Relaxed).saturating_sub(updated);
    for (h, _, go) in handles {
        let _ = go.send(());
        runtime::join(h)?;
    }
    let rss_end = if a.keep {
        None
    } else {
        std::thread::sleep(SETTLE);
        rss(a.server_pid)?
    };

    let failed = shared.failures.count();
    let regs_per_s = per_sec(registered, reg_secs);
    let upd_per_s = per_sec(updated, upd_secs);
    println!(
        "lwm2m: {} devices with {} object instances each, lifetime {} s, {} at a time, server {}",
        a.devices, a.objects, a.lifetime, a.concurrency, a.lwm2m
    );
    println!("  registered {registered} in {reg_secs:.2} s ({regs_per_s:.0}/s); failed {failed}");
    println!("  2.01       {}", latency_line(&register_latency));
    let per_device = match (rss_before, rss_registered) {
        (Some(before), Some(after)) if registered > 0 => {
            let bytes = after.saturating_sub(before) as f64 * 1024.0 / registered as f64;
            println!("  memory     server RSS {before} kB → {after} kB registered: {bytes:.0} bytes per device");
            Some(bytes)
        }
        _ => None,
    };
    println!("  updated    {updated} in {upd_secs:.2} s ({upd_per_s:.0}/s)");
    println!("  2.04       {}", latency_line(&update_latency));
    if !a.keep {
        println!("  deregistered {deregistered} in {dereg_secs:.2} s");
    }
    if let Some(end) = rss_end {
        println!("             server RSS {end} kB after de-registering");
    }
    if let Some(cpu) = server_cpu {
        println!("  CPU        server {cpu:.0} % of one core while registering");
    }
    let first_error = shared.failures.first();
    if let Some(e) = &first_error {
        println!("  error      first of {failed}: {e}");
    }
    let us = |ns: u64| ns as f64 / 1e3;
    let json = Json::default()
        .str("scenario", "lwm2m")
        .str("lwm2m_addr", &a.lwm2m)
        .int("devices", u64::from(a.devices))
        .int("registered", registered)
        .int("failed", failed)
        .num("register_s", reg_secs)
        .num("registrations_per_s", regs_per_s)
        .opt_num("register_p50_us", register_latency.quantile(0.5).map(us))
        .opt_num("register_p99_us", register_latency.quantile(0.99).map(us))
        .opt_num("rss_per_device_bytes", per_device)
        .int("updated", updated)
        .num("updates_per_s", upd_per_s)
        .opt_num("update_p50_us", update_latency.quantile(0.5).map(us))
        .opt_num("update_p99_us", update_latency.quantile(0.99).map(us))
        .opt_num("server_cpu_pct", server_cpu)
        .int("errors", failed);
    println!("{}", json.finish());
    Ok(())
}
