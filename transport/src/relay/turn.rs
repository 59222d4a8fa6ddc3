//! TURN REST-API credentials (the scheme coturn's `use-auth-secret`
//! implements): user name `<expiry>:<room tag>:<peer>`, password
//! `base64(HMAC-SHA1(secret, user name))`. The relay mints one per viewer
//! and per sharer connection, valid for a limited time; the TURN server
//! checks them with the same shared secret, without talking to the relay.
//!
//! The user name carries the room's public tag ([`RoomId::tag`]), not the
//! room id: TURN user names travel in clear text and land in TURN logs,
//! and the room id is the link's secret.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;

use crate::relay::protocol::{IceConfig, IceServer};
use crate::relay::rooms::RoomId;
use crate::secret::Secret;

/// Default credential lifetime.
pub const DEFAULT_TTL: Duration = Duration::from_secs(3600);

/// The ICE servers a relay hands out.
#[derive(Debug, Clone, Default)]
pub struct IceSettings {
    /// `stun:host:port` URLs.
    pub stun_urls: Vec<String>,
    /// `turn:host:port?transport=udp` URLs (credentials are minted for them).
    pub turn_urls: Vec<String>,
    /// The secret shared with the TURN server (coturn's `static-auth-secret`).
    pub secret: Option<Secret>,
    /// How long minted credentials are valid.
    pub ttl: Duration,
}

/// Seconds since the Unix epoch, now.
pub fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// The user name for a credential expiring at `expiry_unix`.
pub fn username(expiry_unix: u64, room_tag: &str, peer: &str) -> String {
    format!("{expiry_unix}:{room_tag}:{peer}")
}

/// The password for `username`: base64(HMAC-SHA1(secret, username)).
pub fn password(secret: &Secret, username: &str) -> Secret {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, secret.expose().as_bytes());
    let tag = ring::hmac::sign(&key, username.as_bytes());
    Secret::new(base64::engine::general_purpose::STANDARD.encode(tag.as_ref()))
}

/// Why a TURN user name is not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialError {
    /// No `<expiry>:` prefix.
    Malformed,
    /// The expiry is in the past.
    Expired,
}

/// The password a TURN server expects for `username` at `now_unix`, if
/// the user name is well formed and not expired (the built-in TURN server
/// uses this; coturn does the same internally).
pub fn expected_password(secret: &Secret, username: &str, now_unix: u64) -> Result<Secret, CredentialError> {
    let expiry: u64 = username
        .split(':')
        .next()
        .filter(|e| !e.is_empty() && e.len() <= 20)
        .and_then(|e| e.parse().ok())
        .ok_or(CredentialError::Malformed)?;
    if expiry < now_unix {
        return Err(CredentialError::Expired);
    }
    Ok(password(secret, username))
}

impl IceSettings {
    /// Whether any ICE server is configured.
    pub fn is_empty(&self) -> bool {
        self.stun_urls.is_empty() && self.turn_urls.is_empty()
    }

    /// ICE servers for one peer (`s` for the sharer, `v<n>` for viewers)
    /// of `room`, with TURN credentials minted now.
    pub fn for_peer(&self, room: &RoomId, peer: &str, now_unix: u64) -> IceConfig {
        let mut servers = Vec::new();
        if !self.stun_urls.is_empty() {
            servers.push(IceServer { urls: self.stun_urls.clone(), username: None, credential: None });
        }
        let mut expires_unix = 0;
        if let (false, Some(secret)) = (self.turn_urls.is_empty(), &self.secret) {
            expires_unix = now_unix + self.ttl.as_secs().max(1);
            let user = username(expires_unix, &room.tag(), peer);
            let credential = password(secret, &user);
            servers.push(IceServer {
                urls: self.turn_urls.clone(),
                username: Some(user),
                credential: Some(credential),
            });
        }
        IceConfig { servers, expires_unix }
    }
}

/// Escapes a value for a quoted-string parameter (RFC 8288).
fn quoted(value: &str) -> String {
    let mut s = String::with_capacity(value.len() + 2);
    s.push('"');
    for c in value.chars().filter(|c| !c.is_control()) {
        if c == '"' || c == '\\' {
            s.push('\\');
        }
        s.push(c);
    }
    s.push('"');
    s
}

/// `Link` header values for the WHEP response and `OPTIONS` (the WHEP
/// draft's ICE server configuration): one per URL.
pub fn link_headers(ice: &IceConfig) -> Vec<String> {
    let mut out = Vec::new();
    for server in &ice.servers {
        for url in &server.urls {
            let mut v = format!("<{url}>; rel=\"ice-server\"");
            if let (Some(user), Some(credential)) = (&server.username, &server.credential) {
                v.push_str(&format!(
                    "; username={}; credential={}; credential-type=\"password\"",
                    quoted(user),
                    quoted(credential.expose())
                ));
            }
            out.push(v);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::relay::rooms::OwnerSecret;

    #[test]
    fn password_matches_the_turn_rest_api() {
        // RFC 2202 test case 2 for HMAC-SHA1: key "Jefe", data "what do ya want for nothing?".
        let p = password(&Secret::from("Jefe"), "what do ya want for nothing?");
        assert_eq!(p.expose(), "7/zfauXrL6LSdBbV8YTfnCWafHk=");
    }

    #[test]
    fn minted_credentials_check_out_until_they_expire() {
        let room = OwnerSecret::from_bytes([3; 32]).room();
        let settings = IceSettings {
            stun_urls: vec!["stun:192.0.2.1:3478".into()],
            turn_urls: vec!["turn:192.0.2.1:3478?transport=udp".into()],
            secret: Some("s3cret".into()),
            ttl: Duration::from_secs(600),
        };
        let now = 1_800_000_000;
        let ice = settings.for_peer(&room, "v7", now);
        assert_eq!(ice.expires_unix, now + 600);
        assert_eq!(ice.servers.len(), 2);
        let turn = &ice.servers[1];
        let user = turn.username.clone().expect("user");
        assert_eq!(user, format!("{}:{}:v7", now + 600, room.tag()));
        assert!(!user.contains(&room.to_string()), "the link secret stays out of TURN user names");
        let given = turn.credential.clone().expect("credential");
        assert_eq!(expected_password(&"s3cret".into(), &user, now).as_ref(), Ok(&given));
        assert_eq!(expected_password(&"s3cret".into(), &user, now + 601), Err(CredentialError::Expired));
        assert_ne!(expected_password(&"other".into(), &user, now).expect("well formed"), given);
        assert_eq!(expected_password(&"s3cret".into(), "nope", now), Err(CredentialError::Malformed));
        assert_eq!(expected_password(&"s3cret".into(), ":x", now), Err(CredentialError::Malformed));
        // Without a secret, only STUN.
        let stun_only = IceSettings { secret: None, ..settings };
        assert_eq!(stun_only.for_peer(&room, "s", now).servers.len(), 1);
        assert!(IceSettings::default().is_empty());
        assert!(format!("{:?}", settings_debug()).contains("***"));
    }

    fn settings_debug() -> IceSettings {
        IceSettings { secret: Some("hidden".into()), ..IceSettings::default() }
    }

    #[test]
    fn link_headers_follow_the_whep_draft() {
        let ice = IceConfig {
            servers: vec![
                IceServer { urls: vec!["stun:192.0.2.1:3478".into()], username: None, credential: None },
                IceServer {
                    urls: vec!["turn:192.0.2.1:3478?transport=udp".into()],
                    username: Some("1:ab:v1".into()),
                    credential: Some("a+b/c=\"".into()),
                },
            ],
            expires_unix: 1,
        };
        assert_eq!(
            link_headers(&ice),
            vec![
                "<stun:192.0.2.1:3478>; rel=\"ice-server\"".to_owned(),
                "<turn:192.0.2.1:3478?transport=udp>; rel=\"ice-server\"; username=\"1:ab:v1\"; \
                 credential=\"a+b/c=\\\"\"; credential-type=\"password\""
                    .to_owned(),
            ]
        );
    }
}
