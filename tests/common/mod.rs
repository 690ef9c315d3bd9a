//! Shared helpers for the black-box tests: the real server on a loopback port picked by the OS.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod pki;
pub mod proc;

use std::net::SocketAddr;
use std::time::Duration;

use unigate::config::Config;
use unigate::server::{self, RunningServer, StartOptions};

/// A running server and the address of its MQTT listener.
pub struct TestServer {
    pub server: Option<RunningServer>,
    pub addr: SocketAddr,
}

impl TestServer {
    /// Starts a server with one MQTT listener on 127.0.0.1:0. `extra` is TOML appended to the
    /// configuration (e.g. an `[mqtt]` section); `limits` goes inside the listener's
    /// `[listeners.limits]` table (may be empty).
    pub fn start_with(extra: &str, limits: &str) -> TestServer {
        let text = format!(
            "workers = 2\nsys_interval = \"0s\"\n{extra}\n[[listeners]]\nname = \"mqtt\"\nprotocol = \"mqtt\"\nbind = \"127.0.0.1:0\"\n[listeners.limits]\n{limits}\n"
        );
        let config = Config::parse(&text, "test", Vec::new()).expect("test config");
        let server = server::start(config, [127, 0, 0, 1].into(), StartOptions::default()).expect("server starts");
        let addr = server.addr("mqtt").expect("mqtt listener");
        TestServer {
            server: Some(server),
            addr,
        }
    }

    /// Starts a server from a whole configuration text, which must have a listener named
    /// `mqtt`.
    pub fn start_text(text: &str) -> TestServer {
        let config = Config::parse(text, "test", Vec::new()).expect("test config");
        let server = server::start(config, [127, 0, 0, 1].into(), StartOptions::default()).expect("server starts");
        let addr = server.addr("mqtt").expect("mqtt listener");
        TestServer {
            server: Some(server),
            addr,
        }
    }

    /// The address a listener is bound to.
    pub fn listener(&self, name: &str) -> SocketAddr {
        self.server.as_ref().expect("running").addr(name).expect("listener")
    }

    /// A server with the defaults.
    pub fn start() -> TestServer {
        Self::start_with("", "")
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn broker(&self) -> &unigate::broker::Broker {
        &self.server.as_ref().expect("running").broker
    }

    /// Stops the server and waits for it.
    pub fn stop(mut self) {
        if let Some(s) = self.server.take() {
            s.stop().expect("clean stop");
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(s) = self.server.take() {
            let _ = s.stop();
        }
    }
}

/// Upper bound for any single wait in a test; waits are for events, this only stops a hang.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// A psk authenticator's key file in a fresh temporary folder, holding `identity` with `key`
/// (hex-encoded in the file, as libcoap's `-k` sends the ASCII bytes). Returns the folder (to
/// remove at the end) and the file.
pub fn psk_file(tag: &str, identity: &str, key: &[u8]) -> (std::path::PathBuf, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("unigate-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("psk.toml");
    let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
    std::fs::write(&file, format!("[keys]\n\"{identity}\" = \"hex:{hex}\"\n")).expect("write psk file");
    (dir, file)
}
