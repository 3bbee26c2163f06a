//! `AppState`: the services of one running server, composed. Each field owns
//! one piece of mutable state; nothing below this module knows `AppState`,
//! and handlers and background tasks reach the services only through it.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Instant;

use whis_core::hub::Hub;
use whis_core::pages::PageGraph;

use crate::config::Config;
use crate::counted::Metrics;
use crate::history::OffloadHistory;
use crate::manifests::ManifestService;
use crate::relay::Signaling;
use crate::stun::StunCounters;
use crate::workers::WorkerHandle;

/// Offload samples kept for the dashboard: an hour at one per 5 s.
const HISTORY_SAMPLES: usize = 720;

pub struct AppState {
    pub config: Config,
    signaling: Mutex<Signaling>,
    pub metrics: Metrics,
    pub manifests: ManifestService,
    /// Secret a worker browser must present (URL of the worker page, join body).
    pub worker_secret: String,
    pub started: Instant,
    pub workers: WorkerHandle,
    /// `http://ADDR:PORT` as the server's own pages and workers reach it.
    base_url: OnceLock<String>,
    /// The dashboard's offload history (see `dashboard::sample_loop`).
    pub offload_history: OffloadHistory,
    /// What each page uses and where its visitors go next (prefetch plans).
    pages: Mutex<PageGraph>,
    /// Where whis answers STUN (UDP), once bound; `join` names its port.
    stun_addr: OnceLock<SocketAddr>,
    /// STUN datagrams answered and dropped (the STUN task counts them).
    pub stun: Arc<StunCounters>,
    /// Set when the server begins to stop: long answers (the dashboard's
    /// stream) end instead of holding the shutdown up.
    stopping: AtomicBool,
}

impl AppState {
    pub fn new(config: Config, workers: WorkerHandle) -> Arc<AppState> {
        Arc::new(AppState {
            signaling: Mutex::new(Signaling::new(Hub::new(config.hub_config()))),
            metrics: Metrics::default(),
            manifests: ManifestService::new(&config),
            worker_secret: crate::ids::secret(),
            started: Instant::now(),
            workers,
            config,
            base_url: OnceLock::new(),
            offload_history: OffloadHistory::new(HISTORY_SAMPLES),
            pages: Mutex::new(PageGraph::new(Default::default())),
            stun_addr: OnceLock::new(),
            stun: Arc::default(),
            stopping: AtomicBool::new(false),
        })
    }

    pub fn set_base_url(&self, url: String) {
        let _ = self.base_url.set(url);
    }

    pub fn base_url(&self) -> &str {
        self.base_url
            .get()
            .map(String::as_str)
            .unwrap_or("http://127.0.0.1")
    }

    pub fn set_stun_addr(&self, addr: SocketAddr) {
        let _ = self.stun_addr.set(addr);
    }

    /// Where whis answers STUN, if it does.
    pub fn stun_addr(&self) -> Option<SocketAddr> {
        self.stun_addr.get().copied()
    }

    /// The server begins to stop (see `Running::stop`).
    pub fn stopping(&self) {
        self.stopping.store(true, Ordering::Relaxed);
    }

    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::Relaxed)
    }

    /// The page graph (brief updates and reads; never held across an await).
    pub fn pages(&self) -> MutexGuard<'_, PageGraph> {
        self.pages.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The signaling lock. A poisoned lock means a panic mid-update; the hub's
    /// state is still structurally valid (every method checks before it
    /// mutates), so serving on is better than refusing every peer.
    pub fn signaling(&self) -> MutexGuard<'_, Signaling> {
        self.signaling.lock().unwrap_or_else(|p| p.into_inner())
    }
}
