//! The Registration interface, server side (TS 1.2 Core §6.2, §8.2.3 for the CoAP mapping):
//! `POST /rd?ep=..&lt=..&lwm2m=..&b=..` with a link-format payload (Register), and
//! `POST /rd/{location}?lt=..&b=..` with an optional payload (Update).
//!
//! Parsing is parse-don't-validate: the result is a [`Registration`] whose fields hold, or a
//! [`RegistrationError`] that maps to the CoAP code to answer with.

use std::fmt;

use crate::error::RegistrationError;
use crate::link::{self, Link, LinkError};
use crate::path::Path;
use crate::Limits;

/// Lifetime when `lt` is absent (TS 1.2 Core §6.2.1, Table 6.2.1-1).
pub const DEFAULT_LIFETIME: u32 = 86_400;

/// The LwM2M enabler version a client registers with (`lwm2m=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[non_exhaustive]
pub enum Version {
    /// 1.0, also assumed when `lwm2m` is absent.
    #[default]
    V1_0,
    /// 1.1.
    V1_1,
    /// 1.2.
    V1_2,
}

impl Version {
    /// `"1.0"`, `"1.1"` or `"1.2"`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::V1_0 => "1.0",
            Self::V1_1 => "1.1",
            Self::V1_2 => "1.2",
        }
    }

    fn parse(s: &str) -> Result<Self, RegistrationError> {
        match s {
            "1.0" => Ok(Self::V1_0),
            "1.1" => Ok(Self::V1_1),
            "1.2" => Ok(Self::V1_2),
            _ => Err(RegistrationError::UnsupportedVersion(truncate(s))),
        }
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The transports a client can be reached on (`b=`, TS 1.2 Core §6.2.1.1): `U` UDP, `T` TCP,
/// `S` SMS, `N` Non-IP. Queue mode is kept apart: in 1.0 it is a `Q` in the binding, in 1.1 and
/// later the separate `Q` parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Binding {
    /// `U`.
    pub udp: bool,
    /// `T`.
    pub tcp: bool,
    /// `S`.
    pub sms: bool,
    /// `N`.
    pub non_ip: bool,
}

impl Default for Binding {
    /// `U`, the binding when `b` is absent.
    fn default() -> Self {
        Binding {
            udp: true,
            tcp: false,
            sms: false,
            non_ip: false,
        }
    }
}

impl Binding {
    /// Parses a binding string, returning the transports and whether it held a `Q` (the 1.0
    /// modes `UQ`, `SQ`, `UQS`). Letters may not repeat.
    pub fn parse(s: &str) -> Result<(Binding, bool), RegistrationError> {
        let invalid = || RegistrationError::InvalidParameter {
            name: "b",
            value: truncate(s),
        };
        let mut b = Binding {
            udp: false,
            tcp: false,
            sms: false,
            non_ip: false,
        };
        let mut queue = false;
        for c in s.chars() {
            let flag = match c {
                'U' => &mut b.udp,
                'T' => &mut b.tcp,
                'S' => &mut b.sms,
                'N' => &mut b.non_ip,
                'Q' => &mut queue,
                _ => return Err(invalid()),
            };
            if *flag {
                return Err(invalid());
            }
            *flag = true;
        }
        if !(b.udp || b.tcp || b.sms || b.non_ip) {
            return Err(invalid());
        }
        Ok((b, queue))
    }
}

impl fmt::Display for Binding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (on, c) in [(self.udp, "U"), (self.tcp, "T"), (self.sms, "S"), (self.non_ip, "N")] {
            if on {
                f.write_str(c)?;
            }
        }
        Ok(())
    }
}

/// An object or object instance the client announced, e.g. `</3303>;ver=1.1`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectLink {
    /// `/obj` or `/obj/inst`, relative to the root path.
    pub path: Path,
    /// The object version (`ver`, `major.minor`), when given.
    pub version: Option<String>,
}

/// A parsed Register request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    /// The endpoint client name (`ep`).
    pub endpoint: String,
    /// Seconds until the registration expires without an Update (`lt`).
    pub lifetime: u32,
    /// The enabler version (`lwm2m`).
    pub version: Version,
    /// The transports (`b`).
    pub binding: Binding,
    /// Queue mode: `Q` in the 1.0 binding or the 1.1 `Q` parameter.
    pub queue_mode: bool,
    /// The MSISDN (`sms`).
    pub sms: Option<String>,
    /// The alternate root path (the target of the `rt="oma.lwm2m"` link) when it is not `/`.
    pub alternate_path: Option<String>,
    /// The announced objects and instances, in payload order.
    pub objects: Vec<ObjectLink>,
    /// The content formats the client supports (`ct` on the root link).
    pub content_formats: Vec<u16>,
}

/// A parsed Update request; `None` fields are unchanged.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RegistrationUpdate {
    /// New lifetime (`lt`).
    pub lifetime: Option<u32>,
    /// New binding (`b`), with queue mode as that binding says.
    pub binding: Option<(Binding, bool)>,
    /// New MSISDN (`sms`).
    pub sms: Option<String>,
    /// The new object list, when the payload is not empty.
    pub objects: Option<Payload>,
}

/// The link-format payload of a Register or Update.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Payload {
    /// The alternate root path, if not `/`.
    pub alternate_path: Option<String>,
    /// The announced objects and instances.
    pub objects: Vec<ObjectLink>,
    /// The `ct` of the root link.
    pub content_formats: Vec<u16>,
}

/// Splits query options into `(name, value)`; a missing `=` gives `None`.
fn query_pairs<Q: AsRef<[u8]>>(query: &[Q]) -> Result<Vec<(&str, Option<&str>)>, RegistrationError> {
    query
        .iter()
        .map(|q| {
            let s = std::str::from_utf8(q.as_ref()).map_err(|_| RegistrationError::NotUtf8)?;
            Ok(match s.split_once('=') {
                Some((k, v)) => (k, Some(v)),
                None => (s, None),
            })
        })
        .collect()
}

fn truncate(s: &str) -> String {
    s.chars().take(64).collect()
}

#[derive(Default)]
struct Seen<'a> {
    ep: Option<&'a str>,
    lt: Option<&'a str>,
    lwm2m: Option<&'a str>,
    b: Option<&'a str>,
    sms: Option<&'a str>,
    q: bool,
}

fn collect<'a>(pairs: &[(&'a str, Option<&'a str>)]) -> Result<Seen<'a>, RegistrationError> {
    let mut seen = Seen::default();
    for &(k, v) in pairs {
        let slot = match k {
            "ep" => &mut seen.ep,
            "lt" => &mut seen.lt,
            "lwm2m" => &mut seen.lwm2m,
            "b" => &mut seen.b,
            "sms" => &mut seen.sms,
            "Q" => {
                if seen.q {
                    return Err(RegistrationError::DuplicateParameter("Q".into()));
                }
                if v.is_some() {
                    return Err(RegistrationError::InvalidParameter {
                        name: "Q",
                        value: truncate(v.unwrap_or("")),
                    });
                }
                seen.q = true;
                continue;
            }
            // Unknown parameters (`d`, `apn`, vendor ones) are ignored, as TS 1.2 Core §6.2.1
            // leaves room for later versions to add parameters.
            _ => continue,
        };
        if slot.is_some() {
            return Err(RegistrationError::DuplicateParameter(truncate(k)));
        }
        *slot = Some(v.unwrap_or(""));
    }
    Ok(seen)
}

fn parse_lifetime(s: &str) -> Result<u32, RegistrationError> {
    match s.parse::<u32>() {
        Ok(v) if v > 0 && s.bytes().all(|c| c.is_ascii_digit()) => Ok(v),
        _ => Err(RegistrationError::InvalidParameter {
            name: "lt",
            value: truncate(s),
        }),
    }
}

impl Registration {
    /// Parses a Register request from its Uri-Query options and payload.
    pub fn parse<Q: AsRef<[u8]>>(query: &[Q], payload: &[u8], limits: &Limits) -> Result<Self, RegistrationError> {
        let pairs = query_pairs(query)?;
        let seen = collect(&pairs)?;
        let endpoint = seen
            .ep
            .filter(|e| !e.is_empty())
            .ok_or(RegistrationError::MissingEndpoint)?;
        if endpoint.len() > limits.max_endpoint_len {
            return Err(RegistrationError::EndpointTooLong(limits.max_endpoint_len));
        }
        let lifetime = seen.lt.map(parse_lifetime).transpose()?.unwrap_or(DEFAULT_LIFETIME);
        let version = seen.lwm2m.map(Version::parse).transpose()?.unwrap_or_default();
        let (binding, q_in_binding) = seen.b.map(Binding::parse).transpose()?.unwrap_or_default();
        let sms = seen.sms.map(str::to_owned);
        let body = Payload::parse(payload, limits)?;
        Ok(Registration {
            endpoint: endpoint.to_owned(),
            lifetime,
            version,
            binding,
            queue_mode: q_in_binding || seen.q,
            sms,
            alternate_path: body.alternate_path,
            objects: body.objects,
            content_formats: body.content_formats,
        })
    }

    /// Applies an Update: changed fields replace the old ones.
    pub fn apply(&mut self, update: RegistrationUpdate) {
        if let Some(lt) = update.lifetime {
            self.lifetime = lt;
        }
        if let Some((b, q)) = update.binding {
            self.binding = b;
            self.queue_mode = q;
        }
        if let Some(sms) = update.sms {
            self.sms = Some(sms);
        }
        if let Some(p) = update.objects {
            self.alternate_path = p.alternate_path;
            self.objects = p.objects;
            self.content_formats = p.content_formats;
        }
    }

    /// The root path operations are sent under: the alternate path or `/`.
    pub fn root_path(&self) -> &str {
        self.alternate_path.as_deref().unwrap_or("/")
    }
}

impl RegistrationUpdate {
    /// Parses an Update request from its Uri-Query options and payload (empty: objects unchanged).
    pub fn parse<Q: AsRef<[u8]>>(query: &[Q], payload: &[u8], limits: &Limits) -> Result<Self, RegistrationError> {
        let pairs = query_pairs(query)?;
        let seen = collect(&pairs)?;
        let objects = if payload.iter().all(u8::is_ascii_whitespace) {
            None
        } else {
            Some(Payload::parse(payload, limits)?)
        };
        let mut binding = seen.b.map(Binding::parse).transpose()?;
        if let Some((_, q)) = &mut binding {
            *q |= seen.q;
        }
        Ok(RegistrationUpdate {
            lifetime: seen.lt.map(parse_lifetime).transpose()?,
            binding,
            sms: seen.sms.map(str::to_owned),
            objects,
        })
    }
}

impl Payload {
    /// Parses the link-format payload of a Register or Update (TS 1.2 Core §6.2.1: "Objects and
    /// Object Instances" with the optional `rt="oma.lwm2m"` root link).
    pub fn parse(payload: &[u8], limits: &Limits) -> Result<Self, RegistrationError> {
        if payload.len() > limits.max_payload {
            return Err(RegistrationError::PayloadTooLarge(limits.max_payload));
        }
        let text = std::str::from_utf8(payload).map_err(|_| RegistrationError::NotUtf8)?;
        let links = link::parse(text, limits.max_link_entries).map_err(|e| match e {
            LinkError::Syntax(at) => RegistrationError::MalformedLink(at),
            LinkError::TooMany(n) => RegistrationError::TooManyLinks(n),
        })?;
        let root = links.iter().find(|l| l.param("rt") == Some(Some("oma.lwm2m")));
        let root_path = root.map_or("/", |l| l.target.as_str());
        if !root_path.starts_with('/') {
            return Err(RegistrationError::InvalidObjectLink(truncate(root_path)));
        }
        let alternate_path = (root_path != "/").then(|| root_path.trim_end_matches('/').to_owned());
        let prefix = root_path.trim_end_matches('/');
        let mut out = Payload {
            alternate_path,
            ..Payload::default()
        };
        for l in &links {
            if root.is_some_and(|r| std::ptr::eq(r, l)) || l.target == "/" || l.target == root_path {
                out.content_formats.extend(content_formats(l)?);
                continue;
            }
            out.objects.push(object_link(l, prefix)?);
        }
        Ok(out)
    }
}

fn content_formats(l: &Link) -> Result<Vec<u16>, RegistrationError> {
    let Some(ct) = l.param("ct") else {
        return Ok(Vec::new());
    };
    let ct = ct.unwrap_or("");
    // `ct=11543` or, from 1.1, a quoted space-separated list `ct="60 110 112 11543"`.
    let list: Result<Vec<u16>, _> = ct.split(' ').filter(|s| !s.is_empty()).map(str::parse).collect();
    match list {
        Ok(v) if !v.is_empty() => Ok(v),
        _ => Err(RegistrationError::InvalidContentFormat(truncate(ct))),
    }
}

fn object_link(l: &Link, prefix: &str) -> Result<ObjectLink, RegistrationError> {
    let bad = || RegistrationError::InvalidObjectLink(truncate(&l.target));
    let rest = l.target.strip_prefix(prefix).ok_or_else(bad)?;
    let rest = rest.strip_prefix('/').ok_or_else(bad)?;
    let path: Path = rest.parse().map_err(|_| bad())?;
    if path.depth() > 2 {
        return Err(bad());
    }
    let version = match l.param("ver") {
        None => None,
        Some(v) => {
            let v = v.unwrap_or("");
            let ok = v.split_once('.').is_some_and(|(a, b)| {
                [a, b]
                    .iter()
                    .all(|p| !p.is_empty() && p.len() <= 3 && p.bytes().all(|c| c.is_ascii_digit()))
            });
            if !ok {
                return Err(RegistrationError::InvalidObjectVersion(truncate(v)));
            }
            Some(v.to_owned())
        }
    };
    Ok(ObjectLink { path, version })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn reg(query: &[&str], payload: &str) -> Result<Registration, RegistrationError> {
        Registration::parse(query, payload.as_bytes(), &Limits::default())
    }

    #[test]
    fn register_1_0_defaults() {
        let r = reg(&["ep=urn:imei:1234"], "</1/0>,</3/0>").unwrap();
        assert_eq!(r.endpoint, "urn:imei:1234");
        assert_eq!(r.lifetime, DEFAULT_LIFETIME);
        assert_eq!(r.version, Version::V1_0);
        assert_eq!(r.binding, Binding::default());
        assert!(!r.queue_mode);
        assert_eq!(r.sms, None);
        assert_eq!(r.alternate_path, None);
        assert_eq!(r.root_path(), "/");
        let paths: Vec<String> = r.objects.iter().map(|o| o.path.to_string()).collect();
        assert_eq!(paths, ["/1/0", "/3/0"]);
    }

    #[test]
    fn register_full() {
        let r = reg(
            &["ep=dev1", "lt=300", "lwm2m=1.0", "b=UQ", "sms=+4712345"],
            r#"</>;rt="oma.lwm2m";ct=11543, </1/0>, </3/0>, </3303>;ver=1.1, </5/0>"#,
        )
        .unwrap();
        assert_eq!(r.lifetime, 300);
        assert!(r.queue_mode);
        assert!(r.binding.udp && !r.binding.sms);
        assert_eq!(r.sms.as_deref(), Some("+4712345"));
        assert_eq!(r.content_formats, [11543]);
        assert_eq!(r.objects.len(), 4);
        assert_eq!(
            r.objects[2],
            ObjectLink {
                path: "/3303".parse().unwrap(),
                version: Some("1.1".into())
            }
        );
    }

    #[test]
    fn register_1_1_queue_param_and_alternate_path() {
        let r = reg(
            &["ep=dev1", "lwm2m=1.1", "b=U", "Q", "lt=60"],
            r#"</lwm2m>;rt="oma.lwm2m";ct="60 110 112 11543",</lwm2m/1/0>,</lwm2m/3/0>"#,
        )
        .unwrap();
        assert_eq!(r.version, Version::V1_1);
        assert!(r.queue_mode);
        assert_eq!(r.alternate_path.as_deref(), Some("/lwm2m"));
        assert_eq!(r.content_formats, [60, 110, 112, 11543]);
        assert_eq!(r.objects[1].path.to_string(), "/3/0");
        let r = reg(&["ep=dev1", "lwm2m=1.2", "b=UT"], "").unwrap();
        assert_eq!(
            (r.version, r.binding.to_string(), r.objects.len()),
            (Version::V1_2, "UT".into(), 0)
        );
    }

    #[test]
    fn register_rejects() {
        use RegistrationError as E;
        let cases: &[(&[&str], &str, E)] = &[
            (&["lt=60"], "", E::MissingEndpoint),
            (&["ep="], "", E::MissingEndpoint),
            (&["ep=a", "ep=b"], "", E::DuplicateParameter("ep".into())),
            (
                &["ep=a", "lt=0"],
                "",
                E::InvalidParameter {
                    name: "lt",
                    value: "0".into(),
                },
            ),
            (
                &["ep=a", "lt=-5"],
                "",
                E::InvalidParameter {
                    name: "lt",
                    value: "-5".into(),
                },
            ),
            (
                &["ep=a", "lt=+5"],
                "",
                E::InvalidParameter {
                    name: "lt",
                    value: "+5".into(),
                },
            ),
            (
                &["ep=a", "lt=99999999999"],
                "",
                E::InvalidParameter {
                    name: "lt",
                    value: "99999999999".into(),
                },
            ),
            (
                &["ep=a", "b=X"],
                "",
                E::InvalidParameter {
                    name: "b",
                    value: "X".into(),
                },
            ),
            (
                &["ep=a", "b=UU"],
                "",
                E::InvalidParameter {
                    name: "b",
                    value: "UU".into(),
                },
            ),
            (
                &["ep=a", "b=Q"],
                "",
                E::InvalidParameter {
                    name: "b",
                    value: "Q".into(),
                },
            ),
            (
                &["ep=a", "b="],
                "",
                E::InvalidParameter {
                    name: "b",
                    value: "".into(),
                },
            ),
            (
                &["ep=a", "Q=1"],
                "",
                E::InvalidParameter {
                    name: "Q",
                    value: "1".into(),
                },
            ),
            (&["ep=a", "lwm2m=2.0"], "", E::UnsupportedVersion("2.0".into())),
            (&["ep=a"], "</1/0", E::MalformedLink(5)),
            (&["ep=a"], "</x>", E::InvalidObjectLink("/x".into())),
            (&["ep=a"], "</3/0/1>", E::InvalidObjectLink("/3/0/1".into())),
            (&["ep=a"], "</65535>", E::InvalidObjectLink("/65535".into())),
            (&["ep=a"], "</3>;ver=x", E::InvalidObjectVersion("x".into())),
            (&["ep=a"], "</3>;ver", E::InvalidObjectVersion("".into())),
            (&["ep=a"], "</>;ct=abc", E::InvalidContentFormat("abc".into())),
            (
                &["ep=a"],
                r#"</a>;rt="oma.lwm2m",</3/0>"#,
                E::InvalidObjectLink("/3/0".into()),
            ),
        ];
        for (q, p, e) in cases {
            assert_eq!(reg(q, p).as_ref(), Err(e), "{q:?} {p:?}");
        }
        assert_eq!(
            E::UnsupportedVersion("x".into()).response_code(),
            coap_lite::ResponseType::PreconditionFailed
        );
        assert_eq!(E::MissingEndpoint.response_code(), coap_lite::ResponseType::BadRequest);
        assert_eq!(
            Registration::parse(&[&b"ep=\xff"[..]], b"", &Limits::default()),
            Err(E::NotUtf8)
        );
        assert_eq!(
            Registration::parse(&["ep=a"], b"</1>\xff", &Limits::default()),
            Err(E::NotUtf8)
        );
    }

    #[test]
    fn register_limits() {
        let limits = Limits {
            max_link_entries: 3,
            max_payload: 64,
            max_endpoint_len: 4,
            ..Limits::default()
        };
        let p = "</1/0>,</2/0>,</3/0>,</4/0>";
        assert_eq!(
            Registration::parse(&["ep=a"], p.as_bytes(), &limits),
            Err(RegistrationError::TooManyLinks(3))
        );
        let big = "</1/0>,".repeat(20);
        assert_eq!(
            Registration::parse(&["ep=a"], big.as_bytes(), &limits),
            Err(RegistrationError::PayloadTooLarge(64))
        );
        assert_eq!(
            Registration::parse(&["ep=abcde"], b"", &limits),
            Err(RegistrationError::EndpointTooLong(4))
        );
    }

    #[test]
    fn update() {
        let l = Limits::default();
        let u = RegistrationUpdate::parse::<&str>(&[], b"", &l).unwrap();
        assert_eq!(u, RegistrationUpdate::default());
        let u = RegistrationUpdate::parse(&["lt=120", "b=UQ"], b"</1/0>,</3/0>,</3303/0>", &l).unwrap();
        assert_eq!(u.lifetime, Some(120));
        assert_eq!(u.binding, Some((Binding::default(), true)));
        assert_eq!(u.objects.as_ref().unwrap().objects.len(), 3);
        let mut r = reg(&["ep=a", "lt=60"], "</1/0>").unwrap();
        r.apply(u);
        assert_eq!((r.lifetime, r.queue_mode, r.objects.len()), (120, true, 3));
        assert!(RegistrationUpdate::parse(&["lt=x"], b"", &l).is_err());
    }
}
