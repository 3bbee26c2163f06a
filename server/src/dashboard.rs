//! `/whis/dashboard`: a live page for the operator. Plain HTML and an SSE feed
//! of one JSON snapshot per second; no build step, no external assets.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use actix_web::{web, HttpResponse};
use actix_web_lab::sse;
use futures_util::stream;

use crate::state::AppState;

const PAGE: &str = include_str!("dashboard.html");

pub async fn page() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header(("cache-control", "no-cache"))
        .body(PAGE)
}

/// Everything the dashboard shows, as of now.
pub fn snapshot(state: &AppState) -> serde_json::Value {
    let (swarms, peers, counters) = {
        let sig = state.signaling();
        (sig.hub.swarms(), sig.hub.peer_count(), sig.hub.counters())
    };
    let workers = state.workers.snapshot();
    let m = &state.metrics;
    serde_json::json!({
        "uptime_s": state.started.elapsed().as_secs_f64(),
        "peers": peers,
        "swarms": swarms.iter().map(|s| serde_json::json!({
            "id": s.id, "scope": s.scope, "visitors": s.visitors,
            "worker": s.worker, "resources": s.resources,
        })).collect::<Vec<_>>(),
        "workers": {
            "enabled": workers.enabled,
            "alive": workers.alive,
            "restarts": workers.restarts,
            "memory_bytes": workers.memory_bytes,
            "slots": workers.slots.iter().map(|s| serde_json::json!({
                "swarm": s.swarm, "state": s.state, "pid": s.pid, "resources": s.resources,
            })).collect::<Vec<_>>(),
        },
        "bytes": {
            "peer": counters.bytes.peer,
            "worker": counters.bytes.worker,
            "origin_reported": counters.bytes.origin,
            "origin_sent": m.origin_bytes.load(Ordering::Relaxed),
        },
        "pieces": {"verified": counters.pieces_verified, "rejected": counters.pieces_rejected},
        "signals_relayed": counters.signals_relayed,
        "joins": counters.joins,
    })
}

pub async fn events(state: web::Data<Arc<AppState>>) -> impl actix_web::Responder {
    let state = Arc::clone(&state);
    let ticks = stream::unfold((state, true), |(state, first)| async move {
        if !first {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        let data = sse::Data::new(snapshot(&state).to_string()).event("snapshot");
        Some((sse::Event::Data(data), (state, false)))
    });
    sse::Sse::from_infallible_stream(ticks).with_retry_duration(Duration::from_secs(2))
}
