//! The state a share's parts have in common: the viewers, the keyframe
//! coalescers and rate controllers (one of each per codec), the encoder
//! request channel and the share-wide counters. The HTTP server
//! (`server`), the peer connections (`peer`), the WHIP publish (`whip`) and
//! the [`crate::Share`] handle all work on one [`Shared`]; none of them
//! depends on another (the publish reuses `peer`'s media engine and
//! interceptor set-up).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use bytes::Bytes;
use tokio::sync::{mpsc, watch};
use webrtc::peer_connection::PeerConnection;

use crate::auth::Throttle;
use crate::codecs::{CodecSet, VideoCodec};
use crate::keyframe::{KeyframeCoalescer, KeyframeReason};
use crate::rate::{BitrateRange, RateController, SendBacklog};
use crate::secret::Secret;
use crate::viewer::{ViewerState, ViewerStats};

/// Frames queued per viewer before frames are dropped for it: half a
/// second at 30 fps. A dropped frame costs the viewer a keyframe; on the
/// loaded lab machine a viewer's task was starved for more than 8 frames'
/// time (≈ 270 ms), and the keyframe that followed (two budgets over, on a
/// 2 Mbit/s link) made a second of queue and five freezes.
pub const VIEWER_QUEUE_FRAMES: usize = 16;
/// A viewer whose send queue takes longer than this to drain gets no new
/// frames (whole frames, dropped before packetization: no sequence gaps)
/// until a keyframe once it has drained below [`VIEWER_RECOVER_QUEUE`] —
/// unless the rate follows it (`Viewer::governing`): the encoder's frame
/// dropper keeps those queues short, and the only thing that takes them
/// past a second is a keyframe the link needs longer than that for (busy
/// content on a slow link). Dropping frames behind it would only ask for
/// another such keyframe, and so on: on the emulated link the picture of a
/// lone viewer stopped for good after a step down to 0.6 Mbit/s.
pub const VIEWER_DROP_QUEUE: std::time::Duration = std::time::Duration::from_millis(1000);
/// See [`VIEWER_DROP_QUEUE`].
pub const VIEWER_RECOVER_QUEUE: std::time::Duration = std::time::Duration::from_millis(300);
/// Capacity of the encoder request channel. Policy when full: the request
/// is dropped (the coalescer re-issues keyframe requests; the next bitrate
/// decision supersedes a lost one).
pub const ENCODER_REQUEST_CAPACITY: usize = 16;

/// What the share asks of the encoders. There is one encode per codec in
/// use ([`crate::Share::codecs_in_use`]); each request names its codec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EncoderRequest {
    /// Force a keyframe on this codec's next frame.
    Keyframe(VideoCodec),
    /// New target bitrate (bps) for this codec's encoder, from congestion
    /// control over this codec's viewers.
    SetBitrate(VideoCodec, u32),
}

/// Share-wide counters.
#[derive(Debug, Default)]
pub struct ShareStats {
    /// Frames handed to [`Share::send_frame`].
    pub frames_in: AtomicU64,
    /// Keyframe requests received (PLI, FIR, joins, recoveries).
    pub keyframe_requests: AtomicU64,
    /// Of those, requests for a viewer recovering from dropped frames or a
    /// lost connection.
    pub recovery_requests: AtomicU64,
    /// Keyframes asked of the encoder after coalescing.
    pub keyframes_forced: AtomicU64,
    /// The H.264 encoder's bitrate congestion control last asked for.
    pub target_bps: AtomicU64,
    /// Each codec's encoder bitrate congestion control last asked for,
    /// indexed by [`VideoCodec::index`] (H.264's equals `target_bps`).
    pub codec_target_bps: [AtomicU64; 3],
    /// Viewers that ever joined.
    pub viewers_joined: AtomicU64,
    /// Offers refused (bad token, password, full, malformed, no common codec).
    pub offers_refused: AtomicU64,
    /// Sessions ended by their viewer's WHEP DELETE.
    pub sessions_deleted: AtomicU64,
    /// Offers with a wrong password.
    pub passwords_wrong: AtomicU64,
    /// Offers refused because their address guessed wrong too often.
    pub passwords_throttled: AtomicU64,
}

impl ShareStats {
    /// The bitrate congestion control last asked of `codec`'s encoder.
    pub fn target_bps_of(&self, codec: VideoCodec) -> u64 {
        self.codec_target_bps[codec.index()].load(Ordering::Relaxed)
    }

    pub(crate) fn set_target(&self, codec: VideoCodec, bps: u32) {
        self.codec_target_bps[codec.index()].store(u64::from(bps), Ordering::Relaxed);
        if codec == VideoCodec::H264 {
            self.target_bps.store(u64::from(bps), Ordering::Relaxed);
        }
    }
}

/// Why a viewer's page should stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notice {
    /// Nothing to say.
    None,
    /// The sharer removed this viewer.
    Kicked,
    /// The share ended.
    Ended,
}

/// One per codec, indexed by [`VideoCodec::index`].
pub(crate) type PerCodec<T> = [T; 3];

/// One frame on its way to viewers.
#[derive(Debug, Clone)]
pub(crate) struct Frame {
    pub data: Bytes,
    pub captured_at: Instant,
}

pub(crate) struct Viewer {
    pub id: String,
    /// What this viewer is sent (negotiated from its offer).
    pub codec: VideoCodec,
    pub remote: SocketAddr,
    pub since: Instant,
    pub stats: Arc<ViewerStats>,
    pub queue: mpsc::Sender<Frame>,
    pub notice: watch::Sender<Notice>,
    pub peer: PeerHandle,
    /// Fault injection: withhold keyframes until the viewer asks for one.
    pub fault_drop_keyframe: AtomicBool,
    /// Frames were dropped for this viewer: it needs a keyframe once its
    /// queue has drained.
    pub recovering: AtomicBool,
    /// The encoder's rate follows this viewer (set every tick).
    pub governing: AtomicBool,
}

/// A WHIP publish while it is connected (`crate::whip`): fed frames like
/// a viewer; the server's REMB, when it sends one, caps its estimate.
pub(crate) struct Publish {
    pub sink: Arc<Viewer>,
    /// The server's REMB, bps (0: none received).
    pub remb_bps: Arc<AtomicU64>,
}

impl Publish {
    /// The congestion estimate for the server: GCC's, capped by its REMB.
    pub fn estimate_bps(&self) -> u64 {
        let gcc = self.sink.stats.estimate_bps.load(Ordering::Relaxed);
        match self.remb_bps.load(Ordering::Relaxed) {
            0 => gcc,
            remb => gcc.min(remb),
        }
    }
}

/// State shared by the server, the viewer tasks and the [`Share`] handle.
pub(crate) struct Shared {
    pub token: Secret,
    pub password: Mutex<Option<Secret>>,
    pub throttle: Mutex<Throttle>,
    pub max_viewers: AtomicUsize,
    pub viewers: Mutex<HashMap<String, Arc<Viewer>>>,
    /// Connected WHIP publishes, fed like viewers (not counted as viewers).
    pub publishes: Mutex<Vec<Arc<Publish>>>,
    /// Offers being answered, counted against `max_viewers`.
    pub pending: AtomicUsize,
    /// Keyframe coalescing per codec: a VP8 viewer's PLI never forces an
    /// H.264 IDR.
    pub(crate) keyframes: Mutex<PerCodec<KeyframeCoalescer>>,
    /// Congestion control per codec: each encoder follows its own viewers.
    pub(crate) rate: Mutex<PerCodec<RateController>>,
    /// Codecs offered to viewers, best first.
    pub preference: Vec<VideoCodec>,
    pub(crate) requests: crossbeam_channel::Sender<EncoderRequest>,
    /// Per codec, the combined send backlog for its encoder (see `crate::rate`).
    pub backlogs: PerCodec<SendBacklog>,
    pub stats: ShareStats,
    pub udp_ips: Vec<IpAddr>,
    pub ending: AtomicBool,
    pub fault_drop_first_keyframe: bool,
    /// "Ask to join": viewers waiting for the sharer's decision.
    pub admission: Mutex<crate::admission::Admissions>,
    /// STUN/TURN servers for new peer connections (from the relay, if any).
    pub ice: Mutex<crate::relay::protocol::IceConfig>,
}

/// Locks a mutex, recovering from poisoning (a panicked holder leaves plain
/// data behind, never a broken invariant we rely on).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    pub fn request_keyframe(&self, codec: VideoCodec, reason: KeyframeReason) {
        self.stats.keyframe_requests.fetch_add(1, Ordering::Relaxed);
        if reason == KeyframeReason::Recovery {
            self.stats.recovery_requests.fetch_add(1, Ordering::Relaxed);
        }
        lock(&self.keyframes)[codec.index()].request(reason);
        self.poll_keyframes(codec, Instant::now());
    }

    fn poll_keyframes(&self, codec: VideoCodec, now: Instant) {
        if lock(&self.keyframes)[codec.index()].poll(now) {
            self.stats.keyframes_forced.fetch_add(1, Ordering::Relaxed);
            let _ = self.requests.try_send(EncoderRequest::Keyframe(codec));
        }
    }

    /// Periodic work, per codec: recovery keyframes, deferred keyframes and
    /// congestion control.
    pub fn tick(&self, now: Instant) {
        let needs_recovery = |v: &Viewer| {
            v.stats.state() == ViewerState::Connected
                && v.stats.needs_keyframe.load(Ordering::Relaxed)
                && v.recovering.load(Ordering::Relaxed)
                && v.queue.capacity() * 2 >= VIEWER_QUEUE_FRAMES
                && v.stats.pacer_queue() < VIEWER_RECOVER_QUEUE
        };
        for codec in VideoCodec::ALL {
            let recovering = lock(&self.viewers).values().any(|v| v.codec == codec && needs_recovery(v))
                || lock(&self.publishes).iter().any(|p| p.sink.codec == codec && needs_recovery(&p.sink));
            // The send side asks for keyframes browsers would ask for too
            // late (after an outage) and when its queue went stale.
            let sender = lock(&self.viewers)
                .values()
                .filter(|v| v.codec == codec)
                .any(|v| v.stats.sender_wants_keyframe.swap(false, Ordering::AcqRel));
            if recovering || sender {
                self.request_keyframe(codec, KeyframeReason::Recovery);
            }
            self.poll_keyframes(codec, now);
            // A viewer whose feedback stopped (an outage: its path is gone,
            // or it vanished) neither sets the rate nor makes the encoder
            // skip frames for everyone; its own frames are dropped
            // (`crate::share`).
            let mut receivers: Vec<(f64, std::time::Duration)> = lock(&self.viewers)
                .values()
                .filter(|v| {
                    v.codec == codec
                        && v.stats.state() == ViewerState::Connected
                        && !v.stats.in_outage.load(Ordering::Relaxed)
                })
                .map(|v| (v.stats.estimate_bps.load(Ordering::Relaxed) as f64, v.stats.pacer_queue()))
                .collect();
            // A publish to a server is one more receiver its codec's encode must suit.
            receivers.extend(
                lock(&self.publishes)
                    .iter()
                    .filter(|p| p.sink.codec == codec && p.sink.stats.state() == ViewerState::Connected)
                    .map(|p| (p.estimate_bps() as f64, p.sink.stats.pacer_queue())),
            );
            let mut rate = lock(&self.rate);
            let rate = &mut rate[codec.index()];
            // Which receivers the rate follows: their queues are the
            // dropper's to keep short (`crate::share` never drops frames
            // for them over a long queue).
            let estimates = || receivers.iter().map(|(e, _)| *e);
            for v in lock(&self.viewers).values().filter(|v| v.codec == codec) {
                let governs = v.stats.state() == ViewerState::Connected
                    && !v.stats.in_outage.load(Ordering::Relaxed)
                    && rate.governs(v.stats.estimate_bps.load(Ordering::Relaxed) as f64, estimates());
                v.governing.store(governs, Ordering::Relaxed);
            }
            for p in lock(&self.publishes).iter().filter(|p| p.sink.codec == codec) {
                let governs = p.sink.stats.state() == ViewerState::Connected
                    && rate.governs(p.estimate_bps() as f64, estimates());
                p.sink.governing.store(governs, Ordering::Relaxed);
            }
            self.backlogs[codec.index()].set(rate.governing_backlog(receivers.iter().copied()));
            if let Some(bps) = rate.update(receivers.iter().map(|(e, _)| *e), now) {
                self.stats.set_target(codec, bps);
                let _ = self.requests.try_send(EncoderRequest::SetBitrate(codec, bps));
            }
        }
    }

    /// The codecs connected viewers are watching.
    pub fn codecs_in_use(&self) -> CodecSet {
        lock(&self.viewers).values().filter(|v| v.stats.state() == ViewerState::Connected).map(|v| v.codec).collect()
    }

    /// Start bitrate for a new viewer's congestion controller: where its
    /// codec's encoder runs now.
    pub fn start_bps(&self, codec: VideoCodec) -> u32 {
        lock(&self.rate)[codec.index()].current_bps()
    }

    pub fn range(&self) -> BitrateRange {
        lock(&self.rate)[VideoCodec::H264.index()].range()
    }

    /// Whether viewers need a password.
    pub fn password_set(&self) -> bool {
        lock(&self.password).is_some()
    }

    /// The viewers and their stats, longest connected first.
    pub fn snapshots(&self) -> Vec<crate::viewer::ViewerSnapshot> {
        let mut list: Vec<_> = lock(&self.viewers)
            .values()
            .map(|v| crate::viewer::ViewerSnapshot::of(&v.id, v.remote, v.codec, v.since, &v.stats))
            .collect();
        list.sort_by_key(|v| std::cmp::Reverse(v.connected_for));
        list
    }

    pub fn remove_viewer(&self, id: &str) -> Option<Arc<Viewer>> {
        let v = lock(&self.viewers).remove(id);
        if let Some(v) = &v {
            v.stats.set_state(ViewerState::Closed);
        }
        v
    }

    /// Whether another viewer may join; reserves a place if so.
    pub fn reserve_place(&self) -> bool {
        let max = self.max_viewers.load(Ordering::Relaxed);
        let viewers = lock(&self.viewers);
        let pending = self.pending.fetch_add(1, Ordering::AcqRel);
        if viewers.len() + pending >= max {
            self.pending.fetch_sub(1, Ordering::AcqRel);
            return false;
        }
        true
    }

    pub fn release_place(&self) {
        self.pending.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Shared {
    /// Fresh state for a share; `requests` receives what the encoder must do.
    pub fn new(
        token: Secret,
        password: Option<Secret>,
        max_viewers: usize,
        bitrate: BitrateRange,
        requests: crossbeam_channel::Sender<EncoderRequest>,
        udp_ips: Vec<IpAddr>,
        fault_drop_first_keyframe: bool,
    ) -> Self {
        Self {
            token,
            password: Mutex::new(password.filter(|p| !p.is_empty())),
            throttle: Mutex::new(Throttle::default()),
            max_viewers: AtomicUsize::new(max_viewers.max(1)),
            viewers: Mutex::new(HashMap::new()),
            publishes: Mutex::new(Vec::new()),
            pending: AtomicUsize::new(0),
            keyframes: Mutex::new(std::array::from_fn(|_| KeyframeCoalescer::default())),
            rate: Mutex::new(std::array::from_fn(|_| RateController::new(bitrate))),
            preference: crate::codecs::DEFAULT_PREFERENCE.to_vec(),
            requests,
            backlogs: Default::default(),
            stats: ShareStats::default(),
            udp_ips,
            ending: AtomicBool::new(false),
            fault_drop_first_keyframe,
            admission: Mutex::new(crate::admission::Admissions::default()),
            ice: Mutex::new(crate::relay::protocol::IceConfig::default()),
        }
    }
}

impl Shared {
    /// The codecs to offer viewers, best first.
    pub fn with_preference(mut self, preference: Vec<VideoCodec>) -> Self {
        self.preference = preference;
        self
    }
}

/// A viewer's peer connection, closable from anywhere.
#[derive(Clone)]
pub(crate) struct PeerHandle {
    pub pc: Arc<dyn PeerConnection>,
}

impl PeerHandle {
    pub async fn close(&self) {
        if let Err(e) = self.pc.close().await {
            tracing::debug!("closing a peer connection: {}", truncate(&e.to_string()));
        }
    }
}

/// webrtc errors can print whole packets: keep log lines short.
pub(crate) fn truncate(s: &str) -> &str {
    let end = s.char_indices().nth(160).map_or(s.len(), |(i, _)| i);
    &s[..end]
}
