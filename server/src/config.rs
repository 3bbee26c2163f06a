//! Command line and the plain `Config` the server runs from (tests build one directly).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use whis_core::hub::HubConfig;
use whis_core::manifest::{MAX_PIECE_SIZE, MIN_PIECE_SIZE};
use whis_core::token::TokenKey;

/// Default piece size: 256 KiB. Small enough that a 300 KB image is spread over
/// two peers and a piece crosses a data channel in a few milliseconds, large
/// enough that manifests stay short (a 5 MB video is 20 hashes) and per-piece
/// overheads (request round trip, hash call, IndexedDB write) are amortised.
pub const DEFAULT_PIECE_SIZE: u32 = 256 * 1024;

#[derive(Debug, Parser)]
#[command(
    name = "whis",
    version,
    about = "Peer-to-peer delivery for ordinary websites: the visitors of a site share its bytes over WebRTC."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Read settings from this TOML file (keys are the long flag names,
    /// e.g. `listen = "127.0.0.1:8080"`). A flag on the command line wins
    /// over its WHIS_* environment variable, which wins over the file.
    #[arg(long, value_name = "FILE", global = true, env = "WHIS_CONFIG")]
    pub config: Option<PathBuf>,
    /// Log lines as text, or as one JSON object per line for log shippers.
    #[arg(long, value_enum, global = true, default_value_t = LogFormat::Text, env = "WHIS_LOG_FORMAT")]
    pub log_format: LogFormat,
}

/// How log lines look (`--log-format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

// Parsed once at start: the size of the largest variant costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve a site (static root or reverse proxy) with Whis signaling, tracker,
    /// manifests and worker browsers. With no arguments: demo-site/ on 127.0.0.1:8080.
    Serve(ServeArgs),
    /// Tell, page by page, what Whis would share on a site and why not the
    /// rest (eligibility, sizes, headers), before adding it there.
    CheckSite(CheckSiteArgs),
}

/// `whis check-site URL`.
#[derive(Debug, Args, Clone)]
pub struct CheckSiteArgs {
    /// The site's start page, e.g. https://example.com/
    #[arg(value_name = "URL")]
    pub url: String,
    /// Most pages of the site to read (same-origin links from the start page on).
    #[arg(long, value_name = "N", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub pages: u32,
    /// Smallest resource worth sharing, as `whis serve --min-size`.
    #[arg(long, value_name = "BYTES", default_value_t = 16 * 1024)]
    pub min_size: u64,
    /// Also trust this PEM certificate authority (a staging or self-signed site).
    #[arg(long, value_name = "PEM")]
    pub ca_cert: Option<PathBuf>,
    /// Print the report as JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Running Whis for a real site: TLS, restarts (`whis serve`).
#[derive(Debug, Args, Clone)]
pub struct DeployArgs {
    /// Serve HTTPS (and HTTP/2) with this PEM certificate chain; needs
    /// --tls-key. Both files are read again on SIGHUP (a renewed certificate
    /// needs no restart). Then prints `listening on https://ADDR:PORT`.
    #[arg(long, value_name = "PEM", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Secret that signs visitors' tokens. With the same secret a restarted
    /// whis takes its visitors back (same peer ids, same swarms); without
    /// one, visitors join afresh after a restart. Prefer WHIS_CLUSTER_SECRET
    /// or the config file to the command line, which others can read.
    #[arg(long, value_name = "SECRET")]
    pub cluster_secret: Option<String>,
    /// On SIGTERM: seconds to wait for requests in flight before exiting.
    #[arg(long, value_name = "SECS", default_value_t = 10)]
    pub shutdown_timeout: u64,
    /// On SIGTERM, visitors are told to reconnect after about this many
    /// milliseconds (each waits 1 to 2 times it, so they do not all return at once).
    #[arg(long, value_name = "MS", default_value_t = 2000, value_parser = clap::value_parser!(u64).range(100..=600_000))]
    pub reconnect_delay: u64,
}

#[derive(Debug, Args, Clone)]
pub struct ServeArgs {
    /// Serve the files of DIR as the origin (default: demo-site/ next to the
    /// current directory or the binary).
    #[arg(long, value_name = "DIR", conflicts_with = "origin")]
    pub root: Option<PathBuf>,
    /// Reverse-proxy an existing site at URL (http://host:port) instead of serving files.
    #[arg(long, value_name = "URL")]
    pub origin: Option<String>,
    /// Address to listen on; port 0 picks a free port. The bound address is
    /// printed as `listening on http://ADDR:PORT`.
    #[arg(long, value_name = "ADDR:PORT", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Do not start headless Chromium worker browsers (super-seeds).
    #[arg(long)]
    pub no_workers: bool,
    /// Visitors per swarm; each swarm gets one worker browser.
    #[arg(long, value_name = "N", default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub peers_per_worker: u32,
    /// Most worker browsers at once (default: one per 1.5 GiB of memory, at most 2 per core).
    #[arg(long, value_name = "N")]
    pub max_workers: Option<u32>,
    /// Chromium executable for worker browsers (else $CHROME, $CHROMIUM, then the usual paths).
    #[arg(long, value_name = "PATH")]
    pub chromium: Option<PathBuf>,
    /// Piece size in bytes for manifests (16 KiB to 4 MiB).
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_PIECE_SIZE,
          value_parser = clap::value_parser!(u32).range(MIN_PIECE_SIZE as i64..=MAX_PIECE_SIZE as i64))]
    pub piece_size: u32,
    /// Smallest resource (bytes) worth sharing; smaller ones go straight to the origin.
    #[arg(long, value_name = "BYTES", default_value_t = 16 * 1024)]
    pub min_size: u64,
    /// Most peers across all swarms.
    #[arg(long, value_name = "N", default_value_t = 20_000)]
    pub max_peers: usize,
    /// Allow pages on this origin (e.g. https://example.com) to use the signaling
    /// API cross-origin (CORS). Repeatable.
    #[arg(long, value_name = "ORIGIN")]
    pub allow_origin: Vec<String>,
    /// Serve the service worker files from this folder instead of the copy
    /// embedded in the binary (for developing sw/ without rebuilding).
    #[arg(long, value_name = "DIR")]
    pub sw_dir: Option<PathBuf>,
    /// Directory for worker browser profiles (one persistent folder per slot).
    #[arg(long, value_name = "DIR")]
    pub worker_dir: Option<PathBuf>,
    /// Serve only the site, with none of Whis (no /whis/ routes, no service
    /// worker): a plain origin for comparisons and for testing fail-open.
    #[arg(long)]
    pub origin_only: bool,
    /// When peers may hold a piece: `offload` asks the origin only after a
    /// deadline (about twice what the origin would take, 1 to 5 s), `speed`
    /// gives peers a 250 ms head start and then races the origin.
    #[arg(long, value_enum, default_value_t = Prefer::Offload)]
    pub prefer: Prefer,
    /// Bytes an open page may fetch from peers for the pages its visitor will
    /// likely open next (0: no prefetch). Never from the origin.
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_PREFETCH_BUDGET)]
    pub prefetch_budget: u64,

    // Connectivity (README "Connectivity"; the checks live in ice.rs).
    /// Answer STUN binding requests on this UDP address (default: the same
    /// IP and port number as --listen; with port 0 a free UDP port is picked
    /// and printed as `stun listening on udp://ADDR:PORT`). `join` names it
    /// first in `ice_servers`, with the host the page used.
    #[arg(long, value_name = "ADDR:PORT", conflicts_with = "no_stun")]
    pub stun: Option<SocketAddr>,
    /// Do not answer STUN (then give visitors a STUN server with --ice-server).
    #[arg(long)]
    pub no_stun: bool,
    /// Another ICE server for `join` (repeatable): stun:HOST:PORT, or a TURN
    /// server with fixed credentials, turn:USER:PASSWORD@HOST:PORT (or turns:).
    #[arg(long = "ice-server", value_name = "URL")]
    pub ice_servers: Vec<String>,
    /// A TURN server (coturn with use-auth-secret) for which `join` hands each
    /// peer a credential valid 24 h (repeatable: turn:HOST:3478?transport=udp,
    /// turns:HOST:5349). Needs --turn-secret.
    #[arg(long = "turn-url", value_name = "URL")]
    pub turn_urls: Vec<String>,
    /// The secret shared with coturn (its static-auth-secret). Prefer the
    /// environment variable: a flag shows in the process list.
    #[arg(
        long,
        value_name = "S",
        env = "WHIS_TURN_SECRET",
        hide_env_values = true
    )]
    pub turn_secret: Option<String>,
    /// Privacy mode: visitors connect only through TURN relays, so no peer
    /// learns another's IP address (`ice_transport_policy: "relay"`). Needs TURN.
    #[arg(long)]
    pub relay_only: bool,
    /// Most bytes a visitor on a cellular connection uploads to other
    /// visitors per page (0: none). Visitors asking to save data never upload.
    #[arg(long, value_name = "BYTES", default_value_t = 0)]
    pub metered_upload: u64,
    #[command(flatten)]
    pub deploy: DeployArgs,
}

/// Default prefetch budget per page view: a few next pages of an ordinary site.
pub const DEFAULT_PREFETCH_BUDGET: u64 = 16 * 1024 * 1024;

/// The operator's choice between offload and latency (see `--prefer`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Prefer {
    Offload,
    Speed,
}

impl Prefer {
    pub fn as_str(self) -> &'static str {
        match self {
            Prefer::Offload => "offload",
            Prefer::Speed => "speed",
        }
    }
}

/// Where the site's bytes come from.
#[derive(Debug, Clone)]
pub enum OriginConfig {
    Static { root: PathBuf },
    Proxy { base: String },
}

#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub origin: OriginConfig,
    pub piece_size: u32,
    pub min_size: u64,
    pub peers_per_swarm: usize,
    pub max_peers: usize,
    pub allow_origins: Vec<String>,
    pub sw_dir: Option<PathBuf>,
    /// Serve the site only: no /whis/ routes, no service worker, no workers.
    pub origin_only: bool,
    /// Largest JSON request body.
    pub max_body: usize,
    /// Per-peer SSE queue (events); a slower reader is disconnected and resumes.
    pub sse_queue: usize,
    pub keep_alive: Duration,
    pub heartbeat_timeout: Duration,
    pub workers: WorkerSettings,
    pub prefer: Prefer,
    pub prefetch_budget: u64,
    /// STUN, ICE servers, TURN, relay-only (see ice.rs).
    pub ice: crate::ice::IceSettings,
    /// Upload cap per page for visitors on cellular connections (`join`'s
    /// `metered_upload_bytes`).
    pub metered_upload: u64,
    pub deploy: DeploySettings,
}

/// TLS, token signing and shutdown (see `DeployArgs`).
#[derive(Debug, Clone)]
pub struct DeploySettings {
    /// PEM certificate chain and key: serve HTTPS.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// The operator's token secret (`--cluster-secret`).
    pub cluster_secret: Option<String>,
    /// Signs tokens when there is no operator secret: this process only.
    process_secret: String,
    /// This process's name inside the tokens it signs.
    boot: String,
    pub shutdown_timeout: Duration,
    pub reconnect_delay: Duration,
}

impl DeploySettings {
    fn new() -> DeploySettings {
        DeploySettings {
            tls: None,
            cluster_secret: None,
            process_secret: crate::ids::secret(),
            boot: crate::ids::secret()[..8].to_string(),
            shutdown_timeout: Duration::from_secs(10),
            reconnect_delay: Duration::from_secs(2),
        }
    }

    /// The key visitors' tokens are signed with.
    pub fn token_key(&self) -> TokenKey {
        let secret = self
            .cluster_secret
            .as_deref()
            .unwrap_or(&self.process_secret);
        TokenKey::new(secret.as_bytes(), &self.boot)
    }
}

impl DeployArgs {
    fn into_settings(self) -> Result<DeploySettings, String> {
        let mut d = DeploySettings::new();
        d.tls = self.tls_cert.zip(self.tls_key);
        if let Some(secret) = self.cluster_secret {
            if secret.len() < 16 {
                return Err("--cluster-secret must be at least 16 characters".into());
            }
            d.cluster_secret = Some(secret);
        }
        d.shutdown_timeout = Duration::from_secs(self.shutdown_timeout);
        d.reconnect_delay = Duration::from_millis(self.reconnect_delay);
        Ok(d)
    }
}

#[derive(Debug, Clone)]
pub struct WorkerSettings {
    pub enabled: bool,
    pub chromium: Option<PathBuf>,
    pub max_workers: usize,
    pub profile_dir: Option<PathBuf>,
}

impl Config {
    /// A config for tests: a static root on 127.0.0.1:0, no workers.
    pub fn for_root(root: impl Into<PathBuf>) -> Config {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            origin: OriginConfig::Static { root: root.into() },
            piece_size: DEFAULT_PIECE_SIZE,
            min_size: 16 * 1024,
            peers_per_swarm: 30,
            max_peers: 20_000,
            allow_origins: Vec::new(),
            sw_dir: None,
            origin_only: false,
            max_body: 64 * 1024,
            sse_queue: 256,
            keep_alive: Duration::from_secs(10),
            heartbeat_timeout: Duration::from_secs(45),
            prefer: Prefer::Offload,
            prefetch_budget: DEFAULT_PREFETCH_BUDGET,
            deploy: DeploySettings::new(),
            workers: WorkerSettings {
                enabled: false,
                chromium: None,
                max_workers: default_max_workers(),
                profile_dir: None,
            },
            ice: crate::ice::IceSettings {
                stun: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
                ..Default::default()
            },
            metered_upload: 0,
        }
    }
}

impl Config {
    /// The hub's rules, from this config: the one place they are set.
    pub fn hub_config(&self) -> HubConfig {
        HubConfig {
            peers_per_swarm: self.peers_per_swarm,
            max_peers: self.max_peers,
            heartbeat_timeout: self.heartbeat_timeout,
            token_key: Some(self.deploy.token_key()),
            ..HubConfig::default()
        }
    }
}

/// One worker per 1.5 GiB of memory, at most two per core, at least one.
pub fn default_max_workers() -> usize {
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let mem_gib = {
        use procfs::Current as _;
        procfs::Meminfo::current()
            .map(|m| m.mem_total as f64 / (1024.0 * 1024.0 * 1024.0))
            .unwrap_or(4.0)
    };
    ((mem_gib / 1.5) as usize).clamp(1, cores * 2)
}

impl ServeArgs {
    /// Turn flags into a config; `demo_root` finds demo-site/ when neither
    /// --root nor --origin is given.
    pub fn into_config(self) -> Result<Config, String> {
        let origin = match (self.root, self.origin) {
            (_, Some(url)) => {
                let base = url.trim_end_matches('/').to_string();
                if !base.starts_with("http://") || base.len() < 8 {
                    return Err(format!("--origin must be an http:// URL (whis sits beside the origin; TLS belongs to the front proxy), got {url:?}"));
                }
                OriginConfig::Proxy { base }
            }
            (Some(root), None) => OriginConfig::Static { root },
            (None, None) => OriginConfig::Static {
                root: find_demo_site().ok_or(
                    "no --root or --origin given and no demo-site/ found next to the current directory or the binary",
                )?,
            },
        };
        if let OriginConfig::Static { root } = &origin {
            if !root.is_dir() {
                return Err(format!("--root {} is not a directory", root.display()));
            }
        }
        let stun = (!self.no_stun).then(|| self.stun.unwrap_or(self.listen));
        let ice = crate::ice::IceSettings::from_flags(
            stun,
            &self.ice_servers,
            &self.turn_urls,
            self.turn_secret,
            self.relay_only,
        )?;
        let mut cfg = Config::for_root(PathBuf::new());
        cfg.ice = ice;
        cfg.metered_upload = self.metered_upload;
        cfg.listen = self.listen;
        cfg.origin = origin;
        cfg.piece_size = self.piece_size;
        cfg.min_size = self.min_size.max(1);
        cfg.peers_per_swarm = self.peers_per_worker as usize;
        cfg.max_peers = self.max_peers.max(1);
        cfg.allow_origins = self.allow_origin;
        cfg.sw_dir = self.sw_dir;
        cfg.origin_only = self.origin_only;
        cfg.prefer = self.prefer;
        cfg.prefetch_budget = self.prefetch_budget;
        cfg.deploy = self.deploy.into_settings()?;
        cfg.workers = WorkerSettings {
            enabled: !self.no_workers && !self.origin_only,
            chromium: self.chromium,
            max_workers: self
                .max_workers
                .map(|n| n as usize)
                .unwrap_or_else(default_max_workers),
            profile_dir: self.worker_dir,
        };
        Ok(cfg)
    }
}

fn find_demo_site() -> Option<PathBuf> {
    let mut candidates = Vec::new();
    if let Ok(cwd) = std::env::current_dir() {
        candidates.extend(cwd.ancestors().map(|d| d.join("demo-site")));
    }
    if let Ok(exe) = std::env::current_exe() {
        candidates.extend(exe.ancestors().skip(1).map(|d| d.join("demo-site")));
    }
    candidates
        .into_iter()
        .find(|d| d.join("index.html").is_file())
}
