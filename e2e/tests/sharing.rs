//! Peers that should share, share: every time, after a browser restart, and
//! after the browser stops the service worker. Each scenario runs ten times
//! in one test, with real Chromium visitors (separate processes and
//! profiles), and every run must deliver: B gets at least 90 % of its bytes
//! from A, as B's page and the origin's own counter both show.

use std::time::Duration;

use e2e::*;

/// Three assets of the demo site, about 8 MB.
const ASSETS: [&str; 3] = [
    "/img/aurora-04.jpg",
    "/media/clip.webm",
    "/img/waves-01.jpg",
];
const RUNS: usize = 10;

fn asset_bytes() -> u64 {
    bytes_on_disk(&demo_site(), &ASSETS)
}

/// Open the demo's home page (no heavy assets) until the service worker
/// controls it and the agent has joined.
async fn arrive(v: &Visitor, url: &str) -> Result<()> {
    v.goto(&format!("{url}/")).await?;
    v.wait_for(
        "!!navigator.serviceWorker.controller && !!window.whis",
        Duration::from_secs(30),
    )
    .await?;
    v.eval::<serde_json::Value>("window.whis.ready()").await?;
    Ok(())
}

/// Fetch the assets through the page's service worker, byte-exact.
async fn fetch_assets(v: &Visitor) -> Result<()> {
    for p in ASSETS {
        let got: Fetched = v.eval(&fetch_digest_js(p, "{}")).await?;
        assert_eq!(got.status, 200, "{p}");
        assert_eq!(
            got.sha256,
            sha256_file(&demo_site().join(p.trim_start_matches('/')))?,
            "{p}"
        );
    }
    Ok(())
}

/// A visitor that fetches the assets and holds them all, ready to seed.
async fn seeder(v: &Visitor, url: &str) -> Result<()> {
    arrive(v, url).await?;
    fetch_assets(v).await?;
    v.wait_seeding(ASSETS.len(), Duration::from_secs(30)).await
}

/// Every run passed, or the failures with their timelines.
fn all_passed(failures: Vec<String>) {
    assert!(
        failures.is_empty(),
        "{} of {RUNS} runs failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// B arrives, waits 1.5 s after joining (as a visitor reads), and fetches
/// the assets; returns (bytes B got from peers, bytes the origin sent meanwhile).
async fn b_fetches(whis: &whis::Running, b: &Visitor) -> Result<(u64, u64)> {
    arrive(b, &whis.url()).await?;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let before = origin_bytes(whis);
    fetch_assets(b).await?;
    let stats = b.stats().await?;
    Ok((stats.bytes_from_peers, origin_bytes(whis) - before))
}

/// What the run says when B did not get its bytes from A: B's connections
/// step by step, its event stream, and why its service worker went to the
/// origin, request by request.
async fn explain(b: &Visitor, a: &Visitor) -> String {
    format!(r#"{{"b":{},"a":{}}}"#, b.report().await, a.report().await)
}

fn check(run: usize, peers: u64, origin: u64, why: &str) -> std::result::Result<(), String> {
    let total = asset_bytes();
    // Each run's links, for the record: how many tries each took.
    let links: Vec<String> = serde_json::from_str::<serde_json::Value>(why)
        .ok()
        .and_then(|t| t["b"]["connections"].as_array().cloned())
        .unwrap_or_default()
        .iter()
        .map(|c| format!("{} try {}", c["state"], c["attempt"]))
        .collect();
    eprintln!("run {run}: {peers} of {total} bytes from peers, origin {origin}; links: {links:?}");
    if peers * 10 >= total * 9 && origin * 10 <= total {
        Ok(())
    } else {
        Err(format!(
            "run {run}: B got {peers} of {total} bytes from A; the origin sent {origin}. Timelines: {why}"
        ))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_visitor_that_stays_shares_every_time() -> Result<()> {
    let _one = serial().await;
    init_logs();
    let whis = start_whis(&demo_site(), |_| {}).await?;
    let mut failures = Vec::new();
    for run in 1..=RUNS {
        let a = Visitor::launch("a").await?;
        seeder(&a, &whis.url()).await?;
        let b = Visitor::launch("b").await?;
        let (peers, origin) = b_fetches(&whis, &b).await?;
        if let Err(e) = check(run, peers, origin, &explain(&b, &a).await) {
            failures.push(e);
        }
        b.close().await;
        a.close().await;
    }
    whis.stop().await;
    all_passed(failures);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_returning_visitor_seeds_from_its_store_every_time() -> Result<()> {
    let _one = serial().await;
    init_logs();
    let whis = start_whis(&demo_site(), |_| {}).await?;
    // A's first visit fills its store; then A closes its browser.
    let profile = TempDir::new("a-returns");
    let a = Visitor::launch_in("a", profile.path()).await?;
    seeder(&a, &whis.url()).await?;
    a.close().await;
    let mut failures = Vec::new();
    for run in 1..=RUNS {
        // A comes back with the same profile and only opens the home page:
        // everything it shares comes from its store.
        let a = Visitor::launch_in("a", profile.path()).await?;
        let before = origin_bytes(&whis);
        arrive(&a, &whis.url()).await?;
        a.wait_seeding(ASSETS.len(), Duration::from_secs(30))
            .await?;
        let b = Visitor::launch("b").await?;
        let (peers, origin) = b_fetches(&whis, &b).await?;
        if let Err(e) = check(run, peers, origin, &explain(&b, &a).await) {
            failures.push(e);
        }
        let a_spent = origin_bytes(&whis) - before - origin;
        assert!(
            a_spent < 64 * 1024,
            "run {run}: the returning visitor cost the origin {a_spent} bytes"
        );
        b.close().await;
        a.close().await;
    }
    whis.stop().await;
    all_passed(failures);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_worker_the_browser_stopped_finds_its_agent_again() -> Result<()> {
    use chromiumoxide::cdp::browser_protocol::service_worker::{
        EnableParams, StopAllWorkersParams,
    };
    let _one = serial().await;
    init_logs();
    let whis = start_whis(&demo_site(), |_| {}).await?;
    let a = Visitor::launch("a").await?;
    seeder(&a, &whis.url()).await?;
    let mut failures = Vec::new();
    for run in 1..=RUNS {
        let b = Visitor::launch("b").await?;
        arrive(&b, &whis.url()).await?;
        b.wait_connected(Duration::from_secs(30)).await?;
        // The browser stops B's idle service worker (as it does after 30 s
        // idle, or under memory pressure); B's page and its link to A stay.
        b.page.execute(EnableParams::default()).await?;
        b.page.execute(StopAllWorkersParams::default()).await?;
        let before = origin_bytes(&whis);
        fetch_assets(&b).await?;
        let stats = b.stats().await?;
        let origin = origin_bytes(&whis) - before;
        if let Err(e) = check(run, stats.bytes_from_peers, origin, &explain(&b, &a).await) {
            failures.push(e);
        }
        let rebridged: u64 = b.eval("window.whis.timeline().rebridged || 0").await?;
        assert!(
            rebridged >= 1,
            "run {run}: the restarted worker asked the page for its agent"
        );
        b.close().await;
    }
    a.close().await;
    whis.stop().await;
    all_passed(failures);
    Ok(())
}
