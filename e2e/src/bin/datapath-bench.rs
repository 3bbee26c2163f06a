//! The data-path micro-benchmark: how much of a data channel's raw
//! throughput survives the whole Whis path (peer's agent → data channel →
//! this page's agent → service worker, verified → `fetch()` in the page), and
//! what the service worker adds to a request it only passes through.
//!
//! ```text
//! cargo run --release -p e2e --bin datapath-bench -- --mib 16 --rounds 3
//! ```
//!
//! Two visitors (own Chromium processes and profiles) on a real whis with
//! workers off. A fetches the test files through its service worker, so it
//! holds every piece. B connects to A, then per round:
//! - **raw**: A sends the same number of bytes to B over a second data
//!   channel of their existing connection, in 16 KiB messages with the
//!   agent's own flow control (pause above 1 MiB buffered);
//! - **whis**: B `fetch()`es a file of that size that it does not hold; the
//!   time runs from the call to the last byte of the body, and the body is
//!   checked against the file's SHA-256 afterwards.
//!
//! The origin is loopback, so a piece the service worker gives up on comes
//! back fast: the share of bytes from peers is printed beside the figure.
//! Pass-through latency: 200 sequential `fetch()`es of a small (ineligible)
//! file from B (controlled) and from C (a visitor of the same site without
//! Whis's script, so no service worker), p50 and p99 of each.

use std::path::Path;
use std::time::Duration;

use e2e::{Result, Stats, TempDir, Visitor};
use sha2::Digest as _;

struct Args {
    mib: usize,
    rounds: usize,
    json: Option<String>,
}

fn usage() -> ! {
    eprintln!("datapath-bench [--mib N (16)] [--rounds N (3)] [--json PATH]");
    std::process::exit(2)
}

fn parse_args() -> Args {
    let mut a = Args {
        mib: 16,
        rounds: 3,
        json: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().unwrap_or_else(|| usage());
        match flag.as_str() {
            "--mib" => a.mib = value.parse().unwrap_or_else(|_| usage()),
            "--rounds" => a.rounds = value.parse().unwrap_or_else(|_| usage()),
            "--json" => a.json = Some(value),
            _ => usage(),
        }
    }
    if a.mib == 0 || a.rounds == 0 {
        usage();
    }
    a
}

/// A site with `rounds` incompressible files of `mib` MiB, a small file
/// under the sharing threshold, a page with Whis and a page without it.
fn make_site(dir: &Path, args: &Args) -> Result<Vec<String>> {
    let mut digests = Vec::new();
    for r in 0..args.rounds {
        let mut data = vec![0u8; args.mib << 20];
        let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ r as u64;
        for chunk in data.chunks_mut(8) {
            // xorshift64: fast, incompressible enough, deterministic.
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
        }
        digests.push(e2e::hex(&sha2::Sha256::digest(&data)));
        std::fs::write(dir.join(format!("blob-{r}.bin")), data)?;
    }
    std::fs::write(dir.join("small.txt"), "x".repeat(1024))?;
    std::fs::write(
        dir.join("index.html"),
        "<!doctype html><script src=\"/whis/client.js\" defer></script><title>bench</title><p>bench</p>",
    )?;
    std::fs::write(
        dir.join("plain.html"),
        "<!doctype html><title>plain</title><p>no whis</p>",
    )?;
    Ok(digests)
}

/// In both pages: a negotiated second channel on the agents' connection.
const RAW_CHANNEL_JS: &str = r#"(() => {
  const conn = [...window.whis.agent.peers.values()].find(p => p.open);
  const ch = conn.pc.createDataChannel('bench-raw', { negotiated: true, id: 1000, ordered: true });
  ch.binaryType = 'arraybuffer';
  window.__raw = { ch, got: 0, first: 0, last: 0 };
  ch.onmessage = (e) => {
    const r = window.__raw;
    if (!r.first) r.first = performance.now();
    r.got += e.data.byteLength;
    r.last = performance.now();
  };
  return new Promise((resolve) => { if (ch.readyState === 'open') resolve(true); else ch.onopen = () => resolve(true) });
})()"#;

fn send_raw_js(bytes: usize) -> String {
    format!(
        r#"(async () => {{
  const ch = window.__raw.ch, block = new Uint8Array(16384);
  ch.bufferedAmountLowThreshold = 256 * 1024;
  let sent = 0;
  while (sent < {bytes}) {{
    if (ch.bufferedAmount > 1024 * 1024) {{ await new Promise(r => {{ ch.onbufferedamountlow = r }}); continue }}
    ch.send(block); sent += block.byteLength;
  }}
  return sent;
}})()"#
    )
}

fn fetch_timed_js(path: &str) -> String {
    format!(
        r#"(async () => {{
  const t0 = performance.now();
  const r = await fetch({path:?});
  const b = await r.arrayBuffer();
  const ms = performance.now() - t0;
  const d = await crypto.subtle.digest('SHA-256', b);
  const hex = [...new Uint8Array(d)].map(x => x.toString(16).padStart(2, '0')).join('');
  return {{ ms, bytes: b.byteLength, sha256: hex }};
}})()"#
    )
}

const PASS_THROUGH_JS: &str = r#"(async () => {
  const times = [];
  for (let i = 0; i < 200; i++) {
    const t0 = performance.now();
    const r = await fetch('/small.txt?n=' + i, { cache: 'no-store' });
    await r.text();
    times.push(performance.now() - t0);
  }
  return times;
})()"#;

#[derive(serde::Deserialize)]
struct Timed {
    ms: f64,
    bytes: u64,
    sha256: String,
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[(((sorted.len() - 1) as f64) * p).round() as usize]
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    pct(&v, 0.5)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let args = parse_args();
    e2e::init_bench_logs();
    let site = TempDir::new("datapath-site");
    let digests = make_site(site.path(), &args)?;
    let whis = e2e::start_whis(site.path(), |_| {}).await?;
    let url = whis.url();
    let bytes = args.mib << 20;

    let a = Visitor::launch("a").await?;
    a.goto(&format!("{url}/index.html")).await?;
    a.wait_for(
        "!!navigator.serviceWorker.controller && !!window.whis && !!window.whis.agent",
        Duration::from_secs(30),
    )
    .await?;
    for (r, digest) in digests.iter().enumerate() {
        let got: Timed = a.eval(&fetch_timed_js(&format!("/blob-{r}.bin"))).await?;
        if &got.sha256 != digest {
            return Err(format!("a: blob-{r}.bin differs from the file").into());
        }
    }
    a.wait_seeding(args.rounds, Duration::from_secs(60)).await?;

    let b = Visitor::launch("b").await?;
    b.goto(&format!("{url}/index.html")).await?;
    b.wait_connected(Duration::from_secs(30)).await?;
    b.eval::<bool>(RAW_CHANNEL_JS).await?;
    a.eval::<bool>(RAW_CHANNEL_JS).await?;

    let mut raw = Vec::new();
    let mut path = Vec::new();
    let mut peer_share = Vec::new();
    for (r, digest) in digests.iter().enumerate() {
        // Raw: A → B, same bytes, same message size and flow control.
        b.eval::<bool>("(window.__raw.got = 0, window.__raw.first = 0, true)")
            .await?;
        a.eval::<u64>(&send_raw_js(bytes)).await?;
        b.wait_for(
            &format!("window.__raw.got >= {bytes}"),
            Duration::from_secs(120),
        )
        .await?;
        let ms: f64 = b.eval("window.__raw.last - window.__raw.first").await?;
        let raw_mib_s = args.mib as f64 / (ms / 1000.0);

        // Whis: B fetches a file it does not hold, through everything.
        let before: Stats = b.stats().await?;
        let got: Timed = b.eval(&fetch_timed_js(&format!("/blob-{r}.bin"))).await?;
        let after: Stats = b.stats().await?;
        if &got.sha256 != digest || got.bytes as usize != bytes {
            return Err(format!("b: blob-{r}.bin differs from the file").into());
        }
        let from_peers = after.bytes_from_peers - before.bytes_from_peers;
        let share = 100.0 * from_peers as f64 / bytes as f64;
        let whis_mib_s = args.mib as f64 / (got.ms / 1000.0);
        eprintln!(
            "round {r}: raw {raw_mib_s:.1} MiB/s, whis {whis_mib_s:.1} MiB/s ({share:.0} % from the peer)"
        );
        raw.push(raw_mib_s);
        path.push(whis_mib_s);
        peer_share.push(share);
    }

    // Pass-through: B (service worker) against C (none), same server.
    let mut with_sw: Vec<f64> = b.eval(PASS_THROUGH_JS).await?;
    let c = Visitor::launch("c").await?;
    c.goto(&format!("{url}/plain.html")).await?;
    let mut without_sw: Vec<f64> = c.eval(PASS_THROUGH_JS).await?;
    let controlled: bool = c.eval("!!navigator.serviceWorker.controller").await?;
    if controlled {
        return Err("c should have no service worker".into());
    }
    with_sw.sort_by(|x, y| x.total_cmp(y));
    without_sw.sort_by(|x, y| x.total_cmp(y));
    a.close().await;
    b.close().await;
    c.close().await;
    whis.stop().await;

    let (raw_m, path_m) = (median(raw.clone()), median(path.clone()));
    let share_min = peer_share.iter().cloned().fold(f64::INFINITY, f64::min);
    println!(
        "{} MiB per round, {} rounds, median of rounds\n",
        args.mib, args.rounds
    );
    println!("| figure | value |\n|---|---:|");
    println!("| raw data channel, A → B | {raw_m:.1} MiB/s |");
    println!("| Whis path, A's agent → B's `fetch()` | {path_m:.1} MiB/s |");
    println!("| Whis path / raw | {:.0} % |", 100.0 * path_m / raw_m);
    println!("| bytes of the Whis path from the peer (lowest round) | {share_min:.0} % |");
    println!(
        "| pass-through `fetch()` p50 / p99, with the service worker | {:.2} ms / {:.2} ms |",
        pct(&with_sw, 0.5),
        pct(&with_sw, 0.99)
    );
    println!(
        "| pass-through `fetch()` p50 / p99, without | {:.2} ms / {:.2} ms |",
        pct(&without_sw, 0.5),
        pct(&without_sw, 0.99)
    );
    println!(
        "| added by the service worker, p50 | {:.2} ms |",
        pct(&with_sw, 0.5) - pct(&without_sw, 0.5)
    );
    if let Some(p) = &args.json {
        std::fs::write(
            p,
            serde_json::to_string_pretty(&serde_json::json!({
                "mib": args.mib, "rounds": args.rounds,
                "raw_mib_s": raw, "whis_mib_s": path, "peer_share_percent": peer_share,
                "ratio": path_m / raw_m,
                "pass_through_ms": {
                    "with_sw": {"p50": pct(&with_sw, 0.5), "p99": pct(&with_sw, 0.99)},
                    "without_sw": {"p50": pct(&without_sw, 0.5), "p99": pct(&without_sw, 0.99)},
                },
            }))?,
        )?;
    }
    Ok(())
}
