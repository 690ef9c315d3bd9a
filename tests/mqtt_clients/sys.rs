//! `$SYS` statistics: published for `$SYS/#` subscribers, and not matched by `#` or `+/…`
//! (MQTT 5 §4.7.2, 3.1.1 §4.7.2).

use std::collections::BTreeSet;

use crate::util::{q4, q5, start_server, v4, v5};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sys_topics_reach_sys_subscribers_only() {
    let server = start_server("sys_interval = \"1s\"", "");
    let mut all = v4::Client::connect(v4::options(&server, "all")).await;
    all.subscribe("#", q4(0)).await;
    all.subscribe("+/broker/#", q4(0)).await;
    let mut sys = v5::Client::connect(v5::options(&server, "sys")).await;
    sys.subscribe("$SYS/#", q5(0)).await;

    // Wait for a statistics round published after both subscriptions existed (RETAIN 0: a live
    // message, not the retained copy sent on subscribe).
    let mut live = BTreeSet::new();
    let connected = loop {
        let m = sys.recv().await;
        let topic = v5::topic(&m).to_string();
        assert!(topic.starts_with("$SYS/broker/"), "unexpected topic {topic}");
        if m.retain {
            continue;
        }
        live.insert(topic.clone());
        if topic == "$SYS/broker/version" {
            let v = String::from_utf8(m.payload.to_vec()).unwrap();
            assert!(v.starts_with("unigate "), "version {v:?}");
        }
        if topic == "$SYS/broker/clients/connected" {
            break String::from_utf8(m.payload.to_vec()).unwrap();
        }
    };
    let n: u64 = connected.parse().expect("a number of clients");
    assert!(n >= 2, "{n} clients connected, at least the two subscribers are");
    assert!(live.contains("$SYS/broker/uptime"), "live $SYS topics: {live:?}");

    // Anything `#` matched would be queued before this marker.
    let mut p = v4::Client::connect(v4::options(&server, "p")).await;
    p.publish("marker/x", q4(1), false, "marker").await;
    let m = all.recv().await;
    assert_eq!(m.topic, "marker/x", "a wildcard subscription got a $SYS topic");
    drop((all, sys, p));
    server.stop();
}
