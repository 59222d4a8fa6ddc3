//! Publishing with WHIP to a real SFU: Janus 1.1.2 (VideoRoom, H.264) behind
//! Meetecho's simple-whip-server, in a network namespace; subscribers are
//! headless Chromium on Janus' own JavaScript API, reading the synthetic
//! source's counter marks from the video they decode.
//!
//! One SFU serves the whole binary (`common::janus::sfu`); the tests take
//! turns on it.

mod common;

use std::net::IpAddr;
use std::process::{Child, Stdio};
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use common::browser::{Browser, Page};
use common::janus::{CAPPED_BPS, Sfu, sfu};
use peep::pipeline::PipelineConfig;
use peep::session::Session;
use peep_capture::backend::synthetic::SyntheticBackend;
use peep_capture::synthetic::Scene;
use peep_encode::{OpenH264Config, OpenH264Encoder};
use peep_transport::{BitrateRange, PublishSnapshot, PublishState, ShareConfig, WhipConfig};
use serde_json::Value;

const PLAYING: &str = "window.sub && sub.state === 'playing'";

/// A share of the synthetic source bound to the test side of the SFU's link.
fn session(sfu: &Sfu) -> Session {
    let source = SyntheticBackend::new(640, 360, Scene::Typing).expect("source");
    let encoder =
        OpenH264Encoder::new(OpenH264Config { bitrate_bps: 1_500_000, fps: 30.0, ..OpenH264Config::default() })
            .expect("encoder");
    let bind: IpAddr = sfu.host_ip().parse().expect("address");
    let config =
        ShareConfig { bind, port: 0, bitrate: BitrateRange::new(300_000, 1_500_000), ..ShareConfig::default() };
    Session::start(Box::new(source), Box::new(encoder), PipelineConfig::default(), config).expect("session")
}

fn publish(s: &Session, url: &str, token: Option<&str>) {
    s.share().start_publish(WhipConfig { url: url.into(), token: token.map(Into::into) }).expect("start publish");
}

fn status(s: &Session) -> PublishSnapshot {
    s.share().publish_status().expect("a publish was started")
}

fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn wait_live(s: &Session, publishes: u64, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let p = status(s);
        if p.state == PublishState::Live && p.publishes >= publishes {
            return;
        }
        assert!(Instant::now() < deadline, "publish #{publishes} not live in {timeout:?}: {p:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Reads marks from the playing video for `duration`; returns the counters seen.
fn read_marks(b: &mut Browser, page: &Page, duration: Duration) -> Vec<u64> {
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

/// The marks advance: at least `min` readings, never backwards, and changing.
fn assert_advancing(counters: &[u64], what: &str) {
    assert!(counters.len() >= 10, "{what}: marks read: {counters:?}");
    assert!(counters.windows(2).all(|w| w[0] <= w[1]), "{what}: counters never go back: {counters:?}");
    let changes = counters.windows(2).filter(|w| w[0] < w[1]).count();
    assert!(changes >= 5, "{what}: the picture changes: {counters:?}");
}

fn subscribe(b: &mut Browser, sfu: &Sfu, room: u32) -> Page {
    let page = b.open(&sfu.subscriber_page(room));
    let deadline = Instant::now() + Duration::from_secs(20);
    while b.eval(&page, PLAYING) != Value::Bool(true) {
        if Instant::now() > deadline {
            let state = b.eval(
                &page,
                "(async () => JSON.stringify({ state: sub.state, error: sub.error, stats: await sub.stats() }))()",
            );
            panic!("the Janus subscriber did not play within 20 s: {state}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    page
}

fn browser_in(sfu: &Sfu) -> Browser {
    Browser::launch_in(&sfu.ns.name, &["--disable-features=WebRtcHideLocalIpsWithMdns"])
}

#[test]
fn local_viewer_and_janus_subscriber_watch_at_once_and_a_new_subscribers_pli_yields_a_keyframe() {
    let sfu = sfu();
    let endpoint = sfu.endpoint_with(None, &[&format!("stun:{}:3478", sfu.sfu_ip())]);
    let s = session(&sfu);
    publish(&s, &endpoint.url, None);
    wait_live(&s, 1, Duration::from_secs(20));
    assert_eq!(sfu.publishers(endpoint.room).len(), 1, "Janus lists Peep as the room's publisher");
    let p = status(&s);
    assert_eq!(p.ice_servers, 1, "the STUN server from the 201's Link header was read: {p:?}");
    assert_eq!(p.server, sfu.whip_addr());

    // Long after the first keyframe: only a keyframe requested now lets a
    // new subscriber start decoding (the encoder makes none on its own).
    std::thread::sleep(Duration::from_millis(2500));
    let forced = s.share().stats().keyframes_forced.load(Relaxed);
    let requests = status(&s).keyframe_requests;
    let mut b = browser_in(&sfu);
    let sub = subscribe(&mut b, &sfu, endpoint.room);
    assert_advancing(&read_marks(&mut b, &sub, Duration::from_millis(1500)), "Janus subscriber");
    let p = status(&s);
    assert!(p.keyframe_requests > requests, "Janus asked for a keyframe for its new subscriber: {p:?}");
    assert!(s.share().stats().keyframes_forced.load(Relaxed) > forced, "and the encoder made one");
    let stats = b.eval(&sub, "sub.stats()");
    assert!(stats["keyFramesDecoded"].as_u64() >= Some(1), "{stats}");
    assert_eq!((stats["width"].as_u64(), stats["height"].as_u64()), (Some(640), Some(360)), "{stats}");

    // A local viewer on Peep's own link at the same time; both play.
    let local = b.open(s.share().link());
    b.wait_for(&local, "window.peep && peep.state() === 'live'", Duration::from_secs(20));
    assert_eq!(s.share().connected_viewers(), 1, "the publish is not counted as a viewer");
    assert_advancing(&read_marks(&mut b, &local, Duration::from_millis(1200)), "local viewer");
    assert_advancing(&read_marks(&mut b, &sub, Duration::from_millis(1200)), "Janus subscriber beside it");
    let p = status(&s);
    assert!(p.bytes_sent > 10_000 && p.frames_sent > 60 && p.rtt.is_some(), "{p:?}");
    assert_eq!((p.state, p.publishes), (PublishState::Live, 1), "{p:?}");
}

#[test]
fn janus_restarted_mid_share_peep_publishes_again_and_a_subscriber_plays() {
    let mut sfu = sfu();
    let endpoint = sfu.endpoint(Some("restart-token"));
    let s = session(&sfu);
    publish(&s, &endpoint.url, Some("restart-token"));
    wait_live(&s, 1, Duration::from_secs(20));
    let mut b = browser_in(&sfu);
    let sub = subscribe(&mut b, &sfu, endpoint.room);
    assert_advancing(&read_marks(&mut b, &sub, Duration::from_millis(1000)), "before the restart");
    b.close(&sub);

    sfu.restart_janus();
    wait_until("Peep to notice the lost server", Duration::from_secs(15), || status(&s).state != PublishState::Live);
    wait_live(&s, 2, Duration::from_secs(40));
    assert_eq!(sfu.publishers(endpoint.room).len(), 1, "Peep is the room's publisher again");
    let sub = subscribe(&mut b, &sfu, endpoint.room);
    assert_advancing(&read_marks(&mut b, &sub, Duration::from_millis(1500)), "after the restart");
}

#[test]
fn an_ice_restart_through_patch_keeps_the_session_and_the_picture() {
    let sfu = sfu();
    let endpoint = sfu.endpoint(None);
    let s = session(&sfu);
    publish(&s, &endpoint.url, None);
    wait_live(&s, 1, Duration::from_secs(20));
    let mut b = browser_in(&sfu);
    let sub = subscribe(&mut b, &sfu, endpoint.room);
    s.share().publish_restart_ice();
    wait_until("the ICE restart", Duration::from_secs(10), || status(&s).ice_restarts == 1);
    std::thread::sleep(Duration::from_millis(1500));
    let p = status(&s);
    assert_eq!((p.state, p.publishes), (PublishState::Live, 1), "the same WHIP session carries on: {p:?}");
    assert!(sfu.whip_log().contains(&format!("[{}] Performing ICE restart", endpoint.id)), "the server restarted ICE");
    let sent = p.frames_sent;
    assert_advancing(&read_marks(&mut b, &sub, Duration::from_millis(1500)), "after the ICE restart");
    assert!(status(&s).frames_sent > sent + 20, "frames keep flowing");
}

#[test]
fn the_rooms_bitrate_cap_reaches_peep_as_remb_and_holds_the_encoder_under_it() {
    let sfu = sfu();
    let endpoint = sfu.capped_endpoint();
    let s = session(&sfu);
    publish(&s, &endpoint.url, None);
    wait_live(&s, 1, Duration::from_secs(20));
    // Without the cap, the estimate for the server starts at 1.5 Mbps and climbs.
    let target = || s.share().stats().target_bps.load(Relaxed);
    wait_until("Janus' REMB", Duration::from_secs(10), || status(&s).remb_bps > 0);
    assert_eq!(status(&s).remb_bps, u64::from(CAPPED_BPS), "the room's bitrate, as Janus sends it");
    wait_until("the encoder target to drop under the cap", Duration::from_secs(5), || {
        target() <= u64::from(CAPPED_BPS)
    });
    assert!(status(&s).estimate_bps <= u64::from(CAPPED_BPS), "{:?}", status(&s));
}

/// `peep share --whip …` in the test's namespace, stdout and stderr piped.
fn peep_share(sfu: &Sfu, whip_args: &[&str]) -> Child {
    peep_share_with(sfu, whip_args, None)
}

/// [`peep_share`], trusting only the certificates in `ca` (if given).
fn peep_share_with(sfu: &Sfu, whip_args: &[&str], ca: Option<&std::path::Path>) -> Child {
    let mut command = common::peep();
    if let Some(ca) = ca {
        command.env("SSL_CERT_FILE", ca);
    }
    command
        .args(["share", "--source", "synthetic:typing", "--size", "640x360", "--port", "0", "--bind", sfu.host_ip()])
        .args(whip_args)
        // Everything Peep logs, to check that no secret is among it.
        .env("PEEP_LOG", "peep=trace,peep_transport=trace,debug")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run peep")
}

/// Collects a child's stream on a thread (so the pipe never fills).
fn collect(stream: impl std::io::Read + Send + 'static) -> std::sync::mpsc::Receiver<String> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut stream = stream;
        let mut buf = [0u8; 4096];
        while let Ok(n @ 1..) = stream.read(&mut buf) {
            let _ = tx.send(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    });
    rx
}

fn wait_exit(child: &mut Child, timeout: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("peep did not exit within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn cli_wrong_token_is_a_clear_error_and_the_token_is_never_printed() {
    let sfu = sfu();
    let endpoint = sfu.endpoint(Some("right-token-1"));
    let mut child = peep_share(&sfu, &["--whip", &endpoint.url, "--whip-token", "wrong-token-2"]);
    let (out, err) = (collect(child.stdout.take().expect("stdout")), collect(child.stderr.take().expect("stderr")));
    let status = wait_exit(&mut child, Duration::from_secs(20));
    let (out, err): (String, String) = (out.try_iter().collect(), err.try_iter().collect());
    assert!(!status.success(), "a refused publish fails the command: {err}");
    assert!(
        err.contains("WHIP publish to") && err.contains("HTTP 403") && err.contains("check the token"),
        "the error says what happened and what to do: {err}"
    );
    for secret in ["wrong-token-2", "right-token-1", &endpoint.id] {
        assert!(!out.contains(secret) && !err.contains(secret), "{secret} printed: {out}\n{err}");
    }
    assert!(!sfu.endpoint_enabled(&endpoint), "nothing was published");
}

#[test]
fn cli_an_untrusted_https_certificate_is_a_clear_error() {
    let sfu = sfu();
    let endpoint = sfu.endpoint(None);
    // The system's CAs do not include the test CA.
    let mut child = peep_share(&sfu, &["--whip", &sfu.https_url(&endpoint)]);
    let err = collect(child.stderr.take().expect("stderr"));
    let status = wait_exit(&mut child, Duration::from_secs(20));
    let err: String = err.try_iter().collect();
    assert!(!status.success(), "{err}");
    assert!(err.contains("TLS with the WHIP server at") && err.contains("SSL_CERT_FILE"), "{err}");
}

#[test]
fn cli_publishes_over_https_through_a_redirect_until_ctrl_c_then_deletes_the_whip_resource() {
    let sfu = sfu();
    let endpoint = sfu.endpoint(Some("cli-token"));
    let redirects = sfu.tls_proxy_log().matches("307 POST").count();
    let url = sfu.redirecting_https_url(&endpoint);
    let mut child = peep_share_with(&sfu, &["--whip", &url, "--whip-token", "cli-token"], Some(&sfu.tls_ca()));
    let (out, err) = (collect(child.stdout.take().expect("stdout")), collect(child.stderr.take().expect("stderr")));
    let mut seen = String::new();
    wait_until("the status line to say the publish is live", Duration::from_secs(25), || {
        seen.extend(err.try_iter());
        seen.contains("whip live")
    });
    assert!(sfu.endpoint_enabled(&endpoint) && sfu.publishers(endpoint.room).len() == 1, "Janus has the publisher");
    assert_eq!(sfu.tls_proxy_log().matches("307 POST").count(), redirects + 1, "the offer went through the 307");
    let stdout: String = out.try_iter().collect();
    assert!(stdout.contains(&format!("Publishing (WHIP) to {}:7443", sfu.sfu_ip())), "{stdout}");
    for secret in [endpoint.id.as_str(), "cli-token"] {
        assert!(!stdout.contains(secret) && !seen.contains(secret), "{secret} printed or logged: {stdout}\n{seen}");
    }

    // Ctrl-C: the share ends and DELETEs the resource.
    // SAFETY: plain kill(2) on our own child's pid.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGINT);
    }
    let status = wait_exit(&mut child, Duration::from_secs(10));
    assert!(status.success(), "{}", err.try_iter().collect::<String>());
    let log = sfu.whip_log();
    assert!(
        log.contains(&format!("[{}] Terminating WHIP session", endpoint.id)),
        "the server received the DELETE: {log}"
    );
    assert!(!sfu.endpoint_enabled(&endpoint), "the endpoint is free again");
    wait_until("Janus' room to have no publisher", Duration::from_secs(2), || sfu.publishers(endpoint.room).is_empty());
}
