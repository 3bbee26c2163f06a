//! The dashboard's offload history: a bounded series of samples, so that a
//! dashboard opened late still draws the last hour rather than only what
//! happens while it is open.

use std::collections::VecDeque;
use std::sync::Mutex;

/// One point: uptime (s), bytes peers and workers shared, bytes the origin
/// sent, all cumulative.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Sample(pub f64, pub u64, pub u64);

pub struct OffloadHistory {
    kept: usize,
    samples: Mutex<VecDeque<Sample>>,
}

impl OffloadHistory {
    /// A history that keeps the last `kept` samples.
    pub fn new(kept: usize) -> Self {
        OffloadHistory {
            kept: kept.max(1),
            samples: Mutex::default(),
        }
    }

    pub fn push(&self, sample: Sample) {
        let mut samples = self.samples.lock().unwrap_or_else(|p| p.into_inner());
        if samples.len() >= self.kept {
            samples.pop_front();
        }
        samples.push_back(sample);
    }

    pub fn samples(&self) -> Vec<Sample> {
        let samples = self.samples.lock().unwrap_or_else(|p| p.into_inner());
        samples.iter().copied().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oldest_sample_goes_first() {
        let h = OffloadHistory::new(2);
        for i in 0..3 {
            h.push(Sample(i as f64, i, i));
        }
        assert_eq!(h.samples(), [Sample(1.0, 1, 1), Sample(2.0, 2, 2)]);
    }
}
