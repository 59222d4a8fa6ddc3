//! A light WHEP viewer for load tests: a webrtc-rs receiver that posts its
//! offer to a share's WHEP endpoint, completes ICE and DTLS, counts the RTP
//! payload bytes it receives (no decoding) and leaves with a WHEP DELETE or
//! by just closing (as a closed tab would). Hundreds of these cost far less
//! than Chromium tabs, and each is a complete WebRTC client to the share.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::watch;
use webrtc::peer_connection::{
    MediaEngine, PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler, RTCConfigurationBuilder,
    RTCIceGatheringState, RTCPeerConnectionState, RTCSessionDescription, Registry, SettingEngineBuilder,
    configure_nack, configure_rtcp_reports,
};

/// A share's link split into the HTTP address and the page path (`/s/TOKEN`).
pub fn parse_link(link: &str) -> (SocketAddr, String) {
    let rest = link.strip_prefix("http://").expect("an http:// link");
    let (host, path) = rest.split_at(rest.find('/').expect("a path"));
    (host.parse().expect("host:port"), path.to_owned())
}

/// An HTTP response: status, headers (lower-case names), body.
pub type Response = (u16, Vec<(String, String)>, Vec<u8>);

/// One HTTP/1.1 request (`Connection: close`); the status, the headers
/// (lower-case names) and the body. Blocking (std), run off the runtime's
/// workers by [`http`].
pub fn http_blocking(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<Response> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(10))?;
    s.set_read_timeout(Some(Duration::from_secs(20)))?;
    let mut head =
        format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes())?;
    s.write_all(body)?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or(raw.len());
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let body = raw.get(split + 4..).unwrap_or_default().to_vec();
    let mut lines = head.lines();
    let status = lines.next().and_then(|l| l.split_whitespace().nth(1)).and_then(|c| c.parse().ok()).unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Ok((status, headers, body))
}

/// [`http_blocking`] on tokio's blocking pool.
pub async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<Response> {
    let (method, path, body) = (method.to_owned(), path.to_owned(), body.to_vec());
    let headers: Vec<(String, String)> = headers.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
    tokio::task::spawn_blocking(move || {
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        http_blocking(addr, &method, &path, &headers, &body)
    })
    .await
    .map_err(std::io::Error::other)?
}

/// Follows a server-sent event stream (`GET path`): every line it sends
/// arrives on the channel, which closes when the stream ends.
pub fn follow_events(addr: SocketAddr, path: &str) -> std::sync::mpsc::Receiver<String> {
    use std::io::{BufRead, Write};
    let (tx, rx) = std::sync::mpsc::channel();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n\r\n");
    std::thread::spawn(move || {
        let Ok(mut s) = std::net::TcpStream::connect(addr) else { return };
        if s.write_all(request.as_bytes()).is_err() {
            return;
        }
        for line in std::io::BufReader::new(s).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

/// Waits until `events` delivers a line equal to `wanted`.
pub fn wait_for_line(
    events: &std::sync::mpsc::Receiver<String>,
    wanted: &str,
    timeout: Duration,
) -> Result<(), String> {
    let deadline = std::time::Instant::now() + timeout;
    let mut seen = Vec::new();
    while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
        match events.recv_timeout(left) {
            Ok(line) if line.trim() == wanted => return Ok(()),
            Ok(line) => seen.push(line),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => break,
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                return Err(format!("the stream ended without {wanted:?}: {seen:?}"));
            }
        }
    }
    Err(format!("no {wanted:?} within {timeout:?}: {seen:?}"))
}

struct Events {
    received: Arc<AtomicU64>,
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

    async fn on_track(&self, track: Arc<dyn webrtc::media_stream::track_remote::TrackRemote>) {
        let received = self.received.clone();
        tokio::spawn(async move {
            use webrtc::media_stream::track_remote::TrackRemoteEvent;
            while let Some(event) = track.poll().await {
                if let TrackRemoteEvent::OnRtpPacket(p) = event {
                    received.fetch_add(p.payload.len() as u64, Ordering::Relaxed);
                }
            }
        });
    }
}

/// A light viewer of a share.
pub struct Viewer {
    pc: Arc<dyn PeerConnection>,
    /// RTP payload bytes received.
    pub received: Arc<AtomicU64>,
    state: watch::Receiver<RTCPeerConnectionState>,
    http: SocketAddr,
    resource: String,
}

impl Viewer {
    /// Joins the share behind `link` from `ip` (the address its media
    /// socket binds), with a password if the share has one. Err: the HTTP
    /// status and body when the share refuses the offer.
    pub async fn join(link: &str, ip: &str, password: Option<&str>) -> Result<Self, String> {
        use rtc::ice::mdns::MulticastDnsMode;
        use rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
        use rtc::rtp_transceiver::{RTCRtpTransceiverDirection, RTCRtpTransceiverInit};
        let (addr, path) = parse_link(link);
        let mut media = MediaEngine::default();
        for codec in peep_transport::codecs::h264_codecs() {
            media.register_codec(codec, RtpCodecKind::Video).map_err(|e| e.to_string())?;
        }
        let registry = configure_rtcp_reports(configure_nack(Registry::new(), &mut media));
        let received = Arc::new(AtomicU64::new(0));
        let (gathering_tx, mut gathering) = watch::channel(RTCIceGatheringState::New);
        let (state_tx, state) = watch::channel(RTCPeerConnectionState::New);
        let pc = PeerConnectionBuilder::new()
            .with_configuration(RTCConfigurationBuilder::new().build())
            .with_media_engine(media)
            .with_setting_engine(
                SettingEngineBuilder::new().with_multicast_dns_mode(MulticastDnsMode::Disabled).build(),
            )
            .with_interceptor_registry(registry)
            .with_handler(Arc::new(Events { received: received.clone(), gathering: gathering_tx, state: state_tx }))
            .with_udp_addrs(vec![format!("{ip}:0")])
            .build()
            .await
            .map_err(|e| e.to_string())?;
        let pc: Arc<dyn PeerConnection> = Arc::new(pc);
        let joined = async {
            let init = RTCRtpTransceiverInit { direction: RTCRtpTransceiverDirection::Recvonly, ..Default::default() };
            pc.add_transceiver_from_kind(RtpCodecKind::Video, Some(init)).await.map_err(|e| e.to_string())?;
            let offer = pc.create_offer(None).await.map_err(|e| e.to_string())?;
            pc.set_local_description(offer).await.map_err(|e| e.to_string())?;
            let _ = tokio::time::timeout(
                Duration::from_secs(3),
                gathering.wait_for(|s| *s == RTCIceGatheringState::Complete),
            )
            .await;
            let sdp = pc.local_description().await.ok_or("no local description")?.sdp;
            let bearer = password.map(|p| format!("Bearer {p}"));
            let mut headers = vec![("Content-Type", "application/sdp")];
            if let Some(b) = &bearer {
                headers.push(("Authorization", b));
            }
            let (status, headers, body) = http(addr, "POST", &format!("{path}/whep"), &headers, sdp.as_bytes())
                .await
                .map_err(|e| e.to_string())?;
            if status != 201 {
                return Err(format!("{status}: {}", String::from_utf8_lossy(&body)));
            }
            let resource =
                headers.iter().find(|(k, _)| k == "location").map(|(_, v)| v.clone()).ok_or("201 without Location")?;
            let answer = RTCSessionDescription::answer(String::from_utf8_lossy(&body).into_owned())
                .map_err(|e| e.to_string())?;
            pc.set_remote_description(answer).await.map_err(|e| e.to_string())?;
            Ok::<_, String>(resource)
        }
        .await;
        match joined {
            Ok(resource) => Ok(Self { pc, received, state, http: addr, resource }),
            Err(e) => {
                let _ = pc.close().await;
                Err(e)
            }
        }
    }

    /// The viewer's event stream path (`/s/TOKEN/events/SESSION`).
    pub fn events_path(&self) -> String {
        self.resource.replacen("/whep/", "/events/", 1)
    }

    /// The share's HTTP address.
    pub fn http_addr(&self) -> SocketAddr {
        self.http
    }

    /// Waits until ICE and DTLS completed and media arrived.
    pub async fn wait_for_media(&mut self, timeout: Duration) -> Result<(), String> {
        let wait = async {
            self.state
                .wait_for(|s| matches!(s, RTCPeerConnectionState::Connected | RTCPeerConnectionState::Failed))
                .await
                .map_err(|e| e.to_string())?;
            if *self.state.borrow() == RTCPeerConnectionState::Failed {
                return Err("the connection failed".to_owned());
            }
            while self.received.load(Ordering::Relaxed) == 0 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Ok(())
        };
        tokio::time::timeout(timeout, wait)
            .await
            .map_err(|_| format!("no media within {timeout:?} (state {:?})", *self.state.borrow()))?
    }

    /// Leaves: a WHEP DELETE first when `delete`, then the connection is
    /// closed (without a DELETE the share learns it from DTLS close_notify).
    pub async fn leave(self, delete: bool) -> Result<(), String> {
        if delete {
            let (status, _, body) =
                http(self.http, "DELETE", &self.resource, &[], b"").await.map_err(|e| e.to_string())?;
            if status != 200 {
                return Err(format!("DELETE: {status} {}", String::from_utf8_lossy(&body)));
            }
        }
        self.pc.close().await.map_err(|e| e.to_string())
    }
}
