//! The x509 authenticator: a TLS/DTLS client certificate, already verified against the
//! listener's CA bundle and CRLs by the TLS layer, becomes an identity.
//!
//! The identity is taken from the leaf certificate's subject CN, a SAN (DNS name, URI or
//! e-mail) or its SHA-256 fingerprint, and can serve as the user name and/or the client id. With
//! `bind_client_id`, a client must connect with the client id its certificate names (so one
//! device's certificate cannot open another device's session).

use std::sync::Arc;

use serde::Deserialize;
use sha2::{Digest, Sha256};
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::{Authenticator, BoxFuture, Credentials, Decision, DenyReason, Identity};

/// Which part of the certificate names the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum IdentitySource {
    /// The subject's common name.
    #[default]
    Cn,
    /// The first DNS name in the subject alternative names.
    SanDns,
    /// The first URI in the subject alternative names.
    SanUri,
    /// The first e-mail address in the subject alternative names.
    SanEmail,
    /// The SHA-256 fingerprint of the certificate, lowercase hex.
    Fingerprint,
}

/// `[auth.authenticators.NAME]` with `kind = "x509"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct X509Config {
    /// Where the identity comes from.
    #[serde(default)]
    pub identity: IdentitySource,
    /// Use the identity as the user name (default true).
    #[serde(default = "yes")]
    pub as_username: bool,
    /// Use the identity as the client id (the client's own id is replaced).
    #[serde(default)]
    pub as_client_id: bool,
    /// Refuse clients whose client id differs from the identity.
    #[serde(default)]
    pub bind_client_id: bool,
}

fn yes() -> bool {
    true
}

/// The x509 authenticator.
#[derive(Debug)]
pub struct X509Authenticator {
    name: String,
    config: X509Config,
}

/// What a certificate says about its holder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertIdentity {
    /// The identity per the configured source.
    pub id: String,
    /// The subject CN, if any.
    pub cn: Option<String>,
}

impl X509Authenticator {
    /// An authenticator named `name`.
    pub fn new(name: impl Into<String>, config: X509Config) -> X509Authenticator {
        X509Authenticator {
            name: name.into(),
            config,
        }
    }

    /// Reads the identity from a DER certificate. None when the certificate does not parse or
    /// lacks the configured field.
    pub fn identity_of(&self, der: &[u8]) -> Option<CertIdentity> {
        let (_, cert) = X509Certificate::from_der(der).ok()?;
        let cn = cert
            .subject()
            .iter_common_name()
            .next()
            .and_then(|c| c.as_str().ok())
            .map(str::to_string);
        let san = |pick: fn(&GeneralName<'_>) -> Option<String>| -> Option<String> {
            let ext = cert.subject_alternative_name().ok()??;
            ext.value.general_names.iter().find_map(pick)
        };
        let id = match self.config.identity {
            IdentitySource::Cn => cn.clone(),
            IdentitySource::SanDns => san(|g| match g {
                GeneralName::DNSName(d) => Some(d.to_string()),
                _ => None,
            }),
            IdentitySource::SanUri => san(|g| match g {
                GeneralName::URI(u) => Some(u.to_string()),
                _ => None,
            }),
            IdentitySource::SanEmail => san(|g| match g {
                GeneralName::RFC822Name(e) => Some(e.to_string()),
                _ => None,
            }),
            IdentitySource::Fingerprint => Some(
                Sha256::digest(der)
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect::<String>(),
            ),
        }?;
        if id.is_empty() {
            return None;
        }
        Some(CertIdentity { id, cn })
    }

    fn decide(&self, creds: &Credentials) -> Decision {
        let Some(leaf) = creds.peer_certificates.first() else {
            return Decision::Ignore;
        };
        let Some(cert) = self.identity_of(leaf) else {
            tracing::debug!(authenticator = %self.name, "client certificate has no usable identity");
            return Decision::Deny(DenyReason::BadCredentials);
        };
        if self.config.bind_client_id && creds.client_id.as_deref() != Some(cert.id.as_str()) {
            tracing::debug!(authenticator = %self.name, identity = %cert.id, "client id does not match the certificate");
            return Decision::Deny(DenyReason::NotAuthorized);
        }
        let id: Arc<str> = Arc::from(cert.id.as_str());
        Decision::Allow(Identity {
            username: if self.config.as_username {
                Some(id.clone())
            } else {
                creds.username.as_deref().map(Arc::from)
            },
            client_id: self.config.as_client_id.then(|| id.clone()),
            cert_cn: cert.cn.as_deref().map(Arc::from),
            authenticator: Arc::from(self.name.as_str()),
            acl: None,
        })
    }
}

impl Authenticator for X509Authenticator {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "x509"
    }

    fn authenticate<'a>(&'a self, creds: &'a Credentials) -> BoxFuture<'a, Decision> {
        let d = self.decide(creds);
        Box::pin(async move { d })
    }
}
