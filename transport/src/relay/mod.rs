//! Sharing over the internet: `peep relay` and the sharer's connection to it.
//!
//! A sharer behind a NAT keeps one outbound WebSocket to a relay
//! ([`client`]); the relay ([`Relay`]) gives it a room, serves the viewer
//! page at `/r/<room>` and forwards each WHEP request over that WebSocket to
//! the share's own WHEP handling, so the password, viewer limit, kick and
//! throttle behave exactly as on the LAN. Media goes peer to peer when the
//! NATs allow, through TURN (coturn, or any TURN server sharing the secret)
//! when they do not; the relay mints time-limited TURN credentials
//! ([`turn`]) for both ends.
//!
//! * [`rooms`]: the relay's decisions without I/O (rooms, owners,
//!   heartbeats, deadlines, expiry, limits), unit-tested with time as input.
//! * [`protocol`]: the messages and their one parse function per direction
//!   (fuzzed).
//! * [`turn`]: TURN REST-API credentials and `Link` headers.
//! * `server`: the axum relay (HTTPS, limits, origin checks, shutdown).
//! * [`client`]: the sharer's side.

pub mod builtin_turn;
pub mod client;
mod listener;
pub mod protocol;
pub mod rooms;
mod server;
pub mod turn;

pub use builtin_turn::BuiltinTurnConfig;

/// Log filter directives every program using the relay must add to its
/// subscriber, whatever else it enables: tungstenite logs whole WebSocket
/// frames at `trace`, and relay frames carry room ids, owner secrets and
/// viewers' passwords.
pub const LOG_REDACTIONS: &str = "tungstenite=debug,tokio_tungstenite=debug";
pub use client::{RelayClientConfig, RelayStatus};
pub use listener::tls_config;
pub use server::{Relay, RelayConfig};
