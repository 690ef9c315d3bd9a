//! Runs fuzz input as a script against one fresh PSK `DtlsPeer`: datagrams and clock steps with
//! `handle_timeout`, then the clock runs on to the handshake deadline. Panics if an error leaves
//! the peer open, a datagram we send is badly framed, one input draws more than a few
//! datagrams, application data appears without a handshake, or a timer makes no progress; see
//! `unigate_dtls::fuzzing::server_script`, which the crate's tests also run.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    unigate_dtls::fuzzing::server_script(data);
});
