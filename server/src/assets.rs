//! The service worker, client and agent files of `sw/`, embedded at build time
//! (or read from `--sw-dir` while developing them).

use std::sync::Arc;

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use whis_core::path::SitePath;

use crate::error::ApiError;
use crate::site_files;
use crate::state::AppState;

include!(concat!(env!("OUT_DIR"), "/embedded_sw.rs"));

/// `sw/whis-sw.js` is served at `/whis-sw.js` (its scope must be `/`); every
/// other `sw/X` at `/whis/X`.
fn sw_relative(path: &str) -> Option<&str> {
    if path == "/whis-sw.js" {
        Some("whis-sw.js")
    } else {
        path.strip_prefix("/whis/").filter(|rel| !rel.is_empty())
    }
}

/// `/whis/lib.js`: every file of `sw/lib/` in one script, in dependency
/// order, so a first visit pays one round trip for them, not one each (on a
/// congested origin each costs seconds, and the page waits for the worker).
const BUNDLE: &str = "lib.js";
/// The list of the bundle's files, in order (the JS tests read it too).
const BUNDLE_LIST: &str = "lib/bundle.txt";

/// One file of `sw/`, from `--sw-dir` or the embedded copy.
fn read(state: &AppState, rel: &str) -> Option<Vec<u8>> {
    match &state.config.sw_dir {
        Some(dir) => {
            let mut full = dir.clone();
            for seg in rel.split('/') {
                full.push(seg);
            }
            std::fs::read(&full).ok()
        }
        None => EMBEDDED
            .iter()
            .find(|(name, _)| *name == rel)
            .map(|(_, bytes)| bytes.to_vec()),
    }
}

/// The files `BUNDLE_LIST` names, as one script (`None` if one is missing).
fn bundle(state: &AppState) -> Option<Vec<u8>> {
    let list = String::from_utf8(read(state, BUNDLE_LIST)?).ok()?;
    let mut all = Vec::new();
    for name in list
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let part = format!("lib/{name}");
        all.extend_from_slice(format!("// ---- {part}\n").as_bytes());
        all.extend_from_slice(&read(state, &part)?);
        all.extend_from_slice(b"\n;\n");
    }
    Some(all)
}

#[derive(serde::Deserialize)]
pub struct WorkerQuery {
    secret: Option<String>,
}

pub async fn serve(
    req: HttpRequest,
    query: web::Query<WorkerQuery>,
    state: web::Data<Arc<AppState>>,
) -> Result<HttpResponse, ApiError> {
    let path = SitePath::parse(req.uri().path())?;
    let rel = sw_relative(path.as_str()).ok_or_else(|| ApiError::NotFound(path.as_str().into()))?;
    if rel == "worker.html" && query.secret.as_deref() != Some(state.worker_secret.as_str()) {
        return Err(ApiError::Forbidden(
            "the worker page is only for the server's own worker browsers",
        ));
    }
    let body = if rel == BUNDLE {
        if state.config.sw_dir.is_some() {
            // Development: the files on disk may change between requests.
            bundle(&state).ok_or_else(|| ApiError::NotFound(path.as_str().into()))?
        } else {
            // Embedded files never change: concatenate them once.
            static EMBEDDED_BUNDLE: std::sync::OnceLock<Option<Vec<u8>>> =
                std::sync::OnceLock::new();
            EMBEDDED_BUNDLE
                .get_or_init(|| bundle(&state))
                .clone()
                .ok_or_else(|| ApiError::NotFound(path.as_str().into()))?
        }
    } else {
        read(&state, rel).ok_or_else(|| ApiError::NotFound(path.as_str().into()))?
    };
    // Every page view asks for client.js and lib.js again (no-cache keeps
    // them in step with the running server): with a validator that costs a
    // 304, not the scripts (about 50 KB, a few per cent of a page).
    let etag = etag_of(&body);
    let unchanged = if_none_match(&req, &etag);
    let mut res = if unchanged {
        HttpResponse::NotModified()
    } else {
        HttpResponse::Ok()
    };
    res.insert_header((
        header::CONTENT_TYPE,
        site_files::content_type_for(std::path::Path::new(rel)).to_string(),
    ))
    // The browser checks for a new service worker on every navigation anyway;
    // no-cache keeps every Whis file in step with the running server.
    .insert_header((header::CACHE_CONTROL, "no-cache"))
    .insert_header((header::ETAG, etag.clone()));
    if rel == "whis-sw.js" {
        res.insert_header(("service-worker-allowed", "/"));
    }
    if unchanged {
        return Ok(res.finish());
    }
    Ok(res.body(body))
}

/// A strong validator for one of Whis's files: a hash of its bytes.
fn etag_of(body: &[u8]) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    body.hash(&mut h);
    format!("\"w{:016x}-{:x}\"", h.finish(), body.len())
}

/// Whether the request's `If-None-Match` names `etag` (or `*`).
fn if_none_match(req: &HttpRequest, etag: &str) -> bool {
    req.headers()
        .get_all(header::IF_NONE_MATCH)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .any(|t| t == "*" || t == etag || t.strip_prefix("W/") == Some(etag))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_map_onto_sw_files() {
        assert_eq!(sw_relative("/whis-sw.js"), Some("whis-sw.js"));
        assert_eq!(sw_relative("/whis/client.js"), Some("client.js"));
        assert_eq!(sw_relative("/whis/lib/wire.js"), Some("lib/wire.js"));
        assert_eq!(sw_relative("/whis/"), None);
        assert_eq!(sw_relative("/other.js"), None);
    }

    #[test]
    fn the_client_is_embedded() {
        for needed in ["client.js", "whis-sw.js", "sw-lib.js"] {
            assert!(
                EMBEDDED.iter().any(|(n, b)| *n == needed && !b.is_empty()),
                "{needed} is embedded"
            );
        }
        assert!(
            !EMBEDDED.iter().any(|(n, _)| n.starts_with("test/")),
            "tests are not shipped"
        );
        let list = EMBEDDED
            .iter()
            .find(|(n, _)| *n == BUNDLE_LIST)
            .map(|(_, b)| String::from_utf8_lossy(b).into_owned())
            .expect("the bundle list is embedded");
        let listed: Vec<String> = list
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(|l| format!("lib/{l}"))
            .collect();
        let scripts: Vec<&str> = EMBEDDED
            .iter()
            .map(|(n, _)| *n)
            .filter(|n| n.starts_with("lib/") && n.ends_with(".js"))
            .collect();
        assert_eq!(
            listed.len(),
            scripts.len(),
            "lib.js bundles every script of sw/lib: {scripts:?} against {listed:?}"
        );
        assert!(listed.iter().all(|p| scripts.contains(&p.as_str())));
    }
}
