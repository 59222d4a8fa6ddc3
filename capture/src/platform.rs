//! The platform's capture session, with the same methods everywhere
//! (`connect`, `list_displays`, `list_windows`, `list_sources`,
//! `primary_display`, `thumbnail`, `capture`): X11 on Linux,
//! ScreenCaptureKit on macOS. The app and the GUI use only this name.

#[cfg(target_os = "linux")]
pub use crate::backend::x11::X11Session as PlatformSession;

#[cfg(target_os = "macos")]
pub use crate::backend::macos::MacSession as PlatformSession;
