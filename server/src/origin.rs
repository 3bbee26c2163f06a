//! The origin side: a static file server (`--root`) or a reverse proxy
//! (`--origin`). Every body byte it sends is counted in
//! `whis_origin_bytes_total`, the ground truth for how much Whis offloaded.

use std::fs::Metadata;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::UNIX_EPOCH;

use actix_web::body::SizedStream;
use actix_web::http::{header, Method, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use whis_core::path::SitePath;

use crate::config::OriginConfig;
use crate::error::ApiError;
use crate::state::AppState;

/// A file under the root that exists and is regular.
pub struct ResolvedFile {
    pub path: PathBuf,
    pub meta: Metadata,
    pub site_path: String,
}

/// Map a safe site path onto the root. Directories resolve to `index.html`;
/// symlinks that lead outside the root are refused like `..`.
pub fn resolve_file(root: &Path, path: &SitePath) -> Result<ResolvedFile, ApiError> {
    let mut full = root.to_path_buf();
    for seg in path.segments() {
        full.push(seg);
    }
    let mut site_path = path.as_str().to_string();
    if full.is_dir() {
        full.push("index.html");
        if !site_path.ends_with('/') {
            site_path.push('/');
        }
        site_path.push_str("index.html");
    }
    let not_found = || ApiError::NotFound(path.as_str().to_string());
    let canonical = full.canonicalize().map_err(|_| not_found())?;
    let root = root
        .canonicalize()
        .map_err(|e| ApiError::Internal(format!("root: {e}")))?;
    if !canonical.starts_with(&root) {
        return Err(ApiError::Core(whis_core::CoreError::BadPath(
            "path leads outside the site",
        )));
    }
    let meta = std::fs::metadata(&canonical).map_err(|_| not_found())?;
    if !meta.is_file() {
        return Err(not_found());
    }
    Ok(ResolvedFile {
        path: canonical,
        meta,
        site_path,
    })
}

pub fn mtime_secs(meta: &Metadata) -> u64 {
    meta.modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Strong validator from size and modification time (nanoseconds, so two
/// writes within one second still differ).
pub fn etag_for(meta: &Metadata) -> String {
    let nanos = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("\"{:x}-{:x}\"", meta.len(), nanos)
}

pub fn last_modified_for(meta: &Metadata) -> String {
    httpdate::fmt_http_date(UNIX_EPOCH + std::time::Duration::from_secs(mtime_secs(meta)))
}

pub fn content_type_for(path: &Path) -> String {
    let mime = mime_guess::from_path(path).first_or_octet_stream();
    match mime.type_() {
        mime_guess::mime::TEXT => format!("{mime}; charset=utf-8"),
        _ if mime.subtype() == "javascript" => format!("{mime}; charset=utf-8"),
        _ => mime.to_string(),
    }
}

/// Pages revalidate every time; assets may be cached for five minutes.
pub fn cache_control_for(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()) {
        Some("html") | Some("htm") => "no-cache",
        _ => "public, max-age=300",
    }
}

/// The catch-all route: everything that is not `/whis/…` is the site.
pub async fn serve(
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<Arc<AppState>>,
    client: web::Data<awc::Client>,
) -> Result<HttpResponse, ApiError> {
    let raw_path = req.uri().path();
    let path = SitePath::parse(raw_path)?;
    if path.is_whis_internal() && !state.config.origin_only {
        return Err(ApiError::NotFound(path.as_str().to_string()));
    }
    match &state.config.origin {
        OriginConfig::Static { root } => serve_file(&req, root, &path, &state),
        OriginConfig::Proxy { base } => match serve_recent(&req, &path, &state) {
            Some(res) => Ok(res),
            None => proxy(&req, body, base, &state, &client).await,
        },
    }
}

fn serve_file(
    req: &HttpRequest,
    root: &Path,
    path: &SitePath,
    state: &Arc<AppState>,
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
    let file = resolve_file(root, path)?;
    let len = file.meta.len();
    let etag = etag_for(&file.meta);
    let last_modified = last_modified_for(&file.meta);
    let mut res = HttpResponse::Ok();
    res.insert_header((header::CONTENT_TYPE, content_type_for(&file.path)))
        .insert_header((header::ETAG, etag.clone()))
        .insert_header((header::LAST_MODIFIED, last_modified.clone()))
        .insert_header((header::CACHE_CONTROL, cache_control_for(&file.path)))
        .insert_header((header::ACCEPT_RANGES, "bytes"));

    if not_modified(req, &etag, mtime_secs(&file.meta)) {
        return Ok(res.status(StatusCode::NOT_MODIFIED).finish());
    }
    let Some((start, count)) = span(req, &mut res, len, &etag, &last_modified) else {
        return Ok(range_not_satisfiable(len));
    };
    if req.method() == Method::HEAD {
        return Ok(head_answer(res, count));
    }
    let stream = file_stream(file.path, start, count);
    state
        .metrics
        .origin_responses
        .fetch_add(1, Ordering::Relaxed);
    Ok(res.body(SizedStream::new(count, counted(stream, state))))
}

/// The part of a `len`-byte representation to send, `(start, count)`: all of
/// it, or the request's `Range` (then `res` becomes a 206 with its
/// `Content-Range`) when `If-Range` still names this version. `None`: the
/// range is unsatisfiable (answer with [`range_not_satisfiable`]).
fn span(
    req: &HttpRequest,
    res: &mut actix_web::HttpResponseBuilder,
    len: u64,
    etag: &str,
    last_modified: &str,
) -> Option<(u64, u64)> {
    let range = match req
        .headers()
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
    {
        Some(r) if if_range_holds(req, etag, last_modified) => parse_range(r, len),
        _ => RangeAnswer::Full,
    };
    match range {
        RangeAnswer::Full => Some((0, len)),
        RangeAnswer::Partial { start, end } => {
            res.status(StatusCode::PARTIAL_CONTENT)
                .insert_header((header::CONTENT_RANGE, format!("bytes {start}-{end}/{len}")));
            Some((start, end - start + 1))
        }
        RangeAnswer::Unsatisfiable => None,
    }
}

/// A HEAD answer: the size is announced; the (empty) body is never polled.
fn head_answer(mut res: actix_web::HttpResponseBuilder, count: u64) -> HttpResponse {
    let nothing = futures_util::stream::empty::<Result<Bytes, std::io::Error>>();
    res.body(SizedStream::new(count, nothing))
}

fn range_not_satisfiable(len: u64) -> HttpResponse {
    HttpResponse::RangeNotSatisfiable()
        .insert_header((header::CONTENT_RANGE, format!("bytes */{len}")))
        .insert_header((header::CONTENT_TYPE, "application/json"))
        .body(r#"{"error":"range_not_satisfiable","message":"the Range is outside the file"}"#)
}

/// A proxied resource whose body Whis fetched moments ago to hash it: answer
/// from those bytes instead of asking the origin again. Only a plain GET or
/// HEAD of the path (no query, no conditional other than `If-Range`), so the
/// answer is exactly what the origin sent for this version.
fn serve_recent(req: &HttpRequest, path: &SitePath, state: &Arc<AppState>) -> Option<HttpResponse> {
    if !matches!(*req.method(), Method::GET | Method::HEAD)
        || req.uri().query().is_some()
        || req.headers().contains_key(header::IF_NONE_MATCH)
        || req.headers().contains_key(header::IF_MODIFIED_SINCE)
    {
        return None;
    }
    let (manifest, body) = state.manifests.recent_body(path.as_str())?;
    let h = &manifest.headers;
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
    let etag = h.etag.as_deref().unwrap_or("");
    let last_modified = h.last_modified.as_deref().unwrap_or("");
    if req.headers().contains_key(header::IF_RANGE) && etag.is_empty() && last_modified.is_empty() {
        return None;
    }
    let len = body.len() as u64;
    let Some((start, count)) = span(req, &mut res, len, etag, last_modified) else {
        return Some(range_not_satisfiable(len));
    };
    if req.method() == Method::HEAD {
        return Some(head_answer(res, count));
    }
    state
        .metrics
        .origin_responses
        .fetch_add(1, Ordering::Relaxed);
    let part = body.slice(start as usize..(start + count) as usize);
    let once = futures_util::stream::once(async move { Ok::<_, std::io::Error>(part) });
    Some(res.body(SizedStream::new(count, counted(once, state))))
}

fn not_modified(req: &HttpRequest, etag: &str, mtime: u64) -> bool {
    if let Some(inm) = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
    {
        return inm.split(',').any(|t| {
            let t = t.trim();
            t == "*" || t.trim_start_matches("W/") == etag
        });
    }
    if let Some(ims) = req
        .headers()
        .get(header::IF_MODIFIED_SINCE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| httpdate::parse_http_date(v).ok())
    {
        let ims = ims
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        return mtime <= ims;
    }
    false
}

/// `If-Range` lets a client resume only if the file did not change: a strong
/// ETag must match exactly, a date must equal `Last-Modified`.
fn if_range_holds(req: &HttpRequest, etag: &str, last_modified: &str) -> bool {
    match req
        .headers()
        .get(header::IF_RANGE)
        .and_then(|v| v.to_str().ok())
    {
        None => true,
        Some(v) if v.starts_with('"') => v == etag,
        Some(v) if v.starts_with("W/") => false,
        Some(v) => v == last_modified,
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum RangeAnswer {
    Full,
    Partial { start: u64, end: u64 },
    Unsatisfiable,
}

/// A single `bytes=` range. Several ranges or a syntax error: serve the whole
/// file, as RFC 9110 allows a server to ignore `Range`.
pub fn parse_range(value: &str, len: u64) -> RangeAnswer {
    let Some(spec) = value.trim().strip_prefix("bytes=") else {
        return RangeAnswer::Full;
    };
    if spec.contains(',') {
        return RangeAnswer::Full;
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return RangeAnswer::Full;
    };
    let (a, b) = (a.trim(), b.trim());
    let parsed = match (a.is_empty(), b.is_empty()) {
        (true, true) => return RangeAnswer::Full,
        (true, false) => match b.parse::<u64>() {
            Ok(0) => return RangeAnswer::Unsatisfiable,
            Ok(n) => (len.saturating_sub(n), len.saturating_sub(1)),
            Err(_) => return RangeAnswer::Full,
        },
        (false, _) => {
            let Ok(start) = a.parse::<u64>() else {
                return RangeAnswer::Full;
            };
            let end = if b.is_empty() {
                len.saturating_sub(1)
            } else {
                match b.parse::<u64>() {
                    Ok(e) if e >= start => e.min(len.saturating_sub(1)),
                    _ => return RangeAnswer::Full,
                }
            };
            (start, end)
        }
    };
    if len == 0 || parsed.0 >= len {
        return RangeAnswer::Unsatisfiable;
    }
    RangeAnswer::Partial {
        start: parsed.0,
        end: parsed.1,
    }
}

fn file_stream(
    path: PathBuf,
    start: u64,
    count: u64,
) -> impl Stream<Item = Result<Bytes, std::io::Error>> {
    futures_util::stream::unfold(
        (None::<tokio::fs::File>, path, start, count),
        |(file, path, pos, left)| async move {
            if left == 0 {
                return None;
            }
            let mut file = match file {
                Some(f) => f,
                None => match open_at(&path, pos).await {
                    Ok(f) => f,
                    Err(e) => return Some((Err(e), (None, path, pos, 0))),
                },
            };
            let want = left.min(64 * 1024) as usize;
            let mut buf = vec![0u8; want];
            match file.read(&mut buf).await {
                Ok(0) => Some((
                    Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "file shrank while being sent",
                    )),
                    (None, path, pos, 0),
                )),
                Ok(n) => {
                    buf.truncate(n);
                    Some((
                        Ok(Bytes::from(buf)),
                        (Some(file), path, pos + n as u64, left - n as u64),
                    ))
                }
                Err(e) => Some((Err(e), (None, path, pos, 0))),
            }
        },
    )
}

async fn open_at(path: &Path, pos: u64) -> std::io::Result<tokio::fs::File> {
    let mut f = tokio::fs::File::open(path).await?;
    f.seek(std::io::SeekFrom::Start(pos)).await?;
    Ok(f)
}

/// Counts body bytes into `whis_origin_bytes_total` as they are actually
/// handed to the connection, so an aborted transfer counts only what went out.
pub fn counted<S, E>(
    stream: S,
    state: &Arc<AppState>,
) -> impl Stream<Item = Result<Bytes, E>> + 'static
where
    S: Stream<Item = Result<Bytes, E>> + 'static,
{
    let state = Arc::clone(state);
    stream.inspect(move |chunk| {
        if let Ok(bytes) = chunk {
            state
                .metrics
                .origin_bytes
                .fetch_add(bytes.len() as u64, Ordering::Relaxed);
        }
    })
}

/// Headers that describe one connection, not the message (RFC 9110 §7.6.1).
fn hop_by_hop(name: &header::HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
    )
}

/// Send a request without a body. A pooled keep-alive connection that the
/// origin had already closed fails before one byte of the answer arrives
/// (`Disconnected`); nothing was processed, so the request goes once more,
/// on a fresh connection.
pub(crate) async fn send_bodiless(
    request: awc::ClientRequest,
) -> <awc::SendClientRequest as std::future::Future>::Output {
    use awc::error::{ConnectError, SendRequestError};
    let frozen = request.freeze().map_err(SendRequestError::from)?;
    match frozen.send().await {
        Err(SendRequestError::Connect(ConnectError::Disconnected)) => {
            log::debug!("origin closed a pooled connection; sending again");
            frozen.send().await
        }
        other => other,
    }
}

async fn proxy(
    req: &HttpRequest,
    body: web::Payload,
    base: &str,
    state: &Arc<AppState>,
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
    state
        .metrics
        .origin_responses
        .fetch_add(1, Ordering::Relaxed);
    let body = counted(res, state);
    Ok(match length {
        Some(n) => out.body(SizedStream::new(n, body)),
        None => out.streaming(body),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_follow_rfc_9110() {
        use RangeAnswer::*;
        assert_eq!(
            parse_range("bytes=0-99", 1000),
            Partial { start: 0, end: 99 }
        );
        assert_eq!(
            parse_range("bytes=900-", 1000),
            Partial {
                start: 900,
                end: 999
            }
        );
        assert_eq!(
            parse_range("bytes=-100", 1000),
            Partial {
                start: 900,
                end: 999
            }
        );
        assert_eq!(
            parse_range("bytes=-5000", 1000),
            Partial { start: 0, end: 999 }
        );
        assert_eq!(
            parse_range("bytes=990-5000", 1000),
            Partial {
                start: 990,
                end: 999
            }
        );
        assert_eq!(parse_range("bytes=1000-", 1000), Unsatisfiable);
        assert_eq!(parse_range("bytes=-0", 1000), Unsatisfiable);
        assert_eq!(parse_range("bytes=0-0", 0), Unsatisfiable);
        // Syntax errors and multi-ranges are ignored: the whole file is sent.
        for ignored in [
            "bytes=5-2",
            "bytes=a-b",
            "items=0-1",
            "bytes=0-1,5-6",
            "bytes=-",
            "bytes",
        ] {
            assert_eq!(parse_range(ignored, 1000), Full, "{ignored}");
        }
    }
}
