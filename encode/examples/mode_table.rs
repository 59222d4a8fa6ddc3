//! Measures encoder settings on synthetic screen content: speed, achieved
//! bitrate and quality of text at equal target bitrate. OpenH264's modes,
//! and libvpx's VP8 and VP9 at real-time speeds, on the same frames.
//!
//! ```text
//! cargo run --release -p peep-encode --example mode_table -- \
//!     [--frames 90] [--size 1920x1080] [--bitrates 2500,6000] \
//!     [--scenes typing,scrolling,moving] [--codecs h264,vp8,vp9] [--only NAME_SUBSTRING]
//! ```
//!
//! For every candidate configuration, target bitrate and scene it encodes the
//! same pre-converted frames at 30 fps, decodes them with the matching
//! decoder (OpenH264's, libvpx's) and prints one markdown row: encode CPU time per frame (mean, the calling
//! thread's CPU clock, robust on a busy machine), wall time (p50/p95), achieved
//! bitrate, PSNR-Y over "text" blocks (16x16 blocks with any luma variation
//! in the source, i.e. everything but flat background), the worst frame's
//! text PSNR, whole-frame PSNR-Y, and frames skipped. A skipped frame is
//! scored against the last decoded picture, which is what a viewer sees.
//! "paint-over" is the text PSNR of the picture once the content stops
//! and the one refinement frame (`Encoder::refine`, what the pipeline sends
//! 300 ms after the last change) has been decoded, with its size in KB.

use openh264::decoder::Decoder;
use openh264::formats::YUVSource;
use peep_capture::marks::FrameMark;
use peep_capture::synthetic::{Scene, SyntheticScene};
use peep_encode::quality::psnr_from_mse;
use peep_encode::{
    Codec, Complexity, EncodeOutcome, EncodedFrame, Encoder, I420Frame, OpenH264Config, OpenH264Encoder, RateControl,
    Usage, VpxCodec, VpxConfig, VpxDecoder, VpxEncoder, bgra_to_i420,
};
use std::time::{Duration, Instant};

const BLOCK: usize = 16;

struct Args {
    frames: u64,
    width: u32,
    height: u32,
    bitrates_kbps: Vec<u32>,
    scenes: Vec<Scene>,
    codecs: Vec<Codec>,
    only: Option<String>,
}

fn parse_args() -> Args {
    let mut args = Args {
        frames: 90,
        width: 1920,
        height: 1080,
        bitrates_kbps: vec![2500, 6000],
        scenes: vec![Scene::Typing, Scene::Scrolling, Scene::Moving],
        codecs: Codec::ALL.to_vec(),
        only: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--frames" => args.frames = value.parse().expect("--frames N"),
            "--size" => {
                let (w, h) = value.split_once('x').expect("--size WxH");
                args.width = w.parse().expect("width");
                args.height = h.parse().expect("height");
            }
            "--bitrates" => {
                args.bitrates_kbps = value.split(',').map(|v| v.parse().expect("kbps")).collect();
            }
            "--scenes" => {
                args.scenes = value.split(',').map(|v| Scene::from_name(v).expect("scene name")).collect();
            }
            "--codecs" => {
                args.codecs = value
                    .split(',')
                    .map(|v| match v {
                        "h264" => Codec::H264,
                        "vp8" => Codec::Vp8,
                        "vp9" => Codec::Vp9,
                        other => panic!("unknown codec {other} (h264, vp8, vp9)"),
                    })
                    .collect();
            }
            "--only" => args.only = Some(value),
            other => panic!("unknown flag {other}"),
        }
    }
    args
}

/// One encoder configuration to measure.
#[derive(Clone, Copy)]
enum Candidate {
    OpenH264(OpenH264Config),
    Vpx(VpxConfig),
}

impl Candidate {
    fn codec(&self) -> Codec {
        match self {
            Candidate::OpenH264(_) => Codec::H264,
            Candidate::Vpx(c) => c.codec.into(),
        }
    }

    fn with_bitrate(self, bitrate_bps: u32) -> Self {
        match self {
            Candidate::OpenH264(c) => Candidate::OpenH264(OpenH264Config { bitrate_bps, ..c }),
            Candidate::Vpx(c) => Candidate::Vpx(VpxConfig { bitrate_bps, ..c }),
        }
    }

    fn encoder(&self) -> Box<dyn Encoder> {
        match *self {
            Candidate::OpenH264(c) => Box::new(OpenH264Encoder::new(c).expect("config")),
            Candidate::Vpx(c) => Box::new(VpxEncoder::new(c).expect("config")),
        }
    }
}

/// The candidates: OpenH264's (below) and libvpx's at real-time speeds,
/// each with the codec's screen-content tuning and without.
fn candidates() -> Vec<(String, Candidate)> {
    let mut all: Vec<(String, Candidate)> =
        openh264_candidates().into_iter().map(|(n, c)| (n, Candidate::OpenH264(c))).collect();
    all.push(("openh264 default".into(), Candidate::OpenH264(OpenH264Config::default())));
    for (codec, speeds) in [(VpxCodec::Vp8, &[4u8, 6, 8, 10, 12, 14][..]), (VpxCodec::Vp9, &[6, 7, 8, 9][..])] {
        let base = VpxConfig::for_codec(codec);
        let tag = match codec {
            VpxCodec::Vp8 => "vp8",
            VpxCodec::Vp9 => "vp9",
        };
        for &speed in speeds {
            all.push((format!("{tag} speed {speed} screen"), Candidate::Vpx(VpxConfig { speed, ..base })));
        }
        all.push((
            format!("{tag} speed {} camera", base.speed),
            Candidate::Vpx(VpxConfig { screen_content: false, ..base }),
        ));
        all.push((
            format!("{tag} speed {} screen, no keyframe cap", base.speed),
            Candidate::Vpx(VpxConfig { max_keyframe_pct: 0, ..base }),
        ));
    }
    all
}

/// OpenH264's candidates: one change at a time from a common base where possible.
fn openh264_candidates() -> Vec<(String, OpenH264Config)> {
    let base = OpenH264Config {
        usage: Usage::Screen,
        complexity: Complexity::Medium,
        skip_frames: false,
        threads: 1,
        qp_range: None,
        rate_control: RateControl::Bitrate,
        max_slice_bytes: None,
        ..OpenH264Config::default()
    };
    let with = |f: &dyn Fn(&mut OpenH264Config)| {
        let mut c = base;
        f(&mut c);
        c
    };
    let name = |c: &OpenH264Config| {
        let mut n = format!(
            "{} {}",
            match c.usage {
                Usage::Screen => "screen",
                Usage::Camera => "camera",
            },
            match c.complexity {
                Complexity::Low => "low",
                Complexity::Medium => "med",
                Complexity::High => "high",
            }
        );
        if c.skip_frames {
            n += " skip";
        }
        if let Some((min, max)) = c.qp_range {
            n += &format!(" qp{min}-{max}");
        }
        if c.rate_control == RateControl::Quality {
            n += " rc=quality";
        }
        if c.threads != 1 {
            n += &format!(" t{}", c.threads);
        }
        if let Some(bytes) = c.max_slice_bytes {
            n += &format!(" slice{bytes}");
        }
        if c.slices > 1 {
            n += &format!(" slices{}", c.slices);
        }
        n
    };
    let configs = [
        with(&|c| c.complexity = Complexity::Low),
        base,
        with(&|c| c.complexity = Complexity::High),
        with(&|c| c.skip_frames = true),
        with(&|c| {
            c.qp_range = Some((12, 42));
            c.complexity = Complexity::High;
        }),
        with(&|c| c.qp_range = Some((12, 42))),
        with(&|c| c.qp_range = Some((18, 40))),
        with(&|c| {
            c.qp_range = Some((12, 42));
            c.complexity = Complexity::Low;
        }),
        with(&|c| {
            c.qp_range = Some((12, 42));
            c.skip_frames = true;
        }),
        with(&|c| {
            c.qp_range = Some((12, 42));
            c.rate_control = RateControl::Quality;
        }),
        with(&|c| {
            c.qp_range = Some((12, 42));
            c.threads = 2;
        }),
        with(&|c| {
            c.qp_range = Some((12, 42));
            c.threads = 2;
            c.max_slice_bytes = Some(1200);
        }),
        with(&|c| {
            c.usage = Usage::Camera;
            c.complexity = Complexity::Low;
        }),
        with(&|c| c.usage = Usage::Camera),
        with(&|c| {
            c.usage = Usage::Camera;
            c.complexity = Complexity::High;
        }),
        with(&|c| {
            c.usage = Usage::Camera;
            c.skip_frames = true;
        }),
        with(&|c| {
            c.usage = Usage::Camera;
            c.threads = 2;
        }),
    ];
    let mut all: Vec<(String, OpenH264Config)> = configs.into_iter().map(|c| (name(&c), c)).collect();
    // Peep's defaults, and with several slices (one thread each).
    let default = OpenH264Config { slices: 1, ..OpenH264Config::default() };
    all.push(("default".into(), default));
    for slices in [2, 4] {
        all.push((format!("default slices{slices}"), OpenH264Config { slices, ..default }));
    }
    all.push(("default camera".into(), OpenH264Config { usage: Usage::Camera, ..default }));
    all
}

/// A pre-converted source frame and its text blocks.
struct Prepared {
    yuv: I420Frame,
    text_blocks: Vec<(usize, usize)>,
}

fn prepare(scene: Scene, width: u32, height: u32, frames: u64) -> Vec<Prepared> {
    let synthetic = SyntheticScene::new(width as usize, height as usize, scene);
    let stride = width as usize * 4;
    let mut bgra = vec![0u8; stride * height as usize];
    (0..frames)
        .map(|i| {
            let mark = FrameMark { counter: i as u32, timestamp_ms: (i * 33) as u32 };
            synthetic.render(i, &mut bgra, stride, mark);
            let mut yuv = I420Frame::new(width, height);
            bgra_to_i420(&bgra, width, height, stride, &mut yuv).expect("convert");
            let text_blocks = text_blocks(&yuv);
            Prepared { yuv, text_blocks }
        })
        .collect()
}

/// 16x16 blocks (fully inside the picture) whose luma is not flat.
fn text_blocks(yuv: &I420Frame) -> Vec<(usize, usize)> {
    let (w, h, s) = (yuv.width() as usize, yuv.height() as usize, yuv.y_stride());
    let mut blocks = Vec::new();
    for by in 0..h / BLOCK {
        for bx in 0..w / BLOCK {
            let first = yuv.y()[by * BLOCK * s + bx * BLOCK];
            let flat = (0..BLOCK).all(|r| {
                let row = &yuv.y()[(by * BLOCK + r) * s + bx * BLOCK..][..BLOCK];
                row.iter().all(|&v| v == first)
            });
            if !flat {
                blocks.push((bx, by));
            }
        }
    }
    blocks
}

fn block_sse(a: &[u8], a_stride: usize, b: &[u8], b_stride: usize, bx: usize, by: usize) -> u64 {
    (0..BLOCK)
        .map(|r| {
            let ra = &a[(by * BLOCK + r) * a_stride + bx * BLOCK..][..BLOCK];
            let rb = &b[(by * BLOCK + r) * b_stride + bx * BLOCK..][..BLOCK];
            ra.iter().zip(rb).map(|(&x, &y)| u64::from(x.abs_diff(y)).pow(2)).sum::<u64>()
        })
        .sum()
}

/// CPU time of the calling thread: unlike wall time, it does not count time
/// the thread waited for a core on a busy machine. OpenH264 with one thread
/// encodes on the caller's thread; with more, its workers are not counted.
#[cfg(unix)]
fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_THREAD_CPUTIME_ID is
    // supported on Linux and macOS (POSIX clock_gettime).
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID)");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

#[cfg(not(unix))]
fn thread_cpu_time() -> Duration {
    Duration::ZERO
}

struct Row {
    cpu_ms: f64,
    ms_p50: f64,
    ms_p95: f64,
    kbps: f64,
    text_psnr: f64,
    worst_text_psnr: f64,
    frame_psnr: f64,
    skipped: u64,
    /// Text PSNR after the refinement frame, and its size in bytes.
    paint_over: (f64, usize),
}

/// The decoder matching a candidate's codec; returns the picture's luma
/// stride and rows.
enum AnyDecoder {
    H264(Decoder),
    Vpx(VpxDecoder),
}

impl AnyDecoder {
    fn new(codec: Codec) -> Self {
        match codec {
            Codec::H264 => AnyDecoder::H264(Decoder::new().expect("decoder")),
            Codec::Vp8 => AnyDecoder::Vpx(VpxDecoder::new(VpxCodec::Vp8).expect("decoder")),
            Codec::Vp9 => AnyDecoder::Vpx(VpxDecoder::new(VpxCodec::Vp9).expect("decoder")),
        }
    }

    fn decode(&mut self, data: &[u8]) -> Option<(usize, Vec<u8>)> {
        match self {
            AnyDecoder::H264(d) => d.decode(data).expect("decode").map(|pic| {
                let stride = pic.strides().0;
                let rows = pic.dimensions().1;
                (stride, pic.y()[..stride * rows].to_vec())
            }),
            AnyDecoder::Vpx(d) => d.decode(data).expect("decode").map(|pic| (pic.y_stride, pic.y.to_vec())),
        }
    }
}

fn run(candidate: Candidate, frames: &[Prepared]) -> Row {
    let mut encoder = candidate.encoder();
    let mut decoder = AnyDecoder::new(candidate.codec());
    let mut out = EncodedFrame::with_capacity(1 << 20);
    let (mut times, mut bytes, mut skipped) = (Vec::new(), 0usize, 0u64);
    let (mut text_sse, mut text_n, mut frame_sse, mut frame_n) = (0u64, 0u64, 0u64, 0u64);
    let mut worst_text = f64::INFINITY;
    let mut shown: Option<(usize, Vec<u8>)> = None; // what a viewer sees (stride, Y)
    let mut cpu = Duration::ZERO;
    for (i, frame) in frames.iter().enumerate() {
        let pts = Duration::from_nanos(i as u64 * 33_333_333);
        let (t0, c0) = (Instant::now(), thread_cpu_time());
        let outcome = encoder.encode(&frame.yuv, pts, &mut out).expect("encode");
        cpu += thread_cpu_time() - c0;
        times.push(t0.elapsed().as_secs_f64() * 1000.0);
        if outcome == EncodeOutcome::Encoded {
            bytes += out.data.len();
            if let Some(picture) = decoder.decode(&out.data) {
                shown = Some(picture);
            }
        } else {
            skipped += 1;
        }
        let Some((stride, y)) = &shown else { continue };
        let src = &frame.yuv;
        let (w, h) = (src.width() as usize, src.height() as usize);
        let sse = peep_encode::quality::mse_plane(src.y(), src.y_stride(), y, *stride, w, h) * (w * h) as f64;
        frame_sse += sse as u64;
        frame_n += (w * h) as u64;
        let mut t_sse = 0;
        for &(bx, by) in &frame.text_blocks {
            t_sse += block_sse(src.y(), src.y_stride(), y, *stride, bx, by);
        }
        let t_n = (frame.text_blocks.len() * BLOCK * BLOCK) as u64;
        if t_n > 0 {
            worst_text = worst_text.min(psnr_from_mse(t_sse as f64 / t_n as f64));
        }
        text_sse += t_sse;
        text_n += t_n;
    }
    // The content stops: one refinement frame of the last picture.
    let last = frames.last().expect("frames");
    let pts = Duration::from_nanos(frames.len() as u64 * 33_333_333 + 300_000_000);
    let paint_over = match encoder.refine(&last.yuv, pts, &mut out).expect("refine") {
        EncodeOutcome::Encoded => {
            let (stride, y) = decoder.decode(&out.data).expect("a picture");
            let t_sse: u64 = last
                .text_blocks
                .iter()
                .map(|&(bx, by)| block_sse(last.yuv.y(), last.yuv.y_stride(), &y, stride, bx, by))
                .sum();
            let t_n = (last.text_blocks.len() * BLOCK * BLOCK).max(1) as f64;
            (psnr_from_mse(t_sse as f64 / t_n), out.data.len())
        }
        EncodeOutcome::Skipped => (f64::NAN, 0),
    };
    times.sort_by(f64::total_cmp);
    let pct = |p: f64| times[((times.len() - 1) as f64 * p).round() as usize];
    let seconds = frames.len() as f64 / 30.0;
    Row {
        cpu_ms: cpu.as_secs_f64() * 1000.0 / frames.len() as f64,
        ms_p50: pct(0.5),
        ms_p95: pct(0.95),
        kbps: bytes as f64 * 8.0 / seconds / 1000.0,
        text_psnr: psnr_from_mse(text_sse as f64 / text_n.max(1) as f64),
        worst_text_psnr: worst_text,
        frame_psnr: psnr_from_mse(frame_sse as f64 / frame_n.max(1) as f64),
        skipped,
        paint_over,
    }
}

fn main() {
    let args = parse_args();
    let candidates: Vec<_> = candidates()
        .into_iter()
        .filter(|(_, c)| args.codecs.contains(&c.codec()))
        .filter(|(name, _)| args.only.as_ref().is_none_or(|o| name.contains(o.as_str())))
        .collect();
    println!(
        "{}x{} @ 30 fps, {} frames per run, PSNR-Y in dB, times are encode only (ms/frame)\n",
        args.width, args.height, args.frames
    );
    println!(
        "| config | scene | target kbps | CPU ms | ms p50 | ms p95 | kbps | PSNR text | worst frame text | PSNR frame | skipped | paint-over text dB (KB) |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    // Per (config, target): sums over scenes for the summary.
    let mut summary: Vec<(String, u32, Vec<Row>)> = Vec::new();
    for &scene in &args.scenes {
        let frames = prepare(scene, args.width, args.height, args.frames);
        for &kbps in &args.bitrates_kbps {
            for (name, config) in &candidates {
                let r = run(config.with_bitrate(kbps * 1000), &frames);
                println!(
                    "| {name} | {} | {kbps} | {:.1} | {:.1} | {:.1} | {:.0} | {:.2} | {:.2} | {:.2} | {} | {:.2} ({:.0}) |",
                    scene.name(),
                    r.cpu_ms,
                    r.ms_p50,
                    r.ms_p95,
                    r.kbps,
                    r.text_psnr,
                    r.worst_text_psnr,
                    r.frame_psnr,
                    r.skipped,
                    r.paint_over.0,
                    r.paint_over.1 as f64 / 1000.0
                );
                match summary.iter_mut().find(|(n, k, _)| n == name && *k == kbps) {
                    Some((_, _, rows)) => rows.push(r),
                    None => summary.push((name.clone(), kbps, vec![r])),
                }
            }
        }
    }
    println!("\nMean over scenes:\n");
    println!(
        "| config | target kbps | CPU ms | ms p50 | ms p95 | kbps | PSNR text | worst frame text | skipped | paint-over text dB |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    summary.sort_by_key(|(_, kbps, _)| *kbps);
    for (name, kbps, rows) in &summary {
        let n = rows.len() as f64;
        let mean = |f: fn(&Row) -> f64| rows.iter().map(f).sum::<f64>() / n;
        println!(
            "| {name} | {kbps} | {:.1} | {:.1} | {:.1} | {:.0} | {:.2} | {:.2} | {} | {:.2} |",
            mean(|r| r.cpu_ms),
            mean(|r| r.ms_p50),
            mean(|r| r.ms_p95),
            mean(|r| r.kbps),
            mean(|r| r.text_psnr),
            rows.iter().map(|r| r.worst_text_psnr).fold(f64::INFINITY, f64::min),
            rows.iter().map(|r| r.skipped).sum::<u64>(),
            mean(|r| r.paint_over.0)
        );
    }
}
