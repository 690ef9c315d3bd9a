//! Relations between topic filters, walked level by level (MQTT 5 §4.7): does a rule's filter
//! *cover* a requested one, do two filters *overlap*.
//!
//! Both work on the filter part of a filter (no `$share/{group}/` prefix). A topic name is a
//! filter without wildcards that matches exactly itself, so "filter matches topic" is
//! `covers(filter, topic)`; the ACL uses that for publishes, and the tests check it against the
//! reference matcher [`unigate_pubsub::matches`].
//!
//! Both are exact, with one slack that errs on the side of refusing: they count a single empty
//! level, the empty string, as a topic, which MQTT 5 §4.7.3 does not. So `overlaps("+", "/#")`
//! is true (only `""` matches both) and `covers("/+/#", "/#")` and `covers("+/+/#", "/#")` are
//! false (only `""` tells them apart). A deny rule `+` refuses a subscription to `/#`; an allow
//! rule `/+/#` does not grant one. No other pair differs (tested exhaustively up to 3 levels).
//!
//! The walks are generic over the text of the rule's levels, so that a [`TopicTemplate`]'s
//! levels can be compared with placeholders filled in place, without building the expanded
//! filter (no allocation per check).
//!
//! [`TopicTemplate`]: super::TopicTemplate

/// One level of a filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Level<T> {
    /// `+`: exactly one level, possibly empty.
    Plus,
    /// `#`: the rest of the topic, including no level at all (`a/#` matches `a`).
    Hash,
    /// A literal level.
    Text(T),
}

/// The text of a literal level, however it is stored.
pub(crate) trait LevelText {
    /// Whether this level's text is exactly `level`.
    fn eq_level(&self, level: &str) -> bool;
    /// Whether the text starts with `$`.
    fn starts_with_dollar(&self) -> bool;
}

impl LevelText for &str {
    fn eq_level(&self, level: &str) -> bool {
        *self == level
    }

    fn starts_with_dollar(&self) -> bool {
        self.starts_with('$')
    }
}

/// The levels of a filter (or topic) text.
pub(crate) fn str_levels(filter: &str) -> impl Iterator<Item = Level<&str>> {
    filter.split('/').map(|level| match level {
        "+" => Level::Plus,
        "#" => Level::Hash,
        text => Level::Text(text),
    })
}

/// Whether the first levels of two filters make their topic sets disjoint by the `$` rule of
/// MQTT 5 §4.7.2: a filter starting with a wildcard matches no topic starting with `$`, and a
/// filter whose first level is a literal starting with `$` matches only such topics.
fn dollar_exclusive<A: LevelText, B: LevelText>(a: &Option<Level<A>>, b: &Option<Level<B>>) -> bool {
    let wild_a = matches!(a, Some(Level::Plus | Level::Hash));
    let wild_b = matches!(b, Some(Level::Plus | Level::Hash));
    let dollar_a = matches!(a, Some(Level::Text(t)) if t.starts_with_dollar());
    let dollar_b = matches!(b, Some(Level::Text(t)) if t.starts_with_dollar());
    (wild_a && dollar_b) || (dollar_a && wild_b)
}

/// Whether every topic matched by `requested` is also matched by `rule`.
pub(crate) fn covers_levels<T: LevelText>(rule: impl IntoIterator<Item = Level<T>>, requested: &str) -> bool {
    let mut rule = rule.into_iter();
    let mut requested = str_levels(requested);
    let mut pair = (rule.next(), requested.next());
    // A wildcard-first rule sees no `$` topic; a `$`-first request has only `$` topics (and
    // always at least one). The reverse case fails below anyway: a literal covers no wildcard.
    if dollar_exclusive(&pair.0, &pair.1) {
        return false;
    }
    if let (Some(Level::Plus), Some(Level::Hash)) = pair {
        // A requested `#` first is `+/#`: a topic has at least one level, so its "parent level"
        // would be none at all. The rule's `+` takes that first level.
        pair = (rule.next(), Some(Level::Hash));
    }
    loop {
        match pair {
            // `#` takes whatever the request has left, including nothing (its parent level).
            (Some(Level::Hash), _) | (None, None) => return true,
            (Some(Level::Plus), Some(Level::Plus | Level::Text(_))) => {}
            (Some(Level::Text(r)), Some(Level::Text(q))) if r.eq_level(q) => {}
            // Rule exhausted while the request goes on (even a `#`, which also matches longer
            // topics), request exhausted while the rule needs a level, a request wildcard
            // against a narrower rule level, or two different literals.
            _ => return false,
        }
        pair = (rule.next(), requested.next());
    }
}

/// Whether some topic is matched by both filters.
pub(crate) fn overlaps_levels<T: LevelText>(a: impl IntoIterator<Item = Level<T>>, b: &str) -> bool {
    let mut a = a.into_iter();
    let mut b = str_levels(b);
    let mut pair = (a.next(), b.next());
    if dollar_exclusive(&pair.0, &pair.1) {
        return false;
    }
    loop {
        match pair {
            // `#` matches any continuation of the other, and also its end (the parent level).
            (Some(Level::Hash), _) | (_, Some(Level::Hash)) | (None, None) => return true,
            // A `+` can take the other's literal, or (against `+`) any level: when both filters
            // start with `+`, one not starting with `$`.
            (Some(Level::Plus), Some(_)) | (Some(_), Some(Level::Plus)) => {}
            (Some(Level::Text(x)), Some(Level::Text(y))) if x.eq_level(y) => {}
            _ => return false,
        }
        pair = (a.next(), b.next());
    }
}

/// Whether the filter `rule` *covers* the filter `requested`: every topic that `requested`
/// matches is matched by `rule` (MQTT 5 §4.7, `$` topics included). `a/#` covers `a`, `a/+/c`
/// and `a/#`; `a/+` does not cover `a/#`; `#` does not cover `$SYS/#`.
///
/// Both are filter parts, without a `$share/{group}/` prefix; a topic name is a filter that
/// matches only itself, so `covers(filter, topic)` is [`unigate_pubsub::matches`]`(filter,
/// topic)`.
///
/// Sound: never true when some topic matches `requested` but not `rule`. Exact, but that it
/// counts the empty string as a topic (MQTT 5 §4.7.3 does not), so `covers("/+/#", "/#")` and
/// `covers("+/+/#", "/#")` are false though only `""` tells the filters apart: an allow rule
/// errs on the side of refusing. On invalid filters the answer is unspecified, but this never
/// panics.
#[must_use]
pub fn covers(rule: &str, requested: &str) -> bool {
    covers_levels(str_levels(rule), requested)
}

/// Whether some topic is matched by both filters `a` and `b` (MQTT 5 §4.7, `$` topics included).
/// `a/+` and `+/b` overlap (on `a/b`); `#` and `$SYS/#` do not.
///
/// Both are filter parts, without a `$share/{group}/` prefix. Symmetric.
///
/// Sound: never false when some topic matches both. Exact, but that it counts the empty string
/// as a topic, so `overlaps("+", "/#")` is true though only `""` matches both: a deny rule errs on
/// the side of refusing. On invalid filters the answer is unspecified, but this never panics.
#[must_use]
pub fn overlaps(a: &str, b: &str) -> bool {
    overlaps_levels(str_levels(a), b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn covers_examples() {
        let cases: &[(&str, &str, bool)] = &[
            ("a/#", "a/+/c", true),
            ("a/#", "a", true),
            ("a/#", "a/#", true),
            ("a/#", "a/b/c/d", true),
            ("a/+", "a/#", false),
            ("a/+", "a/b", true),
            ("a/+", "a/+", true),
            ("a/+", "a", false),
            ("a/b", "a/+", false),
            ("a/b", "a/b", true),
            ("a/b", "a/b/c", false),
            ("a/b/c", "a/b", false),
            ("#", "#", true),
            ("#", "a//b", true),
            ("+", "+", true),
            ("+", "#", false),
            ("+/+", "/", true),
            ("+", "/", false),
            ("a//#", "a//x", true),
            ("a//#", "a/x", false),
            // MQTT 5 §4.7.2: wildcard-first filters see no `$` topic.
            ("#", "$SYS/#", false),
            ("#", "$SYS", false),
            ("+/#", "$SYS/x", false),
            ("$SYS/#", "$SYS/+/x", true),
            ("$SYS/#", "$SYS", true),
            ("#", "a/$SYS", true),
            ("+/+", "a/$x", true),
            // A topic has at least one level: `#` is `+/#`.
            ("+/#", "#", true),
            ("+/+/#", "#", false),
            ("+", "#", false),
        ];
        for &(rule, requested, expected) in cases {
            assert_eq!(covers(rule, requested), expected, "covers({rule:?}, {requested:?})");
        }
    }

    #[test]
    fn overlaps_examples() {
        let cases: &[(&str, &str, bool)] = &[
            ("a/+", "+/b", true),
            ("a/#", "a", true),
            ("a/#", "b/#", false),
            ("a/+", "a/b/c", false),
            ("a/+", "a/#", true),
            ("a", "a/+", false),
            ("a", "#", true),
            ("+", "a/b", false),
            ("a//b", "a/+/b", true),
            ("a//b", "a/b", false),
            ("#", "$SYS/#", false),
            ("+/x", "$SYS/x", false),
            ("+", "#", true),
            ("$SYS/#", "$SYS/+", true),
            ("$SYS/#", "$OTHER/#", false),
            ("a/$x", "+/+", true),
        ];
        for &(a, b, expected) in cases {
            assert_eq!(overlaps(a, b), expected, "overlaps({a:?}, {b:?})");
            assert_eq!(overlaps(b, a), expected, "overlaps({b:?}, {a:?})");
        }
    }

    #[test]
    fn invalid_input_does_not_panic() {
        for (a, b) in [("", ""), ("#/a", "a"), ("a+", "#"), ("", "#"), ("+", "")] {
            let _ = covers(a, b);
            let _ = overlaps(a, b);
        }
    }
}
