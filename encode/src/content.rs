//! What the screen is doing, frame by frame, from what capture already
//! knows (whether a frame changed and its damage rectangle), and when to
//! paint over: sans-IO, time is an input.
//!
//! * [`ContentClassifier`] says [`ContentClass::Motion`] once large parts of
//!   the picture keep changing (video, animation, scrolling, window drags),
//!   [`ContentClass::Text`] for small, scattered changes (typing, a cursor,
//!   a clock) and [`ContentClass::Idle`] when nothing changes. Hysteresis:
//!   motion must be sustained to be recognised and must stop for a while to
//!   end, so one big repaint or a short pause does not flip the encoder.
//! * [`PaintOver`] asks for exactly one refinement frame (a high-quality
//!   re-encode of the unchanged picture) when content settles after motion,
//!   then nothing until content changes again.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// What the picture is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ContentClass {
    /// Nothing changes.
    Idle,
    /// Small changes: text being typed, a clock, a cursor. Screen-content
    /// coding (sharp text) is worth its cost.
    #[default]
    Text,
    /// Large areas change continuously: video, animation, scrolling.
    Motion,
}

/// The classifier's thresholds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClassifierConfig {
    /// A frame whose damage covers at least this fraction of the picture is
    /// a large change.
    pub large_fraction: f32,
    /// Motion starts with at least this many large changes …
    pub motion_frames: usize,
    /// … within this window,
    pub window: Duration,
    /// continues while at least this many large changes fall within the
    /// window,
    pub stay_frames: usize,
    /// and ends this long after they became fewer.
    pub motion_hold: Duration,
    /// Content is idle after this long without any change.
    pub idle_after: Duration,
}

impl Default for ClassifierConfig {
    fn default() -> Self {
        Self {
            large_fraction: 0.2,
            motion_frames: 8,
            window: Duration::from_secs(1),
            stay_frames: 3,
            motion_hold: Duration::from_millis(500),
            idle_after: Duration::from_millis(500),
        }
    }
}

/// Classifies content from per-frame change information. See the module
/// docs.
#[derive(Debug, Clone)]
pub struct ContentClassifier {
    config: ClassifierConfig,
    class: ContentClass,
    /// Times of recent large changes (within `config.window`).
    large: VecDeque<Instant>,
    /// Since when large changes have been too few to sustain motion.
    fading_since: Option<Instant>,
    last_change: Option<Instant>,
}

impl ContentClassifier {
    /// A classifier starting in [`ContentClass::Text`] (the safe default:
    /// screen-content coding).
    pub fn new(config: ClassifierConfig) -> Self {
        // Bounded: at most one entry per frame within the window.
        let large = VecDeque::with_capacity(256);
        Self { config, class: ContentClass::Text, large, fading_since: None, last_change: None }
    }

    /// The current class.
    pub fn class(&self) -> ContentClass {
        self.class
    }

    /// Feeds one captured frame: `changed` (it differs from the previous
    /// frame) and `damaged_fraction`, the part of the picture its damage
    /// rectangle covers (`None`: unknown, e.g. a backend without damage
    /// information; such frames count as changes but are not evidence of
    /// motion). Returns the class after this frame.
    pub fn observe(&mut self, now: Instant, changed: bool, damaged_fraction: Option<f32>) -> ContentClass {
        if changed {
            self.last_change = Some(now);
            if damaged_fraction.is_some_and(|f| f >= self.config.large_fraction) {
                if self.large.len() == self.large.capacity() {
                    self.large.pop_front();
                }
                self.large.push_back(now);
            }
        }
        self.update(now)
    }

    /// Re-evaluates at `now` without a new frame (content that stopped
    /// changing publishes no frames). Returns the class.
    pub fn tick(&mut self, now: Instant) -> ContentClass {
        self.update(now)
    }

    fn update(&mut self, now: Instant) -> ContentClass {
        while self.large.front().is_some_and(|&t| now.saturating_duration_since(t) > self.config.window) {
            self.large.pop_front();
        }
        let since = |t: Option<Instant>| t.map(|t| now.saturating_duration_since(t));
        if self.large.len() >= self.config.stay_frames {
            self.fading_since = None;
        } else if self.fading_since.is_none() {
            self.fading_since = Some(now);
        }
        self.class = if self.large.len() >= self.config.motion_frames {
            ContentClass::Motion
        } else if self.class == ContentClass::Motion
            && since(self.fading_since).is_none_or(|d| d < self.config.motion_hold)
        {
            // Hysteresis: motion continues at a lower rate and through
            // short pauses.
            ContentClass::Motion
        } else if since(self.last_change).is_none_or(|d| d >= self.config.idle_after) {
            ContentClass::Idle
        } else {
            ContentClass::Text
        };
        self.class
    }
}

/// Decides when to send one refinement frame. Feed it every change and poll
/// it; it answers `true` exactly once per settling.
#[derive(Debug, Clone)]
pub struct PaintOver {
    settle: Duration,
    /// A large change happened since the last refinement.
    pending: bool,
    last_change: Option<Instant>,
}

impl PaintOver {
    /// Refines once content has been unchanged for `settle` after large
    /// changes (motion, a big repaint).
    pub fn new(settle: Duration) -> Self {
        Self { settle, pending: false, last_change: None }
    }

    /// A frame changed at `now`; `large` if it was a large change (or the
    /// content class was motion).
    pub fn changed(&mut self, now: Instant, large: bool) {
        self.last_change = Some(now);
        self.pending |= large;
    }

    /// Whether to send the refinement frame now (then `false` until the
    /// next large change has settled).
    pub fn due(&mut self, now: Instant) -> bool {
        let settled = self.last_change.is_some_and(|t| now.saturating_duration_since(t) >= self.settle);
        if self.pending && settled {
            self.pending = false;
            return true;
        }
        false
    }

    /// When [`PaintOver::due`] will next be `true` if nothing changes.
    pub fn deadline(&self) -> Option<Instant> {
        self.pending.then(|| self.last_change.map(|t| t + self.settle)).flatten()
    }
}
