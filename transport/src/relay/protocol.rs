//! The sharer ↔ relay protocol: JSON text messages over one WebSocket
//! (subprotocol [`SUBPROTOCOL`]), specified in `docs/relay-protocol.md`.
//!
//! Every message is an object with a `"type"` field. Unknown fields are
//! ignored (a newer peer may add some); unknown types, malformed JSON,
//! oversized messages and out-of-range values are errors. Both directions
//! go through one parse function each ([`parse_sharer_message`],
//! [`parse_relay_message`]), which the `relay_message` fuzz target drives:
//! they never panic, whatever the bytes.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::error::{Result, TransportError};
use crate::relay::rooms::{OwnerSecret, RoomId};
use crate::secret::Secret;

/// Protocol version spoken here.
pub const VERSION: u32 = 1;
/// The WebSocket subprotocol a sharer asks for.
pub const SUBPROTOCOL: &str = "peep-relay.v1";
/// Path of the sharer's WebSocket on the relay.
pub const SHARER_PATH: &str = "/relay/v1";
/// Largest message either side accepts (an SDP body JSON-escaped, plus room).
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024;
/// Largest SDP (or error text) a request or response may carry.
pub const MAX_BODY_BYTES: usize = crate::offer::MAX_OFFER_BYTES;
/// Most viewer sessions a reconnecting sharer may list in its hello.
pub const MAX_HELLO_SESSIONS: usize = 256;
/// Most ICE servers handed out at once.
pub const MAX_ICE_SERVERS: usize = 16;
/// Longest URL (link, WHEP endpoint, ICE server URL) accepted.
pub const MAX_URL_BYTES: usize = 2048;
/// Longest session id.
pub const MAX_SESSION_BYTES: usize = 64;

/// What the sharer sends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum SharerMessage {
    /// First message: create a room (no `room`/`owner`) or reclaim one.
    Hello {
        /// Must be [`VERSION`].
        version: u32,
        /// The room to reclaim (32 hex digits; the link's secret).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        room: Option<Secret>,
        /// Its owner secret (64 hex digits); the room id is derived from it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        owner: Option<Secret>,
        /// Whether viewers must be admitted one by one.
        #[serde(default)]
        admit: bool,
        /// Viewer sessions still connected through this room (on reclaim).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        sessions: Vec<String>,
    },
    /// Heartbeat; the relay answers [`RelayMessage::Pong`].
    Ping,
    /// The answer to a forwarded [`Request`].
    Response(Response),
    /// The request `id` waits for the sharer to admit the viewer: the relay
    /// extends its deadline.
    Hold {
        /// Request id.
        id: u64,
    },
    /// Tells a viewer's page something (through the relay's event stream).
    Notice {
        /// The viewer's session id.
        session: String,
        /// What to tell it.
        notice: ViewerNotice,
    },
    /// Live settings change.
    Settings {
        /// Whether viewers must be admitted one by one.
        admit: bool,
    },
    /// Asks for fresh ICE servers (credentials about to expire).
    RefreshIce,
    /// The share ended: the relay tells every viewer and forgets the room.
    Bye,
}

/// A sharer's answer to a forwarded request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Response {
    /// The request's id.
    pub id: u64,
    /// HTTP status for the viewer (201 with a session and SDP for a WHEP offer).
    pub status: u16,
    /// The new WHEP session (201 only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
    /// `Retry-After`, seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_s: Option<u32>,
    /// Send `WWW-Authenticate: Bearer` (a password is required or was wrong).
    #[serde(default)]
    pub password_required: bool,
    /// SDP answer, or a sentence saying why not.
    #[serde(default)]
    pub body: String,
}

/// What a viewer's page is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ViewerNotice {
    /// The sharer removed this viewer.
    Kicked,
    /// The share ended.
    Ended,
    /// The viewer's connection is gone (nothing to tell; the relay forgets it).
    Left,
}

/// What the relay sends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum RelayMessage {
    /// The room is the sharer's.
    Welcome {
        /// Room id (32 hex digits): the link's secret part.
        room: Secret,
        /// Owner secret to reclaim it with after a drop or a relay restart.
        owner: Secret,
        /// The viewer page (it carries the room id).
        link: Secret,
        /// The WHEP endpoint.
        whep: Secret,
        /// Whether an existing room was taken back (false: created).
        reclaimed: bool,
        /// Send a [`SharerMessage::Ping`] at least this often.
        heartbeat_s: u32,
        /// ICE servers for the sharer's peer connections.
        ice: IceConfig,
    },
    /// Fresh ICE servers.
    Ice {
        /// The servers.
        ice: IceConfig,
    },
    /// A viewer's WHEP request, forwarded.
    Request(Request),
    /// Answer to a ping.
    Pong,
    /// The relay refuses something; fatal codes close the connection.
    Error {
        /// Machine-readable reason.
        code: ErrorCode,
        /// Words for a person.
        message: String,
    },
}

/// ICE servers and when their credentials expire.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IceConfig {
    /// STUN and TURN servers.
    pub servers: Vec<IceServer>,
    /// Unix time the TURN credentials expire (0: nothing expires).
    #[serde(default)]
    pub expires_unix: u64,
}

/// One ICE server, as `RTCIceServer` in a browser.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IceServer {
    /// `stun:host:port` or `turn:host:port?transport=udp`.
    pub urls: Vec<String>,
    /// TURN REST-API user name (`<expiry>:<room tag>:<peer>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// TURN password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<Secret>,
}

/// A viewer's request, forwarded to the sharer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// Id to answer with.
    pub id: u64,
    /// WHEP method.
    pub method: Method,
    /// The WHEP session (DELETE).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
    /// The viewer's address as the relay saw it (for the password throttle).
    pub client_ip: IpAddr,
    /// The request's `Content-Type`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    /// The request's `Authorization` header (the password: only the sharer checks it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization: Option<Secret>,
    /// The SDP offer (POST).
    #[serde(default)]
    pub body: String,
}

/// Forwarded WHEP methods.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Method {
    /// An offer.
    Post,
    /// Leaving.
    Delete,
}

/// Why the relay refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The message could not be parsed or was out of place.
    BadMessage,
    /// The owner secret does not belong to the room.
    WrongOwner,
    /// Unsupported protocol version.
    Version,
    /// Too many rooms from this address, or on this relay.
    TooManyRooms,
    /// Too many attempts: wait and retry.
    RateLimited,
    /// Another connection reclaimed this room.
    Replaced,
    /// The relay is shutting down.
    GoingAway,
    /// The sharer was silent too long.
    Timeout,
}

impl RelayMessage {
    /// The message's `type`, for logs (never its contents).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Welcome { .. } => "welcome",
            Self::Ice { .. } => "ice",
            Self::Request(_) => "request",
            Self::Pong => "pong",
            Self::Error { .. } => "error",
        }
    }
}

impl ErrorCode {
    /// Whether retrying cannot help (the sharer gives up and says why).
    pub fn is_fatal(self) -> bool {
        matches!(self, Self::WrongOwner | Self::Version | Self::Replaced)
    }
}

fn bad(reason: impl Into<String>) -> TransportError {
    TransportError::BadMessage(reason.into())
}

fn text_of(bytes: &[u8]) -> Result<&str> {
    if bytes.len() > MAX_MESSAGE_BYTES {
        return Err(bad(format!("{} bytes is over the {MAX_MESSAGE_BYTES}-byte limit", bytes.len())));
    }
    std::str::from_utf8(bytes).map_err(|_| bad("not UTF-8"))
}

fn json_error(e: &serde_json::Error) -> TransportError {
    // serde's messages name the field and position, never the value.
    bad(crate::offer::short(&e.to_string()))
}

/// Whether `s` is a valid session id: 1–64 of `[0-9A-Za-z_-]`.
pub fn valid_session(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_SESSION_BYTES
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn check_session(s: &str) -> Result<()> {
    if valid_session(s) { Ok(()) } else { Err(bad("session id: expected 1-64 letters, digits, '-' or '_'")) }
}

fn check_body(body: &str) -> Result<()> {
    if body.len() > MAX_BODY_BYTES {
        return Err(bad(format!("body of {} bytes is over the {MAX_BODY_BYTES}-byte limit", body.len())));
    }
    Ok(())
}

fn check_url(what: &str, url: &str) -> Result<()> {
    if url.len() > MAX_URL_BYTES || url.chars().any(char::is_control) {
        return Err(bad(format!("{what}: too long or has control characters")));
    }
    Ok(())
}

fn check_ice(ice: &IceConfig) -> Result<()> {
    if ice.servers.len() > MAX_ICE_SERVERS {
        return Err(bad(format!("more than {MAX_ICE_SERVERS} ICE servers")));
    }
    for server in &ice.servers {
        if server.urls.is_empty() || server.urls.len() > 4 {
            return Err(bad("an ICE server needs 1-4 URLs"));
        }
        for url in &server.urls {
            check_url("ICE server URL", url)?;
            if !(url.starts_with("stun:") || url.starts_with("turn:") || url.starts_with("turns:")) {
                return Err(bad("ICE server URLs start with stun:, turn: or turns:"));
            }
        }
        let long = |s: Option<&str>| s.is_some_and(|s| s.len() > 512 || s.chars().any(char::is_control));
        if long(server.username.as_deref()) || long(server.credential.as_ref().map(Secret::expose)) {
            return Err(bad("ICE server credentials too long or with control characters"));
        }
    }
    Ok(())
}

/// Parses and checks one message from a sharer. Never panics.
pub fn parse_sharer_message(bytes: &[u8]) -> Result<SharerMessage> {
    let message: SharerMessage = serde_json::from_str(text_of(bytes)?).map_err(|e| json_error(&e))?;
    match &message {
        SharerMessage::Hello { room, owner, sessions, .. } => {
            match (room, owner) {
                (None, None) => {}
                (Some(room), Some(owner)) => {
                    RoomId::parse(room.expose()).ok_or_else(|| bad("room: expected 32 hex digits"))?;
                    OwnerSecret::parse(owner.expose()).ok_or_else(|| bad("owner: expected 64 hex digits"))?;
                }
                _ => return Err(bad("hello: give both room and owner, or neither")),
            }
            if sessions.len() > MAX_HELLO_SESSIONS {
                return Err(bad(format!("hello: more than {MAX_HELLO_SESSIONS} sessions")));
            }
            sessions.iter().try_for_each(|s| check_session(s))?;
        }
        SharerMessage::Response(r) => {
            if !(100..=599).contains(&r.status) {
                return Err(bad("response: status must be 100-599"));
            }
            if let Some(s) = &r.session {
                check_session(s)?;
            }
            if r.status == 201 && r.session.is_none() {
                return Err(bad("response: 201 needs a session"));
            }
            if r.retry_after_s.is_some_and(|s| s > 86_400) {
                return Err(bad("response: retry_after_s over a day"));
            }
            check_body(&r.body)?;
        }
        SharerMessage::Notice { session, .. } => check_session(session)?,
        SharerMessage::Ping
        | SharerMessage::Hold { .. }
        | SharerMessage::Settings { .. }
        | SharerMessage::RefreshIce
        | SharerMessage::Bye => {}
    }
    Ok(message)
}

/// Parses and checks one message from the relay. Never panics.
pub fn parse_relay_message(bytes: &[u8]) -> Result<RelayMessage> {
    let message: RelayMessage = serde_json::from_str(text_of(bytes)?).map_err(|e| json_error(&e))?;
    match &message {
        RelayMessage::Welcome { room, owner, link, whep, ice, .. } => {
            let room = RoomId::parse(room.expose()).ok_or_else(|| bad("room: expected 32 hex digits"))?;
            let owner = OwnerSecret::parse(owner.expose()).ok_or_else(|| bad("owner: expected 64 hex digits"))?;
            if owner.room() != room {
                return Err(bad("welcome: the owner secret does not belong to the room"));
            }
            check_url("link", link.expose())?;
            check_url("whep", whep.expose())?;
            check_ice(ice)?;
        }
        RelayMessage::Ice { ice } => check_ice(ice)?,
        RelayMessage::Request(r) => {
            if let Some(s) = &r.session {
                check_session(s)?;
            }
            if r.method == Method::Delete && r.session.is_none() {
                return Err(bad("request: DELETE needs a session"));
            }
            if r.content_type.as_ref().is_some_and(|c| c.len() > 256) {
                return Err(bad("request: content type too long"));
            }
            if r.authorization.as_ref().is_some_and(|a| a.expose().len() > 1024) {
                return Err(bad("request: authorization too long"));
            }
            check_body(&r.body)?;
        }
        RelayMessage::Error { message, .. } => {
            if message.len() > 1024 {
                return Err(bad("error: message too long"));
            }
        }
        RelayMessage::Pong => {}
    }
    Ok(message)
}

/// Serialises a message. Serialising these types cannot fail (string keys,
/// no maps with non-string keys, no non-finite floats).
pub fn encode<T: Serialize>(message: &T) -> String {
    serde_json::to_string(message).unwrap_or_else(|e| {
        tracing::error!("encoding a relay message failed: {e}");
        String::from("{\"type\":\"ping\"}")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROOM: &str = "00112233445566778899aabbccddeeff";

    fn owner_and_room() -> (String, String) {
        let owner = OwnerSecret::from_bytes([7; 32]);
        (owner.to_hex(), owner.room().to_string())
    }

    #[test]
    fn round_trips_every_message() {
        let (owner, room) = owner_and_room();
        let sharer = [
            SharerMessage::Hello { version: 1, room: None, owner: None, admit: false, sessions: vec![] },
            SharerMessage::Hello {
                version: 1,
                room: Some(Secret::new(room.clone())),
                owner: Some(Secret::new(owner.clone())),
                admit: true,
                sessions: vec!["ab12".into()],
            },
            SharerMessage::Ping,
            SharerMessage::Response(Response {
                id: 3,
                status: 201,
                session: Some("s1".into()),
                retry_after_s: None,
                password_required: false,
                body: "v=0\r\n".into(),
            }),
            SharerMessage::Hold { id: 4 },
            SharerMessage::Notice { session: "s1".into(), notice: ViewerNotice::Kicked },
            SharerMessage::Settings { admit: true },
            SharerMessage::RefreshIce,
            SharerMessage::Bye,
        ];
        for m in sharer {
            assert_eq!(parse_sharer_message(encode(&m).as_bytes()).expect("parses"), m);
        }
        let ice = IceConfig {
            servers: vec![IceServer {
                urls: vec!["turn:192.0.2.1:3478?transport=udp".into()],
                username: Some("1:t:s".into()),
                credential: Some("pw".into()),
            }],
            expires_unix: 1,
        };
        let relay = [
            RelayMessage::Welcome {
                room: Secret::new(room),
                owner: Secret::new(owner),
                link: "https://relay.test/r/x".into(),
                whep: "https://relay.test/r/x/whep".into(),
                reclaimed: false,
                heartbeat_s: 10,
                ice: ice.clone(),
            },
            RelayMessage::Ice { ice },
            RelayMessage::Request(Request {
                id: 9,
                method: Method::Post,
                session: None,
                client_ip: "192.0.2.9".parse().expect("ip"),
                content_type: Some("application/sdp".into()),
                authorization: Some("Bearer pw".into()),
                body: "v=0".into(),
            }),
            RelayMessage::Pong,
            RelayMessage::Error { code: ErrorCode::WrongOwner, message: "no".into() },
        ];
        for m in relay {
            assert_eq!(parse_relay_message(encode(&m).as_bytes()).expect("parses"), m);
        }
    }

    #[test]
    fn debug_output_hides_rooms_links_and_secrets() {
        let (owner, room) = owner_and_room();
        let welcome = RelayMessage::Welcome {
            room: Secret::new(room.clone()),
            owner: Secret::new(owner.clone()),
            link: Secret::new(format!("https://relay.test/r/{room}")),
            whep: Secret::new(format!("https://relay.test/r/{room}/whep")),
            reclaimed: true,
            heartbeat_s: 10,
            ice: IceConfig {
                servers: vec![IceServer {
                    urls: vec!["turn:192.0.2.1:3478".into()],
                    username: Some("1:t:s".into()),
                    credential: Some("turn-password".into()),
                }],
                expires_unix: 1,
            },
        };
        let hello = SharerMessage::Hello {
            version: 1,
            room: Some(Secret::new(room.clone())),
            owner: Some(Secret::new(owner.clone())),
            admit: false,
            sessions: vec![],
        };
        let debug = format!("{welcome:?} {hello:?}");
        for secret in [room.as_str(), owner.as_str(), "turn-password"] {
            assert!(!debug.contains(secret), "{debug}");
        }
    }

    #[test]
    fn wire_format_is_the_documented_one() {
        assert_eq!(encode(&SharerMessage::Ping), r#"{"type":"ping"}"#);
        assert_eq!(encode(&SharerMessage::Hold { id: 7 }), r#"{"type":"hold","id":7}"#);
        let hello = r#"{"type":"hello","version":1,"admit":false}"#;
        assert_eq!(
            parse_sharer_message(hello.as_bytes()).expect("hello"),
            SharerMessage::Hello { version: 1, room: None, owner: None, admit: false, sessions: vec![] }
        );
        // Unknown fields are ignored (forward compatibility).
        assert!(parse_sharer_message(br#"{"type":"ping","future":true}"#).is_ok());
    }

    #[test]
    fn refuses_bad_messages_with_reasons() {
        let (owner, room) = owner_and_room();
        let big = format!(r#"{{"type":"response","id":1,"status":400,"body":"{}"}}"#, "a".repeat(MAX_BODY_BYTES + 1));
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (b"\xff".to_vec(), "not UTF-8"),
            (b"{".to_vec(), "EOF"),
            (b"[]".to_vec(), "missing field `type`"),
            (br#"{"type":"launch"}"#.to_vec(), "unknown variant"),
            (br#"{"type":"hold"}"#.to_vec(), "missing field"),
            (br#"{"type":"hold","id":-1}"#.to_vec(), "invalid value"),
            (vec![b' '; MAX_MESSAGE_BYTES + 1], "limit"),
            (big.into_bytes(), "limit"),
            (format!(r#"{{"type":"hello","version":1,"room":"{ROOM}"}}"#).into_bytes(), "both"),
            (format!(r#"{{"type":"hello","version":1,"room":"xyz","owner":"{owner}"}}"#).into_bytes(), "room"),
            (format!(r#"{{"type":"hello","version":1,"room":"{room}","owner":"12"}}"#).into_bytes(), "owner"),
            (br#"{"type":"response","id":1,"status":99}"#.to_vec(), "status"),
            (br#"{"type":"response","id":1,"status":201}"#.to_vec(), "session"),
            (br#"{"type":"response","id":1,"status":201,"session":"../x"}"#.to_vec(), "session id"),
            (br#"{"type":"notice","session":"","notice":"kicked"}"#.to_vec(), "session id"),
            (br#"{"type":"notice","session":"a","notice":"exploded"}"#.to_vec(), "unknown variant"),
        ];
        for (bytes, why) in cases {
            let err = parse_sharer_message(&bytes).expect_err("refused").to_string();
            assert!(err.contains(why), "{err} (wanted {why:?})");
            assert!(err.len() < 300, "short errors: {err}");
        }
    }

    #[test]
    fn relay_side_checks() {
        let (owner, _) = owner_and_room();
        let wrong_room = format!(
            r#"{{"type":"welcome","room":"{ROOM}","owner":"{owner}","link":"l","whep":"w","reclaimed":false,"heartbeat_s":10,"ice":{{"servers":[]}}}}"#
        );
        assert!(parse_relay_message(wrong_room.as_bytes()).expect_err("mismatch").to_string().contains("belong"));
        let bad_ice = r#"{"type":"ice","ice":{"servers":[{"urls":["http://x"]}]}}"#;
        assert!(parse_relay_message(bad_ice.as_bytes()).is_err());
        let delete = r#"{"type":"request","id":1,"method":"DELETE","client_ip":"192.0.2.1"}"#;
        assert!(parse_relay_message(delete.as_bytes()).expect_err("no session").to_string().contains("session"));
        assert!(ErrorCode::WrongOwner.is_fatal() && !ErrorCode::RateLimited.is_fatal());
    }
}
