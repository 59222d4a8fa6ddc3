//! `peep` on a Wayland desktop: a real headless sway, xdg-desktop-portal(-wlr),
//! PipeWire and WirePlumber (`peep_capture::testing::wayland`), started once
//! for this test binary and taken by one test at a time. What `peep` records
//! is decoded with OpenH264 and its colours checked; a share is watched in
//! Chromium.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{LazyLock, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use common::browser::Browser;
use openh264::decoder::Decoder;
use openh264::formats::YUVSource;
use peep_capture::testing::wayland::{BareBus, WaylandDesktop};

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

/// A fresh config directory (settings and the restore token live there),
/// inside the desktop's directory so it goes with it.
fn config_dir(d: &WaylandDesktop, name: &str) -> PathBuf {
    let dir = d.dir().join(format!("peep-config-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("config dir");
    dir
}

fn token_file(config: &Path) -> PathBuf {
    config.join("peep/portal-restore-token")
}

/// An output file in the desktop's directory.
fn tmp(d: &WaylandDesktop, name: &str) -> PathBuf {
    d.dir().join(name)
}

/// `peep` as a client of the desktop, with its own config directory.
fn peep(d: &WaylandDesktop, config: &Path) -> Command {
    let mut cmd = d.command(env!("CARGO_BIN_EXE_peep"));
    cmd.env("XDG_CONFIG_HOME", config);
    cmd
}

/// Starts `peep record --source portal` and waits until it is recording.
fn start_recording(d: &WaylandDesktop, config: &Path, out: &Path, seconds: f64) -> (Child, Vec<String>) {
    let mut cmd = peep(d, config);
    cmd.args(["record", "--source", "portal", "--fps", "30", "--seconds", &seconds.to_string(), "--out"]).arg(out);
    start_with(d, cmd)
}

/// Starts a `peep record` command and waits until it is recording.
fn start_with(d: &WaylandDesktop, mut cmd: Command) -> (Child, Vec<String>) {
    let mut child = cmd.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().expect("spawn peep");
    let mut stderr = BufReader::new(child.stderr.take().expect("stderr"));
    let mut lines = Vec::new();
    loop {
        let mut line = String::new();
        if stderr.read_line(&mut line).unwrap_or(0) == 0 {
            let status = child.wait().expect("wait");
            panic!("peep ended ({status}) before recording: {lines:?}\nxdpw:\n{}", d.log("xdpw.log"));
        }
        lines.push(line.trim_end().to_owned());
        if line.contains("peep: recording") {
            break;
        }
    }
    // Keep draining stderr so peep never blocks on it; hand the rest back at the end.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rest: Vec<String> = stderr.lines().map_while(Result::ok).collect();
        let _ = tx.send(rest);
    });
    STDERR_TAILS.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push((child.id(), rx));
    (child, lines)
}

type Tail = (u32, std::sync::mpsc::Receiver<Vec<String>>);
static STDERR_TAILS: Mutex<Vec<Tail>> = Mutex::new(Vec::new());

/// Waits for a recording started with [`start_recording`]; returns its
/// status and its whole stderr.
fn finish(mut child: Child, mut head: Vec<String>) -> (std::process::ExitStatus, String) {
    let status = child.wait().expect("wait");
    let rx = {
        let mut tails = STDERR_TAILS.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let i = tails.iter().position(|(pid, _)| *pid == child.id()).expect("tail");
        tails.swap_remove(i).1
    };
    head.extend(rx.recv_timeout(Duration::from_secs(10)).unwrap_or_default());
    (status, head.join("\n"))
}

/// A decoded frame's size and centre colour.
type Frame = ((usize, usize), (u8, u8, u8));

/// Every decoded frame's size and centre colour (BT.709 limited range, as
/// Peep encodes).
fn decode_colours(stream: &[u8]) -> Vec<Frame> {
    let mut decoder = Decoder::new().expect("OpenH264 decoder");
    let mut out = Vec::new();
    let mut describe = |yuv: &dyn YUVSource| {
        let (w, h) = yuv.dimensions();
        let (ys, us, vs) = yuv.strides();
        let (x, y) = (w / 2, h / 2);
        let luma = f32::from(yuv.y()[y * ys + x]);
        let cb = f32::from(yuv.u()[(y / 2) * us + x / 2]) - 128.0;
        let cr = f32::from(yuv.v()[(y / 2) * vs + x / 2]) - 128.0;
        let l = 1.164 * (luma - 16.0);
        let clamp = |v: f32| v.round().clamp(0.0, 255.0) as u8;
        out.push(((w, h), (clamp(l + 1.793 * cr), clamp(l - 0.213 * cb - 0.533 * cr), clamp(l + 2.112 * cb))));
    };
    for nal in openh264::nal_units(stream) {
        if let Some(yuv) = decoder.decode(nal).expect("decodable stream") {
            describe(&yuv);
        }
    }
    for yuv in decoder.flush_remaining().expect("flush") {
        describe(&yuv);
    }
    out
}

fn near(a: (u8, u8, u8), rgb: u32) -> bool {
    let b = ((rgb >> 16) as u8, (rgb >> 8) as u8, rgb as u8);
    a.0.abs_diff(b.0) <= 24 && a.1.abs_diff(b.1) <= 24 && a.2.abs_diff(b.2) <= 24
}

/// Index of the first frame at or after `from` showing `rgb`.
fn find_colour(frames: &[Frame], from: usize, rgb: u32) -> Option<usize> {
    frames.iter().enumerate().skip(from).find(|(_, (_, c))| near(*c, rgb)).map(|(i, _)| i)
}

/// Shows `colours` in turn, 400 ms apart. After a share ends,
/// xdg-desktop-portal-wlr keeps its cast until one more frame has been
/// copied, and wlroots gives a new cast its first frame only after new
/// damage: on a static screen the first change can go to the old cast.
fn show(d: &WaylandDesktop, colours: &[u32]) {
    for &rgb in colours {
        d.set_background(rgb).expect("bg");
        std::thread::sleep(Duration::from_millis(400));
    }
}

fn run(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null()).output().expect("run peep")
}

/// The number after `label ` in peep's statistics line.
fn stat(stderr: &str, label: &str) -> u64 {
    let key = format!(" {label} ");
    let at = stderr.find(&key).unwrap_or_else(|| panic!("no {label:?} in {stderr}"));
    stderr[at + key.len()..]
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no number after {label:?} in {stderr}"))
}

#[test]
#[ignore = "issue 11: flaky in full workspace runs (4 of 8 here): the portal stream gave sway's grey or no picture while the screen showed the colours; passes alone — cargo test -p peep --test wayland -- --include-ignored"]
fn record_from_the_portal_shows_the_colours_set_on_screen() {
    let d = desktop();
    let config = config_dir(&d, "record");
    let out = tmp(&d, "colours.h264");
    d.set_background(0x000000).expect("bg");
    let (child, head) = start_recording(&d, &config, &out, 5.0);
    show(&d, &[0x808080]);
    for rgb in [0xff0000, 0x00ff00, 0x0000ff] {
        std::thread::sleep(Duration::from_millis(600));
        d.set_background(rgb).expect("bg");
    }
    let (status, stderr) = finish(child, head);
    assert!(status.success(), "{stderr}");
    let frames = decode_colours(&std::fs::read(&out).expect("read recording"));
    assert!(frames.iter().all(|(size, _)| *size == (640, 480)), "{frames:?}");
    // The colours appear, in the order they were set.
    let red = find_colour(&frames, 0, 0xff0000).unwrap_or_else(|| panic!("no red frame: {frames:?}"));
    let green = find_colour(&frames, red, 0x00ff00).unwrap_or_else(|| panic!("no green after red: {frames:?}"));
    let blue = find_colour(&frames, green, 0x0000ff).unwrap_or_else(|| panic!("no blue after green: {frames:?}"));
    assert!(red < green && green < blue);
    // (xdg-desktop-portal-wlr 0.7 calls every output a "window".)
    assert!(stderr.contains(" 640x480 (chosen in the desktop's dialog)"), "{stderr}");
}

#[test]
fn record_of_a_client_window_keeps_its_frames_in_order() {
    let mut d = desktop();
    let config = config_dir(&d, "client");
    let out = tmp(&d, "client.h264");
    // Peep's own demo window, a Wayland client drawing marked frames at 30 fps.
    let mut window = d.command(env!("CARGO_BIN_EXE_peep"));
    window.args(["demo-window", "--scene", "moving", "--fps", "30", "--seconds", "6"]);
    window.stdout(Stdio::null()).stderr(Stdio::null());
    let window = d.spawn_client(&mut window).expect("demo window");
    std::thread::sleep(Duration::from_millis(500));
    let (child, head) = start_recording(&d, &config, &out, 3.0);
    let (status, stderr) = finish(child, head);
    // Close the window before the next test takes the desktop (it would
    // cover the output those tests colour).
    let _ = Command::new("kill").arg(window.to_string()).status();
    std::thread::sleep(Duration::from_millis(300));
    assert!(status.success(), "{stderr}");
    let frames = common::decode_stream(&std::fs::read(&out).expect("read"));
    let counters: Vec<u32> = frames.iter().filter_map(|f| f.mark.map(|m| m.counter)).collect();
    assert!(counters.len() + 2 >= frames.len(), "marks read from (nearly) every frame: {counters:?}");
    assert!(counters.windows(2).all(|w| w[0] < w[1]), "every frame new and in order: {counters:?}");
    assert!(counters.len() >= 30, "{} frames of a 30 fps window in 3 s: {counters:?}", counters.len());
}

#[test]
#[ignore = "issue 11: flaky in full workspace runs (4 of 8 here): the portal stream gave sway's grey or no picture while the screen showed the colours; passes alone — cargo test -p peep --test wayland -- --include-ignored"]
fn an_unchanged_screen_costs_next_to_nothing() {
    let d = desktop();
    let config = config_dir(&d, "static");
    let out = tmp(&d, "static.h264");
    let seconds = 5.0;
    let (child, head) = start_recording(&d, &config, &out, seconds);
    // Changes right at the start (see `show`), then nothing for the rest.
    show(&d, &[0x402010, 0x204060]);
    let (status, stderr) = finish(child, head);
    assert!(status.success(), "{stderr}");
    // The change, then the 1 s keep-alive: about five frames, not 150.
    let encoded = stat(&stderr, "encoded");
    assert!((3..=8).contains(&encoded), "{encoded} frames encoded in {seconds} s of a static screen: {stderr}");
    let frames = decode_colours(&std::fs::read(&out).expect("read"));
    assert_eq!(frames.len() as u64, encoded);
    assert!(frames.last().is_some_and(|(_, c)| near(*c, 0x204060)), "{frames:?}");
}

#[test]
fn the_restore_token_is_saved_and_the_second_share_needs_no_dialog() {
    let d = desktop();
    let config = config_dir(&d, "restore");
    let runs = d.picker_runs();
    let out = tmp(&d, "first.h264");
    let first = run(peep(&d, &config).args(["record", "--source", "portal", "--seconds", "1", "--out"]).arg(&out));
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    assert_eq!(d.picker_runs(), runs + 1, "the first share shows the dialog");
    let token = std::fs::read_to_string(token_file(&config)).expect("the restore token was saved");
    assert!(!token.trim().is_empty());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(token_file(&config)).expect("token").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    // The second share (the default source on Wayland is the portal).
    let mut second = peep(&d, &config);
    second.args(["record", "--seconds", "2", "--out"]).arg(&out);
    let (child, head) = start_with(&d, second);
    show(&d, &[0x00ff00, 0x00ffff]);
    let (status, stderr) = finish(child, head);
    assert!(status.success(), "{stderr}");
    assert_eq!(d.picker_runs(), runs + 1, "restored without a dialog");
    assert!(token_file(&config).exists(), "a token for the share after");
    let frames = decode_colours(&std::fs::read(&out).expect("read"));
    assert!(frames.iter().any(|(_, c)| near(*c, 0x00ffff)), "the restored share captures the screen: {frames:?}");
    // Without the token the dialog comes back.
    std::fs::remove_file(token_file(&config)).expect("forget");
    let third = run(peep(&d, &config).args(["record", "--seconds", "0.5", "--out"]).arg(&out));
    assert!(third.status.success(), "{}", String::from_utf8_lossy(&third.stderr));
    assert_eq!(d.picker_runs(), runs + 2);
}

#[test]
fn a_cancelled_dialog_says_so_in_words() {
    let d = desktop();
    let config = config_dir(&d, "cancel");
    d.set_picker_answer(None).expect("answer");
    let out = run(peep(&d, &config).args(["record", "--source", "portal", "--seconds", "1", "--out", "/dev/null"]));
    d.set_picker_answer(Some("HEADLESS-1")).expect("answer");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert_eq!(stderr.trim(), "peep: you cancelled the selection; nothing was shared", "no error trace");
}

#[test]
fn a_missing_portal_names_what_to_install() {
    let d = desktop();
    let config = config_dir(&d, "missing");
    for bus in [BareBus::start(), BareBus::start_with_frontend_only()] {
        let bus = bus.unwrap_or_else(|e| panic!("{e}"));
        let out = run(peep(&d, &config).env("DBUS_SESSION_BUS_ADDRESS", bus.address()).args([
            "record",
            "--source",
            "portal",
            "--seconds",
            "1",
            "--out",
            "/dev/null",
        ]));
        bus.stop();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert!(
            stderr.contains("screen-cast portal is not available")
                && stderr.contains("install `xdg-desktop-portal`")
                && stderr.contains("xdg-desktop-portal-gnome"),
            "{stderr}"
        );
    }
}

#[test]
fn the_desktop_ending_the_cast_is_source_gone() {
    let mut d = desktop();
    let config = config_dir(&d, "gone");
    let out = tmp(&d, "gone.h264");
    let (child, head) = start_recording(&d, &config, &out, 30.0);
    show(&d, &[0x808000, 0x008080]);
    // sway 1.7's headless output cannot be unplugged: the portal backend
    // goes away instead, taking its stream with it.
    let ended = Instant::now();
    d.restart_portal_backend().expect("restart");
    let (status, stderr) = finish(child, head);
    assert!(!status.success(), "{stderr}");
    // Timed from the backend's end, not from peep's start (a loaded CI
    // machine once needed > 20 s from the start to the end of this test).
    let noticed = ended.elapsed();
    assert!(noticed < Duration::from_secs(10), "peep noticed at once, not after {noticed:?} (the recording runs 30 s)");
    assert!(stderr.contains("peep: error: source gone: the screen cast ended"), "{stderr}");
    // What was recorded until then is intact.
    assert!(!decode_colours(&std::fs::read(&out).expect("read")).is_empty());
}

#[test]
#[ignore = "issue 11: flaky in full workspace runs (4 of 8 here): the portal stream gave sway's grey or no picture while the screen showed the colours; passes alone — cargo test -p peep --test wayland -- --include-ignored"]
fn an_output_resize_is_followed_by_the_recording() {
    let d = desktop();
    let config = config_dir(&d, "resize");
    let out = tmp(&d, "resize.h264");
    d.set_background(0xff0000).expect("bg");
    let (child, head) = start_recording(&d, &config, &out, 5.0);
    show(&d, &[0x800000, 0xff0000]);
    d.set_output_size(800, 600).expect("resize");
    // xdg-desktop-portal-wlr may wait for the next change after renegotiating.
    for rgb in [0x00ff00, 0x0000ff, 0x00ff00, 0x0000ff] {
        std::thread::sleep(Duration::from_millis(600));
        d.set_background(rgb).expect("bg");
    }
    let (status, stderr) = finish(child, head);
    d.set_output_size(SIZE.0, SIZE.1).expect("restore size");
    assert!(status.success(), "{stderr}");
    let frames = decode_colours(&std::fs::read(&out).expect("read"));
    let first_big = frames.iter().position(|(s, _)| *s == (800, 600)).unwrap_or_else(|| panic!("{frames:?}"));
    assert!(frames[..first_big].iter().all(|(s, _)| *s == (640, 480)), "{frames:?}");
    assert!(frames[..first_big].iter().any(|(_, c)| near(*c, 0xff0000)), "{frames:?}");
    assert!(frames[first_big..].iter().all(|(s, _)| *s == (800, 600)), "{frames:?}");
    assert!(frames[first_big..].iter().any(|(_, c)| near(*c, 0x0000ff) || near(*c, 0x00ff00)), "{frames:?}");
}

#[test]
fn list_on_wayland_says_the_portal_chooses() {
    let d = desktop();
    let config = config_dir(&d, "list");
    let out = run(peep(&d, &config).arg("list"));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("dialog chooses") && text.lines().any(|l| l.starts_with("portal ")), "{text}");
    let json = run(peep(&d, &config).args(["list", "--json"]));
    let sources: serde_json::Value = serde_json::from_slice(&json.stdout).expect("JSON");
    assert_eq!(sources[0]["id"], "portal");
    // A window id is not something the portal can take.
    let window =
        run(peep(&d, &config).args(["record", "--source", "window:0x42", "--seconds", "1", "--out", "/dev/null"]));
    assert!(String::from_utf8_lossy(&window.stderr).contains("--source portal"));
}

#[test]
#[ignore = "issue 11: flaky in full workspace runs (4 of 8 here): the portal stream gave sway's grey or no picture while the screen showed the colours; passes alone — cargo test -p peep --test wayland -- --include-ignored"]
fn a_portal_share_plays_in_chromium() {
    let d = desktop();
    let config = config_dir(&d, "share");
    d.set_background(0x000000).expect("bg");
    let mut child = peep(&d, &config)
        .args(["share", "--source", "portal", "--bind", "127.0.0.1", "--port", "0", "--seconds", "60"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn peep share");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let mut line = String::new();
    while !line.starts_with("Link: ") {
        line.clear();
        if stdout.read_line(&mut line).unwrap_or(0) == 0 {
            let _ = child.kill();
            panic!("peep share ended before printing its link");
        }
    }
    let link = line.trim().trim_start_matches("Link: ").to_owned();
    let mut b = Browser::launch();
    let page = b.open(&link);
    b.wait_for(&page, "window.peep && peep.state() === 'live'", Duration::from_secs(30));
    let centre = r#"(() => {
        const v = document.getElementById('video');
        if (!v.videoWidth) return null;
        const c = document.createElement('canvas');
        c.width = v.videoWidth; c.height = v.videoHeight;
        const g = c.getContext('2d');
        g.drawImage(v, 0, 0);
        const d = g.getImageData(v.videoWidth / 2, v.videoHeight / 2, 1, 1).data;
        return [d[0], d[1], d[2], v.videoWidth, v.videoHeight];
    })()"#;
    for rgb in [0xff0000u32, 0x00ff00] {
        d.set_background(rgb).expect("bg");
        let deadline = Instant::now() + Duration::from_secs(15);
        let mut last = serde_json::Value::Null;
        loop {
            let v = b.eval(&page, centre);
            if let Some(a) = v.as_array() {
                let n: Vec<u64> = a.iter().filter_map(serde_json::Value::as_u64).collect();
                if n.len() == 5 && near((n[0] as u8, n[1] as u8, n[2] as u8), rgb) {
                    assert_eq!((n[3], n[4]), (640, 480));
                    break;
                }
            }
            last = v;
            assert!(Instant::now() < deadline, "the viewer never showed {rgb:06x}; last {last}");
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = last;
    }
    // Ctrl-C: the share tells the viewer and ends.
    let _ = Command::new("kill").args(["-INT", &child.id().to_string()]).status();
    let status = child.wait().expect("wait");
    assert!(status.success(), "peep share ended cleanly on Ctrl-C: {status}");
}

/// With `PEEP_SCREENSHOTS=DIR`, saves the screen as `DIR/NAME.png` (grim).
fn screenshot(d: &WaylandDesktop, name: &str) {
    if let Some(dir) = std::env::var_os("PEEP_SCREENSHOTS") {
        let path = Path::new(&dir).join(format!("{name}.png"));
        let _ = d.command("grim").arg(&path).status();
    }
}

/// Types with a virtual keyboard. It exists only while wtype runs, so it
/// waits first: the window must see the seat's new keyboard before keys come.
fn wtype(d: &WaylandDesktop, args: &[&str]) {
    let out = d.command("wtype").args(["-s", "400"]).args(args).output().expect("run wtype (apt-get install wtype)");
    assert!(out.status.success(), "wtype {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn the_window_runs_natively_on_wayland_and_shares_what_the_dialog_chose() {
    common::require_tool("wtype", "wtype");
    let d = desktop();
    let config = config_dir(&d, "gui");
    // A small floating window, so the screen around it shows the background.
    for rule in ["floating enable", "resize set 320 240", "move position 0 0"] {
        d.swaymsg(&format!(r#"for_window [title="^Peep$"] {rule}"#)).expect("window rule");
    }
    d.set_background(0x000000).expect("bg");
    let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("port").port();
    std::fs::create_dir_all(config.join("peep")).expect("config");
    std::fs::write(config.join("peep/settings.json"), format!(r#"{{"port": {port}}}"#)).expect("settings");
    let log = std::fs::File::create(d.dir().join("gui.log")).expect("log");
    let mut gui = peep(&d, &config).stdout(Stdio::piped()).stderr(log).spawn().expect("start the window");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let tree = d.sway_query("get_tree").unwrap_or_default();
        // An xdg_shell surface: a native Wayland window (sway runs without XWayland here).
        if tree.contains("\"name\": \"Peep\"") && tree.contains("\"shell\": \"xdg_shell\"") {
            break;
        }
        if let Ok(Some(status)) = gui.try_wait() {
            panic!(
                "peep's window ended ({status}): {}",
                std::fs::read_to_string(d.dir().join("gui.log")).unwrap_or_default()
            );
        }
        assert!(Instant::now() < deadline, "no Peep window in sway's tree: {tree}");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(500));
    screenshot(&d, "wayland-gui-start");
    let runs = d.picker_runs();
    // Ctrl+O: "Choose what to share…" opens the desktop's dialog.
    wtype(&d, &["-M", "ctrl", "o", "-m", "ctrl"]);
    let deadline = Instant::now() + Duration::from_secs(20);
    while d.picker_runs() == runs {
        if Instant::now() > deadline {
            screenshot(&d, "wayland-gui-no-dialog");
            panic!(
                "the dialog never opened; log: {}\ntree: {}",
                d.log("gui.log"),
                d.sway_query("get_tree").unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(1500));
    // Ctrl+Enter: share what was chosen, without another dialog.
    wtype(&d, &["-M", "ctrl", "-k", "Return", "-m", "ctrl"]);
    let mut stdout = BufReader::new(gui.stdout.take().expect("stdout"));
    let mut line = String::new();
    while !line.starts_with("Link: ") {
        line.clear();
        assert!(stdout.read_line(&mut line).unwrap_or(0) > 0, "the window ended before sharing: {}", d.log("gui.log"));
    }
    assert_eq!(d.picker_runs(), runs + 1, "the share used the choice already made");
    let link = line.trim().trim_start_matches("Link: ").to_owned();
    let local = format!("http://127.0.0.1:{port}{}", &link[link.find("/s/").expect("path")..]);
    let mut b = Browser::launch();
    let page = b.open(&local);
    b.wait_for(&page, "window.peep && peep.state() === 'live'", Duration::from_secs(30));
    screenshot(&d, "wayland-gui-sharing");
    // Away from the floating window, the viewer sees the background.
    let corner = r#"(() => {
        const v = document.getElementById('video');
        if (!v.videoWidth) return null;
        const c = document.createElement('canvas');
        c.width = v.videoWidth; c.height = v.videoHeight;
        const g = c.getContext('2d');
        g.drawImage(v, 0, 0);
        const d = g.getImageData(v.videoWidth - 40, v.videoHeight - 40, 1, 1).data;
        return [d[0], d[1], d[2]];
    })()"#;
    d.set_background(0xff8000).expect("bg");
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let v = b.eval(&page, corner);
        let n: Vec<u8> =
            v.as_array().map(|a| a.iter().filter_map(|x| x.as_u64()).map(|x| x as u8).collect()).unwrap_or_default();
        if n.len() == 3 && near((n[0], n[1], n[2]), 0xff8000) {
            break;
        }
        assert!(Instant::now() < deadline, "the viewer never showed the background; last {v}");
        std::thread::sleep(Duration::from_millis(100));
    }
    // Peep's own window (a Wayland client) is in the picture too: its dark
    // panels, not the background, at its top left.
    let inside = corner.replace("v.videoWidth - 40, v.videoHeight - 40", "100, 60");
    let v = b.eval(&page, &inside);
    let n: Vec<u64> = v.as_array().map(|a| a.iter().filter_map(|x| x.as_u64()).collect()).unwrap_or_default();
    assert!(n.len() == 3 && n.iter().all(|&c| c < 90), "Peep's window in the stream: {v}");
    // Ctrl+Q closes the window, which ends the share.
    wtype(&d, &["-M", "ctrl", "q", "-m", "ctrl"]);
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Ok(Some(status)) = gui.try_wait() {
            break status;
        }
        assert!(Instant::now() < deadline, "the window did not close");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "{status}: {}", d.log("gui.log"));
    b.wait_for(&page, "peep.state() === 'ended'", Duration::from_secs(10));
}
