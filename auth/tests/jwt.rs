//! The jwt authenticator through the public API: tokens made with jsonwebtoken's encoder, keys
//! from `testdata/jwt/` (generated once with openssl; see its README), and a real HTTP server
//! on loopback serving the JWKS.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use parking_lot::Mutex;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use unigate_auth::acl::{Request, Subject};
use unigate_auth::jwt::{JwtAlgorithm, JwtAuthenticator, JwtConfig, JwtError, MAX_TOKEN_LEN};
use unigate_auth::{
    Authenticator, BoxFuture, Chain, Credentials, Decision, DenyReason, Identity, NoMatch, Outcome, Protocol, Secret,
};
use unigate_pubsub::{Topic, TopicFilter};

// ---------------------------------------------------------------------------------------------
// helpers

const SECRET: &str = "a-test-secret-of-at-least-32-bytes!!";

fn testdata(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("testdata/jwt")
        .join(name)
}

fn read(name: &str) -> Vec<u8> {
    std::fs::read(testdata(name)).unwrap()
}

/// A config from TOML, `{dir}` standing for the test key directory.
fn config(text: &str) -> JwtConfig {
    let text = text.replace("{dir}", &testdata("").display().to_string());
    toml::from_str(&text).unwrap_or_else(|e| panic!("{text}: {e}"))
}

fn build(text: &str) -> JwtAuthenticator {
    JwtAuthenticator::new("jwt", &config(text)).unwrap()
}

fn build_err(text: &str) -> JwtError {
    JwtAuthenticator::new("jwt", &config(text)).unwrap_err()
}

fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64
}

/// The signing key for `alg` from a private key file (or the HMAC secret).
fn signing_key(alg: Algorithm, file: &str) -> EncodingKey {
    match alg {
        Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => EncodingKey::from_secret(file.as_bytes()),
        Algorithm::ES256 | Algorithm::ES384 => EncodingKey::from_ec_pem(&read(file)).unwrap(),
        Algorithm::EdDSA => EncodingKey::from_ed_pem(&read(file)).unwrap(),
        _ => EncodingKey::from_rsa_pem(&read(file)).unwrap(),
    }
}

/// A token signed with `alg` by `key` (a private key file, or the secret for HS*).
fn token_kid(alg: Algorithm, key: &str, kid: Option<&str>, claims: &Value) -> String {
    let header = Header {
        kid: kid.map(str::to_string),
        ..Header::new(alg)
    };
    jsonwebtoken::encode(&header, claims, &signing_key(alg, key)).unwrap()
}

fn token(alg: Algorithm, key: &str, claims: &Value) -> String {
    token_kid(alg, key, None, claims)
}

/// Claims valid for an hour.
fn valid() -> Value {
    json!({"sub": "c1", "iss": "idp", "exp": now() + 3600})
}

fn with(mut claims: Value, extra: Value) -> Value {
    for (k, v) in extra.as_object().unwrap() {
        if v.is_null() {
            claims.as_object_mut().unwrap().remove(k);
        } else {
            claims[k] = v.clone();
        }
    }
    claims
}

fn creds(client_id: Option<&str>, username: Option<&str>, password: Option<&str>) -> Credentials {
    Credentials {
        client_id: client_id.map(str::to_string),
        username: username.map(str::to_string),
        password: password.map(|p| Secret::new(p.as_bytes())),
        ..Credentials::new(Protocol::Mqtt, "mqtt")
    }
}

/// The decision on `token` in the password, client id `c1`, user name `alice`.
async fn decide(a: &JwtAuthenticator, token: &str) -> Decision {
    a.authenticate(&creds(Some("c1"), Some("alice"), Some(token))).await
}

fn allowed(d: Decision) -> Identity {
    match d {
        Decision::Allow(identity) => identity,
        other => panic!("expected Allow, got {other:?}"),
    }
}

const BAD: Decision = Decision::Deny(DenyReason::BadCredentials);
const UNAVAILABLE: Decision = Decision::Deny(DenyReason::Unavailable);

fn b64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

// ---------------------------------------------------------------------------------------------
// a JWKS server: a hand-written HTTP/1.1 responder on loopback that counts requests

#[derive(Debug, Clone)]
enum Reply {
    /// 200 with this JSON body.
    Json(String),
    /// 200 with this body after a delay.
    Slow(Duration, String),
    /// This status, empty body.
    Status(u16),
    /// 200 with a body that is not a key set.
    Garbage,
    /// Read the request, never answer.
    Hang,
}

struct JwksServer {
    addr: SocketAddr,
    hits: Arc<AtomicUsize>,
    reply: Arc<Mutex<Reply>>,
}

impl JwksServer {
    async fn start(reply: Reply) -> JwksServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let hits = Arc::new(AtomicUsize::new(0));
        let reply = Arc::new(Mutex::new(reply));
        let (h, r) = (hits.clone(), reply.clone());
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                tokio::spawn(serve(socket, h.clone(), r.clone()));
            }
        });
        JwksServer { addr, hits, reply }
    }

    fn url(&self) -> String {
        format!("http://{}/jwks", self.addr)
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    fn set(&self, reply: Reply) {
        *self.reply.lock() = reply;
    }
}

async fn serve(mut socket: TcpStream, hits: Arc<AtomicUsize>, reply: Arc<Mutex<Reply>>) {
    let mut request = Vec::new();
    let mut buf = [0u8; 1024];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
        match socket.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => request.extend_from_slice(&buf[..n]),
        }
    }
    assert!(
        request.starts_with(b"GET /jwks HTTP/1.1\r\n"),
        "{}",
        String::from_utf8_lossy(&request)
    );
    hits.fetch_add(1, Ordering::SeqCst);
    let reply = reply.lock().clone();
    let (status, body) = match reply {
        Reply::Json(body) => (200, body),
        Reply::Slow(delay, body) => {
            tokio::time::sleep(delay).await;
            (200, body)
        }
        Reply::Status(code) => (code, String::new()),
        Reply::Garbage => (200, "<html>\u{0}\u{1}not a key set".to_string()),
        Reply::Hang => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            return;
        }
    };
    let response = format!(
        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = socket.write_all(response.as_bytes()).await;
    let _ = socket.shutdown().await;
}

/// A public JWK from `testdata/jwt/NAME.jwk.json` with `kid`.
fn jwk(name: &str, kid: &str) -> Value {
    let mut key: Value = serde_json::from_slice(&read(&format!("{name}.jwk.json"))).unwrap();
    key["kid"] = json!(kid);
    key
}

fn jwks(keys: &[Value]) -> Reply {
    Reply::Json(json!({ "keys": keys }).to_string())
}

fn jwks_config(server: &JwksServer, extra: &str) -> JwtAuthenticator {
    build(&format!("jwks_url = \"{}\"\n{extra}", server.url()))
}

// ---------------------------------------------------------------------------------------------
// key types and algorithms

#[tokio::test]
async fn hmac_secret_accepts_hs256_384_512() {
    let inline = build(&format!("secret = \"{SECRET}\""));
    assert_eq!(
        inline.algorithms(),
        [JwtAlgorithm::HS256, JwtAlgorithm::HS384, JwtAlgorithm::HS512]
    );
    let dir = std::env::temp_dir().join(format!("unigate-jwt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("secret"), format!("{SECRET}\n")).unwrap();
    use base64::Engine as _;
    std::fs::write(
        dir.join("secret.b64"),
        base64::engine::general_purpose::STANDARD.encode(SECRET),
    )
    .unwrap();
    let from_file = build(&format!("secret_file = \"{}\"", dir.join("secret").display()));
    let from_b64_file = build(&format!(
        "secret_file = \"{}\"\nsecret_base64 = true",
        dir.join("secret.b64").display()
    ));
    let from_b64 = build(&format!(
        "secret = \"{}\"\nsecret_base64 = true",
        base64::engine::general_purpose::STANDARD.encode(SECRET)
    ));
    std::fs::remove_dir_all(&dir).unwrap();
    for a in [&inline, &from_file, &from_b64_file, &from_b64] {
        for alg in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
            let identity = allowed(decide(a, &token(alg, SECRET, &valid())).await);
            assert_eq!(&*identity.authenticator, "jwt");
            assert_eq!(identity.username.as_deref(), Some("alice"));
            assert_eq!(identity.client_id, None);
            assert!(identity.acl.is_none());
        }
        assert_eq!(
            decide(a, &token(Algorithm::HS256, "another secret", &valid())).await,
            BAD
        );
    }
    // `algorithms` narrows what is accepted.
    let only256 = build(&format!("secret = \"{SECRET}\"\nalgorithms = [\"HS256\"]"));
    allowed(decide(&only256, &token(Algorithm::HS256, SECRET, &valid())).await);
    assert_eq!(decide(&only256, &token(Algorithm::HS512, SECRET, &valid())).await, BAD);
}

#[tokio::test]
async fn rsa_public_key_accepts_rs_and_ps() {
    let a = build("public_key = \"{dir}/rsa.pub.pem\"");
    assert_eq!(a.algorithms().len(), 6);
    for alg in [
        Algorithm::RS256,
        Algorithm::RS384,
        Algorithm::RS512,
        Algorithm::PS256,
        Algorithm::PS384,
        Algorithm::PS512,
    ] {
        allowed(decide(&a, &token(alg, "rsa.pem", &valid())).await);
        // The wrong key.
        assert_eq!(decide(&a, &token(alg, "rsa2.pem", &valid())).await, BAD, "{alg:?}");
    }
    // An ES256 token never meets an RSA key.
    assert_eq!(decide(&a, &token(Algorithm::ES256, "ec256.pem", &valid())).await, BAD);
}

#[tokio::test]
async fn ec_keys_accept_es256_and_es384() {
    let p256 = build("public_key = \"{dir}/ec256.pub.pem\"");
    assert_eq!(p256.algorithms(), [JwtAlgorithm::ES256]);
    allowed(decide(&p256, &token(Algorithm::ES256, "ec256.pem", &valid())).await);
    let p384 = build("public_key = \"{dir}/ec384.pub.pem\"");
    assert_eq!(p384.algorithms(), [JwtAlgorithm::ES384]);
    allowed(decide(&p384, &token(Algorithm::ES384, "ec384.pem", &valid())).await);
    // Wrong curve / wrong key.
    assert_eq!(
        decide(&p256, &token(Algorithm::ES384, "ec384.pem", &valid())).await,
        BAD
    );
    assert_eq!(
        decide(&p384, &token(Algorithm::ES256, "ec256.pem", &valid())).await,
        BAD
    );
}

#[tokio::test]
async fn ed25519_accepts_eddsa() {
    let a = build("public_key = \"{dir}/ed25519.pub.pem\"");
    assert_eq!(a.algorithms(), [JwtAlgorithm::EdDSA]);
    allowed(decide(&a, &token(Algorithm::EdDSA, "ed25519.pem", &valid())).await);
    let mut t = token(Algorithm::EdDSA, "ed25519.pem", &valid()).into_bytes();
    // A flipped signature bit.
    let last = t.len() - 3;
    t[last] = if t[last] == b'A' { b'B' } else { b'A' };
    assert_eq!(decide(&a, std::str::from_utf8(&t).unwrap()).await, BAD);
}

#[tokio::test]
async fn alg_none_is_refused() {
    let a = build(&format!("secret = \"{SECRET}\""));
    let payload = b64(valid().to_string().as_bytes());
    for header in [r#"{"alg":"none","typ":"JWT"}"#, r#"{"alg":"None"}"#, r#"{"typ":"JWT"}"#] {
        let header = b64(header.as_bytes());
        assert_eq!(decide(&a, &format!("{header}.{payload}.")).await, BAD, "{header}");
        // With a signature made for HS256 glued on.
        let real = token(Algorithm::HS256, SECRET, &valid());
        let sig = real.rsplit('.').next().unwrap();
        assert_eq!(decide(&a, &format!("{header}.{payload}.{sig}")).await, BAD);
    }
    // Nor can it be configured.
    let err = toml::from_str::<JwtConfig>("secret = \"s\"\nalgorithms = [\"none\"]").unwrap_err();
    assert!(err.to_string().contains("never"), "{err}");
    let err = toml::from_str::<JwtConfig>("secret = \"s\"\nalgorithms = [\"ES512\"]").unwrap_err();
    assert!(err.to_string().contains("not supported"), "{err}");
}

#[tokio::test]
async fn algorithm_confusion_is_refused() {
    // The classic attack: an HS256 token whose "secret" is the server's RSA public key.
    let public = String::from_utf8(read("rsa.pub.pem")).unwrap();
    let forged = token(Algorithm::HS256, &public, &valid());
    let a = build("public_key = \"{dir}/rsa.pub.pem\"");
    assert_eq!(decide(&a, &forged).await, BAD);
    // Even asking for it is refused.
    let err = build_err("public_key = \"{dir}/rsa.pub.pem\"\nalgorithms = [\"RS256\", \"HS256\"]");
    assert!(
        matches!(
            err,
            JwtError::Algorithm {
                alg: JwtAlgorithm::HS256,
                ..
            }
        ),
        "{err}"
    );
    let err = build_err("jwks_url = \"http://127.0.0.1:1/jwks\"\nalgorithms = [\"HS256\"]");
    assert!(matches!(err, JwtError::Algorithm { .. }), "{err}");
    // Nor does an EC token pass as RSA when RSA is all that is accepted.
    let a = build("public_key = \"{dir}/ec256.pub.pem\"");
    let header = b64(br#"{"alg":"RS256"}"#);
    let es = token(Algorithm::ES256, "ec256.pem", &valid());
    let rest = es.split_once('.').unwrap().1;
    assert_eq!(decide(&a, &format!("{header}.{rest}")).await, BAD);
}

// ---------------------------------------------------------------------------------------------
// claims

#[tokio::test]
async fn exp_nbf_iat_with_leeway() {
    let a = build(&format!("secret = \"{SECRET}\""));
    let strict = build(&format!("secret = \"{SECRET}\"\nleeway = \"0s\""));
    let t = |extra: Value| token(Algorithm::HS256, SECRET, &with(valid(), extra));
    let expired = DenyReason::Expired;
    // exp: 10 s ago is within the 30 s leeway, not within none; 100 s ago is expired.
    allowed(decide(&a, &t(json!({"exp": now() - 10}))).await);
    assert_eq!(
        decide(&strict, &t(json!({"exp": now() - 10}))).await,
        Decision::Deny(expired)
    );
    assert_eq!(
        decide(&a, &t(json!({"exp": now() - 100}))).await,
        Decision::Deny(expired)
    );
    // nbf: 10 s ahead is within the leeway; 100 s ahead is not valid yet.
    allowed(decide(&a, &t(json!({"nbf": now() + 10}))).await);
    assert_eq!(decide(&strict, &t(json!({"nbf": now() + 10}))).await, BAD);
    assert_eq!(decide(&a, &t(json!({"nbf": now() + 100}))).await, BAD);
    allowed(decide(&a, &t(json!({"nbf": now() - 100}))).await);
    // iat in the future.
    allowed(decide(&a, &t(json!({"iat": now()}))).await);
    assert_eq!(decide(&a, &t(json!({"iat": now() + 100}))).await, BAD);
    // exp is required by default, and must be a number.
    assert_eq!(decide(&a, &t(json!({"exp": null}))).await, BAD);
    assert_eq!(decide(&a, &t(json!({"exp": "tomorrow"}))).await, BAD);
    let lax = build(&format!("secret = \"{SECRET}\"\nrequire_exp = false"));
    allowed(decide(&lax, &t(json!({"exp": null}))).await);
    assert_eq!(
        decide(&lax, &t(json!({"exp": now() - 100}))).await,
        Decision::Deny(expired)
    );
}

#[tokio::test]
async fn iss_and_aud_must_match() {
    let a = build(&format!(
        "secret = \"{SECRET}\"\nclaims = {{ iss = \"idp\", aud = \"unigate\" }}"
    ));
    let t = |extra: Value| token(Algorithm::HS256, SECRET, &with(valid(), extra));
    allowed(decide(&a, &t(json!({"aud": "unigate"}))).await);
    allowed(decide(&a, &t(json!({"aud": ["other", "unigate"]}))).await);
    assert_eq!(decide(&a, &t(json!({"aud": "other"}))).await, BAD);
    assert_eq!(decide(&a, &t(json!({"aud": ["other"]}))).await, BAD);
    assert_eq!(decide(&a, &t(json!({"aud": null}))).await, BAD);
    assert_eq!(decide(&a, &t(json!({"aud": "unigate", "iss": "evil"}))).await, BAD);
    assert_eq!(decide(&a, &t(json!({"aud": "unigate", "iss": null}))).await, BAD);
    // A list in the configuration: any of them.
    let any = build(&format!(
        "secret = \"{SECRET}\"\nclaims = {{ iss = [\"idp\", \"idp2\"] }}"
    ));
    allowed(decide(&any, &t(json!({"iss": "idp2"}))).await);
    assert_eq!(decide(&any, &t(json!({"iss": "idp3"}))).await, BAD);
}

#[tokio::test]
async fn claims_bound_to_client_id_and_username() {
    let a = build(&format!(
        "secret = \"{SECRET}\"\nclaims = {{ sub = \"${{clientid}}\" }}"
    ));
    let t = token(Algorithm::HS256, SECRET, &valid()); // sub = c1
    allowed(a.authenticate(&creds(Some("c1"), None, Some(&t))).await);
    let not_authorized = Decision::Deny(DenyReason::NotAuthorized);
    assert_eq!(a.authenticate(&creds(Some("c2"), None, Some(&t))).await, not_authorized);
    assert_eq!(a.authenticate(&creds(None, None, Some(&t))).await, not_authorized);
    // A token without the claim is not a valid one.
    let no_sub = token(Algorithm::HS256, SECRET, &with(valid(), json!({"sub": null})));
    assert_eq!(a.authenticate(&creds(Some("c1"), None, Some(&no_sub))).await, BAD);

    let by_name = build(&format!(
        "secret = \"{SECRET}\"\nclaims = {{ name = \"user:${{username}}\" }}"
    ));
    let t = token(Algorithm::HS256, SECRET, &with(valid(), json!({"name": "user:alice"})));
    allowed(by_name.authenticate(&creds(Some("x"), Some("alice"), Some(&t))).await);
    assert_eq!(
        by_name.authenticate(&creds(Some("x"), Some("bob"), Some(&t))).await,
        not_authorized
    );
}

#[tokio::test]
async fn username_from_a_claim() {
    let a = build(&format!("secret = \"{SECRET}\"\nusername_claim = \"sub\""));
    let identity = allowed(decide(&a, &token(Algorithm::HS256, SECRET, &valid())).await);
    assert_eq!(identity.username.as_deref(), Some("c1"));
    let no_sub = token(Algorithm::HS256, SECRET, &with(valid(), json!({"sub": null})));
    assert_eq!(decide(&a, &no_sub).await, BAD);
    let number = token(Algorithm::HS256, SECRET, &with(valid(), json!({"sub": 7})));
    assert_eq!(decide(&a, &number).await, BAD);
}

#[tokio::test]
async fn token_taken_from_the_username() {
    let a = build(&format!("secret = \"{SECRET}\"\nfrom = \"username\""));
    let t = token(Algorithm::HS256, SECRET, &valid());
    let identity = allowed(a.authenticate(&creds(Some("c1"), Some(&t), None)).await);
    // The user name was the token: it is not kept as the identity's name.
    assert_eq!(identity.username, None);
    allowed(a.authenticate(&creds(Some("c1"), Some(&t), Some("whatever"))).await);
    // A token in the password is not looked at.
    assert_eq!(
        a.authenticate(&creds(Some("c1"), Some("alice"), Some(&t))).await,
        Decision::Ignore
    );
    assert_eq!(
        a.authenticate(&creds(Some("c1"), None, Some(&t))).await,
        Decision::Ignore
    );
    let bad = token(Algorithm::HS256, "wrong", &valid());
    assert_eq!(a.authenticate(&creds(Some("c1"), Some(&bad), None)).await, BAD);
    let named = build(&format!(
        "secret = \"{SECRET}\"\nfrom = \"username\"\nusername_claim = \"sub\""
    ));
    let identity = allowed(named.authenticate(&creds(Some("c1"), Some(&t), None)).await);
    assert_eq!(identity.username.as_deref(), Some("c1"));
}

// ---------------------------------------------------------------------------------------------
// the acl claim

fn publish(identity: &Identity, topic: &str) -> Option<bool> {
    let acl = identity.acl.as_ref().expect("an acl");
    let subject = Subject::from_identity(identity, "c1", "mqtt");
    acl.check_rules(&subject, Request::Publish(&Topic::new(topic).unwrap()))
        .map(|v| v.is_allowed())
}

fn subscribe(identity: &Identity, filter: &str) -> Option<bool> {
    let acl = identity.acl.as_ref().expect("an acl");
    let subject = Subject::from_identity(identity, "c1", "mqtt");
    acl.check_rules(&subject, Request::Subscribe(&TopicFilter::new(filter).unwrap()))
        .map(|v| v.is_allowed())
}

#[tokio::test]
async fn acl_claim_object_form() {
    let a = build(&format!("secret = \"{SECRET}\""));
    let claims = with(
        valid(),
        json!({"acl": {"pub": ["devices/${clientid}/up"], "sub": ["devices/${clientid}/down/#"], "all": ["users/${username}"]}}),
    );
    let identity = allowed(decide(&a, &token(Algorithm::HS256, SECRET, &claims)).await);
    assert_eq!(publish(&identity, "devices/c1/up"), Some(true));
    assert_eq!(
        publish(&identity, "devices/c2/up"),
        None,
        "falls through to the configured ACL"
    );
    assert_eq!(publish(&identity, "devices/c1/down/x"), None);
    assert_eq!(subscribe(&identity, "devices/c1/down/#"), Some(true));
    assert_eq!(subscribe(&identity, "devices/+/down/#"), None);
    assert_eq!(publish(&identity, "users/alice"), Some(true));
    assert_eq!(subscribe(&identity, "users/alice"), Some(true));
}

#[tokio::test]
async fn acl_claim_list_form() {
    let a = build(&format!("secret = \"{SECRET}\"\nacl_claim = \"perms\""));
    let claims = with(
        valid(),
        json!({"perms": [
            {"permission": "deny", "action": "all", "topic": "t/secret"},
            {"permission": "allow", "action": "publish", "topics": ["t/#", "u/${clientid}"]},
            {"permission": "allow", "action": "subscribe", "topic": "s/+"},
        ]}),
    );
    let identity = allowed(decide(&a, &token(Algorithm::HS256, SECRET, &claims)).await);
    assert_eq!(publish(&identity, "t/secret"), Some(false));
    assert_eq!(subscribe(&identity, "t/secret"), Some(false));
    assert_eq!(publish(&identity, "t/1"), Some(true));
    assert_eq!(publish(&identity, "u/c1"), Some(true));
    assert_eq!(subscribe(&identity, "t/1"), None);
    assert_eq!(subscribe(&identity, "s/x"), Some(true));
    assert_eq!(subscribe(&identity, "s/#"), None);
    // The default claim name is not looked at when another is configured.
    let other = with(valid(), json!({"acl": "garbage"}));
    let identity = allowed(decide(&a, &token(Algorithm::HS256, SECRET, &other)).await);
    assert!(identity.acl.is_none());
}

#[tokio::test]
async fn malformed_acl_claims_are_refused() {
    let a = build(&format!("secret = \"{SECRET}\""));
    for acl in [
        json!("pub"),
        json!({"pub": "t/1"}),
        json!({"publish": ["t/1"]}),
        json!({"pub": ["t/#/x"]}),
        json!([{"permission": "allow", "action": "publish"}]),
        json!([{"permission": "allow", "action": "publish", "topic": "t", "qos": [0]}]),
        json!([{"permission": "grant", "action": "publish", "topic": "t"}]),
    ] {
        let t = token(Algorithm::HS256, SECRET, &with(valid(), json!({ "acl": acl })));
        assert_eq!(decide(&a, &t).await, BAD, "{acl}");
    }
    // Without acl_claim, the claim is not read.
    let off = build(&format!("secret = \"{SECRET}\"\nacl_claim = \"\""));
    let t = token(Algorithm::HS256, SECRET, &with(valid(), json!({"acl": "pub"})));
    assert!(allowed(decide(&off, &t).await).acl.is_none());
}

// ---------------------------------------------------------------------------------------------
// what is not a token

#[derive(Debug)]
struct AllowAll;

impl Authenticator for AllowAll {
    fn name(&self) -> &str {
        "passwords"
    }
    fn kind(&self) -> &'static str {
        "test"
    }
    fn authenticate<'a>(&'a self, _: &'a Credentials) -> BoxFuture<'a, Decision> {
        Box::pin(async {
            Decision::Allow(Identity {
                authenticator: Arc::from("passwords"),
                ..Identity::default()
            })
        })
    }
}

#[tokio::test]
async fn non_jwt_passwords_are_ignored() {
    let a = build(&format!("secret = \"{SECRET}\""));
    for password in [
        None,
        Some(""),
        Some("hunter2"),
        Some("a.b.c"),
        Some("correct.horse.battery.staple"),
        Some("eyJhbGciOiJIUzI1NiJ9.e30"),
        Some("eyJhbGciOiJIUzI1NiJ9.e30.x.y"),
        Some("eyJhbGciOiJIUzI1NiJ9..x"),
        Some("eyJhbGciOiJIUzI1NiJ9.e30.x="),
    ] {
        assert_eq!(
            a.authenticate(&creds(Some("c1"), Some("alice"), password)).await,
            Decision::Ignore,
            "{password:?}"
        );
    }
    // Non-UTF-8 bytes are no token either.
    let binary = Credentials {
        password: Some(Secret::new(vec![0xff, b'.', 0xfe, b'.', 0xfd])),
        ..creds(None, None, None)
    };
    assert_eq!(a.authenticate(&binary).await, Decision::Ignore);
    // So a chain passes plain passwords on, and stops at a bad token.
    let chain = Chain::new("c", vec![Arc::new(a), Arc::new(AllowAll)], NoMatch::Deny);
    assert!(matches!(
        chain.authenticate(&creds(Some("c1"), Some("alice"), Some("hunter2"))).await,
        Outcome::Allowed(i) if &*i.authenticator == "passwords"
    ));
    let forged = token(Algorithm::HS256, "not the secret", &valid());
    assert_eq!(
        chain
            .authenticate(&creds(Some("c1"), Some("alice"), Some(&forged)))
            .await,
        Outcome::Denied {
            authenticator: Arc::from("jwt"),
            reason: DenyReason::BadCredentials
        }
    );
}

#[tokio::test]
async fn huge_tokens_are_denied_quickly() {
    let a = build(&format!("secret = \"{SECRET}\""));
    let big_claims = with(valid(), json!({"pad": "x".repeat(1024 * 1024)}));
    let huge = token(Algorithm::HS256, SECRET, &big_claims);
    assert!(huge.len() > 1024 * 1024);
    let start = Instant::now();
    assert_eq!(decide(&a, &huge).await, BAD);
    assert_eq!(decide(&a, &"x".repeat(1024 * 1024)).await, BAD);
    assert!(start.elapsed() < Duration::from_millis(200), "{:?}", start.elapsed());
    // Right at the limit it is still parsed (and, signed, accepted).
    let pad = MAX_TOKEN_LEN - token(Algorithm::HS256, SECRET, &with(valid(), json!({"pad": ""}))).len();
    let at_limit = token(
        Algorithm::HS256,
        SECRET,
        &with(valid(), json!({"pad": "x".repeat(pad * 3 / 4 - 3)})),
    );
    assert!(at_limit.len() <= MAX_TOKEN_LEN, "{}", at_limit.len());
    allowed(decide(&a, &at_limit).await);
    let over = token(
        Algorithm::HS256,
        SECRET,
        &with(valid(), json!({"pad": "x".repeat(pad * 3 / 4 + 8)})),
    );
    assert!(over.len() > MAX_TOKEN_LEN);
    assert_eq!(decide(&a, &over).await, BAD);
}

// ---------------------------------------------------------------------------------------------
// configuration

#[test]
fn configuration_errors() {
    let cases: &[(&str, &str)] = &[
        ("", "found: none"),
        (
            "secret = \"s\"\npublic_key = \"{dir}/rsa.pub.pem\"",
            "found: secret, public_key",
        ),
        (
            "public_key = \"{dir}/rsa.pub.pem\"\nsecret_base64 = true",
            "secret_base64",
        ),
        ("secret = \"\"", "empty"),
        ("secret = \"%%%\"\nsecret_base64 = true", "base64"),
        ("secret_file = \"{dir}/missing\"", "cannot read"),
        ("public_key = \"{dir}/missing.pem\"", "cannot read"),
        ("public_key = \"{dir}/rsa.pem\"", "private key"),
        ("public_key = \"{dir}/rsa.jwk.json\"", "not a PEM public key"),
        ("secret = \"s\"\nalgorithms = []", "empty"),
        (
            "public_key = \"{dir}/ec256.pub.pem\"\nalgorithms = [\"ES384\"]",
            "ES384 cannot be used with an EC P-256 key",
        ),
        (
            "public_key = \"{dir}/ed25519.pub.pem\"\nalgorithms = [\"RS256\"]",
            "Ed25519",
        ),
        ("secret = \"s\"\nalgorithms = [\"RS256\"]", "HMAC"),
        ("jwks_url = \"ftp://idp/jwks\"", "http"),
        ("jwks_url = \"not a url\"", "jwks_url"),
        ("secret = \"s\"\nclaims = { exp = \"1\" }", "claims.exp"),
        ("secret = \"s\"\nusername_claim = \"\"", "username_claim"),
    ];
    for (text, expected) in cases {
        let err = build_err(text).to_string();
        assert!(err.contains(expected), "{text}: {err}");
        assert!(!err.contains(SECRET));
    }
    for text in [
        "secret = \"s\"\nclaims = { sub = \"${client_id}\" }",
        "secret = \"s\"\nfrom = \"header\"",
        "secret = \"s\"\nleeway = \"soon\"",
        "secret = \"s\"\nalgorithm = [\"HS256\"]",
    ] {
        assert!(toml::from_str::<JwtConfig>(text).is_err(), "{text}");
    }
}

#[test]
fn secrets_are_not_printed() {
    let c = config(&format!("secret = \"{SECRET}\""));
    assert!(!format!("{c:?}").contains(SECRET));
    let a = JwtAuthenticator::new("jwt", &c).unwrap();
    let shown = format!("{a:?}");
    assert!(!shown.contains(SECRET), "{shown}");
    assert!(!shown.contains("a-test-secret"), "{shown}");
}

// ---------------------------------------------------------------------------------------------
// JWKS

#[tokio::test]
async fn jwks_keys_of_every_type_verify_and_are_cached() {
    let server = JwksServer::start(jwks(&[
        jwk("rsa", "r"),
        jwk("ec256", "e"),
        jwk("ec384", "e3"),
        jwk("ed25519", "d"),
    ]))
    .await;
    let a = jwks_config(&server, "");
    assert_eq!(server.hits(), 0, "nothing is fetched before it is needed");
    for (alg, key, kid) in [
        (Algorithm::RS256, "rsa.pem", "r"),
        (Algorithm::PS512, "rsa.pem", "r"),
        (Algorithm::ES256, "ec256.pem", "e"),
        (Algorithm::ES384, "ec384.pem", "e3"),
        (Algorithm::EdDSA, "ed25519.pem", "d"),
    ] {
        allowed(decide(&a, &token_kid(alg, key, Some(kid), &valid())).await);
        // The key named by kid must be the one that signed.
        let other_kid = if kid == "r" { "e" } else { "r" };
        assert_eq!(decide(&a, &token_kid(alg, key, Some(other_kid), &valid())).await, BAD);
    }
    // Without a kid, every key fit for the alg is tried.
    allowed(decide(&a, &token(Algorithm::ES256, "ec256.pem", &valid())).await);
    assert_eq!(decide(&a, &token(Algorithm::RS256, "rsa2.pem", &valid())).await, BAD);
    assert_eq!(server.hits(), 1);
}

#[tokio::test]
async fn jwks_unknown_kid_refetches_once_and_is_rate_limited() {
    let server = JwksServer::start(jwks(&[jwk("rsa", "old")])).await;
    let a = jwks_config(&server, "jwks_min_refetch = \"600ms\"");
    let old = token_kid(Algorithm::RS256, "rsa.pem", Some("old"), &valid());
    let new = token_kid(Algorithm::ES256, "ec256.pem", Some("new"), &valid());
    allowed(decide(&a, &old).await);
    assert_eq!(server.hits(), 1);

    // The provider rotates keys. Right after a fetch, the unknown kid cannot trigger another.
    server.set(jwks(&[jwk("rsa", "old"), jwk("ec256", "new")]));
    assert_eq!(decide(&a, &new).await, BAD);
    assert_eq!(server.hits(), 1);

    // Once the rate limit has passed: one refetch, and the new key works.
    tokio::time::sleep(Duration::from_millis(700)).await;
    allowed(decide(&a, &new).await);
    assert_eq!(server.hits(), 2);
    allowed(decide(&a, &new).await);
    allowed(decide(&a, &old).await);
    assert_eq!(server.hits(), 2);

    // A flood of tokens with a kid nobody has: no fetch within the limit…
    let bogus = token_kid(Algorithm::ES256, "ec256.pem", Some("bogus"), &valid());
    for _ in 0..20 {
        assert_eq!(decide(&a, &bogus).await, BAD);
    }
    assert_eq!(server.hits(), 2);
    // …and one per period after it.
    tokio::time::sleep(Duration::from_millis(700)).await;
    for _ in 0..20 {
        assert_eq!(decide(&a, &bogus).await, BAD);
    }
    assert_eq!(server.hits(), 3);
}

#[tokio::test]
async fn jwks_refreshes_on_schedule_and_keeps_keys_when_a_refresh_fails() {
    let server = JwksServer::start(jwks(&[jwk("ed25519", "k")])).await;
    let a = jwks_config(&server, "jwks_refresh = \"300ms\"\njwks_min_refetch = \"0s\"");
    let t = token_kid(Algorithm::EdDSA, "ed25519.pem", Some("k"), &valid());
    allowed(decide(&a, &t).await);
    allowed(decide(&a, &t).await);
    assert_eq!(server.hits(), 1);
    tokio::time::sleep(Duration::from_millis(400)).await;
    allowed(decide(&a, &t).await);
    assert_eq!(server.hits(), 2);

    // The provider breaks: refreshes fail, the keys held still verify.
    for broken in [Reply::Status(500), Reply::Garbage, jwks(&[])] {
        server.set(broken);
        let before = server.hits();
        tokio::time::sleep(Duration::from_millis(400)).await;
        allowed(decide(&a, &t).await);
        assert_eq!(server.hits(), before + 1);
    }
    // A kid unknown while the provider is broken: we cannot tell, so Unavailable.
    let other = token_kid(Algorithm::ES256, "ec256.pem", Some("other"), &valid());
    assert_eq!(decide(&a, &other).await, UNAVAILABLE);
    // It recovers with a rotated set.
    server.set(jwks(&[jwk("ec256", "other")]));
    tokio::time::sleep(Duration::from_millis(400)).await;
    allowed(decide(&a, &other).await);
    assert_eq!(decide(&a, &t).await, BAD, "the old key was rotated out");
}

#[tokio::test]
async fn jwks_unavailable_garbage_error_or_unusable_set() {
    for reply in [
        Reply::Garbage,
        Reply::Status(500),
        Reply::Status(404),
        Reply::Json("{\"keys\": 7}".into()),
        jwks(&[json!({"kty": "oct", "k": "c2VjcmV0", "kid": "k"})]),
        jwks(&[]),
    ] {
        let server = JwksServer::start(reply.clone()).await;
        let a = jwks_config(&server, "");
        let t = token_kid(Algorithm::RS256, "rsa.pem", Some("k"), &valid());
        assert_eq!(decide(&a, &t).await, UNAVAILABLE, "{reply:?}");
        assert_eq!(server.hits(), 1);
        // Within jwks_min_refetch, no new fetch: still unavailable, at once.
        assert_eq!(decide(&a, &t).await, UNAVAILABLE);
        assert_eq!(server.hits(), 1, "{reply:?}");
    }
    // Nobody listening.
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/jwks", closed.local_addr().unwrap());
    drop(closed);
    let a = build(&format!("jwks_url = \"{url}\""));
    let t = token_kid(Algorithm::RS256, "rsa.pem", Some("k"), &valid());
    assert_eq!(decide(&a, &t).await, UNAVAILABLE);
}

#[tokio::test]
async fn jwks_hanging_is_bounded_by_the_timeout() {
    let server = JwksServer::start(Reply::Hang).await;
    let a = jwks_config(&server, "jwks_timeout = \"300ms\"");
    let t = token_kid(Algorithm::RS256, "rsa.pem", Some("k"), &valid());
    let start = Instant::now();
    assert_eq!(decide(&a, &t).await, UNAVAILABLE);
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_secs(2),
        "{took:?}"
    );
    assert_eq!(server.hits(), 1);
    // A slow answer within the timeout is fine.
    let body = json!({"keys": [jwk("rsa", "k")]}).to_string();
    let slow = JwksServer::start(Reply::Slow(Duration::from_millis(100), body)).await;
    let a = jwks_config(&slow, "jwks_timeout = \"2s\"");
    allowed(decide(&a, &t).await);
}

#[tokio::test]
async fn jwks_fetch_cut_short_by_the_servers_timeout_counts_as_failed() {
    // The server's auth.timeout (here 300 ms) is shorter than jwks_timeout: the fetch is dropped.
    let server = JwksServer::start(Reply::Hang).await;
    let a = jwks_config(&server, "jwks_timeout = \"10s\"");
    let t = token_kid(Algorithm::RS256, "rsa.pem", Some("k"), &valid());
    assert!(tokio::time::timeout(Duration::from_millis(300), decide(&a, &t))
        .await
        .is_err());
    assert_eq!(server.hits(), 1);
    // The next client is not held up by another fetch within jwks_min_refetch.
    let start = Instant::now();
    assert_eq!(decide(&a, &t).await, UNAVAILABLE);
    assert!(start.elapsed() < Duration::from_millis(200));
    assert_eq!(server.hits(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwks_concurrent_fetches_coalesce() {
    let body = json!({"keys": [jwk("ec256", "k")]}).to_string();
    let server = JwksServer::start(Reply::Slow(Duration::from_millis(300), body)).await;
    let a = Arc::new(jwks_config(&server, "jwks_min_refetch = \"0s\""));
    let t = token_kid(Algorithm::ES256, "ec256.pem", Some("k"), &valid());
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let (a, t) = (a.clone(), t.clone());
            tokio::spawn(async move { decide(&a, &t).await })
        })
        .collect();
    for task in tasks {
        allowed(task.await.unwrap());
    }
    assert_eq!(server.hits(), 1);
}

// ---------------------------------------------------------------------------------------------
// the fuzz target's seeds, replayed on stable

#[test]
fn fuzz_seeds_follow_the_decision_table() {
    use unigate_auth::jwt::fuzzing::{acl_member, authenticator, decide as run, sign_hs256};
    let auth = authenticator().unwrap();
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/jwt_token");
    let mut allowed_tokens = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        let creds = |token: &[u8]| Credentials {
            password: Some(Secret::new(token)),
            ..creds(Some("c1"), Some("u"), None)
        };
        let d = run(&auth, &creds(&data)).unwrap();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        match name.split('-').next().unwrap() {
            "password" | "acl" | "signed" => assert_eq!(d, Decision::Ignore, "{name}"),
            _ if name.starts_with("token-valid") => {
                allowed(d);
                allowed_tokens += 1;
            }
            _ => assert_eq!(d, BAD, "{name}"),
        }
        if let Some(i) = data.iter().position(|b| *b == 0) {
            let token = sign_hs256(&data[..i], &data[i + 1..]).unwrap();
            let d = run(&auth, &creds(token.as_bytes())).unwrap();
            if name.contains("acl") {
                let identity = allowed(d);
                let expected = acl_member(&data[i + 1..]).unwrap().unwrap();
                assert_eq!(identity.acl.as_deref(), Some(&expected), "{name}");
            } else if name.contains("expired") {
                assert_eq!(d, Decision::Deny(DenyReason::Expired), "{name}");
            }
        }
    }
    assert_eq!(allowed_tokens, 2);
}

/// The server reads `[auth.authenticators.NAME]` as an enum tagged by `kind` (src/auth.rs):
/// the configuration must read through serde's buffered path too.
#[test]
fn reads_as_a_kind_tagged_authenticator_table() {
    #[derive(Debug, serde::Deserialize)]
    #[serde(tag = "kind", rename_all = "lowercase")]
    enum Kind {
        Jwt(JwtConfig),
    }
    #[derive(Debug, serde::Deserialize)]
    struct Doc {
        authenticators: std::collections::BTreeMap<String, Kind>,
    }
    let doc: Doc = toml::from_str(
        r#"
        [authenticators.fleet-jwt]
        kind = "jwt"
        jwks_url = "https://idp.example/jwks"
        jwks_refresh = "10m"
        leeway = "5s"
        algorithms = ["RS256", "ES256"]
        claims = { iss = "https://idp.example", aud = ["unigate", "mqtt"], sub = "${clientid}" }
        from = "username"
        username_claim = "sub"
        [authenticators.hmac]
        kind = "jwt"
        secret = "a-secret"
        require_exp = false
        acl_claim = ""
        "#,
    )
    .unwrap();
    let Kind::Jwt(fleet) = &doc.authenticators["fleet-jwt"];
    assert_eq!(fleet.jwks_refresh, Duration::from_secs(600));
    assert_eq!(fleet.leeway, Duration::from_secs(5));
    assert_eq!(fleet.claims.len(), 3);
    assert!(fleet.claims["sub"].binds());
    JwtAuthenticator::new("fleet-jwt", fleet).unwrap();
    let Kind::Jwt(hmac) = &doc.authenticators["hmac"];
    assert!(!hmac.require_exp);
    JwtAuthenticator::new("hmac", hmac).unwrap();
    let err = toml::from_str::<Doc>("[authenticators.x]\nkind = \"jwt\"\nsecret = \"s\"\nscret = 1\n").unwrap_err();
    assert!(err.to_string().contains("scret"), "{err}");
}

/// RFC 9068 JWT access tokens (`typ: at+jwt`, `client_id`, `scope`, `aud`) verify locally like
/// any JWT: an OAuth2 chain puts a jwt authenticator on the issuer's keys before the
/// introspection one.
#[tokio::test]
async fn rfc9068_access_tokens_verify_locally() {
    let a = build("public_key = \"{dir}/rsa.pub.pem\"\nclaims = { iss = \"https://idp\", aud = \"unigate\" }");
    let claims = json!({
        "iss": "https://idp", "aud": "unigate", "sub": "c1", "client_id": "device-app",
        "scope": "telemetry:write", "iat": now(), "exp": now() + 300, "jti": "a1"
    });
    let header = Header {
        typ: Some("at+jwt".into()),
        ..Header::new(Algorithm::RS256)
    };
    let at = jsonwebtoken::encode(&header, &claims, &signing_key(Algorithm::RS256, "rsa.pem")).unwrap();
    allowed(decide(&a, &at).await);
    let other_aud = jsonwebtoken::encode(
        &header,
        &with(claims, json!({"aud": "other"})),
        &signing_key(Algorithm::RS256, "rsa.pem"),
    )
    .unwrap();
    assert_eq!(decide(&a, &other_aud).await, BAD);
}
