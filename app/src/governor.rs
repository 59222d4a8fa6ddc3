//! Frame-rate governor: when the link cannot carry the user's frame rate
//! at a readable quality (busy content on a slow link, where even the
//! coarsest quantiser overshoots, or the frame dropper keeps skipping
//! frames), fewer frames per second is how screen content keeps its
//! resolution and sharp text: the frame rate goes down first, to
//! [`MIN_FPS`] at worst, before anything else gives. When the link
//! recovers, the rate climbs back.
//!
//! Two limits: the user's (`max_fps`, the frame-rate setting) and the
//! link's (`link_fps`, what the governor measured the link allows). The
//! rate in force is the lower one. Raising the user's setting applies at
//! once unless the link limit is lower, and [`FpsGovernor::limited_by_link`]
//! says so (the status line and the GUI show it).
//!
//! Pure logic: feed it encoded frame sizes, frames the frame dropper
//! skipped and the target, with `now`.

use std::time::{Duration, Instant};

/// Lowest frame rate the governor goes down to.
pub const MIN_FPS: f32 = 2.0;
/// How often the governor decides.
pub const WINDOW: Duration = Duration::from_secs(1);
/// Achieved bitrate above this multiple of the target: lower the rate.
pub const OVERSHOOT: f64 = 1.25;
/// Share of captured frames the frame dropper skipped above which the rate
/// is lowered to what actually gets encoded (capturing and budgeting frames
/// that are then skipped wastes CPU and makes the encoder spend each
/// frame's bits too thinly).
pub const SKIP_SHARE: f64 = 0.2;
/// Step up when the link leaves room for a quarter more.
pub const STEP_UP: f32 = 1.25;
/// After this many calm windows (no overshoot, no skipped frames) the
/// governor tries a step up even without visible room: at a lowered frame
/// rate the encoder's rate control fills each frame up to the target, so
/// "room" never shows.
pub const CALM_WINDOWS: u32 = 3;
/// A step up that fails at once doubles the calm windows needed, up to this.
pub const MAX_CALM_WINDOWS: u32 = 24;

/// Decides the capture frame rate from the achieved and target bitrates.
#[derive(Debug, Clone)]
pub struct FpsGovernor {
    max_fps: f32,
    /// What the link allows, when lower than `max_fps`.
    link_fps: Option<f32>,
    target_bps: u32,
    window_start: Option<Instant>,
    window_bytes: u64,
    window_frames: u32,
    window_skipped: u32,
    window_keyframe: bool,
    calm: u32,
    calm_needed: u32,
    just_stepped_up: bool,
}

impl FpsGovernor {
    /// A governor allowing up to `max_fps`, aiming at `target_bps`.
    pub fn new(max_fps: f32, target_bps: u32) -> Self {
        Self {
            max_fps: max_fps.max(MIN_FPS),
            link_fps: None,
            target_bps,
            window_start: None,
            window_bytes: 0,
            window_frames: 0,
            window_skipped: 0,
            window_keyframe: false,
            calm: 0,
            calm_needed: CALM_WINDOWS,
            just_stepped_up: false,
        }
    }

    /// The frame rate in force.
    pub fn fps(&self) -> f32 {
        self.link_fps.map_or(self.max_fps, |l| l.min(self.max_fps))
    }

    /// The user's setting.
    pub fn max_fps(&self) -> f32 {
        self.max_fps
    }

    /// Whether the link, not the user's setting, decides the frame rate.
    pub fn limited_by_link(&self) -> bool {
        self.link_fps.is_some_and(|l| l < self.max_fps)
    }

    /// A new bitrate target.
    pub fn set_target(&mut self, bps: u32) {
        self.target_bps = bps.max(1);
    }

    /// A new ceiling (the user's fps setting); returns the new rate if it
    /// changed. Takes effect at once in both directions; going up it stops at
    /// what the link allows.
    pub fn set_max_fps(&mut self, fps: f32) -> Option<f32> {
        let before = self.fps();
        self.max_fps = fps.max(MIN_FPS);
        if self.link_fps.is_some_and(|l| l >= self.max_fps) {
            self.link_fps = None;
        }
        let next = self.fps();
        (next != before).then_some(next)
    }

    /// The frame dropper skipped a captured frame.
    pub fn on_skipped(&mut self, now: Instant) -> Option<f32> {
        self.window_start.get_or_insert(now);
        self.window_skipped += 1;
        self.decide(now)
    }

    /// Records an encoded frame; returns a new frame rate when it should change.
    pub fn on_frame(&mut self, bytes: usize, now: Instant) -> Option<f32> {
        self.on_encoded(bytes, false, now)
    }

    /// Records an encoded frame, saying whether it was a keyframe (a window
    /// with one does not count its skipped frames against the rate: the
    /// frame dropper makes room for a keyframe once, not for the content).
    pub fn on_encoded(&mut self, bytes: usize, keyframe: bool, now: Instant) -> Option<f32> {
        self.window_start.get_or_insert(now);
        self.window_bytes += bytes as u64;
        self.window_frames += 1;
        self.window_keyframe |= keyframe;
        self.decide(now)
    }

    fn decide(&mut self, now: Instant) -> Option<f32> {
        let start = self.window_start.unwrap_or(now);
        let elapsed = now.saturating_duration_since(start);
        if elapsed < WINDOW {
            return None;
        }
        let achieved_bps = self.window_bytes as f64 * 8.0 / elapsed.as_secs_f64();
        let (frames, skipped, keyframe) = (self.window_frames, self.window_skipped, self.window_keyframe);
        self.window_start = Some(now);
        self.window_bytes = 0;
        self.window_frames = 0;
        self.window_skipped = 0;
        self.window_keyframe = false;
        let fps = self.fps();
        let target = f64::from(self.target_bps);
        let skip_share = f64::from(skipped) / f64::from((frames + skipped).max(1));
        let overshoot = achieved_bps > target * OVERSHOOT;
        let skipping = skip_share > SKIP_SHARE && !keyframe;
        if overshoot || skipping {
            self.calm = 0;
            if self.just_stepped_up {
                // The last step up did not hold: wait longer before the next.
                self.calm_needed = (self.calm_needed * 2).min(MAX_CALM_WINDOWS);
            }
        } else if skipped == 0 {
            self.calm += 1;
        }
        self.just_stepped_up = false;
        let next = if overshoot {
            // Scale the rate by how far over we are, at most halving per step.
            Some((fps * (target / achieved_bps).max(0.5) as f32).max(MIN_FPS))
        } else if skipping {
            // The frame dropper throws away many captured frames: capture
            // (and budget) only as many as get encoded.
            Some((fps * (1.0 - skip_share as f32)).max(fps * 0.5).max(MIN_FPS))
        } else if self.link_fps.is_some()
            && ((achieved_bps * OVERSHOOT <= target && skipped == 0) || self.calm >= self.calm_needed)
        {
            // Room for at least a quarter more, or calm for long enough: step up.
            if self.calm >= self.calm_needed * 2 {
                self.calm_needed = CALM_WINDOWS;
            }
            self.calm = 0;
            self.just_stepped_up = true;
            self.link_fps.map(|l| l * STEP_UP)
        } else {
            None
        };
        if let Some(next) = next {
            let next = (next * 10.0).round() / 10.0;
            self.link_fps = (next < self.max_fps).then_some(next);
        }
        let after = self.fps();
        (after != fps).then_some(after)
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
        // ≈ 15 fps meets the target; it stays around there: the calm-window
        // step ups that fail back off (at most a few changes in 30 s).
        assert!((12.0..=17.0).contains(&g.fps()), "{rates:?}");
        assert!(g.limited_by_link());
        let mut changes = 0;
        for _ in 0..30 {
            if second(&mut g, 8_000, &mut t).is_some() {
                changes += 1;
            }
            assert!((10.0..=25.0).contains(&g.fps()), "{}", g.fps());
        }
        assert!(changes <= 8, "{changes} changes in 30 s");
        // Link recovers.
        g.set_target(10_000_000);
        for _ in 0..10 {
            second(&mut g, 8_000, &mut t);
        }
        assert_eq!(g.fps(), 30.0);
        assert!(!g.limited_by_link());
    }

    #[test]
    fn never_below_the_minimum_nor_above_the_maximum() {
        let mut t = Instant::now();
        let mut g = FpsGovernor::new(30.0, 10_000);
        for _ in 0..20 {
            second(&mut g, 100_000, &mut t);
        }
        assert_eq!(g.fps(), MIN_FPS);
        assert_eq!(g.set_max_fps(60.0), None, "the link still allows only the minimum");
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

    /// Issue 16: raising the frame rate while sharing applies at once when
    /// the link allows it, and is reported as link-limited when not.
    #[test]
    fn raising_the_users_rate_applies_at_once_unless_the_link_limits_it() {
        let mut t = Instant::now();
        let mut g = FpsGovernor::new(15.0, 4_000_000);
        for _ in 0..3 {
            assert_eq!(second(&mut g, 4_000, &mut t), None, "15 fps of 4 KB is well under 4 Mbps");
        }
        assert_eq!(g.set_max_fps(30.0), Some(30.0), "15 → 30 applies immediately");
        assert!(!g.limited_by_link());
        assert_eq!(g.set_max_fps(10.0), Some(10.0), "and down");
        // A slow link: 30 KB frames at 10 fps is 2.4 Mbps on a 1 Mbps target.
        g.set_target(1_000_000);
        g.set_max_fps(10.0);
        for _ in 0..4 {
            second(&mut g, 30_000, &mut t);
        }
        let link = g.fps();
        assert!(link < 10.0 && g.limited_by_link(), "the link limits: {link}");
        assert_eq!(g.set_max_fps(30.0), None, "raising the setting cannot beat the link");
        assert!(g.limited_by_link());
        assert_eq!(g.max_fps(), 30.0, "but the setting is kept for when the link recovers");
        // Lowering the setting below the link's limit: the user decides again.
        assert_eq!(g.set_max_fps(2.0), Some(2.0));
        assert!(!g.limited_by_link());
    }

    /// At a lowered rate the encoder fills each frame up to the target, so
    /// the rate must still climb back when nothing overshoots or skips.
    #[test]
    fn a_lowered_rate_climbs_back_when_frames_fill_the_budget() {
        let mut t = Instant::now();
        let mut g = FpsGovernor::new(30.0, 600_000);
        // Something (a keyframe burst, say) pushed it down to the minimum.
        for _ in 0..6 {
            second(&mut g, 200_000, &mut t);
        }
        assert_eq!(g.fps(), MIN_FPS);
        // Now frames fill exactly the per-frame budget at whatever rate.
        for _ in 0..40 {
            let bytes = (600_000.0 / 8.0 / g.fps()) as usize;
            second(&mut g, bytes, &mut t);
        }
        assert_eq!(g.fps(), 30.0, "back to the setting");
    }

    #[test]
    fn skipping_around_a_keyframe_does_not_lower_the_rate() {
        let mut t = Instant::now();
        let mut g = FpsGovernor::new(30.0, 1_000_000);
        let mut change = None;
        for i in 0..30 {
            t += Duration::from_millis(33);
            let c = match i {
                0 => g.on_encoded(80_000, true, t),
                1..=20 => g.on_skipped(t),
                _ => g.on_encoded(4_000, false, t),
            };
            change = change.or(c);
        }
        t += Duration::from_millis(100);
        change = change.or(g.on_encoded(4_000, false, t));
        assert_eq!(change, None, "{}", g.fps());
    }

    #[test]
    fn frames_the_dropper_skips_lower_the_rate_to_what_gets_encoded() {
        let mut t = Instant::now();
        let mut g = FpsGovernor::new(30.0, 1_000_000);
        let mut change = None;
        // Each second: 10 frames encoded on target, 20 skipped by the dropper.
        for _ in 0..2 {
            for i in 0..30 {
                t += Duration::from_millis(33);
                let c = if i % 3 == 0 { g.on_frame(4_000, t) } else { g.on_skipped(t) };
                change = change.or(c);
            }
        }
        let fps = change.expect("rate lowered");
        assert!((15.0..=20.0).contains(&fps), "at most halved per step: {fps}");
        assert!(g.limited_by_link());
    }
}
