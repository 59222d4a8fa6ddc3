//! The relay's TCP listener for axum: optional TLS (rustls), a limit on
//! connections per address, a handshake timeout, and an idle timeout on
//! every connection (slow or silent clients cannot hold sockets forever).
//!
//! Connections are accepted and handshaken by a background task, so a slow
//! TLS client never delays others; finished connections are handed to
//! axum through a bounded channel (policy when full: the accept task waits,
//! and the kernel's backlog queues new connections).

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, Sleep};

use crate::error::{Result, TransportError};
use crate::hub::lock;

/// How long a TLS handshake may take.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Accepted connections waiting for axum.
const READY_CAPACITY: usize = 128;

/// Loads a PEM certificate chain and private key into a rustls server config.
pub fn tls_config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>> {
    use rustls_pki_types::pem::PemObject as _;
    let err = |path: &Path, e: &dyn std::fmt::Display| TransportError::Tls(format!("{}: {e}", path.display()));
    let certs: Vec<_> = rustls_pki_types::CertificateDer::pem_file_iter(cert)
        .map_err(|e| err(cert, &e))?
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| err(cert, &e))?;
    if certs.is_empty() {
        return Err(err(cert, &"no certificate in the file"));
    }
    let key_der = rustls_pki_types::PrivateKeyDer::from_pem_file(key).map_err(|e| err(key, &e))?;
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| TransportError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key_der)
        .map_err(|e| TransportError::Tls(format!("{} and {}: {e}", cert.display(), key.display())))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Open connections per address, shared with every [`Conn`].
#[derive(Debug, Default)]
pub struct PerIp {
    open: Mutex<HashMap<IpAddr, usize>>,
    /// Connections refused for being over the limit.
    pub refused: AtomicU64,
}

/// Decrements its address's count on drop.
#[derive(Debug)]
struct Permit {
    ip: IpAddr,
    per_ip: Arc<PerIp>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut open = lock(&self.per_ip.open);
        if let Some(n) = open.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

impl PerIp {
    fn admit(self: &Arc<Self>, ip: IpAddr, max: usize) -> Option<Permit> {
        let mut open = lock(&self.open);
        let n = open.entry(ip).or_insert(0);
        if *n >= max {
            self.refused.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        *n += 1;
        Some(Permit { ip, per_ip: self.clone() })
    }
}

enum Stream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

/// One accepted connection: plain or TLS, with its permit and idle timer.
pub struct Conn {
    stream: Stream,
    _permit: Permit,
    idle: Duration,
    deadline: Pin<Box<Sleep>>,
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn").field("idle", &self.idle).finish_non_exhaustive()
    }
}

impl Conn {
    fn touch(&mut self) {
        self.deadline.as_mut().reset(Instant::now() + self.idle);
    }

    /// Pending I/O: fail once the connection has been idle too long.
    fn check_idle(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, "idle connection"))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl AsyncRead for Conn {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let polled = match &mut this.stream {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s).poll_read(cx, buf),
        };
        match polled {
            Poll::Ready(r) => {
                this.touch();
                Poll::Ready(r)
            }
            Poll::Pending => this.check_idle(cx),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let polled = match &mut this.stream {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s).poll_write(cx, buf),
        };
        match polled {
            Poll::Ready(r) => {
                this.touch();
                Poll::Ready(r)
            }
            Poll::Pending => this.check_idle(cx).map(|r| r.map(|()| 0)),
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.stream {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.stream {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

/// The client's address, as axum's connect info.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub SocketAddr);

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, RelayListener>> for ClientAddr {
    fn connect_info(stream: axum::serve::IncomingStream<'_, RelayListener>) -> Self {
        *stream.remote_addr()
    }
}

/// The listener axum serves from.
pub struct RelayListener {
    ready: mpsc::Receiver<(Conn, ClientAddr)>,
    local: SocketAddr,
}

impl std::fmt::Debug for RelayListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelayListener").field("local", &self.local).finish_non_exhaustive()
    }
}

/// Limits of the listener.
#[derive(Debug, Clone)]
pub struct ListenerLimits {
    /// Connections open at once from one address.
    pub per_ip: usize,
    /// A connection with no traffic for this long is closed.
    pub idle: Duration,
}

impl RelayListener {
    /// Starts accepting on `tcp`; stops when `stop` turns true.
    pub fn start(
        tcp: TcpListener,
        tls: Option<Arc<rustls::ServerConfig>>,
        limits: ListenerLimits,
        per_ip: Arc<PerIp>,
        mut stop: watch::Receiver<bool>,
    ) -> io::Result<Self> {
        let local = tcp.local_addr()?;
        let (tx, ready) = mpsc::channel(READY_CAPACITY);
        let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    a = tcp.accept() => a,
                    () = super::server::stopped(&mut stop) => break,
                };
                let (socket, addr) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // EMFILE and friends: back off briefly instead of spinning.
                        tracing::warn!("accepting a connection failed: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let Some(permit) = per_ip.admit(addr.ip(), limits.per_ip) else {
                    drop(socket);
                    continue;
                };
                let _ = socket.set_nodelay(true);
                let (tx, acceptor, idle) = (tx.clone(), acceptor.clone(), limits.idle);
                tokio::spawn(async move {
                    let stream = match acceptor {
                        None => Stream::Plain(socket),
                        Some(acceptor) => {
                            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(socket)).await {
                                Ok(Ok(tls)) => Stream::Tls(Box::new(tls)),
                                Ok(Err(e)) => {
                                    tracing::debug!("TLS handshake from {addr} failed: {e}");
                                    return;
                                }
                                Err(_) => return,
                            }
                        }
                    };
                    let conn = Conn { stream, _permit: permit, idle, deadline: Box::pin(tokio::time::sleep(idle)) };
                    let _ = tx.send((conn, ClientAddr(addr))).await;
                });
            }
        });
        Ok(Self { ready, local })
    }
}

impl axum::serve::Listener for RelayListener {
    type Io = Conn;
    type Addr = ClientAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(c) => c,
            // The accept task stopped (shutdown): axum stops on its own
            // graceful-shutdown signal; never return.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(ClientAddr(self.local))
    }
}
