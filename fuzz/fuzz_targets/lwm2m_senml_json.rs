//! SenML JSON (RFC 8428, TS 1.2 Core §7.4.4) and LwM2M JSON from devices: no input may panic;
//! what decodes must re-encode and decode to the same values. See
//! `unigate_lwm2m::fuzzing::senml_json`.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    unigate_lwm2m::fuzzing::senml_json(data);
});
