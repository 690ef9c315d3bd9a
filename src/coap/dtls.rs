//! DTLS for CoAP listeners: the `tls` table of a `protocol = "coap"` listener made into a
//! [`DtlsServerConfig`] (crate `unigate-dtls`, over rtc-dtls).
//!
//! - `psk = true`: TLS_PSK_WITH_AES_128_CCM_8 (LwM2M's mandatory suite) and
//!   TLS_PSK_WITH_AES_128_GCM_SHA256; the key of an identity comes from the listener's auth
//!   chain (its `psk` authenticator), looked up at handshake time, so a reload takes effect.
//! - `cert` + `key`: ECDHE-ECDSA with CCM_8 / GCM. Client certificates (`client_auth`,
//!   `client_ca`, `crl`) are verified by rustls' WebPKI verifier, CRLs included, exactly as for
//!   MQTT over TLS.
//! - Both on one listener: the suite the client offers picks the credential.

use std::sync::Arc;

use rustls::server::WebPkiClientVerifier;
use rustls::RootCertStore;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use unigate_dtls::{CertOptions, DtlsServerConfig, DtlsServerOptions, PskLookup, PskOptions};

use crate::tls::{load_certs, load_crls, load_key, ClientAuth, TlsConfig, TlsError};

/// Builds the DTLS configuration of a listener. `psk` looks keys up (needed when `tls.psk`).
pub fn server_config(tls: &TlsConfig, psk: Option<PskLookup>) -> Result<DtlsServerConfig, TlsError> {
    if tls.alpn.is_some() {
        return Err(TlsError::Rustls("alpn is not used by DTLS listeners".into()));
    }
    let psk = match (tls.psk, psk) {
        (true, Some(lookup)) => Some(PskOptions {
            lookup,
            identity_hint: None,
        }),
        (true, None) => {
            return Err(TlsError::Rustls(
                "psk = true needs a psk authenticator in the listener's auth chain".into(),
            ))
        }
        (false, _) => None,
    };
    let cert = match (&tls.cert, &tls.key) {
        (Some(cert_path), Some(key_path)) => {
            let chain: Vec<Vec<u8>> = load_certs(cert_path)?.into_iter().map(|c| c.to_vec()).collect();
            let key_der = match load_key(key_path)? {
                PrivateKeyDer::Pkcs8(k) => k.secret_pkcs8_der().to_vec(),
                _ => {
                    return Err(TlsError::Rustls(format!(
                        "{}: DTLS needs a PKCS#8 key (ECDSA P-256 or Ed25519); convert with `openssl pkcs8 -topk8 -nocrypt`",
                        key_path.display()
                    )))
                }
            };
            let (require, callback) = match (tls.client_auth, &tls.client_ca) {
                (ClientAuth::None, _) => (false, None),
                (ClientAuth::Optional, None) => return Err(TlsError::NoClientCa("optional")),
                (ClientAuth::Required, None) => return Err(TlsError::NoClientCa("required")),
                (mode, Some(ca)) => {
                    let mut roots = RootCertStore::empty();
                    for c in load_certs(ca)? {
                        roots
                            .add(c)
                            .map_err(|e| TlsError::Rustls(format!("{}: {e}", ca.display())))?;
                    }
                    let provider = Arc::new(rustls::crypto::ring::default_provider());
                    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                        .with_crls(load_crls(&tls.crl)?)
                        .build()
                        .map_err(|e| TlsError::Rustls(e.to_string()))?;
                    let check: unigate_dtls::ClientCertCallback = Arc::new(move |chain: &[Vec<u8>]| {
                        let Some((leaf, rest)) = chain.split_first() else {
                            return Err("no client certificate".to_string());
                        };
                        let leaf = CertificateDer::from(leaf.clone());
                        let intermediates: Vec<CertificateDer<'static>> =
                            rest.iter().map(|c| CertificateDer::from(c.clone())).collect();
                        verifier
                            .verify_client_cert(&leaf, &intermediates, UnixTime::now())
                            .map(|_| ())
                            .map_err(|e| e.to_string())
                    });
                    (mode == ClientAuth::Required, Some(check))
                }
            };
            Some(CertOptions {
                cert_chain_der: chain,
                key_der,
                // Verification is the callback's (rustls WebPKI with CRLs), not the crate's.
                client_ca_der: None,
                require_client_cert: require,
                client_cert_callback: callback,
            })
        }
        (None, None) => None,
        _ => return Err(TlsError::NoCertificate),
    };
    if psk.is_none() && cert.is_none() {
        return Err(TlsError::Rustls(
            "a DTLS listener needs psk = true, or cert and key".into(),
        ));
    }
    DtlsServerConfig::new(DtlsServerOptions {
        psk,
        cert,
        ..DtlsServerOptions::default()
    })
    .map_err(|e| TlsError::Rustls(e.to_string()))
}
