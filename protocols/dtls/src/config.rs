//! Listener-wide configuration: credentials (PSK, certificates or both), cipher suites and
//! timers, turned once into an rtc-dtls `HandshakeConfig` shared by every peer through an `Arc`.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use rtc_dtls::cipher_suite::CipherSuiteId;
use rtc_dtls::config::{ClientAuthType, ConfigBuilder, ExtendedMasterSecretType, HandshakeConfig};
use rtc_dtls::crypto::Certificate;
use rtc_dtls::crypto_provider::{self as rtc_crypto, RTCCryptoProvider, SignatureScheme};
use rtc_shared::error::Error as RtcError;
use rustls::pki_types::CertificateDer;

use crate::Error;

/// Checks the client's certificate chain (DER, leaf first); `Err(reason)` rejects it and fails
/// the handshake with a bad_certificate alert.
///
/// Runs only when the client sent a certificate, after CA verification if
/// [`CertOptions::client_ca_der`] is set, or alone if not. rtc-dtls may call it more than once
/// in one handshake (it re-parses the flight), so it must have no side effects that count.
pub type ClientCertCallback = Arc<dyn Fn(&[Vec<u8>]) -> Result<(), String> + Send + Sync>;

/// Looks up the pre-shared key of a client identity (the `psk_identity` of its
/// ClientKeyExchange, RFC 4279 §2). `None` fails the handshake.
pub type PskLookup = Arc<dyn Fn(&[u8]) -> Option<Vec<u8>> + Send + Sync>;

/// PSK credentials (RFC 4279).
#[derive(Clone)]
pub struct PskOptions {
    /// Identity → key, called once per handshake.
    pub lookup: PskLookup,
    /// Sent in ServerKeyExchange if set (RFC 4279 §2). LwM2M servers leave it `None`.
    pub identity_hint: Option<Vec<u8>>,
}

/// Certificate credentials (ECDHE-ECDSA suites, RFC 7251).
#[derive(Clone)]
pub struct CertOptions {
    /// Server chain, leaf first, DER.
    pub cert_chain_der: Vec<Vec<u8>>,
    /// Server key, PKCS#8 DER (ECDSA P-256 or Ed25519). SEC1 `EC PRIVATE KEY` is refused.
    pub key_der: Vec<u8>,
    /// Trust anchors for client certificates (DER). `None`: no CA verification.
    pub client_ca_der: Option<Vec<Vec<u8>>>,
    /// Abort the handshake if the client sends no certificate.
    pub require_client_cert: bool,
    /// An extra (with a CA) or the only (without) check of the client chain.
    pub client_cert_callback: Option<ClientCertCallback>,
}

/// Everything [`DtlsServerConfig::new`] takes.
#[derive(Clone)]
pub struct DtlsServerOptions {
    /// PSK credentials, if PSK suites are served.
    pub psk: Option<PskOptions>,
    /// Certificate credentials, if ECDHE-ECDSA suites are served.
    pub cert: Option<CertOptions>,
    /// Restricts the suites. Empty: [`PSK_SUITES`] if `psk`, then [`ECDSA_SUITES`] if `cert`.
    /// rtc-dtls picks the first suite **in the client's order** that is also listed here.
    pub cipher_suites: Vec<CipherSuiteId>,
    /// Retransmission interval of handshake flights: fixed, without the doubling of RFC 6347
    /// §4.2.4.1. Default 1 s.
    pub flight_interval: Duration,
    /// Deadline for completing a handshake, counted from [`DtlsPeer::new`](crate::DtlsPeer::new)
    /// (enforced by this wrapper, not by rtc-dtls). Default 30 s.
    pub handshake_timeout: Duration,
    /// Largest handshake fragment (bytes). Default 1200.
    pub mtu: usize,
}

impl Default for DtlsServerOptions {
    fn default() -> Self {
        Self {
            psk: None,
            cert: None,
            cipher_suites: Vec::new(),
            flight_interval: Duration::from_secs(1),
            handshake_timeout: Duration::from_secs(30),
            mtu: 1200,
        }
    }
}

/// The default PSK suites: TLS_PSK_WITH_AES_128_CCM_8 (RFC 6655; LwM2M's and RFC 7252's
/// mandatory suite) and TLS_PSK_WITH_AES_128_GCM_SHA256 (RFC 5487).
pub const PSK_SUITES: [CipherSuiteId; 2] = [
    CipherSuiteId::Tls_Psk_With_Aes_128_Ccm_8,
    CipherSuiteId::Tls_Psk_With_Aes_128_Gcm_Sha256,
];

/// The default certificate suites: TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8 (RFC 7251; RFC 7252's
/// mandatory suite) and TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256 (RFC 5289).
pub const ECDSA_SUITES: [CipherSuiteId; 2] = [
    CipherSuiteId::Tls_Ecdhe_Ecdsa_With_Aes_128_Ccm_8,
    CipherSuiteId::Tls_Ecdhe_Ecdsa_With_Aes_128_Gcm_Sha256,
];

/// The ring-backed rtc-crypto provider (the only one compiled in: feature `crypto-ring`).
pub fn ring_provider() -> Arc<dyn RTCCryptoProvider> {
    Arc::new(rtc_crypto::providers::RingProvider::new())
}

/// Per-listener server configuration; clones share one `Arc<HandshakeConfig>`.
#[derive(Clone)]
pub struct DtlsServerConfig {
    pub(crate) hs: Arc<HandshakeConfig>,
    pub(crate) handshake_timeout: Duration,
}

fn config_error(e: impl fmt::Display) -> Error {
    Error::Config(e.to_string())
}

impl DtlsServerConfig {
    /// PSK only, with [`PSK_SUITES`] and default timers.
    pub fn psk(lookup: PskLookup, identity_hint: Option<Vec<u8>>) -> Result<Self, Error> {
        Self::new(DtlsServerOptions {
            psk: Some(PskOptions { lookup, identity_hint }),
            ..Default::default()
        })
    }

    /// Certificates only, with [`ECDSA_SUITES`] and default timers. With `client_ca_der` the
    /// client chain is verified against it (WebPKI through rustls' ring provider; an EKU
    /// extension, if present, must allow clientAuth). `require_client_cert` without a CA accepts
    /// any client certificate that proves possession of its key.
    pub fn certificate(
        cert_chain_der: Vec<Vec<u8>>,
        key_der: Vec<u8>,
        client_ca_der: Option<Vec<Vec<u8>>>,
        require_client_cert: bool,
    ) -> Result<Self, Error> {
        Self::new(DtlsServerOptions {
            cert: Some(CertOptions {
                cert_chain_der,
                key_der,
                client_ca_der,
                require_client_cert,
                client_cert_callback: None,
            }),
            ..Default::default()
        })
    }

    /// PSK, certificates, or both on one listener (the suite the client offers picks the
    /// credential).
    pub fn new(opts: DtlsServerOptions) -> Result<Self, Error> {
        let DtlsServerOptions {
            psk,
            cert,
            mut cipher_suites,
            flight_interval,
            handshake_timeout,
            mtu,
        } = opts;
        let provider = ring_provider();
        let mut b = ConfigBuilder::default()
            .with_crypto_provider(provider.clone())
            .with_extended_master_secret(ExtendedMasterSecretType::Request)
            .with_flight_interval(flight_interval)
            .with_mtu(mtu);

        if cipher_suites.is_empty() {
            // rtc-dtls' default list has no PSK suite at all, so always be explicit.
            if psk.is_some() {
                cipher_suites.extend(PSK_SUITES);
            }
            if cert.is_some() {
                cipher_suites.extend(ECDSA_SUITES);
            }
        }
        if cipher_suites.is_empty() {
            return Err(Error::Config("neither psk nor certificate configured".into()));
        }
        b = b.with_cipher_suites(cipher_suites);

        if let Some(psk) = psk {
            let lookup = psk.lookup;
            b = b
                .with_psk(Some(Arc::new(move |identity: &[u8]| {
                    // Err: rtc-dtls sends a fatal alert and fails the handshake.
                    lookup(identity).ok_or_else(|| RtcError::Other("unknown psk identity".into()))
                })))
                .with_psk_identity_hint(psk.identity_hint);
        }

        if let Some(c) = cert {
            b = with_certificate(b, &provider, c)?;
        }

        let hs = b.build(false, None).map_err(config_error)?;
        Ok(Self {
            hs: Arc::new(hs),
            handshake_timeout,
        })
    }
}

/// Adds the server certificate and the client-certificate policy.
fn with_certificate(
    mut b: ConfigBuilder,
    provider: &Arc<dyn RTCCryptoProvider>,
    c: CertOptions,
) -> Result<ConfigBuilder, Error> {
    let crypto = provider.crypto();
    let signing_key = [SignatureScheme::EcdsaP256Sha256, SignatureScheme::Ed25519]
        .into_iter()
        .find_map(|s| crypto.import_signing_key(s, &c.key_der).ok())
        .ok_or_else(|| Error::Config("key_der: not a PKCS#8 ECDSA P-256 or Ed25519 key".into()))?;
    let chain = c.cert_chain_der.into_iter().map(CertificateDer::from).collect();
    b = b.with_certificates(vec![Certificate::from_signing_key(chain, signing_key)]);

    let auth = match (&c.client_ca_der, c.require_client_cert) {
        (Some(_), true) => ClientAuthType::RequireAndVerifyClientCert,
        (Some(_), false) => ClientAuthType::VerifyClientCertIfGiven,
        (None, true) => ClientAuthType::RequireAnyClientCert,
        (None, false) if c.client_cert_callback.is_some() => ClientAuthType::RequestClientCert,
        (None, false) => ClientAuthType::NoClientCert,
    };
    b = b.with_client_auth(auth);
    if let Some(cas) = c.client_ca_der {
        let mut store = rustls::RootCertStore::empty();
        for der in cas {
            store.add(CertificateDer::from(der)).map_err(config_error)?;
        }
        b = b.with_client_cas(store);
    }
    if let Some(cb) = c.client_cert_callback {
        b = b.with_verify_peer_certificate(Some(Arc::new(
            move |chain: &[Vec<u8>], _verified: &[CertificateDer<'static>]| cb(chain).map_err(RtcError::Other),
        )));
    }
    Ok(b)
}
