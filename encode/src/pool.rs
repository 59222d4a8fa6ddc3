//! Recycled byte buffers for encoded frames, so the hot path does not allocate.
//!
//! The encoder thread takes a [`PooledBuf`] from a [`BufferPool`], fills it
//! and sends it on; whoever holds it last (the transport, after packetising)
//! just drops it, and the buffer goes back to the pool with its capacity.
//!
//! ```
//! use peep_encode::pool::BufferPool;
//!
//! let pool = BufferPool::new(4, 256 * 1024);
//! let mut buf = pool.get();
//! buf.extend_from_slice(&[0, 0, 0, 1, 0x65]);
//! // ...send `buf` to another thread; dropping it returns it to the pool.
//! drop(buf);
//! assert_eq!(pool.available(), 4);
//! assert_eq!(pool.misses(), 0);
//! ```
//!
//! With [`Encoder::encode`](crate::Encoder::encode), which writes into an
//! [`EncodedFrame`](crate::EncodedFrame), swap the frame's `data` with a
//! pooled buffer instead of copying:
//! `std::mem::swap(&mut encoded.data, &mut *pooled)`.

use crossbeam_channel::{Receiver, Sender};
use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// A bounded set of reusable `Vec<u8>`s, shareable across threads (clones
/// share the same buffers).
///
/// Policy: [`get`](Self::get) never blocks — when the pool is empty it
/// allocates a fresh buffer and counts a [miss](Self::misses); when a buffer
/// comes back to a full pool (or to a pool that no longer exists) it is freed.
#[derive(Clone)]
pub struct BufferPool {
    // Bounded to `count`: the pool never holds more buffers than it was made with.
    tx: Sender<Vec<u8>>,
    rx: Receiver<Vec<u8>>,
    capacity_bytes: usize,
    misses: Arc<AtomicU64>,
}

impl std::fmt::Debug for BufferPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BufferPool")
            .field("available", &self.available())
            .field("capacity_bytes", &self.capacity_bytes)
            .field("misses", &self.misses())
            .finish()
    }
}

impl BufferPool {
    /// A pool of `count` buffers, each pre-reserved to `capacity_bytes`
    /// (e.g. a 1080p IDR is 300–400 KB; P-frames are a few KB to tens of KB).
    pub fn new(count: usize, capacity_bytes: usize) -> Self {
        let (tx, rx) = crossbeam_channel::bounded(count.max(1));
        for _ in 0..count {
            tx.try_send(Vec::with_capacity(capacity_bytes)).expect("a fresh pool has room for `count` buffers");
        }
        Self { tx, rx, capacity_bytes, misses: Arc::new(AtomicU64::new(0)) }
    }

    /// An empty buffer: a recycled one if available, else a new one with the
    /// pool's capacity (counted as a miss).
    pub fn get(&self) -> PooledBuf {
        let buf = self.rx.try_recv().unwrap_or_else(|_| {
            self.misses.fetch_add(1, Ordering::Relaxed);
            Vec::with_capacity(self.capacity_bytes)
        });
        PooledBuf { buf, home: self.tx.clone() }
    }

    /// Buffers waiting in the pool right now.
    pub fn available(&self) -> usize {
        self.rx.len()
    }

    /// How many times [`get`](Self::get) found the pool empty and allocated.
    pub fn misses(&self) -> u64 {
        self.misses.load(Ordering::Relaxed)
    }
}

/// A buffer on loan from a [`BufferPool`]; derefs to `Vec<u8>` and goes back
/// to the pool, cleared but with its capacity, when dropped.
pub struct PooledBuf {
    buf: Vec<u8>,
    home: Sender<Vec<u8>>,
}

impl std::fmt::Debug for PooledBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PooledBuf").field("len", &self.buf.len()).field("capacity", &self.buf.capacity()).finish()
    }
}

impl PooledBuf {
    /// Takes the buffer out of the pool's care for good.
    pub fn into_inner(mut self) -> Vec<u8> {
        std::mem::take(&mut self.buf)
    }
}

impl Deref for PooledBuf {
    type Target = Vec<u8>;
    fn deref(&self) -> &Vec<u8> {
        &self.buf
    }
}

impl DerefMut for PooledBuf {
    fn deref_mut(&mut self) -> &mut Vec<u8> {
        &mut self.buf
    }
}

impl Drop for PooledBuf {
    fn drop(&mut self) {
        let mut buf = std::mem::take(&mut self.buf);
        if buf.capacity() == 0 {
            return; // taken by `into_inner`, or never had room: nothing worth keeping
        }
        buf.clear();
        // Full pool or pool gone: the buffer is simply freed.
        let _ = self.home.try_send(buf);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_recycled_with_their_capacity() {
        let pool = BufferPool::new(2, 1024);
        let mut a = pool.get();
        let ptr = a.as_ptr();
        a.extend_from_slice(&[1; 4000]); // grows past the reserve
        let grown = a.capacity();
        drop(a);
        assert_eq!(pool.available(), 2);
        // FIFO: the untouched buffer comes first, then ours, emptied.
        let _first = pool.get();
        let b = pool.get();
        assert!(b.is_empty());
        assert_eq!(b.capacity(), grown);
        assert_ne!(b.as_ptr(), ptr, "grown buffers move, but keep their capacity");
        assert_eq!(pool.misses(), 0);
    }

    #[test]
    fn empty_pool_allocates_and_counts_a_miss() {
        let pool = BufferPool::new(1, 64);
        let a = pool.get();
        let b = pool.get();
        assert_eq!(pool.misses(), 1);
        assert!(b.capacity() >= 64);
        drop(a);
        drop(b); // the pool is full again: this one is freed
        assert_eq!(pool.available(), 1);
    }

    #[test]
    fn buffers_outliving_the_pool_are_freed() {
        let pool = BufferPool::new(1, 64);
        let a = pool.get();
        drop(pool);
        drop(a); // must not panic or leak into nowhere
    }

    #[test]
    fn into_inner_detaches() {
        let pool = BufferPool::new(1, 64);
        let mut a = pool.get();
        a.push(7);
        let v = a.into_inner();
        assert_eq!(v, [7]);
        assert_eq!(pool.available(), 0);
    }

    #[test]
    fn works_across_threads() {
        let pool = BufferPool::new(4, 128);
        let (tx, rx) = crossbeam_channel::bounded::<PooledBuf>(4);
        let consumer = std::thread::Builder::new()
            .name("pool-test-consumer".into())
            .spawn(move || rx.iter().map(|b| b.len()).sum::<usize>())
            .expect("spawn");
        for i in 0..100 {
            let mut b = pool.get();
            b.resize(i, 0);
            tx.send(b).expect("consumer alive");
        }
        drop(tx);
        assert_eq!(consumer.join().expect("no panic"), (0..100).sum::<usize>());
        assert!(pool.available() <= 4);
    }
}
