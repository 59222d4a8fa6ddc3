//! Reads raw 8-bit luma frames (`WIDTH`×`HEIGHT` bytes each, e.g. ffmpeg's
//! `-f rawvideo -pix_fmt gray -`) from stdin, reads each frame's mark and
//! prints how long after its stamp (wall clock) the frame arrived: the
//! glass-to-glass latency of a pipeline whose source is a marked screen
//! (`peep demo-window`, `testing::Painter`). Each mark counts once (its
//! first frame). Used by `bench/compare.sh` for ffmpeg's pipe.
//!
//!     ffmpeg … -f rawvideo -pix_fmt gray - | mark_latency 1920 1080
//!
//! Prints `latency p50_ms=… p95_ms=… max_ms=… n=…` at the end of input.

use std::io::Read;

use peep_capture::marks::read_mark_luma;

fn now_ms() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs_f64() * 1e3).unwrap_or(0.0)
}

fn main() {
    let args: Vec<usize> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let (Some(&w), Some(&h)) = (args.first(), args.get(1)) else {
        eprintln!("usage: mark_latency WIDTH HEIGHT < raw gray frames");
        std::process::exit(2);
    };
    let mut frame = vec![0u8; w * h];
    let mut stdin = std::io::stdin().lock();
    let (mut latencies, mut last, mut unreadable) = (Vec::new(), None, 0u64);
    while stdin.read_exact(&mut frame).is_ok() {
        let arrived = now_ms();
        let Some(mark) = read_mark_luma(&frame, w, h, w) else {
            unreadable += 1;
            continue;
        };
        if last == Some(mark.counter) {
            continue;
        }
        last = Some(mark.counter);
        let mut d = arrived % 4_294_967_296.0 - f64::from(mark.timestamp_ms);
        if d < -2_147_483_648.0 {
            d += 4_294_967_296.0;
        }
        if (0.0..10_000.0).contains(&d) {
            latencies.push(d);
        }
    }
    latencies.sort_by(f64::total_cmp);
    let pct =
        |q: f64| latencies.get(((latencies.len().max(1) - 1) as f64 * q).round() as usize).copied().unwrap_or(f64::NAN);
    println!(
        "latency p50_ms={:.1} p95_ms={:.1} max_ms={:.1} n={} unreadable={unreadable}",
        pct(0.5),
        pct(0.95),
        latencies.last().copied().unwrap_or(f64::NAN),
        latencies.len()
    );
}
