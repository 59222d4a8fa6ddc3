//! When to capture: the capture thread's decisions without threads or
//! clocks, so they can be tested in simulated time.
//!
//! The thread ([`crate::driver`]) asks [`CaptureSchedule::next`] what to do
//! at `now` and reports back what happened. The rules:
//!
//! * **Capture on change.** When the backend signals a change
//!   ([`crate::backend::CaptureBackend::wait_for_change`] returned `true`)
//!   the next step is a capture — at once, unless the frame-rate limit holds
//!   it back.
//! * **The frame rate is a minimum spacing**, not a grid: two published
//!   frames are at least `1 / fps` apart (measured between the starts of
//!   their captures). A change after a quiet spell is captured immediately
//!   instead of on the next tick of a fixed grid.
//! * **Polling** covers what backends cannot signal (the synthetic source,
//!   cursor moves on X11): one capture attempt at most `1 / fps` after the
//!   previous one. For a backend without change signals this is exactly the
//!   old fixed-rate pacing.
//! * **Keep-alive and requests**: a poll forces a frame (`force`) when
//!   `keepalive` has passed since the last published frame; a frame request
//!   from the consumer forces one at the next allowed moment.
//! * **Nothing busy-loops**: change and request flags are cleared by every
//!   capture attempt, whatever it published, and polls are spaced by the
//!   period even when a forced capture publishes nothing (an unmapped window).

use std::time::{Duration, Instant};

/// What the capture thread should do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Call the backend's `capture` now; `force` asks for a frame even if
    /// nothing changed (keep-alive or a consumer's request).
    Capture {
        /// Publish even an unchanged frame.
        force: bool,
    },
    /// Nothing to do before `until`; wake early if the backend signals a
    /// change (`wait_for_change(until)`).
    WaitForChange {
        /// Deadline of the wait.
        until: Instant,
    },
    /// A capture is already due but the frame-rate limit holds it back:
    /// sleep until `until` (change signals would change nothing).
    Sleep {
        /// When the capture may happen.
        until: Instant,
    },
}

/// The capture thread's scheduling state. Time is an input: every method
/// that depends on it takes `now`.
#[derive(Debug, Clone)]
pub struct CaptureSchedule {
    period: Duration,
    keepalive: Duration,
    /// Start of the last capture that published a frame.
    last_publish: Option<Instant>,
    /// When the next poll is due (`None`: now).
    next_poll: Option<Instant>,
    change_pending: bool,
    request_pending: bool,
}

/// The capture spacing for a frame rate (clamped to 0.1..=240 fps; a
/// non-finite rate means 30).
pub fn period_for_fps(fps: f32) -> Duration {
    let fps = if fps.is_finite() { fps.clamp(0.1, 240.0) } else { 30.0 };
    Duration::from_secs_f64(1.0 / f64::from(fps))
}

impl CaptureSchedule {
    /// A schedule that captures (a forced frame) on its first step.
    pub fn new(fps: f32, keepalive: Duration) -> Self {
        Self {
            period: period_for_fps(fps),
            keepalive,
            last_publish: None,
            next_poll: None,
            change_pending: false,
            request_pending: false,
        }
    }

    /// Changes the frame rate; applies from the next step.
    pub fn set_fps(&mut self, fps: f32) {
        let period = period_for_fps(fps);
        if period != self.period {
            // A pending poll of the old rate must not wait longer than the new period.
            if let (Some(poll), Some(last)) = (self.next_poll, self.last_publish) {
                self.next_poll = Some(poll.min(last + period));
            }
            self.period = period;
        }
    }

    /// The minimum spacing between published frames.
    pub fn period(&self) -> Duration {
        self.period
    }

    /// The consumer asked for a frame even if nothing changed.
    pub fn request_frame(&mut self) {
        self.request_pending = true;
    }

    /// The backend signalled that the source may have changed.
    pub fn change_signalled(&mut self) {
        self.change_pending = true;
    }

    /// Starts over (after a pause): the next step captures a forced frame.
    pub fn restart(&mut self) {
        self.last_publish = None;
        self.next_poll = None;
        self.change_pending = false;
    }

    /// What to do at `now`.
    pub fn next(&self, now: Instant) -> Step {
        let earliest = self.last_publish.map_or(now, |t| t + self.period);
        let poll_due = self.next_poll.is_none_or(|t| now >= t);
        if self.change_pending || self.request_pending || poll_due {
            if now >= earliest {
                let keepalive_due = self.last_publish.is_none_or(|t| now >= t + self.keepalive);
                return Step::Capture { force: self.request_pending || (poll_due && keepalive_due) };
            }
            return Step::Sleep { until: earliest };
        }
        // Nothing pending: the next poll (never before the rate limit allows).
        let until = self.next_poll.map_or(now, |t| t.max(earliest));
        Step::WaitForChange { until }
    }

    /// Reports a capture attempt that started at `started` and whether it
    /// published a frame.
    pub fn captured(&mut self, started: Instant, published: bool) {
        self.change_pending = false;
        self.request_pending = false;
        self.next_poll = Some(started + self.period);
        if published {
            self.last_publish = Some(started);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn first_step_is_a_forced_capture() {
        let t0 = Instant::now();
        let s = CaptureSchedule::new(30.0, ms(1000));
        assert_eq!(s.next(t0), Step::Capture { force: true });
    }

    #[test]
    fn a_change_after_a_quiet_spell_is_captured_at_once() {
        let t0 = Instant::now();
        let mut s = CaptureSchedule::new(10.0, ms(1000));
        s.captured(t0, true);
        // Polls are due every 100 ms; in between the thread waits for changes.
        assert_eq!(s.next(t0 + ms(30)), Step::WaitForChange { until: t0 + ms(100) });
        s.captured(t0 + ms(100), false);
        assert_eq!(s.next(t0 + ms(130)), Step::WaitForChange { until: t0 + ms(200) });
        s.change_signalled();
        assert_eq!(s.next(t0 + ms(130)), Step::Capture { force: false });
    }

    #[test]
    fn changes_closer_than_the_period_wait_for_the_rate_limit() {
        let t0 = Instant::now();
        let mut s = CaptureSchedule::new(10.0, ms(1000));
        s.captured(t0, true);
        s.change_signalled();
        assert_eq!(s.next(t0 + ms(20)), Step::Sleep { until: t0 + ms(100) });
        assert_eq!(s.next(t0 + ms(100)), Step::Capture { force: false });
    }

    #[test]
    fn keepalive_is_forced_at_a_poll() {
        let t0 = Instant::now();
        let mut s = CaptureSchedule::new(10.0, ms(250));
        s.captured(t0, true);
        for poll in [100, 200] {
            assert_eq!(s.next(t0 + ms(poll)), Step::Capture { force: false });
            s.captured(t0 + ms(poll), false);
        }
        assert_eq!(s.next(t0 + ms(300)), Step::Capture { force: true });
    }

    #[test]
    fn a_request_forces_a_frame_at_the_next_allowed_moment() {
        let t0 = Instant::now();
        let mut s = CaptureSchedule::new(10.0, ms(60_000));
        s.captured(t0, true);
        s.request_frame();
        assert_eq!(s.next(t0 + ms(10)), Step::Sleep { until: t0 + ms(100) });
        assert_eq!(s.next(t0 + ms(100)), Step::Capture { force: true });
        // A forced capture that published nothing (say, an unmapped window)
        // does not make the next step a capture again.
        s.captured(t0 + ms(100), false);
        assert_eq!(s.next(t0 + ms(100)), Step::WaitForChange { until: t0 + ms(200) });
    }

    #[test]
    fn restart_forces_a_frame_at_once() {
        let t0 = Instant::now();
        let mut s = CaptureSchedule::new(10.0, ms(60_000));
        s.captured(t0, true);
        s.restart();
        assert_eq!(s.next(t0 + ms(1)), Step::Capture { force: true });
    }

    #[test]
    fn a_higher_rate_applies_to_the_pending_poll() {
        let t0 = Instant::now();
        let mut s = CaptureSchedule::new(1.0, ms(60_000));
        s.captured(t0, true);
        assert_eq!(s.next(t0 + ms(10)), Step::WaitForChange { until: t0 + ms(1000) });
        s.set_fps(20.0);
        assert_eq!(s.next(t0 + ms(10)), Step::WaitForChange { until: t0 + ms(50) });
        s.set_fps(f32::NAN);
        assert_eq!(s.period(), period_for_fps(30.0));
    }
}
