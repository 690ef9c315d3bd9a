//! The management API: clients, subscriptions, retained messages, listeners, stats, auth and
//! reload, the OpenAPI document, and who may use it — with curl against the real server and
//! MQTT clients (rumqttc) on the other side.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use rumqttc::v5::mqttbytes::v5::Packet;
use rumqttc::v5::{AsyncClient, Event, MqttOptions};
use tokio::sync::mpsc;
use unigate::auth::Chains;
use unigate::config::Config;
use unigate::http::mgmt;
use unigate::server::{self, StartOptions};
use unigate_auth::password::PasswordStore;
use unigate_auth::Secret;

use crate::util::*;

/// A fresh directory for one test's files, removed when the test ends.
fn scratch() -> tempfile::TempDir {
    tempfile::Builder::new().prefix("unigate-mgmt-").tempdir().unwrap()
}

/// The configuration text of a server with `mqtt` and `http` listeners (as `util::server`).
fn config_text(top: &str, http_keys: &str) -> String {
    format!(
        "workers = 2\nsys_interval = \"0s\"\n{top}\n\
         [[listeners]]\nname = \"mqtt\"\nprotocol = \"mqtt\"\nbind = \"127.0.0.1:0\"\n\
         [[listeners]]\nname = \"http\"\nprotocol = \"http\"\nbind = \"127.0.0.1:0\"\n{http_keys}\n"
    )
}

/// A server started from the file `dir/unigate.toml` (so that it can reload it).
fn start(dir: &Path, top: &str, http_keys: &str) -> TestServer {
    let path = dir.join("unigate.toml");
    std::fs::write(&path, config_text(top, http_keys)).unwrap();
    let config = Config::load(&path, Vec::new()).expect("test config");
    let opts = StartOptions {
        handle_signals: false,
        config_path: Some(path.clone()),
    };
    let running = server::start(config.clone(), [127, 0, 0, 1].into(), opts).expect("server starts");
    let addr = running.addr("mqtt").expect("mqtt listener");
    TestServer {
        server: Some(running),
        addr,
    }
}

/// A password file with these users (password: the name reversed).
fn users(dir: &Path, names: &[&str]) -> PathBuf {
    let file = dir.join("passwd.toml");
    let mut store = PasswordStore::new(&file);
    for n in names {
        store.add(n, &Secret::new(pw(n))).unwrap();
    }
    store.save().unwrap();
    file
}

fn pw(user: &str) -> String {
    user.chars().rev().collect()
}

/// `-u user:password`.
fn as_user(user: &str) -> String {
    format!("{user}:{}", pw(user))
}

fn get(s: &TestServer, args: &[&str], path: &str) -> Reply {
    curl(args, &url(s, path))
}

fn get_json(s: &TestServer, path: &str) -> serde_json::Value {
    let r = get(s, &[], path);
    assert_eq!(r.status, 200, "{path}: {r:?}");
    r.json()
}

fn post_json(s: &TestServer, args: &[&str], path: &str, body: &str) -> Reply {
    let args = [args, &["-H", "content-type: application/json", "-d", body]].concat();
    curl(&args, &url(s, path))
}

fn delete(s: &TestServer, args: &[&str], path: &str) -> Reply {
    curl(&[args, &["-X", "DELETE"]].concat(), &url(s, path))
}

fn ids(page: &serde_json::Value) -> Vec<String> {
    page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["clientid"].as_str().unwrap().to_string())
        .collect()
}

/// A raw MQTT 5 connection (rumqttc 0.25 cannot read a DISCONNECT without a property length,
/// which is what the server sends): CONNECT, then whole frames as (type byte, body).
struct RawV5(tokio::net::TcpStream);

impl RawV5 {
    async fn connect(s: &TestServer, id: &str) -> RawV5 {
        use tokio::io::AsyncWriteExt as _;
        let mut stream = tokio::net::TcpStream::connect(s.addr).await.unwrap();
        let mut body = vec![0, 4, b'M', b'Q', b'T', b'T', 5, 0x02, 0, 60, 0];
        body.extend_from_slice(&u16::try_from(id.len()).unwrap().to_be_bytes());
        body.extend_from_slice(id.as_bytes());
        let mut packet = vec![0x10, u8::try_from(body.len()).unwrap()];
        packet.extend(body);
        stream.write_all(&packet).await.unwrap();
        let mut c = RawV5(stream);
        let (kind, body) = c.frame().await.expect("CONNACK");
        assert_eq!((kind, body.get(1)), (0x20, Some(&0)), "CONNACK success: {body:02x?}");
        c
    }

    /// The next frame; None when the connection is closed.
    async fn frame(&mut self) -> Option<(u8, Vec<u8>)> {
        use tokio::io::AsyncReadExt as _;
        within("a frame", async {
            let kind = self.0.read_u8().await.ok()?;
            let (mut len, mut shift) = (0usize, 0);
            loop {
                let b = self.0.read_u8().await.ok()?;
                len |= usize::from(b & 0x7f) << shift;
                shift += 7;
                if b & 0x80 == 0 {
                    break;
                }
            }
            let mut body = vec![0; len];
            self.0.read_exact(&mut body).await.ok()?;
            Some((kind, body))
        })
        .await
    }
}

/// An MQTT 5 client with a persistent session (rumqttc).
async fn persistent(s: &TestServer, id: &str, expiry: u32) -> (AsyncClient, tokio::task::JoinHandle<()>) {
    let mut opts = MqttOptions::new(id, "127.0.0.1", s.port());
    opts.set_clean_start(false);
    opts.set_session_expiry_interval(Some(expiry));
    let (client, mut ev) = AsyncClient::new(opts, 10);
    let (tx, mut connected) = mpsc::unbounded_channel();
    let task = tokio::spawn(async move {
        while let Ok(e) = ev.poll().await {
            if let Event::Incoming(Packet::ConnAck(_)) = e {
                let _ = tx.send(());
            }
        }
    });
    within("CONNACK", connected.recv()).await.expect("connected");
    (client, task)
}

/// Polls `f` until it is true (the server acts on its own threads).
async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    within(what, async {
        while !f() {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_are_listed_paged_filtered_and_shown() {
    let tmp = scratch();
    let dir = tmp.path();
    let s = start(dir, "", "");
    let mut c1 = Mqtt::connect(&s, "dev-1").await;
    let _c2 = Mqtt::connect(&s, "dev-2").await;
    let _other = Mqtt::connect(&s, "other").await;
    c1.subscribe("a/#").await;

    let all = get_json(&s, "/api/v1/clients");
    assert_eq!(ids(&all), ["dev-1", "dev-2", "other"], "sorted by client id");
    assert_eq!(all["meta"], serde_json::json!({"page": 1, "limit": 100, "count": 3}));
    let p1 = get_json(&s, "/api/v1/clients?limit=2");
    let p2 = get_json(&s, "/api/v1/clients?limit=2&page=2");
    assert_eq!(
        (ids(&p1), ids(&p2)),
        (vec!["dev-1".into(), "dev-2".into()], vec!["other".to_string()])
    );
    assert_eq!(p2["meta"]["count"], 3);
    assert!(ids(&get_json(&s, "/api/v1/clients?limit=2&page=3")).is_empty());
    assert_eq!(ids(&get_json(&s, "/api/v1/clients?like=dev")), ["dev-1", "dev-2"]);
    assert_eq!(ids(&get_json(&s, "/api/v1/clients?like=dev&limit=1&page=2")), ["dev-2"]);
    assert_eq!(
        ids(&get_json(&s, "/api/v1/clients?protocol=mqtt&listener=mqtt")).len(),
        3
    );
    assert!(ids(&get_json(&s, "/api/v1/clients?protocol=coap")).is_empty());
    assert!(ids(&get_json(&s, "/api/v1/clients?listener=http")).is_empty());
    assert!(ids(&get_json(&s, "/api/v1/clients?username=nobody")).is_empty());
    assert!(ids(&get_json(&s, "/api/v1/clients?online=false")).is_empty());
    let filtered = get_json(&s, "/api/v1/clients?protocol=mqtt&like=other");
    assert_eq!(
        (ids(&filtered), &filtered["meta"]["count"]),
        (vec!["other".to_string()], &1.into())
    );

    let c = get_json(&s, "/api/v1/clients/dev-1");
    assert_eq!(c["clientid"], "dev-1");
    assert_eq!(
        (&c["online"], &c["protocol"], &c["listener"]),
        (&true.into(), &"mqtt".into(), &"mqtt".into())
    );
    assert!(c["peer"].as_str().unwrap().starts_with("127.0.0.1:"), "{c}");
    assert_eq!(c["details"]["version"], "5.0");
    assert_eq!(
        (&c["subscriptions"], &c["queued"], &c["inflight"]),
        (&1.into(), &0.into(), &0.into())
    );
    assert_eq!(c["session_expiry_interval"], 0);

    let r = get(&s, &[], "/api/v1/clients/nobody");
    assert_eq!((r.status, &r.json()["code"]), (404, &"NOT_FOUND".into()));
    for bad in ["limit=1001", "limit=0", "page=0", "limit=x", "colour=red"] {
        let r = get(&s, &[], &format!("/api/v1/clients?{bad}"));
        assert_eq!((r.status, &r.json()["code"]), (400, &"BAD_REQUEST".into()), "{bad}");
    }

    // Subscriptions: of one client, and all of them with filters.
    let subs = get_json(&s, "/api/v1/clients/dev-1/subscriptions");
    assert_eq!(subs["data"][0]["topic"], "a/#");
    assert_eq!(
        (&subs["data"][0]["qos"], &subs["meta"]["count"]),
        (&1.into(), &1.into())
    );
    assert_eq!(get(&s, &[], "/api/v1/clients/nobody/subscriptions").status, 404);
    let mut c2 = Mqtt::connect(&s, "dev-3").await;
    c2.subscribe("a/#").await;
    c2.subscribe("b/+").await;
    let all = get_json(&s, "/api/v1/subscriptions");
    assert_eq!(all["meta"]["count"], 3);
    let topics: Vec<(&str, &str)> = all["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["clientid"].as_str().unwrap(), e["topic"].as_str().unwrap()))
        .collect();
    assert_eq!(topics, [("dev-1", "a/#"), ("dev-3", "a/#"), ("dev-3", "b/+")]);
    assert_eq!(get_json(&s, "/api/v1/subscriptions?topic=a/%23")["meta"]["count"], 2);
    assert_eq!(get_json(&s, "/api/v1/subscriptions?clientid=dev-3")["meta"]["count"], 2);
    assert_eq!(
        get_json(&s, "/api/v1/subscriptions?clientid=dev-3&topic=b/%2B")["data"][0]["topic"],
        "b/+"
    );
    let p = get_json(&s, "/api/v1/subscriptions?limit=1&page=3");
    assert_eq!(
        (&p["data"][0]["topic"], &p["meta"]["count"]),
        (&"b/+".into(), &3.into())
    );
    s.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_added_for_a_client_deliver_until_removed() {
    let tmp = scratch();
    let dir = tmp.path();
    let s = start(dir, "", "");
    let mut dev = Mqtt::connect(&s, "dev").await;
    let publisher = Mqtt::connect(&s, "pub").await;
    publisher.publish("cmd/dev/cfg", true, "retained-cfg").await;
    eventually("the retained message", || {
        s.broker().metrics.retained.load(Ordering::Relaxed) == 1
    })
    .await;

    let r = post_json(
        &s,
        &[],
        "/api/v1/clients/dev/subscribe",
        r#"{"topic":"cmd/dev/#","qos":1}"#,
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!((&r.json()["topic"], &r.json()["qos"]), (&"cmd/dev/#".into(), &1.into()));
    let p = dev.recv().await;
    assert_eq!(
        (&p.topic[..], &p.payload[..]),
        (&b"cmd/dev/cfg"[..], &b"retained-cfg"[..])
    );
    publisher.publish("cmd/dev/reboot", false, "now").await;
    let p = dev.recv().await;
    assert_eq!((&p.topic[..], &p.payload[..]), (&b"cmd/dev/reboot"[..], &b"now"[..]));
    assert_eq!(
        get_json(&s, "/api/v1/clients/dev/subscriptions")["data"][0]["topic"],
        "cmd/dev/#"
    );

    let r = post_json(&s, &[], "/api/v1/clients/dev/unsubscribe", r#"{"topic":"cmd/dev/#"}"#);
    assert_eq!(r.status, 204, "{r:?}");
    publisher.publish("cmd/dev/reboot", false, "again").await;
    dev.assert_silent().await;
    assert_eq!(get_json(&s, "/api/v1/clients/dev")["subscriptions"], 0);
    let r = post_json(&s, &[], "/api/v1/clients/dev/unsubscribe", r#"{"topic":"cmd/dev/#"}"#);
    assert_eq!(r.status, 404, "no such subscription any more");

    for (body, status) in [
        (r#"{"topic":"a/#/b","qos":0}"#, 400),
        (r#"{"topic":"a","qos":3}"#, 400),
        (r#"{"topic":"$share/g/a","no_local":true}"#, 400),
        (r#"{"qos":1}"#, 400),
    ] {
        let r = post_json(&s, &[], "/api/v1/clients/dev/subscribe", body);
        assert_eq!((r.status, &r.json()["code"]), (status, &"BAD_REQUEST".into()), "{body}");
    }
    let r = post_json(&s, &[], "/api/v1/clients/nobody/subscribe", r#"{"topic":"a","qos":0}"#);
    assert_eq!(r.status, 404);
    s.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_client_kicks_it_or_discards_its_session() {
    let tmp = scratch();
    let dir = tmp.path();
    let s = start(dir, "", "");
    let mut victim = RawV5::connect(&s, "victim").await;
    let r = delete(&s, &[], "/api/v1/clients/victim");
    assert_eq!(r.status, 204, "{r:?}");
    let (kind, body) = victim.frame().await.expect("DISCONNECT before the close");
    assert_eq!(
        (kind, body.first()),
        (0xE0, Some(&0x98)),
        "DISCONNECT 0x98 Administrative action: {body:02x?}"
    );
    assert_eq!(victim.frame().await, None, "then the connection is closed");
    eventually("the session to end", || s.broker().session("victim").is_none()).await;
    assert_eq!(delete(&s, &[], "/api/v1/clients/victim").status, 404);

    // An offline persistent session is discarded.
    let (keeper, task) = persistent(&s, "keeper", 300).await;
    keeper.disconnect().await.unwrap();
    eventually("the client to go offline", || {
        s.broker().session("keeper").is_some_and(|x| !x.is_online())
    })
    .await;
    task.abort();
    let c = get_json(&s, "/api/v1/clients/keeper");
    assert_eq!(
        (&c["online"], &c["session_expiry_interval"]),
        (&false.into(), &300.into())
    );
    assert!(c["protocol"].is_null(), "nobody to describe it: {c}");
    assert_eq!(delete(&s, &[], "/api/v1/clients/keeper").status, 204);
    assert!(s.broker().session("keeper").is_none());
    assert_eq!(get(&s, &[], "/api/v1/clients/keeper").status, 404);
    s.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retained_messages_are_listed_read_and_deleted() {
    let tmp = scratch();
    let dir = tmp.path();
    let s = start(dir, "", "");
    let publisher = Mqtt::connect(&s, "pub").await;
    publisher.publish("a/1", true, "one").await;
    publisher
        .client
        .publish("a/2", rumqttc::v5::mqttbytes::QoS::AtLeastOnce, true, vec![0u8, 255])
        .await
        .unwrap();
    publisher.publish("b/long", true, &"x".repeat(1000)).await;
    eventually("three retained messages", || {
        s.broker().metrics.retained.load(Ordering::Relaxed) == 3
    })
    .await;

    let all = get_json(&s, "/api/v1/retained");
    assert_eq!(all["meta"]["count"], 3);
    let d = &all["data"];
    assert_eq!(
        (&d[0]["topic"], &d[1]["topic"], &d[2]["topic"]),
        (&"a/1".into(), &"a/2".into(), &"b/long".into())
    );
    assert_eq!(
        (&d[0]["payload"], &d[0]["encoding"], &d[0]["qos"]),
        (&"one".into(), &"plain".into(), &1.into())
    );
    assert_eq!(
        (&d[1]["payload"], &d[1]["encoding"]),
        (&"AP8=".into(), &"base64".into())
    );
    assert_eq!(d[0]["publisher"], "pub");
    assert_eq!(
        (&d[2]["payload_size"], &d[2]["truncated"]),
        (&1000.into(), &true.into())
    );
    assert_eq!(d[2]["payload"].as_str().unwrap().len(), 256, "default preview");
    let p = get_json(&s, "/api/v1/retained?limit=1&page=3&preview=10");
    assert_eq!(
        (&p["data"][0]["payload"], &p["meta"]["count"]),
        (&"xxxxxxxxxx".into(), &3.into())
    );
    assert_eq!(get_json(&s, "/api/v1/retained?filter=a/%2B")["meta"]["count"], 2);
    assert_eq!(get(&s, &[], "/api/v1/retained?filter=a/%23/b").status, 400);

    let one = get_json(&s, "/api/v1/retained/b/long");
    assert_eq!(
        (one["payload"].as_str().unwrap().len(), &one["truncated"]),
        (1000, &false.into())
    );
    assert_eq!(get(&s, &[], "/api/v1/retained/nothing/here").status, 404);
    assert_eq!(
        get(&s, &[], "/api/v1/retained/a/%2B").status,
        400,
        "a filter is not a topic"
    );

    assert_eq!(delete(&s, &[], "/api/v1/retained/a/1").status, 204);
    assert_eq!(get(&s, &[], "/api/v1/retained/a/1").status, 404);
    assert_eq!(delete(&s, &[], "/api/v1/retained/a/1").status, 404);
    assert_eq!(get_json(&s, "/api/v1/stats")["retained"], 2);
    let mut sub = Mqtt::connect(&s, "sub").await;
    sub.subscribe("a/#").await;
    assert_eq!(&sub.recv().await.topic[..], b"a/2", "the deleted one is not sent");
    sub.assert_silent().await;
    s.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listeners_and_stats() {
    let tmp = scratch();
    let dir = tmp.path();
    let s = start(dir, "", "");
    let l = get_json(&s, "/api/v1/listeners");
    assert_eq!(l["meta"]["count"], 2);
    let entries = l["data"].as_array().unwrap();
    for (entry, name) in entries.iter().zip(["mqtt", "http"]) {
        assert_eq!((&entry["name"], &entry["protocol"]), (&name.into(), &name.into()));
        assert_eq!(entry["bind"], s.listener(name).to_string());
        assert_eq!(
            (&entry["tls"], &entry["auth"]),
            (&false.into(), &serde_json::Value::Null)
        );
    }

    let before = get_json(&s, "/api/v1/stats");
    let mut sub = Mqtt::connect(&s, "sub").await;
    sub.subscribe("t/#").await;
    for i in 0..3 {
        sub.publish(&format!("t/{i}"), false, "x").await;
        sub.recv().await;
    }
    let after = get_json(&s, "/api/v1/stats");
    let n = |v: &serde_json::Value, path: &[&str]| path.iter().fold(v, |v, k| &v[k]).as_i64().unwrap();
    assert_eq!(
        n(&after, &["messages_received", "qos1"]) - n(&before, &["messages_received", "qos1"]),
        3
    );
    assert_eq!(
        n(&after, &["messages_sent", "qos1"]) - n(&before, &["messages_sent", "qos1"]),
        3
    );
    assert_eq!(
        (
            n(&after, &["connections"]),
            n(&after, &["sessions"]),
            n(&after, &["subscriptions"])
        ),
        (1, 1, 1)
    );
    assert!(n(&after, &["connections_total"]) >= 1);
    for key in ["dropped", "coap"] {
        assert!(after[key].is_object(), "{key}: {after}");
    }
    for key in ["sse_streams", "uptime_seconds", "retained", "acl_denied"] {
        assert!(after[key].is_number(), "{key}: {after}");
    }
    assert!(after["coap"]["observations_cancelled_timeout"].is_number());
    assert!(after["dropped"]["no_subscribers"].is_number());
    s.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn management_needs_its_own_credentials_and_roles() {
    let tmp = scratch();
    let dir = tmp.path();
    let passwd = users(dir, &["ro", "root", "eve"]);
    let top = format!(
        "[auth.chains.admins]\nauthenticators = [\"staff\"]\n\
         [auth.authenticators.staff]\nkind = \"password\"\nfile = {:?}\n\
         [management]\nchain = \"admins\"\nreaders = [\"ro\"]\nadmins = [\"root\"]\n",
        passwd.display().to_string()
    );
    // The HTTP listener itself takes anonymous clients: management does not.
    let s = start(dir, &top, "");
    let publisher = Mqtt::connect(&s, "pub").await;
    publisher.publish("keep/me", true, "v").await;
    eventually("the retained message", || {
        s.broker().metrics.retained.load(Ordering::Relaxed) == 1
    })
    .await;

    let r = get(&s, &[], "/api/v1/clients");
    assert_eq!(
        (r.status, &r.json()["code"]),
        (401, &"NOT_AUTHENTICATED".into()),
        "{r:?}"
    );
    assert!(r.headers.contains("www-authenticate"), "{}", r.headers);
    assert_eq!(get(&s, &["-u", "ro:wrong"], "/api/v1/clients").status, 401);
    let r = get(&s, &["-u", &as_user("eve")], "/api/v1/clients");
    assert_eq!(
        (r.status, &r.json()["code"]),
        (403, &"NOT_AUTHORIZED".into()),
        "eve is in no list"
    );
    assert_eq!(get(&s, &["-u", &as_user("ro")], "/api/v1/clients").status, 200);
    assert_eq!(get(&s, &["-u", &as_user("ro")], "/api/v1/retained/keep/me").status, 200);

    // A reader cannot change anything.
    let ro = as_user("ro");
    let r = delete(&s, &["-u", &ro], "/api/v1/retained/keep/me");
    assert_eq!((r.status, &r.json()["code"]), (403, &"NOT_AUTHORIZED".into()), "{r:?}");
    assert_eq!(delete(&s, &["-u", &ro], "/api/v1/clients/pub").status, 403);
    assert_eq!(
        post_json(&s, &["-u", &ro], "/api/v1/clients/pub/subscribe", r#"{"topic":"x"}"#).status,
        403
    );
    assert_eq!(post_json(&s, &["-u", &ro], "/api/v1/auth/reload", "{}").status, 403);
    let r = get(&s, &["-u", &ro], "/api/v1/retained/keep/me");
    assert_eq!(r.json()["payload"], "v", "still there");

    // An admin can.
    let root = as_user("root");
    assert_eq!(delete(&s, &["-u", &root], "/api/v1/retained/keep/me").status, 204);
    assert_eq!(get(&s, &["-u", &root], "/api/v1/retained/keep/me").status, 404);

    // The open routes stay open, and the public API keeps the listener's own (anonymous) chain.
    for open in ["/health", "/ready", "/metrics"] {
        assert_eq!(get(&s, &[], open).status, 200, "{open}");
    }
    let r = post_json(&s, &[], "/api/v1/publish", r#"{"topic":"x","payload":"y"}"#);
    assert_eq!(r.status, 200, "{r:?}");
    s.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_name_nobody_checked_is_no_admin() {
    // No management chain, and the listener's chain is the anonymous one: any name passes it
    // unchecked, so only "*" lets anyone in.
    let tmp = scratch();
    let dir = tmp.path();
    let s = start(dir, "[management]\nreaders = [\"*\"]\nadmins = [\"root\"]\n", "");
    assert_eq!(get(&s, &[], "/api/v1/stats").status, 200, "\"*\" reads");
    assert_eq!(get(&s, &["-u", "root:anything"], "/api/v1/stats").status, 200);
    let r = delete(&s, &["-u", "root:anything"], "/api/v1/retained/x");
    assert_eq!((r.status, &r.json()["code"]), (403, &"NOT_AUTHORIZED".into()), "{r:?}");
    s.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_summary_names_chains_but_no_secrets_and_the_listener_chain_serves_management() {
    let tmp = scratch();
    let dir = tmp.path();
    let passwd = users(dir, &["alice"]);
    let secret = "a-management-test-secret-of-32-bytes";
    let top = format!(
        "[auth]\naudit = false\n\
         [auth.chains.web]\nauthenticators = [\"tokens\", \"users\"]\nno_match = \"deny\"\n\
         [auth.authenticators.users]\nkind = \"password\"\nfile = {:?}\n\
         [auth.authenticators.tokens]\nkind = \"jwt\"\nsecret = \"{secret}\"\nusername_claim = \"sub\"\n\
         [acl]\nno_match = \"allow\"\n\
         [[acl.rules]]\npermission = \"deny\"\nwho = \"all\"\naction = \"publish\"\ntopics = [\"$SYS/#\"]\n\
         [management]\nreaders = [\"*\"]\nadmins = [\"alice\"]\n",
        passwd.display().to_string()
    );
    let s = start(dir, &top, "auth = \"web\"");
    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &serde_json::json!({"sub": "bob", "exp": 4_102_444_800u64}),
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap();
    let bearer = format!("authorization: Bearer {token}");
    assert_eq!(get(&s, &[], "/api/v1/auth").status, 401);
    let r = get(&s, &["-H", &bearer], "/api/v1/auth");
    assert_eq!(
        r.status, 200,
        "bob's token passes the listener's chain; \"*\" reads: {r:?}"
    );
    assert!(!r.body.contains(secret), "the jwt secret is never shown: {}", r.body);
    assert!(!r.body.contains("passwd.toml"), "nor file names: {}", r.body);
    let a = r.json();
    assert_eq!(a["chains"][0]["name"], "web");
    assert_eq!(a["chains"][0]["authenticators"], serde_json::json!(["tokens", "users"]));
    assert_eq!(a["chains"][0]["no_match"], "deny");
    assert_eq!(a["chains"][0]["listeners"], serde_json::json!(["http"]));
    let kinds: Vec<(&str, &str)> = a["authenticators"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| (x["name"].as_str().unwrap(), x["kind"].as_str().unwrap()))
        .collect();
    assert_eq!(kinds, [("tokens", "jwt"), ("users", "password")]);
    assert_eq!(a["acl"], serde_json::json!({"rules": 1, "no_match": "allow"}));
    assert_eq!(a["management"]["configured"], true);
    assert_eq!(a["management"]["admins"], serde_json::json!(["alice"]));
    let l = get(&s, &["-H", &bearer], "/api/v1/listeners").json();
    assert_eq!(
        (&l["data"][1]["name"], &l["data"][1]["auth"]),
        (&"http".into(), &"web".into())
    );

    // bob reads ("*") but is no admin; alice, through the same chain, is.
    assert_eq!(delete(&s, &["-H", &bearer], "/api/v1/retained/x").status, 403);
    assert_eq!(delete(&s, &["-u", &as_user("alice")], "/api/v1/retained/x").status, 404);
    s.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_applies_the_file_or_keeps_the_running_configuration() {
    let tmp = scratch();
    let dir = tmp.path();
    let passwd = users(dir, &["root", "eve"]);
    let top = |readers: &str| {
        format!(
            "[auth.chains.admins]\nauthenticators = [\"staff\"]\n\
             [auth.authenticators.staff]\nkind = \"password\"\nfile = {:?}\n\
             [management]\nchain = \"admins\"\nreaders = [{readers}]\nadmins = [\"root\"]\n",
            passwd.display().to_string()
        )
    };
    let s = start(dir, &top(""), "");
    let (root, eve) = (as_user("root"), as_user("eve"));
    assert_eq!(get(&s, &["-u", &eve], "/api/v1/stats").status, 403);

    std::fs::write(dir.join("unigate.toml"), config_text(&top("\"eve\""), "")).unwrap();
    assert_eq!(
        get(&s, &["-u", &eve], "/api/v1/stats").status,
        403,
        "not before the reload"
    );
    let r = post_json(&s, &["-u", &root], "/api/v1/auth/reload", "");
    assert_eq!((r.status, &r.json()["status"]), (200, &"reloaded".into()), "{r:?}");
    assert_eq!(get(&s, &["-u", &eve], "/api/v1/stats").status, 200, "eve reads now");
    assert_eq!(
        get(&s, &["-u", &root], "/api/v1/auth").json()["management"]["readers"],
        serde_json::json!(["eve"])
    );

    // A file that does not load changes nothing.
    std::fs::write(dir.join("unigate.toml"), "[management]\nchain = \"nope\"\n").unwrap();
    let r = post_json(&s, &["-u", &root], "/api/v1/auth/reload", "");
    assert_eq!((r.status, &r.json()["code"]), (500, &"RELOAD_FAILED".into()), "{r:?}");
    assert!(r.json()["message"].as_str().unwrap().contains("nope"), "{r:?}");
    assert_eq!(
        get(&s, &["-u", &eve], "/api/v1/stats").status,
        200,
        "still the last good file"
    );
    s.stop();

    // Without a configuration file there is nothing to reload.
    let s = server("", "");
    if s.broker().listeners().is_empty() {
        let running = s.server.as_ref().unwrap();
        let config = Config::parse(&config_text("", ""), "test", Vec::new()).unwrap();
        mgmt::install(
            s.broker(),
            &config,
            &Chains::build(&config.auth).unwrap(),
            &running.listeners,
            None,
        );
    }
    let r = post_json(&s, &[], "/api/v1/auth/reload", "");
    assert_eq!((r.status, &r.json()["code"]), (409, &"CONFLICT".into()), "{r:?}");
    s.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_document_lists_every_route() {
    let tmp = scratch();
    let dir = tmp.path();
    let s = start(dir, "", "");
    let doc = get_json(&s, "/api/v1/openapi.json");
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."), "{}", doc["openapi"]);
    let expected = [
        ("/health", "get"),
        ("/ready", "get"),
        ("/metrics", "get"),
        ("/api/v1/publish", "post"),
        ("/api/v1/publish/bulk", "post"),
        ("/topics/{topic}", "post"),
        ("/topics/{topic}", "put"),
        ("/topics/{topic}", "get"),
        ("/api/v1/clients", "get"),
        ("/api/v1/clients/{clientid}", "get"),
        ("/api/v1/clients/{clientid}", "delete"),
        ("/api/v1/clients/{clientid}/subscriptions", "get"),
        ("/api/v1/clients/{clientid}/subscribe", "post"),
        ("/api/v1/clients/{clientid}/unsubscribe", "post"),
        ("/api/v1/subscriptions", "get"),
        ("/api/v1/retained", "get"),
        ("/api/v1/retained/{topic}", "get"),
        ("/api/v1/retained/{topic}", "delete"),
        ("/api/v1/listeners", "get"),
        ("/api/v1/stats", "get"),
        ("/api/v1/auth", "get"),
        ("/api/v1/auth/reload", "post"),
        ("/api/v1/lwm2m/clients", "get"),
        ("/api/v1/lwm2m/clients/{ep}", "get"),
        ("/api/v1/lwm2m/clients/{ep}/commands", "post"),
        ("/api/v1/lwm2m/clients/{ep}/{op}", "get"),
        ("/api/v1/lwm2m/clients/{ep}/{op}", "post"),
        ("/api/v1/lwm2m/clients/{ep}/notifications", "get"),
        ("/api/v1/openapi.json", "get"),
    ];
    for (path, method) in expected {
        let op = &doc["paths"][path][method];
        assert!(op.is_object(), "{method} {path} missing from the document");
        assert!(op["responses"].is_object(), "{method} {path} has no responses");
    }
    let paths = doc["paths"].as_object().unwrap();
    let documented: usize = paths.values().map(|p| p.as_object().unwrap().len()).sum();
    assert_eq!(
        documented,
        expected.len(),
        "nothing undocumented or unexpected: {:?}",
        paths.keys()
    );
    // Parameters and schemas made it in.
    let list = &doc["paths"]["/api/v1/clients"]["get"]["parameters"];
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    for p in ["page", "limit", "protocol", "username", "listener", "like", "online"] {
        assert!(names.contains(&p), "{p} not in {names:?}");
    }
    assert!(doc["components"]["schemas"]["ClientEntry"].is_object());
    // Every path the server serves is in the document, and answers (not the 404 fallback).
    for (path, method) in expected {
        if method != "get" || path.contains('{') {
            continue;
        }
        let r = get(&s, &[], path);
        assert_ne!(r.status, 404, "{path}");
    }
    s.stop();
}
