//! Shared server state: one owner for each piece of mutable state.
//!
//! `Signaling` (the core [`Hub`] plus the live SSE senders) sits behind one
//! mutex: every change of membership and every relay takes it briefly, so event
//! ids are assigned and queued in one order. No await happens under the lock.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use actix_web_lab::sse;
use tokio::sync::mpsc;
use whis_core::hub::{Delivery, Event, Hub, HubConfig, PeerId};

use crate::config::Config;
use crate::manifests::ManifestService;

pub struct AppState {
    pub config: Config,
    signaling: Mutex<Signaling>,
    pub metrics: Metrics,
    pub manifests: ManifestService,
    /// Secret a worker browser must present (URL of the worker page, join body).
    pub worker_secret: String,
    pub started: Instant,
    pub workers: crate::workers::WorkerHandle,
    /// `http://ADDR:PORT` as the server's own pages and workers reach it.
    base_url: std::sync::OnceLock<String>,
    /// The dashboard's offload history (see `dashboard::sample_loop`).
    pub offload_history: Mutex<std::collections::VecDeque<crate::dashboard::Sample>>,
    /// What each page uses and where its visitors go next (prefetch plans).
    pages: Mutex<whis_core::pages::PageGraph>,
}

#[derive(Default)]
pub struct Metrics {
    /// Body bytes the origin side sent to clients (the ground truth for offload).
    pub origin_bytes: AtomicU64,
    /// Body responses the origin side sent (static or proxied).
    pub origin_responses: AtomicU64,
    /// Bytes fetched from an upstream origin to hash manifests (proxy mode).
    pub manifest_fetch_bytes: AtomicU64,
    pub manifests_computed: AtomicU64,
    pub sse_dropped_slow: AtomicU64,
}

impl Metrics {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

struct StreamSlot {
    conn: u64,
    tx: mpsc::Sender<sse::Event>,
}

pub struct Signaling {
    pub hub: Hub,
    streams: HashMap<PeerId, StreamSlot>,
    next_conn: u64,
    sse_dropped_slow: u64,
}

impl Signaling {
    /// Push each delivery to its peer's live stream, if any. A full queue means
    /// the reader is too slow: its stream is closed (the browser reconnects and
    /// resumes from the replay buffer), so memory stays bounded.
    pub fn deliver(&mut self, deliveries: Vec<Delivery>) {
        for d in deliveries {
            let Some(slot) = self.streams.get(&d.to) else {
                continue;
            };
            match slot.tx.try_send(to_sse(&d.event)) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(_)) => {
                    log::info!(
                        "peer {} reads its event stream too slowly; closing it",
                        d.to
                    );
                    self.sse_dropped_slow += 1;
                    self.streams.remove(&d.to);
                }
                Err(mpsc::error::TrySendError::Closed(_)) => {
                    self.streams.remove(&d.to);
                }
            }
        }
    }

    /// Register a new stream for `peer`, replacing (and so ending) an older one.
    pub fn attach(&mut self, peer: &str, tx: mpsc::Sender<sse::Event>) -> u64 {
        self.next_conn += 1;
        let conn = self.next_conn;
        self.streams
            .insert(peer.to_string(), StreamSlot { conn, tx });
        conn
    }

    pub fn detach(&mut self, now: Instant, peer: &str, conn: u64) {
        if self.streams.get(peer).is_some_and(|s| s.conn == conn) {
            self.streams.remove(peer);
        }
        self.hub.stream_closed(now, peer);
    }

    pub fn drop_streams_of(&mut self, peers: &[PeerId]) {
        for p in peers {
            self.streams.remove(p);
        }
    }

    /// End every stream (graceful shutdown).
    pub fn close_all(&mut self) {
        self.streams.clear();
    }

    pub fn open_streams(&self) -> usize {
        self.streams.len()
    }

    pub fn sse_dropped_slow(&self) -> u64 {
        self.sse_dropped_slow
    }
}

pub fn to_sse(e: &Event) -> sse::Event {
    let mut data = sse::Data::new(e.data.clone()).event(e.kind);
    if let Some(id) = e.id {
        data = data.id(id.to_string());
    }
    sse::Event::Data(data)
}

impl AppState {
    pub fn new(config: Config, workers: crate::workers::WorkerHandle) -> Arc<AppState> {
        let hub = Hub::new(HubConfig {
            peers_per_swarm: config.peers_per_swarm,
            max_peers: config.max_peers,
            heartbeat_timeout: config.heartbeat_timeout,
            ..HubConfig::default()
        });
        let manifests = ManifestService::new(&config);
        Arc::new(AppState {
            signaling: Mutex::new(Signaling {
                hub,
                streams: HashMap::new(),
                next_conn: 0,
                sse_dropped_slow: 0,
            }),
            metrics: Metrics::default(),
            manifests,
            worker_secret: crate::ids::secret(),
            started: Instant::now(),
            workers,
            config,
            base_url: std::sync::OnceLock::new(),
            offload_history: Mutex::default(),
            pages: Mutex::new(whis_core::pages::PageGraph::new(Default::default())),
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

    /// The page graph (brief updates and reads; never held across an await).
    pub fn pages(&self) -> MutexGuard<'_, whis_core::pages::PageGraph> {
        self.pages.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The signaling lock. A poisoned lock means a panic mid-update; the hub's
    /// state is still structurally valid (every method checks before it
    /// mutates), so serving on is better than refusing every peer.
    pub fn signaling(&self) -> MutexGuard<'_, Signaling> {
        self.signaling.lock().unwrap_or_else(|p| p.into_inner())
    }
}
