//! Resource values and their data types (TS 1.2 Core Appendix C), and the typed JSON shape the
//! broker publishes (EMQX's): numbers and booleans as JSON, opaque as base64, object links as
//! `"obj:inst"`, content as `[{"path": "/3/0/0", "value": "ACME"}]`.

use std::fmt;

use base64::Engine as _;
use serde_json::json;

use crate::error::ValueError;
use crate::path::Path;
use crate::registry::Registry;

/// A resource's data type, as named in DDF `<Type>` (TS 1.2 Core Appendix C).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ResourceType {
    /// UTF-8 string.
    String,
    /// Signed 64-bit integer.
    Integer,
    /// Unsigned 64-bit integer (1.1).
    UnsignedInteger,
    /// 32- or 64-bit float.
    Float,
    /// Boolean.
    Boolean,
    /// Bytes.
    Opaque,
    /// Seconds since the Unix epoch, signed.
    Time,
    /// Object link `obj:inst`.
    Objlnk,
    /// CoRE link (RFC 6690) as a string (1.1).
    Corelnk,
    /// No value: executable resources.
    None,
}

impl ResourceType {
    /// The DDF name: `"String"`, `"Unsigned Integer"` ... and `"none"`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::String => "String",
            Self::Integer => "Integer",
            Self::UnsignedInteger => "Unsigned Integer",
            Self::Float => "Float",
            Self::Boolean => "Boolean",
            Self::Opaque => "Opaque",
            Self::Time => "Time",
            Self::Objlnk => "Objlnk",
            Self::Corelnk => "Corelnk",
            Self::None => "none",
        }
    }

    /// Parses a DDF type name, case-insensitively; the empty string is `None`.
    pub fn from_name(s: &str) -> Option<Self> {
        let t = s.trim();
        let all = [
            Self::String,
            Self::Integer,
            Self::UnsignedInteger,
            Self::Float,
            Self::Boolean,
            Self::Opaque,
            Self::Time,
            Self::Objlnk,
            Self::Corelnk,
            Self::None,
        ];
        if t.is_empty() {
            return Some(Self::None);
        }
        all.into_iter().find(|k| k.name().eq_ignore_ascii_case(t)).or_else(|| {
            // Older DDFs spell it without the space.
            t.eq_ignore_ascii_case("UnsignedInteger")
                .then_some(Self::UnsignedInteger)
        })
    }
}

impl fmt::Display for ResourceType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A resource value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// Integer.
    Integer(i64),
    /// Unsigned Integer.
    UnsignedInteger(u64),
    /// Float.
    Float(f64),
    /// Boolean.
    Boolean(bool),
    /// String.
    String(String),
    /// Opaque.
    Opaque(Vec<u8>),
    /// Time, seconds since the epoch.
    Time(i64),
    /// Object link: object id, object instance id.
    Objlnk(u16, u16),
    /// CoRE link.
    Corelnk(String),
}

impl Value {
    /// The type this value has.
    pub fn resource_type(&self) -> ResourceType {
        match self {
            Self::Integer(_) => ResourceType::Integer,
            Self::UnsignedInteger(_) => ResourceType::UnsignedInteger,
            Self::Float(_) => ResourceType::Float,
            Self::Boolean(_) => ResourceType::Boolean,
            Self::String(_) => ResourceType::String,
            Self::Opaque(_) => ResourceType::Opaque,
            Self::Time(_) => ResourceType::Time,
            Self::Objlnk(..) => ResourceType::Objlnk,
            Self::Corelnk(_) => ResourceType::Corelnk,
        }
    }

    /// The typed JSON form: numbers, booleans, strings; opaque as standard base64; objlnk as
    /// `"obj:inst"`. Non-finite floats become `null` (JSON has no NaN).
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Self::Integer(v) | Self::Time(v) => json!(v),
            Self::UnsignedInteger(v) => json!(v),
            Self::Float(v) => serde_json::Number::from_f64(*v).map_or(serde_json::Value::Null, Into::into),
            Self::Boolean(v) => json!(v),
            Self::String(s) | Self::Corelnk(s) => json!(s),
            Self::Opaque(b) => json!(base64::engine::general_purpose::STANDARD.encode(b)),
            Self::Objlnk(o, i) => json!(format!("{o}:{i}")),
        }
    }

    /// A value of type `ty` from JSON. Numbers may also come as strings (`"10"`), booleans as
    /// `true`/`false`, `"true"`/`"false"` or `0`/`1`, opaque as base64 (standard or URL-safe).
    pub fn from_json(json: &serde_json::Value, ty: ResourceType) -> Result<Self, ValueError> {
        use serde_json::Value as J;
        let mismatch = || ValueError::Mismatch {
            expected: ty.name(),
            got: short(json),
        };
        let text = match json {
            J::String(s) => Some(s.as_str()),
            _ => None,
        };
        Ok(match ty {
            ResourceType::Integer | ResourceType::Time => {
                let v = match json {
                    J::Number(n) => n.as_i64().ok_or_else(mismatch)?,
                    J::String(s) => s.trim().parse().map_err(|_| mismatch())?,
                    _ => return Err(mismatch()),
                };
                if ty == ResourceType::Time {
                    Value::Time(v)
                } else {
                    Value::Integer(v)
                }
            }
            ResourceType::UnsignedInteger => Value::UnsignedInteger(match json {
                J::Number(n) => n.as_u64().ok_or_else(mismatch)?,
                J::String(s) => s.trim().parse().map_err(|_| mismatch())?,
                _ => return Err(mismatch()),
            }),
            ResourceType::Float => Value::Float(match json {
                J::Number(n) => n.as_f64().ok_or_else(mismatch)?,
                J::String(s) => s.trim().parse().map_err(|_| mismatch())?,
                _ => return Err(mismatch()),
            }),
            ResourceType::Boolean => Value::Boolean(match json {
                J::Bool(b) => *b,
                J::Number(n) if n.as_u64() == Some(0) => false,
                J::Number(n) if n.as_u64() == Some(1) => true,
                J::String(s) if s == "true" || s == "1" => true,
                J::String(s) if s == "false" || s == "0" => false,
                _ => return Err(mismatch()),
            }),
            ResourceType::String => Value::String(text.ok_or_else(mismatch)?.to_owned()),
            ResourceType::Corelnk => Value::Corelnk(text.ok_or_else(mismatch)?.to_owned()),
            ResourceType::Opaque => Value::Opaque(decode_base64(text.ok_or_else(mismatch)?).ok_or_else(mismatch)?),
            ResourceType::Objlnk => {
                let (o, i) = parse_objlnk(text.ok_or_else(mismatch)?).ok_or_else(mismatch)?;
                Value::Objlnk(o, i)
            }
            ResourceType::None => return Err(mismatch()),
        })
    }
}

fn short(json: &serde_json::Value) -> String {
    let s = json.to_string();
    if s.len() > 40 {
        format!("{}…", s.chars().take(40).collect::<String>())
    } else {
        s
    }
}

/// `"obj:inst"` with both ids ≤ 65535 (`65535:65535` is the null object link, TS Core §C).
pub(crate) fn parse_objlnk(s: &str) -> Option<(u16, u16)> {
    let (o, i) = s.split_once(':')?;
    let id =
        |t: &str| (!t.is_empty() && t.len() <= 5 && t.bytes().all(|c| c.is_ascii_digit())).then(|| t.parse().ok())?;
    Some((id(o)?, id(i)?))
}

/// Base64 in either alphabet, padded or not.
pub(crate) fn decode_base64(s: &str) -> Option<Vec<u8>> {
    use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
    let s = s.trim_end_matches('=');
    STANDARD_NO_PAD.decode(s).or_else(|_| URL_SAFE_NO_PAD.decode(s)).ok()
}

/// Content in the published JSON shape: `[{"path": "/3/0/0", "value": "ACME"}, ...]`.
pub fn content_to_json(content: &[(Path, Value)]) -> serde_json::Value {
    content
        .iter()
        .map(|(p, v)| json!({"path": p.to_string(), "value": v.to_json()}))
        .collect()
}

/// Content from the JSON shape, typed by the registry (a resource the registry does not know
/// is taken as a string, or an integer, float or boolean as the JSON says).
pub fn content_from_json(json: &serde_json::Value, registry: &Registry) -> Result<Vec<(Path, Value)>, ValueError> {
    let items = json
        .as_array()
        .ok_or_else(|| ValueError::Shape("content is not an array".into()))?;
    items
        .iter()
        .map(|item| {
            let path = item
                .get("path")
                .and_then(|p| p.as_str())
                .ok_or_else(|| ValueError::Shape("item without a string \"path\"".into()))?;
            let path: Path = path.parse()?;
            let value = item
                .get("value")
                .ok_or_else(|| ValueError::Shape("item without \"value\"".into()))?;
            let ty = match registry.resource_type(&path) {
                Some(t) => t,
                None => match value {
                    serde_json::Value::Bool(_) => ResourceType::Boolean,
                    serde_json::Value::Number(n) if n.is_i64() => ResourceType::Integer,
                    serde_json::Value::Number(n) if n.is_u64() => ResourceType::UnsignedInteger,
                    serde_json::Value::Number(_) => ResourceType::Float,
                    _ => ResourceType::String,
                },
            };
            Ok((path, Value::from_json(value, ty)?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn json_shape() {
        let content = vec![
            ("/3/0/0".parse().unwrap(), Value::String("ACME".into())),
            ("/3/0/9".parse().unwrap(), Value::Integer(100)),
            ("/3/0/13".parse().unwrap(), Value::Time(1367491215)),
            ("/6/0/0".parse().unwrap(), Value::Float(-43.5)),
            ("/5/0/0".parse().unwrap(), Value::Opaque(vec![0, 1, 0xff])),
            ("/1/0/6".parse().unwrap(), Value::Boolean(true)),
            ("/3/0/22/0".parse().unwrap(), Value::Objlnk(3303, 1)),
        ];
        let j = content_to_json(&content);
        assert_eq!(
            j.to_string(),
            r#"[{"path":"/3/0/0","value":"ACME"},{"path":"/3/0/9","value":100},{"path":"/3/0/13","value":1367491215},{"path":"/6/0/0","value":-43.5},{"path":"/5/0/0","value":"AAH/"},{"path":"/1/0/6","value":true},{"path":"/3/0/22/0","value":"3303:1"}]"#
        );
        assert_eq!(content_from_json(&j, &Registry::core()).unwrap(), content);
    }

    #[test]
    fn from_json_accepts_strings_and_rejects_mismatches() {
        use serde_json::json;
        assert_eq!(
            Value::from_json(&json!("10"), ResourceType::Integer),
            Ok(Value::Integer(10))
        );
        assert_eq!(
            Value::from_json(&json!("1.5"), ResourceType::Float),
            Ok(Value::Float(1.5))
        );
        assert_eq!(
            Value::from_json(&json!("true"), ResourceType::Boolean),
            Ok(Value::Boolean(true))
        );
        assert_eq!(
            Value::from_json(&json!(0), ResourceType::Boolean),
            Ok(Value::Boolean(false))
        );
        assert_eq!(
            Value::from_json(&json!("AAH_"), ResourceType::Opaque),
            Ok(Value::Opaque(vec![0, 1, 0xff]))
        );
        for (j, t) in [
            (json!("x"), ResourceType::Integer),
            (json!(1.5), ResourceType::Integer),
            (json!(-1), ResourceType::UnsignedInteger),
            (json!(2), ResourceType::Boolean),
            (json!(1), ResourceType::String),
            (json!("3"), ResourceType::Objlnk),
            (json!("3:70000"), ResourceType::Objlnk),
            (json!("!!"), ResourceType::Opaque),
            (json!(1), ResourceType::None),
        ] {
            assert!(Value::from_json(&j, t).is_err(), "{j} as {t}");
        }
    }

    #[test]
    fn type_names() {
        assert_eq!(
            ResourceType::from_name("Unsigned Integer"),
            Some(ResourceType::UnsignedInteger)
        );
        assert_eq!(ResourceType::from_name("objlnk"), Some(ResourceType::Objlnk));
        assert_eq!(ResourceType::from_name(""), Some(ResourceType::None));
        assert_eq!(ResourceType::from_name("Decimal"), None);
    }
}
