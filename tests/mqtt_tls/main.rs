//! MQTT over TLS: server certificates, optional and required client certificates, CRLs, bad
//! material — with certificates made here by rcgen, and driven by rustls clients, rumqttc and
//! Debian's mosquitto clients (OpenSSL).
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../common/mod.rs"]
mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use common::pki::Pki;
use unigate::config::Config;
use unigate::server::{self, RunningServer, StartOptions};

/// Starts a server with one TLS listener whose `tls` table is `tls`.
fn start(tls: &str) -> anyhow::Result<(RunningServer, SocketAddr)> {
    start_with_auth(tls, "", "")
}

/// Like [`start`], the listener using auth chain `chain` (if not empty) defined in `auth_toml`.
fn start_with_auth(tls: &str, chain: &str, auth_toml: &str) -> anyhow::Result<(RunningServer, SocketAddr)> {
    let auth_key = if chain.is_empty() {
        String::new()
    } else {
        format!("auth = {chain:?}\n")
    };
    let text = format!(
        "workers = 2\nsys_interval = \"0s\"\n[[listeners]]\nname = \"mqtts\"\nprotocol = \"mqtt\"\nbind = \"127.0.0.1:0\"\n{auth_key}tls = {{ {tls} }}\n{auth_toml}\n"
    );
    let config = Config::parse(&text, "test", Vec::new())?;
    let server = server::start(config, [127, 0, 0, 1].into(), StartOptions::default())?;
    let addr = server.addr("mqtts").expect("listener");
    Ok((server, addr))
}

fn server_tls(pki: &Pki) -> String {
    format!("cert = {:?}, key = {:?}", pki.p("server.pem"), pki.p("server.key"))
}

fn mtls(pki: &Pki, mode: &str) -> String {
    format!(
        "{}, client_ca = {:?}, client_auth = {mode:?}, crl = [{:?}]",
        server_tls(pki),
        pki.p("ca.pem"),
        pki.p("ca.crl")
    )
}

/// A rustls client config trusting the test CA, with an optional client certificate.
fn client_config(pki: &Pki, client: Option<&str>) -> Arc<rustls::ClientConfig> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(pki.path("ca.pem")).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let config = match client {
        None => builder.with_no_client_auth(),
        Some(name) => {
            let certs = CertificateDer::pem_file_iter(pki.path(&format!("{name}.pem")))
                .unwrap()
                .collect::<Result<Vec<_>, _>>()
                .unwrap();
            let key = PrivateKeyDer::from_pem_file(pki.path(&format!("{name}.key"))).unwrap();
            builder.with_client_auth_cert(certs, key).unwrap()
        }
    };
    Arc::new(config)
}

/// Connects over TLS, sends an MQTT 3.1.1 CONNECT and returns the CONNACK bytes, or the error
/// that ended the attempt (a failed handshake).
fn tls_connack(addr: SocketAddr, config: Arc<rustls::ClientConfig>) -> std::io::Result<[u8; 4]> {
    tls_connack_as(addr, config, "id")
}

/// [`tls_connack`] with a client id.
fn tls_connack_as(addr: SocketAddr, config: Arc<rustls::ClientConfig>, client_id: &str) -> std::io::Result<[u8; 4]> {
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let conn = rustls::ClientConnection::new(config, name).map_err(std::io::Error::other)?;
    let tcp = TcpStream::connect(addr)?;
    tcp.set_read_timeout(Some(common::TIMEOUT))?;
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    let mut connect = vec![
        0x10,
        (12 + client_id.len()) as u8,
        0,
        4,
        b'M',
        b'Q',
        b'T',
        b'T',
        4,
        2,
        0,
        60,
        0,
    ];
    connect.push(client_id.len() as u8);
    connect.extend_from_slice(client_id.as_bytes());
    tls.write_all(&connect)?;
    tls.flush()?;
    let mut ack = [0u8; 4];
    tls.read_exact(&mut ack)?;
    Ok(ack)
}

const ACCEPTED: [u8; 4] = [0x20, 0x02, 0x00, 0x00];

#[test]
fn server_authenticated_tls_carries_mqtt() {
    let pki = Pki::new("server-only");
    let (server, addr) = start(&server_tls(&pki)).unwrap();
    assert_eq!(tls_connack(addr, client_config(&pki, None)).unwrap(), ACCEPTED);
    // Plain MQTT on the TLS port is not accepted.
    let mut plain = TcpStream::connect(addr).unwrap();
    plain.set_read_timeout(Some(common::TIMEOUT)).unwrap();
    plain
        .write_all(&[0x10, 0x0e, 0, 4, b'M', b'Q', b'T', b'T', 4, 2, 0, 60, 0, 2, b'i', b'd'])
        .unwrap();
    let mut buf = [0u8; 64];
    let n = plain.read(&mut buf).unwrap_or(0);
    assert!(
        n == 0 || buf[..n] != ACCEPTED[..],
        "plaintext MQTT was accepted on a TLS listener"
    );
    server.stop().unwrap();
}

#[test]
fn required_client_certificates_are_verified() {
    let pki = Pki::new("required");
    let (server, addr) = start(&mtls(&pki, "required")).unwrap();
    assert_eq!(
        tls_connack(addr, client_config(&pki, Some("device-1"))).unwrap(),
        ACCEPTED
    );
    for (who, config) in [
        ("no certificate", client_config(&pki, None)),
        ("untrusted CA", client_config(&pki, Some("rogue"))),
        ("expired", client_config(&pki, Some("expired"))),
        ("revoked by CRL", client_config(&pki, Some("revoked"))),
    ] {
        assert!(tls_connack(addr, config).is_err(), "{who}: connection was accepted");
    }
    server.stop().unwrap();
}

#[test]
fn optional_client_certificates_allow_none_but_refuse_bad_ones() {
    let pki = Pki::new("optional");
    let (server, addr) = start(&mtls(&pki, "optional")).unwrap();
    assert_eq!(tls_connack(addr, client_config(&pki, None)).unwrap(), ACCEPTED);
    assert_eq!(
        tls_connack(addr, client_config(&pki, Some("device-1"))).unwrap(),
        ACCEPTED
    );
    assert!(tls_connack(addr, client_config(&pki, Some("rogue"))).is_err());
    server.stop().unwrap();
}

#[test]
fn bad_material_is_one_clear_error() {
    let pki = Pki::new("bad");
    let mismatched = format!("cert = {:?}, key = {:?}", pki.p("server.pem"), pki.p("other.key"));
    let err = start(&mismatched).unwrap_err().to_string();
    assert!(err.contains("server.pem"), "{err}");
    let missing = format!("cert = {:?}, key = {:?}", pki.p("nope.pem"), pki.p("server.key"));
    let err = start(&missing).unwrap_err().to_string();
    assert!(err.contains("nope.pem") && err.contains("cannot read"), "{err}");
    let not_pem = format!("cert = {:?}, key = {:?}", pki.p("server.key"), pki.p("server.key"));
    let err = start(&not_pem).unwrap_err().to_string();
    assert!(err.contains("no certificate"), "{err}");
    let no_ca = format!("{}, client_auth = \"required\"", server_tls(&pki));
    let err = start(&no_ca).unwrap_err().to_string();
    assert!(err.contains("client_ca"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rumqttc_over_mutual_tls() {
    use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS, TlsConfiguration, Transport};
    let pki = Pki::new("rumqttc");
    let (server, addr) = start(&mtls(&pki, "required")).unwrap();
    let mut opts = MqttOptions::new("tls-client", "localhost", addr.port());
    opts.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(client_config(
        &pki,
        Some("device-1"),
    ))));
    let (client, mut events) = AsyncClient::new(opts, 10);
    client.subscribe("tls/#", QoS::AtLeastOnce).await.unwrap();
    client
        .publish("tls/hello", QoS::AtLeastOnce, false, "over tls")
        .await
        .unwrap();
    let got = tokio::time::timeout(common::TIMEOUT, async {
        loop {
            if let Event::Incoming(Packet::Publish(p)) = events.poll().await.unwrap() {
                return p;
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(got.topic, "tls/hello");
    assert_eq!(&got.payload[..], b"over tls");
    server.stop().unwrap();
}

#[test]
fn mosquitto_clients_over_mutual_tls() {
    let pki = Pki::new("mosquitto");
    let (server, addr) = start(&mtls(&pki, "required")).unwrap();
    let port = addr.port().to_string();
    let tls_args = |name: &str| {
        vec![
            "-h".to_string(),
            "localhost".to_string(),
            "-p".to_string(),
            port.clone(),
            "--cafile".to_string(),
            pki.p("ca.pem"),
            "--cert".to_string(),
            pki.p(&format!("{name}.pem")),
            "--key".to_string(),
            pki.p(&format!("{name}.key")),
        ]
    };
    let sub = Command::new("mosquitto_sub")
        .args(tls_args("device-1"))
        .args(["-t", "mtls/#", "-C", "1", "-v", "-W", "10", "-q", "1", "-i", "mtls-sub"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("mosquitto_sub is installed (apt-get install mosquitto-clients)");
    // Publish until the subscriber has seen it (it may not have subscribed yet).
    let mut sub = sub;
    let mut delivered = false;
    for _ in 0..50 {
        let status = Command::new("mosquitto_pub")
            .args(tls_args("device-1"))
            .args(["-t", "mtls/x", "-m", "secure", "-q", "1"])
            .status()
            .expect("mosquitto_pub is installed");
        assert!(status.success());
        if let Some(st) = sub.try_wait().unwrap() {
            assert!(st.success());
            delivered = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(delivered, "mosquitto_sub got nothing");
    let out = sub.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "mtls/x secure");
    // A certificate from another CA is refused.
    let rogue = Command::new("mosquitto_pub")
        .args(tls_args("rogue"))
        .args(["-t", "mtls/x", "-m", "no"])
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(!rogue.success());
    server.stop().unwrap();
}

const NOT_AUTHORIZED_V3: [u8; 4] = [0x20, 0x02, 0x00, 0x05];

#[test]
fn x509_authenticator_takes_the_identity_from_the_certificate() {
    let pki = Pki::new("x509");
    let auth = "[auth.chains.certs]\nauthenticators = [\"cert\"]\nno_match = \"deny\"\n\
                [auth.authenticators.cert]\nkind = \"x509\"\nidentity = \"cn\"\nbind_client_id = true\n";
    let (server, addr) = start_with_auth(&mtls(&pki, "optional"), "certs", auth).unwrap();
    // The certificate's CN is the client id it may use.
    assert_eq!(
        tls_connack_as(addr, client_config(&pki, Some("device-1")), "device-1").unwrap(),
        ACCEPTED
    );
    assert_eq!(
        tls_connack_as(addr, client_config(&pki, Some("device-1")), "device-2").unwrap(),
        NOT_AUTHORIZED_V3
    );
    // No certificate: the x509 authenticator ignores the client and the chain denies.
    assert_eq!(
        tls_connack_as(addr, client_config(&pki, None), "device-1").unwrap(),
        NOT_AUTHORIZED_V3
    );
    let session = server.broker.session("device-1");
    assert!(session.is_none(), "clean session ended");
    server.stop().unwrap();
}
