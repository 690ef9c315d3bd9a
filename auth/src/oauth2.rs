//! The `oauth2` authenticator: an opaque (or any) bearer token in the password (or user name)
//! field, validated by asking the authorisation server with RFC 7662 token introspection.
//!
//! # Configuration
//!
//! ```toml
//! [auth.authenticators.idp]
//! kind = "oauth2"
//! introspection_url = "https://idp.example/token/introspection"
//! client_id = "unigate"
//! client_secret_file = "oauth2.secret"
//! claims = { iss = "https://idp.example", client_id = "${clientid}" }
//! required_scopes = ["mqtt"]
//! scope_acl = { "telemetry:write" = [{ permission = "allow", action = "publish", topics = ["devices/${clientid}/#"] }] }
//! ```
//!
//! | key | default | meaning |
//! | --- | --- | --- |
//! | `introspection_url` | | http(s) URL of the introspection endpoint (RFC 7662 §2) |
//! | `client_id` | | unigate's own client id at the authorisation server |
//! | `client_secret` / `client_secret_file` | | its secret, as text or in a file (trailing line breaks dropped); exactly one |
//! | `auth_method` | `"basic"` | how unigate authenticates: `"basic"` (client_secret_basic, RFC 6749 §2.3.1) or `"post"` (client_secret_post) |
//! | `from` | `"password"` | where the token is: `"password"` or `"username"` |
//! | `timeout` | `"5s"` | bound on one introspection (connect, response and body) |
//! | `on_unavailable` | `"deny"` | the server cannot be asked (down, timeout, error status, garbage): `"deny"` (Deny(Unavailable)) or `"ignore"` (the next authenticator decides) |
//! | `cache_size` | `10000` | most active results kept (and, separately, as many inactive ones); `0`: no cache |
//! | `max_cache_ttl` | `"5m"` | an active result is kept until the token's `exp`, at most this long (`"0s"`: not kept) |
//! | `negative_cache_ttl` | `"10s"` | an inactive result is kept this long (`"0s"`: not kept) |
//! | `username_claim` | `sub`, else `client_id` | the response member naming the user; when set, it must be present |
//! | `claims` | `{}` | `NAME = "text"` or `NAME = ["text", …]` checks on the response, as the jwt authenticator's (`${clientid}` / `${username}` bind it to the client) |
//! | `required_scopes` | `[]` | scopes the token must all have |
//! | `scope_acl` | `{}` | `SCOPE = [rules]`: ACL rules a token with that scope carries (below) |
//! | `ca_file` | | PEM file of CA certificates trusted for the server, besides the system and webpki roots |
//!
//! # Decisions
//!
//! | the client presents | decision |
//! | --- | --- |
//! | no token (field absent or empty), or not an RFC 6750 §2.1 `b64token` (e.g. has a space) | Ignore |
//! | more than [`MAX_TOKEN_LEN`] bytes | Deny(BadCredentials), without asking |
//! | a token the server says is not `active` | Deny(BadCredentials) |
//! | an active token whose `exp` has passed (clocks apart) | Deny(Expired) |
//! | a `claims` check fails: a member is missing, or literal text differs | Deny(BadCredentials) |
//! | a `claims` check with `${clientid}` / `${username}` fails | Deny(NotAuthorized) |
//! | a required scope is missing | Deny(NotAuthorized) |
//! | `username_claim` set and missing or not a non-empty string | Deny(BadCredentials) |
//! | the server cannot be asked | `on_unavailable`: Deny(Unavailable) or Ignore |
//! | otherwise | Allow |
//!
//! A JWT is introspected like any other token. To verify JWT access tokens (RFC 9068) locally,
//! put a jwt authenticator before this one: it decides on JWTs, and passes anything else on.
//! Most passwords are `b64token`s too, so a password authenticator belongs before this one
//! (with `unknown_user = "ignore"`), or every password is sent to the server.
//!
//! On Allow the identity's user name is `username_claim`'s value; by default `sub`, else
//! `client_id` (for a client credentials token the subject is the client, RFC 9068 §2.2), else
//! the presented user name (`from = "password"`). Its ACL is the `scope_acl` rules of the
//! token's scopes: deny rules of every granted scope first, then allow rules, each in scope
//! name order and then as written (a deny in one scope beats an allow in another). Those rules
//! are checked before the configured `[acl]`; when none matches, the configured ACL decides.
//!
//! # Cache
//!
//! Results are kept by the SHA-256 of the token (never the token): active ones until the
//! token's `exp` but at most `max_cache_ttl`, inactive ones for `negative_cache_ttl`;
//! unavailability is not kept. Claims and scopes are re-checked against each client's
//! credentials on every use. A token revoked at the server still works here until its cached
//! result expires: `max_cache_ttl` bounds how late a revocation is noticed. Concurrent
//! requests for one token share one introspection.
//!
//! # HTTP
//!
//! The request is built and the response parsed by the `oauth2` crate; it is sent by our
//! reqwest client (rustls with the ring provider; system, webpki and `ca_file` roots) with
//! `timeout` on connecting and on the whole exchange, no redirects (a 307 would replay the
//! token and client secret to another URL), and a cap of [`MAX_RESPONSE_LEN`] on the body
//! (the crate's own reqwest glue reads bodies whole, unbounded). The `token_type_hint` is
//! `access_token`. The server should answer within the server's `auth.timeout`, so keep
//! `timeout` shorter than it.
//!
//! Tokens and the client secret are never logged; failures are logged with the URL's scheme,
//! host, port and path only.

use crate::url::{is_loopback, shown_url};
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use oauth2::basic::{BasicErrorResponse, BasicRevocationErrorResponse, BasicTokenResponse, BasicTokenType};
use oauth2::{
    AccessToken, AuthType, ClientId, ClientSecret, EndpointNotSet, EndpointSet, ExtraTokenFields, IntrospectionUrl,
    RequestTokenError, StandardRevocableToken, StandardTokenIntrospectionResponse, TokenIntrospectionResponse,
};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::acl::{Acl, AclConfig, Action, Permission, RuleConfig, Who};
use crate::jwt::{ClaimRule, TokenSource};
use crate::{Authenticator, BoxFuture, Credentials, Decision, DenyReason, Identity, Secret};

mod cache;
mod error;

pub use error::OAuth2Error;

use cache::{Cache, TokenKey};

/// Tokens longer than this are refused without asking the server.
pub const MAX_TOKEN_LEN: usize = 16 * 1024;

/// The largest introspection response body read.
pub const MAX_RESPONSE_LEN: usize = 64 * 1024;

/// The client secret of a configuration, never printed.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(from = "String")]
pub struct ClientSecretText(Secret);

impl From<String> for ClientSecretText {
    fn from(s: String) -> ClientSecretText {
        ClientSecretText(Secret::new(s.into_bytes()))
    }
}

impl fmt::Debug for ClientSecretText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ClientSecretText(<{} bytes redacted>)", self.0.len())
    }
}

/// How unigate authenticates itself to the introspection endpoint (RFC 6749 §2.3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMethod {
    /// HTTP Basic with the URL-encoded client id and secret (`client_secret_basic`).
    #[default]
    Basic,
    /// `client_id` and `client_secret` in the form body (`client_secret_post`).
    Post,
}

/// What to do when the authorisation server cannot be asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnUnavailable {
    /// Deny(Unavailable): the client is refused with "server unavailable".
    #[default]
    Deny,
    /// Ignore: the next authenticator of the chain decides.
    Ignore,
}

/// One rule of `scope_acl`: the shape of an `[[acl.rules]]` entry, `who` defaulting to `all`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScopeRule {
    /// `allow` or `deny`.
    pub permission: Permission,
    /// `publish`, `subscribe`, `retained` or `all`.
    pub action: Action,
    /// Which clients it is about (`all` when absent).
    #[serde(default = "who_all")]
    pub who: Who,
    /// Topic templates, with `${clientid}`, `${username}`, `${cert_cn}` placeholders.
    pub topics: Vec<String>,
}

fn who_all() -> Who {
    Who::All
}

/// `[auth.authenticators.NAME]` with `kind = "oauth2"` (see the [module documentation](self)).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OAuth2Config {
    /// The introspection endpoint.
    pub introspection_url: String,
    /// unigate's client id.
    pub client_id: String,
    /// unigate's client secret.
    #[serde(default)]
    pub client_secret: Option<ClientSecretText>,
    /// File holding the client secret.
    #[serde(default)]
    pub client_secret_file: Option<PathBuf>,
    /// How the client authenticates.
    #[serde(default)]
    pub auth_method: AuthMethod,
    /// Where the token is.
    #[serde(default)]
    pub from: TokenSource,
    /// Bound on one introspection.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// What to do when the server cannot be asked.
    #[serde(default)]
    pub on_unavailable: OnUnavailable,
    /// Most results kept (per kind: active, inactive).
    #[serde(default = "default_cache_size")]
    pub cache_size: usize,
    /// Longest an active result is kept.
    #[serde(default = "default_max_cache_ttl", with = "humantime_serde")]
    pub max_cache_ttl: Duration,
    /// How long an inactive result is kept.
    #[serde(default = "default_negative_cache_ttl", with = "humantime_serde")]
    pub negative_cache_ttl: Duration,
    /// The response member naming the user (absent: `sub`, else `client_id`).
    #[serde(default)]
    pub username_claim: Option<String>,
    /// Checks on response members.
    #[serde(default)]
    pub claims: BTreeMap<String, ClaimRule>,
    /// Scopes the token must have.
    #[serde(default)]
    pub required_scopes: Vec<String>,
    /// ACL rules by scope.
    #[serde(default)]
    pub scope_acl: BTreeMap<String, Vec<ScopeRule>>,
    /// Extra CA certificates (PEM) for the server.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
}

fn default_timeout() -> Duration {
    Duration::from_secs(5)
}

fn default_cache_size() -> usize {
    10_000
}

fn default_max_cache_ttl() -> Duration {
    Duration::from_secs(300)
}

fn default_negative_cache_ttl() -> Duration {
    Duration::from_secs(10)
}

/// Members of the introspection response beyond RFC 7662's, kept for `claims` checks.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct OtherMembers {
    #[serde(flatten)]
    members: Map<String, Value>,
}

impl ExtraTokenFields for OtherMembers {}

/// The introspection response as the `oauth2` crate parses it.
type Response = StandardTokenIntrospectionResponse<OtherMembers, BasicTokenType>;

/// An `oauth2` client that only introspects.
type IntrospectionClient = oauth2::Client<
    BasicErrorResponse,
    BasicTokenResponse,
    Response,
    StandardRevocableToken,
    BasicRevocationErrorResponse,
    EndpointNotSet,
    EndpointNotSet,
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
>;

/// What an active token's introspection said, as needed for each decision.
#[derive(Debug)]
struct Introspected {
    /// Every response member (RFC 7662 §2.2 ones and the server's own).
    members: Map<String, Value>,
    /// The granted scopes.
    scopes: Vec<String>,
    /// `exp`, seconds since the epoch.
    exp: Option<f64>,
    /// The `scope_acl` rules of the granted scopes.
    acl: Option<Arc<Acl>>,
}

/// The result of asking (or of the cache).
#[derive(Debug, Clone)]
enum Fetched {
    Active(Arc<Introspected>),
    Inactive,
    Unavailable,
}

/// The oauth2 authenticator.
pub struct OAuth2Authenticator {
    name: Arc<str>,
    from: TokenSource,
    client: IntrospectionClient,
    http: BoundedHttp,
    /// The URL without credentials or query, for logs.
    shown: String,
    on_unavailable: OnUnavailable,
    username_claim: Option<String>,
    rules: Vec<(String, ClaimRule)>,
    required_scopes: Vec<String>,
    scope_acl: BTreeMap<String, Vec<RuleConfig>>,
    max_cache_ttl: Duration,
    negative_cache_ttl: Duration,
    active: Cache<Arc<Introspected>>,
    inactive: Cache<()>,
    /// Introspections in flight by token, shared by concurrent requests for the same token.
    flights: Mutex<HashMap<TokenKey, Arc<tokio::sync::OnceCell<Fetched>>>>,
}

impl fmt::Debug for OAuth2Authenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Not the client (it holds the secret) nor the URL (its query may hold credentials).
        f.debug_struct("OAuth2Authenticator")
            .field("name", &self.name)
            .field("url", &self.shown)
            .field("from", &self.from)
            .field("on_unavailable", &self.on_unavailable)
            .field("required_scopes", &self.required_scopes)
            .field("active", &self.active)
            .field("inactive", &self.inactive)
            .finish_non_exhaustive()
    }
}

/// Whether `token` has the RFC 6750 §2.1 `b64token` shape: `1*( ALPHA / DIGIT / "-" / "." /
/// "_" / "~" / "+" / "/" ) *"="`. Anything else is not a bearer token, and is left to the next
/// authenticator.
#[must_use]
pub fn looks_like_bearer(token: &[u8]) -> bool {
    let body = token.len() - token.iter().rev().take_while(|b| **b == b'=').count();
    body > 0
        && token[..body]
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/'))
}

/// Whether `scope` is an RFC 6749 §3.3 scope token: `1*( %x21 / %x23-5B / %x5D-7E )`.
fn is_scope_token(scope: &str) -> bool {
    !scope.is_empty()
        && scope
            .bytes()
            .all(|b| b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b))
}

/// Seconds since the epoch, now.
fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// How long an active result may be kept: until `exp`, at most `max`.
fn active_ttl(exp: Option<f64>, now: f64, max: Duration) -> Duration {
    match exp {
        Some(exp) if exp <= now => Duration::ZERO,
        Some(exp) => Duration::try_from_secs_f64(exp - now).map_or(max, |left| left.min(max)),
        None => max,
    }
}

fn read(path: &Path) -> Result<Vec<u8>, OAuth2Error> {
    std::fs::read(path).map_err(|source| OAuth2Error::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// The client secret of `config`, from the text or the file.
fn client_secret(config: &OAuth2Config) -> Result<String, OAuth2Error> {
    let bytes = match (&config.client_secret, &config.client_secret_file) {
        (Some(s), None) => s.0.expose().to_vec(),
        (None, Some(path)) => {
            let mut bytes = read(path)?;
            // `echo secret > file` adds a line break that is not part of the secret.
            while bytes.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                bytes.pop();
            }
            bytes
        }
        (s, f) => {
            return Err(OAuth2Error::SecretSource {
                found: if s.is_some() && f.is_some() {
                    "client_secret, client_secret_file".to_string()
                } else {
                    "none".to_string()
                },
            })
        }
    };
    if bytes.is_empty() {
        return Err(OAuth2Error::EmptySecret);
    }
    String::from_utf8(bytes).map_err(|_| OAuth2Error::Read {
        path: config.client_secret_file.clone().unwrap_or_default(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, "the secret is not UTF-8"),
    })
}

/// The reqwest client for the endpoint.
fn http_client(config: &OAuth2Config) -> Result<reqwest::Client, OAuth2Error> {
    let mut builder = reqwest::Client::builder()
        .timeout(config.timeout)
        .connect_timeout(config.timeout)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("unigate/", env!("CARGO_PKG_VERSION")));
    if let Some(path) = &config.ca_file {
        let bad = |reason: String| OAuth2Error::CaFile {
            path: path.clone(),
            reason,
        };
        let pem = read(path)?;
        let certificates = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| bad(e.to_string()))?;
        if certificates.is_empty() {
            return Err(bad("no CERTIFICATE block".to_string()));
        }
        for c in certificates {
            builder = builder.add_root_certificate(c);
        }
    }
    builder.build().map_err(|e| OAuth2Error::HttpClient(e.to_string()))
}

impl OAuth2Authenticator {
    /// Builds the authenticator named `name`: reads the secret and CA files, compiles the claim
    /// checks and scope ACLs, builds the HTTP client. Nothing is sent yet.
    ///
    /// # Errors
    ///
    /// [`OAuth2Error`]: the configuration cannot work.
    pub fn new(name: impl Into<Arc<str>>, config: &OAuth2Config) -> Result<OAuth2Authenticator, OAuth2Error> {
        let name: Arc<str> = name.into();
        let url =
            reqwest::Url::parse(&config.introspection_url).map_err(|e| OAuth2Error::IntrospectionUrl(e.to_string()))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(OAuth2Error::IntrospectionUrl(format!(
                "scheme {:?}: use http or https",
                url.scheme()
            )));
        }
        let shown = shown_url(&url);
        if url.scheme() == "http" && !is_loopback(&url) {
            tracing::warn!(
                authenticator = %name, url = %shown,
                "introspection_url uses plain http: tokens and the client secret cross the network in clear"
            );
        }
        if config.client_id.is_empty() {
            return Err(OAuth2Error::EmptyClientId);
        }
        let secret = client_secret(config)?;
        if config.timeout.is_zero() {
            return Err(OAuth2Error::ZeroTimeout);
        }
        let http = BoundedHttp {
            client: http_client(config)?,
        };

        let mut rules = Vec::new();
        for (claim, rule) in &config.claims {
            let reason = match claim.as_str() {
                "" => Some("an empty member name"),
                "active" => Some("inactive tokens are always refused"),
                "exp" => Some("expiry is always checked"),
                "scope" => Some("use required_scopes"),
                _ => None,
            };
            if let Some(reason) = reason {
                return Err(OAuth2Error::Claim {
                    claim: claim.clone(),
                    reason: reason.to_string(),
                });
            }
            rules.push((claim.clone(), rule.clone()));
        }
        if config.username_claim.as_deref() == Some("") {
            return Err(OAuth2Error::EmptyUsernameClaim);
        }
        if let Some(bad) = config.required_scopes.iter().find(|s| !is_scope_token(s)) {
            return Err(OAuth2Error::RequiredScope(bad.clone()));
        }
        let mut scope_acl = BTreeMap::new();
        for (scope, list) in &config.scope_acl {
            let bad = |reason: String| OAuth2Error::ScopeAcl {
                scope: scope.clone(),
                reason,
            };
            if !is_scope_token(scope) {
                return Err(bad(
                    "not a scope (non-empty, printable ASCII without spaces, quotes or backslashes)".into(),
                ));
            }
            let rules: Vec<RuleConfig> = list
                .iter()
                .map(|r| RuleConfig {
                    permission: r.permission,
                    who: r.who.clone(),
                    action: r.action,
                    topics: r.topics.clone(),
                })
                .collect();
            // Compiled once here to report bad templates at start; again per token's scopes.
            Acl::from_config(&AclConfig {
                no_match: Permission::Deny,
                rules: rules.clone(),
            })
            .map_err(|e| bad(e.to_string()))?;
            scope_acl.insert(scope.clone(), rules);
        }

        let auth_type = match config.auth_method {
            AuthMethod::Basic => AuthType::BasicAuth,
            AuthMethod::Post => AuthType::RequestBody,
        };
        let client = oauth2::Client::new(ClientId::new(config.client_id.clone()))
            .set_client_secret(ClientSecret::new(secret))
            .set_auth_type(auth_type)
            .set_introspection_url(IntrospectionUrl::from_url(url));
        Ok(OAuth2Authenticator {
            name,
            from: config.from,
            client,
            http,
            shown,
            on_unavailable: config.on_unavailable,
            username_claim: config.username_claim.clone(),
            rules,
            required_scopes: config.required_scopes.clone(),
            scope_acl,
            max_cache_ttl: config.max_cache_ttl,
            negative_cache_ttl: config.negative_cache_ttl,
            active: Cache::new(config.cache_size),
            inactive: Cache::new(config.cache_size),
            flights: Mutex::new(HashMap::new()),
        })
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
        if !looks_like_bearer(token) {
            return Decision::Ignore;
        }
        let key = TokenKey::of(token);
        let fetched = match self.cached(&key, Instant::now()) {
            Some(f) => f,
            None => self.introspect_shared(key, token).await,
        };
        match fetched {
            Fetched::Active(introspected) => self.judge(&introspected, creds, unix_now()),
            Fetched::Inactive => self.deny(DenyReason::BadCredentials, "not active"),
            Fetched::Unavailable => match self.on_unavailable {
                OnUnavailable::Deny => Decision::Deny(DenyReason::Unavailable),
                OnUnavailable::Ignore => Decision::Ignore,
            },
        }
    }

    fn cached(&self, key: &TokenKey, now: Instant) -> Option<Fetched> {
        if let Some(i) = self.active.lookup(key, now) {
            return Some(Fetched::Active(i));
        }
        self.inactive.lookup(key, now).map(|()| Fetched::Inactive)
    }

    /// Introspects `token`, or waits for the introspection of it already in flight.
    async fn introspect_shared(&self, key: TokenKey, token: &[u8]) -> Fetched {
        let flight = Flight {
            flights: &self.flights,
            key,
            cell: self.flights.lock().entry(key).or_default().clone(),
        };
        // Should the caller that runs the introspection go away (its authentication timed
        // out), a waiting one runs it again: OnceCell hands initialisation on.
        flight
            .cell
            .get_or_init(|| async {
                // A flight that ended just before ours began has left its result here.
                if let Some(f) = self.cached(&key, Instant::now()) {
                    return f;
                }
                let fetched = self.introspect(token).await;
                self.remember(key, &fetched);
                fetched
            })
            .await
            .clone()
    }

    fn remember(&self, key: TokenKey, fetched: &Fetched) {
        let now = Instant::now();
        match fetched {
            Fetched::Active(i) => {
                let ttl = active_ttl(i.exp, unix_now(), self.max_cache_ttl);
                self.active.insert(key, i.clone(), now, ttl);
            }
            Fetched::Inactive => self.inactive.insert(key, (), now, self.negative_cache_ttl),
            Fetched::Unavailable => {}
        }
    }

    /// One introspection request (RFC 7662 §2.1).
    async fn introspect(&self, token: &[u8]) -> Fetched {
        // `looks_like_bearer` admitted ASCII only.
        let token = AccessToken::new(String::from_utf8_lossy(token).into_owned());
        let started = Instant::now();
        let result = self
            .client
            .introspect(&token)
            .set_token_type_hint("access_token")
            .request_async(&self.http)
            .await;
        let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
        match result {
            Ok(response) if !response.active() => {
                tracing::debug!(authenticator = %self.name, elapsed_ms, "introspection: not active");
                Fetched::Inactive
            }
            Ok(response) => match self.introspected(&response) {
                Ok(i) => {
                    tracing::debug!(
                        authenticator = %self.name, elapsed_ms, scopes = ?i.scopes,
                        "introspection: active"
                    );
                    Fetched::Active(Arc::new(i))
                }
                Err(why) => {
                    tracing::warn!(authenticator = %self.name, url = %self.shown, why, "introspection response unusable");
                    Fetched::Unavailable
                }
            },
            Err(error) => {
                tracing::warn!(
                    authenticator = %self.name, url = %self.shown, elapsed_ms,
                    error = %describe_request_error(&error), "introspection failed"
                );
                Fetched::Unavailable
            }
        }
    }

    /// What an active response says, with the ACL of its scopes compiled.
    fn introspected(&self, response: &Response) -> Result<Introspected, String> {
        // One map of every member, whether the crate knows it or not, so that `claims` checks
        // treat all alike (the crate's typed members serialize back to their RFC 7662 form).
        let members = match serde_json::to_value(response) {
            Ok(Value::Object(map)) => map,
            _ => return Err("the response does not serialize to an object".to_string()),
        };
        let scopes: Vec<String> = response
            .scopes()
            .map(|s| s.iter().map(|s| s.to_string()).collect())
            .unwrap_or_default();
        let exp = response.exp().map(|t| t.timestamp() as f64);
        let acl = self.acl_for(&scopes).map_err(|e| format!("scope_acl: {e}"))?;
        Ok(Introspected {
            members,
            scopes,
            exp,
            acl,
        })
    }

    /// The `scope_acl` rules of `scopes`: denies first, then allows (see the module doc).
    fn acl_for(&self, scopes: &[String]) -> Result<Option<Arc<Acl>>, crate::acl::AclError> {
        let granted: Vec<&Vec<RuleConfig>> = self
            .scope_acl
            .iter()
            .filter(|(scope, _)| scopes.iter().any(|s| s == *scope))
            .map(|(_, rules)| rules)
            .collect();
        if granted.is_empty() {
            return Ok(None);
        }
        let ordered = |permission: Permission| {
            granted
                .iter()
                .flat_map(|rules| rules.iter())
                .filter(move |r| r.permission == permission)
                .cloned()
        };
        let rules: Vec<RuleConfig> = ordered(Permission::Deny).chain(ordered(Permission::Allow)).collect();
        Ok(Some(Arc::new(Acl::from_config(&AclConfig {
            no_match: Permission::Deny,
            rules,
        })?)))
    }

    /// The decision on an active token for a client presenting `creds`, at `now`.
    fn judge(&self, i: &Introspected, creds: &Credentials, now: f64) -> Decision {
        if i.exp.is_some_and(|exp| now >= exp) {
            return self.deny(DenyReason::Expired, "active but `exp` has passed");
        }
        for (name, rule) in &self.rules {
            let Some(value) = i.members.get(name) else {
                return self.deny(DenyReason::BadCredentials, "a `claims` member is missing");
            };
            if !rule.accepts(value, creds) {
                tracing::debug!(authenticator = %self.name, member = %name, "claims check failed");
                return if rule.binds() {
                    self.deny(DenyReason::NotAuthorized, "not bound to this client")
                } else {
                    self.deny(DenyReason::BadCredentials, "a `claims` check failed")
                };
            }
        }
        if let Some(missing) = self.required_scopes.iter().find(|s| !i.scopes.contains(s)) {
            tracing::debug!(authenticator = %self.name, scope = %missing, "required scope missing");
            return self.deny(DenyReason::NotAuthorized, "a required scope is missing");
        }
        let non_empty = |name: &str| match i.members.get(name) {
            Some(Value::String(s)) if !s.is_empty() => Some(Arc::<str>::from(s.as_str())),
            _ => None,
        };
        let username = match &self.username_claim {
            Some(name) => match non_empty(name) {
                Some(u) => Some(u),
                None => {
                    return self.deny(
                        DenyReason::BadCredentials,
                        "username_claim is missing or not a non-empty string",
                    )
                }
            },
            None => non_empty("sub")
                .or_else(|| non_empty("client_id"))
                .or_else(|| match self.from {
                    TokenSource::Password => creds.username.as_deref().map(Arc::from),
                    TokenSource::Username => None,
                }),
        };
        Decision::Allow(Identity {
            username,
            client_id: None,
            cert_cn: None,
            authenticator: self.name.clone(),
            acl: i.acl.clone(),
        })
    }
}

/// A caller's share of an introspection in flight; the last one out removes it from the map
/// (once it has a result, which the cache now holds, or when nobody is left to finish it).
struct Flight<'a> {
    flights: &'a Mutex<HashMap<TokenKey, Arc<tokio::sync::OnceCell<Fetched>>>>,
    key: TokenKey,
    cell: Arc<tokio::sync::OnceCell<Fetched>>,
}

impl Drop for Flight<'_> {
    fn drop(&mut self) {
        let mut flights = self.flights.lock();
        let ours = flights.get(&self.key).is_some_and(|c| Arc::ptr_eq(c, &self.cell));
        // Two references: the map's and ours.
        if ours && (self.cell.initialized() || Arc::strong_count(&self.cell) == 2) {
            flights.remove(&self.key);
        }
    }
}

impl Authenticator for OAuth2Authenticator {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "oauth2"
    }

    fn authenticate<'a>(&'a self, creds: &'a Credentials) -> BoxFuture<'a, Decision> {
        Box::pin(self.decide(creds))
    }
}

/// The HTTP client the `oauth2` crate sends through: ours rather than the crate's reqwest glue,
/// which reads a response body whole however large it is.
#[derive(Debug)]
struct BoundedHttp {
    client: reqwest::Client,
}

/// Why an introspection request failed on the way (not the server's answer).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct HttpError(String);

impl<'c> oauth2::AsyncHttpClient<'c> for BoundedHttp {
    type Error = HttpError;
    type Future = Pin<Box<dyn Future<Output = Result<oauth2::HttpResponse, HttpError>> + Send + Sync + 'c>>;

    fn call(&'c self, request: oauth2::HttpRequest) -> Self::Future {
        Box::pin(async move {
            let request = reqwest::Request::try_from(request).map_err(describe)?;
            let mut response = self.client.execute(request).await.map_err(describe)?;
            let too_large = || HttpError(format!("response larger than {MAX_RESPONSE_LEN} bytes"));
            if response.content_length().is_some_and(|n| n > MAX_RESPONSE_LEN as u64) {
                return Err(too_large());
            }
            let mut builder = oauth2::http::Response::builder().status(response.status());
            for (name, value) in response.headers() {
                builder = builder.header(name, value);
            }
            let mut body = Vec::new();
            while let Some(chunk) = response.chunk().await.map_err(describe)? {
                if body.len() + chunk.len() > MAX_RESPONSE_LEN {
                    return Err(too_large());
                }
                body.extend_from_slice(&chunk);
            }
            builder.body(body).map_err(|e| HttpError(e.to_string()))
        })
    }
}

/// A request error with its causes ("error sending request: … : operation timed out"), without
/// the URL (shown separately, without its query).
fn describe(error: reqwest::Error) -> HttpError {
    let error = error.without_url();
    let mut text = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    HttpError(text)
}

/// An introspection failure for the log: never the response body (kept by the crate's parse
/// errors), which the server may fill with anything.
fn describe_request_error(error: &RequestTokenError<HttpError, BasicErrorResponse>) -> String {
    match error {
        RequestTokenError::ServerResponse(e) => format!("error response: {e}"),
        RequestTokenError::Request(e) => e.0.clone(),
        RequestTokenError::Parse(e, _body) => format!("response does not parse at `{}`: {}", e.path(), e.inner()),
        RequestTokenError::Other(text) => text.clone(),
    }
}

#[cfg(test)]
mod tests;
