//! The redb store against the in-memory model: the same batches give the same snapshot, after
//! a reopen too, and no message outlives its last reference.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::sync::Arc;

use bytes::Bytes;
use proptest::prelude::*;
use smallvec::smallvec;
use unigate_pubsub::{Message, QoS, Topic};

use super::memory::MemoryStore;
use super::redb_store::{RedbOptions, RedbStore};
use super::*;

/// One step of the broker as the store sees it; a `Publish` stays inside one batch, like the
/// operations of one routed message.
#[derive(Debug, Clone)]
enum Step {
    Session {
        serial: u64,
        subs: u8,
        expiry: u32,
    },
    EndSession {
        serial: u64,
    },
    Publish {
        targets: Vec<(u64, u64)>,
        qos2: bool,
        payload: u8,
    },
    Release {
        serial: u64,
        seq: u64,
    },
    Remove {
        serial: u64,
        seq: u64,
    },
    Retain {
        topic: u8,
        payload: u8,
    },
    Unretain {
        topic: u8,
    },
    Qos2In {
        serial: u64,
        pid: u16,
    },
    Qos2Out {
        serial: u64,
        pid: u16,
    },
    /// Ends the batch here.
    Commit,
}

fn step() -> impl Strategy<Value = Step> {
    let serial = 1u64..5;
    let seq = 1u64..12;
    prop_oneof![
        (
            serial.clone(),
            0u8..3,
            prop_oneof![Just(0u32), Just(60), Just(u32::MAX)]
        )
            .prop_map(|(serial, subs, expiry)| Step::Session { serial, subs, expiry }),
        serial.clone().prop_map(|serial| Step::EndSession { serial }),
        (
            proptest::collection::vec((serial.clone(), seq.clone()), 1..4),
            any::<bool>(),
            any::<u8>()
        )
            .prop_map(|(targets, qos2, payload)| Step::Publish { targets, qos2, payload }),
        (serial.clone(), seq.clone()).prop_map(|(serial, seq)| Step::Release { serial, seq }),
        (serial.clone(), seq.clone()).prop_map(|(serial, seq)| Step::Remove { serial, seq }),
        (0u8..4, any::<u8>()).prop_map(|(topic, payload)| Step::Retain { topic, payload }),
        (0u8..4).prop_map(|topic| Step::Unretain { topic }),
        (serial.clone(), 1u16..4).prop_map(|(serial, pid)| Step::Qos2In { serial, pid }),
        (serial, 1u16..4).prop_map(|(serial, pid)| Step::Qos2Out { serial, pid }),
        Just(Step::Commit),
    ]
}

fn message(topic: &str, payload: u8, qos: QoS) -> Arc<Message> {
    let mut m = Message::new(Topic::new(topic).unwrap(), Bytes::from(vec![payload]));
    m.qos = qos;
    Arc::new(m)
}

/// The batches of operations the steps stand for.
fn batches(steps: &[Step]) -> Vec<Vec<Op>> {
    let mut out = vec![Vec::new()];
    let mut next_id = 1;
    for s in steps {
        let ops = out.last_mut().unwrap();
        match s {
            Step::Session { serial, subs, expiry } => ops.push(Op::PutSession {
                serial: *serial,
                record: Box::new(SessionRecord {
                    client_id: Arc::from(format!("c{serial}")),
                    expiry_interval: *expiry,
                    disconnected_at: Some(7),
                    subscriptions: (0..*subs)
                        .map(|i| {
                            (
                                format!("t/{i}/#"),
                                StoredSubOptions {
                                    qos: QoS::AtLeastOnce,
                                    no_local: i == 1,
                                    retain_as_published: false,
                                    sub_id: Some(u32::from(i)),
                                },
                            )
                        })
                        .collect(),
                    will: None,
                }),
            }),
            Step::EndSession { serial } => ops.push(Op::DeleteSession { serial: *serial }),
            Step::Publish { targets, qos2, payload } => {
                let qos = if *qos2 { QoS::ExactlyOnce } else { QoS::AtLeastOnce };
                let id = next_id;
                next_id += 1;
                ops.push(Op::PutMessage {
                    id,
                    msg: message("t/0/x", *payload, qos),
                });
                for (serial, seq) in targets {
                    ops.push(Op::Enqueue {
                        serial: *serial,
                        seq: *seq,
                        entry: Box::new(QueueEntry {
                            msg_id: Some(id),
                            qos,
                            retain: false,
                            sub_ids: smallvec![1],
                            shared: (*seq % 3 == 0).then(|| "$share/g/t/0/#".to_string()),
                        }),
                    });
                }
            }
            Step::Release { serial, seq } => ops.push(Op::Release {
                serial: *serial,
                seq: *seq,
            }),
            Step::Remove { serial, seq } => ops.push(Op::Remove {
                serial: *serial,
                seq: *seq,
            }),
            Step::Retain { topic, payload } => ops.push(Op::SetRetained(message(
                &format!("r/{topic}"),
                *payload,
                QoS::AtLeastOnce,
            ))),
            Step::Unretain { topic } => ops.push(Op::DeleteRetained(Topic::new(&format!("r/{topic}")).unwrap())),
            Step::Qos2In { serial, pid } => ops.push(Op::PutIncomingQos2 {
                serial: *serial,
                packet_id: *pid,
            }),
            Step::Qos2Out { serial, pid } => ops.push(Op::DeleteIncomingQos2 {
                serial: *serial,
                packet_id: *pid,
            }),
            Step::Commit => out.push(Vec::new()),
        }
    }
    out
}

fn comparable(mut s: Snapshot) -> Snapshot {
    // The model keeps unreferenced messages; ids in use are compared through the entries.
    s.max_msg_id = 0;
    s
}

/// A fresh directory for a store, removed when the returned guard drops (also when a
/// property fails and proptest shrinks it, which runs the test again many times).
fn temp_dir(name: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("storage-unit-{name}-"))
        .tempdir()
        .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn redb_matches_the_model(steps in proptest::collection::vec(step(), 1..60)) {
        let tmp = temp_dir("model");
        let dir = tmp.path();
        let opts = RedbOptions { fsync: false, cache_size: 1 << 20 };
        let mut model = MemoryStore::new();
        {
            let mut redb = RedbStore::open(dir, &opts).unwrap();
            redb.load().unwrap();
            for batch in batches(&steps) {
                model.apply(&batch).unwrap();
                redb.apply(&batch).unwrap();
            }
            let expected = comparable(model.load().unwrap());
            prop_assert_eq!(comparable(redb.load().unwrap()), expected.clone());
            // No message outlives its references.
            let referenced: HashSet<u64> = expected
                .sessions
                .values()
                .flat_map(|s| s.queue.iter().filter_map(|(_, e, _)| e.msg_id))
                .collect();
            prop_assert_eq!(redb.stats().unwrap().messages, referenced.len() as u64);
        }
        // And the same after a reopen (a restart).
        let mut reopened = RedbStore::open(dir, &opts).unwrap();
        prop_assert_eq!(comparable(reopened.load().unwrap()), comparable(model.load().unwrap()));
        drop(reopened);
    }
}

#[test]
fn a_damaged_file_is_an_error_not_an_empty_store() {
    let tmp = temp_dir("damaged");
    let dir = tmp.path();
    let file = dir.join(redb_store::FILE_NAME);
    // Not a store at all.
    std::fs::write(&file, vec![0x5a; 64 * 1024]).unwrap();
    let e = RedbStore::open(dir, &RedbOptions::default()).unwrap_err();
    assert!(matches!(e, StoreError::Corrupt { .. } | StoreError::Io { .. }), "{e}");
    // Empty (e.g. truncated to nothing).
    std::fs::write(&file, b"").unwrap();
    let e = RedbStore::open(dir, &RedbOptions::default()).unwrap_err();
    assert!(matches!(e, StoreError::Corrupt { .. }), "{e}");
    assert_eq!(
        std::fs::read(&file).unwrap().len(),
        0,
        "the damaged file is left as it was"
    );
}

#[test]
fn a_record_that_does_not_decode_is_reported() {
    let tmp = temp_dir("record");
    let dir = tmp.path();
    {
        let mut s = RedbStore::open(dir, &RedbOptions::default()).unwrap();
        s.apply(&[Op::SetRetained(message("r/1", 1, QoS::AtMostOnce))]).unwrap();
    }
    // Overwrite the retained record with garbage through redb itself.
    {
        let db = redb::Database::create(dir.join(redb_store::FILE_NAME)).unwrap();
        let t = db.begin_write().unwrap();
        {
            let def: redb::TableDefinition<'_, &str, &[u8]> = redb::TableDefinition::new("retained");
            let mut table = t.open_table(def).unwrap();
            table.insert("r/1", [1u8, 0xff, 0xff].as_slice()).unwrap();
        }
        t.commit().unwrap();
    }
    let mut s = RedbStore::open(dir, &RedbOptions::default()).unwrap();
    let e = s.load().unwrap_err();
    assert!(matches!(e, StoreError::Corrupt { .. }), "{e}");
    assert!(e.to_string().contains("retained message of r/1"), "{e}");
    drop(s);
}

#[test]
fn restore_rebuilds_sessions_and_purges_expired_ones() {
    use crate::broker::{now_ms, Broker};
    use crate::config::MqttConfig;

    let mut model = MemoryStore::new();
    let now = now_ms();
    let record = |id: &str, expiry: u32, gone: u64| SessionRecord {
        client_id: Arc::from(id),
        expiry_interval: expiry,
        disconnected_at: Some(gone),
        subscriptions: vec![(
            "a/#".into(),
            StoredSubOptions {
                qos: QoS::ExactlyOnce,
                no_local: false,
                retain_as_published: false,
                sub_id: None,
            },
        )],
        will: None,
    };
    let mut expired_msg = (*message("a/x", 9, QoS::AtLeastOnce)).clone();
    expired_msg.expires_at = Some(1);
    let entry = |id| QueueEntry {
        msg_id: Some(id),
        qos: QoS::AtLeastOnce,
        retain: false,
        sub_ids: smallvec![],
        shared: None,
    };
    model
        .apply(&[
            Op::PutSession {
                serial: 3,
                record: Box::new(record("live", 3600, now)),
            },
            Op::PutSession {
                serial: 4,
                record: Box::new(record("gone", 1, now - 5000)),
            },
            Op::PutMessage {
                id: 1,
                msg: message("a/x", 1, QoS::AtLeastOnce),
            },
            Op::PutMessage {
                id: 2,
                msg: Arc::new(expired_msg),
            },
            Op::Enqueue {
                serial: 3,
                seq: 1,
                entry: Box::new(entry(1)),
            },
            Op::Enqueue {
                serial: 3,
                seq: 2,
                entry: Box::new(entry(2)),
            },
            Op::Enqueue {
                serial: 3,
                seq: 3,
                entry: Box::new(entry(1)),
            },
            Op::Release { serial: 3, seq: 3 },
            Op::PutIncomingQos2 {
                serial: 3,
                packet_id: 7,
            },
            Op::SetRetained(message("r/1", 1, QoS::AtLeastOnce)),
        ])
        .unwrap();
    let snap = model.load().unwrap();
    let broker = Broker::new(MqttConfig::default());
    let persister = Persister::start(
        Box::new(model),
        writer::BatchSettings {
            window: std::time::Duration::ZERO,
            max_batch: 100,
        },
        None,
    )
    .unwrap();
    broker.set_store(persister);
    let timers = broker.restore(snap);
    broker.store().unwrap().flush().unwrap();
    assert!(broker.session("gone").is_none(), "expired while down: purged");
    let live = broker.session("live").expect("restored");
    assert_eq!(timers.len(), 1);
    {
        let st = live.lock();
        assert_eq!(
            st.queue.len(),
            1,
            "the expired message is dropped, the released one is inflight"
        );
        assert!(st.queue[0].stored.is_some_and(|s| s.recovered && s.seq == 1));
        assert_eq!(st.inflight.len(), 1);
        assert_eq!(st.incoming_qos2.to_vec(), vec![7]);
        assert_eq!(st.next_seq, 3);
        assert!(st.subscriptions.as_ref().is_some_and(|s| s.len() == 1));
    }
    assert_eq!(broker.retained_all().len(), 1);
    assert_eq!(broker.session_count(), 1);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// The writer's coalescing changes nothing that a store would load.
    #[test]
    fn coalescing_a_batch_changes_nothing(steps in proptest::collection::vec(step(), 1..60)) {
        // The broker never enqueues a session's sequence number twice (`next_seq` only grows);
        // coalescing relies on that, so inputs that break it are not asked about.
        let mut seen = std::collections::HashSet::new();
        let mut steps = steps;
        for st in &mut steps {
            if let Step::Publish { targets, .. } = st {
                targets.retain(|t| seen.insert(*t));
            }
        }
        let mut whole = MemoryStore::new();
        let mut coalesced = MemoryStore::new();
        for batch in batches(&steps) {
            whole.apply(&batch).unwrap();
            let mut c = batch.clone();
            writer::coalesce(&mut c);
            coalesced.apply(&c).unwrap();
        }
        prop_assert_eq!(comparable(coalesced.load().unwrap()), comparable(whole.load().unwrap()));
    }
}

#[test]
fn restore_publishes_wills_that_came_due_and_schedules_the_others() {
    use crate::broker::{now_ms, Broker};
    use crate::config::MqttConfig;

    let now = now_ms();
    let will = |topic: &str, delay: u32, due_at: Option<u64>| StoredWill {
        msg: message(topic, 1, QoS::AtLeastOnce),
        delay,
        expiry: None,
        due_at,
    };
    let record = |id: &str, gone: Option<u64>, w: StoredWill| SessionRecord {
        client_id: Arc::from(id),
        expiry_interval: 3600,
        disconnected_at: gone,
        subscriptions: Vec::new(),
        will: Some(w),
    };
    let mut model = MemoryStore::new();
    model
        .apply(&[
            // Due while the server was down: published at restore.
            Op::PutSession {
                serial: 1,
                record: Box::new(record("due", Some(now - 10_000), will("w/due", 5, Some(now - 5_000)))),
            },
            // Due in a minute: scheduled.
            Op::PutSession {
                serial: 2,
                record: Box::new(record("later", Some(now), will("w/later", 60, Some(now + 60_000)))),
            },
            // Connected at the crash: the connection was lost then, the delay runs from now.
            Op::PutSession {
                serial: 3,
                record: Box::new(record("crashed", None, will("w/crashed", 30, None))),
            },
        ])
        .unwrap();
    let snap = model.load().unwrap();
    let broker = Broker::new(MqttConfig::default());
    broker.set_store(
        Persister::start(
            Box::new(model),
            writer::BatchSettings {
                window: std::time::Duration::ZERO,
                max_batch: 100,
            },
            None,
        )
        .unwrap(),
    );
    let timers = broker.restore(snap);
    assert_eq!(
        crate::broker::Metrics::read(&broker.metrics.wills_published),
        1,
        "only the will that came due is published"
    );
    let after = |id: &str| {
        timers
            .iter()
            .find(|(s, _)| &*s.client_id == id)
            .and_then(|(_, d)| d.will_after)
            .map(|d| d.as_secs())
    };
    assert_eq!(after("due"), None);
    assert!(
        after("later").is_some_and(|s| (58..=60).contains(&s)),
        "{:?}",
        after("later")
    );
    assert!(
        after("crashed").is_some_and(|s| (28..=30).contains(&s)),
        "{:?}",
        after("crashed")
    );
    // The crashed session's record now says when it went away, and when its will is due.
    broker.store().unwrap().flush().unwrap();
    let st = broker.session("crashed").unwrap();
    let st = st.lock();
    assert!(st.disconnected_at.is_some());
    assert!(st.will_record.as_ref().is_some_and(|w| w.due_at.is_some()));
}
