//! Frame ring handoff cost: publish + take + release of one frame, on one
//! thread and across two threads.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use peep_capture::{FrameMeta, PixelFormat, Take, frame_ring};

fn meta(seq: u64) -> FrameMeta {
    FrameMeta {
        width: 1920,
        height: 1080,
        stride_bytes: 1920 * 4,
        format: PixelFormat::Bgrx,
        captured_at: Instant::now(),
        seq,
        changed: true,
    }
}

fn handoff(c: &mut Criterion) {
    let len = 1920 * 1080 * 4;
    c.bench_function("ring/handoff_same_thread_1080p", |b| {
        let (mut p, mut cons) = frame_ring();
        let mut seq = 0;
        b.iter(|| {
            seq += 1;
            let mut slot = p.begin();
            black_box(slot.heap_bytes(len));
            slot.publish(meta(seq));
            let f = cons.try_take().expect("frame");
            black_box(f.meta().seq);
        });
    });
    c.bench_function("ring/handoff_two_threads_1080p", |b| {
        b.iter_custom(|iters| {
            let (mut p, mut cons) = frame_ring();
            let consumer = std::thread::spawn(move || {
                let mut last = 0;
                while let Take::Frame(f) = cons.take_timeout(Duration::from_secs(5)) {
                    last = f.meta().seq;
                }
                last
            });
            let start = Instant::now();
            for seq in 1..=iters {
                let mut slot = p.begin();
                black_box(slot.heap_bytes(len));
                slot.publish(meta(seq));
            }
            let elapsed = start.elapsed();
            drop(p);
            black_box(consumer.join().expect("consumer"));
            elapsed
        });
    });
}

criterion_group!(benches, handoff);
criterion_main!(benches);
