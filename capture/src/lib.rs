//! Peep's capture stage: sources → [`FrameRing`](ring).
//!
//! A [`backend::CaptureBackend`] (X11 with MIT-SHM, or the synthetic test
//! source) is driven by the capture thread ([`driver::spawn_capture`]) at the
//! requested frame rate and writes into a triple-buffered [`ring`]; the
//! encoder thread takes the newest frame from the ring's consumer end.
//!
//! ```no_run
//! use std::sync::Arc;
//! use std::time::Duration;
//! use peep_capture::{backend::x11::X11Session, driver, frame_ring, SourceId, Take};
//!
//! let session = X11Session::connect()?;
//! let backend = session.capture(&SourceId::Screen)?;
//! let (producer, mut consumer) = frame_ring();
//! let _capture = driver::spawn_capture(Box::new(backend), producer, Default::default(), Arc::default())?;
//! if let Take::Frame(frame) = consumer.take_timeout(Duration::from_secs(1)) {
//!     println!("{}x{} frame, {} bytes", frame.meta().width, frame.meta().height, frame.data().len());
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod backend;
pub mod driver;
pub mod error;
pub mod frame;
pub mod marks;
#[cfg(any(target_os = "linux", target_os = "macos"))]
pub mod platform;
pub mod ring;
pub mod schedule;
pub mod source;
pub mod synthetic;
#[cfg(target_os = "linux")]
pub mod testing;

pub use error::{CaptureError, Result};
pub use frame::{DamageRect, FrameMeta, PixelFormat};
pub use ring::{FrameRef, RingConsumer, RingProducer, SlotMemory, Take, WriteSlot, frame_ring};
pub use source::{SourceId, SourceInfo, SourceKind, Thumbnail};
