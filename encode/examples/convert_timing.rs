//! Conversion timing in the same line format as `bench/convert_baselines.c`,
//! so `bench/compare.sh` can print Peep's converter beside libyuv and swscale
//! (and yuvutils-rs, the converter Peep used before its own kernels).
//!
//!     cargo run --release -p peep-encode --example convert_timing

use std::time::Instant;

use peep_encode::convert::Kernel;
use peep_encode::{I420Frame, Nv12Frame, bgra_to_i420, bgra_to_nv12};
use yuvutils_rs::{BufferStoreMut, YuvConversionMode, YuvPlanarImageMut, YuvRange, YuvStandardMatrix};

/// The previous converter (yuvutils-rs), for comparison.
fn yuvutils_i420(src: &[u8], w: u32, h: u32, stride: usize, dst: &mut I420Frame) {
    let (y_stride, uv_stride) = (dst.y_stride() as u32, dst.uv_stride() as u32);
    let (y, u, v) = dst.planes_mut();
    let mut image = YuvPlanarImageMut {
        y_plane: BufferStoreMut::Borrowed(&mut y[..y_stride as usize * h as usize]),
        y_stride,
        u_plane: BufferStoreMut::Borrowed(u),
        u_stride: uv_stride,
        v_plane: BufferStoreMut::Borrowed(v),
        v_stride: uv_stride,
        width: w,
        height: h,
    };
    yuvutils_rs::bgra_to_yuv420(
        &mut image,
        src,
        stride as u32,
        YuvRange::Limited,
        YuvStandardMatrix::Bt709,
        YuvConversionMode::Balanced,
    )
    .expect("yuvutils");
}

fn stats(mut ms: Vec<f64>) -> (f64, f64, f64) {
    ms.sort_by(f64::total_cmp);
    let p = |q: f64| ms[((ms.len() as f64 - 1.0) * q).round() as usize];
    (p(0.5), p(0.95), ms[0])
}

fn main() {
    for (w, h, iters) in [(1920u32, 1080u32, 200usize), (3840, 2160, 50)] {
        let stride = w as usize * 4;
        // Varied content, like the C baseline: a gradient with noise.
        let mut state = 0x1234_5678u32;
        let src: Vec<u8> = (0..stride * h as usize)
            .map(|i| {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                ((i / 4 % 256) as u32 ^ (state & 0x3f)) as u8
            })
            .collect();
        let mut i420 = I420Frame::new(w, h);
        let mut nv12 = Nv12Frame::new(w, h);
        let mut old = I420Frame::new(w, h);
        let kernel = format!("{:?}", Kernel::best()).to_lowercase();
        for (name, mut run) in [
            (
                format!("peep-{kernel}-i420"),
                Box::new(|| bgra_to_i420(&src, w, h, stride, &mut i420).expect("convert")) as Box<dyn FnMut()>,
            ),
            (format!("peep-{kernel}-nv12"), Box::new(|| bgra_to_nv12(&src, w, h, stride, &mut nv12).expect("convert"))),
            ("yuvutils-i420 (before)".into(), Box::new(|| yuvutils_i420(&src, w, h, stride, &mut old))),
        ] {
            for _ in 0..10 {
                run();
            }
            let times: Vec<f64> = (0..iters)
                .map(|_| {
                    let t = Instant::now();
                    run();
                    t.elapsed().as_secs_f64() * 1e3
                })
                .collect();
            let (median, p95, min) = stats(times);
            println!(
                "convert impl={name} size={w}x{h} matrix=bt709-limited iters={iters} median_ms={median:.3} p95_ms={p95:.3} min_ms={min:.3}"
            );
        }
    }
}
