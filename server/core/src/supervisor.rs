//! The worker-browser lifecycle, kept apart from Chromium and its IO.
//!
//! One [`Supervisor`] decides which swarm gets a worker browser, in which
//! profile slot, and when to restart or release it. The server feeds it what
//! it observed ([`Observation`]s, swarm snapshots) with the time, and carries
//! out the [`Action`]s it returns. Lifecycle of a slot:
//!
//! ```text
//! Starting --joined--> Ready --first hot resource served--> Serving
//!    |                   |                                     |
//!    +---- exited / hung / start timeout (kill) ----------------+--> Backoff --delay--> Starting
//!    Ready/Serving --swarm idle for idle_release--> Stopping --exited--> (slot free)
//! ```
//!
//! Invariants: at most `max_workers` slots are in use; a swarm has at most one
//! slot; a slot's profile index is never shared by two live slots, so a
//! restarted worker reuses its predecessor's profile (and its cache).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::hub::SwarmInfo;

#[derive(Debug, Clone)]
pub struct SupervisorConfig {
    pub max_workers: usize,
    /// A worker that has not joined its swarm this long after launch is killed.
    pub start_timeout: Duration,
    /// A worker whose page has not answered a heartbeat this long is hung.
    pub hang_timeout: Duration,
    /// A swarm without visitors releases its worker after this long.
    pub idle_release: Duration,
    /// First restart delay; doubles per consecutive failure up to `max_backoff`.
    pub base_backoff: Duration,
    pub max_backoff: Duration,
    /// A worker that stayed up this long has its failure count reset.
    pub healthy_after: Duration,
}

impl Default for SupervisorConfig {
    fn default() -> Self {
        SupervisorConfig {
            max_workers: 2,
            start_timeout: Duration::from_secs(30),
            hang_timeout: Duration::from_secs(20),
            idle_release: Duration::from_secs(120),
            base_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(60),
            healthy_after: Duration::from_secs(60),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotState {
    Starting { since: Instant },
    Ready { since: Instant },
    Serving { since: Instant },
    Backoff { until: Instant },
    Stopping { since: Instant },
}

impl SlotState {
    pub fn name(&self) -> &'static str {
        match self {
            SlotState::Starting { .. } => "starting",
            SlotState::Ready { .. } => "ready",
            SlotState::Serving { .. } => "serving",
            SlotState::Backoff { .. } => "backoff",
            SlotState::Stopping { .. } => "stopping",
        }
    }

    pub fn is_alive(&self) -> bool {
        matches!(self, SlotState::Ready { .. } | SlotState::Serving { .. })
    }
}

#[derive(Debug, Clone)]
pub struct Slot {
    pub swarm: String,
    pub profile: usize,
    pub state: SlotState,
    /// Consecutive failures (crash, hang, start timeout) since the last healthy run.
    pub failures: u32,
    pub last_heartbeat: Instant,
    /// Launch generation: observations about an older launch are ignored.
    pub generation: u64,
}

/// What the server saw happen to a worker browser.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Observation {
    /// The worker page joined its swarm (the hub has it as the swarm's worker).
    Joined { swarm: String, generation: u64 },
    /// The worker page answered a CDP evaluate; `serving` once it holds content.
    Heartbeat {
        swarm: String,
        generation: u64,
        serving: bool,
    },
    /// The browser process exited or its CDP connection closed.
    Exited { swarm: String, generation: u64 },
    /// Launching failed before a page existed.
    LaunchFailed { swarm: String, generation: u64 },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Start a browser for `swarm` with profile slot `profile`.
    Launch {
        swarm: String,
        profile: usize,
        generation: u64,
    },
    /// Stop (close, then kill if needed) the browser of this launch.
    Kill {
        swarm: String,
        generation: u64,
        reason: &'static str,
    },
    /// Tell the swarm its worker is gone (the hub sends `worker-down`).
    TellDown { swarm: String },
}

#[derive(Debug)]
pub struct Supervisor {
    cfg: SupervisorConfig,
    slots: BTreeMap<String, Slot>,
    next_generation: u64,
    restarts: u64,
}

impl Supervisor {
    pub fn new(cfg: SupervisorConfig) -> Self {
        Supervisor {
            cfg,
            slots: BTreeMap::new(),
            next_generation: 1,
            restarts: 0,
        }
    }

    pub fn slots(&self) -> impl Iterator<Item = &Slot> {
        self.slots.values()
    }

    pub fn restarts(&self) -> u64 {
        self.restarts
    }

    pub fn alive(&self) -> usize {
        self.slots.values().filter(|s| s.state.is_alive()).count()
    }

    fn backoff(&self, failures: u32) -> Duration {
        let factor = 1u32
            .checked_shl(failures.saturating_sub(1))
            .unwrap_or(u32::MAX);
        self.cfg
            .base_backoff
            .saturating_mul(factor)
            .min(self.cfg.max_backoff)
    }

    fn free_profile(&self) -> usize {
        (0..)
            .find(|i| !self.slots.values().any(|s| s.profile == *i))
            .expect("an unbounded range has a free index")
    }

    fn launch(&mut self, now: Instant, swarm: &str, profile: usize, failures: u32) -> Action {
        let generation = self.next_generation;
        self.next_generation += 1;
        self.slots.insert(
            swarm.to_string(),
            Slot {
                swarm: swarm.to_string(),
                profile,
                state: SlotState::Starting { since: now },
                failures,
                last_heartbeat: now,
                generation,
            },
        );
        Action::Launch {
            swarm: swarm.to_string(),
            profile,
            generation,
        }
    }

    /// A worker failed: kill what is left of it, tell the swarm, back off.
    fn fail(&mut self, now: Instant, swarm: &str, reason: &'static str, out: &mut Vec<Action>) {
        let backoff_failures;
        {
            let Some(slot) = self.slots.get_mut(swarm) else {
                return;
            };
            let was_up = slot.state.is_alive();
            let generation = slot.generation;
            if let SlotState::Ready { since } | SlotState::Serving { since } = slot.state {
                if now.saturating_duration_since(since) >= self.cfg.healthy_after {
                    slot.failures = 0;
                }
            }
            slot.failures += 1;
            backoff_failures = slot.failures;
            out.push(Action::Kill {
                swarm: swarm.to_string(),
                generation,
                reason,
            });
            if was_up || matches!(slot.state, SlotState::Starting { .. }) {
                out.push(Action::TellDown {
                    swarm: swarm.to_string(),
                });
            }
        }
        let delay = self.backoff(backoff_failures);
        if let Some(slot) = self.slots.get_mut(swarm) {
            slot.state = SlotState::Backoff { until: now + delay };
        }
    }

    pub fn observe(&mut self, now: Instant, obs: Observation) -> Vec<Action> {
        let mut out = Vec::new();
        let (swarm, generation) = match &obs {
            Observation::Joined { swarm, generation }
            | Observation::Heartbeat {
                swarm, generation, ..
            }
            | Observation::Exited { swarm, generation }
            | Observation::LaunchFailed { swarm, generation } => (swarm.clone(), *generation),
        };
        let Some(slot) = self.slots.get_mut(&swarm) else {
            return out;
        };
        if slot.generation != generation {
            return out; // about a launch that was already replaced
        }
        match obs {
            Observation::Joined { .. } => {
                if let SlotState::Starting { .. } = slot.state {
                    slot.state = SlotState::Ready { since: now };
                    slot.last_heartbeat = now;
                }
            }
            Observation::Heartbeat { serving, .. } => {
                slot.last_heartbeat = now;
                if let (SlotState::Ready { since }, true) = (slot.state, serving) {
                    slot.state = SlotState::Serving { since };
                }
            }
            Observation::Exited { .. } | Observation::LaunchFailed { .. } => match slot.state {
                SlotState::Stopping { .. } => {
                    self.slots.remove(&swarm);
                }
                SlotState::Backoff { .. } => {}
                _ => self.fail(now, &swarm, "the browser exited", &mut out),
            },
        }
        out
    }

    /// Compare the swarms that exist with the workers that run; call it on
    /// every membership change and every second or so.
    pub fn reconcile(&mut self, now: Instant, swarms: &[SwarmInfo]) -> Vec<Action> {
        let mut out = Vec::new();
        // 1. Timeouts of running slots.
        let keys: Vec<String> = self.slots.keys().cloned().collect();
        for key in &keys {
            let slot = &self.slots[key];
            match slot.state {
                SlotState::Starting { since }
                    if now.saturating_duration_since(since) > self.cfg.start_timeout =>
                {
                    self.fail(now, key, "it did not join its swarm in time", &mut out);
                }
                SlotState::Ready { .. } | SlotState::Serving { .. }
                    if now.saturating_duration_since(slot.last_heartbeat)
                        > self.cfg.hang_timeout =>
                {
                    self.fail(now, key, "its page stopped answering (hung)", &mut out);
                }
                SlotState::Stopping { since }
                    if now.saturating_duration_since(since) > self.cfg.start_timeout =>
                {
                    // It never confirmed its exit; the kill was sent, forget it.
                    self.slots.remove(key);
                }
                _ => {}
            }
        }
        // 2. Release workers of swarms that are gone or idle long enough.
        for key in &keys {
            let Some(slot) = self.slots.get(key) else {
                continue;
            };
            let info = swarms.iter().find(|s| &s.id == key);
            let release = match info {
                None => true,
                Some(s) => {
                    s.visitors == 0
                        && s.idle_since.is_some_and(|t| {
                            now.saturating_duration_since(t) >= self.cfg.idle_release
                        })
                }
            };
            if release && !matches!(slot.state, SlotState::Stopping { .. }) {
                let generation = slot.generation;
                let was_backoff = matches!(slot.state, SlotState::Backoff { .. });
                out.push(Action::Kill {
                    swarm: key.clone(),
                    generation,
                    reason: "its swarm is idle",
                });
                if info.is_some() {
                    out.push(Action::TellDown { swarm: key.clone() });
                }
                if was_backoff {
                    self.slots.remove(key);
                } else if let Some(slot) = self.slots.get_mut(key) {
                    slot.state = SlotState::Stopping { since: now };
                }
            }
        }
        // 3. Restart slots whose back-off is over.
        for key in &keys {
            let Some(slot) = self.slots.get(key) else {
                continue;
            };
            if let SlotState::Backoff { until } = slot.state {
                if now >= until {
                    let (profile, failures) = (slot.profile, slot.failures);
                    self.restarts += 1;
                    out.push(self.launch(now, key, profile, failures));
                }
            }
        }
        // 4. Swarms with visitors and no worker get one, oldest swarm first.
        for s in swarms {
            if s.visitors == 0 || self.slots.contains_key(&s.id) {
                continue;
            }
            if self.slots.len() >= self.cfg.max_workers {
                break;
            }
            let profile = self.free_profile();
            out.push(self.launch(now, &s.id, profile, 0));
        }
        out
    }

    /// Everything to stop on shutdown.
    pub fn shutdown(&mut self) -> Vec<Action> {
        let out = self
            .slots
            .values()
            .map(|s| Action::Kill {
                swarm: s.swarm.clone(),
                generation: s.generation,
                reason: "the server is stopping",
            })
            .collect();
        self.slots.clear();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn swarm(id: &str, visitors: usize, idle_since: Option<Instant>) -> SwarmInfo {
        SwarmInfo {
            id: id.into(),
            scope: "/".into(),
            visitors,
            worker: None,
            resources: 0,
            idle_since,
        }
    }

    fn launches(actions: &[Action]) -> Vec<(String, usize)> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Launch { swarm, profile, .. } => Some((swarm.clone(), *profile)),
                _ => None,
            })
            .collect()
    }

    fn generation_of(sup: &Supervisor, swarm: &str) -> u64 {
        sup.slots()
            .find(|s| s.swarm == swarm)
            .expect("slot exists")
            .generation
    }

    fn cfg() -> SupervisorConfig {
        SupervisorConfig {
            max_workers: 2,
            ..SupervisorConfig::default()
        }
    }

    #[test]
    fn one_worker_per_swarm_with_visitors_up_to_the_limit() {
        let mut sup = Supervisor::new(cfg());
        let t0 = Instant::now();
        let swarms = [
            swarm("s1", 3, None),
            swarm("s2", 1, None),
            swarm("s3", 2, None),
            swarm("s4", 0, Some(t0)),
        ];
        let a = sup.reconcile(t0, &swarms);
        assert_eq!(launches(&a), [("s1".to_string(), 0), ("s2".to_string(), 1)]);
        // Nothing more while they start.
        assert!(sup
            .reconcile(t0 + Duration::from_secs(1), &swarms)
            .is_empty());
        assert_eq!(sup.slots().count(), 2);
    }

    #[test]
    fn a_crash_loop_backs_off_exponentially_and_keeps_the_profile() {
        let mut sup = Supervisor::new(cfg());
        let mut now = Instant::now();
        let swarms = [swarm("s1", 1, None)];
        sup.reconcile(now, &swarms);
        let mut delays = Vec::new();
        for _ in 0..8 {
            let generation = generation_of(&sup, "s1");
            let out = sup.observe(
                now,
                Observation::Exited {
                    swarm: "s1".into(),
                    generation,
                },
            );
            assert!(out.contains(&Action::TellDown { swarm: "s1".into() }));
            // Step the clock until the relaunch happens.
            let start = now;
            loop {
                now += Duration::from_millis(250);
                let out = sup.reconcile(now, &swarms);
                if let Some((_, profile)) = launches(&out).first() {
                    assert_eq!(*profile, 0, "a restart reuses its profile slot");
                    break;
                }
            }
            delays.push(now.duration_since(start));
        }
        assert_eq!(delays[0], Duration::from_millis(500));
        assert_eq!(delays[1], Duration::from_millis(1000));
        assert_eq!(delays[2], Duration::from_millis(2000));
        assert!(delays.windows(2).all(|w| w[1] >= w[0]));
        assert!(
            *delays.last().expect("8 delays")
                <= Duration::from_secs(60) + Duration::from_millis(250)
        );
        assert_eq!(sup.restarts(), 8);
    }

    #[test]
    fn a_healthy_run_resets_the_back_off() {
        let mut sup = Supervisor::new(cfg());
        let mut now = Instant::now();
        let swarms = [swarm("s1", 1, None)];
        sup.reconcile(now, &swarms);
        for _ in 0..3 {
            let generation = generation_of(&sup, "s1");
            sup.observe(
                now,
                Observation::Exited {
                    swarm: "s1".into(),
                    generation,
                },
            );
            now += Duration::from_secs(61);
            sup.reconcile(now, &swarms);
        }
        assert_eq!(sup.slots().next().expect("slot").failures, 3);
        let generation = generation_of(&sup, "s1");
        sup.observe(
            now,
            Observation::Joined {
                swarm: "s1".into(),
                generation,
            },
        );
        // Up for two minutes with heartbeats, then it crashes once.
        for _ in 0..24 {
            now += Duration::from_secs(5);
            sup.observe(
                now,
                Observation::Heartbeat {
                    swarm: "s1".into(),
                    generation,
                    serving: true,
                },
            );
            sup.reconcile(now, &swarms);
        }
        sup.observe(
            now,
            Observation::Exited {
                swarm: "s1".into(),
                generation,
            },
        );
        assert_eq!(sup.slots().next().expect("slot").failures, 1);
    }

    #[test]
    fn a_hung_page_is_killed_and_restarted() {
        let mut sup = Supervisor::new(cfg());
        let t0 = Instant::now();
        let swarms = [swarm("s1", 1, None)];
        sup.reconcile(t0, &swarms);
        let generation = generation_of(&sup, "s1");
        sup.observe(
            t0,
            Observation::Joined {
                swarm: "s1".into(),
                generation,
            },
        );
        assert_eq!(sup.alive(), 1);
        let t1 = t0 + Duration::from_secs(15);
        sup.observe(
            t1,
            Observation::Heartbeat {
                swarm: "s1".into(),
                generation,
                serving: false,
            },
        );
        assert!(sup
            .reconcile(t1 + Duration::from_secs(19), &swarms)
            .is_empty());
        let out = sup.reconcile(t1 + Duration::from_secs(21), &swarms);
        assert!(matches!(&out[0], Action::Kill { reason, .. } if reason.contains("hung")));
        assert!(out.contains(&Action::TellDown { swarm: "s1".into() }));
        assert_eq!(sup.alive(), 0);
        // The kill's exit report about the old generation changes nothing more.
        assert!(sup
            .observe(
                t1 + Duration::from_secs(22),
                Observation::Exited {
                    swarm: "s1".into(),
                    generation
                }
            )
            .is_empty());
        let later = sup.reconcile(t1 + Duration::from_secs(23), &swarms);
        assert_eq!(launches(&later).len(), 1);
    }

    #[test]
    fn a_worker_that_never_joins_is_killed_after_the_start_timeout() {
        let mut sup = Supervisor::new(cfg());
        let t0 = Instant::now();
        let swarms = [swarm("s1", 1, None)];
        sup.reconcile(t0, &swarms);
        let out = sup.reconcile(t0 + Duration::from_secs(31), &swarms);
        assert!(matches!(&out[0], Action::Kill { reason, .. } if reason.contains("in time")));
    }

    #[test]
    fn an_idle_swarm_releases_its_worker_and_frees_the_slot() {
        let mut sup = Supervisor::new(SupervisorConfig {
            max_workers: 1,
            ..SupervisorConfig::default()
        });
        let t0 = Instant::now();
        sup.reconcile(t0, &[swarm("s1", 1, None)]);
        let g = generation_of(&sup, "s1");
        sup.observe(
            t0,
            Observation::Joined {
                swarm: "s1".into(),
                generation: g,
            },
        );
        // s2 waits: the only slot is taken.
        let busy = [swarm("s1", 0, Some(t0)), swarm("s2", 4, None)];
        let early = t0 + Duration::from_secs(60);
        sup.observe(
            early,
            Observation::Heartbeat {
                swarm: "s1".into(),
                generation: g,
                serving: true,
            },
        );
        assert!(launches(&sup.reconcile(early, &busy)).is_empty());
        let late = t0 + Duration::from_secs(121);
        sup.observe(
            late,
            Observation::Heartbeat {
                swarm: "s1".into(),
                generation: g,
                serving: true,
            },
        );
        let out = sup.reconcile(late, &busy);
        assert!(matches!(&out[0], Action::Kill { reason, .. } if reason.contains("idle")));
        // The slot frees when the browser confirms its exit; then s2 gets it.
        sup.observe(
            late,
            Observation::Exited {
                swarm: "s1".into(),
                generation: g,
            },
        );
        let out = sup.reconcile(late, &busy);
        assert_eq!(launches(&out), [("s2".to_string(), 0)]);
    }

    #[test]
    fn a_vanished_swarm_releases_its_worker() {
        let mut sup = Supervisor::new(cfg());
        let t0 = Instant::now();
        sup.reconcile(t0, &[swarm("s1", 1, None)]);
        let out = sup.reconcile(t0, &[]);
        assert!(matches!(&out[0], Action::Kill { .. }));
        assert!(!out.iter().any(|a| matches!(a, Action::TellDown { .. })));
    }

    #[test]
    fn shutdown_kills_everything() {
        let mut sup = Supervisor::new(cfg());
        let t0 = Instant::now();
        sup.reconcile(t0, &[swarm("s1", 1, None), swarm("s2", 1, None)]);
        assert_eq!(sup.shutdown().len(), 2);
        assert_eq!(sup.slots().count(), 0);
    }
}
