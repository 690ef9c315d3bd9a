//! The `[acl]` section of the server configuration, and how `who` is written in it.
//!
//! ```toml
//! [acl]
//! no_match = "deny"           # when no rule matches (the default)
//! [[acl.rules]]               # first match wins
//! permission = "allow"        # allow | deny
//! who = "all"                 # all | anonymous | { username = "…" } | { clientid = "…" }
//!                             # | { listener = "…" } | { authenticator = "…" } | [ any of those ]
//! action = "all"              # publish | subscribe | retained | all
//! topics = ["devices/${clientid}/#", "eq status/#"]
//! ```
//!
//! The same shape deserializes from JSON (a token's `acl` claim) with any serde format that
//! supports `deserialize_any`.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};

use super::{Action, Permission, Who};

/// The `[acl]` section: ordered rules and what to do when none matches.
///
/// Compile it with [`Acl::from_config`](super::Acl::from_config), which checks the templates.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AclConfig {
    /// The permission when no rule matches; `deny` when absent.
    #[serde(default)]
    pub no_match: Permission,
    /// The rules, in order: the first one that matches decides.
    #[serde(default)]
    pub rules: Vec<RuleConfig>,
}

/// One `[[acl.rules]]` entry, its topics still text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// `allow` or `deny`.
    pub permission: Permission,
    /// Which clients the rule is about.
    pub who: Who,
    /// Which requests the rule is about.
    pub action: Action,
    /// Topic templates (see [`TopicTemplate`](super::TopicTemplate)); the rule matches when any
    /// of them applies.
    pub topics: Vec<String>,
}

const WHO_KEYS: &[&str] = &["username", "clientid", "listener", "authenticator"];

impl<'de> Deserialize<'de> for Who {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Who, D::Error> {
        deserializer.deserialize_any(WhoVisitor { in_list: false })
    }
}

/// Reads a `who`; inside a list, a nested list is refused (one level of "any of" is enough,
/// and it keeps the meaning of a configuration obvious).
#[derive(Clone, Copy)]
struct WhoVisitor {
    in_list: bool,
}

impl<'de> DeserializeSeed<'de> for WhoVisitor {
    type Value = Who;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Who, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for WhoVisitor {
    type Value = Who;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(
            "\"all\", \"anonymous\", a table with one of username, clientid, listener or \
             authenticator, or a list of those",
        )
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Who, E> {
        match v {
            "all" => Ok(Who::All),
            "anonymous" => Ok(Who::Anonymous),
            other => Err(E::unknown_variant(other, &["all", "anonymous"])),
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Who, A::Error> {
        let Some(key) = map.next_key::<String>()? else {
            return Err(de::Error::invalid_length(0, &"a table with exactly one key"));
        };
        let value: String = map.next_value()?;
        let who = match key.as_str() {
            "username" => Who::Username(value),
            "clientid" => Who::ClientId(value),
            "listener" => Who::Listener(value),
            "authenticator" => Who::Authenticator(value),
            other => return Err(de::Error::unknown_field(other, WHO_KEYS)),
        };
        if let Some(extra) = map.next_key::<String>()? {
            return Err(de::Error::custom(format_args!(
                "a `who` table has exactly one key, found {key:?} and {extra:?}: write a list \
                 for \"any of\""
            )));
        }
        Ok(who)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Who, A::Error> {
        if self.in_list {
            return Err(de::Error::custom("`who` lists cannot be nested"));
        }
        let mut any = Vec::new();
        while let Some(who) = seq.next_element_seed(WhoVisitor { in_list: true })? {
            any.push(who);
        }
        Ok(Who::Any(any))
    }
}

impl Serialize for Who {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let (key, value) = match self {
            Who::All => return serializer.serialize_str("all"),
            Who::Anonymous => return serializer.serialize_str("anonymous"),
            Who::Any(any) => return any.serialize(serializer),
            Who::Username(v) => ("username", v),
            Who::ClientId(v) => ("clientid", v),
            Who::Listener(v) => ("listener", v),
            Who::Authenticator(v) => ("authenticator", v),
        };
        let mut map = serializer.serialize_map(Some(1))?;
        map.serialize_entry(key, value)?;
        map.end()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[derive(Debug, Deserialize)]
    struct Doc {
        acl: AclConfig,
    }

    fn acl(text: &str) -> Result<AclConfig, toml::de::Error> {
        toml::from_str::<Doc>(text).map(|d| d.acl)
    }

    fn who(text: &str) -> Result<Who, String> {
        let doc =
            format!("[acl]\n[[acl.rules]]\npermission = \"allow\"\naction = \"all\"\ntopics = [\"#\"]\nwho = {text}\n");
        acl(&doc).map(|mut c| c.rules.remove(0).who).map_err(|e| e.to_string())
    }

    #[test]
    fn who_forms() {
        assert_eq!(who("\"all\""), Ok(Who::All));
        assert_eq!(who("\"anonymous\""), Ok(Who::Anonymous));
        assert_eq!(who("{ username = \"monitor\" }"), Ok(Who::Username("monitor".into())));
        assert_eq!(who("{ clientid = \"c1\" }"), Ok(Who::ClientId("c1".into())));
        assert_eq!(who("{ listener = \"mqtt\" }"), Ok(Who::Listener("mqtt".into())));
        assert_eq!(
            who("{ authenticator = \"certs\" }"),
            Ok(Who::Authenticator("certs".into()))
        );
        assert_eq!(
            who("[\"anonymous\", { username = \"a\" }, { clientid = \"b\" }]"),
            Ok(Who::Any(vec![
                Who::Anonymous,
                Who::Username("a".into()),
                Who::ClientId("b".into())
            ]))
        );
        assert_eq!(who("[]"), Ok(Who::Any(vec![])));
    }

    #[test]
    fn who_mistakes_are_refused() {
        let err = who("\"everyone\"").unwrap_err();
        assert!(err.contains("everyone") && err.contains("anonymous"), "{err}");
        let err = who("{ user = \"a\" }").unwrap_err();
        assert!(err.contains("user") && err.contains("username"), "{err}");
        let err = who("{ username = \"a\", clientid = \"b\" }").unwrap_err();
        assert!(err.contains("exactly one key"), "{err}");
        assert!(who("{}").is_err());
        let err = who("[[{ username = \"a\" }]]").unwrap_err();
        assert!(err.contains("nested"), "{err}");
        assert!(who("{ username = 3 }").is_err());
        assert!(who("3").is_err());
    }

    #[test]
    fn defaults_and_unknown_fields() {
        assert_eq!(acl("[acl]\n").unwrap(), AclConfig::default());
        assert_eq!(AclConfig::default().no_match, Permission::Deny);
        assert_eq!(
            acl("[acl]\nno_match = \"allow\"\n").unwrap().no_match,
            Permission::Allow
        );
        assert!(acl("[acl]\nno_match = \"maybe\"\n").is_err());
        assert!(acl("[acl]\nnomatch = \"allow\"\n").is_err());
        let rule = "[[acl.rules]]\npermission = \"allow\"\nwho = \"all\"\naction = \"all\"\ntopics = [\"#\"]\n";
        assert!(acl(&format!("[acl]\n{rule}")).is_ok());
        assert!(acl(&format!("[acl]\n{rule}qos = [1]\n")).is_err());
        // Every field of a rule is required: a rule's meaning is never left to a default.
        for field in ["permission", "who", "action", "topics"] {
            let partial: String = rule
                .lines()
                .filter(|l| !l.starts_with(field))
                .map(|l| format!("{l}\n"))
                .collect();
            let err = acl(&format!("[acl]\n{partial}")).unwrap_err().to_string();
            assert!(err.contains(field), "{field}: {err}");
        }
    }

    #[test]
    fn actions_and_permissions() {
        for (text, action) in [
            ("publish", Action::Publish),
            ("subscribe", Action::Subscribe),
            ("retained", Action::RetainedRead),
            ("all", Action::All),
        ] {
            let doc = format!(
                "[acl]\n[[acl.rules]]\npermission = \"deny\"\nwho = \"all\"\naction = \"{text}\"\ntopics = [\"#\"]\n"
            );
            let rule = acl(&doc).unwrap().rules.remove(0);
            assert_eq!((rule.action, rule.permission), (action, Permission::Deny));
        }
        let doc = "[acl]\n[[acl.rules]]\npermission = \"deny\"\nwho = \"all\"\naction = \"read\"\ntopics = [\"#\"]\n";
        assert!(acl(doc).is_err());
    }

    #[test]
    fn serializes_back_to_the_same_config() {
        let config = acl("[acl]\nno_match = \"allow\"\n[[acl.rules]]\npermission = \"deny\"\n\
             who = [\"anonymous\", { listener = \"ws\" }, { authenticator = \"jwt\" }]\n\
             action = \"retained\"\ntopics = [\"a/${username}/#\", \"eq b/+\"]\n")
        .unwrap();
        let text = toml::to_string(&Doc2 { acl: config.clone() }).unwrap();
        assert_eq!(acl(&text).unwrap(), config, "{text}");
    }

    #[derive(Serialize)]
    struct Doc2 {
        acl: AclConfig,
    }
}
