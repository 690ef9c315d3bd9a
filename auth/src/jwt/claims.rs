//! What a verified token's claims must say: times (`exp`, `nbf`, `iat` with leeway), the
//! configured `claims` checks, the user name claim, and the `acl` claim turned into an [`Acl`].

use std::fmt;
use std::sync::Arc;

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::acl::{Acl, AclConfig, AclError, Action, Permission, RuleConfig, Who};
use crate::{Credentials, DenyReason};

/// One `claims = { NAME = … }` check: the claim must equal the text (or one of a list of texts).
///
/// A text may use `${clientid}` and `${username}`, replaced by the client id and user name the
/// client presented (`sub = "${clientid}"` binds the token to one client id). A claim that is a
/// list (like `aud`) passes when one of its members equals; a number or boolean compares as its
/// JSON text.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "RawRule")]
pub struct ClaimRule {
    alternatives: Vec<ClaimTemplate>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawRule {
    One(String),
    Any(Vec<String>),
}

impl TryFrom<RawRule> for ClaimRule {
    type Error = String;

    fn try_from(raw: RawRule) -> Result<ClaimRule, String> {
        let texts = match raw {
            RawRule::One(t) => vec![t],
            RawRule::Any(ts) => ts,
        };
        if texts.is_empty() {
            return Err("an empty list could never match".to_string());
        }
        let alternatives = texts
            .iter()
            .map(|t| ClaimTemplate::parse(t))
            .collect::<Result<_, _>>()?;
        Ok(ClaimRule { alternatives })
    }
}

impl ClaimRule {
    /// A rule from one text (placeholders allowed).
    ///
    /// # Errors
    ///
    /// An unknown or unterminated placeholder.
    pub fn parse(text: &str) -> Result<ClaimRule, String> {
        ClaimRule::try_from(RawRule::One(text.to_string()))
    }

    /// Whether it binds the claim to the client (uses a placeholder): a mismatch is then
    /// [`DenyReason::NotAuthorized`] rather than [`DenyReason::BadCredentials`].
    #[must_use]
    pub fn binds(&self) -> bool {
        self.alternatives
            .iter()
            .any(|t| t.parts.iter().any(|p| !matches!(p, Part::Text(_))))
    }

    /// Whether `value` passes for a client presenting `creds`.
    pub(crate) fn accepts(&self, value: &Value, creds: &Credentials) -> bool {
        self.alternatives
            .iter()
            .filter_map(|t| t.expand(creds))
            .any(|expected| claim_equals(value, &expected))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct ClaimTemplate {
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    ClientId,
    Username,
}

impl ClaimTemplate {
    fn parse(text: &str) -> Result<ClaimTemplate, String> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(start) = rest.find("${") {
            if start > 0 {
                parts.push(Part::Text(rest[..start].to_string()));
            }
            let after = &rest[start + 2..];
            let Some(end) = after.find('}') else {
                return Err(format!("'${{' without a closing '}}' in {text:?}"));
            };
            parts.push(match &after[..end] {
                "clientid" => Part::ClientId,
                "username" => Part::Username,
                other => {
                    return Err(format!(
                        "unknown placeholder ${{{other}}}: expected ${{clientid}} or ${{username}}"
                    ))
                }
            });
            rest = &after[end + 1..];
        }
        if !rest.is_empty() || parts.is_empty() {
            parts.push(Part::Text(rest.to_string()));
        }
        Ok(ClaimTemplate { parts })
    }

    /// The expected text for `creds`; `None` when a value it uses is missing or empty (so it
    /// matches nothing).
    fn expand(&self, creds: &Credentials) -> Option<String> {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Text(t) => out.push_str(t),
                Part::ClientId => out.push_str(creds.client_id.as_deref().filter(|v| !v.is_empty())?),
                Part::Username => out.push_str(creds.username.as_deref().filter(|v| !v.is_empty())?),
            }
        }
        Some(out)
    }
}

/// RFC 7519 claim comparison: strings exactly, a list when one member equals (§4.1.3 `aud`),
/// numbers and booleans by their JSON text.
fn claim_equals(value: &Value, expected: &str) -> bool {
    match value {
        Value::String(s) => s == expected,
        Value::Array(items) => items.iter().any(|i| matches!(i, Value::String(s) if s == expected)),
        Value::Number(n) => n.to_string() == expected,
        Value::Bool(b) => b.to_string() == expected,
        Value::Null | Value::Object(_) => false,
    }
}

/// The checks of one authenticator, applied to a token whose signature verified.
#[derive(Debug)]
pub(crate) struct ClaimPolicy {
    pub(crate) leeway: f64,
    pub(crate) require_exp: bool,
    pub(crate) rules: Vec<(String, ClaimRule)>,
    pub(crate) username_claim: Option<String>,
    pub(crate) acl_claim: Option<String>,
}

/// What a token that passed says about its holder.
#[derive(Debug)]
pub(crate) struct Passed {
    /// The user name claim, when configured.
    pub(crate) username: Option<String>,
    /// The `acl` claim, compiled.
    pub(crate) acl: Option<Arc<Acl>>,
}

/// Why a token's claims are refused: the reason for the client, and a short text for the debug
/// log (never a claim's value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refused {
    pub(crate) reason: DenyReason,
    pub(crate) why: String,
}

fn refuse(reason: DenyReason, why: impl Into<String>) -> Refused {
    Refused {
        reason,
        why: why.into(),
    }
}

/// A NumericDate claim (RFC 7519 §2): absent, or a finite number of seconds.
fn numeric_date(claims: &Map<String, Value>, name: &str) -> Result<Option<f64>, Refused> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::Number(n)) => match n.as_f64() {
            Some(v) if v.is_finite() => Ok(Some(v)),
            _ => Err(refuse(
                DenyReason::BadCredentials,
                format!("`{name}` is not a NumericDate"),
            )),
        },
        Some(_) => Err(refuse(
            DenyReason::BadCredentials,
            format!("`{name}` is not a NumericDate"),
        )),
    }
}

impl ClaimPolicy {
    /// Applies every check to `claims` at `now` (seconds since the epoch).
    pub(crate) fn check(&self, claims: &Map<String, Value>, creds: &Credentials, now: f64) -> Result<Passed, Refused> {
        // RFC 7519 §4.1.4: the token must not be accepted on or after `exp` (plus leeway).
        match numeric_date(claims, "exp")? {
            Some(exp) if now >= exp + self.leeway => return Err(refuse(DenyReason::Expired, "expired")),
            None if self.require_exp => return Err(refuse(DenyReason::BadCredentials, "no `exp`")),
            _ => {}
        }
        // §4.1.5: not before `nbf` (minus leeway).
        if let Some(nbf) = numeric_date(claims, "nbf")? {
            if now + self.leeway < nbf {
                return Err(refuse(DenyReason::BadCredentials, "not valid yet (`nbf`)"));
            }
        }
        // §4.1.6 only informs; a token issued in the future is a clock or forgery problem.
        if let Some(iat) = numeric_date(claims, "iat")? {
            if iat > now + self.leeway {
                return Err(refuse(DenyReason::BadCredentials, "issued in the future (`iat`)"));
            }
        }
        for (name, rule) in &self.rules {
            let Some(value) = claims.get(name) else {
                return Err(refuse(DenyReason::BadCredentials, format!("no `{name}` claim")));
            };
            if !rule.accepts(value, creds) {
                let reason = if rule.binds() {
                    DenyReason::NotAuthorized
                } else {
                    DenyReason::BadCredentials
                };
                return Err(refuse(reason, format!("`{name}` does not match")));
            }
        }
        let username = match &self.username_claim {
            None => None,
            Some(name) => match claims.get(name) {
                Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
                _ => {
                    return Err(refuse(
                        DenyReason::BadCredentials,
                        format!("the user name claim `{name}` is missing or not a non-empty string"),
                    ))
                }
            },
        };
        let acl = match self.acl_claim.as_deref().and_then(|name| claims.get(name)) {
            None | Some(Value::Null) => None,
            Some(value) => match acl_from_claim(value) {
                Ok(acl) => Some(Arc::new(acl)),
                Err(e) => return Err(refuse(DenyReason::BadCredentials, format!("malformed acl claim: {e}"))),
            },
        };
        Ok(Passed { username, acl })
    }
}

/// Why an `acl` claim does not compile.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AclClaimError {
    /// Neither an object (`{"pub": […], "sub": […], "all": […]}`) nor a list of rules.
    #[error("expected an object with pub/sub/all lists or a list of rules")]
    Shape,
    /// A member of the object form that is not `pub`, `sub` or `all`, or not a list of strings.
    #[error("object form: {0}")]
    Object(String),
    /// A rule of the list form that does not parse (missing or unknown field, bad value).
    #[error("rule {index}: {reason}")]
    Rule {
        /// Its index in the list.
        index: usize,
        /// What is wrong.
        reason: String,
    },
    /// A topic that is not a valid template.
    #[error(transparent)]
    Acl(#[from] AclError),
}

/// One rule of the list form (EMQX's): `{"permission": "allow", "action": "publish", "topic": "t/1"}`
/// or with `"topics": [..]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListRule {
    permission: Permission,
    action: Action,
    #[serde(default)]
    topic: Option<String>,
    #[serde(default)]
    topics: Option<Vec<String>>,
}

/// Compiles a token's `acl` claim into an [`Acl`] (its `no_match` is deny, but the server asks
/// [`Acl::check_rules`], so requests no rule matches fall through to the configured ACL).
///
/// Two shapes are accepted (those of EMQX):
///
/// - an object `{"pub": [topics], "sub": [topics], "all": [topics]}`: allow rules for publish,
///   subscribe (and the retained reads it brings) and both; each member optional;
/// - a list of rules `[{"permission": "allow" | "deny", "action": "publish" | "subscribe" |
///   "retained" | "all", "topic": "t/1"}]`, with `"topics": [..]` instead of `"topic"` allowed,
///   tried in order.
///
/// Topics are ACL templates: filters with `${clientid}`, `${username}`, `${cert_cn}`, or
/// `eq …`. Fields other than these (EMQX's `qos`, `retain`) are refused rather than ignored, so
/// that a rule never grants more than it says.
///
/// # Errors
///
/// [`AclClaimError`]: the server denies the client (bad credentials).
pub fn acl_from_claim(value: &Value) -> Result<Acl, AclClaimError> {
    let rules = match value {
        Value::Object(map) => object_rules(map)?,
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(index, item)| list_rule(index, item))
            .collect::<Result<_, _>>()?,
        _ => return Err(AclClaimError::Shape),
    };
    Ok(Acl::from_config(&AclConfig {
        no_match: Permission::Deny,
        rules,
    })?)
}

fn object_rules(map: &Map<String, Value>) -> Result<Vec<RuleConfig>, AclClaimError> {
    let mut rules = Vec::new();
    for (key, value) in map {
        let action = match key.as_str() {
            "pub" => Action::Publish,
            "sub" => Action::Subscribe,
            "all" => Action::All,
            other => return Err(AclClaimError::Object(format!("unknown member {other:?}"))),
        };
        let topics = Vec::<String>::deserialize(value)
            .map_err(|_| AclClaimError::Object(format!("{key:?} is not a list of strings")))?;
        if topics.is_empty() {
            continue;
        }
        rules.push(RuleConfig {
            permission: Permission::Allow,
            who: Who::All,
            action,
            topics,
        });
    }
    Ok(rules)
}

fn list_rule(index: usize, item: &Value) -> Result<RuleConfig, AclClaimError> {
    let bad = |reason: String| AclClaimError::Rule { index, reason };
    let rule = ListRule::deserialize(item).map_err(|e| bad(e.to_string()))?;
    let topics = match (rule.topic, rule.topics) {
        (Some(t), None) => vec![t],
        (None, Some(ts)) if !ts.is_empty() => ts,
        (None, Some(_)) => return Err(bad("`topics` is empty".into())),
        (None, None) => return Err(bad("no `topic` or `topics`".into())),
        (Some(_), Some(_)) => return Err(bad("both `topic` and `topics`".into())),
    };
    Ok(RuleConfig {
        permission: rule.permission,
        who: Who::All,
        action: rule.action,
        topics,
    })
}

impl fmt::Display for ClaimRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, t) in self.alternatives.iter().enumerate() {
            if i > 0 {
                f.write_str(" | ")?;
            }
            for p in &t.parts {
                match p {
                    Part::Text(s) => f.write_str(s)?,
                    Part::ClientId => f.write_str("${clientid}")?,
                    Part::Username => f.write_str("${username}")?,
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use serde_json::json;
    use unigate_pubsub::{Topic, TopicFilter};

    use super::*;
    use crate::acl::{Request, Subject};
    use crate::Protocol;

    fn creds(client_id: Option<&str>, username: Option<&str>) -> Credentials {
        Credentials {
            client_id: client_id.map(str::to_string),
            username: username.map(str::to_string),
            ..Credentials::new(Protocol::Mqtt, "l")
        }
    }

    #[test]
    fn templates_parse_and_expand() {
        let r = ClaimRule::parse("dev:${clientid}/${username}").unwrap();
        assert!(r.binds());
        assert_eq!(r.to_string(), "dev:${clientid}/${username}");
        assert!(r.accepts(&json!("dev:c1/alice"), &creds(Some("c1"), Some("alice"))));
        assert!(!r.accepts(&json!("dev:c1/alice"), &creds(Some("c1"), None)));
        assert!(!r.accepts(&json!("dev:c1/"), &creds(Some("c1"), Some(""))));
        let lit = ClaimRule::parse("unigate").unwrap();
        assert!(!lit.binds());
        assert!(lit.accepts(&json!(["other", "unigate"]), &creds(None, None)));
        assert!(!lit.accepts(&json!({"unigate": 1}), &creds(None, None)));
        assert!(ClaimRule::parse("42").unwrap().accepts(&json!(42), &creds(None, None)));
        assert!(ClaimRule::parse("").unwrap().accepts(&json!(""), &creds(None, None)));
        assert!(ClaimRule::parse("${client_id}")
            .unwrap_err()
            .contains("unknown placeholder"));
        assert!(ClaimRule::parse("a${clientid").unwrap_err().contains("closing"));
    }

    #[test]
    fn rules_deserialize_from_text_or_list() {
        #[derive(Deserialize)]
        struct Doc {
            r: ClaimRule,
        }
        let one: Doc = toml::from_str("r = \"a\"").unwrap();
        assert_eq!(one.r, ClaimRule::parse("a").unwrap());
        let any: Doc = toml::from_str("r = [\"a\", \"${clientid}\"]").unwrap();
        assert!(any.r.binds());
        assert!(any.r.accepts(&json!("c9"), &creds(Some("c9"), None)));
        assert!(toml::from_str::<Doc>("r = []").is_err());
        assert!(toml::from_str::<Doc>("r = 3").is_err());
    }

    fn policy() -> ClaimPolicy {
        ClaimPolicy {
            leeway: 30.0,
            require_exp: true,
            rules: vec![
                ("iss".into(), ClaimRule::parse("me").unwrap()),
                ("sub".into(), ClaimRule::parse("${clientid}").unwrap()),
            ],
            username_claim: Some("name".into()),
            acl_claim: Some("acl".into()),
        }
    }

    fn claims(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => panic!(),
        }
    }

    #[test]
    fn times_and_rules() {
        let p = policy();
        let c = creds(Some("c1"), Some("u"));
        let ok = |extra: Value| {
            let mut m = claims(json!({"iss": "me", "sub": "c1", "name": "n", "exp": 1000}));
            m.extend(claims(extra));
            p.check(&m, &c, 1000.0).map(|_| ()).map_err(|r| r.reason)
        };
        assert_eq!(ok(json!({})), Ok(()), "exp within leeway");
        assert_eq!(ok(json!({"exp": 970})), Err(DenyReason::Expired));
        assert_eq!(ok(json!({"exp": 970.5})), Ok(()));
        assert_eq!(ok(json!({"exp": "2000"})), Err(DenyReason::BadCredentials));
        assert_eq!(ok(json!({"nbf": 1029})), Ok(()));
        assert_eq!(ok(json!({"nbf": 1031})), Err(DenyReason::BadCredentials));
        assert_eq!(ok(json!({"iat": 1031})), Err(DenyReason::BadCredentials));
        assert_eq!(ok(json!({"iss": "you"})), Err(DenyReason::BadCredentials));
        assert_eq!(ok(json!({"sub": "c2"})), Err(DenyReason::NotAuthorized));
        assert_eq!(ok(json!({"name": 3})), Err(DenyReason::BadCredentials));
        assert_eq!(ok(json!({"acl": 3})), Err(DenyReason::BadCredentials));
        assert_eq!(ok(json!({"acl": null})), Ok(()));
        let mut no_exp = claims(json!({"iss": "me", "sub": "c1", "name": "n"}));
        assert_eq!(
            p.check(&no_exp, &c, 0.0).unwrap_err().reason,
            DenyReason::BadCredentials
        );
        no_exp.remove("iss");
        let lax = ClaimPolicy {
            require_exp: false,
            rules: vec![],
            ..policy()
        };
        let passed = lax.check(&no_exp, &c, 0.0).unwrap();
        assert_eq!(passed.username.as_deref(), Some("n"));
        assert!(passed.acl.is_none());
    }

    const DEVICE: Subject<'static> = Subject {
        client_id: "c1",
        username: Some("alice"),
        cert_cn: None,
        listener: "l",
        authenticator: "jwt",
    };

    fn publish(acl: &Acl, topic: &str) -> Option<bool> {
        acl.check_rules(&DEVICE, Request::Publish(&Topic::new(topic).unwrap()))
            .map(|v| v.is_allowed())
    }

    fn subscribe(acl: &Acl, filter: &str) -> Option<bool> {
        acl.check_rules(&DEVICE, Request::Subscribe(&TopicFilter::new(filter).unwrap()))
            .map(|v| v.is_allowed())
    }

    #[test]
    fn acl_object_form() {
        let acl = acl_from_claim(&json!({"pub": ["up/${clientid}"], "sub": ["down/#"], "all": ["both"]})).unwrap();
        assert_eq!(publish(&acl, "up/c1"), Some(true));
        assert_eq!(publish(&acl, "up/c2"), None);
        assert_eq!(subscribe(&acl, "down/x"), Some(true));
        assert_eq!(publish(&acl, "down/x"), None);
        assert_eq!(publish(&acl, "both"), Some(true));
        assert_eq!(subscribe(&acl, "both"), Some(true));
        assert!(acl_from_claim(&json!({})).unwrap().rules().is_empty());
        assert!(acl_from_claim(&json!({"pub": []})).unwrap().rules().is_empty());
        for bad in [
            json!({"publish": ["a"]}),
            json!({"pub": "a"}),
            json!({"pub": [1]}),
            json!({"pub": ["a/#/b"]}),
            json!("pub"),
            json!(1),
        ] {
            assert!(acl_from_claim(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn acl_list_form() {
        let acl = acl_from_claim(&json!([
            {"permission": "deny", "action": "publish", "topic": "t/secret"},
            {"permission": "allow", "action": "all", "topics": ["t/#", "u/${username}"]},
        ]))
        .unwrap();
        assert_eq!(publish(&acl, "t/secret"), Some(false));
        assert_eq!(publish(&acl, "t/1"), Some(true));
        assert_eq!(subscribe(&acl, "u/alice"), Some(true));
        assert_eq!(publish(&acl, "v"), None);
        for bad in [
            json!([{"permission": "allow", "action": "publish"}]),
            json!([{"permission": "allow", "action": "publish", "topic": "a", "topics": ["b"]}]),
            json!([{"permission": "allow", "action": "publish", "topics": []}]),
            json!([{"permission": "allow", "action": "publish", "topic": "a", "qos": [0]}]),
            json!([{"permission": "maybe", "action": "publish", "topic": "a"}]),
            json!([{"permission": "allow", "action": "read", "topic": "a"}]),
            json!([{"permission": "allow", "action": "publish", "topic": "${nope}"}]),
            json!(["a"]),
        ] {
            assert!(acl_from_claim(&bad).is_err(), "{bad}");
        }
        assert!(matches!(
            acl_from_claim(&json!([{}, {"permission": "allow"}])),
            Err(AclClaimError::Rule { index: 0, .. })
        ));
    }
}
