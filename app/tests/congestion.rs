//! Congestion control on a constrained link. A test host (a network
//! namespace joined to this one by a veth pair) runs `peep share`; its side
//! of the link is shaped to 1 Mbit/s with `tc tbf`. Chromium watches from
//! here. GCC must bring the encoder down from its 6 Mbps ceiling to what the
//! link carries, and the picture must keep playing.

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
    eprintln!("status: {}", status.lock().expect("status").replace('\r', "\n"));
    eprintln!("page: {}", browser.stats(&page));
    // The picture keeps moving. (On this link it moves at a few frames per
    // second with a jitter buffer of 1–2 s: see the notes on rtc's GCC.)
    let decoded = browser.stats(&page)["framesDecoded"].as_u64().unwrap_or(0);
    browser.wait_for(&page, &format!("peep.stats().framesDecoded >= {decoded} + 3"), Duration::from_secs(20));
    let _ = sender.kill();
    let _ = sender.wait();
    println!("encoder target {target} kbps, produced {bitrate} kbps");
    assert!(target < 1000.0, "congestion control lowered the encoder target to {target} kbps on a 1000 kbit/s link");
    assert!(target >= 100.0, "but not below the absolute minimum: {target}");
    assert!(bitrate < 1100.0, "the encoder produced {bitrate} kbps on a 1000 kbit/s link");
}

#[test]
fn status_figures_parse() {
    let s = "viewers 1  fps  30.0  bitrate   2500 kbps  target   4000 kbps  encode 12.0 ms\rviewers 1  fps  29.0  bitrate    900 kbps  target    850 kbps";
    assert_eq!(last_kbps(s, "bitrate"), Some(900.0));
    assert_eq!(last_kbps(s, "target"), Some(850.0));
}
