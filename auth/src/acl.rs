//! Authorisation: ordered allow/deny rules on publish, subscribe and retained reads.
//!
//! An [`Acl`] is a list of [`Rule`]s and a `no_match` [`Permission`]. It is compiled once from
//! the `[acl]` section of the configuration ([`AclConfig`], [`Acl::from_config`]) or from a
//! token's `acl` claim, shared behind an `Arc`, and asked about each request with the
//! [`Subject`] making it ([`Acl::check`]). A check never fails and does not allocate.
//!
//! # Layout
//!
//! - this module: [`Acl`], [`Rule`], [`Who`], [`Action`], [`Permission`], [`Subject`],
//!   [`Request`], [`Verdict`];
//! - `template`: [`TopicTemplate`], a rule's topic filter with placeholders;
//! - `levels`: [`covers`] and [`overlaps`], relations between filters;
//! - `config`: [`AclConfig`] and [`RuleConfig`], the serde shape;
//! - `error`: [`AclError`] and [`TemplateError`].
//!
//! # Semantics
//!
//! These decide who may read and write what; every point is tested.
//!
//! **Order.** Rules are tried in order and the first one that *matches* decides
//! ([`Verdict::rule`] says which). A rule matches a request when its [`Action`] includes the
//! request's kind, its [`Who`] includes the subject, and at least one of its topic templates
//! *applies* to the request (below). When no rule matches, [`Acl::check_rules`] says `None`, so
//! that a per-token ACL can fall through to the configured one, and [`Acl::check`] answers the
//! `no_match` permission (deny unless configured otherwise).
//!
//! **Actions.** `publish` rules apply to publishes, `subscribe` rules to subscriptions and to
//! retained reads (each retained message a new subscription would deliver is checked on its own,
//! as [`Request::RetainedRead`]), `retained` rules to retained reads only, and `all` rules to all
//! three. So a client allowed to subscribe receives the retained messages it subscribed to (what
//! Mosquitto's `read` does, and what operators expect), and a `retained` rule placed before it
//! can carve out exceptions (e.g. deny retained reads under `a/private/#`).
//!
//! **Placeholders.** `${clientid}`, `${username}` and `${cert_cn}` in a template are replaced by
//! the subject's values on every request. A template applies to nothing, and so its rule does not
//! match through it, when a value it uses is
//!
//! - missing (no user name, no client certificate);
//! - empty, or contains `+`, `#`, `/` or NUL: a user name `a/#` must not turn
//!   `users/${username}` into `users/a/#`, nor a client id `x/y` reach another client's tree;
//! - at the very start of the template and starts with `$`: `${clientid}/#` must not hand a
//!   client named `$SYS` the server's `$SYS/#` tree.
//!
//! This holds for `deny` rules too: a deny rule with a placeholder does not protect against a
//! client whose value is missing or refused. Write deny rules that must hold for everyone without
//! placeholders, and rely on `no_match = "deny"`.
//!
//! **Publish and retained reads.** A template applies when its expanded filter matches the topic
//! (MQTT 5 §4.7; a topic starting with `$` is not matched by a filter starting with a wildcard,
//! so `#` does not reach `$SYS/...` and an `$SYS` rule must name it).
//!
//! **Subscribe.** Judged on the filter part of the requested filter (for a shared subscription
//! `$share/{group}/{filter}`, on `{filter}`: rules do not see share groups, and a template naming
//! `$share/` is refused). An `allow` template applies only when its filter [`covers`] the
//! requested one, i.e. every topic the request could receive is allowed (`a/#` covers `a/+/c`;
//! `a/+` does not cover `a/#`). A `deny` template applies as soon as its filter [`overlaps`] the
//! requested one, i.e. the request could receive some denied topic (`deny secret/#` refuses a
//! subscription to `#`). Subscriptions are all-or-nothing: there is no silent narrowing.
//!
//! **`eq` templates.** `eq {filter}` is compared as text, never expanded (placeholders are
//! refused in it), with no wildcard meaning: it applies to a publish or retained read of exactly
//! that topic, or a subscription whose filter part is exactly that text (`eq a/#` applies to a
//! subscription to `a/#` and to nothing else), whatever the permission.
//!
//! **Who.** `all` is everyone; `anonymous` the clients let in by a chain's no-match policy (their
//! authenticator is `anonymous`); `username`, `clientid`, `listener` and `authenticator` compare
//! exactly; a list matches when any entry does.
//!
//! # Example
//!
//! ```
//! use unigate_auth::acl::{Acl, AclConfig, Permission, Request, Subject};
//! use unigate_pubsub::{Topic, TopicFilter};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let config: AclConfig = toml::from_str(r##"
//!     no_match = "deny"
//!     [[rules]]
//!     permission = "allow"
//!     who = "all"
//!     action = "all"
//!     topics = ["devices/${clientid}/#"]
//! "##)?;
//! let acl = Acl::from_config(&config)?;
//! let subject = Subject {
//!     client_id: "c1",
//!     username: None,
//!     cert_cn: None,
//!     listener: "mqtt",
//!     authenticator: "anonymous",
//! };
//! let own = Topic::new("devices/c1/temp")?;
//! let other = TopicFilter::new("devices/+/temp")?;
//! assert_eq!(acl.check(&subject, Request::Publish(&own)).permission, Permission::Allow);
//! assert_eq!(acl.check(&subject, Request::Subscribe(&other)).permission, Permission::Deny);
//! # Ok(())
//! # }
//! ```

use std::fmt;

use serde::{Deserialize, Serialize};
use unigate_pubsub::{Topic, TopicFilter};

use crate::Identity;

mod config;
mod error;
mod levels;
mod template;

pub use config::{AclConfig, RuleConfig};
pub use error::{AclError, TemplateError};
pub use levels::{covers, overlaps};
pub use template::{Placeholder, TopicTemplate};

use template::{Bindings, PlaceholderSet};

/// Whether a rule lets a request through.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Permission {
    /// Let it through.
    Allow,
    /// Refuse it (the default `no_match`).
    #[default]
    Deny,
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Permission::Allow => "allow",
            Permission::Deny => "deny",
        })
    }
}

/// The kind of request a rule is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Action {
    /// Publishing to a topic (`publish`).
    #[serde(rename = "publish")]
    Publish,
    /// Subscribing to a filter (`subscribe`).
    #[serde(rename = "subscribe")]
    Subscribe,
    /// Receiving a retained message on subscribing (`retained`).
    #[serde(rename = "retained")]
    RetainedRead,
    /// All three (`all`).
    #[serde(rename = "all")]
    All,
}

impl Action {
    /// Whether a rule for this action is about `request`.
    #[must_use]
    pub fn includes(self, request: Request<'_>) -> bool {
        matches!(
            (self, request),
            (Action::All, _)
                | (Action::Publish, Request::Publish(_))
                | (Action::Subscribe, Request::Subscribe(_) | Request::RetainedRead(_))
                | (Action::RetainedRead, Request::RetainedRead(_))
        )
    }
}

/// The clients a rule is about.
///
/// In the configuration: `"all"`, `"anonymous"`, `{ username = "…" }`, `{ clientid = "…" }`,
/// `{ listener = "…" }`, `{ authenticator = "…" }`, or a list of those (any of them).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Who {
    /// Everyone.
    All,
    /// Clients let in by a chain's no-match policy ([`Subject::authenticator`] is `anonymous`).
    Anonymous,
    /// Clients with exactly this user name.
    Username(String),
    /// Clients with exactly this client id.
    ClientId(String),
    /// Clients connected through the listener of this name.
    Listener(String),
    /// Clients allowed by the authenticator of this name.
    Authenticator(String),
    /// Clients any of these is about (none, when empty).
    Any(Vec<Who>),
}

impl Who {
    /// Whether `subject` is one of the clients this is about.
    #[must_use]
    pub fn includes(&self, subject: &Subject<'_>) -> bool {
        match self {
            Who::All => true,
            Who::Anonymous => subject.authenticator == ANONYMOUS,
            Who::Username(name) => subject.username == Some(name.as_str()),
            Who::ClientId(id) => subject.client_id == id,
            Who::Listener(name) => subject.listener == name,
            Who::Authenticator(name) => subject.authenticator == name,
            Who::Any(any) => any.iter().any(|who| who.includes(subject)),
        }
    }
}

/// The authenticator name of anonymous clients (see [`Identity::anonymous`]).
const ANONYMOUS: &str = "anonymous";

/// One rule: if `who` makes a request of kind `action` to which one of `topics` applies, the
/// answer is `permission`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// The answer when the rule matches.
    pub permission: Permission,
    /// The clients it is about.
    pub who: Who,
    /// The requests it is about.
    pub action: Action,
    /// The topics it is about: it matches when any of them applies.
    pub topics: Vec<TopicTemplate>,
}

impl Rule {
    /// Whether the rule matches `request` by `subject` (see the [module documentation](self)).
    #[must_use]
    pub fn matches(&self, subject: &Subject<'_>, request: Request<'_>) -> bool {
        let wanted = self
            .topics
            .iter()
            .fold(PlaceholderSet::default(), |s, t| s.union(t.placeholders()));
        self.matches_bound(subject, &Bindings::new(subject, wanted), request)
    }

    fn matches_bound(&self, subject: &Subject<'_>, bindings: &Bindings<'_>, request: Request<'_>) -> bool {
        self.action.includes(request)
            && self.who.includes(subject)
            && self
                .topics
                .iter()
                .any(|t| t.applies_bound(self.permission, bindings, request))
    }
}

/// Who makes a request: what rules can select on and what placeholders are filled with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subject<'a> {
    /// The client id of the session (`${clientid}`).
    pub client_id: &'a str,
    /// The user name the client ended up with (`${username}`), if any.
    pub username: Option<&'a str>,
    /// The CN of its client certificate (`${cert_cn}`), if any.
    pub cert_cn: Option<&'a str>,
    /// The name of the listener it connected through.
    pub listener: &'a str,
    /// The name of the authenticator that let it in; `anonymous` for anonymous clients.
    pub authenticator: &'a str,
}

impl<'a> Subject<'a> {
    /// The subject for a client authenticated as `identity`, with the session's `client_id`,
    /// connected through `listener`.
    #[must_use]
    pub fn from_identity(identity: &'a Identity, client_id: &'a str, listener: &'a str) -> Subject<'a> {
        Subject {
            client_id,
            username: identity.username.as_deref(),
            cert_cn: identity.cert_cn.as_deref(),
            listener,
            authenticator: &identity.authenticator,
        }
    }
}

/// What a client asks to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request<'a> {
    /// Publish to this topic.
    Publish(&'a Topic),
    /// Subscribe to this filter (possibly `$share/{group}/{filter}`).
    Subscribe(&'a TopicFilter),
    /// Receive the message retained on this topic (on subscribing).
    RetainedRead(&'a Topic),
}

/// The answer to a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    /// Allow or deny.
    pub permission: Permission,
    /// The index of the rule that decided; `None` when none matched and `no_match` decided.
    pub rule: Option<usize>,
}

impl Verdict {
    /// Whether the request is allowed.
    #[must_use]
    pub fn is_allowed(&self) -> bool {
        self.permission == Permission::Allow
    }
}

/// A compiled ACL: ordered rules and the permission when none matches.
///
/// Cheap to check (no allocation), not cheap to clone: share it behind an `Arc`. The default is
/// no rules and `no_match` deny, which refuses everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Acl {
    rules: Vec<Rule>,
    no_match: Permission,
    /// The placeholders any rule uses: only those values are validated per check.
    placeholders: PlaceholderSet,
}

impl Acl {
    /// An ACL of `rules`, tried in order, answering `no_match` when none matches.
    #[must_use]
    pub fn new(rules: Vec<Rule>, no_match: Permission) -> Acl {
        let placeholders = rules
            .iter()
            .flat_map(|r| &r.topics)
            .fold(PlaceholderSet::default(), |s, t| s.union(t.placeholders()));
        Acl {
            rules,
            no_match,
            placeholders,
        }
    }

    /// The ACL that allows everything (no rules, `no_match` allow).
    #[must_use]
    pub fn allow_all() -> Acl {
        Acl::new(Vec::new(), Permission::Allow)
    }

    /// Compiles the `[acl]` section.
    ///
    /// # Errors
    ///
    /// [`AclError`], naming the rule (and topic) at fault: a template that does not parse, a
    /// rule without topics, or an empty `who` list.
    pub fn from_config(config: &AclConfig) -> Result<Acl, AclError> {
        let mut rules = Vec::with_capacity(config.rules.len());
        for (rule, c) in config.rules.iter().enumerate() {
            if c.topics.is_empty() {
                return Err(AclError::NoTopics { rule });
            }
            if c.who == Who::Any(Vec::new()) {
                return Err(AclError::EmptyWho { rule });
            }
            let topics = c
                .topics
                .iter()
                .enumerate()
                .map(|(topic, text)| {
                    TopicTemplate::parse(text).map_err(|reason| AclError::Template {
                        rule,
                        topic,
                        template: text.clone(),
                        reason,
                    })
                })
                .collect::<Result<_, _>>()?;
            rules.push(Rule {
                permission: c.permission,
                who: c.who.clone(),
                action: c.action,
                topics,
            });
        }
        Ok(Acl::new(rules, config.no_match))
    }

    /// The rules, in order ([`Verdict::rule`] indexes them).
    #[must_use]
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// The permission when no rule matches.
    #[must_use]
    pub fn no_match(&self) -> Permission {
        self.no_match
    }

    /// The first rule that matches `request` by `subject`, as a verdict; `None` when no rule
    /// matches (so that a per-token ACL can fall through to the configured one).
    #[must_use]
    pub fn check_rules(&self, subject: &Subject<'_>, request: Request<'_>) -> Option<Verdict> {
        let bindings = Bindings::new(subject, self.placeholders);
        self.rules
            .iter()
            .position(|rule| rule.matches_bound(subject, &bindings, request))
            .map(|i| Verdict {
                permission: self.rules[i].permission,
                rule: Some(i),
            })
    }

    /// [`check_rules`](Self::check_rules), or else the `no_match` permission.
    #[must_use]
    pub fn check(&self, subject: &Subject<'_>, request: Request<'_>) -> Verdict {
        self.check_rules(subject, request).unwrap_or(Verdict {
            permission: self.no_match,
            rule: None,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::sync::Arc;

    use super::*;

    fn t(s: &str) -> Topic {
        Topic::new(s).unwrap()
    }

    fn f(s: &str) -> TopicFilter {
        TopicFilter::new(s).unwrap()
    }

    fn rule(permission: Permission, who: Who, action: Action, topics: &[&str]) -> Rule {
        Rule {
            permission,
            who,
            action,
            topics: topics.iter().map(|s| TopicTemplate::parse(s).unwrap()).collect(),
        }
    }

    fn allow(action: Action, topics: &[&str]) -> Rule {
        rule(Permission::Allow, Who::All, action, topics)
    }

    fn deny(action: Action, topics: &[&str]) -> Rule {
        rule(Permission::Deny, Who::All, action, topics)
    }

    const DEVICE: Subject<'static> = Subject {
        client_id: "c1",
        username: Some("alice"),
        cert_cn: Some("dev1.example"),
        listener: "mqtt",
        authenticator: "users",
    };

    fn publish(acl: &Acl, s: &Subject<'_>, topic: &str) -> bool {
        acl.check(s, Request::Publish(&t(topic))).is_allowed()
    }

    fn subscribe(acl: &Acl, s: &Subject<'_>, filter: &str) -> bool {
        acl.check(s, Request::Subscribe(&f(filter))).is_allowed()
    }

    fn retained(acl: &Acl, s: &Subject<'_>, topic: &str) -> bool {
        acl.check(s, Request::RetainedRead(&t(topic))).is_allowed()
    }

    #[test]
    fn each_placeholder_selects_the_subjects_own_tree() {
        for (template, own, other) in [
            ("devices/${clientid}/#", "devices/c1/x", "devices/c2/x"),
            ("users/${username}/+", "users/alice/x", "users/bob/x"),
            ("certs/${cert_cn}", "certs/dev1.example", "certs/dev2.example"),
            ("m/c-${clientid}.${username}", "m/c-c1.alice", "m/c-c1.bob"),
        ] {
            let acl = Acl::new(vec![allow(Action::All, &[template])], Permission::Deny);
            assert!(publish(&acl, &DEVICE, own), "{template} {own}");
            assert!(retained(&acl, &DEVICE, own), "{template} {own}");
            assert!(subscribe(&acl, &DEVICE, own), "{template} {own}");
            assert!(!publish(&acl, &DEVICE, other), "{template} {other}");
            assert!(!subscribe(&acl, &DEVICE, other), "{template} {other}");
        }
    }

    #[test]
    fn missing_values_never_match() {
        let acl = Acl::new(
            vec![allow(Action::All, &["u/${username}/#", "c/${cert_cn}/#"])],
            Permission::Deny,
        );
        let nobody = Subject {
            username: None,
            cert_cn: None,
            ..DEVICE
        };
        for topic in ["u/x", "c/x", "u/", "c/"] {
            assert!(!publish(&acl, &nobody, topic), "{topic}");
        }
        assert!(!subscribe(&acl, &nobody, "u/+/#"));
        assert_eq!(acl.check_rules(&nobody, Request::Publish(&t("u/x"))), None);
        assert!(publish(&acl, &DEVICE, "u/alice/x"));
    }

    #[test]
    fn injected_wildcards_and_separators_never_match() {
        let acl = Acl::new(vec![allow(Action::All, &["u/${username}"])], Permission::Deny);
        for name in ["#", "+", "a/#", "a/b", "", "a\0", "+a", "a#"] {
            let s = Subject {
                username: Some(name),
                ..DEVICE
            };
            // Neither the literal text nor what it would mean as a filter.
            for topic in ["u/a", "u/a/b", "u/x", "u/+a", "u/a#"] {
                if let Ok(topic) = Topic::new(topic) {
                    assert!(
                        !acl.check(&s, Request::Publish(&topic)).is_allowed(),
                        "{name:?} {topic}"
                    );
                }
            }
            for filter in ["u/#", "u/+", "u/a/#", "u/a/b"] {
                assert!(!subscribe(&acl, &s, filter), "{name:?} {filter}");
            }
        }
        // A leading placeholder must not open a `$` tree.
        let acl = Acl::new(vec![allow(Action::All, &["${clientid}/#"])], Permission::Deny);
        let sys = Subject {
            client_id: "$SYS",
            ..DEVICE
        };
        assert!(!publish(&acl, &sys, "$SYS/broker/uptime"));
        assert!(!subscribe(&acl, &sys, "$SYS/#"));
        assert!(publish(&acl, &DEVICE, "c1/x"));
    }

    #[test]
    fn deny_rules_with_missing_values_do_not_apply() {
        // Documented: such a deny rule does not protect; the allow below decides.
        let acl = Acl::new(
            vec![
                deny(Action::Publish, &["${username}/secret"]),
                allow(Action::Publish, &["#"]),
            ],
            Permission::Deny,
        );
        let anon = Subject {
            username: None,
            ..DEVICE
        };
        assert!(!publish(&acl, &DEVICE, "alice/secret"));
        assert!(publish(&acl, &anon, "alice/secret"));
    }

    #[test]
    fn who_variants() {
        let anon = Subject {
            username: None,
            cert_cn: None,
            authenticator: "anonymous",
            ..DEVICE
        };
        let cases: &[(Who, bool, bool)] = &[
            (Who::All, true, true),
            (Who::Anonymous, false, true),
            (Who::Username("alice".into()), true, false),
            (Who::Username("bob".into()), false, false),
            (Who::ClientId("c1".into()), true, true),
            (Who::ClientId("c2".into()), false, false),
            (Who::Listener("mqtt".into()), true, true),
            (Who::Listener("ws".into()), false, false),
            (Who::Authenticator("users".into()), true, false),
            (Who::Authenticator("anonymous".into()), false, true),
            (Who::Any(vec![]), false, false),
            (Who::Any(vec![Who::Username("bob".into()), Who::Anonymous]), false, true),
            (
                Who::Any(vec![Who::Listener("ws".into()), Who::Username("alice".into())]),
                true,
                false,
            ),
        ];
        for (who, device, anonymous) in cases {
            assert_eq!(who.includes(&DEVICE), *device, "{who:?} device");
            assert_eq!(who.includes(&anon), *anonymous, "{who:?} anonymous");
            let acl = Acl::new(
                vec![rule(Permission::Allow, who.clone(), Action::All, &["#"])],
                Permission::Deny,
            );
            assert_eq!(publish(&acl, &DEVICE, "x"), *device, "{who:?}");
            assert_eq!(publish(&acl, &anon, "x"), *anonymous, "{who:?}");
        }
        // A username rule does not match a client id of the same text.
        let s = Subject {
            client_id: "alice",
            username: None,
            ..DEVICE
        };
        assert!(!Who::Username("alice".into()).includes(&s));
    }

    #[test]
    fn first_matching_rule_wins() {
        let acl = Acl::new(
            vec![
                deny(Action::Publish, &["a/secret"]),
                allow(Action::Publish, &["a/#"]),
                deny(Action::All, &["#"]),
            ],
            Permission::Allow,
        );
        let v = |topic: &str| acl.check(&DEVICE, Request::Publish(&t(topic)));
        assert_eq!(
            v("a/secret"),
            Verdict {
                permission: Permission::Deny,
                rule: Some(0)
            }
        );
        assert_eq!(
            v("a/open"),
            Verdict {
                permission: Permission::Allow,
                rule: Some(1)
            }
        );
        assert_eq!(
            v("b"),
            Verdict {
                permission: Permission::Deny,
                rule: Some(2)
            }
        );
        // Reversed, the broad rule shadows the narrow ones.
        let reversed = Acl::new(acl.rules().iter().rev().cloned().collect(), Permission::Allow);
        assert_eq!(reversed.check(&DEVICE, Request::Publish(&t("a/open"))).rule, Some(0));
        assert!(!publish(&reversed, &DEVICE, "a/open"));
    }

    #[test]
    fn no_match_decides_when_no_rule_matches() {
        let rules = vec![allow(Action::Publish, &["a/#"])];
        for no_match in [Permission::Allow, Permission::Deny] {
            let acl = Acl::new(rules.clone(), no_match);
            assert_eq!(acl.no_match(), no_match);
            let req = Request::Publish(&t("b"));
            assert_eq!(acl.check_rules(&DEVICE, req), None);
            assert_eq!(
                acl.check(&DEVICE, req),
                Verdict {
                    permission: no_match,
                    rule: None
                }
            );
            // A rule for another action does not match either.
            assert_eq!(acl.check(&DEVICE, Request::Subscribe(&f("a/#"))).rule, None);
        }
        assert!(publish(&Acl::allow_all(), &DEVICE, "$SYS/x"));
        assert!(subscribe(&Acl::allow_all(), &DEVICE, "#"));
        assert!(!publish(&Acl::default(), &DEVICE, "x"));
        assert!(Acl::allow_all().rules().is_empty());
    }

    #[test]
    fn actions_select_request_kinds() {
        let kinds = |action: Action| {
            let acl = Acl::new(vec![allow(action, &["a/#"])], Permission::Deny);
            (
                publish(&acl, &DEVICE, "a/b"),
                subscribe(&acl, &DEVICE, "a/b"),
                retained(&acl, &DEVICE, "a/b"),
            )
        };
        assert_eq!(kinds(Action::Publish), (true, false, false));
        assert_eq!(kinds(Action::Subscribe), (false, true, true));
        assert_eq!(kinds(Action::RetainedRead), (false, false, true));
        assert_eq!(kinds(Action::All), (true, true, true));
    }

    #[test]
    fn retained_rules_filter_what_a_subscriber_receives() {
        let acl = Acl::new(
            vec![
                deny(Action::RetainedRead, &["a/private/#"]),
                allow(Action::All, &["a/#"]),
            ],
            Permission::Deny,
        );
        assert!(subscribe(&acl, &DEVICE, "a/#"));
        assert!(retained(&acl, &DEVICE, "a/public"));
        assert!(!retained(&acl, &DEVICE, "a/private/x"));
        assert!(publish(&acl, &DEVICE, "a/private/x"));
    }

    #[test]
    fn subscribe_allow_needs_cover_deny_needs_overlap() {
        let acl = Acl::new(vec![allow(Action::Subscribe, &["a/#", "b/+"])], Permission::Deny);
        for (filter, ok) in [
            ("a/#", true),
            ("a/+/c", true),
            ("a", true),
            ("b/x", true),
            ("b/+", true),
            ("b/#", false),
            ("b", false),
            ("#", false),
            ("+/x", false),
        ] {
            assert_eq!(subscribe(&acl, &DEVICE, filter), ok, "{filter}");
        }
        let acl = Acl::new(
            vec![
                deny(Action::Subscribe, &["a/secret/#"]),
                allow(Action::Subscribe, &["#"]),
            ],
            Permission::Deny,
        );
        for (filter, ok) in [
            ("#", false),
            ("a/#", false),
            ("a/+/x", false),
            ("+/secret", false),
            ("a/secret", false),
            ("a/public/#", true),
            ("b/#", true),
            ("+/public", true),
        ] {
            assert_eq!(subscribe(&acl, &DEVICE, filter), ok, "{filter}");
        }
    }

    #[test]
    fn eq_templates_are_literal() {
        let acl = Acl::new(vec![allow(Action::All, &["eq a/#", "eq b/c"])], Permission::Deny);
        assert!(subscribe(&acl, &DEVICE, "a/#"));
        assert!(!subscribe(&acl, &DEVICE, "a/+"));
        assert!(!subscribe(&acl, &DEVICE, "a/b"));
        assert!(!publish(&acl, &DEVICE, "a/b"));
        assert!(publish(&acl, &DEVICE, "b/c"));
        assert!(retained(&acl, &DEVICE, "b/c"));
        assert!(!publish(&acl, &DEVICE, "b/c/d"));
        assert!(subscribe(&acl, &DEVICE, "$share/g/a/#"));
        // A deny `eq` refuses exactly its text, not what overlaps it.
        let acl = Acl::new(
            vec![deny(Action::Subscribe, &["eq #"]), allow(Action::Subscribe, &["#"])],
            Permission::Deny,
        );
        assert!(!subscribe(&acl, &DEVICE, "#"));
        assert!(!subscribe(&acl, &DEVICE, "$share/g/#"));
        assert!(subscribe(&acl, &DEVICE, "a/#"));
    }

    #[test]
    fn shared_subscriptions_are_judged_on_their_filter() {
        let acl = Acl::new(
            vec![
                deny(Action::Subscribe, &["secret/#"]),
                allow(Action::Subscribe, &["jobs/${clientid}/#", "work/+"]),
            ],
            Permission::Deny,
        );
        assert!(subscribe(&acl, &DEVICE, "$share/g/jobs/c1/#"));
        assert!(subscribe(&acl, &DEVICE, "$share/other/work/x"));
        assert!(!subscribe(&acl, &DEVICE, "$share/g/jobs/c2/#"));
        assert!(!subscribe(&acl, &DEVICE, "$share/g/#"));
        assert!(!subscribe(&acl, &DEVICE, "$share/g/secret/x"));
        // The group name is not a level of the filter.
        assert!(!subscribe(&acl, &DEVICE, "$share/jobs/c1/#"));
    }

    #[test]
    fn sys_topics_need_rules_that_name_them() {
        let acl = Acl::new(
            vec![
                rule(
                    Permission::Allow,
                    Who::Username("monitor".into()),
                    Action::All,
                    &["$SYS/#"],
                ),
                allow(Action::All, &["#", "+/#"]),
            ],
            Permission::Deny,
        );
        let monitor = Subject {
            username: Some("monitor"),
            ..DEVICE
        };
        assert!(!publish(&acl, &DEVICE, "$SYS/broker/uptime"));
        assert!(!retained(&acl, &DEVICE, "$SYS/broker/uptime"));
        assert!(!subscribe(&acl, &DEVICE, "$SYS/#"));
        assert!(!subscribe(&acl, &DEVICE, "$SYS/+/uptime"));
        assert!(subscribe(&acl, &DEVICE, "#"), "# itself never delivers $SYS topics");
        assert!(publish(&acl, &DEVICE, "a/$SYS"));
        assert!(publish(&acl, &monitor, "$SYS/broker/uptime"));
        assert!(subscribe(&acl, &monitor, "$SYS/+/uptime"));
        assert!(subscribe(&acl, &monitor, "$SYS"));
        // A deny `#` does not reach `$SYS` either.
        let acl = Acl::new(
            vec![deny(Action::All, &["#"]), allow(Action::All, &["$SYS/#"])],
            Permission::Deny,
        );
        assert!(subscribe(&acl, &DEVICE, "$SYS/#"));
        assert!(publish(&acl, &DEVICE, "$SYS/x"));
        assert!(!publish(&acl, &DEVICE, "x"));
    }

    #[test]
    fn per_token_acl_falls_through_to_the_configured_one() {
        let token = Acl::new(vec![deny(Action::Publish, &["a/#"])], Permission::Allow);
        let configured = Acl::allow_all();
        let decide = |topic: &str| {
            let req = Request::Publish(&t(topic));
            token
                .check_rules(&DEVICE, req)
                .unwrap_or_else(|| configured.check(&DEVICE, req))
        };
        assert!(!decide("a/x").is_allowed());
        assert!(decide("b").is_allowed());
    }

    #[test]
    fn subject_from_identity() {
        let identity = Identity {
            username: Some(Arc::from("alice")),
            cert_cn: Some(Arc::from("dev1.example")),
            authenticator: Arc::from("users"),
            ..Identity::default()
        };
        assert_eq!(Subject::from_identity(&identity, "c1", "mqtt"), DEVICE);
        let anon = Identity::anonymous(None);
        let s = Subject::from_identity(&anon, "c", "mqtt");
        assert!(Who::Anonymous.includes(&s));
        assert_eq!(s.username, None);
    }

    #[test]
    fn rule_matches_on_its_own() {
        let r = allow(Action::Publish, &["d/${clientid}"]);
        assert!(r.matches(&DEVICE, Request::Publish(&t("d/c1"))));
        assert!(!r.matches(&DEVICE, Request::Publish(&t("d/c2"))));
        assert!(!r.matches(&DEVICE, Request::Subscribe(&f("d/c1"))));
    }

    #[test]
    fn from_config_names_the_bad_rule() {
        let rule = |topics: &[&str], who: Who| RuleConfig {
            permission: Permission::Allow,
            who,
            action: Action::All,
            topics: topics.iter().map(|s| s.to_string()).collect(),
        };
        let config = AclConfig {
            no_match: Permission::Allow,
            rules: vec![rule(&["a/#"], Who::All), rule(&["b", "c/#/d"], Who::All)],
        };
        let err = Acl::from_config(&config).unwrap_err();
        assert_eq!(
            err,
            AclError::Template {
                rule: 1,
                topic: 1,
                template: "c/#/d".into(),
                reason: TemplateError::InvalidFilter(unigate_pubsub::TopicError::InvalidWildcard),
            }
        );
        let msg = err.to_string();
        assert!(msg.contains("acl.rules[1].topics[1]") && msg.contains("c/#/d"), "{msg}");
        let config = AclConfig {
            rules: vec![rule(&[], Who::All)],
            ..AclConfig::default()
        };
        assert_eq!(Acl::from_config(&config), Err(AclError::NoTopics { rule: 0 }));
        let config = AclConfig {
            rules: vec![rule(&["a"], Who::All), rule(&["a"], Who::Any(vec![]))],
            ..AclConfig::default()
        };
        assert_eq!(Acl::from_config(&config), Err(AclError::EmptyWho { rule: 1 }));
        let ok = AclConfig {
            no_match: Permission::Allow,
            rules: vec![rule(&["a/${username}", "eq b"], Who::Anonymous)],
        };
        let acl = Acl::from_config(&ok).unwrap();
        assert_eq!(acl.no_match(), Permission::Allow);
        assert_eq!(acl.rules()[0].topics[1].as_str(), "eq b");
    }

    #[test]
    fn displays() {
        assert_eq!(Permission::Allow.to_string(), "allow");
        assert_eq!(Permission::Deny.to_string(), "deny");
        assert_eq!(Placeholder::CertCn.to_string(), "${cert_cn}");
    }
}
