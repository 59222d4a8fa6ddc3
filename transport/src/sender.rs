//! One viewer's send side as one sans-IO object: the bandwidth estimator
//! ([`crate::bwe`]) and the sender queue ([`crate::pacer`]) wired together.
//!
//! * feedback → estimator → the pacer's rate;
//! * the estimator's probe clusters → the pacer, which reports back every
//!   packet it sends during one and when the cluster is complete;
//! * the pacer's application-limited verdict → the estimator (no increases
//!   while application-limited, periodic probes instead);
//! * NACKs → the pacer, with the estimator's round-trip time;
//! * measured loss → the loss-recovery mode (below).
//!
//! **Loss recovery.** A lost packet costs the viewer a round trip: its
//! frame waits for the retransmission. Chromium, told a minimum playout
//! delay of 0 (what Peep asks for, to keep latency low), renders every
//! frame the moment it is decoded (its low-latency renderer) — so on a lossy
//! link each retransmission is a visible stall, and one that takes longer
//! than ≈ 150 ms beyond the frame interval counts as a freeze. From
//! [`RECOVERY_LOSS`] of measured loss until [`RECOVERY_HOLD`] after the last
//! such loss window, the send side therefore
//! * asks for a minimum playout delay of the path's round trip plus
//!   [`RECOVERY_MARGIN`] ([`SendController::playout_delay`]): Chromium then
//!   buffers that long, and a retransmission arrives before its frame is due;
//! * follows each frame with a tail probe (see `crate::pacer`), so a lost
//!   last packet is NACKed at once, not a frame interval later;
//! * (from [`REDUNDANT_RTX_LOSS`]) sends retransmissions twice;
//! * answers a repeated NACK half a round trip after the last copy went out
//!   instead of a whole one. Chromium repeats a NACK after its own round-trip
//!   estimate — 100 ms by default, as a receive-only peer measures none —
//!   so on a 100 ms path the request that follows a lost retransmission
//!   arrives just under a round trip after it left; ignoring it (the rule
//!   on a clean link, where such a request is almost always stale) cost a
//!   third round trip on the emulated link, a freeze each time. A stale
//!   request answered costs one duplicate packet.
//!
//! On a clean link the minimum stays 0: the lowest latency.
//!
//! The `rtc` interceptors in `crate::interceptors` drive one of these per
//! peer connection; the link simulation in the tests drives it directly.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use rtc::interceptor::PacketReport;

use crate::bwe::{Bwe, BweConfig, BweStats};
use crate::pacer::{Paced, Pacer, PacerStats, REDUNDANT_RTX_LOSS, REDUNDANT_RTX_LOSS_OFF, Release};

/// A queue taking longer than this to drain is stale: the link got much
/// slower than what was queued for it. A keyframe (which supersedes the
/// queued frames in the pacer) is shorter than the backlog and the viewer is
/// frozen anyway.
pub const STALE_QUEUE: Duration = Duration::from_millis(600);
/// At most one stale-queue keyframe request per this long.
pub const STALE_QUEUE_INTERVAL: Duration = Duration::from_secs(2);
/// …and only when the queue holds more than this many times the last
/// keyframe: a keyframe is shorter than the backlog only then. On the
/// emulated link, busy content (a full-screen gradient) at 0.6 Mbit/s made
/// keyframes of ≈ 90 KB whatever their budget; each stale queue asked for
/// another, which made the queue stale again, and the picture stopped.
pub const STALE_KEYFRAME_RATIO: usize = 2;

/// In an outage (no feedback for a second while sending: the path is gone,
/// or the viewer vanished without a goodbye) media is held, not blasted
/// into the void at the frozen estimate: one packet leaves per this long,
/// enough for feedback to resume as soon as the path returns. Meanwhile
/// the queue ages; the share then drops whole frames for this viewer alone
/// (`hub::VIEWER_DROP_QUEUE`) until it can take a keyframe.
pub const OUTAGE_TRICKLE: Duration = Duration::from_millis(250);

/// How long retransmissions are remembered, to keep them out of the loss
/// statistics when their feedback arrives.
const RTX_LOG_AGE: Duration = Duration::from_secs(3);

/// Loss (in a loss window of the estimator) that starts loss recovery
/// (see the module docs).
pub const RECOVERY_LOSS: f64 = 0.02;
/// Loss recovery lasts this long after the last window with that much loss.
pub const RECOVERY_HOLD: Duration = Duration::from_secs(10);
/// The playout delay asked for in loss recovery: the round trip plus this
/// (the NACK's detection and the sender's reaction, the frame's own
/// transmission).
pub const RECOVERY_MARGIN: Duration = Duration::from_millis(40);
/// The longest minimum playout delay asked for (a path whose round trip
/// needs more is better served by freezes than by such a delay).
pub const RECOVERY_MAX_DELAY: Duration = Duration::from_millis(400);
/// The maximum playout delay asked for: the receiver's jitter buffer may
/// grow this far (past the minimum) to absorb jitter.
pub const PLAYOUT_DELAY_MAX: Duration = Duration::from_millis(200);

/// A snapshot of a send side.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SendStats {
    /// The estimator.
    pub bwe: BweStats,
    /// The pacer's counters.
    pub pacer: PacerStats,
    /// Time to drain the queue at the pacing rate.
    pub queue_delay: Duration,
    /// The pacing rate, bps.
    pub pacing_bps: f64,
    /// Whether the sender is application-limited.
    pub app_limited: bool,
    /// Whether feedback stopped while sending (see [`OUTAGE_TRICKLE`]).
    pub in_outage: bool,
    /// The playout delay asked of the receiver, (min, max).
    pub playout_delay: (Duration, Duration),
}

/// Estimator + pacer for one viewer.
#[derive(Debug)]
pub struct SendController<P> {
    bwe: Bwe,
    pacer: Pacer<P>,
    /// (departure, sequence number) of recent retransmissions, in time order.
    rtx_log: VecDeque<(Instant, u16)>,
    /// (departure, sequence number) of recent tail probes: left out of the
    /// estimator's input altogether (see [`SendController::on_feedback`]).
    tail_log: VecDeque<(Instant, u16)>,
    /// Reports without the tail probes (reused).
    filtered: Vec<PacketReport>,
    keyframe_needed: bool,
    last_stale_request: Option<Instant>,
    /// When the last packet left, for the outage trickle.
    last_release: Option<Instant>,
    /// The latest time seen, for the queue's age in snapshots.
    last_now: Option<Instant>,
    /// When a loss window last showed [`RECOVERY_LOSS`] (loss recovery).
    last_lossy: Option<Instant>,
}

impl<P: Paced> SendController<P> {
    /// A fresh send side.
    pub fn new(config: BweConfig) -> Self {
        let bwe = Bwe::new(config);
        let pacer = Pacer::new(bwe.target_bps());
        Self {
            bwe,
            pacer,
            rtx_log: VecDeque::new(),
            tail_log: VecDeque::new(),
            filtered: Vec::new(),
            keyframe_needed: false,
            last_stale_request: None,
            last_release: None,
            last_now: None,
            last_lossy: None,
        }
    }

    /// Whether loss recovery is on (see the module docs).
    pub fn recovering(&self) -> bool {
        match (self.last_lossy, self.last_now) {
            (Some(lossy), Some(now)) => now.saturating_duration_since(lossy) < RECOVERY_HOLD,
            _ => false,
        }
    }

    /// The playout delay (min, max) to ask the receiver for: min 0 on a clean
    /// link, the round trip plus [`RECOVERY_MARGIN`] in loss recovery.
    pub fn playout_delay(&self) -> (Duration, Duration) {
        if self.recovering() {
            let min = (self.bwe.min_rtt() + RECOVERY_MARGIN).min(RECOVERY_MAX_DELAY);
            (min, PLAYOUT_DELAY_MAX.max(min))
        } else {
            (Duration::ZERO, PLAYOUT_DELAY_MAX)
        }
    }

    /// The estimate, bps.
    pub fn target_bps(&self) -> f64 {
        self.bwe.target_bps()
    }

    /// The estimator's round-trip time.
    pub fn rtt(&self) -> Duration {
        self.bwe.rtt()
    }

    /// Changes the estimator's bounds.
    pub fn set_bounds(&mut self, min_bps: f64, max_bps: f64) {
        self.bwe.set_bounds(min_bps, max_bps);
        self.pacer.set_estimate(self.bwe.target_bps());
    }

    /// How long the queue holds media: the time to drain it at the pacing
    /// rate, or in an outage (when nothing drains) at least the age of its
    /// oldest packet.
    pub fn queue_delay(&self) -> Duration {
        let drain = self.pacer.queue_delay();
        match self.last_now {
            Some(now) if self.bwe.in_outage() => drain.max(self.pacer.oldest_wait(now)),
            _ => drain,
        }
    }

    /// Sets the sequence number of the first packet sent.
    pub fn start_sequence_at(&mut self, seq: u16) {
        self.pacer.start_sequence_at(seq);
    }

    /// Queues a media packet.
    pub fn enqueue(&mut self, now: Instant, packet: P) {
        self.last_now = Some(now);
        self.pacer.enqueue(now, packet);
    }

    /// Feedback for a batch of sent packets, in send order.
    ///
    /// Tail probes are left out: a tiny packet sent a few milliseconds after
    /// a frame leaves a bottleneck right behind it, so its arrival gap reads
    /// as a queue draining fast and biases the delay detector towards
    /// under-use (in the simulation the estimate then held above a link
    /// that had just slowed, with a standing queue for seconds); as
    /// deliveries they would dilute the loss rate of a slow link.
    pub fn on_feedback(&mut self, now: Instant, reports: &[PacketReport]) {
        fn logged(log: &VecDeque<(Instant, u16)>, r: &PacketReport) -> bool {
            let from = log.partition_point(|(t, _)| *t < r.departure);
            log.iter().skip(from).take_while(|(t, _)| *t == r.departure).any(|(_, s)| *s == r.rtp_sequence_number)
        }
        let reports = if self.tail_log.is_empty() {
            reports
        } else {
            self.filtered.clear();
            self.filtered.extend(reports.iter().filter(|r| !logged(&self.tail_log, r)).cloned());
            &self.filtered[..]
        };
        let log = &self.rtx_log;
        self.bwe.on_feedback(now, reports, |r| logged(log, r));
        self.last_now = Some(now);
        self.pacer.set_estimate(self.bwe.target_bps());
        if let Some(loss) = self.bwe.loss() {
            if loss >= REDUNDANT_RTX_LOSS {
                self.pacer.set_redundant_retransmissions(true);
            } else if loss < REDUNDANT_RTX_LOSS_OFF {
                self.pacer.set_redundant_retransmissions(false);
            }
            if loss >= RECOVERY_LOSS {
                self.last_lossy = Some(now);
            }
        }
        self.pacer.set_tail_probes(self.recovering());
        if self.bwe.take_keyframe_needed() {
            self.keyframe_needed = true;
            self.pacer.expect_keyframe(now);
        }
        for log in [&mut self.rtx_log, &mut self.tail_log] {
            while log.front().is_some_and(|(t, _)| now.saturating_duration_since(*t) > RTX_LOG_AGE) {
                log.pop_front();
            }
        }
    }

    /// Whether the viewer needs a keyframe the browser will not ask for in
    /// time (media was lost in an outage, or the queue went stale). True
    /// once per occasion.
    pub fn take_keyframe_request(&mut self) -> bool {
        std::mem::take(&mut self.keyframe_needed)
    }

    /// A NACK for these sequence numbers; returns how many were queued for retransmission.
    pub fn on_nack(&mut self, now: Instant, seqs: impl IntoIterator<Item = u16>) -> usize {
        // The path's round trip without queues: a retransmission older than
        // that has had its chance; in loss recovery, half of it (see the
        // module docs).
        let rtt = self.bwe.min_rtt();
        let window = if self.recovering() { rtt / 2 } else { rtt };
        self.pacer.on_nack(now, seqs, window)
    }

    /// The next packet to send now, if any. Call until `None`.
    pub fn poll_release(&mut self, now: Instant) -> Option<Release<P>> {
        self.last_now = Some(now);
        if self.bwe.in_outage() && self.last_release.is_some_and(|t| now.saturating_duration_since(t) < OUTAGE_TRICKLE)
        {
            return None;
        }
        if !self.pacer.probing()
            && let Some(cluster) = self.bwe.take_probe(now)
        {
            self.pacer.start_probe(cluster);
        }
        let probe = self.pacer.probe_id();
        let (release, finished) = self.pacer.poll_release(now)?;
        self.last_release = Some(now);
        self.bwe.set_app_limited(self.pacer.app_limited());
        let size = match &release {
            Release::Media { packet, .. } => packet.size(),
            Release::Retransmission { packet, seq } => {
                self.rtx_log.push_back((now, *seq));
                packet.size()
            }
            Release::Padding { size, probe, seq } => {
                if probe.is_none() {
                    self.rtx_log.push_back((now, *seq));
                }
                *size
            }
            Release::TailProbe { size, seq } => {
                self.tail_log.push_back((now, *seq));
                *size
            }
        };
        self.bwe.on_packet_sent(now);
        if let Some(id) = probe {
            self.bwe.on_probe_sent(id, now, size);
        }
        if let Some(id) = finished {
            self.bwe.on_probe_finished(id, now);
        }
        Some(release)
    }

    /// Periodic work (the estimator's ticks).
    pub fn handle_timeout(&mut self, now: Instant) {
        self.last_now = Some(now);
        if self.bwe.poll_timeout().is_some_and(|t| t <= now) {
            self.bwe.handle_timeout(now);
            self.pacer.set_estimate(self.bwe.target_bps());
            self.pacer.set_tail_probes(self.recovering());
            if !self.bwe.in_outage()
                && self.pacer.queue_delay() > STALE_QUEUE
                && self.pacer.last_keyframe_bytes().is_none_or(|k| self.pacer.queued_bytes() > STALE_KEYFRAME_RATIO * k)
                && self.last_stale_request.is_none_or(|t| now.saturating_duration_since(t) >= STALE_QUEUE_INTERVAL)
            {
                self.last_stale_request = Some(now);
                self.keyframe_needed = true;
            }
        }
    }

    /// When [`SendController::handle_timeout`] / [`SendController::poll_release`] should run next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let pacer = match (self.pacer.poll_timeout(), self.last_release) {
            (Some(at), Some(last)) if self.bwe.in_outage() => Some(at.max(last + OUTAGE_TRICKLE)),
            (at, _) => at,
        };
        match (pacer, self.bwe.poll_timeout()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// A snapshot.
    pub fn stats(&self) -> SendStats {
        SendStats {
            bwe: self.bwe.stats(),
            pacer: self.pacer.stats(),
            queue_delay: self.queue_delay(),
            pacing_bps: self.pacer.pacing_bps(),
            app_limited: self.pacer.app_limited(),
            in_outage: self.bwe.in_outage(),
            playout_delay: self.playout_delay(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtc::rtcp::transport_feedbacks::cc_feedback_report::Ecn;

    #[derive(Debug, Clone)]
    struct Pkt {
        end: bool,
    }

    impl Paced for Pkt {
        fn size(&self) -> usize {
            1200
        }
        fn frame_end(&self) -> bool {
            self.end
        }
        fn keyframe_start(&self) -> bool {
            false
        }
    }

    /// Runs `secs` of a 30 fps stream of 3-packet frames over a path with a
    /// 100 ms round trip that loses every `lose_every`-th packet (0: none);
    /// feedback every 50 ms. Returns how many tail probes went out.
    fn run(tx: &mut SendController<Pkt>, t: &mut Instant, secs: u64, lose_every: u64, next: &mut u64) -> u32 {
        let mut pending: Vec<PacketReport> = vec![];
        let mut tails = 0;
        for ms in 0..secs * 1000 {
            let now = *t + Duration::from_millis(ms);
            if ms % 33 == 0 {
                for i in 0..3 {
                    tx.enqueue(now, Pkt { end: i == 2 });
                }
            }
            tx.handle_timeout(now);
            while let Some(r) = tx.poll_release(now) {
                if matches!(r, Release::TailProbe { .. }) {
                    tails += 1;
                }
                *next += 1;
                let lost = lose_every > 0 && next.is_multiple_of(lose_every);
                pending.push(PacketReport {
                    ssrc: 1,
                    id: *next,
                    rtp_sequence_number: r.seq(),
                    is_twcc: true,
                    twcc_sequence_number: *next as u16,
                    size: 1200,
                    arrived: !lost,
                    departure: now,
                    arrival: (!lost).then(|| Duration::from_millis(ms + 50)),
                    ecn: Ecn::NotEct,
                });
            }
            if ms % 50 == 49 {
                // The batch's newest packet left 50 ms ago (one way) … its report now.
                let due: Vec<PacketReport> = pending
                    .iter()
                    .filter(|r| now.saturating_duration_since(r.departure) >= Duration::from_millis(100))
                    .cloned()
                    .collect();
                pending.retain(|r| now.saturating_duration_since(r.departure) < Duration::from_millis(100));
                tx.on_feedback(now, &due);
            }
        }
        *t += Duration::from_secs(secs);
        tails
    }

    #[derive(Debug, Clone)]
    struct Frame {
        key: bool,
        end: bool,
    }

    impl Paced for Frame {
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

    #[test]
    fn a_stale_queue_asks_for_a_keyframe_only_when_one_would_be_shorter() {
        let t0 = Instant::now();
        let mut tx: SendController<Frame> =
            SendController::new(BweConfig { start_bps: 1e6, min_bps: 1e5, max_bps: 1e7 });
        // A 120 KB keyframe: ≈ 870 ms to drain at 1.1 Mbit/s, but another
        // keyframe would be as long.
        for i in 0..100 {
            tx.enqueue(t0, Frame { key: i == 0, end: i == 99 });
        }
        let mut t = t0;
        for _ in 0..3 {
            while tx.poll_release(t).is_some() {}
            t += Duration::from_millis(100);
            tx.handle_timeout(t);
        }
        assert!(tx.queue_delay() > STALE_QUEUE);
        assert!(!tx.take_keyframe_request(), "a keyframe would not drain sooner");
        // 200 KB of frames behind it: now a keyframe is shorter.
        for i in 0..170 {
            tx.enqueue(t, Frame { key: false, end: i % 10 == 9 });
        }
        t += Duration::from_millis(100);
        tx.handle_timeout(t);
        assert!(tx.take_keyframe_request(), "stale, and more than twice a keyframe");
    }

    #[test]
    fn loss_recovery_asks_for_a_playout_delay_and_tail_probes_and_ends_on_a_clean_link() {
        let mut t = Instant::now();
        let mut tx = SendController::new(BweConfig { start_bps: 2e6, min_bps: 1e5, max_bps: 1e7 });
        let mut next = 0;
        assert_eq!(run(&mut tx, &mut t, 3, 0, &mut next), 0, "a clean link: no tail probes");
        assert_eq!(tx.playout_delay(), (Duration::ZERO, PLAYOUT_DELAY_MAX), "render at once");
        // 5 % loss: recovery.
        let tails = run(&mut tx, &mut t, 3, 20, &mut next);
        assert!(tx.recovering());
        let (min, max) = tx.playout_delay();
        let expected = tx.bwe.min_rtt() + RECOVERY_MARGIN;
        assert_eq!(min, expected, "the round trip plus the margin");
        assert!((Duration::from_millis(100)..Duration::from_millis(200)).contains(&min), "{min:?}");
        assert_eq!(max, PLAYOUT_DELAY_MAX.max(min));
        assert!(tails > 20, "a tail probe after most frames: {tails}");
        // A repeated NACK half a round trip after the retransmission is answered.
        let now = t;
        tx.enqueue(now, Pkt { end: true });
        let Some(Release::Media { seq, .. }) = tx.poll_release(now) else { panic!("a media packet") };
        assert_eq!(tx.on_nack(now + Duration::from_millis(60), [seq]), 1);
        let now = now + Duration::from_millis(60);
        let seq = loop {
            match tx.poll_release(now) {
                Some(Release::Retransmission { seq, .. }) => break seq,
                Some(_) => {}
                None => panic!("no retransmission"),
            }
        };
        let later = now + tx.bwe.min_rtt() * 3 / 5;
        assert_eq!(tx.on_nack(later, [seq]), 1, "answered after half a round trip in recovery");
        // Clean again: after RECOVERY_HOLD the minimum is back to 0.
        run(&mut tx, &mut t, RECOVERY_HOLD.as_secs() + 2, 0, &mut next);
        assert!(!tx.recovering());
        assert_eq!(tx.playout_delay(), (Duration::ZERO, PLAYOUT_DELAY_MAX));
        assert_eq!(run(&mut tx, &mut t, 1, 0, &mut next), 0, "no tail probes once clean");
    }
}
