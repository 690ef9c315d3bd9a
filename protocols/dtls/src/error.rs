//! The one error type of the DTLS wrapper, split by what happened to the association: bad
//! configuration, a datagram dropped without effect, a failed handshake, an ended session, and
//! misuse by the caller.

use thiserror::Error;

/// Errors from [`DtlsServerConfig`](crate::DtlsServerConfig) and [`DtlsPeer`](crate::DtlsPeer).
///
/// Only [`Error::Dropped`] leaves a peer usable; after [`Error::Handshake`] or [`Error::Closed`]
/// the peer is closed ([`DtlsPeer::is_closed`](crate::DtlsPeer::is_closed)) and should be
/// removed once [`DtlsPeer::poll_transmit`](crate::DtlsPeer::poll_transmit) is drained (an
/// alert may be queued).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum Error {
    /// Bad configuration: no credential, no usable cipher suite, a key that is not PKCS#8
    /// P-256/Ed25519, an unparsable CA certificate.
    #[error("dtls config: {0}")]
    Config(String),
    /// The datagram was discarded without affecting the association: bad record framing, a
    /// record that cannot be authenticated after the handshake, or the peer is already closed.
    /// Safe to ignore (RFC 6347 §4.1.2.7: invalid records are silently discarded).
    #[error("dtls datagram dropped: {0}")]
    Dropped(String),
    /// The handshake failed: bad PSK, unknown identity, rejected certificate, an alert from the
    /// client, or the handshake deadline passed. The peer is closed.
    #[error("dtls handshake failed: {0}")]
    Handshake(String),
    /// The established association ended: a fatal error in the record layer, or a write on a
    /// closed peer. The peer is closed.
    #[error("dtls closed: {0}")]
    Closed(String),
    /// [`DtlsPeer::send_app_data`](crate::DtlsPeer::send_app_data) before the handshake
    /// completed.
    #[error("dtls handshake not complete")]
    NotEstablished,
}
