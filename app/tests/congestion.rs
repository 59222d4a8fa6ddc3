//! Congestion control on a constrained link. A test host (a network
//! namespace joined to this one by a veth pair) runs `peep share`; its side
//! of the link is shaped to 1 Mbit/s with `tc tbf`. Chromium watches from
//! here. Peep's estimator must bring the encoder down from its 6 Mbps
//! ceiling to what the link carries within seconds, and then the picture
//! must keep moving smoothly: a good frame rate, a short jitter buffer, no
//! freezes, no keyframe requests. (The network lab's scenarios add delay,
//! loss, steps and outages; `transport/tests/bwe_scenarios.rs` simulates
//! them.)
//!
//! With `PEEP_FEEDBACK_TRACE=<prefix>` the sender records its feedback (see
//! `peep_transport`'s send side); `transport/tests/data/` holds one recorded here.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::browser::Browser;
use common::netns::{Link, Netns};

/// A test host behind a link shaped to `rate` in the host's sending direction.
fn shaped_host(host_addr: &str, our_addr: &str, rate: &str) -> (Netns, Link) {
    let host = Netns::new("pcc");
    let link = Link::new(Some(&host), host_addr, None, our_addr);
    // Shape what the host sends (the video).
    host.run(
        "tc",
        &["qdisc", "add", "dev", &link.a.dev, "root", "tbf", "rate", rate, "burst", "16kb", "latency", "60ms"],
        "iproute2",
    );
    (host, link)
}

/// The last `NAME VALUE kbps` figure in peep's status output.
fn last_kbps(status: &str, name: &str) -> Option<f64> {
    status
        .rsplit(&format!("{name} "))
        .next()
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// Every `NAME VALUE` figure in peep's status output, in order.
fn all_figures(status: &str, name: &str) -> Vec<f64> {
    status
        .split(&format!("  {name} "))
        .skip(1)
        .filter_map(|rest| rest.split_whitespace().next().and_then(|v| v.parse().ok()))
        .collect()
}

#[test]
fn congestion_control_brings_the_bitrate_down_to_a_1_mbit_link() {
    let (host, link) = shaped_host("10.231.7.2/30", "10.231.7.1/30", "1mbit");
    let host_ip = link.a.ip();
    let mut sender = host
        .command(env!("CARGO_BIN_EXE_peep"))
        .args(["share", "--source", "synthetic:scrolling"])
        .args(["--size", "1280x720", "--bitrate", "6M", "--bind", host_ip, "--port", "8080", "--seconds", "60"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start peep share in the test host");
    let mut stdout = BufReader::new(sender.stdout.take().expect("stdout"));
    let mut link = String::new();
    while !link.starts_with("Link: ") {
        link.clear();
        assert!(stdout.read_line(&mut link).expect("read") > 0, "peep share exited before printing its link");
    }
    let link = link.trim().trim_start_matches("Link: ").to_owned();
    let status = Arc::new(Mutex::new(String::new()));
    {
        let (status, mut stderr) = (status.clone(), sender.stderr.take().expect("stderr"));
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stderr.read(&mut buf) {
                if n == 0 {
                    break;
                }
                status.lock().expect("status").push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
    }
    // The harness opens a fake camera for ICE (see common/browser.rs); that
    // needs a secure origin, which a LAN address is not.
    let origin = format!("--unsafely-treat-insecure-origin-as-secure=http://{host_ip}:8080");
    let mut browser = Browser::launch_with(&[&origin]);
    let page = browser.open(&link);
    browser.wait_for(&page, "window.peep && peep.state() === 'live'", Duration::from_secs(30));
    let deadline = Instant::now() + Duration::from_secs(30);
    let (mut target, mut bitrate) = (f64::MAX, f64::MAX);
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_secs(1));
        let s = status.lock().expect("status").clone();
        target = last_kbps(&s, "target").unwrap_or(f64::MAX);
        bitrate = last_kbps(&s, "bitrate").unwrap_or(f64::MAX);
        if target < 1000.0 && bitrate < 1100.0 {
            break;
        }
    }
    let settled = deadline - Duration::from_secs(30);
    println!("settled after {:.1} s", settled.elapsed().as_secs_f64());
    // Ten seconds on the shaped link: the page's getStats() figures.
    let first = browser.stats(&page);
    let mut jitter_ms = vec![];
    for _ in 0..10 {
        std::thread::sleep(Duration::from_secs(1));
        jitter_ms.push(browser.stats(&page)["jitterMs"].as_f64().unwrap_or(0.0));
    }
    let last = browser.stats(&page);
    let _ = sender.kill();
    let _ = sender.wait();
    let status = status.lock().expect("status").replace('\r', "\n");
    eprintln!("status: {status}");
    eprintln!("page: {last}");
    let n = |v: &serde_json::Value, k: &str| v[k].as_f64().unwrap_or(0.0);
    let fps = (n(&last, "framesDecoded") - n(&first, "framesDecoded")) / 10.0;
    let freezes = n(&last, "freezes") - n(&first, "freezes");
    let plis = n(&last, "plis") - n(&first, "plis");
    let estimates = all_figures(&status, "est");
    println!(
        "encoder target {target} kbps, produced {bitrate} kbps; then {fps:.1} fps, jitter buffer {jitter_ms:?} ms, \
         {freezes} freezes, {plis} PLIs; estimates {estimates:?}"
    );
    assert!(target < 1000.0, "congestion control lowered the encoder target to {target} kbps on a 1000 kbit/s link");
    assert!(target >= 100.0, "but not below the absolute minimum: {target}");
    assert!(bitrate < 1100.0, "the encoder produced {bitrate} kbps on a 1000 kbit/s link");
    // Loose safety bounds (exact figures are the network lab's benchmarks).
    assert!(fps >= 15.0, "the picture moves at {fps:.1} fps on the shaped link");
    let worst_jitter = jitter_ms.iter().copied().fold(0.0, f64::max);
    assert!(worst_jitter <= 200.0, "jitter buffer {jitter_ms:?} ms");
    assert!(freezes <= 1.0, "{freezes} freezes in 10 s");
    assert!(plis <= 1.0, "{plis} keyframe requests in 10 s");
    // The estimate may sit above the link: the encoder gets 85 % of it (the
    // target asserted above) and the pacer 110 %.
    let est_now = *estimates.last().expect("estimate in the status");
    assert!((500.0..=1400.0).contains(&est_now), "estimate {est_now} kbps on a 1000 kbit/s link");
}

#[test]
fn status_figures_parse() {
    let s = "viewers 1  fps  30.0  bitrate   2500 kbps  target   4000 kbps  encode 12.0 ms\rviewers 1  fps  29.0  bitrate    900 kbps  target    850 kbps";
    assert_eq!(last_kbps(s, "bitrate"), Some(900.0));
    assert_eq!(last_kbps(s, "target"), Some(850.0));
    let t = "viewers 1  fps  12.0 (link)  bitrate    800 kbps  target    700 kbps  est    900 kbps  queue   20 ms\rviewers 1  fps  20.0  bitrate    820 kbps  target    720 kbps  est    950 kbps  queue    0 ms";
    assert_eq!(all_figures(t, "est"), [900.0, 950.0]);
    assert_eq!(all_figures(t, "queue"), [20.0, 0.0]);
}
