//! Worker browsers: the handle the rest of the server uses to talk to the
//! supervisor (wake it when swarms change; read what it reports).

use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

/// What the supervisor reports for metrics, health and the dashboard.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorkerSnapshot {
    pub enabled: bool,
    pub alive: usize,
    pub restarts: u64,
    pub memory_bytes: u64,
    /// One line per worker slot: (swarm, state name, pid).
    pub slots: Vec<(String, String, Option<u32>)>,
}

#[derive(Clone, Default)]
pub struct WorkerHandle {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    changed: Notify,
    snapshot: Mutex<WorkerSnapshot>,
}

impl WorkerHandle {
    pub fn new(enabled: bool) -> Self {
        let handle = WorkerHandle::default();
        handle.publish(WorkerSnapshot {
            enabled,
            ..WorkerSnapshot::default()
        });
        handle
    }

    /// Swarm membership changed: the supervisor should look again.
    pub fn swarms_changed(&self) {
        self.inner.changed.notify_one();
    }

    pub async fn wait_changed(&self) {
        self.inner.changed.notified().await
    }

    pub fn publish(&self, snapshot: WorkerSnapshot) {
        *self
            .inner
            .snapshot
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = snapshot;
    }

    pub fn snapshot(&self) -> WorkerSnapshot {
        self.inner
            .snapshot
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}
