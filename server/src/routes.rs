//! Small handlers that need no module of their own.

use std::sync::Arc;

use actix_web::http::header;
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
    let manifest = state.manifests.get(&client, &path).await?;
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
