//! A sans-IO CoAP (RFC 7252) message layer for one remote peer: deduplication, piggy-backed
//! and separate responses, CON retransmission, block-wise transfer (RFC 7959) and observe
//! notifications (RFC 7641). No sockets, no async, no threads, no clock: the driver passes
//! each datagram and the current `Instant` in, and sends what comes out.
//!
//! # Layout
//!
//! - [`config`]: [`Config`], the transmission parameters and per-peer limits, shared by all
//!   peers through an `Arc`.
//! - [`peer`]: [`Peer`], the state machine for one remote endpoint.
//! - [`message`]: the [`Event`]s a peer emits, the [`Request`] it surfaces and the
//!   [`Response`], [`Notification`] and [`OutgoingRequest`] the application hands in.
//! - [`codec`]: framing checks on top of `coap_lite::Packet` (which does the decoding and
//!   encoding), and Block option values.
//! - [`error`]: what went wrong, by blame; [`RequestError::response_code`] is the one place
//!   that maps refusals to CoAP response codes.
//!
//! # Calling contract
//!
//! A listener keeps one [`Peer`] per remote address and, following quinn's naming:
//!
//! 1. calls [`Peer::handle_datagram`] for each datagram from that address;
//! 2. answers each [`Event::Request`] with [`Peer::respond`] (after [`Peer::ack_empty`] if the
//!    answer will take a while), sends observe notifications with [`Peer::notify`] and its own
//!    requests with [`Peer::send_request`];
//! 3. sends every [`Event::Transmit`], and acts on the other events;
//! 4. calls [`Peer::handle_timeout`] once [`Peer::poll_timeout`] has passed, and may drop the
//!    peer when [`Peer::is_quiet`] and no observation or session refers to it.
//!
//! Every method appends to the caller's `Vec<Event>` so one buffer serves a whole batch.
//!
//! # What the peer answers by itself
//!
//! Malformed CONs and pings get RST; unknown critical options 4.02, proxy requests 5.05,
//! unknown methods 4.05, non-UTF-8 paths 4.00; Block1 blocks 2.31 Continue, 4.08 or 4.13;
//! Block2 follow-ups for a cached body the next block; duplicates their earlier answer. The
//! application sees only complete, new requests.
//!
//! # Memory
//!
//! Every table is capped by [`Config`] (or [`MAX_OUTSTANDING`], [`MAX_PENDING_REQUESTS`]) and
//! expires after `exchange_lifetime`; tables give their allocation back when they empty, so an
//! idle peer is `size_of::<Peer>()` bytes and no heap. Worst case per peer is roughly
//! `max_dedup_entries` remembered answers (each at most one datagram), `max_block1_transfers
//! * max_body` of reassembly, `max_block2_cache * max_body` of cached bodies, and
//! [`MAX_OUTSTANDING`] datagrams awaiting ACK.

pub use coap_lite;

pub mod codec;
pub mod config;
pub mod error;
#[doc(hidden)]
pub mod fuzzing;
pub mod message;
pub mod peer;
mod state;

pub use codec::BlockOpt;
pub use config::Config;
pub use error::{ConfigError, FormatError, RequestError};
pub use message::{uri_key, Event, Notification, OutgoingRequest, Request, RequestMeta, Response};
pub use peer::{Peer, MAX_OUTSTANDING, MAX_PENDING_REQUESTS, SEPARATE_RESPONSE_KEY};

#[cfg(test)]
mod tests;
