//! The embedded store: one redb file (`{path}/unigate.redb`).
//!
//! Why redb: pure Rust (no C toolchain, no server), ACID transactions with a copy-on-write
//! B-tree and a checksummed commit slot, so a `kill -9` or power loss mid-commit leaves the last
//! committed state (redb repairs on the next open); one writer at a time, which is what our single
//! writer thread wants anyway. fjall (an LSM tree) would write faster for delete-heavy queues
//! but brings background compaction threads and a weaker crash story to reason about; redb's
//! group commit is fast enough (docs/benchmarks.md).
//!
//! Tables:
//! - `sessions`: serial → [`SessionRecord`]
//! - `queue`: (serial, seq) → [`QueueEntry`] (references a message by id)
//! - `messages`: id → [`Message`], written once, deleted with its last reference
//! - `retained`: topic → [`Message`]
//! - `incoming_qos2`: (serial, packet id) → ()
//! - `meta`: `format` → layout version
//!
//! Message reference counts and the set of live sessions are kept in memory by the writer,
//! rebuilt from the queue table when the store is opened.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use redb::{Database, Durability, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use unigate_pubsub::Message;

use super::codec;
use super::{LoadedSession, Op, Snapshot, Store, StoreError, StoreStats};

const SESSIONS: TableDefinition<'_, u64, &[u8]> = TableDefinition::new("sessions");
const QUEUE: TableDefinition<'_, (u64, u64), &[u8]> = TableDefinition::new("queue");
const MESSAGES: TableDefinition<'_, u64, &[u8]> = TableDefinition::new("messages");
const RETAINED: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("retained");
const QOS2: TableDefinition<'_, (u64, u16), ()> = TableDefinition::new("incoming_qos2");
const META: TableDefinition<'_, &str, u64> = TableDefinition::new("meta");

/// The layout version written to `meta`.
const FORMAT: u64 = 1;

/// The file inside the configured directory.
pub const FILE_NAME: &str = "unigate.redb";

/// How the embedded store is opened.
#[derive(Debug, Clone)]
pub struct RedbOptions {
    /// Sync every commit (see `[storage] fsync`).
    pub fsync: bool,
    /// Page cache bytes.
    pub cache_size: usize,
}

impl Default for RedbOptions {
    fn default() -> Self {
        RedbOptions {
            fsync: true,
            cache_size: 64 * 1024 * 1024,
        }
    }
}

/// The redb store.
pub struct RedbStore {
    db: Database,
    path: PathBuf,
    fsync: bool,
    /// When the last durable commit was made (with `fsync = false`, one per second).
    last_durable: std::time::Instant,
    /// Commits made since without a sync.
    unsynced: bool,
    /// References to each stored message from queue entries.
    refs: HashMap<u64, u32>,
    /// Serials of sessions that exist.
    live: HashSet<u64>,
    /// Entries removed before their `Enqueue` arrived (see [`Store`]).
    early: HashSet<(u64, u64)>,
    indexed: bool,
}

impl std::fmt::Debug for RedbStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbStore").field("path", &self.path).finish()
    }
}

fn err(path: &Path, e: impl Into<redb::Error>) -> StoreError {
    let path = path.display().to_string();
    match e.into() {
        redb::Error::DatabaseAlreadyOpen => StoreError::Locked { path },
        redb::Error::Corrupted(message) => StoreError::Corrupt { path, message },
        redb::Error::Io(e) if e.kind() == std::io::ErrorKind::InvalidData => StoreError::Corrupt {
            path,
            message: e.to_string(),
        },
        redb::Error::TableTypeMismatch { .. }
        | redb::Error::TypeDefinitionChanged { .. }
        | redb::Error::TableIsMultimap(_) => StoreError::Corrupt {
            path,
            message: "not a unigate store (unexpected table layout)".into(),
        },
        other => StoreError::Io {
            path,
            message: other.to_string(),
        },
    }
}

fn corrupt(path: &Path, what: &str, e: StoreError) -> StoreError {
    StoreError::Corrupt {
        path: path.display().to_string(),
        message: format!("{what}: {e}"),
    }
}

impl RedbStore {
    /// Opens (or creates) the store in directory `dir`. A file that is not a store, or is
    /// damaged beyond redb's repair, is [`StoreError::Corrupt`]; it is never replaced.
    pub fn open(dir: &Path, opts: &RedbOptions) -> Result<RedbStore, StoreError> {
        std::fs::create_dir_all(dir).map_err(|e| StoreError::Io {
            path: dir.display().to_string(),
            message: e.to_string(),
        })?;
        let path = dir.join(FILE_NAME);
        Self::open_file(&path, opts)
    }

    /// Opens (or creates) the store file itself.
    pub fn open_file(path: &Path, opts: &RedbOptions) -> Result<RedbStore, StoreError> {
        let exists = path.exists();
        if exists && std::fs::metadata(path).map(|m| m.len()).unwrap_or(0) == 0 {
            // redb would initialise an empty file; an empty file where a store was expected is
            // a lost store, not a new one.
            return Err(StoreError::Corrupt {
                path: path.display().to_string(),
                message: "the file is empty".into(),
            });
        }
        let db = Database::builder()
            .set_cache_size(opts.cache_size)
            .create(path)
            .map_err(|e| err(path, e))?;
        let store = RedbStore {
            db,
            path: path.to_path_buf(),
            fsync: opts.fsync,
            last_durable: std::time::Instant::now(),
            unsynced: false,
            refs: HashMap::new(),
            live: HashSet::new(),
            early: HashSet::new(),
            indexed: false,
        };
        store.init(exists)?;
        Ok(store)
    }

    /// Creates the tables of a new file, or checks the layout version of an existing one.
    fn init(&self, existed: bool) -> Result<(), StoreError> {
        let p = &self.path;
        let txn = self.db.begin_write().map_err(|e| err(p, e))?;
        {
            let mut meta = txn.open_table(META).map_err(|e| err(p, e))?;
            let format = meta.get("format").map_err(|e| err(p, e))?.map(|v| v.value());
            match format {
                Some(FORMAT) => {}
                Some(other) => {
                    return Err(StoreError::Corrupt {
                        path: p.display().to_string(),
                        message: format!("store format {other} is not supported (this build reads {FORMAT})"),
                    })
                }
                None if existed && self.has_data(&txn)? => {
                    return Err(StoreError::Corrupt {
                        path: p.display().to_string(),
                        message: "no format marker: not a unigate store".into(),
                    })
                }
                None => {
                    meta.insert("format", FORMAT).map_err(|e| err(p, e))?;
                }
            }
            txn.open_table(SESSIONS).map_err(|e| err(p, e))?;
            txn.open_table(QUEUE).map_err(|e| err(p, e))?;
            txn.open_table(MESSAGES).map_err(|e| err(p, e))?;
            txn.open_table(RETAINED).map_err(|e| err(p, e))?;
            txn.open_table(QOS2).map_err(|e| err(p, e))?;
        }
        txn.commit().map_err(|e| err(p, e))
    }

    fn has_data(&self, txn: &redb::WriteTransaction) -> Result<bool, StoreError> {
        let n = txn.list_tables().map_err(|e| err(&self.path, e))?.count();
        Ok(n > 1)
    }

    /// The store file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Rebuilds the in-memory reference counts and live set from the tables.
    fn index(&mut self) -> Result<(), StoreError> {
        if self.indexed {
            return Ok(());
        }
        let p = self.path.clone();
        let txn = self.db.begin_read().map_err(|e| err(&p, e))?;
        let sessions = txn.open_table(SESSIONS).map_err(|e| err(&p, e))?;
        self.live.clear();
        for row in sessions.iter().map_err(|e| err(&p, e))? {
            let (k, _) = row.map_err(|e| err(&p, e))?;
            self.live.insert(k.value());
        }
        let queue = txn.open_table(QUEUE).map_err(|e| err(&p, e))?;
        self.refs.clear();
        for row in queue.iter().map_err(|e| err(&p, e))? {
            let (_, v) = row.map_err(|e| err(&p, e))?;
            if let Some(id) = codec::entry_msg_id(v.value()).map_err(|e| corrupt(&p, "queue entry", e))? {
                *self.refs.entry(id).or_insert(0) += 1;
            }
        }
        self.indexed = true;
        Ok(())
    }

    fn unref(&mut self, messages: &mut redb::Table<'_, u64, &[u8]>, id: u64) -> Result<(), StoreError> {
        let left = match self.refs.get_mut(&id) {
            Some(n) => {
                *n = n.saturating_sub(1);
                *n
            }
            None => 0,
        };
        if left == 0 {
            self.refs.remove(&id);
            messages.remove(id).map_err(|e| err(&self.path, e))?;
        }
        Ok(())
    }

    /// Rewrites the file without free space (`unigate store compact`).
    pub fn compact(&mut self) -> Result<bool, StoreError> {
        let p = self.path.clone();
        self.db.compact().map_err(|e| err(&p, e))
    }

    /// Decodes every record like [`Store::load`] but writes nothing (`unigate store inspect`).
    pub fn verify(&mut self) -> Result<Snapshot, StoreError> {
        self.read_all(false)
    }

    fn read_all(&mut self, purge: bool) -> Result<Snapshot, StoreError> {
        let p = self.path.clone();

        let mut snap = Snapshot::default();
        let mut orphans: Vec<(u64, u64)> = Vec::new();
        let mut orphan_qos2: Vec<(u64, u16)> = Vec::new();
        let mut refs: HashMap<u64, u32> = HashMap::new();
        let mut unreferenced: Vec<u64> = Vec::new();
        {
            let txn = self.db.begin_read().map_err(|e| err(&p, e))?;
            let sessions = txn.open_table(SESSIONS).map_err(|e| err(&p, e))?;
            for row in sessions.iter().map_err(|e| err(&p, e))? {
                let (k, v) = row.map_err(|e| err(&p, e))?;
                let serial = k.value();
                let record =
                    codec::decode_session(v.value()).map_err(|e| corrupt(&p, &format!("session {serial}"), e))?;
                snap.sessions.insert(
                    serial,
                    LoadedSession {
                        serial,
                        record,
                        queue: Vec::new(),
                        incoming_qos2: Vec::new(),
                    },
                );
            }
            let messages = txn.open_table(MESSAGES).map_err(|e| err(&p, e))?;
            let mut decoded: HashMap<u64, Arc<Message>> = HashMap::new();
            let queue = txn.open_table(QUEUE).map_err(|e| err(&p, e))?;
            for row in queue.iter().map_err(|e| err(&p, e))? {
                let (k, v) = row.map_err(|e| err(&p, e))?;
                let (serial, seq) = k.value();
                let Some(session) = snap.sessions.get_mut(&serial) else {
                    orphans.push((serial, seq));
                    continue;
                };
                let entry = codec::decode_entry(v.value())
                    .map_err(|e| corrupt(&p, &format!("queue entry ({serial}, {seq})"), e))?;
                let msg = match entry.msg_id {
                    None => None,
                    Some(id) => {
                        *refs.entry(id).or_insert(0) += 1;
                        match decoded.get(&id) {
                            Some(m) => Some(m.clone()),
                            None => {
                                let bytes = messages.get(id).map_err(|e| err(&p, e))?.ok_or_else(|| {
                                    corrupt(
                                        &p,
                                        &format!("queue entry ({serial}, {seq})"),
                                        StoreError::Decode("references a missing message"),
                                    )
                                })?;
                                let m = Arc::new(
                                    codec::decode_message(bytes.value())
                                        .map_err(|e| corrupt(&p, &format!("message {id}"), e))?,
                                );
                                decoded.insert(id, m.clone());
                                Some(m)
                            }
                        }
                    }
                };
                session.queue.push((seq, entry, msg));
            }
            for row in messages.iter().map_err(|e| err(&p, e))? {
                let (k, _) = row.map_err(|e| err(&p, e))?;
                let id = k.value();
                snap.max_msg_id = snap.max_msg_id.max(id);
                if !refs.contains_key(&id) {
                    unreferenced.push(id);
                }
            }
            let retained = txn.open_table(RETAINED).map_err(|e| err(&p, e))?;
            for row in retained.iter().map_err(|e| err(&p, e))? {
                let (k, v) = row.map_err(|e| err(&p, e))?;
                let m = codec::decode_message(v.value())
                    .map_err(|e| corrupt(&p, &format!("retained message of {}", k.value()), e))?;
                snap.retained.insert(k.value().to_string(), Arc::new(m));
            }
            let qos2 = txn.open_table(QOS2).map_err(|e| err(&p, e))?;
            for row in qos2.iter().map_err(|e| err(&p, e))? {
                let (k, _) = row.map_err(|e| err(&p, e))?;
                let (serial, pid) = k.value();
                match snap.sessions.get_mut(&serial) {
                    Some(s) => s.incoming_qos2.push(pid),
                    None => orphan_qos2.push((serial, pid)),
                }
            }
        }
        if purge && (!orphans.is_empty() || !unreferenced.is_empty() || !orphan_qos2.is_empty()) {
            // Left by operations that raced with a session's end: purge them now.
            let txn = self.db.begin_write().map_err(|e| err(&p, e))?;
            {
                let mut queue = txn.open_table(QUEUE).map_err(|e| err(&p, e))?;
                let mut messages = txn.open_table(MESSAGES).map_err(|e| err(&p, e))?;
                let mut qos2 = txn.open_table(QOS2).map_err(|e| err(&p, e))?;
                for k in &orphans {
                    if let Some(v) = queue.remove(*k).map_err(|e| err(&p, e))? {
                        if let Ok(Some(id)) = codec::entry_msg_id(v.value()) {
                            if !refs.contains_key(&id) && !unreferenced.contains(&id) {
                                unreferenced.push(id);
                            }
                        }
                    }
                }
                for id in &unreferenced {
                    messages.remove(*id).map_err(|e| err(&p, e))?;
                }
                for k in &orphan_qos2 {
                    qos2.remove(*k).map_err(|e| err(&p, e))?;
                }
            }
            txn.commit().map_err(|e| err(&p, e))?;
            tracing::info!(
                entries = orphans.len(),
                messages = unreferenced.len(),
                "storage: purged entries of ended sessions and unreferenced messages"
            );
        }
        self.live = snap.sessions.keys().copied().collect();
        self.refs = refs;
        self.early.clear();
        self.indexed = true;
        Ok(snap)
    }

    /// Checks the file's checksums (`unigate store inspect`); repairs what redb can repair.
    pub fn check_integrity(&mut self) -> Result<bool, StoreError> {
        let p = self.path.clone();
        self.db.check_integrity().map_err(|e| err(&p, e))
    }
}

impl Store for RedbStore {
    fn apply(&mut self, ops: &[Op]) -> Result<(), StoreError> {
        self.index()?;
        let p = self.path.clone();
        let mut txn = self.db.begin_write().map_err(|e| err(&p, e))?;
        // Without fsync a commit is durable only once a later one is: make one durable a second
        // so that a crash loses at most about that much.
        let durable = self.fsync || self.last_durable.elapsed() >= std::time::Duration::from_secs(1);
        if !durable {
            txn.set_durability(Durability::None).map_err(|e| StoreError::Io {
                path: p.display().to_string(),
                message: e.to_string(),
            })?;
        }
        let mut put: Vec<u64> = Vec::new();
        {
            let mut sessions = txn.open_table(SESSIONS).map_err(|e| err(&p, e))?;
            let mut queue = txn.open_table(QUEUE).map_err(|e| err(&p, e))?;
            let mut messages = txn.open_table(MESSAGES).map_err(|e| err(&p, e))?;
            let mut retained = txn.open_table(RETAINED).map_err(|e| err(&p, e))?;
            let mut qos2 = txn.open_table(QOS2).map_err(|e| err(&p, e))?;
            for op in ops {
                match op {
                    Op::PutSession { serial, record } => {
                        sessions
                            .insert(*serial, codec::encode_session(record).as_slice())
                            .map_err(|e| err(&p, e))?;
                        self.live.insert(*serial);
                    }
                    Op::DeleteSession { serial } => {
                        sessions.remove(*serial).map_err(|e| err(&p, e))?;
                        self.live.remove(serial);
                        self.early.retain(|(s, _)| s != serial);
                        let mut ids = Vec::new();
                        let mut bad = None;
                        queue
                            .extract_from_if((*serial, 0)..=(*serial, u64::MAX), |_, v| {
                                match codec::entry_msg_id(v) {
                                    Ok(Some(id)) => ids.push(id),
                                    Ok(None) => {}
                                    Err(e) => bad = Some(e),
                                }
                                true
                            })
                            .map_err(|e| err(&p, e))?
                            .for_each(drop);
                        if let Some(e) = bad {
                            return Err(corrupt(&p, "queue entry", e));
                        }
                        for id in ids {
                            self.unref(&mut messages, id)?;
                        }
                        qos2.retain_in((*serial, 0)..=(*serial, u16::MAX), |_, _| false)
                            .map_err(|e| err(&p, e))?;
                    }
                    Op::PutMessage { id, msg } => {
                        messages
                            .insert(*id, codec::encode_message(msg).as_slice())
                            .map_err(|e| err(&p, e))?;
                        self.refs.entry(*id).or_insert(0);
                        put.push(*id);
                    }
                    Op::Enqueue { serial, seq, entry } => {
                        if !self.live.contains(serial) || self.early.remove(&(*serial, *seq)) {
                            continue;
                        }
                        let old = queue
                            .insert((*serial, *seq), codec::encode_entry(entry).as_slice())
                            .map_err(|e| err(&p, e))?
                            .map(|v| codec::entry_msg_id(v.value()));
                        if let Some(id) = entry.msg_id {
                            *self.refs.entry(id).or_insert(0) += 1;
                        }
                        if let Some(Ok(Some(id))) = old {
                            self.unref(&mut messages, id)?;
                        }
                    }
                    Op::Release { serial, seq } => {
                        let current = queue
                            .get((*serial, *seq))
                            .map_err(|e| err(&p, e))?
                            .map(|v| codec::decode_entry(v.value()));
                        match current {
                            Some(Ok(mut e)) => {
                                let id = e.msg_id.take();
                                queue
                                    .insert((*serial, *seq), codec::encode_entry(&e).as_slice())
                                    .map_err(|e| err(&p, e))?;
                                if let Some(id) = id {
                                    self.unref(&mut messages, id)?;
                                }
                            }
                            Some(Err(e)) => return Err(corrupt(&p, "queue entry", e)),
                            None => {
                                if self.live.contains(serial) {
                                    self.early.insert((*serial, *seq));
                                }
                            }
                        }
                    }
                    Op::Remove { serial, seq } => {
                        let old = queue
                            .remove((*serial, *seq))
                            .map_err(|e| err(&p, e))?
                            .map(|v| codec::entry_msg_id(v.value()));
                        match old {
                            Some(Ok(Some(id))) => self.unref(&mut messages, id)?,
                            Some(Ok(None)) => {}
                            Some(Err(e)) => return Err(corrupt(&p, "queue entry", e)),
                            None => {
                                if self.live.contains(serial) {
                                    self.early.insert((*serial, *seq));
                                }
                            }
                        }
                    }
                    Op::SetRetained(m) => {
                        retained
                            .insert(m.topic.as_str(), codec::encode_message(m).as_slice())
                            .map_err(|e| err(&p, e))?;
                    }
                    Op::DeleteRetained(t) => {
                        retained.remove(t.as_str()).map_err(|e| err(&p, e))?;
                    }
                    Op::PutIncomingQos2 { serial, packet_id } => {
                        if self.live.contains(serial) {
                            qos2.insert((*serial, *packet_id), ()).map_err(|e| err(&p, e))?;
                        }
                    }
                    Op::DeleteIncomingQos2 { serial, packet_id } => {
                        qos2.remove((*serial, *packet_id)).map_err(|e| err(&p, e))?;
                    }
                }
            }
            // A message whose every recipient was dropped before it was stored.
            for id in put {
                if self.refs.get(&id) == Some(&0) {
                    self.refs.remove(&id);
                    messages.remove(id).map_err(|e| err(&p, e))?;
                }
            }
        }
        txn.commit().map_err(|e| err(&p, e))?;
        if durable {
            self.last_durable = std::time::Instant::now();
        }
        self.unsynced = !durable;
        Ok(())
    }

    fn sync(&mut self) -> Result<bool, StoreError> {
        if !self.unsynced {
            return Ok(true);
        }
        // An empty durable commit makes the earlier non-durable ones durable too.
        let p = self.path.clone();
        let txn = self.db.begin_write().map_err(|e| err(&p, e))?;
        txn.commit().map_err(|e| err(&p, e))?;
        self.unsynced = false;
        self.last_durable = std::time::Instant::now();
        Ok(true)
    }

    fn load(&mut self) -> Result<Snapshot, StoreError> {
        self.read_all(true)
    }

    fn stats(&mut self) -> Result<StoreStats, StoreError> {
        let p = self.path.clone();
        let txn = self.db.begin_read().map_err(|e| err(&p, e))?;
        let len = |n: Result<u64, redb::StorageError>| n.map_err(|e| err(&p, e));
        let sessions = len(txn.open_table(SESSIONS).map_err(|e| err(&p, e))?.len())?;
        let queued = len(txn.open_table(QUEUE).map_err(|e| err(&p, e))?.len())?;
        let messages = len(txn.open_table(MESSAGES).map_err(|e| err(&p, e))?.len())?;
        let retained = len(txn.open_table(RETAINED).map_err(|e| err(&p, e))?.len())?;
        let incoming_qos2 = len(txn.open_table(QOS2).map_err(|e| err(&p, e))?.len())?;
        drop(txn);
        let (stored_bytes, fragmented_bytes) = {
            let w = self.db.begin_write().map_err(|e| err(&p, e))?;
            let s = w.stats().map_err(|e| err(&p, e))?;
            let out = (s.stored_bytes(), s.fragmented_bytes());
            w.abort().map_err(|e| err(&p, e))?;
            out
        };
        Ok(StoreStats {
            sessions,
            queued,
            messages,
            retained,
            incoming_qos2,
            file_bytes: std::fs::metadata(&self.path).map(|m| m.len()).unwrap_or(0),
            stored_bytes,
            fragmented_bytes,
        })
    }
}
