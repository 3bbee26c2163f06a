//! A congested origin for benchmarks: a TCP proxy on loopback whose
//! upstream-to-client direction shares one rate limit across all connections
//! (the origin's uplink) and adds one-way latency to every chunk, in both
//! directions, without lowering throughput. It counts the bytes it carried
//! to clients: the origin's own ground truth.
//!
//! The uplink is shared packet by packet: each connection takes its turn
//! for at most one packet's payload (`PACKET`), so a short answer waits
//! behind one packet of each busy connection, as on a real link with the
//! Linux default queueing discipline (fq_codel), not behind a whole
//! read-buffer of each.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Mutex};
use tokio::time::Instant;

#[derive(Debug, Clone, Copy)]
pub struct Shape {
    /// Shared uplink in bits per second.
    pub bits_per_second: u64,
    /// Added one-way delay (a round trip pays it twice).
    pub latency: Duration,
}

/// Payload of one TCP packet on an Ethernet link (1500-byte MTU).
const PACKET: usize = 1448;

/// Token bucket shared by all connections' downstream directions.
struct Bucket {
    rate: f64, // bytes per second
    next_free: Mutex<Instant>,
}

impl Bucket {
    /// Wait until `n` bytes may leave, keeping the aggregate at `rate`.
    async fn take(&self, n: usize) {
        let cost = Duration::from_secs_f64(n as f64 / self.rate);
        let at = {
            let mut next = self.next_free.lock().await;
            let now = Instant::now();
            // Allow at most 50 ms of burst credit, like a real queue.
            let start = (*next).max(now - Duration::from_millis(50));
            *next = start + cost;
            *next
        };
        tokio::time::sleep_until(at).await;
    }
}

pub struct Throttle {
    pub addr: SocketAddr,
    pub to_clients: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Throttle {
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn bytes_to_clients(&self) -> u64 {
        self.to_clients.load(Ordering::Relaxed)
    }

    pub fn stop(self) {
        self.task.abort();
    }
}

pub async fn start(upstream: SocketAddr, shape: Shape) -> std::io::Result<Throttle> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let bucket = Arc::new(Bucket {
        rate: shape.bits_per_second as f64 / 8.0,
        next_free: Mutex::new(Instant::now()),
    });
    let to_clients = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&to_clients);
    let task = tokio::spawn(async move {
        loop {
            let Ok((client, _)) = listener.accept().await else {
                continue;
            };
            let bucket = Arc::clone(&bucket);
            let counter = Arc::clone(&counter);
            tokio::spawn(async move {
                let Ok(server) = TcpStream::connect(upstream).await else {
                    return;
                };
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                let (cr, cw) = client.into_split();
                let (sr, sw) = server.into_split();
                let up = pipe(cr, sw, shape.latency, None, None);
                let down = pipe(sr, cw, shape.latency, Some(bucket), Some(counter));
                let _ = tokio::join!(up, down);
            });
        }
    });
    Ok(Throttle {
        addr,
        to_clients,
        task,
    })
}

/// Copy `from` to `to`, each chunk delivered `latency` after it was read,
/// optionally paced by the shared bucket and counted.
async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    latency: Duration,
    bucket: Option<Arc<Bucket>>,
    counter: Option<Arc<AtomicU64>>,
) {
    let (tx, mut rx) = mpsc::channel::<(Instant, Vec<u8>)>(4096);
    let reader = async move {
        let mut buf = vec![0u8; 16 * 1024];
        'read: loop {
            let n = match from.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            // Paced links send packet by packet; unpaced ones pass chunks whole.
            let step = if bucket.is_some() { PACKET } else { n };
            for chunk in buf[..n].chunks(step) {
                if let Some(b) = &bucket {
                    b.take(chunk.len()).await;
                }
                if tx
                    .send((Instant::now() + latency, chunk.to_vec()))
                    .await
                    .is_err()
                {
                    break 'read;
                }
            }
        }
    };
    let writer = async move {
        while let Some((due, chunk)) = rx.recv().await {
            tokio::time::sleep_until(due).await;
            if to.write_all(&chunk).await.is_err() {
                break;
            }
            if let Some(c) = &counter {
                c.fetch_add(chunk.len() as u64, Ordering::Relaxed);
            }
        }
        let _ = to.shutdown().await;
    };
    tokio::join!(reader, writer);
}
