//! Property tests: the matcher, the validators and both indexes against deliberately naive models
//! written here, apart from the crate's code.
//!
//! Topics and filters are drawn from a small alphabet of levels (empty levels and `$` first levels
//! included) so that random ones collide and match often.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, HashMap};

use proptest::prelude::*;
use unigate_pubsub::{matches, Match, RetainedIndex, SubscriptionIndex, Topic, TopicError, TopicFilter};

const LEVELS: &[&str] = &["", "a", "b", "ab", "$", "$SYS"];

/// Sixteen levels, for a wide trie whose nodes have more children than fit the linear list.
const WIDE_LEVELS: &[&str] = &[
    "0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12", "13", "$14", "",
];

fn level() -> impl Strategy<Value = String> {
    prop::sample::select(LEVELS).prop_map(str::to_owned)
}

fn wide_level() -> impl Strategy<Value = String> {
    prop::sample::select(WIDE_LEVELS).prop_map(str::to_owned)
}

fn topic_from(level: impl Strategy<Value = String>, max_levels: usize) -> impl Strategy<Value = Topic> {
    prop::collection::vec(level, 1..=max_levels)
        .prop_map(|levels| levels.join("/"))
        .prop_filter("a topic is not empty", |s| !s.is_empty())
        .prop_map(|s| Topic::new(&s).unwrap())
}

fn topic() -> impl Strategy<Value = Topic> {
    topic_from(level(), 5)
}

fn wide_topic() -> impl Strategy<Value = Topic> {
    topic_from(wide_level(), 2)
}

/// A filter part: levels of the alphabet or `+`, maybe ending in `#`, or `#` alone.
fn filter_part() -> impl Strategy<Value = String> {
    filter_part_from(level(), 4)
}

fn filter_part_from(level: impl Strategy<Value = String>, max_levels: usize) -> impl Strategy<Value = String> {
    let level_or_plus = prop_oneof![3 => level, 1 => Just("+".to_owned())];
    (prop::collection::vec(level_or_plus, 0..=max_levels), any::<bool>()).prop_filter_map(
        "a filter is not empty",
        |(mut levels, hash)| {
            if hash || levels.is_empty() {
                levels.push("#".to_owned());
            }
            let s = levels.join("/");
            (!s.is_empty()).then_some(s)
        },
    )
}

/// A filter, shared (groups `g`, `h`) one time in three.
fn filter() -> impl Strategy<Value = TopicFilter> {
    filter_from(filter_part())
}

fn wide_filter() -> impl Strategy<Value = TopicFilter> {
    filter_from(filter_part_from(wide_level(), 2))
}

fn filter_from(part: impl Strategy<Value = String>) -> impl Strategy<Value = TopicFilter> {
    let group = prop_oneof![2 => Just(None), 1 => prop::sample::select(&["g", "h"][..]).prop_map(Some)];
    (group, part).prop_map(|(group, part)| {
        let text = match group {
            Some(g) => format!("$share/{g}/{part}"),
            None => part,
        };
        TopicFilter::new(&text).unwrap()
    })
}

/// The naive matcher: MQTT 5 §4.7 restated as "same length, or a prefix before `#`", level by
/// level, with the `$` rule. No iterator juggling, no early exits.
fn naive_matches(filter: &str, topic: &str) -> bool {
    let f: Vec<&str> = filter.split('/').collect();
    let t: Vec<&str> = topic.split('/').collect();
    let first_is_wildcard = f[0] == "+" || f[0] == "#";
    if topic.starts_with('$') && first_is_wildcard {
        return false;
    }
    let level_ok = |i: usize| f[i] == "+" || f[i] == t[i];
    if f.last() == Some(&"#") {
        let prefix = f.len() - 1;
        t.len() >= prefix && (0..prefix).all(level_ok)
    } else {
        t.len() == f.len() && (0..f.len()).all(level_ok)
    }
}

/// The naive validators: what MQTT 5 §4.7.1, §4.7.3 and §4.8.2 allow, as plainly as possible.
fn naive_topic_ok(s: &str) -> bool {
    !s.is_empty() && s.len() <= 65535 && !s.contains('\0') && !s.contains('+') && !s.contains('#')
}

fn naive_filter_part_ok(s: &str) -> bool {
    let levels: Vec<&str> = s.split('/').collect();
    levels
        .iter()
        .enumerate()
        .all(|(i, l)| *l == "+" || (*l == "#" && i == levels.len() - 1) || (!l.contains('+') && !l.contains('#')))
}

fn naive_filter_ok(s: &str) -> bool {
    if s.is_empty() || s.len() > 65535 || s.contains('\0') {
        return false;
    }
    match s.strip_prefix("$share/") {
        None => naive_filter_part_ok(s),
        Some(rest) => match rest.find('/') {
            None => false,
            Some(slash) => {
                let (group, part) = (&rest[..slash], &rest[slash + 1..]);
                !group.is_empty()
                    && !group.contains('+')
                    && !group.contains('#')
                    && !part.is_empty()
                    && naive_filter_part_ok(part)
            }
        },
    }
}

/// Arbitrary strings over the characters that matter, sometimes with the share prefix.
fn messy_string() -> impl Strategy<Value = String> {
    let prefix = prop_oneof![Just(""), Just("$share/"), Just("$share")];
    let body = prop::collection::vec(prop::sample::select(&['a', '/', '+', '#', '$', '\0', 'é'][..]), 0..8);
    (prefix, body).prop_map(|(p, chars)| format!("{p}{}", chars.into_iter().collect::<String>()))
}

proptest! {
    #[test]
    fn matchers_agree(filter in filter(), topic in topic()) {
        let expected = naive_matches(filter.filter(), topic.as_str());
        prop_assert_eq!(matches(filter.filter(), topic.as_str()), expected);
        prop_assert_eq!(filter.matches(&topic), expected);
    }

    #[test]
    fn plain_topic_as_filter_matches_itself(topic in topic()) {
        // Any topic is also a wildcard-free filter (unless it looks like a share), matching
        // exactly itself.
        if let Ok(filter) = TopicFilter::new(topic.as_str()) {
            if filter.share_group().is_none() {
                prop_assert!(!filter.has_wildcards());
                prop_assert!(filter.matches(&topic));
            }
        }
    }

    #[test]
    fn validators_agree(s in messy_string()) {
        prop_assert_eq!(Topic::new(&s).is_ok(), naive_topic_ok(&s), "topic {:?}", s);
        let parsed = TopicFilter::new(&s);
        prop_assert_eq!(parsed.is_ok(), naive_filter_ok(&s), "filter {:?}: {:?}", s, parsed);
        if let Ok(filter) = parsed {
            prop_assert_eq!(filter.as_str(), s.as_str());
            let rebuilt = match filter.share_group() {
                Some(g) => format!("$share/{g}/{}", filter.filter()),
                None => filter.filter().to_owned(),
            };
            prop_assert_eq!(rebuilt, s.clone());
            prop_assert_eq!(filter.has_wildcards(), filter.filter().contains(['+', '#']));
        }
        if s.is_empty() {
            prop_assert_eq!(Topic::new(&s), Err(TopicError::Empty));
        }
    }
}

#[derive(Clone, Debug)]
enum SubOp {
    Insert { filter: usize, key: u8 },
    Remove { filter: usize, key: u8 },
}

fn sub_op() -> impl Strategy<Value = SubOp> {
    prop_oneof![
        3 => (any::<prop::sample::Index>(), 0u8..4)
            .prop_map(|(i, key)| SubOp::Insert { filter: i.index(usize::MAX), key }),
        2 => (any::<prop::sample::Index>(), 0u8..4)
            .prop_map(|(i, key)| SubOp::Remove { filter: i.index(usize::MAX), key }),
    ]
}

type Direct = Vec<(u8, u32)>;
type Shared = Vec<(String, String, Vec<(u8, u32)>)>;

fn index_matches(index: &SubscriptionIndex<u8, u32>, topic: &Topic) -> (Direct, Shared) {
    let mut direct = Vec::new();
    let mut shared = Vec::new();
    index.for_each_match(topic, |m| match m {
        Match::Direct { key, value } => direct.push((*key, *value)),
        Match::Shared {
            group, filter, members, ..
        } => {
            let mut members = members.to_vec();
            members.sort_unstable();
            shared.push((group.to_owned(), filter.to_owned(), members));
        }
    });
    direct.sort_unstable();
    shared.sort();
    (direct, shared)
}

fn model_matches(model: &[(TopicFilter, u8, u32)], topic: &Topic) -> (Direct, Shared) {
    let mut direct = Vec::new();
    let mut groups: BTreeMap<(String, String), Vec<(u8, u32)>> = BTreeMap::new();
    for (filter, key, value) in model {
        if !naive_matches(filter.filter(), topic.as_str()) {
            continue;
        }
        match filter.share_group() {
            None => direct.push((*key, *value)),
            Some(g) => groups
                .entry((g.to_owned(), filter.filter().to_owned()))
                .or_default()
                .push((*key, *value)),
        }
    }
    direct.sort_unstable();
    let shared = groups
        .into_iter()
        .map(|((g, f), mut members)| {
            members.sort_unstable();
            (g, f, members)
        })
        .collect();
    (direct, shared)
}

fn check_subscriptions(filters: &[TopicFilter], topics: &[Topic], ops: Vec<SubOp>) -> Result<(), TestCaseError> {
    let mut index: SubscriptionIndex<u8, u32> = SubscriptionIndex::new();
    let mut model: Vec<(TopicFilter, u8, u32)> = Vec::new();
    for (step, op) in ops.into_iter().enumerate() {
        let value = u32::try_from(step).unwrap();
        match op {
            SubOp::Insert { filter, key } => {
                let filter = &filters[filter % filters.len()];
                let expected = match model.iter_mut().find(|(f, k, _)| f == filter && *k == key) {
                    Some(entry) => Some(std::mem::replace(&mut entry.2, value)),
                    None => {
                        model.push((filter.clone(), key, value));
                        None
                    }
                };
                prop_assert_eq!(index.insert(filter, key, value), expected);
            }
            SubOp::Remove { filter, key } => {
                let filter = &filters[filter % filters.len()];
                let expected = model
                    .iter()
                    .position(|(f, k, _)| f == filter && *k == key)
                    .map(|i| model.swap_remove(i).2);
                prop_assert_eq!(index.remove(filter, &key), expected);
            }
        }
        prop_assert_eq!(index.len(), model.len());
        prop_assert_eq!(index.is_empty(), model.is_empty());
        for (filter, key, value) in &model {
            prop_assert_eq!(index.get(filter, key), Some(value));
        }
        for topic in topics {
            prop_assert_eq!(
                index_matches(&index, topic),
                model_matches(&model, topic),
                "topic {}",
                topic
            );
        }
    }
    // Removing everything prunes the trie back to its root.
    for (filter, key, value) in model.drain(..) {
        prop_assert_eq!(index.remove(&filter, &key), Some(value));
    }
    prop_assert!(index.is_empty());
    prop_assert_eq!(index.node_count(), 1);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn subscription_index_matches_model(
        filters in prop::collection::vec(filter(), 1..12),
        topics in prop::collection::vec(topic(), 1..8),
        ops in prop::collection::vec(sub_op(), 1..60),
    ) {
        check_subscriptions(&filters, &topics, ops)?;
    }

    #[test]
    fn wide_subscription_index_matches_model(
        filters in prop::collection::vec(wide_filter(), 10..60),
        topics in prop::collection::vec(wide_topic(), 1..10),
        ops in prop::collection::vec(sub_op(), 20..120),
    ) {
        check_subscriptions(&filters, &topics, ops)?;
    }

    #[test]
    fn subscription_retain_matches_model(
        subs in prop::collection::vec((filter(), 0u8..6), 0..30),
        topics in prop::collection::vec(topic(), 1..6),
        drop_key in 0u8..6,
    ) {
        let mut index: SubscriptionIndex<u8, u32> = SubscriptionIndex::new();
        let mut model: Vec<(TopicFilter, u8, u32)> = Vec::new();
        for (filter, key) in subs {
            if index.insert(&filter, key, 0).is_none() {
                model.push((filter, key, 0));
            }
        }
        index.retain(|k, v| {
            *v += 1;
            *k != drop_key
        });
        model.retain(|(_, k, _)| *k != drop_key);
        for entry in &mut model {
            entry.2 = 1;
        }
        prop_assert_eq!(index.len(), model.len());
        for topic in &topics {
            prop_assert_eq!(index_matches(&index, topic), model_matches(&model, topic));
        }
        index.retain(|_, _| false);
        prop_assert_eq!(index.node_count(), 1);
    }
}

#[derive(Clone, Debug)]
enum RetainedOp {
    Insert {
        topic: usize,
    },
    Remove {
        topic: usize,
    },
    /// Keep the values `v` with `v % modulus != residue`.
    Retain {
        modulus: u32,
        residue: u32,
    },
}

fn retained_op() -> impl Strategy<Value = RetainedOp> {
    prop_oneof![
        4 => any::<prop::sample::Index>().prop_map(|i| RetainedOp::Insert { topic: i.index(usize::MAX) }),
        2 => any::<prop::sample::Index>().prop_map(|i| RetainedOp::Remove { topic: i.index(usize::MAX) }),
        1 => (2u32..4, 0u32..4).prop_map(|(modulus, residue)| RetainedOp::Retain { modulus, residue }),
    ]
}

fn check_retained(topics: &[Topic], filters: &[TopicFilter], ops: Vec<RetainedOp>) -> Result<(), TestCaseError> {
    let mut index: RetainedIndex<u32> = RetainedIndex::new();
    let mut model: HashMap<String, u32> = HashMap::new();
    for (step, op) in ops.into_iter().enumerate() {
        let value = u32::try_from(step).unwrap();
        match op {
            RetainedOp::Insert { topic } => {
                let topic = &topics[topic % topics.len()];
                prop_assert_eq!(index.insert(topic, value), model.insert(topic.to_string(), value));
            }
            RetainedOp::Remove { topic } => {
                let topic = &topics[topic % topics.len()];
                prop_assert_eq!(index.remove(topic), model.remove(topic.as_str()));
            }
            RetainedOp::Retain { modulus, residue } => {
                index.retain(|_, v| *v % modulus != residue);
                model.retain(|_, v| *v % modulus != residue);
            }
        }
        prop_assert_eq!(index.len(), model.len());
        for topic in topics {
            prop_assert_eq!(index.get(topic), model.get(topic.as_str()));
        }
        let mut all: Vec<(String, u32)> = index.iter().map(|(t, v)| (t.to_string(), *v)).collect();
        all.sort();
        let mut want: Vec<(String, u32)> = model.iter().map(|(t, v)| (t.clone(), *v)).collect();
        want.sort();
        prop_assert_eq!(all, want);
        for filter in filters {
            let mut got = Vec::new();
            index.for_each_match(filter, |t, v| got.push((t.to_string(), *v)));
            got.sort();
            let mut want: Vec<(String, u32)> = model
                .iter()
                .filter(|(t, _)| naive_matches(filter.filter(), t))
                .map(|(t, v)| (t.clone(), *v))
                .collect();
            want.sort();
            prop_assert_eq!(got, want, "filter {}", filter);
        }
    }
    index.retain(|_, _| false);
    prop_assert!(index.is_empty());
    prop_assert_eq!(index.node_count(), 1);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn retained_index_matches_model(
        topics in prop::collection::vec(topic(), 1..12),
        filters in prop::collection::vec(filter(), 1..8),
        ops in prop::collection::vec(retained_op(), 1..60),
    ) {
        check_retained(&topics, &filters, ops)?;
    }

    #[test]
    fn wide_retained_index_matches_model(
        topics in prop::collection::vec(wide_topic(), 10..60),
        filters in prop::collection::vec(wide_filter(), 1..10),
        ops in prop::collection::vec(retained_op(), 20..120),
    ) {
        check_retained(&topics, &filters, ops)?;
    }
}
