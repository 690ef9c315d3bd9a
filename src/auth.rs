//! The server side of the auth chain: building chains from the configuration, and running
//! them off the connection threads.
//!
//! Authenticators may hash passwords (milliseconds of CPU) or call an identity provider
//! (network round trips). Neither may stall the worker threads that carry every other
//! connection, so chains run on a small dedicated runtime ([`AuthRuntime`]) under a timeout;
//! the connection waits for the answer without reading further packets. A listener whose chain
//! lets everyone in skips the trip entirely.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use unigate_auth::{Chain, Credentials, DenyReason, Identity, NoMatch, Outcome};

/// `[auth]`: chains, authenticators, audit.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// Log every authentication and authorisation decision (target `unigate::audit`, info).
    #[serde(default)]
    pub audit: bool,
    /// How long a chain may take before the client is refused (server unavailable).
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// The chain of listeners that name none; absent: such listeners accept anonymous clients.
    #[serde(default)]
    pub default_chain: Option<String>,
    /// Named chains.
    #[serde(default)]
    pub chains: BTreeMap<String, ChainConfig>,
    /// Named authenticator instances.
    #[serde(default)]
    pub authenticators: BTreeMap<String, AuthenticatorConfig>,
}

fn default_timeout() -> Duration {
    // Longer than the JWKS fetch timeout (5 s), so a slow key server is reported as such.
    Duration::from_secs(10)
}

/// `[auth.chains.NAME]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChainConfig {
    /// Authenticator names, tried in order.
    pub authenticators: Vec<String>,
    /// What happens when all of them ignore the client: `deny` (default) or `allow`.
    #[serde(default)]
    pub no_match: NoMatchConfig,
}

/// `no_match` of a chain.
#[derive(Debug, Clone, Copy, Deserialize, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum NoMatchConfig {
    /// Refuse the client.
    #[default]
    Deny,
    /// Let it in as anonymous.
    Allow,
}

/// `[auth.authenticators.NAME]`, by `kind`.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
#[non_exhaustive]
pub enum AuthenticatorConfig {
    /// TLS client certificates (`identity = "cn" | "san_dns" | "san_uri" | "san_email" |
    /// "fingerprint"`, `as_username`, `as_client_id`, `bind_client_id`).
    X509(unigate_auth::x509::X509Config),
    /// The built-in password store (`file`, `unknown_user = "ignore" | "deny"`, `max_failures`,
    /// `failure_window`); the file is read at start and on every reload.
    Password(unigate_auth::password::PasswordConfig),
    /// JSON Web Tokens (`secret` / `secret_file` / `public_key` / `jwks_url`, `algorithms`,
    /// `leeway`, `claims`, `from`, `username_claim`, `acl_claim`, …; see `unigate_auth::jwt`).
    Jwt(Box<unigate_auth::jwt::JwtConfig>),
    /// DTLS pre-shared keys by identity (`file`); the identity becomes the user name. Used by the
    /// CoAP/LwM2M DTLS listeners' handshakes.
    Psk(unigate_auth::psk::PskConfig),
    /// OAuth 2.0 bearer tokens checked by RFC 7662 introspection (`introspection_url`,
    /// `client_id`, `client_secret` / `client_secret_file`, `scope_acl`, …; see
    /// `unigate_auth::oauth2`).
    Oauth2(Box<unigate_auth::oauth2::OAuth2Config>),
}

/// Errors building the auth configuration.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuthSetupError {
    /// A listener or `default_chain` names a chain that does not exist.
    #[error("auth chain \"{0}\" is not defined under [auth.chains]")]
    UnknownChain(String),
    /// An authenticator cannot be built (e.g. its password file does not load).
    #[error("authenticator \"{name}\": {message}")]
    Authenticator {
        /// The authenticator.
        name: String,
        /// What is wrong.
        message: String,
    },
    /// A chain names an authenticator that does not exist.
    #[error("auth chain \"{chain}\" names authenticator \"{name}\", which is not defined under [auth.authenticators]")]
    UnknownAuthenticator {
        /// The chain.
        chain: String,
        /// The missing authenticator.
        name: String,
    },
}

/// The chains of a configuration, built once at start (and on reload).
#[derive(Debug, Clone)]
pub struct Chains {
    chains: BTreeMap<String, Arc<Chain>>,
    default: Option<String>,
}

impl Chains {
    /// Builds every chain and authenticator of `config`. An authenticator named in several
    /// chains is built once and shared: its file is read once, and its throttling and caches
    /// are the same whichever listener a client comes through.
    pub fn build(config: &AuthConfig) -> Result<Chains, AuthSetupError> {
        let mut chains = BTreeMap::new();
        let mut built: BTreeMap<&str, Arc<dyn unigate_auth::Authenticator>> = BTreeMap::new();
        for (name, c) in &config.chains {
            let mut authenticators = Vec::new();
            for a in &c.authenticators {
                let Some(ac) = config.authenticators.get(a) else {
                    return Err(AuthSetupError::UnknownAuthenticator {
                        chain: name.clone(),
                        name: a.clone(),
                    });
                };
                let authenticator = match built.get(a.as_str()) {
                    Some(shared) => shared.clone(),
                    None => {
                        let new = build_authenticator(a, ac)?;
                        built.insert(a, new.clone());
                        new
                    }
                };
                authenticators.push(authenticator);
            }
            let no_match = match c.no_match {
                NoMatchConfig::Deny => NoMatch::Deny,
                NoMatchConfig::Allow => NoMatch::Allow,
            };
            chains.insert(
                name.clone(),
                Arc::new(Chain::new(name.as_str(), authenticators, no_match)),
            );
        }
        if let Some(d) = &config.default_chain {
            if !chains.contains_key(d) {
                return Err(AuthSetupError::UnknownChain(d.clone()));
            }
        }
        Ok(Chains {
            chains,
            default: config.default_chain.clone(),
        })
    }

    /// The chain for a listener naming `name` (or none).
    pub fn for_listener(&self, name: Option<&str>) -> Result<Arc<Chain>, AuthSetupError> {
        match name.or(self.default.as_deref()) {
            None => Ok(Arc::new(Chain::anonymous())),
            Some(n) => self
                .chains
                .get(n)
                .cloned()
                .ok_or_else(|| AuthSetupError::UnknownChain(n.to_string())),
        }
    }
}

/// One authenticator instance from its configuration.
fn build_authenticator(
    name: &str,
    config: &AuthenticatorConfig,
) -> Result<Arc<dyn unigate_auth::Authenticator>, AuthSetupError> {
    Ok(match config {
        AuthenticatorConfig::X509(c) => Arc::new(unigate_auth::x509::X509Authenticator::new(name, c.clone())),
        AuthenticatorConfig::Password(c) => Arc::new(
            unigate_auth::password::PasswordAuthenticator::new(name, c).map_err(|e| AuthSetupError::Authenticator {
                name: name.to_string(),
                message: e.to_string(),
            })?,
        ),
        AuthenticatorConfig::Psk(c) => {
            Arc::new(
                unigate_auth::psk::PskAuthenticator::new(name, c).map_err(|e| AuthSetupError::Authenticator {
                    name: name.to_string(),
                    message: e.to_string(),
                })?,
            )
        }
        AuthenticatorConfig::Jwt(c) => {
            Arc::new(
                unigate_auth::jwt::JwtAuthenticator::new(name, c).map_err(|e| AuthSetupError::Authenticator {
                    name: name.to_string(),
                    message: e.to_string(),
                })?,
            )
        }
        AuthenticatorConfig::Oauth2(c) => {
            Arc::new(unigate_auth::oauth2::OAuth2Authenticator::new(name, c).map_err(|e| {
                AuthSetupError::Authenticator {
                    name: name.to_string(),
                    message: e.to_string(),
                }
            })?)
        }
    })
}

/// The small runtime chains run on.
pub struct AuthRuntime {
    runtime: tokio::runtime::Runtime,
}

impl AuthRuntime {
    /// Two worker threads: enough to overlap a slow identity provider with password hashing on
    /// a 2-core machine without competing with the connection workers for every core.
    pub fn new() -> std::io::Result<AuthRuntime> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("unigate-auth")
            .enable_all()
            .build()?;
        Ok(AuthRuntime { runtime })
    }

    /// A handle to spawn on.
    pub fn handle(&self) -> tokio::runtime::Handle {
        self.runtime.handle().clone()
    }

    /// Stops it without waiting for chains in progress (their connections are gone).
    pub fn shutdown(self) {
        self.runtime.shutdown_background();
    }
}

/// What a listener's connections need to authenticate.
#[derive(Debug)]
pub struct ListenerAuth {
    /// The chain; replaced on reload (SIGHUP), read once per CONNECT.
    chain: parking_lot::RwLock<Arc<Chain>>,
    /// Where to run it.
    pub runtime: tokio::runtime::Handle,
    /// How long it may take.
    pub timeout: Duration,
    /// Log decisions.
    pub audit: bool,
    /// Where results are counted.
    broker: Arc<crate::broker::Broker>,
}

impl ListenerAuth {
    /// Settings for a listener using `chain`.
    pub fn new(
        chain: Arc<Chain>,
        runtime: tokio::runtime::Handle,
        timeout: Duration,
        audit: bool,
        broker: Arc<crate::broker::Broker>,
    ) -> ListenerAuth {
        ListenerAuth {
            chain: parking_lot::RwLock::new(chain),
            runtime,
            timeout,
            audit,
            broker,
        }
    }

    /// The current chain.
    pub fn chain(&self) -> Arc<Chain> {
        self.chain.read().clone()
    }

    /// Replaces the chain (reload); connections already authenticated are not affected.
    pub fn set_chain(&self, chain: Arc<Chain>) {
        *self.chain.write() = chain;
    }

    /// Runs the chain on the auth runtime under the timeout. The returned future may be awaited
    /// on any runtime.
    pub fn run(&self, creds: Credentials) -> impl std::future::Future<Output = Outcome> + 'static {
        let chain = self.chain();
        let timeout = self.timeout;
        let audit = self.audit;
        let broker = self.broker.clone();
        let task = self.runtime.spawn(async move {
            let started = std::time::Instant::now();
            let outcome = match tokio::time::timeout(timeout, chain.authenticate(&creds)).await {
                Ok(o) => o,
                Err(_) => Outcome::Denied {
                    authenticator: Arc::from(chain.name()),
                    reason: DenyReason::Unavailable,
                },
            };
            if audit {
                audit_auth(&creds, &outcome);
            }
            let took = started.elapsed();
            match &outcome {
                Outcome::Allowed(id) => {
                    broker.metrics.count_auth(&id.authenticator, true);
                    broker.metrics.observe_auth(&id.authenticator, took);
                }
                Outcome::Denied { authenticator, .. } => {
                    broker.metrics.count_auth(authenticator, false);
                    broker.metrics.observe_auth(authenticator, took);
                }
            }
            outcome
        });
        async move {
            task.await.unwrap_or(Outcome::Denied {
                authenticator: Arc::from("chain"),
                reason: DenyReason::Unavailable,
            })
        }
    }
}

/// A user name as it may be logged: a JWT sent in the user name field (jwt `from =
/// "username"`) or anything long is not printed.
fn loggable_username(name: &str) -> &str {
    if name.len() > 128 || name.split('.').count() == 3 && name.len() > 40 {
        "<redacted token>"
    } else {
        name
    }
}

/// One audit line per authentication; never the password or a token.
fn audit_auth(creds: &Credentials, outcome: &Outcome) {
    let peer = creds.peer.map(|p| p.to_string()).unwrap_or_default();
    let client_id = creds.client_id.as_deref().unwrap_or("");
    let username = loggable_username(creds.username.as_deref().unwrap_or(""));
    match outcome {
        Outcome::Allowed(id) => tracing::info!(
            target: "unigate::audit",
            event = "authn", listener = %creds.listener, %peer, client_id, username,
            authenticator = %id.authenticator, result = "allow"
        ),
        Outcome::Denied { authenticator, reason } => tracing::info!(
            target: "unigate::audit",
            event = "authn", listener = %creds.listener, %peer, client_id, username,
            authenticator = %authenticator, result = "deny", reason = %reason
        ),
    }
}

/// Successful authentications remembered for a while, so that a client sending the same
/// credentials with every request (HTTP Basic, CoAP query passwords) is not hashed every time.
/// Keyed by a SHA-256 of the credentials and of the chain that checked them: the cache holds
/// no secret, and nothing remembered under a chain survives a reload that replaces it.
#[derive(Default)]
pub struct CredentialCache {
    entries: parking_lot::Mutex<std::collections::HashMap<[u8; 32], (Identity, std::time::Instant)>>,
}

/// Remembered authentications at most (expired ones go first, then all).
const MAX_CACHED_IDENTITIES: usize = 100_000;

impl CredentialCache {
    /// The key of `parts` (client id, user name, password, certificates…) checked by `chain`.
    pub fn key(chain: &Arc<Chain>, parts: &[&[u8]]) -> [u8; 32] {
        use sha2::Digest;
        let mut h = sha2::Sha256::new();
        h.update((Arc::as_ptr(chain) as usize).to_be_bytes());
        for part in parts {
            h.update((part.len() as u64).to_be_bytes());
            h.update(part);
        }
        h.finalize().into()
    }

    /// The identity remembered under `key`, if still fresh.
    pub fn get(&self, key: &[u8; 32]) -> Option<Identity> {
        let now = std::time::Instant::now();
        self.entries
            .lock()
            .get(key)
            .filter(|(_, until)| *until > now)
            .map(|(id, _)| id.clone())
    }

    /// Remembers `identity` under `key` for `ttl` (nothing for a zero `ttl`).
    pub fn put(&self, key: [u8; 32], identity: &Identity, ttl: Duration) {
        if ttl.is_zero() {
            return;
        }
        let now = std::time::Instant::now();
        let mut entries = self.entries.lock();
        if entries.len() >= MAX_CACHED_IDENTITIES {
            entries.retain(|_, (_, until)| *until > now);
            if entries.len() >= MAX_CACHED_IDENTITIES {
                entries.clear();
            }
        }
        entries.insert(key, (identity.clone(), now + ttl));
    }

    /// Forgets what has expired.
    pub fn purge(&self) {
        let now = std::time::Instant::now();
        self.entries.lock().retain(|_, (_, until)| *until > now);
    }
}
