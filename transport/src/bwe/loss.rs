//! The loss-based bound: a ceiling on the estimate that only high loss sets.
//!
//! From draft-ietf-rmcat-gcc-02 §6 (the sender-side loss controller), with
//! one change for links that always lose a little: **no bound exists until
//! loss is high.** The draft's controller holds the rate between 2 % and
//! 10 % loss and only grows it below 2 %, so on a Wi-Fi or mobile link with
//! a steady 5 % of random loss it never climbs past where it started (libwebrtc
//! later replaced it for that reason). Here loss below [`HIGH_LOSS`] does not
//! limit anything; the delay-based controller, which sees queues rather than
//! drops, is in charge. Loss at or above [`HIGH_LOSS`] — the bottleneck queue
//! overflowing, or a link much worse than its usual — sets a bound of
//! `rate × (1 − loss / 2)`, at most once per round trip + [`CUT_INTERVAL`].
//! Once set, the bound grows by [`LOW_LOSS_GROWTH_PER_S`] while loss is under
//! [`LOW_LOSS`], by [`MID_LOSS_GROWTH_PER_S`] between the two thresholds (so
//! background loss slows recovery but cannot pin the rate forever), and is
//! dropped once it is above the delay-based estimate.
//!
//! Loss is counted over windows of at least [`WINDOW_PACKETS`] packets and
//! [`WINDOW_MIN`] (or [`WINDOW_MAX`], whichever comes first, with at least
//! [`WINDOW_MIN_PACKETS`]): with fewer packets 5 % random loss reads as
//! 10 % too often. Massive loss ([`MASSIVE_LOSS`]) is judged as soon as
//! [`MASSIVE_LOSS_PACKETS`] show it. Retransmissions are not counted (as in
//! receiver reports, which count sequence numbers): a duplicate copy that
//! the browser's SRTP replay check discards reads as lost in transport
//! feedback. Packets lost while no feedback came back at all (an
//! outage, see [`super::Bwe`]) are not counted: a dead link is not a
//! congested one.

use std::time::{Duration, Instant};

/// Loss at or above this sets or lowers the bound.
pub const HIGH_LOSS: f64 = 0.10;
/// Loss below this lets the bound grow at full speed.
pub const LOW_LOSS: f64 = 0.02;
/// Growth of the bound per second below [`LOW_LOSS`].
pub const LOW_LOSS_GROWTH_PER_S: f64 = 1.08;
/// Growth of the bound per second between [`LOW_LOSS`] and [`HIGH_LOSS`].
pub const MID_LOSS_GROWTH_PER_S: f64 = 1.03;
/// Minimum time between two cuts, on top of the round-trip time.
pub const CUT_INTERVAL: Duration = Duration::from_millis(300);
/// Packets per loss window.
pub const WINDOW_PACKETS: u32 = 100;
/// Shortest loss window.
pub const WINDOW_MIN: Duration = Duration::from_secs(1);
/// Longest loss window (on slow or idle links).
pub const WINDOW_MAX: Duration = Duration::from_secs(3);
/// Fewest packets a window must hold to count.
pub const WINDOW_MIN_PACKETS: u32 = 20;

/// A window this lossy is judged early, once it holds
/// [`MASSIVE_LOSS_PACKETS`]: the link just got much slower (or a burst of
/// cross traffic arrived) and waiting a second costs a freeze. Random loss of
/// a few per cent never reaches 30 % over 50 packets. The bound is then
/// also capped at the rate the receiver last saw delivered.
pub const MASSIVE_LOSS: f64 = 0.3;
/// See [`MASSIVE_LOSS`].
pub const MASSIVE_LOSS_PACKETS: u32 = 50;

/// One feedback's worth of input.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LossReport {
    /// Packets reported received.
    pub received: u32,
    /// Packets reported lost (retransmissions and outage losses left out).
    pub lost: u32,
    /// The estimate in force, bps.
    pub rate_bps: f64,
    /// The delay-based rate, above which the bound is pointless.
    pub delay_bps: f64,
    /// The latest delivered-rate sample (caps the bound under massive loss).
    pub delivered_bps: Option<f64>,
}

/// Loss-based bound on the estimate.
#[derive(Debug, Clone, Default)]
pub struct LossControl {
    bound_bps: Option<f64>,
    window_start: Option<Instant>,
    received: u32,
    lost: u32,
    last_loss: Option<f64>,
    last_cut: Option<Instant>,
    last_eval: Option<Instant>,
}

impl LossControl {
    /// No bound, nothing counted.
    pub fn new() -> Self {
        Self::default()
    }

    /// The bound, if loss has set one.
    pub fn bound_bps(&self) -> Option<f64> {
        self.bound_bps
    }

    /// Loss fraction of the last complete window.
    pub fn loss(&self) -> Option<f64> {
        self.last_loss
    }

    /// Removes the bound (a probe showed the path carries more).
    pub fn lift_to(&mut self, bps: f64) {
        if let Some(b) = &mut self.bound_bps {
            *b = b.max(bps);
        }
    }

    /// Counts packets reported in one feedback; evaluates the window when it
    /// is complete. `rate_bps` is the estimate in force, `delay_bps` the
    /// delay-based rate (above which the bound is pointless).
    pub fn on_feedback(&mut self, now: Instant, report: LossReport, rtt: Duration) {
        let LossReport { received, lost, rate_bps, delay_bps, delivered_bps } = report;
        let start = *self.window_start.get_or_insert(now);
        self.received += received;
        self.lost += lost;
        let total = self.received + self.lost;
        let age = now.saturating_duration_since(start);
        let massive = total >= MASSIVE_LOSS_PACKETS && f64::from(self.lost) >= MASSIVE_LOSS * f64::from(total);
        let complete = massive
            || (total >= WINDOW_PACKETS && age >= WINDOW_MIN)
            || (age >= WINDOW_MAX && total >= WINDOW_MIN_PACKETS);
        if !complete {
            if age >= WINDOW_MAX {
                // Too few packets to judge: start over.
                self.window_start = Some(now);
                self.received = 0;
                self.lost = 0;
            }
            return;
        }
        let loss = f64::from(self.lost) / f64::from(total);
        self.last_loss = Some(loss);
        self.window_start = Some(now);
        self.received = 0;
        self.lost = 0;
        let dt = self.last_eval.replace(now).map_or(0.0, |t| now.saturating_duration_since(t).as_secs_f64().min(1.0));
        if loss >= HIGH_LOSS {
            if self.last_cut.is_none_or(|t| now.saturating_duration_since(t) >= rtt + CUT_INTERVAL) {
                let base = self.bound_bps.map_or(rate_bps, |b| b.min(rate_bps));
                let mut bound = base * (1.0 - loss / 2.0);
                if massive && let Some(delivered) = delivered_bps {
                    // Most packets are lost: the link delivers about what
                    // arrived, whatever we send.
                    bound = bound.min(delivered);
                }
                self.bound_bps = Some(bound);
                self.last_cut = Some(now);
            }
        } else if let Some(bound) = self.bound_bps {
            let growth = if loss < LOW_LOSS { LOW_LOSS_GROWTH_PER_S } else { MID_LOSS_GROWTH_PER_S };
            let grown = bound * growth.powf(dt);
            self.bound_bps = (grown < delay_bps).then_some(grown);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RTT: Duration = Duration::from_millis(100);

    fn report(received: u32, lost: u32, rate_bps: f64) -> LossReport {
        LossReport { received, lost, rate_bps, delay_bps: rate_bps, delivered_bps: None }
    }

    /// Feeds `seconds` of 10 feedbacks/s with `per` packets each, losing `loss`.
    fn feed(l: &mut LossControl, t: &mut Instant, seconds: u32, per: u32, loss: f64, rate: f64) {
        let mut owed = 0.0;
        for _ in 0..seconds * 10 {
            *t += Duration::from_millis(100);
            owed += f64::from(per) * loss;
            let lost = owed.floor() as u32;
            owed -= f64::from(lost);
            l.on_feedback(*t, report(per - lost, lost, rate), RTT);
        }
    }

    #[test]
    fn background_loss_sets_no_bound() {
        let mut t = Instant::now();
        let mut l = LossControl::new();
        feed(&mut l, &mut t, 30, 20, 0.05, 2e6);
        assert_eq!(l.bound_bps(), None);
        assert!((l.loss().unwrap() - 0.05).abs() < 0.02);
    }

    #[test]
    fn high_loss_cuts_once_per_interval_and_recovers() {
        let mut t = Instant::now();
        let mut l = LossControl::new();
        feed(&mut l, &mut t, 2, 20, 0.2, 2e6);
        assert_eq!(l.bound_bps(), Some(2e6 * 0.9));
        feed(&mut l, &mut t, 3, 20, 0.2, 2e6);
        let after = l.bound_bps().unwrap();
        assert!(after < 1.8e6 && after > 1e6, "{after}");
        // Clean link: the bound grows and disappears above the delay-based rate.
        feed(&mut l, &mut t, 30, 20, 0.0, 2e6);
        assert_eq!(l.bound_bps(), None);
    }

    #[test]
    fn massive_loss_is_judged_within_fifty_packets() {
        let mut t = Instant::now();
        let mut l = LossControl::new();
        t += Duration::from_millis(50);
        l.on_feedback(t, report(30, 30, 2e6), RTT);
        assert_eq!(l.bound_bps(), Some(2e6 * 0.75));
    }

    #[test]
    fn tiny_windows_are_not_judged() {
        let mut t = Instant::now();
        let mut l = LossControl::new();
        // 1 packet per second, all lost: never ≥ 20 packets in a window.
        for _ in 0..20 {
            t += Duration::from_secs(1);
            l.on_feedback(t, report(0, 1, 1e6), RTT);
        }
        assert_eq!(l.bound_bps(), None);
    }
}
