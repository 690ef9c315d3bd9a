//! SenML JSON (110) and SenML CBOR (112): RFC 8428 as profiled by TS 1.2 Core §7.4.4–§7.4.5.
//!
//! The record name (`bn` + `n`) is a path; values are `v` (number), `vs` (string), `vb`
//! (boolean), `vd` (opaque, base64url without padding in JSON, a byte string in CBOR) and the
//! LwM2M extension `vlo` (object link `"obj:inst"`). Times (`bt` + `t`) are kept by
//! [`decode_json_timed`]/[`decode_cbor_timed`]. Base value and base sum (`bv`, `bs`, `s`) are
//! not used by LwM2M and are refused rather than misread, as are must-understand labels (JSON
//! names ending in `_`, RFC 8428 §4.4).
//!
//! Records without a value name the paths of Read-Composite and Observe-Composite requests
//! (TS 1.2 Core §6.3.8): [`encode_paths_json`], [`decode_paths_json`] and the CBOR ones.

use base64::Engine as _;

use crate::content::cbor::{self, Item, Writer};
use crate::content::{check_under, sorted, typed, Wire};
use crate::error::{DecodeError, EncodeError};
use crate::path::Path;
use crate::registry::Registry;
use crate::value::Value;
use crate::Limits;

/// CBOR labels (RFC 8428 §6, Table 4).
mod label {
    pub const BVER: i128 = -1;
    pub const BN: i128 = -2;
    pub const BT: i128 = -3;
    pub const BU: i128 = -4;
    pub const BV: i128 = -5;
    pub const BS: i128 = -6;
    pub const N: i128 = 0;
    pub const U: i128 = 1;
    pub const V: i128 = 2;
    pub const VS: i128 = 3;
    pub const VB: i128 = 4;
    pub const S: i128 = 5;
    pub const T: i128 = 6;
    pub const UT: i128 = 7;
    pub const VD: i128 = 8;
}

/// A decoded value with its resolved time (`bt` + `t`), if the record had one.
#[derive(Debug, Clone, PartialEq)]
pub struct TimedValue {
    /// The resolved name.
    pub path: Path,
    /// The typed value.
    pub value: Value,
    /// `bt` + `t`, when either was present.
    pub time: Option<f64>,
}

/// One record's fields, before base resolution.
#[derive(Default)]
struct Raw {
    bn: Option<String>,
    bt: Option<f64>,
    n: Option<String>,
    t: Option<f64>,
    value: Option<Wire>,
}

fn syntax(format: &'static str, detail: impl Into<String>) -> DecodeError {
    DecodeError::Syntax {
        format,
        detail: detail.into(),
    }
}

/// Resolves base name and time over the records (RFC 8428 §4.6).
fn resolve(records: Vec<Raw>) -> Vec<(String, Option<Wire>, Option<f64>)> {
    let (mut bn, mut bt) = (String::new(), None::<f64>);
    records
        .into_iter()
        .map(|r| {
            if let Some(b) = r.bn {
                bn = b;
            }
            if r.bt.is_some() {
                bt = r.bt;
            }
            let name = format!("{bn}{}", r.n.unwrap_or_default());
            let time = match (bt, r.t) {
                (None, None) => None,
                (b, t) => Some(b.unwrap_or(0.0) + t.unwrap_or(0.0)),
            };
            (name, r.value, time)
        })
        .collect()
}

fn to_values(base: Option<&Path>, records: Vec<Raw>, registry: &Registry) -> Result<Vec<TimedValue>, DecodeError> {
    resolve(records)
        .into_iter()
        .map(|(name, wire, time)| {
            let path: Path = name
                .parse()
                .map_err(|_| DecodeError::BadPath(name.chars().take(64).collect()))?;
            check_under(base, &path)?;
            let wire = wire.ok_or_else(|| syntax("SenML", format!("record {path} has no value")))?;
            Ok(TimedValue {
                value: typed(&path, wire, registry)?,
                path,
                time,
            })
        })
        .collect()
}

fn untimed(v: Vec<TimedValue>) -> Vec<(Path, Value)> {
    v.into_iter().map(|t| (t.path, t.value)).collect()
}

fn to_paths(records: Vec<Raw>) -> Result<Vec<Path>, DecodeError> {
    resolve(records)
        .into_iter()
        .map(|(name, _, _)| {
            name.parse()
                .map_err(|_| DecodeError::BadPath(name.chars().take(64).collect()))
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// JSON

fn json_records(payload: &[u8], limits: &Limits) -> Result<Vec<Raw>, DecodeError> {
    const F: &str = "SenML JSON";
    let doc: serde_json::Value = serde_json::from_slice(payload).map_err(|e| syntax(F, e.to_string()))?;
    let serde_json::Value::Array(items) = doc else {
        return Err(syntax(F, "not an array of records"));
    };
    if items.len() > limits.max_entries {
        return Err(DecodeError::TooManyEntries(limits.max_entries));
    }
    items
        .into_iter()
        .map(|item| {
            let serde_json::Value::Object(fields) = item else {
                return Err(syntax(F, "record is not an object"));
            };
            let mut r = Raw::default();
            for (k, v) in fields {
                let wrong = || syntax(F, format!("field {k:?} has the wrong type"));
                let text = || v.as_str().map(str::to_owned).ok_or_else(wrong);
                let num = || v.as_f64().ok_or_else(wrong);
                let value = match k.as_str() {
                    "bn" => {
                        r.bn = Some(text()?);
                        None
                    }
                    "n" => {
                        r.n = Some(text()?);
                        None
                    }
                    "bt" => {
                        r.bt = Some(num()?);
                        None
                    }
                    "t" => {
                        r.t = Some(num()?);
                        None
                    }
                    "v" => Some(match &v {
                        serde_json::Value::Number(n) => match (n.as_i64(), n.as_u64()) {
                            (Some(i), _) => Wire::Int(i.into()),
                            (_, Some(u)) => Wire::Int(u.into()),
                            _ => Wire::Float(n.as_f64().ok_or_else(wrong)?),
                        },
                        _ => return Err(wrong()),
                    }),
                    "vs" => Some(Wire::Str(text()?)),
                    "vb" => Some(Wire::Bool(v.as_bool().ok_or_else(wrong)?)),
                    "vd" => Some(Wire::Data(
                        crate::value::decode_base64(v.as_str().ok_or_else(wrong)?)
                            .ok_or_else(|| syntax(F, "vd is not base64url"))?,
                    )),
                    "vlo" => Some(Wire::Objlnk(text()?)),
                    "bv" | "bs" | "s" => return Err(DecodeError::UnsupportedField(k)),
                    k if k.ends_with('_') => return Err(DecodeError::UnsupportedField(k.to_owned())),
                    // bver, u, bu, ut and unknown fields carry nothing LwM2M uses.
                    _ => None,
                };
                if let Some(value) = value {
                    if r.value.replace(value).is_some() {
                        return Err(syntax(F, "record has more than one value"));
                    }
                }
            }
            Ok(r)
        })
        .collect()
}

/// Decodes SenML JSON answering a request on `base` (`None`: composite, any path).
pub fn decode_json(
    base: Option<&Path>,
    payload: &[u8],
    registry: &Registry,
    limits: &Limits,
) -> Result<Vec<(Path, Value)>, DecodeError> {
    decode_json_timed(base, payload, registry, limits).map(untimed)
}

/// [`decode_json`], keeping each record's time.
pub fn decode_json_timed(
    base: Option<&Path>,
    payload: &[u8],
    registry: &Registry,
    limits: &Limits,
) -> Result<Vec<TimedValue>, DecodeError> {
    to_values(base, json_records(payload, limits)?, registry)
}

/// Decodes the paths of a composite request in SenML JSON (values, if any, are ignored).
pub fn decode_paths_json(payload: &[u8], limits: &Limits) -> Result<Vec<Path>, DecodeError> {
    to_paths(json_records(payload, limits)?)
}

/// Names for records: `(bn on the first record, n for each)`.
fn names(base: Option<&Path>, items: &[&(Path, Value)]) -> (Option<String>, Vec<String>) {
    match base {
        None => (None, items.iter().map(|(p, _)| p.to_string()).collect()),
        Some(b) if items.len() == 1 && items[0].0 == *b => (Some(b.to_string()), vec![String::new()]),
        Some(b) => {
            let prefix = format!("{b}/");
            let n = items
                .iter()
                .map(|(p, _)| p.to_string().get(prefix.len()..).unwrap_or_default().to_owned())
                .collect();
            (Some(prefix), n)
        }
    }
}

fn json_string(s: &str) -> String {
    serde_json::Value::String(s.to_owned()).to_string()
}

/// Encodes values as SenML JSON for a request on `base`: `bn` is the base path with a trailing
/// `/` and `n` the rest, as in TS 1.2 Core §7.4.4; without a base each `n` is the full path.
pub fn encode_json(base: Option<&Path>, content: &[(Path, Value)]) -> Result<Vec<u8>, EncodeError> {
    let items = sorted(base, content)?;
    let (bn, n) = names(base, &items);
    let mut out = String::from("[");
    for (i, ((path, value), n)) in items.iter().zip(n).enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push('{');
        let mut fields = Vec::new();
        if i == 0 {
            if let Some(bn) = &bn {
                fields.push(format!("\"bn\":{}", json_string(bn)));
            }
        }
        if !n.is_empty() {
            fields.push(format!("\"n\":{}", json_string(&n)));
        }
        fields.push(match Wire::from_value(value) {
            Wire::Int(v) => format!("\"v\":{v}"),
            Wire::Float(f) => format!(
                "\"v\":{}",
                serde_json::Number::from_f64(f).ok_or_else(|| EncodeError::Unrepresentable(path.to_string()))?
            ),
            Wire::Str(s) => format!("\"vs\":{}", json_string(&s)),
            Wire::Bool(b) => format!("\"vb\":{b}"),
            Wire::Data(d) => format!(
                "\"vd\":\"{}\"",
                base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(d)
            ),
            Wire::Objlnk(s) => format!("\"vlo\":\"{s}\""),
        });
        out.push_str(&fields.join(","));
        out.push('}');
    }
    out.push(']');
    Ok(out.into_bytes())
}

/// Encodes the paths of a composite request: `[{"n":"/3/0/1"},{"n":"/1/0"}]`.
pub fn encode_paths_json(paths: &[Path]) -> Vec<u8> {
    let records: Vec<String> = paths.iter().map(|p| format!("{{\"n\":\"{p}\"}}")).collect();
    format!("[{}]", records.join(",")).into_bytes()
}

// ---------------------------------------------------------------------------------------------
// CBOR

fn cbor_records(payload: &[u8], limits: &Limits) -> Result<Vec<Raw>, DecodeError> {
    const F: &str = "SenML CBOR";
    let Item::Array(items) = cbor::decode(payload)? else {
        return Err(syntax(F, "not an array of records"));
    };
    if items.len() > limits.max_entries {
        return Err(DecodeError::TooManyEntries(limits.max_entries));
    }
    items
        .into_iter()
        .map(|item| {
            let Item::Map(fields) = item else {
                return Err(syntax(F, "record is not a map"));
            };
            let mut r = Raw::default();
            for (k, v) in fields {
                let wrong = |name: &str| syntax(F, format!("label {name} has the wrong type {}", v.kind()));
                let num = |name: &str| match &v {
                    Item::Float(f) => Ok(*f),
                    i => i.as_int().map(|i| i as f64).ok_or_else(|| wrong(name)),
                };
                let text = |name: &str| match &v {
                    Item::Text(s) => Ok(s.clone()),
                    _ => Err(wrong(name)),
                };
                let value = match (&k, k.as_int()) {
                    (Item::Text(s), _) if s == "vlo" => Some(Wire::Objlnk(text("vlo")?)),
                    (_, Some(label::BN)) => {
                        r.bn = Some(text("bn")?);
                        None
                    }
                    (_, Some(label::N)) => {
                        r.n = Some(text("n")?);
                        None
                    }
                    (_, Some(label::BT)) => {
                        r.bt = Some(num("bt")?);
                        None
                    }
                    (_, Some(label::T)) => {
                        r.t = Some(num("t")?);
                        None
                    }
                    (_, Some(label::V)) => Some(match &v {
                        Item::Float(f) => Wire::Float(*f),
                        i => Wire::Int(i.as_int().ok_or_else(|| wrong("v"))?),
                    }),
                    (_, Some(label::VS)) => Some(Wire::Str(text("vs")?)),
                    (_, Some(label::VB)) => match v {
                        Item::Bool(b) => Some(Wire::Bool(b)),
                        _ => return Err(wrong("vb")),
                    },
                    (_, Some(label::VD)) => match v {
                        Item::Bytes(b) => Some(Wire::Data(b)),
                        _ => return Err(wrong("vd")),
                    },
                    (_, Some(l @ (label::BV | label::BS | label::S))) => {
                        return Err(DecodeError::UnsupportedField(l.to_string()))
                    }
                    (_, Some(label::BVER | label::U | label::BU | label::UT)) => None,
                    (_, Some(l)) if l < 0 => return Err(DecodeError::UnsupportedField(l.to_string())),
                    _ => None,
                };
                if let Some(value) = value {
                    if r.value.replace(value).is_some() {
                        return Err(syntax(F, "record has more than one value"));
                    }
                }
            }
            Ok(r)
        })
        .collect()
}

/// Decodes SenML CBOR answering a request on `base` (`None`: composite, any path).
pub fn decode_cbor(
    base: Option<&Path>,
    payload: &[u8],
    registry: &Registry,
    limits: &Limits,
) -> Result<Vec<(Path, Value)>, DecodeError> {
    decode_cbor_timed(base, payload, registry, limits).map(untimed)
}

/// [`decode_cbor`], keeping each record's time.
pub fn decode_cbor_timed(
    base: Option<&Path>,
    payload: &[u8],
    registry: &Registry,
    limits: &Limits,
) -> Result<Vec<TimedValue>, DecodeError> {
    to_values(base, cbor_records(payload, limits)?, registry)
}

/// Decodes the paths of a composite request in SenML CBOR.
pub fn decode_paths_cbor(payload: &[u8], limits: &Limits) -> Result<Vec<Path>, DecodeError> {
    to_paths(cbor_records(payload, limits)?)
}

/// Encodes values as SenML CBOR, named as [`encode_json`] does.
pub fn encode_cbor(base: Option<&Path>, content: &[(Path, Value)]) -> Result<Vec<u8>, EncodeError> {
    let items = sorted(base, content)?;
    let (bn, n) = names(base, &items);
    let mut w = Writer::default();
    w.array(items.len());
    for (i, ((_, value), n)) in items.iter().zip(n).enumerate() {
        let bn = bn.as_ref().filter(|_| i == 0);
        w.map(1 + usize::from(bn.is_some()) + usize::from(!n.is_empty()));
        if let Some(bn) = bn {
            w.int(label::BN as i64);
            w.text(bn);
        }
        if !n.is_empty() {
            w.int(label::N as i64);
            w.text(&n);
        }
        match Wire::from_value(value) {
            Wire::Int(v) => {
                w.int(label::V as i64);
                match i64::try_from(v) {
                    Ok(i) => w.int(i),
                    // Only u64 values above i64::MAX get here.
                    Err(_) => w.uint(u64::try_from(v).unwrap_or(u64::MAX)),
                }
            }
            Wire::Float(f) => {
                w.int(label::V as i64);
                w.float(f);
            }
            Wire::Str(s) => {
                w.int(label::VS as i64);
                w.text(&s);
            }
            Wire::Bool(b) => {
                w.int(label::VB as i64);
                w.bool(b);
            }
            Wire::Data(d) => {
                w.int(label::VD as i64);
                w.bytes(&d);
            }
            Wire::Objlnk(s) => {
                w.text("vlo");
                w.text(&s);
            }
        }
    }
    Ok(w.out)
}

/// Encodes the paths of a composite request in SenML CBOR: `[{0: "/3/0/1"}, ...]`.
pub fn encode_paths_cbor(paths: &[Path]) -> Vec<u8> {
    let mut w = Writer::default();
    w.array(paths.len());
    for p in paths {
        w.map(1);
        w.int(label::N as i64);
        w.text(&p.to_string());
    }
    w.out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::content::tlv::tests::{device_values, p};

    /// TS 1.1 Core §7.4.4 example: Read on `/3/0` in SenML JSON.
    const DEVICE_SENML_JSON: &str = r#"[{"bn":"/3/0/","n":"0","vs":"Open Mobile Alliance"},{"n":"1","vs":"Lightweight M2M Client"},{"n":"2","vs":"345000123"},{"n":"3","vs":"1.0"},{"n":"6/0","v":1},{"n":"6/1","v":5},{"n":"7/0","v":3800},{"n":"7/1","v":5000},{"n":"8/0","v":125},{"n":"8/1","v":900},{"n":"9","v":100},{"n":"10","v":15},{"n":"11/0","v":0},{"n":"13","v":1367491215},{"n":"14","vs":"+02:00"},{"n":"16","vs":"U"}]"#;

    fn dec_json(base: Option<&str>, s: &str) -> Result<Vec<(Path, Value)>, DecodeError> {
        decode_json(
            base.map(p).as_ref(),
            s.as_bytes(),
            &Registry::core(),
            &Limits::default(),
        )
    }

    fn dec_cbor(base: Option<&str>, b: &[u8]) -> Result<Vec<(Path, Value)>, DecodeError> {
        decode_cbor(base.map(p).as_ref(), b, &Registry::core(), &Limits::default())
    }

    #[test]
    fn ts_device_example() {
        assert_eq!(dec_json(Some("/3/0"), DEVICE_SENML_JSON).unwrap(), device_values());
        assert_eq!(
            encode_json(Some(&p("/3/0")), &device_values()).unwrap(),
            DEVICE_SENML_JSON.as_bytes()
        );
        // The TS prints it with whitespace; it decodes the same.
        let pretty = DEVICE_SENML_JSON.replace(",{", ",\n  {").replace("[{", "[\n  {");
        assert_eq!(dec_json(Some("/3/0"), &pretty).unwrap(), device_values());
        let cbor = encode_cbor(Some(&p("/3/0")), &device_values()).unwrap();
        assert_eq!(dec_cbor(Some("/3/0"), &cbor).unwrap(), device_values());
    }

    #[test]
    fn single_resource_and_special_types() {
        let v = vec![(p("/3/0/0"), Value::String("ACME".into()))];
        assert_eq!(
            encode_json(Some(&p("/3/0/0")), &v).unwrap(),
            br#"[{"bn":"/3/0/0","vs":"ACME"}]"#
        );
        // Opaque as base64url without padding, object links as vlo (TS 1.1 §7.4.4).
        let v = vec![
            (p("/3/0/22/0"), Value::Objlnk(3, 1)),
            (p("/5/0/0"), Value::Opaque(vec![0xfb, 0xff])),
            (p("/1/0/6"), Value::Boolean(false)),
            (p("/6/0/0"), Value::Float(-43.5)),
        ];
        let json = encode_json(None, &v).unwrap();
        assert_eq!(
            std::str::from_utf8(&json).unwrap(),
            r#"[{"n":"/1/0/6","vb":false},{"n":"/3/0/22/0","vlo":"3:1"},{"n":"/5/0/0","vd":"-_8"},{"n":"/6/0/0","v":-43.5}]"#
        );
        let mut sorted = v.clone();
        sorted.sort_by_key(|a| a.0);
        assert_eq!(dec_json(None, std::str::from_utf8(&json).unwrap()).unwrap(), sorted);
    }

    #[test]
    fn cbor_bytes() {
        let v = vec![
            (p("/3303/0/5700"), Value::Float(21.5)),
            (p("/3303/0/5701"), Value::String("Cel".into())),
        ];
        let b = encode_cbor(Some(&p("/3303/0")), &v).unwrap();
        let expected: Vec<u8> = [
            &[0x82, 0xa3, 0x21, 0x68][..],
            b"/3303/0/",
            &[0x00, 0x64],
            b"5700",
            &[0x02, 0xfa, 0x41, 0xac, 0x00, 0x00, 0xa2, 0x00, 0x64],
            b"5701",
            &[0x03, 0x63],
            b"Cel",
        ]
        .concat();
        assert_eq!(b, expected);
        assert_eq!(dec_cbor(Some("/3303/0"), &b).unwrap(), v);
    }

    #[test]
    fn base_time_and_name_resolution() {
        let s = r#"[{"bn":"/3303/0/","bt":1000,"n":"5700","v":20,"t":-5},{"n":"5700","v":21},{"bn":"/3304/0/","n":"5700","v":40.5}]"#;
        let v = decode_json_timed(None, s.as_bytes(), &Registry::core(), &Limits::default()).unwrap();
        let times: Vec<Option<f64>> = v.iter().map(|t| t.time).collect();
        assert_eq!(times, [Some(995.0), Some(1000.0), Some(1000.0)]);
        assert_eq!(v[2].path, p("/3304/0/5700"));
        assert_eq!(v[0].value, Value::Float(20.0));
    }

    #[test]
    fn wrong_types_and_malformed() {
        let cases = [
            (Some("/3/0"), r#"[{"bn":"/3/0/","n":"0","v":1}]"#), // string resource as number
            (Some("/3/0"), r#"[{"bn":"/3/0/","n":"9","vs":"x"}]"#), // integer resource as string
            (Some("/3/0"), r#"[{"bn":"/3/0/","n":"9","v":1.5}]"#), // integer with fraction
            (Some("/1/0"), r#"[{"bn":"/1/0/","n":"6","v":1}]"#), // boolean as number
            (Some("/3/0"), r#"[{"bn":"/3/0/","n":"9","v":"1"}]"#), // v not a number
            (Some("/3/0"), r#"[{"bn":"/3/0/","n":"9","v":1,"vs":"1"}]"#), // two values
            (Some("/3/0"), r#"[{"bn":"/3/0/","n":"9"}]"#),       // no value
            (Some("/3/0"), r#"[{"bn":"/3/1/","n":"9","v":1}]"#), // outside the base
            (Some("/3/0"), r#"[{"bn":"/3/0/","n":"x","v":1}]"#), // not a path
            (None, r#"[{"n":"/3","v":1}]"#),                     // object, not resource
            (None, r#"[{"n":"/3/0/9","v":1,"bv":1}]"#),          // base value
            (None, r#"[{"n":"/3/0/9","v":1,"x_":1}]"#),          // must-understand
            (None, r#"[{"n":"/3/0/22/0","vlo":"3"}]"#),          // bad objlnk
            (None, r#"[{"n":"/5/0/0","vd":"***"}]"#),            // bad base64
            (None, r#"[{"n":"/3/0/9","v":99999999999999999999}]"#), // integer overflow
            (None, r#"{"n":"/3/0/9","v":1}"#),                   // not an array
            (None, r#"[1]"#),
            (None, r#"[{"n":"/3/0/9","v":1}"#),
        ];
        for (base, s) in cases {
            assert!(dec_json(base, s).is_err(), "{s}");
        }
        let many = format!("[{}]", [r#"{"n":"/3/0/9","v":1}"#; 10].join(","));
        let limits = Limits {
            max_entries: 5,
            ..Limits::default()
        };
        assert_eq!(
            decode_json(None, many.as_bytes(), &Registry::core(), &limits),
            Err(DecodeError::TooManyEntries(5))
        );
        // CBOR: string where an integer is expected, bytes for vs, huge counts, truncation.
        for b in [
            &[
                0x81, 0xa2, 0x00, 0x66, b'/', b'3', b'/', b'0', b'/', b'9', 0x03, 0x61, b'x',
            ][..],
            &[
                0x81, 0xa2, 0x00, 0x66, b'/', b'3', b'/', b'0', b'/', b'0', 0x03, 0x41, b'x',
            ][..],
            &[0x9b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff][..],
            &[0x81, 0xbb, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff][..],
            &[0x81, 0xa1, 0x00][..],
            &[0x81, 0xa1, 0x25, 0x01][..],
            &[0xa0][..],
        ] {
            assert!(dec_cbor(None, b).is_err(), "{b:02x?}");
        }
    }

    #[test]
    fn composite_paths() {
        let paths = vec![p("/3/0/1"), p("/1/0"), p("/3303")];
        let j = encode_paths_json(&paths);
        assert_eq!(
            std::str::from_utf8(&j).unwrap(),
            r#"[{"n":"/3/0/1"},{"n":"/1/0"},{"n":"/3303"}]"#
        );
        assert_eq!(decode_paths_json(&j, &Limits::default()).unwrap(), paths);
        let c = encode_paths_cbor(&paths);
        assert_eq!(decode_paths_cbor(&c, &Limits::default()).unwrap(), paths);
    }
}
