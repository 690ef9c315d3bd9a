//! Certificate handshakes (ECDHE-ECDSA): required, optional and untrusted client certificates,
//! the verification callback, and PSK plus certificates on one listener.

use std::sync::Mutex;

use super::*;
use crate::{CertOptions, ClientCertCallback};

fn cert_options(require: bool, ca: bool, callback: Option<ClientCertCallback>) -> CertOptions {
    let pki = pki();
    CertOptions {
        cert_chain_der: pki.server.chain.clone(),
        key_der: pki.server.key.clone(),
        client_ca_der: ca.then(|| vec![pki.ca.clone()]),
        require_client_cert: require,
        client_cert_callback: callback,
    }
}

fn cert_server(require: bool) -> DtlsServerConfig {
    let pki = pki();
    DtlsServerConfig::certificate(
        pki.server.chain.clone(),
        pki.server.key.clone(),
        Some(vec![pki.ca.clone()]),
        require,
    )
    .unwrap()
}

#[test]
fn required_and_valid_client_cert() {
    let pki = pki();
    let mut p = Pair::established(&cert_server(true), &cert_client(Some(&pki.client), vec![ECDSA_CCM8]));
    assert_eq!(p.server.peer_certificates(), Some(pki.client.chain.clone()));
    assert_eq!(p.server.psk_identity(), None);
    assert_eq!(
        p.server.cipher_suite().as_deref(),
        Some("TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8")
    );
    assert!(p.roundtrip(b"hello", b"world"));
}

#[test]
fn required_but_absent_fails() {
    let mut p = Pair::new(&cert_server(true), &cert_client(None, vec![ECDSA_CCM8]));
    p.drive();
    p.assert_failed();
}

#[test]
fn untrusted_ca_fails() {
    let mut p = Pair::new(
        &cert_server(true),
        &cert_client(Some(&pki().rogue_client), vec![ECDSA_CCM8]),
    );
    p.drive();
    p.assert_failed();
}

#[test]
fn optional_and_absent_is_established_without_certificates() {
    let mut p = Pair::established(&cert_server(false), &cert_client(None, vec![ECDSA_GCM]));
    assert_eq!(p.server.peer_certificates(), None);
    assert_eq!(
        p.server.cipher_suite().as_deref(),
        Some("TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256")
    );
    assert!(p.roundtrip(b"anonymous", b"ok"));
}

#[test]
fn callback_alone_sees_the_chain_and_can_reject() {
    // The shape the CoAP listener uses: no CA here, verification in the callback.
    let pki = pki();
    let seen: Arc<Mutex<Vec<Vec<Vec<u8>>>>> = Arc::default();
    let record = seen.clone();
    let trusted_leaf = pki.client.chain[0].clone();
    let callback: ClientCertCallback = Arc::new(move |chain: &[Vec<u8>]| {
        record.lock().unwrap().push(chain.to_vec());
        if chain.first() == Some(&trusted_leaf) {
            Ok(())
        } else {
            Err("not our device".into())
        }
    });
    let cfg = DtlsServerConfig::new(DtlsServerOptions {
        cert: Some(cert_options(true, false, Some(callback))),
        ..Default::default()
    })
    .unwrap();

    let p = Pair::established(&cfg, &cert_client(Some(&pki.client), vec![ECDSA_CCM8]));
    assert_eq!(p.server.peer_certificates(), Some(pki.client.chain.clone()));

    let mut p = Pair::new(&cfg, &cert_client(Some(&pki.rogue_client), vec![ECDSA_CCM8]));
    p.drive();
    p.assert_failed();
    // rtc-dtls may run the callback more than once per handshake; each time with the chain sent.
    let mut seen = seen.lock().unwrap().clone();
    seen.dedup();
    assert_eq!(seen, vec![pki.client.chain.clone(), pki.rogue_client.chain.clone()]);
}

#[test]
fn psk_and_certificate_on_one_config() {
    let pki = pki();
    let cfg = DtlsServerConfig::new(DtlsServerOptions {
        psk: Some(psk_options()),
        cert: Some(cert_options(true, true, None)),
        ..Default::default()
    })
    .unwrap();

    let mut p = Pair::established(&cfg, &psk_client(IDENTITY, KEY, vec![PSK_CCM8]));
    assert_eq!(p.server.psk_identity().as_deref(), Some(IDENTITY));
    assert_eq!(p.server.peer_certificates(), None);
    assert!(p.roundtrip(b"psk", b"ok"));

    let mut p = Pair::established(&cfg, &cert_client(Some(&pki.client), vec![ECDSA_CCM8]));
    assert_eq!(p.server.psk_identity(), None);
    assert_eq!(p.server.peer_certificates(), Some(pki.client.chain.clone()));
    assert!(p.roundtrip(b"cert", b"ok"));
}

#[test]
fn bad_configurations_are_refused() {
    let pki = pki();
    assert!(matches!(
        DtlsServerConfig::new(DtlsServerOptions::default()),
        Err(Error::Config(_))
    ));
    // A certificate where the PKCS#8 key should be.
    let bad_key = DtlsServerConfig::certificate(pki.server.chain.clone(), pki.server.chain[0].clone(), None, false);
    assert!(matches!(bad_key, Err(Error::Config(_))));
    let bad_ca = DtlsServerConfig::certificate(
        pki.server.chain.clone(),
        pki.server.key.clone(),
        Some(vec![vec![1, 2, 3]]),
        true,
    );
    assert!(matches!(bad_ca, Err(Error::Config(_))));
}
