//! Watching a share in a real Firefox (Debian's `firefox-esr`, headless,
//! fresh profile, default media settings: no H.264), beside Chromium, over
//! veth addresses in network namespaces (browsers skip loopback candidates).
//!
//! Each test starts its Firefox once and runs its scenarios in sequence on
//! it: starting Firefox costs seconds, and the scenarios build on each other
//! (who watches decides which encoders run).

mod common;

use std::net::IpAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use common::browser::{Browser, Page};
use common::firefox::{Firefox, Tab};
use common::netns::{Link, Netns};
use peep::pipeline::PipelineConfig;
use peep::session::Session;
use peep_capture::backend::synthetic::SyntheticBackend;
use peep_capture::synthetic::Scene;
use peep_encode::{Codec, OpenH264Config, OpenH264Encoder};
use peep_transport::{BitrateRange, ShareConfig, VideoCodec};
use serde_json::Value;

const LIVE: &str = "window.peep && peep.state() === 'live'";

/// Two hosts of the test's own: the sharer's and the viewers', joined by a
/// veth pair on `10.244.<subnet>.0/30` (the share listens on `.1`, the
/// browsers are `.2`). Neither is the machine's own namespace, whose
/// firewall is not the test's to know (a CI machine's drops what arrives
/// on a new interface).
fn hosts(subnet: u8) -> (Netns, Netns, Link) {
    let (sharer, viewers) = (Netns::new("pfs"), Netns::new("pff"));
    let link =
        Link::new(Some(&sharer), &format!("10.244.{subnet}.1/30"), Some(&viewers), &format!("10.244.{subnet}.2/30"));
    (sharer, viewers, link)
}

/// A share started inside `host`: its sockets live there.
fn session(host: &Netns, bind: &str) -> Session {
    let bind = bind.to_owned();
    host.run_in(move || start_session(&bind))
}

fn start_session(bind: &str) -> Session {
    let source = SyntheticBackend::new(640, 360, Scene::Typing).expect("source");
    let encoder =
        OpenH264Encoder::new(OpenH264Config { bitrate_bps: 2_000_000, fps: 30.0, ..OpenH264Config::default() })
            .expect("encoder");
    let config = ShareConfig {
        bind: bind.parse::<IpAddr>().expect("address"),
        port: 0,
        bitrate: BitrateRange::new(500_000, 2_000_000),
        ..ShareConfig::default()
    };
    Session::start(Box::new(source), Box::new(encoder), PipelineConfig::default(), config).expect("session")
}

fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Marks read back: enough of them, never going back, and moving on.
fn assert_marks_advance(who: &str, counters: &[u64]) {
    assert!(counters.len() >= 10, "{who}: marks read: {counters:?}");
    assert!(counters.windows(2).all(|w| w[0] <= w[1]), "{who}: counters never go back: {counters:?}");
    let distinct = counters.windows(2).filter(|w| w[0] < w[1]).count();
    assert!(distinct >= 5, "{who}: the picture changes: {counters:?}");
}

fn chromium_marks(b: &mut Browser, page: &Page, duration: Duration) -> Vec<u64> {
    let deadline = Instant::now() + duration;
    let mut counters = Vec::new();
    while Instant::now() < deadline {
        if let Some(c) = b.eval(page, "window.__peepReadMark()").get("counter").and_then(Value::as_u64) {
            counters.push(c);
        }
        std::thread::sleep(Duration::from_millis(40));
    }
    counters
}

fn viewer_codecs(s: &Session) -> Vec<VideoCodec> {
    let mut codecs: Vec<_> = s.share().viewers().iter().map(|v| v.codec).collect();
    codecs.sort();
    codecs
}

/// The statistics overlay (key `s`) and the codec it names.
fn overlay_shows(ff: &mut Firefox, tab: &Tab, codec: &str) {
    ff.eval(tab, "document.dispatchEvent(new KeyboardEvent('keydown', { key: 's' }))");
    ff.wait_for(tab, "!document.getElementById('stats').hidden", Duration::from_secs(2));
    ff.wait_for(
        tab,
        &format!("/codec +{}\\n/.test(document.getElementById('stats').textContent)", codec.replace('.', "\\.")),
        Duration::from_secs(5),
    );
}

/// Firefox with its default settings: VP9 (no H.264 without the OpenH264
/// plugin), then Chromium joins on H.264, then Firefox leaves and the VP9
/// encoder stops; then the two "cannot" pages: no WebRTC, no common codec.
#[test]
fn firefox_watches_vp9_beside_chromium_on_h264_and_says_when_it_cannot() {
    let (sharer, ns, link) = hosts(10);
    let s = session(&sharer, link.a.ip());
    let mut ff = Firefox::launch(&ns, &[]);

    // Firefox alone: VP9, and only VP9 is encoded.
    let tab = ff.open(s.share().link());
    ff.wait_for(&tab, LIVE, Duration::from_secs(30));
    assert_eq!(viewer_codecs(&s), [VideoCodec::Vp9], "Firefox without H.264 gets VP9");
    assert_marks_advance("Firefox (VP9)", &ff.read_marks(&tab, Duration::from_millis(1500)));
    overlay_shows(&mut ff, &tab, "VP9");
    let stats = s.pipeline_stats();
    assert!(stats.codec(Codec::Vp9).active.load(Relaxed), "the VP9 encoder runs");
    assert!(!stats.codec(Codec::H264).active.load(Relaxed), "no H.264 viewer: the H.264 encoder is idle");
    let h264_before = stats.codec(Codec::H264).frames_encoded.load(Relaxed);

    // Chromium joins the same share: H.264 for it, VP9 still for Firefox.
    let origin = format!("--unsafely-treat-insecure-origin-as-secure=http://{}", s.share().local_addr());
    let mut chromium = Browser::launch_in(&ns.name, &[&origin]);
    let page = chromium.open(s.share().link());
    chromium.wait_for(&page, LIVE, Duration::from_secs(30));
    assert_eq!(viewer_codecs(&s), [VideoCodec::H264, VideoCodec::Vp9]);
    assert!(stats.codec(Codec::H264).active.load(Relaxed) && stats.codec(Codec::Vp9).active.load(Relaxed));
    assert_marks_advance("Chromium (H.264)", &chromium_marks(&mut chromium, &page, Duration::from_millis(1500)));
    let samples = ff.sample_marks(&tab, Duration::from_millis(1500));
    let counters: Vec<u64> = samples.iter().flatten().copied().collect();
    assert_marks_advance("Firefox (VP9) beside Chromium", &counters);
    // Every picture is intact (a delta frame decoded without its reference
    // shows garbage), and the decoder saw one keyframe per start, not one
    // per frame (what a VP9 payloader without frame dependencies causes).
    let unreadable = samples.len() - counters.len();
    assert!(unreadable * 10 <= samples.len(), "{unreadable} of {} samples had no readable mark", samples.len());
    let ff_stats = ff.stats(&tab);
    let keyframes = ff_stats["keyFramesDecoded"].as_u64().unwrap_or(0);
    let decoded = ff_stats["framesDecoded"].as_u64().unwrap_or(0);
    assert!(decoded > 60 && keyframes <= 5, "Firefox decoded {keyframes} keyframes in {decoded} frames: {ff_stats}");
    assert!(stats.codec(Codec::H264).frames_encoded.load(Relaxed) > h264_before + 20, "H.264 is encoded now");
    let stats_line = chromium.eval(&page, "document.dispatchEvent(new KeyboardEvent('keydown', { key: 's' })); 1");
    assert_eq!(stats_line, 1);
    chromium.wait_for(
        &page,
        "/codec +H\\.264\\n/.test(document.getElementById('stats').textContent)",
        Duration::from_secs(5),
    );

    // Firefox leaves: the VP9 encoder stops; Chromium keeps playing.
    ff.close(&tab);
    wait_until("the VP9 encoder to stop after Firefox left", Duration::from_secs(10), || {
        !stats.codec(Codec::Vp9).active.load(Relaxed)
    });
    assert_eq!(stats.codec(Codec::Vp9).starts.load(Relaxed), 1);
    assert_eq!(stats.codec(Codec::Vp9).stops.load(Relaxed), 1);
    let vp9_frames = stats.codec(Codec::Vp9).frames_encoded.load(Relaxed);
    assert_marks_advance(
        "Chromium after Firefox left",
        &chromium_marks(&mut chromium, &page, Duration::from_millis(1500)),
    );
    assert_eq!(stats.codec(Codec::Vp9).frames_encoded.load(Relaxed), vp9_frames, "no VP9 frame after the stop");
    assert_eq!(viewer_codecs(&s), [VideoCodec::H264]);
    drop(chromium);

    // A browser without WebRTC: the page says so and sends no offer.
    let refused = s.share().stats().offers_refused.load(Relaxed);
    let joined = s.share().stats().viewers_joined.load(Relaxed);
    let no_webrtc = ff.open_with(
        s.share().link(),
        "for (const name of ['RTCPeerConnection', 'webkitRTCPeerConnection', 'mozRTCPeerConnection']) { delete window[name]; }",
    );
    ff.wait_for(&no_webrtc, "window.peep && peep.state() === 'unsupported'", Duration::from_secs(10));
    assert_eq!(
        ff.status_text(&no_webrtc),
        "This browser cannot play WebRTC video (it has no RTCPeerConnection). Open the link in Firefox, Chrome, Edge or Safari."
    );
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(s.share().stats().offers_refused.load(Relaxed), refused, "no offer was sent");
    assert_eq!(s.share().stats().viewers_joined.load(Relaxed), joined);
    ff.close(&no_webrtc);

    // A browser whose offer has no codec Peep sends (here: AV1 only, by
    // codec preferences): the page names what it offered, says what would
    // fix it, and does not retry.
    let av1_only = ff.open_with(
        s.share().link(),
        "const add = RTCPeerConnection.prototype.addTransceiver;
         RTCPeerConnection.prototype.addTransceiver = function (...args) {
           const t = add.apply(this, args);
           t.setCodecPreferences(RTCRtpReceiver.getCapabilities('video').codecs.filter((c) => c.mimeType === 'video/AV1'));
           return t;
         };",
    );
    ff.wait_for(&av1_only, "window.peep && peep.state() === 'noCodec'", Duration::from_secs(10));
    let text = ff.status_text(&av1_only);
    assert!(
        text.starts_with("This browser offered the video codecs AV1, but Peep sends H.264, VP9 or VP8."),
        "names both sides: {text}"
    );
    assert!(text.contains("(current Firefox, Chrome, Edge or Safari do)"), "says what would fix it: {text}");
    std::thread::sleep(Duration::from_secs(4)); // past the page's 3 s retry
    assert_eq!(s.share().stats().offers_refused.load(Relaxed), refused + 1, "one refused offer: no retries");
    assert_eq!(ff.eval(&av1_only, "peep.state()"), "noCodec");
    assert_eq!(s.share().stats().viewers_joined.load(Relaxed), joined);
    drop(ff);
    s.stop().expect("clean stop");
}
