//! Connectivity: whis's own STUN socket, the ICE part of the join answer,
//! a visitor forced to relay through a real coturn, and a page that asks for
//! relays when there are none.
//!
//! coturn (Debian `coturn`, `turnserver`) is started by the test on a free
//! loopback port with its own config file (Debian's /etc/turnserver.conf
//! would send its log to syslog), a fresh user database and log in a temp
//! folder, and stopped by its pid. A missing coturn is a failure.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use whis::ice::IceSettings;
use whis_core::stun;

use e2e::*;

/// Every `<img>` has a source and decoded to a real picture.
const IMAGES_DONE: &str = "(() => { const imgs = [...document.querySelectorAll('#gallery img')]; \
    return imgs.length > 0 && imgs.every(i => i.getAttribute('src') && i.complete && i.naturalWidth > 0) })()";

/// Load `page`, wait until every image is on screen and the agent joined;
/// the images' paths.
async fn load_gallery(v: &Visitor, url: &str, page: &str) -> Result<Vec<String>> {
    v.goto(&format!("{url}/{page}")).await?;
    v.wait_for(IMAGES_DONE, Duration::from_secs(90)).await?;
    v.wait_for("!!window.whis", Duration::from_secs(10)).await?;
    v.eval::<serde_json::Value>("window.whis.ready().then(() => true)")
        .await?;
    v.eval("[...document.querySelectorAll('#gallery img')].map(i => new URL(i.src).pathname)")
        .await
}

/// Each path fetched through the page's service worker equals the file under `root`.
async fn assert_byte_identical(v: &Visitor, root: &Path, paths: &[String]) -> Result<()> {
    for p in paths {
        let got: Fetched = v.eval(&fetch_digest_js(p, "{}")).await?;
        let want = sha256_file(&root.join(p.trim_start_matches('/')))?;
        assert_eq!((got.status, got.sha256), (200, want), "{p}");
    }
    Ok(())
}

/// A coturn on 127.0.0.1 with `use-auth-secret`, run for one test.
struct Coturn {
    child: Option<Child>,
    port: u16,
    log: PathBuf,
    _dir: TempDir,
}

impl Coturn {
    fn start(secret: &str) -> Result<Coturn> {
        let exe = ["/usr/bin/turnserver", "/usr/sbin/turnserver"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .ok_or("no turnserver: apt-get install -y coturn")?;
        let dir = TempDir::new("coturn");
        let port = free_udp_and_tcp_port()?;
        let log = dir.path().join("turn.log");
        // coturn 4.6: loopback peers are refused unless allowed; no CLI (it
        // would want a password), no TLS/DTLS listeners (no certificate),
        // no RFC 5780 (it would also take port + 1).
        let conf = format!(
            "listening-ip=127.0.0.1\nlistening-port={port}\nrelay-ip=127.0.0.1\n\
             use-auth-secret\nstatic-auth-secret={secret}\nrealm=whis.test\n\
             allow-loopback-peers\nno-cli\nno-tls\nno-dtls\nno-rfc5780\n\
             userdb={db}\nlog-file={log}\nsimple-log\npidfile={pid}\nverbose\n",
            db = dir.path().join("turndb").display(),
            log = log.display(),
            pid = dir.path().join("turn.pid").display(),
        );
        let conf_path = dir.path().join("turnserver.conf");
        std::fs::write(&conf_path, conf)?;
        let child = Command::new(exe)
            .arg("-c")
            .arg(&conf_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start {exe}: {e}"))?;
        Ok(Coturn {
            child: Some(child),
            port,
            log,
            _dir: dir,
        })
    }

    fn url(&self) -> String {
        format!("turn:127.0.0.1:{}?transport=udp", self.port)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    async fn ready(&self) -> Result<()> {
        let line = format!("UDP listener opened on: 127.0.0.1:{}", self.port);
        eventually(Duration::from_secs(20), "coturn listens", || {
            self.log().contains(&line)
        })
        .await
    }

    /// SIGTERM by pid (coturn closes its sessions and logs their usage), then wait.
    async fn stop(mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        // SAFETY: kill(2) on the pid of our own child process.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        for _ in 0..50 {
            if matches!(child.try_wait(), Ok(Some(_))) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for Coturn {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A port free for both UDP and TCP on 127.0.0.1 (coturn takes both).
fn free_udp_and_tcp_port() -> Result<u16> {
    for _ in 0..20 {
        let udp = std::net::UdpSocket::bind("127.0.0.1:0")?;
        let port = udp.local_addr()?.port();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    Err("no port free for both UDP and TCP".into())
}

/// Bytes coturn says it relayed for sessions of `username`s ending in
/// `:peer_id` (its "peer usage" lines, written when a session closes).
fn relayed_bytes(log: &str, peer_id: &str) -> u64 {
    let who = format!(":{peer_id}>");
    log.lines()
        .filter(|l| l.contains("peer usage:") && l.contains(&who))
        .map(|l| {
            l.split([',', ' '])
                .filter_map(|kv| {
                    kv.strip_prefix("rb=")
                        .or_else(|| kv.strip_prefix("sb="))
                        .and_then(|n| n.parse::<u64>().ok())
                })
                .sum::<u64>()
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_visitor_forced_to_relay_gets_its_pieces_through_coturn() -> Result<()> {
    let _one = serial().await;
    init_logs();
    const SECRET: &str = "e2e-coturn-secret";
    let turn = Coturn::start(SECRET)?;
    turn.ready().await?;
    let turn_url = turn.url();
    let whis = start_whis(&demo_site(), |c| {
        // What is measured is the gallery's own bytes, not prefetched pages.
        c.prefetch_budget = 0;
        c.ice = IceSettings::from_flags(c.ice.stun, &[], &[turn_url], Some(SECRET.into()), true)
            .expect("a TURN URL with its secret and --relay-only are valid");
    })
    .await?;
    let url = whis.url();

    let a = Visitor::launch("a").await?;
    let images = load_gallery(&a, &url, "gallery.html").await?;
    let image_bytes = bytes_on_disk(&demo_site(), &images);
    a.wait_seeding(images.len(), Duration::from_secs(60))
        .await?;

    let before = origin_bytes(&whis);
    let b = Visitor::launch("b").await?;
    assert_eq!(load_gallery(&b, &url, "gallery.html").await?, images);
    let stats = b.stats().await?;
    let origin_for_b = origin_bytes(&whis) - before;
    let b_id: String = b.eval("window.whis.agent.id").await?;
    let report = b.report().await;
    eprintln!(
        "b {b_id}: {stats:?}; origin sent {origin_for_b} for {image_bytes} image bytes; {report}"
    );
    assert!(
        stats.bytes_from_peers * 10 >= image_bytes * 9,
        "b got {} of {image_bytes} image bytes from a",
        stats.bytes_from_peers
    );
    assert!(
        origin_for_b * 10 <= image_bytes,
        "origin sent {origin_for_b} bytes for b, the images are {image_bytes}"
    );
    assert_byte_identical(&b, &demo_site(), &images).await?;
    // Only relayed candidates were gathered...
    let timeline: serde_json::Value = b.eval("window.whis.timeline()").await?;
    let steps = timeline["connections"][0]["steps"].to_string();
    assert!(
        steps.contains(r#""first-local-candidate","relay""#),
        "b's link gathered relay candidates: {steps}"
    );
    assert!(!steps.contains(r#""first-local-candidate","host""#));
    // ...and coturn, which checked whis's credential for b, carried the bytes.
    assert!(
        turn.log().contains(&format!(
            ":{b_id}>: incoming packet ALLOCATE processed, success"
        )),
        "coturn allocated a relay for b with whis's credential"
    );
    a.close().await;
    b.close().await;
    whis.stop().await;
    eventually(Duration::from_secs(20), "coturn logs b's usage", || {
        relayed_bytes(&turn.log(), &b_id) > 0
    })
    .await?;
    let relayed = relayed_bytes(&turn.log(), &b_id);
    eprintln!("coturn relayed {relayed} bytes for b's sessions");
    assert!(
        relayed >= stats.bytes_from_peers,
        "coturn relayed {relayed} bytes for b, b got {} from its peer",
        stats.bytes_from_peers
    );
    turn.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_that_asks_for_relays_when_there_are_none_shares_nothing_and_says_why() -> Result<()>
{
    let _one = serial().await;
    init_logs();
    // The demo site plus a copy of its gallery whose client script says data-relay="only".
    let site = TempDir::new("relay-site");
    copy_dir(&demo_site(), site.path())?;
    let gallery = std::fs::read_to_string(site.path().join("gallery.html"))?;
    let private = gallery.replacen(
        r#"<script src="/whis/client.js" defer"#,
        r#"<script src="/whis/client.js" data-relay="only" defer"#,
        1,
    );
    assert_ne!(private, gallery, "the gallery loads client.js");
    std::fs::write(site.path().join("private.html"), private)?;
    let whis = start_whis(site.path(), |c| c.prefetch_budget = 0).await?;
    let url = whis.url();

    let a = Visitor::launch("a").await?;
    let images = load_gallery(&a, &url, "gallery.html").await?;
    a.wait_seeding(images.len(), Duration::from_secs(60))
        .await?;
    let b = Visitor::launch("b").await?;
    assert_eq!(load_gallery(&b, &url, "private.html").await?, images);
    let timeline: serde_json::Value = b.eval("window.whis.timeline()").await?;
    let stats = b.stats().await?;
    eprintln!("b: {stats:?}; {timeline}");
    assert_eq!(
        timeline["noSharing"],
        "relay only, and the server offers no TURN relay"
    );
    assert_eq!(stats.bytes_from_peers, 0);
    assert_eq!(stats.peers, 0);
    assert_eq!(timeline["connections"], serde_json::json!([]));
    // The page is whole all the same, from the origin; a never heard from b.
    assert_byte_identical(&b, site.path(), &images).await?;
    let a_links: u64 = a.eval("window.whis.agent.openCount()").await?;
    assert_eq!(a_links, 0);
    a.close().await;
    b.close().await;
    whis.stop().await;
    Ok(())
}

fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), target)?;
        }
    }
    Ok(())
}

/// A Chromium-style Binding request (a bare header) with this transaction id.
fn binding_request(txid: [u8; 12]) -> Vec<u8> {
    let mut m = vec![0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42];
    m.extend_from_slice(&txid);
    m
}

fn metric(text: &str, line_start: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(line_start))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn stun_answers_binding_requests_and_counts_what_it_drops() -> Result<()> {
    let whis = start_whis(&demo_site(), |_| {}).await?;
    let stun_at = whis.stun_addr.ok_or("STUN is on by default")?;
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await?;
    let me = socket.local_addr()?;
    let ask = |txid: [u8; 12]| {
        let socket = &socket;
        async move {
            socket.send_to(&binding_request(txid), stun_at).await?;
            let mut buf = [0u8; 512];
            let (n, from) =
                tokio::time::timeout(Duration::from_secs(10), socket.recv_from(&mut buf))
                    .await
                    .map_err(|_| "no STUN answer within 10 s")??;
            Ok::<(Vec<u8>, SocketAddr), Error>((buf[..n].to_vec(), from))
        }
    };
    let (answer, from) = ask([7; 12]).await?;
    assert_eq!(from, stun_at);
    assert_eq!(stun::parse_success(&answer, &[7; 12]), Some(me));
    assert!(answer.len() <= 20 + stun::MAX_GROWTH);

    // Garbage, a Binding indication, a response, an oversized datagram, an
    // unknown comprehension-required attribute: all dropped, all counted.
    let mut indication = binding_request([1; 12]);
    indication[1] = 0x11;
    let mut response = binding_request([2; 12]);
    response[0] = 0x01;
    let mut unknown = binding_request([3; 12]);
    unknown[3] = 8;
    unknown.extend_from_slice(&[0x00, 0x77, 0x00, 0x04, 1, 2, 3, 4]);
    for bad in [
        b"GET / HTTP/1.1\r\n\r\n".to_vec(),
        indication,
        response,
        vec![0u8; 1400],
        unknown,
    ] {
        socket.send_to(&bad, stun_at).await?;
    }
    let url = whis.url();
    let dropped = || async {
        let (_, text) = http("GET", &format!("{url}/whis/metrics"), &[], "").await?;
        Ok::<_, Error>(
            ["not_stun", "not_binding_request", "oversized", "malformed"]
                .iter()
                .map(|r| metric(&text, &format!("whis_stun_dropped_total{{reason=\"{r}\"}}")))
                .sum::<u64>(),
        )
    };
    let start = std::time::Instant::now();
    while dropped().await? < 5 {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the five bad datagrams are counted"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // None of them was answered: the next datagram in is the answer to a
    // new request, and the socket serves on.
    let (answer, _) = ask([9; 12]).await?;
    assert_eq!(stun::parse_success(&answer, &[9; 12]), Some(me));
    let (_, text) = http("GET", &format!("{url}/whis/metrics"), &[], "").await?;
    assert_eq!(metric(&text, "whis_stun_answered_total "), 2);
    assert_eq!(
        metric(
            &text,
            "whis_stun_dropped_total{reason=\"not_binding_request\"} "
        ),
        2
    );
    whis.stop().await;
    Ok(())
}

/// `POST /whis/join` to `addr` as a page on `host` would send it (the
/// harness's client names the address it connects to, not another host).
async fn join(addr: SocketAddr, host: &str) -> Result<serde_json::Value> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    let req = format!(
        "POST /whis/join HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n\
         Content-Length: 2\r\nConnection: close\r\n\r\n{{}}"
    );
    stream.write_all(req.as_bytes()).await?;
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut raw))
        .await
        .map_err(|_| "no answer to join within 30 s")??;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").ok_or("malformed answer")?;
    assert!(head.starts_with("HTTP/1.1 200"), "{text}");
    // A chunked body is one chunk here: its JSON object is the whole text between braces.
    let json = &body[body.find('{').ok_or("no JSON")?..=body.rfind('}').ok_or("no JSON")?];
    Ok(serde_json::from_str(json)?)
}

#[tokio::test]
async fn join_names_whis_stun_by_the_pages_host_and_hands_out_turn_credentials() -> Result<()> {
    const SECRET: &str = "join-secret";
    let whis = start_whis(&demo_site(), |c| {
        c.metered_upload = 4096;
        c.ice = IceSettings::from_flags(
            c.ice.stun,
            &["stun:stun.example.com:3478".into()],
            &["turn:turn.example.com:3478?transport=udp".into()],
            Some(SECRET.into()),
            false,
        )
        .expect("valid flags");
    })
    .await?;
    let stun_port = whis.stun_addr.ok_or("STUN is on")?.port();
    let port = whis.addr.port();
    let j = join(whis.addr, &format!("Site.Example:{port}")).await?;
    let servers = j["ice_servers"].as_array().ok_or("ice_servers is a list")?;
    assert_eq!(servers.len(), 3, "{j}");
    assert_eq!(
        servers[0],
        serde_json::json!({"urls": format!("stun:site.example:{stun_port}")})
    );
    assert_eq!(
        servers[1],
        serde_json::json!({"urls": "stun:stun.example.com:3478"})
    );
    assert_eq!(
        servers[2]["urls"],
        "turn:turn.example.com:3478?transport=udp"
    );
    assert_eq!(j["ice_transport_policy"], "all");
    assert_eq!(j["policy"]["metered_upload_bytes"], 4096);
    // coturn's scheme: "<expiry>:<peer id>", base64(HMAC-SHA1(secret, username)), a day ahead.
    let peer_id = j["peer_id"].as_str().ok_or("peer_id")?;
    let username = servers[2]["username"].as_str().ok_or("username")?;
    let (expiry, who) = username.split_once(':').ok_or("expiry:peer")?;
    assert_eq!(who, peer_id);
    let expiry: u64 = expiry.parse()?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let day = whis_core::turn::CREDENTIAL_TTL.as_secs();
    assert!(
        expiry > now + day - 3600 && expiry <= now + day,
        "expires in a day: {expiry} at {now}"
    );
    let want = whis_core::turn::credential(SECRET.as_bytes(), expiry, peer_id);
    assert_eq!(servers[2]["credential"], want.credential.as_str());
    // A Host header that is no host name is not echoed into a URL.
    let j = join(whis.addr, "evil host/x").await?;
    assert_eq!(
        j["ice_servers"][0]["urls"],
        format!("stun:127.0.0.1:{stun_port}")
    );
    // The secret itself is nowhere in the answer.
    assert!(!j.to_string().contains(SECRET));
    whis.stop().await;

    // --no-stun, no servers: nothing to list.
    let whis = start_whis(&demo_site(), |c| c.ice.stun = None).await?;
    assert!(whis.stun_addr.is_none());
    let j = join(whis.addr, "localhost").await?;
    assert_eq!(j["ice_servers"], serde_json::json!([]));
    whis.stop().await;
    Ok(())
}
