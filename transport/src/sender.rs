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

use std::time::{Duration, Instant};

use rtc::interceptor::PacketReport;

use crate::bwe::{Bwe, BweConfig, BweStats};
use crate::pacer::{Paced, Pacer, PacerStats, Release};

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
}

/// Estimator + pacer for one viewer.
#[derive(Debug)]
pub struct SendController<P> {
    bwe: Bwe,
    pacer: Pacer<P>,
}

impl<P: Paced> SendController<P> {
    /// A fresh send side.
    pub fn new(config: BweConfig) -> Self {
        let bwe = Bwe::new(config);
        let pacer = Pacer::new(bwe.target_bps());
        Self { bwe, pacer }
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

    /// Time to drain the queue at the pacing rate.
    pub fn queue_delay(&self) -> Duration {
        self.pacer.queue_delay()
    }

    /// Sets the sequence number of the first packet sent.
    pub fn start_sequence_at(&mut self, seq: u16) {
        self.pacer.start_sequence_at(seq);
    }

    /// Queues a media packet.
    pub fn enqueue(&mut self, now: Instant, packet: P) {
        self.pacer.enqueue(now, packet);
    }

    /// Feedback for a batch of sent packets, in send order.
    pub fn on_feedback(&mut self, now: Instant, reports: &[PacketReport]) {
        self.bwe.on_feedback(now, reports);
        self.pacer.set_estimate(self.bwe.target_bps());
    }

    /// A NACK for these sequence numbers; returns how many were queued for retransmission.
    pub fn on_nack(&mut self, now: Instant, seqs: impl IntoIterator<Item = u16>) -> usize {
        self.pacer.on_nack(now, seqs, self.bwe.rtt())
    }

    /// The next packet to send now, if any. Call until `None`.
    pub fn poll_release(&mut self, now: Instant) -> Option<Release<P>> {
        if !self.pacer.probing()
            && let Some(cluster) = self.bwe.take_probe(now)
        {
            self.pacer.start_probe(cluster);
        }
        let probe = self.pacer.probe_id();
        let (release, finished) = self.pacer.poll_release(now)?;
        self.bwe.set_app_limited(self.pacer.app_limited());
        let size = match &release {
            Release::Media { packet, .. } | Release::Retransmission { packet, .. } => packet.size(),
            Release::Padding { size, .. } => *size,
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
        if self.bwe.poll_timeout().is_some_and(|t| t <= now) {
            self.bwe.handle_timeout(now);
            self.pacer.set_estimate(self.bwe.target_bps());
        }
    }

    /// When [`SendController::handle_timeout`] / [`SendController::poll_release`] should run next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match (self.pacer.poll_timeout(), self.bwe.poll_timeout()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// A snapshot.
    pub fn stats(&self) -> SendStats {
        SendStats {
            bwe: self.bwe.stats(),
            pacer: self.pacer.stats(),
            queue_delay: self.pacer.queue_delay(),
            pacing_bps: self.pacer.pacing_bps(),
            app_limited: self.pacer.app_limited(),
        }
    }
}
