//! The live side of signaling: the core [`Hub`] plus each peer's SSE sender.
//!
//! [`Signaling`] sits behind one mutex in `AppState`: every change of
//! membership and every relay takes it briefly, so event ids are assigned and
//! queued in one order. No await happens under the lock.

use std::collections::HashMap;
use std::time::Instant;

use actix_web_lab::sse;
use tokio::sync::mpsc;
use whis_core::hub::{Delivery, Event, Hub, PeerId, ServerEvent};

struct StreamSlot {
    conn: u64,
    tx: mpsc::Sender<sse::Event>,
}

pub struct Signaling {
    pub hub: Hub,
    streams: HashMap<PeerId, StreamSlot>,
    next_conn: u64,
    sse_dropped_slow: u64,
    /// Set once the server is stopping: the `going-away` every stream gets.
    going_away: Option<sse::Event>,
}

impl Signaling {
    pub fn new(hub: Hub) -> Self {
        Signaling {
            hub,
            streams: HashMap::new(),
            next_conn: 0,
            sse_dropped_slow: 0,
            going_away: None,
        }
    }

    /// Push each delivery to its peer's live stream, if any. A full queue means
    /// the reader is too slow: its stream is closed (the browser reconnects and
    /// resumes from the replay buffer), so memory stays bounded.
    pub fn deliver(&mut self, deliveries: Vec<Delivery>) {
        for d in deliveries {
            let Some(slot) = self.streams.get(&d.to) else {
                continue;
            };
            match slot.tx.try_send(to_sse(&d.event)) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(_)) => {
                    log::info!(
                        "peer {} reads its event stream too slowly; closing it",
                        d.to
                    );
                    self.sse_dropped_slow += 1;
                    self.streams.remove(&d.to);
                }
                Err(mpsc::error::TrySendError::Closed(_)) => {
                    self.streams.remove(&d.to);
                }
            }
        }
    }

    /// Register a new stream for `peer`, replacing (and so ending) an older one.
    /// While the server stops, a new stream gets `going-away` and ends.
    pub fn attach(&mut self, peer: &str, tx: mpsc::Sender<sse::Event>) -> u64 {
        self.next_conn += 1;
        let conn = self.next_conn;
        if let Some(bye) = &self.going_away {
            let _ = tx.try_send(bye.clone());
            return conn;
        }
        self.streams
            .insert(peer.to_string(), StreamSlot { conn, tx });
        conn
    }

    pub fn detach(&mut self, now: Instant, peer: &str, conn: u64) {
        if self.streams.get(peer).is_some_and(|s| s.conn == conn) {
            self.streams.remove(peer);
        }
        self.hub.stream_closed(now, peer);
    }

    pub fn drop_streams_of(&mut self, peers: &[PeerId]) {
        for p in peers {
            self.streams.remove(p);
        }
    }

    /// End every stream (graceful shutdown).
    pub fn close_all(&mut self) {
        self.streams.clear();
    }

    /// The server is stopping: tell every stream (and any that opens from
    /// now on) to come back after `retry_ms`, then end them. A stream whose
    /// queue is full just ends; its client reconnects all the same.
    pub fn going_away(&mut self, retry_ms: u64) {
        let bye = to_sse(&Event::new(None, &ServerEvent::GoingAway { retry_ms }));
        for slot in self.streams.values() {
            let _ = slot.tx.try_send(bye.clone());
        }
        self.going_away = Some(bye);
        self.close_all();
    }

    pub fn open_streams(&self) -> usize {
        self.streams.len()
    }

    pub fn sse_dropped_slow(&self) -> u64 {
        self.sse_dropped_slow
    }
}

pub fn to_sse(e: &Event) -> sse::Event {
    let mut data = sse::Data::new(e.data.clone()).event(e.kind.as_str());
    if let Some(id) = e.id {
        data = data.id(id.to_string());
    }
    sse::Event::Data(data)
}
