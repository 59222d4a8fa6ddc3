//! First frame over the internet (numbers, not pass/fail), in the test
//! internet of `tests/common/internet.rs` (two homes behind cone NATs,
//! coturn and `peep relay` on the public side, `peep share --relay` in the
//! sharer's home):
//!
//! * what relaying the WHEP POST costs: a browser on the sharer's own LAN
//!   (in its router's namespace) opens the share's LAN link (POST straight
//!   to the sharer) and the relay's link (POST through the relay and the
//!   sharer's WebSocket); media takes the same LAN path in both;
//! * what TURN costs: a browser in the other home opens the relay's link
//!   (media peer to peer through both NATs) and the same with `?ice=relay`
//!   (media through coturn).
//!
//! For each, a fresh tab: the WHEP POST's round trip and the time from
//! sending the offer to the first frame on screen, over RUNS tabs each,
//! interleaved. Needs root, iptables, procps, coturn, chromium.
//!
//!     cargo bench -p peep --bench relay [-- RUNS]

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::Duration;

use common::browser::Browser;
use common::internet::{Internet, PUBLIC_IP, Proc, coturn, require_root};

const SECRET: &str = "peep-bench-turn-secret";

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn p90(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * 0.9).round() as usize]
}

fn main() {
    let runs: usize = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(10);
    require_root();
    let internet = Internet::build();
    let _coturn = coturn(&internet.inet, SECRET);
    let mut relay = {
        let mut c = internet.inet.command(env!("CARGO_BIN_EXE_peep"));
        c.args(["relay", "--bind", PUBLIC_IP, "--port", "8443"])
            .args(["--stun-url", &format!("stun:{PUBLIC_IP}:3478")])
            .args(["--turn-url", &format!("turn:{PUBLIC_IP}:3478?transport=udp"), "--turn-secret", SECRET]);
        Proc::spawn("peep relay", c)
    };
    relay.wait_for("Relay: ", Duration::from_secs(20));
    let mut sharer = {
        let mut c = internet.sharer.host.command(env!("CARGO_BIN_EXE_peep"));
        c.args(["share", "--source", "synthetic:typing", "--size", "1280x720", "--fps", "30", "--port", "8080"])
            .args(["--relay", &format!("http://{PUBLIC_IP}:8443")]);
        Proc::spawn("peep share", c)
    };
    let out = sharer.wait_for("LAN: ", Duration::from_secs(30));
    let field = |name: &str| out.lines().find_map(|l| l.strip_prefix(name)).expect("printed").trim().to_owned();
    let (relay_link, lan_link) = (field("Link: "), field("LAN: "));
    // A neighbour on the sharer's LAN (its router's namespace), and a
    // viewer in the other home.
    let mut neighbour = Browser::launch_in(&internet.sharer.router.name, &[]);
    let mut far = Browser::launch_in(&internet.viewer.host.name, &[]);
    let modes: [(&str, bool, String); 4] = [
        ("LAN link", true, lan_link.clone()),
        ("LAN, relayed POST", true, relay_link.clone()),
        ("internet, direct", false, relay_link.clone()),
        ("internet, TURN", false, format!("{relay_link}?ice=relay")),
    ];
    let mut post = vec![Vec::new(); modes.len()];
    let mut first = vec![Vec::new(); modes.len()];
    let mut paths = vec![String::new(); modes.len()];
    for run in 0..runs {
        for (i, (name, near, url)) in modes.iter().enumerate() {
            let browser = if *near { &mut neighbour } else { &mut far };
            let page = browser.open(url);
            browser.wait_for(&page, "window.peep && peep.stats().firstFrameMs !== null", Duration::from_secs(40));
            browser.wait_for(&page, "peep.stats().path", Duration::from_secs(10));
            let s = browser.stats(&page);
            let (offer, frame) = (s["offerSentMs"].as_f64().unwrap_or(0.0), s["firstFrameMs"].as_f64().unwrap_or(0.0));
            post[i].push(s["lastPostMs"].as_f64().unwrap_or(0.0));
            first[i].push(frame - offer);
            paths[i] = s["path"].as_str().unwrap_or_default().to_owned();
            if run == 0 {
                eprintln!("{name}: path {}", paths[i]);
            }
            browser.close(&page);
        }
    }
    println!(
        "first frame over the test internet (cone NATs, 1280x720 typing at 30 fps), {runs} tabs per mode, median / p90:"
    );
    for (i, (name, _, _)) in modes.iter().enumerate() {
        println!(
            "  {name:<18} path {:<6} WHEP POST {:>6.1} / {:>6.1} ms   offer sent → first frame {:>6.1} / {:>6.1} ms",
            paths[i],
            median(&mut post[i]),
            p90(&mut post[i]),
            median(&mut first[i]),
            p90(&mut first[i]),
        );
    }
    let (lan, relayed) = (median(&mut first[0]), median(&mut first[1]));
    let (direct, turn) = (median(&mut first[2]), median(&mut first[3]));
    println!(
        "  relaying the WHEP POST adds {:+.1} ms to the first frame (median); first frame through TURN / direct = {:.2}×",
        relayed - lan,
        turn / direct
    );
}
