//! Routing tests of the broker core, without sockets: sessions get a recording link.
#![allow(clippy::unwrap_used)]

use super::*;
use bytes::Bytes;
use std::sync::atomic::AtomicUsize;

#[derive(Default)]
struct Recorder {
    wakes: AtomicUsize,
    kicks: parking_lot::Mutex<Vec<KickReason>>,
}

impl SessionLink for Recorder {
    fn wake(&self) {
        self.wakes.fetch_add(1, Ordering::Relaxed);
    }
    fn kick(&self, reason: KickReason) {
        self.kicks.lock().push(reason);
    }
}

fn limits() -> QueueLimits {
    QueueLimits {
        max_queued: 100,
        drop_policy: crate::config::QueueDropPolicy::Oldest,
        queue_qos0_offline: false,
        persist: false,
    }
}

fn broker() -> Broker {
    Broker::new(MqttConfig::default())
}

fn connect(b: &Broker, id: &str, clean: bool, expiry: u32) -> (Attachment, Arc<Recorder>) {
    let rec = Arc::new(Recorder::default());
    (b.attach(id.into(), clean, expiry, rec.clone(), limits()), rec)
}

fn opts(qos: QoS) -> SubOptions {
    SubOptions {
        qos,
        no_local: false,
        retain_as_published: false,
        sub_id: None,
    }
}

fn msg(topic: &str, qos: QoS, payload: &'static [u8]) -> Message {
    let mut m = Message::new(Topic::new(topic).unwrap(), Bytes::from_static(payload));
    m.qos = qos;
    m
}

fn queued(s: &Session) -> Vec<(String, QoS)> {
    s.lock()
        .queue
        .iter()
        .map(|d| (String::from_utf8_lossy(&d.msg.payload).into_owned(), d.qos))
        .collect()
}

#[test]
fn publish_reaches_matching_sessions_with_min_qos() {
    let b = broker();
    let (a, rec) = connect(&b, "a", true, 0);
    b.subscribe(&a.session, &TopicFilter::new("s/+").unwrap(), opts(QoS::AtLeastOnce));
    assert_eq!(b.publish(msg("s/1", QoS::ExactlyOnce, b"x")), 1);
    assert_eq!(b.publish(msg("t/1", QoS::ExactlyOnce, b"y")), 0);
    assert_eq!(queued(&a.session), vec![("x".into(), QoS::AtLeastOnce)]);
    assert_eq!(rec.wakes.load(Ordering::Relaxed), 1);
    // A second message while the wake is pending does not wake again.
    b.publish(msg("s/2", QoS::AtMostOnce, b"z"));
    assert_eq!(rec.wakes.load(Ordering::Relaxed), 1);
}

#[test]
fn overlapping_subscriptions_deliver_once_with_max_qos_and_all_ids() {
    let b = broker();
    let (a, _) = connect(&b, "a", true, 0);
    let mut o1 = opts(QoS::AtMostOnce);
    o1.sub_id = Some(1);
    let mut o2 = opts(QoS::ExactlyOnce);
    o2.sub_id = Some(2);
    b.subscribe(&a.session, &TopicFilter::new("s/#").unwrap(), o1);
    b.subscribe(&a.session, &TopicFilter::new("s/+").unwrap(), o2);
    b.publish(msg("s/1", QoS::ExactlyOnce, b"x"));
    let st = a.session.lock();
    assert_eq!(st.queue.len(), 1);
    assert_eq!(st.queue[0].qos, QoS::ExactlyOnce);
    let mut ids = st.queue[0].sub_ids.to_vec();
    ids.sort();
    assert_eq!(ids, vec![1, 2]);
}

#[test]
fn no_local_skips_own_messages() {
    let b = broker();
    let (a, _) = connect(&b, "a", true, 0);
    let mut o = opts(QoS::AtMostOnce);
    o.no_local = true;
    b.subscribe(&a.session, &TopicFilter::new("s").unwrap(), o);
    let mut m = msg("s", QoS::AtMostOnce, b"mine");
    m.origin.client_id = Some("a".into());
    assert_eq!(b.publish(m), 0);
    assert_eq!(b.publish(msg("s", QoS::AtMostOnce, b"other")), 1);
}

#[test]
fn shared_group_gets_each_message_once_round_robin() {
    let b = broker();
    let (a, _) = connect(&b, "a", true, 0);
    let (c, _) = connect(&b, "c", true, 0);
    let f = TopicFilter::new("$share/g/s/#").unwrap();
    b.subscribe(&a.session, &f, opts(QoS::AtLeastOnce));
    b.subscribe(&c.session, &f, opts(QoS::AtLeastOnce));
    for _ in 0..10 {
        assert_eq!(b.publish(msg("s/x", QoS::AtLeastOnce, b"m")), 1);
    }
    assert_eq!(a.session.lock().queue.len(), 5);
    assert_eq!(c.session.lock().queue.len(), 5);
}

#[test]
fn shared_messages_of_a_leaving_member_go_to_another() {
    let b = broker();
    let (a, _) = connect(&b, "a", true, 0);
    let (c, _) = connect(&b, "c", true, 0);
    let f = TopicFilter::new("$share/g/s").unwrap();
    b.subscribe(&a.session, &f, opts(QoS::AtLeastOnce));
    b.subscribe(&c.session, &f, opts(QoS::AtLeastOnce));
    for _ in 0..4 {
        b.publish(msg("s", QoS::AtLeastOnce, b"m"));
    }
    assert_eq!(a.session.lock().queue.len(), 2);
    b.detach(&a.session, a.generation, None);
    assert_eq!(c.session.lock().queue.len(), 4);
}

#[test]
fn persistent_session_queues_offline_and_resumes() {
    let b = broker();
    let (a, _) = connect(&b, "a", false, 3600);
    b.subscribe(&a.session, &TopicFilter::new("s").unwrap(), opts(QoS::AtLeastOnce));
    let d = b.detach(&a.session, a.generation, None);
    assert_eq!(d.expire_after, Some(Duration::from_secs(3600)));
    b.publish(msg("s", QoS::AtLeastOnce, b"1"));
    b.publish(msg("s", QoS::AtMostOnce, b"dropped"));
    let (again, _) = connect(&b, "a", false, 3600);
    assert!(again.present);
    assert!(Arc::ptr_eq(&again.session, &a.session));
    assert_eq!(queued(&again.session), vec![("1".into(), QoS::AtLeastOnce)]);
    // The old generation's expiry timer must not end the resumed session.
    b.expire_session(&a.session, a.generation);
    assert!(b.session("a").is_some());
}

#[test]
fn clean_start_discards_the_old_session_and_its_subscriptions() {
    let b = broker();
    let (a, _) = connect(&b, "a", false, 3600);
    b.subscribe(&a.session, &TopicFilter::new("s").unwrap(), opts(QoS::AtLeastOnce));
    b.detach(&a.session, a.generation, None);
    let (fresh, _) = connect(&b, "a", true, 0);
    assert!(!fresh.present);
    assert_eq!(b.publish(msg("s", QoS::AtLeastOnce, b"x")), 0);
}

#[test]
fn takeover_kicks_the_old_connection() {
    let b = broker();
    let (a, rec) = connect(&b, "a", false, 60);
    let (a2, _) = connect(&b, "a", false, 60);
    assert_eq!(*rec.kicks.lock(), vec![KickReason::SessionTakenOver]);
    assert!(a2.present);
    // The old connection's late detach does not detach the new owner.
    b.detach(&a.session, a.generation, None);
    assert!(a2.session.lock().attached.is_some());
}

#[test]
fn session_with_expiry_zero_ends_at_detach() {
    let b = broker();
    let (a, _) = connect(&b, "a", true, 0);
    b.subscribe(&a.session, &TopicFilter::new("s").unwrap(), opts(QoS::AtLeastOnce));
    b.detach(&a.session, a.generation, None);
    assert!(b.session("a").is_none());
    assert_eq!(b.publish(msg("s", QoS::AtLeastOnce, b"x")), 0);
}

#[test]
fn retained_set_replace_clear() {
    let b = broker();
    let mut m = msg("r/1", QoS::AtLeastOnce, b"one");
    m.retain = true;
    b.publish(m.clone());
    m.payload = Bytes::from_static(b"two");
    b.publish(m.clone());
    let f = TopicFilter::new("r/#").unwrap();
    let got = b.retained_matching(&f);
    assert_eq!(got.len(), 1);
    assert_eq!(&got[0].payload[..], b"two");
    m.payload = Bytes::new();
    b.publish(m);
    assert!(b.retained_matching(&f).is_empty());
}

#[test]
fn expired_retained_messages_are_not_delivered() {
    let b = broker();
    let mut m = msg("r", QoS::AtMostOnce, b"old");
    m.retain = true;
    m.expires_at = Some(1);
    b.publish(m);
    assert!(b.retained_matching(&TopicFilter::new("r").unwrap()).is_empty());
}

#[test]
fn delayed_will_is_cancelled_by_reconnect_and_fired_otherwise() {
    let b = broker();
    let (w, _) = connect(&b, "watcher", true, 0);
    b.subscribe(&w.session, &TopicFilter::new("will").unwrap(), opts(QoS::AtMostOnce));
    let (a, _) = connect(&b, "a", false, 60);
    let will = PendingWill {
        msg: msg("will", QoS::AtMostOnce, b"gone"),
        delay: 10,
        expiry: None,
    };
    let d = b.detach(&a.session, a.generation, Some(will.clone()));
    assert_eq!(d.will_after, Some(Duration::from_secs(10)));
    let (a2, _) = connect(&b, "a", false, 60);
    b.fire_will(&a.session, a.generation);
    assert!(w.session.lock().queue.is_empty());
    b.detach(&a2.session, a2.generation, Some(will));
    b.fire_will(&a2.session, a2.generation);
    assert_eq!(w.session.lock().queue.len(), 1);
}

#[test]
fn a_session_with_expiry_zero_is_not_resumed_by_a_takeover() {
    let b = broker();
    let (a, _) = connect(&b, "a", true, 0);
    b.subscribe(&a.session, &TopicFilter::new("s").unwrap(), opts(QoS::AtLeastOnce));
    // The first connection's DISCONNECT has not been processed yet when the next one arrives.
    let (next, _) = connect(&b, "a", false, 300);
    assert!(!next.present);
    assert!(!Arc::ptr_eq(&next.session, &a.session));
    assert_eq!(b.publish(msg("s", QoS::AtLeastOnce, b"x")), 0);
}

#[test]
fn backpressure_pauses_other_publishers_but_never_a_client_for_its_own_queue() {
    // The test sessions queue at most 100 messages.
    let b = Broker::new(MqttConfig {
        backpressure_queue: 50,
        ..MqttConfig::default()
    });
    let (a, own_link) = connect(&b, "a", true, 0);
    b.subscribe(&a.session, &TopicFilter::new("s").unwrap(), opts(QoS::AtLeastOnce));
    let own: Arc<dyn SessionLink> = own_link;
    let other: Arc<dyn SessionLink> = Arc::new(Recorder::default());
    let threshold = b.backpressure().threshold;
    for _ in 0..threshold {
        let (_, congested) = b.publish_from(msg("s", QoS::AtLeastOnce, b"x"), Some(&own));
        assert!(!congested, "a client was paused for its own queue");
    }
    let (_, congested) = b.publish_from(msg("s", QoS::AtLeastOnce, b"x"), Some(&other));
    assert!(congested);
    assert_eq!(a.session.lock().waiters.as_ref().map(|w| w.len()), Some(1));
    // The subscriber going away resumes the paused publisher.
    b.detach(&a.session, a.generation, None);
    assert!(a.session.lock().waiters.is_none());
}
