//! Authentication on the wire: a password chain in front of an MQTT listener.

use unigate_auth::password::{PasswordStore, UnknownUser};
use unigate_auth::Secret;
use unigate_mqtt::{ProtocolVersion, ReasonCode};

use crate::common::TestServer;
use crate::util::{connect_packet, Raw};

/// A password file with alice / wonderland, and the TOML of a chain `users` using it.
fn setup(name: &str, unknown_user: UnknownUser) -> (std::path::PathBuf, String) {
    let dir = std::env::temp_dir().join(format!("unigate-authn-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("passwd.toml");
    let mut store = PasswordStore::new(&file);
    store.add("alice", &Secret::new("wonderland")).expect("hash");
    store.save().expect("save");
    let unknown = match unknown_user {
        UnknownUser::Deny => "deny",
        _ => "ignore",
    };
    let toml = format!(
        "[auth]\ndefault_chain = \"users\"\n[auth.chains.users]\nauthenticators = [\"pw\"]\nno_match = \"deny\"\n\
         [auth.authenticators.pw]\nkind = \"password\"\nfile = {:?}\nunknown_user = \"{unknown}\"\nmax_failures = 3\n",
        file.display().to_string()
    );
    (dir, toml)
}

fn connect_code(
    server: &TestServer,
    version: ProtocolVersion,
    user: Option<&str>,
    password: Option<&str>,
) -> ReasonCode {
    let mut c = connect_packet(version, "pw-client", true);
    c.username = user.map(str::to_string);
    c.password = password.map(|p| bytes::Bytes::copy_from_slice(p.as_bytes()));
    let (_, ack) = Raw::connect(server.addr, c);
    ack.reason_code
}

#[test]
fn password_chain_accepts_refuses_and_throttles() {
    let (dir, toml) = setup("chain", UnknownUser::Ignore);
    let server = TestServer::start_with(&toml, "");
    let v5 = ProtocolVersion::V5;
    assert_eq!(
        connect_code(&server, v5, Some("alice"), Some("wonderland")),
        ReasonCode::SUCCESS
    );
    assert_eq!(
        connect_code(&server, v5, Some("alice"), Some("looking-glass")),
        ReasonCode::BAD_USER_NAME_OR_PASSWORD
    );
    // MQTT 3.1.1 gets return code 4 for the same.
    assert_eq!(
        connect_code(&server, ProtocolVersion::V3_1_1, Some("alice"), Some("nope")),
        ReasonCode::BAD_USER_NAME_OR_PASSWORD
    );
    // Unknown users and anonymous clients are ignored by the authenticator; the chain denies.
    assert_eq!(
        connect_code(&server, v5, Some("mallory"), Some("x")),
        ReasonCode::NOT_AUTHORIZED
    );
    assert_eq!(connect_code(&server, v5, None, None), ReasonCode::NOT_AUTHORIZED);
    assert_eq!(
        connect_code(&server, v5, Some("alice"), Some("third-try")),
        ReasonCode::BAD_USER_NAME_OR_PASSWORD
    );
    // Three failures within the window: even the right password is refused for now.
    assert_eq!(
        connect_code(&server, v5, Some("alice"), Some("wonderland")),
        ReasonCode::NOT_AUTHORIZED
    );
    // The largest password MQTT can carry (64 KiB) is refused quickly, without hashing.
    let big = "x".repeat(65_535);
    let started = std::time::Instant::now();
    let mut c = connect_packet(ProtocolVersion::V5, "big", true);
    c.username = Some("bob".into());
    c.password = Some(bytes::Bytes::from(big));
    let (_, ack) = Raw::connect(server.addr, c);
    assert!(ack.reason_code.is_error());
    assert!(started.elapsed() < std::time::Duration::from_secs(2));
    // Every decision is counted per authenticator (and `chain` for the no-match policy).
    let counts = server.broker().metrics.auth_counts();
    let count = |who: &str, result: &str| {
        counts
            .iter()
            .find(|(a, r, _)| a == who && *r == result)
            .map(|(_, _, n)| *n)
            .unwrap_or(0)
    };
    assert_eq!(count("pw", "allow"), 1, "{counts:?}");
    assert_eq!(count("chain", "deny"), 2, "{counts:?}");
    assert!(count("pw", "deny") >= 4, "{counts:?}");
    server.stop();
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn mosquitto_clients_log_in_with_a_password() {
    let (dir, toml) = setup("mosquitto", UnknownUser::Deny);
    let server = TestServer::start_with(&toml, "");
    let port = server.port().to_string();
    let ok = std::process::Command::new("mosquitto_pub")
        .args([
            "-p",
            &port,
            "-u",
            "alice",
            "-P",
            "wonderland",
            "-t",
            "t",
            "-m",
            "hi",
            "-q",
            "1",
        ])
        .output()
        .expect("mosquitto_pub is installed");
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    let bad = std::process::Command::new("mosquitto_pub")
        .args([
            "-p", &port, "-u", "alice", "-P", "wrong", "-t", "t", "-m", "hi", "-q", "1",
        ])
        .output()
        .expect("mosquitto_pub is installed");
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr).to_lowercase();
    assert!(
        err.contains("bad user name or password") || err.contains("not authorised"),
        "{err}"
    );
    server.stop();
    let _ = std::fs::remove_dir_all(dir);
}

/// An HS256 token for `claims`.
fn token(claims: serde_json::Value) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(b"fleet-secret"),
    )
    .expect("token")
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

const JWT_CHAIN: &str = "[auth]\ndefault_chain = \"fleet\"\n[auth.chains.fleet]\nauthenticators = [\"tokens\"]\n\
    [auth.authenticators.tokens]\nkind = \"jwt\"\nsecret = \"fleet-secret\"\nclaims = { iss = \"fleet\", sub = \"${clientid}\" }\n";

fn connect_with(server: &TestServer, client_id: &str, password: &str) -> (Raw, ReasonCode) {
    let mut c = connect_packet(ProtocolVersion::V5, client_id, true);
    c.username = Some("device".into());
    c.password = Some(bytes::Bytes::copy_from_slice(password.as_bytes()));
    let (raw, ack) = Raw::connect(server.addr, c);
    (raw, ack.reason_code)
}

#[test]
fn jwt_chain_checks_signature_claims_binding_and_expiry() {
    let server = TestServer::start_with(JWT_CHAIN, "");
    let good = token(serde_json::json!({"iss": "fleet", "sub": "dev-1", "exp": now() + 600}));
    assert_eq!(connect_with(&server, "dev-1", &good).1, ReasonCode::SUCCESS);
    // Bound to its client id: another device cannot use it.
    assert_eq!(connect_with(&server, "dev-2", &good).1, ReasonCode::NOT_AUTHORIZED);
    let wrong_iss = token(serde_json::json!({"iss": "other", "sub": "dev-1", "exp": now() + 600}));
    assert_eq!(
        connect_with(&server, "dev-1", &wrong_iss).1,
        ReasonCode::BAD_USER_NAME_OR_PASSWORD
    );
    let expired = token(serde_json::json!({"iss": "fleet", "sub": "dev-1", "exp": now() - 3600}));
    assert_eq!(
        connect_with(&server, "dev-1", &expired).1,
        ReasonCode::BAD_USER_NAME_OR_PASSWORD
    );
    let forged = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &serde_json::json!({"iss": "fleet", "sub": "dev-1", "exp": now() + 600}),
        &jsonwebtoken::EncodingKey::from_secret(b"guessed"),
    )
    .expect("token");
    assert_eq!(
        connect_with(&server, "dev-1", &forged).1,
        ReasonCode::BAD_USER_NAME_OR_PASSWORD
    );
    // Not a token at all: the jwt authenticator ignores it and the chain denies.
    assert_eq!(connect_with(&server, "dev-1", "hunter2").1, ReasonCode::NOT_AUTHORIZED);
    server.stop();
}

#[test]
fn a_token_acl_claim_limits_what_the_client_may_publish() {
    use unigate_mqtt::{Packet, QoS};
    let server = TestServer::start_with(JWT_CHAIN, "");
    let t = token(serde_json::json!({
        "iss": "fleet", "sub": "dev-1", "exp": now() + 600,
        "acl": {"pub": ["devices/${clientid}/#"], "sub": ["cmd/${clientid}"]}
    }));
    let (mut c, code) = connect_with(&server, "dev-1", &t);
    assert_eq!(code, ReasonCode::SUCCESS);
    let mut ack = |topic: &str, id: u16| {
        c.send(&Packet::Publish(crate::util::publish(topic, "x", QoS::AtLeastOnce, id)));
        match c.recv() {
            Packet::PubAck(a) => a.reason_code,
            other => panic!("unexpected {other:?}"),
        }
    };
    assert!(!ack("devices/dev-1/temp", 1).is_error());
    assert_eq!(ack("devices/dev-2/temp", 2), ReasonCode::NOT_AUTHORIZED);
    server.stop();
}

/// Runs a SCRAM-SHA-256 exchange (MQTT 5 enhanced authentication) as `user` with `password`;
/// returns the CONNACK and whether its server signature proved the server knew the verifier.
fn scram_connect(server: &TestServer, user: &str, password: &str) -> (ReasonCode, bool) {
    use unigate_auth::scram;
    use unigate_mqtt::{Auth, Packet};
    let nonce = "fyko+d2lbbFgONRv9qkxdawL";
    let bare = format!("n={user},r={nonce}");
    let mut c = connect_packet(ProtocolVersion::V5, "scram-client", true);
    c.properties.authentication_method = Some(scram::MECHANISM.into());
    c.properties.authentication_data = Some(bytes::Bytes::from(format!("n,,{bare}")));
    let mut raw = Raw::open(server.addr);
    raw.send(&Packet::Connect(Box::new(c)));
    let server_first = match raw.recv() {
        Packet::Auth(a) => {
            assert_eq!(a.reason_code, ReasonCode::CONTINUE_AUTHENTICATION);
            assert_eq!(a.properties.authentication_method.as_deref(), Some(scram::MECHANISM));
            String::from_utf8(a.properties.authentication_data.unwrap().to_vec()).unwrap()
        }
        Packet::ConnAck(ack) => return (ack.reason_code, false),
        other => panic!("expected AUTH, got {other:?}"),
    };
    assert!(
        server_first.starts_with(&format!("r={nonce}")),
        "the server's nonce extends ours"
    );
    let (client_final, server_final) = scram::client_final(password.as_bytes(), &bare, &server_first, "n,,").unwrap();
    let mut auth = Auth::new(ReasonCode::CONTINUE_AUTHENTICATION);
    auth.properties.authentication_method = Some(scram::MECHANISM.into());
    auth.properties.authentication_data = Some(bytes::Bytes::from(client_final));
    raw.send(&Packet::Auth(auth));
    match raw.recv() {
        Packet::ConnAck(ack) => {
            let proved = ack.properties.authentication_data.as_deref() == Some(server_final.as_bytes());
            (ack.reason_code, proved)
        }
        other => panic!("expected CONNACK, got {other:?}"),
    }
}

#[test]
fn scram_sha_256_enhanced_authentication_with_the_password_store() {
    let (dir, toml) = setup("scram", UnknownUser::Ignore);
    let server = TestServer::start_with(&toml, "");
    assert_eq!(
        scram_connect(&server, "alice", "wonderland"),
        (ReasonCode::SUCCESS, true)
    );
    assert_eq!(scram_connect(&server, "alice", "wrong").0, ReasonCode::NOT_AUTHORIZED);
    // An unknown user goes through the same exchange (a decoy salt) and fails the same way.
    assert_eq!(scram_connect(&server, "mallory", "x").0, ReasonCode::NOT_AUTHORIZED);
    // Two more failures: alice is throttled (max_failures = 3), even with the right password.
    scram_connect(&server, "alice", "wrong");
    scram_connect(&server, "alice", "wrong");
    assert_eq!(
        scram_connect(&server, "alice", "wonderland").0,
        ReasonCode::NOT_AUTHORIZED
    );
    // Another method: 0x8C.
    let mut c = connect_packet(ProtocolVersion::V5, "k", true);
    c.properties.authentication_method = Some("KERBEROS".into());
    assert_eq!(
        Raw::connect(server.addr, c).1.reason_code,
        ReasonCode::BAD_AUTHENTICATION_METHOD
    );
    let _ = std::fs::remove_dir_all(&dir);
    server.stop();
}

#[test]
fn scram_without_a_password_store_is_a_bad_method() {
    let server = TestServer::start_with(JWT_CHAIN, "");
    let mut c = connect_packet(ProtocolVersion::V5, "k", true);
    c.properties.authentication_method = Some("SCRAM-SHA-256".into());
    c.properties.authentication_data = Some(bytes::Bytes::from_static(b"n,,n=a,r=abc"));
    assert_eq!(
        Raw::connect(server.addr, c).1.reason_code,
        ReasonCode::BAD_AUTHENTICATION_METHOD
    );
    server.stop();
}
