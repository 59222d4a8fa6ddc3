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

/// The part of a frame that may differ from the previous published frame,
/// in the frame's pixel coordinates. Backends that know it (X11 DAMAGE, the
/// synthetic source) publish it with the frame; consumers may then redo
/// only that part (e.g. convert only the damaged rows).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DamageRect {
    /// Left edge.
    pub x: u32,
    /// Top edge.
    pub y: u32,
    /// Width (0: nothing changed).
    pub width: u32,
    /// Height (0: nothing changed).
    pub height: u32,
}

impl DamageRect {
    /// Nothing changed.
    pub const EMPTY: DamageRect = DamageRect { x: 0, y: 0, width: 0, height: 0 };

    /// Whether nothing changed.
    pub fn is_empty(&self) -> bool {
        self.width == 0 || self.height == 0
    }

    /// The smallest rectangle covering both.
    pub fn union(self, other: DamageRect) -> DamageRect {
        if self.is_empty() {
            return other;
        }
        if other.is_empty() {
            return self;
        }
        let (x0, y0) = (self.x.min(other.x), self.y.min(other.y));
        let x1 = (self.x + self.width).max(other.x + other.width);
        let y1 = (self.y + self.height).max(other.y + other.height);
        DamageRect { x: x0, y: y0, width: x1 - x0, height: y1 - y0 }
    }

    /// A rectangle given by signed coordinates (e.g. X11's), clipped to a
    /// `width`×`height` frame.
    pub fn clipped(x: i64, y: i64, w: i64, h: i64, width: u32, height: u32) -> DamageRect {
        let (x0, y0) = (x.max(0), y.max(0));
        let (x1, y1) = ((x + w).min(i64::from(width)), (y + h).min(i64::from(height)));
        if x1 <= x0 || y1 <= y0 {
            return DamageRect::EMPTY;
        }
        DamageRect { x: x0 as u32, y: y0 as u32, width: (x1 - x0) as u32, height: (y1 - y0) as u32 }
    }

    /// Union of two "may have changed" areas where `None` means "unknown:
    /// the whole frame".
    pub fn union_opt(a: Option<DamageRect>, b: Option<DamageRect>) -> Option<DamageRect> {
        Some(a?.union(b?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn damage_unions_and_clips() {
        let a = DamageRect { x: 10, y: 20, width: 5, height: 5 };
        let b = DamageRect { x: 2, y: 22, width: 3, height: 10 };
        assert_eq!(a.union(b), DamageRect { x: 2, y: 20, width: 13, height: 12 });
        assert_eq!(a.union(DamageRect::EMPTY), a);
        assert_eq!(DamageRect::EMPTY.union(b), b);
        assert_eq!(DamageRect::clipped(-5, 90, 20, 20, 100, 100), DamageRect { x: 0, y: 90, width: 15, height: 10 });
        assert!(DamageRect::clipped(200, 0, 5, 5, 100, 100).is_empty());
        assert_eq!(DamageRect::union_opt(Some(a), None), None);
        assert_eq!(DamageRect::union_opt(Some(a), Some(b)), Some(a.union(b)));
    }
}
