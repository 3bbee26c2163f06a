//! The manifest service: piece hashes for every shareable resource.
//!
//! A manifest is computed once per file version and cached by its validator
//! (size + mtime for files; ETag/Last-Modified for a proxied origin). Hashing
//! a path runs one at a time under that path's lock in `computing`, and the
//! cache is checked again inside, so two visitors asking at once never hash
//! the same version twice; different paths are hashed in parallel (a page's
//! twelve images must not queue behind each other on a slow origin).

use std::collections::HashMap;
use std::io::Read;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::http::{header, StatusCode};
use futures_util::StreamExt;
use whis_core::manifest::{ineligible_reason, Manifest, ManifestBuilder, ReplayHeaders};
use whis_core::path::SitePath;

use crate::config::{Config, OriginConfig};
use crate::error::ApiError;
use crate::origin;
use crate::state::AppState;

/// A proxied manifest is trusted this long before the origin is asked again
/// (cheaply, with a conditional request).
const PROXY_REVALIDATE: Duration = Duration::from_secs(10);
/// Largest resource hashed for a manifest (bigger ones go straight to the origin).
const MAX_RESOURCE: u64 = 2 * 1024 * 1024 * 1024;
/// A proxied body fetched to be hashed is kept this long, so that the first
/// visitors' Range requests for it do not cross the origin's uplink again.
const BODY_TTL: Duration = Duration::from_secs(120);
/// Bytes of such bodies kept at once, and the largest one kept.
const BODY_BUDGET: usize = 256 * 1024 * 1024;
const BODY_MAX: usize = 64 * 1024 * 1024;

#[derive(Clone, PartialEq, Eq, Debug)]
enum Validator {
    File {
        len: u64,
        etag: String,
    },
    Http {
        etag: Option<String>,
        last_modified: Option<String>,
    },
}

struct Entry {
    validator: Validator,
    manifest: Arc<Manifest>,
    checked: Instant,
}

pub struct ManifestService {
    piece_size: u32,
    min_size: u64,
    cache: Mutex<HashMap<String, Entry>>,
    /// Proxied paths found ineligible or missing, remembered for
    /// `PROXY_REVALIDATE` so visitors do not make us hammer the origin.
    refused: Mutex<HashMap<String, (Instant, u16, String)>>,
    computing: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Recently hashed proxied bodies by path (see `BODY_TTL`): looked up on
    /// every proxied request, so a map, not a list.
    bodies: Mutex<HashMap<String, RecentBody>>,
}

struct RecentBody {
    manifest: Arc<Manifest>,
    body: bytes::Bytes,
    at: Instant,
}

/// Held while one path's manifest is computed; the last holder removes the
/// path's lock, so the map only ever holds paths being worked on.
struct PathLock<'a> {
    key: String,
    locks: &'a Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    _guard: tokio::sync::OwnedMutexGuard<()>,
}

impl Drop for PathLock<'_> {
    fn drop(&mut self) {
        let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
        // The map's Arc and our guard's: nobody else is waiting.
        if locks
            .get(&self.key)
            .is_some_and(|l| Arc::strong_count(l) <= 2)
        {
            locks.remove(&self.key);
        }
    }
}

impl ManifestService {
    pub fn new(config: &Config) -> Self {
        ManifestService {
            piece_size: config.piece_size,
            min_size: config.min_size,
            cache: Mutex::new(HashMap::new()),
            refused: Mutex::new(HashMap::new()),
            computing: Mutex::new(HashMap::new()),
            bodies: Mutex::new(HashMap::new()),
        }
    }

    /// Wait for this path's turn to compute.
    async fn lock_path(&self, key: &str) -> PathLock<'_> {
        let lock = {
            let mut locks = self.computing.lock().unwrap_or_else(|p| p.into_inner());
            Arc::clone(locks.entry(key.to_string()).or_default())
        };
        PathLock {
            key: key.to_string(),
            locks: &self.computing,
            _guard: lock.lock_owned().await,
        }
    }

    fn cached(&self, key: &str, validator: Option<&Validator>) -> Option<Arc<Manifest>> {
        let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        let e = cache.get(key)?;
        match validator {
            Some(v) if *v != e.validator => None,
            _ => Some(Arc::clone(&e.manifest)),
        }
    }

    fn store(&self, key: String, validator: Validator, manifest: Arc<Manifest>) {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache.insert(
            key,
            Entry {
                validator,
                manifest,
                checked: Instant::now(),
            },
        );
    }

    /// A proxied body fetched for hashing within `BODY_TTL`, with its manifest.
    pub fn recent_body(&self, path: &str) -> Option<(Arc<Manifest>, bytes::Bytes)> {
        let bodies = self.bodies.lock().unwrap_or_else(|p| p.into_inner());
        bodies
            .get(path)
            .filter(|b| b.at.elapsed() <= BODY_TTL)
            .map(|b| (Arc::clone(&b.manifest), b.body.clone()))
    }

    /// Keep a hashed body; drop expired ones, then the oldest over the budget.
    /// Runs once per hashed version, so the scans here are off the hot path.
    fn keep_body(&self, path: &str, manifest: &Arc<Manifest>, body: bytes::Bytes) {
        let mut bodies = self.bodies.lock().unwrap_or_else(|p| p.into_inner());
        bodies.retain(|_, b| b.at.elapsed() <= BODY_TTL);
        bodies.insert(
            path.to_string(),
            RecentBody {
                manifest: Arc::clone(manifest),
                body,
                at: Instant::now(),
            },
        );
        let mut total: usize = bodies.values().map(|b| b.body.len()).sum();
        while total > BODY_BUDGET {
            let Some(oldest) = bodies
                .iter()
                .min_by_key(|(_, b)| b.at)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            if let Some(old) = bodies.remove(&oldest) {
                total -= old.body.len();
            }
        }
    }

    /// The manifest already computed for `path`, if any (never computes one).
    pub fn peek(&self, path: &str) -> Option<Arc<Manifest>> {
        self.cached(path, None)
    }

    pub fn len(&self) -> usize {
        self.cache.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn check_size(&self, size: u64) -> Result<(), ApiError> {
        if size < self.min_size {
            return Err(ApiError::Ineligible(format!(
                "{size} bytes is under the minimum of {} worth sharing",
                self.min_size
            )));
        }
        if size > MAX_RESOURCE {
            return Err(ApiError::Ineligible(format!(
                "{size} bytes is over the largest shared resource"
            )));
        }
        Ok(())
    }

    /// The manifest for `path`, computing it if this version is new.
    pub async fn get(
        &self,
        state: &Arc<AppState>,
        client: &awc::Client,
        path: &SitePath,
    ) -> Result<Arc<Manifest>, ApiError> {
        if path.is_whis_internal() {
            return Err(ApiError::Ineligible(
                "Whis's own files are not shared".into(),
            ));
        }
        match &state.config.origin {
            OriginConfig::Static { root } => self.for_file(state, root, path).await,
            OriginConfig::Proxy { base } => {
                let key = path.as_str().to_string();
                if let Some((at, status, why)) = self
                    .refused
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .get(&key)
                {
                    if at.elapsed() < PROXY_REVALIDATE {
                        return Err(if *status == 404 {
                            ApiError::NotFound(key)
                        } else {
                            ApiError::Ineligible(why.clone())
                        });
                    }
                }
                let result = self.for_proxied(state, client, base, path).await;
                if let Err(e @ (ApiError::Ineligible(_) | ApiError::NotFound(_))) = &result {
                    let status = if matches!(e, ApiError::NotFound(_)) {
                        404
                    } else {
                        403
                    };
                    let mut refused = self.refused.lock().unwrap_or_else(|p| p.into_inner());
                    if refused.len() > 10_000 {
                        refused.retain(|_, (at, _, _)| at.elapsed() < PROXY_REVALIDATE);
                    }
                    refused.insert(key, (Instant::now(), status, e.to_string()));
                }
                result
            }
        }
    }

    pub(crate) async fn for_file(
        &self,
        state: &Arc<AppState>,
        root: &std::path::Path,
        path: &SitePath,
    ) -> Result<Arc<Manifest>, ApiError> {
        let file = origin::resolve_file(root, path)?;
        self.check_size(file.meta.len())?;
        let validator = Validator::File {
            len: file.meta.len(),
            etag: origin::etag_for(&file.meta),
        };
        if let Some(m) = self.cached(&file.site_path, Some(&validator)) {
            return Ok(m);
        }
        let _one_at_a_time = self.lock_path(&file.site_path).await;
        if let Some(m) = self.cached(&file.site_path, Some(&validator)) {
            return Ok(m);
        }
        let headers = ReplayHeaders {
            content_type: Some(origin::content_type_for(&file.path)),
            etag: Some(origin::etag_for(&file.meta)),
            last_modified: Some(origin::last_modified_for(&file.meta)),
            cache_control: Some(origin::cache_control_for(&file.path).to_string()),
        };
        let piece_size = self.piece_size;
        let fs_path = file.path.clone();
        let site_path = path.as_str().to_string();
        let expected = file.meta.len();
        let manifest = tokio::task::spawn_blocking(move || -> std::io::Result<Manifest> {
            let mut f = std::fs::File::open(&fs_path)?;
            let mut builder = ManifestBuilder::new(piece_size);
            let mut buf = vec![0u8; 256 * 1024];
            loop {
                let n = f.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                builder.update(&buf[..n]);
            }
            if builder.size() != expected {
                return Err(std::io::Error::other("file changed while it was hashed"));
            }
            Ok(builder.finish(&site_path, headers))
        })
        .await
        .map_err(|e| ApiError::Internal(format!("hashing task: {e}")))?
        .map_err(|e| ApiError::Unavailable(format!("could not hash {}: {e}", path.as_str())))?;
        state
            .metrics
            .manifests_computed
            .fetch_add(1, Ordering::Relaxed);
        log::info!(
            "manifest {} = {} ({} pieces)",
            path.as_str(),
            &manifest.id[..12],
            manifest.pieces.len()
        );
        let manifest = Arc::new(manifest);
        self.store(file.site_path, validator, Arc::clone(&manifest));
        Ok(manifest)
    }

    async fn for_proxied(
        &self,
        state: &Arc<AppState>,
        client: &awc::Client,
        base: &str,
        path: &SitePath,
    ) -> Result<Arc<Manifest>, ApiError> {
        let key = path.as_str().to_string();
        let fresh = {
            let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
            cache
                .get(&key)
                .filter(|e| e.checked.elapsed() < PROXY_REVALIDATE)
                .map(|e| Arc::clone(&e.manifest))
        };
        if let Some(m) = fresh {
            return Ok(m);
        }
        let _one_at_a_time = self.lock_path(&key).await;
        let previous = {
            let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
            cache
                .get(&key)
                .map(|e| (e.validator.clone(), Arc::clone(&e.manifest), e.checked))
        };
        if let Some((_, m, checked)) = &previous {
            if checked.elapsed() < PROXY_REVALIDATE {
                return Ok(Arc::clone(m));
            }
        }
        let url = format!("{base}{}", path.as_str());
        let mut request = client
            .get(&url)
            .no_decompress()
            .timeout(Duration::from_secs(60));
        if let Some((
            Validator::Http {
                etag,
                last_modified,
            },
            _,
            _,
        )) = &previous
        {
            if let Some(e) = etag {
                request = request.insert_header((header::IF_NONE_MATCH, e.as_str()));
            } else if let Some(lm) = last_modified {
                request = request.insert_header((header::IF_MODIFIED_SINCE, lm.as_str()));
            }
        }
        let mut res = origin::send_bodiless(request)
            .await
            .map_err(|e| ApiError::Origin(format!("{url}: {e}")))?;
        if res.status() == StatusCode::NOT_MODIFIED {
            if let Some((v, m, _)) = previous {
                self.store(key, v, Arc::clone(&m));
                return Ok(m);
            }
        }
        match res.status() {
            StatusCode::OK => {}
            StatusCode::NOT_FOUND | StatusCode::GONE => return Err(ApiError::NotFound(key)),
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
                if b.len() + chunk.len() <= BODY_MAX {
                    b.extend_from_slice(&chunk);
                } else {
                    body = None;
                }
            }
            state
                .metrics
                .manifest_fetch_bytes
                .fetch_add(chunk.len() as u64, Ordering::Relaxed);
            if builder.size() > MAX_RESOURCE {
                return Err(ApiError::Ineligible(
                    "the resource is over the largest shared size".into(),
                ));
            }
        }
        self.check_size(builder.size())?;
        let manifest = Arc::new(builder.finish(path.as_str(), headers));
        state
            .metrics
            .manifests_computed
            .fetch_add(1, Ordering::Relaxed);
        log::info!(
            "manifest {} = {} (proxied)",
            path.as_str(),
            &manifest.id[..12]
        );
        if let Some(b) = body {
            self.keep_body(&key, &manifest, b.freeze());
        }
        self.store(key, validator, Arc::clone(&manifest));
        Ok(manifest)
    }
}

/// Hash every shareable file under a static root ahead of the first visitor.
pub async fn warm(state: Arc<AppState>) {
    let OriginConfig::Static { root } = &state.config.origin else {
        return;
    };
    let mut stack = vec![(root.clone(), String::new())];
    let mut n = 0;
    while let Some((dir, prefix)) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            let site = format!("{prefix}/{name}");
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if kind.is_dir() {
                stack.push((entry.path(), site));
            } else if kind.is_file()
                && entry
                    .metadata()
                    .is_ok_and(|m| m.len() >= state.config.min_size)
            {
                let encoded = encode_path(&site);
                if let Ok(path) = SitePath::parse(&encoded) {
                    if state.manifests.for_file(&state, root, &path).await.is_ok() {
                        n += 1;
                    }
                }
            }
        }
    }
    log::info!("manifests ready for {n} files under {}", root.display());
}

/// Percent-encode what `SitePath::parse` would otherwise read as syntax.
fn encode_path(p: &str) -> String {
    let mut out = String::with_capacity(p.len());
    for c in p.chars() {
        match c {
            '%' => out.push_str("%25"),
            '?' => out.push_str("%3F"),
            '#' => out.push_str("%23"),
            c => out.push(c),
        }
    }
    out
}
