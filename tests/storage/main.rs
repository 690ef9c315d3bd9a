//! Durability: the real server as a child process with the embedded store, killed with
//! SIGKILL at random points while QoS 1 and QoS 2 publishers and persistent subscribers work,
//! then restarted. Every message acknowledged to its publisher (PUBACK, PUBREC) must reach its
//! persistent subscriber: QoS 1 at least once, QoS 2 exactly once; retained messages must be
//! at least as new as the last acknowledged one.
//!
//! The clients are raw (the project's codec over a blocking socket) so that the test controls
//! exactly what counts as acknowledged and resends what was not, as a real client does after
//! reconnecting. The QoS 2 subscriber deduplicates by packet id until PUBREL (MQTT 5 §4.3.3,
//! "method B"), remembered across reconnects like a client with its own session state.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../common/mod.rs"]
mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use rand::Rng;
use unigate_mqtt::{
    self as mqtt, Connect, Packet, PacketId, ProtocolVersion, PubResp, Publish, QoS, ReasonCode, Subscribe,
    SubscriptionOptions,
};

/// The server binary with the embedded store in `dir`.
struct Server {
    child: Child,
    addr: SocketAddr,
    /// The HTTP and CoAP listeners.
    http: SocketAddr,
    coap: SocketAddr,
}

impl Server {
    fn start(dir: &Path) -> Server {
        let config = dir.join("unigate.toml");
        std::fs::write(
            &config,
            format!(
                "workers = 2\nsys_interval = \"0s\"\n[[listeners]]\nname = \"mqtt\"\nprotocol = \"mqtt\"\nbind = \"127.0.0.1:0\"\n\
                 [[listeners]]\nname = \"http\"\nprotocol = \"http\"\nbind = \"127.0.0.1:0\"\n\
                 [[listeners]]\nname = \"coap\"\nprotocol = \"coap\"\nbind = \"127.0.0.1:0\"\n\
                 [storage]\nkind = \"embedded\"\npath = \"{}\"\n",
                dir.join("data").display()
            ),
        )
        .unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_unigate"))
            .args(["serve", "--config"])
            .arg(&config)
            .env("UNIGATE_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start unigate");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                for name in ["mqtt", "http", "coap"] {
                    if let Some(addr) = line.strip_prefix(&format!("unigate: listener \"{name}\" ({name}) on ")) {
                        let _ = tx.send((name, addr.trim().parse::<SocketAddr>().unwrap()));
                    }
                }
            }
        });
        let mut addrs = std::collections::HashMap::new();
        while addrs.len() < 3 {
            let (name, addr) = rx
                .recv_timeout(common::TIMEOUT)
                .expect("server announces its listeners");
            addrs.insert(name, addr);
        }
        Server {
            child,
            addr: addrs["mqtt"],
            http: addrs["http"],
            coap: addrs["coap"],
        }
    }

    /// SIGKILL: no flush, no goodbye.
    fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A minimal blocking MQTT 3.1.1 client that reports errors instead of panicking (the server
/// vanishes mid-conversation on purpose).
struct Client {
    stream: TcpStream,
    buf: BytesMut,
}

impl Client {
    fn connect(addr: SocketAddr, id: &str) -> std::io::Result<(Client, bool)> {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
        stream.set_nodelay(true)?;
        let mut c = Client {
            stream,
            buf: BytesMut::new(),
        };
        c.send(&Packet::Connect(Box::new(Connect {
            protocol: ProtocolVersion::V3_1_1,
            clean_start: false,
            client_id: id.to_string(),
            ..Connect::default()
        })))?;
        match c.recv(common::TIMEOUT)? {
            Some(Packet::ConnAck(a)) if a.reason_code == ReasonCode::SUCCESS => Ok((c, a.session_present)),
            other => Err(std::io::Error::other(format!("CONNECT refused: {other:?}"))),
        }
    }

    fn send(&mut self, p: &Packet) -> std::io::Result<()> {
        let mut out = BytesMut::new();
        mqtt::encode(p, ProtocolVersion::V3_1_1, &mut out).unwrap();
        self.stream.write_all(&out)
    }

    /// The next packet; `None` after `wait` without one; an error when the connection is gone.
    fn recv(&mut self, wait: Duration) -> std::io::Result<Option<Packet>> {
        let deadline = Instant::now() + wait;
        loop {
            if let Some(p) = mqtt::decode(&mut self.buf, Some(ProtocolVersion::V3_1_1), mqtt::MAX_PACKET_SIZE)
                .map_err(|e| std::io::Error::other(e.to_string()))?
            {
                return Ok(Some(p));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            self.stream.set_read_timeout(Some(left.max(Duration::from_millis(1))))?;
            let mut chunk = [0u8; 16 * 1024];
            match self.stream.read(&mut chunk) {
                Ok(0) => return Err(ErrorKind::UnexpectedEof.into()),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => return Ok(None),
                Err(e) => return Err(e),
            }
        }
    }
}

fn pid(n: u16) -> PacketId {
    PacketId::new(n).unwrap()
}

fn resp(id: PacketId) -> PubResp {
    PubResp {
        packet_id: id,
        reason_code: ReasonCode::SUCCESS,
        properties: Default::default(),
    }
}

/// A publisher's state, kept across server restarts like a client's session state.
#[derive(Default)]
struct PubState {
    next: u64,
    /// Sent, not acknowledged: packet id → (seq, topic).
    unacked: BTreeMap<u16, (u64, String)>,
    /// QoS 2: PUBREC received, PUBCOMP not yet.
    released: HashSet<u16>,
    /// Acknowledged seqs.
    acked: Vec<u64>,
    /// Retained publisher: topic → highest acknowledged seq.
    retained_acked: HashMap<String, u64>,
}

const WINDOW: usize = 16;

/// Publishes numbered messages until the connection breaks or `stop`; resends what was not
/// acknowledged first (DUP), as MQTT requires after a reconnect with a session.
fn publish_loop(addr: SocketAddr, id: &str, qos: QoS, retained: bool, state: &Mutex<PubState>, stop: &AtomicBool) {
    let Ok((mut c, _)) = Client::connect(addr, id) else {
        return;
    };
    let topic_of = |seq: u64| {
        if retained {
            format!("crash/r/{}", seq % 8)
        } else {
            format!("crash/q{}/x", qos as u8)
        }
    };
    let make = |seq: u64, topic: &str, id: u16, dup: bool| {
        let mut p = Publish::new(topic, seq.to_string().into_bytes());
        p.qos = qos;
        p.retain = retained;
        p.dup = dup;
        p.packet_id = Some(pid(id));
        Packet::Publish(p)
    };
    {
        let st = state.lock().unwrap();
        for (id, (seq, topic)) in &st.unacked {
            if c.send(&make(*seq, topic, *id, true)).is_err() {
                return;
            }
        }
        for id in &st.released {
            if c.send(&Packet::PubRel(resp(pid(*id)))).is_err() {
                return;
            }
        }
    }
    loop {
        {
            let mut st = state.lock().unwrap();
            while st.unacked.len() + st.released.len() < WINDOW && !stop.load(Ordering::Relaxed) {
                st.next += 1;
                let seq = st.next;
                let id = (seq % 60_000) as u16 + 1;
                if st.unacked.contains_key(&id) || st.released.contains(&id) {
                    st.next -= 1;
                    break;
                }
                let topic = topic_of(seq);
                if c.send(&make(seq, &topic, id, false)).is_err() {
                    // Not known to have been sent: it may or may not have arrived; resend it.
                    st.unacked.insert(id, (seq, topic));
                    return;
                }
                st.unacked.insert(id, (seq, topic));
            }
        }
        let packet = match c.recv(Duration::from_millis(200)) {
            Ok(Some(p)) => p,
            Ok(None) if stop.load(Ordering::Relaxed) => return,
            Ok(None) => continue,
            Err(_) => return,
        };
        let mut st = state.lock().unwrap();
        match packet {
            Packet::PubAck(r) | Packet::PubRec(r) => {
                if let Some((seq, topic)) = st.unacked.remove(&r.packet_id.get()) {
                    st.acked.push(seq);
                    if retained {
                        let e = st.retained_acked.entry(topic).or_insert(0);
                        *e = (*e).max(seq);
                    }
                    if qos == QoS::ExactlyOnce {
                        st.released.insert(r.packet_id.get());
                        drop(st);
                        if c.send(&Packet::PubRel(resp(r.packet_id))).is_err() {
                            return;
                        }
                    }
                }
            }
            Packet::PubComp(r) => {
                st.released.remove(&r.packet_id.get());
            }
            _ => {}
        }
    }
}

/// What a persistent subscriber received, kept across reconnects.
#[derive(Default)]
struct SubState {
    got: Vec<u64>,
    /// QoS 2 packet ids received and not yet released: a PUBLISH with one of them is a resend.
    awaiting_rel: HashSet<u16>,
}

/// Receives until the connection breaks, `stop`, or (with `idle`) that long without a message.
fn subscribe_loop(
    addr: SocketAddr,
    id: &str,
    filter: &str,
    qos: QoS,
    state: &Mutex<SubState>,
    stop: &AtomicBool,
    idle: Option<Duration>,
) -> Option<bool> {
    let (mut c, present) = Client::connect(addr, id).ok()?;
    if !present {
        let opts = SubscriptionOptions {
            qos,
            ..Default::default()
        };
        c.send(&Packet::Subscribe(Subscribe {
            packet_id: pid(1),
            filters: vec![(filter.to_string(), opts)],
            properties: Default::default(),
        }))
        .ok()?;
    }
    let mut last = Instant::now();
    loop {
        if stop.load(Ordering::Relaxed) || idle.is_some_and(|i| last.elapsed() > i) {
            return Some(present);
        }
        let packet = match c.recv(Duration::from_millis(100)) {
            Ok(Some(p)) => p,
            Ok(None) => continue,
            Err(_) => return Some(present),
        };
        last = Instant::now();
        let mut st = state.lock().unwrap();
        let reply = match packet {
            Packet::Publish(p) => {
                let seq: u64 = std::str::from_utf8(&p.payload).unwrap().parse().unwrap();
                let id = p.packet_id.expect("QoS > 0");
                match p.qos {
                    QoS::AtLeastOnce => {
                        st.got.push(seq);
                        Packet::PubAck(resp(id))
                    }
                    _ => {
                        if st.awaiting_rel.insert(id.get()) {
                            st.got.push(seq);
                        }
                        Packet::PubRec(resp(id))
                    }
                }
            }
            Packet::PubRel(r) => {
                st.awaiting_rel.remove(&r.packet_id.get());
                Packet::PubComp(resp(r.packet_id))
            }
            _ => continue,
        };
        drop(st);
        if c.send(&reply).is_err() {
            return Some(present);
        }
    }
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("storage-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn kill_9_loses_no_acknowledged_message() {
    const ROUNDS: usize = 6;
    let dir = temp_dir("crash");
    let q1 = Arc::new(Mutex::new(PubState::default()));
    let q2 = Arc::new(Mutex::new(PubState::default()));
    let rt = Arc::new(Mutex::new(PubState::default()));
    let s1 = Arc::new(Mutex::new(SubState::default()));
    let s2 = Arc::new(Mutex::new(SubState::default()));
    let mut rng = rand::thread_rng();

    // The subscribers make their persistent sessions, then go away.
    {
        let server = Server::start(&dir);
        let stop = AtomicBool::new(false);
        let idle = Some(Duration::from_millis(300));
        subscribe_loop(server.addr, "sub-q1", "crash/q1/#", QoS::AtLeastOnce, &s1, &stop, idle).unwrap();
        subscribe_loop(server.addr, "sub-q2", "crash/q2/#", QoS::ExactlyOnce, &s2, &stop, idle).unwrap();
        server.kill();
    }

    for round in 0..ROUNDS {
        let server = Server::start(&dir);
        let addr = server.addr;
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        for (id, qos, retained, st) in [
            ("pub-q1", QoS::AtLeastOnce, false, q1.clone()),
            ("pub-q2", QoS::ExactlyOnce, false, q2.clone()),
            ("pub-retained", QoS::AtLeastOnce, true, rt.clone()),
        ] {
            let stop = stop.clone();
            threads.push(std::thread::spawn(move || {
                publish_loop(addr, id, qos, retained, &st, &stop)
            }));
        }
        // Every other round the subscribers are online too, so the kill also hits deliveries
        // in flight and acknowledgements not yet committed.
        if round % 2 == 1 {
            for (id, filter, qos, st) in [
                ("sub-q1", "crash/q1/#", QoS::AtLeastOnce, s1.clone()),
                ("sub-q2", "crash/q2/#", QoS::ExactlyOnce, s2.clone()),
            ] {
                let stop = stop.clone();
                threads.push(std::thread::spawn(move || {
                    subscribe_loop(addr, id, filter, qos, &st, &stop, None);
                }));
            }
        }
        std::thread::sleep(Duration::from_millis(rng.gen_range(150..450)));
        server.kill();
        stop.store(true, Ordering::Relaxed);
        for t in threads {
            t.join().unwrap();
        }
        eprintln!(
            "round {round}: acknowledged q1 {} q2 {} retained {}; received q1 {} q2 {}",
            q1.lock().unwrap().acked.len(),
            q2.lock().unwrap().acked.len(),
            rt.lock().unwrap().acked.len(),
            s1.lock().unwrap().got.len(),
            s2.lock().unwrap().got.len()
        );
    }

    // Restart for good; let the publishers finish what they had in flight, then drain the
    // subscribers.
    let server = Server::start(&dir);
    let stop = Arc::new(AtomicBool::new(false));
    let mut threads = Vec::new();
    for (id, qos, retained, st) in [
        ("pub-q1", QoS::AtLeastOnce, false, q1.clone()),
        ("pub-q2", QoS::ExactlyOnce, false, q2.clone()),
        ("pub-retained", QoS::AtLeastOnce, true, rt.clone()),
    ] {
        let (stop, addr) = (stop.clone(), server.addr);
        threads.push(std::thread::spawn(move || {
            publish_loop(addr, id, qos, retained, &st, &stop)
        }));
    }
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    let never = AtomicBool::new(false);
    let idle = Some(Duration::from_millis(1500));
    let present1 = subscribe_loop(server.addr, "sub-q1", "crash/q1/#", QoS::AtLeastOnce, &s1, &never, idle);
    let present2 = subscribe_loop(server.addr, "sub-q2", "crash/q2/#", QoS::ExactlyOnce, &s2, &never, idle);
    assert_eq!(present1, Some(true), "QoS 1 subscriber's session survived");
    assert_eq!(present2, Some(true), "QoS 2 subscriber's session survived");

    let q1 = q1.lock().unwrap();
    let got1: HashSet<u64> = s1.lock().unwrap().got.iter().copied().collect();
    let lost1: Vec<u64> = q1.acked.iter().filter(|s| !got1.contains(s)).copied().collect();
    assert!(
        q1.acked.len() > 100,
        "the QoS 1 publisher got going ({} acknowledged)",
        q1.acked.len()
    );
    assert!(
        lost1.is_empty(),
        "QoS 1: {} of {} acknowledged lost: {:?}",
        lost1.len(),
        q1.acked.len(),
        &lost1[..lost1.len().min(20)]
    );

    let q2 = q2.lock().unwrap();
    let s2 = s2.lock().unwrap();
    let mut count: HashMap<u64, usize> = HashMap::new();
    for s in &s2.got {
        *count.entry(*s).or_insert(0) += 1;
    }
    let lost2: Vec<u64> = q2.acked.iter().filter(|s| !count.contains_key(s)).copied().collect();
    let dup2: Vec<u64> = count.iter().filter(|(_, n)| **n > 1).map(|(s, _)| *s).collect();
    assert!(
        q2.acked.len() > 100,
        "the QoS 2 publisher got going ({} acknowledged)",
        q2.acked.len()
    );
    assert!(
        lost2.is_empty(),
        "QoS 2: {} of {} acknowledged lost: {:?}",
        lost2.len(),
        q2.acked.len(),
        &lost2[..lost2.len().min(20)]
    );
    assert!(dup2.is_empty(), "QoS 2 delivered twice: {dup2:?}");

    // Retained: each topic holds the last acknowledged value or a later one.
    let rt = rt.lock().unwrap();
    let mut c = Client::connect(server.addr, "retained-reader").unwrap().0;
    let opts = SubscriptionOptions {
        qos: QoS::AtLeastOnce,
        ..Default::default()
    };
    c.send(&Packet::Subscribe(Subscribe {
        packet_id: pid(1),
        filters: vec![("crash/r/#".to_string(), opts)],
        properties: Default::default(),
    }))
    .unwrap();
    let mut retained: HashMap<String, u64> = HashMap::new();
    while let Some(p) = c.recv(Duration::from_millis(500)).unwrap() {
        if let Packet::Publish(p) = p {
            assert!(p.retain);
            retained.insert(
                p.topic.clone(),
                std::str::from_utf8(&p.payload).unwrap().parse().unwrap(),
            );
            if let Some(id) = p.packet_id {
                c.send(&Packet::PubAck(resp(id))).unwrap();
            }
        }
    }
    assert!(!rt.retained_acked.is_empty());
    for (topic, acked) in &rt.retained_acked {
        let have = retained.get(topic).copied();
        assert!(
            have.is_some_and(|v| v >= *acked),
            "retained {topic}: acknowledged {acked}, have {have:?}"
        );
    }
    server.kill();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_corrupt_store_stops_the_start_with_the_way_out() {
    let dir = temp_dir("corrupt");
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    let file = data.join("unigate.redb");
    std::fs::write(&file, vec![0xa5u8; 100_000]).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_unigate"))
        .args(["serve", "--storage", "embedded", "--config"])
        .arg({
            let config = dir.join("unigate.toml");
            std::fs::write(
                &config,
                format!(
                    "sys_interval = \"0s\"\n[[listeners]]\nname = \"mqtt\"\nprotocol = \"mqtt\"\nbind = \"127.0.0.1:0\"\n[storage]\npath = \"{}\"\n",
                    data.display()
                ),
            )
            .unwrap();
            config
        })
        .env("UNIGATE_LOG", "error")
        .output()
        .unwrap();
    assert!(!out.status.success(), "started on a corrupt store");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("storage:"), "{stderr}");
    assert!(stderr.contains("unigate store inspect"), "{stderr}");
    assert!(stderr.contains("move the file aside"), "{stderr}");
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("listener"),
        "no listener opened"
    );
    assert_eq!(std::fs::read(&file).unwrap().len(), 100_000, "the file is left alone");
    // `unigate store inspect` says the same, and the documented recovery works.
    let inspect = Command::new(env!("CARGO_BIN_EXE_unigate"))
        .args(["store", "inspect", "--path"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(!inspect.status.success());
    std::fs::rename(&file, data.join("unigate.redb.broken")).unwrap();
    let server = Server::start(&dir);
    server.kill();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn serve_defaults_to_the_embedded_store_in_data() {
    let dir = temp_dir("default");
    std::fs::write(
        dir.join("unigate.toml"),
        "sys_interval = \"0s\"\n[[listeners]]\nname = \"mqtt\"\nprotocol = \"mqtt\"\nbind = \"127.0.0.1:0\"\n",
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_unigate"))
        .args(["serve", "--config", "unigate.toml"])
        .current_dir(&dir)
        .env("UNIGATE_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    assert!(first.contains("listener \"mqtt\""), "{first}");
    assert!(dir.join("data").join("unigate.redb").exists(), "no store in ./data");
    child.kill().unwrap();
    child.wait().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

/// One HTTP/1.1 request on a fresh connection; the status and body.
fn http(addr: SocketAddr, method: &str, path: &str, body: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut c = std::net::TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(common::TIMEOUT)).unwrap();
    write!(
        c,
        "{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    c.read_to_string(&mut out).unwrap();
    let status = out.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// A CON `POST /ps/{topic}?qos=1&retain=true`; the response code as `class * 100 + detail`.
fn coap_retain(sock: &std::net::UdpSocket, server: SocketAddr, topic: &str, payload: &[u8], mid: u16) -> u16 {
    use unigate_coap::coap_lite::{CoapOption, MessageClass, MessageType, Packet as CoapPacket, RequestType};
    let mut p = CoapPacket::new();
    p.header.set_type(MessageType::Confirmable);
    p.header.code = MessageClass::Request(RequestType::Post);
    p.header.message_id = mid;
    p.set_token(mid.to_be_bytes().to_vec());
    p.add_option(CoapOption::UriPath, b"ps".to_vec());
    for seg in topic.split('/') {
        p.add_option(CoapOption::UriPath, seg.as_bytes().to_vec());
    }
    p.add_option(CoapOption::UriQuery, b"qos=1".to_vec());
    p.add_option(CoapOption::UriQuery, b"retain=true".to_vec());
    p.payload = payload.to_vec();
    sock.send_to(&p.to_bytes().unwrap(), server).unwrap();
    let mut buf = [0u8; 2048];
    loop {
        let (n, _) = sock.recv_from(&mut buf).expect("a CoAP answer in time");
        let r = CoapPacket::from_bytes(&buf[..n]).unwrap();
        if r.get_token() == mid.to_be_bytes() {
            if let MessageClass::Response(code) = r.header.code {
                let raw: u8 = MessageClass::Response(code).into();
                return u16::from(raw >> 5) * 100 + u16::from(raw & 0x1f);
            }
        }
    }
}

#[test]
fn retained_publishes_over_mqtt_http_and_coap_are_durable_once_acknowledged() {
    let dir = temp_dir("http-coap");
    let s = Server::start(&dir);
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(common::TIMEOUT)).unwrap();
    let (mut mqtt, _) = Client::connect(s.addr, "retainer").unwrap();
    for i in 0..40u16 {
        let body = format!(r#"{{"topic":"h/{i}","payload":"v{i}","qos":1,"retain":true}}"#);
        assert_eq!(http(s.http, "POST", "/api/v1/publish", &body).0, 200);
        assert_eq!(
            coap_retain(&sock, s.coap, &format!("c/{i}"), format!("v{i}").as_bytes(), i + 1),
            204
        );
        // MQTT: QoS 1 retained, PUBACK awaited (no subscriber: only the retained store to wait for).
        let mut p = Publish::new(format!("m/{i}"), format!("v{i}").into_bytes());
        p.qos = QoS::AtLeastOnce;
        p.retain = true;
        p.packet_id = Some(pid(i + 1));
        mqtt.send(&Packet::Publish(p)).unwrap();
        match mqtt.recv(common::TIMEOUT).unwrap() {
            Some(Packet::PubAck(a)) => assert_eq!(a.packet_id, pid(i + 1)),
            other => panic!("expected PUBACK, got {other:?}"),
        }
    }
    // Killed right after the last answer: everything answered is on disk.
    s.kill();
    let s = Server::start(&dir);
    let mut lost = Vec::new();
    for i in 0..40 {
        for prefix in ["m", "h", "c"] {
            let (status, body) = http(s.http, "GET", &format!("/topics/{prefix}/{i}"), "");
            if status != 200 || !body.contains(&format!("\"v{i}\"")) {
                lost.push(format!("{prefix}/{i}"));
            }
        }
    }
    assert!(lost.is_empty(), "acknowledged and lost: {lost:?}");
    drop(s);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_subscription_acknowledged_survives_kill_9() {
    let dir = temp_dir("suback");
    let s = Server::start(&dir);
    let mut subs = Vec::new();
    for i in 0..20 {
        let id = format!("sub{i}");
        let (mut c, _) = Client::connect(s.addr, &id).unwrap();
        c.send(&Packet::Subscribe(Subscribe {
            packet_id: pid(1),
            filters: vec![(format!("sa/{i}"), SubscriptionOptions::new(QoS::AtLeastOnce))],
            properties: Default::default(),
        }))
        .unwrap();
        match c.recv(common::TIMEOUT).unwrap() {
            Some(Packet::SubAck(_)) => {}
            other => panic!("expected SUBACK, got {other:?}"),
        }
        subs.push((id, c));
    }
    // Killed right after the last SUBACK: every acknowledged subscription is on disk.
    s.kill();
    drop(subs);
    let s = Server::start(&dir);
    let (mut publisher, _) = Client::connect(s.addr, "pub").unwrap();
    for i in 0..20u16 {
        let mut p = Publish::new(format!("sa/{i}"), b"x".to_vec());
        p.qos = QoS::AtLeastOnce;
        p.packet_id = Some(pid(i + 1));
        publisher.send(&Packet::Publish(p)).unwrap();
        assert!(matches!(
            publisher.recv(common::TIMEOUT).unwrap(),
            Some(Packet::PubAck(_))
        ));
    }
    let mut lost = Vec::new();
    for i in 0..20 {
        let (mut c, present) = Client::connect(s.addr, &format!("sub{i}")).unwrap();
        let got = matches!(c.recv(Duration::from_secs(2)).unwrap(), Some(Packet::Publish(_)));
        if !(present && got) {
            lost.push(i);
        }
    }
    assert!(lost.is_empty(), "subscriptions acknowledged and lost: {lost:?}");
    drop(s);
    let _ = std::fs::remove_dir_all(&dir);
}
