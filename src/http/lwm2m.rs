//! `/api/v1/lwm2m`: the LwM2M devices for operators — list registrations, run any command of
//! the MQTT interface (`lwm2m/{ep}/dn`) and get its answer as the HTTP response, stream a
//! device's observation notifications as Server-Sent Events.
//!
//! Commands take the JSON of the MQTT interface, and their answers are its `up/resp` JSON (also
//! published there, so MQTT integrations see every exchange). The HTTP status follows the CoAP
//! code of the answer (RFC 8075 §7: 2.xx → 200, 4.04 → 404, 5.04 → 504 …); failures before a
//! device is reached (unknown endpoint, malformed command) are the API's JSON errors.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::{json, Value as Json};
use unigate_translators::lwm2m::{self as tr, Uplink};
use utoipa::{IntoParams, ToSchema};

use super::error::ApiError;
use super::mgmt::openapi::ErrorBody;
use super::mgmt::{guard, query, Access, Page, Paging};
use super::HttpShared;
use crate::lwm2m::listener::{ListDevices, Reply, RunCommand};

/// Registers the routes.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/api/v1/lwm2m/clients", web::get().to(list))
        .route("/api/v1/lwm2m/clients/{ep}", web::get().to(show))
        .route("/api/v1/lwm2m/clients/{ep}/notifications", web::get().to(notifications))
        .route("/api/v1/lwm2m/clients/{ep}/commands", web::post().to(command))
        .route("/api/v1/lwm2m/clients/{ep}/{op}", web::get().to(read_like))
        .route("/api/v1/lwm2m/clients/{ep}/{op}", web::post().to(operation));
}

/// Query of `GET /api/v1/lwm2m/clients`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct DevicesQuery {
    /// Page number, from 1.
    pub page: Option<usize>,
    /// Entries per page (at most 1000; default 100).
    pub limit: Option<usize>,
    /// Only endpoint names containing this text.
    pub like: Option<String>,
}

/// A registered device, as its register event shows it plus where and since when.
#[derive(Debug, serde::Serialize, ToSchema)]
#[schema(value_type = Object)]
pub struct DeviceEntry(serde_json::Value);

async fn devices(shared: &HttpShared, ep: Option<&str>) -> Vec<Json> {
    let listeners = shared.lwm2m.listeners.lock().clone();
    let mut out = Vec::new();
    for l in listeners {
        if let Ok(v) = l.send(ListDevices(ep.map(str::to_owned))).await {
            out.extend(v);
        }
    }
    out
}

/// Lists registered LwM2M devices.
#[utoipa::path(get, path = "/api/v1/lwm2m/clients", tag = "lwm2m", params(DevicesQuery),
    responses((status = 200, description = "Registered devices", body = Page<DeviceEntry>),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn list(req: HttpRequest, shared: web::Data<HttpShared>) -> Result<HttpResponse, ApiError> {
    guard(&req, &shared, Access::Read).await?;
    let q: DevicesQuery = query(&req)?;
    let paging = Paging::new(q.page, q.limit)?;
    let mut all: Vec<Json> = devices(&shared, None)
        .await
        .into_iter()
        .filter(|d| {
            q.like
                .as_deref()
                .is_none_or(|l| d["ep"].as_str().is_some_and(|ep| ep.contains(l)))
        })
        .collect();
    all.sort_by(|a, b| a["ep"].as_str().cmp(&b["ep"].as_str()));
    Ok(HttpResponse::Ok().json(paging.apply(all.into_iter().map(DeviceEntry).collect())))
}

/// Shows one registered device.
#[utoipa::path(get, path = "/api/v1/lwm2m/clients/{ep}", tag = "lwm2m",
    params(("ep" = String, Path, description = "Endpoint name")),
    responses((status = 200, description = "The registration", body = DeviceEntry),
        (status = 404, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn show(
    req: HttpRequest,
    shared: web::Data<HttpShared>,
    ep: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    guard(&req, &shared, Access::Read).await?;
    let found = devices(&shared, Some(&ep)).await.into_iter().next();
    match found {
        Some(d) => Ok(HttpResponse::Ok().json(d)),
        None => Err(not_registered(&ep)),
    }
}

fn not_registered(ep: &str) -> ApiError {
    ApiError::not_found(format!("no LwM2M device registered as {ep:?}"))
}

/// Runs a command and answers with the device's response.
async fn run(shared: &HttpShared, ep: &str, body: Json) -> Result<HttpResponse, ApiError> {
    let hub = &shared.lwm2m;
    let Some(addr) = hub.devices.get(ep).map(|a| a.clone()) else {
        return Err(not_registered(ep));
    };
    let cmd = tr::parse_command(body.to_string().as_bytes(), &hub.registry)
        .map_err(|e| ApiError::bad_request(format!("invalid command: {}", e.reason)))?;
    let (tx, rx) = tokio::sync::oneshot::channel();
    addr.send(RunCommand {
        ep: ep.to_owned(),
        cmd: Ok(cmd),
        reply: Reply::Http(tx),
    })
    .await
    .map_err(|_| ApiError::unavailable("the LwM2M listener is not running"))?;
    let answer = match tokio::time::timeout(hub.config.http_timeout, rx).await {
        Ok(Ok(a)) => a,
        Ok(Err(_)) => return Err(ApiError::unavailable("the LwM2M listener dropped the command")),
        Err(_) => {
            return Err(ApiError {
                status: StatusCode::GATEWAY_TIMEOUT,
                code: "TIMEOUT",
                message: "the device did not answer in time (the answer will still be published)".into(),
            })
        }
    };
    let status = answer["data"]["code"]
        .as_str()
        .map_or(StatusCode::BAD_GATEWAY, http_status);
    Ok(HttpResponse::build(status).json(answer))
}

/// The HTTP status for a CoAP response code `"c.dd"` (RFC 8075 §7).
pub fn http_status(code: &str) -> StatusCode {
    let Some((class, detail)) = code.split_once('.') else {
        return StatusCode::BAD_GATEWAY;
    };
    match (class, detail.parse::<u16>()) {
        ("2", _) => StatusCode::OK,
        ("4", Ok(2 | 8)) => StatusCode::BAD_REQUEST,
        ("5", Ok(5)) => StatusCode::BAD_GATEWAY,
        ("4", Ok(d)) => StatusCode::from_u16(400 + d).unwrap_or(StatusCode::BAD_REQUEST),
        ("5", Ok(d)) => StatusCode::from_u16(500 + d).unwrap_or(StatusCode::BAD_GATEWAY),
        _ => StatusCode::BAD_GATEWAY,
    }
}

/// Runs a command in the MQTT interface's JSON (`{msgType, data, requestID?}`).
#[utoipa::path(post, path = "/api/v1/lwm2m/clients/{ep}/commands", tag = "lwm2m",
    params(("ep" = String, Path, description = "Endpoint name")),
    request_body(content = Object, description = "A command: {requestID?, msgType, data:{path, value?, type?, args?, basePath?, content?, attributes?}}"),
    responses((status = 200, description = "The device's answer (the up/resp JSON); other statuses follow its CoAP code", body = Object),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 413, body = ErrorBody), (status = 415, body = ErrorBody),
        (status = 504, body = ErrorBody)))]
pub async fn command(
    req: HttpRequest,
    shared: web::Data<HttpShared>,
    ep: web::Path<String>,
    body: web::Json<Json>,
) -> Result<HttpResponse, ApiError> {
    guard(&req, &shared, Access::Change).await?;
    run(&shared, &ep, body.into_inner()).await
}

/// Query of the read-like shortcuts.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct PathQuery {
    /// The LwM2M path, e.g. `/3/0/0`.
    pub path: String,
}

/// `GET …/read?path=` and `GET …/discover?path=`.
#[utoipa::path(get, path = "/api/v1/lwm2m/clients/{ep}/{op}", tag = "lwm2m",
    params(("ep" = String, Path, description = "Endpoint name"), ("op" = String, Path, description = "read or discover"), PathQuery),
    responses((status = 200, description = "The device's answer (the up/resp JSON)", body = Object),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 504, body = ErrorBody)))]
pub async fn read_like(
    req: HttpRequest,
    shared: web::Data<HttpShared>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (ep, op) = path.into_inner();
    if op != "read" && op != "discover" {
        return Err(ApiError::not_found(
            "GET takes read or discover; other operations are POST",
        ));
    }
    guard(&req, &shared, Access::Read).await?;
    let q: PathQuery = query(&req)?;
    run(&shared, &ep, json!({"msgType": op, "data": {"path": q.path}})).await
}

/// `POST …/{msgType}` with the command's `data` as the body.
#[utoipa::path(post, path = "/api/v1/lwm2m/clients/{ep}/{op}", tag = "lwm2m",
    params(("ep" = String, Path, description = "Endpoint name"), ("op" = String, Path, description = "read, write, execute, create, delete, discover, write-attr, observe, cancel-observe, read-composite, observe-composite, write-composite")),
    request_body(content = Object, description = "The command's data: {path, value?, type?, args?, basePath?, content?, …}"),
    responses((status = 200, description = "The device's answer (the up/resp JSON)", body = Object),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 413, body = ErrorBody), (status = 415, body = ErrorBody),
        (status = 504, body = ErrorBody)))]
pub async fn operation(
    req: HttpRequest,
    shared: web::Data<HttpShared>,
    path: web::Path<(String, String)>,
    body: web::Json<Json>,
) -> Result<HttpResponse, ApiError> {
    let (ep, op) = path.into_inner();
    guard(&req, &shared, Access::Change).await?;
    run(&shared, &ep, json!({"msgType": op, "data": body.into_inner()})).await
}

/// A device's observation notifications as Server-Sent Events: the stream of its
/// `up/notify` topic (the listener's auth chain and ACL apply, as for `GET /topics/…`).
#[utoipa::path(get, path = "/api/v1/lwm2m/clients/{ep}/notifications", tag = "lwm2m",
    params(("ep" = String, Path, description = "Endpoint name")),
    responses((status = 200, description = "text/event-stream of notify events", content_type = "text/event-stream", body = String),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 406, description = "the request does not accept text/event-stream", body = ErrorBody)))]
pub async fn notifications(
    req: HttpRequest,
    shared: web::Data<HttpShared>,
    ep: web::Path<String>,
    q: web::Query<super::sse::SseQuery>,
) -> Result<HttpResponse, ApiError> {
    guard(&req, &shared, Access::Read).await?;
    if !super::sse::accepts_event_stream(&req) {
        return Err(ApiError::not_acceptable(
            "this is a stream: ask for Accept: text/event-stream",
        ));
    }
    if !tr::valid_endpoint(&ep) {
        return Err(ApiError::bad_request("invalid endpoint name"));
    }
    let topic = shared
        .lwm2m
        .scheme
        .uplink(&ep, Uplink::Notify)
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    super::sse::get(req, shared, web::Path::from(topic.as_str().to_owned()), q).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_follow_rfc_8075() {
        for (c, s) in [
            ("2.05", 200),
            ("2.04", 200),
            ("4.00", 400),
            ("4.02", 400),
            ("4.04", 404),
            ("4.05", 405),
            ("4.13", 413),
            ("4.15", 415),
            ("5.03", 503),
            ("5.04", 504),
            ("5.05", 502),
            ("x", 502),
        ] {
            assert_eq!(http_status(c).as_u16(), s, "{c}");
        }
    }
}
