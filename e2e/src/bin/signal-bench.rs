//! The signaling benchmark: how many SSE peers one whis holds, how many
//! relays per second it carries, and how fast a relay arrives.
//!
//! ```text
//! cargo build --release && cargo run --release -p e2e --bin signal-bench -- --peers 10000
//! ```
//!
//! It starts the release `whis` binary as a child process (so its memory is
//! its own), joins N peers, opens N event streams, then measures relays/s at
//! saturation and relay latency at a fixed rate, from the POST leaving this
//! process to the event arriving on the target's stream. Client and server
//! share the machine's cores: the figures are a floor, not a ceiling.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

struct Args {
    peers: usize,
    rate: u64,
    seconds: u64,
    json: Option<String>,
}

fn parse_args() -> Args {
    let mut a = Args {
        peers: 10_000,
        rate: 2000,
        seconds: 5,
        json: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(f) = it.next() {
        let v = it.next().unwrap_or_else(|| usage());
        match f.as_str() {
            "--peers" => a.peers = v.parse().unwrap_or_else(|_| usage()),
            "--rate" => a.rate = v.parse().unwrap_or_else(|_| usage()),
            "--seconds" => a.seconds = v.parse().unwrap_or_else(|_| usage()),
            "--json" => a.json = Some(v),
            _ => usage(),
        }
    }
    a
}

fn usage() -> ! {
    eprintln!("signal-bench [--peers N (10000)] [--rate R per second (2000)] [--seconds S (5)] [--json PATH]");
    std::process::exit(2)
}

/// Raise the open-files limit: every SSE stream is a socket on both sides.
fn raise_nofile() -> u64 {
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
    unsafe {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
            return lim.rlim_cur;
        }
    }
    0
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// One keep-alive HTTP/1.1 connection for POSTs.
struct Conn {
    r: BufReader<tokio::net::tcp::OwnedReadHalf>,
    w: tokio::net::tcp::OwnedWriteHalf,
    host: String,
}

impl Conn {
    async fn open(host: &str) -> Result<Conn> {
        let s = TcpStream::connect(host).await?;
        s.set_nodelay(true)?;
        let (r, w) = s.into_split();
        Ok(Conn {
            r: BufReader::new(r),
            w,
            host: host.to_string(),
        })
    }

    async fn post(&mut self, path: &str, token: Option<&str>, body: &str) -> Result<(u16, String)> {
        let auth = token
            .map(|t| format!("Authorization: Bearer {t}\r\n"))
            .unwrap_or_default();
        let req = format!(
            "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n{auth}Content-Length: {}\r\n\r\n{body}",
            self.host,
            body.len()
        );
        self.w.write_all(req.as_bytes()).await?;
        let mut line = String::new();
        self.r.read_line(&mut line).await?;
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or("status")?;
        let mut len = 0usize;
        loop {
            line.clear();
            self.r.read_line(&mut line).await?;
            if line == "\r\n" || line.is_empty() {
                break;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                len = v.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0u8; len];
        self.r.read_exact(&mut body).await?;
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
    }
}

struct Peer {
    id: String,
    token: String,
}

/// Read an event stream; for every signal whose data is a send time (µs
/// since `t0`), record the latency.
async fn read_stream(
    host: String,
    token: String,
    t0: Instant,
    received: Arc<AtomicU64>,
    lat: Arc<std::sync::Mutex<Vec<u64>>>,
    opened: Arc<AtomicU64>,
) -> Result<()> {
    let s = TcpStream::connect(&host).await?;
    let (r, mut w) = s.into_split();
    w.write_all(
        format!("GET /whis/events?token={token} HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes(),
    )
    .await?;
    let mut r = BufReader::new(r);
    let mut line = String::new();
    let mut counted_open = false;
    loop {
        line.clear();
        if r.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        if !counted_open && line.starts_with("HTTP/1.1 200") {
            counted_open = true;
            opened.fetch_add(1, Ordering::Relaxed);
        }
        // Chunk framing lines are skipped; we only look for data lines.
        if let Some(d) = line.strip_prefix("data: {\"from\":") {
            received.fetch_add(1, Ordering::Relaxed);
            if let Some(sent) = d
                .split("\"data\":")
                .nth(1)
                .and_then(|x| x.trim_end_matches(['}', '\r', '\n']).parse::<u64>().ok())
            {
                let now = t0.elapsed().as_micros() as u64;
                if sent > 0 {
                    if let Ok(mut l) = lat.lock() {
                        l.push(now.saturating_sub(sent));
                    }
                }
            }
        }
    }
}

fn pct(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[(((sorted.len() - 1) as f64) * p).round() as usize] as f64 / 1000.0
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let args = parse_args();
    let nofile = raise_nofile();
    let exe = std::env::current_exe()?.with_file_name("whis");
    if !exe.is_file() {
        return Err(format!(
            "{} not found: run `cargo build --release` first",
            exe.display()
        )
        .into());
    }
    let root = std::env::temp_dir().join(format!("whis-signal-bench-{}", std::process::id()));
    std::fs::create_dir_all(&root)?;
    std::fs::write(root.join("index.html"), "bench")?;
    let mut child = tokio::process::Command::new(&exe)
        .args(["serve", "--root"])
        .arg(&root)
        .args(["--listen", "127.0.0.1:0", "--no-workers", "--max-peers"])
        .arg((args.peers + 100).to_string())
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let pid = child.id().ok_or("no pid")?;
    let mut out = BufReader::new(child.stdout.take().ok_or("stdout")?);
    let mut line = String::new();
    out.read_line(&mut line).await?;
    let host = line
        .trim()
        .strip_prefix("listening on http://")
        .ok_or("no listening line")?
        .to_string();
    let rss_idle = rss_kib(pid);
    eprintln!("whis pid {pid} on {host}; open-files limit {nofile}; idle RSS {rss_idle} KiB");

    // 1. Join N peers over 8 keep-alive connections.
    let t_join = Instant::now();
    let mut joins = Vec::new();
    let per = args.peers.div_ceil(8);
    for c in 0..8 {
        let host = host.clone();
        let n = per.min(args.peers.saturating_sub(c * per));
        joins.push(tokio::spawn(async move {
            let mut conn = Conn::open(&host).await?;
            let mut peers = Vec::new();
            for _ in 0..n {
                let (status, body) = conn.post("/whis/join", None, "{}").await?;
                if status != 200 {
                    return Err(format!("join answered {status}: {body}").into());
                }
                let v: serde_json::Value = serde_json::from_str(&body)?;
                peers.push(Peer {
                    id: v["peer_id"].as_str().unwrap_or("").into(),
                    token: v["token"].as_str().unwrap_or("").into(),
                });
            }
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(peers)
        }));
    }
    let mut peers = Vec::new();
    for j in joins {
        peers.extend(j.await??);
    }
    let joins_per_s = peers.len() as f64 / t_join.elapsed().as_secs_f64();

    // 2. Open every peer's event stream.
    let t0 = Instant::now();
    let received = Arc::new(AtomicU64::new(0));
    let opened = Arc::new(AtomicU64::new(0));
    let lat = Arc::new(std::sync::Mutex::new(Vec::new()));
    for p in &peers {
        let (h, t, r, l, o) = (
            host.clone(),
            p.token.clone(),
            received.clone(),
            lat.clone(),
            opened.clone(),
        );
        tokio::spawn(async move {
            let _ = read_stream(h, t, t0, r, l, o).await;
        });
    }
    let wait = Instant::now();
    while (opened.load(Ordering::Relaxed) as usize) < peers.len()
        && wait.elapsed() < Duration::from_secs(60)
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let held = opened.load(Ordering::Relaxed);
    let rss_held = rss_kib(pid);
    let per_peer = (rss_held.saturating_sub(rss_idle)) as f64 * 1024.0 / held.max(1) as f64;
    eprintln!("held {held} streams; RSS {rss_held} KiB");

    // Pairs in the same swarm (30 per swarm, joined in order): i → i+1.
    let pairs: Vec<(String, String)> = peers
        .chunks(30)
        .flat_map(|sw| {
            sw.windows(2)
                .map(|w| (w[0].token.clone(), w[1].id.clone()))
                .collect::<Vec<_>>()
        })
        .collect();

    // 3. Saturation: 16 connections posting as fast as answers come back.
    let before = received.load(Ordering::Relaxed);
    let stop = Instant::now() + Duration::from_secs(args.seconds);
    let posted = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for c in 0..16 {
        let (host, pairs, posted) = (host.clone(), pairs.clone(), posted.clone());
        tasks.push(tokio::spawn(async move {
            let mut conn = Conn::open(&host).await?;
            let mut i = c;
            while Instant::now() < stop {
                let (from, to) = &pairs[i % pairs.len()];
                conn.post(
                    "/whis/signal",
                    Some(from),
                    &format!(r#"{{"to":"{to}","data":0}}"#),
                )
                .await?;
                posted.fetch_add(1, Ordering::Relaxed);
                i += 16;
            }
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let relays = received.load(Ordering::Relaxed) - before;
    let relays_per_s = relays as f64 / args.seconds as f64;

    // 4. Latency at a fixed rate.
    if let Ok(mut l) = lat.lock() {
        l.clear();
    }
    let interval = Duration::from_secs_f64(8.0 / args.rate as f64); // 8 senders
    let stop = Instant::now() + Duration::from_secs(args.seconds);
    let mut tasks = Vec::new();
    for c in 0..8 {
        let (host, pairs) = (host.clone(), pairs.clone());
        tasks.push(tokio::spawn(async move {
            let mut conn = Conn::open(&host).await?;
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            let mut i = c * 7919;
            while Instant::now() < stop {
                tick.tick().await;
                let (from, to) = &pairs[i % pairs.len()];
                let sent = t0.elapsed().as_micros() as u64;
                conn.post(
                    "/whis/signal",
                    Some(from),
                    &format!(r#"{{"to":"{to}","data":{sent}}}"#),
                )
                .await?;
                i += 1;
            }
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut l = lat.lock().map(|l| l.clone()).unwrap_or_default();
    l.sort_unstable();
    let achieved = l.len() as f64 / args.seconds as f64;
    let (p50, p99) = (pct(&l, 0.50), pct(&l, 0.99));

    let cpu = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    println!("| figure | value |\n|---|---:|");
    println!(
        "| peers joined | {} ({joins_per_s:.0} joins/s) |",
        peers.len()
    );
    println!("| concurrent SSE streams held | {held} |");
    println!(
        "| whis RSS idle → with all streams | {} MiB → {} MiB |",
        rss_idle / 1024,
        rss_held / 1024
    );
    println!("| memory per held peer | {:.1} KiB |", per_peer / 1024.0);
    println!("| relays/s at saturation (16 posting connections) | {relays_per_s:.0} |");
    println!("| relay latency at {} relays/s offered ({achieved:.0}/s achieved): p50 / p99 | {p50:.2} ms / {p99:.2} ms |", args.rate);
    println!("\nclient and server on the same {cpu}-core machine");
    if let Some(path) = &args.json {
        std::fs::write(
            path,
            serde_json::to_string_pretty(&serde_json::json!({
                "peers": peers.len(), "held": held, "joins_per_s": joins_per_s,
                "rss_idle_kib": rss_idle, "rss_held_kib": rss_held, "bytes_per_peer": per_peer,
                "relays_per_s": relays_per_s, "rate": args.rate, "achieved_rate": achieved,
                "latency_p50_ms": p50, "latency_p99_ms": p99, "cores": cpu,
            }))?,
        )?;
    }
    let _ = child.kill().await;
    let _ = std::fs::remove_dir_all(&root);
    Ok(())
}
