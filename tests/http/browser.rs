//! A real browser: headless Chromium (Debian's `chromium`, driven by playwright-core from
//! tests/mqttjs/browser.js) runs MQTT.js's browser bundle over the HTTP listener's `/mqtt` and an
//! `EventSource` on `/topics/{filter}` in one page; an MQTT client over TCP and an HTTP publish
//! are the other side. And a page from another origin (tests/mqttjs/cors.js) using the event
//! stream and `fetch()` across origins, allowed by `http.cors_origins` or refused.

use crate::util::*;

/// Chromium's binary: `$CHROMIUM`, else Debian's.
fn chromium() -> String {
    std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_runs_mqtt_js_and_an_event_source_against_the_server() {
    let browser = chromium();
    assert!(
        std::path::Path::new(&browser).is_file(),
        "{browser} is missing: the browser test needs Debian's chromium (apt-get install chromium); \
         scripts/test.sh installs it"
    );
    let s = server("", "");
    let mut tcp = Mqtt::connect(&s, "tcp-browser").await;
    tcp.subscribe("browser/#").await;

    let driver = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/mqttjs/browser.js");
    let port = s.listener("http").port().to_string();
    let args: Vec<String> = vec![driver.into(), port, "browser".into()];
    let mut page = Proc::spawn("node", &args);
    page.wait_for_line("ready");

    // Browser (MQTT.js over WebSocket) → MQTT over TCP.
    let p = tcp.recv().await;
    assert_eq!(
        (&p.topic[..], &p.payload[..]),
        (&b"browser/from-page"[..], &b"hello from the browser"[..])
    );
    // ... and the page's own EventSource saw it too.
    page.wait_for_line("SSE browser/from-page hello from the browser");
    // HTTP publish → MQTT.js in the browser.
    let r = curl(
        &[
            "-H",
            "content-type: application/json",
            "-d",
            r#"{"topic":"browser/from-http","payload":"hi browser","qos":1}"#,
        ],
        &url(&s, "/api/v1/publish"),
    );
    assert_eq!(r.status, 200, "{r:?}");
    page.wait_for_line("MQTT browser/from-http hi browser");
    // MQTT over TCP → the browser's EventSource.
    tcp.publish("browser/from-mqtt", false, "hi event source").await;
    page.wait_for_line("SSE browser/from-mqtt hi event source");
    page.wait_for_line("done");
    assert!(page.finish().0.success(), "the browser driver exits cleanly");
    s.stop();
}

/// A page at `page_origin` streams and publishes across origins; its output lines.
fn cross_origin_page(s: &TestServer, prefix: &str, page_origin: &str) -> Vec<String> {
    let driver = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/mqttjs/cors.js");
    let port = s.listener("http").port().to_string();
    let args: Vec<String> = vec![driver.into(), port, prefix.into(), page_origin.into()];
    let mut page = Proc::spawn("node", &args);
    tokio::task::block_in_place(|| page.wait_for_line("done"));
    let (status, lines) = page.finish();
    assert!(status.success(), "the browser driver exits cleanly: {lines:?}");
    lines
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_pages_from_listed_origins_stream_and_publish_and_others_cannot() {
    let browser = chromium();
    assert!(
        std::path::Path::new(&browser).is_file(),
        "{browser} is missing (apt-get install chromium)"
    );
    let s = server("[http]\ncors_origins = [\"http://app.test\"]", "");
    let mut tcp = Mqtt::connect(&s, "tcp-cors").await;
    tcp.subscribe("cors/#").await;

    // Allowed: the preflighted fetch() publishes, and the page's EventSource gets it back.
    let lines = cross_origin_page(&s, "cors/app", "http://app.test");
    for want in [
        "sse open",
        "published 200",
        "SSE cors/app/from-page hello across origins",
    ] {
        assert!(lines.iter().any(|l| l == want), "{want:?} missing: {lines:?}");
    }
    let p = tcp.recv().await;
    assert_eq!(&p.topic[..], &b"cors/app/from-page"[..]);

    // Another origin: neither the stream nor the publish gets through, and nothing is published.
    let lines = cross_origin_page(&s, "cors/evil", "http://evil.test");
    for want in ["sse refused", "publish refused"] {
        assert!(lines.iter().any(|l| l == want), "{want:?} missing: {lines:?}");
    }
    tcp.assert_silent().await;
    s.stop();
}
