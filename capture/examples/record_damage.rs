//! Records what capture knows about each frame — time, whether it changed,
//! its damage rectangle — from a real X server while a separate client
//! draws a sequence of scenes. The content classifier's tests replay such
//! recordings (`encode/tests/data/damage-*.txt`).
//!
//!     cargo run --release -p peep-capture --example record_damage -- typing:3 moving:3 idle:2 typing:2 > out.txt
//!
//! Each argument is `SCENE:SECONDS` (`idle` draws nothing). Output: a
//! header line, then one line per published frame:
//! `t_ms changed x y width height` (`full` instead of the rectangle when
//! the damage is unknown). 1280x720 at 30 fps, cursor hidden.

#[cfg(not(target_os = "linux"))]
fn main() {
    eprintln!("record_damage needs X11 (Linux)");
}

#[cfg(target_os = "linux")]
fn main() {
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use peep_capture::backend::CaptureBackend;
    use peep_capture::backend::x11::X11Session;
    use peep_capture::driver::{self, CaptureConfig};
    use peep_capture::synthetic::Scene;
    use peep_capture::testing::{Painter, Xvfb};
    use peep_capture::{SourceId, Take, frame_ring};

    let (w, h) = (1280u32, 720u32);
    let plan: Vec<(Option<Scene>, f64)> = std::env::args()
        .skip(1)
        .map(|a| {
            let (name, secs) = a.split_once(':').expect("SCENE:SECONDS");
            let scene = if name == "idle" { None } else { Some(Scene::from_name(name).expect("scene name")) };
            (scene, secs.parse().expect("seconds"))
        })
        .collect();
    let x = Xvfb::start(w, h).unwrap_or_else(|e| panic!("{e}"));
    let session = X11Session::connect_to(Some(x.display())).expect("connect");
    let mut backend = session.capture(&SourceId::Screen).expect("capture");
    backend.set_cursor(false);
    let (producer, mut consumer) = frame_ring();
    let config = CaptureConfig { fps: 30.0, keepalive: Duration::from_secs(1), ..CaptureConfig::default() };
    let capture = driver::spawn_capture(Box::new(backend), producer, config, Arc::default()).expect("capture");
    println!("# {w}x{h} @ 30 fps: {}", std::env::args().skip(1).collect::<Vec<_>>().join(" "));
    let start = Instant::now();
    for (scene, secs) in plan {
        let painter = scene.map(|s| Painter::start(x.display(), w, h, s, 30.0).expect("painter"));
        let until = Instant::now() + Duration::from_secs_f64(secs);
        while Instant::now() < until {
            if let Take::Frame(f) = consumer.take_timeout(Duration::from_millis(50)) {
                let t = f.meta().captured_at.saturating_duration_since(start).as_millis();
                let changed = u8::from(f.meta().changed);
                match f.damage() {
                    Some(d) => println!("{t} {changed} {} {} {} {}", d.x, d.y, d.width, d.height),
                    None => println!("{t} {changed} full"),
                }
            }
        }
        // The window stays until the painter stops; the next one covers it.
        drop(painter);
    }
    capture.join().expect("capture");
}
