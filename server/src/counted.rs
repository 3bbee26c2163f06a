//! Counting what the origin side sends: `whis_origin_bytes_total`, the
//! ground truth for offload.
//!
//! [`Counted`] wraps a response body. It hands the connection at most
//! [`SLICE`] bytes at a time and counts a slice only when the connection asks
//! for the next one (or for the end of the body): actix's HTTP/1 dispatcher
//! asks again only once its write buffer (32 KiB) has room, so the count runs
//! at most that far ahead of what the socket took, and a slice the connection
//! never asked past (the client went away) is not counted. Without the
//! slicing a body held in memory would be one chunk, counted whole the moment
//! the transfer starts.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use actix_web::body::{BodySize, MessageBody};
use bytes::Bytes;

/// Largest piece of a body handed to the connection at once.
pub const SLICE: usize = 64 * 1024;

/// What the origin side sent, counted by the server itself.
#[derive(Default)]
pub struct Metrics {
    /// Body bytes the origin side sent to clients (the ground truth for offload).
    pub origin_bytes: Arc<AtomicU64>,
    /// Body responses the origin side sent (static or proxied).
    pub origin_responses: AtomicU64,
    /// Body bytes of Whis's own answers (scripts, manifests, signaling, event
    /// streams): what Whis adds to the uplink on top of the site's bytes.
    pub own_bytes: Arc<AtomicU64>,
}

impl Metrics {
    /// Count one answer with a body, and wrap the body to count its bytes.
    pub fn count<B: MessageBody + Unpin>(&self, body: B) -> Counted<B> {
        self.origin_responses.fetch_add(1, Ordering::Relaxed);
        Counted::new(body, Arc::clone(&self.origin_bytes))
    }
}

pub struct Counted<B> {
    inner: B,
    /// The rest of the inner body's current chunk, not yet handed out.
    pending: Bytes,
    /// The slice handed out last, counted when the connection asks again.
    handed: usize,
    counter: Arc<AtomicU64>,
}

impl<B: MessageBody + Unpin> Counted<B> {
    pub fn new(inner: B, counter: Arc<AtomicU64>) -> Self {
        Counted {
            inner,
            pending: Bytes::new(),
            handed: 0,
            counter,
        }
    }
}

impl<B: MessageBody + Unpin> MessageBody for Counted<B> {
    type Error = B::Error;

    fn size(&self) -> BodySize {
        self.inner.size()
    }

    fn poll_next(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, Self::Error>>> {
        let this = self.get_mut();
        // Asked again: the connection has taken the previous slice.
        if this.handed > 0 {
            this.counter
                .fetch_add(this.handed as u64, Ordering::Relaxed);
            this.handed = 0;
        }
        if this.pending.is_empty() {
            match Pin::new(&mut this.inner).poll_next(cx) {
                Poll::Ready(Some(Ok(chunk))) => this.pending = chunk,
                other => return other,
            }
        }
        let slice = this.pending.split_to(this.pending.len().min(SLICE));
        this.handed = slice.len();
        Poll::Ready(Some(Ok(slice)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn poll(body: &mut Counted<Bytes>) -> Option<usize> {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        match Pin::new(body).poll_next(&mut cx) {
            Poll::Ready(Some(Ok(b))) => Some(b.len()),
            Poll::Ready(None) => None,
            other => panic!("an in-memory body is always ready: {other:?}"),
        }
    }

    #[test]
    fn a_large_body_is_counted_slice_by_slice_as_the_connection_takes_it() {
        // A proxied body kept in memory is one chunk of up to 64 MiB.
        let whole = Bytes::from(vec![7u8; 64 * 1024 * 1024]);
        let counter = Arc::new(AtomicU64::new(0));
        let mut body = Counted::new(whole, Arc::clone(&counter));
        assert_eq!(body.size(), BodySize::Sized(64 * 1024 * 1024));
        assert_eq!(poll(&mut body), Some(SLICE));
        assert_eq!(
            counter.load(Ordering::Relaxed),
            0,
            "nothing counted before the connection took the first slice"
        );
        assert_eq!(poll(&mut body), Some(SLICE));
        assert_eq!(counter.load(Ordering::Relaxed), SLICE as u64);
        // The client goes away: what it never asked past is not counted.
        drop(body);
        assert_eq!(counter.load(Ordering::Relaxed), SLICE as u64);
    }

    #[test]
    fn a_body_read_to_its_end_is_counted_exactly() {
        let counter = Arc::new(AtomicU64::new(0));
        let len = 3 * SLICE + 123;
        let mut body = Counted::new(Bytes::from(vec![1u8; len]), Arc::clone(&counter));
        let mut got = 0;
        while let Some(n) = poll(&mut body) {
            assert!(n <= SLICE);
            got += n;
        }
        assert_eq!(got, len);
        assert_eq!(counter.load(Ordering::Relaxed), len as u64);
    }
}
