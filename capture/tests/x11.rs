//! X11 backend against a real Xvfb server.

use std::time::{Duration, Instant};

use peep_capture::backend::x11::{X11Capture, X11Session};
use peep_capture::backend::{CaptureBackend, Tick};
use peep_capture::marks::{FrameMark, read_mark_bgra};
use peep_capture::synthetic::{Scene, SyntheticScene};
use peep_capture::testing::{DemoWindow, Xvfb};
use peep_capture::{CaptureError, FrameRef, PixelFormat, RingConsumer, RingProducer, SourceId, SourceKind, frame_ring};
use x11rb::protocol::xproto::ConnectionExt as _;
use x11rb::wrapper::ConnectionExt as _;

fn xvfb(w: u32, h: u32) -> (Xvfb, X11Session) {
    let x = Xvfb::start(w, h).unwrap_or_else(|e| panic!("{e}"));
    let session = X11Session::connect_to(Some(x.display())).expect("connect to Xvfb");
    (x, session)
}

fn show_scene(win: &mut DemoWindow, w: u32, h: u32, scene: Scene, mark: FrameMark) -> Vec<u8> {
    let s = SyntheticScene::new(w as usize, h as usize, scene);
    let mut buf = vec![0u8; w as usize * h as usize * 4];
    s.render(u64::from(mark.counter), &mut buf, w as usize * 4, mark);
    win.show(&buf, w, h, w as usize * 4).expect("show");
    buf
}

/// Captures until a frame is published (the first tick may race the server's
/// processing of our drawing) and returns it.
fn capture_frame<'a>(cap: &mut X11Capture, p: &mut RingProducer, c: &'a mut RingConsumer, force: bool) -> FrameRef<'a> {
    let tick = cap.capture(p, 0, force).expect("capture");
    assert!(matches!(tick, Tick::Published { .. }), "{tick:?}");
    c.try_take().expect("a published frame")
}

#[test]
fn lists_displays_and_windows() {
    let (_x, session) = xvfb(800, 600);
    let displays = session.list_displays().expect("displays");
    assert_eq!(displays[0].id, "screen");
    assert_eq!((displays[0].width, displays[0].height), (800, 600));
    assert_eq!(displays.iter().filter(|d| d.primary).count(), 1, "{displays:?}");
    let monitors: Vec<_> = displays.iter().filter(|d| d.id.starts_with("monitor:")).collect();
    assert!(!monitors.is_empty(), "RandR lists at least one monitor: {displays:?}");

    let conn = session.connection().clone();
    let big = DemoWindow::open(conn.clone(), 20, 30, 300, 200, "Big window").expect("window");
    let _tiny = DemoWindow::open(conn.clone(), 0, 0, 10, 10, "Tiny").expect("window");
    let hidden = DemoWindow::open(conn.clone(), 0, 0, 200, 200, "Hidden").expect("window");
    conn.unmap_window(hidden.window).expect("unmap");
    conn.sync().expect("sync");

    let windows = session.list_windows().expect("windows");
    let names: Vec<_> = windows.iter().map(|w| w.name.as_str()).collect();
    assert_eq!(names, ["Big window"], "tiny and unmapped windows are skipped");
    let w = &windows[0];
    assert_eq!(w.kind, SourceKind::Window);
    assert_eq!(w.app.as_deref(), Some("PeepDemo"));
    assert_eq!((w.x, w.y, w.width, w.height), (20, 30, 300, 200));
    assert_eq!(SourceId::parse(&w.id).expect("id"), SourceId::Window(big.window));

    let thumb = session.thumbnail(&SourceId::Window(big.window), 64, 64).expect("thumbnail");
    assert_eq!((thumb.width, thumb.height), (64, 43));
    assert_eq!(thumb.bgra.len(), 64 * 43 * 4);
}

#[test]
fn screen_capture_is_pixel_exact_and_unchanged_screen_publishes_nothing() {
    let (_x, session) = xvfb(640, 480);
    let mut win = DemoWindow::open(session.connection().clone(), 0, 0, 640, 480, "content").expect("window");
    let mark = FrameMark { counter: 1234, timestamp_ms: 99 };
    let painted = show_scene(&mut win, 640, 480, Scene::Typing, mark);

    let mut cap = session.capture(&SourceId::Screen).expect("capture");
    cap.set_cursor(false);
    let (mut p, mut c) = frame_ring();
    {
        let f = capture_frame(&mut cap, &mut p, &mut c, false);
        let m = *f.meta();
        assert_eq!((m.width, m.height, m.stride_bytes, m.format), (640, 480, 2560, PixelFormat::Bgrx));
        assert!(m.changed);
        assert_eq!(read_mark_bgra(f.data(), 640, 480, 2560), Some(mark));
        // Pixel-exact apart from the padding byte.
        let diff = f.data().chunks_exact(4).zip(painted.chunks_exact(4)).filter(|(a, b)| a[..3] != b[..3]).count();
        assert_eq!(diff, 0, "pixels differ from what was drawn");
    }
    // Let the damage from our own drawing arrive, then settle.
    std::thread::sleep(Duration::from_millis(50));
    let _ = cap.capture(&mut p, 1, false).expect("tick");
    drop(c.try_take());
    for seq in 2..10 {
        assert_eq!(cap.capture(&mut p, seq, false).expect("tick"), Tick::Unchanged, "nothing changed at tick {seq}");
    }
    assert!(c.try_take().is_none());
    // A forced frame of an unchanged screen is marked unchanged.
    assert_eq!(cap.capture(&mut p, 10, true).expect("tick"), Tick::Published { changed: false });
    drop(c.try_take());
    // Drawing raises damage: the next tick publishes a changed frame.
    win.fill(100, 100, 50, 50, 0xff0000).expect("fill");
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        match cap.capture(&mut p, 11, false).expect("tick") {
            Tick::Published { changed: true } => break,
            _ if Instant::now() > deadline => panic!("damage never reported"),
            _ => std::thread::sleep(Duration::from_millis(5)),
        }
    }
    let f = c.try_take().expect("frame");
    let i = 120 * 2560 + 120 * 4;
    assert_eq!(&f.data()[i..i + 3], &[0, 0, 255], "the red square is in the frame");
}

#[test]
fn window_capture_follows_moves_and_resizes_and_hides_overlaps() {
    let (_x, session) = xvfb(1024, 768);
    let conn = session.connection().clone();
    let mut win = DemoWindow::open(conn.clone(), 100, 100, 320, 240, "target").expect("window");
    let m1 = FrameMark { counter: 1, timestamp_ms: 1 };
    show_scene(&mut win, 320, 240, Scene::Static, m1);
    let mut cap = session.capture(&SourceId::Window(win.window)).expect("capture");
    cap.set_cursor(false);
    let (mut p, mut c) = frame_ring();
    {
        let f = capture_frame(&mut cap, &mut p, &mut c, true);
        assert_eq!((f.meta().width, f.meta().height), (320, 240));
        // Static scenes always carry the mark of frame 0.
        assert_eq!(read_mark_bgra(f.data(), 320, 240, 1280), Some(FrameMark { counter: 0, timestamp_ms: 0 }));
    }
    // Another window on top, over the target's top-left corner (where its
    // mark is), must not show up in the window's capture.
    let cover = DemoWindow::open(conn.clone(), 90, 90, 200, 150, "cover").expect("cover");
    cover.fill(0, 0, 200, 150, 0x00ff00).expect("fill");
    let green = |px: &[u8]| px[..3] == [0, 255, 0];
    {
        // The cover really is on screen over the target: the screen shows it there.
        let mut screen = session.capture(&SourceId::Screen).expect("screen capture");
        screen.set_cursor(false);
        let (mut sp, mut sc) = frame_ring();
        let f = capture_frame(&mut screen, &mut sp, &mut sc, true);
        let stride = f.meta().stride_bytes;
        let covered = (100..240).flat_map(|y| (100..290).map(move |x| y * stride + x * 4));
        assert!(covered.clone().all(|i| green(&f.data()[i..i + 4])), "the cover is on top of the target on screen");
    }
    {
        let f = capture_frame(&mut cap, &mut p, &mut c, true);
        assert_eq!((f.meta().width, f.meta().height), (320, 240));
        assert!(!f.data().chunks_exact(4).any(green), "covering window leaked into capture");
        assert_eq!(read_mark_bgra(f.data(), 320, 240, 1280), Some(FrameMark { counter: 0, timestamp_ms: 0 }));
    }
    // Move partly off-screen: the part outside the screen is still captured.
    win.configure(900, -50, 320, 240).expect("move");
    {
        let f = capture_frame(&mut cap, &mut p, &mut c, true);
        assert_eq!((f.meta().width, f.meta().height), (320, 240));
        assert_eq!(read_mark_bgra(f.data(), 320, 240, 1280), Some(FrameMark { counter: 0, timestamp_ms: 0 }));
    }
    // Resize: new size, new content.
    win.configure(50, 50, 480, 360).expect("resize");
    let m2 = FrameMark { counter: 2, timestamp_ms: 2 };
    show_scene(&mut win, 480, 360, Scene::Typing, m2);
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let f = capture_frame(&mut cap, &mut p, &mut c, true);
        if f.meta().width == 480 {
            assert_eq!(f.meta().height, 360);
            assert_eq!(read_mark_bgra(f.data(), 480, 360, 1920), Some(m2));
            break;
        }
        assert!(Instant::now() < deadline, "resize not followed");
    }
}

#[test]
fn closed_window_ends_the_stream_with_source_gone() {
    let (_x, session) = xvfb(640, 480);
    let win = DemoWindow::open(session.connection().clone(), 0, 0, 200, 100, "doomed").expect("window");
    let id = win.window;
    let mut cap = session.capture(&SourceId::Window(id)).expect("capture");
    let (mut p, mut c) = frame_ring();
    drop(capture_frame(&mut cap, &mut p, &mut c, true));
    win.close().expect("close");
    let deadline = Instant::now() + Duration::from_secs(2);
    let err = loop {
        match cap.capture(&mut p, 1, true) {
            Err(e) => break e,
            Ok(_) => assert!(Instant::now() < deadline, "closing was not noticed"),
        }
    };
    assert!(matches!(err, CaptureError::SourceGone(_)), "{err:?}");
    assert_eq!(err.to_string(), format!("source gone: window {id:#x} was closed"));
}

#[test]
fn cursor_is_composited_and_switchable() {
    let (_x, session) = xvfb(320, 240);
    let mut win = DemoWindow::open(session.connection().clone(), 0, 0, 320, 240, "bg").expect("window");
    win.fill(0, 0, 320, 240, 0x404040).expect("fill");
    show_scene(&mut win, 320, 240, Scene::Static, FrameMark { counter: 0, timestamp_ms: 0 });
    let conn = session.connection();
    conn.warp_pointer(x11rb::NONE, session.root(), 0, 0, 0, 0, 200, 150).expect("warp");
    conn.sync().expect("sync");
    let mut cap = session.capture(&SourceId::Screen).expect("capture");
    let (mut p, mut c) = frame_ring();
    let with: Vec<u8> = capture_frame(&mut cap, &mut p, &mut c, true).data().to_vec();
    cap.set_cursor(false);
    let without: Vec<u8> = capture_frame(&mut cap, &mut p, &mut c, true).data().to_vec();
    let stride = 320 * 4;
    let differing: Vec<(usize, usize)> = (0..240)
        .flat_map(|y| (0..320).map(move |x| (x, y)))
        .filter(|&(x, y)| {
            with[y * stride + x * 4..y * stride + x * 4 + 3] != without[y * stride + x * 4..y * stride + x * 4 + 3]
        })
        .collect();
    assert!(!differing.is_empty(), "the cursor was not drawn");
    assert!(
        differing.iter().all(|&(x, y)| x.abs_diff(200) < 64 && y.abs_diff(150) < 64),
        "cursor drawn away from the pointer"
    );
}

#[test]
fn odd_and_tiny_window_sizes() {
    let (_x, session) = xvfb(1920, 1080);
    for (w, h) in [(1u32, 1u32), (1919, 1079), (3, 7)] {
        let mut win = DemoWindow::open(session.connection().clone(), 0, 0, w as u16, h as u16, "odd").expect("window");
        let painted = show_scene(&mut win, w, h, Scene::Moving, FrameMark { counter: 7, timestamp_ms: 7 });
        let mut cap = session.capture(&SourceId::Window(win.window)).expect("capture");
        cap.set_cursor(false);
        let (mut p, mut c) = frame_ring();
        let f = capture_frame(&mut cap, &mut p, &mut c, true);
        assert_eq!((f.meta().width, f.meta().height), (w, h));
        assert!(
            f.data().chunks_exact(4).zip(painted.chunks_exact(4)).all(|(a, b)| a[..3] == b[..3]),
            "{w}x{h} differs"
        );
        if w > 1000 {
            assert_eq!(
                read_mark_bgra(f.data(), w as usize, h as usize, f.meta().stride_bytes).map(|m| m.counter),
                Some(7)
            );
        }
    }
}

#[test]
fn unknown_sources_and_missing_server_are_clear_errors() {
    let (_x, session) = xvfb(320, 240);
    let err = session.capture(&SourceId::Window(0x7fff_fff0)).expect_err("no such window");
    assert!(err.to_string().contains("unknown source id \"window:0x7ffffff0\""), "{err}");
    let err = session.capture(&SourceId::Monitor("HDMI-9".into())).expect_err("no such monitor");
    assert!(matches!(err, CaptureError::UnknownSource(_)), "{err}");

    let err = X11Session::connect_to(Some(":4242")).expect_err("no server on :4242");
    assert!(matches!(err, CaptureError::NoDisplay { .. }));
    assert!(err.to_string().contains("cannot connect to the X server \":4242\""), "{err}");
}

#[test]
fn monitor_capture_reads_its_region() {
    let (_x, session) = xvfb(640, 480);
    let monitor = session
        .list_displays()
        .expect("displays")
        .into_iter()
        .find(|d| d.id.starts_with("monitor:"))
        .expect("a monitor");
    let mut cap = session.capture(&SourceId::parse(&monitor.id).expect("id")).expect("capture");
    let (mut p, mut c) = frame_ring();
    let f = capture_frame(&mut cap, &mut p, &mut c, true);
    assert_eq!((f.meta().width, f.meta().height), (monitor.width, monitor.height));
}

/// DAMAGE wakes `wait_for_change` as soon as another client draws, and a
/// quiet screen lets it run to its deadline; capturing clears the signal.
#[test]
fn damage_wakes_wait_for_change() {
    let (_x, session) = xvfb(320, 240);
    let painter_session = X11Session::connect_to(Some(_x.display())).expect("painter connection");
    let win = DemoWindow::open(painter_session.connection().clone(), 0, 0, 320, 240, "damage").expect("window");
    let mut cap = session.capture(&SourceId::Screen).expect("capture");
    cap.set_cursor(false);
    let (mut p, mut c) = frame_ring();
    drop(capture_frame(&mut cap, &mut p, &mut c, true));

    // Nothing drawn: the wait runs to its deadline and reports no change.
    let started = Instant::now();
    assert!(!cap.wait_for_change(started + Duration::from_millis(200)).expect("wait"));
    assert!(started.elapsed() >= Duration::from_millis(195), "returned early: {:?}", started.elapsed());

    // Another client draws 100 ms into a 20 s wait: woken by the damage.
    let drawer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(100));
        win.fill(10, 10, 50, 50, 0xff0000).expect("fill");
        win
    });
    let started = Instant::now();
    assert!(cap.wait_for_change(started + Duration::from_secs(20)).expect("wait"), "no change signalled");
    let woke = started.elapsed();
    let win = drawer.join().expect("drawer");
    // A loose bound (the machine may be busy): far from the 20 s deadline.
    assert!(woke < Duration::from_secs(10), "woke after {woke:?}");
    match cap.capture(&mut p, 1, false).expect("capture") {
        Tick::Published { changed: true } => {}
        other => panic!("the damaged screen must publish a changed frame, got {other:?}"),
    }
    let f = c.try_take().expect("frame");
    assert_eq!(&f.data()[(20 * 320 + 20) * 4..][..3], &[0, 0, 255], "the red square is in the frame");
    // DAMAGE's bounding box says where: the square, not the whole screen.
    let d = f.damage().expect("a known damage rectangle");
    assert!(d.x <= 10 && d.y <= 10 && d.x + d.width >= 60 && d.y + d.height >= 60, "{d:?} misses the square");
    assert!(d.width <= 100 && d.height <= 100, "{d:?} is much larger than the square");
    drop(f);
    // A forced frame of the unchanged screen: nothing damaged.
    drop(capture_frame(&mut cap, &mut p, &mut c, true));
    assert!(matches!(cap.capture(&mut p, 2, true).expect("capture"), Tick::Published { changed: false }));
    assert_eq!(c.try_take().expect("frame").damage(), Some(peep_capture::DamageRect::EMPTY));

    // The capture consumed the damage: quiet again.
    assert!(!cap.wait_for_change(Instant::now() + Duration::from_millis(100)).expect("wait"));
    drop(win);
}
