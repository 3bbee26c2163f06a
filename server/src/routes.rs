//! Small handlers that need no module of their own, and the CORS layer.

use std::sync::Arc;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::{header, Method};
use actix_web::middleware::Next;
use actix_web::{web, HttpResponse};
use serde::Deserialize;
use whis_core::path::SitePath;

use crate::error::ApiError;
use crate::state::AppState;

#[derive(Deserialize)]
pub struct ManifestQuery {
    path: Option<String>,
    /// The page the resource is for (the service worker says): what pages use.
    page: Option<String>,
}

pub async fn manifest(
    query: Result<web::Query<ManifestQuery>, actix_web::Error>,
    state: web::Data<Arc<AppState>>,
    client: web::Data<awc::Client>,
) -> Result<HttpResponse, ApiError> {
    let query = query.map_err(|e| ApiError::BadRequest(format!("bad query: {e}")))?;
    let raw = query
        .path
        .as_deref()
        .ok_or_else(|| ApiError::BadRequest("missing ?path=/the/file".into()))?;
    // The query was decoded once by the extractor; SitePath decodes (and so
    // refuses) any second layer of encoding such as %2e%2e.
    let path = SitePath::parse(raw)?;
    let manifest = state.manifests.get(&state, &client, &path).await?;
    if let Some(page) = query.page.as_deref().and_then(|p| SitePath::parse(p).ok()) {
        state.pages().used(page.as_str(), path.as_str());
    }
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header((header::ETAG, format!("\"{}\"", manifest.id)))
        .json(&*manifest))
}

/// `GET /whis/render?path=/page`: the page as a worker browser renders it.
pub async fn render(
    query: Result<web::Query<ManifestQuery>, actix_web::Error>,
    state: web::Data<Arc<AppState>>,
) -> Result<HttpResponse, ApiError> {
    let query = query.map_err(|e| ApiError::BadRequest(format!("bad query: {e}")))?;
    let raw = query
        .path
        .as_deref()
        .ok_or_else(|| ApiError::BadRequest("missing ?path=/the/page".into()))?;
    let path = SitePath::parse(raw)?;
    if path.is_whis_internal() {
        return Err(ApiError::Core(whis_core::CoreError::BadPath(
            "Whis's own pages are not rendered",
        )));
    }
    let url = format!("{}{}", state.base_url(), path.as_str());
    let html = state.workers.render(path.as_str(), url).await?;
    Ok(HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header(("x-whis-rendered", "1"))
        .body(html))
}

pub async fn method_not_allowed() -> Result<HttpResponse, ApiError> {
    Err(ApiError::MethodNotAllowed)
}

pub async fn not_found(req: actix_web::HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound(req.path().to_string()))
}

/// `--allow-origin`: let pages of another origin use the signaling API.
pub async fn cors(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let origin = req.headers().get(header::ORIGIN).cloned();
    let allowed = match (&origin, req.app_data::<web::Data<Arc<AppState>>>()) {
        (Some(o), Some(state)) => {
            let o = o.to_str().unwrap_or("");
            state
                .config
                .allow_origins
                .iter()
                .any(|a| a == o || a == "*")
        }
        _ => false,
    };
    let whis_api = req.path().starts_with("/whis/");
    if allowed && whis_api && req.method() == Method::OPTIONS {
        let origin = origin.expect("allowed implies an Origin header");
        let res = HttpResponse::NoContent()
            .insert_header((header::ACCESS_CONTROL_ALLOW_ORIGIN, origin))
            .insert_header((header::ACCESS_CONTROL_ALLOW_METHODS, "GET, POST, OPTIONS"))
            .insert_header((
                header::ACCESS_CONTROL_ALLOW_HEADERS,
                "authorization, content-type, last-event-id",
            ))
            .insert_header((header::ACCESS_CONTROL_MAX_AGE, "600"))
            .insert_header((header::VARY, "origin"))
            .finish();
        return Ok(req.into_response(res).map_into_boxed_body());
    }
    let mut res = next.call(req).await?;
    if allowed && whis_api {
        let origin = origin.expect("allowed implies an Origin header");
        res.headers_mut()
            .insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        res.headers_mut()
            .insert(header::VARY, header::HeaderValue::from_static("origin"));
    }
    Ok(res.map_into_boxed_body())
}
