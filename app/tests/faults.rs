//! Fault injection: what Peep does when something it depends on fails
//! mid-share — the X server dies, the encoder returns an error, the disk
//! fills up while recording. Each ends with a clear error, a clean end
//! (viewers told through their event stream, the process exits) and no
//! corrupted output. (A viewer's network vanishing is
//! `browser.rs::a_vanished_viewer_never_stalls_the_others_and_is_freed`;
//! clock jumps are `peep-transport`'s `tests/clock_jumps.rs`.)

mod common;

use std::time::{Duration, Instant};

use common::load::SharingPeep;
use common::whep::{Viewer, follow_events, wait_for_line};
use peep::pipeline::PipelineConfig;
use peep::session::Session;
use peep_capture::backend::synthetic::SyntheticBackend;
use peep_capture::synthetic::Scene;
use peep_capture::testing::Xvfb;
use peep_encode::{EncodeError, EncodeOutcome, EncodedFrame, Encoder, I420Frame, OpenH264Config, OpenH264Encoder};
use peep_transport::ShareConfig;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("viewers")
        .enable_all()
        .build()
        .expect("runtime")
}

/// A viewer that receives media and follows its event stream.
fn watching(rt: &tokio::runtime::Runtime, link: &str) -> (Viewer, std::sync::mpsc::Receiver<String>) {
    let mut viewer = rt.block_on(Viewer::join(link, "127.0.0.1", None)).expect("join");
    rt.block_on(viewer.wait_for_media(Duration::from_secs(20))).expect("media");
    let events = follow_events(viewer.http_addr(), &viewer.events_path());
    // The stream is open once the server's headers arrived.
    wait_for_line(&events, "HTTP/1.1 200 OK", Duration::from_secs(5)).expect("the event stream opens");
    (viewer, events)
}

/// The X server is killed (SIGKILL) while a viewer watches the screen:
/// `peep share` says it lost the display server, tells the viewer the share
/// ended, and exits with an error — within seconds, without hanging.
#[test]
fn the_x_server_dying_ends_the_share_cleanly_and_tells_viewers() {
    let mut x = Xvfb::start(320, 240).unwrap_or_else(|e| panic!("{e}"));
    let mut peep = SharingPeep::start_with(&["--source", "screen", "--fps", "15"], &[("DISPLAY", x.display())]);
    let rt = runtime();
    let (_viewer, events) = watching(&rt, &peep.link);
    x.kill();
    let killed = Instant::now();
    wait_for_line(&events, "event: ended", Duration::from_secs(10)).expect("the viewer is told the share ended");
    let status = peep.wait(Duration::from_secs(10)).expect("peep share exits by itself");
    let stderr = peep.stderr();
    println!("exited {status} {:.1} s after the X server died", killed.elapsed().as_secs_f64());
    assert!(!status.success(), "losing the screen is an error: {stderr}");
    assert!(
        stderr.contains("peep: error:") && stderr.contains("lost the connection to the display server"),
        "a clear error: {stderr}"
    );
    assert!(stderr.contains("share ended"), "{stderr}");
}

/// An encoder that fails after some frames (as a codec call can).
struct FailingEncoder {
    inner: OpenH264Encoder,
    frames_left: usize,
}

impl Encoder for FailingEncoder {
    fn encode(
        &mut self,
        frame: &I420Frame,
        pts: Duration,
        out: &mut EncodedFrame,
    ) -> peep_encode::Result<EncodeOutcome> {
        if self.frames_left == 0 {
            return Err(EncodeError::Native { call: "EncodeFrame (injected fault)", code: -1 });
        }
        self.frames_left -= 1;
        self.inner.encode(frame, pts, out)
    }
    fn set_bitrate(&mut self, bitrate_bps: u32) -> peep_encode::Result<()> {
        self.inner.set_bitrate(bitrate_bps)
    }
    fn set_fps(&mut self, fps: f32) -> peep_encode::Result<()> {
        self.inner.set_fps(fps)
    }
    fn request_keyframe(&mut self) {
        self.inner.request_keyframe();
    }
    fn set_content(&mut self, class: peep_encode::ContentClass) -> peep_encode::Result<()> {
        self.inner.set_content(class)
    }
    fn refine(
        &mut self,
        frame: &I420Frame,
        pts: Duration,
        out: &mut EncodedFrame,
    ) -> peep_encode::Result<EncodeOutcome> {
        self.inner.refine(frame, pts, out)
    }
    fn name(&self) -> &'static str {
        self.inner.name()
    }
    fn codec(&self) -> peep_encode::Codec {
        self.inner.codec()
    }
    fn rate_gain(&self) -> f64 {
        self.inner.rate_gain()
    }
}

/// The encoder returns an error mid-share: the session ends by itself, its
/// error names the encoder and the failing call, and the viewer is told.
#[test]
fn an_encoder_error_ends_the_share_with_its_reason_and_tells_viewers() {
    const FRAMES: usize = 30;
    let backend = SyntheticBackend::new(320, 240, Scene::Moving).expect("synthetic source");
    let inner = OpenH264Encoder::new(OpenH264Config { bitrate_bps: 500_000, fps: 15.0, ..OpenH264Config::default() })
        .expect("encoder");
    let config = ShareConfig { bind: [127, 0, 0, 1].into(), port: 0, ..ShareConfig::default() };
    let session = Session::start(
        Box::new(backend),
        Box::new(FailingEncoder { inner, frames_left: FRAMES }),
        PipelineConfig { fps: 15.0, ..PipelineConfig::default() },
        config,
    )
    .expect("session");
    let rt = runtime();
    let (_viewer, events) = watching(&rt, session.share().link());
    let deadline = Instant::now() + Duration::from_secs(20);
    while !session.is_finished() {
        assert!(Instant::now() < deadline, "the session did not end after the encoder failed");
        std::thread::sleep(Duration::from_millis(20));
    }
    let encoded = session.pipeline_stats().frames_encoded.load(std::sync::atomic::Ordering::Relaxed);
    assert!(encoded as usize <= FRAMES, "{encoded} frames encoded");
    let error = format!("{:#}", session.stop().expect_err("the share reports the encoder's failure"));
    assert!(
        error.contains("the openh264 encoder failed") && error.contains("EncodeFrame (injected fault) returned -1"),
        "{error}"
    );
    wait_for_line(&events, "event: ended", Duration::from_secs(5)).expect("the viewer is told the share ended");
}

/// The disk fills up while recording (a 256 KiB tmpfs, mounted in a
/// private mount namespace so nothing outside sees it): `peep record`
/// stops at once with the file's name and the OS's reason, prints its
/// statistics, exits with an error, and what it wrote decodes (every
/// frame but a cut-off last one, marks in order).
#[test]
fn disk_full_while_recording_is_a_clear_error_and_the_file_stays_decodable() {
    common::require_tool("unshare", "util-linux");
    let dir = std::env::temp_dir().join(format!("peep-full-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let mount = dir.join("disk");
    std::fs::create_dir_all(&mount).expect("mount point");
    let copy = dir.join("copy.h264");
    let script = format!(
        "mount -t tmpfs -o size=256k peep-full {m} || exit 99; \
         \"$0\" record --source synthetic:moving --size 640x360 --fps 30 --bitrate 4M --seconds 20 --out {m}/rec.h264; \
         rc=$?; cp {m}/rec.h264 {c}; exit $rc",
        m = mount.display(),
        c = copy.display()
    );
    let started = Instant::now();
    let out = std::process::Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", &script, env!("CARGO_BIN_EXE_peep")])
        .output()
        .expect("run unshare");
    let elapsed = started.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(99), "mounting a tmpfs needs root: {stderr}");
    assert!(!out.status.success(), "a full disk is an error: {stderr}");
    assert!(stderr.contains("rec.h264") && stderr.contains("No space left on device"), "a clear error: {stderr}");
    assert!(stderr.contains("encoded"), "statistics are still printed: {stderr}");
    assert!(elapsed < Duration::from_secs(15), "stopped at the error, not after 20 s: {elapsed:?}");
    let data = std::fs::read(&copy).expect("the recording");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(data.len() > 200 * 1024 && data.len() <= 256 * 1024, "the disk filled up: {} bytes", data.len());
    // Decode every complete NAL unit (the last one may be cut off).
    let nals: Vec<&[u8]> = openh264::nal_units(&data).collect();
    let mut decoder = openh264::decoder::Decoder::new().expect("decoder");
    let mut counters = Vec::new();
    for nal in &nals[..nals.len() - 1] {
        if let Some(yuv) = decoder.decode(nal).expect("what was written decodes") {
            use openh264::formats::YUVSource;
            let (w, h) = yuv.dimensions();
            if let Some(mark) = peep_capture::marks::read_mark_luma(yuv.y(), w, h, yuv.strides().0) {
                counters.push(mark.counter);
            }
        }
    }
    assert!(counters.len() >= 3, "frames before the disk filled up: {counters:?}");
    assert!(counters.windows(2).all(|w| w[0] < w[1]), "in order: {counters:?}");
}
