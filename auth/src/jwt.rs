//! The `jwt` authenticator: a signed JSON Web Token (RFC 7519) in the password (or user name)
//! field, verified with an HMAC secret, a PEM public key, or the keys of a JWKS URL.
//!
//! # Configuration
//!
//! ```toml
//! [auth.authenticators.fleet-jwt]
//! kind = "jwt"
//! jwks_url = "https://idp.example/jwks"      # or secret / secret_file / public_key
//! claims = { iss = "https://idp.example", aud = "unigate", sub = "${clientid}" }
//! username_claim = "sub"
//! ```
//!
//! | key | default | meaning |
//! | --- | --- | --- |
//! | `secret` | | HMAC secret (HS256/384/512), as text |
//! | `secret_file` | | HMAC secret read from a file (trailing line breaks dropped) |
//! | `secret_base64` | `false` | the secret (text or file) is base64 (standard or URL-safe alphabet, padding optional) |
//! | `public_key` | | PEM file: `PUBLIC KEY` / `RSA PUBLIC KEY` / `CERTIFICATE`; RSA (RS*, PS*), EC P-256 (ES256), EC P-384 (ES384) or Ed25519 (EdDSA) |
//! | `jwks_url` | | http(s) URL of a JWK set (RFC 7517 §5), fetched and cached (below) |
//! | `jwks_refresh` | `"5m"` | refetch the set when it is older than this (lazily, on use) |
//! | `jwks_min_refetch` | `"30s"` | no fetch within this time of the previous one (rate limit) |
//! | `jwks_timeout` | `"5s"` | bound on one fetch (connect, response and body) |
//! | `algorithms` | every algorithm the key can verify | accepted `alg` values; each must fit the key |
//! | `leeway` | `"30s"` | clock skew allowed on `exp`, `nbf` and `iat` |
//! | `require_exp` | `true` | refuse tokens without `exp` |
//! | `claims` | `{}` | `NAME = "text"` or `NAME = ["text", …]`: the claim must equal (one of) the text(s); `${clientid}` / `${username}` in a text bind the claim to the client |
//! | `from` | `"password"` | where the token is: `"password"` or `"username"` |
//! | `username_claim` | | the identity's user name comes from this claim (e.g. `"sub"`) |
//! | `acl_claim` | `"acl"` | claim holding per-token ACL rules (`""`: none) |
//!
//! Exactly one key source (`secret`, `secret_file`, `public_key`, `jwks_url`) must be given.
//! `none` is never an accepted algorithm, and `ES512` (P-521) is not supported: the jsonwebtoken
//! crate implements neither. The default `algorithms` are those of the key: HS256/384/512 for a
//! secret; RS256/384/512 and PS256/384/512 for an RSA key; ES256 for P-256; ES384 for P-384;
//! EdDSA for Ed25519; every asymmetric one for a JWKS (each key still only verifies what fits it,
//! and its JWK `alg` when it names one). Listing an algorithm that does not fit the key (`HS256`
//! with an RSA key: algorithm confusion) is a configuration error.
//!
//! # Decisions
//!
//! | the client presents | decision |
//! | --- | --- |
//! | no token (field absent or empty) | Ignore |
//! | more than [`MAX_TOKEN_LEN`] bytes | Deny(BadCredentials), without parsing |
//! | something that is not a JWT: not three `.`-separated base64url parts whose first decodes to a JSON object | Ignore |
//! | a JWT whose header does not parse, with `alg: none` or another algorithm not accepted, or with `crit` | Deny(BadCredentials) |
//! | a JWT whose signature does not verify with any key for its `kid` and `alg` | Deny(BadCredentials) |
//! | the key set cannot be had (JWKS unreachable, garbage, error status or timeout, and no keys cached; or an unknown `kid` and the refetch failed) | Deny(Unavailable) |
//! | `exp` passed (more than `leeway` ago) | Deny(Expired) |
//! | no `exp` (with `require_exp`), `nbf` in the future, `iat` in the future, a date that is not a number | Deny(BadCredentials) |
//! | a `claims` check fails: literal text | Deny(BadCredentials) |
//! | a `claims` check fails: text with `${clientid}` / `${username}` | Deny(NotAuthorized) |
//! | `username_claim` missing or not a non-empty string; `acl` claim malformed | Deny(BadCredentials) |
//! | otherwise | Allow |
//!
//! The "not a JWT" rule lets a chain put a jwt authenticator before a password one: a plain
//! password passes on to the next authenticator, while anything shaped like a token is decided
//! here. (A password that happens to be three base64url parts whose first decodes to `{…` is
//! taken for a token and denied.)
//!
//! On Allow, the identity's user name is the `username_claim` when configured; otherwise the
//! presented user name (none with `from = "username"`, where the user name is the token). The
//! `acl` claim, when present, becomes [`Identity::acl`]: see [`acl_from_claim`] for its two
//! forms. The client id is not changed.
//!
//! # JWKS
//!
//! The set is fetched when first needed, then again when it is older than `jwks_refresh`, or a
//! token names a `kid` that the set lacks (key rotation) — never within `jwks_min_refetch` of the
//! previous fetch, and one fetch at a time (concurrent callers wait for that one). A failed
//! fetch keeps the keys held. Keys that cannot verify signatures (encryption keys, `oct`
//! secrets, other curves) are skipped; a set without a usable key counts as a failed fetch. The
//! future of [`Authenticator::authenticate`] may wait for a fetch: the server runs it on a tokio
//! runtime with its own timeout (`auth.timeout`), which should exceed `jwks_timeout` so that a
//! slow provider gets the clear Unavailable of a timed-out fetch; a fetch cut short by that
//! timeout counts as failed all the same, so the rate limit holds. HTTPS uses rustls with the ring provider (the process default
//! provider when one is installed), trusting the system's roots and the webpki roots.
//!
//! Tokens and keys are never logged; debug lines name the `alg`, `kid` and `iss` at most.

use crate::url::is_loopback;
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Validation};
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::{Authenticator, BoxFuture, Credentials, Decision, DenyReason, Identity, Secret};

mod claims;
mod error;
#[doc(hidden)]
pub mod fuzzing;
mod jwks;
mod keys;

pub use claims::{acl_from_claim, AclClaimError, ClaimRule};
pub use error::JwtError;
pub use jwks::MAX_JWKS_LEN;
pub use keys::JwtAlgorithm;

use claims::ClaimPolicy;
use jwks::{Jwks, JwksSettings, Unavailable};
use keys::KeySet;

/// Tokens longer than this are refused without being parsed.
pub const MAX_TOKEN_LEN: usize = 16 * 1024;

/// The HMAC secret of a configuration, never printed.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(from = "String")]
pub struct HmacSecret(Secret);

impl From<String> for HmacSecret {
    fn from(s: String) -> HmacSecret {
        HmacSecret(Secret::new(s.into_bytes()))
    }
}

impl HmacSecret {
    /// Wraps secret bytes.
    pub fn new(bytes: impl Into<Vec<u8>>) -> HmacSecret {
        HmacSecret(Secret::new(bytes))
    }
}

impl fmt::Debug for HmacSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HmacSecret(<{} bytes redacted>)", self.0.len())
    }
}

/// Where the token is taken from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenSource {
    /// The password (MQTT password, CoAP `password` / `token` query).
    #[default]
    Password,
    /// The user name.
    Username,
}

/// `[auth.authenticators.NAME]` with `kind = "jwt"` (see the [module documentation](self)).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtConfig {
    /// HMAC secret.
    #[serde(default)]
    pub secret: Option<HmacSecret>,
    /// File holding the HMAC secret.
    #[serde(default)]
    pub secret_file: Option<PathBuf>,
    /// The secret is base64.
    #[serde(default)]
    pub secret_base64: bool,
    /// PEM public key file.
    #[serde(default)]
    pub public_key: Option<PathBuf>,
    /// JWK set URL.
    #[serde(default)]
    pub jwks_url: Option<String>,
    /// Refetch the set when older than this.
    #[serde(default = "default_jwks_refresh", with = "humantime_serde")]
    pub jwks_refresh: Duration,
    /// Minimum time between two fetches.
    #[serde(default = "default_jwks_min_refetch", with = "humantime_serde")]
    pub jwks_min_refetch: Duration,
    /// Bound on one fetch.
    #[serde(default = "default_jwks_timeout", with = "humantime_serde")]
    pub jwks_timeout: Duration,
    /// Accepted algorithms; absent: all that fit the key.
    #[serde(default)]
    pub algorithms: Option<Vec<JwtAlgorithm>>,
    /// Clock skew allowed on `exp`, `nbf`, `iat`.
    #[serde(default = "default_leeway", with = "humantime_serde")]
    pub leeway: Duration,
    /// Refuse tokens without `exp`.
    #[serde(default = "yes")]
    pub require_exp: bool,
    /// Claim checks.
    #[serde(default)]
    pub claims: BTreeMap<String, ClaimRule>,
    /// Where the token is.
    #[serde(default)]
    pub from: TokenSource,
    /// The claim naming the user.
    #[serde(default)]
    pub username_claim: Option<String>,
    /// The claim carrying ACL rules (`""`: none).
    #[serde(default = "default_acl_claim")]
    pub acl_claim: String,
}

fn default_jwks_refresh() -> Duration {
    Duration::from_secs(300)
}

fn default_jwks_min_refetch() -> Duration {
    Duration::from_secs(30)
}

fn default_jwks_timeout() -> Duration {
    Duration::from_secs(5)
}

fn default_leeway() -> Duration {
    Duration::from_secs(30)
}

fn yes() -> bool {
    true
}

fn default_acl_claim() -> String {
    "acl".to_string()
}

/// Where the keys come from.
#[derive(Debug)]
enum Keys {
    /// A configured secret or public key.
    Static(Arc<KeySet>),
    /// A remote key set.
    Jwks(Box<Jwks>),
}

/// The jwt authenticator.
#[derive(Debug)]
pub struct JwtAuthenticator {
    name: Arc<str>,
    from: TokenSource,
    /// The accepted `alg` values (each key narrows further).
    algorithms: Vec<Algorithm>,
    keys: Keys,
    policy: ClaimPolicy,
}

/// Decodes a base64 secret: standard or URL-safe alphabet, padded or not.
fn decode_base64(text: &[u8]) -> Option<Vec<u8>> {
    let config = GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
    let text = text.trim_ascii();
    GeneralPurpose::new(&base64::alphabet::STANDARD, config)
        .decode(text)
        .or_else(|_| GeneralPurpose::new(&base64::alphabet::URL_SAFE, config).decode(text))
        .ok()
}

fn read(path: &Path) -> Result<Vec<u8>, JwtError> {
    std::fs::read(path).map_err(|source| JwtError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// The HMAC secret of `config` (one of `secret`, `secret_file` is set).
fn hmac_secret(config: &JwtConfig) -> Result<Secret, JwtError> {
    let raw = match (&config.secret, &config.secret_file) {
        (Some(s), _) => s.0.clone(),
        (None, Some(path)) => {
            let mut bytes = read(path)?;
            // `echo secret > file` adds a line break that is not part of the secret.
            while bytes.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                bytes.pop();
            }
            Secret::new(bytes)
        }
        (None, None) => return Err(JwtError::EmptySecret),
    };
    let secret = if config.secret_base64 {
        Secret::new(decode_base64(raw.expose()).ok_or(JwtError::SecretBase64)?)
    } else {
        raw
    };
    if secret.is_empty() {
        return Err(JwtError::EmptySecret);
    }
    Ok(secret)
}

/// Every asymmetric algorithm: what a JWKS may be used with by default.
const ASYMMETRIC: [Algorithm; 9] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

/// Whether a token-shaped value is worth deciding on: three `.`-separated base64url parts (the
/// signature may be empty), the first of which decodes to a JSON object. Anything else is left
/// to the next authenticator (it is a password, not a token).
#[must_use]
pub fn looks_like_jwt(token: &[u8]) -> bool {
    let mut parts = token.split(|b| *b == b'.');
    let (Some(header), Some(payload), Some(signature), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    let base64url = |part: &[u8]| {
        part.iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_')
    };
    if header.is_empty() || payload.is_empty() || !base64url(header) || !base64url(payload) || !base64url(signature) {
        return false;
    }
    let config = GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::RequireNone);
    GeneralPurpose::new(&base64::alphabet::URL_SAFE, config)
        .decode(header)
        .is_ok_and(|h| h.trim_ascii_start().first() == Some(&b'{'))
}

/// Seconds since the epoch, now.
fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

impl JwtAuthenticator {
    /// Builds the authenticator named `name`: reads the secret or key file, checks the
    /// algorithms against the key, compiles the claim checks. A JWKS is not fetched yet.
    ///
    /// # Errors
    ///
    /// [`JwtError`]: the configuration cannot work.
    pub fn new(name: impl Into<Arc<str>>, config: &JwtConfig) -> Result<JwtAuthenticator, JwtError> {
        let name: Arc<str> = name.into();
        let found: Vec<&str> = [
            (config.secret.is_some(), "secret"),
            (config.secret_file.is_some(), "secret_file"),
            (config.public_key.is_some(), "public_key"),
            (config.jwks_url.is_some(), "jwks_url"),
        ]
        .into_iter()
        .filter_map(|(set, what)| set.then_some(what))
        .collect();
        if found.len() != 1 {
            return Err(JwtError::KeySource {
                found: if found.is_empty() {
                    "none".to_string()
                } else {
                    found.join(", ")
                },
            });
        }
        if config.secret_base64 && config.secret.is_none() && config.secret_file.is_none() {
            return Err(JwtError::Base64WithoutSecret);
        }
        let configured: Option<Vec<Algorithm>> = config.algorithms.as_ref().map(|list| {
            let mut out: Vec<Algorithm> = Vec::new();
            for a in list {
                if !out.contains(&a.to_jwt()) {
                    out.push(a.to_jwt());
                }
            }
            out
        });
        if configured.as_ref().is_some_and(Vec::is_empty) {
            return Err(JwtError::NoAlgorithms);
        }

        let (keys, algorithms) = if let Some(url) = &config.jwks_url {
            let url = reqwest::Url::parse(url).map_err(|e| JwtError::JwksUrl(e.to_string()))?;
            if !matches!(url.scheme(), "http" | "https") {
                return Err(JwtError::JwksUrl(format!(
                    "scheme {:?}: use http or https",
                    url.scheme()
                )));
            }
            if url.scheme() == "http" && !is_loopback(&url) {
                tracing::warn!(
                    authenticator = %name, url = %crate::url::shown_url(&url),
                    "jwks_url uses plain http: whoever can alter the traffic can mint tokens"
                );
            }
            let accepted = match configured {
                Some(list) => {
                    if let Some(a) = list.iter().find(|a| !ASYMMETRIC.contains(a)) {
                        return Err(JwtError::Algorithm {
                            alg: JwtAlgorithm::from_jwt(*a),
                            key: "a JWKS (HMAC secrets are not taken from a key set)",
                        });
                    }
                    list
                }
                None => ASYMMETRIC.to_vec(),
            };
            let jwks = Jwks::new(JwksSettings {
                name: name.clone(),
                url,
                refresh: config.jwks_refresh,
                min_refetch: config.jwks_min_refetch,
                timeout: config.jwks_timeout,
                accepted: accepted.clone(),
            })
            .map_err(|e| JwtError::HttpClient(e.to_string()))?;
            (Keys::Jwks(Box::new(jwks)), accepted)
        } else {
            let mut key = if let Some(path) = &config.public_key {
                keys::pem_key(&read(path)?).map_err(|reason| JwtError::PublicKey {
                    path: path.clone(),
                    reason,
                })?
            } else {
                let secret = hmac_secret(config)?;
                if secret.len() < 32 {
                    // RFC 7518 §3.2: a key at least as long as the hash output.
                    tracing::warn!(authenticator = %name, bytes = secret.len(), "HMAC secret shorter than 32 bytes");
                }
                keys::hmac_key(secret.expose())
            };
            if let Some(list) = configured {
                if let Some(a) = list.iter().find(|a| !key.kind.algorithms().contains(a)) {
                    return Err(JwtError::Algorithm {
                        alg: JwtAlgorithm::from_jwt(*a),
                        key: key.kind.describe(),
                    });
                }
                key.algorithms = list;
            }
            let algorithms = key.algorithms.clone();
            (Keys::Static(Arc::new(KeySet { keys: vec![key] })), algorithms)
        };

        let mut rules = Vec::new();
        for (claim, rule) in &config.claims {
            let reason = match claim.as_str() {
                "" => Some("an empty claim name"),
                "exp" | "nbf" | "iat" => Some("dates are checked with leeway and require_exp, not compared"),
                _ => None,
            };
            if let Some(reason) = reason {
                return Err(JwtError::Claim {
                    claim: claim.clone(),
                    reason: reason.to_string(),
                });
            }
            rules.push((claim.clone(), rule.clone()));
        }
        if config.username_claim.as_deref() == Some("") {
            return Err(JwtError::EmptyUsernameClaim);
        }
        Ok(JwtAuthenticator {
            name,
            from: config.from,
            algorithms,
            keys,
            policy: ClaimPolicy {
                leeway: config.leeway.as_secs_f64(),
                require_exp: config.require_exp,
                rules,
                username_claim: config.username_claim.clone(),
                acl_claim: Some(config.acl_claim.clone()).filter(|c| !c.is_empty()),
            },
        })
    }

    /// The algorithms it accepts.
    #[must_use]
    pub fn algorithms(&self) -> Vec<JwtAlgorithm> {
        self.algorithms.iter().map(|a| JwtAlgorithm::from_jwt(*a)).collect()
    }

    fn deny(&self, reason: DenyReason, why: &str) -> Decision {
        tracing::debug!(authenticator = %self.name, %reason, why, "token refused");
        Decision::Deny(reason)
    }

    async fn decide(&self, creds: &Credentials) -> Decision {
        let token: &[u8] = match self.from {
            TokenSource::Password => creds.password.as_ref().map_or(&[], Secret::expose),
            TokenSource::Username => creds.username.as_deref().map_or(&[], str::as_bytes),
        };
        if token.is_empty() {
            return Decision::Ignore;
        }
        if token.len() > MAX_TOKEN_LEN {
            return self.deny(DenyReason::BadCredentials, "token longer than 16 KiB");
        }
        if !looks_like_jwt(token) {
            return Decision::Ignore;
        }
        // The header is read before the signature is checked: only to pick the key.
        let Ok(header) = jsonwebtoken::decode_header(token) else {
            return self.deny(
                DenyReason::BadCredentials,
                "header does not parse or names an unsupported alg",
            );
        };
        let kid = header.kid.as_deref();
        tracing::debug!(authenticator = %self.name, alg = ?header.alg, kid = ?kid, "token presented");
        if header.crit.is_some() {
            // RFC 7515 §4.1.11: we understand no extension, so a critical one must fail.
            return self.deny(DenyReason::BadCredentials, "crit header");
        }
        if !self.algorithms.contains(&header.alg) {
            return self.deny(DenyReason::BadCredentials, "alg not accepted");
        }
        let set = match &self.keys {
            Keys::Static(set) => set.clone(),
            Keys::Jwks(jwks) => match jwks.keys_for(kid).await {
                Ok(set) => set,
                Err(Unavailable) => return self.deny(DenyReason::Unavailable, "no key set"),
            },
        };
        let claims = match verify(token, header.alg, kid, &set) {
            Ok(claims) => claims,
            Err(why) => return self.deny(DenyReason::BadCredentials, why),
        };
        match self.policy.check(&claims, creds, unix_now()) {
            Ok(passed) => {
                let username = match (passed.username, self.from) {
                    (Some(u), _) => Some(Arc::from(u)),
                    (None, TokenSource::Password) => creds.username.as_deref().map(Arc::from),
                    (None, TokenSource::Username) => None,
                };
                Decision::Allow(Identity {
                    username,
                    client_id: None,
                    cert_cn: None,
                    authenticator: self.name.clone(),
                    acl: passed.acl,
                })
            }
            Err(refused) => {
                let iss = claims.get("iss").and_then(serde_json::Value::as_str);
                tracing::debug!(
                    authenticator = %self.name, iss = ?iss,
                    reason = %refused.reason, why = %refused.why, "token refused"
                );
                Decision::Deny(refused.reason)
            }
        }
    }
}

/// The claims of `token` once its signature verifies with a key of `set` for `kid` and `alg`
/// (already accepted); a short reason when not.
fn verify(token: &[u8], alg: Algorithm, kid: Option<&str>, set: &KeySet) -> Result<Map<String, Value>, &'static str> {
    // Dates and claims are ours to check (with our leeway and reasons): the crate checks the
    // signature and the algorithm only.
    let mut validation = Validation::new(alg);
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    validation.required_spec_claims.clear();
    validation.leeway = 0;
    let mut tried = false;
    for key in set.candidates(kid, alg) {
        tried = true;
        match jsonwebtoken::decode::<Map<String, Value>>(token, &key.key, &validation) {
            Ok(data) => return Ok(data.claims),
            Err(e) if matches!(e.kind(), ErrorKind::InvalidSignature) => continue,
            Err(_) => return Err("malformed token"),
        }
    }
    Err(if tried {
        "bad signature"
    } else {
        "no key for its kid and alg"
    })
}

impl Authenticator for JwtAuthenticator {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "jwt"
    }

    fn authenticate<'a>(&'a self, creds: &'a Credentials) -> BoxFuture<'a, Decision> {
        Box::pin(self.decide(creds))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use keys::KeyKind;

    #[test]
    fn token_shapes() {
        let header = b"eyJhbGciOiJIUzI1NiJ9"; // {"alg":"HS256"}
        let t = |s: &[u8]| looks_like_jwt(s);
        assert!(t(&[&header[..], b".e30.sig"].concat()));
        assert!(
            t(&[&header[..], b".e30."].concat()),
            "empty signature (alg none) is a JWT"
        );
        assert!(!t(&[&header[..], b".e30"].concat()));
        assert!(!t(&[&header[..], b".e30.a.b"].concat()));
        assert!(!t(&[&header[..], b"..sig"].concat()));
        assert!(!t(&[&header[..], b".e3=.sig"].concat()));
        assert!(!t(&[&header[..], b".e 0.sig"].concat()));
        assert!(!t(b"abc.def.ghi"), "a dotted password whose first part is not JSON");
        assert!(!t(b"hunter2"));
        assert!(!t(b""));
        assert!(!t(b"e30=.e30.x"));
        assert!(t(b"IHsi.e30.x"), "whitespace before the brace");
    }

    #[test]
    fn base64_secrets() {
        assert_eq!(decode_base64(b"c2VjcmV0").unwrap(), b"secret");
        assert_eq!(decode_base64(b" c2VjcmV0 \n").unwrap(), b"secret");
        assert_eq!(decode_base64(b"_-8").unwrap(), [0xff, 0xef]);
        assert_eq!(decode_base64(b"/+8=").unwrap(), [0xff, 0xef]);
        assert!(decode_base64(b"not base64!").is_none());
    }

    #[test]
    fn every_kind_has_algorithms() {
        for kind in [
            KeyKind::Hmac,
            KeyKind::Rsa,
            KeyKind::EcP256,
            KeyKind::EcP384,
            KeyKind::Ed25519,
        ] {
            assert!(!kind.algorithms().is_empty(), "{kind:?}");
            for a in kind.algorithms() {
                assert_eq!(kind == KeyKind::Hmac, !ASYMMETRIC.contains(a));
            }
        }
    }

    #[test]
    fn config_defaults() {
        let c: JwtConfig = toml::from_str("secret = \"s\"").unwrap();
        assert_eq!(c.jwks_refresh, Duration::from_secs(300));
        assert_eq!(c.jwks_min_refetch, Duration::from_secs(30));
        assert_eq!(c.jwks_timeout, Duration::from_secs(5));
        assert_eq!(c.leeway, Duration::from_secs(30));
        assert!(c.require_exp);
        assert_eq!(c.from, TokenSource::Password);
        assert_eq!(c.acl_claim, "acl");
        assert!(c.algorithms.is_none() && c.claims.is_empty() && c.username_claim.is_none());
        assert!(!format!("{c:?}").contains("\"s\""));
        assert!(toml::from_str::<JwtConfig>("secret = \"s\"\nsecrett = 1").is_err());
    }
}
