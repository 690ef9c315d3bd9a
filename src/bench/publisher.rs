//! A publishing client: sends numbered, time-stamped messages at a paced or unlimited rate and,
//! at QoS 1 and 2, keeps a window of unacknowledged messages so that throughput counts only
//! what the server took responsibility for.
//!
//! One task runs one loop: queue what is due (rate, window and output high-water mark
//! permitting), write without waiting, read acknowledgements without waiting, then either
//! yield (more is due) or sleep until the socket or a timer needs attention.

use std::collections::HashMap;
use std::time::Duration;

use bytes::BytesMut;
use tokio::time::Instant;
use unigate_mqtt::{Packet, PacketId, PubResp, Publish, QoS};

use super::client::{describe_disconnect, Conn, Fill};
use super::clock;
use super::payload::{self, Stamp};
use super::stats::{Acked, Bitset};

/// Output bytes queued before the loop waits for the socket.
const HIGH_WATER: usize = 64 * 1024;

/// What one publisher does.
#[derive(Debug, Clone)]
pub(crate) struct PubPlan {
    /// Index of the publisher in the run; written into each payload.
    pub index: u32,
    /// Topic to publish to.
    pub topic: String,
    /// QoS of every message.
    pub qos: QoS,
    /// Payload size in bytes.
    pub size: usize,
    /// Messages per second; 0 for as fast as the server takes them.
    pub rate: f64,
    /// Where in its interval this publisher starts (0..1), so that paced publishers do not all
    /// fire on the same timer tick.
    pub phase: f64,
    /// Stop after this many messages.
    pub count: Option<u64>,
    /// Stop after this long.
    pub duration: Option<Duration>,
    /// Unacknowledged messages allowed (QoS 1/2); lowered to the server's Receive Maximum.
    pub inflight: u16,
    /// How long to wait for outstanding acknowledgements after the last message.
    pub drain: Duration,
}

/// What one publisher did.
#[derive(Debug, Clone)]
pub(crate) struct PubOutcome {
    /// [`PubPlan::index`].
    pub index: u32,
    /// Messages written.
    pub sent: u64,
    /// Messages the server acknowledged (all of them at QoS 0).
    pub acked: Acked,
    /// How many of them.
    pub acked_count: u64,
    /// Messages the server refused with a failure reason code.
    pub refused: u64,
    /// Messages still unacknowledged at the end.
    pub unacked: u64,
    /// When the last message was queued (bench clock, ns).
    pub last_send_ns: u64,
    /// Why the publisher stopped early.
    pub error: Option<String>,
}

/// A message waiting for its acknowledgement.
#[derive(Debug, Clone, Copy)]
struct InFlight {
    seq: u64,
    /// QoS 2: PUBREC arrived, PUBREL sent, waiting for PUBCOMP.
    released: bool,
}

struct Publisher {
    conn: Conn,
    plan: PubPlan,
    template: Packet,
    pool: BytesMut,
    sent: u64,
    next_id: u16,
    window: usize,
    inflight: HashMap<u16, InFlight>,
    acked: Bitset,
    acked_count: u64,
    refused: u64,
    last_send_ns: u64,
}

/// Publishes from `go_ns` (bench clock) on, until the plan's count or duration is reached and
/// its acknowledgements are in (or the drain time is up). Errors end the run early and are
/// reported in the outcome, with the counts so far.
pub(crate) async fn run(conn: Conn, plan: PubPlan, go_ns: u64) -> (Conn, PubOutcome) {
    let window = usize::from(plan.inflight.min(conn.receive_maximum).max(1));
    let template = Packet::Publish(Publish {
        qos: plan.qos,
        ..Publish::new(plan.topic.clone(), bytes::Bytes::new())
    });
    let mut p = Publisher {
        conn,
        template,
        pool: BytesMut::new(),
        sent: 0,
        next_id: 1,
        window,
        inflight: HashMap::with_capacity(window),
        acked: Bitset::default(),
        acked_count: 0,
        refused: 0,
        last_send_ns: go_ns,
        plan,
    };
    let error = p.drive(go_ns).await.err().map(|e| format!("{e:#}"));
    let acked = if p.plan.qos == QoS::AtMostOnce {
        Acked::AllBelow(p.sent)
    } else {
        Acked::Set(std::mem::take(&mut p.acked))
    };
    let outcome = PubOutcome {
        index: p.plan.index,
        sent: p.sent,
        acked_count: if p.plan.qos == QoS::AtMostOnce {
            p.sent
        } else {
            p.acked_count
        },
        acked,
        refused: p.refused,
        unacked: p.inflight.len() as u64,
        last_send_ns: p.last_send_ns,
        error,
    };
    (p.conn, outcome)
}

impl Publisher {
    async fn drive(&mut self, go_ns: u64) -> anyhow::Result<()> {
        let go = clock::instant_at(go_ns);
        let end = self.plan.duration.map(|d| go + d);
        let count = self.plan.count.unwrap_or(u64::MAX);
        let interval = if self.plan.rate > 0.0 {
            Some(1.0 / self.plan.rate)
        } else {
            None
        };
        let mut drain_end: Option<Instant> = None;
        let keep_alive = Duration::from_secs(30);
        let ping = tokio::time::sleep(keep_alive);
        tokio::pin!(ping);
        loop {
            // Acknowledgements first: they may reopen the window for this round.
            self.read_acks()?;
            let now = Instant::now();
            let producing = drain_end.is_none() && self.sent < count && end.is_none_or(|end| now < end);
            // Whether more is due and could be queued without waiting for anything.
            let mut more_due = false;
            if producing {
                let due = match interval {
                    None => count,
                    Some(interval) => {
                        let ticks = now.duration_since(go).as_secs_f64() / interval - self.plan.phase;
                        if ticks < 0.0 {
                            0
                        } else {
                            (ticks as u64).saturating_add(1).min(count)
                        }
                    }
                };
                let stamp_ns = clock::now_ns();
                while self.sent < due && self.window_open() && self.conn.wbuf.len() < HIGH_WATER {
                    self.queue_message(stamp_ns)?;
                }
                more_due = self.sent < due && self.window_open();
            } else if drain_end.is_none() {
                drain_end = Some(now + self.plan.drain);
            }
            if !producing && (self.inflight.is_empty() || drain_end.is_some_and(|d| now >= d)) {
                // Last PUBRELs; a server that stopped reading does not hold the run up.
                let _ = tokio::time::timeout(Duration::from_secs(2), self.conn.flush()).await;
                return Ok(());
            }
            self.conn.try_flush()?;
            if more_due && self.conn.wbuf.len() < HIGH_WATER {
                // Unlimited (or behind schedule) with room: go round again, after letting the
                // other clients on this thread run and the reactor see new readiness.
                tokio::task::yield_now().await;
                continue;
            }
            if producing && self.sent >= count {
                // The last message is queued: go round to start draining now. Waiting in the
                // `select!` below would wait for an event that, at QoS 0 without --duration,
                // never comes (only the keep-alive timer, 30 s later).
                continue;
            }
            let next_due = match (interval, producing) {
                (Some(interval), true) => {
                    let at = (self.sent as f64 + self.plan.phase) * interval;
                    Some(go + Duration::from_secs_f64(at))
                }
                _ => None,
            };
            let pending_out = self.conn.pending_out();
            tokio::select! {
                biased;
                ready = self.conn.stream.readable() => { ready?; }
                ready = self.conn.stream.writable(), if pending_out => { ready?; }
                () = clock::sleep_until(next_due), if next_due.is_some() && self.window_open() => {}
                () = clock::sleep_until(end), if producing && end.is_some() => {}
                () = clock::sleep_until(drain_end), if drain_end.is_some() => {}
                () = &mut ping => {
                    self.conn.queue(&Packet::PingReq)?;
                    ping.as_mut().reset(Instant::now() + keep_alive);
                }
            }
        }
    }

    fn window_open(&self) -> bool {
        self.plan.qos == QoS::AtMostOnce || self.inflight.len() < self.window
    }

    fn queue_message(&mut self, stamp_ns: u64) -> anyhow::Result<()> {
        let seq = self.sent;
        let stamp = Stamp {
            publisher: self.plan.index,
            seq,
            sent_ns: stamp_ns,
        };
        payload::write(&mut self.pool, stamp, self.plan.size);
        let body = self.pool.split().freeze();
        let packet_id = if self.plan.qos == QoS::AtMostOnce {
            None
        } else {
            Some(self.next_packet_id())
        };
        if let Packet::Publish(publish) = &mut self.template {
            publish.payload = body;
            publish.packet_id = packet_id;
        }
        self.conn.queue(&self.template)?;
        if let Some(id) = packet_id {
            self.inflight.insert(id.get(), InFlight { seq, released: false });
        }
        self.sent += 1;
        self.last_send_ns = stamp_ns;
        Ok(())
    }

    /// The next packet identifier not in flight. The window is far below 65,535, so one is
    /// always free.
    fn next_packet_id(&mut self) -> PacketId {
        loop {
            let id = self.next_id;
            self.next_id = self.next_id.checked_add(1).unwrap_or(1);
            if let Some(id) = PacketId::new(id) {
                if !self.inflight.contains_key(&id.get()) {
                    return id;
                }
            }
        }
    }

    fn read_acks(&mut self) -> anyhow::Result<()> {
        // Bounded: `try_read_buf` does not count against tokio's cooperative budget. Decode
        // first: bytes may be buffered already (read along with the CONNACK).
        for _ in 0..8 {
            while let Some(packet) = self.conn.decode()? {
                self.handle(packet)?;
            }
            match self.conn.try_fill()? {
                Fill::Data => {}
                Fill::Empty => return Ok(()),
                Fill::Eof => anyhow::bail!("the server closed the connection"),
            }
        }
        while let Some(packet) = self.conn.decode()? {
            self.handle(packet)?;
        }
        Ok(())
    }

    fn handle(&mut self, packet: Packet) -> anyhow::Result<()> {
        match packet {
            Packet::PubAck(ack) => {
                if let Some(m) = self.inflight.remove(&ack.packet_id.get()) {
                    self.settle(m.seq, ack.reason_code.0);
                }
            }
            Packet::PubRec(rec) => {
                let id = rec.packet_id;
                if rec.reason_code.0 >= 0x80 {
                    if let Some(m) = self.inflight.remove(&id.get()) {
                        self.settle(m.seq, rec.reason_code.0);
                    }
                    return Ok(());
                }
                if let Some(m) = self.inflight.get_mut(&id.get()) {
                    if !m.released {
                        m.released = true;
                        let seq = m.seq;
                        self.settle(seq, 0);
                    }
                }
                // Also answers a repeated PUBREC (MQTT 5 §4.3.3).
                self.conn.queue(&Packet::PubRel(PubResp::new(id)))?;
            }
            Packet::PubComp(comp) => {
                self.inflight.remove(&comp.packet_id.get());
            }
            Packet::PingResp => {}
            Packet::Disconnect(d) => anyhow::bail!("{}", describe_disconnect(&d)),
            other => anyhow::bail!("unexpected {} sent to a publisher", other.kind()),
        }
        Ok(())
    }

    /// The server answered message `seq` with `reason`: accepted below 0x80, refused above.
    fn settle(&mut self, seq: u64, reason: u8) {
        if reason >= 0x80 {
            self.refused += 1;
        } else if self.acked.insert(seq) {
            self.acked_count += 1;
        }
    }
}
