//! Machine-readable frame marks: a frame counter and a capture timestamp drawn
//! as large black/white blocks, robust to H.264 compression and scaling.
//!
//! Layout (all in units of one block of `block_px(width)` pixels, from the
//! top-left corner of the frame): one block of black quiet zone, then three
//! rows of [`BITS_PER_ROW`] blocks:
//!
//! | row | content                                                  |
//! |-----|----------------------------------------------------------|
//! | 0   | frame counter, 32 bits, most significant first           |
//! | 1   | timestamp in ms (UNIX time modulo 2³²), 32 bits          |
//! | 2   | CRC-16/CCITT-FALSE of the 8 bytes above (16 bits), then the fixed pattern `1010…` (16 bits) |
//!
//! A set bit is white (255,255,255), a clear bit black. The reader samples the
//! middle half of each block and thresholds its luma at 128, so it works on a
//! BGRA frame, a decoded YUV frame, or an RGBA canvas read back in a browser.

/// Bits in one row of blocks.
pub const BITS_PER_ROW: usize = 32;
/// Rows of blocks.
pub const ROWS: usize = 3;
const SYNC_PATTERN: u16 = 0b1010_1010_1010_1010;

/// What a mark carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FrameMark {
    /// Frame counter chosen by the producer.
    pub counter: u32,
    /// Capture time in milliseconds since the UNIX epoch, modulo 2³².
    pub timestamp_ms: u32,
}

impl FrameMark {
    /// A mark stamped with the current wall-clock time.
    pub fn now(counter: u32) -> Self {
        Self { counter, timestamp_ms: unix_ms_u32() }
    }

    fn check(&self) -> u16 {
        let mut bytes = [0u8; 8];
        bytes[..4].copy_from_slice(&self.counter.to_be_bytes());
        bytes[4..].copy_from_slice(&self.timestamp_ms.to_be_bytes());
        crc16_ccitt(&bytes)
    }

    fn rows(&self) -> [u32; ROWS] {
        [self.counter, self.timestamp_ms, (u32::from(self.check()) << 16) | u32::from(SYNC_PATTERN)]
    }
}

/// Wall-clock milliseconds since the UNIX epoch, modulo 2³² (what marks carry).
pub fn unix_ms_u32() -> u32 {
    let ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0);
    // Truncation is the documented wrap-around.
    ms as u32
}

/// Side of one block in pixels for a frame `width` pixels wide.
pub fn block_px(width: usize) -> usize {
    ((width / 64).clamp(4, 32)) & !1
}

/// Width and height in pixels of the area the mark covers (quiet zone included).
pub fn mark_area(width: usize) -> (usize, usize) {
    let b = block_px(width);
    ((BITS_PER_ROW + 2) * b, (ROWS + 2) * b)
}

/// Draws `mark` into a BGRA/BGRx frame. Parts outside the frame are clipped, so
/// tiny frames simply carry an unreadable mark.
pub fn draw_mark(bgra: &mut [u8], width: usize, height: usize, stride_bytes: usize, mark: FrameMark) {
    let b = block_px(width);
    let (area_w, area_h) = mark_area(width);
    let rows = mark.rows();
    for y in 0..area_h.min(height) {
        let Some(line) = bgra.get_mut(y * stride_bytes..y * stride_bytes + width.min(area_w) * 4) else {
            return;
        };
        let by = y / b;
        for (x, px) in line.chunks_exact_mut(4).enumerate() {
            let bx = x / b;
            let on = (1..=ROWS).contains(&by)
                && (1..=BITS_PER_ROW).contains(&bx)
                && (rows[by - 1] >> (BITS_PER_ROW - bx)) & 1 == 1;
            let v = if on { 255 } else { 0 };
            px.copy_from_slice(&[v, v, v, 255]);
        }
    }
}

/// Reads a mark given a luma (or any brightness) sampler over a frame of
/// `width`×`height`. Returns `None` when the frame is too small or the
/// check bits or sync pattern do not match.
pub fn read_mark(width: usize, height: usize, luma: impl Fn(usize, usize) -> u8) -> Option<FrameMark> {
    let b = block_px(width);
    let (area_w, area_h) = mark_area(width);
    if area_w > width || area_h > height {
        return None;
    }
    let quarter = (b / 4).max(1);
    let mut rows = [0u32; ROWS];
    for (r, row) in rows.iter_mut().enumerate() {
        for bit in 0..BITS_PER_ROW {
            let x0 = (bit + 1) * b;
            let y0 = (r + 1) * b;
            let mut sum = 0u32;
            let mut n = 0u32;
            for y in y0 + quarter..y0 + b - quarter {
                for x in x0 + quarter..x0 + b - quarter {
                    sum += u32::from(luma(x, y));
                    n += 1;
                }
            }
            *row = (*row << 1) | u32::from(sum / n.max(1) >= 128);
        }
    }
    let mark = FrameMark { counter: rows[0], timestamp_ms: rows[1] };
    let ok = rows[2] & 0xffff == u32::from(SYNC_PATTERN) && (rows[2] >> 16) as u16 == mark.check();
    ok.then_some(mark)
}

/// Reads a mark from a BGRA/BGRx frame.
pub fn read_mark_bgra(bgra: &[u8], width: usize, height: usize, stride_bytes: usize) -> Option<FrameMark> {
    read_mark(width, height, |x, y| {
        let i = y * stride_bytes + x * 4;
        let (b, g, r) = (u32::from(bgra[i]), u32::from(bgra[i + 1]), u32::from(bgra[i + 2]));
        ((r * 77 + g * 150 + b * 29) >> 8) as u8
    })
}

/// Reads a mark from the Y plane of a decoded frame (limited or full range).
pub fn read_mark_luma(y_plane: &[u8], width: usize, height: usize, stride: usize) -> Option<FrameMark> {
    read_mark(width, height, |x, y| y_plane[y * stride + x])
}

/// CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF), small and easy to port to JS.
pub fn crc16_ccitt(data: &[u8]) -> u16 {
    let mut crc: u16 = 0xffff;
    for &byte in data {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 { (crc << 1) ^ 0x1021 } else { crc << 1 };
        }
    }
    crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc_matches_reference_vector() {
        assert_eq!(crc16_ccitt(b"123456789"), 0x29b1);
    }

    #[test]
    fn round_trip_at_several_widths() {
        for (w, h) in [(160, 90), (640, 360), (1919, 1079), (3840, 2160)] {
            let stride = w * 4 + 12;
            let mut buf = vec![77u8; stride * h];
            let mark = FrameMark { counter: 0xdead_beef, timestamp_ms: 123_456_789 };
            draw_mark(&mut buf, w, h, stride, mark);
            assert_eq!(read_mark_bgra(&buf, w, h, stride), Some(mark), "{w}x{h}");
        }
    }

    #[test]
    fn corrupted_mark_is_rejected() {
        let (w, h) = (640, 360);
        let mut buf = vec![0u8; w * 4 * h];
        draw_mark(&mut buf, w, h, w * 4, FrameMark { counter: 5, timestamp_ms: 9 });
        // Flip one counter block to white.
        let b = block_px(w);
        for y in b..2 * b {
            for x in b..2 * b {
                buf[(y * w + x) * 4..(y * w + x) * 4 + 3].fill(255);
            }
        }
        assert_eq!(read_mark_bgra(&buf, w, h, w * 4), None);
    }

    #[test]
    fn tiny_frames_are_clipped_not_panicking() {
        let mut one = [0u8; 4];
        draw_mark(&mut one, 1, 1, 4, FrameMark { counter: 1, timestamp_ms: 1 });
        assert_eq!(read_mark_bgra(&one, 1, 1, 4), None);
    }
}
