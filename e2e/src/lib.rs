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

/// Logs for the benchmark programs: warnings, without Chromium's chatter.
pub fn init_bench_logs() {
    let _ = env_logger::Builder::from_env(
        env_logger::Env::default().default_filter_or("warn,chromiumoxide=error"),
    )
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

    /// A first-time visitor whose Chromium also gets `extra` flags, written
    /// without their leading `--` (the deploy tests: a pinned test
    /// certificate, a host name mapped to loopback).
    pub async fn launch_with(name: &str, extra: &[String]) -> Result<Visitor> {
        let profile = TempDir::new(name);
        let mut v = Visitor::launch_in_with(name, profile.path(), extra).await?;
        v._profile = Some(profile);
        Ok(v)
    }

    /// A visitor whose profile lives at `dir` (kept by the caller: a returning visitor).
    pub async fn launch_in(name: &str, dir: &Path) -> Result<Visitor> {
        Visitor::launch_in_with(name, dir, &[]).await
    }

    /// [`Visitor::launch_in`] with extra Chromium flags.
    pub async fn launch_in_with(name: &str, dir: &Path, extra: &[String]) -> Result<Visitor> {
        let launched = browser::launch(&chromium(), dir, extra).await?;
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

    /// Start loading `url` without waiting for its load event (which a
    /// congested origin can hold back longer than CDP's request timeout);
    /// the caller waits for what it measures.
    pub async fn navigate(&self, url: &str) -> Result<()> {
        let js = format!("location.href = {}; true", serde_json::Value::from(url));
        self.eval::<bool>(&js).await?;
        Ok(())
    }

    /// Turn off the DevTools instrumentation chromiumoxide switches on for
    /// every page (Network, Performance, Log, and attaching to the page's
    /// service workers) for measurements: it reports every network chunk to
    /// us and costs the browser process CPU that the page then lacks.
    pub async fn quiet(&self) -> Result<()> {
        use chromiumoxide::cdp::browser_protocol::{log, network, performance, target};
        self.page.execute(network::DisableParams::default()).await?;
        self.page
            .execute(performance::DisableParams::default())
            .await?;
        self.page.execute(log::DisableParams::default()).await?;
        self.page
            .execute(
                target::SetAutoAttachParams::builder()
                    .auto_attach(false)
                    .wait_for_debugger_on_start(false)
                    .build()?,
            )
            .await?;
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

    /// Wait until this visitor's agent holds every piece of at least `n`
    /// resources (stored and announced), so it can seed them.
    pub async fn wait_seeding(&self, n: usize, within: Duration) -> Result<()> {
        self.wait_for(
            &format!("!!window.whis && !!window.whis.agent && window.whis.agent.status().resources >= {n}"),
            within,
        )
        .await
    }

    /// Wait until this page is controlled by the service worker and its agent
    /// has an open connection whose holdings it knows.
    pub async fn wait_connected(&self, within: Duration) -> Result<()> {
        self.wait_for(
            "!!navigator.serviceWorker.controller && !!window.whis && !!window.whis.agent \
             && window.whis.agent.openCount() >= 1 && window.whis.agent.settling() === 0",
            within,
        )
        .await
    }

    /// What the page knows of its visit, as JSON text: the timeline (links
    /// step by step, the event stream) and the service worker's last
    /// requests (where their bytes came from, why any came from the origin).
    /// For failure messages.
    pub async fn report(&self) -> String {
        self.eval::<serde_json::Value>(
            "window.whis.stats().then(s => ({ ...window.whis.timeline(), recent: s.recent }))",
        )
        .await
        .map(|t| t.to_string())
        .unwrap_or_else(|e| format!("no report from {}: {e}", self.name))
    }

    /// `window.whis.stats()` of the current page.
    pub async fn stats(&self) -> Result<Stats> {
        self.eval("window.whis.stats()").await
    }

    pub fn pid(&mut self) -> Option<u32> {
        self.launched.as_mut().and_then(|l| l.pid())
    }

    /// Close the tab as a person would (its `pagehide` runs, so the agent's
    /// goodbye beacon goes out), then the browser.
    pub async fn close(mut self) {
        use chromiumoxide::cdp::browser_protocol::page::CloseParams;
        let closed = tokio::time::timeout(
            Duration::from_secs(2),
            self.page.execute(CloseParams::default()),
        )
        .await;
        if matches!(closed, Ok(Ok(_))) {
            // The beacon leaves from the network service: give it a moment.
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
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

/// Bytes of the files behind site `paths` (like `/img/a.jpg`) under `root`.
pub fn bytes_on_disk(root: &Path, paths: &[impl AsRef<str>]) -> u64 {
    paths
        .iter()
        .map(|p| {
            std::fs::metadata(root.join(p.as_ref().trim_start_matches('/')))
                .map(|m| m.len())
                .unwrap_or(0)
        })
        .sum()
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

/// An HTTP answer as the harness reads it.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    /// Header names in lowercase.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> Result<serde_json::Value> {
        Ok(serde_json::from_slice(&self.body)?)
    }
}

/// A minimal HTTP/1.1 client for the harness (one request per connection).
pub async fn http_raw(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<HttpResponse> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url.strip_prefix("http://").ok_or("only http:// URLs")?;
    let (host, path) = rest
        .split_once('/')
        .map(|(h, p)| (h, format!("/{p}")))
        .unwrap_or((rest, "/".into()));
    let mut stream = tokio::net::TcpStream::connect(host).await?;
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    if !headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("transfer-encoding"))
    {
        req.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    stream.write_all(req.as_bytes()).await?;
    stream.write_all(body).await?;
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut raw))
        .await
        .map_err(|_| format!("{method} {url}: no complete answer within 30 s"))??;
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("malformed HTTP answer")?;
    let head = String::from_utf8_lossy(&raw[..end]).into_owned();
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or("malformed status line")?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let mut body = raw[end + 4..].to_vec();
    if headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"))
    {
        body = dechunk(&body);
    }
    Ok(HttpResponse {
        status,
        headers,
        body,
    })
}

/// Status and body text of a request.
pub async fn http(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Result<(u16, String)> {
    let r = http_raw(method, url, headers, body.as_bytes()).await?;
    Ok((r.status, r.text()))
}

fn dechunk(mut s: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(i) = s.windows(2).position(|w| w == b"\r\n") {
        let Ok(n) = usize::from_str_radix(String::from_utf8_lossy(&s[..i]).trim(), 16) else {
            break;
        };
        let rest = &s[i + 2..];
        if n == 0 || rest.len() < n {
            break;
        }
        out.extend_from_slice(&rest[..n]);
        s = rest[n..].strip_prefix(b"\r\n").unwrap_or(&rest[n..]);
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

/// A real SSE client on a raw socket: HTTP/1.1 chunked body, then
/// `id:`/`event:`/`data:` lines grouped by blank lines.
pub struct SseReader {
    stream: tokio::net::TcpStream,
    raw: Vec<u8>,
    body: String,
    pub status: u16,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    pub id: Option<String>,
    pub event: String,
    pub data: String,
}

impl SseReader {
    pub async fn open(base: &str, path: &str, last_event_id: Option<&str>) -> Result<SseReader> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let host = base.strip_prefix("http://").ok_or("only http://")?;
        let mut stream = tokio::net::TcpStream::connect(host).await?;
        let mut req =
            format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nAccept: text/event-stream\r\n");
        if let Some(id) = last_event_id {
            req.push_str(&format!("Last-Event-ID: {id}\r\n"));
        }
        req.push_str("\r\n");
        stream.write_all(req.as_bytes()).await?;
        let mut raw = Vec::new();
        let mut buf = [0u8; 4096];
        let head_end = loop {
            if let Some(i) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
                break i;
            }
            let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf)).await??;
            if n == 0 {
                return Err("connection closed before headers".into());
            }
            raw.extend_from_slice(&buf[..n]);
        };
        let head = String::from_utf8_lossy(&raw[..head_end]).into_owned();
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or("status")?;
        let rest = raw[head_end + 4..].to_vec();
        let mut r = SseReader {
            stream,
            raw: rest,
            body: String::new(),
            status,
        };
        if !head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked")
        {
            // An error answer with a plain body: keep it readable.
            r.body = String::from_utf8_lossy(&r.raw).into_owned();
            r.raw.clear();
        }
        Ok(r)
    }

    /// The body so far (for error answers).
    pub fn body(&self) -> &str {
        &self.body
    }

    /// Move complete chunks from `raw` into `body`; false once the stream ended.
    fn dechunk(&mut self) -> bool {
        loop {
            let Some(line_end) = self.raw.windows(2).position(|w| w == b"\r\n") else {
                return true;
            };
            let size_text = String::from_utf8_lossy(&self.raw[..line_end]).into_owned();
            let Ok(size) = usize::from_str_radix(size_text.trim(), 16) else {
                return false;
            };
            if size == 0 {
                return false;
            }
            if self.raw.len() < line_end + 2 + size + 2 {
                return true;
            }
            let chunk = self.raw[line_end + 2..line_end + 2 + size].to_vec();
            self.body.push_str(&String::from_utf8_lossy(&chunk));
            self.raw.drain(..line_end + 2 + size + 2);
        }
    }

    /// The next event (comments and `retry:` skipped), or None on timeout/end.
    pub async fn next_event(&mut self, within: Duration) -> Option<SseEvent> {
        use tokio::io::AsyncReadExt;
        let deadline = Instant::now() + within;
        // Bytes that arrived with the headers or a previous read.
        let mut open = self.dechunk();
        loop {
            while let Some(end) = self.body.find("\n\n") {
                let block: String = self.body.drain(..end + 2).collect();
                let mut ev = SseEvent {
                    id: None,
                    event: "message".into(),
                    data: String::new(),
                };
                let mut any = false;
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("id:") {
                        ev.id = Some(v.trim().to_string());
                        any = true;
                    } else if let Some(v) = line.strip_prefix("event:") {
                        ev.event = v.trim().to_string();
                        any = true;
                    } else if let Some(v) = line.strip_prefix("data:") {
                        if !ev.data.is_empty() {
                            ev.data.push('\n');
                        }
                        ev.data.push_str(v.strip_prefix(' ').unwrap_or(v));
                        any = true;
                    }
                }
                if any && !(ev.data.is_empty() && ev.event == "message") {
                    return Some(ev);
                }
            }
            let now = Instant::now();
            if now >= deadline || !open {
                return None;
            }
            let mut buf = [0u8; 8192];
            match tokio::time::timeout(deadline - now, self.stream.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return None,
                Ok(Ok(n)) => {
                    self.raw.extend_from_slice(&buf[..n]);
                    open = self.dechunk();
                }
            }
        }
    }

    /// The next event of one kind, skipping others.
    pub async fn next_of(&mut self, kind: &str, within: Duration) -> Option<SseEvent> {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let ev = self.next_event(left).await?;
            if ev.event == kind {
                return Some(ev);
            }
        }
    }
}
