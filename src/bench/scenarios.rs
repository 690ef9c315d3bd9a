//! The message-flow scenarios: `fan-in`, `fan-out` and `reconnect` turn their arguments into a
//! [`LoadPlan`], run it, and print the [`Summary`].

use std::time::Duration;

use anyhow::bail;
use unigate_mqtt::{ProtocolVersion, QoS};

use super::client::SessionSpec;
use super::load::{self, DropPlan, LoadPlan, SubPlan, Summary};
use super::payload::HEADER_LEN;
use super::publisher::PubPlan;
use super::report::{latency_line, per_sec, Json};
use super::{qos_of, run_tag, seconds, CommonArgs, FanInArgs, FanOutArgs, FlowArgs, ReconnectArgs};

/// Keep alive of the load clients; they ping at half of it when they have nothing to send.
const KEEP_ALIVE: u16 = 60;
/// After the publishers are done, stop waiting once nothing new arrived for this long.
const QUIET: Duration = Duration::from_secs(2);

/// What the report says about the shape of a run.
struct Shape<'a> {
    scenario: &'static str,
    common: &'a CommonArgs,
    qos: QoS,
    size: usize,
    publishers: u32,
    subscribers: u32,
    rate: f64,
    timeline: bool,
}

/// A session for a load client.
fn session(client_id: String) -> SessionSpec {
    SessionSpec {
        client_id,
        clean_start: true,
        session_expiry: 0,
        keep_alive: KEEP_ALIVE,
    }
}

/// The publishers of a flow: `n` of them sharing `--rate` and `--count`, publisher `i` on
/// `topic(i)`.
fn publishers(
    flow: &FlowArgs,
    n: u32,
    tag: &str,
    topic: impl Fn(u32) -> String,
) -> anyhow::Result<Vec<(SessionSpec, PubPlan)>> {
    if flow.size < HEADER_LEN {
        bail!("--size must be at least {HEADER_LEN} bytes (the bench header)");
    }
    if n == 0 {
        bail!("at least one publisher is needed");
    }
    if !(flow.rate >= 0.0 && flow.rate.is_finite()) {
        bail!("--rate must be 0 (unlimited) or a positive number");
    }
    let duration = match (flow.duration, flow.count) {
        (Some(d), _) => Some(seconds("duration", d)?),
        (None, None) => Some(Duration::from_secs(10)),
        (None, Some(_)) => None,
    };
    let drain = seconds("drain", flow.drain)?;
    let qos = qos_of(flow.qos)?;
    Ok((0..n)
        .map(|i| {
            let count = flow
                .count
                .map(|total| total / u64::from(n) + u64::from(u64::from(i) < total % u64::from(n)));
            (
                session(format!("ub-{tag}-pub-{i}")),
                PubPlan {
                    index: i,
                    topic: topic(i),
                    qos,
                    size: flow.size,
                    rate: flow.rate / f64::from(n),
                    phase: f64::from(i) / f64::from(n),
                    count,
                    duration,
                    inflight: flow.inflight,
                    drain,
                },
            )
        })
        .collect())
}

/// `fan-in`: N publishers, each on its own topic, one subscriber on a wildcard over all.
pub(crate) fn fan_in(a: FanInArgs) -> anyhow::Result<()> {
    let tag = run_tag();
    let pubs = publishers(&a.flow, a.publishers, &tag, |i| format!("bench/{tag}/{i}"))?;
    let qos = qos_of(a.flow.qos)?;
    let plan = LoadPlan {
        server: a.common.endpoint()?,
        version: a.common.mqtt_version,
        threads: usize::from(a.common.threads),
        publishers: pubs,
        subscribers: vec![SubPlan {
            session: session(format!("ub-{tag}-sub")),
            filter: format!("bench/{tag}/#"),
            qos,
            drop: None,
        }],
        drain: seconds("drain", a.flow.drain)?,
        quiet: QUIET,
    };
    let summary = load::run(plan)?;
    let shape = Shape {
        scenario: "fan-in",
        common: &a.common,
        qos,
        size: a.flow.size,
        publishers: a.publishers,
        subscribers: 1,
        rate: a.flow.rate,
        timeline: a.flow.timeline,
    };
    println!("{}", flow_json(&shape, &summary).finish());
    Ok(())
}

/// `fan-out`: one publisher, N subscribers of its topic.
pub(crate) fn fan_out(a: FanOutArgs) -> anyhow::Result<()> {
    if a.subscribers == 0 {
        bail!("at least one subscriber is needed");
    }
    let tag = run_tag();
    let topic = format!("bench/{tag}/fan-out");
    let pubs = publishers(&a.flow, 1, &tag, |_| topic.clone())?;
    let qos = qos_of(a.flow.qos)?;
    let plan = LoadPlan {
        server: a.common.endpoint()?,
        version: a.common.mqtt_version,
        threads: usize::from(a.common.threads),
        publishers: pubs,
        subscribers: (0..a.subscribers)
            .map(|i| SubPlan {
                session: session(format!("ub-{tag}-sub-{i}")),
                filter: topic.clone(),
                qos,
                drop: None,
            })
            .collect(),
        drain: seconds("drain", a.flow.drain)?,
        quiet: QUIET,
    };
    let summary = load::run(plan)?;
    let shape = Shape {
        scenario: "fan-out",
        common: &a.common,
        qos,
        size: a.flow.size,
        publishers: 1,
        subscribers: a.subscribers,
        rate: a.flow.rate,
        timeline: a.flow.timeline,
    };
    println!("{}", flow_json(&shape, &summary).finish());
    Ok(())
}

/// `reconnect`: a paced publisher, and a persistent-session subscriber that drops its socket
/// mid-stream and comes back.
pub(crate) fn reconnect(a: ReconnectArgs) -> anyhow::Result<()> {
    let tag = run_tag();
    let qos = qos_of(a.qos)?;
    if a.rate <= 0.0 || !a.rate.is_finite() {
        bail!("--rate must be positive: the reconnect scenario publishes at a steady rate");
    }
    let flow = FlowArgs {
        qos: a.qos,
        size: a.size,
        duration: Some(a.duration),
        count: None,
        rate: a.rate,
        inflight: a.inflight,
        drain: a.drain,
        timeline: a.timeline,
    };
    let down_after = seconds("down-after", a.down_after)?;
    let down_for = seconds("down-for", a.down_for)?;
    if a.down_after + a.down_for >= a.duration {
        eprintln!(
            "bench: note: the subscriber is back only after publishing ends \
             (--down-after + --down-for >= --duration)"
        );
    }
    let v5 = a.common.mqtt_version == ProtocolVersion::V5;
    let plan = LoadPlan {
        server: a.common.endpoint()?,
        version: a.common.mqtt_version,
        threads: usize::from(a.common.threads),
        publishers: publishers(&flow, 1, &tag, |_| format!("bench/{tag}/reconnect"))?,
        subscribers: vec![SubPlan {
            session: SessionSpec {
                client_id: format!("ub-{tag}-persistent"),
                // MQTT 5 can start clean and still keep the session (Session Expiry); 3.1.1
                // keeps a session only without Clean Session, and the fresh client id makes
                // sure there is none to resume on the first CONNECT.
                clean_start: v5,
                session_expiry: a.session_expiry,
                keep_alive: KEEP_ALIVE,
            },
            filter: format!("bench/{tag}/#"),
            qos,
            drop: Some(DropPlan {
                after: down_after,
                silent: seconds("silent-before-drop", a.silent_before_drop)?,
                down: down_for,
            }),
        }],
        drain: seconds("drain", a.drain)?,
        quiet: QUIET,
    };
    let summary = load::run(plan)?;
    let shape = Shape {
        scenario: "reconnect",
        common: &a.common,
        qos,
        size: a.size,
        publishers: 1,
        subscribers: 1,
        rate: a.rate,
        timeline: a.timeline,
    };
    let json = flow_json(&shape, &summary)
        .num("down_after_s", a.down_after)
        .num("down_for_s", a.down_for);
    let reconnection = summary.reconnections.first().copied();
    match reconnection {
        Some(r) => println!(
            "  reconnect  silent from {:.2} s, dropped at {:.2} s for {:.2} s; CONNACK after {:.1} ms, \
             session present: {}",
            a.down_after - a.silent_before_drop,
            a.down_after,
            a.down_for,
            r.connect_ms,
            r.session_present
        ),
        None => println!("  reconnect  did not happen"),
    }
    let json = match reconnection {
        Some(r) => json
            .bool("session_present", r.session_present)
            .num("reconnect_ms", r.connect_ms),
        None => json.null("session_present").null("reconnect_ms"),
    };
    println!("{}", json.finish());
    Ok(())
}

fn version_name(v: ProtocolVersion) -> &'static str {
    match v {
        ProtocolVersion::V3_1 => "3.1",
        ProtocolVersion::V3_1_1 => "3.1.1",
        ProtocolVersion::V5 => "5",
    }
}

/// Prints the human-readable lines and returns the JSON object (without closing it, so a
/// scenario can add its own keys).
fn flow_json(shape: &Shape<'_>, s: &Summary) -> Json {
    let rate = if shape.rate > 0.0 {
        format!("{} msgs/s", shape.rate)
    } else {
        "unlimited rate".to_owned()
    };
    println!(
        "{}: {} publisher(s) → {} subscriber(s), MQTT {}, QoS {}, {}-byte payloads, {}, server {}",
        shape.scenario,
        shape.publishers,
        shape.subscribers,
        version_name(shape.common.mqtt_version),
        shape.qos as u8,
        shape.size,
        rate,
        shape.common.addr
    );
    let sent_per_s = per_sec(s.sent, s.publish_secs);
    let msgs_per_s = per_sec(s.received, s.receive_secs);
    println!(
        "  published  {} in {:.2} s ({:.0} msgs/s); acknowledged {}, refused {}, unacknowledged {}",
        s.sent, s.publish_secs, sent_per_s, s.acked, s.refused, s.unacked
    );
    println!(
        "  received   {} of {} expected in {:.2} s ({:.0} msgs/s)",
        s.received, s.expected, s.receive_secs, msgs_per_s
    );
    println!("  latency    {}", latency_line(&s.latency));
    println!(
        "  delivery   lost {}, duplicated {}, reordered {}{}{}",
        s.delivery.lost,
        s.delivery.duplicated,
        s.delivery.reordered,
        if s.qos2_resent > 0 {
            format!(", QoS 2 re-sends filtered {}", s.qos2_resent)
        } else {
            String::new()
        },
        if s.foreign > 0 {
            format!(", foreign {}", s.foreign)
        } else {
            String::new()
        },
    );
    for e in &s.errors {
        println!("  error      {e}");
    }
    if shape.timeline {
        for (at, count, max) in s.timeline.slots_from(s.go_ns) {
            println!(
                "  t={:>6.1} s  received {count:>8}  worst latency {:>9.1} ms",
                at.saturating_sub(s.go_ns) as f64 / 1e9,
                max as f64 / 1e6
            );
        }
    }
    Json::default()
        .str("scenario", shape.scenario)
        .str("addr", &shape.common.addr)
        .str("mqtt_version", version_name(shape.common.mqtt_version))
        .int("qos", u64::from(shape.qos as u8))
        .int("size", shape.size as u64)
        .int("publishers", u64::from(shape.publishers))
        .int("subscribers", u64::from(shape.subscribers))
        .num("rate", shape.rate)
        .int("sent", s.sent)
        .int("acked", s.acked)
        .int("refused", s.refused)
        .int("unacked", s.unacked)
        .int("expected", s.expected)
        .int("received", s.received)
        .num("publish_s", s.publish_secs)
        .num("receive_s", s.receive_secs)
        .num("sent_per_s", sent_per_s)
        .num("msgs_per_s", msgs_per_s)
        .latency(&s.latency)
        .int("lost", s.delivery.lost)
        .int("duplicated", s.delivery.duplicated)
        .int("reordered", s.delivery.reordered)
        .int("qos2_resent", s.qos2_resent)
        .int("errors", s.errors.len() as u64)
}
