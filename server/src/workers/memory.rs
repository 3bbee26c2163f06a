//! The worker browsers' memory, sampled from `/proc` (with `procfs`) every
//! few seconds by its own task, so the supervisor loop never waits on it.

use std::time::Duration;

use super::WorkerHandle;

/// How often the browsers' memory is sampled.
const EVERY: Duration = Duration::from_secs(5);

/// Sample the memory of every worker browser the handle reports, forever.
pub async fn sample_loop(workers: WorkerHandle) {
    let mut every = tokio::time::interval(EVERY);
    loop {
        every.tick().await;
        let pids: Vec<u32> = workers
            .snapshot()
            .slots
            .iter()
            .filter_map(|s| s.pid)
            .collect();
        let bytes = tokio::task::spawn_blocking(move || pids.iter().map(|p| tree_memory(*p)).sum())
            .await
            .unwrap_or(0);
        workers.set_memory(bytes);
    }
}

/// Memory (bytes) of a process and all its descendants, as proportional set
/// size: shared pages are split between the processes that share them, so
/// Chromium's many processes are not counted several times over.
pub fn tree_memory(root: u32) -> u64 {
    let Ok(all) = procfs::process::all_processes() else {
        return 0;
    };
    let parent_of: Vec<(i32, i32)> = all
        .flatten()
        .filter_map(|p| p.stat().ok().map(|s| (s.pid, s.ppid)))
        .collect();
    let mut tree = vec![root as i32];
    let mut i = 0;
    while i < tree.len() {
        let p = tree[i];
        tree.extend(parent_of.iter().filter(|(_, pp)| *pp == p).map(|(c, _)| *c));
        i += 1;
    }
    tree.iter().map(|pid| pss_of(*pid)).sum()
}

fn pss_of(pid: i32) -> u64 {
    procfs::process::Process::new(pid)
        .and_then(|p| p.smaps_rollup())
        .map(|r| {
            r.memory_map_rollup
                .iter()
                .filter_map(|m| m.extension.map.get("Pss"))
                .sum()
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_uses_memory() {
        assert!(tree_memory(std::process::id()) > 0);
    }
}
