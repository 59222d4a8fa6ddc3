//! Link tokens, passwords and the throttle for wrong passwords.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::error::{Result, TransportError};

/// Bytes of randomness in a share token (128 bits).
pub const TOKEN_BYTES: usize = 16;

/// Random bytes from the operating system's CSPRNG, as lowercase hex.
pub fn random_hex(bytes: usize) -> Result<String> {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).map_err(|e| TransportError::Random(e.to_string()))?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

/// A fresh share token (128 bits from the CSPRNG, 32 hex characters).
pub fn new_token() -> Result<String> {
    random_hex(TOKEN_BYTES)
}

/// Compares two secrets in time independent of where they differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Wrong-password attempts allowed before backing off.
pub const FREE_ATTEMPTS: u32 = 3;
/// Longest back-off.
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// Clients remembered at most (oldest forgotten first).
pub const MAX_TRACKED_CLIENTS: usize = 4096;

#[derive(Debug, Clone, Copy)]
struct Attempts {
    failures: u32,
    blocked_until: Option<Instant>,
    last_seen: Instant,
}

/// Throttles wrong passwords per client address: after [`FREE_ATTEMPTS`]
/// failures each further failure doubles a lock-out (1 s, 2 s, 4 s … up to
/// [`MAX_BACKOFF`]). A correct password clears the record. Memory is bounded.
#[derive(Debug, Default)]
pub struct Throttle {
    clients: HashMap<IpAddr, Attempts>,
}

impl Throttle {
    /// `Err(retry_after)` if `client` must wait before trying again.
    pub fn check(&self, client: IpAddr, now: Instant) -> std::result::Result<(), Duration> {
        match self.clients.get(&client_key(client)).and_then(|a| a.blocked_until) {
            // Bounded even for a `now` older than the failure (a clock jump).
            Some(until) if until > now => Err((until - now).min(MAX_BACKOFF)),
            _ => Ok(()),
        }
    }

    /// Records a wrong password.
    pub fn failure(&mut self, client: IpAddr, now: Instant) {
        let client = client_key(client);
        if self.clients.len() >= MAX_TRACKED_CLIENTS
            && !self.clients.contains_key(&client)
            && let Some(oldest) = self.clients.iter().min_by_key(|(_, a)| a.last_seen).map(|(ip, _)| *ip)
        {
            self.clients.remove(&oldest);
        }
        let a = self.clients.entry(client).or_insert(Attempts { failures: 0, blocked_until: None, last_seen: now });
        a.failures += 1;
        a.last_seen = now;
        if a.failures >= FREE_ATTEMPTS {
            let exponent = (a.failures - FREE_ATTEMPTS).min(16);
            a.blocked_until = Some(now + Duration::from_secs(1u64 << exponent).min(MAX_BACKOFF));
        }
    }

    /// Records a correct password.
    pub fn success(&mut self, client: IpAddr) {
        self.clients.remove(&client_key(client));
    }
}

/// What a client is throttled as: its IPv4 address, or its IPv6 /64 —
/// one subscriber's usual allocation, so hopping between the addresses of
/// a /64 gives no fresh attempts. (IPv4-mapped addresses count as IPv4.)
fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(std::net::Ipv6Addr::from(u128::from(v6) & !u128::from(u64::MAX))),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_128_bit_hex_and_differ() {
        let a = new_token().expect("token");
        let b = new_token().expect("token");
        assert_eq!(a.len(), 32);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }

    #[test]
    fn constant_time_compare() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret!"));
    }

    #[test]
    fn backoff_grows_and_success_clears() {
        let t0 = Instant::now();
        let ip: IpAddr = "192.0.2.7".parse().expect("ip");
        let other: IpAddr = "192.0.2.8".parse().expect("ip");
        let mut t = Throttle::default();
        t.failure(ip, t0);
        t.failure(ip, t0);
        assert!(t.check(ip, t0).is_ok(), "two free attempts");
        t.failure(ip, t0);
        assert_eq!(t.check(ip, t0), Err(Duration::from_secs(1)));
        assert!(t.check(other, t0).is_ok(), "per client");
        t.failure(ip, t0 + Duration::from_secs(1));
        assert_eq!(t.check(ip, t0 + Duration::from_secs(1)), Err(Duration::from_secs(2)));
        for i in 0..20 {
            t.failure(ip, t0 + Duration::from_secs(10 + i));
        }
        assert_eq!(t.check(ip, t0 + Duration::from_secs(29)), Err(MAX_BACKOFF));
        t.success(ip);
        assert!(t.check(ip, t0 + Duration::from_secs(29)).is_ok());
    }

    #[test]
    fn an_ipv6_64_is_one_client() {
        let t0 = Instant::now();
        let mut t = Throttle::default();
        for i in 0..FREE_ATTEMPTS {
            let ip: IpAddr = format!("2001:db8:1:2::{:x}", i + 1).parse().expect("ip");
            t.failure(ip, t0);
        }
        let next: IpAddr = "2001:db8:1:2:ffff::9".parse().expect("ip");
        assert!(t.check(next, t0).is_err(), "another address of the same /64 is blocked too");
        assert!(t.check("2001:db8:1:3::1".parse().expect("ip"), t0).is_ok(), "another /64 is not");
        let mapped: IpAddr = "::ffff:192.0.2.9".parse().expect("ip");
        for _ in 0..FREE_ATTEMPTS {
            t.failure("192.0.2.9".parse().expect("ip"), t0);
        }
        assert!(t.check(mapped, t0).is_err(), "an IPv4-mapped address is its IPv4 address");
    }

    #[test]
    fn memory_is_bounded() {
        let t0 = Instant::now();
        let mut t = Throttle::default();
        for i in 0..(MAX_TRACKED_CLIENTS as u32 + 100) {
            t.failure(IpAddr::from(i.to_be_bytes()), t0 + Duration::from_millis(u64::from(i)));
        }
        assert_eq!(t.clients.len(), MAX_TRACKED_CLIENTS);
    }
}
