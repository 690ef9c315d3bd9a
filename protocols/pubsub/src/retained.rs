//! Retained messages by topic, looked up by filter when a client subscribes (MQTT 5 §3.3.1.3).
//!
//! The mirror image of the subscription index: here the trie holds topics and the query is a
//! filter. A literal level follows one child, `+` fans out to every child, `#` takes the whole
//! subtree. At the root, `+` and `#` skip the children whose level starts with `$` (MQTT 5
//! §4.7.2), the same rule as [`crate::matches()`].

use std::fmt;

use smallvec::SmallVec;

use crate::topic::{split_level, Topic, TopicFilter};
use crate::trie::{Trie, ROOT};

/// Retained values by topic, with lookup by filter.
///
/// `V` is stored inline in the trie nodes: make it small (an `Arc<Message>`, a storage key). The
/// broker wraps the index in a lock; lookups take `&self`.
pub struct RetainedIndex<V> {
    trie: Trie<Option<(Topic, V)>>,
    len: usize,
}

impl<V> Default for RetainedIndex<V> {
    fn default() -> Self {
        Self::new()
    }
}

impl<V> fmt::Debug for RetainedIndex<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetainedIndex")
            .field("len", &self.len)
            .field("nodes", &self.trie.live_nodes())
            .finish()
    }
}

impl<V> RetainedIndex<V> {
    /// An empty index.
    #[must_use]
    pub fn new() -> Self {
        RetainedIndex {
            trie: Trie::new(),
            len: 0,
        }
    }

    /// The node of `topic`, if it exists.
    fn find(&self, topic: &Topic) -> Option<usize> {
        let mut idx = ROOT;
        for level in topic.levels() {
            idx = self.trie.node(idx).child(level)?;
        }
        Some(idx)
    }

    /// Sets the retained value of `topic`, returning the one it replaces.
    ///
    /// (Whether an empty payload clears the retained message, MQTT 5 §3.3.1.3, is the caller's
    /// decision: it calls [`remove`](Self::remove) then.)
    pub fn insert(&mut self, topic: &Topic, value: V) -> Option<V> {
        let mut idx = ROOT;
        for level in topic.levels() {
            idx = self.trie.step_or_insert(idx, level);
        }
        let previous = self.trie.data_mut(idx).replace((topic.clone(), value)).map(|(_, v)| v);
        if previous.is_none() {
            self.len += 1;
        }
        previous
    }

    /// Removes the retained value of `topic`, pruning the nodes left empty.
    pub fn remove(&mut self, topic: &Topic) -> Option<V> {
        let idx = self.find(topic)?;
        let (_, value) = self.trie.data_mut(idx).take()?;
        self.trie.prune(idx, Option::is_none);
        self.len -= 1;
        Some(value)
    }

    /// The retained value of `topic`.
    #[must_use]
    pub fn get(&self, topic: &Topic) -> Option<&V> {
        let idx = self.find(topic)?;
        self.trie.node(idx).data.as_ref().map(|(_, v)| v)
    }

    /// The number of retained topics.
    #[must_use]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is retained.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The number of trie nodes in use, root included: a memory metric.
    #[must_use]
    pub fn node_count(&self) -> usize {
        self.trie.live_nodes()
    }

    /// Every retained topic and value, in no particular order (for the management API and
    /// snapshots).
    pub fn iter(&self) -> impl Iterator<Item = (&Topic, &V)> + '_ {
        self.trie.data_iter().filter_map(|d| d.as_ref().map(|(t, v)| (t, v)))
    }

    /// Calls `f` for each retained topic that `filter` matches (its filter part: the share group
    /// is ignored, though MQTT 5 §4.8.2 sends no retained messages for shared subscriptions; that
    /// is the caller's rule). The same matching as [`crate::matches()`], `$` rule included; order
    /// unspecified.
    pub fn for_each_match<'a>(&'a self, filter: &TopicFilter, mut f: impl FnMut(&'a Topic, &'a V)) {
        let mut emit = |data: &'a Option<(Topic, V)>| {
            if let Some((t, v)) = data {
                f(t, v);
            }
        };
        // (node, rest of the filter below it); `None` once all levels are consumed.
        let mut stack: SmallVec<[(usize, Option<&str>); 16]> = SmallVec::new();
        // Nodes whose whole subtree matches (under a '#').
        let mut subtree: SmallVec<[usize; 16]> = SmallVec::new();
        stack.push((ROOT, Some(filter.filter())));
        while let Some((idx, rest)) = stack.pop() {
            let node = self.trie.node(idx);
            let Some(rest) = rest else {
                emit(&node.data);
                continue;
            };
            let (level, rest) = split_level(rest);
            match level {
                "#" => {
                    // '#' matches the parent level too (`sport/#` matches `sport`); the root
                    // never holds a value, topics having at least one level.
                    emit(&node.data);
                    for (child_level, child) in node.children() {
                        if idx != ROOT || !child_level.starts_with('$') {
                            subtree.push(child);
                        }
                    }
                    while let Some(i) = subtree.pop() {
                        let n = self.trie.node(i);
                        emit(&n.data);
                        subtree.extend(n.children().map(|(_, c)| c));
                    }
                }
                "+" => {
                    for (child_level, child) in node.children() {
                        if idx != ROOT || !child_level.starts_with('$') {
                            stack.push((child, rest));
                        }
                    }
                }
                literal => {
                    if let Some(child) = node.child(literal) {
                        stack.push((child, rest));
                    }
                }
            }
        }
    }

    /// Keeps only the entries for which `f` is true (for purging expired messages: pass `now_ms`
    /// in the closure), pruning the nodes left empty. O(number of nodes).
    pub fn retain(&mut self, mut f: impl FnMut(&Topic, &mut V) -> bool) {
        let mut emptied = Vec::new();
        for idx in 0..self.trie.slots() {
            if !self.trie.is_live(idx) {
                continue;
            }
            let data = self.trie.data_mut(idx);
            if let Some((topic, value)) = data {
                if !f(topic, value) {
                    *data = None;
                    emptied.push(idx);
                }
            }
        }
        self.len -= emptied.len();
        for idx in emptied {
            self.trie.prune(idx, Option::is_none);
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

    fn lookup(index: &RetainedIndex<u32>, filter: &str) -> Vec<String> {
        let mut out = Vec::new();
        index.for_each_match(&f(filter), |topic, _| out.push(topic.to_string()));
        out.sort();
        out
    }

    #[test]
    fn insert_get_remove_prune() {
        let mut index = RetainedIndex::new();
        assert!(index.is_empty());
        assert_eq!(index.insert(&t("a/b"), 1), None);
        assert_eq!(index.insert(&t("a/b"), 2), Some(1));
        assert_eq!(index.insert(&t("a"), 3), None);
        assert_eq!(index.len(), 2);
        assert_eq!(index.get(&t("a/b")), Some(&2));
        assert_eq!(index.get(&t("a")), Some(&3));
        assert_eq!(index.get(&t("a/b/c")), None);
        assert_eq!(index.get(&t("b")), None);
        assert_eq!(index.remove(&t("a/b")), Some(2));
        assert_eq!(index.remove(&t("a/b")), None);
        assert_eq!(index.node_count(), 2);
        assert_eq!(index.remove(&t("a/b/c")), None);
        assert_eq!(index.remove(&t("a")), Some(3));
        assert!(index.is_empty());
        assert_eq!(index.node_count(), 1);
    }

    #[test]
    fn lookup_by_filter() {
        let mut index = RetainedIndex::new();
        for (i, topic) in [
            "sport",
            "sport/",
            "sport/tennis",
            "sport/tennis/player1",
            "sport/tennis/player1/ranking",
            "/finance",
            "/",
            "$SYS/uptime",
            "$SYS",
            "a//b",
            "a/$x",
        ]
        .into_iter()
        .enumerate()
        {
            index.insert(&t(topic), u32::try_from(i).unwrap());
        }
        let mut expected = [
            "/",
            "/finance",
            "a//b",
            "a/$x",
            "sport",
            "sport/",
            "sport/tennis",
            "sport/tennis/player1",
            "sport/tennis/player1/ranking",
        ];
        expected.sort_unstable();
        assert_eq!(lookup(&index, "#"), expected);
        assert_eq!(
            lookup(&index, "sport/#"),
            [
                "sport",
                "sport/",
                "sport/tennis",
                "sport/tennis/player1",
                "sport/tennis/player1/ranking"
            ]
        );
        assert_eq!(lookup(&index, "sport/+"), ["sport/", "sport/tennis"]);
        assert_eq!(
            lookup(&index, "sport/tennis/player1/#"),
            ["sport/tennis/player1", "sport/tennis/player1/ranking"]
        );
        assert_eq!(lookup(&index, "+"), ["sport"]);
        assert_eq!(
            lookup(&index, "+/+"),
            ["/", "/finance", "a/$x", "sport/", "sport/tennis"]
        );
        assert_eq!(lookup(&index, "/+"), ["/", "/finance"]);
        assert_eq!(lookup(&index, "$SYS/#"), ["$SYS", "$SYS/uptime"]);
        assert_eq!(lookup(&index, "+/uptime"), Vec::<String>::new());
        assert_eq!(lookup(&index, "a/+"), ["a/$x"]);
        assert_eq!(lookup(&index, "a/+/b"), ["a//b"]);
        assert_eq!(lookup(&index, "sport/tennis"), ["sport/tennis"]);
        assert_eq!(lookup(&index, "nothing/#"), Vec::<String>::new());
        // The share group is ignored.
        assert_eq!(lookup(&index, "$share/g/sport/+"), ["sport/", "sport/tennis"]);
        assert_eq!(index.iter().count(), 11);
    }

    #[test]
    fn retain_purges_and_prunes() {
        let mut index = RetainedIndex::new();
        for (i, topic) in ["a/b/c", "a/b", "a/x/y", "z"].into_iter().enumerate() {
            index.insert(&t(topic), u32::try_from(i).unwrap());
        }
        index.retain(|topic, v| {
            *v += 10;
            topic.as_str().starts_with("a/b")
        });
        assert_eq!(index.len(), 2);
        assert_eq!(index.get(&t("a/b")), Some(&11));
        assert_eq!(index.get(&t("a/b/c")), Some(&10));
        assert_eq!(index.node_count(), 4); // root, a, b, c
        index.retain(|_, _| false);
        assert!(index.is_empty());
        assert_eq!(index.node_count(), 1);
    }

    #[test]
    fn deep_topics() {
        let deep = t(&"/".repeat(MAX_TOPIC_LEN));
        let mut index = RetainedIndex::new();
        index.insert(&deep, 1u8);
        assert_eq!(index.get(&deep), Some(&1));
        let mut n = 0;
        index.for_each_match(&f("#"), |_, _| n += 1);
        index.for_each_match(&f(&format!("{}#", "+/".repeat(1000))), |_, _| n += 1);
        assert_eq!(n, 2);
        index.insert(&t("x"), 2);
        index.retain(|_, v| *v == 2);
        assert_eq!(index.node_count(), 2);
        index.insert(&deep, 1u8);
        drop(index);
    }
}
