//! Lost, late and repeated datagrams between libcoap and the gateway, through a UDP proxy in
//! the test: retransmission on both sides, duplicate detection, block-wise recovery.

use std::sync::atomic::Ordering;
use std::time::Duration;

use unigate_coap::coap_lite::{MessageType, Packet as CoapPacket};

use crate::util::*;

fn kind(d: &[u8]) -> Option<MessageType> {
    CoapPacket::from_bytes(d).ok().map(|p| p.header.get_type())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_notification_is_sent_again() {
    // The server retransmits quickly here; libcoap keeps its defaults.
    let s = server("[coap]\nack_timeout = \"200ms\"\n");
    let mqtt = Mqtt::connect(&s, "pub").await;
    let seen_con = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = seen_con.clone();
    // Drop the first CON notification on its way down: the server must send it again. (A lost
    // ACK is tested with the raw client: libcoap 4.3.1 does not acknowledge a repeated
    // notification again, so the server would rightly give the observer up.)
    let proxy = Proxy::start(s.listener("coap"), move |dir, _, d| match (dir, kind(d)) {
        (Dir::Down, Some(MessageType::Confirmable)) if counter.fetch_add(1, Ordering::SeqCst) == 0 => Fate::Drop,
        _ => Fate::Pass,
    })
    .await;
    let target = format!("coap://{}/ps/lossy/down", proxy.addr);
    let mut obs = coap_client_bg(&["-m", "get", "-s", "30", "-w", &target]);
    wait_until("observation registered", || {
        s.broker().metrics.coap_observations.load(Ordering::Relaxed) == 1
    })
    .await;
    mqtt.publish("lossy/down", q(1), false, "repaired").await;
    obs.wait_for_line("repaired");
    assert_eq!(seen_con.load(Ordering::SeqCst), 2, "sent twice");
    // Acknowledged; the next message flows.
    mqtt.publish("lossy/down", q(1), false, "next").await;
    let line = obs.wait_for_line("next");
    assert!(!line.contains("repaired"));
    assert_eq!(s.broker().metrics.coap_con_timeouts.load(Ordering::Relaxed), 0);
    assert_eq!(s.broker().metrics.coap_observations.load(Ordering::Relaxed), 1);
    obs.kill();
    s.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn block_wise_upload_survives_a_lost_block_and_a_late_answer() {
    let s = server("");
    let mut sub = Mqtt::connect(&s, "sub").await;
    sub.subscribe("fw/up", q(1)).await;
    // Block 3 is lost once (libcoap resends it after ACK_TIMEOUT); the answer to block 5 is
    // held back 2.5 s, so libcoap repeats block 5 and gets the same answer from the
    // duplicate detection, then the late one too.
    let proxy = Proxy::start(s.listener("coap"), |dir, i, _| match (dir, i) {
        (Dir::Up, 3) => Fate::Drop,
        (Dir::Down, 4) => Fate::Delay(Duration::from_millis(2500)),
        _ => Fate::Pass,
    })
    .await;
    let body: String = (0..3000).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
    let dir = tempfile::Builder::new().prefix("unigate-coap-loss-").tempdir().unwrap();
    let file = dir.path().join("fw.bin");
    std::fs::write(&file, &body).unwrap();
    let target = format!("coap://{}/ps/fw/up", proxy.addr);
    // coap-client prints an error response (e.g. 4.08 Request Entity Incomplete) on stdout;
    // a 2.04 without payload prints nothing.
    let out = coap_client(&["-m", "post", "-b", "256", "-f", file.to_str().unwrap(), &target]);
    assert!(out.iter().all(|l| l.trim().is_empty()), "coap-client got {out:?}");
    let p = sub.recv().await;
    assert_eq!(&p.payload[..], body.as_bytes(), "reassembled exactly once");
    sub.assert_silent().await;
    s.stop();
}
