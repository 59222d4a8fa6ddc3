//! Encoder budgeting that does not depend on the encoder: when to skip a
//! frame, and what quantiser a keyframe needs to fit its budget. Pure logic
//! fed with `now`, used by the app's encode loop (and by the transport's link
//! simulation, which models the encoder with it).
//!
//! * [`FrameDropper`]: a leaky bucket in front of the encoder. Every encoded
//!   frame pours its bits in; the bucket drains at the target bitrate. When
//!   it holds more than [`BUCKET_LIMIT`] of the target (the encoder overshot:
//!   a keyframe, a full-screen change, busy content at the coarsest
//!   quantiser), the next frames are skipped — whole frames, before the
//!   encoder sees them, so the stream has no holes and the decoder's
//!   reference chain stays intact. A frame is also skipped while the
//!   transport's send queue would take longer than [`SEND_BACKLOG_LIMIT`] to
//!   drain (the link got slower than the target): encoding it would only
//!   queue it behind older ones.
//! * [`KeyframeBudget`]: an IDR should cost [`KEYFRAME_FRAME_BUDGETS`] frame
//!   budgets, between [`KEYFRAME_MIN_TIME`] and [`KEYFRAME_MAX_TIME`] of the
//!   target bitrate. Encoders' own rate control gives screen-content
//!   keyframes far more (OpenH264 caps a keyframe's QP at 40 whatever the
//!   bitrate: ≈ 300 KB at 1080p, seconds on a slow link). The budget picks
//!   the QP from a size model `bytes = c · pixels · 2^(−QP/6)` whose constant
//!   is learnt from the keyframes actually produced (a prior until then).
//!   The QP may rise for keyframes up to 51; the picture sharpens again with
//!   the following P frames (and the paint-over refinement when the screen
//!   turns static).
//! * [`RateAdjuster`]: OpenH264's rate control budgets each frame as
//!   bitrate ÷ the configured frame rate. A screen share's frames come at
//!   the capture's pace, not the configured one (a loaded machine, frames
//!   the frame dropper skipped, content changing at 15 fps), so its output
//!   falls short of the target in proportion — a share on a 2.5 Mbit/s link
//!   sent 1.3 Mbit/s of busy content at 16 fps — leaving the link the
//!   estimator measured unused, the picture softer than it allows, and the
//!   sender looking application-limited (so the estimate stops growing).
//!   Telling OpenH264 the measured frame rate would reset its rate control
//!   at every change. The adjuster instead measures the encoder's
//!   delta-frame output over one-second windows in which the rate control
//!   spends its per-frame budget (frames of at least [`RATE_SPEND`] of it:
//!   content that needs the bits; a static screen or text that scrolls
//!   cheaply does not, and more target would change nothing), and scales the
//!   target the rate control is given by a gain (1 to [`MAX_RATE_GAIN`]) so
//!   the output lands near [`RATE_AIM`] of the real target. An overshoot
//!   takes the gain back down at once; idle windows reset it. Keyframe
//!   budgets and the frame dropper keep using the real target, so the link
//!   is protected whatever the gain.

use std::time::{Duration, Instant};

/// The bucket may hold this much time's worth of the target before frames
/// are skipped.
pub const BUCKET_LIMIT: Duration = Duration::from_millis(300);
/// Frames are skipped while the send queue takes longer than this to drain.
pub const SEND_BACKLOG_LIMIT: Duration = Duration::from_millis(300);
/// A keyframe's budget, in frame budgets (bitrate ÷ frame rate)…
pub const KEYFRAME_FRAME_BUDGETS: f64 = 4.0;
/// …but at least this much time at the target bitrate…
pub const KEYFRAME_MIN_TIME: Duration = Duration::from_millis(100);
/// …and at most this much (the send queue limit minus room for the frames after it).
pub const KEYFRAME_MAX_TIME: Duration = Duration::from_millis(250);
/// Lowest QP a budgeted keyframe gets (below it the budget is never the limit).
pub const KEYFRAME_MIN_QP: u8 = 20;
/// Highest QP (H.264's maximum).
pub const KEYFRAME_MAX_QP: u8 = 51;
/// Prior for the size model before any keyframe was measured: bytes per
/// pixel of a screen-content IDR at [`MODEL_REFERENCE_QP`]. Measured with
/// OpenH264 at 1280x720 (`encode/tests/keyframe_budget.rs`,
/// `size_model_calibration`): dense scrolling text and moving content
/// 0.13–0.19, typing on a mostly empty screen 0.005–0.04. The prior is set
/// for dense text: overestimating only makes the first keyframe smaller
/// than it could be, underestimating overruns the budget.
pub const PRIOR_BYTES_PER_PIXEL: f64 = 0.15;
/// QP the size model's constant refers to.
pub const MODEL_REFERENCE_QP: f64 = 30.0;
/// QP steps per halving of the size (H.264's quantiser step doubles every 6).
pub const QP_PER_HALVING: f64 = 6.0;
/// Weight of a new measurement in the size model (log domain).
pub const MODEL_ALPHA: f64 = 0.5;

/// The [`RateAdjuster`]'s gain never exceeds this.
pub const MAX_RATE_GAIN: f64 = 2.0;
/// The adjuster aims the encoder's output at this share of the target.
pub const RATE_AIM: f64 = 0.9;
/// Output under this share of the target raises the gain…
pub const RATE_LOW: f64 = 0.8;
/// …and over this share lowers it.
pub const RATE_HIGH: f64 = 1.05;
/// The adjuster's measuring window (of presentation time).
pub const RATE_WINDOW: Duration = Duration::from_secs(1);
/// A window is measured when its delta frames average at least this share
/// of the rate control's per-frame budget: the content takes the bits it is
/// given, so the shortfall is the frame rate's, not the content's.
/// (At 0.5, scrolling text coded at about half its budget flickered in and
/// out of it with the capture's pace, and the gain with it.)
pub const RATE_SPEND: f64 = 0.7;
/// The gain rises by at most this factor per window (it falls at once).
pub const RATE_MAX_STEP: f64 = 1.25;
/// This many unmeasured windows in a row reset the gain (the content changed).
pub const RATE_IDLE_RESET: u32 = 3;

/// Why a frame was skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Skip {
    /// The bucket holds more than [`BUCKET_LIMIT`]: the encoder overshot.
    Budget,
    /// The send queue is longer than [`SEND_BACKLOG_LIMIT`]: the link is slower than the target.
    Backlog,
}

/// Leaky-bucket frame dropper. See the module docs.
#[derive(Debug, Clone)]
pub struct FrameDropper {
    target_bps: f64,
    level_bits: f64,
    last: Option<Instant>,
    skipped_budget: u64,
    skipped_backlog: u64,
}

impl FrameDropper {
    /// An empty bucket draining at `target_bps`.
    pub fn new(target_bps: u32) -> Self {
        Self {
            target_bps: f64::from(target_bps.max(1)),
            level_bits: 0.0,
            last: None,
            skipped_budget: 0,
            skipped_backlog: 0,
        }
    }

    /// A new target bitrate.
    pub fn set_target(&mut self, target_bps: u32) {
        self.target_bps = f64::from(target_bps.max(1));
    }

    /// How much the bucket holds, as time at the target bitrate.
    pub fn level(&self) -> Duration {
        Duration::from_secs_f64(self.level_bits.max(0.0) / self.target_bps)
    }

    /// Frames skipped for the budget and for the send queue.
    pub fn skipped(&self) -> (u64, u64) {
        (self.skipped_budget, self.skipped_backlog)
    }

    fn drain(&mut self, now: Instant) {
        let last = self.last.replace(now).unwrap_or(now);
        self.level_bits =
            (self.level_bits - self.target_bps * now.saturating_duration_since(last).as_secs_f64()).max(0.0);
    }

    /// Whether to encode the frame captured now, given how long the
    /// transport's send queue takes to drain. `None`: encode it. A keyframe
    /// someone asked for is never skipped: a viewer waits for it, and the
    /// transport lets it supersede the frames queued before it.
    pub fn decide(&mut self, now: Instant, send_backlog: Duration, keyframe: bool) -> Option<Skip> {
        self.drain(now);
        if keyframe {
            None
        } else if send_backlog > SEND_BACKLOG_LIMIT {
            self.skipped_backlog += 1;
            Some(Skip::Backlog)
        } else if self.level() > BUCKET_LIMIT {
            self.skipped_budget += 1;
            Some(Skip::Budget)
        } else {
            None
        }
    }

    /// An encoded frame of `bytes` left the encoder at `now`.
    pub fn on_encoded(&mut self, now: Instant, bytes: usize) {
        self.drain(now);
        self.level_bits += bytes as f64 * 8.0;
    }
}

/// Chooses keyframe QPs so IDRs fit their budget. See the module docs.
#[derive(Debug, Clone, Default)]
pub struct KeyframeBudget {
    /// log2 of bytes per pixel at the reference QP, once measured.
    log2_bpp: Option<f64>,
}

impl KeyframeBudget {
    /// A budget using the prior until the first keyframe is measured.
    pub fn new() -> Self {
        Self::default()
    }

    /// Bytes a keyframe may take at `bitrate_bps` and `fps`.
    pub fn budget_bytes(bitrate_bps: u32, fps: f32) -> usize {
        let bps = f64::from(bitrate_bps);
        let frames = KEYFRAME_FRAME_BUDGETS * bps / f64::from(fps.max(0.1));
        let min = bps * KEYFRAME_MIN_TIME.as_secs_f64();
        let max = bps * KEYFRAME_MAX_TIME.as_secs_f64();
        (frames.clamp(min, max) / 8.0) as usize
    }

    /// The QP for the next keyframe of `pixels` pixels.
    pub fn qp_for(&self, bitrate_bps: u32, fps: f32, pixels: u32) -> u8 {
        let budget = Self::budget_bytes(bitrate_bps, fps).max(1) as f64;
        let log2_bpp = self.log2_bpp.unwrap_or(PRIOR_BYTES_PER_PIXEL.log2());
        let log2_expected_at_ref = log2_bpp + f64::from(pixels.max(1)).log2();
        let qp = MODEL_REFERENCE_QP + QP_PER_HALVING * (log2_expected_at_ref - budget.log2());
        qp.ceil().clamp(f64::from(KEYFRAME_MIN_QP), f64::from(KEYFRAME_MAX_QP)) as u8
    }

    /// The size a keyframe at `qp` is expected to have.
    pub fn expected_bytes(&self, qp: u8, pixels: u32) -> usize {
        let log2_bpp = self.log2_bpp.unwrap_or(PRIOR_BYTES_PER_PIXEL.log2());
        let log2 = log2_bpp + f64::from(pixels.max(1)).log2() - (f64::from(qp) - MODEL_REFERENCE_QP) / QP_PER_HALVING;
        log2.exp2() as usize
    }

    /// A keyframe was encoded at `qp` and came out at `bytes`.
    pub fn on_keyframe(&mut self, qp: u8, bytes: usize, pixels: u32) {
        if bytes == 0 || pixels == 0 {
            return;
        }
        let sample =
            (bytes as f64).log2() - f64::from(pixels).log2() + (f64::from(qp) - MODEL_REFERENCE_QP) / QP_PER_HALVING;
        self.log2_bpp = Some(match self.log2_bpp {
            None => sample,
            Some(m) => m + MODEL_ALPHA * (sample - m),
        });
    }
}

/// Scales an encoder's rate-control target to undo a persistent
/// undershoot. See the module docs. Time is the frames' presentation time.
#[derive(Debug, Clone)]
pub struct RateAdjuster {
    gain: f64,
    window_start: Option<Duration>,
    window_bits: f64,
    window_delta_frames: u32,
    window_keyframe: bool,
    idle_windows: u32,
}

impl Default for RateAdjuster {
    fn default() -> Self {
        Self::new()
    }
}

impl RateAdjuster {
    /// Gain 1: the rate control gets the target as it is.
    pub fn new() -> Self {
        Self {
            gain: 1.0,
            window_start: None,
            window_bits: 0.0,
            window_delta_frames: 0,
            window_keyframe: false,
            idle_windows: 0,
        }
    }

    /// The factor to multiply the target by for the rate control.
    pub fn gain(&self) -> f64 {
        self.gain
    }

    /// The rate-control target for `target_bps`.
    pub fn adjusted_bps(&self, target_bps: u32) -> u32 {
        (f64::from(target_bps) * self.gain).round().min(f64::from(u32::MAX)) as u32
    }

    /// An encoded frame (presentation time `pts`, `bytes`, keyframe or not)
    /// while the target was `target_bps` and the rate control's frame rate
    /// `fps`. Returns the new gain when it changed.
    pub fn on_frame(&mut self, pts: Duration, bytes: usize, keyframe: bool, target_bps: u32, fps: f32) -> Option<f64> {
        let start = *self.window_start.get_or_insert(pts);
        let mut changed = None;
        let span = pts.saturating_sub(start);
        if span >= RATE_WINDOW {
            changed = self.close_window(span, target_bps, fps);
            self.window_start = Some(pts);
        }
        if keyframe {
            // Budgeted separately (rate control off): it says nothing about
            // the rate control, and its size would read as an overshoot.
            self.window_keyframe = true;
        } else {
            self.window_bits += bytes as f64 * 8.0;
            self.window_delta_frames += 1;
        }
        changed
    }

    fn close_window(&mut self, span: Duration, target_bps: u32, fps: f32) -> Option<f64> {
        let (bits, frames, keyframe) = (self.window_bits, self.window_delta_frames, self.window_keyframe);
        self.window_bits = 0.0;
        self.window_delta_frames = 0;
        self.window_keyframe = false;
        if keyframe || target_bps == 0 {
            return None;
        }
        let before = self.gain;
        let used = bits / (f64::from(target_bps) * span.as_secs_f64());
        let per_frame_budget = f64::from(self.adjusted_bps(target_bps)) / f64::from(fps.max(0.1));
        let spending = frames >= 2 && bits / f64::from(frames) >= RATE_SPEND * per_frame_budget;
        if used > RATE_HIGH {
            self.idle_windows = 0;
            self.gain = (self.gain * RATE_AIM / used).max(1.0);
        } else if !spending {
            self.idle_windows += 1;
            if self.idle_windows >= RATE_IDLE_RESET {
                self.gain = 1.0;
            }
        } else {
            self.idle_windows = 0;
            if used < RATE_LOW {
                // Halfway (geometrically) towards the gain that would hit
                // the aim: the rate control reacts over a few frames.
                let step = (RATE_AIM / used.max(0.05)).sqrt().min(RATE_MAX_STEP);
                self.gain = (self.gain * step).min(MAX_RATE_GAIN);
            }
        }
        (self.gain != before).then_some(self.gain)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An OpenH264-like rate control: each frame gets the per-frame
    /// budget (rate-control target ÷ configured `fps`) when the content can
    /// use it, `need` bytes at most.
    fn per_frame(asked: u32, fps: f32, need: usize) -> usize {
        ((f64::from(asked) / 8.0 / f64::from(fps)) as usize).min(need)
    }

    /// Feeds `secs` of frames arriving at `rate` fps (configured `fps`),
    /// each sized by `bytes` from the rate-control target; returns the gain.
    fn feed(a: &mut RateAdjuster, from: f64, secs: f64, (rate, fps): (f32, f32), target: u32, need: usize) -> f64 {
        let n = (secs * f64::from(rate)) as u32;
        for i in 0..n {
            let pts = Duration::from_secs_f64(from + f64::from(i) / f64::from(rate));
            a.on_frame(pts, per_frame(a.adjusted_bps(target), fps, need), false, target, fps);
        }
        a.gain()
    }

    #[test]
    fn frames_slower_than_configured_get_a_gain_that_restores_the_rate() {
        // Busy content at 16 fps with the rate control set for 30: 53 % of the target.
        let mut a = RateAdjuster::new();
        let gain = feed(&mut a, 0.0, 10.0, (16.0, 30.0), 1_000_000, usize::MAX);
        let delivered = 16.0 / 30.0 * gain;
        assert!((RATE_LOW..=RATE_HIGH).contains(&delivered), "gain {gain}: delivers {delivered:.2} of the target");
        // At 12 fps the cap stops it.
        let mut b = RateAdjuster::new();
        assert_eq!(feed(&mut b, 0.0, 10.0, (12.0, 30.0), 1_000_000, usize::MAX), MAX_RATE_GAIN);
    }

    #[test]
    fn content_that_needs_few_bits_and_static_screens_get_no_gain() {
        // Scrolling text the encoder codes in a third of its budget: more
        // target would change nothing.
        let mut a = RateAdjuster::new();
        assert_eq!(feed(&mut a, 0.0, 10.0, (30.0, 30.0), 2_500_000, 3_500), 1.0);
        // A static screen: one keep-alive a second.
        let mut b = RateAdjuster::new();
        assert_eq!(feed(&mut b, 0.0, 10.0, (1.0, 30.0), 1_000_000, 200), 1.0);
    }

    #[test]
    fn an_overshoot_takes_the_gain_back_down_and_idle_content_resets_it() {
        let mut a = RateAdjuster::new();
        assert_eq!(feed(&mut a, 0.0, 10.0, (12.0, 30.0), 1_000_000, usize::MAX), MAX_RATE_GAIN);
        // The frames come at the full rate again: twice the target at once, then back.
        let gain = feed(&mut a, 10.0, 1.1, (30.0, 30.0), 1_000_000, usize::MAX);
        assert!(gain < 1.0 + 1e-9, "gain {gain} after an overshoot");
        // Idle (a static screen) for a few seconds after a gain: reset.
        let mut b = RateAdjuster::new();
        feed(&mut b, 0.0, 10.0, (12.0, 30.0), 1_000_000, usize::MAX);
        assert!(b.gain() > 1.5);
        feed(&mut b, 10.0, 4.0, (1.0, 30.0), 1_000_000, 200);
        assert_eq!(b.gain(), 1.0);
        // Windows with a keyframe are not measured.
        let mut c = RateAdjuster::new();
        for i in 0..300u32 {
            let pts = Duration::from_secs_f64(f64::from(i) / 15.0);
            c.on_frame(pts, per_frame(c.adjusted_bps(1_000_000), 30.0, usize::MAX), i % 15 == 0, 1_000_000, 30.0);
        }
        assert_eq!(c.gain(), 1.0, "a keyframe in every window");
    }

    #[test]
    fn the_bucket_skips_after_an_overshoot_until_it_drains() {
        let t0 = Instant::now();
        let mut d = FrameDropper::new(1_000_000);
        assert_eq!(d.decide(t0, Duration::ZERO, false), None);
        // A 100 KB keyframe: 800 ms of a 1 Mbps budget.
        d.on_encoded(t0, 100_000);
        let mut t = t0;
        let mut skipped = 0;
        while d.decide(t, Duration::ZERO, false).is_some() {
            skipped += 1;
            t += Duration::from_millis(33);
        }
        // It drains to 300 ms after ≈ 500 ms: ≈ 15 frames at 30 fps.
        assert!((14..=17).contains(&skipped), "{skipped}");
        assert_eq!(d.skipped().0, skipped);
        // Frames at the target never skip.
        for _ in 0..100 {
            t += Duration::from_millis(33);
            assert_eq!(d.decide(t, Duration::ZERO, false), None);
            d.on_encoded(t, 4_125);
        }
    }

    #[test]
    fn a_long_send_queue_skips_frames() {
        let t0 = Instant::now();
        let mut d = FrameDropper::new(1_000_000);
        assert_eq!(d.decide(t0, Duration::from_millis(301), false), Some(Skip::Backlog));
        assert_eq!(d.decide(t0, Duration::from_millis(100), false), None);
        assert_eq!(d.skipped(), (0, 1));
        // A requested keyframe goes anyway, even over budget.
        d.on_encoded(t0, 1_000_000);
        assert_eq!(d.decide(t0, Duration::from_secs(2), true), None);
    }

    #[test]
    fn keyframe_budget_is_a_few_frames_within_bounds() {
        // 1 Mbps at 30 fps: 4 frames = 133 ms = 16.7 KB.
        assert_eq!(KeyframeBudget::budget_bytes(1_000_000, 30.0), 16_666);
        // At 5 fps 4 frames would be 800 ms: capped at 250 ms.
        assert_eq!(KeyframeBudget::budget_bytes(1_000_000, 5.0), 31_250);
        // At 60 fps 4 frames are 67 ms: raised to 100 ms.
        assert_eq!(KeyframeBudget::budget_bytes(1_000_000, 60.0), 12_500);
    }

    #[test]
    fn qp_rises_with_the_picture_and_falls_with_the_budget_and_learns() {
        let k = KeyframeBudget::new();
        let (px720, px1080) = (1280 * 720, 1920 * 1080);
        let slow = k.qp_for(1_000_000, 30.0, px720);
        assert!(k.qp_for(1_000_000, 30.0, px1080) > slow);
        assert!(k.qp_for(8_000_000, 30.0, px720) < slow);
        assert_eq!(k.qp_for(1_000, 30.0, px1080), KEYFRAME_MAX_QP);
        assert_eq!(k.qp_for(u32::MAX, 1.0, 16 * 16), KEYFRAME_MIN_QP);
        // The expected size at the chosen QP fits the budget.
        let budget = KeyframeBudget::budget_bytes(1_000_000, 30.0);
        assert!(k.expected_bytes(slow, px720) <= budget);
        // Content twice as costly as the prior: the first measurement
        // replaces the prior (QP up by one halving, 6); a later one moves the
        // model halfway (log domain).
        let fast = k.qp_for(4_000_000, 30.0, px720);
        let mut m = KeyframeBudget::new();
        let measured = 2 * k.expected_bytes(36, px720);
        m.on_keyframe(36, measured, px720);
        assert_eq!(m.qp_for(4_000_000, 30.0, px720), fast + 6);
        m.on_keyframe(36, measured / 2, px720);
        assert_eq!(m.qp_for(4_000_000, 30.0, px720), fast + 3);
    }
}
