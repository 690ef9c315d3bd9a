//! OAuth 2.0 on the wire: MQTT clients presenting bearer tokens issued by a real authorisation
//! server (node's oidc-provider, `tests/oidc/server.js`), which unigate's oauth2 authenticator
//! introspects (RFC 7662). Tokens come from the server's token endpoint (client credentials
//! grant) and are revoked at its revocation endpoint (RFC 7009).
//!
//! The provider runs as a child process on a port the OS picks and is killed when the test ends.
//! `scripts/test.sh` installs node and the provider (`npm ci` in `tests/oidc`).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use unigate_mqtt::{Packet, ProtocolVersion, QoS, ReasonCode};

use crate::common::pki::Pki;
use crate::common::proc::{require, Proc};
use crate::common::{TestServer, TIMEOUT};
use crate::util::{connect_packet, publish, Raw};

/// The authorisation server, killed on drop.
struct Idp {
    proc: Proc,
    addr: SocketAddr,
}

impl Idp {
    fn start() -> Idp {
        Self::spawn(&[]).0
    }

    /// The server, also answering over HTTPS with `pki`'s server certificate; and its HTTPS
    /// address.
    fn start_tls(pki: &Pki) -> (Idp, SocketAddr) {
        let (idp, tls) = Self::spawn(&[pki.p("server.pem"), pki.p("server.key")]);
        (idp, tls.expect("an HTTPS address"))
    }

    fn spawn(tls: &[String]) -> (Idp, Option<SocketAddr>) {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/oidc");
        require("node");
        assert!(
            dir.join("node_modules/oidc-provider").is_dir(),
            "tests/oidc has no node_modules: run `npm ci` in tests/oidc (scripts/test.sh does)"
        );
        let mut args = vec![dir.join("server.js").display().to_string()];
        args.extend_from_slice(tls);
        let mut proc = Proc::spawn("node", &args);
        let address = |line: String, prefix: &str| -> SocketAddr {
            line.trim()
                .trim_start_matches(prefix)
                .parse()
                .expect("the line names the address")
        };
        let addr = address(proc.wait_for_line("listening http://"), "listening http://");
        let tls = (!tls.is_empty()).then(|| address(proc.wait_for_line("tls https://"), "tls https://"));
        (Idp { proc, addr }, tls)
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A client credentials token of `client` (`device` or `shortlived`) with `scope`.
    fn token_for(&self, client: &str, scope: &str) -> String {
        let (status, body) = http(
            self.addr,
            "POST",
            "/token",
            &format!("grant_type=client_credentials&client_id={client}&client_secret={client}-secret&scope={scope}"),
        );
        assert_eq!(status, 200, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).expect("token response");
        v["access_token"].as_str().expect("access_token").to_string()
    }

    fn token(&self, scope: &str) -> String {
        self.token_for("device", scope)
    }

    /// Revokes `token` (RFC 7009).
    fn revoke(&self, token: &str) {
        let (status, body) = http(
            self.addr,
            "POST",
            "/token/revocation",
            &format!("client_id=device&client_secret=device-secret&token={token}"),
        );
        assert_eq!(status, 200, "{body}");
    }

    /// Introspection requests the server has received.
    fn introspections(&self) -> u64 {
        let (status, body) = http(self.addr, "GET", "/test/introspections", "");
        assert_eq!(status, 200, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).expect("count");
        v["count"].as_u64().expect("count")
    }

    /// From now on the server never answers introspection requests.
    fn hang(&self) {
        assert_eq!(http(self.addr, "POST", "/test/hang", "").0, 204);
    }

    fn kill(&mut self) {
        self.proc.kill();
    }
}

/// One HTTP/1.1 request with a form body (`Connection: close`); the status and body.
/// Hand-written so the test needs no HTTP client crate; the provider answers with a
/// `Content-Length` (never chunked) for these small JSON bodies.
fn http(addr: SocketAddr, method: &str, path: &str, form: &str) -> (u16, String) {
    let mut s = TcpStream::connect_timeout(&addr, TIMEOUT).expect("connect to the IdP");
    s.set_read_timeout(Some(TIMEOUT)).expect("timeout");
    let form = form.replace(' ', "+").replace(':', "%3A");
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{form}",
        form.len()
    )
    .expect("write");
    let mut response = String::new();
    s.read_to_string(&mut response).expect("read");
    let (head, body) = response.split_once("\r\n\r\n").expect("a whole response");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status line");
    (status, body.to_string())
}

/// A server whose default chain is `chain` with `authenticators`, then `extra` TOML.
fn start_server(authenticators: &[&str], extra: &str) -> TestServer {
    let list = authenticators
        .iter()
        .map(|a| format!("{a:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    TestServer::start_with(
        &format!(
            "[auth]\ndefault_chain = \"tokens\"\n[auth.chains.tokens]\nauthenticators = [{list}]\nno_match = \"deny\"\n{extra}"
        ),
        "",
    )
}

/// The TOML of an oauth2 authenticator `name` using `idp`, with `extra` keys.
fn oauth2(name: &str, idp: &Idp, extra: &str) -> String {
    format!(
        "[auth.authenticators.{name}]\nkind = \"oauth2\"\nintrospection_url = \"{}/token/introspection\"\n\
         client_id = \"unigate\"\nclient_secret = \"unigate-secret\"\n{extra}\n",
        idp.url()
    )
}

fn connect(server: &TestServer, version: ProtocolVersion, client_id: &str, token: &str) -> (Raw, ReasonCode) {
    let mut c = connect_packet(version, client_id, true);
    c.username = Some("device".into());
    c.password = Some(bytes::Bytes::copy_from_slice(token.as_bytes()));
    let (raw, ack) = Raw::connect(server.addr, c);
    (raw, ack.reason_code)
}

fn code(server: &TestServer, client_id: &str, token: &str) -> ReasonCode {
    connect(server, ProtocolVersion::V5, client_id, token).1
}

const SCOPE_ACL: &str = r##"
[auth.authenticators.idp.scope_acl]
"telemetry:write" = [{ permission = "allow", action = "publish", topics = ["devices/${clientid}/#"] }]
"telemetry:read" = [{ permission = "allow", action = "subscribe", topics = ["devices/#"] }]
[acl]
no_match = "deny"
"##;

#[test]
fn tokens_from_a_real_idp_connect_carry_scope_acls_and_are_cached() {
    let idp = Idp::start();
    let server = start_server(&["idp"], &format!("{}{SCOPE_ACL}", oauth2("idp", &idp, "")));
    let writer = idp.token("telemetry:write");
    let reader = idp.token("telemetry:read");

    let started = Instant::now();
    let (mut sub, ack) = connect(&server, ProtocolVersion::V5, "dashboard", &reader);
    let cold = started.elapsed();
    assert_eq!(ack, ReasonCode::SUCCESS);
    sub.subscribe("devices/#", QoS::AtLeastOnce);

    let started = Instant::now();
    let (mut pubr, ack) = connect(&server, ProtocolVersion::V5, "dev-1", &writer);
    let first = started.elapsed();
    assert_eq!(ack, ReasonCode::SUCCESS);
    let mut puback = |topic: &str, id: u16| {
        pubr.send(&Packet::Publish(publish(topic, "21.5", QoS::AtLeastOnce, id)));
        match pubr.recv() {
            Packet::PubAck(a) => a.reason_code,
            other => panic!("unexpected {other:?}"),
        }
    };
    // telemetry:write lets dev-1 publish under its own tree, and nowhere else.
    assert!(!puback("devices/dev-1/temp", 1).is_error());
    assert_eq!(puback("devices/dev-2/temp", 2), ReasonCode::NOT_AUTHORIZED);
    let got = sub.recv_publish();
    assert_eq!(&*got.topic, "devices/dev-1/temp");
    assert!(sub.barrier().is_empty(), "the denied publish must not be delivered");
    // The reader may not publish: its scope grants subscriptions only.
    sub.send(&Packet::Publish(publish(
        "devices/dashboard/x",
        "x",
        QoS::AtLeastOnce,
        7,
    )));
    match sub.recv() {
        Packet::PubAck(a) => assert_eq!(a.reason_code, ReasonCode::NOT_AUTHORIZED),
        other => panic!("unexpected {other:?}"),
    }

    // Cached: connecting again with the same token does not ask the IdP.
    let asked = idp.introspections();
    assert_eq!(asked, 2, "one introspection per token");
    let started = Instant::now();
    assert_eq!(code(&server, "dev-1", &writer), ReasonCode::SUCCESS);
    let cached = started.elapsed();
    assert_eq!(idp.introspections(), asked);
    eprintln!("oauth2 connect: cold (new IdP connection) {cold:?}, introspected {first:?}, cached {cached:?}");
    server.stop();
}

#[test]
fn revoked_unknown_and_expired_tokens_are_refused() {
    let idp = Idp::start();
    let server = start_server(&["idp"], &oauth2("idp", &idp, "max_cache_ttl = \"1s\""));
    // Revoked before its first use.
    let revoked = idp.token("telemetry:write");
    idp.revoke(&revoked);
    assert_eq!(code(&server, "dev-1", &revoked), ReasonCode::BAD_USER_NAME_OR_PASSWORD);
    assert_eq!(
        connect(&server, ProtocolVersion::V3_1_1, "dev-1", &revoked).1,
        ReasonCode::BAD_USER_NAME_OR_PASSWORD
    );
    assert_eq!(
        code(&server, "dev-1", "made-up-token-aaaaaaaaaaaaaaaaaaaa"),
        ReasonCode::BAD_USER_NAME_OR_PASSWORD
    );
    // Not a bearer token: ignored by oauth2, and the chain denies.
    assert_eq!(code(&server, "dev-1", "two words"), ReasonCode::NOT_AUTHORIZED);

    // Revoked after use: noticed once the cached result expires (max_cache_ttl = 1s).
    let token = idp.token("telemetry:write");
    assert_eq!(code(&server, "dev-1", &token), ReasonCode::SUCCESS);
    idp.revoke(&token);
    assert_eq!(code(&server, "dev-1", &token), ReasonCode::SUCCESS, "still cached");
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(code(&server, "dev-1", &token), ReasonCode::BAD_USER_NAME_OR_PASSWORD);

    // A token living 2 s is not cached past its `exp`.
    let short = idp.token_for("shortlived", "telemetry:write");
    assert_eq!(code(&server, "dev-1", &short), ReasonCode::SUCCESS);
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(code(&server, "dev-1", &short), ReasonCode::BAD_USER_NAME_OR_PASSWORD);
    server.stop();
}

#[test]
fn claims_bindings_required_scopes_and_client_secret_post() {
    let idp = Idp::start();
    let extra = format!(
        "auth_method = \"post\"\nclient_id = \"unigate-post\"\nclient_secret = \"unigate-post-secret\"\n\
         required_scopes = [\"telemetry:write\"]\nclaims = {{ iss = \"{}\", client_id = \"${{clientid}}\" }}",
        idp.url()
    );
    let toml =
        oauth2("idp", &idp, "").replace("client_id = \"unigate\"\nclient_secret = \"unigate-secret\"\n", "") + &extra;
    let server = start_server(&["idp"], &toml);
    let token = idp.token("telemetry:write");
    // The token's client_id is `device`: only that MQTT client id may use it.
    assert_eq!(code(&server, "device", &token), ReasonCode::SUCCESS);
    assert_eq!(code(&server, "other", &token), ReasonCode::NOT_AUTHORIZED);
    // Without the required scope.
    let reader = idp.token("telemetry:read");
    assert_eq!(code(&server, "device", &reader), ReasonCode::NOT_AUTHORIZED);
    server.stop();

    // The wrong client secret: the IdP refuses unigate, which is "unavailable".
    let wrong = oauth2("idp", &idp, "").replace("unigate-secret", "guessed");
    let server = start_server(&["idp"], &wrong);
    assert_eq!(code(&server, "device", &token), ReasonCode::SERVER_UNAVAILABLE);
    server.stop();
}

/// A password file with alice / wonderland; its TOML as authenticator `pw`.
fn passwords(name: &str) -> (PathBuf, String) {
    use unigate_auth::password::PasswordStore;
    let dir = std::env::temp_dir().join(format!("unigate-oauth2-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("passwd.toml");
    let mut store = PasswordStore::new(&file);
    store
        .add("alice", &unigate_auth::Secret::new("wonderland"))
        .expect("hash");
    store.save().expect("save");
    let toml = format!(
        "[auth.authenticators.pw]\nkind = \"password\"\nfile = {:?}\nunknown_user = \"ignore\"\n",
        file.display().to_string()
    );
    (dir, toml)
}

#[test]
fn an_unavailable_idp_denies_or_passes_on() {
    let mut idp = Idp::start();
    let deny = start_server(&["idp"], &oauth2("idp", &idp, "timeout = \"1s\""));
    let (dir, pw) = passwords("unavailable");
    // Ignore when unavailable, then the password store (whose unknown users are ignored too).
    let ignore = start_server(
        &["idp", "pw"],
        &format!(
            "{}{pw}",
            oauth2("idp", &idp, "timeout = \"1s\"\non_unavailable = \"ignore\"")
        ),
    );
    let seen = idp.token("telemetry:write");
    assert_eq!(code(&deny, "dev-1", &seen), ReasonCode::SUCCESS);
    let unseen = idp.token("telemetry:write");

    // An IdP that stops answering: refused once the 1 s timeout fires.
    idp.hang();
    let started = Instant::now();
    assert_eq!(code(&deny, "dev-1", &unseen), ReasonCode::SERVER_UNAVAILABLE);
    let hung = started.elapsed();
    assert!(
        hung >= Duration::from_millis(900) && hung < Duration::from_secs(4),
        "{hung:?}"
    );

    // An IdP that is gone: refused at once.
    idp.kill();
    let started = Instant::now();
    assert_eq!(code(&deny, "dev-1", &unseen), ReasonCode::SERVER_UNAVAILABLE);
    let gone = started.elapsed();
    assert!(gone < Duration::from_secs(2), "{gone:?}");
    // A token introspected while the IdP was up still works from the cache.
    assert_eq!(code(&deny, "dev-1", &seen), ReasonCode::SUCCESS);

    // on_unavailable = "ignore": the next authenticator decides.
    let mut c = connect_packet(ProtocolVersion::V5, "alice-laptop", true);
    c.username = Some("alice".into());
    c.password = Some(bytes::Bytes::from_static(b"wonderland"));
    assert_eq!(Raw::connect(ignore.addr, c).1.reason_code, ReasonCode::SUCCESS);
    // A token holder: the password store does not know `device`, the chain denies.
    assert_eq!(code(&ignore, "dev-1", &unseen), ReasonCode::NOT_AUTHORIZED);
    eprintln!("oauth2 unavailable: hung IdP refused after {hung:?}, dead IdP after {gone:?}");
    deny.stop();
    ignore.stop();
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn an_https_idp_is_trusted_through_ca_file() {
    let pki = Pki::new("oauth2-idp");
    let (idp, tls) = Idp::start_tls(&pki);
    let https = |extra: &str| {
        oauth2("idp", &idp, extra).replace(
            &format!("http://{}", idp.addr),
            &format!("https://127.0.0.1:{}", tls.port()),
        )
    };
    let token = idp.token("telemetry:write");
    let trusted = start_server(&["idp"], &https(&format!("ca_file = {:?}", pki.p("ca.pem"))));
    assert_eq!(code(&trusted, "dev-1", &token), ReasonCode::SUCCESS);
    trusted.stop();
    // Without it the test CA is unknown: the TLS handshake fails, the IdP is unavailable.
    let untrusted = start_server(&["idp"], &https(""));
    assert_eq!(code(&untrusted, "dev-1", &token), ReasonCode::SERVER_UNAVAILABLE);
    untrusted.stop();
}
