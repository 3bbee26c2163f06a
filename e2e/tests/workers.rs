//! Worker browsers with real Chromium: lifecycle seen from outside.

use std::time::Duration;

use e2e::*;

/// Join one visitor over HTTP; return its token.
async fn join(url: &str) -> Result<String> {
    let (status, body) = http("POST", &format!("{url}/whis/join"), &[], "{}").await?;
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body)?;
    Ok(v["token"].as_str().ok_or("token")?.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_whis_leaves_no_chromium_behind() -> Result<()> {
    let _one = serial().await;
    init_logs();
    let profiles = TempDir::new("profiles");
    let whis = start_whis(&demo_site(), |c| {
        c.workers.enabled = true;
        c.workers.profile_dir = Some(profiles.path().to_path_buf());
    })
    .await?;
    join(&whis.url()).await?;
    let state = whis.state.clone();
    eventually(
        Duration::from_secs(30),
        "a worker browser is started for the swarm",
        || {
            state
                .workers
                .snapshot()
                .slots
                .iter()
                .any(|(_, _, pid)| pid.is_some())
        },
    )
    .await?;
    let pid = state.workers.snapshot().slots[0].2.ok_or("pid")?;
    assert!(process_alive(pid));
    whis.stop().await;
    eventually(
        Duration::from_secs(10),
        "the worker browser process is gone",
        || !process_alive(pid),
    )
    .await?;
    assert_eq!(state.workers.snapshot().slots.len(), 0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_page_refuses_anyone_without_the_secret() -> Result<()> {
    let whis = start_whis(&demo_site(), |_| {}).await?;
    let (status, body) = http("GET", &format!("{}/whis/worker.html", whis.url()), &[], "").await?;
    assert_eq!(status, 403);
    assert!(body.contains("\"forbidden\""), "{body}");
    let (status, _) = http(
        "GET",
        &format!("{}/whis/worker.html?secret=guess", whis.url()),
        &[],
        "",
    )
    .await?;
    assert_eq!(status, 403);
    let (status, body) = http(
        "POST",
        &format!("{}/whis/join", whis.url()),
        &[],
        r#"{"role":"worker","worker_secret":"guess","swarm":"s1"}"#,
    )
    .await?;
    assert_eq!(status, 403, "{body}");
    whis.stop().await;
    Ok(())
}
