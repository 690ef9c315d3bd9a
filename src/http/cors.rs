//! Browser pages from other origins: CORS (`http.cors_origins`) and the refusal of requests from
//! origins not listed.
//!
//! A browser adds `Origin` to cross-origin requests (and to same-origin ones that are not GET or
//! HEAD). Requests without it (curl, devices, servers) and requests from the listener's own
//! origin pass unchanged. A request from a listed origin passes and its answer carries
//! `Access-Control-Allow-Origin`; a preflight (`OPTIONS` with `Access-Control-Request-Method`)
//! from a listed origin is answered 204 here. Any other origin gets 403 `ORIGIN_NOT_ALLOWED`,
//! before authentication: a page elsewhere could otherwise use credentials the browser keeps
//! for this server (a Basic login) to publish or open a stream — the browser would only hide
//! the answer from it.
//!
//! `GET /mqtt` (MQTT over WebSocket) is not checked: its credentials travel inside CONNECT, so a
//! page anywhere can do nothing there that any other client could not, and web apps commonly
//! connect to a broker on another origin.

use actix_web::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use actix_web::http::{Method, StatusCode};
use actix_web::{HttpResponse, ResponseError};

use super::error::ApiError;

/// Seconds a browser may cache a preflight answer.
const PREFLIGHT_MAX_AGE: &str = "600";
/// Methods the API answers (the preflight's `Access-Control-Allow-Methods`).
const METHODS: &str = "GET, HEAD, POST, PUT, DELETE";

/// The origins of `http.cors_origins`, normalised.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Origins {
    /// `"*"`: every origin, without credentials (`Access-Control-Allow-Origin: *`).
    any: bool,
    /// `scheme://host[:port]`, lower case, default port left out.
    listed: Vec<String>,
}

impl Origins {
    /// Parses the configured list; the error names the first bad entry.
    pub fn parse(entries: &[String]) -> Result<Origins, String> {
        let mut origins = Origins::default();
        for e in entries {
            if e == "*" {
                origins.any = true;
            } else {
                let o = normalise(e).ok_or_else(|| {
                    format!("{e:?} is not \"*\" or an origin such as \"https://app.example.com\" (scheme, host, optional port; no path)")
                })?;
                origins.listed.push(o);
            }
        }
        Ok(origins)
    }
}

/// What to do with a request.
#[derive(Debug)]
pub enum Decision {
    /// No `Origin`, the listener's own origin, or `/mqtt`: pass unchanged.
    Pass,
    /// A listed origin: pass, and add these headers to the answer.
    Allow(Vec<(HeaderName, HeaderValue)>),
    /// Answer here: a preflight's 204, or 403.
    Answer(HttpResponse),
}

/// Decides for a request with `method`, `path` and `headers`.
pub fn decide(origins: &Origins, method: &Method, path: &str, headers: &HeaderMap) -> Decision {
    if path == "/mqtt" {
        return Decision::Pass;
    }
    let Some(raw) = headers.get(header::ORIGIN) else {
        return Decision::Pass;
    };
    // Not visible ASCII: no origin a browser sends, and none that can be listed.
    let origin = raw.to_str().unwrap_or_default();
    let normal = normalise(origin);
    if normal.as_deref().is_some_and(|o| same_origin(o, headers)) {
        return Decision::Pass;
    }
    let listed = normal.as_ref().is_some_and(|o| origins.listed.contains(o));
    if !listed && !origins.any {
        return Decision::Answer(
            ApiError {
                status: StatusCode::FORBIDDEN,
                code: "ORIGIN_NOT_ALLOWED",
                message: format!(
                    "requests from pages at {:?} are not allowed here (http.cors_origins)",
                    String::from_utf8_lossy(raw.as_bytes())
                ),
            }
            .error_response(),
        );
    }
    // A listed origin is echoed and may send credentials; "*" allows any page, without them.
    let mut allow = vec![(header::VARY, HeaderValue::from_static("Origin"))];
    match HeaderValue::from_str(origin) {
        Ok(v) if listed => {
            allow.push((header::ACCESS_CONTROL_ALLOW_ORIGIN, v));
            allow.push((
                header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            ));
        }
        _ => allow.push((header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"))),
    }
    if method == Method::OPTIONS && headers.contains_key(header::ACCESS_CONTROL_REQUEST_METHOD) {
        let mut answer = HttpResponse::NoContent();
        for (k, v) in allow {
            answer.insert_header((k, v));
        }
        answer.insert_header((header::ACCESS_CONTROL_ALLOW_METHODS, METHODS));
        if let Some(asked) = headers.get(header::ACCESS_CONTROL_REQUEST_HEADERS) {
            answer.insert_header((header::ACCESS_CONTROL_ALLOW_HEADERS, asked.clone()));
        }
        answer.insert_header((header::ACCESS_CONTROL_MAX_AGE, PREFLIGHT_MAX_AGE));
        return Decision::Answer(answer.finish());
    }
    Decision::Allow(allow)
}

/// `scheme://host[:port]` of an origin, lower case, without the scheme's default port; `None`
/// for anything else (a path, user info, `null`, another scheme).
fn normalise(origin: &str) -> Option<String> {
    let origin = origin.trim().to_ascii_lowercase();
    let (scheme, authority) = origin.split_once("://")?;
    let default_port = match scheme {
        "http" => ":80",
        "https" => ":443",
        _ => return None,
    };
    let authority = authority.strip_suffix('/').unwrap_or(authority);
    if authority.is_empty() || authority.contains(['/', '?', '#', '@', ' ']) {
        return None;
    }
    let authority = authority.strip_suffix(default_port).unwrap_or(authority);
    if authority.is_empty() {
        return None;
    }
    Some(format!("{scheme}://{authority}"))
}

/// Whether a normalised origin names the server the request was sent to: the same host and
/// port as `Host` (`:authority` for HTTP/2, which actix presents as `Host`). Forwarding headers
/// are not trusted here: a page can set `X-Forwarded-Host` itself.
fn same_origin(origin: &str, headers: &HeaderMap) -> bool {
    let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) else {
        return false;
    };
    let host = host.trim().to_ascii_lowercase();
    let Some((scheme, authority)) = origin.split_once("://") else {
        return false;
    };
    let default_port = if scheme == "https" { ":443" } else { ":80" };
    host.strip_suffix(default_port).unwrap_or(&host) == authority
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn headers(list: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in list {
            h.insert(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    fn get(h: &[(HeaderName, HeaderValue)], name: HeaderName) -> Option<&str> {
        h.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_str().unwrap())
    }

    proptest::proptest! {
        /// Any Origin and Host a client sends: a decision, never a panic; normalising is
        /// idempotent; a page whose origin is neither listed nor the listener's own is refused
        /// everywhere but /mqtt.
        #[test]
        fn any_header_values_get_a_decision(origin in "\\PC{0,40}", host in "\\PC{0,30}", listed in proptest::bool::ANY) {
            if let Some(n) = normalise(&origin) {
                proptest::prop_assert_eq!(normalise(&n), Some(n.clone()));
            }
            let (Ok(o), Ok(h)) = (HeaderValue::from_str(&origin), HeaderValue::from_str(&host)) else {
                return Ok(());
            };
            let mut map = HeaderMap::new();
            map.insert(header::ORIGIN, o);
            map.insert(header::HOST, h);
            let origins = match normalise(&origin) {
                Some(n) if listed => Origins { any: false, listed: vec![n] },
                _ => Origins::default(),
            };
            let own = normalise(&origin).is_some_and(|n| same_origin(&n, &map));
            let d = decide(&origins, &Method::POST, "/api/v1/publish", &map);
            match d {
                Decision::Pass => proptest::prop_assert!(own),
                Decision::Allow(_) => proptest::prop_assert!(listed && !own),
                Decision::Answer(r) => {
                    proptest::prop_assert_eq!(r.status(), StatusCode::FORBIDDEN);
                    proptest::prop_assert!(!own && (!listed || normalise(&origin).is_none()));
                }
            }
            proptest::prop_assert!(matches!(decide(&origins, &Method::GET, "/mqtt", &map), Decision::Pass));
        }
    }

    #[test]
    fn origins_are_normalised_and_checked() {
        assert_eq!(
            normalise("HTTPS://App.Example.com:443").as_deref(),
            Some("https://app.example.com")
        );
        assert_eq!(normalise("http://a.test:80/").as_deref(), Some("http://a.test"));
        assert_eq!(normalise("http://a.test:8080").as_deref(), Some("http://a.test:8080"));
        assert_eq!(normalise("http://[::1]:8080").as_deref(), Some("http://[::1]:8080"));
        for bad in [
            "null",
            "a.test",
            "ftp://a.test",
            "http://",
            "http://a.test/x",
            "http://u@a.test",
            "http://:80",
        ] {
            assert_eq!(normalise(bad), None, "{bad}");
        }
        let o = Origins::parse(&["*".into(), "https://App.example.com".into()]).unwrap();
        assert!(o.any);
        assert_eq!(o.listed, vec!["https://app.example.com".to_string()]);
        let e = Origins::parse(&["https://a.test/path".into()]).unwrap_err();
        assert!(e.contains("\"https://a.test/path\""), "{e}");
    }

    #[test]
    fn no_origin_own_origin_and_mqtt_pass() {
        let none = Origins::default();
        let post = Method::POST;
        let pass = |m: &Method, path, h: &HeaderMap| matches!(decide(&none, m, path, h), Decision::Pass);
        assert!(pass(&post, "/api/v1/publish", &headers(&[])));
        let own = headers(&[("origin", "http://127.0.0.1:8080"), ("host", "127.0.0.1:8080")]);
        assert!(pass(&post, "/api/v1/publish", &own));
        let own_default = headers(&[("origin", "https://broker.example"), ("host", "broker.example:443")]);
        assert!(pass(&post, "/api/v1/publish", &own_default));
        let foreign = headers(&[("origin", "http://evil.test"), ("host", "127.0.0.1:8080")]);
        assert!(pass(&Method::GET, "/mqtt", &foreign));
        assert!(!pass(&Method::GET, "/api/v1/ws", &foreign));
    }

    #[test]
    fn other_origins_are_refused_unless_listed() {
        let o = Origins::parse(&["http://app.test".into()]).unwrap();
        let h = |origin| headers(&[("origin", origin), ("host", "127.0.0.1:8080")]);
        // Another port of the same host is another origin.
        for refused in ["http://evil.test", "http://127.0.0.1:9999", "null", "https://app.test"] {
            match decide(&o, &Method::GET, "/topics/a", &h(refused)) {
                Decision::Answer(r) => assert_eq!(r.status(), StatusCode::FORBIDDEN, "{refused}"),
                other => panic!("{refused}: {other:?}"),
            }
        }
        let Decision::Allow(allow) = decide(&o, &Method::POST, "/api/v1/publish", &h("http://APP.test")) else {
            panic!("a listed origin passes")
        };
        assert_eq!(
            get(&allow, header::ACCESS_CONTROL_ALLOW_ORIGIN),
            Some("http://APP.test")
        );
        assert_eq!(get(&allow, header::ACCESS_CONTROL_ALLOW_CREDENTIALS), Some("true"));
        assert_eq!(get(&allow, header::VARY), Some("Origin"));
    }

    #[test]
    fn any_origin_without_credentials() {
        let o = Origins::parse(&["*".into()]).unwrap();
        let h = headers(&[("origin", "http://anywhere.test"), ("host", "127.0.0.1:8080")]);
        let Decision::Allow(allow) = decide(&o, &Method::GET, "/topics/a", &h) else {
            panic!("\"*\" lets every origin in")
        };
        assert_eq!(get(&allow, header::ACCESS_CONTROL_ALLOW_ORIGIN), Some("*"));
        assert_eq!(get(&allow, header::ACCESS_CONTROL_ALLOW_CREDENTIALS), None);
    }

    #[test]
    fn preflights_of_listed_origins_are_answered() {
        let o = Origins::parse(&["http://app.test".into()]).unwrap();
        let h = headers(&[
            ("origin", "http://app.test"),
            ("host", "127.0.0.1:8080"),
            ("access-control-request-method", "POST"),
            ("access-control-request-headers", "authorization, content-type"),
        ]);
        let Decision::Answer(r) = decide(&o, &Method::OPTIONS, "/api/v1/publish", &h) else {
            panic!("a preflight is answered here")
        };
        assert_eq!(r.status(), StatusCode::NO_CONTENT);
        let v = |n: HeaderName| r.headers().get(n).map(|v| v.to_str().unwrap().to_owned());
        assert_eq!(
            v(header::ACCESS_CONTROL_ALLOW_ORIGIN).as_deref(),
            Some("http://app.test")
        );
        assert_eq!(v(header::ACCESS_CONTROL_ALLOW_METHODS).as_deref(), Some(METHODS));
        assert_eq!(
            v(header::ACCESS_CONTROL_ALLOW_HEADERS).as_deref(),
            Some("authorization, content-type")
        );
        assert_eq!(v(header::ACCESS_CONTROL_MAX_AGE).as_deref(), Some("600"));
        // An OPTIONS without Access-Control-Request-Method is no preflight: it goes on (405).
        let plain = headers(&[("origin", "http://app.test"), ("host", "127.0.0.1:8080")]);
        assert!(matches!(
            decide(&o, &Method::OPTIONS, "/api/v1/publish", &plain),
            Decision::Allow(_)
        ));
    }
}
