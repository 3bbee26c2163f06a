//! Worker browsers. [`WorkerHandle`] is how the rest of the server talks to
//! the supervisor: wake it when swarms change, read what it reports, ask it
//! to prerender a page. The tasks that run the browsers are the submodules:
//!
//! - `supervise`: the supervisor loop (core [`Supervisor`] decisions carried
//!   out, render jobs dispatched, snapshots published);
//! - `browser_task`: one task per browser (launch, status probe, renders);
//! - `memory`: samples the browsers' memory from `/proc`.
//!
//! [`Supervisor`]: whis_core::supervisor::Supervisor

mod browser_task;
pub mod memory;
mod supervise;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot, Notify};
use whis_core::ttl::TtlMap;

use crate::error::ApiError;
pub use supervise::{supervise, WorkerEnv};

/// What the supervisor reports for metrics, health and the dashboard.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorkerSnapshot {
    pub enabled: bool,
    pub alive: usize,
    pub restarts: u64,
    pub memory_bytes: u64,
    pub slots: Vec<SlotInfo>,
}

/// One worker slot as the dashboard and tests see it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SlotInfo {
    pub swarm: String,
    pub state: String,
    pub pid: Option<u32>,
    /// Complete resources the worker page holds (its last status).
    pub resources: u64,
    /// Launch to joined the swarm, for the current browser (once it has).
    pub ready_ms: Option<u64>,
}

#[derive(Clone)]
pub struct WorkerHandle {
    inner: Arc<Inner>,
}

struct Inner {
    changed: Notify,
    snapshot: Mutex<WorkerSnapshot>,
    render: Mutex<Option<mpsc::Sender<RenderJob>>>,
    rendered: Mutex<TtlMap<String>>,
}

/// A request to prerender a page of the site in a worker browser.
pub struct RenderJob {
    pub url: String,
    pub reply: oneshot::Sender<Result<String, String>>,
}

/// How long a prerendered page is served from the cache.
const RENDER_TTL: Duration = Duration::from_secs(60);
const RENDER_CACHE_ENTRIES: usize = 256;

impl WorkerHandle {
    pub fn new(enabled: bool) -> Self {
        WorkerHandle {
            inner: Arc::new(Inner {
                changed: Notify::new(),
                snapshot: Mutex::new(WorkerSnapshot {
                    enabled,
                    ..WorkerSnapshot::default()
                }),
                render: Mutex::new(None),
                rendered: Mutex::new(TtlMap::new(RENDER_TTL, RENDER_CACHE_ENTRIES)),
            }),
        }
    }

    /// Swarm membership changed: the supervisor should look again.
    pub fn swarms_changed(&self) {
        self.inner.changed.notify_one();
    }

    pub async fn wait_changed(&self) {
        self.inner.changed.notified().await
    }

    /// The supervisor's view of its slots. The memory figure is the
    /// sampler's (see [`WorkerHandle::set_memory`]) and is kept.
    pub fn publish(&self, snapshot: WorkerSnapshot) {
        let mut current = self
            .inner
            .snapshot
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        *current = WorkerSnapshot {
            memory_bytes: current.memory_bytes,
            ..snapshot
        };
    }

    pub fn set_memory(&self, bytes: u64) {
        self.inner
            .snapshot
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .memory_bytes = bytes;
    }

    pub fn snapshot(&self) -> WorkerSnapshot {
        self.inner
            .snapshot
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn set_render_queue(&self, tx: mpsc::Sender<RenderJob>) {
        *self.inner.render.lock().unwrap_or_else(|p| p.into_inner()) = Some(tx);
    }

    /// Rendered HTML of `url` from a worker browser, cached for a minute.
    pub async fn render(&self, key: &str, url: String) -> Result<String, ApiError> {
        if let Some(html) = self
            .inner
            .rendered
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(Instant::now(), key)
        {
            return Ok(html.clone());
        }
        let tx = self
            .inner
            .render
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or_else(|| {
                ApiError::Unavailable(
                    "worker browsers are off (--no-workers or no Chromium)".into(),
                )
            })?;
        let (reply, answer) = oneshot::channel();
        tx.try_send(RenderJob { url, reply })
            .map_err(|_| ApiError::Unavailable("the worker supervisor is busy".into()))?;
        let html = tokio::time::timeout(Duration::from_secs(20), answer)
            .await
            .map_err(|_| ApiError::Timeout("prerendering took longer than 20 s".into()))?
            .map_err(|_| ApiError::Unavailable("the worker browser went away".into()))?
            .map_err(ApiError::Unavailable)?;
        self.inner
            .rendered
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(Instant::now(), key.to_string(), html.clone());
        Ok(html)
    }
}
