//! The publish API, errors, authentication, health and metrics, over HTTP/1.1, h2c and h2.

use std::sync::atomic::Ordering;

use unigate_auth::password::PasswordStore;
use unigate_auth::Secret;

use crate::common::pki::Pki;
use crate::util::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_publish_over_h2c_reaches_mqtt_with_its_properties() {
    let s = server("", "");
    let mut sub = Mqtt::connect(&s, "sub").await;
    sub.subscribe("web/#").await;
    let body = r#"{"topic":"web/1","payload":"aGk=","encoding":"base64","qos":1,"retain":false,
        "properties":{"content_type":"text/plain","user_properties":{"origin":"browser"},
        "message_expiry":60,"response_topic":"web/reply","correlation_data":"AQI="}}"#;
    let r = curl(
        &[
            "--http2-prior-knowledge",
            "-H",
            "content-type: application/json",
            "-d",
            body,
        ],
        &url(&s, "/api/v1/publish"),
    );
    assert_eq!((r.status, r.version.as_str()), (200, "HTTP/2"), "{r:?}");
    assert_eq!(r.json()["routed"], 1);
    let p = sub.recv().await;
    assert_eq!((&p.topic[..], &p.payload[..]), (&b"web/1"[..], &b"hi"[..]));
    let props = p.properties.unwrap();
    assert_eq!(props.content_type.as_deref(), Some("text/plain"));
    assert_eq!(props.user_properties, [("origin".to_string(), "browser".to_string())]);
    assert_eq!(props.response_topic.as_deref(), Some("web/reply"));
    assert_eq!(props.correlation_data.as_deref(), Some(&[1u8, 2][..]));
    assert!(props.message_expiry_interval.is_some_and(|e| (58..=60).contains(&e)));

    // Raw publish over HTTP/1.1: the body as payload, Content-Type as content type.
    let r = curl(
        &[
            "-X",
            "POST",
            "-H",
            "content-type: application/json",
            "--data-binary",
            "{\"t\":21}",
        ],
        &url(&s, "/topics/web/raw?qos=1"),
    );
    assert_eq!((r.status, r.version.as_str()), (200, "HTTP/1.1"), "{r:?}");
    let p = sub.recv().await;
    assert_eq!(&p.payload[..], b"{\"t\":21}");
    assert_eq!(p.properties.unwrap().content_type.as_deref(), Some("application/json"));

    // Bulk: results per item, in order, a bad one not stopping the rest.
    let r = curl(
        &[
            "-H",
            "content-type: application/json",
            "-d",
            r#"[{"topic":"web/b1","payload":"1"},{"topic":"web/+","payload":"x"},{"topic":"web/b3","payload":"3"}]"#,
        ],
        &url(&s, "/api/v1/publish/bulk"),
    );
    assert_eq!(r.status, 200, "{r:?}");
    let j = r.json();
    assert_eq!(j[0]["routed"], 1);
    assert_eq!(j[1]["code"], "BAD_REQUEST");
    assert_eq!(j[2]["routed"], 1);
    assert_eq!(&sub.recv().await.payload[..], b"1");
    assert_eq!(&sub.recv().await.payload[..], b"3");
    s.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_a_json_error() {
    let s = server("[http]\nmax_body = 2048\n", "");
    let post = |args: &[&str], path: &str| curl(args, &url(&s, path));
    let json = ["-H", "content-type: application/json"];
    let check = |r: Reply, status: u16, code: &str| {
        assert_eq!(r.status, status, "{r:?}");
        assert_eq!(r.json()["code"], code, "{r:?}");
        assert!(r.json()["message"].as_str().is_some_and(|m| !m.is_empty()));
    };
    check(
        post(&[&json[..], &["-d", "{bad"]].concat(), "/api/v1/publish"),
        400,
        "BAD_REQUEST",
    );
    check(
        post(&[&json[..], &["-d", r#"{"topic":"a/#"}"#]].concat(), "/api/v1/publish"),
        400,
        "BAD_REQUEST",
    );
    check(
        post(
            &[&json[..], &["-d", r#"{"topic":"a","qos":5}"#]].concat(),
            "/api/v1/publish",
        ),
        400,
        "BAD_REQUEST",
    );
    check(
        post(
            &[
                &json[..],
                &["-d", r#"{"topic":"a","payload":"%%","encoding":"base64"}"#],
            ]
            .concat(),
            "/api/v1/publish",
        ),
        400,
        "BAD_REQUEST",
    );
    check(
        post(
            &[&json[..], &["-d", r#"{"topic":"a","extra":1}"#]].concat(),
            "/api/v1/publish",
        ),
        400,
        "BAD_REQUEST",
    );
    check(
        post(&["-H", "content-type: text/plain", "-d", "x"], "/api/v1/publish"),
        415,
        "UNSUPPORTED_MEDIA_TYPE",
    );
    let big = format!(r#"{{"topic":"a","payload":"{}"}}"#, "x".repeat(4096));
    check(
        post(&[&json[..], &["-d", &big]].concat(), "/api/v1/publish"),
        413,
        "TOO_LARGE",
    );
    check(post(&["-d", &"y".repeat(4096)], "/topics/a"), 413, "TOO_LARGE");
    check(post(&[], "/no/such/thing"), 404, "NOT_FOUND");
    check(post(&[], "/topics/none/retained"), 404, "NOT_FOUND");
    // Still serving.
    assert_eq!(
        post(&[&json[..], &["-d", r#"{"topic":"a"}"#]].concat(), "/api/v1/publish").status,
        200
    );
    s.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_and_bearer_credentials_pass_the_chain_and_the_acl() {
    let dir = std::env::temp_dir().join(format!("unigate-http-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("passwd.toml");
    let mut store = PasswordStore::new(&file);
    store.add("alice", &Secret::new("wonderland")).unwrap();
    store.save().unwrap();
    let secret = "an-http-test-secret-of-32-bytes!!";
    let top = format!(
        "[auth.chains.web]\nauthenticators = [\"tokens\", \"users\"]\nno_match = \"deny\"\n\
         [auth.authenticators.users]\nkind = \"password\"\nfile = {:?}\n\
         [auth.authenticators.tokens]\nkind = \"jwt\"\nsecret = \"{secret}\"\nusername_claim = \"sub\"\n\
         [acl]\nno_match = \"deny\"\n\
         [[acl.rules]]\npermission = \"allow\"\nwho = \"all\"\naction = \"all\"\ntopics = [\"users/${{username}}/#\"]\n\
         [[acl.rules]]\npermission = \"allow\"\nwho = {{ clientid = \"sub\" }}\naction = \"all\"\ntopics = [\"#\"]\n",
        file.display().to_string()
    );
    let s = server(&top, "auth = \"web\"");
    let mut sub = Mqtt::connect(&s, "sub").await;
    sub.subscribe("users/#").await;
    let body = |t: &str| format!(r#"{{"topic":"{t}","payload":"p"}}"#);
    let json = ["-H", "content-type: application/json"];
    let post = |extra: &[&str], topic: &str| {
        curl(
            &[&json[..], extra, &["-d", &body(topic)]].concat(),
            &url(&s, "/api/v1/publish"),
        )
    };
    let r = post(&[], "users/alice/x");
    assert_eq!(r.status, 401);
    assert!(r.headers.contains("www-authenticate: bearer"), "{}", r.headers);
    assert_eq!(post(&["-u", "alice:nope"], "users/alice/x").status, 401);
    assert_eq!(post(&["-u", "alice:wonderland"], "users/alice/x").status, 200);
    assert_eq!(&sub.recv().await.topic[..], b"users/alice/x");
    assert_eq!(post(&["-u", "alice:wonderland"], "users/bob/x").status, 403);
    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &serde_json::json!({"sub": "bob", "exp": 4_102_444_800u64}),
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap();
    let bearer = format!("authorization: Bearer {token}");
    assert_eq!(
        post(&["-H", &bearer], "users/bob/y").status,
        200,
        "the sub claim is the user name"
    );
    assert_eq!(&sub.recv().await.topic[..], b"users/bob/y");
    assert_eq!(
        post(&["-H", "authorization: Bearer not.a.jwt"], "users/bob/y").status,
        401
    );
    sub.assert_silent().await;
    let _ = std::fs::remove_dir_all(&dir);
    s.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_ready_metrics_and_retained_reads() {
    let s = server("", "");
    assert_eq!(curl(&[], &url(&s, "/health")).json()["status"], "ok");
    assert_eq!(curl(&[], &url(&s, "/ready")).status, 200);
    let mqtt = Mqtt::connect(&s, "pub").await;
    mqtt.publish("cfg/x", true, "retained-value").await;
    let deadline = std::time::Instant::now() + TIMEOUT;
    while s.broker().metrics.retained.load(Ordering::Relaxed) == 0 && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let r = curl(&[], &url(&s, "/topics/cfg/x"));
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.json()["payload"], "retained-value");
    assert_eq!(r.json()["retain"], true);
    let m = curl(&[], &url(&s, "/metrics"));
    assert_eq!(m.status, 200);
    assert!(m.headers.contains("text/plain; version=0.0.4"), "{}", m.headers);
    for line in [
        "unigate_retained_messages 1",
        "unigate_messages_received_total{qos=\"1\"} 1",
        "# TYPE unigate_connections gauge",
    ] {
        assert!(m.body.contains(line), "no {line:?} in\n{}", m.body);
    }
    s.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_negotiates_http2_by_alpn_and_falls_back_to_http1() {
    let pki = Pki::new("https");
    let tls = format!(
        "tls = {{ cert = {:?}, key = {:?} }}",
        pki.p("server.pem"),
        pki.p("server.key")
    );
    let s = server("", &tls);
    let https = format!("https://localhost:{}/health", s.listener("http").port());
    let resolve = format!("localhost:{}:127.0.0.1", s.listener("http").port());
    let r = curl(
        &["--http2", "--cacert", &pki.p("ca.pem"), "--resolve", &resolve],
        &https,
    );
    assert_eq!((r.status, r.version.as_str()), (200, "HTTP/2"), "{r:?}");
    let r = curl(
        &["--http1.1", "--cacert", &pki.p("ca.pem"), "--resolve", &resolve],
        &https,
    );
    assert_eq!((r.status, r.version.as_str()), (200, "HTTP/1.1"), "{r:?}");
    s.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_swaps_the_chain_of_an_https_listener() {
    let pki = Pki::new("https-reload");
    let dir = std::env::temp_dir().join(format!("unigate-http-reload-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("passwd.toml");
    let mut store = PasswordStore::new(&file);
    store.add("alice", &Secret::new("wonderland")).unwrap();
    store.save().unwrap();
    let text = |authenticators: &str| {
        format!(
            "workers = 2\nsys_interval = \"0s\"\n\
             [auth.chains.web]\nauthenticators = [{authenticators}]\nno_match = \"deny\"\n\
             [auth.authenticators.users]\nkind = \"password\"\nfile = {:?}\n\
             [[listeners]]\nname = \"mqtt\"\nprotocol = \"mqtt\"\nbind = \"127.0.0.1:0\"\n\
             [[listeners]]\nname = \"http\"\nprotocol = \"http\"\nbind = \"127.0.0.1:0\"\nauth = \"web\"\n\
             tls = {{ cert = {:?}, key = {:?} }}\n",
            file.display().to_string(),
            pki.p("server.pem"),
            pki.p("server.key")
        )
    };
    let path = dir.join("unigate.toml");
    std::fs::write(&path, text("\"users\"")).unwrap();
    let config = unigate::config::Config::load(&path, Vec::new()).unwrap();
    let opts = unigate::server::StartOptions {
        handle_signals: false,
        config_path: Some(path.clone()),
    };
    let running = unigate::server::start(config, [127, 0, 0, 1].into(), opts).unwrap();
    let port = running.addr("http").unwrap().port();
    let resolve = format!("localhost:{port}:127.0.0.1");
    let get = |extra: &[&str], p: &str| {
        curl(
            &[&["--cacert", &pki.p("ca.pem"), "--resolve", &resolve], extra].concat(),
            &format!("https://localhost:{port}{p}"),
        )
    };
    let publish = || {
        get(
            &[
                "-u",
                "alice:wonderland",
                "-H",
                "content-type: application/json",
                "-d",
                r#"{"topic":"r/1"}"#,
            ],
            "/api/v1/publish",
        )
    };
    assert_eq!(publish().status, 200);
    // The chain loses its authenticator; the management API (loopback, no [management]) reloads.
    std::fs::write(&path, text("")).unwrap();
    let r = get(&["-X", "POST"], "/api/v1/auth/reload");
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(publish().status, 401, "the reloaded chain refuses alice");
    running.stop().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reqwest_publishes_over_http1_and_h2c_and_reads_the_answers() {
    let s = server("", "");
    let mut sub = Mqtt::connect(&s, "sub").await;
    sub.subscribe("rq/#").await;
    let h1 = reqwest_test::Client::new();
    let h2 = reqwest_test::Client::builder().http2_prior_knowledge().build().unwrap();
    for (client, topic, version) in [
        (&h1, "rq/h1", reqwest_test::Version::HTTP_11),
        (&h2, "rq/h2", reqwest_test::Version::HTTP_2),
    ] {
        let r = client
            .post(url(&s, "/api/v1/publish"))
            .json(&serde_json::json!({"topic": topic, "payload": "hello", "qos": 1}))
            .send()
            .await
            .unwrap();
        assert_eq!((r.status().as_u16(), r.version()), (200, version));
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(body["routed"], 1, "{body}");
        let p = sub.recv().await;
        assert_eq!((&p.topic[..], &p.payload[..]), (topic.as_bytes(), &b"hello"[..]));
        // A bad request is a JSON error over either version.
        let r = client
            .post(url(&s, "/api/v1/publish"))
            .header("content-type", "application/json")
            .body("{")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 400);
        let err: serde_json::Value = r.json().await.unwrap();
        assert_eq!(err["code"], "BAD_REQUEST");
    }
    s.stop();
}
