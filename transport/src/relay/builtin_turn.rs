//! A TURN server inside `peep relay`, so a self-hoster runs one binary:
//! webrtc-rs's `turn` server (UDP) with the relay's own credentials.
//!
//! * Authentication: the TURN REST-API credentials the relay mints
//!   ([`super::turn`]), checked with the same secret, expired ones refused.
//! * Peers: relayed traffic may not go to loopback, link-local, multicast
//!   or unspecified addresses, nor — unless allowed — to private ranges
//!   (RFC 1918, CGNAT, IPv6 ULA): a TURN server must not become a way into
//!   its own network. Refused sends are dropped silently (and counted).
//! * Relay ports come from a configured range (the firewall opening).
//!
//! The `turn` crate serves UDP only (no TCP/TLS listener); browsers and the
//! sharer's `webrtc` 0.21 use UDP TURN.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use turn::relay::RelayAddressGenerator;
use webrtc_util::Conn;

use crate::error::{Result, TransportError};
use crate::secret::Secret;

/// How to run the built-in TURN server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuiltinTurnConfig {
    /// UDP address to listen on (`0.0.0.0:3478`).
    pub listen: SocketAddr,
    /// The address relayed candidates advertise (the server's public IP).
    pub public_ip: IpAddr,
    /// Relay ports, inclusive.
    pub ports: (u16, u16),
    /// Relay to RFC 1918 / CGNAT / ULA peers too (labs and LANs only).
    pub allow_private_peers: bool,
}

/// Whether relayed traffic may go to (or come from) `ip`.
pub fn peer_allowed(ip: IpAddr, allow_private: bool) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            let private = v4.is_private() || (o[0] == 100 && (64..128).contains(&o[1]));
            !(v4.is_loopback()
                || v4.is_unspecified()
                || v4.is_multicast()
                || v4.is_broadcast()
                || v4.is_link_local()
                || o[0] == 0
                || (private && !allow_private))
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return peer_allowed(IpAddr::V4(v4), allow_private);
            }
            let first = v6.segments()[0];
            let ula = first & 0xfe00 == 0xfc00;
            let link_local = first & 0xffc0 == 0xfe80;
            !(v6.is_loopback() || v6.is_unspecified() || v6.is_multicast() || link_local || (ula && !allow_private))
        }
    }
}

/// Counters of the built-in TURN server.
#[derive(Debug, Default)]
pub struct TurnCounters {
    /// Allocations made.
    pub allocations: AtomicU64,
    /// Relayed packets dropped because the peer address is not allowed.
    pub denied_peer_packets: AtomicU64,
    /// Authentication attempts refused (unknown format, expired, wrong).
    pub auth_refused: AtomicU64,
}

struct Auth {
    secret: Secret,
    counters: Arc<TurnCounters>,
}

impl turn::auth::AuthHandler for Auth {
    fn auth_handle(&self, username: &str, realm: &str, _src: SocketAddr) -> std::result::Result<Vec<u8>, turn::Error> {
        match super::turn::expected_password(&self.secret, username, super::turn::unix_now()) {
            Ok(password) => Ok(turn::auth::generate_auth_key(username, realm, password.expose())),
            Err(e) => {
                self.counters.auth_refused.fetch_add(1, Ordering::Relaxed);
                Err(turn::Error::Other(format!("TURN credentials refused: {e:?}")))
            }
        }
    }
}

/// A relay socket that refuses peers outside the policy.
struct FilteredConn {
    socket: tokio::net::UdpSocket,
    allow_private: bool,
    counters: Arc<TurnCounters>,
}

#[async_trait::async_trait]
impl Conn for FilteredConn {
    async fn connect(&self, addr: SocketAddr) -> webrtc_util::Result<()> {
        Ok(self.socket.connect(addr).await?)
    }

    async fn recv(&self, buf: &mut [u8]) -> webrtc_util::Result<usize> {
        Ok(self.socket.recv(buf).await?)
    }

    async fn recv_from(&self, buf: &mut [u8]) -> webrtc_util::Result<(usize, SocketAddr)> {
        loop {
            let (n, from) = self.socket.recv_from(buf).await?;
            if peer_allowed(from.ip(), self.allow_private) {
                return Ok((n, from));
            }
            self.counters.denied_peer_packets.fetch_add(1, Ordering::Relaxed);
        }
    }

    async fn send(&self, buf: &[u8]) -> webrtc_util::Result<usize> {
        Ok(self.socket.send(buf).await?)
    }

    async fn send_to(&self, buf: &[u8], target: SocketAddr) -> webrtc_util::Result<usize> {
        if !peer_allowed(target.ip(), self.allow_private) {
            self.counters.denied_peer_packets.fetch_add(1, Ordering::Relaxed);
            return Ok(buf.len());
        }
        match self.socket.send_to(buf, target).await {
            Ok(n) => Ok(n),
            // An unreachable peer costs that packet, not the allocation.
            Err(e)
                if matches!(e.kind(), std::io::ErrorKind::NetworkUnreachable | std::io::ErrorKind::HostUnreachable) =>
            {
                Ok(buf.len())
            }
            Err(e) => Err(e.into()),
        }
    }

    fn local_addr(&self) -> webrtc_util::Result<SocketAddr> {
        Ok(self.socket.local_addr()?)
    }

    fn remote_addr(&self) -> Option<SocketAddr> {
        self.socket.peer_addr().ok()
    }

    async fn close(&self) -> webrtc_util::Result<()> {
        Ok(())
    }

    fn as_any(&self) -> &(dyn std::any::Any + Send + Sync) {
        self
    }
}

/// Makes relay sockets in the port range.
struct Relays {
    bind_ip: IpAddr,
    public_ip: IpAddr,
    ports: (u16, u16),
    allow_private: bool,
    counters: Arc<TurnCounters>,
}

#[async_trait::async_trait]
impl RelayAddressGenerator for Relays {
    fn validate(&self) -> std::result::Result<(), turn::Error> {
        if self.ports.0 == 0 || self.ports.1 < self.ports.0 {
            return Err(turn::Error::Other("relay port range must be MIN-MAX with 0 < MIN <= MAX".into()));
        }
        Ok(())
    }

    async fn allocate_conn(
        &self,
        use_ipv4: bool,
        _requested_port: u16,
    ) -> std::result::Result<(Arc<dyn Conn + Send + Sync>, SocketAddr), turn::Error> {
        if use_ipv4 != self.bind_ip.is_ipv4() {
            return Err(turn::Error::Other("address family not served".into()));
        }
        let span = u32::from(self.ports.1 - self.ports.0) + 1;
        for _ in 0..16 {
            let mut r = [0u8; 4];
            getrandom::fill(&mut r).map_err(|e| turn::Error::Other(e.to_string()))?;
            let port = self.ports.0 + (u32::from_le_bytes(r) % span) as u16;
            if let Ok(socket) = tokio::net::UdpSocket::bind(SocketAddr::new(self.bind_ip, port)).await {
                self.counters.allocations.fetch_add(1, Ordering::Relaxed);
                let conn = FilteredConn { socket, allow_private: self.allow_private, counters: self.counters.clone() };
                return Ok((Arc::new(conn), SocketAddr::new(self.public_ip, port)));
            }
        }
        Err(turn::Error::Other("no free relay port in the range".into()))
    }
}

/// A running built-in TURN server.
pub struct BuiltinTurn {
    server: turn::server::Server,
    /// Its counters.
    pub counters: Arc<TurnCounters>,
    /// Where it listens.
    pub local_addr: SocketAddr,
}

impl std::fmt::Debug for BuiltinTurn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BuiltinTurn").field("local_addr", &self.local_addr).finish_non_exhaustive()
    }
}

impl BuiltinTurn {
    /// Binds and starts serving (inside a tokio runtime).
    pub async fn start(config: &BuiltinTurnConfig, secret: Secret, realm: &str) -> Result<Self> {
        let socket = tokio::net::UdpSocket::bind(config.listen)
            .await
            .map_err(|e| TransportError::Bind { addr: config.listen, reason: e.to_string() })?;
        let local_addr =
            socket.local_addr().map_err(|e| TransportError::Bind { addr: config.listen, reason: e.to_string() })?;
        let counters = Arc::new(TurnCounters::default());
        let relays = Relays {
            bind_ip: if config.listen.ip().is_unspecified() { config.listen.ip() } else { local_addr.ip() },
            public_ip: config.public_ip,
            ports: config.ports,
            allow_private: config.allow_private_peers,
            counters: counters.clone(),
        };
        let server = turn::server::Server::new(turn::server::config::ServerConfig {
            conn_configs: vec![turn::server::config::ConnConfig {
                conn: Arc::new(socket),
                relay_addr_generator: Box::new(relays),
            }],
            realm: realm.to_owned(),
            auth_handler: Arc::new(Auth { secret, counters: counters.clone() }),
            channel_bind_timeout: std::time::Duration::ZERO,
            alloc_close_notify: None,
        })
        .await
        .map_err(|e| TransportError::Bind { addr: config.listen, reason: format!("TURN: {e}") })?;
        Ok(Self { server, counters, local_addr })
    }

    /// Stops it (allocations end).
    pub async fn close(&self) {
        let _ = self.server.close().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_inside_private_networks_are_refused_unless_allowed() {
        let ip = |s: &str| s.parse::<IpAddr>().expect("ip");
        for denied in
            ["127.0.0.1", "0.0.0.0", "224.0.0.1", "255.255.255.255", "169.254.1.1", "::1", "fe80::1", "ff02::1"]
        {
            assert!(!peer_allowed(ip(denied), true), "{denied}");
        }
        for private in ["10.1.2.3", "172.16.0.1", "192.168.1.1", "100.64.0.1", "fd00::1", "::ffff:192.168.1.1"] {
            assert!(!peer_allowed(ip(private), false), "{private}");
            assert!(peer_allowed(ip(private), true), "{private} when allowed");
        }
        for public in ["203.0.113.7", "8.8.8.8", "2001:db8::1", "::ffff:198.51.100.2"] {
            assert!(peer_allowed(ip(public), false), "{public}");
        }
    }
}
