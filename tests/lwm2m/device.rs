//! A simulated LwM2M device built on coap-lite: it registers with a link-format payload,
//! answers the server's requests with hand-made payloads (TLV, SenML JSON, text, link format),
//! sends notifications and sleeps in queue mode, on its own UDP socket.

use std::collections::VecDeque;
use std::net::SocketAddr;

use tokio::net::UdpSocket;
use unigate_coap::coap_lite::{CoapOption, MessageClass, MessageType, Packet, RequestType, ResponseType};

use crate::util::{within, QUIET};

/// A CoAP option value for an unsigned integer, in the fewest bytes (RFC 7252 §3.2).
pub fn uint(v: u32) -> Vec<u8> {
    let b = v.to_be_bytes();
    let skip = b.iter().take_while(|x| **x == 0).count();
    b[skip..].to_vec()
}

/// The unsigned integer an option holds.
pub fn uint_of(v: &[u8]) -> u32 {
    v.iter().fold(0, |a, b| (a << 8) | u32::from(*b))
}

pub use crate::util::code;

/// The Uri-Path of a request, `/`-joined.
pub fn path_of(p: &Packet) -> String {
    p.get_option(CoapOption::UriPath)
        .map(|v| {
            v.iter()
                .map(|s| String::from_utf8_lossy(s).to_string())
                .collect::<Vec<_>>()
                .join("/")
        })
        .unwrap_or_default()
}

/// The Uri-Query options of a request.
pub fn query_of(p: &Packet) -> Vec<String> {
    p.get_option(CoapOption::UriQuery)
        .map(|v| v.iter().map(|s| String::from_utf8_lossy(s).to_string()).collect())
        .unwrap_or_default()
}

/// A simulated device.
pub struct Device {
    pub sock: UdpSocket,
    pub server: SocketAddr,
    next_mid: u16,
    /// Location-Path of the registration, e.g. `rd/0a1b2c3d`.
    pub location: String,
    /// Requests from the server that arrived while waiting for something else.
    inbox: VecDeque<Packet>,
}

impl Device {
    pub async fn new(server: SocketAddr) -> Device {
        Device {
            sock: UdpSocket::bind("127.0.0.1:0").await.unwrap(),
            server,
            next_mid: rand::random(),
            location: String::new(),
            inbox: VecDeque::new(),
        }
    }

    fn mid(&mut self) -> u16 {
        self.next_mid = self.next_mid.wrapping_add(1);
        self.next_mid
    }

    /// A CON request.
    pub fn request(&mut self, method: RequestType, path: &str, query: &[&str], payload: &[u8]) -> Packet {
        let mut p = Packet::new();
        p.header.set_type(MessageType::Confirmable);
        p.header.code = MessageClass::Request(method);
        p.header.message_id = self.mid();
        p.set_token(self.next_mid.to_be_bytes().to_vec());
        for seg in path.split('/').filter(|s| !s.is_empty()) {
            p.add_option(CoapOption::UriPath, seg.as_bytes().to_vec());
        }
        for q in query {
            p.add_option(CoapOption::UriQuery, q.as_bytes().to_vec());
        }
        p.payload = payload.to_vec();
        p
    }

    pub async fn send(&self, p: &Packet) {
        self.sock.send_to(&p.to_bytes().unwrap(), self.server).await.unwrap();
    }

    async fn recv_packet(&self) -> Packet {
        let mut buf = vec![0u8; 65536];
        let (n, _) = self.sock.recv_from(&mut buf).await.unwrap();
        Packet::from_bytes(&buf[..n]).unwrap()
    }

    /// Sends a CON request and waits for its piggy-backed response; server requests arriving
    /// meanwhile are kept for [`Device::next_request`].
    pub async fn call(&mut self, p: Packet) -> Packet {
        self.send(&p).await;
        let mid = p.header.message_id;
        within("the server's response", async {
            loop {
                let r = self.recv_packet().await;
                if matches!(r.header.code, MessageClass::Request(_)) {
                    self.inbox.push_back(r);
                    continue;
                }
                if r.header.message_id == mid {
                    return r;
                }
            }
        })
        .await
    }

    /// Registers as `ep` with extra query parameters and a link-format payload.
    pub async fn register(&mut self, ep: &str, query: &[&str], links: &str) -> Packet {
        let ep_q = format!("ep={ep}");
        let mut q = vec![ep_q.as_str()];
        q.extend_from_slice(query);
        let mut p = self.request(RequestType::Post, "rd", &q, links.as_bytes());
        p.add_option(CoapOption::ContentFormat, uint(40));
        let r = self.call(p).await;
        if let Some(loc) = r.get_option(CoapOption::LocationPath) {
            self.location = loc
                .iter()
                .map(|s| String::from_utf8_lossy(s).to_string())
                .collect::<Vec<_>>()
                .join("/");
        }
        r
    }

    /// An Update (empty payload unless `links`).
    pub async fn update(&mut self, query: &[&str], links: &str) -> Packet {
        let loc = self.location.clone();
        let p = self.request(RequestType::Post, &loc, query, links.as_bytes());
        self.call(p).await
    }

    /// De-registers.
    pub async fn deregister(&mut self) -> Packet {
        let loc = self.location.clone();
        let p = self.request(RequestType::Delete, &loc, &[], b"");
        self.call(p).await
    }

    /// The next request from the server (CON requests are not acknowledged here: answer
    /// them with [`Device::reply`]).
    pub async fn next_request(&mut self) -> Packet {
        if let Some(p) = self.inbox.pop_front() {
            return p;
        }
        within("a request from the server", async {
            loop {
                let r = self.recv_packet().await;
                if matches!(r.header.code, MessageClass::Request(_)) {
                    return r;
                }
            }
        })
        .await
    }

    /// Proves the server sends nothing for [`QUIET`].
    pub async fn assert_silent(&mut self) {
        assert!(self.inbox.is_empty(), "unexpected request: {:?}", self.inbox.front());
        if let Ok(p) = tokio::time::timeout(QUIET, self.recv_packet()).await {
            panic!("unexpected packet from the server: {p:?}");
        }
    }

    /// Answers a server request with a piggy-backed response.
    pub async fn reply(&self, req: &Packet, code: ResponseType, cf: Option<u16>, payload: &[u8], observe: Option<u32>) {
        let mut p = Packet::new();
        p.header.set_type(MessageType::Acknowledgement);
        p.header.code = MessageClass::Response(code);
        p.header.message_id = req.header.message_id;
        p.set_token(req.get_token().to_vec());
        if let Some(o) = observe {
            p.add_option(CoapOption::Observe, uint(o));
        }
        if let Some(cf) = cf {
            p.add_option(CoapOption::ContentFormat, uint(u32::from(cf)));
        }
        p.payload = payload.to_vec();
        self.send(&p).await;
    }

    /// Answers a block of a Block1 request (RFC 7959 §2.3): `code` (2.31 Continue, or the final
    /// answer) with Block1 `num`, `more`, `szx`.
    pub async fn reply_block1(&self, req: &Packet, code: ResponseType, num: u32, more: bool, szx: u8) {
        let mut p = Packet::new();
        p.header.set_type(MessageType::Acknowledgement);
        p.header.code = MessageClass::Response(code);
        p.header.message_id = req.header.message_id;
        p.set_token(req.get_token().to_vec());
        p.add_option(
            CoapOption::Block1,
            uint((num << 4) | (u32::from(more) << 3) | u32::from(szx)),
        );
        self.send(&p).await;
    }

    /// Answers a request with block `num` of a block-wise 2.05 Content (RFC 7959 §2.2): Block2
    /// `num`, `more`, `szx`, and Observe `observe` if given.
    #[allow(clippy::too_many_arguments)]
    pub async fn reply_block2(
        &self,
        req: &Packet,
        cf: u16,
        observe: Option<u32>,
        num: u32,
        more: bool,
        szx: u8,
        payload: &[u8],
    ) {
        let mut p = Packet::new();
        p.header.set_type(MessageType::Acknowledgement);
        p.header.code = MessageClass::Response(ResponseType::Content);
        p.header.message_id = req.header.message_id;
        p.set_token(req.get_token().to_vec());
        if let Some(o) = observe {
            p.add_option(CoapOption::Observe, uint(o));
        }
        p.add_option(CoapOption::ContentFormat, uint(u32::from(cf)));
        p.add_option(
            CoapOption::Block2,
            uint((num << 4) | (u32::from(more) << 3) | u32::from(szx)),
        );
        p.payload = payload.to_vec();
        self.send(&p).await;
    }

    /// A NON notification carrying block 0 of a larger representation (Block2 0, M=1, `szx`).
    pub async fn notify_block0(&mut self, token: &[u8], seq: u32, cf: u16, szx: u8, payload: &[u8]) {
        let mut p = Packet::new();
        p.header.set_type(MessageType::NonConfirmable);
        p.header.code = MessageClass::Response(ResponseType::Content);
        p.header.message_id = self.mid();
        p.set_token(token.to_vec());
        p.add_option(CoapOption::Observe, uint(seq));
        p.add_option(CoapOption::ContentFormat, uint(u32::from(cf)));
        p.add_option(CoapOption::Block2, uint(0x08 | u32::from(szx)));
        p.payload = payload.to_vec();
        self.send(&p).await;
    }

    /// An empty ACK (the answer will come separately).
    pub async fn ack(&self, req: &Packet) {
        let mut p = Packet::new();
        p.header.set_type(MessageType::Acknowledgement);
        p.header.code = MessageClass::Empty;
        p.header.message_id = req.header.message_id;
        self.send(&p).await;
    }

    /// Sends a notification for the observation registered with `token`; a CON one waits for
    /// the server's ACK (or RST) and returns it.
    pub async fn notify(&mut self, token: &[u8], seq: u32, cf: u16, payload: &[u8], con: bool) -> Option<Packet> {
        let mut p = Packet::new();
        p.header.set_type(if con {
            MessageType::Confirmable
        } else {
            MessageType::NonConfirmable
        });
        p.header.code = MessageClass::Response(ResponseType::Content);
        p.header.message_id = self.mid();
        p.set_token(token.to_vec());
        p.add_option(CoapOption::Observe, uint(seq));
        p.add_option(CoapOption::ContentFormat, uint(u32::from(cf)));
        p.payload = payload.to_vec();
        if !con {
            self.send(&p).await;
            return None;
        }
        Some(self.call(p).await)
    }
}
