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
//!
//! Then, unless `--no-peerjs`, the same load runs against PeerJS server (npm
//! `peer`, installed by `e2e/peerjs-load.mjs` into a temporary folder and run
//! on loopback as its own process), and one table compares the two.

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
    /// Run the same load against PeerJS server afterwards (needs node + npm).
    peerjs: bool,
    /// Where `peer` is installed for the PeerJS run (default: a temp folder).
    peerjs_dir: Option<String>,
}

fn parse_args() -> Args {
    let mut a = Args {
        peers: 10_000,
        rate: 2000,
        seconds: 5,
        json: None,
        peerjs: true,
        peerjs_dir: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(f) = it.next() {
        if f == "--no-peerjs" {
            a.peerjs = false;
            continue;
        }
        let v = it.next().unwrap_or_else(|| usage());
        match f.as_str() {
            "--peerjs-dir" => a.peerjs_dir = Some(v),
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
    eprintln!("signal-bench [--peers N (10000)] [--rate R per second (2000)] [--seconds S (5)] [--json PATH] [--no-peerjs] [--peerjs-dir DIR]");
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
    swarm: String,
}

/// One signal from the peer holding token `from` to peer `to`; anything but
/// 200 is an error (the bench must not count refused relays).
async fn relay(conn: &mut Conn, from: &str, to: &str, data: u64) -> Result<()> {
    let (status, body) = conn
        .post(
            "/whis/signal",
            Some(from),
            &format!(r#"{{"to":"{to}","data":{{"t":{data}}}}}"#),
        )
        .await?;
    if status != 200 {
        return Err(format!("signal answered {status}: {body}").into());
    }
    Ok(())
}

/// Counters shared by every stream reader.
#[derive(Default)]
struct StreamStats {
    received: AtomicU64,
    opened: AtomicU64,
    /// Streams the server closed (a slow reader's) that came back resumed.
    resumed: AtomicU64,
    latencies: std::sync::Mutex<Vec<u64>>,
}

/// Read an event stream as EventSource does: when the server closes it,
/// reconnect with `Last-Event-ID`. For every signal whose data is a send time
/// (µs since `t0`), record the latency.
async fn read_stream(
    host: String,
    token: String,
    t0: Instant,
    stats: Arc<StreamStats>,
) -> Result<()> {
    let mut last_id: Option<String> = None;
    loop {
        let s = TcpStream::connect(&host).await?;
        let (r, mut w) = s.into_split();
        let resume = last_id
            .as_ref()
            .map(|id| format!("Last-Event-ID: {id}\r\n"))
            .unwrap_or_default();
        w.write_all(
            format!("GET /whis/events?token={token} HTTP/1.1\r\nHost: {host}\r\n{resume}\r\n")
                .as_bytes(),
        )
        .await?;
        let mut r = BufReader::new(r);
        let mut line = String::new();
        let mut status_seen = false;
        loop {
            line.clear();
            if r.read_line(&mut line).await? == 0 {
                break;
            }
            if !status_seen {
                status_seen = true;
                if !line.starts_with("HTTP/1.1 200") {
                    return Err(format!("events answered {}", line.trim()).into());
                }
                if last_id.is_none() {
                    stats.opened.fetch_add(1, Ordering::Relaxed);
                } else {
                    stats.resumed.fetch_add(1, Ordering::Relaxed);
                }
            }
            // Chunk framing lines are skipped; we only look at SSE fields.
            if let Some(id) = line.strip_prefix("id: ") {
                last_id = Some(id.trim().to_string());
            } else if let Some(d) = line.strip_prefix("data: {\"from\":") {
                stats.received.fetch_add(1, Ordering::Relaxed);
                if let Some(sent) = d
                    .split("\"data\":{\"t\":")
                    .nth(1)
                    .and_then(|x| x.trim_end_matches(['}', '\r', '\n']).parse::<u64>().ok())
                {
                    let now = t0.elapsed().as_micros() as u64;
                    if sent > 0 {
                        if let Ok(mut l) = stats.latencies.lock() {
                            l.push(now.saturating_sub(sent));
                        }
                    }
                }
            }
        }
        if last_id.is_none() {
            return Ok(()); // closed before any event: nothing to resume
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
                    swarm: v["swarm_id"].as_str().unwrap_or("").into(),
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
    let streams = Arc::new(StreamStats::default());
    let mut readers = Vec::with_capacity(peers.len());
    for p in &peers {
        let (h, t, st) = (host.clone(), p.token.clone(), streams.clone());
        readers.push(tokio::spawn(async move {
            if let Err(e) = read_stream(h, t, t0, st).await {
                eprintln!("an event stream failed: {e}");
            }
        }));
    }
    let (received, opened, lat) = (&streams.received, &streams.opened, &streams.latencies);
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

    // Pairs in the same swarm, as join answered: i → i+1 within each swarm.
    let mut swarms: std::collections::BTreeMap<&str, Vec<&Peer>> = Default::default();
    for p in &peers {
        swarms.entry(p.swarm.as_str()).or_default().push(p);
    }
    let pairs: Vec<(String, String)> = swarms
        .values()
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
                relay(&mut conn, from, to, 0).await?;
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
    let begin = Instant::now();
    let stop = begin + Duration::from_secs(args.seconds);
    let sent_fixed = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for c in 0..8u32 {
        let (host, pairs, sent_fixed) = (host.clone(), pairs.clone(), sent_fixed.clone());
        tasks.push(tokio::spawn(async move {
            let mut conn = Conn::open(&host).await?;
            // Sender c owns the slots c/8, 1 + c/8, 2 + c/8… of the schedule,
            // by absolute time; a slot already past is skipped, not sent late.
            let mut k = 0u32;
            let mut i = c as usize * 7919;
            loop {
                let due = begin + interval * k + interval * c / 8;
                if due >= stop {
                    break;
                }
                k += 1;
                if Instant::now() > due + interval {
                    continue;
                }
                tokio::time::sleep_until(due.into()).await;
                let (from, to) = &pairs[i % pairs.len()];
                let sent = t0.elapsed().as_micros() as u64;
                relay(&mut conn, from, to, sent).await?;
                sent_fixed.fetch_add(1, Ordering::Relaxed);
                i += 1;
            }
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let sent_fixed = sent_fixed.load(Ordering::Relaxed);
    let mut l = lat.lock().map(|l| l.clone()).unwrap_or_default();
    l.sort_unstable();
    let achieved = sent_fixed as f64 / args.seconds as f64;
    if (l.len() as u64) < sent_fixed {
        eprintln!(
            "{} of {sent_fixed} relays at the fixed rate did not arrive",
            sent_fixed - l.len() as u64
        );
    }
    let (p50, p99) = (pct(&l, 0.50), pct(&l, 0.99));

    let cpu = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let whis = serde_json::json!({
        "server": "whis",
        "peers": peers.len(), "held": held, "joins_per_s": joins_per_s,
        "rss_idle_kib": rss_idle, "rss_held_kib": rss_held, "bytes_per_peer": per_peer,
        "relays_per_s": relays_per_s, "rate": args.rate, "achieved_rate": achieved,
        "latency_p50_ms": p50, "latency_p99_ms": p99,
        "streams_resumed": streams.resumed.load(Ordering::Relaxed),
    });
    // Whis is done before PeerJS starts: each has the machine to itself.
    for r in &readers {
        r.abort();
    }
    let _ = child.kill().await;
    let _ = child.wait().await;
    let _ = std::fs::remove_dir_all(&root);
    let peerjs = if args.peerjs {
        Some(run_peerjs(&args).await?)
    } else {
        None
    };
    print_table(&args, &whis, peerjs.as_ref(), cpu);
    if let Some(path) = &args.json {
        std::fs::write(
            path,
            serde_json::to_string_pretty(&serde_json::json!({
                "cores": cpu, "whis": whis, "peerjs": peerjs,
            }))?,
        )?;
    }
    Ok(())
}

/// The same load against PeerJS server, by `e2e/peerjs-load.mjs` (which
/// installs `peer` with npm and runs the server as its own process).
async fn run_peerjs(args: &Args) -> Result<serde_json::Value> {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("peerjs-load.mjs");
    let mut cmd = tokio::process::Command::new("node");
    cmd.arg(&script)
        .args(["--peers", &args.peers.to_string()])
        .args(["--rate", &args.rate.to_string()])
        .args(["--seconds", &args.seconds.to_string()])
        .stderr(std::process::Stdio::inherit())
        .kill_on_drop(true);
    if let Some(dir) = &args.peerjs_dir {
        cmd.args(["--dir", dir]);
    }
    let out = cmd
        .output()
        .await
        .map_err(|e| format!("running node {}: {e}", script.display()))?;
    if !out.status.success() {
        return Err(format!(
            "the PeerJS run failed ({}); --no-peerjs skips it",
            out.status
        )
        .into());
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .last()
        .ok_or("the PeerJS run printed nothing")?;
    Ok(serde_json::from_str(line)?)
}

fn print_table(
    args: &Args,
    whis: &serde_json::Value,
    peerjs: Option<&serde_json::Value>,
    cpu: usize,
) {
    let f = |v: &serde_json::Value, k: &str| v[k].as_f64().unwrap_or(f64::NAN);
    // (figure, JSON key, format, higher is better)
    type Row<'a> = (&'a str, &'a str, &'a dyn Fn(f64) -> String, bool);
    let rows: [Row; 7] = [
        (
            "peers joined per second",
            "joins_per_s",
            &|x| format!("{x:.0}"),
            true,
        ),
        (
            "concurrent streams held",
            "held",
            &|x| format!("{x:.0}"),
            true,
        ),
        (
            "memory per held peer (KiB)",
            "bytes_per_peer",
            &|x| format!("{:.1}", x / 1024.0),
            false,
        ),
        (
            "relays/s at saturation (16 closed loops)",
            "relays_per_s",
            &|x| format!("{x:.0}"),
            true,
        ),
        (
            "relays/s achieved at the fixed rate",
            "achieved_rate",
            &|x| format!("{x:.0}"),
            true,
        ),
        (
            "relay latency p50 (ms)",
            "latency_p50_ms",
            &|x| format!("{x:.2}"),
            false,
        ),
        (
            "relay latency p99 (ms)",
            "latency_p99_ms",
            &|x| format!("{x:.2}"),
            false,
        ),
    ];
    println!(
        "{} peers, {} relays/s offered for the latency figures, {} s per phase; client and server on the same {cpu}-core machine\n",
        args.peers, args.rate, args.seconds
    );
    match peerjs {
        Some(p) => {
            let version = p["version"].as_str().unwrap_or("?");
            println!("| figure | whis | PeerJS server {version} | whis vs PeerJS |\n|---|---:|---:|---:|");
            for (name, key, fmt, higher_is_better) in rows {
                let (w, j) = (f(whis, key), f(p, key));
                let better = if higher_is_better { w / j } else { j / w };
                println!("| {name} | {} | {} | {better:.2}× |", fmt(w), fmt(j));
            }
            println!("\n(last column: how many times better whis is; above 1 is better)");
        }
        None => {
            println!("| figure | whis |\n|---|---:|");
            for (name, key, fmt, _) in rows {
                println!("| {name} | {} |", fmt(f(whis, key)));
            }
        }
    }
}
