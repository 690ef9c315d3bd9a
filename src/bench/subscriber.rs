//! A subscribing client: acknowledges what the server delivers (PUBACK, or PUBREC / PUBCOMP
//! with the QoS 2 receiver state of MQTT 5 §4.3.3), and counts each message once into the
//! latency histogram and the per-publisher sequence tracker.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;
use unigate_mqtt::{Packet, PubResp, QoS};

use super::client::{describe_disconnect, Conn, Fill};
use super::clock;
use super::payload;
use super::stats::{Histogram, SeqTracker, Timeline};

/// Reads per readiness event before the loop goes back to `select!`.
const READS_PER_WAKE: usize = 8;

/// Everything a subscriber has seen; survives reconnections.
#[derive(Debug, Clone)]
pub(crate) struct Receiver {
    /// Sequence numbers per publisher.
    pub tracker: SeqTracker,
    /// End-to-end latency, ns.
    pub latency: Histogram,
    /// Messages handed to the application (QoS 2 re-sends of an unreleased packet id excluded).
    pub received: u64,
    /// QoS 2 PUBLISH packets re-sent for a packet id still waiting for its PUBREL: the
    /// protocol's duplicates, filtered here as MQTT 5 §4.3.3 method B says.
    pub qos2_resent: u64,
    /// Clock reading of the last message, ns.
    pub last_rx_ns: u64,
    /// Deliveries and worst latency per 100 ms.
    pub timeline: Timeline,
    /// QoS 2 packet ids received and not yet released.
    awaiting_release: HashSet<u16>,
}

/// Why a receive loop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum End {
    /// The run is over.
    Stopped,
    /// The scheduled abrupt disconnect is due.
    DropDue,
}

impl Receiver {
    /// A receiver for publishers `0..publishers`.
    pub(crate) fn new(publishers: usize) -> Self {
        Self {
            tracker: SeqTracker::new(publishers),
            latency: Histogram::default(),
            received: 0,
            qos2_resent: 0,
            last_rx_ns: 0,
            timeline: Timeline::default(),
            awaiting_release: HashSet::new(),
        }
    }

    /// Handles one packet from the server, queueing the answer on `conn`; returns how many
    /// new (not duplicated) messages it delivered.
    fn handle(&mut self, packet: Packet, now_ns: u64, conn: &mut Conn) -> anyhow::Result<u64> {
        match packet {
            Packet::Publish(publish) => {
                let deliver = match (publish.qos, publish.packet_id) {
                    (QoS::AtMostOnce, _) => true,
                    (QoS::AtLeastOnce, Some(id)) => {
                        conn.queue(&Packet::PubAck(PubResp::new(id)))?;
                        true
                    }
                    (QoS::ExactlyOnce, Some(id)) => {
                        conn.queue(&Packet::PubRec(PubResp::new(id)))?;
                        let first = self.awaiting_release.insert(id.get());
                        if !first {
                            self.qos2_resent += 1;
                        }
                        first
                    }
                    (_, None) => anyhow::bail!("QoS {} PUBLISH without a packet id", publish.qos as u8),
                };
                if !deliver {
                    return Ok(0);
                }
                self.received += 1;
                self.last_rx_ns = now_ns;
                let Some(stamp) = payload::read(&publish.payload) else {
                    self.tracker.foreign += 1;
                    return Ok(0);
                };
                let latency = now_ns.saturating_sub(stamp.sent_ns);
                self.latency.record(latency);
                self.timeline.record(now_ns, latency);
                Ok(u64::from(self.tracker.record(stamp.publisher, stamp.seq)))
            }
            Packet::PubRel(rel) => {
                self.awaiting_release.remove(&rel.packet_id.get());
                conn.queue(&Packet::PubComp(PubResp::new(rel.packet_id)))?;
                Ok(0)
            }
            Packet::PingResp | Packet::SubAck(_) => Ok(0),
            Packet::Disconnect(d) => anyhow::bail!("{}", describe_disconnect(&d)),
            other => anyhow::bail!("unexpected {} sent to a subscriber", other.kind()),
        }
    }
}

/// A scheduled abrupt disconnection. From `mute_at` on, the subscriber still reads but no
/// longer acknowledges, as a device that loses power mid-stream: the server then holds
/// unacknowledged messages that it must send again on the resumed session (with DUP). At
/// `drop_at` the receive loop returns.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DropAt {
    /// When acknowledgements stop.
    pub mute_at: Instant,
    /// When the connection is to be dropped.
    pub drop_at: Instant,
}

/// Receives on `conn` until `stop` turns true (or its sender goes away) or `drop.drop_at` is
/// reached. New messages are added to `progress` as they arrive, so the coordinator can tell
/// when everything expected is in.
pub(crate) async fn receive(
    conn: &mut Conn,
    rx: &mut Receiver,
    stop: &mut watch::Receiver<bool>,
    drop: Option<DropAt>,
    progress: &AtomicU64,
) -> anyhow::Result<End> {
    let keep_alive = Duration::from_secs(30);
    let ping = tokio::time::sleep(keep_alive);
    tokio::pin!(ping);
    // Packets that came in with the CONNACK or SUBACK are already buffered: a resumed session's
    // backlog often does, and no readiness event will announce them again.
    let mut fresh = 0;
    while let Some(packet) = conn.decode()? {
        fresh += rx.handle(packet, clock::now_ns(), conn)?;
    }
    progress.fetch_add(fresh, Ordering::Relaxed);
    let drop_at = drop.map(|d| d.drop_at);
    loop {
        if *stop.borrow_and_update() {
            return Ok(End::Stopped);
        }
        let muted = drop.is_some_and(|d| Instant::now() >= d.mute_at);
        let pending_out = conn.pending_out() && !muted;
        tokio::select! {
            biased;
            changed = stop.changed() => {
                if changed.is_err() {
                    return Ok(End::Stopped);
                }
            }
            () = clock::sleep_until(drop_at), if drop_at.is_some() => return Ok(End::DropDue),
            ready = conn.stream.readable() => {
                ready?;
                let mut fresh = 0;
                // A bounded number of reads per wake-up: `try_read_buf` does not count
                // against tokio's cooperative budget, and other clients share this thread.
                for _ in 0..READS_PER_WAKE {
                    match conn.try_fill()? {
                        Fill::Data => {}
                        Fill::Empty => break,
                        Fill::Eof => anyhow::bail!("the server closed the connection"),
                    }
                    let now_ns = clock::now_ns();
                    while let Some(packet) = conn.decode()? {
                        fresh += rx.handle(packet, now_ns, conn)?;
                    }
                    // Acknowledge this batch before reading the next one, so the server's
                    // window towards us reopens as early as possible.
                    if !muted {
                        conn.try_flush()?;
                    }
                }
                if fresh > 0 {
                    progress.fetch_add(fresh, Ordering::Relaxed);
                }
            }
            ready = conn.stream.writable(), if pending_out => {
                ready?;
                conn.try_flush()?;
            }
            () = &mut ping => {
                conn.queue(&Packet::PingReq)?;
                conn.try_flush()?;
                ping.as_mut().reset(Instant::now() + keep_alive);
            }
        }
    }
}
