//! A JWKS (RFC 7517 §5) fetched over HTTP(S), cached, and refreshed when it is older than
//! `jwks_refresh` or a token names a `kid` it lacks.
//!
//! Refreshes are lazy (on use) and rate-limited: no fetch starts within `jwks_min_refetch` of
//! the end of the previous one, whatever asks for it. Concurrent refreshes coalesce: one fetch
//! is in flight, and the others wait for it (a stale-but-usable set is served meanwhile without
//! waiting). A failed fetch (unreachable, not 2xx, not a key set, no usable key, timeout) keeps
//! the keys already held. Fetches are bounded by `jwks_timeout` (connect, response and body) and
//! by [`MAX_JWKS_LEN`]; a fetch abandoned because the caller's future was dropped (the server's
//! `auth.timeout` fired first) counts as a failed one, so the rate limit still holds.

use crate::url::shown_url;
use std::sync::Arc;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::Algorithm;
use parking_lot::Mutex;
use serde::Deserialize;

use super::keys::{jwk_key, KeySet};

/// The largest key set body read.
pub const MAX_JWKS_LEN: usize = 1024 * 1024;

/// The most keys kept from one set (a token without `kid` may be tried against each).
const MAX_KEYS: usize = 64;

/// The key source is unavailable: no usable key set, or a token's `kid` is unknown and the
/// last refresh failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Unavailable;

#[derive(Debug, Default)]
struct State {
    /// The last good key set.
    keys: Option<Arc<KeySet>>,
    /// When it was fetched.
    fetched_at: Option<Instant>,
    /// When the last fetch, good or bad, ended.
    attempted_at: Option<Instant>,
    /// Whether that fetch failed.
    last_failed: bool,
    /// Counts ended fetches, so that a waiter can tell one ended while it waited.
    generation: u64,
}

/// Why a refresh is wanted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Need {
    /// No key set yet.
    Missing,
    /// The token names a `kid` the set lacks.
    UnknownKid,
    /// The set is older than `jwks_refresh` (still usable meanwhile).
    Stale,
}

/// A cached remote key set.
pub(crate) struct Jwks {
    /// The authenticator's name, for logs.
    name: Arc<str>,
    url: reqwest::Url,
    /// The URL without credentials or query, for logs.
    shown: String,
    client: reqwest::Client,
    refresh: Duration,
    min_refetch: Duration,
    /// The algorithms keys may be used with.
    accepted: Vec<Algorithm>,
    state: Mutex<State>,
    /// Held by the one fetch in flight (an async mutex: it is held across the fetch).
    fetching: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Jwks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Not the URL itself: its query or user info may hold credentials.
        f.debug_struct("Jwks")
            .field("url", &self.shown)
            .field("refresh", &self.refresh)
            .field("min_refetch", &self.min_refetch)
            .field("state", &*self.state.lock())
            .finish_non_exhaustive()
    }
}

/// Everything [`Jwks::new`] needs.
pub(crate) struct JwksSettings {
    pub(crate) name: Arc<str>,
    pub(crate) url: reqwest::Url,
    pub(crate) refresh: Duration,
    pub(crate) min_refetch: Duration,
    pub(crate) timeout: Duration,
    pub(crate) accepted: Vec<Algorithm>,
}

impl Jwks {
    /// A cache for the set at `settings.url`; nothing is fetched until a token needs it.
    pub(crate) fn new(settings: JwksSettings) -> Result<Jwks, reqwest::Error> {
        let client = reqwest::Client::builder()
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout)
            .redirect(reqwest::redirect::Policy::limited(3))
            .user_agent(concat!("unigate/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Jwks {
            shown: shown_url(&settings.url),
            name: settings.name,
            url: settings.url,
            client,
            refresh: settings.refresh,
            min_refetch: settings.min_refetch,
            accepted: settings.accepted,
            state: Mutex::new(State::default()),
            fetching: tokio::sync::Mutex::new(()),
        })
    }

    /// The key set to verify a token naming `kid` with, refreshing it first when due.
    pub(crate) async fn keys_for(&self, kid: Option<&str>) -> Result<Arc<KeySet>, Unavailable> {
        let (need, generation) = {
            let s = self.state.lock();
            let now = Instant::now();
            let need = match &s.keys {
                None => Some(Need::Missing),
                Some(set) if kid.is_some_and(|k| !set.knows_kid(k)) => Some(Need::UnknownKid),
                Some(_) if s.fetched_at.is_none_or(|t| now.duration_since(t) >= self.refresh) => Some(Need::Stale),
                Some(_) => None,
            };
            let allowed = s.attempted_at.is_none_or(|t| now.duration_since(t) >= self.min_refetch);
            (need.filter(|_| allowed), s.generation)
        };
        if let Some(need) = need {
            self.refresh(need, generation).await;
        }
        let s = self.state.lock();
        let keys = s.keys.clone().ok_or(Unavailable)?;
        if let Some(kid) = kid {
            // Unknown even after asking the server, or we could not ask: which one matters.
            if s.last_failed && !keys.knows_kid(kid) {
                return Err(Unavailable);
            }
        }
        Ok(keys)
    }

    /// Fetches the set unless a fetch ended since `seen` (then its result serves).
    async fn refresh(&self, need: Need, seen: u64) {
        let _one_at_a_time = match need {
            // Usable keys are at hand: do not queue behind a fetch in flight.
            Need::Stale => match self.fetching.try_lock() {
                Ok(guard) => guard,
                Err(_) => return,
            },
            Need::Missing | Need::UnknownKid => self.fetching.lock().await,
        };
        if self.state.lock().generation != seen {
            return;
        }
        tracing::debug!(authenticator = %self.name, url = %self.shown, reason = ?need, "fetching JWKS");
        let mut attempt = Attempt {
            jwks: self,
            finished: false,
        };
        let result = self.fetch().await;
        attempt.finished = true;
        let mut s = self.state.lock();
        let now = Instant::now();
        s.generation += 1;
        s.attempted_at = Some(now);
        match result {
            Ok(set) => {
                tracing::debug!(authenticator = %self.name, url = %self.shown, keys = set.keys.len(), "JWKS fetched");
                s.keys = Some(Arc::new(set));
                s.fetched_at = Some(now);
                s.last_failed = false;
            }
            Err(error) => {
                tracing::warn!(
                    authenticator = %self.name, url = %self.shown, %error,
                    keeping = s.keys.as_ref().map_or(0, |k| k.keys.len()),
                    "JWKS fetch failed; keeping the keys held"
                );
                s.last_failed = true;
            }
        }
    }

    async fn fetch(&self) -> Result<KeySet, String> {
        let mut response = self
            .client
            .get(self.url.clone())
            .header(reqwest::header::ACCEPT, "application/jwk-set+json, application/json")
            .send()
            .await
            .map_err(describe)?;
        let status = response.status();
        if !status.is_success() {
            return Err(format!("HTTP status {status}"));
        }
        if response.content_length().is_some_and(|n| n > MAX_JWKS_LEN as u64) {
            return Err(format!("larger than {MAX_JWKS_LEN} bytes"));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(describe)? {
            if body.len() + chunk.len() > MAX_JWKS_LEN {
                return Err(format!("larger than {MAX_JWKS_LEN} bytes"));
            }
            body.extend_from_slice(&chunk);
        }
        parse_jwks(&body, &self.accepted, &self.name)
    }
}

/// Counts a fetch whose future is dropped before it ends (the server's authentication timeout
/// fired first) as a failed one, so that the rate limit holds against an identity provider that
/// hangs longer than that timeout.
struct Attempt<'a> {
    jwks: &'a Jwks,
    finished: bool,
}

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        let mut s = self.jwks.state.lock();
        s.generation += 1;
        s.attempted_at = Some(Instant::now());
        s.last_failed = true;
        tracing::warn!(
            authenticator = %self.jwks.name, url = %self.jwks.shown,
            "JWKS fetch abandoned: the authentication timed out first (make jwks_timeout shorter than auth.timeout)"
        );
    }
}

/// A fetch error with its causes ("error sending request: … : operation timed out"), without
/// the URL (shown separately, without its query).
fn describe(error: reqwest::Error) -> String {
    let error = error.without_url();
    let mut text = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// The usable keys of a key set document. Keys that are not usable (encryption keys, secrets,
/// unsupported curves, keys the crate cannot parse) are skipped, not fatal: identity providers
/// publish such keys beside their signing keys. A document with no usable key is an error, so
/// that a broken publication does not replace working keys.
pub(crate) fn parse_jwks(body: &[u8], accepted: &[Algorithm], name: &str) -> Result<KeySet, String> {
    #[derive(Deserialize)]
    struct Document {
        keys: Vec<serde_json::Value>,
    }
    let doc: Document = serde_json::from_slice(body).map_err(|e| format!("not a JWK set: {e}"))?;
    let mut keys = Vec::new();
    for (index, value) in doc.keys.into_iter().enumerate() {
        if keys.len() == MAX_KEYS {
            tracing::warn!(authenticator = %name, "JWKS has more than {MAX_KEYS} usable keys; the rest are ignored");
            break;
        }
        let jwk = match serde_json::from_value::<Jwk>(value) {
            Ok(jwk) => jwk,
            Err(_) => {
                tracing::debug!(authenticator = %name, index, "JWKS key skipped: not a key the jwt crate reads");
                continue;
            }
        };
        match jwk_key(&jwk, accepted) {
            Ok(key) => keys.push(key),
            Err(why) => {
                tracing::debug!(authenticator = %name, index, kid = ?jwk.common.key_id, why, "JWKS key skipped");
            }
        }
    }
    if keys.is_empty() {
        return Err("no usable signature key in the set".to_string());
    }
    Ok(KeySet { keys })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    const ALL: &[Algorithm] = &[Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA];

    #[test]
    fn unusable_keys_are_skipped() {
        let rsa = include_str!("../../testdata/jwt/rsa.jwk.json");
        let doc = format!(
            r#"{{"keys": [
                {{"kty": "oct", "k": "c2VjcmV0", "kid": "secret"}},
                {{"kty": "EC", "crv": "P-521", "x": "AA", "y": "AA", "kid": "p521"}},
                {{"kty": "OKP", "crv": "X25519", "x": "AA", "kid": "x"}},
                {{"kty": "RSA", "n": "AQAB", "e": "AQAB", "kid": "tiny"}},
                {{"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA", "kid": "offcurve"}},
                {{"weird": true}},
                {rsa_enc},
                {rsa_ps},
                {rsa_plain}
            ]}}"#,
            rsa_enc = rsa.replacen('{', r#"{"use": "enc", "kid": "enc","#, 1),
            rsa_ps = rsa.replacen('{', r#"{"alg": "PS256", "kid": "ps","#, 1),
            rsa_plain = rsa.replacen('{', r#"{"kid": "rs","#, 1),
        );
        let set = parse_jwks(doc.as_bytes(), ALL, "t").unwrap();
        let kids: Vec<_> = set.keys.iter().map(|k| k.kid.as_deref().unwrap()).collect();
        // PS256 is not accepted here, so the key limited to it goes too.
        assert_eq!(kids, ["rs"]);
        assert_eq!(set.keys[0].algorithms, [Algorithm::RS256]);
        assert!(parse_jwks(b"{\"keys\": []}", ALL, "t").is_err());
        assert!(parse_jwks(b"<html>", ALL, "t").is_err());
        assert!(parse_jwks(b"{\"keys\": 3}", ALL, "t").is_err());
    }

    #[test]
    fn urls_are_shown_without_secrets() {
        let url = reqwest::Url::parse("https://user:pw@idp.example:8443/jwks?key=abc").unwrap();
        assert_eq!(shown_url(&url), "https://idp.example:8443/jwks");
    }
}
