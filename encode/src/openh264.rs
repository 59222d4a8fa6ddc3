//! [`Encoder`] backed by Cisco's OpenH264 (built from source by the
//! `openh264` crate), producing constrained-baseline H.264 that browsers
//! decode.

use crate::budget::{KeyframeBudget, RateAdjuster};
use crate::convert::I420Frame;
use crate::encoder::{EncodeOutcome, EncodedFrame, Encoder};
use crate::error::{EncodeError, Result};
use openh264::encoder::{
    BitRate, Encoder as RawEncoder, EncoderConfig, FrameRate, FrameType, IntraFramePeriod, Profile, QpRange,
    RateControlMode, UsageType, VuiConfig,
};
use openh264::formats::YUVSource;
use openh264::{OpenH264API, Timestamp};
use openh264_sys2::{
    ENCODER_OPTION, ENCODER_OPTION_BITRATE, ENCODER_OPTION_FRAME_RATE, ENCODER_OPTION_MAX_BITRATE,
    ENCODER_OPTION_RC_MODE, ENCODER_OPTION_SVC_ENCODE_PARAM_EXT, ENCODER_OPTION_TRACE_CALLBACK,
    ENCODER_OPTION_TRACE_LEVEL, LAYER_NUM, RC_BITRATE_MODE, RC_OFF_MODE, RC_QUALITY_MODE, SBitrateInfo, SEncParamExt,
    SPATIAL_LAYER_0, SPATIAL_LAYER_ALL, WELS_LOG_ERROR, WELS_LOG_WARNING, WelsTraceCallback,
};
use std::ffi::{CStr, c_char, c_int, c_void};
use std::time::Duration;

mod adapt;
pub use adapt::REFINE_QP;

/// Longest side OpenH264 encodes (level 5.2).
pub const MAX_LONG_SIDE: u32 = 3840;
/// Shortest side OpenH264 encodes (level 5.2).
pub const MAX_SHORT_SIDE: u32 = 2160;
/// Lowest bitrate accepted by [`OpenH264Config`] and `set_bitrate`.
pub const MIN_BITRATE_BPS: u32 = 10_000;
/// Highest bitrate accepted (OpenH264 stores bitrates as `int`).
pub const MAX_BITRATE_BPS: u32 = i32::MAX as u32;

/// What the content looks like; selects OpenH264's tuning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Usage {
    /// `SCREEN_CONTENT_REAL_TIME`: screen-content tools, text-friendly.
    Screen,
    /// `CAMERA_VIDEO_REAL_TIME`: natural video.
    Camera,
}

/// OpenH264's speed/quality trade-off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Complexity {
    /// Fastest.
    Low,
    /// Balanced.
    Medium,
    /// Best compression, slowest.
    High,
}

/// How OpenH264's rate control spends bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RateControl {
    /// `RC_BITRATE_MODE`: aim at the target bitrate.
    Bitrate,
    /// `RC_QUALITY_MODE`: favour quality, bitrate as a guide.
    Quality,
}

/// Settings for [`OpenH264Encoder`].
///
/// The defaults (screen usage, high complexity, QP 12..=51, bitrate rate
/// control, no frame skipping, one thread, one slice) were chosen by
/// measuring speed and quality with `encode/examples/mode_table.rs`: synthetic
/// screen content (dark-theme text being typed, scrolled, or scrolled under a
/// moving box and gradient), 1920x1080 at 30 fps, 90 frames per run, release
/// build with nasm, on a 2-core machine that was also busy with other work
/// (hence CPU time of the encoding thread as well as wall time). The output is
/// decoded with OpenH264's decoder; "text PSNR-Y" counts the 16x16 blocks that
/// are not flat background, and a skipped frame is scored against the picture
/// the viewer still shows. Means over the three scenes:
///
/// | config | target | CPU ms/frame | wall p50 / p95 ms | achieved kbps | text PSNR-Y dB | skipped |
/// |---|---|---|---|---|---|---|
/// | screen, medium (OpenH264's QP 26..=35) | 2.5 Mbps | 15.0 | 15.2 / 22.0 | 943 | 43.53 | 0 |
/// | screen, low | 2.5 Mbps | 14.2 | 13.7 / 19.2 | 923 | 43.35 | 0 |
/// | screen, high | 2.5 Mbps | 14.7 | 15.0 / 21.5 | 922 | 43.86 | 0 |
/// | screen, medium, skip | 2.5 Mbps | 14.5 | 15.6 / 21.7 | 900 | 32.55 | 14 |
/// | screen, medium, QP 18..=40 | 2.5 Mbps | 15.0 | 15.4 / 23.1 | 1367 | 46.09 | 0 |
/// | screen, medium, QP 12..=42 | 2.5 Mbps | 15.4 | 16.2 / 24.3 | 1511 | 46.80 | 0 |
/// | screen, low, QP 12..=42 | 2.5 Mbps | 15.3 | 17.7 / 26.2 | 1503 | 47.40 | 0 |
/// | **screen, high, QP 12..=42 (default)** | 2.5 Mbps | 16.5 | 17.2 / 23.5 | 1476 | **48.81** | 0 |
/// | screen, medium, QP 12..=42, skip | 2.5 Mbps | 14.7 | 16.1 / 26.6 | 1500 | 33.41 | 14 |
/// | screen, medium, QP 12..=42, quality RC | 2.5 Mbps | 16.3 | 16.7 / 23.9 | 1530 | 46.05 | 0 |
/// | screen, medium, QP 12..=42, 2 threads | 2.5 Mbps | 16.6 | 17.3 / 28.2 | 1511 | 46.80 | 0 |
/// | screen, medium, QP 12..=42, 2 threads, 1200 B slices | 2.5 Mbps | 7.9¹ | 15.8 / 24.6 | 1557 | 45.51 | 0 |
/// | camera, low | 2.5 Mbps | 8.4 | 8.8 / 15.1 | 1642 | 44.71 | 0 |
/// | camera, medium | 2.5 Mbps | 8.5 | 8.6 / 13.5 | 1622 | 46.01 | 0 |
/// | camera, high | 2.5 Mbps | 9.4 | 9.4 / 15.7 | 1622 | 46.01 | 0 |
/// | camera, medium, skip | 2.5 Mbps | 8.8 | 9.5 / 13.8 | 1616 | 34.27 | 13 |
/// | camera, medium, 2 threads | 2.5 Mbps | 8.7 | 9.4 / 14.6 | 1622 | 46.01 | 0 |
/// | screen, medium (OpenH264's QP 26..=35) | 6 Mbps | 16.6 | 17.4 / 26.1 | 948 | 44.50 | 0 |
/// | screen, medium, QP 12..=42 | 6 Mbps | 17.7 | 20.5 / 28.1 | 2295 | 50.83 | 0 |
/// | **screen, high, QP 12..=42 (default)** | 6 Mbps | 16.3 | 16.6 / 26.6 | 2240 | **52.10** | 0 |
/// | camera, medium | 6 Mbps | 9.1 | 9.1 / 15.2 | 2721 | 50.96 | 0 |
/// | camera, high | 6 Mbps | 8.5 | 8.7 / 13.5 | 2721 | 50.96 | 0 |
///
/// ¹ CPU of the calling thread only; the slices run on OpenH264's workers.
///
/// What the numbers say:
/// - OpenH264 narrows screen mode's QP range to 26..=35 unless told
///   otherwise, so it cannot spend the budget (≈ 0.9 Mbps on average, 1.7 Mbps
///   on the moving scene, of a 2.5 or 6 Mbps target) and text stays soft. QP 12..=42 (camera mode's default range)
///   lets it use the bits: +3 to +6 dB. The remaining undershoot is content
///   that needs no more bits (typing costs ≈ 0.1 Mbps).
/// - At equal bitrate, screen mode renders text better than camera mode: on
///   the moving scene at 2.5 Mbps (both ≈ 2.5 Mbps achieved) 45.6 vs 43.1 dB;
///   on scrolling 45.1 dB at 1.8 Mbps vs 42.9 dB at 2.2 Mbps. It costs about
///   twice the CPU: ≈ 16 vs ≈ 8.5 ms per 1080p frame, i.e. half a core at
///   30 fps. At 3840x2160 it is ≈ 73 ms per frame (camera ≈ 34 ms): cap 4K
///   captures at ≈ 10 fps with [`Encoder::set_fps`] or use [`Usage::Camera`].
/// - High complexity is the best screen setting (+3.5 to +5.6 dB on typed
///   text, +0.1 to +0.2 dB on scrolling and moving content) at a CPU cost
///   within the noise; in camera mode it changes nothing.
/// - Frame skipping is harmful for screen sharing: during scrolling the rate
///   control drops frames, the viewer's picture freezes (11 dB on those
///   frames), and the bitrate is no closer to target.
/// - A second thread does nothing with one slice. Size-limited slices
///   (1200 B) on two threads cut wall time by ≈ 19 % on a quieter run (16.8
///   vs 20.8 ms) but cost up to 1.9 dB; available via `max_slice_bytes` and
///   `threads` where latency matters more than sharpness.
/// - The quality rate-control mode is 0.3–0.8 dB worse than bitrate mode.
/// - The table was measured with QP 12..=42. The default now allows up to 51:
///   at the 2.5–6 Mbps targets above the rate control does not reach 42, but
///   when congestion control asks for a few hundred kbps on busy content
///   (a 1 Mbit/s link, `app/tests/congestion.rs`) a ceiling of 42 made every
///   frame overshoot the target several times over.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OpenH264Config {
    /// Target bitrate in bits per second; change it at run time with
    /// [`Encoder::set_bitrate`].
    pub bitrate_bps: u32,
    /// Expected frame rate (OpenH264 clamps it to 1..=60); the rate control
    /// divides the bitrate by it. Change it with [`Encoder::set_fps`].
    pub fps: f32,
    /// Content type.
    pub usage: Usage,
    /// Speed/quality trade-off.
    pub complexity: Complexity,
    /// Frames between periodic IDRs; 0 means only the first frame, scene
    /// cuts and [`Encoder::request_keyframe`].
    pub keyframe_interval: u32,
    /// Let rate control drop frames to hold the bitrate.
    pub skip_frames: bool,
    /// Encoder threads; 0 lets OpenH264 decide (one per core).
    pub threads: u16,
    /// QP range (1..=51, lower is better quality). `None` keeps OpenH264's
    /// per-usage default: 26..=35 for screen, 12..=42 for camera.
    pub qp_range: Option<(u8, u8)>,
    /// Rate-control mode.
    pub rate_control: RateControl,
    /// Split pictures into slices of at most this many bytes (NAL units that
    /// fit one RTP packet; needed for packetization-mode 0). `None`: one slice.
    pub max_slice_bytes: Option<u32>,
    /// Keep requested keyframes within a budget (see [`crate::budget::KeyframeBudget`]):
    /// OpenH264's rate control gives an IDR of screen content a QP of at
    /// most 40 whatever the bitrate, hundreds of kilobytes at 1080p. With
    /// this on, a keyframe asked for with [`Encoder::request_keyframe`] is
    /// encoded with rate control off at the QP the budget's size model
    /// picks (up to 51), and the model learns from the size it got. The
    /// first keyframe of a session is OpenH264's own (it cannot be steered
    /// before the encoder is initialised).
    pub keyframe_budget: bool,
    /// Slices per picture, each encoded on its own thread (ignored with
    /// `max_slice_bytes`). 0: one per core beyond two, at most 4 — one slice
    /// on a 2-core machine.
    pub slices: u16,
    /// Use camera coding for motion (see [`crate::content`]): sessions
    /// started at a requested keyframe while the content moves use
    /// `CAMERA_VIDEO_REAL_TIME`, later ones `usage` again.
    pub adapt_usage: bool,
    /// Undo the rate control's undershoot (see [`crate::budget::RateAdjuster`]):
    /// in screen mode OpenH264 delivers 40–75 % of its target on busy
    /// content, which leaves a live share's link unused. With this on, the
    /// rate control is given the target times a measured gain (up to
    /// [`crate::budget::MAX_RATE_GAIN`]); keyframe budgets keep the real
    /// target. Off by default (a recording asks for what it asks for); live
    /// sharing turns it on.
    pub adjust_rate: bool,
}

impl Default for OpenH264Config {
    fn default() -> Self {
        Self {
            bitrate_bps: 2_500_000,
            fps: 30.0,
            usage: Usage::Screen,
            complexity: Complexity::High,
            keyframe_interval: 0,
            skip_frames: false,
            threads: 1,
            qp_range: Some((12, 51)),
            rate_control: RateControl::Bitrate,
            max_slice_bytes: None,
            keyframe_budget: true,
            slices: 0,
            adapt_usage: true,
            adjust_rate: false,
        }
    }
}

impl OpenH264Config {
    fn validate(&self) -> Result<()> {
        check_bitrate(self.bitrate_bps)?;
        check_fps(self.fps)?;
        if let Some((min, max)) = self.qp_range
            && !(1 <= min && min <= max && max <= 51)
        {
            return Err(EncodeError::InvalidQpRange { min, max });
        }
        Ok(())
    }

    fn to_openh264(self) -> EncoderConfig {
        let mut cfg = EncoderConfig::new()
            .usage_type(match self.usage {
                Usage::Screen => UsageType::ScreenContentRealTime,
                Usage::Camera => UsageType::CameraVideoRealTime,
            })
            .rate_control_mode(match self.rate_control {
                RateControl::Bitrate => RateControlMode::Bitrate,
                RateControl::Quality => RateControlMode::Quality,
            })
            .complexity(match self.complexity {
                Complexity::Low => openh264::encoder::Complexity::Low,
                Complexity::Medium => openh264::encoder::Complexity::Medium,
                Complexity::High => openh264::encoder::Complexity::High,
            })
            .bitrate(BitRate::from_bps(self.bitrate_bps))
            .max_frame_rate(FrameRate::from_hz(self.fps))
            .skip_frames(self.skip_frames)
            .intra_frame_period(IntraFramePeriod::from_num_frames(self.keyframe_interval))
            .num_threads(self.threads)
            // Baseline without FMO/ASO is constrained baseline: OpenH264 sets
            // constraint_set0 and constraint_set1 (profile-level-id 42c0xx).
            .profile(Profile::Baseline)
            // Matches `convert`: BT.709 matrix, limited range.
            .vui(VuiConfig::bt709());
        if self.usage == Usage::Screen {
            // OpenH264 turns these off for screen content anyway, with a warning.
            cfg = cfg.adaptive_quantization(false).background_detection(false);
        }
        if let Some((min, max)) = self.qp_range {
            cfg = cfg.qp(QpRange::new(min, max)); // validated: cannot panic
        }
        if let Some(bytes) = self.max_slice_bytes {
            cfg = cfg.max_slice_len(bytes);
        }
        cfg
    }
}

/// Checks a bitrate against the range every encoder accepts.
pub(crate) fn check_bitrate(bitrate_bps: u32) -> Result<()> {
    if (MIN_BITRATE_BPS..=MAX_BITRATE_BPS).contains(&bitrate_bps) {
        Ok(())
    } else {
        Err(EncodeError::InvalidBitrate { bitrate_bps, min_bps: MIN_BITRATE_BPS, max_bps: MAX_BITRATE_BPS })
    }
}

/// Checks a frame rate is positive and finite.
pub(crate) fn check_fps(fps: f32) -> Result<()> {
    if fps.is_finite() && fps > 0.0 { Ok(()) } else { Err(EncodeError::InvalidFrameRate { fps }) }
}

/// The encoder proper plus the coded size it was initialised for.
struct Session {
    encoder: RawEncoder,
    width: u32,
    height: u32,
    /// Usage type the session was created with (it cannot change).
    usage: Usage,
    /// OpenH264 initialises lazily on the first `encode_at`; run-time options
    /// may only be set after that.
    initialised: bool,
    /// The `iDLayerQp` last set for budgeted keyframes.
    keyframe_qp: Option<u8>,
}

/// H.264 encoder using OpenH264. See [`OpenH264Config`] for the settings.
///
/// - Output is constrained baseline with a BT.709 limited-range VUI, Annex-B.
/// - Odd sizes are encoded at the coded (even) size of the [`I420Frame`],
///   whose padding repeats the edge. OpenH264 refuses pictures under 16x16,
///   so smaller frames are copied into a 16-pixel minimum, repeating the
///   edge. [`EncodedFrame::width`]/`height` give the size decoders will see.
/// - Frames whose coded size exceeds 3840x2160 (or 2160x3840) are rejected
///   with [`EncodeError::FrameTooLarge`].
/// - A change of frame size starts a fresh OpenH264 session (built with the
///   current bitrate and frame rate), so the first frame at the new size is
///   an IDR with new SPS/PPS.
pub struct OpenH264Encoder {
    /// Current settings, including run-time bitrate and frame-rate changes.
    config: OpenH264Config,
    session: Option<Session>,
    /// Frames under 16x16 are copied here, enlarged, first.
    padded: I420Frame,
    keyframe_requested: bool,
    frames_skipped: u64,
    /// Size model for budgeted keyframes.
    keyframe_budget: KeyframeBudget,
    /// QP of the last budgeted keyframe (for stats and tests).
    last_keyframe_qp: Option<u8>,
    /// Content-class adaptation (see `adapt`).
    adapt: adapt::Adaptation,
    /// Undershoot compensation (with [`OpenH264Config::adjust_rate`]).
    adjuster: RateAdjuster,
    /// The bitrate the rate control was last given (target × gain).
    rc_bitrate_bps: u32,
}

impl std::fmt::Debug for OpenH264Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenH264Encoder")
            .field("config", &self.config)
            .field("coded_size", &self.session.as_ref().map(|s| (s.width, s.height)))
            .field("keyframe_requested", &self.keyframe_requested)
            .field("frames_skipped", &self.frames_skipped)
            .finish()
    }
}

impl OpenH264Encoder {
    /// Checks `config`; OpenH264 itself is set up on the first frame, when
    /// the size is known.
    ///
    /// # Errors
    /// [`EncodeError::InvalidBitrate`], [`EncodeError::InvalidFrameRate`],
    /// [`EncodeError::InvalidQpRange`].
    pub fn new(config: OpenH264Config) -> Result<Self> {
        config.validate()?;
        Ok(Self {
            config,
            session: None,
            padded: I420Frame::new(0, 0),
            keyframe_requested: false,
            frames_skipped: 0,
            keyframe_budget: KeyframeBudget::new(),
            last_keyframe_qp: None,
            adapt: adapt::Adaptation::default(),
            adjuster: RateAdjuster::new(),
            rc_bitrate_bps: config.bitrate_bps,
        })
    }

    /// Gives the rate control `bitrate_bps` (an initialised session's; a new
    /// session starts at the target).
    fn set_rc_bitrate(&mut self, bitrate_bps: u32) -> Result<()> {
        let bitrate_bps = bitrate_bps.clamp(MIN_BITRATE_BPS, MAX_BITRATE_BPS);
        if let Some(session) = &mut self.session
            && session.initialised
            && bitrate_bps != self.rc_bitrate_bps
        {
            let encoder = &mut session.encoder;
            // OpenH264 rejects a target above the layer's maximum, which
            // the crate set equal to the initial target: raise the
            // maximum first, or lower the target first.
            let set_max = |encoder: &mut RawEncoder| {
                set_bitrate_option(
                    encoder,
                    ENCODER_OPTION_MAX_BITRATE,
                    "SetOption(ENCODER_OPTION_MAX_BITRATE)",
                    SPATIAL_LAYER_0,
                    bitrate_bps,
                )
            };
            let set_target = |encoder: &mut RawEncoder| {
                set_bitrate_option(
                    encoder,
                    ENCODER_OPTION_BITRATE,
                    "SetOption(ENCODER_OPTION_BITRATE)",
                    SPATIAL_LAYER_ALL,
                    bitrate_bps,
                )
            };
            if bitrate_bps > self.rc_bitrate_bps {
                set_max(encoder)?;
                set_target(encoder)?;
            } else {
                set_target(encoder)?;
                set_max(encoder)?;
            }
        }
        self.rc_bitrate_bps = bitrate_bps;
        Ok(())
    }

    /// The current settings (with run-time bitrate and frame-rate changes).
    pub fn config(&self) -> &OpenH264Config {
        &self.config
    }

    /// Frames rate control skipped so far.
    pub fn frames_skipped(&self) -> u64 {
        self.frames_skipped
    }

    /// The QP the last budgeted keyframe was encoded at.
    pub fn last_keyframe_qp(&self) -> Option<u8> {
        self.last_keyframe_qp
    }

    /// Before a requested keyframe: switches rate control off at the QP the
    /// keyframe budget picks for this picture size, bitrate and frame rate.
    /// Returns the QP (then [`Self::end_budgeted_keyframe`] must follow the encode).
    fn begin_budgeted_keyframe(
        config: &OpenH264Config,
        budget: &KeyframeBudget,
        session: &mut Session,
        pixels: u32,
    ) -> Result<Option<u8>> {
        if !config.keyframe_budget || !session.initialised {
            return Ok(None);
        }
        let qp = budget.qp_for(config.bitrate_bps, config.fps, pixels);
        if session.keyframe_qp != Some(qp) {
            set_layer_qp(&mut session.encoder, qp)?;
            session.keyframe_qp = Some(qp);
        }
        let mut mode: c_int = RC_OFF_MODE;
        // SAFETY: ENCODER_OPTION_RC_MODE reads an `int`; the session is initialised.
        unsafe {
            set_option(&mut session.encoder, ENCODER_OPTION_RC_MODE, "SetOption(ENCODER_OPTION_RC_MODE)", &mut mode)?
        };
        Ok(Some(qp))
    }

    /// After a budgeted keyframe: restores the rate control and teaches the
    /// size model what the keyframe cost.
    fn end_budgeted_keyframe(
        config: &OpenH264Config,
        budget: &mut KeyframeBudget,
        session: &mut Session,
        (qp, bytes, pixels): (u8, usize, u32),
    ) -> Result<()> {
        let mut mode: c_int = match config.rate_control {
            RateControl::Bitrate => RC_BITRATE_MODE,
            RateControl::Quality => RC_QUALITY_MODE,
        };
        // SAFETY: as above.
        unsafe {
            set_option(&mut session.encoder, ENCODER_OPTION_RC_MODE, "SetOption(ENCODER_OPTION_RC_MODE)", &mut mode)?
        };
        budget.on_keyframe(qp, bytes, pixels);
        Ok(())
    }

    /// Whether a frame of this (coded) size can be encoded.
    fn check_size(frame: &I420Frame) -> Result<()> {
        let (width, height) = (frame.width(), frame.height());
        if width == 0 || height == 0 {
            return Err(EncodeError::EmptyFrame { width, height });
        }
        let (cw, ch) = (frame.coded_width(), frame.coded_height());
        if cw.max(ch) > MAX_LONG_SIDE || cw.min(ch) > MAX_SHORT_SIDE {
            return Err(EncodeError::FrameTooLarge {
                width,
                height,
                max_long_side: MAX_LONG_SIDE,
                max_short_side: MAX_SHORT_SIDE,
            });
        }
        Ok(())
    }

    fn start_session(&self, width: u32, height: u32) -> Result<Session> {
        let config = self.adapted_config();
        let mut encoder = RawEncoder::with_api_config(OpenH264API::from_source(), config.to_openh264())
            .map_err(|source| EncodeError::OpenH264 { operation: "WelsCreateSVCEncoder", source })?;
        let mut callback: WelsTraceCallback = Some(log_to_tracing);
        // SAFETY: ENCODER_OPTION_TRACE_CALLBACK reads a `WelsTraceCallback`
        // and is allowed before initialisation; `log_to_tracing` is a
        // `'static` function that needs no context.
        unsafe {
            set_option(
                &mut encoder,
                ENCODER_OPTION_TRACE_CALLBACK,
                "SetOption(ENCODER_OPTION_TRACE_CALLBACK)",
                &mut callback,
            )?;
        }
        tracing::debug!(width, height, ?config, "starting OpenH264 session");
        let mut session =
            Session { encoder, width, height, usage: config.usage, initialised: false, keyframe_qp: None };
        self.prepare_session(&mut session)?;
        Ok(session)
    }
}

/// Calls `ISVCEncoder::SetOption(option, value)`.
///
/// # Safety
/// `T` must be the type OpenH264 reads through the pointer for `option`
/// (codec_app_def.h / welsEncoderExt.cpp), and unless `option` is one of the
/// trace options, the encoder must have been initialised (first frame
/// encoded): OpenH264 refuses other options before that.
unsafe fn set_option<T>(
    encoder: &mut RawEncoder,
    option: ENCODER_OPTION,
    call: &'static str,
    value: &mut T,
) -> Result<()> {
    // SAFETY: `raw_api` is unsafe because changing parameters the crate relies
    // on (picture size, input format) would break it. We only set rate-control
    // targets (bitrate, max bitrate, frame rate) and logging, which OpenH264
    // documents as run-time options and the crate neither caches nor uses.
    let raw = unsafe { encoder.raw_api() };
    // SAFETY: the caller guarantees `T` is what OpenH264 reads for `option`;
    // `value` is a live exclusive borrow, and OpenH264 only reads it during
    // the call (it copies the value into its own parameters).
    let code = unsafe { raw.set_option(option, std::ptr::from_mut(value).cast()) };
    if code == 0 { Ok(()) } else { Err(EncodeError::Native { call, code }) }
}

fn set_bitrate_option(
    encoder: &mut RawEncoder,
    option: ENCODER_OPTION,
    call: &'static str,
    layer: LAYER_NUM,
    bitrate_bps: u32,
) -> Result<()> {
    let mut info = SBitrateInfo {
        iLayer: layer,
        // Checked against MAX_BITRATE_BPS (= i32::MAX) by the callers.
        iBitrate: bitrate_bps as i32,
    };
    // SAFETY: ENCODER_OPTION_BITRATE and _MAX_BITRATE read an `SBitrateInfo`;
    // callers only get here for an initialised session.
    unsafe { set_option(encoder, option, call, &mut info) }
}

/// Sets the fixed QP rate control uses when it is off (`iDLayerQp` of the
/// spatial layer), by reading the encoder's parameters and writing them back
/// with that one field changed. OpenH264 takes the non-resetting path for
/// such a change (no new IDR, no new SPS/PPS): `WelsEncoderParamAdjust`
/// resets only for size, slice, frame-rate or profile changes, and copies
/// `iDLayerQp` otherwise.
fn set_layer_qp(encoder: &mut RawEncoder, qp: u8) -> Result<()> {
    let mut params = SEncParamExt::default();
    // SAFETY: `raw_api` is unsafe because changing what the crate relies on
    // (picture size, input format) would break it; we write back the
    // encoder's own parameters with only the fixed QP changed.
    let raw = unsafe { encoder.raw_api() };
    // SAFETY: ENCODER_OPTION_SVC_ENCODE_PARAM_EXT writes an `SEncParamExt`
    // (GetOption memcpys `sizeof(SEncParamExt)` of its parameters into it);
    // `params` is a live exclusive borrow of that type.
    let code = unsafe { raw.get_option(ENCODER_OPTION_SVC_ENCODE_PARAM_EXT, std::ptr::from_mut(&mut params).cast()) };
    if code != 0 {
        return Err(EncodeError::Native { call: "GetOption(ENCODER_OPTION_SVC_ENCODE_PARAM_EXT)", code });
    }
    params.sSpatialLayers[0].iDLayerQp = c_int::from(qp);
    // SAFETY: ENCODER_OPTION_SVC_ENCODE_PARAM_EXT reads an `SEncParamExt`;
    // the encoder is initialised (callers check).
    unsafe {
        set_option(
            encoder,
            ENCODER_OPTION_SVC_ENCODE_PARAM_EXT,
            "SetOption(ENCODER_OPTION_SVC_ENCODE_PARAM_EXT)",
            &mut params,
        )
    }
}

/// Forwards OpenH264's log lines to `tracing` (it would print to stderr).
unsafe extern "C" fn log_to_tracing(_ctx: *mut c_void, level: c_int, message: *const c_char) {
    if message.is_null() {
        return;
    }
    // SAFETY: OpenH264 passes a NUL-terminated string that lives for the
    // duration of the call (a stack buffer, welsCodecTrace::CodecTrace).
    let message = unsafe { CStr::from_ptr(message) }.to_string_lossy();
    let message = message.trim_end();
    if level <= WELS_LOG_ERROR as c_int {
        tracing::warn!(target: "openh264", "{message}");
    } else if level <= WELS_LOG_WARNING as c_int {
        tracing::debug!(target: "openh264", "{message}");
    } else {
        tracing::trace!(target: "openh264", "{message}");
    }
}

/// OpenH264 refuses pictures narrower or shorter than this many pixels.
const MIN_SIDE: u32 = 16;

/// Copies `src` into `dst`, at least [`MIN_SIDE`] pixels each way, repeating
/// the last column and row into the added area.
fn pad_to_min_size(src: &I420Frame, dst: &mut I420Frame) {
    let (w, h) = (src.coded_width().max(MIN_SIDE), src.coded_height().max(MIN_SIDE));
    dst.resize(w, h);
    let (y_stride, uv_stride) = (dst.y_stride(), dst.uv_stride());
    let (y, u, v) = dst.planes_mut();
    let luma = (src.coded_width(), src.coded_height());
    let chroma = (src.chroma_width(), src.chroma_height());
    copy_replicating(src.y(), src.y_stride(), luma, y, y_stride, (w, h));
    copy_replicating(src.u(), src.uv_stride(), chroma, u, uv_stride, (w / 2, h / 2));
    copy_replicating(src.v(), src.uv_stride(), chroma, v, uv_stride, (w / 2, h / 2));
}

fn copy_replicating(
    src: &[u8],
    src_stride: usize,
    (src_w, src_h): (u32, u32),
    dst: &mut [u8],
    dst_stride: usize,
    (dst_w, dst_h): (u32, u32),
) {
    let (src_w, src_h) = (src_w as usize, src_h as usize);
    for (row, out) in dst.chunks_exact_mut(dst_stride).take(dst_h as usize).enumerate() {
        let line = &src[row.min(src_h - 1) * src_stride..][..src_w];
        let out = &mut out[..dst_w as usize];
        out[..src_w].copy_from_slice(line);
        out[src_w..].fill(line[src_w - 1]);
    }
}

/// Lends an [`I420Frame`]'s planes to OpenH264 at the frame's coded size.
struct Planes<'a>(&'a I420Frame);

impl YUVSource for Planes<'_> {
    fn dimensions(&self) -> (usize, usize) {
        (self.0.coded_width() as usize, self.0.coded_height() as usize)
    }

    fn strides(&self) -> (usize, usize, usize) {
        (self.0.y_stride(), self.0.uv_stride(), self.0.uv_stride())
    }

    fn y(&self) -> &[u8] {
        self.0.y()
    }

    fn u(&self) -> &[u8] {
        self.0.u()
    }

    fn v(&self) -> &[u8] {
        self.0.v()
    }
}

impl Encoder for OpenH264Encoder {
    fn encode(&mut self, frame: &I420Frame, pts: Duration, out: &mut EncodedFrame) -> Result<EncodeOutcome> {
        Self::check_size(frame)?;
        let frame = if frame.coded_width() < MIN_SIDE || frame.coded_height() < MIN_SIDE {
            pad_to_min_size(frame, &mut self.padded);
            &self.padded
        } else {
            frame
        };
        let (width, height) = (frame.coded_width(), frame.coded_height());
        if !matches!(&self.session, Some(s) if (s.width, s.height) == (width, height)) {
            // New size (or first frame): a fresh session starts with an IDR
            // and SPS/PPS for the new size, at the current bitrate and fps
            // (the target itself: the adjuster measures the new picture afresh).
            self.session = Some(self.start_session(width, height)?);
            self.adjuster = RateAdjuster::new();
            self.rc_bitrate_bps = self.config.bitrate_bps;
        }
        if self.keyframe_requested && self.usage_switch_due() {
            // The content class wants the other usage type: the requested
            // keyframe comes from a new session of that type (at the target
            // itself; the next bitrate change re-applies the gain).
            self.session = Some(self.start_session(width, height)?);
            self.rc_bitrate_bps = self.config.bitrate_bps;
        }
        let session = self.session.as_mut().expect("session started above");
        let first_frame = !session.initialised;
        let keyframe_qp = if self.keyframe_requested && !first_frame {
            Self::begin_budgeted_keyframe(&self.config, &self.keyframe_budget, session, width * height)?
        } else {
            None
        };
        if self.keyframe_requested && !first_frame {
            session.encoder.force_intra_frame();
        }
        // OpenH264 takes milliseconds as a signed 64-bit number.
        let pts_ms = u64::try_from(pts.as_millis()).unwrap_or(u64::MAX).min(i64::MAX as u64);
        let stream = session
            .encoder
            .encode_at(&Planes(frame), Timestamp::from_millis(pts_ms))
            .map_err(|source| EncodeError::OpenH264 { operation: "EncodeFrame", source })?;

        out.data.clear();
        out.pts = pts;
        out.width = width;
        out.height = height;
        let frame_type = stream.frame_type();
        let native_type = stream.raw_info().eFrameType;
        if !matches!(frame_type, FrameType::Skip | FrameType::Invalid) {
            stream.write_vec(&mut out.data);
        }
        out.keyframe = frame_type == FrameType::IDR;
        if let Some(qp) = keyframe_qp {
            let bytes = if out.keyframe { out.data.len() } else { 0 };
            Self::end_budgeted_keyframe(&self.config, &mut self.keyframe_budget, session, (qp, bytes, width * height))?;
            if bytes > 0 {
                self.last_keyframe_qp = Some(qp);
            }
        }

        if first_frame {
            session.initialised = true;
            // The crate silences OpenH264 after initialising it; keep errors.
            let mut level: c_int = WELS_LOG_ERROR as c_int;
            // SAFETY: ENCODER_OPTION_TRACE_LEVEL reads an `int`.
            unsafe {
                set_option(
                    &mut session.encoder,
                    ENCODER_OPTION_TRACE_LEVEL,
                    "SetOption(ENCODER_OPTION_TRACE_LEVEL)",
                    &mut level,
                )?;
            }
        }
        match frame_type {
            FrameType::Skip => {
                self.frames_skipped += 1;
                tracing::trace!(?pts, "frame skipped by rate control");
                Ok(EncodeOutcome::Skipped)
            }
            FrameType::Invalid => Err(EncodeError::Native { call: "EncodeFrame (frame type)", code: native_type }),
            _ => {
                if out.keyframe {
                    self.keyframe_requested = false;
                }
                if self.config.adjust_rate
                    && let Some(gain) = self.adjuster.on_frame(
                        pts,
                        out.data.len(),
                        out.keyframe,
                        self.config.bitrate_bps,
                        self.config.fps,
                    )
                {
                    tracing::debug!(gain, target = self.config.bitrate_bps, "rate-control gain");
                    self.set_rc_bitrate(self.adjuster.adjusted_bps(self.config.bitrate_bps))?;
                }
                Ok(EncodeOutcome::Encoded)
            }
        }
    }

    fn rate_gain(&self) -> f64 {
        self.adjuster.gain()
    }

    fn set_bitrate(&mut self, bitrate_bps: u32) -> Result<()> {
        check_bitrate(bitrate_bps)?;
        if self.session.as_ref().is_some_and(|s| !s.initialised) {
            // Not initialised yet: the next session picks the value up.
            self.session = None;
        }
        self.config.bitrate_bps = bitrate_bps;
        self.set_rc_bitrate(self.adjuster.adjusted_bps(bitrate_bps))
    }

    fn set_fps(&mut self, fps: f32) -> Result<()> {
        check_fps(fps)?;
        match &mut self.session {
            Some(session) if session.initialised => {
                let mut value: f32 = fps;
                // SAFETY: ENCODER_OPTION_FRAME_RATE reads a `float`; the
                // session is initialised.
                unsafe {
                    set_option(
                        &mut session.encoder,
                        ENCODER_OPTION_FRAME_RATE,
                        "SetOption(ENCODER_OPTION_FRAME_RATE)",
                        &mut value,
                    )?;
                }
            }
            Some(_) => self.session = None,
            None => {}
        }
        self.config.fps = fps;
        Ok(())
    }

    fn request_keyframe(&mut self) {
        self.keyframe_requested = true;
    }

    fn set_content(&mut self, class: crate::content::ContentClass) -> Result<()> {
        self.apply_content(class)
    }

    fn refine(&mut self, frame: &I420Frame, pts: Duration, out: &mut EncodedFrame) -> Result<EncodeOutcome> {
        self.refine_frame(frame, pts, out)
    }

    fn name(&self) -> &'static str {
        "openh264"
    }

    fn codec(&self) -> crate::encoder::Codec {
        crate::encoder::Codec::H264
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_is_validated() {
        let bad = |f: fn(&mut OpenH264Config)| {
            let mut c = OpenH264Config::default();
            f(&mut c);
            OpenH264Encoder::new(c).unwrap_err()
        };
        assert!(matches!(bad(|c| c.bitrate_bps = 0), EncodeError::InvalidBitrate { .. }));
        assert!(matches!(bad(|c| c.fps = f32::NAN), EncodeError::InvalidFrameRate { .. }));
        assert!(matches!(bad(|c| c.qp_range = Some((0, 40))), EncodeError::InvalidQpRange { .. }));
        assert!(matches!(bad(|c| c.qp_range = Some((30, 20))), EncodeError::InvalidQpRange { .. }));
        assert!(matches!(bad(|c| c.qp_range = Some((10, 52))), EncodeError::InvalidQpRange { .. }));
        OpenH264Encoder::new(OpenH264Config::default()).unwrap();
    }

    #[test]
    fn runtime_setters_validate_before_touching_the_encoder() {
        let mut e = OpenH264Encoder::new(OpenH264Config::default()).unwrap();
        assert!(e.set_bitrate(5).is_err());
        assert!(e.set_fps(0.0).is_err());
        e.set_bitrate(1_000_000).unwrap();
        e.set_fps(15.0).unwrap();
        assert_eq!(e.config().bitrate_bps, 1_000_000);
        assert_eq!(e.config().fps, 15.0);
    }

    #[test]
    fn empty_and_oversized_frames_are_errors() {
        let mut e = OpenH264Encoder::new(OpenH264Config::default()).unwrap();
        let mut out = EncodedFrame::default();
        let r = e.encode(&I420Frame::new(0, 0), Duration::ZERO, &mut out);
        assert!(matches!(r, Err(EncodeError::EmptyFrame { .. })));
        for (w, h) in [(3841, 16), (16, 3841), (2162, 2162)] {
            let r = e.encode(&I420Frame::new(w, h), Duration::ZERO, &mut out);
            assert!(matches!(r, Err(EncodeError::FrameTooLarge { .. })), "{w}x{h}: {r:?}");
        }
    }
}
