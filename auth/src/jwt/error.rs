//! Why a jwt authenticator cannot be built. All are configuration errors, found at start (or
//! reload); none carries key material.

use std::io;
use std::path::PathBuf;

use super::JwtAlgorithm;

/// A jwt authenticator's configuration is unusable.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JwtError {
    /// Not exactly one of `secret`, `secret_file`, `public_key`, `jwks_url`.
    #[error("exactly one key source is needed: secret, secret_file, public_key or jwks_url (found: {found})")]
    KeySource {
        /// The sources found, comma-separated ("none" when none).
        found: String,
    },
    /// `secret_base64 = true` with no secret to decode.
    #[error("secret_base64 needs secret or secret_file")]
    Base64WithoutSecret,
    /// A key or secret file cannot be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The HMAC secret is empty.
    #[error("the HMAC secret is empty")]
    EmptySecret,
    /// `secret_base64 = true` and the secret is not base64.
    #[error("the HMAC secret is not valid base64 (secret_base64 = true)")]
    SecretBase64,
    /// `public_key` is not a usable PEM public key.
    #[error("public_key {}: {reason}", path.display())]
    PublicKey {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// An algorithm of `algorithms` cannot be used with the configured key (accepting `HS256`
    /// with an RSA public key would be the classic algorithm confusion).
    #[error("algorithm {alg} cannot be used with {key}")]
    Algorithm {
        /// The algorithm.
        alg: JwtAlgorithm,
        /// The key, described ("an RSA key", "a JWKS").
        key: &'static str,
    },
    /// `algorithms = []`.
    #[error("algorithms is empty: no token could ever be accepted")]
    NoAlgorithms,
    /// `jwks_url` is not an http(s) URL.
    #[error("jwks_url: {0}")]
    JwksUrl(String),
    /// The HTTP client for the JWKS cannot be built (e.g. no usable TLS roots).
    #[error("cannot build the HTTP client for jwks_url: {0}")]
    HttpClient(String),
    /// A `claims` entry is unusable.
    #[error("claims.{claim}: {reason}")]
    Claim {
        /// The claim name.
        claim: String,
        /// What is wrong.
        reason: String,
    },
    /// `username_claim = ""`.
    #[error("username_claim is empty")]
    EmptyUsernameClaim,
}
