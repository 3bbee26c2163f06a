//! Fetching a proxied resource to hash it: one (conditional) GET to the
//! upstream origin, its headers judged, its body hashed as it streams past
//! and kept if it is small enough.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use actix_web::http::{header, StatusCode};
use futures_util::StreamExt;
use whis_core::manifest::{ineligible_reason, Manifest, ManifestBuilder, ReplayHeaders};
use whis_core::manifest_cache::Validator;

use crate::error::ApiError;
use crate::upstream::send_bodiless;

/// What the origin answered.
pub enum Fetched {
    /// `304`: the version asked about is still current.
    NotModified,
    New {
        validator: Validator,
        manifest: Box<Manifest>,
        /// The whole body, unless it grew past the keep limit.
        body: Option<bytes::Bytes>,
    },
}

pub struct Fetch<'a> {
    pub client: &'a awc::Client,
    pub url: String,
    pub site_path: &'a str,
    pub piece_size: u32,
    /// Largest resource hashed at all.
    pub max_resource: u64,
    /// Largest body kept in memory.
    pub keep_max: usize,
    /// Validators of the version held, for a conditional request.
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    /// Counts the bytes fetched (`whis_manifest_fetch_bytes_total`).
    pub fetched_bytes: &'a AtomicU64,
}

impl Fetch<'_> {
    pub async fn run(self) -> Result<Fetched, ApiError> {
        let url = &self.url;
        let mut request = self
            .client
            .get(url)
            .no_decompress()
            .timeout(Duration::from_secs(60));
        if let Some(e) = &self.etag {
            request = request.insert_header((header::IF_NONE_MATCH, e.as_str()));
        } else if let Some(lm) = &self.last_modified {
            request = request.insert_header((header::IF_MODIFIED_SINCE, lm.as_str()));
        }
        let mut res = send_bodiless(request)
            .await
            .map_err(|e| ApiError::Origin(format!("{url}: {e}")))?;
        let asked_conditionally = self.etag.is_some() || self.last_modified.is_some();
        match res.status() {
            StatusCode::OK => {}
            StatusCode::NOT_MODIFIED if asked_conditionally => return Ok(Fetched::NotModified),
            StatusCode::NOT_FOUND | StatusCode::GONE => {
                return Err(ApiError::NotFound(self.site_path.to_string()))
            }
            other => return Err(ApiError::Origin(format!("{url} answered {other}"))),
        }
        let h = res.headers();
        let text = |name: header::HeaderName| {
            h.get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        if let Some(reason) = ineligible_reason(
            text(header::CACHE_CONTROL).as_deref(),
            h.contains_key(header::SET_COOKIE),
            text(header::VARY).as_deref(),
        ) {
            return Err(ApiError::Ineligible(reason.into()));
        }
        if h.contains_key(header::CONTENT_ENCODING) {
            return Err(ApiError::Ineligible(
                "the origin sent an encoded (compressed) body".into(),
            ));
        }
        let headers = ReplayHeaders {
            content_type: text(header::CONTENT_TYPE),
            etag: text(header::ETAG),
            last_modified: text(header::LAST_MODIFIED),
            cache_control: text(header::CACHE_CONTROL),
        };
        let validator = Validator::Http {
            etag: headers.etag.clone(),
            last_modified: headers.last_modified.clone(),
        };
        let mut builder = ManifestBuilder::new(self.piece_size);
        let mut body = Some(bytes::BytesMut::new());
        while let Some(chunk) = res.next().await {
            let chunk = chunk.map_err(|e| ApiError::Origin(format!("{url}: {e}")))?;
            builder.update(&chunk);
            if let Some(b) = body.as_mut() {
                if b.len() + chunk.len() <= self.keep_max {
                    b.extend_from_slice(&chunk);
                } else {
                    body = None;
                }
            }
            self.fetched_bytes
                .fetch_add(chunk.len() as u64, Ordering::Relaxed);
            if builder.size() > self.max_resource {
                return Err(ApiError::Ineligible(
                    "the resource is over the largest shared size".into(),
                ));
            }
        }
        Ok(Fetched::New {
            validator,
            manifest: Box::new(builder.finish(self.site_path, headers)),
            body: body.map(bytes::BytesMut::freeze),
        })
    }
}
