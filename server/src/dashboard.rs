//! `/whis/dashboard`: a live page for the operator. Plain HTML and an SSE feed
//! of one JSON snapshot per second; no build step, no external assets.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use actix_web::{web, HttpResponse};
use actix_web_lab::sse;
use futures_util::stream;

use crate::history::Sample;
use crate::state::AppState;

const PAGE: &str = include_str!("dashboard.html");

pub async fn page() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header(("cache-control", "no-cache"))
        .body(PAGE)
}

/// How often the offload history is sampled (`AppState` keeps an hour of it).
const SAMPLE_EVERY: Duration = Duration::from_secs(5);

/// Bytes shared by the swarm and bytes the origin sent, since start.
fn totals(state: &AppState) -> (u64, u64) {
    let counters = state.signaling().hub.counters();
    (
        counters.bytes.peer + counters.bytes.worker,
        state.metrics.origin_bytes.load(Ordering::Relaxed),
    )
}

/// Record the offload history, so a dashboard opened late still draws the
/// last hour rather than only what happens while it is open.
pub async fn sample_loop(state: Arc<AppState>) {
    let mut every = tokio::time::interval(SAMPLE_EVERY);
    loop {
        every.tick().await;
        let (shared, origin) = totals(&state);
        let sample = Sample(state.started.elapsed().as_secs_f64(), shared, origin);
        state.offload_history.push(sample);
    }
}

/// Everything the dashboard shows, as of now; with the offload history for
/// the first snapshot of a stream (later ones add one point each).
pub fn snapshot(state: &AppState, with_history: bool) -> serde_json::Value {
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
        "history": if with_history {
            serde_json::json!(state.offload_history.samples())
        } else {
            serde_json::Value::Null
        },
    })
}

pub async fn events(state: web::Data<Arc<AppState>>) -> impl actix_web::Responder {
    let state = Arc::clone(&state);
    let ticks = stream::unfold((state, true), |(state, first)| async move {
        if !first {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        if state.is_stopping() {
            return None;
        }
        let data = sse::Data::new(snapshot(&state, first).to_string()).event("snapshot");
        Some((sse::Event::Data(data), (state, false)))
    });
    sse::Sse::from_infallible_stream(ticks).with_retry_duration(Duration::from_secs(2))
}
