//! The narrow trait every encoder backend implements, and the codecs they
//! produce.

use crate::content::ContentClass;
use crate::convert::I420Frame;
use crate::error::Result;
use std::time::Duration;

/// What an [`Encoder`] produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Codec {
    /// H.264 constrained baseline, Annex-B.
    H264,
    /// VP8, one frame per access unit.
    Vp8,
    /// VP9 profile 0, one frame (superframe) per access unit.
    Vp9,
}

impl Codec {
    /// Every codec, in Peep's order of preference for viewers.
    pub const ALL: [Codec; 3] = [Codec::H264, Codec::Vp8, Codec::Vp9];

    /// Human name: `"H.264"`, `"VP8"`, `"VP9"`.
    pub fn name(self) -> &'static str {
        match self {
            Codec::H264 => "H.264",
            Codec::Vp8 => "VP8",
            Codec::Vp9 => "VP9",
        }
    }

    /// Position in [`Codec::ALL`], for per-codec arrays.
    pub fn index(self) -> usize {
        self as usize
    }
}

impl std::fmt::Display for Codec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A video encoder writing access units into caller-owned buffers.
///
/// Implementations are chosen at run time (OpenH264 everywhere, VideoToolbox
/// on macOS, libvpx for VP8/VP9), so the methods never change with `cfg`.
pub trait Encoder: Send {
    /// Encodes one frame into `out.data`, which is cleared first and grows
    /// only if its capacity is too small: for H.264 an Annex-B access unit
    /// (start codes, with SPS and PPS before every IDR), for VP8/VP9 one
    /// compressed frame.
    ///
    /// `pts` is the frame's presentation time since the start of the stream;
    /// rate control uses it, so pass real capture times, not frame counts.
    ///
    /// Returns [`EncodeOutcome::Skipped`] (with `out.data` empty) when rate
    /// control dropped the frame.
    ///
    /// # Errors
    /// Frames of zero or too large a size, and failing codec calls.
    fn encode(&mut self, frame: &I420Frame, pts: Duration, out: &mut EncodedFrame) -> Result<EncodeOutcome>;

    /// Changes the target bitrate, effective within a few frames, without
    /// restarting the stream.
    ///
    /// # Errors
    /// Zero or out-of-range bitrates, and failing codec calls.
    fn set_bitrate(&mut self, bitrate_bps: u32) -> Result<()>;

    /// Changes the frame rate the rate control budgets for.
    ///
    /// # Errors
    /// Non-positive or non-finite rates, and failing codec calls.
    fn set_fps(&mut self, fps: f32) -> Result<()>;

    /// Makes the next encoded frame an IDR / keyframe (e.g. on a viewer's PLI/FIR).
    fn request_keyframe(&mut self);

    /// Tells the encoder what the content is doing, so it can adapt its
    /// tuning without a keyframe (see [`crate::content`]). Default: ignored.
    ///
    /// # Errors
    /// Failing codec calls.
    fn set_content(&mut self, class: ContentClass) -> Result<()> {
        let _ = class;
        Ok(())
    }

    /// Encodes `frame` — the picture the last frame showed, now unchanged —
    /// once more at high quality (paint-over: text becomes sharp after
    /// motion), as a normal inter frame. Default: nothing is sent
    /// ([`EncodeOutcome::Skipped`]).
    ///
    /// # Errors
    /// As [`Encoder::encode`].
    fn refine(&mut self, frame: &I420Frame, pts: Duration, out: &mut EncodedFrame) -> Result<EncodeOutcome> {
        let _ = (frame, pts, out);
        Ok(EncodeOutcome::Skipped)
    }

    /// A short name for logs and stats, e.g. `"openh264"`.
    fn name(&self) -> &'static str;

    /// The codec this encoder produces.
    fn codec(&self) -> Codec;

    /// The rate control's target as a multiple of the target bitrate: 1
    /// unless the encoder compensates an undershoot of its own rate control
    /// (OpenH264 with `adjust_rate`, see `crate::budget::RateAdjuster`).
    fn rate_gain(&self) -> f64 {
        1.0
    }
}

/// One encoded access unit. Reuse it across frames: `data` keeps its capacity.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct EncodedFrame {
    /// H.264: Annex-B NAL units (`00 00 00 01` start codes); VP8/VP9: one frame.
    pub data: Vec<u8>,
    /// Whether this is an IDR / keyframe (decodable on its own; for H.264
    /// SPS/PPS included).
    pub keyframe: bool,
    /// Presentation time passed to [`Encoder::encode`].
    pub pts: Duration,
    /// Coded width in pixels, as a decoder will report it (even).
    pub width: u32,
    /// Coded height in pixels, as a decoder will report it (even).
    pub height: u32,
}

impl std::fmt::Debug for EncodedFrame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EncodedFrame")
            .field("data_len", &self.data.len())
            .field("keyframe", &self.keyframe)
            .field("pts", &self.pts)
            .field("width", &self.width)
            .field("height", &self.height)
            .finish()
    }
}

impl EncodedFrame {
    /// An empty frame whose buffer can hold `capacity_bytes` without growing.
    pub fn with_capacity(capacity_bytes: usize) -> Self {
        Self { data: Vec::with_capacity(capacity_bytes), ..Self::default() }
    }
}

/// What [`Encoder::encode`] did with a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[must_use]
pub enum EncodeOutcome {
    /// An access unit was written to [`EncodedFrame::data`].
    Encoded,
    /// Rate control skipped the frame; nothing to send.
    Skipped,
}
