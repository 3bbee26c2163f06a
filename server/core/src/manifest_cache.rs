//! The manifest service's caching policy, without IO: when a manifest may be
//! served from the cache, when the origin must be asked again, which paths are
//! refused without asking, and which hashed proxied bodies are kept.
//!
//! The server keeps one [`ManifestCache`] behind a lock and asks it before
//! every hash or origin request; time is an argument, so the policy is tested
//! on a virtual clock below.
//!
//! - A static file's manifest is valid while the file's validator (size and
//!   ETag, which covers the mtime) is the same: there is no time limit.
//! - A proxied manifest is trusted for `revalidate_after`; after that the
//!   origin is asked with a conditional request, and a `304` trusts it again.
//! - A proxied path the origin said is missing or not shareable is refused
//!   for `refusal_ttl` without asking (visitors must not make Whis hammer
//!   the origin); at most `max_refusals` are remembered.
//! - A proxied body fetched to hash it is kept for `body_ttl`, so the first
//!   visitors' `Range` requests do not cross the origin's uplink again; one
//!   body at most `body_max` bytes, all of them at most `body_budget` (the
//!   oldest goes first).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::manifest::Manifest;
use crate::ttl::TtlMap;

#[derive(Debug, Clone)]
pub struct CachePolicy {
    pub revalidate_after: Duration,
    pub refusal_ttl: Duration,
    pub max_refusals: usize,
    pub body_ttl: Duration,
    pub body_budget: usize,
    pub body_max: usize,
}

impl Default for CachePolicy {
    fn default() -> Self {
        CachePolicy {
            revalidate_after: Duration::from_secs(10),
            refusal_ttl: Duration::from_secs(10),
            max_refusals: 10_000,
            body_ttl: Duration::from_secs(120),
            body_budget: 256 * 1024 * 1024,
            body_max: 64 * 1024 * 1024,
        }
    }
}

/// What identifies one version of a resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Validator {
    File {
        len: u64,
        etag: String,
    },
    Http {
        etag: Option<String>,
        last_modified: Option<String>,
    },
}

/// Why a proxied path has no manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    NotFound,
    Ineligible(String),
}

/// What to do for a proxied path.
#[derive(Debug, Clone, PartialEq)]
pub enum ProxyLookup {
    /// Serve this manifest; the origin was asked recently enough.
    Fresh(Arc<Manifest>),
    /// The origin said no recently: answer the same without asking.
    Refused(Refusal),
    /// Ask the origin whether this version is still current (a conditional
    /// request with these validators); on `304` call
    /// [`ManifestCache::not_modified`].
    Revalidate {
        etag: Option<String>,
        last_modified: Option<String>,
    },
    /// Nothing known: fetch and hash.
    Fetch,
}

#[derive(Debug)]
struct Entry {
    validator: Validator,
    manifest: Arc<Manifest>,
    checked: Instant,
}

#[derive(Debug)]
struct KeptBody<B> {
    manifest: Arc<Manifest>,
    body: B,
    at: Instant,
}

#[derive(Debug)]
pub struct ManifestCache<B> {
    policy: CachePolicy,
    entries: HashMap<String, Entry>,
    refusals: TtlMap<Refusal>,
    bodies: HashMap<String, KeptBody<B>>,
}

impl<B: Clone + AsRef<[u8]>> ManifestCache<B> {
    pub fn new(policy: CachePolicy) -> Self {
        let refusals = TtlMap::new(policy.refusal_ttl, policy.max_refusals);
        ManifestCache {
            policy,
            entries: HashMap::new(),
            refusals,
            bodies: HashMap::new(),
        }
    }

    pub fn policy(&self) -> &CachePolicy {
        &self.policy
    }

    /// Manifests held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The manifest last computed for `path`, of whichever version.
    pub fn peek(&self, path: &str) -> Option<Arc<Manifest>> {
        self.entries.get(path).map(|e| Arc::clone(&e.manifest))
    }

    /// A static file's manifest, if it was hashed for this very version.
    pub fn file(&self, path: &str, validator: &Validator) -> Option<Arc<Manifest>> {
        self.entries
            .get(path)
            .filter(|e| e.validator == *validator)
            .map(|e| Arc::clone(&e.manifest))
    }

    pub fn proxied(&self, now: Instant, path: &str) -> ProxyLookup {
        if let Some(refusal) = self.refusals.get(now, path) {
            return ProxyLookup::Refused(refusal.clone());
        }
        match self.entries.get(path) {
            Some(e) if now.saturating_duration_since(e.checked) < self.policy.revalidate_after => {
                ProxyLookup::Fresh(Arc::clone(&e.manifest))
            }
            Some(Entry {
                validator:
                    Validator::Http {
                        etag,
                        last_modified,
                    },
                ..
            }) => ProxyLookup::Revalidate {
                etag: etag.clone(),
                last_modified: last_modified.clone(),
            },
            _ => ProxyLookup::Fetch,
        }
    }

    /// A manifest was computed for this version.
    pub fn store(
        &mut self,
        now: Instant,
        path: &str,
        validator: Validator,
        manifest: Arc<Manifest>,
    ) {
        self.entries.insert(
            path.to_string(),
            Entry {
                validator,
                manifest,
                checked: now,
            },
        );
    }

    /// The origin answered `304` to a revalidation: trust the manifest again.
    pub fn not_modified(&mut self, now: Instant, path: &str) -> Option<Arc<Manifest>> {
        let e = self.entries.get_mut(path)?;
        e.checked = now;
        Some(Arc::clone(&e.manifest))
    }

    /// The origin said the path is missing or not shareable.
    pub fn refuse(&mut self, now: Instant, path: &str, refusal: Refusal) {
        self.refusals.insert(now, path.to_string(), refusal);
    }

    /// Keep a hashed proxied body (see the module docs). False if it is too
    /// large to keep.
    pub fn keep_body(
        &mut self,
        now: Instant,
        path: &str,
        manifest: Arc<Manifest>,
        body: B,
    ) -> bool {
        if body.as_ref().len() > self.policy.body_max {
            return false;
        }
        let ttl = self.policy.body_ttl;
        self.bodies
            .retain(|_, b| now.saturating_duration_since(b.at) < ttl);
        self.bodies.insert(
            path.to_string(),
            KeptBody {
                manifest,
                body,
                at: now,
            },
        );
        let mut total: usize = self.bodies.values().map(|b| b.body.as_ref().len()).sum();
        while total > self.policy.body_budget {
            let Some(oldest) = self
                .bodies
                .iter()
                .min_by_key(|(_, b)| b.at)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            if let Some(old) = self.bodies.remove(&oldest) {
                total -= old.body.as_ref().len();
            }
        }
        true
    }

    /// A body kept for `path`, with its manifest, while it is young enough.
    pub fn kept_body(&self, now: Instant, path: &str) -> Option<(Arc<Manifest>, B)> {
        self.bodies
            .get(path)
            .filter(|b| now.saturating_duration_since(b.at) < self.policy.body_ttl)
            .map(|b| (Arc::clone(&b.manifest), b.body.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{ManifestBuilder, ReplayHeaders};

    const S: Duration = Duration::from_secs(1);

    fn manifest(path: &str, byte: u8) -> Arc<Manifest> {
        let mut b = ManifestBuilder::new(16 * 1024);
        b.update(&[byte; 100]);
        Arc::new(b.finish(path, ReplayHeaders::default()))
    }

    fn http(etag: &str) -> Validator {
        Validator::Http {
            etag: Some(etag.into()),
            last_modified: None,
        }
    }

    #[test]
    fn a_static_manifest_lasts_exactly_as_long_as_its_file_version() {
        let mut c: ManifestCache<Vec<u8>> = ManifestCache::new(CachePolicy::default());
        let v1 = Validator::File {
            len: 100,
            etag: "\"a\"".into(),
        };
        assert_eq!(c.file("/a", &v1), None);
        let m = manifest("/a", 1);
        c.store(Instant::now(), "/a", v1.clone(), Arc::clone(&m));
        assert_eq!(c.file("/a", &v1), Some(m));
        let v2 = Validator::File {
            len: 100,
            etag: "\"b\"".into(),
        };
        assert_eq!(c.file("/a", &v2), None, "a new mtime is a new version");
    }

    #[test]
    fn a_proxied_manifest_is_trusted_then_revalidated() {
        let t0 = Instant::now();
        let mut c: ManifestCache<Vec<u8>> = ManifestCache::new(CachePolicy {
            revalidate_after: 10 * S,
            ..CachePolicy::default()
        });
        assert_eq!(c.proxied(t0, "/a"), ProxyLookup::Fetch);
        let m = manifest("/a", 1);
        c.store(t0, "/a", http("\"v1\""), Arc::clone(&m));
        assert_eq!(
            c.proxied(t0 + 9 * S, "/a"),
            ProxyLookup::Fresh(Arc::clone(&m))
        );
        assert_eq!(
            c.proxied(t0 + 10 * S, "/a"),
            ProxyLookup::Revalidate {
                etag: Some("\"v1\"".into()),
                last_modified: None
            }
        );
        // A 304 trusts the same manifest for another period.
        assert_eq!(c.not_modified(t0 + 10 * S, "/a"), Some(Arc::clone(&m)));
        assert_eq!(c.proxied(t0 + 19 * S, "/a"), ProxyLookup::Fresh(m));
        assert_eq!(c.not_modified(t0, "/never-seen"), None);
        assert_eq!(c.len(), 1);
    }

    #[test]
    fn refused_paths_are_answered_without_the_origin_for_a_while() {
        let t0 = Instant::now();
        let mut c: ManifestCache<Vec<u8>> = ManifestCache::new(CachePolicy {
            refusal_ttl: 10 * S,
            max_refusals: 2,
            ..CachePolicy::default()
        });
        c.refuse(t0, "/gone", Refusal::NotFound);
        c.refuse(t0, "/private", Refusal::Ineligible("private".into()));
        assert_eq!(
            c.proxied(t0 + 9 * S, "/gone"),
            ProxyLookup::Refused(Refusal::NotFound)
        );
        assert_eq!(c.proxied(t0 + 10 * S, "/gone"), ProxyLookup::Fetch);
        // Bounded: a third refusal while two are live is not remembered.
        c.refuse(t0 + S, "/third", Refusal::NotFound);
        assert_eq!(c.proxied(t0 + S, "/third"), ProxyLookup::Fetch);
    }

    #[test]
    fn kept_bodies_expire_and_stay_within_their_budget() {
        let t0 = Instant::now();
        let mut c: ManifestCache<Vec<u8>> = ManifestCache::new(CachePolicy {
            body_ttl: 120 * S,
            body_budget: 250,
            body_max: 100,
            ..CachePolicy::default()
        });
        let m = manifest("/a", 1);
        assert!(c.keep_body(t0, "/a", Arc::clone(&m), vec![1; 100]));
        assert!(c.keep_body(t0 + S, "/b", Arc::clone(&m), vec![2; 100]));
        assert!(!c.keep_body(t0 + S, "/huge", Arc::clone(&m), vec![3; 101]));
        assert_eq!(c.kept_body(t0 + S, "/huge"), None);
        // A third body goes over the budget: the oldest is dropped.
        assert!(c.keep_body(t0 + 2 * S, "/c", Arc::clone(&m), vec![4; 100]));
        assert_eq!(c.kept_body(t0 + 2 * S, "/a"), None);
        assert_eq!(c.kept_body(t0 + 2 * S, "/b").map(|(_, b)| b[0]), Some(2));
        // And every body expires after its time.
        assert_eq!(c.kept_body(t0 + 121 * S, "/b"), None);
        assert!(c.kept_body(t0 + 121 * S, "/c").is_some());
        assert_eq!(c.kept_body(t0 + 122 * S, "/c"), None);
    }
}
