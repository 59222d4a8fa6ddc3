//! `peep share` under load, as an operator sees it: its metrics listener
//! (`--metrics`), and viewer churn with light WebRTC viewers (webrtc-rs
//! clients that complete ICE and DTLS and receive media) after which the
//! process's memory, file descriptors, threads and tokio tasks return to
//! their baseline. The full-size runs (200 cycles, a 30-minute soak) are
//! `cargo bench -p peep --bench soak`.

mod common;

use std::time::Duration;

use common::load::{SharingPeep, churn, metric};
use common::whep::{Viewer, http_blocking, parse_link};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("viewers")
        .enable_all()
        .build()
        .expect("runtime")
}

fn get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    let (status, _, body) = http_blocking(addr, "GET", path, &[], b"").expect("GET");
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// Every declared metric is exposed with its type; the figures follow a
/// viewer joining and leaving; `/stats` is JSON without session ids; the
/// metrics listener serves nothing of the share and the share's port
/// nothing of the metrics.
#[test]
fn metrics_and_stats_follow_a_viewer_on_their_own_listener() {
    let peep = SharingPeep::start(&["--source", "synthetic:moving", "--size", "320x240", "--fps", "15"]);
    let rt = runtime();
    let text = peep.scrape();
    let declared = peep::metrics::PIPELINE_METRICS.iter().chain(peep_transport::metrics::SHARE_METRICS);
    for def in declared.filter(|d| !d.name.starts_with("peep_whip_")) {
        let kind = format!("{:?}", def.kind).to_lowercase();
        assert!(text.contains(&format!("# TYPE {} {kind}\n", def.name)), "{} ({kind}) missing in\n{text}", def.name);
    }
    for name in ["process_resident_memory_bytes", "process_open_fds", "process_threads"] {
        assert!(metric(&text, name).is_some_and(|v| v > 0.0), "{name} missing in\n{text}");
    }
    let names = text.lines().filter(|l| !l.starts_with('#')).filter_map(|l| l.split(['{', ' ']).next());
    for name in names {
        assert!(name.starts_with("peep_") || name.starts_with("process_"), "unprefixed metric {name}");
    }
    assert_eq!(metric(&text, "peep_encoders_running{codec=\"h264\"}"), Some(0.0), "nobody watches: no encoder");
    assert_eq!(metric(&text, "peep_viewers{path=\"direct\",state=\"connected\"}"), Some(0.0));

    let mut viewer = rt.block_on(Viewer::join(&peep.link, "127.0.0.1", None)).expect("join");
    rt.block_on(viewer.wait_for_media(Duration::from_secs(20))).expect("media");
    // Receiver reports (loss at once, RTT once a sender report was answered).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let text = loop {
        let text = peep.scrape();
        if metric(&text, "peep_viewer_rtt_seconds_count") == Some(1.0) || std::time::Instant::now() > deadline {
            break text;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let value = |series: &str| metric(&text, series).unwrap_or_else(|| panic!("{series} missing in\n{text}"));
    assert_eq!(value("peep_viewers{path=\"direct\",state=\"connected\"}"), 1.0);
    assert_eq!(value("peep_viewers_joined_total"), 1.0);
    assert_eq!(value("peep_encoders_running{codec=\"h264\"}"), 1.0);
    assert!(value("peep_frames_encoded_total{codec=\"h264\"}") > 0.0);
    assert!(value("peep_encode_seconds_count{codec=\"h264\"}") > 0.0);
    assert!(value("peep_keyframes_forced_total") >= 1.0, "the joining viewer's keyframe");
    assert!(value("peep_keyframes_encoded_total{codec=\"h264\"}") >= 1.0);
    assert!(value("peep_bitrate_target_bps{codec=\"h264\"}") > 0.0);
    assert_eq!(value("peep_viewer_loss_ratio_count"), 1.0);
    assert_eq!(value("peep_viewer_rtt_seconds_count"), 1.0, "RTT from receiver reports");
    let rtt = value("peep_viewer_rtt_seconds{quantile=\"1\"}");
    assert!(rtt > 0.0 && rtt < 1.0, "loopback RTT {rtt}");
    assert!(value("peep_tokio_tasks{runtime=\"share\"}") > 0.0);

    let (status, body) = get(peep.metrics, "/stats");
    assert_eq!(status, 200);
    let stats: serde_json::Value = serde_json::from_str(&body).expect("/stats is JSON");
    let viewers = stats["share"]["viewers"].as_array().expect("viewers");
    assert_eq!(viewers.len(), 1, "{stats}");
    assert_eq!(viewers[0]["state"], "connected");
    assert!(viewers[0].get("id").is_none(), "no session id in /stats: {stats}");
    assert_eq!(stats["pipeline"]["encoding"], true);
    assert!(stats["pipeline"]["frames_encoded"].as_u64() > Some(0));

    let (share_addr, page) = parse_link(&peep.link);
    assert_eq!(get(peep.metrics, &page).0, 404, "the metrics listener serves no viewer page");
    assert_eq!(get(peep.metrics, &format!("{page}/whep")).0, 404);
    assert_eq!(get(share_addr, "/metrics").0, 404, "the viewers' port serves no metrics");
    assert_eq!(get(share_addr, "/stats").0, 404);

    rt.block_on(viewer.leave(true)).expect("leave");
    let text = peep.scrape();
    assert_eq!(metric(&text, "peep_viewers_left_total"), Some(1.0));
    assert!(peep.stop(), "peep share exits cleanly on SIGINT");
}

#[test]
fn metrics_on_the_viewers_port_are_refused() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("free port").local_addr().expect("addr").port();
    let out = common::peep()
        .args(["share", "--source", "synthetic", "--size", "64x64", "--bind", "127.0.0.1", "--seconds", "3"])
        .args(["--port", &port.to_string(), "--metrics", &format!("127.0.0.1:{port}")])
        .output()
        .expect("run peep");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("the viewers' port"), "{err}");
}

/// Viewers join (ICE, DTLS, media), stay a moment and leave — every other
/// one with a WHEP DELETE, the others by just closing — four at a time,
/// overlapping. Afterwards the share's process is back to its baseline:
/// every tokio task and file descriptor freed, no thread left behind,
/// memory within a loose bound (allocator caches and lazily grown pools
/// are not leaks; 200 cycles in the soak bench show the trend). The bounds
/// fail on a leak of one task, two descriptors or one thread per viewer.
#[test]
fn viewer_churn_returns_tasks_fds_threads_and_memory_to_baseline() {
    const CYCLES: usize = 40;
    const CONCURRENCY: usize = 4;
    let peep = SharingPeep::start(&["--source", "synthetic:moving", "--size", "320x240", "--fps", "15"]);
    let rt = runtime();
    // Warm-up: pools, caches and lazily started threads reach their size.
    let warm = churn(&rt, &peep, 2 * CONCURRENCY, CONCURRENCY);
    assert!(warm.failures.is_empty(), "{:?}", warm.failures);
    let base = peep.settle(Duration::from_secs(20));
    let run = churn(&rt, &peep, CYCLES, CONCURRENCY);
    let after = peep.settle(Duration::from_secs(20));
    println!("churn: {CYCLES} cycles ({} with DELETE), {CONCURRENCY} at a time", run.deleted);
    println!("  baseline: {base}");
    println!("  after:    {after}");
    assert!(run.failures.is_empty(), "every viewer joined, got media and left: {:?}", run.failures);
    assert_eq!(run.cycles, CYCLES);
    assert!(run.peak_connected >= 2.0, "viewers overlapped (peak {})", run.peak_connected);
    let text = peep.scrape();
    assert_eq!(metric(&text, "peep_viewers_joined_total"), Some((warm.cycles + CYCLES) as f64));
    assert_eq!(metric(&text, "peep_viewers_left_total"), Some((warm.deleted + run.deleted) as f64));
    assert_eq!(
        metric(&text, "peep_encoders_running{codec=\"h264\"}"),
        Some(0.0),
        "encoding stops with the last viewer"
    );
    assert_eq!(after.tasks, base.tasks, "tokio tasks back to baseline");
    assert!(after.fds <= base.fds + 1, "file descriptors: {base} → {after}");
    assert!(after.threads <= base.threads + 1, "threads: {base} → {after}");
    assert!(after.rss_kib <= base.rss_kib + 24 * 1024, "memory: {base} → {after}");
    assert!(peep.stop(), "peep share exits cleanly on SIGINT");
}
