//! Peep's transport stage: one encoded H.264 stream → every viewer's browser.
//!
//! [`Share::start`] runs an embedded HTTP server (axum) on its own tokio
//! runtime. It serves the viewer page from `assets/viewer` (embedded in the
//! binary) at an unguessable link, and answers WHEP offers with one WebRTC
//! peer connection (`webrtc` 0.21) per viewer. The app pushes each encoded
//! frame once with [`Share::send_frame`]; the share fans it out, and asks for
//! keyframes and bitrate changes through [`Share::encoder_requests`].
//!
//! Decisions live in plain structs fed with `now` and tested without I/O:
//! [`keyframe::KeyframeCoalescer`], [`rate::RateController`],
//! [`auth::Throttle`], [`codecs::choose_payload_type`].
//!
//! ```no_run
//! use std::time::Instant;
//! use peep_transport::{EncoderRequest, Share, ShareConfig};
//!
//! let share = Share::start(ShareConfig { port: 0, ..ShareConfig::default() })?;
//! println!("Link: {}", share.link());
//! # let (annex_b, keyframe) = (vec![0u8; 4], true);
//! share.send_frame(&annex_b, keyframe, Instant::now());
//! for request in share.encoder_requests().try_iter() {
//!     match request {
//!         EncoderRequest::Keyframe => { /* force an IDR */ }
//!         EncoderRequest::SetBitrate(bps) => { /* retarget the encoder */ let _ = bps; }
//!     }
//! }
//! share.shutdown();
//! # Ok::<(), peep_transport::TransportError>(())
//! ```
#![forbid(unsafe_code)]

pub mod admission;
pub mod auth;
pub mod codecs;
pub mod error;
mod hub;
mod interceptors;
pub mod keyframe;
pub mod offer;
mod path;
mod peer;
pub mod rate;
pub mod relay;
pub mod secret;
mod server;
pub mod share;
pub mod viewer;
mod whep;

pub use admission::Knock;
pub use error::{Result, TransportError};
pub use rate::BitrateRange;
pub use relay::{BuiltinTurnConfig, Relay, RelayClientConfig, RelayConfig, RelayStatus};
pub use secret::Secret;
pub use share::{EncoderRequest, Share, ShareConfig, ShareStats, detect_lan_ip};
pub use viewer::{ViewerPath, ViewerSnapshot, ViewerState};
