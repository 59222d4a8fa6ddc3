//! Opening a capture source from its id, for the CLI and the GUI alike, and
//! the choice between Linux's two backends: X11, or on Wayland the desktop's
//! ScreenCast portal (which shows its own picker; the restore token it
//! returns is saved so the next share needs no dialog).

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use peep_capture::SourceId;
use peep_capture::backend::CaptureBackend;
use peep_capture::backend::synthetic::SyntheticBackend;

/// Which platform capture to use (Linux has two).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Backend {
    /// The X server (also XWayland windows on a Wayland desktop).
    X11,
    /// The desktop's ScreenCast portal and PipeWire (Wayland).
    Portal,
}

impl Backend {
    /// The session's backend: the portal on a Wayland session
    /// (`WAYLAND_DISPLAY` set or `XDG_SESSION_TYPE=wayland`), else X11.
    pub fn detect() -> Self {
        let var = |name| std::env::var(name).ok();
        Self::for_session(var("WAYLAND_DISPLAY").as_deref(), var("XDG_SESSION_TYPE").as_deref())
    }

    /// [`Backend::detect`] on given values.
    pub fn for_session(wayland_display: Option<&str>, session_type: Option<&str>) -> Self {
        let wayland = wayland_display.is_some_and(|d| !d.is_empty())
            || session_type.is_some_and(|t| t.eq_ignore_ascii_case("wayland"));
        if wayland && cfg!(target_os = "linux") { Self::Portal } else { Self::X11 }
    }
}

/// What to open.
#[derive(Debug, Clone, Copy)]
pub struct OpenRequest<'a> {
    /// Source id text (`None`: the default source).
    pub source: Option<&'a str>,
    /// Backend (`None`: [`Backend::detect`]).
    pub backend: Option<Backend>,
    /// Size of the synthetic source.
    pub synthetic_size: (u32, u32),
    /// Draw the mouse cursor.
    pub cursor: bool,
}

/// Where the portal's restore token is kept (next to the settings file).
pub fn restore_token_path() -> Option<PathBuf> {
    crate::settings::Settings::default_path().map(|p| p.with_file_name("portal-restore-token"))
}

/// The saved restore token, if any.
pub fn load_restore_token(path: &Path) -> Option<String> {
    let token = std::fs::read_to_string(path).ok()?;
    let token = token.trim();
    (!token.is_empty()).then(|| token.to_owned())
}

/// Saves (or with `None` forgets) the restore token, readable only by the
/// user: whoever has it can share the same screen without a dialog.
pub fn save_restore_token(path: &Path, token: Option<&str>) -> std::io::Result<()> {
    let Some(token) = token else {
        return match std::fs::remove_file(path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        };
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("tmp");
    {
        use std::io::Write as _;
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&tmp)?;
        file.write_all(token.as_bytes())?;
    }
    std::fs::rename(tmp, path)
}

/// Opens the portal capture: the desktop's dialog, or none when `restore`
/// and a saved token lets the portal restore the last choice. Saves the
/// token the portal returns (tokens are single use).
#[cfg(target_os = "linux")]
pub fn open_portal(
    restore: bool,
    cursor: bool,
) -> Result<peep_capture::backend::pipewire::PortalCapture, peep_capture::CaptureError> {
    use peep_capture::backend::pipewire::PortalCapture;
    use peep_capture::backend::portal::PortalRequest;
    let path = restore_token_path();
    let restore_token = if restore { path.as_deref().and_then(load_restore_token) } else { None };
    let capture = PortalCapture::open(&PortalRequest { cursor, restore_token, bus_address: None })?;
    if let Some(path) = &path
        && let Err(e) = save_restore_token(path, capture.restore_token())
    {
        tracing::warn!("cannot save the screen-cast restore token to {}: {e}", path.display());
    }
    Ok(capture)
}

/// Opens the backend for a source id.
pub fn open_source(request: OpenRequest<'_>) -> Result<Box<dyn CaptureBackend>> {
    let id = request.source.map(SourceId::parse).transpose()?;
    let backend = request.backend.unwrap_or_else(Backend::detect);
    let mut capture: Box<dyn CaptureBackend> = match (id, backend) {
        (Some(SourceId::Synthetic(scene)), _) => {
            Box::new(SyntheticBackend::new(request.synthetic_size.0, request.synthetic_size.1, scene)?)
        }
        (Some(SourceId::Portal), _) | (None | Some(SourceId::Screen), Backend::Portal) => open_portal_backend(request)?,
        (Some(id), Backend::Portal) => bail!(
            "on Wayland the desktop's own dialog chooses the screen or window: use `--source portal` \
             (or `--backend x11` to capture {id} through XWayland)"
        ),
        (id, Backend::X11) => open_platform(id)?,
    };
    capture.set_cursor(request.cursor);
    Ok(capture)
}

#[cfg(target_os = "linux")]
fn open_portal_backend(request: OpenRequest<'_>) -> Result<Box<dyn CaptureBackend>> {
    Ok(Box::new(open_portal(true, request.cursor)?))
}

#[cfg(not(target_os = "linux"))]
fn open_portal_backend(_request: OpenRequest<'_>) -> Result<Box<dyn CaptureBackend>> {
    bail!("the screen-cast portal exists only on Linux (Wayland)")
}

fn open_platform(id: Option<SourceId>) -> Result<Box<dyn CaptureBackend>> {
    use peep_capture::platform::PlatformSession;
    let session = PlatformSession::connect()?;
    let id = match id {
        Some(id) => id,
        None => session.primary_display()?,
    };
    Ok(Box::new(session.capture(&id)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wayland_sessions_use_the_portal() {
        let expect_portal = if cfg!(target_os = "linux") { Backend::Portal } else { Backend::X11 };
        assert_eq!(Backend::for_session(Some("wayland-0"), None), expect_portal);
        assert_eq!(Backend::for_session(None, Some("wayland")), expect_portal);
        assert_eq!(Backend::for_session(Some(""), Some("x11")), Backend::X11);
        assert_eq!(Backend::for_session(None, None), Backend::X11);
    }

    #[test]
    fn restore_tokens_are_saved_private_and_forgotten() {
        let dir = std::env::temp_dir().join(format!("peep-token-{}", std::process::id()));
        let path = dir.join("sub/portal-restore-token");
        assert_eq!(load_restore_token(&path), None);
        save_restore_token(&path, Some("abc-123")).expect("save");
        assert_eq!(load_restore_token(&path).as_deref(), Some("abc-123"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "only the user may read it");
        }
        save_restore_token(&path, None).expect("forget");
        assert_eq!(load_restore_token(&path), None);
        save_restore_token(&path, None).expect("forgetting twice is fine");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn window_ids_on_wayland_point_to_the_portal() {
        let request = OpenRequest {
            source: Some("window:0x42"),
            backend: Some(Backend::Portal),
            synthetic_size: (8, 8),
            cursor: false,
        };
        let err = open_source(request).err().expect("refused").to_string();
        assert!(err.contains("--source portal") && err.contains("--backend x11"), "{err}");
    }
}
