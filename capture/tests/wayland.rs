//! The portal + PipeWire backend against a real headless sway, a real
//! xdg-desktop-portal(-wlr) and real PipeWire (see `testing::wayland`). One
//! desktop for the whole test binary; each test takes it exclusively.

use std::sync::{LazyLock, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use peep_capture::backend::pipewire::PortalCapture;
use peep_capture::backend::portal::PortalRequest;
use peep_capture::backend::{CaptureBackend, Tick};
use peep_capture::marks::read_mark_bgra;
use peep_capture::synthetic::Scene;
use peep_capture::testing::wayland::{BareBus, WaylandDesktop};
use peep_capture::testing::wayland_demo;
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

/// A frame's size, centre pixel (r, g, b) and whether it changed.
type Seen = ((u32, u32), (u8, u8, u8), bool);

/// The centre pixel's (r, g, b) of the next frame, waiting for one.
fn next_frame(
    cap: &mut PortalCapture,
    ring: &mut RingProducer,
    consumer: &mut RingConsumer,
    force: bool,
) -> Option<Seen> {
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
fn wait_for_colour(
    d: &WaylandDesktop,
    cap: &mut PortalCapture,
    ring: &mut RingProducer,
    consumer: &mut RingConsumer,
    rgb: u32,
) {
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
    panic!("the screen never showed {rgb:06x}; last centre pixel {last:?}\nxdpw log:\n{}", tail(&d.log("xdpw.log")));
}

#[test]
fn frames_follow_the_screen_colour() {
    let d = desktop();
    d.set_background(0x000000).expect("bg");
    let mut cap = open(&d, None);
    let (mut ring, mut consumer) = frame_ring();
    for rgb in [0xff0000, 0x00ff00, 0x0000ff] {
        d.set_background(rgb).expect("bg");
        wait_for_colour(&d, &mut cap, &mut ring, &mut consumer, rgb);
    }
    assert_eq!(cap.size(), SIZE);
}

#[test]
fn a_client_window_is_captured_frame_by_frame_with_its_marks() {
    let d = desktop();
    let socket = d.wayland_socket().to_owned();
    let client = std::thread::spawn(move || wayland_demo::run(&socket, "Peep demo", Scene::Moving, 30.0, Some(4.0)));
    let mut cap = open(&d, None);
    let (mut ring, mut consumer) = frame_ring();
    let mut counters = Vec::new();
    let until = Instant::now() + Duration::from_millis(2500);
    while Instant::now() < until {
        cap.wait_for_change(Instant::now() + Duration::from_millis(100)).expect("wait");
        if let Tick::Published { .. } = cap.capture(&mut ring, 0, false).expect("capture") {
            let frame = consumer.try_take().expect("frame");
            let m = *frame.meta();
            if let Some(mark) = read_mark_bgra(frame.data(), m.width as usize, m.height as usize, m.stride_bytes) {
                counters.push(mark.counter);
            }
        }
    }
    client.join().expect("client thread").expect("the demo window ran");
    // The window fills the output; its frames arrive in order, most of them.
    assert!(counters.windows(2).all(|w| w[0] <= w[1]), "in order: {counters:?}");
    let distinct = counters.windows(2).filter(|w| w[0] < w[1]).count();
    assert!(distinct >= 30, "{distinct} new frames of a 30 fps window in 2.5 s: {counters:?}");
}

#[test]
fn a_static_screen_sends_nothing_and_a_forced_frame_recopies_the_last_one() {
    let d = desktop();
    let mut cap = open(&d, None);
    let (mut ring, mut consumer) = frame_ring();
    d.set_background(0x336699).expect("bg");
    wait_for_colour(&d, &mut cap, &mut ring, &mut consumer, 0x336699);
    // Let late buffers of the change drain.
    while cap.wait_for_change(Instant::now() + Duration::from_millis(300)).expect("wait") {
        let _ = cap.capture(&mut ring, 0, false).expect("capture");
        let _ = consumer.try_take();
    }
    let buffers = cap.buffers_received();
    let started = Instant::now();
    let woke = cap.wait_for_change(started + Duration::from_secs(1)).expect("wait");
    assert!(!woke && started.elapsed() >= Duration::from_millis(990), "no change signalled on a static screen");
    for _ in 0..20 {
        assert_eq!(cap.capture(&mut ring, 0, false).expect("capture"), Tick::Unchanged);
    }
    assert_eq!(cap.buffers_received(), buffers, "the compositor sent nothing for a static screen");
    // Keep-alive / keyframe request: the held buffer is copied again.
    let (_, px, changed) = next_frame(&mut cap, &mut ring, &mut consumer, true).expect("forced frame");
    assert_eq!((px, changed), ((0x33, 0x66, 0x99), false));
    // A change wakes a waiter at once.
    let waiter = Instant::now();
    d.set_background(0x993366).expect("bg");
    assert!(cap.wait_for_change(waiter + Duration::from_secs(5)).expect("wait"), "woken by the new buffer");
    wait_for_colour(&d, &mut cap, &mut ring, &mut consumer, 0x993366);
}

/// Resizes the output and waits for a frame of the new size showing the
/// colour set after the resize. xdg-desktop-portal-wlr 0.7 may send no frame
/// after renegotiating until the screen changes again, so the background is
/// changed until one arrives. Returns the stream's size after the
/// renegotiation and the sizes of the frames seen.
fn resize(
    d: &WaylandDesktop,
    cap: &mut PortalCapture,
    ring: &mut RingProducer,
    consumer: &mut RingConsumer,
    size: (u32, u32),
) -> ((u32, u32), Vec<(u32, u32)>) {
    d.set_output_size(size.0, size.1).expect("resize");
    let deadline = Instant::now() + Duration::from_secs(10);
    while cap.size() != size && Instant::now() < deadline {
        let _ = cap.wait_for_change(Instant::now() + Duration::from_millis(50));
        let _ = cap.capture(ring, 0, false).expect("capture");
        let _ = consumer.try_take();
    }
    let renegotiated = cap.size();
    let mut sizes = Vec::new();
    for rgb in [0x0080ff, 0x00ff80, 0x8000ff, 0xff8000, 0x0080ff, 0x00ff80] {
        d.set_background(rgb).expect("bg");
        let want = ((rgb >> 16) as u8, (rgb >> 8) as u8, rgb as u8);
        let until = Instant::now() + Duration::from_secs(1);
        while Instant::now() < until {
            if let Some((s, px, _)) = next_frame(cap, ring, consumer, false) {
                sizes.push(s);
                if s == size && px == want {
                    return (renegotiated, sizes);
                }
            }
        }
    }
    (renegotiated, sizes)
}

#[test]
fn an_output_resize_is_followed() {
    let d = desktop();
    let mut cap = open(&d, None);
    let (mut ring, mut consumer) = frame_ring();
    d.set_background(0x00ffff).expect("bg");
    wait_for_colour(&d, &mut cap, &mut ring, &mut consumer, 0x00ffff);
    let (renegotiated, sizes) = resize(&d, &mut cap, &mut ring, &mut consumer, (800, 600));
    let (back, sizes_back) = resize(&d, &mut cap, &mut ring, &mut consumer, SIZE);
    assert_eq!(renegotiated, (800, 600), "the stream's size after the resize");
    assert_eq!(sizes.last(), Some(&(800, 600)), "frames after the resize: {sizes:?}");
    assert_eq!((back, sizes_back.last()), (SIZE, Some(&SIZE)), "and back: {sizes_back:?}");
}

#[test]
fn the_cast_ending_on_the_desktop_side_is_source_gone() {
    let mut d = desktop();
    let mut cap = open(&d, None);
    let (mut ring, mut consumer) = frame_ring();
    d.set_background(0xffff00).expect("bg");
    wait_for_colour(&d, &mut cap, &mut ring, &mut consumer, 0xffff00);
    // sway 1.7's headless outputs cannot be unplugged or disabled, so the
    // portal backend goes away instead: its stream node vanishes.
    d.restart_portal_backend().expect("restart");
    let deadline = Instant::now() + Duration::from_secs(10);
    let result = loop {
        let _ = cap.wait_for_change(Instant::now() + Duration::from_millis(100));
        match cap.capture(&mut ring, 0, false) {
            Err(e) => break Some(e),
            Ok(_) if Instant::now() > deadline => break None,
            Ok(_) => {}
        }
    };
    match result {
        Some(CaptureError::SourceGone(why)) => assert!(why.contains("ended"), "{why}"),
        other => panic!("expected source gone, got {other:?}"),
    }
    // And the desktop works again for a new share.
    drop(cap);
    let mut cap = open(&d, None);
    d.set_background(0x00ff80).expect("bg");
    wait_for_colour(&d, &mut cap, &mut ring, &mut consumer, 0x00ff80);
}

#[test]
fn a_cancelled_picker_is_reported_as_cancelled() {
    let d = desktop();
    d.set_picker_answer(None).expect("answer");
    let runs = d.picker_runs();
    let request = PortalRequest { cursor: true, restore_token: None, bus_address: Some(d.bus_address().into()) };
    let result = PortalCapture::open(&request);
    d.set_picker_answer(Some("HEADLESS-1")).expect("answer");
    assert!(matches!(result, Err(CaptureError::Cancelled)), "{result:?}");
    assert_eq!(d.picker_runs(), runs + 1, "the picker was shown");
}

#[test]
fn a_restore_token_skips_the_picker_and_is_replaced() {
    let d = desktop();
    let runs = d.picker_runs();
    let first = open(&d, None);
    assert_eq!(d.picker_runs(), runs + 1, "first share: the picker runs");
    let token = first.restore_token().expect("a restore token").to_owned();
    drop(first);
    let second = open(&d, Some(token.clone()));
    assert_eq!(d.picker_runs(), runs + 1, "second share: restored without the picker");
    // Each start returns the token to use next time (xdg-desktop-portal
    // 1.16 hands back the same one; the spec allows a new one each time).
    let next = second.restore_token().expect("a token for the next share").to_owned();
    drop(second);
    let mut third = open(&d, Some(next));
    assert_eq!(d.picker_runs(), runs + 1, "third share: restored again");
    let (mut ring, mut consumer) = frame_ring();
    d.set_background(0xff00ff).expect("bg");
    wait_for_colour(&d, &mut third, &mut ring, &mut consumer, 0xff00ff);
}

#[test]
fn a_missing_portal_is_a_clear_error() {
    for bus in [BareBus::start(), BareBus::start_with_frontend_only()] {
        let bus = bus.unwrap_or_else(|e| panic!("{e}"));
        let request = PortalRequest { cursor: true, restore_token: None, bus_address: Some(bus.address().into()) };
        let err = PortalCapture::open(&request).expect_err("no portal");
        let text = err.to_string();
        assert!(matches!(err, CaptureError::PortalUnavailable(_)), "{err:?}");
        assert!(text.contains("install `xdg-desktop-portal`") && text.contains("xdg-desktop-portal-wlr"), "{text}");
        bus.stop();
    }
    let request = PortalRequest {
        cursor: true,
        restore_token: None,
        bus_address: Some("unix:path=/nonexistent/peep-test-bus".into()),
    };
    let err = PortalCapture::open(&request).expect_err("no bus");
    assert!(matches!(err, CaptureError::PortalUnavailable(_)) && err.to_string().contains("D-Bus"), "{err}");
}

fn tail(log: &str) -> String {
    let lines: Vec<_> = log.lines().filter(|l| !l.contains("[TRACE]")).collect();
    lines[lines.len().saturating_sub(60)..].join("\n")
}
