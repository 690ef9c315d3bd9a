//! Retained messages: list (with a payload preview), read one, delete one.
//!
//! Payloads are shown as [`unigate_translators::http::message_to_json`] writes them: UTF-8 text
//! as is, anything else in base64.

use std::sync::Arc;

use actix_web::{web, HttpRequest, HttpResponse};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use unigate_pubsub::{Message, Topic, TopicFilter};
use utoipa::{IntoParams, ToSchema};

use super::openapi::ErrorBody;
use super::{guard, query, Access, Page, Paging};
use crate::broker::now_ms;
use crate::http::error::ApiError;
use crate::http::HttpShared;

/// Payload bytes shown per message in a list, unless `preview` says otherwise.
const DEFAULT_PREVIEW: usize = 256;
/// Most payload bytes `preview` may ask for in a list.
const MAX_PREVIEW: usize = 64 * 1024;

/// Query of `GET /api/v1/retained`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct RetainedQuery {
    /// Page number, from 1.
    #[param(minimum = 1)]
    pub page: Option<usize>,
    /// Entries per page (at most 1000; default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<usize>,
    /// Only topics this filter matches (MQTT matching: `#` does not match `$SYS/…`).
    pub filter: Option<String>,
    /// Payload bytes shown per message (default 256, at most 65536); `truncated` says when
    /// there was more.
    #[param(maximum = 65536)]
    pub preview: Option<usize>,
}

/// A retained message.
#[derive(Debug, Serialize, ToSchema)]
pub struct RetainedEntry {
    /// The topic.
    pub topic: String,
    /// The payload (its first `preview` bytes in a list), per `encoding`.
    pub payload: String,
    /// `plain` (UTF-8) or `base64`.
    pub encoding: String,
    /// The whole payload's size in bytes.
    pub payload_size: usize,
    /// Whether `payload` is only the beginning.
    pub truncated: bool,
    /// The QoS it was published with.
    pub qos: u8,
    /// MQTT 5 properties: `content_type`, `message_expiry` (seconds left), `response_topic`,
    /// `correlation_data` (base64), `user_properties`.
    #[schema(value_type = Object)]
    pub properties: serde_json::Value,
    /// The client id of its publisher, when known.
    pub publisher: Option<String>,
}

/// The longest prefix of `payload` of at most `max` bytes that does not cut a UTF-8 character
/// of a text payload in two (a cut character would turn the preview into base64).
fn preview(payload: &Bytes, max: usize) -> Bytes {
    if payload.len() <= max {
        return payload.clone();
    }
    let mut end = max;
    if std::str::from_utf8(payload).is_ok() {
        while end > 0 && payload.get(end).is_some_and(|b| (b & 0xC0) == 0x80) {
            end -= 1;
        }
    }
    payload.slice(..end)
}

fn entry(msg: &Message, max_payload: Option<usize>, now: u64) -> RetainedEntry {
    let shown = match max_payload {
        Some(max) => preview(&msg.payload, max),
        None => msg.payload.clone(),
    };
    let truncated = shown.len() < msg.payload.len();
    // The preview goes through the same JSON form as every other message the API shows.
    let mut cut = msg.clone();
    cut.payload = shown;
    let mut j = unigate_translators::http::message_to_json(&cut, msg.qos, true, now);
    let mut take = |key: &str| j.get_mut(key).map(serde_json::Value::take).unwrap_or_default();
    let text = |v: serde_json::Value| v.as_str().unwrap_or_default().to_string();
    RetainedEntry {
        topic: msg.topic.as_str().to_string(),
        payload: text(take("payload")),
        encoding: text(take("encoding")),
        payload_size: msg.payload.len(),
        truncated,
        qos: msg.qos as u8,
        properties: take("properties"),
        publisher: msg.origin.client_id.as_deref().map(str::to_string),
    }
}

fn topic(path: &str) -> Result<Topic, ApiError> {
    Topic::new(path).map_err(|e| ApiError::bad_request(format!("invalid topic: {e}")))
}

/// `GET /api/v1/retained`.
#[utoipa::path(get, operation_id = "listRetained", path = "/api/v1/retained", tag = "retained", params(RetainedQuery),
    responses((status = 200, description = "Retained messages, by topic", body = Page<RetainedEntry>),
        (status = 400, description = "Bad query", body = ErrorBody),
        (status = 401, description = "Not authenticated", body = ErrorBody),
        (status = 403, description = "Not allowed", body = ErrorBody)),
    security(("bearer" = []), ("basic" = [])))]
pub async fn list(req: HttpRequest, shared: web::Data<HttpShared>) -> Result<web::Json<Page<RetainedEntry>>, ApiError> {
    guard(&req, &shared, Access::Read).await?;
    let q: RetainedQuery = query(&req)?;
    let paging = Paging::new(q.page, q.limit)?;
    let max = q.preview.unwrap_or(DEFAULT_PREVIEW);
    if max > MAX_PREVIEW {
        return Err(ApiError::bad_request(format!("preview must be at most {MAX_PREVIEW}")));
    }
    let messages: Vec<Arc<Message>> = match &q.filter {
        Some(f) => {
            let filter = TopicFilter::new(f).map_err(|e| ApiError::bad_request(format!("invalid filter: {e}")))?;
            let mut m = shared.broker.retained_matching(&filter);
            m.sort_by(|a, b| a.topic.as_str().cmp(b.topic.as_str()));
            m
        }
        None => shared.broker.retained_all(),
    };
    let count = messages.len();
    let now = now_ms();
    let data = messages
        .get(paging.range(count))
        .unwrap_or_default()
        .iter()
        .map(|m| entry(m, Some(max), now))
        .collect();
    Ok(web::Json(paging.page_of(data, count)))
}

/// `GET /api/v1/retained/{topic}`: the whole message.
#[utoipa::path(get, operation_id = "showRetained", path = "/api/v1/retained/{topic}", tag = "retained",
    params(("topic" = String, Path, description = "The topic name; may contain `/`")),
    responses((status = 200, body = RetainedEntry),
        (status = 400, description = "Bad topic", body = ErrorBody),
        (status = 404, description = "Nothing retained there", body = ErrorBody),
        (status = 401, description = "Not authenticated", body = ErrorBody),
        (status = 403, description = "Not allowed", body = ErrorBody)),
    security(("bearer" = []), ("basic" = [])))]
pub async fn show(
    req: HttpRequest,
    shared: web::Data<HttpShared>,
    path: web::Path<String>,
) -> Result<web::Json<RetainedEntry>, ApiError> {
    guard(&req, &shared, Access::Read).await?;
    let t = topic(&path)?;
    let msg = shared
        .broker
        .retained_message(&t)
        .ok_or_else(|| ApiError::not_found(format!("no retained message on \"{}\"", t.as_str())))?;
    Ok(web::Json(entry(&msg, None, now_ms())))
}

/// `DELETE /api/v1/retained/{topic}`.
#[utoipa::path(delete, operation_id = "deleteRetained", path = "/api/v1/retained/{topic}", tag = "retained",
    params(("topic" = String, Path, description = "The topic name; may contain `/`")),
    responses((status = 204, description = "Deleted"),
        (status = 400, description = "Bad topic", body = ErrorBody),
        (status = 404, description = "Nothing retained there", body = ErrorBody),
        (status = 401, description = "Not authenticated", body = ErrorBody),
        (status = 403, description = "Not allowed", body = ErrorBody)),
    security(("bearer" = []), ("basic" = [])))]
pub async fn delete(
    req: HttpRequest,
    shared: web::Data<HttpShared>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    guard(&req, &shared, Access::Change).await?;
    let t = topic(&path)?;
    if !shared.broker.delete_retained(&t) {
        return Err(ApiError::not_found(format!(
            "no retained message on \"{}\"",
            t.as_str()
        )));
    }
    tracing::info!(topic = %t.as_str(), "retained message deleted through the management API");
    Ok(HttpResponse::NoContent().finish())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn preview_keeps_text_whole_characters() {
        let p = Bytes::from("héllo");
        assert_eq!(&preview(&p, 2)[..], b"h", "é is two bytes: not cut in half");
        assert_eq!(&preview(&p, 3)[..], "hé".as_bytes());
        assert_eq!(preview(&p, 100), p);
        let bin = Bytes::from_static(&[0xff, 0x80, 0x80, 0x80]);
        assert_eq!(&preview(&bin, 2)[..], &[0xff, 0x80], "binary is cut anywhere");
    }

    #[test]
    fn entry_shows_a_preview_and_the_size() {
        let mut m = Message::new(Topic::new("a/b").unwrap(), Bytes::from("0123456789"));
        m.retain = true;
        let e = entry(&m, Some(4), now_ms());
        assert_eq!((e.payload.as_str(), e.encoding.as_str()), ("0123", "plain"));
        assert_eq!((e.payload_size, e.truncated), (10, true));
        let e = entry(&m, None, now_ms());
        assert_eq!((e.payload.as_str(), e.truncated), ("0123456789", false));
        let bin = Message::new(Topic::new("a/b").unwrap(), Bytes::from_static(&[0, 0xff]));
        let e = entry(&bin, None, now_ms());
        assert_eq!((e.payload.as_str(), e.encoding.as_str()), ("AP8=", "base64"));
    }
}
