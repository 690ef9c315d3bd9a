//! Matching one topic against 100k subscriptions, the work done for every published message.
//!
//! The index holds 100 000 subscriptions of 100 000 clients (device `d` on site `s = d / 10 % 100`,
//! so every site has each kind), a mix like a fleet's: per client one of
//! - 60% exact     `site/{s}/device/{d}/temp`
//! - 10% `+` last  `site/{s}/device/{d}/+`
//! - 10% `+`, `#`  `site/{s}/+/{d}/#`
//! - 10% `+` first `site/+/device/{d}/cmd`
//! - 10% shared    `$share/g{d % 7}/site/{s}/device/#` (7 groups per site)
//!
//! plus 10 `#` monitors. Run with `cargo bench -p unigate-pubsub --bench match`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use unigate_pubsub::{matches, RetainedIndex, SubscriptionIndex, Topic, TopicFilter};

const SUBSCRIPTIONS: u32 = 100_000;
const SITES: u32 = 100;

fn site(d: u32) -> u32 {
    d / 10 % SITES
}

fn filter_for(d: u32) -> String {
    let s = site(d);
    match d % 10 {
        0..=5 => format!("site/{s}/device/{d}/temp"),
        6 => format!("site/{s}/device/{d}/+"),
        7 => format!("site/{s}/+/{d}/#"),
        8 => format!("site/+/device/{d}/cmd"),
        _ => format!("$share/g{}/site/{s}/device/#", d % 7),
    }
}

fn topic_for(d: u32, suffix: &str) -> Topic {
    Topic::new(&format!("site/{}/device/{d}/{suffix}", site(d))).unwrap()
}

fn build() -> (SubscriptionIndex<u32, u32>, Vec<TopicFilter>) {
    let mut index = SubscriptionIndex::new();
    let mut filters = Vec::new();
    for d in 0..SUBSCRIPTIONS {
        let filter = TopicFilter::new(&filter_for(d)).unwrap();
        index.insert(&filter, d, d);
        filters.push(filter);
    }
    for m in 0..10 {
        index.insert(&TopicFilter::new("#").unwrap(), SUBSCRIPTIONS + m, 0);
    }
    (index, filters)
}

/// Topics of devices spread over the id space (a fixed LCG: no `rand` needed).
fn topics(n: usize, suffix: &str) -> Vec<Topic> {
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    (0..n)
        .map(|_| {
            x = x
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let d = u32::try_from((x >> 33) % u64::from(SUBSCRIPTIONS)).unwrap();
            topic_for(d, suffix)
        })
        .collect()
}

fn count(index: &SubscriptionIndex<u32, u32>, topic: &Topic) -> usize {
    let mut n = 0;
    index.for_each_match(topic, |_| n += 1);
    n
}

fn bench_match(c: &mut Criterion) {
    let (index, filters) = build();
    let mut group = c.benchmark_group("subscriptions_100k");
    group.measurement_time(Duration::from_secs(4));

    // Device 4242 (an exact filter) publishes its temperature: matched by its own filter, by the
    // 7 shared groups of its site and by the 10 monitors.
    let hit = topic_for(4242, "temp");
    println!("matches for {hit}: {}", count(&index, &hit));
    group.bench_function("match_one_topic", |b| b.iter(|| count(&index, black_box(&hit))));

    let miss = Topic::new("plant/7/line/3/speed").unwrap();
    println!("matches for {miss}: {}", count(&index, &miss));
    group.bench_function("match_no_subscriber_but_monitors", |b| {
        b.iter(|| count(&index, black_box(&miss)))
    });

    let system = Topic::new("$SYS/broker/uptime").unwrap();
    group.bench_function("match_sys_topic", |b| b.iter(|| count(&index, black_box(&system))));

    // 4096 different topics in turn, so caches do not hold one path.
    let rotating = topics(4096, "temp");
    let mut i = 0;
    group.bench_function("match_rotating_4096_topics", |b| {
        b.iter(|| {
            i = (i + 1) % rotating.len();
            count(&index, black_box(&rotating[i]))
        })
    });

    // What the trie saves: the reference matcher over every filter.
    group.sample_size(10);
    group.bench_function("linear_scan_reference", |b| {
        b.iter(|| {
            filters
                .iter()
                .filter(|f| matches(f.filter(), black_box(hit.as_str())))
                .count()
        })
    });
    group.finish();

    let mut group = c.benchmark_group("subscriptions_100k_update");
    let mut index = index;
    let extra = TopicFilter::new("site/42/device/new/+").unwrap();
    group.bench_function("insert_then_remove", |b| {
        b.iter(|| {
            index.insert(black_box(&extra), u32::MAX, 0);
            index.remove(black_box(&extra), &u32::MAX)
        })
    });
    group.finish();
}

fn bench_retained(c: &mut Criterion) {
    let mut retained = RetainedIndex::new();
    for d in 0..SUBSCRIPTIONS {
        retained.insert(&topic_for(d, "temp"), d);
    }
    let mut group = c.benchmark_group("retained_100k");
    group.measurement_time(Duration::from_secs(4));
    let one = TopicFilter::new(topic_for(4242, "temp").as_str()).unwrap();
    group.bench_function("lookup_exact", |b| {
        b.iter(|| {
            let mut n = 0;
            retained.for_each_match(black_box(&one), |_, _| n += 1);
            n
        })
    });
    let site = TopicFilter::new("site/24/device/+/temp").unwrap();
    group.bench_function("lookup_site_1000_topics", |b| {
        b.iter(|| {
            let mut n = 0;
            retained.for_each_match(black_box(&site), |_, _| n += 1);
            n
        })
    });
    group.finish();
}

criterion_group!(benches, bench_match, bench_retained);
criterion_main!(benches);
