//! After warm-up, converting and encoding a frame performs no heap
//! allocation: neither in Rust (counted by a wrapping global allocator) nor,
//! on glibc, inside OpenH264's C/C++ code or libvpx (VP8, VP9) (counted by
//! interposing `malloc`, `calloc` and `realloc`).
//!
//! One test only: the counters are process-wide, and other tests running on
//! other threads would pollute them.

mod common;

use common::{FRAME_30FPS, Source};
use peep_capture::synthetic::Scene;
use peep_encode::{
    BufferPool, EncodeOutcome, EncodedFrame, Encoder, I420Frame, OpenH264Config, OpenH264Encoder, VpxCodec, VpxConfig,
    VpxEncoder, bgra_to_i420,
};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

static COUNTING: AtomicBool = AtomicBool::new(false);
static RUST_ALLOCS: AtomicU64 = AtomicU64::new(0);
static C_ALLOCS: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// Set while the Rust allocator runs, so its own `malloc` calls are not
    /// counted a second time as C allocations. `const` with no destructor:
    /// plain TLS, usable inside `malloc`.
    static IN_RUST_ALLOC: Cell<bool> = const { Cell::new(false) };
}

fn count_rust() {
    if COUNTING.load(Ordering::Relaxed) {
        RUST_ALLOCS.fetch_add(1, Ordering::Relaxed);
    }
}

fn in_rust<T>(f: impl FnOnce() -> T) -> T {
    IN_RUST_ALLOC.with(|flag| flag.set(true));
    let r = f();
    IN_RUST_ALLOC.with(|flag| flag.set(false));
    r
}

struct CountingAllocator;

// SAFETY: every method forwards to `System` with the caller's arguments
// unchanged, so `System`'s guarantees hold; the counting has no side effect
// on the memory returned.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count_rust();
        // SAFETY: forwarded unchanged; the caller upholds `alloc`'s contract.
        in_rust(|| unsafe { System.alloc(layout) })
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count_rust();
        // SAFETY: forwarded unchanged.
        in_rust(|| unsafe { System.alloc_zeroed(layout) })
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count_rust();
        // SAFETY: forwarded unchanged.
        in_rust(|| unsafe { System.realloc(ptr, layout, new_size) })
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

/// glibc-only interposition of the C allocator: symbols defined in the
/// executable take precedence over libc's for every caller, including the
/// OpenH264 code linked into this binary. They forward to glibc's exported
/// `__libc_*` implementations, so `free` stays glibc's own.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
mod c_alloc {
    use super::{C_ALLOCS, COUNTING, IN_RUST_ALLOC};
    use std::ffi::c_void;
    use std::sync::atomic::Ordering;

    unsafe extern "C" {
        fn __libc_malloc(size: usize) -> *mut c_void;
        fn __libc_calloc(n: usize, size: usize) -> *mut c_void;
        fn __libc_realloc(ptr: *mut c_void, size: usize) -> *mut c_void;
    }

    fn count_c() {
        if COUNTING.load(Ordering::Relaxed) && !IN_RUST_ALLOC.with(|f| f.get()) {
            C_ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// # Safety
    /// As C `malloc`.
    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn malloc(size: usize) -> *mut c_void {
        count_c();
        // SAFETY: glibc's own malloc, same contract.
        unsafe { __libc_malloc(size) }
    }

    /// # Safety
    /// As C `calloc`.
    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn calloc(n: usize, size: usize) -> *mut c_void {
        count_c();
        // SAFETY: glibc's own calloc, same contract.
        unsafe { __libc_calloc(n, size) }
    }

    /// # Safety
    /// As C `realloc`.
    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn realloc(ptr: *mut c_void, size: usize) -> *mut c_void {
        count_c();
        // SAFETY: glibc's own realloc, same contract; `ptr` came from glibc.
        unsafe { __libc_realloc(ptr, size) }
    }
}

#[test]
fn converting_and_encoding_does_not_allocate_after_warm_up() {
    COUNTING.store(true, Ordering::SeqCst);
    drop(std::hint::black_box(vec![1u8; 10]));
    COUNTING.store(false, Ordering::SeqCst);
    assert_eq!(RUST_ALLOCS.swap(0, Ordering::SeqCst), 1, "counting allocator works");
    C_ALLOCS.store(0, Ordering::SeqCst);

    let openh264 =
        OpenH264Encoder::new(OpenH264Config { bitrate_bps: 1_500_000, ..OpenH264Config::default() }).expect("config");
    let vp8 =
        VpxEncoder::new(VpxConfig { bitrate_bps: 1_500_000, ..VpxConfig::for_codec(VpxCodec::Vp8) }).expect("config");
    let vp9 =
        VpxEncoder::new(VpxConfig { bitrate_bps: 1_500_000, ..VpxConfig::for_codec(VpxCodec::Vp9) }).expect("config");
    let encoders: [Box<dyn Encoder>; 3] = [Box::new(openh264), Box::new(vp8), Box::new(vp9)];
    for mut encoder in encoders {
        check_encoder(encoder.as_mut());
    }
}

/// Converts and encodes 360 frames with `encoder`, changing its bitrate, frame
/// rate and asking for a keyframe on the way; asserts no allocation after
/// the first 60.
fn check_encoder(encoder: &mut dyn Encoder) {
    // Two seconds: libvpx's VP9 makes two more allocations of its own
    // around frame 42 (once; none in the 300 frames that follow).
    const WARM_UP: u64 = 60;
    const MEASURED: u64 = 300;
    let name = encoder.name();
    let (w, h) = (640, 360);
    let mut src = Source::new(w, h, Scene::Typing);
    let mut yuv = I420Frame::new(w, h);
    let mut out = EncodedFrame::with_capacity(256 * 1024);
    // Encoded frames leave through the pool, as in the pipeline.
    let pool = BufferPool::new(4, 256 * 1024);
    let (mut bytes, mut encoded) = (0usize, 0u64);
    let mut first_frame = (0, 0);
    RUST_ALLOCS.store(0, Ordering::SeqCst);
    C_ALLOCS.store(0, Ordering::SeqCst);

    for i in 0..WARM_UP + MEASURED {
        src.render(i); // the capture stage's work, not counted
        let measuring = i >= WARM_UP;
        if i == WARM_UP {
            RUST_ALLOCS.store(0, Ordering::SeqCst);
            C_ALLOCS.store(0, Ordering::SeqCst);
        }
        COUNTING.store(true, Ordering::SeqCst);
        if i == WARM_UP + 100 {
            encoder.set_bitrate(800_000).expect("set_bitrate");
            encoder.set_fps(25.0).expect("set_fps");
        }
        if i == WARM_UP + 200 {
            encoder.request_keyframe();
        }
        bgra_to_i420(&src.bgra, w, h, src.stride_bytes, &mut yuv).expect("convert");
        let outcome = encoder.encode(&yuv, FRAME_30FPS * i as u32, &mut out).expect("encode");
        if outcome == EncodeOutcome::Encoded {
            let mut buf = pool.get();
            std::mem::swap(&mut out.data, &mut *buf);
            bytes += buf.len();
            encoded += u64::from(measuring);
            drop(buf); // the transport is done with it
        }
        COUNTING.store(false, Ordering::SeqCst);
        if i == 0 {
            first_frame = (RUST_ALLOCS.load(Ordering::SeqCst), C_ALLOCS.load(Ordering::SeqCst));
        }
    }

    let rust = RUST_ALLOCS.load(Ordering::SeqCst);
    let c = C_ALLOCS.load(Ordering::SeqCst);
    println!(
        "{name}: first frame (session set-up): {} Rust allocations, {} C allocations",
        first_frame.0, first_frame.1
    );
    // The counters do see allocations: the codec's own (on glibc) when a
    // session starts, and Rust's (checked on a deliberate one above).
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    assert!(first_frame.1 > 0, "{name}: malloc interposition is not in effect");
    println!(
        "{name}: {MEASURED} frames ({encoded} encoded, {bytes} bytes): {rust} Rust allocations, \
         {c} C allocations (glibc only), pool misses {}",
        pool.misses()
    );
    assert!(encoded >= MEASURED - 5, "{name}: {encoded} of {MEASURED} frames encoded");
    assert_eq!(rust, 0, "{name}: Rust heap allocations during {MEASURED} frames");
    assert_eq!(c, 0, "{name}: C heap allocations during {MEASURED} frames");
    assert_eq!(pool.misses(), 0);
}
