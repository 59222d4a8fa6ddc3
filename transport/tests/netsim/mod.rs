//! A link simulation in plain Rust, faster than real time and
//! deterministic: Peep's send side (estimator + pacer, the real
//! [`SendController`]) and an encoder model (the real frame dropper, keyframe
//! budget, rate combiner and keyframe coalescer) sending over a modelled
//! bottleneck to a modelled browser receiver.
//!
//! * **Link**: a FIFO at a (time-varying) rate with a token-bucket burst
//!   allowance and a tail-drop limit given as time at the current rate
//!   (like `tc tbf rate … burst … latency`), per-packet
//!   overhead for IP/UDP/SRTP, one-way propagation delay each way, random or
//!   bursty (Gilbert–Elliott) loss after the queue, outages (everything lost
//!   both ways), and constant-rate cross traffic sharing the queue.
//! * **Receiver** (modelled on Chromium's): transport-wide feedback every
//!   [`FEEDBACK_INTERVAL`] for every sequence number since the last report
//!   (arrival times quantised to 250 µs as TWCC does); NACKs for sequence gaps,
//!   repeated every RTT, given up after [`NACK_MAX_RETRIES`] or
//!   [`NACK_GIVE_UP`]; a PLI when a frame cannot be completed (at most one
//!   per [`PLI_INTERVAL`] while waiting); frames decode when complete and
//!   their predecessor decoded (keyframes always); freezes by the
//!   `getStats()` definition (an inter-frame gap above
//!   max(3 × average, average + 150 ms)). Rendering follows the playout
//!   delay the sender writes on each packet, as Chromium does: a minimum of
//!   0 (with a maximum ≤ 500 ms) selects its low-latency renderer, which
//!   shows each frame as soon as it is decoded — no jitter buffer, so every
//!   retransmission is a visible stall (what the real link showed; an
//!   earlier model smoothed with a jitter buffer regardless and passed T3
//!   while Chromium froze); otherwise frames are held until their expected
//!   arrival plus a delay between the minimum and the maximum, following
//!   the delay variation the receiver sees.
//! * **Encoder model**: frames at up to `fps`, sizes from the content (busy:
//!   the rate target ÷ fps, ±30 %, up to what the content needs; static:
//!   nothing but a 200-byte keep-alive per second; a full-screen change: one
//!   large frame), keyframes on PLI through the real keyframe coalescer,
//!   sized by the real [`KeyframeBudget`] (the first one of a session is
//!   larger: OpenH264 picks its QP itself), the real [`FrameDropper`] fed
//!   with the pacer's queue delay, and the real [`RateController`] turning
//!   the estimate into the encoder target.
//!
//! Feedback is resolved with `rtc`'s own `History` exactly as the
//! congestion-control interceptor does.

#![allow(dead_code)]

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use peep_encode::budget::{FrameDropper, KeyframeBudget};
use peep_transport::bwe::BweConfig;
use peep_transport::keyframe::{KeyframeCoalescer, KeyframeReason};
use peep_transport::pacer::{Paced, Release};
use peep_transport::rate::{BitrateRange, RateController};
use peep_transport::sender::SendController;
use rtc::interceptor::{Acknowledgement, History};
use rtc::rtcp::transport_feedbacks::cc_feedback_report::Ecn;

/// Simulation step.
pub const STEP: Duration = Duration::from_millis(1);
/// The receiver's transport feedback interval (Chromium: 50–100 ms).
pub const FEEDBACK_INTERVAL: Duration = Duration::from_millis(50);
/// NACKs per missing packet before the receiver gives up.
pub const NACK_MAX_RETRIES: u32 = 10;
/// A packet missing this long is given up.
pub const NACK_GIVE_UP: Duration = Duration::from_millis(1200);
/// Keyframe requests at most this often while waiting for one.
pub const PLI_INTERVAL: Duration = Duration::from_millis(500);
/// Bytes added on the wire to each RTP packet (IPv4 20 + UDP 8 + SRTP tag 10).
pub const WIRE_OVERHEAD: usize = 38;
/// RTP payload per packet (plus 30 bytes of header and extensions).
pub const PACKET_PAYLOAD: usize = 1170;
/// RTP header + extensions of a media packet.
pub const RTP_HEADER: usize = 30;
/// The rate of the link behind the shaper (a burst leaves at this rate).
const LINE_RATE_BPS: f64 = 100e6;
/// The receiver clock runs this far ahead of ours (only differences matter).
const RECEIVER_CLOCK_OFFSET: Duration = Duration::from_secs(5000);

/// Random or bursty loss.
#[derive(Debug, Clone, Copy)]
pub enum Loss {
    /// No loss.
    None,
    /// Each packet lost with this probability.
    Random(f64),
    /// Gilbert–Elliott: (P good→bad, P bad→good, loss in bad).
    Burst(f64, f64, f64),
}

/// What the screen shows from `start` on.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Content {
    /// Scrolling text: frames as large as the target allows, up to `natural_bytes`.
    Busy { natural_bytes: usize },
    /// Nothing changes (one keep-alive frame per second).
    Static,
    /// One full-screen change of `natural_bytes` (encoded within the
    /// keyframe budget × 1.5), then busy.
    Change { natural_bytes: usize },
}

/// A scenario.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// Name for the results table.
    pub name: &'static str,
    /// Simulated time.
    pub duration: Duration,
    /// Link rate from each instant on, bps.
    pub rate: Vec<(Duration, f64)>,
    /// One-way delay (each direction).
    pub one_way: Duration,
    /// Bottleneck queue limit, as time at the current rate.
    pub queue_limit: Duration,
    /// The shaper's burst allowance (tbf `burst`): this much passes at line
    /// rate after an idle period.
    pub burst_bytes: usize,
    /// Loss after the queue.
    pub loss: Loss,
    /// Intervals of 100 % loss both ways.
    pub outages: Vec<(Duration, Duration)>,
    /// Constant-rate cross traffic: (from, to, bps).
    pub cross: Vec<(Duration, Duration, f64)>,
    /// Content from each instant on.
    pub content: Vec<(Duration, Content)>,
    /// Highest frame rate.
    pub fps: f32,
    /// Encoder bitrate range (the quality preset).
    pub range: BitrateRange,
    /// First keyframe of a session (OpenH264 chooses its QP), bytes.
    pub first_keyframe_bytes: usize,
    /// Random seed.
    pub seed: u64,
}

impl Scenario {
    /// A 720p share of scrolling text on a link of `bps` with `rtt`.
    pub fn new(name: &'static str, bps: f64, rtt: Duration, duration: Duration) -> Self {
        Self {
            name,
            duration,
            rate: vec![(Duration::ZERO, bps)],
            one_way: rtt / 2,
            queue_limit: Duration::from_millis(150),
            burst_bytes: 16_000,
            loss: Loss::None,
            outages: vec![],
            cross: vec![],
            content: vec![(Duration::ZERO, Content::Busy { natural_bytes: 25_000 })],
            fps: 30.0,
            range: BitrateRange::new(300_000, 4_000_000),
            first_keyframe_bytes: 45_000,
            seed: 1,
        }
    }
}

/// One sample of the time series (every 100 ms).
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    /// Time since start.
    pub t: Duration,
    /// Link rate, bps.
    pub link_bps: f64,
    /// The estimate, bps.
    pub estimate_bps: f64,
    /// The encoder target, bps.
    pub target_bps: f64,
    /// Pacer queue delay.
    pub pacer_queue: Duration,
    /// Bottleneck queue delay.
    pub link_queue: Duration,
    /// Media bits that reached the receiver in the last 100 ms, as bps.
    pub delivered_bps: f64,
    /// The highest busy-period arrival rate (media, padding and probes) the
    /// receiver measured in the last 10 s: what the link demonstrably carried.
    pub delivered_peak_bps: f64,
    /// Whether the encoder's content is static.
    pub static_content: bool,
}

/// Window over which the jitter buffer model sizes itself.
pub const JITTER_WINDOW: Duration = Duration::from_secs(3);

/// Chromium's low-latency renderer is used for a minimum playout delay of
/// 0 and a maximum up to this.
pub const LOW_LATENCY_MAX_PLAYOUT: Duration = Duration::from_millis(500);

/// A decoded frame.
#[derive(Debug, Clone, Copy)]
pub struct Decoded {
    /// Encoder frame number.
    pub frame: u64,
    /// Capture time.
    pub captured: Duration,
    /// Decode time (receiver, our clock): when the frame was complete.
    pub decoded: Duration,
    /// Render time as Chromium would render it (see the module docs): at
    /// decode with a minimum playout delay of 0; otherwise held until
    /// `captured + smallest delay seen + target`, where the target is the
    /// 95th percentile of the delay variation of the last [`JITTER_WINDOW`]
    /// of frames, clamped to the playout delay's minimum and maximum.
    pub rendered: Duration,
    /// The playout delay (min, max) the frame's packets carried.
    pub playout: (Duration, Duration),
    /// Keyframe?
    pub keyframe: bool,
    /// First frame of a full-screen change?
    pub change: bool,
}

/// What a run produced.
#[derive(Debug, Clone, Default)]
pub struct Results {
    /// Time series.
    pub samples: Vec<Sample>,
    /// Decoded frames in decode order.
    pub decoded: Vec<Decoded>,
    /// Keyframe requests the receiver sent.
    pub plis: Vec<Duration>,
    /// Frames the encoder produced / skipped.
    pub frames_encoded: u64,
    /// Frames skipped by the frame dropper (budget, backlog).
    pub frames_skipped: (u64, u64),
    /// Keyframes sent.
    pub keyframes: u64,
    /// Packets retransmitted, NACKs the receiver sent.
    pub retransmissions: u64,
    /// NACK packets the receiver sent.
    pub nacks: u64,
    /// Probe clusters completed.
    pub probes: u64,
    /// Media packets lost on the link (queue overflow + random + outage).
    pub link_drops: u64,
}

impl Results {
    /// Freezes (start time, duration) by the `getStats()` definition, on
    /// decode times (no jitter buffer: the worst case).
    pub fn freezes(&self) -> Vec<(Duration, Duration)> {
        Self::freezes_of(self.decoded.iter().map(|d| d.decoded))
    }

    /// Freezes on render times (through the jitter buffer model).
    pub fn rendered_freezes(&self) -> Vec<(Duration, Duration)> {
        Self::freezes_of(self.decoded.iter().map(|d| d.rendered))
    }

    fn freezes_of(times: impl Iterator<Item = Duration>) -> Vec<(Duration, Duration)> {
        let times: Vec<Duration> = times.collect();
        let mut out = vec![];
        let mut gaps: VecDeque<f64> = VecDeque::new();
        for w in times.windows(2) {
            let gap = (w[1] - w[0]).as_secs_f64();
            if gaps.len() >= 5 {
                let avg = gaps.iter().sum::<f64>() / gaps.len() as f64;
                if gap > (3.0 * avg).max(avg + 0.150) {
                    out.push((w[0], Duration::from_secs_f64(gap)));
                }
            }
            gaps.push_back(gap);
            if gaps.len() > 30 {
                gaps.pop_front();
            }
        }
        out
    }

    /// Decoded frames per second between two instants.
    pub fn fps(&self, from: Duration, to: Duration) -> f64 {
        let n = self.decoded.iter().filter(|d| d.decoded >= from && d.decoded < to).count();
        n as f64 / (to - from).as_secs_f64()
    }

    /// Capture-to-decode delay percentile (0..=1) of frames decoded in the interval.
    pub fn delay_quantile(&self, from: Duration, to: Duration, q: f64) -> Duration {
        self.quantile(from, to, q, |d| d.decoded - d.captured)
    }

    /// Capture-to-render delay percentile (glass-to-glass, less decode and display).
    pub fn render_delay_quantile(&self, from: Duration, to: Duration, q: f64) -> Duration {
        self.quantile(from, to, q, |d| d.rendered - d.captured)
    }

    /// The jitter buffer model's added delay (render − decode) percentile.
    pub fn jitter_buffer_quantile(&self, from: Duration, to: Duration, q: f64) -> Duration {
        self.quantile(from, to, q, |d| d.rendered - d.decoded)
    }

    fn quantile(&self, from: Duration, to: Duration, q: f64, f: impl Fn(&Decoded) -> Duration) -> Duration {
        let mut d: Vec<Duration> = self.decoded.iter().filter(|d| d.decoded >= from && d.decoded < to).map(f).collect();
        if d.is_empty() {
            return Duration::MAX;
        }
        d.sort();
        d[((d.len() - 1) as f64 * q).round() as usize]
    }

    /// Samples within an interval.
    pub fn samples_in(&self, from: Duration, to: Duration) -> impl Iterator<Item = &Sample> {
        self.samples.iter().filter(move |s| s.t >= from && s.t < to)
    }
}

/// A media packet as the pacer sees it.
#[derive(Debug, Clone)]
struct SimPacket {
    size: usize,
    frame: u64,
    packets_in_frame: u16,
    first: bool,
    end: bool,
    keyframe: bool,
    change: bool,
    captured: Duration,
}

impl Paced for SimPacket {
    fn size(&self) -> usize {
        self.size
    }
    fn frame_end(&self) -> bool {
        self.end
    }
    fn keyframe_start(&self) -> bool {
        self.keyframe && self.first
    }
}

/// What crosses the link.
#[derive(Debug, Clone)]
enum Wire {
    Media { twcc: u16, seq: u16, packet: SimPacket, playout: (Duration, Duration) },
    Padding { twcc: u16, seq: u16 },
    Cross,
}

#[derive(Debug, Clone)]
enum Back {
    Feedback(Vec<Acknowledgement>),
    Nack(Vec<u16>),
    Pli,
}

/// xorshift64*: deterministic, good enough for loss and noise.
#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    fn next_f64(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// A frame the receiver has packets of.
struct PartialFrame {
    received: u16,
    packets: u16,
    keyframe: bool,
    change: bool,
    captured: Duration,
    /// The playout delay (min, max) its packets carried.
    playout: (Duration, Duration),
}

impl PartialFrame {
    fn complete(&self) -> bool {
        self.received >= self.packets
    }
}

struct Receiver {
    /// twcc seq → arrival (receiver clock), in arrival order of seq space.
    arrivals: BTreeMap<u16, Duration>,
    next_report: Option<u16>,
    highest_twcc: Option<u16>,
    last_feedback: Duration,
    highest_seq: Option<u16>,
    /// Missing media seq → (first detected, last NACK, retries).
    missing: BTreeMap<u16, (Duration, Duration, u32)>,
    frames: BTreeMap<u64, PartialFrame>,
    last_decoded: Option<u64>,
    waiting_for_keyframe: bool,
    last_pli: Option<Duration>,
    given_up: Vec<u64>,
    seq_frame: BTreeMap<u16, u64>,
    delivered_bits: f64,
    received_seqs: std::collections::BTreeSet<u16>,
    /// Recent (complete time, network delay) of frames, for the jitter buffer model.
    frame_delays: VecDeque<(Duration, Duration)>,
    last_render: Duration,
    /// Busy period in progress: (start, last arrival, bytes after the first, packets).
    busy: Option<(Duration, Duration, usize, u32)>,
    /// Busy-period rates measured: (when, bps).
    busy_rates: VecDeque<(Duration, f64)>,
}

fn seq_newer(a: u16, b: u16) -> bool {
    a != b && a.wrapping_sub(b) < 0x8000
}

impl Receiver {
    fn new() -> Self {
        Self {
            arrivals: BTreeMap::new(),
            next_report: None,
            highest_twcc: None,
            last_feedback: Duration::ZERO,
            highest_seq: None,
            missing: BTreeMap::new(),
            frames: BTreeMap::new(),
            last_decoded: None,
            waiting_for_keyframe: false,
            last_pli: None,
            given_up: vec![],
            seq_frame: BTreeMap::new(),
            delivered_bits: 0.0,
            received_seqs: std::collections::BTreeSet::new(),
            frame_delays: VecDeque::new(),
            last_render: Duration::ZERO,
            busy: None,
            busy_rates: VecDeque::new(),
        }
    }

    fn on_seq(&mut self, now: Duration, seq: u16, back: &mut Vec<Back>) {
        self.missing.remove(&seq);
        match self.highest_seq {
            None => self.highest_seq = Some(seq),
            Some(h) if seq_newer(seq, h) => {
                let mut nack = vec![];
                let mut s = h.wrapping_add(1);
                while s != seq {
                    self.missing.insert(s, (now, now, 1));
                    nack.push(s);
                    s = s.wrapping_add(1);
                }
                if !nack.is_empty() {
                    back.push(Back::Nack(nack));
                }
                self.highest_seq = Some(seq);
            }
            _ => {}
        }
    }

    /// Busy periods of arrivals (any packet): runs less than 25 ms apart,
    /// measured like the estimator's acknowledged rate but independently.
    fn on_arrival(&mut self, now: Duration, size: usize) {
        match &mut self.busy {
            Some((_, last, bytes, packets)) if now - *last <= Duration::from_millis(25) => {
                *last = now;
                *bytes += size;
                *packets += 1;
            }
            _ => {
                if let Some((start, last, bytes, packets)) = self.busy
                    && packets >= 4
                    && last - start >= Duration::from_millis(15)
                {
                    self.busy_rates.push_back((last, bytes as f64 * 8.0 / (last - start).as_secs_f64()));
                }
                self.busy = Some((now, now, 0, 1));
            }
        }
        while self.busy_rates.front().is_some_and(|(t, _)| now - *t > Duration::from_secs(10)) {
            self.busy_rates.pop_front();
        }
    }

    fn delivered_peak(&self) -> f64 {
        self.busy_rates.iter().map(|(_, r)| *r).fold(0.0, f64::max)
    }

    fn on_packet(&mut self, now: Duration, wire: &Wire, size: usize, back: &mut Vec<Back>, decoded: &mut Vec<Decoded>) {
        let (twcc, seq) = match wire {
            Wire::Media { twcc, seq, .. } | Wire::Padding { twcc, seq } => (*twcc, *seq),
            Wire::Cross => return,
        };
        self.on_arrival(now, size);
        // A second copy of a sequence number already received is dropped by
        // the browser's SRTP replay check before transport feedback sees it.
        let duplicate = !self.missing.contains_key(&seq) && self.highest_seq.is_some_and(|h| !seq_newer(seq, h));
        if duplicate && self.received_seqs.contains(&seq) {
            self.track_twcc(twcc);
            return;
        }
        self.received_seqs.insert(seq);
        if self.received_seqs.len() > 4096 {
            let oldest = *self.received_seqs.iter().next().expect("not empty");
            self.received_seqs.remove(&oldest);
        }
        let arrival = now + RECEIVER_CLOCK_OFFSET;
        // TWCC resolution is 250 µs.
        let q = Duration::from_micros((arrival.as_micros() as u64 / 250) * 250);
        self.arrivals.insert(twcc, q);
        self.track_twcc(twcc);
        self.on_seq(now, seq, back);
        if duplicate {
            return;
        }
        if let Wire::Media { packet, playout, .. } = wire {
            self.delivered_bits += size as f64 * 8.0;
            self.seq_frame.insert(seq, packet.frame);
            let entry = self.frames.entry(packet.frame).or_insert(PartialFrame {
                received: 0,
                packets: packet.packets_in_frame,
                keyframe: packet.keyframe,
                change: packet.change,
                captured: packet.captured,
                playout: *playout,
            });
            entry.received += 1;
            self.try_decode(now, decoded);
        }
    }

    fn track_twcc(&mut self, twcc: u16) {
        if self.next_report.is_none() {
            self.next_report = Some(twcc);
        }
        if self.highest_twcc.is_none_or(|h| seq_newer(twcc, h)) {
            self.highest_twcc = Some(twcc);
        }
    }

    fn try_decode(&mut self, now: Duration, decoded: &mut Vec<Decoded>) {
        loop {
            // The newest complete keyframe newer than what was decoded lets us skip ahead.
            let next = self.last_decoded.map_or(0, |f| f + 1);
            let candidate = if self.waiting_for_keyframe {
                self.frames.iter().find(|(id, f)| **id >= next && f.keyframe && f.complete()).map(|(id, _)| *id)
            } else if self.frames.get(&next).is_some_and(PartialFrame::complete) {
                Some(next)
            } else {
                self.frames.iter().find(|(id, f)| **id > next && f.keyframe && f.complete()).map(|(id, _)| *id)
            };
            let Some(id) = candidate else { return };
            let f = self.frames.remove(&id).expect("candidate exists");
            self.frames.retain(|k, _| *k > id);
            self.last_decoded = Some(id);
            self.waiting_for_keyframe = false;
            // Jitter buffer model.
            let delay = now - f.captured;
            self.frame_delays.push_back((now, delay));
            while self.frame_delays.front().is_some_and(|(t, _)| now - *t > JITTER_WINDOW) {
                self.frame_delays.pop_front();
            }
            let mut delays: Vec<Duration> = self.frame_delays.iter().map(|(_, d)| *d).collect();
            delays.sort();
            let min = delays[0];
            let p95 = delays[((delays.len() - 1) as f64 * 0.95).round() as usize];
            let (playout_min, playout_max) = f.playout;
            let rendered = if playout_min.is_zero() && playout_max <= LOW_LATENCY_MAX_PLAYOUT {
                now
            } else {
                let target = (p95 - min).clamp(playout_min, playout_max.max(playout_min));
                now.max(f.captured + min + target)
            }
            .max(self.last_render);
            self.last_render = rendered;
            decoded.push(Decoded {
                frame: id,
                captured: f.captured,
                decoded: now,
                rendered,
                keyframe: f.keyframe,
                change: f.change,
                playout: f.playout,
            });
        }
    }

    fn tick(&mut self, now: Duration, rtt: Duration, back: &mut Vec<Back>) {
        // Transport feedback.
        if now - self.last_feedback >= FEEDBACK_INTERVAL
            && let (Some(from), Some(to)) = (self.next_report, self.highest_twcc)
            && !seq_newer(from, to.wrapping_add(1))
            && from != to.wrapping_add(1)
        {
            let mut acks = vec![];
            let mut s = from;
            loop {
                acks.push(match self.arrivals.remove(&s) {
                    Some(a) => Acknowledgement::received(s, Some(a), Ecn::NotEct),
                    None => Acknowledgement::lost(s),
                });
                if s == to {
                    break;
                }
                s = s.wrapping_add(1);
            }
            self.next_report = Some(to.wrapping_add(1));
            self.last_feedback = now;
            back.push(Back::Feedback(acks));
        }
        // NACK repeats and give-ups.
        let mut nack = vec![];
        let mut give_up = false;
        self.missing.retain(|seq, (first, last, retries)| {
            if now - *first > NACK_GIVE_UP || *retries >= NACK_MAX_RETRIES {
                give_up = true;
                return false;
            }
            if now - *last >= rtt {
                *last = now;
                *retries += 1;
                nack.push(*seq);
            }
            true
        });
        if !nack.is_empty() {
            back.push(Back::Nack(nack));
        }
        if give_up {
            self.waiting_for_keyframe = true;
        }
        // Stuck: a frame older than the give-up time is incomplete.
        let next = self.last_decoded.map_or(0, |f| f + 1);
        if let Some(f) = self.frames.get(&next)
            && now.saturating_sub(f.captured) > NACK_GIVE_UP + Duration::from_millis(500)
        {
            self.waiting_for_keyframe = true;
        }
        if self.waiting_for_keyframe && self.last_pli.is_none_or(|t| now - t >= PLI_INTERVAL) {
            self.last_pli = Some(now);
            back.push(Back::Pli);
        }
    }
}

struct Link {
    free_at: Duration,
    tokens: f64,
    tokens_at: Duration,
    in_flight: VecDeque<(Duration, Wire, usize)>,
    back: VecDeque<(Duration, Back)>,
    bad: bool,
    drops: u64,
    cross_owed: f64,
}

impl Scenario {
    fn rate_at(&self, t: Duration) -> f64 {
        self.rate.iter().rev().find(|(from, _)| *from <= t).map_or(self.rate[0].1, |(_, r)| *r)
    }

    fn content_at(&self, t: Duration) -> Content {
        self.content.iter().rev().find(|(from, _)| *from <= t).map_or(self.content[0].1, |(_, c)| *c)
    }

    fn in_outage(&self, t: Duration) -> bool {
        self.outages.iter().any(|(a, b)| t >= *a && t < *b)
    }

    fn cross_at(&self, t: Duration) -> f64 {
        self.cross.iter().filter(|(a, b, _)| t >= *a && t < *b).map(|(_, _, r)| *r).sum()
    }
}

impl Link {
    /// Offers a packet to the bottleneck at `now`.
    fn send(&mut self, sc: &Scenario, rng: &mut Rng, now: Duration, wire: Wire, rtp_size: usize) {
        let rate = sc.rate_at(now);
        let bits = (rtp_size + WIRE_OVERHEAD) as f64 * 8.0;
        let start = self.free_at.max(now);
        let queued = start - now;
        let is_media = !matches!(wire, Wire::Cross);
        if queued + Duration::from_secs_f64(bits / rate) > sc.queue_limit {
            self.drops += u64::from(is_media);
            return;
        }
        // Token bucket (tc tbf): tokens accrue at the rate up to the burst;
        // a packet with tokens leaves at line rate, one without waits for them.
        let burst_bits = sc.burst_bytes as f64 * 8.0;
        self.tokens = (self.tokens + rate * start.saturating_sub(self.tokens_at).as_secs_f64()).min(burst_bits);
        let depart = if self.tokens >= bits {
            self.tokens -= bits;
            start + Duration::from_secs_f64(bits / LINE_RATE_BPS)
        } else {
            let wait = (bits - self.tokens) / rate;
            self.tokens = 0.0;
            start + Duration::from_secs_f64(wait)
        };
        self.tokens_at = depart;
        self.free_at = depart;
        let lost = match sc.loss {
            Loss::None => false,
            Loss::Random(p) => rng.next_f64() < p,
            Loss::Burst(gb, bg, p) => {
                self.bad = if self.bad { rng.next_f64() >= bg } else { rng.next_f64() < gb };
                self.bad && rng.next_f64() < p
            }
        };
        if (lost || sc.in_outage(self.free_at)) && is_media {
            self.drops += 1;
            return;
        }
        if is_media {
            self.in_flight.push_back((self.free_at + sc.one_way, wire, rtp_size));
        }
    }

    fn queue_delay(&self, now: Duration) -> Duration {
        self.free_at.saturating_sub(now)
    }
}

/// Runs a scenario.
pub fn run(sc: &Scenario) -> Results {
    let t0 = Instant::now();
    let mut rng = Rng(sc.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let range = sc.range;
    let mut rate = RateController::new(range);
    let start_bps = f64::from(rate.current_bps());
    let mut tx: SendController<SimPacket> = SendController::new(BweConfig {
        start_bps: peep_transport::rate::BWE_START_BPS,
        min_bps: peep_transport::rate::BWE_MIN_BPS,
        max_bps: f64::from(range.ceiling_bps) * 1.5,
    });
    let _ = start_bps;
    tx.start_sequence_at(40_000);
    let mut history = History::new();
    let mut next_twcc: u16 = 65_000;
    let mut link = Link {
        free_at: Duration::ZERO,
        tokens: sc.burst_bytes as f64 * 8.0,
        tokens_at: Duration::ZERO,
        in_flight: VecDeque::new(),
        back: VecDeque::new(),
        bad: false,
        drops: 0,
        cross_owed: 0.0,
    };
    let mut rx = Receiver::new();
    let mut results = Results::default();
    let mut dropper = FrameDropper::new(rate.current_bps());
    let mut coalescer = KeyframeCoalescer::default();
    let mut target = rate.current_bps();
    let mut frame_id = 0u64;
    let mut next_capture = Duration::ZERO;
    let mut last_frame_at: Option<Duration> = None;
    let mut need_keyframe = true;
    let mut first_keyframe = true;
    let mut last_content = sc.content_at(Duration::ZERO);
    let mut change_pending = false;
    let rtt_guess = sc.one_way * 2 + Duration::from_millis(20);
    let mut back = vec![];
    let mut last_sample = Duration::ZERO;
    let mut now = Duration::ZERO;
    while now < sc.duration {
        let instant = t0 + now;
        // Deliveries to the receiver.
        while link.in_flight.front().is_some_and(|(at, _, _)| *at <= now) {
            let (_, wire, size) = link.in_flight.pop_front().expect("front exists");
            rx.on_packet(now, &wire, size, &mut back, &mut results.decoded);
        }
        rx.tick(now, rtt_guess, &mut back);
        for b in back.drain(..) {
            match &b {
                Back::Nack(_) => results.nacks += 1,
                Back::Pli => results.plis.push(now),
                Back::Feedback(_) => {}
            }
            // Feedback crosses the link back; lost in an outage.
            if !sc.in_outage(now) {
                link.back.push_back((now + sc.one_way, b));
            }
        }
        // Feedback arriving at the sender.
        while link.back.front().is_some_and(|(at, _)| *at <= now) {
            let (_, b) = link.back.pop_front().expect("front exists");
            match b {
                Back::Feedback(acks) => {
                    for a in acks {
                        history.on_twcc_feedback(instant, a);
                    }
                    let reports = history.take_reports();
                    tx.on_feedback(instant, &reports);
                }
                Back::Nack(seqs) => {
                    tx.on_nack(instant, seqs);
                }
                Back::Pli => coalescer.request(KeyframeReason::Pli),
            }
        }
        // The encoder: rate target, keyframes, capture.
        if let Some(bps) = rate.update([tx.target_bps()], instant) {
            target = bps;
            dropper.set_target(bps);
        }
        if coalescer.poll(instant) {
            need_keyframe = true;
        }
        let content = sc.content_at(now);
        if content != last_content {
            if let Content::Change { .. } = content {
                change_pending = true;
            }
            last_content = content;
        }
        if now >= next_capture {
            next_capture = now + Duration::from_secs_f64(1.0 / f64::from(sc.fps));
            let is_static = matches!(content, Content::Static) && !change_pending;
            let keepalive_due = last_frame_at.is_none_or(|t| now - t >= Duration::from_secs(1));
            if (!is_static || keepalive_due || need_keyframe)
                && dropper.decide(instant, tx.queue_delay(), need_keyframe).is_none()
            {
                let fps = f64::from(sc.fps);
                let budget_bytes = KeyframeBudget::budget_bytes(target, sc.fps);
                let noise = 0.7 + 0.6 * rng.next_f64();
                let (bytes, keyframe, change) = if need_keyframe {
                    let bytes = if first_keyframe { sc.first_keyframe_bytes } else { budget_bytes };
                    first_keyframe = false;
                    coalescer.keyframe_sent(instant);
                    (bytes, true, change_pending)
                } else if change_pending {
                    let natural = match content {
                        Content::Change { natural_bytes } => natural_bytes,
                        _ => 50_000,
                    };
                    (natural.min(budget_bytes * 3 / 2), false, true)
                } else if is_static {
                    (200, false, false)
                } else {
                    let natural = match content {
                        Content::Busy { natural_bytes } | Content::Change { natural_bytes } => natural_bytes,
                        Content::Static => 200,
                    };
                    (((f64::from(target) / 8.0 / fps).min(natural as f64) * noise) as usize, false, false)
                };
                need_keyframe = false;
                change_pending = false;
                dropper.on_encoded(instant, bytes);
                results.frames_encoded += 1;
                results.keyframes += u64::from(keyframe);
                last_frame_at = Some(now);
                let n = bytes.div_ceil(PACKET_PAYLOAD).max(1) as u16;
                for i in 0..n {
                    let payload = if i + 1 == n { bytes - PACKET_PAYLOAD * usize::from(n - 1) } else { PACKET_PAYLOAD };
                    tx.enqueue(
                        instant,
                        SimPacket {
                            size: payload + RTP_HEADER,
                            frame: frame_id,
                            packets_in_frame: n,
                            first: i == 0,
                            end: i + 1 == n,
                            keyframe,
                            change,
                            captured: now,
                        },
                    );
                }
                frame_id += 1;
            }
        }
        // The pacer.
        tx.handle_timeout(instant);
        if tx.take_keyframe_request() {
            coalescer.request(KeyframeReason::Recovery);
        }
        while let Some(r) = tx.poll_release(instant) {
            let twcc = next_twcc;
            next_twcc = next_twcc.wrapping_add(1);
            let playout = tx.playout_delay();
            let (wire, size) = match r {
                Release::Media { packet, seq, .. } | Release::Retransmission { packet, seq } => {
                    let size = packet.size;
                    (Wire::Media { twcc, seq, packet, playout }, size)
                }
                Release::Padding { seq, size, .. } | Release::TailProbe { seq, size } => {
                    (Wire::Padding { twcc, seq }, size)
                }
            };
            let seq = match &wire {
                Wire::Media { seq, .. } | Wire::Padding { seq, .. } => *seq,
                Wire::Cross => 0,
            };
            history.add_outgoing(1, seq, true, twcc, size, instant);
            link.send(sc, &mut rng, now, wire, size);
        }
        // Cross traffic.
        let cross = sc.cross_at(now);
        if cross > 0.0 {
            link.cross_owed += cross * STEP.as_secs_f64() / 8.0;
            while link.cross_owed >= 1200.0 {
                link.cross_owed -= 1200.0;
                link.send(sc, &mut rng, now, Wire::Cross, 1200 - WIRE_OVERHEAD);
            }
        }
        if now - last_sample >= Duration::from_millis(100) || now.is_zero() {
            let stats = tx.stats();
            results.samples.push(Sample {
                t: now,
                link_bps: sc.rate_at(now),
                estimate_bps: stats.bwe.target_bps,
                target_bps: f64::from(target),
                pacer_queue: stats.queue_delay,
                link_queue: link.queue_delay(now),
                delivered_bps: rx.delivered_bits / (now - last_sample).as_secs_f64().max(1e-3),
                delivered_peak_bps: rx.delivered_peak(),
                static_content: matches!(content, Content::Static),
            });
            rx.delivered_bits = 0.0;
            last_sample = now;
        }
        now += STEP;
    }
    let stats = tx.stats();
    results.frames_skipped = dropper.skipped();
    results.retransmissions = stats.pacer.retransmissions;
    results.probes = stats.pacer.probes;
    results.link_drops = link.drops;
    results
}
