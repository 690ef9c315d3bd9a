//! TLV (TS 1.2 Core §7.4.3) from devices: the first byte selects the request path, the rest
//! is the payload. No input may panic; what decodes must re-encode and decode to the same values.
//! See `unigate_lwm2m::fuzzing::tlv`.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    unigate_lwm2m::fuzzing::tlv(data);
});
