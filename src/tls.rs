//! TLS for listeners: building a rustls server configuration from PEM files, and the
//! sans-IO TLS state of one connection.
//!
//! The connection actor keeps its readiness-driven I/O: ciphertext read from the socket goes
//! into [`TlsState::read_ciphertext`], plaintext comes out for the MQTT decoder; plaintext to
//! send goes in with [`TlsState::write_plaintext`] and ciphertext leaves through
//! [`TlsState::write_ciphertext`]. rustls itself is sans-IO, so no async TLS stream is needed.
//!
//! Only the ring crypto provider is used (see crates.md: with two providers in the graph,
//! rustls cannot choose one), passed explicitly so nothing depends on a process default.

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig, ServerConnection};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};
use serde::Deserialize;

/// Whether clients must present a certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ClientAuth {
    /// No client certificates are asked for.
    #[default]
    None,
    /// Asked for, verified when given.
    Optional,
    /// Required: a handshake without a valid client certificate fails.
    Required,
}

/// A listener's `tls` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// Server certificate chain (PEM, leaf first). Required for TLS; for DTLS (coap
    /// listeners) it enables the ECDHE-ECDSA suites.
    #[serde(default)]
    pub cert: Option<PathBuf>,
    /// Server private key (PEM: PKCS#8, PKCS#1 or SEC1; DTLS needs PKCS#8 ECDSA P-256 or
    /// Ed25519).
    #[serde(default)]
    pub key: Option<PathBuf>,
    /// DTLS only (coap listeners): pre-shared keys, looked up by identity in the listener's
    /// auth chain (its `psk` authenticator).
    #[serde(default)]
    pub psk: bool,
    /// CA certificates that client certificates must chain to (PEM).
    #[serde(default)]
    pub client_ca: Option<PathBuf>,
    /// Client certificates: `none`, `optional` or `required`.
    #[serde(default)]
    pub client_auth: ClientAuth,
    /// Certificate revocation lists (PEM) checked for client certificates.
    #[serde(default)]
    pub crl: Vec<PathBuf>,
    /// ALPN protocols offered; a client offering none of them is refused. Default `["mqtt"]`;
    /// clients that offer no ALPN at all are always accepted.
    #[serde(default)]
    pub alpn: Option<Vec<String>>,
}

/// Why a TLS configuration cannot be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A file cannot be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: io::Error,
    },
    /// A PEM file holds nothing of the expected kind.
    #[error("{path}: no {what} found (expected PEM)")]
    Empty {
        /// The file.
        path: String,
        /// What was looked for.
        what: &'static str,
    },
    /// A PEM file is malformed.
    #[error("{path}: {message}")]
    Pem {
        /// The file.
        path: String,
        /// The parser's message.
        message: String,
    },
    /// The key does not belong to the certificate, or rustls refused the material.
    #[error("{0}")]
    Rustls(String),
    /// TLS needs a certificate and its key.
    #[error("cert and key are required")]
    NoCertificate,
    /// `psk` is a DTLS setting.
    #[error("psk = true is for DTLS (coap listeners); TLS has no pre-shared keys")]
    PskNotForTls,
    /// `client_auth` needs `client_ca`.
    #[error("client_auth = \"{0}\" needs client_ca")]
    NoClientCa(&'static str),
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.display().to_string(),
        source,
    })
}

fn pem_error(path: &Path, e: impl std::fmt::Display) -> TlsError {
    TlsError::Pem {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

/// Reads every certificate of a PEM file.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let data = read(path)?;
    let certs: Vec<_> = CertificateDer::pem_slice_iter(&data)
        .collect::<Result<_, _>>()
        .map_err(|e| pem_error(path, e))?;
    if certs.is_empty() {
        return Err(TlsError::Empty {
            path: path.display().to_string(),
            what: "certificate",
        });
    }
    Ok(certs)
}

pub(crate) fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let data = read(path)?;
    PrivateKeyDer::from_pem_slice(&data).map_err(|e| match e {
        rustls_pki_types::pem::Error::NoItemsFound => TlsError::Empty {
            path: path.display().to_string(),
            what: "private key",
        },
        other => pem_error(path, other),
    })
}

pub(crate) fn load_crls(paths: &[PathBuf]) -> Result<Vec<CertificateRevocationListDer<'static>>, TlsError> {
    let mut out = Vec::new();
    for path in paths {
        let data = read(path)?;
        let crls: Vec<_> = CertificateRevocationListDer::pem_slice_iter(&data)
            .collect::<Result<_, _>>()
            .map_err(|e| pem_error(path, e))?;
        if crls.is_empty() {
            return Err(TlsError::Empty {
                path: path.display().to_string(),
                what: "CRL",
            });
        }
        out.extend(crls);
    }
    Ok(out)
}

/// Builds the server configuration of a listener.
pub fn server_config(tls: &TlsConfig, default_alpn: &[&str]) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    if tls.psk {
        return Err(TlsError::PskNotForTls);
    }
    let (Some(cert_path), Some(key_path)) = (&tls.cert, &tls.key) else {
        return Err(TlsError::NoCertificate);
    };
    let certs = load_certs(cert_path)?;
    let key = load_key(key_path)?;
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Rustls(e.to_string()))?;
    let builder = match (tls.client_auth, &tls.client_ca) {
        (ClientAuth::None, _) => builder.with_no_client_auth(),
        (ClientAuth::Optional, None) => return Err(TlsError::NoClientCa("optional")),
        (ClientAuth::Required, None) => return Err(TlsError::NoClientCa("required")),
        (mode, Some(ca)) => {
            let mut roots = RootCertStore::empty();
            for c in load_certs(ca)? {
                roots
                    .add(c)
                    .map_err(|e| TlsError::Rustls(format!("{}: {e}", ca.display())))?;
            }
            let mut v = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .with_crls(load_crls(&tls.crl)?);
            if mode == ClientAuth::Optional {
                v = v.allow_unauthenticated();
            }
            builder.with_client_cert_verifier(v.build().map_err(|e| TlsError::Rustls(e.to_string()))?)
        }
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(|e| TlsError::Rustls(format!("{} / {}: {e}", cert_path.display(), key_path.display())))?;
    config.alpn_protocols = match &tls.alpn {
        Some(list) => list.iter().map(|p| p.as_bytes().to_vec()).collect(),
        None => default_alpn.iter().map(|p| p.as_bytes().to_vec()).collect(),
    };
    Ok(Arc::new(config))
}

/// Bytes of plaintext rustls may buffer towards a slow client before we stop feeding it.
const TLS_BUFFER_LIMIT: usize = 256 * 1024;

/// The TLS side of one connection.
pub struct TlsState {
    conn: ServerConnection,
}

/// What reading ciphertext produced.
#[derive(Debug, Default)]
pub struct TlsRead {
    /// Decrypted application data.
    pub plaintext: Vec<u8>,
    /// The peer sent close_notify.
    pub closed: bool,
}

impl TlsState {
    /// A new server-side session.
    pub fn new(config: Arc<ServerConfig>) -> Result<TlsState, rustls::Error> {
        let mut conn = ServerConnection::new(config)?;
        conn.set_buffer_limit(Some(TLS_BUFFER_LIMIT));
        Ok(TlsState { conn })
    }

    /// Feeds ciphertext; returns the plaintext it carried. An error means the handshake or a
    /// record failed: the caller sends any alert ([`TlsState::write_ciphertext`]) and closes.
    pub fn read_ciphertext(&mut self, mut data: &[u8]) -> Result<TlsRead, rustls::Error> {
        let mut out = TlsRead::default();
        while !data.is_empty() {
            match self.conn.read_tls(&mut data) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) => return Err(rustls::Error::General(e.to_string())),
            }
            let state = self.conn.process_new_packets()?;
            if state.plaintext_bytes_to_read() > 0 {
                let start = out.plaintext.len();
                out.plaintext.resize(start + state.plaintext_bytes_to_read(), 0);
                let n = self.conn.reader().read(&mut out.plaintext[start..]).unwrap_or(0);
                out.plaintext.truncate(start + n);
            }
            if state.peer_has_closed() {
                out.closed = true;
            }
        }
        Ok(out)
    }

    /// Queues plaintext to send; returns how much was taken (rustls buffers up to a limit).
    pub fn write_plaintext(&mut self, data: &[u8]) -> usize {
        self.conn.writer().write(data).unwrap_or(0)
    }

    /// Whether ciphertext waits to be written.
    pub fn wants_write(&self) -> bool {
        self.conn.wants_write()
    }

    /// Writes pending ciphertext to `w` until it would block.
    pub fn write_ciphertext(&mut self, w: &mut dyn Write) -> io::Result<()> {
        while self.conn.wants_write() {
            self.conn.write_tls(w)?;
        }
        Ok(())
    }

    /// Whether the handshake is done.
    pub fn is_handshaking(&self) -> bool {
        self.conn.is_handshaking()
    }

    /// The client's certificate chain (DER, leaf first), once the handshake is done.
    pub fn peer_certificates(&self) -> Vec<Vec<u8>> {
        self.conn
            .peer_certificates()
            .map(|c| c.iter().map(|d| d.to_vec()).collect())
            .unwrap_or_default()
    }

    /// Queues a close_notify alert.
    pub fn close(&mut self) {
        self.conn.send_close_notify();
    }
}
