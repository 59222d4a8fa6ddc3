//! Errors of the capture crate.

/// What can go wrong while listing or capturing sources.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CaptureError {
    /// No display server could be reached.
    #[error("cannot connect to the X server{display}: {reason} (is DISPLAY set and an X server running?)", display = display_suffix(.display))]
    NoDisplay {
        /// The DISPLAY value tried, if any.
        display: Option<String>,
        /// Why the connection failed.
        reason: String,
    },
    /// The requested source id does not exist.
    #[error("unknown source id {0:?}: run `peep list` to see the available displays and windows")]
    UnknownSource(String),
    /// A captured window or monitor disappeared.
    #[error("source gone: {0}")]
    SourceGone(String),
    /// The display server lacks something Peep needs.
    #[error("the X server lacks the {0} extension")]
    MissingExtension(&'static str),
    /// A request to the display server failed.
    #[error("X11 request failed: {0}")]
    X11(String),
    /// The connection to the display server broke: it exited, crashed or
    /// was killed.
    #[error("lost the connection to the display server (it exited or crashed): {0}")]
    DisplayLost(String),
    /// Shared memory could not be set up.
    #[error("shared memory: {0}")]
    Shm(String),
    /// A size Peep cannot capture.
    #[error("invalid frame size {width}x{height}")]
    InvalidSize {
        /// Width in pixels.
        width: u32,
        /// Height in pixels.
        height: u32,
    },
    /// The backend was stopped.
    #[error("capture stopped")]
    Stopped,
    /// The OS does not allow this process to record the screen (macOS:
    /// Screen Recording permission).
    #[error(
        "screen recording is not allowed{detail}: open System Settings → Privacy & Security → Screen Recording, turn on the app running Peep (e.g. your terminal, or Peep itself), then quit and reopen it",
        detail = detail_suffix(.0)
    )]
    PermissionDenied(Option<String>),
    /// A ScreenCaptureKit call failed (macOS).
    #[error("ScreenCaptureKit: {0}")]
    ScreenCaptureKit(String),
}

fn detail_suffix(detail: &Option<String>) -> String {
    detail.as_ref().map(|d| format!(" ({d})")).unwrap_or_default()
}

fn display_suffix(display: &Option<String>) -> String {
    display.as_ref().map(|d| format!(" {d:?}")).unwrap_or_default()
}

/// Result alias for the capture crate.
pub type Result<T, E = CaptureError> = std::result::Result<T, E>;
