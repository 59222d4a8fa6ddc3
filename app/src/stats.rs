//! Lock-free pipeline statistics.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use peep_encode::Codec;
use std::time::Duration;

/// Sub-buckets per power of two: values are kept within ±6 % of their true size.
const SUB_BUCKETS: usize = 8;
const POWERS: usize = 32;

/// Bucket boundaries (µs) exported as a Prometheus histogram's `le`
/// bounds: 0.5 ms to ≈ 1 s, two per power of two. Each is a boundary of
/// the log-linear buckets, so the counts below them are exact (the labels
/// read `le="0.016384"` rather than round numbers for that reason).
pub const EXPORT_BOUNDS_US: [u64; 22] = [
    512, 768, 1024, 1536, 2048, 3072, 4096, 6144, 8192, 12_288, 16_384, 24_576, 32_768, 49_152, 65_536, 98_304,
    131_072, 196_608, 262_144, 393_216, 524_288, 1_048_576,
];

/// A streaming histogram of durations in microseconds with log-linear buckets
/// (8 per power of two, up to ~71 minutes): fixed memory, lock-free updates,
/// percentiles accurate to about 6 %.
#[derive(Debug)]
pub struct Histogram {
    buckets: [AtomicU64; SUB_BUCKETS * POWERS],
    count: AtomicU64,
    sum_us: AtomicU64,
    max_us: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            count: AtomicU64::new(0),
            sum_us: AtomicU64::new(0),
            max_us: AtomicU64::new(0),
        }
    }
}

fn bucket_of(us: u64) -> usize {
    if us < SUB_BUCKETS as u64 {
        return us as usize;
    }
    let power = 63 - us.leading_zeros() as usize; // ≥ 3
    let sub = (us >> (power - 3)) as usize & (SUB_BUCKETS - 1);
    ((power - 2) * SUB_BUCKETS + sub).min(SUB_BUCKETS * POWERS - 1)
}

/// Lower bound and width of a bucket, in microseconds.
fn bucket_range(index: usize) -> (u64, u64) {
    if index < SUB_BUCKETS {
        return (index as u64, 1);
    }
    let power = index / SUB_BUCKETS + 2;
    let sub = (index % SUB_BUCKETS) as u64;
    let width = 1u64 << (power - 3);
    ((SUB_BUCKETS as u64 + sub) * width, width)
}

impl Histogram {
    /// Records one value.
    pub fn record(&self, d: Duration) {
        let us = d.as_micros().min(u128::from(u64::MAX)) as u64;
        self.buckets[bucket_of(us)].fetch_add(1, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
        self.max_us.fetch_max(us, Ordering::Relaxed);
    }

    /// Number of values recorded.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// Mean value.
    pub fn mean(&self) -> Duration {
        let n = self.count();
        Duration::from_micros(self.sum_us.load(Ordering::Relaxed).checked_div(n).unwrap_or(0))
    }

    /// Sum of the values.
    pub fn sum(&self) -> Duration {
        Duration::from_micros(self.sum_us.load(Ordering::Relaxed))
    }

    /// How many values were below `bound_us`. Exact when `bound_us` is a
    /// bucket boundary (as every one of [`EXPORT_BOUNDS_US`] is); otherwise
    /// the bucket holding `bound_us` is not counted.
    pub fn count_below(&self, bound_us: u64) -> u64 {
        self.buckets
            .iter()
            .enumerate()
            .take_while(|&(i, _)| {
                let (low, width) = bucket_range(i);
                low + width <= bound_us
            })
            .map(|(_, b)| b.load(Ordering::Relaxed))
            .sum()
    }

    /// Cumulative `(upper bound in seconds, count)` pairs at
    /// [`EXPORT_BOUNDS_US`], for a Prometheus histogram.
    pub fn cumulative_buckets(&self) -> Vec<(f64, u64)> {
        EXPORT_BOUNDS_US.iter().map(|&us| (us as f64 / 1e6, self.count_below(us))).collect()
    }

    /// Largest value.
    pub fn max(&self) -> Duration {
        Duration::from_micros(self.max_us.load(Ordering::Relaxed))
    }

    /// The `q`-quantile (0.0–1.0), as the middle of its bucket; zero when empty.
    pub fn quantile(&self, q: f64) -> Duration {
        let n = self.count();
        if n == 0 {
            return Duration::ZERO;
        }
        let rank = ((q.clamp(0.0, 1.0) * n as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, b) in self.buckets.iter().enumerate() {
            seen += b.load(Ordering::Relaxed);
            if seen >= rank {
                let (low, width) = bucket_range(i);
                return Duration::from_micros(low + width / 2).min(self.max());
            }
        }
        self.max()
    }
}

/// Counters of a running pipeline; every field is an atomic, so readers
/// never take a lock.
#[derive(Debug, Default)]
pub struct PipelineStats {
    /// Frames the encoders produced (all codecs; see [`PipelineStats::codec`]).
    pub frames_encoded: AtomicU64,
    /// Frames the encoder's rate control skipped.
    pub frames_skipped_by_encoder: AtomicU64,
    /// Captured frames the encoder never saw (overwritten in the ring).
    pub frames_dropped: AtomicU64,
    /// Frames the frame dropper skipped because the encoder overshot its
    /// budget (a keyframe, a full-screen change).
    pub frames_skipped_budget: AtomicU64,
    /// Frames the frame dropper skipped because the send queue was long
    /// (the link got slower than the target).
    pub frames_skipped_backlog: AtomicU64,
    /// The frame rate in force, ×10 (the governor's, or the configured one).
    pub fps_x10: AtomicU64,
    /// Whether the link, not the user's setting, limits the frame rate.
    pub fps_limited_by_link: std::sync::atomic::AtomicBool,
    /// Encoded bytes (all codecs).
    pub bytes: AtomicU64,
    /// Keyframes produced (all codecs).
    pub keyframes: AtomicU64,
    /// Source rows converted to YUV (only the damaged rows of a frame whose
    /// damage is known; all rows otherwise).
    pub rows_converted: AtomicU64,
    /// Source rows of the frames taken (what a full conversion would do).
    pub rows_taken: AtomicU64,
    /// Paint-over refinement frames sent (content settled after motion).
    pub refinements: AtomicU64,
    /// Time to convert one captured frame and encode it with every active
    /// encoder.
    pub encode_time: Histogram,
    /// Capture time to encoded frame ready (every packet of every codec).
    pub capture_to_encoded: Histogram,
    /// Per encode chain, indexed by [`Codec::index`].
    pub codecs: [CodecStats; 3],
}

impl PipelineStats {
    /// The counters of `codec`'s encode chain.
    pub fn codec(&self, codec: Codec) -> &CodecStats {
        &self.codecs[codec.index()]
    }
}

/// Counters of one encode chain (one codec).
#[derive(Debug, Default)]
pub struct CodecStats {
    /// Whether the chain is running now.
    pub active: AtomicBool,
    /// Times it started.
    pub starts: AtomicU64,
    /// Times it stopped.
    pub stops: AtomicU64,
    /// Frames it encoded.
    pub frames_encoded: AtomicU64,
    /// Frames it skipped to hold a lower frame rate than the capture's.
    pub frames_decimated: AtomicU64,
    /// Bytes it produced.
    pub bytes: AtomicU64,
    /// Keyframes it produced.
    pub keyframes: AtomicU64,
    /// Its encoder's rate-control gain ×100 (see `Encoder::rate_gain`).
    pub rate_gain_x100: AtomicU64,
    /// Time per encode call.
    pub encode_time: Histogram,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_cover_values_in_order() {
        let mut last = 0;
        for us in [0u64, 1, 7, 8, 9, 15, 16, 100, 1000, 12_345, 1 << 30, u64::MAX] {
            let b = bucket_of(us);
            assert!(b >= last, "bucket order at {us}");
            last = b;
            if us < 1 << 34 {
                let (low, width) = bucket_range(b);
                assert!(low <= us && us < low + width, "{us} not in [{low}, {})", low + width);
            }
        }
    }

    #[test]
    fn export_bounds_are_bucket_boundaries_and_counts_below_them_are_exact() {
        for &b in &EXPORT_BOUNDS_US {
            assert_eq!(bucket_range(bucket_of(b)).0, b, "{b} µs starts a bucket");
        }
        let h = Histogram::default();
        for us in [100u64, 511, 512, 767, 768, 20_000, 2_000_000] {
            h.record(Duration::from_micros(us));
        }
        assert_eq!(h.count_below(512), 2);
        assert_eq!(h.count_below(768), 4);
        assert_eq!(h.count_below(24_576), 6);
        let buckets = h.cumulative_buckets();
        assert_eq!(buckets.last(), Some(&(1.048576, 6)), "2 s is only in +Inf");
        assert!(buckets.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1));
        assert_eq!(h.sum(), Duration::from_micros(100 + 511 + 512 + 767 + 768 + 20_000 + 2_000_000));
    }

    #[test]
    fn quantiles_are_within_bucket_precision() {
        let h = Histogram::default();
        for ms in 1..=100u64 {
            h.record(Duration::from_millis(ms));
        }
        let p50 = h.quantile(0.5).as_secs_f64() * 1e3;
        let p95 = h.quantile(0.95).as_secs_f64() * 1e3;
        assert!((p50 - 50.0).abs() / 50.0 < 0.07, "p50 {p50}");
        assert!((p95 - 95.0).abs() / 95.0 < 0.07, "p95 {p95}");
        assert_eq!(h.count(), 100);
        assert_eq!(h.max(), Duration::from_millis(100));
        assert_eq!(Histogram::default().quantile(0.5), Duration::ZERO);
    }
}
