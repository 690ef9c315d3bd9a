//! Black-box tests of the ACL: the `[acl]` example of the design document end to end, and the
//! filter relations ([`covers`], [`overlaps`]) and templates checked against brute force over a
//! small universe of topics.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::OnceLock;

use proptest::prelude::*;
use unigate_auth::acl::{covers, overlaps, Acl, AclConfig, Permission, Request, Subject, TopicTemplate};
use unigate_pubsub::{matches, Topic, TopicFilter};

/// The `[acl]` section of design.md's configuration example, verbatim.
const DESIGN_EXAMPLE: &str = r##"
[acl]
no_match = "deny"           # when no rule matches
[[acl.rules]]               # first match wins
permission = "allow"
who = "all"                 # or { username = "monitor" }, { clientid = "…" }, { listener = "…" }
action = "all"              # publish | subscribe | all
topics = ["devices/${clientid}/#"]
[[acl.rules]]
permission = "allow"
who = { username = "monitor" }
action = "subscribe"
topics = ["#"]
"##;

#[derive(serde::Deserialize)]
struct ServerConfig {
    acl: AclConfig,
}

fn subject<'a>(client_id: &'a str, username: Option<&'a str>) -> Subject<'a> {
    Subject {
        client_id,
        username,
        cert_cn: None,
        listener: "mqtt",
        authenticator: "users",
    }
}

#[test]
fn design_example_parses_and_means_what_it_says() {
    let config = toml::from_str::<ServerConfig>(DESIGN_EXAMPLE).unwrap().acl;
    assert_eq!(config.no_match, Permission::Deny);
    assert_eq!(config.rules.len(), 2);
    let acl = Acl::from_config(&config).unwrap();

    let device = subject("c1", None);
    let monitor = subject("m", Some("monitor"));
    let t = |s: &str| Topic::new(s).unwrap();
    let f = |s: &str| TopicFilter::new(s).unwrap();

    let own = t("devices/c1/temp");
    assert_eq!(acl.check(&device, Request::Publish(&own)).rule, Some(0));
    assert!(acl.check(&device, Request::Publish(&own)).is_allowed());
    assert!(acl.check(&device, Request::Subscribe(&f("devices/c1/#"))).is_allowed());
    assert!(acl.check(&device, Request::RetainedRead(&own)).is_allowed());
    assert!(!acl.check(&device, Request::Publish(&t("devices/c2/temp"))).is_allowed());
    assert!(!acl
        .check(&device, Request::Subscribe(&f("devices/+/temp")))
        .is_allowed());
    assert!(!acl.check(&device, Request::Subscribe(&f("#"))).is_allowed());

    let sub_all = acl.check(&monitor, Request::Subscribe(&f("#")));
    assert_eq!((sub_all.permission, sub_all.rule), (Permission::Allow, Some(1)));
    assert!(!acl
        .check(&monitor, Request::Publish(&t("devices/c1/temp")))
        .is_allowed());
    // `#` does not cover `$SYS` (MQTT 5 §4.7.2), so the monitor needs a rule naming it.
    assert!(!acl.check(&monitor, Request::Subscribe(&f("$SYS/#"))).is_allowed());
    // A `subscribe` rule grants the retained reads of what it allows to subscribe to.
    let verdict = acl.check(&monitor, Request::RetainedRead(&t("devices/c1/temp")));
    assert_eq!((verdict.permission, verdict.rule), (Permission::Allow, Some(1)));
}

#[test]
fn config_errors_name_rule_and_template() {
    let text = DESIGN_EXAMPLE.replace("topics = [\"#\"]", "topics = [\"a/${user}\"]");
    let config = toml::from_str::<ServerConfig>(&text).unwrap().acl;
    let msg = Acl::from_config(&config).unwrap_err().to_string();
    assert!(
        msg.contains("acl.rules[1].topics[0]") && msg.contains("a/${user}"),
        "{msg}"
    );
}

// ---------------------------------------------------------------------------------------------
// Brute force over a small universe.

/// Levels filters are built from: a literal, an empty level, a `$` level, and the wildcards.
const FILTER_LEVELS: [&str; 5] = ["a", "", "$x", "+", "#"];
/// Levels topics are built from: those of the filters, and one that no filter names (so that a
/// `+` or `#` always has a level only it matches).
const TOPIC_LEVELS: [&str; 4] = ["a", "", "$x", "z"];

/// Every valid filter of 1 to `max` levels over [`FILTER_LEVELS`].
fn all_filters(max: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut partial: Vec<Vec<&str>> = vec![vec![]];
    for _ in 0..max {
        let mut next = Vec::new();
        for p in &partial {
            for level in FILTER_LEVELS {
                let mut q = p.clone();
                q.push(level);
                let text = q.join("/");
                if TopicFilter::new(&text).is_ok() {
                    out.push(text);
                }
                if level != "#" {
                    next.push(q);
                }
            }
        }
        partial = next;
    }
    out
}

/// Every valid topic of 1 to `max` levels over `levels`.
fn all_topics(levels: &[&str], max: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut partial = vec![String::new()];
    for depth in 0..max {
        let mut next = Vec::new();
        for p in &partial {
            for level in levels {
                let text = if depth == 0 {
                    (*level).to_owned()
                } else {
                    format!("{p}/{level}")
                };
                next.push(text);
            }
        }
        out.extend(next.iter().filter(|t| Topic::new(t).is_ok()).cloned());
        partial = next;
    }
    out
}

/// Topics of up to 4 levels: one more than the filters, enough to tell `a/#` from `a/+`.
fn universe() -> &'static [String] {
    static U: OnceLock<Vec<String>> = OnceLock::new();
    U.get_or_init(|| all_topics(&TOPIC_LEVELS, 4))
}

#[test]
fn universe_is_what_we_think() {
    assert_eq!(universe().len(), 4 + 16 + 64 + 256 - 1, "all but the empty topic");
    assert!(universe().iter().any(|t| t == "$x/z//a"));
    assert_eq!(all_filters(3).len(), 104, "5 + 4*5 + 4*4*5 minus the empty filter");
}

/// Exhaustive over every pair of filters of up to 3 levels: `covers` and `overlaps` are sound
/// (what security rests on) over real topics, and exact (no needless refusal) if the empty string
/// counted as a topic, which is the only slack they have (see `covers`).
#[test]
fn covers_and_overlaps_agree_with_brute_force_exhaustively() {
    let filters = all_filters(3);
    let u = universe();
    let sets: Vec<Vec<bool>> = filters
        .iter()
        .map(|f| u.iter().map(|t| matches(f, t)).collect())
        .collect();
    let mut slack = Vec::new();
    for (a, ma) in filters.iter().zip(&sets) {
        for (b, mb) in filters.iter().zip(&sets) {
            let counterexample = u.iter().zip(ma.iter().zip(mb)).find(|(_, (ia, ib))| **ib && !**ia);
            let common = u.iter().zip(ma.iter().zip(mb)).find(|(_, (ia, ib))| **ia && **ib);
            let empty_tells = matches(b, "") && !matches(a, "");
            let empty_common = matches(a, "") && matches(b, "");
            if covers(a, b) {
                assert_eq!(
                    counterexample, None,
                    "covers({a:?}, {b:?}) but this topic matches only {b:?}"
                );
            } else {
                assert!(
                    counterexample.is_some() || empty_tells,
                    "!covers({a:?}, {b:?}) but no topic tells them apart"
                );
                if counterexample.is_none() {
                    slack.push(format!("!covers({a}, {b})"));
                }
            }
            if overlaps(a, b) {
                assert!(
                    common.is_some() || empty_common,
                    "overlaps({a:?}, {b:?}) but no topic matches both"
                );
                if common.is_none() {
                    slack.push(format!("overlaps({a}, {b})"));
                }
            } else {
                assert_eq!(common, None, "!overlaps({a:?}, {b:?}) but this topic matches both");
            }
        }
        // A topic is a filter that matches itself only.
        for t in u {
            assert_eq!(covers(a, t), matches(a, t), "covers({a:?}, {t:?})");
        }
    }
    // The slack is exactly the documented pairs, each a refusal rather than an allowance.
    slack.sort();
    assert_eq!(
        slack,
        [
            "!covers(+/+/#, /#)",
            "!covers(/+/#, /#)",
            "overlaps(+, /#)",
            "overlaps(/#, +)"
        ]
    );
}

/// Larger filters than the exhaustive test reaches, from a wider alphabet.
fn filter_strategy() -> impl Strategy<Value = String> {
    let level = prop::sample::select(vec!["a", "b", "", "$x", "+"]);
    (prop::collection::vec(level, 0..6), any::<bool>())
        .prop_map(|(levels, hash)| {
            let mut levels: Vec<&str> = levels;
            if hash || levels.is_empty() {
                levels.push("#");
            }
            levels.join("/")
        })
        .prop_filter("valid filter", |f| TopicFilter::new(f).is_ok())
}

/// A topic that `filter` matches, its wildcards filled from `picks`; `None` if the picks break
/// the `$` rule or make it empty.
fn instance(filter: &str, picks: &[u8]) -> Option<String> {
    const FILL: [&str; 5] = ["a", "", "z", "$x", "b"];
    let mut picks = picks.iter().map(|&p| usize::from(p)).cycle();
    let mut next = || picks.next().unwrap_or(0);
    let mut levels = Vec::new();
    for level in filter.split('/') {
        match level {
            "+" => levels.push(FILL[next() % FILL.len()]),
            "#" => {
                for _ in 0..next() % 3 {
                    levels.push(FILL[next() % FILL.len()]);
                }
            }
            literal => levels.push(literal),
        }
    }
    let topic = levels.join("/");
    (Topic::new(&topic).is_ok() && matches(filter, &topic)).then_some(topic)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// covers(a, b) ⇒ every topic b matches, a matches.
    #[test]
    fn covers_is_sound(a in filter_strategy(), b in filter_strategy(), picks in prop::collection::vec(any::<u8>(), 1..8)) {
        if let Some(t) = instance(&b, &picks) {
            prop_assert!(!covers(&a, &b) || matches(&a, &t), "covers({a:?}, {b:?}) yet {t:?}");
        }
        // And a filter covers its own instances and itself.
        if let Some(t) = instance(&a, &picks) {
            prop_assert!(covers(&a, &t));
        }
        prop_assert!(covers(&a, &a));
    }

    /// !overlaps(a, b) ⇒ no topic matches both; overlaps is symmetric and implied by covers.
    #[test]
    fn overlaps_is_sound(a in filter_strategy(), b in filter_strategy(), picks in prop::collection::vec(any::<u8>(), 1..8)) {
        if let Some(t) = instance(&a, &picks) {
            prop_assert!(overlaps(&a, &b) || !matches(&b, &t), "!overlaps({a:?}, {b:?}) yet {t:?}");
        }
        prop_assert_eq!(overlaps(&a, &b), overlaps(&b, &a));
        prop_assert!(!covers(&a, &b) || overlaps(&a, &b));
    }

    /// covers(filter, topic) is the reference matcher.
    #[test]
    fn covers_of_a_topic_is_matches(f in filter_strategy(), g in filter_strategy(), picks in prop::collection::vec(any::<u8>(), 1..8)) {
        if let Some(t) = instance(&g, &picks) {
            prop_assert_eq!(covers(&f, &t), matches(&f, &t), "{:?} {:?}", f, t);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Templates: checked in place against their expansion, and against brute force.

/// Topics over the levels templates and values produce.
fn template_universe() -> &'static [String] {
    static U: OnceLock<Vec<String>> = OnceLock::new();
    U.get_or_init(|| all_topics(&["a", "", "$x", "z", "q", "pq", "pa", "$q"], 3))
}

fn template_strategy() -> impl Strategy<Value = String> {
    let level = prop::sample::select(vec![
        "a",
        "",
        "$x",
        "+",
        "${username}",
        "p${clientid}",
        "${cert_cn}",
        "${clientid}",
    ]);
    (prop::collection::vec(level, 1..4), any::<bool>(), any::<bool>()).prop_map(|(levels, hash, eq)| {
        let mut text = levels.join("/");
        if hash {
            text.push_str("/#");
        }
        if eq {
            // An `eq` template (placeholders refused there: parsing may fail, which is fine).
            text.insert_str(0, "eq ");
        }
        text
    })
}

fn value_strategy() -> impl Strategy<Value = Option<&'static str>> {
    prop::sample::select(vec![
        Some("a"),
        Some("q"),
        Some("$q"),
        Some(""),
        Some("a/#"),
        Some("+"),
        Some("#"),
        None,
    ])
}

fn small_filter_strategy() -> impl Strategy<Value = String> {
    let level = prop::sample::select(vec!["a", "", "$x", "+", "q", "pq", "$q", "#"]);
    prop::collection::vec(level, 1..4)
        .prop_map(|levels| levels.join("/"))
        .prop_filter("valid filter", |f| TopicFilter::new(f).is_ok())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn templates_agree_with_their_expansion_and_are_sound(
        text in template_strategy(),
        client_id in prop::sample::select(vec!["q", "a", "$q", "a/b", "", "+"]),
        username in value_strategy(),
        cert_cn in value_strategy(),
        requested in small_filter_strategy(),
    ) {
        let Ok(template) = TopicTemplate::parse(&text) else {
            // Only `eq` with placeholders, or what is not a filter even with placeholders filled.
            let skeleton = text.strip_prefix("eq ").unwrap_or(&text).replace("p${clientid}", "x").replace("${clientid}", "x").replace("${username}", "x").replace("${cert_cn}", "x");
            prop_assert!((text.starts_with("eq ") && text.contains("${")) || TopicFilter::new(&skeleton).is_err(), "{text:?} should parse");
            return Ok(());
        };
        let subject = Subject { client_id, username, cert_cn, listener: "l", authenticator: "a" };
        let expanded = template.expand(&subject);
        if let Some(e) = &expanded {
            // Never a shared filter, never a wildcard from a value.
            let parsed = TopicFilter::new(e);
            prop_assert!(parsed.is_ok_and(|f| !f.is_shared()), "{text:?} → {e:?}");
            prop_assert_eq!(e.matches(['+', '#']).count(), text.matches(['+', '#']).count());
        }
        let filter = TopicFilter::new(&requested).unwrap();
        let allow_sub = template.applies(Permission::Allow, &subject, Request::Subscribe(&filter));
        let deny_sub = template.applies(Permission::Deny, &subject, Request::Subscribe(&filter));
        let eq = template.is_eq();
        prop_assert_eq!(allow_sub, expanded.as_ref().is_some_and(|e| if eq { *e == requested } else { covers(e, &requested) }));
        prop_assert_eq!(deny_sub, expanded.as_ref().is_some_and(|e| if eq { *e == requested } else { overlaps(e, &requested) }));
        for t in template_universe() {
            let topic = Topic::new(t).unwrap();
            let publish = template.applies(Permission::Allow, &subject, Request::Publish(&topic));
            let expected = expanded.as_ref().is_some_and(|e| if eq { e == t } else { matches(e, t) });
            prop_assert_eq!(publish, expected, "{:?} on {:?}", text, t);
            prop_assert_eq!(template.applies(Permission::Deny, &subject, Request::RetainedRead(&topic)), expected);
            if !eq && matches(&requested, t) {
                // An allowed subscription receives only allowed topics; a subscription a deny
                // template does not refuse receives no denied topic.
                prop_assert!(!allow_sub || publish, "{:?} allows {:?} but not {:?}", text, requested, t);
                prop_assert!(deny_sub || !publish, "{:?} does not deny {:?} yet denies {:?}", text, requested, t);
            }
        }
    }
}
