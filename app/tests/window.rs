//! One real window under Xvfb: start Peep's GUI, start a share with
//! simulated keyboard input (xdotool), watch the link in headless Chromium,
//! screenshot the window and the preview, and close the window, which must
//! tell the viewer that the share ended.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::browser::Browser;
use common::require_tool;
use peep_capture::marks::{FrameMark, read_mark_bgra};
use peep_capture::testing::Xvfb;

fn xdotool(display: &str, args: &[&str]) {
    let out = Command::new("xdotool").args(args).env("DISPLAY", display).output().expect("run xdotool");
    assert!(out.status.success(), "xdotool {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
}

/// The X screen as BGRA bytes (1280x800).
fn grab_bgra(display: &str) -> Vec<u8> {
    let out = Command::new("ffmpeg")
        .args(["-loglevel", "error", "-f", "x11grab", "-video_size", "1280x800", "-i", display])
        .args(["-frames:v", "1", "-f", "rawvideo", "-pix_fmt", "bgra", "-"])
        .output()
        .expect("run ffmpeg");
    assert!(out.status.success(), "grab: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.stdout.len(), 1280 * 800 * 4);
    out.stdout
}

/// Finds a frame mark anywhere in a screenshot, at whatever scale the
/// preview shows it, and reads it. The mark's third row ends in sixteen
/// alternating white/black blocks (0xaaaa); the fourteen inside that run
/// (bits 17–30) border only each other, so they show as equal runs (the
/// rightmost such runs in the row): find them to learn the block size and
/// position, then resample the mark to a
/// size `read_mark_bgra` knows (which checks its CRC).
fn find_mark(bgra: &[u8], width: usize, height: usize) -> Option<FrameMark> {
    let luma = |x: usize, y: usize| {
        let i = (y * width + x) * 4;
        (u32::from(bgra[i]) * 29 + u32::from(bgra[i + 1]) * 150 + u32::from(bgra[i + 2]) * 77) >> 8
    };
    // Rows holding the alternating run: (row, x of bit 17, block size).
    let mut hits = Vec::new();
    for y in 0..height {
        let bits: Vec<bool> = (0..width).map(|x| luma(x, y) >= 128).collect();
        let mut runs = Vec::new(); // (start, len, bright)
        let mut start = 0;
        for x in 1..=width {
            if x == width || bits[x] != bits[start] {
                runs.push((start, x - start, bits[start]));
                start = x;
            }
        }
        // The rightmost such run: CRC bits just before it may alternate too.
        for w in runs.windows(14).rev() {
            let len = w[0].1;
            if len >= 3 && !w[0].2 && w.iter().all(|r| r.1.abs_diff(len) <= 1 + len / 8) {
                let b = (w[13].0 + w[13].1 - w[0].0) as f64 / 14.0;
                hits.push((y, w[0].0, b));
                break;
            }
        }
    }
    let &(y_mid, x_bit17, b) = hits.get(hits.len() / 2)?;
    let (x0, y0) = (x_bit17 as f64 - 18.0 * b, y_mid as f64 - 3.5 * b);
    // Resample the 34 x 5 block area to blocks of 8 px in a 512-wide image.
    let (w2, h2, b2) = (512usize, 40usize, 8.0);
    let mut out = vec![0u8; w2 * h2 * 4];
    for y in 0..h2 {
        for x in 0..(34 * 8) {
            let sx = (x0 + (x as f64 + 0.5) * b / b2) as isize;
            let sy = (y0 + (y as f64 + 0.5) * b / b2) as isize;
            if sx < 0 || sy < 0 || sx as usize >= width || sy as usize >= height {
                return None;
            }
            let (i, o) = ((sy as usize * width + sx as usize) * 4, (y * w2 + x) * 4);
            out[o..o + 4].copy_from_slice(&bgra[i..i + 4]);
        }
    }
    read_mark_bgra(&out, w2, h2, w2 * 4)
}

fn screenshot(display: &str, path: &std::path::Path) {
    let out = Command::new("ffmpeg")
        .args(["-loglevel", "error", "-y", "-f", "x11grab", "-video_size", "1280x800", "-i", display, "-frames:v", "1"])
        .arg(path)
        .output()
        .expect("run ffmpeg");
    assert!(out.status.success(), "screenshot: {}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn gui_shares_to_a_browser_and_closing_ends_the_share() {
    require_tool("xdotool", "xdotool");
    require_tool("ffmpeg", "ffmpeg");
    let x = Xvfb::start(1280, 800).unwrap_or_else(|e| panic!("{e}"));
    let home = std::env::temp_dir().join(format!("peep-gui-{}", std::process::id()));
    let config = home.join("config/peep");
    std::fs::create_dir_all(&config).expect("config dir");
    // First-run settings with the developer test source remembered, on a free port.
    let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("port").port();
    std::fs::write(
        config.join("settings.json"),
        format!(r#"{{"last_source_name": "Synthetic test screen", "developer": true, "port": {port}, "quality": "balanced", "fps": 30}}"#),
    )
    .expect("settings");
    let mut gui = Command::new(env!("CARGO_BIN_EXE_peep"))
        .env("DISPLAY", x.display())
        .env_remove("WAYLAND_DISPLAY")
        .env("XDG_CONFIG_HOME", home.join("config"))
        .env("LIBGL_ALWAYS_SOFTWARE", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start peep");
    // Wait for the window, give it the keyboard, start sharing (Ctrl+Enter).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let found = Command::new("xdotool")
            .args(["search", "--name", "^Peep$"])
            .env("DISPLAY", x.display())
            .output()
            .expect("xdotool");
        if found.status.success() && !found.stdout.is_empty() {
            break;
        }
        if Instant::now() > deadline || gui.try_wait().ok().flatten().is_some() {
            let _ = gui.kill();
            let mut err = String::new();
            let _ = std::io::Read::read_to_string(&mut gui.stderr.take().expect("stderr"), &mut err);
            panic!(
                "Peep's window never appeared. It needs OpenGL: under Xvfb that is Mesa's software renderer \
                 (`apt-get install libgl1-mesa-dri libegl1 libxkbcommon-x11-0`). peep said:\n{err}"
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_millis(500));
    // No window manager: give the window the keyboard focus explicitly.
    xdotool(x.display(), &["search", "--name", "^Peep$", "windowfocus", "--sync", "key", "ctrl+Return"]);
    let mut stdout = BufReader::new(gui.stdout.take().expect("stdout"));
    let mut line = String::new();
    while !line.starts_with("Link: ") {
        line.clear();
        assert!(stdout.read_line(&mut line).expect("read") > 0, "peep exited before sharing");
    }
    let link = line.trim().trim_start_matches("Link: ").to_owned();
    let local = format!("http://127.0.0.1:{port}{}", &link[link.find("/s/").expect("path")..]);
    let mut browser = Browser::launch();
    let page = browser.open(&local);
    browser.wait_for(&page, "window.peep && peep.state() === 'live'", Duration::from_secs(30));
    let decoded = browser.stats(&page)["framesDecoded"].as_u64().unwrap_or(0);
    browser.wait_for(&page, &format!("peep.stats().framesDecoded > {decoded} + 10"), Duration::from_secs(10));
    // Screenshots of the window while sharing, then with the preview open.
    let shots = std::env::var_os("PEEP_SCREENSHOTS").map(std::path::PathBuf::from).unwrap_or_else(|| home.clone());
    std::fs::create_dir_all(&shots).expect("screenshot dir");
    std::thread::sleep(Duration::from_secs(1));
    screenshot(x.display(), &shots.join("gui-sharing.png"));
    xdotool(x.display(), &["search", "--name", "^Peep$", "windowfocus", "--sync", "key", "ctrl+p"]);
    std::thread::sleep(Duration::from_secs(3));
    screenshot(x.display(), &shots.join("gui-preview.png"));
    let found = Command::new("xdotool")
        .args(["search", "--name", "Peep preview"])
        .env("DISPLAY", x.display())
        .output()
        .expect("xdotool");
    assert!(found.status.success() && !found.stdout.is_empty(), "the preview window opened");
    // It shows the shared picture, decoded: the synthetic marks are
    // readable on screen, and they advance.
    let first = find_mark(&grab_bgra(x.display()), 1280, 800).expect("a frame mark in the preview window");
    std::thread::sleep(Duration::from_millis(500));
    let second = find_mark(&grab_bgra(x.display()), 1280, 800).expect("a frame mark in the preview window");
    assert!(second.counter > first.counter, "the preview plays: {first:?} then {second:?}");
    // Close Peep (Ctrl+Q): the viewer is told the share ended.
    xdotool(x.display(), &["search", "--name", "^Peep$", "windowfocus", "--sync", "key", "ctrl+q"]);
    browser.wait_for(&page, "peep.state() === 'ended'", Duration::from_secs(15));
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(s) = gui.try_wait().expect("wait") {
            break s;
        }
        assert!(Instant::now() < deadline, "peep did not exit after its window closed");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "{status}");
    let _ = std::fs::remove_dir_all(&home);
}

#[test]
fn without_a_display_peep_says_how_to_share_headless() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_peep"))
        .env_remove("DISPLAY")
        .env_remove("WAYLAND_DISPLAY")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("start peep");
    let mut stderr = BufReader::new(child.stderr.take().expect("stderr"));
    let mut first = String::new();
    stderr.read_line(&mut first).expect("read");
    let _ = child.kill();
    let _ = child.wait();
    assert!(first.contains("no display") && first.contains("peep share"), "{first}");
}
