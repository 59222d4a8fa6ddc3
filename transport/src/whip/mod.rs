//! Publishing the share to a media server with WHIP (RFC 9725), so an
//! audience of any size watches there while the sharer uploads one stream.
//!
//! [`crate::Share::start_publish`] starts it beside the local viewers: the
//! same encode, fan-out, keyframe coalescing and rate control feed it (the
//! server's congestion feedback joins the viewers' estimates; its PLI/FIR go
//! through the coalescer). [`crate::Share::publish_status`] reports its
//! state, and [`crate::Share::stop_publish`] (or ending the share) DELETEs
//! the WHIP resource.
//!
//! * [`protocol`]: what the server's answers mean, retry policy — pure
//!   functions, unit-tested and fuzzed.
//! * `http`: the few requests (POST, PATCH, DELETE) over HTTP or HTTPS.
//! * `publish`: the task: offerer peer connection, POST, frames, ICE
//!   restart via PATCH, publishing again with back-off.
//!
//! The endpoint URL is a [`Secret`] like the token: services such as
//! Cloudflare Stream put the stream key in the URL's path. Only its
//! `host[:port]` is ever shown or logged.

pub mod protocol;

mod http;
mod publish;
mod remb;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub use protocol::{IceServerLink, WhipError, WhipErrorKind};

use crate::hub::{Publish, lock};
use crate::secret::Secret;

/// Where to publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WhipConfig {
    /// The WHIP endpoint URL (it may carry a stream key: never logged).
    pub url: Secret,
    /// Sent as `Authorization: Bearer …` when set.
    pub token: Option<Secret>,
}

/// Where a publish is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PublishState {
    /// Offering, or connecting media.
    Connecting,
    /// Media flowing to the server.
    Live,
    /// Lost or failed; publishing again after a pause.
    Reconnecting,
    /// Given up (wrong token, wrong URL, refused): see the message.
    Failed,
    /// Stopped by the sharer.
    Stopped,
}

impl PublishState {
    /// Every state, in order.
    pub const ALL: [Self; 5] = [Self::Connecting, Self::Live, Self::Reconnecting, Self::Failed, Self::Stopped];

    /// The state in a word, for status lines.
    pub fn word(self) -> &'static str {
        match self {
            Self::Connecting => "connecting",
            Self::Live => "live",
            Self::Reconnecting => "reconnecting",
            Self::Failed => "failed",
            Self::Stopped => "stopped",
        }
    }
}

/// A copy of a publish's state and figures, for display.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct PublishSnapshot {
    /// State.
    pub state: PublishState,
    /// The server, as `host[:port]` (never the whole URL).
    pub server: String,
    /// What went wrong last, in words (while reconnecting or failed).
    pub message: Option<String>,
    /// Time live in the current session.
    pub live_for: Option<Duration>,
    /// Time until the next attempt, while reconnecting.
    pub retry_in: Option<Duration>,
    /// Successful POSTs (1 + re-publishes).
    pub publishes: u64,
    /// ICE restarts done through PATCH.
    pub ice_restarts: u64,
    /// Encoded bytes sent to the server, all sessions.
    pub bytes_sent: u64,
    /// Frames sent to the server, all sessions.
    pub frames_sent: u64,
    /// Round-trip time to the server, if known.
    pub rtt: Option<Duration>,
    /// Congestion estimate for the server (GCC, capped by its REMB), bps.
    pub estimate_bps: u64,
    /// The server's REMB, bps (0: none).
    pub remb_bps: u64,
    /// Keyframe requests (PLI + FIR) from the server, all sessions.
    pub keyframe_requests: u64,
    /// STUN/TURN servers the server offered in `Link` headers.
    pub ice_servers: usize,
}

pub(crate) struct StatusInner {
    state: PublishState,
    message: Option<String>,
    live_since: Option<Instant>,
    retry_at: Option<Instant>,
    pub(crate) ice_servers: usize,
}

/// A publish's state, shared by its task and the [`crate::Share`] handle.
pub(crate) struct PublishStatus {
    pub(crate) server: String,
    pub(crate) inner: Mutex<StatusInner>,
    pub(crate) publishes: AtomicU64,
    pub(crate) ice_restarts: AtomicU64,
    /// The live session's sink (its stats are the current figures).
    pub(crate) current: Mutex<Option<Arc<Publish>>>,
    /// Totals of ended sessions: bytes, frames, keyframe requests.
    retired: [AtomicU64; 3],
}

impl PublishStatus {
    pub(crate) fn new(server: String) -> Self {
        Self {
            server,
            inner: Mutex::new(StatusInner {
                state: PublishState::Connecting,
                message: None,
                live_since: None,
                retry_at: None,
                ice_servers: 0,
            }),
            publishes: AtomicU64::new(0),
            ice_restarts: AtomicU64::new(0),
            current: Mutex::new(None),
            retired: Default::default(),
        }
    }

    pub(crate) fn set(&self, state: PublishState, message: Option<String>, retry_at: Option<Instant>) {
        let mut s = lock(&self.inner);
        if state == PublishState::Live && s.state != PublishState::Live {
            s.live_since = Some(Instant::now());
        } else if state != PublishState::Live {
            s.live_since = None;
        }
        s.state = state;
        s.message = message;
        s.retry_at = retry_at;
    }

    pub(crate) fn state(&self) -> PublishState {
        lock(&self.inner).state
    }

    pub(crate) fn message(&self) -> Option<String> {
        lock(&self.inner).message.clone()
    }

    /// A session ended: keep its totals.
    pub(crate) fn retire(&self, publish: &Arc<Publish>) {
        let mut current = lock(&self.current);
        if current.as_ref().is_some_and(|c| Arc::ptr_eq(c, publish)) {
            *current = None;
        }
        let s = &publish.sink.stats;
        let totals = [
            s.bytes_sent.load(Ordering::Relaxed),
            s.frames_sent.load(Ordering::Relaxed),
            s.pli.load(Ordering::Relaxed) + s.fir.load(Ordering::Relaxed),
        ];
        for (r, v) in self.retired.iter().zip(totals) {
            r.fetch_add(v, Ordering::Relaxed);
        }
    }

    pub(crate) fn snapshot(&self) -> PublishSnapshot {
        let now = Instant::now();
        let (state, message, live_since, retry_at, ice_servers) = {
            let s = lock(&self.inner);
            (s.state, s.message.clone(), s.live_since, s.retry_at, s.ice_servers)
        };
        let current = lock(&self.current).clone();
        let retired = |i: usize| self.retired[i].load(Ordering::Relaxed);
        let (mut bytes, mut frames, mut keyframes) = (retired(0), retired(1), retired(2));
        let (mut rtt, mut estimate_bps, mut remb_bps) = (None, 0, 0);
        if let Some(p) = &current {
            let s = &p.sink.stats;
            bytes += s.bytes_sent.load(Ordering::Relaxed);
            frames += s.frames_sent.load(Ordering::Relaxed);
            keyframes += s.pli.load(Ordering::Relaxed) + s.fir.load(Ordering::Relaxed);
            let rtt_us = s.rtt_us.load(Ordering::Relaxed);
            rtt = (rtt_us > 0).then(|| Duration::from_micros(rtt_us));
            estimate_bps = p.estimate_bps();
            remb_bps = p.remb_bps.load(Ordering::Relaxed);
        }
        PublishSnapshot {
            state,
            server: self.server.clone(),
            message,
            live_for: live_since.map(|t| now.saturating_duration_since(t)),
            retry_in: retry_at.map(|t| t.saturating_duration_since(now)),
            publishes: self.publishes.load(Ordering::Relaxed),
            ice_restarts: self.ice_restarts.load(Ordering::Relaxed),
            bytes_sent: bytes,
            frames_sent: frames,
            rtt,
            estimate_bps,
            remb_bps,
            keyframe_requests: keyframes,
            ice_servers,
        }
    }
}

/// A running publish, owned by the [`crate::Share`].
pub(crate) struct PublishHandle {
    pub(crate) status: Arc<PublishStatus>,
    pub(crate) stop: tokio::sync::watch::Sender<bool>,
    pub(crate) task: tokio::task::JoinHandle<()>,
    pub(crate) restart_ice: Arc<tokio::sync::Notify>,
}

impl PublishHandle {
    /// Starts the publish task on `runtime`.
    pub(crate) fn start(
        runtime: &tokio::runtime::Runtime,
        shared: Arc<crate::hub::Shared>,
        config: WhipConfig,
    ) -> Result<Self, WhipError> {
        let endpoint = protocol::parse_endpoint(config.url.expose())?;
        let status = Arc::new(PublishStatus::new(protocol::display_host(&endpoint)));
        let (stop, stop_rx) = tokio::sync::watch::channel(false);
        let restart_ice = Arc::new(tokio::sync::Notify::new());
        let task = runtime.spawn(publish::run(shared, status.clone(), config, stop_rx, restart_ice.clone()));
        Ok(Self { status, stop, task, restart_ice })
    }

    /// Stops the task: it DELETEs the resource and closes the connection
    /// (waits at most `timeout`).
    pub(crate) fn stop(self, runtime: &tokio::runtime::Runtime, timeout: Duration) {
        let _ = self.stop.send(true);
        let task = self.task;
        runtime.block_on(async move {
            let _ = tokio::time::timeout(timeout, task).await;
        });
    }
}
