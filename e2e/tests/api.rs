//! The whis HTTP API against a real server on 127.0.0.1:0, with a real HTTP
//! client and a real SSE reader (raw sockets): signaling, tracker, manifest,
//! the static origin's HTTP semantics, proxy mode, and every bad input with
//! its status and JSON error code (docs/protocol.md, "Errors").

use std::time::Duration;

use e2e::*;
use sha2::{Digest, Sha256};
use whis::config::OriginConfig;

const T: Duration = Duration::from_secs(5);

/// A site with files of known content.
fn site() -> TempDir {
    let dir = TempDir::new("site");
    let big: Vec<u8> = (0..1_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(dir.path().join("big.bin"), &big).expect("write");
    std::fs::write(dir.path().join("small.txt"), "tiny").expect("write");
    std::fs::write(
        dir.path().join("index.html"),
        "<!doctype html><title>t</title>",
    )
    .expect("write");
    dir
}

struct Peer {
    id: String,
    token: String,
    swarm: String,
}

async fn join(url: &str, body: &str) -> Result<Peer> {
    let r = http_raw(
        "POST",
        &format!("{url}/whis/join"),
        &[("content-type", "application/json")],
        body.as_bytes(),
    )
    .await?;
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json()?;
    Ok(Peer {
        id: v["peer_id"].as_str().ok_or("peer_id")?.into(),
        token: v["token"].as_str().ok_or("token")?.into(),
        swarm: v["swarm_id"].as_str().ok_or("swarm_id")?.into(),
    })
}

async fn post(url: &str, path: &str, token: Option<&str>, body: &str) -> Result<HttpResponse> {
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut headers = vec![("content-type", "application/json")];
    if let Some(a) = &auth {
        headers.push(("authorization", a.as_str()));
    }
    http_raw("POST", &format!("{url}{path}"), &headers, body.as_bytes()).await
}

/// Status and `error` code of an answer that must be a JSON error.
fn error_of(r: &HttpResponse) -> (u16, String) {
    let code = r
        .json()
        .ok()
        .and_then(|v| v["error"].as_str().map(str::to_string))
        .unwrap_or_else(|| format!("<not a JSON error: {}>", r.text()));
    assert!(
        r.json().map(|v| v["message"].is_string()).unwrap_or(false),
        "has a message: {}",
        r.text()
    );
    (r.status, code)
}

fn metric(whis: &whis::Running, name: &str) -> u64 {
    whis::metrics::render(&whis.state)
        .lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_events_signal_announce_leave() -> Result<()> {
    let site = site();
    let whis = start_whis(site.path(), |_| {}).await?;
    let url = whis.url();
    let a = join(&url, "{}").await?;
    let b = join(&url, r#"{"scope": "/"}"#).await?;
    assert_eq!(a.swarm, b.swarm);
    let mut events =
        SseReader::open(&url, &format!("/whis/events?token={}", b.token), None).await?;
    assert_eq!(events.status, 200);
    let hello = events.next_of("hello", T).await.ok_or("hello")?;
    assert!(hello.data.contains(&b.id));

    let r = post(
        &url,
        "/whis/signal",
        Some(&a.token),
        &format!(
            r#"{{"to":"{}","data":{{"type":"offer","sdp":"v=0"}}}}"#,
            b.id
        ),
    )
    .await?;
    assert_eq!(r.status, 200, "{}", r.text());
    let sig = events.next_of("signal", T).await.ok_or("signal")?;
    let v: serde_json::Value = serde_json::from_str(&sig.data)?;
    assert_eq!(v["from"], a.id.as_str());
    assert_eq!(v["data"]["sdp"], "v=0");
    assert!(sig.id.is_some(), "signals carry an id for resume");
    assert_eq!(metric(&whis, "whis_signals_relayed_total"), 1);
    assert_eq!(metric(&whis, "whis_peers"), 2);

    // The tracker: a holds a resource, b wants it, b is pointed at a.
    let rid = "ab".repeat(32);
    let r = post(&url, "/whis/announce", Some(&a.token), &format!(r#"{{"have":["{rid}"],"paths":{{"{rid}":"/big.bin"}},"bytes":{{"peer":10,"worker":0,"origin":5}}}}"#)).await?;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = post(
        &url,
        "/whis/announce",
        Some(&b.token),
        &format!(r#"{{"want":["{rid}"]}}"#),
    )
    .await?;
    assert_eq!(r.json()?["peers"][0], a.id.as_str());
    assert!(whis::metrics::render(&whis.state).contains("whis_bytes_total{source=\"peer\"} 10"));

    let r = post(&url, &format!("/whis/leave?token={}", a.token), None, "").await?;
    assert_eq!(r.status, 200);
    let left = events.next_of("peer-left", T).await.ok_or("peer-left")?;
    assert!(left.data.contains(&a.id));
    whis.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconnecting_stream_resumes_with_last_event_id() -> Result<()> {
    let site = site();
    let whis = start_whis(site.path(), |_| {}).await?;
    let url = whis.url();
    let a = join(&url, "{}").await?;
    let b = join(&url, "{}").await?;
    let mut first = SseReader::open(&url, &format!("/whis/events?token={}", b.token), None).await?;
    post(
        &url,
        "/whis/signal",
        Some(&a.token),
        &format!(r#"{{"to":"{}","data":{{"n":1}}}}"#, b.id),
    )
    .await?;
    let one = first.next_of("signal", T).await.ok_or("first signal")?;
    drop(first);
    for n in 2..=4 {
        post(
            &url,
            "/whis/signal",
            Some(&a.token),
            &format!(r#"{{"to":"{}","data":{{"n":{n}}}}}"#, b.id),
        )
        .await?;
    }
    let mut again = SseReader::open(
        &url,
        &format!("/whis/events?token={}", b.token),
        one.id.as_deref(),
    )
    .await?;
    let mut got = Vec::new();
    while let Some(e) = again.next_of("signal", Duration::from_secs(2)).await {
        got.push(serde_json::from_str::<serde_json::Value>(&e.data)?["data"]["n"].clone());
    }
    assert_eq!(
        got,
        [2, 3, 4].map(serde_json::Value::from),
        "exactly the missed signals, in order"
    );
    whis.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manifests_hash_every_piece_once_per_version() -> Result<()> {
    let site = site();
    let whis = start_whis(site.path(), |c| c.piece_size = 65536).await?;
    let url = whis.url();
    let r = http_raw(
        "GET",
        &format!("{url}/whis/manifest?path=/big.bin"),
        &[],
        b"",
    )
    .await?;
    assert_eq!(r.status, 200, "{}", r.text());
    let m = r.json()?;
    let data = std::fs::read(site.path().join("big.bin"))?;
    let pieces: Vec<String> = data
        .chunks(65536)
        .map(|c| hex(&Sha256::digest(c)))
        .collect();
    assert_eq!(m["pieces"], serde_json::json!(pieces));
    assert_eq!(m["size"], data.len());
    let mut h = Sha256::new();
    h.update((data.len() as u64).to_be_bytes());
    h.update(65536u32.to_be_bytes());
    for c in data.chunks(65536) {
        h.update(Sha256::digest(c));
    }
    assert_eq!(m["id"], hex(&h.finalize()));
    let computed = metric(&whis, "whis_manifests_computed_total");
    let again = http_raw(
        "GET",
        &format!("{url}/whis/manifest?path=/big.bin"),
        &[],
        b"",
    )
    .await?;
    assert_eq!(again.json()?["id"], m["id"]);
    assert_eq!(
        metric(&whis, "whis_manifests_computed_total"),
        computed,
        "not hashed twice"
    );
    // A new version of the file is a new id. Same size, so only the mtime
    // tells them apart: give the new version a different one explicitly
    // rather than hope the clock moved past the file system's granularity.
    let file = site.path().join("big.bin");
    let old_mtime = std::fs::metadata(&file)?.modified()?;
    let mut changed = data.clone();
    changed[0] ^= 1;
    std::fs::write(&file, &changed)?;
    std::fs::File::options()
        .write(true)
        .open(&file)?
        .set_modified(old_mtime + Duration::from_secs(1))?;
    let newer = http_raw(
        "GET",
        &format!("{url}/whis/manifest?path=/big.bin"),
        &[],
        b"",
    )
    .await?;
    assert_ne!(newer.json()?["id"], m["id"]);
    whis.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_static_origin_speaks_http_ranges_and_counts_its_bytes() -> Result<()> {
    let site = site();
    let whis = start_whis(site.path(), |_| {}).await?;
    let url = format!("{}/big.bin", whis.url());
    let data = std::fs::read(site.path().join("big.bin"))?;
    let before = origin_bytes(&whis);
    let full = http_raw("GET", &url, &[], b"").await?;
    assert_eq!(full.status, 200);
    assert_eq!(full.body, data);
    let etag = full.header("etag").ok_or("etag")?.to_string();
    assert!(full.header("last-modified").is_some());
    assert_eq!(full.header("cache-control"), Some("public, max-age=300"));
    assert_eq!(full.header("accept-ranges"), Some("bytes"));

    let part = http_raw("GET", &url, &[("range", "bytes=0-99")], b"").await?;
    assert_eq!(part.status, 206);
    assert_eq!(
        part.header("content-range"),
        Some(format!("bytes 0-99/{}", data.len()).as_str())
    );
    assert_eq!(part.body, data[..100]);
    let suffix = http_raw("GET", &url, &[("range", "bytes=-10")], b"").await?;
    assert_eq!(suffix.body, data[data.len() - 10..]);
    let past = http_raw(
        "GET",
        &url,
        &[("range", &format!("bytes={}-", data.len()))],
        b"",
    )
    .await?;
    assert_eq!(past.status, 416);
    assert_eq!(
        past.header("content-range"),
        Some(format!("bytes */{}", data.len()).as_str())
    );
    let stale = http_raw(
        "GET",
        &url,
        &[("range", "bytes=0-9"), ("if-range", "\"old\"")],
        b"",
    )
    .await?;
    assert_eq!(
        stale.status, 200,
        "If-Range with another ETag gets the whole file"
    );
    let fresh = http_raw(
        "GET",
        &url,
        &[("range", "bytes=0-9"), ("if-range", &etag)],
        b"",
    )
    .await?;
    assert_eq!(fresh.status, 206);
    let cached = http_raw("GET", &url, &[("if-none-match", &etag)], b"").await?;
    assert_eq!(cached.status, 304);
    let head = http_raw("HEAD", &url, &[], b"").await?;
    assert_eq!(
        head.header("content-length"),
        Some(data.len().to_string().as_str())
    );
    let sent = 2 * data.len() + 100 + 10 + 10;
    assert_eq!(
        origin_bytes(&whis) - before,
        sent as u64,
        "the counter is exactly the body bytes sent"
    );
    let page = http_raw("GET", &format!("{}/", whis.url()), &[], b"").await?;
    assert_eq!(
        page.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    whis.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_mode_streams_the_origin_and_hashes_what_it_proxies() -> Result<()> {
    let site = site();
    let upstream = start_whis(site.path(), |c| c.origin_only = true).await?;
    let front = start_whis(site.path(), |c| {
        c.origin = OriginConfig::Proxy {
            base: upstream.url(),
        }
    })
    .await?;
    let data = std::fs::read(site.path().join("big.bin"))?;
    let r = http_raw("GET", &format!("{}/big.bin", front.url()), &[], b"").await?;
    assert_eq!(r.status, 200);
    assert_eq!(r.body, data);
    let part = http_raw(
        "GET",
        &format!("{}/big.bin", front.url()),
        &[("range", "bytes=10-19")],
        b"",
    )
    .await?;
    assert_eq!(part.status, 206);
    assert_eq!(part.body, data[10..20]);
    let direct = start_whis(site.path(), |_| {}).await?;
    let via_proxy = http_raw(
        "GET",
        &format!("{}/whis/manifest?path=/big.bin", front.url()),
        &[],
        b"",
    )
    .await?;
    let on_disk = http_raw(
        "GET",
        &format!("{}/whis/manifest?path=/big.bin", direct.url()),
        &[],
        b"",
    )
    .await?;
    assert_eq!(via_proxy.json()?["pieces"], on_disk.json()?["pieces"]);
    assert_eq!(via_proxy.json()?["id"], on_disk.json()?["id"]);

    // The body fetched to hash it answers the next Range requests for this
    // version itself: the upstream does not send those bytes again.
    let etag = via_proxy.json()?["etag"]
        .as_str()
        .ok_or("the manifest names the ETag")?
        .to_string();
    let upstream_before = origin_bytes(&upstream);
    let front_before = origin_bytes(&front);
    let piece = http_raw(
        "GET",
        &format!("{}/big.bin", front.url()),
        &[("range", "bytes=100-1099"), ("if-range", &etag)],
        b"",
    )
    .await?;
    assert_eq!(piece.status, 206);
    assert_eq!(piece.body, data[100..1100]);
    assert_eq!(piece.header("etag"), Some(etag.as_str()));
    assert_eq!(
        origin_bytes(&upstream),
        upstream_before,
        "served from the hashed body"
    );
    assert_eq!(
        origin_bytes(&front) - front_before,
        1000,
        "and counted as sent by the origin side"
    );
    // A Range past the end: 416 with the size, from the hashed body too.
    let past = http_raw(
        "GET",
        &format!("{}/big.bin", front.url()),
        &[("range", "bytes=99999999-")],
        b"",
    )
    .await?;
    assert_eq!(error_of(&past), (416, "range_not_satisfiable".into()));
    assert_eq!(
        past.header("content-range"),
        Some(format!("bytes */{}", data.len()).as_str())
    );
    assert_eq!(origin_bytes(&upstream), upstream_before);
    // If-Range names another version: the whole (current) file, per HTTP.
    let stale = http_raw(
        "GET",
        &format!("{}/big.bin", front.url()),
        &[
            ("range", "bytes=0-9"),
            ("if-range", "\"some-other-version\""),
        ],
        b"",
    )
    .await?;
    assert_eq!(
        stale.status, 200,
        "If-Range no longer holds: the whole file"
    );
    assert_eq!(stale.body, data);
    assert_eq!(origin_bytes(&upstream), upstream_before);
    // A query string may name something else: the upstream answers.
    let query = http_raw("GET", &format!("{}/big.bin?v=2", front.url()), &[], b"").await?;
    assert_eq!(query.status, 200);
    assert!(origin_bytes(&upstream) > upstream_before);
    let missing = http_raw(
        "GET",
        &format!("{}/whis/manifest?path=/nope.bin", front.url()),
        &[],
        b"",
    )
    .await?;
    assert_eq!(error_of(&missing), (404, "not_found".into()));
    front.stop().await;
    direct.stop().await;
    upstream.stop().await;
    Ok(())
}

/// A client that takes the headers of a large kept proxied body and goes
/// away: the origin counter holds what the connection took (at most the
/// socket buffers), not the whole body. It used to count a kept body as one
/// chunk the moment the answer started.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abandoned_download_counts_what_the_connection_took() -> Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let site = site();
    const SIZE: usize = 32 * 1024 * 1024;
    std::fs::write(site.path().join("huge.bin"), vec![5u8; SIZE])?;
    let upstream = start_whis(site.path(), |c| c.origin_only = true).await?;
    let front = start_whis(site.path(), |c| {
        c.origin = OriginConfig::Proxy {
            base: upstream.url(),
        }
    })
    .await?;
    // Hashing it keeps the body (it is under the 64 MiB a kept body may be).
    let m = http_raw(
        "GET",
        &format!("{}/whis/manifest?path=/huge.bin", front.url()),
        &[],
        b"",
    )
    .await?;
    assert_eq!(m.status, 200, "{}", m.text());
    let upstream_before = origin_bytes(&upstream);
    let before = origin_bytes(&front);
    let mut conn = tokio::net::TcpStream::connect(front.addr).await?;
    conn.write_all(b"GET /huge.bin HTTP/1.1\r\nHost: x\r\n\r\n")
        .await?;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        conn.read_exact(&mut byte).await?;
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).to_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains(&format!("content-length: {SIZE}")), "{head}");
    // Far more than any socket buffer on loopback, far less than the body.
    let bound = (SIZE / 4) as u64;
    let taken = origin_bytes(&front) - before;
    assert!(
        taken < bound,
        "{taken} bytes counted for a client that read none"
    );
    drop(conn);
    // Wait until the server has stopped sending (the counter no longer moves).
    let mut last = u64::MAX;
    eventually(Duration::from_secs(10), "the counter settles", || {
        let now = origin_bytes(&front);
        std::mem::replace(&mut last, now) == now
    })
    .await?;
    let taken = origin_bytes(&front) - before;
    assert!(
        taken < bound,
        "{taken} bytes counted for an abandoned download"
    );
    assert_eq!(
        origin_bytes(&upstream),
        upstream_before,
        "answered from the kept body"
    );
    front.stop().await;
    upstream.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_input_gets_a_clear_json_error_and_breaks_nothing() -> Result<()> {
    let site = site();
    let whis = start_whis(site.path(), |c| {
        c.peers_per_swarm = 2;
        c.max_peers = 3;
    })
    .await?;
    let url = whis.url();
    let a = join(&url, "{}").await?;
    let b = join(&url, "{}").await?;
    let c = join(&url, "{}").await?; // third visitor: a second swarm
    assert_ne!(c.swarm, a.swarm);
    let mut b_events =
        SseReader::open(&url, &format!("/whis/events?token={}", b.token), None).await?;

    let big = format!(
        r#"{{"to":"{}","data":{{"x":"{}"}}}}"#,
        b.id,
        "x".repeat(70_000)
    );
    let cases: Vec<(&str, HttpResponse, u16, &str)> = vec![
        (
            "malformed JSON",
            post(&url, "/whis/join", None, "{bad").await?,
            400,
            "bad_json",
        ),
        (
            "empty body",
            post(&url, "/whis/join", None, "").await?,
            400,
            "bad_json",
        ),
        (
            "wrong field type",
            post(&url, "/whis/join", None, r#"{"scope": 5}"#).await?,
            400,
            "bad_json",
        ),
        (
            "unknown field",
            post(&url, "/whis/join", None, r#"{"sneaky": true}"#).await?,
            400,
            "bad_json",
        ),
        (
            "bad scope",
            post(&url, "/whis/join", None, r#"{"scope": "no-slash"}"#).await?,
            400,
            "bad_request",
        ),
        (
            "body over 64 KiB",
            post(&url, "/whis/signal", Some(&a.token), &big).await?,
            413,
            "body_too_large",
        ),
        (
            "chunked body over 64 KiB",
            http_raw(
                "POST",
                &format!("{url}/whis/signal"),
                &[
                    ("authorization", &format!("Bearer {}", a.token)),
                    ("transfer-encoding", "chunked"),
                ],
                &chunked(big.as_bytes()),
            )
            .await?,
            413,
            "body_too_large",
        ),
        (
            "missing token",
            post(
                &url,
                "/whis/signal",
                None,
                &format!(r#"{{"to":"{}","data":{{"n":1}}}}"#, b.id),
            )
            .await?,
            401,
            "missing_token",
        ),
        (
            "forged token",
            post(
                &url,
                "/whis/signal",
                Some("forged-token"),
                &format!(r#"{{"to":"{}","data":{{"n":1}}}}"#, b.id),
            )
            .await?,
            401,
            "invalid_token",
        ),
        (
            "peer id as token",
            post(
                &url,
                "/whis/signal",
                Some(&a.id),
                &format!(r#"{{"to":"{}","data":{{"n":1}}}}"#, b.id),
            )
            .await?,
            401,
            "invalid_token",
        ),
        (
            "other swarm",
            post(
                &url,
                "/whis/signal",
                Some(&a.token),
                &format!(r#"{{"to":"{}","data":{{"n":1}}}}"#, c.id),
            )
            .await?,
            403,
            "other_swarm",
        ),
        (
            "to nobody",
            post(
                &url,
                "/whis/signal",
                Some(&a.token),
                r#"{"to":"pNobody","data":{"n":1}}"#,
            )
            .await?,
            404,
            "unknown_peer",
        ),
        (
            "to itself",
            post(
                &url,
                "/whis/signal",
                Some(&a.token),
                &format!(r#"{{"to":"{}","data":{{"n":1}}}}"#, a.id),
            )
            .await?,
            400,
            "bad_request",
        ),
        (
            "signal data not an object",
            post(
                &url,
                "/whis/signal",
                Some(&a.token),
                &format!(r#"{{"to":"{}","data":"text"}}"#, b.id),
            )
            .await?,
            400,
            "bad_request",
        ),
        (
            "signal data over 32 KiB",
            post(
                &url,
                "/whis/signal",
                Some(&a.token),
                &format!(
                    r#"{{"to":"{}","data":{{"x":"{}"}}}}"#,
                    b.id,
                    "x".repeat(33_000)
                ),
            )
            .await?,
            400,
            "bad_request",
        ),
        (
            "announce bad id",
            post(&url, "/whis/announce", Some(&a.token), r#"{"have":["zz"]}"#).await?,
            400,
            "bad_request",
        ),
        (
            "announce bad path",
            post(
                &url,
                "/whis/announce",
                Some(&a.token),
                &format!(r#"{{"paths":{{"{}":"/../x"}}}}"#, "ab".repeat(32)),
            )
            .await?,
            400,
            "bad_path",
        ),
        (
            "events without token",
            http_raw("GET", &format!("{url}/whis/events"), &[], b"").await?,
            401,
            "missing_token",
        ),
        (
            "events forged token",
            http_raw("GET", &format!("{url}/whis/events?token=forged"), &[], b"").await?,
            401,
            "invalid_token",
        ),
        (
            "too many peers",
            post(&url, "/whis/join", None, "{}").await?,
            503,
            "server_full",
        ),
        (
            "worker without secret",
            post(
                &url,
                "/whis/join",
                None,
                r#"{"role":"worker","swarm":"s1"}"#,
            )
            .await?,
            403,
            "forbidden",
        ),
        (
            "wrong method",
            http_raw("GET", &format!("{url}/whis/join"), &[], b"").await?,
            405,
            "method_not_allowed",
        ),
        (
            "worker page without secret",
            http_raw("GET", &format!("{url}/whis/worker.html"), &[], b"").await?,
            403,
            "forbidden",
        ),
        (
            "origin ..",
            http_raw("GET", &format!("{url}/../etc/passwd"), &[], b"").await?,
            400,
            "bad_path",
        ),
        (
            "origin %2e%2e",
            http_raw("GET", &format!("{url}/%2e%2e/%2e%2e/etc/passwd"), &[], b"").await?,
            400,
            "bad_path",
        ),
        (
            "origin double-encoded",
            http_raw("GET", &format!("{url}/%252e%252e/etc/passwd"), &[], b"").await?,
            400,
            "bad_path",
        ),
        (
            "origin backslash",
            http_raw("GET", &format!("{url}/..%5c..%5cetc"), &[], b"").await?,
            400,
            "bad_path",
        ),
        (
            "origin missing",
            http_raw("GET", &format!("{url}/nope.html"), &[], b"").await?,
            404,
            "not_found",
        ),
        (
            "origin POST",
            http_raw("POST", &format!("{url}/big.bin"), &[], b"x").await?,
            405,
            "method_not_allowed",
        ),
        (
            "manifest ..",
            http_raw(
                "GET",
                &format!("{url}/whis/manifest?path=/../etc/passwd"),
                &[],
                b"",
            )
            .await?,
            400,
            "bad_path",
        ),
        (
            "manifest %2e%2e",
            http_raw(
                "GET",
                &format!("{url}/whis/manifest?path=/%252e%252e/etc/passwd"),
                &[],
                b"",
            )
            .await?,
            400,
            "bad_path",
        ),
        (
            "manifest relative",
            http_raw(
                "GET",
                &format!("{url}/whis/manifest?path=big.bin"),
                &[],
                b"",
            )
            .await?,
            400,
            "bad_path",
        ),
        (
            "manifest no path",
            http_raw("GET", &format!("{url}/whis/manifest"), &[], b"").await?,
            400,
            "bad_request",
        ),
        (
            "manifest missing file",
            http_raw(
                "GET",
                &format!("{url}/whis/manifest?path=/nope.bin"),
                &[],
                b"",
            )
            .await?,
            404,
            "not_found",
        ),
        (
            "manifest too small",
            http_raw(
                "GET",
                &format!("{url}/whis/manifest?path=/small.txt"),
                &[],
                b"",
            )
            .await?,
            403,
            "ineligible",
        ),
        (
            "manifest of whis itself",
            http_raw(
                "GET",
                &format!("{url}/whis/manifest?path=/whis/client.js"),
                &[],
                b"",
            )
            .await?,
            403,
            "ineligible",
        ),
        (
            "unknown whis route",
            http_raw("GET", &format!("{url}/whis/nothing-here"), &[], b"").await?,
            404,
            "not_found",
        ),
    ];
    for (what, r, status, code) in &cases {
        assert_eq!(error_of(r), (*status, code.to_string()), "{what}");
    }
    // An expired token (after leave) is refused too.
    let full = post(&url, "/whis/join", None, "{}").await?;
    assert_eq!(
        error_of(&full),
        (503, "server_full".into()),
        "the server is still full"
    );
    post(&url, "/whis/leave", Some(&c.token), "").await?;
    let r = post(
        &url,
        "/whis/signal",
        Some(&c.token),
        &format!(r#"{{"to":"{}","data":{{"n":1}}}}"#, a.id),
    )
    .await?;
    assert_eq!(
        error_of(&r),
        (401, "invalid_token".into()),
        "token after leave"
    );

    // Nothing else broke: a real signal still arrives, the server is healthy.
    let ok = post(
        &url,
        "/whis/signal",
        Some(&a.token),
        &format!(r#"{{"to":"{}","data":{{"text":"still here"}}}}"#, b.id),
    )
    .await?;
    assert_eq!(ok.status, 200);
    let sig = b_events
        .next_of("signal", T)
        .await
        .ok_or("signal after the bad inputs")?;
    assert!(sig.data.contains("still here"));
    assert_eq!(
        metric(&whis, "whis_signals_relayed_total"),
        1,
        "no bad input was relayed"
    );
    let health = http_raw("GET", &format!("{url}/whis/health"), &[], b"").await?;
    assert_eq!(health.json()?["status"], "ok");
    whis.stop().await;
    Ok(())
}

fn chunked(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for c in body.chunks(8192) {
        out.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
        out.extend_from_slice(c);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_reader_loses_its_stream_not_the_server_its_memory() -> Result<()> {
    let site = site();
    let whis = start_whis(site.path(), |c| c.sse_queue = 4).await?;
    let url = whis.url();
    let a = join(&url, "{}").await?;
    let b = join(&url, "{}").await?;
    let c = join(&url, "{}").await?;
    // b opens its stream and never reads it.
    let _stalled = SseReader::open(&url, &format!("/whis/events?token={}", b.token), None).await?;
    let mut c_events =
        SseReader::open(&url, &format!("/whis/events?token={}", c.token), None).await?;
    let payload = format!(
        r#"{{"to":"{}","data":{{"y":"{}"}}}}"#,
        b.id,
        "y".repeat(30_000)
    );
    for _ in 0..400 {
        if metric(&whis, "whis_sse_slow_closed_total") > 0 {
            break;
        }
        post(&url, "/whis/signal", Some(&a.token), &payload).await?;
    }
    assert!(
        metric(&whis, "whis_sse_slow_closed_total") >= 1,
        "the stalled stream was closed"
    );
    // Others are unaffected.
    post(
        &url,
        "/whis/signal",
        Some(&a.token),
        &format!(r#"{{"to":"{}","data":{{"text":"hi"}}}}"#, c.id),
    )
    .await?;
    assert!(c_events.next_of("signal", T).await.is_some());
    // b can come back and resume.
    let mut again =
        SseReader::open(&url, &format!("/whis/events?token={}", b.token), Some("0")).await?;
    assert!(again.next_of("signal", T).await.is_some());
    whis.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_only_for_allowed_origins_and_stop_ends_streams() -> Result<()> {
    let site = site();
    let whis = start_whis(site.path(), |c| {
        c.allow_origins = vec!["http://example.test".into()]
    })
    .await?;
    let url = whis.url();
    let pre = http_raw(
        "OPTIONS",
        &format!("{url}/whis/join"),
        &[
            ("origin", "http://example.test"),
            ("access-control-request-method", "POST"),
        ],
        b"",
    )
    .await?;
    // Any 2xx is an "ok status" for a preflight (Fetch standard); actix-cors sends 200.
    assert!((200..300).contains(&pre.status), "{}", pre.status);
    assert_eq!(
        pre.header("access-control-allow-origin"),
        Some("http://example.test")
    );
    let other = http_raw(
        "POST",
        &format!("{url}/whis/join"),
        &[("origin", "http://evil.test")],
        b"{}",
    )
    .await?;
    assert_eq!(other.header("access-control-allow-origin"), None);
    assert_eq!(
        other.status, 200,
        "another origin gets no CORS headers but is not refused (same-origin POSTs carry Origin too)"
    );
    let a = join(&url, "{}").await?;
    let mut events =
        SseReader::open(&url, &format!("/whis/events?token={}", a.token), None).await?;
    events.next_of("hello", T).await.ok_or("hello")?;
    let t0 = std::time::Instant::now();
    whis.stop().await;
    let bye = events.next_event(Duration::from_secs(10)).await;
    assert_eq!(
        bye.map(|e| (e.event, e.data)),
        Some(("going-away".into(), r#"{"retry_ms":2000}"#.into())),
        "the stream hears when to come back"
    );
    assert!(
        events.next_event(Duration::from_secs(10)).await.is_none(),
        "the stream ended"
    );
    assert!(t0.elapsed() < Duration::from_secs(10));
    Ok(())
}

#[tokio::test]
async fn whis_scripts_are_gzipped_on_request_and_site_files_never() -> Result<()> {
    use std::io::Read;
    let site = site();
    let whis = start_whis(site.path(), |_| {}).await?;
    let gzip = [("accept-encoding", "gzip")];
    for path in [
        "/whis/lib.js",
        "/whis/client.js",
        "/whis-sw.js",
        "/whis/dashboard",
    ] {
        let url = format!("{}{path}", whis.url());
        let plain = http_raw("GET", &url, &[], b"").await?;
        assert_eq!(plain.status, 200, "{path}");
        assert_eq!(plain.header("content-encoding"), None, "{path}");
        let packed = http_raw("GET", &url, &gzip, b"").await?;
        assert_eq!(packed.status, 200, "{path}");
        assert_eq!(packed.header("content-encoding"), Some("gzip"), "{path}");
        assert!(packed.body.len() < plain.body.len(), "{path} got smaller");
        let mut inflated = Vec::new();
        flate2::read::GzDecoder::new(&packed.body[..]).read_to_end(&mut inflated)?;
        assert_eq!(inflated, plain.body, "{path} inflates to the same bytes");
    }
    // A site file keeps its bytes as they are: pieces and ranges refer to them.
    let before = origin_bytes(&whis);
    let big = http_raw("GET", &format!("{}/big.bin", whis.url()), &gzip, b"").await?;
    assert_eq!(big.status, 200);
    assert_eq!(big.header("content-encoding"), None);
    assert_eq!(big.body.len(), 1_000_000);
    assert_eq!(origin_bytes(&whis) - before, 1_000_000);
    whis.stop().await;
    Ok(())
}

#[tokio::test]
async fn whis_scripts_revalidate_for_a_304_and_their_bytes_are_counted_as_whis_own() -> Result<()> {
    let site = site();
    let whis = start_whis(site.path(), |_| {}).await?;
    let own = |w: &whis::Running| {
        w.state
            .metrics
            .own_bytes
            .load(std::sync::atomic::Ordering::Relaxed)
    };
    for path in ["/whis/lib.js", "/whis/client.js", "/whis-sw.js"] {
        let url = format!("{}{path}", whis.url());
        let before = own(&whis);
        let first = http_raw("GET", &url, &[], b"").await?;
        assert_eq!(first.status, 200, "{path}");
        let etag = first.header("etag").ok_or("an ETag")?.to_string();
        assert_eq!(first.header("cache-control"), Some("no-cache"), "{path}");
        eventually(Duration::from_secs(5), "the body is counted", || {
            own(&whis) - before == first.body.len() as u64
        })
        .await?;
        let again = http_raw("GET", &url, &[("if-none-match", etag.as_str())], b"").await?;
        assert_eq!(again.status, 304, "{path}: unchanged, no body");
        assert!(again.body.is_empty());
        let other = http_raw("GET", &url, &[("if-none-match", "\"other\"")], b"").await?;
        assert_eq!(other.status, 200, "{path}: another version gets the file");
    }
    // The site's own bytes are not Whis's.
    let before = own(&whis);
    let big = http_raw("GET", &format!("{}/big.bin", whis.url()), &[], b"").await?;
    assert_eq!(big.body.len(), 1_000_000);
    assert_eq!(own(&whis), before);
    whis.stop().await;
    Ok(())
}

#[tokio::test]
async fn the_dashboard_stream_starts_with_the_offload_history() -> Result<()> {
    let site = site();
    let whis = start_whis(site.path(), |_| {}).await?;
    let url = whis.url();
    // Some origin traffic before anyone watches.
    http_raw("GET", &format!("{url}/big.bin"), &[], b"").await?;
    let mut feed = SseReader::open(&url, "/whis/dashboard/events", None).await?;
    let first: serde_json::Value =
        serde_json::from_str(&feed.next_of("snapshot", T).await.ok_or("first")?.data)?;
    let history = first["history"].as_array().ok_or("history is an array")?;
    assert!(!history.is_empty(), "sampled from the start");
    for point in history {
        let p = point
            .as_array()
            .ok_or("a point is [uptime, shared, origin]")?;
        assert_eq!(p.len(), 3);
        assert!(p.iter().all(|v| v.is_number()));
    }
    assert!(first["bytes"]["origin_sent"].as_u64() >= Some(1_000_000));
    // Later snapshots add one live point each and do not repeat the history.
    let second: serde_json::Value =
        serde_json::from_str(&feed.next_of("snapshot", T).await.ok_or("second")?.data)?;
    assert!(second["history"].is_null());
    whis.stop().await;
    Ok(())
}
