//! The hub driven by many simulated peers on a virtual clock.

use super::*;

struct Sim {
    hub: Hub,
    now: Instant,
    n: u64,
}

impl Sim {
    fn new(cfg: HubConfig) -> Self {
        Sim {
            hub: Hub::new(cfg),
            now: Instant::now(),
            n: 0,
        }
    }

    fn ids(&mut self) -> NewIds {
        self.n += 1;
        NewIds {
            peer_id: format!("p{}", self.n),
            token: format!("t{:040}", self.n),
        }
    }

    fn join(&mut self, scope: &str) -> Joined {
        let ids = self.ids();
        let req = JoinRequest {
            scope: scope.into(),
            role: JoinAs::Visitor,
            have: vec![],
        };
        self.hub.join(self.now, req, ids).expect("join succeeds")
    }

    fn join_worker(&mut self, swarm: &str) -> Joined {
        let ids = self.ids();
        let req = JoinRequest {
            scope: "/".into(),
            role: JoinAs::Worker {
                swarm: swarm.into(),
            },
            have: vec![],
        };
        self.hub
            .join(self.now, req, ids)
            .expect("worker join succeeds")
    }

    fn advance(&mut self, d: Duration) -> Tick {
        self.now += d;
        self.hub.tick(self.now)
    }
}

fn rid(n: u8) -> String {
    format!("{:02x}", n).repeat(32)
}

fn kinds_for<'a>(ds: &'a [Delivery], to: &str) -> Vec<&'a str> {
    ds.iter()
        .filter(|d| d.to == to)
        .map(|d| d.event.kind.as_str())
        .collect()
}

/// A signal payload (a JSON object).
fn sig(json: &str) -> SignalData {
    SignalData::parse(json).expect("test payloads are JSON objects")
}

#[test]
fn swarms_fill_to_capacity_then_a_new_one_opens() {
    let mut sim = Sim::new(HubConfig {
        peers_per_swarm: 3,
        ..HubConfig::default()
    });
    let swarms: Vec<String> = (0..7).map(|_| sim.join("/").swarm_id).collect();
    assert_eq!(swarms, ["s1", "s1", "s1", "s2", "s2", "s2", "s3"]);
    // Another site scope never shares a swarm with the first.
    assert_eq!(sim.join("/blog/").swarm_id, "s4");
    assert_eq!(sim.hub.swarm_count(), 4);
    sim.hub.check();
}

#[test]
fn the_server_refuses_peers_beyond_its_limit_and_others_are_unaffected() {
    let mut sim = Sim::new(HubConfig {
        max_peers: 2,
        ..HubConfig::default()
    });
    let a = sim.join("/");
    let b = sim.join("/");
    let ids = sim.ids();
    let req = JoinRequest {
        scope: "/".into(),
        role: JoinAs::Visitor,
        have: vec![],
    };
    assert_eq!(
        sim.hub.join(sim.now, req, ids).map(|_| ()),
        Err(CoreError::ServerFull(2))
    );
    let now = sim.now;
    assert!(sim
        .hub
        .signal(now, &a.token, &b.peer_id, sig(r#"{"n":1}"#))
        .is_ok());
}

#[test]
fn a_signal_goes_only_to_its_target_as_the_sender() {
    let mut sim = Sim::new(HubConfig::default());
    let a = sim.join("/");
    let b = sim.join("/");
    let now = sim.now;
    let d = sim
        .hub
        .signal(
            now,
            &a.token,
            &b.peer_id,
            sig(r#"{"type":"offer","sdp":"x"}"#),
        )
        .expect("same swarm");
    assert_eq!(d.to, b.peer_id);
    assert_eq!(d.event.kind, EventKind::Signal);
    let v: serde_json::Value = serde_json::from_str(&d.event.data).expect("valid JSON");
    assert_eq!(v["from"], a.peer_id.as_str());
    assert_eq!(v["data"]["sdp"], "x");
    assert_eq!(sim.hub.counters().signals_relayed, 1);
}

#[test]
fn forged_tokens_other_swarms_and_unknown_peers_are_refused() {
    let mut sim = Sim::new(HubConfig {
        peers_per_swarm: 1,
        ..HubConfig::default()
    });
    let a = sim.join("/");
    let b = sim.join("/");
    assert_ne!(a.swarm_id, b.swarm_id);
    let now = sim.now;
    let h = &mut sim.hub;
    assert_eq!(
        h.signal(now, "forged", &b.peer_id, sig(r#"{"n":1}"#)),
        Err(CoreError::InvalidToken)
    );
    assert_eq!(
        h.signal(now, &a.token, &b.peer_id, sig(r#"{"n":1}"#)),
        Err(CoreError::OtherSwarm(b.peer_id.clone()))
    );
    assert_eq!(
        h.signal(now, &a.token, "nobody", sig(r#"{"n":1}"#)),
        Err(CoreError::UnknownPeer("nobody".into()))
    );
    assert_eq!(
        h.signal(now, &a.token, &a.peer_id, sig(r#"{"n":1}"#)),
        Err(CoreError::SelfSignal)
    );
    // A peer id is not a token: knowing someone's id does not let you post as them.
    assert_eq!(
        h.signal(now, &a.peer_id, &b.peer_id, sig(r#"{"n":1}"#)),
        Err(CoreError::InvalidToken)
    );
    assert_eq!(h.counters().signals_relayed, 0);
}

#[test]
fn silent_peers_expire_and_their_swarm_is_told() {
    let mut sim = Sim::new(HubConfig::default());
    let a = sim.join("/");
    let b = sim.join("/");
    let now = sim.now;
    sim.hub
        .stream_opened(now, &b.token, None)
        .expect("b streams");
    // a neither streams nor posts; b's open stream keeps it alive.
    assert!(sim.advance(Duration::from_secs(30)).removed.is_empty());
    let tick = sim.advance(Duration::from_secs(20));
    assert_eq!(tick.removed, vec![a.peer_id.clone()]);
    assert_eq!(kinds_for(&tick.deliveries, &b.peer_id), ["peer-left"]);
    let now = sim.now;
    assert_eq!(
        sim.hub.authenticate(now, &a.token),
        Err(CoreError::InvalidToken)
    );
    // b closes its stream and goes quiet: it expires too, and the swarm is gone.
    sim.hub.stream_closed(sim.now, &b.peer_id);
    assert_eq!(
        sim.advance(Duration::from_secs(46)).removed,
        vec![b.peer_id]
    );
    assert_eq!(sim.hub.swarm_count(), 0);
    assert_eq!(sim.hub.counters().peers_expired, 2);
}

#[test]
fn posting_counts_as_a_heartbeat() {
    let mut sim = Sim::new(HubConfig::default());
    let a = sim.join("/");
    for _ in 0..10 {
        assert!(sim.advance(Duration::from_secs(30)).removed.is_empty());
        let now = sim.now;
        sim.hub
            .announce(now, &a.token, Announce::default())
            .expect("announce");
    }
}

#[test]
fn a_reconnecting_stream_resumes_after_its_last_event_id() {
    let mut sim = Sim::new(HubConfig::default());
    let a = sim.join("/");
    let b = sim.join("/");
    let now = sim.now;
    let ids: Vec<u64> = (0..5)
        .map(|i| {
            let d = sim
                .hub
                .signal(now, &a.token, &b.peer_id, sig(&format!(r#"{{"n":{i}}}"#)))
                .expect("relay");
            d.event.id.expect("signals are numbered")
        })
        .collect();
    assert!(ids.windows(2).all(|w| w[1] > w[0]));
    let start = sim
        .hub
        .stream_opened(now, &b.token, Some(ids[2]))
        .expect("resume");
    assert_eq!(start.events[0].kind, EventKind::Hello);
    assert_eq!(start.events[0].id, None);
    let replayed: Vec<u64> = start.events[1..].iter().filter_map(|e| e.id).collect();
    assert_eq!(replayed, ids[3..]);
    // A first stream, without Last-Event-ID, gets everything since the join.
    let first = sim.hub.stream_opened(now, &b.token, None).expect("open");
    assert_eq!(first.events.len(), 1 + ids.len());
}

#[test]
fn the_replay_buffer_is_bounded_by_count_and_bytes() {
    let mut sim = Sim::new(HubConfig {
        replay_events: 8,
        replay_bytes: 4096,
        ..HubConfig::default()
    });
    let a = sim.join("/");
    let b = sim.join("/");
    let now = sim.now;
    for _ in 0..100 {
        sim.hub
            .signal(now, &a.token, &b.peer_id, sig(r#"{"n":1}"#))
            .expect("relay");
    }
    let start = sim.hub.stream_opened(now, &b.token, Some(0)).expect("open");
    assert_eq!(start.events.len(), 1 + 8);
    let big = format!(r#"{{"pad":"{}"}}"#, "x".repeat(1500));
    for _ in 0..10 {
        sim.hub
            .signal(now, &a.token, &b.peer_id, sig(&big))
            .expect("relay");
    }
    let start = sim.hub.stream_opened(now, &b.token, Some(0)).expect("open");
    let bytes: usize = start.events[1..].iter().map(|e| e.data.len()).sum();
    assert!(bytes <= 4096, "{bytes}");
}

#[test]
fn the_worker_is_suggested_first_and_told_what_is_hot() {
    let mut sim = Sim::new(HubConfig::default());
    let a = sim.join("/");
    let now = sim.now;
    let announce = Announce {
        have: vec![rid(1)],
        paths: vec![(rid(1), "/img/a.jpg".into())],
        ..Announce::default()
    };
    sim.hub.announce(now, &a.token, announce).expect("announce");
    let w = sim.join_worker(&a.swarm_id);
    assert_eq!(w.role, Role::Worker);
    assert_eq!(
        kinds_for(&w.deliveries, &a.peer_id),
        ["peer-joined", "worker-up"]
    );
    let hot: Vec<&Delivery> = w
        .deliveries
        .iter()
        .filter(|d| d.event.kind == EventKind::Hot)
        .collect();
    assert_eq!(hot.len(), 1);
    assert!(hot[0].event.data.contains("/img/a.jpg"));
    // A new visitor meets the worker first, then the peer that holds something.
    let b = sim.join("/");
    assert_eq!(b.peers, [w.peer_id.clone(), a.peer_id.clone()]);
    assert_eq!(b.worker.as_deref(), Some(w.peer_id.as_str()));
    // A resource first seen after the worker joined is pushed to it as hot.
    let now = sim.now;
    let (answer, ds) = sim
        .hub
        .announce(
            now,
            &b.token,
            Announce {
                want: vec![rid(1)],
                paths: vec![(rid(2), "/img/b.jpg".into())],
                ..Announce::default()
            },
        )
        .expect("announce");
    assert_eq!(answer.peers, [w.peer_id.clone(), a.peer_id]);
    assert_eq!(kinds_for(&ds, &w.peer_id), ["hot"]);
    assert!(ds[0].event.data.contains("/img/b.jpg") && !ds[0].event.data.contains("/img/a.jpg"));
}

#[test]
fn a_peer_whose_stream_closed_is_not_suggested() {
    let mut sim = Sim::new(HubConfig::default());
    let a = sim.join("/");
    let b = sim.join("/");
    let now = sim.now;
    sim.hub
        .stream_opened(now, &a.token, None)
        .expect("a's stream");
    sim.hub
        .stream_opened(now, &b.token, None)
        .expect("b's stream");
    // a's browser closes without a goodbye: its stream ends, its heartbeat
    // has not timed out yet.
    sim.hub.stream_closed(now, &a.peer_id);
    let c = sim.join("/");
    assert_eq!(c.peers, [b.peer_id.as_str()]);
    // Reconnected, it is suggested again.
    sim.hub
        .stream_opened(now, &a.token, Some(0))
        .expect("a reconnects");
    let d = sim.join("/");
    assert_eq!(
        d.peers,
        [c.peer_id.clone(), b.peer_id.clone(), a.peer_id.clone()]
    );
}

#[test]
fn every_pair_of_peers_has_one_initiator() {
    let mut sim = Sim::new(HubConfig::default());
    let a = sim.join("/");
    let b = sim.join("/");
    let w = sim.join_worker(&a.swarm_id);
    let c = sim.join("/");
    assert_eq!(a.peers, Vec::<PeerId>::new());
    assert_eq!(b.peers, [a.peer_id.as_str()]);
    assert_eq!(
        c.peers,
        [w.peer_id.clone(), b.peer_id.clone(), a.peer_id.clone()]
    );
    // Announces keep to the same rule: older peers (and the worker) never
    // hear of younger ones, whatever they hold; the worker hears of nobody.
    let now = sim.now;
    let holds = Announce {
        have: vec![rid(1)],
        ..Announce::default()
    };
    sim.hub.announce(now, &c.token, holds).expect("announce");
    let wants = Announce {
        want: vec![rid(1)],
        ..Announce::default()
    };
    let (to_a, _) = sim
        .hub
        .announce(now, &a.token, wants.clone())
        .expect("announce");
    assert_eq!(to_a.peers, [w.peer_id.as_str()]);
    let (to_b, _) = sim
        .hub
        .announce(now, &b.token, wants.clone())
        .expect("announce");
    assert_eq!(to_b.peers, [w.peer_id.clone(), a.peer_id.clone()]);
    let (to_w, _) = sim.hub.announce(now, &w.token, wants).expect("announce");
    assert!(to_w.peers.is_empty());
}

#[test]
fn a_peer_reported_unreachable_is_not_suggested_to_its_reporter_and_after_three_to_nobody() {
    let mut sim = Sim::new(HubConfig::default());
    let old = sim.join("/");
    let a = sim.join("/");
    let b = sim.join("/");
    let c = sim.join("/");
    let d = sim.join("/");
    let now = sim.now;
    let report = |peers: &[&str]| Announce {
        unreachable: peers.iter().map(|p| p.to_string()).collect(),
        ..Announce::default()
    };
    let (to_a, _) = sim
        .hub
        .announce(now, &a.token, report(&[&old.peer_id]))
        .expect("announce");
    assert!(
        !to_a.peers.contains(&old.peer_id),
        "a said it cannot reach it: {:?}",
        to_a.peers
    );
    let (to_b, _) = sim
        .hub
        .announce(now, &b.token, Announce::default())
        .expect("announce");
    assert!(
        to_b.peers.contains(&old.peer_id),
        "one visitor's bad luck is not everyone's"
    );
    for reporter in [&b, &c] {
        sim.hub
            .announce(now, &reporter.token, report(&[&old.peer_id]))
            .expect("announce");
    }
    let (to_d, _) = sim
        .hub
        .announce(now, &d.token, Announce::default())
        .expect("announce");
    assert!(
        !to_d.peers.contains(&old.peer_id),
        "three visitors could not reach it: nobody is sent there"
    );
    assert!(to_d.peers.contains(&a.peer_id));
    // Reports about peers of other swarms, unknown peers or oneself change nothing.
    let other = Sim::new(HubConfig::default()).join("/elsewhere");
    let (to_a, _) = sim
        .hub
        .announce(
            now,
            &a.token,
            report(&[&a.peer_id, "nobody", &other.peer_id]),
        )
        .expect("announce");
    assert!(!to_a.peers.contains(&old.peer_id));
}

#[test]
fn a_worker_going_down_is_announced_and_a_replacement_takes_its_place() {
    let mut sim = Sim::new(HubConfig::default());
    let a = sim.join("/");
    let w1 = sim.join_worker(&a.swarm_id);
    let now = sim.now;
    let down = sim.hub.worker_down(now, &a.swarm_id);
    assert_eq!(kinds_for(&down, &a.peer_id), ["worker-down"]);
    assert_eq!(
        sim.hub.authenticate(now, &w1.token),
        Err(CoreError::InvalidToken)
    );
    let w2 = sim.join_worker(&a.swarm_id);
    assert_eq!(
        kinds_for(&w2.deliveries, &a.peer_id),
        ["peer-joined", "worker-up"]
    );
    // A second worker for the same swarm replaces the first.
    let w3 = sim.join_worker(&a.swarm_id);
    assert!(w3
        .deliveries
        .iter()
        .any(|d| d.event.data.contains(&w2.peer_id)));
    assert_eq!(
        sim.hub.swarms()[0].worker.as_deref(),
        Some(w3.peer_id.as_str())
    );
    sim.hub.check();
}

#[test]
fn a_worker_cannot_join_a_swarm_that_does_not_exist() {
    let mut sim = Sim::new(HubConfig::default());
    let ids = sim.ids();
    let req = JoinRequest {
        scope: "/".into(),
        role: JoinAs::Worker { swarm: "s9".into() },
        have: vec![],
    };
    assert_eq!(
        sim.hub.join(sim.now, req, ids).map(|_| ()),
        Err(CoreError::UnknownSwarm("s9".into()))
    );
}

#[test]
fn an_idle_swarm_keeps_its_worker_until_released() {
    let mut sim = Sim::new(HubConfig::default());
    let a = sim.join("/");
    let w = sim.join_worker(&a.swarm_id);
    let now = sim.now;
    sim.hub
        .stream_opened(now, &w.token, None)
        .expect("worker streams");
    sim.hub.leave(now, &a.token).expect("leave");
    let info = &sim.hub.swarms()[0];
    assert_eq!(info.visitors, 0);
    assert_eq!(info.idle_since, Some(now));
    sim.hub.worker_down(now, &a.swarm_id);
    assert_eq!(sim.hub.swarm_count(), 0);
}

#[test]
fn bad_announces_are_refused_without_changing_state() {
    let mut sim = Sim::new(HubConfig::default());
    let a = sim.join("/");
    let now = sim.now;
    let bad_id = Announce {
        have: vec!["not-an-id".into()],
        ..Announce::default()
    };
    assert!(matches!(
        sim.hub.announce(now, &a.token, bad_id),
        Err(CoreError::BadRequest(_))
    ));
    let bad_path = Announce {
        paths: vec![(rid(3), "/../etc/passwd".into())],
        ..Announce::default()
    };
    assert!(matches!(
        sim.hub.announce(now, &a.token, bad_path),
        Err(CoreError::BadPath(_))
    ));
    assert_eq!(sim.hub.swarms()[0].resources, 0);
}

#[test]
fn many_peers_churning_keep_every_invariant() {
    // A deterministic pseudo-random walk: joins, leaves, signals, silence.
    let mut sim = Sim::new(HubConfig {
        peers_per_swarm: 5,
        max_peers: 60,
        ..HubConfig::default()
    });
    let mut live: Vec<Joined> = Vec::new();
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for _ in 0..5000 {
        let now = sim.now;
        match next() % 10 {
            0..=3 => {
                let ids = sim.ids();
                let req = JoinRequest {
                    scope: if next() % 4 == 0 {
                        "/b/".into()
                    } else {
                        "/".into()
                    },
                    role: JoinAs::Visitor,
                    have: vec![],
                };
                match sim.hub.join(now, req, ids) {
                    Ok(j) => live.push(j),
                    Err(e) => assert_eq!(e, CoreError::ServerFull(60)),
                }
            }
            4 if !live.is_empty() => {
                let j = live.swap_remove((next() as usize) % live.len());
                sim.hub.leave(now, &j.token).expect("live peer can leave");
            }
            5..=8 if live.len() > 1 => {
                let a = &live[(next() as usize) % live.len()];
                let b = &live[(next() as usize) % live.len()];
                let r = sim.hub.signal(now, &a.token, &b.peer_id, sig("{}"));
                let same = sim.hub.swarm_of(&a.peer_id) == sim.hub.swarm_of(&b.peer_id);
                match r {
                    Ok(d) => assert!(same && d.to == b.peer_id),
                    Err(CoreError::SelfSignal) => assert_eq!(a.peer_id, b.peer_id),
                    Err(CoreError::OtherSwarm(_)) => assert!(!same),
                    Err(e) => panic!("unexpected {e}"),
                }
            }
            _ => {
                let tick = sim.advance(Duration::from_secs(20));
                live.retain(|j| !tick.removed.contains(&j.peer_id));
                // Half the survivors post a heartbeat.
                let now = sim.now;
                for j in &live {
                    if next() % 2 == 0 {
                        sim.hub
                            .announce(now, &j.token, Announce::default())
                            .expect("heartbeat");
                    }
                }
            }
        }
        sim.hub.check();
        assert_eq!(sim.hub.peer_count(), live.len());
    }
}

#[test]
fn the_join_answer_carries_the_configured_budgets() {
    let mut sim = Sim::new(HubConfig {
        max_connections: 4,
        worker_connections: 9,
        heartbeat_interval: Duration::from_secs(7),
        max_have_per_peer: 2,
        ..HubConfig::default()
    });
    let a = sim.join("/");
    assert_eq!(
        (a.max_connections, a.heartbeat_interval),
        (4, Duration::from_secs(7))
    );
    let w = sim.join_worker(&a.swarm_id);
    assert_eq!(w.max_connections, 9);
    // Claiming to hold more than a peer may is refused, not truncated.
    let ids = sim.ids();
    let req = JoinRequest {
        scope: "/".into(),
        role: JoinAs::Visitor,
        have: vec![rid(1), rid(2), rid(3)],
    };
    assert_eq!(
        sim.hub.join(sim.now, req, ids).map(|_| ()),
        Err(CoreError::TooManyIds(2))
    );
    // Leaving names the peer that left, once authenticated.
    let now = sim.now;
    let left = sim.hub.leave(now, &a.token).expect("a can leave");
    assert_eq!(left.peer_id, a.peer_id);
    assert_eq!(kinds_for(&left.deliveries, &w.peer_id), ["peer-left"]);
    sim.hub.check();
}

/// A hub that signs tokens with `secret`, as the process `boot`.
fn signing(secret: &[u8], boot: &str, peers_per_swarm: usize) -> Sim {
    Sim::new(HubConfig {
        peers_per_swarm,
        token_key: Some(TokenKey::new(secret, boot)),
        ..HubConfig::default()
    })
}

#[test]
fn a_restarted_hub_takes_visitors_back_from_their_signed_tokens() {
    let mut before = signing(b"site secret", "bootA", 30);
    let a = before.join("/");
    let b = before.join("/");
    assert!(a.token.starts_with("w1.bootA.v."), "{}", a.token);
    // The restart: a new process, the same secret, nothing remembered.
    let mut after = signing(b"site secret", "bootB", 30);
    after.n = 100;
    let now = after.now;
    // b comes back by announcing; a's signal reaches it under its old id.
    let (answer, _) = after
        .hub
        .announce(now, &b.token, Announce::default())
        .expect("b is taken back");
    assert!(answer.peers.is_empty(), "a is not back yet");
    let start = after
        .hub
        .stream_opened(now, &a.token, Some(12))
        .expect("a is taken back by its stream");
    assert_eq!(start.peer_id, a.peer_id);
    let d = after
        .hub
        .signal(now, &a.token, &b.peer_id, sig(r#"{"n":1}"#))
        .expect("same swarm, same ids");
    assert_eq!(d.to, b.peer_id);
    // b's client last saw event 40 of the former process: what was queued
    // since goes out after it, and so does what comes next.
    let b_start = after
        .hub
        .stream_opened(now, &b.token, Some(40))
        .expect("b streams");
    let ids: Vec<Option<u64>> = b_start.events.iter().map(|e| e.id).collect();
    assert_eq!(ids, [None, Some(41)]);
    let next = after
        .hub
        .signal(now, &a.token, &b.peer_id, sig(r#"{"n":2}"#))
        .expect("relay");
    assert_eq!(next.event.id, Some(42));
    // A later reconnect resumes from the new numbering as usual.
    let again = after
        .hub
        .stream_opened(now, &b.token, Some(41))
        .expect("reconnect");
    assert_eq!(
        again.events.iter().filter_map(|e| e.id).collect::<Vec<_>>(),
        [42]
    );
    // A newcomer lands in the same swarm and is offered the resumed peers.
    let c = after.join("/");
    assert_eq!(c.swarm_id, a.swarm_id);
    assert!(c.peers.contains(&a.peer_id) && c.peers.contains(&b.peer_id));
    assert_eq!(after.hub.counters().resumed, 2);
    after.hub.check();
}

#[test]
fn tokens_that_must_not_come_back_are_refused() {
    let mut before = signing(b"site secret", "bootA", 2);
    let v1 = before.join("/");
    let v2 = before.join("/");
    let w = before.join_worker(&v1.swarm_id);
    let mut after = signing(b"site secret", "bootB", 2);
    let now = after.now;
    // A worker's token: its browser belonged to the former process.
    assert_eq!(
        after.hub.authenticate(now, &w.token),
        Err(CoreError::InvalidToken)
    );
    // Another secret, or none, knows nothing of these tokens.
    let mut stranger = signing(b"another secret", "bootC", 2);
    assert_eq!(
        stranger.hub.authenticate(now, &v1.token),
        Err(CoreError::InvalidToken)
    );
    let mut plain = Sim::new(HubConfig::default());
    assert_eq!(
        plain.hub.authenticate(now, &v1.token),
        Err(CoreError::InvalidToken)
    );
    // The swarm id now serves another scope: rejoin instead.
    after.n = 100;
    let newcomer = after.join("/blog/");
    assert_eq!(newcomer.swarm_id, v1.swarm_id, "s1 is taken afresh");
    assert_eq!(
        after.hub.authenticate(now, &v1.token),
        Err(CoreError::InvalidToken)
    );
    // A full swarm takes nobody back.
    let mut crowded = signing(b"site secret", "bootE", 1);
    crowded.hub.authenticate(now, &v1.token).expect("v1 back");
    assert_eq!(
        crowded.hub.authenticate(now, &v2.token),
        Err(CoreError::InvalidToken),
        "v1 holds the one place of s1"
    );
    // A token of this very process that it no longer knows (the peer left)
    // stays refused.
    let left = crowded.hub.leave(now, &v1.token).expect("leave");
    assert_eq!(left.peer_id, v1.peer_id);
    let mine = crowded.join("/");
    crowded.hub.leave(now, &mine.token).expect("leave");
    assert_eq!(
        crowded.hub.authenticate(now, &mine.token),
        Err(CoreError::InvalidToken)
    );
    for sim in [&after, &crowded, &stranger, &plain] {
        sim.hub.check();
    }
}

#[test]
fn new_swarms_skip_the_ids_resumed_swarms_hold() {
    let mut before = signing(b"k", "bootA", 1);
    let peers: Vec<Joined> = (0..3).map(|_| before.join("/")).collect();
    assert_eq!(peers[2].swarm_id, "s3");
    let mut after = signing(b"k", "bootB", 1);
    after.n = 100;
    let now = after.now;
    after
        .hub
        .authenticate(now, &peers[1].token)
        .expect("back to s2");
    let fresh: Vec<String> = (0..3).map(|_| after.join("/").swarm_id).collect();
    assert_eq!(fresh, ["s1", "s3", "s4"]);
    after.hub.check();
}
