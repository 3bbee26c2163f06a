//! HTTP handlers for join, events (SSE), signal, announce and leave.
//!
//! They only translate: parse the transport's input into the core's types,
//! call the [`whis_core::hub::Hub`] under the signaling lock, and hand the
//! resulting deliveries to the live streams.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};

use actix_web::http::header::Header as _;
use actix_web::{web, HttpRequest, HttpResponse};
use actix_web_httpauth::headers::authorization::{Authorization, Bearer};
use actix_web_lab::sse;
use futures_util::{Stream, StreamExt};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use tokio::sync::mpsc;
use whis_core::hub::{Announce, ByteCounts, JoinAs, JoinRequest, PeerId, Role, SignalData};
use whis_core::CoreError;

use crate::error::ApiError;
use crate::ice::{self, IceServer};
use crate::relay::to_sse;
use crate::state::AppState;

/// The token of `Authorization: Bearer TOKEN` (parsed by actix-web-httpauth).
pub struct BearerToken(pub String);

impl actix_web::FromRequest for BearerToken {
    type Error = ApiError;
    type Future = std::future::Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        std::future::ready(bearer(req).map(BearerToken))
    }
}

fn bearer(req: &HttpRequest) -> Result<String, ApiError> {
    Authorization::<Bearer>::parse(req)
        .map(|auth| auth.into_scheme().token().to_string())
        .map_err(|_| ApiError::MissingToken)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JoinBody {
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

/// The answer to `POST /whis/join` (docs/protocol.md).
#[derive(Serialize)]
struct JoinAnswer {
    peer_id: PeerId,
    token: String,
    swarm_id: String,
    role: Role,
    ice_servers: Vec<IceServer>,
    /// `"relay"` (`--relay-only`) or `"all"`: the agent's `iceTransportPolicy`.
    ice_transport_policy: &'static str,
    peers: Vec<PeerId>,
    worker: Option<PeerId>,
    heartbeat_ms: u128,
    max_connections: usize,
    policy: Policy,
}

/// The operator's choices the agent follows (`--prefer`, `--metered-upload`).
#[derive(Serialize)]
struct Policy {
    prefer: &'static str,
    /// Most bytes a visitor on a cellular connection uploads per page.
    metered_upload_bytes: u64,
}

pub async fn join(
    req: HttpRequest,
    body: web::Json<JoinBody>,
    state: web::Data<Arc<AppState>>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
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
    let host = req
        .headers()
        .get(actix_web::http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri().authority().map(|a| a.as_str()));
    let ice = &state.config.ice;
    Ok(no_store().json(JoinAnswer {
        ice_servers: ice::for_join(
            ice,
            state.stun_addr(),
            host,
            &joined.peer_id,
            SystemTime::now(),
        ),
        ice_transport_policy: ice.transport_policy(),
        heartbeat_ms: joined.heartbeat_interval.as_millis(),
        max_connections: joined.max_connections,
        peer_id: joined.peer_id,
        token: joined.token,
        swarm_id: joined.swarm_id,
        role: joined.role,
        peers: joined.peers,
        worker: joined.worker,
        policy: Policy {
            prefer: state.config.prefer.as_str(),
            metered_upload_bytes: state.config.metered_upload,
        },
    }))
}

#[derive(Deserialize)]
pub struct EventsQuery {
    token: Option<String>,
    /// The resume point of a client that opens a new `EventSource` (which
    /// cannot set `Last-Event-ID` itself), as after `going-away`.
    last_event_id: Option<String>,
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
        .or(query.last_event_id.as_deref())
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
pub struct SignalBody {
    to: String,
    data: Box<RawValue>,
}

pub async fn signal(
    BearerToken(token): BearerToken,
    body: web::Json<SignalBody>,
    state: web::Data<Arc<AppState>>,
) -> Result<HttpResponse, ApiError> {
    let SignalBody { to, data } = body.into_inner();
    let data = SignalData::new(data)?;
    {
        let mut sig = state.signaling();
        let delivery = sig.hub.signal(Instant::now(), &token, &to, data)?;
        sig.deliver(vec![delivery]);
    }
    Ok(ok())
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct AnnounceBody {
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
    /// Peers whose links never settled (after retries).
    #[serde(default)]
    unreachable: Vec<PeerId>,
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

/// The answer to `POST /whis/announce`.
#[derive(Serialize)]
struct AnnounceAnswer {
    peers: Vec<PeerId>,
    worker: Option<PeerId>,
}

pub async fn announce(
    BearerToken(token): BearerToken,
    body: web::Json<AnnounceBody>,
    state: web::Data<Arc<AppState>>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
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
        unreachable: body.unreachable,
    };
    let answer = {
        let mut sig = state.signaling();
        let (answer, deliveries) = sig.hub.announce(Instant::now(), &token, announce)?;
        sig.deliver(deliveries);
        answer
    };
    Ok(no_store().json(AnnounceAnswer {
        peers: answer.peers,
        worker: answer.worker,
    }))
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
        (Ok(t), _) => t,
        (Err(_), Some(t)) if !t.is_empty() => t.to_string(),
        (Err(e), _) => return Err(e),
    };
    {
        let mut sig = state.signaling();
        let left = sig.hub.leave(Instant::now(), &token)?;
        sig.deliver(left.deliveries);
        sig.drop_streams_of(&[left.peer_id]);
    }
    state.workers.swarms_changed();
    Ok(ok())
}

fn no_store() -> actix_web::HttpResponseBuilder {
    let mut res = HttpResponse::Ok();
    res.insert_header(("cache-control", "no-store"));
    res
}

#[derive(Serialize)]
struct OkAnswer {
    ok: bool,
}

fn ok() -> HttpResponse {
    no_store().json(OkAnswer { ok: true })
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
