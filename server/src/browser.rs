//! Launching headless Chromium the one way that works here: headless, no GPU,
//! no first-run, no background networking (else it tries to reach the
//! internet and stalls), a profile directory of its own, and `--no-sandbox`
//! when running as root. Used by the worker supervisor and by the e2e tests.

use std::path::{Path, PathBuf};
use std::time::Duration;

use chromiumoxide::{Browser, BrowserConfig};
use futures_util::StreamExt;
use tokio::task::JoinHandle;

/// Where to look when no `--chromium`, `$CHROME` or `$CHROMIUM` is given.
const USUAL_PATHS: &[&str] = &[
    "/usr/bin/chromium",
    "/usr/bin/chromium-browser",
    "/usr/bin/google-chrome",
    "/usr/bin/google-chrome-stable",
    "/snap/bin/chromium",
    "/Applications/Chromium.app/Contents/MacOS/Chromium",
    "/Applications/Google Chrome.app/Contents/MacOS/Google Chrome",
];

/// `explicit` (from `--chromium`) wins, then `$CHROME`, `$CHROMIUM`, then the usual paths.
pub fn find_chromium(explicit: Option<&Path>) -> Option<PathBuf> {
    if let Some(p) = explicit {
        return p.is_file().then(|| p.to_path_buf());
    }
    for var in ["CHROME", "CHROMIUM"] {
        if let Some(p) = std::env::var_os(var).map(PathBuf::from) {
            if p.is_file() {
                return Some(p);
            }
        }
    }
    USUAL_PATHS.iter().map(PathBuf::from).find(|p| p.is_file())
}

fn running_as_root() -> bool {
    procfs::process::Process::myself()
        .and_then(|me| me.status())
        .is_ok_and(|status| status.euid == 0)
}

/// A browser and the task that pumps its CDP connection. The task ends when
/// the connection closes, which is how a crash shows.
pub struct Launched {
    pub browser: Browser,
    pub handler: JoinHandle<()>,
}

impl Launched {
    pub fn pid(&mut self) -> Option<u32> {
        self.browser
            .get_mut_child()
            .and_then(|c| c.as_mut_inner().id())
    }

    /// Close politely, then make sure: the process must not outlive us.
    pub async fn shutdown(mut self) {
        // With the CDP connection gone there is nobody to ask politely.
        let connected = !self.handler.is_finished();
        let closed = connected
            && matches!(
                tokio::time::timeout(Duration::from_secs(5), self.browser.close()).await,
                Ok(Ok(_))
            );
        if !closed {
            let _ = self.browser.kill().await;
        }
        if tokio::time::timeout(Duration::from_secs(5), self.browser.wait())
            .await
            .is_err()
        {
            let _ = self.browser.kill().await;
            let _ = self.browser.wait().await;
        }
        self.handler.abort();
    }
}

pub async fn launch(
    executable: &Path,
    profile_dir: &Path,
    extra_args: &[String],
) -> Result<Launched, String> {
    std::fs::create_dir_all(profile_dir)
        .map_err(|e| format!("profile dir {}: {e}", profile_dir.display()))?;
    let mut builder = BrowserConfig::builder()
        .chrome_executable(executable)
        .user_data_dir(profile_dir)
        .launch_timeout(Duration::from_secs(30))
        .request_timeout(Duration::from_secs(20))
        .args([
            "disable-gpu",
            "no-first-run",
            "no-default-browser-check",
            "disable-background-networking",
            "disable-component-update",
            "disable-sync",
            "disable-quic",
            "disable-features=MediaRouter,OptimizationHints,Translate",
            "autoplay-policy=no-user-gesture-required",
        ])
        .args(extra_args.iter().map(String::as_str));
    if running_as_root() {
        builder = builder.no_sandbox();
    }
    let config = builder.build()?;
    let (browser, mut handler) = Browser::launch(config)
        .await
        .map_err(|e| format!("launching {}: {e}", executable.display()))?;
    let handler = tokio::spawn(async move {
        // Errors are single messages Chromium sent that we could not parse;
        // the loop ends only when the connection itself is gone.
        while handler.next().await.is_some() {}
    });
    Ok(Launched { browser, handler })
}
