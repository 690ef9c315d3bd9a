//! Verification cost of each stored-hash format, to choose the argon2id defaults
//! (see the `password` module documentation for the numbers and the choice).
//!
//! `cargo bench -p unigate-auth --bench password` (all), or add `-- argon2id` to filter.
//! `argon2id_2cores` runs two verifications at once on two threads: what a reconnect storm
//! costs per verification when both cores hash (memory bandwidth is shared).
//!
//! Times are the CPU time of the hashing threads (from Linux `/proc/thread-self`, wall time
//! elsewhere), so that other work on a shared 2-core machine does not inflate them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, SamplingMode};
use pbkdf2::password_hash::PasswordHasher as _;
use unigate_auth::password::{Argon2Cost, StoredHash};

const PASSWORD: &[u8] = b"correct horse battery staple";

/// (m KiB, t): around the budget of ~12 ms per verification. 32 MiB showed glibc's cliff while
/// each hash allocated its memory (blocks of 32 MiB and more are always mmap'ed, so every hash
/// paid page faults on fresh memory); with the memory reused per thread there is none.
const CANDIDATES: &[(u32, u32)] = &[
    (12 * 1024, 2),
    (16 * 1024, 2),
    (19 * 1024, 2),
    (24 * 1024, 1),
    (28 * 1024, 1),
    (30 * 1024, 1),
    (32 * 1024, 1),
    (46 * 1024, 1),
];

/// Measured with both cores hashing.
const TWO_CORES: &[(u32, u32)] = &[(16 * 1024, 2), (19 * 1024, 2), (24 * 1024, 1), (28 * 1024, 1)];

/// CPU time this thread has run, when the OS tells it: `/proc/thread-self/schedstat` (ns) where
/// the kernel keeps it, else user + system ticks of `/proc/thread-self/stat` (10 ms steps; a
/// sample runs for hundreds of milliseconds).
fn thread_cpu() -> Option<Duration> {
    if let Ok(stat) = std::fs::read_to_string("/proc/thread-self/schedstat") {
        if let Some(ns) = stat.split_whitespace().next().and_then(|v| v.parse::<u64>().ok()) {
            if ns > 0 {
                return Some(Duration::from_nanos(ns));
            }
        }
    }
    let stat = std::fs::read_to_string("/proc/thread-self/stat").ok()?;
    // Fields after the command name (which may hold spaces): state is field 3, utime 14, stime 15.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10))
}

/// Runs `f` `iters` times; its CPU time (wall time when unavailable).
fn timed(iters: u64, mut f: impl FnMut()) -> Duration {
    let (cpu, wall) = (thread_cpu(), Instant::now());
    for _ in 0..iters {
        f();
    }
    match (cpu, thread_cpu()) {
        (Some(a), Some(b)) => b.saturating_sub(a),
        _ => wall.elapsed(),
    }
}

fn argon2id(h: &StoredHash) -> String {
    h.as_str().split('$').nth(3).unwrap_or_default().to_owned()
}

fn single(c: &mut Criterion) {
    let mut g = c.benchmark_group("argon2id_verify");
    g.sample_size(10).sampling_mode(SamplingMode::Flat);
    g.warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));
    let default = Argon2Cost::DEFAULT;
    let mut costs: Vec<Argon2Cost> = CANDIDATES
        .iter()
        .map(|&(m_kib, t)| Argon2Cost { m_kib, t, p: 1 })
        .collect();
    if !costs.contains(&default) {
        costs.push(default);
    }
    for cost in costs {
        let h = StoredHash::generate(PASSWORD, cost).unwrap();
        g.bench_with_input(BenchmarkId::from_parameter(argon2id(&h)), &h, |b, h| {
            b.iter_custom(|iters| timed(iters, || assert!(h.verify(PASSWORD))))
        });
    }
    g.finish();
}

fn two_cores(c: &mut Criterion) {
    let mut g = c.benchmark_group("argon2id_2cores");
    g.sample_size(10).sampling_mode(SamplingMode::Flat);
    g.warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));
    for &(m_kib, t) in TWO_CORES {
        let cost = Argon2Cost { m_kib, t, p: 1 };
        let h = StoredHash::generate(PASSWORD, cost).unwrap();
        // Each thread verifies `iters` times: per verification, the two threads' time / 2.
        g.bench_with_input(BenchmarkId::from_parameter(argon2id(&h)), &h, |b, h| {
            b.iter_custom(|iters| {
                std::thread::scope(|s| {
                    let threads: Vec<_> = (0..2)
                        .map(|_| s.spawn(move || timed(iters, || assert!(h.verify(PASSWORD)))))
                        .collect();
                    threads.into_iter().map(|t| t.join().unwrap()).sum::<Duration>() / 2
                })
            })
        });
    }
    g.finish();
}

fn imported(c: &mut Criterion) {
    let mut g = c.benchmark_group("imported_verify");
    g.sample_size(10).sampling_mode(SamplingMode::Flat);
    g.warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));
    let bcrypt = StoredHash::parse(&bcrypt::hash(PASSWORD, 10).unwrap()).unwrap();
    g.bench_function("bcrypt_cost10", |b| {
        b.iter_custom(|iters| timed(iters, || assert!(bcrypt.verify(PASSWORD))))
    });
    let pbkdf2 = pbkdf2::Pbkdf2::SHA256
        .hash_password_with_salt(PASSWORD, b"0123456789abcdef")
        .unwrap()
        .to_string();
    let pbkdf2 = StoredHash::parse(&pbkdf2).unwrap();
    g.bench_function("pbkdf2_sha256_600k", |b| {
        b.iter_custom(|iters| timed(iters, || assert!(pbkdf2.verify(PASSWORD))))
    });
    g.finish();

    let sha = StoredHash::parse("$sha256$YWI=$ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0=").unwrap();
    c.bench_function("imported_verify/salted_sha256", |b| b.iter(|| sha.verify(b"c")));
}

criterion_group!(benches, single, two_cores, imported);
criterion_main!(benches);
