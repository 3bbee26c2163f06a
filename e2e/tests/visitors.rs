//! Real headless Chromium visitors (separate processes, separate profiles)
//! against a real whis on 127.0.0.1:0 with workers off. Every claim about
//! where bytes came from is checked against the origin's own counter.

use std::time::Duration;

use e2e::*;

/// Every `<img>` has a source and decoded to a real picture.
const IMAGES_DONE: &str = "(() => { const imgs = [...document.querySelectorAll('#gallery img')]; \
    return imgs.length > 0 && imgs.every(i => i.getAttribute('src') && i.complete && i.naturalWidth > 0) })()";

/// Paths of the gallery's images, as the page lists them.
async fn gallery_images(v: &Visitor) -> Result<Vec<String>> {
    v.eval("[...document.querySelectorAll('#gallery img')].map(i => new URL(i.src).pathname)").await
}

/// Bytes of the files behind `paths` on disk.
fn disk_bytes(paths: &[String]) -> u64 {
    paths
        .iter()
        .map(|p| std::fs::metadata(demo_site().join(p.trim_start_matches('/'))).map(|m| m.len()).unwrap_or(0))
        .sum()
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
    assert!(image_bytes > 2_000_000, "the gallery is worth sharing ({image_bytes} bytes)");
    // A holds the pieces and has told the tracker.
    a.wait_for("window.whis.stats().then(s => s.verifiedPieces > 0)", Duration::from_secs(20))
        .await?;
    tokio::time::sleep(Duration::from_millis(500)).await;

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
