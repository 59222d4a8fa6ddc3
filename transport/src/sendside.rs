//! Peep's send side in `rtc`'s interceptor chain: thin drivers around the
//! sans-IO [`SendController`] (estimator + pacer) and the header-extension
//! writer.
//!
//! ```text
//!  wire ◀── 1_000 CongestionControl (rtc: send history, TWCC feedback → PeepEstimator)
//!      ◀── 2_000 TwccSender         (rtc: transport-wide sequence numbers)
//!      ◀── 3_000 PeepPacer          (this: queue, pacing, NACK → retransmissions, probes)
//!      ◀── 3_500 HeaderExtensions   (this: playout-delay on every video packet)
//!      ◀── …     SR/RR, RTCP tap, keyframe forwarder
//! ```
//!
//! * [`PeepEstimator`] is the [`BandwidthEstimator`] `rtc`'s congestion
//!   controller drives with resolved TWCC feedback; it hands the reports to
//!   the shared [`SendController`].
//! * [`PeepPacer`] replaces `rtc`'s pacer *and* NACK responder: it queues
//!   every outgoing media packet, numbers and releases them at the pacing
//!   rate, answers NACKs (retransmissions first, see `crate::pacer`), sends
//!   probe padding, and publishes its figures into the viewer's
//!   [`ViewerStats`] atomics. Released packets carry the release instant, so
//!   the send history below records when they really left.
//! * [`HeaderExtensions`] writes RTP header extensions negotiated for the
//!   stream; today the playout delay the send side asks for (min 0, max
//!   [`PLAYOUT_DELAY_MAX`] on a clean link, so Chromium keeps its jitter
//!   buffer short even after a large keyframe; the round trip plus a margin
//!   as the minimum in loss recovery, see `crate::sender`).
//!   Another extension (abs-capture-time) is one more [`ExtensionSource`].
//!
//! The estimator and the pacer share one `SendController` behind a mutex:
//! both run on the peer connection's driver task, one after the other, so
//! the lock is never contended.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rtc::interceptor::{
    Attribute, AttributedPacket, BandwidthEstimator, EstimatorStats, Interceptor, Packet, PacketReport, StreamInfo,
    TaggedPacket,
};
use rtc::rtcp::transport_feedbacks::transport_layer_nack::TransportLayerNack;
use rtc::rtp;
use rtc::sansio::Protocol;
use rtc::shared::error::Error as RtcError;
use rtc::shared::marshal::MarshalSize;

use crate::bwe::BweConfig;
use crate::error::{Result, TransportError};
use crate::interceptors::{KeyframeRequestForwarder, RtcpTap};
use crate::pacer::{Paced, Release};
use crate::rate::{BWE_MIN_BPS, BWE_START_BPS};
use crate::sender::SendController;
use crate::viewer::ViewerStats;

/// The playout-delay header extension (libwebrtc's, understood by Chromium).
pub const PLAYOUT_DELAY_URI: &str = "http://www.webrtc.org/experiments/rtp-hdrext/playout-delay";
pub use crate::sender::PLAYOUT_DELAY_MAX;

/// Registers what the send side needs on a media engine whose codecs are
/// registered, and builds the interceptor chain for one viewer:
///
/// * NACK and PLI feedback (answered by [`PeepPacer`] and the keyframe
///   forwarder; `rtc`'s NACK responder is not used, and this send-only peer
///   needs no NACK generator);
/// * the header extensions [`HeaderExtensions`] writes;
/// * sender and receiver reports, TWCC numbering and feedback;
/// * the estimator, the pacer and the extension writer at the slots in the
///   module docs, and the RTCP tap and keyframe forwarder.
pub(crate) fn configure(
    mut media: rtc::peer_connection::configuration::media_engine::MediaEngine,
    stats: &Arc<ViewerStats>,
    max_bps: u32,
) -> Result<(rtc::peer_connection::configuration::media_engine::MediaEngine, webrtc::peer_connection::Registry)> {
    use rtc::interceptor::{CongestionControlBuilder, Slot};
    use rtc::rtp_transceiver::rtp_sender::{RTCPFeedback, RTCRtpHeaderExtensionCapability, RtpCodecKind};
    let err = |e: rtc::shared::error::Error| TransportError::WebRtc(e.to_string());
    for parameter in ["", "pli"] {
        media.register_feedback(
            RTCPFeedback { typ: "nack".to_owned(), parameter: parameter.to_owned() },
            RtpCodecKind::Video,
        );
    }
    let playout = Arc::new(AtomicU32::new(PlayoutDelay::pack(Duration::ZERO, PLAYOUT_DELAY_MAX)));
    let extensions = HeaderExtensions::new(vec![Box::new(PlayoutDelay::new(playout.clone()))]);
    for uri in extensions.uris() {
        media
            .register_header_extension(
                RTCRtpHeaderExtensionCapability { uri: uri.to_owned() },
                RtpCodecKind::Video,
                None,
            )
            .map_err(err)?;
    }
    let registry = webrtc::peer_connection::configure_rtcp_reports(webrtc::peer_connection::Registry::new());
    let registry = webrtc::peer_connection::configure_twcc(registry, &mut media).map_err(err)?;
    let side = SharedSendSide::new(
        BweConfig { start_bps: BWE_START_BPS, min_bps: BWE_MIN_BPS, max_bps: f64::from(max_bps) * 1.5 },
        stats.clone(),
    )
    .with_playout(playout);
    let registry = registry
        .with(Slot::CongestionControl, CongestionControlBuilder::new(PeepEstimator::new(side.clone())).build())
        .with(Slot::Pacer, PeepPacer::new(side))
        .with(Slot::from(3_500), extensions)
        .with(Slot::from(500), RtcpTap::new(stats.clone()))
        .with(Slot::from(14_000), KeyframeRequestForwarder::default());
    Ok((media, registry))
}

/// One outgoing packet in the pacer's queue.
#[derive(Clone)]
pub struct QueuedRtp {
    transport: rtc::shared::TransportContext,
    message: AttributedPacket,
    size: usize,
    keyframe_start: bool,
}

impl QueuedRtp {
    /// The packet as it leaves at `now` under sequence number `seq`.
    fn into_message(self, now: Instant, seq: u16) -> TaggedPacket {
        let mut message = self.message;
        if let Packet::Rtp(p) = &mut message.packet {
            p.header.sequence_number = seq;
        }
        TaggedPacket { now, transport: self.transport, message }
    }
}

impl Paced for QueuedRtp {
    fn size(&self) -> usize {
        self.size
    }

    fn frame_end(&self) -> bool {
        matches!(&self.message.packet, Packet::Rtp(p) if p.header.marker)
    }

    fn keyframe_start(&self) -> bool {
        self.keyframe_start
    }
}

/// What a payload's first bytes say about the frame it starts.
fn starts_keyframe(codec: Codec, payload: &[u8]) -> bool {
    match codec {
        Codec::H264 => {
            let Some(&first) = payload.first() else { return false };
            match first & 0x1F {
                // SPS or an IDR slice as a single NAL unit.
                5 | 7 => true,
                // STAP-A: the first aggregated NAL unit's header after its 2-byte size.
                24 => payload.get(3).is_some_and(|h| matches!(h & 0x1F, 5 | 7)),
                // FU-A: the start fragment of an IDR slice.
                28 => payload.get(1).is_some_and(|h| h & 0x80 != 0 && h & 0x1F == 5),
                _ => false,
            }
        }
        Codec::Vp8 => vp8_keyframe(payload),
        Codec::Other => false,
    }
}

/// RFC 7741: a VP8 payload descriptor with S=1 and PID=0 followed by a
/// payload header whose P bit is 0 starts a keyframe.
fn vp8_keyframe(payload: &[u8]) -> bool {
    let Some(&d) = payload.first() else { return false };
    if d & 0x10 == 0 || d & 0x07 != 0 {
        return false;
    }
    let mut i = 1;
    if d & 0x80 != 0 {
        let Some(&x) = payload.get(1) else { return false };
        i = 2;
        if x & 0x80 != 0 {
            // PictureID: 7 or 15 bits.
            let Some(&p) = payload.get(i) else { return false };
            i += if p & 0x80 != 0 { 2 } else { 1 };
        }
        if x & 0x40 != 0 {
            i += 1; // TL0PICIDX
        }
        if x & 0x30 != 0 {
            i += 1; // TID/KEYIDX
        }
    }
    payload.get(i).is_some_and(|h| h & 0x01 == 0)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Codec {
    H264,
    Vp8,
    Other,
}

impl Codec {
    fn of(mime_type: &str) -> Self {
        if mime_type.eq_ignore_ascii_case("video/h264") {
            Self::H264
        } else if mime_type.eq_ignore_ascii_case("video/vp8") {
            Self::Vp8
        } else {
            Self::Other
        }
    }
}

/// Shared state of one viewer's send side.
pub(crate) struct SendSide {
    controller: SendController<QueuedRtp>,
    stats: Arc<ViewerStats>,
    /// The playout delay to write on packets ([`PlayoutDelay::pack`]ed).
    playout: Option<Arc<AtomicU32>>,
}

/// A handle both interceptors hold.
#[derive(Clone)]
pub(crate) struct SharedSendSide(Arc<Mutex<SendSide>>);

impl SharedSendSide {
    /// A send side for one viewer starting at `config`.
    pub fn new(config: BweConfig, stats: Arc<ViewerStats>) -> Self {
        stats.estimate_bps.store(config.start_bps as u64, Ordering::Relaxed);
        Self(Arc::new(Mutex::new(SendSide { controller: SendController::new(config), stats, playout: None })))
    }

    /// Publishes the playout delay the send side asks for into `playout`.
    pub fn with_playout(self, playout: Arc<AtomicU32>) -> Self {
        self.lock().playout = Some(playout);
        self
    }

    fn lock(&self) -> MutexGuard<'_, SendSide> {
        // A panic while holding it leaves plain data behind.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl SendSide {
    fn publish(&mut self) {
        let s = self.controller.stats();
        let v = &self.stats;
        v.estimate_bps.store(s.bwe.target_bps as u64, Ordering::Relaxed);
        v.pacer_queue_us.store(s.queue_delay.as_micros().min(u128::from(u64::MAX)) as u64, Ordering::Relaxed);
        v.retransmissions.store(s.pacer.retransmissions + s.pacer.redundant_retransmissions, Ordering::Relaxed);
        v.probes.store(s.pacer.probes, Ordering::Relaxed);
        v.padding_bytes.store(s.pacer.padding_bytes, Ordering::Relaxed);
        v.acked_bps.store(s.bwe.acked_bps.unwrap_or(0.0) as u64, Ordering::Relaxed);
        v.frames_superseded.store(s.pacer.frames_superseded, Ordering::Relaxed);
        v.app_limited.store(s.app_limited, Ordering::Relaxed);
        v.in_outage.store(s.in_outage, Ordering::Relaxed);
        if let Some(loss) = s.bwe.loss {
            v.feedback_loss_256.store((loss * 256.0) as u32, Ordering::Relaxed);
        }
        if self.controller.take_keyframe_request() {
            v.sender_wants_keyframe.store(true, Ordering::Release);
        }
        let (min, max) = s.playout_delay;
        v.playout_min_ms.store(min.as_millis().min(u128::from(u32::MAX)) as u32, Ordering::Relaxed);
        if let Some(p) = &self.playout {
            p.store(PlayoutDelay::pack(min, max), Ordering::Relaxed);
        }
    }
}

/// Diagnostics: with `PEEP_FEEDBACK_TRACE=<path prefix>` set, each viewer's
/// resolved feedback is appended to `<prefix>.<n>.trace`, one packet per
/// line: `feedback_us departure_us arrival_us|- size_bytes rtp_seq`, the
/// first two on our clock, the third on the receiver's, each relative to
/// its first value. `transport/tests/feedback_replay.rs` replays such traces.
pub const FEEDBACK_TRACE_ENV: &str = "PEEP_FEEDBACK_TRACE";

struct FeedbackTrace {
    out: std::io::BufWriter<std::fs::File>,
    origin: Option<(Instant, Duration)>,
}

impl FeedbackTrace {
    fn open() -> Option<Self> {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let prefix = std::env::var_os(FEEDBACK_TRACE_ENV)?;
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = format!("{}.{n}.trace", prefix.to_string_lossy());
        match std::fs::File::create(&path) {
            Ok(f) => Some(Self { out: std::io::BufWriter::new(f), origin: None }),
            Err(e) => {
                tracing::warn!("{FEEDBACK_TRACE_ENV}: cannot create {path}: {e}");
                None
            }
        }
    }

    fn write(&mut self, now: Instant, reports: &[PacketReport]) {
        use std::io::Write;
        let Some(first) = reports.first() else { return };
        let (t0, a0) =
            *self.origin.get_or_insert((first.departure, reports.iter().find_map(|r| r.arrival).unwrap_or_default()));
        let us = |t: Instant| t.saturating_duration_since(t0).as_micros();
        for r in reports {
            let arrival = match (r.arrived, r.arrival) {
                (true, Some(a)) => a.saturating_sub(a0).as_micros().to_string(),
                _ => "-".to_owned(),
            };
            // Diagnostics only: a full disk ends the trace, not the share.
            let _ =
                writeln!(self.out, "{} {} {arrival} {} {}", us(now), us(r.departure), r.size, r.rtp_sequence_number);
        }
        let _ = self.out.flush();
    }
}

/// The estimator adapter for `rtc`'s congestion-control interceptor.
pub(crate) struct PeepEstimator {
    side: SharedSendSide,
    trace: Option<FeedbackTrace>,
}

impl PeepEstimator {
    pub fn new(side: SharedSendSide) -> Self {
        Self { side, trace: FeedbackTrace::open() }
    }
}

impl BandwidthEstimator for PeepEstimator {
    fn on_reports(&mut self, now: Instant, reports: &[PacketReport]) {
        if let Some(trace) = &mut self.trace {
            trace.write(now, reports);
        }
        let mut side = self.side.lock();
        side.controller.on_feedback(now, reports);
        side.publish();
    }

    fn target_bitrate(&self) -> f64 {
        self.side.lock().controller.target_bps()
    }

    fn stats(&self) -> EstimatorStats {
        let s = self.side.lock().controller.stats();
        let mut out = EstimatorStats::default();
        out.delay_based_bitrate = Some(s.bwe.delay_based_bps);
        out.loss_based_bitrate = s.bwe.loss_bound_bps;
        out.packet_loss = s.bwe.loss;
        out.round_trip_time = Some(s.bwe.rtt);
        out
    }
}

/// The local video stream the pacer serves.
#[derive(Debug, Clone)]
struct LocalStream {
    ssrc: u32,
    codec: Codec,
    /// A one-byte extension id no negotiated extension uses, for padding.
    filler_id: Option<u8>,
}

/// The pacer + NACK responder interceptor. See the module docs.
pub(crate) struct PeepPacer {
    side: SharedSendSide,
    stream: Option<LocalStream>,
    /// The previous queued packet ended a frame (the next one starts one).
    at_frame_start: bool,
    started: bool,
    /// Header of the last media packet released, the template for padding.
    last_media: Option<(rtp::header::Header, rtc::shared::TransportContext)>,
    read_queue: VecDeque<TaggedPacket>,
    write_queue: VecDeque<TaggedPacket>,
}

impl PeepPacer {
    pub fn new(side: SharedSendSide) -> Self {
        Self {
            side,
            stream: None,
            at_frame_start: true,
            started: false,
            last_media: None,
            read_queue: VecDeque::new(),
            write_queue: VecDeque::new(),
        }
    }

    fn release(&mut self, now: Instant) {
        let side = self.side.clone();
        let mut side = side.lock();
        side.controller.handle_timeout(now);
        while let Some(release) = side.controller.poll_release(now) {
            match release {
                Release::Media { packet, seq, .. } => {
                    let msg = packet.into_message(now, seq);
                    if let Packet::Rtp(p) = &msg.message.packet {
                        self.last_media = Some((p.header.clone(), msg.transport));
                    }
                    self.write_queue.push_back(msg);
                }
                Release::Retransmission { packet, seq } => {
                    let mut msg = packet.into_message(now, seq);
                    msg.message.add(Attribute::Retransmission);
                    self.write_queue.push_back(msg);
                }
                Release::Padding { seq, size, probe } => {
                    if let Some(mut msg) = self.padding(now, seq, size) {
                        if probe.is_none() {
                            msg.message.add(Attribute::Retransmission);
                        }
                        self.write_queue.push_back(msg);
                    }
                }
                Release::TailProbe { seq, size } => {
                    if let Some(msg) = self.padding(now, seq, size) {
                        self.write_queue.push_back(msg);
                    }
                }
            }
        }
        side.publish();
    }

    /// A padding-only packet (RFC 3550 §5.1) of about `size` bytes: the last
    /// media packet's header (same SSRC, payload type, timestamp,
    /// extensions) with a new sequence number, no marker, an empty payload
    /// and the size made up by header-extension elements of an id nobody
    /// negotiated (receivers skip those, RFC 8285 §4.2).
    fn padding(&self, now: Instant, seq: u16, size: usize) -> Option<TaggedPacket> {
        let (header, transport) = self.last_media.as_ref()?;
        let stream = self.stream.as_ref()?;
        let mut header = header.clone();
        header.sequence_number = seq;
        header.marker = false;
        header.padding = true;
        if let Some(id) = stream.filler_id
            && (!header.extension || header.extension_profile == rtp::header::EXTENSION_PROFILE_ONE_BYTE)
        {
            header.extension = true;
            header.extension_profile = rtp::header::EXTENSION_PROFILE_ONE_BYTE;
            let filler = Bytes::from_static(&[0u8; 16]);
            let mut packet = rtp::Packet { header, payload: Bytes::new() };
            while packet.marshal_size() + 17 <= size {
                packet.header.extensions.push(rtp::header::Extension { id, payload: filler.clone() });
                // `rtc` keeps the padding to a 32-bit boundary in its own
                // field (maintained by `set_extension`); `marshal_size`
                // reads it, `marshal_to` does not: keep them in agreement or
                // the packet fails to serialise and is never sent.
                let len = packet.header.get_extension_payload_len();
                packet.header.extensions_padding = (4 - len % 4) % 4;
            }
            return Some(TaggedPacket {
                now,
                transport: *transport,
                message: AttributedPacket::new(Packet::Rtp(packet)),
            });
        }
        let packet = rtp::Packet { header, payload: Bytes::new() };
        Some(TaggedPacket { now, transport: *transport, message: AttributedPacket::new(Packet::Rtp(packet)) })
    }
}

impl Protocol<TaggedPacket, TaggedPacket, ()> for PeepPacer {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = RtcError;
    type Time = Instant;

    fn handle_read(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        if let (Packet::Rtcp(packets), Some(stream)) = (&msg.message.packet, &self.stream) {
            let seqs: Vec<u16> = packets
                .iter()
                .filter_map(|p| p.as_any().downcast_ref::<TransportLayerNack>())
                .filter(|n| n.media_ssrc == stream.ssrc)
                .flat_map(|n| n.nacks.iter().flat_map(|pair| pair.packet_list()))
                .collect();
            if !seqs.is_empty() {
                let mut side = self.side.lock();
                side.controller.on_nack(msg.now, seqs);
            }
        }
        self.read_queue.push_back(msg);
        Ok(())
    }

    fn poll_read(&mut self) -> Option<Self::Rout> {
        self.read_queue.pop_front()
    }

    fn handle_write(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        let Some(stream) = &self.stream else {
            self.write_queue.push_back(msg);
            return Ok(());
        };
        let ours = matches!(&msg.message.packet, Packet::Rtp(p) if p.header.ssrc == stream.ssrc)
            && !msg.message.has(&Attribute::Retransmission);
        if !ours {
            // RTCP (never paced: feedback is only useful fresh) and anything else.
            self.write_queue.push_back(msg);
            return Ok(());
        }
        let now = msg.now;
        let Packet::Rtp(p) = &msg.message.packet else {
            self.write_queue.push_back(msg);
            return Ok(());
        };
        let size = p.marshal_size();
        let keyframe_start = self.at_frame_start && starts_keyframe(stream.codec, &p.payload);
        let (seq, marker) = (p.header.sequence_number, p.header.marker);
        self.at_frame_start = marker;
        {
            let mut side = self.side.lock();
            if !self.started {
                // Keep the stream's random first sequence number.
                side.controller.start_sequence_at(seq);
                self.started = true;
            }
            side.controller
                .enqueue(now, QueuedRtp { transport: msg.transport, message: msg.message, size, keyframe_start });
        }
        self.release(now);
        Ok(())
    }

    fn poll_write(&mut self) -> Option<Self::Wout> {
        self.write_queue.pop_front()
    }

    fn handle_timeout(&mut self, now: Instant) -> Result<(), Self::Error> {
        self.release(now);
        Ok(())
    }

    fn poll_timeout(&mut self) -> Option<Self::Time> {
        self.side.lock().controller.poll_timeout()
    }
}

impl Interceptor for PeepPacer {
    fn bind_local_stream(&mut self, info: &StreamInfo) {
        if !info.mime_type.to_ascii_lowercase().starts_with("video/") {
            return;
        }
        let used: Vec<u16> = info.rtp_header_extensions.iter().map(|e| e.id).collect();
        let filler_id = (1u8..=14).rev().find(|id| !used.contains(&u16::from(*id)));
        self.stream = Some(LocalStream { ssrc: info.ssrc, codec: Codec::of(&info.mime_type), filler_id });
    }

    fn unbind_local_stream(&mut self, info: &StreamInfo) {
        if self.stream.as_ref().is_some_and(|s| s.ssrc == info.ssrc) {
            self.stream = None;
        }
    }

    fn bind_remote_stream(&mut self, _info: &StreamInfo) {}

    fn unbind_remote_stream(&mut self, _info: &StreamInfo) {}
}

/// A header extension value to write on outgoing video packets.
pub(crate) trait ExtensionSource: Send + Sync {
    /// The extension's URI, as negotiated in SDP.
    fn uri(&self) -> &'static str;
    /// The value for this packet, or `None` to leave it off.
    fn value(&mut self, packet: &rtp::Packet) -> Option<Bytes>;
}

/// Playout delay: min and max in 10 ms units, 12 bits each (libwebrtc's
/// `playout-delay` extension, 3 bytes), as the send side last published it.
pub(crate) struct PlayoutDelay {
    current: Arc<AtomicU32>,
    /// The packed value and its bytes (rebuilt only when the value changes).
    cached: (u32, Bytes),
}

impl PlayoutDelay {
    /// Writes whatever `current` holds (see [`PlayoutDelay::pack`]).
    pub fn new(current: Arc<AtomicU32>) -> Self {
        Self { current, cached: (u32::MAX, Bytes::new()) }
    }

    /// The extension's 24 bits for (min, max), in an integer.
    pub fn pack(min: Duration, max: Duration) -> u32 {
        let units = |d: Duration| (d.as_millis() / 10).min(0xFFF) as u32;
        let (min, max) = (units(min), units(max.max(min)));
        (min << 12) | max
    }

    fn bytes(packed: u32) -> Bytes {
        Bytes::copy_from_slice(&[(packed >> 16) as u8, (packed >> 8) as u8, packed as u8])
    }
}

impl ExtensionSource for PlayoutDelay {
    fn uri(&self) -> &'static str {
        PLAYOUT_DELAY_URI
    }

    fn value(&mut self, _packet: &rtp::Packet) -> Option<Bytes> {
        let packed = self.current.load(Ordering::Relaxed);
        if self.cached.0 != packed {
            self.cached = (packed, Self::bytes(packed));
        }
        Some(self.cached.1.clone())
    }
}

/// Writes negotiated header extensions on outgoing video packets.
pub(crate) struct HeaderExtensions {
    sources: Vec<Box<dyn ExtensionSource>>,
    /// (ssrc, [(id, index into sources)]) of bound video streams.
    streams: Vec<(u32, Vec<(u8, usize)>)>,
    read_queue: VecDeque<TaggedPacket>,
    write_queue: VecDeque<TaggedPacket>,
}

impl HeaderExtensions {
    pub fn new(sources: Vec<Box<dyn ExtensionSource>>) -> Self {
        Self { sources, streams: vec![], read_queue: VecDeque::new(), write_queue: VecDeque::new() }
    }

    /// The URIs to register with the media engine.
    pub fn uris(&self) -> Vec<&'static str> {
        self.sources.iter().map(|s| s.uri()).collect()
    }
}

impl Protocol<TaggedPacket, TaggedPacket, ()> for HeaderExtensions {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = RtcError;
    type Time = Instant;

    fn handle_read(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        self.read_queue.push_back(msg);
        Ok(())
    }

    fn poll_read(&mut self) -> Option<Self::Rout> {
        self.read_queue.pop_front()
    }

    fn handle_write(&mut self, mut msg: TaggedPacket) -> Result<(), Self::Error> {
        if let Packet::Rtp(p) = &mut msg.message.packet
            && let Some((_, ids)) = self.streams.iter().find(|(ssrc, _)| *ssrc == p.header.ssrc)
        {
            for (id, source) in ids {
                if let Some(value) = self.sources[*source].value(p) {
                    // A value too large for the header's profile is left off.
                    let _ = p.header.set_extension(*id, value);
                }
            }
        }
        self.write_queue.push_back(msg);
        Ok(())
    }

    fn poll_write(&mut self) -> Option<Self::Wout> {
        self.write_queue.pop_front()
    }
}

impl Interceptor for HeaderExtensions {
    fn bind_local_stream(&mut self, info: &StreamInfo) {
        if !info.mime_type.to_ascii_lowercase().starts_with("video/") {
            return;
        }
        let ids: Vec<(u8, usize)> = self
            .sources
            .iter()
            .enumerate()
            .filter_map(|(i, s)| {
                let ext = info.rtp_header_extensions.iter().find(|e| e.uri == s.uri())?;
                u8::try_from(ext.id).ok().map(|id| (id, i))
            })
            .collect();
        self.streams.retain(|(ssrc, _)| *ssrc != info.ssrc);
        if !ids.is_empty() {
            self.streams.push((info.ssrc, ids));
        }
    }

    fn unbind_local_stream(&mut self, info: &StreamInfo) {
        self.streams.retain(|(ssrc, _)| *ssrc != info.ssrc);
    }

    fn bind_remote_stream(&mut self, _info: &StreamInfo) {}

    fn unbind_remote_stream(&mut self, _info: &StreamInfo) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyframe_starts_are_recognised() {
        // STAP-A with SPS first, FU-A start of an IDR, a P slice, FU-A middle of an IDR.
        assert!(starts_keyframe(Codec::H264, &[24, 0, 10, 0x67, 0x42]));
        assert!(starts_keyframe(Codec::H264, &[0x67, 0x42]));
        assert!(starts_keyframe(Codec::H264, &[28, 0x85, 0x00]));
        assert!(!starts_keyframe(Codec::H264, &[0x41, 0x9a]));
        assert!(!starts_keyframe(Codec::H264, &[28, 0x05, 0x00]));
        assert!(!starts_keyframe(Codec::H264, &[]));
        // VP8: S=1 PID=0, no extensions, P=0 → keyframe; P=1 → not.
        assert!(starts_keyframe(Codec::Vp8, &[0x10, 0x00]));
        assert!(!starts_keyframe(Codec::Vp8, &[0x10, 0x01]));
        // With X, I (15-bit picture id), L, T/K.
        assert!(starts_keyframe(Codec::Vp8, &[0x90, 0xF0, 0x80, 0x01, 0x00, 0x00, 0x00]));
        assert!(!starts_keyframe(Codec::Vp8, &[0x90, 0xF0, 0x80]));
        assert!(!starts_keyframe(Codec::Other, &[0x10, 0x00]));
    }

    #[test]
    fn padding_packets_serialise_and_parse_back_as_padding() {
        use rtc::shared::marshal::{Marshal, Unmarshal};
        let side =
            SharedSendSide::new(BweConfig { start_bps: 1e6, min_bps: 1e5, max_bps: 1e7 }, Arc::new(ViewerStats::new()));
        let mut pacer = PeepPacer::new(side);
        pacer.stream = Some(LocalStream { ssrc: 7, codec: Codec::H264, filler_id: Some(14) });
        // A media header as the chain leaves it: one extension set the usual way.
        let mut header =
            rtp::header::Header { version: 2, ssrc: 7, payload_type: 102, timestamp: 90_000, ..Default::default() };
        header.set_extension(5, Bytes::from_static(&[0, 0, 0x14])).unwrap();
        pacer.last_media = Some((header, rtc::shared::TransportContext::default()));
        let msg = pacer.padding(Instant::now(), 1234, 1000).expect("a padding packet");
        let Packet::Rtp(mut p) = msg.message.packet else { panic!("RTP") };
        // The TWCC sender adds its extension afterwards.
        p.header.set_extension(4, Bytes::from_static(&[0, 1])).unwrap();
        let wire = p.marshal().expect("serialises");
        assert!((950..=1010).contains(&wire.len()), "{} bytes", wire.len());
        let back = rtp::Packet::unmarshal(&mut &wire[..]).expect("parses");
        assert_eq!(back.header.sequence_number, 1234);
        assert!(back.payload.is_empty(), "padding only");
        assert_eq!(back.header.get_extension(5).as_deref(), Some(&[0u8, 0, 0x14][..]), "media extensions kept");
        assert_eq!(back.header.get_extension(4).as_deref(), Some(&[0u8, 1][..]));
    }

    #[test]
    fn playout_delay_encodes_min_and_max_in_10_ms_units_and_follows_the_send_side() {
        let current = Arc::new(AtomicU32::new(PlayoutDelay::pack(Duration::ZERO, Duration::from_millis(200))));
        let mut p = PlayoutDelay::new(current.clone());
        let packet = rtp::Packet::default();
        assert_eq!(&p.value(&packet).unwrap()[..], &[0x00, 0x00, 0x14]);
        // 10 units, capped at 4095.
        current.store(PlayoutDelay::pack(Duration::from_millis(100), Duration::from_secs(100)), Ordering::Relaxed);
        assert_eq!(&p.value(&packet).unwrap()[..], &[0x00, 0xAF, 0xFF]);
        // The send side publishes what its controller asks for.
        let stats = Arc::new(ViewerStats::new());
        let side = SharedSendSide::new(BweConfig { start_bps: 1e6, min_bps: 1e5, max_bps: 1e7 }, stats.clone())
            .with_playout(current.clone());
        side.lock().publish();
        assert_eq!(&p.value(&packet).unwrap()[..], &[0x00, 0x00, 0x14], "a clean link: min 0, max 200 ms");
        assert_eq!(stats.playout_min_ms.load(Ordering::Relaxed), 0);
    }
}
