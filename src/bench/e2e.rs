//! The bench against the real server, in process on a loopback port: the load tool's own
//! counting (loss, duplicates, QoS 2 filtering, reconnection) checked on runs whose right
//! answer is known.

use std::net::SocketAddr;
use std::time::Duration;

use unigate_mqtt::{ProtocolVersion, QoS};

use super::client::{SessionSpec, Target};
use super::load::{self, DropPlan, LoadPlan, SubPlan, Summary};
use super::publisher::PubPlan;
use super::tls_client::{ClientTls, TlsArgs};
use super::{clock, idle, CommonArgs, IdleArgs};
use crate::config::Config;
use crate::server::{self, RunningServer, StartOptions};

fn start_server() -> anyhow::Result<(RunningServer, SocketAddr)> {
    let text = "workers = 2\nsys_interval = \"0s\"\n[[listeners]]\nname = \"mqtt\"\nprotocol = \"mqtt\"\n\
                bind = \"127.0.0.1:0\"\n[[listeners]]\nname = \"ws\"\nprotocol = \"mqtt-ws\"\n\
                bind = \"127.0.0.1:0\"\n";
    let config = Config::parse(text, "bench test", Vec::new())?;
    let running = server::start(config, [127, 0, 0, 1].into(), StartOptions::default())?;
    let addr = running
        .addr("mqtt")
        .ok_or_else(|| anyhow::anyhow!("no mqtt listener"))?;
    Ok((running, addr))
}

fn session(client_id: &str) -> SessionSpec {
    SessionSpec {
        client_id: client_id.to_owned(),
        clean_start: true,
        session_expiry: 0,
        keep_alive: 60,
    }
}

fn publisher(index: u32, topic: &str, qos: QoS, rate: f64) -> PubPlan {
    PubPlan {
        index,
        topic: topic.to_owned(),
        qos,
        size: 32,
        rate,
        phase: 0.0,
        count: None,
        duration: None,
        inflight: 16,
        drain: Duration::from_secs(5),
    }
}

fn plan(addr: SocketAddr, version: ProtocolVersion) -> LoadPlan {
    LoadPlan {
        target: Target::tcp(addr),
        version,
        threads: 2,
        publishers: Vec::new(),
        subscribers: Vec::new(),
        drain: Duration::from_secs(5),
        quiet: Duration::from_secs(1),
    }
}

fn run(plan: LoadPlan) -> anyhow::Result<Summary> {
    clock::init();
    let summary = load::run(plan)?;
    assert!(summary.errors.is_empty(), "client errors: {:?}", summary.errors);
    Ok(summary)
}

#[test]
fn fan_in_qos1_delivers_every_message_once() -> anyhow::Result<()> {
    let (server, addr) = start_server()?;
    let mut p = plan(addr, ProtocolVersion::V5);
    for i in 0..4 {
        let mut pubp = publisher(i, &format!("bench/t1/{i}"), QoS::AtLeastOnce, 0.0);
        pubp.count = Some(2_000);
        p.publishers.push((session(&format!("t1-pub-{i}")), pubp));
    }
    p.subscribers.push(SubPlan {
        session: session("t1-sub"),
        filter: "bench/t1/#".to_owned(),
        qos: QoS::AtLeastOnce,
        drop: None,
    });
    let s = run(p)?;
    assert_eq!((s.sent, s.acked, s.expected), (8_000, 8_000, 8_000));
    assert_eq!(s.received, 8_000);
    assert_eq!(
        (s.delivery.lost, s.delivery.duplicated, s.delivery.reordered),
        (0, 0, 0)
    );
    assert_eq!(s.latency.count(), 8_000);
    server.stop()
}

#[test]
fn fan_in_over_websocket_delivers_every_message_once() -> anyhow::Result<()> {
    let (server, _) = start_server()?;
    let ws = server.addr("ws").ok_or_else(|| anyhow::anyhow!("no ws listener"))?;
    let mut p = plan(ws, ProtocolVersion::V5);
    p.target.ws_path = Some("/mqtt".into());
    for i in 0..2 {
        // Large payloads too: frames over 64 KiB take the 8-byte length.
        let mut pubp = publisher(i, &format!("bench/t6/{i}"), QoS::AtLeastOnce, 0.0);
        pubp.count = Some(1_000);
        pubp.size = if i == 0 { 32 } else { 100_000 };
        p.publishers.push((session(&format!("t6-pub-{i}")), pubp));
    }
    p.subscribers.push(SubPlan {
        session: session("t6-sub"),
        filter: "bench/t6/#".to_owned(),
        qos: QoS::AtLeastOnce,
        drop: None,
    });
    let s = run(p)?;
    assert_eq!((s.sent, s.acked, s.received), (2_000, 2_000, 2_000));
    assert_eq!(
        (s.delivery.lost, s.delivery.duplicated, s.delivery.reordered),
        (0, 0, 0)
    );
    server.stop()
}

#[test]
fn fan_out_paced_mqtt311_reaches_every_subscriber() -> anyhow::Result<()> {
    let (server, addr) = start_server()?;
    let mut p = plan(addr, ProtocolVersion::V3_1_1);
    let mut pubp = publisher(0, "bench/t2/out", QoS::AtMostOnce, 2_000.0);
    pubp.count = Some(400);
    p.publishers.push((session("t2-pub"), pubp));
    for i in 0..3 {
        p.subscribers.push(SubPlan {
            session: session(&format!("t2-sub-{i}")),
            filter: "bench/t2/out".to_owned(),
            qos: QoS::AtMostOnce,
            drop: None,
        });
    }
    let s = run(p)?;
    assert_eq!((s.sent, s.expected, s.received), (400, 1_200, 1_200));
    assert_eq!(s.delivery.lost, 0);
    // 400 messages at 2000/s: about 0.2 s, not as fast as possible.
    assert!(s.publish_secs >= 0.15, "paced run took {} s", s.publish_secs);
    server.stop()
}

/// A persistent subscriber that goes silent, drops its socket and comes back.
fn reconnect_plan(addr: SocketAddr, version: ProtocolVersion, qos: QoS, tag: &str) -> LoadPlan {
    let mut p = plan(addr, version);
    let mut pubp = publisher(0, &format!("bench/{tag}/r"), qos, 500.0);
    pubp.duration = Some(Duration::from_millis(1_500));
    p.publishers.push((session(&format!("{tag}-pub")), pubp));
    p.subscribers.push(SubPlan {
        session: SessionSpec {
            client_id: format!("{tag}-persistent"),
            clean_start: version.is_v5(),
            session_expiry: 60,
            keep_alive: 60,
        },
        filter: format!("bench/{tag}/#"),
        qos,
        drop: Some(DropPlan {
            after: Duration::from_millis(500),
            silent: Duration::from_millis(100),
            down: Duration::from_millis(300),
        }),
    });
    p
}

#[test]
fn reconnect_qos1_loses_nothing_and_redelivers_the_unacknowledged() -> anyhow::Result<()> {
    let (server, addr) = start_server()?;
    for version in [ProtocolVersion::V5, ProtocolVersion::V3_1_1] {
        let s = run(reconnect_plan(addr, version, QoS::AtLeastOnce, "t3"))?;
        let r = s.reconnections.first().copied();
        assert!(r.is_some_and(|r| r.session_present), "{version}: {r:?}");
        assert_eq!(s.delivery.lost, 0, "{version}");
        // Messages read during the silent 100 ms were never acknowledged: QoS 1 sends them again.
        assert!(s.delivery.duplicated > 0, "{version}: no redelivery");
        assert_eq!(s.delivery.unique, s.acked, "{version}");
    }
    server.stop()
}

#[test]
fn reconnect_qos2_delivers_exactly_once() -> anyhow::Result<()> {
    let (server, addr) = start_server()?;
    let s = run(reconnect_plan(addr, ProtocolVersion::V5, QoS::ExactlyOnce, "t4"))?;
    assert_eq!((s.delivery.lost, s.delivery.duplicated), (0, 0));
    assert!(s.qos2_resent > 0, "the server did not resend unreleased QoS 2 messages");
    assert_eq!(s.received, s.acked);
    server.stop()
}

#[test]
fn idle_connections_all_connect() -> anyhow::Result<()> {
    let (server, addr) = start_server()?;
    clock::init();
    let args = IdleArgs {
        common: CommonArgs {
            addr: addr.to_string(),
            ws: None,
            mqtt_version: ProtocolVersion::V5,
            threads: 2,
            source: "auto".to_owned(),
            tls: TlsArgs::default(),
        },
        connections: 200,
        concurrency: 20,
        hold: 0.0,
        keep_alive: 60,
        server_pid: Some(std::process::id()),
        username: None,
        password: None,
    };
    let out = idle::measure(&args)?;
    assert_eq!((out.connected, out.failed, out.closed), (200, 0, 0));
    assert_eq!(out.latency.count(), 200);
    assert!(out.rss_before.is_some() && out.rss_after.is_some());
    assert!(out.cpu_secs.0.is_some() && out.cpu_secs.1.is_some());
    assert!(out.machine.is_some_and(|m| m.busy > 0.0));
    // On loopback the connections came from 127.0.0.1 … 127.0.0.64.
    assert_eq!(out.sources, 64);
    server.stop()
}

/// A CA, a server certificate for 127.0.0.1 / localhost and a client certificate (CN
/// `device-1`), as PEM files in a directory removed on drop.
struct BenchPki {
    dir: std::path::PathBuf,
}

impl BenchPki {
    fn new(name: &str) -> anyhow::Result<BenchPki> {
        use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair};
        let dir = std::env::temp_dir().join(format!("unigate-bench-tls-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        let mut ca = CertificateParams::new(Vec::<String>::new())?;
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name.push(DnType::CommonName, "bench test CA");
        let ca_key = KeyPair::generate()?;
        std::fs::write(dir.join("ca.pem"), ca.self_signed(&ca_key)?.pem())?;
        let issuer = Issuer::new(ca, ca_key);
        for (name, sans, usage) in [
            (
                "server",
                vec!["localhost".to_owned(), "127.0.0.1".to_owned()],
                ExtendedKeyUsagePurpose::ServerAuth,
            ),
            ("device-1", Vec::new(), ExtendedKeyUsagePurpose::ClientAuth),
        ] {
            let key = KeyPair::generate()?;
            let mut p = CertificateParams::new(sans)?;
            p.distinguished_name.push(DnType::CommonName, name);
            p.extended_key_usages.push(usage);
            std::fs::write(dir.join(format!("{name}.pem")), p.signed_by(&key, &issuer)?.pem())?;
            std::fs::write(dir.join(format!("{name}.key")), key.serialize_pem())?;
        }
        Ok(BenchPki { dir })
    }

    fn path(&self, file: &str) -> std::path::PathBuf {
        self.dir.join(file)
    }
}

impl Drop for BenchPki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A server with one TLS listener requiring client certificates, whose chain admits a client
/// by its certificate's CN (the `x509` authenticator) and denies everyone else.
fn start_mtls_server(pki: &BenchPki) -> anyhow::Result<(RunningServer, SocketAddr)> {
    let text = format!(
        "workers = 2\nsys_interval = \"0s\"\n[[listeners]]\nname = \"mqtts\"\nprotocol = \"mqtt\"\n\
         bind = \"127.0.0.1:0\"\nauth = \"certs\"\n\
         tls = {{ cert = {:?}, key = {:?}, client_ca = {:?}, client_auth = \"required\" }}\n\
         [auth.chains.certs]\nauthenticators = [\"cert\"]\nno_match = \"deny\"\n\
         [auth.authenticators.cert]\nkind = \"x509\"\nidentity = \"cn\"\n",
        pki.path("server.pem"),
        pki.path("server.key"),
        pki.path("ca.pem"),
    );
    let config = Config::parse(&text, "bench tls test", Vec::new())?;
    let running = server::start(config, [127, 0, 0, 1].into(), StartOptions::default())?;
    let addr = running
        .addr("mqtts")
        .ok_or_else(|| anyhow::anyhow!("no mqtts listener"))?;
    Ok((running, addr))
}

fn tls_args(pki: &BenchPki, client: Option<&str>, cafile: &str) -> TlsArgs {
    TlsArgs {
        tls: true,
        cafile: Some(pki.path(cafile)),
        cert: client.map(|c| pki.path(&format!("{c}.pem"))),
        key: client.map(|c| pki.path(&format!("{c}.key"))),
        server_name: None,
    }
}

fn idle_args(addr: SocketAddr, tls: TlsArgs) -> IdleArgs {
    IdleArgs {
        common: CommonArgs {
            addr: addr.to_string(),
            mqtt_version: ProtocolVersion::V5,
            threads: 2,
            ws: None,
            source: "auto".to_owned(),
            tls,
        },
        connections: 20,
        concurrency: 5,
        hold: 0.0,
        keep_alive: 60,
        server_pid: None,
        username: None,
        password: None,
    }
}

#[test]
fn idle_connections_over_mtls_get_connack_and_refusals_say_why() -> anyhow::Result<()> {
    let pki = BenchPki::new("idle")?;
    let (server, addr) = start_mtls_server(&pki)?;
    clock::init();
    let out = idle::measure(&idle_args(addr, tls_args(&pki, Some("device-1"), "ca.pem")))?;
    assert_eq!(
        (out.connected, out.failed, out.closed),
        (20, 0, 0),
        "{:?}",
        out.first_error
    );
    assert_eq!(out.latency.count(), 20);

    // No client certificate: the server ends the handshake with an alert.
    let out = idle::measure(&idle_args(addr, tls_args(&pki, None, "ca.pem")))?;
    assert_eq!((out.connected, out.failed), (0, 20));
    let why = out.first_error.unwrap_or_default();
    assert!(why.contains("TLS") && why.contains("alert"), "{why}");

    // A CA the server's certificate does not chain to: the bench refuses the server.
    let out = idle::measure(&idle_args(addr, tls_args(&pki, Some("device-1"), "device-1.pem")))?;
    assert_eq!((out.connected, out.failed), (0, 20));
    let why = out.first_error.unwrap_or_default();
    assert!(why.contains("certificate"), "{why}");
    server.stop()
}

#[test]
fn fan_in_qos1_over_mtls_delivers_every_message_once() -> anyhow::Result<()> {
    let pki = BenchPki::new("fan-in")?;
    let (server, addr) = start_mtls_server(&pki)?;
    let tls = ClientTls::from_args(&tls_args(&pki, Some("device-1"), "ca.pem"), &addr.to_string())?;
    let mut p = plan(addr, ProtocolVersion::V5);
    p.target.tls = tls;
    for i in 0..2 {
        let mut pubp = publisher(i, &format!("bench/t6/{i}"), QoS::AtLeastOnce, 0.0);
        pubp.count = Some(2_000);
        pubp.size = 3_000;
        p.publishers.push((session(&format!("t6-pub-{i}")), pubp));
    }
    p.subscribers.push(SubPlan {
        session: session("t6-sub"),
        filter: "bench/t6/#".to_owned(),
        qos: QoS::AtLeastOnce,
        drop: None,
    });
    let s = run(p)?;
    assert_eq!((s.sent, s.acked, s.received), (4_000, 4_000, 4_000));
    assert_eq!(
        (s.delivery.lost, s.delivery.duplicated, s.delivery.reordered),
        (0, 0, 0)
    );
    server.stop()
}
