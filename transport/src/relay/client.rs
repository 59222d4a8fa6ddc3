//! The sharer's side of the relay: one outbound WebSocket to `peep relay`.
//!
//! It creates a room (or reclaims it with the owner secret after a drop or
//! a relay restart), answers the viewers' WHEP requests the relay forwards
//! through the share's own WHEP handling ([`crate::whep`]), forwards kick
//! and "ended" notices to the viewers' pages, sends heartbeats, asks for
//! fresh ICE servers before the TURN credentials expire, and reconnects with
//! back-off. Viewers already connected keep watching while it reconnects:
//! media never goes through this connection.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use webrtc::peer_connection::{RTCConfiguration, RTCConfigurationBuilder, RTCIceServer};

use crate::error::{Result, TransportError};
use crate::hub::{Notice, Shared, lock};
use crate::relay::protocol::{
    self, ErrorCode, IceConfig, Method, RelayMessage, Request, Response, SUBPROTOCOL, SharerMessage, ViewerNotice,
};
use crate::secret::Secret;
use crate::whep::{OfferRequest, Reply};

/// How long connecting (TCP, TLS, WebSocket, hello) may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// First reconnection delay; doubles up to [`MAX_BACKOFF`].
pub const FIRST_BACKOFF: Duration = Duration::from_millis(500);
/// Longest reconnection delay.
pub const MAX_BACKOFF: Duration = Duration::from_secs(15);
/// Without any message from the relay for this many heartbeats, the
/// connection is considered dead.
pub const DEAD_AFTER_HEARTBEATS: u32 = 3;
/// Messages queued for the relay. Policy when full: responses wait (the
/// handler task awaits), notices are dropped (the viewer's page then learns
/// from its closed connection).
pub const OUTBOUND_CAPACITY: usize = 64;
/// Forwarded requests answered at once.
pub const MAX_CONCURRENT_REQUESTS: usize = 16;

/// Where the relay is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayClientConfig {
    /// `https://relay.example.org` (or `http://…` for tests and LANs).
    pub url: String,
    /// Extra CA certificate (PEM) to trust, for relays with a private CA.
    pub ca_file: Option<PathBuf>,
}

/// The relay connection's state, for the status line and the GUI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RelayStatus {
    /// Connecting for the first time.
    Connecting,
    /// The room is ours.
    Connected {
        /// The viewer page (the room id is its secret).
        link: Secret,
        /// The WHEP endpoint.
        whep: Secret,
        /// How many times the room was reclaimed after a drop.
        reconnects: u32,
    },
    /// The connection dropped; viewers already watching keep watching.
    Reconnecting {
        /// The link (unchanged once reclaimed).
        link: Secret,
        /// Reconnection attempts so far.
        attempt: u32,
        /// Why the last attempt failed.
        error: String,
    },
    /// Gave up: unreachable at start, or refused for good.
    Failed(TransportErrorText),
}

/// An error's words (errors are not `Clone`).
pub type TransportErrorText = String;

/// What the share asks of the client.
#[derive(Debug)]
pub(crate) enum Command {
    /// Admission mode changed.
    Settings { admit: bool },
    /// The share ends: say goodbye and stop.
    Bye,
}

/// The WebSocket URL of a relay's sharer endpoint.
pub fn sharer_url(relay: &str) -> Result<String> {
    let base = relay.trim().trim_end_matches('/');
    let rest = if let Some(rest) = base.strip_prefix("https://") {
        format!("wss://{rest}")
    } else if let Some(rest) = base.strip_prefix("http://") {
        format!("ws://{rest}")
    } else if base.starts_with("wss://") || base.starts_with("ws://") {
        base.to_owned()
    } else {
        return Err(TransportError::RelayUnreachable(format!(
            "{base:?} is not a relay URL (expected https://host[:port])"
        )));
    };
    Ok(format!("{rest}{}", protocol::SHARER_PATH))
}

/// The `webrtc` configuration for a new peer connection: the ICE servers
/// the relay gave (none on a LAN-only share).
pub(crate) fn rtc_configuration(shared: &Shared) -> RTCConfiguration {
    let ice = lock(&shared.ice).clone();
    let servers: Vec<RTCIceServer> = ice
        .servers
        .iter()
        .map(|s| RTCIceServer {
            urls: s.urls.clone(),
            username: s.username.clone().unwrap_or_default(),
            credential: s.credential.as_ref().map(|c| c.expose().to_owned()).unwrap_or_default(),
        })
        .collect();
    RTCConfigurationBuilder::new().with_ice_servers(servers).build()
}

fn tls_config(ca_file: Option<&PathBuf>) -> Result<Arc<rustls::ClientConfig>> {
    use rustls_pki_types::pem::PemObject as _;
    let mut roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
    if let Some(path) = ca_file {
        let certs = rustls_pki_types::CertificateDer::pem_file_iter(path)
            .map_err(|e| TransportError::Tls(format!("{}: {e}", path.display())))?;
        for cert in certs {
            let cert = cert.map_err(|e| TransportError::Tls(format!("{}: {e}", path.display())))?;
            roots.add(cert).map_err(|e| TransportError::Tls(format!("{}: {e}", path.display())))?;
        }
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| TransportError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(url: &str, tls: &Arc<rustls::ClientConfig>) -> std::result::Result<Socket, String> {
    let mut request = url.into_client_request().map_err(|e| e.to_string())?;
    request.headers_mut().insert(
        "sec-websocket-protocol",
        SUBPROTOCOL
            .parse()
            .map_err(|e: tokio_tungstenite::tungstenite::http::header::InvalidHeaderValue| e.to_string())?,
    );
    let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        .max_message_size(Some(protocol::MAX_MESSAGE_BYTES))
        .max_frame_size(Some(protocol::MAX_MESSAGE_BYTES));
    let connecting = tokio_tungstenite::connect_async_tls_with_config(
        request,
        Some(config),
        true,
        Some(tokio_tungstenite::Connector::Rustls(tls.clone())),
    );
    match tokio::time::timeout(CONNECT_TIMEOUT, connecting).await {
        Ok(Ok((socket, _))) => Ok(socket),
        Ok(Err(e)) => Err(crate::offer::short(&e.to_string())),
        Err(_) => Err(format!("no answer within {} s", CONNECT_TIMEOUT.as_secs())),
    }
}

/// Back-off before reconnection attempt `attempt` (1, 2, …), with ±20 % jitter.
pub fn backoff(attempt: u32) -> Duration {
    let base = FIRST_BACKOFF.saturating_mul(1u32 << attempt.saturating_sub(1).min(10)).min(MAX_BACKOFF);
    let mut byte = [0u8; 1];
    let jitter = if getrandom::fill(&mut byte).is_ok() { f64::from(byte[0]) / 255.0 * 0.4 - 0.2 } else { 0.0 };
    base.mul_f64(1.0 + jitter)
}

/// How one connection ended.
enum Ended {
    /// The share ended.
    Bye,
    /// Refused for good.
    Fatal(String),
    /// Dropped, or could not connect: try again.
    Dropped(String),
}

/// The room, once the relay gave one.
struct Claim {
    room: Secret,
    owner: Secret,
    link: Secret,
}

/// State shared by the connection loop and the tasks it spawns.
struct Client {
    shared: Arc<Shared>,
    url: String,
    tls: Arc<rustls::ClientConfig>,
    /// Viewer sessions that joined through the relay, still connected.
    sessions: Arc<Mutex<HashSet<String>>>,
    /// Notices for viewers' pages. Policy when full: dropped (see
    /// [`OUTBOUND_CAPACITY`]).
    notices: mpsc::Sender<SharerMessage>,
    limit: Arc<tokio::sync::Semaphore>,
}

/// Runs the client until the share ends or the relay refuses for good.
pub(crate) async fn run(
    shared: Arc<Shared>,
    config: RelayClientConfig,
    status: watch::Sender<RelayStatus>,
    mut commands: mpsc::Receiver<Command>,
) {
    let setup = sharer_url(&config.url).and_then(|url| Ok((url, tls_config(config.ca_file.as_ref())?)));
    let (url, tls) = match setup {
        Ok(s) => s,
        Err(e) => {
            let _ = status.send(RelayStatus::Failed(e.to_string()));
            return;
        }
    };
    let (notices, mut notice_rx) = mpsc::channel(OUTBOUND_CAPACITY);
    let client = Client {
        shared,
        url,
        tls,
        sessions: Arc::default(),
        notices,
        limit: Arc::new(tokio::sync::Semaphore::new(MAX_CONCURRENT_REQUESTS)),
    };
    let mut claim: Option<Claim> = None;
    let (mut attempt, mut reconnects) = (0u32, 0u32);
    loop {
        let ended = client.session(&mut claim, &status, &mut commands, &mut notice_rx, &mut reconnects).await;
        match ended {
            Ended::Bye => return,
            Ended::Fatal(reason) => {
                let _ = status.send(RelayStatus::Failed(TransportError::RelayRefused(reason).to_string()));
                return;
            }
            Ended::Dropped(reason) => {
                let Some(c) = &claim else {
                    // Never connected: say so at once (the share does not start).
                    let _ = status.send(RelayStatus::Failed(TransportError::RelayUnreachable(reason).to_string()));
                    return;
                };
                attempt += 1;
                tracing::info!("relay connection lost ({reason}); reconnecting (attempt {attempt})");
                let _ = status.send(RelayStatus::Reconnecting { link: c.link.clone(), attempt, error: reason });
                let wait = tokio::time::sleep(backoff(attempt));
                tokio::pin!(wait);
                loop {
                    tokio::select! {
                        () = &mut wait => break,
                        command = commands.recv() => match command {
                            None | Some(Command::Bye) => return,
                            // Sent with the next hello.
                            Some(Command::Settings { .. }) => {}
                        },
                    }
                }
            }
        }
        if matches!(&*status.borrow(), RelayStatus::Connected { .. }) {
            attempt = 0;
        }
    }
}

impl Client {
    /// One connection: hello, then serve until it drops.
    async fn session(
        &self,
        claim: &mut Option<Claim>,
        status: &watch::Sender<RelayStatus>,
        commands: &mut mpsc::Receiver<Command>,
        notice_rx: &mut mpsc::Receiver<SharerMessage>,
        reconnects: &mut u32,
    ) -> Ended {
        let mut socket = match connect(&self.url, &self.tls).await {
            Ok(s) => s,
            Err(e) => return Ended::Dropped(e),
        };
        let admit = lock(&self.shared.admission).on;
        let sessions: Vec<String> = {
            let s = lock(&self.sessions);
            s.iter().take(protocol::MAX_HELLO_SESSIONS).cloned().collect()
        };
        let hello = SharerMessage::Hello {
            version: protocol::VERSION,
            room: claim.as_ref().map(|c| c.room.clone()),
            owner: claim.as_ref().map(|c| c.owner.clone()),
            admit,
            sessions,
        };
        if let Err(e) = socket.send(Message::text(protocol::encode(&hello))).await {
            return Ended::Dropped(e.to_string());
        }
        let welcome = match tokio::time::timeout(CONNECT_TIMEOUT, next_message(&mut socket)).await {
            Ok(Ok(m)) => m,
            Ok(Err(e)) => return Ended::Dropped(e),
            Err(_) => return Ended::Dropped("the relay did not answer the hello".into()),
        };
        let (heartbeat, mut refresh_at) = match welcome {
            RelayMessage::Welcome { room, owner, link, whep, reclaimed, heartbeat_s, ice } => {
                if reclaimed {
                    *reconnects += u32::from(claim.is_some());
                }
                let refresh_at = self.set_ice(ice);
                let _ = status.send(RelayStatus::Connected { link: link.clone(), whep, reconnects: *reconnects });
                *claim = Some(Claim { room, owner, link });
                (Duration::from_secs(u64::from(heartbeat_s.clamp(1, 60))), refresh_at)
            }
            RelayMessage::Error { code, message } => {
                // At start every refusal is final; later only fatal ones are.
                return if code.is_fatal() || claim.is_none() {
                    Ended::Fatal(message)
                } else {
                    Ended::Dropped(message)
                };
            }
            other => return Ended::Dropped(format!("expected a welcome, got a {}", other.kind())),
        };
        let (out_tx, mut out_rx) = mpsc::channel::<SharerMessage>(OUTBOUND_CAPACITY);
        let mut tick = tokio::time::interval(heartbeat);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_heard = Instant::now();
        loop {
            let refresh = tokio::time::sleep_until(refresh_at);
            tokio::select! {
                incoming = socket.next() => {
                    let text = match incoming {
                        Some(Ok(Message::Text(t))) => t,
                        Some(Ok(Message::Close(frame))) => {
                            let why = frame.map(|f| f.reason.to_string()).filter(|r| !r.is_empty());
                            return Ended::Dropped(why.unwrap_or_else(|| "the relay closed the connection".into()));
                        }
                        Some(Ok(_)) => { last_heard = Instant::now(); continue; }
                        Some(Err(e)) => return Ended::Dropped(crate::offer::short(&e.to_string())),
                        None => return Ended::Dropped("the relay closed the connection".into()),
                    };
                    last_heard = Instant::now();
                    match protocol::parse_relay_message(text.as_bytes()) {
                        Ok(RelayMessage::Request(request)) => self.answer(request, out_tx.clone()),
                        Ok(RelayMessage::Ice { ice }) => refresh_at = self.set_ice(ice),
                        Ok(RelayMessage::Pong) => {}
                        Ok(RelayMessage::Error { code, message }) => {
                            if code.is_fatal() {
                                return Ended::Fatal(message);
                            }
                            if matches!(code, ErrorCode::GoingAway | ErrorCode::Timeout) {
                                return Ended::Dropped(message);
                            }
                            tracing::warn!("the relay says: {message}");
                        }
                        Ok(RelayMessage::Welcome { .. }) => tracing::warn!("ignoring a second welcome from the relay"),
                        Err(e) => tracing::warn!("ignoring a message from the relay: {e}"),
                    }
                }
                Some(message) = out_rx.recv() => {
                    if let Err(e) = send(&mut socket, &message).await {
                        return Ended::Dropped(e);
                    }
                }
                Some(message) = notice_rx.recv() => {
                    if let Err(e) = send(&mut socket, &message).await {
                        return Ended::Dropped(e);
                    }
                }
                _ = tick.tick() => {
                    if last_heard.elapsed() > heartbeat * DEAD_AFTER_HEARTBEATS {
                        return Ended::Dropped(format!("no word from the relay for {} s", last_heard.elapsed().as_secs()));
                    }
                    if let Err(e) = send(&mut socket, &SharerMessage::Ping).await {
                        return Ended::Dropped(e);
                    }
                }
                () = refresh => {
                    refresh_at = Instant::now() + Duration::from_secs(30);
                    if let Err(e) = send(&mut socket, &SharerMessage::RefreshIce).await {
                        return Ended::Dropped(e);
                    }
                }
                command = commands.recv() => match command {
                    Some(Command::Settings { admit }) => {
                        if let Err(e) = send(&mut socket, &SharerMessage::Settings { admit }).await {
                            return Ended::Dropped(e);
                        }
                    }
                    None | Some(Command::Bye) => {
                        // Pending notices first, so pages hear "ended" in words.
                        while let Ok(message) = notice_rx.try_recv() {
                            let _ = send(&mut socket, &message).await;
                        }
                        let _ = send(&mut socket, &SharerMessage::Bye).await;
                        let _ = tokio::time::timeout(Duration::from_secs(1), socket.close(None)).await;
                        return Ended::Bye;
                    }
                },
            }
        }
    }

    /// Installs fresh ICE servers; returns when to ask for the next ones
    /// (half-way to expiry, so a slow answer still arrives in time).
    fn set_ice(&self, ice: IceConfig) -> Instant {
        let now_unix = crate::relay::turn::unix_now();
        let refresh = if ice.expires_unix == 0 {
            Duration::from_secs(24 * 3600)
        } else {
            Duration::from_secs(ice.expires_unix.saturating_sub(now_unix) / 2).max(Duration::from_secs(1))
        };
        *lock(&self.shared.ice) = ice;
        Instant::now() + refresh
    }

    /// Answers a forwarded request in its own task.
    fn answer(&self, request: Request, out: mpsc::Sender<SharerMessage>) {
        let (shared, sessions, notices, limit) =
            (self.shared.clone(), self.sessions.clone(), self.notices.clone(), self.limit.clone());
        tokio::spawn(async move {
            let Ok(_permit) = limit.acquire_owned().await else { return };
            let id = request.id;
            let reply = match request.method {
                Method::Post => {
                    let client = SocketAddr::new(request.client_ip, 0);
                    let offer = OfferRequest {
                        client,
                        content_type: request.content_type.as_deref(),
                        authorization: request.authorization.as_ref().map(Secret::expose),
                        body: request.body.as_bytes(),
                    };
                    let hold = out.clone();
                    crate::whep::offer(&shared, offer, move || {
                        let _ = hold.try_send(SharerMessage::Hold { id });
                    })
                    .await
                }
                Method::Delete => match &request.session {
                    Some(session) => crate::whep::delete(&shared, session).await,
                    None => Reply::Refused(crate::whep::Refused {
                        status: 404,
                        message: "no such session".into(),
                        retry_after_s: None,
                        password_required: false,
                    }),
                },
            };
            let response = match reply {
                Reply::Created { session, answer } => {
                    watch_notices(&shared, &session, sessions, notices);
                    Response {
                        id,
                        status: 201,
                        session: Some(session),
                        retry_after_s: None,
                        password_required: false,
                        body: answer,
                    }
                }
                Reply::Deleted => Response {
                    id,
                    status: 200,
                    session: None,
                    retry_after_s: None,
                    password_required: false,
                    body: String::new(),
                },
                Reply::Refused(r) => Response {
                    id,
                    status: r.status,
                    session: None,
                    retry_after_s: r.retry_after_s,
                    password_required: r.password_required,
                    body: r.message,
                },
            };
            let _ = out.send(SharerMessage::Response(response)).await;
        });
    }
}

/// Forwards a relayed viewer's kick / end notices to its page via the relay.
fn watch_notices(
    shared: &Shared,
    session: &str,
    sessions: Arc<Mutex<HashSet<String>>>,
    notices: mpsc::Sender<SharerMessage>,
) {
    let Some(mut receiver) = lock(&shared.viewers).get(session).map(|v| v.notice.subscribe()) else { return };
    lock(&sessions).insert(session.to_owned());
    let session = session.to_owned();
    tokio::spawn(async move {
        let notice = loop {
            if receiver.changed().await.is_err() {
                break ViewerNotice::Left;
            }
            match *receiver.borrow_and_update() {
                Notice::None => {}
                Notice::Kicked => break ViewerNotice::Kicked,
                Notice::Ended => break ViewerNotice::Ended,
            }
        };
        lock(&sessions).remove(&session);
        let _ = notices.try_send(SharerMessage::Notice { session, notice });
    });
}

async fn send(socket: &mut Socket, message: &SharerMessage) -> std::result::Result<(), String> {
    match tokio::time::timeout(Duration::from_secs(10), socket.send(Message::text(protocol::encode(message)))).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(crate::offer::short(&e.to_string())),
        Err(_) => Err("the relay stopped reading".into()),
    }
}

/// The next protocol message (skipping pings), or why there is none.
async fn next_message(socket: &mut Socket) -> std::result::Result<RelayMessage, String> {
    loop {
        match socket.next().await {
            Some(Ok(Message::Text(t))) => {
                return protocol::parse_relay_message(t.as_bytes()).map_err(|e| e.to_string());
            }
            Some(Ok(Message::Close(frame))) => {
                return Err(frame.map_or_else(|| "closed".into(), |f| format!("closed: {}", f.reason)));
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(crate::offer::short(&e.to_string())),
            None => return Err("closed".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relay_urls_become_websocket_urls() {
        assert_eq!(sharer_url("https://relay.example.org").expect("url"), "wss://relay.example.org/relay/v1");
        assert_eq!(sharer_url("http://10.0.0.1:8443/").expect("url"), "ws://10.0.0.1:8443/relay/v1");
        assert_eq!(sharer_url("https://example.org/peep").expect("url"), "wss://example.org/peep/relay/v1");
        let err = sharer_url("relay.example.org").expect_err("no scheme").to_string();
        assert!(err.contains("expected https://"), "{err}");
    }

    #[test]
    fn backoff_doubles_with_jitter_up_to_the_cap() {
        for attempt in 1..=12 {
            let expected = FIRST_BACKOFF.saturating_mul(1 << (attempt - 1).min(10)).min(MAX_BACKOFF);
            let got = backoff(attempt);
            assert!(got >= expected.mul_f64(0.79) && got <= expected.mul_f64(1.21), "{attempt}: {got:?}");
        }
    }
}
