//! `GET /api/v1/openapi.json`: an OpenAPI 3.1 description of the HTTP API, generated with
//! utoipa from the management handlers' annotations, plus the public routes, described here
//! (their handlers live in other modules and take bodies that are not plain serde structs).

use std::sync::OnceLock;

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Serialize;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

use super::{clients, guard, retained, system, Access};
use crate::http::error::ApiError;
use crate::http::HttpShared;

/// The document.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "unigate HTTP API",
        description = "Publishing, Server-Sent Events and retained reads, health and metrics, and the \
                       management API. Errors are JSON `{\"code\": \"…\", \"message\": \"…\"}`."
    ),
    paths(
        public::health,
        public::ready,
        public::metrics,
        public::publish,
        public::publish_bulk,
        public::topic_publish,
        public::topic_put,
        public::topic_read,
        clients::list,
        clients::show,
        clients::kick,
        clients::subscriptions,
        clients::subscribe,
        clients::unsubscribe,
        clients::all_subscriptions,
        retained::list,
        retained::show,
        retained::delete,
        system::listeners,
        system::stats,
        system::auth,
        system::reload,
        crate::http::lwm2m::list,
        crate::http::lwm2m::show,
        crate::http::lwm2m::command,
        crate::http::lwm2m::read_like,
        crate::http::lwm2m::operation,
        crate::http::lwm2m::notifications,
        document,
    ),
    components(schemas(ErrorBody)),
    modifiers(&Security, &Unavailable),
    tags(
        (name = "publish", description = "Publishing and reading topics"),
        (name = "health", description = "Health, readiness, Prometheus metrics (no credentials)"),
        (name = "clients", description = "Clients (sessions) and their subscriptions"),
        (name = "subscriptions", description = "All subscriptions"),
        (name = "retained", description = "Retained messages"),
        (name = "system", description = "Listeners and statistics"),
        (name = "auth", description = "Auth configuration and reload"),
        (name = "lwm2m", description = "LwM2M devices: registrations, commands, notifications"),
    )
)]
pub struct ApiDoc;

/// The error body of every route.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// A stable code: `BAD_REQUEST`, `NOT_AUTHENTICATED`, `NOT_AUTHORIZED`, `FORBIDDEN`,
    /// `NOT_FOUND`, …
    pub code: String,
    /// What went wrong, for people.
    pub message: String,
}

/// Declares the `bearer` and `basic` schemes the paths refer to.
struct Security;

impl Modify for Security {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme("bearer", SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)));
        components.add_security_scheme("basic", SecurityScheme::Http(Http::new(HttpAuthScheme::Basic)));
    }
}

/// Every operation that authenticates may answer 503: the identity provider is unreachable,
/// or the server is shutting down.
struct Unavailable;

impl Modify for Unavailable {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
        for item in doc.paths.paths.values_mut() {
            for op in [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ]
            .into_iter()
            .flatten()
            {
                let authenticates = op.security.as_ref().is_none_or(|s| !s.is_empty());
                if authenticates && !op.responses.responses.contains_key("503") {
                    let response = ResponseBuilder::new()
                        .description("Identity provider unavailable, or shutting down")
                        .content(
                            "application/json",
                            ContentBuilder::new()
                                .schema(Some(Ref::from_schema_name("ErrorBody")))
                                .build(),
                        )
                        .build();
                    op.responses.responses.insert("503".into(), response.into());
                }
            }
        }
    }
}

/// The document as JSON, built once.
pub fn json() -> &'static str {
    static DOC: OnceLock<String> = OnceLock::new();
    DOC.get_or_init(|| ApiDoc::openapi().to_json().unwrap_or_else(|_| "{}".into()))
}

/// `GET /api/v1/openapi.json`.
#[utoipa::path(get, operation_id = "openapi", path = "/api/v1/openapi.json", tag = "system",
    responses((status = 200, description = "This document", content_type = "application/json"),
        (status = 401, description = "Not authenticated", body = ErrorBody),
        (status = 403, description = "Not allowed", body = ErrorBody)),
    security(("bearer" = []), ("basic" = [])))]
pub async fn document(req: HttpRequest, shared: web::Data<HttpShared>) -> Result<HttpResponse, ApiError> {
    guard(&req, &shared, Access::Read).await?;
    Ok(HttpResponse::Ok().content_type("application/json").body(json()))
}

/// Descriptions of the routes of `http::mod`, `http::publish` and `http::sse`: utoipa needs an
/// item to hang a path on, and these bodies stand for those handlers (never called).
#[allow(dead_code)]
mod public {
    use serde::Serialize;

    use super::ErrorBody;
    use utoipa::ToSchema;

    /// `POST /api/v1/publish` body.
    #[derive(Serialize, ToSchema)]
    #[serde(deny_unknown_fields)]
    pub struct PublishRequest {
        /// The topic name: not empty, no wildcards (`+`, `#`), no NUL.
        #[schema(min_length = 1, pattern = "^[^+#\\x00]+$")]
        topic: String,
        /// The payload, written per `encoding`.
        payload: Option<String>,
        /// `plain` (default) or `base64`.
        encoding: Option<Encoding>,
        /// 0, 1 or 2 (default 0).
        #[schema(minimum = 0, maximum = 2)]
        qos: Option<u8>,
        /// Retain flag.
        retain: Option<bool>,
        /// MQTT 5 properties: `content_type`, `payload_format_indicator`, `message_expiry`,
        /// `response_topic`, `correlation_data` (per `encoding`), `user_properties` (an object
        /// or a list of pairs).
        #[schema(value_type = Object)]
        properties: Option<serde_json::Value>,
    }

    /// How `payload` (and `correlation_data`) are written.
    #[derive(Serialize, ToSchema)]
    #[serde(rename_all = "lowercase")]
    pub enum Encoding {
        /// UTF-8 text.
        Plain,
        /// Base64 (standard alphabet, padded).
        Base64,
    }

    /// A routed message.
    #[derive(Serialize, ToSchema)]
    pub struct Published {
        /// The message id.
        id: String,
        /// Sessions it was handed to.
        routed: usize,
    }

    #[utoipa::path(get, operation_id = "health", path = "/health", tag = "health", security(),
        responses((status = 200, description = "`{\"status\": \"ok\"}`")))]
    pub fn health() {}

    #[utoipa::path(get, operation_id = "ready", path = "/ready", tag = "health", security(),
        responses((status = 200, description = "`{\"status\": \"ready\"}`"),
            (status = 503, description = "Shutting down", body = ErrorBody)))]
    pub fn ready() {}

    #[utoipa::path(get, operation_id = "metrics", path = "/metrics", tag = "health", security(),
        responses((status = 200, description = "Prometheus text exposition format 0.0.4",
            content_type = "text/plain")))]
    pub fn metrics() {}

    #[utoipa::path(post, operation_id = "publish", path = "/api/v1/publish",
        tag = "publish", request_body = PublishRequest,
        params(("clientid" = Option<String>, Query,
            description = "The client id the request acts as (ACL `${clientid}`)")),
        responses((status = 200, body = Published),
            (status = 400, description = "Bad request", body = ErrorBody),
            (status = 401, description = "Not authenticated", body = ErrorBody),
            (status = 403, description = "Not allowed", body = ErrorBody),
            (status = 413, description = "Body too large", body = ErrorBody),
            (status = 415, description = "Unsupported media type", body = ErrorBody)),
        security(("bearer" = []), ("basic" = [])))]
    pub fn publish() {}

    #[utoipa::path(post, operation_id = "publishBulk", path = "/api/v1/publish/bulk",
        tag = "publish", request_body = Vec<PublishRequest>,
        params(("clientid" = Option<String>, Query, description = "The client id the request acts as")),
        responses((status = 200, description = "One result per message, in order: `{id, routed}` or `{code, message}`"),
            (status = 400, description = "Bad request", body = ErrorBody),
            (status = 401, description = "Not authenticated", body = ErrorBody),
            (status = 413, description = "Body too large", body = ErrorBody),
            (status = 415, description = "Unsupported media type", body = ErrorBody)),
        security(("bearer" = []), ("basic" = [])))]
    pub fn publish_bulk() {}

    #[utoipa::path(post, operation_id = "publishRaw", path = "/topics/{topic}", tag = "publish",
        request_body(content = Vec<u8>,
            description = "The payload; its Content-Type becomes the content type",
            content_type = "application/octet-stream"),
        params(("topic" = String, Path, description = "The topic name; may contain `/`"),
            ("qos" = Option<u8>, Query, minimum = 0, maximum = 2, description = "0 (default), 1 or 2"),
            ("retain" = Option<bool>, Query, description = "Retain flag"),
            ("clientid" = Option<String>, Query, description = "The client id the request acts as")),
        responses((status = 200, body = Published),
            (status = 400, description = "Bad request", body = ErrorBody),
            (status = 401, description = "Not authenticated", body = ErrorBody),
            (status = 403, description = "Not allowed", body = ErrorBody),
            (status = 413, description = "Body too large", body = ErrorBody)),
        security(("bearer" = []), ("basic" = [])))]
    pub fn topic_publish() {}

    /// The same as POST.
    #[utoipa::path(put, operation_id = "publishRawPut", path = "/topics/{topic}", tag = "publish",
        request_body(content = Vec<u8>,
            description = "The payload; its Content-Type becomes the content type",
            content_type = "application/octet-stream"),
        params(("topic" = String, Path, description = "The topic name; may contain `/`"),
            ("qos" = Option<u8>, Query, minimum = 0, maximum = 2, description = "0 (default), 1 or 2"),
            ("retain" = Option<bool>, Query, description = "Retain flag"),
            ("clientid" = Option<String>, Query, description = "The client id the request acts as")),
        responses((status = 200, body = Published),
            (status = 400, description = "Bad request", body = ErrorBody),
            (status = 401, description = "Not authenticated", body = ErrorBody),
            (status = 403, description = "Not allowed", body = ErrorBody),
            (status = 413, description = "Body too large", body = ErrorBody)),
        security(("bearer" = []), ("basic" = [])))]
    pub fn topic_put() {}

    #[utoipa::path(get, operation_id = "readTopic", path = "/topics/{topic}", tag = "publish",
        params(("topic" = String, Path, description = "A topic filter (SSE) or a topic name (retained read)"),
            ("clientid" = Option<String>, Query, description = "Makes an SSE stream resumable (`Last-Event-ID`)"),
            ("qos" = Option<u8>, Query, minimum = 0, maximum = 2, description = "SSE subscription QoS (default 1)"),
            ("rh" = Option<u8>, Query, minimum = 0, maximum = 2, description = "SSE retain handling: 0 (default), 1, 2")),
        responses((status = 200, description = "With `Accept: text/event-stream`: a stream of messages as \
            Server-Sent Events; otherwise the retained message as JSON"),
            (status = 400, description = "Bad query, topic or topic filter", body = ErrorBody),
            (status = 404, description = "Nothing retained there", body = ErrorBody),
            (status = 401, description = "Not authenticated", body = ErrorBody),
            (status = 403, description = "Not allowed", body = ErrorBody)),
        security(("bearer" = []), ("basic" = [])))]
    pub fn topic_read() {}
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn document_is_openapi_3_with_security_schemes() {
        let doc: serde_json::Value = serde_json::from_str(json()).unwrap();
        assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
        assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
        assert!(doc["paths"]["/topics/{topic}"]["put"].is_object());
        assert!(doc["paths"]["/topics/{topic}"]["post"].is_object());
        let mut ids: Vec<&str> = doc["paths"]
            .as_object()
            .unwrap()
            .values()
            .flat_map(|item| item.as_object().unwrap().values())
            .map(|op| op["operationId"].as_str().unwrap())
            .collect();
        let n = ids.len();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), n, "operation ids are unique");
        // Each parameter once, though utoipa also sees the handlers' `web::Path` arguments.
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                let names: Vec<&str> = op["parameters"]
                    .as_array()
                    .map(|ps| ps.iter().map(|p| p["name"].as_str().unwrap()).collect())
                    .unwrap_or_default();
                let mut unique = names.clone();
                unique.sort_unstable();
                unique.dedup();
                assert_eq!(unique.len(), names.len(), "{method} {path}: {names:?}");
                for braced in path.split('{').skip(1) {
                    let name = braced.split('}').next().unwrap();
                    assert!(names.contains(&name), "{method} {path}: {name} not in {names:?}");
                }
            }
        }
        eprintln!(
            "{}",
            serde_json::to_string_pretty(&doc["paths"]["/api/v1/clients/{clientid}"]).unwrap()
        );
    }
}
