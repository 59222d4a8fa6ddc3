//! Clock jumps in the sans-IO cores, where time is an input: the process
//! paused for an hour (a suspended VM, SIGSTOP — the monotonic clock jumps
//! forward under it), and a `now` older than one seen before (instants
//! read on different threads reach a core out of order). Nothing panics,
//! nothing locks up for the length of the jump, nothing bursts, and no
//! limit is lifted by going back in time.
//!
//! (The RTCP tap's wall-clock RTT is covered next to it:
//! `interceptors::tests::rtt_comes_from_the_report_and_ignores_clock_jumps`;
//! the rtcp fuzz target jumps the wall clock at random.)

use std::net::IpAddr;
use std::time::{Duration, Instant};

use peep_encode::budget::{FrameDropper, Skip};
use peep_transport::auth::{MAX_BACKOFF, Throttle};
use peep_transport::bwe::BweConfig;
use peep_transport::keyframe::{KeyframeCoalescer, KeyframeReason};
use peep_transport::pacer::{BURST, PACING_FACTOR, Paced, Release};
use peep_transport::rate::{ABSOLUTE_MIN_BPS, BitrateRange, MIN_UPDATE_INTERVAL, RateController};
use peep_transport::sender::SendController;
use rtc::interceptor::PacketReport;
use rtc::rtcp::transport_feedbacks::cc_feedback_report::Ecn;

const HOUR: Duration = Duration::from_secs(3600);

/// A base instant with room before it (an `Instant` cannot go below boot).
fn base() -> Instant {
    Instant::now() + 2 * HOUR
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[test]
fn keyframe_coalescer() {
    let t0 = base();
    let mut k = KeyframeCoalescer::default();
    k.request(KeyframeReason::Pli);
    assert!(k.poll(t0));
    k.request(KeyframeReason::Pli);
    assert!(!k.poll(t0 + ms(100)), "coalesced");
    // An hour later: served at once, not an hour late or early.
    let later = t0 + HOUR;
    assert!(k.poll(later));
    // An older `now`: held back (not a second keyframe within the interval)…
    k.request(KeyframeReason::Fir);
    assert!(!k.poll(t0 + ms(700)));
    assert!(!k.poll(later + ms(100)));
    // …and served once the interval has passed after the last one.
    assert!(k.poll(later + k.min_interval()));
    assert_eq!(k.forced(), 3);
}

#[test]
fn wrong_password_throttle() {
    let t0 = base();
    let ip: IpAddr = "192.0.2.7".parse().expect("ip");
    let mut t = Throttle::default();
    for _ in 0..10 {
        t.failure(ip, t0);
    }
    let wait = t.check(ip, t0).expect_err("blocked");
    assert!(wait > Duration::ZERO && wait <= MAX_BACKOFF);
    // Back in time: still blocked, and never told to wait longer than the longest back-off.
    let early = t.check(ip, t0 - HOUR).expect_err("going back in time lifts nothing");
    assert!(early <= MAX_BACKOFF, "Retry-After {early:?} from an older clock");
    // An hour forward: free again; a failure then starts where it left off, bounded.
    assert!(t.check(ip, t0 + HOUR).is_ok());
    t.failure(ip, t0 + HOUR);
    assert!(t.check(ip, t0 + HOUR).expect_err("blocked again") <= MAX_BACKOFF);
}

#[test]
fn encoder_rate_controller() {
    let t0 = base();
    let range = BitrateRange::new(500_000, 4_000_000);
    let mut r = RateController::new(range);
    let first = r.update([3e6], t0).expect("a first change");
    // An older `now` does not open the minimum interval between changes.
    assert_eq!(r.update([10e6], t0 - HOUR), None);
    assert_eq!(r.update([10e6], t0 + MIN_UPDATE_INTERVAL / 2), None);
    // After an hour's pause: one step (at most 1.5×), inside the range.
    let next = r.update([10e6], t0 + HOUR).expect("a change");
    assert!(next > first && f64::from(next) <= f64::from(first) * 1.5 + 1.0 && next <= range.ceiling_bps);
    // A collapse after the jump is followed at once: a lone viewer below the
    // floor gets the absolute minimum (the documented policy).
    assert_eq!(r.update([1e3], t0 + HOUR + MIN_UPDATE_INTERVAL), Some(ABSOLUTE_MIN_BPS));
}

#[test]
fn encoder_frame_dropper() {
    let t0 = base();
    let mut d = FrameDropper::new(1_000_000);
    // A 300 ms overshoot fills the bucket: frames are skipped.
    d.on_encoded(t0, 80_000);
    assert_eq!(d.decide(t0 + ms(1), Duration::ZERO, false), Some(Skip::Budget));
    // An older `now` neither empties nor overflows it.
    assert_eq!(d.decide(t0 - HOUR, Duration::ZERO, false), Some(Skip::Budget));
    assert!(d.level() <= Duration::from_secs(1));
    // An hour later it has drained: encode.
    assert_eq!(d.decide(t0 + HOUR, Duration::ZERO, false), None);
    assert_eq!(d.level(), Duration::ZERO);
}

#[derive(Debug, Clone)]
struct Pkt {
    end: bool,
    key: bool,
}

impl Paced for Pkt {
    fn size(&self) -> usize {
        1200
    }
    fn frame_end(&self) -> bool {
        self.end
    }
    fn keyframe_start(&self) -> bool {
        self.key
    }
}

fn frame(tx: &mut SendController<Pkt>, now: Instant, packets: usize, key: bool) {
    for i in 0..packets {
        tx.enqueue(now, Pkt { end: i + 1 == packets, key: key && i == 0 });
    }
}

fn drain(tx: &mut SendController<Pkt>, now: Instant) -> usize {
    tx.handle_timeout(now);
    std::iter::from_fn(|| tx.poll_release(now)).filter(|r| matches!(r, Release::Media { .. })).count()
}

/// The pacer never turns a jump into a burst: its budget holds at most
/// [`BURST`] of the rate it runs at, so an hour's pause releases what 10 ms
/// would (plus one packet) even at the fastest rate it may use (a probe
/// cluster, at most the configured maximum — the start-up probes run at
/// 3× and 6× the start estimate); and an older `now` releases nothing new.
#[test]
fn send_side_paces_across_jumps() {
    let t0 = base();
    let config = BweConfig { start_bps: 1e6, min_bps: 1e5, max_bps: 6e6 };
    let mut tx: SendController<Pkt> = SendController::new(config);
    tx.start_sequence_at(1000);
    frame(&mut tx, t0, 100, true);
    let at_start = drain(&mut tx, t0);
    assert!(at_start < 100, "paced from the start: {at_start}");
    // Going back in time releases nothing and breaks nothing.
    assert_eq!(drain(&mut tx, t0 - HOUR), 0);
    // An hour later: a burst's worth at most (1.1 × 6 Mbit/s × 10 ms ≈ 8.3 kB ≈ 7 packets), not the queue.
    let fastest = config.max_bps.max(3.0 * config.start_bps) * PACING_FACTOR;
    let burst_packets = (fastest * BURST.as_secs_f64() / 8.0 / 1200.0).ceil() as usize + 1;
    let after_jump = drain(&mut tx, t0 + HOUR);
    assert!(after_jump <= burst_packets, "{after_jump} packets at once after the jump (≤ {burst_packets})");
    let target = tx.target_bps();
    assert!(target.is_finite() && (config.min_bps..=config.max_bps).contains(&target), "{target}");
    // Time flows again and the viewer's feedback comes back (every packet
    // arrived 20 ms after it left): the outage ends and the queue drains.
    let mut id = 0u64;
    let mut sent = at_start + after_jump;
    for i in 1..=400u64 {
        let now = t0 + HOUR + ms(5 * i);
        tx.handle_timeout(now);
        let mut reports = Vec::new();
        while let Some(release) = tx.poll_release(now) {
            let (seq, size) = match release {
                Release::Media { seq, .. } => {
                    sent += 1;
                    (seq, 1200)
                }
                Release::Retransmission { seq, .. } => (seq, 1200),
                Release::Padding { seq, size, .. } | Release::TailProbe { seq, size } => (seq, size),
            };
            reports.push(acked(id, seq, size, now, now - t0 + ms(20)));
            id += 1;
        }
        tx.on_feedback(now, &reports);
    }
    assert!(!tx.stats().in_outage, "feedback ends the outage");
    assert_eq!(sent, 100, "every queued packet left");
    assert_eq!(tx.queue_delay(), Duration::ZERO);
}

fn acked(id: u64, seq: u16, size: usize, departure: Instant, arrival: Duration) -> PacketReport {
    PacketReport {
        ssrc: 1,
        id,
        rtp_sequence_number: seq,
        is_twcc: true,
        twcc_sequence_number: id as u16,
        size,
        arrived: true,
        departure,
        arrival: Some(arrival),
        ecn: Ecn::NotEct,
    }
}
