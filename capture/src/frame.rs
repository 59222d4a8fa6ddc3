//! Frame metadata.

use std::time::Instant;

/// Pixel layout of a captured frame. Both are 4 bytes per pixel, B,G,R,A in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PixelFormat {
    /// B,G,R,A with meaningful alpha.
    Bgra,
    /// B,G,R,X: the fourth byte is padding (X11 depth 24).
    Bgrx,
}

impl PixelFormat {
    /// Bytes per pixel (4 for both formats).
    pub const fn bytes_per_pixel(self) -> usize {
        4
    }
}

/// Describes one captured frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameMeta {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Bytes from the start of one row to the next (≥ `width * 4`).
    pub stride_bytes: usize,
    /// Pixel layout.
    pub format: PixelFormat,
    /// When the pixels were read from the source.
    pub captured_at: Instant,
    /// Sequence number of the capture tick that produced this frame; gaps mean
    /// the ring dropped frames the consumer did not take in time.
    pub seq: u64,
    /// Whether the content may differ from the previous delivered frame.
    /// `false` for keep-alive frames of an unchanged screen.
    pub changed: bool,
}

impl FrameMeta {
    /// Bytes the pixel data occupies (`stride_bytes * height`).
    pub fn len_bytes(&self) -> usize {
        self.stride_bytes * self.height as usize
    }
}
