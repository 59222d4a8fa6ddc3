//! One viewer's send side as one sans-IO object: the bandwidth estimator
//! ([`crate::bwe`]) and the sender queue ([`crate::pacer`]) wired together.
//!
//! * feedback → estimator → the pacer's rate;
//! * the estimator's probe clusters → the pacer, which reports back every
//!   packet it sends during one and when the cluster is complete;
//! * the pacer's application-limited verdict → the estimator (no increases
//!   while application-limited, periodic probes instead);
//! * NACKs → the pacer, with the estimator's round-trip time.
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
}

/// Estimator + pacer for one viewer.
#[derive(Debug)]
pub struct SendController<P> {
    bwe: Bwe,
    pacer: Pacer<P>,
    /// (departure, sequence number) of recent retransmissions, in time order.
    rtx_log: VecDeque<(Instant, u16)>,
    keyframe_needed: bool,
    last_stale_request: Option<Instant>,
    /// When the last packet left, for the outage trickle.
    last_release: Option<Instant>,
    /// The latest time seen, for the queue's age in snapshots.
    last_now: Option<Instant>,
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
            keyframe_needed: false,
            last_stale_request: None,
            last_release: None,
            last_now: None,
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
    pub fn on_feedback(&mut self, now: Instant, reports: &[PacketReport]) {
        let log = &self.rtx_log;
        let is_retransmission = |r: &PacketReport| {
            let from = log.partition_point(|(t, _)| *t < r.departure);
            log.iter().skip(from).take_while(|(t, _)| *t == r.departure).any(|(_, s)| *s == r.rtp_sequence_number)
        };
        self.bwe.on_feedback(now, reports, is_retransmission);
        self.pacer.set_estimate(self.bwe.target_bps());
        if let Some(loss) = self.bwe.loss() {
            if loss >= REDUNDANT_RTX_LOSS {
                self.pacer.set_redundant_retransmissions(true);
            } else if loss < REDUNDANT_RTX_LOSS_OFF {
                self.pacer.set_redundant_retransmissions(false);
            }
        }
        if self.bwe.take_keyframe_needed() {
            self.keyframe_needed = true;
            self.pacer.expect_keyframe(now);
        }
        while self.rtx_log.front().is_some_and(|(t, _)| now.saturating_duration_since(*t) > RTX_LOG_AGE) {
            self.rtx_log.pop_front();
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
        // that has had its chance.
        self.pacer.on_nack(now, seqs, self.bwe.min_rtt())
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
            if !self.bwe.in_outage()
                && self.pacer.queue_delay() > STALE_QUEUE
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
        }
    }
}
