//! HTTP handlers for join, events (SSE), signal, announce and leave.
//!
//! They only translate: parse the transport's input into the core's types,
//! call the [`whis_core::hub::Hub`] under the signaling lock, and hand the
//! resulting deliveries to the live streams.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use actix_web::{web, HttpRequest, HttpResponse};
use actix_web_lab::sse;
use futures_util::{Stream, StreamExt};
use serde::Deserialize;
use serde_json::value::RawValue;
use tokio::sync::mpsc;
use whis_core::hub::{Announce, ByteCounts, JoinAs, JoinRequest};
use whis_core::CoreError;

use crate::error::ApiError;
use crate::state::{to_sse, AppState};

/// Read a JSON body of at most `limit` bytes into `T`, with our own errors.
pub async fn json_body<T: for<'de> Deserialize<'de>>(
    mut payload: web::Payload,
    limit: usize,
) -> Result<T, ApiError> {
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| match e {
            actix_web::error::PayloadError::Overflow => ApiError::BodyTooLarge(limit),
            other => ApiError::BadRequest(format!("could not read the body: {other}")),
        })?;
        if body.len() + chunk.len() > limit {
            return Err(ApiError::BodyTooLarge(limit));
        }
        body.extend_from_slice(&chunk);
    }
    if body.is_empty() {
        return Err(ApiError::BadJson(
            "empty body; send a JSON object ({} is valid)".into(),
        ));
    }
    serde_json::from_slice(&body).map_err(|e| ApiError::BadJson(e.to_string()))
}

/// Refuse a declared oversized body before reading it.
fn check_length(req: &HttpRequest, limit: usize) -> Result<(), ApiError> {
    let declared = req
        .headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    match declared {
        Some(n) if n > limit as u64 => Err(ApiError::BodyTooLarge(limit)),
        _ => Ok(()),
    }
}

fn bearer(req: &HttpRequest) -> Result<&str, ApiError> {
    let value = req
        .headers()
        .get("authorization")
        .ok_or(ApiError::MissingToken)?;
    let value = value
        .to_str()
        .map_err(|_| ApiError::Core(CoreError::InvalidToken))?;
    let token = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .ok_or(ApiError::MissingToken)?
        .trim();
    if token.is_empty() {
        return Err(ApiError::MissingToken);
    }
    Ok(token)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JoinBody {
    #[serde(default)]
    scope: Option<String>,
    #[serde(default)]
    role: Option<String>,
    #[serde(default)]
    worker_secret: Option<String>,
    /// The swarm a worker browser was started for.
    #[serde(default)]
    swarm: Option<String>,
    #[serde(default)]
    have: Vec<String>,
}

pub async fn join(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<Arc<AppState>>,
) -> Result<HttpResponse, ApiError> {
    let limit = state.config.max_body;
    check_length(&req, limit)?;
    let body: JoinBody = json_body(payload, limit).await?;
    let role = match body.role.as_deref() {
        None | Some("visitor") => JoinAs::Visitor,
        Some("worker") => {
            if body.worker_secret.as_deref() != Some(state.worker_secret.as_str()) {
                return Err(ApiError::Forbidden(
                    "the worker role needs the server's worker secret",
                ));
            }
            let swarm = body.swarm.ok_or_else(|| {
                ApiError::BadRequest("a worker joins with the swarm it serves".into())
            })?;
            JoinAs::Worker { swarm }
        }
        Some(_) => {
            return Err(ApiError::BadRequest(
                "role is \"visitor\" or \"worker\"".into(),
            ))
        }
    };
    if body.have.len() > 4096 {
        return Err(ApiError::BadRequest(
            "at most 4096 resource ids in have".into(),
        ));
    }
    let request = JoinRequest {
        scope: body.scope.unwrap_or_else(|| "/".into()),
        role,
        have: body.have,
    };
    let now = Instant::now();
    let joined = {
        let mut sig = state.signaling();
        let joined = match sig.hub.join(now, request.clone(), crate::ids::new_ids()) {
            // 256 random bits collided: try once more with fresh ones.
            Err(CoreError::Collision) => sig.hub.join(now, request, crate::ids::new_ids()),
            other => other,
        }?;
        sig.deliver(joined.deliveries.clone());
        joined
    };
    log::info!(
        "peer {} joined swarm {} as {}",
        joined.peer_id,
        joined.swarm_id,
        joined.role.as_str()
    );
    state.workers.swarms_changed();
    let hub_cfg_max = if joined.role == whis_core::hub::Role::Worker {
        24
    } else {
        6
    };
    Ok(HttpResponse::Ok()
        .insert_header(("cache-control", "no-store"))
        .json(serde_json::json!({
            "peer_id": joined.peer_id,
            "token": joined.token,
            "swarm_id": joined.swarm_id,
            "role": joined.role.as_str(),
            "ice_servers": [],
            "peers": joined.peers,
            "worker": joined.worker,
            "heartbeat_ms": 15000,
            "max_connections": hub_cfg_max,
            "policy": {"prefer": state.config.prefer.as_str()},
        })))
}

#[derive(Deserialize)]
pub struct EventsQuery {
    token: Option<String>,
}

/// One peer's event stream. Dropping it (the client went away, or the server
/// replaced or closed it) tells the hub, so heartbeat expiry can start.
struct PeerStream {
    rx: mpsc::Receiver<sse::Event>,
    state: Arc<AppState>,
    peer: String,
    conn: u64,
}

impl Stream for PeerStream {
    type Item = sse::Event;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.rx.poll_recv(cx)
    }
}

impl Drop for PeerStream {
    fn drop(&mut self) {
        self.state
            .signaling()
            .detach(Instant::now(), &self.peer, self.conn);
    }
}

pub async fn events(
    req: HttpRequest,
    query: web::Query<EventsQuery>,
    state: web::Data<Arc<AppState>>,
) -> Result<impl actix_web::Responder, ApiError> {
    use actix_web::Responder as _;
    let token = query
        .token
        .as_deref()
        .filter(|t| !t.is_empty())
        .ok_or(ApiError::MissingToken)?;
    let last_event_id = req
        .headers()
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let (tx, rx) = mpsc::channel(state.config.sse_queue);
    let (start, conn) = {
        let mut sig = state.signaling();
        let start = sig
            .hub
            .stream_opened(Instant::now(), token, last_event_id)?;
        let conn = sig.attach(&start.peer_id, tx);
        (start, conn)
    };
    let replay: Vec<sse::Event> = start.events.iter().map(to_sse).collect();
    let live = PeerStream {
        rx,
        state: Arc::clone(&state),
        peer: start.peer_id,
        conn,
    };
    let stream = futures_util::stream::iter(replay).chain(live);
    Ok(sse::Sse::from_infallible_stream(stream)
        .with_keep_alive(state.config.keep_alive)
        .with_retry_duration(Duration::from_secs(2))
        .customize()
        .insert_header(("cache-control", "no-store"))
        .insert_header(("x-accel-buffering", "no")))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SignalBody {
    to: String,
    data: Box<RawValue>,
}

pub async fn signal(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<Arc<AppState>>,
) -> Result<HttpResponse, ApiError> {
    let token = bearer(&req)?.to_string();
    let limit = state.config.max_body;
    check_length(&req, limit)?;
    let body: SignalBody = json_body(payload, limit).await?;
    {
        let mut sig = state.signaling();
        let delivery = sig
            .hub
            .signal(Instant::now(), &token, &body.to, body.data.get())?;
        sig.deliver(vec![delivery]);
    }
    Ok(ok())
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct AnnounceBody {
    #[serde(default)]
    have: Vec<String>,
    #[serde(default)]
    drop: Vec<String>,
    #[serde(default)]
    want: Vec<String>,
    #[serde(default)]
    paths: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    bytes: BytesBody,
    #[serde(default)]
    pieces: PiecesBody,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct BytesBody {
    #[serde(default)]
    peer: u64,
    #[serde(default)]
    worker: u64,
    #[serde(default)]
    origin: u64,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct PiecesBody {
    #[serde(default)]
    verified: u64,
    #[serde(default)]
    rejected: u64,
}

/// Most bytes one announce may report; a larger claim is a lie, not a delta.
const MAX_REPORTED_BYTES: u64 = 1 << 40;

pub async fn announce(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<Arc<AppState>>,
) -> Result<HttpResponse, ApiError> {
    let token = bearer(&req)?.to_string();
    let limit = state.config.max_body;
    check_length(&req, limit)?;
    let body: AnnounceBody = json_body(payload, limit).await?;
    let b = &body.bytes;
    if [
        b.peer,
        b.worker,
        b.origin,
        body.pieces.verified,
        body.pieces.rejected,
    ]
    .iter()
    .any(|&n| n > MAX_REPORTED_BYTES)
    {
        return Err(ApiError::BadRequest(
            "byte and piece counts are deltas since the last announce".into(),
        ));
    }
    let announce = Announce {
        have: body.have,
        drop: body.drop,
        want: body.want,
        paths: body.paths.into_iter().collect(),
        bytes: ByteCounts {
            peer: b.peer,
            worker: b.worker,
            origin: b.origin,
        },
        verified: body.pieces.verified,
        rejected: body.pieces.rejected,
    };
    let answer = {
        let mut sig = state.signaling();
        let (answer, deliveries) = sig.hub.announce(Instant::now(), &token, announce)?;
        sig.deliver(deliveries);
        answer
    };
    Ok(HttpResponse::Ok()
        .insert_header(("cache-control", "no-store"))
        .json(serde_json::json!({"peers": answer.peers, "worker": answer.worker})))
}

#[derive(Deserialize)]
pub struct LeaveQuery {
    token: Option<String>,
}

pub async fn leave(
    req: HttpRequest,
    query: web::Query<LeaveQuery>,
    state: web::Data<Arc<AppState>>,
) -> Result<HttpResponse, ApiError> {
    let token = match (bearer(&req), query.token.as_deref()) {
        (Ok(t), _) => t.to_string(),
        (Err(_), Some(t)) if !t.is_empty() => t.to_string(),
        (Err(e), _) => return Err(e),
    };
    {
        let mut sig = state.signaling();
        let me = sig.hub.authenticate(Instant::now(), &token)?;
        let deliveries = sig.hub.leave(Instant::now(), &token)?;
        sig.deliver(deliveries);
        sig.drop_streams_of(&[me]);
    }
    state.workers.swarms_changed();
    Ok(ok())
}

fn ok() -> HttpResponse {
    HttpResponse::Ok()
        .insert_header(("cache-control", "no-store"))
        .json(serde_json::json!({"ok": true}))
}

/// Expire silent peers every two seconds until the server stops.
pub async fn heartbeat_loop(state: Arc<AppState>) {
    let mut every = tokio::time::interval(Duration::from_secs(2));
    loop {
        every.tick().await;
        let removed = {
            let mut sig = state.signaling();
            let tick = sig.hub.tick(Instant::now());
            sig.deliver(tick.deliveries);
            sig.drop_streams_of(&tick.removed);
            tick.removed
        };
        if !removed.is_empty() {
            log::info!(
                "dropped {} silent peer(s): {}",
                removed.len(),
                removed.join(", ")
            );
            state.workers.swarms_changed();
        }
    }
}
