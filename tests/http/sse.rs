//! Server-Sent Events: a live stream read with curl, Last-Event-ID resumption, the ACL.

use std::sync::atomic::Ordering;

use crate::util::*;

/// Keep-alive comments every 100 ms, so that a stream whose client went away ends quickly.
const FAST: &str = "[http]\nsse_keepalive = \"100ms\"\n";

fn sse(s: &TestServer, path: &str, extra: &[&str]) -> Proc {
    crate::common::proc::require("curl");
    let url = url(s, path);
    let mut args: Vec<String> = ["-sS", "-N", "--max-time", "20", "-H", "Accept: text/event-stream"]
        .iter()
        .map(|a| a.to_string())
        .collect();
    args.extend(extra.iter().map(|a| a.to_string()));
    args.push(url);
    Proc::spawn("curl", &args)
}

async fn streams(s: &TestServer, n: i64) {
    within("SSE stream count", async {
        while s.broker().metrics.http_sse_streams.load(Ordering::Relaxed) != n {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_carries_mqtt_messages_with_rising_ids() {
    // A stream that went away is noticed at its next write: keep-alives every 100 ms here.
    let s = server(FAST, "");
    let mqtt = Mqtt::connect(&s, "pub").await;
    mqtt.publish("room/1/temp", true, "19.5").await;
    let mut stream = sse(&s, "/topics/room/+/temp", &[]);
    // The retained message first, then live ones, each an event with the next id.
    stream.wait_for_line("id: 1");
    let data = stream.wait_for_line("data: ");
    let j: serde_json::Value = serde_json::from_str(data.trim_start_matches("data: ")).unwrap();
    assert_eq!(
        (j["topic"].as_str(), j["payload"].as_str(), j["retain"].as_bool()),
        (Some("room/1/temp"), Some("19.5"), Some(true))
    );
    mqtt.publish("room/2/temp", false, "20.1").await;
    stream.wait_for_line("id: 2");
    let data = stream.wait_for_line("data: ");
    assert!(data.contains("\"payload\":\"20.1\""), "{data}");
    stream.kill();
    streams(&s, 0).await;
    assert_eq!(
        s.broker().session_count(),
        1,
        "only the publisher's: an anonymous stream's session ends with it"
    );
    s.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn last_event_id_resumes_without_losing_messages() {
    let s = server(FAST, "");
    let mqtt = Mqtt::connect(&s, "pub").await;
    let mut first = sse(&s, "/topics/feed/%23?clientid=dash-1", &[]);
    streams(&s, 1).await;
    mqtt.publish("feed/a", false, "m1").await;
    first.wait_for_line("id: 1");
    first.wait_for_line("m1");
    first.kill();
    streams(&s, 0).await;
    // Published while the browser was away: queued by its session.
    mqtt.publish("feed/b", false, "m2").await;
    mqtt.publish("feed/c", false, "m3").await;
    let deadline = std::time::Instant::now() + TIMEOUT;
    while s.broker().metrics.messages_received[1].load(Ordering::Relaxed) < 3 && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let mut again = sse(&s, "/topics/feed/%23?clientid=dash-1", &["-H", "Last-Event-ID: 1"]);
    again.wait_for_line("id: 2");
    again.wait_for_line("m2");
    again.wait_for_line("id: 3");
    again.wait_for_line("m3");
    again.kill();
    s.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_follow_the_acl() {
    let acl = "[acl]\nno_match = \"deny\"\n[[acl.rules]]\npermission = \"allow\"\nwho = \"all\"\naction = \"subscribe\"\ntopics = [\"public/#\"]\n";
    let s = server(acl, "");
    let r = curl(&["-H", "Accept: text/event-stream"], &url(&s, "/topics/private/%23"));
    assert_eq!(r.status, 403, "{r:?}");
    assert_eq!(r.json()["code"], "NOT_AUTHORIZED");
    let r = curl(&["-H", "Accept: text/event-stream"], &url(&s, "/topics/a/%23/b"));
    assert_eq!(r.status, 400, "{r:?}");
    s.stop();
}
