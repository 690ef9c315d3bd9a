//! The psk authenticator: a table of DTLS pre-shared keys by identity.
//!
//! The table serves two callers. The DTLS handshake (CoAP and LwM2M listeners) asks
//! [`PskAuthenticator::key`] for the key of the identity a client presents; a handshake that
//! completes proves the client holds it. The chain then sees `Credentials::psk_identity` and this
//! authenticator turns it into an identity whose user name is the PSK identity (what EMQX and
//! Leshan do), so ACL rules can use `${username}`.
//!
//! File format (TOML), keys as `hex:…` or `base64:…`:
//!
//! ```toml
//! [keys]
//! "sensor-0001" = "hex:000102030405060708090a0b0c0d0e0f"
//! "sensor-0002" = "base64:AAECAwQFBgcICQoLDA0ODw=="
//! ```

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine as _;
use serde::Deserialize;

use crate::{Authenticator, BoxFuture, Credentials, Decision, DenyReason, Identity, Secret};

/// `[auth.authenticators.NAME]` with `kind = "psk"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PskConfig {
    /// The key table.
    pub file: PathBuf,
}

/// Errors loading a key table. Never contain key material.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PskError {
    /// The file cannot be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not a valid key table.
    #[error("{path}: {message}")]
    Syntax {
        /// The file.
        path: String,
        /// The parser's message.
        message: String,
    },
    /// A key is not `hex:…` or `base64:…`, or is empty.
    #[error("{path}: the key of identity \"{identity}\" is not hex:… or base64:… (or is empty)")]
    BadKey {
        /// The file.
        path: String,
        /// The identity whose key is bad.
        identity: String,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyFile {
    #[serde(default)]
    keys: HashMap<String, String>,
}

/// Parses `hex:…` / `base64:…`.
fn parse_key(text: &str) -> Option<Vec<u8>> {
    let bytes = if let Some(hex) = text.strip_prefix("hex:") {
        if hex.len() % 2 != 0 {
            return None;
        }
        (0..hex.len())
            .step_by(2)
            .map(|i| hex.get(i..i + 2).and_then(|b| u8::from_str_radix(b, 16).ok()))
            .collect::<Option<Vec<u8>>>()?
    } else if let Some(b64) = text.strip_prefix("base64:") {
        base64::engine::general_purpose::STANDARD.decode(b64).ok()?
    } else {
        return None;
    };
    (!bytes.is_empty()).then_some(bytes)
}

/// Loads a key table.
pub fn load(path: &Path) -> Result<HashMap<String, Secret>, PskError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| PskError::Io {
        path: shown.clone(),
        source,
    })?;
    // The parser's message may quote the offending line, which could hold a key: keep only
    // its position.
    let file: KeyFile = toml::from_str(&text).map_err(|e: toml::de::Error| PskError::Syntax {
        path: shown.clone(),
        message: match e.span() {
            Some(span) => format!("invalid key table at byte {}", span.start),
            None => "invalid key table".to_string(),
        },
    })?;
    let mut keys = HashMap::with_capacity(file.keys.len());
    for (identity, text) in file.keys {
        let Some(key) = parse_key(&text) else {
            return Err(PskError::BadKey { path: shown, identity });
        };
        keys.insert(identity, Secret::new(key));
    }
    Ok(keys)
}

/// The psk authenticator.
#[derive(Debug)]
pub struct PskAuthenticator {
    name: Arc<str>,
    keys: HashMap<String, Secret>,
}

impl PskAuthenticator {
    /// Loads the table named by `config`.
    pub fn new(name: &str, config: &PskConfig) -> Result<PskAuthenticator, PskError> {
        Ok(PskAuthenticator {
            name: Arc::from(name),
            keys: load(&config.file)?,
        })
    }

    /// An authenticator over `keys` (tests, other sources).
    pub fn from_keys(name: &str, keys: HashMap<String, Secret>) -> PskAuthenticator {
        PskAuthenticator {
            name: Arc::from(name),
            keys,
        }
    }

    /// The key of `identity`, for the DTLS handshake.
    pub fn key(&self, identity: &str) -> Option<&Secret> {
        self.keys.get(identity)
    }

    /// Number of identities.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    fn decide(&self, creds: &Credentials) -> Decision {
        let Some(identity) = creds.psk_identity.as_deref() else {
            return Decision::Ignore;
        };
        if !self.keys.contains_key(identity) {
            // The handshake should not have completed; refuse rather than trust it.
            return Decision::Deny(DenyReason::BadCredentials);
        }
        Decision::Allow(Identity {
            username: Some(Arc::from(identity)),
            authenticator: self.name.clone(),
            ..Identity::default()
        })
    }
}

impl Authenticator for PskAuthenticator {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "psk"
    }

    fn authenticate<'a>(&'a self, creds: &'a Credentials) -> BoxFuture<'a, Decision> {
        let d = self.decide(creds);
        Box::pin(async move { d })
    }

    fn psk_key(&self, identity: &str) -> Option<Secret> {
        self.key(identity).cloned()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::Protocol;

    /// `text` in `psk.toml` of a fresh directory, removed when the returned guard drops.
    fn write(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::Builder::new().prefix("unigate-psk-").tempdir().unwrap();
        let path = dir.path().join("psk.toml");
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    #[test]
    fn loads_hex_and_base64_keys() {
        let (_dir, path) = write("[keys]\n\"a\" = \"hex:00010A0b\"\n\"b\" = \"base64:AAECAw==\"\n");
        let psk = PskAuthenticator::new("psk", &PskConfig { file: path }).unwrap();
        assert_eq!(psk.key("a").unwrap().expose(), &[0, 1, 10, 11]);
        assert_eq!(psk.key("b").unwrap().expose(), &[0, 1, 2, 3]);
        assert!(psk.key("c").is_none());
        assert_eq!(psk.len(), 2);
    }

    #[test]
    fn bad_keys_name_the_identity_but_not_the_key() {
        for bad in ["hex:0g", "hex:abc", "plain", "base64:***", "hex:"] {
            let (_dir, path) = write(&format!("[keys]\n\"dev\" = \"{bad}\"\n"));
            let err = load(&path).unwrap_err().to_string();
            assert!(err.contains("\"dev\""), "{err}");
            assert!(err.contains("is not hex:"), "{err}");
        }
        let (_dir, path) = write("[keys]\n\"dev\" = hex:0011\n");
        let err = load(&path).unwrap_err().to_string();
        assert!(!err.contains("0011"), "syntax errors must not echo key material: {err}");
    }

    #[test]
    fn identity_becomes_the_user_name() {
        let mut keys = HashMap::new();
        keys.insert("sensor-1".to_string(), Secret::new(vec![1, 2, 3]));
        let psk = PskAuthenticator::from_keys("fleet-psk", keys);
        let mut creds = Credentials::new(Protocol::Coap, "coaps");
        assert_eq!(psk.decide(&creds), Decision::Ignore);
        creds.psk_identity = Some("sensor-1".into());
        match psk.decide(&creds) {
            Decision::Allow(id) => {
                assert_eq!(id.username.as_deref(), Some("sensor-1"));
                assert_eq!(&*id.authenticator, "fleet-psk");
            }
            other => panic!("{other:?}"),
        }
        creds.psk_identity = Some("stranger".into());
        assert_eq!(psk.decide(&creds), Decision::Deny(DenyReason::BadCredentials));
    }

    #[test]
    fn keys_are_not_printed() {
        let mut keys = HashMap::new();
        keys.insert("s".to_string(), Secret::new(b"topsecret".to_vec()));
        let shown = format!("{:?}", PskAuthenticator::from_keys("p", keys));
        assert!(!shown.contains("topsecret"), "{shown}");
    }
}
