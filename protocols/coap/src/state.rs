//! The bounded per-peer tables behind [`crate::Peer`]: remembered inbound message ids, Block1
//! reassemblies, cached Block2 bodies, our unacknowledged CONs and our requests awaiting a
//! response. Each is a small `Vec`/`VecDeque` scanned linearly (their caps are tens of
//! entries) that gives its memory back when it empties, so an idle peer holds no heap.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::codec::Token;
use crate::message::Response;

/// What we know about an inbound message id (RFC 7252 §4.5).
#[derive(Debug)]
pub(crate) enum Seen {
    /// A CON request handed to the application and not answered yet; `acked` once an empty
    /// ACK went out (the answer then becomes a separate response).
    Pending { acked: bool },
    /// Answered: a duplicate CON gets exactly these bytes again.
    Answered(Vec<u8>),
    /// A NON message, or one whose duplicates need no answer: duplicates are dropped.
    Dropped,
}

#[derive(Debug)]
pub(crate) struct DedupEntry {
    pub(crate) mid: u16,
    pub(crate) expires: Instant,
    pub(crate) state: Seen,
}

/// Inbound message ids in arrival order, capped; the oldest is forgotten first.
#[derive(Debug, Default)]
pub(crate) struct Dedup {
    pub(crate) entries: VecDeque<DedupEntry>,
}

impl Dedup {
    pub(crate) fn find_mut(&mut self, mid: u16) -> Option<&mut DedupEntry> {
        self.entries.iter_mut().find(|e| e.mid == mid)
    }

    pub(crate) fn find(&self, mid: u16) -> Option<&DedupEntry> {
        self.entries.iter().find(|e| e.mid == mid)
    }

    pub(crate) fn insert(&mut self, cap: usize, mid: u16, expires: Instant, state: Seen) {
        if let Some(e) = self.find_mut(mid) {
            *e = DedupEntry { mid, expires, state };
            return;
        }
        while self.entries.len() >= cap.max(1) {
            self.entries.pop_front();
        }
        if self.entries.capacity() == 0 {
            // Most peers have one message remembered at a time: allocate for one, not the
            // default four (a peer per idle device adds up).
            self.entries.reserve_exact(1);
        }
        self.entries.push_back(DedupEntry { mid, expires, state });
    }

    pub(crate) fn set(&mut self, mid: u16, state: Seen) {
        if let Some(e) = self.find_mut(mid) {
            e.state = state;
        }
    }

    pub(crate) fn expire(&mut self, now: Instant) {
        self.entries.retain(|e| e.expires > now);
        if self.entries.is_empty() {
            self.entries = VecDeque::new();
        }
    }

    pub(crate) fn heap_size(&self) -> usize {
        self.entries.capacity() * std::mem::size_of::<DedupEntry>()
            + self
                .entries
                .iter()
                .map(|e| match &e.state {
                    Seen::Answered(b) => b.capacity(),
                    _ => 0,
                })
                .sum::<usize>()
    }
}

/// A Block1 request body being reassembled (RFC 7959 §2.5), keyed by method and URI.
#[derive(Debug)]
pub(crate) struct Block1Transfer {
    pub(crate) method: u8,
    pub(crate) uri: String,
    pub(crate) body: Vec<u8>,
    /// The largest SZX the client may still use (sizes may shrink, never grow).
    pub(crate) szx: u8,
    pub(crate) expires: Instant,
}

/// A response body kept for Block2 follow-ups (RFC 7959 §2.4), keyed by URI.
#[derive(Debug)]
pub(crate) struct CachedBody {
    pub(crate) uri: String,
    /// The whole response with its ETag set and no Observe.
    pub(crate) response: Response,
    pub(crate) expires: Instant,
}

/// One of our CONs awaiting its ACK (RFC 7252 §4.2).
#[derive(Debug)]
pub(crate) struct Outstanding {
    pub(crate) mid: u16,
    pub(crate) key: u64,
    pub(crate) bytes: Vec<u8>,
    pub(crate) next: Instant,
    pub(crate) timeout: Duration,
    pub(crate) retransmits: u32,
    /// Set when the CON is a request of ours (its pending exchange has this token).
    pub(crate) token: Option<Token>,
}

/// One of our requests awaiting its response, matched by token (RFC 7252 §5.3.2).
#[derive(Debug)]
pub(crate) struct PendingExchange {
    pub(crate) token: Token,
    pub(crate) key: u64,
    /// The request registered an observation: notifications keep the exchange alive.
    pub(crate) observe: bool,
    /// `None` while the CON is being retransmitted or while an observation is established.
    pub(crate) expires: Option<Instant>,
}

/// A NON we sent whose RST we still want to report as [`crate::Event::Rejected`].
#[derive(Debug)]
pub(crate) struct RecentNon {
    pub(crate) mid: u16,
    pub(crate) key: u64,
    pub(crate) token: Option<Token>,
    pub(crate) expires: Instant,
}

/// Drops the entries `keep` refuses and frees the allocation when nothing is left.
pub(crate) fn retain_vec<T>(v: &mut Vec<T>, keep: impl FnMut(&T) -> bool) {
    v.retain(keep);
    if v.is_empty() {
        *v = Vec::new();
    }
}

/// Heap bytes of a `Response`.
pub(crate) fn response_heap(r: &Response) -> usize {
    r.payload.capacity()
        + r.etag.as_ref().map_or(0, Vec::capacity)
        + r.location_path
            .iter()
            .map(|s| s.capacity() + std::mem::size_of::<String>())
            .sum::<usize>()
        + r.options
            .iter()
            .map(|(_, v)| v.capacity() + std::mem::size_of::<(u16, Vec<u8>)>())
            .sum::<usize>()
}
