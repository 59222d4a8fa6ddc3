//! Errors of the transport crate.

/// What can go wrong while sharing.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// The HTTP port could not be bound.
    #[error("cannot listen on {addr}: {reason}")]
    Bind {
        /// The address tried.
        addr: std::net::SocketAddr,
        /// Why it failed (e.g. "Address already in use").
        reason: String,
    },
    /// The operating system's random source failed.
    #[error("no randomness for the share token: {0}")]
    Random(String),
    /// A viewer's SDP offer could not be used.
    #[error("bad SDP offer: {0}")]
    BadOffer(String),
    /// The viewer's browser offers no video codec Peep sends; the text is
    /// the sentence for the viewer (what it offered, what would fix it).
    #[error("{0}")]
    NoCommonCodec(String),
    /// The WebRTC stack failed.
    #[error("WebRTC: {0}")]
    WebRtc(String),
    /// A WHIP publish could not start (e.g. an unusable URL).
    #[error("WHIP: {0}")]
    Whip(crate::whip::WhipError),
    /// The async runtime could not start.
    #[error("cannot start the network runtime: {0}")]
    Runtime(String),
}

/// Result alias for the transport crate.
pub type Result<T, E = TransportError> = std::result::Result<T, E>;
