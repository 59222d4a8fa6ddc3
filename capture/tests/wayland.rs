//! The portal + PipeWire backend against a real headless sway, a real
//! xdg-desktop-portal(-wlr) and real PipeWire (see `testing::wayland`). One
//! desktop for the whole test binary; each test takes it exclusively.

use std::sync::{LazyLock, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use peep_capture::backend::pipewire::PortalCapture;
use peep_capture::backend::portal::PortalRequest;
use peep_capture::backend::{CaptureBackend, Tick};
use peep_capture::testing::wayland::WaylandDesktop;
use peep_capture::{CaptureError, PixelFormat, RingConsumer, RingProducer, frame_ring};

const SIZE: (u32, u32) = (640, 480);

static DESKTOP: LazyLock<Mutex<WaylandDesktop>> = LazyLock::new(|| {
    let started = Instant::now();
    let desktop = WaylandDesktop::start(SIZE.0, SIZE.1).unwrap_or_else(|e| panic!("{e}"));
    eprintln!("wayland desktop up in {:.2}s", started.elapsed().as_secs_f64());
    Mutex::new(desktop)
});

fn desktop() -> MutexGuard<'static, WaylandDesktop> {
    DESKTOP.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn open(desktop: &WaylandDesktop, token: Option<String>) -> PortalCapture {
    let request =
        PortalRequest { cursor: true, restore_token: token, bus_address: Some(desktop.bus_address().to_owned()) };
    PortalCapture::open(&request).unwrap_or_else(|e| panic!("{e}\nxdpw log:\n{}", desktop.log("xdpw.log")))
}

/// The centre pixel's (r, g, b) of the next frame, waiting for one.
fn next_frame(
    cap: &mut PortalCapture,
    ring: &mut RingProducer,
    consumer: &mut RingConsumer,
    force: bool,
) -> Option<((u32, u32), (u8, u8, u8), bool)> {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        cap.wait_for_change(Instant::now() + Duration::from_millis(100)).expect("wait");
        match cap.capture(ring, 0, force).expect("capture") {
            Tick::Published { changed } => {
                let frame = consumer.try_take().expect("published frame");
                let m = *frame.meta();
                assert_eq!(m.format, PixelFormat::Bgrx);
                let i = (m.height as usize / 2) * m.stride_bytes + (m.width as usize / 2) * 4;
                let px = &frame.data()[i..i + 3];
                return Some(((m.width, m.height), (px[2], px[1], px[0]), changed));
            }
            Tick::Unchanged => {}
        }
    }
    None
}

/// Waits until the centre pixel is `rgb` (a grey frame may come first).
fn wait_for_colour(cap: &mut PortalCapture, ring: &mut RingProducer, consumer: &mut RingConsumer, rgb: u32) {
    let want = ((rgb >> 16) as u8, (rgb >> 8) as u8, rgb as u8);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut last = None;
    while Instant::now() < deadline {
        if let Some((_, px, _)) = next_frame(cap, ring, consumer, false) {
            if px == want {
                return;
            }
            last = Some(px);
        }
    }
    panic!("the screen never showed {rgb:06x}; last centre pixel {last:?}");
}

#[test]
fn frames_follow_the_screen_colour() {
    let d = desktop();
    d.set_background(0x000000).expect("bg");
    let mut cap = open(&d, None);
    let (mut ring, mut consumer) = frame_ring();
    for rgb in [0xff0000, 0x00ff00, 0x0000ff] {
        d.set_background(rgb).expect("bg");
        wait_for_colour(&mut cap, &mut ring, &mut consumer, rgb);
    }
    assert_eq!(cap.size(), SIZE);
}
