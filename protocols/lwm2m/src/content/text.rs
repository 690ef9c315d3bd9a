//! Single-value formats: `text/plain` (0, TS 1.2 Core §7.4.1) and `application/octet-stream`
//! (42, §7.4.2). Both carry one resource (instance) value; plain text is typed by the registry
//! (an unknown resource reads as a string): decimal numbers, `0`/`1` booleans, `obj:inst`
//! object links, base64 opaque.

use base64::Engine as _;

use crate::error::{DecodeError, EncodeError};
use crate::path::Path;
use crate::registry::Registry;
use crate::value::{decode_base64, parse_objlnk, ResourceType, Value};

/// Decodes a plain-text value of the resource `base`.
pub fn decode_text(base: &Path, payload: &[u8], registry: &Registry) -> Result<Vec<(Path, Value)>, DecodeError> {
    if base.depth() < 3 {
        return Err(DecodeError::NotAResource {
            format: "text/plain",
            path: base.to_string(),
        });
    }
    let ty = registry.resource_type(base).unwrap_or(ResourceType::String);
    let bad = |detail: &str| DecodeError::TypeMismatch {
        path: base.to_string(),
        expected: ty.name(),
        detail: detail.into(),
    };
    let s = std::str::from_utf8(payload).map_err(|_| bad("not UTF-8"))?;
    // Only ASCII digits with an optional leading minus, as Rust's parser also takes `+`.
    let int_like = |s: &str| !s.is_empty() && s.strip_prefix('-').unwrap_or(s).bytes().all(|c| c.is_ascii_digit());
    let v = match ty {
        ResourceType::String => Value::String(s.to_owned()),
        ResourceType::Corelnk => Value::Corelnk(s.to_owned()),
        ResourceType::Integer | ResourceType::Time => {
            let i = int_like(s)
                .then(|| s.parse::<i64>().ok())
                .flatten()
                .ok_or_else(|| bad("not a decimal integer"))?;
            if ty == ResourceType::Time {
                Value::Time(i)
            } else {
                Value::Integer(i)
            }
        }
        ResourceType::UnsignedInteger => Value::UnsignedInteger(
            (!s.starts_with('-') && int_like(s))
                .then(|| s.parse::<u64>().ok())
                .flatten()
                .ok_or_else(|| bad("not a decimal unsigned integer"))?,
        ),
        ResourceType::Float => {
            let decimal = !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit() || b"-+.eE".contains(&c));
            Value::Float(
                decimal
                    .then(|| s.parse::<f64>().ok())
                    .flatten()
                    .filter(|f| f.is_finite())
                    .ok_or_else(|| bad("not a decimal number"))?,
            )
        }
        ResourceType::Boolean => match s {
            "0" => Value::Boolean(false),
            "1" => Value::Boolean(true),
            _ => return Err(bad("boolean is not 0 or 1")),
        },
        ResourceType::Objlnk => {
            let (o, i) = parse_objlnk(s).ok_or_else(|| bad("not obj:inst"))?;
            Value::Objlnk(o, i)
        }
        ResourceType::Opaque => Value::Opaque(decode_base64(s).ok_or_else(|| bad("not base64"))?),
        ResourceType::None => return Err(bad("executable resource has no value")),
    };
    Ok(vec![(*base, v)])
}

/// Encodes one value as plain text.
pub fn encode_text(content: &[(Path, Value)]) -> Result<Vec<u8>, EncodeError> {
    let [(path, value)] = content else {
        return Err(EncodeError::NotSingle("text/plain"));
    };
    Ok(match value {
        Value::Integer(i) | Value::Time(i) => i.to_string(),
        Value::UnsignedInteger(u) => u.to_string(),
        Value::Float(f) if f.is_finite() => f.to_string(),
        Value::Float(_) => return Err(EncodeError::Unrepresentable(path.to_string())),
        Value::Boolean(b) => u8::from(*b).to_string(),
        Value::String(s) | Value::Corelnk(s) => s.clone(),
        Value::Opaque(b) => base64::engine::general_purpose::STANDARD.encode(b),
        Value::Objlnk(o, i) => format!("{o}:{i}"),
    }
    .into_bytes())
}

/// Decodes an opaque value of the resource `base`.
pub fn decode_opaque(base: &Path, payload: &[u8]) -> Result<Vec<(Path, Value)>, DecodeError> {
    if base.depth() < 3 {
        return Err(DecodeError::NotAResource {
            format: "opaque",
            path: base.to_string(),
        });
    }
    Ok(vec![(*base, Value::Opaque(payload.to_vec()))])
}

/// Encodes one opaque value.
pub fn encode_opaque(content: &[(Path, Value)]) -> Result<Vec<u8>, EncodeError> {
    match content {
        [(_, Value::Opaque(b))] => Ok(b.clone()),
        [(p, _)] => Err(EncodeError::Unrepresentable(p.to_string())),
        _ => Err(EncodeError::NotSingle("opaque")),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn p(s: &str) -> Path {
        s.parse().unwrap()
    }

    #[test]
    fn typed_by_registry() {
        let r = Registry::core();
        let cases = [
            (
                "/3/0/0",
                "Open Mobile Alliance",
                Value::String("Open Mobile Alliance".into()),
            ),
            ("/3/0/9", "-7", Value::Integer(-7)),
            ("/3/0/13", "1367491215", Value::Time(1367491215)),
            ("/3303/0/5700", "21.5", Value::Float(21.5)),
            ("/1/0/6", "1", Value::Boolean(true)),
            ("/3/0/22/0", "3:1", Value::Objlnk(3, 1)),
            ("/5/0/0", "AQID", Value::Opaque(vec![1, 2, 3])),
            ("/0/0/13", "42", Value::UnsignedInteger(42)),
            ("/9999/0/1", "x", Value::String("x".into())),
        ];
        for (path, text, value) in cases {
            let got = decode_text(&p(path), text.as_bytes(), &r).unwrap();
            assert_eq!(got, vec![(p(path), value.clone())], "{path}");
            assert_eq!(encode_text(&got).unwrap(), text.as_bytes(), "{path}");
        }
    }

    #[test]
    fn rejects() {
        let r = Registry::core();
        for (path, text) in [
            ("/3/0", "x"),
            ("/3/0/9", "1.5"),
            ("/3/0/9", "+1"),
            ("/3/0/9", ""),
            ("/3/0/9", "99999999999999999999"),
            ("/0/0/13", "-1"),
            ("/3303/0/5700", "inf"),
            ("/3303/0/5700", "NaN"),
            ("/1/0/6", "true"),
            ("/3/0/22/0", "3"),
            ("/3/0/4", ""),
        ] {
            assert!(decode_text(&p(path), text.as_bytes(), &r).is_err(), "{path} {text:?}");
        }
        assert!(decode_text(&p("/3/0/0"), b"\xff", &r).is_err());
        assert!(encode_text(&[]).is_err());
        assert!(encode_text(&[(p("/3303/0/5700"), Value::Float(f64::NAN))]).is_err());
    }

    #[test]
    fn opaque() {
        let v = decode_opaque(&p("/5/0/0"), &[0, 255]).unwrap();
        assert_eq!(v, vec![(p("/5/0/0"), Value::Opaque(vec![0, 255]))]);
        assert_eq!(encode_opaque(&v).unwrap(), [0, 255]);
        assert!(decode_opaque(&p("/5/0"), &[]).is_err());
        assert!(encode_opaque(&[(p("/5/0/1"), Value::String("x".into()))]).is_err());
    }
}
