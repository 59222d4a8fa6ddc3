//! Conversion timing in the same line format as `bench/convert_baselines.c`,
//! so `bench/compare.sh` can print Peep's converter beside libyuv and swscale.
//!
//!     cargo run --release -p peep-encode --example convert_timing

use std::time::Instant;

use peep_encode::{I420Frame, Nv12Frame, bgra_to_i420, bgra_to_nv12};

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
        for (name, mut run) in [
            (
                "peep-yuvutils-i420",
                Box::new(|| bgra_to_i420(&src, w, h, stride, &mut i420).expect("convert")) as Box<dyn FnMut()>,
            ),
            ("peep-yuvutils-nv12", Box::new(|| bgra_to_nv12(&src, w, h, stride, &mut nv12).expect("convert"))),
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
