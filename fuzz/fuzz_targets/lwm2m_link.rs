//! CoRE link format (RFC 6690) as LwM2M Register/Update payloads and Discover responses, and
//! Register query options: no input may panic; parsed links display and parse back. See
//! `unigate_lwm2m::fuzzing::link`.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    unigate_lwm2m::fuzzing::link(data);
});
