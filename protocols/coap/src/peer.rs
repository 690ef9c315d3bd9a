//! [`Peer`]: the CoAP message layer towards one remote endpoint (RFC 7252 §4, RFC 7959,
//! RFC 7641 §4). Inputs are `handle_datagram` and `handle_timeout` plus the application's
//! answers (`respond`, `ack_empty`) and initiatives (`notify`, `send_request`); every output
//! is an [`Event`] pushed onto the caller's `Vec`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use coap_lite::{MessageClass, MessageType, Packet, RequestType, ResponseType};

use crate::codec::{self, class_of, empty_message, encode_uint, is_response, option, BlockOpt, Token};
use crate::config::Config;
use crate::error::{FormatError, RequestError};
use crate::message::{uri_key, Event, Notification, OutgoingRequest, Request, RequestMeta, Response};
use crate::state::{
    response_heap, retain_vec, Block1Transfer, CachedBody, Dedup, Outstanding, PendingExchange, RecentNon, Seen,
};

/// The key reported in [`Event::Delivered`], [`Event::Rejected`] and [`Event::TimedOut`] for a
/// separate CON response (one sent by [`Peer::respond`] after [`Peer::ack_empty`]).
pub const SEPARATE_RESPONSE_KEY: u64 = u64::MAX;

/// Most CONs a peer retransmits at once. Beyond it a notification or request is not sent and
/// [`Event::TimedOut`] is reported at once, and a separate response goes out as NON
/// (RFC 7252 §5.2.2 allows either). See [`Peer::can_send_con`].
pub const MAX_OUTSTANDING: usize = 64;

/// Most requests of ours awaiting a response (including established observations). Beyond it
/// [`Peer::send_request`] reports [`Event::TimedOut`] at once.
pub const MAX_PENDING_REQUESTS: usize = 64;

/// NON messages of ours whose RST is still reported as [`Event::Rejected`].
const MAX_RECENT_NON: usize = 8;

/// How a response goes out (RFC 7252 §5.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// In the ACK of the CON request.
    Piggyback,
    /// A NON response to a NON request.
    Non,
    /// A separate CON response, after an empty ACK.
    SeparateCon,
}

/// A response's head plus the part of its body that goes into this one message.
struct Outgoing {
    response: Response,
    block2: Option<BlockOpt>,
    size2: Option<usize>,
    size1: Option<usize>,
}

impl Outgoing {
    fn whole(response: Response) -> Self {
        Outgoing {
            response,
            block2: None,
            size2: None,
            size1: None,
        }
    }

    fn error(e: &RequestError) -> Self {
        let size1 = match e {
            RequestError::TooLarge { max } => Some(*max),
            _ => None,
        };
        // A diagnostic payload (RFC 7252 §5.5.2) names the clause.
        let response = Response::new(e.response_code()).with_payload(e.to_string());
        Outgoing {
            response,
            block2: None,
            size2: None,
            size1,
        }
    }
}

/// A request's options as far as this layer needs them.
struct ParsedRequest {
    method: RequestType,
    path: Vec<String>,
    query: Vec<String>,
    observe: Option<u32>,
    content_format: Option<u16>,
    accept: Option<u16>,
    block1: Option<BlockOpt>,
    block2: Option<BlockOpt>,
    size1: Option<u32>,
}

/// Result of one Block1 block.
enum Block1Step {
    /// Answer 2.31 Continue with this Block1.
    Continue(BlockOpt),
    /// The body is complete; the final block was this.
    Complete(Vec<u8>, BlockOpt),
}

/// The CoAP message layer for one remote endpoint: deduplication, piggy-backed and separate
/// responses, CON retransmission, Block1 reassembly, Block2 slicing and caching, notifications
/// and requests of our own. Sans-IO: see the crate documentation for the calling contract.
///
/// NSTART (RFC 7252 §4.7) is not enforced here: the application keeps one CON notification
/// in flight per observer; the peer only caps the total at [`MAX_OUTSTANDING`].
#[derive(Debug)]
pub struct Peer {
    cfg: Arc<Config>,
    rng: u64,
    next_mid: u16,
    dedup: Dedup,
    block1: Vec<Block1Transfer>,
    block2: Vec<CachedBody>,
    outstanding: Vec<Outstanding>,
    pending: Vec<PendingExchange>,
    recent_non: Vec<RecentNon>,
}

impl Peer {
    /// A peer with nothing remembered. `seed` randomises the first message id and our tokens
    /// (RFC 7252 §4.4, §5.3.1); give each peer a different, unpredictable one.
    pub fn new(cfg: Arc<Config>, seed: u64) -> Peer {
        let mut peer = Peer {
            cfg,
            rng: seed,
            next_mid: 0,
            dedup: Dedup::default(),
            block1: Vec::new(),
            block2: Vec::new(),
            outstanding: Vec::new(),
            pending: Vec::new(),
            recent_non: Vec::new(),
        };
        peer.next_mid = peer.next_u64() as u16;
        peer
    }

    /// Feeds one received datagram.
    pub fn handle_datagram(&mut self, now: Instant, data: &[u8], out: &mut Vec<Event>) {
        self.expire(now);
        let Some(h) = codec::raw_header(data) else { return };
        let packet = match codec::decode(data) {
            Ok(p) => p,
            // RFC 7252 §3: unknown versions are silently ignored, even when Confirmable.
            Err(FormatError::Version(_)) => return,
            // RFC 7252 §4.2, §4.3: reject a malformed CON with RST, drop anything else.
            Err(_) => {
                if h.mtype == MessageType::Confirmable {
                    out.push(Event::Transmit(empty_message(MessageType::Reset, h.mid)));
                }
                return;
            }
        };
        let code = packet.header.code;
        match h.mtype {
            MessageType::Acknowledgement => self.handle_ack(now, packet, out),
            MessageType::Reset => self.handle_reset(h.mid, out),
            MessageType::Confirmable | MessageType::NonConfirmable => {
                let con = h.mtype == MessageType::Confirmable;
                if code == MessageClass::Empty {
                    // A CoAP ping (RFC 7252 §4.3); decode() already refused an empty NON.
                    out.push(Event::Transmit(empty_message(MessageType::Reset, h.mid)));
                } else if class_of(code) == 0 {
                    if !self.replay_duplicate(h.mid, con, out) {
                        self.handle_request(now, packet, con, out);
                    }
                } else if is_response(code) {
                    if !self.replay_duplicate(h.mid, con, out) {
                        self.handle_response(now, packet, con, out);
                    }
                } else if con {
                    // A reserved class: we lack the context to process it (RFC 7252 §4.2).
                    out.push(Event::Transmit(empty_message(MessageType::Reset, h.mid)));
                }
            }
        }
    }

    /// Answers a request surfaced as [`Event::Request`]: piggy-backed in the ACK if the CON
    /// request has not been acknowledged yet, as a separate CON response (key
    /// [`SEPARATE_RESPONSE_KEY`]) if it has (or if the request is no longer remembered), as a
    /// NON response to a NON request. A second answer to the same CON request is ignored.
    ///
    /// A body larger than the block size goes out as Block2 block 0 (or the block the request
    /// asked for) with Size2 and an ETag, and is cached under the request's URI for follow-ups
    /// (RFC 7959 §2.4); a block number past the end is answered 4.00 (RFC 7959 names no code
    /// for it). Only GET follow-ups are served from that cache; a follow-up with another
    /// method (e.g. POST with Block2, RFC 7959 §3.3) reaches the application again. A body
    /// larger than `max_body` is replaced by 5.00 Internal Server Error.
    pub fn respond(&mut self, now: Instant, req: &RequestMeta, resp: Response, out: &mut Vec<Event>) {
        self.expire(now);
        let mode = match self.dedup.find(req.mid).map(|e| &e.state) {
            _ if !req.confirmable => Mode::Non,
            Some(Seen::Pending { acked: false }) => Mode::Piggyback,
            Some(Seen::Answered(_)) => return,
            _ => Mode::SeparateCon,
        };
        let outgoing = self
            .prepare_body(now, resp, req.block2, &req.uri)
            .unwrap_or_else(|e| Outgoing::error(&e));
        let block1 = req.block1.map(|b| BlockOpt { more: false, ..b });
        let packet = response_packet(&outgoing, block1, req.token.as_slice());
        self.emit_response(now, mode, req.mid, packet, out);
    }

    /// Sends an empty ACK for a CON request whose answer will take time (RFC 7252 §5.2.2); the
    /// later [`Peer::respond`] then becomes a separate CON response. No-op for a NON request
    /// or one already acknowledged or answered.
    pub fn ack_empty(&mut self, req: &RequestMeta, out: &mut Vec<Event>) {
        if !req.confirmable {
            return;
        }
        if let Some(e) = self.dedup.find_mut(req.mid) {
            if let Seen::Pending { acked } = &mut e.state {
                if !*acked {
                    *acked = true;
                    out.push(Event::Transmit(empty_message(MessageType::Acknowledgement, req.mid)));
                }
            }
        }
    }

    /// Sends an observe notification (RFC 7641 §4.2) on `n.token` with a fresh message id,
    /// which is returned. A body larger than the configured block size goes out as Block2
    /// block 0 and is cached under `n.uri` for the follow-ups (RFC 7959 §3.4). A CON
    /// notification is retransmitted until ACKed and reported with `n.key`; when
    /// [`MAX_OUTSTANDING`] CONs are in flight it is not sent and [`Event::TimedOut`] follows
    /// at once.
    pub fn notify(&mut self, now: Instant, n: Notification, out: &mut Vec<Event>) -> u16 {
        self.expire(now);
        let mid = self.next_mid();
        let outgoing = self
            .prepare_body(now, n.response, None, &n.uri)
            .unwrap_or_else(|e| Outgoing::error(&e));
        let mut packet = response_packet(&outgoing, None, &n.token);
        packet.header.message_id = mid;
        if n.confirmable {
            if self.outstanding.len() >= MAX_OUTSTANDING {
                out.push(Event::TimedOut { key: n.key });
                return mid;
            }
            packet.header.set_type(MessageType::Confirmable);
            let bytes = codec::encode(&packet);
            self.send_con(now, mid, n.key, bytes, None, out);
        } else {
            packet.header.set_type(MessageType::NonConfirmable);
            out.push(Event::Transmit(codec::encode(&packet)));
            self.remember_non(now, mid, n.key, None);
        }
        mid
    }

    /// Sends a request to the peer (the server acting as a client) and returns the token the
    /// peer chose for it. Its response arrives as [`Event::Response`] with `req.key`, whether
    /// piggy-backed or separate (RFC 7252 §5.2); a CON request is also reported through
    /// [`Event::Delivered`], [`Event::Rejected`] or [`Event::TimedOut`]. An observation
    /// (`observe: Some(0)`) keeps its token alive for notifications until
    /// [`Peer::cancel_request`]. `TimedOut` is reported at once, and nothing sent, when
    /// [`MAX_OUTSTANDING`] or [`MAX_PENDING_REQUESTS`] is reached, for
    /// `RequestType::UnKnown`, or when the request does not fit in one datagram.
    pub fn send_request(&mut self, now: Instant, req: OutgoingRequest, out: &mut Vec<Event>) -> Vec<u8> {
        self.expire(now);
        let token = self.new_token();
        let mid = self.next_mid();
        let refused = req.method == RequestType::UnKnown
            || self.pending.len() >= MAX_PENDING_REQUESTS
            || (req.confirmable && self.outstanding.len() >= MAX_OUTSTANDING);
        let bytes = if refused {
            None
        } else {
            request_packet(&req, mid, token).to_bytes().ok()
        };
        let Some(bytes) = bytes else {
            out.push(Event::TimedOut { key: req.key });
            return token.as_slice().to_vec();
        };
        let lifetime = later(now, self.cfg.exchange_lifetime);
        self.pending.push(PendingExchange {
            token,
            key: req.key,
            observe: req.observe == Some(0),
            expires: if req.confirmable { None } else { Some(lifetime) },
        });
        if req.confirmable {
            self.send_con(now, mid, req.key, bytes, Some(token), out);
        } else {
            out.push(Event::Transmit(bytes));
            self.remember_non(now, mid, req.key, Some(token));
        }
        token.as_slice().to_vec()
    }

    /// Forgets a request of ours (e.g. an observation the application cancelled): later
    /// responses with its token are answered with RST (RFC 7641 §3.6), and its CON is no
    /// longer retransmitted. No event is reported. Returns whether the token was known.
    pub fn cancel_request(&mut self, token: &[u8]) -> bool {
        let token = Token::new(token);
        let before = self.pending.len() + self.outstanding.len();
        retain_vec(&mut self.pending, |p| p.token != token);
        retain_vec(&mut self.outstanding, |o| o.token != Some(token));
        before != self.pending.len() + self.outstanding.len()
    }

    /// The earliest instant at which [`Peer::handle_timeout`] has work: a retransmission, or
    /// remembered state (message ids, block transfers, cached bodies, requests) to forget.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let retransmit = self.outstanding.iter().map(|o| o.next);
        let dedup = self.dedup.entries.iter().map(|e| e.expires);
        let block1 = self.block1.iter().map(|t| t.expires);
        let block2 = self.block2.iter().map(|c| c.expires);
        let pending = self.pending.iter().filter_map(|p| p.expires);
        let non = self.recent_non.iter().map(|r| r.expires);
        retransmit
            .chain(dedup)
            .chain(block1)
            .chain(block2)
            .chain(pending)
            .chain(non)
            .min()
    }

    /// Retransmits due CONs (timeout doubling each time, RFC 7252 §4.2), reports
    /// [`Event::TimedOut`] after MAX_RETRANSMIT retransmissions, and forgets expired state.
    pub fn handle_timeout(&mut self, now: Instant, out: &mut Vec<Event>) {
        self.expire(now);
        let max = self.cfg.max_retransmit;
        let mut i = 0;
        while let Some(o) = self.outstanding.get_mut(i) {
            if o.next > now {
                i += 1;
            } else if o.retransmits >= max {
                let o = self.outstanding.remove(i);
                out.push(Event::TimedOut { key: o.key });
                if let Some(t) = o.token {
                    retain_vec(&mut self.pending, |p| p.token != t);
                }
            } else {
                o.retransmits += 1;
                o.timeout = o.timeout.saturating_mul(2);
                o.next = now.checked_add(o.timeout).unwrap_or(now);
                out.push(Event::Transmit(o.bytes.clone()));
                i += 1;
            }
        }
        if self.outstanding.is_empty() {
            self.outstanding = Vec::new();
        }
    }

    /// True when nothing needs timers but remembered message ids: no unacknowledged CON, no
    /// Block1 transfer, no cached Block2 body, no request of ours awaiting a response.
    pub fn is_quiet(&self) -> bool {
        self.outstanding.is_empty() && self.block1.is_empty() && self.block2.is_empty() && self.pending.is_empty()
    }

    /// Our CON messages sent and not yet acknowledged.
    pub fn outstanding(&self) -> usize {
        self.outstanding.len()
    }

    /// Whether another CON notification or request would be sent rather than refused with
    /// [`Event::TimedOut`] (see [`MAX_OUTSTANDING`]).
    pub fn can_send_con(&self) -> bool {
        self.outstanding.len() < MAX_OUTSTANDING
    }

    /// Rough heap bytes held by this peer (table capacity plus stored bodies and datagrams).
    pub fn heap_size(&self) -> usize {
        use std::mem::size_of;
        self.dedup.heap_size()
            + self.block1.capacity() * size_of::<Block1Transfer>()
            + self
                .block1
                .iter()
                .map(|t| t.body.capacity() + t.uri.capacity())
                .sum::<usize>()
            + self.block2.capacity() * size_of::<CachedBody>()
            + self
                .block2
                .iter()
                .map(|c| c.uri.capacity() + response_heap(&c.response))
                .sum::<usize>()
            + self.outstanding.capacity() * size_of::<Outstanding>()
            + self.outstanding.iter().map(|o| o.bytes.capacity()).sum::<usize>()
            + self.pending.capacity() * size_of::<PendingExchange>()
            + self.recent_non.capacity() * size_of::<RecentNon>()
    }

    /// Checks the caps every table must respect; used by the fuzz targets and property tests.
    pub(crate) fn assert_invariants(&self) {
        let c = &self.cfg;
        assert!(self.dedup.entries.len() <= c.max_dedup_entries.max(1), "dedup over cap");
        assert!(self.block1.len() <= c.max_block1_transfers.max(1), "block1 over cap");
        assert!(
            self.block1.iter().all(|t| t.body.len() <= c.max_body),
            "block1 body over max_body"
        );
        assert!(self.block2.len() <= c.max_block2_cache, "block2 cache over cap");
        assert!(
            self.block2.iter().all(|b| b.response.payload.len() <= c.max_body),
            "cached body over max_body"
        );
        assert!(self.outstanding.len() <= MAX_OUTSTANDING, "outstanding over cap");
        assert!(self.pending.len() <= MAX_PENDING_REQUESTS, "pending over cap");
        assert!(self.recent_non.len() <= MAX_RECENT_NON, "recent NON over cap");
        assert!(
            self.outstanding.iter().all(|o| o.retransmits <= c.max_retransmit),
            "too many retransmissions"
        );
    }

    /// Number of remembered inbound message ids.
    #[cfg(test)]
    pub(crate) fn dedup_len(&self) -> usize {
        self.dedup.entries.len()
    }

    /// Number of Block1 transfers and cached Block2 bodies.
    #[cfg(test)]
    pub(crate) fn block_state(&self) -> (usize, usize) {
        (self.block1.len(), self.block2.len())
    }

    // ---- inbound ----

    /// Answers a duplicate CON or drops a duplicate NON (RFC 7252 §4.5). True if `mid` was a
    /// duplicate.
    fn replay_duplicate(&mut self, mid: u16, con: bool, out: &mut Vec<Event>) -> bool {
        let Some(e) = self.dedup.find_mut(mid) else {
            return false;
        };
        if con {
            match &mut e.state {
                // Still with the application: acknowledge so the client stops retransmitting;
                // the answer will be a separate response (RFC 7252 §5.2.2).
                Seen::Pending { acked } => {
                    *acked = true;
                    out.push(Event::Transmit(empty_message(MessageType::Acknowledgement, mid)));
                }
                Seen::Answered(bytes) => out.push(Event::Transmit(bytes.clone())),
                Seen::Dropped => {}
            }
        }
        true
    }

    fn handle_request(&mut self, now: Instant, mut packet: Packet, con: bool, out: &mut Vec<Event>) {
        let mid = packet.header.message_id;
        let token = Token::new(packet.get_token());
        let expires = later(now, self.cfg.exchange_lifetime);
        let state = if con {
            Seen::Pending { acked: false }
        } else {
            Seen::Dropped
        };
        self.dedup.insert(self.cfg.max_dedup_entries, mid, expires, state);
        let mode = if con { Mode::Piggyback } else { Mode::Non };
        let answer = |peer: &mut Peer, o: Outgoing, block1: Option<BlockOpt>, out: &mut Vec<Event>| {
            let p = response_packet(&o, block1, token.as_slice());
            peer.emit_response(now, mode, mid, p, out);
        };

        let parsed = match parse_request(&packet) {
            Ok(p) => p,
            Err(e) => return answer(self, Outgoing::error(&e), None, out),
        };
        let uri = uri_key(&parsed.path, &parsed.query);
        let payload = std::mem::take(&mut packet.payload);
        let (payload, block1) = match parsed.block1 {
            Some(b) => match self.block1_step(now, u8::from(packet.header.code), &uri, b, parsed.size1, payload) {
                Ok(Block1Step::Complete(body, last)) => (body, Some(last)),
                Ok(Block1Step::Continue(echo)) => {
                    let o = Outgoing::whole(Response::new(ResponseType::Continue));
                    return answer(self, o, Some(echo), out);
                }
                Err(e) => return answer(self, Outgoing::error(&e), None, out),
            },
            None if payload.len() > self.cfg.max_body => {
                let e = RequestError::TooLarge { max: self.cfg.max_body };
                return answer(self, Outgoing::error(&e), None, out);
            }
            None => (payload, None),
        };
        // A Block2 follow-up for a body we cached is served here (RFC 7959 §2.4).
        if let (RequestType::Get, Some(b2)) = (parsed.method, parsed.block2) {
            if b2.num > 0 {
                if let Some(o) = self.serve_cached(now, &uri, b2) {
                    let o = o.unwrap_or_else(|e| Outgoing::error(&e));
                    return answer(self, o, block1, out);
                }
            }
        }
        let meta = RequestMeta {
            mid,
            token,
            confirmable: con,
            block2: parsed.block2,
            block1,
            uri,
        };
        out.push(Event::Request(Request {
            meta,
            method: parsed.method,
            path: parsed.path,
            query: parsed.query,
            observe: parsed.observe,
            content_format: parsed.content_format,
            accept: parsed.accept,
            payload,
            packet,
        }));
    }

    /// One Block1 block of a request (RFC 7959 §2.5).
    fn block1_step(
        &mut self,
        now: Instant,
        method: u8,
        uri: &str,
        b: BlockOpt,
        size1: Option<u32>,
        payload: Vec<u8>,
    ) -> Result<Block1Step, RequestError> {
        let max = self.cfg.max_body;
        let idx = self.block1.iter().position(|t| t.method == method && t.uri == uri);
        let fail = |peer: &mut Peer, e: RequestError| {
            if let Some(i) = idx {
                peer.block1.remove(i);
            }
            Err(e)
        };
        if size1.is_some_and(|s| usize::try_from(s).map_or(true, |s| s > max)) {
            return fail(self, RequestError::TooLarge { max });
        }
        // Every block but the last is exactly the block size (RFC 7959 §2.3).
        let size = b.size();
        if (b.more && payload.len() != size) || payload.len() > size {
            return fail(self, RequestError::BlockSize);
        }
        let expires = later(now, self.cfg.exchange_lifetime);
        if b.num == 0 {
            if let Some(i) = idx {
                self.block1.remove(i);
            }
            if payload.len() > max {
                return Err(RequestError::TooLarge { max });
            }
            if !b.more {
                return Ok(Block1Step::Complete(payload, b));
            }
            while self.block1.len() >= self.cfg.max_block1_transfers.max(1) {
                self.block1.remove(0);
            }
            // Negotiate down to our preferred size; the client then continues at
            // num = 1024 / new size (RFC 7959 §2.5, Figure 6).
            let szx = b.szx.min(self.cfg.block_szx());
            self.block1.push(Block1Transfer {
                method,
                uri: uri.to_owned(),
                body: payload,
                szx,
                expires,
            });
            return Ok(Block1Step::Continue(BlockOpt {
                num: 0,
                more: true,
                szx,
            }));
        }
        let Some(i) = idx else {
            return Err(RequestError::Incomplete(b.num));
        };
        let Some(t) = self.block1.get_mut(i) else {
            return Err(RequestError::Incomplete(b.num));
        };
        if b.szx > t.szx {
            return fail(self, RequestError::BlockSize);
        }
        // num counts blocks of the current size, so a shrunk size still gives a byte offset.
        if (b.num as usize).checked_mul(size) != Some(t.body.len()) {
            return fail(self, RequestError::Incomplete(b.num));
        }
        if t.body.len() + payload.len() > max {
            return fail(self, RequestError::TooLarge { max });
        }
        t.body.extend_from_slice(&payload);
        if b.more {
            t.szx = b.szx;
            t.expires = expires;
            // Most recently active last: eviction takes the front.
            let t = self.block1.remove(i);
            self.block1.push(t);
            Ok(Block1Step::Continue(b))
        } else {
            let t = self.block1.remove(i);
            Ok(Block1Step::Complete(t.body, b))
        }
    }

    /// A Block2 block of a cached body, if one is cached for `uri`.
    fn serve_cached(&mut self, now: Instant, uri: &str, want: BlockOpt) -> Option<Result<Outgoing, RequestError>> {
        let i = self.block2.iter().position(|c| c.uri == uri)?;
        let mut c = self.block2.remove(i);
        c.expires = later(now, self.cfg.exchange_lifetime);
        let szx = want.szx.min(self.cfg.block_szx());
        let o = slice_block(&c.response, want.num, szx);
        self.block2.push(c);
        Some(o)
    }

    fn handle_ack(&mut self, now: Instant, packet: Packet, out: &mut Vec<Event>) {
        let mid = packet.header.message_id;
        // An ACK for a message id we are not waiting for is ignored (RFC 7252 §4.2).
        let Some(i) = self.outstanding.iter().position(|o| o.mid == mid) else {
            return;
        };
        let o = self.outstanding.remove(i);
        out.push(Event::Delivered { key: o.key });
        let Some(token) = o.token else { return };
        let Some(pi) = self.pending.iter().position(|p| p.token == token) else {
            return;
        };
        if is_response(packet.header.code) && Token::new(packet.get_token()) == token {
            self.deliver_response(pi, packet, out);
        } else if let Some(p) = self.pending.get_mut(pi) {
            // Empty ACK: the response will come separately (RFC 7252 §5.2.2).
            p.expires = Some(later(now, self.cfg.exchange_lifetime));
        }
    }

    fn handle_reset(&mut self, mid: u16, out: &mut Vec<Event>) {
        let (key, token) = if let Some(i) = self.outstanding.iter().position(|o| o.mid == mid) {
            let o = self.outstanding.remove(i);
            (o.key, o.token)
        } else if let Some(i) = self.recent_non.iter().position(|r| r.mid == mid) {
            let r = self.recent_non.remove(i);
            (r.key, r.token)
        } else {
            return;
        };
        out.push(Event::Rejected { key });
        if let Some(t) = token {
            retain_vec(&mut self.pending, |p| p.token != t);
        }
    }

    /// A separate (CON or NON) response to one of our requests, matched by token
    /// (RFC 7252 §5.3.2).
    fn handle_response(&mut self, now: Instant, packet: Packet, con: bool, out: &mut Vec<Event>) {
        let mid = packet.header.message_id;
        let token = Token::new(packet.get_token());
        let Some(pi) = self.pending.iter().position(|p| p.token == token) else {
            if con {
                out.push(Event::Transmit(empty_message(MessageType::Reset, mid)));
            }
            return;
        };
        let expires = later(now, self.cfg.exchange_lifetime);
        let state = if con {
            let ack = empty_message(MessageType::Acknowledgement, mid);
            out.push(Event::Transmit(ack.clone()));
            Seen::Answered(ack)
        } else {
            Seen::Dropped
        };
        self.dedup.insert(self.cfg.max_dedup_entries, mid, expires, state);
        // A response before the ACK acknowledges the request (RFC 7252 §5.2.2).
        if let Some(i) = self.outstanding.iter().position(|o| o.token == Some(token)) {
            let o = self.outstanding.remove(i);
            out.push(Event::Delivered { key: o.key });
        }
        self.deliver_response(pi, packet, out);
    }

    /// Reports a response to pending exchange `pi`, keeping the exchange if it is an
    /// observation that continues (a 2.xx with Observe, RFC 7641 §3.2).
    fn deliver_response(&mut self, pi: usize, packet: Packet, out: &mut Vec<Event>) {
        let Some(p) = self.pending.get_mut(pi) else { return };
        let key = p.key;
        let observing = p.observe && class_of(packet.header.code) == 2 && packet.get_observe_value().is_some();
        if observing {
            p.expires = None;
        } else {
            self.pending.remove(pi);
        }
        out.push(Event::Response { key, packet });
    }

    // ---- outbound ----

    fn emit_response(&mut self, now: Instant, mode: Mode, req_mid: u16, mut packet: Packet, out: &mut Vec<Event>) {
        match mode {
            Mode::Piggyback => {
                packet.header.set_type(MessageType::Acknowledgement);
                packet.header.message_id = req_mid;
                let bytes = codec::encode(&packet);
                out.push(Event::Transmit(bytes.clone()));
                self.dedup.set(req_mid, Seen::Answered(bytes));
            }
            Mode::Non => {
                packet.header.set_type(MessageType::NonConfirmable);
                packet.header.message_id = self.next_mid();
                out.push(Event::Transmit(codec::encode(&packet)));
            }
            Mode::SeparateCon => {
                // Duplicates of the request now get the empty ACK again.
                self.dedup.set(
                    req_mid,
                    Seen::Answered(empty_message(MessageType::Acknowledgement, req_mid)),
                );
                let mid = self.next_mid();
                packet.header.message_id = mid;
                if self.outstanding.len() >= MAX_OUTSTANDING {
                    packet.header.set_type(MessageType::NonConfirmable);
                    out.push(Event::Transmit(codec::encode(&packet)));
                } else {
                    packet.header.set_type(MessageType::Confirmable);
                    let bytes = codec::encode(&packet);
                    self.send_con(now, mid, SEPARATE_RESPONSE_KEY, bytes, None, out);
                }
            }
        }
    }

    /// Picks what of `resp`'s body goes into this message: all of it, or one Block2 block,
    /// in which case the whole body is cached under `uri` (RFC 7959 §2.4).
    fn prepare_body(
        &mut self,
        now: Instant,
        mut resp: Response,
        want: Option<BlockOpt>,
        uri: &str,
    ) -> Result<Outgoing, RequestError> {
        if resp.payload.len() > self.cfg.max_body {
            resp = Response::new(ResponseType::InternalServerError);
        }
        let szx = want.map_or(6, |b| b.szx).min(self.cfg.block_szx());
        let num = want.map_or(0, |b| b.num);
        if num == 0 && resp.payload.len() <= 16 << szx {
            return Ok(Outgoing::whole(resp));
        }
        if resp.etag.is_none() {
            resp.etag = Some(codec::fnv1a(&resp.payload).to_be_bytes().to_vec());
        }
        let outgoing = slice_block(&resp, num, szx)?;
        if self.cfg.max_block2_cache > 0 {
            // The follow-ups carry no Observe (RFC 7959 §3.4 / RFC 7641 §4.2).
            resp.observe = None;
            retain_vec(&mut self.block2, |c| c.uri != uri);
            while self.block2.len() >= self.cfg.max_block2_cache {
                self.block2.remove(0);
            }
            let expires = later(now, self.cfg.exchange_lifetime);
            self.block2.push(CachedBody {
                uri: uri.to_owned(),
                response: resp,
                expires,
            });
        }
        Ok(outgoing)
    }

    fn send_con(
        &mut self,
        now: Instant,
        mid: u16,
        key: u64,
        bytes: Vec<u8>,
        token: Option<Token>,
        out: &mut Vec<Event>,
    ) {
        let timeout = self.initial_timeout();
        out.push(Event::Transmit(bytes.clone()));
        let next = later(now, timeout);
        self.outstanding.push(Outstanding {
            mid,
            key,
            bytes,
            next,
            timeout,
            retransmits: 0,
            token,
        });
    }

    fn remember_non(&mut self, now: Instant, mid: u16, key: u64, token: Option<Token>) {
        if self.recent_non.len() >= MAX_RECENT_NON {
            self.recent_non.remove(0);
        }
        let expires = later(now, self.cfg.exchange_lifetime);
        self.recent_non.push(RecentNon {
            mid,
            key,
            token,
            expires,
        });
    }

    /// A random time in [ACK_TIMEOUT, ACK_TIMEOUT * ACK_RANDOM_FACTOR] (RFC 7252 §4.2).
    fn initial_timeout(&mut self) -> Duration {
        let base = self.cfg.ack_timeout;
        let factor = self.cfg.ack_random_factor;
        let spread = if factor.is_finite() && factor > 1.0 {
            factor - 1.0
        } else {
            0.0
        };
        let r = (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        let extra = Duration::try_from_secs_f64(base.as_secs_f64() * spread * r).unwrap_or(Duration::ZERO);
        base.saturating_add(extra)
    }

    fn expire(&mut self, now: Instant) {
        self.dedup.expire(now);
        retain_vec(&mut self.block1, |t| t.expires > now);
        retain_vec(&mut self.block2, |c| c.expires > now);
        retain_vec(&mut self.pending, |p| p.expires.is_none_or(|e| e > now));
        retain_vec(&mut self.recent_non, |r| r.expires > now);
    }

    fn next_mid(&mut self) -> u16 {
        let m = self.next_mid;
        self.next_mid = m.wrapping_add(1);
        m
    }

    /// SplitMix64: cheap, seedable, and good enough for message ids and tokens.
    fn next_u64(&mut self) -> u64 {
        self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// An 8-byte random token not used by another pending request of ours.
    fn new_token(&mut self) -> Token {
        loop {
            let t = Token::new(&self.next_u64().to_be_bytes());
            if !self.pending.iter().any(|p| p.token == t) {
                return t;
            }
        }
    }
}

/// `now + d`, saturating at `now` (only reachable with an absurd configuration).
fn later(now: Instant, d: Duration) -> Instant {
    now.checked_add(d).unwrap_or(now)
}

/// Block `num` of `resp`'s body at size 2^(szx+4), with Block2, Size2 and `resp`'s ETag.
fn slice_block(resp: &Response, num: u32, szx: u8) -> Result<Outgoing, RequestError> {
    let size = 16usize << szx;
    let total = resp.payload.len();
    let start = (num as usize)
        .checked_mul(size)
        .filter(|s| *s < total)
        .ok_or(RequestError::BlockOutOfRange(num))?;
    let end = start.saturating_add(size).min(total);
    let chunk = resp.payload.get(start..end).ok_or(RequestError::BlockOutOfRange(num))?;
    let mut head = Response {
        payload: Vec::new(),
        ..Response::new(resp.code)
    };
    head.content_format = resp.content_format;
    head.observe = resp.observe;
    head.location_path.clone_from(&resp.location_path);
    head.max_age = resp.max_age;
    head.etag.clone_from(&resp.etag);
    head.options.clone_from(&resp.options);
    head.payload = chunk.to_vec();
    Ok(Outgoing {
        response: head,
        block2: Some(BlockOpt {
            num,
            more: end < total,
            szx,
        }),
        size2: Some(total),
        size1: None,
    })
}

/// A response packet (type and message id are set by the caller).
fn response_packet(o: &Outgoing, block1: Option<BlockOpt>, token: &[u8]) -> Packet {
    let r = &o.response;
    let mut p = Packet::new();
    p.header.code = match r.code {
        ResponseType::UnKnown => MessageClass::Response(ResponseType::InternalServerError),
        c => MessageClass::Response(c),
    };
    p.set_token(Token::new(token).as_slice().to_vec());
    let mut add = |n: u16, v: Vec<u8>| p.add_option(n.into(), v);
    if let Some(o) = r.observe {
        // Observe is a 3-byte sequence number (RFC 7641 §4.4).
        add(option::OBSERVE, encode_uint(o & 0xFF_FFFF));
    }
    if let Some(e) = &r.etag {
        add(option::ETAG, e.clone());
    }
    for seg in &r.location_path {
        add(option::LOCATION_PATH, seg.as_bytes().to_vec());
    }
    if let Some(cf) = r.content_format {
        add(option::CONTENT_FORMAT, encode_uint(u32::from(cf)));
    }
    if let Some(m) = r.max_age {
        add(option::MAX_AGE, encode_uint(m));
    }
    if let Some(b) = o.block2 {
        add(option::BLOCK2, b.encode());
    }
    if let Some(b) = block1 {
        add(option::BLOCK1, b.encode());
    }
    if let Some(s) = o.size2 {
        add(option::SIZE2, encode_uint(u32::try_from(s).unwrap_or(u32::MAX)));
    }
    if let Some(s) = o.size1 {
        add(option::SIZE1, encode_uint(u32::try_from(s).unwrap_or(u32::MAX)));
    }
    for (n, v) in &r.options {
        if !matches!(*n, option::BLOCK1 | option::BLOCK2 | option::SIZE1 | option::SIZE2) {
            add(*n, v.clone());
        }
    }
    p.payload.clone_from(&r.payload);
    p
}

/// A request packet of ours.
fn request_packet(r: &OutgoingRequest, mid: u16, token: Token) -> Packet {
    let mut p = Packet::new();
    p.header.set_type(if r.confirmable {
        MessageType::Confirmable
    } else {
        MessageType::NonConfirmable
    });
    p.header.code = MessageClass::Request(r.method);
    p.header.message_id = mid;
    p.set_token(token.as_slice().to_vec());
    let mut add = |n: u16, v: Vec<u8>| p.add_option(n.into(), v);
    if let Some(o) = r.observe {
        add(option::OBSERVE, encode_uint(o & 0xFF_FFFF));
    }
    for seg in &r.path {
        add(option::URI_PATH, seg.as_bytes().to_vec());
    }
    if let Some(cf) = r.content_format {
        add(option::CONTENT_FORMAT, encode_uint(u32::from(cf)));
    }
    for q in &r.query {
        add(option::URI_QUERY, q.as_bytes().to_vec());
    }
    if let Some(a) = r.accept {
        add(option::ACCEPT, encode_uint(u32::from(a)));
    }
    for (n, v) in &r.options {
        add(*n, v.clone());
    }
    p.payload.clone_from(&r.payload);
    p
}

/// Reads a request's options, refusing what RFC 7252 §5.4 says to refuse: unrecognised
/// critical options, known critical options with a bad length or repeated when not
/// repeatable (§5.4.3, §5.4.5), and proxy requests (§5.7.2).
fn parse_request(packet: &Packet) -> Result<ParsedRequest, RequestError> {
    let method = match packet.header.code {
        MessageClass::Request(m) if m != RequestType::UnKnown => m,
        c => return Err(RequestError::UnknownMethod(u8::from(c))),
    };
    let mut r = ParsedRequest {
        method,
        path: Vec::new(),
        query: Vec::new(),
        observe: None,
        content_format: None,
        accept: None,
        block1: None,
        block2: None,
        size1: None,
    };
    let mut proxy = false;
    for (&n, values) in packet.options() {
        let first = values.front().map(Vec::as_slice).unwrap_or(&[]);
        let single = values.len() == 1;
        let all_len = |lo: usize, hi: usize| values.iter().all(|v| (lo..=hi).contains(&v.len()));
        let ok = match n {
            option::IF_MATCH => all_len(0, 8),
            option::URI_HOST => single && all_len(1, 255),
            option::IF_NONE_MATCH => single && all_len(0, 0),
            option::URI_PORT => single && all_len(0, 2),
            option::URI_PATH => {
                r.path = strings(values)?;
                all_len(0, 255)
            }
            option::URI_QUERY => {
                r.query = strings(values)?;
                all_len(0, 255)
            }
            option::ACCEPT => {
                r.accept = codec::decode_uint(first, 2).map(|v| v as u16);
                single && r.accept.is_some()
            }
            option::BLOCK1 | option::BLOCK2 => {
                let b = BlockOpt::decode(first);
                if b.is_some_and(|b| b.szx == 7) {
                    return Err(RequestError::ReservedSzx);
                }
                if n == option::BLOCK1 {
                    r.block1 = b;
                } else {
                    r.block2 = b;
                }
                single && b.is_some()
            }
            option::PROXY_URI | option::PROXY_SCHEME => {
                proxy = true;
                true
            }
            // Elective options: a bad value is ignored (RFC 7252 §5.4.1).
            option::OBSERVE => {
                r.observe = codec::decode_uint(first, 3);
                true
            }
            option::CONTENT_FORMAT => {
                r.content_format = codec::decode_uint(first, 2).map(|v| v as u16);
                true
            }
            option::SIZE1 => {
                r.size1 = codec::decode_uint(first, 4);
                true
            }
            n => n & 1 == 0,
        };
        if !ok {
            return Err(RequestError::BadOption(n));
        }
    }
    if proxy {
        return Err(RequestError::Proxying);
    }
    Ok(r)
}

fn strings(values: &std::collections::LinkedList<Vec<u8>>) -> Result<Vec<String>, RequestError> {
    values
        .iter()
        .map(|v| String::from_utf8(v.clone()).map_err(|_| RequestError::Utf8))
        .collect()
}
