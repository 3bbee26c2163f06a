//! `/whis/metrics` in the Prometheus (OpenMetrics) text format, written by
//! `prometheus-client`, and `/whis/health`.
//!
//! The figures live where they are kept (the hub's counters, the origin's
//! byte counter, the manifest service, the worker snapshot); each scrape
//! reads them once into a fresh registry and encodes that.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use actix_web::{web, HttpResponse};
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use serde::Serialize;

use crate::state::AppState;

pub async fn metrics(state: web::Data<Arc<AppState>>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/openmetrics-text; version=1.0.0; charset=utf-8")
        .insert_header(("cache-control", "no-store"))
        .body(render(&state))
}

fn gauge(n: impl TryInto<i64>) -> ConstGauge {
    ConstGauge::new(n.try_into().unwrap_or(i64::MAX))
}

type Labelled = Family<Vec<(String, String)>, Counter>;

/// A counter family with one label, filled with `samples`.
fn labelled(label: &str, samples: &[(&str, u64)]) -> Labelled {
    let family = Labelled::default();
    for (value, n) in samples {
        family
            .get_or_create(&vec![(label.to_string(), value.to_string())])
            .inc_by(*n);
    }
    family
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
    let mut r = Registry::default();
    r.register(
        "whis_peers",
        "Peers (visitors and workers) in all swarms",
        gauge(peers),
    );
    r.register("whis_swarms", "Swarms", gauge(swarms));
    r.register(
        "whis_sse_streams",
        "Open event streams",
        gauge(open_streams),
    );
    r.register(
        "whis_workers_alive",
        "Worker browsers ready or serving",
        gauge(workers.alive),
    );
    r.register(
        "whis_worker_restarts",
        "Worker browsers restarted after a crash or hang",
        ConstCounter::new(workers.restarts),
    );
    r.register(
        "whis_worker_memory_bytes",
        "Resident memory of all worker browser processes",
        gauge(workers.memory_bytes),
    );
    r.register(
        "whis_joins",
        "Joins accepted",
        ConstCounter::new(counters.joins),
    );
    r.register(
        "whis_signals_relayed",
        "Signals relayed between peers",
        ConstCounter::new(counters.signals_relayed),
    );
    r.register(
        "whis_peers_expired",
        "Peers dropped after the heartbeat timeout",
        ConstCounter::new(counters.peers_expired),
    );
    r.register(
        "whis_peers_resumed",
        "Visitors taken back from a token a former process signed (a restart)",
        ConstCounter::new(counters.resumed),
    );
    r.register(
        "whis_sse_slow_closed",
        "Event streams closed because the reader fell behind its queue",
        ConstCounter::new(dropped),
    );
    r.register(
        "whis_bytes",
        "Bytes the agents report receiving, by source",
        labelled(
            "source",
            &[
                ("peer", counters.bytes.peer),
                ("worker", counters.bytes.worker),
                ("origin", counters.bytes.origin),
            ],
        ),
    );
    r.register(
        "whis_pieces",
        "Pieces the agents verified or rejected (hash mismatch)",
        labelled(
            "result",
            &[
                ("verified", counters.pieces_verified),
                ("rejected", counters.pieces_rejected),
            ],
        ),
    );
    r.register(
        "whis_origin_bytes",
        "Body bytes the origin side actually sent to clients (counted by the server)",
        ConstCounter::new(m.origin_bytes.load(Ordering::Relaxed)),
    );
    r.register(
        "whis_own_bytes",
        "Body bytes of Whis's own answers: scripts, manifests, signaling, event streams",
        ConstCounter::new(m.own_bytes.load(Ordering::Relaxed)),
    );
    r.register(
        "whis_origin_responses",
        "Responses with a body sent by the origin side",
        ConstCounter::new(m.origin_responses.load(Ordering::Relaxed)),
    );
    r.register(
        "whis_manifest_fetch_bytes",
        "Bytes fetched from an upstream origin to hash manifests (proxy mode)",
        ConstCounter::new(state.manifests.fetched_bytes()),
    );
    r.register(
        "whis_manifests_computed",
        "Manifests hashed (once per resource version)",
        ConstCounter::new(state.manifests.computed()),
    );
    r.register(
        "whis_stun_answered",
        "STUN binding requests answered",
        ConstCounter::new(state.stun.answered()),
    );
    r.register(
        "whis_stun_dropped",
        "Datagrams on the STUN port dropped unanswered, by reason",
        labelled("reason", &state.stun.dropped()),
    );
    let mut out = String::with_capacity(4096);
    encode(&mut out, &r).expect("writing to a String cannot fail");
    out
}

#[derive(Serialize)]
struct Health {
    status: &'static str,
    version: &'static str,
    uptime_s: u64,
    peers: usize,
    swarms: usize,
    workers: HealthWorkers,
    manifests: usize,
}

#[derive(Serialize)]
struct HealthWorkers {
    enabled: bool,
    alive: usize,
    restarts: u64,
}

pub async fn health(state: web::Data<Arc<AppState>>) -> HttpResponse {
    let (peers, swarms) = {
        let sig = state.signaling();
        (sig.hub.peer_count(), sig.hub.swarm_count())
    };
    let workers = state.workers.snapshot();
    HttpResponse::Ok()
        .insert_header(("cache-control", "no-store"))
        .json(Health {
            status: "ok",
            version: env!("CARGO_PKG_VERSION"),
            uptime_s: state.started.elapsed().as_secs(),
            peers,
            swarms,
            workers: HealthWorkers {
                enabled: workers.enabled,
                alive: workers.alive,
                restarts: workers.restarts,
            },
            manifests: state.manifests.len(),
        })
}
