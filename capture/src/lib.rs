//! Peep's capture stage: sources → [`FrameRing`].
pub mod error;
pub mod frame;
pub mod marks;
pub mod synthetic;

pub use error::{CaptureError, Result};
pub use frame::{FrameMeta, PixelFormat};
