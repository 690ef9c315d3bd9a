//! The `unigate` binary itself: start-up lines, check-config, a clean stop on SIGTERM.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_unigate");

/// `text` in `unigate.toml` of a fresh directory, removed when the returned guard drops.
fn write_temp(name: &str, text: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::Builder::new()
        .prefix(&format!("unigate-cli-{name}-"))
        .tempdir()
        .unwrap();
    let path = dir.path().join("unigate.toml");
    std::fs::File::create(&path)
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    (dir, path)
}

#[test]
fn check_config_accepts_the_example() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/unigate.example.toml");
    let out = Command::new(BIN).args(["check-config", example]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("OK (5 listeners)"));
}

#[test]
fn check_config_names_the_bad_key_in_one_line() {
    let (_dir, path) = write_temp(
        "bad",
        "[[listeners]]\nname = \"m\"\nprotocol = \"mqtt\"\nbind = \"127.0.0.1:0\"\n[listeners.limits]\nmax_conections = 5\n",
    );
    let out = Command::new(BIN).arg("check-config").arg(&path).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("listeners[0].limits"), "{err}");
    assert!(err.contains("max_conections"), "{err}");
}

#[test]
fn check_config_reports_a_missing_file() {
    let out = Command::new(BIN)
        .args(["check-config", "/nonexistent/unigate.toml"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read"));
}

#[test]
fn serve_prints_one_line_per_listener_and_stops_on_sigterm() {
    let (_dir, path) = write_temp(
        "serve",
        "sys_interval = \"0s\"\n[[listeners]]\nname = \"one\"\nprotocol = \"mqtt\"\nbind = \"127.0.0.1:0\"\n\
         [[listeners]]\nname = \"two\"\nprotocol = \"mqtt\"\nbind = \"127.0.0.1:0\"\n",
    );
    let mut child = Command::new(BIN)
        .args(["serve", "--storage", "memory", "--config"])
        .arg(&path)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    let second = lines.next().unwrap().unwrap();
    assert!(
        first.starts_with("unigate: listener \"one\" (mqtt) on 127.0.0.1:"),
        "{first}"
    );
    assert!(
        second.starts_with("unigate: listener \"two\" (mqtt) on 127.0.0.1:"),
        "{second}"
    );
    // The announced port accepts MQTT.
    let addr = first.rsplit(' ').next().unwrap();
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.write_all(&[0x10, 0x0c, 0, 4, b'M', b'Q', b'T', b'T', 4, 2, 0, 60, 0, 0])
        .unwrap();
    let mut ack = [0u8; 4];
    std::io::Read::read_exact(&mut s, &mut ack).unwrap();
    assert_eq!(ack, [0x20, 0x02, 0x00, 0x00]);
    let status = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success());
    assert!(child.wait().unwrap().success());
}

#[test]
fn a_port_in_use_is_one_readable_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let (_dir, path) = write_temp(
        "inuse",
        &format!("[[listeners]]\nname = \"m\"\nprotocol = \"mqtt\"\nbind = \"127.0.0.1:{port}\"\n"),
    );
    let out = Command::new(BIN)
        .args(["serve", "--storage", "memory", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("listener \"m\""), "{err}");
    assert!(err.to_lowercase().contains("address"), "{err}");
}

/// Reads one MQTT packet (small packets only: one-byte remaining length).
fn read_packet(s: &mut std::net::TcpStream) -> Vec<u8> {
    let mut head = [0u8; 2];
    std::io::Read::read_exact(s, &mut head).unwrap();
    let mut body = vec![0u8; head[1] as usize];
    std::io::Read::read_exact(s, &mut body).unwrap();
    let mut p = head.to_vec();
    p.extend(body);
    p
}

/// PUBLISH QoS 1 on `t` with packet id `id` over MQTT 5; returns the PUBACK reason code.
fn publish_reason(s: &mut std::net::TcpStream, id: u8) -> u8 {
    s.write_all(&[0x32, 0x07, 0x00, 0x01, b't', 0x00, id, 0x00, b'x'])
        .unwrap();
    let ack = read_packet(s);
    assert_eq!(ack[0], 0x40, "{ack:?}");
    assert_eq!(ack[3], id);
    if ack[1] >= 3 {
        ack[4]
    } else {
        0
    }
}

#[test]
fn sighup_reloads_the_acl_and_a_bad_file_changes_nothing() {
    let open = "sys_interval = \"0s\"\n[[listeners]]\nname = \"m\"\nprotocol = \"mqtt\"\nbind = \"127.0.0.1:0\"\n";
    let (_dir, path) = write_temp("reload", open);
    let mut child = Command::new(BIN)
        .args(["serve", "--storage", "memory", "--config"])
        .arg(&path)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    let addr = first.rsplit(' ').next().unwrap().to_string();
    let mut s = std::net::TcpStream::connect(&addr).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
    s.write_all(&[0x10, 0x0d, 0, 4, b'M', b'Q', b'T', b'T', 5, 2, 0, 60, 0, 0, 0])
        .unwrap();
    assert_eq!(read_packet(&mut s)[0], 0x20);
    assert!(publish_reason(&mut s, 1) < 0x80);

    let hup = |child: &std::process::Child| {
        assert!(Command::new("kill")
            .arg("-HUP")
            .arg(child.id().to_string())
            .status()
            .unwrap()
            .success());
    };
    std::fs::write(&path, format!("{open}[acl]\nno_match = \"deny\"\n")).unwrap();
    hup(&child);
    let line = lines.next().unwrap().unwrap();
    assert!(line.contains("configuration reloaded"), "{line}");
    // The same connection is now refused: the ACL applies to live connections too.
    assert_eq!(publish_reason(&mut s, 2), 0x87);

    std::fs::write(&path, format!("{open}[acl]\nno_match = \"maybe\"\n")).unwrap();
    hup(&child);
    let line = lines.next().unwrap().unwrap();
    assert!(
        line.contains("reload failed") && line.contains("acl.no_match"),
        "{line}"
    );
    assert_eq!(publish_reason(&mut s, 3), 0x87);

    assert!(Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap()
        .success());
    assert!(child.wait().unwrap().success());
}

#[test]
fn passwd_adds_lists_and_removes_users_reading_the_password_from_stdin() {
    let (tmp, _) = write_temp("passwd", "");
    let file = tmp.path().join("passwd.toml");
    let run = |args: &[&str], stdin: &str| {
        let mut child = Command::new(BIN)
            .arg("passwd")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
        child.wait_with_output().unwrap()
    };
    let f = file.to_str().unwrap();
    assert!(run(&["add", f, "alice"], "s3cret-alice\n").status.success());
    assert!(run(&["add", f, "bob"], "s3cret-bob\n").status.success());
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.contains("$argon2id$") && !text.contains("s3cret"), "{text}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
    }
    let list = run(&["list", f], "");
    assert_eq!(
        String::from_utf8_lossy(&list.stdout).lines().collect::<Vec<_>>(),
        vec!["alice", "bob"]
    );
    assert!(run(&["remove", f, "bob"], "").status.success());
    let gone = run(&["remove", f, "bob"], "");
    assert!(!gone.status.success());
    assert!(String::from_utf8_lossy(&gone.stderr).contains("no user"));
    let list = run(&["list", f], "");
    assert_eq!(String::from_utf8_lossy(&list.stdout).trim(), "alice");
}
