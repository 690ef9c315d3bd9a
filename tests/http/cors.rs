//! Pages from other origins (`http.cors_origins`), with curl sending the `Origin` a browser would:
//! listed origins get CORS headers and preflight answers, others 403 before anything happens,
//! clients without `Origin`, the listener's own origin and `/mqtt` are not affected. The same
//! with a real browser is in `browser.rs`.

use crate::util::*;

const PUBLISH: &str = r#"{"topic":"cors/a","payload":"hi","qos":1}"#;

fn publish(s: &TestServer, extra: &[&str]) -> Reply {
    let mut args = vec!["-H", "content-type: application/json", "-d", PUBLISH];
    args.extend_from_slice(extra);
    curl(&args, &url(s, "/api/v1/publish"))
}

/// A WebSocket upgrade of `path` with `Origin: origin`; the status (101 keeps the connection
/// open, so curl stops after 1 s).
fn upgrade(s: &TestServer, path: &str, origin: &str) -> (u16, String) {
    let origin = format!("Origin: {origin}");
    let mut args = WS_UPGRADE.to_vec();
    args.extend(["-H", "Sec-WebSocket-Protocol: mqtt", "-H", &origin, "--max-time", "1"]);
    curl_status(&args, &url(s, path))
}

/// A CORS preflight of a POST to the publish API from a page at `origin`, with `extra` headers.
fn preflight(s: &TestServer, origin: &str, extra: &[&str]) -> Reply {
    let origin = format!("Origin: {origin}");
    let mut args = vec![
        "-X",
        "OPTIONS",
        "-H",
        &origin,
        "-H",
        "Access-Control-Request-Method: POST",
    ];
    args.extend_from_slice(extra);
    curl(&args, &url(s, "/api/v1/publish"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listed_origins_get_cors_and_others_are_refused_before_anything_happens() {
    let s = server(
        "[http]\ncors_origins = [\"http://app.test\", \"https://other.test:8443\"]",
        "",
    );
    let mut sub = Mqtt::connect(&s, "cors-sub").await;
    sub.subscribe("cors/#").await;

    // Not a browser: no Origin, served as ever, no CORS headers.
    let r = publish(&s, &[]);
    assert_eq!(r.status, 200, "{r:?}");
    assert!(!r.headers.contains("access-control-allow-origin"), "{}", r.headers);
    sub.recv().await;

    // A page at the listener's own origin.
    let own = format!("Origin: http://127.0.0.1:{}", s.listener("http").port());
    let r = publish(&s, &["-H", &own]);
    assert_eq!(r.status, 200, "{r:?}");
    sub.recv().await;

    // A listed origin: served, with the CORS headers (the origin echoed, credentials allowed).
    let r = publish(&s, &["-H", "Origin: http://app.test"]);
    assert_eq!(r.status, 200, "{r:?}");
    for h in [
        "access-control-allow-origin: http://app.test",
        "access-control-allow-credentials: true",
        "vary: origin",
    ] {
        assert!(r.headers.contains(h), "{h} missing: {}", r.headers);
    }
    sub.recv().await;

    // Its preflight is answered here.
    let r = preflight(
        &s,
        "https://other.test:8443",
        &["-H", "Access-Control-Request-Headers: authorization, content-type"],
    );
    assert_eq!(r.status, 204, "{r:?}");
    for h in [
        "access-control-allow-origin: https://other.test:8443",
        "access-control-allow-methods: get, head, post, put, delete",
        "access-control-allow-headers: authorization, content-type",
        "access-control-max-age: 600",
    ] {
        assert!(r.headers.contains(h), "{h} missing: {}", r.headers);
    }

    // Any other origin: 403 with the JSON error, and nothing published.
    for origin in ["http://evil.test", "http://app.test:8080", "null"] {
        let r = publish(&s, &["-H", &format!("Origin: {origin}")]);
        assert_eq!(r.status, 403, "{origin}: {r:?}");
        assert_eq!(r.json()["code"], "ORIGIN_NOT_ALLOWED", "{origin}");
        assert!(!r.headers.contains("access-control-allow-origin"), "{}", r.headers);
    }
    let r = preflight(&s, "http://evil.test", &[]);
    assert_eq!(r.status, 403, "{r:?}");
    let r = curl(&["-H", "Origin: http://evil.test"], &url(&s, "/topics/cors%2Fa"));
    assert_eq!(r.status, 403, "a refused page reads no retained message either: {r:?}");
    sub.assert_silent().await;

    // WebSockets: the JSON one is HTTP-authenticated and checked; MQTT over WebSocket is not.
    let (status, head) = upgrade(&s, "/api/v1/ws", "http://evil.test");
    assert_eq!(status, 403, "{head}");
    let (status, head) = upgrade(&s, "/mqtt", "http://evil.test");
    assert_eq!(status, 101, "{head}");
    s.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_origin_with_a_star_but_without_credentials() {
    let s = server("[http]\ncors_origins = [\"*\"]", "");
    let r = publish(&s, &["-H", "Origin: https://anywhere.test"]);
    assert_eq!(r.status, 200, "{r:?}");
    assert!(r.headers.contains("access-control-allow-origin: *"), "{}", r.headers);
    assert!(!r.headers.contains("access-control-allow-credentials"), "{}", r.headers);
    s.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn by_default_only_the_listeners_own_origin() {
    let s = server("", "");
    let r = publish(&s, &["-H", "Origin: http://app.test"]);
    assert_eq!(r.status, 403, "{r:?}");
    s.stop();
}

#[test]
fn a_bad_origin_is_a_config_error_naming_the_key() {
    for bad in ["https://app.test/path", "app.test", "ftp://app.test"] {
        let text = format!(
            "[http]\ncors_origins = [\"{bad}\"]\n[[listeners]]\nname = \"h\"\nprotocol = \"http\"\nbind = \"127.0.0.1:0\"\n"
        );
        let e = unigate::config::Config::parse(&text, "test", Vec::new()).expect_err(bad);
        assert!(e.to_string().contains("cors_origins"), "{bad}: {e}");
    }
}
