//! One viewer's peer connection: answering its WHEP offer and feeding it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rtc::ice::mdns::MulticastDnsMode;
use rtc::media::Sample;
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::configuration::media_engine::MediaEngine;
use rtc::peer_connection::transport::{RTCDtlsRole, RTCDtlsTransportState};
use rtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtp_transceiver::rtp_sender::{RTCRtpCodingParameters, RTCRtpEncodingParameters, RtpCodecKind};
use tokio::sync::{mpsc, watch};
use webrtc::media_stream::track_local::TrackLocalEvent;
use webrtc::peer_connection::{
    PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler, RTCIceGatheringState, RTCPeerConnectionState,
    RTCSessionDescription, Registry, SettingEngineBuilder,
};
use webrtc::rtp_transceiver::RtpSender;

use crate::codecs::{
    VideoCodec, choose_codec, choose_payload_type, codecs_for, no_common_codec_message, offered_codecs,
};
use crate::error::{Result, TransportError};
use crate::hub::{Frame, Notice, PeerHandle, Shared, VIEWER_QUEUE_FRAMES, Viewer, lock, truncate};
use crate::keyframe::KeyframeReason;
use crate::track::ViewerTrack;
use crate::viewer::{ViewerState, ViewerStats};

/// How long gathering candidates (STUN, TURN allocations) may take before
/// the answer goes out with what was found.
pub const GATHERING_TIMEOUT: Duration = Duration::from_secs(3);
/// How long ICE/DTLS may take before a viewer is given up.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// Without consent for this long a viewer is considered disconnected…
pub const ICE_DISCONNECTED_TIMEOUT: Duration = Duration::from_secs(3);
/// …and for this long, gone (its resources are freed).
pub const ICE_FAILED_TIMEOUT: Duration = Duration::from_secs(8);
/// How often a viewer's DTLS transport is checked for a close_notify.
pub const DTLS_CLOSED_CHECK: Duration = Duration::from_millis(500);

fn webrtc_err(e: impl std::fmt::Display) -> TransportError {
    TransportError::WebRtc(e.to_string())
}

/// Forwards a peer connection's ICE gathering and connection states to
/// watch channels (the viewers' and the WHIP publish's connections).
pub(crate) struct Events {
    pub gathering: watch::Sender<RTCIceGatheringState>,
    pub state: watch::Sender<RTCPeerConnectionState>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Events {
    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        let _ = self.gathering.send(state);
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        let _ = self.state.send(state);
    }
}

/// The media engine (only `codec`) and interceptors (NACK and RTCP
/// reports, TWCC with Peep's send side, RTCP tap, keyframe-request
/// forwarding) of one peer connection; a WHIP publish (`crate::whip`) uses
/// the same.
pub(crate) fn media_engine_and_registry(
    stats: &Arc<ViewerStats>,
    codec: VideoCodec,
    max_bps: u32,
) -> Result<(MediaEngine, Registry)> {
    let mut media = MediaEngine::default();
    // Codecs first: the configure_* helpers add feedback to registered codecs
    // only. Only the viewer's codec: the answer then offers nothing else.
    for codec in codecs_for(codec) {
        media.register_codec(codec, RtpCodecKind::Video).map_err(webrtc_err)?;
    }
    crate::sendside::configure(media, stats, max_bps)
}

/// Answers a viewer's offer; on success the viewer is registered and its
/// task runs until it leaves. Returns the session id and the SDP answer.
pub(crate) async fn accept_offer(
    shared: Arc<Shared>,
    offer: RTCSessionDescription,
    remote: SocketAddr,
) -> Result<(String, String)> {
    // The viewer's codec, from its offer: the first of the share's
    // preference its browser can receive.
    let offered = offered_codecs(&offer.sdp);
    let Some(codec) = choose_codec(&offered, &shared.preference) else {
        return Err(TransportError::NoCommonCodec(no_common_codec_message(&offered, &shared.preference)));
    };
    let stats = Arc::new(ViewerStats::new());
    let range = shared.range();
    let (media, registry) = media_engine_and_registry(&stats, codec, range.ceiling_bps)?;
    let settings = SettingEngineBuilder::new()
        .with_multicast_dns_mode(MulticastDnsMode::Disabled)
        // a=setup:passive: the browser starts DTLS as soon as ICE connects.
        .with_answering_dtls_role(RTCDtlsRole::Server)
        .with_ice_timeouts(Some(ICE_DISCONNECTED_TIMEOUT), Some(ICE_FAILED_TIMEOUT), Some(Duration::from_secs(1)))
        .build();
    let (gathering_tx, mut gathering) = watch::channel(RTCIceGatheringState::New);
    let (state_tx, state) = watch::channel(RTCPeerConnectionState::New);
    let udp_addrs: Vec<String> = shared.udp_ips.iter().map(|ip| SocketAddr::new(*ip, 0).to_string()).collect();
    let pc = PeerConnectionBuilder::new()
        .with_configuration(crate::relay::client::rtc_configuration(&shared))
        .with_media_engine(media)
        .with_setting_engine(settings)
        .with_interceptor_registry(registry)
        .with_handler(Arc::new(Events { gathering: gathering_tx, state: state_tx }))
        .with_udp_addrs(udp_addrs)
        .build()
        .await
        .map_err(webrtc_err)?;
    let pc: Arc<dyn PeerConnection> = Arc::new(pc);
    let peer = PeerHandle { pc: pc.clone() };
    let answer = async {
        let ssrc =
            crate::auth::random_hex(4).ok().and_then(|h| u32::from_str_radix(&h, 16).ok()).unwrap_or(0x5eed_0001);
        let track = Arc::new(ViewerTrack::new(
            codec,
            Instant::now(),
            MediaStreamTrack::new(
                "peep".to_owned(),
                "screen".to_owned(),
                "screen".to_owned(),
                RtpCodecKind::Video,
                vec![RTCRtpEncodingParameters {
                    rtp_coding_parameters: RTCRtpCodingParameters { ssrc: Some(ssrc), ..Default::default() },
                    codec: codecs_for(codec)[0].rtp_codec.clone(),
                    ..Default::default()
                }],
            ),
            ssrc,
        )?);
        let sender = pc.add_track(track.local()).await.map_err(webrtc_err)?;
        pc.set_remote_description(offer)
            .await
            .map_err(|e| TransportError::BadOffer(truncate(&e.to_string()).to_owned()))?;
        let answer =
            pc.create_answer(None).await.map_err(|e| TransportError::BadOffer(truncate(&e.to_string()).to_owned()))?;
        pc.set_local_description(answer).await.map_err(webrtc_err)?;
        // An unreachable STUN/TURN server must not cost the viewer its
        // answer: after the timeout, answer with the candidates found so far.
        let gathered = gathering.wait_for(|s| *s == RTCIceGatheringState::Complete);
        if tokio::time::timeout(GATHERING_TIMEOUT, gathered).await.is_err() {
            tracing::warn!("ICE gathering incomplete after {GATHERING_TIMEOUT:?} (a STUN/TURN server did not answer)");
        }
        let sdp = pc.local_description().await.ok_or_else(|| webrtc_err("no local description"))?.sdp;
        Ok::<_, TransportError>((sdp, track, sender, ssrc))
    }
    .await;
    let (sdp, track, sender, ssrc) = match answer {
        Ok(a) => a,
        Err(e) => {
            peer.close().await;
            return Err(e);
        }
    };
    let id = crate::auth::random_hex(8)?;
    let (queue, frames) = mpsc::channel(VIEWER_QUEUE_FRAMES);
    let (notice, _) = watch::channel(Notice::None);
    let viewer = Arc::new(Viewer {
        id: id.clone(),
        codec,
        remote,
        since: Instant::now(),
        stats,
        queue,
        notice,
        peer,
        fault_drop_keyframe: std::sync::atomic::AtomicBool::new(shared.fault_drop_first_keyframe),
        recovering: std::sync::atomic::AtomicBool::new(false),
        governing: std::sync::atomic::AtomicBool::new(false),
    });
    lock(&shared.viewers).insert(id.clone(), viewer.clone());
    shared.stats.viewers_joined.fetch_add(1, Ordering::Relaxed);
    tokio::spawn(run_viewer(shared, viewer, track, sender, ssrc, state, frames));
    Ok((id, sdp))
}

/// Drives one viewer from connection to departure.
async fn run_viewer(
    shared: Arc<Shared>,
    viewer: Arc<Viewer>,
    track: Arc<ViewerTrack>,
    sender: Arc<dyn RtpSender>,
    ssrc: u32,
    mut state: watch::Receiver<RTCPeerConnectionState>,
    mut frames: mpsc::Receiver<Frame>,
) {
    let ok = {
        let wait = state.wait_for(|s| {
            matches!(
                s,
                RTCPeerConnectionState::Connected | RTCPeerConnectionState::Failed | RTCPeerConnectionState::Closed
            )
        });
        match tokio::time::timeout(CONNECT_TIMEOUT, wait).await {
            Ok(Ok(s)) => *s == RTCPeerConnectionState::Connected,
            _ => false,
        }
    };
    let payload_type = if ok {
        sender.get_parameters().await.ok().and_then(|p| choose_payload_type(viewer.codec, &p.rtp_parameters.codecs))
    } else {
        None
    };
    if let Some(pt) = payload_type {
        tracing::info!(viewer = %viewer.id, remote = %viewer.remote, "viewer connected");
        viewer.stats.set_state(ViewerState::Connected);
        shared.request_keyframe(viewer.codec, KeyframeReason::NewViewer);
        // Keyframe requests from this viewer's decoder.
        let rtcp = {
            let (track, shared, codec) = (track.clone(), shared.clone(), viewer.codec);
            tokio::spawn(async move {
                while let Some(event) = track.poll().await {
                    if let TrackLocalEvent::OnRtcpPacket(packets) = event {
                        for p in packets {
                            if p.as_any().is::<PictureLossIndication>() {
                                shared.request_keyframe(codec, KeyframeReason::Pli);
                            } else if p.as_any().is::<FullIntraRequest>() {
                                shared.request_keyframe(codec, KeyframeReason::Fir);
                            }
                        }
                    }
                }
            })
        };
        let mut last_captured: Option<Instant> = None;
        // A viewer that closes its connection without a WHEP DELETE sends a
        // DTLS close_notify; the connection state (ICE + DTLS, per the spec)
        // stays "connected", so the DTLS transport is watched itself. Without
        // this a closed player held its place until ICE consent failed (≈ 10 s).
        let dtls = sender.transport().await.ok().flatten();
        let mut closed_check = tokio::time::interval(DTLS_CLOSED_CHECK);
        closed_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = closed_check.tick() => {
                    if let Some(dtls) = &dtls
                        && matches!(dtls.state().await, Ok(RTCDtlsTransportState::Closed))
                    {
                        tracing::debug!("viewer {}: closed its DTLS transport", viewer.id);
                        break;
                    }
                }
                frame = frames.recv() => {
                    let Some(frame) = frame else { break };
                    // RTP time advances by the real gap between captures: a
                    // variable frame rate must not build delay in the viewer.
                    let duration = last_captured.map_or(Duration::from_millis(33), |t| frame.captured_at.saturating_duration_since(t));
                    last_captured = Some(frame.captured_at);
                    let len = frame.data.len() as u64;
                    let sample = Sample { data: frame.data, duration, ..Sample::new(frame.captured_at) };
                    if let Err(e) = track.write(ssrc, pt, &sample).await {
                        tracing::debug!("viewer {}: write failed: {}", viewer.id, truncate(&e.to_string()));
                        break;
                    }
                    viewer.stats.frames_sent.fetch_add(1, Ordering::Relaxed);
                    viewer.stats.bytes_sent.fetch_add(len, Ordering::Relaxed);
                }
                changed = state.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    let s = *state.borrow_and_update();
                    match s {
                        RTCPeerConnectionState::Disconnected => viewer.stats.set_state(ViewerState::Disconnected),
                        // Back from a disconnection: packets were lost, restart
                        // the viewer's decoder at a keyframe.
                        RTCPeerConnectionState::Connected if viewer.stats.state() == ViewerState::Disconnected => {
                            viewer.stats.set_state(ViewerState::Connected);
                            viewer.stats.needs_keyframe.store(true, Ordering::Relaxed);
                            shared.request_keyframe(viewer.codec, KeyframeReason::Recovery);
                        }
                        RTCPeerConnectionState::Failed | RTCPeerConnectionState::Closed => break,
                        _ => {}
                    }
                }
            }
            if viewer.stats.state() == ViewerState::Closed {
                break;
            }
        }
        rtcp.abort();
    } else {
        tracing::info!(viewer = %viewer.id, remote = %viewer.remote, "viewer never connected (ICE/DTLS failed or timed out)");
    }
    shared.remove_viewer(&viewer.id);
    viewer.peer.close().await;
    tracing::info!(
        viewer = %viewer.id,
        frames_sent = viewer.stats.frames_sent.load(Ordering::Relaxed),
        frames_dropped = viewer.stats.frames_dropped.load(Ordering::Relaxed),
        "viewer left"
    );
}
