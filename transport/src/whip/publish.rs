//! The task that publishes a share to a WHIP server and keeps it published.
//!
//! One attempt: a peer connection as the **offerer** (same media engine and
//! interceptors as a viewer's, plus a REMB tap), a sendonly H.264 track,
//! ICE gathered completely, the offer POSTed (307/308 followed), the
//! answer applied, then frames written until the connection is lost or the
//! share stops. While connected it is registered in `Shared::publishes`, so
//! the fan-out feeds it like a viewer and its estimate joins the rate
//! controller. When ICE disconnects and the server takes PATCH, an ICE
//! restart is tried first; otherwise (or if that fails) the attempt ends,
//! the resource is DELETEd, and [`RetryPolicy`] says when to POST again.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::Method;
use rtc::ice::mdns::MulticastDnsMode;
use rtc::interceptor::Slot;
use rtc::media::Sample;
use rtc::media_stream::MediaStreamTrack;
use rtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtp_transceiver::rtp_sender::{RTCRtpCodingParameters, RTCRtpEncodingParameters, RtpCodecKind};
use rtc::rtp_transceiver::{RTCRtpTransceiverDirection, RTCRtpTransceiverInit};
use tokio::sync::{Notify, mpsc, watch};
use url::Url;
use webrtc::media_stream::track_local::static_sample::TrackLocalStaticSample;
use webrtc::media_stream::track_local::{TrackLocal, TrackLocalEvent};
use webrtc::peer_connection::{
    PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler, RTCConfigurationBuilder, RTCIceCandidateInit,
    RTCIceGatheringState, RTCIceServer, RTCPeerConnectionState, RTCSessionDescription, SettingEngineBuilder,
};

use super::http::{self, Call};
use super::protocol::{
    Created, IceServerLink, MAX_REDIRECTS, PostOutcome, Retry, RetryPolicy, SDP, SDP_FRAGMENT, WhipError,
    WhipErrorKind, crlf, ice_restart_fragment, interpret_post, parse_endpoint, parse_sdp_fragment,
    replace_ice_credentials,
};
use super::remb::RembTap;
use super::{PublishState, PublishStatus, WhipConfig};
use crate::codecs::{VideoCodec, choose_payload_type, h264_codecs};
use crate::hub::{Frame, Notice, PeerHandle, Publish, Shared, VIEWER_QUEUE_FRAMES, Viewer, lock, truncate};
use crate::keyframe::KeyframeReason;
use crate::peer::{CONNECT_TIMEOUT, ICE_DISCONNECTED_TIMEOUT, ICE_FAILED_TIMEOUT, media_engine_and_registry};
use crate::viewer::{ViewerState, ViewerStats};

/// How long ICE gathering may take before the offer goes out with the
/// candidates found so far (host candidates are instant; STUN/TURN take
/// a round trip).
pub const GATHER_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a connection may stay disconnected before the attempt ends,
/// when no ICE restart is possible or it did not bring the media back.
pub const DISCONNECTED_GIVE_UP: Duration = Duration::from_secs(6);

fn media_err(what: &str, e: impl std::fmt::Display) -> WhipError {
    WhipError::new(WhipErrorKind::Media, format!("{what}: {}", truncate(&e.to_string())))
}

struct Events {
    gathering: watch::Sender<RTCIceGatheringState>,
    state: watch::Sender<RTCPeerConnectionState>,
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

/// The WHIP session of one successful POST.
struct Session {
    resource: Url,
    answer: String,
    etag: Option<String>,
    accepts_patch: bool,
}

/// Why an attempt ended.
enum Ended {
    /// The share (or the publish) is stopping.
    Stopped,
    /// It failed or was lost.
    Lost(WhipError),
}

/// Runs until `stop` turns true (or its sender is dropped): publishes,
/// and publishes again after failures, as [`RetryPolicy`] says.
pub(crate) async fn run(
    shared: Arc<Shared>,
    status: Arc<PublishStatus>,
    config: WhipConfig,
    mut stop: watch::Receiver<bool>,
    restart_ice: Arc<Notify>,
) {
    let endpoint = match parse_endpoint(config.url.expose()) {
        Ok(u) => u,
        Err(e) => {
            status.set(PublishState::Failed, Some(e.message), None);
            return;
        }
    };
    let mut policy = RetryPolicy::default();
    let mut ice_servers: Vec<IceServerLink> = Vec::new();
    loop {
        if *stop.borrow() {
            break;
        }
        status.set(PublishState::Connecting, status.message(), None);
        let ended =
            attempt(&shared, &status, &endpoint, &config, &mut ice_servers, &mut policy, &mut stop, &restart_ice).await;
        let error = match ended {
            Ended::Stopped => break,
            Ended::Lost(e) => e,
        };
        if *stop.borrow() {
            break;
        }
        match policy.on_failure(&error, Instant::now()) {
            Retry::GiveUp => {
                // Reported once, through the status (the CLI and GUI show it).
                tracing::debug!("WHIP publish to {} failed: {error}", status.server);
                status.set(PublishState::Failed, Some(error.message), None);
                return;
            }
            Retry::At(at) => {
                tracing::info!("WHIP publish to {}: {error}; trying again", status.server);
                status.set(PublishState::Reconnecting, Some(error.message), Some(at));
                tokio::select! {
                    () = tokio::time::sleep_until(at.into()) => {}
                    () = stopped(&mut stop) => break,
                }
            }
        }
    }
    status.set(PublishState::Stopped, None, None);
}

/// One publish: build, POST, connect, send frames until lost or stopped.
#[allow(clippy::too_many_arguments)]
async fn attempt(
    shared: &Arc<Shared>,
    status: &PublishStatus,
    endpoint: &Url,
    config: &WhipConfig,
    ice_servers: &mut Vec<IceServerLink>,
    policy: &mut RetryPolicy,
    stop: &mut watch::Receiver<bool>,
    restart_ice: &Notify,
) -> Ended {
    let stats = Arc::new(ViewerStats::new());
    let remb_bps = Arc::new(AtomicU64::new(0));
    let range = shared.range();
    let (media, registry) = match media_engine_and_registry(&stats, VideoCodec::H264, range.ceiling_bps) {
        Ok(m) => m,
        Err(e) => return Ended::Lost(media_err("cannot set up WebRTC", e)),
    };
    let registry = registry.with(Slot::from(501), RembTap::new(remb_bps.clone()));
    let settings = SettingEngineBuilder::new()
        .with_multicast_dns_mode(MulticastDnsMode::Disabled)
        .with_ice_timeouts(Some(ICE_DISCONNECTED_TIMEOUT), Some(ICE_FAILED_TIMEOUT), Some(Duration::from_secs(1)))
        .build();
    let rtc_ice_servers = ice_servers
        .iter()
        .map(|s| RTCIceServer {
            urls: vec![s.url.clone()],
            username: s.username.clone().unwrap_or_default(),
            credential: s.credential.as_ref().map(|c| c.expose().to_owned()).unwrap_or_default(),
        })
        .collect();
    let (gathering_tx, mut gathering) = watch::channel(RTCIceGatheringState::New);
    let (state_tx, state) = watch::channel(RTCPeerConnectionState::New);
    let udp_addrs: Vec<String> = shared.udp_ips.iter().map(|ip| SocketAddr::new(*ip, 0).to_string()).collect();
    let pc = PeerConnectionBuilder::new()
        .with_configuration(RTCConfigurationBuilder::new().with_ice_servers(rtc_ice_servers).build())
        .with_media_engine(media)
        .with_setting_engine(settings)
        .with_interceptor_registry(registry)
        .with_handler(Arc::new(Events { gathering: gathering_tx, state: state_tx }))
        .with_udp_addrs(udp_addrs)
        .build()
        .await;
    let pc: Arc<dyn PeerConnection> = match pc {
        Ok(pc) => Arc::new(pc),
        Err(e) => return Ended::Lost(media_err("cannot create the peer connection", e)),
    };
    let peer = PeerHandle { pc: pc.clone() };
    let prepared = async {
        let ssrc =
            crate::auth::random_hex(4).ok().and_then(|h| u32::from_str_radix(&h, 16).ok()).unwrap_or(0x5eed_0002);
        let track = Arc::new(
            TrackLocalStaticSample::new(
                Instant::now(),
                MediaStreamTrack::new(
                    "peep".to_owned(),
                    "screen".to_owned(),
                    "screen".to_owned(),
                    RtpCodecKind::Video,
                    vec![RTCRtpEncodingParameters {
                        rtp_coding_parameters: RTCRtpCodingParameters { ssrc: Some(ssrc), ..Default::default() },
                        codec: h264_codecs()[0].rtp_codec.clone(),
                        ..Default::default()
                    }],
                ),
            )
            .map_err(|e| media_err("cannot create the track", e))?,
        );
        let init = RTCRtpTransceiverInit { direction: RTCRtpTransceiverDirection::Sendonly, ..Default::default() };
        let transceiver = pc
            .add_transceiver_from_track(track.clone() as Arc<dyn TrackLocal>, Some(init))
            .await
            .map_err(|e| media_err("cannot add the track", e))?;
        let sender =
            transceiver.sender().await.ok().flatten().ok_or_else(|| media_err("no sender", "transceiver empty"))?;
        let offer = pc.create_offer(None).await.map_err(|e| media_err("cannot create the offer", e))?;
        pc.set_local_description(offer).await.map_err(|e| media_err("cannot apply the offer", e))?;
        let _ =
            tokio::time::timeout(GATHER_TIMEOUT, gathering.wait_for(|s| *s == RTCIceGatheringState::Complete)).await;
        let sdp = pc.local_description().await.ok_or_else(|| media_err("no local description", "none"))?.sdp;
        Ok::<_, WhipError>((track, sender, ssrc, crlf(&sdp)))
    }
    .await;
    let (track, sender, ssrc, offer) = match prepared {
        Ok(p) => p,
        Err(e) => {
            peer.close().await;
            return Ended::Lost(e);
        }
    };
    let token = config.token.as_ref();
    let created = tokio::select! {
        r = post(endpoint, token, &offer) => r,
        () = stopped(stop) => {
            peer.close().await;
            return Ended::Stopped;
        }
    };
    let created = match created {
        Ok(c) => c,
        Err(e) => {
            peer.close().await;
            return Ended::Lost(e);
        }
    };
    if !created.ice_servers.is_empty() {
        // Used from the next attempt on (this offer is already out).
        ice_servers.clone_from(&created.ice_servers);
    }
    lock(&status.inner).ice_servers = ice_servers.len();
    let mut session = Session {
        resource: created.resource,
        answer: created.answer,
        etag: created.etag,
        accepts_patch: created.accepts_patch,
    };
    let connected = async {
        let answer = RTCSessionDescription::answer(session.answer.clone()).map_err(|e| {
            WhipError::new(
                WhipErrorKind::Protocol,
                format!("the server's SDP answer is unusable: {}", truncate(&e.to_string())),
            )
        })?;
        pc.set_remote_description(answer).await.map_err(|e| {
            WhipError::new(
                WhipErrorKind::Protocol,
                format!("the server's SDP answer is unusable: {}", truncate(&e.to_string())),
            )
        })?;
        wait_connected(state.clone()).await?;
        let pt = sender
            .get_parameters()
            .await
            .ok()
            .and_then(|p| choose_payload_type(VideoCodec::H264, &p.rtp_parameters.codecs));
        pt.ok_or_else(|| {
            WhipError::new(
                WhipErrorKind::Refused,
                "the server did not accept H.264 with packetization-mode 1 (Peep sends H.264 only)",
            )
        })
    };
    let connected = tokio::select! {
        r = connected => r,
        () = stopped(stop) => {
            end_session(&session, token, &peer).await;
            return Ended::Stopped;
        }
    };
    let pt = match connected {
        Ok(pt) => pt,
        Err(e) => {
            end_session(&session, token, &peer).await;
            return Ended::Lost(e);
        }
    };

    // Live: the fan-out feeds this publish from now on.
    let (queue, frames) = mpsc::channel(VIEWER_QUEUE_FRAMES);
    let (notice, _) = watch::channel(Notice::None);
    let sink = Arc::new(Viewer {
        id: "whip".to_owned(),
        codec: VideoCodec::H264,
        remote: SocketAddr::from(([0, 0, 0, 0], 0)),
        since: Instant::now(),
        stats: stats.clone(),
        queue,
        notice,
        peer: peer.clone(),
        fault_drop_keyframe: AtomicBool::new(false),
        recovering: AtomicBool::new(false),
        governing: AtomicBool::new(false),
    });
    stats.set_state(ViewerState::Connected);
    let publish = Arc::new(Publish { sink: sink.clone(), remb_bps });
    lock(&shared.publishes).push(publish.clone());
    *lock(&status.current) = Some(publish.clone());
    status.publishes.fetch_add(1, Ordering::Relaxed);
    policy.on_live();
    status.set(PublishState::Live, None, None);
    tracing::info!("WHIP: publishing to {}", status.server);
    shared.request_keyframe(VideoCodec::H264, KeyframeReason::NewViewer);

    let ended = send_frames(
        shared,
        status,
        &pc,
        &track,
        ssrc,
        pt,
        &sink,
        state,
        frames,
        &mut session,
        token,
        stop,
        restart_ice,
        &mut gathering,
    )
    .await;

    lock(&shared.publishes).retain(|p| !Arc::ptr_eq(p, &publish));
    status.retire(&publish);
    stats.set_state(ViewerState::Closed);
    end_session(&session, token, &peer).await;
    ended
}

/// Writes frames to the server until the connection is lost or the share stops.
#[allow(clippy::too_many_arguments)]
async fn send_frames(
    shared: &Arc<Shared>,
    status: &PublishStatus,
    pc: &Arc<dyn PeerConnection>,
    track: &Arc<TrackLocalStaticSample>,
    ssrc: u32,
    pt: u8,
    sink: &Viewer,
    mut state: watch::Receiver<RTCPeerConnectionState>,
    mut frames: mpsc::Receiver<Frame>,
    session: &mut Session,
    token: Option<&crate::secret::Secret>,
    stop: &mut watch::Receiver<bool>,
    restart_ice: &Notify,
    gathering: &mut watch::Receiver<RTCIceGatheringState>,
) -> Ended {
    // Keyframe requests from the server (a new subscriber usually sends a PLI).
    let rtcp = {
        let (track, shared) = (track.clone(), shared.clone());
        tokio::spawn(async move {
            while let Some(event) = track.poll().await {
                if let TrackLocalEvent::OnRtcpPacket(packets) = event {
                    for p in packets {
                        if p.as_any().is::<PictureLossIndication>() {
                            shared.request_keyframe(VideoCodec::H264, KeyframeReason::Pli);
                        } else if p.as_any().is::<FullIntraRequest>() {
                            shared.request_keyframe(VideoCodec::H264, KeyframeReason::Fir);
                        }
                    }
                }
            }
        })
    };
    let stats = &sink.stats;
    let mut last_captured: Option<Instant> = None;
    let mut disconnected_since: Option<Instant> = None;
    let mut restart_tried = false;
    let mut check = tokio::time::interval(Duration::from_millis(500));
    let ended = loop {
        tokio::select! {
            frame = frames.recv() => {
                let Some(frame) = frame else { break Ended::Stopped };
                // RTP time advances by the real gap between captures (as for viewers).
                let duration = last_captured.map_or(Duration::from_millis(33), |t| frame.captured_at.saturating_duration_since(t));
                last_captured = Some(frame.captured_at);
                let len = frame.data.len() as u64;
                let sample = Sample { data: frame.data, duration, ..Sample::new(frame.captured_at) };
                if let Err(e) = track.sample_writer(ssrc, pt).write_sample(&sample).await {
                    break Ended::Lost(media_err("sending to the server failed", e));
                }
                stats.frames_sent.fetch_add(1, Ordering::Relaxed);
                stats.bytes_sent.fetch_add(len, Ordering::Relaxed);
            }
            changed = state.changed() => {
                if changed.is_err() {
                    break Ended::Lost(media_err("the media connection ended", "closed"));
                }
                let s = *state.borrow_and_update();
                match s {
                    RTCPeerConnectionState::Disconnected => {
                        stats.set_state(ViewerState::Disconnected);
                        disconnected_since.get_or_insert_with(Instant::now);
                        if session.accepts_patch && !restart_tried {
                            restart_tried = true;
                            let restarted = tokio::select! {
                                r = ice_restart(pc, session, token, gathering) => r,
                                () = stopped(stop) => break Ended::Stopped,
                            };
                            if let Err(e) = restarted {
                                let message = format!("lost the media connection to {}; {}", status.server, e.message);
                                break Ended::Lost(WhipError { message, ..e });
                            }
                            status.ice_restarts.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    RTCPeerConnectionState::Connected if stats.state() == ViewerState::Disconnected => {
                        // Back: packets were lost, restart the server's decoder state at a keyframe.
                        stats.set_state(ViewerState::Connected);
                        stats.needs_keyframe.store(true, Ordering::Relaxed);
                        disconnected_since = None;
                        restart_tried = false;
                        shared.request_keyframe(VideoCodec::H264, KeyframeReason::Recovery);
                    }
                    RTCPeerConnectionState::Failed | RTCPeerConnectionState::Closed => {
                        break Ended::Lost(WhipError::new(
                            WhipErrorKind::Media,
                            format!("lost the media connection to {}", status.server),
                        ));
                    }
                    _ => {}
                }
            }
            () = restart_ice.notified() => {
                let restarted = tokio::select! {
                    r = ice_restart(pc, session, token, gathering) => r,
                    () = stopped(stop) => break Ended::Stopped,
                };
                match restarted {
                    Ok(()) => {
                        status.ice_restarts.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => break Ended::Lost(e),
                }
            }
            _ = check.tick() => {
                if disconnected_since.is_some_and(|t| t.elapsed() >= DISCONNECTED_GIVE_UP) {
                    break Ended::Lost(WhipError::new(
                        WhipErrorKind::Media,
                        format!("lost the media connection to {}", status.server),
                    ));
                }
            }
            () = stopped(stop) => break Ended::Stopped,
        }
    };
    rtcp.abort();
    ended
}

/// Resolves once the publish must stop (true sent, or the sender gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// Waits for the connection (ICE + DTLS) within [`CONNECT_TIMEOUT`].
async fn wait_connected(mut state: watch::Receiver<RTCPeerConnectionState>) -> Result<(), WhipError> {
    let wait = state.wait_for(|s| {
        matches!(s, RTCPeerConnectionState::Connected | RTCPeerConnectionState::Failed | RTCPeerConnectionState::Closed)
    });
    match tokio::time::timeout(CONNECT_TIMEOUT, wait).await {
        Ok(Ok(s)) if *s == RTCPeerConnectionState::Connected => Ok(()),
        _ => Err(WhipError::new(
            WhipErrorKind::Media,
            format!(
                "no media connection to the server within {} s (ICE/DTLS failed: a firewall, or the server's \
                 address is not reachable from here)",
                CONNECT_TIMEOUT.as_secs()
            ),
        )),
    }
}

/// POSTs the offer, following 307/308 redirects.
async fn post(endpoint: &Url, token: Option<&crate::secret::Secret>, offer: &str) -> Result<Created, WhipError> {
    let mut url = endpoint.clone();
    let body = Bytes::from(offer.to_owned());
    for _ in 0..=MAX_REDIRECTS {
        // The token goes to the endpoint's own origin, and to other origins
        // only over HTTPS: a redirect must not leak it in clear text.
        let send_token = token.filter(|_| url.origin() == endpoint.origin() || url.scheme() == "https");
        let call = Call {
            method: Method::POST,
            url: &url,
            token: send_token,
            content_type: Some(SDP),
            extra: Vec::new(),
            body: body.clone(),
        };
        let response = http::send(call).await?;
        match interpret_post(&url, response.status, &response.headers, &response.body, send_token.is_some())? {
            PostOutcome::Created(c) => return Ok(c),
            PostOutcome::Redirect(next) => url = next,
        }
    }
    Err(WhipError::new(WhipErrorKind::Protocol, format!("more than {MAX_REDIRECTS} redirects")))
}

/// Restarts ICE through a PATCH with the new credentials and candidates
/// (RFC 9725 §4.3.2); applies the server's new credentials to its answer.
async fn ice_restart(
    pc: &Arc<dyn PeerConnection>,
    session: &mut Session,
    token: Option<&crate::secret::Secret>,
    gathering: &mut watch::Receiver<RTCIceGatheringState>,
) -> Result<(), WhipError> {
    gathering.borrow_and_update();
    pc.restart_ice().await.map_err(|e| media_err("ICE restart", e))?;
    let offer = pc.create_offer(None).await.map_err(|e| media_err("ICE restart offer", e))?;
    pc.set_local_description(offer).await.map_err(|e| media_err("ICE restart offer", e))?;
    // Gathering starts again for the new credentials: wait for it to finish.
    let _ = tokio::time::timeout(Duration::from_secs(1), gathering.changed()).await;
    let _ = tokio::time::timeout(GATHER_TIMEOUT, gathering.wait_for(|s| *s == RTCIceGatheringState::Complete)).await;
    let local = pc.local_description().await.ok_or_else(|| media_err("ICE restart", "no local description"))?.sdp;
    let call = Call {
        method: Method::PATCH,
        url: &session.resource,
        token,
        content_type: Some(SDP_FRAGMENT),
        extra: vec![("if-match", "\"*\"".to_owned())],
        body: Bytes::from(ice_restart_fragment(&local)),
    };
    let response = http::send(call).await?;
    if response.status != 200 {
        let kind = if response.status >= 500 { WhipErrorKind::Unavailable } else { WhipErrorKind::Refused };
        return Err(WhipError::new(
            kind,
            format!(
                "the server refused the ICE restart (HTTP {}: \"{}\")",
                response.status,
                super::protocol::body_excerpt(&response.body)
            ),
        ));
    }
    let fragment = parse_sdp_fragment(&response.body);
    let (Some(ufrag), Some(pwd)) = (fragment.ufrag, fragment.pwd) else {
        return Err(WhipError::new(WhipErrorKind::Protocol, "the ICE restart answer has no ICE credentials"));
    };
    let answer = replace_ice_credentials(&session.answer, &ufrag, &pwd);
    let description = RTCSessionDescription::answer(answer.clone()).map_err(|e| media_err("ICE restart answer", e))?;
    pc.set_remote_description(description).await.map_err(|e| media_err("ICE restart answer", e))?;
    session.answer = answer;
    if let Some(etag) = super::protocol::header(&response.headers, "etag") {
        session.etag = Some(etag.trim().to_owned());
    }
    for candidate in fragment.candidates {
        let init = RTCIceCandidateInit { candidate, sdp_mline_index: Some(0), ..Default::default() };
        if let Err(e) = pc.add_ice_candidate(init).await {
            tracing::debug!("WHIP: a restart candidate was not usable: {}", truncate(&e.to_string()));
        }
    }
    Ok(())
}

/// How long the DELETE may take: stopping waits for it (within
/// [`crate::share::PUBLISH_STOP_TIMEOUT`]).
pub const DELETE_TIMEOUT: Duration = Duration::from_secs(2);

/// DELETEs the WHIP resource (best effort) and closes the connection.
async fn end_session(session: &Session, token: Option<&crate::secret::Secret>, peer: &PeerHandle) {
    let call = Call {
        method: Method::DELETE,
        url: &session.resource,
        token,
        content_type: None,
        extra: Vec::new(),
        body: Bytes::new(),
    };
    match tokio::time::timeout(DELETE_TIMEOUT, http::send(call)).await {
        Ok(Ok(r)) if (200..300).contains(&r.status) || r.status == 404 => {}
        Ok(Ok(r)) => tracing::debug!("WHIP: DELETE answered HTTP {}", r.status),
        Ok(Err(e)) => tracing::debug!("WHIP: DELETE failed: {e}"),
        Err(_) => tracing::debug!("WHIP: no answer to the DELETE within {DELETE_TIMEOUT:?}"),
    }
    peer.close().await;
}
