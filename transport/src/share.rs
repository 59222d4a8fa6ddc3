//! A running share: the HTTP server, the viewers, and the fan-out of each
//! codec's encoded stream to that codec's viewers.
//!
//! Each viewer gets one codec, negotiated from its offer (H.264 first, VP8
//! for browsers without H.264; see [`crate::codecs`]). The app runs one
//! encode per codec in [`Share::codecs_in_use`], pushes each encoded frame
//! with [`Share::send_encoded`] (sync, never blocks) and forwards
//! [`EncoderRequest`]s from [`Share::encoder_requests`] to the encoder of
//! the codec they name.
//!
//! Fan-out: the frame's bytes are copied once into a reference-counted
//! buffer and queued to every connected viewer of its codec through a
//! bounded channel of [`VIEWER_QUEUE_FRAMES`]. **Policy when a viewer's
//! queue is full:** the frame is dropped for that viewer only, and the
//! viewer is marked as needing a keyframe (its following frames are skipped
//! until one arrives, so its decoder never sees a broken reference chain).
//! The keyframe is requested once its queue has drained to half (checked
//! every 50 ms): asking at once would queue a large IDR behind a backlog on
//! a link that is already too slow, overflow again, and start a keyframe
//! storm. A viewer that stops reading or vanishes therefore never stalls the
//! others; ICE consent failure then closes it and frees its resources.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::auth::new_token;
use crate::codecs::{CodecSet, DEFAULT_PREFERENCE, VideoCodec};
use crate::error::{Result, TransportError};
pub use crate::hub::{ENCODER_REQUEST_CAPACITY, EncoderRequest, ShareStats, VIEWER_QUEUE_FRAMES};
use crate::hub::{Frame, Notice, Shared, lock};
use crate::rate::BitrateRange;
use crate::secret::Secret;
use crate::viewer::{ViewerSnapshot, ViewerState};
use crate::whip::{PublishHandle, PublishSnapshot, PublishState, WhipConfig};

/// How long stopping a WHIP publish may take (its DELETE included).
pub const PUBLISH_STOP_TIMEOUT: Duration = Duration::from_secs(3);

/// How to run a share.
#[derive(Debug, Clone)]
pub struct ShareConfig {
    /// Address the HTTP server binds (`0.0.0.0` for every interface).
    pub bind: IpAddr,
    /// HTTP port; 0 picks a free one.
    pub port: u16,
    /// Host name or address to print in the link; detected when `None`.
    pub public_host: Option<String>,
    /// Viewers must send this password (as `Authorization: Bearer …`).
    pub password: Option<Secret>,
    /// Most viewers at once.
    pub max_viewers: usize,
    /// Congestion control keeps the encoder inside this range.
    pub bitrate: BitrateRange,
    /// Worker threads of the network runtime.
    pub threads: usize,
    /// Codecs to offer viewers, best first (empty: the default, H.264 then
    /// VP8). A viewer gets the first its browser can receive.
    pub codecs: Vec<VideoCodec>,
    /// Fault injection for tests: withhold keyframes from each new viewer
    /// until its decoder asks for one (PLI or FIR).
    #[doc(hidden)]
    pub fault_drop_first_keyframe: bool,
    /// Share over the internet through this relay (`peep relay`): the link
    /// becomes the relay's, and peer connections use its STUN/TURN servers.
    pub relay: Option<crate::relay::RelayClientConfig>,
    /// "Ask to join": each viewer waits until admitted ([`Share::admit`]).
    pub admit: bool,
}

impl Default for ShareConfig {
    fn default() -> Self {
        Self {
            bind: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            port: 8080,
            public_host: None,
            password: None,
            max_viewers: 16,
            bitrate: BitrateRange::new(1_000_000, 4_000_000),
            threads: 2,
            codecs: DEFAULT_PREFERENCE.to_vec(),
            fault_drop_first_keyframe: false,
            relay: None,
            admit: false,
        }
    }
}

/// A running share. Dropping it ends the share (see [`Share::shutdown`]).
pub struct Share {
    shared: Arc<Shared>,
    requests: crossbeam_channel::Receiver<EncoderRequest>,
    runtime: Option<tokio::runtime::Runtime>,
    stop_server: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<()>>,
    runtime_handle: tokio::runtime::Handle,
    local_addr: SocketAddr,
    link: String,
    whep: String,
    lan_link: String,
    relay: Option<RelayHandle>,
    publish: Arc<std::sync::Mutex<Option<PublishHandle>>>,
}

/// The relay client's handles.
struct RelayHandle {
    status: tokio::sync::watch::Receiver<crate::relay::RelayStatus>,
    commands: mpsc::Sender<crate::relay::client::Command>,
    task: tokio::task::JoinHandle<()>,
}

/// How long [`Share::start`] waits for the relay to give a room.
pub const RELAY_START_TIMEOUT: Duration = Duration::from_secs(20);

impl std::fmt::Debug for Share {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The link carries the token: keep it out of debug output.
        f.debug_struct("Share").field("local_addr", &self.local_addr).finish_non_exhaustive()
    }
}

/// The address of the interface with the default route, found without
/// sending anything (a UDP "connect" only picks a route), or loopback.
pub fn detect_lan_ip() -> IpAddr {
    let probe = || -> std::io::Result<IpAddr> {
        let socket = std::net::UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))?;
        // 192.0.2.1 is TEST-NET-1 (RFC 5737): nothing is sent to it.
        socket.connect((Ipv4Addr::new(192, 0, 2, 1), 9))?;
        Ok(socket.local_addr()?.ip())
    };
    probe().ok().filter(|ip| !ip.is_unspecified()).unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST))
}

impl Share {
    /// Starts the network runtime and the HTTP server.
    pub fn start(config: ShareConfig) -> Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(config.threads.max(1))
            .thread_name("peep-net")
            .enable_all()
            .build()
            .map_err(|e| TransportError::Runtime(e.to_string()))?;
        let lan_ip = detect_lan_ip();
        // Media sockets bind explicit addresses: a wildcard bind skips loopback.
        // (Through a relay, viewers are elsewhere: no loopback socket, whose
        // TURN allocations could never succeed.)
        let udp_ips = if config.bind.is_unspecified() {
            let mut ips = vec![lan_ip];
            if !lan_ip.is_loopback() && config.relay.is_none() {
                ips.push(IpAddr::V4(Ipv4Addr::LOCALHOST));
            }
            ips
        } else {
            vec![config.bind]
        };
        let (requests_tx, requests) = crossbeam_channel::bounded(ENCODER_REQUEST_CAPACITY);
        let mut preference: Vec<VideoCodec> = Vec::new();
        for c in if config.codecs.is_empty() { &DEFAULT_PREFERENCE[..] } else { &config.codecs[..] } {
            if !preference.contains(c) {
                preference.push(*c);
            }
        }
        let shared = Arc::new(
            Shared::new(
                Secret::new(new_token()?),
                config.password,
                config.max_viewers,
                config.bitrate,
                requests_tx,
                udp_ips,
                config.fault_drop_first_keyframe,
            )
            .with_preference(preference),
        );
        for codec in VideoCodec::ALL {
            shared.stats.set_target(codec, shared.start_bps(codec));
        }
        lock(&shared.admission).on = config.admit;
        let addr = SocketAddr::new(config.bind, config.port);
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind(addr))
            .map_err(|e| TransportError::Bind { addr, reason: e.to_string() })?;
        let local_addr = listener.local_addr().map_err(|e| TransportError::Bind { addr, reason: e.to_string() })?;
        let host = config.public_host.unwrap_or_else(|| {
            let ip = if config.bind.is_unspecified() { lan_ip } else { config.bind };
            match ip {
                IpAddr::V6(v6) => format!("[{v6}]"),
                IpAddr::V4(v4) => v4.to_string(),
            }
        });
        let lan_link = format!("http://{host}:{}/s/{}", local_addr.port(), shared.token.expose());
        let mut link = lan_link.clone();
        let mut whep = format!("{link}/whep");
        tracing::info!(addr = %local_addr, max_viewers = config.max_viewers, password = shared.password_set(), "share started");
        let (stop_server, stopped) = tokio::sync::oneshot::channel();
        let server = runtime.spawn(crate::server::serve(listener, shared.clone(), stopped));
        {
            let shared = shared.clone();
            runtime.spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_millis(50));
                loop {
                    tick.tick().await;
                    shared.tick(Instant::now());
                }
            });
        }
        runtime.spawn(crate::path::watch(shared.clone()));
        let relay = match config.relay {
            Some(relay_config) => {
                let (status_tx, mut status) = tokio::sync::watch::channel(crate::relay::RelayStatus::Connecting);
                let (commands, command_rx) = mpsc::channel(16);
                let task =
                    runtime.spawn(crate::relay::client::run(shared.clone(), relay_config, status_tx, command_rx));
                let first = runtime.block_on(async {
                    let settled = status.wait_for(|s| !matches!(s, crate::relay::RelayStatus::Connecting));
                    match tokio::time::timeout(RELAY_START_TIMEOUT, settled).await {
                        Ok(Ok(s)) => s.clone(),
                        Ok(Err(_)) => crate::relay::RelayStatus::Failed("relay client stopped".into()),
                        Err(_) => crate::relay::RelayStatus::Failed(format!(
                            "relay unreachable: no room within {} s",
                            RELAY_START_TIMEOUT.as_secs()
                        )),
                    }
                });
                match first {
                    crate::relay::RelayStatus::Connected { link: relay_link, whep: relay_whep, .. } => {
                        link = relay_link.expose().to_owned();
                        whep = relay_whep.expose().to_owned();
                    }
                    other => {
                        task.abort();
                        shared.ending.store(true, Ordering::Release);
                        let _ = stop_server.send(());
                        runtime.shutdown_timeout(Duration::from_secs(1));
                        let words = match other {
                            crate::relay::RelayStatus::Failed(w) => w,
                            s => format!("{s:?}"),
                        };
                        return Err(if words.starts_with("relay refused") {
                            TransportError::RelayRefused(words.trim_start_matches("relay refused: ").to_owned())
                        } else {
                            TransportError::RelayUnreachable(words.trim_start_matches("relay unreachable: ").to_owned())
                        });
                    }
                }
                Some(RelayHandle { status, commands, task })
            }
            None => None,
        };
        Ok(Self {
            shared,
            requests,
            runtime_handle: runtime.handle().clone(),
            runtime: Some(runtime),
            stop_server: Some(stop_server),
            server: Some(server),
            local_addr,
            link,
            whep,
            lan_link,
            relay,
            publish: Arc::new(std::sync::Mutex::new(None)),
        })
    }

    /// The link to give viewers (it carries the secret token; through a
    /// relay, the room).
    pub fn link(&self) -> &str {
        &self.link
    }

    /// The link on this network (the share's own server), also when sharing
    /// through a relay.
    pub fn lan_link(&self) -> &str {
        &self.lan_link
    }

    /// The WHEP endpoint for other players.
    pub fn whep_url(&self) -> String {
        self.whep.clone()
    }

    /// The relay connection's state (`None` for a LAN-only share).
    pub fn relay_status(&self) -> Option<crate::relay::RelayStatus> {
        self.relay.as_ref().map(|r| r.status.borrow().clone())
    }

    /// When the TURN credentials in use expire (Unix seconds; 0: none).
    pub fn ice_expires_unix(&self) -> u64 {
        lock(&self.shared.ice).expires_unix
    }

    /// Turns "ask to join" on or off; turning it off admits everyone waiting.
    pub fn set_admit(&self, on: bool) {
        let mut admission = lock(&self.shared.admission);
        admission.on = on;
        if !on {
            admission.decide_all(true);
        }
        if let Some(r) = &self.relay {
            let _ = r.commands.try_send(crate::relay::client::Command::Settings { admit: on });
        }
    }

    /// Viewers waiting to be let in, oldest first.
    pub fn knocks(&self) -> Vec<crate::admission::Knock> {
        lock(&self.shared.admission).list(Instant::now())
    }

    /// Lets a waiting viewer in (`true`) or turns it away. False if it is
    /// no longer waiting.
    pub fn admit(&self, knock: u64, let_in: bool) -> bool {
        lock(&self.shared.admission).decide(knock, let_in)
    }

    /// The address the HTTP server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Requests for the encoders (keyframes, bitrate), each naming its codec.
    pub fn encoder_requests(&self) -> &crossbeam_channel::Receiver<EncoderRequest> {
        &self.requests
    }

    /// The codecs connected viewers watch: the encodes the app should run.
    /// A codec enters with its first connected viewer and leaves with its last.
    pub fn codecs_in_use(&self) -> CodecSet {
        self.shared.codecs_in_use()
    }

    /// The codecs offered to viewers, best first.
    pub fn codec_preference(&self) -> &[VideoCodec] {
        &self.shared.preference
    }

    /// Share-wide counters.
    pub fn stats(&self) -> &ShareStats {
        &self.shared.stats
    }

    /// A Prometheus collector of the share's figures, read at scrape time
    /// (see [`crate::metrics`]); it keeps working after the share ended.
    pub fn metrics(&self) -> crate::metrics::ShareMetrics {
        let publish = self.publish.clone();
        crate::metrics::ShareMetrics::new(
            self.shared.clone(),
            self.runtime_handle.clone(),
            Arc::new(move || lock(&publish).as_ref().map(|p| p.status.snapshot())),
        )
    }

    /// Tasks alive on the share's network runtime (viewers, server
    /// connections, timers): returns to its idle value when viewers leave.
    pub fn tasks_alive(&self) -> usize {
        self.runtime_handle.metrics().num_alive_tasks()
    }

    /// The share's figures as JSON (the metrics listener's `/stats`):
    /// share-wide counters, every viewer's snapshot without its session id,
    /// and the WHIP publish's state. No secret is in it.
    pub fn stats_json(&self) -> serde_json::Value {
        self.metrics().stats_json()
    }

    /// The send backlog `codec`'s encoder should respect (the longest send
    /// queue among that codec's viewers the rate follows), updated every
    /// 50 ms. The encoder skips frames while it is long (see
    /// `peep_encode::budget`).
    pub fn send_backlog(&self, codec: VideoCodec) -> crate::rate::SendBacklog {
        self.shared.backlogs[codec.index()].clone()
    }

    /// Sends one encoded H.264 frame (Annex-B) to every connected H.264
    /// viewer: [`Share::send_encoded`] with [`VideoCodec::H264`].
    pub fn send_frame(&self, data: &[u8], keyframe: bool, captured_at: Instant) {
        self.send_encoded(VideoCodec::H264, data, keyframe, captured_at);
    }

    /// Sends one encoded frame of `codec` (H.264 Annex-B, or one VP8/VP9
    /// frame) to every connected viewer of that codec. Never blocks; see the
    /// module docs for what happens to slow viewers.
    pub fn send_encoded(&self, codec: VideoCodec, data: &[u8], keyframe: bool, captured_at: Instant) {
        let shared = &self.shared;
        shared.stats.frames_in.fetch_add(1, Ordering::Relaxed);
        let now = Instant::now();
        if keyframe {
            lock(&shared.keyframes)[codec.index()].keyframe_sent(now);
        }
        let frame = Frame { data: Bytes::copy_from_slice(data), captured_at };
        for v in lock(&shared.viewers).values() {
            if v.codec == codec {
                offer_frame(v, &frame, keyframe);
            }
        }
        for p in lock(&shared.publishes).iter() {
            if p.sink.codec == codec {
                offer_frame(&p.sink, &frame, keyframe);
            }
        }
    }

    /// How many viewers are connected (cheap: no allocation).
    pub fn connected_viewers(&self) -> usize {
        lock(&self.shared.viewers).values().filter(|v| v.stats.state() == ViewerState::Connected).count()
    }

    /// The viewers and their stats.
    pub fn viewers(&self) -> Vec<ViewerSnapshot> {
        self.shared.snapshots()
    }

    /// Removes a viewer; its page is told it was removed. Returns false if
    /// no such viewer.
    pub fn kick(&self, id: &str) -> bool {
        let Some(v) = self.shared.remove_viewer(id) else { return false };
        let _ = v.notice.send(Notice::Kicked);
        if let Some(rt) = &self.runtime {
            rt.spawn(async move {
                // Give the page's event stream a moment to deliver the notice.
                tokio::time::sleep(Duration::from_millis(100)).await;
                v.peer.close().await;
            });
        }
        true
    }

    /// Fault injection for tests: drops a viewer's connection without
    /// telling its page (as a network failure would).
    #[doc(hidden)]
    pub fn drop_connection(&self, id: &str) -> bool {
        let Some(v) = self.shared.remove_viewer(id) else { return false };
        if let Some(rt) = &self.runtime {
            rt.spawn(async move { v.peer.close().await });
        }
        true
    }

    /// Changes the password (`None` to remove it); applies to new viewers.
    pub fn set_password(&self, password: Option<Secret>) {
        *lock(&self.shared.password) = password.filter(|p| !p.is_empty());
    }

    /// Changes the viewer limit; applies to new viewers.
    pub fn set_max_viewers(&self, max: usize) {
        self.shared.max_viewers.store(max.max(1), Ordering::Relaxed);
    }

    /// Changes the bitrate range (a quality preset change), for every codec.
    pub fn set_bitrate_range(&self, range: BitrateRange) {
        let now = Instant::now();
        for codec in VideoCodec::ALL {
            if let Some(bps) = lock(&self.shared.rate)[codec.index()].set_range(range, now) {
                self.shared.stats.set_target(codec, bps);
                let _ = self.shared.requests.try_send(EncoderRequest::SetBitrate(codec, bps));
            }
        }
    }

    /// Starts publishing the share to a WHIP server (RFC 9725), beside the
    /// local viewers; a running publish is stopped first. The publish runs
    /// until [`Share::stop_publish`] or the end of the share, publishing
    /// again with back-off when the connection is lost; it gives up only on
    /// errors that will not go away by themselves before it first went live
    /// (wrong token, wrong URL). Errors here are only an unusable URL.
    pub fn start_publish(&self, config: WhipConfig) -> Result<()> {
        let Some(runtime) = &self.runtime else { return Err(TransportError::Runtime("the share has ended".into())) };
        self.stop_publish();
        let handle = PublishHandle::start(runtime, self.shared.clone(), config).map_err(TransportError::Whip)?;
        *lock(&self.publish) = Some(handle);
        Ok(())
    }

    /// Stops the WHIP publish, if any: DELETEs its resource on the server
    /// and closes the connection (waits at most [`PUBLISH_STOP_TIMEOUT`]).
    pub fn stop_publish(&self) {
        let handle = lock(&self.publish).take();
        if let (Some(handle), Some(runtime)) = (handle, &self.runtime) {
            handle.stop(runtime, PUBLISH_STOP_TIMEOUT);
        }
    }

    /// The WHIP publish's state and figures, if one was started.
    pub fn publish_status(&self) -> Option<PublishSnapshot> {
        lock(&self.publish).as_ref().map(|p| p.status.snapshot())
    }

    /// Whether a WHIP publish is live (the pipeline must run for it).
    pub fn publishing(&self) -> bool {
        lock(&self.publish).as_ref().is_some_and(|p| p.status.state() == PublishState::Live)
    }

    /// Test hook: restarts the publish's ICE through a PATCH now.
    #[doc(hidden)]
    pub fn publish_restart_ice(&self) {
        if let Some(p) = lock(&self.publish).as_ref() {
            p.restart_ice.notify_one();
        }
    }

    /// Ends the share: tells every viewer's page, closes the connections and
    /// stops the server. Also done on drop.
    pub fn shutdown(mut self) {
        self.shutdown_inner();
    }

    fn shutdown_inner(&mut self) {
        // The publish first: its DELETE needs the runtime.
        self.stop_publish();
        let Some(runtime) = self.runtime.take() else { return };
        self.shared.ending.store(true, Ordering::Release);
        lock(&self.shared.admission).decide_all(false);
        let relay = self.relay.take();
        let viewers: Vec<_> = lock(&self.shared.viewers).drain().map(|(_, v)| v).collect();
        let told = viewers.len();
        for v in &viewers {
            let _ = v.notice.send(Notice::Ended);
        }
        let stop = self.stop_server.take();
        let server = self.server.take();
        runtime.block_on(async move {
            // Let the event streams deliver "ended" before connections close.
            tokio::time::sleep(Duration::from_millis(150)).await;
            for v in &viewers {
                v.stats.set_state(ViewerState::Closed);
                v.peer.close().await;
            }
            if let Some(relay) = relay {
                // The relay tells every page "ended" and forgets the room.
                let _ = relay.commands.send(crate::relay::client::Command::Bye).await;
                let mut task = relay.task;
                if tokio::time::timeout(Duration::from_secs(2), &mut task).await.is_err() {
                    task.abort();
                }
            }
            if let Some(stop) = stop {
                let _ = stop.send(());
            }
            if let Some(server) = server {
                let _ = tokio::time::timeout(Duration::from_secs(2), server).await;
            }
        });
        runtime.shutdown_timeout(Duration::from_secs(1));
        tracing::info!(viewers_told = told, "share ended");
    }
}

impl Drop for Share {
    fn drop(&mut self) {
        self.shutdown_inner();
    }
}

/// Queues one frame for one receiver (a viewer or a WHIP publish); see the
/// module docs for the policy when its queue is full.
fn offer_frame(v: &crate::hub::Viewer, frame: &Frame, keyframe: bool) {
    let s = &v.stats;
    if s.state() != ViewerState::Connected {
        return;
    }
    if keyframe && v.fault_drop_keyframe.load(Ordering::Relaxed) {
        if s.pli.load(Ordering::Relaxed) + s.fir.load(Ordering::Relaxed) == 0 {
            // Send what follows, undecodable without this keyframe.
            s.needs_keyframe.store(false, Ordering::Relaxed);
            return;
        }
        v.fault_drop_keyframe.store(false, Ordering::Relaxed);
    }
    if !keyframe && s.needs_keyframe.load(Ordering::Relaxed) {
        s.frames_skipped.fetch_add(1, Ordering::Relaxed);
        return;
    }
    if s.pacer_queue() > crate::hub::VIEWER_DROP_QUEUE && !v.governing.load(Ordering::Relaxed) {
        // Its link is far slower than the rate (it is not the one the
        // encoder follows): skip frames until a keyframe.
        s.frames_dropped.fetch_add(1, Ordering::Relaxed);
        s.needs_keyframe.store(true, Ordering::Relaxed);
        v.recovering.store(true, Ordering::Relaxed);
        return;
    }
    match v.queue.try_send(frame.clone()) {
        Ok(()) => {
            if keyframe {
                s.needs_keyframe.store(false, Ordering::Relaxed);
                v.recovering.store(false, Ordering::Relaxed);
            }
        }
        Err(mpsc::error::TrySendError::Full(_)) => {
            s.frames_dropped.fetch_add(1, Ordering::Relaxed);
            s.needs_keyframe.store(true, Ordering::Relaxed);
            v.recovering.store(true, Ordering::Relaxed);
        }
        Err(mpsc::error::TrySendError::Closed(_)) => {}
    }
}
