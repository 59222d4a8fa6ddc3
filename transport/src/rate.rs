//! Combining viewers' bandwidth estimates into one encoder bitrate.
//!
//! One encode feeds every viewer, so one bitrate must suit them all. Each
//! viewer's connection runs GCC on its TWCC feedback, and the estimates
//! combine like this (each times a margin for RTP and retransmissions):
//!
//! * every viewer at or above the preset's floor: the **lowest** estimate,
//!   capped at the ceiling — the slowest viewer sets the pace;
//! * some below the floor, some above: **the floor** — a viewer whose link
//!   cannot carry the floor does not drag the others into mush; it falls
//!   behind, its queue overflows, it skips to the next keyframe, and the
//!   others are unaffected;
//! * every viewer below the floor (a lone viewer on a slow link, say): the
//!   **highest** estimate, never below [`ABSOLUTE_MIN_BPS`] — a blurry
//!   picture that moves beats a sharp one that never arrives.
//!
//! Changes are applied when they move the target by more than 10 % (or reach
//! a bound), at most every 250 ms, so the encoder is not reconfigured on
//! every report; increases by at most [`MAX_INCREASE_PER_CHANGE`] each.
//!
//! The same policy combines the viewers' **send queues** into the one
//! backlog the encoder's frame dropper watches
//! ([`RateController::governing_backlog`]): the longest queue among the
//! viewers whose estimate sets the rate. A viewer left below the floor does
//! not make the encoder skip frames for everyone; its own frames are dropped
//! before packetization instead (see `crate::share`).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Share of the estimate given to the encoder (the rest covers RTP headers,
/// RTCP and retransmissions).
pub const ESTIMATE_MARGIN: f64 = 0.85;
/// Where each viewer's bandwidth estimator starts: low enough that the
/// first keyframe does not overrun a 1 Mbit/s link, and the start-up probes
/// (3× and 6×, then exponential) find a faster link within a few hundred
/// milliseconds.
pub const BWE_START_BPS: f64 = 1_000_000.0;
/// The bandwidth estimator never goes below this.
pub const BWE_MIN_BPS: f64 = 100_000.0;
/// Where the encoder starts: its share of [`BWE_START_BPS`].
pub const START_BPS: u32 = (BWE_START_BPS * ESTIMATE_MARGIN) as u32;
/// The encoder never goes below this, whatever the estimates.
pub const ABSOLUTE_MIN_BPS: u32 = 200_000;
/// Minimum time between encoder bitrate changes.
pub const MIN_UPDATE_INTERVAL: Duration = Duration::from_millis(250);
/// The encoder's target rises at most by this factor per change (decreases
/// apply at once): an estimate a probe raised is confirmed by the delay
/// signal within a few hundred milliseconds, before the encoder has
/// committed to it (on a LAN 1 → 6 Mbps still takes ≈ 1 s).
pub const MAX_INCREASE_PER_CHANGE: f64 = 1.5;

/// A bitrate range, in bits per second.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BitrateRange {
    /// Never go below this.
    pub floor_bps: u32,
    /// Never go above this.
    pub ceiling_bps: u32,
}

impl BitrateRange {
    /// A range; `floor` is raised to at least 50 kbps and `ceiling` to at least `floor`.
    pub fn new(floor_bps: u32, ceiling_bps: u32) -> Self {
        let floor_bps = floor_bps.max(50_000);
        Self { floor_bps, ceiling_bps: ceiling_bps.max(floor_bps) }
    }

    /// Clamps a value into the range.
    pub fn clamp(&self, bps: u32) -> u32 {
        bps.clamp(self.floor_bps, self.ceiling_bps)
    }
}

/// The combined send backlog, published by the share for the encoder's
/// frame dropper. Cloning shares the value.
#[derive(Debug, Clone, Default)]
pub struct SendBacklog(Arc<AtomicU64>);

impl SendBacklog {
    /// The backlog now.
    pub fn get(&self) -> Duration {
        Duration::from_micros(self.0.load(Ordering::Relaxed))
    }

    /// Publishes a new value.
    pub fn set(&self, backlog: Duration) {
        self.0.store(backlog.as_micros().min(u128::from(u64::MAX)) as u64, Ordering::Relaxed);
    }
}

/// Decides the encoder bitrate from the viewers' estimates.
#[derive(Debug, Clone)]
pub struct RateController {
    range: BitrateRange,
    current_bps: u32,
    last_change: Option<Instant>,
}

impl RateController {
    /// Starts at [`START_BPS`] (within the range): a first keyframe blasted
    /// at a high rate into a slow link takes seconds to arrive and can
    /// collapse the estimate; on a LAN the estimator's probes climb from
    /// there within a second.
    pub fn new(range: BitrateRange) -> Self {
        Self { range, current_bps: range.clamp(START_BPS), last_change: None }
    }

    /// The bitrate the encoder should run at now.
    pub fn current_bps(&self) -> u32 {
        self.current_bps
    }

    /// The range in force.
    pub fn range(&self) -> BitrateRange {
        self.range
    }

    /// Changes the range (a preset change); returns the new target if it moved.
    pub fn set_range(&mut self, range: BitrateRange, now: Instant) -> Option<u32> {
        self.range = range;
        let target = range.clamp(self.current_bps);
        self.change(target, now, true)
    }

    /// The send backlog the encoder should respect: the longest queue among
    /// the viewers the rate follows (all of them when every estimate is at
    /// or above the floor; those at or above it when some are below; the
    /// best one when all are below). `viewers` yields (estimate bps, queue).
    pub fn governing_backlog(&self, viewers: impl IntoIterator<Item = (f64, Duration)>) -> Duration {
        let viewers: Vec<(f64, Duration)> = viewers
            .into_iter()
            .filter(|(e, _)| e.is_finite() && *e > 0.0)
            .map(|(e, q)| (e * ESTIMATE_MARGIN, q))
            .collect();
        let floor = f64::from(self.range.floor_bps);
        let any_above = viewers.iter().any(|(e, _)| *e >= floor);
        if any_above {
            viewers.iter().filter(|(e, _)| *e >= floor).map(|(_, q)| *q).max().unwrap_or_default()
        } else {
            viewers.iter().max_by(|a, b| a.0.total_cmp(&b.0)).map(|(_, q)| *q).unwrap_or_default()
        }
    }

    /// Whether a viewer whose estimate is `estimate_bps` is one the rate
    /// follows (see the module docs), among viewers with `all` estimates.
    pub fn governs(&self, estimate_bps: f64, all: impl IntoIterator<Item = f64>) -> bool {
        let floor = f64::from(self.range.floor_bps) / ESTIMATE_MARGIN;
        let all: Vec<f64> = all.into_iter().filter(|e| e.is_finite() && *e > 0.0).collect();
        if all.iter().any(|e| *e >= floor) { estimate_bps >= floor } else { all.iter().all(|e| *e <= estimate_bps) }
    }

    /// Feeds the current estimates (bps) of all connected viewers. Returns a
    /// new encoder bitrate when it should change.
    pub fn update(&mut self, estimates_bps: impl IntoIterator<Item = f64>, now: Instant) -> Option<u32> {
        let usable: Vec<u32> = estimates_bps
            .into_iter()
            .filter(|e| e.is_finite() && *e > 0.0)
            .map(|e| (e * ESTIMATE_MARGIN).min(f64::from(u32::MAX)) as u32)
            .collect();
        let (lowest, highest) = (*usable.iter().min()?, *usable.iter().max()?);
        let floor = self.range.floor_bps;
        let target = if lowest >= floor {
            lowest.min(self.range.ceiling_bps)
        } else if highest >= floor {
            floor
        } else {
            highest.max(ABSOLUTE_MIN_BPS)
        };
        self.change(target, now, false)
    }

    fn change(&mut self, target: u32, now: Instant, immediate: bool) -> Option<u32> {
        let target = if immediate {
            target
        } else {
            target.min((f64::from(self.current_bps) * MAX_INCREASE_PER_CHANGE) as u32).max(target.min(self.current_bps))
        };
        if target == self.current_bps {
            return None;
        }
        let relative = (f64::from(target) - f64::from(self.current_bps)).abs() / f64::from(self.current_bps.max(1));
        let at_bound = target == self.range.floor_bps || target == self.range.ceiling_bps || target == ABSOLUTE_MIN_BPS;
        let waited = self.last_change.is_none_or(|t| now.saturating_duration_since(t) >= MIN_UPDATE_INTERVAL);
        if immediate || (waited && (relative > 0.10 || at_bound)) {
            self.current_bps = target;
            self.last_change = Some(now);
            Some(target)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lowest_viewer_sets_the_rate_within_the_range() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut r = RateController::new(BitrateRange::new(500_000, 4_000_000));
        assert_eq!(r.current_bps(), START_BPS);
        // Up towards the slowest viewer (0.85 × 2 Mbps), 1.5 × per change.
        assert_eq!(r.update([10e6, 2e6, 3e6], t0), Some(1_275_000));
        assert_eq!(r.update([10e6, 2e6, 3e6], t0 + ms(250)), Some(1_700_000));
        // A viewer below the floor does not drag everyone below it.
        assert_eq!(r.update([100e3, 5e6], t0 + ms(1000)), Some(500_000));
        // Everyone below the floor: the best of them, not less than the absolute minimum.
        assert_eq!(r.update([300e3, 400e3], t0 + ms(1500)), Some(340_000));
        assert_eq!(r.update([50e3], t0 + ms(2000)), Some(ABSOLUTE_MIN_BPS));
        // Plenty of bandwidth: back to the ceiling, step by step.
        let mut t = t0 + ms(2500);
        let mut steps = vec![];
        while let Some(bps) = r.update([50e6], t) {
            steps.push(bps);
            t += ms(250);
        }
        assert_eq!(steps.last(), Some(&4_000_000), "{steps:?}");
        assert!(steps.windows(2).all(|w| f64::from(w[1]) <= 1.5 * f64::from(w[0]) + 1.0), "{steps:?}");
        // No viewers: no change.
        assert_eq!(r.update([], t), None);
    }

    #[test]
    fn small_or_fast_changes_are_held_back() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut r = RateController::new(BitrateRange::new(100_000, 10_000_000));
        let mut t = t0;
        loop {
            if r.update([4e6], t).is_some() && r.current_bps() == 3_400_000 {
                break;
            }
            t += ms(250);
        }
        assert_eq!(r.update([4.2e6], t + ms(50)), None, "under 10 %");
        assert_eq!(r.update([2e6], t + ms(100)), None, "too soon after the last change");
        assert_eq!(r.update([2e6], t + ms(300)), Some(1_700_000), "decreases apply in full");
        assert_eq!(r.update([f64::NAN, -1.0], t + ms(9000)), None);
    }

    #[test]
    fn backlog_follows_the_viewers_the_rate_follows() {
        let r = RateController::new(BitrateRange::new(500_000, 4_000_000));
        let ms = Duration::from_millis;
        // Everyone above the floor: the longest queue.
        assert_eq!(r.governing_backlog([(2e6, ms(50)), (1e6, ms(200))]), ms(200));
        // A viewer below the floor does not hold the encoder back.
        assert_eq!(r.governing_backlog([(2e6, ms(50)), (0.3e6, ms(900))]), ms(50));
        // Everyone below: the best viewer (the one followed).
        assert_eq!(r.governing_backlog([(0.2e6, ms(800)), (0.4e6, ms(100))]), ms(100));
        assert_eq!(r.governing_backlog([]), Duration::ZERO);
        // Who governs: everyone at or above the floor; below it, the best.
        let all = [2e6, 0.3e6];
        assert!(r.governs(2e6, all) && !r.governs(0.3e6, all));
        let all = [0.2e6, 0.4e6];
        assert!(r.governs(0.4e6, all) && !r.governs(0.2e6, all));
        assert!(r.governs(0.2e6, [0.2e6]), "a lone viewer always governs");
        let b = SendBacklog::default();
        let c = b.clone();
        b.set(ms(120));
        assert_eq!(c.get(), ms(120));
    }

    #[test]
    fn preset_change_applies_at_once() {
        let t0 = Instant::now();
        let mut r = RateController::new(BitrateRange::new(1_000_000, 8_000_000));
        assert_eq!(r.set_range(BitrateRange::new(300_000, 600_000), t0), Some(600_000));
        assert_eq!(r.range().ceiling_bps, 600_000);
    }
}
