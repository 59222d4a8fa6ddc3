//! Run-time adaptation of an OpenH264 session through the raw API (kept
//! apart from the rate-control code): content class → complexity and usage
//! type, paint-over refinement frames, and several slices/threads.
//!
//! Measured (OpenH264 2.7, the bundled source; tests below):
//! - **Usage type cannot change in a running session.** Setting
//!   `ENCODER_OPTION_SVC_ENCODE_PARAM_EXT` with another `iUsageType` fails
//!   (`WelsEncoderParamAdjust`: "does not expect in-middle change of
//!   iUsgaeType"). Switching between screen and camera coding therefore
//!   needs a new session, whose first frame is an IDR. Peep switches only at
//!   IDRs that happen anyway (keyframe requests: viewers joining or
//!   recovering), so adaptation never adds a keyframe.
//! - **Complexity changes at once**, without an IDR
//!   (`ENCODER_OPTION_COMPLEXITY`): low for motion, the configured one for
//!   text.
//! - **QP limits cannot change in a running session** (the non-reset path of
//!   `WelsEncoderParamAdjust` ignores `iMinQp`/`iMaxQp`), but the rate-control
//!   mode can (`ENCODER_OPTION_RC_MODE`), and with rate control off the
//!   frame QP is the layer's `iDLayerQp`, which does change. A refinement
//!   frame is one frame encoded with rate control off at
//!   [`REFINE_QP`], then bitrate mode again.
//! - **Slices**: the `openh264` crate always configures one slice. A session
//!   that should use several is initialised by the crate with a throwaway
//!   grey frame, then reconfigured (fixed slice count, one thread per slice),
//!   which resets it: its first real frame is the IDR, with the new
//!   parameter sets. No extra IDR reaches the stream.

use std::ffi::c_int;
use std::time::Duration;

use openh264_sys2::{
    ENCODER_OPTION_COMPLEXITY, ENCODER_OPTION_RC_MODE, ENCODER_OPTION_SVC_ENCODE_PARAM_EXT, ENCODER_OPTION_TRACE_LEVEL,
    HIGH_COMPLEXITY, LOW_COMPLEXITY, MEDIUM_COMPLEXITY, RC_BITRATE_MODE, RC_OFF_MODE, RC_QUALITY_MODE, SEncParamExt,
    SM_FIXEDSLCNUM_SLICE, WELS_LOG_ERROR,
};

use super::{
    Complexity, OpenH264Config, OpenH264Encoder, Planes, RateControl, RawEncoder, Session, Timestamp, Usage, set_option,
};
use crate::content::ContentClass;
use crate::convert::I420Frame;
use crate::encoder::{EncodeOutcome, EncodedFrame, Encoder};
use crate::error::{EncodeError, Result};

/// QP of a paint-over refinement frame (text reaches ≈ 48 dB at 1080p; see
/// `encode/examples/mode_table.rs`).
pub const REFINE_QP: c_int = 20;

/// The adaptation state of an [`OpenH264Encoder`].
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Adaptation {
    class: ContentClass,
}

impl OpenH264Encoder {
    /// The usage type and complexity a session should use now.
    pub(super) fn adapted_config(&self) -> OpenH264Config {
        let motion = self.adapt.class == ContentClass::Motion;
        OpenH264Config {
            usage: if motion && self.config.adapt_usage { Usage::Camera } else { self.config.usage },
            complexity: if motion { Complexity::Low } else { self.config.complexity },
            ..self.config
        }
    }

    /// The usage type of the running session, if any.
    pub fn session_usage(&self) -> Option<Usage> {
        self.session.as_ref().map(|s| s.usage)
    }

    /// Slices per picture for new sessions: the configured count, or with
    /// 0 one per core beyond two (at most 4); one slice on ≤ 2 cores, where
    /// a second thread measured no faster.
    pub fn slices(&self) -> u16 {
        match self.config.slices {
            0 => {
                let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
                if cores > 2 { cores.min(4) as u16 } else { 1 }
            }
            n => n,
        }
    }

    /// Whether the content class wants another usage type than the running
    /// session's: then a keyframe about to be forced should come from a new
    /// session of the right type instead.
    pub(super) fn usage_switch_due(&self) -> bool {
        let wanted = self.adapted_config().usage;
        match &self.session {
            Some(s) if s.initialised && s.usage != wanted => {
                tracing::debug!(from = ?s.usage, to = ?wanted, "switching usage type at a requested keyframe");
                true
            }
            _ => false,
        }
    }

    /// Applies the content class to the running session (complexity) and
    /// remembers it for the next one (usage type).
    pub(super) fn apply_content(&mut self, class: ContentClass) -> Result<()> {
        if class == self.adapt.class {
            return Ok(());
        }
        self.adapt.class = class;
        let complexity = self.adapted_config().complexity;
        if let Some(session) = self.session.as_mut().filter(|s| s.initialised) {
            let mut value: c_int = complexity_to_c(complexity);
            // SAFETY: ENCODER_OPTION_COMPLEXITY reads an `int`
            // (welsEncoderExt.cpp); the session is initialised.
            unsafe {
                set_option(
                    &mut session.encoder,
                    ENCODER_OPTION_COMPLEXITY,
                    "SetOption(ENCODER_OPTION_COMPLEXITY)",
                    &mut value,
                )?;
            }
        }
        Ok(())
    }

    /// Prepares a fresh session: with several slices, initialises it with a
    /// throwaway frame and reconfigures it (see the module docs).
    pub(super) fn prepare_session(&self, session: &mut Session) -> Result<()> {
        let slices = self.slices();
        if slices <= 1 {
            return Ok(());
        }
        let mut grey = I420Frame::new(session.width, session.height);
        {
            let (y, u, v) = grey.planes_mut();
            y.fill(128);
            u.fill(128);
            v.fill(128);
        }
        session
            .encoder
            .encode_at(&Planes(&grey), Timestamp::from_millis(0))
            .map_err(|source| EncodeError::OpenH264 { operation: "EncodeFrame (slice set-up)", source })?;
        // As after a first frame in `encode`: the crate silenced OpenH264; keep errors.
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
        let mut params = get_params(&mut session.encoder)?;
        params.iMultipleThreadIdc = slices;
        params.sSpatialLayers[0].sSliceArgument.uiSliceMode = SM_FIXEDSLCNUM_SLICE;
        params.sSpatialLayers[0].sSliceArgument.uiSliceNum = u32::from(slices);
        // SAFETY: PARAM_EXT reads an `SEncParamExt`, read back from this very
        // session a moment ago; the session is initialised.
        unsafe {
            set_option(
                &mut session.encoder,
                ENCODER_OPTION_SVC_ENCODE_PARAM_EXT,
                "SetOption(ENCODER_OPTION_SVC_ENCODE_PARAM_EXT, slices)",
                &mut params,
            )?;
        }
        session.initialised = true;
        Ok(())
    }

    /// Encodes `frame` once with rate control off at [`REFINE_QP`] — a
    /// refinement of the picture last sent (paint-over) — then returns to the
    /// configured rate control. Skipped when no session of this size runs.
    pub(super) fn refine_frame(
        &mut self,
        frame: &I420Frame,
        pts: Duration,
        out: &mut EncodedFrame,
    ) -> Result<EncodeOutcome> {
        let size = (frame.coded_width(), frame.coded_height());
        let Some(session) = self.session.as_mut().filter(|s| s.initialised && (s.width, s.height) == size) else {
            return Ok(EncodeOutcome::Skipped);
        };
        let mut params = get_params(&mut session.encoder)?;
        params.sSpatialLayers[0].iDLayerQp = REFINE_QP;
        // The best mode decisions for this one frame, whatever motion chose.
        params.iComplexityMode = HIGH_COMPLEXITY;
        set_rc(&mut session.encoder, &mut params, RC_OFF_MODE)?;
        let encoded = self.encode(frame, pts, out);
        let complexity = complexity_to_c(self.adapted_config().complexity);
        let restore = match self.session.as_mut() {
            Some(session) if (session.width, session.height) == size => {
                let mut params = get_params(&mut session.encoder)?;
                params.iComplexityMode = complexity;
                let mode = match self.config.rate_control {
                    RateControl::Bitrate => RC_BITRATE_MODE,
                    RateControl::Quality => RC_QUALITY_MODE,
                };
                set_rc(&mut session.encoder, &mut params, mode)
            }
            _ => Ok(()),
        };
        let outcome = encoded?;
        restore?;
        Ok(outcome)
    }
}

fn complexity_to_c(c: Complexity) -> c_int {
    (match c {
        Complexity::Low => LOW_COMPLEXITY,
        Complexity::Medium => MEDIUM_COMPLEXITY,
        Complexity::High => HIGH_COMPLEXITY,
    }) as c_int
}

/// Reads the session's current parameters.
fn get_params(encoder: &mut RawEncoder) -> Result<SEncParamExt> {
    let mut params = SEncParamExt::default();
    // SAFETY: `raw_api` only exposes the vtable; GetOption(PARAM_EXT) copies
    // the session's `SEncParamExt` (the start of its internal parameter
    // struct) into ours, which is large enough (welsEncoderExt.cpp).
    let code = unsafe {
        encoder.raw_api().get_option(ENCODER_OPTION_SVC_ENCODE_PARAM_EXT, std::ptr::from_mut(&mut params).cast())
    };
    if code == 0 {
        Ok(params)
    } else {
        Err(EncodeError::Native { call: "GetOption(ENCODER_OPTION_SVC_ENCODE_PARAM_EXT)", code })
    }
}

/// Writes `params` (for `iDLayerQp`) and switches the rate-control mode.
fn set_rc(encoder: &mut RawEncoder, params: &mut SEncParamExt, mode: c_int) -> Result<()> {
    // SAFETY: PARAM_EXT reads an `SEncParamExt` (read from this session);
    // RC_MODE reads an `int`; the session is initialised.
    unsafe {
        set_option(
            encoder,
            ENCODER_OPTION_SVC_ENCODE_PARAM_EXT,
            "SetOption(ENCODER_OPTION_SVC_ENCODE_PARAM_EXT)",
            params,
        )?;
        let mut mode = mode;
        set_option(encoder, ENCODER_OPTION_RC_MODE, "SetOption(ENCODER_OPTION_RC_MODE)", &mut mode)
    }
}

/// Tries to change the running session's usage type in place (the
/// measurement behind the module docs); returns OpenH264's return code.
#[cfg(test)]
fn try_change_usage(encoder: &mut OpenH264Encoder, usage: Usage) -> Result<c_int> {
    use openh264_sys2::{CAMERA_VIDEO_REAL_TIME, SCREEN_CONTENT_REAL_TIME};
    let session = encoder.session.as_mut().expect("a running session");
    let mut params = get_params(&mut session.encoder)?;
    params.iUsageType = match usage {
        Usage::Screen => SCREEN_CONTENT_REAL_TIME,
        Usage::Camera => CAMERA_VIDEO_REAL_TIME,
    };
    // SAFETY: as in `set_rc`.
    let code = unsafe {
        session
            .encoder
            .raw_api()
            .set_option(ENCODER_OPTION_SVC_ENCODE_PARAM_EXT, std::ptr::from_mut(&mut params).cast())
    };
    Ok(code)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::convert::bgra_to_i420;
    use crate::quality::psnr_plane;
    use openh264::decoder::Decoder;
    use openh264::formats::YUVSource;
    use peep_capture::marks::{FrameMark, read_mark_luma};
    use peep_capture::synthetic::{Scene, SyntheticScene};

    fn frames(scene: Scene, range: std::ops::Range<u64>, w: u32, h: u32) -> Vec<I420Frame> {
        let s = SyntheticScene::new(w as usize, h as usize, scene);
        let mut bgra = vec![0u8; (w * h * 4) as usize];
        range
            .map(|i| {
                s.render(i, &mut bgra, w as usize * 4, FrameMark { counter: i as u32, timestamp_ms: 0 });
                let mut yuv = I420Frame::new(w, h);
                bgra_to_i420(&bgra, w, h, w as usize * 4, &mut yuv).expect("convert");
                yuv
            })
            .collect()
    }

    fn nal_types(annexb: &[u8]) -> Vec<u8> {
        openh264::nal_units(annexb).map(|n| n.iter().skip_while(|&&b| b == 0).nth(1).map_or(0, |b| b & 0x1f)).collect()
    }

    #[test]
    fn usage_type_cannot_change_in_a_running_session() {
        let mut e = OpenH264Encoder::new(OpenH264Config::default()).unwrap();
        let mut out = EncodedFrame::default();
        let f = &frames(Scene::Typing, 0..1, 320, 240)[0];
        let _ = e.encode(f, Duration::ZERO, &mut out).unwrap();
        let code = try_change_usage(&mut e, Usage::Camera).unwrap();
        assert_ne!(code, 0, "OpenH264 now accepts an in-session usage change: revisit the switching policy");
        // The session is unharmed and keeps encoding P-frames.
        let _ = e.encode(f, Duration::from_millis(33), &mut out).unwrap();
        assert!(!out.keyframe);
    }

    /// Encodes typing, moving, typing frames (70 at 640x360), with or
    /// without content-class switches, and a keyframe request at frame 35.
    /// Returns (frame index, usage) of every keyframe, and the stream.
    fn switching_run(switch: bool) -> (Vec<(usize, Option<Usage>)>, Vec<u8>) {
        let (w, h) = (640, 360);
        let mut e =
            OpenH264Encoder::new(OpenH264Config { bitrate_bps: 1_500_000, ..OpenH264Config::default() }).unwrap();
        let mut out = EncodedFrame::default();
        let (mut stream, mut keyframes) = (Vec::new(), Vec::new());
        let all: Vec<I420Frame> = [(Scene::Typing, 0..20), (Scene::Moving, 20..50), (Scene::Typing, 50..70)]
            .into_iter()
            .flat_map(|(scene, range)| frames(scene, range, w, h))
            .collect();
        for (i, frame) in all.iter().enumerate() {
            if switch && i == 20 {
                e.set_content(ContentClass::Motion).unwrap();
            }
            if switch && i == 50 {
                e.set_content(ContentClass::Text).unwrap();
            }
            if i == 35 {
                e.request_keyframe();
            }
            let _ = e.encode(frame, Duration::from_millis(i as u64 * 33), &mut out).unwrap();
            if out.keyframe {
                keyframes.push((i, e.session_usage()));
            }
            stream.extend_from_slice(&out.data);
        }
        (keyframes, stream)
    }

    /// Text → motion → text while encoding: complexity switches in place and
    /// adds no keyframe (the same keyframes as without switching: the first
    /// frame, OpenH264's own scene-cut IDR when the content changes, the
    /// requested one); the requested keyframe during motion comes from a
    /// new camera-mode session; the stream decodes and every frame's mark
    /// reads back in order.
    #[test]
    fn content_switches_add_no_keyframe_and_usage_switches_at_a_requested_one() {
        let (plain, _) = switching_run(false);
        let (adapted, stream) = switching_run(true);
        let frames_of = |k: &[(usize, Option<Usage>)]| k.iter().map(|(i, _)| *i).collect::<Vec<_>>();
        assert_eq!(frames_of(&adapted), frames_of(&plain), "keyframes with and without content switches");
        assert!(plain.iter().any(|&(i, _)| i == 35), "the requested keyframe: {plain:?}");
        assert!(plain.iter().all(|(_, u)| *u == Some(Usage::Screen)), "{plain:?}");
        for (i, usage) in &adapted {
            let want = if (20..50).contains(i) { Usage::Camera } else { Usage::Screen };
            // Only a keyframe that was going to happen anyway may switch; a
            // scene cut inside a session keeps the session's usage.
            if *i == 35 {
                assert_eq!(*usage, Some(want), "keyframe {i}");
            }
        }
        let idrs = nal_types(&stream).iter().filter(|&&t| t == 5).count();
        assert_eq!(idrs, adapted.len(), "IDR slices in the stream");

        let (w, h) = (640usize, 360usize);
        let mut decoder = Decoder::new().unwrap();
        let mut counters = Vec::new();
        for nal in openh264::nal_units(&stream) {
            if let Some(pic) = decoder.decode(nal).expect("decodable") {
                let (ys, _, _) = pic.strides();
                counters.push(read_mark_luma(pic.y(), w, h, ys).expect("mark").counter);
            }
        }
        assert_eq!(counters, (0..70).collect::<Vec<u32>>());
    }

    #[test]
    fn complexity_follows_the_content_class_without_a_keyframe() {
        let mut e = OpenH264Encoder::new(OpenH264Config::default()).unwrap();
        assert_eq!(e.adapted_config().complexity, Complexity::High);
        e.set_content(ContentClass::Motion).unwrap();
        assert_eq!(e.adapted_config().complexity, Complexity::Low);
        assert_eq!(e.adapted_config().usage, Usage::Camera);
        e.set_content(ContentClass::Idle).unwrap();
        assert_eq!((e.adapted_config().complexity, e.adapted_config().usage), (Complexity::High, Usage::Screen));
        let fixed = OpenH264Encoder::new(OpenH264Config { adapt_usage: false, ..OpenH264Config::default() }).unwrap();
        let mut fixed = fixed;
        fixed.set_content(ContentClass::Motion).unwrap();
        assert_eq!(fixed.adapted_config().usage, Usage::Screen);
    }

    /// After low-bitrate motion, one refinement frame of the settled
    /// picture brings text to ≥ 45 dB, as a P-frame; encoding continues
    /// normally afterwards.
    #[test]
    fn a_refinement_frame_sharpens_the_settled_picture() {
        let (w, h) = (1280, 720);
        let mut e = OpenH264Encoder::new(OpenH264Config { bitrate_bps: 600_000, ..OpenH264Config::default() }).unwrap();
        let mut out = EncodedFrame::default();
        let mut decoder = Decoder::new().unwrap();
        let moving = frames(Scene::Scrolling, 0..30, w, h);
        let mut last_db = 0.0;
        let mut decode = |data: &[u8], want: &I420Frame| {
            let pic = decoder.decode(data).expect("decodable").expect("a picture");
            let (ys, _, _) = pic.strides();
            psnr_plane(pic.y(), ys, want.y(), want.y_stride(), w as usize, h as usize)
        };
        for (i, f) in moving.iter().enumerate() {
            let _ = e.encode(f, Duration::from_millis(i as u64 * 33), &mut out).unwrap();
            last_db = decode(&out.data, f);
        }
        let settled = moving.last().expect("frames");
        let before = last_db;
        assert_eq!(e.refine(settled, Duration::from_millis(1000), &mut out).unwrap(), EncodeOutcome::Encoded);
        assert!(!out.keyframe, "a refinement is a P-frame");
        let refined = decode(&out.data, settled);
        println!(
            "settled picture: {before:.1} dB before, {refined:.1} dB after one refinement frame ({} bytes)",
            out.data.len()
        );
        assert!(refined >= 45.0, "refined to {refined:.1} dB");
        assert!(refined > before + 3.0, "{before:.1} → {refined:.1} dB");
        // Rate control is back: the next frames are small again.
        let _ = e.encode(settled, Duration::from_millis(1033), &mut out).unwrap();
        assert!(out.data.len() < 5_000, "an unchanged frame after the refinement: {} bytes", out.data.len());
        assert!(decode(&out.data, settled) >= refined - 0.5);
    }

    #[test]
    fn forced_slices_give_that_many_slices_per_picture_and_decode() {
        let (w, h) = (640, 368);
        let mut e = OpenH264Encoder::new(OpenH264Config { slices: 4, ..OpenH264Config::default() }).unwrap();
        assert_eq!(e.slices(), 4);
        let mut out = EncodedFrame::default();
        let mut decoder = Decoder::new().unwrap();
        let mut keyframes = 0;
        for (i, f) in frames(Scene::Moving, 0..10, w, h).iter().enumerate() {
            let _ = e.encode(f, Duration::from_millis(i as u64 * 33), &mut out).unwrap();
            keyframes += usize::from(out.keyframe);
            let types = nal_types(&out.data);
            let slices = types.iter().filter(|&&t| t == 1 || t == 5).count();
            assert_eq!(slices, 4, "frame {i}: NAL types {types:?}");
            let pic = decoder.decode(&out.data).expect("decodable").expect("picture");
            let (ys, _, _) = pic.strides();
            let mark = read_mark_luma(pic.y(), w as usize, h as usize, ys).expect("mark");
            assert_eq!(mark.counter, i as u32);
        }
        assert_eq!(keyframes, 1, "the slice set-up adds no keyframe");
    }
}
