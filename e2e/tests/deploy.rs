//! Whis deployed as a real site runs it: behind nginx over HTTPS (the two
//! set-ups of deploy/nginx.conf, that very file), behind Caddy
//! (deploy/Caddyfile), serving HTTPS itself, and through a restart.
//!
//! nginx and Caddy are Debian's, each started by the test as its own process
//! with a configuration in a temporary folder, on free loopback ports, and
//! stopped by its pid. The certificate is made by the
//! test; the visitors' Chromium trusts exactly that key
//! (`--ignore-certificate-errors-spki-list`) and maps the test host names to
//! 127.0.0.1 (`--host-resolver-rules`), so the page is a secure origin with
//! a real name, as in production.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use base64::Engine as _;
use sha2::Digest as _;

use e2e::*;

/// The host names the test site answers to (set-up A and set-up B).
const HOST_A: &str = "whis.test";
const HOST_B: &str = "www.beside.test";

/// Every `<img>` has a source and decoded to a real picture.
const IMAGES_DONE: &str = "(() => { const imgs = [...document.querySelectorAll('#gallery img')]; \
    return imgs.length > 0 && imgs.every(i => i.getAttribute('src') && i.complete && i.naturalWidth > 0) })()";

/// A certificate for the test host names, and the Chromium flags that trust it.
struct TestCert {
    cert_pem: String,
    key_pem: String,
    /// base64(SHA-256(SubjectPublicKeyInfo)): what Chromium pins.
    spki: String,
}

fn test_cert() -> Result<TestCert> {
    let made = rcgen::generate_simple_self_signed(vec![HOST_A.to_string(), HOST_B.to_string()])?;
    let spki = base64::engine::general_purpose::STANDARD
        .encode(sha2::Sha256::digest(made.key_pair.public_key_der()));
    Ok(TestCert {
        cert_pem: made.cert.pem(),
        key_pem: made.key_pair.serialize_pem(),
        spki,
    })
}

impl TestCert {
    fn chromium_flags(&self) -> Vec<String> {
        vec![
            format!("ignore-certificate-errors-spki-list={}", self.spki),
            format!("host-resolver-rules=MAP {HOST_A} 127.0.0.1, MAP {HOST_B} 127.0.0.1"),
        ]
    }
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn repo_file(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

/// deploy/nginx.conf with its example names, addresses and paths replaced
/// by the test's. Each replacement must apply, so the file and this test
/// cannot drift apart unnoticed.
fn render_deploy_conf(
    tls_port: u16,
    http_port: u16,
    whis: &str,
    origin: &str,
    certs: &Path,
) -> Result<String> {
    let mut text = std::fs::read_to_string(repo_file("deploy/nginx.conf"))?;
    let certs = format!("{}/", certs.display());
    for (from, to) in [
        ("listen [::]:443 ssl http2;", String::new()),
        ("listen [::]:80;", String::new()),
        (
            "listen 443 ssl http2;",
            format!("listen 127.0.0.1:{tls_port} ssl http2;"),
        ),
        ("listen 80;", format!("listen 127.0.0.1:{http_port};")),
        ("www.example.org", HOST_B.to_string()),
        ("example.com", HOST_A.to_string()),
        ("/etc/letsencrypt/live/", certs),
        ("127.0.0.1:8080", whis.to_string()),
        ("127.0.0.1:3000", origin.to_string()),
    ] {
        if !text.contains(from) {
            return Err(format!("deploy/nginx.conf no longer has {from:?}").into());
        }
        text = text.replace(from, &to);
    }
    Ok(text)
}

/// An nginx of our own: a folder with its configuration, logs and
/// temporary files, and the one process serving it.
struct Nginx {
    dir: TempDir,
    child: tokio::process::Child,
    tls_port: u16,
}

impl Nginx {
    /// Start nginx with deploy/nginx.conf in front of `whis`; `demo_root`
    /// is served at `origin_port` as the "existing origin" of set-up B.
    async fn start(
        cert: &TestCert,
        whis: &str,
        origin_port: u16,
        demo_root: &Path,
    ) -> Result<Nginx> {
        let dir = TempDir::new("nginx");
        let d = dir.path();
        for sub in [
            "tmp",
            "snippets",
            &format!("certs/{HOST_A}"),
            &format!("certs/{HOST_B}"),
        ] {
            std::fs::create_dir_all(d.join(sub))?;
        }
        for host in [HOST_A, HOST_B] {
            std::fs::write(
                d.join(format!("certs/{host}/fullchain.pem")),
                &cert.cert_pem,
            )?;
            std::fs::write(d.join(format!("certs/{host}/privkey.pem")), &cert.key_pem)?;
        }
        for snippet in ["whis-proxy.conf", "whis-stream.conf"] {
            std::fs::copy(
                repo_file(&format!("deploy/snippets/{snippet}")),
                d.join("snippets").join(snippet),
            )?;
        }
        let tls_port = free_port()?;
        let http_port = free_port()?;
        let origin = format!("127.0.0.1:{origin_port}");
        let site = render_deploy_conf(tls_port, http_port, whis, &origin, &d.join("certs"))?;
        std::fs::write(d.join("whis.conf"), site)?;
        let main = format!(
            r#"daemon off;
master_process off;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 512; }}
http {{
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    log_format origin '$request $status $body_bytes_sent';
    access_log off;
    client_body_temp_path {d}/tmp/body;
    proxy_temp_path {d}/tmp/proxy;
    fastcgi_temp_path {d}/tmp/fastcgi;
    uwsgi_temp_path {d}/tmp/uwsgi;
    scgi_temp_path {d}/tmp/scgi;
    # The existing origin of set-up B: the site as it was before Whis.
    server {{
        listen 127.0.0.1:{origin_port};
        root {root};
        access_log {d}/origin.log origin;
    }}
    include whis.conf;
}}
"#,
            d = d.display(),
            root = demo_root.display(),
        );
        std::fs::write(d.join("nginx.conf"), main)?;
        let args = |test: bool| {
            let mut a = vec![
                "-p".to_string(),
                format!("{}/", d.display()),
                "-c".to_string(),
                d.join("nginx.conf").display().to_string(),
                "-e".to_string(),
                d.join("error.log").display().to_string(),
            ];
            if test {
                a.push("-t".into());
            }
            a
        };
        let checked = tokio::process::Command::new(nginx())
            .args(args(true))
            .output()
            .await?;
        if !checked.status.success() {
            return Err(format!(
                "nginx -t refused the configuration:\n{}",
                String::from_utf8_lossy(&checked.stderr)
            )
            .into());
        }
        let child = tokio::process::Command::new(nginx())
            .args(args(false))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        let nginx = Nginx {
            dir,
            child,
            tls_port,
        };
        let up = eventually(Duration::from_secs(20), "nginx listens", || {
            std::net::TcpStream::connect(("127.0.0.1", tls_port)).is_ok()
        })
        .await;
        if let Err(e) = up {
            return Err(format!("{e}: {}", nginx.error_log()).into());
        }
        Ok(nginx)
    }

    fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
    }

    /// Body bytes the set-up B origin sent for paths starting with `prefix`,
    /// by its own access log.
    fn origin_bytes(&self, prefix: &str) -> u64 {
        std::fs::read_to_string(self.dir.path().join("origin.log"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| {
                let mut parts = l.split_whitespace();
                let (_method, path) = (parts.next()?, parts.next()?);
                let bytes = parts.last()?.parse::<u64>().ok()?;
                path.starts_with(prefix).then_some(bytes)
            })
            .sum()
    }

    /// Stop it by its pid and wait for it.
    async fn stop(mut self) -> Result<()> {
        if let Some(pid) = self.child.id() {
            // SIGQUIT: nginx's graceful stop.
            // SAFETY: kill(2) on the pid of a child we spawned and have not reaped.
            unsafe {
                libc::kill(pid as i32, libc::SIGQUIT);
            }
        }
        match tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await {
            Ok(status) => {
                status?;
            }
            Err(_) => {
                self.child.kill().await?;
            }
        }
        Ok(())
    }
}

fn nginx() -> PathBuf {
    ["/usr/sbin/nginx", "/usr/bin/nginx"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("the deploy tests need nginx: apt-get install -y nginx"))
}

/// Load the gallery and wait until every image is on screen and the agent joined.
async fn load_gallery(v: &Visitor, url: &str) -> Result<()> {
    v.goto(&format!("{url}/gallery.html")).await?;
    v.wait_for(IMAGES_DONE, Duration::from_secs(90)).await?;
    v.wait_for("!!window.whis", Duration::from_secs(10)).await?;
    v.eval::<serde_json::Value>("window.whis.ready()").await?;
    Ok(())
}

/// Two visitors share the gallery at `url` (https://HOST:PORT) over HTTP/2:
/// the first from the origin, the second mostly from the first (and the
/// swarm's worker, if any), byte for byte, by the origin's own count
/// (`origin_sent`).
async fn share_gallery(url: &str, cert: &TestCert, origin_sent: impl Fn() -> u64) -> Result<()> {
    let a = Visitor::launch_with("a", &cert.chromium_flags()).await?;
    load_gallery(&a, url).await?;
    let secure: bool = a
        .eval("window.isSecureContext && location.protocol === 'https:'")
        .await?;
    ensure(secure, "the page is a secure origin over HTTPS")?;
    let protocol: String = a
        .eval("performance.getEntriesByType('navigation')[0].nextHopProtocol")
        .await?;
    ensure(
        protocol == "h2",
        format!("the page came over {protocol}, not HTTP/2"),
    )?;
    let images: Vec<String> = a
        .eval("[...document.querySelectorAll('#gallery img')].map(i => new URL(i.src).pathname)")
        .await?;
    let image_bytes = bytes_on_disk(&demo_site(), &images);
    a.wait_seeding(images.len(), Duration::from_secs(60))
        .await?;

    let before_b = origin_sent();
    let b = Visitor::launch_with("b", &cert.chromium_flags()).await?;
    load_gallery(&b, url).await?;
    let controlled: bool = b.eval("!!navigator.serviceWorker.controller").await?;
    let stats = b.stats().await?;
    let origin_for_b = origin_sent() - before_b;
    eprintln!("b over {url}: {stats:?}; the origin sent {origin_for_b} bytes of {image_bytes}");
    let swarm_bytes = stats.bytes_from_peers + stats.bytes_from_worker;
    if swarm_bytes * 2 <= image_bytes {
        eprintln!("b's report: {}", b.report().await);
    }
    ensure(controlled, "the service worker runs on the HTTPS origin")?;
    ensure(stats.peers >= 1, "b is connected to a")?;
    ensure(
        swarm_bytes * 2 > image_bytes,
        format!("most of b's pictures came from the swarm: {swarm_bytes} of {image_bytes}"),
    )?;
    ensure(
        origin_for_b * 2 < image_bytes,
        format!("the origin sent {origin_for_b} bytes for b, the pictures are {image_bytes}"),
    )?;
    for p in &images {
        let got: Fetched = b.eval(&fetch_digest_js(p, "{}")).await?;
        let want = sha256_file(&demo_site().join(p.trim_start_matches('/')))?;
        ensure(
            (got.status, &got.sha256) == (200, &want),
            format!("{p} is byte-exact: {} {}", got.status, got.sha256),
        )?;
    }
    a.close().await;
    b.close().await;
    Ok(())
}

fn ensure(holds: bool, what: impl std::fmt::Display) -> Result<()> {
    if holds {
        Ok(())
    } else {
        Err(format!("not so: {what}").into())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_nginx_over_https_visitors_share_the_gallery_whis_as_the_origin() -> Result<()> {
    let _one = serial().await;
    init_logs();
    let cert = test_cert()?;
    let whis = start_whis(&demo_site(), |_| {}).await?;
    let nginx = Nginx::start(&cert, &whis.addr.to_string(), free_port()?, &demo_site()).await?;
    let url = format!("https://{HOST_A}:{}", nginx.tls_port);
    // whis's own count of what it sent through nginx.
    let shared = share_gallery(&url, &cert, || origin_bytes(&whis)).await;
    let log = nginx.error_log();
    nginx.stop().await?;
    whis.stop().await;
    shared.map_err(|e| format!("{e}\nnginx: {log}").into())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_nginx_over_https_visitors_share_the_gallery_whis_beside_the_origin() -> Result<()> {
    let _one = serial().await;
    init_logs();
    let cert = test_cert()?;
    // The existing origin is nginx's own server for the demo site; whis
    // reads it (to hash) and serves only /whis/.
    let origin_port = free_port()?;
    let origin = format!("http://127.0.0.1:{origin_port}");
    let whis = start_whis(&demo_site(), |c| {
        c.origin = whis::config::OriginConfig::Proxy {
            base: origin.clone(),
        };
    })
    .await?;
    let nginx = Nginx::start(&cert, &whis.addr.to_string(), origin_port, &demo_site()).await?;
    let url = format!("https://{HOST_B}:{}", nginx.tls_port);
    // The origin's own access log.
    let shared = share_gallery(&url, &cert, || nginx.origin_bytes("/img/")).await;
    let log = nginx.error_log();
    let proxied = origin_bytes(&whis);
    nginx.stop().await?;
    whis.stop().await;
    shared.map_err(|e| format!("{e}\nnginx: {log}"))?;
    // Site bytes went from the origin straight to visitors, not through whis.
    assert_eq!(proxied, 0, "whis served no site bytes beside the origin");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whis_serving_https_itself_visitors_and_its_worker_share_the_gallery_over_http2(
) -> Result<()> {
    let _one = serial().await;
    init_logs();
    let cert = test_cert()?;
    let files = TempDir::new("whis-tls");
    let (cert_file, key_file) = (files.path().join("cert.pem"), files.path().join("key.pem"));
    std::fs::write(&cert_file, &cert.cert_pem)?;
    std::fs::write(&key_file, &cert.key_pem)?;
    // With a worker browser: it reaches this same server over loopback HTTP
    // (it cannot check the public name's certificate there).
    let profiles = TempDir::new("tls-workers");
    let whis = start_whis(&demo_site(), |c| {
        c.deploy.tls = Some((cert_file.clone(), key_file.clone()));
        c.workers.enabled = true;
        c.workers.profile_dir = Some(profiles.path().to_path_buf());
    })
    .await?;
    assert!(whis.url().starts_with("https://"), "{}", whis.url());
    let url = format!("https://{HOST_A}:{}", whis.addr.port());
    let shared = share_gallery(&url, &cert, || origin_bytes(&whis)).await;
    let worker_seeds = eventually(Duration::from_secs(60), "the worker holds pictures", || {
        whis.state
            .workers
            .snapshot()
            .slots
            .iter()
            .any(|s| s.resources > 0)
    })
    .await;
    whis.stop().await;
    shared?;
    worker_seeds
}

/// The token secret both processes of the restart test share.
const SECRET: &str = "the restart test's token secret";

/// A page that streams `/big.bin` through the service worker, counting what
/// arrived, and hashes it at the end.
const STREAM_BIG_JS: &str = r#"(() => {
  window.big = { got: 0, done: false, sha256: null, error: null };
  (async () => {
    try {
      const r = await fetch('/big.bin');
      const reader = r.body.getReader();
      const chunks = [];
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        chunks.push(value);
        window.big.got += value.byteLength;
      }
      const d = await crypto.subtle.digest('SHA-256', await new Blob(chunks).arrayBuffer());
      window.big.sha256 = [...new Uint8Array(d)].map(x => x.toString(16).padStart(2, '0')).join('');
      window.big.done = true;
    } catch (e) { window.big.error = String(e) }
  })();
  return true;
})()"#;

/// A site of one page and one large file (64 MiB of random bytes: a
/// transfer between visitors long enough to restart whis in the middle).
fn big_site() -> Result<(TempDir, u64, String)> {
    use rand::RngCore as _;
    let dir = TempDir::new("big-site");
    std::fs::write(
        dir.path().join("index.html"),
        "<!doctype html><html><head><script src=\"/whis/client.js\" defer></script>\
         <meta charset=\"utf-8\"><title>One big file</title></head><body><p>big.bin</p></body></html>",
    )?;
    let size = 64u64 << 20;
    let mut data = vec![0u8; size as usize];
    rand::rng().fill_bytes(&mut data);
    let sha = hex(&sha2::Sha256::digest(&data));
    std::fs::write(dir.path().join("big.bin"), &data)?;
    Ok((dir, size, sha))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transfer_between_visitors_completes_from_the_peer_while_whis_restarts() -> Result<()> {
    let _one = serial().await;
    init_logs();
    let (site, size, sha) = big_site()?;
    let root = site.path().to_path_buf();
    let first = start_whis(&root, |c| c.deploy.cluster_secret = Some(SECRET.into())).await?;
    let addr = first.addr;
    let url = first.url();

    // a holds big.bin (from the origin); b is linked to a.
    let a = Visitor::launch("a").await?;
    a.goto(&format!("{url}/")).await?;
    a.wait_for(
        "!!navigator.serviceWorker.controller && !!window.whis",
        Duration::from_secs(30),
    )
    .await?;
    a.eval::<serde_json::Value>("window.whis.ready()").await?;
    let got: Fetched = a.eval(&fetch_digest_js("/big.bin", "{}")).await?;
    assert_eq!((got.status, got.sha256.as_str()), (200, sha.as_str()));
    a.wait_seeding(1, Duration::from_secs(60)).await?;
    let a_id: String = a.eval("window.whis.agent.id").await?;

    let b = Visitor::launch("b").await?;
    b.goto(&format!("{url}/")).await?;
    b.wait_connected(Duration::from_secs(60)).await?;
    let b_id: String = b.eval("window.whis.agent.id").await?;
    let linked: bool = b
        .eval(&format!(
            "!!(window.link = window.whis.agent.links.get({}))",
            serde_json::Value::from(a_id.as_str())
        ))
        .await?;
    assert!(linked, "b is linked to a");

    // b streams big.bin from a; once it is under way, whis restarts.
    let origin_before = origin_bytes(&first);
    let _: bool = b.eval(STREAM_BIG_JS).await?;
    b.wait_for(
        "window.big.got >= 256 * 1024 || !!window.big.error",
        Duration::from_secs(60),
    )
    .await?;
    let first_state = std::sync::Arc::clone(&first.state);
    first.stop().await;
    let origin_during = first_state
        .metrics
        .origin_bytes
        .load(std::sync::atomic::Ordering::Relaxed)
        - origin_before;
    let got_while_down: u64 = b.eval("window.big.got").await?;
    let second = start_whis(&root, |c| {
        c.listen = addr;
        c.deploy.cluster_secret = Some(SECRET.into());
    })
    .await?;
    let got_at_restart: u64 = b.eval("window.big.got").await?;
    eprintln!(
        "b had {got_while_down} of {size} bytes when whis was down, {got_at_restart} when it was back"
    );
    assert!(
        got_while_down < size,
        "the transfer was under way while whis was down ({got_while_down} of {size})"
    );

    let done = b
        .wait_for(
            "window.big.done || !!window.big.error",
            Duration::from_secs(180),
        )
        .await;
    let big: serde_json::Value = b.eval("window.big").await?;
    if done.is_err() || !big["error"].is_null() {
        eprintln!("b's report: {}", b.report().await);
    }
    done?;
    assert!(big["error"].is_null(), "{big}");
    assert_eq!(big["sha256"], sha.as_str(), "byte-exact");
    let stats = b.stats().await?;
    eprintln!("b: {stats:?}");
    assert_eq!(stats.bytes_from_peers, size, "every byte came from a");
    assert_eq!(stats.bytes_from_origin, 0);
    // The origin's own counts, before and after the restart: no piece.
    assert!(
        origin_during < 256 * 1024,
        "the first whis sent {origin_during} bytes meanwhile"
    );
    assert!(
        origin_bytes(&second) < 256 * 1024,
        "the second whis sent {} bytes",
        origin_bytes(&second)
    );

    // The same link carried it all, and the swarm is back: both visitors
    // reopened their streams to the new process as themselves.
    let same: bool = b
        .eval(&format!(
            "window.whis.agent.links.get({}) === window.link",
            serde_json::Value::from(a_id.as_str())
        ))
        .await?;
    assert!(same, "b's link to a is the one it had before the restart");
    eventually(
        Duration::from_secs(60),
        "a and b are back in the new whis",
        || second.state.signaling().hub.counters().resumed == 2,
    )
    .await?;
    let b_back: String = b.eval("window.whis.agent.id").await?;
    assert_eq!(b_back, b_id, "b kept its peer id");
    b.wait_for(
        "window.whis.agent.events.readyState === 1",
        Duration::from_secs(30),
    )
    .await?;

    a.close().await;
    b.close().await;
    second.stop().await;
    Ok(())
}

/// A server that answers every request with the request's own head: the
/// stand-in upstream that shows what a front proxy passed on.
async fn echo_server() -> Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?.to_string();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let answer = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    head.len()
                );
                let _ = conn.write_all(answer.as_bytes()).await;
                let _ = conn.write_all(&head).await;
            });
        }
    });
    Ok(addr)
}

/// `GET path` over HTTPS to 127.0.0.1:`port` as `host`, trusting `cert`;
/// the whole answer as text.
async fn https_get(
    cert: &TestCert,
    port: u16,
    host: &str,
    path: &str,
    headers: &str,
) -> Result<String> {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, ServerName};
    use std::io::{Read, Write};
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from_pem_slice(cert.cert_pem.as_bytes())?)?;
    let config = rustls::ClientConfig::builder_with_provider(whis::tls::provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = ServerName::try_from(host.to_string())?;
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n{headers}Connection: close\r\n\r\n");
    let text = tokio::task::spawn_blocking(move || -> Result<String> {
        let mut conn = rustls::ClientConnection::new(std::sync::Arc::new(config), name)?;
        let mut sock = std::net::TcpStream::connect(("127.0.0.1", port))?;
        sock.set_read_timeout(Some(Duration::from_secs(20)))?;
        let mut tls = rustls::Stream::new(&mut conn, &mut sock);
        tls.write_all(request.as_bytes())?;
        let mut answer = Vec::new();
        let _ = tls.read_to_end(&mut answer);
        Ok(String::from_utf8_lossy(&answer).into_owned())
    })
    .await??;
    Ok(text)
}

/// The `x-forwarded-for` lines of an echoed request head.
fn forwarded_for(echoed: &str) -> Vec<String> {
    echoed
        .lines()
        .filter_map(|l| l.split_once(':'))
        .filter(|(k, _)| k.trim().eq_ignore_ascii_case("x-forwarded-for"))
        .map(|(_, v)| v.trim().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_nginx_whis_hears_the_visitors_address_not_what_the_visitor_claims() -> Result<()> {
    let _one = serial().await;
    init_logs();
    let cert = test_cert()?;
    // The upstream is an echo server in whis's place: it shows what nginx sent.
    let echo = echo_server().await?;
    let nginx = Nginx::start(&cert, &echo, free_port()?, &demo_site()).await?;
    let forged = "X-Forwarded-For: 6.6.6.6\r\n";
    for (host, path) in [
        (HOST_A, "/whis/events?token=x"),
        (HOST_A, "/img/a.jpg"),
        (HOST_B, "/whis/join"),
        (HOST_B, "/whis-sw.js"),
    ] {
        let echoed = https_get(&cert, nginx.tls_port, host, path, forged).await?;
        assert!(echoed.starts_with("HTTP/1.1 200"), "{host}{path}: {echoed}");
        assert_eq!(
            forwarded_for(&echoed),
            ["127.0.0.1"],
            "{host}{path}: {echoed}"
        );
        assert!(
            echoed
                .to_ascii_lowercase()
                .contains("x-forwarded-proto: https"),
            "{echoed}"
        );
    }
    nginx.stop().await?;
    Ok(())
}

/// A Caddy of our own serving deploy/Caddyfile: set-up A on one port,
/// set-up B on another, plain HTTP on loopback (the certificate part is
/// Caddy's own automatic HTTPS, not ours to test).
struct Caddy {
    _dir: TempDir,
    child: tokio::process::Child,
    port_a: u16,
    port_b: u16,
}

impl Caddy {
    async fn start(whis: &str, origin: &str) -> Result<Caddy> {
        let dir = TempDir::new("caddy");
        let (port_a, port_b) = (free_port()?, free_port()?);
        let mut text = std::fs::read_to_string(repo_file("deploy/Caddyfile"))?;
        for (from, to) in [
            ("www.example.org {", format!("http://127.0.0.1:{port_b} {{")),
            ("example.com {", format!("http://127.0.0.1:{port_a} {{")),
            ("127.0.0.1:8080", whis.to_string()),
            ("127.0.0.1:3000", origin.to_string()),
        ] {
            if !text.contains(from) {
                return Err(format!("deploy/Caddyfile no longer has {from:?}").into());
            }
            text = text.replace(from, &to);
        }
        let file = dir.path().join("Caddyfile");
        std::fs::write(
            &file,
            format!("{{\n\tadmin off\n\tdefault_bind 127.0.0.1\n}}\n{text}"),
        )?;
        let child = tokio::process::Command::new(caddy())
            .args(["run", "--adapter", "caddyfile", "--config"])
            .arg(&file)
            .env("HOME", dir.path())
            .env("XDG_CONFIG_HOME", dir.path())
            .env("XDG_DATA_HOME", dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()?;
        let caddy = Caddy {
            _dir: dir,
            child,
            port_a,
            port_b,
        };
        eventually(Duration::from_secs(20), "caddy listens", || {
            [port_a, port_b]
                .iter()
                .all(|p| std::net::TcpStream::connect(("127.0.0.1", *p)).is_ok())
        })
        .await?;
        Ok(caddy)
    }

    async fn stop(mut self) -> Result<()> {
        if let Some(pid) = self.child.id() {
            // SAFETY: kill(2) on the pid of a child we spawned and have not reaped.
            unsafe {
                libc::kill(pid as i32, libc::SIGTERM);
            }
        }
        if tokio::time::timeout(Duration::from_secs(10), self.child.wait())
            .await
            .is_err()
        {
            self.child.kill().await?;
        }
        Ok(())
    }
}

fn caddy() -> PathBuf {
    ["/usr/bin/caddy", "/usr/local/bin/caddy"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("the deploy tests need Caddy: apt-get install -y caddy"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_caddy_event_streams_are_unbuffered_and_told_of_a_restart() -> Result<()> {
    let _one = serial().await;
    init_logs();
    let whis = start_whis(&demo_site(), |c| {
        c.deploy.reconnect_delay = Duration::from_millis(1500)
    })
    .await?;
    let echo = echo_server().await?;
    let caddy = Caddy::start(&whis.addr.to_string(), &echo).await?;
    let a_url = format!("http://127.0.0.1:{}", caddy.port_a);
    // Set-up A: signaling through Caddy, each event as it is sent.
    let (_, a) = http("POST", &format!("{a_url}/whis/join"), &[], "{}").await?;
    let (_, b) = http("POST", &format!("{a_url}/whis/join"), &[], "{}").await?;
    let a: serde_json::Value = serde_json::from_str(&a)?;
    let b: serde_json::Value = serde_json::from_str(&b)?;
    let token_a = a["token"].as_str().ok_or("token")?;
    let mut events =
        SseReader::open(&a_url, &format!("/whis/events?token={token_a}"), None).await?;
    assert_eq!(events.status, 200);
    assert!(events
        .next_of("hello", Duration::from_secs(10))
        .await
        .is_some());
    let auth = format!("Bearer {}", b["token"].as_str().ok_or("token")?);
    let body = format!(r#"{{"to":{},"data":{{"n":1}}}}"#, a["peer_id"]);
    let (status, answer) = http(
        "POST",
        &format!("{a_url}/whis/signal"),
        &[
            ("authorization", auth.as_str()),
            ("content-type", "application/json"),
        ],
        &body,
    )
    .await?;
    assert_eq!(status, 200, "{answer}");
    let signal = events.next_of("signal", Duration::from_secs(10)).await;
    assert!(
        signal.is_some(),
        "a single small event gets through at once"
    );
    // Ranges of site files pass through.
    let ranged = http_raw(
        "GET",
        &format!("{a_url}/img/aurora-01.jpg"),
        &[("range", "bytes=0-99")],
        b"",
    )
    .await?;
    assert_eq!((ranged.status, ranged.body.len()), (206, 100));
    // Set-up B: Whis's paths to whis, the rest to the origin as before,
    // which hears the visitor's address, not the one it claimed.
    let b_url = format!("http://127.0.0.1:{}", caddy.port_b);
    let (status, health) = http("GET", &format!("{b_url}/whis/health"), &[], "").await?;
    assert_eq!(status, 200, "{health}");
    let (status, echoed) = http(
        "GET",
        &format!("{b_url}/gallery.html"),
        &[("x-forwarded-for", "6.6.6.6")],
        "",
    )
    .await?;
    assert_eq!(status, 200, "{echoed}");
    assert!(echoed.starts_with("GET /gallery.html"), "{echoed}");
    assert_eq!(forwarded_for(&echoed), ["127.0.0.1"], "{echoed}");
    // whis stops: the stream, through Caddy, hears when to come back.
    whis.stop().await;
    let bye = events.next_of("going-away", Duration::from_secs(10)).await;
    assert_eq!(
        bye.map(|e| e.data),
        Some(r#"{"retry_ms":1500}"#.to_string())
    );
    caddy.stop().await?;
    Ok(())
}
