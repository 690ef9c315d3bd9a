//! Durable state: retained messages and persistent sessions, behind the [`Store`] trait.
//!
//! The broker keeps everything in memory and routes from memory; the store is a write-behind
//! journal of what must survive a crash, read back only at start-up ([`Store::load`]). Writes are
//! [`Op`]s sent to one writer thread ([`Persister`]) that applies whatever has queued up in one
//! transaction and one fsync (group commit), then tells the waiting connections
//! ([`crate::broker::SessionLink::stored`]) so that they send the PUBACK / PUBREC / PUBCOMP they
//! held back. Nothing on a connection's thread waits for the disk.
//!
//! Layout (see [`redb_store`]): a session is keyed by its serial (a new session under the same
//! client id gets a new serial, so late operations of an ended session never touch its
//! successor); its queue entries by (serial, seq) with the seq rising per session; a message is
//! stored once by id and referenced from every queue entry, and deleted with its last reference.
//!
//! Two implementations: [`redb_store::RedbStore`] (the default, a file) and
//! [`memory::MemoryStore`] (a model in maps, for tests; `--storage memory` uses no store at all).

pub mod codec;
pub mod memory;
pub mod redb_store;
pub mod writer;

use std::collections::BTreeMap;
use std::sync::Arc;

use smallvec::SmallVec;
use unigate_pubsub::{Message, QoS, Topic};

pub use writer::{Commit, Persister, StoreMetrics, Waiter};

/// A store failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The store file cannot be opened or written (I/O, permissions, already open).
    #[error("storage I/O error on {path}: {message}")]
    Io {
        /// The file.
        path: String,
        /// What failed.
        message: String,
    },
    /// The store file is damaged (half-written, truncated, not a store, or a record that does
    /// not decode).
    #[error("the store {path} is corrupt: {message}")]
    Corrupt {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// Another process has the store open.
    #[error("the store {path} is in use by another process")]
    Locked {
        /// The file.
        path: String,
    },
    /// A record does not decode (inside [`StoreError::Corrupt`] when loading).
    #[error("bad record: {0}")]
    Decode(&'static str),
    /// The writer thread is gone.
    #[error("the storage writer has stopped")]
    Stopped,
}

/// What one session keeps on disk besides its queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    /// The client identifier.
    pub client_id: Arc<str>,
    /// Session expiry interval, seconds (u32::MAX: never).
    pub expiry_interval: u32,
    /// When the last connection went away (ms since the epoch); `None` while connected. A
    /// session connected at a crash counts as disconnected at the restart.
    pub disconnected_at: Option<u64>,
    /// Subscriptions: filter (as subscribed, `$share/…` included) and options.
    pub subscriptions: Vec<(String, StoredSubOptions)>,
    /// The will: held at CONNECT (published after a crash as the connection was lost) or
    /// waiting for its delay after a disconnect.
    pub will: Option<StoredWill>,
}

/// Subscription options as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredSubOptions {
    /// Granted QoS.
    pub qos: QoS,
    /// No local.
    pub no_local: bool,
    /// Retain as published.
    pub retain_as_published: bool,
    /// Subscription identifier.
    pub sub_id: Option<u32>,
}

/// A will as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredWill {
    /// The message.
    pub msg: Arc<Message>,
    /// Will delay, seconds.
    pub delay: u32,
    /// Message expiry interval counted from publication.
    pub expiry: Option<u32>,
    /// When it is due (ms since the epoch) once the connection is gone; `None` while the
    /// connection is up.
    pub due_at: Option<u64>,
}

/// One entry of a session's queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueEntry {
    /// The stored message; `None` once a QoS 2 delivery was released (PUBREC received): only
    /// the PUBREL remains to be completed.
    pub msg_id: Option<u64>,
    /// Delivery QoS.
    pub qos: QoS,
    /// Delivery RETAIN flag.
    pub retain: bool,
    /// Subscription identifiers.
    pub sub_ids: SmallVec<[u32; 1]>,
    /// The `$share/{group}/{filter}` it came through.
    pub shared: Option<String>,
}

/// A write to the store.
#[derive(Debug, Clone)]
pub enum Op {
    /// Creates or replaces a session record.
    PutSession {
        /// Session serial.
        serial: u64,
        /// The record.
        record: Box<SessionRecord>,
    },
    /// Deletes a session with its queue and incoming QoS 2 state.
    DeleteSession {
        /// Session serial.
        serial: u64,
    },
    /// Stores a message referenced by the queue entries that follow.
    PutMessage {
        /// Message id.
        id: u64,
        /// The message.
        msg: Arc<Message>,
    },
    /// Appends to a session's queue.
    Enqueue {
        /// Session serial.
        serial: u64,
        /// Position in the session's queue.
        seq: u64,
        /// The entry.
        entry: Box<QueueEntry>,
    },
    /// A QoS 2 delivery was received by the client (PUBREC): keep only its packet id.
    Release {
        /// Session serial.
        serial: u64,
        /// Queue position.
        seq: u64,
    },
    /// Removes a queue entry (acknowledged, dropped or expired).
    Remove {
        /// Session serial.
        serial: u64,
        /// Queue position.
        seq: u64,
    },
    /// Sets the retained message of its topic.
    SetRetained(Arc<Message>),
    /// Clears the retained message of a topic.
    DeleteRetained(Topic),
    /// An incoming QoS 2 packet id awaits PUBREL.
    PutIncomingQos2 {
        /// Session serial.
        serial: u64,
        /// Packet id.
        packet_id: u16,
    },
    /// An incoming QoS 2 packet id was released.
    DeleteIncomingQos2 {
        /// Session serial.
        serial: u64,
        /// Packet id.
        packet_id: u16,
    },
}

/// A stored session with its state, as loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadedSession {
    /// Its serial.
    pub serial: u64,
    /// Its record.
    pub record: SessionRecord,
    /// Its queue, in order: (seq, entry, the message unless released).
    pub queue: Vec<(u64, QueueEntry, Option<Arc<Message>>)>,
    /// Incoming QoS 2 packet ids awaiting PUBREL.
    pub incoming_qos2: Vec<u16>,
}

/// Everything a store holds, as the broker is rebuilt from it.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// Sessions by serial.
    pub sessions: BTreeMap<u64, LoadedSession>,
    /// Retained messages by topic.
    pub retained: BTreeMap<String, Arc<Message>>,
    /// The highest message id in use (new ids start above).
    pub max_msg_id: u64,
}

/// Sizes, for `unigate store inspect` and metrics.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct StoreStats {
    /// Sessions.
    pub sessions: u64,
    /// Queue entries (all sessions).
    pub queued: u64,
    /// Stored messages (each referenced by one or more queue entries).
    pub messages: u64,
    /// Retained messages.
    pub retained: u64,
    /// Incoming QoS 2 packet ids awaiting PUBREL.
    pub incoming_qos2: u64,
    /// File size in bytes (0 in memory).
    pub file_bytes: u64,
    /// Bytes of live data (redb's count).
    pub stored_bytes: u64,
    /// Bytes lost to fragmentation (what `compact` can give back).
    pub fragmented_bytes: u64,
}

/// A store: applies batches of [`Op`]s atomically, and loads everything back.
///
/// Every implementation must give the same [`Snapshot`] for the same sequence of batches
/// (checked by the property test against [`memory::MemoryStore`]), including the two rules that
/// make the writer's ordering races harmless: a `Remove` / `Release` of an entry not yet
/// enqueued cancels the `Enqueue` that follows, and operations on a deleted session's serial
/// leave nothing behind after [`Store::load`].
pub trait Store: Send + 'static {
    /// Applies `ops` in order, in one transaction; durable when it returns (unless the store
    /// was opened without fsync).
    fn apply(&mut self, ops: &[Op]) -> Result<(), StoreError>;

    /// Loads everything, purging what is dead: queue entries of sessions that do not exist,
    /// messages nobody references.
    fn load(&mut self) -> Result<Snapshot, StoreError>;

    /// Counts and sizes.
    fn stats(&mut self) -> Result<StoreStats, StoreError>;

    /// Makes commits that were not synced durable (with `fsync = false`); true when there is
    /// nothing left to sync. The writer calls it when it has been idle for a second.
    fn sync(&mut self) -> Result<bool, StoreError> {
        Ok(true)
    }
}

/// Adds `retained` retained messages (`populate/retained/{n}`, `payload` bytes each) and
/// `sessions` offline sessions that never expire (`populate-{n}`, subscribed to
/// `populate/{n}/#` at QoS 1), in batches (the start-up benchmark of docs/benchmarks.md).
pub fn populate(store: &mut dyn Store, retained: u64, sessions: u64, payload: usize) -> Result<(), StoreError> {
    use bytes::Bytes;
    const BATCH: u64 = 20_000;
    let body = Bytes::from(vec![b'x'; payload]);
    let mut ops = Vec::with_capacity(BATCH as usize);
    for n in 0..retained {
        let topic = Topic::new(&format!("populate/retained/{n}")).map_err(|_| StoreError::Decode("topic"))?;
        let mut m = Message::new(topic, body.clone());
        m.retain = true;
        m.qos = QoS::AtLeastOnce;
        ops.push(Op::SetRetained(Arc::new(m)));
        if ops.len() as u64 == BATCH {
            store.apply(&ops)?;
            ops.clear();
        }
    }
    // Serials above any a server would have used so far in this file.
    let base = store.load()?.sessions.keys().copied().max().unwrap_or(0) + 1;
    for n in 0..sessions {
        ops.push(Op::PutSession {
            serial: base + n,
            record: Box::new(SessionRecord {
                client_id: Arc::from(format!("populate-{n}")),
                expiry_interval: u32::MAX,
                disconnected_at: Some(0),
                subscriptions: vec![(
                    format!("populate/{n}/#"),
                    StoredSubOptions {
                        qos: QoS::AtLeastOnce,
                        no_local: false,
                        retain_as_published: false,
                        sub_id: None,
                    },
                )],
                will: None,
            }),
        });
        if ops.len() as u64 == BATCH {
            store.apply(&ops)?;
            ops.clear();
        }
    }
    store.apply(&ops)
}

#[cfg(test)]
mod tests;
