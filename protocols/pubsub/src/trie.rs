//! The level trie under both indexes: nodes in one arena (`Vec`), linked by index.
//!
//! Why an arena rather than nodes that own their children: filters and topics may have up to 65535
//! levels, and both come from the network. Owned nested nodes would make dropping, pruning and
//! walking recursive, and a client could overflow the stack with `a/a/a/...`. With an arena every
//! walk is a loop or an explicit stack, dropping is dropping a `Vec`, and pruning climbs `parent`
//! links. Freed slots are reused through a free list.
//!
//! Most nodes have a handful of children (`site` → `device` → ...), a few have thousands (device
//! ids). Children are a short `Vec` scanned linearly up to [`FEW`] entries, which is faster than
//! hashing the level, and a `HashMap` (std's keyed SipHash: levels come from clients, so no
//! unkeyed fast hash) above.

use std::collections::HashMap;
use std::sync::Arc;

/// The root's index: it stands for "no level consumed yet" and is never freed.
pub(crate) const ROOT: usize = 0;

/// `parent` of the root and of free slots.
const NONE: usize = usize::MAX;

/// The level that gets the dedicated wildcard edge: a filter's `+` (topic levels never equal it).
const PLUS: &str = "+";

/// Up to this many literal children are kept in a `Vec`.
const FEW: usize = 8;

/// A node's literal children.
enum Children {
    /// At most [`FEW`], scanned linearly.
    Few(Vec<(Arc<str>, usize)>),
    /// More, hashed; back to `Few` when they drop to half of [`FEW`].
    Many(HashMap<Arc<str>, usize>),
}

impl Children {
    fn get(&self, level: &str) -> Option<usize> {
        match self {
            Children::Few(v) => v.iter().find(|(l, _)| **l == *level).map(|&(_, idx)| idx),
            Children::Many(m) => m.get(level).copied(),
        }
    }

    fn insert(&mut self, level: Arc<str>, idx: usize) {
        match self {
            Children::Few(v) if v.len() < FEW => v.push((level, idx)),
            Children::Few(v) => {
                let mut m: HashMap<Arc<str>, usize> = v.drain(..).collect();
                m.insert(level, idx);
                *self = Children::Many(m);
            }
            Children::Many(m) => {
                m.insert(level, idx);
            }
        }
    }

    fn remove(&mut self, level: &str) {
        match self {
            Children::Few(v) => {
                if let Some(i) = v.iter().position(|(l, _)| **l == *level) {
                    v.swap_remove(i);
                }
            }
            Children::Many(m) => {
                m.remove(level);
                if m.len() <= FEW / 2 {
                    *self = Children::Few(m.drain().collect());
                }
            }
        }
    }

    fn is_empty(&self) -> bool {
        match self {
            Children::Few(v) => v.is_empty(),
            Children::Many(m) => m.is_empty(),
        }
    }

    fn iter(&self) -> impl Iterator<Item = (&str, usize)> + '_ {
        let (few, many) = match self {
            Children::Few(v) => (Some(v.iter().map(|(l, idx)| (&**l, *idx))), None),
            Children::Many(m) => (None, Some(m.iter().map(|(l, idx)| (&**l, *idx)))),
        };
        few.into_iter().flatten().chain(many.into_iter().flatten())
    }
}

/// One level of the trie.
pub(crate) struct Node<T> {
    /// The parent's index (`NONE` for the root and free slots).
    parent: usize,
    /// The level on the edge from the parent, to unlink this node when it is pruned; shared with
    /// the key in the parent's `children`.
    label: Arc<str>,
    /// Children by literal level (empty levels included).
    children: Children,
    /// The child for a `+` level, apart so that matching needs no second hash lookup.
    plus: Option<usize>,
    /// What the index keeps at this node.
    pub(crate) data: T,
}

impl<T> Node<T> {
    /// Children by literal level.
    pub(crate) fn children(&self) -> impl Iterator<Item = (&str, usize)> + '_ {
        self.children.iter()
    }

    /// The child for `level`, a literal level (a topic level, or a filter level without `+`).
    pub(crate) fn child(&self, level: &str) -> Option<usize> {
        self.children.get(level)
    }

    /// The child for a `+` level.
    pub(crate) fn plus(&self) -> Option<usize> {
        self.plus
    }
}

/// The arena.
pub(crate) struct Trie<T> {
    nodes: Vec<Node<T>>,
    free: Vec<usize>,
}

impl<T: Default> Trie<T> {
    /// A trie with only the root.
    pub(crate) fn new() -> Self {
        Trie {
            nodes: vec![Node {
                parent: NONE,
                label: Arc::from(""),
                children: Children::Few(Vec::new()),
                plus: None,
                data: T::default(),
            }],
            free: Vec::new(),
        }
    }

    /// The node at `idx`, an index this trie handed out and that was not pruned since.
    pub(crate) fn node(&self, idx: usize) -> &Node<T> {
        &self.nodes[idx]
    }

    /// The data at `idx`, mutably.
    pub(crate) fn data_mut(&mut self, idx: usize) -> &mut T {
        &mut self.nodes[idx].data
    }

    /// The child of `idx` for `level` (`+` takes the wildcard edge), if it exists.
    pub(crate) fn step(&self, idx: usize, level: &str) -> Option<usize> {
        let node = &self.nodes[idx];
        if level == PLUS {
            node.plus
        } else {
            node.child(level)
        }
    }

    /// The child of `idx` for `level`, created if missing.
    pub(crate) fn step_or_insert(&mut self, idx: usize, level: &str) -> usize {
        if let Some(child) = self.step(idx, level) {
            return child;
        }
        let label: Arc<str> = Arc::from(level);
        let child = Node {
            parent: idx,
            label: label.clone(),
            children: Children::Few(Vec::new()),
            plus: None,
            data: T::default(),
        };
        let child_idx = match self.free.pop() {
            Some(slot) => {
                self.nodes[slot] = child;
                slot
            }
            None => {
                self.nodes.push(child);
                self.nodes.len() - 1
            }
        };
        let parent = &mut self.nodes[idx];
        if level == PLUS {
            parent.plus = Some(child_idx);
        } else {
            parent.children.insert(label, child_idx);
        }
        child_idx
    }

    /// Frees `idx` and then its ancestors for as long as they hold nothing (no children and
    /// `is_empty(data)`), so that removals leave no dead branches behind.
    pub(crate) fn prune(&mut self, mut idx: usize, is_empty: impl Fn(&T) -> bool) {
        while idx != ROOT {
            let node = &mut self.nodes[idx];
            if node.parent == NONE || !node.children.is_empty() || node.plus.is_some() || !is_empty(&node.data) {
                return;
            }
            let parent = node.parent;
            let label = std::mem::replace(&mut node.label, Arc::from(""));
            node.parent = NONE;
            // Release the table, which may have grown before its children were pruned.
            node.children = Children::Few(Vec::new());
            let parent_node = &mut self.nodes[parent];
            if parent_node.plus == Some(idx) {
                parent_node.plus = None;
            } else {
                parent_node.children.remove(&label);
            }
            self.free.push(idx);
            idx = parent;
        }
    }

    /// The number of slots (live or free): node indices are below it.
    pub(crate) fn slots(&self) -> usize {
        self.nodes.len()
    }

    /// Whether `idx` is a live node (the root, or not pruned).
    pub(crate) fn is_live(&self, idx: usize) -> bool {
        idx == ROOT || self.nodes.get(idx).is_some_and(|n| n.parent != NONE)
    }

    /// The number of live nodes, root included.
    pub(crate) fn live_nodes(&self) -> usize {
        self.nodes.len() - self.free.len()
    }

    /// Every live node's data, in slot order.
    pub(crate) fn data_iter(&self) -> impl Iterator<Item = &T> + '_ {
        self.nodes
            .iter()
            .enumerate()
            .filter(|(idx, n)| *idx == ROOT || n.parent != NONE)
            .map(|(_, n)| &n.data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_prune_and_reuse() {
        let mut trie: Trie<Option<u8>> = Trie::new();
        let a = trie.step_or_insert(ROOT, "a");
        let b = trie.step_or_insert(a, "+");
        let c = trie.step_or_insert(b, "c");
        assert_eq!(trie.step(ROOT, "a"), Some(a));
        assert_eq!(trie.step(a, "+"), Some(b));
        assert_eq!(trie.node(a).plus(), Some(b));
        assert_eq!(trie.node(a).child("+"), None);
        assert_eq!(trie.step_or_insert(a, "+"), b);
        assert_eq!(trie.live_nodes(), 4);
        *trie.data_mut(b) = Some(1);
        // c is empty: pruned, and the climb stops at b, which holds data.
        trie.prune(c, Option::is_none);
        assert_eq!(trie.live_nodes(), 3);
        assert!(!trie.is_live(c));
        assert_eq!(trie.step(b, "c"), None);
        *trie.data_mut(b) = None;
        trie.prune(b, Option::is_none);
        assert_eq!(trie.live_nodes(), 1);
        assert_eq!(trie.step(ROOT, "a"), None);
        // Pruning a free slot or the root does nothing.
        trie.prune(b, Option::is_none);
        trie.prune(ROOT, Option::is_none);
        assert_eq!(trie.live_nodes(), 1);
        // Slots are reused.
        let x = trie.step_or_insert(ROOT, "x");
        assert!(x < 4);
        assert_eq!(trie.slots(), 4);
        assert_eq!(trie.data_iter().count(), 2);
    }

    #[test]
    fn children_grow_into_a_map_and_back() {
        let mut trie: Trie<Option<u8>> = Trie::new();
        let names: Vec<String> = (0..40).map(|i| format!("n{i}")).collect();
        let mut idx = Vec::new();
        for (i, name) in names.iter().enumerate() {
            idx.push(trie.step_or_insert(ROOT, name));
            *trie.data_mut(idx[i]) = Some(1);
            for (j, seen) in names.iter().enumerate().take(i + 1) {
                assert_eq!(trie.step(ROOT, seen), Some(idx[j]));
            }
            assert_eq!(trie.node(ROOT).children().count(), i + 1);
        }
        assert!(matches!(trie.node(ROOT).children, Children::Many(_)));
        assert_eq!(trie.step(ROOT, "n40"), None);
        for (i, name) in names.iter().enumerate() {
            *trie.data_mut(idx[i]) = None;
            trie.prune(idx[i], Option::is_none);
            assert_eq!(trie.step(ROOT, name), None);
            for (j, rest) in names.iter().enumerate().skip(i + 1) {
                assert_eq!(trie.step(ROOT, rest), Some(idx[j]), "{rest} after removing {name}");
            }
        }
        assert!(matches!(trie.node(ROOT).children, Children::Few(_)));
        assert_eq!(trie.live_nodes(), 1);
    }
}
