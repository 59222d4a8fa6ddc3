//! Wayland (ScreenCast portal + PipeWire) against X11 (MIT-SHM), at the same
//! size with the same content: Peep's synthetic scene drawn by a separate
//! `peep demo-window` process (an X11 window under Xvfb; a Wayland window
//! under the private headless sway). For each path the capture → OpenH264
//! pipeline runs for a while and the bench prints:
//!
//! * fps actually encoded;
//! * CPU per encoded frame of Peep's process (capture, conversion, encode)
//!   and of the display server side (Xvfb; or sway + xdg-desktop-portal-wlr
//!   + PipeWire + WirePlumber, which do the screen copy and the delivery);
//! * capture → encoded latency as Peep measures it (X11: from the
//!   ShmGetImage request; portal: from the compositor's capture timestamp
//!   in the buffer header);
//! * draw → encoded latency: from the time stamped into each frame's mark by
//!   the demo window when it drew it, to the encoded frame leaving the
//!   encoder (marks read back by decoding after the run).
//!
//!     cargo bench -p peep --bench capture_paths -- [--seconds 10] [--size 1920x1080] [--scene moving]
//!
//! Needs what the tests need (xvfb, sway, the patched portal backend from
//! `.ci/build-xdpw`, pipewire, wireplumber, xdg-desktop-portal).

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use openh264::decoder::Decoder;
use openh264::formats::YUVSource;
use peep::pipeline::{Pipeline, PipelineConfig};
use peep_capture::SourceId;
use peep_capture::backend::CaptureBackend;
use peep_capture::backend::pipewire::PortalCapture;
use peep_capture::backend::portal::PortalRequest;
use peep_capture::backend::x11::X11Session;
use peep_capture::marks::{read_mark_luma, unix_ms_u32};
use peep_capture::testing::Xvfb;
use peep_capture::testing::wayland::WaylandDesktop;
use peep_encode::{OpenH264Config, OpenH264Encoder};

struct Options {
    seconds: f64,
    size: (u32, u32),
    scene: String,
}

fn options() -> Options {
    let mut o = Options { seconds: 10.0, size: (1920, 1080), scene: "moving".into() };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--seconds" => o.seconds = args.next().and_then(|s| s.parse().ok()).unwrap_or(o.seconds),
            "--size" => {
                o.size = args.next().and_then(|s| peep::cli::parse_size(&s).ok()).unwrap_or(o.size);
            }
            "--scene" => o.scene = args.next().unwrap_or(o.scene),
            _ => {} // cargo bench passes --bench
        }
    }
    o
}

/// CPU seconds (user + system) of a process.
fn cpu_seconds(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

fn cpu_of(pids: &[u32]) -> f64 {
    pids.iter().map(|p| cpu_seconds(&p.to_string())).sum()
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

struct Outcome {
    fps: f64,
    peep_ms: f64,
    server_ms: f64,
    capture_to_encoded: (f64, f64),
    draw_to_encoded: (f64, f64),
}

/// Runs the pipeline on `backend` for `seconds` after a 1 s warm-up.
fn measure(backend: Box<dyn CaptureBackend>, server: &[u32], seconds: f64) -> Outcome {
    let encoder =
        OpenH264Encoder::new(OpenH264Config { bitrate_bps: 4_000_000, fps: 30.0, ..OpenH264Config::default() })
            .expect("encoder");
    let mut pipeline = Pipeline::start(backend, Box::new(encoder), PipelineConfig::default()).expect("pipeline");
    // Every packet is kept (the decoder needs the first keyframe); those of
    // the 1 s warm-up are not measured.
    let mut packets = Vec::new();
    let warm = Instant::now() + Duration::from_secs(1);
    while Instant::now() < warm {
        if let Some(p) = pipeline.recv_timeout(Duration::from_millis(100)).expect("pipeline") {
            packets.push((p.data.to_vec(), unix_ms_u32(), false));
        }
    }
    let (peep0, server0) = (cpu_seconds("self"), cpu_of(server));
    let started = Instant::now();
    while started.elapsed().as_secs_f64() < seconds {
        if let Some(p) = pipeline.recv_timeout(Duration::from_millis(100)).expect("pipeline") {
            packets.push((p.data.to_vec(), unix_ms_u32(), true));
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let (peep, server_cpu) = (cpu_seconds("self") - peep0, cpu_of(server) - server0);
    let stats = pipeline.stats.clone();
    pipeline.stop().expect("clean stop");
    let measured = packets.iter().filter(|p| p.2).count();
    let frames = measured.max(1) as f64;
    // Marks read back after the run, so decoding costs nothing above.
    let mut decoder = Decoder::new().expect("decoder");
    let mut draw = Vec::new();
    for (data, encoded_ms, measure) in &packets {
        for nal in openh264::nal_units(data) {
            if let Ok(Some(yuv)) = decoder.decode(nal)
                && *measure
            {
                let (w, h) = yuv.dimensions();
                if let Some(mark) = read_mark_luma(yuv.y(), w, h, yuv.strides().0) {
                    draw.push(f64::from(encoded_ms.wrapping_sub(mark.timestamp_ms)));
                }
            }
        }
    }
    draw.sort_by(f64::total_cmp);
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    Outcome {
        fps: measured as f64 / elapsed,
        peep_ms: peep * 1e3 / frames,
        server_ms: server_cpu * 1e3 / frames,
        capture_to_encoded: (ms(stats.capture_to_encoded.quantile(0.5)), ms(stats.capture_to_encoded.quantile(0.95))),
        draw_to_encoded: (quantile(&draw, 0.5), quantile(&draw, 0.95)),
    }
}

fn demo_window(cmd: &mut Command, scene: &str) -> Child {
    cmd.args(["demo-window", "--scene", scene, "--fps", "30"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start peep demo-window")
}

fn main() {
    let o = options();
    let (w, h) = o.size;
    let peep = env!("CARGO_BIN_EXE_peep");
    println!("{w}x{h}, scene {}, 30 fps, {} s per path (rough on a loaded machine)", o.scene, o.seconds);
    let mut rows = Vec::new();

    let x = Xvfb::start(w, h).unwrap_or_else(|e| panic!("{e}"));
    let mut window =
        demo_window(Command::new(peep).env("DISPLAY", x.display()).env_remove("WAYLAND_DISPLAY"), &o.scene);
    std::thread::sleep(Duration::from_millis(800));
    let session = X11Session::connect_to(Some(x.display())).expect("connect to Xvfb");
    let capture = session.capture(&SourceId::Screen).expect("capture");
    let xvfb = [x.pid()];
    rows.push(("x11 (MIT-SHM)", measure(Box::new(capture), &xvfb, o.seconds)));
    let _ = window.kill();
    let _ = window.wait();
    drop(x);

    let desktop = WaylandDesktop::start(w, h).unwrap_or_else(|e| panic!("{e}"));
    let mut window = demo_window(&mut desktop.command(peep), &o.scene);
    std::thread::sleep(Duration::from_millis(800));
    let request = PortalRequest { cursor: true, restore_token: None, bus_address: Some(desktop.bus_address().into()) };
    let capture = PortalCapture::open(&request).expect("portal capture");
    let server: Vec<u32> = desktop
        .pids()
        .into_iter()
        .filter(|(name, _)| ["sway", "xdg-desktop-portal-wlr", "pipewire", "wireplumber"].contains(&name.as_str()))
        .map(|(_, pid)| pid)
        .collect();
    rows.push(("portal (PipeWire)", measure(Box::new(capture), &server, o.seconds)));
    let _ = window.kill();
    let _ = window.wait();
    desktop.stop();

    println!(
        "{:<18} {:>6} {:>12} {:>14} {:>10} {:>24} {:>22}",
        "path", "fps", "peep ms/fr", "server ms/fr", "total", "capture→encoded p50/p95", "draw→encoded p50/p95"
    );
    for (name, r) in &rows {
        println!(
            "{name:<18} {:>6.1} {:>12.2} {:>14.2} {:>10.2} {:>15.1} / {:>5.1} ms {:>13.0} / {:>4.0} ms",
            r.fps,
            r.peep_ms,
            r.server_ms,
            r.peep_ms + r.server_ms,
            r.capture_to_encoded.0,
            r.capture_to_encoded.1,
            r.draw_to_encoded.0,
            r.draw_to_encoded.1
        );
    }
}
