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
    /// The user closed the desktop's screen-sharing dialog without choosing.
    #[error("you cancelled the selection")]
    Cancelled,
    /// No screen-cast portal answers on the session bus (Wayland).
    #[error(
        "the desktop's screen-cast portal is not available ({0}): install `xdg-desktop-portal` and the portal \
         backend of your desktop (`xdg-desktop-portal-gnome`, `xdg-desktop-portal-kde` or \
         `xdg-desktop-portal-wlr`), and run Peep inside your desktop session (it needs the D-Bus session bus); \
         on X11, `--backend x11` captures without the portal"
    )]
    PortalUnavailable(String),
    /// A screen-cast portal request failed.
    #[error("screen-cast portal: {0}")]
    Portal(String),
    /// PipeWire (the stream carrying a portal's frames) failed.
    #[error("PipeWire: {0}")]
    PipeWire(String),
}

fn detail_suffix(detail: &Option<String>) -> String {
    detail.as_ref().map(|d| format!(" ({d})")).unwrap_or_default()
}

fn display_suffix(display: &Option<String>) -> String {
    display.as_ref().map(|d| format!(" {d:?}")).unwrap_or_default()
}

/// Result alias for the capture crate.
pub type Result<T, E = CaptureError> = std::result::Result<T, E>;
