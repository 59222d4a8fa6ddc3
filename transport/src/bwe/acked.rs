//! The acknowledged bitrate: what the path actually delivered while we were
//! sending.
//!
//! GCC's decrease rule is "0.85 × the received rate". A received rate
//! averaged over wall-clock windows is useless for screen sharing: on a
//! mostly static screen a few small frames a second make it tiny, and one
//! over-use verdict then cuts the estimate to almost nothing (the collapse
//! the `rtc` 0.21 GCC shows). So the rate here is measured only over **busy
//! periods at the receiver**: runs of packets arriving less than
//! [`IDLE_GAP`] apart. Within a run the bottleneck (or our pacer, if it is the
//! slower of the two) set the spacing, so bytes ÷ duration is the rate the
//! path demonstrably carried. Idle time between frames is left out.
//!
//! A run yields a sample once it spans [`SAMPLE_SPAN`] (long runs give one
//! sample per span), or when it ends after at least [`MIN_SAMPLE_SPAN`] and
//! [`MIN_SAMPLE_PACKETS`]; shorter runs (one small frame) say nothing about
//! the rate. Samples are averaged with a weight that grows with their span,
//! so one short burst cannot swing the estimate. The first packet of a run
//! is not counted (the span starts at its arrival).

use std::time::Duration;

/// Arrivals further apart than this end a busy period.
pub const IDLE_GAP: Duration = Duration::from_millis(25);
/// A busy period yields a sample every this long.
pub const SAMPLE_SPAN: Duration = Duration::from_millis(150);
/// Shortest busy period that yields a sample.
pub const MIN_SAMPLE_SPAN: Duration = Duration::from_millis(15);
/// Fewest packets in a busy period that yields a sample.
pub const MIN_SAMPLE_PACKETS: u32 = 4;
/// Weight of a full-span sample in the average (shorter ones weigh less).
pub const SAMPLE_WEIGHT: f64 = 0.4;

/// Acknowledged bitrate over busy periods; feed arrived packets in arrival order.
#[derive(Debug, Clone, Default)]
pub struct AckedRate {
    run_start: Option<Duration>,
    last_arrival: Option<Duration>,
    run_bytes: u64,
    run_packets: u32,
    estimate_bps: Option<f64>,
    /// The latest sample (not averaged), for "what was just delivered".
    last_sample_bps: Option<f64>,
}

impl AckedRate {
    /// Nothing measured yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The smoothed estimate, once there is one.
    pub fn bps(&self) -> Option<f64> {
        self.estimate_bps
    }

    /// The last raw sample.
    pub fn last_sample_bps(&self) -> Option<f64> {
        self.last_sample_bps
    }

    /// What to cut to on over-use: the lower of the average and the latest
    /// sample. When the link just got slower the average still remembers the
    /// old rate for a second; the latest busy period already shows the new one.
    pub fn decrease_basis_bps(&self) -> Option<f64> {
        match (self.estimate_bps, self.last_sample_bps) {
            (Some(e), Some(l)) => Some(e.min(l)),
            (e, l) => e.or(l),
        }
    }

    /// A probe measured that the path delivered `bps`: a measurement as good
    /// as a busy period's (better: the probe saturated the path on purpose).
    /// A cut that follows a probe then starts from what the probe showed.
    pub fn on_probe_result(&mut self, bps: f64) {
        self.estimate_bps = Some(self.estimate_bps.map_or(bps, |e| e.max(bps)));
        self.last_sample_bps = Some(bps);
    }

    /// One arrived packet: its arrival on the receiver's clock and its size.
    /// Returns a new sample when one completed.
    pub fn on_packet(&mut self, arrival: Duration, size_bytes: usize) -> Option<f64> {
        let mut sample = None;
        match (self.run_start, self.last_arrival) {
            (Some(_), Some(last)) if arrival >= last && arrival - last <= IDLE_GAP => {
                self.run_bytes += size_bytes as u64;
                self.run_packets += 1;
                self.last_arrival = Some(arrival);
                let start = self.run_start.unwrap_or(arrival);
                if arrival - start >= SAMPLE_SPAN {
                    sample = self.close_run(arrival - start);
                    // Continue the run from here: the next sample starts now.
                    self.run_start = Some(arrival);
                }
            }
            (Some(start), Some(last)) if arrival >= last => {
                // Idle gap: the run ended at `last`.
                sample = self.close_run(last - start);
                self.start_run(arrival);
            }
            (Some(_), Some(_)) => {
                // Reordered arrival: count its bytes, keep the run.
                self.run_bytes += size_bytes as u64;
            }
            _ => self.start_run(arrival),
        }
        sample
    }

    fn start_run(&mut self, arrival: Duration) {
        self.run_start = Some(arrival);
        self.last_arrival = Some(arrival);
        self.run_bytes = 0;
        self.run_packets = 1;
    }

    fn close_run(&mut self, span: Duration) -> Option<f64> {
        let (bytes, packets) = (self.run_bytes, self.run_packets);
        self.run_bytes = 0;
        self.run_packets = 1;
        if span < MIN_SAMPLE_SPAN || packets < MIN_SAMPLE_PACKETS {
            return None;
        }
        let bps = bytes as f64 * 8.0 / span.as_secs_f64();
        let weight = SAMPLE_WEIGHT * (span.as_secs_f64() / SAMPLE_SPAN.as_secs_f64()).min(1.0);
        self.estimate_bps = Some(match self.estimate_bps {
            None => bps,
            Some(e) => e + weight * (bps - e),
        });
        self.last_sample_bps = Some(bps);
        Some(bps)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: f64) -> Duration {
        Duration::from_secs_f64(v / 1e3)
    }

    #[test]
    fn a_saturated_link_reads_as_its_rate() {
        let mut a = AckedRate::new();
        // 1200-byte packets every 9.6 ms = 1 Mbps, for 2 s.
        for i in 0..210 {
            a.on_packet(ms(9.6 * f64::from(i)), 1200);
        }
        let bps = a.bps().expect("estimate");
        assert!((bps - 1e6).abs() < 0.03e6, "{bps}");
    }

    #[test]
    fn idle_time_between_frames_is_left_out() {
        let mut a = AckedRate::new();
        // A 10-packet frame every 200 ms, each drained at 2 Mbps (4.8 ms apart):
        // the average is 0.48 Mbps, the path carried 2 Mbps.
        for frame in 0..20 {
            for p in 0..10 {
                a.on_packet(ms(200.0 * f64::from(frame) + 4.8 * f64::from(p)), 1200);
            }
        }
        let bps = a.bps().expect("estimate");
        assert!((1.8e6..2.2e6).contains(&bps), "{bps}");
    }

    #[test]
    fn lone_small_frames_say_nothing() {
        let mut a = AckedRate::new();
        for i in 0..30 {
            a.on_packet(ms(1000.0 * f64::from(i)), 300);
        }
        assert_eq!(a.bps(), None);
    }

    #[test]
    fn reordered_arrivals_do_not_panic_or_break_the_run() {
        let mut a = AckedRate::new();
        a.on_packet(ms(10.0), 1200);
        a.on_packet(ms(5.0), 1200);
        for i in 2..40 {
            a.on_packet(ms(10.0 + 5.0 * f64::from(i)), 1200);
        }
        assert!(a.bps().is_some());
    }
}
