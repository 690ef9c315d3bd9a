//! The common model of unigate: what every protocol is translated to.
//!
//! MQTT, CoAP, LwM2M and HTTP clients meet on one pub/sub namespace. This crate is that
//! namespace's vocabulary and its two indexes; it knows no protocol, does no I/O and reads no
//! clock (callers pass `now_ms`).
//!
//! # Layout
//!
//! - `topic`: [`Topic`] (a validated name) and [`TopicFilter`] (a validated filter, possibly a
//!   shared subscription), and [`matches()`], the one reference matcher (MQTT 5 §4.7).
//! - `qos`, `message`: [`QoS`], and [`Message`] with its [`Properties`] (MQTT 5's set, onto
//!   which the other protocols map), [`Origin`] and expiry deadline.
//! - `subscriptions`: [`SubscriptionIndex`], filters → subscribers, asked "who gets this topic?"
//!   on every publish.
//! - `retained`: [`RetainedIndex`], topics → retained messages, asked "what matches this
//!   filter?" on every subscribe.
//! - `trie`: the arena trie under both indexes.
//! - `error`: [`TopicError`], [`InvalidQoS`]: what can be wrong with input, each naming the MQTT
//!   clause.
//!
//! # Matching (MQTT 5 §4.7)
//!
//! Topics and filters are split into levels on `/`; empty levels are levels. `+` matches exactly
//! one level, `#` (last, alone in its level) matches any number of levels *including none*, so
//! `sport/#` matches `sport`. A topic starting with `$` (`$SYS/...`, reserved for the server) is
//! not matched by a filter whose first level is a wildcard: `#` and `+/monitor` do not see
//! `$SYS/monitor`, `$SYS/#` does. That rule is applied in [`matches()`] and in both indexes
//! alike.
//!
//! # Why a trie, and why matching allocates nothing
//!
//! A broker may hold hundreds of thousands of subscriptions and match every published message
//! against them. Testing each filter is O(subscriptions) per message. A trie over filter levels
//! makes a match cost proportional to the levels of the topic times the wildcard branches that
//! exist, whatever the number of subscriptions: at each node follow the child for the next
//! literal level and the `+` child, and collect the `#` subscriptions on the way.
//!
//! Matching runs for every message under the index's read lock, on all cores, so it must be cheap
//! and allocation-free: the walk keeps `(node, rest-of-topic)` pairs on an explicit stack inline
//! in a `SmallVec` and slices the topic `&str` level by level, reporting matches through a
//! callback that borrows the entries rather than collecting them. The trie's nodes live in one
//! arena and refer to each other by index, so that no operation recurses: topics and filters come
//! from the network with up to 65535 levels, and a recursive walk (or a recursive `Drop`) would
//! let a client overflow the stack.
//!
//! # Shared subscriptions (MQTT 5 §4.8.2)
//!
//! `$share/{group}/{filter}` subscriptions are kept per `(group, filter)`: a matching publish is
//! reported once per group with all its members ([`Match::Shared`]), and the caller delivers to
//! exactly one of them, typically with the group's round-robin cursor
//! ([`Match::pick_round_robin`]), which is an atomic so that picking needs only the read lock.
//! The same client may belong to several groups, or subscribe to the same filter both shared and
//! not; those are distinct subscriptions.

//!
//! # Example
//!
//! ```
//! use unigate_pubsub::{Bytes, Message, QoS, SubscriptionIndex, Topic, TopicFilter};
//!
//! # fn main() -> Result<(), unigate_pubsub::TopicError> {
//! let mut index: SubscriptionIndex<&str, QoS> = SubscriptionIndex::new();
//! index.insert(&TopicFilter::new("sport/+/player1")?, "alice", QoS::AtLeastOnce);
//! index.insert(&TopicFilter::new("$share/workers/sport/#")?, "w1", QoS::AtMostOnce);
//! index.insert(&TopicFilter::new("$share/workers/sport/#")?, "w2", QoS::AtMostOnce);
//!
//! let msg = Message::new(Topic::new("sport/tennis/player1")?, Bytes::from_static(b"15-0"))
//!     .with_expiry_interval(60, 1_700_000_000_000);
//! let mut deliveries = Vec::new();
//! index.for_each_match(&msg.topic, |m| {
//!     // One member per shared group, every direct subscriber.
//!     if let Some((client, granted)) = m.pick_round_robin() {
//!         deliveries.push((*client, msg.qos.min(*granted)));
//!     }
//! });
//! deliveries.sort();
//! assert_eq!(deliveries.len(), 2);
//! assert_eq!(deliveries[0], ("alice", QoS::AtMostOnce));
//! assert!(matches!(deliveries[1].0, "w1" | "w2"));
//! # Ok(())
//! # }
//! ```

#![warn(missing_docs)]

mod error;
mod message;
mod qos;
mod retained;
mod subscriptions;
mod topic;
mod trie;

pub use error::{InvalidQoS, TopicError};
pub use message::{Message, Origin, PayloadFormat, Properties, Protocol};
pub use qos::QoS;
pub use retained::RetainedIndex;
pub use subscriptions::{Match, SubscriptionIndex};
pub use topic::{matches, Topic, TopicFilter, MAX_TOPIC_LEN, SHARE_PREFIX};

/// Re-exported so that users of [`Message`] need not depend on `bytes` themselves.
pub use bytes::Bytes;

#[cfg(test)]
mod tests {
    use super::*;

    /// The broker shares these across threads (indexes behind a `RwLock`, messages in `Arc`s).
    #[test]
    fn shareable_across_threads() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Topic>();
        assert_send_sync::<TopicFilter>();
        assert_send_sync::<Message>();
        assert_send_sync::<SubscriptionIndex<std::sync::Arc<str>, u64>>();
        assert_send_sync::<RetainedIndex<std::sync::Arc<Message>>>();
        assert_send_sync::<Match<'static, u32, u32>>();
        assert_send_sync::<TopicError>();
    }
}
