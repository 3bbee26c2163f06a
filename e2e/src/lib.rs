//! Harness for end-to-end runs: a real `whis` started in-process on
//! `127.0.0.1:0`, and visitors that are real headless Chromium processes, each
//! with a profile directory of its own (so each has its own service worker,
//! IndexedDB and cache, like separate people).
//!
//! A missing Chromium is an error, never a skip: the e2e suite exists to run
//! browsers.

pub mod throttle;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chromiumoxide::cdp::js_protocol::runtime::EvaluateParams;
use chromiumoxide::Page;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};
use whis::browser::{self, Launched};
use whis::config::{Config, OriginConfig};
use whis::Running;

pub type Error = Box<dyn std::error::Error + Send + Sync>;
pub type Result<T> = std::result::Result<T, Error>;

/// The demo site shipped in the repository.
pub fn demo_site() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../demo-site")
}

/// Chromium for the tests; panics with the fix when it is missing.
pub fn chromium() -> PathBuf {
    browser::find_chromium(None).unwrap_or_else(|| {
        panic!(
            "e2e needs Chromium: install it with `apt-get install -y chromium` (or set $CHROMIUM)"
        )
    })
}

pub fn init_logs() {
    let _ = env_logger::Builder::from_env(
        env_logger::Env::default().default_filter_or("warn,whis=info,chromiumoxide=error"),
    )
    .is_test(true)
    .try_init();
}

/// A directory removed when dropped.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(label: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!(
            "whis-e2e-{label}-{}-{:x}",
            std::process::id(),
            rand::random::<u64>()
        ));
        std::fs::create_dir_all(&dir)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
        TempDir(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A `whis` serving `root` with workers off unless the caller turns them on.
pub async fn start_whis(root: &Path, tweak: impl FnOnce(&mut Config)) -> Result<Running> {
    let mut config = Config::for_root(root);
    config.origin = OriginConfig::Static {
        root: root.to_path_buf(),
    };
    tweak(&mut config);
    Ok(whis::start(config).await?)
}

/// Body bytes the origin side has sent so far: the server's own count.
pub fn origin_bytes(whis: &Running) -> u64 {
    whis.state
        .metrics
        .origin_bytes
        .load(std::sync::atomic::Ordering::Relaxed)
}

/// One visitor: its own Chromium process and profile.
pub struct Visitor {
    pub name: String,
    launched: Option<Launched>,
    pub page: Page,
    _profile: Option<TempDir>,
    /// Console lines and uncaught exceptions of the page, for failure reports.
    pub console: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Visitor {
    /// A first-time visitor with an empty profile.
    pub async fn launch(name: &str) -> Result<Visitor> {
        let profile = TempDir::new(name);
        let mut v = Visitor::launch_in(name, profile.path()).await?;
        v._profile = Some(profile);
        Ok(v)
    }

    /// A visitor whose profile lives at `dir` (kept by the caller: a returning visitor).
    pub async fn launch_in(name: &str, dir: &Path) -> Result<Visitor> {
        let launched = browser::launch(&chromium(), dir, &[]).await?;
        let page = launched.browser.new_page("about:blank").await?;
        // chromiumoxide asks Chromium to pause every new target until a
        // debugger resumes it, then detaches from service workers; a worker
        // caught between the two never starts. Visitors' service workers must
        // start on their own, as in a browser nobody is debugging.
        page.execute(
            chromiumoxide::cdp::browser_protocol::target::SetAutoAttachParams::builder()
                .auto_attach(true)
                .wait_for_debugger_on_start(false)
                .flatten(true)
                .build()?,
        )
        .await?;
        let console = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        {
            use chromiumoxide::cdp::js_protocol::runtime::{
                EventConsoleApiCalled, EventExceptionThrown,
            };
            use futures_util::StreamExt;
            let mut logs = page.event_listener::<EventConsoleApiCalled>().await?;
            let mut errors = page.event_listener::<EventExceptionThrown>().await?;
            let sink = console.clone();
            let who = name.to_string();
            tokio::spawn(async move {
                loop {
                    let line = tokio::select! {
                        Some(e) = logs.next() => format!("{:?}: {}", e.r#type, e.args.iter().map(|a| a.value.as_ref().map(|v| v.to_string()).or_else(|| a.description.clone()).unwrap_or_default()).collect::<Vec<_>>().join(" ")),
                        Some(e) = errors.next() => format!("exception: {}", e.exception_details.exception.as_ref().and_then(|x| x.description.clone()).unwrap_or_else(|| e.exception_details.text.clone())),
                        else => break,
                    };
                    if std::env::var_os("WHIS_E2E_CONSOLE").is_some() {
                        eprintln!("[{who}] {line}");
                    }
                    if let Ok(mut c) = sink.lock() {
                        c.push(line);
                    }
                }
            });
        }
        Ok(Visitor {
            name: name.to_string(),
            launched: Some(launched),
            page,
            _profile: None,
            console,
        })
    }

    pub async fn goto(&self, url: &str) -> Result<()> {
        self.page.goto(url).await?;
        Ok(())
    }

    /// Evaluate an expression (promises are awaited) and return its JSON value.
    pub async fn eval<T: DeserializeOwned>(&self, js: &str) -> Result<T> {
        let params = EvaluateParams::builder()
            .expression(js)
            .await_promise(true)
            .return_by_value(true)
            .build()?;
        let result = tokio::time::timeout(
            Duration::from_secs(60),
            self.page.evaluate_expression(params),
        )
        .await
        .map_err(|_| format!("{}: evaluating took over 60 s: {js}", self.name))??;
        Ok(result.into_value()?)
    }

    /// Poll `js` (a boolean expression) until it is true.
    pub async fn wait_for(&self, js: &str, within: Duration) -> Result<()> {
        let start = Instant::now();
        loop {
            match self.eval::<bool>(js).await {
                Ok(true) => return Ok(()),
                Ok(false) | Err(_) if start.elapsed() < within => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Ok(false) => {
                    return Err(format!("{}: not true within {within:?}: {js}", self.name).into())
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// `window.whis.stats()` of the current page.
    pub async fn stats(&self) -> Result<Stats> {
        self.eval("window.whis.stats()").await
    }

    pub fn pid(&mut self) -> Option<u32> {
        self.launched.as_mut().and_then(|l| l.pid())
    }

    pub async fn close(mut self) {
        if let Some(l) = self.launched.take() {
            l.shutdown().await;
        }
    }
}

impl Drop for Visitor {
    fn drop(&mut self) {
        if self.launched.is_some() {
            log::warn!(
                "visitor {} dropped without close(); its browser is killed on drop",
                self.name
            );
        }
    }
}

#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Stats {
    pub bytes_from_peers: u64,
    pub bytes_from_worker: u64,
    pub bytes_from_origin: u64,
    pub peers: u64,
    pub verified_pieces: u64,
    pub rejected_pieces: u64,
}

/// Lowercase hex SHA-256 of a file on disk.
pub fn sha256_file(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path)?;
    Ok(hex(&Sha256::digest(&bytes)))
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// JS that fetches `url` in the page (through the service worker) and
/// resolves to `{status, sha256, length}`.
pub fn fetch_digest_js(url: &str, headers: &str) -> String {
    format!(
        r#"(async () => {{
            const r = await fetch({url:?}, {{ headers: {headers} }});
            const b = await r.arrayBuffer();
            const d = await crypto.subtle.digest('SHA-256', b);
            const hex = [...new Uint8Array(d)].map(x => x.toString(16).padStart(2, '0')).join('');
            return {{ status: r.status, sha256: hex, length: b.byteLength, contentRange: r.headers.get('content-range') }};
        }})()"#
    )
}

#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Fetched {
    pub status: u16,
    pub sha256: String,
    pub length: u64,
    pub content_range: Option<String>,
}

/// A minimal HTTP/1.1 client for the harness (one request per connection):
/// returns the status and the body as text.
pub async fn http(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Result<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url.strip_prefix("http://").ok_or("only http:// URLs")?;
    let (host, path) = rest
        .split_once('/')
        .map(|(h, p)| (h, format!("/{p}")))
        .unwrap_or((rest, "/".into()));
    let mut stream = tokio::net::TcpStream::connect(host).await?;
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    stream.write_all(req.as_bytes()).await?;
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut raw))
        .await
        .map_err(|_| format!("{method} {url}: no complete answer within 30 s"))??;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").ok_or("malformed HTTP answer")?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or("malformed status line")?;
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    Ok((status, body))
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// Whether a process with this id is still running (and not a zombie).
pub fn process_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rfind(')')
            .and_then(|i| stat[i + 1..].split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

/// Poll `check` every 100 ms until it holds or `within` passes.
pub async fn eventually(
    within: Duration,
    what: &str,
    mut check: impl FnMut() -> bool,
) -> Result<()> {
    let start = Instant::now();
    while !check() {
        if start.elapsed() > within {
            return Err(format!("not within {within:?}: {what}").into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

/// One e2e scenario at a time: each starts several Chromium processes, and
/// this machine class has two cores.
pub async fn serial() -> tokio::sync::MutexGuard<'static, ()> {
    static LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    LOCK.lock().await
}
