//! The narrow trait every H.264 encoder backend implements.

use crate::convert::I420Frame;
use crate::error::Result;
use std::time::Duration;

/// An H.264 encoder producing Annex-B access units into caller-owned buffers.
///
/// Implementations are chosen at run time (OpenH264 everywhere, VideoToolbox
/// on macOS), so the methods never change with `cfg`.
pub trait Encoder: Send {
    /// Encodes one frame, writing an Annex-B access unit (start codes, with
    /// SPS and PPS before every IDR) into `out.data`, which is cleared first
    /// and grows only if its capacity is too small.
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

    /// Makes the next encoded frame an IDR (e.g. on a viewer's PLI/FIR).
    fn request_keyframe(&mut self);

    /// A short name for logs and stats, e.g. `"openh264"`.
    fn name(&self) -> &'static str;

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
    /// Annex-B NAL units (`00 00 00 01` start codes).
    pub data: Vec<u8>,
    /// Whether this is an IDR frame (decodable on its own, SPS/PPS included).
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
