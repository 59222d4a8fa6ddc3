//! VideoToolbox H.264 encoder (macOS only): the FFI driver behind
//! [`AsyncEncoder`]. The logic — the asynchronous hand-off, AVCC → Annex-B
//! with SPS/PPS before every IDR, writing frames into pool buffers, the
//! fallback to OpenH264 — lives in [`crate::videotoolbox_core`] and
//! [`crate::avcc`], which compile and are tested on every OS.
//!
//! ```no_run
//! use peep_encode::videotoolbox_core::{open_h264_encoder, EncoderChoice, VideoToolboxConfig};
//!
//! let (encoder, choice) = open_h264_encoder(&VideoToolboxConfig::default())?;
//! if let EncoderChoice::OpenH264 { reason } = &choice {
//!     eprintln!("{reason}");
//! }
//! # Ok::<(), peep_encode::EncodeError>(())
//! ```
//!
//! # Session settings, and why
//!
//! - Encoder specification: hardware enabled, and required unless
//!   [`VideoToolboxConfig::require_hardware`] is off, so a Mac without an
//!   H.264 block fails the probe and [`open_h264_encoder`] falls back to
//!   OpenH264 rather than to Apple's slower software encoder.
//! - `RealTime`, no frame reordering (no B-frames), `MaxFrameDelayCount` 0:
//!   each frame's output is emitted before the next frame is needed, which
//!   the hand-off relies on for "no extra frame of latency".
//! - Profile: constrained baseline (CAVLC) by default or main (CABAC), both
//!   in Chromium's receive list. Not the low-latency rate-control mode
//!   (`EnableLowLatencyRateControl`), which forces High profile; not
//!   `ReferenceBufferCount` (keyframes only on Apple Silicon elsewhere).
//! - Rate control: `AverageBitRate` plus `DataRateLimits` at 1.5× per
//!   second; both, and `ExpectedFrameRate`, change on the live session.
//! - Keyframes: forced with `kVTEncodeFrameOptionKey_ForceKeyFrame` per frame;
//!   periodic ones only every [`VideoToolboxConfig::keyframe_interval`]
//!   frames (or the 7200-frame / 240 s ceiling).
//! - Colour: BT.709 primaries, transfer function and matrix in the VUI,
//!   matching the converter's maths and the `420v` (video range) buffers.
//! - Input: `420v` IOSurface-backed pixel buffers from the session's pool,
//!   so nothing is allocated per frame.
//!
//! [`open_h264_encoder`]: crate::videotoolbox_core::open_h264_encoder

use std::ffi::{c_char, c_int, c_void};
use std::panic::AssertUnwindSafe;
use std::ptr;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use core_foundation::array::CFArray;
use core_foundation::base::{CFType, TCFType};
use core_foundation::boolean::CFBoolean;
use core_foundation::dictionary::CFDictionary;
use core_foundation::number::CFNumber;
use core_foundation::string::CFString;
use core_foundation_sys::base::{CFRelease, OSStatus};
use core_foundation_sys::string::CFStringRef;
use core_media_sys::{CMSampleBufferRef, CMTime, kCMTimeFlags_Valid, kCMTimeInvalid, kCMVideoCodecType_H264};
use core_video_sys as cv;
use video_toolbox_sys::compression as vt;
use video_toolbox_sys::session::VTSessionSetProperty;

use crate::avcc::{self, AvccError, ParameterSets};
use crate::error::{EncodeError, Result};
use crate::videotoolbox_core::{
    AsyncEncoder, CompressionSession, Delivery, FrameSource, H264Profile, Handoff, Nv12Planes, Nv12Writer,
    OutputSender, SessionFactory, VideoToolboxConfig, data_rate_limit,
};

/// [`AsyncEncoder`] over VideoToolbox. Build it with
/// [`VideoToolboxEncoder::open`] (or let
/// [`open_h264_encoder`](crate::videotoolbox_core::open_h264_encoder) pick
/// it); feed it I420 through [`crate::Encoder::encode`] or captured BGRA
/// through [`AsyncEncoder::encode_source`], which converts straight into
/// the encoder's input buffer.
pub type VideoToolboxEncoder = AsyncEncoder<VtFactory>;

impl AsyncEncoder<VtFactory> {
    /// A VideoToolbox encoder. Probes once with a small session, so a Mac
    /// without a (required) hardware encoder fails here, not at the first
    /// frame.
    ///
    /// # Errors
    /// Invalid settings, or VideoToolbox refusing the probe session (e.g.
    /// `kVTCouldNotFindVideoEncoderErr`, -12908, without hardware).
    pub fn open(config: VideoToolboxConfig) -> Result<Self> {
        AsyncEncoder::new(VtFactory, config)
    }
}

/// `kVTInvalidSessionErr`.
const INVALID_SESSION: OSStatus = -12903;
/// `kVTVideoEncoderMalfunctionErr`.
const ENCODER_MALFUNCTION: OSStatus = -12912;

type CMFormatDescriptionRef = *const c_void;
type CMBlockBufferRef = *const c_void;

// Declared here because core-media-sys 0.1 lacks them (or, for
// CMBlockBufferGetDataPointer, declares the out-pointer with the wrong type).
// Signatures from CoreMedia's CMSampleBuffer.h, CMFormatDescription.h and
// CMBlockBuffer.h.
#[link(name = "CoreMedia", kind = "framework")]
unsafe extern "C" {
    fn CMSampleBufferGetDataBuffer(sbuf: CMSampleBufferRef) -> CMBlockBufferRef;
    fn CMSampleBufferGetFormatDescription(sbuf: CMSampleBufferRef) -> CMFormatDescriptionRef;
    fn CMVideoFormatDescriptionGetH264ParameterSetAtIndex(
        video_desc: CMFormatDescriptionRef,
        parameter_set_index: usize,
        parameter_set_pointer_out: *mut *const u8,
        parameter_set_size_out: *mut usize,
        parameter_set_count_out: *mut usize,
        nal_unit_header_length_out: *mut c_int,
    ) -> OSStatus;
    fn CMBlockBufferGetDataPointer(
        the_buffer: CMBlockBufferRef,
        offset: usize,
        length_at_offset_out: *mut usize,
        total_length_out: *mut usize,
        data_pointer_out: *mut *mut c_char,
    ) -> OSStatus;
    fn CMBlockBufferGetDataLength(the_buffer: CMBlockBufferRef) -> usize;
    fn CMBlockBufferCopyDataBytes(
        the_source_buffer: CMBlockBufferRef,
        offset_to_data: usize,
        data_length: usize,
        destination: *mut c_void,
    ) -> OSStatus;
}

// Constants video-toolbox-sys 0.2 / core-video-sys 0.1 do not export.
#[link(name = "VideoToolbox", kind = "framework")]
unsafe extern "C" {
    /// macOS 12+.
    static kVTProfileLevel_H264_ConstrainedBaseline_AutoLevel: CFStringRef;
}

#[link(name = "CoreVideo", kind = "framework")]
unsafe extern "C" {
    static kCVImageBufferColorPrimaries_ITU_R_709_2: CFStringRef;
    static kCVImageBufferTransferFunction_ITU_R_709_2: CFStringRef;
    static kCVImageBufferYCbCrMatrix_ITU_R_709_2: CFStringRef;
}

fn check(status: OSStatus, call: &'static str) -> Result<()> {
    if status == 0 { Ok(()) } else { Err(EncodeError::VideoToolbox { call, status }) }
}

/// Wraps a framework-exported CFString constant (core-foundation-sys 0.7 or
/// 0.8 pointer types alike).
fn constant<T>(key: *const T) -> CFString {
    // SAFETY: `key` is a CFString constant exported by a system framework:
    // immortal, so taking a +1 reference under the get rule is always valid.
    unsafe { CFString::wrap_under_get_rule(key.cast()) }
}

/// Creates [`VtSession`]s.
#[derive(Debug, Default, Clone, Copy)]
pub struct VtFactory;

impl SessionFactory for VtFactory {
    type Session = VtSession;

    fn probe(&mut self, config: &VideoToolboxConfig) -> Result<()> {
        let handoff = Handoff::new(1, 0);
        VtSession::new(640, 480, config, handoff.sender()).map(drop)
    }

    fn create(
        &mut self,
        width: u32,
        height: u32,
        config: &VideoToolboxConfig,
        outputs: OutputSender,
    ) -> Result<VtSession> {
        VtSession::new(width, height, config, outputs)
    }

    fn name(&self) -> &'static str {
        "videotoolbox"
    }
}

/// State the output callback reaches through its refcon.
struct CallbackContext {
    outputs: OutputSender,
    /// The callback runs on VideoToolbox's threads, one frame at a time in
    /// practice; the lock is uncontended.
    state: Mutex<CallbackState>,
}

#[derive(Default)]
struct CallbackState {
    /// Refreshed from the format description on every IDR (no allocation
    /// once warm).
    params: ParameterSets,
    /// For the rare non-contiguous block buffer.
    scratch: Vec<u8>,
}

/// One `VTCompressionSession` of a fixed size.
pub struct VtSession {
    raw: vt::VTCompressionSessionRef,
    /// Owned; freed in `Drop` after the session is invalidated.
    context: *mut CallbackContext,
    force_keyframe: CFDictionary<CFString, CFBoolean>,
    writer: Nv12Writer,
    size: (u32, u32),
}

impl std::fmt::Debug for VtSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VtSession").field("size", &self.size).field("writer", &self.writer).finish()
    }
}

// SAFETY: a VTCompressionSession is a thread-safe CoreFoundation object; the
// session is used through `&mut self` only, from one thread at a time. The
// callback context is shared with VideoToolbox's threads through `Sync`
// members (a channel sender, a Mutex) only.
unsafe impl Send for VtSession {}

/// A +1 reference to a pixel buffer, released on drop.
struct PixelBuffer(cv::CVPixelBufferRef);

impl Drop for PixelBuffer {
    fn drop(&mut self) {
        // SAFETY: we own one reference, from CVPixelBufferPoolCreatePixelBuffer.
        unsafe { cv::CVPixelBufferRelease(self.0) };
    }
}

impl VtSession {
    fn new(width: u32, height: u32, config: &VideoToolboxConfig, outputs: OutputSender) -> Result<Self> {
        let (Ok(w), Ok(h)) = (i32::try_from(width), i32::try_from(height)) else {
            return Err(EncodeError::FrameTooLarge { width, height, max_long_side: 16384, max_short_side: 16384 });
        };
        // SAFETY: reading CFString constants exported by VideoToolbox and CoreVideo.
        let (enable_hw, require_hw, format_key, width_key, height_key, iosurface_key) = unsafe {
            (
                vt::kVTVideoEncoderSpecification_EnableHardwareAcceleratedVideoEncoder,
                vt::kVTVideoEncoderSpecification_RequireHardwareAcceleratedVideoEncoder,
                cv::kCVPixelBufferPixelFormatTypeKey,
                cv::kCVPixelBufferWidthKey,
                cv::kCVPixelBufferHeightKey,
                cv::kCVPixelBufferIOSurfacePropertiesKey,
            )
        };
        let specification = CFDictionary::from_CFType_pairs(&[
            (constant(enable_hw), CFBoolean::true_value().as_CFType()),
            (constant(require_hw), CFBoolean::from(config.require_hardware).as_CFType()),
        ]);
        let no_properties: CFDictionary<CFString, CFType> = CFDictionary::from_CFType_pairs(&[]);
        let source_attributes = CFDictionary::from_CFType_pairs(&[
            (
                constant(format_key),
                CFNumber::from(cv::kCVPixelFormatType_420YpCbCr8BiPlanarVideoRange as i32).as_CFType(),
            ),
            (constant(width_key), CFNumber::from(w).as_CFType()),
            (constant(height_key), CFNumber::from(h).as_CFType()),
            (constant(iosurface_key), no_properties.as_CFType()),
        ]);
        // SAFETY: reading a CFString constant exported by VideoToolbox.
        let force_key = unsafe { vt::kVTEncodeFrameOptionKey_ForceKeyFrame };
        let force_keyframe = CFDictionary::from_CFType_pairs(&[(constant(force_key), CFBoolean::true_value())]);

        let context = Box::into_raw(Box::new(CallbackContext { outputs, state: Mutex::default() }));
        let mut raw: vt::VTCompressionSessionRef = ptr::null();
        // SAFETY: the dictionaries are live CF objects (VideoToolbox copies
        // what it keeps); `output_callback` has the VTCompressionOutputCallback
        // signature; `context` stays valid until the session is invalidated
        // in Drop, or is freed below if no session was created.
        let status = unsafe {
            vt::VTCompressionSessionCreate(
                ptr::null(),
                w,
                h,
                kCMVideoCodecType_H264,
                specification.as_concrete_TypeRef(),
                source_attributes.as_concrete_TypeRef(),
                ptr::null(),
                output_callback,
                context.cast(),
                &mut raw,
            )
        };
        if status != 0 || raw.is_null() {
            // SAFETY: no session exists, so nothing else holds `context`.
            drop(unsafe { Box::from_raw(context) });
            return Err(EncodeError::VideoToolbox { call: "VTCompressionSessionCreate", status });
        }
        // From here on, Drop invalidates the session and frees the context.
        let mut session = Self { raw, context, force_keyframe, writer: Nv12Writer::default(), size: (width, height) };
        session.configure(config)?;
        // SAFETY: `raw` is our live session.
        let status = unsafe { vt::VTCompressionSessionPrepareToEncodeFrames(session.raw) };
        check(status, "VTCompressionSessionPrepareToEncodeFrames")?;
        Ok(session)
    }

    fn set(&self, key: CFStringRef, value: &dyn SessionValue, call: &'static str) -> Result<()> {
        // SAFETY: `raw` is our live session, `key` a VideoToolbox property
        // constant and `value` a live CF object, which the call retains or
        // copies as needed.
        check(unsafe { VTSessionSetProperty(self.raw, key, value.cf_type_ref()) }, call)
    }

    /// Sets a property the session works without; failures are logged.
    fn set_optional(&self, key: CFStringRef, value: &dyn SessionValue, call: &'static str) {
        if let Err(error) = self.set(key, value, call) {
            tracing::debug!(%error, "optional VideoToolbox property not applied");
        }
    }

    fn configure(&mut self, config: &VideoToolboxConfig) -> Result<()> {
        // SAFETY: every read below is of a CFString constant exported by
        // VideoToolbox and CoreVideo, valid for the life of the process.
        let k = unsafe {
            Keys {
                real_time: vt::kVTCompressionPropertyKey_RealTime,
                reordering: vt::kVTCompressionPropertyKey_AllowFrameReordering,
                profile_level: vt::kVTCompressionPropertyKey_ProfileLevel,
                entropy: vt::kVTCompressionPropertyKey_H264EntropyMode,
                max_interval: vt::kVTCompressionPropertyKey_MaxKeyFrameInterval,
                max_interval_duration: vt::kVTCompressionPropertyKey_MaxKeyFrameIntervalDuration,
                max_delay: vt::kVTCompressionPropertyKey_MaxFrameDelayCount,
                primaries: vt::kVTCompressionPropertyKey_ColorPrimaries,
                transfer: vt::kVTCompressionPropertyKey_TransferFunction,
                matrix: vt::kVTCompressionPropertyKey_YCbCrMatrix,
            }
        };
        self.set(k.real_time, &CFBoolean::true_value(), "VTSessionSetProperty(RealTime)")?;
        self.set(k.reordering, &CFBoolean::false_value(), "VTSessionSetProperty(AllowFrameReordering)")?;
        match config.profile {
            H264Profile::ConstrainedBaseline => {
                // SAFETY: CFString constants exported by VideoToolbox (the
                // constrained one since macOS 12).
                let (constrained, baseline, cavlc) = unsafe {
                    (
                        kVTProfileLevel_H264_ConstrainedBaseline_AutoLevel,
                        vt::kVTProfileLevel_H264_Baseline_AutoLevel,
                        vt::kVTH264EntropyMode_CAVLC,
                    )
                };
                let profile = "VTSessionSetProperty(ProfileLevel)";
                if self.set(k.profile_level, &constant(constrained), profile).is_err() {
                    // Older encoders: baseline without FMO/ASO, which is what
                    // constrained baseline restricts anyway.
                    self.set(k.profile_level, &constant(baseline), profile)?;
                }
                self.set_optional(k.entropy, &constant(cavlc), "VTSessionSetProperty(H264EntropyMode)");
            }
            H264Profile::Main => {
                // SAFETY: CFString constants exported by VideoToolbox.
                let (main, cabac) = unsafe { (vt::kVTProfileLevel_H264_Main_AutoLevel, vt::kVTH264EntropyMode_CABAC) };
                self.set(k.profile_level, &constant(main), "VTSessionSetProperty(ProfileLevel)")?;
                self.set_optional(k.entropy, &constant(cabac), "VTSessionSetProperty(H264EntropyMode)");
            }
        }
        let interval = i32::try_from(config.max_keyframe_interval_frames()).unwrap_or(i32::MAX);
        self.set(k.max_interval, &CFNumber::from(interval), "VTSessionSetProperty(MaxKeyFrameInterval)")?;
        let seconds = if config.keyframe_interval == 0 {
            crate::videotoolbox_core::DEFAULT_MAX_KEYFRAME_INTERVAL_SECONDS
        } else {
            f64::from(config.keyframe_interval) / f64::from(config.fps)
        };
        self.set_optional(
            k.max_interval_duration,
            &CFNumber::from(seconds),
            "VTSessionSetProperty(MaxKeyFrameIntervalDuration)",
        );
        self.set_bitrate(config.bitrate_bps)?;
        self.set_fps(config.fps)?;
        // Emit every frame before the next is submitted. Not every encoder
        // takes it; real-time mode without reordering behaves so anyway.
        self.set_optional(k.max_delay, &CFNumber::from(0i32), "VTSessionSetProperty(MaxFrameDelayCount)");
        // SAFETY: CFString constants exported by CoreVideo.
        let (p709, t709, m709) = unsafe {
            (
                kCVImageBufferColorPrimaries_ITU_R_709_2,
                kCVImageBufferTransferFunction_ITU_R_709_2,
                kCVImageBufferYCbCrMatrix_ITU_R_709_2,
            )
        };
        self.set_optional(k.primaries, &constant(p709), "VTSessionSetProperty(ColorPrimaries)");
        self.set_optional(k.transfer, &constant(t709), "VTSessionSetProperty(TransferFunction)");
        self.set_optional(k.matrix, &constant(m709), "VTSessionSetProperty(YCbCrMatrix)");
        Ok(())
    }

    /// Locks `buffer`, writes `source` into its planes, unlocks it.
    fn fill(&mut self, buffer: &PixelBuffer, source: FrameSource<'_>) -> Result<()> {
        // SAFETY: we own a reference to the buffer; 0 = read/write lock.
        check(unsafe { cv::CVPixelBufferLockBaseAddress(buffer.0, 0) }, "CVPixelBufferLockBaseAddress")?;
        // SAFETY: the buffer is locked, and came fresh from the pool, so no
        // one else touches its memory until we unlock it and hand it to
        // VideoToolbox; the planes are the memory CoreVideo describes.
        let planes = unsafe { nv12_planes(buffer.0) };
        let result = match planes {
            Some(planes) => self.writer.write(source, planes),
            None => Err(EncodeError::Convert(yuvutils_rs::YuvError::ImageDimensionsNotMatch)),
        };
        // SAFETY: locked above with the same flags.
        unsafe { cv::CVPixelBufferUnlockBaseAddress(buffer.0, 0) };
        result
    }
}

/// The NV12 planes of a locked two-plane pixel buffer, or `None` if it is
/// not one.
///
/// # Safety
/// `buffer` must be a live pixel buffer whose base address is locked for
/// writing for as long as the returned planes are used, with no other
/// access meanwhile.
unsafe fn nv12_planes<'a>(buffer: cv::CVPixelBufferRef) -> Option<Nv12Planes<'a>> {
    // SAFETY: the caller guarantees a live, locked buffer.
    unsafe {
        if cv::CVPixelBufferGetPlaneCount(buffer) != 2 {
            return None;
        }
        let plane = |index: usize| -> Option<(&'a mut [u8], usize)> {
            let base = cv::CVPixelBufferGetBaseAddressOfPlane(buffer, index);
            let stride = cv::CVPixelBufferGetBytesPerRowOfPlane(buffer, index);
            let rows = cv::CVPixelBufferGetHeightOfPlane(buffer, index);
            if base.is_null() {
                return None;
            }
            let len = stride.checked_mul(rows)?;
            Some((std::slice::from_raw_parts_mut(base.cast::<u8>(), len), stride))
        };
        let (y, y_stride) = plane(0)?;
        let (uv, uv_stride) = plane(1)?;
        let width = u32::try_from(cv::CVPixelBufferGetWidth(buffer)).ok()?;
        let height = u32::try_from(cv::CVPixelBufferGetHeight(buffer)).ok()?;
        Some(Nv12Planes { y, y_stride, uv, uv_stride, width, height })
    }
}

struct Keys {
    real_time: CFStringRef,
    reordering: CFStringRef,
    profile_level: CFStringRef,
    entropy: CFStringRef,
    max_interval: CFStringRef,
    max_interval_duration: CFStringRef,
    max_delay: CFStringRef,
    primaries: CFStringRef,
    transfer: CFStringRef,
    matrix: CFStringRef,
}

/// A CF object usable as a property value.
trait SessionValue {
    fn cf_type_ref(&self) -> core_foundation_sys::base::CFTypeRef;
}

impl<T: TCFType> SessionValue for T {
    fn cf_type_ref(&self) -> core_foundation_sys::base::CFTypeRef {
        self.as_CFTypeRef()
    }
}

impl CompressionSession for VtSession {
    fn submit(&mut self, source: FrameSource<'_>, pts: Duration, token: u64, force_keyframe: bool) -> Result<()> {
        // SAFETY: `raw` is our live session; the pool belongs to it.
        let pool = unsafe { vt::VTCompressionSessionGetPixelBufferPool(self.raw) };
        if pool.is_null() {
            // The pool disappears when the session is invalidated (e.g.
            // across sleep); the caller restarts the session.
            return Err(EncodeError::VideoToolbox {
                call: "VTCompressionSessionGetPixelBufferPool",
                status: INVALID_SESSION,
            });
        }
        let mut raw_buffer: cv::CVPixelBufferRef = ptr::null_mut();
        // SAFETY: `pool` is the session's live pool; on success we own one
        // reference to the (recycled) buffer.
        let status = unsafe { cv::CVPixelBufferPoolCreatePixelBuffer(ptr::null(), pool, &mut raw_buffer) };
        check(status, "CVPixelBufferPoolCreatePixelBuffer")?;
        if raw_buffer.is_null() {
            return Err(EncodeError::VideoToolbox {
                call: "CVPixelBufferPoolCreatePixelBuffer",
                status: ENCODER_MALFUNCTION,
            });
        }
        let buffer = PixelBuffer(raw_buffer);
        self.fill(&buffer, source)?;
        let pts = CMTime {
            value: i64::try_from(pts.as_micros()).unwrap_or(i64::MAX),
            timescale: 1_000_000,
            flags: kCMTimeFlags_Valid,
            epoch: 0,
        };
        let properties = if force_keyframe { self.force_keyframe.as_concrete_TypeRef() } else { ptr::null() };
        let mut flags: vt::VTEncodeInfoFlags = 0;
        // SAFETY: live session and buffer (VideoToolbox retains the buffer
        // while it encodes, so releasing ours afterwards is fine); the
        // properties dictionary lives in `self`; the token travels as the
        // frame refcon and is never dereferenced. kCMTimeInvalid is a
        // CoreMedia constant.
        let status = unsafe {
            vt::VTCompressionSessionEncodeFrame(
                self.raw,
                buffer.0.cast(),
                pts,
                kCMTimeInvalid,
                properties,
                token as usize as *mut c_void,
                &mut flags,
            )
        };
        check(status, "VTCompressionSessionEncodeFrame")
    }

    fn set_bitrate(&mut self, bitrate_bps: u32) -> Result<()> {
        // SAFETY: CFString constants exported by VideoToolbox.
        let (average, limits) =
            unsafe { (vt::kVTCompressionPropertyKey_AverageBitRate, vt::kVTCompressionPropertyKey_DataRateLimits) };
        self.set(average, &CFNumber::from(i64::from(bitrate_bps)), "VTSessionSetProperty(AverageBitRate)")?;
        let (bytes, seconds) = data_rate_limit(bitrate_bps);
        let window = CFArray::from_CFTypes(&[CFNumber::from(bytes), CFNumber::from(seconds)]);
        self.set_optional(limits, &window, "VTSessionSetProperty(DataRateLimits)");
        Ok(())
    }

    fn set_fps(&mut self, fps: f32) -> Result<()> {
        // SAFETY: a CFString constant exported by VideoToolbox.
        let key = unsafe { vt::kVTCompressionPropertyKey_ExpectedFrameRate };
        self.set(key, &CFNumber::from(f64::from(fps)), "VTSessionSetProperty(ExpectedFrameRate)")
    }
}

impl Drop for VtSession {
    fn drop(&mut self) {
        // SAFETY: `raw` is our live session. CompleteFrames delivers pending
        // outputs (the hand-off discards them as stale); after Invalidate no
        // callback runs any more, so the context can be freed; we own one
        // reference to the session and the context box.
        unsafe {
            vt::VTCompressionSessionCompleteFrames(self.raw, kCMTimeInvalid);
            vt::VTCompressionSessionInvalidate(self.raw);
            CFRelease(self.raw);
            drop(Box::from_raw(self.context));
        }
    }
}

/// `VTCompressionOutputCallback`: runs on a VideoToolbox thread for every
/// submitted frame.
extern "C" fn output_callback(
    refcon: *mut c_void,
    frame_refcon: *mut c_void,
    status: OSStatus,
    flags: vt::VTEncodeInfoFlags,
    sample: CMSampleBufferRef,
) {
    // A panic must not unwind into VideoToolbox; `encode` then times out.
    let _ = std::panic::catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: `refcon` is the CallbackContext passed to
        // VTCompressionSessionCreate, alive until the session is invalidated,
        // after which no callback runs.
        let context = unsafe { &*refcon.cast::<CallbackContext>() };
        let token = frame_refcon as usize as u64;
        if status != 0 {
            context.outputs.deliver(Delivery::Failed { token, status });
        } else if flags & vt::kVTEncodeInfo_FrameDropped != 0 || sample.is_null() {
            context.outputs.deliver(Delivery::Dropped { token });
        } else {
            let mut state = context.state.lock().unwrap_or_else(PoisonError::into_inner);
            let CallbackState { params, scratch } = &mut *state;
            // SAFETY: `sample` is the live sample buffer VideoToolbox passed
            // to this callback, valid until it returns.
            match unsafe { read_sample(sample, params, scratch) } {
                Ok((avcc, length_size)) => context.outputs.deliver_avcc(token, avcc, length_size, params),
                Err(Problem::Status(status)) => context.outputs.deliver(Delivery::Failed { token, status }),
                Err(Problem::Avcc(error)) => context.outputs.deliver(Delivery::Malformed { token, error }),
            }
        }
    }));
}

enum Problem {
    Status(OSStatus),
    Avcc(AvccError),
}

/// The AVCC bytes of `sample` and its NAL length size; refreshes `params`
/// from the format description when the access unit holds an IDR.
///
/// # Safety
/// `sample` must be a live CMSampleBuffer of H.264 data, and the returned
/// slice must not outlive it (it may point into its block buffer; the
/// lifetime is tied to `scratch` for the borrow checker only).
unsafe fn read_sample<'a>(
    sample: CMSampleBufferRef,
    params: &mut ParameterSets,
    scratch: &'a mut Vec<u8>,
) -> Result<(&'a [u8], usize), Problem> {
    // SAFETY: `sample` is live (caller); the format description and block
    // buffer are owned by it and live as long; out-pointers are valid locals.
    unsafe {
        let desc = CMSampleBufferGetFormatDescription(sample);
        let block = CMSampleBufferGetDataBuffer(sample);
        if desc.is_null() || block.is_null() {
            return Err(Problem::Status(ENCODER_MALFUNCTION));
        }
        let (mut count, mut header_length): (usize, c_int) = (0, 0);
        let status = CMVideoFormatDescriptionGetH264ParameterSetAtIndex(
            desc,
            0,
            ptr::null_mut(),
            ptr::null_mut(),
            &mut count,
            &mut header_length,
        );
        if status != 0 {
            return Err(Problem::Status(status));
        }
        // Validated by the AVCC parser (1, 2 or 4).
        let length_size = usize::try_from(header_length).unwrap_or(0);

        let (mut at_offset, mut total, mut data): (usize, usize, *mut c_char) = (0, 0, ptr::null_mut());
        let status = CMBlockBufferGetDataPointer(block, 0, &mut at_offset, &mut total, &mut data);
        let avcc: &'a [u8] = if status == 0 && !data.is_null() && at_offset == total {
            std::slice::from_raw_parts(data.cast::<u8>(), total)
        } else {
            let total = CMBlockBufferGetDataLength(block);
            scratch.clear();
            scratch.resize(total, 0);
            let status = CMBlockBufferCopyDataBytes(block, 0, total, scratch.as_mut_ptr().cast());
            if status != 0 {
                return Err(Problem::Status(status));
            }
            scratch
        };

        if avcc::contains_idr(avcc, length_size).map_err(Problem::Avcc)? {
            params.clear();
            for index in 0..count {
                let (mut set, mut size): (*const u8, usize) = (ptr::null(), 0);
                let status = CMVideoFormatDescriptionGetH264ParameterSetAtIndex(
                    desc,
                    index,
                    &mut set,
                    &mut size,
                    ptr::null_mut(),
                    ptr::null_mut(),
                );
                if status != 0 || set.is_null() {
                    return Err(Problem::Status(if status != 0 { status } else { ENCODER_MALFUNCTION }));
                }
                // The pointer is into the format description, which the
                // sample keeps alive; `push` copies the bytes.
                match params.push(std::slice::from_raw_parts(set, size)) {
                    Ok(()) => {}
                    // Anything but SPS/PPS (e.g. an SPS extension) is not needed in band.
                    Err(AvccError::NotAParameterSet(kind)) => {
                        tracing::trace!(kind, "skipping a non-SPS/PPS NAL unit of the format description");
                    }
                    Err(error) => return Err(Problem::Avcc(error)),
                }
            }
            if let Some(id) = params.profile_level_id() {
                tracing::trace!(
                    profile_level_id = format_args!("{:02x}{:02x}{:02x}", id[0], id[1], id[2]),
                    "H.264 parameter sets"
                );
            }
        }
        Ok((avcc, length_size))
    }
}
