//! Objective quality measures (PSNR) for tests and encoder tuning.

/// Mean squared error between two equally long sample buffers.
///
/// # Panics
/// If the lengths differ (a caller bug).
pub fn mse(a: &[u8], b: &[u8]) -> f64 {
    assert_eq!(a.len(), b.len(), "mse of buffers of different length");
    if a.is_empty() {
        return 0.0;
    }
    let sum: u64 = a.iter().zip(b).map(|(&x, &y)| u64::from(x.abs_diff(y)).pow(2)).sum();
    sum as f64 / a.len() as f64
}

/// Mean squared error over a `width`x`height` window of two strided planes.
///
/// # Panics
/// If either plane is too small for the window (a caller bug).
pub fn mse_plane(a: &[u8], a_stride: usize, b: &[u8], b_stride: usize, width: usize, height: usize) -> f64 {
    if width == 0 || height == 0 {
        return 0.0;
    }
    let mut sum = 0u64;
    for row in 0..height {
        let ra = &a[row * a_stride..][..width];
        let rb = &b[row * b_stride..][..width];
        sum += ra.iter().zip(rb).map(|(&x, &y)| u64::from(x.abs_diff(y)).pow(2)).sum::<u64>();
    }
    sum as f64 / (width * height) as f64
}

/// PSNR in dB of 8-bit samples for a given MSE; identical inputs give
/// `f64::INFINITY`.
pub fn psnr_from_mse(mse: f64) -> f64 {
    if mse <= 0.0 { f64::INFINITY } else { 10.0 * (255.0 * 255.0 / mse).log10() }
}

/// PSNR in dB between two equally long 8-bit buffers.
///
/// # Panics
/// If the lengths differ (a caller bug).
pub fn psnr(a: &[u8], b: &[u8]) -> f64 {
    psnr_from_mse(mse(a, b))
}

/// PSNR in dB over a `width`x`height` window of two strided planes, e.g. the
/// visible part of a decoded Y plane against the source.
///
/// # Panics
/// If either plane is too small for the window (a caller bug).
pub fn psnr_plane(a: &[u8], a_stride: usize, b: &[u8], b_stride: usize, width: usize, height: usize) -> f64 {
    psnr_from_mse(mse_plane(a, a_stride, b, b_stride, width, height))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_is_infinite_and_known_error_is_exact() {
        assert_eq!(psnr(&[1, 2, 3], &[1, 2, 3]), f64::INFINITY);
        // Every sample off by one: MSE 1 → 20·log10(255) ≈ 48.13 dB.
        let p = psnr(&[10; 16], &[11; 16]);
        assert!((p - 48.1308).abs() < 1e-3, "{p}");
    }

    #[test]
    fn plane_window_ignores_padding() {
        let a = [1, 2, 99, 3, 4, 99];
        let b = [1, 2, 0, 3, 4];
        assert_eq!(psnr_plane(&a, 3, &b, 3, 2, 2), f64::INFINITY);
        assert_eq!(mse_plane(&a, 3, &b, 3, 3, 1), 99.0 * 99.0 / 3.0);
    }
}
