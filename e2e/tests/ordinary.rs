//! Whis on an ordinary multi-page site (e2e/sites/ordinary): plain `<img
//! src>`, CSS backgrounds, a web font, no `data-whis-src`, the one line of
//! Whis in every page. Real Chromium visitors, each its own process and
//! profile; every claim about bytes is checked against the origin's own
//! counter (`whis_origin_bytes_total`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use e2e::*;

fn site() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("sites/ordinary")
}

/// The shareable resources (≥ 16 KiB) each page uses.
const INDEX: &[&str] = &[
    "/css/site.css",
    "/fonts/DejaVuSans.ttf",
    "/img/hero.jpg",
    "/img/product-1.jpg",
    "/img/product-2.jpg",
    "/img/team.jpg",
];
const ABOUT: &[&str] = &[
    "/css/site.css",
    "/fonts/DejaVuSans.ttf",
    "/img/office.jpg",
    "/img/team.jpg",
    "/img/workshop.jpg",
];
const GALLERY: &[&str] = &[
    "/css/site.css",
    "/fonts/DejaVuSans.ttf",
    "/img/panorama.jpg",
    "/img/workshop.jpg",
    "/img/office.jpg",
];

fn bytes_of(paths: &[&str]) -> u64 {
    bytes_on_disk(&site(), paths)
}

/// Paths in `of` that are not in `seen`.
fn new_in<'a>(of: &[&'a str], seen: &[&[&str]]) -> Vec<&'a str> {
    of.iter()
        .filter(|p| !seen.iter().any(|s| s.contains(p)))
        .copied()
        .collect()
}

/// JS: `path` is the current page, it has loaded, every image decoded, the
/// font is in, and each of `resources` has a finished Resource Timing entry
/// (CSS backgrounds included).
fn page_done_js(path: &str, resources: &[&str]) -> String {
    let list = serde_json::to_string(resources).unwrap_or_default();
    format!(
        r#"(() => {{
            if (location.pathname !== {path:?} || document.readyState !== 'complete') return false;
            if (![...document.images].every(i => i.complete && i.naturalWidth > 0)) return false;
            if (document.fonts.status !== 'loaded') return false;
            const done = new Set(performance.getEntriesByType('resource').filter(e => e.responseEnd > 0).map(e => new URL(e.name).pathname));
            return {list}.every(p => done.has(p));
        }})()"#
    )
}

async fn open(v: &Visitor, url: &str, path: &str, resources: &[&str]) -> Result<()> {
    v.navigate(&format!("{url}{path}")).await?;
    v.wait_for(&page_done_js(path, resources), Duration::from_secs(60))
        .await
}

/// Wait until the page's service worker controls it and has taken in what
/// the page loaded before (adoption), so the agent holds `n` resources.
async fn wait_holding(v: &Visitor, n: usize) -> Result<()> {
    v.wait_for(
        "!!navigator.serviceWorker.controller",
        Duration::from_secs(30),
    )
    .await?;
    v.wait_seeding(n, Duration::from_secs(30)).await
}

/// One visitor's browse: first visit, a second page, back, reload.
async fn browse_and_come_back(url: &str) -> Result<()> {
    let v = Visitor::launch("one").await?;
    open(&v, url, "/", INDEX).await?;
    // What a person does on a page takes a moment; Whis takes control then.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    open(&v, url, "/about.html", ABOUT).await?;
    v.eval::<bool>("history.back(); true").await?;
    v.wait_for(&page_done_js("/", INDEX), Duration::from_secs(60))
        .await?;
    v.eval::<bool>("location.reload(); true").await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    v.wait_for(&page_done_js("/", INDEX), Duration::from_secs(60))
        .await?;
    v.close().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_visitor_never_costs_the_origin_more_than_without_whis() -> Result<()> {
    let _one = serial().await;
    init_logs();
    // The same visits against the same site without Whis (the line's script
    // answers 404 there, as on a site without Whis)...
    let plain = start_whis(&site(), |c| c.origin_only = true).await?;
    browse_and_come_back(&plain.url()).await?;
    let without = origin_bytes(&plain);
    plain.stop().await;
    // ...and with it.
    let whis = start_whis(&site(), |_| {}).await?;
    browse_and_come_back(&whis.url()).await?;
    let with = origin_bytes(&whis);
    let own = whis
        .state
        .metrics
        .own_bytes
        .load(std::sync::atomic::Ordering::Relaxed);
    whis.stop().await;
    eprintln!("origin bytes: without Whis {without}, with Whis {with} (and Whis's own {own})");
    let pages = bytes_of(INDEX) + bytes_of(&new_in(ABOUT, &[INDEX]));
    assert!(
        without >= pages,
        "the plain run loaded every shareable byte once ({without} < {pages})"
    );
    assert!(
        with <= without,
        "with Whis the origin sent {with} bytes of the site, without {without}"
    );
    assert!(
        (with + own) as f64 <= without as f64 * 1.03,
        "the site's bytes ({with}) and Whis's own ({own}) are over 3 % above {without}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_visitor_seeds_what_its_first_page_loaded() -> Result<()> {
    let _one = serial().await;
    init_logs();
    let whis = start_whis(&site(), |_| {}).await?;
    let url = whis.url();
    // A's only page view is its first: uncontrolled, every byte from the
    // origin into A's HTTP cache. Whis adopts it from there.
    let a = Visitor::launch("a").await?;
    open(&a, &url, "/", INDEX).await?;
    wait_holding(&a, INDEX.len()).await?;

    // B has the service worker (its first page was the gallery) and opens
    // the home page: what A loaded comes from A.
    let b = Visitor::launch("b").await?;
    open(&b, &url, "/gallery.html", GALLERY).await?;
    b.wait_for(
        "!!navigator.serviceWorker.controller",
        Duration::from_secs(30),
    )
    .await?;
    b.wait_connected(Duration::from_secs(30)).await?;
    let before = origin_bytes(&whis);
    open(&b, &url, "/", INDEX).await?;
    let spent = origin_bytes(&whis) - before;
    let fresh = bytes_of(&new_in(INDEX, &[GALLERY]));
    let stats = b.stats().await?;
    eprintln!("b on /: origin {spent} of {fresh} new bytes; {stats:?}");
    assert!(
        spent * 10 < fresh,
        "the origin sent {spent} of the {fresh} bytes A already held; b: {}; a: {}",
        b.report().await,
        a.report().await
    );
    assert!(
        stats.bytes_from_peers * 10 >= fresh * 9,
        "b got {} of {fresh} bytes from a",
        stats.bytes_from_peers
    );
    a.close().await;
    b.close().await;
    whis.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_next_pages_bytes_come_from_peers_before_they_are_asked_for() -> Result<()> {
    let _one = serial().await;
    init_logs();
    let whis = start_whis(&site(), |_| {}).await?;
    let url = whis.url();
    // A browses home → about → gallery and stays: whis learns each page's
    // resources and where visitors go next; A holds all of it.
    let a = Visitor::launch("a").await?;
    open(&a, &url, "/", INDEX).await?;
    wait_holding(&a, INDEX.len()).await?;
    open(&a, &url, "/about.html", ABOUT).await?;
    open(&a, &url, "/gallery.html", GALLERY).await?;
    let all = [INDEX, ABOUT, GALLERY].concat();
    let distinct: std::collections::BTreeSet<&str> = all.iter().copied().collect();
    a.wait_seeding(GALLERY.len(), Duration::from_secs(30))
        .await?;

    // B browses the same way. While each page is open, its agent fetches the
    // next page's bytes from A; the next page then finds them in the store.
    let b = Visitor::launch("b").await?;
    open(&b, &url, "/", INDEX).await?;
    b.wait_connected(Duration::from_secs(30)).await?;
    b.wait_for(
        "!!window.whis.timeline().prefetched",
        Duration::from_secs(60),
    )
    .await?;
    let mut spent = Vec::new();
    for (path, resources, before) in [
        ("/about.html", ABOUT, &[INDEX][..]),
        ("/gallery.html", GALLERY, &[INDEX, ABOUT][..]),
    ] {
        let start = origin_bytes(&whis);
        open(&b, &url, path, resources).await?;
        let fresh = bytes_of(&new_in(resources, before));
        spent.push((path, origin_bytes(&whis) - start, fresh));
        if path == "/about.html" {
            b.wait_connected(Duration::from_secs(30)).await?;
            b.wait_for(
                "!!window.whis.timeline().prefetched",
                Duration::from_secs(60),
            )
            .await?;
        }
    }
    eprintln!(
        "b, origin bytes per later page (spent, new shareable): {spent:?}; site {} resources",
        distinct.len()
    );
    for (path, sent, fresh) in spent {
        assert!(
            sent * 10 < fresh,
            "{path}: the origin sent {sent} bytes of {fresh} new shareable bytes"
        );
    }
    a.close().await;
    b.close().await;
    whis.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_whis_gone_halfway_every_page_still_loads() -> Result<()> {
    let _one = serial().await;
    init_logs();
    let whis = start_whis(&site(), |_| {}).await?;
    let addr = whis.addr;
    let url = whis.url();
    let v = Visitor::launch("v").await?;
    open(&v, &url, "/", INDEX).await?;
    wait_holding(&v, INDEX.len()).await?;
    open(&v, &url, "/about.html", ABOUT).await?;
    whis.stop().await;
    // Only the site now: /whis/* answers 404, the event stream is gone.
    let plain = start_whis(&site(), |c| {
        c.listen = addr;
        c.origin_only = true;
    })
    .await?;
    open(&v, &url, "/gallery.html", GALLERY).await?;
    open(&v, &url, "/products.html", &["/img/product-3.jpg"]).await?;
    // Byte for byte what is on disk, through the service worker.
    for p in ["/img/panorama.jpg", "/img/product-3.jpg", "/img/hero.jpg"] {
        let got: Fetched = v.eval(&fetch_digest_js(p, "{}")).await?;
        assert_eq!(got.status, 200, "{p}");
        assert_eq!(
            got.sha256,
            sha256_file(&site().join(p.trim_start_matches('/')))?,
            "{p}"
        );
    }
    v.close().await;
    plain.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_whis_store_gone_the_http_cache_still_spares_the_origin() -> Result<()> {
    let _one = serial().await;
    init_logs();
    let whis = start_whis(&site(), |_| {}).await?;
    let url = whis.url();
    let v = Visitor::launch("v").await?;
    open(&v, &url, "/", INDEX).await?;
    wait_holding(&v, INDEX.len()).await?;
    // The about page's new pictures come through Whis (controlled, alone:
    // from the origin, by ranges, through the HTTP cache).
    open(&v, &url, "/about.html", ABOUT).await?;
    v.wait_seeding(INDEX.len() + 2, Duration::from_secs(30))
        .await?;
    // The browser evicts Whis's store (storage pressure): every piece is gone.
    let cleared: bool = v
        .eval(
            r#"(async () => {
                const db = await new Promise((res, rej) => { const r = indexedDB.open('whis'); r.onsuccess = () => res(r.result); r.onerror = () => rej(r.error) });
                const tx = db.transaction(['pieces', 'resources'], 'readwrite');
                tx.objectStore('pieces').clear();
                tx.objectStore('resources').clear();
                await new Promise((res) => { tx.oncomplete = res });
                return true })()"#,
        )
        .await?;
    assert!(cleared);
    // Another visit to both pages: the browser's HTTP cache still holds every
    // byte, and Whis must use it as the browser would without Whis.
    let before = origin_bytes(&whis);
    open(&v, &url, "/gallery.html", GALLERY).await?; // away, then back to both
    let gallery = origin_bytes(&whis) - before;
    let before = origin_bytes(&whis);
    open(&v, &url, "/about.html", ABOUT).await?;
    open(&v, &url, "/", INDEX).await?;
    let again = origin_bytes(&whis) - before;
    eprintln!("origin bytes: gallery (new: panorama) {gallery}, about + home again {again}");
    assert!(
        again < 16 * 1024,
        "pages whose bytes are in the HTTP cache cost the origin {again} bytes"
    );
    v.close().await;
    whis.stop().await;
    Ok(())
}

/// nginx (Debian's) serving the ordinary site as an operator's existing
/// origin would: ETag and Last-Modified, no Cache-Control. Its access log
/// says what it sent. Stopped (by its pid) when dropped.
struct Nginx {
    child: std::process::Child,
    dir: TempDir,
    port: u16,
}

impl Nginx {
    fn start() -> Result<Nginx> {
        let dir = TempDir::new("nginx");
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let d = dir.path().display();
        let conf = format!(
            r#"daemon off;
master_process off;
pid {d}/nginx.pid;
error_log {d}/error.log;
events {{ }}
http {{
    include /etc/nginx/mime.types;
    log_format sent '$uri $status $body_bytes_sent';
    access_log {d}/access.log sent;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    server {{
        listen 127.0.0.1:{port};
        root {root};
    }}
}}
"#,
            root = site().display()
        );
        std::fs::write(dir.path().join("nginx.conf"), conf)?;
        let child = std::process::Command::new("nginx")
            .arg("-c")
            .arg(dir.path().join("nginx.conf"))
            .arg("-p")
            .arg(dir.path())
            .stderr(std::process::Stdio::null())
            .spawn()
            .map_err(|e| format!("nginx (apt-get install -y nginx) did not start: {e}"))?;
        Ok(Nginx { child, dir, port })
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Body bytes nginx has sent, by its access log.
    fn sent(&self) -> u64 {
        std::fs::read_to_string(self.dir.path().join("access.log"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_front_of_an_existing_origin_whis_never_sends_more_than_it_would() -> Result<()> {
    let _one = serial().await;
    init_logs();
    // Without Whis: visitors talk to nginx directly.
    let nginx = Nginx::start()?;
    let url = nginx.url();
    eventually(Duration::from_secs(10), "nginx listens", || {
        std::net::TcpStream::connect(("127.0.0.1", nginx.port)).is_ok()
    })
    .await?;
    browse_and_come_back(&url).await?;
    let without = nginx.sent();
    // With Whis in front of the same nginx (reverse proxy): what crosses the
    // site's uplink to visitors is whis's sending now.
    let whis = whis::start({
        let mut c = whis::Config::for_root(site());
        c.origin = whis::config::OriginConfig::Proxy { base: url.clone() };
        c
    })
    .await?;
    browse_and_come_back(&whis.url()).await?;
    let with = origin_bytes(&whis);
    let own = whis
        .state
        .metrics
        .own_bytes
        .load(std::sync::atomic::Ordering::Relaxed);
    whis.stop().await;
    eprintln!("to visitors: nginx alone {without} bytes; whis in front {with} of the site and {own} of its own");
    assert!(
        with <= without,
        "in front of nginx, Whis sent visitors {with} bytes of the site; nginx alone {without}"
    );
    assert!((with + own) as f64 <= without as f64 * 1.03);
    Ok(())
}
