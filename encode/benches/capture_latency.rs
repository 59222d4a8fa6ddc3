//! Latency of the capture side on a real X server (numbers, not pass/fail).
//!
//! A separate X client ([`Painter`]) draws a synthetic scene into a
//! full-screen window of a private Xvfb at a rate deliberately unrelated to
//! the capture rate, stamping each picture with the wall-clock time it was
//! sent. Peep's capture thread (X11, MIT-SHM) feeds the frame ring; this
//! thread takes each frame, reads the stamp back from the pixels, converts
//! and encodes it (OpenH264, default settings), and records:
//!
//! * draw → captured: stamp to the moment the frame is taken from the ring
//!   (the wait for the capture to notice the change, plus ShmGetImage);
//! * draw → encoded: stamp to the end of encoding;
//! * captured → encoded: the frame's capture time to the end of encoding.
//!
//!     cargo bench -p peep-encode --bench capture_latency [-- SECONDS] [FPS] [PAINT_FPS] [SCENE]
//!
//! Defaults: 10 s, 30 fps capture, 24 fps painter, typing, 1920x1080.
//! Stamps are whole milliseconds, so draw → … figures are up to 1 ms high.

#[cfg(not(target_os = "linux"))]
fn main() {
    eprintln!("capture_latency needs X11 (Linux)");
}

#[cfg(target_os = "linux")]
fn main() {
    imp::main();
}

#[cfg(target_os = "linux")]
mod imp {
    use std::sync::Arc;
    use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

    use peep_capture::backend::CaptureBackend;
    use peep_capture::backend::x11::X11Session;
    use peep_capture::driver::{self, CaptureConfig, CaptureStats};
    use peep_capture::marks::read_mark_bgra;
    use peep_capture::synthetic::Scene;
    use peep_capture::testing::{Painter, Xvfb};
    use peep_capture::{SourceId, Take, frame_ring};
    use peep_encode::{EncodedFrame, Encoder, I420Frame, OpenH264Config, OpenH264Encoder, bgra_to_i420};

    const WIDTH: u32 = 1920;
    const HEIGHT: u32 = 1080;

    fn unix_ms() -> f64 {
        SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64() * 1e3).unwrap_or(0.0)
    }

    /// Milliseconds from a mark's stamp (UNIX ms modulo 2³²) to `now_ms`.
    fn since_stamp(now_ms: f64, stamp: u32) -> f64 {
        let now_wrapped = now_ms % 4_294_967_296.0;
        let mut d = now_wrapped - f64::from(stamp);
        if d < -2_147_483_648.0 {
            d += 4_294_967_296.0;
        }
        d
    }

    fn percentile(sorted: &[f64], q: f64) -> f64 {
        if sorted.is_empty() {
            return f64::NAN;
        }
        sorted[((sorted.len() - 1) as f64 * q).round() as usize]
    }

    fn summary(name: &str, mut v: Vec<f64>) -> String {
        v.sort_by(f64::total_cmp);
        format!(
            "{name:<20} p50 {:6.1}  p95 {:6.1}  max {:6.1} ms  (n={})",
            percentile(&v, 0.5),
            percentile(&v, 0.95),
            v.last().copied().unwrap_or(f64::NAN),
            v.len()
        )
    }

    pub fn main() {
        let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
        let numbers: Vec<f64> = args.iter().filter_map(|a| a.parse().ok()).collect();
        let seconds = numbers.first().copied().unwrap_or(10.0);
        let fps = numbers.get(1).copied().unwrap_or(30.0) as f32;
        let paint_fps = numbers.get(2).copied().unwrap_or(24.0) as f32;
        let scene = args.iter().find_map(|a| Scene::from_name(a)).unwrap_or(Scene::Typing);
        println!(
            "== capture latency: X11 {WIDTH}x{HEIGHT}, capture {fps} fps, painter {paint_fps} fps ({}), {seconds} s ==",
            scene.name()
        );

        let x = Xvfb::start(WIDTH, HEIGHT).unwrap_or_else(|e| panic!("{e}"));
        let painter = Painter::start(x.display(), WIDTH, HEIGHT, scene, paint_fps).expect("painter");
        std::thread::sleep(Duration::from_millis(500));

        let session = X11Session::connect_to(Some(x.display())).expect("connect");
        let backend: Box<dyn CaptureBackend> = Box::new(session.capture(&SourceId::Screen).expect("capture"));
        let (producer, mut consumer) = frame_ring();
        let stats = Arc::new(CaptureStats::default());
        let config = CaptureConfig { fps, keepalive: Duration::from_secs(1), ..CaptureConfig::default() };
        let capture = driver::spawn_capture(backend, producer, config, stats.clone()).expect("capture thread");

        let mut encoder = OpenH264Encoder::new(OpenH264Config { fps, ..OpenH264Config::default() }).expect("encoder");
        let mut yuv = I420Frame::new(WIDTH, HEIGHT);
        let mut out = EncodedFrame::with_capacity(1 << 20);
        let (mut to_captured, mut to_encoded, mut captured_to_encoded) = (Vec::new(), Vec::new(), Vec::new());
        let mut last_counter = None;
        let started = Instant::now();
        let warmup = Duration::from_secs(1);
        while started.elapsed() < warmup + Duration::from_secs_f64(seconds) {
            let frame = match consumer.take_timeout(Duration::from_millis(200)) {
                Take::Frame(f) => f,
                Take::Timeout => continue,
                Take::Closed => panic!("capture ended"),
            };
            let taken_ms = unix_ms();
            let meta = *frame.meta();
            let mark = read_mark_bgra(frame.data(), meta.width as usize, meta.height as usize, meta.stride_bytes);
            bgra_to_i420(frame.data(), meta.width, meta.height, meta.stride_bytes, &mut yuv).expect("convert");
            drop(frame);
            let pts = meta.captured_at.saturating_duration_since(started);
            let _ = encoder.encode(&yuv, pts, &mut out).expect("encode");
            let (encoded_ms, encoded_at) = (unix_ms(), Instant::now());
            if started.elapsed() < warmup {
                continue;
            }
            captured_to_encoded.push(encoded_at.saturating_duration_since(meta.captured_at).as_secs_f64() * 1e3);
            // Keep-alive frames repeat the previous picture: not a change.
            if let Some(mark) = mark
                && last_counter != Some(mark.counter)
            {
                last_counter = Some(mark.counter);
                to_captured.push(since_stamp(taken_ms, mark.timestamp_ms));
                to_encoded.push(since_stamp(encoded_ms, mark.timestamp_ms));
            }
        }
        capture.join().expect("capture");
        let drawn = painter.stop().expect("painter");
        let ring = consumer.stats();
        println!("{}", summary("draw → captured", to_captured));
        println!("{}", summary("draw → encoded", to_encoded));
        println!("{}", summary("captured → encoded", captured_to_encoded));
        println!(
            "painter drew {drawn}; capture: {} published, {} unchanged polls, {} forced; ring overwrote {}",
            stats.frames_captured.load(std::sync::atomic::Ordering::Relaxed),
            stats.frames_unchanged.load(std::sync::atomic::Ordering::Relaxed),
            stats.frames_forced.load(std::sync::atomic::Ordering::Relaxed),
            ring.overwritten.load(std::sync::atomic::Ordering::Relaxed),
        );
    }
}
