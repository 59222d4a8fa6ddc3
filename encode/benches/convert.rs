//! BGRA → I420 / NV12 conversion at 1080p and 4K (SIMD), plus the scalar
//! reference at 1080p for scale.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use peep_capture::marks::FrameMark;
use peep_capture::synthetic::{Scene, SyntheticScene};
use peep_encode::convert::reference;
use peep_encode::{I420Frame, Nv12Frame, bgra_to_i420, bgra_to_nv12};
use std::hint::black_box;

fn frame(width: u32, height: u32) -> (Vec<u8>, usize) {
    let stride = width as usize * 4;
    let mut bgra = vec![0u8; stride * height as usize];
    SyntheticScene::new(width as usize, height as usize, Scene::Moving).render(
        7,
        &mut bgra,
        stride,
        FrameMark { counter: 7, timestamp_ms: 0 },
    );
    (bgra, stride)
}

fn conversion(c: &mut Criterion) {
    let mut group = c.benchmark_group("bgra_to_yuv420");
    for (name, w, h) in [("1080p", 1920u32, 1080u32), ("4k", 3840, 2160)] {
        let (bgra, stride) = frame(w, h);
        group.throughput(Throughput::Bytes(bgra.len() as u64));
        let mut i420 = I420Frame::new(w, h);
        group.bench_function(BenchmarkId::new("i420", name), |b| {
            b.iter(|| bgra_to_i420(black_box(&bgra), w, h, stride, &mut i420).unwrap());
        });
        let mut nv12 = Nv12Frame::new(w, h);
        group.bench_function(BenchmarkId::new("nv12", name), |b| {
            b.iter(|| bgra_to_nv12(black_box(&bgra), w, h, stride, &mut nv12).unwrap());
        });
        if name == "1080p" {
            group.sample_size(10);
            group.bench_function(BenchmarkId::new("i420_scalar_reference", name), |b| {
                b.iter(|| reference::bgra_to_i420(black_box(&bgra), w, h, stride, &mut i420).unwrap());
            });
            group.sample_size(100);
        }
    }
    group.finish();
}

criterion_group!(benches, conversion);
criterion_main!(benches);
