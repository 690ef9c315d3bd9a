//! Runs fuzz input as a script against one CoAP `Peer`: datagrams (every surfaced request is
//! answered, some after an empty ACK), clock steps with `handle_timeout`, notifications and
//! requests of our own. Panics if a table exceeds its cap, if we emit a datagram that does
//! not decode, or if a timer makes no progress; see `unigate_coap::fuzzing::peer_script`,
//! which the crate's property tests also run.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    unigate_coap::fuzzing::peer_script(data);
});
