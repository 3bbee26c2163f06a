//! Worker browsers: the handle the rest of the server uses to talk to the
//! supervisor (wake it when swarms change; read what it reports).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Deserialize;
use tokio::sync::{mpsc, oneshot, Notify};
use whis_core::supervisor::{Action, Observation, Supervisor, SupervisorConfig};

use crate::browser;
use crate::state::AppState;

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

#[derive(Clone, Default)]
pub struct WorkerHandle {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    changed: Notify,
    snapshot: Mutex<WorkerSnapshot>,
    render: Mutex<Option<mpsc::Sender<RenderJob>>>,
    rendered: Mutex<HashMap<String, (Instant, String)>>,
}

/// How long a prerendered page is served from the cache.
const RENDER_TTL: Duration = Duration::from_secs(60);
const RENDER_CACHE_ENTRIES: usize = 256;

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

    pub fn set_render_queue(&self, tx: mpsc::Sender<RenderJob>) {
        *self.inner.render.lock().unwrap_or_else(|p| p.into_inner()) = Some(tx);
    }

    /// Rendered HTML of `url` from a worker browser, cached for a minute.
    pub async fn render(&self, key: &str, url: String) -> Result<String, crate::error::ApiError> {
        use crate::error::ApiError;
        if let Some((at, html)) = self
            .inner
            .rendered
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(key)
        {
            if at.elapsed() < RENDER_TTL {
                return Ok(html.clone());
            }
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
        let mut cache = self
            .inner
            .rendered
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if cache.len() >= RENDER_CACHE_ENTRIES {
            cache.retain(|_, (at, _)| at.elapsed() < RENDER_TTL);
        }
        if cache.len() < RENDER_CACHE_ENTRIES {
            cache.insert(key.to_string(), (Instant::now(), html.clone()));
        }
        Ok(html)
    }
}

// ---------------------------------------------------------------------------
// The supervisor task: carries out the core supervisor's actions with
// chromiumoxide and feeds back what it observes.

/// Everything a worker browser needs to start.
#[derive(Clone)]
pub struct WorkerEnv {
    pub chromium: PathBuf,
    pub base_url: String,
    pub profile_root: PathBuf,
    pub secret: String,
}

/// A request to prerender a page of the site in a worker browser.
pub struct RenderJob {
    pub url: String,
    pub reply: oneshot::Sender<Result<String, String>>,
}

struct Running {
    generation: u64,
    kill: Option<oneshot::Sender<()>>,
    seen: Arc<Seen>,
    render: mpsc::Sender<RenderJob>,
}

/// What a worker's task has seen of its browser, for the snapshot (0: not yet).
#[derive(Default)]
struct Seen {
    pid: AtomicU32,
    resources: AtomicU64,
    ready_ms: AtomicU64,
}

#[derive(Deserialize)]
struct PageStatus {
    #[serde(default)]
    joined: bool,
    #[serde(default)]
    resources: u64,
}

/// Run until `stop` fires; then close every browser and wait for them.
pub async fn supervise(
    state: Arc<AppState>,
    env: WorkerEnv,
    mut renders: mpsc::Receiver<RenderJob>,
    mut stop: oneshot::Receiver<()>,
) {
    let mut sup = Supervisor::new(SupervisorConfig {
        max_workers: state.config.workers.max_workers,
        ..SupervisorConfig::default()
    });
    let (obs_tx, mut obs_rx) = mpsc::unbounded_channel::<Observation>();
    let mut running: HashMap<String, Running> = HashMap::new();
    let mut tasks: Vec<tokio::task::JoinHandle<()>> = Vec::new();
    let mut every = tokio::time::interval(Duration::from_secs(1));
    let mut last_memory = (Instant::now() - Duration::from_secs(60), 0u64);
    let mut round_robin = 0usize;
    loop {
        let mut actions = Vec::new();
        tokio::select! {
            _ = &mut stop => break,
            _ = state.workers.wait_changed() => {}
            _ = every.tick() => {}
            Some(obs) = obs_rx.recv() => actions.extend(sup.observe(Instant::now(), obs)),
            Some(job) = renders.recv() => {
                let alive: Vec<&Running> = sup
                    .slots()
                    .filter(|s| s.state.is_alive())
                    .filter_map(|s| running.get(&s.swarm))
                    .collect();
                if alive.is_empty() {
                    let _ = job.reply.send(Err("no worker browser is running (one starts when a visitor joins)".into()));
                } else {
                    round_robin = round_robin.wrapping_add(1);
                    let target = alive[round_robin % alive.len()];
                    if let Err(mpsc::error::TrySendError::Full(job) | mpsc::error::TrySendError::Closed(job)) = target.render.try_send(job) {
                        let _ = job.reply.send(Err("the worker browser is busy".into()));
                    }
                }
            }
        }
        let swarms = state.signaling().hub.swarms();
        actions.extend(sup.reconcile(Instant::now(), &swarms));
        for action in actions {
            apply(&state, &env, &obs_tx, &mut running, &mut tasks, action);
        }
        tasks.retain(|t| !t.is_finished());
        if last_memory.0.elapsed() > Duration::from_secs(5) {
            let pids: Vec<u32> = running
                .values()
                .map(|r| r.seen.pid.load(Ordering::Relaxed))
                .filter(|p| *p != 0)
                .collect();
            last_memory = (
                Instant::now(),
                pids.iter().map(|p| browser::tree_memory(*p)).sum(),
            );
        }
        state.workers.publish(WorkerSnapshot {
            enabled: true,
            alive: sup.alive(),
            restarts: sup.restarts(),
            memory_bytes: last_memory.1,
            slots: sup
                .slots()
                .map(|s| {
                    let r = running.get(&s.swarm);
                    SlotInfo {
                        swarm: s.swarm.clone(),
                        state: s.state.name().to_string(),
                        pid: r
                            .map(|r| r.seen.pid.load(Ordering::Relaxed))
                            .filter(|p| *p != 0),
                        resources: r
                            .map(|r| r.seen.resources.load(Ordering::Relaxed))
                            .unwrap_or(0),
                        ready_ms: r
                            .map(|r| r.seen.ready_ms.load(Ordering::Relaxed))
                            .filter(|ms| *ms != 0),
                    }
                })
                .collect(),
        });
    }
    for action in sup.shutdown() {
        apply(&state, &env, &obs_tx, &mut running, &mut tasks, action);
    }
    for t in tasks {
        let _ = t.await;
    }
    state.workers.publish(WorkerSnapshot {
        enabled: true,
        ..WorkerSnapshot::default()
    });
    log::info!("worker browsers stopped");
}

fn apply(
    state: &Arc<AppState>,
    env: &WorkerEnv,
    obs_tx: &mpsc::UnboundedSender<Observation>,
    running: &mut HashMap<String, Running>,
    tasks: &mut Vec<tokio::task::JoinHandle<()>>,
    action: Action,
) {
    match action {
        Action::Launch {
            swarm,
            profile,
            generation,
        } => {
            log::info!(
                "worker for swarm {swarm}: starting (profile slot {profile}, launch {generation})"
            );
            let (kill_tx, kill_rx) = oneshot::channel();
            let (render_tx, render_rx) = mpsc::channel(8);
            let seen = Arc::new(Seen::default());
            let url = format!(
                "{}/whis/worker.html?secret={}&swarm={}",
                env.base_url, env.secret, swarm
            );
            let profile_dir = env.profile_root.join(format!("slot-{profile}"));
            tasks.push(tokio::spawn(run_worker(
                env.chromium.clone(),
                profile_dir,
                url,
                swarm.clone(),
                generation,
                obs_tx.clone(),
                kill_rx,
                render_rx,
                Arc::clone(&seen),
            )));
            running.insert(
                swarm,
                Running {
                    generation,
                    kill: Some(kill_tx),
                    seen,
                    render: render_tx,
                },
            );
        }
        Action::Kill {
            swarm,
            generation,
            reason,
        } => {
            if let Some(r) = running.get_mut(&swarm) {
                if r.generation == generation {
                    log::info!("worker for swarm {swarm}: stopping because {reason}");
                    if let Some(kill) = r.kill.take() {
                        let _ = kill.send(());
                    }
                    running.remove(&swarm);
                }
            }
        }
        Action::TellDown { swarm } => {
            log::info!("worker for swarm {swarm}: down; telling the swarm");
            let mut sig = state.signaling();
            let deliveries = sig.hub.worker_down(Instant::now(), &swarm);
            sig.deliver(deliveries);
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn run_worker(
    chromium: PathBuf,
    profile_dir: PathBuf,
    url: String,
    swarm: String,
    generation: u64,
    obs: mpsc::UnboundedSender<Observation>,
    mut kill: oneshot::Receiver<()>,
    mut renders: mpsc::Receiver<RenderJob>,
    seen: Arc<Seen>,
) {
    let started = Instant::now();
    let mut launched = match browser::launch(&chromium, &profile_dir, &[]).await {
        Ok(l) => l,
        Err(e) => {
            log::warn!("worker for swarm {swarm}: could not launch Chromium: {e}");
            let _ = obs.send(Observation::LaunchFailed { swarm, generation });
            return;
        }
    };
    if let Some(pid) = launched.pid() {
        seen.pid.store(pid, Ordering::Relaxed);
    }
    let page = match launched.browser.new_page(url.as_str()).await {
        Ok(p) => p,
        Err(e) => {
            log::warn!("worker for swarm {swarm}: could not open the worker page: {e}");
            launched.shutdown().await;
            let _ = obs.send(Observation::LaunchFailed { swarm, generation });
            return;
        }
    };
    log::info!(
        "worker for swarm {swarm}: browser up in {} ms (pid {:?})",
        started.elapsed().as_millis(),
        launched.pid()
    );
    let mut joined = false;
    let mut beat = tokio::time::interval(Duration::from_millis(1000));
    loop {
        tokio::select! {
            _ = &mut kill => break,
            Some(job) = renders.recv() => {
                let html = render(&launched.browser, &job.url).await;
                let _ = job.reply.send(html);
                continue;
            }
            _ = beat.tick() => {}
        }
        if launched.handler.is_finished() || matches!(launched.browser.try_wait(), Ok(Some(_))) {
            log::warn!("worker for swarm {swarm}: the browser process is gone");
            break;
        }
        let probe = page.evaluate("window.whisWorker ? window.whisWorker.status() : null");
        match tokio::time::timeout(Duration::from_secs(5), probe).await {
            Ok(Ok(result)) => {
                let status: Option<PageStatus> = result.into_value().ok().flatten();
                let Some(status) = status else { continue };
                seen.resources.store(status.resources, Ordering::Relaxed);
                if status.joined && !joined {
                    joined = true;
                    let ms = (started.elapsed().as_millis() as u64).max(1);
                    seen.ready_ms.store(ms, Ordering::Relaxed);
                    log::info!("worker for swarm {swarm}: ready (joined) after {ms} ms");
                    let _ = obs.send(Observation::Joined {
                        swarm: swarm.clone(),
                        generation,
                    });
                }
                if joined {
                    let _ = obs.send(Observation::Heartbeat {
                        swarm: swarm.clone(),
                        generation,
                        serving: status.resources > 0,
                    });
                }
            }
            // A CDP error or a timeout: no heartbeat; the supervisor's hang
            // timeout decides, so one slow answer is not a death sentence.
            Ok(Err(e)) => log::debug!("worker for swarm {swarm}: status probe failed: {e}"),
            Err(_) => log::debug!("worker for swarm {swarm}: status probe timed out"),
        }
    }
    launched.shutdown().await;
    let _ = obs.send(Observation::Exited { swarm, generation });
}

/// Load `url` in a fresh tab of the worker browser and return the rendered
/// HTML. The tab gets `window.__whisNoAgent = true` first, so the site's
/// `client.js` does not join the swarm from a prerender.
async fn render(browser: &chromiumoxide::Browser, url: &str) -> Result<String, String> {
    let work = async {
        let page = browser
            .new_page("about:blank")
            .await
            .map_err(|e| e.to_string())?;
        let result = async {
            page.evaluate_on_new_document("window.__whisNoAgent = true")
                .await
                .map_err(|e| e.to_string())?;
            page.goto(url).await.map_err(|e| e.to_string())?;
            // Give the page's scripts a moment after load to build the DOM.
            for _ in 0..20 {
                let ready = page
                    .evaluate("document.readyState === 'complete'")
                    .await
                    .ok()
                    .and_then(|r| r.into_value::<bool>().ok())
                    .unwrap_or(false);
                if ready {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
            page.content().await.map_err(|e| e.to_string())
        }
        .await;
        let _ = page.close().await;
        result
    };
    tokio::time::timeout(Duration::from_secs(15), work)
        .await
        .map_err(|_| "rendering took longer than 15 s".to_string())?
}
