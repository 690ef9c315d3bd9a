//! The management API under `/api/v1` (in progress).

use actix_web::web;

/// Registers the management routes.
pub fn routes(_cfg: &mut web::ServiceConfig) {}
