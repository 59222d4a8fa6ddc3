//! Per-viewer state and statistics.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::codecs::VideoCodec;

/// A viewer's connection state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
#[repr(u8)]
pub enum ViewerState {
    /// Offer answered, ICE/DTLS in progress.
    Connecting = 0,
    /// Media flowing.
    Connected = 1,
    /// Connectivity lost; may recover.
    Disconnected = 2,
    /// Gone (left, kicked, failed, or the share ended).
    Closed = 3,
}

impl ViewerState {
    fn from_u8(v: u8) -> Self {
        match v {
            0 => Self::Connecting,
            1 => Self::Connected,
            2 => Self::Disconnected,
            _ => Self::Closed,
        }
    }
}

/// Counters of one viewer; all atomics, readable without locks.
#[derive(Debug, Default)]
pub struct ViewerStats {
    state: AtomicU8,
    /// Round-trip time from RTCP receiver reports, µs.
    pub rtt_us: AtomicU64,
    /// Fraction of packets lost in the last report interval, in 1/256.
    pub fraction_lost_256: AtomicU32,
    /// Cumulative packets lost, as the viewer reports it.
    pub packets_lost: AtomicU64,
    /// The congestion controller's estimate for this viewer, bps.
    pub estimate_bps: AtomicU64,
    /// Encoded bytes sent (payload, before RTP overhead).
    pub bytes_sent: AtomicU64,
    /// Frames sent.
    pub frames_sent: AtomicU64,
    /// Frames dropped because this viewer's queue was full.
    pub frames_dropped: AtomicU64,
    /// Frames skipped while waiting for a keyframe (after a drop, or at join).
    pub frames_skipped: AtomicU64,
    /// PLI packets received.
    pub pli: AtomicU64,
    /// FIR packets received.
    pub fir: AtomicU64,
    /// NACK packets received.
    pub nack: AtomicU64,
    /// Time the send queue (pacer) takes to drain at the pacing rate, µs.
    pub pacer_queue_us: AtomicU64,
    /// Packets retransmitted (including redundant copies under loss).
    pub retransmissions: AtomicU64,
    /// Probe clusters sent.
    pub probes: AtomicU64,
    /// Padding bytes sent for probes.
    pub padding_bytes: AtomicU64,
    /// The estimator's acknowledged rate (what the path delivered over
    /// busy periods), bps; 0 until measured.
    pub acked_bps: AtomicU64,
    /// Queued frames a keyframe superseded in the pacer.
    pub frames_superseded: AtomicU64,
    /// Whether the sender is application-limited (static content).
    pub app_limited: AtomicBool,
    /// Whether its send side is in an outage (no feedback for a second
    /// while sending).
    pub in_outage: AtomicBool,
    /// Loss in the estimator's last loss window (transport feedback), in 1/256.
    pub feedback_loss_256: AtomicU32,
    /// The minimum playout delay asked of the viewer, ms (0 on a clean
    /// link; the round trip plus a margin in loss recovery).
    pub playout_min_ms: AtomicU32,
    /// The send side asks for a keyframe (after an outage, or a stale queue).
    pub(crate) sender_wants_keyframe: AtomicBool,
    /// The next frame sent to this viewer must be a keyframe.
    pub(crate) needs_keyframe: AtomicBool,
}

impl ViewerStats {
    /// Fresh stats in state Connecting, waiting for a keyframe.
    pub fn new() -> Self {
        let s = Self::default();
        s.needs_keyframe.store(true, Ordering::Relaxed);
        s
    }

    /// The viewer's state.
    pub fn state(&self) -> ViewerState {
        ViewerState::from_u8(self.state.load(Ordering::Acquire))
    }

    /// Time the send queue takes to drain.
    pub fn pacer_queue(&self) -> Duration {
        Duration::from_micros(self.pacer_queue_us.load(Ordering::Relaxed))
    }

    pub(crate) fn set_state(&self, state: ViewerState) {
        self.state.store(state as u8, Ordering::Release);
    }
}

/// A copy of one viewer's stats, for display.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ViewerSnapshot {
    /// Session id (the last part of its WHEP resource URL).
    pub id: String,
    /// The viewer's address as the HTTP server saw it.
    pub remote: SocketAddr,
    /// The codec this viewer is sent.
    pub codec: VideoCodec,
    /// State.
    pub state: ViewerState,
    /// Time since the viewer's offer arrived.
    pub connected_for: Duration,
    /// Round-trip time, if known.
    pub rtt: Option<Duration>,
    /// Recent loss, 0.0–1.0.
    pub loss: f64,
    /// Congestion controller estimate, bps.
    pub estimate_bps: u64,
    /// Payload bytes sent.
    pub bytes_sent: u64,
    /// Frames sent.
    pub frames_sent: u64,
    /// Frames dropped because the viewer's queue was full.
    pub frames_dropped: u64,
    /// Frames skipped while the viewer waited for a keyframe (after a drop).
    pub frames_skipped: u64,
    /// Keyframe requests (PLI + FIR) from this viewer's decoder.
    pub keyframe_requests: u64,
    /// Time the send queue takes to drain, ms.
    pub queue_ms: u32,
    /// Packets retransmitted.
    pub retransmissions: u64,
    /// NACK packets received.
    pub nacks: u64,
    /// PLI packets received.
    pub plis: u64,
    /// Probe clusters sent.
    pub probes: u64,
    /// Padding bytes sent for probes.
    pub padding_bytes: u64,
    /// Whether the sender is application-limited (sends much less than the estimate).
    pub app_limited: bool,
    /// What the path delivered over busy periods, bps (0: not measured yet).
    pub acked_bps: u64,
    /// The minimum playout delay asked of the viewer, ms.
    pub playout_min_ms: u32,
}

impl ViewerSnapshot {
    pub(crate) fn of(id: &str, remote: SocketAddr, codec: VideoCodec, since: Instant, s: &ViewerStats) -> Self {
        let rtt_us = s.rtt_us.load(Ordering::Relaxed);
        Self {
            id: id.to_owned(),
            remote,
            codec,
            state: s.state(),
            connected_for: since.elapsed(),
            rtt: (rtt_us > 0).then(|| Duration::from_micros(rtt_us)),
            loss: f64::from(s.fraction_lost_256.load(Ordering::Relaxed)) / 256.0,
            estimate_bps: s.estimate_bps.load(Ordering::Relaxed),
            bytes_sent: s.bytes_sent.load(Ordering::Relaxed),
            frames_sent: s.frames_sent.load(Ordering::Relaxed),
            frames_dropped: s.frames_dropped.load(Ordering::Relaxed),
            frames_skipped: s.frames_skipped.load(Ordering::Relaxed),
            keyframe_requests: s.pli.load(Ordering::Relaxed) + s.fir.load(Ordering::Relaxed),
            queue_ms: (s.pacer_queue_us.load(Ordering::Relaxed) / 1000).min(u64::from(u32::MAX)) as u32,
            retransmissions: s.retransmissions.load(Ordering::Relaxed),
            nacks: s.nack.load(Ordering::Relaxed),
            plis: s.pli.load(Ordering::Relaxed),
            probes: s.probes.load(Ordering::Relaxed),
            padding_bytes: s.padding_bytes.load(Ordering::Relaxed),
            app_limited: s.app_limited.load(Ordering::Relaxed),
            acked_bps: s.acked_bps.load(Ordering::Relaxed),
            playout_min_ms: s.playout_min_ms.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_round_trips_through_the_atomic() {
        let s = ViewerStats::new();
        assert_eq!(s.state(), ViewerState::Connecting);
        for st in [ViewerState::Connected, ViewerState::Disconnected, ViewerState::Closed] {
            s.set_state(st);
            assert_eq!(s.state(), st);
        }
        assert!(s.needs_keyframe.load(Ordering::Relaxed), "a new viewer waits for a keyframe");
    }
}
