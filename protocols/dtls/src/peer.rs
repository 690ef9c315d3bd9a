//! [`DtlsPeer`]: the server side of one DTLS association, a thin guard around a one-connection
//! rtc-dtls `Endpoint` that adds a handshake deadline and drops records an off-path attacker
//! could use to kill or stall an established session.

use std::collections::VecDeque;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Instant;

use bytes::BytesMut;
use rtc_dtls::endpoint::{Endpoint, EndpointEvent};
use rtc_shared::error::Error as RtcError;
use rtc_shared::TransportProtocol;

use crate::record::{authenticated_records, budget_early_records};
use crate::{DtlsServerConfig, Error};

/// rtc-dtls only copies the local address into transmit metadata, which we discard.
/// Bytes of epoch >= 1 records accepted before the handshake completes; see
/// `record::budget_early_records`.
const EARLY_PROTECTED_BUDGET: usize = 4096;

const PLACEHOLDER_LOCAL: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0));

/// One DTLS association with one remote address (server side).
///
/// Why an `Endpoint` and not rtc-dtls' per-connection `DTLSConn`: the methods that drive a
/// `DTLSConn` handshake are `pub(crate)`, so the endpoint is the only usable driver. It creates
/// the connection on the first datagram, so [`DtlsPeer::new`] cannot fail today.
pub struct DtlsPeer {
    ep: Endpoint,
    remote: SocketAddr,
    app_in: VecDeque<BytesMut>,
    established: bool,
    closed: bool,
    handshake_deadline: Instant,
    /// What is left of [`EARLY_PROTECTED_BUDGET`].
    early_budget: usize,
    /// The latest `now` handed in; stamps records written by [`DtlsPeer::send_app_data`], which
    /// takes no clock (rtc-dtls only copies it into transmit metadata).
    now: Instant,
}

impl DtlsPeer {
    /// A peer for datagrams from `remote`; the handshake deadline starts at `now`.
    pub fn new(cfg: &DtlsServerConfig, remote: SocketAddr, now: Instant) -> Result<Self, Error> {
        Ok(Self {
            ep: Endpoint::new(PLACEHOLDER_LOCAL, TransportProtocol::UDP, Some(cfg.hs.clone())),
            remote,
            app_in: VecDeque::new(),
            established: false,
            closed: false,
            handshake_deadline: now + cfg.handshake_timeout,
            early_budget: EARLY_PROTECTED_BUDGET,
            now,
        })
    }

    /// Feeds one received datagram. Afterwards drain [`DtlsPeer::poll_transmit`] and
    /// [`DtlsPeer::poll_app_data`].
    ///
    /// `Err(Error::Dropped)`: discarded without effect, may be ignored. Any other error: the
    /// peer is now closed.
    pub fn handle_datagram(&mut self, now: Instant, data: &[u8]) -> Result<(), Error> {
        self.now = now;
        if self.closed {
            // After close_notify rtc-dtls removed the connection; a read now would silently
            // start a new one.
            return Err(Error::Dropped("peer closed".into()));
        }
        // rtc-dtls fails bad framing with ErrInvalidPacketLength before touching any state;
        // catch it here so it is never mistaken for a fatal error.
        let bad_framing = || Error::Dropped("[RFC 6347 §4.1] bad record framing".into());
        let input = if self.established {
            match authenticated_records(data) {
                Ok(Some(records)) => records,
                Ok(None) => return Err(Error::Dropped("unprotected record after the handshake".into())),
                Err(_) => return Err(bad_framing()),
            }
        } else {
            match budget_early_records(data, &mut self.early_budget) {
                Ok(Some(records)) => records,
                Ok(None) => return Err(Error::Dropped("too many protected records before the handshake".into())),
                Err(_) => return Err(bad_framing()),
            }
        };
        match self.ep.read(now, self.remote, None, input) {
            Ok(events) => {
                for ev in events {
                    match ev {
                        EndpointEvent::HandshakeComplete => self.established = true,
                        EndpointEvent::ApplicationData(d) => self.app_in.push_back(d),
                        EndpointEvent::PeerClosed => self.closed = true,
                        // `EndpointEvent` is non-exhaustive; nothing else concerns a server peer.
                        _ => {}
                    }
                }
                Ok(())
            }
            Err(RtcError::ErrAlertFatalOrClose) if self.established => {
                // rtc-dtls 0.21.1 answers *any* record that fails to decrypt under a PSK suite
                // with a fatal unknown_psk_identity alert, even after the handshake: one spoofed
                // datagram would kill an authenticated session. Other suites silently drop such
                // records, as RFC 6347 §4.1.2.7 asks; do the same for PSK by discarding the queued
                // alert. Cost: a genuine encrypted fatal alert is ignored too (close_notify still
                // arrives as PeerClosed; idle timeouts reap the rest). The failed read leaves the
                // connection untouched: the replay window only advances on records that decrypt.
                while self.ep.poll_transmit().is_some() {}
                Err(Error::Dropped(
                    "[RFC 6347 §4.1.2.7] undecryptable or alert record after the handshake".into(),
                ))
            }
            Err(e) => {
                // Before the handshake every error ends the attempt (an alert was sent or
                // received, or the state machine failed); rtc-dtls silently drops undecodable
                // contents of a well-framed datagram.
                self.closed = true;
                if self.established {
                    Err(Error::Closed(e.to_string()))
                } else {
                    Err(Error::Handshake(e.to_string()))
                }
            }
        }
    }

    /// The next datagram to send to the remote address.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.ep.poll_transmit().map(|t| Vec::from(t.message))
    }

    /// The next decrypted application datagram (for CoAP: one message).
    pub fn poll_app_data(&mut self) -> Option<Vec<u8>> {
        self.app_in.pop_front().map(Vec::from)
    }

    /// Encrypts one application datagram; the record appears in [`DtlsPeer::poll_transmit`].
    /// Refused before the handshake completes ([`Error::NotEstablished`]) rather than queued.
    pub fn send_app_data(&mut self, data: &[u8]) -> Result<(), Error> {
        if self.closed {
            return Err(Error::Closed("peer closed".into()));
        }
        if !self.established {
            return Err(Error::NotEstablished);
        }
        self.ep
            .write(self.now, self.remote, data)
            .map_err(|e| Error::Closed(e.to_string()))
    }

    /// When to call [`DtlsPeer::handle_timeout`] next: a handshake retransmission or the
    /// handshake deadline. `None` once established or closed (an established association has
    /// no timers; idle timeouts are the caller's).
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.closed || self.established {
            return None;
        }
        Some(match self.ep.poll_timeout(&self.remote) {
            Some(t) => t.min(self.handshake_deadline),
            None => self.handshake_deadline,
        })
    }

    /// Retransmits a handshake flight if due, or closes the peer once the handshake deadline
    /// has passed (`Err(Error::Handshake)`). Drain [`DtlsPeer::poll_transmit`] afterwards.
    pub fn handle_timeout(&mut self, now: Instant) -> Result<(), Error> {
        self.now = now;
        if self.closed || self.established {
            return Ok(());
        }
        if now >= self.handshake_deadline {
            self.closed = true;
            return Err(Error::Handshake("handshake timeout".into()));
        }
        match self.ep.handle_timeout(self.remote, now) {
            Ok(()) => Ok(()),
            // No connection yet (no datagram seen): nothing to retransmit.
            Err(RtcError::InvalidRemoteAddress(_)) => Ok(()),
            Err(e) => {
                self.closed = true;
                Err(Error::Handshake(e.to_string()))
            }
        }
    }

    /// The handshake completed and the peer is not closed.
    pub fn is_established(&self) -> bool {
        self.established && !self.closed
    }

    /// The association is over (handshake failure, deadline, fatal error, close_notify either
    /// way); the peer only drains [`DtlsPeer::poll_transmit`] from now on.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// The client's PSK identity (from its ClientKeyExchange) after a PSK handshake.
    pub fn psk_identity(&self) -> Option<Vec<u8>> {
        let st = self.ep.get_connection_state(self.remote)?;
        // rtc-dtls stores the identity a client sent in the server's `identity_hint` field.
        (self.established && st.is_cipher_suite_psk()).then(|| st.identity_hint.clone())
    }

    /// The client's certificate chain as sent (DER, leaf first) after a certificate handshake
    /// in which the client sent one.
    pub fn peer_certificates(&self) -> Option<Vec<Vec<u8>>> {
        let st = self.ep.get_connection_state(self.remote)?;
        (self.established && !st.peer_certificates.is_empty()).then(|| st.peer_certificates.clone())
    }

    /// The negotiated suite's IANA name, e.g. `"TLS_PSK_WITH_AES_128_CCM_8"`.
    pub fn cipher_suite(&self) -> Option<String> {
        let st = self.ep.get_connection_state(self.remote)?;
        st.cipher_suite().map(|c| c.id().to_string())
    }

    /// Sends close_notify (drain [`DtlsPeer::poll_transmit`] afterwards) and closes the peer.
    pub fn close(&mut self, now: Instant) {
        self.now = now;
        if !self.closed {
            self.ep.stop(now, self.remote);
            self.closed = true;
        }
    }

    /// The bare rtc-dtls endpoint, without any of the wrapper's guards (tests that show the
    /// flaws the guards work around).
    #[cfg(test)]
    pub(crate) fn into_raw_endpoint_for_tests(self) -> Endpoint {
        self.ep
    }
}
