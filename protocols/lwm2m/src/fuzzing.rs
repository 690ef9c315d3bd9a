//! The oracles of the `lwm2m_*` fuzz targets, here so that they build and are unit-tested on
//! stable (not part of the API). Each decodes arbitrary bytes, must not panic, and whatever
//! decodes must re-encode and decode to the same values (floats compared by bits, NaN equal
//! to NaN), as rustls's decoder targets do.

use crate::content::{link_format, lwm2m_cbor, lwm2m_json, senml, tlv};
use crate::link;
use crate::path::Path;
use crate::registration::{Payload, Registration};
use crate::registry::Registry;
use crate::value::Value;
use crate::Limits;

/// Whether two decoded contents are equal, comparing floats by bits (NaN == NaN).
pub fn same_content(a: &[(Path, Value)], b: &[(Path, Value)]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|((pa, va), (pb, vb))| {
            pa == pb
                && match (va, vb) {
                    (Value::Float(x), Value::Float(y)) => x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan()),
                    _ => va == vb,
                }
        })
}

/// Parsing the embedded DDF files takes longer than most inputs: do it once.
fn registry() -> &'static Registry {
    static CORE: std::sync::OnceLock<Registry> = std::sync::OnceLock::new();
    CORE.get_or_init(Registry::core)
}

fn sorted(mut v: Vec<(Path, Value)>) -> Vec<(Path, Value)> {
    v.sort_by_key(|a| a.0);
    v
}

/// The request path a fuzz input's first byte selects.
fn base(selector: u8) -> Path {
    const BASES: [&[u16]; 8] = [
        &[3],
        &[3, 0],
        &[3, 0, 6],
        &[3, 0, 6, 1],
        &[3303],
        &[3303, 0],
        &[5, 0, 0],
        &[9999, 1],
    ];
    // Every entry is a valid path.
    Path::new(BASES[usize::from(selector) % BASES.len()]).unwrap_or_else(|_| unreachable!())
}

/// TLV: decode at the selected path; what decodes re-encodes (unless the wire repeated a
/// path, which the encoder refuses) and decodes to the same values.
pub fn tlv(data: &[u8]) {
    let Some((&sel, bytes)) = data.split_first() else {
        return;
    };
    let (base, registry, limits) = (base(sel), registry(), Limits::default());
    let Ok(values) = tlv::decode(&base, bytes, registry, &limits) else {
        return;
    };
    let Ok(again) = tlv::encode(&base, &values) else {
        return;
    };
    let back = tlv::decode(&base, &again, registry, &limits).unwrap_or_else(|e| panic!("re-encoded TLV: {e}"));
    assert!(same_content(&back, &sorted(values)), "TLV round trip");
    // The LwM2M CBOR and JSON encoders take whatever TLV produced, too.
    for bytes in [
        lwm2m_cbor::encode(Some(&base), &back),
        lwm2m_json::encode(Some(&base), &back),
    ]
    .into_iter()
    .flatten()
    {
        let _ = lwm2m_cbor::decode(Some(&base), &bytes, registry, &limits);
        let _ = lwm2m_json::decode(Some(&base), &bytes, registry, &limits);
    }
}

/// SenML JSON: decode at the root (or the selected path); round trip through the encoder.
pub fn senml_json(data: &[u8]) {
    let (registry, limits) = (registry(), Limits::default());
    let base = data.first().filter(|&&b| b & 0x80 != 0).map(|&b| base(b));
    let Ok(values) = senml::decode_json(base.as_ref(), data, registry, &limits) else {
        let _ = senml::decode_paths_json(data, &limits);
        let _ = lwm2m_json::decode(None, data, registry, &limits);
        return;
    };
    let Ok(again) = senml::encode_json(base.as_ref(), &values) else {
        return;
    };
    let back = senml::decode_json(base.as_ref(), &again, registry, &limits)
        .unwrap_or_else(|e| panic!("re-encoded SenML JSON: {e}"));
    assert!(same_content(&back, &sorted(values)), "SenML JSON round trip");
}

/// SenML CBOR (and LwM2M CBOR): decode at the root; round trip through the encoders.
pub fn senml_cbor(data: &[u8]) {
    let (registry, limits) = (registry(), Limits::default());
    if let Ok(values) = senml::decode_cbor(None, data, registry, &limits) {
        if let Ok(again) = senml::encode_cbor(None, &values) {
            let back = senml::decode_cbor(None, &again, registry, &limits)
                .unwrap_or_else(|e| panic!("re-encoded SenML CBOR: {e}"));
            assert!(same_content(&back, &sorted(values)), "SenML CBOR round trip");
        }
    }
    let _ = senml::decode_paths_cbor(data, &limits);
    if let Ok(values) = lwm2m_cbor::decode(None, data, registry, &limits) {
        if let Ok(again) = lwm2m_cbor::encode(None, &values) {
            let back = lwm2m_cbor::decode(None, &again, registry, &limits)
                .unwrap_or_else(|e| panic!("re-encoded LwM2M CBOR: {e}"));
            assert!(same_content(&back, &sorted(values)), "LwM2M CBOR round trip");
        }
    }
}

/// Link format: links parse back from their display; the registration payload, a Register
/// request (query options before the first `\n`, split at `&`) and a Discover response parse
/// without panicking; paths display and parse back.
pub fn link(data: &[u8]) {
    let limits = Limits {
        max_link_entries: 64,
        ..Limits::default()
    };
    let text = String::from_utf8_lossy(data);
    if let Ok(links) = link::parse(&text, limits.max_link_entries) {
        let shown = link::Display(&links).to_string();
        assert_eq!(
            link::parse(&shown, limits.max_link_entries).as_ref(),
            Ok(&links),
            "link display: {shown:?}"
        );
    }
    let _ = Payload::parse(data, &limits);
    let _ = link_format::decode(data, Some("/lwm2m"), &limits);
    let (query, payload) = text.split_once('\n').unwrap_or((&text, ""));
    let query: Vec<&str> = query.split('&').collect();
    if let Ok(r) = Registration::parse(&query, payload.as_bytes(), &limits) {
        assert!(!r.endpoint.is_empty() && r.lifetime > 0 && r.objects.len() <= limits.max_link_entries);
    }
    if let Ok(p) = text.parse::<Path>() {
        assert_eq!(p.to_string().parse::<Path>(), Ok(p));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oracles_accept_valid_inputs() {
        tlv(&[1, 0xC1, 0x09, 0x64]);
        tlv(&[0, 0x08, 0x00, 0x03, 0xC1, 0x09, 0x64]);
        senml_json(br#"[{"bn":"/3/0/","n":"9","v":100},{"n":"0","vs":"x"}]"#);
        senml_cbor(&[0x81, 0xa2, 0x00, 0x66, b'/', b'3', b'/', b'0', b'/', b'9', 0x02, 0x01]);
        senml_cbor(&[0xa1, 0x03, 0xa1, 0x00, 0xa1, 0x09, 0x01]);
        link(b"ep=a&lt=60\n</>;rt=\"oma.lwm2m\";ct=\"60 110\",</1/0>,</3/0>");
        link(b"/3/0/1");
    }
}
