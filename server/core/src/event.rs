//! What the server says down a peer's event stream, typed.
//!
//! Every SSE event the hub produces is a [`ServerEvent`]; [`Event::new`] is the
//! one place it becomes JSON text. The shapes are those of docs/protocol.md
//! ("`GET /whis/events`"): the SSE `event:` line is [`EventKind::as_str`], the
//! `data:` line the variant's fields as a JSON object.

use serde::Serialize;
use serde_json::value::RawValue;

use crate::CoreError;

/// Largest `data` a peer may relay in one signal. An SDP offer or answer is a
/// few KiB and trickled candidates are far smaller; 32 KiB leaves room for
/// unusual SDP and still lets a peer's replay buffer hold several signals.
pub const MAX_SIGNAL_DATA: usize = 32 * 1024;

/// A peer's role in its swarm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Visitor,
    Worker,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Visitor => "visitor",
            Role::Worker => "worker",
        }
    }
}

/// The payload of a signal (offer, answer or ICE candidate), relayed
/// untouched: a JSON object of at most [`MAX_SIGNAL_DATA`] bytes.
#[derive(Debug, Clone)]
pub struct SignalData(Box<RawValue>);

impl SignalData {
    /// Check a relayed payload. The server never looks inside it, but what it
    /// stores and replays has a known shape and a bounded size.
    pub fn new(raw: Box<RawValue>) -> Result<SignalData, CoreError> {
        if raw.get().len() > MAX_SIGNAL_DATA {
            return Err(CoreError::BadSignal("signal data is larger than 32 KiB"));
        }
        if !raw.get().trim_start().starts_with('{') {
            return Err(CoreError::BadSignal("signal data must be a JSON object"));
        }
        Ok(SignalData(raw))
    }

    /// Parse and check JSON text (tests and non-HTTP transports).
    pub fn parse(json: &str) -> Result<SignalData, CoreError> {
        let raw = serde_json::from_str::<Box<RawValue>>(json)
            .map_err(|_| CoreError::BadSignal("signal data is not JSON"))?;
        SignalData::new(raw)
    }

    pub fn as_json(&self) -> &str {
        self.0.get()
    }
}

impl PartialEq for SignalData {
    fn eq(&self, other: &Self) -> bool {
        self.as_json() == other.as_json()
    }
}

impl Serialize for SignalData {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

/// One resource a swarm asks its worker to hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HotResource {
    pub path: String,
    pub id: String,
}

/// Everything the server says down an event stream.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum ServerEvent {
    /// Sent first on every (re)connect of a stream.
    Hello {
        peer_id: String,
        swarm_id: String,
        worker: Option<String>,
    },
    /// A relayed offer, answer or candidate.
    Signal {
        from: String,
        data: SignalData,
    },
    PeerJoined {
        peer_id: String,
        role: Role,
    },
    PeerLeft {
        peer_id: String,
    },
    /// The swarm's worker crashed, hung or was released.
    WorkerDown {
        peer_id: String,
    },
    /// A (new) worker joined the swarm.
    WorkerUp {
        peer_id: String,
    },
    /// What the swarm asks for (to its worker only).
    Hot {
        resources: Vec<HotResource>,
    },
    /// The server is stopping (a restart): this stream ends now; open it
    /// again after about `retry_ms` (spread by the client), with the same
    /// token. Links between peers do not need the server and stay open.
    GoingAway {
        retry_ms: u64,
    },
}

/// The SSE `event:` name of a [`ServerEvent`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Hello,
    Signal,
    PeerJoined,
    PeerLeft,
    WorkerDown,
    WorkerUp,
    Hot,
    GoingAway,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Hello => "hello",
            EventKind::Signal => "signal",
            EventKind::PeerJoined => "peer-joined",
            EventKind::PeerLeft => "peer-left",
            EventKind::WorkerDown => "worker-down",
            EventKind::WorkerUp => "worker-up",
            EventKind::Hot => "hot",
            EventKind::GoingAway => "going-away",
        }
    }
}

impl ServerEvent {
    pub fn kind(&self) -> EventKind {
        match self {
            ServerEvent::Hello { .. } => EventKind::Hello,
            ServerEvent::Signal { .. } => EventKind::Signal,
            ServerEvent::PeerJoined { .. } => EventKind::PeerJoined,
            ServerEvent::PeerLeft { .. } => EventKind::PeerLeft,
            ServerEvent::WorkerDown { .. } => EventKind::WorkerDown,
            ServerEvent::WorkerUp { .. } => EventKind::WorkerUp,
            ServerEvent::Hot { .. } => EventKind::Hot,
            ServerEvent::GoingAway { .. } => EventKind::GoingAway,
        }
    }
}

/// One server-sent event, serialised once and then shared by the live
/// stream and the replay buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Per-recipient sequence number; `None` for per-connection events (`hello`).
    pub id: Option<u64>,
    pub kind: EventKind,
    /// The `data:` line: a JSON object.
    pub data: String,
}

impl Event {
    pub fn new(id: Option<u64>, event: &ServerEvent) -> Event {
        Event {
            id,
            kind: event.kind(),
            data: serde_json::to_string(event)
                .expect("strings, ids and already-parsed JSON always serialise"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_have_the_documented_shapes() {
        let shapes = [
            (
                ServerEvent::Hello {
                    peer_id: "p1".into(),
                    swarm_id: "s1".into(),
                    worker: None,
                },
                "hello",
                r#"{"peer_id":"p1","swarm_id":"s1","worker":null}"#,
            ),
            (
                ServerEvent::Signal {
                    from: "p\"2".into(),
                    data: SignalData::parse(r#"{"sdp": "v=0"}"#).expect("an object"),
                },
                "signal",
                r#"{"from":"p\"2","data":{"sdp": "v=0"}}"#,
            ),
            (
                ServerEvent::PeerJoined {
                    peer_id: "p3".into(),
                    role: Role::Worker,
                },
                "peer-joined",
                r#"{"peer_id":"p3","role":"worker"}"#,
            ),
            (
                ServerEvent::PeerLeft {
                    peer_id: "p4".into(),
                },
                "peer-left",
                r#"{"peer_id":"p4"}"#,
            ),
            (
                ServerEvent::WorkerDown {
                    peer_id: "p5".into(),
                },
                "worker-down",
                r#"{"peer_id":"p5"}"#,
            ),
            (
                ServerEvent::WorkerUp {
                    peer_id: "p6".into(),
                },
                "worker-up",
                r#"{"peer_id":"p6"}"#,
            ),
            (
                ServerEvent::Hot {
                    resources: vec![HotResource {
                        path: "/a b.jpg".into(),
                        id: "ab".into(),
                    }],
                },
                "hot",
                r#"{"resources":[{"path":"/a b.jpg","id":"ab"}]}"#,
            ),
            (
                ServerEvent::GoingAway { retry_ms: 2000 },
                "going-away",
                r#"{"retry_ms":2000}"#,
            ),
        ];
        for (event, kind, data) in shapes {
            let e = Event::new(Some(7), &event);
            assert_eq!((e.kind.as_str(), e.data.as_str()), (kind, data));
        }
    }

    #[test]
    fn signal_data_is_a_bounded_json_object() {
        assert!(SignalData::parse(r#" {"candidate": {}}"#).is_ok());
        for bad in ["1", r#""text""#, "[1]", "null", "not json", ""] {
            assert!(
                matches!(SignalData::parse(bad), Err(CoreError::BadSignal(_))),
                "{bad:?} is refused"
            );
        }
        let at_limit = format!(r#"{{"x":"{}"}}"#, "y".repeat(MAX_SIGNAL_DATA - 8));
        assert_eq!(at_limit.len(), MAX_SIGNAL_DATA);
        assert!(SignalData::parse(&at_limit).is_ok());
        let over = format!(r#"{{"x":"{}"}}"#, "y".repeat(MAX_SIGNAL_DATA - 7));
        assert!(matches!(
            SignalData::parse(&over),
            Err(CoreError::BadSignal(_))
        ));
    }
}
