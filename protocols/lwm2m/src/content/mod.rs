//! Content formats (TS 1.2 Core §7.4): bytes ⇄ `Vec<(Path, Value)>`, typed through the object
//! registry where the wire does not say the type.
//!
//! Every decoder is given the request path (`base`, `None` for the root of a composite
//! operation): values outside it are an error. Every encoder sorts the values by path, so a
//! parent comes before its children and one resource's instances are together.
//!
//! - [`tlv`]: `application/vnd.oma.lwm2m+tlv` (11542), §7.4.3.
//! - [`lwm2m_json`]: `application/vnd.oma.lwm2m+json` (11543), the 1.0 JSON format.
//! - [`senml`]: SenML JSON (110) and SenML CBOR (112), RFC 8428 with the LwM2M `vlo`, §7.4.4–5.
//! - [`lwm2m_cbor`]: `application/vnd.oma.lwm2m+cbor` (11544), the 1.2 nested-map format, §7.4.7.
//! - [`text`]: `text/plain` (0) and `application/octet-stream` (42), one resource value.
//! - [`link_format`]: `application/link-format` (40), Discover responses.

use std::fmt;

use crate::error::{DecodeError, EncodeError};
use crate::path::Path;
use crate::registry::Registry;
use crate::value::{parse_objlnk, ResourceType, Value};
use crate::Limits;

pub(crate) mod cbor;
pub mod link_format;
pub mod lwm2m_cbor;
pub mod lwm2m_json;
pub mod senml;
pub mod text;
pub mod tlv;

#[cfg(test)]
mod proptests;

/// The content formats LwM2M uses (CoAP Content-Format numbers, IANA registry).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ContentFormat {
    /// `text/plain` (0).
    Text,
    /// `application/link-format` (40).
    LinkFormat,
    /// `application/octet-stream` (42).
    Opaque,
    /// `application/senml+json` (110).
    SenmlJson,
    /// `application/senml+cbor` (112).
    SenmlCbor,
    /// `application/vnd.oma.lwm2m+tlv` (11542; 1542 before IANA registration).
    Tlv,
    /// `application/vnd.oma.lwm2m+json` (11543; 1543 before IANA registration).
    Lwm2mJson,
    /// `application/vnd.oma.lwm2m+cbor` (11544).
    Lwm2mCbor,
}

impl ContentFormat {
    /// The format for a Content-Format number, including the pre-registration 1542 and 1543.
    pub fn from_code(code: u16) -> Option<Self> {
        Some(match code {
            0 => Self::Text,
            40 => Self::LinkFormat,
            42 => Self::Opaque,
            110 => Self::SenmlJson,
            112 => Self::SenmlCbor,
            11542 | 1542 => Self::Tlv,
            11543 | 1543 => Self::Lwm2mJson,
            11544 => Self::Lwm2mCbor,
            _ => return None,
        })
    }

    /// The registered Content-Format number.
    pub fn code(&self) -> u16 {
        match self {
            Self::Text => 0,
            Self::LinkFormat => 40,
            Self::Opaque => 42,
            Self::SenmlJson => 110,
            Self::SenmlCbor => 112,
            Self::Tlv => 11542,
            Self::Lwm2mJson => 11543,
            Self::Lwm2mCbor => 11544,
        }
    }

    /// The media type.
    pub fn media_type(&self) -> &'static str {
        match self {
            Self::Text => "text/plain",
            Self::LinkFormat => "application/link-format",
            Self::Opaque => "application/octet-stream",
            Self::SenmlJson => "application/senml+json",
            Self::SenmlCbor => "application/senml+cbor",
            Self::Tlv => "application/vnd.oma.lwm2m+tlv",
            Self::Lwm2mJson => "application/vnd.oma.lwm2m+json",
            Self::Lwm2mCbor => "application/vnd.oma.lwm2m+cbor",
        }
    }
}

impl fmt::Display for ContentFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.media_type())
    }
}

/// Decodes a payload of `format` received for a request on `base` (`None`: the root, for
/// composite operations, which only the SenML and LwM2M CBOR formats can answer).
pub fn decode(
    format: ContentFormat,
    base: Option<&Path>,
    payload: &[u8],
    registry: &Registry,
    limits: &Limits,
) -> Result<Vec<(Path, Value)>, DecodeError> {
    if payload.len() > limits.max_payload {
        return Err(DecodeError::TooLarge(limits.max_payload));
    }
    let need_base = |format| {
        base.ok_or(DecodeError::NotAResource {
            format,
            path: "/".into(),
        })
    };
    match format {
        ContentFormat::Tlv => tlv::decode(need_base("TLV")?, payload, registry, limits),
        ContentFormat::Lwm2mJson => lwm2m_json::decode(base, payload, registry, limits),
        ContentFormat::SenmlJson => senml::decode_json(base, payload, registry, limits),
        ContentFormat::SenmlCbor => senml::decode_cbor(base, payload, registry, limits),
        ContentFormat::Lwm2mCbor => lwm2m_cbor::decode(base, payload, registry, limits),
        ContentFormat::Text => text::decode_text(need_base("text/plain")?, payload, registry),
        ContentFormat::Opaque => text::decode_opaque(need_base("opaque")?, payload),
        ContentFormat::LinkFormat => Err(DecodeError::UnsupportedFormat(40)),
    }
}

/// Encodes `content` as `format` for a request on `base` (`None`: the root).
pub fn encode(format: ContentFormat, base: Option<&Path>, content: &[(Path, Value)]) -> Result<Vec<u8>, EncodeError> {
    let need_base = || base.ok_or_else(|| EncodeError::BadPath("/".into()));
    match format {
        ContentFormat::Tlv => tlv::encode(need_base()?, content),
        ContentFormat::Lwm2mJson => lwm2m_json::encode(base, content),
        ContentFormat::SenmlJson => senml::encode_json(base, content),
        ContentFormat::SenmlCbor => senml::encode_cbor(base, content),
        ContentFormat::Lwm2mCbor => lwm2m_cbor::encode(base, content),
        ContentFormat::Text => text::encode_text(content),
        ContentFormat::Opaque => text::encode_opaque(content),
        ContentFormat::LinkFormat => Err(EncodeError::UnsupportedFormat(40)),
    }
}

/// Sorted references to the content, with every path under `base` (and at resource level or
/// deeper) and no duplicates.
pub(crate) fn sorted<'a>(
    base: Option<&Path>,
    content: &'a [(Path, Value)],
) -> Result<Vec<&'a (Path, Value)>, EncodeError> {
    let mut v: Vec<&(Path, Value)> = content.iter().collect();
    v.sort_by_key(|a| a.0);
    for w in v.windows(2) {
        if w[0].0 == w[1].0 {
            return Err(EncodeError::Duplicate(w[0].0.to_string()));
        }
        if w[1].0.starts_with(&w[0].0) {
            // A resource and one of its instances both given a value.
            return Err(EncodeError::BadPath(w[1].0.to_string()));
        }
    }
    for (p, _) in &v {
        if p.depth() < 3 || base.is_some_and(|b| !p.starts_with(b)) {
            return Err(EncodeError::BadPath(p.to_string()));
        }
    }
    Ok(v)
}

/// A value as a self-describing format carries it, before the registry gives it a type.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Wire {
    /// A number without fraction (JSON integer, CBOR integer).
    Int(i128),
    /// A number with fraction or exponent (JSON), a CBOR float.
    Float(f64),
    /// A string (`vs`, `sv`, CBOR text).
    Str(String),
    /// A boolean.
    Bool(bool),
    /// Bytes (`vd`, CBOR byte string).
    Data(Vec<u8>),
    /// An object link (`vlo`, `ov`).
    Objlnk(String),
}

impl Wire {
    fn describe(&self) -> String {
        match self {
            Wire::Int(i) => format!("integer {i}"),
            Wire::Float(f) => format!("float {f}"),
            Wire::Str(_) => "string".into(),
            Wire::Bool(_) => "boolean".into(),
            Wire::Data(_) => "bytes".into(),
            Wire::Objlnk(s) => format!("object link {:?}", s.chars().take(16).collect::<String>()),
        }
    }

    pub(crate) fn from_value(v: &Value) -> Wire {
        match v {
            Value::Integer(i) | Value::Time(i) => Wire::Int((*i).into()),
            Value::UnsignedInteger(u) => Wire::Int((*u).into()),
            Value::Float(f) => Wire::Float(*f),
            Value::Boolean(b) => Wire::Bool(*b),
            Value::String(s) | Value::Corelnk(s) => Wire::Str(s.clone()),
            Value::Opaque(b) => Wire::Data(b.clone()),
            Value::Objlnk(o, i) => Wire::Objlnk(format!("{o}:{i}")),
        }
    }
}

/// Gives a wire value the registry's type for `path`; unknown resources keep the wire's type.
pub(crate) fn typed(path: &Path, wire: Wire, registry: &Registry) -> Result<Value, DecodeError> {
    let Some(ty) = registry.resource_type(path) else {
        return Ok(match wire {
            Wire::Int(i) => match i64::try_from(i) {
                Ok(v) => Value::Integer(v),
                Err(_) => Value::UnsignedInteger(
                    u64::try_from(i).map_err(|_| mismatch(path, ResourceType::Integer, "out of range".into()))?,
                ),
            },
            Wire::Float(f) => Value::Float(f),
            Wire::Str(s) => Value::String(s),
            Wire::Bool(b) => Value::Boolean(b),
            Wire::Data(d) => Value::Opaque(d),
            Wire::Objlnk(s) => {
                let (o, i) = parse_objlnk(&s).ok_or_else(|| mismatch(path, ResourceType::Objlnk, s.clone()))?;
                Value::Objlnk(o, i)
            }
        });
    };
    let fail = |w: &Wire| mismatch(path, ty, w.describe());
    // An integral float is accepted where an integer is expected (JSON writers may add `.0`).
    let integral = |w: &Wire| -> Option<i128> {
        match *w {
            Wire::Int(i) => Some(i),
            Wire::Float(f) if f.fract() == 0.0 && f.abs() < 1.8e19 => Some(f as i128),
            _ => None,
        }
    };
    Ok(match ty {
        ResourceType::Integer | ResourceType::Time => {
            let v = integral(&wire)
                .and_then(|i| i64::try_from(i).ok())
                .ok_or_else(|| fail(&wire))?;
            if ty == ResourceType::Time {
                Value::Time(v)
            } else {
                Value::Integer(v)
            }
        }
        ResourceType::UnsignedInteger => Value::UnsignedInteger(
            integral(&wire)
                .and_then(|i| u64::try_from(i).ok())
                .ok_or_else(|| fail(&wire))?,
        ),
        ResourceType::Float => match wire {
            Wire::Float(f) => Value::Float(f),
            Wire::Int(i) => Value::Float(i as f64),
            w => return Err(fail(&w)),
        },
        ResourceType::Boolean => match wire {
            Wire::Bool(b) => Value::Boolean(b),
            w => return Err(fail(&w)),
        },
        ResourceType::String => match wire {
            Wire::Str(s) => Value::String(s),
            w => return Err(fail(&w)),
        },
        ResourceType::Corelnk => match wire {
            Wire::Str(s) => Value::Corelnk(s),
            w => return Err(fail(&w)),
        },
        ResourceType::Opaque => match wire {
            Wire::Data(d) => Value::Opaque(d),
            // LwM2M JSON 1.0 carries opaque as base64 in `sv` (TS 1.0 §6.4.4).
            Wire::Str(s) => Value::Opaque(
                crate::value::decode_base64(&s)
                    .ok_or_else(|| mismatch(path, ty, "string that is not base64".into()))?,
            ),
            w => return Err(fail(&w)),
        },
        ResourceType::Objlnk => match wire {
            Wire::Objlnk(s) | Wire::Str(s) => {
                let (o, i) = parse_objlnk(&s)
                    .ok_or_else(|| mismatch(path, ty, format!("{:?}", s.chars().take(16).collect::<String>())))?;
                Value::Objlnk(o, i)
            }
            w => return Err(fail(&w)),
        },
        ResourceType::None => return Err(fail(&wire)),
    })
}

fn mismatch(path: &Path, ty: ResourceType, detail: String) -> DecodeError {
    DecodeError::TypeMismatch {
        path: path.to_string(),
        expected: ty.name(),
        detail,
    }
}

/// Checks a decoded path against the request path.
pub(crate) fn check_under(base: Option<&Path>, path: &Path) -> Result<(), DecodeError> {
    if path.depth() < 3 || base.is_some_and(|b| !path.starts_with(b)) {
        return Err(DecodeError::BadPath(path.to_string()));
    }
    Ok(())
}
