//! SenML CBOR (RFC 8428 §6) and LwM2M CBOR (TS 1.2 Core §7.4.7) from devices: no input may
//! panic; what decodes must re-encode and decode to the same values. See
//! `unigate_lwm2m::fuzzing::senml_cbor`.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    unigate_lwm2m::fuzzing::senml_cbor(data);
});
