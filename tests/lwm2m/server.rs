//! The LwM2M server driven by the simulated device: registration interface, every command
//! path from MQTT (`dn` → device → `up/resp`), observations (`up/notify`), queue mode,
//! timeouts, lifetimes, bad input, Send, and the HTTP API.

use base64::Engine as _;
use serde_json::{json, Value as Json};
use unigate_coap::coap_lite::{CoapOption, MessageClass, MessageType, Packet, RequestType, ResponseType};

use crate::common::TestServer;
use crate::device::{code, path_of, query_of, uint_of, Device};
use crate::util::{q, within, Mqtt};

const LINKS: &str = "</>;rt=\"oma.lwm2m\";ct=11542,</1/0>,</3/0>,</3303/0>,</3303/1>";

/// A server with `mqtt`, `lwm2m` and `http` listeners; `top` goes first (e.g. `[lwm2m]`).
pub fn server(top: &str) -> TestServer {
    TestServer::start_text(&format!(
        "workers = 2\nsys_interval = \"0s\"\n{top}\n\
         [[listeners]]\nname = \"mqtt\"\nprotocol = \"mqtt\"\nbind = \"127.0.0.1:0\"\n\
         [[listeners]]\nname = \"lwm2m\"\nprotocol = \"lwm2m\"\nbind = \"127.0.0.1:0\"\n\
         [[listeners]]\nname = \"http\"\nprotocol = \"http\"\nbind = \"127.0.0.1:0\"\n"
    ))
}

/// The next message: its topic and JSON body.
pub async fn event(m: &mut Mqtt) -> (String, Json) {
    let p = m.recv().await;
    let body = serde_json::from_slice(&p.payload).unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", p.payload));
    (p.topic, body)
}

/// An MQTT client subscribed to every uplink topic (`lwm2m/+/up/#`).
pub async fn watcher(s: &TestServer, id: &str) -> Mqtt {
    let mut m = Mqtt::connect(s, id).await;
    m.subscribe("lwm2m/+/up/#", q(1)).await;
    m
}

/// Publishes a command to `ep`.
pub async fn command(m: &Mqtt, ep: &str, cmd: Json) {
    m.publish(&format!("lwm2m/{ep}/dn"), q(1), false, cmd.to_string()).await;
}

/// A registered device and a watcher that has seen its register event.
pub async fn registered(s: &TestServer, ep: &str, query: &[&str]) -> (Device, Mqtt) {
    let mut m = watcher(s, &format!("watch-{ep}")).await;
    let mut d = Device::new(s.listener("lwm2m")).await;
    let r = d.register(ep, query, LINKS).await;
    assert_eq!(code(&r), "2.01");
    let (topic, _) = event(&mut m).await;
    assert_eq!(topic, format!("lwm2m/{ep}/up/register"));
    (d, m)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_update_deregister_publish_events() {
    let s = server("");
    let mut m = watcher(&s, "w").await;
    let mut d = Device::new(s.listener("lwm2m")).await;
    let r = d.register("dev1", &["lt=300", "lwm2m=1.1", "b=U"], LINKS).await;
    assert_eq!(code(&r), "2.01");
    assert!(d.location.starts_with("rd/") && d.location.len() > 3, "{}", d.location);
    let (topic, body) = event(&mut m).await;
    assert_eq!(topic, "lwm2m/dev1/up/register");
    assert_eq!(
        body,
        json!({"msgType": "register", "data": {"ep": "dev1", "lt": 300, "lwm2m": "1.1", "b": "U", "alternatePath": "/", "objectList": ["/1/0", "/3/0", "/3303/0", "/3303/1"]}})
    );

    let r = d.update(&["lt=120"], "").await;
    assert_eq!(code(&r), "2.04");
    let (topic, body) = event(&mut m).await;
    assert_eq!(topic, "lwm2m/dev1/up/update");
    assert_eq!(
        (body["msgType"].as_str(), body["data"]["lt"].as_u64()),
        (Some("update"), Some(120))
    );
    assert_eq!(body["data"]["objectList"].as_array().map(Vec::len), Some(4));

    // An update with a new object list replaces it.
    let r = d.update(&[], "</1/0>,</3/0>").await;
    assert_eq!(code(&r), "2.04");
    let (_, body) = event(&mut m).await;
    assert_eq!(body["data"]["objectList"], json!(["/1/0", "/3/0"]));

    let r = d.deregister().await;
    assert_eq!(code(&r), "2.02");
    let (topic, body) = event(&mut m).await;
    assert_eq!(topic, "lwm2m/dev1/up/deregister");
    assert_eq!(body["data"], json!({"ep": "dev1", "reason": "deregistered"}));
    // The location is gone.
    assert_eq!(code(&d.update(&[], "").await), "4.04");
    s.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_from_mqtt_reach_the_device_and_are_answered_once() {
    let s = server("");
    let (mut d, mut m) = registered(&s, "dev2", &["lwm2m=1.0"]).await;

    // Read a string resource; the device answers in TLV (resource 0, 8-bit id, length 4).
    command(
        &m,
        "dev2",
        json!({"requestID": 1, "msgType": "read", "data": {"path": "/3/0/0"}}),
    )
    .await;
    let req = d.next_request().await;
    assert_eq!(
        (req.header.code, path_of(&req)),
        (MessageClass::Request(RequestType::Get), "3/0/0".to_string())
    );
    d.reply(
        &req,
        ResponseType::Content,
        Some(11542),
        &[0xC4, 0x00, b'A', b'C', b'M', b'E'],
        None,
    )
    .await;
    let (topic, body) = event(&mut m).await;
    assert_eq!(topic, "lwm2m/dev2/up/resp");
    assert_eq!(
        body,
        json!({"requestID": 1, "msgType": "read", "data": {"reqPath": "/3/0/0", "code": "2.05", "codeMsg": "content", "content": [{"path": "/3/0/0", "value": "ACME"}]}})
    );

    // Read an instance; the device answers in SenML JSON, typed by the object registry.
    command(
        &m,
        "dev2",
        json!({"requestID": 2, "msgType": "read", "data": {"path": "/3303/0"}}),
    )
    .await;
    let req = d.next_request().await;
    let senml = br#"[{"bn":"/3303/0/","n":"5700","v":21.5},{"n":"5701","vs":"Cel"}]"#;
    d.reply(&req, ResponseType::Content, Some(110), senml, None).await;
    let (_, body) = event(&mut m).await;
    assert_eq!(
        body["data"]["content"],
        json!([{"path": "/3303/0/5700", "value": 21.5}, {"path": "/3303/0/5701", "value": "Cel"}])
    );

    // Write: PUT with a TLV payload (integer 300 in two bytes).
    command(
        &m,
        "dev2",
        json!({"requestID": 3, "msgType": "write", "data": {"path": "/1/0/1", "type": "Integer", "value": 300}}),
    )
    .await;
    let req = d.next_request().await;
    assert_eq!(
        (req.header.code, path_of(&req)),
        (MessageClass::Request(RequestType::Put), "1/0/1".to_string())
    );
    assert_eq!(
        req.get_first_option(CoapOption::ContentFormat).map(|v| uint_of(v)),
        Some(11542)
    );
    assert_eq!(req.payload, vec![0xC2, 0x01, 0x01, 0x2C]);
    d.reply(&req, ResponseType::Changed, None, b"", None).await;
    let (_, body) = event(&mut m).await;
    assert_eq!(
        (body["data"]["code"].as_str(), body["data"]["codeMsg"].as_str()),
        (Some("2.04"), Some("changed"))
    );

    // Execute with arguments: POST with a text payload.
    command(
        &m,
        "dev2",
        json!({"requestID": 4, "msgType": "execute", "data": {"path": "/3/0/4", "args": "0='now'"}}),
    )
    .await;
    let req = d.next_request().await;
    assert_eq!(
        (req.header.code, req.payload.as_slice()),
        (MessageClass::Request(RequestType::Post), b"0='now'".as_slice())
    );
    d.reply(&req, ResponseType::Changed, None, b"", None).await;
    assert_eq!(event(&mut m).await.1["data"]["code"], "2.04");

    // Discover: Accept link-format; the links come back one per string.
    command(
        &m,
        "dev2",
        json!({"requestID": 5, "msgType": "discover", "data": {"path": "/3/0"}}),
    )
    .await;
    let req = d.next_request().await;
    assert_eq!(req.get_first_option(CoapOption::Accept).map(|v| uint_of(v)), Some(40));
    d.reply(
        &req,
        ResponseType::Content,
        Some(40),
        b"</3/0>;dim=2,</3/0/0>,</3/0/9>;pmax=60",
        None,
    )
    .await;
    assert_eq!(
        event(&mut m).await.1["data"]["content"],
        json!(["</3/0>;dim=2", "</3/0/0>", "</3/0/9>;pmax=60"])
    );

    // Create and Delete.
    command(&m, "dev2", json!({"requestID": 6, "msgType": "create", "data": {"basePath": "/3303", "content": [{"path": "/3303/2/5700", "value": 20.0}]}})).await;
    let req = d.next_request().await;
    assert_eq!(
        (req.header.code, path_of(&req)),
        (MessageClass::Request(RequestType::Post), "3303".to_string())
    );
    assert!(!req.payload.is_empty());
    d.reply(&req, ResponseType::Created, None, b"", None).await;
    assert_eq!(event(&mut m).await.1["data"]["codeMsg"], "created");
    command(
        &m,
        "dev2",
        json!({"requestID": 7, "msgType": "delete", "data": {"path": "/3303/2"}}),
    )
    .await;
    let req = d.next_request().await;
    assert_eq!(req.header.code, MessageClass::Request(RequestType::Delete));
    d.reply(&req, ResponseType::Deleted, None, b"", None).await;
    assert_eq!(event(&mut m).await.1["data"]["code"], "2.02");

    // Write-Attributes: PUT with the attributes as query.
    command(
        &m,
        "dev2",
        json!({"requestID": 8, "msgType": "write-attr", "data": {"path": "/3303/0/5700", "pmin": "1", "pmax": 5}}),
    )
    .await;
    let req = d.next_request().await;
    assert_eq!(query_of(&req), vec!["pmin=1", "pmax=5"]);
    assert!(req.payload.is_empty());
    d.reply(&req, ResponseType::Changed, None, b"", None).await;
    assert_eq!(event(&mut m).await.1["data"]["code"], "2.04");

    // A device error is passed on.
    command(
        &m,
        "dev2",
        json!({"requestID": 9, "msgType": "read", "data": {"path": "/3/0/99"}}),
    )
    .await;
    let req = d.next_request().await;
    d.reply(&req, ResponseType::NotFound, None, b"", None).await;
    assert_eq!(event(&mut m).await.1["data"]["codeMsg"], "not_found");

    // A payload the device gets wrong: 5.02 with the reason.
    command(
        &m,
        "dev2",
        json!({"requestID": 10, "msgType": "read", "data": {"path": "/3/0/0"}}),
    )
    .await;
    let req = d.next_request().await;
    d.reply(
        &req,
        ResponseType::Content,
        Some(11542),
        &[0xC8, 0x00, 0x10, b'x'],
        None,
    )
    .await;
    let (_, body) = event(&mut m).await;
    assert_eq!(body["data"]["code"], "5.02");
    assert!(
        body["data"]["error"].as_str().is_some_and(|e| e.contains("TLV")),
        "{body}"
    );

    // Nothing else was sent: one response per command.
    m.assert_silent().await;
    d.assert_silent().await;
    s.stop();
}

/// (num, more, szx) of a request's Block1 option.
fn block1(req: &Packet) -> (u32, bool, u8) {
    let v = uint_of(req.get_first_option(CoapOption::Block1).expect("a Block1 option"));
    (v >> 4, v & 8 != 0, (v & 7) as u8)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_larger_than_a_block_goes_out_block_by_block() {
    // [coap] block_size 1024 (the default): a 2500-byte package is a 2504-byte TLV.
    let s = server("");
    let (mut d, mut m) = registered(&s, "fw", &["lt=300", "b=U"]).await;
    let package: Vec<u8> = (0..2500u32).map(|i| (i % 256) as u8).collect();
    let write = |id: u32| {
        json!({"requestID": id, "msgType": "write", "data": {"path": "/5/0/0", "type": "Opaque",
            "value": base64::engine::general_purpose::STANDARD.encode(&package)}})
    };
    command(&m, "fw", write(1)).await;
    // Block 0: 1024 bytes, more to come, Size1 the whole body.
    let req = d.next_request().await;
    assert_eq!(
        (req.header.code, path_of(&req)),
        (MessageClass::Request(RequestType::Put), "5/0/0".to_string())
    );
    assert_eq!(block1(&req), (0, true, 6));
    assert_eq!(req.get_first_option(CoapOption::Size1).map(|v| uint_of(v)), Some(2504));
    assert_eq!(req.payload.len(), 1024);
    let mut got = req.payload.clone();
    // The device asks for 512-byte blocks from now on (RFC 7959 §2.5): the next block is
    // number 2 of that size, at byte 1024.
    d.reply_block1(&req, ResponseType::Continue, 0, true, 5).await;
    let mut want_num = 2;
    loop {
        let req = d.next_request().await;
        let (num, more, szx) = block1(&req);
        assert_eq!((num, szx), (want_num, 5), "block {num}");
        assert_eq!(
            req.get_first_option(CoapOption::Size1),
            None,
            "Size1 on the first block only"
        );
        got.extend_from_slice(&req.payload);
        if !more {
            d.reply_block1(&req, ResponseType::Changed, num, false, 5).await;
            break;
        }
        assert_eq!(req.payload.len(), 512);
        // A device acting on each block may answer 2.04 with M=1 instead of 2.31 (§2.3).
        let code = if num == 3 {
            ResponseType::Changed
        } else {
            ResponseType::Continue
        };
        d.reply_block1(&req, code, num, true, 5).await;
        want_num += 1;
    }
    assert_eq!(want_num, 4, "blocks 2, 3 and 4 of 512 bytes");
    assert_eq!(&got[..4], &[0xD0, 0x00, 0x09, 0xC4], "TLV header of 2500 bytes");
    assert_eq!(&got[4..], &package[..]);
    let (_, body) = event(&mut m).await;
    assert_eq!(
        (body["data"]["code"].as_str(), body["requestID"].as_u64()),
        (Some("2.04"), Some(1))
    );

    // A device that cannot take it says so on the first block: that is the answer.
    command(&m, "fw", write(2)).await;
    let req = d.next_request().await;
    d.reply(&req, ResponseType::RequestEntityTooLarge, None, b"", None)
        .await;
    let (_, body) = event(&mut m).await;
    assert_eq!(
        (body["data"]["code"].as_str(), body["requestID"].as_u64()),
        (Some("4.13"), Some(2))
    );

    // A device that answers 2.04 half way through: an error, not a success.
    command(&m, "fw", write(3)).await;
    let req = d.next_request().await;
    d.reply_block1(&req, ResponseType::Changed, 0, false, 6).await;
    let (_, body) = event(&mut m).await;
    assert_eq!(body["data"]["code"], "5.02", "{body}");
    assert!(body["data"]["codeMsg"].is_string(), "{body}");
    d.assert_silent().await;
    s.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_and_misdirected_commands_get_one_error_response() {
    let s = server("");
    let (mut d, mut m) = registered(&s, "dev3", &[]).await;
    // Not JSON.
    m.publish("lwm2m/dev3/dn", q(1), false, "{oops").await;
    let (topic, body) = event(&mut m).await;
    assert_eq!(topic, "lwm2m/dev3/up/resp");
    assert_eq!(body["data"]["code"], "4.00");
    assert!(body["data"]["error"].as_str().unwrap().contains("not JSON"));
    // Unknown msgType, echoed.
    command(
        &m,
        "dev3",
        json!({"requestID": "x", "msgType": "reboot", "data": {"path": "/3/0"}}),
    )
    .await;
    let (_, body) = event(&mut m).await;
    assert_eq!(
        (
            body["requestID"].as_str(),
            body["msgType"].as_str(),
            body["data"]["reqPath"].as_str(),
            body["data"]["code"].as_str()
        ),
        (Some("x"), Some("reboot"), Some("/3/0"), Some("4.00"))
    );
    // A value of the wrong type for the resource.
    command(
        &m,
        "dev3",
        json!({"requestID": 3, "msgType": "write", "data": {"path": "/1/0/1", "value": "soon"}}),
    )
    .await;
    assert_eq!(event(&mut m).await.1["data"]["code"], "4.00");
    // An endpoint nobody registered: 4.04 on its own response topic.
    command(
        &m,
        "ghost",
        json!({"requestID": 4, "msgType": "read", "data": {"path": "/3/0"}}),
    )
    .await;
    let (topic, body) = event(&mut m).await;
    assert_eq!(
        (topic.as_str(), body["data"]["code"].as_str()),
        ("lwm2m/ghost/up/resp", Some("4.04"))
    );
    d.assert_silent().await;
    s.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn observations_notify_and_cancel() {
    let s = server("");
    let (mut d, mut m) = registered(&s, "dev4", &[]).await;
    command(
        &m,
        "dev4",
        json!({"requestID": 11, "msgType": "observe", "data": {"path": "/3303/0/5700"}}),
    )
    .await;
    let req = d.next_request().await;
    assert_eq!(req.get_first_option(CoapOption::Observe).map(|v| uint_of(v)), Some(0));
    let token = req.get_token().to_vec();
    d.reply(&req, ResponseType::Content, Some(0), b"21.5", Some(1)).await;
    let (topic, body) = event(&mut m).await;
    assert_eq!(topic, "lwm2m/dev4/up/resp");
    assert_eq!(
        body["data"]["content"],
        json!([{"path": "/3303/0/5700", "value": 21.5}])
    );

    // CON and NON notifications.
    let ack = d.notify(&token, 2, 0, b"22.25", true).await.unwrap();
    assert_eq!(ack.header.get_type(), MessageType::Acknowledgement);
    let (topic, body) = event(&mut m).await;
    assert_eq!(topic, "lwm2m/dev4/up/notify");
    assert_eq!(
        body,
        json!({"requestID": 11, "msgType": "notify", "seqNum": 2, "data": {"reqPath": "/3303/0/5700", "code": "2.05", "codeMsg": "content", "content": [{"path": "/3303/0/5700", "value": 22.25}]}})
    );
    d.notify(&token, 3, 0, b"23", false).await;
    assert_eq!(event(&mut m).await.1["seqNum"], 3);

    // Cancel: the device gets GET with Observe 1; later notifications of the old token get RST.
    command(
        &m,
        "dev4",
        json!({"requestID": 12, "msgType": "cancel-observe", "data": {"path": "/3303/0/5700"}}),
    )
    .await;
    let req = d.next_request().await;
    assert_eq!(req.get_first_option(CoapOption::Observe).map(|v| uint_of(v)), Some(1));
    d.reply(&req, ResponseType::Content, Some(0), b"23", None).await;
    assert_eq!(event(&mut m).await.1["msgType"], "cancel-observe");
    let rst = d.notify(&token, 4, 0, b"24", true).await.unwrap();
    assert_eq!(rst.header.get_type(), MessageType::Reset);
    m.assert_silent().await;
    s.stop();
}

/// Answers the server's GETs for blocks `from`.. of `body` at size 2^(szx+4), checking each
/// asks for the next block of the observed path without Observe (RFC 7959 §3.4).
async fn serve_blocks(d: &mut Device, path: &str, body: &[u8], from: u32, szx: u8) {
    let size = 16usize << szx;
    let blocks = body.len().div_ceil(size) as u32;
    for num in from..blocks {
        let req = d.next_request().await;
        assert_eq!(
            (req.header.code, path_of(&req)),
            (MessageClass::Request(RequestType::Get), path.to_string())
        );
        assert_eq!(
            req.get_first_option(CoapOption::Observe),
            None,
            "later blocks without Observe"
        );
        let asked = uint_of(req.get_first_option(CoapOption::Block2).expect("Block2"));
        assert_eq!((asked >> 4, asked & 7), (num, u32::from(szx)), "asks for block {num}");
        let start = num as usize * size;
        let end = (start + size).min(body.len());
        d.reply_block2(&req, 110, None, num, end < body.len(), szx, &body[start..end])
            .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn block_wise_observe_answers_and_notifications_are_collected_whole() {
    let s = server("");
    let (mut d, mut m) = registered(&s, "big", &[]).await;
    let senml = |t: f64| {
        format!(
            r#"[{{"bn":"/3303/0/","n":"5700","v":{t}}},{{"n":"5701","vs":"Cel"}},{{"n":"5601","v":-10.5}},{{"n":"5602","v":40.25}},{{"n":"5750","vs":"living room, north wall"}}]"#
        )
        .into_bytes()
    };
    let content = |t: f64| {
        json!([
            {"path": "/3303/0/5601", "value": -10.5},
            {"path": "/3303/0/5602", "value": 40.25},
            {"path": "/3303/0/5700", "value": t},
            {"path": "/3303/0/5701", "value": "Cel"},
            {"path": "/3303/0/5750", "value": "living room, north wall"},
        ])
    };
    command(
        &m,
        "big",
        json!({"requestID": 21, "msgType": "observe", "data": {"path": "/3303/0"}}),
    )
    .await;
    // The answer to the Observe comes in 64-byte blocks: block 0 with Observe, the rest asked
    // for without it.
    let req = d.next_request().await;
    assert_eq!(req.get_first_option(CoapOption::Observe).map(|v| uint_of(v)), Some(0));
    let token = req.get_token().to_vec();
    let first = senml(21.5);
    d.reply_block2(&req, 110, Some(7), 0, true, 2, &first[..64]).await;
    serve_blocks(&mut d, "3303/0", &first, 1, 2).await;
    let (topic, body) = event(&mut m).await;
    assert_eq!(topic, "lwm2m/big/up/resp");
    assert_eq!(body["data"]["code"], "2.05", "{body}");
    let mut got = body["data"]["content"].as_array().cloned().unwrap_or_default();
    got.sort_by_key(|v| v["path"].as_str().map(str::to_owned));
    assert_eq!(Json::Array(got), content(21.5));

    // The observation stands: a block-wise notification is fetched whole and published once.
    let next = senml(22.75);
    d.notify_block0(&token, 8, 110, 2, &next[..64]).await;
    serve_blocks(&mut d, "3303/0", &next, 1, 2).await;
    let (topic, body) = event(&mut m).await;
    assert_eq!(topic, "lwm2m/big/up/notify");
    assert_eq!(
        (body["seqNum"].as_u64(), body["requestID"].as_u64()),
        (Some(8), Some(21)),
        "{body}"
    );
    let mut got = body["data"]["content"].as_array().cloned().unwrap_or_default();
    got.sort_by_key(|v| v["path"].as_str().map(str::to_owned));
    assert_eq!(Json::Array(got), content(22.75));

    // A notification whose rest the device no longer has: published with the error.
    d.notify_block0(&token, 9, 110, 2, &next[..64]).await;
    let req = d.next_request().await;
    d.reply(&req, ResponseType::NotFound, None, b"", None).await;
    let (topic, body) = event(&mut m).await;
    assert_eq!(topic, "lwm2m/big/up/notify");
    assert!(
        body["data"]["error"].as_str().is_some_and(|e| e.contains("4.04")),
        "{body}"
    );
    // And a small one still comes straight through.
    d.notify(&token, 10, 110, &senml(23.0), false).await;
    assert_eq!(event(&mut m).await.1["seqNum"], 10);
    d.assert_silent().await;
    m.assert_silent().await;
    s.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_observe_on_registration() {
    let s = server("[lwm2m]\nauto_observe = [\"/3303/0/5700\", \"/5/0/3\"]\n");
    let mut m = watcher(&s, "w").await;
    let mut d = Device::new(s.listener("lwm2m")).await;
    assert_eq!(code(&d.register("dev5", &[], LINKS).await), "2.01");
    assert_eq!(event(&mut m).await.0, "lwm2m/dev5/up/register");
    // Only /3303 is among the device's objects.
    let req = d.next_request().await;
    assert_eq!(
        (
            path_of(&req),
            req.get_first_option(CoapOption::Observe).map(|v| uint_of(v))
        ),
        ("3303/0/5700".to_string(), Some(0))
    );
    d.reply(&req, ResponseType::Content, Some(0), b"19", Some(7)).await;
    let (_, body) = event(&mut m).await;
    assert_eq!(
        (body["msgType"].as_str(), body["auto"].as_bool()),
        (Some("observe"), Some(true))
    );
    d.notify(req.get_token(), 8, 0, b"20", false).await;
    assert_eq!(event(&mut m).await.1["data"]["content"][0]["value"], 20.0);
    d.assert_silent().await;
    s.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_mode_holds_commands_until_the_device_wakes() {
    let s = server("[lwm2m]\nqueue_window = \"300ms\"\n");
    let (mut d, mut m) = registered(&s, "sleepy", &["b=UQ"]).await;
    // Fell asleep after the window.
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    command(
        &m,
        "sleepy",
        json!({"requestID": 1, "msgType": "read", "data": {"path": "/3/0/0"}}),
    )
    .await;
    command(
        &m,
        "sleepy",
        json!({"requestID": 2, "msgType": "read", "data": {"path": "/3/0/1"}}),
    )
    .await;
    d.assert_silent().await;
    m.assert_silent().await;
    // Wakes up with an Update: both commands follow, one at a time.
    assert_eq!(code(&d.update(&[], "").await), "2.04");
    assert_eq!(event(&mut m).await.0, "lwm2m/sleepy/up/update");
    let req = d.next_request().await;
    assert_eq!(path_of(&req), "3/0/0");
    d.reply(&req, ResponseType::Content, Some(0), b"ACME", None).await;
    assert_eq!(event(&mut m).await.1["requestID"], 1);
    let req = d.next_request().await;
    assert_eq!(path_of(&req), "3/0/1");
    d.reply(&req, ResponseType::Content, Some(0), b"M1", None).await;
    assert_eq!(event(&mut m).await.1["data"]["content"][0]["value"], "M1");
    s.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_devices_time_out_and_queues_are_bounded() {
    let s = server(
        "[coap]\nack_timeout = \"100ms\"\nack_random_factor = 1.0\nmax_retransmit = 1\n\
         [lwm2m]\nrequest_timeout = \"500ms\"\nmax_queued = 2\n",
    );
    let (mut d, mut m) = registered(&s, "mute", &[]).await;
    // Never acknowledged: 5.04 after the retransmissions.
    command(
        &m,
        "mute",
        json!({"requestID": 1, "msgType": "read", "data": {"path": "/3/0/0"}}),
    )
    .await;
    let first = d.next_request().await;
    let again = d.next_request().await;
    assert_eq!(first.header.message_id, again.header.message_id);
    let (_, body) = event(&mut m).await;
    assert_eq!(
        (body["requestID"].as_u64(), body["data"]["code"].as_str()),
        (Some(1), Some("5.04"))
    );
    // Acknowledged but never answered: 5.04 after request_timeout.
    command(
        &m,
        "mute",
        json!({"requestID": 2, "msgType": "read", "data": {"path": "/3/0/0"}}),
    )
    .await;
    let req = d.next_request().await;
    d.ack(&req).await;
    // Meanwhile the queue holds two more and refuses a third with 5.03.
    for id in 3..=5 {
        command(
            &m,
            "mute",
            json!({"requestID": id, "msgType": "read", "data": {"path": "/3/0/0"}}),
        )
        .await;
    }
    let (_, body) = event(&mut m).await;
    assert_eq!(
        (body["requestID"].as_u64(), body["data"]["code"].as_str()),
        (Some(5), Some("5.03"))
    );
    let (_, body) = event(&mut m).await;
    assert_eq!(
        (body["requestID"].as_u64(), body["data"]["code"].as_str()),
        (Some(2), Some("5.04"))
    );
    // A late answer to the timed-out request is not published again.
    d.reply(&req, ResponseType::Content, Some(0), b"late", None).await;
    let req3 = d.next_request().await;
    d.reply(&req3, ResponseType::Content, Some(0), b"ok", None).await;
    let (_, body) = event(&mut m).await;
    assert_eq!(
        (body["requestID"].as_u64(), body["data"]["code"].as_str()),
        (Some(3), Some("2.05"))
    );
    s.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registrations_expire_and_end_pending_commands() {
    let s = server("[lwm2m]\nmin_lifetime = \"1s\"\nlifetime_grace = \"0s\"\nqueue_window = \"1ms\"\n");
    let (mut d, mut m) = registered(&s, "brief", &["lt=1", "b=UQ"]).await;
    command(
        &m,
        "brief",
        json!({"requestID": 1, "msgType": "read", "data": {"path": "/3/0/0"}}),
    )
    .await;
    // Queued (asleep), then the registration expires: the command is answered 4.04 and the
    // expiry published.
    let (topic, body) = within("expiry", event(&mut m)).await;
    assert_eq!(
        (topic.as_str(), body["data"]["code"].as_str()),
        ("lwm2m/brief/up/resp", Some("4.04"))
    );
    let (topic, body) = event(&mut m).await;
    assert_eq!(
        (topic.as_str(), body["data"]["reason"].as_str()),
        ("lwm2m/brief/up/deregister", Some("expired"))
    );
    assert_eq!(code(&d.update(&[], "").await), "4.04");
    s.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_registrations_get_coap_errors() {
    let s = server("");
    let mut d = Device::new(s.listener("lwm2m")).await;
    let reg = |d: &mut Device, q: &[&str], body: &str| {
        let mut p = d.request(RequestType::Post, "rd", q, body.as_bytes());
        p.add_option(CoapOption::ContentFormat, crate::device::uint(40));
        p
    };
    for (q, body) in [
        (vec!["lt=60"], "</3/0>"),
        (vec!["ep=a", "lt=abc"], "</3/0>"),
        (vec!["ep=a", "lt=0"], "</3/0>"),
        (vec!["ep=a", "ep=b"], "</3/0>"),
        (vec!["ep=a", "b=X"], "</3/0>"),
        (vec!["ep=a", "lwm2m=9.9"], "</3/0>"),
        (vec!["ep=a/b"], "</3/0>"),
        (vec!["ep=a#"], "</3/0>"),
        (vec!["ep=a"], "</3/0"),
        (vec!["ep=a"], "<x>"),
    ] {
        let p = reg(&mut d, &q, body);
        let r = d.call(p).await;
        assert!(code(&r).starts_with("4."), "{q:?} {body:?}: {}", code(&r));
    }
    let p = d.request(RequestType::Get, "rd", &[], b"");
    assert_eq!(code(&d.call(p).await), "4.05");
    let p = d.request(RequestType::Post, "bs", &["ep=a"], b"");
    assert_eq!(code(&d.call(p).await), "4.04");
    let p = d.request(RequestType::Post, "rd/nope", &[], b"");
    assert_eq!(code(&d.call(p).await), "4.04");
    let p = d.request(RequestType::Post, "dp", &[], b"[]");
    assert_eq!(code(&d.call(p).await), "4.04");
    // Still serving.
    assert_eq!(code(&d.register("fine", &[], "</3/0>").await), "2.01");
    s.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_registration_replaces_the_first() {
    let s = server("");
    let (mut old, mut m) = registered(&s, "twin", &[]).await;
    let mut new = Device::new(s.listener("lwm2m")).await;
    assert_eq!(code(&new.register("twin", &[], LINKS).await), "2.01");
    assert_eq!(event(&mut m).await.0, "lwm2m/twin/up/register");
    assert_eq!(code(&old.update(&[], "").await), "4.04");
    command(
        &m,
        "twin",
        json!({"requestID": 1, "msgType": "read", "data": {"path": "/3/0/0"}}),
    )
    .await;
    let req = new.next_request().await;
    new.reply(&req, ResponseType::Content, Some(0), b"new", None).await;
    assert_eq!(event(&mut m).await.1["data"]["content"][0]["value"], "new");
    old.assert_silent().await;
    s.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_publishes_the_values() {
    let s = server("");
    let (mut d, mut m) = registered(&s, "pusher", &["lwm2m=1.1"]).await;
    let mut p = d.request(RequestType::Post, "dp", &[], br#"[{"n":"/3303/0/5700","v":18.5}]"#);
    p.add_option(CoapOption::ContentFormat, crate::device::uint(110));
    assert_eq!(code(&d.call(p).await), "2.04");
    let (topic, body) = event(&mut m).await;
    assert_eq!(topic, "lwm2m/pusher/up/send");
    assert_eq!(
        body,
        json!({"msgType": "send", "data": {"reqPath": "/dp", "content": [{"path": "/3303/0/5700", "value": 18.5}]}})
    );
    // Wrong format: 4.15.
    let p = d.request(RequestType::Post, "dp", &[], b"x");
    assert_eq!(code(&d.call(p).await), "4.15");
    s.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_acl_binds_endpoints_to_identities() {
    let s = server(
        "[acl]\nno_match = \"allow\"\n\
         [[acl.rules]]\npermission = \"deny\"\nwho = \"all\"\naction = \"publish\"\ntopics = [\"lwm2m/forbidden/#\"]\n",
    );
    let mut d = Device::new(s.listener("lwm2m")).await;
    assert_eq!(code(&d.register("forbidden", &[], LINKS).await), "4.03");
    assert_eq!(code(&d.register("allowed", &[], LINKS).await), "2.01");
    s.stop();
}

fn curl(args: &[&str], url: &str) -> (u16, Json) {
    crate::common::proc::require("curl");
    let out = std::process::Command::new("curl")
        .args(["-sS", "--max-time", "10", "-w", "\n%{http_code}"])
        .args(args)
        .arg(url)
        .output()
        .expect("run curl");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, status) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (
        status.trim().parse().unwrap_or(0),
        serde_json::from_str(body).unwrap_or(Json::Null),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_http_api_lists_devices_runs_commands_and_streams_notifications() {
    let s = server("");
    let (mut d, mut m) = registered(&s, "webdev", &["lwm2m=1.1", "b=U"]).await;
    let base = format!("http://127.0.0.1:{}/api/v1/lwm2m/clients", s.listener("http").port());

    let (status, list) = tokio::task::spawn_blocking({
        let u = base.clone();
        move || curl(&[], &u)
    })
    .await
    .unwrap();
    assert_eq!(status, 200);
    assert_eq!(list["meta"]["count"], 1);
    assert_eq!(list["data"][0]["ep"], "webdev");
    assert_eq!(list["data"][0]["listener"], "lwm2m");
    let (status, one) = tokio::task::spawn_blocking({
        let u = format!("{base}/webdev");
        move || curl(&[], &u)
    })
    .await
    .unwrap();
    assert_eq!((status, one["lwm2m"].as_str()), (200, Some("1.1")));
    let (status, err) = tokio::task::spawn_blocking({
        let u = format!("{base}/nobody/read?path=/3/0");
        move || curl(&[], &u)
    })
    .await
    .unwrap();
    assert_eq!((status, err["code"].as_str()), (404, Some("NOT_FOUND")));

    // A read over HTTP: the device answers, curl gets the answer (and MQTT sees it too).
    let read = tokio::task::spawn_blocking({
        let u = format!("{base}/webdev/read?path=/3/0/0");
        move || curl(&[], &u)
    });
    let req = d.next_request().await;
    d.reply(&req, ResponseType::Content, Some(0), b"ACME", None).await;
    let (status, body) = read.await.unwrap();
    assert_eq!(
        (status, body["data"]["content"][0]["value"].as_str()),
        (200, Some("ACME"))
    );
    assert_eq!(event(&mut m).await.0, "lwm2m/webdev/up/resp");

    // A write answered 4.05 by the device: HTTP 405.
    let write = tokio::task::spawn_blocking({
        let u = format!("{base}/webdev/write");
        move || {
            curl(
                &[
                    "-H",
                    "Content-Type: application/json",
                    "-d",
                    r#"{"path": "/3/0/0", "value": "x"}"#,
                ],
                &u,
            )
        }
    });
    let req = d.next_request().await;
    assert_eq!(req.header.code, MessageClass::Request(RequestType::Put));
    d.reply(&req, ResponseType::MethodNotAllowed, None, b"", None).await;
    let (status, body) = write.await.unwrap();
    assert_eq!((status, body["data"]["code"].as_str()), (405, Some("4.05")));

    // A malformed command: 400 before anything reaches the device.
    let (status, err) = tokio::task::spawn_blocking({
        let u = format!("{base}/webdev/commands");
        move || {
            curl(
                &[
                    "-H",
                    "Content-Type: application/json",
                    "-d",
                    r#"{"msgType": "fly", "data": {}}"#,
                ],
                &u,
            )
        }
    })
    .await
    .unwrap();
    assert_eq!((status, err["code"].as_str()), (400, Some("BAD_REQUEST")));

    // Notifications as Server-Sent Events.
    let mut sse = crate::util::Proc::spawn_line_buffered(
        "curl",
        &[
            "-sSN".into(),
            "--max-time".into(),
            "20".into(),
            "-H".into(),
            "Accept: text/event-stream".into(),
            format!("{base}/webdev/notifications"),
        ],
    );
    // The stream is subscribed once a retained read would have been sent; an observe makes
    // the device notify.
    within("sse subscription", async {
        while s.broker().client_ids().iter().all(|c| !c.starts_with("sse-")) {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    })
    .await;
    command(
        &m,
        "webdev",
        json!({"requestID": 9, "msgType": "observe", "data": {"path": "/3303/0/5700"}}),
    )
    .await;
    let req = d.next_request().await;
    d.reply(&req, ResponseType::Content, Some(0), b"1", Some(1)).await;
    d.notify(req.get_token(), 2, 0, b"2.5", false).await;
    let line = tokio::task::spawn_blocking(move || {
        let l = sse.wait_for_line("seqNum");
        sse.kill();
        l
    })
    .await
    .unwrap();
    assert!(line.contains("2.5"), "{line}");
    s.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn block_wise_answers_are_collected() {
    let s = server("");
    let (mut d, mut m) = registered(&s, "chunky", &["lwm2m=1.1"]).await;
    command(
        &m,
        "chunky",
        json!({"requestID": 1, "msgType": "read", "data": {"path": "/3/0"}}),
    )
    .await;
    let body: &[u8] = br#"[{"bn":"/3/0/","n":"0","vs":"ACME Corporation"},{"n":"9","v":87}]"#;
    let mut blocks = 0;
    loop {
        let req = d.next_request().await;
        assert_eq!(path_of(&req), "3/0");
        let num = req.get_first_option(CoapOption::Block2).map_or(0, |v| uint_of(v) >> 4) as usize;
        let chunk = &body[num * 16..body.len().min(num * 16 + 16)];
        let more = (num + 1) * 16 < body.len();
        let mut resp = unigate_coap::coap_lite::Packet::new();
        resp.header.set_type(MessageType::Acknowledgement);
        resp.header.code = MessageClass::Response(ResponseType::Content);
        resp.header.message_id = req.header.message_id;
        resp.set_token(req.get_token().to_vec());
        resp.add_option(CoapOption::ContentFormat, crate::device::uint(110));
        resp.add_option(
            CoapOption::Block2,
            crate::device::uint(((num as u32) << 4) | (u32::from(more) << 3)),
        );
        resp.payload = chunk.to_vec();
        d.send(&resp).await;
        blocks += 1;
        if !more {
            break;
        }
    }
    assert_eq!(blocks, 5);
    let (_, body) = event(&mut m).await;
    assert_eq!(
        body["data"]["content"],
        json!([{"path": "/3/0/0", "value": "ACME Corporation"}, {"path": "/3/0/9", "value": 87}])
    );
    m.assert_silent().await;
    s.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_holds_one_registration() {
    let s = server("");
    let (mut d, mut m) = registered(&s, "first", &[]).await;
    // A flood of endpoint names from one socket keeps one registration: each supersedes the last.
    for i in 0..50 {
        assert_eq!(code(&d.register(&format!("flood{i}"), &[], "</3/0>").await), "2.01");
    }
    let (topic, body) = event(&mut m).await;
    assert_eq!(
        (topic.as_str(), body["data"]["reason"].as_str()),
        ("lwm2m/first/up/deregister", Some("superseded"))
    );
    let base = format!("http://127.0.0.1:{}/api/v1/lwm2m/clients", s.listener("http").port());
    let (status, list) = tokio::task::spawn_blocking(move || curl(&[], &base)).await.unwrap();
    assert_eq!((status, list["meta"]["count"].as_u64()), (200, Some(1)));
    assert_eq!(list["data"][0]["ep"], "flood49");
    let metrics = format!("http://127.0.0.1:{}/metrics", s.listener("http").port());
    let text = tokio::task::spawn_blocking(move || {
        let out = std::process::Command::new("curl")
            .args(["-sS", &metrics])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).to_string()
    })
    .await
    .unwrap();
    assert!(text.lines().any(|l| l == "unigate_lwm2m_registrations 1"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("unigate_listener_connections{listener=\"lwm2m\",protocol=\"lwm2m\"}")),
        "{text}"
    );
    s.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn composite_observations_notify_and_cancel() {
    let s = server("");
    let (mut d, mut m) = registered(&s, "multi", &["lwm2m=1.1", "b=U"]).await;
    let paths = json!(["/3303/0/5700", "/3/0/9"]);
    command(
        &m,
        "multi",
        json!({"requestID": 1, "msgType": "observe-composite", "data": {"paths": paths}}),
    )
    .await;
    let req = d.next_request().await;
    assert_eq!(req.header.code, MessageClass::Request(RequestType::Fetch));
    assert_eq!(req.get_first_option(CoapOption::Observe).map(|v| uint_of(v)), Some(0));
    let token = req.get_token().to_vec();
    let first = br#"[{"n":"/3303/0/5700","v":20.5},{"n":"/3/0/9","v":90}]"#;
    d.reply(&req, ResponseType::Content, Some(110), first, Some(1)).await;
    let (topic, body) = event(&mut m).await;
    assert_eq!(
        (topic.as_str(), body["data"]["reqPath"].as_str()),
        ("lwm2m/multi/up/resp", Some("/3303/0/5700,/3/0/9"))
    );
    assert_eq!(body["data"]["content"][1], json!({"path": "/3/0/9", "value": 90}));
    d.notify(&token, 2, 110, br#"[{"n":"/3/0/9","v":89}]"#, false).await;
    let (topic, body) = event(&mut m).await;
    assert_eq!(topic, "lwm2m/multi/up/notify");
    assert_eq!(body["data"]["content"], json!([{"path": "/3/0/9", "value": 89}]));
    command(
        &m,
        "multi",
        json!({"requestID": 2, "msgType": "cancel-observe-composite", "data": {"paths": paths}}),
    )
    .await;
    let req = d.next_request().await;
    assert_eq!(req.get_first_option(CoapOption::Observe).map(|v| uint_of(v)), Some(1));
    d.reply(&req, ResponseType::Content, Some(110), first, None).await;
    assert_eq!(event(&mut m).await.1["requestID"], 2);
    let rst = d
        .notify(&token, 3, 110, br#"[{"n":"/3/0/9","v":88}]"#, true)
        .await
        .unwrap();
    assert_eq!(rst.header.get_type(), MessageType::Reset);
    s.stop();
}
