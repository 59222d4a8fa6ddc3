//! `peep relay`: rooms for sharers behind NATs, WHEP for their viewers.
//!
//! | method | path | what |
//! |---|---|---|
//! | GET (WebSocket) | `/relay/v1` | a sharer's connection (see `docs/relay-protocol.md`) |
//! | GET | `/r/{room}` | the viewer page, with ICE servers in a `<meta>` |
//! | POST | `/r/{room}/whep` | WHEP offer, forwarded to the sharer; `201` + `Location` + `Link` ICE servers |
//! | DELETE | `/r/{room}/whep/{session}` | leave (forwarded) |
//! | OPTIONS | `/r/{room}/whep[/{session}]` | CORS + `Link` ICE servers + `X-Peep-Admission` |
//! | GET | `/r/{room}/events/{session}` | server-sent events: `kicked`, `ended` |
//! | GET | `/assets/{file}` | the page's script and style |
//! | GET | `/relay/stats` | counters (no room ids) |
//!
//! The relay never sees media (unless a TURN server runs beside it) and
//! never checks passwords: it routes by room id and forwards. Its logic is
//! in [`super::rooms::Rooms`]; this module is the I/O around it. Room ids,
//! owner secrets, passwords and TURN credentials never reach its logs.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures_util::{SinkExt as _, StreamExt as _};
use tokio::sync::{broadcast, mpsc, oneshot, watch};

use super::listener::{ClientAddr, ListenerLimits, PerIp, RelayListener};
use super::protocol::{self, ErrorCode, IceConfig, Method, RelayMessage, SharerMessage, ViewerNotice};
use super::rooms::{
    ConnId, Counters, Event, Limits, OwnerSecret, Refusal, RequestId, RequestKind, RoomId, RoomView, Rooms,
};
use super::turn::{self, IceSettings};
use crate::error::{Result, TransportError};
use crate::hub::lock;
use crate::server::{INVALID_HTML, VIEWER_HTML, asset, cors, page, preflight_response, refused_response, text};

/// How long a new sharer connection may take to say hello.
pub const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// Messages queued to one sharer. Policy when full: the sharer is not
/// reading (stalled): its connection is closed, its requests fail, and its
/// room waits for it to reconnect.
pub const SHARER_QUEUE: usize = 64;
/// A send to a sharer blocked this long means it stalled (default of
/// [`RelayConfig::stall_timeout`]).
pub const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// Malformed messages tolerated on one connection before it is closed.
pub const MAX_BAD_MESSAGES: u32 = 8;
/// Heartbeat period asked of sharers.
pub const HEARTBEAT: Duration = Duration::from_secs(10);
/// Room events queued per room (kicks, ended). Policy when full: the
/// oldest are dropped for a lagging page (it then reconnects its stream).
const ROOM_EVENTS: usize = 16;
/// Where `poll` runs.
const POLL_PERIOD: Duration = Duration::from_millis(200);

/// The `<meta>` in the viewer page the relay fills with ICE servers.
const ICE_META: &str = r#"<meta name="peep-ice-servers" content="">"#;

/// How to run a relay.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// Address to listen on.
    pub bind: SocketAddr,
    /// The URL viewers and sharers use (`https://relay.example.org`); the
    /// links it prints start with it. Default: from the bind address.
    pub public_url: Option<String>,
    /// PEM certificate chain and key for HTTPS.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// STUN/TURN servers handed out, and the TURN secret.
    pub ice: IceSettings,
    /// Room and rate limits.
    pub limits: Limits,
    /// Connections per address.
    pub connections_per_ip: usize,
    /// Idle timeout of any connection.
    pub idle_timeout: Duration,
    /// Take the viewer's address from `X-Forwarded-For` (only behind your
    /// own reverse proxy, which must set it).
    pub trust_forwarded_for: bool,
    /// Worker threads.
    pub threads: usize,
    /// A sharer that does not take a message for this long has stalled: its
    /// connection is closed (its room waits for it to reconnect).
    pub stall_timeout: Duration,
    /// Run a TURN server inside the relay too (UDP); its URL is added to
    /// the ICE servers handed out, with credentials from `ice.secret` (a
    /// random one when unset).
    pub builtin_turn: Option<super::builtin_turn::BuiltinTurnConfig>,
}

impl Default for RelayConfig {
    fn default() -> Self {
        Self {
            bind: SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 8443),
            public_url: None,
            tls: None,
            ice: IceSettings { ttl: turn::DEFAULT_TTL, ..IceSettings::default() },
            limits: Limits::default(),
            connections_per_ip: 64,
            idle_timeout: Duration::from_secs(60),
            trust_forwarded_for: false,
            threads: 2,
            stall_timeout: SEND_TIMEOUT,
            builtin_turn: None,
        }
    }
}

/// What a viewer's page is told through the relay.
#[derive(Debug, Clone)]
enum RoomEvent {
    Kicked(Arc<str>),
    SessionEnded(Arc<str>),
    Ended(&'static str),
}

/// How a forwarded request ended.
#[derive(Debug)]
enum Answer {
    Sharer(protocol::Response),
    Failed(Refusal),
    Timeout,
}

struct SharerHandle {
    tx: mpsc::Sender<RelayMessage>,
    close: watch::Sender<Option<(ErrorCode, &'static str)>>,
}

struct RelayState {
    core: Mutex<Rooms>,
    sharers: Mutex<HashMap<ConnId, SharerHandle>>,
    waiters: Mutex<HashMap<RequestId, oneshot::Sender<Answer>>>,
    events: Mutex<HashMap<RoomId, broadcast::Sender<RoomEvent>>>,
    public_url: String,
    origin: String,
    ice: IceSettings,
    trust_forwarded_for: bool,
    stall_timeout: Duration,
    next_conn: AtomicU64,
    stop: watch::Receiver<bool>,
    per_ip: Arc<PerIp>,
}

type AppState = Arc<RelayState>;

/// A running relay. Dropping it shuts it down.
pub struct Relay {
    state: Arc<RelayState>,
    turn: Option<super::builtin_turn::BuiltinTurn>,
    runtime: Option<tokio::runtime::Runtime>,
    stop: watch::Sender<bool>,
    server: Option<tokio::task::JoinHandle<()>>,
    local_addr: SocketAddr,
}

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay").field("local_addr", &self.local_addr).finish_non_exhaustive()
    }
}

/// `scheme://host[:port]` of a URL.
fn origin_of(url: &str) -> String {
    match url.find("://") {
        Some(i) => {
            let rest = &url[i + 3..];
            let end = rest.find('/').unwrap_or(rest.len());
            format!("{}{}", &url[..i + 3], &rest[..end]).to_ascii_lowercase()
        }
        None => url.to_ascii_lowercase(),
    }
}

impl Relay {
    /// Binds and starts serving.
    pub fn start(mut config: RelayConfig) -> Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(config.threads.max(1))
            .thread_name("peep-relay")
            .enable_all()
            .build()
            .map_err(|e| TransportError::Runtime(e.to_string()))?;
        let tls = match &config.tls {
            Some((cert, key)) => Some(super::listener::tls_config(cert, key)?),
            None => None,
        };
        let addr = config.bind;
        let tcp = runtime
            .block_on(tokio::net::TcpListener::bind(addr))
            .map_err(|e| TransportError::Bind { addr, reason: e.to_string() })?;
        let local_addr = tcp.local_addr().map_err(|e| TransportError::Bind { addr, reason: e.to_string() })?;
        let public_url = config.public_url.clone().map_or_else(
            || {
                let ip = if addr.ip().is_unspecified() { crate::share::detect_lan_ip() } else { addr.ip() };
                let scheme = if tls.is_some() { "https" } else { "http" };
                format!("{scheme}://{}", SocketAddr::new(ip, local_addr.port()))
            },
            |u| u.trim_end_matches('/').to_owned(),
        );
        let turn = match &config.builtin_turn {
            Some(turn_config) => {
                let secret = match &config.ice.secret {
                    Some(s) => s.clone(),
                    None => crate::Secret::new(crate::auth::random_hex(32)?),
                };
                let host = origin_of(&public_url);
                let realm = host.rsplit("://").next().unwrap_or("peep").split(':').next().unwrap_or("peep").to_owned();
                let server =
                    runtime.block_on(super::builtin_turn::BuiltinTurn::start(turn_config, secret.clone(), &realm))?;
                let at = SocketAddr::new(turn_config.public_ip, server.local_addr.port());
                config.ice.secret = Some(secret);
                config.ice.turn_urls.push(format!("turn:{at}?transport=udp"));
                if config.ice.stun_urls.is_empty() {
                    config.ice.stun_urls.push(format!("stun:{at}"));
                }
                Some(server)
            }
            None => None,
        };
        let (stop, stop_rx) = watch::channel(false);
        let per_ip = Arc::new(PerIp::default());
        let state = Arc::new(RelayState {
            core: Mutex::new(Rooms::new(config.limits.clone())),
            sharers: Mutex::new(HashMap::new()),
            waiters: Mutex::new(HashMap::new()),
            events: Mutex::new(HashMap::new()),
            origin: origin_of(&public_url),
            public_url,
            ice: config.ice.clone(),
            trust_forwarded_for: config.trust_forwarded_for,
            stall_timeout: config.stall_timeout,
            next_conn: AtomicU64::new(1),
            stop: stop_rx.clone(),
            per_ip: per_ip.clone(),
        });
        // Behind a reverse proxy every connection comes from the proxy: the
        // per-address connection limit is the proxy's job then.
        let per_ip_limit = if config.trust_forwarded_for { usize::MAX } else { config.connections_per_ip.max(1) };
        let limits = ListenerLimits { per_ip: per_ip_limit, idle: config.idle_timeout };
        let listener = {
            let _guard = runtime.enter();
            RelayListener::start(tcp, tls, limits, per_ip, stop_rx.clone())
                .map_err(|e| TransportError::Bind { addr, reason: e.to_string() })?
        };
        let app = router(state.clone());
        let mut shutdown = stop_rx.clone();
        let server = runtime.spawn(async move {
            let served = axum::serve(listener, app.into_make_service_with_connect_info::<ClientAddr>())
                .with_graceful_shutdown(async move {
                    stopped(&mut shutdown).await;
                })
                .await;
            if let Err(e) = served {
                tracing::warn!("relay HTTP server stopped: {e}");
            }
        });
        runtime.spawn(poll_loop(state.clone()));
        Ok(Self { state, turn, runtime: Some(runtime), stop, server: Some(server), local_addr })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The URL links start with.
    pub fn public_url(&self) -> &str {
        &self.state.public_url
    }

    /// Counters.
    pub fn counters(&self) -> Counters {
        lock(&self.state.core).counters()
    }

    /// The built-in TURN server's counters and address, if it runs.
    pub fn builtin_turn(&self) -> Option<(&super::builtin_turn::TurnCounters, SocketAddr)> {
        self.turn.as_ref().map(|t| (t.counters.as_ref(), t.local_addr))
    }

    /// The ICE servers handed out (with the built-in TURN server's, if any).
    pub fn ice_urls(&self) -> Vec<String> {
        self.state.ice.stun_urls.iter().chain(&self.state.ice.turn_urls).cloned().collect()
    }

    /// Connections refused for being over the per-address limit.
    pub fn connections_refused(&self) -> u64 {
        self.state.per_ip.refused.load(Ordering::Relaxed)
    }

    /// Stops: sharers are told the relay is going away (they reconnect to
    /// its next run and reclaim their rooms), event streams end, and
    /// in-flight requests finish for up to two seconds.
    pub fn shutdown(mut self) {
        self.shutdown_inner();
    }

    fn shutdown_inner(&mut self) {
        let Some(runtime) = self.runtime.take() else { return };
        let _ = self.stop.send(true);
        let turn = self.turn.take();
        let server = self.server.take();
        runtime.block_on(async {
            if let Some(server) = server {
                let _ = tokio::time::timeout(Duration::from_secs(2), server).await;
            }
            if let Some(turn) = turn {
                turn.close().await;
            }
        });
        runtime.shutdown_timeout(Duration::from_secs(1));
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.shutdown_inner();
    }
}

fn router(state: AppState) -> Router {
    Router::new()
        .route(protocol::SHARER_PATH, get(sharer_socket))
        .route("/r/{room}", get(viewer_page))
        .route("/r/{room}/", get(viewer_page))
        .route("/r/{room}/whep", axum::routing::post(whep_post).options(whep_options).patch(no_patch))
        .route(
            "/r/{room}/whep/{session}",
            axum::routing::delete(whep_delete).options(whep_session_options).patch(no_patch),
        )
        .route("/r/{room}/events/{session}", get(events))
        .route("/assets/{file}", get(asset))
        .route("/relay/stats", get(stats))
        .fallback(|| async { text(StatusCode::NOT_FOUND, "not found") })
        .layer(DefaultBodyLimit::max(protocol::MAX_BODY_BYTES))
        .with_state(state)
}

/// The viewer's address: the TCP peer, or the last `X-Forwarded-For` hop
/// when told to trust a reverse proxy.
fn client_ip(state: &RelayState, addr: ClientAddr, headers: &HeaderMap) -> IpAddr {
    if state.trust_forwarded_for
        && let Some(ip) = headers
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.rsplit(',').next())
            .and_then(|v| v.trim().parse().ok())
    {
        return ip;
    }
    addr.0.ip()
}

fn refusal_response(refusal: &Refusal) -> Response {
    let status = StatusCode::from_u16(refusal.http_status()).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
    let mut r = text(status, &refusal.message());
    let retry = match refusal {
        Refusal::RateLimited { retry_after } => Some(retry_after.as_secs().max(1)),
        Refusal::SharerAway => Some(2),
        Refusal::Busy => Some(1),
        _ => None,
    };
    if let Some(secs) = retry {
        r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    cors(r)
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('"', "&quot;").replace('<', "&lt;").replace('>', "&gt;")
}

/// ICE servers for the next viewer of `room`.
fn viewer_ice(state: &RelayState, room: &RoomId) -> IceConfig {
    let peer = lock(&state.core).next_peer(room);
    state.ice.for_peer(room, &format!("v{peer}"), turn::unix_now())
}

fn add_links(r: &mut Response, ice: &IceConfig) {
    for link in turn::link_headers(ice) {
        if let Ok(v) = HeaderValue::from_str(&link) {
            r.headers_mut().append(header::LINK, v);
        }
    }
}

/// Parses a room id from the path, counting misses against the address.
fn room_or_refusal(state: &RelayState, room: &str, ip: IpAddr) -> std::result::Result<RoomId, Refusal> {
    RoomId::parse(room).ok_or_else(|| lock(&state.core).miss(ip, Instant::now()).err().unwrap_or(Refusal::UnknownRoom))
}

async fn viewer_page(
    State(state): State<AppState>,
    Path(room): Path<String>,
    ConnectInfo(addr): ConnectInfo<ClientAddr>,
    headers: HeaderMap,
) -> Response {
    let ip = client_ip(&state, addr, &headers);
    let invalid = || page(StatusCode::NOT_FOUND, "text/html; charset=utf-8", INVALID_HTML);
    let Some(id) = RoomId::parse(&room) else {
        let _ = lock(&state.core).miss(ip, Instant::now());
        return invalid();
    };
    let view = lock(&state.core).view(&id);
    match view {
        RoomView::Open { .. } => {
            let ice = viewer_ice(&state, &id);
            let meta = format!(
                r#"<meta name="peep-ice-servers" content="{}">"#,
                html_escape(&serde_json::to_string(&ice.servers).unwrap_or_default())
            );
            page(StatusCode::OK, "text/html; charset=utf-8", VIEWER_HTML.replace(ICE_META, &meta))
        }
        RoomView::Gone(_) => invalid(),
        RoomView::Unknown => {
            let _ = lock(&state.core).miss(ip, Instant::now());
            invalid()
        }
    }
}

async fn options_for(state: &RelayState, room: &str, ip: IpAddr) -> Response {
    let id = match room_or_refusal(state, room, ip) {
        Ok(id) => id,
        Err(refusal) => return refusal_response(&refusal),
    };
    let view = lock(&state.core).view(&id);
    match view {
        RoomView::Open { admit, .. } => {
            let mut r = preflight_response(admit);
            add_links(&mut r, &viewer_ice(state, &id));
            r
        }
        RoomView::Gone(reason) => refusal_response(&Refusal::Gone(reason)),
        RoomView::Unknown => {
            let refusal = lock(&state.core).miss(ip, Instant::now()).err().unwrap_or(Refusal::UnknownRoom);
            refusal_response(&refusal)
        }
    }
}

async fn whep_options(
    State(state): State<AppState>,
    Path(room): Path<String>,
    ConnectInfo(addr): ConnectInfo<ClientAddr>,
    headers: HeaderMap,
) -> Response {
    options_for(&state, &room, client_ip(&state, addr, &headers)).await
}

async fn whep_session_options(
    State(state): State<AppState>,
    Path((room, _session)): Path<(String, String)>,
    ConnectInfo(addr): ConnectInfo<ClientAddr>,
    headers: HeaderMap,
) -> Response {
    options_for(&state, &room, client_ip(&state, addr, &headers)).await
}

async fn no_patch() -> Response {
    let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "no trickle ICE: offers carry all candidates");
    r.headers_mut().insert(header::ALLOW, HeaderValue::from_static("POST, DELETE, OPTIONS"));
    cors(r)
}

/// Gives up on a forwarded request if the viewer hangs up first.
struct Abandon<'a> {
    state: &'a RelayState,
    id: RequestId,
    armed: bool,
}

impl Drop for Abandon<'_> {
    fn drop(&mut self) {
        if self.armed {
            lock(&self.state.waiters).remove(&self.id);
            lock(&self.state.core).abandon(self.id);
        }
    }
}

/// Sends a message to a sharer; a full queue means it stalled.
fn send_to(state: &RelayState, conn: ConnId, message: RelayMessage) -> bool {
    let sharers = lock(&state.sharers);
    let Some(handle) = sharers.get(&conn) else { return false };
    match handle.tx.try_send(message) {
        Ok(()) => true,
        Err(mpsc::error::TrySendError::Full(_)) => {
            lock(&state.core).count_stalled();
            let _ = handle.close.send(Some((ErrorCode::Timeout, "you stopped reading; reconnect")));
            false
        }
        Err(mpsc::error::TrySendError::Closed(_)) => false,
    }
}

/// Forwards a viewer's request to the room's sharer and waits for the answer.
async fn forward(
    state: &RelayState,
    room: &RoomId,
    ip: IpAddr,
    kind: RequestKind,
    build: impl FnOnce(RequestId) -> RelayMessage,
) -> std::result::Result<protocol::Response, Response> {
    let started = lock(&state.core).request(room, ip, kind, Instant::now());
    let (id, conn) = started.map_err(|r| refusal_response(&r))?;
    let (tx, rx) = oneshot::channel();
    lock(&state.waiters).insert(id, tx);
    let mut guard = Abandon { state, id, armed: true };
    if !send_to(state, conn, build(id)) {
        return Err(refusal_response(&Refusal::SharerAway));
    }
    let answer = rx.await;
    guard.armed = false;
    match answer {
        Ok(Answer::Sharer(response)) => Ok(response),
        Ok(Answer::Failed(refusal)) => Err(refusal_response(&refusal)),
        Ok(Answer::Timeout) => Err(cors(text(StatusCode::GATEWAY_TIMEOUT, "the sharer did not answer in time"))),
        Err(_) => Err(refusal_response(&Refusal::SharerAway)),
    }
}

fn sharer_refusal(response: &protocol::Response) -> Response {
    refused_response(&crate::whep::Refused {
        status: response.status,
        message: response.body.clone(),
        retry_after_s: response.retry_after_s,
        password_required: response.password_required,
    })
}

async fn whep_post(
    State(state): State<AppState>,
    Path(room): Path<String>,
    ConnectInfo(addr): ConnectInfo<ClientAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let ip = client_ip(&state, addr, &headers);
    let id = match room_or_refusal(&state, &room, ip) {
        Ok(id) => id,
        Err(refusal) => return refusal_response(&refusal),
    };
    let Ok(body) = String::from_utf8(body.to_vec()) else {
        return cors(text(StatusCode::BAD_REQUEST, "bad SDP offer: not UTF-8"));
    };
    let header = |name| headers.get(name).and_then(|v: &HeaderValue| v.to_str().ok()).map(str::to_owned);
    let (content_type, authorization) = (header(header::CONTENT_TYPE), header(header::AUTHORIZATION));
    let forwarded = forward(&state, &id, ip, RequestKind::Offer, |request_id| {
        RelayMessage::Request(protocol::Request {
            id: request_id,
            method: Method::Post,
            session: None,
            client_ip: ip,
            content_type,
            authorization: authorization.map(crate::Secret::new),
            body,
        })
    })
    .await;
    let response = match forwarded {
        Ok(r) => r,
        Err(r) => return r,
    };
    match (response.status, &response.session) {
        (201, Some(session)) => {
            lock(&state.core).session_opened(&id, session);
            let mut r = (StatusCode::CREATED, response.body).into_response();
            let h = r.headers_mut();
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/sdp"));
            if let Ok(v) = HeaderValue::from_str(&format!("/r/{id}/whep/{session}")) {
                h.insert(header::LOCATION, v);
            }
            add_links(&mut r, &viewer_ice(&state, &id));
            cors(r)
        }
        _ => cors(sharer_refusal(&response)),
    }
}

async fn whep_delete(
    State(state): State<AppState>,
    Path((room, session)): Path<(String, String)>,
    ConnectInfo(addr): ConnectInfo<ClientAddr>,
    headers: HeaderMap,
) -> Response {
    let ip = client_ip(&state, addr, &headers);
    let id = match room_or_refusal(&state, &room, ip) {
        Ok(id) => id,
        Err(refusal) => return refusal_response(&refusal),
    };
    if !protocol::valid_session(&session) {
        return cors(text(StatusCode::NOT_FOUND, "no such session"));
    }
    let forwarded = forward(&state, &id, ip, RequestKind::Leave, |request_id| {
        RelayMessage::Request(protocol::Request {
            id: request_id,
            method: Method::Delete,
            session: Some(session.clone()),
            client_ip: ip,
            content_type: None,
            authorization: None,
            body: String::new(),
        })
    })
    .await;
    match forwarded {
        Ok(r) if r.status == 200 => {
            lock(&state.core).session_closed(&id, &session);
            cors(StatusCode::OK.into_response())
        }
        Ok(r) => cors(sharer_refusal(&r)),
        Err(r) => r,
    }
}

fn room_events(state: &RelayState, room: &RoomId) -> broadcast::Receiver<RoomEvent> {
    lock(&state.events).entry(*room).or_insert_with(|| broadcast::channel(ROOM_EVENTS).0).subscribe()
}

fn tell_room(state: &RelayState, room: &RoomId, event: RoomEvent) {
    let mut events = lock(&state.events);
    let ended = matches!(event, RoomEvent::Ended(_));
    if let Some(tx) = events.get(room) {
        let _ = tx.send(event);
    }
    if ended {
        events.remove(room);
    }
}

async fn events(
    State(state): State<AppState>,
    Path((room, session)): Path<(String, String)>,
    ConnectInfo(addr): ConnectInfo<ClientAddr>,
    headers: HeaderMap,
) -> Response {
    let ip = client_ip(&state, addr, &headers);
    let id = match room_or_refusal(&state, &room, ip) {
        Ok(id) => id,
        Err(refusal) => return refusal_response(&refusal),
    };
    let (view, known) = {
        let core = lock(&state.core);
        (core.view(&id), core.has_session(&id, &session))
    };
    let sse = |events: Vec<SseEvent>| {
        let stream = tokio_stream::iter(events.into_iter().map(Ok::<_, Infallible>));
        Sse::new(stream).into_response()
    };
    match view {
        // Late to the news: say it at once.
        RoomView::Gone(reason) => {
            return sse(vec![SseEvent::default().event("ended").data(reason.message())]);
        }
        RoomView::Open { .. } if known => {}
        _ => return text(StatusCode::NOT_FOUND, "no such session"),
    }
    let receiver = room_events(&state, &id);
    let stop = state.stop.clone();
    let session: Arc<str> = session.into();
    let stream = futures_util::stream::unfold(
        (receiver, stop, session, false),
        |(mut receiver, mut stop, session, done)| async move {
            if done {
                return None;
            }
            loop {
                let event = tokio::select! {
                    e = receiver.recv() => e,
                    () = stopped(&mut stop) => return None,
                };
                let (name, data) = match event {
                    Ok(RoomEvent::Kicked(s)) if s == session => ("kicked", "you were removed from this share"),
                    Ok(RoomEvent::SessionEnded(s)) if s == session => ("ended", "the share has ended"),
                    Ok(RoomEvent::Ended(words)) => ("ended", words),
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => return None,
                };
                let event = SseEvent::default().event(name).data(data);
                return Some((Ok::<_, Infallible>(event), (receiver, stop, session, true)));
            }
        },
    );
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))).into_response()
}

async fn stats(State(state): State<AppState>) -> Response {
    let counters = lock(&state.core).counters();
    let mut value = serde_json::to_value(counters).unwrap_or_default();
    value["connections_refused_per_ip"] = state.per_ip.refused.load(Ordering::Relaxed).into();
    let mut r = (StatusCode::OK, value.to_string()).into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

async fn sharer_socket(
    State(state): State<AppState>,
    ConnectInfo(addr): ConnectInfo<ClientAddr>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    // Browsers send Origin; the sharer (a native app) does not. A web page
    // elsewhere must not open rooms from its visitors' browsers.
    if let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok())
        && origin.to_ascii_lowercase() != state.origin
    {
        return text(StatusCode::FORBIDDEN, "sharer connections from web pages of other origins are not allowed");
    }
    let offered = headers
        .get(header::SEC_WEBSOCKET_PROTOCOL)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|p| p.trim() == protocol::SUBPROTOCOL));
    if !offered {
        return text(
            StatusCode::BAD_REQUEST,
            &format!("expected the WebSocket subprotocol {} (is this Peep?)", protocol::SUBPROTOCOL),
        );
    }
    let ip = client_ip(&state, addr, &headers);
    upgrade
        .protocols([protocol::SUBPROTOCOL])
        .max_message_size(protocol::MAX_MESSAGE_BYTES)
        .max_frame_size(protocol::MAX_MESSAGE_BYTES)
        // tungstenite's 128 KiB buffers per connection would dominate a
        // room's memory; sharer traffic is a few small messages a second.
        .read_buffer_size(4 * 1024)
        .write_buffer_size(0)
        .max_write_buffer_size(4 * protocol::MAX_MESSAGE_BYTES)
        .on_upgrade(move |socket| run_sharer(state, socket, ip))
}

/// Fails a forwarded request's waiter.
fn fail(state: &RelayState, id: RequestId, answer: Answer) {
    if let Some(tx) = lock(&state.waiters).remove(&id) {
        let _ = tx.send(answer);
    }
}

/// One sharer connection, from upgrade to close.
async fn run_sharer(state: AppState, socket: WebSocket, ip: IpAddr) {
    let conn = state.next_conn.fetch_add(1, Ordering::Relaxed);
    let (tx, mut outbound) = mpsc::channel(SHARER_QUEUE);
    let (close, mut closing) = watch::channel(None);
    lock(&state.core).connect(conn, ip, Instant::now());
    lock(&state.sharers).insert(conn, SharerHandle { tx, close });
    let (mut sink, mut stream) = socket.split();
    let mut stop = state.stop.clone();
    let mut bad = 0u32;
    let hello_deadline = tokio::time::sleep(HELLO_TIMEOUT);
    tokio::pin!(hello_deadline);
    let close_with = loop {
        let greeted = lock(&state.core).room_of(conn).is_some();
        tokio::select! {
            incoming = stream.next() => {
                let text = match incoming {
                    Some(Ok(Message::Text(t))) => t,
                    Some(Ok(Message::Binary(_))) => {
                        lock(&state.core).count_bad_message();
                        bad += 1;
                        reply(&state, conn, ErrorCode::BadMessage, "binary messages are not part of the protocol");
                        if bad >= MAX_BAD_MESSAGES { break Some((ErrorCode::BadMessage, "too many bad messages".into())); }
                        continue;
                    }
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break None,
                    Some(Ok(_)) => { lock(&state.core).heard(conn, Instant::now()); continue; }
                };
                lock(&state.core).heard(conn, Instant::now());
                match protocol::parse_sharer_message(text.as_bytes()) {
                    Err(e) => {
                        lock(&state.core).count_bad_message();
                        bad += 1;
                        reply(&state, conn, ErrorCode::BadMessage, &e.to_string());
                        if bad >= MAX_BAD_MESSAGES { break Some((ErrorCode::BadMessage, "too many bad messages".into())); }
                    }
                    Ok(message) => {
                        if let Some(close) = handle(&state, conn, greeted, message) {
                            break Some(close);
                        }
                    }
                }
            }
            Some(message) = outbound.recv() => {
                let text = protocol::encode(&message);
                match tokio::time::timeout(state.stall_timeout, sink.send(Message::text(text))).await {
                    Ok(Ok(())) => {}
                    Ok(Err(_)) => break None,
                    Err(_) => {
                        lock(&state.core).count_stalled();
                        break None;
                    }
                }
            }
            _ = closing.changed() => {
                let why = *closing.borrow();
                break why.map(|(code, message)| (code, message.to_owned()));
            }
            () = stopped(&mut stop) => break Some((ErrorCode::GoingAway, "the relay is restarting; reconnect".into())),
            () = &mut hello_deadline, if !greeted => break Some((ErrorCode::Timeout, "no hello".into())),
        }
    };
    if let Some((code, message)) = close_with {
        let reason: String = message.chars().take(100).collect();
        let error = RelayMessage::Error { code, message };
        let goodbye = async {
            let _ = sink.send(Message::text(protocol::encode(&error))).await;
            let frame = CloseFrame { code: 1000, reason: reason.into() };
            let _ = sink.send(Message::Close(Some(frame))).await;
        };
        let _ = tokio::time::timeout(Duration::from_secs(2), goodbye).await;
    }
    lock(&state.sharers).remove(&conn);
    let failed = lock(&state.core).disconnected(conn, Instant::now());
    for id in failed {
        fail(&state, id, Answer::Failed(Refusal::SharerAway));
    }
}

fn reply(state: &RelayState, conn: ConnId, code: ErrorCode, message: &str) {
    send_to(state, conn, RelayMessage::Error { code, message: crate::offer::short(message) });
}

/// Handles one parsed message; `Some` closes the connection with that error.
fn handle(state: &RelayState, conn: ConnId, greeted: bool, message: SharerMessage) -> Option<(ErrorCode, String)> {
    let now = Instant::now();
    match message {
        SharerMessage::Hello { version, room, owner, admit, sessions } => {
            if greeted {
                lock(&state.core).count_bad_message();
                return Some((ErrorCode::BadMessage, "hello twice on one connection".into()));
            }
            if version != protocol::VERSION {
                return Some((ErrorCode::Version, "unsupported protocol version: update Peep or the relay".into()));
            }
            let claim = match (
                room.as_ref().and_then(|r| RoomId::parse(r.expose())),
                owner.and_then(|o| OwnerSecret::parse(o.expose())),
            ) {
                (Some(room), Some(owner)) => Some((room, owner)),
                _ => None,
            };
            let result = lock(&state.core).hello(conn, claim, admit, now, || OwnerSecret::random().ok());
            let welcome = match result {
                Ok(w) => w,
                Err(refusal) => {
                    let code = match refusal {
                        Refusal::WrongOwner => ErrorCode::WrongOwner,
                        Refusal::RateLimited { .. } => ErrorCode::RateLimited,
                        Refusal::TooManyRoomsFromIp | Refusal::RelayFull => ErrorCode::TooManyRooms,
                        _ => ErrorCode::BadMessage,
                    };
                    return Some((code, refusal.message()));
                }
            };
            if let Some(old) = welcome.replaced
                && let Some(h) = lock(&state.sharers).get(&old)
            {
                let _ = h.close.send(Some((ErrorCode::Replaced, "another connection reclaimed this room")));
            }
            {
                let mut core = lock(&state.core);
                for s in &sessions {
                    core.session_opened(&welcome.room, s);
                }
            }
            let link = format!("{}/r/{}", state.public_url, welcome.room);
            let ice = state.ice.for_peer(&welcome.room, "s", turn::unix_now());
            send_to(
                state,
                conn,
                RelayMessage::Welcome {
                    room: crate::Secret::new(welcome.room.to_string()),
                    owner: crate::Secret::new(welcome.owner.to_hex()),
                    whep: crate::Secret::new(format!("{link}/whep")),
                    link: crate::Secret::new(link),
                    reclaimed: welcome.reclaimed,
                    heartbeat_s: HEARTBEAT.as_secs() as u32,
                    ice,
                },
            );
            None
        }
        _ if !greeted => {
            lock(&state.core).count_bad_message();
            Some((ErrorCode::BadMessage, "say hello first".into()))
        }
        SharerMessage::Ping => {
            send_to(state, conn, RelayMessage::Pong);
            None
        }
        SharerMessage::Response(response) => {
            // Late answers (after a timeout) are dropped quietly.
            if lock(&state.core).answer(conn, response.id).is_some() {
                fail(state, response.id, Answer::Sharer(response));
            }
            None
        }
        SharerMessage::Hold { id } => {
            lock(&state.core).hold(conn, id, now);
            None
        }
        SharerMessage::Notice { session, notice } => {
            let room = lock(&state.core).room_of(conn)?;
            lock(&state.core).session_closed(&room, &session);
            let session: Arc<str> = session.into();
            match notice {
                ViewerNotice::Kicked => tell_room(state, &room, RoomEvent::Kicked(session)),
                ViewerNotice::Ended => tell_room(state, &room, RoomEvent::SessionEnded(session)),
                ViewerNotice::Left => {}
            }
            None
        }
        SharerMessage::Settings { admit } => {
            lock(&state.core).set_admit(conn, admit);
            None
        }
        SharerMessage::RefreshIce => {
            if let Some(room) = lock(&state.core).room_of(conn) {
                let ice = state.ice.for_peer(&room, "s", turn::unix_now());
                send_to(state, conn, RelayMessage::Ice { ice });
            }
            None
        }
        SharerMessage::Bye => {
            let ended = lock(&state.core).bye(conn, now);
            if let Some((room, failed)) = ended {
                tell_room(state, &room, RoomEvent::Ended(super::rooms::GoneReason::Ended.message()));
                for id in failed {
                    fail(state, id, Answer::Failed(Refusal::Gone(super::rooms::GoneReason::Ended)));
                }
            }
            Some((ErrorCode::GoingAway, "goodbye".into()))
        }
    }
}

/// Resolves once the relay is stopping (without holding the watch's lock).
pub(crate) async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// Deadlines, silent sharers, expired rooms.
async fn poll_loop(state: AppState) {
    let mut tick = tokio::time::interval(POLL_PERIOD);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut stop = state.stop.clone();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = stopped(&mut stop) => return,
        }
        let events = lock(&state.core).poll(Instant::now());
        for event in events {
            match event {
                Event::RequestTimedOut(id) => fail(&state, id, Answer::Timeout),
                Event::Silent(conn) => {
                    if let Some(h) = lock(&state.sharers).get(&conn) {
                        let _ = h.close.send(Some((ErrorCode::Timeout, "no heartbeat: reconnect")));
                    }
                }
                Event::Expired(room) => {
                    tell_room(&state, &room, RoomEvent::Ended(super::rooms::GoneReason::SharerGone.message()));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_and_escaping() {
        assert_eq!(origin_of("https://Relay.Example.org/peep"), "https://relay.example.org");
        assert_eq!(origin_of("http://10.0.0.1:8443"), "http://10.0.0.1:8443");
        assert_eq!(html_escape(r#"[{"urls":["<x>&"]}]"#), "[{&quot;urls&quot;:[&quot;&lt;x&gt;&amp;&quot;]}]");
        assert!(VIEWER_HTML.contains(ICE_META), "the page has the ICE servers placeholder");
    }
}
