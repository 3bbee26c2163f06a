//! Firefox in the swarm: a Firefox ESR visitor (driven over WebDriver BiDi by
//! `e2e/firefox-visitor.mjs` with puppeteer-core, default prefs) and a
//! Chromium visitor, in both orders. The second gets at least 90 % of the
//! gallery's bytes from the first, byte-exact, and the origin's own counter
//! shows it did not send them. What made this fail before, as seen here: each
//! signal is its own POST, Firefox posts its candidates all at once, and a
//! candidate that overtook its offer or answer made `addIceCandidate` throw,
//! which cost the connection (the agent now holds such candidates back).
//! whis's STUN (on by default) also gives each browser a server-reflexive
//! candidate, what two visitors behind different NATs need.
//!
//! A missing Firefox, Node.js or npm registry is a failure, never a skip.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout};

use e2e::*;

const FIREFOX: &str = "/usr/bin/firefox-esr";

/// Every `<img>` has a source and decoded to a real picture.
const IMAGES_DONE: &str = "(() => { const imgs = [...document.querySelectorAll('#gallery img')]; \
    return imgs.length > 0 && imgs.every(i => i.getAttribute('src') && i.complete && i.naturalWidth > 0) })()";

/// One Firefox ESR process with a fresh profile, behind the Node driver.
struct Firefox {
    /// `None` once closed.
    child: Option<Child>,
    io: tokio::sync::Mutex<(ChildStdin, Lines<BufReader<ChildStdout>>, u64)>,
}

impl Firefox {
    async fn launch() -> Result<Firefox> {
        if !Path::new(FIREFOX).exists() {
            return Err(format!("no {FIREFOX}: apt-get install -y firefox-esr").into());
        }
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("firefox-visitor.mjs");
        // puppeteer-core is installed here on first use and reused by later runs.
        let npm_dir: PathBuf = std::env::temp_dir().join("whis-e2e-puppeteer");
        let mut child = tokio::process::Command::new("node")
            .arg(&script)
            .arg("--dir")
            .arg(&npm_dir)
            .args(["--firefox", FIREFOX])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("cannot run node (apt-get install -y nodejs npm): {e}"))?;
        let stdin = child.stdin.take().ok_or("node's stdin")?;
        let mut lines = BufReader::new(child.stdout.take().ok_or("node's stdout")?).lines();
        // The first run installs puppeteer-core from the npm registry.
        let ready = tokio::time::timeout(Duration::from_secs(300), lines.next_line())
            .await
            .map_err(|_| "Firefox did not start within 300 s")??
            .ok_or("the Firefox driver exited before it was ready (see its stderr above)")?;
        let ready: serde_json::Value = serde_json::from_str(&ready)?;
        if ready["ready"] != true {
            return Err(format!("the Firefox driver said {ready}").into());
        }
        eprintln!("firefox: {}", ready["version"]);
        Ok(Firefox {
            child: Some(child),
            io: tokio::sync::Mutex::new((stdin, lines, 0)),
        })
    }

    async fn call(&self, mut cmd: serde_json::Value) -> Result<serde_json::Value> {
        let mut io = self.io.lock().await;
        let (stdin, lines, next) = &mut *io;
        *next += 1;
        cmd["id"] = (*next).into();
        stdin.write_all(format!("{cmd}\n").as_bytes()).await?;
        stdin.flush().await?;
        let line = tokio::time::timeout(Duration::from_secs(90), lines.next_line())
            .await
            .map_err(|_| format!("Firefox did not answer within 90 s: {cmd}"))??
            .ok_or("the Firefox driver exited")?;
        let answer: serde_json::Value = serde_json::from_str(&line)?;
        if answer["id"] != *next {
            return Err(format!("answer {answer} to command {cmd}").into());
        }
        if answer["ok"] != true {
            return Err(format!("firefox: {}: {cmd}", answer["error"]).into());
        }
        Ok(answer["value"].clone())
    }

    /// Close Firefox (the driver does it at the end of its input), then the driver.
    async fn close(mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let (stdin, _, _) = self.io.get_mut();
        let _ = stdin.shutdown().await;
        if tokio::time::timeout(Duration::from_secs(20), child.wait())
            .await
            .is_err()
        {
            terminate(&child);
            if tokio::time::timeout(Duration::from_secs(10), child.wait())
                .await
                .is_err()
            {
                let _ = child.kill().await;
            }
        }
    }
}

/// SIGTERM to the driver, which closes Firefox and exits (a SIGKILL would
/// leave Firefox behind).
fn terminate(child: &Child) {
    if let Some(pid) = child.id() {
        // SAFETY: kill(2) on the pid of our own child process.
        unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    }
}

impl Drop for Firefox {
    fn drop(&mut self) {
        // A failed test: no waiting here; the driver cleans up on its own.
        if let Some(child) = &self.child {
            terminate(child);
        }
    }
}

/// A visitor in either browser.
enum Browser {
    Chromium(Box<Visitor>),
    Firefox(Box<Firefox>),
}

#[derive(Clone, Copy, Debug)]
enum Kind {
    Chromium,
    Firefox,
}

impl Browser {
    async fn launch(kind: Kind, name: &str) -> Result<Browser> {
        Ok(match kind {
            Kind::Chromium => Browser::Chromium(Box::new(Visitor::launch(name).await?)),
            Kind::Firefox => Browser::Firefox(Box::new(Firefox::launch().await?)),
        })
    }

    async fn goto(&self, url: &str) -> Result<()> {
        match self {
            Browser::Chromium(v) => v.goto(url).await,
            Browser::Firefox(f) => f.call(serde_json::json!({ "goto": url })).await.map(drop),
        }
    }

    async fn eval<T: DeserializeOwned>(&self, js: &str) -> Result<T> {
        match self {
            Browser::Chromium(v) => v.eval(js).await,
            Browser::Firefox(f) => Ok(serde_json::from_value(
                f.call(serde_json::json!({ "eval": js })).await?,
            )?),
        }
    }

    async fn wait_for(&self, js: &str, within: Duration) -> Result<()> {
        let start = Instant::now();
        loop {
            match self.eval::<bool>(js).await {
                Ok(true) => return Ok(()),
                Ok(false) | Err(_) if start.elapsed() < within => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Ok(false) => return Err(format!("not true within {within:?}: {js}").into()),
                Err(e) => return Err(e),
            }
        }
    }

    async fn close(self) {
        match self {
            Browser::Chromium(v) => (*v).close().await,
            Browser::Firefox(f) => (*f).close().await,
        }
    }
}

/// Load the gallery, wait until every image is on screen and the agent joined.
async fn load_gallery(b: &Browser, url: &str) -> Result<Vec<String>> {
    b.goto(&format!("{url}/gallery.html")).await?;
    b.wait_for(IMAGES_DONE, Duration::from_secs(90)).await?;
    b.wait_for("!!window.whis", Duration::from_secs(10)).await?;
    b.eval::<serde_json::Value>("window.whis.ready().then(() => true)")
        .await?;
    b.eval("[...document.querySelectorAll('#gallery img')].map(i => new URL(i.src).pathname)")
        .await
}

/// Controlled by its service worker, its agent joined and connected to a
/// peer whose holdings it knows.
const CONNECTED: &str =
    "!!navigator.serviceWorker.controller && !!window.whis && !!window.whis.agent \
    && window.whis.agent.openCount() >= 1 && window.whis.agent.settling() === 0";

/// The first visitor loads the gallery (from the origin) and seeds it; the
/// second opens the front page, connects, and fetches each gallery image
/// through its service worker, one after another.
///
/// One after another, not the gallery page's twelve at once: Firefox
/// receives a data channel at 3-5 MB/s on this shared two-core machine
/// (Chromium about twice that, both measured with raw channels), and with
/// twelve resources sharing one link, each gets a twelfth of it. Under heavy
/// load that falls below what the service worker waits for (a resource at
/// 1 MB/s, docs/protocol.md `policy.prefer`) and the origin rightly races
/// the tail. Fetched one at a time, each image has the whole link, and what
/// is measured is the connection between the two browsers.
async fn second_gets_the_gallery_from_the_first(first: Kind, second: Kind) -> Result<()> {
    let _one = serial().await;
    init_logs();
    // No prefetch: the second visitor's front page would otherwise pull the
    // gallery ahead (whis learned from the first that it follows), and this
    // test is about the fetches it makes itself.
    let whis = start_whis(&demo_site(), |c| c.prefetch_budget = 0).await?;
    assert!(whis.stun_addr.is_some(), "STUN is on by default");
    let url = whis.url();

    let a = Browser::launch(first, "a").await?;
    let images = load_gallery(&a, &url).await?;
    let image_bytes = bytes_on_disk(&demo_site(), &images);
    assert!(image_bytes > 2_000_000, "the gallery is worth sharing");
    a.wait_for(
        &format!("window.whis.agent.status().resources >= {}", images.len()),
        Duration::from_secs(60),
    )
    .await?;

    let before = origin_bytes(&whis);
    let b = Browser::launch(second, "b").await?;
    b.goto(&format!("{url}/index.html")).await?;
    b.wait_for(CONNECTED, Duration::from_secs(60)).await?;
    let mut fetched = Vec::new();
    for p in &images {
        fetched.push(b.eval::<Fetched>(&fetch_digest_js(p, "{}")).await?);
    }
    let stats: Stats = b.eval("window.whis.stats()").await?;
    let origin_for_b = origin_bytes(&whis) - before;
    let timeline: serde_json::Value = b.eval("window.whis.timeline()").await?;
    eprintln!(
        "{first:?} -> {second:?}: b {stats:?}; origin sent {origin_for_b} bytes while b fetched \
         {image_bytes} bytes of images; b's timeline {timeline}"
    );
    // Byte-exact, as the page's own fetch (through its service worker) saw it.
    for (p, got) in images.iter().zip(&fetched) {
        let want = sha256_file(&demo_site().join(p.trim_start_matches('/')))?;
        assert_eq!((got.status, &got.sha256), (200, &want), "{p}");
    }
    assert!(
        stats.bytes_from_peers * 10 >= image_bytes * 9,
        "{second:?} got {} of {image_bytes} image bytes from the {first:?} peer",
        stats.bytes_from_peers
    );
    // The origin's own count, the front page included: at most a tenth.
    assert!(
        origin_for_b * 10 <= image_bytes,
        "origin sent {origin_for_b} bytes for {second:?}, the images are {image_bytes}"
    );
    assert_eq!(stats.rejected_pieces, 0);

    a.close().await;
    b.close().await;
    whis.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_firefox_visitor_gets_the_gallery_from_a_chromium_visitor() -> Result<()> {
    second_gets_the_gallery_from_the_first(Kind::Chromium, Kind::Firefox).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chromium_visitor_gets_the_gallery_from_a_firefox_visitor() -> Result<()> {
    second_gets_the_gallery_from_the_first(Kind::Firefox, Kind::Chromium).await
}
