//! Topic names, topic filters and the one matcher (MQTT 5 §4.7, §4.8.2).
//!
//! Both types are parsed once, where a string enters from the network or a config file, and are
//! then cheap to clone (an `Arc<str>` inside) so that messages and index entries can share them.

use std::borrow::Borrow;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use crate::error::TopicError;

/// The longest topic name or filter, in bytes of UTF-8 (MQTT 5 §1.5.4, [MQTT-4.7.3-3]).
pub const MAX_TOPIC_LEN: usize = 65_535;

/// The prefix of a shared subscription's filter (MQTT 5 §4.8.2).
pub const SHARE_PREFIX: &str = "$share/";

/// A validated topic name: the address a message is published to.
///
/// UTF-8 (by construction, being a `str`), non-empty, without the wildcards `+` and `#`, without
/// U+0000, and at most [`MAX_TOPIC_LEN`] bytes (MQTT 5 §4.7.3). Levels are separated by `/`; empty
/// levels are legal (`/a`, `a//b`, `a/`). Cheap to clone: the text is behind an `Arc<str>`.
///
/// Equality, hashing and ordering are those of the text, so a `HashMap<Topic, _>` can be looked up
/// with a `&str` (through [`Borrow<str>`]).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Topic(Arc<str>);

impl Topic {
    /// Validates `s` as a topic name.
    ///
    /// # Errors
    ///
    /// [`TopicError::Empty`], [`TopicError::TooLong`], [`TopicError::ContainsNul`] or
    /// [`TopicError::WildcardInTopic`], checked in that order.
    pub fn new(s: &str) -> Result<Topic, TopicError> {
        check_common(s)?;
        if s.bytes().any(|b| b == b'+' || b == b'#') {
            return Err(TopicError::WildcardInTopic);
        }
        Ok(Topic(Arc::from(s)))
    }

    /// The topic name as text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The levels of the topic, split on `/` (`"a//b"` has the three levels `a`, `""`, `b`).
    pub fn levels(&self) -> std::str::Split<'_, char> {
        self.0.split('/')
    }

    /// Whether the topic starts with `$` (`$SYS/...`): such topics are reserved for the server and
    /// are not matched by filters that start with a wildcard (MQTT 5 §4.7.2).
    #[must_use]
    pub fn is_system(&self) -> bool {
        self.0.starts_with('$')
    }
}

impl fmt::Debug for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Topic").field(&&*self.0).finish()
    }
}

impl fmt::Display for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for Topic {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl Borrow<str> for Topic {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl PartialEq<str> for Topic {
    fn eq(&self, other: &str) -> bool {
        &*self.0 == other
    }
}

impl PartialEq<&str> for Topic {
    fn eq(&self, other: &&str) -> bool {
        &*self.0 == *other
    }
}

impl FromStr for Topic {
    type Err = TopicError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Topic::new(s)
    }
}

impl TryFrom<&str> for Topic {
    type Error = TopicError;

    fn try_from(s: &str) -> Result<Self, Self::Error> {
        Topic::new(s)
    }
}

/// A validated topic filter: what a subscription (or an ACL rule) selects topics with.
///
/// Wildcards follow MQTT 5 §4.7.1: `#` matches its parent level and any number of child levels and
/// must be alone in the last level; `+` matches exactly one level (possibly empty) and must be
/// alone in its level. Otherwise the rules of [`Topic`] apply (non-empty, no U+0000, at most
/// [`MAX_TOPIC_LEN`] bytes).
///
/// A filter of the form `$share/{group}/{filter}` is a shared subscription (MQTT 5 §4.8.2): the
/// group is non-empty and free of `/`, `+` and `#`, and the filter part is non-empty and valid.
/// [`as_str`](Self::as_str) is the whole text, [`filter`](Self::filter) the part that is matched.
/// Cheap to clone; equality, hashing and ordering are those of the whole text.
#[derive(Clone)]
pub struct TopicFilter {
    text: Arc<str>,
    /// Where the filter part starts in `text`: 0, or just after `$share/{group}/`.
    filter_start: usize,
    has_wildcards: bool,
}

impl TopicFilter {
    /// Validates `s` as a topic filter, possibly a shared one.
    ///
    /// # Errors
    ///
    /// [`TopicError::Empty`], [`TopicError::TooLong`], [`TopicError::ContainsNul`],
    /// [`TopicError::InvalidShare`] or [`TopicError::InvalidWildcard`].
    pub fn new(s: &str) -> Result<TopicFilter, TopicError> {
        check_common(s)?;
        let filter_start = match s.strip_prefix(SHARE_PREFIX) {
            None => 0,
            Some(rest) => {
                let (group, filter) = rest.split_once('/').ok_or(TopicError::InvalidShare)?;
                if group.is_empty() || group.bytes().any(|b| b == b'+' || b == b'#') || filter.is_empty() {
                    return Err(TopicError::InvalidShare);
                }
                SHARE_PREFIX.len() + group.len() + 1
            }
        };
        let has_wildcards = check_filter_levels(&s[filter_start..])?;
        Ok(TopicFilter {
            text: Arc::from(s),
            filter_start,
            has_wildcards,
        })
    }

    /// The whole filter as given, including any `$share/{group}/` prefix.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The part that is matched against topics: the whole text, or what follows
    /// `$share/{group}/` for a shared subscription.
    #[must_use]
    pub fn filter(&self) -> &str {
        &self.text[self.filter_start..]
    }

    /// The share group (ShareName) of a shared subscription, `None` for an ordinary one.
    #[must_use]
    pub fn share_group(&self) -> Option<&str> {
        if self.filter_start == 0 {
            None
        } else {
            self.text.get(SHARE_PREFIX.len()..self.filter_start - 1)
        }
    }

    /// Whether this is a shared subscription (`$share/{group}/...`).
    #[must_use]
    pub fn is_shared(&self) -> bool {
        self.filter_start != 0
    }

    /// Whether the filter part contains `+` or `#`. A filter without wildcards matches exactly one
    /// topic, the one with the same text.
    #[must_use]
    pub fn has_wildcards(&self) -> bool {
        self.has_wildcards
    }

    /// Whether `topic` matches the filter part, per MQTT 5 §4.7 (see [`matches()`]).
    #[must_use]
    pub fn matches(&self, topic: &Topic) -> bool {
        matches(self.filter(), topic.as_str())
    }

    /// The number of levels of the filter part, `#` included (`sport/+/#` has 3; `$share/g/a` has
    /// 1). Lets a broker cap the depth of subscriptions.
    #[must_use]
    pub fn level_count(&self) -> usize {
        self.filter().split('/').count()
    }

    /// The levels of the filter part, split on `/`.
    pub fn levels(&self) -> std::str::Split<'_, char> {
        self.filter().split('/')
    }
}

impl PartialEq for TopicFilter {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl Eq for TopicFilter {}

impl std::hash::Hash for TopicFilter {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        // The hash of the text alone, so that `Borrow<str>` lookups work.
        self.text.hash(state);
    }
}

impl PartialOrd for TopicFilter {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for TopicFilter {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.text.cmp(&other.text)
    }
}

impl fmt::Debug for TopicFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("TopicFilter").field(&&*self.text).finish()
    }
}

impl fmt::Display for TopicFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl AsRef<str> for TopicFilter {
    fn as_ref(&self) -> &str {
        &self.text
    }
}

impl Borrow<str> for TopicFilter {
    fn borrow(&self) -> &str {
        &self.text
    }
}

impl FromStr for TopicFilter {
    type Err = TopicError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TopicFilter::new(s)
    }
}

impl TryFrom<&str> for TopicFilter {
    type Error = TopicError;

    fn try_from(s: &str) -> Result<Self, Self::Error> {
        TopicFilter::new(s)
    }
}

/// The checks shared by names and filters (MQTT 5 §4.7.3).
fn check_common(s: &str) -> Result<(), TopicError> {
    if s.is_empty() {
        Err(TopicError::Empty)
    } else if s.len() > MAX_TOPIC_LEN {
        Err(TopicError::TooLong)
    } else if s.as_bytes().contains(&0) {
        Err(TopicError::ContainsNul)
    } else {
        Ok(())
    }
}

/// Checks the wildcards of a filter part (MQTT 5 §4.7.1); returns whether it has any.
fn check_filter_levels(filter: &str) -> Result<bool, TopicError> {
    let mut wild = false;
    let mut levels = filter.split('/').peekable();
    while let Some(level) = levels.next() {
        match level {
            "#" if levels.peek().is_some() => return Err(TopicError::InvalidWildcard),
            "#" | "+" => wild = true,
            _ if level.bytes().any(|b| b == b'+' || b == b'#') => return Err(TopicError::InvalidWildcard),
            _ => {}
        }
    }
    Ok(wild)
}

/// Splits off the first level of a non-empty remainder: `("a", Some("b/c"))` for `"a/b/c"`,
/// `("a", Some(""))` for `"a/"`, `("a", None)` for `"a"`.
///
/// A remainder of `None` means "no level left", `Some("")` means "one empty level left": the
/// tries walk topics and filters this way, over `&str` slices, without allocating.
pub(crate) fn split_level(rest: &str) -> (&str, Option<&str>) {
    match rest.split_once('/') {
        Some((level, rest)) => (level, Some(rest)),
        None => (rest, None),
    }
}

/// Whether `topic` matches `filter`, per MQTT 5 §4.7. The one reference matcher: the indexes give
/// the same answers (property-tested), and anything that matches a single pair should call this.
///
/// `filter` is the filter part only (no `$share/{group}/` prefix; see [`TopicFilter::filter`]).
/// Levels are compared exactly (case-sensitive, empty levels included). `+` matches exactly one
/// level, which may be empty; `#` matches the rest of the topic, including nothing at all, so
/// `sport/#` matches `sport` (its parent level) as well as `sport/tennis`. A topic starting with
/// `$` is not matched by a filter that starts with `+` or `#` (MQTT 5 §4.7.2), so `#` does not
/// match `$SYS/uptime` but `$SYS/#` does.
///
/// The strings are not validated: on an invalid filter the result is unspecified (but this never
/// panics); a `#` level ends the match wherever it stands.
#[must_use]
pub fn matches(filter: &str, topic: &str) -> bool {
    if topic.starts_with('$') && (filter.starts_with('+') || filter.starts_with('#')) {
        return false;
    }
    let mut filter_levels = filter.split('/');
    let mut topic_levels = topic.split('/');
    loop {
        match (filter_levels.next(), topic_levels.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(f), Some(t)) if f == t => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn t(s: &str) -> Topic {
        Topic::new(s).unwrap()
    }

    fn f(s: &str) -> TopicFilter {
        TopicFilter::new(s).unwrap()
    }

    #[test]
    fn topic_validation() {
        assert_eq!(Topic::new(""), Err(TopicError::Empty));
        assert_eq!(Topic::new("a\0b"), Err(TopicError::ContainsNul));
        assert_eq!(Topic::new("\0"), Err(TopicError::ContainsNul));
        assert_eq!(Topic::new("a/+"), Err(TopicError::WildcardInTopic));
        assert_eq!(Topic::new("a/#"), Err(TopicError::WildcardInTopic));
        assert_eq!(Topic::new("a+b"), Err(TopicError::WildcardInTopic));
        assert_eq!(Topic::new("#"), Err(TopicError::WildcardInTopic));
        let longest = "a".repeat(MAX_TOPIC_LEN);
        assert!(Topic::new(&longest).is_ok());
        assert_eq!(Topic::new(&format!("{longest}b")), Err(TopicError::TooLong));
        // Multi-byte characters count in bytes: 21846 * 3 = 65538 > 65535.
        assert_eq!(Topic::new(&"€".repeat(21_846)), Err(TopicError::TooLong));
        assert!(Topic::new(&"€".repeat(21_845)).is_ok());
        // Empty levels, spaces, '$' and non-ASCII are all legal.
        for ok in [
            "/",
            "//",
            "a//b",
            "/a",
            "a/",
            " ",
            "$SYS/x",
            "$",
            "sport/tennis",
            "ü/ß",
            "$share/g/x",
        ] {
            assert_eq!(t(ok).as_str(), ok);
        }
    }

    #[test]
    fn topic_accessors() {
        let topic = t("sport//tennis");
        assert_eq!(topic.levels().collect::<Vec<_>>(), ["sport", "", "tennis"]);
        assert_eq!(topic.to_string(), "sport//tennis");
        assert_eq!(format!("{topic:?}"), "Topic(\"sport//tennis\")");
        assert_eq!(topic, "sport//tennis");
        assert!(!topic.is_system());
        assert!(t("$SYS/broker").is_system());
        assert!(t("$").is_system());
        assert!(!t("a/$SYS").is_system());
        let map: std::collections::HashMap<Topic, u8> = [(topic.clone(), 1)].into_iter().collect();
        assert_eq!(map.get("sport//tennis"), Some(&1));
        assert_eq!("x/y".parse::<Topic>(), Ok(t("x/y")));
        assert!(t("a") < t("b"));
    }

    #[test]
    fn filter_validation() {
        assert_eq!(TopicFilter::new(""), Err(TopicError::Empty));
        assert_eq!(TopicFilter::new("a/\0"), Err(TopicError::ContainsNul));
        assert_eq!(
            TopicFilter::new(&"a".repeat(MAX_TOPIC_LEN + 1)),
            Err(TopicError::TooLong)
        );
        assert!(TopicFilter::new(&"a".repeat(MAX_TOPIC_LEN)).is_ok());
        // MQTT 5 §4.7.1.2: '#' alone in the last level.
        for bad in ["sport/tennis#", "sport/tennis/#/ranking", "#/a", "##", "a/#b", "#/"] {
            assert_eq!(TopicFilter::new(bad), Err(TopicError::InvalidWildcard), "{bad}");
        }
        // MQTT 5 §4.7.1.3: '+' alone in its level.
        for bad in ["sport+", "sport/+tennis", "++", "+a/b", "a/b+", "+#"] {
            assert_eq!(TopicFilter::new(bad), Err(TopicError::InvalidWildcard), "{bad}");
        }
        for ok in [
            "#",
            "+",
            "+/+",
            "/+",
            "+/",
            "sport/#",
            "sport/+/player1",
            "+/tennis/#",
            "/",
            "a//b",
            "$SYS/#",
        ] {
            assert_eq!(f(ok).as_str(), ok);
        }
        assert!(f("a/+").has_wildcards());
        assert!(f("#").has_wildcards());
        assert!(!f("a/b").has_wildcards());
        assert!(!f("$share/g/a").has_wildcards());
        assert!(f("$share/g/a/#").has_wildcards());
    }

    #[test]
    fn filter_level_count() {
        assert_eq!(f("a").level_count(), 1);
        assert_eq!(f("/").level_count(), 2);
        assert_eq!(f("sport/+/#").level_count(), 3);
        assert_eq!(f("$share/g/a").level_count(), 1);
        assert_eq!(f("$share/g/a//#").level_count(), 3);
        assert_eq!(f("a/+").levels().collect::<Vec<_>>(), ["a", "+"]);
    }

    #[test]
    fn shared_filter_parsing() {
        let s = f("$share/consumers/sport/+/player1");
        assert_eq!(s.as_str(), "$share/consumers/sport/+/player1");
        assert_eq!(s.filter(), "sport/+/player1");
        assert_eq!(s.share_group(), Some("consumers"));
        assert!(s.is_shared());
        assert!(s.matches(&t("sport/tennis/player1")));
        assert_eq!(s.to_string(), "$share/consumers/sport/+/player1");

        let s = f("$share/g/#");
        assert_eq!((s.share_group(), s.filter()), (Some("g"), "#"));
        // The filter part may start with an empty level.
        let s = f("$share/g//a");
        assert_eq!((s.share_group(), s.filter()), (Some("g"), "/a"));
        let s = f("$share/g/$SYS/#");
        assert_eq!(s.filter(), "$SYS/#");
        assert!(s.matches(&t("$SYS/x")));
        // '$' rule applies to the filter part: "$share/g/#" does not match "$SYS/x".
        assert!(!f("$share/g/#").matches(&t("$SYS/x")));

        for bad in [
            "$share/",
            "$share//a",
            "$share/g",
            "$share/g/",
            "$share/+/a",
            "$share/#/a",
            "$share/g+/a",
            "$share/g#/a",
        ] {
            assert_eq!(TopicFilter::new(bad), Err(TopicError::InvalidShare), "{bad}");
        }
        assert_eq!(TopicFilter::new("$share/g/a/#/b"), Err(TopicError::InvalidWildcard));
        assert_eq!(TopicFilter::new("$share/g/a+"), Err(TopicError::InvalidWildcard));

        // Not shared: "$share" needs the slash, and the prefix is case-sensitive.
        for plain in ["$share", "$shared/g/a", "$SHARE/g/a", "a/$share/g/b"] {
            let p = f(plain);
            assert_eq!(p.share_group(), None, "{plain}");
            assert!(!p.is_shared());
            assert_eq!(p.filter(), plain);
        }
    }

    #[test]
    fn filter_eq_hash_borrow() {
        use std::collections::HashSet;
        let set: HashSet<TopicFilter> = [f("a/+"), f("$share/g/a/+"), f("a/+")].into_iter().collect();
        assert_eq!(set.len(), 2);
        assert!(set.contains("a/+"));
        assert!(set.contains("$share/g/a/+"));
        assert_ne!(f("a/+"), f("$share/g/a/+"));
        assert!(f("a") < f("b"));
        assert_eq!(format!("{:?}", f("a/#")), "TopicFilter(\"a/#\")");
        assert_eq!("a/#".parse::<TopicFilter>(), Ok(f("a/#")));
    }

    /// The examples of MQTT 5 §4.7.1 and §4.7.2, each against `matches` and `TopicFilter::matches`.
    #[test]
    fn spec_examples() {
        let cases: &[(&str, &str, bool)] = &[
            // §4.7.1.2 multi-level wildcard
            ("sport/tennis/player1/#", "sport/tennis/player1", true),
            ("sport/tennis/player1/#", "sport/tennis/player1/ranking", true),
            ("sport/tennis/player1/#", "sport/tennis/player1/score/wimbledon", true),
            ("sport/tennis/player1/#", "sport/tennis/player2", false),
            ("sport/tennis/player1/#", "sport/tennis", false),
            ("sport/#", "sport", true),
            ("sport/#", "sport/", true),
            ("sport/#", "sports", false),
            ("#", "sport/tennis", true),
            ("#", "/", true),
            ("#", "a", true),
            // §4.7.1.3 single-level wildcard
            ("sport/tennis/+", "sport/tennis/player1", true),
            ("sport/tennis/+", "sport/tennis/player2", true),
            ("sport/tennis/+", "sport/tennis/player1/ranking", false),
            ("sport/+", "sport", false),
            ("sport/+", "sport/", true),
            ("+", "sport", true),
            ("+", "/sport", false),
            ("+/+", "/finance", true),
            ("/+", "/finance", true),
            ("+", "/finance", false),
            ("+/+", "/", true),
            ("+/tennis/#", "sport/tennis/player1", true),
            ("sport/+/player1", "sport/tennis/player1", true),
            ("sport/+/player1", "sport/tennis/player2", false),
            // exact levels, including empty ones
            ("a/b", "a/b", true),
            ("a/b", "a/B", false),
            ("a//b", "a//b", true),
            ("a//b", "a/b", false),
            ("a/+/b", "a//b", true),
            ("/", "/", true),
            ("a/", "a", false),
            ("a", "a/", false),
            // §4.7.2 topics beginning with $
            ("#", "$SYS/monitor/Clients", false),
            ("+/monitor/Clients", "$SYS/monitor/Clients", false),
            ("$SYS/#", "$SYS/monitor/Clients", true),
            ("$SYS/monitor/+", "$SYS/monitor/Clients", true),
            ("+", "$", false),
            ("#", "$", false),
            ("$", "$", true),
            ("$SYS/#", "$SYS", true),
            ("a/#", "a/$SYS", true),
            ("+/+", "a/$x", true),
        ];
        for &(filter, topic, expected) in cases {
            assert_eq!(matches(filter, topic), expected, "matches({filter:?}, {topic:?})");
            assert_eq!(f(filter).matches(&t(topic)), expected, "{filter:?} on {topic:?}");
        }
    }

    #[test]
    fn reference_matcher_tolerates_invalid_input() {
        // Unspecified results, but no panic.
        for (filter, topic) in [("", ""), ("#/a", "x"), ("a+", "a+"), ("", "a"), ("a", "")] {
            let _ = matches(filter, topic);
        }
        assert!(matches("", ""));
    }

    #[test]
    fn split_level_walks_slices() {
        assert_eq!(split_level("a/b/c"), ("a", Some("b/c")));
        assert_eq!(split_level("a/"), ("a", Some("")));
        assert_eq!(split_level(""), ("", None));
        assert_eq!(split_level("a"), ("a", None));
        assert_eq!(split_level("/a"), ("", Some("a")));
    }
}
