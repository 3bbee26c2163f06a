//! Real headless Chromium visitors (separate processes, separate profiles)
//! against a real whis on 127.0.0.1:0 with workers off. Every claim about
//! where bytes came from is checked against the origin's own counter.

use std::time::Duration;

use sha2::Digest as _;

use e2e::*;

/// Every `<img>` has a source and decoded to a real picture.
const IMAGES_DONE: &str = "(() => { const imgs = [...document.querySelectorAll('#gallery img')]; \
    return imgs.length > 0 && imgs.every(i => i.getAttribute('src') && i.complete && i.naturalWidth > 0) })()";

/// Paths of the gallery's images, as the page lists them.
async fn gallery_images(v: &Visitor) -> Result<Vec<String>> {
    v.eval("[...document.querySelectorAll('#gallery img')].map(i => new URL(i.src).pathname)")
        .await
}

/// Bytes of the files behind `paths` on disk.
fn disk_bytes(paths: &[String]) -> u64 {
    bytes_on_disk(&demo_site(), paths)
}

/// Load the gallery and wait until every image is on screen and the agent joined.
async fn load_gallery(v: &Visitor, url: &str) -> Result<()> {
    v.goto(&format!("{url}/gallery.html")).await?;
    v.wait_for(IMAGES_DONE, Duration::from_secs(60)).await?;
    v.wait_for("!!window.whis", Duration::from_secs(10)).await?;
    v.eval::<serde_json::Value>("window.whis.ready()").await?;
    Ok(())
}

/// Fetch each path through the page's service worker and compare with disk.
async fn assert_byte_identical(v: &Visitor, paths: &[String]) -> Result<()> {
    for p in paths {
        let got: Fetched = v.eval(&fetch_digest_js(p, "{}")).await?;
        let want = sha256_file(&demo_site().join(p.trim_start_matches('/')))?;
        assert_eq!(got.status, 200, "{p}");
        assert_eq!(got.sha256, want, "{p} differs from the file on disk");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_visitor_gets_the_gallery_from_the_first() -> Result<()> {
    let _one = serial().await;
    init_logs();
    let whis = start_whis(&demo_site(), |_| {}).await?;
    let url = whis.url();

    let a = Visitor::launch("a").await?;
    load_gallery(&a, &url).await?;
    let images = gallery_images(&a).await?;
    let image_bytes = disk_bytes(&images);
    assert!(
        image_bytes > 2_000_000,
        "the gallery is worth sharing ({image_bytes} bytes)"
    );
    // A holds every piece and has told the tracker.
    a.wait_seeding(images.len(), Duration::from_secs(30))
        .await?;

    let before_b = origin_bytes(&whis);
    let b = Visitor::launch("b").await?;
    load_gallery(&b, &url).await?;
    let stats = b.stats().await?;
    let origin_for_b = origin_bytes(&whis) - before_b;
    eprintln!("b: {stats:?}; origin sent {origin_for_b} bytes while b loaded {image_bytes} bytes of images");
    assert!(stats.peers >= 1, "b is connected to a");
    assert!(
        stats.bytes_from_peers * 2 > image_bytes,
        "most of b's image bytes came from a: {} of {image_bytes}",
        stats.bytes_from_peers
    );
    // The origin's own count: it did not send the images a second time.
    assert!(
        origin_for_b * 2 < image_bytes,
        "origin sent {origin_for_b} bytes for b, the images are {image_bytes}"
    );
    assert_eq!(stats.rejected_pieces, 0);
    assert_byte_identical(&b, &images).await?;

    a.close().await;
    b.close().await;
    whis.stop().await;
    Ok(())
}

/// JS that flips one byte in every piece this visitor holds, on disk and in
/// memory: a peer that serves poisoned pieces while believing they are fine.
const POISON_STORE_JS: &str = r#"(async () => {
  const db = await new Promise((res, rej) => { const r = indexedDB.open('whis'); r.onsuccess = () => res(r.result); r.onerror = () => rej(r.error) });
  const tx = db.transaction('pieces', 'readwrite');
  const store = tx.objectStore('pieces');
  let n = 0;
  await new Promise((res, rej) => {
    const c = store.openCursor();
    c.onsuccess = () => { const cur = c.result; if (!cur) return res(); const v = cur.value; const b = new Uint8Array(v.data.slice(0)); b[100] ^= 0xff; v.data = b.buffer; cur.update(v); n++; cur.continue() };
    c.onerror = () => rej(c.error);
  });
  await new Promise((res) => { tx.oncomplete = res });
  // And the copies its agent keeps in memory to serve.
  for (const d of window.whis.agent.hot.map.values()) { new Uint8Array(d)[100] ^= 0xff; n++ }
  return n;
})()"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poisoned_peer_costs_itself_the_connection_not_the_visitor_the_page() -> Result<()> {
    let _one = serial().await;
    init_logs();
    let whis = start_whis(&demo_site(), |_| {}).await?;
    let url = whis.url();
    let evil = Visitor::launch("evil").await?;
    load_gallery(&evil, &url).await?;
    let images = gallery_images(&evil).await?;
    evil.wait_seeding(images.len(), Duration::from_secs(30))
        .await?;
    let poisoned: u64 = evil.eval(POISON_STORE_JS).await?;
    assert!(poisoned > 10, "poisoned {poisoned} pieces");

    let b = Visitor::launch("b").await?;
    load_gallery(&b, &url).await?;
    assert_byte_identical(&b, &images).await?;
    let stats = b.stats().await?;
    eprintln!("b: {stats:?}");
    assert!(
        stats.rejected_pieces > 0,
        "b saw the poisoned pieces and refused them"
    );
    assert_eq!(
        stats.bytes_from_peers, 0,
        "no byte from the poisoned peer was used"
    );
    // The poisoner was dropped after its first bad piece.
    b.wait_for(
        "window.whis.stats().then(s => s.peers === 0)",
        Duration::from_secs(10),
    )
    .await?;
    assert!(
        whis.state.signaling().hub.counters().pieces_rejected > 0,
        "b reported the rejection to the server"
    );
    evil.close().await;
    b.close().await;
    whis.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seeder_leaving_mid_transfer_leaves_the_page_whole() -> Result<()> {
    let _one = serial().await;
    init_logs();
    let whis = start_whis(&demo_site(), |_| {}).await?;
    let url = whis.url();
    let a = Visitor::launch("a").await?;
    load_gallery(&a, &url).await?;
    let images = gallery_images(&a).await?;
    a.wait_seeding(images.len(), Duration::from_secs(30))
        .await?;

    let b = Visitor::launch("b").await?;
    b.goto(&format!("{url}/gallery.html")).await?;
    // As soon as b has its first piece from a, a goes away.
    b.wait_for(
        "window.whis && window.whis.stats().then(s => s.bytesFromPeers > 0)",
        Duration::from_secs(30),
    )
    .await?;
    a.close().await;
    b.wait_for(IMAGES_DONE, Duration::from_secs(60)).await?;
    assert_byte_identical(&b, &images).await?;
    let stats = b.stats().await?;
    eprintln!("b: {stats:?}");
    assert!(stats.bytes_from_origin > 0, "the rest came from the origin");
    b.close().await;
    whis.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_whis_server_down_a_returning_visitor_still_gets_the_site() -> Result<()> {
    let _one = serial().await;
    init_logs();
    let whis = start_whis(&demo_site(), |_| {}).await?;
    let addr = whis.addr;
    let profile = TempDir::new("returning");
    let v = Visitor::launch_in("returning", profile.path()).await?;
    load_gallery(&v, &whis.url()).await?;
    v.close().await;
    whis.stop().await;

    // Same address, but only the site is served: /whis/* is gone (404), as when
    // the Whis process is down behind a front proxy that still serves the site.
    let plain = start_whis(&demo_site(), |c| {
        c.listen = addr;
        c.origin_only = true;
    })
    .await?;
    let v = Visitor::launch_in("returning", profile.path()).await?;
    v.goto(&format!("{}/gallery.html", plain.url())).await?;
    v.wait_for(IMAGES_DONE, Duration::from_secs(60)).await?;
    let images = gallery_images(&v).await?;
    assert_byte_identical(&v, &images).await?;
    v.close().await;

    // And a first-time visitor, who never had the service worker.
    let fresh = Visitor::launch("fresh").await?;
    fresh.goto(&format!("{}/gallery.html", plain.url())).await?;
    fresh.wait_for(IMAGES_DONE, Duration::from_secs(60)).await?;
    fresh.close().await;
    plain.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn range_requests_and_video_seeking_through_the_service_worker() -> Result<()> {
    let _one = serial().await;
    init_logs();
    let whis = start_whis(&demo_site(), |_| {}).await?;
    let url = whis.url();
    let clip = demo_site().join("media/clip.webm");
    let bytes = std::fs::read(&clip)?;
    let a = Visitor::launch("a").await?;
    a.goto(&format!("{url}/video.html")).await?;
    a.wait_for(
        "document.querySelector('video').readyState >= 2",
        Duration::from_secs(60),
    )
    .await?;
    // The whole clip through a's service worker, so a holds every piece.
    let whole: Fetched = a.eval(&fetch_digest_js("/media/clip.webm", "{}")).await?;
    assert_eq!(whole.sha256, hex(&sha2::Sha256::digest(&bytes)));

    a.wait_seeding(1, Duration::from_secs(30)).await?;

    // B opens a page without the video and waits until it is connected to
    // A, so the ranges below are pieces it does not hold yet and A does.
    let b = Visitor::launch("b").await?;
    b.goto(&format!("{url}/index.html")).await?;
    b.wait_connected(Duration::from_secs(30)).await?;
    let (start, end) = (1_000_000usize, 1_299_999usize);
    let part: Fetched = b
        .eval(&fetch_digest_js(
            "/media/clip.webm",
            &format!("{{ Range: 'bytes={start}-{end}' }}"),
        ))
        .await?;
    assert_eq!(part.status, 206);
    assert_eq!(
        part.content_range.as_deref(),
        Some(format!("bytes {start}-{end}/{}", bytes.len()).as_str())
    );
    assert_eq!(part.length as usize, end - start + 1);
    assert_eq!(part.sha256, hex(&sha2::Sha256::digest(&bytes[start..=end])));
    // A suffix range, served from pieces.
    let tail: Fetched = b
        .eval(&fetch_digest_js(
            "/media/clip.webm",
            "{ Range: 'bytes=-5000' }",
        ))
        .await?;
    assert_eq!(tail.status, 206);
    assert_eq!(
        tail.sha256,
        hex(&sha2::Sha256::digest(&bytes[bytes.len() - 5000..]))
    );
    let stats = b.stats().await?;
    eprintln!("b: {stats:?}");
    assert!(
        stats.bytes_from_peers > 0 && stats.bytes_from_peers >= stats.bytes_from_origin,
        "b's ranges came mostly from a"
    );
    // The player on the video page: the browser issues its own Range
    // requests, and seeking near the end plays.
    b.goto(&format!("{url}/video.html")).await?;
    b.wait_for(
        "document.querySelector('video').readyState >= 2",
        Duration::from_secs(60),
    )
    .await?;
    b.eval::<bool>(
        "new Promise(r => { const v = document.querySelector('video'); v.addEventListener('seeked', () => r(true), { once: true }); v.currentTime = 17 })",
    )
    .await?;
    b.wait_for(
        "document.querySelector('video').readyState >= 2",
        Duration::from_secs(30),
    )
    .await?;
    a.close().await;
    b.close().await;
    whis.stop().await;
    Ok(())
}
