//! The sender queue of one viewer: pacing, retransmissions, probes, ALR.
//!
//! Sans-IO and generic over the packet type (RTP packets in the interceptor,
//! plain structs in the link simulation), fed with `now`.
//!
//! * **Pacing.** Packets leave at [`PACING_FACTOR`] × the estimate from a
//!   leaky bucket that may burst [`BURST`] worth of bits. 1.1 × gives the
//!   queue room to drain after a large frame without running the link at
//!   more than it carries for long (`rtc` 0.21 paces at exactly 1 ×, so a
//!   keyframe queues for seconds; Peep used 2.5 ×, which overflows slow
//!   links).
//! * **Retransmissions first.** A NACKed packet jumps the media queue: a
//!   viewer whose decoder waits for it is already late.
//! * **NACK discipline.** A NACK for a packet that is already queued for
//!   retransmission, or was retransmitted less than one round trip ago, is
//!   ignored (the answer is on its way; browsers repeat NACKs every RTT). A
//!   packet first sent more than [`RTX_MAX_AGE`] ago is not resent: the
//!   viewer has given up on that frame and asks for a keyframe instead.
//! * **No holes.** Media packets are never dropped from the queue: the queue
//!   is kept short by the *encoder*, which skips whole frames when
//!   [`Pacer::queue_delay`] is high (see the app's frame dropper). Should the
//!   queue still hold more than [`QUEUE_TIME_LIMIT`] (many viewers, a sudden
//!   collapse), the pacer sends faster than the estimate so the queue drains
//!   within that time: late is better than broken.
//! * **Own sequence numbers.** Padding for probes needs sequence numbers of
//!   the media stream (a padding-only RTP packet on the same SSRC, RFC 3550
//!   §5.1: browsers drop it after counting it). So the pacer numbers every
//!   packet it releases itself, continuing from the first media packet's
//!   number; the media stream stays gap-free. Padding goes only between
//!   frames (after a packet with the marker bit), never inside one.
//! * **Keyframes supersede.** When a keyframe is queued, the frames queued
//!   before it that have not started leaving are discarded: the keyframe
//!   does not depend on them, and nothing has numbered them yet, so the
//!   stream stays gap-free (a frame already partly sent is finished); queued
//!   retransmissions go too. After a keyframe has gone out, NACKs for
//!   packets before it are ignored: the decoder restarts at the keyframe
//!   and needs nothing older. After an outage the viewer needs a keyframe
//!   anyway ([`Pacer::expect_keyframe`]): NACKs are ignored until it comes.
//! * **Redundant retransmissions.** From [`REDUNDANT_RTX_LOSS`] of measured
//!   loss until it falls under [`REDUNDANT_RTX_LOSS_OFF`], each retransmission is sent a second
//!   time [`REDUNDANT_RTX_DELAY`] later: a lost retransmission costs a
//!   round trip more, which is what turns a hiccup into a visible freeze on
//!   a lossy link. The copy the browser did not need is dropped by its SRTP
//!   replay check.
//! * **Tail probes.** A receiver notices a lost packet when a later one
//!   arrives. The last packet of a frame is followed by nothing until the
//!   next frame, a frame interval later (seconds on a static screen), so its
//!   loss costs that much more before the NACK goes out. With tail probes on
//!   (a lossy link, see `crate::sender`), a small padding packet follows each
//!   frame's last packet [`TAIL_PROBE_DELAY`] later unless something else
//!   has gone out: its sequence number reveals a lost tail at once.
//! * **Probes.** While a [`ProbeCluster`] is active, packets leave at its
//!   rate; queued media goes first, padding of [`PADDING_PACKET_BYTES`] fills
//!   the rest until the cluster's size is reached.
//! * **ALR.** An interval budget filling at [`ALR_USAGE`] × the estimate and
//!   drained by what is sent: above [`ALR_START_LEVEL`] of its capacity the
//!   sender is application-limited (a static screen), below
//!   [`ALR_STOP_LEVEL`] it is not (libwebrtc's ALR detector).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::bwe::ProbeCluster;

/// Pacing rate as a multiple of the estimate.
pub const PACING_FACTOR: f64 = 1.1;
/// The leaky bucket may release this much time's worth of bits at once.
pub const BURST: Duration = Duration::from_millis(10);
/// Packets first sent longer ago than this are not retransmitted.
pub const RTX_MAX_AGE: Duration = Duration::from_secs(1);
/// How long sent packets are kept for retransmission (at least [`RTX_MAX_AGE`]).
pub const HISTORY_AGE: Duration = Duration::from_millis(1500);
/// Most sent packets kept for retransmission.
pub const HISTORY_PACKETS: usize = 8192;
/// Beyond this much queued time the pacer drains faster than the estimate.
pub const QUEUE_TIME_LIMIT: Duration = Duration::from_secs(1);
/// How long [`Pacer::expect_keyframe`] ignores NACKs at most.
pub const KEYFRAME_WAIT: Duration = Duration::from_secs(1);
/// Loss at which retransmissions start being sent twice…
pub const REDUNDANT_RTX_LOSS: f64 = 0.03;
/// …and below which they stop (hysteresis: a 1 s loss window of a link
/// with 5 % random loss reads under 3 % one time in five).
pub const REDUNDANT_RTX_LOSS_OFF: f64 = 0.01;
/// Gap between a retransmission and its redundant copy (decorrelates short bursts).
pub const REDUNDANT_RTX_DELAY: Duration = Duration::from_millis(10);
/// Wire size (RTP) of a padding packet.
pub const PADDING_PACKET_BYTES: usize = 1000;
/// A tail probe follows a frame's last packet this much later…
pub const TAIL_PROBE_DELAY: Duration = Duration::from_millis(5);
/// …at this size (RTP; header, extensions and padding).
pub const TAIL_PROBE_BYTES: usize = 40;
/// ALR budget rate as a share of the estimate.
pub const ALR_USAGE: f64 = 0.65;
/// ALR budget capacity, in time at the budget rate.
pub const ALR_WINDOW: Duration = Duration::from_millis(500);
/// ALR starts when the budget is fuller than this share…
pub const ALR_START_LEVEL: f64 = 0.8;
/// …and ends when it falls below this share.
pub const ALR_STOP_LEVEL: f64 = 0.5;

/// What the pacer needs to know about a packet.
pub trait Paced: Clone {
    /// Size on the wire (RTP), bytes.
    fn size(&self) -> usize;
    /// Whether it is the last packet of a frame (RTP marker bit).
    fn frame_end(&self) -> bool;
    /// Whether it is the first packet of a keyframe.
    fn keyframe_start(&self) -> bool;
}

/// A packet the pacer releases now.
#[derive(Debug, Clone, PartialEq)]
pub enum Release<P> {
    /// A media packet, first transmission, with the sequence number to send it under.
    Media {
        /// The packet.
        packet: P,
        /// Its sequence number on the wire.
        seq: u16,
        /// The probe cluster it belongs to.
        probe: Option<u32>,
    },
    /// A retransmission of a media packet.
    Retransmission {
        /// The packet.
        packet: P,
        /// Its (original) sequence number.
        seq: u16,
    },
    /// A small padding-only packet after a frame's last packet (see the
    /// module docs' tail probes).
    TailProbe {
        /// Its sequence number.
        seq: u16,
        /// Wire size to build it at.
        size: usize,
    },
    /// A padding-only packet (new, or a retransmission of one).
    Padding {
        /// Its sequence number.
        seq: u16,
        /// Wire size to build it at.
        size: usize,
        /// The probe cluster it belongs to (`None` for a retransmission).
        probe: Option<u32>,
    },
}

impl<P> Release<P> {
    /// The sequence number it goes out under.
    pub fn seq(&self) -> u16 {
        match self {
            Self::Media { seq, .. }
            | Self::Retransmission { seq, .. }
            | Self::Padding { seq, .. }
            | Self::TailProbe { seq, .. } => *seq,
        }
    }
}

/// Counters for stats.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PacerStats {
    /// Media packets sent (first transmissions).
    pub media_packets: u64,
    /// Retransmissions sent.
    pub retransmissions: u64,
    /// NACKed sequence numbers ignored (already queued or resent within an RTT).
    pub nacks_ignored: u64,
    /// NACKed packets not resent because they were too old or unknown.
    pub rtx_expired: u64,
    /// Padding packets sent (probes).
    pub padding_packets: u64,
    /// Padding bytes sent.
    pub padding_bytes: u64,
    /// Probe clusters completed.
    pub probes: u64,
    /// Redundant copies of retransmissions sent.
    pub redundant_retransmissions: u64,
    /// Queued frames discarded because a keyframe superseded them.
    pub frames_superseded: u64,
    /// Tail probes sent.
    pub tail_probes: u64,
}

struct Queued<P> {
    packet: P,
    size: usize,
    enqueued: Instant,
}

struct Sent<P> {
    /// `None` for padding.
    packet: Option<P>,
    size: usize,
    first_sent: Instant,
    last_sent: Instant,
    rtx_queued: bool,
    retransmitted: bool,
}

struct ActiveProbe {
    cluster: ProbeCluster,
    sent_bytes: usize,
    sent_packets: u32,
}

/// One viewer's sender queue. See the module docs.
pub struct Pacer<P> {
    estimate_bps: f64,
    media: VecDeque<Queued<P>>,
    media_bytes: usize,
    rtx: VecDeque<u16>,
    rtx_bytes: usize,
    /// Redundant copies due: (when, seq).
    rtx_repeat: VecDeque<(Instant, u16)>,
    redundant: bool,
    /// Sequence number of the last keyframe's first packet.
    last_keyframe_seq: Option<u16>,
    /// Bytes of the keyframe being queued, and of the last complete one.
    keyframe_building: Option<usize>,
    last_keyframe_bytes: Option<usize>,
    /// Since when a keyframe is expected (see [`Pacer::expect_keyframe`]).
    awaiting_keyframe: Option<Instant>,
    /// Sent packets by sequence number: `history[i]` has seq `history_first + i`.
    history: VecDeque<Sent<P>>,
    history_first: u16,
    next_seq: Option<u16>,
    at_frame_boundary: bool,
    budget_bits: f64,
    last_refill: Option<Instant>,
    probe: Option<ActiveProbe>,
    alr_budget_bits: f64,
    alr_last: Option<Instant>,
    app_limited: bool,
    tail_probes: bool,
    /// When a tail probe is due (a frame's last packet went out).
    tail_due: Option<Instant>,
    stats: PacerStats,
}

impl<P> std::fmt::Debug for Pacer<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pacer")
            .field("estimate_bps", &self.estimate_bps)
            .field("queued_packets", &(self.media.len() + self.rtx.len()))
            .field("queued_bytes", &(self.media_bytes + self.rtx_bytes))
            .field("probing", &self.probe.as_ref().map(|p| p.cluster.id))
            .field("app_limited", &self.app_limited)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl<P: Paced> Pacer<P> {
    /// An empty queue pacing for an estimate of `estimate_bps`.
    pub fn new(estimate_bps: f64) -> Self {
        Self {
            estimate_bps,
            media: VecDeque::new(),
            media_bytes: 0,
            rtx: VecDeque::new(),
            rtx_bytes: 0,
            rtx_repeat: VecDeque::new(),
            redundant: false,
            last_keyframe_seq: None,
            keyframe_building: None,
            last_keyframe_bytes: None,
            awaiting_keyframe: None,
            history: VecDeque::new(),
            history_first: 0,
            next_seq: None,
            at_frame_boundary: true,
            budget_bits: 0.0,
            last_refill: None,
            probe: None,
            alr_budget_bits: 0.0,
            alr_last: None,
            app_limited: false,
            tail_probes: false,
            tail_due: None,
            stats: PacerStats::default(),
        }
    }

    /// Follows a new estimate.
    pub fn set_estimate(&mut self, estimate_bps: f64) {
        self.estimate_bps = estimate_bps.max(1.0);
    }

    /// The pacing rate (without probes or queue draining).
    pub fn pacing_bps(&self) -> f64 {
        self.estimate_bps * PACING_FACTOR
    }

    /// Counters.
    pub fn stats(&self) -> PacerStats {
        self.stats
    }

    /// Whether the sender is application-limited.
    pub fn app_limited(&self) -> bool {
        self.app_limited
    }

    /// Bytes waiting (media and retransmissions).
    pub fn queued_bytes(&self) -> usize {
        self.media_bytes + self.rtx_bytes
    }

    /// Time the queue takes to drain at the pacing rate: the sender-side
    /// delay a new frame would see. The encoder skips frames when it is high.
    pub fn queue_delay(&self) -> Duration {
        Duration::from_secs_f64(self.queued_bytes() as f64 * 8.0 / self.pacing_bps())
    }

    /// How long the oldest queued media packet has waited.
    pub fn oldest_wait(&self, now: Instant) -> Duration {
        self.media.front().map_or(Duration::ZERO, |q| now.saturating_duration_since(q.enqueued))
    }

    /// Whether a probe cluster is being sent.
    pub fn probing(&self) -> bool {
        self.probe.is_some()
    }

    /// The cluster being sent, if any.
    pub fn probe_id(&self) -> Option<u32> {
        self.probe.as_ref().map(|p| p.cluster.id)
    }

    /// Starts sending a probe cluster (replacing none: one at a time).
    pub fn start_probe(&mut self, cluster: ProbeCluster) {
        if self.probe.is_none() {
            self.probe = Some(ActiveProbe { cluster, sent_bytes: 0, sent_packets: 0 });
        }
    }

    /// Follows each frame with a tail probe (see the module docs).
    pub fn set_tail_probes(&mut self, on: bool) {
        self.tail_probes = on;
        if !on {
            self.tail_due = None;
        }
    }

    /// Sends each retransmission twice (see the module docs).
    pub fn set_redundant_retransmissions(&mut self, on: bool) {
        self.redundant = on;
    }

    /// Queues a media packet (in sending order; a frame's packets together).
    pub fn enqueue(&mut self, now: Instant, packet: P) {
        let size = packet.size();
        self.refill(now);
        if packet.keyframe_start() {
            self.supersede();
            self.keyframe_building = Some(0);
        }
        if let Some(bytes) = &mut self.keyframe_building {
            *bytes += size;
            if packet.frame_end() {
                self.last_keyframe_bytes = self.keyframe_building.take();
            }
        }
        self.media_bytes += size;
        self.media.push_back(Queued { packet, size, enqueued: now });
    }

    /// The size of the last keyframe queued, bytes.
    pub fn last_keyframe_bytes(&self) -> Option<usize> {
        self.last_keyframe_bytes
    }

    /// The viewer's decoder lost its reference chain (an outage) and a
    /// keyframe has been asked for: until it is queued (or
    /// [`KEYFRAME_WAIT`] has passed), NACKs are ignored and queued
    /// retransmissions dropped — they would only delay the keyframe.
    pub fn expect_keyframe(&mut self, now: Instant) {
        self.awaiting_keyframe = Some(now);
        self.drop_retransmissions();
    }

    fn drop_retransmissions(&mut self) {
        for seq in self.rtx.drain(..) {
            let index = seq.wrapping_sub(self.history_first) as usize;
            if let Some(sent) = self.history.get_mut(index) {
                sent.rtx_queued = false;
            }
        }
        self.rtx_bytes = 0;
        self.rtx_repeat.clear();
    }

    /// Discards queued frames that have not started leaving, and queued
    /// retransmissions (all older than the keyframe).
    fn supersede(&mut self) {
        self.awaiting_keyframe = None;
        self.drop_retransmissions();
        // A frame already partly sent is finished: keep its remaining packets.
        let keep = if self.at_frame_boundary {
            0
        } else {
            self.media.iter().position(|q| q.packet.frame_end()).map_or(self.media.len(), |i| i + 1)
        };
        for q in self.media.drain(keep..) {
            self.media_bytes -= q.size;
            if q.packet.frame_end() {
                self.stats.frames_superseded += 1;
            }
        }
    }

    /// A NACK asked for these sequence numbers. Returns how many were queued.
    pub fn on_nack(&mut self, now: Instant, seqs: impl IntoIterator<Item = u16>, rtt: Duration) -> usize {
        let mut queued = 0;
        for seq in seqs {
            let index = seq.wrapping_sub(self.history_first) as usize;
            let Some(sent) = self.history.get_mut(index) else {
                self.stats.rtx_expired += 1;
                continue;
            };
            let superseded = self.last_keyframe_seq.is_some_and(|k| seq_before(seq, k))
                || self.awaiting_keyframe.is_some_and(|t| now.saturating_duration_since(t) < KEYFRAME_WAIT);
            if superseded {
                self.stats.nacks_ignored += 1;
            } else if now.saturating_duration_since(sent.first_sent) > RTX_MAX_AGE {
                self.stats.rtx_expired += 1;
            } else if sent.rtx_queued || (sent.retransmitted && now.saturating_duration_since(sent.last_sent) < rtt) {
                self.stats.nacks_ignored += 1;
            } else {
                sent.rtx_queued = true;
                self.rtx_bytes += sent.size;
                self.rtx.push_back(seq);
                queued += 1;
            }
        }
        queued
    }

    fn refill(&mut self, now: Instant) {
        let last = self.last_refill.replace(now).unwrap_or(now);
        let dt = now.saturating_duration_since(last).as_secs_f64();
        let rate = self.current_rate();
        let burst = (rate * BURST.as_secs_f64()).max(PADDING_PACKET_BYTES as f64 * 8.0);
        self.budget_bits = (self.budget_bits + rate * dt).min(burst);
        // ALR: the budget fills at 65 % of the estimate, sending drains it.
        let alr_last = self.alr_last.replace(now).unwrap_or(now);
        let alr_rate = ALR_USAGE * self.estimate_bps;
        let alr_cap = alr_rate * ALR_WINDOW.as_secs_f64();
        self.alr_budget_bits = (self.alr_budget_bits
            + alr_rate * now.saturating_duration_since(alr_last).as_secs_f64())
        .clamp(-alr_cap, alr_cap);
        let level = self.alr_budget_bits / alr_cap.max(1.0);
        if !self.app_limited && level > ALR_START_LEVEL {
            self.app_limited = true;
        } else if self.app_limited && level < ALR_STOP_LEVEL {
            self.app_limited = false;
        }
    }

    /// The rate packets leave at now: the probe's, or the pacing rate, or
    /// faster when the queue is over its time limit.
    fn current_rate(&self) -> f64 {
        if let Some(p) = &self.probe {
            return p.cluster.target_bps.max(self.pacing_bps());
        }
        let queued_bits = self.queued_bytes() as f64 * 8.0;
        self.pacing_bps().max(queued_bits / QUEUE_TIME_LIMIT.as_secs_f64())
    }

    fn record_sent(&mut self, now: Instant, packet: Option<P>, size: usize) -> u16 {
        let seq = self.next_seq.unwrap_or(0);
        self.next_seq = Some(seq.wrapping_add(1));
        if self.history.is_empty() {
            self.history_first = seq;
        }
        self.history.push_back(Sent {
            packet,
            size,
            first_sent: now,
            last_sent: now,
            rtx_queued: false,
            retransmitted: false,
        });
        while self.history.len() > HISTORY_PACKETS
            || self
                .history
                .front()
                .is_some_and(|s| !s.rtx_queued && now.saturating_duration_since(s.first_sent) > HISTORY_AGE)
        {
            self.history.pop_front();
            self.history_first = self.history_first.wrapping_add(1);
        }
        seq
    }

    fn spend(&mut self, size: usize) {
        self.budget_bits -= size as f64 * 8.0;
        self.alr_budget_bits -= size as f64 * 8.0;
    }

    /// Sets the sequence number the first released packet gets (the first
    /// media packet's own number keeps the stream's random start).
    pub fn start_sequence_at(&mut self, seq: u16) {
        if self.next_seq.is_none() {
            self.next_seq = Some(seq);
        }
    }

    /// The next packet to send now, if the budget allows one. Call until
    /// `None`, then wait for [`Pacer::poll_timeout`]. The second value is a
    /// probe cluster that has just been completed.
    pub fn poll_release(&mut self, now: Instant) -> Option<(Release<P>, Option<u32>)> {
        self.refill(now);
        if self.budget_bits < 0.0 {
            return None;
        }
        // Redundant copies of retransmissions that are due.
        if self.rtx_repeat.front().is_some_and(|(at, _)| *at <= now) {
            let (_, seq) = self.rtx_repeat.pop_front().expect("front exists");
            let index = seq.wrapping_sub(self.history_first) as usize;
            if let Some(sent) = self.history.get(index) {
                let size = sent.size;
                let release = match &sent.packet {
                    Some(p) => Release::Retransmission { packet: p.clone(), seq },
                    None => Release::Padding { seq, size, probe: None },
                };
                self.stats.redundant_retransmissions += 1;
                self.spend(size);
                let finished = self.count_probe(size);
                return Some((release, finished));
            }
        }
        // Retransmissions first; stale ones are dropped.
        while let Some(seq) = self.rtx.pop_front() {
            let index = seq.wrapping_sub(self.history_first) as usize;
            let Some(sent) = self.history.get_mut(index) else { continue };
            sent.rtx_queued = false;
            self.rtx_bytes = self.rtx_bytes.saturating_sub(sent.size);
            if now.saturating_duration_since(sent.first_sent) > RTX_MAX_AGE {
                self.stats.rtx_expired += 1;
                continue;
            }
            sent.last_sent = now;
            sent.retransmitted = true;
            let size = sent.size;
            let release = match &sent.packet {
                Some(p) => Release::Retransmission { packet: p.clone(), seq },
                None => Release::Padding { seq, size, probe: None },
            };
            self.stats.retransmissions += 1;
            if self.redundant {
                self.rtx_repeat.push_back((now + REDUNDANT_RTX_DELAY, seq));
            }
            self.spend(size);
            let finished = self.count_probe(size);
            return Some((release, finished));
        }
        if let Some(q) = self.media.pop_front() {
            self.media_bytes -= q.size;
            self.at_frame_boundary = q.packet.frame_end();
            // The next packet reveals a lost one; after a frame's last, a tail probe will.
            self.tail_due = (self.tail_probes && q.packet.frame_end()).then(|| now + TAIL_PROBE_DELAY);
            let probe = self.probe.as_ref().map(|p| p.cluster.id);
            let seq = self.record_sent(now, Some(q.packet.clone()), q.size);
            if q.packet.keyframe_start() {
                self.last_keyframe_seq = Some(seq);
            }
            self.stats.media_packets += 1;
            self.spend(q.size);
            let finished = self.count_probe(q.size);
            return Some((Release::Media { packet: q.packet, seq, probe }, finished));
        }
        // Nothing queued: a tail probe when due, padding to complete a
        // probe cluster, and only between frames.
        if self.tail_due.is_some_and(|t| t <= now) && self.at_frame_boundary && self.probe.is_none() {
            self.tail_due = None;
            let size = TAIL_PROBE_BYTES;
            let seq = self.record_sent(now, None, size);
            self.stats.tail_probes += 1;
            self.spend(size);
            return Some((Release::TailProbe { seq, size }, None));
        }
        let probe_id = self.probe.as_ref().map(|p| p.cluster.id)?;
        self.tail_due = None;
        if !self.at_frame_boundary || self.next_seq.is_none() {
            return None;
        }
        let size = PADDING_PACKET_BYTES;
        let seq = self.record_sent(now, None, size);
        self.stats.padding_packets += 1;
        self.stats.padding_bytes += size as u64;
        self.spend(size);
        let finished = self.count_probe(size);
        Some((Release::Padding { seq, size, probe: Some(probe_id) }, finished))
    }

    fn count_probe(&mut self, size: usize) -> Option<u32> {
        let p = self.probe.as_mut()?;
        p.sent_bytes += size;
        p.sent_packets += 1;
        if p.sent_bytes >= p.cluster.min_bytes && p.sent_packets >= p.cluster.min_packets {
            let id = p.cluster.id;
            self.probe = None;
            self.stats.probes += 1;
            return Some(id);
        }
        None
    }

    /// When the next packet may leave (`None`: nothing to send).
    pub fn poll_timeout(&self) -> Option<Instant> {
        let has_work = !self.rtx.is_empty()
            || !self.media.is_empty()
            || (self.probe.is_some() && self.at_frame_boundary && self.next_seq.is_some());
        let repeat = [self.rtx_repeat.front().map(|(at, _)| *at), self.tail_due].into_iter().flatten().min();
        let last = self.last_refill?;
        let budget_at = if self.budget_bits >= 0.0 {
            last
        } else {
            let wait = -self.budget_bits / self.current_rate();
            last + Duration::from_secs_f64(wait).max(Duration::from_micros(100))
        };
        match (has_work, repeat) {
            (true, _) => Some(budget_at),
            // Only a redundant copy or a tail probe waits: when it is due and the budget allows.
            (false, Some(at)) => Some(at.max(budget_at)),
            (false, None) => None,
        }
    }
}

/// Whether sequence number `a` comes before `b` (with wrap-around).
fn seq_before(a: u16, b: u16) -> bool {
    a != b && b.wrapping_sub(a) < 0x8000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, PartialEq)]
    struct Pkt {
        size: usize,
        end: bool,
        key: bool,
        id: u32,
    }

    impl Paced for Pkt {
        fn size(&self) -> usize {
            self.size
        }
        fn frame_end(&self) -> bool {
            self.end
        }
        fn keyframe_start(&self) -> bool {
            self.key
        }
    }

    fn frame(p: &mut Pacer<Pkt>, now: Instant, packets: u32, first_id: u32) {
        for i in 0..packets {
            p.enqueue(now, Pkt { size: 1200, end: i + 1 == packets, key: false, id: first_id + i });
        }
    }

    fn keyframe(p: &mut Pacer<Pkt>, now: Instant, packets: u32, first_id: u32) {
        for i in 0..packets {
            p.enqueue(now, Pkt { size: 1200, end: i + 1 == packets, key: i == 0, id: first_id + i });
        }
    }

    /// Drives the pacer from `t` to `until` in 1 ms steps; returns releases with times.
    fn drain(p: &mut Pacer<Pkt>, t: &mut Instant, until: Instant) -> Vec<(Instant, Release<Pkt>)> {
        let mut out = vec![];
        while *t < until {
            while let Some((r, _)) = p.poll_release(*t) {
                out.push((*t, r));
            }
            *t += Duration::from_millis(1);
        }
        out
    }

    #[test]
    fn paces_at_1_1_times_the_estimate_without_holes() {
        let t0 = Instant::now();
        let mut p = Pacer::new(1e6);
        p.start_sequence_at(65_530);
        frame(&mut p, t0, 100, 0); // 120 KB
        assert!((p.queue_delay().as_secs_f64() - 0.873).abs() < 0.01, "{:?}", p.queue_delay());
        let mut t = t0;
        let out = drain(&mut p, &mut t, t0 + Duration::from_secs(2));
        assert_eq!(out.len(), 100);
        let span = out.last().unwrap().0 - out[0].0;
        // 99 packets after the first at 1.1 Mbps ≈ 864 ms.
        assert!((span.as_secs_f64() - 0.864).abs() < 0.02, "{span:?}");
        let seqs: Vec<u16> = out.iter().map(|(_, r)| r.seq()).collect();
        for w in seqs.windows(2) {
            assert_eq!(w[1], w[0].wrapping_add(1), "consecutive, wrapping");
        }
        assert_eq!(seqs[0], 65_530);
    }

    #[test]
    fn tail_probes_follow_a_frames_last_packet_unless_the_next_frame_does() {
        let t0 = Instant::now();
        let mut p = Pacer::new(2e6);
        p.start_sequence_at(100);
        let mut t = t0;
        // Off: nothing after the frame.
        frame(&mut p, t, 3, 0);
        let out = drain(&mut p, &mut t, t0 + Duration::from_millis(40));
        assert_eq!(out.len(), 3);
        // On: one small padding packet TAIL_PROBE_DELAY after the last, numbered next.
        p.set_tail_probes(true);
        frame(&mut p, t, 3, 10);
        let start = t;
        let out = drain(&mut p, &mut t, start + Duration::from_millis(40));
        assert_eq!(out.len(), 4, "{out:?}");
        let (at, last) = &out[3];
        assert!(matches!(last, Release::TailProbe { seq: 106, size: TAIL_PROBE_BYTES }), "{last:?}");
        assert!(*at - out[2].0 >= TAIL_PROBE_DELAY && *at - out[2].0 <= TAIL_PROBE_DELAY + Duration::from_millis(1));
        // The next frame's first packet within the delay reveals a gap itself: no probe.
        frame(&mut p, t, 2, 20);
        let until = t + Duration::from_millis(2);
        let mut out = drain(&mut p, &mut t, until);
        frame(&mut p, t, 2, 30);
        let until = t + Duration::from_millis(40);
        out.extend(drain(&mut p, &mut t, until));
        let kinds: Vec<bool> = out.iter().map(|(_, r)| matches!(r, Release::TailProbe { .. })).collect();
        assert_eq!(kinds, [false, false, false, false, true], "one probe, after the second frame");
        assert_eq!(p.stats().tail_probes, 2);
    }

    #[test]
    fn retransmissions_jump_the_queue_once_per_rtt_and_expire_after_a_second() {
        let t0 = Instant::now();
        let mut p = Pacer::new(1e6);
        p.start_sequence_at(0);
        frame(&mut p, t0, 10, 0);
        let mut t = t0;
        drain(&mut p, &mut t, t0 + Duration::from_millis(200));
        frame(&mut p, t, 50, 100);
        let rtt = Duration::from_millis(100);
        assert_eq!(p.on_nack(t, [3, 4], rtt), 2);
        assert_eq!(p.on_nack(t, [3], rtt), 0, "already queued");
        let (r, _) = p.poll_release(t).expect("budget for one");
        assert!(matches!(r, Release::Retransmission { seq: 3, .. }), "{r:?}");
        let until = t + Duration::from_millis(30);
        let out = drain(&mut p, &mut t, until);
        assert!(matches!(out[0].1, Release::Retransmission { seq: 4, .. }), "retransmissions before media");
        assert_eq!(p.on_nack(t, [3], rtt), 0, "resent within an RTT");
        let later = t + Duration::from_millis(150);
        assert_eq!(p.on_nack(later, [3], rtt), 1, "repeated NACK after an RTT is answered");
        assert_eq!(p.on_nack(t0 + Duration::from_millis(1300), [5], rtt), 0, "too old");
        assert!(p.stats().nacks_ignored >= 2 && p.stats().rtx_expired >= 1);
    }

    #[test]
    fn probes_send_media_fast_then_pad_between_frames_only() {
        let t0 = Instant::now();
        let mut p = Pacer::new(500e3);
        p.start_sequence_at(10);
        frame(&mut p, t0, 3, 0);
        let cluster = ProbeCluster { id: 7, target_bps: 4e6, min_bytes: 15_000, min_packets: 6 };
        p.start_probe(cluster);
        let mut t = t0;
        let mut finished = None;
        let mut out = vec![];
        while finished.is_none() && t < t0 + Duration::from_secs(1) {
            while let Some((r, f)) = p.poll_release(t) {
                out.push((t, r));
                finished = finished.or(f);
            }
            t += Duration::from_millis(1);
        }
        assert_eq!(finished, Some(7));
        assert!(matches!(out[0].1, Release::Media { probe: Some(7), .. }));
        let padding = out.iter().filter(|(_, r)| matches!(r, Release::Padding { probe: Some(7), .. })).count();
        assert_eq!(padding, 12, "3 × 1200 + 12 × 1000 ≥ 15 000 bytes");
        let span = (out.last().unwrap().0 - out[0].0).as_secs_f64();
        assert!((0.02..0.04).contains(&span), "≈ 15 kB at 4 Mbps: {span}");
        // A mid-frame queue end never gets padding.
        let mut q = Pacer::new(500e3);
        q.start_sequence_at(0);
        q.enqueue(t0, Pkt { size: 1200, end: false, key: false, id: 0 });
        q.start_probe(cluster);
        assert!(q.poll_release(t0).is_some());
        assert!(q.poll_release(t0 + Duration::from_millis(10)).is_none(), "inside a frame: no padding");
        // Lost padding is resent as padding.
        assert_eq!(p.on_nack(t, [14], Duration::from_millis(10)), 1);
        let (r, _) = p.poll_release(t + Duration::from_millis(20)).unwrap();
        assert!(matches!(r, Release::Padding { seq: 14, size: 1000, probe: None }), "{r:?}");
    }

    #[test]
    fn a_nack_soon_after_the_first_transmission_is_answered() {
        // The once-per-RTT rule is for retransmissions: a packet lost on its
        // first trip is NACKed well within an RTT of being sent.
        let t0 = Instant::now();
        let mut p = Pacer::new(1e6);
        p.start_sequence_at(0);
        frame(&mut p, t0, 3, 0);
        let mut t = t0;
        drain(&mut p, &mut t, t0 + Duration::from_millis(40));
        assert_eq!(p.on_nack(t, [1], Duration::from_millis(100)), 1);
        assert_eq!(p.stats().nacks_ignored, 0);
    }

    #[test]
    fn a_keyframe_supersedes_queued_frames_but_finishes_the_one_being_sent() {
        let t0 = Instant::now();
        let mut p = Pacer::new(1e6);
        p.start_sequence_at(0);
        frame(&mut p, t0, 4, 0);
        frame(&mut p, t0, 4, 10);
        frame(&mut p, t0, 4, 20);
        // Two packets of the first frame leave.
        assert!(p.poll_release(t0).is_some());
        let _ = p.poll_release(t0);
        let mut t = t0 + Duration::from_millis(10);
        while p.queued_bytes() > 10 * 1200 {
            let _ = p.poll_release(t);
            t += Duration::from_millis(1);
        }
        keyframe(&mut p, t, 3, 100);
        let out = drain(&mut p, &mut t, t0 + Duration::from_secs(1));
        let ids: Vec<u32> = out
            .iter()
            .filter_map(|(_, r)| match r {
                Release::Media { packet, .. } => Some(packet.id),
                _ => None,
            })
            .collect();
        assert_eq!(ids, vec![2, 3, 100, 101, 102], "first frame finished, two frames superseded");
        assert_eq!(p.stats().frames_superseded, 2);
        let seqs: Vec<u16> = out.iter().map(|(_, r)| r.seq()).collect();
        assert_eq!(seqs, vec![2, 3, 4, 5, 6], "no sequence gaps");
        // NACKs for packets before the keyframe are pointless now.
        assert_eq!(p.on_nack(t, [1, 3], Duration::from_millis(10)), 0);
        assert_eq!(p.on_nack(t, [5], Duration::from_millis(10)), 1);
    }

    #[test]
    fn under_loss_retransmissions_go_twice() {
        let t0 = Instant::now();
        let mut p = Pacer::new(1e6);
        p.start_sequence_at(0);
        p.set_redundant_retransmissions(true);
        frame(&mut p, t0, 2, 0);
        let mut t = t0;
        drain(&mut p, &mut t, t0 + Duration::from_millis(50));
        assert_eq!(p.on_nack(t, [1], Duration::from_millis(10)), 1);
        let start = t;
        let out = drain(&mut p, &mut t, start + Duration::from_millis(50));
        let copies: Vec<Instant> = out
            .iter()
            .filter(|(_, r)| matches!(r, Release::Retransmission { seq: 1, .. }))
            .map(|(at, _)| *at)
            .collect();
        assert_eq!(copies.len(), 2);
        assert!(copies[1] - copies[0] >= REDUNDANT_RTX_DELAY);
        assert_eq!((p.stats().retransmissions, p.stats().redundant_retransmissions), (1, 1));
    }

    #[test]
    fn a_static_sender_is_application_limited_and_a_busy_one_is_not() {
        let t0 = Instant::now();
        let mut p = Pacer::new(1e6);
        p.start_sequence_at(0);
        let mut t = t0;
        // One small frame per second.
        for i in 0..3 {
            frame(&mut p, t, 1, i);
            drain(&mut p, &mut t, t0 + Duration::from_secs(u64::from(i) + 1));
        }
        assert!(p.app_limited());
        // 1 Mbps of frames (≈ 3.5 packets per 33 ms).
        for i in 0..60 {
            frame(&mut p, t, 4, 100 + i * 4);
            let until = t + Duration::from_millis(33);
            drain(&mut p, &mut t, until);
        }
        assert!(!p.app_limited());
    }

    #[test]
    fn an_overfull_queue_drains_faster_than_the_estimate() {
        let t0 = Instant::now();
        let mut p = Pacer::new(200e3);
        p.start_sequence_at(0);
        frame(&mut p, t0, 200, 0); // 240 KB ≈ 8.7 s at 220 kbps
        let mut t = t0;
        let first = drain(&mut p, &mut t, t0 + Duration::from_secs(1));
        // Draining at queue ÷ 1 s empties ≈ 63 % (1 − 1/e) in the first second.
        assert!(first.len() >= 120, "{}", first.len());
        let rest = drain(&mut p, &mut t, t0 + Duration::from_secs(4));
        assert_eq!(first.len() + rest.len(), 200, "drained in 4 s, not 8.7");
    }
}
