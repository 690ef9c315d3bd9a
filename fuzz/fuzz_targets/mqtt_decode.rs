//! Feeds arbitrary bytes to the MQTT decoder as every protocol version (and as "before
//! CONNECT"), as a stream of packets. Every packet that decodes must re-encode, decode to the
//! same packet and re-encode to the same bytes; see `unigate_mqtt::fuzzing::round_trip`, which
//! the crate's tests also run over this target's seed corpus.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    unigate_mqtt::fuzzing::round_trip(data);
});
