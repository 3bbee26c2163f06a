//! One computation per key at a time: a lock per path, created on demand and
//! removed when its last holder is done, so the map only ever holds paths
//! being worked on.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

#[derive(Default)]
pub struct PathLocks {
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

/// Held while one path is worked on.
pub struct PathGuard<'a> {
    key: String,
    locks: &'a PathLocks,
    _guard: tokio::sync::OwnedMutexGuard<()>,
}

impl PathLocks {
    /// Wait for this key's turn.
    pub async fn lock(&self, key: &str) -> PathGuard<'_> {
        let lock = {
            let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
            Arc::clone(locks.entry(key.to_string()).or_default())
        };
        PathGuard {
            key: key.to_string(),
            locks: self,
            _guard: lock.lock_owned().await,
        }
    }

    /// Keys with a holder or a waiter.
    #[cfg(test)]
    fn busy(&self) -> usize {
        self.locks.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

impl Drop for PathGuard<'_> {
    fn drop(&mut self) {
        let mut locks = self.locks.locks.lock().unwrap_or_else(|p| p.into_inner());
        // The map's Arc and our guard's: nobody else is waiting.
        if locks
            .get(&self.key)
            .is_some_and(|l| Arc::strong_count(l) <= 2)
        {
            locks.remove(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_holder_per_key_and_no_leftover_locks() {
        let locks = Arc::new(PathLocks::default());
        let first = locks.lock("/a").await;
        // Another key is not held up.
        drop(locks.lock("/b").await);
        let waiter = {
            let locks = Arc::clone(&locks);
            tokio::spawn(async move {
                let _g = locks.lock("/a").await;
            })
        };
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished(), "the second holder of /a waits");
        drop(first);
        waiter.await.expect("the waiter gets its turn");
        assert_eq!(locks.busy(), 0);
    }
}
