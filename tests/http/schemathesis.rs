//! The OpenAPI document checked against the live API: schemathesis (PyPI, pinned in
//! scripts/test.sh) reads `/api/v1/openapi.json` from a running server, generates requests for
//! every operation (valid and invalid ones) with management credentials, and checks each answer:
//! no 5xx, a status and a content type the document declares for the operation, and a body
//! that fits the declared schema.

use std::process::Command;

use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, Event, MqttOptions};
use rumqttc::Outgoing;
use unigate::config::Config;
use unigate::server::{self, StartOptions};
use unigate_auth::password::PasswordStore;
use unigate_auth::Secret;

use crate::util::*;

/// The schemathesis version scripts/test.sh installs; the check names below are its.
const SCHEMATHESIS: &str = "st, version 4.32.5";

#[test]
fn the_openapi_document_matches_what_the_server_answers() {
    crate::common::proc::require("st");
    let version = Command::new("st").arg("--version").output().expect("run st --version");
    assert_eq!(
        String::from_utf8_lossy(&version.stdout).trim(),
        SCHEMATHESIS,
        "scripts/test.sh installs schemathesis==4.32.5"
    );
    let tmp = tempfile::Builder::new()
        .prefix("unigate-schemathesis-")
        .tempdir()
        .unwrap();
    let dir = tmp.path();
    let passwd = dir.join("passwd.toml");
    let mut store = PasswordStore::new(&passwd);
    store.add("admin", &Secret::new("admin-password")).unwrap();
    store.save().unwrap();
    // Everything needs credentials: the publish API through the listener's chain, the
    // management API also through the admins list. Started from a file, so that
    // `POST /api/v1/auth/reload` really reloads.
    let config = dir.join("unigate.toml");
    std::fs::write(
        &config,
        format!(
            "workers = 2\nsys_interval = \"0s\"\n\
             [auth]\naudit = false\n\
             [auth.chains.web]\nauthenticators = [\"users\"]\nno_match = \"deny\"\n\
             [auth.authenticators.users]\nkind = \"password\"\nfile = {passwd:?}\n\
             [management]\nadmins = [\"admin\"]\n\
             [[listeners]]\nname = \"mqtt\"\nprotocol = \"mqtt\"\nbind = \"127.0.0.1:0\"\n\
             [[listeners]]\nname = \"http\"\nprotocol = \"http\"\nbind = \"127.0.0.1:0\"\nauth = \"web\"\n"
        ),
    )
    .unwrap();
    let opts = StartOptions {
        handle_signals: false,
        config_path: Some(config.clone()),
    };
    let running = server::start(Config::load(&config, Vec::new()).unwrap(), [127, 0, 0, 1].into(), opts).unwrap();
    let s = TestServer {
        addr: running.addr("mqtt").unwrap(),
        server: Some(running),
    };
    // Something for the generated requests to find: schemathesis tries "0" first for a string
    // path parameter, so an offline session "0" with a subscription, and a message retained
    // on topic "0".
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut opts = MqttOptions::new("0", "127.0.0.1", s.port());
        opts.set_clean_start(false);
        opts.set_session_expiry_interval(Some(3600));
        let (client, mut ev) = AsyncClient::new(opts, 10);
        client.subscribe("sensors/#", QoS::AtLeastOnce).await.unwrap();
        client
            .publish("0", QoS::AtLeastOnce, true, "retained zero")
            .await
            .unwrap();
        client.disconnect().await.unwrap();
        // The requests go out in order: once DISCONNECT is written, the rest was.
        within("the session and the retained message", async {
            loop {
                match ev.poll().await {
                    Ok(Event::Outgoing(Outgoing::Disconnect)) => break,
                    Ok(_) => {}
                    Err(e) => panic!("MQTT client: {e}"),
                }
            }
        })
        .await;
    });
    let base = format!("http://127.0.0.1:{}", s.listener("http").port());
    let out = Command::new("timeout")
        .args(["170", "st", "run"])
        .arg(format!("{base}/api/v1/openapi.json"))
        .args(["--url", &base])
        .args(["--auth", "admin:admin-password"])
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
        ])
        // Bounded: a few dozen cases per operation, one worker, a fixed seed (a failure can be
        // replayed), no shrinking (a failure's first example is enough to read).
        .args(["--max-examples", "50", "--workers", "1", "--seed", "6", "--no-shrink"])
        .args(["--phases", "examples,coverage,fuzzing"])
        .args(["--request-timeout", "5"])
        .args(["--suppress-health-check", "all"])
        .env("NO_COLOR", "1")
        .env("SCHEMATHESIS_TELEMETRY", "false")
        .current_dir(dir)
        .output()
        .expect("run schemathesis");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "schemathesis found problems ({}):\n{stdout}\n{stderr}",
        out.status
    );
    // Its summary, for `--nocapture`.
    eprintln!("{stdout}");
    s.stop();
}
