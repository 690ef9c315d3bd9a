//! A sans-IO DTLS 1.2 (RFC 6347) server peer for CoAP over DTLS (RFC 7252 §9) and LwM2M, built
//! on `rtc-dtls` 0.21 (webrtc-rs). PSK (RFC 4279: `TLS_PSK_WITH_AES_128_CCM_8`,
//! `TLS_PSK_WITH_AES_128_GCM_SHA256`) and ECDHE-ECDSA certificate suites (`..._CCM_8`,
//! `..._GCM_SHA256`), either or both on one listener, with optional or required client
//! certificates.
//!
//! # Layout
//!
//! - `config`: [`DtlsServerConfig`], built once per listener from [`DtlsServerOptions`]
//!   ([`PskOptions`], [`CertOptions`]) and shared by all peers through an `Arc`.
//! - `peer`: [`DtlsPeer`], one association with one remote address.
//! - `record`: record framing checks and the post-handshake record filter.
//! - `error`: [`Error`].
//! - `fuzzing`: the driver of the `dtls_peer` fuzz target (hidden; not part of the API).
//!
//! # Calling contract
//!
//! The peer owns no socket and reads no clock; the caller passes `now` in. A listener keeps one
//! [`DtlsPeer`] per remote address and, following quinn's naming:
//!
//! 1. calls [`DtlsPeer::handle_datagram`] for each datagram from that address, then drains
//!    [`DtlsPeer::poll_transmit`] (send to the address) and [`DtlsPeer::poll_app_data`];
//! 2. sends with [`DtlsPeer::send_app_data`] once [`DtlsPeer::is_established`], and drains
//!    [`DtlsPeer::poll_transmit`];
//! 3. calls [`DtlsPeer::handle_timeout`] once [`DtlsPeer::poll_timeout`] has passed;
//! 4. removes the peer once [`DtlsPeer::is_closed`] and its transmits are drained.
//!
//! [`Error::Dropped`] from `handle_datagram` means "ignored, nothing changed"; every other error
//! means the peer is closed. After the handshake the client's identity is in
//! [`DtlsPeer::psk_identity`] or [`DtlsPeer::peer_certificates`].
//!
//! # rtc-dtls flaws worked around
//!
//! rtc-dtls 0.21.1 lets an off-path attacker who can spoof the client's address end or stall an
//! established session with single datagrams. The wrapper:
//!
//! 1. ignores an undecryptable record after the handshake under a PSK suite, where rtc-dtls
//!    would answer with a fatal unknown_psk_identity alert and close (other suites already drop
//!    such records silently, as RFC 6347 §4.1.2.7 asks). Side effect: a genuine *encrypted* fatal
//!    alert from the client is ignored as well; close_notify still closes the peer;
//! 2. drops epoch-1 ChangeCipherSpec records after the handshake: rtc-dtls treats one as
//!    authentic, bumps the expected epoch to 2 and from then on discards every genuine record;
//! 3. drops epoch-0 records after the handshake: each spoofed handshake record made rtc-dtls
//!    resend its last flight (a reflection) until its retransmission budget was spent, which then
//!    broke the genuine recovery of a lost last flight (RFC 6347 §4.2.4). That recovery still
//!    works: the client's repeated flight carries an epoch-1 Finished, which passes.
//!
//! And one that needs no spoofing: before its keys exist rtc-dtls queues every epoch-1 record
//! without limit, so a client could grow a half-open peer until the handshake deadline. The
//! wrapper passes at most 4 KiB of epoch >= 1 records before the handshake completes (a genuine
//! client sends one Finished record, under 100 bytes, per transmission of its last flight).
//!
//! The wrapper also adds a handshake deadline ([`DtlsServerOptions::handshake_timeout`]):
//! rtc-dtls re-arms its wait after a HelloVerifyRequest forever, so a half-open peer would
//! otherwise never end.
//!
//! # Known limits
//!
//! - HelloVerifyRequest cookies (RFC 6347 §4.2.1) are always on but not stateless: rtc-dtls
//!   creates the connection state on the first ClientHello, so a spoofed ClientHello costs a
//!   [`DtlsPeer`] until the handshake deadline. Callers should cap half-open peers.
//! - No session resumption: every association runs a full handshake.
//! - No Connection ID (RFC 9146): a client whose NAT rebinds its address must handshake again.
//! - Fixed flight retransmission interval ([`DtlsServerOptions::flight_interval`], 1 s), no
//!   exponential backoff; rtc-dtls gives up after 7 retransmissions.
//! - An unauthenticated epoch-0 alert (spoofable) aborts a handshake in progress.
//! - Memory: about 9.3 kB per established PSK peer (measured RSS).
//! - Server keys must be PKCS#8 (ECDSA P-256 or Ed25519); SEC1 keys are refused.
//! - No renegotiation, no DTLS 1.3.

mod config;
mod error;
#[doc(hidden)]
pub mod fuzzing;
mod peer;
mod record;

#[cfg(test)]
mod tests;

pub use config::{
    ring_provider, CertOptions, ClientCertCallback, DtlsServerConfig, DtlsServerOptions, PskLookup, PskOptions,
    ECDSA_SUITES, PSK_SUITES,
};
pub use error::Error;
pub use peer::DtlsPeer;
/// rtc-dtls' cipher suite identifier, as used in [`DtlsServerOptions::cipher_suites`].
pub use rtc_dtls::cipher_suite::CipherSuiteId;
