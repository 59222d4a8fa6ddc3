//! Publishing through a real SFU (numbers, not pass/fail): Janus 1.1.2 +
//! simple-whip-server in a network namespace (the WHIP tests' fixture),
//! Peep publishing a 1280x720 synthetic share to it with WHIP.
//!
//! * **Scale**: N = 1, 5, 20 subscribers through Janus. The subscribers are
//!   light (webrtc-rs receivers that count RTP bytes and do not decode) and
//!   run in a child process inside the SFU's namespace, so this process is
//!   the sharer alone: its CPU is the sharer's, and the bytes leaving the
//!   sharer's side of the veth pair are its whole upload. Both should stay
//!   flat as N grows, while Janus' fan-out grows N-fold.
//! * **Glass-to-glass**: a headless Chromium subscriber on Janus' own JS API
//!   vs a Chromium viewer on Peep's own link (direct), p50/p95 from the
//!   frame marks (as `benches/share.rs` does).
//!
//!     cargo bench -p peep --bench whip [-- SECONDS]

#[path = "../tests/common/mod.rs"]
mod common;

use std::io::{BufRead, BufReader};
use std::net::IpAddr;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::browser::{Browser, LATENCY_PROBE, Page};
use common::janus::{Sfu, http, sfu};
use peep::pipeline::PipelineConfig;
use peep::session::Session;
use peep_capture::backend::synthetic::SyntheticBackend;
use peep_capture::synthetic::Scene;
use peep_encode::{OpenH264Config, OpenH264Encoder};
use peep_transport::{BitrateRange, PublishState, ShareConfig, WhipConfig};
use serde_json::{Value, json};

const SUBSCRIBER_COUNTS: [usize; 3] = [1, 5, 20];

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("light-subscribers") {
        light_subscribers(&args[2], &args[3], args[4].parse().expect("room"), args[5].parse().expect("count"));
        return;
    }
    let seconds: u64 = args.iter().skip(1).filter_map(|a| a.parse().ok()).next().unwrap_or(10);
    let sfu = sfu();
    let endpoint = sfu.endpoint(None);
    let s = session(&sfu);
    s.share().start_publish(WhipConfig { url: endpoint.url.as_str().into(), token: None }).expect("publish");
    let deadline = Instant::now() + Duration::from_secs(20);
    while s.share().publish_status().is_none_or(|p| p.state != PublishState::Live) {
        assert!(Instant::now() < deadline, "the publish did not go live: {:?}", s.share().publish_status());
        std::thread::sleep(Duration::from_millis(100));
    }
    println!(
        "== WHIP through Janus: 1280x720 @ 30 fps synthetic 'moving', bitrate 1-3 Mbps, {seconds} s per measurement =="
    );
    glass_to_glass(&sfu, &s, endpoint.room, seconds);
    scale(&sfu, &s, endpoint.room, seconds);
    s.stop().expect("stop");
}

fn session(sfu: &Sfu) -> Session {
    let source = SyntheticBackend::new(1280, 720, Scene::Moving).expect("source");
    let encoder =
        OpenH264Encoder::new(OpenH264Config { bitrate_bps: 3_000_000, fps: 30.0, ..OpenH264Config::default() })
            .expect("encoder");
    let bind: IpAddr = sfu.host_ip().parse().expect("address");
    let config =
        ShareConfig { bind, port: 0, bitrate: BitrateRange::new(1_000_000, 3_000_000), ..ShareConfig::default() };
    Session::start(Box::new(source), Box::new(encoder), PipelineConfig::default(), config).expect("session")
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

fn tx_bytes(dev: &str) -> u64 {
    std::fs::read_to_string(format!("/sys/class/net/{dev}/statistics/tx_bytes"))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

fn latency(b: &mut Browser, page: &Page, seconds: u64) -> Vec<f64> {
    b.eval(page, LATENCY_PROBE);
    std::thread::sleep(Duration::from_secs(seconds));
    let mut lat: Vec<f64> =
        b.eval(page, "window.__lat").as_array().into_iter().flatten().filter_map(Value::as_f64).collect();
    lat.sort_by(f64::total_cmp);
    lat
}

fn glass_to_glass(sfu: &Sfu, s: &Session, room: u32, seconds: u64) {
    let mut b = Browser::launch_in(&sfu.ns.name, &["--disable-features=WebRtcHideLocalIpsWithMdns"]);
    let janus = b.open(&sfu.subscriber_page(room));
    b.wait_for(&janus, "window.sub && sub.state === 'playing'", Duration::from_secs(30));
    let through_janus = latency(&mut b, &janus, seconds);
    b.close(&janus);
    let direct = b.open(s.share().link());
    b.wait_for(&direct, "window.peep && peep.state() === 'live'", Duration::from_secs(30));
    let direct_lat = latency(&mut b, &direct, seconds);
    for (name, lat) in [("through Janus", &through_janus), ("direct (Peep's link)", &direct_lat)] {
        println!(
            "glass-to-glass {name:<21} p50 {:>5.1} ms  p95 {:>5.1} ms  (n={})",
            percentile(lat, 0.5),
            percentile(lat, 0.95),
            lat.len()
        );
    }
}

fn scale(sfu: &Sfu, s: &Session, room: u32, seconds: u64) {
    let me = std::env::current_exe().expect("own path");
    let dev = sfu.link.a.dev.clone();
    println!(
        "{:>3} subscribers: {:>14} {:>14} {:>18} {:>12}",
        "N", "sharer upload", "sharer CPU", "Janus fan-out", "frames sent"
    );
    for n in SUBSCRIBER_COUNTS {
        let mut child = sfu
            .ns
            .command(me.to_str().expect("UTF-8 path"))
            .args(["light-subscribers", &sfu.janus_addr(), sfu.sfu_ip(), &room.to_string(), &n.to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the subscribers");
        // The child prints `received BYTES` every 250 ms once every
        // subscriber gets media; a reader thread keeps the latest value.
        let latest = Arc::new(AtomicU64::new(u64::MAX));
        {
            let (latest, stdout) = (latest.clone(), child.stdout.take().expect("stdout"));
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    if let Some(bytes) = line.strip_prefix("received ").and_then(|b| b.parse().ok()) {
                        latest.store(bytes, Ordering::Relaxed);
                    }
                }
            });
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        while latest.load(Ordering::Relaxed) == u64::MAX {
            assert!(Instant::now() < deadline && child.try_wait().ok().flatten().is_none(), "the subscribers failed");
            std::thread::sleep(Duration::from_millis(50));
        }
        // Let the new subscribers' keyframe requests pass.
        std::thread::sleep(Duration::from_secs(2));
        let received = || latest.load(Ordering::Relaxed);
        let (c0, t0, up0, down0) = (cpu_seconds(), Instant::now(), tx_bytes(&dev), received());
        let frames0 = s.share().publish_status().map_or(0, |p| p.frames_sent);
        std::thread::sleep(Duration::from_secs(seconds));
        let down1 = received();
        let secs = t0.elapsed().as_secs_f64();
        let (cpu, up) = (cpu_seconds() - c0, tx_bytes(&dev) - up0);
        let frames = s.share().publish_status().map_or(0, |p| p.frames_sent) - frames0;
        println!(
            "{n:>3} subscribers: {:>9.2} Mbit/s {:>8.1} % core {:>12.2} Mbit/s {:>12}",
            up as f64 * 8.0 / secs / 1e6,
            cpu / secs * 100.0,
            (down1 - down0) as f64 * 8.0 / secs / 1e6,
            frames
        );
        let _ = child.kill();
        let _ = child.wait();
        // Janus notices the departed subscribers' ICE loss by itself; no need to wait.
    }
}

// ---------------------------------------------------------------------------
// Light subscribers (child process, inside the SFU's namespace).

/// Joins `count` VideoRoom subscribers to the publisher of `room` over
/// Janus' HTTP API at `janus` (host:port), receiving on `ip`; prints
/// `received <total RTP payload bytes>` every 250 ms once all get media.
fn light_subscribers(janus: &str, ip: &str, room: u32, count: usize) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("subscribers")
        .enable_all()
        .build()
        .expect("runtime");
    let received: Vec<Arc<AtomicU64>> = (0..count).map(|_| Arc::new(AtomicU64::new(0))).collect();
    let mut keep = Vec::new();
    for counter in &received {
        keep.push(runtime.block_on(subscribe(janus, ip, room, counter.clone())));
    }
    let total = || received.iter().map(|c| c.load(Ordering::Relaxed)).sum::<u64>();
    let deadline = Instant::now() + Duration::from_secs(30);
    while received.iter().any(|c| c.load(Ordering::Relaxed) == 0) {
        assert!(Instant::now() < deadline, "not every subscriber receives media");
        std::thread::sleep(Duration::from_millis(50));
    }
    for tick in 0u64.. {
        println!("received {}", total());
        std::thread::sleep(Duration::from_millis(250));
        // Keep the Janus sessions alive (60 s timeout without requests).
        if tick % 80 == 79 {
            for (session, _) in &keep {
                janus_post(janus, &format!("/janus/{session}"), json!({ "janus": "keepalive" }));
            }
        }
    }
}

fn janus_post(janus: &str, path: &str, mut body: Value) -> Value {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    body["transaction"] = json!(format!("t{}", NEXT.fetch_add(1, Ordering::Relaxed)));
    let (status, text) = http(janus, "POST", path, "application/json", &body.to_string()).expect("Janus");
    assert_eq!(status, 200, "{path}: {text}");
    serde_json::from_str(&text).expect("JSON")
}

struct Counter(Arc<AtomicU64>);

#[async_trait::async_trait]
impl webrtc::peer_connection::PeerConnectionEventHandler for Counter {
    async fn on_track(&self, track: Arc<dyn webrtc::media_stream::track_remote::TrackRemote>) {
        let counter = self.0.clone();
        tokio::spawn(async move {
            use webrtc::media_stream::track_remote::TrackRemoteEvent;
            while let Some(event) = track.poll().await {
                if let TrackRemoteEvent::OnRtpPacket(p) = event {
                    counter.fetch_add(p.payload.len() as u64, Ordering::Relaxed);
                }
            }
        });
    }
}

/// One subscriber: Janus session → join as subscriber → answer the offer
/// with a webrtc-rs receiver. Returns the session id and the connection.
async fn subscribe(
    janus: &str,
    ip: &str,
    room: u32,
    counter: Arc<AtomicU64>,
) -> (u64, Arc<dyn webrtc::peer_connection::PeerConnection>) {
    use rtc::ice::mdns::MulticastDnsMode;
    use rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
    use webrtc::peer_connection::{
        MediaEngine, PeerConnection, PeerConnectionBuilder, RTCConfigurationBuilder, RTCSessionDescription, Registry,
        SettingEngineBuilder, configure_nack, configure_rtcp_reports,
    };
    let session = janus_post(janus, "/janus", json!({ "janus": "create" }))["data"]["id"].as_u64().expect("session");
    let handle = janus_post(
        janus,
        &format!("/janus/{session}"),
        json!({ "janus": "attach", "plugin": "janus.plugin.videoroom" }),
    )["data"]["id"]
        .as_u64()
        .expect("handle");
    let path = format!("/janus/{session}/{handle}");
    let list = janus_post(
        janus,
        &path,
        json!({ "janus": "message", "body": { "request": "listparticipants", "room": room } }),
    );
    let feed = list["plugindata"]["data"]["participants"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["publisher"] == json!(true))
        .and_then(|p| p["id"].as_u64())
        .expect("a publisher in the room");
    let join = json!({ "janus": "message", "body": { "request": "join", "ptype": "subscriber", "room": room, "streams": [{ "feed": feed }] } });
    janus_post(janus, &path, join);
    // The offer arrives as an event on the session's long poll.
    let offer = loop {
        let (_, text) = http(janus, "GET", &format!("/janus/{session}?maxev=1"), "text/plain", "").expect("poll");
        let event: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        let events = if event.is_array() { event.as_array().cloned().unwrap_or_default() } else { vec![event] };
        if let Some(sdp) = events.iter().find_map(|e| e["jsep"]["sdp"].as_str()) {
            break sdp.to_owned();
        }
    };
    let mut media = MediaEngine::default();
    for codec in peep_transport::codecs::h264_codecs() {
        media.register_codec(codec, RtpCodecKind::Video).expect("codec");
    }
    let mut registry = Registry::new();
    registry = configure_nack(registry, &mut media);
    registry = configure_rtcp_reports(registry);
    let pc = PeerConnectionBuilder::new()
        .with_configuration(RTCConfigurationBuilder::new().build())
        .with_media_engine(media)
        .with_setting_engine(SettingEngineBuilder::new().with_multicast_dns_mode(MulticastDnsMode::Disabled).build())
        .with_interceptor_registry(registry)
        .with_handler(Arc::new(Counter(counter)))
        .with_udp_addrs(vec![format!("{ip}:0")])
        .build()
        .await
        .expect("peer connection");
    let pc: Arc<dyn PeerConnection> = Arc::new(pc);
    pc.set_remote_description(RTCSessionDescription::offer(offer).expect("offer")).await.expect("remote");
    let answer = pc.create_answer(None).await.expect("answer");
    pc.set_local_description(answer).await.expect("local");
    // Host candidates on an explicit address are gathered at once.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let sdp = pc.local_description().await.expect("local description").sdp;
    let start = json!({ "janus": "message", "body": { "request": "start", "room": room }, "jsep": { "type": "answer", "sdp": sdp } });
    janus_post(janus, &path, start);
    (session, pc)
}
