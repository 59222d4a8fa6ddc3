//! The estimator reading real feedback: a trace recorded from headless
//! Chromium watching `peep share` over the app's shaped-link test (1 Mbit/s
//! `tc tbf` with a 16 kB burst and a 60 ms queue, loopback delays), with
//! `PEEP_FEEDBACK_TRACE` set. Each line is one packet as the send history
//! resolved it: `feedback_us departure_us arrival_us|- size_bytes rtp_seq`.
//!
//! The replay is open-loop (the trace's sending does not follow this
//! estimator's decisions), so it checks what the estimator concludes from
//! real transport-wide feedback — Chromium's arrival-time quantisation,
//! reordering, feedback intervals — rather than the control loop, which the
//! simulation and the shaped-link test cover.

use std::time::{Duration, Instant};

use peep_transport::bwe::{Bwe, BweConfig, Usage};
use rtc::interceptor::PacketReport;
use rtc::rtcp::transport_feedbacks::cc_feedback_report::Ecn;

struct Line {
    feedback_us: u64,
    departure_us: u64,
    arrival_us: Option<u64>,
    size: usize,
    seq: u16,
}

fn parse(text: &str) -> Vec<Line> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            assert_eq!(f.len(), 5, "malformed trace line {l:?}");
            Line {
                feedback_us: f[0].parse().expect("feedback time"),
                departure_us: f[1].parse().expect("departure time"),
                arrival_us: (f[2] != "-").then(|| f[2].parse().expect("arrival time")),
                size: f[3].parse().expect("size"),
                seq: f[4].parse().expect("sequence number"),
            }
        })
        .collect()
}

#[test]
fn a_recorded_chromium_trace_on_a_1_mbit_link_reads_as_1_mbit() {
    let lines = parse(include_str!("data/chromium_1mbit_tbf.trace"));
    assert!(lines.len() > 500, "{} packets", lines.len());
    let t0 = Instant::now();
    let at = |us: u64| t0 + Duration::from_micros(us);
    let mut bwe = Bwe::new(BweConfig { start_bps: 1e6, min_bps: 1e5, max_bps: 9e6 });
    let (mut overuse, mut lowest_after_3s, mut highest_after_3s) = (0, f64::MAX, 0.0f64);
    let mut id = 0;
    let mut i = 0;
    while i < lines.len() {
        let fb = lines[i].feedback_us;
        let batch: Vec<PacketReport> = lines[i..]
            .iter()
            .take_while(|l| l.feedback_us == fb)
            .map(|l| {
                id += 1;
                PacketReport {
                    ssrc: 1,
                    id,
                    rtp_sequence_number: l.seq,
                    is_twcc: true,
                    twcc_sequence_number: id as u16,
                    size: l.size,
                    arrived: l.arrival_us.is_some(),
                    departure: at(l.departure_us),
                    arrival: l.arrival_us.map(|a| Duration::from_secs(1000) + Duration::from_micros(a)),
                    ecn: Ecn::NotEct,
                }
            })
            .collect();
        i += batch.len();
        for r in &batch {
            bwe.on_packet_sent(r.departure);
        }
        bwe.on_feedback(at(fb), &batch, |_| false);
        bwe.handle_timeout(at(fb));
        if bwe.stats().usage == Usage::Overusing {
            overuse += 1;
        }
        if fb > 3_000_000 {
            lowest_after_3s = lowest_after_3s.min(bwe.target_bps());
            highest_after_3s = highest_after_3s.max(bwe.target_bps());
        }
    }
    let stats = bwe.stats();
    let acked = stats.acked_bps.expect("an acknowledged rate");
    println!(
        "replayed {} packets: estimate {:.0} kbps (range after 3 s {:.0}–{:.0}), acked {:.0} kbps, {} over-use verdicts, rtt {:?}",
        lines.len(),
        stats.target_bps / 1e3,
        lowest_after_3s / 1e3,
        highest_after_3s / 1e3,
        acked / 1e3,
        overuse,
        stats.rtt
    );
    // The path delivered about its shaped rate. Over busy periods a token
    // bucket reads high (its 16 kB burst passes at line rate): this trace
    // reads ≈ 15 % above 1 Mbit/s, which is why probe results are capped at
    // 1.25 × this figure and cuts use the latest sample when it is lower.
    assert!((0.6e6..=1.3e6).contains(&acked), "acknowledged rate {acked:.0}");
    // Over-use was seen when the sender overran the shaper…
    assert!(overuse > 0, "no over-use verdict on a trace that overran a 1 Mbit/s shaper");
    // …and the estimate stays in the link's neighbourhood.
    assert!(lowest_after_3s >= 0.3e6, "estimate fell to {lowest_after_3s:.0}");
    assert!(highest_after_3s <= 2.0e6, "estimate rose to {highest_after_3s:.0}");
}

#[test]
fn a_malformed_trace_line_is_reported() {
    let r = std::panic::catch_unwind(|| parse("1 2 3"));
    assert!(r.is_err());
}
