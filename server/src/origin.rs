//! The origin side: a static file server (`--root`, files served by
//! `actix-files`) or a reverse proxy (`--origin`). Every body byte it sends
//! is counted in `whis_origin_bytes_total` (see `counted`), the ground truth
//! for how much Whis offloaded.

use std::path::Path;
use std::sync::Arc;

use actix_files::{HttpRange, NamedFile};
use actix_web::body::{BodySize, BodyStream, BoxBody, MessageBody, SizedStream};
use actix_web::http::{header, Method, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use bytes::Bytes;
use whis_core::path::SitePath;

use crate::config::OriginConfig;
use crate::counted::Metrics;
use crate::error::ApiError;
use crate::site_files;
use crate::state::AppState;
use crate::upstream::{hop_by_hop, send_bodiless};

/// The catch-all route: everything that is not `/whis/…` is the site.
pub async fn serve(
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<Arc<AppState>>,
    client: web::Data<awc::Client>,
) -> Result<HttpResponse, ApiError> {
    let path = SitePath::parse(req.uri().path())?;
    if path.is_whis_internal() && !state.config.origin_only {
        return Err(ApiError::NotFound(path.as_str().to_string()));
    }
    match &state.config.origin {
        OriginConfig::Static { root } => serve_file(&req, root, &path, &state.metrics),
        OriginConfig::Proxy { base } => match serve_kept(&req, &path, &state) {
            Some(res) => Ok(res),
            None => proxy(&req, body, base, &state.metrics, &client).await,
        },
    }
}

fn serve_file(
    req: &HttpRequest,
    root: &Path,
    path: &SitePath,
    metrics: &Metrics,
) -> Result<HttpResponse, ApiError> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return Err(ApiError::MethodNotAllowed);
    }
    // `/gallery` is a directory: send the browser to `/gallery/` so relative links work.
    if !path.is_dir() && root.join(path.as_str().trim_start_matches('/')).is_dir() {
        return Ok(HttpResponse::MovedPermanently()
            .insert_header((header::LOCATION, format!("{}/", path.as_str())))
            .finish());
    }
    let file = site_files::resolve_file(root, path)?;
    // ETag, Last-Modified, Range, If-Range and the conditional requests are
    // actix-files'; the type and caching headers are ours, because the
    // manifest replays exactly these (see `site_files`).
    let named = NamedFile::open(&file.path)
        .map_err(|_| ApiError::NotFound(path.as_str().to_string()))?
        .set_content_type(site_files::content_type_for(&file.path))
        .disable_content_disposition();
    let mut res = named.into_response(req);
    res.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static(site_files::cache_control_for(&file.path)),
    );
    Ok(finish(req, res, metrics))
}

/// Count a body the origin side sends, keep HEAD answers bodiless, and give
/// a 416 our JSON error body.
fn finish(req: &HttpRequest, res: HttpResponse, metrics: &Metrics) -> HttpResponse {
    let status = res.status();
    if status == StatusCode::RANGE_NOT_SATISFIABLE {
        let content_range = res.headers().get(header::CONTENT_RANGE).cloned();
        let mut out = range_not_satisfiable_body();
        if let Some(v) = content_range {
            out.headers_mut().insert(header::CONTENT_RANGE, v);
        }
        return out;
    }
    if req.method() == Method::HEAD {
        // The size is announced; the file is not read, nor counted.
        return res.map_body(|_, body| match body.size() {
            BodySize::Sized(n) => {
                let nothing = futures_util::stream::empty::<Result<Bytes, std::io::Error>>();
                SizedStream::new(n, nothing).boxed()
            }
            _ => BoxBody::new(()),
        });
    }
    if matches!(status, StatusCode::OK | StatusCode::PARTIAL_CONTENT) {
        return res.map_body(|_, body| metrics.count(body).boxed());
    }
    res
}

fn range_not_satisfiable_body() -> HttpResponse {
    HttpResponse::RangeNotSatisfiable()
        .insert_header((header::CONTENT_TYPE, "application/json"))
        .body(r#"{"error":"range_not_satisfiable","message":"the Range is outside the file"}"#)
}

/// Which bytes of a `len`-byte body a request asks for.
#[derive(Debug, PartialEq, Eq)]
enum Span {
    Full,
    Part { start: u64, count: u64 },
    Unsatisfiable,
}

/// `Range` as `NamedFile` reads it (GET only, `bytes` unit, the first range,
/// an unparsable one is unsatisfiable), guarded by `If-Range`: a strong ETag
/// must match exactly, a date must equal `Last-Modified`.
fn span(req: &HttpRequest, len: u64, etag: &str, last_modified: &str) -> Span {
    let Some(range) = req
        .headers()
        .get(header::RANGE)
        .filter(|_| req.method() == Method::GET)
        .and_then(|v| v.to_str().ok())
    else {
        return Span::Full;
    };
    let if_range = req
        .headers()
        .get(header::IF_RANGE)
        .and_then(|v| v.to_str().ok());
    let holds = match if_range {
        None => true,
        Some(v) if v.starts_with('"') => v == etag,
        Some(v) if v.starts_with("W/") => false,
        Some(v) => v == last_modified,
    };
    let bytes_unit = range
        .split_once('=')
        .is_none_or(|(unit, _)| unit.trim().eq_ignore_ascii_case("bytes"));
    if !holds || !bytes_unit {
        return Span::Full;
    }
    match HttpRange::parse(range, len)
        .ok()
        .and_then(|r| r.first().copied())
    {
        Some(r) => Span::Part {
            start: r.start,
            count: r.length,
        },
        None => Span::Unsatisfiable,
    }
}

/// A proxied resource whose body Whis fetched moments ago to hash it: answer
/// from those bytes instead of asking the origin again. Only a plain GET or
/// HEAD of the path (no query, no conditional other than `If-Range`), so the
/// answer is exactly what the origin sent for this version. (`NamedFile`
/// serves files; these bytes are in memory, so `span` reads the Range.)
fn serve_kept(req: &HttpRequest, path: &SitePath, state: &AppState) -> Option<HttpResponse> {
    if !matches!(*req.method(), Method::GET | Method::HEAD)
        || req.uri().query().is_some()
        || req.headers().contains_key(header::IF_NONE_MATCH)
        || req.headers().contains_key(header::IF_MODIFIED_SINCE)
    {
        return None;
    }
    let (manifest, body) = state.manifests.kept_body(path.as_str())?;
    let h = &manifest.headers;
    let etag = h.etag.as_deref().unwrap_or("");
    let last_modified = h.last_modified.as_deref().unwrap_or("");
    if req.headers().contains_key(header::IF_RANGE) && etag.is_empty() && last_modified.is_empty() {
        return None;
    }
    let mut res = HttpResponse::Ok();
    for (name, value) in [
        (header::CONTENT_TYPE, &h.content_type),
        (header::ETAG, &h.etag),
        (header::LAST_MODIFIED, &h.last_modified),
        (header::CACHE_CONTROL, &h.cache_control),
    ] {
        if let Some(v) = value {
            res.insert_header((name, v.as_str()));
        }
    }
    res.insert_header((header::ACCEPT_RANGES, "bytes"));
    let len = body.len() as u64;
    let part = match span(req, len, etag, last_modified) {
        Span::Full => body,
        Span::Part { start, count } => {
            res.status(StatusCode::PARTIAL_CONTENT).insert_header((
                header::CONTENT_RANGE,
                format!("bytes {start}-{}/{len}", start + count - 1),
            ));
            body.slice(start as usize..(start + count) as usize)
        }
        Span::Unsatisfiable => {
            res.status(StatusCode::RANGE_NOT_SATISFIABLE)
                .insert_header((header::CONTENT_RANGE, format!("bytes */{len}")));
            Bytes::new()
        }
    };
    Some(finish(req, res.body(part), &state.metrics))
}

async fn proxy(
    req: &HttpRequest,
    body: web::Payload,
    base: &str,
    metrics: &Metrics,
    client: &awc::Client,
) -> Result<HttpResponse, ApiError> {
    let path_and_query = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let url = format!("{base}{path_and_query}");
    let mut upstream = client
        .request(req.method().clone(), &url)
        .no_decompress()
        .timeout(std::time::Duration::from_secs(30));
    for (name, value) in req.headers() {
        if !hop_by_hop(name) && name != header::HOST && name != header::CONTENT_LENGTH {
            upstream = upstream.append_header((name.clone(), value.clone()));
        }
    }
    if let Some(peer) = req.peer_addr() {
        upstream = upstream.append_header(("x-forwarded-for", peer.ip().to_string()));
    }
    let res = if matches!(*req.method(), Method::GET | Method::HEAD) {
        send_bodiless(upstream).await
    } else {
        upstream.send_stream(body).await
    }
    .map_err(|e| ApiError::Origin(format!("{url}: {e}")))?;
    let mut out = HttpResponse::build(res.status());
    for (name, value) in res.headers() {
        if !hop_by_hop(name) && name != header::CONTENT_LENGTH {
            out.append_header((name.clone(), value.clone()));
        }
    }
    if req.method() == Method::HEAD {
        return Ok(out.finish());
    }
    let length = res
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let stream = Box::pin(res);
    Ok(match length {
        Some(n) => out.body(metrics.count(SizedStream::new(n, stream))),
        None => out.body(metrics.count(BodyStream::new(stream))),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    fn req(headers: &[(&str, &str)]) -> HttpRequest {
        let mut r = TestRequest::get();
        for (k, v) in headers {
            r = r.insert_header((*k, *v));
        }
        r.to_http_request()
    }

    #[test]
    fn kept_bodies_read_ranges_like_named_file() {
        let span =
            |h: &[(&str, &str)]| span(&req(h), 1000, "\"v1\"", "Tue, 24 Nov 2026 10:00:00 GMT");
        assert_eq!(span(&[]), Span::Full);
        assert_eq!(
            span(&[("range", "bytes=0-99")]),
            Span::Part {
                start: 0,
                count: 100
            }
        );
        assert_eq!(
            span(&[("range", "bytes=-100")]),
            Span::Part {
                start: 900,
                count: 100
            }
        );
        assert_eq!(
            span(&[("range", "bytes=990-5000")]),
            Span::Part {
                start: 990,
                count: 10
            }
        );
        assert_eq!(span(&[("range", "bytes=1000-")]), Span::Unsatisfiable);
        assert_eq!(span(&[("range", "items=0-1")]), Span::Full);
        assert_eq!(
            span(&[("range", "bytes=0-9"), ("if-range", "\"v1\"")]),
            Span::Part {
                start: 0,
                count: 10
            }
        );
        assert_eq!(
            span(&[("range", "bytes=0-9"), ("if-range", "\"v0\"")]),
            Span::Full,
            "If-Range names another version: the whole body"
        );
        assert_eq!(
            span(&[("range", "bytes=0-9"), ("if-range", "W/\"v1\"")]),
            Span::Full
        );
    }

    #[test]
    fn the_manifest_etag_is_the_one_named_file_sends() {
        let dir = std::env::temp_dir().join(format!("whis-etag-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("mkdir");
        let file = dir.join("a.bin");
        std::fs::write(&file, vec![1u8; 4096]).expect("write");
        let served = NamedFile::open(&file)
            .expect("open")
            .into_response(&req(&[]));
        let sent = served
            .headers()
            .get(header::ETAG)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let meta = std::fs::metadata(&file).expect("metadata");
        assert_eq!(sent, Some(site_files::etag_for(&meta)));
        assert_eq!(
            served
                .headers()
                .get(header::LAST_MODIFIED)
                .and_then(|v| v.to_str().ok()),
            Some(site_files::last_modified_for(&meta).as_str())
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
