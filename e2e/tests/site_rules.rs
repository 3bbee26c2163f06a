//! Whis inside a site's own service worker, and responses Whis must never
//! share, with real Chromium visitors.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use e2e::*;
use whis::config::OriginConfig;

const IMAGES_DONE: &str = "(() => { const imgs = [...document.querySelectorAll('#gallery img')]; \
    return imgs.length > 0 && imgs.every(i => i.getAttribute('src') && i.complete && i.naturalWidth > 0) })()";

/// A site that has its own service worker, which imports Whis.
fn site_with_own_worker() -> Result<TempDir> {
    let dir = TempDir::new("own-sw");
    std::fs::create_dir_all(dir.path().join("img"))?;
    let mut imgs = String::new();
    for name in IMAGES {
        std::fs::copy(
            demo_site().join("img").join(name),
            dir.path().join("img").join(name),
        )?;
        imgs.push_str(&format!(r#"<img src="/img/{name}" alt="">"#));
    }
    std::fs::write(
        dir.path().join("index.html"),
        format!(
            r#"<!doctype html><html><head>
<script src="/whis/client.js" data-sw="/sw.js" defer></script>
<script>navigator.serviceWorker.register('/sw.js')</script>
</head><body><div id="gallery">{imgs}</div></body></html>"#
        ),
    )?;
    // A page without the pictures: a visitor who starts here has the site's
    // worker before it asks for them (they are not in its HTTP cache).
    std::fs::write(
        dir.path().join("start.html"),
        r#"<!doctype html><html><head>
<script src="/whis/client.js" data-sw="/sw.js" defer></script>
<script>navigator.serviceWorker.register('/sw.js')</script>
</head><body><div id="gallery"></div></body></html>"#,
    )?;
    std::fs::write(
        dir.path().join("sw.js"),
        r#"importScripts('/whis/sw-lib.js')
self.addEventListener('install', () => self.skipWaiting())
self.addEventListener('activate', (e) => e.waitUntil(self.clients.claim()))
self.addEventListener('fetch', (e) => {
  if (new URL(e.request.url).pathname === '/own/hello') e.respondWith(new Response('from the site worker'))
})
"#,
    )?;
    Ok(dir)
}

const IMAGES: [&str; 3] = ["aurora-01.jpg", "aurora-04.jpg", "waves-01.jpg"];

/// Load the page until the site's worker controls it, then fetch the images
/// twice: as a library, Whis learns a path on first sight and claims it after.
async fn load_until_whis_serves(v: &Visitor, url: &str) -> Result<Stats> {
    v.goto(url).await?;
    v.wait_for(IMAGES_DONE, Duration::from_secs(60)).await?;
    v.wait_for(
        "!!navigator.serviceWorker.controller",
        Duration::from_secs(20),
    )
    .await?;
    v.eval::<serde_json::Value>("window.whis.ready()").await?;
    for _ in 0..2 {
        for name in IMAGES {
            let _: Fetched = v
                .eval(&fetch_digest_js(&format!("/img/{name}"), "{}"))
                .await?;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    v.stats().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_site_with_its_own_service_worker_imports_whis() -> Result<()> {
    let _one = serial().await;
    init_logs();
    let site = site_with_own_worker()?;
    let whis = start_whis(site.path(), |_| {}).await?;
    let url = format!("{}/index.html", whis.url());
    let a = Visitor::launch("a").await?;
    let stats_a = load_until_whis_serves(&a, &url).await?;
    let script: String = a
        .eval("navigator.serviceWorker.controller.scriptURL")
        .await?;
    assert!(
        script.ends_with("/sw.js"),
        "the site's own worker stays in charge: {script}"
    );
    let own: String = a.eval("fetch('/own/hello').then(r => r.text())").await?;
    assert_eq!(
        own, "from the site worker",
        "the site's own fetch handler still answers"
    );
    assert!(
        stats_a.verified_pieces > 0,
        "Whis handled A's images: {stats_a:?}"
    );

    // B starts on a page without the pictures, so they are not in its HTTP
    // cache when it asks for them through the site's worker.
    let b = Visitor::launch("b").await?;
    b.goto(&format!("{}/start.html", whis.url())).await?;
    b.wait_for(
        "!!navigator.serviceWorker.controller",
        Duration::from_secs(20),
    )
    .await?;
    b.eval::<serde_json::Value>("window.whis.ready()").await?;
    b.wait_connected(Duration::from_secs(30)).await?;
    // As a library Whis claims a path once it has seen it: a first, one-byte
    // look at each picture (which the site's handler, here the network,
    // answers) teaches it the paths, then the pictures come through Whis.
    for name in IMAGES {
        let _: Fetched = b
            .eval(&fetch_digest_js(
                &format!("/img/{name}"),
                "{ range: 'bytes=0-0' }",
            ))
            .await?;
    }
    b.wait_for(
        &format!(
            "Promise.all({:?}.map(n => fetch('/whis/manifest?path=/img/' + n).then(r => r.ok))).then(a => a.every(Boolean))",
            IMAGES
        ),
        Duration::from_secs(10),
    )
    .await?;
    for name in IMAGES {
        let _: Fetched = b
            .eval(&fetch_digest_js(&format!("/img/{name}"), "{}"))
            .await?;
    }
    let stats_b = b.stats().await?;
    eprintln!("b: {stats_b:?}");
    assert!(
        stats_b.bytes_from_peers > 0,
        "B got pieces from A through the site's worker"
    );
    for name in IMAGES {
        let got: Fetched = b
            .eval(&fetch_digest_js(&format!("/img/{name}"), "{}"))
            .await?;
        assert_eq!(
            got.sha256,
            sha256_file(&site.path().join("img").join(name))?
        );
    }
    let regs: Vec<String> = b.eval("navigator.serviceWorker.getRegistrations().then(rs => rs.map(r => (r.active || r.installing || r.waiting).scriptURL))").await?;
    assert!(
        regs.iter().all(|s| !s.ends_with("/whis-sw.js")),
        "Whis registered no worker of its own: {regs:?}"
    );
    a.close().await;
    b.close().await;
    whis.stop().await;
    Ok(())
}

/// An origin whose answers carry headers that forbid sharing; it counts
/// requests per method and path.
async fn picky_origin() -> Result<(
    String,
    Arc<Mutex<HashMap<String, u32>>>,
    tokio::task::JoinHandle<()>,
)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let counts: Arc<Mutex<HashMap<String, u32>>> = Arc::default();
    let seen = counts.clone();
    let body: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    let task = tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let seen = seen.clone();
            let body = body.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 16384];
                let mut got = Vec::new();
                while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&got).into_owned();
                let mut first = head.lines().next().unwrap_or("").split_whitespace();
                let (method, path) = (
                    first.next().unwrap_or("").to_string(),
                    first.next().unwrap_or("").to_string(),
                );
                if let Ok(mut c) = seen.lock() {
                    *c.entry(format!("{method} {path}")).or_default() += 1;
                }
                let (extra, payload): (&str, Vec<u8>) = match path.as_str() {
                    "/" | "/index.html" => (
                        "Content-Type: text/html\r\nCache-Control: no-cache\r\n",
                        br#"<!doctype html><html><head><script src="/whis/client.js" defer></script></head><body>picky</body></html>"#.to_vec(),
                    ),
                    "/private.bin" => ("Cache-Control: private, max-age=60\r\n", body.clone()),
                    "/cookie.bin" => ("Set-Cookie: session=secret\r\nCache-Control: max-age=60\r\n", body.clone()),
                    "/public.bin" => ("Cache-Control: public, max-age=60\r\n", body.clone()),
                    _ => ("", b"not found".to_vec()),
                };
                let status = if extra.is_empty() {
                    "404 Not Found"
                } else {
                    "200 OK"
                };
                let head = format!(
                    "HTTP/1.1 {status}\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n",
                    payload.len()
                );
                let _ = s.write_all(head.as_bytes()).await;
                if method != "HEAD" {
                    let _ = s.write_all(&payload).await;
                }
            });
        }
    });
    Ok((url, counts, task))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_cookie_and_post_responses_never_travel_between_visitors() -> Result<()> {
    let _one = serial().await;
    init_logs();
    let (origin, counts, task) = picky_origin().await?;
    let whis = start_whis(std::path::Path::new("."), |c| {
        c.origin = OriginConfig::Proxy {
            base: origin.clone(),
        }
    })
    .await?;
    let url = whis.url();
    for path in ["/private.bin", "/cookie.bin"] {
        let r = http_raw("GET", &format!("{url}/whis/manifest?path={path}"), &[], b"").await?;
        assert_eq!(r.status, 403, "{path}: {}", r.text());
        assert!(r.text().contains("ineligible"));
    }
    let before = counts.lock().map(|c| c.clone()).map_err(|_| "lock")?;
    let fetch_all = "(async () => { const out = {}; for (const p of ['/private.bin', '/cookie.bin', '/public.bin']) { \
        const r = await fetch(p); const b = await r.arrayBuffer(); out[p] = b.byteLength } \
        const post = await fetch('/public.bin', { method: 'POST', body: 'x' }); out.post = post.status; return out })()";
    let a = Visitor::launch("a").await?;
    a.goto(&format!("{url}/index.html")).await?;
    a.wait_for(
        "!!navigator.serviceWorker.controller",
        Duration::from_secs(20),
    )
    .await?;
    a.eval::<serde_json::Value>("window.whis.ready()").await?;
    let got: serde_json::Value = a.eval(fetch_all).await?;
    assert_eq!(got["/private.bin"], 100_000);
    a.wait_seeding(1, Duration::from_secs(20)).await?;

    let b = Visitor::launch("b").await?;
    b.goto(&format!("{url}/index.html")).await?;
    b.wait_for(
        "!!navigator.serviceWorker.controller",
        Duration::from_secs(20),
    )
    .await?;
    b.eval::<serde_json::Value>("window.whis.ready()").await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let got: serde_json::Value = b.eval(fetch_all).await?;
    assert_eq!(got["/cookie.bin"], 100_000);
    let stats = b.stats().await?;
    eprintln!(
        "b: {stats:?}; origin saw {:?}",
        counts.lock().map(|c| c.clone())
    );
    let after = counts.lock().map(|c| c.clone()).map_err(|_| "lock")?;
    let delta = |k: &str| after.get(k).copied().unwrap_or(0) - before.get(k).copied().unwrap_or(0);
    assert_eq!(
        delta("GET /private.bin"),
        2,
        "each visitor got the private file from the origin, and only that"
    );
    assert_eq!(
        delta("GET /cookie.bin"),
        2,
        "each visitor got the cookie file from the origin, and only that"
    );
    assert_eq!(delta("POST /public.bin"), 2, "POSTs pass straight through");
    assert!(
        stats.bytes_from_peers <= 100_000,
        "at most the public file came from a peer: {stats:?}"
    );
    a.close().await;
    b.close().await;
    whis.stop().await;
    task.abort();
    Ok(())
}
