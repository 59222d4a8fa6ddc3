//! The `peep` command line against real Xvfb, OpenH264 and ffprobe.

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::{decode_stream, nal_types, peep, require_tool};
use peep_capture::marks::FrameMark;
use peep_capture::synthetic::{Scene, SyntheticScene};
use peep_capture::testing::{DemoWindow, Xvfb};

fn xvfb(w: u32, h: u32) -> Xvfb {
    Xvfb::start(w, h).unwrap_or_else(|e| panic!("{e}"))
}

fn tmp(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("peep-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir.join(name)
}

#[test]
fn list_json_under_xvfb() {
    let x = xvfb(800, 600);
    let out = peep().args(["list", "--json"]).env("DISPLAY", x.display()).output().expect("run peep");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let sources: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let first = &sources[0];
    assert_eq!(first["id"], "screen");
    assert_eq!((first["width"].as_u64(), first["height"].as_u64()), (Some(800), Some(600)));
    let table = peep().arg("list").env("DISPLAY", x.display()).output().expect("run peep");
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(text.contains("screen") && text.contains("synthetic"), "{text}");
}

#[test]
fn no_x_server_is_a_clear_error() {
    for args in [&["list"][..], &["record", "--source", "screen", "--seconds", "1", "--out", "/dev/null"]] {
        let out = peep().args(args).env("DISPLAY", ":4243").output().expect("run peep");
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("cannot connect to the X server \":4243\""), "{err}");
    }
    let out = peep().arg("list").env_remove("DISPLAY").output().expect("run peep");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot connect to the X server"));
}

#[test]
fn unknown_source_ids_fail_clearly() {
    let x = xvfb(320, 240);
    for id in ["window:0x7ffffff0", "monitor:NOPE", "hdmi", "synthetic:nope"] {
        let out = peep()
            .args(["record", "--source", id, "--seconds", "1", "--out", "/dev/null"])
            .env("DISPLAY", x.display())
            .output()
            .expect("run peep");
        assert!(!out.status.success(), "{id} accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("unknown source id") && err.contains("peep list"), "{id}: {err}");
    }
}

#[test]
fn record_synthetic_to_file_is_readable_by_ffprobe_and_decodes_with_marks() {
    require_tool("ffprobe", "ffmpeg");
    let path = tmp("synthetic.h264");
    let out = peep()
        .args([
            "record",
            "--source",
            "synthetic:typing",
            "--size",
            "640x360",
            "--seconds",
            "2",
            "--fps",
            "30",
            "--bitrate",
            "1M",
        ])
        .arg("--out")
        .arg(&path)
        .output()
        .expect("run peep");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("encoded") && stderr.contains("encode ms p50"), "stats printed: {stderr}");

    let probe = std::process::Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-count_frames",
            "-show_entries",
            "stream=codec_name,profile,width,height,nb_read_frames",
            "-of",
            "json",
        ])
        .arg(&path)
        .output()
        .expect("ffprobe");
    let info: serde_json::Value = serde_json::from_slice(&probe.stdout).expect("ffprobe JSON");
    let s = &info["streams"][0];
    assert_eq!(s["codec_name"], "h264");
    assert_eq!(s["profile"], "Constrained Baseline");
    assert_eq!((s["width"].as_u64(), s["height"].as_u64()), (Some(640), Some(360)));
    let frames: u64 = s["nb_read_frames"].as_str().and_then(|n| n.parse().ok()).expect("frame count");
    assert!((40..=70).contains(&frames), "{frames} frames in 2 s at 30 fps");

    let decoded = decode_stream(&std::fs::read(&path).expect("read"));
    assert_eq!(decoded.len() as u64, frames);
    let counters: Vec<u32> = decoded.iter().map(|d| d.mark.expect("every frame's mark reads back").counter).collect();
    assert!(counters.windows(2).all(|w| w[0] < w[1]), "counters increase: {counters:?}");
}

#[test]
fn record_to_stdout_streams_annex_b() {
    let mut child = peep()
        .args(["record", "--source", "synthetic:moving", "--size", "320x240", "--seconds", "1", "--out", "-"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut stdout = child.stdout.take().expect("stdout");
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut stdout, &mut bytes).expect("read");
    assert!(child.wait().expect("wait").success());
    assert_eq!(&bytes[..5], &[0, 0, 0, 1, 0x67], "starts with an SPS");
    let decoded = decode_stream(&bytes);
    assert!(decoded.len() >= 20, "{} frames", decoded.len());
    assert!(decoded.iter().all(|d| (d.width, d.height) == (320, 240)));
}

#[test]
fn closing_the_reader_ends_the_recording_cleanly() {
    let mut child = peep()
        .args(["record", "--source", "synthetic", "--size", "320x240", "--seconds", "30", "--out", "-"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let mut stdout = child.stdout.take().expect("stdout");
    let mut first = [0u8; 64];
    std::io::Read::read_exact(&mut stdout, &mut first).expect("some output");
    drop(stdout);
    let started = std::time::Instant::now();
    let status = child.wait().expect("wait");
    assert!(started.elapsed() < Duration::from_secs(10), "peep kept running after the pipe closed");
    assert!(status.success(), "a closed pipe is a normal end: {status}");
}

#[test]
fn full_disk_is_a_clear_error() {
    let out = peep()
        .args(["record", "--source", "synthetic", "--size", "320x240", "--seconds", "2", "--out", "/dev/full"])
        .output()
        .expect("run peep");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("writing /dev/full") && err.contains("No space left on device"), "{err}");
    assert!(err.contains("encoded"), "stats are still printed: {err}");
}

#[test]
fn record_x11_window_and_survive_its_closing_with_a_clear_error() {
    let x = xvfb(800, 600);
    let session = peep_capture::backend::x11::X11Session::connect_to(Some(x.display())).expect("connect");
    let mut win = DemoWindow::open(session.connection().clone(), 10, 10, 400, 300, "recorded").expect("window");
    let scene = SyntheticScene::new(400, 300, Scene::Typing);
    let mut buf = vec![0u8; 400 * 300 * 4];
    let path = tmp("window.h264");
    let child = peep()
        .args([
            "record",
            "--seconds",
            "20",
            "--fps",
            "30",
            "--no-cursor",
            "--source",
            &format!("window:{:#x}", win.window),
        ])
        .arg("--out")
        .arg(&path)
        .env("DISPLAY", x.display())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    // Animate for a second, then close the window mid-capture.
    for i in 0..30u32 {
        scene.render(u64::from(i), &mut buf, 1600, FrameMark { counter: i + 1, timestamp_ms: i });
        win.show(&buf, 400, 300, 1600).expect("show");
        std::thread::sleep(Duration::from_millis(33));
    }
    win.close().expect("close");
    let out = child.wait_with_output().expect("wait");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "closing the source is an error: {err}");
    assert!(err.contains("source gone: window") && err.contains("was closed"), "{err}");
    // What was captured before is intact.
    let decoded = decode_stream(&std::fs::read(&path).expect("file"));
    let counters: Vec<u32> = decoded.iter().filter_map(|d| d.mark).map(|m| m.counter).collect();
    assert!(counters.len() >= 10, "{} frames with marks", counters.len());
    assert!(counters.windows(2).all(|w| w[0] <= w[1]), "{counters:?}");
    assert!(decoded.iter().all(|d| (d.width, d.height) == (400, 300)));
}

#[test]
fn window_resized_mid_recording_switches_size_with_a_keyframe() {
    let x = xvfb(800, 600);
    let session = peep_capture::backend::x11::X11Session::connect_to(Some(x.display())).expect("connect");
    let mut win = DemoWindow::open(session.connection().clone(), 0, 0, 320, 240, "resized").expect("window");
    let path = tmp("resize.h264");
    let child = peep()
        .args([
            "record",
            "--seconds",
            "2",
            "--fps",
            "30",
            "--no-cursor",
            "--source",
            &format!("window:{:#x}", win.window),
        ])
        .arg("--out")
        .arg(&path)
        .env("DISPLAY", x.display())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let frame = |win: &mut DemoWindow, w: u32, h: u32, i: u32| {
        let scene = SyntheticScene::new(w as usize, h as usize, Scene::Typing);
        let mut buf = vec![0u8; (w * h * 4) as usize];
        scene.render(u64::from(i), &mut buf, w as usize * 4, FrameMark { counter: i, timestamp_ms: 0 });
        win.show(&buf, w, h, w as usize * 4).expect("show");
    };
    for i in 0..15 {
        frame(&mut win, 320, 240, i);
        std::thread::sleep(Duration::from_millis(33));
    }
    win.configure(0, 0, 641, 479).expect("resize");
    for i in 15..30 {
        frame(&mut win, 641, 479, i);
        std::thread::sleep(Duration::from_millis(33));
    }
    let out = child.wait_with_output().expect("wait");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stream = std::fs::read(&path).expect("file");
    let idrs = nal_types(&stream).iter().filter(|&&t| t == 5).count();
    assert!(idrs >= 2, "a keyframe at the start and one at the size switch, got {idrs}");
    let decoded = decode_stream(&stream);
    let sizes: Vec<(usize, usize)> = decoded.iter().map(|d| (d.width, d.height)).collect();
    assert_eq!(sizes.first(), Some(&(320, 240)));
    // Odd sizes are coded at the next even size.
    assert_eq!(sizes.last(), Some(&(642, 480)), "{sizes:?}");
    let switch = sizes.iter().position(|&s| s != (320, 240)).expect("size switch");
    assert!(sizes[switch..].iter().all(|&s| s == (642, 480)), "{sizes:?}");
}

#[test]
fn nal_type_helper_reads_annex_b() {
    let stream = [0, 0, 0, 1, 0x67, 0x42, 0, 0, 1, 0x68, 0xce, 0, 0, 0, 1, 0x65, 0x88];
    assert_eq!(nal_types(&stream), [7, 8, 5]);
}

#[test]
fn share_prints_link_and_whep_lines_then_stops_cleanly() {
    let out = peep()
        .args([
            "share",
            "--source",
            "synthetic",
            "--size",
            "320x240",
            "--bind",
            "127.0.0.1",
            "--port",
            "0",
            "--seconds",
            "1",
        ])
        .output()
        .expect("run peep");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<&str> = stdout.lines().collect();
    let link = lines.iter().find_map(|l| l.strip_prefix("Link: ")).expect("a Link line");
    let whep = lines.iter().find_map(|l| l.strip_prefix("WHEP: ")).expect("a WHEP line");
    let token = link.rsplit('/').next().expect("token");
    assert!(link.starts_with("http://127.0.0.1:") && link.contains("/s/"), "{link}");
    assert_eq!(token.len(), 32, "128-bit token: {token}");
    assert_eq!(whep, format!("{link}/whep"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("share ended"), "{stderr}");
    assert!(!stderr.contains(token), "the token stays out of the log");
}

#[test]
fn share_on_a_busy_port_or_with_an_unknown_quality_fails_clearly() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port().to_string();
    let out = peep()
        .args(["share", "--source", "synthetic", "--bind", "127.0.0.1", "--port", &port, "--seconds", "1"])
        .output()
        .expect("run peep");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot listen on 127.0.0.1:") && err.contains("in use"), "{err}");
    let out =
        peep().args(["share", "--source", "synthetic", "--quality", "ultra", "--seconds", "1"]).output().expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown quality \"ultra\""));
}

#[test]
fn json_logs_are_one_object_per_line_without_secrets() {
    let out = peep()
        .args(["--log-format", "json", "share", "--source", "synthetic", "--size", "64x64", "--bind", "127.0.0.1"])
        .args(["--port", "0", "--seconds", "1", "--password", "hunter2-json"])
        .env("PEEP_LOG", "info")
        .output()
        .expect("run peep");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let events: Vec<serde_json::Value> = stderr
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let started = events.iter().find(|e| e["fields"]["message"] == "share started").expect("a 'share started' event");
    assert_eq!(started["level"], "INFO");
    assert_eq!(started["fields"]["password"], true, "structured fields: {started}");
    assert!(started["fields"]["addr"].as_str().is_some_and(|a| a.starts_with("127.0.0.1:")), "{started}");
    assert!(events.iter().any(|e| e["fields"]["message"] == "share ended"), "{stderr}");
    let link = String::from_utf8_lossy(&out.stdout).lines().find_map(|l| l.strip_prefix("Link: ").map(str::to_owned));
    let token = link.expect("a link").rsplit('/').next().expect("token").to_owned();
    assert!(!stderr.contains(&token) && !stderr.contains("hunter2-json"), "secrets stay out of the log: {stderr}");
    // PEEP_LOG_FORMAT does the same as the flag.
    let out = peep()
        .args(["share", "--source", "synthetic", "--size", "64x64", "--bind", "127.0.0.1", "--port", "0"])
        .args(["--seconds", "0.5"])
        .env("PEEP_LOG", "info")
        .env("PEEP_LOG_FORMAT", "json")
        .output()
        .expect("run peep");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.lines().any(|l| l.starts_with("{\"timestamp\"")), "{stderr}");
}
