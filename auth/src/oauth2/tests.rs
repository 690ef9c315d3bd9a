//! Unit tests: configuration, decisions on canned introspection responses served by a loopback
//! HTTP server (tokio), the cache, single-flight and timeouts. Decisions against a real
//! authorisation server are in the top-level `tests/mqtt_wire/oauth2.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use unigate_pubsub::{Topic, TopicFilter};

use super::*;
use crate::acl::{Request, Subject};
use crate::Protocol;

/// What the canned server answers.
#[derive(Clone)]
enum Answer {
    /// 200 with this JSON body.
    Json(Value),
    /// This status and body, content type JSON.
    Status(u16, &'static str),
    /// 200, JSON content type, a body that is not JSON.
    Garbage,
    /// 200 with a body larger than MAX_RESPONSE_LEN.
    Huge,
    /// Reads the request and never answers.
    Hang,
}

/// A loopback HTTP server answering every request with `answer` after `delay`; counts requests
/// and keeps the last one's head and body.
struct Canned {
    addr: SocketAddr,
    requests: Arc<AtomicUsize>,
    last: Arc<Mutex<String>>,
}

impl Canned {
    async fn start(answer: Answer, delay: Duration) -> Canned {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(AtomicUsize::new(0));
        let last = Arc::new(Mutex::new(String::new()));
        let (count, keep) = (requests.clone(), last.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    return;
                };
                let (count, keep, answer) = (count.clone(), keep.clone(), answer.clone());
                tokio::spawn(async move {
                    let request = read_request(&mut stream).await;
                    count.fetch_add(1, Ordering::SeqCst);
                    *keep.lock() = request;
                    tokio::time::sleep(delay).await;
                    let (status, body) = match answer {
                        Answer::Json(v) => (200, v.to_string()),
                        Answer::Status(s, b) => (s, b.to_string()),
                        Answer::Garbage => (200, "<html>not json".to_string()),
                        Answer::Huge => (
                            200,
                            format!("{{\"active\":true,\"x\":\"{}\"}}", "a".repeat(MAX_RESPONSE_LEN)),
                        ),
                        Answer::Hang => {
                            tokio::time::sleep(Duration::from_secs(3600)).await;
                            return;
                        }
                    };
                    let response = format!(
                        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = stream.write_all(response.as_bytes()).await;
                    let _ = stream.shutdown().await;
                });
            }
        });
        Canned { addr, requests, last }
    }

    fn url(&self) -> String {
        format!("http://{}/introspect", self.addr)
    }

    fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

/// Reads one request: the head, then `content-length` bytes of body.
async fn read_request(stream: &mut tokio::net::TcpStream) -> String {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&buf).to_string();
        if let Some(end) = text.find("\r\n\r\n") {
            let length = text[..end]
                .lines()
                .find_map(|l| {
                    let (name, value) = l.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse::<usize>().ok())?
                })
                .unwrap_or(0);
            if buf.len() >= end + 4 + length {
                return text;
            }
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return String::from_utf8_lossy(&buf).to_string(),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

fn config(url: &str, extra: &str) -> OAuth2Config {
    toml::from_str(&format!(
        "introspection_url = {url:?}\nclient_id = \"unigate\"\nclient_secret = \"s3cret\"\n{extra}"
    ))
    .unwrap()
}

fn authenticator(url: &str, extra: &str) -> OAuth2Authenticator {
    OAuth2Authenticator::new("idp", &config(url, extra)).unwrap()
}

fn creds(client_id: &str, token: &str) -> Credentials {
    Credentials {
        client_id: Some(client_id.to_string()),
        username: Some("presented".to_string()),
        password: Some(Secret::new(token)),
        ..Credentials::new(Protocol::Mqtt, "l")
    }
}

fn now_secs() -> i64 {
    unix_now() as i64
}

fn active(extra: Value) -> Value {
    let mut v = json!({"active": true, "exp": now_secs() + 600, "client_id": "device", "scope": "telemetry:write"});
    v.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    v
}

fn allowed(d: Decision) -> Identity {
    match d {
        Decision::Allow(i) => i,
        other => panic!("expected Allow, got {other:?}"),
    }
}

#[test]
fn config_defaults() {
    let c = config("https://idp.example/introspect", "");
    assert_eq!(c.auth_method, AuthMethod::Basic);
    assert_eq!(c.from, TokenSource::Password);
    assert_eq!(c.timeout, Duration::from_secs(5));
    assert_eq!(c.cache_size, 10_000);
    assert_eq!(c.max_cache_ttl, Duration::from_secs(300));
    assert_eq!(c.negative_cache_ttl, Duration::from_secs(10));
    assert_eq!(c.on_unavailable, OnUnavailable::Deny);
    assert!(c.username_claim.is_none() && c.claims.is_empty() && c.required_scopes.is_empty());
    assert!(c.scope_acl.is_empty() && c.ca_file.is_none());
    let shown = format!("{c:?}");
    assert!(!shown.contains("s3cret"), "{shown}");
    let a = OAuth2Authenticator::new("idp", &c).unwrap();
    let shown = format!("{a:?}");
    assert!(!shown.contains("s3cret"), "{shown}");
    let with_query = authenticator("https://u:p@idp.example/introspect?key=abc", "");
    let shown = format!("{with_query:?}");
    assert!(
        shown.contains("https://idp.example/introspect") && !shown.contains("abc"),
        "{shown}"
    );
    // Unknown keys and values are refused.
    let base = "introspection_url = \"https://i\"\nclient_id = \"u\"\nclient_secret = \"s\"\n";
    for bad in [
        "client_secrett = \"x\"",
        "auth_method = \"jwt\"",
        "on_unavailable = \"allow\"",
        "from = \"header\"",
        "timeout = \"soon\"",
        "scope_acl = { a = [{ permission = \"allow\", action = \"publish\", topics = [\"t\"], qos = 1 }] }",
    ] {
        assert!(
            toml::from_str::<OAuth2Config>(&format!("{base}{bad}")).is_err(),
            "{bad}"
        );
    }
}

#[test]
fn config_errors() {
    let err = |text: &str| {
        let c: OAuth2Config = toml::from_str(text).unwrap();
        OAuth2Authenticator::new("idp", &c).unwrap_err()
    };
    let head = "introspection_url = \"https://idp.example/i\"\nclient_id = \"unigate\"\n";
    assert!(matches!(err(head), OAuth2Error::SecretSource { .. }));
    let dir = std::env::temp_dir().join(format!("unigate-oauth2-unit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let secret_file = dir.join("secret");
    std::fs::write(&secret_file, "from-file\n").unwrap();
    let both = format!("{head}client_secret = \"a\"\nclient_secret_file = {:?}\n", secret_file);
    assert!(matches!(err(&both), OAuth2Error::SecretSource { found } if found.contains("client_secret_file")));
    let from_file = format!("{head}client_secret_file = {:?}\n", secret_file);
    let c: OAuth2Config = toml::from_str(&from_file).unwrap();
    assert_eq!(client_secret(&c).unwrap(), "from-file");
    std::fs::write(&secret_file, "\n").unwrap();
    assert!(matches!(err(&from_file), OAuth2Error::EmptySecret));
    let missing = format!("{head}client_secret_file = \"/nonexistent/secret\"\n");
    assert!(matches!(err(&missing), OAuth2Error::Read { .. }));

    let ok = "client_id = \"u\"\nclient_secret = \"s\"\n";
    assert!(matches!(
        err(&format!("introspection_url = \"ftp://idp/i\"\n{ok}")),
        OAuth2Error::IntrospectionUrl(_)
    ));
    assert!(matches!(
        err(&format!("introspection_url = \"not a url\"\n{ok}")),
        OAuth2Error::IntrospectionUrl(_)
    ));
    let good = format!("{head}client_secret = \"s\"\n");
    assert!(matches!(
        err("introspection_url = \"https://i\"\nclient_id = \"\"\nclient_secret = \"s\""),
        OAuth2Error::EmptyClientId
    ));
    assert!(matches!(
        err(&format!("{good}timeout = \"0s\"")),
        OAuth2Error::ZeroTimeout
    ));
    for claim in ["exp", "active", "scope"] {
        assert!(
            matches!(
                err(&format!("{good}claims = {{ {claim} = \"x\" }}")),
                OAuth2Error::Claim { .. }
            ),
            "{claim}"
        );
    }
    assert!(toml::from_str::<OAuth2Config>(&format!("{good}claims = {{ sub = \"${{nope}}\" }}")).is_err());
    assert!(matches!(
        err(&format!("{good}username_claim = \"\"")),
        OAuth2Error::EmptyUsernameClaim
    ));
    assert!(matches!(
        err(&format!("{good}required_scopes = [\"a b\"]")),
        OAuth2Error::RequiredScope(_)
    ));
    assert!(matches!(
        err(&format!(
            "{good}scope_acl = {{ a = [{{ permission = \"allow\", action = \"publish\", topics = [\"a/#/b\"] }}] }}"
        )),
        OAuth2Error::ScopeAcl { .. }
    ));
    assert!(matches!(
        err(&format!(
            "{good}scope_acl = {{ \"a b\" = [{{ permission = \"allow\", action = \"publish\", topics = [\"t\"] }}] }}"
        )),
        OAuth2Error::ScopeAcl { .. }
    ));
    let not_pem = dir.join("ca.pem");
    std::fs::write(&not_pem, "hello").unwrap();
    assert!(matches!(
        err(&format!("{good}ca_file = {:?}", not_pem)),
        OAuth2Error::CaFile { .. }
    ));
    assert!(matches!(
        err(&format!("{good}ca_file = \"/nonexistent/ca.pem\"")),
        OAuth2Error::Read { .. }
    ));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn bearer_token_shapes() {
    assert!(looks_like_bearer(b"5peTFNUpq9Ji2RP6dEtYf_Zb9KFgHMd1GrG_2XCvvy-"));
    assert!(looks_like_bearer(b"eyJhbGciOiJIUzI1NiJ9.e30.sig"));
    assert!(looks_like_bearer(b"a+b/c~d=="));
    assert!(!looks_like_bearer(b""));
    assert!(!looks_like_bearer(b"=="));
    assert!(!looks_like_bearer(b"a=b"));
    assert!(!looks_like_bearer(b"hunter 2"));
    assert!(!looks_like_bearer(b"p\xc3\xa4ss"));
    assert!(!looks_like_bearer(b"a\"b"));
}

#[test]
fn cache_lifetime_follows_exp() {
    let max = Duration::from_secs(300);
    assert_eq!(active_ttl(None, 1000.0, max), max);
    assert_eq!(active_ttl(Some(1060.0), 1000.0, max), Duration::from_secs(60));
    assert_eq!(active_ttl(Some(9000.0), 1000.0, max), max);
    assert_eq!(active_ttl(Some(1000.0), 1000.0, max), Duration::ZERO);
    assert_eq!(active_ttl(Some(10.0), 1000.0, max), Duration::ZERO);
}

#[tokio::test]
async fn an_active_token_is_allowed_and_cached() {
    let idp = Canned::start(Answer::Json(active(json!({"sub": "alice"}))), Duration::ZERO).await;
    let a = authenticator(&idp.url(), "");
    let id = allowed(a.authenticate(&creds("c1", "tok-1")).await);
    assert_eq!(id.username.as_deref(), Some("alice"));
    assert_eq!(&*id.authenticator, "idp");
    assert!(id.acl.is_none());
    // The request: POST, client_secret_basic, the token and its type hint in the form.
    let request = idp.last.lock().clone();
    assert!(request.starts_with("POST /introspect "), "{request}");
    // base64("unigate:s3cret")
    assert!(request.contains("dW5pZ2F0ZTpzM2NyZXQ="), "{request}");
    assert!(request.contains("token=tok-1") && request.contains("token_type_hint=access_token"));
    assert!(!request.contains("client_secret="), "{request}");
    // Cached: no second request, for this or another client (claims are re-checked per use).
    allowed(a.authenticate(&creds("c2", "tok-1")).await);
    assert_eq!(idp.requests(), 1);
    // Another token is another entry.
    allowed(a.authenticate(&creds("c1", "tok-2")).await);
    assert_eq!(idp.requests(), 2);
    assert_eq!(a.active.len(), 2);
}

#[tokio::test]
async fn client_secret_post_puts_the_credentials_in_the_form() {
    let idp = Canned::start(Answer::Json(active(json!({}))), Duration::ZERO).await;
    let a = authenticator(&idp.url(), "auth_method = \"post\"\ncache_size = 0");
    let id = allowed(a.authenticate(&creds("c1", "tok")).await);
    // No `sub`: the client id names the user.
    assert_eq!(id.username.as_deref(), Some("device"));
    let request = idp.last.lock().clone();
    assert!(request.contains("client_id=unigate") && request.contains("client_secret=s3cret"));
    assert!(!request.to_ascii_lowercase().contains("authorization:"), "{request}");
    // cache_size = 0: every use asks.
    allowed(a.authenticate(&creds("c1", "tok")).await);
    assert_eq!(idp.requests(), 2);
}

#[tokio::test]
async fn inactive_and_expired_tokens_are_refused() {
    let idp = Canned::start(Answer::Json(json!({"active": false})), Duration::ZERO).await;
    let a = authenticator(&idp.url(), "");
    let c = creds("c1", "revoked");
    assert_eq!(a.authenticate(&c).await, Decision::Deny(DenyReason::BadCredentials));
    // Kept briefly: the second refusal does not ask.
    assert_eq!(a.authenticate(&c).await, Decision::Deny(DenyReason::BadCredentials));
    assert_eq!(idp.requests(), 1);
    let no_negative = authenticator(&idp.url(), "negative_cache_ttl = \"0s\"");
    for _ in 0..2 {
        assert_eq!(
            no_negative.authenticate(&c).await,
            Decision::Deny(DenyReason::BadCredentials)
        );
    }
    assert_eq!(idp.requests(), 3);

    let stale = Canned::start(Answer::Json(active(json!({"exp": now_secs() - 5}))), Duration::ZERO).await;
    let a = authenticator(&stale.url(), "");
    assert_eq!(a.authenticate(&c).await, Decision::Deny(DenyReason::Expired));
    // Not cached (its lifetime is over): asked again.
    assert_eq!(a.authenticate(&c).await, Decision::Deny(DenyReason::Expired));
    assert_eq!(stale.requests(), 2);
}

#[tokio::test]
async fn what_is_not_a_bearer_token_is_ignored() {
    let idp = Canned::start(Answer::Json(active(json!({}))), Duration::ZERO).await;
    let a = authenticator(&idp.url(), "");
    assert_eq!(a.authenticate(&creds("c", "")).await, Decision::Ignore);
    assert_eq!(a.authenticate(&creds("c", "two words")).await, Decision::Ignore);
    let none = Credentials::new(Protocol::Mqtt, "l");
    assert_eq!(a.authenticate(&none).await, Decision::Ignore);
    let huge = "a".repeat(MAX_TOKEN_LEN + 1);
    assert_eq!(
        a.authenticate(&creds("c", &huge)).await,
        Decision::Deny(DenyReason::BadCredentials)
    );
    assert_eq!(idp.requests(), 0);
    // from = "username": the user name is the token, the password is not looked at.
    let by_name = authenticator(&idp.url(), "from = \"username\"");
    let c = Credentials {
        username: Some("tok".into()),
        ..Credentials::new(Protocol::Mqtt, "l")
    };
    assert_eq!(
        allowed(by_name.authenticate(&c).await).username.as_deref(),
        Some("device")
    );
}

#[tokio::test]
async fn claims_checks_and_required_scopes() {
    let body = active(json!({"iss": "https://idp", "aud": ["unigate", "other"], "sub": "dev-1", "scope": "a b"}));
    let idp = Canned::start(Answer::Json(body), Duration::ZERO).await;
    let a = authenticator(
        &idp.url(),
        "claims = { iss = \"https://idp\", aud = \"unigate\", sub = \"${clientid}\" }\nrequired_scopes = [\"a\", \"b\"]",
    );
    allowed(a.authenticate(&creds("dev-1", "t")).await);
    // Bound to its client id.
    assert_eq!(
        a.authenticate(&creds("dev-2", "t")).await,
        Decision::Deny(DenyReason::NotAuthorized)
    );
    let wrong_iss = authenticator(&idp.url(), "claims = { iss = \"https://evil\" }");
    assert_eq!(
        wrong_iss.authenticate(&creds("dev-1", "t")).await,
        Decision::Deny(DenyReason::BadCredentials)
    );
    let missing = authenticator(&idp.url(), "claims = { tenant = \"t1\" }");
    assert_eq!(
        missing.authenticate(&creds("dev-1", "t")).await,
        Decision::Deny(DenyReason::BadCredentials)
    );
    let more_scope = authenticator(&idp.url(), "required_scopes = [\"a\", \"c\"]");
    assert_eq!(
        more_scope.authenticate(&creds("dev-1", "t")).await,
        Decision::Deny(DenyReason::NotAuthorized)
    );
    let by_username = authenticator(&idp.url(), "username_claim = \"username\"");
    assert_eq!(
        by_username.authenticate(&creds("dev-1", "t")).await,
        Decision::Deny(DenyReason::BadCredentials)
    );
    let by_client = authenticator(&idp.url(), "username_claim = \"client_id\"");
    assert_eq!(
        allowed(by_client.authenticate(&creds("dev-1", "t")).await)
            .username
            .as_deref(),
        Some("device")
    );
}

#[tokio::test]
async fn scopes_map_to_acl_rules() {
    let body = active(json!({"scope": "telemetry:write commands:read unmapped"}));
    let idp = Canned::start(Answer::Json(body), Duration::ZERO).await;
    let a = authenticator(
        &idp.url(),
        r##"
        [scope_acl]
        "telemetry:write" = [
            { permission = "allow", action = "publish", topics = ["devices/${clientid}/#"] },
        ]
        "commands:read" = [
            { permission = "allow", action = "subscribe", topics = ["commands/${clientid}"] },
            { permission = "deny", action = "publish", topics = ["devices/+/secret"] },
        ]
        "admin" = [{ permission = "allow", action = "all", topics = ["#"] }]
        "##,
    );
    let id = allowed(a.authenticate(&creds("c1", "t")).await);
    let acl = id.acl.clone().expect("scope rules");
    let subject = Subject::from_identity(&id, "c1", "l");
    let publish = |t: &str| acl.check_rules(&subject, Request::Publish(&Topic::new(t).unwrap()));
    let subscribe = |f: &str| acl.check_rules(&subject, Request::Subscribe(&TopicFilter::new(f).unwrap()));
    assert!(publish("devices/c1/temp").unwrap().is_allowed());
    // A deny of one scope beats an allow of another.
    assert!(!publish("devices/c1/secret").unwrap().is_allowed());
    // Nothing said: the configured ACL decides.
    assert!(publish("devices/c2/temp").is_none());
    assert!(subscribe("commands/c1").unwrap().is_allowed());
    assert!(subscribe("#").is_none(), "the admin scope was not granted");

    let none = Canned::start(Answer::Json(active(json!({"scope": "other"}))), Duration::ZERO).await;
    let a = authenticator(
        &none.url(),
        "scope_acl = { x = [{ permission = \"allow\", action = \"all\", topics = [\"#\"] }] }",
    );
    assert!(allowed(a.authenticate(&creds("c1", "t")).await).acl.is_none());
}

#[tokio::test]
async fn an_unusable_server_is_unavailable() {
    for (answer, what) in [
        (Answer::Garbage, "garbage"),
        (Answer::Status(500, "{\"error\":\"server_error\"}"), "500"),
        (Answer::Status(401, "{\"error\":\"invalid_client\"}"), "401"),
        (Answer::Status(503, ""), "503 empty"),
        (Answer::Json(json!({"active": "yes"})), "active not a boolean"),
        (Answer::Json(json!({"scope": "a"})), "no active"),
        (Answer::Huge, "huge"),
    ] {
        let idp = Canned::start(answer, Duration::ZERO).await;
        let deny = authenticator(&idp.url(), "");
        assert_eq!(
            deny.authenticate(&creds("c", "t")).await,
            Decision::Deny(DenyReason::Unavailable),
            "{what}"
        );
        let ignore = authenticator(&idp.url(), "on_unavailable = \"ignore\"");
        assert_eq!(ignore.authenticate(&creds("c", "t")).await, Decision::Ignore, "{what}");
        // Unavailability is not cached.
        assert_eq!(ignore.authenticate(&creds("c", "t")).await, Decision::Ignore, "{what}");
        assert_eq!(idp.requests(), 3, "{what}");
    }
    // Nobody listening.
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/i", closed.local_addr().unwrap());
    drop(closed);
    let a = authenticator(&url, "");
    assert_eq!(
        a.authenticate(&creds("c", "t")).await,
        Decision::Deny(DenyReason::Unavailable)
    );
}

#[tokio::test]
async fn a_hanging_server_times_out() {
    let idp = Canned::start(Answer::Hang, Duration::ZERO).await;
    let a = authenticator(&idp.url(), "timeout = \"300ms\"");
    let started = Instant::now();
    assert_eq!(
        a.authenticate(&creds("c", "t")).await,
        Decision::Deny(DenyReason::Unavailable)
    );
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(290) && took < Duration::from_secs(3),
        "{took:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_uses_of_one_token_share_one_introspection() {
    let idp = Canned::start(Answer::Json(active(json!({}))), Duration::from_millis(200)).await;
    let a = Arc::new(authenticator(&idp.url(), ""));
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let a = a.clone();
            tokio::spawn(async move { a.authenticate(&creds(&format!("c{i}"), "shared")).await })
        })
        .collect();
    for t in tasks {
        allowed(t.await.unwrap());
    }
    assert_eq!(idp.requests(), 1);
    assert!(a.flights.lock().is_empty(), "flights are cleaned up");

    // A flight whose caller gave up is finished by the next one, and cleaned up.
    let slow = Canned::start(Answer::Json(active(json!({}))), Duration::from_millis(300)).await;
    let a = authenticator(&slow.url(), "");
    let c = creds("c", "abandoned");
    assert!(tokio::time::timeout(Duration::from_millis(50), a.authenticate(&c))
        .await
        .is_err());
    assert!(a.flights.lock().is_empty(), "an abandoned flight is removed");
    allowed(a.authenticate(&c).await);
}
