//! The gateway driven by hand-built datagrams: answers to bad input, duplicates, observation
//! cancellation, NAT rebinding in connection mode, authentication and the ACL.

use std::sync::atomic::Ordering;

use unigate_auth::password::PasswordStore;
use unigate_auth::Secret;
use unigate_coap::coap_lite::{CoapOption, MessageType, RequestType};

use crate::util::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_coap_errors_and_the_server_carries_on() {
    let s = server("");
    let mut c = RawCoap::new(&s).await;
    assert_eq!(code(&c.call(RequestType::Get, "nothing/here", b"").await), "4.04");
    assert_eq!(code(&c.call(RequestType::Get, "ps", b"").await), "4.00");
    assert_eq!(code(&c.call(RequestType::Post, "ps/a/+", b"x").await), "4.00");
    assert_eq!(code(&c.call(RequestType::Post, "ps/a?qos=7", b"x").await), "4.00");
    assert_eq!(code(&c.call(RequestType::Get, "ps/no/retained", b"").await), "4.04");
    assert_eq!(code(&c.call(RequestType::Get, "ps/a/#", b"").await), "4.00");
    assert_eq!(code(&c.call(RequestType::Delete, "ps/a", b"").await), "4.05");

    // An unknown critical option (odd number): 4.02 Bad Option.
    let mut p = c.request(RequestType::Post, MessageType::Confirmable, "ps/a", b"t", b"x");
    p.add_option(CoapOption::Unknown(2049), b"?".to_vec());
    c.send(&p).await;
    let r = c.recv().await;
    assert_eq!(
        (code(&r), r.header.message_id),
        ("4.02".to_string(), p.header.message_id)
    );

    // Garbage: a CON header with a token length of 9 is a format error, answered with RST;
    // shorter junk is dropped.
    c.send_bytes(&[0x49, 0x01, 0x12, 0x34, 1, 2, 3, 4, 5, 6, 7, 8, 9]).await;
    let r = c.recv().await;
    assert_eq!((r.header.get_type(), r.header.message_id), (MessageType::Reset, 0x1234));
    c.send_bytes(&[0xff]).await;
    c.send_bytes(&[]).await;
    c.assert_silent().await;

    // Discovery.
    let r = c.call(RequestType::Get, ".well-known/core", b"").await;
    assert_eq!(code(&r), "2.05");
    assert!(String::from_utf8_lossy(&r.payload).contains("</ps>"));
    // Still serving.
    assert_eq!(code(&c.call(RequestType::Post, "ps/a", b"x").await), "2.04");
    s.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicate_con_is_answered_again_and_published_once() {
    let s = server("");
    let mut sub = Mqtt::connect(&s, "sub").await;
    sub.subscribe("dup", q(1)).await;
    let mut c = RawCoap::new(&s).await;
    let p = c.request(RequestType::Post, MessageType::Confirmable, "ps/dup", b"tk", b"one");
    c.send(&p).await;
    let first = c.recv().await;
    c.send(&p).await;
    let second = c.recv().await;
    assert_eq!(
        first.to_bytes().unwrap(),
        second.to_bytes().unwrap(),
        "the same ACK replayed"
    );
    assert_eq!(&sub.recv().await.payload[..], b"one");
    sub.assert_silent().await;
    s.stop();
}

/// Registers an observation from `c` and returns its token; checks the 2.05 with Observe.
async fn observe(c: &mut RawCoap, path: &str, token: &[u8]) {
    let mut p = c.request(RequestType::Get, MessageType::Confirmable, path, token, b"");
    p.set_observe_value(0);
    c.send(&p).await;
    let r = c.recv().await;
    assert_eq!(code(&r), "2.05");
    assert!(r.get_observe_value().is_some(), "registration answered with Observe");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rst_and_deregistration_end_observations() {
    let s = server("");
    let obs = || s.broker().metrics.coap_observations.load(Ordering::Relaxed);
    let mqtt = Mqtt::connect(&s, "pub").await;
    let mut c = RawCoap::new(&s).await;
    observe(&mut c, "ps/a/+", b"o1").await;
    assert_eq!(obs(), 1);

    mqtt.publish("a/x", q(1), false, "n1").await;
    let n = c.recv().await;
    assert_eq!(
        n.header.get_type(),
        MessageType::Confirmable,
        "QoS 1: a CON notification"
    );
    assert_eq!(n.get_token(), b"o1");
    assert_eq!(&n.payload[..], b"n1");
    let paths: Vec<String> = n
        .get_option(CoapOption::LocationPath)
        .map(|l| l.iter().map(|v| String::from_utf8_lossy(v).into_owned()).collect())
        .unwrap_or_default();
    assert_eq!(paths, ["ps", "a", "x"], "a wildcard notification names its topic");
    // RST: the observer is gone (RFC 7641 §3.6).
    c.send(&empty(MessageType::Reset, n.header.message_id)).await;
    wait_until("observation removed by RST", || obs() == 0).await;
    assert_eq!(s.broker().metrics.coap_observe_cancelled[1].load(Ordering::Relaxed), 1);
    mqtt.publish("a/x", q(1), false, "n2").await;
    c.assert_silent().await;

    // Observe 1 deregisters (RFC 7641 §3.6).
    observe(&mut c, "ps/b", b"o2").await;
    let mut p = c.request(RequestType::Get, MessageType::Confirmable, "ps/b", b"o2", b"");
    p.set_observe_value(1);
    c.send(&p).await;
    assert_eq!(code(&c.recv().await), "2.05");
    assert_eq!(obs(), 0);
    assert_eq!(s.broker().metrics.coap_observe_cancelled[0].load(Ordering::Relaxed), 1);
    s.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qos0_notifications_are_non_and_acked_con_ones_keep_flowing() {
    let s = server("");
    let mqtt = Mqtt::connect(&s, "pub").await;
    let mut c = RawCoap::new(&s).await;
    observe(&mut c, "ps/n", b"o").await;
    mqtt.publish("n", q(0), false, "zero").await;
    let n = c.recv().await;
    assert_eq!(
        (n.header.get_type(), &n.payload[..]),
        (MessageType::NonConfirmable, &b"zero"[..])
    );
    assert!(
        n.get_option(CoapOption::LocationPath).is_none(),
        "exact filter: no topic"
    );
    let mut last = n.get_observe_value().unwrap().unwrap();
    for i in 0..5 {
        mqtt.publish("n", q(1), false, format!("m{i}")).await;
        let n = c.recv().await;
        assert_eq!(n.header.get_type(), MessageType::Confirmable);
        assert_eq!(n.payload, format!("m{i}").into_bytes(), "in order, one CON at a time");
        let seq = n.get_observe_value().unwrap().unwrap();
        assert!(seq > last, "Observe numbers rise");
        last = seq;
        c.send(&empty(MessageType::Acknowledgement, n.header.message_id)).await;
    }
    s.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_mode_client_keeps_its_session_when_its_port_changes() {
    let s = server("[coap]\nack_timeout = \"200ms\"\nmax_retransmit = 1\n");
    let mqtt = Mqtt::connect(&s, "pub").await;
    let mut a = RawCoap::new(&s).await;
    let r = a.call(RequestType::Post, "mqtt/connection?clientid=nb1", b"").await;
    assert_eq!(code(&r), "2.01");
    let token = String::from_utf8(r.payload.clone()).unwrap();
    observe(&mut a, &format!("ps/cmd/nb1?c=nb1&t={token}"), b"ob").await;

    // The NAT mapping changes: the device now sends from another port. Its first request
    // (a heartbeat) moves the session; notifications follow it.
    let mut b = RawCoap::new(&s).await;
    let r = b
        .call(RequestType::Put, &format!("mqtt/connection?c=nb1&t={token}"), b"")
        .await;
    assert_eq!(code(&r), "2.04");
    mqtt.publish("cmd/nb1", q(1), false, "reboot").await;
    let n = b.recv().await;
    assert_eq!((&n.payload[..], n.get_token()), (&b"reboot"[..], &b"ob"[..]));

    // Unacknowledged, the notification times out; the client stays (connection mode) and the
    // message is sent again once the device is heard of.
    let mut c2 = RawCoap::new(&s).await;
    wait_until("retransmissions exhausted", || {
        s.broker().metrics.coap_con_timeouts.load(Ordering::Relaxed) == 1
    })
    .await;
    assert_eq!(
        s.broker().metrics.coap_clients.load(Ordering::Relaxed),
        1,
        "the client stays"
    );
    let r = c2
        .call(RequestType::Put, &format!("mqtt/connection?c=nb1&t={token}"), b"")
        .await;
    assert_eq!(code(&r), "2.04");
    let n = c2.recv().await;
    assert_eq!(&n.payload[..], b"reboot", "held message delivered at the new address");
    s.stop();
}

fn password_setup(name: &str) -> (std::path::PathBuf, String) {
    let dir = std::env::temp_dir().join(format!("unigate-coap-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("passwd.toml");
    let mut store = PasswordStore::new(&file);
    store.add("dev", &Secret::new("s3cret")).unwrap();
    store.save().unwrap();
    let toml = format!(
        "[auth.chains.users]\nauthenticators = [\"pw\"]\nno_match = \"deny\"\n\
         [auth.authenticators.pw]\nkind = \"password\"\nfile = {:?}\n\
         [acl]\nno_match = \"deny\"\n\
         [[acl.rules]]\npermission = \"allow\"\nwho = \"all\"\naction = \"all\"\ntopics = [\"dev/${{username}}/#\"]\n",
        file.display().to_string()
    );
    (dir, toml)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_in_the_query_and_the_acl() {
    let (dir, toml) = password_setup("acl");
    let s = server_with(&toml, "auth = \"users\"");
    let mut c = RawCoap::new(&s).await;
    // No credentials, wrong password: 4.01.
    assert_eq!(code(&c.call(RequestType::Post, "ps/dev/dev/t", b"x").await), "4.01");
    assert_eq!(
        code(&c.call(RequestType::Post, "ps/dev/dev/t?u=dev&p=nope", b"x").await),
        "4.01"
    );
    // Right password: allowed where the ACL allows, 4.03 elsewhere.
    assert_eq!(
        code(&c.call(RequestType::Post, "ps/dev/dev/t?u=dev&p=s3cret", b"x").await),
        "2.04"
    );
    assert_eq!(
        code(&c.call(RequestType::Post, "ps/other/t?u=dev&p=s3cret", b"x").await),
        "4.03"
    );
    assert_eq!(
        code(&c.call(RequestType::Get, "ps/other/t?u=dev&p=s3cret", b"").await),
        "4.03"
    );
    // A connection with the wrong password is refused.
    assert_eq!(
        code(&c.call(RequestType::Post, "mqtt/connection?c=d1&u=dev&p=bad", b"").await),
        "4.01"
    );
    assert_eq!(
        code(
            &c.call(RequestType::Post, "mqtt/connection?c=d1&u=dev&p=s3cret", b"")
                .await
        ),
        "2.01"
    );
    let _ = std::fs::remove_dir_all(&dir);
    s.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rst_to_a_non_notification_ends_the_observation() {
    let s = server("");
    let obs = || s.broker().metrics.coap_observations.load(Ordering::Relaxed);
    let mqtt = Mqtt::connect(&s, "pub").await;
    let mut c = RawCoap::new(&s).await;
    observe(&mut c, "ps/non?qos=0", b"nn").await;
    mqtt.publish("non", q(1), false, "first").await;
    let n = c.recv().await;
    assert_eq!(n.header.get_type(), MessageType::NonConfirmable, "granted QoS 0: NON");
    c.send(&empty(MessageType::Reset, n.header.message_id)).await;
    wait_until("observation removed by RST", || obs() == 0).await;
    mqtt.publish("non", q(1), false, "second").await;
    c.assert_silent().await;
    s.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unacknowledged_notification_is_repeated_with_its_message_id() {
    let s = server("[coap]\nack_timeout = \"100ms\"\n");
    let mqtt = Mqtt::connect(&s, "pub").await;
    let mut c = RawCoap::new(&s).await;
    observe(&mut c, "ps/rep", b"rr").await;
    mqtt.publish("rep", q(1), false, "again").await;
    let first = c.recv().await;
    // Not acknowledged (the ACK was "lost"): the same message comes again.
    let second = c.recv().await;
    assert_eq!(first.to_bytes().unwrap(), second.to_bytes().unwrap());
    c.send(&empty(MessageType::Acknowledgement, second.header.message_id))
        .await;
    mqtt.publish("rep", q(1), false, "then").await;
    let mut n = c.recv().await;
    while n.header.message_id == first.header.message_id {
        n = c.recv().await;
    }
    assert_eq!(&n.payload[..], b"then");
    assert_eq!(s.broker().metrics.coap_con_timeouts.load(Ordering::Relaxed), 0);
    s.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversize_bodies_get_4_13_with_size1() {
    let s = server("[coap]\nmax_body = 100\n");
    let mut c = RawCoap::new(&s).await;
    let r = c.call(RequestType::Post, "ps/big", &[b'x'; 200]).await;
    assert_eq!(code(&r), "4.13");
    let size1 = r.get_first_option(CoapOption::Size1).expect("Size1");
    assert_eq!(size1.iter().fold(0u32, |a, b| a << 8 | u32::from(*b)), 100);
    assert_eq!(code(&c.call(RequestType::Post, "ps/big", &[b'x'; 100]).await), "2.04");
    s.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coap_clients_are_sessions_listed_by_the_management_api() {
    // An HTTP listener next to the CoAP one (its management API is loopback-only by default).
    let s = server_with(
        "",
        "[[listeners]]\nname = \"http\"\nprotocol = \"http\"\nbind = \"127.0.0.1:0\"",
    );
    let mut c = RawCoap::new(&s).await;
    observe(&mut c, "ps/m/+?c=meter-7", b"mm").await;
    let url = format!(
        "http://127.0.0.1:{}/api/v1/clients?protocol=coap",
        s.listener("http").port()
    );
    crate::common::proc::require("curl");
    let out = std::process::Command::new("curl")
        .args(["-sS", "--max-time", "10", &url])
        .output()
        .unwrap();
    let body: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
    let clients = body["data"].as_array().expect("a list");
    assert_eq!(clients.len(), 1, "{body}");
    let meter = &clients[0];
    assert_eq!(
        (meter["clientid"].as_str(), meter["protocol"].as_str()),
        (Some("meter-7"), Some("coap")),
        "{body}"
    );
    assert_eq!(meter["details"]["observations"][0]["filter"], "m/+", "{body}");
    s.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_swaps_the_coap_listeners_chain() {
    let (dir, toml) = password_setup("reload");
    let text = |chain_toml: &str| {
        format!(
            "workers = 2\nsys_interval = \"0s\"\n{chain_toml}\n\
             [[listeners]]\nname = \"mqtt\"\nprotocol = \"mqtt\"\nbind = \"127.0.0.1:0\"\n\
             [[listeners]]\nname = \"coap\"\nprotocol = \"coap\"\nbind = \"127.0.0.1:0\"\nauth = \"users\"\n\
             [[listeners]]\nname = \"http\"\nprotocol = \"http\"\nbind = \"127.0.0.1:0\"\n"
        )
    };
    let path = dir.join("unigate.toml");
    std::fs::write(&path, text(&toml)).unwrap();
    let config = unigate::config::Config::load(&path, Vec::new()).unwrap();
    let opts = unigate::server::StartOptions {
        handle_signals: false,
        config_path: Some(path.clone()),
    };
    let running = unigate::server::start(config, [127, 0, 0, 1].into(), opts).unwrap();
    let coap = running.addr("coap").unwrap();
    let http = running.addr("http").unwrap();
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut c = RawCoap {
        sock,
        server: coap,
        next_mid: 1,
    };
    assert_eq!(
        code(&c.call(RequestType::Post, "ps/dev/dev/t?u=dev&p=s3cret", b"x").await),
        "2.04"
    );
    // The password authenticator leaves the chain; a reload through the management API.
    let without = toml.replace("authenticators = [\"pw\"]", "authenticators = []");
    std::fs::write(&path, text(&without)).unwrap();
    let out = std::process::Command::new("curl")
        .args([
            "-sS",
            "-X",
            "POST",
            "--max-time",
            "10",
            &format!("http://{http}/api/v1/auth/reload"),
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(
        code(&c.call(RequestType::Post, "ps/dev/dev/t?u=dev&p=s3cret", b"x").await),
        "4.01",
        "no cached answer survives the reload"
    );
    running.stop().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_con_notification_goes_out_every_con_notify_interval() {
    // RFC 7641 §4.5: even when NON would do, a CON now and then finds observers that are gone.
    let s = server("[coap]\ncon_notify_interval = \"20ms\"\n");
    let mqtt = Mqtt::connect(&s, "pub").await;
    let mut c = RawCoap::new(&s).await;
    observe(&mut c, "ps/hb?qos=0", b"hb").await;
    // Time itself must pass here: the interval counts from the registration.
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    mqtt.publish("hb", q(0), false, "a").await;
    let n = c.recv().await;
    assert_eq!(
        (n.header.get_type(), &n.payload[..]),
        (MessageType::Confirmable, &b"a"[..])
    );
    c.send(&empty(MessageType::Acknowledgement, n.header.message_id)).await;
    s.stop();
    // With the default (24 h) the same observation gets NON.
    let s = server("");
    let mqtt = Mqtt::connect(&s, "pub").await;
    let mut c = RawCoap::new(&s).await;
    observe(&mut c, "ps/hb?qos=0", b"hb").await;
    mqtt.publish("hb", q(0), false, "b").await;
    assert_eq!(c.recv().await.header.get_type(), MessageType::NonConfirmable);
    s.stop();
}
