//! Heap allocations per frame on the hot path, counted exactly by a global
//! allocator wrapper.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use peep::pipeline::{Pipeline, PipelineConfig};
use peep_capture::backend::synthetic::SyntheticBackend;
use peep_capture::backend::x11::X11Session;
use peep_capture::backend::{CaptureBackend, Tick};
use peep_capture::synthetic::{Scene, SyntheticScene};
use peep_capture::testing::{DemoWindow, Xvfb};
use peep_capture::{SourceId, frame_ring};
use peep_encode::{EncodedFrame, Encoder, I420Frame, OpenH264Config, OpenH264Encoder, bgra_to_i420};

struct Counting;

/// Allocations by the pipeline's threads (`peep-capture`, `peep-encode`)
/// and the pipeline test's own thread (the consumer). Not process-wide: the
/// test harness's main thread allocates whenever another test of this binary
/// finishes and is reported, which may fall inside the measured window.
static PIPELINE_ALLOCATIONS: AtomicU64 = AtomicU64::new(0);
const PIPELINE_TEST: &str = "pipeline_makes_zero_allocations_per_frame_after_warmup";
const TWO_CODEC_TEST: &str = "two_codec_pipeline_makes_zero_allocations_per_frame_after_warmup";
thread_local! {
    static THREAD_ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
    /// Set while `count` looks up the thread's name (which may allocate
    /// the first time), so the look-up does not recurse.
    static COUNTING: Cell<bool> = const { Cell::new(false) };
}

fn count() {
    // try_with: the slots may already be gone while a thread shuts down.
    let _ = THREAD_ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
    let _ = COUNTING.try_with(|busy| {
        if busy.replace(true) {
            return;
        }
        let thread = std::thread::current();
        if matches!(thread.name(), Some("peep-capture" | "peep-encode" | PIPELINE_TEST | TWO_CODEC_TEST)) {
            PIPELINE_ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        busy.set(false);
    });
}

// SAFETY: forwards every call unchanged to the system allocator.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: same layout contract as our caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: ptr was allocated by System with `layout`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: ptr was allocated by System with `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// The tests count process-wide: run them one at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn encoder() -> OpenH264Encoder {
    OpenH264Encoder::new(OpenH264Config { bitrate_bps: 1_500_000, fps: 60.0, ..OpenH264Config::default() })
        .expect("encoder")
}

/// The whole pipeline on its own threads (capture → ring → convert → encode →
/// channel → consumer), synthetic typing content: after warm-up, zero heap
/// allocations in its threads for 300 frames.
#[test]
fn pipeline_makes_zero_allocations_per_frame_after_warmup() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let source = SyntheticBackend::new(640, 360, Scene::Typing).expect("source");
    let mut pipeline = Pipeline::start(
        Box::new(source),
        Box::new(encoder()),
        PipelineConfig { fps: 60.0, ..PipelineConfig::default() },
    )
    .expect("pipeline");
    let mut next = || pipeline.recv_timeout(Duration::from_secs(5)).expect("running").expect("a packet in time");
    for _ in 0..60 {
        drop(next());
    }
    let before = PIPELINE_ALLOCATIONS.load(Ordering::Relaxed);
    let mut bytes = 0;
    for _ in 0..300 {
        bytes += next().data.len();
    }
    let allocations = PIPELINE_ALLOCATIONS.load(Ordering::Relaxed) - before;
    println!("pipeline: {allocations} heap allocations in 300 frames ({bytes} bytes encoded)");
    assert!(bytes > 0);
    assert_eq!(allocations, 0, "heap allocations during 300 steady-state frames");
    drop(pipeline);
}

/// The same with two encode chains (H.264 and VP9) on one capture and one
/// conversion: still no allocation per frame once both run.
#[test]
fn two_codec_pipeline_makes_zero_allocations_per_frame_after_warmup() {
    use peep::pipeline::Control;
    use peep_encode::Codec;
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let source = SyntheticBackend::new(640, 360, Scene::Typing).expect("source");
    let mut pipeline = Pipeline::start_with_factory(
        Box::new(source),
        Box::new(encoder()),
        Some(Box::new(peep::session::live_encoder_for)),
        PipelineConfig { fps: 60.0, ..PipelineConfig::default() },
    )
    .expect("pipeline");
    assert!(pipeline.control(Control::SetCodecs([Codec::H264, Codec::Vp9].into_iter().collect())));
    let mut next = || pipeline.recv_timeout(Duration::from_secs(5)).expect("running").expect("a packet in time");
    // Warm-up: both encoders past their first frames (libvpx's VP9 makes
    // two lazy allocations around its 42nd frame).
    for _ in 0..160 {
        drop(next());
    }
    let before = PIPELINE_ALLOCATIONS.load(Ordering::Relaxed);
    let mut per_codec = [0usize; 3];
    for _ in 0..300 {
        let packet = next();
        per_codec[packet.codec.index()] += 1;
    }
    let allocations = PIPELINE_ALLOCATIONS.load(Ordering::Relaxed) - before;
    println!("two-codec pipeline: {allocations} heap allocations in 300 packets {per_codec:?}");
    assert!(per_codec[Codec::H264.index()] >= 140 && per_codec[Codec::Vp9.index()] >= 140, "{per_codec:?}");
    assert_eq!(allocations, 0, "heap allocations during 300 steady-state packets");
    drop(pipeline);
}

/// X11 capture (MIT-SHM slots, the capture's own connection) → ring →
/// convert → encode on one thread while another client animates a window:
/// exactly zero heap allocations on this thread per frame. Every frame is a
/// real change (a DAMAGE event to read, a DamageSubtract and a ShmGetImage
/// with its reply), so the whole X11 hot path is exercised.
#[test]
fn x11_capture_path_makes_zero_allocations_per_frame() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let x = Xvfb::start(640, 480).unwrap_or_else(|e| panic!("{e}"));
    let display = x.display().to_owned();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let painter = {
        let (stop, display) = (stop.clone(), display.clone());
        std::thread::spawn(move || {
            let session = X11Session::connect_to(Some(&display)).expect("painter connection");
            let mut win = DemoWindow::open(session.connection().clone(), 0, 0, 640, 480, "anim").expect("window");
            let scene = SyntheticScene::new(640, 480, Scene::Moving);
            let mut buf = vec![0u8; 640 * 480 * 4];
            for i in 0u64.. {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                scene.render(i, &mut buf, 640 * 4, peep_capture::marks::FrameMark::now(i as u32));
                win.show(&buf, 640, 480, 640 * 4).expect("show");
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    let session = X11Session::connect_to(Some(&display)).expect("connect");
    let mut capture = session.capture(&SourceId::Screen).expect("capture");
    capture.set_cursor(false);
    let (mut producer, mut consumer) = frame_ring();
    let mut encoder = encoder();
    let mut yuv = I420Frame::new(640, 480);
    let mut out = EncodedFrame::with_capacity(512 * 1024);
    let mut seq = 0;
    // Captures the next change: waits for DAMAGE (as the capture thread
    // does), then captures without forcing, so a frame is only published
    // because the screen changed.
    let mut run = |n: u64| {
        let mut changed = 0;
        while changed < n {
            seq += 1;
            let deadline = std::time::Instant::now() + Duration::from_secs(5);
            assert!(capture.wait_for_change(deadline).expect("wait"), "the painter stopped changing the screen");
            match capture.capture(&mut producer, seq, false).expect("capture") {
                Tick::Published { changed: true } => {}
                other => panic!("a signalled change must publish a changed frame, got {other:?}"),
            }
            let frame = consumer.try_take().expect("a frame was published");
            let m = *frame.meta();
            bgra_to_i420(frame.data(), m.width, m.height, m.stride_bytes, &mut yuv).expect("convert");
            drop(frame);
            let _ = encoder.encode(&yuv, Duration::from_millis(seq * 16), &mut out).expect("encode");
            changed += 1;
        }
    };
    run(30);
    let before = THREAD_ALLOCATIONS.with(Cell::get);
    run(300);
    let allocations = THREAD_ALLOCATIONS.with(Cell::get) - before;
    stop.store(true, Ordering::Relaxed);
    painter.join().expect("painter");
    println!("x11 path: {allocations} heap allocations in 300 changed frames");
    // The ring, conversion and encoder add none (see the pipeline test);
    // the X11 requests, replies and events go through fixed buffers.
    assert_eq!(allocations, 0, "heap allocations on the X11 path in 300 frames");
}
