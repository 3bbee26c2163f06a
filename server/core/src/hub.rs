//! Swarms, peers, tokens, the tracker and the signaling rules.
//!
//! [`Hub`] is the single owner of membership state. Every call takes `now`;
//! every call that makes something happen for other peers returns the
//! [`Delivery`]s to push down their event streams. A delivered event is also
//! kept in the recipient's bounded replay buffer so that a reconnecting stream
//! (SSE `Last-Event-ID`) can resume without losing a signal.
//!
//! Invariants (checked by the tests and, in debug builds, by [`Hub::check`]):
//! - a token maps to exactly one live peer and every live peer has one token;
//! - a peer is in exactly one swarm and that swarm lists it;
//! - a swarm has at most `peers_per_swarm` visitors and at most one worker;
//! - a swarm with neither visitors nor worker does not exist.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

pub use crate::event::{Event, EventKind, HotResource, Role, ServerEvent, SignalData};
use crate::manifest::is_resource_id;
use crate::token::TokenKey;
use crate::CoreError;

/// Peer ids are short public names; tokens are secrets known only to their peer.
pub type PeerId = String;
pub type SwarmId = String;

#[derive(Debug, Clone)]
pub struct HubConfig {
    /// Visitors per swarm; each swarm gets one worker browser.
    pub peers_per_swarm: usize,
    /// Peers across all swarms; joining beyond it is refused.
    pub max_peers: usize,
    /// A peer with no open stream and no request for this long is dropped.
    pub heartbeat_timeout: Duration,
    /// How often agents are asked to announce (`heartbeat_ms` in `join`).
    pub heartbeat_interval: Duration,
    /// Recent events kept per peer for `Last-Event-ID` resume.
    pub replay_events: usize,
    /// Bytes of recent events kept per peer (signals carry SDP, a few KiB each).
    pub replay_bytes: usize,
    /// A visitor's connection budget: peers suggested to it, and its
    /// `max_connections` in the join answer.
    pub max_connections: usize,
    /// A worker browser's connection budget (`max_connections` in its join
    /// answer): it serves the whole swarm, so it accepts many more.
    pub worker_connections: usize,
    /// Resource ids a peer may claim to hold; more are ignored.
    pub max_have_per_peer: usize,
    /// Resources a swarm remembers as hot.
    pub max_resources_per_swarm: usize,
    /// Signs visitors' tokens; a visitor whose token another process signed
    /// with the same secret is taken back (see [`Hub::authenticate`]).
    /// `None`: tokens are the caller's random secrets, known only here.
    pub token_key: Option<TokenKey>,
}

impl Default for HubConfig {
    fn default() -> Self {
        HubConfig {
            peers_per_swarm: 30,
            max_peers: 20_000,
            heartbeat_timeout: Duration::from_secs(45),
            heartbeat_interval: Duration::from_secs(15),
            replay_events: 256,
            replay_bytes: 256 * 1024,
            max_connections: 6,
            worker_connections: 24,
            max_have_per_peer: 4096,
            max_resources_per_swarm: 1024,
            token_key: None,
        }
    }
}

/// Who is joining. A worker joins the swarm its supervisor started it for.
#[derive(Debug, Clone)]
pub enum JoinAs {
    Visitor,
    Worker { swarm: SwarmId },
}

#[derive(Debug, Clone)]
pub struct JoinRequest {
    pub scope: String,
    pub role: JoinAs,
    pub have: Vec<String>,
}

/// Fresh random identifiers, made by the caller (the core has no randomness).
#[derive(Debug, Clone)]
pub struct NewIds {
    pub peer_id: PeerId,
    pub token: String,
}

#[derive(Debug, Clone)]
pub struct Joined {
    pub peer_id: PeerId,
    pub token: String,
    pub swarm_id: SwarmId,
    pub role: Role,
    pub peers: Vec<PeerId>,
    pub worker: Option<PeerId>,
    /// The joiner's connection budget (visitor or worker, from the config).
    pub max_connections: usize,
    /// How often the joiner should announce itself.
    pub heartbeat_interval: Duration,
    pub deliveries: Vec<Delivery>,
}

/// A peer that left: who it was, and what its swarm is told.
#[derive(Debug, Clone)]
pub struct Left {
    pub peer_id: PeerId,
    pub deliveries: Vec<Delivery>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub to: PeerId,
    pub event: Event,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ByteCounts {
    pub peer: u64,
    pub worker: u64,
    pub origin: u64,
}

#[derive(Debug, Clone, Default)]
pub struct Announce {
    pub have: Vec<String>,
    pub drop: Vec<String>,
    pub want: Vec<String>,
    /// Resource id → site path, so the worker learns what is hot.
    pub paths: Vec<(String, String)>,
    pub bytes: ByteCounts,
    pub verified: u64,
    pub rejected: u64,
    /// Peers the announcer's offers never reached (its links to them never
    /// settled, after retries): not suggested to it again.
    pub unreachable: Vec<PeerId>,
}

/// Peers one announce may report unreachable; more are ignored.
pub const MAX_UNREACHABLE_REPORT: usize = 32;
/// Distinct reporters after which a peer is suggested to nobody: it is not
/// one visitor's bad luck, nobody reaches it.
pub const UNREACHABLE_BY_ALL: usize = 3;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnnounceAnswer {
    pub peers: Vec<PeerId>,
    pub worker: Option<PeerId>,
}

/// What a stream (re)connect gets: a `hello` plus the events it missed.
#[derive(Debug, Clone)]
pub struct StreamStart {
    pub peer_id: PeerId,
    pub events: Vec<Event>,
}

#[derive(Debug, Clone, Default)]
pub struct Tick {
    pub deliveries: Vec<Delivery>,
    pub removed: Vec<PeerId>,
}

/// Totals since start, for `/whis/metrics`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Counters {
    pub joins: u64,
    pub signals_relayed: u64,
    pub peers_expired: u64,
    pub bytes: ByteCounts,
    pub pieces_verified: u64,
    pub pieces_rejected: u64,
    /// Visitors taken back from a token another process signed (a restart).
    pub resumed: u64,
}

/// A swarm as the dashboard and the worker supervisor see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SwarmInfo {
    pub id: SwarmId,
    pub scope: String,
    pub visitors: usize,
    pub worker: Option<PeerId>,
    pub resources: usize,
    /// Since when the swarm has had no visitor (its worker may be released).
    pub idle_since: Option<Instant>,
}

#[derive(Debug)]
struct Peer {
    token: String,
    swarm: SwarmId,
    role: Role,
    last_seen: Instant,
    streams_open: u32,
    /// It opened an event stream once: with none open now it is gone (or
    /// reconnecting), and is not suggested to others.
    streamed: bool,
    have: HashSet<String>,
    next_event_id: u64,
    recent: VecDeque<Event>,
    recent_bytes: usize,
    /// Peers this one could not reach (it reported them): never suggested to it.
    cannot_reach: HashSet<PeerId>,
    /// Peers that reported they could not reach this one (at most
    /// UNREACHABLE_BY_ALL are kept: that many and it is suggested to nobody).
    unreached_by: HashSet<PeerId>,
    /// Taken back from another process's token and not streamed since: its
    /// client's `Last-Event-ID` counts that process's events.
    resumed: bool,
}

#[derive(Debug)]
struct Swarm {
    scope: String,
    /// Visitors in join order (oldest first).
    visitors: Vec<PeerId>,
    worker: Option<PeerId>,
    /// Resource id → path, ordered by id (so `hot` lists are deterministic).
    resources: BTreeMap<String, String>,
    idle_since: Option<Instant>,
}

#[derive(Debug)]
pub struct Hub {
    cfg: HubConfig,
    peers: HashMap<PeerId, Peer>,
    tokens: HashMap<String, PeerId>,
    swarms: BTreeMap<SwarmId, Swarm>,
    next_swarm: u64,
    counters: Counters,
}

impl Hub {
    pub fn new(cfg: HubConfig) -> Self {
        Hub {
            cfg,
            peers: HashMap::new(),
            tokens: HashMap::new(),
            swarms: BTreeMap::new(),
            next_swarm: 1,
            counters: Counters::default(),
        }
    }

    pub fn config(&self) -> &HubConfig {
        &self.cfg
    }

    pub fn counters(&self) -> Counters {
        self.counters
    }

    pub fn peer_count(&self) -> usize {
        self.peers.len()
    }

    pub fn swarm_count(&self) -> usize {
        self.swarms.len()
    }

    pub fn swarms(&self) -> Vec<SwarmInfo> {
        self.swarms
            .iter()
            .map(|(id, s)| SwarmInfo {
                id: id.clone(),
                scope: s.scope.clone(),
                visitors: s.visitors.len(),
                worker: s.worker.clone(),
                resources: s.resources.len(),
                idle_since: s.idle_since,
            })
            .collect()
    }

    /// The swarm a peer is in, if the peer exists.
    pub fn swarm_of(&self, peer_id: &str) -> Option<&str> {
        self.peers.get(peer_id).map(|p| p.swarm.as_str())
    }

    pub fn join(
        &mut self,
        now: Instant,
        req: JoinRequest,
        ids: NewIds,
    ) -> Result<Joined, CoreError> {
        validate_scope(&req.scope)?;
        if req.have.len() > self.cfg.max_have_per_peer {
            return Err(CoreError::TooManyIds(self.cfg.max_have_per_peer));
        }
        if self.peers.contains_key(&ids.peer_id) || self.tokens.contains_key(&ids.token) {
            return Err(CoreError::Collision);
        }
        let mut deliveries = Vec::new();
        let (swarm_id, role) = match &req.role {
            JoinAs::Visitor => {
                if self.peers.len() >= self.cfg.max_peers {
                    return Err(CoreError::ServerFull(self.cfg.max_peers));
                }
                (self.swarm_with_room(&req.scope), Role::Visitor)
            }
            JoinAs::Worker { swarm } => {
                let Some(s) = self.swarms.get(swarm) else {
                    return Err(CoreError::UnknownSwarm(swarm.clone()));
                };
                if let Some(old) = s.worker.clone() {
                    deliveries.extend(self.remove_peer(now, &old, left));
                }
                (swarm.clone(), Role::Worker)
            }
        };
        let have: HashSet<String> = req
            .have
            .iter()
            .filter(|id| is_resource_id(id))
            .cloned()
            .collect();
        let token = match &self.cfg.token_key {
            Some(key) => key.sign(role, &ids.peer_id, &swarm_id, &req.scope),
            None => ids.token,
        };
        if self.tokens.contains_key(&token) {
            return Err(CoreError::Collision);
        }
        self.peers.insert(
            ids.peer_id.clone(),
            Peer {
                token: token.clone(),
                swarm: swarm_id.clone(),
                role,
                last_seen: now,
                streams_open: 0,
                streamed: false,
                have,
                next_event_id: 1,
                recent: VecDeque::new(),
                recent_bytes: 0,
                cannot_reach: HashSet::new(),
                unreached_by: HashSet::new(),
                resumed: false,
            },
        );
        self.tokens.insert(token.clone(), ids.peer_id.clone());
        let swarm = self
            .swarms
            .get_mut(&swarm_id)
            .expect("swarm_with_room created it or the worker branch checked it");
        let others: Vec<PeerId> = swarm
            .visitors
            .iter()
            .chain(swarm.worker.iter())
            .cloned()
            .collect();
        match role {
            Role::Visitor => {
                swarm.visitors.push(ids.peer_id.clone());
                swarm.idle_since = None;
            }
            Role::Worker => swarm.worker = Some(ids.peer_id.clone()),
        }
        let worker = swarm.worker.clone();
        let hot = hot_event(swarm.resources.iter());
        self.counters.joins += 1;

        let joined = ServerEvent::PeerJoined {
            peer_id: ids.peer_id.clone(),
            role,
        };
        deliveries.extend(self.broadcast(&others, &joined));
        let (peers, max_connections) = match role {
            Role::Visitor => (self.suggest(&ids.peer_id, &[]), self.cfg.max_connections),
            Role::Worker => {
                let up = ServerEvent::WorkerUp {
                    peer_id: ids.peer_id.clone(),
                };
                deliveries.extend(self.broadcast(&others, &up));
                if let Some(hot) = hot {
                    deliveries.extend(self.deliver(&ids.peer_id, &hot));
                }
                (Vec::new(), self.cfg.worker_connections)
            }
        };
        self.debug_check();
        Ok(Joined {
            peer_id: ids.peer_id,
            token,
            swarm_id,
            role,
            peers,
            worker,
            max_connections,
            heartbeat_interval: self.cfg.heartbeat_interval,
            deliveries,
        })
    }

    /// The peer a token belongs to; counts as a heartbeat.
    ///
    /// A visitor's token that another process signed with this hub's secret
    /// (this server before a restart) brings the visitor back under the same
    /// peer id and swarm, so the links it holds stay meaningful to everyone.
    /// A token this process issued and no longer knows (the peer left or
    /// expired) stays refused, as does one whose swarm is full or now serves
    /// another scope: that client joins afresh.
    pub fn authenticate(&mut self, now: Instant, token: &str) -> Result<PeerId, CoreError> {
        if !self.tokens.contains_key(token) {
            self.resume(now, token)?;
        }
        let peer_id = self.tokens.get(token).ok_or(CoreError::InvalidToken)?;
        let peer = self
            .peers
            .get_mut(peer_id)
            .expect("every token maps to a live peer");
        peer.last_seen = now;
        Ok(peer_id.clone())
    }

    fn resume(&mut self, now: Instant, token: &str) -> Result<(), CoreError> {
        let key = self.cfg.token_key.as_ref().ok_or(CoreError::InvalidToken)?;
        let claims = key.verify(token).ok_or(CoreError::InvalidToken)?;
        if claims.boot == key.boot()
            || claims.role != Role::Visitor
            || self.peers.contains_key(&claims.peer_id)
            || validate_scope(&claims.scope).is_err()
        {
            return Err(CoreError::InvalidToken);
        }
        if self.peers.len() >= self.cfg.max_peers {
            return Err(CoreError::ServerFull(self.cfg.max_peers));
        }
        match self.swarms.get(&claims.swarm_id) {
            Some(s) if s.scope != claims.scope || s.visitors.len() >= self.cfg.peers_per_swarm => {
                return Err(CoreError::InvalidToken)
            }
            Some(_) => {}
            None => {
                self.swarms
                    .insert(claims.swarm_id.clone(), Swarm::new(&claims.scope));
            }
        }
        let swarm = self
            .swarms
            .get_mut(&claims.swarm_id)
            .expect("found or inserted above");
        swarm.visitors.push(claims.peer_id.clone());
        swarm.idle_since = None;
        self.peers.insert(
            claims.peer_id.clone(),
            Peer {
                token: token.to_string(),
                swarm: claims.swarm_id,
                role: Role::Visitor,
                last_seen: now,
                streams_open: 0,
                streamed: false,
                have: HashSet::new(),
                next_event_id: 1,
                recent: VecDeque::new(),
                recent_bytes: 0,
                cannot_reach: HashSet::new(),
                unreached_by: HashSet::new(),
                resumed: true,
            },
        );
        self.tokens.insert(token.to_string(), claims.peer_id);
        self.counters.resumed += 1;
        self.debug_check();
        Ok(())
    }

    /// Relay `data` from the token's peer to `to`, same swarm only.
    pub fn signal(
        &mut self,
        now: Instant,
        token: &str,
        to: &str,
        data: SignalData,
    ) -> Result<Delivery, CoreError> {
        let from = self.authenticate(now, token)?;
        if from == to {
            return Err(CoreError::SelfSignal);
        }
        let target = self
            .peers
            .get(to)
            .ok_or_else(|| CoreError::UnknownPeer(to.to_string()))?;
        if target.swarm != self.peers[&from].swarm {
            return Err(CoreError::OtherSwarm(to.to_string()));
        }
        self.counters.signals_relayed += 1;
        Ok(self
            .deliver(to, &ServerEvent::Signal { from, data })
            .expect("target was checked to exist"))
    }

    pub fn announce(
        &mut self,
        now: Instant,
        token: &str,
        a: Announce,
    ) -> Result<(AnnounceAnswer, Vec<Delivery>), CoreError> {
        let me = self.authenticate(now, token)?;
        for id in a.have.iter().chain(&a.drop).chain(&a.want) {
            if !is_resource_id(id) {
                return Err(CoreError::BadRequest(
                    "resource ids are 64 lowercase hex digits",
                ));
            }
        }
        for (id, path) in &a.paths {
            if !is_resource_id(id) {
                return Err(CoreError::BadRequest(
                    "resource ids are 64 lowercase hex digits",
                ));
            }
            crate::path::SitePath::parse(path)?;
        }
        self.counters.bytes.peer += a.bytes.peer;
        self.counters.bytes.worker += a.bytes.worker;
        self.counters.bytes.origin += a.bytes.origin;
        self.counters.pieces_verified += a.verified;
        self.counters.pieces_rejected += a.rejected;

        self.note_unreachable(&me, &a.unreachable);
        let limit = self.cfg.max_have_per_peer;
        let peer = self.peers.get_mut(&me).expect("authenticated peer exists");
        for id in &a.drop {
            peer.have.remove(id);
        }
        for id in &a.have {
            if peer.have.len() >= limit {
                break;
            }
            peer.have.insert(id.clone());
        }
        let swarm_id = peer.swarm.clone();
        let swarm = self
            .swarms
            .get_mut(&swarm_id)
            .expect("a peer's swarm exists");
        let mut fresh = Vec::new();
        for (id, path) in a.paths {
            if swarm.resources.len() >= self.cfg.max_resources_per_swarm {
                break;
            }
            if !swarm.resources.contains_key(&id) {
                swarm.resources.insert(id.clone(), path.clone());
                fresh.push((id, path));
            }
        }
        let worker = swarm.worker.clone();
        let mut deliveries = Vec::new();
        if let Some(w) = &worker {
            let held = &self.peers[w].have;
            let missing: Vec<(&String, &String)> = fresh
                .iter()
                .filter(|(id, _)| !held.contains(id))
                .map(|(id, p)| (id, p))
                .collect();
            if let Some(hot) = hot_event(missing.into_iter()) {
                deliveries.extend(self.deliver(&w.clone(), &hot));
            }
        }
        let peers = self.suggest(&me, &a.want);
        Ok((AnnounceAnswer { peers, worker }, deliveries))
    }

    pub fn leave(&mut self, now: Instant, token: &str) -> Result<Left, CoreError> {
        let me = self.authenticate(now, token)?;
        let deliveries = self.remove_peer(now, &me, left);
        Ok(Left {
            peer_id: me,
            deliveries,
        })
    }

    /// The supervisor saw the swarm's worker browser crash, hang or be released.
    pub fn worker_down(&mut self, now: Instant, swarm: &str) -> Vec<Delivery> {
        match self.swarms.get(swarm).and_then(|s| s.worker.clone()) {
            Some(w) => self.remove_peer(now, &w, worker_down),
            None => Vec::new(),
        }
    }

    /// A stream connects with `token`; `last_event_id` is the SSE resume point.
    pub fn stream_opened(
        &mut self,
        now: Instant,
        token: &str,
        last_event_id: Option<u64>,
    ) -> Result<StreamStart, CoreError> {
        let me = self.authenticate(now, token)?;
        let peer = self.peers.get_mut(&me).expect("authenticated peer exists");
        peer.streams_open += 1;
        peer.streamed = true;
        let mut last_event_id = last_event_id;
        if std::mem::take(&mut peer.resumed) {
            // The client counts the former process's events: what was queued
            // here since goes out numbered after its last one, and so does
            // everything later, so its next resume point stays right.
            let mut next = last_event_id.unwrap_or(0) + 1;
            for e in peer.recent.iter_mut() {
                e.id = Some(next);
                next += 1;
            }
            peer.next_event_id = next;
            last_event_id = None;
        }
        let hello = Event::new(
            None,
            &ServerEvent::Hello {
                peer_id: me.clone(),
                swarm_id: peer.swarm.clone(),
                worker: self.swarms[&peer.swarm].worker.clone(),
            },
        );
        // A first stream (no Last-Event-ID) gets everything queued since the
        // join: a signal or a `hot` sent before the stream opened is not lost.
        let last = last_event_id.unwrap_or(0);
        let mut events = vec![hello];
        events.extend(
            peer.recent
                .iter()
                .filter(|e| e.id.is_some_and(|id| id > last))
                .cloned(),
        );
        Ok(StreamStart {
            peer_id: me,
            events,
        })
    }

    pub fn stream_closed(&mut self, now: Instant, peer_id: &str) {
        if let Some(peer) = self.peers.get_mut(peer_id) {
            peer.streams_open = peer.streams_open.saturating_sub(1);
            peer.last_seen = now;
        }
    }

    /// Drop peers whose heartbeat timed out. Call it every few seconds.
    pub fn tick(&mut self, now: Instant) -> Tick {
        let timeout = self.cfg.heartbeat_timeout;
        let expired: Vec<PeerId> = self
            .peers
            .iter()
            .filter(|(_, p)| {
                p.streams_open == 0 && now.saturating_duration_since(p.last_seen) > timeout
            })
            .map(|(id, _)| id.clone())
            .collect();
        let mut tick = Tick::default();
        for id in expired {
            let told = if self.peers[&id].role == Role::Worker {
                worker_down
            } else {
                left
            };
            self.counters.peers_expired += 1;
            tick.deliveries.extend(self.remove_peer(now, &id, told));
            tick.removed.push(id);
        }
        tick
    }

    /// Peers to connect to: the worker first, then peers that hold what is
    /// wanted (most matches first), then the most recent joiners.
    ///
    /// Only peers that joined before `me` are suggested, and none to the
    /// worker: every pair has one initiator (the younger visitor; a visitor
    /// towards the worker), so two offers never cross. Crossed offers are
    /// resolved by rollback, but that costs a round of negotiation, which
    /// took seconds on a loaded machine.
    ///
    /// A peer whose event stream has closed is left out: its browser is
    /// most likely gone (closed before its goodbye), and an offer to it
    /// would hang until it times out; if it is only reconnecting, later
    /// announces find it again.
    /// `me` could not reach these peers of its swarm: remember it both ways.
    fn note_unreachable(&mut self, me: &str, peers: &[PeerId]) {
        let Some(swarm) = self.peers.get(me).map(|p| p.swarm.clone()) else {
            return;
        };
        for target in peers.iter().take(MAX_UNREACHABLE_REPORT) {
            let Some(t) = self.peers.get_mut(target) else {
                continue;
            };
            if t.swarm != swarm || target == me {
                continue;
            }
            if t.unreached_by.len() < UNREACHABLE_BY_ALL {
                t.unreached_by.insert(me.to_string());
            }
            let cap = self.cfg.max_connections * 4;
            let mine = &mut self
                .peers
                .get_mut(me)
                .expect("the reporter was authenticated")
                .cannot_reach;
            if mine.len() < cap {
                mine.insert(target.clone());
            }
        }
    }

    fn suggest(&self, me: &str, want: &[String]) -> Vec<PeerId> {
        let Some(peer) = self.peers.get(me) else {
            return Vec::new();
        };
        let swarm = &self.swarms[&peer.swarm];
        let Some(mine) = swarm.visitors.iter().position(|v| v == me) else {
            return Vec::new(); // the worker: visitors come to it
        };
        let mut out: Vec<PeerId> = Vec::new();
        // Left out: a peer whose stream closed (most likely gone), one this
        // peer reported it could not reach, and one nobody reaches.
        let reachable = |id: &PeerId| {
            let p = &self.peers[id];
            (p.streams_open > 0 || !p.streamed)
                && !peer.cannot_reach.contains(id)
                && p.unreached_by.len() < UNREACHABLE_BY_ALL
        };
        if let Some(w) = swarm.worker.as_ref().filter(|w| reachable(w)) {
            out.push(w.clone());
        }
        let mut holders: Vec<(usize, usize, &PeerId)> = swarm.visitors[..mine]
            .iter()
            .enumerate()
            .filter(|(_, v)| reachable(v))
            .map(|(order, v)| {
                let have = &self.peers[v].have;
                let score = if want.is_empty() {
                    have.len().min(1)
                } else {
                    want.iter().filter(|id| have.contains(*id)).count()
                };
                (score, order, v)
            })
            .collect();
        // Most matches first; among equals the most recent joiner first.
        holders.sort_by(|a, b| b.0.cmp(&a.0).then(b.1.cmp(&a.1)));
        for (_, _, v) in holders {
            if out.len() >= self.cfg.max_connections {
                break;
            }
            out.push(v.clone());
        }
        out
    }

    fn swarm_with_room(&mut self, scope: &str) -> SwarmId {
        let room = self
            .swarms
            .iter()
            .find(|(_, s)| s.scope == scope && s.visitors.len() < self.cfg.peers_per_swarm)
            .map(|(id, _)| id.clone());
        if let Some(id) = room {
            return id;
        }
        // Resumed swarms keep their former ids: skip those.
        let mut id = format!("s{}", self.next_swarm);
        while self.swarms.contains_key(&id) {
            self.next_swarm += 1;
            id = format!("s{}", self.next_swarm);
        }
        self.next_swarm += 1;
        self.swarms.insert(id.clone(), Swarm::new(scope));
        id
    }

    /// Queue `event` for `to` and remember it for resume. `None` if `to` is gone.
    fn deliver(&mut self, to: &str, event: &ServerEvent) -> Option<Delivery> {
        let encoded = Event::new(None, event);
        self.deliver_encoded(to, &encoded)
    }

    /// [`Hub::deliver`] to each of `to`, serialising the event once.
    fn broadcast(&mut self, to: &[PeerId], event: &ServerEvent) -> Vec<Delivery> {
        let encoded = Event::new(None, event);
        to.iter()
            .filter_map(|r| self.deliver_encoded(r, &encoded))
            .collect()
    }

    fn deliver_encoded(&mut self, to: &str, encoded: &Event) -> Option<Delivery> {
        let peer = self.peers.get_mut(to)?;
        let event = Event {
            id: Some(peer.next_event_id),
            ..encoded.clone()
        };
        peer.next_event_id += 1;
        peer.recent_bytes += event.data.len();
        peer.recent.push_back(event.clone());
        while peer.recent.len() > self.cfg.replay_events
            || peer.recent_bytes > self.cfg.replay_bytes
        {
            match peer.recent.pop_front() {
                Some(old) => peer.recent_bytes -= old.data.len(),
                None => break,
            }
        }
        Some(Delivery {
            to: to.to_string(),
            event,
        })
    }

    /// Remove a peer; the rest of its swarm hears `told(peer_id)`.
    fn remove_peer(
        &mut self,
        now: Instant,
        id: &str,
        told: fn(PeerId) -> ServerEvent,
    ) -> Vec<Delivery> {
        let Some(peer) = self.peers.remove(id) else {
            return Vec::new();
        };
        self.tokens.remove(&peer.token);
        let swarm = self
            .swarms
            .get_mut(&peer.swarm)
            .expect("a peer's swarm exists");
        match peer.role {
            Role::Visitor => {
                swarm.visitors.retain(|v| v != id);
                if swarm.visitors.is_empty() {
                    swarm.idle_since = Some(now);
                }
            }
            Role::Worker => {
                if swarm.worker.as_deref() == Some(id) {
                    swarm.worker = None;
                }
            }
        }
        let recipients: Vec<PeerId> = swarm
            .visitors
            .iter()
            .chain(swarm.worker.iter())
            .cloned()
            .collect();
        if recipients.is_empty() {
            self.swarms.remove(&peer.swarm);
        }
        let out = self.broadcast(&recipients, &told(id.to_string()));
        self.debug_check();
        out
    }

    fn debug_check(&self) {
        if cfg!(debug_assertions) {
            self.check();
        }
    }

    /// Panics if an invariant of the module docs is broken.
    pub fn check(&self) {
        assert_eq!(self.tokens.len(), self.peers.len(), "one token per peer");
        for (token, id) in &self.tokens {
            assert_eq!(&self.peers[id].token, token, "token maps back to its peer");
        }
        let mut listed = 0;
        for (sid, s) in &self.swarms {
            assert!(
                s.visitors.len() <= self.cfg.peers_per_swarm,
                "swarm over capacity"
            );
            assert!(
                !s.visitors.is_empty() || s.worker.is_some(),
                "empty swarm kept"
            );
            for v in &s.visitors {
                assert_eq!(&self.peers[v].swarm, sid);
                assert_eq!(self.peers[v].role, Role::Visitor);
            }
            if let Some(w) = &s.worker {
                assert_eq!(&self.peers[w].swarm, sid);
                assert_eq!(self.peers[w].role, Role::Worker);
            }
            listed += s.visitors.len() + s.worker.iter().count();
        }
        assert_eq!(
            listed,
            self.peers.len(),
            "every peer is in exactly one swarm"
        );
    }
}

impl Swarm {
    fn new(scope: &str) -> Swarm {
        Swarm {
            scope: scope.to_string(),
            visitors: Vec::new(),
            worker: None,
            resources: BTreeMap::new(),
            idle_since: None,
        }
    }
}

fn validate_scope(scope: &str) -> Result<(), CoreError> {
    if scope.is_empty()
        || scope.len() > 256
        || !scope.starts_with('/')
        || scope.chars().any(|c| c.is_control())
    {
        return Err(CoreError::BadRequest(
            "scope must be a path starting with / (at most 256 bytes)",
        ));
    }
    Ok(())
}

fn left(peer_id: PeerId) -> ServerEvent {
    ServerEvent::PeerLeft { peer_id }
}

fn worker_down(peer_id: PeerId) -> ServerEvent {
    ServerEvent::WorkerDown { peer_id }
}

fn hot_event<'a>(resources: impl Iterator<Item = (&'a String, &'a String)>) -> Option<ServerEvent> {
    let resources: Vec<HotResource> = resources
        .map(|(id, path)| HotResource {
            path: path.clone(),
            id: id.clone(),
        })
        .collect();
    (!resources.is_empty()).then_some(ServerEvent::Hot { resources })
}

#[cfg(test)]
mod tests;
