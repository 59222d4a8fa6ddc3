//! Keyframe request coalescing.
//!
//! Every viewer's PLI/FIR, every new viewer and every viewer that had to skip
//! frames asks for a keyframe. IDRs are expensive (≈ 300 KB at 1080p, about a
//! second of budget at 2.5 Mbps), so requests are coalesced across viewers:
//! at most one forced keyframe per [`KeyframeCoalescer::min_interval`]; a
//! request inside that window is remembered and served when it ends.

use std::time::{Duration, Instant};

/// Default minimum gap between forced keyframes.
pub const DEFAULT_MIN_INTERVAL: Duration = Duration::from_millis(500);

/// Why a keyframe was asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyframeReason {
    /// A viewer's decoder sent PLI.
    Pli,
    /// A viewer sent FIR.
    Fir,
    /// A viewer joined.
    NewViewer,
    /// A viewer's queue overflowed and it skipped frames.
    Recovery,
}

/// Decides when to force a keyframe. Pure logic: feed it requests and the
/// current time, poll it for decisions.
#[derive(Debug, Clone)]
pub struct KeyframeCoalescer {
    min_interval: Duration,
    last_forced: Option<Instant>,
    pending: bool,
    requests: u64,
    forced: u64,
}

impl Default for KeyframeCoalescer {
    fn default() -> Self {
        Self::new(DEFAULT_MIN_INTERVAL)
    }
}

impl KeyframeCoalescer {
    /// A coalescer forcing at most one keyframe per `min_interval`.
    pub fn new(min_interval: Duration) -> Self {
        Self { min_interval, last_forced: None, pending: false, requests: 0, forced: 0 }
    }

    /// The minimum gap between forced keyframes.
    pub fn min_interval(&self) -> Duration {
        self.min_interval
    }

    /// Records a request.
    pub fn request(&mut self, _reason: KeyframeReason) {
        self.requests += 1;
        self.pending = true;
    }

    /// Records that the encoder produced a keyframe on its own (e.g. after a
    /// resize): pending requests are satisfied by it.
    pub fn keyframe_sent(&mut self, now: Instant) {
        self.pending = false;
        self.last_forced = Some(now);
    }

    /// Whether to force a keyframe now. Returns true at most once per
    /// interval, and only if something asked for one.
    pub fn poll(&mut self, now: Instant) -> bool {
        if !self.pending {
            return false;
        }
        if self.last_forced.is_some_and(|t| now.saturating_duration_since(t) < self.min_interval) {
            return false;
        }
        self.pending = false;
        self.last_forced = Some(now);
        self.forced += 1;
        true
    }

    /// When a pending request can next be served, if one is pending.
    pub fn next_due(&self) -> Option<Instant> {
        self.pending.then(|| self.last_forced.map_or_else(Instant::now, |t| t + self.min_interval))
    }

    /// Requests received so far.
    pub fn requests(&self) -> u64 {
        self.requests
    }

    /// Keyframes forced so far.
    pub fn forced(&self) -> u64 {
        self.forced
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coalesces_bursts_across_viewers() {
        let t0 = Instant::now();
        let mut k = KeyframeCoalescer::default();
        assert!(!k.poll(t0), "nothing asked");
        k.request(KeyframeReason::NewViewer);
        k.request(KeyframeReason::Pli);
        assert!(k.poll(t0));
        assert!(!k.poll(t0), "served once");
        // Requests inside the window wait for its end, then are served once.
        for ms in [10, 100, 300] {
            k.request(KeyframeReason::Pli);
            assert!(!k.poll(t0 + Duration::from_millis(ms)), "{ms} ms");
        }
        assert_eq!(k.next_due(), Some(t0 + DEFAULT_MIN_INTERVAL));
        assert!(k.poll(t0 + Duration::from_millis(500)));
        assert!(!k.poll(t0 + Duration::from_millis(2000)));
        assert_eq!((k.requests(), k.forced()), (5, 2));
    }

    #[test]
    fn at_most_one_forced_keyframe_per_interval_under_constant_requests() {
        let t0 = Instant::now();
        let mut k = KeyframeCoalescer::default();
        let mut forced = 0;
        for ms in (0..10_000).step_by(5) {
            k.request(KeyframeReason::Fir);
            if k.poll(t0 + Duration::from_millis(ms)) {
                forced += 1;
            }
        }
        assert_eq!(forced, 20, "10 s at one per 500 ms");
    }

    #[test]
    fn encoder_keyframe_satisfies_pending_requests() {
        let t0 = Instant::now();
        let mut k = KeyframeCoalescer::default();
        k.request(KeyframeReason::Recovery);
        k.keyframe_sent(t0);
        assert!(!k.poll(t0 + Duration::from_secs(5)));
    }
}
