//! The fixed-point model every conversion kernel implements, bit for bit:
//! BT.709 limited range with 7-bit luma and 15-bit chroma coefficients.
//!
//! * Luma: `Y = (8·B + 79·G + 23·R + 2112) >> 7` (coefficients
//!   `K · 219/255 · 128` rounded so they sum to 110; 2112 = 16·128 + 64
//!   adds the offset and rounds). Within ±1 of the exact formula (about a
//!   quarter of all colours are one step off), as libyuv's luma. 7 bits
//!   keep every coefficient below 128, so AVX2's `pmaddubsw` takes the
//!   pixels unchanged; 8-bit coefficients (157 for G) needed a sign flip
//!   of every pixel first, which made the AVX2 kernel ≈ 7 % slower than
//!   libyuv at 1080p.
//! * Chroma of a 2x2 block (edge blocks repeat their pixels): each column's
//!   two samples are averaged rounding up, `(a + b + 1) >> 1` (one
//!   instruction in SIMD: `pavgb`, `vrhadd`), and the two column averages
//!   added exactly, giving `S ≈ ΣB/2, ΣG/2, ΣR/2` (≤ 510). Then
//!   `U = (14392·S_B − 11094·S_G − 3298·S_R + 2²³ + 2¹⁵) >> 16` and
//!   `V = (−1320·S_B − 13072·S_G + 14392·S_R + 2²³ + 2¹⁵) >> 16`:
//!   coefficients at 2¹⁵ (twice the 2¹⁴ ones, for the halved sums) summing
//!   to 0, so grey stays exactly 128. The one rounding adds at most half a
//!   step to a channel's average, ≤ 0.22 of a chroma step.
//!
//! [`rows`] is the scalar implementation, used for the columns the SIMD
//! kernels leave over and on machines without them; the SIMD kernels are
//! tested against it for exact equality.

/// Luma coefficients for B, G, R (the 4th byte is ignored).
pub(crate) const Y_COEFFS: [u8; 3] = [8, 79, 23];
/// Offset (16 · 128) plus rounding (64) for luma.
pub(crate) const Y_BIAS: u16 = 2112;
/// Luma fixed-point shift.
pub(crate) const Y_SHIFT: u32 = 7;
/// U coefficients for S_B, S_G, S_R.
pub(crate) const U_COEFFS: [i16; 3] = [14392, -11094, -3298];
/// V coefficients for S_B, S_G, S_R.
pub(crate) const V_COEFFS: [i16; 3] = [-1320, -13072, 14392];
/// Offset (128 · 2¹⁶) plus rounding (2¹⁵) for chroma.
pub(crate) const UV_BIAS: i32 = (128 << 16) + (1 << 15);
/// `UV_BIAS` as a product of two 16-bit numbers, so SIMD kernels can add it
/// in the multiply-add that has a free lane (`BIAS_LANE · BIAS_COEFF`).
pub(crate) const BIAS_LANE: i16 = 514;
/// See [`BIAS_LANE`].
pub(crate) const BIAS_COEFF: i16 = 16384;
const _: () = assert!(BIAS_LANE as i32 * BIAS_COEFF as i32 == UV_BIAS);

/// Luma of one pixel.
#[inline]
pub(crate) fn luma(b: u8, g: u8, r: u8) -> u8 {
    let sum = u32::from(Y_COEFFS[0]) * u32::from(b)
        + u32::from(Y_COEFFS[1]) * u32::from(g)
        + u32::from(Y_COEFFS[2]) * u32::from(r)
        + u32::from(Y_BIAS);
    (sum >> Y_SHIFT) as u8 // ≤ 30162 >> 7 = 235
}

/// The rounded-up average of a column's two samples.
#[inline]
pub(crate) fn avg(a: u8, b: u8) -> u16 {
    (u16::from(a) + u16::from(b) + 1) >> 1
}

/// Cb and Cr of a 2x2 block from the sums of its two column averages
/// (each ≤ 2 · 255).
#[inline]
pub(crate) fn chroma(sum_b: u16, sum_g: u16, sum_r: u16) -> (u8, u8) {
    let (b, g, r) = (i32::from(sum_b), i32::from(sum_g), i32::from(sum_r));
    let u = i32::from(U_COEFFS[0]) * b + i32::from(U_COEFFS[1]) * g + i32::from(U_COEFFS[2]) * r + UV_BIAS;
    let v = i32::from(V_COEFFS[0]) * b + i32::from(V_COEFFS[1]) * g + i32::from(V_COEFFS[2]) * r + UV_BIAS;
    ((u >> 16).clamp(0, 255) as u8, (v >> 16).clamp(0, 255) as u8)
}

/// Where a row pair's chroma goes.
#[derive(Debug)]
pub(crate) enum ChromaRow<'a> {
    /// I420: one row of the U plane and one of the V plane.
    Planar(&'a mut [u8], &'a mut [u8]),
    /// NV12: one row of the interleaved UV plane.
    Interleaved(&'a mut [u8]),
}

/// Converts pixels `from..width` (`from` even) of a row pair: luma of both
/// rows (`y1` is `None` for an odd last row, whose chroma then counts
/// `src0` twice: pass `src1 = src0`) and the chroma of their blocks.
///
/// # Panics
/// If a slice is shorter than `width` pixels / samples: a caller bug.
pub(crate) fn rows(
    src0: &[u8],
    src1: &[u8],
    y0: &mut [u8],
    mut y1: Option<&mut [u8]>,
    chroma_row: &mut ChromaRow<'_>,
    from: usize,
    width: usize,
) {
    debug_assert!(from.is_multiple_of(2));
    for cx in from / 2..width.div_ceil(2) {
        let (x0, x1) = (2 * cx, (2 * cx + 1).min(width - 1));
        let (p00, p01) = (&src0[x0 * 4..x0 * 4 + 3], &src0[x1 * 4..x1 * 4 + 3]);
        let (p10, p11) = (&src1[x0 * 4..x0 * 4 + 3], &src1[x1 * 4..x1 * 4 + 3]);
        y0[x0] = luma(p00[0], p00[1], p00[2]);
        y0[x1] = luma(p01[0], p01[1], p01[2]);
        if let Some(y1) = y1.as_deref_mut() {
            y1[x0] = luma(p10[0], p10[1], p10[2]);
            y1[x1] = luma(p11[0], p11[1], p11[2]);
        }
        let sum = |c: usize| avg(p00[c], p10[c]) + avg(p01[c], p11[c]);
        let (u, v) = chroma(sum(0), sum(1), sum(2));
        match chroma_row {
            ChromaRow::Planar(up, vp) => {
                up[cx] = u;
                vp[cx] = v;
            }
            ChromaRow::Interleaved(uv) => {
                uv[2 * cx] = u;
                uv[2 * cx + 1] = v;
            }
        }
    }
}
