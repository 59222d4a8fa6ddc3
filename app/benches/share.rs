//! Sharing benchmarks in a real headless Chromium (numbers, not pass/fail):
//!
//! * glass-to-glass latency at 1080p30: the synthetic source stamps each
//!   frame with its capture time (wall clock, ms); the page reads the stamp
//!   back from every presented frame and compares it with the frame's
//!   expected display time;
//! * time from opening the link to the first rendered frame, and from the
//!   WHEP POST to it;
//! * sender CPU with 1, 2 and 4 viewers;
//! * sender CPU with one Chromium viewer (H.264) against one Chromium plus
//!   one Firefox viewer (Firefox without H.264 gets VP9: a second encoder
//!   runs beside OpenH264). Firefox runs in a network namespace (it skips
//!   loopback candidates), so this part needs root and `firefox-esr`.
//!
//!     cargo bench -p peep --bench share [-- SECONDS]

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
use peep_capture::backend::synthetic::SyntheticBackend;
use peep_capture::synthetic::Scene;
use peep_encode::{OpenH264Config, OpenH264Encoder};
use peep_transport::{BitrateRange, ShareConfig};

fn session(scene: Scene) -> Session {
    session_on(scene, IpAddr::V4(Ipv4Addr::LOCALHOST))
}

fn session_on(scene: Scene, bind: IpAddr) -> Session {
    let source = SyntheticBackend::new(1920, 1080, scene).expect("source");
    let encoder =
        OpenH264Encoder::new(OpenH264Config { bitrate_bps: 4_000_000, fps: 30.0, ..OpenH264Config::default() })
            .expect("encoder");
    let config =
        ShareConfig { bind, port: 0, bitrate: BitrateRange::new(1_000_000, 4_000_000), ..ShareConfig::default() };
    Session::start(Box::new(source), Box::new(encoder), PipelineConfig::default(), config).expect("session")
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
    let seconds: u64 = std::env::args().filter_map(|a| a.parse().ok()).next().unwrap_or(10);
    println!(
        "== share benchmarks: 1920x1080 @ 30 fps, synthetic source, headless Chromium, {seconds} s per measurement =="
    );

    for scene in [Scene::Typing, Scene::Moving] {
        let s = session(scene);
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
        drop(b);
        s.stop().expect("stop");
    }

    // Sender CPU (this process: synthetic rendering, conversion, encoding,
    // WebRTC) with 1, 2 and 4 viewers of one typing share.
    let s = session(Scene::Typing);
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
    let s = session_on(Scene::Typing, link.a.ip().parse().expect("address"));
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
