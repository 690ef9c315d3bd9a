//! Hostile input: random datagrams into fresh and established peers, and the spoofed records
//! that end or stall a session in bare rtc-dtls 0.21.1 (see the crate doc). The `raw_*` checks
//! show each flaw is still there in rtc-dtls; when one starts failing after an upgrade, the
//! matching guard in the wrapper may be removable.

use super::*;

/// A peer's state must match what `handle_datagram` said.
fn check_outcome(peer: &DtlsPeer, r: &Result<(), Error>, what: &str) {
    match r {
        Ok(()) | Err(Error::Dropped(_)) => {}
        Err(e) => assert!(peer.is_closed(), "{what}: {e} but the peer is not closed"),
    }
}

#[test]
fn random_datagrams_into_fresh_peers() {
    let cfg = psk_server(vec![]);
    let mut rng = Rng(0x0123_4567_89ab_cdef);
    let mut now = Instant::now();
    // One peer that sees every datagram (state accumulates), plus a fresh peer per datagram.
    let mut one = DtlsPeer::new(&cfg, CLIENT, now).unwrap();
    let (mut ok, mut dropped, mut failed) = (0, 0, 0);
    for i in 0..10_000 {
        let d = rng.datagram(i % 2 == 1);
        let mut fresh = DtlsPeer::new(&cfg, CLIENT, now).unwrap();
        let r = fresh.handle_datagram(now, &d);
        check_outcome(&fresh, &r, "fresh");
        match r {
            Ok(()) => ok += 1,
            Err(Error::Dropped(_)) => dropped += 1,
            Err(_) => failed += 1,
        }
        assert!(!fresh.is_established());
        while fresh.poll_transmit().is_some() {}
        assert_eq!(fresh.poll_app_data(), None);

        let r = one.handle_datagram(now, &d);
        check_outcome(&one, &r, "accumulating");
        if i % 100 == 0 {
            now += std::time::Duration::from_millis(300);
            let r = one.handle_timeout(now);
            check_outcome(&one, &r, "accumulating timeout");
        }
        while one.poll_transmit().is_some() {}
        assert_eq!(one.poll_app_data(), None);
        assert!(!one.is_established());
    }
    // The generator reaches past the framing check and into the handshake.
    assert!(
        ok > 1000 && dropped > 1000 && failed > 100,
        "ok {ok}, dropped {dropped}, failed {failed}"
    );
}

/// 10k random datagrams, half of them epoch-1 records with fresh sequence numbers as an
/// off-path spoofer would send, must neither end the session nor produce output.
fn random_datagrams_into_established(scfg: &DtlsServerConfig, ccfg: &Arc<HandshakeConfig>, seed: u64) {
    let mut p = Pair::established(scfg, ccfg);
    let mut rng = Rng(seed);
    for i in 0..10_000usize {
        let mut d = rng.datagram(i % 4 != 0);
        if d.len() > 13 && i % 2 == 0 {
            d[0] = [21u8, 22, 23][i % 3];
            d[3] = 0;
            d[4] = 1;
            d[5..11].copy_from_slice(&(1000 + i as u64).to_be_bytes()[2..]);
        }
        let r = p.server.handle_datagram(p.now, &d);
        assert!(
            matches!(r, Ok(()) | Err(Error::Dropped(_))),
            "datagram #{i} {d:02x?}: {r:?}"
        );
        assert_eq!(p.server.poll_transmit(), None, "datagram #{i} was answered");
        assert_eq!(p.server.poll_app_data(), None, "datagram #{i} was accepted as data");
        assert!(p.server.is_established());
    }
    assert!(p.roundtrip(b"still", b"alive"));
}

#[test]
fn random_datagrams_into_established_psk_peer() {
    random_datagrams_into_established(
        &psk_server(vec![]),
        &psk_client(IDENTITY, KEY, vec![PSK_CCM8]),
        0xfeed_0001,
    );
}

#[test]
fn random_datagrams_into_established_cert_peer() {
    let pki = pki();
    let scfg = DtlsServerConfig::certificate(
        pki.server.chain.clone(),
        pki.server.key.clone(),
        Some(vec![pki.ca.clone()]),
        true,
    )
    .unwrap();
    random_datagrams_into_established(&scfg, &cert_client(Some(&pki.client), vec![ECDSA_CCM8]), 0xfeed_0002);
}

#[test]
fn spoofed_change_cipher_spec_does_not_kill_the_session() {
    let spoof = record(20, 1, 4242, &[1]);
    let cfg = psk_server(vec![]);
    let ccfg = psk_client(IDENTITY, KEY, vec![PSK_CCM8]);

    let mut p = Pair::established(&cfg, &ccfg);
    assert!(matches!(
        p.server.handle_datagram(p.now, &spoof),
        Err(Error::Dropped(_))
    ));
    assert_eq!(p.server.poll_transmit(), None);
    assert!(p.roundtrip(b"after", b"ccs"));

    // Bare rtc-dtls: the spoofed record moves the expected epoch to 2 and genuine records die.
    let mut p = Pair::established(&cfg, &ccfg);
    let mut raw =
        std::mem::replace(&mut p.server, DtlsPeer::new(&cfg, CLIENT, p.now).unwrap()).into_raw_endpoint_for_tests();
    let _ = raw.read(p.now, CLIENT, None, spoof.as_slice().into());
    p.client.write(p.now, SERVER, b"lost").unwrap();
    let t = p.client.poll_transmit().unwrap();
    let events = raw.read(p.now, CLIENT, None, t.message).unwrap();
    assert!(
        !events.iter().any(|e| matches!(e, EndpointEvent::ApplicationData(_))),
        "flaw fixed upstream?"
    );
}

#[test]
fn undecryptable_record_does_not_kill_a_psk_session() {
    let forged = record(23, 1, 4242, &[0x55; 40]);
    let cfg = psk_server(vec![]);
    let ccfg = psk_client(IDENTITY, KEY, vec![PSK_CCM8]);

    let mut p = Pair::established(&cfg, &ccfg);
    for _ in 0..3 {
        assert!(matches!(
            p.server.handle_datagram(p.now, &forged),
            Err(Error::Dropped(_))
        ));
        assert_eq!(p.server.poll_transmit(), None, "no alert goes out");
        assert!(p.server.is_established());
    }
    // A forged encrypted alert is dropped the same way.
    assert!(matches!(
        p.server.handle_datagram(p.now, &record(21, 1, 4243, &[0x55; 26])),
        Err(Error::Dropped(_))
    ));
    assert!(p.roundtrip(b"after", b"forgery"));

    // Bare rtc-dtls: a fatal alert and the session is over.
    let p = Pair::established(&cfg, &ccfg);
    let mut raw = p.server.into_raw_endpoint_for_tests();
    assert!(
        raw.read(p.now, CLIENT, None, forged.as_slice().into()).is_err(),
        "flaw fixed upstream?"
    );
}

/// A spoofed epoch-0 ClientKeyExchange with message sequence `seq`.
fn spoofed_handshake(seq: u16) -> Vec<u8> {
    let body = [0x42u8; 100];
    let mut hs = vec![16];
    hs.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    hs.extend_from_slice(&seq.to_be_bytes());
    hs.extend_from_slice(&[0, 0, 0]);
    hs.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    hs.extend_from_slice(&body);
    record(22, 0, 100 + u64::from(seq), &hs)
}

#[test]
fn spoofed_epoch0_handshake_records_are_not_answered() {
    let cfg = psk_server(vec![]);
    let ccfg = psk_client(IDENTITY, KEY, vec![PSK_CCM8]);

    let mut p = Pair::established(&cfg, &ccfg);
    for seq in 0..100 {
        assert!(matches!(
            p.server.handle_datagram(p.now, &spoofed_handshake(seq)),
            Err(Error::Dropped(_))
        ));
        assert_eq!(p.server.poll_transmit(), None, "spoofed record #{seq} was answered");
    }
    assert!(p.roundtrip(b"after", b"bomb"));

    // Bare rtc-dtls resends its last flight to whoever claims the client's address.
    let p = Pair::established(&cfg, &ccfg);
    let mut raw = p.server.into_raw_endpoint_for_tests();
    let _ = raw.read(p.now, CLIENT, None, spoofed_handshake(7).as_slice().into());
    assert!(raw.poll_transmit().is_some(), "flaw fixed upstream?");
}

/// RFC 6347 §4.2.4: the server's last flight is lost; the client repeats its own on timeout and
/// the server must send its flight again — even after spoofed epoch-0 records arrived meanwhile.
fn lost_last_flight_is_recovered(scfg: &DtlsServerConfig, ccfg: &Arc<HandshakeConfig>) {
    let mut p = Pair::new(scfg, ccfg);
    for _ in 0..20 {
        p.client_to_server();
        if p.server.is_established() {
            break;
        }
        p.server_to_client();
    }
    assert!(p.server.is_established());
    let mut lost = 0;
    while p.server.poll_transmit().is_some() {
        lost += 1;
    }
    assert!(lost > 0);
    assert!(!p.client_established);

    for seq in 0..20 {
        let _ = p.server.handle_datagram(p.now, &spoofed_handshake(seq));
        assert_eq!(p.server.poll_transmit(), None);
    }

    p.now = p.client.poll_timeout(&SERVER).expect("client waits for our flight");
    p.client.handle_timeout(SERVER, p.now).unwrap();
    assert!(p.client_to_server() > 0);
    assert!(p.server_to_client() > 0, "server must resend its last flight");
    assert!(p.client_established, "client: {:?}", p.client_error);
    assert!(p.roundtrip(b"recovered", b"yes"));
}

#[test]
fn lost_last_flight_is_recovered_psk() {
    lost_last_flight_is_recovered(&psk_server(vec![]), &psk_client(IDENTITY, KEY, vec![PSK_CCM8]));
}

#[test]
fn lost_last_flight_is_recovered_cert() {
    let pki = pki();
    let scfg = DtlsServerConfig::certificate(
        pki.server.chain.clone(),
        pki.server.key.clone(),
        Some(vec![pki.ca.clone()]),
        true,
    )
    .unwrap();
    lost_last_flight_is_recovered(&scfg, &cert_client(Some(&pki.client), vec![ECDSA_CCM8]));
}

/// Frames datagrams as a [`crate::fuzzing::server_script`] script, with a clock step after each.
fn script(datagrams: &[Vec<u8>], step: u8) -> Vec<u8> {
    let mut s = Vec::new();
    for d in datagrams {
        s.push(0);
        s.extend_from_slice(&u16::try_from(d.len()).unwrap().to_be_bytes());
        s.extend_from_slice(d);
        s.push(0x80 | step);
    }
    s
}

#[test]
fn fuzz_driver_runs_genuine_and_random_scripts() {
    // A genuine ClientHello, repeated (as after a lost HelloVerifyRequest), then silence.
    let mut client = Endpoint::new(CLIENT, TransportProtocol::UDP, None);
    client
        .connect(
            Instant::now(),
            SERVER,
            psk_client(b"fuzz", b"0123456789abcdef", vec![PSK_CCM8]),
            None,
        )
        .unwrap();
    let hello = client.poll_transmit().unwrap().message.to_vec();
    crate::fuzzing::server_script(&script(&[hello.clone(), hello.clone()], 5));
    crate::fuzzing::server_script(&script(std::slice::from_ref(&hello), 0));

    let mut rng = Rng(0xf022_0001);
    for i in 0..300 {
        let mut dgrams: Vec<Vec<u8>> = (0..rng.below(6)).map(|j| rng.datagram((i + j) % 3 != 0)).collect();
        if i % 2 == 0 {
            dgrams.insert(0, hello.clone());
        }
        crate::fuzzing::server_script(&script(&dgrams, rng.below(20) as u8));
    }
    // Truncated and odd scripts.
    for s in [&[][..], &[0], &[0, 0], &[0, 0xff, 0xff, 1], &[0xff; 40]] {
        crate::fuzzing::server_script(s);
    }
}

#[test]
fn protected_records_before_the_handshake_are_capped() {
    // rtc-dtls would queue all of these, unbounded, until the handshake deadline.
    let mut p = Pair::new(&psk_server(vec![]), &psk_client(IDENTITY, KEY, vec![PSK_CCM8]));
    p.client_to_server();
    let (mut passed, mut dropped) = (0, 0);
    for seq in 0..1000 {
        match p.server.handle_datagram(p.now, &record(23, 1, seq, &[0x55; 1000])) {
            Ok(()) => passed += 1,
            Err(Error::Dropped(_)) => dropped += 1,
            Err(e) => panic!("record #{seq}: {e}"),
        }
    }
    assert_eq!((passed, dropped), (4, 996));
    // Epoch-0 records still get through: the handshake goes on.
    p.server_to_client();
    p.client_to_server();
    assert!(p.server.poll_transmit().is_some(), "ServerHello flight");
    assert!(!p.server.is_closed());
}
