//! The `whis` binary as an operator runs it: HTTPS with HTTP/2 and a
//! certificate renewed on SIGHUP; SIGTERM telling every event stream to come
//! back, exiting 0, and the next process taking the visitors back; settings
//! from flags, WHIS_* variables and --config; JSON logs; bad deployment
//! settings refused with the reason; and `whis check-site`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use rustls::pki_types::{CertificateDer, ServerName};

const WHIS: &str = env!("CARGO_BIN_EXE_whis");

fn demo_site() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../demo-site")
}

/// A directory removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(label: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!(
            "whis-deploy-{label}-{}-{:x}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        TempDir(dir)
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, text).expect("write");
        p
    }

    fn path(&self, name: &str) -> String {
        self.0.join(name).to_string_lossy().into_owned()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A certificate authority and a leaf for `localhost` it signed.
struct Certs {
    ca_pem: String,
    cert_pem: String,
    key_pem: String,
}

fn make_certs() -> Certs {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    let ca_key = KeyPair::generate().expect("ca key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).expect("ca");
    let key = KeyPair::generate().expect("leaf key");
    let cert = CertificateParams::new(vec!["localhost".to_string()])
        .expect("leaf params")
        .signed_by(&key, &ca, &ca_key)
        .expect("leaf");
    Certs {
        ca_pem: ca.pem(),
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    }
}

/// A `whis` process, killed if the test ends before it exits.
struct Whis {
    child: Child,
    url: String,
    stderr: Arc<Mutex<String>>,
}

impl Whis {
    /// Start `whis ARGS` (with ENV) and wait for its `listening on` line.
    fn spawn(args: &[&str], env: &[(&str, &str)]) -> Result<Whis, String> {
        let mut cmd = Command::new(WHIS);
        cmd.args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().map_err(|e| format!("spawn {WHIS}: {e}"))?;
        let stderr = Arc::new(Mutex::new(String::new()));
        let err = child.stderr.take().expect("piped");
        let sink = stderr.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                if let Ok(mut s) = sink.lock() {
                    s.push_str(&line);
                    s.push('\n');
                }
            }
        });
        let out = child.stdout.take().expect("piped");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let url = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(line) => line
                .strip_prefix("listening on ")
                .map(str::to_string)
                .ok_or(format!("unexpected first line {line:?}"))?,
            Err(_) => {
                let status = child.wait().ok();
                std::thread::sleep(Duration::from_millis(200));
                return Err(format!(
                    "no `listening on` line (exit {status:?}): {}",
                    stderr.lock().map(|s| s.clone()).unwrap_or_default()
                ));
            }
        };
        Ok(Whis { child, url, stderr })
    }

    fn addr(&self) -> String {
        self.url
            .split_once("://")
            .map(|(_, a)| a.to_string())
            .expect("a URL")
    }

    fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -{sig}");
    }

    fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                start.elapsed() < within,
                "whis still running after {within:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn stderr(&self) -> String {
        self.stderr.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

impl Drop for Whis {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Run `whis ARGS` to its end: (exit code, stdout, stderr).
fn run(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String, String) {
    let mut cmd = Command::new(WHIS);
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("whis runs");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A plain HTTP/1.1 request: (status, body).
fn http(addr: &str, method: &str, path: &str, body: &str) -> (u16, String) {
    http_with(addr, method, path, "", body)
}

/// `http` with extra header lines (each ending in `\r\n`). A connection
/// the server drops answers status 0.
fn http_with(addr: &str, method: &str, path: &str, headers: &str, body: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(20))).ok();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{headers}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .ok();
    let mut raw = String::new();
    let _ = s.read_to_string(&mut raw);
    let status = raw
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = raw
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// Open an event stream; returns the socket to read it from.
fn open_events(addr: &str, query: &str) -> TcpStream {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(20))).ok();
    write!(
        s,
        "GET /whis/events?{query} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n\r\n"
    )
    .expect("send");
    s
}

/// Read from `s` until `want` shows up or the stream ends; everything read.
fn read_until(s: &mut TcpStream, want: &str) -> String {
    let mut seen = String::new();
    let mut buf = [0u8; 4096];
    while !seen.contains(want) {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => seen.push_str(&String::from_utf8_lossy(&buf[..n])),
        }
    }
    seen
}

fn join(addr: &str) -> serde_json::Value {
    let (status, body) = http(addr, "POST", "/whis/join", "{}");
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).expect("join answer")
}

/// What one TLS connection saw: the certificate chain the server sent, the
/// protocol agreed by ALPN, and the answer to a GET when that is HTTP/1.1.
type Probe = (Vec<CertificateDer<'static>>, Option<Vec<u8>>, String);

/// A TLS handshake with whis as a browser makes it, trusting `ca_pem`.
fn tls_probe(addr: &str, ca_pem: &str, alpn: &[&[u8]], path: &str) -> Result<Probe, String> {
    use rustls::pki_types::pem::PemObject as _;
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots
            .add(c.map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
    }
    let mut config = rustls::ClientConfig::builder_with_provider(whis::tls::provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let name = ServerName::try_from("localhost").map_err(|e| e.to_string())?;
    let mut conn =
        rustls::ClientConnection::new(Arc::new(config), name).map_err(|e| e.to_string())?;
    let mut sock = TcpStream::connect(addr).map_err(|e| e.to_string())?;
    sock.set_read_timeout(Some(Duration::from_secs(20))).ok();
    while conn.is_handshaking() {
        conn.complete_io(&mut sock).map_err(|e| e.to_string())?;
    }
    let chain: Vec<CertificateDer<'static>> = conn
        .peer_certificates()
        .unwrap_or_default()
        .iter()
        .map(|c| c.clone().into_owned())
        .collect();
    let protocol = conn.alpn_protocol().map(<[u8]>::to_vec);
    let mut answer = String::new();
    if protocol.as_deref() != Some(b"h2") {
        let mut tls = rustls::Stream::new(&mut conn, &mut sock);
        write!(
            tls,
            "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
        )
        .map_err(|e| e.to_string())?;
        let _ = tls.read_to_string(&mut answer);
    }
    Ok((chain, protocol, answer))
}

/// `whis serve` of the demo site over HTTPS with `certs` (files in `dir`):
/// the process and the certificate and key files it reads.
fn https_whis(dir: &TempDir, certs: &Certs) -> (Whis, PathBuf, PathBuf) {
    let cert = dir.write("cert.pem", &certs.cert_pem);
    let key = dir.write("key.pem", &certs.key_pem);
    let root = demo_site();
    let whis = Whis::spawn(
        &[
            "serve",
            "--root",
            root.to_str().expect("utf-8"),
            "--listen",
            "127.0.0.1:0",
            "--no-workers",
            "--tls-cert",
            cert.to_str().expect("utf-8"),
            "--tls-key",
            key.to_str().expect("utf-8"),
        ],
        &[],
    )
    .expect("whis starts with TLS");
    (whis, cert, key)
}

#[test]
fn https_speaks_http2_and_a_renewed_certificate_is_served_after_sighup() {
    let dir = TempDir::new("tls");
    let first = make_certs();
    let (mut whis, cert, key) = https_whis(&dir, &first);
    assert!(whis.url.starts_with("https://127.0.0.1:"), "{}", whis.url);
    let addr = whis.addr();

    let (chain, protocol, _) =
        tls_probe(&addr, &first.ca_pem, &[b"h2", b"http/1.1"], "/").expect("a browser's handshake");
    assert_eq!(protocol.as_deref(), Some(&b"h2"[..]), "HTTP/2 is offered");
    let (_, protocol, answer) =
        tls_probe(&addr, &first.ca_pem, &[b"http/1.1"], "/whis/health").expect("HTTP/1.1");
    assert_eq!(protocol.as_deref(), Some(&b"http/1.1"[..]));
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    // Plain HTTP on the HTTPS port is not served.
    let (status, _) = http(&addr, "GET", "/whis/health", "");
    assert_ne!(status, 200);

    // A renewed certificate (another authority, to tell them apart): read on SIGHUP.
    let renewed = make_certs();
    std::fs::write(&cert, &renewed.cert_pem).expect("write cert");
    std::fs::write(&key, &renewed.key_pem).expect("write key");
    assert!(
        tls_probe(&addr, &renewed.ca_pem, &[b"h2"], "/").is_err(),
        "the old certificate is served until SIGHUP"
    );
    whis.signal("HUP");
    let start = Instant::now();
    let fresh = loop {
        match tls_probe(&addr, &renewed.ca_pem, &[b"h2"], "/") {
            Ok((chain, _, _)) => break chain,
            Err(e) => {
                assert!(
                    start.elapsed() < Duration::from_secs(30),
                    "not renewed: {e}"
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    };
    assert_ne!(fresh[0], chain[0]);

    // A broken renewal keeps the certificate in use; the server stays up.
    std::fs::write(&key, "not a key").expect("write key");
    whis.signal("HUP");
    let start = Instant::now();
    while !whis.stderr().contains("still serving the certificate") {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{}",
            whis.stderr()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let (still, _, _) = tls_probe(&addr, &renewed.ca_pem, &[b"h2"], "/").expect("still served");
    assert_eq!(still[0], fresh[0]);

    whis.signal("TERM");
    assert!(whis.wait_exit(Duration::from_secs(30)).success());
}

#[test]
fn sigterm_tells_every_stream_to_come_back_exits_0_and_the_next_process_takes_visitors_back() {
    let root = demo_site();
    let root = root.to_str().expect("utf-8");
    let secret = [("WHIS_CLUSTER_SECRET", "the site's token secret, 32 chars")];
    let args = [
        "serve",
        "--root",
        root,
        "--listen",
        "127.0.0.1:0",
        "--no-workers",
        "--reconnect-delay",
        "1500",
    ];
    let mut before = Whis::spawn(&args, &secret).expect("whis starts");
    let addr = before.addr();
    let a = join(&addr);
    let b = join(&addr);
    let token_a = a["token"].as_str().expect("token");
    let peer_a = a["peer_id"].as_str().expect("peer id");
    let token_b = b["token"].as_str().expect("token");
    let mut stream = open_events(&addr, &format!("token={token_a}"));
    let hello = read_until(&mut stream, "event: hello");
    assert!(hello.contains("200 OK"), "{hello}");
    // b signals a: event 1 on a's stream.
    let (status, body) = http_with(
        &addr,
        "POST",
        "/whis/signal",
        &format!("Authorization: Bearer {token_b}\r\n"),
        &format!(r#"{{"to":"{peer_a}","data":{{"n":1}}}}"#),
    );
    assert_eq!(status, 200, "{body}");
    read_until(&mut stream, "event: signal");

    before.signal("TERM");
    let rest = read_until(&mut stream, "retry_ms");
    assert!(
        rest.contains("event: going-away") && rest.contains(r#"{"retry_ms":1500}"#),
        "{rest}"
    );
    let status = before.wait_exit(Duration::from_secs(30));
    assert!(status.success(), "exit {status:?}: {}", before.stderr());
    assert!(before.stderr().contains("shutting down"));

    // The next process, same secret: a's stream resumes after event 1 as a.
    let after = Whis::spawn(&args, &secret).expect("whis starts again");
    let addr = after.addr();
    let mut stream = open_events(&addr, &format!("token={token_a}&last_event_id=1"));
    let hello = read_until(&mut stream, "swarm_id");
    assert!(hello.contains("200 OK"), "{hello}");
    assert!(
        hello.contains(&format!(r#""peer_id":"{peer_a}""#)),
        "{hello}"
    );
    let (_, metrics) = http(&addr, "GET", "/whis/metrics", "");
    assert!(metrics.contains("whis_peers 1"), "{metrics}");
    assert!(metrics.contains("whis_peers_resumed_total 1"), "{metrics}");
    // A process with another secret does not know the token: a clean 401.
    drop(stream);
    let stranger = Whis::spawn(
        &args,
        &[("WHIS_CLUSTER_SECRET", "another secret altogether, long")],
    )
    .expect("whis starts");
    let (status, body) = http_with(
        &stranger.addr(),
        "POST",
        "/whis/announce",
        &format!("Authorization: Bearer {token_a}\r\n"),
        "{}",
    );
    assert_eq!(status, 401, "{body}");
    assert!(body.contains(r#""error":"invalid_token""#), "{body}");
}

#[test]
fn settings_come_from_flags_then_environment_then_the_config_file() {
    let dir = TempDir::new("settings");
    let root = demo_site();
    let root = root.to_str().expect("utf-8");
    // An address nobody here can bind (TEST-NET-1), so a start shows which won.
    let unbindable = "192.0.2.1:9";
    let file = dir.write(
        "whis.toml",
        &format!(
            "root = {root:?}\nlisten = {unbindable:?}\nno-workers = true\nlog-format = \"json\"\n"
        ),
    );
    let file = file.to_str().expect("utf-8");
    // The file alone: its listen address is tried, and fails.
    let (code, _, err) = run(&["serve", "--config", file], &[]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("cannot start"), "{err}");
    // The environment beats the file.
    let mut whis = Whis::spawn(
        &["serve", "--config", file],
        &[("WHIS_LISTEN", "127.0.0.1:0")],
    )
    .expect("WHIS_LISTEN wins over the file");
    assert!(whis.url.starts_with("http://127.0.0.1:"));
    whis.signal("TERM");
    assert!(whis.wait_exit(Duration::from_secs(30)).success());
    // The file's log format applies: every line on stderr is a JSON object.
    let logs = whis.stderr();
    let lines: Vec<&str> = logs.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(!lines.is_empty());
    for line in &lines {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        for field in ["ts", "level", "target", "message"] {
            assert!(v.get(field).is_some(), "{field} missing: {line}");
        }
    }
    assert!(lines.iter().any(|l| l.contains("shutting down")), "{logs}");
    // A flag beats both.
    let mut whis = Whis::spawn(
        &["serve", "--config", file, "--listen", "127.0.0.1:0"],
        &[("WHIS_LISTEN", unbindable)],
    )
    .expect("--listen wins");
    whis.signal("TERM");
    assert!(whis.wait_exit(Duration::from_secs(30)).success());
    // Every flag has its variable, named in --help, never with its value.
    let secret = "do not print this secret";
    let (_, help, _) = run(&["serve", "--help"], &[("WHIS_CLUSTER_SECRET", secret)]);
    assert!(!help.contains(secret), "--help shows a secret");
    for var in [
        "WHIS_LISTEN",
        "WHIS_TLS_CERT",
        "WHIS_CLUSTER_SECRET",
        "WHIS_NO_WORKERS",
    ] {
        assert!(help.contains(var), "{var} not in --help");
    }
}

#[test]
fn bad_deployment_settings_are_refused_with_the_reason() {
    let dir = TempDir::new("bad");
    let certs = make_certs();
    let cert = dir.write("cert.pem", &certs.cert_pem);
    let cert = cert.to_str().expect("utf-8");
    let missing = dir.path("missing.pem");
    let unknown = dir.write("unknown.toml", "listen-address = \"127.0.0.1:0\"\n");
    let root = demo_site();
    let root = root.to_str().expect("utf-8");
    let base = [
        "serve",
        "--root",
        root,
        "--listen",
        "127.0.0.1:0",
        "--no-workers",
    ];
    let with = |extra: &[&str]| -> Vec<String> {
        base.iter().chain(extra).map(|s| s.to_string()).collect()
    };
    for (args, env, code, expect) in [
        (with(&["--tls-cert", cert]), vec![], 2, "--tls-key"),
        (
            with(&["--tls-cert", cert, "--tls-key", &missing]),
            vec![],
            1,
            "--tls-key",
        ),
        (
            with(&["--tls-cert", cert, "--tls-key", cert]),
            vec![],
            1,
            "--tls-key",
        ),
        (
            with(&[]),
            vec![("WHIS_CLUSTER_SECRET", "short")],
            2,
            "at least 16",
        ),
        (
            with(&["--config", unknown.to_str().expect("utf-8")]),
            vec![],
            2,
            "unknown setting `listen-address`",
        ),
        (
            with(&["--reconnect-delay", "5"]),
            vec![],
            2,
            "reconnect-delay",
        ),
    ] {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (got, _, err) = run(&args, &env);
        assert_eq!(got, Some(code), "{args:?}: {err}");
        assert!(err.contains(expect), "{args:?}: {err}");
    }
}

/// A small site of shareable and private resources, on its own thread.
/// Returns its base URL.
fn test_site() -> String {
    use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
    const HOME: &str = r#"<!doctype html><html><head>
<link rel="stylesheet" href="/css/site.css"></head><body>
<img src="/img/public.jpg"><img src="/img/private.jpg"><img src="/img/cookie.jpg">
<img src="/img/vary.jpg"><img src="/img/tiny.png"><img src="/img/gzip.jpg">
<img src="https://cdn.example.net/x.jpg"><img src="/img/public.jpg?v=2"><img src="/missing.jpg">
<a href="/about.html">About</a> <a href="/gone.html">Gone</a> <a href="https://elsewhere.example/">Out</a>
</body></html>"#;
    const ABOUT: &str = r#"<!doctype html><html><head>
<script src="/whis/client.js" defer></script></head><body>
<img src="/img/public.jpg"><a href="/">Home</a></body></html>"#;
    const CSS: &str =
        "@font-face { src: url(/fonts/f.woff2) } body { background: url('../img/bg.jpg') }";
    async fn serve(req: HttpRequest) -> HttpResponse {
        let bytes = |n: usize| vec![7u8; n];
        let public = "public, max-age=3600";
        match req.path() {
            "/" => HttpResponse::Ok().content_type("text/html").body(HOME),
            "/about.html" => HttpResponse::Ok().content_type("text/html").body(ABOUT),
            "/css/site.css" => HttpResponse::Ok()
                .content_type("text/css")
                .insert_header(("cache-control", public))
                .body(CSS),
            "/img/public.jpg" => HttpResponse::Ok()
                .content_type("image/jpeg")
                .insert_header(("cache-control", public))
                .body(bytes(40_000)),
            "/fonts/f.woff2" => HttpResponse::Ok()
                .content_type("font/woff2")
                .body(bytes(30_000)),
            "/img/bg.jpg" => HttpResponse::Ok()
                .content_type("image/jpeg")
                .body(bytes(50_000)),
            "/img/private.jpg" => HttpResponse::Ok()
                .append_header(("cache-control", "public"))
                .append_header(("cache-control", "private"))
                .body(bytes(40_000)),
            "/img/cookie.jpg" => HttpResponse::Ok()
                .insert_header(("set-cookie", "session=1"))
                .body(bytes(40_000)),
            "/img/vary.jpg" => HttpResponse::Ok()
                .append_header(("vary", "Accept-Encoding"))
                .append_header(("vary", "Cookie"))
                .body(bytes(40_000)),
            "/img/tiny.png" => HttpResponse::Ok().body(bytes(100)),
            "/img/gzip.jpg" => HttpResponse::Ok()
                .insert_header(("content-encoding", "gzip"))
                .body(bytes(40_000)),
            _ => HttpResponse::NotFound().body("no such page"),
        }
    }
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    std::thread::spawn(move || {
        let system = actix_web::rt::System::new();
        let served = system.block_on(async move {
            HttpServer::new(|| App::new().default_service(web::to(serve)))
                .workers(1)
                .listen(listener)?
                .run()
                .await
        });
        if let Err(e) = served {
            eprintln!("test site: {e}");
        }
    });
    format!("http://{addr}")
}

#[test]
fn check_site_tells_page_by_page_what_is_shared_and_why_not() {
    let site = test_site();
    let (code, out, err) = run(&["check-site", &format!("{site}/"), "--json"], &[]);
    assert_eq!(code, Some(0), "{err}");
    let report: serde_json::Value = serde_json::from_str(&out).expect("JSON report");
    let pages: Vec<&str> = report["pages"]
        .as_array()
        .expect("pages")
        .iter()
        .map(|p| p["url"].as_str().expect("url"))
        .collect();
    assert_eq!(
        pages,
        [
            format!("{site}/"),
            format!("{site}/about.html"),
            format!("{site}/gone.html")
        ]
    );
    let home = &report["pages"][0];
    assert_eq!(home["has_whis"], false);
    assert_eq!(report["pages"][1]["has_whis"], true);
    assert!(report["pages"][2]["note"]
        .as_str()
        .is_some_and(|n| n.contains("404")));
    let verdict = |path: &str| -> &serde_json::Value {
        home["resources"]
            .as_array()
            .expect("resources")
            .iter()
            .find(|r| {
                let url = r["url"].as_str().unwrap_or("");
                url == path || url == format!("{site}{path}")
            })
            .unwrap_or_else(|| panic!("{path} not reported: {home}"))
    };
    for (path, size) in [
        ("/img/public.jpg", 40_000),
        ("/fonts/f.woff2", 30_000),
        ("/img/bg.jpg", 50_000),
    ] {
        let v = verdict(path);
        assert_eq!(v["shared"], true, "{v}");
        assert_eq!(v["size"], size, "{v}");
    }
    assert_eq!(verdict("/fonts/f.woff2")["how"], "url() in /css/site.css");
    for (path, why) in [
        ("/img/private.jpg", "private or no-store"),
        ("/img/cookie.jpg", "sets a cookie"),
        ("/img/vary.jpg", "varies by cookie"),
        ("/img/tiny.png", "under the 16 KB"),
        ("/css/site.css", "under the 16 KB"),
        ("/img/gzip.jpg", "Content-Encoding: gzip"),
        ("https://cdn.example.net/x.jpg", "another origin"),
        ("/img/public.jpg?v=2", "query string"),
        ("/missing.jpg", "answered 404"),
    ] {
        let v = verdict(path);
        assert_eq!(v["shared"], false, "{v}");
        let reason = v["reason"].as_str().unwrap_or("");
        assert!(reason.contains(why), "{path}: {reason}");
    }
    assert_eq!(home["shareable_bytes"], 120_000);
    assert_eq!(report["shareable_bytes"], 120_000);

    // The same, as an operator reads it.
    let (code, text, err) = run(&["check-site", &site, "--pages", "1"], &[]);
    assert_eq!(code, Some(0), "{err}");
    for line in [
        "shared",
        "/img/public.jpg",
        "why: the response is Cache-Control: private or no-store",
        "why: on another origin (https://cdn.example.net)",
        "Whis line: not yet added",
        "this page: 120 KB of",
        "To share them, add first in <head>: <script src=\"/whis/client.js\" defer></script>",
    ] {
        assert!(text.contains(line), "{line:?} not in:\n{text}");
    }
    assert!(!text.contains("/about.html  ["), "--pages 1 reads one page");
}

#[test]
fn check_site_refuses_what_it_cannot_read_with_the_reason() {
    for (args, code, expect) in [
        (vec!["check-site", "ftp://example.com/"], 2, "not an http"),
        (vec!["check-site", "not a url"], 2, "not a url"),
        (
            vec![
                "check-site",
                "http://127.0.0.1:1/",
                "--ca-cert",
                "/nonexistent.pem",
            ],
            2,
            "--ca-cert",
        ),
        (
            vec!["check-site", "http://127.0.0.1:1/", "--pages", "0"],
            2,
            "--pages",
        ),
    ] {
        let (got, _, err) = run(&args, &[]);
        assert_eq!(got, Some(code), "{args:?}: {err}");
        assert!(err.contains(expect), "{args:?}: {err}");
    }
    // A start page that does not answer is reported as such.
    let (code, out, err) = run(&["check-site", "http://127.0.0.1:1/", "--json"], &[]);
    assert_eq!(code, Some(0), "{err}");
    let report: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    let note = report["pages"][0]["note"].as_str().unwrap_or("");
    assert!(note.starts_with("could not fetch"), "{note}");
}

#[test]
fn check_site_reads_an_https_site_trusting_the_authority_it_is_given() {
    let dir = TempDir::new("check-https");
    let certs = make_certs();
    let ca = dir.write("ca.pem", &certs.ca_pem);
    let (whis, _, _) = https_whis(&dir, &certs);
    let port = whis
        .addr()
        .rsplit_once(':')
        .map(|(_, p)| p.to_string())
        .expect("port");
    let url = format!("https://localhost:{port}/gallery.html");
    let (code, out, err) = run(
        &[
            "check-site",
            &url,
            "--pages",
            "1",
            "--json",
            "--ca-cert",
            ca.to_str().expect("utf-8"),
        ],
        &[],
    );
    assert_eq!(code, Some(0), "{err}");
    let report: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    let page = &report["pages"][0];
    assert_eq!(page["status"], 200, "{page}");
    assert_eq!(page["has_whis"], true);
    let shared: Vec<&str> = page["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .filter(|r| r["shared"] == true)
        .filter_map(|r| r["url"].as_str())
        .collect();
    assert!(
        shared.iter().filter(|u| u.contains("/img/")).count() >= 4,
        "the gallery's pictures are shared: {page}"
    );
    // Without the authority, the certificate is not trusted.
    let (code, out, err) = run(&["check-site", &url, "--json"], &[]);
    assert_eq!(code, Some(0), "{err}");
    let report: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    let note = report["pages"][0]["note"].as_str().unwrap_or("");
    assert!(note.starts_with("could not fetch"), "{note}");
}

#[test]
fn sigterm_waits_for_requests_in_flight_only_as_long_as_the_shutdown_timeout() {
    // An origin that starts an answer and never finishes it: a request
    // through whis to it stays in flight until whis cuts it.
    let origin = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let origin_addr = origin.local_addr().expect("addr");
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in origin.incoming() {
            let Ok(mut conn) = conn else { break };
            let mut buf = [0u8; 4096];
            let _ = conn.read(&mut buf);
            let _ = conn.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: 1000000\r\n\r\nthe first bytes",
            );
            held.push(conn);
        }
    });
    let mut whis = Whis::spawn(
        &[
            "serve",
            "--origin",
            &format!("http://{origin_addr}"),
            "--listen",
            "127.0.0.1:0",
            "--no-workers",
            "--shutdown-timeout",
            "1",
        ],
        &[],
    )
    .expect("whis starts");
    let addr = whis.addr();
    let mut client = TcpStream::connect(&addr).expect("connect");
    client.set_read_timeout(Some(Duration::from_secs(20))).ok();
    write!(
        client,
        "GET /never-ends.bin HTTP/1.1\r\nHost: {addr}\r\n\r\n"
    )
    .expect("send");
    let begun = read_until(&mut client, "the first bytes");
    assert!(begun.starts_with("HTTP/1.1 200"), "{begun}");
    whis.signal("TERM");
    // Unbounded, this would wait for the rest of a body that never comes.
    let status = whis.wait_exit(Duration::from_secs(60));
    assert!(status.success(), "exit {status:?}: {}", whis.stderr());
}
