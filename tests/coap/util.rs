//! Helpers: a server with an MQTT and a CoAP listener, an MQTT client whose messages arrive on
//! a channel, `coap-client-openssl` runs, and a raw CoAP client over UDP.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, Publish, QoS};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use unigate_coap::coap_lite::{MessageClass, MessageType, Packet as CoapPacket, RequestType};

pub use crate::common::proc::Proc;
pub use crate::common::{TestServer, TIMEOUT};

/// How long a test listens to prove that something does NOT arrive.
pub const QUIET: Duration = Duration::from_millis(300);

/// Runs `f` under [`TIMEOUT`]; panics naming `what` if it does not finish.
pub async fn within<F: Future>(what: &str, f: F) -> F::Output {
    match tokio::time::timeout(TIMEOUT, f).await {
        Ok(v) => v,
        Err(_) => panic!("timed out after {TIMEOUT:?} waiting for {what}"),
    }
}

/// Polls `cond` every 10 ms until it holds (bounded by [`TIMEOUT`]).
pub async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    within(what, async {
        while !cond() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
}

/// A server with an MQTT listener (`mqtt`) and a CoAP listener (`coap`); `top` goes first
/// (whole tables such as `[coap]`).
pub fn server(top: &str) -> TestServer {
    server_with(top, "")
}

/// [`server`] with `coap_keys` added to the CoAP listener's table (e.g. `auth = "users"`).
pub fn server_with(top: &str, coap_keys: &str) -> TestServer {
    TestServer::start_text(&format!(
        "workers = 2\nsys_interval = \"0s\"\n{top}\n\
         [[listeners]]\nname = \"mqtt\"\nprotocol = \"mqtt\"\nbind = \"127.0.0.1:0\"\n\
         [[listeners]]\nname = \"coap\"\nprotocol = \"coap\"\nbind = \"127.0.0.1:0\"\n{coap_keys}\n"
    ))
}

/// `coap://127.0.0.1:{port}{path}`.
pub fn uri(s: &TestServer, path: &str) -> String {
    format!("coap://127.0.0.1:{}{}", s.listener("coap").port(), path)
}

/// Runs `coap-client-openssl` with `args` to completion; returns its stdout lines.
pub fn coap_client(args: &[&str]) -> Vec<String> {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let mut p = Proc::spawn("coap-client-openssl", &args);
    // The tests are async and this waits for a process: hand this worker's queued tasks (a
    // proxy's forwarding loop, an MQTT client's event loop) to another thread meanwhile, or a
    // task in the worker's LIFO slot would wait for the whole run of coap-client.
    tokio::task::block_in_place(|| p.finish().1)
}

/// Starts `coap-client-openssl` and leaves it running (an observer).
pub fn coap_client_bg(args: &[&str]) -> Proc {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    Proc::spawn("coap-client-openssl", &args)
}

/// An MQTT 3.1.1 client whose incoming PUBLISHes arrive on a channel.
pub struct Mqtt {
    pub client: AsyncClient,
    rx: mpsc::UnboundedReceiver<Publish>,
    suback: mpsc::UnboundedReceiver<()>,
    task: tokio::task::JoinHandle<()>,
}

impl Mqtt {
    pub async fn connect(s: &TestServer, id: &str) -> Mqtt {
        let mut opts = MqttOptions::new(id, "127.0.0.1", s.port());
        opts.set_keep_alive(Duration::from_secs(30));
        let (client, mut ev) = AsyncClient::new(opts, 100);
        let (tx, rx) = mpsc::unbounded_channel();
        let (stx, suback) = mpsc::unbounded_channel();
        let (ctx, mut connected) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            loop {
                match ev.poll().await {
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let _ = tx.send(p);
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        let _ = stx.send(());
                    }
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        let _ = ctx.send(());
                    }
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
        });
        within("CONNACK", connected.recv()).await.expect("connected");
        Mqtt {
            client,
            rx,
            suback,
            task,
        }
    }

    pub async fn subscribe(&mut self, filter: &str, qos: QoS) {
        self.client.subscribe(filter, qos).await.unwrap();
        within("SUBACK", self.suback.recv()).await.expect("suback");
    }

    pub async fn publish(&self, topic: &str, qos: QoS, retain: bool, payload: impl Into<Vec<u8>>) {
        self.client.publish(topic, qos, retain, payload.into()).await.unwrap();
    }

    pub async fn recv(&mut self) -> Publish {
        within("a PUBLISH", self.rx.recv()).await.expect("client running")
    }

    /// Proves nothing arrives for [`QUIET`].
    pub async fn assert_silent(&mut self) {
        if let Ok(Some(p)) = tokio::time::timeout(QUIET, self.rx.recv()).await {
            panic!("unexpected PUBLISH on {}: {:?}", p.topic, p.payload);
        }
    }
}

impl Drop for Mqtt {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A CoAP endpoint on its own UDP socket, building packets by hand.
pub struct RawCoap {
    pub sock: UdpSocket,
    pub server: SocketAddr,
    pub next_mid: u16,
}

impl RawCoap {
    pub async fn new(s: &TestServer) -> RawCoap {
        let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        RawCoap {
            sock,
            server: s.listener("coap"),
            next_mid: 0x1000,
        }
    }

    pub fn mid(&mut self) -> u16 {
        self.next_mid = self.next_mid.wrapping_add(1);
        self.next_mid
    }

    /// A request packet: `path` like "ps/a/b?qos=1&c=x".
    pub fn request(
        &mut self,
        method: RequestType,
        ty: MessageType,
        path: &str,
        token: &[u8],
        payload: &[u8],
    ) -> CoapPacket {
        let mut p = CoapPacket::new();
        p.header.set_type(ty);
        p.header.code = MessageClass::Request(method);
        p.header.message_id = self.mid();
        p.set_token(token.to_vec());
        let (path, query) = path.split_once('?').unwrap_or((path, ""));
        for seg in path.split('/') {
            p.add_option(unigate_coap::coap_lite::CoapOption::UriPath, seg.as_bytes().to_vec());
        }
        for q in query.split('&').filter(|q| !q.is_empty()) {
            p.add_option(unigate_coap::coap_lite::CoapOption::UriQuery, q.as_bytes().to_vec());
        }
        p.payload = payload.to_vec();
        p
    }

    pub async fn send(&self, p: &CoapPacket) {
        self.send_bytes(&p.to_bytes().unwrap()).await;
    }

    pub async fn send_bytes(&self, b: &[u8]) {
        self.sock.send_to(b, self.server).await.unwrap();
    }

    /// The next datagram, decoded.
    pub async fn recv(&self) -> CoapPacket {
        let mut buf = vec![0u8; 70_000];
        let (n, _) = within("a CoAP datagram", self.sock.recv_from(&mut buf)).await.unwrap();
        CoapPacket::from_bytes(&buf[..n]).expect("server sends valid CoAP")
    }

    /// Proves no datagram arrives for [`QUIET`].
    pub async fn assert_silent(&self) {
        let mut buf = vec![0u8; 70_000];
        if let Ok(Ok((n, _))) = tokio::time::timeout(QUIET, self.sock.recv_from(&mut buf)).await {
            panic!("unexpected datagram: {:?}", CoapPacket::from_bytes(&buf[..n]));
        }
    }

    /// Sends a request and returns the response (piggy-backed).
    pub async fn call(&mut self, method: RequestType, path: &str, payload: &[u8]) -> CoapPacket {
        let token = self.mid().to_be_bytes();
        let p = self.request(method, MessageType::Confirmable, path, &token, payload);
        self.send(&p).await;
        let r = self.recv().await;
        assert_eq!(r.header.message_id, p.header.message_id, "piggy-backed response");
        assert_eq!(r.header.get_type(), MessageType::Acknowledgement);
        r
    }
}

/// An empty ACK or RST for message `mid` (coap-lite's default header is a GET, not empty).
pub fn empty(ty: MessageType, mid: u16) -> CoapPacket {
    let mut p = CoapPacket::new();
    p.header.set_type(ty);
    p.header.code = MessageClass::Empty;
    p.header.message_id = mid;
    p
}

/// The response code of a packet as "2.05".
pub fn code(p: &CoapPacket) -> String {
    match p.header.code {
        MessageClass::Response(r) => {
            let n: u8 = MessageClass::Response(r).into();
            format!("{}.{:02}", n >> 5, n & 0x1f)
        }
        other => format!("{other:?}"),
    }
}

/// QoS shorthand.
pub fn q(n: u8) -> QoS {
    match n {
        0 => QoS::AtMostOnce,
        1 => QoS::AtLeastOnce,
        _ => QoS::ExactlyOnce,
    }
}

/// Which way a datagram goes through a [`Proxy`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dir {
    /// Client to server.
    Up,
    /// Server to client.
    Down,
}

/// What a [`Proxy`] does with one datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    Pass,
    Drop,
    Delay(Duration),
}

/// A UDP proxy for one client that drops or delays datagrams as `rule` says; `rule` gets the
/// direction, the datagram's index in that direction (from 0) and its bytes.
pub struct Proxy {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    pub async fn start(server: SocketAddr, rule: impl Fn(Dir, usize, &[u8]) -> Fate + Send + Sync + 'static) -> Proxy {
        let front = std::sync::Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
        let back = std::sync::Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
        back.connect(server).await.unwrap();
        let addr = front.local_addr().unwrap();
        let rule = std::sync::Arc::new(rule);
        let task = tokio::spawn(async move {
            let mut client: Option<SocketAddr> = None;
            let (mut up, mut down) = (0usize, 0usize);
            let mut a = vec![0u8; 70_000];
            let mut b = vec![0u8; 70_000];
            loop {
                tokio::select! {
                    r = front.recv_from(&mut a) => {
                        let Ok((n, from)) = r else { break };
                        client = Some(from);
                        let data = a[..n].to_vec();
                        let fate = rule(Dir::Up, up, &data);
                        up += 1;
                        forward(fate, back.clone(), data, None);
                    }
                    r = back.recv(&mut b) => {
                        let Ok(n) = r else { break };
                        let Some(to) = client else { continue };
                        let data = b[..n].to_vec();
                        let fate = rule(Dir::Down, down, &data);
                        down += 1;
                        forward(fate, front.clone(), data, Some(to));
                    }
                }
            }
        });
        Proxy { addr, task }
    }
}

fn forward(fate: Fate, sock: std::sync::Arc<UdpSocket>, data: Vec<u8>, to: Option<SocketAddr>) {
    let send = async move {
        let _ = match to {
            Some(to) => sock.send_to(&data, to).await,
            None => sock.send(&data).await,
        };
    };
    match fate {
        Fate::Pass => {
            tokio::spawn(send);
        }
        Fate::Drop => {}
        Fate::Delay(d) => {
            tokio::spawn(async move {
                tokio::time::sleep(d).await;
                send.await;
            });
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}
