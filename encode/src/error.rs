//! The crate's one error type.

/// What can go wrong converting or encoding a frame.
///
/// Every variant is about bad input or a failing codec call; bugs panic instead.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// A width or height of zero.
    #[error("frame size {width}x{height} is empty")]
    EmptyFrame {
        /// Width in pixels.
        width: u32,
        /// Height in pixels.
        height: u32,
    },

    /// The source stride is shorter than one row of BGRA pixels (or absurdly
    /// large: more than `u32::MAX` bytes).
    #[error(
        "source stride of {stride_bytes} bytes is invalid for rows of {width} BGRA pixels (must be {min_bytes}..=4294967295)"
    )]
    InvalidStride {
        /// The stride given.
        stride_bytes: usize,
        /// Width in pixels.
        width: u32,
        /// The smallest acceptable stride, `width * 4`.
        min_bytes: usize,
    },

    /// The source buffer is smaller than `stride_bytes * height`.
    #[error(
        "source buffer holds {len_bytes} bytes but {width}x{height} at a stride of {stride_bytes} bytes needs {needed_bytes}"
    )]
    SourceTooSmall {
        /// Length of the buffer given.
        len_bytes: usize,
        /// `stride_bytes * height`.
        needed_bytes: usize,
        /// Width in pixels.
        width: u32,
        /// Height in pixels.
        height: u32,
        /// The stride given.
        stride_bytes: usize,
    },

    /// The frame is larger than the encoder supports (OpenH264 tops out at
    /// level 5.2: 3840x2160 landscape or 2160x3840 portrait, after rounding odd
    /// sizes up to even).
    #[error(
        "{width}x{height} is larger than the encoder's limit of {max_long_side}x{max_short_side} (or {max_short_side}x{max_long_side}); scale the capture down"
    )]
    FrameTooLarge {
        /// Width in pixels.
        width: u32,
        /// Height in pixels.
        height: u32,
        /// Longest side the encoder accepts.
        max_long_side: u32,
        /// Shortest side the encoder accepts.
        max_short_side: u32,
    },

    /// A bitrate the encoder cannot use.
    #[error("bitrate of {bitrate_bps} bps is out of range ({min_bps}..={max_bps})")]
    InvalidBitrate {
        /// The bitrate given.
        bitrate_bps: u32,
        /// The smallest accepted bitrate.
        min_bps: u32,
        /// The largest accepted bitrate.
        max_bps: u32,
    },

    /// A frame rate that is not a positive finite number.
    #[error("frame rate {fps} is not a positive number")]
    InvalidFrameRate {
        /// The frame rate given.
        fps: f32,
    },

    /// yuvutils-rs rejected a conversion (a bug in our validation if it happens).
    #[error("colour conversion failed: {0}")]
    Convert(#[source] yuvutils_rs::YuvError),

    /// A conversion kernel was asked for that this CPU cannot run.
    #[error("the {0:?} conversion kernel is not available on this CPU")]
    KernelUnavailable(crate::convert::Kernel),

    /// An OpenH264 call made through the `openh264` crate failed.
    #[error("OpenH264 {operation} failed: {source}")]
    OpenH264 {
        /// What we were doing.
        operation: &'static str,
        /// The crate's error (carries the native return code).
        #[source]
        source: openh264::Error,
    },

    /// A native OpenH264 call returned a failure code (or, for
    /// `EncodeFrame`, an invalid frame type).
    /// A VideoToolbox / CoreVideo / CoreMedia call failed (macOS).
    #[error("VideoToolbox: {call} returned OSStatus {status}")]
    VideoToolbox {
        /// The call, e.g. `"VTCompressionSessionCreate"`.
        call: &'static str,
        /// The OSStatus.
        status: i32,
    },

    #[error("OpenH264 {call} returned {code}")]
    Native {
        /// The call, e.g. `"SetOption(ENCODER_OPTION_BITRATE)"`.
        call: &'static str,
        /// The native return code (`CM_RETURN`) or frame type.
        code: i32,
    },

    /// A libvpx (VP8/VP9) call failed, or the installed libvpx does not
    /// match Peep's bindings.
    #[error("libvpx {call} failed: {message}")]
    Vpx {
        /// The call, e.g. `"vpx_codec_encode"`.
        call: &'static str,
        /// libvpx's `vpx_codec_err_t` (-1: detected by Peep).
        code: i32,
        /// libvpx's description and detail.
        message: String,
    },

    /// An encoder setting out of its range.
    #[error("invalid {setting}: {reason}")]
    InvalidSetting {
        /// Which setting.
        setting: &'static str,
        /// The value and the accepted range.
        reason: String,
    },

    /// A QP range outside `1..=51` or with `min > max` (a minimum of 0 would
    /// make OpenH264 silently fall back to its defaults).
    #[error("QP range {min}..={max} is invalid (need 1 <= min <= max <= 51)")]
    InvalidQpRange {
        /// Lowest QP (best quality).
        min: u8,
        /// Highest QP (strongest compression).
        max: u8,
    },
}

/// `Result` with [`EncodeError`].
pub type Result<T, E = EncodeError> = std::result::Result<T, E>;
