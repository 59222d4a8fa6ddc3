//! The capture thread: paces a [`CaptureBackend`] at the requested frame rate.
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
}

/// Capture settings.
#[derive(Debug, Clone, Copy)]
pub struct CaptureConfig {
    /// Ticks per second.
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
    let stop = Arc::new(AtomicBool::new(false));
    let paused = Arc::new(AtomicBool::new(config.start_paused));
    let fps_bits = Arc::new(AtomicU32::new(sanitize_fps(config.fps).to_bits()));
    let thread = {
        let (stop, paused, fps_bits) = (stop.clone(), paused.clone(), fps_bits.clone());
        std::thread::Builder::new().name("peep-capture".into()).spawn(move || {
            let mut seq = 0u64;
            let mut next_tick = Instant::now();
            let mut last_publish: Option<Instant> = None;
            while !stop.load(Ordering::Acquire) && !ring.consumer_gone() {
                if paused.load(Ordering::Acquire) {
                    std::thread::sleep(Duration::from_millis(20));
                    // Resume with a frame even if nothing changed meanwhile.
                    last_publish = None;
                    next_tick = Instant::now();
                    continue;
                }
                let started = Instant::now();
                let force = ring.take_frame_request() || last_publish.is_none_or(|t| started - t >= config.keepalive);
                match backend.capture(&mut ring, seq, force)? {
                    Tick::Published { changed } => {
                        stats.frames_captured.fetch_add(1, Ordering::Relaxed);
                        if !changed {
                            stats.frames_forced.fetch_add(1, Ordering::Relaxed);
                        }
                        stats.capture_us_total.fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
                        last_publish = Some(started);
                    }
                    Tick::Unchanged => {
                        stats.frames_unchanged.fetch_add(1, Ordering::Relaxed);
                    }
                }
                seq += 1;
                let period = Duration::from_secs_f32(1.0 / f32::from_bits(fps_bits.load(Ordering::Relaxed)));
                next_tick += period;
                let now = Instant::now();
                if next_tick < now {
                    // Late: skip the missed ticks instead of bursting to catch up.
                    next_tick = now;
                } else {
                    std::thread::sleep(next_tick - now);
                }
            }
            Ok(())
        })?
    };
    Ok(CaptureHandle { stop, paused, fps_bits, thread: Some(thread) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::synthetic::SyntheticBackend;
    use crate::ring::{Take, frame_ring};
    use crate::synthetic::Scene;

    #[test]
    fn static_source_publishes_only_keepalives() {
        let (producer, mut consumer) = frame_ring();
        let stats = Arc::new(CaptureStats::default());
        let backend = SyntheticBackend::new(64, 64, Scene::Static).expect("backend");
        let config = CaptureConfig { fps: 100.0, keepalive: Duration::from_millis(200), ..CaptureConfig::default() };
        let handle = spawn_capture(Box::new(backend), producer, config, stats.clone()).expect("spawn");
        let mut frames = Vec::new();
        let until = Instant::now() + Duration::from_millis(700);
        while Instant::now() < until {
            if let Take::Frame(f) = consumer.take_timeout(Duration::from_millis(50)) {
                frames.push(f.meta().changed);
            }
        }
        handle.join().expect("clean stop");
        // First frame changed, then keep-alives (changed = false) every 200 ms.
        assert_eq!(frames.first(), Some(&true));
        assert!(frames[1..].iter().all(|c| !c), "{frames:?}");
        assert!((3..=5).contains(&frames.len()), "{} frames in 700 ms with a 200 ms keep-alive", frames.len());
        assert!(stats.frames_unchanged.load(Ordering::Relaxed) > 30);
    }

    #[test]
    fn requested_frame_arrives_on_static_source() {
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
    fn moving_source_is_paced_at_the_requested_rate() {
        let (producer, mut consumer) = frame_ring();
        let stats = Arc::new(CaptureStats::default());
        let backend = SyntheticBackend::new(64, 64, Scene::Moving).expect("backend");
        let config = CaptureConfig { fps: 20.0, keepalive: Duration::from_secs(1), ..CaptureConfig::default() };
        let handle = spawn_capture(Box::new(backend), producer, config, stats.clone()).expect("spawn");
        let until = Instant::now() + Duration::from_secs(1);
        let mut frames = 0;
        while Instant::now() < until {
            if let Take::Frame(_) = consumer.take_timeout(Duration::from_millis(50)) {
                frames += 1;
            }
        }
        handle.join().expect("clean stop");
        // 20 ticks in a second, give or take scheduling on a loaded machine.
        assert!((15..=22).contains(&frames), "{frames} frames in 1 s at 20 fps");
        assert_eq!(stats.frames_unchanged.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn paused_capture_publishes_nothing_and_resumes_with_a_frame() {
        let (producer, mut consumer) = frame_ring();
        let backend = SyntheticBackend::new(32, 32, Scene::Static).expect("backend");
        let config = CaptureConfig { fps: 100.0, keepalive: Duration::from_secs(3600), ..CaptureConfig::default() };
        let handle = spawn_capture(Box::new(backend), producer, config, Arc::default()).expect("spawn");
        assert!(matches!(consumer.take_timeout(Duration::from_secs(5)), Take::Frame(_)));
        handle.set_paused(true);
        std::thread::sleep(Duration::from_millis(50));
        while consumer.try_take().is_some() {}
        consumer.request_frame();
        assert!(matches!(consumer.take_timeout(Duration::from_millis(300)), Take::Timeout), "paused");
        handle.set_paused(false);
        assert!(matches!(consumer.take_timeout(Duration::from_secs(5)), Take::Frame(_)), "resumed");
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
