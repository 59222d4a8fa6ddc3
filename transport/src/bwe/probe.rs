//! Probing: finding out quickly how much the path carries, instead of
//! creeping up a few per cent per second.
//!
//! A **probe cluster** is a short burst (≥ [`PROBE_DURATION`], ≥
//! [`PROBE_MIN_PACKETS`] packets) sent at a target rate. The pacer sends
//! whatever media is queued at that rate and fills the rest with padding
//! packets (see `crate::pacer`). Every packet that left during the cluster's
//! send window belongs to it. When feedback has covered the whole window,
//! the [`ProbeMeter`] compares the send rate with the receive rate: a path
//! that kept up delivered (about) the target, a saturated path delivered its
//! capacity and the receive rate falls behind (the libwebrtc design notes'
//! probe-bitrate estimator: receive rate under 90 % of the send rate means
//! saturated, and 95 % of the receive rate is the answer).
//!
//! When the [`ProbeController`] probes:
//!
//! * **At start**, two clusters at [`INITIAL_PROBE_FACTORS`] × the start
//!   rate: on a LAN the estimate reaches megabits within a few hundred
//!   milliseconds instead of tens of seconds; on a slow link the probes
//!   measure it before the first keyframe has queued up.
//! * **Exponentially after a good result**: a result of at least
//!   [`CONTINUE_RATIO`] × the target probes again at
//!   [`EXPONENTIAL_FACTOR`] × the result, until the maximum is reached or a
//!   probe falls short.
//! * **While application-limited (ALR)**: every [`ALR_PROBE_INTERVAL`], one
//!   cluster at [`ALR_PROBE_FACTOR`] × the estimate, so a static screen keeps
//!   a validated estimate (no increase happens in ALR otherwise) and a
//!   sudden full-screen change can use the link at once.
//! * **When the link grew**: the acknowledged rate rose well above the
//!   capacity the rate controller had learnt (see `super::aimd`): one probe
//!   at [`EXPONENTIAL_FACTOR`] × the estimate (not continued: short bursts
//!   through a shaper's token bucket can look like growth), at most every
//!   [`GROWTH_PROBE_INTERVAL`].
//!
//! A cluster's receive rate is the slower of its two halves: a token
//! bucket lets the start of a burst through at line rate and shapes the
//! rest.
//! * **After a large drop**: when the estimate fell below
//!   [`LARGE_DROP_RATIO`] × what it was (an outage's loss, a burst of cross
//!   traffic), one cluster at [`RECOVERY_PROBE_FACTOR`] × the old estimate
//!   within [`RECOVERY_WINDOW`]: if the path is back, the estimate is too.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Initial probes, as multiples of the start rate.
pub const INITIAL_PROBE_FACTORS: [f64; 2] = [3.0, 6.0];
/// Shortest send window of a cluster.
pub const PROBE_DURATION: Duration = Duration::from_millis(30);
/// Fewest packets in a cluster.
pub const PROBE_MIN_PACKETS: u32 = 6;
/// A result of at least this share of the target probes further.
pub const CONTINUE_RATIO: f64 = 0.7;
/// The next exponential probe, as a multiple of the last result.
pub const EXPONENTIAL_FACTOR: f64 = 2.0;
/// Time between probes while application-limited.
pub const ALR_PROBE_INTERVAL: Duration = Duration::from_secs(4);
/// ALR probe target, as a multiple of the estimate.
pub const ALR_PROBE_FACTOR: f64 = 2.0;
/// The estimate falling below this share of its recent value is a large drop.
pub const LARGE_DROP_RATIO: f64 = 0.66;
/// Recovery probe target, as a share of the estimate before the drop.
pub const RECOVERY_PROBE_FACTOR: f64 = 0.85;
/// How long after a large drop a recovery probe is still worth sending.
pub const RECOVERY_WINDOW: Duration = Duration::from_secs(5);
/// Probes after the link was seen to grow at most this often.
pub const GROWTH_PROBE_INTERVAL: Duration = Duration::from_secs(5);
/// Results for clusters whose feedback has not arrived after this are dropped.
pub const RESULT_TIMEOUT: Duration = Duration::from_secs(2);
/// Fewest received packets (share of those sent) for a valid result.
pub const MIN_RECEIVED_RATIO: f64 = 0.8;
/// Receive rate under this share of the send rate: the path is saturated.
pub const SATURATED_RATIO: f64 = 0.9;
/// On a saturated path, use this share of the receive rate.
pub const SATURATED_UTILISATION: f64 = 0.95;

/// One burst for the pacer to send.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProbeCluster {
    /// Identifies the cluster in [`ProbeMeter`].
    pub id: u32,
    /// Rate to send at, bps.
    pub target_bps: f64,
    /// Send at least this many bytes…
    pub min_bytes: usize,
    /// …and at least this many packets.
    pub min_packets: u32,
}

impl ProbeCluster {
    fn new(id: u32, target_bps: f64) -> Self {
        Self {
            id,
            target_bps,
            min_bytes: (target_bps * PROBE_DURATION.as_secs_f64() / 8.0).ceil() as usize,
            min_packets: PROBE_MIN_PACKETS,
        }
    }
}

/// Why a cluster was sent (decides what its result leads to).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeKind {
    /// Start-up or exponential probing: a good result probes further.
    Exponential,
    /// Periodic probe while application-limited.
    Alr,
    /// After a large drop.
    Recovery,
    /// The delivered rate outgrew the known capacity (single shot).
    Growth,
}

/// Decides when to probe and at what rate.
#[derive(Debug, Clone)]
pub struct ProbeController {
    next_id: u32,
    max_bps: f64,
    pending: VecDeque<(ProbeCluster, ProbeKind)>,
    in_flight: Vec<(ProbeCluster, ProbeKind, Instant)>,
    started: bool,
    last_probe: Option<Instant>,
    /// Highest estimate recently, for detecting large drops.
    recent_high: Option<(f64, Instant)>,
    /// A large drop waiting for its recovery probe: (estimate before, when).
    drop: Option<(f64, Instant)>,
    last_growth_probe: Option<Instant>,
}

impl ProbeController {
    /// A controller that probes up to `max_bps`.
    pub fn new(max_bps: f64) -> Self {
        Self {
            next_id: 1,
            max_bps,
            pending: VecDeque::new(),
            in_flight: vec![],
            started: false,
            last_probe: None,
            recent_high: None,
            drop: None,
            last_growth_probe: None,
        }
    }

    /// Changes the highest rate worth probing for.
    pub fn set_max(&mut self, max_bps: f64) {
        self.max_bps = max_bps;
    }

    fn queue(&mut self, target_bps: f64, kind: ProbeKind) {
        let cluster = ProbeCluster::new(self.next_id, target_bps.min(self.max_bps));
        self.next_id = self.next_id.wrapping_add(1).max(1);
        self.pending.push_back((cluster, kind));
    }

    /// Whether a probe is queued or waiting for its result.
    pub fn busy(&self) -> bool {
        !self.pending.is_empty() || !self.in_flight.is_empty()
    }

    /// The next cluster the pacer should send, if any.
    pub fn take(&mut self, now: Instant) -> Option<ProbeCluster> {
        let (cluster, kind) = self.pending.pop_front()?;
        self.in_flight.push((cluster, kind, now));
        self.last_probe = Some(now);
        Some(cluster)
    }

    /// Periodic decisions: start-up probes, ALR probes, recovery probes.
    pub fn poll(&mut self, now: Instant, estimate_bps: f64, app_limited: bool, feedback_ok: bool) {
        self.in_flight.retain(|(_, _, at)| now.saturating_duration_since(*at) < RESULT_TIMEOUT);
        if !self.started {
            self.started = true;
            for f in INITIAL_PROBE_FACTORS {
                if estimate_bps * f <= self.max_bps * 1.0001 || f == INITIAL_PROBE_FACTORS[0] {
                    self.queue(estimate_bps * f, ProbeKind::Exponential);
                }
            }
            self.recent_high = Some((estimate_bps, now));
            return;
        }
        // Large drops.
        match self.recent_high {
            Some((high, at)) if estimate_bps >= high || now.saturating_duration_since(at) > RECOVERY_WINDOW => {
                self.recent_high = Some((estimate_bps, now));
            }
            Some((high, _)) if estimate_bps < LARGE_DROP_RATIO * high && self.drop.is_none() => {
                self.drop = Some((high, now));
                self.recent_high = Some((estimate_bps, now));
            }
            None => self.recent_high = Some((estimate_bps, now)),
            _ => {}
        }
        if self.busy() || !feedback_ok {
            return;
        }
        if let Some((before, at)) = self.drop {
            if now.saturating_duration_since(at) > RECOVERY_WINDOW {
                self.drop = None;
            } else if before * RECOVERY_PROBE_FACTOR > estimate_bps {
                self.drop = None;
                self.queue(before * RECOVERY_PROBE_FACTOR, ProbeKind::Recovery);
                return;
            } else {
                self.drop = None;
            }
        }
        if app_limited
            && self.last_probe.is_none_or(|t| now.saturating_duration_since(t) >= ALR_PROBE_INTERVAL)
            && estimate_bps < self.max_bps
        {
            self.queue(estimate_bps * ALR_PROBE_FACTOR, ProbeKind::Alr);
        }
    }

    /// The delivered rate rose far above the last known capacity: the link
    /// got faster. Probe at [`EXPONENTIAL_FACTOR`] × the estimate instead of
    /// creeping up a few per cent per second (at most once per [`GROWTH_PROBE_INTERVAL`]).
    pub fn on_capacity_grew(&mut self, now: Instant, estimate_bps: f64) {
        if self.busy()
            || estimate_bps >= self.max_bps
            || self.last_growth_probe.is_some_and(|t| now.saturating_duration_since(t) < GROWTH_PROBE_INTERVAL)
        {
            return;
        }
        self.last_growth_probe = Some(now);
        self.queue(estimate_bps * EXPONENTIAL_FACTOR, ProbeKind::Growth);
    }

    /// A cluster's measured result. Returns the kind of probe it was.
    pub fn on_result(&mut self, id: u32, result_bps: f64) -> Option<ProbeKind> {
        let i = self.in_flight.iter().position(|(c, _, _)| c.id == id)?;
        let (cluster, kind, _) = self.in_flight.remove(i);
        if kind == ProbeKind::Exponential
            && result_bps >= CONTINUE_RATIO * cluster.target_bps
            && cluster.target_bps < self.max_bps
            && !self.pending.iter().any(|(_, k)| *k == ProbeKind::Exponential)
            && !self.in_flight.iter().any(|(_, k, _)| *k == ProbeKind::Exponential)
        {
            // Only the last of a series probes further (the start-up pair
            // would otherwise fork into two chains).
            self.queue(result_bps * EXPONENTIAL_FACTOR, ProbeKind::Exponential);
        }
        Some(kind)
    }

    /// A cluster that could not be measured (too much loss, too few packets).
    pub fn on_failed(&mut self, id: u32) {
        self.in_flight.retain(|(c, _, _)| c.id != id);
    }
}

/// What a cluster measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProbeResult {
    /// The rate the path carried, bps.
    pub bps: f64,
    /// The path could not keep up with the probe: `bps` is its capacity
    /// now, not a lower bound.
    pub saturated: bool,
}

/// Send-side record of one cluster, and what feedback said about it.
#[derive(Debug, Clone)]
struct Measured {
    id: u32,
    first_departure: Instant,
    last_departure: Instant,
    last_size: usize,
    sent_bytes: usize,
    sent_packets: u32,
    done_sending: bool,
    finished_at: Option<Instant>,
    received_packets: u32,
    /// (arrival, size) of the packets that arrived.
    arrivals: Vec<(std::time::Duration, usize)>,
}

/// Measures clusters: the pacer reports what it sent, feedback what arrived.
#[derive(Debug, Clone, Default)]
pub struct ProbeMeter {
    clusters: Vec<Measured>,
}

impl ProbeMeter {
    /// Nothing measured.
    pub fn new() -> Self {
        Self::default()
    }

    /// A packet of cluster `id` left at `departure`.
    pub fn on_sent(&mut self, id: u32, departure: Instant, size_bytes: usize) {
        if let Some(m) = self.clusters.iter_mut().find(|m| m.id == id) {
            m.last_departure = departure;
            m.last_size = size_bytes;
            m.sent_bytes += size_bytes;
            m.sent_packets += 1;
        } else {
            self.clusters.push(Measured {
                id,
                first_departure: departure,
                last_departure: departure,
                last_size: size_bytes,
                sent_bytes: size_bytes,
                sent_packets: 1,
                done_sending: false,
                finished_at: None,
                received_packets: 0,
                arrivals: Vec::new(),
            });
        }
    }

    /// Whether a packet that left at `departure` belongs to a cluster being measured.
    pub fn covers(&self, departure: Instant) -> bool {
        self.clusters.iter().any(|m| departure >= m.first_departure && departure <= m.last_departure)
    }

    /// Cluster `id` is complete on the send side.
    pub fn on_finished(&mut self, id: u32, now: Instant) {
        if let Some(m) = self.clusters.iter_mut().find(|m| m.id == id) {
            m.done_sending = true;
            m.finished_at = Some(now);
        }
    }

    /// One reported packet (arrived or lost). Returns `(id, Some(bps))` for
    /// clusters whose window the feedback has now fully covered (`None`: the
    /// cluster could not be measured).
    pub fn on_report(
        &mut self,
        departure: Instant,
        size_bytes: usize,
        arrival: Option<std::time::Duration>,
        out: &mut Vec<(u32, Option<ProbeResult>)>,
    ) {
        for m in &mut self.clusters {
            if departure >= m.first_departure
                && departure <= m.last_departure
                && let Some(a) = arrival
            {
                m.received_packets += 1;
                m.arrivals.push((a, size_bytes));
            }
        }
        let mut i = 0;
        while i < self.clusters.len() {
            let m = &self.clusters[i];
            if m.done_sending && departure > m.last_departure {
                let m = self.clusters.remove(i);
                out.push((m.id, m.result()));
            } else {
                i += 1;
            }
        }
    }

    /// Drops clusters whose feedback never came.
    pub fn expire(&mut self, now: Instant, out: &mut Vec<(u32, Option<ProbeResult>)>) {
        self.clusters.retain(|m| {
            let stale = m.finished_at.is_some_and(|t| now.saturating_duration_since(t) > RESULT_TIMEOUT);
            if stale {
                out.push((m.id, None));
            }
            !stale
        });
    }
}

impl Measured {
    fn result(&self) -> Option<ProbeResult> {
        if self.sent_packets < 2 || f64::from(self.received_packets) < MIN_RECEIVED_RATIO * f64::from(self.sent_packets)
        {
            return None;
        }
        let send_span = self.last_departure.saturating_duration_since(self.first_departure).as_secs_f64();
        if send_span <= 0.0005 {
            return None;
        }
        let send_bps = (self.sent_bytes - self.last_size) as f64 * 8.0 / send_span;
        let mut arrivals = self.arrivals.clone();
        arrivals.sort_by_key(|(a, _)| *a);
        // The slower half: a token bucket (a shaper's burst allowance) lets
        // the start of a burst through at line rate and shapes the rest;
        // the second half shows the shaped rate. On other links both halves
        // agree. Each half's rate leaves out its first packet's size.
        let rate = |part: &[(std::time::Duration, usize)]| -> Option<f64> {
            let span = part.last()?.0.checked_sub(part.first()?.0)?.as_secs_f64();
            let bytes: usize = part.iter().skip(1).map(|(_, s)| s).sum();
            (span > 0.0005).then(|| bytes as f64 * 8.0 / span)
        };
        let whole = rate(&arrivals)?;
        let mid = arrivals.len() / 2;
        let recv_bps = if arrivals.len() >= 6 {
            match (rate(&arrivals[..=mid]), rate(&arrivals[mid..])) {
                (Some(a), Some(b)) => a.min(b).min(whole),
                _ => whole,
            }
        } else {
            whole
        };
        Some(if recv_bps < SATURATED_RATIO * send_bps {
            ProbeResult { bps: SATURATED_UTILISATION * recv_bps, saturated: true }
        } else {
            ProbeResult { bps: send_bps.min(recv_bps), saturated: false }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_probes_then_goes_exponential_until_a_probe_falls_short() {
        let t0 = Instant::now();
        let mut p = ProbeController::new(20e6);
        p.poll(t0, 1e6, false, true);
        let a = p.take(t0).unwrap();
        let b = p.take(t0).unwrap();
        assert_eq!((a.target_bps, b.target_bps), (3e6, 6e6));
        assert!(a.min_bytes >= 11_000 && a.min_packets >= PROBE_MIN_PACKETS);
        assert_eq!(p.on_result(a.id, 3e6), Some(ProbeKind::Exponential));
        assert!(p.take(t0).is_none(), "the second start probe is still out");
        p.on_result(b.id, 5.9e6);
        let c = p.take(t0).unwrap();
        assert!((c.target_bps - 11.8e6).abs() < 1.0);
        p.on_result(c.id, 2e6); // fell short: stop
        assert!(!p.busy());
    }

    #[test]
    fn alr_probes_periodically_and_recovery_after_a_drop() {
        let t0 = Instant::now();
        let mut p = ProbeController::new(20e6);
        p.poll(t0, 1e6, false, true);
        while let Some(c) = p.take(t0) {
            p.on_failed(c.id);
        }
        p.poll(t0 + Duration::from_secs(1), 1e6, true, true);
        assert!(!p.busy(), "the start probe was just now");
        p.poll(t0 + ALR_PROBE_INTERVAL, 1e6, true, true);
        let c = p.take(t0 + ALR_PROBE_INTERVAL).expect("ALR probe");
        assert_eq!(c.target_bps, 2e6);
        p.on_result(c.id, 1.2e6);
        // A drop to 40 % of the recent estimate: one recovery probe at 85 %.
        let t = t0 + ALR_PROBE_INTERVAL + Duration::from_millis(100);
        p.poll(t, 0.4e6, false, false);
        assert!(!p.busy(), "no probe into a link without feedback");
        p.poll(t + Duration::from_millis(500), 0.4e6, false, true);
        let r = p.take(t).expect("recovery probe");
        assert!((r.target_bps - 0.85e6).abs() < 1.0);
    }

    #[test]
    fn a_token_bucket_burst_does_not_fool_the_meter() {
        let t0 = Instant::now();
        let mut m = ProbeMeter::new();
        // 24 packets of 1000 bytes at 6 Mbps into a 1 Mbit/s shaper with a
        // 12 kB burst: the first 12 arrive at the send rate, the rest shaped.
        let mut tokens = 12_000.0f64;
        let mut free = 0.0f64;
        let mut arrivals = vec![];
        for i in 0..24u32 {
            let sent = f64::from(i) * 8000.0 / 6e6;
            m.on_sent(1, t0 + Duration::from_secs_f64(sent), 1000);
            let arrive = if tokens >= 1000.0 {
                tokens -= 1000.0;
                sent
            } else {
                free = free.max(sent) + 8000.0 / 1e6;
                free
            };
            arrivals.push((sent, arrive));
        }
        m.on_finished(1, t0);
        let mut out = vec![];
        for (sent, arrived) in arrivals {
            m.on_report(t0 + Duration::from_secs_f64(sent), 1000, Some(Duration::from_secs_f64(arrived)), &mut out);
        }
        m.on_report(t0 + Duration::from_secs(1), 1000, None, &mut out);
        let result = out[0].1.unwrap();
        assert!(result.saturated);
        let result = result.bps;
        assert!(result < 1.3e6, "{result}");
    }

    #[test]
    fn meter_reads_saturated_and_unsaturated_paths() {
        let t0 = Instant::now();
        let measure = |link_bps: f64| {
            let mut m = ProbeMeter::new();
            // 20 packets of 1000 bytes at 4 Mbps (2 ms apart).
            let mut link_free = 0.0f64;
            let mut arrivals = vec![];
            for i in 0..20u32 {
                let sent = f64::from(i) * 0.002;
                m.on_sent(1, t0 + Duration::from_secs_f64(sent), 1000);
                link_free = link_free.max(sent) + 8000.0 / link_bps;
                arrivals.push((sent, link_free));
            }
            m.on_finished(1, t0);
            let mut out = vec![];
            for (sent, arrived) in arrivals {
                m.on_report(t0 + Duration::from_secs_f64(sent), 1000, Some(Duration::from_secs_f64(arrived)), &mut out);
            }
            m.on_report(t0 + Duration::from_secs(1), 1000, None, &mut out);
            out[0].1.unwrap().bps
        };
        let fast = measure(10e6);
        assert!((fast - 4e6).abs() < 0.2e6, "{fast}");
        let slow = measure(1e6);
        assert!((slow - 0.95e6).abs() < 0.06e6, "{slow}");
    }
}
