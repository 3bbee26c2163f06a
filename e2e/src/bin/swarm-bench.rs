//! The swarm benchmark: N headless Chromium visitors load a page of the demo
//! site from an origin whose uplink is congested, once without Whis and once
//! through Whis, in one invocation. Prints a Markdown table and writes JSON,
//! Markdown and an SVG chart.
//!
//! ```text
//! cargo run --release -p e2e --bin swarm-bench -- --visitors 10
//! ```
//!
//! Topology (all on loopback):
//! - throttle: a proxy in front of each site with a shared uplink and added
//!   latency; the bytes it carries to visitors are the site's bytes of a run;
//! - run "without Whis": a plain static origin (`whis --origin-only`) serving a
//!   copy of the site with plain `src` attributes and no client.js;
//! - runs "with Whis": `whis serve --root` (Whis is the origin) behind its own
//!   throttle, so Whis's own scripts, manifests and signaling are counted too.
//!   Worker browsers reach whis directly (they run beside it); what they send
//!   visitors is reported apart ("from worker"), not as origin bytes.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use e2e::throttle::{self, Shape};
use e2e::{Result, Stats, TempDir, Visitor};
use whis::config::{Config, OriginConfig};

#[derive(Debug, Clone)]
struct Args {
    visitors: usize,
    pattern: Pattern,
    stagger: Duration,
    mbit: f64,
    latency: Duration,
    page: String,
    peers_per_worker: usize,
    workers: bool,
    /// Also run Whis without worker browsers, in the same invocation.
    compare_workers: bool,
    /// Save a screenshot of the dashboard at the end of the last Whis run.
    dashboard: bool,
    out: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pattern {
    /// Everyone arrives at once.
    Together,
    /// A new visitor every `stagger`, earlier ones stay.
    Staggered,
    /// Each visitor leaves before the next arrives.
    OneAfterAnother,
}

fn usage() -> ! {
    eprintln!(
        "swarm-bench [--visitors N (10)] [--pattern together|staggered|sequential (staggered)] \
         [--stagger-ms MS (1500)] [--mbit RATE (20)] [--latency-ms MS (50)] [--page PATH (/gallery.html)] \
         [--peers-per-worker N (30)] [--no-workers | --compare-workers] [--dashboard-png] [--out DIR (bench-out)]"
    );
    std::process::exit(2)
}

fn parse_args() -> Args {
    let mut a = Args {
        visitors: 10,
        pattern: Pattern::Staggered,
        stagger: Duration::from_millis(1500),
        mbit: 20.0,
        latency: Duration::from_millis(50),
        page: "/gallery.html".into(),
        peers_per_worker: 30,
        workers: true,
        compare_workers: false,
        dashboard: false,
        out: PathBuf::from("bench-out"),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| usage());
        match flag.as_str() {
            "--visitors" => a.visitors = value().parse().unwrap_or_else(|_| usage()),
            "--pattern" => {
                a.pattern = match value().as_str() {
                    "together" => Pattern::Together,
                    "staggered" => Pattern::Staggered,
                    "sequential" => Pattern::OneAfterAnother,
                    _ => usage(),
                }
            }
            "--stagger-ms" => {
                a.stagger = Duration::from_millis(value().parse().unwrap_or_else(|_| usage()))
            }
            "--mbit" => a.mbit = value().parse().unwrap_or_else(|_| usage()),
            "--latency-ms" => {
                a.latency = Duration::from_millis(value().parse().unwrap_or_else(|_| usage()))
            }
            "--page" => a.page = value(),
            "--peers-per-worker" => {
                a.peers_per_worker = value().parse().unwrap_or_else(|_| usage())
            }
            "--no-workers" => a.workers = false,
            "--compare-workers" => a.compare_workers = true,
            "--dashboard-png" => a.dashboard = true,
            "--out" => a.out = PathBuf::from(value()),
            _ => usage(),
        }
    }
    if a.visitors == 0 {
        usage();
    }
    a
}

/// Copy the demo site; `plain` rewrites pages into the site as it would be
/// without Whis: no client.js, `src` instead of `data-whis-src`.
fn copy_site(from: &Path, to: &Path, plain: bool) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_site(&entry.path(), &target, plain)?;
        } else if plain && entry.path().extension().is_some_and(|e| e == "html") {
            let html = std::fs::read_to_string(entry.path())?;
            let html: String = html
                .lines()
                .filter(|l| !l.contains("/whis/client.js"))
                .collect::<Vec<_>>()
                .join("\n")
                .replace("data-whis-src=", "src=");
            std::fs::write(&target, html)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

/// A page is complete when every image has decoded and every video can play.
const COMPLETE_JS: &str = r#"(() => {
  const imgs = [...document.images].filter(i => i.hasAttribute('src') || i.hasAttribute('data-whis-src'));
  const media = [...document.querySelectorAll('video')];
  return location.href !== 'about:blank'
    && document.readyState === 'complete'
    && imgs.every(i => i.getAttribute('src') && i.complete && i.naturalWidth > 0)
    && media.every(v => v.readyState >= 2);
})()"#;

#[derive(Debug, Clone, Default, serde::Serialize)]
struct VisitorResult {
    name: String,
    complete_ms: f64,
    bytes_from_peers: u64,
    bytes_from_worker: u64,
    bytes_from_origin: u64,
    rejected_pieces: u64,
    ok: bool,
    /// Why the visit failed (launch, navigation, or the page never completed).
    error: Option<String>,
    /// The page's milestones (`whis.timeline()`), ms since navigation.
    timeline: serde_json::Value,
}

impl VisitorResult {
    /// One line for the progress log: time, where the bytes came from, milestones.
    fn summary(&self) -> String {
        let mb = |b: u64| b as f64 / 1e6;
        let mut s = format!("{:.0} ms", self.complete_ms);
        if let Some(e) = &self.error {
            s.push_str(&format!(" FAILED: {e}"));
        }
        if !self.timeline.is_null() {
            s.push_str(&format!(
                " (origin {:.1} MB, peers {:.1} MB, worker {:.1} MB; {})",
                mb(self.bytes_from_origin),
                mb(self.bytes_from_peers),
                mb(self.bytes_from_worker),
                self.timeline
            ));
        }
        s
    }
}

#[derive(Debug, Clone, serde::Serialize)]
struct RunResult {
    label: String,
    origin_bytes: u64,
    origin_bytes_per_visitor: f64,
    site_bytes: u64,
    copies_of_site: f64,
    offload_percent: f64,
    p50_ms: f64,
    p95_ms: f64,
    bytes_from_peers: u64,
    bytes_from_worker: u64,
    bytes_from_origin_reported: u64,
    rejected_pieces: u64,
    failed_visitors: usize,
    visitors: Vec<VisitorResult>,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * (sorted.len() as f64 - 1.0)).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

/// One visitor's page load. Never fails: a visitor that cannot launch or
/// load is a failed visitor in the figures, with its error, not the end of
/// the benchmark.
async fn visit(name: String, url: String, with_whis: bool) -> (Option<Visitor>, VisitorResult) {
    let mut r = VisitorResult {
        name,
        ..VisitorResult::default()
    };
    let v = match Visitor::launch(&r.name).await {
        Ok(v) => v,
        Err(e) => {
            r.error = Some(format!("launch: {e}"));
            return (None, r);
        }
    };
    if let Err(e) = v.quiet().await {
        r.error = Some(format!("quiet: {e}"));
        return (Some(v), r);
    }
    let start = Instant::now();
    if let Err(e) = v.navigate(&url).await {
        r.error = Some(format!("navigate: {e}"));
        return (Some(v), r);
    }
    match v.wait_for(COMPLETE_JS, Duration::from_secs(240)).await {
        Ok(()) => r.ok = true,
        Err(e) => r.error = Some(e.to_string()),
    }
    r.complete_ms = start.elapsed().as_secs_f64() * 1000.0;
    if with_whis {
        let stats = v
            .eval::<Stats>("window.whis ? window.whis.stats() : null")
            .await
            .unwrap_or_default();
        r.bytes_from_peers = stats.bytes_from_peers;
        r.bytes_from_worker = stats.bytes_from_worker;
        r.bytes_from_origin = stats.bytes_from_origin;
        r.rejected_pieces = stats.rejected_pieces;
        r.timeline = v
            .eval::<serde_json::Value>(
                "window.whis && window.whis.timeline ? window.whis.timeline() : null",
            )
            .await
            .unwrap_or_default();
    }
    (Some(v), r)
}

async fn run(
    args: &Args,
    label: &str,
    base: &str,
    with_whis: bool,
    origin: &throttle::Throttle,
    site_bytes: u64,
    dashboard: Option<(&str, &Path)>,
) -> Result<RunResult> {
    let before = origin.bytes_to_clients();
    let url = format!("{base}{}", args.page);
    let mut results = Vec::new();
    let mut open: Vec<Visitor> = Vec::new();
    match args.pattern {
        Pattern::OneAfterAnother => {
            for i in 0..args.visitors {
                let (v, r) = visit(format!("{label}-{i}"), url.clone(), with_whis).await;
                eprintln!("  {label} visitor {i}: {}", r.summary());
                results.push(r);
                if let Some(v) = v {
                    v.close().await;
                }
            }
        }
        Pattern::Together | Pattern::Staggered => {
            let mut tasks = Vec::new();
            for i in 0..args.visitors {
                if args.pattern == Pattern::Staggered && i > 0 {
                    tokio::time::sleep(args.stagger).await;
                }
                tasks.push(tokio::spawn(visit(
                    format!("{label}-{i}"),
                    url.clone(),
                    with_whis,
                )));
            }
            for (i, t) in tasks.into_iter().enumerate() {
                let (v, r) = t.await?;
                eprintln!("  {label} visitor {i}: {}", r.summary());
                results.push(r);
                open.extend(v);
            }
        }
    }
    // Let agents report their last figures before the browsers go.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let origin_bytes = origin.bytes_to_clients() - before;
    // The operator's view of this swarm, while its visitors are still here.
    if let Some((front, png)) = dashboard {
        if let Err(e) = screenshot_dashboard(front, png).await {
            eprintln!("  no dashboard screenshot: {e}");
        }
    }
    for v in open {
        v.close().await;
    }
    let mut times: Vec<f64> = results
        .iter()
        .filter(|r| r.ok)
        .map(|r| r.complete_ms)
        .collect();
    times.sort_by(|a, b| a.total_cmp(b));
    let n = args.visitors as f64;
    let total_demand = site_bytes as f64 * n;
    Ok(RunResult {
        label: label.to_string(),
        origin_bytes,
        origin_bytes_per_visitor: origin_bytes as f64 / n,
        site_bytes,
        copies_of_site: origin_bytes as f64 / site_bytes as f64,
        offload_percent: (100.0 * (1.0 - origin_bytes as f64 / total_demand)).max(0.0),
        p50_ms: percentile(&times, 50.0),
        p95_ms: percentile(&times, 95.0),
        bytes_from_peers: results.iter().map(|r| r.bytes_from_peers).sum(),
        bytes_from_worker: results.iter().map(|r| r.bytes_from_worker).sum(),
        bytes_from_origin_reported: results.iter().map(|r| r.bytes_from_origin).sum(),
        rejected_pieces: results.iter().map(|r| r.rejected_pieces).sum(),
        failed_visitors: results.iter().filter(|r| !r.ok).count(),
        visitors: results,
    })
}

/// Open `/whis/dashboard` on the server directly (not through the throttle)
/// and save it as a PNG once it is live and shows a swarm.
async fn screenshot_dashboard(front: &str, png: &Path) -> Result<()> {
    use chromiumoxide::page::ScreenshotParams;
    let operator = Visitor::launch("operator").await?;
    let shot = async {
        operator.goto(&format!("{front}/whis/dashboard")).await?;
        operator
            .wait_for(
                "document.getElementById('status').textContent === 'live' && document.getElementById('swarms').textContent.includes('s')",
                Duration::from_secs(20),
            )
            .await?;
        // A few one-second samples, so the offload chart has a line.
        tokio::time::sleep(Duration::from_secs(4)).await;
        let params = ScreenshotParams::builder().full_page(true).build();
        operator.page.save_screenshot(params, png).await?;
        Ok::<_, e2e::Error>(())
    }
    .await;
    operator.close().await;
    shot?;
    eprintln!("  dashboard screenshot: {}", png.display());
    Ok(())
}

/// Bytes one visitor needs for the page: the page, its scripts, styles, images and media.
async fn measure_site_bytes(base: &str, page: &str) -> Result<u64> {
    let v = Visitor::launch("measure").await?;
    v.goto(&format!("{base}{page}")).await?;
    let ok = v.wait_for(COMPLETE_JS, Duration::from_secs(240)).await;
    let bytes: f64 = v
        .eval(
            "performance.getEntriesByType('resource').concat(performance.getEntriesByType('navigation'))\
             .reduce((s, e) => s + (e.encodedBodySize || 0), 0)",
        )
        .await?;
    v.close().await;
    ok?;
    Ok(bytes as u64)
}

fn markdown(args: &Args, runs: &[RunResult], workers: Option<&WorkerFigures>) -> String {
    let mut s = format!(
        "{} visitors, {:?} arrival, page {}, origin uplink {} Mbit/s with {} ms latency, {} visitors per swarm\n\n",
        args.visitors,
        args.pattern,
        args.page,
        args.mbit,
        args.latency.as_millis(),
        args.peers_per_worker
    );
    s.push_str("| run | origin bytes | per visitor | copies of the page | offload | complete p50 | complete p95 | from peers | from worker | rejected | failed |\n");
    s.push_str("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for r in runs {
        s.push_str(&format!(
            "| {} | {:.1} MB | {:.2} MB | {:.2} | {:.0} % | {:.0} ms | {:.0} ms | {:.1} MB | {:.1} MB | {} | {} |\n",
            r.label,
            r.origin_bytes as f64 / 1e6,
            r.origin_bytes_per_visitor / 1e6,
            r.copies_of_site,
            r.offload_percent,
            r.p50_ms,
            r.p95_ms,
            r.bytes_from_peers as f64 / 1e6,
            r.bytes_from_worker as f64 / 1e6,
            r.rejected_pieces,
            r.failed_visitors
        ));
    }
    if let Some((plain, rest)) = runs.split_first() {
        s.push('\n');
        for r in rest {
            s.push_str(&format!(
                "{}: the origin sent {:.1} % of the bytes it sent without Whis, and the median visitor's page was complete in {:.2}× the time.\n",
                r.label,
                100.0 * r.origin_bytes as f64 / plain.origin_bytes.max(1) as f64,
                r.p50_ms / plain.p50_ms
            ));
        }
    }
    if let Some(w) = workers {
        s.push_str(&format!(
            "\nWorker browsers: {} started, launch to joined {}, memory of all worker browsers {:.0} MiB, restarts {}.\n",
            w.started,
            w.ready_ms.map(|ms| format!("{ms} ms")).unwrap_or_else(|| "not reached".into()),
            w.memory_bytes as f64 / 1048576.0,
            w.restarts
        ));
    }
    s
}

#[derive(Debug, Clone, serde::Serialize)]
struct WorkerFigures {
    started: usize,
    /// Launch to joined the swarm, of the first worker.
    ready_ms: Option<u64>,
    /// All worker browser processes together (proportional set size).
    memory_bytes: u64,
    restarts: u64,
}

/// Bars of origin MB and p50/p95 seconds, without and with Whis.
fn svg(runs: &[RunResult]) -> String {
    let (w, h) = (640.0, 300.0);
    let mut s = format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="12"><rect width="100%" height="100%" fill="#fff"/>"##
    );
    type Measure = fn(&RunResult) -> f64;
    let groups: [(&str, Measure, &str); 3] = [
        ("origin MB", |r| r.origin_bytes as f64 / 1e6, "MB"),
        ("complete p50 (s)", |r| r.p50_ms / 1000.0, "s"),
        ("complete p95 (s)", |r| r.p95_ms / 1000.0, "s"),
    ];
    let colors = ["#f0883e", "#58a6ff", "#3fb950"];
    let step = 190.0 / runs.len().max(1) as f64;
    let bar = step * 0.8;
    for (gi, (title, f, unit)) in groups.iter().enumerate() {
        let x0 = 30.0 + gi as f64 * 205.0;
        let max = runs.iter().map(f).fold(0.0f64, f64::max).max(1e-9);
        s.push_str(&format!(
            r#"<text x="{}" y="20" font-weight="bold">{title}</text>"#,
            x0
        ));
        for (ri, r) in runs.iter().enumerate() {
            let v = f(r);
            let bh = 200.0 * v / max;
            let x = x0 + ri as f64 * step;
            let y = 250.0 - bh;
            s.push_str(&format!(
                r#"<rect x="{x:.1}" y="{y:.1}" width="{bar:.1}" height="{bh:.1}" fill="{}"/><text x="{:.1}" y="{:.1}" text-anchor="middle">{v:.1} {unit}</text>"#,
                colors[ri % colors.len()],
                x + bar / 2.0,
                y - 4.0,
            ));
        }
    }
    for (ri, r) in runs.iter().enumerate() {
        let x = 30.0 + ri as f64 * 200.0;
        s.push_str(&format!(
            r#"<rect x="{x}" y="276" width="12" height="12" fill="{}"/><text x="{}" y="287">{}</text>"#,
            colors[ri % colors.len()],
            x + 16.0,
            r.label
        ));
    }
    s.push_str("</svg>\n");
    s
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let args = parse_args();
    e2e::init_bench_logs();
    let shape = Shape {
        bits_per_second: (args.mbit * 1e6) as u64,
        latency: args.latency,
    };
    let sites = TempDir::new("bench-sites");
    let whis_site = sites.path().join("whis");
    let plain_site = sites.path().join("plain");
    copy_site(&e2e::demo_site(), &whis_site, false)?;
    copy_site(&e2e::demo_site(), &plain_site, true)?;

    // Two plain origins (one per site copy), each behind its own congested uplink.
    let mut plain_cfg = Config::for_root(&plain_site);
    plain_cfg.origin_only = true;
    let plain_origin = whis::start(plain_cfg).await?;
    let plain_throttle = throttle::start(plain_origin.addr, shape).await?;
    let with_workers = whis_stack(&whis_site, shape, &args, args.workers).await?;
    let without_workers = if args.compare_workers && args.workers {
        Some(whis_stack(&whis_site, shape, &args, false).await?)
    } else {
        None
    };

    let site_bytes = measure_site_bytes(&plain_origin.url(), &args.page).await?;
    eprintln!(
        "page {} needs {:.2} MB per visitor",
        args.page,
        site_bytes as f64 / 1e6
    );

    eprintln!("run: without Whis");
    let without = run(
        &args,
        "without Whis",
        &plain_throttle.url(),
        false,
        &plain_throttle,
        site_bytes,
        None,
    )
    .await?;
    let mut runs = vec![without];
    if let Some(stack) = &without_workers {
        eprintln!("run: with Whis, no worker browsers");
        runs.push(
            stack
                .run(&args, "Whis, no workers", site_bytes, None)
                .await?,
        );
    }
    let label = if args.workers {
        "Whis + workers"
    } else {
        "with Whis"
    };
    eprintln!("run: {label}");
    std::fs::create_dir_all(&args.out)?;
    let stem = format!("swarm-{}v-{:?}", args.visitors, args.pattern).to_lowercase();
    let png = args.out.join(format!("{stem}-dashboard.png"));
    let dashboard = args.dashboard.then_some(png.as_path());
    runs.push(
        with_workers
            .run(&args, label, site_bytes, dashboard)
            .await?,
    );
    let snap = with_workers.front.state.workers.snapshot();
    let workers = args.workers.then(|| WorkerFigures {
        started: snap.slots.len(),
        ready_ms: snap.slots.iter().find_map(|s| s.ready_ms),
        memory_bytes: snap.memory_bytes,
        restarts: snap.restarts,
    });

    let md = markdown(&args, &runs, workers.as_ref());
    println!("{md}");
    std::fs::write(args.out.join(format!("{stem}.md")), &md)?;
    std::fs::write(args.out.join(format!("{stem}.svg")), svg(&runs))?;
    std::fs::write(
        args.out.join(format!("{stem}.json")),
        serde_json::to_string_pretty(&serde_json::json!({
            "visitors": args.visitors,
            "pattern": format!("{:?}", args.pattern),
            "mbit": args.mbit,
            "latency_ms": args.latency.as_millis() as u64,
            "page": args.page,
            "peers_per_worker": args.peers_per_worker,
            "workers": workers,
            "runs": runs,
        }))?,
    )?;
    eprintln!("wrote {}/{stem}.{{md,svg,json}}", args.out.display());

    with_workers.stop().await;
    if let Some(stack) = without_workers {
        stack.stop().await;
    }
    plain_origin.stop().await;
    plain_throttle.stop();
    Ok(())
}

/// The site served by `whis` itself (Whis is the origin, as `whis serve
/// --root` runs), behind its own congested uplink: everything the site sends
/// to visitors (pages, pictures, Whis's scripts, manifests, signaling) crosses
/// it and is counted; what visitors send each other does not.
struct WhisStack {
    throttle: throttle::Throttle,
    front: whis::Running,
    _profiles: TempDir,
}

async fn whis_stack(site: &Path, shape: Shape, args: &Args, workers: bool) -> Result<WhisStack> {
    let mut cfg = Config::for_root(site);
    cfg.origin = OriginConfig::Static {
        root: site.to_path_buf(),
    };
    cfg.peers_per_swarm = args.peers_per_worker;
    cfg.workers.enabled = workers;
    let profiles = TempDir::new("bench-workers");
    cfg.workers.profile_dir = Some(profiles.path().to_path_buf());
    let front = whis::start(cfg).await?;
    let throttle = throttle::start(front.addr, shape).await?;
    Ok(WhisStack {
        throttle,
        front,
        _profiles: profiles,
    })
}

impl WhisStack {
    async fn run(
        &self,
        args: &Args,
        label: &str,
        site_bytes: u64,
        dashboard: Option<&Path>,
    ) -> Result<RunResult> {
        let front = self.front.url();
        run(
            args,
            label,
            &self.throttle.url(),
            true,
            &self.throttle,
            site_bytes,
            dashboard.map(|png| (front.as_str(), png)),
        )
        .await
    }

    async fn stop(self) {
        self.throttle.stop();
        self.front.stop().await;
    }
}
