//! Builds a Block1 upload from fuzz input (server block size, the client's shrinking block
//! sizes, the body) and checks that it reassembles to exactly the body, with every
//! intermediate block answered 2.31 and the final Block1 echoed; see
//! `unigate_coap::fuzzing::block1_transfer`.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    unigate_coap::fuzzing::block1_transfer(data);
});
