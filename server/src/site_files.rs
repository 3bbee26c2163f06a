//! The static site on disk: which file a request path names, and the
//! headers that describe a version of it. Shared by the origin (which
//! serves the file) and the manifest service (which replays the headers).

use std::fs::Metadata;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use whis_core::path::SitePath;

use crate::error::ApiError;

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

/// The strong ETag `actix-files` sends for this file (inode, size and
/// modification time to the nanosecond). The manifest replays it and the
/// service worker sends it back in `If-Range`, so it must be the very value
/// `NamedFile` computes; `NamedFile::etag` is private to that crate, so the
/// formula is repeated here and pinned by a test against `NamedFile` itself.
pub fn etag_for(meta: &Metadata) -> String {
    #[cfg(unix)]
    let ino = std::os::unix::fs::MetadataExt::ino(meta);
    #[cfg(not(unix))]
    let ino = 0u64;
    let (secs, nanos) = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| (d.as_secs(), d.subsec_nanos()))
        .unwrap_or((0, 0));
    format!("\"{ino:x}:{:x}:{secs:x}:{nanos:x}\"", meta.len())
}

pub fn last_modified_for(meta: &Metadata) -> String {
    let secs = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_secs())
        .unwrap_or(0);
    httpdate::fmt_http_date(UNIX_EPOCH + std::time::Duration::from_secs(secs))
}

/// The type by extension; text and scripts are declared UTF-8.
pub fn content_type_for(path: &Path) -> mime_guess::Mime {
    let mime = mime_guess::from_path(path).first_or_octet_stream();
    let utf8 = mime.type_() == mime_guess::mime::TEXT || mime.subtype() == "javascript";
    match utf8 {
        true => format!("{mime}; charset=utf-8")
            .parse()
            .expect("a known type with a charset parameter is a valid type"),
        false => mime,
    }
}

/// Pages revalidate every time; assets may be cached for five minutes.
pub fn cache_control_for(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()) {
        Some("html") | Some("htm") => "no-cache",
        _ => "public, max-age=300",
    }
}
