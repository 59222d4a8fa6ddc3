//! The media pipeline: capture thread → frame ring → encode thread →
//! bounded channel → consumer (a file, stdout, the WebRTC fan-out).
//!
//! ```text
//!  peep-capture ──(FrameRing, 3 slots, never blocks)──▶ peep-encode ──(channel, 4)──▶ consumer
//!       ▲                                                  │   ▲       packets tagged with their codec
//!       └──────────── request_frame (keyframes) ───────────┘   └── Control (codecs, bitrate, fps, keyframe)
//! ```
//!
//! **One source, one conversion, one encode per codec.** The encode thread
//! converts each captured frame to I420 once, applies the resolution policy
//! once, and feeds the result to every active [encode chain](Control::SetCodecs)
//! in a fixed order — H.264 first, so an H.264 viewer's latency does not
//! grow when a VP9 viewer joins — sending each chain's packet as soon as it
//! is encoded. A chain is one encoder with its own output buffer, keyframe
//! state, bitrate and frame-rate governor; chains start when the consumer
//! asks for their codec ([`EncoderFactory`] makes the encoder) and stop
//! (encoder dropped) when it no longer does. The capture runs at the
//! fastest chain's frame rate; a chain whose governor wants fewer frames
//! skips frames ("decimation") instead of slowing the others. Several
//! sources are several pipelines, each with its own chains.

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
use peep_encode::content::ClassifierConfig;
use peep_encode::convert::bgra_to_i420_rows;
use peep_encode::{BufferPool, Codec, EncodeOutcome, EncodedFrame, Encoder, I420Frame, PooledBuf};
use peep_encode::{ContentClass, ContentClassifier, PaintOver};
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
    /// Which chain produced it.
    pub codec: Codec,
    /// H.264: Annex-B NAL units; VP8/VP9: one frame.
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
    /// A paint-over refinement: the previous picture again at high quality
    /// (the content settled after motion), not a new capture.
    pub refinement: bool,
}

/// Bitrate of a chain started before any bitrate was asked for its codec
/// (and without a governor start rate).
pub const DEFAULT_START_BPS: u32 = 2_000_000;

/// A set of codecs: the encode chains to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Codecs(u8);

impl Codecs {
    /// No chain runs.
    pub const NONE: Codecs = Codecs(0);

    /// Just `codec`.
    pub fn only(codec: Codec) -> Self {
        Codecs(1 << codec.index())
    }

    /// Adds `codec`.
    pub fn insert(&mut self, codec: Codec) {
        self.0 |= 1 << codec.index();
    }

    /// Whether `codec` is in the set.
    pub fn contains(self, codec: Codec) -> bool {
        self.0 & (1 << codec.index()) != 0
    }

    /// The codecs in chain order (H.264 first).
    pub fn iter(self) -> impl Iterator<Item = Codec> {
        Codec::ALL.into_iter().filter(move |c| self.contains(*c))
    }
}

impl FromIterator<Codec> for Codecs {
    fn from_iter<T: IntoIterator<Item = Codec>>(iter: T) -> Self {
        let mut set = Codecs::NONE;
        for c in iter {
            set.insert(c);
        }
        set
    }
}

/// Run-time commands to the encode thread.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Control {
    /// New target bitrate for one codec's encoder (remembered while that
    /// chain is stopped, and used when it starts).
    SetBitrate(Codec, u32),
    /// New frame rate (capture pacing and rate control), for every chain.
    SetFps(f32),
    /// Make one codec's next frame a keyframe (ignored while it is stopped:
    /// a chain starts with one).
    Keyframe(Codec),
    /// Resolution policy: halve frames until they are at most this tall
    /// (`None`: native size).
    SetMaxHeight(Option<u32>),
    /// Run exactly these encode chains: missing ones start (their encoder
    /// made by the [`EncoderFactory`], first frame a keyframe), extra ones
    /// stop (encoder dropped; the pipeline's initial encoder is kept idle
    /// for reuse instead).
    SetCodecs(Codecs),
}

/// Makes an encoder for a chain that starts: `(codec, bitrate_bps, fps)`.
pub type EncoderFactory = Box<dyn FnMut(Codec, u32, f32) -> Result<Box<dyn Encoder>> + Send>;

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
    /// The transport's send backlog per codec (indexed by [`Codec::index`]):
    /// with a governor, a frame dropper in front of each chain's encoder
    /// skips frames while its codec's backlog is long (see
    /// `peep_encode::budget`). `None`: only the encoder's own budget counts.
    pub send_backlogs: Option<[SendBacklog; 3]>,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        Self {
            fps: 30.0,
            keepalive: Duration::from_secs(1),
            governor_start_bps: None,
            max_height: None,
            start_paused: false,
            send_backlogs: None,
        }
    }
}

/// A running pipeline. Dropping it stops both threads.
#[derive(Debug)]
pub struct Pipeline {
    capture: Option<CaptureHandle>,
    encode: Option<JoinHandle<Result<()>>>,
    stop: Arc<AtomicBool>,
    /// Shared with the encode thread: no refinement frames while paused.
    paused: Arc<AtomicBool>,
    control: Sender<Control>,
    packets: Receiver<EncodedPacket>,
    /// Encoder-side counters.
    pub stats: Arc<PipelineStats>,
    /// Capture-side counters.
    pub capture_stats: Arc<CaptureStats>,
}

impl Pipeline {
    /// Starts capturing from `backend` and encoding with `encoder` (its
    /// codec's chain runs from the start; without a factory no other can).
    pub fn start(backend: Box<dyn CaptureBackend>, encoder: Box<dyn Encoder>, config: PipelineConfig) -> Result<Self> {
        Self::start_with_factory(backend, encoder, None, config)
    }

    /// As [`Pipeline::start`], with `factory` making the encoders of other
    /// codecs when [`Control::SetCodecs`] asks for them.
    pub fn start_with_factory(
        backend: Box<dyn CaptureBackend>,
        encoder: Box<dyn Encoder>,
        factory: Option<EncoderFactory>,
        config: PipelineConfig,
    ) -> Result<Self> {
        let (producer, consumer) = frame_ring();
        let capture_stats = Arc::new(CaptureStats::default());
        let capture_config =
            CaptureConfig { fps: config.fps, keepalive: config.keepalive, start_paused: config.start_paused };
        let capture = driver::spawn_capture(backend, producer, capture_config, capture_stats.clone())
            .context("starting the capture thread")?;
        let stats = Arc::new(PipelineStats::default());
        stats.fps_x10.store((config.fps * 10.0).round() as u64, Ordering::Relaxed);
        let stop = Arc::new(AtomicBool::new(false));
        let paused = Arc::new(AtomicBool::new(config.start_paused));
        let fps = capture.fps_control();
        // Policies: see PACKET_CHANNEL_CAPACITY and CONTROL_CHANNEL_CAPACITY.
        let (packet_tx, packets) = crossbeam_channel::bounded(PACKET_CHANNEL_CAPACITY);
        let (control, control_rx) = crossbeam_channel::bounded(CONTROL_CHANNEL_CAPACITY);
        let encode = {
            let (stats, stop, paused) = (stats.clone(), stop.clone(), paused.clone());
            std::thread::Builder::new()
                .name("peep-encode".into())
                .spawn(move || {
                    let mut encode = EncodeLoop::new(
                        consumer,
                        (encoder, factory),
                        (stats, stop),
                        (packet_tx, control_rx),
                        fps,
                        config,
                    );
                    encode.paused = paused;
                    encode.run()
                })
                .context("starting the encode thread")?
        };
        Ok(Self { capture: Some(capture), encode: Some(encode), stop, paused, control, packets, stats, capture_stats })
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
        self.paused.store(paused, Ordering::Release);
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

/// One encoder and everything that is its own: output buffer, keyframe
/// state, bitrate, frame rate and governor.
struct Chain {
    codec: Codec,
    encoder: Option<Box<dyn Encoder>>,
    /// The pipeline's initial encoder: kept idle when its chain stops.
    resident: bool,
    active: bool,
    out: EncodedFrame,
    governor: Option<FpsGovernor>,
    /// Leaky-bucket frame dropper (live sharing only, with the governor).
    dropper: Option<FrameDropper>,
    /// This codec's send backlog, for the dropper.
    send_backlog: Option<SendBacklog>,
    /// Last bitrate asked for this codec (for an encoder made later).
    bitrate_bps: Option<u32>,
    /// The frame rate this chain encodes at (governor or configured).
    fps: f32,
    last_pts: Option<Duration>,
    /// A keyframe is due: never decimate or drop a frame until it is out.
    keyframe_due: bool,
    /// The newest frame was decimated: encode it when this chain's interval
    /// has passed unless a newer frame comes first (the last picture of a
    /// burst of changes is never lost).
    pending: Option<FrameAt>,
}

/// Where a converted frame sits in time, for an encode chain.
#[derive(Debug, Clone, Copy)]
struct FrameAt {
    pts: Duration,
    captured_at: Instant,
    seq: u64,
    /// When the pipeline took it (the dropper's clock).
    started: Instant,
}

impl Chain {
    fn new(codec: Codec, fps: f32) -> Self {
        Self {
            codec,
            encoder: None,
            resident: false,
            active: false,
            out: EncodedFrame::with_capacity(256 * 1024),
            governor: None,
            dropper: None,
            send_backlog: None,
            bitrate_bps: None,
            fps,
            last_pts: None,
            keyframe_due: true,
            pending: None,
        }
    }

    /// Whether this chain skips the frame at `pts` to hold its rate, lower
    /// than the capture's `capture_fps` (a chain at the capture's rate never
    /// skips: the capture already holds that rate, and the times of frames a
    /// compositor delivers in bursts can lie closer together).
    fn decimates(&self, pts: Duration, capture_fps: f32) -> bool {
        match self.last_pts {
            Some(last) if !self.keyframe_due && self.fps < capture_fps * 0.99 => {
                // A quarter of an interval of slack for capture jitter.
                pts.saturating_sub(last).as_secs_f32() < 0.75 / self.fps
            }
            _ => false,
        }
    }
}

struct EncodeLoop {
    ring: RingConsumer,
    /// Indexed by [`Codec::index`]; encoded in this order (H.264 first).
    chains: [Chain; 3],
    factory: Option<EncoderFactory>,
    stats: Arc<PipelineStats>,
    stop: Arc<AtomicBool>,
    packets: Sender<EncodedPacket>,
    control: Receiver<Control>,
    pool: BufferPool,
    fps: peep_capture::driver::FpsControl,
    /// The user's frame rate (the governors' ceiling).
    max_fps: f32,
    /// Where a new chain's governor and bitrate start.
    start_bps: Option<u32>,
    yuv: I420Frame,
    /// Halved copies of `yuv` for the resolution policy.
    scaled: [I420Frame; 2],
    max_height: Option<u32>,
    start: Option<Instant>,
    /// Content class and paint-over decisions (see `peep_encode::content`).
    adapt: Adaptation,
    paused: Arc<AtomicBool>,
}

/// The encode thread's content adaptation: classifies every frame from its
/// damage, tells the encoders, and sends one refinement frame when content
/// settles after motion.
struct Adaptation {
    classifier: ContentClassifier,
    class: ContentClass,
    paint: PaintOver,
    /// Halvings of the last encoded picture (which buffer holds it), and
    /// its sequence number; `None` before the first.
    last: Option<(usize, u64)>,
}

/// How long content must stay unchanged after motion before the one
/// refinement frame (the paint-over) is sent.
pub const PAINT_OVER_SETTLE: Duration = Duration::from_millis(300);

impl Adaptation {
    fn new() -> Self {
        Self {
            classifier: ContentClassifier::new(ClassifierConfig::default()),
            class: ContentClass::default(),
            paint: PaintOver::new(PAINT_OVER_SETTLE),
            last: None,
        }
    }
}

impl EncodeLoop {
    fn new(
        ring: RingConsumer,
        (encoder, factory): (Box<dyn Encoder>, Option<EncoderFactory>),
        (stats, stop): (Arc<PipelineStats>, Arc<AtomicBool>),
        (packets, control): (Sender<EncodedPacket>, Receiver<Control>),
        fps: peep_capture::driver::FpsControl,
        config: PipelineConfig,
    ) -> Self {
        // One buffer per channel slot, one being filled, one held by the consumer.
        let pool = BufferPool::new(PACKET_CHANNEL_CAPACITY + 2, 256 * 1024);
        let mut chains = Codec::ALL.map(|c| Chain::new(c, config.fps));
        if let Some(backlogs) = &config.send_backlogs {
            for chain in &mut chains {
                chain.send_backlog = Some(backlogs[chain.codec.index()].clone());
            }
        }
        let first = &mut chains[encoder.codec().index()];
        first.encoder = Some(encoder);
        first.resident = true;
        first.active = true;
        first.governor = config.governor_start_bps.map(|bps| FpsGovernor::new(config.fps, bps));
        first.dropper = config.governor_start_bps.map(FrameDropper::new);
        stats.codec(first.codec).active.store(true, Ordering::Relaxed);
        stats.codec(first.codec).starts.fetch_add(1, Ordering::Relaxed);
        Self {
            ring,
            chains,
            factory,
            stats,
            stop,
            packets,
            control,
            pool,
            fps,
            max_fps: config.fps,
            start_bps: config.governor_start_bps,
            yuv: I420Frame::new(2, 2),
            scaled: [I420Frame::new(2, 2), I420Frame::new(2, 2)],
            max_height: config.max_height,
            start: None,
            adapt: Adaptation::new(),
            paused: Arc::default(),
        }
    }

    fn run(mut self) -> Result<()> {
        // The last wait for a frame timed out: time for `idle_step`.
        let mut idle = false;
        while !self.stop.load(Ordering::Acquire) {
            self.apply_controls()?;
            if std::mem::take(&mut idle) && !self.idle_step()? {
                break;
            }
            // Wake in time for a due refinement frame or decimated frame.
            let now = Instant::now();
            let wait = self
                .chains
                .iter()
                .filter_map(|c| self.pending_due(c))
                .chain(self.adapt.paint.deadline())
                .map(|d| d.saturating_duration_since(now))
                .fold(Duration::from_millis(100), Duration::min);
            let frame = match self.ring.take_timeout(wait) {
                Take::Frame(f) => f,
                Take::Timeout => {
                    idle = true;
                    continue;
                }
                Take::Closed => break,
            };
            let meta = *frame.meta();
            let started = Instant::now();
            // Convert only what changed since the frame `yuv` holds (the
            // ring merges the damage of frames it dropped meanwhile); the
            // converter converts everything after a size change.
            let rows = match frame.damage() {
                Some(d) if (self.yuv.width(), self.yuv.height()) == (meta.width, meta.height) => d.y..d.y + d.height,
                _ => 0..meta.height,
            };
            self.stats.rows_converted.fetch_add(u64::from(rows.end - rows.start), Ordering::Relaxed);
            self.stats.rows_taken.fetch_add(u64::from(meta.height), Ordering::Relaxed);
            bgra_to_i420_rows(frame.data(), meta.width, meta.height, meta.stride_bytes, &mut self.yuv, rows)?;
            let damaged_fraction =
                frame.damage().map(|d| (d.width as f32 * d.height as f32) / (meta.width as f32 * meta.height as f32));
            // Return the slot before the (much longer) encodes.
            drop(frame);
            self.stats.frames_dropped.store(self.ring.stats().overwritten.load(Ordering::Relaxed), Ordering::Relaxed);
            self.classify(started, meta.changed, damaged_fraction)?;
            let start = *self.start.get_or_insert(meta.captured_at);
            let pts = meta.captured_at.saturating_duration_since(start);
            let halvings = self.max_height.map_or(0, |max| peep_encode::scale::halvings_for(meta.height, max)) as usize;
            if halvings > 0 {
                peep_encode::scale::downscale_half(&self.yuv, &mut self.scaled[0]);
                for i in 1..halvings {
                    let (a, b) = self.scaled.split_at_mut(1);
                    if i % 2 == 1 {
                        peep_encode::scale::downscale_half(&a[0], &mut b[0]);
                    } else {
                        peep_encode::scale::downscale_half(&b[0], &mut a[0]);
                    }
                }
            }
            self.adapt.last = Some((halvings, meta.seq));
            let at = FrameAt { pts, captured_at: meta.captured_at, seq: meta.seq, started };
            for index in 0..self.chains.len() {
                if !self.encode_chain(index, at)? {
                    return Ok(());
                }
            }
            self.stats.encode_time.record(started.elapsed());
        }
        Ok(())
    }

    /// Encodes the converted frame `at` with chain `index` (or decimates or
    /// drops it for that chain). Returns false when the consumer is gone.
    fn encode_chain(&mut self, index: usize, at: FrameAt) -> Result<bool> {
        let FrameAt { pts, captured_at, seq, started } = at;
        let capture_rate = capture_fps(&self.chains, self.max_fps);
        let (halvings, _) = self.adapt.last.unwrap_or((0, seq));
        let source: &I420Frame = if halvings == 0 { &self.yuv } else { &self.scaled[(halvings - 1) % 2] };
        let chain = &mut self.chains[index];
        if !chain.active || chain.encoder.is_none() {
            return Ok(true);
        }
        let codec_stats = self.stats.codec(chain.codec);
        if chain.decimates(pts, capture_rate) {
            codec_stats.frames_decimated.fetch_add(1, Ordering::Relaxed);
            chain.pending = Some(at);
            return Ok(true);
        }
        chain.pending = None;
        if let Some(dropper) = &mut chain.dropper {
            let backlog = chain.send_backlog.as_ref().map_or(Duration::ZERO, SendBacklog::get);
            if let Some(skip) = dropper.decide(started, backlog, chain.keyframe_due) {
                // Whole frames, before the encoder sees them: the
                // stream has no hole and the references stay intact.
                let counter = match skip {
                    Skip::Budget => &self.stats.frames_skipped_budget,
                    Skip::Backlog => &self.stats.frames_skipped_backlog,
                };
                counter.fetch_add(1, Ordering::Relaxed);
                if let Some(fps) = chain.governor.as_mut().and_then(|g| g.on_skipped(started)) {
                    chain.fps = fps;
                    if let Some(encoder) = &mut chain.encoder {
                        encoder.set_fps(fps)?;
                    }
                    self.fps.set(capture_fps(&self.chains, self.max_fps));
                    publish_fps(&self.chains, self.max_fps, &self.stats);
                }
                return Ok(true);
            }
        }
        let encoder = chain.encoder.as_mut().expect("checked above");
        let encode_started = Instant::now();
        let outcome = match encoder.encode(source, pts, &mut chain.out) {
            Ok(outcome) => outcome,
            Err(e) if !chain.resident => {
                // A second codec failing must not end the share for
                // everyone: stop that chain and say why.
                tracing::warn!("the {} encoder failed and stops: {e}", chain.codec);
                stop_chain(chain, &self.stats);
                return Ok(true);
            }
            Err(e) => return Err(e).with_context(|| format!("the {} encoder failed", encoder.name())),
        };
        let done = Instant::now();
        codec_stats.encode_time.record(done - encode_started);
        if outcome == EncodeOutcome::Skipped {
            self.stats.frames_skipped_by_encoder.fetch_add(1, Ordering::Relaxed);
            return Ok(true);
        }
        chain.last_pts = Some(pts);
        let len = chain.out.data.len();
        let keyframe = chain.out.keyframe;
        if let Some(dropper) = &mut chain.dropper {
            dropper.on_encoded(done, len);
        }
        if let Some(fps) = chain.governor.as_mut().and_then(|g| g.on_encoded(len, keyframe, done)) {
            chain.fps = fps;
            encoder.set_fps(fps)?;
            self.fps.set(capture_fps(&self.chains, self.max_fps));
            publish_fps(&self.chains, self.max_fps, &self.stats);
        }
        let chain = &mut self.chains[index];
        self.stats.capture_to_encoded.record(done.saturating_duration_since(captured_at));
        let (all, this) = (&*self.stats, self.stats.codec(chain.codec));
        all.frames_encoded.fetch_add(1, Ordering::Relaxed);
        all.bytes.fetch_add(len as u64, Ordering::Relaxed);
        all.keyframes.fetch_add(u64::from(chain.out.keyframe), Ordering::Relaxed);
        this.frames_encoded.fetch_add(1, Ordering::Relaxed);
        let gain = chain.encoder.as_ref().map_or(1.0, |e| e.rate_gain());
        this.rate_gain_x100.store((gain * 100.0).round() as u64, Ordering::Relaxed);
        this.bytes.fetch_add(len as u64, Ordering::Relaxed);
        this.keyframes.fetch_add(u64::from(chain.out.keyframe), Ordering::Relaxed);
        if chain.out.keyframe {
            chain.keyframe_due = false;
        }
        // Hand the bytes over without copying: swap the encoder's buffer
        // with an empty pooled one.
        let mut data = self.pool.get();
        data.clear();
        std::mem::swap(&mut *data, &mut chain.out.data);
        let packet = EncodedPacket {
            codec: chain.codec,
            data,
            keyframe: chain.out.keyframe,
            pts,
            captured_at,
            seq,
            width: chain.out.width,
            height: chain.out.height,
            refinement: false,
        };
        Ok(self.send(packet))
    }

    /// Encodes, in the chains that decimated it, the newest frame once
    /// their interval has passed (no newer frame came). Returns false when
    /// the consumer is gone.
    fn encode_pending(&mut self, now: Instant) -> Result<bool> {
        for index in 0..self.chains.len() {
            let chain = &self.chains[index];
            let Some(at) = chain.pending else { continue };
            if self.pending_due(chain).is_some_and(|due| now >= due) {
                let pts = self.start.map_or(at.pts, |start| now.saturating_duration_since(start).max(at.pts));
                if !self.encode_chain(index, FrameAt { pts, started: now, ..at })? {
                    return Ok(false);
                }
            }
        }
        Ok(true)
    }

    /// When a chain's decimated frame is due (its interval after its last
    /// encoded frame).
    /// None while paused or for a stopped chain (the loop's wait must not
    /// shrink to nothing for a frame that will not be encoded).
    fn pending_due(&self, chain: &Chain) -> Option<Instant> {
        if !chain.active || self.paused.load(Ordering::Acquire) {
            return None;
        }
        let (start, last) = (self.start?, chain.last_pts?);
        chain.pending?;
        Some(start + last + Duration::from_secs_f32(0.75 / chain.fps.max(0.1)))
    }

    /// Feeds a frame to the content classifier and paint-over, and tells
    /// the encoders when the class changes.
    fn classify(&mut self, now: Instant, changed: bool, damaged_fraction: Option<f32>) -> Result<()> {
        let class = self.adapt.classifier.observe(now, changed, damaged_fraction);
        if changed {
            let large = damaged_fraction.is_some_and(|f| f >= ClassifierConfig::default().large_fraction);
            self.adapt.paint.changed(now, large || class == ContentClass::Motion);
        }
        self.set_class(class)
    }

    fn set_class(&mut self, class: ContentClass) -> Result<()> {
        if class != self.adapt.class {
            tracing::debug!(from = ?self.adapt.class, to = ?class, "content class");
            self.adapt.class = class;
            for chain in self.chains.iter_mut().filter(|c| c.active) {
                if let Some(encoder) = &mut chain.encoder {
                    encoder.set_content(class)?;
                }
            }
        }
        Ok(())
    }

    /// No new frame: re-evaluate the content class, and send the one
    /// refinement frame per running chain when the content has settled
    /// after motion (not while paused). Returns false when the consumer is
    /// gone.
    fn idle_step(&mut self) -> Result<bool> {
        let now = Instant::now();
        let class = self.adapt.classifier.tick(now);
        self.set_class(class)?;
        if !self.paused.load(Ordering::Acquire) && !self.encode_pending(now)? {
            return Ok(false);
        }
        if self.paused.load(Ordering::Acquire) || !self.adapt.paint.due(now) {
            return Ok(true);
        }
        let (Some((halvings, seq)), Some(start)) = (self.adapt.last, self.start) else { return Ok(true) };
        let pts = now.saturating_duration_since(start);
        for index in 0..self.chains.len() {
            let chain = &mut self.chains[index];
            let Some(encoder) = chain.encoder.as_mut().filter(|_| chain.active) else { continue };
            let source = if halvings == 0 { &self.yuv } else { &self.scaled[(halvings - 1) % 2] };
            if encoder.refine(source, pts, &mut chain.out)? == EncodeOutcome::Skipped {
                continue;
            }
            let len = chain.out.data.len() as u64;
            self.stats.refinements.fetch_add(1, Ordering::Relaxed);
            self.stats.frames_encoded.fetch_add(1, Ordering::Relaxed);
            self.stats.bytes.fetch_add(len, Ordering::Relaxed);
            let this = self.stats.codec(chain.codec);
            this.frames_encoded.fetch_add(1, Ordering::Relaxed);
            this.bytes.fetch_add(len, Ordering::Relaxed);
            let mut data = self.pool.get();
            data.clear();
            std::mem::swap(&mut *data, &mut chain.out.data);
            let packet = EncodedPacket {
                codec: chain.codec,
                data,
                keyframe: chain.out.keyframe,
                pts,
                captured_at: now,
                seq,
                width: chain.out.width,
                height: chain.out.height,
                refinement: true,
            };
            if !self.send(packet) {
                return Ok(false);
            }
        }
        Ok(true)
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
                Ok(Control::SetBitrate(codec, bps)) => {
                    let chain = &mut self.chains[codec.index()];
                    chain.bitrate_bps = Some(bps);
                    if let Some(encoder) = &mut chain.encoder {
                        encoder.set_bitrate(bps)?;
                    }
                    if let Some(g) = &mut chain.governor {
                        g.set_target(bps);
                    }
                    if let Some(d) = &mut chain.dropper {
                        d.set_target(bps);
                    }
                }
                Ok(Control::SetFps(fps)) => {
                    self.max_fps = fps;
                    for chain in &mut self.chains {
                        // A raised setting applies at once unless the link
                        // limits it (then the setting waits for the link,
                        // and the stats say so).
                        let next = match chain.governor.as_mut().map(|g| g.set_max_fps(fps)) {
                            Some(None) => continue,
                            Some(Some(next)) => next,
                            None => fps,
                        };
                        chain.fps = next;
                        if let Some(encoder) = &mut chain.encoder {
                            encoder.set_fps(next)?;
                        }
                    }
                    self.fps.set(capture_fps(&self.chains, self.max_fps));
                    publish_fps(&self.chains, self.max_fps, &self.stats);
                }
                Ok(Control::SetMaxHeight(max)) => self.max_height = max,
                Ok(Control::Keyframe(codec)) => {
                    let chain = &mut self.chains[codec.index()];
                    if let Some(encoder) = chain.encoder.as_mut().filter(|_| chain.active) {
                        encoder.request_keyframe();
                        chain.keyframe_due = true;
                        // An unchanged screen publishes nothing: ask for a frame.
                        self.ring.request_frame();
                    }
                }
                Ok(Control::SetCodecs(wanted)) => self.set_codecs(wanted),
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => return Ok(()),
            }
        }
    }

    /// Starts and stops chains to match `wanted`.
    fn set_codecs(&mut self, wanted: Codecs) {
        for index in 0..self.chains.len() {
            let chain = &mut self.chains[index];
            let codec = chain.codec;
            if chain.active && !wanted.contains(codec) {
                stop_chain(chain, &self.stats);
            } else if !chain.active && wanted.contains(codec) {
                let bps = chain.bitrate_bps.or(self.start_bps).unwrap_or(DEFAULT_START_BPS);
                let fps = capture_fps(&self.chains, self.max_fps);
                let chain = &mut self.chains[index];
                if chain.encoder.is_none() {
                    let made = match &mut self.factory {
                        Some(make) => make(codec, bps, fps),
                        None => Err(anyhow::anyhow!("this pipeline has no encoder factory")),
                    };
                    match made {
                        Ok(encoder) => chain.encoder = Some(encoder),
                        Err(e) => {
                            tracing::warn!("cannot start a {codec} encoder: {e:#}");
                            continue;
                        }
                    }
                } else if let Some(encoder) = &mut chain.encoder {
                    // The idle initial encoder resumes: a fresh start for its viewers.
                    encoder.request_keyframe();
                    let _ = encoder.set_bitrate(bps);
                    let _ = encoder.set_fps(fps);
                }
                chain.active = true;
                chain.fps = fps;
                chain.keyframe_due = true;
                chain.last_pts = None;
                chain.governor = self.start_bps.map(|_| FpsGovernor::new(self.max_fps, bps));
                chain.dropper = self.start_bps.map(|_| FrameDropper::new(bps));
                self.stats.codec(codec).active.store(true, Ordering::Relaxed);
                self.stats.codec(codec).starts.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(%codec, bps, fps, "encode chain started");
                self.ring.request_frame();
            }
        }
        self.fps.set(capture_fps(&self.chains, self.max_fps));
    }
}

/// Stops a chain: its encoder is dropped unless it is the resident one.
fn stop_chain(chain: &mut Chain, stats: &PipelineStats) {
    chain.active = false;
    chain.pending = None;
    if !chain.resident {
        chain.encoder = None;
    }
    stats.codec(chain.codec).active.store(false, Ordering::Relaxed);
    stats.codec(chain.codec).stops.fetch_add(1, Ordering::Relaxed);
    tracing::debug!(codec = %chain.codec, "encode chain stopped");
}

/// Publishes the frame rate in force (the capture's) and whether the link,
/// not the user's setting, limits it (any running chain's governor says so).
fn publish_fps(chains: &[Chain], max_fps: f32, stats: &PipelineStats) {
    stats.fps_x10.store((capture_fps(chains, max_fps) * 10.0).round() as u64, Ordering::Relaxed);
    let limited =
        chains.iter().filter(|c| c.active).any(|c| c.governor.as_ref().is_some_and(FpsGovernor::limited_by_link));
    stats.fps_limited_by_link.store(limited, Ordering::Relaxed);
}

/// The capture rate: the fastest active chain's (the configured rate when none runs).
fn capture_fps(chains: &[Chain], max_fps: f32) -> f32 {
    chains.iter().filter(|c| c.active).map(|c| c.fps).reduce(f32::max).unwrap_or(max_fps)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_chain_at_the_capture_rate_never_decimates() {
        let mut chain = Chain::new(Codec::H264, 30.0);
        chain.keyframe_due = false;
        chain.last_pts = Some(ms(1000));
        // A compositor delivered two buffers 3 ms apart: both are encoded.
        assert!(!chain.decimates(ms(1003), 30.0));
    }

    #[test]
    fn a_slower_chain_decimates_frames_closer_than_its_interval() {
        let mut chain = Chain::new(Codec::Vp9, 15.0);
        chain.last_pts = Some(ms(1000));
        assert!(!chain.decimates(ms(1010), 30.0), "never before its keyframe is out");
        chain.keyframe_due = false;
        assert!(chain.decimates(ms(1033), 30.0));
        assert!(!chain.decimates(ms(1050), 30.0), "0.75 of its 67 ms interval has passed");
    }
}
