//! Delay-based congestion detection: is the bottleneck queue growing?
//!
//! Written from draft-ietf-rmcat-gcc-02 §5 (arrival-time model, over-use
//! detector, adaptive threshold) with the trendline filter libwebrtc later
//! put in place of the draft's Kalman filter (its design notes: a least
//! squares slope of the smoothed accumulated delay over the last 20 groups is
//! more robust to the jitter of real links than a Kalman estimate of the last
//! delta).
//!
//! 1. **Groups.** Packets leave in bursts (a frame's packets, paced). Every
//!    packet sent within [`BURST_SEND_SPAN`] of a group's first packet belongs
//!    to that group; so does a packet that arrived within [`BURST_ARRIVAL_SPAN`]
//!    of the group's last one *faster than it was sent* (it was queued behind
//!    the group: a burst drained by the bottleneck). Comparing groups instead
//!    of packets averages out the pacer's 1 ms timer and the receiver's clock.
//! 2. **Delay variation.** Between two consecutive groups
//!    `d = Δarrival − Δdeparture`: positive when the second group waited
//!    longer in a queue than the first.
//! 3. **Trend.** `d` is accumulated (the queueing delay relative to the first
//!    group), smoothed exponentially, and a line is fitted through the last
//!    [`WINDOW`] (arrival time, smoothed delay) points. Its slope is the rate
//!    at which the queue grows: 0.1 means 100 µs more delay per ms.
//! 4. **Detector.** The slope times `min(groups seen, 60) × 4` (so that a few
//!    noisy first samples count less) is compared with an adaptive threshold γ:
//!    above γ for more than [`OVERUSE_TIME`] while still rising → **overuse**;
//!    below −γ → **underuse** (the queue is draining); otherwise **normal**.
//! 5. **Threshold.** γ follows the magnitude of the signal, slowly upwards
//!    ([`K_UP`]) and faster downwards ([`K_DOWN`]), within [`THRESHOLD_MIN_MS`]
//!    ..[`THRESHOLD_MAX_MS`]: a fixed γ starves against loss-based flows (TCP
//!    keeps the queue full, the trend never returns to zero) and a γ that
//!    follows too fast never detects anything.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Packets sent within this span of a group's first packet form one group.
pub const BURST_SEND_SPAN: Duration = Duration::from_millis(5);
/// A packet arriving this close after the group's last one, with a negative
/// delay variation, joins the group (it was queued behind it).
pub const BURST_ARRIVAL_SPAN: Duration = Duration::from_millis(5);
/// Points in the trendline regression (libwebrtc's default window).
pub const WINDOW: usize = 20;
/// Exponential smoothing of the accumulated delay (weight of the old value).
pub const SMOOTHING: f64 = 0.9;
/// Gain applied to the slope before comparing it with the threshold.
pub const THRESHOLD_GAIN: f64 = 4.0;
/// The slope is trusted more as groups accumulate, up to this many.
pub const MAX_DELTAS_WEIGHT: usize = 60;
/// Initial threshold γ, ms.
pub const THRESHOLD_INITIAL_MS: f64 = 12.5;
/// Bounds of γ, ms.
pub const THRESHOLD_MIN_MS: f64 = 6.0;
/// Bounds of γ, ms.
pub const THRESHOLD_MAX_MS: f64 = 600.0;
/// γ's adaptation speed when the signal is above it (per ms).
pub const K_UP: f64 = 0.0087;
/// γ's adaptation speed when the signal is below it (per ms).
pub const K_DOWN: f64 = 0.039;
/// A signal this far above γ is a spike (a route change, a pause) and does
/// not move γ.
pub const THRESHOLD_SPIKE_MS: f64 = 15.0;
/// How long the signal must stay above γ before it counts as overuse.
pub const OVERUSE_TIME: Duration = Duration::from_millis(10);
/// An arrival gap this long (an outage, a pause of the sender) restarts the
/// filter: delay measured across it means nothing.
pub const RESET_GAP: Duration = Duration::from_secs(2);

/// What the delay signal says about the bottleneck queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Usage {
    /// The queue is stable.
    Normal,
    /// The queue is growing: we send more than the link carries.
    Overusing,
    /// The queue is draining.
    Underusing,
}

/// A group of packets sent together.
#[derive(Debug, Clone, Copy)]
struct Group {
    first_departure: Instant,
    last_departure: Instant,
    last_arrival: Duration,
    /// When the group's feedback was processed (our clock), for the detector's timing.
    complete_at: Instant,
}

/// Delay-based over-use detector: feed it arrived packets in send order.
#[derive(Debug, Clone)]
pub struct DelayDetector {
    current: Option<Group>,
    previous: Option<Group>,
    /// Arrival time of the first group, the origin of the regression's x axis.
    first_arrival: Option<Duration>,
    accumulated_ms: f64,
    smoothed_ms: f64,
    points: VecDeque<(f64, f64)>,
    deltas: usize,
    trend: f64,
    previous_trend: f64,
    threshold_ms: f64,
    last_threshold_update: Option<Instant>,
    overuse_time_ms: Option<f64>,
    overuse_count: u32,
    usage: Usage,
}

impl Default for DelayDetector {
    fn default() -> Self {
        Self::new()
    }
}

impl DelayDetector {
    /// A detector that has seen nothing.
    pub fn new() -> Self {
        Self {
            current: None,
            previous: None,
            first_arrival: None,
            accumulated_ms: 0.0,
            smoothed_ms: 0.0,
            points: VecDeque::with_capacity(WINDOW + 1),
            deltas: 0,
            trend: 0.0,
            previous_trend: 0.0,
            threshold_ms: THRESHOLD_INITIAL_MS,
            last_threshold_update: None,
            overuse_time_ms: None,
            overuse_count: 0,
            usage: Usage::Normal,
        }
    }

    /// The current verdict.
    pub fn usage(&self) -> Usage {
        self.usage
    }

    /// The latest slope of the queueing delay (ms per ms), for stats.
    pub fn trend(&self) -> f64 {
        self.trend
    }

    /// The adaptive threshold γ, ms.
    pub fn threshold_ms(&self) -> f64 {
        self.threshold_ms
    }

    /// Forgets everything measured (after an outage).
    pub fn reset(&mut self) {
        let threshold = self.threshold_ms;
        *self = Self::new();
        self.threshold_ms = threshold;
    }

    /// One arrived packet (in send order): `departure` on our clock,
    /// `arrival` on the receiver's. `now` is when its feedback arrived.
    pub fn on_packet(&mut self, now: Instant, departure: Instant, arrival: Duration) {
        let Some(mut group) = self.current else {
            self.current = Some(Group {
                first_departure: departure,
                last_departure: departure,
                last_arrival: arrival,
                complete_at: now,
            });
            return;
        };
        if departure < group.first_departure {
            // Reordered on our side (a retransmission recorded late): skip.
            return;
        }
        let in_send_burst = departure.saturating_duration_since(group.first_departure) <= BURST_SEND_SPAN;
        let in_arrival_burst = {
            let arrival_delta = arrival.checked_sub(group.last_arrival);
            let departure_delta = departure.saturating_duration_since(group.last_departure);
            arrival_delta.is_some_and(|a| a <= BURST_ARRIVAL_SPAN && a < departure_delta)
        };
        if in_send_burst || in_arrival_burst {
            group.last_departure = group.last_departure.max(departure);
            group.last_arrival = group.last_arrival.max(arrival);
            group.complete_at = now;
            self.current = Some(group);
            return;
        }
        // The current group is complete: compare it with the previous one.
        if let Some(previous) = self.previous {
            self.on_group_delta(previous, group);
        }
        self.previous = self.current;
        self.current = Some(Group {
            first_departure: departure,
            last_departure: departure,
            last_arrival: arrival,
            complete_at: now,
        });
    }

    fn on_group_delta(&mut self, previous: Group, group: Group) {
        let send_delta = group.last_departure.saturating_duration_since(previous.last_departure);
        let Some(arrival_delta) = group.last_arrival.checked_sub(previous.last_arrival) else {
            // Arrived before its predecessor: reordering in the network. Ignore.
            return;
        };
        if arrival_delta > RESET_GAP || send_delta > RESET_GAP {
            // Across an outage or a long pause the delay says nothing.
            let threshold = self.threshold_ms;
            let current = self.current;
            *self = Self::new();
            self.threshold_ms = threshold;
            self.current = current;
            return;
        }
        let send_ms = send_delta.as_secs_f64() * 1e3;
        let variation_ms = arrival_delta.as_secs_f64() * 1e3 - send_ms;
        let origin = *self.first_arrival.get_or_insert(previous.last_arrival);
        let x_ms = group.last_arrival.saturating_sub(origin).as_secs_f64() * 1e3;
        self.deltas = (self.deltas + 1).min(MAX_DELTAS_WEIGHT * 10);
        self.accumulated_ms += variation_ms;
        self.smoothed_ms = SMOOTHING * self.smoothed_ms + (1.0 - SMOOTHING) * self.accumulated_ms;
        self.points.push_back((x_ms, self.smoothed_ms));
        if self.points.len() > WINDOW {
            self.points.pop_front();
        }
        if self.points.len() == WINDOW
            && let Some(slope) = linear_fit_slope(&self.points)
        {
            self.trend = slope;
        }
        self.detect(send_ms, group.complete_at);
    }

    fn detect(&mut self, send_ms: f64, now: Instant) {
        if self.deltas < 2 {
            return;
        }
        let modified = self.deltas.min(MAX_DELTAS_WEIGHT) as f64 * self.trend * THRESHOLD_GAIN;
        if modified > self.threshold_ms {
            let time = match self.overuse_time_ms {
                None => send_ms / 2.0,
                Some(t) => t + send_ms,
            };
            self.overuse_time_ms = Some(time);
            self.overuse_count += 1;
            if time > OVERUSE_TIME.as_secs_f64() * 1e3 && self.overuse_count > 1 && self.trend >= self.previous_trend {
                self.overuse_time_ms = Some(0.0);
                self.overuse_count = 0;
                self.usage = Usage::Overusing;
            }
        } else if modified < -self.threshold_ms {
            self.overuse_time_ms = None;
            self.overuse_count = 0;
            self.usage = Usage::Underusing;
        } else {
            self.overuse_time_ms = None;
            self.overuse_count = 0;
            self.usage = Usage::Normal;
        }
        self.previous_trend = self.trend;
        self.update_threshold(modified, now);
    }

    fn update_threshold(&mut self, modified: f64, now: Instant) {
        let last = *self.last_threshold_update.get_or_insert(now);
        if modified.abs() > self.threshold_ms + THRESHOLD_SPIKE_MS {
            // A spike: do not let it drag γ up.
            self.last_threshold_update = Some(now);
            return;
        }
        let k = if modified.abs() < self.threshold_ms { K_DOWN } else { K_UP };
        let dt_ms = (now.saturating_duration_since(last).as_secs_f64() * 1e3).min(100.0);
        self.threshold_ms += k * (modified.abs() - self.threshold_ms) * dt_ms;
        self.threshold_ms = self.threshold_ms.clamp(THRESHOLD_MIN_MS, THRESHOLD_MAX_MS);
        self.last_threshold_update = Some(now);
    }
}

/// Least-squares slope of `y` over `x`; `None` when all `x` are equal.
fn linear_fit_slope(points: &VecDeque<(f64, f64)>) -> Option<f64> {
    let n = points.len() as f64;
    let (sx, sy) = points.iter().fold((0.0, 0.0), |(a, b), (x, y)| (a + x, b + y));
    let (mx, my) = (sx / n, sy / n);
    let (num, den) =
        points.iter().fold((0.0, 0.0), |(num, den), (x, y)| (num + (x - mx) * (y - my), den + (x - mx) * (x - mx)));
    (den > 0.0).then(|| num / den)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sends a 1200-byte packet every `gap`, through a bottleneck of
    /// `link_bps` with a FIFO queue; returns the verdicts after each packet.
    fn run(detector: &mut DelayDetector, t0: Instant, packets: usize, gap: Duration, link_bps: f64) -> Vec<Usage> {
        let service = Duration::from_secs_f64(1200.0 * 8.0 / link_bps);
        let mut link_free = Duration::ZERO;
        let mut verdicts = vec![];
        for i in 0..packets {
            let sent = gap * i as u32;
            let start = link_free.max(sent);
            link_free = start + service;
            let arrival = link_free + Duration::from_millis(20);
            // Feedback arrives 20 ms after the packet.
            detector.on_packet(t0 + arrival + Duration::from_millis(20), t0 + sent, arrival);
            verdicts.push(detector.usage());
        }
        verdicts
    }

    #[test]
    fn a_link_faster_than_the_sender_is_normal() {
        let t0 = Instant::now();
        let mut d = DelayDetector::new();
        // 1 Mbps into a 2 Mbps link for 5 s.
        let v = run(&mut d, t0, 520, Duration::from_micros(9_600), 2e6);
        assert!(v.iter().all(|u| *u != Usage::Overusing), "no overuse on an idle link");
    }

    #[test]
    fn a_growing_queue_is_detected_quickly() {
        let t0 = Instant::now();
        let mut d = DelayDetector::new();
        // 1.5 Mbps into a 1 Mbps link: the queue grows 0.5 ms per ms.
        let v = run(&mut d, t0, 200, Duration::from_micros(6_400), 1e6);
        let first = v.iter().position(|u| *u == Usage::Overusing).expect("overuse detected");
        // Each packet is 6.4 ms of sending: detected within ~0.5 s of sending.
        assert!(first < 80, "detected after {first} packets");
    }

    #[test]
    fn a_draining_queue_is_underuse_and_an_outage_resets() {
        let t0 = Instant::now();
        let mut d = DelayDetector::new();
        // Build a queue, then stop sending faster than the link: arrivals
        // come closer together than departures as the queue drains.
        let service = Duration::from_secs_f64(1200.0 * 8.0 / 1e6);
        let mut link_free = Duration::ZERO;
        let mut saw_under = false;
        for i in 0..400u32 {
            let gap = if i < 150 { Duration::from_micros(6_000) } else { Duration::from_micros(12_000) };
            let sent = if i < 150 { gap * i } else { Duration::from_micros(6_000) * 150 + gap * (i - 150) };
            let start = link_free.max(sent);
            link_free = start + service;
            d.on_packet(t0 + link_free + Duration::from_millis(40), t0 + sent, link_free);
            saw_under |= i > 150 && d.usage() == Usage::Underusing;
        }
        assert!(saw_under, "draining queue seen as underuse");
        // A 3 s gap restarts the filter instead of reading it as delay.
        let sent = Duration::from_secs(10);
        d.on_packet(t0 + sent, t0 + sent, sent);
        d.on_packet(
            t0 + sent + Duration::from_millis(20),
            t0 + sent + Duration::from_millis(20),
            sent + Duration::from_millis(20),
        );
        assert_eq!(d.usage(), Usage::Normal);
        assert_eq!(d.trend(), 0.0);
    }

    #[test]
    fn threshold_stays_in_bounds() {
        let t0 = Instant::now();
        let mut d = DelayDetector::new();
        run(&mut d, t0, 2000, Duration::from_micros(4_000), 1e6);
        assert!((THRESHOLD_MIN_MS..=THRESHOLD_MAX_MS).contains(&d.threshold_ms()));
    }

    #[test]
    fn slope_of_a_line() {
        let pts: VecDeque<(f64, f64)> = (0..10).map(|i| (f64::from(i), 3.0 * f64::from(i) + 1.0)).collect();
        assert!((linear_fit_slope(&pts).unwrap() - 3.0).abs() < 1e-9);
        let flat: VecDeque<(f64, f64)> = (0..3).map(|_| (1.0, 2.0)).collect();
        assert_eq!(linear_fit_slope(&flat), None);
    }
}
