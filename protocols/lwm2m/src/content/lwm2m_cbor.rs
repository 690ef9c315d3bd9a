//! LwM2M CBOR (TS 1.2 Core §7.4.7, content format 11544): nested CBOR maps keyed by path ids
//! from the object down, e.g. `{3: {0: {0: "Open Mobile Alliance", 6: {0: 1, 1: 5}}}}`. A key
//! may also be an array of ids standing for several levels (`{[3, 0]: {0: ..}}`). Leaves are
//! integers, floats, booleans, text (strings, core links and object links `"obj:inst"`), byte
//! strings (opaque); a time may carry tag 1.
//!
//! The encoder always writes one id per key.

use crate::content::cbor::{self, Item, Writer};
use crate::content::{check_under, sorted, typed, Wire};
use crate::error::{DecodeError, EncodeError};
use crate::path::{Path, MAX_ID};
use crate::registry::Registry;
use crate::value::Value;
use crate::Limits;

const F: &str = "LwM2M CBOR";

fn syntax(detail: impl Into<String>) -> DecodeError {
    DecodeError::Syntax {
        format: F,
        detail: detail.into(),
    }
}

struct Walk<'a> {
    base: Option<&'a Path>,
    registry: &'a Registry,
    max: usize,
    out: Vec<(Path, Value)>,
}

impl Walk<'_> {
    fn node(&mut self, prefix: &[u16], item: Item) -> Result<(), DecodeError> {
        let Item::Map(entries) = item else {
            return self.leaf(prefix, item);
        };
        for (k, v) in entries {
            let ids: Vec<u64> = match k {
                Item::Uint(id) => vec![id],
                Item::Array(parts) => parts
                    .iter()
                    .map(|p| match p {
                        Item::Uint(id) => Ok(*id),
                        _ => Err(syntax("path key array holds a non-integer")),
                    })
                    .collect::<Result<_, _>>()?,
                other => return Err(syntax(format!("map key is a {}", other.kind()))),
            };
            let mut path = prefix.to_vec();
            for id in ids {
                if path.len() >= 4 {
                    return Err(DecodeError::BadPath(format!("{path:?}")));
                }
                let id = u16::try_from(id)
                    .ok()
                    .filter(|&id| id <= MAX_ID)
                    .ok_or_else(|| DecodeError::BadPath(id.to_string()))?;
                path.push(id);
            }
            if path.len() == prefix.len() {
                return Err(syntax("empty path key"));
            }
            self.node(&path, v)?;
        }
        Ok(())
    }

    fn leaf(&mut self, ids: &[u16], item: Item) -> Result<(), DecodeError> {
        let path = Path::new(ids).map_err(|_| DecodeError::BadPath(format!("{ids:?}")))?;
        check_under(self.base, &path)?;
        if self.out.len() >= self.max {
            return Err(DecodeError::TooManyEntries(self.max));
        }
        let item = match item {
            // Tag 1: epoch-based date/time (RFC 8949 §3.4.2).
            Item::Tag(1, inner) => *inner,
            i => i,
        };
        let wire = match item {
            Item::Float(f) => Wire::Float(f),
            Item::Text(s) => Wire::Str(s),
            Item::Bytes(b) => Wire::Data(b),
            Item::Bool(b) => Wire::Bool(b),
            i => Wire::Int(
                i.as_int()
                    .ok_or_else(|| syntax(format!("{path} holds a {}", i.kind())))?,
            ),
        };
        self.out.push((path, typed(&path, wire, self.registry)?));
        Ok(())
    }
}

/// Decodes LwM2M CBOR answering a request on `base` (`None`: composite, any path).
pub fn decode(
    base: Option<&Path>,
    payload: &[u8],
    registry: &Registry,
    limits: &Limits,
) -> Result<Vec<(Path, Value)>, DecodeError> {
    let item = cbor::decode(payload)?;
    if !matches!(item, Item::Map(_)) {
        return Err(syntax("not a map"));
    }
    let mut w = Walk {
        base,
        registry,
        max: limits.max_entries,
        out: Vec::new(),
    };
    w.node(&[], item)?;
    Ok(w.out)
}

/// Encodes values as LwM2M CBOR (paths from the object down, whatever the base).
pub fn encode(base: Option<&Path>, content: &[(Path, Value)]) -> Result<Vec<u8>, EncodeError> {
    let items = sorted(base, content)?;
    let mut w = Writer::default();
    level(&mut w, &items, 0);
    Ok(w.out)
}

/// Writes the map for `items`, which share their first `depth` ids.
fn level(w: &mut Writer, items: &[&(Path, Value)], depth: usize) {
    let id = |p: &Path| p.ids().get(depth).copied().unwrap_or(0);
    let groups: Vec<&[&(Path, Value)]> = items.chunk_by(|a, b| id(&a.0) == id(&b.0)).collect();
    w.map(groups.len());
    for g in groups {
        w.uint(u64::from(id(&g[0].0)));
        match g {
            [(p, v)] if p.depth() == depth + 1 => leaf(w, v),
            _ => level(w, g, depth + 1),
        }
    }
}

fn leaf(w: &mut Writer, v: &Value) {
    match v {
        Value::Integer(i) | Value::Time(i) => w.int(*i),
        Value::UnsignedInteger(u) => w.uint(*u),
        Value::Float(f) => w.float(*f),
        Value::Boolean(b) => w.bool(*b),
        Value::String(s) | Value::Corelnk(s) => w.text(s),
        Value::Opaque(b) => w.bytes(b),
        Value::Objlnk(o, i) => w.text(&format!("{o}:{i}")),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::content::tlv::tests::{device_values, p};

    fn dec(base: Option<&str>, b: &[u8]) -> Result<Vec<(Path, Value)>, DecodeError> {
        decode(base.map(p).as_ref(), b, &Registry::core(), &Limits::default())
    }

    #[test]
    fn nested_maps() {
        let v = vec![
            (p("/3/0/0"), Value::String("ACME".into())),
            (p("/3/0/6/0"), Value::Integer(1)),
            (p("/3/0/6/1"), Value::Integer(5)),
        ];
        let b = encode(Some(&p("/3/0")), &v).unwrap();
        let expected: Vec<u8> = [
            &[0xa1, 0x03, 0xa1, 0x00, 0xa2, 0x00, 0x64][..],
            b"ACME",
            &[0x06, 0xa2, 0x00, 0x01, 0x01, 0x05],
        ]
        .concat();
        assert_eq!(b, expected);
        assert_eq!(dec(Some("/3/0"), &b).unwrap(), v);
        let b = encode(Some(&p("/3/0")), &device_values()).unwrap();
        assert_eq!(dec(Some("/3/0"), &b).unwrap(), device_values());
    }

    #[test]
    fn array_keys_and_tags() {
        // {[3, 0, 13]: 1(1367491215), [3, 0]: {9: 100}}
        let b = [
            0xa2, 0x83, 0x03, 0x00, 0x0d, 0xc1, 0x1a, 0x51, 0x82, 0x42, 0x8f, 0x82, 0x03, 0x00, 0xa1, 0x09, 0x18, 0x64,
        ];
        assert_eq!(
            dec(None, &b).unwrap(),
            vec![
                (p("/3/0/13"), Value::Time(1367491215)),
                (p("/3/0/9"), Value::Integer(100))
            ]
        );
    }

    #[test]
    fn rejects() {
        for b in [
            &[0x80][..],                               // not a map
            &[0xa1, 0x03, 0x01][..],                   // value at object level
            &[0xa1, 0x61, 0x33, 0x01][..],             // text key
            &[0xa1, 0x85, 0, 0, 0, 0, 0, 0x01][..],    // five levels
            &[0xa1, 0x83, 0x03, 0x00, 0x00, 0x01][..], // integer for a string resource
            &[0xa1, 0x83, 0x03, 0x00, 0x09, 0xf6][..], // null
            &[0xa1, 0x80, 0x01][..],                   // empty key
            &[0xa1, 0x19, 0xff, 0xff, 0xa0][..],       // 65535
        ] {
            assert!(dec(None, b).is_err(), "{b:02x?}");
        }
    }
}
