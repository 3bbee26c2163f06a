//! The supervisor task: carries out the core supervisor's actions with
//! chromiumoxide, feeds back what the browsers' tasks observe, hands render
//! jobs to a live browser and publishes what it sees.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};
use whis_core::supervisor::{Action, Observation, Supervisor, SupervisorConfig};

use super::browser_task::{run_worker, Seen};
use super::{RenderJob, SlotInfo, WorkerSnapshot};
use crate::state::AppState;

/// Everything a worker browser needs to start.
#[derive(Clone)]
pub struct WorkerEnv {
    pub chromium: PathBuf,
    pub base_url: String,
    pub profile_root: PathBuf,
    pub secret: String,
}

/// A browser this supervisor launched and has not yet stopped.
struct Running {
    generation: u64,
    kill: Option<oneshot::Sender<()>>,
    seen: Arc<Seen>,
    render: mpsc::Sender<RenderJob>,
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
    let mut round_robin = 0usize;
    loop {
        let mut actions = Vec::new();
        tokio::select! {
            _ = &mut stop => break,
            _ = state.workers.wait_changed() => {}
            _ = every.tick() => {}
            Some(obs) = obs_rx.recv() => actions.extend(sup.observe(Instant::now(), obs)),
            Some(job) = renders.recv() => {
                round_robin = round_robin.wrapping_add(1);
                dispatch_render(job, &sup, &running, round_robin);
            }
        }
        let swarms = state.signaling().hub.swarms();
        actions.extend(sup.reconcile(Instant::now(), &swarms));
        for action in actions {
            apply(&state, &env, &obs_tx, &mut running, &mut tasks, action);
        }
        tasks.retain(|t| !t.is_finished());
        state.workers.publish(snapshot(&sup, &running));
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
    state.workers.set_memory(0);
    log::info!("worker browsers stopped");
}

/// Hand a render job to one of the live browsers, in turn.
fn dispatch_render(
    job: RenderJob,
    sup: &Supervisor,
    running: &HashMap<String, Running>,
    turn: usize,
) {
    let alive: Vec<&Running> = sup
        .slots()
        .filter(|s| s.state.is_alive())
        .filter_map(|s| running.get(&s.swarm))
        .collect();
    if alive.is_empty() {
        let _ = job.reply.send(Err(
            "no worker browser is running (one starts when a visitor joins)".into(),
        ));
        return;
    }
    let target = alive[turn % alive.len()];
    if let Err(mpsc::error::TrySendError::Full(job) | mpsc::error::TrySendError::Closed(job)) =
        target.render.try_send(job)
    {
        let _ = job.reply.send(Err("the worker browser is busy".into()));
    }
}

/// What the supervisor and the browsers' tasks know, for metrics and the dashboard.
fn snapshot(sup: &Supervisor, running: &HashMap<String, Running>) -> WorkerSnapshot {
    WorkerSnapshot {
        enabled: true,
        alive: sup.alive(),
        restarts: sup.restarts(),
        memory_bytes: 0,
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
    }
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
