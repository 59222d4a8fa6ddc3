//! The platform-independent half of the VideoToolbox encoder, compiled and
//! tested on every OS; `crate::videotoolbox` (macOS only) is the thin FFI
//! driver behind [`SessionFactory`] / [`CompressionSession`].
//!
//! # The asynchronous hand-off
//!
//! A `VTCompressionSession` encodes asynchronously: `EncodeFrame` returns at
//! once and the compressed frame arrives later in an output callback on a
//! VideoToolbox thread. [`Encoder::encode`] is synchronous (frame in, access
//! unit out), so [`AsyncEncoder`] bridges the two like this:
//!
//! 1. `encode` tags the frame with a fresh token (`sourceFrameRefcon`),
//!    submits it, and then **waits for that token's output** on a bounded
//!    channel ([`Handoff::wait_for`], with [`VideoToolboxConfig::output_timeout`]).
//! 2. The callback converts AVCC to Annex-B (SPS/PPS before every IDR) into a
//!    buffer from a [`BufferPool`] and sends it with the token
//!    ([`OutputSender`]).
//! 3. `encode` swaps that buffer into the caller's [`EncodedFrame`] (no
//!    copy; the caller's old buffer goes back to the pool).
//!
//! With real-time mode, no frame reordering and `MaxFrameDelayCount = 0`,
//! VideoToolbox emits frame N before it needs frame N+1, so frame N comes
//! back from the `encode` call that submitted it, after the encoder's own
//! processing time and nothing more. The alternative — returning from
//! `encode` at once and handing out frame N's output during the call for
//! frame N+1 — would add a whole frame interval (33 ms at 30 fps; far more
//! on a static screen, where the next frame may be a second away) to every
//! frame's latency. The price of waiting is that the encode thread blocks for
//! the hardware's encode time, which it would spend idle anyway.
//!
//! If an output does not arrive in time, `encode` reports the frame as
//! skipped and forces the next frame to be an IDR: the late output is then
//! discarded when it turns up (it is older than the token being waited for),
//! and without it decoders need a fresh reference. A frame the encoder drops
//! is reported as skipped; a failed frame is an error.
//!
//! # Input pixel buffers
//!
//! Frames go into pixel buffers from the session's own pool (no per-frame
//! allocation), written by [`Nv12Writer`]: BGRA is converted into the
//! buffer's NV12 planes with the same SIMD kernels (BT.709, limited range)
//! as [`crate::convert`], whatever the buffer's strides, and an [`I420Frame`] (what the [`Encoder`]
//! trait passes) is copied with its chroma interleaved.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError};
use yuvutils_rs::YuvError;

use crate::avcc::{self, AvccError, ParameterSets};
use crate::convert::I420Frame;
use crate::encoder::{EncodeOutcome, EncodedFrame, Encoder};
use crate::error::{EncodeError, Result};
use crate::openh264::{OpenH264Config, OpenH264Encoder, check_bitrate, check_fps};
use crate::pool::{BufferPool, PooledBuf};

/// Frames between forced periodic IDRs when [`VideoToolboxConfig::keyframe_interval`]
/// is 0 (VideoToolbox has no "never"; WebRTC's VideoToolbox encoder uses
/// these same two limits). Viewers ask for keyframes when they need them.
pub const DEFAULT_MAX_KEYFRAME_INTERVAL_FRAMES: u32 = 7200;
/// Seconds between forced periodic IDRs when the interval is 0.
pub const DEFAULT_MAX_KEYFRAME_INTERVAL_SECONDS: f64 = 240.0;
/// Deliveries the hand-off channel holds; see [`Handoff`] for the policy.
pub const OUTPUT_CHANNEL_CAPACITY: usize = 4;

/// H.264 profiles Chromium receives (its list has no High profile).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum H264Profile {
    /// Constrained baseline (profile-level-id `42e0xx`), CAVLC: what every
    /// WebRTC endpoint decodes. The default.
    ConstrainedBaseline,
    /// Main (`4d00xx`), CABAC: about 10 % fewer bits for the same quality.
    Main,
}

/// Settings for the VideoToolbox encoder.
///
/// Deliberately absent: the low-latency rate-control mode
/// (`EnableLowLatencyRateControl`), which forces High profile — not in
/// Chromium's receive list — and `ReferenceBufferCount`, which made Apple
/// Silicon emit only keyframes in another project.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VideoToolboxConfig {
    /// Average target bitrate in bits per second; peaks are capped at 1.5×
    /// over any second ([`data_rate_limit`]). Change it with
    /// [`Encoder::set_bitrate`] without restarting the session.
    pub bitrate_bps: u32,
    /// Expected frame rate (`ExpectedFrameRate`); change it with
    /// [`Encoder::set_fps`].
    pub fps: f32,
    /// Frames between periodic IDRs; 0 means only the first frame and
    /// [`Encoder::request_keyframe`] (in practice: at most every
    /// [`DEFAULT_MAX_KEYFRAME_INTERVAL_FRAMES`] frames or
    /// [`DEFAULT_MAX_KEYFRAME_INTERVAL_SECONDS`]).
    pub keyframe_interval: u32,
    /// Profile.
    pub profile: H264Profile,
    /// Refuse VideoToolbox's software encoder: without a hardware encoder,
    /// [`open_h264_encoder`] falls back to OpenH264 instead.
    pub require_hardware: bool,
    /// How long `encode` waits for a frame's output before reporting it
    /// skipped (and forcing the next frame to be an IDR).
    pub output_timeout: Duration,
}

impl Default for VideoToolboxConfig {
    fn default() -> Self {
        Self {
            bitrate_bps: 2_500_000,
            fps: 30.0,
            keyframe_interval: 0,
            profile: H264Profile::ConstrainedBaseline,
            require_hardware: true,
            output_timeout: Duration::from_secs(1),
        }
    }
}

impl VideoToolboxConfig {
    /// Checks the bitrate, frame rate and timeout.
    ///
    /// # Errors
    /// [`EncodeError::InvalidBitrate`], [`EncodeError::InvalidFrameRate`].
    pub fn validate(&self) -> Result<()> {
        check_bitrate(self.bitrate_bps)?;
        check_fps(self.fps)
    }

    /// The OpenH264 settings used when falling back: same bitrate, frame
    /// rate and keyframe interval, OpenH264's measured defaults otherwise.
    pub fn openh264(&self) -> OpenH264Config {
        OpenH264Config {
            bitrate_bps: self.bitrate_bps,
            fps: self.fps,
            keyframe_interval: self.keyframe_interval,
            // A live share: fill the link the estimator measured.
            adjust_rate: true,
            ..OpenH264Config::default()
        }
    }

    /// `MaxKeyFrameInterval` in frames.
    pub fn max_keyframe_interval_frames(&self) -> u32 {
        if self.keyframe_interval == 0 { DEFAULT_MAX_KEYFRAME_INTERVAL_FRAMES } else { self.keyframe_interval }
    }
}

/// `DataRateLimits` for an average bitrate: at most 1.5× the average in any
/// one-second window, as (bytes, seconds). Keeps keyframes and bursts of
/// change from flooding a link that congestion control sized for the
/// average.
pub fn data_rate_limit(bitrate_bps: u32) -> (i64, f64) {
    (i64::from(bitrate_bps) * 3 / 16, 1.0)
}

/// `n` rounded up to an even number (H.264 4:2:0 codes whole chroma samples).
const fn even(n: u32) -> u32 {
    n.saturating_add(1) & !1
}

/// A frame to be written into an encoder input buffer.
#[derive(Debug, Clone, Copy)]
pub enum FrameSource<'a> {
    /// Already converted planes (what the [`Encoder`] trait passes).
    I420(&'a I420Frame),
    /// A captured BGRA/BGRx frame, converted straight into the buffer.
    Bgra {
        /// At least `stride_bytes * height` bytes.
        data: &'a [u8],
        /// Width in pixels.
        width: u32,
        /// Height in pixels.
        height: u32,
        /// Bytes from one row to the next (≥ `width * 4`).
        stride_bytes: usize,
    },
}

impl FrameSource<'_> {
    /// Visible size in pixels.
    pub fn size(&self) -> (u32, u32) {
        match *self {
            FrameSource::I420(f) => (f.width(), f.height()),
            FrameSource::Bgra { width, height, .. } => (width, height),
        }
    }

    /// Size rounded up to even numbers: the size of the encoder's buffers.
    pub fn coded_size(&self) -> (u32, u32) {
        let (w, h) = self.size();
        (even(w), even(h))
    }
}

/// The two planes of a locked NV12 (`420v`) pixel buffer, `width`x`height`
/// being its (even) size. Strides may exceed the width.
#[derive(Debug)]
pub struct Nv12Planes<'a> {
    /// Luma plane, at least `y_stride * (height - 1) + width` bytes.
    pub y: &'a mut [u8],
    /// Bytes per luma row.
    pub y_stride: usize,
    /// Interleaved Cb/Cr plane, `height / 2` rows.
    pub uv: &'a mut [u8],
    /// Bytes per chroma row.
    pub uv_stride: usize,
    /// Width in pixels (even).
    pub width: u32,
    /// Height in pixels (even).
    pub height: u32,
}

/// A destination buffer of the wrong size or with planes too small for its
/// strides (yuvutils' size-detail type is private, so no numbers).
fn bad_buffer() -> EncodeError {
    EncodeError::Convert(YuvError::ImageDimensionsNotMatch)
}

/// Bytes a plane of `rows` rows of `row_bytes` at `stride` needs.
fn plane_bytes(rows: usize, stride: usize, row_bytes: usize) -> usize {
    if rows == 0 { 0 } else { (rows - 1).saturating_mul(stride).saturating_add(row_bytes) }
}

/// Writes frames into the NV12 planes of encoder input buffers, whatever
/// their strides.
#[derive(Debug, Default)]
pub struct Nv12Writer {}

impl Nv12Writer {
    /// Writes `src` into `dst`, whose size must be `src`'s coded size.
    ///
    /// - I420 (what the [`Encoder`] trait passes) is copied with Cb/Cr
    ///   interleaved.
    /// - BGRA is converted straight into the buffer by Peep's kernels
    ///   (exactly [`crate::convert::bgra_to_nv12`]'s output and edge
    ///   padding), whatever the buffer's strides.
    ///
    /// For odd sizes the last column / row is repeated into the padding, as
    /// [`I420Frame`] does.
    ///
    /// # Errors
    /// Empty or inconsistent input (as [`crate::convert::bgra_to_nv12`]), a
    /// buffer of another size, or planes too small for their strides — never
    /// a panic, whatever the OS handed out.
    pub fn write(&mut self, src: FrameSource<'_>, dst: Nv12Planes<'_>) -> Result<()> {
        let (width, height) = src.size();
        if width == 0 || height == 0 {
            return Err(EncodeError::EmptyFrame { width, height });
        }
        let (cw, ch) = src.coded_size();
        let (cw, ch) = (cw as usize, ch as usize);
        if (dst.width, dst.height) != src.coded_size()
            || dst.y_stride < cw
            || dst.uv_stride < cw
            || dst.y.len() < plane_bytes(ch, dst.y_stride, cw)
            || dst.uv.len() < plane_bytes(ch / 2, dst.uv_stride, cw)
        {
            return Err(bad_buffer());
        }
        match src {
            FrameSource::I420(frame) => {
                copy_i420(frame, dst);
                Ok(())
            }
            FrameSource::Bgra { data, width, height, stride_bytes } => crate::convert::bgra_into_nv12_planes(
                data,
                (width, height, stride_bytes),
                (dst.y, dst.y_stride),
                (dst.uv, dst.uv_stride),
            ),
        }
    }
}

/// Copies an I420 frame's coded area into checked NV12 planes.
fn copy_i420(frame: &I420Frame, dst: Nv12Planes<'_>) {
    let (cw, ch) = (frame.coded_width() as usize, frame.coded_height() as usize);
    let (chroma_w, chroma_h) = (frame.chroma_width() as usize, frame.chroma_height() as usize);
    for row in 0..ch {
        let line = &frame.y()[row * frame.y_stride()..][..cw];
        dst.y[row * dst.y_stride..][..cw].copy_from_slice(line);
    }
    for row in 0..chroma_h {
        let u = &frame.u()[row * frame.uv_stride()..][..chroma_w];
        let v = &frame.v()[row * frame.uv_stride()..][..chroma_w];
        let out = &mut dst.uv[row * dst.uv_stride..][..2 * chroma_w];
        for (pair, (&cb, &cr)) in out.chunks_exact_mut(2).zip(u.iter().zip(v)) {
            pair[0] = cb;
            pair[1] = cr;
        }
    }
}

/// One output of the platform encoder, tagged with the token of the frame
/// it belongs to.
#[derive(Debug)]
pub enum Delivery {
    /// An Annex-B access unit.
    Encoded {
        /// Token passed with the frame.
        token: u64,
        /// It holds an IDR slice (with SPS/PPS in front).
        keyframe: bool,
        /// The access unit, in a buffer from the hand-off's pool.
        data: PooledBuf,
    },
    /// The encoder dropped the frame (`kVTEncodeInfo_FrameDropped`).
    Dropped {
        /// Token passed with the frame.
        token: u64,
    },
    /// The encoder failed the frame with this status.
    Failed {
        /// Token passed with the frame.
        token: u64,
        /// The native status (`OSStatus`).
        status: i32,
    },
    /// The encoder's output could not be converted.
    Malformed {
        /// Token passed with the frame.
        token: u64,
        /// What was wrong.
        error: AvccError,
    },
}

impl Delivery {
    /// The token of the frame this belongs to.
    pub fn token(&self) -> u64 {
        match *self {
            Delivery::Encoded { token, .. }
            | Delivery::Dropped { token }
            | Delivery::Failed { token, .. }
            | Delivery::Malformed { token, .. } => token,
        }
    }
}

/// The encoder-callback end of a [`Handoff`]: cheap to clone, `Send + Sync`.
#[derive(Debug, Clone)]
pub struct OutputSender {
    tx: Sender<Delivery>,
    pool: BufferPool,
    lost: Arc<AtomicU64>,
}

impl OutputSender {
    /// Sends a delivery without ever blocking the encoder's thread. If the
    /// channel is full (only possible after `encode` gave up waiting on
    /// several frames), the delivery is dropped and counted.
    pub fn deliver(&self, delivery: Delivery) {
        match self.tx.try_send(delivery) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                self.lost.fetch_add(1, Ordering::Relaxed);
            }
            // The encoder is gone: nobody wants the frame.
            Err(TrySendError::Disconnected(_)) => {}
        }
    }

    /// Converts an AVCC access unit to Annex-B (SPS/PPS from `params` before
    /// an IDR) into a pooled buffer and delivers it, or delivers
    /// [`Delivery::Malformed`].
    pub fn deliver_avcc(&self, token: u64, avcc: &[u8], length_size: usize, params: &ParameterSets) {
        let mut data = self.pool.get();
        match avcc::avcc_to_annexb(avcc, length_size, params, &mut data) {
            Ok(au) => self.deliver(Delivery::Encoded { token, keyframe: au.keyframe, data }),
            Err(error) => self.deliver(Delivery::Malformed { token, error }),
        }
    }
}

/// What [`Handoff::wait_for`] got.
#[derive(Debug)]
pub enum Waited {
    /// The delivery for the token waited for.
    Delivered(Delivery),
    /// Nothing for it within the timeout.
    TimedOut,
}

/// Carries encoder outputs from the callback thread to the `encode` caller.
///
/// Channel: bounded to [`OUTPUT_CHANNEL_CAPACITY`]; the callback never
/// blocks, and when full the newest delivery is dropped and counted
/// ([`Handoff::lost`]). Normally at most one delivery is in flight, since
/// `encode` waits for each frame before submitting the next.
#[derive(Debug)]
pub struct Handoff {
    tx: Sender<Delivery>,
    rx: Receiver<Delivery>,
    pool: BufferPool,
    lost: Arc<AtomicU64>,
    stale: u64,
}

impl Handoff {
    /// A hand-off whose output buffers come from a pool of `buffers` buffers
    /// of `capacity_bytes` each (a 1080p IDR is 100–400 KB).
    pub fn new(buffers: usize, capacity_bytes: usize) -> Self {
        let (tx, rx) = crossbeam_channel::bounded(OUTPUT_CHANNEL_CAPACITY);
        Self { tx, rx, pool: BufferPool::new(buffers, capacity_bytes), lost: Arc::default(), stale: 0 }
    }

    /// The end to hand to the encoder's output callback.
    pub fn sender(&self) -> OutputSender {
        OutputSender { tx: self.tx.clone(), pool: self.pool.clone(), lost: self.lost.clone() }
    }

    /// Waits up to `timeout` for the delivery of `token`. Deliveries of
    /// earlier tokens (frames whose wait timed out) are discarded on the way.
    pub fn wait_for(&mut self, token: u64, timeout: Duration) -> Waited {
        let deadline = Instant::now() + timeout;
        loop {
            match self.rx.recv_deadline(deadline) {
                Ok(delivery) if delivery.token() == token => return Waited::Delivered(delivery),
                Ok(delivery) => {
                    // Stale (or, impossibly, from a future token): its buffer
                    // goes back to the pool.
                    tracing::trace!(token = delivery.token(), waiting_for = token, "discarding a late encoder output");
                    self.stale += 1;
                }
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => return Waited::TimedOut,
            }
        }
    }

    /// Late outputs discarded so far.
    pub fn stale(&self) -> u64 {
        self.stale
    }

    /// Deliveries dropped because the channel was full.
    pub fn lost(&self) -> u64 {
        self.lost.load(Ordering::Relaxed)
    }

    /// Times the output buffer pool was empty and a buffer was allocated.
    pub fn buffer_misses(&self) -> u64 {
        self.pool.misses()
    }
}

/// A live platform compression session of one size.
pub trait CompressionSession: Send {
    /// Writes `source` into an input buffer from the session's pool and
    /// submits it tagged with `token`; the output arrives through the
    /// [`OutputSender`] the session was created with.
    ///
    /// # Errors
    /// Failing platform calls or unusable input.
    fn submit(&mut self, source: FrameSource<'_>, pts: Duration, token: u64, force_keyframe: bool) -> Result<()>;

    /// Changes the average bitrate of the running session.
    ///
    /// # Errors
    /// Failing platform calls.
    fn set_bitrate(&mut self, bitrate_bps: u32) -> Result<()>;

    /// Changes the expected frame rate of the running session.
    ///
    /// # Errors
    /// Failing platform calls.
    fn set_fps(&mut self, fps: f32) -> Result<()>;
}

/// Creates [`CompressionSession`]s (VideoToolbox on macOS, fakes in tests).
pub trait SessionFactory: Send {
    /// The session type.
    type Session: CompressionSession;

    /// Checks once, at construction, that sessions can be created with
    /// `config` (for example that a hardware encoder exists).
    ///
    /// # Errors
    /// Why not.
    fn probe(&mut self, config: &VideoToolboxConfig) -> Result<()>;

    /// A session for `coded_width`x`coded_height` frames (even sizes).
    ///
    /// # Errors
    /// Failing platform calls.
    fn create(
        &mut self,
        coded_width: u32,
        coded_height: u32,
        config: &VideoToolboxConfig,
        outputs: OutputSender,
    ) -> Result<Self::Session>;

    /// Name for logs and [`Encoder::name`].
    fn name(&self) -> &'static str;
}

/// Counters of an [`AsyncEncoder`]. Exact, so tests may assert them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AsyncStats {
    /// Sessions created (first frame, size changes, recovery).
    pub sessions_created: u64,
    /// Frames submitted.
    pub submitted: u64,
    /// Frames that came back encoded.
    pub encoded: u64,
    /// Of those, IDR frames.
    pub keyframes: u64,
    /// Frames the encoder dropped.
    pub dropped_by_encoder: u64,
    /// Frames whose output did not arrive within the timeout.
    pub timeouts: u64,
    /// Late outputs discarded.
    pub stale_discarded: u64,
    /// Outputs lost to a full hand-off channel.
    pub lost: u64,
    /// Output buffers allocated because the pool was empty.
    pub output_buffer_misses: u64,
}

/// An [`Encoder`] over an asynchronous platform session: see the
/// [module docs](self) for how outputs are handed back.
///
/// - The session is created at the first frame and again when the coded
///   size changes; bitrate, frame rate and keyframe requests go to the live
///   session.
/// - A failing submit drops the session (VideoToolbox invalidates sessions,
///   e.g. across system sleep) and retries the frame once on a new one.
pub struct AsyncEncoder<F: SessionFactory> {
    factory: F,
    config: VideoToolboxConfig,
    session: Option<(F::Session, (u32, u32))>,
    handoff: Handoff,
    next_token: u64,
    keyframe_requested: bool,
    stats: AsyncStats,
}

impl<F: SessionFactory> std::fmt::Debug for AsyncEncoder<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncEncoder")
            .field("name", &self.factory.name())
            .field("config", &self.config)
            .field("coded_size", &self.session.as_ref().map(|(_, size)| *size))
            .field("keyframe_requested", &self.keyframe_requested)
            .field("stats", &self.stats())
            .finish()
    }
}

impl<F: SessionFactory> AsyncEncoder<F> {
    /// Checks `config` and probes the factory; sessions are created at the
    /// first frame, when the size is known.
    ///
    /// # Errors
    /// Invalid settings, or the probe's error (e.g. no hardware encoder).
    pub fn new(mut factory: F, config: VideoToolboxConfig) -> Result<Self> {
        config.validate()?;
        factory.probe(&config)?;
        Ok(Self {
            factory,
            config,
            session: None,
            // Two in the channel, one being filled, one held by the caller
            // (swapped into its EncodedFrame), one spare.
            handoff: Handoff::new(5, 256 * 1024),
            next_token: 0,
            keyframe_requested: false,
            stats: AsyncStats::default(),
        })
    }

    /// The settings in force (with run-time bitrate and frame-rate changes).
    pub fn config(&self) -> &VideoToolboxConfig {
        &self.config
    }

    /// Counters.
    pub fn stats(&self) -> AsyncStats {
        AsyncStats {
            stale_discarded: self.handoff.stale(),
            lost: self.handoff.lost(),
            output_buffer_misses: self.handoff.buffer_misses(),
            ..self.stats
        }
    }

    fn ensure_session(&mut self, coded: (u32, u32)) -> Result<()> {
        if matches!(&self.session, Some((_, size)) if *size == coded) {
            return Ok(());
        }
        // The old session finishes and ends before the new one starts.
        self.session = None;
        let session = self.factory.create(coded.0, coded.1, &self.config, self.handoff.sender())?;
        tracing::debug!(
            width = coded.0,
            height = coded.1,
            encoder = self.factory.name(),
            "compression session started"
        );
        self.stats.sessions_created += 1;
        self.session = Some((session, coded));
        Ok(())
    }

    /// Encodes `source` (I420 or BGRA) like [`Encoder::encode`]. Use the
    /// BGRA form to skip the I420 step: the frame is converted straight into
    /// the encoder's NV12 input buffer.
    ///
    /// # Errors
    /// As [`Encoder::encode`].
    pub fn encode_source(
        &mut self,
        source: FrameSource<'_>,
        pts: Duration,
        out: &mut EncodedFrame,
    ) -> Result<EncodeOutcome> {
        let (width, height) = source.size();
        if width == 0 || height == 0 {
            return Err(EncodeError::EmptyFrame { width, height });
        }
        let coded = source.coded_size();
        let token = self.next_token;
        self.next_token += 1;
        let mut attempt = 0;
        loop {
            self.ensure_session(coded)?;
            let (session, _) = self.session.as_mut().expect("ensure_session created it");
            match session.submit(source, pts, token, self.keyframe_requested) {
                Ok(()) => break,
                Err(e) if attempt == 0 => {
                    tracing::warn!(error = %e, encoder = self.factory.name(), "submitting a frame failed; restarting the session");
                    self.session = None;
                    attempt += 1;
                }
                Err(e) => {
                    self.session = None;
                    return Err(e);
                }
            }
        }
        self.stats.submitted += 1;
        out.data.clear();
        out.keyframe = false;
        out.pts = pts;
        (out.width, out.height) = coded;
        match self.handoff.wait_for(token, self.config.output_timeout) {
            Waited::Delivered(Delivery::Encoded { keyframe, mut data, .. }) => {
                // No copy: the caller's old buffer goes back to the pool instead.
                std::mem::swap(&mut out.data, &mut *data);
                out.keyframe = keyframe;
                self.stats.encoded += 1;
                if keyframe {
                    self.stats.keyframes += 1;
                    self.keyframe_requested = false;
                }
                Ok(EncodeOutcome::Encoded)
            }
            Waited::Delivered(Delivery::Dropped { .. }) => {
                self.stats.dropped_by_encoder += 1;
                tracing::trace!(?pts, "frame dropped by the encoder");
                Ok(EncodeOutcome::Skipped)
            }
            Waited::Delivered(Delivery::Failed { status, .. }) => {
                self.keyframe_requested = true;
                Err(EncodeError::VideoToolbox { call: "VideoToolbox output callback (frame status)", status })
            }
            Waited::Delivered(Delivery::Malformed { error, .. }) => {
                self.keyframe_requested = true;
                tracing::warn!(%error, "the encoder produced malformed AVCC output");
                Err(EncodeError::VideoToolbox { call: "VideoToolbox output (malformed AVCC, see log)", status: -1 })
            }
            Waited::TimedOut => {
                self.stats.timeouts += 1;
                // The late output will be discarded; decoders then need a
                // fresh reference.
                self.keyframe_requested = true;
                tracing::warn!(timeout = ?self.config.output_timeout, "no encoder output in time; frame skipped, next frame will be an IDR");
                Ok(EncodeOutcome::Skipped)
            }
        }
    }
}

impl<F: SessionFactory> Encoder for AsyncEncoder<F> {
    fn encode(&mut self, frame: &I420Frame, pts: Duration, out: &mut EncodedFrame) -> Result<EncodeOutcome> {
        self.encode_source(FrameSource::I420(frame), pts, out)
    }

    fn set_bitrate(&mut self, bitrate_bps: u32) -> Result<()> {
        check_bitrate(bitrate_bps)?;
        if let Some((session, _)) = &mut self.session {
            session.set_bitrate(bitrate_bps)?;
        }
        self.config.bitrate_bps = bitrate_bps;
        Ok(())
    }

    fn set_fps(&mut self, fps: f32) -> Result<()> {
        check_fps(fps)?;
        if let Some((session, _)) = &mut self.session {
            session.set_fps(fps)?;
        }
        self.config.fps = fps;
        Ok(())
    }

    fn request_keyframe(&mut self) {
        self.keyframe_requested = true;
    }

    fn name(&self) -> &'static str {
        self.factory.name()
    }

    fn codec(&self) -> crate::encoder::Codec {
        crate::encoder::Codec::H264
    }
}

/// Which encoder [`open_h264_encoder`] picked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EncoderChoice {
    /// VideoToolbox (hardware unless `require_hardware` was off).
    VideoToolbox,
    /// OpenH264 in software, and why.
    OpenH264 {
        /// Why VideoToolbox was not used, for logs and the UI.
        reason: String,
    },
}

/// Returns `primary` if it could be created, else `fallback()` with the
/// reason. The decision behind [`open_h264_encoder`], separate so it can be
/// tested anywhere.
///
/// # Errors
/// Only the fallback's error.
pub fn with_fallback<S: Encoder + 'static>(
    primary: std::result::Result<Box<dyn Encoder>, String>,
    fallback: impl FnOnce() -> Result<S>,
) -> Result<(Box<dyn Encoder>, EncoderChoice)> {
    match primary {
        Ok(encoder) => Ok((encoder, EncoderChoice::VideoToolbox)),
        Err(why) => {
            let reason = format!("no usable VideoToolbox H.264 encoder ({why}); encoding with OpenH264 in software");
            Ok((Box::new(fallback()?), EncoderChoice::OpenH264 { reason }))
        }
    }
}

#[cfg(target_os = "macos")]
fn platform_encoder(config: &VideoToolboxConfig) -> std::result::Result<Box<dyn Encoder>, String> {
    match crate::videotoolbox::VideoToolboxEncoder::open(*config) {
        Ok(encoder) => Ok(Box::new(encoder)),
        Err(e) => Err(e.to_string()),
    }
}

#[cfg(not(target_os = "macos"))]
fn platform_encoder(_config: &VideoToolboxConfig) -> std::result::Result<Box<dyn Encoder>, String> {
    Err("VideoToolbox exists only on macOS".into())
}

/// The best H.264 encoder here: VideoToolbox (hardware) on macOS when
/// available, otherwise OpenH264 with [`VideoToolboxConfig::openh264`],
/// saying why ([`EncoderChoice::OpenH264`]; on macOS also logged as a
/// warning, since that Mac then spends about half a core per 1080p30
/// stream on encoding).
///
/// # Errors
/// Invalid settings, or OpenH264 failing too.
pub fn open_h264_encoder(config: &VideoToolboxConfig) -> Result<(Box<dyn Encoder>, EncoderChoice)> {
    config.validate()?;
    let (encoder, choice) = with_fallback(platform_encoder(config), || OpenH264Encoder::new(config.openh264()))?;
    if cfg!(target_os = "macos")
        && let EncoderChoice::OpenH264 { reason } = &choice
    {
        tracing::warn!("{reason}");
    }
    Ok((encoder, choice))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::avcc::{START_CODE, nal_type};
    use crate::convert::{Nv12Frame, bgra_to_i420, bgra_to_nv12};
    use std::collections::{HashMap, HashSet};
    use std::sync::Mutex;

    /// xorshift64*: deterministic noise without a dependency.
    fn noise(seed: u64, len: usize) -> Vec<u8> {
        let mut s = seed | 1;
        (0..len)
            .map(|_| {
                s ^= s >> 12;
                s ^= s << 25;
                s ^= s >> 27;
                (s.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 56) as u8
            })
            .collect()
    }

    /// An NV12 buffer with padded strides, like a CVPixelBuffer's.
    struct Buffer {
        y: Vec<u8>,
        uv: Vec<u8>,
        y_stride: usize,
        uv_stride: usize,
        width: u32,
        height: u32,
    }

    impl Buffer {
        fn new(width: u32, height: u32, pad: usize) -> Self {
            let (y_stride, uv_stride) = (width as usize + pad, width as usize + pad);
            Self {
                y: vec![0xee; y_stride * height as usize],
                uv: vec![0xee; uv_stride * height as usize / 2],
                y_stride,
                uv_stride,
                width,
                height,
            }
        }

        fn planes(&mut self) -> Nv12Planes<'_> {
            Nv12Planes {
                y: &mut self.y,
                y_stride: self.y_stride,
                uv: &mut self.uv,
                uv_stride: self.uv_stride,
                width: self.width,
                height: self.height,
            }
        }

        /// Rows without the stride padding.
        fn tight(&self) -> (Vec<u8>, Vec<u8>) {
            let w = self.width as usize;
            let y = self.y.chunks(self.y_stride).flat_map(|r| r[..w].to_vec()).collect();
            let uv = self.uv.chunks(self.uv_stride).flat_map(|r| r[..w].to_vec()).collect();
            (y, uv)
        }

        fn padding_untouched(&self) -> bool {
            let w = self.width as usize;
            self.y.chunks(self.y_stride).all(|r| r[w..].iter().all(|&b| b == 0xee))
                && self.uv.chunks(self.uv_stride).all(|r| r[w..].iter().all(|&b| b == 0xee))
        }
    }

    const SIZES: [(u32, u32); 6] = [(1, 1), (2, 2), (3, 5), (17, 9), (64, 3), (641, 361)];

    #[test]
    fn bgra_into_padded_nv12_buffer_matches_the_converter() {
        for (i, &(w, h)) in SIZES.iter().enumerate() {
            for (src_pad, dst_pad) in [(0, 0), (12, 64), (4, 7)] {
                let stride = w as usize * 4 + src_pad;
                let src = noise(i as u64 + 11, stride * h as usize);
                let mut want = Nv12Frame::new(0, 0);
                bgra_to_nv12(&src, w, h, stride, &mut want).unwrap();
                let (cw, ch) = (even(w), even(h));
                let mut buf = Buffer::new(cw, ch, dst_pad);
                let source = FrameSource::Bgra { data: &src, width: w, height: h, stride_bytes: stride };
                let mut writer = Nv12Writer::default();
                writer.write(source, buf.planes()).unwrap();
                let (y, uv) = buf.tight();
                assert_eq!(y, want.y(), "{w}x{h} luma, pads {src_pad}/{dst_pad}");
                assert_eq!(uv, want.uv(), "{w}x{h} chroma, pads {src_pad}/{dst_pad}");
                assert!(buf.padding_untouched(), "{w}x{h}: wrote into the stride padding");
            }
        }
    }

    #[test]
    fn i420_into_padded_nv12_buffer_interleaves_chroma() {
        for (i, &(w, h)) in SIZES.iter().enumerate() {
            let stride = w as usize * 4;
            let src = noise(i as u64 + 99, stride * h as usize);
            let mut i420 = I420Frame::new(0, 0);
            bgra_to_i420(&src, w, h, stride, &mut i420).unwrap();
            let mut buf = Buffer::new(i420.coded_width(), i420.coded_height(), 16);
            Nv12Writer::default().write(FrameSource::I420(&i420), buf.planes()).unwrap();
            let (y, uv) = buf.tight();
            assert_eq!(y, i420.y(), "{w}x{h}");
            let want_uv: Vec<u8> = i420.u().iter().zip(i420.v()).flat_map(|(&u, &v)| [u, v]).collect();
            assert_eq!(uv, want_uv, "{w}x{h}");
            assert!(buf.padding_untouched());
        }
    }

    #[test]
    fn bad_buffers_and_sources_are_errors_not_panics() {
        let src = vec![0u8; 16 * 4 * 8];
        let bgra = |w, h, stride| FrameSource::Bgra { data: &src, width: w, height: h, stride_bytes: stride };
        let mut buf = Buffer::new(16, 8, 0);
        fn fill_nv12(src: FrameSource<'_>, planes: Nv12Planes<'_>) -> Result<()> {
            Nv12Writer::default().write(src, planes)
        }
        assert!(matches!(fill_nv12(bgra(0, 8, 64), buf.planes()), Err(EncodeError::EmptyFrame { .. })));
        assert!(matches!(fill_nv12(bgra(16, 8, 63), buf.planes()), Err(EncodeError::InvalidStride { .. })));
        assert!(matches!(fill_nv12(bgra(16, 8, 64 * 2), buf.planes()), Err(EncodeError::SourceTooSmall { .. })));
        // A buffer of another size.
        assert!(matches!(fill_nv12(bgra(14, 8, 64), buf.planes()), Err(EncodeError::Convert(_))));
        // Planes shorter than their stated strides say.
        let mut short = Buffer::new(16, 8, 0);
        short.y.truncate(16 * 7);
        assert!(matches!(fill_nv12(bgra(16, 8, 64), short.planes()), Err(EncodeError::Convert(_))));
        let mut short = Buffer::new(16, 8, 0);
        short.uv.truncate(10);
        let i420 = I420Frame::new(16, 8);
        assert!(matches!(fill_nv12(FrameSource::I420(&i420), short.planes()), Err(EncodeError::Convert(_))));
        let mut narrow = Buffer::new(16, 8, 0);
        narrow.y_stride = 8;
        assert!(matches!(fill_nv12(bgra(16, 8, 64), narrow.planes()), Err(EncodeError::Convert(_))));
    }

    #[test]
    fn data_rate_limit_is_one_and_a_half_times_the_average_per_second() {
        assert_eq!(data_rate_limit(2_000_000), (375_000, 1.0));
        assert_eq!(data_rate_limit(u32::MAX).0, i64::from(u32::MAX) * 3 / 16);
    }

    #[test]
    fn config_is_validated_and_maps_to_openh264() {
        assert!(VideoToolboxConfig { bitrate_bps: 0, ..Default::default() }.validate().is_err());
        assert!(VideoToolboxConfig { fps: f32::INFINITY, ..Default::default() }.validate().is_err());
        let c = VideoToolboxConfig { bitrate_bps: 1_000_000, fps: 20.0, keyframe_interval: 90, ..Default::default() };
        c.validate().unwrap();
        let o = c.openh264();
        assert_eq!((o.bitrate_bps, o.fps, o.keyframe_interval), (1_000_000, 20.0, 90));
        assert_eq!(c.max_keyframe_interval_frames(), 90);
        assert_eq!(VideoToolboxConfig::default().max_keyframe_interval_frames(), DEFAULT_MAX_KEYFRAME_INTERVAL_FRAMES);
    }

    // ---- A fake asynchronous encoder, standing in for VideoToolbox ----

    /// What the fake does with particular tokens.
    #[derive(Default)]
    struct Script {
        /// Output delay per token (default 5 ms).
        delay: HashMap<u64, Duration>,
        drop: HashSet<u64>,
        malformed: HashSet<u64>,
        /// Submits of these tokens fail once.
        fail_submit: HashSet<u64>,
        /// Every submit: (token, force_keyframe, session id).
        submits: Vec<(u64, bool, u64)>,
        bitrates: Vec<u32>,
        fps: Vec<f32>,
    }

    struct FakeFactory {
        script: Arc<Mutex<Script>>,
        probe_error: bool,
        sessions: u64,
    }

    struct FakeSession {
        id: u64,
        jobs: Option<Sender<(u64, bool)>>,
        worker: Option<std::thread::JoinHandle<()>>,
        script: Arc<Mutex<Script>>,
        first: bool,
        writer: Nv12Writer,
    }

    const SPS: &[u8] = &[0x67, 0x42, 0xe0, 0x1f, 0xda];
    const PPS: &[u8] = &[0x68, 0xce, 0x3c, 0x80];

    impl SessionFactory for FakeFactory {
        type Session = FakeSession;

        fn probe(&mut self, _config: &VideoToolboxConfig) -> Result<()> {
            if self.probe_error {
                Err(EncodeError::VideoToolbox { call: "VTCompressionSessionCreate (probe)", status: -12908 })
            } else {
                Ok(())
            }
        }

        fn create(&mut self, _w: u32, _h: u32, _c: &VideoToolboxConfig, outputs: OutputSender) -> Result<FakeSession> {
            self.sessions += 1;
            // Bounded; submits block when full, which the tests never reach.
            let (jobs, rx) = crossbeam_channel::bounded::<(u64, bool)>(8);
            let script = self.script.clone();
            let worker = std::thread::Builder::new()
                .name("fake-vt-output".into())
                .spawn(move || {
                    let mut params = ParameterSets::default();
                    params.push(SPS).expect("SPS");
                    params.push(PPS).expect("PPS");
                    for (token, keyframe) in rx {
                        let (delay, drop, malformed) = {
                            let s = script.lock().expect("script");
                            let delay = s.delay.get(&token).copied().unwrap_or(Duration::from_millis(5));
                            (delay, s.drop.contains(&token), s.malformed.contains(&token))
                        };
                        std::thread::sleep(delay);
                        if drop {
                            outputs.deliver(Delivery::Dropped { token });
                            continue;
                        }
                        let nal_type = if keyframe { 0x65 } else { 0x41 };
                        let mut au = vec![0, 0, 0, 9, nal_type];
                        au.extend_from_slice(&token.to_be_bytes());
                        if malformed {
                            au[3] = 200; // length beyond the data
                        }
                        outputs.deliver_avcc(token, &au, 4, &params);
                    }
                })
                .expect("spawn");
            Ok(FakeSession {
                id: self.sessions,
                jobs: Some(jobs),
                worker: Some(worker),
                script: self.script.clone(),
                first: true,
                writer: Nv12Writer::default(),
            })
        }

        fn name(&self) -> &'static str {
            "fake"
        }
    }

    impl CompressionSession for FakeSession {
        fn submit(&mut self, source: FrameSource<'_>, _pts: Duration, token: u64, force: bool) -> Result<()> {
            {
                let mut s = self.script.lock().expect("script");
                s.submits.push((token, force, self.id));
                if s.fail_submit.remove(&token) {
                    return Err(EncodeError::VideoToolbox { call: "VTCompressionSessionEncodeFrame", status: -12903 });
                }
            }
            // Write the frame like the real session does.
            let (w, h) = source.coded_size();
            let mut buf = Buffer::new(w, h, 8);
            self.writer.write(source, buf.planes())?;
            let keyframe = force || std::mem::take(&mut self.first);
            self.jobs.as_ref().expect("open").send((token, keyframe)).expect("worker alive");
            Ok(())
        }

        fn set_bitrate(&mut self, bitrate_bps: u32) -> Result<()> {
            self.script.lock().expect("script").bitrates.push(bitrate_bps);
            Ok(())
        }

        fn set_fps(&mut self, fps: f32) -> Result<()> {
            self.script.lock().expect("script").fps.push(fps);
            Ok(())
        }
    }

    impl Drop for FakeSession {
        fn drop(&mut self) {
            // Like VTCompressionSessionCompleteFrames + Invalidate.
            drop(self.jobs.take());
            if let Some(w) = self.worker.take() {
                let _ = w.join();
            }
        }
    }

    fn encoder(timeout_ms: u64) -> (AsyncEncoder<FakeFactory>, Arc<Mutex<Script>>) {
        let script = Arc::new(Mutex::new(Script::default()));
        let factory = FakeFactory { script: script.clone(), probe_error: false, sessions: 0 };
        let config = VideoToolboxConfig { output_timeout: Duration::from_millis(timeout_ms), ..Default::default() };
        (AsyncEncoder::new(factory, config).expect("encoder"), script)
    }

    /// The token the fake wrote into an access unit's last slice.
    fn token_of(data: &[u8]) -> u64 {
        u64::from_be_bytes(data[data.len() - 8..].try_into().expect("8 bytes"))
    }

    fn nal_types(annexb: &[u8]) -> Vec<u8> {
        annexb.windows(5).filter(|w| w[..4] == START_CODE).map(|w| w[4] & 0x1f).collect()
    }

    #[test]
    fn each_frame_comes_back_from_its_own_encode_call() {
        let (mut enc, script) = encoder(2000);
        script.lock().unwrap().delay.insert(1, Duration::from_millis(60));
        let frame = I420Frame::new(64, 48);
        let mut out = EncodedFrame::with_capacity(1024);
        for token in 0..5u64 {
            let pts = Duration::from_millis(token * 33);
            assert_eq!(enc.encode(&frame, pts, &mut out).unwrap(), EncodeOutcome::Encoded);
            // Frame N's output, during frame N's call, even when it took 60 ms.
            assert_eq!(token_of(&out.data), token);
            assert_eq!((out.pts, out.width, out.height), (pts, 64, 48));
        }
        assert_eq!(enc.stats().encoded, 5);
        assert_eq!(enc.stats().sessions_created, 1);
        assert_eq!(enc.name(), "fake");
    }

    #[test]
    fn keyframes_carry_parameter_sets_and_requests_are_forced() {
        let (mut enc, script) = encoder(2000);
        let frame = I420Frame::new(32, 32);
        let mut out = EncodedFrame::default();
        assert_eq!(enc.encode(&frame, Duration::ZERO, &mut out).unwrap(), EncodeOutcome::Encoded);
        assert!(out.keyframe);
        assert_eq!(nal_types(&out.data), [nal_type::SPS, nal_type::PPS, nal_type::IDR]);
        assert_eq!(enc.encode(&frame, Duration::from_millis(33), &mut out).unwrap(), EncodeOutcome::Encoded);
        assert!(!out.keyframe);
        assert_eq!(nal_types(&out.data), [nal_type::SLICE]);
        enc.request_keyframe();
        assert_eq!(enc.encode(&frame, Duration::from_millis(66), &mut out).unwrap(), EncodeOutcome::Encoded);
        assert!(out.keyframe);
        assert_eq!(nal_types(&out.data), [nal_type::SPS, nal_type::PPS, nal_type::IDR]);
        assert_eq!(enc.encode(&frame, Duration::from_millis(99), &mut out).unwrap(), EncodeOutcome::Encoded);
        assert!(!out.keyframe, "the request is cleared once served");
        let forced: Vec<bool> = script.lock().unwrap().submits.iter().map(|s| s.1).collect();
        assert_eq!(forced, [false, false, true, false]);
    }

    #[test]
    fn bitrate_and_fps_change_the_live_session_without_recreating_it() {
        let (mut enc, script) = encoder(2000);
        let frame = I420Frame::new(32, 32);
        let mut out = EncodedFrame::default();
        enc.set_bitrate(1_000_000).unwrap(); // before any session: just remembered
        assert_eq!(enc.encode(&frame, Duration::ZERO, &mut out).unwrap(), EncodeOutcome::Encoded);
        enc.set_bitrate(800_000).unwrap();
        enc.set_fps(15.0).unwrap();
        assert!(enc.set_bitrate(1).is_err());
        assert!(enc.set_fps(-1.0).is_err());
        assert_eq!(enc.encode(&frame, Duration::from_millis(66), &mut out).unwrap(), EncodeOutcome::Encoded);
        let s = script.lock().unwrap();
        assert_eq!(s.bitrates, [800_000]);
        assert_eq!(s.fps, [15.0]);
        assert_eq!(enc.stats().sessions_created, 1);
        assert_eq!((enc.config().bitrate_bps, enc.config().fps), (800_000, 15.0));
    }

    #[test]
    fn a_size_change_starts_a_new_session_with_a_keyframe() {
        let (mut enc, _) = encoder(2000);
        let mut out = EncodedFrame::default();
        assert_eq!(enc.encode(&I420Frame::new(32, 32), Duration::ZERO, &mut out).unwrap(), EncodeOutcome::Encoded);
        assert_eq!(enc.encode(&I420Frame::new(32, 32), Duration::ZERO, &mut out).unwrap(), EncodeOutcome::Encoded);
        assert!(!out.keyframe);
        assert_eq!(enc.encode(&I420Frame::new(33, 31), Duration::ZERO, &mut out).unwrap(), EncodeOutcome::Encoded);
        assert!(out.keyframe);
        assert_eq!((out.width, out.height), (34, 32));
        assert_eq!(enc.stats().sessions_created, 2);
    }

    #[test]
    fn a_late_output_is_skipped_discarded_and_followed_by_a_keyframe() {
        // Frame 1's output takes 600 ms against a 400 ms timeout; frame 2 is
        // queued behind it and arrives ≈ 205 ms into its own wait (≈ 200 ms
        // of slack either way for a loaded machine).
        let (mut enc, script) = encoder(400);
        script.lock().unwrap().delay.insert(1, Duration::from_millis(600));
        let frame = I420Frame::new(32, 32);
        let mut out = EncodedFrame::default();
        assert_eq!(enc.encode(&frame, Duration::ZERO, &mut out).unwrap(), EncodeOutcome::Encoded);
        assert_eq!(enc.encode(&frame, Duration::from_millis(33), &mut out).unwrap(), EncodeOutcome::Skipped);
        assert!(out.data.is_empty());
        // Frame 2 waits behind frame 1 in the fake's queue: it must not be
        // mistaken for frame 1's output.
        assert_eq!(enc.encode(&frame, Duration::from_millis(66), &mut out).unwrap(), EncodeOutcome::Encoded);
        assert_eq!(token_of(&out.data), 2);
        assert!(out.keyframe, "the frame after a lost one is an IDR");
        let stats = enc.stats();
        assert_eq!((stats.timeouts, stats.stale_discarded), (1, 1));
    }

    #[test]
    fn dropped_frames_are_skipped_and_failures_are_errors() {
        let (mut enc, script) = encoder(2000);
        script.lock().unwrap().drop.insert(1);
        script.lock().unwrap().malformed.insert(2);
        let frame = I420Frame::new(32, 32);
        let mut out = EncodedFrame::default();
        assert_eq!(enc.encode(&frame, Duration::ZERO, &mut out).unwrap(), EncodeOutcome::Encoded);
        assert_eq!(enc.encode(&frame, Duration::ZERO, &mut out).unwrap(), EncodeOutcome::Skipped);
        assert!(matches!(
            enc.encode(&frame, Duration::ZERO, &mut out),
            Err(EncodeError::VideoToolbox { status: -1, .. })
        ));
        assert_eq!(enc.encode(&frame, Duration::ZERO, &mut out).unwrap(), EncodeOutcome::Encoded);
        assert!(out.keyframe, "after a broken output the next frame is an IDR");
        assert_eq!(enc.stats().dropped_by_encoder, 1);
    }

    #[test]
    fn a_failed_submit_restarts_the_session_once() {
        let (mut enc, script) = encoder(2000);
        let frame = I420Frame::new(32, 32);
        let mut out = EncodedFrame::default();
        assert_eq!(enc.encode(&frame, Duration::ZERO, &mut out).unwrap(), EncodeOutcome::Encoded);
        script.lock().unwrap().fail_submit.insert(1);
        assert_eq!(enc.encode(&frame, Duration::ZERO, &mut out).unwrap(), EncodeOutcome::Encoded);
        assert!(out.keyframe, "a new session starts with an IDR");
        assert_eq!(token_of(&out.data), 1);
        assert_eq!(enc.stats().sessions_created, 2);
        let sessions: Vec<u64> = script.lock().unwrap().submits.iter().map(|s| s.2).collect();
        assert_eq!(sessions, [1, 1, 2]);
    }

    #[test]
    fn output_buffers_are_recycled_through_the_callers_frame() {
        let (mut enc, _) = encoder(2000);
        let frame = I420Frame::new(32, 32);
        let mut out = EncodedFrame::with_capacity(64 * 1024);
        for i in 0..10 {
            assert_eq!(enc.encode(&frame, Duration::from_millis(i), &mut out).unwrap(), EncodeOutcome::Encoded);
        }
        let warm = enc.stats().output_buffer_misses;
        for i in 10..200 {
            assert_eq!(enc.encode(&frame, Duration::from_millis(i), &mut out).unwrap(), EncodeOutcome::Encoded);
        }
        assert_eq!(enc.stats().output_buffer_misses, warm, "steady state allocates no output buffers");
        assert_eq!(warm, 0);
    }

    #[test]
    fn empty_frames_are_errors() {
        let (mut enc, _) = encoder(2000);
        let mut out = EncodedFrame::default();
        assert!(matches!(
            enc.encode(&I420Frame::new(0, 0), Duration::ZERO, &mut out),
            Err(EncodeError::EmptyFrame { .. })
        ));
        assert_eq!(enc.stats().sessions_created, 0);
    }

    #[test]
    fn handoff_drops_newest_when_full_and_never_blocks() {
        let mut handoff = Handoff::new(1, 16);
        let tx = handoff.sender();
        for token in 0..OUTPUT_CHANNEL_CAPACITY as u64 + 3 {
            tx.deliver(Delivery::Dropped { token });
        }
        assert_eq!(handoff.lost(), 3);
        // The oldest are kept; waiting for a later one discards them.
        match handoff.wait_for(3, Duration::from_millis(100)) {
            Waited::Delivered(d) => assert_eq!(d.token(), 3),
            Waited::TimedOut => panic!("token 3 was delivered"),
        }
        assert_eq!(handoff.stale(), 3);
        assert!(matches!(handoff.wait_for(4, Duration::from_millis(10)), Waited::TimedOut));
    }

    fn boxed(e: Result<AsyncEncoder<FakeFactory>>) -> std::result::Result<Box<dyn Encoder>, String> {
        e.map(|e| Box::new(e) as Box<dyn Encoder>).map_err(|e| e.to_string())
    }

    #[test]
    fn fallback_is_openh264_with_a_reason() {
        let script = Arc::new(Mutex::new(Script::default()));
        let failing = FakeFactory { script: script.clone(), probe_error: true, sessions: 0 };
        let primary = boxed(AsyncEncoder::new(failing, VideoToolboxConfig::default()));
        let (encoder, choice) =
            with_fallback(primary, || OpenH264Encoder::new(OpenH264Config::default())).expect("fallback");
        assert_eq!(encoder.name(), "openh264");
        let EncoderChoice::OpenH264 { reason } = choice else { panic!("expected the fallback") };
        assert!(reason.contains("-12908") && reason.contains("OpenH264"), "{reason}");

        let working = FakeFactory { script, probe_error: false, sessions: 0 };
        let primary = boxed(AsyncEncoder::new(working, VideoToolboxConfig::default()));
        let (encoder, choice) =
            with_fallback(primary, || OpenH264Encoder::new(OpenH264Config::default())).expect("primary");
        assert_eq!((encoder.name(), choice), ("fake", EncoderChoice::VideoToolbox));
    }

    #[cfg(not(target_os = "macos"))]
    #[test]
    fn elsewhere_the_best_encoder_is_openh264() {
        let (encoder, choice) = open_h264_encoder(&VideoToolboxConfig::default()).unwrap();
        assert_eq!(encoder.name(), "openh264");
        assert!(matches!(choice, EncoderChoice::OpenH264 { .. }));
    }
}
