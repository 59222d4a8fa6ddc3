//! Encode time per 1080p frame with the default settings: OpenH264 for
//! static, typing and scrolling screen content; libvpx VP8 and VP9 (their
//! real-time defaults, one thread) for static, typing, scrolling and moving.
//! Frames are rendered and converted before timing; the loop cycles through
//! them with real timestamps.

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use peep_capture::marks::FrameMark;
use peep_capture::synthetic::{Scene, SyntheticScene};
use peep_encode::{
    EncodedFrame, Encoder, I420Frame, OpenH264Config, OpenH264Encoder, VpxCodec, VpxConfig, VpxEncoder, bgra_to_i420,
};
use std::time::Duration;

/// Frames in the cycle; the jump from the last back to the first is one
/// scene cut per cycle.
const CYCLE: u64 = 60;

fn frames(scene: Scene, width: u32, height: u32) -> Vec<I420Frame> {
    let synthetic = SyntheticScene::new(width as usize, height as usize, scene);
    let stride = width as usize * 4;
    let mut bgra = vec![0u8; stride * height as usize];
    (0..CYCLE)
        .map(|i| {
            let mark = FrameMark { counter: i as u32, timestamp_ms: (i * 33) as u32 };
            synthetic.render(i, &mut bgra, stride, mark);
            let mut yuv = I420Frame::new(width, height);
            bgra_to_i420(&bgra, width, height, stride, &mut yuv).expect("convert");
            yuv
        })
        .collect()
}

fn encode(c: &mut Criterion) {
    let (w, h) = (1920, 1080);
    let mut group = c.benchmark_group("openh264_1080p");
    group.sample_size(30);
    for scene in [Scene::Static, Scene::Typing, Scene::Scrolling] {
        let frames = frames(scene, w, h);
        let mut encoder = OpenH264Encoder::new(OpenH264Config::default()).expect("config");
        let mut out = EncodedFrame::with_capacity(1 << 20);
        let mut index = 0u64;
        group.bench_function(BenchmarkId::new("encode", scene.name()), |b| {
            b.iter(|| {
                let frame = &frames[(index % CYCLE) as usize];
                let pts = Duration::from_nanos(index * 33_333_333);
                index += 1;
                encoder.encode(frame, pts, &mut out).expect("encode")
            });
        });
    }
    group.finish();
}

fn encode_vpx(c: &mut Criterion) {
    let (w, h) = (1920, 1080);
    for (codec, group_name) in [(VpxCodec::Vp8, "vp8_1080p"), (VpxCodec::Vp9, "vp9_1080p")] {
        let mut group = c.benchmark_group(group_name);
        group.sample_size(30);
        for scene in [Scene::Static, Scene::Typing, Scene::Scrolling, Scene::Moving] {
            let frames = frames(scene, w, h);
            let mut encoder = VpxEncoder::new(VpxConfig::for_codec(codec)).expect("config");
            let mut out = EncodedFrame::with_capacity(1 << 20);
            let mut index = 0u64;
            group.bench_function(BenchmarkId::new("encode", scene.name()), |b| {
                b.iter(|| {
                    let frame = &frames[(index % CYCLE) as usize];
                    let pts = Duration::from_nanos(index * 33_333_333);
                    index += 1;
                    encoder.encode(frame, pts, &mut out).expect("encode")
                });
            });
        }
        group.finish();
    }
}

criterion_group!(benches, encode, encode_vpx);
criterion_main!(benches);
