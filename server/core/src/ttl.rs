//! A bounded map whose entries expire: the shape of every small cache in
//! Whis (refused manifest paths, rendered pages). Time is an argument.

use std::collections::HashMap;
use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct TtlMap<V> {
    ttl: Duration,
    max_entries: usize,
    entries: HashMap<String, (Instant, V)>,
}

impl<V> TtlMap<V> {
    pub fn new(ttl: Duration, max_entries: usize) -> Self {
        TtlMap {
            ttl,
            max_entries,
            entries: HashMap::new(),
        }
    }

    /// The value stored under `key` less than `ttl` ago.
    pub fn get(&self, now: Instant, key: &str) -> Option<&V> {
        self.entries
            .get(key)
            .filter(|(at, _)| now.saturating_duration_since(*at) < self.ttl)
            .map(|(_, v)| v)
    }

    /// Store `value`. When the map is full, expired entries are dropped
    /// first; if it is still full of live ones, the value is not kept (a
    /// cache miss later costs one more computation, never memory).
    pub fn insert(&mut self, now: Instant, key: String, value: V) -> bool {
        if self.entries.len() >= self.max_entries && !self.entries.contains_key(&key) {
            let ttl = self.ttl;
            self.entries
                .retain(|_, (at, _)| now.saturating_duration_since(*at) < ttl);
            if self.entries.len() >= self.max_entries {
                return false;
            }
        }
        self.entries.insert(key, (now, value));
        true
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_expire_and_the_map_stays_bounded() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let mut m = TtlMap::new(10 * s, 2);
        assert!(m.insert(t0, "a".into(), 1));
        assert!(m.insert(t0 + s, "b".into(), 2));
        assert_eq!(m.get(t0 + 9 * s, "a"), Some(&1));
        assert_eq!(m.get(t0 + 10 * s, "a"), None, "expired");
        // Full of live entries: a new key is not kept, an old one is replaced.
        assert!(!m.insert(t0 + 2 * s, "c".into(), 3));
        assert!(m.insert(t0 + 2 * s, "a".into(), 4));
        assert_eq!(m.get(t0 + 2 * s, "a"), Some(&4));
        // Once some have expired there is room again.
        assert!(m.insert(t0 + 12 * s, "c".into(), 5));
        assert_eq!(m.len(), 1, "both old entries had expired and were dropped");
        assert_eq!(m.get(t0 + 12 * s, "c"), Some(&5));
    }
}
