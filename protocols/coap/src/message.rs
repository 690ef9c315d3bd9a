//! The values exchanged between a [`crate::Peer`] and the application: events out, requests
//! surfaced, and the responses, notifications and requests the application hands in.

use coap_lite::{Packet, RequestType, ResponseType};

use crate::codec::{BlockOpt, Token};

/// Something the driver or the application must act on, pushed by the [`crate::Peer`] methods.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Event {
    /// A datagram to send to this peer.
    Transmit(Vec<u8>),
    /// A complete request (Block1 already reassembled, duplicates already filtered). The
    /// application must eventually answer it with [`crate::Peer::respond`]; until then a
    /// retransmission of a CON request is answered with an empty ACK.
    Request(Request),
    /// Our CON (notification, request, or separate response) with this key was acknowledged.
    Delivered {
        /// The key given with the message ([`crate::SEPARATE_RESPONSE_KEY`] for separate
        /// responses).
        key: u64,
    },
    /// The peer answered our message with RST. For a notification, the observer is gone
    /// (RFC 7641 §3.6). Also reported for NON notifications and NON requests answered with RST
    /// while their message id is remembered.
    Rejected {
        /// The key given with the message.
        key: u64,
    },
    /// MAX_RETRANSMIT retransmissions went unacknowledged (RFC 7252 §4.2); also reported
    /// immediately, without sending, when a CON is refused because
    /// [`crate::MAX_OUTSTANDING`] CONs are already in flight, or a request because
    /// [`crate::MAX_PENDING_REQUESTS`] are awaiting responses.
    TimedOut {
        /// The key given with the message.
        key: u64,
    },
    /// A response to [`crate::Peer::send_request`] (piggy-backed or separate; every
    /// notification of an observation). Block2 responses are not reassembled.
    Response {
        /// The key given in the [`OutgoingRequest`].
        key: u64,
        /// The whole response packet.
        packet: Packet,
    },
}

/// A request for the application.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// What [`crate::Peer::respond`] needs to answer it.
    pub meta: RequestMeta,
    /// Get, Post, Put, Delete, Fetch, Patch or IPatch.
    pub method: RequestType,
    /// Uri-Path segments (raw option values, which are UTF-8 by RFC 7252 §5.10.1).
    pub path: Vec<String>,
    /// Uri-Query options ("k=v").
    pub query: Vec<String>,
    /// The Observe option (RFC 7641 §2): 0 registers, 1 deregisters.
    pub observe: Option<u32>,
    /// Content-Format of the payload.
    pub content_format: Option<u16>,
    /// Accept.
    pub accept: Option<u16>,
    /// The whole body (Block1 reassembled).
    pub payload: Vec<u8>,
    /// The (last) packet of the request, for any other option. Its payload has been moved
    /// into [`Request::payload`] (so a large body is not held twice) and is empty here.
    pub packet: Packet,
}

/// The identity of a surfaced request, to answer it with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestMeta {
    pub(crate) mid: u16,
    pub(crate) token: Token,
    pub(crate) confirmable: bool,
    /// Block2 in the request: the block asked for and the largest size the client takes.
    pub(crate) block2: Option<BlockOpt>,
    /// The final Block1 of a reassembled request, echoed with M=0 in the response.
    pub(crate) block1: Option<BlockOpt>,
    /// Cache key for Block2 follow-ups, see [`RequestMeta::uri`].
    pub(crate) uri: String,
}

impl RequestMeta {
    /// The request's token.
    pub fn token(&self) -> &[u8] {
        self.token.as_slice()
    }

    /// Whether the request was Confirmable.
    pub fn confirmable(&self) -> bool {
        self.confirmable
    }

    /// The request's message id (of the last block, for a Block1 transfer).
    pub fn message_id(&self) -> u16 {
        self.mid
    }

    /// The request's path and query in the form [`uri_key`] makes; pass it as
    /// [`Notification::uri`] when notifying an observer registered by this request.
    pub fn uri(&self) -> &str {
        &self.uri
    }

    /// The Block2 block size the client asked for (RFC 7959 §2.4), if any.
    pub fn block2_size(&self) -> Option<usize> {
        self.block2.map(|b| b.size())
    }
}

/// The key under which large bodies are cached for Block2 follow-ups: `/seg1/seg2` followed by
/// `?q1&q2` when there is a query. Segments are not escaped; the key only needs to be the same
/// for the same request.
pub fn uri_key<S: AsRef<str>>(path: &[S], query: &[S]) -> String {
    let mut s = String::new();
    for seg in path {
        s.push('/');
        s.push_str(seg.as_ref());
    }
    if path.is_empty() {
        s.push('/');
    }
    for (i, q) in query.iter().enumerate() {
        s.push(if i == 0 { '?' } else { '&' });
        s.push_str(q.as_ref());
    }
    s
}

/// A response built by the application; the [`crate::Peer`] chooses the message type, id,
/// token and the Block1/Block2/Size1/Size2 options.
#[derive(Clone, Debug, PartialEq)]
pub struct Response {
    /// The response code. Default 2.05 Content.
    pub code: ResponseType,
    /// Content-Format of the payload.
    pub content_format: Option<u16>,
    /// The whole body; sliced into Block2 blocks when larger than the block size.
    pub payload: Vec<u8>,
    /// Observe sequence number (RFC 7641 §4.2) for notifications and registration responses.
    pub observe: Option<u32>,
    /// Location-Path segments (for 2.01 Created).
    pub location_path: Vec<String>,
    /// Max-Age in seconds.
    pub max_age: Option<u32>,
    /// ETag; one is derived from the body when a body is sent in blocks without one.
    pub etag: Option<Vec<u8>>,
    /// Any other options, by number. Block1 (27), Block2 (23), Size1 (60) and Size2 (28) are
    /// managed by the peer and dropped from here.
    pub options: Vec<(u16, Vec<u8>)>,
}

impl Default for Response {
    fn default() -> Self {
        Response::new(ResponseType::Content)
    }
}

impl Response {
    /// An empty response with `code`.
    pub fn new(code: ResponseType) -> Self {
        Response {
            code,
            content_format: None,
            payload: Vec::new(),
            observe: None,
            location_path: Vec::new(),
            max_age: None,
            etag: None,
            options: Vec::new(),
        }
    }

    /// Sets the payload.
    pub fn with_payload(mut self, payload: impl Into<Vec<u8>>) -> Self {
        self.payload = payload.into();
        self
    }

    /// Sets Content-Format.
    pub fn with_content_format(mut self, cf: u16) -> Self {
        self.content_format = Some(cf);
        self
    }

    /// Sets the Observe sequence number.
    pub fn with_observe(mut self, seq: u32) -> Self {
        self.observe = Some(seq);
        self
    }

    /// Sets Max-Age.
    pub fn with_max_age(mut self, secs: u32) -> Self {
        self.max_age = Some(secs);
        self
    }

    /// Sets the ETag.
    pub fn with_etag(mut self, etag: impl Into<Vec<u8>>) -> Self {
        self.etag = Some(etag.into());
        self
    }

    /// Sets Location-Path.
    pub fn with_location_path(mut self, segments: Vec<String>) -> Self {
        self.location_path = segments;
        self
    }

    /// Adds an option by number.
    pub fn with_option(mut self, number: u16, value: impl Into<Vec<u8>>) -> Self {
        self.options.push((number, value.into()));
        self
    }
}

/// An observe notification (RFC 7641 §4.2) for [`crate::Peer::notify`].
#[derive(Clone, Debug, PartialEq)]
pub struct Notification {
    /// The token of the registration request.
    pub token: Vec<u8>,
    /// CON (retransmitted until ACKed, reported through `key`) or NON.
    pub confirmable: bool,
    /// The representation; `response.observe` should be `Some(seq)`.
    pub response: Response,
    /// Echoed in [`Event::Delivered`], [`Event::Rejected`] and [`Event::TimedOut`].
    pub key: u64,
    /// Cache key for Block2 follow-ups when the body is larger than one block: the
    /// registration's [`RequestMeta::uri`].
    pub uri: String,
}

/// A request from this server to the peer (the server acting as a client, e.g. LwM2M Read or
/// Observe of a device).
#[derive(Clone, Debug, PartialEq)]
pub struct OutgoingRequest {
    /// The method.
    pub method: RequestType,
    /// Uri-Path segments.
    pub path: Vec<String>,
    /// Uri-Query options.
    pub query: Vec<String>,
    /// CON (retransmitted until ACKed) or NON.
    pub confirmable: bool,
    /// Content-Format of the payload.
    pub content_format: Option<u16>,
    /// Accept.
    pub accept: Option<u16>,
    /// Observe: `Some(0)` registers, and the peer then keeps the token alive for every
    /// notification until [`crate::Peer::cancel_request`] or a notification without Observe.
    pub observe: Option<u32>,
    /// The body, sent in one datagram (the LwM2M listener sends larger bodies as Block1
    /// requests of its own).
    pub payload: Vec<u8>,
    /// Any other options, by number.
    pub options: Vec<(u16, Vec<u8>)>,
    /// Echoed in the events about this request.
    pub key: u64,
}

impl OutgoingRequest {
    /// A CON request with no options and no payload.
    pub fn new(method: RequestType, path: Vec<String>, key: u64) -> Self {
        OutgoingRequest {
            method,
            path,
            query: Vec::new(),
            confirmable: true,
            content_format: None,
            accept: None,
            observe: None,
            payload: Vec::new(),
            options: Vec::new(),
            key,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uri_keys() {
        assert_eq!(uri_key(&["a", "b"], &["x=1", "y"]), "/a/b?x=1&y");
        assert_eq!(uri_key::<&str>(&[], &[]), "/");
        assert_eq!(uri_key(&["3", "0"], &[]), "/3/0");
    }

    #[test]
    fn response_default_is_content() {
        assert_eq!(Response::default().code, ResponseType::Content);
    }
}
