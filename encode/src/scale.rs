//! Downscaling for the quality presets' resolution policy: a 2×2 box filter
//! on I420 planes, applied until the frame fits the preset's height. Halving
//! keeps text edges aligned to the pixel grid, so small text degrades more
//! gracefully than with arbitrary ratios.

use crate::convert::I420Frame;

/// Halves `src` in both directions into `dst` (odd sizes round up).
/// Allocates only when `dst` grows.
pub fn downscale_half(src: &I420Frame, dst: &mut I420Frame) {
    let (w, h) = (src.width().div_ceil(2).max(1), src.height().div_ceil(2).max(1));
    dst.resize(w, h);
    let (dst_y_stride, dst_uv_stride) = (dst.y_stride(), dst.uv_stride());
    let (dst_cw, dst_ch) = (dst.chroma_width() as usize, dst.chroma_height() as usize);
    let (y, u, v) = dst.planes_mut();
    let (sw, sh) = (src.width() as usize, src.height() as usize);
    let (scw, sch) = (src.chroma_width() as usize, src.chroma_height() as usize);
    half_plane(src.y(), src.y_stride(), sw, sh, y, dst_y_stride, (w as usize, h as usize));
    half_plane(src.u(), src.uv_stride(), scw, sch, u, dst_uv_stride, (dst_cw, dst_ch));
    half_plane(src.v(), src.uv_stride(), scw, sch, v, dst_uv_stride, (dst_cw, dst_ch));
    dst.pad_edges();
}

/// The number of halvings that bring `height` to at most `max_height`.
pub fn halvings_for(height: u32, max_height: u32) -> u32 {
    let mut h = height;
    let mut n = 0;
    while h > max_height.max(1) && h > 1 {
        h = h.div_ceil(2);
        n += 1;
    }
    n
}

fn half_plane(
    src: &[u8],
    stride: usize,
    w: usize,
    h: usize,
    dst: &mut [u8],
    dst_stride: usize,
    (dw, dh): (usize, usize),
) {
    for dy in 0..dh {
        let (y0, y1) = ((2 * dy).min(h - 1), (2 * dy + 1).min(h - 1));
        let (r0, r1) = (&src[y0 * stride..y0 * stride + w], &src[y1 * stride..y1 * stride + w]);
        let out = &mut dst[dy * dst_stride..dy * dst_stride + dw];
        for (dx, o) in out.iter_mut().enumerate() {
            let (x0, x1) = ((2 * dx).min(w - 1), (2 * dx + 1).min(w - 1));
            let sum = u16::from(r0[x0]) + u16::from(r0[x1]) + u16::from(r1[x0]) + u16::from(r1[x1]);
            *o = ((sum + 2) / 4) as u8;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn halves_sizes_and_averages_blocks() {
        for (w, h) in [(3840, 2160), (1919, 1079), (3, 3), (1, 1)] {
            let mut src = I420Frame::new(w, h);
            let (ys, cw, us) = (src.y_stride(), src.chroma_width() as usize, src.uv_stride());
            {
                let (y, u, v) = src.planes_mut();
                for row in 0..h as usize {
                    for col in 0..w as usize {
                        y[row * ys + col] = ((col / 2 + row / 2) % 2 * 200) as u8;
                    }
                }
                for row in 0..(h as usize).div_ceil(2) {
                    u[row * us..row * us + cw].fill(90);
                    v[row * us..row * us + cw].fill(160);
                }
            }
            let mut dst = I420Frame::new(2, 2);
            downscale_half(&src, &mut dst);
            assert_eq!((dst.width(), dst.height()), (w.div_ceil(2), h.div_ceil(2)));
            // Each 2×2 block of the checkerboard is uniform: averaging keeps it exact.
            let expected = |col: usize, row: usize| ((col + row) % 2 * 200) as u8;
            for row in 0..(h as usize / 2) {
                for col in 0..(w as usize / 2) {
                    assert_eq!(dst.y()[row * dst.y_stride() + col], expected(col, row), "{w}x{h} at {col},{row}");
                }
            }
            assert_eq!(dst.u()[0], 90);
            assert_eq!(dst.v()[0], 160);
        }
    }

    #[test]
    fn halvings_fit_the_height() {
        assert_eq!(halvings_for(2160, 1080), 1);
        assert_eq!(halvings_for(1080, 1080), 0);
        assert_eq!(halvings_for(1080, 720), 1);
        assert_eq!(halvings_for(2160, 720), 2);
        assert_eq!(halvings_for(5, 0), 3);
    }
}
