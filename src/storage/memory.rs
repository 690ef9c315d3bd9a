//! The in-memory store: the model the property tests hold [`super::redb_store::RedbStore`]
//! against, and a store for tests that restart a broker within one process.
//!
//! Plain ordered maps, no reference counting: messages nobody references are simply skipped
//! by [`Store::load`].

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use unigate_pubsub::Message;

use super::{LoadedSession, Op, QueueEntry, SessionRecord, Snapshot, Store, StoreError, StoreStats};

/// Everything in maps.
#[derive(Debug, Default, Clone)]
pub struct MemoryStore {
    sessions: BTreeMap<u64, SessionRecord>,
    queue: BTreeMap<(u64, u64), QueueEntry>,
    messages: HashMap<u64, Arc<Message>>,
    retained: BTreeMap<String, Arc<Message>>,
    incoming_qos2: BTreeSet<(u64, u16)>,
    /// Entries removed before their `Enqueue` was applied (see [`Store`]).
    early: HashSet<(u64, u64)>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }
}

impl Store for MemoryStore {
    fn apply(&mut self, ops: &[Op]) -> Result<(), StoreError> {
        for op in ops {
            match op {
                Op::PutSession { serial, record } => {
                    self.sessions.insert(*serial, (**record).clone());
                }
                Op::DeleteSession { serial } => {
                    self.sessions.remove(serial);
                    let keys: Vec<_> = self
                        .queue
                        .range((*serial, 0)..=(*serial, u64::MAX))
                        .map(|(k, _)| *k)
                        .collect();
                    for k in keys {
                        self.queue.remove(&k);
                    }
                    self.incoming_qos2.retain(|(s, _)| s != serial);
                    self.early.retain(|(s, _)| s != serial);
                }
                Op::PutMessage { id, msg } => {
                    self.messages.insert(*id, msg.clone());
                }
                Op::Enqueue { serial, seq, entry } => {
                    if !self.sessions.contains_key(serial) || self.early.remove(&(*serial, *seq)) {
                        continue;
                    }
                    self.queue.insert((*serial, *seq), (**entry).clone());
                }
                Op::Release { serial, seq } => match self.queue.get_mut(&(*serial, *seq)) {
                    Some(e) => e.msg_id = None,
                    None => {
                        // Released before it was enqueued: like a removal, it cancels the
                        // enqueue (the delivery went out, the PUBREL follows from memory).
                        if self.sessions.contains_key(serial) {
                            self.early.insert((*serial, *seq));
                        }
                    }
                },
                Op::Remove { serial, seq } => {
                    if self.queue.remove(&(*serial, *seq)).is_none() && self.sessions.contains_key(serial) {
                        self.early.insert((*serial, *seq));
                    }
                }
                Op::SetRetained(m) => {
                    self.retained.insert(m.topic.as_str().to_string(), m.clone());
                }
                Op::DeleteRetained(t) => {
                    self.retained.remove(t.as_str());
                }
                Op::PutIncomingQos2 { serial, packet_id } => {
                    if self.sessions.contains_key(serial) {
                        self.incoming_qos2.insert((*serial, *packet_id));
                    }
                }
                Op::DeleteIncomingQos2 { serial, packet_id } => {
                    self.incoming_qos2.remove(&(*serial, *packet_id));
                }
            }
        }
        Ok(())
    }

    fn load(&mut self) -> Result<Snapshot, StoreError> {
        let mut snap = Snapshot {
            max_msg_id: self.messages.keys().copied().max().unwrap_or(0),
            ..Snapshot::default()
        };
        for (serial, record) in &self.sessions {
            snap.sessions.insert(
                *serial,
                LoadedSession {
                    serial: *serial,
                    record: record.clone(),
                    queue: Vec::new(),
                    incoming_qos2: Vec::new(),
                },
            );
        }
        for ((serial, seq), e) in &self.queue {
            if let Some(s) = snap.sessions.get_mut(serial) {
                let msg = match e.msg_id {
                    Some(id) => match self.messages.get(&id) {
                        Some(m) => Some(m.clone()),
                        None => return Err(StoreError::Decode("queue entry references a missing message")),
                    },
                    None => None,
                };
                s.queue.push((*seq, e.clone(), msg));
            }
        }
        for (serial, pid) in &self.incoming_qos2 {
            if let Some(s) = snap.sessions.get_mut(serial) {
                s.incoming_qos2.push(*pid);
            }
        }
        snap.retained = self.retained.clone();
        Ok(snap)
    }

    fn stats(&mut self) -> Result<StoreStats, StoreError> {
        Ok(StoreStats {
            sessions: self.sessions.len() as u64,
            queued: self.queue.len() as u64,
            messages: self.messages.len() as u64,
            retained: self.retained.len() as u64,
            incoming_qos2: self.incoming_qos2.len() as u64,
            ..StoreStats::default()
        })
    }
}
