//! CoAP over DTLS with libcoap's OpenSSL client: pre-shared keys looked up in the listener's
//! auth chain, certificates verified like MQTT's (CA, CRL), and failed handshakes that publish
//! nothing.

use std::sync::atomic::Ordering;

use crate::common::pki::Pki;
use crate::util::*;

/// A psk authenticator whose table holds `dev1` with the key `secretkey` (as libcoap's `-k`
/// sends it: the ASCII bytes), and a server whose CoAP listener speaks DTLS with it. The ACL
/// lets only the user name `dev1` (the PSK identity) and the MQTT client `sub` use `dtls/#`.
fn psk_server(name: &str) -> (TestServer, std::path::PathBuf) {
    let (dir, file) = crate::common::psk_file(&format!("coaps-{name}"), "dev1", b"secretkey");
    let s = server_with(
        &format!(
            "[auth.chains.devices]\nauthenticators = [\"keys\"]\nno_match = \"deny\"\n\
             [auth.authenticators.keys]\nkind = \"psk\"\nfile = {:?}\n\
             [acl]\nno_match = \"deny\"\n\
             [[acl.rules]]\npermission = \"allow\"\nwho = {{ username = \"dev1\" }}\naction = \"all\"\ntopics = [\"dtls/#\"]\n\
             [[acl.rules]]\npermission = \"allow\"\nwho = {{ clientid = \"sub\" }}\naction = \"all\"\ntopics = [\"dtls/#\"]\n",
            file.display().to_string()
        ),
        "auth = \"devices\"\ntls = { psk = true }",
    );
    (s, dir)
}

fn coaps(s: &TestServer, path: &str) -> String {
    format!("coaps://127.0.0.1:{}{}", s.listener("coap").port(), path)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psk_publish_and_observe_with_the_identity_as_user_name() {
    let (s, dir) = psk_server("ok");
    let mut sub = Mqtt::connect(&s, "sub").await;
    sub.subscribe("dtls/#", q(1)).await;
    coap_client(&[
        "-u",
        "dev1",
        "-k",
        "secretkey",
        "-m",
        "post",
        "-e",
        "sealed",
        &coaps(&s, "/ps/dtls/t"),
    ]);
    let p = sub.recv().await;
    assert_eq!((p.topic.as_str(), &p.payload[..]), ("dtls/t", &b"sealed"[..]));

    // An observer over DTLS gets MQTT messages.
    let mut obs = coap_client_bg(&[
        "-u",
        "dev1",
        "-k",
        "secretkey",
        "-m",
        "get",
        "-s",
        "30",
        "-w",
        &coaps(&s, "/ps/dtls/down"),
    ]);
    wait_until("observation registered", || {
        s.broker().metrics.coap_observations.load(Ordering::Relaxed) == 1
    })
    .await;
    sub.publish("dtls/down", q(1), false, "to-device").await;
    obs.wait_for_line("to-device");
    obs.kill();
    let _ = std::fs::remove_dir_all(&dir);
    s.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_key_or_unknown_identity_fails_the_handshake_and_publishes_nothing() {
    let (s, dir) = psk_server("bad");
    let mut sub = Mqtt::connect(&s, "sub").await;
    sub.subscribe("dtls/#", q(1)).await;
    coap_client(&[
        "-B",
        "3",
        "-u",
        "dev1",
        "-k",
        "wrongkey",
        "-m",
        "post",
        "-e",
        "x",
        &coaps(&s, "/ps/dtls/t"),
    ]);
    coap_client(&[
        "-B",
        "3",
        "-u",
        "nobody",
        "-k",
        "secretkey",
        "-m",
        "post",
        "-e",
        "x",
        &coaps(&s, "/ps/dtls/t"),
    ]);
    // Plain CoAP to the DTLS port is not CoAP to us.
    coap_client(&["-B", "1", "-m", "post", "-e", "x", &uri(&s, "/ps/dtls/t")]);
    sub.assert_silent().await;
    assert_eq!(s.broker().metrics.coap_requests.load(Ordering::Relaxed), 0);
    let _ = std::fs::remove_dir_all(&dir);
    s.stop();
}

fn cert_server(pki: &Pki, client_auth: &str) -> TestServer {
    server_with(
        "[auth.chains.certs]\nauthenticators = [\"x509\"]\nno_match = \"deny\"\n\
         [auth.authenticators.x509]\nkind = \"x509\"\n",
        &format!(
            "auth = \"certs\"\ntls = {{ cert = {:?}, key = {:?}, client_ca = {:?}, client_auth = \"{client_auth}\", crl = [{:?}] }}",
            pki.p("server.pem"),
            pki.p("server.key"),
            pki.p("ca.pem"),
            pki.p("ca.crl")
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificates_are_verified_with_the_crl() {
    let pki = Pki::new("coaps-cert");
    let s = cert_server(&pki, "required");
    let mut sub = Mqtt::connect(&s, "sub").await;
    sub.subscribe("certs/#", q(1)).await;
    let with = |cn: &str, body: &str| {
        coap_client(&[
            "-B",
            "3",
            "-c",
            &pki.p(&format!("{cn}.pem")),
            "-j",
            &pki.p(&format!("{cn}.key")),
            "-R",
            &pki.p("ca.pem"),
            "-m",
            "post",
            "-e",
            body,
            &coaps(&s, "/ps/certs/up"),
        ]);
    };
    with("device-1", "from-device-1");
    let p = sub.recv().await;
    assert_eq!(&p.payload[..], b"from-device-1");
    for bad in ["rogue", "revoked", "expired"] {
        with(bad, bad);
    }
    sub.assert_silent().await;
    s.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_mode_session_outlives_its_dtls_association_and_port() {
    // No Connection ID in any Rust DTLS stack: a device whose NAT port changes handshakes again.
    // Its connection-mode session (client id + token) survives that; every libcoap run below is
    // a new process, so a new source port and a new DTLS association.
    let (s, dir) = psk_server("rebind");
    let mut sub = Mqtt::connect(&s, "sub").await;
    let psk = ["-u", "dev1", "-k", "secretkey"];
    let out = coap_client(
        &[
            &psk[..],
            &["-m", "post", "-e", "", &coaps(&s, "/mqtt/connection?clientid=nb7")],
        ]
        .concat(),
    );
    let token = out
        .iter()
        .map(|l| l.trim())
        .find(|l| !l.is_empty())
        .expect("token")
        .to_string();

    let observe_path = coaps(&s, &format!("/ps/dtls/nb7/cmd?c=nb7&t={token}"));
    let mut first = coap_client_bg(&[&psk[..], &["-m", "get", "-s", "30", "-w", &observe_path]].concat());
    wait_until("observation registered", || {
        s.broker().metrics.coap_observations.load(Ordering::Relaxed) == 1
    })
    .await;
    sub.publish("dtls/nb7/cmd", q(1), false, "cmd-1").await;
    first.wait_for_line("cmd-1");
    first.kill();

    // From a new port and association: a heartbeat with the token moves the session.
    coap_client(
        &[
            &psk[..],
            &[
                "-m",
                "put",
                "-e",
                "",
                &coaps(&s, &format!("/mqtt/connection?c=nb7&t={token}")),
            ],
        ]
        .concat(),
    );
    assert_eq!(
        s.broker().metrics.coap_clients.load(Ordering::Relaxed),
        1,
        "still one session"
    );
    // And publishing with the token from yet another one works as the same client.
    sub.subscribe("dtls/nb7/up", q(1)).await;
    coap_client(
        &[
            &psk[..],
            &[
                "-m",
                "post",
                "-e",
                "up-1",
                &coaps(&s, &format!("/ps/dtls/nb7/up?c=nb7&t={token}")),
            ],
        ]
        .concat(),
    );
    assert_eq!(&sub.recv().await.payload[..], b"up-1");
    let _ = std::fs::remove_dir_all(&dir);
    s.stop();
}
