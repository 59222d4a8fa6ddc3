//! AVX2 kernel of the [`super::fixed`] model: 32 pixels of a row pair per
//! step, luma of both rows and the chroma of their 16 blocks from one read
//! of the source (libyuv reads each row twice: once for luma, once for
//! chroma).
//!
//! * Luma: `pmaddubsw` of the pixels (unsigned) with the 7-bit
//!   coefficients (signed), `phaddw` to finish each pixel's sum (≤ 30162,
//!   fits a signed 16-bit lane), bias, shift, pack.
//! * Chroma: `pavgb` averages the two rows, bytes are shuffled to
//!   `B0 B1 G0 G1 R0 R1 A0 A1` so `pmaddubsw` with ones adds horizontal
//!   neighbours exactly, and two `pmaddwd`s per channel apply the
//!   coefficients to `(S_B, S_G)` and `(S_R, bias lane)` of eight blocks at
//!   once — no horizontal adds.

#[cfg(target_arch = "x86")]
use std::arch::x86::*;
#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

use super::fixed::{BIAS_COEFF, BIAS_LANE, ChromaRow, U_COEFFS, V_COEFFS, Y_BIAS, Y_COEFFS, Y_SHIFT};

/// Pixels per step.
const STEP: usize = 32;

/// Whether this CPU runs the kernel (cached by the standard library).
pub(crate) fn available() -> bool {
    is_x86_feature_detected!("avx2")
}

/// Converts the first `width / 32 * 32` pixels of a row pair (see
/// [`super::fixed::rows`] for the arguments) and returns how many it did.
/// Callers without AVX2 enabled must check [`available`] first (calling it
/// is `unsafe` for them).
///
/// # Panics
/// If a slice is shorter than `width` pixels / samples.
#[target_feature(enable = "avx2")]
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

    const { assert!(Y_SHIFT == 7) };
    let luma = Luma {
        coeffs: _mm256_set1_epi32(i32::from_le_bytes([Y_COEFFS[0], Y_COEFFS[1], Y_COEFFS[2], 0])),
        bias: _mm256_set1_epi16(Y_BIAS as i16),
    };
    let pair = |a: i16, b: i16| _mm256_set1_epi32((i32::from(a) & 0xffff) | (i32::from(b) << 16));
    let chroma = Chroma {
        // Per 8 bytes (2 pixels): B0 B1 G0 G1 R0 R1 A0 A1.
        pair_channels: _mm256_setr_epi8(
            0, 4, 1, 5, 2, 6, 3, 7, 8, 12, 9, 13, 10, 14, 11, 15, 0, 4, 1, 5, 2, 6, 3, 7, 8, 12, 9, 13, 10, 14, 11, 15,
        ),
        ones: _mm256_set1_epi8(1),
        bias_lane: _mm256_set1_epi32(i32::from(BIAS_LANE) << 16),
        u_bg: pair(U_COEFFS[0], U_COEFFS[1]),
        u_r: pair(U_COEFFS[2], BIAS_COEFF),
        v_bg: pair(V_COEFFS[0], V_COEFFS[1]),
        v_r: pair(V_COEFFS[2], BIAS_COEFF),
    };
    // 4-byte groups come out of the packs as 0,2,4,6 | 1,3,5,7.
    let order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    // Planar chroma, once lane 0 holds all U and lane 1 all V: block pairs in order.
    let pairs_in_order = _mm256_setr_epi8(
        0, 1, 8, 9, 2, 3, 10, 11, 4, 5, 12, 13, 6, 7, 14, 15, 0, 1, 8, 9, 2, 3, 10, 11, 4, 5, 12, 13, 6, 7, 14, 15,
    );

    let mut x = 0;
    while x < n {
        // SAFETY: x + 32 ≤ n pixels, asserted above for both rows.
        let (a, b) = unsafe { (load32(src0.as_ptr().add(x * 4)), load32(src1.as_ptr().add(x * 4))) };

        // SAFETY: x + 32 ≤ n ≤ the luma rows' lengths (asserted above).
        unsafe { _mm256_storeu_si256(y0.as_mut_ptr().add(x).cast(), luma32(&luma, &a, order)) };
        // Column sums [S_B, S_G, S_R, S_A] (i16) of 4 blocks per register
        // (computed here so the first row's pixels are dead before the
        // second row's luma: fewer registers live).
        let s0 = sums4(&chroma, a[0], b[0]);
        let s1 = sums4(&chroma, a[1], b[1]);
        let s2 = sums4(&chroma, a[2], b[2]);
        let s3 = sums4(&chroma, a[3], b[3]);
        if let Some(y1) = y1.as_deref_mut() {
            // SAFETY: as above.
            unsafe { _mm256_storeu_si256(y1.as_mut_ptr().add(x).cast(), luma32(&luma, &b, order)) };
        }
        // i32 per block, lane 0 blocks [0 1 4 5], lane 1 [2 3 6 7] (and 8…15).
        let (u_lo, v_lo) = chroma8(&chroma, s0, s1);
        let (u_hi, v_hi) = chroma8(&chroma, s2, s3);
        // i16, lane 0 blocks [0 1 4 5 8 9 12 13], lane 1 [2 3 6 7 10 11 14 15].
        let u = _mm256_packs_epi32(u_lo, u_hi);
        let v = _mm256_packs_epi32(v_lo, v_hi);
        let cx = x / 2;
        match chroma_row {
            ChromaRow::Planar(up, vp) => {
                // Bytes, lane 0: U of its blocks then V; lane 1 likewise …
                let grouped = _mm256_packus_epi16(u, v);
                // … lane 0 = all U, lane 1 = all V …
                let split = _mm256_permute4x64_epi64::<0b11_01_10_00>(grouped);
                // … block pairs (0,1) (2,3) (4,5) … in order.
                let ordered = _mm256_shuffle_epi8(split, pairs_in_order);
                // SAFETY: 16 samples at cx, cx + 16 ≤ n / 2 (asserted above).
                unsafe {
                    _mm_storeu_si128(up.as_mut_ptr().add(cx).cast(), _mm256_castsi256_si128(ordered));
                    _mm_storeu_si128(vp.as_mut_ptr().add(cx).cast(), _mm256_extracti128_si256::<1>(ordered));
                }
            }
            ChromaRow::Interleaved(uv) => {
                // U V pairs, lane 0 blocks [0 1 4 5 | 8 9 12 13], lane 1
                // [2 3 6 7 | 10 11 14 15] …
                let pairs = _mm256_packus_epi16(_mm256_unpacklo_epi16(u, v), _mm256_unpackhi_epi16(u, v));
                // … 4-byte groups (2 blocks) in order.
                let ordered = _mm256_permutevar8x32_epi32(pairs, order);
                // SAFETY: 32 bytes at 2 · cx, 2 · cx + 32 ≤ n (asserted above).
                unsafe { _mm256_storeu_si256(uv.as_mut_ptr().add(2 * cx).cast(), ordered) };
            }
        }
        x += STEP;
    }
    n
}

/// Loads 32 pixels (128 bytes).
///
/// # Safety
/// `p` must be valid for reading 128 bytes.
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn load32(p: *const u8) -> [__m256i; 4] {
    let p = p.cast::<__m256i>();
    // SAFETY: the caller's contract; unaligned loads.
    unsafe {
        [
            _mm256_loadu_si256(p),
            _mm256_loadu_si256(p.add(1)),
            _mm256_loadu_si256(p.add(2)),
            _mm256_loadu_si256(p.add(3)),
        ]
    }
}

/// Luma constants.
struct Luma {
    coeffs: __m256i,
    bias: __m256i,
}

/// Luma of 32 pixels (four registers of 8), in order.
#[target_feature(enable = "avx2")]
#[inline]
fn luma32(k: &Luma, p: &[__m256i; 4], order: __m256i) -> __m256i {
    // [8·B + 79·G, 23·R + 0·A] per pixel: at most 87 · 255, no saturation.
    let t0 = _mm256_maddubs_epi16(p[0], k.coeffs);
    let t1 = _mm256_maddubs_epi16(p[1], k.coeffs);
    let t2 = _mm256_maddubs_epi16(p[2], k.coeffs);
    let t3 = _mm256_maddubs_epi16(p[3], k.coeffs);
    let lo = _mm256_srli_epi16::<7>(_mm256_add_epi16(_mm256_hadd_epi16(t0, t1), k.bias));
    let hi = _mm256_srli_epi16::<7>(_mm256_add_epi16(_mm256_hadd_epi16(t2, t3), k.bias));
    _mm256_permutevar8x32_epi32(_mm256_packus_epi16(lo, hi), order)
}

/// Chroma constants.
struct Chroma {
    pair_channels: __m256i,
    ones: __m256i,
    /// `BIAS_LANE` in the high half of every 32-bit lane (the S_A position).
    bias_lane: __m256i,
    u_bg: __m256i,
    u_r: __m256i,
    v_bg: __m256i,
    v_r: __m256i,
}

/// Column sums `[S_B, S_G, S_R, S_A]` (i16) of the four 2x2 blocks under 8
/// pixels of each row: rounded vertical average, exact horizontal sum.
#[target_feature(enable = "avx2")]
#[inline]
fn sums4(k: &Chroma, top: __m256i, bottom: __m256i) -> __m256i {
    let avg = _mm256_avg_epu8(top, bottom);
    _mm256_maddubs_epi16(_mm256_shuffle_epi8(avg, k.pair_channels), k.ones)
}

/// U and V (i32, final values) of the 8 blocks in `s0` (blocks 0–3) and
/// `s1` (4–7), ordered lane 0 `[0 1 4 5]`, lane 1 `[2 3 6 7]`.
#[target_feature(enable = "avx2")]
#[inline]
fn chroma8(k: &Chroma, s0: __m256i, s1: __m256i) -> (__m256i, __m256i) {
    let (f0, f1) = (_mm256_castsi256_ps(s0), _mm256_castsi256_ps(s1));
    // (S_B, S_G) and (S_R, S_A) pairs of the 8 blocks.
    let bg = _mm256_castps_si256(_mm256_shuffle_ps::<0b10_00_10_00>(f0, f1));
    let ra = _mm256_castps_si256(_mm256_shuffle_ps::<0b11_01_11_01>(f0, f1));
    // S_A (ignored) becomes the bias lane.
    let rk = _mm256_blend_epi16::<0b1010_1010>(ra, k.bias_lane);
    let u = _mm256_add_epi32(_mm256_madd_epi16(bg, k.u_bg), _mm256_madd_epi16(rk, k.u_r));
    let v = _mm256_add_epi32(_mm256_madd_epi16(bg, k.v_bg), _mm256_madd_epi16(rk, k.v_r));
    (_mm256_srai_epi32::<16>(u), _mm256_srai_epi32::<16>(v))
}
