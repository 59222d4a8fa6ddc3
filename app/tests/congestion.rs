//! Congestion control on a constrained link. `peep share` (synthetic
//! scrolling text at 720p, bitrate ceiling 6 Mbps) runs in a sender
//! namespace behind the link emulator's 1 Mbit/s bottleneck (300 ms queue);
//! headless Chromium watches from the receiver namespace (common/lab.rs).
//! Over the last 10 s of a 25 s call, sampled every 200 ms at the sender
//! and every 250 ms at the receiver:
//! * every sample of the encoder's target is below the link's 1 Mbit/s;
//! * the encoder keeps producing, below the link rate and above a floor
//!   (an encoder that stopped fails), in every 2-s window;
//! * the picture keeps moving smoothly: frames are decoded in every 2-s
//!   window, at ≥ 10 fps on average (Peep's own rate control holds ≈ 25 fps
//!   here; rtc's GCC managed ≈ 3), with new pictures (marks) reaching the
//!   screen, a jitter buffer ≤ 200 ms, at most one freeze and at most one
//!   keyframe request (PLI);
//! * the viewer's bandwidth estimate sits near the link (0.5–1.4 Mbit/s:
//!   the encoder gets 85 % of it, the pacer 110 %).
//!
//! The issue 9 scenarios (tests/links.rs) hold the stricter bounds of each
//! scenario; `transport/tests/bwe_scenarios.rs` simulates them.

mod common;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::browser::{Browser, Launch, MARK_READER};
use common::lab::{Lab, require_lab_tools};
use common::scenario::{PROBE, parse_rx};
use peep_netlab::link::LinkConfig;
use serde_json::Value;

const LINK_BPS: f64 = 1_000_000.0;

/// Kills the child on drop.
struct Kill(std::process::Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wall_ms() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs_f64() * 1e3).unwrap_or(0.0)
}

/// (time, value) pairs of `key` in the samples at or after `from`.
fn series(samples: &[Value], time_key: &str, key: &str, from: f64) -> Vec<(f64, f64)> {
    samples.iter().filter_map(|s| Some((s[time_key].as_f64()?, s[key].as_f64()?))).filter(|(t, _)| *t >= from).collect()
}

/// Rates of a cumulative counter over consecutive windows of `window_ms`.
fn window_rates(points: &[(f64, f64)], window_ms: f64) -> Vec<f64> {
    let mut out = Vec::new();
    let mut start = 0;
    for i in 0..points.len() {
        if points[i].0 - points[start].0 >= window_ms {
            out.push((points[i].1 - points[start].1) / (points[i].0 - points[start].0) * 1e3);
            start = i;
        }
    }
    out
}

#[test]
fn congestion_control_holds_a_1_mbit_link_and_keeps_playing() {
    require_lab_tools();
    let lab = Lab::new(
        2,
        LinkConfig { rate_bps: Some(LINK_BPS as u64), queue_ms: 300, ..LinkConfig::default() },
        LinkConfig::default(),
    );
    let mut sender = Kill(
        lab.sender
            .command(env!("CARGO_BIN_EXE_peep"))
            .args(["share", "--source", "synthetic:scrolling", "--size", "1280x720", "--bitrate", "6M"])
            .args(["--bind", &lab.sender_ip, "--public-host", &lab.sender_ip, "--port", "8080"])
            .args(["--seconds", "60", "--stats-json"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start peep share in the sender namespace"),
    );
    let mut stdout = BufReader::new(sender.0.stdout.take().expect("stdout"));
    let mut line = String::new();
    while !line.starts_with("Link: ") {
        line.clear();
        assert!(stdout.read_line(&mut line).expect("read") > 0, "peep share exited before printing its link");
    }
    let link = line.trim().trim_start_matches("Link: ").to_owned();
    let tx = Arc::new(Mutex::new(Vec::<Value>::new()));
    {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for l in stdout.lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<Value>(&l) {
                    tx.lock().expect("tx").push(v);
                }
            }
        });
    }
    let mut browser = Browser::launch_opts(&Launch { netns: Some(&lab.receiver.name), ..Launch::default() });
    let page = browser.open_plain(&link, &format!("{MARK_READER}\n{PROBE}"));
    let start = Instant::now();
    browser.wait_for(&page, "window.peep && peep.state() === 'live'", Duration::from_secs(30));
    std::thread::sleep(Duration::from_secs(25).saturating_sub(start.elapsed()));
    let window_start = wall_ms() - 10_000.0;
    let rx = browser.eval(&page, "window.__lab.stats");
    let frames = browser.eval(&page, "window.__lab.frames");
    drop(browser);
    drop(sender);
    let tx = tx.lock().expect("tx").clone();
    // Counters made cumulative across the page's skip-to-live reconnections.
    let (rx, connections) = parse_rx(&rx);

    let targets = series(&tx, "t_ms", "target_bps", window_start);
    let produced: Vec<f64> =
        window_rates(&series(&tx, "t_ms", "bytes", window_start), 2000.0).iter().map(|r| r * 8.0).collect();
    let decoded: Vec<(f64, f64)> =
        rx.iter().filter(|r| r.t_ms >= window_start).map(|r| (r.t_ms, r.frames_decoded)).collect();
    let fps_windows = window_rates(&decoded, 2000.0);
    let fps = decoded.last().zip(decoded.first()).map_or(0.0, |(b, a)| (b.1 - a.1) / (b.0 - a.0).max(1.0) * 1e3);
    let new_pictures = frames
        .as_array()
        .map(|f| {
            let mut counters: Vec<i64> = f
                .iter()
                .filter(|x| x[0].as_f64().unwrap_or(0.0) >= window_start)
                .filter_map(|x| x[1].as_i64())
                .filter(|c| *c >= 0)
                .collect();
            counters.dedup();
            counters.len()
        })
        .unwrap_or(0);
    let kbps = |v: &[f64]| v.iter().map(|x| format!("{:.0}", x / 1e3)).collect::<Vec<_>>().join(" ");
    println!(
        "last 10 s: encoder target kbps [{}]; produced kbps per 2 s [{}]; decoded fps per 2 s [{}]; mean {fps:.1} fps, {new_pictures} new pictures, {connections} connection(s)",
        kbps(&targets.iter().map(|t| t.1).collect::<Vec<_>>()),
        kbps(&produced),
        fps_windows.iter().map(|f| format!("{f:.1}")).collect::<Vec<_>>().join(" "),
    );

    assert!(targets.len() >= 40, "the sender reported {} samples in 10 s (every 200 ms expected)", targets.len());
    for (t, target) in &targets {
        assert!(
            *target < LINK_BPS,
            "encoder target {:.0} kbps at {:.1} s before the end: congestion control must keep it under the 1 Mbit/s link",
            target / 1e3,
            (wall_ms() - t) / 1e3
        );
    }
    assert!(produced.len() >= 4, "too few 2-s windows of encoder output: {produced:?}");
    for p in &produced {
        assert!(*p <= 1.1 * LINK_BPS, "the encoder produced {:.0} kbps on a 1 Mbit/s link", p / 1e3);
        assert!(*p >= 50e3, "the encoder produced only {:.0} kbps in a 2-s window: it stopped", p / 1e3);
    }
    assert!(fps_windows.len() >= 4, "too few receiver samples: {fps_windows:?}");
    assert!(
        fps_windows.iter().all(|f| *f > 0.0),
        "the picture stalled: some 2-s window decoded no frame ({fps_windows:?})"
    );
    assert!(fps >= 10.0, "the picture plays at {fps:.1} fps over the last 10 s (at least 10 expected)");
    assert!(new_pictures >= 50, "only {new_pictures} new pictures (marks) reached the screen in 10 s");
    let (first, last) =
        (rx.iter().find(|r| r.t_ms >= window_start).expect("receiver samples"), rx.last().expect("receiver samples"));
    let jitter_ms = (last.jitter_buffer_delay_s - first.jitter_buffer_delay_s)
        / (last.jitter_buffer_emitted - first.jitter_buffer_emitted).max(1.0)
        * 1e3;
    assert!(jitter_ms <= 200.0, "jitter buffer {jitter_ms:.0} ms on average over the last 10 s");
    let (freezes, plis) = (last.freezes - first.freezes, last.plis - first.plis);
    assert!(freezes <= 1.0, "{freezes} freezes in the last 10 s");
    assert!(plis <= 1.0, "{plis} keyframe requests in the last 10 s");
    let estimates = series(&tx, "t_ms", "estimate_bps", window_start);
    let estimate = estimates.last().map_or(0.0, |e| e.1);
    assert!((500e3..=1400e3).contains(&estimate), "estimate {:.0} kbps on a 1 Mbit/s link", estimate / 1e3);
}
