//! VP8 and VP9 encoding (and decoding, for tests and tools) with libvpx,
//! for viewers whose browser has no H.264 (Firefox without Cisco's OpenH264
//! plugin offers only VP8, VP9 and AV1).
//!
//! Binding: Peep's own thin FFI in [`crate::vpx_ffi`] over the system
//! libvpx (Debian `libvpx-dev`); see that module for why no binding crate,
//! and for the checks that keep the hand-written layout honest.
//!
//! The encoder runs libvpx in real-time mode: one pass, no lag (every
//! `encode` call returns its frame), CBR rate control, error-resilient
//! bitstream (a lost frame does not corrupt the probability contexts of the
//! following ones), `VPX_DL_REALTIME` deadline, no frame dropping, and the
//! codec's screen-content tuning. Bitrate, frame rate and keyframe requests
//! apply to the running encoder; only a new frame size starts a new one.

use crate::convert::I420Frame;
use crate::encoder::{Codec, EncodeOutcome, EncodedFrame, Encoder};
use crate::error::{EncodeError, Result};
use crate::openh264::{check_bitrate, check_fps};
use crate::vpx_ffi as ffi;
use std::ffi::{CStr, c_int, c_uint, c_ulong};
use std::time::Duration;

/// Longest side libvpx encodes (VP8's 14-bit size fields; VP9 allows more,
/// but browsers' decoders do not).
pub const MAX_SIDE: u32 = 16_383;
/// RTP's clock for video: libvpx timestamps are in these units.
const TIMEBASE_HZ: u64 = 90_000;

/// Which libvpx codec.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VpxCodec {
    /// VP8 (RFC 6386): every WebRTC browser must decode it (RFC 7742).
    Vp8,
    /// VP9 profile 0.
    Vp9,
}

impl From<VpxCodec> for Codec {
    fn from(c: VpxCodec) -> Self {
        match c {
            VpxCodec::Vp8 => Codec::Vp8,
            VpxCodec::Vp9 => Codec::Vp9,
        }
    }
}

/// Settings for [`VpxEncoder`].
///
/// The defaults were chosen with `encode/examples/mode_table.rs` (see
/// [`VpxConfig::default`] for the figures).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VpxConfig {
    /// VP8 or VP9.
    pub codec: VpxCodec,
    /// Target bitrate in bits per second (libvpx works in kbps); change it
    /// at run time with [`Encoder::set_bitrate`].
    pub bitrate_bps: u32,
    /// Expected frame rate: each frame's duration for the rate control.
    /// Change it with [`Encoder::set_fps`].
    pub fps: f32,
    /// libvpx's real-time speed (`cpu-used`): VP8 4..=16, VP9 5..=9; higher
    /// is faster and blurrier. VP8 runs it as a fixed speed (a negative
    /// cpu-used), not libvpx's self-adjusting one, so results repeat.
    pub speed: u8,
    /// Screen-content tuning (VP8 `SCREEN_CONTENT_MODE` 1, VP9 `TUNE_CONTENT`
    /// screen): better text and cheap static areas.
    pub screen_content: bool,
    /// Encoder threads (1: one core, the measured configuration).
    pub threads: u32,
    /// Quantizer range on libvpx's 0..=63 scale (lower is better quality).
    pub quantizer_range: (u8, u8),
    /// Largest keyframe as a percentage of the per-frame budget (0: no cap).
    /// A capped keyframe is blurrier but arrives sooner on a slow link; the
    /// following frames sharpen it.
    pub max_keyframe_pct: u32,
    /// Frames between periodic keyframes; 0 means only the first frame,
    /// size changes and [`Encoder::request_keyframe`].
    pub keyframe_interval: u32,
}

impl Default for VpxConfig {
    /// VP9 at speed 9 with screen-content tuning, one thread, quantizer
    /// 4..=56, keyframes capped at 10× a frame's budget
    /// ([`VpxConfig::for_codec`] gives VP8's: speed 10).
    ///
    /// Measured with `cargo run --release -p peep-encode --example
    /// mode_table -- --codecs h264,vp8,vp9 --bitrates 2500`: 1920x1080,
    /// 30 fps, 90 frames each of typing, scrolling and moving synthetic screen
    /// content at the same 2.5 Mbps target, CPU time of the encoding thread
    /// (the machine was shared with other builds: wall times are inflated),
    /// text PSNR-Y over the blocks that are not flat background, means over
    /// the three scenes, libwebrtc's 500/600/1000 ms buffer model:
    ///
    /// | config | CPU ms/frame | achieved kbps | text PSNR-Y dB | worst frame |
    /// |---|---|---|---|---|
    /// | OpenH264 default (screen, high) | 14.4 | 1476 | 48.81 | 37.16 |
    /// | VP8 speed 6, screen | 9.3 | 1728 | 35.92 | 23.90 |
    /// | VP8 speed 8, screen | 8.5 | 1783 | 34.23 | 23.90 |
    /// | VP8 speed 10, screen | 8.3 | 1778 | 34.40 | 23.90 |
    /// | VP8 speed 14, screen | 7.6 | 1769 | 35.34 | 24.14 |
    /// | VP8 speed 10, camera tuning | 10.3 | 1783 | 34.10 | 23.90 |
    /// | VP9 speed 6, screen | 18.4 | 1518 | 45.07 | 33.70 |
    /// | VP9 speed 7, screen | 17.6 | 1523 | 45.03 | 33.69 |
    /// | VP9 speed 8, screen | 14.9 | 1575 | 44.68 | 33.32 |
    /// | **VP9 speed 9, screen** | 11.2 | 1627 | **44.58** | 33.31 |
    /// | VP9 speed 8, camera tuning | 12.8 | 1699 | 43.96 | 33.06 |
    ///
    /// Per scene, VP9 speed 9 against VP8 speed 10: typing 49.6 vs 44.6 dB,
    /// scrolling 40.8 vs 27.6 dB, moving 43.3 vs 31.0 dB. VP8 in real-time
    /// mode cannot keep up with scrolled text at this bitrate (it needs
    /// about 6 Mbps for 42 dB); VP9's screen tuning can, at 1.35× VP8's CPU
    /// and 0.8× OpenH264's. Speeds 6–8 buy VP9 < 0.5 dB for up to 65 % more
    /// CPU. Hence VP9 is Peep's second codec after H.264, VP8 the third (for
    /// a browser with neither).
    ///
    /// The same run with the buffer model used now (1000/1000/2000 ms, see
    /// `start_session`), same content, target and machine:
    ///
    /// | config | CPU ms/frame | achieved kbps | text PSNR-Y dB (typing / scrolling / moving) | worst frame |
    /// |---|---|---|---|---|
    /// | OpenH264 default | 14.5 | 1476 | **48.81** (55.74 / 45.07 / 45.61) | 37.16 |
    /// | **VP9 speed 9, screen (default)** | 11.2 | 1658 | **46.61** (49.64 / 44.24 / 45.94) | 37.32 |
    /// | VP9 speed 9, no keyframe cap | 11.2 | 1661 | 48.06 (51.60 / 45.76 / 46.81) | 38.26 |
    /// | VP8 speed 10, screen | 9.3 | 1805 | 36.82 (47.20 / 30.09 / 33.18) | 27.40 |
    /// | VP8 speed 10, no keyframe cap | 8.4 | 1790 | 37.99 (47.55 / 31.81 / 34.60) | 29.15 |
    ///
    /// The keyframe cap costs 1.5 dB over the first seconds (the first
    /// picture starts blurrier and sharpens); it is kept because an
    /// uncapped keyframe is a second of the budget in one burst, which on a
    /// slow link arrives late or not at all (see the congestion notes in
    /// FACTS.md).
    fn default() -> Self {
        Self {
            codec: VpxCodec::Vp9,
            bitrate_bps: 2_500_000,
            fps: 30.0,
            speed: 9,
            screen_content: true,
            threads: 1,
            quantizer_range: (4, 56),
            max_keyframe_pct: 1000,
            keyframe_interval: 0,
        }
    }
}

impl VpxConfig {
    /// The defaults for `codec`: VP9 at speed 9, VP8 at speed 10 (see the
    /// table at [`VpxConfig::default`]).
    pub fn for_codec(codec: VpxCodec) -> Self {
        match codec {
            VpxCodec::Vp9 => Self::default(),
            VpxCodec::Vp8 => Self { codec, speed: 10, ..Self::default() },
        }
    }

    fn validate(&self) -> Result<()> {
        check_bitrate(self.bitrate_bps)?;
        check_fps(self.fps)?;
        let speeds = match self.codec {
            VpxCodec::Vp8 => 4..=16,
            VpxCodec::Vp9 => 5..=9,
        };
        if !speeds.contains(&self.speed) {
            return Err(EncodeError::InvalidSetting {
                setting: "speed",
                reason: format!("{} for {:?} (real-time speeds are {:?})", self.speed, self.codec, speeds),
            });
        }
        let (min, max) = self.quantizer_range;
        if !(min <= max && max <= 63) {
            return Err(EncodeError::InvalidSetting {
                setting: "quantizer_range",
                reason: format!("{min}..={max} (need min <= max <= 63)"),
            });
        }
        if self.threads == 0 || self.threads > 64 {
            return Err(EncodeError::InvalidSetting {
                setting: "threads",
                reason: format!("{} (1..=64)", self.threads),
            });
        }
        Ok(())
    }
}

/// A libvpx failure as an [`EncodeError`], with libvpx's own words.
fn vpx_error(call: &'static str, code: ffi::vpx_codec_err_t, ctx: Option<*mut ffi::vpx_codec_ctx_t>) -> EncodeError {
    // SAFETY: vpx_codec_err_to_string returns a static string for any code;
    // vpx_codec_error_detail reads a live context (or returns NULL).
    let (text, detail) = unsafe {
        let text = CStr::from_ptr(ffi::vpx_codec_err_to_string(code)).to_string_lossy().into_owned();
        let detail = ctx
            .map(|c| ffi::vpx_codec_error_detail(c))
            .filter(|p| !p.is_null())
            .map(|p| CStr::from_ptr(p).to_string_lossy().into_owned());
        (text, detail)
    };
    EncodeError::Vpx { call, code, message: detail.map_or(text.clone(), |d| format!("{text}: {d}")) }
}

fn check(call: &'static str, code: ffi::vpx_codec_err_t, ctx: *mut ffi::vpx_codec_ctx_t) -> Result<()> {
    if code == ffi::VPX_CODEC_OK { Ok(()) } else { Err(vpx_error(call, code, Some(ctx))) }
}

/// The libvpx version string, e.g. `"v1.12.0"`.
pub fn libvpx_version() -> String {
    // SAFETY: returns a pointer to a static NUL-terminated string.
    unsafe { CStr::from_ptr(ffi::vpx_codec_version_str()) }.to_string_lossy().into_owned()
}

fn layout_ok() -> Result<()> {
    ffi::check_layout().map_err(|reason| EncodeError::Vpx {
        call: "layout check",
        code: -1,
        message: format!("the installed libvpx headers do not match Peep's bindings ({reason})"),
    })
}

/// An initialised libvpx encoder context for one frame size.
struct Session {
    /// Boxed: libvpx keeps pointers into the context between calls.
    ctx: Box<ffi::vpx_codec_ctx_t>,
    /// Boxed for the same reason (`ctx.config` points at it until libvpx
    /// copies it); also what `vpx_codec_enc_config_set` is given.
    cfg: Box<ffi::vpx_codec_enc_cfg_t>,
    width: u32,
    height: u32,
}

// SAFETY: a libvpx context has no thread affinity; `Session` is only used
// through `&mut VpxEncoder`, so one thread at a time.
unsafe impl Send for Session {}

impl Drop for Session {
    fn drop(&mut self) {
        // SAFETY: the context was initialised by vpx_codec_enc_init_ver and
        // is destroyed exactly once.
        unsafe { ffi::vpx_codec_destroy(&mut *self.ctx) };
    }
}

/// VP8/VP9 encoder on libvpx. See the [module docs](self) for the mode.
///
/// - Frames are encoded at the [`I420Frame`]'s coded (even) size;
///   [`EncodedFrame::width`]/`height` give what decoders will see.
/// - Output is one VP8/VP9 frame per call, ready for the RTP payloader.
/// - A change of frame size starts a new libvpx context (first frame a
///   keyframe) with the current bitrate and frame rate.
/// - After the first frame at a size, encoding allocates nothing on the
///   Rust side; `encode/tests/alloc.rs` counts libvpx's mallocs too.
pub struct VpxEncoder {
    config: VpxConfig,
    session: Option<Session>,
    keyframe_requested: bool,
    frames_skipped: u64,
    last_pts: Option<i64>,
}

impl std::fmt::Debug for VpxEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VpxEncoder")
            .field("config", &self.config)
            .field("coded_size", &self.session.as_ref().map(|s| (s.width, s.height)))
            .field("keyframe_requested", &self.keyframe_requested)
            .field("frames_skipped", &self.frames_skipped)
            .finish()
    }
}

impl VpxEncoder {
    /// Checks `config` and the bindings; libvpx itself is set up on the first
    /// frame, when the size is known.
    ///
    /// # Errors
    /// [`EncodeError::InvalidBitrate`], [`EncodeError::InvalidFrameRate`],
    /// [`EncodeError::InvalidSetting`], and [`EncodeError::Vpx`] when the
    /// installed libvpx headers do not match the bindings.
    pub fn new(config: VpxConfig) -> Result<Self> {
        config.validate()?;
        layout_ok()?;
        Ok(Self { config, session: None, keyframe_requested: false, frames_skipped: 0, last_pts: None })
    }

    /// The current settings (with run-time bitrate and frame-rate changes).
    pub fn config(&self) -> &VpxConfig {
        &self.config
    }

    /// Frames libvpx produced nothing for so far.
    pub fn frames_skipped(&self) -> u64 {
        self.frames_skipped
    }

    fn iface(&self) -> *const ffi::vpx_codec_iface_t {
        // SAFETY: plain getters of static interface tables.
        unsafe {
            match self.config.codec {
                VpxCodec::Vp8 => ffi::vpx_codec_vp8_cx(),
                VpxCodec::Vp9 => ffi::vpx_codec_vp9_cx(),
            }
        }
    }

    fn start_session(&self, width: u32, height: u32) -> Result<Session> {
        let c = &self.config;
        // SAFETY: all-zero is a valid bit pattern for this plain C struct
        // (integers, pointers, arrays); libvpx fills it in next.
        let mut cfg: Box<ffi::vpx_codec_enc_cfg_t> = Box::new(unsafe { std::mem::zeroed() });
        // SAFETY: `cfg` is a writable vpx_codec_enc_cfg_t of the right layout
        // (checked in `new`); usage 0 is the only defined one.
        let code = unsafe { ffi::vpx_codec_enc_config_default(self.iface(), &mut *cfg, 0) };
        if code != ffi::VPX_CODEC_OK {
            return Err(vpx_error("vpx_codec_enc_config_default", code, None));
        }
        cfg.g_w = width;
        cfg.g_h = height;
        cfg.g_threads = c.threads;
        cfg.g_timebase = ffi::vpx_rational_t { num: 1, den: TIMEBASE_HZ as c_int };
        cfg.g_error_resilient = ffi::VPX_ERROR_RESILIENT_DEFAULT;
        cfg.g_pass = 0; // one pass
        cfg.g_lag_in_frames = 0;
        cfg.rc_end_usage = ffi::VPX_CBR;
        cfg.rc_target_bitrate = kbps(c.bitrate_bps);
        cfg.rc_min_quantizer = c_uint::from(c.quantizer_range.0);
        cfg.rc_max_quantizer = c_uint::from(c.quantizer_range.1);
        // Frame dropping freezes the picture during scrolling (see the
        // OpenH264 measurements): never drop, let the quantizer take it.
        cfg.rc_dropframe_thresh = 0;
        cfg.rc_resize_allowed = 0;
        // Buffer model (ms). libwebrtc's 500/600/1000 starts with a keyframe
        // of half a second's budget: on 1080p text that is a blurry first
        // picture that scrolling never repairs (VP9 39.1 dB text PSNR on the
        // scrolling scene at 2.5 Mbps, VP8 28.2 dB). A second's budget —
        // about what OpenH264's IDR costs — gave 42.6 / 31.7 dB.
        cfg.rc_undershoot_pct = 100;
        cfg.rc_overshoot_pct = 15;
        cfg.rc_buf_initial_sz = 1000;
        cfg.rc_buf_optimal_sz = 1000;
        cfg.rc_buf_sz = 2000;
        if c.keyframe_interval == 0 {
            cfg.kf_mode = ffi::VPX_KF_DISABLED;
        } else {
            cfg.kf_mode = ffi::VPX_KF_AUTO;
            cfg.kf_min_dist = c.keyframe_interval;
            cfg.kf_max_dist = c.keyframe_interval;
        }
        // SAFETY: all-zero is the state vpx_codec_enc_init_ver expects to fill.
        let mut ctx: Box<ffi::vpx_codec_ctx_t> = Box::new(unsafe { std::mem::zeroed() });
        // SAFETY: `ctx` and `cfg` are valid, boxed (stable addresses) and
        // outlive the context (dropped together in `Session`); the ABI
        // version is the one the declarations were written for, which
        // libvpx checks.
        let code =
            unsafe { ffi::vpx_codec_enc_init_ver(&mut *ctx, self.iface(), &*cfg, 0, ffi::VPX_ENCODER_ABI_VERSION) };
        if code != ffi::VPX_CODEC_OK {
            return Err(vpx_error("vpx_codec_enc_init_ver", code, None));
        }
        let mut session = Session { ctx, cfg, width, height };
        self.apply_controls(&mut session)?;
        tracing::debug!(width, height, config = ?self.config, version = %libvpx_version(), "starting libvpx encoder");
        Ok(session)
    }

    /// Codec controls that cannot be set through the config struct.
    fn apply_controls(&self, session: &mut Session) -> Result<()> {
        let c = &self.config;
        let ctx: *mut ffi::vpx_codec_ctx_t = &mut *session.ctx;
        let control = |id: c_int, name: &'static str, value: c_int| -> Result<()> {
            // SAFETY: `ctx` is an initialised encoder context; every control
            // used here takes an `int` (or `unsigned int`, same size and
            // passing convention for these small non-negative values) per
            // the VPX_CTRL_USE_TYPE declarations in vp8cx.h.
            check(name, unsafe { ffi::vpx_codec_control_(ctx, id, value) }, ctx)
        };
        let speed = c_int::from(c.speed);
        match c.codec {
            VpxCodec::Vp8 => {
                // Negative: a fixed speed rather than libvpx's adaptive one.
                control(ffi::VP8E_SET_CPUUSED, "VP8E_SET_CPUUSED", -speed)?;
                control(ffi::VP8E_SET_NOISE_SENSITIVITY, "VP8E_SET_NOISE_SENSITIVITY", 0)?;
                control(ffi::VP8E_SET_TOKEN_PARTITIONS, "VP8E_SET_TOKEN_PARTITIONS", 0)?;
                control(
                    ffi::VP8E_SET_SCREEN_CONTENT_MODE,
                    "VP8E_SET_SCREEN_CONTENT_MODE",
                    c_int::from(c.screen_content),
                )?;
                if c.screen_content {
                    // Skip encoding macroblocks that did not change (screens are
                    // mostly static): libwebrtc's screen-share setting.
                    control(ffi::VP8E_SET_STATIC_THRESHOLD, "VP8E_SET_STATIC_THRESHOLD", 100)?;
                }
            }
            VpxCodec::Vp9 => {
                control(ffi::VP8E_SET_CPUUSED, "VP8E_SET_CPUUSED", speed)?;
                control(ffi::VP9E_SET_TUNE_CONTENT, "VP9E_SET_TUNE_CONTENT", c_int::from(c.screen_content))?;
                // Cyclic refresh: real-time quality without keyframe bursts.
                control(ffi::VP9E_SET_AQ_MODE, "VP9E_SET_AQ_MODE", 3)?;
                control(ffi::VP9E_SET_NOISE_SENSITIVITY, "VP9E_SET_NOISE_SENSITIVITY", 0)?;
                control(ffi::VP9E_SET_ROW_MT, "VP9E_SET_ROW_MT", c_int::from(c.threads > 1))?;
                let tiles = (c.threads.max(1) as f32).log2().floor() as c_int;
                control(ffi::VP9E_SET_TILE_COLUMNS, "VP9E_SET_TILE_COLUMNS", tiles)?;
                // Matches `convert`: BT.709, limited range.
                control(ffi::VP9E_SET_COLOR_SPACE, "VP9E_SET_COLOR_SPACE", ffi::VPX_CS_BT_709)?;
                control(ffi::VP9E_SET_COLOR_RANGE, "VP9E_SET_COLOR_RANGE", ffi::VPX_CR_STUDIO_RANGE)?;
            }
        }
        control(ffi::VP8E_SET_MAX_INTRA_BITRATE_PCT, "VP8E_SET_MAX_INTRA_BITRATE_PCT", c.max_keyframe_pct as c_int)?;
        Ok(())
    }

    fn check_size(frame: &I420Frame) -> Result<()> {
        let (width, height) = (frame.width(), frame.height());
        if width == 0 || height == 0 {
            return Err(EncodeError::EmptyFrame { width, height });
        }
        if frame.coded_width() > MAX_SIDE || frame.coded_height() > MAX_SIDE {
            return Err(EncodeError::FrameTooLarge {
                width,
                height,
                max_long_side: MAX_SIDE,
                max_short_side: MAX_SIDE,
            });
        }
        Ok(())
    }

    /// Pushes the current config (bitrate) into a running context.
    fn reconfigure(&mut self) -> Result<()> {
        if let Some(s) = &mut self.session {
            s.cfg.rc_target_bitrate = kbps(self.config.bitrate_bps);
            let ctx: *mut ffi::vpx_codec_ctx_t = &mut *s.ctx;
            // SAFETY: live context, and a config of the right layout that
            // differs from the running one only in rate-control targets.
            check("vpx_codec_enc_config_set", unsafe { ffi::vpx_codec_enc_config_set(ctx, &*s.cfg) }, ctx)?;
        }
        Ok(())
    }
}

/// libvpx takes kbps; at least 1.
fn kbps(bps: u32) -> c_uint {
    (bps / 1000).max(1)
}

impl Encoder for VpxEncoder {
    fn encode(&mut self, frame: &I420Frame, pts: Duration, out: &mut EncodedFrame) -> Result<EncodeOutcome> {
        Self::check_size(frame)?;
        let (width, height) = (frame.coded_width(), frame.coded_height());
        if !matches!(&self.session, Some(s) if (s.width, s.height) == (width, height)) {
            self.session = None; // destroy the old context before making a new one
            self.session = Some(self.start_session(width, height)?);
            self.keyframe_requested = false; // a fresh context starts with one
        }
        // libvpx wants strictly increasing timestamps.
        let ticks = i64::try_from(pts.as_nanos() * u128::from(TIMEBASE_HZ) / 1_000_000_000).unwrap_or(i64::MAX);
        let ticks = self.last_pts.map_or(ticks, |last| ticks.max(last.saturating_add(1)));
        self.last_pts = Some(ticks);
        let duration = (TIMEBASE_HZ as f64 / f64::from(self.config.fps)).round().max(1.0) as c_ulong;
        let flags = if self.keyframe_requested { ffi::VPX_EFLAG_FORCE_KF } else { 0 };
        let session = self.session.as_mut().expect("session started above");
        let image = ffi::vpx_image_t {
            fmt: ffi::VPX_IMG_FMT_I420,
            cs: ffi::VPX_CS_BT_709,
            range: ffi::VPX_CR_STUDIO_RANGE,
            w: width,
            h: height,
            bit_depth: 8,
            d_w: width,
            d_h: height,
            r_w: width,
            r_h: height,
            x_chroma_shift: 1,
            y_chroma_shift: 1,
            // libvpx copies the source planes into its own buffers and never
            // writes through these pointers (`const vpx_image_t *img`).
            planes: [
                frame.y().as_ptr().cast_mut(),
                frame.u().as_ptr().cast_mut(),
                frame.v().as_ptr().cast_mut(),
                std::ptr::null_mut(),
            ],
            stride: [frame.y_stride() as c_int, frame.uv_stride() as c_int, frame.uv_stride() as c_int, 0],
            bps: 12,
            user_priv: std::ptr::null_mut(),
            img_data: std::ptr::null_mut(),
            img_data_owner: 0,
            self_allocd: 0,
            fb_priv: std::ptr::null_mut(),
        };
        let ctx: *mut ffi::vpx_codec_ctx_t = &mut *session.ctx;
        // SAFETY: live encoder context; `image` describes planes of
        // width x height (coded size, the I420Frame's plane sizes) with their
        // strides, borrowed for the duration of the call — libvpx copies them
        // (no lag: nothing is retained after the call returns).
        let code = unsafe { ffi::vpx_codec_encode(ctx, &image, ticks, duration, flags, ffi::VPX_DL_REALTIME) };
        check("vpx_codec_encode", code, ctx)?;
        out.data.clear();
        out.pts = pts;
        out.width = width;
        out.height = height;
        out.keyframe = false;
        let mut iter: ffi::vpx_codec_iter_t = std::ptr::null();
        loop {
            // SAFETY: live context; `iter` starts NULL and is only advanced by libvpx.
            let pkt = unsafe { ffi::vpx_codec_get_cx_data(ctx, &mut iter) };
            if pkt.is_null() {
                break;
            }
            // SAFETY: libvpx returns a valid packet that lives until the
            // next encode call; for CX_FRAME packets the `frame` member of
            // the union is the active one, and `buf`/`sz` describe its data.
            unsafe {
                if (*pkt).kind != ffi::VPX_CODEC_CX_FRAME_PKT {
                    continue;
                }
                let f = (*pkt).data.frame;
                out.data.extend_from_slice(std::slice::from_raw_parts(f.buf.cast::<u8>(), f.sz));
                out.keyframe |= f.flags & ffi::VPX_FRAME_IS_KEY != 0;
            }
        }
        if out.data.is_empty() {
            self.frames_skipped += 1;
            return Ok(EncodeOutcome::Skipped);
        }
        if out.keyframe {
            self.keyframe_requested = false;
        }
        Ok(EncodeOutcome::Encoded)
    }

    fn set_bitrate(&mut self, bitrate_bps: u32) -> Result<()> {
        check_bitrate(bitrate_bps)?;
        self.config.bitrate_bps = bitrate_bps;
        self.reconfigure()
    }

    fn set_fps(&mut self, fps: f32) -> Result<()> {
        check_fps(fps)?;
        // Each frame's duration tells libvpx's rate control the frame rate.
        self.config.fps = fps;
        Ok(())
    }

    fn request_keyframe(&mut self) {
        self.keyframe_requested = true;
    }

    fn name(&self) -> &'static str {
        match self.config.codec {
            VpxCodec::Vp8 => "libvpx-vp8",
            VpxCodec::Vp9 => "libvpx-vp9",
        }
    }

    fn codec(&self) -> Codec {
        self.config.codec.into()
    }
}

/// A decoded picture, borrowed from the decoder until its next call.
#[derive(Debug, Clone, Copy)]
pub struct DecodedPicture<'a> {
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// Luma, `y_stride * height` bytes.
    pub y: &'a [u8],
    /// Bytes per luma row.
    pub y_stride: usize,
    /// Cb plane.
    pub u: &'a [u8],
    /// Cr plane.
    pub v: &'a [u8],
    /// Bytes per chroma row.
    pub uv_stride: usize,
}

/// VP8/VP9 decoder on libvpx (for tests, tools and a future VP8 preview).
pub struct VpxDecoder {
    ctx: Box<ffi::vpx_codec_ctx_t>,
    codec: VpxCodec,
}

// SAFETY: as for `Session`: no thread affinity, used through `&mut self`.
unsafe impl Send for VpxDecoder {}

impl std::fmt::Debug for VpxDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VpxDecoder").field("codec", &self.codec).finish_non_exhaustive()
    }
}

impl Drop for VpxDecoder {
    fn drop(&mut self) {
        // SAFETY: initialised in `new`, destroyed once.
        unsafe { ffi::vpx_codec_destroy(&mut *self.ctx) };
    }
}

impl VpxDecoder {
    /// A decoder for `codec`, one thread.
    ///
    /// # Errors
    /// [`EncodeError::Vpx`] when libvpx cannot be set up.
    pub fn new(codec: VpxCodec) -> Result<Self> {
        layout_ok()?;
        // SAFETY: plain getters of static interface tables.
        let iface = unsafe {
            match codec {
                VpxCodec::Vp8 => ffi::vpx_codec_vp8_dx(),
                VpxCodec::Vp9 => ffi::vpx_codec_vp9_dx(),
            }
        };
        let cfg = ffi::vpx_codec_dec_cfg_t { threads: 1, w: 0, h: 0 };
        // SAFETY: all-zero is the state vpx_codec_dec_init_ver expects.
        let mut ctx: Box<ffi::vpx_codec_ctx_t> = Box::new(unsafe { std::mem::zeroed() });
        // SAFETY: valid boxed context; libvpx copies `cfg` during init.
        let code = unsafe { ffi::vpx_codec_dec_init_ver(&mut *ctx, iface, &cfg, 0, ffi::VPX_DECODER_ABI_VERSION) };
        if code != ffi::VPX_CODEC_OK {
            return Err(vpx_error("vpx_codec_dec_init_ver", code, None));
        }
        Ok(Self { ctx, codec })
    }

    /// Decodes one frame; `None` when libvpx shows nothing for it.
    ///
    /// # Errors
    /// [`EncodeError::Vpx`] for corrupt or undecodable data.
    pub fn decode(&mut self, data: &[u8]) -> Result<Option<DecodedPicture<'_>>> {
        let len = c_uint::try_from(data.len()).map_err(|_| EncodeError::Vpx {
            call: "vpx_codec_decode",
            code: -1,
            message: format!("{} bytes is too large for one frame", data.len()),
        })?;
        let ctx: *mut ffi::vpx_codec_ctx_t = &mut *self.ctx;
        // SAFETY: live decoder context; `data` is valid for `len` bytes
        // during the call (libvpx copies what it keeps).
        let code = unsafe { ffi::vpx_codec_decode(ctx, data.as_ptr(), len, std::ptr::null_mut(), 0) };
        check("vpx_codec_decode", code, ctx)?;
        let mut iter: ffi::vpx_codec_iter_t = std::ptr::null();
        // SAFETY: live context, iterator starts NULL.
        let img = unsafe { ffi::vpx_codec_get_frame(ctx, &mut iter) };
        if img.is_null() {
            return Ok(None);
        }
        // SAFETY: libvpx returned an 8-bit I420 image (VP8, VP9 profile 0)
        // that stays valid until the next decode call, which needs
        // `&mut self`, so the borrow below cannot outlive it. Plane sizes
        // follow from the strides and the display height.
        unsafe {
            let img = &*img;
            let (w, h) = (img.d_w as usize, img.d_h as usize);
            let (ys, uvs) = (img.stride[0] as usize, img.stride[1] as usize);
            let ch = h.div_ceil(2);
            Ok(Some(DecodedPicture {
                width: w,
                height: h,
                y: std::slice::from_raw_parts(img.planes[0], ys * h),
                y_stride: ys,
                u: std::slice::from_raw_parts(img.planes[1], uvs * ch),
                v: std::slice::from_raw_parts(img.planes[2], uvs * ch),
                uv_stride: uvs,
            }))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_is_validated() {
        let bad = |f: fn(&mut VpxConfig)| {
            let mut c = VpxConfig::default();
            f(&mut c);
            VpxEncoder::new(c).unwrap_err()
        };
        assert!(matches!(bad(|c| c.bitrate_bps = 0), EncodeError::InvalidBitrate { .. }));
        assert!(matches!(bad(|c| c.fps = 0.0), EncodeError::InvalidFrameRate { .. }));
        assert!(matches!(bad(|c| c.speed = 3), EncodeError::InvalidSetting { setting: "speed", .. }));
        assert!(matches!(
            bad(|c| {
                c.codec = VpxCodec::Vp9;
                c.speed = 10;
            }),
            EncodeError::InvalidSetting { setting: "speed", .. }
        ));
        assert!(matches!(bad(|c| c.quantizer_range = (40, 20)), EncodeError::InvalidSetting { .. }));
        assert!(matches!(bad(|c| c.quantizer_range = (0, 64)), EncodeError::InvalidSetting { .. }));
        assert!(matches!(bad(|c| c.threads = 0), EncodeError::InvalidSetting { .. }));
        VpxEncoder::new(VpxConfig::default()).unwrap();
        VpxEncoder::new(VpxConfig::for_codec(VpxCodec::Vp9)).unwrap();
    }

    #[test]
    fn empty_and_oversized_frames_are_errors() {
        let mut e = VpxEncoder::new(VpxConfig::default()).unwrap();
        let mut out = EncodedFrame::default();
        let r = e.encode(&I420Frame::new(0, 0), Duration::ZERO, &mut out);
        assert!(matches!(r, Err(EncodeError::EmptyFrame { .. })));
        let r = e.encode(&I420Frame::new(16_385, 2), Duration::ZERO, &mut out);
        assert!(matches!(r, Err(EncodeError::FrameTooLarge { .. })), "{r:?}");
    }

    #[test]
    fn garbage_is_a_decode_error_not_a_crash() {
        let mut d = VpxDecoder::new(VpxCodec::Vp8).unwrap();
        let err = d.decode(&[0xff; 64]).unwrap_err();
        assert!(err.to_string().contains("vpx_codec_decode"), "{err}");
        let mut d = VpxDecoder::new(VpxCodec::Vp9).unwrap();
        assert!(d.decode(&[0x00, 0x12, 0x34]).is_err());
    }

    #[test]
    fn version_is_reported() {
        assert!(libvpx_version().starts_with('v'), "{}", libvpx_version());
    }
}
