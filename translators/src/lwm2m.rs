//! LwM2M ↔ namespace, in the shape of EMQX's LwM2M gateway so existing integrations work.
//!
//! - Downlink: a JSON command published on `{mount}{command}` (default `lwm2m/{ep}/dn`),
//!   `{requestID, cacheID?, msgType, data:{path, value?, type?, args?, basePath?, content?,
//!   attributes?}}`, becomes an [`Operation`] ([`parse_command`]).
//! - Uplink: every command gets one response on `up/resp` that echoes the command's fields
//!   with `data:{reqPath, code, codeMsg, content?}` ([`response`]); notifications of an
//!   observation go to `up/notify` with `msgType: "notify"` and `seqNum`; registrations,
//!   updates, de-registrations and Send (`/dp`) become events ([`registration_event`],
//!   [`deregistration_event`], [`send_event`]).
//!
//! Topics come from a [`TopicScheme`]: a mount point with `${endpoint}` as one topic level
//! (default `lwm2m/${endpoint}/`, ISA-95 style prefixes work too) and one suffix per kind.

use serde_json::{json, Map, Value as Json};
use unigate_lwm2m::link;
use unigate_lwm2m::{
    code_msg, code_string, Attributes, ExecuteArgs, Operation, Path, Registration, Registry, ResourceType,
    ResponseType, Value, WriteMode,
};
use unigate_pubsub::{Topic, TopicError, TopicFilter};

/// The placeholder of the endpoint name in a mount point.
pub const ENDPOINT: &str = "${endpoint}";

/// An uplink event kind, each on its own topic suffix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Uplink {
    /// Command responses.
    Response,
    /// Observation notifications.
    Notify,
    /// Registrations.
    Register,
    /// Registration updates.
    Update,
    /// De-registrations (and expiries).
    Deregister,
    /// Send operations (`/dp`, LwM2M 1.1).
    Send,
}

/// Where LwM2M events and commands live in the namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicScheme {
    /// Levels of the mount point; the one at `endpoint_level` is `${endpoint}`.
    mount: Vec<String>,
    endpoint_level: usize,
    /// Suffixes (`dn`, `up/resp`, …).
    command: String,
    response: String,
    notify: String,
    register: String,
    update: String,
    deregister: String,
    send: String,
}

/// Why a topic scheme is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SchemeError {
    /// The mount point must hold `${endpoint}` exactly once, as a whole level.
    #[error(
        "the mount point must contain {ENDPOINT} exactly once, as a whole topic level (e.g. \"lwm2m/{ENDPOINT}/\")"
    )]
    Endpoint,
    /// A suffix is empty or holds a wildcard or U+0000.
    #[error("topic suffix {0:?} must be non-empty and hold no wildcard or U+0000")]
    Suffix(String),
    /// The mount point holds a wildcard or U+0000.
    #[error("the mount point must hold no wildcard or U+0000")]
    Mount,
}

impl TopicScheme {
    /// A scheme from a mount point (`lwm2m/${endpoint}/`) and the suffixes for commands,
    /// responses, notifications, registrations, updates, de-registrations and Send.
    pub fn new(mount: &str, suffixes: [&str; 7]) -> Result<Self, SchemeError> {
        if mount.contains(['+', '#', '\0']) {
            return Err(SchemeError::Mount);
        }
        let levels: Vec<String> = mount.trim_end_matches('/').split('/').map(str::to_owned).collect();
        let at: Vec<usize> = levels
            .iter()
            .enumerate()
            .filter(|(_, l)| l.contains(ENDPOINT))
            .map(|(i, _)| i)
            .collect();
        let endpoint_level = match at.as_slice() {
            [i] if levels[*i] == ENDPOINT => *i,
            _ => return Err(SchemeError::Endpoint),
        };
        for s in suffixes {
            if s.is_empty() || s.contains(['+', '#', '\0']) || s.starts_with('/') {
                return Err(SchemeError::Suffix(s.to_owned()));
            }
        }
        let [command, response, notify, register, update, deregister, send] = suffixes.map(str::to_owned);
        Ok(TopicScheme {
            mount: levels,
            endpoint_level,
            command,
            response,
            notify,
            register,
            update,
            deregister,
            send,
        })
    }

    fn prefix(&self, ep: &str) -> String {
        let mut s = String::new();
        for (i, l) in self.mount.iter().enumerate() {
            s.push_str(if i == self.endpoint_level { ep } else { l });
            s.push('/');
        }
        s
    }

    /// The topic of an uplink event of endpoint `ep`.
    pub fn uplink(&self, ep: &str, kind: Uplink) -> Result<Topic, TopicError> {
        let suffix = match kind {
            Uplink::Response => &self.response,
            Uplink::Notify => &self.notify,
            Uplink::Register => &self.register,
            Uplink::Update => &self.update,
            Uplink::Deregister => &self.deregister,
            Uplink::Send => &self.send,
        };
        Topic::new(&(self.prefix(ep) + suffix))
    }

    /// The command topic of endpoint `ep`.
    pub fn command_topic(&self, ep: &str) -> Result<Topic, TopicError> {
        Topic::new(&(self.prefix(ep) + &self.command))
    }

    /// The filter matching every endpoint's command topic.
    pub fn command_filter(&self) -> Result<TopicFilter, TopicError> {
        TopicFilter::new(&(self.prefix("+") + &self.command))
    }

    /// The endpoint name in a command topic, if it is one.
    pub fn endpoint_of<'a>(&self, topic: &'a str) -> Option<&'a str> {
        let mut levels = topic.split('/');
        let mut ep = None;
        for (i, l) in self.mount.iter().enumerate() {
            let got = levels.next()?;
            if i == self.endpoint_level {
                ep = Some(got);
            } else if got != l {
                return None;
            }
        }
        let rest: Vec<&str> = levels.collect();
        (rest.join("/") == self.command).then_some(ep?)
    }
}

/// The default mount point, EMQX's.
pub const DEFAULT_MOUNT: &str = "lwm2m/${endpoint}/";
/// The default suffixes: command, response, notify, register, update, deregister, send.
pub const DEFAULT_SUFFIXES: [&str; 7] = [
    "dn",
    "up/resp",
    "up/notify",
    "up/register",
    "up/update",
    "up/deregister",
    "up/send",
];

impl Default for TopicScheme {
    fn default() -> Self {
        let [command, response, notify, register, update, deregister, send] = DEFAULT_SUFFIXES.map(str::to_owned);
        // The same as `TopicScheme::new(DEFAULT_MOUNT, DEFAULT_SUFFIXES)`, which a test checks.
        TopicScheme {
            mount: vec!["lwm2m".into(), ENDPOINT.into()],
            endpoint_level: 1,
            command,
            response,
            notify,
            register,
            update,
            deregister,
            send,
        }
    }
}

/// Whether an endpoint name can be a topic level: non-empty, no `/`, `+`, `#` or U+0000.
pub fn valid_endpoint(ep: &str) -> bool {
    !ep.is_empty() && !ep.contains(['/', '+', '#', '\0'])
}

/// A downlink command, parsed.
#[derive(Debug, Clone, PartialEq)]
pub struct Command {
    /// The command's fields other than `data` (`requestID`, `cacheID`, `msgType`, anything
    /// else), echoed in the response.
    pub echo: Map<String, Json>,
    /// The path the response names as `reqPath`.
    pub req_path: String,
    /// What to do.
    pub operation: Operation,
}

/// A command that cannot be carried out; it is still answered, with 4.00.
#[derive(Debug, Clone, PartialEq)]
pub struct CommandError {
    /// What could be read of the command, echoed.
    pub echo: Map<String, Json>,
    /// The path it named, if any.
    pub req_path: String,
    /// Why.
    pub reason: String,
}

/// Parses a command. Values are typed by `type` when given (EMQX's names: `Integer`, `Float`,
/// `String`, `Boolean`, `Opaque`, `Time`, `Objlnk`), else by the object registry, else by the
/// JSON value.
pub fn parse_command(payload: &[u8], registry: &Registry) -> Result<Command, CommandError> {
    let fail = |echo: Map<String, Json>, req_path: String, reason: String| CommandError { echo, req_path, reason };
    let json: Json = serde_json::from_slice(payload)
        .map_err(|e| fail(Map::new(), String::new(), format!("command is not JSON: {e}")))?;
    let Json::Object(mut map) = json else {
        return Err(fail(Map::new(), String::new(), "command is not a JSON object".into()));
    };
    let data = map.remove("data").unwrap_or(Json::Null);
    let echo = map;
    // A composite command names its paths, joined by `,`.
    let req_path = match data.get("path").or_else(|| data.get("basePath")).and_then(Json::as_str) {
        Some(p) => drop_query(p).to_owned(),
        None => data
            .get("paths")
            .and_then(Json::as_array)
            .map(|ps| ps.iter().filter_map(Json::as_str).collect::<Vec<_>>().join(","))
            .unwrap_or_default(),
    };
    let msg_type = match echo.get("msgType").and_then(Json::as_str) {
        Some(t) => t.to_owned(),
        None => return Err(fail(echo, req_path, "no string \"msgType\"".into())),
    };
    if !data.is_object() {
        return Err(fail(echo, req_path, "no object \"data\"".into()));
    }
    match operation(&msg_type, &data, registry) {
        Ok(operation) => Ok(Command {
            echo,
            req_path,
            operation,
        }),
        Err(reason) => Err(fail(echo, req_path, reason)),
    }
}

fn drop_query(p: &str) -> &str {
    p.split_once('?').map_or(p, |(p, _)| p)
}

fn path_of(data: &Json, key: &str) -> Result<Path, String> {
    let s = data
        .get(key)
        .and_then(Json::as_str)
        .ok_or_else(|| format!("no string \"{key}\" in data"))?;
    drop_query(s).parse().map_err(|e| format!("bad {key} {s:?}: {e}"))
}

fn value_of(item: &Json, path: &Path, registry: &Registry) -> Result<Value, String> {
    let value = item.get("value").ok_or_else(|| format!("no \"value\" for {path}"))?;
    let ty = match item.get("type").and_then(Json::as_str) {
        Some(name) => ResourceType::from_name(name).ok_or_else(|| format!("unknown type {name:?}"))?,
        None => match registry.resource_type(path) {
            Some(t) => t,
            None => match value {
                Json::Bool(_) => ResourceType::Boolean,
                Json::Number(n) if n.is_i64() => ResourceType::Integer,
                Json::Number(n) if n.is_u64() => ResourceType::UnsignedInteger,
                Json::Number(_) => ResourceType::Float,
                _ => ResourceType::String,
            },
        },
    };
    Value::from_json(value, ty).map_err(|e| format!("{path}: {e}"))
}

/// The items of `content`: `{path, type?, value}` with paths absolute or relative to `base`.
fn content_of(data: &Json, base: Option<&Path>, registry: &Registry) -> Result<Vec<(Path, Value)>, String> {
    let items = data
        .get("content")
        .and_then(Json::as_array)
        .ok_or("no array \"content\" in data")?;
    if items.is_empty() {
        return Err("\"content\" is empty".into());
    }
    items
        .iter()
        .map(|item| {
            let p = item
                .get("path")
                .and_then(Json::as_str)
                .ok_or("content item without a string \"path\"")?;
            let path: Path = if p.starts_with('/') {
                p.parse().map_err(|e| format!("bad path {p:?}: {e}"))?
            } else {
                let base = base.ok_or_else(|| format!("relative path {p:?} without basePath"))?;
                format!("{base}/{p}")
                    .parse()
                    .map_err(|e| format!("bad path {p:?}: {e}"))?
            };
            if let Some(b) = base {
                if !path.starts_with(b) {
                    return Err(format!("{path} is not under {b}"));
                }
            }
            Ok((path, value_of(item, &path, registry)?))
        })
        .collect()
}

fn operation(msg_type: &str, data: &Json, registry: &Registry) -> Result<Operation, String> {
    let paths = || -> Result<Vec<Path>, String> {
        data.get("paths")
            .and_then(Json::as_array)
            .ok_or("no array \"paths\" in data")?
            .iter()
            .map(|p| {
                p.as_str()
                    .ok_or_else(|| "a path is not a string".to_string())?
                    .parse()
                    .map_err(|e| format!("bad path {p}: {e}"))
            })
            .collect()
    };
    Ok(match msg_type {
        "read" => Operation::Read {
            path: path_of(data, "path")?,
        },
        "discover" => Operation::Discover {
            path: path_of(data, "path")?,
        },
        "observe" => Operation::Observe {
            path: path_of(data, "path")?,
        },
        "cancel-observe" => Operation::CancelObserve {
            path: path_of(data, "path")?,
        },
        "delete" => Operation::Delete {
            path: path_of(data, "path")?,
        },
        "execute" => {
            let args = match data.get("args") {
                None | Some(Json::Null) => ExecuteArgs::default(),
                Some(Json::String(s)) if s == "undefined" => ExecuteArgs::default(),
                Some(Json::String(s)) => ExecuteArgs::parse(s).map_err(|e| format!("bad args: {e}"))?,
                Some(_) => return Err("\"args\" is not a string".into()),
            };
            Operation::Execute {
                path: path_of(data, "path")?,
                args,
            }
        }
        "write" => {
            let mode = match data.get("mode").and_then(Json::as_str) {
                None => None,
                Some("replace") => Some(WriteMode::Replace),
                Some("update" | "partial") => Some(WriteMode::PartialUpdate),
                Some(m) => return Err(format!("unknown write mode {m:?}")),
            };
            if data.get("basePath").is_some() && data.get("content").is_some() {
                let path = path_of(data, "basePath")?;
                let content = content_of(data, Some(&path), registry)?;
                // EMQX's default: an instance is partially updated, a resource replaced.
                let mode = mode.unwrap_or(if path.depth() == 2 {
                    WriteMode::PartialUpdate
                } else {
                    WriteMode::Replace
                });
                Operation::Write { path, mode, content }
            } else {
                let path = path_of(data, "path")?;
                let value = value_of(data, &path, registry)?;
                Operation::Write {
                    content: vec![(path, value)],
                    path,
                    mode: mode.unwrap_or(WriteMode::Replace),
                }
            }
        }
        "create" => {
            let path = path_of(data, "basePath").or_else(|_| path_of(data, "path"))?;
            let content = content_of(data, Some(&path), registry)?;
            Operation::Create { path, content }
        }
        "write-attr" => {
            let source = data.get("attributes").unwrap_or(data);
            let obj = source.as_object().ok_or("\"attributes\" is not an object")?;
            let mut pairs: Vec<(String, String)> = Vec::new();
            for key in ["pmin", "pmax", "gt", "lt", "st", "epmin", "epmax"] {
                match obj.get(key) {
                    None | Some(Json::Null) => {}
                    Some(Json::String(s)) => pairs.push((key.into(), s.clone())),
                    Some(Json::Number(n)) => pairs.push((key.into(), n.to_string())),
                    Some(v) => return Err(format!("bad {key} {v}")),
                }
            }
            if pairs.is_empty() {
                return Err("no attribute (pmin, pmax, gt, lt, st, epmin, epmax)".into());
            }
            let attributes = Attributes::from_params(pairs.iter().map(|(k, v)| (k.as_str(), Some(v.as_str()))))?;
            Operation::WriteAttributes {
                path: path_of(data, "path")?,
                attributes,
            }
        }
        "read-composite" => Operation::ReadComposite { paths: paths()? },
        "observe-composite" => Operation::ObserveComposite { paths: paths()? },
        "cancel-observe-composite" => Operation::CancelObserveComposite { paths: paths()? },
        "write-composite" => Operation::WriteComposite {
            content: content_of(data, None, registry)?,
        },
        other => return Err(format!("unknown msgType {other:?}")),
    })
}

/// The response to a command: its echoed fields and `data:{reqPath, code, codeMsg,
/// content?}`; `error` explains failures that are ours (bad command, timeout, undecodable
/// answer).
pub fn response(
    echo: &Map<String, Json>,
    req_path: &str,
    code: ResponseType,
    content: Option<Json>,
    error: Option<&str>,
) -> Json {
    let mut out = echo.clone();
    let mut data = Map::new();
    data.insert("reqPath".into(), json!(req_path));
    data.insert("code".into(), json!(code_string(code)));
    data.insert("codeMsg".into(), json!(code_msg(code)));
    if let Some(c) = content {
        data.insert("content".into(), c);
    }
    if let Some(e) = error {
        data.insert("error".into(), json!(e));
    }
    out.insert("data".into(), Json::Object(data));
    Json::Object(out)
}

/// A Discover answer as EMQX shows it: one string per link.
pub fn discover_content(payload: &[u8], max_links: usize) -> Result<Json, String> {
    let text = std::str::from_utf8(payload).map_err(|_| "link format is not UTF-8".to_string())?;
    let links = link::parse(text, max_links).map_err(|e| format!("bad link format: {e:?}"))?;
    Ok(links
        .iter()
        .map(|l| Json::String(link::Display(std::slice::from_ref(l)).to_string()))
        .collect())
}

/// The register or update event: `{msgType, data:{ep, lt, lwm2m, b, alternatePath,
/// objectList}}`.
pub fn registration_event(msg_type: &str, reg: &Registration) -> Json {
    let mut b = reg.binding.to_string();
    if reg.queue_mode && !b.contains('Q') {
        b.push('Q');
    }
    let mut data = json!({
        "ep": reg.endpoint,
        "lt": reg.lifetime,
        "lwm2m": reg.version.as_str(),
        "b": b,
        "alternatePath": reg.root_path(),
        "objectList": reg.objects.iter().map(|o| o.path.to_string()).collect::<Vec<_>>(),
    });
    if let (Some(sms), Some(d)) = (&reg.sms, data.as_object_mut()) {
        d.insert("sms".into(), json!(sms));
    }
    json!({"msgType": msg_type, "data": data})
}

/// The de-registration event; `reason` is `deregistered`, `expired` or `superseded` (another
/// endpoint registered from the same address).
pub fn deregistration_event(ep: &str, reason: &str) -> Json {
    json!({"msgType": "deregister", "data": {"ep": ep, "reason": reason}})
}

/// A Send (`/dp`) event.
pub fn send_event(content: Json) -> Json {
    json!({"msgType": "send", "data": {"reqPath": "/dp", "content": content}})
}

/// A notification of an observation started by the command `echo`: `msgType` becomes
/// `notify`, with the observe sequence number as `seqNum`.
pub fn notify_event(echo: &Map<String, Json>, req_path: &str, seq: u32, content: Json) -> Json {
    let mut echo = echo.clone();
    echo.insert("msgType".into(), json!("notify"));
    echo.insert("seqNum".into(), json!(seq));
    response(&echo, req_path, ResponseType::Content, Some(content), None)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn reg() -> Registry {
        Registry::core()
    }

    fn cmd(j: Json) -> Result<Command, CommandError> {
        parse_command(j.to_string().as_bytes(), &reg())
    }

    #[test]
    fn default_scheme_is_emqx() {
        let s = TopicScheme::new(DEFAULT_MOUNT, DEFAULT_SUFFIXES).unwrap();
        assert_eq!(s, TopicScheme::default());
        assert_eq!(s.uplink("ep1", Uplink::Response).unwrap().as_str(), "lwm2m/ep1/up/resp");
        assert_eq!(s.command_filter().unwrap().as_str(), "lwm2m/+/dn");
        assert_eq!(s.endpoint_of("lwm2m/ep1/dn"), Some("ep1"));
        assert_eq!(s.endpoint_of("lwm2m/ep1/dn/x"), None);
        assert_eq!(s.endpoint_of("other/ep1/dn"), None);
    }

    #[test]
    fn isa95_scheme() {
        let s = TopicScheme::new(
            "acme/plant1/${endpoint}/lwm2m",
            ["cmd", "resp", "notify", "reg", "upd", "dereg", "send"],
        )
        .unwrap();
        assert_eq!(
            s.uplink("dev", Uplink::Notify).unwrap().as_str(),
            "acme/plant1/dev/lwm2m/notify"
        );
        assert_eq!(s.command_filter().unwrap().as_str(), "acme/plant1/+/lwm2m/cmd");
        assert_eq!(s.endpoint_of("acme/plant1/dev/lwm2m/cmd"), Some("dev"));
        for bad in [
            "lwm2m/",
            "lwm2m/x${endpoint}/",
            "${endpoint}/${endpoint}",
            "a/+/${endpoint}",
        ] {
            assert!(TopicScheme::new(bad, ["a"; 7]).is_err(), "{bad}");
        }
        assert!(TopicScheme::new("${endpoint}", ["a", "", "b", "c", "d", "e", "f"]).is_err());
    }

    #[test]
    fn endpoints() {
        assert!(valid_endpoint("urn:imei:123"));
        for bad in ["", "a/b", "a+", "#", "a\0"] {
            assert!(!valid_endpoint(bad));
        }
    }

    #[test]
    fn read_and_echo() {
        let c = cmd(json!({"requestID": 7, "cacheID": 3, "msgType": "read", "data": {"path": "/3/0/0"}})).unwrap();
        assert_eq!(
            c.operation,
            Operation::Read {
                path: "/3/0/0".parse().unwrap()
            }
        );
        assert_eq!(c.req_path, "/3/0/0");
        let r = response(
            &c.echo,
            &c.req_path,
            ResponseType::Content,
            Some(json!([{"path": "/3/0/0", "value": "ACME"}])),
            None,
        );
        assert_eq!(
            r,
            json!({"requestID": 7, "cacheID": 3, "msgType": "read", "data": {"reqPath": "/3/0/0", "code": "2.05", "codeMsg": "content", "content": [{"path": "/3/0/0", "value": "ACME"}]}})
        );
    }

    #[test]
    fn writes() {
        let c = cmd(
            json!({"reqID": "1", "msgType": "write", "data": {"path": "/3/0/13", "type": "Time", "value": 1600000000}}),
        )
        .unwrap();
        assert_eq!(
            c.operation,
            Operation::Write {
                path: "/3/0/13".parse().unwrap(),
                mode: WriteMode::Replace,
                content: vec![("/3/0/13".parse().unwrap(), Value::Time(1_600_000_000))]
            }
        );
        // Typed by the registry (/1/0/1 lifetime is an unsigned integer since Server object 1.2,
        // /1/0/3 an integer) without "type"; relative paths.
        let c = cmd(json!({"msgType": "write", "data": {"basePath": "/1/0", "content": [{"path": "1", "value": "300"}, {"path": "/1/0/3", "value": 10}]}})).unwrap();
        assert_eq!(
            c.operation,
            Operation::Write {
                path: "/1/0".parse().unwrap(),
                mode: WriteMode::PartialUpdate,
                content: vec![
                    ("/1/0/1".parse().unwrap(), Value::UnsignedInteger(300)),
                    ("/1/0/3".parse().unwrap(), Value::Integer(10))
                ]
            }
        );
        assert_eq!(c.req_path, "/1/0");
        let e =
            cmd(json!({"msgType": "write", "data": {"basePath": "/1/0", "content": [{"path": "/3/0/1", "value": 1}]}}))
                .unwrap_err();
        assert!(e.reason.contains("not under"), "{}", e.reason);
        let e = cmd(json!({"msgType": "write", "data": {"path": "/1/0/1", "value": "abc"}})).unwrap_err();
        assert!(e.reason.contains("/1/0/1"), "{}", e.reason);
    }

    #[test]
    fn execute_create_delete_attr_discover_observe() {
        let c = cmd(json!({"msgType": "execute", "data": {"path": "/3/0/4", "args": "0='a'"}})).unwrap();
        assert!(matches!(c.operation, Operation::Execute { ref args, .. } if args.to_string() == "0='a'"));
        let c = cmd(json!({"msgType": "create", "data": {"basePath": "/3303", "content": [{"path": "/3303/1/5700", "value": 21.5}]}})).unwrap();
        assert!(matches!(c.operation, Operation::Create { ref path, .. } if path.to_string() == "/3303"));
        let c = cmd(json!({"msgType": "delete", "data": {"path": "/3303/1"}})).unwrap();
        assert_eq!(
            c.operation,
            Operation::Delete {
                path: "/3303/1".parse().unwrap()
            }
        );
        let c = cmd(json!({"msgType": "write-attr", "data": {"path": "/3/0/9", "pmin": "1", "pmax": 5, "gt": 2.5}}))
            .unwrap();
        let Operation::WriteAttributes { attributes, .. } = c.operation else {
            panic!()
        };
        assert_eq!(
            (attributes.pmin, attributes.pmax, attributes.gt),
            (Some(1), Some(5), Some(2.5))
        );
        let c = cmd(json!({"msgType": "write-attr", "data": {"path": "/3/0/9", "attributes": {"st": "0.5"}}})).unwrap();
        assert!(matches!(c.operation, Operation::WriteAttributes { ref attributes, .. } if attributes.st == Some(0.5)));
        assert!(cmd(json!({"msgType": "write-attr", "data": {"path": "/3/0/9"}})).is_err());
        let c = cmd(json!({"msgType": "discover", "data": {"path": "/3/0?x=1"}})).unwrap();
        assert_eq!((c.operation.name(), c.req_path.as_str()), ("discover", "/3/0"));
        let c = cmd(json!({"msgType": "observe", "data": {"path": "/3303/0/5700"}})).unwrap();
        assert_eq!(c.operation.name(), "observe");
        let c = cmd(json!({"msgType": "cancel-observe", "data": {"path": "/3303/0/5700"}})).unwrap();
        assert_eq!(c.operation.name(), "cancel-observe");
        let c = cmd(json!({"msgType": "read-composite", "data": {"paths": ["/3/0/0", "/3303/0/5700"]}})).unwrap();
        assert_eq!(
            (c.operation.name(), c.req_path.as_str()),
            ("read-composite", "/3/0/0,/3303/0/5700")
        );
    }

    #[test]
    fn bad_commands_keep_what_can_be_echoed() {
        let e = parse_command(b"nope", &reg()).unwrap_err();
        assert!(e.echo.is_empty() && e.reason.contains("not JSON"));
        let e = cmd(json!({"requestID": 1, "msgType": "frobnicate", "data": {"path": "/3/0"}})).unwrap_err();
        assert_eq!(
            (e.echo.get("requestID"), e.req_path.as_str()),
            (Some(&json!(1)), "/3/0")
        );
        assert!(cmd(json!({"requestID": 1, "data": {"path": "/3/0"}})).is_err());
        assert!(cmd(json!({"msgType": "read"})).is_err());
        assert!(cmd(json!({"msgType": "read", "data": {"path": "/70000"}})).is_err());
        assert!(cmd(json!({"msgType": "execute", "data": {"path": "/3/0/4", "args": 5}})).is_err());
        assert!(cmd(json!({"msgType": "write", "data": {"path": "/3/0/1", "type": "Bogus", "value": 1}})).is_err());
        assert!(cmd(json!([1])).is_err());
    }

    #[test]
    fn events() {
        let r = Registration::parse(
            &["ep=dev1", "lt=300", "lwm2m=1.1", "b=UQ"],
            b"</1/0>,</3/0>,</3303/0>",
            &Default::default(),
        )
        .unwrap();
        assert_eq!(
            registration_event("register", &r),
            json!({"msgType": "register", "data": {"ep": "dev1", "lt": 300, "lwm2m": "1.1", "b": "UQ", "alternatePath": "/", "objectList": ["/1/0", "/3/0", "/3303/0"]}})
        );
        let n = notify_event(
            &Map::from_iter([
                ("requestID".to_string(), json!(5)),
                ("msgType".to_string(), json!("observe")),
            ]),
            "/3303/0/5700",
            2,
            json!([]),
        );
        assert_eq!(n["msgType"], "notify");
        assert_eq!(n["seqNum"], 2);
        assert_eq!(n["data"]["code"], "2.05");
        assert_eq!(deregistration_event("dev1", "expired")["data"]["reason"], "expired");
        assert_eq!(
            discover_content(b"</3/0>;dim=8,</3/0/0>, </3/0/1>", 16).unwrap(),
            json!(["</3/0>;dim=8", "</3/0/0>", "</3/0/1>"])
        );
    }
}

#[cfg(test)]
mod proptests {
    #![allow(clippy::unwrap_used)]
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;

    fn json_value() -> impl Strategy<Value = Json> {
        let leaf = prop_oneof![
            Just(Json::Null),
            any::<bool>().prop_map(Json::from),
            any::<i64>().prop_map(Json::from),
            any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map_or(Json::Null, Json::Number)),
            "[/0-9a-z='?, ]{0,12}".prop_map(Json::from),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Json::Array),
                prop::collection::btree_map(
                    prop_oneof![
                        Just("path".to_string()),
                        Just("basePath".to_string()),
                        Just("value".to_string()),
                        Just("type".to_string()),
                        Just("content".to_string()),
                        Just("args".to_string()),
                        Just("paths".to_string()),
                        Just("pmin".to_string()),
                        "[a-z]{1,6}",
                    ],
                    inner,
                    0..5
                )
                .prop_map(|m| Json::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        /// Any bytes: a command or an error with what could be echoed, never a panic.
        #[test]
        fn arbitrary_bytes_never_panic(data in prop::collection::vec(any::<u8>(), 0..256)) {
            let _ = parse_command(&data, &Registry::core());
        }

        /// Command-shaped JSON of any content: parses or is refused; what parses builds a
        /// request or a typed error, and every outcome has a response body with the echo.
        #[test]
        fn command_shaped_json_is_handled(
            msg_type in prop_oneof![
                Just("read"), Just("write"), Just("execute"), Just("create"), Just("delete"),
                Just("discover"), Just("write-attr"), Just("observe"), Just("cancel-observe"),
                Just("read-composite"), Just("write-composite"), Just("bogus")
            ],
            data in json_value(),
            id in any::<u32>(),
        ) {
            let cmd = json!({"requestID": id, "msgType": msg_type, "data": data});
            let registry = Registry::core();
            let body = match parse_command(cmd.to_string().as_bytes(), &registry) {
                Ok(c) => {
                    let _ = c.operation.to_request(None, unigate_lwm2m::ContentFormat::Tlv, None);
                    let _ = c.operation.to_request(Some("/lwm2m"), unigate_lwm2m::ContentFormat::SenmlCbor, None);
                    response(&c.echo, &c.req_path, ResponseType::Content, None, None)
                }
                Err(e) => response(&e.echo, &e.req_path, ResponseType::BadRequest, None, Some(&e.reason)),
            };
            prop_assert_eq!(&body["requestID"], &json!(id));
            prop_assert_eq!(&body["msgType"], &json!(msg_type));
        }

        /// A read of any valid path names that path back.
        #[test]
        fn reads_keep_their_path(ids in prop::collection::vec(0u16..65535, 1..=4)) {
            let path = Path::new(&ids).unwrap();
            let c = parse_command(json!({"msgType": "read", "data": {"path": path.to_string()}}).to_string().as_bytes(), &Registry::core()).unwrap();
            prop_assert_eq!(c.operation, Operation::Read { path });
            prop_assert_eq!(c.req_path, path.to_string());
        }
    }
}
