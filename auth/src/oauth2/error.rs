//! Why an oauth2 authenticator cannot be built. All are configuration errors, found at start (or
//! reload); none carries the client secret.

use std::io;
use std::path::PathBuf;

/// An oauth2 authenticator's configuration is unusable.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OAuth2Error {
    /// `introspection_url` is not an http(s) URL.
    #[error("introspection_url: {0}")]
    IntrospectionUrl(String),
    /// `client_id` is empty.
    #[error("client_id is empty")]
    EmptyClientId,
    /// Not exactly one of `client_secret`, `client_secret_file`.
    #[error("exactly one of client_secret and client_secret_file is needed (found: {found})")]
    SecretSource {
        /// The sources found, comma-separated ("none" when none).
        found: String,
    },
    /// The client secret is empty.
    #[error("the client secret is empty")]
    EmptySecret,
    /// A secret or CA file cannot be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// `ca_file` holds no usable PEM certificate.
    #[error("ca_file {}: {reason}", path.display())]
    CaFile {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// `timeout = "0s"`: every introspection would fail.
    #[error("timeout must be longer than zero")]
    ZeroTimeout,
    /// The HTTP client cannot be built (e.g. no usable TLS roots).
    #[error("cannot build the HTTP client for introspection_url: {0}")]
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
    /// A `required_scopes` entry is not a scope token (RFC 6749 §3.3).
    #[error(
        "required_scopes: {0:?} is not a scope (non-empty, printable ASCII without spaces, quotes or backslashes)"
    )]
    RequiredScope(String),
    /// A `scope_acl` entry is unusable.
    #[error("scope_acl.{scope:?}: {reason}")]
    ScopeAcl {
        /// The scope.
        scope: String,
        /// What is wrong.
        reason: String,
    },
}
