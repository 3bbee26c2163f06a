//! The one error type of the server and the one place it becomes HTTP.

use actix_web::error::{JsonPayloadError, PayloadError};
use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse, ResponseError};
use serde::Serialize;
use thiserror::Error;
use whis_core::CoreError;

#[derive(Debug, Error)]
pub enum ApiError {
    #[error(transparent)]
    Core(#[from] CoreError),
    #[error("malformed JSON: {0}")]
    BadJson(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("request body is larger than {0} bytes")]
    BodyTooLarge(usize),
    #[error("missing token: send Authorization: Bearer TOKEN")]
    MissingToken,
    #[error("{0}")]
    Forbidden(&'static str),
    #[error("{0}")]
    Ineligible(String),
    #[error("{0} not found")]
    NotFound(String),
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("origin failed: {0}")]
    Origin(String),
    #[error("timed out: {0}")]
    Timeout(String),
    #[error("unavailable: {0}")]
    Unavailable(String),
    #[error("internal error: {0}")]
    Internal(String),
}

/// JSON request bodies: at most `limit` bytes (a declared larger one is
/// refused before it is read), any content type (`navigator.sendBeacon`
/// sends text/plain), and failures as our own JSON errors.
pub fn json_config(limit: usize) -> web::JsonConfig {
    web::JsonConfig::default()
        .limit(limit)
        .content_type_required(false)
        .content_type(|_| true)
        .error_handler(move |err, _| ApiError::from_json(err, limit).into())
}

impl ApiError {
    fn from_json(err: JsonPayloadError, limit: usize) -> ApiError {
        match err {
            JsonPayloadError::Overflow { .. }
            | JsonPayloadError::OverflowKnownLength { .. }
            | JsonPayloadError::Payload(PayloadError::Overflow) => ApiError::BodyTooLarge(limit),
            JsonPayloadError::Deserialize(e) if e.is_eof() && e.line() == 1 && e.column() == 0 => {
                ApiError::BadJson("empty body; send a JSON object ({} is valid)".into())
            }
            JsonPayloadError::Deserialize(e) => ApiError::BadJson(e.to_string()),
            other => ApiError::BadRequest(format!("could not read the body: {other}")),
        }
    }
}

#[derive(Serialize)]
struct Body<'a> {
    error: &'a str,
    message: String,
}

impl ApiError {
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::Core(e) => e.code(),
            ApiError::BadJson(_) => "bad_json",
            ApiError::BadRequest(_) => "bad_request",
            ApiError::BodyTooLarge(_) => "body_too_large",
            ApiError::MissingToken => "missing_token",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::Ineligible(_) => "ineligible",
            ApiError::NotFound(_) => "not_found",
            ApiError::MethodNotAllowed => "method_not_allowed",
            ApiError::Origin(_) => "origin_error",
            ApiError::Timeout(_) => "timeout",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::Internal(_) => "internal",
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::Core(e) => match e {
                CoreError::InvalidToken => StatusCode::UNAUTHORIZED,
                CoreError::UnknownPeer(_) | CoreError::UnknownSwarm(_) => StatusCode::NOT_FOUND,
                CoreError::OtherSwarm(_) => StatusCode::FORBIDDEN,
                CoreError::ServerFull(_) => StatusCode::SERVICE_UNAVAILABLE,
                CoreError::BadPath(_)
                | CoreError::BadRequest(_)
                | CoreError::SelfSignal
                | CoreError::BadSignal(_)
                | CoreError::TooManyIds(_) => StatusCode::BAD_REQUEST,
                CoreError::Collision => StatusCode::SERVICE_UNAVAILABLE,
            },
            ApiError::BadJson(_) | ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::BodyTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::MissingToken => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) | ApiError::Ineligible(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Origin(_) => StatusCode::BAD_GATEWAY,
            ApiError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        if status.is_server_error() {
            log::warn!("{} {}: {}", status.as_u16(), self.code(), self);
        } else {
            log::info!("refused {} {}: {}", status.as_u16(), self.code(), self);
        }
        HttpResponse::build(status)
            .insert_header(("cache-control", "no-store"))
            .json(Body {
                error: self.code(),
                message: self.to_string(),
            })
    }
}
