//! `/whis/metrics` in the Prometheus text format, and `/whis/health`.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use actix_web::{web, HttpResponse};

use crate::state::AppState;

pub async fn metrics(state: web::Data<Arc<AppState>>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .insert_header(("cache-control", "no-store"))
        .body(render(&state))
}

pub fn render(state: &AppState) -> String {
    let (peers, swarms, counters, open_streams, dropped) = {
        let sig = state.signaling();
        (
            sig.hub.peer_count(),
            sig.hub.swarm_count(),
            sig.hub.counters(),
            sig.open_streams(),
            sig.sse_dropped_slow(),
        )
    };
    let workers = state.workers.snapshot();
    let m = &state.metrics;
    let mut out = String::with_capacity(2048);
    let mut metric = |name: &str, kind: &str, help: &str, samples: &[(&str, u64)]| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (labels, value) in samples {
            let _ = writeln!(out, "{name}{labels} {value}");
        }
    };
    metric(
        "whis_peers",
        "gauge",
        "Peers (visitors and workers) in all swarms.",
        &[("", peers as u64)],
    );
    metric("whis_swarms", "gauge", "Swarms.", &[("", swarms as u64)]);
    metric(
        "whis_sse_streams",
        "gauge",
        "Open event streams.",
        &[("", open_streams as u64)],
    );
    metric(
        "whis_workers_alive",
        "gauge",
        "Worker browsers ready or serving.",
        &[("", workers.alive as u64)],
    );
    metric(
        "whis_worker_restarts_total",
        "counter",
        "Worker browsers restarted after a crash or hang.",
        &[("", workers.restarts)],
    );
    metric(
        "whis_worker_memory_bytes",
        "gauge",
        "Resident memory of all worker browser processes.",
        &[("", workers.memory_bytes)],
    );
    metric(
        "whis_joins_total",
        "counter",
        "Joins accepted.",
        &[("", counters.joins)],
    );
    metric(
        "whis_signals_relayed_total",
        "counter",
        "Signals relayed between peers.",
        &[("", counters.signals_relayed)],
    );
    metric(
        "whis_peers_expired_total",
        "counter",
        "Peers dropped after the heartbeat timeout.",
        &[("", counters.peers_expired)],
    );
    metric(
        "whis_sse_slow_closed_total",
        "counter",
        "Event streams closed because the reader fell behind its queue.",
        &[("", dropped)],
    );
    metric(
        "whis_bytes_total",
        "counter",
        "Bytes the agents report receiving, by source.",
        &[
            ("{source=\"peer\"}", counters.bytes.peer),
            ("{source=\"worker\"}", counters.bytes.worker),
            ("{source=\"origin\"}", counters.bytes.origin),
        ],
    );
    metric(
        "whis_pieces_total",
        "counter",
        "Pieces the agents verified or rejected (hash mismatch).",
        &[
            ("{result=\"verified\"}", counters.pieces_verified),
            ("{result=\"rejected\"}", counters.pieces_rejected),
        ],
    );
    metric(
        "whis_origin_bytes_total",
        "counter",
        "Body bytes the origin side actually sent to clients (counted by the server).",
        &[("", m.origin_bytes.load(Ordering::Relaxed))],
    );
    metric(
        "whis_origin_responses_total",
        "counter",
        "Responses with a body sent by the origin side.",
        &[("", m.origin_responses.load(Ordering::Relaxed))],
    );
    metric(
        "whis_manifest_fetch_bytes_total",
        "counter",
        "Bytes fetched from an upstream origin to hash manifests (proxy mode).",
        &[("", m.manifest_fetch_bytes.load(Ordering::Relaxed))],
    );
    metric(
        "whis_manifests_computed_total",
        "counter",
        "Manifests hashed (once per resource version).",
        &[("", m.manifests_computed.load(Ordering::Relaxed))],
    );
    out
}

pub async fn health(state: web::Data<Arc<AppState>>) -> HttpResponse {
    let (peers, swarms) = {
        let sig = state.signaling();
        (sig.hub.peer_count(), sig.hub.swarm_count())
    };
    let workers = state.workers.snapshot();
    HttpResponse::Ok().insert_header(("cache-control", "no-store")).json(serde_json::json!({
        "status": "ok",
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_s": state.started.elapsed().as_secs(),
        "peers": peers,
        "swarms": swarms,
        "workers": {"enabled": workers.enabled, "alive": workers.alive, "restarts": workers.restarts},
        "manifests": state.manifests.len(),
    }))
}
