//! The `peep` application: wires capture → encode (→ transport) together and
//! exposes the command line. The binary in `main.rs` only calls [`cli::run`].
//!
//! ```no_run
//! use peep::pipeline::{Pipeline, PipelineConfig};
//! use peep_capture::backend::synthetic::SyntheticBackend;
//! use peep_capture::synthetic::Scene;
//! use peep_encode::{OpenH264Config, OpenH264Encoder};
//!
//! let source = SyntheticBackend::new(1280, 720, Scene::Typing)?;
//! let encoder = OpenH264Encoder::new(OpenH264Config::default())?;
//! let mut pipeline = Pipeline::start(Box::new(source), Box::new(encoder), PipelineConfig::default())?;
//! while let Some(packet) = pipeline.recv_timeout(std::time::Duration::from_secs(1))? {
//!     println!("{} bytes, keyframe: {}", packet.data.len(), packet.keyframe);
//! }
//! # Ok::<(), anyhow::Error>(())
//! ```
#![forbid(unsafe_code)]

pub mod cli;
pub mod console;
#[doc(hidden)]
pub mod fuzz;
pub mod governor;
pub mod gui;
pub mod metrics;
pub mod pipeline;
pub mod presets;
pub mod relay;
pub mod session;
pub mod settings;
pub mod sources;
pub mod stats;
