//! PSK handshakes (RFC 4279): suites, identities, wrong keys, and the session lifecycle.

use super::*;

#[test]
fn ccm8_forced_by_server_carries_data_both_ways() {
    // The client prefers GCM; the server only serves CCM_8, so CCM_8 it is.
    let mut p = Pair::established(
        &psk_server(vec![PSK_CCM8]),
        &psk_client(IDENTITY, KEY, vec![PSK_GCM, PSK_CCM8]),
    );
    assert_eq!(p.server.cipher_suite().as_deref(), Some("TLS_PSK_WITH_AES_128_CCM_8"));
    assert_eq!(p.server.psk_identity().as_deref(), Some(IDENTITY));
    assert_eq!(p.server.peer_certificates(), None);
    assert!(p.roundtrip(b"\x40\x01\x12\x34", b"\x60\x45\x12\x34"));
    assert!(p.roundtrip(&[7u8; 1000], b"second"));
}

#[test]
fn gcm_carries_data_both_ways() {
    let mut p = Pair::established(&psk_server(vec![]), &psk_client(IDENTITY, KEY, vec![PSK_GCM]));
    assert_eq!(
        p.server.cipher_suite().as_deref(),
        Some("TLS_PSK_WITH_AES_128_GCM_SHA256")
    );
    assert_eq!(p.server.psk_identity().as_deref(), Some(IDENTITY));
    assert!(p.roundtrip(b"up", b"down"));
}

#[test]
fn wrong_key_fails_both_sides() {
    let mut p = Pair::new(
        &psk_server(vec![]),
        &psk_client(IDENTITY, b"not the key", vec![PSK_CCM8]),
    );
    p.drive();
    p.assert_failed();
    assert_eq!(p.server.psk_identity(), None);
    assert_eq!(p.server.send_app_data(b"x"), Err(Error::Closed("peer closed".into())));
}

#[test]
fn unknown_identity_fails() {
    let mut p = Pair::new(&psk_server(vec![]), &psk_client(b"stranger", KEY, vec![PSK_CCM8]));
    p.drive();
    p.assert_failed();
}

#[test]
fn no_common_suite_fails() {
    let mut p = Pair::new(&psk_server(vec![PSK_CCM8]), &psk_client(IDENTITY, KEY, vec![PSK_GCM]));
    p.drive();
    p.assert_failed();
}

#[test]
fn identity_hint_is_offered() {
    let cfg = DtlsServerConfig::new(DtlsServerOptions {
        psk: Some(PskOptions {
            identity_hint: Some(b"unigate".to_vec()),
            ..psk_options()
        }),
        ..Default::default()
    })
    .unwrap();
    let mut p = Pair::established(&cfg, &psk_client(IDENTITY, KEY, vec![PSK_CCM8]));
    assert_eq!(p.server.psk_identity().as_deref(), Some(IDENTITY));
    assert!(p.roundtrip(b"a", b"b"));
}

#[test]
fn send_before_handshake_is_refused() {
    let mut p = Pair::new(&psk_server(vec![]), &psk_client(IDENTITY, KEY, vec![PSK_CCM8]));
    assert_eq!(p.server.send_app_data(b"early"), Err(Error::NotEstablished));
    p.client_to_server();
    assert!(!p.server.is_established());
    assert_eq!(p.server.send_app_data(b"early"), Err(Error::NotEstablished));
    assert_eq!(p.server.psk_identity(), None);
}

#[test]
fn server_close_sends_close_notify() {
    let mut p = Pair::established(&psk_server(vec![]), &psk_client(IDENTITY, KEY, vec![PSK_CCM8]));
    p.server.close(p.now);
    assert!(p.server.is_closed());
    assert!(!p.server.is_established());
    assert_eq!(p.server_to_client(), 1);
    assert!(p.client_peer_closed);
    assert_eq!(
        p.server.send_app_data(b"late"),
        Err(Error::Closed("peer closed".into()))
    );
    assert!(matches!(
        p.server.handle_datagram(p.now, &record(23, 1, 9, b"x")),
        Err(Error::Dropped(_))
    ));
}

#[test]
fn client_close_notify_closes_the_peer() {
    let mut p = Pair::established(&psk_server(vec![]), &psk_client(IDENTITY, KEY, vec![PSK_CCM8]));
    p.client.stop(p.now, SERVER);
    p.client_to_server();
    assert_eq!(p.server_errors, vec![]);
    assert!(p.server.is_closed());
    assert_eq!(
        p.server_to_client(),
        1,
        "close_notify answered in kind (RFC 5246 §7.2.1)"
    );
    // A later datagram must not start a new association silently.
    let mut fresh = Endpoint::new(CLIENT, TransportProtocol::UDP, None);
    fresh
        .connect(p.now, SERVER, psk_client(IDENTITY, KEY, vec![PSK_CCM8]), None)
        .unwrap();
    let hello = fresh.poll_transmit().unwrap();
    assert!(matches!(
        p.server.handle_datagram(p.now, &hello.message),
        Err(Error::Dropped(_))
    ));
    assert_eq!(p.server.poll_transmit(), None);
}
