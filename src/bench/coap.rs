//! `coap-non` and `coap-con`: simulated CoAP devices, each a UDP socket with its own source
//! port, publish with `POST /ps/{topic}` (or any request, for servers other than unigate) and
//! an MQTT subscriber counts what the gateway delivered.
//!
//! A device keeps at most `--window` requests unanswered. It sends whenever its window has
//! room (and, with `--rate`, when the next request is due), so that with NON requests the load
//! is open loop up to the window: nothing waits for a particular answer. A NON request still
//! unanswered after `--timeout` is given up, which frees its slot; a CON request is sent again
//! after `--timeout`, then twice that, … (RFC 7252 §4.2, without the random factor) up to
//! `--max-retransmit` times. The token of a request is its sequence number, so a response is
//! matched to its request (and its latency taken) by token; an Empty ACK or a RST by message
//! id. Each device runs as one task; devices share a few threads (current-thread runtimes), so
//! the bench stays at a few threads whatever the device count.

use std::cell::RefCell;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant as StdInstant};

use anyhow::bail;
use tokio::net::UdpSocket;
use tokio::sync::watch;
use tokio::time::Instant;
use unigate_coap::coap_lite::RequestType;

use super::client::{Conn, SessionSpec, Target, BUSY_READ};
use super::coap_wire::{empty_ack, parse, RequestSpec, Template, ACK, CON, RST};
use super::payload::Stamp;
use super::procfs::{cpu_percent, cpu_secs, udp_rcvbuf_errors};
use super::report::{latency_line, per_sec, Json};
use super::runtime;
use super::stats::{Acked, Bitset, Delivery, Histogram};
use super::subscriber::{self, Receiver};
use super::{qos_of, run_tag, seconds, CoapLoadArgs};

/// How long devices and the subscriber may take to get ready.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// After the devices are done, stop waiting for MQTT deliveries once nothing new arrived for
/// this long.
const QUIET: Duration = Duration::from_secs(2);
/// Datagrams read per wake-up before the device goes back to its loop (`try_recv` does not
/// count against tokio's cooperative budget, and other devices share the thread).
const READS_PER_WAKE: usize = 32;
/// Receive buffer: bench responses are tens of bytes; anything longer is not ours.
const RECV_BUF: usize = 2048;

/// What one device does.
#[derive(Debug, Clone)]
struct DevicePlan {
    index: u32,
    template: Template,
    confirmable: bool,
    window: usize,
    /// Seconds between requests, `None` for as fast as the window allows.
    interval: Option<f64>,
    /// Where in its interval this device starts (0..1).
    phase: f64,
    duration: Duration,
    timeout: Duration,
    max_retransmit: u32,
    drain: Duration,
}

/// What one device did.
#[derive(Debug, Clone, Default)]
pub(crate) struct DeviceOutcome {
    index: u32,
    /// Requests sent (retransmissions not counted).
    sent: u64,
    /// Datagrams sent, retransmissions included.
    transmissions: u64,
    /// 2.xx responses.
    answered: u64,
    /// 4.xx and 5.xx responses.
    refused: u64,
    /// RSTs.
    resets: u64,
    /// Requests given up: NON unanswered after the timeout, CON after the last retransmission.
    given_up: u64,
    /// Requests still unanswered when the device stopped.
    unanswered: u64,
    /// Datagrams that matched no outstanding request (late, duplicated or foreign).
    stray: u64,
    /// Sequence numbers answered with 2.xx: the publishes the server took.
    acked: Bitset,
    last_send_ns: u64,
    last_answer_ns: u64,
    error: Option<String>,
}

/// One request slot of a device's window.
#[derive(Debug, Clone)]
struct Slot {
    busy: bool,
    seq: u64,
    mid: u16,
    first_ns: u64,
    deadline: Instant,
    retransmits: u32,
    bytes: Vec<u8>,
}

struct Device {
    plan: DevicePlan,
    sock: UdpSocket,
    slots: Vec<Slot>,
    in_flight: usize,
    next_mid: u16,
    /// The last send would have blocked: wait until the socket is writable.
    blocked: bool,
    out: DeviceOutcome,
    latency: Rc<RefCell<Histogram>>,
}

impl Device {
    async fn run(mut self, go_ns: u64) -> DeviceOutcome {
        let go = super::clock::instant_at(go_ns);
        let end = go + self.plan.duration;
        let mut drain_end: Option<Instant> = None;
        let mut buf = vec![0u8; RECV_BUF];
        loop {
            let now = Instant::now();
            self.expire(now);
            let producing = now < end;
            if producing {
                self.send_due(go);
            } else if drain_end.is_none() {
                drain_end = Some(now + self.plan.drain);
            }
            if !producing && (self.in_flight == 0 || drain_end.is_some_and(|d| now >= d)) {
                break;
            }
            let next_due = match self.plan.interval {
                Some(iv) if producing && self.in_flight < self.plan.window && !self.blocked => {
                    Some(go + Duration::from_secs_f64((self.out.sent as f64 + self.plan.phase) * iv))
                }
                _ => None,
            };
            let wake = [next_due, self.earliest_deadline(), producing.then_some(end), drain_end]
                .into_iter()
                .flatten()
                .min();
            tokio::select! {
                biased;
                ready = self.sock.readable() => {
                    if let Err(e) = ready {
                        self.out.error.get_or_insert_with(|| format!("device {}: {e}", self.plan.index));
                        break;
                    }
                    self.receive(&mut buf);
                }
                ready = self.sock.writable(), if self.blocked => {
                    if ready.is_ok() {
                        self.blocked = false;
                    }
                }
                () = super::clock::sleep_until(wake), if wake.is_some() => {}
            }
        }
        self.out.unanswered = self.in_flight as u64;
        self.out
    }

    /// Sends what is due while the window has room.
    fn send_due(&mut self, go: Instant) {
        let due = match self.plan.interval {
            None => u64::MAX,
            Some(iv) => {
                let ticks = Instant::now().duration_since(go).as_secs_f64() / iv - self.plan.phase;
                if ticks < 0.0 {
                    0
                } else {
                    (ticks as u64).saturating_add(1)
                }
            }
        };
        while !self.blocked && self.out.sent < due && self.in_flight < self.plan.window {
            let Some(i) = self.slots.iter().position(|s| !s.busy) else {
                return;
            };
            let seq = self.out.sent;
            let now_ns = super::clock::now_ns();
            let stamp = Stamp {
                publisher: self.plan.index,
                seq,
                sent_ns: now_ns,
            };
            let mid = self.next_mid;
            let Some(slot) = self.slots.get_mut(i) else { return };
            self.plan.template.write(&mut slot.bytes, mid, seq, stamp);
            match self.sock.try_send(&slot.bytes) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.blocked = true;
                    return;
                }
                // ICMP port unreachable from an earlier datagram and the like: the request is
                // sent as far as the bench can tell, and will go unanswered.
                Err(e) => {
                    self.out
                        .error
                        .get_or_insert_with(|| format!("device {}: {e}", self.plan.index));
                }
            }
            slot.busy = true;
            slot.seq = seq;
            slot.mid = mid;
            slot.first_ns = now_ns;
            slot.deadline = Instant::now() + self.plan.timeout;
            slot.retransmits = 0;
            self.in_flight += 1;
            self.next_mid = mid.wrapping_add(1);
            self.out.sent += 1;
            self.out.transmissions += 1;
            self.out.last_send_ns = now_ns;
        }
    }

    /// Retransmits CON requests whose timer ran out, and gives up on those out of attempts.
    fn expire(&mut self, now: Instant) {
        for slot in self.slots.iter_mut().filter(|s| s.busy && s.deadline <= now) {
            if self.plan.confirmable && slot.retransmits < self.plan.max_retransmit {
                slot.retransmits += 1;
                slot.deadline = now + self.plan.timeout * (1 << slot.retransmits.min(16));
                // Same message id: the server must treat it as a duplicate (RFC 7252 §4.5).
                let _ = self.sock.try_send(&slot.bytes);
                self.out.transmissions += 1;
            } else {
                slot.busy = false;
                self.in_flight -= 1;
                self.out.given_up += 1;
            }
        }
    }

    fn earliest_deadline(&self) -> Option<Instant> {
        self.slots.iter().filter(|s| s.busy).map(|s| s.deadline).min()
    }

    fn receive(&mut self, buf: &mut [u8]) {
        for _ in 0..READS_PER_WAKE {
            match self.sock.try_recv(buf) {
                Ok(n) => {
                    let now_ns = super::clock::now_ns();
                    self.handle(buf.get(..n).unwrap_or_default(), now_ns);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    self.out
                        .error
                        .get_or_insert_with(|| format!("device {}: {e}", self.plan.index));
                    return;
                }
            }
        }
    }

    fn handle(&mut self, datagram: &[u8], now_ns: u64) {
        let Some(head) = parse(datagram) else {
            self.out.stray += 1;
            return;
        };
        if head.ty == CON {
            // A separate response (RFC 7252 §5.2.2): acknowledge it whatever it answers.
            let _ = self.sock.try_send(&empty_ack(head.mid));
        }
        let found = match head.token_u64() {
            Some(token) => self.slots.iter().position(|s| s.busy && s.seq == token),
            // Empty ACK and RST carry no token: match the message id of a CON.
            None if head.ty == ACK || head.ty == RST => self.slots.iter().position(|s| s.busy && s.mid == head.mid),
            None => None,
        };
        let Some(slot) = found.and_then(|i| self.slots.get_mut(i)) else {
            self.out.stray += 1;
            return;
        };
        if head.ty == ACK && head.code == 0 {
            // The response will come separately: stop retransmitting, keep the slot.
            slot.retransmits = self.plan.max_retransmit;
            slot.deadline = Instant::now() + self.plan.timeout * 8;
            return;
        }
        slot.busy = false;
        self.in_flight -= 1;
        if head.ty == RST {
            self.out.resets += 1;
        } else if head.is_success() {
            self.out.answered += 1;
            self.out.last_answer_ns = now_ns;
            self.out.acked.insert(slot.seq);
            self.latency.borrow_mut().record(now_ns.saturating_sub(slot.first_ns));
        } else {
            self.out.refused += 1;
        }
    }
}

/// What the devices and the subscriber share with the coordinator.
#[derive(Clone)]
struct Ctl {
    events: mpsc::Sender<Result<(), String>>,
    go: watch::Receiver<Option<u64>>,
    stop: watch::Receiver<bool>,
}

impl Ctl {
    fn ready(&self, result: Result<(), String>) {
        // The coordinator outlives every thread; a closed channel only means it bailed out.
        let _ = self.events.send(result);
    }

    async fn go(&self) -> Option<u64> {
        let mut go = self.go.clone();
        let mut stop = self.stop.clone();
        tokio::select! {
            at = go.wait_for(Option::is_some) => at.ok().and_then(|at| *at),
            _ = stop.wait_for(|stopped| *stopped) => None,
        }
    }
}

/// The address to bind a device's socket to, for a server at `server`.
pub(crate) fn local_for(server: SocketAddr) -> SocketAddr {
    if server.ip().is_loopback() {
        SocketAddr::new(server.ip(), 0)
    } else if server.is_ipv4() {
        SocketAddr::from(([0, 0, 0, 0], 0))
    } else {
        SocketAddr::from(([0u16; 8], 0))
    }
}

async fn device_thread(
    plans: Vec<DevicePlan>,
    server: SocketAddr,
    ctl: Ctl,
) -> anyhow::Result<(Vec<DeviceOutcome>, Histogram)> {
    let mut socks = Vec::with_capacity(plans.len());
    for _ in &plans {
        let bound = async {
            let sock = UdpSocket::bind(local_for(server)).await?;
            sock.connect(server).await?;
            io::Result::Ok(sock)
        };
        match bound.await {
            Ok(sock) => socks.push(sock),
            Err(e) => {
                let hint = if e.raw_os_error() == Some(24) {
                    " (raise `ulimit -n`)"
                } else {
                    ""
                };
                let why = format!("opening a UDP socket to {server}: {e}{hint}");
                ctl.ready(Err(why.clone()));
                bail!(why);
            }
        }
    }
    ctl.ready(Ok(()));
    let latency = Rc::new(RefCell::new(Histogram::default()));
    let Some(go_ns) = ctl.go().await else {
        return Ok((Vec::new(), Histogram::default()));
    };
    let tasks: Vec<_> = plans
        .into_iter()
        .zip(socks)
        .map(|(plan, sock)| {
            let slot = Slot {
                busy: false,
                seq: 0,
                mid: 0,
                first_ns: 0,
                deadline: Instant::now(),
                retransmits: 0,
                bytes: Vec::new(),
            };
            let device = Device {
                slots: vec![slot; plan.window],
                in_flight: 0,
                next_mid: rand::random(),
                blocked: false,
                out: DeviceOutcome {
                    index: plan.index,
                    ..DeviceOutcome::default()
                },
                latency: latency.clone(),
                sock,
                plan,
            };
            tokio::task::spawn_local(device.run(go_ns))
        })
        .collect();
    let mut outcomes = Vec::with_capacity(tasks.len());
    for t in tasks {
        outcomes.push(t.await?);
    }
    let latency = latency.borrow().clone();
    Ok((outcomes, latency))
}

/// The MQTT side of a run.
struct SubPlan {
    server: Target,
    version: unigate_mqtt::ProtocolVersion,
    client_id: String,
    filter: String,
    qos: unigate_mqtt::QoS,
    devices: usize,
}

async fn subscriber_thread(
    plan: SubPlan,
    ctl: Ctl,
    progress: Arc<AtomicU64>,
) -> anyhow::Result<(Receiver, Option<String>)> {
    let session = SessionSpec {
        client_id: plan.client_id,
        clean_start: true,
        session_expiry: 0,
        keep_alive: 60,
    };
    let connected = async {
        let mut conn = Conn::connect(&plan.server, plan.version, &session, BUSY_READ).await?;
        conn.subscribe(&plan.filter, plan.qos).await?;
        anyhow::Ok(conn)
    };
    let mut conn = match connected.await {
        Ok(conn) => conn,
        Err(e) => {
            let why = format!("MQTT subscriber: {e:#}");
            ctl.ready(Err(why.clone()));
            bail!(why);
        }
    };
    ctl.ready(Ok(()));
    let mut rx = Receiver::new(plan.devices);
    let mut stop = ctl.stop.clone();
    let error = subscriber::receive(&mut conn, &mut rx, &mut stop, None, &progress)
        .await
        .err()
        .map(|e| format!("MQTT subscriber: {e:#}"));
    if error.is_none() {
        conn.disconnect().await;
    }
    Ok((rx, error))
}

/// The totals of a run.
struct Totals {
    devices: Vec<DeviceOutcome>,
    latency: Histogram,
    go_ns: u64,
    /// Go → the end of sending: what the CPU figures are over.
    send_secs: f64,
    /// Datagrams dropped host-wide on full UDP receive buffers during the run.
    rcvbuf_drops: Option<u64>,
    mqtt: Option<(Receiver, Option<String>)>,
    /// CON requests: only publishes answered 2.04 are expected at the subscriber.
    confirmable: bool,
    expected: u64,
    bench_cpu: Option<f64>,
    server_cpu: Option<f64>,
}

/// `coap-non` (`confirmable` false) and `coap-con`.
pub(crate) fn run(a: CoapLoadArgs, confirmable: bool, window: u16, qos: u8) -> anyhow::Result<()> {
    let scenario = if confirmable { "coap-con" } else { "coap-non" };
    let server = super::resolve(&a.coap.coap)?;
    let duration = seconds("duration", a.duration)?;
    let timeout = seconds("timeout", a.timeout)?;
    let drain = seconds("drain", a.drain)?;
    if a.devices == 0 || window == 0 {
        bail!("--devices and --window must be at least 1");
    }
    if !(a.rate >= 0.0 && a.rate.is_finite()) {
        bail!("--rate must be 0 (unlimited) or a positive number");
    }
    if timeout.is_zero() {
        bail!("--timeout must be more than 0");
    }
    let size = if a.method == RequestType::Get { 0 } else { a.size };
    let tag = run_tag();
    let n = a.devices;
    let plans = (0..n)
        .map(|i| {
            let uri = a.path.replace("{run}", &tag).replace("{i}", &i.to_string());
            let template = Template::new(&RequestSpec {
                confirmable,
                method: a.method,
                uri: &uri,
                observe: None,
                size,
            })?;
            Ok(DevicePlan {
                index: i,
                template,
                confirmable,
                window: usize::from(window),
                interval: (a.rate > 0.0).then(|| f64::from(n) / a.rate),
                phase: f64::from(i) / f64::from(n),
                duration,
                timeout,
                max_retransmit: a.max_retransmit,
                drain,
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let sub = (!a.no_mqtt)
        .then(|| {
            anyhow::Ok(SubPlan {
                server: a.common.target()?,
                version: a.common.mqtt_version,
                client_id: format!("ub-{tag}-coap-sub"),
                filter: a.mqtt_filter.replace("{run}", &tag),
                qos: qos_of(qos)?,
                devices: n as usize,
            })
        })
        .transpose()?;

    let totals = drive(
        plans,
        server,
        sub,
        usize::from(a.common.threads),
        a.coap.server_pid,
        duration,
        drain,
    )?;
    report(scenario, &a, window, qos, &totals);
    Ok(())
}

fn drive(
    plans: Vec<DevicePlan>,
    server: SocketAddr,
    sub: Option<SubPlan>,
    threads: usize,
    server_pid: Option<u32>,
    send_for: Duration,
    drain: Duration,
) -> anyhow::Result<Totals> {
    let (events_tx, events) = mpsc::channel();
    let (go_tx, go_rx) = watch::channel(None);
    let (stop_tx, stop_rx) = watch::channel(false);
    let ctl = Ctl {
        events: events_tx,
        go: go_rx,
        stop: stop_rx,
    };
    let progress = Arc::new(AtomicU64::new(0));
    let confirmable = plans.first().is_some_and(|p| p.confirmable);
    let device_threads = if sub.is_some() {
        threads.saturating_sub(1)
    } else {
        threads
    }
    .max(1);
    let mut per_thread: Vec<Vec<DevicePlan>> = (0..device_threads).map(|_| Vec::new()).collect();
    for (i, p) in plans.into_iter().enumerate() {
        if let Some(list) = per_thread.get_mut(i % device_threads) {
            list.push(p);
        }
    }
    per_thread.retain(|l| !l.is_empty());
    let mut waiting = per_thread.len();
    let mut sub_handle = None;
    if let Some(plan) = sub {
        let (ctl, progress) = (ctl.clone(), progress.clone());
        sub_handle = Some(runtime::spawn("bench-coap-sub".into(), move || {
            subscriber_thread(plan, ctl, progress)
        })?);
        waiting += 1;
    }
    let mut handles = Vec::new();
    for (t, list) in per_thread.into_iter().enumerate() {
        let ctl = ctl.clone();
        handles.push(runtime::spawn(format!("bench-coap-{t}"), move || {
            device_thread(list, server, ctl)
        })?);
    }
    drop(ctl);

    let deadline = StdInstant::now() + READY_TIMEOUT;
    while waiting > 0 {
        let left = deadline.saturating_duration_since(StdInstant::now());
        let failure = match events.recv_timeout(left) {
            Ok(Ok(())) => {
                waiting -= 1;
                continue;
            }
            Ok(Err(why)) => why,
            Err(_) => format!("not ready within {READY_TIMEOUT:?}"),
        };
        let _ = stop_tx.send(true);
        for h in handles {
            let _ = runtime::join(h);
        }
        if let Some(h) = sub_handle {
            let _ = runtime::join(h);
        }
        bail!(failure);
    }

    // CPU and dropped datagrams over the sending phase only (not the drain after it).
    let cpu_before = (cpu_secs(None).ok(), server_pid.and_then(|p| cpu_secs(Some(p)).ok()));
    let drops_before = udp_rcvbuf_errors();
    let go_ns = super::clock::now_ns();
    let _ = go_tx.send(Some(go_ns));
    std::thread::sleep(send_for);
    let send_secs = super::clock::secs_between(go_ns, super::clock::now_ns());
    let bench_cpu = cpu_percent(cpu_before.0, cpu_secs(None).ok(), send_secs);
    let server_cpu = cpu_percent(cpu_before.1, server_pid.and_then(|p| cpu_secs(Some(p)).ok()), send_secs);
    let mut devices = Vec::new();
    let mut latency = Histogram::default();
    for h in handles {
        let (outcomes, h) = runtime::join(h)?;
        devices.extend(outcomes);
        latency.merge(&h);
    }
    let rcvbuf_drops = match (drops_before, udp_rcvbuf_errors()) {
        (Some(b), Some(a)) => Some(a.saturating_sub(b)),
        _ => None,
    };
    devices.sort_by_key(|d| d.index);

    // What the subscriber must get: every NON publish (QoS 0: the 2.04 may be lost on the way
    // back while the message went through), every CON publish answered 2.04.
    let expected: u64 = if confirmable {
        devices.iter().map(|d| d.answered).sum()
    } else {
        devices.iter().map(|d| d.sent).sum()
    };
    let mut mqtt = None;
    if let Some(h) = sub_handle {
        let drain_end = StdInstant::now() + drain;
        let mut last = progress.load(Ordering::Relaxed);
        let mut last_change = StdInstant::now();
        loop {
            let now = StdInstant::now();
            let got = progress.load(Ordering::Relaxed);
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
        let _ = stop_tx.send(true);
        mqtt = Some(runtime::join(h)?);
    }
    Ok(Totals {
        devices,
        latency,
        go_ns,
        send_secs,
        rcvbuf_drops,
        mqtt,
        confirmable,
        expected,
        bench_cpu,
        server_cpu,
    })
}

fn report(scenario: &str, a: &CoapLoadArgs, window: u16, qos: u8, t: &Totals) {
    let sum = |f: fn(&DeviceOutcome) -> u64| t.devices.iter().map(f).sum::<u64>();
    let sent = sum(|d| d.sent);
    let transmissions = sum(|d| d.transmissions);
    let answered = sum(|d| d.answered);
    let refused = sum(|d| d.refused);
    let resets = sum(|d| d.resets);
    let given_up = sum(|d| d.given_up);
    let unanswered = sum(|d| d.unanswered);
    let stray = sum(|d| d.stray);
    let last_send = t.devices.iter().map(|d| d.last_send_ns).max().unwrap_or(t.go_ns);
    let last_answer = t.devices.iter().map(|d| d.last_answer_ns).max().unwrap_or(t.go_ns);
    let send_secs = super::clock::secs_between(t.go_ns, last_send);
    let sent_per_s = per_sec(sent, send_secs);
    let answered_per_s = per_sec(answered, super::clock::secs_between(t.go_ns, last_answer));
    let errors: Vec<&String> = t.devices.iter().filter_map(|d| d.error.as_ref()).collect();
    let rate = if a.rate > 0.0 {
        format!("{} requests/s", a.rate)
    } else {
        "unlimited rate".to_owned()
    };
    println!(
        "{scenario}: {} devices × window {window}, {} {}, {}-byte payloads, {rate}, server {}",
        a.devices,
        method_name(a.method),
        a.path,
        if a.method == RequestType::Get { 0 } else { a.size },
        a.coap.coap
    );
    println!(
        "  sent       {sent} requests in {send_secs:.2} s ({sent_per_s:.0} requests/s), {transmissions} datagrams"
    );
    println!(
        "  answered   {answered} with 2.xx ({answered_per_s:.0}/s), {refused} with an error code, {resets} reset; \
         given up {given_up}, unanswered at the end {unanswered}, stray {stray}"
    );
    println!("  response   {}", latency_line(&t.latency));
    let mut json = Json::default()
        .str("scenario", scenario)
        .str("coap_addr", &a.coap.coap)
        .int("devices", u64::from(a.devices))
        .int("window", u64::from(window))
        .num("rate", a.rate)
        .int("size", a.size as u64)
        .int("sent", sent)
        .int("transmissions", transmissions)
        .int("answered", answered)
        .int("refused", refused)
        .int("resets", resets)
        .int("given_up", given_up)
        .int("unanswered", unanswered)
        .num("send_s", send_secs)
        .num("sent_per_s", sent_per_s)
        .num("answered_per_s", answered_per_s)
        .num("answered_pct", 100.0 * answered as f64 / sent.max(1) as f64)
        .latency(&t.latency);
    match &t.mqtt {
        Some((rx, error)) => {
            let acked: Vec<Acked> = t
                .devices
                .iter()
                .map(|d| {
                    if t.confirmable {
                        Acked::Set(d.acked.clone())
                    } else {
                        Acked::AllBelow(d.sent)
                    }
                })
                .collect();
            let Delivery {
                unique,
                lost,
                duplicated,
                reordered,
            } = rx.tracker.delivery(&acked);
            let msgs_per_s = per_sec(rx.received, super::clock::secs_between(t.go_ns, rx.last_rx_ns));
            let loss_pct = 100.0 * lost as f64 / t.expected.max(1) as f64;
            println!(
                "  MQTT       received {} ({unique} distinct) of {} expected ({msgs_per_s:.0} msgs/s, QoS {qos} \
                 subscription); lost {lost} ({loss_pct:.2} %), duplicated {duplicated}, reordered {reordered}",
                rx.received, t.expected
            );
            println!("  end-to-end {}", latency_line(&rx.latency));
            if let Some(e) = error {
                println!("  error      {e}");
            }
            let us = |ns: u64| ns as f64 / 1e3;
            json = json
                .int("mqtt_qos", u64::from(qos))
                .int("mqtt_expected", t.expected)
                .int("mqtt_received", rx.received)
                .num("mqtt_per_s", msgs_per_s)
                .int("mqtt_lost", lost)
                .num("mqtt_loss_pct", loss_pct)
                .int("mqtt_duplicated", duplicated)
                .int("mqtt_reordered", reordered)
                .opt_num("mqtt_p50_us", rx.latency.quantile(0.5).map(us))
                .opt_num("mqtt_p99_us", rx.latency.quantile(0.99).map(us));
        }
        None => println!("  MQTT       no subscriber (--no-mqtt)"),
    }
    let pct = |v: Option<f64>| v.map_or("n/a".to_owned(), |v| format!("{v:.0} %"));
    println!(
        "  CPU        bench {} of one core, server {} (over the {:.2} s of sending)",
        pct(t.bench_cpu),
        if a.coap.server_pid.is_some() {
            pct(t.server_cpu)
        } else {
            "n/a (no --server-pid)".to_owned()
        },
        t.send_secs
    );
    if let Some(drops) = t.rcvbuf_drops {
        println!("  UDP        {drops} datagrams dropped on full socket receive buffers (host-wide RcvbufErrors)");
    }
    for e in errors.iter().take(3) {
        println!("  error      {e}");
    }
    println!(
        "{}",
        json.opt_num("bench_cpu_pct", t.bench_cpu)
            .opt_num("server_cpu_pct", t.server_cpu)
            .opt_num("rcvbuf_drops", t.rcvbuf_drops.map(|d| d as f64))
            .int("errors", errors.len() as u64)
            .finish()
    );
}

fn method_name(m: RequestType) -> &'static str {
    match m {
        RequestType::Get => "GET",
        RequestType::Post => "POST",
        RequestType::Put => "PUT",
        RequestType::Delete => "DELETE",
        _ => "other",
    }
}

/// `--method`.
pub(crate) fn parse_method(s: &str) -> Result<RequestType, String> {
    match s.to_ascii_lowercase().as_str() {
        "get" => Ok(RequestType::Get),
        "post" => Ok(RequestType::Post),
        "put" => Ok(RequestType::Put),
        other => Err(format!("unknown method {other:?}: use get, post or put")),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::expect_used)]
    use super::*;

    /// A device against a fake server on loopback that answers every other NON request and
    /// acknowledges every CON on its second transmission: counts, give-ups and retransmissions.
    #[test]
    fn device_counts_answers_give_ups_and_retransmissions() {
        super::super::clock::init();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let local = tokio::task::LocalSet::new();
        local.block_on(&rt, async {
            for confirmable in [false, true] {
                let server = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
                let addr = server.local_addr().expect("addr");
                let fake = tokio::task::spawn_local(async move {
                    let mut buf = vec![0u8; 2048];
                    let mut seen = std::collections::HashSet::new();
                    let mut n = 0u32;
                    while let Ok(Ok((len, from))) =
                        tokio::time::timeout(Duration::from_millis(500), server.recv_from(&mut buf)).await
                    {
                        let Some(h) = parse(&buf[..len]) else { continue };
                        n += 1;
                        let answer = if h.ty == CON {
                            !seen.insert(h.mid)
                        } else {
                            n.is_multiple_of(2)
                        };
                        if answer {
                            // A piggy-backed ACK for a CON, a NON (type 1) for a NON; 2.04, 8-byte token.
                            let mut r = vec![0x40 | ((if h.ty == CON { ACK } else { 1 }) << 4) | 8, 0x44];
                            r.extend_from_slice(&h.mid.to_be_bytes());
                            r.extend_from_slice(h.token);
                            let _ = server.send_to(&r, from).await;
                        }
                    }
                });
                let sock = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
                sock.connect(addr).await.expect("connect");
                let plan = DevicePlan {
                    index: 0,
                    template: Template::new(&RequestSpec {
                        confirmable,
                        method: RequestType::Post,
                        uri: "ps/t",
                        observe: None,
                        size: 24,
                    })
                    .expect("template"),
                    confirmable,
                    window: 1,
                    interval: Some(0.01),
                    phase: 0.0,
                    duration: Duration::from_millis(100),
                    timeout: Duration::from_millis(20),
                    max_retransmit: 2,
                    drain: Duration::from_secs(1),
                };
                let device = Device {
                    slots: vec![
                        Slot {
                            busy: false,
                            seq: 0,
                            mid: 0,
                            first_ns: 0,
                            deadline: Instant::now(),
                            retransmits: 0,
                            bytes: Vec::new(),
                        };
                        1
                    ],
                    in_flight: 0,
                    next_mid: 1,
                    blocked: false,
                    out: DeviceOutcome::default(),
                    latency: Rc::new(RefCell::new(Histogram::default())),
                    sock,
                    plan,
                };
                let out = device.run(super::super::clock::now_ns()).await;
                let _ = fake.await;
                assert!(out.sent >= 3, "{out:?}");
                assert_eq!(out.sent, out.answered + out.given_up + out.unanswered, "{out:?}");
                if confirmable {
                    assert_eq!(
                        out.answered, out.sent,
                        "every CON answered on its retransmission: {out:?}"
                    );
                    assert_eq!(out.transmissions, 2 * out.sent, "{out:?}");
                } else {
                    assert!(out.given_up >= 1 && out.answered >= 1, "{out:?}");
                    assert_eq!(out.transmissions, out.sent, "NON is never sent again: {out:?}");
                }
            }
        });
    }
}
