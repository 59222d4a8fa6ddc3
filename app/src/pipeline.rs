//! The media pipeline: capture thread → frame ring → encode thread →
//! bounded channel → consumer (a file, stdout, later the WebRTC sender).
//!
//! ```text
//!  peep-capture ──(FrameRing, 3 slots, never blocks)──▶ peep-encode ──(channel, 4)──▶ consumer
//!       ▲                                                  │   ▲
//!       └──────────── request_frame (keyframes) ───────────┘   └── Control (bitrate, fps, keyframe)
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use crossbeam_channel::{Receiver, RecvTimeoutError, SendTimeoutError, Sender, TryRecvError};
use peep_capture::backend::CaptureBackend;
use peep_capture::driver::{self, CaptureConfig, CaptureHandle, CaptureStats};
use peep_capture::{RingConsumer, Take, frame_ring};
use peep_encode::budget::{FrameDropper, Skip};
use peep_encode::{BufferPool, EncodeOutcome, EncodedFrame, Encoder, I420Frame, PooledBuf, bgra_to_i420};
use peep_transport::SendBacklog;

use crate::governor::FpsGovernor;
use crate::stats::PipelineStats;

/// Capacity of the channel from the encoder to the consumer.
///
/// Policy when full: the encode thread **blocks** (waking every 100 ms to
/// check for shutdown). Back-pressure then reaches the frame ring, where the
/// capture thread keeps overwriting the oldest untaken frame (counted in
/// `frames_dropped`): the encoded stream never has a hole that would corrupt
/// the decoder's reference chain, and latency stays bounded by one ring frame
/// plus this many encoded frames.
pub const PACKET_CHANNEL_CAPACITY: usize = 4;
/// Capacity of the control channel. Policy when full: the sender drops the
/// command and reports it (commands are idempotent settings; the next one wins).
pub const CONTROL_CHANNEL_CAPACITY: usize = 16;

/// One encoded access unit on its way to the consumer. Its buffer returns to
/// the encoder's pool when dropped.
#[derive(Debug)]
pub struct EncodedPacket {
    /// Annex-B NAL units.
    pub data: PooledBuf,
    /// Whether this is an IDR frame.
    pub keyframe: bool,
    /// Presentation time since the start of the stream (from capture time).
    pub pts: Duration,
    /// When the frame was captured.
    pub captured_at: Instant,
    /// Capture tick sequence number.
    pub seq: u64,
    /// Coded size.
    pub width: u32,
    /// Coded size.
    pub height: u32,
}

/// Run-time commands to the encode thread.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Control {
    /// New target bitrate.
    SetBitrate(u32),
    /// New frame rate (capture pacing and rate control).
    SetFps(f32),
    /// Make the next frame an IDR.
    Keyframe,
    /// Resolution policy: halve frames until they are at most this tall
    /// (`None`: native size).
    SetMaxHeight(Option<u32>),
}

/// Pipeline settings.
#[derive(Debug, Clone)]
pub struct PipelineConfig {
    /// Capture ticks per second.
    pub fps: f32,
    /// Longest gap between frames of an unchanged source.
    pub keepalive: Duration,
    /// Adapt the frame rate when the encoder overshoots its bitrate target
    /// (see [`crate::governor`]), starting from this target. `None` keeps
    /// the frame rate fixed (recording to a file).
    pub governor_start_bps: Option<u32>,
    /// Resolution policy (see [`Control::SetMaxHeight`]).
    pub max_height: Option<u32>,
    /// Start with capture paused (a share nobody watches yet); see
    /// [`Pipeline::set_paused`].
    pub start_paused: bool,
    /// The transport's send backlog: with a governor, a frame dropper in
    /// front of the encoder skips frames while it is long (see
    /// `peep_encode::budget`). `None`: only the encoder's own budget counts.
    pub send_backlog: Option<SendBacklog>,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        Self {
            fps: 30.0,
            keepalive: Duration::from_secs(1),
            governor_start_bps: None,
            max_height: None,
            start_paused: false,
            send_backlog: None,
        }
    }
}

/// A running pipeline. Dropping it stops both threads.
#[derive(Debug)]
pub struct Pipeline {
    capture: Option<CaptureHandle>,
    encode: Option<JoinHandle<Result<()>>>,
    stop: Arc<AtomicBool>,
    control: Sender<Control>,
    packets: Receiver<EncodedPacket>,
    /// Encoder-side counters.
    pub stats: Arc<PipelineStats>,
    /// Capture-side counters.
    pub capture_stats: Arc<CaptureStats>,
}

impl Pipeline {
    /// Starts capturing from `backend` and encoding with `encoder`.
    pub fn start(backend: Box<dyn CaptureBackend>, encoder: Box<dyn Encoder>, config: PipelineConfig) -> Result<Self> {
        let (producer, consumer) = frame_ring();
        let capture_stats = Arc::new(CaptureStats::default());
        let capture_config =
            CaptureConfig { fps: config.fps, keepalive: config.keepalive, start_paused: config.start_paused };
        let fps_x10 = (config.fps * 10.0).round() as u64;
        let capture = driver::spawn_capture(backend, producer, capture_config, capture_stats.clone())
            .context("starting the capture thread")?;
        let stats = Arc::new(PipelineStats::default());
        stats.fps_x10.store(fps_x10, Ordering::Relaxed);
        let stop = Arc::new(AtomicBool::new(false));
        let fps = capture.fps_control();
        // Policies: see PACKET_CHANNEL_CAPACITY and CONTROL_CHANNEL_CAPACITY.
        let (packet_tx, packets) = crossbeam_channel::bounded(PACKET_CHANNEL_CAPACITY);
        let (control, control_rx) = crossbeam_channel::bounded(CONTROL_CHANNEL_CAPACITY);
        let encode = {
            let (stats, stop) = (stats.clone(), stop.clone());
            std::thread::Builder::new()
                .name("peep-encode".into())
                .spawn(move || {
                    EncodeLoop::new(consumer, encoder, (stats, stop), (packet_tx, control_rx), fps, config).run()
                })
                .context("starting the encode thread")?
        };
        Ok(Self { capture: Some(capture), encode: Some(encode), stop, control, packets, stats, capture_stats })
    }

    /// The encoded frames.
    pub fn packets(&self) -> &Receiver<EncodedPacket> {
        &self.packets
    }

    /// Sends a run-time command; returns false if it was dropped (channel
    /// full or pipeline ended).
    pub fn control(&self, command: Control) -> bool {
        self.control.try_send(command).is_ok()
    }

    /// Pauses capture and encoding (nothing is read or encoded), or resumes.
    /// Resuming does not force a keyframe: whoever needs one (a joining
    /// viewer) asks for it, and a second IDR right after would waste a
    /// second of bitrate budget.
    pub fn set_paused(&self, paused: bool) {
        if let Some(capture) = &self.capture {
            capture.set_paused(paused);
        }
    }

    /// Receives the next packet, waiting up to `timeout`. `Ok(None)` on
    /// timeout; an error when the pipeline ended (with the reason if it failed).
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<Option<EncodedPacket>> {
        match self.packets.recv_timeout(timeout) {
            Ok(p) => Ok(Some(p)),
            Err(RecvTimeoutError::Timeout) => Ok(None),
            Err(RecvTimeoutError::Disconnected) => {
                let reason = self.finish_inner();
                Err(reason.err().unwrap_or_else(|| anyhow::anyhow!("the pipeline stopped")))
            }
        }
    }

    /// Stops capture and encoding and returns the first error either hit.
    pub fn stop(mut self) -> Result<()> {
        self.finish_inner()
    }

    fn finish_inner(&mut self) -> Result<()> {
        self.stop.store(true, Ordering::Release);
        // Capture errors (e.g. "source gone") explain why encoding stopped.
        let capture = self.capture.take().map_or(Ok(()), CaptureHandle::join);
        let encode = match self.encode.take() {
            Some(t) => t.join().unwrap_or_else(|_| Err(anyhow::anyhow!("the encode thread panicked"))),
            None => Ok(()),
        };
        capture.map_err(anyhow::Error::from)?;
        encode
    }
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        let _ = self.finish_inner();
    }
}

struct EncodeLoop {
    ring: RingConsumer,
    encoder: Box<dyn Encoder>,
    stats: Arc<PipelineStats>,
    stop: Arc<AtomicBool>,
    packets: Sender<EncodedPacket>,
    control: Receiver<Control>,
    pool: BufferPool,
    fps: peep_capture::driver::FpsControl,
    governor: Option<FpsGovernor>,
    /// Leaky-bucket frame dropper (live sharing only, with the governor).
    dropper: Option<FrameDropper>,
    send_backlog: Option<SendBacklog>,
    /// A keyframe was asked for and not produced yet (the dropper never skips it).
    keyframe_pending: bool,
    yuv: I420Frame,
    /// Halved copies of `yuv` for the resolution policy.
    scaled: [I420Frame; 2],
    max_height: Option<u32>,
    out: EncodedFrame,
    start: Option<Instant>,
}

impl EncodeLoop {
    fn new(
        ring: RingConsumer,
        encoder: Box<dyn Encoder>,
        (stats, stop): (Arc<PipelineStats>, Arc<AtomicBool>),
        (packets, control): (Sender<EncodedPacket>, Receiver<Control>),
        fps: peep_capture::driver::FpsControl,
        config: PipelineConfig,
    ) -> Self {
        // One buffer per channel slot, one being filled, one held by the consumer.
        let pool = BufferPool::new(PACKET_CHANNEL_CAPACITY + 2, 256 * 1024);
        Self {
            ring,
            encoder,
            stats,
            stop,
            packets,
            control,
            pool,
            governor: config.governor_start_bps.map(|bps| FpsGovernor::new(config.fps, bps)),
            dropper: config.governor_start_bps.map(FrameDropper::new),
            send_backlog: config.send_backlog.clone(),
            keyframe_pending: false,
            fps,
            yuv: I420Frame::new(2, 2),
            scaled: [I420Frame::new(2, 2), I420Frame::new(2, 2)],
            max_height: config.max_height,
            out: EncodedFrame::with_capacity(256 * 1024),
            start: None,
        }
    }

    fn run(mut self) -> Result<()> {
        while !self.stop.load(Ordering::Acquire) {
            self.apply_controls()?;
            let frame = match self.ring.take_timeout(Duration::from_millis(100)) {
                Take::Frame(f) => f,
                Take::Timeout => continue,
                Take::Closed => break,
            };
            let meta = *frame.meta();
            let started = Instant::now();
            if let Some(dropper) = &mut self.dropper {
                let backlog = self.send_backlog.as_ref().map_or(Duration::ZERO, SendBacklog::get);
                if let Some(skip) = dropper.decide(started, backlog, self.keyframe_pending) {
                    // Whole frames, before the encoder sees them: the
                    // stream has no hole and the references stay intact.
                    drop(frame);
                    let counter = match skip {
                        Skip::Budget => &self.stats.frames_skipped_budget,
                        Skip::Backlog => &self.stats.frames_skipped_backlog,
                    };
                    counter.fetch_add(1, Ordering::Relaxed);
                    if let Some(fps) = self.governor.as_mut().and_then(|g| g.on_skipped(started)) {
                        self.set_fps(fps)?;
                    }
                    continue;
                }
            }
            bgra_to_i420(frame.data(), meta.width, meta.height, meta.stride_bytes, &mut self.yuv)?;
            // Return the slot before the (much longer) encode.
            drop(frame);
            self.stats.frames_dropped.store(self.ring.stats().overwritten.load(Ordering::Relaxed), Ordering::Relaxed);
            let start = *self.start.get_or_insert(meta.captured_at);
            let pts = meta.captured_at.saturating_duration_since(start);
            let halvings = self.max_height.map_or(0, |max| peep_encode::scale::halvings_for(meta.height, max)) as usize;
            let source: &I420Frame = if halvings == 0 {
                &self.yuv
            } else {
                peep_encode::scale::downscale_half(&self.yuv, &mut self.scaled[0]);
                for i in 1..halvings {
                    let (a, b) = self.scaled.split_at_mut(1);
                    if i % 2 == 1 {
                        peep_encode::scale::downscale_half(&a[0], &mut b[0]);
                    } else {
                        peep_encode::scale::downscale_half(&b[0], &mut a[0]);
                    }
                }
                &self.scaled[(halvings - 1) % 2]
            };
            let name = self.encoder.name();
            let outcome = self
                .encoder
                .encode(source, pts, &mut self.out)
                .with_context(|| format!("the {name} encoder failed"))?;
            let done = Instant::now();
            self.stats.encode_time.record(done - started);
            if outcome == EncodeOutcome::Skipped {
                self.stats.frames_skipped_by_encoder.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            self.stats.capture_to_encoded.record(done.saturating_duration_since(meta.captured_at));
            if let Some(dropper) = &mut self.dropper {
                dropper.on_encoded(done, self.out.data.len());
            }
            if self.out.keyframe {
                self.keyframe_pending = false;
            }
            let keyframe = self.out.keyframe;
            if let Some(fps) = self.governor.as_mut().and_then(|g| g.on_encoded(self.out.data.len(), keyframe, done)) {
                self.set_fps(fps)?;
            }
            self.stats.frames_encoded.fetch_add(1, Ordering::Relaxed);
            self.stats.bytes.fetch_add(self.out.data.len() as u64, Ordering::Relaxed);
            if self.out.keyframe {
                self.stats.keyframes.fetch_add(1, Ordering::Relaxed);
            }
            // Hand the bytes over without copying: swap the encoder's buffer
            // with an empty pooled one.
            let mut data = self.pool.get();
            data.clear();
            std::mem::swap(&mut *data, &mut self.out.data);
            let packet = EncodedPacket {
                data,
                keyframe: self.out.keyframe,
                pts,
                captured_at: meta.captured_at,
                seq: meta.seq,
                width: self.out.width,
                height: self.out.height,
            };
            if !self.send(packet) {
                break;
            }
        }
        Ok(())
    }

    fn set_fps(&mut self, fps: f32) -> Result<()> {
        self.fps.set(fps);
        self.encoder.set_fps(fps)?;
        self.stats.fps_x10.store((fps * 10.0).round() as u64, Ordering::Relaxed);
        self.stats
            .fps_limited_by_link
            .store(self.governor.as_ref().is_some_and(FpsGovernor::limited_by_link), Ordering::Relaxed);
        Ok(())
    }

    /// Blocks until the consumer takes the packet (see PACKET_CHANNEL_CAPACITY).
    /// Returns false when the consumer is gone or the pipeline is stopping.
    fn send(&self, mut packet: EncodedPacket) -> bool {
        loop {
            match self.packets.send_timeout(packet, Duration::from_millis(100)) {
                Ok(()) => return true,
                Err(SendTimeoutError::Disconnected(_)) => return false,
                Err(SendTimeoutError::Timeout(p)) => {
                    if self.stop.load(Ordering::Acquire) {
                        return false;
                    }
                    packet = p;
                }
            }
        }
    }

    fn apply_controls(&mut self) -> Result<()> {
        loop {
            match self.control.try_recv() {
                Ok(Control::SetBitrate(bps)) => {
                    self.encoder.set_bitrate(bps)?;
                    if let Some(g) = &mut self.governor {
                        g.set_target(bps);
                    }
                    if let Some(d) = &mut self.dropper {
                        d.set_target(bps);
                    }
                }
                Ok(Control::SetFps(fps)) => match self.governor.as_mut().map(|g| g.set_max_fps(fps)) {
                    // The link limits it: the setting waits for the link.
                    Some(None) => self
                        .stats
                        .fps_limited_by_link
                        .store(self.governor.as_ref().is_some_and(FpsGovernor::limited_by_link), Ordering::Relaxed),
                    Some(Some(next)) => self.set_fps(next)?,
                    None => self.set_fps(fps)?,
                },
                Ok(Control::SetMaxHeight(max)) => self.max_height = max,
                Ok(Control::Keyframe) => {
                    self.keyframe_pending = true;
                    self.encoder.request_keyframe();
                    // An unchanged screen publishes nothing: ask for a frame.
                    self.ring.request_frame();
                }
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => return Ok(()),
            }
        }
    }
}
