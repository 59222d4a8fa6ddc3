//! Peep's bandwidth estimator: a sans-IO core fed with per-packet feedback
//! (departure on our clock, arrival on the receiver's, size, lost or not)
//! and the current time; it never reads a clock and does no I/O.
//!
//! Written from draft-ietf-rmcat-gcc-02, with RFC 8698 (NADA) and the
//! libwebrtc design notes for comparison, to fix what makes `rtc` 0.21's
//! GCC collapse on slow links (see issue 9). The parts:
//!
//! | part | module | role |
//! |---|---|---|
//! | delay detector | [`trendline`] | is the bottleneck queue growing? (groups, trendline slope, adaptive threshold) |
//! | acknowledged rate | [`acked`] | what the path delivered while we sent (busy periods only) |
//! | rate control | [`aimd`] | the delay-based rate: AIMD, one cut per RTT, increases capped by what was delivered |
//! | loss control | [`loss`] | a bound that only high loss sets (background loss is tolerated) |
//! | probing | [`probe`] | start-up, exponential, application-limited and recovery probes, and their measurement |
//!
//! The estimate is `min(delay-based rate, loss bound)` within the
//! configured bounds. The pacer (see `crate::pacer`) paces at 1.1 × it,
//! sends the probe clusters this core asks for, and tells it whether the
//! sender is application-limited (ALR).
//!
//! # State machine
//!
//! ```text
//!                  first packet sent: start-up probes (3×, 6× start rate)
//!   ┌─────────┐ ─────────────────────────────────────────────┐
//!   │ Startup │                                              ▼
//!   └─────────┘                                      ┌──────────────┐  good result: probe 2× result
//!                     all probes answered            │   Probing    │◀──┐
//!        ┌─────────────────────────────────────────── └──────────────┘ ──┘
//!        ▼                                                  ▲ ALR every 4 s / large drop
//!   ┌──────────┐  pacer reports the app sends < 65 % ┌──────┴───────┐
//!   │  Normal  │ ───────────────────────────────────▶│ AppLimited   │  no increases (nothing validates
//!   │  (AIMD:  │ ◀───────────────────────────────────│              │  them); periodic probes do
//!   │ Increase/│   sending at ≥ 80 % again            └──────────────┘
//!   │ Hold/    │
//!   │ Decrease)│  no feedback for 1 s while sending   ┌──────────────┐
//!   │          │ ───────────────────────────────────▶ │   Outage     │  estimate frozen; losses of
//!   └──────────┘ ◀─────────────────────────────────── │              │  packets sent into the outage
//!                 feedback again (recovery probe if    └──────────────┘  are not counted
//!                 the estimate had dropped)
//! ```
//!
//! Inside Normal the delay-based rate follows [`aimd`]'s Increase/Hold/
//! Decrease machine, and the loss bound [`loss`]'s rules. Decreases happen at
//! most once per round trip (from both controllers), increases never above
//! 1.5 × the acknowledged rate, never while application-limited. Probe
//! results raise the estimate directly, but only start-up (exponential)
//! probes beyond [`PROBE_DELIVERED_CAP`] × the acknowledged rate; a
//! start-up probe that saturated the path lowers it to what it measured; a
//! cut within two seconds of a probe-based increase reverts to the rate
//! before it.

pub mod acked;
pub mod aimd;
pub mod loss;
pub mod probe;
pub mod trendline;

use std::time::{Duration, Instant};

use rtc::interceptor::PacketReport;

pub use probe::ProbeCluster;
pub use trendline::Usage;

use acked::AckedRate;
use aimd::{Aimd, RateState};
use loss::LossControl;
use probe::{ProbeController, ProbeKind, ProbeMeter};
use trendline::DelayDetector;

/// No feedback for this long while packets are being sent: an outage.
pub const OUTAGE_AFTER: Duration = Duration::from_secs(1);
/// Round-trip time assumed before the first measurement.
pub const DEFAULT_RTT: Duration = Duration::from_millis(200);
/// Round-trip samples are smoothed with this weight for the newest.
pub const RTT_ALPHA: f64 = 0.125;
/// Probe results other than start-up ones raise the estimate to at most
/// this multiple of the acknowledged media rate.
pub const PROBE_DELIVERED_CAP: f64 = 1.25;
/// Window of the minimum round-trip time.
pub const MIN_RTT_WINDOW: Duration = Duration::from_secs(10);
/// How often the estimator wants a tick while active (probe scheduling,
/// outage detection).
pub const TICK: Duration = Duration::from_millis(100);
/// After this long without sending anything the estimator stops ticking.
pub const IDLE_AFTER: Duration = Duration::from_secs(10);

/// Start rate and bounds, bps.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BweConfig {
    /// Estimate before any feedback.
    pub start_bps: f64,
    /// Never below this.
    pub min_bps: f64,
    /// Never above this (and no probing beyond it).
    pub max_bps: f64,
}

/// Where the estimator is in its state machine (for stats and logs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Phase {
    /// Nothing sent yet.
    Startup,
    /// A probe cluster is queued or awaits its result.
    Probing,
    /// Feedback-driven AIMD.
    Normal,
    /// The sender uses much less than the estimate.
    AppLimited,
    /// Packets leave but no feedback comes back.
    Outage,
}

/// A snapshot of the estimator's internals.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BweStats {
    /// The estimate, bps.
    pub target_bps: f64,
    /// The delay-based rate, bps.
    pub delay_based_bps: f64,
    /// The loss bound, if loss has set one.
    pub loss_bound_bps: Option<f64>,
    /// The acknowledged rate, if measured.
    pub acked_bps: Option<f64>,
    /// Loss fraction of the last loss window.
    pub loss: Option<f64>,
    /// Smoothed round-trip time (feedback-based: includes the feedback interval).
    pub rtt: Duration,
    /// Delay detector verdict.
    pub usage: Usage,
    /// AIMD state.
    pub rate_state: RateState,
    /// State machine phase.
    pub phase: Phase,
    /// Probe clusters measured so far.
    pub probes_measured: u64,
}

/// The bandwidth estimator. See the module docs.
#[derive(Debug, Clone)]
pub struct Bwe {
    config: BweConfig,
    detector: DelayDetector,
    aimd: Aimd,
    acked: AckedRate,
    loss: LossControl,
    probes: ProbeController,
    meter: ProbeMeter,
    rtt: Option<Duration>,
    rtt_min: std::collections::VecDeque<(Instant, Duration)>,
    app_limited: bool,
    last_feedback: Option<Instant>,
    last_sent: Option<Instant>,
    /// Feedback stopped: the instant of the last feedback before it did.
    outage_since: Option<Instant>,
    /// Losses of packets sent after this are an outage's, not congestion's.
    outage_cutoff: Option<Instant>,
    last_tick: Option<Instant>,
    probes_measured: u64,
    results: Vec<(u32, Option<probe::ProbeResult>)>,
    keyframe_needed: bool,
}

impl Bwe {
    /// A fresh estimator.
    pub fn new(config: BweConfig) -> Self {
        let min = config.min_bps.max(1.0);
        let max = config.max_bps.max(min);
        let config = BweConfig { start_bps: config.start_bps.clamp(min, max), min_bps: min, max_bps: max };
        Self {
            config,
            detector: DelayDetector::new(),
            aimd: Aimd::new(config.start_bps, min, max),
            acked: AckedRate::new(),
            loss: LossControl::new(),
            probes: ProbeController::new(max),
            meter: ProbeMeter::new(),
            rtt: None,
            rtt_min: std::collections::VecDeque::new(),
            app_limited: false,
            last_feedback: None,
            last_sent: None,
            outage_since: None,
            outage_cutoff: None,
            last_tick: None,
            probes_measured: 0,
            results: Vec::new(),
            keyframe_needed: false,
        }
    }

    /// The configuration in force.
    pub fn config(&self) -> BweConfig {
        self.config
    }

    /// Changes the bounds (a quality preset changed); the estimate is clamped.
    pub fn set_bounds(&mut self, min_bps: f64, max_bps: f64) {
        self.config.min_bps = min_bps.max(1.0);
        self.config.max_bps = max_bps.max(self.config.min_bps);
        self.aimd.set_bounds(self.config.min_bps, self.config.max_bps);
        self.probes.set_max(self.config.max_bps);
    }

    /// The estimate, bps.
    pub fn target_bps(&self) -> f64 {
        let delay = self.aimd.rate_bps();
        let bounded = self.loss.bound_bps().map_or(delay, |b| b.min(delay));
        bounded.clamp(self.config.min_bps, self.config.max_bps)
    }

    /// The smoothed round-trip time (or [`DEFAULT_RTT`]).
    pub fn rtt(&self) -> Duration {
        self.rtt.unwrap_or(DEFAULT_RTT)
    }

    /// The smallest round-trip sample of the last [`MIN_RTT_WINDOW`]: the
    /// path's delay without our own queues (or [`DEFAULT_RTT`]).
    pub fn min_rtt(&self) -> Duration {
        self.rtt_min.front().map_or(DEFAULT_RTT, |(_, r)| *r)
    }

    /// Whether no feedback has come back for [`OUTAGE_AFTER`] while sending.
    pub fn in_outage(&self) -> bool {
        self.outage_since.is_some()
    }

    /// Whether feedback came back after an outage that lost media (taken:
    /// true once per outage). The viewer needs a keyframe.
    pub fn take_keyframe_needed(&mut self) -> bool {
        std::mem::take(&mut self.keyframe_needed)
    }

    /// Loss fraction of the last complete loss window.
    pub fn loss(&self) -> Option<f64> {
        self.loss.loss()
    }

    /// The pacer's verdict on whether the sender is application-limited.
    pub fn set_app_limited(&mut self, app_limited: bool) {
        self.app_limited = app_limited;
    }

    /// A packet left (any kind), for outage detection.
    pub fn on_packet_sent(&mut self, now: Instant) {
        self.last_sent = Some(now);
        // Ticks run from the first packet on.
        self.last_tick.get_or_insert(now);
        if self.last_feedback.is_none() {
            // Outage detection counts from the first packet, not from creation.
            self.last_feedback = Some(now);
        }
    }

    /// A packet of probe cluster `cluster` left.
    pub fn on_probe_sent(&mut self, cluster: u32, now: Instant, size_bytes: usize) {
        self.meter.on_sent(cluster, now, size_bytes);
    }

    /// The pacer finished sending cluster `cluster`.
    pub fn on_probe_finished(&mut self, cluster: u32, now: Instant) {
        self.meter.on_finished(cluster, now);
    }

    /// The next probe cluster to send, if one is due.
    pub fn take_probe(&mut self, now: Instant) -> Option<ProbeCluster> {
        // Nothing to probe with before the first packet.
        self.last_sent?;
        self.probes.poll(now, self.target_bps(), self.app_limited, !self.in_outage());
        self.probes.take(now)
    }

    /// Feedback for a batch of packets, in send order (from
    /// `rtc::interceptor::History`), received at `now`.
    ///
    /// `is_retransmission` tells retransmissions apart: they count for
    /// delay, rate and probes but not for loss.
    pub fn on_feedback(
        &mut self,
        now: Instant,
        reports: &[PacketReport],
        is_retransmission: impl Fn(&PacketReport) -> bool,
    ) {
        if reports.is_empty() {
            return;
        }
        let was_outage = self.outage_since.take().is_some();
        if was_outage {
            self.detector.reset();
        }
        self.last_feedback = Some(now);
        let cutoff = self.outage_cutoff.take();
        if let Some(newest) = reports.iter().rev().find(|r| r.arrived) {
            let sample = now.saturating_duration_since(newest.departure);
            self.rtt = Some(match self.rtt {
                None => sample,
                Some(rtt) => rtt.mul_f64(1.0 - RTT_ALPHA) + sample.mul_f64(RTT_ALPHA),
            });
            // Windowed minimum: drop samples that are older than the window
            // or not smaller than the new one.
            while self.rtt_min.front().is_some_and(|(t, _)| now.saturating_duration_since(*t) > MIN_RTT_WINDOW) {
                self.rtt_min.pop_front();
            }
            while self.rtt_min.back().is_some_and(|(_, r)| *r >= sample) {
                self.rtt_min.pop_back();
            }
            self.rtt_min.push_back((now, sample));
        }
        let (mut received, mut lost, mut lost_in_outage) = (0u32, 0u32, 0u32);
        let mut results = std::mem::take(&mut self.results);
        results.clear();
        for r in reports {
            let arrival = if r.arrived { r.arrival } else { None };
            // Probe bursts are measured by the meter; as deliveries they
            // would inflate the acknowledged rate (and with it the cap on
            // probe results) whenever a shaper's burst allowance lets them through.
            let probe = self.meter.covers(r.departure);
            self.meter.on_report(r.departure, r.size, arrival, &mut results);
            if r.arrived {
                received += 1;
                if let Some(arrival) = r.arrival {
                    self.detector.on_packet(now, r.departure, arrival);
                    if !probe {
                        self.acked.on_packet(arrival, r.size);
                    }
                }
            } else if cutoff.is_none_or(|c| r.departure < c) {
                if !is_retransmission(r) {
                    lost += 1;
                }
            } else {
                lost_in_outage += 1;
            }
        }
        if was_outage && lost_in_outage > 0 {
            // The viewer's decoder lost its reference chain; browsers wait
            // seconds before asking for a keyframe after a long gap.
            self.keyframe_needed = true;
        }
        self.meter.expire(now, &mut results);
        let rtt = self.rtt();
        let target = self.target_bps();
        self.loss.on_feedback(
            now,
            loss::LossReport {
                received,
                lost,
                rate_bps: target,
                delay_bps: self.aimd.rate_bps(),
                delivered_bps: self.acked.last_sample_bps(),
            },
            rtt,
        );
        self.aimd.update(
            now,
            self.detector.usage(),
            self.acked.bps(),
            self.acked.decrease_basis_bps(),
            rtt,
            self.app_limited,
        );
        if self.aimd.take_capacity_grew() {
            self.probes.on_capacity_grew(now, self.aimd.rate_bps());
        }
        for (id, result) in results.drain(..) {
            match result {
                Some(probe::ProbeResult { bps, saturated }) => {
                    self.probes_measured += 1;
                    let kind = self.probes.on_result(id, bps);
                    if kind == Some(ProbeKind::Exponential) && saturated && bps < self.aimd.rate_bps() {
                        // A start-up probe the path could not keep up with
                        // measured its capacity: an earlier, smaller probe
                        // that read higher fitted inside a shaper's burst.
                        self.aimd.set_rate(bps, now);
                        self.acked.on_probe_result(bps);
                    }
                    // Start-up and exponential probes find a link nothing has
                    // been delivered on yet; the others may not raise the
                    // estimate past 1.25 × what media actually delivered: a
                    // short probe fits inside a shaper's token bucket and
                    // reads as line rate.
                    let bps = match (kind, self.acked.bps()) {
                        (Some(ProbeKind::Exponential) | None, _) | (_, None) => bps,
                        (Some(_), Some(acked)) => bps.min(PROBE_DELIVERED_CAP * acked),
                    };
                    if kind.is_some() && bps > self.aimd.rate_bps() && self.detector.usage() != Usage::Overusing {
                        self.aimd.set_probe_rate(bps, now);
                        if kind == Some(ProbeKind::Exponential) {
                            self.acked.on_probe_result(bps);
                        }
                        if kind != Some(ProbeKind::Exponential) || self.loss.loss().is_none_or(|l| l < loss::HIGH_LOSS)
                        {
                            self.loss.lift_to(bps);
                        }
                    }
                }
                None => self.probes.on_failed(id),
            }
        }
        self.results = results;
    }

    /// Periodic work: outage detection, probe scheduling.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.last_tick = Some(now);
        if let (Some(fb), Some(sent)) = (self.last_feedback, self.last_sent)
            && self.outage_since.is_none()
            && sent > fb
            && now.saturating_duration_since(fb) >= OUTAGE_AFTER.max(self.rtt() * 3)
        {
            self.outage_since = Some(fb);
            // Packets sent from one round trip before the last feedback on
            // went into the outage.
            self.outage_cutoff = Some(fb.checked_sub(self.rtt()).unwrap_or(fb));
        }
        let mut results = std::mem::take(&mut self.results);
        results.clear();
        self.meter.expire(now, &mut results);
        for (id, _) in results.drain(..) {
            self.probes.on_failed(id);
        }
        self.results = results;
    }

    /// When the estimator next wants [`Bwe::handle_timeout`].
    pub fn poll_timeout(&self) -> Option<Instant> {
        let sent = self.last_sent?;
        let tick = self.last_tick.unwrap_or(sent);
        // Idle for long: no ticks until the next packet.
        (tick.saturating_duration_since(sent) < IDLE_AFTER).then(|| tick + TICK)
    }

    /// The phase of the state machine.
    pub fn phase(&self) -> Phase {
        if self.last_sent.is_none() {
            Phase::Startup
        } else if self.in_outage() {
            Phase::Outage
        } else if self.probes.busy() {
            Phase::Probing
        } else if self.app_limited {
            Phase::AppLimited
        } else {
            Phase::Normal
        }
    }

    /// A snapshot of the internals.
    pub fn stats(&self) -> BweStats {
        BweStats {
            target_bps: self.target_bps(),
            delay_based_bps: self.aimd.rate_bps(),
            loss_bound_bps: self.loss.bound_bps(),
            acked_bps: self.acked.bps(),
            loss: self.loss.loss(),
            rtt: self.rtt(),
            usage: self.detector.usage(),
            rate_state: self.aimd.state(),
            phase: self.phase(),
            probes_measured: self.probes_measured,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtc::rtcp::transport_feedbacks::cc_feedback_report::Ecn;

    fn report(id: u64, departure: Instant, arrival: Option<Duration>, size: usize) -> PacketReport {
        PacketReport {
            ssrc: 1,
            id,
            rtp_sequence_number: id as u16,
            is_twcc: true,
            twcc_sequence_number: id as u16,
            size,
            arrived: arrival.is_some(),
            departure,
            arrival,
            ecn: Ecn::NotEct,
        }
    }

    #[test]
    fn an_outage_freezes_the_estimate_and_its_losses_are_not_congestion() {
        let t0 = Instant::now();
        let cfg = BweConfig { start_bps: 1e6, min_bps: 50e3, max_bps: 10e6 };
        let mut b = Bwe::new(cfg);
        // 2 s of 1 Mbps delivered fine, feedback every 100 ms.
        let mut id = 0;
        let mut batch = vec![];
        for ms in 0..2000u64 {
            if ms % 10 == 0 {
                let dep = t0 + Duration::from_millis(ms);
                b.on_packet_sent(dep);
                batch.push(report(id, dep, Some(Duration::from_millis(ms + 25)), 1250));
                id += 1;
            }
            if ms % 100 == 99 {
                b.on_feedback(t0 + Duration::from_millis(ms + 50), &batch, |_| false);
                batch.clear();
                b.handle_timeout(t0 + Duration::from_millis(ms + 50));
            }
        }
        let before = b.target_bps();
        // 2 s of sending into nothing: no feedback.
        for ms in 2000..4000u64 {
            if ms % 10 == 0 {
                let dep = t0 + Duration::from_millis(ms);
                b.on_packet_sent(dep);
                batch.push(report(id, dep, None, 1250));
                id += 1;
            }
            if ms % 100 == 0 {
                b.handle_timeout(t0 + Duration::from_millis(ms));
            }
        }
        assert_eq!(b.phase(), Phase::Outage);
        assert_eq!(b.target_bps(), before, "frozen");
        // The link returns: the first feedback reports 2 s of losses and new arrivals.
        for ms in 4000..4100u64 {
            if ms % 10 == 0 {
                let dep = t0 + Duration::from_millis(ms);
                batch.push(report(id, dep, Some(Duration::from_millis(ms + 25)), 1250));
                id += 1;
            }
        }
        b.on_feedback(t0 + Duration::from_millis(4150), &batch, |_| false);
        assert_ne!(b.phase(), Phase::Outage);
        assert!(b.take_keyframe_needed(), "media was lost in the outage");
        assert!(!b.take_keyframe_needed(), "once");
        assert_eq!(b.stats().loss_bound_bps, None, "outage losses set no loss bound");
        assert!(b.target_bps() >= before * 0.99);
    }
}
