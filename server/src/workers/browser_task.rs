//! One worker browser's task: launch Chromium on the worker page, probe the
//! page's status every second (the supervisor's heartbeat), run the renders
//! sent to this browser, and report what it sees.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Deserialize;
use tokio::sync::{mpsc, oneshot};
use whis_core::supervisor::Observation;

use super::RenderJob;
use crate::browser;

/// What a worker's task has seen of its browser, for the snapshot (0: not yet).
#[derive(Default)]
pub(super) struct Seen {
    pub pid: AtomicU32,
    pub resources: AtomicU64,
    pub ready_ms: AtomicU64,
}

#[derive(Deserialize)]
struct PageStatus {
    #[serde(default)]
    joined: bool,
    #[serde(default)]
    resources: u64,
}

#[allow(clippy::too_many_arguments)]
pub(super) async fn run_worker(
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
