//! The ScreenCast portal client (`org.freedesktop.portal.ScreenCast`, through
//! `ashpd`): asks the desktop for a screen or window — the desktop shows its
//! own picker — and returns the PipeWire remote and node that carry the
//! frames.
//!
//! The exchange runs on the thread `peep-portal` (a single-threaded tokio
//! runtime): CreateSession → SelectSources (monitor and window types as
//! offered; cursor as metadata when offered, else embedded; persist mode
//! "until explicitly revoked" with the saved restore token) → Start →
//! OpenPipeWireRemote. The thread then stays to watch the session's `Closed`
//! signal (the user stopped sharing from the desktop's indicator) until the
//! capture ends, and closes the session on the way out.

use std::os::fd::OwnedFd;
use std::sync::mpsc;
use std::thread::JoinHandle;

use ashpd::desktop::PersistMode;
use ashpd::desktop::screencast::{CursorMode, Screencast, SelectSourcesOptions, SourceType};
use ashpd::enumflags2::BitFlags;

use crate::error::{CaptureError, Result};

/// What to ask the portal for.
#[derive(Clone, Default)]
pub struct PortalRequest {
    /// Whether frames should show the mouse cursor.
    pub cursor: bool,
    /// The token a previous share returned: the portal restores that choice
    /// without showing its dialog (tokens are single use; every start returns
    /// a new one, see [`crate::backend::pipewire::PortalCapture::restore_token`]).
    pub restore_token: Option<String>,
    /// The D-Bus session bus to ask (`unix:path=…`); `None`: the
    /// environment's (`DBUS_SESSION_BUS_ADDRESS`).
    pub bus_address: Option<String>,
}

impl std::fmt::Debug for PortalRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The token lets anyone restore the share without a dialog: never shown.
        f.debug_struct("PortalRequest")
            .field("cursor", &self.cursor)
            .field("restore_token", &self.restore_token.as_ref().map(|_| "<redacted>"))
            .field("bus_address", &self.bus_address)
            .finish()
    }
}

/// How the cursor reaches Peep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CursorDelivery {
    /// Not at all.
    Hidden,
    /// Drawn into the frames by the compositor.
    Embedded,
    /// As PipeWire buffer metadata; Peep draws it.
    Metadata,
}

/// What the user chose, as the portal describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chosen {
    /// `monitor`, `window` or `virtual` (when the portal says).
    pub kind: Option<&'static str>,
    /// Size in pixels (when the portal says).
    pub size: Option<(u32, u32)>,
}

impl Chosen {
    /// A short description, e.g. `screen 1920x1080 (chosen in the desktop's dialog)`.
    pub fn describe(&self) -> String {
        let kind = match self.kind {
            Some("monitor") | None => "screen",
            Some(other) => other,
        };
        match self.size {
            Some((w, h)) => format!("{kind} {w}x{h} (chosen in the desktop's dialog)"),
            None => format!("{kind} (chosen in the desktop's dialog)"),
        }
    }
}

/// A started screen cast: the PipeWire remote and node to read.
pub(crate) struct Started {
    pub fd: OwnedFd,
    pub node_id: u32,
    pub chosen: Chosen,
    pub restore_token: Option<String>,
    pub cursor: CursorDelivery,
    pub session: PortalSession,
}

/// The portal session's watcher thread; closing the session when dropped.
pub(crate) struct PortalSession {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for PortalSession {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Asks the portal for a screen cast. Blocks while the desktop's dialog is
/// open (as long as the user takes). `on_closed` runs on the portal thread if
/// the desktop closes the session later.
pub(crate) fn start(request: &PortalRequest, on_closed: Box<dyn FnOnce() + Send>) -> Result<Started> {
    let (result_tx, result_rx) = mpsc::sync_channel(1);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let request = request.clone();
    let thread = std::thread::Builder::new()
        .name("peep-portal".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(r) => r,
                Err(e) => {
                    let _ = result_tx.send(Err(CaptureError::Portal(format!("cannot start the portal thread: {e}"))));
                    return;
                }
            };
            runtime.block_on(async move {
                let (proxy, session, started) = match handshake(&request).await {
                    Ok(v) => v,
                    Err(e) => {
                        let _ = result_tx.send(Err(e));
                        return;
                    }
                };
                let closed = session.receive_closed().await;
                if result_tx.send(Ok(started)).is_err() {
                    let _ = session.close().await;
                    return;
                }
                match closed {
                    Ok(mut closed) => {
                        use futures_util::StreamExt as _;
                        tokio::select! {
                            Some(_) = closed.next() => {
                                tracing::debug!("the desktop closed the screen-cast session");
                                on_closed();
                            }
                            _ = stop_rx => {
                                let _ = session.close().await;
                            }
                        }
                    }
                    Err(e) => {
                        // Without the signal the PipeWire stream still ends
                        // when the desktop stops the cast.
                        tracing::debug!("cannot watch the portal session's Closed signal: {e}");
                        let _ = stop_rx.await;
                        let _ = session.close().await;
                    }
                }
                drop(proxy);
            });
        })
        .map_err(|e| CaptureError::Portal(format!("cannot start the portal thread: {e}")))?;
    let session = PortalSession { stop: Some(stop_tx), thread: Some(thread) };
    match result_rx.recv() {
        Ok(Ok(mut started)) => {
            started.session = session;
            Ok(started)
        }
        Ok(Err(e)) => Err(e),
        Err(_) => Err(CaptureError::Portal("the portal thread ended without an answer".into())),
    }
}

type Handshake = (Screencast, ashpd::desktop::Session<Screencast>, Started);

async fn handshake(request: &PortalRequest) -> Result<Handshake> {
    // A connection of our own (ashpd would otherwise cache one per process).
    let no_bus = |e: ashpd::zbus::Error| CaptureError::PortalUnavailable(format!("no D-Bus session bus: {e}"));
    let connection = match &request.bus_address {
        None => ashpd::zbus::Connection::session().await.map_err(no_bus)?,
        Some(address) => ashpd::zbus::connection::Builder::address(address.as_str())
            .map_err(no_bus)?
            .build()
            .await
            .map_err(no_bus)?,
    };
    let proxy = Screencast::with_connection(connection).await.map_err(portal_error)?;
    let offered = proxy.available_source_types().await.map_err(portal_error)?;
    let cursor_modes = proxy.available_cursor_modes().await.unwrap_or_else(|_| BitFlags::empty());
    let mut types = offered & (SourceType::Monitor | SourceType::Window);
    if types.is_empty() {
        types = SourceType::Monitor.into();
    }
    let cursor = choose_cursor(request.cursor, cursor_modes);
    let session = proxy.create_session(Default::default()).await.map_err(portal_error)?;
    let mut options =
        SelectSourcesOptions::default().set_sources(types).set_multiple(false).set_cursor_mode(match cursor {
            CursorDelivery::Hidden => CursorMode::Hidden,
            CursorDelivery::Embedded => CursorMode::Embedded,
            CursorDelivery::Metadata => CursorMode::Metadata,
        });
    // Restore tokens and persist modes came with version 4 of the interface.
    if proxy.version() >= 4 {
        options = options
            .set_persist_mode(PersistMode::ExplicitlyRevoked)
            .set_restore_token(request.restore_token.as_deref());
    }
    proxy.select_sources(&session, options).await.map_err(portal_error)?.response().map_err(portal_error)?;
    let streams = proxy.start(&session, None, Default::default()).await.map_err(portal_error)?;
    let streams = streams.response().map_err(portal_error)?;
    let Some(stream) = streams.streams().first() else {
        return Err(CaptureError::Portal("the portal started a screen cast without a stream".into()));
    };
    let chosen = Chosen {
        kind: stream.source_type().map(|t| match t {
            SourceType::Monitor => "monitor",
            SourceType::Window => "window",
            SourceType::Virtual => "virtual",
        }),
        size: stream.size().and_then(|(w, h)| Some((u32::try_from(w).ok()?, u32::try_from(h).ok()?))),
    };
    let node_id = stream.pipe_wire_node_id();
    let restore_token = streams.restore_token().map(str::to_owned);
    let fd = proxy.open_pipe_wire_remote(&session, Default::default()).await.map_err(portal_error)?;
    let started =
        Started { fd, node_id, chosen, restore_token, cursor, session: PortalSession { stop: None, thread: None } };
    Ok((proxy, session, started))
}

/// Metadata when offered (Peep draws the cursor and can hide it), else
/// embedded, else none.
fn choose_cursor(wanted: bool, offered: BitFlags<CursorMode>) -> CursorDelivery {
    if !wanted {
        CursorDelivery::Hidden
    } else if offered.contains(CursorMode::Metadata) {
        CursorDelivery::Metadata
    } else if offered.contains(CursorMode::Embedded) {
        CursorDelivery::Embedded
    } else {
        CursorDelivery::Hidden
    }
}

/// D-Bus errors that mean nobody provides the portal.
const UNAVAILABLE: [&str; 6] = [
    "org.freedesktop.DBus.Error.ServiceUnknown",
    "org.freedesktop.DBus.Error.NameHasNoOwner",
    "org.freedesktop.DBus.Error.UnknownInterface",
    "org.freedesktop.DBus.Error.UnknownMethod",
    "org.freedesktop.DBus.Error.UnknownObject",
    "org.freedesktop.DBus.Error.Spawn.ServiceNotFound",
];

fn portal_error(e: ashpd::Error) -> CaptureError {
    use ashpd::desktop::ResponseError;
    use ashpd::zbus::DBusError as _;
    match e {
        ashpd::Error::Response(ResponseError::Cancelled) => CaptureError::Cancelled,
        ashpd::Error::Response(ResponseError::Other) => {
            CaptureError::Portal("the desktop refused to start the screen cast".into())
        }
        ashpd::Error::PortalNotFound(interface) => {
            CaptureError::PortalUnavailable(format!("no desktop backend provides {interface}"))
        }
        ashpd::Error::Zbus(ashpd::zbus::Error::MethodError(name, detail, _))
            if UNAVAILABLE.contains(&name.as_str()) =>
        {
            CaptureError::PortalUnavailable(detail.unwrap_or_else(|| name.to_string()))
        }
        ashpd::Error::Zbus(ashpd::zbus::Error::FDO(fdo)) if UNAVAILABLE.contains(&fdo.name().as_str()) => {
            CaptureError::PortalUnavailable(fdo.to_string())
        }
        ashpd::Error::Zbus(ashpd::zbus::Error::InterfaceNotFound) => {
            CaptureError::PortalUnavailable("org.freedesktop.portal.ScreenCast is not offered".into())
        }
        other => CaptureError::Portal(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_prefers_metadata_then_embedded() {
        let all = CursorMode::Hidden | CursorMode::Embedded | CursorMode::Metadata;
        assert_eq!(choose_cursor(true, all), CursorDelivery::Metadata);
        assert_eq!(choose_cursor(true, CursorMode::Hidden | CursorMode::Embedded), CursorDelivery::Embedded);
        assert_eq!(choose_cursor(true, CursorMode::Hidden.into()), CursorDelivery::Hidden);
        assert_eq!(choose_cursor(false, all), CursorDelivery::Hidden);
    }

    #[test]
    fn cancel_and_missing_portal_are_told_apart() {
        use ashpd::desktop::ResponseError;
        assert!(matches!(portal_error(ashpd::Error::Response(ResponseError::Cancelled)), CaptureError::Cancelled));
        assert_eq!(CaptureError::Cancelled.to_string(), "you cancelled the selection");
        let missing = portal_error(ashpd::Error::PortalNotFound(
            ashpd::zbus::names::OwnedInterfaceName::try_from("org.freedesktop.portal.ScreenCast").expect("name"),
        ));
        let text = missing.to_string();
        assert!(matches!(missing, CaptureError::PortalUnavailable(_)), "{text}");
        assert!(text.contains("xdg-desktop-portal-wlr") && text.contains("ScreenCast"), "{text}");
    }

    #[test]
    fn restore_token_is_not_in_debug_output() {
        let r = PortalRequest { cursor: true, restore_token: Some("0123-secret-token".into()), bus_address: None };
        assert!(!format!("{r:?}").contains("secret"));
    }
}
