//! Peep's encode stage: captured BGRA frames → YUV 4:2:0 → H.264 (Annex-B),
//! or VP8/VP9 for browsers without H.264.
//!
//! - [`convert`] turns BGRA/BGRx into [`I420Frame`] or [`Nv12Frame`] planes
//!   (BT.709, limited range) with yuvutils-rs SIMD, into buffers the caller
//!   owns and reuses; [`convert::reference`] is the scalar twin tests check
//!   it against.
//! - [`Encoder`] is the narrow trait the pipeline drives; [`OpenH264Encoder`]
//!   implements it with Cisco's OpenH264 (constrained baseline, so Chromium
//!   can receive it). Bitrate, frame rate and keyframe requests can change
//!   at run time without restarting the stream. [`VpxEncoder`] does the same
//!   for VP8 and VP9 with the system libvpx ([`vpx`], [`vpx_ffi`]).
//! - [`budget`] decides, without an encoder, when to skip a frame (a leaky
//!   bucket and the send queue) and which QP keeps a keyframe in its budget.
//! - [`pool`] recycles output buffers across threads.
//! - [`quality`] has the PSNR helpers the tests and the tuning example use.
//!
//! Drive it once per captured frame, reusing every buffer; after the first
//! frame at a given size nothing on this path allocates:
//!
//! ```
//! use peep_encode::{bgra_to_i420, EncodeOutcome, EncodedFrame, Encoder, I420Frame,
//!                   OpenH264Config, OpenH264Encoder};
//! use std::time::Duration;
//!
//! # fn main() -> peep_encode::Result<()> {
//! let (width, height) = (320, 180);
//! let stride_bytes = width as usize * 4;
//! let bgra = vec![0x40u8; stride_bytes * height as usize]; // a captured frame
//!
//! let mut encoder = OpenH264Encoder::new(OpenH264Config {
//!     bitrate_bps: 1_000_000,
//!     ..OpenH264Config::default()
//! })?;
//! let mut yuv = I420Frame::new(width, height);
//! let mut out = EncodedFrame::with_capacity(64 * 1024);
//!
//! for i in 0..3u32 {
//!     bgra_to_i420(&bgra, width, height, stride_bytes, &mut yuv)?;
//!     let pts = Duration::from_millis(u64::from(i) * 33);
//!     if encoder.encode(&yuv, pts, &mut out)? == EncodeOutcome::Encoded {
//!         assert_eq!(out.keyframe, i == 0);
//!         assert_eq!(&out.data[..4], &[0, 0, 0, 1]); // Annex-B
//!         // hand `out.data` to the transport
//!     }
//! }
//! encoder.set_bitrate(500_000)?; // e.g. from congestion control
//! encoder.request_keyframe(); // e.g. on a viewer's PLI
//! # Ok(())
//! # }
//! ```

pub mod avcc;
pub mod budget;
pub mod content;
pub mod convert;
pub mod encoder;
pub mod error;
#[doc(hidden)]
pub mod fuzz;
pub mod openh264;
pub mod pool;
pub mod quality;
pub mod scale;
#[cfg(target_os = "macos")]
pub mod videotoolbox;
pub mod videotoolbox_core;
pub mod vpx;
pub mod vpx_ffi;

pub use crate::openh264::{Complexity, OpenH264Config, OpenH264Encoder, RateControl, Usage};
pub use content::{ContentClass, ContentClassifier, PaintOver};
pub use convert::{I420Frame, Nv12Frame, bgra_to_i420, bgra_to_nv12};
pub use encoder::{Codec, EncodeOutcome, EncodedFrame, Encoder};
pub use error::{EncodeError, Result};
pub use pool::{BufferPool, PooledBuf};
pub use quality::{psnr, psnr_plane};
pub use vpx::{VpxCodec, VpxConfig, VpxDecoder, VpxEncoder};
