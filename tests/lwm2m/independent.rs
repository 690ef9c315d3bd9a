//! Devices that share no code with unigate: Python's aiocoap driving the registration
//! interface and serving reads, and libcoap's `coap-client-openssl` registering over DTLS with
//! a pre-shared key.

use base64::Engine as _;
use serde_json::json;
use sha2::Digest as _;

use crate::server::{command, event, server, watcher};
use crate::util::{coap_client, q, Mqtt, Proc};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_aiocoap_device_registers_is_read_updates_and_deregisters() {
    let s = server("");
    let mut m = watcher(&s, "w").await;
    let port = s.listener("lwm2m").port().to_string();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/lwm2m/aiocoap_device.py");
    let mut dev = Proc::spawn("python3", &[script.into(), "127.0.0.1".into(), port]);
    let line = tokio::task::block_in_place(|| dev.wait_for_line("register"));
    assert!(line.starts_with("register 2.01 rd/"), "{line}");
    let (topic, body) = event(&mut m).await;
    assert_eq!(topic, "lwm2m/aiocoap-dev/up/register");
    assert_eq!(body["data"]["objectList"], json!(["/1/0", "/3/0", "/5/0"]));

    // A read reaches aiocoap's resource and its text answer comes back typed (/3/0/9 is an
    // integer in the registry).
    command(
        &m,
        "aiocoap-dev",
        json!({"requestID": 1, "msgType": "read", "data": {"path": "/3/0/9"}}),
    )
    .await;
    let (topic, body) = event(&mut m).await;
    assert_eq!(topic, "lwm2m/aiocoap-dev/up/resp");
    assert_eq!(body["data"]["content"], json!([{"path": "/3/0/9", "value": 87}]));
    command(
        &m,
        "aiocoap-dev",
        json!({"requestID": 2, "msgType": "read", "data": {"path": "/3/0/0"}}),
    )
    .await;
    assert_eq!(event(&mut m).await.1["data"]["content"][0]["value"], "aiocoap-maker");
    // A path it does not serve: aiocoap's 4.04 is passed on.
    command(
        &m,
        "aiocoap-dev",
        json!({"requestID": 3, "msgType": "read", "data": {"path": "/3/0/1"}}),
    )
    .await;
    assert_eq!(event(&mut m).await.1["data"]["code"], "4.04");

    // A firmware package pushed to /5/0/0, larger than a block: it goes out block by block
    // (Block1) and aiocoap reassembles exactly these bytes.
    let package: Vec<u8> = (0..5000u32).map(|i| (i * 7 % 251) as u8).collect();
    command(
        &m,
        "aiocoap-dev",
        json!({"requestID": 4, "msgType": "write", "data": {"path": "/5/0/0", "type": "Opaque",
            "value": base64::engine::general_purpose::STANDARD.encode(&package)}}),
    )
    .await;
    let line = tokio::task::block_in_place(|| dev.wait_for_line("written"));
    let (_, body) = event(&mut m).await;
    assert_eq!(body["data"]["code"], "2.04", "{body}");
    // The package as one TLV resource: type 0xD0 (resource, 8-bit id, 16-bit length), id 0,
    // length 5000 (OMA-TS-LightweightM2M-Core §7.4.3).
    let mut tlv = vec![0xD0, 0x00, 0x13, 0x88];
    tlv.extend_from_slice(&package);
    let want = format!("written 5/0/0 {} {}", tlv.len(), hex(&sha2::Sha256::digest(&tlv)));
    assert_eq!(line, want);
    dev.send_line("update");
    let line = tokio::task::block_in_place(|| dev.wait_for_line("update"));
    assert_eq!(line, "update 2.04");
    let (topic, body) = event(&mut m).await;
    assert_eq!(
        (topic.as_str(), body["data"]["lt"].as_u64()),
        ("lwm2m/aiocoap-dev/up/update", Some(90))
    );
    dev.send_line("deregister");
    let line = tokio::task::block_in_place(|| dev.wait_for_line("deregister"));
    assert_eq!(line, "deregister 2.02");
    assert_eq!(event(&mut m).await.0, "lwm2m/aiocoap-dev/up/deregister");
    dev.send_line("quit");
    tokio::task::block_in_place(|| dev.succeed());
    s.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_libcoap_device_registers_over_dtls_as_its_psk_identity() {
    let (dir, file) = crate::common::psk_file("lwm2m-psk", "dev1", b"secretkey");
    let s = crate::common::TestServer::start_text(&format!(
        "workers = 2\nsys_interval = \"0s\"\n\
         [auth.chains.devices]\nauthenticators = [\"keys\"]\nno_match = \"deny\"\n\
         [auth.authenticators.keys]\nkind = \"psk\"\nfile = {:?}\n\
         [acl]\nno_match = \"deny\"\n\
         [[acl.rules]]\npermission = \"allow\"\nwho = {{ listener = \"lwm2m\" }}\naction = \"publish\"\ntopics = [\"lwm2m/${{username}}/up/#\"]\n\
         [[acl.rules]]\npermission = \"allow\"\nwho = {{ listener = \"mqtt\" }}\naction = \"all\"\ntopics = [\"lwm2m/#\"]\n\
         [[listeners]]\nname = \"mqtt\"\nprotocol = \"mqtt\"\nbind = \"127.0.0.1:0\"\n\
         [[listeners]]\nname = \"lwm2m\"\nprotocol = \"lwm2m\"\nbind = \"127.0.0.1:0\"\nauth = \"devices\"\ntls = {{ psk = true }}\n",
        file.display().to_string()
    ));
    let mut m = Mqtt::connect(&s, "w").await;
    m.subscribe("lwm2m/+/up/#", q(1)).await;
    let uri = |ep: &str| format!("coaps://127.0.0.1:{}/rd?ep={ep}&lt=60", s.listener("lwm2m").port());
    let register = |ep: &str| {
        coap_client(&[
            "-u",
            "dev1",
            "-k",
            "secretkey",
            "-m",
            "post",
            "-t",
            "40",
            "-e",
            "</3/0>,</3303/0>",
            &uri(ep),
        ]);
    };
    // The identity dev1 may not register as someone else (the ACL binds endpoint names).
    tokio::task::block_in_place(|| register("mallory"));
    m.assert_silent().await;
    // A wrong key never gets past the handshake.
    tokio::task::block_in_place(|| {
        coap_client(&[
            "-u",
            "dev1",
            "-k",
            "wrongkey",
            "-m",
            "post",
            "-B",
            "2",
            "-e",
            "</3/0>",
            &uri("dev1"),
        ]);
    });
    m.assert_silent().await;
    tokio::task::block_in_place(|| register("dev1"));
    let (topic, body) = event(&mut m).await;
    assert_eq!(topic, "lwm2m/dev1/up/register");
    assert_eq!(body["data"]["objectList"], json!(["/3/0", "/3303/0"]));
    s.stop();
    let _ = std::fs::remove_dir_all(&dir);
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
