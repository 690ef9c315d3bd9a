//! unigate's auth chain: who may connect ([`Chain`] of [`Authenticator`]s) and what they may
//! touch ([`acl`]).
//!
//! The chain is protocol-neutral: MQTT CONNECT, a CoAP request, an HTTP `Authorization`
//! header and a DTLS PSK handshake all become [`Credentials`]. Authenticators are tried in
//! order; each answers [`Decision::Allow`] with an [`Identity`], [`Decision::Deny`] with a
//! reason, or [`Decision::Ignore`] to let the next one decide. A chain that ends in Ignore
//! applies its [`NoMatch`] policy.
//!
//! No I/O here but through the authenticators' own clients, and no runtime: authenticate
//! returns a future, which the server runs (with a timeout) on its auth runtime, so that a
//! slow identity provider or an expensive password hash never blocks a connection thread.
//! Secrets are held in [`Secret`], whose `Debug` prints nothing of them.

use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

pub use unigate_pubsub::Protocol;

/// A boxed, sendable future (the return type of [`Authenticator::authenticate`]).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A password, token or key. Never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

impl Secret {
    /// Wraps secret bytes.
    pub fn new(bytes: impl Into<Vec<u8>>) -> Secret {
        Secret(bytes.into())
    }

    /// The secret bytes. Callers must not log them.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether it is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret(<{} bytes redacted>)", self.0.len())
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        // Best effort: do not leave the secret in freed memory.
        for b in self.0.iter_mut() {
            // A volatile write is not available without unsafe; black_box keeps the loop.
            *b = std::hint::black_box(0);
        }
    }
}

/// What a client presents, whatever its protocol.
#[derive(Debug, Clone)]
pub struct Credentials {
    /// The protocol it speaks.
    pub protocol: Protocol,
    /// The listener it came in on.
    pub listener: Arc<str>,
    /// Its address.
    pub peer: Option<SocketAddr>,
    /// Client identifier (MQTT client id, CoAP `clientid` query, …).
    pub client_id: Option<String>,
    /// User name.
    pub username: Option<String>,
    /// Password or token.
    pub password: Option<Secret>,
    /// The TLS/DTLS peer certificate chain, DER, leaf first; verified by the TLS layer.
    pub peer_certificates: Vec<Vec<u8>>,
    /// The DTLS PSK identity.
    pub psk_identity: Option<String>,
}

impl Credentials {
    /// Credentials with only the protocol and listener set.
    pub fn new(protocol: Protocol, listener: impl Into<Arc<str>>) -> Credentials {
        Credentials {
            protocol,
            listener: listener.into(),
            peer: None,
            client_id: None,
            username: None,
            password: None,
            peer_certificates: Vec::new(),
            psk_identity: None,
        }
    }
}

/// Who a client turned out to be.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identity {
    /// The user name to use from now on (may differ from the one presented: a certificate's
    /// CN, a token's subject, a PSK identity).
    pub username: Option<Arc<str>>,
    /// A client id the authenticator binds the client to, when it does.
    pub client_id: Option<Arc<str>>,
    /// The CN of the client certificate, for `${cert_cn}` in ACL rules.
    pub cert_cn: Option<Arc<str>>,
    /// The authenticator that allowed it (`anonymous` for a chain's no-match allow).
    pub authenticator: Arc<str>,
    /// Extra ACL rules carried by the credentials (a JWT `acl` claim, OAuth2 scopes), checked
    /// before the configured rules.
    pub acl: Option<Arc<acl::Acl>>,
}

impl Identity {
    /// The identity of an anonymous client allowed by a chain's no-match policy.
    pub fn anonymous(username: Option<&str>) -> Identity {
        // One shared name: anonymous connections are the common case and each allocation
        // counts towards memory per connection.
        static ANONYMOUS: std::sync::OnceLock<Arc<str>> = std::sync::OnceLock::new();
        Identity {
            username: username.map(Arc::from),
            authenticator: ANONYMOUS.get_or_init(|| Arc::from("anonymous")).clone(),
            ..Identity::default()
        }
    }
}

/// Why an authenticator refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DenyReason {
    /// Unknown user, wrong password, bad signature, inactive token.
    BadCredentials,
    /// The credentials are valid but this client may not connect (e.g. client id binding).
    NotAuthorized,
    /// The credentials have expired.
    Expired,
    /// Too many failed attempts; try later.
    Throttled,
    /// The identity provider could not be reached in time.
    Unavailable,
    /// No authenticator recognised the client and the chain denies by default.
    NoMatch,
}

impl fmt::Display for DenyReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DenyReason::BadCredentials => "bad credentials",
            DenyReason::NotAuthorized => "not authorized",
            DenyReason::Expired => "credentials expired",
            DenyReason::Throttled => "too many failed attempts",
            DenyReason::Unavailable => "identity provider unavailable",
            DenyReason::NoMatch => "no authenticator accepted the client",
        })
    }
}

/// One authenticator's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Known and allowed.
    Allow(Identity),
    /// Refused; the chain stops here.
    Deny(DenyReason),
    /// Not mine (e.g. no token for a JWT authenticator): the next one decides.
    Ignore,
}

/// An authenticator: one configured instance (several of one kind may coexist).
pub trait Authenticator: Send + Sync + fmt::Debug {
    /// Its configured name (used in logs, metrics and audit lines).
    fn name(&self) -> &str;
    /// Its kind (`password`, `jwt`, …).
    fn kind(&self) -> &'static str;
    /// Decides on `creds`. May do I/O or expensive hashing: the caller runs it off the
    /// connection threads, with a timeout.
    fn authenticate<'a>(&'a self, creds: &'a Credentials) -> BoxFuture<'a, Decision>;

    /// The pre-shared key of a DTLS PSK identity, for the handshake (only the `psk` kind has
    /// keys). Called synchronously from the handshake: must not block.
    fn psk_key(&self, _identity: &str) -> Option<Secret> {
        None
    }

    /// SCRAM-SHA-256 verifiers of `username` for MQTT 5 enhanced authentication. `None`: this
    /// authenticator does not take part in SCRAM. Called synchronously: must not block.
    fn scram(&self, _username: &str) -> Option<ScramLookup> {
        None
    }

    /// How a SCRAM exchange with verifiers from [`Authenticator::scram`] ended (throttling).
    fn scram_result(&self, _username: &str, _ok: bool) {}
}

/// What an authenticator knows of a user for SCRAM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScramLookup {
    /// The user and its verifiers.
    Found(scram::ScramCredentials),
    /// Unknown here (or known without verifiers): the exchange runs on a decoy and fails.
    Unknown,
    /// Too many recent failures: refused at once.
    Throttled,
}

/// What a chain does when every authenticator ignored the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NoMatch {
    /// Refuse.
    #[default]
    Deny,
    /// Let the client in as anonymous.
    Allow,
}

/// The result of running a chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Allowed, by the named authenticator (or `anonymous`).
    Allowed(Identity),
    /// Denied by `authenticator` (`chain` for the no-match policy) for `reason`.
    Denied {
        /// Which authenticator decided.
        authenticator: Arc<str>,
        /// Why.
        reason: DenyReason,
    },
}

/// An ordered chain of authenticators.
#[derive(Debug, Clone)]
pub struct Chain {
    name: Arc<str>,
    authenticators: Vec<Arc<dyn Authenticator>>,
    no_match: NoMatch,
}

impl Chain {
    /// A chain named `name`.
    pub fn new(name: impl Into<Arc<str>>, authenticators: Vec<Arc<dyn Authenticator>>, no_match: NoMatch) -> Chain {
        Chain {
            name: name.into(),
            authenticators,
            no_match,
        }
    }

    /// The chain that lets everybody in (listeners without an auth chain).
    pub fn anonymous() -> Chain {
        Chain::new("anonymous", Vec::new(), NoMatch::Allow)
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether it has no authenticators and allows everyone.
    pub fn allows_everyone(&self) -> bool {
        self.authenticators.is_empty() && self.no_match == NoMatch::Allow
    }

    /// The key of a DTLS PSK identity from the first authenticator that has one.
    pub fn psk_key(&self, identity: &str) -> Option<Secret> {
        self.authenticators.iter().find_map(|a| a.psk_key(identity))
    }

    /// The SCRAM verifiers of `username`: the first authenticator that has them, with its name.
    /// `None` when no authenticator of the chain does SCRAM.
    pub fn scram(&self, username: &str) -> Option<(Arc<str>, ScramLookup)> {
        let mut fallback = None;
        for a in &self.authenticators {
            match a.scram(username) {
                Some(found @ ScramLookup::Found(_)) => return Some((Arc::from(a.name()), found)),
                Some(other) if fallback.is_none() || other == ScramLookup::Throttled => {
                    fallback = Some((Arc::from(a.name()), other));
                }
                Some(_) | None => {}
            }
        }
        fallback
    }

    /// Reports how a SCRAM exchange ended to the authenticator that supplied the verifiers.
    pub fn scram_result(&self, authenticator: &str, username: &str, ok: bool) {
        if let Some(a) = self.authenticators.iter().find(|a| a.name() == authenticator) {
            a.scram_result(username, ok);
        }
    }

    /// Whether an authenticator can serve DTLS PSK handshakes.
    pub fn has_psk(&self) -> bool {
        self.authenticators.iter().any(|a| a.kind() == "psk")
    }

    /// The authenticators, in order.
    pub fn authenticators(&self) -> &[Arc<dyn Authenticator>] {
        &self.authenticators
    }

    /// Runs the authenticators in order until one allows or denies.
    pub async fn authenticate(&self, creds: &Credentials) -> Outcome {
        for a in &self.authenticators {
            match a.authenticate(creds).await {
                Decision::Allow(identity) => return Outcome::Allowed(identity),
                Decision::Deny(reason) => {
                    return Outcome::Denied {
                        authenticator: Arc::from(a.name()),
                        reason,
                    }
                }
                Decision::Ignore => continue,
            }
        }
        match self.no_match {
            NoMatch::Allow => Outcome::Allowed(Identity::anonymous(creds.username.as_deref())),
            NoMatch::Deny => Outcome::Denied {
                authenticator: Arc::from("chain"),
                reason: DenyReason::NoMatch,
            },
        }
    }
}

pub mod acl;
pub mod jwt;
pub mod oauth2;
pub mod password;
pub mod psk;
pub mod scram;
mod url;
pub mod x509;

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[derive(Debug)]
    struct Fixed(&'static str, Decision);

    impl Authenticator for Fixed {
        fn name(&self) -> &str {
            self.0
        }
        fn kind(&self) -> &'static str {
            "fixed"
        }
        fn authenticate<'a>(&'a self, _: &'a Credentials) -> BoxFuture<'a, Decision> {
            let d = self.1.clone();
            Box::pin(async move { d })
        }
    }

    fn run(chain: &Chain) -> Outcome {
        futures_lite_block_on(chain.authenticate(&Credentials::new(Protocol::Mqtt, "l")))
    }

    /// A minimal executor for futures that never pend (the test authenticators).
    fn futures_lite_block_on<F: Future>(f: F) -> F::Output {
        use std::task::{Context, Poll, Waker};
        let waker = Waker::from(Arc::new(NoopWake));
        let mut cx = Context::from_waker(&waker);
        let mut f = Box::pin(f);
        loop {
            if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
                return v;
            }
        }
    }

    struct NoopWake;
    impl std::task::Wake for NoopWake {
        fn wake(self: Arc<Self>) {}
    }

    fn allow(name: &'static str) -> Arc<dyn Authenticator> {
        Arc::new(Fixed(
            name,
            Decision::Allow(Identity {
                authenticator: Arc::from(name),
                ..Identity::default()
            }),
        ))
    }

    #[test]
    fn ignore_passes_to_the_next_and_first_decision_wins() {
        let chain = Chain::new(
            "c",
            vec![
                Arc::new(Fixed("skip", Decision::Ignore)),
                allow("second"),
                Arc::new(Fixed("never", Decision::Deny(DenyReason::BadCredentials))),
            ],
            NoMatch::Deny,
        );
        match run(&chain) {
            Outcome::Allowed(i) => assert_eq!(&*i.authenticator, "second"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn deny_stops_the_chain() {
        let chain = Chain::new(
            "c",
            vec![
                Arc::new(Fixed("strict", Decision::Deny(DenyReason::Expired))),
                allow("later"),
            ],
            NoMatch::Allow,
        );
        assert_eq!(
            run(&chain),
            Outcome::Denied {
                authenticator: Arc::from("strict"),
                reason: DenyReason::Expired
            }
        );
    }

    #[test]
    fn no_match_policy_applies_when_everyone_ignores() {
        let deny = Chain::new("c", vec![Arc::new(Fixed("skip", Decision::Ignore))], NoMatch::Deny);
        assert_eq!(
            run(&deny),
            Outcome::Denied {
                authenticator: Arc::from("chain"),
                reason: DenyReason::NoMatch
            }
        );
        let allow = Chain::new("c", vec![Arc::new(Fixed("skip", Decision::Ignore))], NoMatch::Allow);
        assert!(matches!(run(&allow), Outcome::Allowed(i) if &*i.authenticator == "anonymous"));
        assert!(Chain::anonymous().allows_everyone());
    }

    #[test]
    fn secrets_are_not_printed() {
        let c = Credentials {
            password: Some(Secret::new("hunter2")),
            ..Credentials::new(Protocol::Mqtt, "l")
        };
        let shown = format!("{c:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
    }
}
