//! A triple-buffered frame ring: one producer (a capture backend), one consumer
//! (the encoder).
//!
//! * The producer never blocks or waits for the consumer: of the three slots at
//!   most one is READY and at most one IN_USE, so a FREE slot always exists when
//!   the producer starts a frame.
//! * The consumer always gets the newest complete frame: publishing a frame
//!   returns an older, untaken READY frame to FREE (counted as overwritten).
//! * Slot states are explicit, FREE → WRITING → READY → IN_USE → FREE, packed
//!   two bits per slot into one atomic word; every transition is one
//!   compare-and-swap computed by a pure function ([`transition`]), which the
//!   model test explores exhaustively.
//! * A slot returns to the ring when the consumer's [`FrameRef`] is dropped.
//! * Slot memory is allocated by the producer the first time a slot sees a
//!   given frame size and then reused; backends may supply their own memory
//!   (the X11 backend uses MIT-SHM segments, so the X server writes straight
//!   into the slot).

use std::cell::UnsafeCell;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::Thread;
use std::time::{Duration, Instant};

use crate::frame::{DamageRect, FrameMeta};

/// Number of slots.
pub const SLOTS: usize = 3;

/// The state of one slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum SlotState {
    /// Owned by the ring; the producer may take it.
    Free = 0,
    /// The producer is filling it.
    Writing = 1,
    /// Holds the newest complete frame.
    Ready = 2,
    /// The consumer is reading it.
    InUse = 3,
}

/// The packed states of all slots (two bits each).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct RingWord(pub u32);

impl RingWord {
    /// State of slot `i`.
    pub fn get(self, i: usize) -> SlotState {
        match (self.0 >> (2 * i)) & 0b11 {
            0 => SlotState::Free,
            1 => SlotState::Writing,
            2 => SlotState::Ready,
            _ => SlotState::InUse,
        }
    }

    fn set(self, i: usize, s: SlotState) -> Self {
        RingWord((self.0 & !(0b11 << (2 * i))) | ((s as u32) << (2 * i)))
    }

    fn find(self, s: SlotState) -> Option<usize> {
        self.find_from(s, 0)
    }

    /// The first slot in state `s` at or after `from`, wrapping around.
    fn find_from(self, s: SlotState, from: usize) -> Option<usize> {
        (0..SLOTS).map(|k| (from + k) % SLOTS).find(|&i| self.get(i) == s)
    }

    /// How many slots are in state `s`.
    pub fn count(self, s: SlotState) -> usize {
        (0..SLOTS).filter(|&i| self.get(i) == s).count()
    }
}

/// A transition of the ring's state machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// Producer: FREE → WRITING, the first FREE slot at or after the given
    /// index (the producer rotates it, so every slot is written — and its
    /// memory allocated — within the first frames, not whenever timing
    /// first lets a third slot be free).
    Begin(usize),
    /// Producer: WRITING(i) → READY, an older READY → FREE.
    Publish(usize),
    /// Producer: WRITING(i) → FREE (frame abandoned).
    Abandon(usize),
    /// Consumer: READY → IN_USE.
    Take,
    /// Consumer: IN_USE(i) → FREE.
    Release(usize),
}

/// Applies `op` to `word`. Returns the new word, the slot it concerned and
/// whether an untaken frame was overwritten, or `None` if `op` is not possible.
pub fn transition(word: RingWord, op: Op) -> Option<(RingWord, usize, bool)> {
    match op {
        Op::Begin(from) => word.find_from(SlotState::Free, from).map(|i| (word.set(i, SlotState::Writing), i, false)),
        Op::Publish(i) => {
            (word.get(i) == SlotState::Writing).then_some(())?;
            let (w, dropped) = match word.find(SlotState::Ready) {
                Some(old) => (word.set(old, SlotState::Free), true),
                None => (word, false),
            };
            Some((w.set(i, SlotState::Ready), i, dropped))
        }
        Op::Abandon(i) => (word.get(i) == SlotState::Writing).then(|| (word.set(i, SlotState::Free), i, false)),
        Op::Take => word.find(SlotState::Ready).map(|i| (word.set(i, SlotState::InUse), i, false)),
        Op::Release(i) => (word.get(i) == SlotState::InUse).then(|| (word.set(i, SlotState::Free), i, false)),
    }
}

/// Memory behind one slot: a pointer and length kept alive by `owner`.
pub struct SlotMemory {
    ptr: NonNull<u8>,
    len: usize,
    key: u64,
    _owner: Box<dyn Send + Sync>,
}

impl std::fmt::Debug for SlotMemory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SlotMemory").field("len", &self.len).field("key", &self.key).finish()
    }
}

// SAFETY: the memory is only reached through the ring, whose state machine gives
// exactly one side access at a time; the owner is Send + Sync.
unsafe impl Send for SlotMemory {}
// SAFETY: as above; shared references only read.
unsafe impl Sync for SlotMemory {}

impl SlotMemory {
    /// Zeroed heap memory of `len` bytes.
    pub fn heap(len: usize) -> Self {
        let mut owner = vec![0u8; len].into_boxed_slice();
        let ptr = NonNull::new(owner.as_mut_ptr()).unwrap_or(NonNull::dangling());
        Self { ptr, len, key: 0, _owner: Box::new(HeapOwner(owner)) }
    }

    /// Memory owned by something else (for example a shared-memory segment).
    ///
    /// # Safety
    /// `ptr` must be valid for reads and writes of `len` bytes for as long as
    /// `owner` lives, and nothing else may access it meanwhile except through
    /// a party the caller synchronises with the ring (for example the X server
    /// writing during a synchronous request issued by the producer).
    pub unsafe fn from_raw(ptr: NonNull<u8>, len: usize, key: u64, owner: Box<dyn Send + Sync>) -> Self {
        Self { ptr, len, key, _owner: owner }
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the memory is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The backend's tag for this memory (for example a SHM segment id).
    pub fn key(&self) -> u64 {
        self.key
    }

    /// The bytes.
    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: from_raw's/heap's contract: valid for len bytes while owner lives.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    /// The bytes, mutably.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as above, and &mut self makes this the only reference.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

struct HeapOwner(#[allow(dead_code)] Box<[u8]>);
// SAFETY: plain bytes.
unsafe impl Sync for HeapOwner {}

#[derive(Default)]
struct Slot {
    memory: UnsafeCell<Option<SlotMemory>>,
    meta: UnsafeCell<Option<FrameMeta>>,
    /// What may differ from the frame the consumer took before (`None`:
    /// unknown, the whole frame).
    damage: UnsafeCell<Option<DamageRect>>,
}

/// Counters kept by the ring.
#[derive(Debug, Default)]
pub struct RingStats {
    /// Frames published by the producer.
    pub published: AtomicU64,
    /// Frames overwritten before the consumer took them.
    pub overwritten: AtomicU64,
    /// Frames taken by the consumer.
    pub taken: AtomicU64,
    /// Slot memory allocations (first frame of a size, size changes).
    pub allocations: AtomicU64,
}

struct Shared {
    slots: [Slot; SLOTS],
    word: AtomicU32,
    waiter: Mutex<Option<Thread>>,
    producer_gone: AtomicBool,
    consumer_gone: AtomicBool,
    frame_requested: AtomicBool,
    stats: RingStats,
}

// SAFETY: slot contents are only touched by the side the state word grants them
// to (WRITING: producer, IN_USE: consumer), with Acquire/Release on the word.
unsafe impl Sync for Shared {}

impl Shared {
    fn apply(&self, op: Op) -> Option<(usize, bool)> {
        let mut current = RingWord(self.word.load(Ordering::Acquire));
        loop {
            let (next, slot, dropped) = transition(current, op)?;
            match self.word.compare_exchange_weak(current.0, next.0, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return Some((slot, dropped)),
                Err(actual) => current = RingWord(actual),
            }
        }
    }

    fn wake_consumer(&self) {
        // try_lock: the producer never waits. If the consumer holds the lock it
        // is registering and re-checks the ring before parking.
        if let Ok(waiter) = self.waiter.try_lock()
            && let Some(thread) = waiter.as_ref()
        {
            thread.unpark();
        }
    }
}

/// Creates a ring and returns its two ends.
pub fn frame_ring() -> (RingProducer, RingConsumer) {
    let shared = Arc::new(Shared {
        slots: Default::default(),
        word: AtomicU32::new(0),
        waiter: Mutex::new(None),
        producer_gone: AtomicBool::new(false),
        consumer_gone: AtomicBool::new(false),
        frame_requested: AtomicBool::new(false),
        stats: RingStats::default(),
    });
    (RingProducer { shared: shared.clone(), next_slot: 0, last_damage: None }, RingConsumer { shared })
}

/// The producer end, owned by a capture backend.
pub struct RingProducer {
    shared: Arc<Shared>,
    /// Where [`RingProducer::begin`] starts looking for a FREE slot.
    next_slot: usize,
    /// Damage stored with the last published frame.
    last_damage: Option<DamageRect>,
}

impl std::fmt::Debug for RingProducer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RingProducer").field("word", &self.shared.word.load(Ordering::Relaxed)).finish()
    }
}

impl RingProducer {
    /// Starts a frame in a free slot. Never blocks.
    pub fn begin(&mut self) -> WriteSlot<'_> {
        let (index, _) = self.shared.apply(Op::Begin(self.next_slot)).expect(
            "a free slot exists: at most one READY and one IN_USE of three, and &mut self excludes a second WRITING",
        );
        self.next_slot = (index + 1) % SLOTS;
        WriteSlot { producer: self, index, published: false }
    }

    /// Whether the consumer asked for a frame even if nothing changed (a
    /// keyframe request or keep-alive); clears the request.
    pub fn take_frame_request(&self) -> bool {
        self.shared.frame_requested.swap(false, Ordering::AcqRel)
    }

    /// Whether the consumer end was dropped.
    pub fn consumer_gone(&self) -> bool {
        self.shared.consumer_gone.load(Ordering::Acquire)
    }

    /// Ring counters.
    pub fn stats(&self) -> &RingStats {
        &self.shared.stats
    }
}

impl Drop for RingProducer {
    fn drop(&mut self) {
        self.shared.producer_gone.store(true, Ordering::Release);
        self.shared.wake_consumer();
    }
}

/// A slot being written. Dropping it without [`WriteSlot::publish`] returns the
/// slot to the ring.
#[derive(Debug)]
pub struct WriteSlot<'a> {
    producer: &'a mut RingProducer,
    index: usize,
    published: bool,
}

impl WriteSlot<'_> {
    fn slot(&self) -> &Slot {
        &self.producer.shared.slots[self.index]
    }

    /// Index of the slot (0..3), for backends that keep per-slot state.
    pub fn index(&self) -> usize {
        self.index
    }

    /// The slot's memory, if any was allocated.
    pub fn memory(&mut self) -> Option<&mut SlotMemory> {
        // SAFETY: the slot is WRITING, which only this producer can be.
        unsafe { (*self.slot().memory.get()).as_mut() }
    }

    /// Makes sure the slot holds exactly `len` bytes, calling `alloc` only when
    /// it holds none or a different size.
    pub fn ensure<E>(
        &mut self,
        len: usize,
        alloc: impl FnOnce(usize) -> Result<SlotMemory, E>,
    ) -> Result<&mut SlotMemory, E> {
        let stats = &self.producer.shared.stats;
        // SAFETY: the slot is WRITING, which only this producer can be.
        let memory = unsafe { &mut *self.slot().memory.get() };
        if memory.as_ref().is_none_or(|m| m.len() != len) {
            // Free the old memory first so a size change never holds both.
            *memory = None;
            *memory = Some(alloc(len)?);
            stats.allocations.fetch_add(1, Ordering::Relaxed);
        }
        Ok(memory.as_mut().expect("just ensured"))
    }

    /// Makes sure the slot holds `len` bytes of heap memory and returns them.
    pub fn heap_bytes(&mut self, len: usize) -> &mut [u8] {
        match self.ensure(len, |len| Ok::<_, std::convert::Infallible>(SlotMemory::heap(len))) {
            Ok(memory) => memory.as_mut_slice(),
        }
    }

    /// Publishes the frame as the newest; an untaken older frame is dropped.
    /// Returns whether one was. The consumer sees no damage information
    /// ([`FrameRef::damage`] is `None`: the whole frame may have changed).
    ///
    /// # Panics
    /// If the slot holds fewer than `meta.len_bytes()` bytes: a backend bug.
    pub fn publish(self, meta: FrameMeta) -> bool {
        self.publish_with_damage(meta, None)
    }

    /// Publishes the frame with what changed since the previous published
    /// frame (`None`: unknown). If that frame is still untaken (and about to
    /// be dropped), its damage is added, so [`FrameRef::damage`] always
    /// covers everything since the frame the consumer took before.
    ///
    /// # Panics
    /// As [`WriteSlot::publish`].
    pub fn publish_with_damage(mut self, meta: FrameMeta, damage: Option<DamageRect>) -> bool {
        let shared = &self.producer.shared;
        let slot = &shared.slots[self.index];
        // A READY frame now will either be dropped by this publish or taken
        // meanwhile; either way merging is safe (at worst too much damage).
        // None can become READY in between: only the producer publishes.
        let untaken = RingWord(shared.word.load(Ordering::Acquire)).find(SlotState::Ready).is_some();
        let damage = if untaken { DamageRect::union_opt(damage, self.producer.last_damage) } else { damage };
        // SAFETY: still WRITING, only the producer touches the slot.
        unsafe {
            let len = (*slot.memory.get()).as_ref().map_or(0, SlotMemory::len);
            assert!(len >= meta.len_bytes(), "published {} bytes of frame in a {len}-byte slot", meta.len_bytes());
            *slot.meta.get() = Some(meta);
            *slot.damage.get() = damage;
        }
        self.producer.last_damage = damage;
        let (_, dropped) = shared.apply(Op::Publish(self.index)).expect("slot is WRITING");
        self.published = true;
        shared.stats.published.fetch_add(1, Ordering::Relaxed);
        if dropped {
            shared.stats.overwritten.fetch_add(1, Ordering::Relaxed);
        }
        shared.wake_consumer();
        dropped
    }
}

impl Drop for WriteSlot<'_> {
    fn drop(&mut self) {
        if !self.published {
            self.producer.shared.apply(Op::Abandon(self.index)).expect("slot is WRITING");
        }
    }
}

/// What [`RingConsumer::take_timeout`] found.
#[derive(Debug)]
pub enum Take<'a> {
    /// The newest frame.
    Frame(FrameRef<'a>),
    /// No new frame within the timeout.
    Timeout,
    /// The producer is gone and no frame is left.
    Closed,
}

/// The consumer end, owned by the encoder thread.
pub struct RingConsumer {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for RingConsumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RingConsumer").field("word", &self.shared.word.load(Ordering::Relaxed)).finish()
    }
}

impl RingConsumer {
    /// Takes the newest frame if one is ready.
    pub fn try_take(&mut self) -> Option<FrameRef<'_>> {
        let (index, _) = self.shared.apply(Op::Take)?;
        self.shared.stats.taken.fetch_add(1, Ordering::Relaxed);
        let slot = &self.shared.slots[index];
        // SAFETY: the slot is IN_USE, only this consumer (borrowed mutably) reads it,
        // and the Acquire in `apply` orders the producer's writes before us.
        let (memory, meta, damage) = unsafe {
            ((*slot.memory.get()).as_ref(), (*slot.meta.get()).expect("READY slots have metadata"), *slot.damage.get())
        };
        let data = &memory.expect("READY slots have memory").as_slice()[..meta.len_bytes()];
        Some(FrameRef { shared: &self.shared, index, meta, damage, data })
    }

    /// Waits up to `timeout` for a frame.
    pub fn take_timeout(&mut self, timeout: Duration) -> Take<'_> {
        let deadline = Instant::now() + timeout;
        {
            let mut waiter = self.shared.waiter.lock().unwrap_or_else(|e| e.into_inner());
            let me = std::thread::current();
            if waiter.as_ref().is_none_or(|t| t.id() != me.id()) {
                *waiter = Some(me);
            }
        }
        loop {
            let word = RingWord(self.shared.word.load(Ordering::Acquire));
            if word.find(SlotState::Ready).is_some() {
                break;
            }
            if self.shared.producer_gone.load(Ordering::Acquire) {
                return Take::Closed;
            }
            let now = Instant::now();
            if now >= deadline {
                return Take::Timeout;
            }
            std::thread::park_timeout(deadline - now);
        }
        match self.try_take() {
            Some(frame) => Take::Frame(frame),
            None => Take::Timeout,
        }
    }

    /// Asks the producer for a frame even if the source did not change.
    pub fn request_frame(&self) {
        self.shared.frame_requested.store(true, Ordering::Release);
    }

    /// Whether the producer end was dropped.
    pub fn producer_gone(&self) -> bool {
        self.shared.producer_gone.load(Ordering::Acquire)
    }

    /// Ring counters.
    pub fn stats(&self) -> &RingStats {
        &self.shared.stats
    }

    /// The current slot states (for tests and diagnostics).
    pub fn word(&self) -> RingWord {
        RingWord(self.shared.word.load(Ordering::Acquire))
    }
}

impl Drop for RingConsumer {
    fn drop(&mut self) {
        self.shared.consumer_gone.store(true, Ordering::Release);
    }
}

/// A frame the consumer is reading. Dropping it returns the slot to the ring.
pub struct FrameRef<'a> {
    shared: &'a Shared,
    index: usize,
    meta: FrameMeta,
    damage: Option<DamageRect>,
    data: &'a [u8],
}

impl std::fmt::Debug for FrameRef<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrameRef").field("slot", &self.index).field("meta", &self.meta).finish()
    }
}

impl FrameRef<'_> {
    /// The frame's metadata.
    pub fn meta(&self) -> &FrameMeta {
        &self.meta
    }

    /// The pixels: `meta().height` rows of `meta().stride_bytes` bytes.
    pub fn data(&self) -> &[u8] {
        self.data
    }

    /// What may differ from the frame the consumer took before this one
    /// (frames the ring dropped in between included); `None` when unknown
    /// (the whole frame may differ). Meaningless across a size change.
    pub fn damage(&self) -> Option<DamageRect> {
        self.damage
    }

    /// The slot this frame lives in.
    pub fn slot_index(&self) -> usize {
        self.index
    }
}

impl Drop for FrameRef<'_> {
    fn drop(&mut self) {
        self.shared.apply(Op::Release(self.index)).expect("slot is IN_USE");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::PixelFormat;
    use std::collections::{HashSet, VecDeque};

    fn meta(width: u32, height: u32, seq: u64) -> FrameMeta {
        FrameMeta {
            width,
            height,
            stride_bytes: width as usize * 4,
            format: PixelFormat::Bgrx,
            captured_at: Instant::now(),
            seq,
            changed: true,
        }
    }

    /// Exhaustive model check of the state machine: every interleaving of the
    /// producer's and consumer's operations, each a single CAS on the word.
    #[test]
    fn model_every_interleaving_keeps_invariants() {
        // Model state: (word, producer's WRITING slot, consumer's IN_USE slot).
        let start = (RingWord(0), None::<usize>, None::<usize>);
        let mut seen = HashSet::new();
        let mut queue = VecDeque::from([start]);
        while let Some(state @ (word, writing, reading)) = queue.pop_front() {
            if !seen.insert(state) {
                continue;
            }
            // Invariants: exactly the owned slots are WRITING/IN_USE, at most one READY.
            assert_eq!(word.count(SlotState::Writing), usize::from(writing.is_some()), "{word:?}");
            assert_eq!(word.count(SlotState::InUse), usize::from(reading.is_some()), "{word:?}");
            assert!(word.count(SlotState::Ready) <= 1, "{word:?}");
            let mut next = Vec::new();
            match writing {
                None => {
                    for from in 0..SLOTS {
                        let (w, i, _) = transition(word, Op::Begin(from)).expect("producer can always begin");
                        next.push((w, Some(i), reading));
                    }
                }
                Some(i) => {
                    let (w, _, _) = transition(word, Op::Publish(i)).expect("publish");
                    next.push((w, None, reading));
                    let (w, _, _) = transition(word, Op::Abandon(i)).expect("abandon");
                    next.push((w, None, reading));
                }
            }
            match reading {
                None => {
                    if let Some((w, i, _)) = transition(word, Op::Take) {
                        next.push((w, writing, Some(i)));
                    } else {
                        assert_eq!(word.count(SlotState::Ready), 0);
                    }
                }
                Some(i) => {
                    let (w, _, _) = transition(word, Op::Release(i)).expect("release");
                    next.push((w, writing, None));
                }
            }
            queue.extend(next);
        }
        // Invalid operations are refused.
        assert!(transition(RingWord(0), Op::Publish(0)).is_none());
        assert!(transition(RingWord(0), Op::Release(1)).is_none());
        assert!(transition(RingWord(0), Op::Take).is_none());
        assert!(seen.len() > 20, "explored {} states", seen.len());
    }

    #[test]
    fn consumer_gets_newest_and_older_is_overwritten() {
        let (mut p, mut c) = frame_ring();
        for seq in 0..3 {
            let mut s = p.begin();
            s.heap_bytes(16).fill(seq as u8);
            s.publish(meta(2, 2, seq));
        }
        let f = c.try_take().expect("a frame");
        assert_eq!(f.meta().seq, 2);
        assert!(f.data().iter().all(|&b| b == 2));
        drop(f);
        assert!(c.try_take().is_none());
        assert_eq!(c.stats().overwritten.load(Ordering::Relaxed), 2);
        assert_eq!(c.word(), RingWord(0).set(0, SlotState::Free));
    }

    #[test]
    fn producer_never_blocks_while_consumer_holds_a_frame() {
        let (mut p, mut c) = frame_ring();
        p.begin().heap_bytes(4);
        let mut s = p.begin();
        s.heap_bytes(4);
        s.publish(meta(1, 1, 0));
        let held = c.try_take().expect("frame");
        for seq in 1..100 {
            let mut s = p.begin();
            s.heap_bytes(4);
            s.publish(meta(1, 1, seq));
        }
        assert_eq!(held.meta().seq, 0);
        drop(held);
        assert_eq!(c.try_take().expect("newest").meta().seq, 99);
    }

    #[test]
    fn no_allocation_after_first_frame_of_a_size_and_clean_resize() {
        let (mut p, mut c) = frame_ring();
        for seq in 0..30 {
            let mut s = p.begin();
            s.heap_bytes(64);
            s.publish(meta(4, 4, seq));
            drop(c.try_take());
        }
        let allocs = c.stats().allocations.load(Ordering::Relaxed);
        assert!(allocs <= SLOTS as u64, "{allocs} allocations for one size");
        for seq in 30..60 {
            let mut s = p.begin();
            s.heap_bytes(8 * 8 * 4).fill(7);
            s.publish(meta(8, 8, seq));
            let f = c.try_take().expect("frame");
            assert_eq!(f.data().len(), 256);
        }
        let after = c.stats().allocations.load(Ordering::Relaxed);
        assert!(after - allocs <= SLOTS as u64, "resize reallocated {} times", after - allocs);
    }

    #[test]
    fn every_slot_is_written_within_the_first_three_frames() {
        // A consumer that always takes at once would otherwise leave the
        // third slot unused (and unallocated) until timing first frees it,
        // possibly long after warm-up: an allocation in steady state.
        let (mut p, mut c) = frame_ring();
        let mut used = HashSet::new();
        for seq in 0..3 {
            let mut s = p.begin();
            used.insert(s.index());
            s.heap_bytes(4);
            s.publish(meta(1, 1, seq));
            drop(c.try_take().expect("frame"));
        }
        assert_eq!(used.len(), SLOTS);
        assert_eq!(c.stats().allocations.load(Ordering::Relaxed), SLOTS as u64);
    }

    #[test]
    fn damage_of_a_dropped_frame_is_added_to_the_next() {
        let (mut p, mut c) = frame_ring();
        let rect = |y, height| Some(DamageRect { x: 0, y, width: 4, height });
        let publish = |p: &mut RingProducer, seq, damage| {
            let mut s = p.begin();
            s.heap_bytes(64);
            s.publish_with_damage(meta(4, 4, seq), damage);
        };
        publish(&mut p, 0, rect(0, 1));
        assert_eq!(c.try_take().expect("frame").damage(), rect(0, 1));
        // Taken in time: each frame carries its own damage.
        publish(&mut p, 1, rect(3, 1));
        assert_eq!(c.try_take().expect("frame").damage(), rect(3, 1));
        // Frame 2 is overwritten by frame 3: frame 3 reports both.
        publish(&mut p, 2, rect(1, 1));
        publish(&mut p, 3, rect(3, 1));
        let f = c.try_take().expect("frame");
        assert_eq!((f.meta().seq, f.damage()), (3, rect(1, 3)));
        drop(f);
        // Unknown damage anywhere in the chain makes the result unknown.
        publish(&mut p, 4, None);
        publish(&mut p, 5, rect(0, 1));
        assert_eq!(c.try_take().expect("frame").damage(), None);
        // A plain publish carries no damage information.
        let mut s = p.begin();
        s.heap_bytes(64);
        s.publish(meta(4, 4, 6));
        assert_eq!(c.try_take().expect("frame").damage(), None);
    }

    #[test]
    fn abandoned_slot_returns_to_ring() {
        let (mut p, c) = frame_ring();
        for _ in 0..10 {
            p.begin().heap_bytes(4);
        }
        assert_eq!(c.word().count(SlotState::Free), SLOTS);
    }

    #[test]
    fn closed_when_producer_dropped() {
        let (p, mut c) = frame_ring();
        drop(p);
        assert!(matches!(c.take_timeout(Duration::from_secs(5)), Take::Closed));
    }

    /// Two threads, real atomics: every frame the consumer sees is whole (all
    /// bytes carry its sequence number), sequence numbers only increase, and
    /// all three slots are FREE at the end (none lost).
    #[test]
    fn stress_two_threads_no_torn_frame_no_lost_slot() {
        const FRAMES: u64 = 20_000;
        let (mut p, mut c) = frame_ring();
        let producer = std::thread::Builder::new()
            .name("ring-producer".into())
            .spawn(move || {
                for seq in 1..=FRAMES {
                    let mut s = p.begin();
                    // Alternate sizes so reallocation races are covered too.
                    let side = if seq % 1000 < 500 { 16 } else { 24 };
                    let bytes = s.heap_bytes(side * side * 4);
                    bytes.fill((seq % 251) as u8);
                    bytes[..8].copy_from_slice(&seq.to_le_bytes());
                    s.publish(meta(side as u32, side as u32, seq));
                }
            })
            .expect("spawn");
        let mut last = 0;
        let mut seen = 0u64;
        loop {
            match c.take_timeout(Duration::from_secs(10)) {
                Take::Frame(f) => {
                    let seq = f.meta().seq;
                    assert!(seq > last, "sequence went from {last} to {seq}");
                    last = seq;
                    let d = f.data();
                    assert_eq!(u64::from_le_bytes(d[..8].try_into().expect("8 bytes")), seq, "torn header");
                    assert!(d[8..].iter().all(|&b| b == (seq % 251) as u8), "torn frame {seq}");
                    assert_eq!(d.len(), f.meta().len_bytes());
                    seen += 1;
                }
                Take::Timeout => panic!("producer stalled"),
                Take::Closed => break,
            }
        }
        producer.join().expect("producer thread");
        assert_eq!(last, FRAMES, "the final frame is always delivered");
        let s = c.stats();
        assert_eq!(s.published.load(Ordering::Relaxed), FRAMES);
        assert_eq!(s.taken.load(Ordering::Relaxed), seen);
        assert_eq!(seen + s.overwritten.load(Ordering::Relaxed), FRAMES, "every frame taken or overwritten");
        assert_eq!(c.word().count(SlotState::Free), SLOTS, "a slot was lost");
    }
}
