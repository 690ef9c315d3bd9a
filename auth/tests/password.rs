//! The password authenticator, its store and its hash formats, through the public API.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use pbkdf2::password_hash::PasswordHasher as _;
use sha2::{Digest as _, Sha256};
use unigate_auth::password::{
    cli_add, cli_import, cli_list, cli_remove, Argon2Cost, Clock, HashFormat, Imported, PasswordAuthenticator,
    PasswordConfig, PasswordError, PasswordStore, StoredHash, UnknownUser, MAX_PASSWORD_LEN,
};
use unigate_auth::{Authenticator, Chain, Credentials, Decision, DenyReason, NoMatch, Outcome, Protocol, Secret};

/// Cheap argon2id for tests that are not about cost.
const CHEAP: Argon2Cost = Argon2Cost { m_kib: 64, t: 1, p: 1 };

// ---------------------------------------------------------------------------------------------
// helpers

/// A directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        static N: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let dir = std::env::temp_dir().join(format!(
            "unigate-password-{}-{}-{nanos}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn file(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Polls a future that never pends (the authenticator's).
fn block_on<F: Future>(f: F) -> F::Output {
    struct Noop;
    impl Wake for Noop {
        fn wake(self: Arc<Self>) {}
    }
    let waker = Waker::from(Arc::new(Noop));
    let mut cx = Context::from_waker(&waker);
    let mut f = std::pin::pin!(f);
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
    }
}

fn creds(user: Option<&str>, password: Option<&[u8]>) -> Credentials {
    Credentials {
        username: user.map(str::to_owned),
        password: password.map(Secret::new),
        ..Credentials::new(Protocol::Mqtt, "mqtt")
    }
}

fn auth(a: &PasswordAuthenticator, user: &str, password: &[u8]) -> Decision {
    block_on(a.authenticate(&creds(Some(user), Some(password))))
}

/// A clock the test moves by hand.
#[derive(Debug)]
struct ManualClock(Mutex<Instant>);

impl ManualClock {
    fn new() -> Arc<ManualClock> {
        Arc::new(ManualClock(Mutex::new(Instant::now())))
    }
    fn advance(&self, by: Duration) {
        *self.0.lock() += by;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        *self.0.lock()
    }
}

/// A password file with `users` (name, password) hashed at `cost`.
fn write_store(path: &Path, users: &[(&str, &str)], cost: Argon2Cost) {
    let mut store = PasswordStore::new(path).with_cost(cost);
    for (user, password) in users {
        store.add(user, &Secret::new(*password)).unwrap();
    }
    store.save().unwrap();
}

fn parse(s: &str) -> StoredHash {
    StoredHash::parse(s).unwrap_or_else(|e| panic!("{e}"))
}

fn sha256_entry(salt: &[u8], password: &[u8]) -> String {
    use base64::Engine as _;
    let digest = Sha256::new().chain_update(salt).chain_update(password).finalize();
    let b64 = base64::engine::general_purpose::STANDARD;
    format!("$sha256${}${}", b64.encode(salt), b64.encode(digest))
}

fn min_time(n: usize, mut f: impl FnMut()) -> Duration {
    (0..n)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .min()
        .unwrap()
}

// ---------------------------------------------------------------------------------------------
// hash formats

#[test]
fn argon2id_generated_hashes_verify() {
    let h = StoredHash::generate(b"hunter2", CHEAP).unwrap();
    assert_eq!(h.format(), HashFormat::Argon2id);
    assert!(h.as_str().starts_with("$argon2id$v=19$m=64,t=1,p=1$"), "{}", h.as_str());
    assert!(h.verify(b"hunter2"));
    assert!(!h.verify(b"hunter3"));
    assert!(!h.verify(b""));
    // A fresh salt every time.
    assert_ne!(h.as_str(), StoredHash::generate(b"hunter2", CHEAP).unwrap().as_str());
    // Verification uses the parameters in the hash, not the defaults.
    assert!(parse(h.as_str()).verify(b"hunter2"));
}

/// The reference test vectors of the Argon2 specification's implementation (phc-winner-argon2,
/// password "password", salt "somesalt").
#[test]
fn argon2_reference_vectors_verify() {
    for (hash, format) in [
        (
            "$argon2id$v=19$m=256,t=2,p=1$c29tZXNhbHQ$nf65EOgLrQMR/uIPnA4rEsF5h7TKyQwu9U1bMCHGi/4",
            HashFormat::Argon2id,
        ),
        (
            "$argon2id$v=19$m=256,t=2,p=2$c29tZXNhbHQ$bQk8UB/VmZZF4Oo79iDXuL5/0ttZwg2f/5U52iv1cDc",
            HashFormat::Argon2id,
        ),
        (
            "$argon2id$v=19$m=65536,t=2,p=1$c29tZXNhbHQ$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc",
            HashFormat::Argon2id,
        ),
        (
            "$argon2i$v=19$m=256,t=2,p=1$c29tZXNhbHQ$iekCn0Y3spW+sCcFanM2xBT63UP2sghkUoHLIUpWRS8",
            HashFormat::Argon2i,
        ),
    ] {
        let h = parse(hash);
        assert_eq!(h.format(), format);
        assert!(h.verify(b"password"), "{hash}");
        assert!(!h.verify(b"Password"), "{hash}");
    }
}

#[test]
fn argon2_entries_that_are_refused() {
    for (hash, why) in [
        (
            "$argon2d$v=19$m=256,t=2,p=1$c29tZXNhbHQ$nf65EOgLrQMR/uIPnA4rEsF5h7TKyQwu9U1bMCHGi/4",
            "argon2d",
        ),
        ("$argon2id$v=19$m=256,t=2,p=1$c29tZXNhbHQ", "salt or a hash"),
        (
            "$argon2id$v=19$m=2000000,t=2,p=1$c29tZXNhbHQ$nf65EOgLrQMR/uIPnA4rEsF5h7TKyQwu9U1bMCHGi/4",
            "cost too high",
        ),
        (
            "$argon2id$v=19$m=65536,t=100,p=1$c29tZXNhbHQ$nf65EOgLrQMR/uIPnA4rEsF5h7TKyQwu9U1bMCHGi/4",
            "cost too high",
        ),
        ("$argon2id$v=19$m=256,t=2,p=1$!!!$nf65EOgLrQMR", "argon2"),
        ("$md5$abc", "unrecognised"),
        ("hunter2", "unrecognised"),
        ("", "unrecognised"),
    ] {
        let e = StoredHash::parse(hash).unwrap_err().to_string();
        assert!(e.contains(why), "{hash}: {e}");
    }
}

#[test]
fn bcrypt_generated_hashes_verify() {
    let h = parse(&bcrypt::hash("hunter2", 4).unwrap());
    assert_eq!(h.format(), HashFormat::Bcrypt);
    assert!(h.verify(b"hunter2"));
    assert!(!h.verify(b"hunter3"));
}

/// Hashes made by other bcrypt implementations: Python's bcrypt and an online tool (from the
/// bcrypt crate's tests), and PHP's `password_hash` (the php.net `password_verify` example).
#[test]
fn bcrypt_hashes_from_elsewhere_verify() {
    for (hash, password) in [
        (
            "$2b$04$EGdrhbKUv8Oc9vGiXX0HQOxSg445d458Muh7DAHskb6QbtCvdxcie",
            "correctbatteryhorsestapler",
        ),
        (
            "$2a$04$UuTkLRZZ6QofpDOlMz32MuuxEHA43WOemOYHPz6.SjsVsyO1tDU96",
            "password",
        ),
        (
            "$2y$10$.vGA1O9wmRjrwAVXD98HNOgsNpDczlqm3Jq7KnEd1rVAGv3Fykk1a",
            "rasmuslerdorf",
        ),
    ] {
        let h = parse(hash);
        assert!(h.verify(password.as_bytes()), "{hash}");
        assert!(!h.verify(b"wrong"), "{hash}");
    }
}

#[test]
fn bcrypt_entries_that_are_refused() {
    let good = "$2b$04$EGdrhbKUv8Oc9vGiXX0HQOxSg445d458Muh7DAHskb6QbtCvdxcie";
    for (hash, why) in [
        (good.replace("$2b$", "$2x$"), "unrecognised"),
        (good.replace("$04$", "$17$"), "cost 17"),
        (good.replace("$04$", "$03$"), "cost 3"),
        (good[..50].to_owned(), "bcrypt"),
    ] {
        let e = StoredHash::parse(&hash).unwrap_err().to_string();
        assert!(e.contains(why), "{hash}: {e}");
    }
}

#[test]
fn pbkdf2_generated_hashes_verify() {
    let params = pbkdf2::Params::new(1000).unwrap();
    let sha256 = pbkdf2::Pbkdf2::new(pbkdf2::Algorithm::Pbkdf2Sha256, params)
        .hash_password_with_salt(b"hunter2", b"0123456789abcdef")
        .unwrap()
        .to_string();
    assert!(sha256.starts_with("$pbkdf2-sha256$i=1000,l=32$"), "{sha256}");
    let sha512 = pbkdf2::Pbkdf2::new(pbkdf2::Algorithm::Pbkdf2Sha512, params)
        .hash_password_with_salt(b"hunter2", b"0123456789abcdef")
        .unwrap()
        .to_string();
    for (hash, format) in [(sha256, HashFormat::Pbkdf2Sha256), (sha512, HashFormat::Pbkdf2Sha512)] {
        let h = parse(&hash);
        assert_eq!(h.format(), format);
        assert!(h.verify(b"hunter2"));
        assert!(!h.verify(b"hunter3"));
    }
}

/// The PBKDF2-HMAC-SHA256 test vector P = "passwordPASSWORDpassword",
/// S = "saltSALTsaltSALTsaltSALTsaltSALTsalt", c = 4096, dkLen = 40 (digest 348c89db…, as
/// published with the RFC 6070 vectors for SHA-256; also reproduced with Python's hashlib).
#[test]
fn pbkdf2_published_vector_verifies() {
    let h = parse(
        "$pbkdf2-sha256$i=4096,l=40$c2FsdFNBTFRzYWx0U0FMVHNhbHRTQUxUc2FsdFNBTFRzYWx0\
         $NIyJ28vTKy8y2BS4EW6EzysXNH68GAAYHE4qH7jdU+HGNVGMfaxH6Q",
    );
    assert!(h.verify(b"passwordPASSWORDpassword"));
    assert!(!h.verify(b"password"));
}

#[test]
fn pbkdf2_entries_that_are_refused() {
    for (hash, why) in [
        // passlib's modular crypt form: rounds without `i=`.
        (
            "$pbkdf2-sha256$29000$N2YuJYSQco5RSqk1xhijFA$ZD2o8aCAhL6IFKTwbfXUlN/sb/yhnVNUoYdMTzzyOXs",
            "PHC",
        ),
        (
            "$pbkdf2-sha256$i=999,l=32$MDEyMzQ1Njc4OWFiY2RlZg$ZD2o8aCAhL6IFKTwbfXUlN/sb/yhnVNUoYdMTzzyOXs",
            "parameters",
        ),
        (
            "$pbkdf2-sha256$i=20000000,l=32$MDEyMzQ1Njc4OWFiY2RlZg$ZD2o8aCAhL6IFKTwbfXUlN/sb/yhnVNUoYdMTzzyOXs",
            "too high",
        ),
        (
            "$pbkdf2-sha1$i=1000$MDEyMzQ1Njc4OWFiY2RlZg$ZD2o8aCAhL6IFKTwbfXUlN/sb/yhnVNUoYdMTzzyOXs",
            "unrecognised",
        ),
    ] {
        let e = StoredHash::parse(hash).unwrap_err().to_string();
        assert!(e.contains(why), "{hash}: {e}");
    }
}

#[test]
fn salted_sha256_generated_hashes_verify() {
    let entry = sha256_entry(b"pepper-and-salt", b"hunter2");
    let h = parse(&entry);
    assert_eq!(h.format(), HashFormat::SaltedSha256);
    assert!(h.verify(b"hunter2"));
    assert!(!h.verify(b"hunter3"));
    // The salt is a prefix: sha256(password ‖ salt) is a different digest.
    let suffix = {
        use base64::Engine as _;
        let d = Sha256::new()
            .chain_update(b"hunter2")
            .chain_update(b"pepper-and-salt")
            .finalize();
        let b64 = base64::engine::general_purpose::STANDARD;
        format!("$sha256${}${}", b64.encode(b"pepper-and-salt"), b64.encode(d))
    };
    assert!(!parse(&suffix).verify(b"hunter2"));
}

/// FIPS 180-2's SHA-256("abc") = ba7816bf…: salt "ab" (YWI=) and password "c".
#[test]
fn salted_sha256_published_vector_verifies() {
    for entry in [
        "$sha256$YWI=$ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0=",
        // Padding is optional.
        "$sha256$YWI$ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0",
    ] {
        let h = parse(entry);
        assert!(h.verify(b"c"));
        assert!(!h.verify(b"abc"));
    }
    // An empty salt: plain SHA-256 of the password.
    assert!(parse("$sha256$$ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0=").verify(b"abc"));
}

#[test]
fn salted_sha256_entries_that_are_refused() {
    for (hash, why) in [
        ("$sha256$YWI=", "$sha256$<base64 salt>$<base64 digest>"),
        ("$sha256$YWI=$AAAA", "not 32 bytes"),
        (
            "$sha256$%%$ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0=",
            "salt is not valid base64",
        ),
        (
            "$sha256$YWI=$ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0=$",
            "digest is not valid base64",
        ),
    ] {
        let e = StoredHash::parse(hash).unwrap_err().to_string();
        assert!(e.contains(why), "{hash}: {e}");
    }
}

#[test]
fn passwords_over_the_cap_never_match_and_are_not_stored() {
    let long = vec![b'a'; MAX_PASSWORD_LEN + 1];
    let h = parse(&sha256_entry(b"salt", &long));
    assert!(!h.verify(&long));
    assert!(matches!(
        StoredHash::generate(&long, CHEAP),
        Err(PasswordError::PasswordTooLong { max: MAX_PASSWORD_LEN })
    ));
    let at_cap = vec![b'a'; MAX_PASSWORD_LEN];
    assert!(StoredHash::generate(&at_cap, CHEAP).unwrap().verify(&at_cap));
}

// ---------------------------------------------------------------------------------------------
// the store

#[test]
fn store_round_trips_through_its_file() {
    let dir = TempDir::new();
    let path = dir.file("passwd.toml");
    let mut store = PasswordStore::new(&path).with_cost(CHEAP);
    assert!(!store.add("alice", &Secret::new("wonderland")).unwrap());
    assert!(!store
        .insert_hash("bob", parse(&bcrypt::hash("builder", 4).unwrap()))
        .unwrap());
    assert!(!store
        .insert_hash("carol.c", parse(&sha256_entry(b"s", b"singer")))
        .unwrap());
    store.save().unwrap();

    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains("[users.alice]"), "{text}");
    assert!(text.contains("[users.\"carol.c\"]"), "{text}");
    assert!(text.contains("hash = \"$argon2id$v=19$m=64,t=1,p=1$"), "{text}");

    let loaded = PasswordStore::load(&path).unwrap();
    assert_eq!(loaded.list(), ["alice", "bob", "carol.c"]);
    for user in ["alice", "bob", "carol.c"] {
        assert_eq!(loaded.hash(user).unwrap().as_str(), store.hash(user).unwrap().as_str());
    }
    assert_eq!(loaded.verify("alice", b"wonderland"), Some(true));
    assert_eq!(loaded.verify("bob", b"builder"), Some(true));
    assert_eq!(loaded.verify("carol.c", b"singer"), Some(true));
    assert_eq!(loaded.verify("alice", b"builder"), Some(false));
    assert_eq!(loaded.verify("dave", b"x"), None);

    // Replace and remove.
    let mut loaded = loaded.with_cost(CHEAP);
    assert!(loaded.add("alice", &Secret::new("looking-glass")).unwrap());
    assert!(loaded.remove("bob"));
    assert!(!loaded.remove("bob"));
    loaded.save().unwrap();
    let again = PasswordStore::load(&path).unwrap();
    assert_eq!(again.list(), ["alice", "carol.c"]);
    assert_eq!(again.verify("alice", b"looking-glass"), Some(true));
    assert_eq!(again.verify("alice", b"wonderland"), Some(false));
}

#[cfg(unix)]
#[test]
fn saved_files_are_mode_0600_and_no_temp_file_is_left() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = TempDir::new();
    let path = dir.file("passwd.toml");
    // An existing, world-readable file is replaced by a private one.
    std::fs::write(&path, "[users]\n").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    write_store(&path, &[("alice", "pw")], CHEAP);
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "{mode:o}");
    // A new file too.
    let fresh = dir.file("new.toml");
    write_store(&fresh, &[("bob", "pw")], CHEAP);
    assert_eq!(std::fs::metadata(&fresh).unwrap().permissions().mode() & 0o777, 0o600);
    let names: Vec<_> = std::fs::read_dir(&dir.0)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
}

#[test]
fn a_bad_hash_names_the_user_and_the_file_but_not_the_hash() {
    let dir = TempDir::new();
    let path = dir.file("passwd.toml");
    let good = StoredHash::generate(b"pw", CHEAP).unwrap();
    std::fs::write(
        &path,
        format!(
            "[users.alice]\nhash = \"{}\"\n[users.mallory]\nhash = \"$md5$s3cr3tdigest\"\n",
            good.as_str()
        ),
    )
    .unwrap();
    let e = PasswordStore::load(&path).unwrap_err();
    match &e {
        PasswordError::BadHash { path: p, user, .. } => {
            assert_eq!(p, &path);
            assert_eq!(user, "mallory");
        }
        other => panic!("{other:?}"),
    }
    let shown = e.to_string();
    assert!(shown.contains("passwd.toml") && shown.contains("mallory"), "{shown}");
    assert!(!shown.contains("s3cr3tdigest"), "{shown}");
    assert!(!format!("{e:?}").contains("s3cr3tdigest"));
}

#[test]
fn syntax_errors_give_a_line_but_not_the_text() {
    let dir = TempDir::new();
    let path = dir.file("passwd.toml");
    std::fs::write(&path, "[users.alice]\nhash = \"$argon2id$v=19$s3cr3tdigest\n").unwrap();
    let e = PasswordStore::load(&path).unwrap_err();
    assert!(matches!(e, PasswordError::Syntax { line: 2, .. }), "{e:?}");
    assert!(!e.to_string().contains("s3cr3tdigest"), "{e}");
    assert!(!format!("{e:?}").contains("s3cr3tdigest"));

    // Unknown keys are typos, not extensions.
    std::fs::write(&path, "[users.alice]\nhsh = \"x\"\n").unwrap();
    let e = PasswordStore::load(&path).unwrap_err();
    assert!(matches!(e, PasswordError::Syntax { .. }), "{e:?}");
    assert!(e.to_string().contains("hsh"), "{e}");

    std::fs::write(
        &path,
        "[users.\"\"]\nhash = \"$sha256$$ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0=\"\n",
    )
    .unwrap();
    assert!(matches!(PasswordStore::load(&path), Err(PasswordError::BadUser { .. })));

    let missing = PasswordStore::load(dir.file("missing.toml")).unwrap_err();
    assert!(
        matches!(missing, PasswordError::Io { action: "read", .. }),
        "{missing:?}"
    );
    assert!(missing.to_string().contains("missing.toml"), "{missing}");
}

#[test]
fn add_refuses_bad_input() {
    let mut store = PasswordStore::new("unused.toml").with_cost(CHEAP);
    assert!(matches!(
        store.add("alice", &Secret::new("")),
        Err(PasswordError::EmptyPassword)
    ));
    assert!(matches!(
        store.add("alice", &Secret::new(vec![b'x'; MAX_PASSWORD_LEN + 1])),
        Err(PasswordError::PasswordTooLong { .. })
    ));
    assert!(matches!(
        store.add("", &Secret::new("pw")),
        Err(PasswordError::BadUser { .. })
    ));
    assert!(matches!(
        store.add("a\u{0}b", &Secret::new("pw")),
        Err(PasswordError::BadUser { .. })
    ));
    assert!(store.is_empty());
}

#[test]
fn argon2_costs_parse_as_phc_parameters() {
    let c: Argon2Cost = "m=19456,t=2,p=1".parse().unwrap();
    assert_eq!(
        c,
        Argon2Cost {
            m_kib: 19456,
            t: 2,
            p: 1
        }
    );
    assert_eq!(c.to_string(), "m=19456,t=2,p=1");
    assert_eq!(
        "t=1, m=47104".parse::<Argon2Cost>().unwrap(),
        Argon2Cost {
            m_kib: 47104,
            t: 1,
            p: 1
        }
    );
    for (bad, why) in [
        ("m=19456", "t (passes) is missing"),
        ("t=1", "m (memory in KiB) is missing"),
        ("m=19456,t=0", ""),
        ("m=4,t=1", ""),
        ("m=19456,t=1,p=0", "lanes"),
        ("m=2000000,t=1", "at most"),
        ("m=19456,t=1,x=2", "unknown parameter"),
        ("m=19456,t=1,t=2", "twice"),
        ("m=lots,t=1", "not a number"),
        ("19456", "key=value"),
    ] {
        let e = bad.parse::<Argon2Cost>().unwrap_err();
        assert!(e.contains(why), "{bad}: {e}");
    }
}

#[test]
fn cli_import_hashes_many_users_at_once_and_refuses_bad_lines_whole() {
    let dir = TempDir::new();
    let path = dir.file("fleet.toml");
    cli_add(&path, "sensor-1", &Secret::new("old"), CHEAP).unwrap();
    let input = "# fleet of 2026-11\nsensor-1:n3w:with:colons\n\nsensor-2: spaced \r\nsensor-3:x\n";
    let done = cli_import(&path, &mut std::io::Cursor::new(input), CHEAP).unwrap();
    assert_eq!(
        done,
        Imported {
            entries: 3,
            replaced: 1
        }
    );
    let store = PasswordStore::load(&path).unwrap();
    assert_eq!(store.verify("sensor-1", b"n3w:with:colons"), Some(true));
    assert_eq!(store.verify("sensor-2", b" spaced "), Some(true));
    assert_eq!(store.verify("sensor-3", b"x"), Some(true));
    assert!(store.scram("sensor-3").is_some(), "SCRAM verifiers too");

    for (input, line) in [(&b"a:1\nno colon here\n"[..], 2), (&b"a:1\n\n\xff:pw\n"[..], 3)] {
        let e = cli_import(&path, &mut std::io::Cursor::new(input), CHEAP).unwrap_err();
        match e {
            PasswordError::Import { line: l, .. } => assert_eq!(l, line, "{e}"),
            other => panic!("{other:?}"),
        }
        assert!(!e.to_string().contains("colon here"), "the line is not repeated: {e}");
    }
    let e = cli_import(&path, &mut std::io::Cursor::new("b:2\nc:\n"), CHEAP).unwrap_err();
    assert!(
        matches!(e, PasswordError::BadUser { ref user, .. } if user == "c"),
        "{e:?}"
    );
    assert_eq!(
        cli_list(&path).unwrap(),
        ["sensor-1", "sensor-2", "sensor-3"],
        "nothing changed"
    );
}

#[test]
fn cli_helpers_add_remove_and_list() {
    let dir = TempDir::new();
    let path = dir.file("sub-dir-less.toml");
    assert!(cli_list(&path).is_err(), "listing a missing file is an error");
    cli_add(&path, "zoe", &Secret::new("pw-z"), Argon2Cost::DEFAULT).unwrap();
    cli_add(&path, "adam", &Secret::new("pw-a"), CHEAP).unwrap();
    assert_eq!(cli_list(&path).unwrap(), ["adam", "zoe"]);
    // The CLI writes the default (measured) cost, or the one asked for.
    let store = PasswordStore::load(&path).unwrap();
    let d = Argon2Cost::DEFAULT;
    let prefix = format!("$argon2id$v=19$m={},t={},p={}$", d.m_kib, d.t, d.p);
    assert!(store.hash("zoe").unwrap().as_str().starts_with(&prefix));
    assert!(store
        .hash("adam")
        .unwrap()
        .as_str()
        .starts_with("$argon2id$v=19$m=64,t=1,p=1$"));
    assert_eq!(store.verify("zoe", b"pw-z"), Some(true));
    assert!(cli_remove(&path, "zoe").unwrap());
    assert!(!cli_remove(&path, "zoe").unwrap());
    assert_eq!(cli_list(&path).unwrap(), ["adam"]);
}

// ---------------------------------------------------------------------------------------------
// the authenticator

fn authenticator(
    dir: &TempDir,
    users: &[(&str, &str)],
    config: impl FnOnce(&mut PasswordConfig),
) -> PasswordAuthenticator {
    let path = dir.file("passwd.toml");
    write_store(&path, users, CHEAP);
    let mut c = PasswordConfig::new(&path);
    config(&mut c);
    PasswordAuthenticator::new("users", &c).unwrap()
}

#[test]
fn right_password_allows_wrong_denies_missing_parts_ignore() {
    let dir = TempDir::new();
    let a = authenticator(&dir, &[("alice", "wonderland")], |_| {});
    assert_eq!(a.name(), "users");
    assert_eq!(a.kind(), "password");
    match auth(&a, "alice", b"wonderland") {
        Decision::Allow(id) => {
            assert_eq!(id.username.as_deref(), Some("alice"));
            assert_eq!(&*id.authenticator, "users");
            assert_eq!(id.client_id, None);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        auth(&a, "alice", b"Wonderland"),
        Decision::Deny(DenyReason::BadCredentials)
    );
    assert_eq!(auth(&a, "alice", b""), Decision::Deny(DenyReason::BadCredentials));
    assert_eq!(block_on(a.authenticate(&creds(Some("alice"), None))), Decision::Ignore);
    assert_eq!(
        block_on(a.authenticate(&creds(None, Some(b"wonderland")))),
        Decision::Ignore
    );
    assert_eq!(block_on(a.authenticate(&creds(None, None))), Decision::Ignore);
}

#[test]
fn unknown_users_are_ignored_or_denied_per_config() {
    let dir = TempDir::new();
    let ignore = authenticator(&dir, &[("alice", "wonderland")], |_| {});
    assert_eq!(auth(&ignore, "mallory", b"wonderland"), Decision::Ignore);
    let dir = TempDir::new();
    let deny = authenticator(&dir, &[("alice", "wonderland")], |c| c.unknown_user = UnknownUser::Deny);
    assert_eq!(
        auth(&deny, "mallory", b"wonderland"),
        Decision::Deny(DenyReason::BadCredentials)
    );

    // In a chain, an ignored unknown user goes on to the next authenticator / no-match policy.
    let chain = Chain::new(
        "devices",
        vec![Arc::new(ignore) as Arc<dyn Authenticator>],
        NoMatch::Deny,
    );
    assert_eq!(
        block_on(chain.authenticate(&creds(Some("mallory"), Some(b"x")))),
        Outcome::Denied {
            authenticator: Arc::from("chain"),
            reason: DenyReason::NoMatch
        }
    );
    assert!(matches!(
        block_on(chain.authenticate(&creds(Some("alice"), Some(b"wonderland")))),
        Outcome::Allowed(_)
    ));
}

/// Unknown users cost a real verification (against a dummy of the store's cost), so timing
/// does not tell which users exist.
#[test]
fn unknown_users_take_as_long_as_known_ones() {
    let dir = TempDir::new();
    let path = dir.file("passwd.toml");
    write_store(&path, &[("alice", "wonderland")], Argon2Cost::DEFAULT);
    let mut c = PasswordConfig::new(&path);
    c.max_failures = 0;
    let a = PasswordAuthenticator::new("users", &c).unwrap();
    let known = min_time(5, || {
        assert_eq!(auth(&a, "alice", b"nope"), Decision::Deny(DenyReason::BadCredentials))
    });
    let unknown = min_time(5, || assert_eq!(auth(&a, "mallory", b"nope"), Decision::Ignore));
    assert!(
        unknown * 2 > known && known * 2 > unknown,
        "known user {known:?}, unknown user {unknown:?}"
    );
}

#[test]
fn a_megabyte_password_is_refused_without_hashing() {
    let dir = TempDir::new();
    let path = dir.file("passwd.toml");
    write_store(&path, &[("alice", "wonderland")], Argon2Cost::DEFAULT);
    let a = PasswordAuthenticator::new("users", &PasswordConfig::new(&path)).unwrap();
    let huge = creds(Some("alice"), Some(&vec![b'a'; 1 << 20]));
    let huge_unknown = creds(Some("mallory"), Some(&vec![b'a'; 1 << 20]));
    let verify = min_time(2, || {
        let _ = auth(&a, "bob", b"x");
    });
    let refused = min_time(2, || {
        assert_eq!(
            block_on(a.authenticate(&huge)),
            Decision::Deny(DenyReason::BadCredentials)
        );
        assert_eq!(
            block_on(a.authenticate(&huge_unknown)),
            Decision::Deny(DenyReason::BadCredentials)
        );
    });
    assert!(
        refused * 10 < verify,
        "refusing took {refused:?}, a verification {verify:?}"
    );
    assert!(refused < Duration::from_millis(50), "{refused:?}");
}

#[test]
fn failures_throttle_a_user_name_until_the_window_passes() {
    let dir = TempDir::new();
    let clock = ManualClock::new();
    let a = authenticator(&dir, &[("alice", "wonderland"), ("bob", "builder")], |c| {
        c.max_failures = 3;
        c.failure_window = Duration::from_secs(60);
    })
    .with_clock(clock.clone());

    for _ in 0..3 {
        assert_eq!(auth(&a, "alice", b"guess"), Decision::Deny(DenyReason::BadCredentials));
        clock.advance(Duration::from_secs(1));
    }
    // Even the right password is refused now, and other users are not affected.
    assert_eq!(auth(&a, "alice", b"wonderland"), Decision::Deny(DenyReason::Throttled));
    assert!(matches!(auth(&a, "bob", b"builder"), Decision::Allow(_)));
    clock.advance(Duration::from_secs(55));
    assert_eq!(auth(&a, "alice", b"wonderland"), Decision::Deny(DenyReason::Throttled));
    clock.advance(Duration::from_secs(2)); // 60 s after the first failure
    assert!(matches!(auth(&a, "alice", b"wonderland"), Decision::Allow(_)));

    // A success clears the count.
    for _ in 0..2 {
        assert_eq!(auth(&a, "alice", b"guess"), Decision::Deny(DenyReason::BadCredentials));
    }
    assert!(matches!(auth(&a, "alice", b"wonderland"), Decision::Allow(_)));
    for _ in 0..2 {
        assert_eq!(auth(&a, "alice", b"guess"), Decision::Deny(DenyReason::BadCredentials));
    }
    assert!(matches!(auth(&a, "alice", b"wonderland"), Decision::Allow(_)));

    // Over-long passwords count as failures too.
    let long = vec![b'a'; MAX_PASSWORD_LEN + 1];
    for _ in 0..3 {
        assert_eq!(auth(&a, "bob", &long), Decision::Deny(DenyReason::BadCredentials));
    }
    assert_eq!(auth(&a, "bob", b"builder"), Decision::Deny(DenyReason::Throttled));
}

#[test]
fn throttled_attempts_are_answered_without_hashing() {
    let dir = TempDir::new();
    let path = dir.file("passwd.toml");
    write_store(&path, &[("alice", "wonderland")], Argon2Cost::DEFAULT);
    let mut c = PasswordConfig::new(&path);
    c.max_failures = 1;
    let clock = ManualClock::new();
    let a = PasswordAuthenticator::new("users", &c)
        .unwrap()
        .with_clock(clock.clone());
    let verify = min_time(1, || {
        assert_eq!(auth(&a, "alice", b"x"), Decision::Deny(DenyReason::BadCredentials))
    });
    let throttled = min_time(3, || {
        assert_eq!(auth(&a, "alice", b"x"), Decision::Deny(DenyReason::Throttled))
    });
    assert!(
        throttled * 10 < verify,
        "throttled {throttled:?}, verification {verify:?}"
    );
}

#[test]
fn unknown_users_are_throttled_when_denied_and_memory_is_bounded() {
    let dir = TempDir::new();
    let clock = ManualClock::new();
    let a = authenticator(&dir, &[("alice", "wonderland")], |c| {
        c.unknown_user = UnknownUser::Deny;
        c.max_failures = 2;
    })
    .with_clock(clock.clone())
    .with_tracked_users(10);
    for _ in 0..2 {
        assert_eq!(auth(&a, "mallory", b"x"), Decision::Deny(DenyReason::BadCredentials));
    }
    assert_eq!(auth(&a, "mallory", b"x"), Decision::Deny(DenyReason::Throttled));
    for i in 0..50 {
        clock.advance(Duration::from_millis(10));
        assert_eq!(
            auth(&a, &format!("spray{i}"), b"x"),
            Decision::Deny(DenyReason::BadCredentials)
        );
        assert!(a.tracked_users() <= 10);
    }
    assert_eq!(a.tracked_users(), 10);
}

/// A reconnect with the password just verified is answered from the remembered tag, not by
/// hashing again; a different password, an expired entry and a reloaded file all go back to
/// the stored hash.
#[test]
fn a_verified_password_is_remembered_until_it_expires_or_the_file_is_reloaded() {
    let dir = TempDir::new();
    let path = dir.file("passwd.toml");
    write_store(&path, &[("alice", "wonderland")], Argon2Cost::DEFAULT);
    let clock = ManualClock::new();
    let a = PasswordAuthenticator::new("users", &PasswordConfig::new(&path))
        .unwrap()
        .with_clock(clock.clone());
    let allowed = |a: &PasswordAuthenticator, pw: &[u8]| matches!(auth(a, "alice", pw), Decision::Allow(_));
    let first = min_time(1, || assert!(allowed(&a, b"wonderland")));
    assert_eq!(a.remembered_users(), 1);
    let again = min_time(3, || assert!(allowed(&a, b"wonderland")));
    assert!(again * 20 < first, "remembered {again:?}, verified {first:?}");

    // Not a way around the hash: another password is verified, and refused.
    assert_eq!(
        auth(&a, "alice", b"Wonderland"),
        Decision::Deny(DenyReason::BadCredentials)
    );
    assert!(allowed(&a, b"wonderland"), "the remembered password still works");

    // 15 minutes by default: then the hash again (which remembers it anew).
    clock.advance(Duration::from_secs(15 * 60));
    let expired = min_time(1, || assert!(allowed(&a, b"wonderland")));
    assert!(expired > again * 20, "expired {expired:?}, remembered {again:?}");

    // A reload forgets: a changed password is never honoured from memory.
    write_store(&path, &[("alice", "looking-glass")], CHEAP);
    a.reload().unwrap();
    assert_eq!(a.remembered_users(), 0);
    assert_eq!(
        auth(&a, "alice", b"wonderland"),
        Decision::Deny(DenyReason::BadCredentials)
    );
    assert!(allowed(&a, b"looking-glass"));

    // `verified_cache = "0s"` turns it off.
    let off = authenticator(&TempDir::new(), &[("alice", "wonderland")], |c| {
        c.verified_cache = Duration::ZERO
    });
    assert!(allowed(&off, b"wonderland"));
    assert_eq!(off.remembered_users(), 0);
}

#[test]
fn reload_swaps_the_users_and_keeps_them_on_error() {
    let dir = TempDir::new();
    let path = dir.file("passwd.toml");
    write_store(&path, &[("alice", "wonderland")], CHEAP);
    let a = PasswordAuthenticator::new("users", &PasswordConfig::new(&path)).unwrap();
    assert_eq!(auth(&a, "bob", b"builder"), Decision::Ignore);

    write_store(&path, &[("bob", "builder")], CHEAP);
    assert_eq!(a.reload().unwrap(), 1);
    assert!(matches!(auth(&a, "bob", b"builder"), Decision::Allow(_)));
    assert_eq!(auth(&a, "alice", b"wonderland"), Decision::Ignore);

    std::fs::write(&path, "[users.bob]\nhash = \"$md5$x\"\n").unwrap();
    let e = a.reload().unwrap_err();
    assert!(matches!(e, PasswordError::BadHash { .. }), "{e:?}");
    assert!(matches!(auth(&a, "bob", b"builder"), Decision::Allow(_)));
    assert_eq!(a.users(), 1);

    std::fs::remove_file(&path).unwrap();
    assert!(a.reload().is_err());
    assert!(matches!(auth(&a, "bob", b"builder"), Decision::Allow(_)));

    // Reloading while others authenticate: every answer is from one whole file or the other.
    write_store(&path, &[("bob", "builder")], CHEAP);
    std::thread::scope(|s| {
        s.spawn(|| {
            for _ in 0..20 {
                a.reload().unwrap();
            }
        });
        for _ in 0..50 {
            assert!(matches!(auth(&a, "bob", b"builder"), Decision::Allow(_)));
        }
    });
}

#[test]
fn a_missing_or_bad_file_fails_construction() {
    let dir = TempDir::new();
    let e = PasswordAuthenticator::new("users", &PasswordConfig::new(dir.file("nope.toml"))).unwrap_err();
    assert!(e.to_string().contains("nope.toml"), "{e}");
}

#[test]
fn secrets_never_show_in_debug_output_or_errors() {
    let dir = TempDir::new();
    let path = dir.file("passwd.toml");
    write_store(&path, &[("alice", "wonderland")], CHEAP);
    let a = PasswordAuthenticator::new("users", &PasswordConfig::new(&path)).unwrap();
    let store = PasswordStore::load(&path).unwrap();
    let hash = store.hash("alice").unwrap();
    let digest = hash.as_str().rsplit('$').next().unwrap().to_owned();
    let salt = hash.as_str().split('$').nth(4).unwrap().to_owned();
    let c = creds(Some("alice"), Some(b"wonderland"));
    let shown = [
        format!("{a:?}"),
        format!("{store:?}"),
        format!("{hash:?}"),
        format!("{c:?}"),
        format!("{:?}", auth(&a, "alice", b"wonderland")),
        format!("{:?}", PasswordError::PasswordTooLong { max: 1 }),
    ];
    for s in &shown {
        for secret in ["wonderland", digest.as_str(), salt.as_str()] {
            assert!(!s.contains(secret), "{secret} in {s}");
        }
    }
    assert!(shown[0].contains("users"), "{}", shown[0]);
}

#[test]
fn config_deserializes_with_defaults_and_rejects_unknown_keys() {
    let c: PasswordConfig = toml::from_str("file = \"passwd.toml\"").unwrap();
    assert_eq!(c, PasswordConfig::new("passwd.toml"));
    assert_eq!(c.unknown_user, UnknownUser::Ignore);
    assert_eq!(c.max_failures, 5);
    assert_eq!(c.failure_window, Duration::from_secs(60));

    let c: PasswordConfig =
        toml::from_str("file = \"p.toml\"\nunknown_user = \"deny\"\nmax_failures = 10\nfailure_window = \"2m 30s\"")
            .unwrap();
    assert_eq!(c.unknown_user, UnknownUser::Deny);
    assert_eq!(c.max_failures, 10);
    assert_eq!(c.failure_window, Duration::from_secs(150));

    assert!(toml::from_str::<PasswordConfig>("file = \"p.toml\"\nmax_failure = 3").is_err());
    assert!(toml::from_str::<PasswordConfig>("file = \"p.toml\"\nunknown_user = \"allow\"").is_err());
    assert!(toml::from_str::<PasswordConfig>("unknown_user = \"deny\"").is_err());

    // As the server embeds it: tagged by `kind`, unknown keys still refused.
    #[derive(Debug, serde::Deserialize)]
    #[serde(tag = "kind", rename_all = "lowercase")]
    enum Kind {
        Password(PasswordConfig),
    }
    let Kind::Password(c) = toml::from_str::<Kind>("kind = \"password\"\nfile = \"p.toml\"").unwrap();
    assert_eq!(c.file, PathBuf::from("p.toml"));
    assert!(toml::from_str::<Kind>("kind = \"password\"\nfile = \"p.toml\"\nfiel = 1").is_err());
}

/// Hashes are made and verified on reused working memory (not through the crate's
/// PasswordHasher): the strings must still be standard PHC that the reference implementation
/// reads, and hashes it made must verify here.
#[test]
fn argon2id_hashes_interoperate_with_the_reference_implementation() {
    use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _};
    let ours = StoredHash::generate(b"pw", CHEAP).unwrap();
    let phc = argon2::PasswordHash::new(ours.as_str()).unwrap();
    argon2::Argon2::default().verify_password(b"pw", &phc).unwrap();
    assert!(argon2::Argon2::default().verify_password(b"pW", &phc).is_err());

    let params = argon2::Params::new(64, 2, 1, None).unwrap();
    let theirs = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
        .hash_password_with_salt(b"pw", b"0123456789abcdef")
        .unwrap()
        .to_string();
    let theirs = StoredHash::parse(&theirs).unwrap();
    assert!(theirs.verify(b"pw"));
    assert!(!theirs.verify(b"pw "));
}
