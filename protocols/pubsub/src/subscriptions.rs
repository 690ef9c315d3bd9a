//! The subscription index: from topic filters to subscribers, answering "who gets this topic?".
//!
//! A trie over filter levels (see [`crate::trie`]); each node keeps the subscriptions whose filter
//! ends there, and those whose filter ends there with a further `#`. Matching a topic walks the
//! trie with an explicit stack of `(node, rest of the topic)` pairs over `&str` slices: at each
//! node it follows the literal child for the next level and the `+` child, and reports the `#`
//! subscriptions on the way. The cost is bounded by the nodes actually visited, not by the number
//! of subscriptions, and nothing is allocated unless a walk is more than 16 branches deep.

use std::collections::HashMap;
use std::fmt;
use std::hash::Hash;
use std::sync::atomic::{AtomicUsize, Ordering};

use smallvec::SmallVec;

use crate::topic::{split_level, Topic, TopicFilter};
use crate::trie::{Trie, ROOT};

/// A subscription that matched a topic, as reported by [`SubscriptionIndex::for_each_match`].
pub enum Match<'a, K, V> {
    /// An ordinary subscription: deliver to `key`.
    Direct {
        /// The subscriber.
        key: &'a K,
        /// Its subscription data.
        value: &'a V,
    },
    /// A shared subscription group `$share/{group}/{filter}` (MQTT 5 §4.8.2): deliver to exactly
    /// one of `members`, chosen by the caller (for example with
    /// [`pick_round_robin`](Match::pick_round_robin), or skipping offline members).
    Shared {
        /// The ShareName.
        group: &'a str,
        /// The filter part (without `$share/{group}/`).
        filter: &'a str,
        /// The members, never empty, in no particular order (removals reorder them).
        members: &'a [(K, V)],
        /// The group's round-robin position, kept here for the caller; the index never reads it.
        cursor: &'a AtomicUsize,
    },
}

impl<'a, K, V> Match<'a, K, V> {
    /// The subscriber to deliver to: the direct one, or the next member of a shared group in
    /// round-robin order (advancing `cursor`). `None` only for a group without members, which the
    /// index never reports.
    #[must_use]
    pub fn pick_round_robin(&self) -> Option<(&'a K, &'a V)> {
        match *self {
            Match::Direct { key, value } => Some((key, value)),
            Match::Shared { members, cursor, .. } => {
                if members.is_empty() {
                    return None;
                }
                let n = cursor.fetch_add(1, Ordering::Relaxed) % members.len();
                members.get(n).map(|(k, v)| (k, v))
            }
        }
    }
}

impl<K, V> Clone for Match<'_, K, V> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<K, V> Copy for Match<'_, K, V> {}

impl<K: fmt::Debug, V: fmt::Debug> fmt::Debug for Match<'_, K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Match::Direct { key, value } => f
                .debug_struct("Direct")
                .field("key", key)
                .field("value", value)
                .finish(),
            Match::Shared {
                group,
                filter,
                members,
                cursor,
            } => f
                .debug_struct("Shared")
                .field("group", group)
                .field("filter", filter)
                .field("members", members)
                .field("cursor", cursor)
                .finish(),
        }
    }
}

/// Above this many entries a set of subscribers gets a position index, so that insert and remove
/// stay O(1) when thousands of clients subscribe to one filter (`#` for monitors,
/// `broadcast/all`). Below it a linear scan is faster than hashing.
const POSITION_INDEX_THRESHOLD: usize = 16;

/// The subscribers of one filter (or one share group): a contiguous slice, as
/// [`Match::Shared`] hands out, with a key → position map once it is large.
struct Entries<K, V> {
    items: Vec<(K, V)>,
    positions: Option<HashMap<K, usize>>,
}

impl<K, V> Default for Entries<K, V> {
    fn default() -> Self {
        Entries {
            items: Vec::new(),
            positions: None,
        }
    }
}

impl<K: Eq + Hash + Clone, V> Entries<K, V> {
    fn position(&self, key: &K) -> Option<usize> {
        match &self.positions {
            Some(map) => map.get(key).copied(),
            None => self.items.iter().position(|(k, _)| k == key),
        }
    }

    fn get(&self, key: &K) -> Option<&V> {
        let i = self.position(key)?;
        self.items.get(i).map(|(_, v)| v)
    }

    fn insert(&mut self, key: K, value: V) -> Option<V> {
        if let Some(i) = self.position(&key) {
            return self.items.get_mut(i).map(|(_, v)| std::mem::replace(v, value));
        }
        match &mut self.positions {
            Some(map) => {
                map.insert(key.clone(), self.items.len());
            }
            None if self.items.len() >= POSITION_INDEX_THRESHOLD => {
                let mut map: HashMap<K, usize> = self
                    .items
                    .iter()
                    .enumerate()
                    .map(|(i, (k, _))| (k.clone(), i))
                    .collect();
                map.insert(key.clone(), self.items.len());
                self.positions = Some(map);
            }
            None => {}
        }
        self.items.push((key, value));
        None
    }

    fn remove(&mut self, key: &K) -> Option<V> {
        let i = self.position(key)?;
        let (_, value) = self.items.swap_remove(i);
        if let Some(map) = &mut self.positions {
            map.remove(key);
            // The last entry moved into the hole.
            if let Some((moved, _)) = self.items.get(i) {
                if let Some(pos) = map.get_mut(moved) {
                    *pos = i;
                }
            }
            // Hysteresis: drop the map well below the threshold, not at it.
            if self.items.len() < POSITION_INDEX_THRESHOLD / 2 {
                self.positions = None;
            }
        }
        Some(value)
    }

    /// Keeps the entries for which `f` is true; returns how many were removed.
    fn retain(&mut self, f: &mut impl FnMut(&K, &mut V) -> bool) -> usize {
        let before = self.items.len();
        self.items.retain_mut(|(k, v)| f(k, v));
        let removed = before - self.items.len();
        if removed > 0 && self.positions.is_some() {
            self.positions = (self.items.len() >= POSITION_INDEX_THRESHOLD / 2).then(|| {
                self.items
                    .iter()
                    .enumerate()
                    .map(|(i, (k, _))| (k.clone(), i))
                    .collect()
            });
        }
        removed
    }
}

/// One shared subscription group: a (ShareName, filter) pair and its members.
struct Group<K, V> {
    name: Box<str>,
    filter: Box<str>,
    members: Entries<K, V>,
    cursor: AtomicUsize,
}

/// The subscriptions whose filter ends at one place of the trie.
struct Subs<K, V> {
    direct: Entries<K, V>,
    /// Few per filter, so a `Vec` searched by name.
    shared: Vec<Group<K, V>>,
}

impl<K, V> Default for Subs<K, V> {
    fn default() -> Self {
        Subs {
            direct: Entries::default(),
            shared: Vec::new(),
        }
    }
}

impl<K, V> Subs<K, V> {
    fn is_empty(&self) -> bool {
        self.direct.items.is_empty() && self.shared.is_empty()
    }

    fn report<'a>(&'a self, f: &mut impl FnMut(Match<'a, K, V>)) {
        for (key, value) in &self.direct.items {
            f(Match::Direct { key, value });
        }
        for g in &self.shared {
            f(Match::Shared {
                group: &g.name,
                filter: &g.filter,
                members: &g.members.items,
                cursor: &g.cursor,
            });
        }
    }
}

/// What a trie node holds. Boxed and optional, because most nodes are only a step on the way to
/// longer filters and hold nothing.
struct SubNode<K, V> {
    /// Filters that end at this node (`a/b` at the node of `b`).
    exact: Option<Box<Subs<K, V>>>,
    /// Filters that end at this node followed by `#` (`a/b/#` at the node of `b`; `#` at the root).
    multi: Option<Box<Subs<K, V>>>,
}

impl<K, V> Default for SubNode<K, V> {
    fn default() -> Self {
        SubNode {
            exact: None,
            multi: None,
        }
    }
}

impl<K, V> SubNode<K, V> {
    fn is_empty(&self) -> bool {
        self.exact.is_none() && self.multi.is_none()
    }
}

/// The subscription index: a topic trie from filters to subscriber entries.
///
/// `K` identifies a subscriber (a client id, a session handle); `V` is the per-subscription data
/// (granted QoS, options, a mailbox). A `(filter, key)` pair is one subscription: subscribing again
/// to the same filter replaces it (MQTT 5 §3.8.4). Shared subscriptions are kept per
/// `(group, filter)`, so `$share/g/a` and `a` from one client are two subscriptions.
///
/// Read-mostly: the broker wraps it in a `RwLock` (or shards it) and matches under the read lock.
/// [`for_each_match`](Self::for_each_match) takes `&self` and allocates nothing for topics of up to
/// 16 branching levels; shared groups' round-robin cursors are atomics, so picking a member needs
/// no write lock either.
pub struct SubscriptionIndex<K, V> {
    trie: Trie<SubNode<K, V>>,
    len: usize,
}

impl<K: Eq + Hash + Clone, V> Default for SubscriptionIndex<K, V> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K, V> fmt::Debug for SubscriptionIndex<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SubscriptionIndex")
            .field("len", &self.len)
            .field("nodes", &self.trie.live_nodes())
            .finish()
    }
}

/// The place in a node's data where a filter's subscriptions are: the node of its last literal or
/// `+` level, `exact` or (for a trailing `#`) `multi`.
fn slot<K, V>(node: &SubNode<K, V>, multi: bool) -> Option<&Subs<K, V>> {
    if multi {
        node.multi.as_deref()
    } else {
        node.exact.as_deref()
    }
}

fn slot_mut<K, V>(node: &mut SubNode<K, V>, multi: bool) -> &mut Option<Box<Subs<K, V>>> {
    if multi {
        &mut node.multi
    } else {
        &mut node.exact
    }
}

impl<K: Eq + Hash + Clone, V> SubscriptionIndex<K, V> {
    /// An empty index.
    #[must_use]
    pub fn new() -> Self {
        SubscriptionIndex {
            trie: Trie::new(),
            len: 0,
        }
    }

    /// Walks to the node of `filter`'s filter part without creating anything; also says whether
    /// it ended in `#`.
    fn find(&self, filter: &TopicFilter) -> Option<(usize, bool)> {
        let mut idx = ROOT;
        for level in filter.levels() {
            if level == "#" {
                return Some((idx, true));
            }
            idx = self.trie.step(idx, level)?;
        }
        Some((idx, false))
    }

    /// Inserts or replaces the subscription of `key` on `filter`. Shared filters are kept per
    /// `(group, filter)`. Returns the previous value if `key` already had this exact filter (same
    /// share group).
    pub fn insert(&mut self, filter: &TopicFilter, key: K, value: V) -> Option<V> {
        let mut idx = ROOT;
        let mut multi = false;
        for level in filter.levels() {
            if level == "#" {
                multi = true;
                break;
            }
            idx = self.trie.step_or_insert(idx, level);
        }
        let subs = slot_mut(self.trie.data_mut(idx), multi).get_or_insert_with(Box::default);
        let previous = match filter.share_group() {
            None => subs.direct.insert(key, value),
            Some(name) => {
                let group = match subs.shared.iter().position(|g| &*g.name == name) {
                    Some(i) => &mut subs.shared[i],
                    None => {
                        subs.shared.push(Group {
                            name: Box::from(name),
                            filter: Box::from(filter.filter()),
                            members: Entries::default(),
                            cursor: AtomicUsize::new(0),
                        });
                        let last = subs.shared.len() - 1;
                        &mut subs.shared[last]
                    }
                };
                group.members.insert(key, value)
            }
        };
        if previous.is_none() {
            self.len += 1;
        }
        previous
    }

    /// Removes the subscription of `key` on `filter` (same share group), returning its value.
    /// Trie nodes left empty are pruned.
    pub fn remove(&mut self, filter: &TopicFilter, key: &K) -> Option<V> {
        let (idx, multi) = self.find(filter)?;
        let place = slot_mut(self.trie.data_mut(idx), multi);
        let subs = place.as_deref_mut()?;
        let removed = match filter.share_group() {
            None => subs.direct.remove(key),
            Some(name) => {
                let i = subs.shared.iter().position(|g| &*g.name == name)?;
                let removed = subs.shared[i].members.remove(key);
                if subs.shared[i].members.items.is_empty() {
                    subs.shared.swap_remove(i);
                }
                removed
            }
        }?;
        if subs.is_empty() {
            *place = None;
            self.trie.prune(idx, SubNode::is_empty);
        }
        self.len -= 1;
        Some(removed)
    }

    /// The value of `key`'s subscription on `filter` (same share group), if any.
    #[must_use]
    pub fn get(&self, filter: &TopicFilter, key: &K) -> Option<&V> {
        let (idx, multi) = self.find(filter)?;
        let subs = slot(&self.trie.node(idx).data, multi)?;
        match filter.share_group() {
            None => subs.direct.get(key),
            Some(name) => subs.shared.iter().find(|g| &*g.name == name)?.members.get(key),
        }
    }

    /// Keeps only the subscriptions for which `f(key, value)` is true, shared ones included, and
    /// prunes what is left empty. O(number of nodes): for a session's end, prefer removing its
    /// known filters one by one.
    pub fn retain(&mut self, mut f: impl FnMut(&K, &mut V) -> bool) {
        let mut emptied = Vec::new();
        for idx in 0..self.trie.slots() {
            if !self.trie.is_live(idx) {
                continue;
            }
            let node = self.trie.data_mut(idx);
            let mut removed = 0;
            for multi in [false, true] {
                let place = slot_mut(node, multi);
                if let Some(subs) = place.as_deref_mut() {
                    removed += subs.direct.retain(&mut f);
                    for g in &mut subs.shared {
                        removed += g.members.retain(&mut f);
                    }
                    subs.shared.retain(|g| !g.members.items.is_empty());
                    if subs.is_empty() {
                        *place = None;
                    }
                }
            }
            if removed > 0 {
                self.len -= removed;
                if node.is_empty() {
                    emptied.push(idx);
                }
            }
        }
        for idx in emptied {
            self.trie.prune(idx, SubNode::is_empty);
        }
    }

    /// The number of subscriptions: `(filter, key)` pairs, shared members counted one each.
    #[must_use]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there is no subscription.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The number of trie nodes in use, root included: a memory metric.
    #[must_use]
    pub fn node_count(&self) -> usize {
        self.trie.live_nodes()
    }

    /// Calls `f` once per subscription whose filter matches `topic` (MQTT 5 §4.7, as
    /// [`crate::matches()`]): ordinary ones as [`Match::Direct`], and once per matching shared
    /// group `(group, filter)` as [`Match::Shared`] with all its members, for the caller to pick
    /// exactly one.
    ///
    /// A subscriber with several matching filters (`a/+` and `a/#`) is reported once per filter;
    /// the caller delivers once or once per subscription (MQTT 5 §4.7.2 allows both) and, either
    /// way, applies each subscription's options. The order of calls is unspecified.
    ///
    /// `$`-topics are not matched by filters that start with a wildcard (MQTT 5 §4.7.2).
    pub fn for_each_match<'a>(&'a self, topic: &Topic, mut f: impl FnMut(Match<'a, K, V>)) {
        // `rest` is what is left of the topic below the node: `None` once every level is
        // consumed. Each popped entry pushes at most two, so the stack stays as deep as the topic.
        let mut stack: SmallVec<[(usize, Option<&str>); 16]> = SmallVec::new();
        stack.push((ROOT, Some(topic.as_str())));
        let system = topic.is_system();
        while let Some((idx, rest)) = stack.pop() {
            let node = self.trie.node(idx);
            // MQTT 5 §4.7.2: a '$' topic is not matched by '#' or '+' as the first level.
            let wildcards = !(system && idx == ROOT);
            if wildcards {
                // '#' matches the parent level too, so whether or not levels are left.
                if let Some(subs) = &node.data.multi {
                    subs.report(&mut f);
                }
            }
            match rest {
                None => {
                    if let Some(subs) = &node.data.exact {
                        subs.report(&mut f);
                    }
                }
                Some(rest) => {
                    let (level, rest) = split_level(rest);
                    if wildcards {
                        if let Some(plus) = node.plus() {
                            stack.push((plus, rest));
                        }
                    }
                    if let Some(child) = node.child(level) {
                        stack.push((child, rest));
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::topic::MAX_TOPIC_LEN;

    fn f(s: &str) -> TopicFilter {
        TopicFilter::new(s).unwrap()
    }

    fn t(s: &str) -> Topic {
        Topic::new(s).unwrap()
    }

    /// Direct matches as sorted (key, value), shared as sorted (group, filter, sorted member keys).
    #[allow(clippy::type_complexity)]
    fn collect(
        index: &SubscriptionIndex<&'static str, u32>,
        topic: &str,
    ) -> (Vec<(&'static str, u32)>, Vec<(String, String, Vec<&'static str>)>) {
        let mut direct = Vec::new();
        let mut shared = Vec::new();
        index.for_each_match(&t(topic), |m| match m {
            Match::Direct { key, value } => direct.push((*key, *value)),
            Match::Shared {
                group, filter, members, ..
            } => {
                let mut keys: Vec<_> = members.iter().map(|(k, _)| *k).collect();
                keys.sort_unstable();
                shared.push((group.to_owned(), filter.to_owned(), keys));
            }
        });
        direct.sort_unstable();
        shared.sort();
        (direct, shared)
    }

    #[test]
    fn insert_replace_remove() {
        let mut index = SubscriptionIndex::new();
        assert!(index.is_empty());
        assert_eq!(index.insert(&f("a/b"), "c1", 1), None);
        assert_eq!(index.insert(&f("a/b"), "c1", 2), Some(1));
        assert_eq!(index.insert(&f("a/b"), "c2", 3), None);
        assert_eq!(index.insert(&f("$share/g/a/b"), "c1", 4), None);
        assert_eq!(index.insert(&f("$share/h/a/b"), "c1", 5), None);
        assert_eq!(index.insert(&f("$share/g/a/b"), "c1", 6), Some(4));
        assert_eq!(index.len(), 4);
        assert_eq!(index.get(&f("a/b"), &"c1"), Some(&2));
        assert_eq!(index.get(&f("$share/g/a/b"), &"c1"), Some(&6));
        assert_eq!(index.get(&f("$share/x/a/b"), &"c1"), None);
        assert_eq!(index.get(&f("a/b/#"), &"c1"), None);
        assert_eq!(index.get(&f("a"), &"c1"), None);

        assert_eq!(index.remove(&f("a/b"), &"c3"), None);
        assert_eq!(index.remove(&f("a/b/#"), &"c1"), None);
        assert_eq!(index.remove(&f("$share/x/a/b"), &"c1"), None);
        assert_eq!(index.remove(&f("x/y"), &"c1"), None);
        assert_eq!(index.remove(&f("a/b"), &"c1"), Some(2));
        assert_eq!(index.remove(&f("a/b"), &"c1"), None);
        assert_eq!(index.len(), 3);
        assert_eq!(index.remove(&f("$share/g/a/b"), &"c1"), Some(6));
        assert_eq!(index.remove(&f("$share/h/a/b"), &"c1"), Some(5));
        assert_eq!(index.remove(&f("a/b"), &"c2"), Some(3));
        assert!(index.is_empty());
        assert_eq!(index.node_count(), 1, "every node pruned");
    }

    #[test]
    fn prunes_only_empty_branches() {
        let mut index = SubscriptionIndex::new();
        index.insert(&f("a/b/c"), "k", 1);
        index.insert(&f("a/#"), "k", 2);
        index.insert(&f("a/+/c"), "k", 3);
        // root, a, b, c, +, c: a/b/c and a/+/c share a; a/# lives in a.
        assert_eq!(index.node_count(), 6);
        index.remove(&f("a/b/c"), &"k");
        assert_eq!(index.node_count(), 4);
        assert_eq!(collect(&index, "a/x/c").0, [("k", 2), ("k", 3)]);
        index.remove(&f("a/+/c"), &"k");
        assert_eq!(index.node_count(), 2);
        assert_eq!(collect(&index, "a").0, [("k", 2)]);
        index.remove(&f("a/#"), &"k");
        assert_eq!(index.node_count(), 1);
    }

    #[test]
    fn matching_follows_section_4_7() {
        let mut index = SubscriptionIndex::new();
        let filters = [
            "sport/tennis/player1/#",
            "sport/#",
            "sport/+",
            "+/+",
            "/+",
            "+",
            "#",
            "$SYS/#",
            "$SYS/monitor/+",
            "+/monitor/Clients",
            "sport/tennis/+",
            "a//b",
        ];
        for (i, filter) in filters.iter().enumerate() {
            index.insert(&f(filter), filters[i], 0);
        }
        let keys = |topic: &str| collect(&index, topic).0.into_iter().map(|(k, _)| k).collect::<Vec<_>>();
        let expect = |topic: &str, mut want: Vec<&str>| {
            want.sort_unstable();
            assert_eq!(keys(topic), want, "{topic}");
        };
        expect("sport", vec!["sport/#", "+", "#"]);
        expect("sport/", vec!["sport/#", "sport/+", "+/+", "#"]);
        expect(
            "sport/tennis/player1",
            vec!["sport/tennis/player1/#", "sport/#", "#", "sport/tennis/+"],
        );
        expect(
            "sport/tennis/player1/ranking",
            vec!["sport/tennis/player1/#", "sport/#", "#"],
        );
        expect("/finance", vec!["+/+", "/+", "#"]);
        expect("/", vec!["+/+", "/+", "#"]);
        expect("$SYS/monitor/Clients", vec!["$SYS/#", "$SYS/monitor/+"]);
        expect("$SYS", vec!["$SYS/#"]);
        expect("x/monitor/Clients", vec!["+/monitor/Clients", "#"]);
        expect("a//b", vec!["a//b", "#"]);
        expect("a/b", vec!["+/+", "#"]);
    }

    #[test]
    fn shared_groups_reported_once_per_group_and_filter() {
        let mut index = SubscriptionIndex::new();
        index.insert(&f("$share/g/a/+"), "c1", 1);
        index.insert(&f("$share/g/a/+"), "c2", 2);
        index.insert(&f("$share/g/a/#"), "c1", 3);
        index.insert(&f("$share/h/a/+"), "c3", 4);
        index.insert(&f("a/+"), "c1", 5);
        let (direct, shared) = collect(&index, "a/b");
        assert_eq!(direct, [("c1", 5)]);
        assert_eq!(
            shared,
            [
                ("g".into(), "a/#".into(), vec!["c1"]),
                ("g".into(), "a/+".into(), vec!["c1", "c2"]),
                ("h".into(), "a/+".into(), vec!["c3"]),
            ]
        );
        // '$' rule on the filter part of a shared subscription.
        index.insert(&f("$share/g/#"), "c1", 6);
        assert_eq!(collect(&index, "$SYS/x"), (vec![], vec![]));
    }

    #[test]
    fn round_robin_cycles_members() {
        let mut index = SubscriptionIndex::new();
        for k in ["c1", "c2", "c3"] {
            index.insert(&f("$share/g/a"), k, 0);
        }
        let mut picked = Vec::new();
        for _ in 0..6 {
            index.for_each_match(&t("a"), |m| {
                picked.push(*m.pick_round_robin().unwrap().0);
            });
        }
        assert_eq!(picked.len(), 6);
        assert_eq!(picked[..3], picked[3..]);
        let mut first: Vec<_> = picked[..3].to_vec();
        first.sort_unstable();
        assert_eq!(first, ["c1", "c2", "c3"]);

        index.insert(&f("b"), "d", 7);
        index.for_each_match(&t("b"), |m| {
            assert_eq!(m.pick_round_robin(), Some((&"d", &7)));
        });
    }

    #[test]
    fn many_subscribers_on_one_filter() {
        // Crosses the position-index threshold both ways.
        let mut index: SubscriptionIndex<u32, u32> = SubscriptionIndex::new();
        let filter = f("broadcast/#");
        let shared = f("$share/g/broadcast/#");
        for k in 0..1000 {
            assert_eq!(index.insert(&filter, k, k), None);
            assert_eq!(index.insert(&shared, k, k), None);
        }
        for k in 0..1000 {
            assert_eq!(index.insert(&filter, k, k + 1), Some(k));
        }
        assert_eq!(index.len(), 2000);
        for k in (0..1000).step_by(2) {
            assert_eq!(index.remove(&filter, &k), Some(k + 1));
            assert_eq!(index.remove(&shared, &k), Some(k));
        }
        for k in 0..1000 {
            let want = (k % 2 == 1).then_some(k + 1);
            assert_eq!(index.get(&filter, &k), want.as_ref());
        }
        let mut direct = 0;
        let mut members = 0;
        index.for_each_match(&t("broadcast/x"), |m| match m {
            Match::Direct { key, value } => {
                assert_eq!(*value, key + 1);
                direct += 1;
            }
            Match::Shared { members: m, .. } => members += m.len(),
        });
        assert_eq!((direct, members), (500, 500));
        for k in (1..1000).step_by(2) {
            assert_eq!(index.remove(&filter, &k), Some(k + 1));
            assert_eq!(index.remove(&shared, &k), Some(k));
        }
        assert!(index.is_empty());
        assert_eq!(index.node_count(), 1);
    }

    #[test]
    fn retain_removes_and_prunes() {
        let mut index = SubscriptionIndex::new();
        for (filter, key) in [
            ("a/b", "x"),
            ("a/b", "y"),
            ("a/#", "x"),
            ("$share/g/a/+", "x"),
            ("$share/g/a/+", "y"),
            ("c", "x"),
        ] {
            index.insert(&f(filter), key, 0);
        }
        let before = index.node_count();
        index.retain(|k, v| {
            *v += 1;
            *k != "x"
        });
        assert_eq!(index.len(), 2);
        assert_eq!(index.get(&f("a/b"), &"y"), Some(&1));
        assert_eq!(index.get(&f("$share/g/a/+"), &"y"), Some(&1));
        assert_eq!(index.get(&f("c"), &"x"), None);
        assert!(index.node_count() < before);
        index.retain(|_, _| false);
        assert!(index.is_empty());
        assert_eq!(index.node_count(), 1);
    }

    /// 65535-level filters and topics must not overflow the stack anywhere: insert, match, remove,
    /// drop. A recursive trie would.
    #[test]
    fn deep_filters_and_topics() {
        let deep = "/".repeat(MAX_TOPIC_LEN);
        let mut index = SubscriptionIndex::new();
        index.insert(&f(&deep), 1u8, 1u8);
        let plus_deep = format!("{}/#", "+/".repeat(MAX_TOPIC_LEN / 2 - 1).trim_end_matches('/'));
        index.insert(&f(&plus_deep), 2, 2);
        let mut n = 0;
        index.for_each_match(&t(&deep), |_| n += 1);
        assert_eq!(n, 2);
        assert_eq!(index.remove(&f(&deep), &1), Some(1));
        assert_eq!(index.node_count(), MAX_TOPIC_LEN / 2);
        // Dropped with a deep branch still in it.
        drop(index);
    }
}
