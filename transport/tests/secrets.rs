//! Secrets (the link token, the password) never reach logs, `Debug`
//! output or the metrics listener (`/metrics`, `/stats`), even with every
//! crate logging at `trace` while requests that carry them are served. Its own test binary: it installs the global
//! log subscriber.

mod common;

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::time::Duration;

use common::Captured;
use peep_transport::{Secret, Share, ShareConfig};

const PASSWORD: &str = "correct-horse-battery-staple";

fn request(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> u16 {
    request_text(addr, method, path, headers, body).0
}

fn request_text(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> (u16, String) {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    let mut head =
        format!("{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).expect("write head");
    s.write_all(body).expect("write body");
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).into_owned();
    (text.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0), text)
}

/// A real Chromium offer (the fuzz target's seed).
fn chromium_offer() -> Vec<u8> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../fuzz/seeds/offer");
    let entry = std::fs::read_dir(dir).expect("fuzz/seeds/offer").flatten().next().expect("a seed offer");
    std::fs::read(entry.path()).expect("read seed")
}

#[test]
fn secrets_stay_out_of_trace_logs_and_debug_output() {
    let captured = Captured::default();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("trace"))
        .with_writer(captured.clone())
        .with_ansi(false)
        .init();

    let config = ShareConfig {
        bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
        port: 0,
        password: Some(Secret::from(PASSWORD)),
        ..ShareConfig::default()
    };
    let config_debug = format!("{config:?}");
    let share = Share::start(config).expect("share");
    let link = share.link().to_owned();
    let token = link.rsplit('/').next().expect("token").to_owned();
    assert_eq!(token.len(), 32, "a 128-bit token in hex: {}", token.len());
    let path = &link[link.find("/s/").expect("path")..];
    let addr = share.local_addr();

    // The page, a wrong password, the right one (a real viewer's offer,
    // answered with a real peer connection), and a goodbye.
    assert_eq!(request(addr, "GET", path, &[], b""), 200);
    let offer = chromium_offer();
    let sdp = [("Content-Type", "application/sdp")];
    let wrong = format!("Bearer not-{PASSWORD}");
    let right = format!("Bearer {PASSWORD}");
    assert_eq!(request(addr, "POST", &format!("{path}/whep"), &[sdp[0], ("Authorization", &wrong)], &offer), 401);
    assert_eq!(request(addr, "POST", &format!("{path}/whep"), &[sdp[0], ("Authorization", &right)], &offer), 201);
    let viewer = share.viewers().pop().expect("the viewer is registered");

    // The metrics listener's two endpoints, scraped while the viewer is
    // there (not vacuous: they count the wrong password and the viewer).
    let registry = prometheus::Registry::new();
    registry.register(Box::new(share.metrics())).expect("register");
    let json = share.metrics();
    let metrics = peep_transport::metrics::MetricsServer::start(
        SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0),
        registry,
        Box::new(move || json.stats_json()),
    )
    .expect("metrics listener");
    let (status, scraped) = request_text(metrics.local_addr(), "GET", "/metrics", &[], b"");
    assert_eq!(status, 200, "{scraped}");
    for line in ["peep_passwords_wrong_total 1", "peep_viewers_joined_total 1"] {
        assert!(scraped.lines().any(|l| l == line), "{line:?} in\n{scraped}");
    }
    let (status, stats) = request_text(metrics.local_addr(), "GET", "/stats", &[], b"");
    assert_eq!(status, 200, "{stats}");
    assert!(stats.contains("\"viewers\":[{"), "a viewer in /stats: {stats}");
    assert!(!stats.contains(&viewer.id), "no session id in /stats: {stats}");
    drop(metrics);

    assert_eq!(request(addr, "DELETE", &format!("{path}/whep/{}", viewer.id), &[], b""), 200);

    let debug = [config_debug, format!("{share:?}"), format!("{viewer:?}"), format!("{:?}", share.stats())];
    drop(share);
    let logs = String::from_utf8_lossy(&captured.0.lock().unwrap_or_else(|e| e.into_inner())).into_owned();
    // Not vacuous: the viewer's peer connection was logged down to trace level.
    let lines = logs.lines().count();
    assert!(
        lines >= 10 && logs.contains(" TRACE ") && logs.contains("have-remote-offer"),
        "expected a trace-level log of the requests, got {lines} lines:\n{logs}"
    );
    let outputs = [("logs", &logs), ("metrics", &scraped), ("/stats", &stats)];
    for (what, text) in outputs.into_iter().chain(debug.iter().map(|d| ("Debug output", d))) {
        for (name, secret) in [("password", PASSWORD), ("link token", token.as_str())] {
            if let Some(at) = text.find(secret) {
                let around = &text[at.saturating_sub(200)..(at + secret.len() + 100).min(text.len())];
                panic!("the {name} appears in the {what}: …{around}…");
            }
        }
    }
}
