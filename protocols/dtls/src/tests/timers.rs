//! Timers on the simulated clock: flight retransmission and the handshake deadline.

use std::time::Duration;

use super::*;

fn server_with_deadline(deadline: Duration) -> DtlsServerConfig {
    DtlsServerConfig::new(DtlsServerOptions {
        psk: Some(psk_options()),
        handshake_timeout: deadline,
        ..Default::default()
    })
    .unwrap()
}

#[test]
fn peer_with_only_a_client_hello_is_closed_at_the_deadline() {
    let deadline = Duration::from_secs(5);
    let mut p = Pair::new(
        &server_with_deadline(deadline),
        &psk_client(IDENTITY, KEY, vec![PSK_CCM8]),
    );
    let start = p.now;
    assert_eq!(
        p.server.poll_timeout(),
        Some(start + deadline),
        "deadline armed before any datagram"
    );
    assert_eq!(p.client_to_server(), 1);
    assert_eq!(p.server_errors, vec![]);
    assert!(p.server.poll_transmit().is_some(), "HelloVerifyRequest");

    // The client goes silent. Drive the timers as a listener would.
    let mut fired = 0;
    let err = loop {
        let at = p.server.poll_timeout().expect("a timer while the handshake is pending");
        assert!(at >= p.now);
        assert!(at <= start + deadline);
        p.now = at;
        fired += 1;
        assert!(fired < 100, "timer loop does not converge");
        match p.server.handle_timeout(p.now) {
            Ok(()) => assert!(!p.server.is_closed() && p.now < start + deadline),
            Err(e) => break e,
        }
        while p.server.poll_transmit().is_some() {}
    };
    assert_eq!(err, Error::Handshake("handshake timeout".into()));
    assert_eq!(p.now, start + deadline);
    assert!(p.server.is_closed());
    assert_eq!(p.server.poll_timeout(), None);
    assert_eq!(p.server.handle_timeout(p.now + deadline), Ok(()));
}

#[test]
fn handshake_completes_within_the_deadline_and_disarms_it() {
    let cfg = server_with_deadline(Duration::from_secs(5));
    let mut p = Pair::established(&cfg, &psk_client(IDENTITY, KEY, vec![PSK_CCM8]));
    assert_eq!(p.server.poll_timeout(), None);
    assert_eq!(p.server.handle_timeout(p.now + Duration::from_secs(60)), Ok(()));
    assert!(p.server.is_established());
    assert!(p.roundtrip(b"late", b"fine"));
}

#[test]
fn server_flight_is_retransmitted_after_the_flight_interval() {
    let mut p = Pair::new(
        &server_with_deadline(Duration::from_secs(30)),
        &psk_client(IDENTITY, KEY, vec![PSK_CCM8]),
    );
    // ClientHello → HelloVerifyRequest → ClientHello with cookie → ServerHello flight.
    p.client_to_server();
    p.server_to_client();
    p.client_to_server();
    let flight: Vec<Vec<u8>> = std::iter::from_fn(|| p.server.poll_transmit()).collect();
    assert!(!flight.is_empty());
    let at = p.server.poll_timeout().unwrap();
    assert_eq!(at, p.now + Duration::from_secs(1), "fixed 1 s flight interval");
    p.server.handle_timeout(at - Duration::from_millis(1)).unwrap();
    assert_eq!(p.server.poll_transmit(), None, "nothing before the timer");
    p.now = at;
    p.server.handle_timeout(at).unwrap();
    let again: Vec<Vec<u8>> = std::iter::from_fn(|| p.server.poll_transmit()).collect();
    assert_eq!(again.len(), flight.len(), "the whole flight again");
    // The client, which lost the first copy, completes from the retransmission.
    for d in &again {
        p.client_read(d);
    }
    p.drive();
    assert!(p.server.is_established() && p.client_established);
}
