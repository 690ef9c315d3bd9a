//! The LwM2M 1.0 JSON format (TS 1.0 §6.4.4, content format 11543):
//! `{"bn":"/3/0/","bt":..,"e":[{"n":"0","sv":".."},{"n":"6/0","v":1},..]}` with `v` number, `sv`
//! string (also opaque as base64), `bv` boolean, `ov` object link `"obj:inst"` and `t` time.

use base64::Engine as _;

use crate::content::{check_under, sorted, typed, Wire};
use crate::error::{DecodeError, EncodeError};
use crate::path::Path;
use crate::registry::Registry;
use crate::value::Value;
use crate::Limits;

const F: &str = "LwM2M JSON";

fn syntax(detail: impl Into<String>) -> DecodeError {
    DecodeError::Syntax {
        format: F,
        detail: detail.into(),
    }
}

/// Decodes LwM2M JSON answering a request on `base` (`None`: any path).
pub fn decode(
    base: Option<&Path>,
    payload: &[u8],
    registry: &Registry,
    limits: &Limits,
) -> Result<Vec<(Path, Value)>, DecodeError> {
    let doc: serde_json::Value = serde_json::from_slice(payload).map_err(|e| syntax(e.to_string()))?;
    let obj = doc.as_object().ok_or_else(|| syntax("not an object"))?;
    let bn = match obj.get("bn") {
        None => "",
        Some(v) => v.as_str().ok_or_else(|| syntax("bn is not a string"))?,
    };
    if let Some(bt) = obj.get("bt") {
        bt.as_f64().ok_or_else(|| syntax("bt is not a number"))?;
    }
    let entries = obj
        .get("e")
        .and_then(|e| e.as_array())
        .ok_or_else(|| syntax("no \"e\" array"))?;
    if entries.len() > limits.max_entries {
        return Err(DecodeError::TooManyEntries(limits.max_entries));
    }
    entries
        .iter()
        .map(|e| {
            let e = e.as_object().ok_or_else(|| syntax("entry is not an object"))?;
            let n = match e.get("n") {
                None => "",
                Some(n) => n.as_str().ok_or_else(|| syntax("n is not a string"))?,
            };
            let name = format!("{bn}{n}");
            let path: Path = name
                .parse()
                .map_err(|_| DecodeError::BadPath(name.chars().take(64).collect()))?;
            check_under(base, &path)?;
            if let Some(t) = e.get("t") {
                t.as_f64().ok_or_else(|| syntax("t is not a number"))?;
            }
            let mut wire = None;
            for (k, v) in e {
                let w = match k.as_str() {
                    "v" => match v {
                        serde_json::Value::Number(n) => match (n.as_i64(), n.as_u64()) {
                            (Some(i), _) => Wire::Int(i.into()),
                            (_, Some(u)) => Wire::Int(u.into()),
                            _ => Wire::Float(n.as_f64().ok_or_else(|| syntax("v is not a number"))?),
                        },
                        _ => return Err(syntax("v is not a number")),
                    },
                    "sv" => Wire::Str(v.as_str().ok_or_else(|| syntax("sv is not a string"))?.to_owned()),
                    "bv" => Wire::Bool(v.as_bool().ok_or_else(|| syntax("bv is not a boolean"))?),
                    "ov" => Wire::Objlnk(v.as_str().ok_or_else(|| syntax("ov is not a string"))?.to_owned()),
                    _ => continue,
                };
                if wire.replace(w).is_some() {
                    return Err(syntax("entry has more than one value"));
                }
            }
            let wire = wire.ok_or_else(|| syntax(format!("entry {path} has no value")))?;
            Ok((path, typed(&path, wire, registry)?))
        })
        .collect()
}

fn json_string(s: &str) -> String {
    serde_json::Value::String(s.to_owned()).to_string()
}

/// Encodes values as LwM2M JSON for a request on `base`, as in the TS example:
/// `{"bn":"/3/0/","e":[{"n":"0","sv":"Open Mobile Alliance"},...]}`.
pub fn encode(base: Option<&Path>, content: &[(Path, Value)]) -> Result<Vec<u8>, EncodeError> {
    let items = sorted(base, content)?;
    let single = base.filter(|b| items.len() == 1 && items[0].0 == **b);
    let prefix = match (single, base) {
        (Some(b), _) => b.to_string(),
        (None, Some(b)) => format!("{b}/"),
        (None, None) => "/".to_owned(),
    };
    let mut entries = Vec::with_capacity(items.len());
    for (path, value) in &items {
        let full = path.to_string();
        let n = full.get(prefix.len()..).unwrap_or_default();
        let v = match Wire::from_value(value) {
            Wire::Int(i) => format!("\"v\":{i}"),
            Wire::Float(f) => format!(
                "\"v\":{}",
                serde_json::Number::from_f64(f).ok_or_else(|| EncodeError::Unrepresentable(full.clone()))?
            ),
            Wire::Str(s) => format!("\"sv\":{}", json_string(&s)),
            Wire::Bool(b) => format!("\"bv\":{b}"),
            Wire::Data(d) => format!("\"sv\":\"{}\"", base64::engine::general_purpose::STANDARD.encode(d)),
            Wire::Objlnk(s) => format!("\"ov\":\"{s}\""),
        };
        entries.push(if n.is_empty() {
            format!("{{{v}}}")
        } else {
            format!("{{\"n\":{},{v}}}", json_string(n))
        });
    }
    Ok(format!("{{\"bn\":{},\"e\":[{}]}}", json_string(&prefix), entries.join(",")).into_bytes())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::content::tlv::tests::{device_values, p};

    /// TS 1.0 §6.4.4 example: Read on `/3/0` (the TS prints it with whitespace).
    const DEVICE_JSON: &str = r#"{"bn":"/3/0/",
"e":[
{"n":"0","sv":"Open Mobile Alliance"},
{"n":"1","sv":"Lightweight M2M Client"},
{"n":"2","sv":"345000123"},
{"n":"3","sv":"1.0"},
{"n":"6/0","v":1},
{"n":"6/1","v":5},
{"n":"7/0","v":3800},
{"n":"7/1","v":5000},
{"n":"8/0","v":125},
{"n":"8/1","v":900},
{"n":"9","v":100},
{"n":"10","v":15},
{"n":"11/0","v":0},
{"n":"13","v":1367491215},
{"n":"14","sv":"+02:00"},
{"n":"16","sv":"U"}]
}"#;

    fn dec(base: Option<&str>, s: &str) -> Result<Vec<(Path, Value)>, DecodeError> {
        decode(
            base.map(p).as_ref(),
            s.as_bytes(),
            &Registry::core(),
            &Limits::default(),
        )
    }

    #[test]
    fn ts_device_example() {
        assert_eq!(dec(Some("/3/0"), DEVICE_JSON).unwrap(), device_values());
        let compact: String = DEVICE_JSON.chars().filter(|&c| c != '\n').collect();
        assert_eq!(
            std::str::from_utf8(&encode(Some(&p("/3/0")), &device_values()).unwrap()).unwrap(),
            compact
        );
    }

    #[test]
    fn single_resource_opaque_objlnk() {
        let v = vec![(p("/5/0/0"), Value::Opaque(vec![1, 2, 3]))];
        let b = encode(Some(&p("/5/0/0")), &v).unwrap();
        assert_eq!(
            std::str::from_utf8(&b).unwrap(),
            r#"{"bn":"/5/0/0","e":[{"sv":"AQID"}]}"#
        );
        assert_eq!(dec(Some("/5/0/0"), std::str::from_utf8(&b).unwrap()).unwrap(), v);
        let v = vec![
            (p("/3/0/22/0"), Value::Objlnk(3, 1)),
            (p("/3/0/22/1"), Value::Objlnk(65535, 65535)),
        ];
        let b = encode(Some(&p("/3/0/22")), &v).unwrap();
        assert_eq!(
            std::str::from_utf8(&b).unwrap(),
            r#"{"bn":"/3/0/22/","e":[{"n":"0","ov":"3:1"},{"n":"1","ov":"65535:65535"}]}"#
        );
        assert_eq!(dec(Some("/3/0/22"), std::str::from_utf8(&b).unwrap()).unwrap(), v);
    }

    #[test]
    fn rejects() {
        for s in [
            r#"[]"#,
            r#"{"bn":"/3/0/"}"#,
            r#"{"bn":3,"e":[]}"#,
            r#"{"bn":"/3/0/","e":[{"n":"0","v":1}]}"#,
            r#"{"bn":"/3/0/","e":[{"n":"9","sv":"1"}]}"#,
            r#"{"bn":"/3/0/","e":[{"n":"9","v":1,"bv":true}]}"#,
            r#"{"bn":"/3/0/","e":[{"n":"9"}]}"#,
            r#"{"bn":"/3/0/","e":[{"n":"9","v":1,"t":"x"}]}"#,
            r#"{"bn":"/4/0/","e":[{"n":"0","v":1}]}"#,
            r#"{"bn":"/3/0/","e":[{"n":"5","v":1}]}"#,
        ] {
            assert!(dec(Some("/3/0"), s).is_err(), "{s}");
        }
    }
}
