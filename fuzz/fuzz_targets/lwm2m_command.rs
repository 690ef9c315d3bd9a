//! LwM2M downlink commands as MQTT clients publish them on `lwm2m/{ep}/dn` (JSON): no input may
//! panic; whatever parses builds a CoAP request or a typed error, and every error still yields
//! a response body.

#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use unigate_lwm2m::{ContentFormat, Registry};
use unigate_translators::lwm2m::{parse_command, response};

fuzz_target!(|data: &[u8]| {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    let registry = REGISTRY.get_or_init(Registry::core);
    match parse_command(data, registry) {
        Ok(cmd) => {
            for f in [ContentFormat::Tlv, ContentFormat::SenmlCbor, ContentFormat::SenmlJson] {
                let _ = cmd.operation.to_request(Some("/"), f, None);
            }
            let _ = response(&cmd.echo, &cmd.req_path, unigate_lwm2m::ResponseType::Content, None, None);
        }
        Err(e) => {
            let _ = response(&e.echo, &e.req_path, unigate_lwm2m::ResponseType::BadRequest, None, Some(&e.reason));
        }
    }
});
