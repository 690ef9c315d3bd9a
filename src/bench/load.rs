//! The message-flow engine behind `fan-in`, `fan-out` and `reconnect`: publishers and
//! subscribers on bench threads, and a coordinator on the calling thread.
//!
//! The run has four phases. Every client connects (subscribers also subscribe) and reports
//! ready; the coordinator then stamps "go" on the bench clock and the publishers start; when
//! every publisher is done (count or duration reached, acknowledgements in or the drain time
//! up) the coordinator knows how many messages each subscriber must get, and waits until they
//! have arrived, or nothing new arrives for a quiet period, or the drain time is up; then it
//! stops the subscribers and collects everyone's counts.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use anyhow::bail;
use tokio::sync::watch;
use unigate_mqtt::{ProtocolVersion, QoS};

use super::client::{Conn, Endpoint, SessionSpec, BUSY_READ};
use super::clock;
use super::publisher::{self, PubOutcome, PubPlan};
use super::runtime;
use super::stats::{Acked, Delivery, Histogram, Timeline};
use super::subscriber::{self, DropAt, End, Receiver};

/// How long clients may take to connect and subscribe.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// A scheduled abrupt disconnection of a subscriber.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DropPlan {
    /// Time after "go" at which the socket is dropped.
    pub after: Duration,
    /// For how long before that the subscriber reads without acknowledging.
    pub silent: Duration,
    /// How long the subscriber stays away before reconnecting with the same client id.
    pub down: Duration,
}

/// What one subscriber does.
#[derive(Debug, Clone)]
pub(crate) struct SubPlan {
    /// The first CONNECT's session; a reconnection uses the same id without Clean Start.
    pub session: SessionSpec,
    /// The filter to subscribe to.
    pub filter: String,
    /// The subscription's maximum QoS.
    pub qos: QoS,
    /// An abrupt disconnection to make mid-run.
    pub drop: Option<DropPlan>,
}

/// A whole run.
#[derive(Debug, Clone)]
pub(crate) struct LoadPlan {
    /// The server.
    pub server: Endpoint,
    /// The MQTT version of every client.
    pub version: ProtocolVersion,
    /// Bench threads.
    pub threads: usize,
    /// Publishers, each with its session.
    pub publishers: Vec<(SessionSpec, PubPlan)>,
    /// Subscribers; each subscribes to every publisher's messages.
    pub subscribers: Vec<SubPlan>,
    /// Longest wait for deliveries after the last publisher is done.
    pub drain: Duration,
    /// After the publishers are done, stop once nothing new has arrived for this long.
    pub quiet: Duration,
}

/// What a subscriber's scheduled reconnection looked like.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Reconnection {
    /// The reconnection's CONNACK said Session Present.
    pub session_present: bool,
    /// How long CONNECT → CONNACK took on reconnection, ms.
    pub connect_ms: f64,
}

/// What one subscriber did.
#[derive(Debug, Clone)]
pub(crate) struct SubOutcome {
    /// Its counts.
    pub rx: Receiver,
    /// Why it stopped early.
    pub error: Option<String>,
    /// Its scheduled reconnection, if it made one.
    pub reconnection: Option<Reconnection>,
}

/// The totals of a run.
#[derive(Debug, Clone)]
pub(crate) struct Summary {
    /// Messages published.
    pub sent: u64,
    /// Messages the server acknowledged (= sent at QoS 0).
    pub acked: u64,
    /// Messages the server refused.
    pub refused: u64,
    /// Messages unacknowledged at the end.
    pub unacked: u64,
    /// Deliveries the subscribers should have got: acknowledged messages × subscribers.
    pub expected: u64,
    /// Messages the subscribers got, duplicates included.
    pub received: u64,
    /// Loss, duplicates and reordering against `expected`.
    pub delivery: Delivery,
    /// QoS 2 re-sends filtered by the receivers.
    pub qos2_resent: u64,
    /// Messages that were not bench payloads of this run.
    pub foreign: u64,
    /// End-to-end latency of every delivery, ns.
    pub latency: Histogram,
    /// Deliveries and worst latency per 100 ms.
    pub timeline: Timeline,
    /// "Go" on the bench clock, ns.
    pub go_ns: u64,
    /// Seconds from "go" to the last message published.
    pub publish_secs: f64,
    /// Seconds from "go" to the last message received.
    pub receive_secs: f64,
    /// Client errors.
    pub errors: Vec<String>,
    /// Reconnections made.
    pub reconnections: Vec<Reconnection>,
}

enum Job {
    Pub(SessionSpec, PubPlan),
    Sub(SubPlan),
}

enum JobOutcome {
    Pub(PubOutcome),
    Sub(SubOutcome),
}

enum Event {
    Ready,
    Failed(String),
    PubDone { acked: u64 },
}

/// What every client task shares with the coordinator.
#[derive(Clone)]
struct Ctl {
    server: Endpoint,
    version: ProtocolVersion,
    publishers: usize,
    events: mpsc::Sender<Event>,
    go: watch::Receiver<Option<u64>>,
    stop: watch::Receiver<bool>,
    progress: Arc<AtomicU64>,
}

impl Ctl {
    fn send(&self, event: Event) {
        // The coordinator outlives every client; a closed channel only means it bailed out.
        let _ = self.events.send(event);
    }

    /// Waits for "go"; `None` if the run was stopped first.
    async fn go(&self) -> Option<u64> {
        let mut go = self.go.clone();
        let mut stop = self.stop.clone();
        tokio::select! {
            at = go.wait_for(Option::is_some) => at.ok().and_then(|at| *at),
            _ = stop.wait_for(|stopped| *stopped) => None,
        }
    }
}

/// Runs `plan` and sums up what happened.
pub(crate) fn run(plan: LoadPlan) -> anyhow::Result<Summary> {
    let (events_tx, events) = mpsc::channel();
    let (go_tx, go_rx) = watch::channel(None);
    let (stop_tx, stop_rx) = watch::channel(false);
    let progress = Arc::new(AtomicU64::new(0));
    let ctl = Ctl {
        server: plan.server.clone(),
        version: plan.version,
        publishers: plan.publishers.len(),
        events: events_tx,
        go: go_rx,
        stop: stop_rx,
        progress: progress.clone(),
    };

    // Subscribers and publishers on separate threads when there are two or more.
    let threads = plan.threads.max(1);
    let sub_threads = (threads / 2).max(1);
    let pub_threads = (threads - sub_threads).max(1);
    let pub_offset = if threads == 1 { 0 } else { sub_threads };
    let mut jobs: Vec<Vec<Job>> = (0..threads).map(|_| Vec::new()).collect();
    for (i, sub) in plan.subscribers.iter().enumerate() {
        if let Some(list) = jobs.get_mut(i % sub_threads) {
            list.push(Job::Sub(sub.clone()));
        }
    }
    for (i, (session, p)) in plan.publishers.iter().enumerate() {
        if let Some(list) = jobs.get_mut(pub_offset + i % pub_threads) {
            list.push(Job::Pub(session.clone(), p.clone()));
        }
    }
    let clients = plan.publishers.len() + plan.subscribers.len();
    let mut handles = Vec::new();
    for (i, list) in jobs.into_iter().enumerate() {
        if list.is_empty() {
            continue;
        }
        let ctl = ctl.clone();
        handles.push(runtime::spawn(format!("bench-{i}"), move || run_jobs(list, ctl))?);
    }
    drop(ctl);

    let abort = |handles: Vec<_>, why: String| -> anyhow::Result<Summary> {
        let _ = stop_tx.send(true);
        for h in handles {
            let _ = runtime::join(h);
        }
        bail!(why)
    };

    // Phase 1: everyone connected.
    let deadline = Instant::now() + READY_TIMEOUT;
    let mut ready = 0;
    while ready < clients {
        let left = deadline.saturating_duration_since(Instant::now());
        match events.recv_timeout(left) {
            Ok(Event::Ready) => ready += 1,
            Ok(Event::Failed(why)) => return abort(handles, why),
            Ok(Event::PubDone { .. }) => {}
            Err(_) => {
                return abort(
                    handles,
                    format!("only {ready} of {clients} clients connected within {READY_TIMEOUT:?}"),
                )
            }
        }
    }

    // Phase 2: publish.
    let go_ns = clock::now_ns();
    let _ = go_tx.send(Some(go_ns));
    let mut acked = 0u64;
    let mut done = 0;
    while done < plan.publishers.len() {
        match events.recv() {
            Ok(Event::PubDone { acked: n }) => {
                acked += n;
                done += 1;
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }

    // Phase 3: wait for deliveries.
    let expected = acked * plan.subscribers.len() as u64;
    let drain_end = Instant::now() + plan.drain;
    let mut last = progress.load(Ordering::Relaxed);
    let mut last_change = Instant::now();
    loop {
        let now = Instant::now();
        let got = progress.load(Ordering::Relaxed);
        if got >= expected || now >= drain_end {
            break;
        }
        if got != last {
            last = got;
            last_change = now;
        } else if now.duration_since(last_change) >= plan.quiet {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }

    // Phase 4: stop and collect.
    let _ = stop_tx.send(true);
    let mut pubs = Vec::new();
    let mut subs = Vec::new();
    for h in handles {
        for outcome in runtime::join(h)? {
            match outcome {
                JobOutcome::Pub(p) => pubs.push(p),
                JobOutcome::Sub(s) => subs.push(s),
            }
        }
    }
    Ok(summarize(go_ns, pubs, subs))
}

fn summarize(go_ns: u64, mut pubs: Vec<PubOutcome>, subs: Vec<SubOutcome>) -> Summary {
    pubs.sort_by_key(|p| p.index);
    let acked: Vec<Acked> = pubs.iter().map(|p| p.acked.clone()).collect();
    let acked_total: u64 = pubs.iter().map(|p| p.acked_count).sum();
    let mut s = Summary {
        sent: pubs.iter().map(|p| p.sent).sum(),
        acked: acked_total,
        refused: pubs.iter().map(|p| p.refused).sum(),
        unacked: pubs.iter().map(|p| p.unacked).sum(),
        expected: acked_total * subs.len() as u64,
        received: 0,
        delivery: Delivery::default(),
        qos2_resent: 0,
        foreign: 0,
        latency: Histogram::default(),
        timeline: Timeline::default(),
        go_ns,
        publish_secs: clock::secs_between(go_ns, pubs.iter().map(|p| p.last_send_ns).max().unwrap_or(go_ns)),
        receive_secs: 0.0,
        errors: pubs.iter().filter_map(|p| p.error.clone()).collect(),
        reconnections: Vec::new(),
    };
    let mut last_rx_ns = go_ns;
    for sub in &subs {
        s.received += sub.rx.received;
        s.delivery += sub.rx.tracker.delivery(&acked);
        s.qos2_resent += sub.rx.qos2_resent;
        s.foreign += sub.rx.tracker.foreign;
        s.latency.merge(&sub.rx.latency);
        s.timeline.merge(&sub.rx.timeline);
        last_rx_ns = last_rx_ns.max(sub.rx.last_rx_ns);
        s.errors.extend(sub.error.clone());
        s.reconnections.extend(sub.reconnection);
    }
    s.receive_secs = clock::secs_between(go_ns, last_rx_ns);
    s
}

async fn run_jobs(jobs: Vec<Job>, ctl: Ctl) -> anyhow::Result<Vec<JobOutcome>> {
    let tasks: Vec<_> = jobs
        .into_iter()
        .map(|job| {
            let ctl = ctl.clone();
            tokio::task::spawn_local(async move {
                match job {
                    Job::Pub(session, plan) => JobOutcome::Pub(run_publisher(session, plan, ctl).await),
                    Job::Sub(plan) => JobOutcome::Sub(run_subscriber(plan, ctl).await),
                }
            })
        })
        .collect();
    let mut outcomes = Vec::with_capacity(tasks.len());
    for task in tasks {
        outcomes.push(task.await?);
    }
    Ok(outcomes)
}

async fn run_publisher(session: SessionSpec, plan: PubPlan, ctl: Ctl) -> PubOutcome {
    let mut outcome = PubOutcome {
        index: plan.index,
        sent: 0,
        acked: Acked::AllBelow(0),
        acked_count: 0,
        refused: 0,
        unacked: 0,
        last_send_ns: 0,
        error: None,
    };
    let conn = match Conn::connect(&ctl.server, ctl.version, &session, BUSY_READ).await {
        Ok(conn) => conn,
        Err(e) => {
            let why = format!("publisher {}: {e:#}", plan.index);
            ctl.send(Event::Failed(why.clone()));
            outcome.error = Some(why);
            return outcome;
        }
    };
    ctl.send(Event::Ready);
    let Some(go_ns) = ctl.go().await else {
        return outcome;
    };
    let (conn, mut outcome) = publisher::run(conn, plan, go_ns).await;
    ctl.send(Event::PubDone {
        acked: outcome.acked_count,
    });
    if let Some(e) = &mut outcome.error {
        *e = format!("publisher {}: {e}", outcome.index);
    } else {
        conn.disconnect().await;
    }
    outcome
}

async fn connect_subscriber(plan: &SubPlan, ctl: &Ctl) -> anyhow::Result<Conn> {
    let mut conn = Conn::connect(&ctl.server, ctl.version, &plan.session, BUSY_READ).await?;
    conn.subscribe(&plan.filter, plan.qos).await?;
    Ok(conn)
}

async fn run_subscriber(plan: SubPlan, ctl: Ctl) -> SubOutcome {
    let mut outcome = SubOutcome {
        rx: Receiver::new(ctl.publishers),
        error: None,
        reconnection: None,
    };
    let name = plan.session.client_id.clone();
    let mut conn = match connect_subscriber(&plan, &ctl).await {
        Ok(conn) => conn,
        Err(e) => {
            let why = format!("subscriber {name}: {e:#}");
            ctl.send(Event::Failed(why.clone()));
            outcome.error = Some(why);
            return outcome;
        }
    };
    ctl.send(Event::Ready);
    let mut stop = ctl.stop.clone();
    let mut drop_at = None;
    if let Some(drop_plan) = plan.drop {
        let Some(go_ns) = ctl.go().await else {
            return outcome;
        };
        let drop_at_instant = clock::instant_at(go_ns) + drop_plan.after;
        drop_at = Some(DropAt {
            mute_at: drop_at_instant.checked_sub(drop_plan.silent).unwrap_or(drop_at_instant),
            drop_at: drop_at_instant,
        });
    }
    loop {
        match subscriber::receive(&mut conn, &mut outcome.rx, &mut stop, drop_at, &ctl.progress).await {
            Ok(End::Stopped) => break,
            Ok(End::DropDue) => {
                drop_at = None;
                let down = plan.drop.map_or(Duration::ZERO, |d| d.down);
                match reconnect(conn, &plan, &ctl, down).await {
                    Ok((new_conn, reconnection)) => {
                        conn = new_conn;
                        outcome.reconnection = Some(reconnection);
                    }
                    Err(e) => {
                        outcome.error = Some(format!("subscriber {name}: reconnecting: {e:#}"));
                        forget_session(&plan, &ctl).await;
                        return outcome;
                    }
                }
            }
            Err(e) => {
                outcome.error = Some(format!("subscriber {name}: {e:#}"));
                forget_session(&plan, &ctl).await;
                return outcome;
            }
        }
    }
    conn.disconnect().await;
    forget_session(&plan, &ctl).await;
    outcome
}

/// Drops the connection abruptly (a TCP reset, no DISCONNECT), waits `down`, and connects
/// again with the same client id and Clean Start 0.
async fn reconnect(conn: Conn, plan: &SubPlan, ctl: &Ctl, down: Duration) -> anyhow::Result<(Conn, Reconnection)> {
    // SO_LINGER 0: close() sends RST, as when a device loses power or the network.
    let _ = conn.stream.set_zero_linger();
    drop(conn);
    tokio::time::sleep(down).await;
    let session = SessionSpec {
        clean_start: false,
        ..plan.session.clone()
    };
    let started = clock::now_ns();
    let conn = Conn::connect(&ctl.server, ctl.version, &session, BUSY_READ).await?;
    let connect_ms = clock::secs_between(started, clock::now_ns()) * 1e3;
    let reconnection = Reconnection {
        session_present: conn.session_present,
        connect_ms,
    };
    Ok((conn, reconnection))
}

/// Ends a persistent session so that it does not outlive the run on the server: connect with
/// Clean Start and no expiry, then disconnect.
async fn forget_session(plan: &SubPlan, ctl: &Ctl) {
    if plan.session.clean_start && plan.session.session_expiry == 0 {
        return;
    }
    let session = SessionSpec {
        clean_start: true,
        session_expiry: 0,
        ..plan.session.clone()
    };
    if let Ok(conn) = Conn::connect(&ctl.server, ctl.version, &session, BUSY_READ).await {
        conn.disconnect().await;
    }
}
