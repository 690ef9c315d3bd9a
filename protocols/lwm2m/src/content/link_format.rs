//! `application/link-format` (40) as a Discover response (TS 1.2 Core §6.3.2, RFC 6690): one
//! link per object, instance, resource (with `dim` for multiple resources) and their attached
//! attributes, e.g. `</3/0>;pmin=10,</3/0/1>,</3/0/6>;dim=2`.

use crate::error::DecodeError;
use crate::link::{self, Link, LinkError, LinkParam};
use crate::operation::Attributes;
use crate::path::Path;
use crate::Limits;

/// One link of a Discover response.
#[derive(Debug, Clone, PartialEq)]
pub struct DiscoveredLink {
    /// The object, instance, resource or resource instance.
    pub path: Path,
    /// `dim`: the number of instances of a multiple resource.
    pub dim: Option<u16>,
    /// `ver`: the object version.
    pub version: Option<String>,
    /// The notification attributes attached at this level.
    pub attributes: Attributes,
    /// Every parameter as received, including unknown ones.
    pub params: Vec<LinkParam>,
}

fn syntax(detail: impl Into<String>) -> DecodeError {
    DecodeError::Syntax {
        format: "link format",
        detail: detail.into(),
    }
}

fn parse_links(payload: &[u8], limits: &Limits) -> Result<Vec<Link>, DecodeError> {
    if payload.len() > limits.max_payload {
        return Err(DecodeError::TooLarge(limits.max_payload));
    }
    let text = std::str::from_utf8(payload).map_err(|_| syntax("not UTF-8"))?;
    link::parse(text, limits.max_link_entries).map_err(|e| match e {
        LinkError::Syntax(at) => syntax(format!("at byte {at}")),
        LinkError::TooMany(n) => DecodeError::TooManyEntries(n),
    })
}

/// Decodes a Discover response; `root` is the client's alternate path (`None` for `/`).
pub fn decode(payload: &[u8], root: Option<&str>, limits: &Limits) -> Result<Vec<DiscoveredLink>, DecodeError> {
    let prefix = root.unwrap_or("").trim_end_matches('/');
    parse_links(payload, limits)?
        .into_iter()
        .map(|l| {
            let bad = || DecodeError::BadPath(l.target.chars().take(64).collect());
            let rel = l.target.strip_prefix(prefix).ok_or_else(bad)?;
            let path: Path = rel.strip_prefix('/').ok_or_else(bad)?.parse().map_err(|_| bad())?;
            let attributes = Attributes::from_params(l.params.iter().map(|p| (p.name.as_str(), p.value.as_deref())))
                .map_err(|e| syntax(format!("{path}: {e}")))?;
            let dim = match l.param("dim") {
                None => None,
                Some(v) => Some(
                    v.and_then(|v| v.parse().ok())
                        .ok_or_else(|| syntax(format!("{path}: bad dim")))?,
                ),
            };
            let version = l.param("ver").flatten().map(str::to_owned);
            Ok(DiscoveredLink {
                path,
                dim,
                version,
                attributes,
                params: l.params,
            })
        })
        .collect()
}

/// The links of a link-format payload as strings, one per link (`</3/0>;pmin=10`), the shape
/// EMQX publishes Discover results in.
pub fn to_strings(payload: &[u8], limits: &Limits) -> Result<Vec<String>, DecodeError> {
    Ok(parse_links(payload, limits)?
        .iter()
        .map(|l| link::Display(std::slice::from_ref(l)).to_string())
        .collect())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn ts_discover_example() {
        // TS 1.2 Core §6.3.2 (Discover on /3/0 with pmin/pmax attached).
        let payload = b"</3/0>;pmin=10;pmax=60,</3/0/1>,</3/0/2>,</3/0/3>,</3/0/4>,</3/0/6>;dim=2,</3/0/7>;dim=2;gt=50;lt=42.2,</3/0/13>";
        let links = decode(payload, None, &Limits::default()).unwrap();
        assert_eq!(links.len(), 8);
        assert_eq!(links[0].path.to_string(), "/3/0");
        assert_eq!(
            (links[0].attributes.pmin, links[0].attributes.pmax),
            (Some(10), Some(60))
        );
        assert_eq!(links[5].dim, Some(2));
        assert_eq!(
            (links[6].attributes.gt, links[6].attributes.lt),
            (Some(50.0), Some(42.2))
        );
        let strings = to_strings(payload, &Limits::default()).unwrap();
        assert_eq!(strings[0], "</3/0>;pmin=10;pmax=60");
        assert_eq!(strings.join(","), std::str::from_utf8(payload).unwrap());
    }

    #[test]
    fn alternate_root_and_rejects() {
        let links = decode(b"</lwm2m/3>;ver=1.1,</lwm2m/3/0>", Some("/lwm2m"), &Limits::default()).unwrap();
        assert_eq!(links[0].version.as_deref(), Some("1.1"));
        assert_eq!(links[1].path.to_string(), "/3/0");
        for p in [
            &b"</3/0"[..],
            b"</x>",
            b"</3/0>;dim=x",
            b"</3/0>;pmin=-1",
            b"</3/0>;gt=abc",
            b"\xff",
        ] {
            assert!(decode(p, None, &Limits::default()).is_err(), "{p:?}");
        }
    }
}
