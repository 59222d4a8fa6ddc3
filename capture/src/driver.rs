//! The capture thread: captures a [`CaptureBackend`] when it changes, at
//! most at the requested frame rate.
//!
//! The thread waits on the backend ([`CaptureBackend::wait_for_change`]): a
//! change signal (X11 DAMAGE, a new PipeWire buffer) is captured at once
//! unless the frame-rate limit — a minimum spacing between frames, not a
//! fixed grid — holds it back; backends without signals are polled once per
//! frame period, as before. The decisions live in the sans-IO
//! [`crate::schedule::CaptureSchedule`]; this module only does the I/O.
//!
//! Unchanged screens cost next to nothing: the backend publishes nothing, so
//! nothing is converted or encoded. To keep the stream alive (and give late
//! joiners and keyframe requests something to encode) the driver forces one
//! real frame, marked `changed: false`, when the consumer asks for one
//! ([`crate::RingConsumer::request_frame`]) or when `keepalive` has passed
//! since the last published frame.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::backend::{CaptureBackend, Tick};
use crate::error::Result;
use crate::ring::RingProducer;
use crate::schedule::{CaptureSchedule, Step};

/// Counters of the capture thread.
#[derive(Debug, Default)]
pub struct CaptureStats {
    /// Ticks that published a frame.
    pub frames_captured: AtomicU64,
    /// Ticks skipped because nothing changed.
    pub frames_unchanged: AtomicU64,
    /// Published frames that were forced (keep-alive or requested) while unchanged.
    pub frames_forced: AtomicU64,
    /// Total time spent inside `capture` for published frames, in microseconds.
    pub capture_us_total: AtomicU64,
    /// Times the backend woke the thread early with a change signal (X11
    /// DAMAGE, a new PipeWire buffer).
    pub change_signals: AtomicU64,
}

/// Capture settings.
#[derive(Debug, Clone, Copy)]
pub struct CaptureConfig {
    /// Highest frame rate: published frames are at least `1 / fps` apart,
    /// and backends that cannot signal changes are polled at this rate.
    pub fps: f32,
    /// Longest gap between published frames while the source is unchanged.
    pub keepalive: Duration,
    /// Start paused (see [`CaptureHandle::set_paused`]): nothing is read from
    /// the source until resumed.
    pub start_paused: bool,
}

impl Default for CaptureConfig {
    fn default() -> Self {
        Self { fps: 30.0, keepalive: Duration::from_secs(1), start_paused: false }
    }
}

/// A running capture thread.
#[derive(Debug)]
pub struct CaptureHandle {
    stop: Arc<AtomicBool>,
    paused: Arc<AtomicBool>,
    fps_bits: Arc<AtomicU32>,
    thread: Option<JoinHandle<Result<()>>>,
}

impl CaptureHandle {
    /// Changes the frame rate from the next tick on.
    pub fn set_fps(&self, fps: f32) {
        self.fps_bits.store(sanitize_fps(fps).to_bits(), Ordering::Relaxed);
    }

    /// A handle that changes the frame rate from another thread.
    pub fn fps_control(&self) -> FpsControl {
        FpsControl(self.fps_bits.clone())
    }

    /// Pauses or resumes capturing. A paused thread only sleeps: nothing is
    /// read from the source (for example while nobody watches).
    pub fn set_paused(&self, paused: bool) {
        self.paused.store(paused, Ordering::Release);
    }

    /// Asks the thread to stop (it finishes its current tick).
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Release);
    }

    /// Whether the thread has ended (stopped or failed).
    pub fn is_finished(&self) -> bool {
        self.thread.as_ref().is_none_or(JoinHandle::is_finished)
    }

    /// Stops the thread and returns how it ended.
    pub fn join(mut self) -> Result<()> {
        self.stop();
        self.join_inner()
    }

    fn join_inner(&mut self) -> Result<()> {
        match self.thread.take() {
            Some(t) => t.join().unwrap_or_else(|_| Err(crate::CaptureError::X11("capture thread panicked".into()))),
            None => Ok(()),
        }
    }
}

impl Drop for CaptureHandle {
    fn drop(&mut self) {
        self.stop();
        let _ = self.join_inner();
    }
}

/// Changes a running capture's frame rate (cheap to clone and send).
#[derive(Debug, Clone)]
pub struct FpsControl(Arc<AtomicU32>);

impl FpsControl {
    /// Sets the frame rate from the next tick on.
    pub fn set(&self, fps: f32) {
        self.0.store(sanitize_fps(fps).to_bits(), Ordering::Relaxed);
    }

    /// The frame rate in force.
    pub fn get(&self) -> f32 {
        f32::from_bits(self.0.load(Ordering::Relaxed))
    }
}

fn sanitize_fps(fps: f32) -> f32 {
    if fps.is_finite() { fps.clamp(0.1, 240.0) } else { 30.0 }
}

/// Starts the capture thread `peep-capture`. It ends when stopped, when the
/// ring's consumer is dropped, or with the backend's first error (for
/// example [`crate::CaptureError::SourceGone`]); dropping the ring's producer
/// then tells the consumer.
pub fn spawn_capture(
    mut backend: Box<dyn CaptureBackend>,
    mut ring: RingProducer,
    config: CaptureConfig,
    stats: Arc<CaptureStats>,
) -> std::io::Result<CaptureHandle> {
    let controls = Controls {
        stop: Arc::new(AtomicBool::new(false)),
        paused: Arc::new(AtomicBool::new(config.start_paused)),
        fps_bits: Arc::new(AtomicU32::new(sanitize_fps(config.fps).to_bits())),
    };
    let thread = {
        let controls = controls.clone();
        std::thread::Builder::new()
            .name("peep-capture".into())
            .spawn(move || run(backend.as_mut(), &mut ring, &controls, config.keepalive, &stats, &SystemClock))?
    };
    let Controls { stop, paused, fps_bits } = controls;
    Ok(CaptureHandle { stop, paused, fps_bits, thread: Some(thread) })
}

/// The shared switches of a capture thread.
#[derive(Debug, Clone)]
struct Controls {
    stop: Arc<AtomicBool>,
    paused: Arc<AtomicBool>,
    fps_bits: Arc<AtomicU32>,
}

/// Where the loop gets the time from: the real clock, or a simulated one in tests.
trait Clock {
    fn now(&self) -> Instant;
    fn sleep_until(&self, deadline: Instant);
}

struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }

    fn sleep_until(&self, deadline: Instant) {
        let now = Instant::now();
        if deadline > now {
            std::thread::sleep(deadline - now);
        }
    }
}

/// How long a paused thread sleeps between looks at its switches.
const PAUSE_POLL: Duration = Duration::from_millis(20);

/// The capture loop: [`CaptureSchedule`] decides, this does the I/O.
fn run(
    backend: &mut dyn CaptureBackend,
    ring: &mut RingProducer,
    controls: &Controls,
    keepalive: Duration,
    stats: &CaptureStats,
    clock: &impl Clock,
) -> Result<()> {
    let fps = || f32::from_bits(controls.fps_bits.load(Ordering::Relaxed));
    let mut schedule = CaptureSchedule::new(fps(), keepalive);
    let mut seq = 0u64;
    while !controls.stop.load(Ordering::Acquire) && !ring.consumer_gone() {
        if controls.paused.load(Ordering::Acquire) {
            clock.sleep_until(clock.now() + PAUSE_POLL);
            // Resume with a frame even if nothing changed meanwhile.
            schedule.restart();
            continue;
        }
        schedule.set_fps(fps());
        if ring.take_frame_request() {
            schedule.request_frame();
        }
        let now = clock.now();
        match schedule.next(now) {
            Step::Capture { force } => {
                let tick = backend.capture(ring, seq, force)?;
                seq += 1;
                match tick {
                    Tick::Published { changed } => {
                        stats.frames_captured.fetch_add(1, Ordering::Relaxed);
                        if !changed {
                            stats.frames_forced.fetch_add(1, Ordering::Relaxed);
                        }
                        let spent = clock.now().saturating_duration_since(now);
                        stats.capture_us_total.fetch_add(spent.as_micros() as u64, Ordering::Relaxed);
                    }
                    Tick::Unchanged => {
                        stats.frames_unchanged.fetch_add(1, Ordering::Relaxed);
                    }
                }
                schedule.captured(now, matches!(tick, Tick::Published { .. }));
            }
            Step::WaitForChange { until } => {
                // A frame request or fps change is seen at the latest at `until`
                // (one frame period): waits never outlast the next poll.
                if backend.wait_for_change(until)? {
                    stats.change_signals.fetch_add(1, Ordering::Relaxed);
                    schedule.change_signalled();
                }
            }
            Step::Sleep { until } => clock.sleep_until(until),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::synthetic::SyntheticBackend;
    use crate::frame::{FrameMeta, PixelFormat};
    use crate::ring::{RingConsumer, Take, frame_ring};
    use crate::synthetic::Scene;
    use std::sync::Mutex;

    // ---- The capture loop in simulated time ----------------------------
    //
    // `run` is driven by a clock that only moves when the loop sleeps or
    // waits, and by a scripted source whose content changes at given
    // instants. Nothing depends on the real time or the machine's load, so
    // the assertions are exact.

    type Action = Box<dyn FnOnce() + Send>;

    #[derive(Clone)]
    struct SimClock {
        base: Instant,
        offset_ns: Arc<AtomicU64>,
        end: Instant,
        stop: Arc<AtomicBool>,
        actions: Arc<Mutex<Vec<(Instant, Action)>>>,
    }

    impl SimClock {
        fn new(end_ms: u64) -> Self {
            let base = Instant::now();
            Self {
                base,
                offset_ns: Arc::default(),
                end: base + ms(end_ms),
                stop: Arc::default(),
                actions: Arc::default(),
            }
        }

        fn at(&self, millis: f64) -> Instant {
            self.base + Duration::from_secs_f64(millis / 1e3)
        }

        fn ms(&self, t: Instant) -> f64 {
            (t - self.base).as_secs_f64() * 1e3
        }

        /// Runs `action` once the clock reaches `at_ms`.
        fn schedule(&self, at_ms: u64, action: impl FnOnce() + Send + 'static) {
            self.actions.lock().expect("actions").push((self.at(at_ms as f64), Box::new(action)));
        }

        fn advance_to(&self, t: Instant) {
            let t = t.max(self.now());
            self.offset_ns.store((t - self.base).as_nanos() as u64, Ordering::SeqCst);
            let due: Vec<Action> = {
                let mut actions = self.actions.lock().expect("actions");
                let (due, later) = actions.drain(..).partition(|(at, _)| *at <= t);
                *actions = later;
                due.into_iter().map(|(_, a)| a).collect()
            };
            due.into_iter().for_each(|a| a());
            if t >= self.end {
                self.stop.store(true, Ordering::SeqCst);
            }
        }
    }

    impl Clock for SimClock {
        fn now(&self) -> Instant {
            self.base + Duration::from_nanos(self.offset_ns.load(Ordering::SeqCst))
        }

        fn sleep_until(&self, deadline: Instant) {
            self.advance_to(deadline);
        }
    }

    /// A source whose content changes at scripted instants.
    struct SimSource {
        clock: SimClock,
        changes: Vec<Instant>,
        /// Changes up to here are in the content (`dirty`).
        applied: usize,
        /// Changes up to here were signalled by `wait_for_change`.
        signalled: usize,
        dirty: bool,
        /// Whether `wait_for_change` signals changes (X11 with DAMAGE) or
        /// only sleeps (the default: the synthetic source).
        signals: bool,
        /// `false`: never publishes (an unmapped window).
        publishes: bool,
        publish_cost: Duration,
        published: Arc<Mutex<Vec<(f64, bool)>>>,
        attempts: Arc<AtomicU64>,
    }

    impl SimSource {
        fn new(clock: &SimClock, changes_ms: impl IntoIterator<Item = f64>, signals: bool) -> Self {
            Self {
                clock: clock.clone(),
                changes: changes_ms.into_iter().map(|m| clock.at(m)).collect(),
                applied: 0,
                signalled: 0,
                dirty: true,
                signals,
                publishes: true,
                publish_cost: Duration::from_micros(500),
                published: Arc::default(),
                attempts: Arc::default(),
            }
        }
    }

    impl CaptureBackend for SimSource {
        fn capture(&mut self, ring: &mut RingProducer, seq: u64, force: bool) -> Result<Tick> {
            let now = self.clock.now();
            while self.applied < self.changes.len() && self.changes[self.applied] <= now {
                self.applied += 1;
                self.dirty = true;
            }
            self.signalled = self.signalled.max(self.applied);
            self.attempts.fetch_add(1, Ordering::SeqCst);
            if !self.publishes || !(self.dirty || force) {
                return Ok(Tick::Unchanged);
            }
            let changed = std::mem::take(&mut self.dirty);
            let mut slot = ring.begin();
            slot.heap_bytes(4);
            slot.publish(FrameMeta {
                width: 1,
                height: 1,
                stride_bytes: 4,
                format: PixelFormat::Bgrx,
                captured_at: now,
                seq,
                changed,
            });
            self.published.lock().expect("log").push((self.clock.ms(now), changed));
            self.clock.advance_to(now + self.publish_cost);
            Ok(Tick::Published { changed })
        }

        fn size(&self) -> (u32, u32) {
            (1, 1)
        }

        fn set_cursor(&mut self, _visible: bool) {}

        fn describe(&self) -> String {
            "simulated".into()
        }

        fn wait_for_change(&mut self, deadline: Instant) -> Result<bool> {
            if self.signals
                && let Some(&change) = self.changes.get(self.signalled)
                && change <= deadline
            {
                self.signalled += 1;
                self.clock.advance_to(change);
                return Ok(true);
            }
            self.clock.advance_to(deadline);
            Ok(false)
        }
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    struct Sim {
        clock: SimClock,
        controls: Controls,
        stats: CaptureStats,
        consumer: Arc<Mutex<RingConsumer>>,
        producer: RingProducer,
    }

    impl Sim {
        fn new(end_ms: u64, fps: f32) -> Self {
            let clock = SimClock::new(end_ms);
            let controls = Controls {
                stop: clock.stop.clone(),
                paused: Arc::default(),
                fps_bits: Arc::new(AtomicU32::new(fps.to_bits())),
            };
            let (producer, consumer) = frame_ring();
            Self { clock, controls, stats: CaptureStats::default(), consumer: Arc::new(Mutex::new(consumer)), producer }
        }

        /// Runs the loop to the end; returns the published frames (ms, changed).
        fn run(&mut self, source: &mut SimSource, keepalive: Duration) -> Vec<(f64, bool)> {
            run(source, &mut self.producer, &self.controls, keepalive, &self.stats, &self.clock).expect("run");
            source.published.lock().expect("log").clone()
        }
    }

    fn times(frames: &[(f64, bool)]) -> Vec<f64> {
        frames.iter().map(|(t, _)| *t).collect()
    }

    fn assert_times(got: &[f64], want: &[f64]) {
        assert_eq!(got.len(), want.len(), "frames at {got:?}, expected {want:?}");
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() < 0.001, "frames at {got:?}, expected {want:?}");
        }
    }

    #[test]
    fn static_source_publishes_only_keepalives() {
        let mut sim = Sim::new(700, 100.0);
        let mut source = SimSource::new(&sim.clock, [], false);
        let frames = sim.run(&mut source, ms(200));
        // The first frame (changed), then a forced, unchanged one every 200 ms.
        assert_eq!(frames.iter().map(|f| f.1).collect::<Vec<_>>(), [true, false, false, false]);
        assert_times(&times(&frames), &[0.0, 200.0, 400.0, 600.0]);
        assert_eq!(sim.stats.frames_forced.load(Ordering::Relaxed), 3);
        // Polled every 10 ms in between (a poll is due 10 ms after each attempt).
        assert_eq!(sim.stats.frames_unchanged.load(Ordering::Relaxed), 66);
    }

    #[test]
    fn polled_moving_source_is_paced_at_the_requested_rate() {
        let mut sim = Sim::new(1000, 20.0);
        let changes = (1..1000).map(f64::from);
        let mut source = SimSource::new(&sim.clock, changes, false);
        let frames = sim.run(&mut source, ms(1000));
        let want: Vec<f64> = (0..20).map(|i| f64::from(i) * 50.0).collect();
        assert_times(&times(&frames), &want);
        assert!(frames.iter().all(|f| f.1), "every frame of moving content is a change");
        assert_eq!(sim.stats.frames_unchanged.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn a_signalled_change_is_captured_at_once_not_on_the_next_tick() {
        let changes = [1013.0, 2507.5];
        // Event-driven (X11 DAMAGE): captured when it happens.
        let mut sim = Sim::new(3000, 30.0);
        let mut source = SimSource::new(&sim.clock, changes, true);
        let frames = sim.run(&mut source, ms(10_000));
        assert_times(&times(&frames), &[0.0, 1013.0, 2507.5]);
        assert_eq!(sim.stats.change_signals.load(Ordering::Relaxed), 2);
        // Polled (no signals): on the next poll, up to a period later.
        let mut sim = Sim::new(3000, 30.0);
        let mut source = SimSource::new(&sim.clock, changes, false);
        let frames = times(&sim.run(&mut source, ms(10_000)));
        assert_eq!(frames.len(), 3, "{frames:?}");
        for (got, change) in frames[1..].iter().zip(changes) {
            assert!(*got > change && *got <= change + 1000.0 / 30.0, "change at {change} captured at {got}");
        }
    }

    #[test]
    fn frame_rate_is_a_minimum_spacing_for_signalled_changes() {
        let mut sim = Sim::new(990, 30.0);
        // A change every 5 ms (an animation at 200 fps), each one signalled.
        let changes = (1..200).map(|i| f64::from(i) * 5.0);
        let mut source = SimSource::new(&sim.clock, changes, true);
        let frames = times(&sim.run(&mut source, ms(1000)));
        let want: Vec<f64> = (0..30).map(|i| f64::from(i) * 1000.0 / 30.0).collect();
        assert_times(&frames, &want);
    }

    #[test]
    fn requested_frame_arrives_within_a_period_on_a_static_source() {
        let mut sim = Sim::new(1000, 10.0);
        let consumer = sim.consumer.clone();
        sim.clock.schedule(437, move || consumer.lock().expect("consumer").request_frame());
        let mut source = SimSource::new(&sim.clock, [], true);
        let frames = sim.run(&mut source, ms(3_600_000));
        // The first frame, then the requested one at the next poll (500 ms).
        assert_eq!(frames, [(0.0, true), (500.0, false)]);
    }

    #[test]
    fn forced_captures_that_publish_nothing_do_not_spin() {
        // An unmapped window: every capture, forced or not, publishes nothing.
        let mut sim = Sim::new(1000, 10.0);
        let consumer = sim.consumer.clone();
        sim.clock.schedule(250, move || consumer.lock().expect("consumer").request_frame());
        let mut source = SimSource::new(&sim.clock, [], true);
        source.publishes = false;
        let frames = sim.run(&mut source, ms(100));
        assert!(frames.is_empty());
        // One attempt per period (0, 100, …, 900): keep-alive and the
        // request are due the whole time, yet they do not add attempts.
        assert_eq!(source.attempts.load(Ordering::SeqCst), 10);
    }

    #[test]
    fn a_new_frame_rate_applies_from_the_next_step() {
        let mut sim = Sim::new(1000, 10.0);
        let fps_bits = sim.controls.fps_bits.clone();
        sim.clock.schedule(450, move || fps_bits.store(50.0f32.to_bits(), Ordering::Relaxed));
        let changes = (1..1000).map(f64::from);
        let mut source = SimSource::new(&sim.clock, changes, false);
        let frames = times(&sim.run(&mut source, ms(1000)));
        // 10 fps until the change at 450 ms is seen, at the end of the wait
        // for the poll due at 500 (a wait never outlasts one period); from
        // the frame at 500 on, 50 fps.
        let mut want = vec![0.0, 100.0, 200.0, 300.0, 400.0];
        want.extend((0..25).map(|i| 500.0 + f64::from(i) * 20.0));
        assert_times(&frames, &want);
    }

    #[test]
    fn paused_capture_publishes_nothing_and_resumes_with_a_frame() {
        let mut sim = Sim::new(1000, 10.0);
        let (pause, resume) = (sim.controls.paused.clone(), sim.controls.paused.clone());
        sim.clock.schedule(250, move || pause.store(true, Ordering::Release));
        sim.clock.schedule(610, move || resume.store(false, Ordering::Release));
        let consumer = sim.consumer.clone();
        sim.clock.schedule(400, move || consumer.lock().expect("consumer").request_frame());
        let mut source = SimSource::new(&sim.clock, [], true);
        let frames = sim.run(&mut source, ms(3_600_000));
        // Static content: the first frame; nothing while paused (not even the
        // request); on resume a forced frame when the paused thread next
        // looks (the pause is seen after the wait for the poll at 300, then
        // every 20 ms: 320, …, 620).
        assert_eq!(frames, [(0.0, true), (620.0, false)]);
    }

    // ---- The real thread ------------------------------------------------

    #[test]
    fn real_thread_delivers_a_requested_frame_on_a_static_source() {
        let (producer, mut consumer) = frame_ring();
        let backend = SyntheticBackend::new(32, 32, Scene::Static).expect("backend");
        let config = CaptureConfig { fps: 100.0, keepalive: Duration::from_secs(3600), ..CaptureConfig::default() };
        let _handle = spawn_capture(Box::new(backend), producer, config, Arc::default()).expect("spawn");
        assert!(matches!(consumer.take_timeout(Duration::from_secs(5)), Take::Frame(_)));
        assert!(matches!(consumer.take_timeout(Duration::from_millis(100)), Take::Timeout));
        consumer.request_frame();
        match consumer.take_timeout(Duration::from_secs(5)) {
            Take::Frame(f) => assert!(!f.meta().changed),
            other => panic!("expected the requested frame, got {other:?}"),
        }
    }

    #[test]
    fn consumer_drop_ends_thread() {
        let (producer, consumer) = frame_ring();
        let backend = SyntheticBackend::new(16, 16, Scene::Moving).expect("backend");
        let handle =
            spawn_capture(Box::new(backend), producer, CaptureConfig::default(), Arc::default()).expect("spawn");
        drop(consumer);
        let until = Instant::now() + Duration::from_secs(5);
        while !handle.is_finished() && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(handle.is_finished());
        handle.join().expect("ended cleanly");
    }
}
