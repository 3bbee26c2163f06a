//! The manifest service: piece hashes for every shareable resource.
//!
//! The caching rules live in the core ([`ManifestCache`]); this module does
//! the IO they call for. Computing a path runs one at a time under that
//! path's lock ([`PathLocks`]), and the cache is asked again inside, so two
//! visitors asking at once never hash the same version twice; different
//! paths are hashed in parallel (a page's twelve images must not queue
//! behind each other on a slow origin).

mod fetch;
mod hash_file;
mod path_locks;
mod walk;

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use bytes::Bytes;
use whis_core::manifest::{Manifest, ReplayHeaders};
use whis_core::manifest_cache::{CachePolicy, ManifestCache, ProxyLookup, Refusal, Validator};
use whis_core::path::SitePath;

use crate::config::{Config, OriginConfig};
use crate::error::ApiError;
use crate::site_files;
use fetch::{Fetch, Fetched};
use path_locks::PathLocks;

/// Largest resource hashed for a manifest (bigger ones go straight to the origin).
pub const MAX_RESOURCE: u64 = 2 * 1024 * 1024 * 1024;

pub struct ManifestService {
    origin: OriginConfig,
    piece_size: u32,
    min_size: u64,
    cache: Mutex<ManifestCache<Bytes>>,
    locks: PathLocks,
    computed: AtomicU64,
    fetched_bytes: AtomicU64,
}

impl ManifestService {
    pub fn new(config: &Config) -> Self {
        ManifestService {
            origin: config.origin.clone(),
            piece_size: config.piece_size,
            min_size: config.min_size,
            cache: Mutex::new(ManifestCache::new(CachePolicy::default())),
            locks: PathLocks::default(),
            computed: AtomicU64::new(0),
            fetched_bytes: AtomicU64::new(0),
        }
    }

    fn cache(&self) -> MutexGuard<'_, ManifestCache<Bytes>> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Manifests held.
    pub fn len(&self) -> usize {
        self.cache().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Manifests hashed since start (once per resource version).
    pub fn computed(&self) -> u64 {
        self.computed.load(Ordering::Relaxed)
    }

    /// Bytes fetched from an upstream origin to hash manifests.
    pub fn fetched_bytes(&self) -> u64 {
        self.fetched_bytes.load(Ordering::Relaxed)
    }

    /// The manifest already computed for `path`, if any (never computes one).
    pub fn peek(&self, path: &str) -> Option<Arc<Manifest>> {
        self.cache().peek(path)
    }

    /// A proxied body hashed moments ago, with its manifest.
    pub fn kept_body(&self, path: &str) -> Option<(Arc<Manifest>, Bytes)> {
        self.cache().kept_body(Instant::now(), path)
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

    fn computed_one(&self, manifest: &Manifest, how: &str) {
        self.computed.fetch_add(1, Ordering::Relaxed);
        log::info!(
            "manifest {} = {} ({} pieces, {how})",
            manifest.path,
            &manifest.id[..12],
            manifest.pieces.len()
        );
    }

    /// The manifest for `path`, computing it if this version is new.
    pub async fn get(
        &self,
        client: &awc::Client,
        path: &SitePath,
    ) -> Result<Arc<Manifest>, ApiError> {
        if path.is_whis_internal() {
            return Err(ApiError::Ineligible(
                "Whis's own files are not shared".into(),
            ));
        }
        match &self.origin {
            OriginConfig::Static { root } => self.for_file(root, path).await,
            OriginConfig::Proxy { base } => self.for_proxied(client, base, path).await,
        }
    }

    async fn for_file(&self, root: &Path, path: &SitePath) -> Result<Arc<Manifest>, ApiError> {
        let file = site_files::resolve_file(root, path)?;
        self.check_size(file.meta.len())?;
        let etag = site_files::etag_for(&file.meta);
        let validator = Validator::File {
            len: file.meta.len(),
            etag: etag.clone(),
        };
        if let Some(m) = self.cache().file(&file.site_path, &validator) {
            return Ok(m);
        }
        let _one_at_a_time = self.locks.lock(&file.site_path).await;
        if let Some(m) = self.cache().file(&file.site_path, &validator) {
            return Ok(m);
        }
        let headers = ReplayHeaders {
            content_type: Some(site_files::content_type_for(&file.path).to_string()),
            etag: Some(etag),
            last_modified: Some(site_files::last_modified_for(&file.meta)),
            cache_control: Some(site_files::cache_control_for(&file.path).to_string()),
        };
        let manifest = hash_file::hash_file(
            file.path.clone(),
            path.as_str().to_string(),
            file.meta.len(),
            self.piece_size,
            headers,
        )
        .await
        .map_err(|e| ApiError::Unavailable(format!("could not hash {}: {e}", path.as_str())))?;
        self.computed_one(&manifest, "file");
        let manifest = Arc::new(manifest);
        self.cache().store(
            Instant::now(),
            &file.site_path,
            validator,
            Arc::clone(&manifest),
        );
        Ok(manifest)
    }

    async fn for_proxied(
        &self,
        client: &awc::Client,
        base: &str,
        path: &SitePath,
    ) -> Result<Arc<Manifest>, ApiError> {
        let key = path.as_str();
        let refused = |r: Refusal| match r {
            Refusal::NotFound => ApiError::NotFound(key.to_string()),
            Refusal::Ineligible(why) => ApiError::Ineligible(why),
        };
        match self.cache().proxied(Instant::now(), key) {
            ProxyLookup::Fresh(m) => return Ok(m),
            ProxyLookup::Refused(r) => return Err(refused(r)),
            ProxyLookup::Revalidate { .. } | ProxyLookup::Fetch => {}
        }
        let _one_at_a_time = self.locks.lock(key).await;
        let (etag, last_modified) = match self.cache().proxied(Instant::now(), key) {
            ProxyLookup::Fresh(m) => return Ok(m),
            ProxyLookup::Refused(r) => return Err(refused(r)),
            ProxyLookup::Revalidate {
                etag,
                last_modified,
            } => (etag, last_modified),
            ProxyLookup::Fetch => (None, None),
        };
        let result = self
            .fetch_and_hash(client, base, key, etag, last_modified)
            .await;
        // The origin said no: answer the same for a while without asking.
        let refusal = match &result {
            Err(ApiError::NotFound(_)) => Some(Refusal::NotFound),
            Err(e @ ApiError::Ineligible(_)) => Some(Refusal::Ineligible(e.to_string())),
            _ => None,
        };
        if let Some(r) = refusal {
            self.cache().refuse(Instant::now(), key, r);
        }
        result
    }

    /// Under the path's lock: ask the origin, hash what is new, cache it.
    async fn fetch_and_hash(
        &self,
        client: &awc::Client,
        base: &str,
        key: &str,
        etag: Option<String>,
        last_modified: Option<String>,
    ) -> Result<Arc<Manifest>, ApiError> {
        let keep_max = self.cache().policy().body_max;
        let fetched = Fetch {
            client,
            url: format!("{base}{key}"),
            site_path: key,
            piece_size: self.piece_size,
            max_resource: MAX_RESOURCE,
            keep_max,
            etag,
            last_modified,
            fetched_bytes: &self.fetched_bytes,
        }
        .run()
        .await?;
        let (validator, manifest, body) = match fetched {
            Fetched::NotModified => {
                return self
                    .cache()
                    .not_modified(Instant::now(), key)
                    .ok_or_else(|| ApiError::Origin(format!("{base}{key} answered 304")));
            }
            Fetched::New {
                validator,
                manifest,
                body,
            } => (validator, manifest, body),
        };
        self.check_size(manifest.size)?;
        self.computed_one(&manifest, "proxied");
        let manifest: Arc<Manifest> = Arc::from(manifest);
        let now = Instant::now();
        let mut cache = self.cache();
        if let Some(b) = body {
            cache.keep_body(now, key, Arc::clone(&manifest), b);
        }
        cache.store(now, key, validator, Arc::clone(&manifest));
        Ok(manifest)
    }

    /// Hash every shareable file under a static root ahead of the first visitor.
    pub async fn warm(&self) {
        let OriginConfig::Static { root } = &self.origin else {
            return;
        };
        let root = root.clone();
        let min_size = self.min_size;
        let paths = tokio::task::spawn_blocking({
            let root = root.clone();
            move || walk::shareable_files(&root, min_size)
        })
        .await
        .unwrap_or_default();
        let mut n = 0;
        for path in paths {
            if self.for_file(&root, &path).await.is_ok() {
                n += 1;
            }
        }
        log::info!("manifests ready for {n} files under {}", root.display());
    }
}
