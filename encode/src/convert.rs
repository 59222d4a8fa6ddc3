//! BGRA/BGRx → YUV 4:2:0 (I420 and NV12), BT.709 limited range, into
//! caller-owned planes.
//!
//! Peep's own kernels do the work: AVX2 on x86 (chosen at run time), NEON
//! on aarch64, a scalar fallback elsewhere. All three implement one
//! fixed-point model bit for bit (see `fixed`): 8-bit luma coefficients,
//! exact 2x2 chroma sums with 14-bit coefficients. Each pass reads a pair of
//! rows once and writes both luma rows and their chroma row. The tests check
//! the SIMD kernels for exact equality with the scalar one, and all of them
//! against [`reference`](mod@reference), a plain floating-point
//! implementation of the BT.709 formulas (within ±1).
//!
//! [`bgra_to_i420_rows`] / [`bgra_to_nv12_rows`] convert only some rows
//! (the damaged ones), leaving the rest of the planes as they were.
//!
//! # Odd sizes
//!
//! H.264 codes 4:2:0 pictures in whole chroma samples, so a frame's *coded*
//! size is its size rounded up to even numbers (1919x1079 → 1920x1080). The
//! frames here always allocate planes of the coded size, and the converters
//! fill the extra luma column / row by repeating the last visible one
//! ([`I420Frame::pad_edges`]). An encoder can then encode the coded size
//! without copying, and the viewer sees every source pixel plus at most one
//! repeated column and row. Chroma planes are `(width + 1) / 2` by
//! `(height + 1) / 2` either way.

use crate::error::{EncodeError, Result};
use std::ops::Range;

#[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
mod avx2;
mod fixed;
#[cfg(target_arch = "aarch64")]
mod neon;

use fixed::ChromaRow;

/// A conversion kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kernel {
    /// x86 AVX2, 32 pixels per step.
    Avx2,
    /// aarch64 NEON, 16 pixels per step.
    Neon,
    /// Plain Rust, one 2x2 block at a time.
    Scalar,
}

impl Kernel {
    /// The fastest kernel this machine runs (detected once).
    pub fn best() -> Kernel {
        #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
        if avx2::available() {
            return Kernel::Avx2;
        }
        #[cfg(target_arch = "aarch64")]
        return Kernel::Neon;
        #[allow(unreachable_code)]
        Kernel::Scalar
    }

    /// Every kernel this machine runs, the fastest first (for tests and
    /// benchmarks).
    pub fn available() -> Vec<Kernel> {
        let mut all = vec![Kernel::best()];
        if all[0] != Kernel::Scalar {
            all.push(Kernel::Scalar);
        }
        all
    }

    /// Converts pixels `0..width` of a row pair (see `fixed::rows`).
    #[inline]
    fn rows(self, src0: &[u8], src1: &[u8], y0: &mut [u8], y1: Option<&mut [u8]>, c: &mut ChromaRow<'_>, width: usize) {
        let mut y1 = y1;
        let done = match self {
            #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
            // SAFETY: `Avx2` is only chosen (by `best`) or accepted (by
            // `check_kernel`) when the CPU reports AVX2.
            Kernel::Avx2 => unsafe { avx2::rows(src0, src1, y0, y1.as_deref_mut(), c, width) },
            #[cfg(target_arch = "aarch64")]
            // SAFETY: NEON is part of every aarch64 target Rust supports.
            Kernel::Neon => unsafe { neon::rows(src0, src1, y0, y1.as_deref_mut(), c, width) },
            _ => 0,
        };
        fixed::rows(src0, src1, y0, y1, c, done, width);
    }

    /// Whether this CPU runs the kernel (no allocation: called per frame).
    fn runs_here(self) -> bool {
        match self {
            Kernel::Scalar => true,
            #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
            Kernel::Avx2 => avx2::available(),
            Kernel::Neon => cfg!(target_arch = "aarch64"),
            #[allow(unreachable_patterns)]
            _ => false,
        }
    }

    fn check(self) -> Result<()> {
        if self.runs_here() { Ok(()) } else { Err(EncodeError::KernelUnavailable(self)) }
    }
}

/// `n` rounded up to an even number.
const fn even(n: u32) -> usize {
    (n as usize + 1) & !1
}

/// Planar Y, U, V 4:2:0, 8 bits, BT.709 limited range once converted.
///
/// Planes cover the coded (even) size; see the [module docs](self) for why.
/// Allocated once by [`I420Frame::new`] and reused: [`I420Frame::resize`]
/// reallocates only when a larger size no longer fits.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct I420Frame {
    width: u32,
    height: u32,
    y_stride: usize,
    uv_stride: usize,
    y: Vec<u8>,
    u: Vec<u8>,
    v: Vec<u8>,
}

impl std::fmt::Debug for I420Frame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("I420Frame")
            .field("width", &self.width)
            .field("height", &self.height)
            .field("y_stride", &self.y_stride)
            .field("uv_stride", &self.uv_stride)
            .finish_non_exhaustive()
    }
}

impl I420Frame {
    /// Planes for a `width`x`height` frame, zero-filled. `new(0, 0)` allocates
    /// nothing and is a fine placeholder before the first [`resize`](Self::resize).
    pub fn new(width: u32, height: u32) -> Self {
        let mut frame = Self::default();
        frame.resize(width, height);
        frame
    }

    /// Changes the frame size. Does nothing if the size is unchanged, and
    /// reallocates only if the new planes do not fit the old capacity. Plane
    /// contents are unspecified afterwards.
    pub fn resize(&mut self, width: u32, height: u32) {
        if (width, height) == (self.width, self.height) {
            return;
        }
        self.width = width;
        self.height = height;
        let (coded_w, coded_h) = if width == 0 || height == 0 { (0, 0) } else { (even(width), even(height)) };
        self.y_stride = coded_w;
        self.uv_stride = coded_w / 2;
        self.y.resize(coded_w * coded_h, 0);
        self.u.resize(self.uv_stride * (coded_h / 2), 0);
        self.v.resize(self.uv_stride * (coded_h / 2), 0);
    }

    /// Visible width in pixels.
    pub fn width(&self) -> u32 {
        self.width
    }

    /// Visible height in pixels.
    pub fn height(&self) -> u32 {
        self.height
    }

    /// Width the planes cover: [`width`](Self::width) rounded up to even.
    pub fn coded_width(&self) -> u32 {
        self.y_stride as u32
    }

    /// Height the planes cover: [`height`](Self::height) rounded up to even.
    pub fn coded_height(&self) -> u32 {
        self.y.len().checked_div(self.y_stride).unwrap_or(0) as u32
    }

    /// Width of the U and V planes: `(width + 1) / 2`.
    pub fn chroma_width(&self) -> u32 {
        self.uv_stride as u32
    }

    /// Height of the U and V planes: `(height + 1) / 2`.
    pub fn chroma_height(&self) -> u32 {
        self.coded_height() / 2
    }

    /// Bytes per row of the Y plane.
    pub fn y_stride(&self) -> usize {
        self.y_stride
    }

    /// Bytes per row of the U and V planes.
    pub fn uv_stride(&self) -> usize {
        self.uv_stride
    }

    /// The Y plane, `y_stride * coded_height` bytes.
    pub fn y(&self) -> &[u8] {
        &self.y
    }

    /// The U (Cb) plane, `uv_stride * chroma_height` bytes.
    pub fn u(&self) -> &[u8] {
        &self.u
    }

    /// The V (Cr) plane, `uv_stride * chroma_height` bytes.
    pub fn v(&self) -> &[u8] {
        &self.v
    }

    /// All three planes, mutably, for callers that fill them directly. Call
    /// [`pad_edges`](Self::pad_edges) afterwards if the size is odd.
    pub fn planes_mut(&mut self) -> (&mut [u8], &mut [u8], &mut [u8]) {
        (&mut self.y, &mut self.u, &mut self.v)
    }

    /// Repeats the last visible luma column / row into the padding of an odd
    /// width / height. The converters call this; a no-op for even sizes.
    pub fn pad_edges(&mut self) {
        pad_luma_edges(&mut self.y, self.y_stride, self.width, self.height);
    }
}

/// Y plane plus one interleaved UV plane, 4:2:0, 8 bits, BT.709 limited range
/// once converted — the layout VideoToolbox and most hardware encoders take.
///
/// Same sizing rules as [`I420Frame`].
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Nv12Frame {
    width: u32,
    height: u32,
    y_stride: usize,
    uv_stride: usize,
    y: Vec<u8>,
    uv: Vec<u8>,
}

impl std::fmt::Debug for Nv12Frame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Nv12Frame")
            .field("width", &self.width)
            .field("height", &self.height)
            .field("y_stride", &self.y_stride)
            .field("uv_stride", &self.uv_stride)
            .finish_non_exhaustive()
    }
}

impl Nv12Frame {
    /// Planes for a `width`x`height` frame, zero-filled (`new(0, 0)` allocates nothing).
    pub fn new(width: u32, height: u32) -> Self {
        let mut frame = Self::default();
        frame.resize(width, height);
        frame
    }

    /// Changes the frame size; reallocates only if the new planes do not fit.
    pub fn resize(&mut self, width: u32, height: u32) {
        if (width, height) == (self.width, self.height) {
            return;
        }
        self.width = width;
        self.height = height;
        let (coded_w, coded_h) = if width == 0 || height == 0 { (0, 0) } else { (even(width), even(height)) };
        self.y_stride = coded_w;
        self.uv_stride = coded_w; // coded_w / 2 pairs of (U, V)
        self.y.resize(coded_w * coded_h, 0);
        self.uv.resize(self.uv_stride * (coded_h / 2), 0);
    }

    /// Visible width in pixels.
    pub fn width(&self) -> u32 {
        self.width
    }

    /// Visible height in pixels.
    pub fn height(&self) -> u32 {
        self.height
    }

    /// Width the planes cover: [`width`](Self::width) rounded up to even.
    pub fn coded_width(&self) -> u32 {
        self.y_stride as u32
    }

    /// Height the planes cover: [`height`](Self::height) rounded up to even.
    pub fn coded_height(&self) -> u32 {
        self.y.len().checked_div(self.y_stride).unwrap_or(0) as u32
    }

    /// Bytes per row of the Y plane.
    pub fn y_stride(&self) -> usize {
        self.y_stride
    }

    /// Chroma samples per row: `(width + 1) / 2` pairs of (U, V).
    pub fn chroma_width(&self) -> u32 {
        (self.uv_stride / 2) as u32
    }

    /// Chroma rows: `(height + 1) / 2`.
    pub fn chroma_height(&self) -> u32 {
        self.coded_height() / 2
    }

    /// Bytes per row of the UV plane (two bytes per chroma sample pair).
    pub fn uv_stride(&self) -> usize {
        self.uv_stride
    }

    /// The Y plane, `y_stride * coded_height` bytes.
    pub fn y(&self) -> &[u8] {
        &self.y
    }

    /// The interleaved UV plane, `uv_stride * coded_height / 2` bytes.
    pub fn uv(&self) -> &[u8] {
        &self.uv
    }

    /// Both planes, mutably. Call [`pad_edges`](Self::pad_edges) afterwards
    /// if the size is odd.
    pub fn planes_mut(&mut self) -> (&mut [u8], &mut [u8]) {
        (&mut self.y, &mut self.uv)
    }

    /// Repeats the last visible luma column / row into the padding of an odd
    /// width / height.
    pub fn pad_edges(&mut self) {
        pad_luma_edges(&mut self.y, self.y_stride, self.width, self.height);
    }
}

fn pad_luma_edges(y: &mut [u8], stride: usize, width: u32, height: u32) {
    let (w, h) = (width as usize, height as usize);
    if w == 0 || h == 0 {
        return;
    }
    if w % 2 == 1 {
        for row in y.chunks_exact_mut(stride).take(h) {
            row[w] = row[w - 1];
        }
    }
    if h % 2 == 1 {
        let (above, below) = y.split_at_mut(h * stride);
        below[..stride].copy_from_slice(&above[(h - 1) * stride..]);
    }
}

/// Checks a BGRA source and returns exactly the `stride_bytes * height`
/// bytes a conversion may read.
fn checked_source(src: &[u8], width: u32, height: u32, stride_bytes: usize) -> Result<&[u8]> {
    if width == 0 || height == 0 {
        return Err(EncodeError::EmptyFrame { width, height });
    }
    let min_bytes = width as usize * 4;
    if stride_bytes < min_bytes || u32::try_from(stride_bytes).is_err() {
        return Err(EncodeError::InvalidStride { stride_bytes, width, min_bytes });
    }
    let needed_bytes = stride_bytes.saturating_mul(height as usize);
    src.get(..needed_bytes).ok_or(EncodeError::SourceTooSmall {
        len_bytes: src.len(),
        needed_bytes,
        width,
        height,
        stride_bytes,
    })
}

/// Converts a BGRA or BGRx frame (the 4th byte is ignored) to I420,
/// BT.709 limited range, writing into `dst` (resized to `width`x`height`,
/// which allocates only if it grows).
///
/// `src` must hold at least `stride_bytes * height` bytes and `stride_bytes`
/// must be at least `width * 4`.
///
/// # Errors
/// [`EncodeError::EmptyFrame`], [`EncodeError::InvalidStride`] or
/// [`EncodeError::SourceTooSmall`] for bad input; never panics.
pub fn bgra_to_i420(src: &[u8], width: u32, height: u32, stride_bytes: usize, dst: &mut I420Frame) -> Result<()> {
    bgra_to_i420_with(Kernel::best(), src, width, height, stride_bytes, dst, 0..height)
}

/// Like [`bgra_to_i420`], but converts only `rows` (widened to whole
/// chroma rows, clipped to the frame) and leaves the rest of `dst` as it
/// was: for a frame that differs from the one `dst` holds only in those
/// rows (its damage). If `dst` has another size, the whole frame is
/// converted.
///
/// # Errors
/// As [`bgra_to_i420`].
pub fn bgra_to_i420_rows(
    src: &[u8],
    width: u32,
    height: u32,
    stride_bytes: usize,
    dst: &mut I420Frame,
    rows: Range<u32>,
) -> Result<()> {
    bgra_to_i420_with(Kernel::best(), src, width, height, stride_bytes, dst, rows)
}

/// [`bgra_to_i420_rows`] with a chosen kernel (tests and benchmarks).
///
/// # Errors
/// As [`bgra_to_i420`], and [`EncodeError::KernelUnavailable`] for a kernel
/// this CPU cannot run.
pub fn bgra_to_i420_with(
    kernel: Kernel,
    src: &[u8],
    width: u32,
    height: u32,
    stride_bytes: usize,
    dst: &mut I420Frame,
    rows: Range<u32>,
) -> Result<()> {
    kernel.check()?;
    let src = checked_source(src, width, height, stride_bytes)?;
    let rows = if (dst.width, dst.height) == (width, height) { rows } else { 0..height };
    dst.resize(width, height);
    let (w, h) = (width as usize, height as usize);
    let (y_stride, uv_stride) = (dst.y_stride, dst.uv_stride);
    let cw = w.div_ceil(2);
    for pair in chroma_rows(rows, height) {
        let (src0, src1, has_second) = row_pair(src, stride_bytes, w, h, pair);
        let (y0, y1) = luma_pair(&mut dst.y, y_stride, w, pair, has_second);
        let u = &mut dst.u[pair * uv_stride..][..cw];
        let v = &mut dst.v[pair * uv_stride..][..cw];
        kernel.rows(src0, src1, y0, y1, &mut ChromaRow::Planar(u, v), w);
    }
    dst.pad_edges();
    Ok(())
}

/// Converts a BGRA or BGRx frame (the 4th byte is ignored) to NV12,
/// BT.709 limited range, writing into `dst`. Same rules as [`bgra_to_i420`].
///
/// # Errors
/// As [`bgra_to_i420`].
pub fn bgra_to_nv12(src: &[u8], width: u32, height: u32, stride_bytes: usize, dst: &mut Nv12Frame) -> Result<()> {
    bgra_to_nv12_with(Kernel::best(), src, width, height, stride_bytes, dst, 0..height)
}

/// Like [`bgra_to_i420_rows`], for NV12.
///
/// # Errors
/// As [`bgra_to_i420`].
pub fn bgra_to_nv12_rows(
    src: &[u8],
    width: u32,
    height: u32,
    stride_bytes: usize,
    dst: &mut Nv12Frame,
    rows: Range<u32>,
) -> Result<()> {
    bgra_to_nv12_with(Kernel::best(), src, width, height, stride_bytes, dst, rows)
}

/// [`bgra_to_nv12_rows`] with a chosen kernel (tests and benchmarks).
///
/// # Errors
/// As [`bgra_to_i420_with`].
pub fn bgra_to_nv12_with(
    kernel: Kernel,
    src: &[u8],
    width: u32,
    height: u32,
    stride_bytes: usize,
    dst: &mut Nv12Frame,
    rows: Range<u32>,
) -> Result<()> {
    kernel.check()?;
    let src = checked_source(src, width, height, stride_bytes)?;
    let rows = if (dst.width, dst.height) == (width, height) { rows } else { 0..height };
    dst.resize(width, height);
    let (w, h) = (width as usize, height as usize);
    let (y_stride, uv_stride) = (dst.y_stride, dst.uv_stride);
    let cw2 = 2 * w.div_ceil(2);
    for pair in chroma_rows(rows, height) {
        let (src0, src1, has_second) = row_pair(src, stride_bytes, w, h, pair);
        let (y0, y1) = luma_pair(&mut dst.y, y_stride, w, pair, has_second);
        let uv = &mut dst.uv[pair * uv_stride..][..cw2];
        kernel.rows(src0, src1, y0, y1, &mut ChromaRow::Interleaved(uv), w);
    }
    dst.pad_edges();
    Ok(())
}

/// The chroma rows (row pairs) covering `rows`, clipped to the frame.
fn chroma_rows(rows: Range<u32>, height: u32) -> Range<usize> {
    let end = rows.end.min(height);
    let start = rows.start.min(end);
    (start as usize / 2)..(end as usize).div_ceil(2)
}

/// Source rows `2·pair` and `2·pair + 1` (the first again for an odd last
/// row), `w` pixels each, and whether the second exists.
fn row_pair(src: &[u8], stride: usize, w: usize, h: usize, pair: usize) -> (&[u8], &[u8], bool) {
    let r0 = 2 * pair;
    let src0 = &src[r0 * stride..][..w * 4];
    if r0 + 1 < h { (src0, &src[(r0 + 1) * stride..][..w * 4], true) } else { (src0, src0, false) }
}

/// Luma rows `2·pair` and (if it exists) `2·pair + 1`, `w` bytes each.
fn luma_pair(y: &mut [u8], stride: usize, w: usize, pair: usize, second: bool) -> (&mut [u8], Option<&mut [u8]>) {
    let rows = &mut y[2 * pair * stride..];
    if second {
        let (first, rest) = rows.split_at_mut(stride);
        (&mut first[..w], Some(&mut rest[..w]))
    } else {
        (&mut rows[..w], None)
    }
}

/// Converts a checked BGRA source into NV12 planes with any strides (≥ the
/// coded width), e.g. an encoder's pixel buffer, and repeats the last
/// column / row into the padding of an odd size.
///
/// # Panics
/// If a plane is shorter than its rows at `*_stride` need (the last row may
/// stop at the coded width): the caller checks.
pub(crate) fn bgra_into_nv12_planes(
    src: &[u8],
    (width, height, stride_bytes): (u32, u32, usize),
    (y, y_stride): (&mut [u8], usize),
    (uv, uv_stride): (&mut [u8], usize),
) -> Result<()> {
    let src = checked_source(src, width, height, stride_bytes)?;
    let kernel = Kernel::best();
    let (w, h) = (width as usize, height as usize);
    let cw2 = 2 * w.div_ceil(2);
    for pair in 0..h.div_ceil(2) {
        let (src0, src1, has_second) = row_pair(src, stride_bytes, w, h, pair);
        let (y0, y1) = luma_pair(y, y_stride, w, pair, has_second);
        let uv_row = &mut uv[pair * uv_stride..][..cw2];
        kernel.rows(src0, src1, y0, y1, &mut ChromaRow::Interleaved(uv_row), w);
    }
    if w % 2 == 1 {
        for row in 0..h {
            let line = &mut y[row * y_stride..];
            line[w] = line[w - 1];
        }
    }
    if h % 2 == 1 {
        let (above, below) = y.split_at_mut(h * y_stride);
        let coded_w = w + w % 2;
        below[..coded_w].copy_from_slice(&above[(h - 1) * y_stride..][..coded_w]);
    }
    Ok(())
}

/// Scalar reference conversions: straightforward floating-point BT.709
/// limited-range maths, one pixel at a time, for testing the SIMD path.
///
/// Chroma: the R, G, B values of each 2x2 block are averaged first and the
/// average converted (at an odd right or bottom edge the block is 1x2, 2x1
/// or 1x1). The kernels use fixed-point coefficients (8-bit for luma, 14-bit
/// for chroma), so results differ by at most one step per sample.
pub mod reference {
    use super::{I420Frame, Nv12Frame, checked_source};
    use crate::error::Result;

    const KR: f64 = 0.2126;
    const KB: f64 = 0.0722;
    const KG: f64 = 1.0 - KR - KB;

    fn to_u8(v: f64) -> u8 {
        v.round().clamp(0.0, 255.0) as u8
    }

    /// Luma of one BGRA pixel, limited range (16..=235).
    pub fn luma(b: u8, g: u8, r: u8) -> u8 {
        let e_y = (KR * f64::from(r) + KG * f64::from(g) + KB * f64::from(b)) / 255.0;
        to_u8(16.0 + 219.0 * e_y)
    }

    /// Cb and Cr of an (averaged) RGB triple in 0..=255, limited range (16..=240).
    pub fn chroma(b: f64, g: f64, r: f64) -> (u8, u8) {
        let (r, g, b) = (r / 255.0, g / 255.0, b / 255.0);
        let e_y = KR * r + KG * g + KB * b;
        let cb = (b - e_y) / (2.0 * (1.0 - KB));
        let cr = (r - e_y) / (2.0 * (1.0 - KR));
        (to_u8(128.0 + 224.0 * cb), to_u8(128.0 + 224.0 * cr))
    }

    /// Averaged (B, G, R) of the up-to-2x2 block whose top-left pixel is (x, y).
    fn block_mean(src: &[u8], stride: usize, width: usize, height: usize, x: usize, y: usize) -> (f64, f64, f64) {
        let (mut b, mut g, mut r, mut n) = (0.0, 0.0, 0.0, 0.0);
        for yy in y..(y + 2).min(height) {
            for xx in x..(x + 2).min(width) {
                let p = &src[yy * stride + xx * 4..][..3];
                b += f64::from(p[0]);
                g += f64::from(p[1]);
                r += f64::from(p[2]);
                n += 1.0;
            }
        }
        (b / n, g / n, r / n)
    }

    fn fill_luma(src: &[u8], stride: usize, width: usize, height: usize, y_plane: &mut [u8], y_stride: usize) {
        for y in 0..height {
            for x in 0..width {
                let p = &src[y * stride + x * 4..][..3];
                y_plane[y * y_stride + x] = luma(p[0], p[1], p[2]);
            }
        }
    }

    /// Scalar twin of [`super::bgra_to_i420`].
    ///
    /// # Errors
    /// As [`super::bgra_to_i420`].
    pub fn bgra_to_i420(src: &[u8], width: u32, height: u32, stride_bytes: usize, dst: &mut I420Frame) -> Result<()> {
        let src = checked_source(src, width, height, stride_bytes)?;
        dst.resize(width, height);
        let (w, h) = (width as usize, height as usize);
        let (y_stride, uv_stride) = (dst.y_stride(), dst.uv_stride());
        let (y_plane, u_plane, v_plane) = dst.planes_mut();
        fill_luma(src, stride_bytes, w, h, y_plane, y_stride);
        for cy in 0..h.div_ceil(2) {
            for cx in 0..w.div_ceil(2) {
                let (b, g, r) = block_mean(src, stride_bytes, w, h, cx * 2, cy * 2);
                let (cb, cr) = chroma(b, g, r);
                u_plane[cy * uv_stride + cx] = cb;
                v_plane[cy * uv_stride + cx] = cr;
            }
        }
        dst.pad_edges();
        Ok(())
    }

    /// Scalar twin of [`super::bgra_to_nv12`].
    ///
    /// # Errors
    /// As [`super::bgra_to_nv12`].
    pub fn bgra_to_nv12(src: &[u8], width: u32, height: u32, stride_bytes: usize, dst: &mut Nv12Frame) -> Result<()> {
        let src = checked_source(src, width, height, stride_bytes)?;
        dst.resize(width, height);
        let (w, h) = (width as usize, height as usize);
        let (y_stride, uv_stride) = (dst.y_stride(), dst.uv_stride());
        let (y_plane, uv_plane) = dst.planes_mut();
        fill_luma(src, stride_bytes, w, h, y_plane, y_stride);
        for cy in 0..h.div_ceil(2) {
            for cx in 0..w.div_ceil(2) {
                let (b, g, r) = block_mean(src, stride_bytes, w, h, cx * 2, cy * 2);
                let (cb, cr) = chroma(b, g, r);
                uv_plane[cy * uv_stride + 2 * cx] = cb;
                uv_plane[cy * uv_stride + 2 * cx + 1] = cr;
            }
        }
        dst.pad_edges();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// xorshift64*: deterministic noise without a dependency.
    fn noise(seed: u64, len: usize) -> Vec<u8> {
        let mut s = seed | 1;
        (0..len)
            .map(|_| {
                s ^= s >> 12;
                s ^= s << 25;
                s ^= s >> 27;
                (s.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 56) as u8
            })
            .collect()
    }

    fn max_diff(a: &[u8], b: &[u8]) -> u8 {
        assert_eq!(a.len(), b.len());
        a.iter().zip(b).map(|(x, y)| x.abs_diff(*y)).max().unwrap_or(0)
    }

    /// Sizes around the kernels' steps (16 and 32 pixels), odd ones, tiny ones.
    const SIZES: [(u32, u32); 14] = [
        (1, 1),
        (2, 2),
        (3, 5),
        (17, 9),
        (31, 3),
        (32, 2),
        (33, 7),
        (63, 4),
        (64, 3),
        (65, 6),
        (97, 11),
        (641, 481),
        (1919, 1079),
        (64, 3),
    ];

    /// Random sizes (seeded), for the exact-agreement tests.
    fn random_sizes(seed: u64, n: usize) -> Vec<(u32, u32)> {
        noise(seed, n * 2)
            .chunks_exact(2)
            .map(|p| (1 + u32::from(p[0]) * 3 + u32::from(p[1] % 7), 1 + u32::from(p[1] % 40)))
            .collect()
    }

    #[test]
    fn every_kernel_matches_the_floating_point_reference_i420() {
        for kernel in Kernel::available() {
            let mut worst = [0u8; 3];
            for (i, &(w, h)) in SIZES.iter().enumerate() {
                for pad in [0usize, 4, 60] {
                    let stride = w as usize * 4 + pad;
                    let src = noise(i as u64 * 31 + pad as u64, stride * h as usize);
                    let (mut fast, mut slow) = (I420Frame::new(0, 0), I420Frame::new(0, 0));
                    bgra_to_i420_with(kernel, &src, w, h, stride, &mut fast, 0..h).unwrap();
                    reference::bgra_to_i420(&src, w, h, stride, &mut slow).unwrap();
                    let d = [max_diff(fast.y(), slow.y()), max_diff(fast.u(), slow.u()), max_diff(fast.v(), slow.v())];
                    for (worst, d) in worst.iter_mut().zip(d) {
                        *worst = (*worst).max(d);
                    }
                    assert!(d.iter().all(|&d| d <= 1), "{kernel:?} {w}x{h} pad {pad}: max |diff| Y/U/V = {d:?}");
                }
            }
            println!("I420 {kernel:?} vs floating-point reference, max |diff| Y/U/V = {worst:?}");
        }
    }

    #[test]
    fn every_kernel_matches_the_floating_point_reference_nv12() {
        for kernel in Kernel::available() {
            let mut worst = [0u8; 2];
            for (i, &(w, h)) in SIZES.iter().enumerate() {
                for pad in [0usize, 8] {
                    let stride = w as usize * 4 + pad;
                    let src = noise(i as u64 * 17 + 5 + pad as u64, stride * h as usize);
                    let (mut fast, mut slow) = (Nv12Frame::new(0, 0), Nv12Frame::new(0, 0));
                    bgra_to_nv12_with(kernel, &src, w, h, stride, &mut fast, 0..h).unwrap();
                    reference::bgra_to_nv12(&src, w, h, stride, &mut slow).unwrap();
                    let d = [max_diff(fast.y(), slow.y()), max_diff(fast.uv(), slow.uv())];
                    for (worst, d) in worst.iter_mut().zip(d) {
                        *worst = (*worst).max(d);
                    }
                    assert!(d.iter().all(|&d| d <= 1), "{kernel:?} {w}x{h} pad {pad}: max |diff| Y/UV = {d:?}");
                }
            }
            println!("NV12 {kernel:?} vs floating-point reference, max |diff| Y/UV = {worst:?}");
        }
    }

    /// The SIMD kernels implement the fixed-point model bit for bit: equal
    /// to the scalar kernel on random sizes, odd widths and padded strides.
    #[test]
    fn simd_kernels_equal_the_scalar_kernel_exactly() {
        let simd: Vec<Kernel> = Kernel::available().into_iter().filter(|k| *k != Kernel::Scalar).collect();
        if simd.is_empty() {
            println!("no SIMD kernel on this CPU: nothing to compare");
        }
        let mut sizes = SIZES.to_vec();
        sizes.extend(random_sizes(11, 60));
        for kernel in simd {
            for (i, &(w, h)) in sizes.iter().enumerate() {
                let pad = [0usize, 4, 12, 64][i % 4];
                let stride = w as usize * 4 + pad;
                // Extremes too: all-0 and all-255 pixels stress the 16-bit sums.
                let mut src = noise(i as u64 + 1000, stride * h as usize);
                if i % 5 == 0 {
                    src.iter_mut().enumerate().for_each(|(j, b)| *b = if (j / 4) % 3 == 0 { 255 } else { *b });
                }
                let (mut fast, mut scalar) = (I420Frame::new(0, 0), I420Frame::new(0, 0));
                bgra_to_i420_with(kernel, &src, w, h, stride, &mut fast, 0..h).unwrap();
                bgra_to_i420_with(Kernel::Scalar, &src, w, h, stride, &mut scalar, 0..h).unwrap();
                assert!(fast == scalar, "{kernel:?} I420 {w}x{h} stride {stride} differs from the scalar kernel");
                let (mut fast, mut scalar) = (Nv12Frame::new(0, 0), Nv12Frame::new(0, 0));
                bgra_to_nv12_with(kernel, &src, w, h, stride, &mut fast, 0..h).unwrap();
                bgra_to_nv12_with(Kernel::Scalar, &src, w, h, stride, &mut scalar, 0..h).unwrap();
                assert!(fast == scalar, "{kernel:?} NV12 {w}x{h} stride {stride} differs from the scalar kernel");
            }
        }
    }

    /// Converting only the changed rows into the previous frame's planes
    /// gives exactly the full conversion of the new frame; rows outside the
    /// given range are left alone.
    #[test]
    fn converting_only_damaged_rows_equals_a_full_conversion() {
        let (w, h) = (203u32, 97u32);
        let stride = w as usize * 4 + 8;
        let old = noise(1, stride * h as usize);
        for (i, rows) in [3u32..4, 10..11, 0..1, 96..97, 40..77, 0..97, 50..200].into_iter().enumerate() {
            let mut new = old.clone();
            let changed = rows.start as usize..rows.end.min(h) as usize;
            new[changed.start * stride..changed.end * stride]
                .copy_from_slice(&noise(50 + i as u64, changed.len() * stride));
            for kernel in Kernel::available() {
                let mut partial = I420Frame::new(0, 0);
                bgra_to_i420_with(kernel, &old, w, h, stride, &mut partial, 0..h).unwrap();
                bgra_to_i420_with(kernel, &new, w, h, stride, &mut partial, rows.clone()).unwrap();
                let mut full = I420Frame::new(0, 0);
                bgra_to_i420_with(kernel, &new, w, h, stride, &mut full, 0..h).unwrap();
                assert!(partial == full, "{kernel:?} I420 rows {rows:?}");
                let mut partial = Nv12Frame::new(0, 0);
                bgra_to_nv12_with(kernel, &old, w, h, stride, &mut partial, 0..h).unwrap();
                bgra_to_nv12_with(kernel, &new, w, h, stride, &mut partial, rows.clone()).unwrap();
                let mut full = Nv12Frame::new(0, 0);
                bgra_to_nv12_with(kernel, &new, w, h, stride, &mut full, 0..h).unwrap();
                assert!(partial == full, "{kernel:?} NV12 rows {rows:?}");
            }
        }
        // Rows outside the range really are left alone.
        let mut f = I420Frame::new(0, 0);
        bgra_to_i420(&old, w, h, stride, &mut f).unwrap();
        let before = f.clone();
        let white = vec![255u8; stride * h as usize];
        bgra_to_i420_rows(&white, w, h, stride, &mut f, 20..22).unwrap();
        let s = f.y_stride();
        assert_eq!(f.y()[..20 * s], before.y()[..20 * s]);
        assert!(f.y()[20 * s..20 * s + w as usize].iter().all(|&y| y == 235));
        assert_eq!(f.y()[22 * s..], before.y()[22 * s..]);
        // A size change converts everything whatever the range says.
        let mut g = I420Frame::new(10, 10);
        bgra_to_i420_rows(&white, w, h, stride, &mut g, 0..0).unwrap();
        assert!(g.y()[..w as usize].iter().all(|&y| y == 235));
    }

    #[test]
    fn nv12_and_i420_carry_the_same_samples() {
        let (w, h) = (33u32, 17u32);
        let src = noise(99, w as usize * 4 * h as usize);
        let mut i420 = I420Frame::new(w, h);
        let mut nv12 = Nv12Frame::new(w, h);
        bgra_to_i420(&src, w, h, w as usize * 4, &mut i420).unwrap();
        bgra_to_nv12(&src, w, h, w as usize * 4, &mut nv12).unwrap();
        assert_eq!(i420.y(), nv12.y());
        for (i, pair) in nv12.uv().chunks_exact(2).enumerate() {
            assert!(pair[0].abs_diff(i420.u()[i]) <= 1 && pair[1].abs_diff(i420.v()[i]) <= 1);
        }
    }

    #[test]
    fn alpha_byte_is_ignored() {
        let (w, h) = (37u32, 11u32);
        let mut src = noise(7, w as usize * 4 * h as usize);
        let mut a = I420Frame::new(w, h);
        bgra_to_i420(&src, w, h, w as usize * 4, &mut a).unwrap();
        for px in src.chunks_exact_mut(4) {
            px[3] = px[3].wrapping_mul(13).wrapping_add(1);
        }
        let mut b = I420Frame::new(w, h);
        bgra_to_i420(&src, w, h, w as usize * 4, &mut b).unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn known_colours_hit_bt709_limited_levels() {
        // (B, G, R) → (Y, Cb, Cr) from the BT.709 limited-range definitions.
        let cases: [([u8; 3], [u8; 3]); 5] = [
            ([0, 0, 0], [16, 128, 128]),
            ([255, 255, 255], [235, 128, 128]),
            ([0, 0, 255], [63, 102, 240]),
            ([0, 255, 0], [173, 42, 26]),
            ([255, 0, 0], [32, 240, 118]),
        ];
        for (bgr, yuv) in cases {
            let src: Vec<u8> = (0..4).flat_map(|_| [bgr[0], bgr[1], bgr[2], 0]).collect();
            let mut f = I420Frame::new(2, 2);
            bgra_to_i420(&src, 2, 2, 8, &mut f).unwrap();
            let got = [f.y()[0], f.u()[0], f.v()[0]];
            for (g, want) in got.iter().zip(yuv) {
                assert!(g.abs_diff(want) <= 1, "{bgr:?}: got {got:?}, want {yuv:?}");
            }
        }
    }

    #[test]
    fn odd_sizes_repeat_the_edge_into_the_padding() {
        let (w, h) = (5u32, 3u32);
        let src = noise(3, w as usize * 4 * h as usize);
        let mut f = I420Frame::new(0, 0);
        bgra_to_i420(&src, w, h, w as usize * 4, &mut f).unwrap();
        assert_eq!((f.coded_width(), f.coded_height()), (6, 4));
        assert_eq!((f.chroma_width(), f.chroma_height()), (3, 2));
        let s = f.y_stride();
        for row in 0..3 {
            assert_eq!(f.y()[row * s + 5], f.y()[row * s + 4]);
        }
        assert_eq!(f.y()[3 * s..4 * s], f.y()[2 * s..3 * s]);
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        let mut f = I420Frame::new(0, 0);
        let mut n = Nv12Frame::new(0, 0);
        let buf = vec![0u8; 64 * 4 * 8];
        assert!(matches!(bgra_to_i420(&buf, 0, 8, 256, &mut f), Err(EncodeError::EmptyFrame { .. })));
        assert!(matches!(bgra_to_i420(&buf, 64, 8, 255, &mut f), Err(EncodeError::InvalidStride { .. })));
        assert!(matches!(bgra_to_i420(&buf, 64, 9, 256, &mut f), Err(EncodeError::SourceTooSmall { .. })));
        assert!(matches!(bgra_to_i420(&buf, 64, 8, usize::MAX, &mut f), Err(EncodeError::InvalidStride { .. })));
        assert!(matches!(bgra_to_nv12(&buf[..100], 64, 8, 256, &mut n), Err(EncodeError::SourceTooSmall { .. })));
        assert!(matches!(reference::bgra_to_i420(&buf, 64, 9, 256, &mut f), Err(EncodeError::SourceTooSmall { .. })));
        // A longer buffer than needed is fine.
        bgra_to_i420(&buf, 63, 7, 256, &mut f).unwrap();
    }

    #[test]
    fn resize_reuses_capacity() {
        let mut f = I420Frame::new(640, 360);
        let ptr = f.y().as_ptr();
        f.resize(640, 360);
        assert_eq!(f.y().as_ptr(), ptr);
        f.resize(320, 180);
        assert_eq!(f.y().as_ptr(), ptr, "shrinking keeps the allocation");
        assert_eq!(f.y().len(), 320 * 180);
        assert_eq!(f.u().len(), 160 * 90);
        f.resize(1, 1);
        assert_eq!((f.y().len(), f.u().len()), (4, 1));
        f.resize(0, 0);
        assert_eq!((f.y().len(), f.coded_height()), (0, 0));
    }
}
