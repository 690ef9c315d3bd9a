//! A real browser: headless Chromium (Debian's `chromium`, driven by playwright-core from
//! tests/mqttjs/browser.js) runs MQTT.js's browser bundle over the HTTP listener's `/mqtt` and an
//! `EventSource` on `/topics/{filter}` in one page; an MQTT client over TCP and an HTTP publish
//! are the other side.

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
