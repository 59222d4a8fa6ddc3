//! NEON kernel of the [`super::fixed`] model (aarch64, where NEON is always
//! present): 16 pixels of a row pair per step. `vld4q_u8` splits B, G, R,
//! A into their own registers, so luma is three widening multiply-adds and
//! the chroma column sums a rounding halving add (`vrhadd`) and a pairwise
//! widening add (`vpaddl`).

use std::arch::aarch64::*;

use super::fixed::{ChromaRow, U_COEFFS, UV_BIAS, V_COEFFS, Y_BIAS, Y_COEFFS, Y_SHIFT};

/// Pixels per step.
const STEP: usize = 16;

/// Converts the first `width / 16 * 16` pixels of a row pair (see
/// [`super::fixed::rows`] for the arguments) and returns how many it did.
///
/// # Panics
/// If a slice is shorter than `width` pixels / samples.
#[target_feature(enable = "neon")]
pub(crate) fn rows(
    src0: &[u8],
    src1: &[u8],
    y0: &mut [u8],
    mut y1: Option<&mut [u8]>,
    chroma_row: &mut ChromaRow<'_>,
    width: usize,
) -> usize {
    let n = width / STEP * STEP;
    // Bounds, checked once: every access below stays within `n` pixels.
    assert!(src0.len() >= n * 4 && src1.len() >= n * 4 && y0.len() >= n);
    assert!(y1.as_deref().is_none_or(|y| y.len() >= n));
    match chroma_row {
        ChromaRow::Planar(u, v) => assert!(u.len() >= n / 2 && v.len() >= n / 2),
        ChromaRow::Interleaved(uv) => assert!(uv.len() >= n),
    }
    let mut x = 0;
    while x < n {
        // SAFETY: 64 bytes at x · 4, and x + 16 ≤ n (asserted above).
        let (a, b) = unsafe { (vld4q_u8(src0.as_ptr().add(x * 4)), vld4q_u8(src1.as_ptr().add(x * 4))) };
        // SAFETY: 16 bytes at x, x + 16 ≤ n (asserted above).
        unsafe { vst1q_u8(y0.as_mut_ptr().add(x), luma16(a)) };
        if let Some(y1) = y1.as_deref_mut() {
            // SAFETY: as above.
            unsafe { vst1q_u8(y1.as_mut_ptr().add(x), luma16(b)) };
        }
        // Column sums of 8 blocks: rounded vertical average (`vrhadd`),
        // exact horizontal pairwise sum (≤ 510).
        let sum_b = vreinterpretq_s16_u16(vpaddlq_u8(vrhaddq_u8(a.0, b.0)));
        let sum_g = vreinterpretq_s16_u16(vpaddlq_u8(vrhaddq_u8(a.1, b.1)));
        let sum_r = vreinterpretq_s16_u16(vpaddlq_u8(vrhaddq_u8(a.2, b.2)));
        let u = chroma8(sum_b, sum_g, sum_r, U_COEFFS);
        let v = chroma8(sum_b, sum_g, sum_r, V_COEFFS);
        let cx = x / 2;
        match chroma_row {
            // SAFETY: 8 samples at cx, cx + 8 ≤ n / 2 (asserted above).
            ChromaRow::Planar(up, vp) => unsafe {
                vst1_u8(up.as_mut_ptr().add(cx), u);
                vst1_u8(vp.as_mut_ptr().add(cx), v);
            },
            // SAFETY: 16 bytes at 2 · cx, 2 · cx + 16 ≤ n (asserted above).
            ChromaRow::Interleaved(uv) => unsafe { vst2_u8(uv.as_mut_ptr().add(2 * cx), uint8x8x2_t(u, v)) },
        }
        x += STEP;
    }
    n
}

/// Luma of 16 deinterleaved pixels.
#[target_feature(enable = "neon")]
fn luma16(p: uint8x16x4_t) -> uint8x16_t {
    let (cb, cg, cr) = (vdup_n_u8(Y_COEFFS[0]), vdup_n_u8(Y_COEFFS[1]), vdup_n_u8(Y_COEFFS[2]));
    let bias = vdupq_n_u16(Y_BIAS);
    const { assert!(Y_SHIFT == 7) };
    // ≤ 110 · 255 + 2112 = 30162: fits u16.
    let lo = vmlal_u8(vmlal_u8(vmlal_u8(bias, vget_low_u8(p.0), cb), vget_low_u8(p.1), cg), vget_low_u8(p.2), cr);
    let hi = vmlal_u8(vmlal_u8(vmlal_u8(bias, vget_high_u8(p.0), cb), vget_high_u8(p.1), cg), vget_high_u8(p.2), cr);
    vcombine_u8(vshrn_n_u16::<7>(lo), vshrn_n_u16::<7>(hi))
}

/// One chroma channel of 8 blocks from their sums.
#[target_feature(enable = "neon")]
fn chroma8(sum_b: int16x8_t, sum_g: int16x8_t, sum_r: int16x8_t, c: [i16; 3]) -> uint8x8_t {
    let bias = vdupq_n_s32(UV_BIAS);
    let lo = vmlal_n_s16(
        vmlal_n_s16(vmlal_n_s16(bias, vget_low_s16(sum_b), c[0]), vget_low_s16(sum_g), c[1]),
        vget_low_s16(sum_r),
        c[2],
    );
    let hi = vmlal_n_s16(
        vmlal_n_s16(vmlal_n_s16(bias, vget_high_s16(sum_b), c[0]), vget_high_s16(sum_g), c[1]),
        vget_high_s16(sum_r),
        c[2],
    );
    // (… ) >> 16 is 16..=240: narrowing with saturation is exact.
    vqmovun_s16(vcombine_s16(vshrn_n_s32::<16>(lo), vshrn_n_s32::<16>(hi)))
}
