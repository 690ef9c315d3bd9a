//! The load tool behind `unigate bench`, in the spirit of emqtt-bench: it speaks MQTT itself,
//! through our own codec over tokio TCP, and reports throughput, end-to-end latency, and
//! lost / duplicated / reordered messages. It drives any MQTT server (Mosquitto included), so
//! the same numbers can be taken for unigate and for a reference broker:
//! `scripts/bench-vs-mosquitto.sh` does that; docs/benchmarks.md explains the scenarios.
//!
//! Layout:
//!
//! - [`scenarios`] and [`idle`]: one function per scenario: plan, run, report.
//! - [`coap`] (`coap-non`, `coap-con`: devices publishing with a window of requests) and
//!   [`observe`] (`coap-observers`: many observers, then MQTT messages fanned out to them);
//!   [`coap_wire`]: CoAP requests patched in place and responses read without allocating.
//! - [`load`]: the engine of the message-flow scenarios: client threads and the coordinator.
//! - [`publisher`], [`subscriber`]: the two client loops; [`client`]: the connection they share;
//!   [`tls_client`]: its TLS (`--tls`, client certificates), sans-IO rustls.
//! - [`payload`] (publisher id, sequence number, send time), [`clock`] (one monotonic clock for
//!   both ends), [`stats`] (latency histogram, sequence tracking), [`report`] (text and JSON),
//!   [`runtime`] (current-thread runtimes on std threads), [`procfs`] (a process's memory and
//!   CPU time).

mod client;
mod clock;
mod coap;
mod coap_wire;
#[cfg(test)]
mod e2e;
mod idle;
mod load;
mod lwm2m;
mod observe;
mod payload;
mod procfs;
mod publisher;
mod report;
mod runtime;
mod scenarios;
mod stats;
mod subscriber;
mod tls_client;

use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};

use anyhow::Context;
use unigate_coap::coap_lite::RequestType;
use unigate_mqtt::{ProtocolVersion, QoS};

pub use tls_client::TlsArgs;

/// Arguments of `unigate bench`.
#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// The scenario to run.
    #[command(subcommand)]
    pub scenario: Scenario,
}

/// The bench scenarios. Each prints human-readable lines, then one JSON line.
#[derive(clap::Subcommand, Debug)]
pub enum Scenario {
    /// N publishers (bench/<run>/<i>) → one subscriber on the wildcard filter bench/<run>/#.
    FanIn(FanInArgs),
    /// One publisher → N subscribers of its topic.
    FanOut(FanOutArgs),
    /// A persistent-session subscriber drops its TCP connection mid-stream, reconnects with
    /// the same client id, and counts lost / duplicated / reordered messages.
    Reconnect(ReconnectArgs),
    /// N connections that CONNECT and stay idle: connect rate, and with --server-pid the
    /// server's memory per connection.
    #[command(alias = "connect-rate")]
    Idle(IdleArgs),
    /// CoAP devices publishing NON `POST /ps/bench/<run>/<i>` as fast as their windows allow;
    /// an MQTT subscriber on bench/<run>/# counts deliveries.
    CoapNon(CoapNonArgs),
    /// CoAP devices publishing CON requests with a window of outstanding requests (1:
    /// stop-and-wait); request rate, ACK latency, and deliveries at the MQTT side.
    CoapCon(CoapConArgs),
    /// Many CoAP observers (`GET /ps/obs/<run>/<i % topics>`, Observe 0): registration rate,
    /// the server's memory per observer (--server-pid), then MQTT messages fanned out to them
    /// as notifications: rate and latency.
    CoapObservers(CoapObserversArgs),
    /// LwM2M devices registering (`POST /rd`), updating and de-registering: rates,
    /// latencies, and with --server-pid the server's memory per registered device.
    Lwm2m(Lwm2mArgs),
}

/// Options every scenario takes.
#[derive(clap::Args, Debug, Clone)]
pub struct CommonArgs {
    /// Server address, host:port.
    #[arg(long, default_value = "127.0.0.1:1883")]
    pub addr: String,
    /// MQTT over WebSocket: upgrade at this path of --addr (e.g. `/mqtt`, subprotocol `mqtt`)
    /// instead of MQTT over TCP. The message-flow scenarios and `idle` take it.
    #[arg(long, value_name = "PATH")]
    pub ws: Option<String>,
    /// MQTT version: 3 (meaning 3.1.1) or 5.
    #[arg(long, default_value = "5", value_parser = parse_version)]
    pub mqtt_version: ProtocolVersion,
    /// Bench threads, each a single-threaded runtime; with 2 or more, subscribers and
    /// publishers run on separate threads.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub threads: u16,
    /// Local addresses the connections come from, in turn: `auto` (on a 127.x.y.z server,
    /// 127.0.0.1 to 127.0.0.64, so that the kernel's ephemeral-port search stays short and
    /// more than ~28,000 connections fit; otherwise the kernel picks), `kernel` (the kernel
    /// picks), or addresses and ranges such as `10.0.0.5,10.0.0.7-10.0.0.9`.
    #[arg(long, default_value = "auto", value_name = "ADDRS")]
    pub source: String,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub tls: TlsArgs,
}

/// Options of the message-flow scenarios.
#[derive(clap::Args, Debug, Clone)]
pub struct FlowArgs {
    /// QoS of publications and subscriptions: 0, 1 or 2.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=2))]
    pub qos: u8,
    /// Payload bytes (at least 20: publisher id, sequence number, send time).
    #[arg(long, default_value_t = 64)]
    pub size: usize,
    /// Seconds to publish for (default 10, or no limit with --count).
    #[arg(long)]
    pub duration: Option<f64>,
    /// Total messages to publish, spread over the publishers.
    #[arg(long)]
    pub count: Option<u64>,
    /// Total messages per second, spread over the publishers; 0 for as fast as possible.
    #[arg(long, default_value_t = 0.0)]
    pub rate: f64,
    /// Unacknowledged QoS 1/2 messages per publisher (lowered to the server's Receive Maximum).
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u16).range(1..=32768))]
    pub inflight: u16,
    /// Longest wait, in seconds, for acknowledgements and deliveries after publishing ends.
    #[arg(long, default_value_t = 10.0)]
    pub drain: f64,
    /// Also print deliveries and the worst latency per 100 ms, to place stalls in time.
    #[arg(long)]
    pub timeline: bool,
    /// Subscribers keep their session (MQTT 5 session expiry 1 h; 3.1.1 clean session 0), so
    /// that a server with storage stores their QoS 1/2 deliveries.
    #[arg(long)]
    pub persistent: bool,
}

/// `unigate bench fan-in`.
#[derive(clap::Args, Debug, Clone)]
pub struct FanInArgs {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub common: CommonArgs,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub flow: FlowArgs,
    /// Publishers.
    #[arg(long, default_value_t = 8)]
    pub publishers: u32,
}

/// `unigate bench fan-out`.
#[derive(clap::Args, Debug, Clone)]
pub struct FanOutArgs {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub common: CommonArgs,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub flow: FlowArgs,
    /// Subscribers.
    #[arg(long, default_value_t = 16)]
    pub subscribers: u32,
}

/// `unigate bench reconnect`.
#[derive(clap::Args, Debug, Clone)]
pub struct ReconnectArgs {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub common: CommonArgs,
    /// QoS: 1 or 2.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=2))]
    pub qos: u8,
    /// Payload bytes (at least 20).
    #[arg(long, default_value_t = 64)]
    pub size: usize,
    /// Messages per second.
    #[arg(long, default_value_t = 1000.0)]
    pub rate: f64,
    /// Seconds to publish for.
    #[arg(long, default_value_t = 6.0)]
    pub duration: f64,
    /// Seconds after the start at which the subscriber drops its connection.
    #[arg(long, default_value_t = 2.0)]
    pub down_after: f64,
    /// Seconds before the drop during which the subscriber reads but sends no acknowledgement,
    /// so that the server holds unacknowledged messages to send again.
    #[arg(long, default_value_t = 0.1)]
    pub silent_before_drop: f64,
    /// Seconds the subscriber stays away.
    #[arg(long, default_value_t = 2.0)]
    pub down_for: f64,
    /// Session Expiry Interval in seconds (MQTT 5; 3.1.1 sessions do not expire).
    #[arg(long, default_value_t = 300)]
    pub session_expiry: u32,
    /// Unacknowledged messages the publisher may have.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u16).range(1..=32768))]
    pub inflight: u16,
    /// Longest wait, in seconds, for deliveries after publishing ends.
    #[arg(long, default_value_t = 10.0)]
    pub drain: f64,
    /// Also print deliveries and the worst latency per 100 ms.
    #[arg(long)]
    pub timeline: bool,
}

/// `unigate bench idle` (alias `connect-rate`).
#[derive(clap::Args, Debug, Clone)]
pub struct IdleArgs {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub common: CommonArgs,
    /// Connections to open.
    #[arg(long, default_value_t = 10_000)]
    pub connections: u32,
    /// Connections in the middle of their handshake at once.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..))]
    pub concurrency: u32,
    /// Seconds to hold the connections open after the last CONNACK.
    #[arg(long, default_value_t = 3.0)]
    pub hold: f64,
    /// Keep alive in seconds; the connections send PINGREQ at half of it.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u16).range(2..))]
    pub keep_alive: u16,
    /// PID of the server, to read its resident memory (VmRSS) before and after.
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// User name sent in every CONNECT (connect rate through an auth chain); `{i}` is replaced
    /// by the connection's number (0, 1, …), in the password too: one account per connection.
    #[arg(long)]
    pub username: Option<String>,
    /// Password sent in every CONNECT: a password-file password, a JWT, or an OAuth2 access
    /// token.
    #[arg(long)]
    pub password: Option<String>,
}

/// Options every CoAP scenario takes.
#[derive(clap::Args, Debug, Clone)]
pub struct CoapArgs {
    /// CoAP server address, host:port (`--addr` is the MQTT side).
    #[arg(long, default_value = "127.0.0.1:5683")]
    pub coap: String,
    /// PID of the server: its CPU time over the run, and for coap-observers its resident
    /// memory (VmRSS) before and after.
    #[arg(long)]
    pub server_pid: Option<u32>,
}

/// Options of `coap-non` and `coap-con`.
#[derive(clap::Args, Debug, Clone)]
pub struct CoapLoadArgs {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub common: CommonArgs,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub coap: CoapArgs,
    /// Simulated devices, each a UDP socket with its own port.
    #[arg(long, default_value_t = 100)]
    pub devices: u32,
    /// Payload bytes (at least 20: device index, sequence number, send time); none with GET.
    #[arg(long, default_value_t = 64)]
    pub size: usize,
    /// Seconds to send for.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Total requests per second, spread over the devices; 0 for as fast as the windows allow.
    #[arg(long, default_value_t = 0.0)]
    pub rate: f64,
    /// Request method: post, put or get.
    #[arg(long, default_value = "post", value_parser = coap::parse_method)]
    pub method: RequestType,
    /// Request URI without the leading slash, query allowed; {run} is replaced by the run's tag
    /// and {i} by the device index.
    #[arg(long, default_value = "ps/bench/{run}/{i}")]
    pub path: String,
    /// The MQTT subscriber's filter ({run} as in --path).
    #[arg(long, default_value = "bench/{run}/#")]
    pub mqtt_filter: String,
    /// No MQTT subscriber: for a server that is not a CoAP-to-MQTT gateway (libcoap's).
    #[arg(long)]
    pub no_mqtt: bool,
    /// Seconds after which an unanswered NON request is given up and a CON request is sent
    /// again (then after twice that, and so on: RFC 7252 §4.2 without the random factor).
    #[arg(long, default_value_t = 2.0)]
    pub timeout: f64,
    /// Retransmissions of a CON request before it is given up.
    #[arg(long, default_value_t = 4)]
    pub max_retransmit: u32,
    /// Longest wait, in seconds, for responses and MQTT deliveries after sending ends.
    #[arg(long, default_value_t = 10.0)]
    pub drain: f64,
}

/// `unigate bench coap-non`.
#[derive(clap::Args, Debug, Clone)]
pub struct CoapNonArgs {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub load: CoapLoadArgs,
    /// Unanswered requests per device.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub window: u16,
    /// QoS of the MQTT subscription.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=2))]
    pub qos: u8,
}

/// `unigate bench coap-con`.
#[derive(clap::Args, Debug, Clone)]
pub struct CoapConArgs {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub load: CoapLoadArgs,
    /// Unacknowledged CON requests per device (1: stop-and-wait, RFC 7252 NSTART).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub window: u16,
    /// QoS of the MQTT subscription (a CON publish is QoS 1).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(0..=2))]
    pub qos: u8,
}

/// `unigate bench coap-observers`.
#[derive(clap::Args, Debug, Clone)]
pub struct CoapObserversArgs {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub common: CommonArgs,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub coap: CoapArgs,
    /// Observers, each a UDP socket with its own port.
    #[arg(long, default_value_t = 10_000)]
    pub observers: u32,
    /// Topics: observer i observes obs/<run>/<i % topics>; one MQTT publisher per topic.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..))]
    pub topics: u32,
    /// Register with CON requests: QoS 1 observations, whose notifications of QoS 1 messages
    /// come as CON and are acknowledged by the bench. Default: NON (QoS 0, NON notifications).
    #[arg(long)]
    pub con: bool,
    /// MQTT messages to publish once every observer is registered, spread over the topics.
    #[arg(long, default_value_t = 1000)]
    pub messages: u64,
    /// Total MQTT messages per second; 0 for as fast as the server takes them.
    #[arg(long, default_value_t = 200.0)]
    pub rate: f64,
    /// QoS of the MQTT messages (default: 1 with --con, else 0).
    #[arg(long, value_parser = clap::value_parser!(u8).range(0..=2))]
    pub qos: Option<u8>,
    /// Payload bytes (at least 20).
    #[arg(long, default_value_t = 64)]
    pub size: usize,
    /// Registrations in flight at once.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..))]
    pub concurrency: u32,
    /// Seconds before a registration is sent again (then twice that, …; 4 times at most).
    #[arg(long, default_value_t = 2.0)]
    pub timeout: f64,
    /// Longest wait, in seconds, for notifications after publishing ends.
    #[arg(long, default_value_t = 10.0)]
    pub drain: f64,
    /// Leave the observations registered at the end instead of cancelling them (Observe 1).
    #[arg(long)]
    pub keep: bool,
}

/// `unigate bench lwm2m`.
#[derive(clap::Args, Debug, Clone)]
pub struct Lwm2mArgs {
    /// LwM2M server address, host:port.
    #[arg(long, default_value = "127.0.0.1:5783")]
    pub lwm2m: String,
    /// Simulated devices, each a UDP socket with its own port.
    #[arg(long, default_value_t = 10_000)]
    pub devices: u32,
    /// Object instances in each registration's link-format payload (at least 2: /1/0, /3/0).
    #[arg(long, default_value_t = 4)]
    pub objects: u32,
    /// Registration lifetime in seconds.
    #[arg(long, default_value_t = 3600)]
    pub lifetime: u32,
    /// Updates each device sends after registering.
    #[arg(long, default_value_t = 1)]
    pub updates: u32,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..))]
    pub concurrency: u32,
    /// Seconds before a request is sent again (then twice that, …; 4 times at most).
    #[arg(long, default_value_t = 2.0)]
    pub timeout: f64,
    /// Bench threads, each a single-threaded runtime.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub threads: u16,
    /// PID of the server: its resident memory (VmRSS) before and after registering, and its
    /// CPU time.
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Leave the devices registered at the end instead of de-registering them.
    #[arg(long)]
    pub keep: bool,
}

/// Runs the load tool.
pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    clock::init();
    match args.scenario {
        Scenario::FanIn(a) => scenarios::fan_in(a),
        Scenario::FanOut(a) => scenarios::fan_out(a),
        Scenario::Reconnect(a) => scenarios::reconnect(a),
        Scenario::Idle(a) => idle::run(a),
        Scenario::CoapNon(a) => coap::run(a.load, false, a.window, a.qos),
        Scenario::CoapCon(a) => coap::run(a.load, true, a.window, a.qos),
        Scenario::CoapObservers(a) => observe::run(a),
        Scenario::Lwm2m(a) => lwm2m::run(a),
    }
}

fn parse_version(s: &str) -> Result<ProtocolVersion, String> {
    match s {
        "3" | "3.1.1" | "4" | "311" => Ok(ProtocolVersion::V3_1_1),
        "5" | "5.0" => Ok(ProtocolVersion::V5),
        other => Err(format!("unknown MQTT version {other:?}: use 3 (3.1.1) or 5")),
    }
}

impl CommonArgs {
    /// The MQTT server: `--addr` resolved, and the TLS settings (PEM files read) with `--tls`.
    /// Where MQTT clients connect: --addr, over WebSocket with --ws, under TLS with --tls.
    fn target(&self) -> anyhow::Result<client::Target> {
        let addr = resolve(&self.addr)?;
        let tls = tls_client::ClientTls::from_args(&self.tls, &self.addr)?;
        let ws_path = match &self.ws {
            None => None,
            Some(path) if path.starts_with('/') && !path.contains(char::is_whitespace) => Some(path.as_str().into()),
            Some(path) => anyhow::bail!("--ws takes a URL path starting with /, not {path:?}"),
        };
        let sources = client::Sources::new(source_addrs(&self.source, addr.ip())?);
        Ok(client::Target {
            addr,
            ws_path,
            tls,
            sources,
        })
    }
}

/// Loopback addresses `--source auto` spreads connections over.
const AUTO_SOURCES: u8 = 64;

/// The local addresses `--source` names, for a server at `server`.
fn source_addrs(spec: &str, server: IpAddr) -> anyhow::Result<Vec<IpAddr>> {
    match spec {
        "kernel" => return Ok(Vec::new()),
        "auto" => {
            return Ok(match server {
                IpAddr::V4(v4) if v4.is_loopback() => (1..=AUTO_SOURCES)
                    .map(|d| IpAddr::V4(Ipv4Addr::new(127, 0, 0, d)))
                    .collect(),
                _ => Vec::new(),
            })
        }
        _ => {}
    }
    let mut addrs = Vec::new();
    for item in spec.split(',').map(str::trim) {
        let bad = || format!("--source: {item:?} is not an IP address or a range first-last");
        match item.split_once('-') {
            None => addrs.push(item.parse::<IpAddr>().with_context(bad)?),
            Some((first, last)) => {
                let first: Ipv4Addr = first.trim().parse().with_context(bad)?;
                let last: Ipv4Addr = last.trim().parse().with_context(bad)?;
                let (a, b) = (u32::from(first), u32::from(last));
                anyhow::ensure!(a <= b, "--source: the range {item} ends before it starts");
                anyhow::ensure!(
                    b - a < 65_536,
                    "--source: the range {item} has more than 65,536 addresses"
                );
                addrs.extend((a..=b).map(|n| IpAddr::V4(Ipv4Addr::from(n))));
            }
        }
    }
    if let Some(other) = addrs.iter().find(|a| a.is_ipv4() != server.is_ipv4()) {
        anyhow::bail!("--source: {other} is not of the server's address family ({server})");
    }
    Ok(addrs)
}

/// The first address `host:port` resolves to.
fn resolve(addr: &str) -> anyhow::Result<SocketAddr> {
    addr.to_socket_addrs()
        .with_context(|| format!("resolving {addr}"))?
        .next()
        .with_context(|| format!("{addr} resolves to no address"))
}

fn qos_of(level: u8) -> anyhow::Result<QoS> {
    QoS::try_from(level).map_err(|e| anyhow::anyhow!("{e}"))
}

/// A short random tag that keeps this run's client ids and topics apart from any other run's.
fn run_tag() -> String {
    format!("{:08x}", rand::random::<u32>())
}

/// Seconds from the command line as a `Duration`, refusing negative and absurd values.
fn seconds(what: &str, secs: f64) -> anyhow::Result<std::time::Duration> {
    std::time::Duration::try_from_secs_f64(secs)
        .ok()
        .filter(|_| secs <= 86_400.0)
        .with_context(|| format!("--{what} must be between 0 and 86400 seconds, not {secs}"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        bench: BenchArgs,
    }

    #[test]
    fn parses_scenarios_and_aliases() {
        let cli = Cli::try_parse_from(["bench", "fan-in", "--qos", "1", "--mqtt-version", "3"]);
        match cli.map(|c| c.bench.scenario) {
            Ok(Scenario::FanIn(a)) => {
                assert_eq!(a.flow.qos, 1);
                assert_eq!(a.common.mqtt_version, ProtocolVersion::V3_1_1);
                assert_eq!(a.publishers, 8);
            }
            other => panic!("{other:?}"),
        }
        let cli = Cli::try_parse_from(["bench", "connect-rate", "--connections", "5"]);
        assert!(matches!(cli.map(|c| c.bench.scenario), Ok(Scenario::Idle(a)) if a.connections == 5));
        assert!(Cli::try_parse_from(["bench", "fan-in", "--qos", "3"]).is_err());
        assert!(Cli::try_parse_from(["bench", "fan-in", "--mqtt-version", "4.5"]).is_err());
        let cli = Cli::try_parse_from(["bench", "coap-con", "--window", "4", "--method", "PUT", "--no-mqtt"]);
        match cli.map(|c| c.bench.scenario) {
            Ok(Scenario::CoapCon(a)) => {
                assert_eq!((a.window, a.qos), (4, 1));
                assert_eq!(a.load.method, RequestType::Put);
                assert!(a.load.no_mqtt);
                assert_eq!(a.load.coap.coap, "127.0.0.1:5683");
            }
            other => panic!("{other:?}"),
        }
        let cli = Cli::try_parse_from(["bench", "coap-non"]);
        assert!(matches!(cli.map(|c| c.bench.scenario), Ok(Scenario::CoapNon(a)) if a.window == 4 && a.qos == 0));
        assert!(Cli::try_parse_from(["bench", "coap-non", "--method", "delete"]).is_err());
    }

    #[test]
    fn parses_tls_options() {
        let cli = Cli::try_parse_from([
            "bench", "idle", "--tls", "--cafile", "ca.pem", "--cert", "c.pem", "--key", "c.key",
        ]);
        match cli.map(|c| c.bench.scenario) {
            Ok(Scenario::Idle(a)) => {
                assert!(a.common.tls.tls);
                assert_eq!(a.common.tls.key, Some("c.key".into()));
                assert_eq!(a.common.tls.server_name, None);
            }
            other => panic!("{other:?}"),
        }
        let cli = Cli::try_parse_from(["bench", "fan-in", "--tls", "--cafile", "ca.pem"]);
        assert!(matches!(cli.map(|c| c.bench.scenario), Ok(Scenario::FanIn(a)) if a.common.tls.tls));
        // A client certificate needs its key, and every TLS option needs --tls.
        assert!(Cli::try_parse_from(["bench", "idle", "--tls", "--cafile", "ca.pem", "--cert", "c.pem"]).is_err());
        assert!(Cli::try_parse_from(["bench", "idle", "--tls", "--cafile", "ca.pem", "--key", "c.key"]).is_err());
        assert!(Cli::try_parse_from(["bench", "idle", "--cafile", "ca.pem"]).is_err());
    }

    #[test]
    fn source_addresses() {
        let v4 = |d: u8| IpAddr::V4(Ipv4Addr::new(127, 0, 0, d));
        let loopback = v4(1);
        let auto = source_addrs("auto", loopback).unwrap();
        assert_eq!((auto.len(), auto[0], auto[63]), (64, v4(1), v4(64)));
        assert_eq!(
            source_addrs("auto", v4(9)).unwrap().len(),
            64,
            "all of 127/8 is loopback"
        );
        assert!(source_addrs("auto", "10.0.0.1".parse().unwrap()).unwrap().is_empty());
        assert!(source_addrs("auto", "::1".parse().unwrap()).unwrap().is_empty());
        assert!(source_addrs("kernel", loopback).unwrap().is_empty());
        assert_eq!(
            source_addrs("10.0.0.5, 10.0.0.7-10.0.0.9", loopback).unwrap(),
            ["10.0.0.5", "10.0.0.7", "10.0.0.8", "10.0.0.9"].map(|a| a.parse::<IpAddr>().unwrap())
        );
        assert_eq!(
            source_addrs("::1", "::1".parse().unwrap()).unwrap(),
            vec!["::1".parse::<IpAddr>().unwrap()]
        );
        for (bad, says) in [
            ("10.0.0.9-10.0.0.7", "ends before it starts"),
            ("10.0.0.0-10.1.0.0", "more than 65,536"),
            ("::1", "address family"),
            ("banana", "not an IP address"),
            ("10.0.0.1-", "not an IP address"),
            ("", "not an IP address"),
        ] {
            let e = source_addrs(bad, loopback).unwrap_err();
            assert!(format!("{e:#}").contains(says), "{bad:?}: {e:#}");
        }
    }

    #[test]
    fn seconds_refuses_negative() {
        assert!(seconds("duration", -1.0).is_err());
        assert!(seconds("duration", f64::NAN).is_err());
        assert_eq!(
            seconds("duration", 1.5).ok(),
            Some(std::time::Duration::from_millis(1500))
        );
    }
}
