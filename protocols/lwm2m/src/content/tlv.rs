//! OMA TLV (TS 1.2 Core §7.4.3, content format 11542).
//!
//! Each TLV has a type byte, an 8- or 16-bit identifier and a length of 0–3 bytes:
//!
//! ```text
//! bits 7-6  identifier type: 00 object instance, 01 resource instance,
//!           10 multiple resource, 11 resource with value
//! bit  5    identifier length: 0 = 8 bits, 1 = 16 bits
//! bits 4-3  length type: 00 = length in bits 2-0, 01/10/11 = 8/16/24-bit length field
//! bits 2-0  the length when the length type is 00
//! ```
//!
//! Object instances hold resources and multiple resources; multiple resources hold resource
//! instances. Values carry no type: the registry gives it, and an unknown resource decodes as
//! opaque. Every length is checked against its container before it is used.

use crate::content::sorted;
use crate::error::{DecodeError, EncodeError};
use crate::path::Path;
use crate::registry::Registry;
use crate::value::{ResourceType, Value};
use crate::Limits;

/// The identifier type of a TLV.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    ObjectInstance = 0,
    ResourceInstance = 1,
    MultipleResource = 2,
    Resource = 3,
}

/// One TLV: its kind, id and the bytes of its value (children, for containers).
struct Tlv<'a> {
    kind: Kind,
    id: u16,
    value: &'a [u8],
}

/// Splits `b` into TLVs; fails on a header or value that overruns `b`.
fn split(mut b: &[u8]) -> impl Iterator<Item = Result<Tlv<'_>, DecodeError>> {
    std::iter::from_fn(move || {
        if b.is_empty() {
            return None;
        }
        let r = header(b).map(|(tlv, used)| {
            b = &b[used..];
            tlv
        });
        if r.is_err() {
            b = &[];
        }
        Some(r)
    })
}

fn header(b: &[u8]) -> Result<(Tlv<'_>, usize), DecodeError> {
    let t = *b.first().ok_or(DecodeError::Truncated)?;
    let kind = match t >> 6 {
        0 => Kind::ObjectInstance,
        1 => Kind::ResourceInstance,
        2 => Kind::MultipleResource,
        _ => Kind::Resource,
    };
    let id_len = if t & 0x20 != 0 { 2 } else { 1 };
    let len_len = usize::from((t >> 3) & 0x3);
    let hdr = 1 + id_len + len_len;
    let h = b.get(1..hdr).ok_or(DecodeError::Truncated)?;
    let id = if id_len == 2 {
        u16::from_be_bytes([h[0], h[1]])
    } else {
        u16::from(h[0])
    };
    if id == u16::MAX {
        return Err(DecodeError::TlvStructure("identifier 65535 is reserved"));
    }
    let len = if len_len == 0 {
        usize::from(t & 0x7)
    } else {
        h[id_len..].iter().fold(0usize, |acc, &x| (acc << 8) | usize::from(x))
    };
    let available = b.len() - hdr;
    if len > available {
        return Err(DecodeError::LengthOverrun { len, available });
    }
    Ok((
        Tlv {
            kind,
            id,
            value: &b[hdr..hdr + len],
        },
        hdr + len,
    ))
}

struct Decoder<'r> {
    registry: &'r Registry,
    max: usize,
    out: Vec<(Path, Value)>,
}

impl Decoder<'_> {
    fn push(&mut self, path: Path, raw: &[u8]) -> Result<(), DecodeError> {
        if self.out.len() >= self.max {
            return Err(DecodeError::TooManyEntries(self.max));
        }
        let ty = self.registry.resource_type(&path).unwrap_or(ResourceType::Opaque);
        let v = value(&path, ty, raw)?;
        self.out.push((path, v));
        Ok(())
    }

    fn child(parent: &Path, id: u16) -> Result<Path, DecodeError> {
        parent
            .child(id)
            .ok_or_else(|| DecodeError::BadPath(format!("{parent}/{id}")))
    }

    fn instance(&mut self, inst: &Path, bytes: &[u8]) -> Result<(), DecodeError> {
        for tlv in split(bytes) {
            let tlv = tlv?;
            let p = Self::child(inst, tlv.id)?;
            match tlv.kind {
                Kind::Resource => self.push(p, tlv.value)?,
                Kind::MultipleResource => self.multiple(&p, tlv.value)?,
                _ => return Err(DecodeError::TlvStructure("object instance holds a non-resource TLV")),
            }
        }
        Ok(())
    }

    fn multiple(&mut self, res: &Path, bytes: &[u8]) -> Result<(), DecodeError> {
        for tlv in split(bytes) {
            let tlv = tlv?;
            if tlv.kind != Kind::ResourceInstance {
                return Err(DecodeError::TlvStructure(
                    "multiple resource holds a non-resource-instance TLV",
                ));
            }
            self.push(Self::child(res, tlv.id)?, tlv.value)?;
        }
        Ok(())
    }
}

/// Decodes a TLV payload answering a request on `base`.
///
/// At the object level the payload holds object instances; at the object instance level,
/// resources; at the resource level, the resource (or, for a multiple resource, its instances);
/// at the resource instance level, that instance.
pub fn decode(
    base: &Path,
    payload: &[u8],
    registry: &Registry,
    limits: &Limits,
) -> Result<Vec<(Path, Value)>, DecodeError> {
    let mut d = Decoder {
        registry,
        max: limits.max_entries,
        out: Vec::new(),
    };
    for tlv in split(payload) {
        let tlv = tlv?;
        match (base.depth(), tlv.kind) {
            (1, Kind::ObjectInstance) => d.instance(&Decoder::child(base, tlv.id)?, tlv.value)?,
            // Some clients answer a read of a single-instance object with its resources only.
            (2, Kind::ObjectInstance) if Some(tlv.id) == base.instance_id() => d.instance(base, tlv.value)?,
            (2, Kind::Resource) => d.push(Decoder::child(base, tlv.id)?, tlv.value)?,
            (2, Kind::MultipleResource) => d.multiple(&Decoder::child(base, tlv.id)?, tlv.value)?,
            (3, Kind::Resource) if Some(tlv.id) == base.resource_id() => d.push(*base, tlv.value)?,
            (3, Kind::MultipleResource) if Some(tlv.id) == base.resource_id() => d.multiple(base, tlv.value)?,
            (3, Kind::ResourceInstance) => d.push(Decoder::child(base, tlv.id)?, tlv.value)?,
            (4, Kind::ResourceInstance) if Some(tlv.id) == base.resource_instance_id() => d.push(*base, tlv.value)?,
            _ => {
                return Err(DecodeError::TlvStructure(
                    "TLV identifier type does not fit the requested path",
                ))
            }
        }
    }
    Ok(d.out)
}

fn value(path: &Path, ty: ResourceType, raw: &[u8]) -> Result<Value, DecodeError> {
    let bad = |detail: &str| DecodeError::TypeMismatch {
        path: path.to_string(),
        expected: ty.name(),
        detail: detail.into(),
    };
    let utf8 = || String::from_utf8(raw.to_vec()).map_err(|_| bad("not UTF-8"));
    let int = || -> Result<i64, DecodeError> {
        Ok(match raw.len() {
            1 => i64::from(raw[0] as i8),
            2 => i64::from(i16::from_be_bytes([raw[0], raw[1]])),
            4 => i64::from(i32::from_be_bytes([raw[0], raw[1], raw[2], raw[3]])),
            8 => i64::from_be_bytes(to8(raw)),
            _ => return Err(bad("integer length is not 1, 2, 4 or 8")),
        })
    };
    Ok(match ty {
        ResourceType::String => Value::String(utf8()?),
        ResourceType::Corelnk => Value::Corelnk(utf8()?),
        ResourceType::Integer => Value::Integer(int()?),
        ResourceType::Time => Value::Time(int()?),
        ResourceType::UnsignedInteger => Value::UnsignedInteger(match raw.len() {
            1 | 2 | 4 | 8 => raw.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b)),
            _ => return Err(bad("unsigned integer length is not 1, 2, 4 or 8")),
        }),
        ResourceType::Float => Value::Float(match raw.len() {
            4 => f64::from(f32::from_be_bytes([raw[0], raw[1], raw[2], raw[3]])),
            8 => f64::from_be_bytes(to8(raw)),
            _ => return Err(bad("float length is not 4 or 8")),
        }),
        ResourceType::Boolean => match raw {
            [0] => Value::Boolean(false),
            [1] => Value::Boolean(true),
            _ => return Err(bad("boolean is not one byte 0 or 1")),
        },
        ResourceType::Objlnk => match raw {
            [a, b, c, d] => Value::Objlnk(u16::from_be_bytes([*a, *b]), u16::from_be_bytes([*c, *d])),
            _ => return Err(bad("object link is not 4 bytes")),
        },
        ResourceType::Opaque => Value::Opaque(raw.to_vec()),
        ResourceType::None => return Err(bad("executable resource has no value")),
    })
}

fn to8(raw: &[u8]) -> [u8; 8] {
    let mut a = [0u8; 8];
    a.copy_from_slice(&raw[..8]);
    a
}

/// The largest length a 24-bit length field holds.
const MAX_LEN: usize = 0xff_ffff;

fn put(out: &mut Vec<u8>, kind: Kind, id: u16, value: &[u8]) -> Result<(), EncodeError> {
    let len = value.len();
    if len > MAX_LEN {
        return Err(EncodeError::Unrepresentable(format!("TLV of {len} bytes")));
    }
    let mut t = (kind as u8) << 6;
    if id > 0xff {
        t |= 0x20;
    }
    let len_bytes: &[u8] = &(len as u32).to_be_bytes();
    let len_field = match len {
        0..=7 => {
            t |= len as u8;
            &[][..]
        }
        8..=0xff => {
            t |= 0x08;
            &len_bytes[3..]
        }
        0x100..=0xffff => {
            t |= 0x10;
            &len_bytes[2..]
        }
        _ => {
            t |= 0x18;
            &len_bytes[1..]
        }
    };
    out.push(t);
    if id > 0xff {
        out.extend(id.to_be_bytes());
    } else {
        out.push(id as u8);
    }
    out.extend_from_slice(len_field);
    out.extend_from_slice(value);
    Ok(())
}

/// The shortest of 1, 2, 4 or 8 big-endian bytes that holds `v` (TS Core §7.4.3.1).
fn int_bytes(v: i64) -> Vec<u8> {
    if let Ok(x) = i8::try_from(v) {
        x.to_be_bytes().to_vec()
    } else if let Ok(x) = i16::try_from(v) {
        x.to_be_bytes().to_vec()
    } else if let Ok(x) = i32::try_from(v) {
        x.to_be_bytes().to_vec()
    } else {
        v.to_be_bytes().to_vec()
    }
}

fn value_bytes(v: &Value) -> Vec<u8> {
    match v {
        Value::Integer(i) | Value::Time(i) => int_bytes(*i),
        Value::UnsignedInteger(u) => {
            if let Ok(x) = u8::try_from(*u) {
                vec![x]
            } else if let Ok(x) = u16::try_from(*u) {
                x.to_be_bytes().to_vec()
            } else if let Ok(x) = u32::try_from(*u) {
                x.to_be_bytes().to_vec()
            } else {
                u.to_be_bytes().to_vec()
            }
        }
        Value::Float(f) => {
            let single = *f as f32;
            if f64::from(single) == *f || f.is_nan() {
                single.to_be_bytes().to_vec()
            } else {
                f.to_be_bytes().to_vec()
            }
        }
        Value::Boolean(b) => vec![u8::from(*b)],
        Value::String(s) | Value::Corelnk(s) => s.as_bytes().to_vec(),
        Value::Opaque(b) => b.clone(),
        Value::Objlnk(o, i) => {
            let mut b = o.to_be_bytes().to_vec();
            b.extend(i.to_be_bytes());
            b
        }
    }
}

/// Encodes `content` as the answer to a request on `base`: object instances at the object level,
/// resources below. A path with a resource instance id makes its resource a multiple resource.
pub fn encode(base: &Path, content: &[(Path, Value)]) -> Result<Vec<u8>, EncodeError> {
    let items = sorted(Some(base), content)?;
    let mut out = Vec::new();
    let mut i = 0;
    while i < items.len() {
        // Group by the next level below `base` at which TLVs nest: the object instance when the
        // base is an object, else the resource.
        let level = if base.depth() == 1 { 2 } else { 3 };
        let key = items[i].0.truncated(level);
        let end = i + items[i..].iter().take_while(|(p, _)| p.starts_with(&key)).count();
        let group = &items[i..end];
        if base.depth() == 1 {
            let mut inner = Vec::new();
            resources(&mut inner, group)?;
            put(&mut out, Kind::ObjectInstance, key.instance_id().unwrap_or(0), &inner)?;
        } else if base.depth() == 4 {
            let [(p, v)] = group else {
                return Err(EncodeError::BadPath(base.to_string()));
            };
            put(
                &mut out,
                Kind::ResourceInstance,
                p.resource_instance_id().unwrap_or(0),
                &value_bytes(v),
            )?;
        } else {
            resources(&mut out, group)?;
        }
        i = end;
    }
    Ok(out)
}

/// Writes the resources of one object instance, `items` sorted.
fn resources(out: &mut Vec<u8>, items: &[&(Path, Value)]) -> Result<(), EncodeError> {
    let mut i = 0;
    while i < items.len() {
        let key = items[i].0.truncated(3);
        let end = i + items[i..].iter().take_while(|(p, _)| p.starts_with(&key)).count();
        let res_id = key.resource_id().unwrap_or(0);
        match &items[i..end] {
            [(p, v)] if p.depth() == 3 => put(out, Kind::Resource, res_id, &value_bytes(v))?,
            group => {
                let mut inner = Vec::new();
                for (p, v) in group {
                    put(
                        &mut inner,
                        Kind::ResourceInstance,
                        p.resource_instance_id().unwrap_or(0),
                        &value_bytes(v),
                    )?;
                }
                put(out, Kind::MultipleResource, res_id, &inner)?;
            }
        }
        i = end;
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    pub(crate) fn p(s: &str) -> Path {
        s.parse().unwrap()
    }

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// TS 1.0 §6.4.3.1 (1.2 §7.4.3.2): Read on the single-instance Device object, `/3/0`.
    const DEVICE_TLV: &str = "
        C8 00 14 4F 70 65 6E 20 4D 6F 62 69 6C 65 20 41 6C 6C 69 61 6E 63 65
        C8 01 16 4C 69 67 68 74 77 65 69 67 68 74 20 4D 32 4D 20 43 6C 69 65 6E 74
        C8 02 09 33 34 35 30 30 30 31 32 33
        C3 03 31 2E 30
        86 06 41 00 01 41 01 05
        88 07 08 42 00 0E D8 42 01 13 88
        87 08 41 00 7D 42 01 03 84
        C1 09 64
        C1 0A 0F
        83 0B 41 00 00
        C4 0D 51 82 42 8F
        C6 0E 2B 30 32 3A 30 30
        C1 10 55";

    pub(crate) fn device_values() -> Vec<(Path, Value)> {
        vec![
            (p("/3/0/0"), Value::String("Open Mobile Alliance".into())),
            (p("/3/0/1"), Value::String("Lightweight M2M Client".into())),
            (p("/3/0/2"), Value::String("345000123".into())),
            (p("/3/0/3"), Value::String("1.0".into())),
            (p("/3/0/6/0"), Value::Integer(1)),
            (p("/3/0/6/1"), Value::Integer(5)),
            (p("/3/0/7/0"), Value::Integer(3800)),
            (p("/3/0/7/1"), Value::Integer(5000)),
            (p("/3/0/8/0"), Value::Integer(125)),
            (p("/3/0/8/1"), Value::Integer(900)),
            (p("/3/0/9"), Value::Integer(100)),
            (p("/3/0/10"), Value::Integer(15)),
            (p("/3/0/11/0"), Value::Integer(0)),
            (p("/3/0/13"), Value::Time(1367491215)),
            (p("/3/0/14"), Value::String("+02:00".into())),
            (p("/3/0/16"), Value::String("U".into())),
        ]
    }

    /// TS 1.0 §6.4.3.2: Read on the multiple-instance Access Control object, `/2`.
    const ACL_TLV: &str = "
        08 00 0E C1 00 01 C1 01 00 83 02 41 7F 07 C1 03 7F
        08 02 12 C1 00 03 C1 01 00 87 02 41 7F 07 61 01 36 01 C1 03 7F";

    fn acl_values() -> Vec<(Path, Value)> {
        vec![
            (p("/2/0/0"), Value::Integer(1)),
            (p("/2/0/1"), Value::Integer(0)),
            (p("/2/0/2/127"), Value::Integer(7)),
            (p("/2/0/3"), Value::Integer(127)),
            (p("/2/2/0"), Value::Integer(3)),
            (p("/2/2/1"), Value::Integer(0)),
            (p("/2/2/2/127"), Value::Integer(7)),
            (p("/2/2/2/310"), Value::Integer(1)),
            (p("/2/2/3"), Value::Integer(127)),
        ]
    }

    fn dec(base: &str, bytes: &[u8]) -> Result<Vec<(Path, Value)>, DecodeError> {
        decode(&p(base), bytes, &Registry::core(), &Limits::default())
    }

    #[test]
    fn ts_vectors() {
        type Case<'a> = (&'a str, Vec<u8>, Vec<(Path, Value)>);
        let cases: Vec<Case<'_>> = vec![
            ("/3/0", hex(DEVICE_TLV), device_values()),
            ("/2", hex(ACL_TLV), acl_values()),
            // TS 1.0 §6.4.3.1: single resource and multiple resource reads.
            (
                "/3/0/0",
                hex("C8 00 14 4F 70 65 6E 20 4D 6F 62 69 6C 65 20 41 6C 6C 69 61 6E 63 65"),
                device_values()[..1].to_vec(),
            ),
            ("/3/0/6", hex("86 06 41 00 01 41 01 05"), device_values()[4..6].to_vec()),
            ("/3/0/6/1", hex("41 01 05"), device_values()[5..6].to_vec()),
        ];
        for (base, bytes, values) in cases {
            assert_eq!(bytes.len(), bytes.len());
            assert_eq!(dec(base, &bytes), Ok(values.clone()), "decode {base}");
            assert_eq!(encode(&p(base), &values).unwrap(), bytes, "encode {base}");
        }
        assert_eq!(hex(DEVICE_TLV).len(), 121);
    }

    #[test]
    fn object_level_single_instance_and_16_bit_ids() {
        let v = vec![
            (p("/3303/0/5700"), Value::Float(21.5)),
            (p("/3303/1/5700"), Value::Float(-0.1)),
        ];
        let bytes = encode(&p("/3303"), &v).unwrap();
        // 0x07: object instance of 7 bytes; 0xE4: resource, 16-bit id, 4-byte value.
        assert_eq!(&bytes[..5], &[0x07, 0x00, 0xE4, 0x16, 0x44]);
        assert_eq!(dec("/3303", &bytes).unwrap(), v);
        // /3/0 answered with the object instance wrapper.
        let wrapped = encode(&p("/3"), &device_values()).unwrap();
        assert_eq!(dec("/3/0", &wrapped).unwrap(), device_values());
    }

    #[test]
    fn length_forms() {
        for n in [0usize, 7, 8, 255, 256, 65535, 65536] {
            let v = vec![(p("/5/0/0"), Value::Opaque(vec![0xAB; n]))];
            let b = encode(&p("/5/0/0"), &v).unwrap();
            let expected_hdr = match n {
                0..=7 => 2,
                8..=255 => 3,
                256..=65535 => 4,
                _ => 5,
            };
            assert_eq!(b.len(), n + expected_hdr, "{n}");
            assert_eq!(dec("/5/0/0", &b).unwrap(), v);
        }
    }

    #[test]
    fn malformed() {
        let cases: &[(&str, &str)] = &[
            ("/3/0", "C8"),                   // truncated header
            ("/3/0", "C8 00"),                // missing length byte
            ("/3/0", "C8 00 14 4F"),          // length 20, 1 byte present
            ("/3/0", "D8 00 FF FF 00"),       // 16-bit length lying
            ("/3/0", "F8 00 00 FF FF FF"),    // 24-bit length, 16-bit id
            ("/3/0", "86 06 41 00 01 41 01"), // container overrun
            ("/3/0", "83 03 42 00 05"),       // child overruns its container
            ("/3/0", "83 03 C1 00 01"),       // resource inside a multiple resource
            ("/3", "C1 00 01"),               // resource at object level
            ("/3", "08 00 03 08 00 00"),      // object instance inside an object instance
            ("/3/0", "C1 09 64 00"),          // trailing partial TLV
            ("/3/0", "C3 09 01 02 03"),       // integer of 3 bytes
            ("/3/0", "C2 00 FF FE"),          // string not UTF-8
            ("/1/0", "C1 06 02"),             // boolean 2
            ("/3/0", "C1 04 00"),             // executable resource with a value
            ("/3/0/1", "C1 02 41"),           // id differs from the requested resource
            ("/3/0", "E1 FF FF 00"),          // reserved id 65535
            ("/3/0/6/1", "41 02 05"),         // wrong resource instance
        ];
        for (base, h) in cases {
            assert!(dec(base, &hex(h)).is_err(), "{base} {h}");
        }
        assert_eq!(
            dec("/3/0", &hex("C8 00 14 4F")),
            Err(DecodeError::LengthOverrun { len: 20, available: 1 })
        );
        let many = hex(&"C1 09 64 ".repeat(10));
        let limits = Limits {
            max_entries: 5,
            ..Limits::default()
        };
        assert_eq!(
            decode(&p("/3/0"), &many, &Registry::core(), &limits),
            Err(DecodeError::TooManyEntries(5))
        );
    }

    #[test]
    fn unknown_resources_are_opaque() {
        assert_eq!(
            dec("/9999/0", &hex("C2 01 AB CD")).unwrap(),
            vec![(p("/9999/0/1"), Value::Opaque(vec![0xAB, 0xCD]))]
        );
    }

    #[test]
    fn encode_rejects() {
        let v = vec![(p("/3/0/0"), Value::String("a".into()))];
        assert!(encode(&p("/4/0"), &v).is_err());
        let dup = vec![v[0].clone(), v[0].clone()];
        assert!(matches!(encode(&p("/3/0"), &dup), Err(EncodeError::Duplicate(_))));
        let both = vec![(p("/3/0/6"), Value::Integer(1)), (p("/3/0/6/0"), Value::Integer(1))];
        assert!(encode(&p("/3/0"), &both).is_err());
        assert!(encode(&p("/3/0"), &[(p("/3/0"), Value::Integer(1))]).is_err());
    }
}
