//! Server-initiated operations of the Device Management and Information Reporting interfaces
//! (TS 1.2 Core §6.3, §6.4) and their CoAP mapping (TS 1.2 Transport §6.4), built into plain
//! [`CoapRequestParts`] for the CoAP layer to put in a packet; and the `codeMsg` names of
//! response codes the broker publishes.

use std::fmt;

use coap_lite::{RequestType, ResponseType};

use crate::content::{self, senml, ContentFormat};
use crate::error::OperationError;
use crate::path::Path;
use crate::value::Value;

/// The pieces of a CoAP request. Path and query segments are unescaped option values.
#[derive(Debug, Clone, PartialEq)]
pub struct CoapRequestParts {
    /// The method.
    pub method: RequestType,
    /// Uri-Path options, the alternate root path's segments first.
    pub path: Vec<String>,
    /// Uri-Query options, e.g. `pmin=10`.
    pub query: Vec<String>,
    /// Content-Format of the payload.
    pub content_format: Option<u16>,
    /// Accept.
    pub accept: Option<u16>,
    /// Observe: 0 register, 1 deregister.
    pub observe: Option<u32>,
    /// The payload.
    pub payload: Vec<u8>,
}

/// Notification attributes (TS 1.2 Core §5.1.2): periods in seconds, thresholds as numbers.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Attributes {
    /// Minimum period.
    pub pmin: Option<u32>,
    /// Maximum period.
    pub pmax: Option<u32>,
    /// Greater than.
    pub gt: Option<f64>,
    /// Less than.
    pub lt: Option<f64>,
    /// Step.
    pub st: Option<f64>,
    /// Minimum evaluation period (1.1).
    pub epmin: Option<u32>,
    /// Maximum evaluation period (1.1).
    pub epmax: Option<u32>,
}

impl Attributes {
    /// The attributes among `name[=value]` pairs (link params or query options); other names are
    /// skipped, a known name with a value that does not parse is an error.
    pub fn from_params<'a>(params: impl IntoIterator<Item = (&'a str, Option<&'a str>)>) -> Result<Self, String> {
        let mut a = Attributes::default();
        for (name, value) in params {
            let period = |slot: &mut Option<u32>| -> Result<(), String> {
                *slot = Some(
                    value
                        .filter(|v| !v.is_empty() && v.bytes().all(|c| c.is_ascii_digit()))
                        .and_then(|v| v.parse().ok())
                        .ok_or_else(|| format!("bad {name} {value:?}"))?,
                );
                Ok(())
            };
            let number = |slot: &mut Option<f64>| -> Result<(), String> {
                *slot = Some(
                    value
                        .filter(|v| !v.is_empty() && v.bytes().all(|c| c.is_ascii_digit() || b"-+.eE".contains(&c)))
                        .and_then(|v| v.parse::<f64>().ok())
                        .filter(|v| v.is_finite())
                        .ok_or_else(|| format!("bad {name} {value:?}"))?,
                );
                Ok(())
            };
            match name {
                "pmin" => period(&mut a.pmin)?,
                "pmax" => period(&mut a.pmax)?,
                "epmin" => period(&mut a.epmin)?,
                "epmax" => period(&mut a.epmax)?,
                "gt" => number(&mut a.gt)?,
                "lt" => number(&mut a.lt)?,
                "st" => number(&mut a.st)?,
                _ => {}
            }
        }
        Ok(a)
    }

    /// The Uri-Query options for Write-Attributes, in the order pmin, pmax, gt, lt, st, epmin,
    /// epmax.
    pub fn to_query(&self) -> Vec<String> {
        let mut q = Vec::new();
        let periods = [("pmin", self.pmin), ("pmax", self.pmax)];
        for (n, v) in periods {
            if let Some(v) = v {
                q.push(format!("{n}={v}"));
            }
        }
        for (n, v) in [("gt", self.gt), ("lt", self.lt), ("st", self.st)] {
            if let Some(v) = v {
                q.push(format!("{n}={v}"));
            }
        }
        for (n, v) in [("epmin", self.epmin), ("epmax", self.epmax)] {
            if let Some(v) = v {
                q.push(format!("{n}={v}"));
            }
        }
        q
    }
}

/// One Execute argument: a digit and an optional quoted value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecuteArg {
    /// 0–9.
    pub id: u8,
    /// The value between single quotes.
    pub value: Option<String>,
}

/// Execute arguments (TS 1.2 Core §5.4.5):
///
/// ```text
/// arglist = arg *( "," arg )
/// arg     = DIGIT [ "=" "'" *CHAR "'" ]
/// CHAR    = %x21 / %x23-26 / %x28-5B / %x5D-7E
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ExecuteArgs(pub Vec<ExecuteArg>);

fn arg_char(c: char) -> bool {
    matches!(c, '\x21' | '\x23'..='\x26' | '\x28'..='\x5b' | '\x5d'..='\x7e')
}

impl ExecuteArgs {
    /// Parses `0='abc',1`; the empty string is no arguments.
    pub fn parse(s: &str) -> Result<Self, OperationError> {
        if s.is_empty() {
            return Ok(Self::default());
        }
        let err = |m: &str| OperationError::ExecuteArgs(format!("{m} in {:?}", s.chars().take(64).collect::<String>()));
        let mut args = Vec::new();
        let mut rest = s;
        loop {
            let mut chars = rest.chars();
            let id = chars
                .next()
                .and_then(|c| c.to_digit(10))
                .ok_or_else(|| err("argument id is not a digit"))?;
            rest = chars.as_str();
            let value = if let Some(v) = rest.strip_prefix("='") {
                let end = v.find('\'').ok_or_else(|| err("unterminated value"))?;
                let value = &v[..end];
                if !value.chars().all(arg_char) {
                    return Err(err("forbidden character in value"));
                }
                rest = &v[end + 1..];
                Some(value.to_owned())
            } else {
                None
            };
            // id < 10: the cast cannot truncate.
            args.push(ExecuteArg { id: id as u8, value });
            if rest.is_empty() {
                return Ok(Self(args));
            }
            rest = rest.strip_prefix(',').ok_or_else(|| err("expected ','"))?;
        }
    }
}

impl fmt::Display for ExecuteArgs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, a) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{}", a.id)?;
            if let Some(v) = &a.value {
                write!(f, "='{v}'")?;
            }
        }
        Ok(())
    }
}

/// How a Write changes the target (TS 1.2 Core §6.3.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteMode {
    /// Replace (CoAP PUT): the instance or resource becomes exactly the payload.
    Replace,
    /// Partial update (CoAP POST, object instance only): the given resources change.
    PartialUpdate,
}

/// A server-initiated operation.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Operation {
    /// Read (GET), optionally with an Accept.
    Read {
        /// Target.
        path: Path,
    },
    /// Discover (GET, Accept: link-format).
    Discover {
        /// Target: object, instance or resource.
        path: Path,
    },
    /// Write: PUT (replace) or POST (partial update) with a payload.
    Write {
        /// Target: instance, resource or resource instance.
        path: Path,
        /// Replace or partial update.
        mode: WriteMode,
        /// The values, under `path`.
        content: Vec<(Path, Value)>,
    },
    /// Write-Attributes (PUT with query, no payload).
    WriteAttributes {
        /// Target.
        path: Path,
        /// The attributes to set.
        attributes: Attributes,
    },
    /// Execute (POST on a resource).
    Execute {
        /// Target resource.
        path: Path,
        /// Arguments, sent as the text payload.
        args: ExecuteArgs,
    },
    /// Create (POST on an object); the values name the new instance.
    Create {
        /// Target object.
        path: Path,
        /// The new instance's values, `/obj/inst/res...`.
        content: Vec<(Path, Value)>,
    },
    /// Delete (DELETE on an instance).
    Delete {
        /// Target instance.
        path: Path,
    },
    /// Observe (GET, Observe: 0).
    Observe {
        /// Target.
        path: Path,
    },
    /// Cancel an observation (GET, Observe: 1).
    CancelObserve {
        /// Target.
        path: Path,
    },
    /// Read-Composite (1.1, FETCH on the root with a SenML list of paths).
    ReadComposite {
        /// The paths to read.
        paths: Vec<Path>,
    },
    /// Observe-Composite (1.1, FETCH with Observe: 0).
    ObserveComposite {
        /// The paths to observe.
        paths: Vec<Path>,
    },
    /// Cancel an Observe-Composite (1.1, FETCH with Observe: 1).
    CancelObserveComposite {
        /// The observed paths.
        paths: Vec<Path>,
    },
    /// Write-Composite (1.1, iPATCH on the root with SenML values).
    WriteComposite {
        /// The values, any paths.
        content: Vec<(Path, Value)>,
    },
}

impl Operation {
    /// The `msgType` name EMQX uses for the command.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Read { .. } => "read",
            Self::Discover { .. } => "discover",
            Self::Write { .. } => "write",
            Self::WriteAttributes { .. } => "write-attr",
            Self::Execute { .. } => "execute",
            Self::Create { .. } => "create",
            Self::Delete { .. } => "delete",
            Self::Observe { .. } => "observe",
            Self::CancelObserve { .. } => "cancel-observe",
            Self::ReadComposite { .. } => "read-composite",
            Self::ObserveComposite { .. } => "observe-composite",
            Self::CancelObserveComposite { .. } => "cancel-observe-composite",
            Self::WriteComposite { .. } => "write-composite",
        }
    }

    /// The target path, `None` for composite operations (the root).
    pub fn path(&self) -> Option<&Path> {
        match self {
            Self::Read { path }
            | Self::Discover { path }
            | Self::Write { path, .. }
            | Self::WriteAttributes { path, .. }
            | Self::Execute { path, .. }
            | Self::Create { path, .. }
            | Self::Delete { path }
            | Self::Observe { path }
            | Self::CancelObserve { path } => Some(path),
            Self::ReadComposite { .. }
            | Self::ObserveComposite { .. }
            | Self::CancelObserveComposite { .. }
            | Self::WriteComposite { .. } => None,
        }
    }

    /// Builds the CoAP request.
    ///
    /// `root` is the client's alternate path (`None` or `"/"` for none). `format` is the content
    /// format for payloads (Write, Create: TLV for 1.0 clients, SenML CBOR or JSON from 1.1;
    /// composite operations: a SenML format) and the Accept for Read, Observe and composite
    /// operations when `accept` is set.
    pub fn to_request(
        &self,
        root: Option<&str>,
        format: ContentFormat,
        accept: Option<ContentFormat>,
    ) -> Result<CoapRequestParts, OperationError> {
        let bad = |depth_ok: bool| -> Result<(), OperationError> {
            if depth_ok {
                Ok(())
            } else {
                Err(OperationError::BadPath {
                    operation: self.name(),
                    path: self.path().map_or_else(|| "/".into(), ToString::to_string),
                })
            }
        };
        let mut path: Vec<String> = root
            .unwrap_or("")
            .split('/')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        if let Some(p) = self.path() {
            path.extend(p.ids().iter().map(ToString::to_string));
        }
        let mut r = CoapRequestParts {
            method: RequestType::Get,
            path,
            query: Vec::new(),
            content_format: None,
            accept: accept.map(|a| a.code()),
            observe: None,
            payload: Vec::new(),
        };
        let composite_format = || -> Result<ContentFormat, OperationError> {
            match format {
                ContentFormat::SenmlJson | ContentFormat::SenmlCbor => Ok(format),
                other => Err(OperationError::Encode(crate::error::EncodeError::UnsupportedFormat(
                    other.code(),
                ))),
            }
        };
        let paths_payload = |paths: &[Path]| -> Result<(u16, Vec<u8>), OperationError> {
            if paths.is_empty() {
                return Err(OperationError::NoPaths);
            }
            let f = composite_format()?;
            let body = if f == ContentFormat::SenmlJson {
                senml::encode_paths_json(paths)
            } else {
                senml::encode_paths_cbor(paths)
            };
            Ok((f.code(), body))
        };
        match self {
            Self::Read { .. } => {}
            Self::Discover { path } => {
                bad(path.depth() <= 3)?;
                r.accept = Some(ContentFormat::LinkFormat.code());
            }
            Self::Observe { .. } => r.observe = Some(0),
            Self::CancelObserve { .. } => r.observe = Some(1),
            Self::Write { path, mode, content } => {
                bad(path.depth() >= 2 && (*mode == WriteMode::Replace || path.depth() == 2))?;
                r.method = if *mode == WriteMode::Replace {
                    RequestType::Put
                } else {
                    RequestType::Post
                };
                r.content_format = Some(format.code());
                r.payload = content::encode(format, Some(path), content)?;
                r.accept = None;
            }
            Self::WriteAttributes { attributes, .. } => {
                r.method = RequestType::Put;
                r.query = attributes.to_query();
                r.accept = None;
            }
            Self::Execute { path, args } => {
                bad(path.depth() == 3)?;
                r.method = RequestType::Post;
                r.accept = None;
                if !args.0.is_empty() {
                    r.content_format = Some(ContentFormat::Text.code());
                    r.payload = args.to_string().into_bytes();
                }
            }
            Self::Create { path, content } => {
                bad(path.depth() == 1)?;
                r.method = RequestType::Post;
                r.accept = None;
                r.content_format = Some(format.code());
                r.payload = content::encode(format, Some(path), content)?;
            }
            Self::Delete { path } => {
                bad(path.depth() == 2)?;
                r.method = RequestType::Delete;
                r.accept = None;
            }
            Self::ReadComposite { paths }
            | Self::ObserveComposite { paths }
            | Self::CancelObserveComposite { paths } => {
                let (cf, body) = paths_payload(paths)?;
                r.method = RequestType::Fetch;
                r.content_format = Some(cf);
                r.payload = body;
                r.accept = Some(accept.map_or(cf, |a| a.code()));
                r.observe = match self {
                    Self::ObserveComposite { .. } => Some(0),
                    Self::CancelObserveComposite { .. } => Some(1),
                    _ => None,
                };
            }
            Self::WriteComposite { content } => {
                let f = composite_format()?;
                r.method = RequestType::IPatch;
                r.content_format = Some(f.code());
                r.payload = content::encode(f, None, content)?;
                r.accept = None;
            }
        }
        Ok(r)
    }
}

/// A response code as `"2.05"`.
pub fn code_string(code: ResponseType) -> String {
    let n = coap_lite::MessageClass::Response(code);
    let raw: u8 = n.into();
    format!("{}.{:02}", raw >> 5, raw & 0x1f)
}

/// EMQX's `codeMsg` name of a response code: `"content"`, `"not_found"` ...
pub fn code_msg(code: ResponseType) -> &'static str {
    use ResponseType as R;
    match code {
        R::Created => "created",
        R::Deleted => "deleted",
        R::Valid => "valid",
        R::Changed => "changed",
        R::Content => "content",
        R::Continue => "continue",
        R::BadRequest => "bad_request",
        R::Unauthorized => "unauthorized",
        R::BadOption => "bad_option",
        R::Forbidden => "forbidden",
        R::NotFound => "not_found",
        R::MethodNotAllowed => "method_not_allowed",
        R::NotAcceptable => "not_acceptable",
        R::Conflict => "conflict",
        R::PreconditionFailed => "precondition_failed",
        R::RequestEntityTooLarge => "request_entity_too_large",
        R::UnsupportedContentFormat => "unsupported_content_format",
        R::RequestEntityIncomplete => "request_entity_incomplete",
        R::UnprocessableEntity => "unprocessable_entity",
        R::TooManyRequests => "too_many_requests",
        R::InternalServerError => "internal_server_error",
        R::NotImplemented => "not_implemented",
        R::BadGateway => "bad_gateway",
        R::ServiceUnavailable => "service_unavailable",
        R::GatewayTimeout => "gateway_timeout",
        R::ProxyingNotSupported => "proxying_not_supported",
        R::HopLimitReached => "hop_limit_reached",
        R::UnKnown => "unknown",
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
    fn execute_args() {
        for s in ["", "0", "0='abc',1", "5='http://x.y/?a=b',9", "0=''"] {
            assert_eq!(ExecuteArgs::parse(s).unwrap().to_string(), s);
        }
        let a = ExecuteArgs::parse("0='abc',1").unwrap();
        assert_eq!(
            a.0[0],
            ExecuteArg {
                id: 0,
                value: Some("abc".into())
            }
        );
        assert_eq!(a.0[1], ExecuteArg { id: 1, value: None });
        for s in [
            "a", "10", "0=abc", "0='abc", "0='a b'", "0='a\"b'", "0='a\\b'", "0,", ",0", "0='x'1", "0;1",
        ] {
            assert!(ExecuteArgs::parse(s).is_err(), "{s:?}");
        }
    }

    #[test]
    fn requests() {
        let tlv = ContentFormat::Tlv;
        let r = Operation::Read { path: p("/3/0/1") }
            .to_request(None, tlv, None)
            .unwrap();
        assert_eq!(
            (r.method, r.path.clone(), r.accept, r.observe),
            (RequestType::Get, vec!["3".into(), "0".into(), "1".into()], None, None)
        );
        let r = Operation::Read { path: p("/3/0") }
            .to_request(Some("/lwm2m"), tlv, Some(ContentFormat::SenmlCbor))
            .unwrap();
        assert_eq!((r.path.join("/"), r.accept), ("lwm2m/3/0".into(), Some(112)));
        let r = Operation::Discover { path: p("/3/0") }
            .to_request(None, tlv, None)
            .unwrap();
        assert_eq!(r.accept, Some(40));
        let r = Operation::Observe {
            path: p("/3303/0/5700"),
        }
        .to_request(None, tlv, None)
        .unwrap();
        assert_eq!((r.method, r.observe), (RequestType::Get, Some(0)));
        let r = Operation::CancelObserve {
            path: p("/3303/0/5700"),
        }
        .to_request(None, tlv, None)
        .unwrap();
        assert_eq!(r.observe, Some(1));

        let content = vec![(p("/3/0/14"), Value::String("+02:00".into()))];
        let r = Operation::Write {
            path: p("/3/0/14"),
            mode: WriteMode::Replace,
            content: content.clone(),
        }
        .to_request(None, tlv, None)
        .unwrap();
        assert_eq!((r.method, r.content_format), (RequestType::Put, Some(11542)));
        assert_eq!(r.payload, [0xC6, 0x0E, b'+', b'0', b'2', b':', b'0', b'0']);
        let r = Operation::Write {
            path: p("/3/0"),
            mode: WriteMode::PartialUpdate,
            content: content.clone(),
        }
        .to_request(None, ContentFormat::SenmlJson, None)
        .unwrap();
        assert_eq!((r.method, r.content_format), (RequestType::Post, Some(110)));
        assert_eq!(r.payload, br#"[{"bn":"/3/0/","n":"14","vs":"+02:00"}]"#);
        assert!(Operation::Write {
            path: p("/3/0/14"),
            mode: WriteMode::PartialUpdate,
            content
        }
        .to_request(None, tlv, None)
        .is_err());

        let attributes = Attributes {
            pmin: Some(10),
            pmax: Some(60),
            gt: Some(20.5),
            ..Attributes::default()
        };
        let r = Operation::WriteAttributes {
            path: p("/3303/0/5700"),
            attributes,
        }
        .to_request(None, tlv, None)
        .unwrap();
        assert_eq!(
            (r.method, r.query.clone(), r.payload.len()),
            (
                RequestType::Put,
                vec!["pmin=10".into(), "pmax=60".into(), "gt=20.5".into()],
                0
            )
        );
        assert_eq!(
            Attributes::from_params(r.query.iter().map(|q| {
                let (a, b) = q.split_once('=').unwrap();
                (a, Some(b))
            }))
            .unwrap(),
            attributes
        );

        let r = Operation::Execute {
            path: p("/3/0/4"),
            args: ExecuteArgs::default(),
        }
        .to_request(None, tlv, None)
        .unwrap();
        assert_eq!(
            (r.method, r.content_format, r.payload.len()),
            (RequestType::Post, None, 0)
        );
        let args = ExecuteArgs::parse("0='abc',1").unwrap();
        let r = Operation::Execute {
            path: p("/3/0/4"),
            args,
        }
        .to_request(None, tlv, None)
        .unwrap();
        assert_eq!((r.content_format, r.payload.as_slice()), (Some(0), &b"0='abc',1"[..]));
        assert!(Operation::Execute {
            path: p("/3/0"),
            args: ExecuteArgs::default()
        }
        .to_request(None, tlv, None)
        .is_err());

        let r = Operation::Create {
            path: p("/3303"),
            content: vec![(p("/3303/2/5750"), Value::String("x".into()))],
        }
        .to_request(None, tlv, None)
        .unwrap();
        assert_eq!((r.method, r.path.join("/")), (RequestType::Post, "3303".into()));
        assert_eq!(r.payload, [0x04, 0x02, 0xE1, 0x16, 0x76, b'x']);
        let r = Operation::Delete { path: p("/3303/2") }
            .to_request(None, tlv, None)
            .unwrap();
        assert_eq!(r.method, RequestType::Delete);
        assert!(Operation::Delete { path: p("/3303") }
            .to_request(None, tlv, None)
            .is_err());

        let paths = vec![p("/3/0/0"), p("/3303/0/5700")];
        let r = Operation::ReadComposite { paths: paths.clone() }
            .to_request(Some("/"), ContentFormat::SenmlJson, None)
            .unwrap();
        assert_eq!(
            (r.method, r.path.len(), r.content_format, r.accept, r.observe),
            (RequestType::Fetch, 0, Some(110), Some(110), None)
        );
        assert_eq!(r.payload, br#"[{"n":"/3/0/0"},{"n":"/3303/0/5700"}]"#);
        let r = Operation::ObserveComposite { paths }
            .to_request(None, ContentFormat::SenmlCbor, None)
            .unwrap();
        assert_eq!((r.content_format, r.observe), (Some(112), Some(0)));
        assert!(matches!(
            Operation::ReadComposite { paths: vec![] }.to_request(None, ContentFormat::SenmlCbor, None),
            Err(OperationError::NoPaths)
        ));
        assert!(Operation::ReadComposite { paths: vec![p("/3")] }
            .to_request(None, tlv, None)
            .is_err());
        let r = Operation::WriteComposite {
            content: vec![(p("/3/0/14"), Value::String("Z".into()))],
        }
        .to_request(None, ContentFormat::SenmlJson, None)
        .unwrap();
        assert_eq!(
            (r.method, r.payload.as_slice()),
            (RequestType::IPatch, &br#"[{"n":"/3/0/14","vs":"Z"}]"#[..])
        );
    }

    #[test]
    fn code_names() {
        assert_eq!(
            (code_string(ResponseType::Content), code_msg(ResponseType::Content)),
            ("2.05".into(), "content")
        );
        assert_eq!(
            (code_string(ResponseType::Changed), code_msg(ResponseType::Changed)),
            ("2.04".into(), "changed")
        );
        assert_eq!(
            (code_string(ResponseType::NotFound), code_msg(ResponseType::NotFound)),
            ("4.04".into(), "not_found")
        );
        assert_eq!(
            (
                code_string(ResponseType::MethodNotAllowed),
                code_msg(ResponseType::MethodNotAllowed)
            ),
            ("4.05".into(), "method_not_allowed")
        );
        assert_eq!(code_string(ResponseType::InternalServerError), "5.00");
    }
}
