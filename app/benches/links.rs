//! Issue 9's link scenarios at full length, Peep and Chrome's own
//! screen-share sender (libwebrtc, getDisplayMedia of the same Xvfb screen)
//! side by side on the same emulated link and the same receiver (headless
//! Chromium). Prints every run's figures and the bounds, then one
//! table. Needs root (network namespaces), iproute2, ethtool, xvfb, chromium.
//!
//!     cargo bench -p peep --bench links
//!     cargo bench -p peep --bench links -- --short            # the tests' short versions
//!     cargo bench -p peep --bench links -- --only T1,T4 --sender peep --size 1280x720
//!
//! Scenarios (common/scenario.rs): T1 start (1 Mbit/s, 50 ms RTT, 30 s),
//! T2 steps (1 → 2.5 → 0.6 → 1 Mbit/s at 0/40/60/80 s, 100 s), T3 loss
//! (2 Mbit/s, 100 ms RTT, 5 % loss, 60 s), T4 outage (2 Mbit/s, 50 ms RTT,
//! 2 s of 100 % loss at 20 s, 40 s), T5 static then burst (1 Mbit/s, 60 s
//! static then a full-screen change, 70 s); all with a 300 ms bottleneck
//! queue. "LAN" (no bottleneck, 10 ms RTT) is the reference.

#[path = "../tests/common/mod.rs"]
mod common;

use common::scenario::{Length, Run, Scenario, Sender, checks, describe, run};

fn arg_value(args: &[String], name: &str) -> Option<String> {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let len = if args.iter().any(|a| a == "--short") { Length::Short } else { Length::Full };
    let size = arg_value(&args, "--size")
        .and_then(|s| s.split_once('x').and_then(|(w, h)| Some((w.parse().ok()?, h.parse().ok()?))))
        .unwrap_or((1920, 1080));
    let only: Option<Vec<String>> = arg_value(&args, "--only").map(|s| s.split(',').map(str::to_owned).collect());
    let senders: Vec<Sender> = match arg_value(&args, "--sender").as_deref() {
        Some("peep") => vec![Sender::Peep],
        Some("chrome") => vec![Sender::Chrome],
        _ => vec![Sender::Peep, Sender::Chrome],
    };
    let all = [
        Scenario::lan(size),
        Scenario::t1(len, size),
        Scenario::t2(len, size),
        Scenario::t3(len, size),
        Scenario::t4(len, size),
        Scenario::t5(len, size),
    ];
    let chosen: Vec<&Scenario> = all
        .iter()
        .filter(|s| only.as_ref().is_none_or(|o| o.iter().any(|n| s.name.split(' ').next() == Some(n.as_str()))))
        .collect();
    println!(
        "== link scenarios: {}x{}, {:?} length, senders {:?} (figures are from one run on this machine) ==",
        size.0,
        size.1,
        len,
        senders.iter().map(|s| s.name()).collect::<Vec<_>>()
    );
    let mut runs: Vec<Run> = Vec::new();
    for s in chosen {
        for &sender in &senders {
            let r = run(s, sender);
            println!("{}", describe(&r));
            runs.push(r);
        }
    }
    println!();
    println!(
        "| scenario | sender | fps | new pictures/s | freezes (s frozen) | longest gap ms | g2g p50 ms | g2g p95 ms | delivered kbps | resolution | estimate kbps | jitter buf ms | NACK | PLI | bounds met |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for r in &runs {
        let s = r.summary();
        let c = checks(r);
        println!(
            "| {} | {} | {:.1} | {:.1} | {:.0} ({:.1}) | {:.0} | {:.0} | {:.0} | {:.0} | {}x{} | {:.0} | {:.0} | {:.0} | {:.0} | {}/{} |",
            r.scenario.name,
            r.sender.name(),
            s.fps,
            s.shown_fps,
            s.freezes,
            s.freezes_s,
            s.longest_gap_ms,
            s.g2g_p50_ms,
            s.g2g_p95_ms,
            s.kbps,
            s.resolution.0,
            s.resolution.1,
            s.estimate_kbps,
            s.jitter_ms,
            s.nacks,
            s.plis,
            c.iter().filter(|c| c.ok).count(),
            c.len(),
        );
    }
}
