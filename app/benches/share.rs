//! Sharing benchmarks in a real headless Chromium (numbers, not pass/fail):
//!
//! * glass-to-glass latency at 1080p30: the synthetic source stamps each
//!   frame with its capture time (wall clock, ms); the page reads the stamp
//!   back from every presented frame and compares it with the frame's
//!   expected display time;
//! * time from opening the link to the first rendered frame, and from the
//!   WHEP POST to it;
//! * sender CPU with 1, 2 and 4 viewers, and with one Chromium viewer
//!   against one Chromium plus one Firefox viewer (Firefox without H.264
//!   gets VP9: a second encoder runs beside OpenH264). Firefox runs in a
//!   network namespace (it skips loopback candidates), so this part needs
//!   root and `firefox-esr`.
//!
//!     cargo bench -p peep --bench share [-- SECONDS] [x11] [FPS]
//!
//! With `x11` the latency is measured on a real X server instead: a private
//! Xvfb where a separate X client ([`Painter`]) draws the scene at 24 fps
//! (unrelated to the capture rate) and stamps each picture as it sends it,
//! so the figure includes the wait for the capture to notice the change.
//! `FPS` (default 30) is the capture rate. With `display=:N` the screen of
//! that (running) X server is shared as it is — whatever draws marks on it
//! (`peep demo-window` in `bench/compare.sh`) — and only glass-to-glass is
//! measured, printed as one `latency … p50_ms=… p95_ms=…` line per scene
//! for scripts.

#[path = "../tests/common/browser.rs"]
mod browser;
#[path = "../tests/common/firefox.rs"]
mod firefox;
#[path = "../tests/common/netns.rs"]
mod netns;

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use browser::{Browser, LATENCY_PROBE, Page};
use peep::pipeline::PipelineConfig;
use peep::session::Session;
use peep_capture::SourceId;
use peep_capture::backend::CaptureBackend;
use peep_capture::backend::synthetic::SyntheticBackend;
use peep_capture::backend::x11::X11Session;
use peep_capture::synthetic::Scene;
use peep_capture::testing::{Painter, Xvfb};
use peep_encode::{OpenH264Config, OpenH264Encoder};
use peep_transport::{BitrateRange, ShareConfig};

/// Where the shared picture comes from.
enum Source {
    /// Peep's synthetic source (stamps at capture time).
    Synthetic,
    /// A private Xvfb with a separate painter client (stamps at draw time).
    X11 { xvfb: Xvfb },
    /// Someone else's X server and painter.
    Display(String),
}

fn session(source: &Source, scene: Scene, fps: f32) -> (Session, Option<Painter>) {
    session_on(source, scene, fps, IpAddr::V4(Ipv4Addr::LOCALHOST))
}

fn session_on(source: &Source, scene: Scene, fps: f32, bind: IpAddr) -> (Session, Option<Painter>) {
    let (backend, painter): (Box<dyn CaptureBackend>, _) = match source {
        Source::Synthetic => (Box::new(SyntheticBackend::new(1920, 1080, scene).expect("source")), None),
        Source::X11 { xvfb } => {
            let painter = Painter::start(xvfb.display(), 1920, 1080, scene, 24.0).expect("painter");
            let x = X11Session::connect_to(Some(xvfb.display())).expect("connect");
            (Box::new(x.capture(&SourceId::Screen).expect("capture")), Some(painter))
        }
        Source::Display(display) => {
            let x = X11Session::connect_to(Some(display)).expect("connect");
            let mut capture = x.capture(&SourceId::Screen).expect("capture");
            capture.set_cursor(false);
            (Box::new(capture), None)
        }
    };
    let encoder = OpenH264Encoder::new(OpenH264Config { bitrate_bps: 4_000_000, fps, ..OpenH264Config::default() })
        .expect("encoder");
    let config =
        ShareConfig { bind, port: 0, bitrate: BitrateRange::new(1_000_000, 4_000_000), ..ShareConfig::default() };
    let pipeline = PipelineConfig { fps, ..PipelineConfig::default() };
    (Session::start(backend, Box::new(encoder), pipeline, config).expect("session"), painter)
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
    // After the ')' field 0 is the state: utime and stime are fields 11 and 12.
    (ticks(11) + ticks(12)) / 100.0
}

fn open_live(b: &mut Browser, link: &str) -> Page {
    let page = b.open(link);
    b.wait_for(&page, "window.peep && peep.state() === 'live'", Duration::from_secs(30));
    page
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    let seconds: u64 = args.first().and_then(|a| a.parse().ok()).unwrap_or(10);
    let fps: f32 = args.iter().skip(1).find_map(|a| a.parse().ok()).unwrap_or(30.0);
    let source = if let Some(display) = args.iter().find_map(|a| a.strip_prefix("display=")) {
        Source::Display(display.to_owned())
    } else if args.iter().any(|a| a == "x11") {
        Source::X11 { xvfb: Xvfb::start(1920, 1080).unwrap_or_else(|e| panic!("{e}")) }
    } else {
        Source::Synthetic
    };
    println!(
        "== share benchmarks: 1920x1080 @ {fps} fps, {} source, headless Chromium, {seconds} s per measurement ==",
        match &source {
            Source::Synthetic => "synthetic".to_owned(),
            Source::X11 { .. } => "X11 (Xvfb, painter at 24 fps)".to_owned(),
            Source::Display(d) => format!("X11 display {d} as it is"),
        }
    );
    // An external display shows whatever its painter draws: one measurement.
    let scenes: &[Scene] =
        if matches!(source, Source::Display(_)) { &[Scene::Typing] } else { &[Scene::Typing, Scene::Moving] };

    for &scene in scenes {
        let (s, painter) = session(&source, scene, fps);
        let mut b = Browser::launch();
        let started = Instant::now();
        let page = open_live(&mut b, s.share().link());
        let wall = started.elapsed();
        let stats = b.stats(&page);
        let first = stats["firstFrameMs"].as_f64().unwrap_or(f64::NAN);
        let offer = stats["offerSentMs"].as_f64().unwrap_or(f64::NAN);
        b.eval(&page, LATENCY_PROBE);
        std::thread::sleep(Duration::from_secs(seconds));
        let mut lat: Vec<f64> = b
            .eval(&page, "window.__lat")
            .as_array()
            .map(|a| a.iter().filter_map(|v| v.as_f64()).collect())
            .unwrap_or_default();
        lat.sort_by(f64::total_cmp);
        let page_stats = b.stats(&page);
        println!(
            "{:<9} glass-to-glass ms: p50 {:.1} p95 {:.1} max {:.1} (n={})   first frame: {:.0} ms after page load start, {:.0} ms after the WHEP POST ({:.0} ms wall)   jitter buffer {:.1} ms, decode {:.1} ms, fps {:.1}",
            scene.name(),
            percentile(&lat, 0.5),
            percentile(&lat, 0.95),
            lat.last().copied().unwrap_or(f64::NAN),
            lat.len(),
            first,
            first - offer,
            wall.as_secs_f64() * 1e3,
            page_stats["jitterMs"].as_f64().unwrap_or(f64::NAN),
            page_stats["decodeMs"].as_f64().unwrap_or(f64::NAN),
            page_stats["fps"].as_f64().unwrap_or(f64::NAN),
        );
        if matches!(source, Source::Display(_)) {
            println!(
                "latency tool=peep p50_ms={:.1} p95_ms={:.1} max_ms={:.1} n={}",
                percentile(&lat, 0.5),
                percentile(&lat, 0.95),
                lat.last().copied().unwrap_or(f64::NAN),
                lat.len()
            );
        }
        drop(b);
        s.stop().expect("stop");
        drop(painter);
    }
    if !matches!(source, Source::Synthetic) {
        return;
    }

    // Sender CPU (this process: synthetic rendering, conversion, encoding,
    // WebRTC) with 1, 2 and 4 viewers of one typing share.
    let (s, _) = session(&source, Scene::Typing, fps);
    let mut b = Browser::launch();
    let mut pages = Vec::new();
    let mut previous: Option<(f64, usize)> = None;
    for viewers in [1usize, 2, 4] {
        while pages.len() < viewers {
            pages.push(open_live(&mut b, s.share().link()));
        }
        std::thread::sleep(Duration::from_secs(2));
        let (c0, t0) = (cpu_seconds(), Instant::now());
        std::thread::sleep(Duration::from_secs(seconds));
        let percent = (cpu_seconds() - c0) / t0.elapsed().as_secs_f64() * 100.0;
        let per_extra = previous.map(|(p, n)| (percent - p) / (viewers - n) as f64);
        println!(
            "sender CPU with {viewers} viewer(s): {percent:.1} % of a core{}",
            per_extra.map(|d| format!("  ({d:+.2} % of a core per extra viewer)")).unwrap_or_default()
        );
        previous = Some((percent, viewers));
    }
    drop(b);
    s.stop().expect("stop");

    second_codec_cpu(seconds);
}

/// Sender CPU over `seconds` while the pages play.
fn measure_cpu(seconds: u64) -> f64 {
    std::thread::sleep(Duration::from_secs(2));
    let (c0, t0) = (cpu_seconds(), Instant::now());
    std::thread::sleep(Duration::from_secs(seconds));
    (cpu_seconds() - c0) / t0.elapsed().as_secs_f64() * 100.0
}

/// One Chromium viewer (H.264 only) against Chromium + Firefox (H.264 and
/// VP9: two encodes of one capture and one conversion).
fn second_codec_cpu(seconds: u64) {
    use peep_encode::Codec;
    use std::sync::atomic::Ordering::Relaxed;
    let ns = netns::Netns::new("pfb");
    let link = netns::Link::new(None, "10.244.20.1/30", Some(&ns), "10.244.20.2/30");
    let (s, _) = session_on(&Source::Synthetic, Scene::Typing, 30.0, link.a.ip().parse().expect("address"));
    let origin = format!("--unsafely-treat-insecure-origin-as-secure=http://{}", s.share().local_addr());
    let mut chromium = Browser::launch_with(&[&origin]);
    let _page = open_live(&mut chromium, s.share().link());
    let one = measure_cpu(seconds);
    let h264_ms = s.pipeline_stats().codec(Codec::H264).encode_time.quantile(0.5).as_secs_f64() * 1e3;
    let mut firefox = firefox::Firefox::launch(&ns, &[]);
    let tab = firefox.open(s.share().link());
    firefox.wait_for(&tab, "window.peep && peep.state() === 'live'", Duration::from_secs(30));
    let two = measure_cpu(seconds);
    let vp9 = s.pipeline_stats().codec(Codec::Vp9);
    let codec = firefox.stats(&tab)["codec"].as_str().unwrap_or("?").to_owned();
    println!(
        "sender CPU, 1920x1080 typing: Chromium alone (H.264) {one:.1} % of a core; Chromium + Firefox ({codec}) {two:.1} % \
         ({:+.1} %); encode ms p50: H.264 {h264_ms:.1}, VP9 {:.1}; VP9 frames {}",
        two - one,
        vp9.encode_time.quantile(0.5).as_secs_f64() * 1e3,
        vp9.frames_encoded.load(Relaxed)
    );
    drop(firefox);
    drop(chromium);
    s.stop().expect("stop");
}
