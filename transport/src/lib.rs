//! Peep's transport stage: one encoded stream per codec in use → every
//! viewer's browser (H.264 where the browser has it, VP8 otherwise).
//!
//! [`Share::start`] runs an embedded HTTP server (axum) on its own tokio
//! runtime. It serves the viewer page from `assets/viewer` (embedded in the
//! binary) at an unguessable link, and answers WHEP offers with one WebRTC
//! peer connection (`webrtc` 0.21) per viewer, each with the codec negotiated
//! from its offer ([`codecs`]). The app runs one encode per codec in
//! [`Share::codecs_in_use`] and pushes each encoded frame once with
//! [`Share::send_encoded`]; the share fans it out to that codec's viewers,
//! and asks for keyframes and bitrate changes, per codec, through
//! [`Share::encoder_requests`].
//!
//! [`Share::start_publish`] also sends the stream to a media server with
//! WHIP ([`whip`]), beside the local viewers, so an audience of any size
//! can watch there.
//!
//! Decisions live in plain structs fed with `now` and tested without I/O:
//! [`keyframe::KeyframeCoalescer`], [`rate::RateController`],
//! [`auth::Throttle`], [`codecs::choose_codec`], [`codecs::choose_payload_type`], and each viewer's
//! rate control: the bandwidth estimator [`bwe::Bwe`] and the sender queue
//! [`pacer::Pacer`], wired together in [`sender::SendController`] and driven
//! by thin interceptors in `rtc`'s chain. [`Share::send_backlog`] tells the
//! encoder how long the viewers' send queues are.
//!
//! ```no_run
//! use std::time::Instant;
//! use peep_transport::{EncoderRequest, Share, ShareConfig, VideoCodec};
//!
//! let share = Share::start(ShareConfig { port: 0, ..ShareConfig::default() })?;
//! println!("Link: {}", share.link());
//! for codec in share.codecs_in_use().iter() {
//!     // run (or keep running) an encoder for `codec`, then for each frame:
//!     # let (frame, keyframe) = (vec![0u8; 4], true);
//!     share.send_encoded(codec, &frame, keyframe, Instant::now());
//! }
//! for request in share.encoder_requests().try_iter() {
//!     match request {
//!         EncoderRequest::Keyframe(codec) => { /* force a keyframe */ let _ = codec; }
//!         EncoderRequest::SetBitrate(codec, bps) => { /* retarget that encoder */ let _ = (codec, bps); }
//!     }
//! }
//! share.shutdown();
//! # Ok::<(), peep_transport::TransportError>(())
//! ```
#![forbid(unsafe_code)]

pub mod admission;
pub mod auth;
pub mod bwe;
pub mod codecs;
pub mod error;
#[doc(hidden)]
pub mod fuzz;
mod hub;
mod interceptors;
pub mod keyframe;
pub mod metrics;
pub mod offer;
pub mod pacer;
mod path;
mod peer;
pub mod rate;
pub mod relay;
pub mod secret;
pub mod sender;
mod sendside;
mod server;
pub mod share;
mod track;
pub mod viewer;
pub mod vp9;
mod whep;
pub mod whip;

pub use admission::Knock;
pub use codecs::{CodecSet, VideoCodec};
pub use error::{Result, TransportError};
pub use rate::{BitrateRange, SendBacklog};
pub use relay::{BuiltinTurnConfig, Relay, RelayClientConfig, RelayConfig, RelayStatus};
pub use secret::Secret;
pub use share::{EncoderRequest, Share, ShareConfig, ShareStats, detect_lan_ip};
pub use viewer::{ViewerPath, ViewerSnapshot, ViewerState};
pub use whip::{PublishSnapshot, PublishState, WhipConfig};
