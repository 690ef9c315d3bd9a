//! Topic filter matching as clients see it (MQTT 5 §4.7): `+` one level (also an empty one),
//! `#` the rest including the parent level, and nothing else.

use crate::common::TestServer;
use crate::util::{q4, q5, v4, v5};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wildcards_match_as_specified() {
    let server = TestServer::start();
    let filters = [
        "sport/#",
        "sport/+",
        "sport/tennis/+",
        "+/tennis/#",
        "sport/+/player1",
        "+",
        "/+",
    ];
    let topics = [
        "sport",
        "sport/",
        "sport/tennis",
        "sport/tennis/player1",
        "sport/tennis/player1/ranking",
        "sport//player1",
        "other/tennis",
        "/finance",
        "finance",
    ];
    // The matches, worked out from the specification's examples (§4.7.1.2, §4.7.1.3).
    let expected: &[(&str, &[&str])] = &[
        (
            "sport/#",
            &[
                "sport",
                "sport/",
                "sport/tennis",
                "sport/tennis/player1",
                "sport/tennis/player1/ranking",
                "sport//player1",
            ],
        ),
        ("sport/+", &["sport/", "sport/tennis"]),
        ("sport/tennis/+", &["sport/tennis/player1"]),
        (
            "+/tennis/#",
            &[
                "sport/tennis",
                "sport/tennis/player1",
                "sport/tennis/player1/ranking",
                "other/tennis",
            ],
        ),
        ("sport/+/player1", &["sport/tennis/player1", "sport//player1"]),
        ("+", &["sport", "finance"]),
        ("/+", &["/finance"]),
    ];

    // One subscriber per filter, alternating 3.1.1 and 5, each also on an end marker.
    let mut subs4 = Vec::new();
    let mut subs5 = Vec::new();
    for (i, f) in filters.iter().enumerate() {
        if i % 2 == 0 {
            let mut c = v4::Client::connect(v4::options(&server, &format!("s{i}"))).await;
            c.subscribe(f, q4(1)).await;
            c.subscribe("end/marker", q4(1)).await;
            subs4.push((*f, c));
        } else {
            let mut c = v5::Client::connect(v5::options(&server, &format!("s{i}"))).await;
            c.subscribe(f, q5(1)).await;
            c.subscribe("end/marker", q5(1)).await;
            subs5.push((*f, c));
        }
    }
    let mut p = v4::Client::connect(v4::options(&server, "p")).await;
    for t in topics.iter().chain(&["end/marker"]) {
        p.publish(t, q4(1), false, *t).await;
    }
    // What each subscriber got before the marker, in order.
    let mut got: Vec<(&str, Vec<String>)> = Vec::new();
    for (f, c) in &mut subs4 {
        let mut seen = Vec::new();
        loop {
            let m = c.recv().await;
            if m.topic == "end/marker" {
                break;
            }
            seen.push(m.topic);
        }
        got.push((f, seen));
    }
    for (f, c) in &mut subs5 {
        let mut seen = Vec::new();
        loop {
            let m = c.recv().await;
            if v5::topic(&m) == "end/marker" {
                break;
            }
            seen.push(v5::topic(&m).to_string());
        }
        got.push((f, seen));
    }
    for (f, want) in expected {
        let (_, seen) = got.iter().find(|(g, _)| g == f).unwrap();
        let want: Vec<&str> = topics.iter().copied().filter(|t| want.contains(t)).collect();
        assert_eq!(seen, &want, "filter {f}: matches, in publish order, once each");
    }
    drop((subs4, subs5, p));
    server.stop();
}
