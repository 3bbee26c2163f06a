//! `POST /whis/next`: the prefetch plan for a page (see `whis_core::pages`).
//!
//! The page sends where it is, where it came from and the same-origin pages
//! it links to; the answer lists, of those, the pages visitors opened next,
//! with the manifests of what they use and the byte budget the operator
//! allows (`--prefetch-budget`). The agent fetches those bytes from peers
//! only, so a plan never costs the origin anything.

use std::sync::Arc;

use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};
use whis_core::manifest::Manifest;
use whis_core::path::SitePath;

use crate::error::ApiError;
use crate::state::AppState;

/// Links read from one page; more are ignored.
const MAX_LINKS: usize = 64;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NextBody {
    page: String,
    #[serde(default)]
    from: Option<String>,
    #[serde(default)]
    links: Vec<String>,
}

/// The answer: pages likely next, with what they use, and the byte budget.
#[derive(Serialize)]
struct Plan {
    pages: Vec<PlannedPage>,
    budget_bytes: u64,
}

#[derive(Serialize)]
struct PlannedPage {
    path: String,
    visits: u64,
    resources: Vec<Manifest>,
}

pub async fn next(
    body: web::Json<NextBody>,
    state: web::Data<Arc<AppState>>,
) -> Result<HttpResponse, ApiError> {
    let page = SitePath::parse(&body.page)?;
    // A bad `from` or link is a page we cannot plan for, not an error.
    let from = body.from.as_deref().and_then(|f| SitePath::parse(f).ok());
    let links: Vec<String> = body
        .links
        .iter()
        .take(MAX_LINKS)
        .filter_map(|l| SitePath::parse(l).ok())
        .map(|p| p.as_str().to_string())
        .collect();
    let plan = {
        let mut pages = state.pages();
        if let Some(from) = &from {
            pages.navigated(from.as_str(), page.as_str());
        }
        pages.plan(page.as_str(), &links)
    };
    let budget = state.config.prefetch_budget;
    let pages: Vec<PlannedPage> = plan
        .into_iter()
        .map(|p| PlannedPage {
            // Only manifests already computed: a plan never makes whis hash
            // (or, in proxy mode, fetch) anything.
            resources: p
                .resources
                .iter()
                .filter_map(|r| state.manifests.peek(r))
                .map(|m| Manifest::clone(&m))
                .collect(),
            path: p.path,
            visits: p.visits,
        })
        .collect();
    Ok(HttpResponse::Ok()
        .insert_header(("cache-control", "no-store"))
        .json(Plan {
            pages,
            budget_bytes: budget,
        }))
}
