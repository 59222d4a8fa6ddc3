//! Frame-rate governor: when the encoder cannot meet the congestion
//! controller's bitrate at the full frame rate (busy content on a slow link,
//! where even the coarsest quantiser overshoots), fewer frames per second is
//! the only way to keep latency from growing without bound. Text stays sharp;
//! motion gets choppier. When the link recovers, the rate climbs back.
//!
//! Pure logic: feed it encoded frame sizes and the target, with `now`.

use std::time::{Duration, Instant};

/// Lowest frame rate the governor goes down to.
pub const MIN_FPS: f32 = 2.0;
/// How often the governor decides.
pub const WINDOW: Duration = Duration::from_secs(1);

/// Decides the capture frame rate from the achieved and target bitrates.
#[derive(Debug, Clone)]
pub struct FpsGovernor {
    max_fps: f32,
    fps: f32,
    target_bps: u32,
    window_start: Option<Instant>,
    window_bytes: u64,
}

impl FpsGovernor {
    /// A governor allowing up to `max_fps`, aiming at `target_bps`.
    pub fn new(max_fps: f32, target_bps: u32) -> Self {
        Self { max_fps, fps: max_fps, target_bps, window_start: None, window_bytes: 0 }
    }

    /// The frame rate in force.
    pub fn fps(&self) -> f32 {
        self.fps
    }

    /// A new bitrate target.
    pub fn set_target(&mut self, bps: u32) {
        self.target_bps = bps.max(1);
    }

    /// A new ceiling (the user's fps setting); returns the new rate if it changed.
    pub fn set_max_fps(&mut self, fps: f32) -> Option<f32> {
        self.max_fps = fps.max(MIN_FPS);
        let next = self.fps.min(self.max_fps);
        (next != self.fps).then(|| {
            self.fps = next;
            next
        })
    }

    /// Records an encoded frame; returns a new frame rate when it should change.
    pub fn on_frame(&mut self, bytes: usize, now: Instant) -> Option<f32> {
        let start = *self.window_start.get_or_insert(now);
        self.window_bytes += bytes as u64;
        let elapsed = now.saturating_duration_since(start);
        if elapsed < WINDOW {
            return None;
        }
        let achieved_bps = self.window_bytes as f64 * 8.0 / elapsed.as_secs_f64();
        self.window_start = Some(now);
        self.window_bytes = 0;
        let target = f64::from(self.target_bps);
        let next = if achieved_bps > target * 1.25 {
            // Scale the rate by how far over we are, at most halving per step.
            (self.fps * (target / achieved_bps).max(0.5) as f32).max(MIN_FPS)
        } else if achieved_bps * 1.25 <= target {
            // Room for at least a quarter more: step up, without overshooting.
            (self.fps * 1.25).min(self.max_fps)
        } else {
            self.fps
        };
        let next = (next * 10.0).round() / 10.0;
        (next != self.fps).then(|| {
            self.fps = next;
            next
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds one second of frames of `bytes` at the governor's current rate.
    fn second(g: &mut FpsGovernor, bytes: usize, t: &mut Instant) -> Option<f32> {
        let n = g.fps().ceil() as u32;
        let step = Duration::from_secs_f32(1.0 / g.fps());
        let mut change = None;
        for _ in 0..n {
            *t += step;
            change = change.or(g.on_frame(bytes, *t));
        }
        change
    }

    #[test]
    fn overshoot_lowers_the_rate_and_recovery_raises_it() {
        let mut t = Instant::now();
        let mut g = FpsGovernor::new(30.0, 1_000_000);
        // 8 KB frames at 30 fps ≈ 2 Mbps: twice the target.
        assert_eq!(second(&mut g, 8_000, &mut t), None, "the first window only starts timing");
        let mut rates = vec![];
        for _ in 0..6 {
            if let Some(f) = second(&mut g, 8_000, &mut t) {
                rates.push(f);
            }
        }
        // ≈ 15 fps meets the target; it settles there instead of oscillating.
        assert!((12.0..=17.0).contains(&g.fps()), "{rates:?}");
        let settled = g.fps();
        for _ in 0..5 {
            assert_eq!(second(&mut g, 8_000, &mut t), None, "settled at {settled}");
        }
        // Link recovers.
        g.set_target(10_000_000);
        for _ in 0..10 {
            second(&mut g, 8_000, &mut t);
        }
        assert_eq!(g.fps(), 30.0);
    }

    #[test]
    fn never_below_the_minimum_nor_above_the_maximum() {
        let mut t = Instant::now();
        let mut g = FpsGovernor::new(30.0, 10_000);
        for _ in 0..20 {
            second(&mut g, 100_000, &mut t);
        }
        assert_eq!(g.fps(), MIN_FPS);
        assert_eq!(g.set_max_fps(60.0), None);
        assert_eq!(g.set_max_fps(1.0), None, "the ceiling never goes under the minimum");
    }

    #[test]
    fn on_target_the_rate_holds() {
        let mut t = Instant::now();
        let mut g = FpsGovernor::new(30.0, 2_000_000);
        for _ in 0..10 {
            assert_eq!(second(&mut g, 8_300, &mut t), None);
        }
    }
}
