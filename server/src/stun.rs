//! The STUN service: one UDP socket, one task, one datagram at a time through
//! the sans-IO codec (`whis_core::stun`). It owns its counters (answered, and
//! dropped by reason), which `/whis/metrics` reads.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::UdpSocket;
use whis_core::stun::{self, Dropped};

#[derive(Default)]
pub struct StunCounters {
    answered: AtomicU64,
    /// Indexed like `Dropped::ALL`.
    dropped: [AtomicU64; Dropped::ALL.len()],
}

impl StunCounters {
    fn drop_for(&self, why: Dropped) {
        let i = Dropped::ALL
            .iter()
            .position(|d| *d == why)
            .expect("Dropped::ALL lists every reason");
        self.dropped[i].fetch_add(1, Ordering::Relaxed);
    }

    /// `(reason, count)` for every reason, zeros included.
    pub fn dropped(&self) -> Vec<(&'static str, u64)> {
        Dropped::ALL
            .iter()
            .zip(&self.dropped)
            .map(|(d, n)| (d.code(), n.load(Ordering::Relaxed)))
            .collect()
    }

    pub fn answered(&self) -> u64 {
        self.answered.load(Ordering::Relaxed)
    }
}

/// Bind the STUN socket (before the task starts, so a port in use is an
/// error at start, not a silent absence).
pub fn bind(addr: SocketAddr) -> std::io::Result<std::net::UdpSocket> {
    let socket = std::net::UdpSocket::bind(addr).map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!(
                "cannot answer STUN on udp {addr} ({e}); choose another address with \
                 --stun ADDR:PORT or turn it off with --no-stun"
            ),
        )
    })?;
    socket.set_nonblocking(true)?;
    Ok(socket)
}

/// Answer Binding requests until the task is aborted.
pub async fn serve(socket: std::net::UdpSocket, counters: Arc<StunCounters>) {
    let socket = match UdpSocket::from_std(socket) {
        Ok(s) => s,
        Err(e) => {
            log::error!("STUN socket unusable: {e}; visitors get no STUN from whis");
            return;
        }
    };
    // Larger than stun::MAX_REQUEST, so an oversized datagram is seen as one.
    let mut buf = vec![0u8; 2048];
    loop {
        let (n, from) = match socket.recv_from(&mut buf).await {
            Ok(got) => got,
            Err(e) => {
                // Nothing a sender does should stop the loop; don't spin either.
                log::debug!("STUN receive: {e}");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        match stun::answer(&buf[..n], from) {
            Ok(out) => {
                if let Err(e) = socket.send_to(&out, from).await {
                    log::debug!("STUN answer to {from}: {e}");
                }
                counters.answered.fetch_add(1, Ordering::Relaxed);
            }
            Err(why) => {
                log::debug!(
                    "STUN datagram of {n} bytes from {from} dropped: {}",
                    why.code()
                );
                counters.drop_for(why);
            }
        }
    }
}
