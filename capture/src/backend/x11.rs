//! X11 backend on `x11rb` with MIT-SHM.
//!
//! * **One copy.** Ring slots are MIT-SHM segments (memfd, passed to the
//!   server with `ShmAttachFd`): `ShmGetImage` makes the X server write the
//!   pixels straight into the slot the consumer will read.
//! * **Unchanged screens are free.** A DAMAGE object on the captured drawable
//!   reports changes; a tick with no damage, no cursor change and no forced
//!   frame makes one `QueryPointer` round trip (only when the cursor is drawn)
//!   and publishes nothing. Root damage marks monitor captures dirty even when
//!   the change was on another monitor (fetching the damage region would cost
//!   a round trip per change; a spurious frame of an unchanged monitor costs
//!   a near-empty P-frame).
//! * **Windows** are captured from their COMPOSITE backing pixmap, so
//!   overlapping windows and off-screen parts do not leak into or cut the
//!   picture; moves need nothing, resizes rename the pixmap and reallocate
//!   slots. `DestroyNotify` ends the stream with [`CaptureError::SourceGone`];
//!   an unmapped (minimised) window publishes nothing until it is mapped again.
//! * **Cursor** from XFIXES (image fetched only when its shape changes),
//!   alpha-blended into the slot after the server's write.

use std::ffi::CStr;
use std::os::fd::{FromRawFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::Arc;
use std::time::Instant;

use x11rb::connection::{Connection, RequestConnection};
use x11rb::errors::{ConnectionError, ReplyError, ReplyOrIdError};
use x11rb::protocol::ErrorKind;
use x11rb::protocol::Event;
use x11rb::protocol::composite::{self, ConnectionExt as _};
use x11rb::protocol::damage;
use x11rb::protocol::randr::ConnectionExt as _;
use x11rb::protocol::shm::{self, ConnectionExt as _};
use x11rb::protocol::xfixes::{self, ConnectionExt as _};
use x11rb::protocol::xproto::{self, ConnectionExt as _};
use x11rb::rust_connection::RustConnection;
use x11rb::x11_utils::X11Error;

use super::x11_wire::{Extensions, Wire, WireError};
use super::{CaptureBackend, Tick};
use crate::error::{CaptureError, Result};
use crate::frame::{DamageRect, FrameMeta, PixelFormat};
use crate::ring::{RingProducer, SlotMemory};
use crate::source::{SourceId, SourceInfo, SourceKind, Thumbnail};

/// Windows smaller than this on either side are not listed.
pub const MIN_WINDOW_SIDE: u32 = 40;

fn x11_err(e: impl std::fmt::Display) -> CaptureError {
    CaptureError::X11(e.to_string())
}

impl From<ConnectionError> for CaptureError {
    fn from(e: ConnectionError) -> Self {
        match e {
            // The socket failed: the server exited, crashed or was killed.
            ConnectionError::IoError(io) => CaptureError::DisplayLost(io.to_string()),
            e => x11_err(e),
        }
    }
}

impl From<ReplyError> for CaptureError {
    fn from(e: ReplyError) -> Self {
        match e {
            ReplyError::ConnectionError(c) => c.into(),
            e => x11_err(e),
        }
    }
}

impl From<ReplyOrIdError> for CaptureError {
    fn from(e: ReplyOrIdError) -> Self {
        match e {
            ReplyOrIdError::ConnectionError(c) => c.into(),
            e => x11_err(e),
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Atoms {
    net_client_list: xproto::Atom,
    net_wm_name: xproto::Atom,
    utf8_string: xproto::Atom,
}

/// A connection to an X server, used to list sources and start captures.
#[derive(Clone)]
pub struct X11Session {
    conn: Arc<RustConnection>,
    /// The display name given to `connect_to` (`None`: `$DISPLAY`), for the
    /// capture's own connection.
    display: Option<String>,
    screen_num: usize,
    atoms: Atoms,
}

impl std::fmt::Debug for X11Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("X11Session").field("screen", &self.screen_num).finish()
    }
}

impl X11Session {
    /// Connects to `$DISPLAY`.
    pub fn connect() -> Result<Self> {
        Self::connect_to(None)
    }

    /// Connects to the given display (e.g. `":99"`), or `$DISPLAY` if `None`.
    pub fn connect_to(display: Option<&str>) -> Result<Self> {
        let shown = display.map(str::to_owned).or_else(|| std::env::var("DISPLAY").ok());
        let (conn, screen_num) = RustConnection::connect(display)
            .map_err(|e| CaptureError::NoDisplay { display: shown.clone(), reason: e.to_string() })?;
        let conn = Arc::new(conn);
        let intern = |name: &[u8]| -> Result<xproto::Atom> { Ok(conn.intern_atom(false, name)?.reply()?.atom) };
        let atoms = Atoms {
            net_client_list: intern(b"_NET_CLIENT_LIST")?,
            net_wm_name: intern(b"_NET_WM_NAME")?,
            utf8_string: intern(b"UTF8_STRING")?,
        };
        Ok(Self { conn, display: display.map(str::to_owned), screen_num, atoms })
    }

    fn screen(&self) -> &xproto::Screen {
        &self.conn.setup().roots[self.screen_num]
    }

    /// The root window.
    pub fn root(&self) -> xproto::Window {
        self.screen().root
    }

    /// The raw connection (for tests and tools that draw on the display).
    pub fn connection(&self) -> &Arc<RustConnection> {
        &self.conn
    }

    fn has_extension(&self, name: &'static str) -> Result<bool> {
        Ok(self.conn.extension_information(name)?.is_some())
    }

    /// Current size of the whole screen, read from the server (it changes
    /// with RandR; the connection setup keeps the size at connect time).
    fn screen_size(&self) -> Result<(u32, u32)> {
        let g = self.conn.get_geometry(self.root())?.reply()?;
        Ok((u32::from(g.width), u32::from(g.height)))
    }

    /// Displays: the whole screen, then each RandR monitor.
    pub fn list_displays(&self) -> Result<Vec<SourceInfo>> {
        let (width, height) = self.screen_size()?;
        let mut out = vec![SourceInfo {
            id: SourceId::Screen.to_string(),
            kind: SourceKind::Display,
            name: "Whole screen".into(),
            app: None,
            x: 0,
            y: 0,
            width,
            height,
            primary: false,
        }];
        if self.has_extension(x11rb::protocol::randr::X11_EXTENSION_NAME)? {
            self.conn.randr_query_version(1, 5)?.reply()?;
            let monitors = self.conn.randr_get_monitors(self.root(), true)?.reply()?.monitors;
            let names: Vec<_> = monitors.iter().map(|m| self.conn.get_atom_name(m.name)).collect::<Result<_, _>>()?;
            for (m, name) in monitors.iter().zip(names) {
                let name = String::from_utf8_lossy(&name.reply()?.name).into_owned();
                out.push(SourceInfo {
                    id: SourceId::Monitor(name.clone()).to_string(),
                    kind: SourceKind::Display,
                    name,
                    app: None,
                    x: m.x.into(),
                    y: m.y.into(),
                    width: m.width.into(),
                    height: m.height.into(),
                    primary: m.primary,
                });
            }
        }
        // With no monitor flagged primary, the first one (or the screen) is.
        if !out.iter().any(|s| s.primary) {
            let i = usize::from(out.len() > 1);
            out[i].primary = true;
        }
        Ok(out)
    }

    /// The id of the primary display (the default source).
    pub fn primary_display(&self) -> Result<SourceId> {
        let displays = self.list_displays()?;
        let primary = displays.iter().find(|d| d.primary).unwrap_or(&displays[0]);
        SourceId::parse(&primary.id)
    }

    /// Top-level windows: the EWMH client list, or, with no window manager,
    /// the root window's mapped children. Unmapped, input-only and tiny
    /// windows are skipped.
    pub fn list_windows(&self) -> Result<Vec<SourceInfo>> {
        let root = self.root();
        let list = self
            .conn
            .get_property(false, root, self.atoms.net_client_list, xproto::AtomEnum::WINDOW, 0, 16384)?
            .reply()?;
        let mut ids: Vec<u32> = list.value32().map(Iterator::collect).unwrap_or_default();
        if ids.is_empty() {
            ids = self.conn.query_tree(root)?.reply()?.children;
        }
        // Pipeline all requests, then collect replies: one round trip in total.
        let conn = &*self.conn;
        let mut pending = Vec::with_capacity(ids.len());
        for &w in &ids {
            pending.push((
                w,
                conn.get_window_attributes(w)?,
                conn.get_geometry(w)?,
                conn.translate_coordinates(w, root, 0, 0)?,
                conn.get_property(false, w, self.atoms.net_wm_name, self.atoms.utf8_string, 0, 1024)?,
                conn.get_property(false, w, xproto::AtomEnum::WM_NAME, xproto::AtomEnum::ANY, 0, 1024)?,
                conn.get_property(false, w, xproto::AtomEnum::WM_CLASS, xproto::AtomEnum::STRING, 0, 1024)?,
            ));
        }
        let mut out = Vec::new();
        for (w, attrs, geom, pos, net_name, name, class) in pending {
            // A window may vanish between listing and asking: skip it.
            let (Ok(attrs), Ok(geom), Ok(pos)) = (attrs.reply(), geom.reply(), pos.reply()) else { continue };
            if attrs.map_state != xproto::MapState::VIEWABLE || attrs.class == xproto::WindowClass::INPUT_ONLY {
                continue;
            }
            let (width, height) = (u32::from(geom.width), u32::from(geom.height));
            if width < MIN_WINDOW_SIDE || height < MIN_WINDOW_SIDE {
                continue;
            }
            let title = [net_name.reply().ok(), name.reply().ok()]
                .into_iter()
                .flatten()
                .map(|p| String::from_utf8_lossy(&p.value).into_owned())
                .find(|t| !t.is_empty());
            let app = class.reply().ok().and_then(|p| {
                // WM_CLASS is "instance\0class\0": the class names the application.
                p.value
                    .split(|&b| b == 0)
                    .filter(|s| !s.is_empty())
                    .nth(1)
                    .map(|s| String::from_utf8_lossy(s).into_owned())
            });
            out.push(SourceInfo {
                id: SourceId::Window(w).to_string(),
                kind: SourceKind::Window,
                name: title.unwrap_or_else(|| format!("window {w:#x}")),
                app,
                x: pos.dst_x.into(),
                y: pos.dst_y.into(),
                width,
                height,
                primary: false,
            });
        }
        Ok(out)
    }

    /// Displays then windows.
    pub fn list_sources(&self) -> Result<Vec<SourceInfo>> {
        let mut all = self.list_displays()?;
        all.extend(self.list_windows()?);
        Ok(all)
    }

    /// The on-screen rectangle of a source, clipped to the screen.
    fn source_rect(&self, id: &SourceId) -> Result<Rect> {
        let (sw, sh) = self.screen_size()?;
        let rect = match id {
            SourceId::Screen => Rect { x: 0, y: 0, width: sw, height: sh },
            SourceId::Monitor(name) => {
                let m = self.find_monitor(name)?;
                Rect { x: m.x, y: m.y, width: m.width, height: m.height }
            }
            SourceId::Window(w) => {
                let unknown = || CaptureError::UnknownSource(id.to_string());
                let geom = self.conn.get_geometry(*w)?.reply().map_err(|_| unknown())?;
                let pos = self.conn.translate_coordinates(*w, self.root(), 0, 0)?.reply().map_err(|_| unknown())?;
                Rect { x: pos.dst_x.into(), y: pos.dst_y.into(), width: geom.width.into(), height: geom.height.into() }
            }
            SourceId::Synthetic(_) | SourceId::Portal => return Err(CaptureError::UnknownSource(id.to_string())),
        };
        rect.clip(sw, sh).ok_or_else(|| CaptureError::SourceGone(format!("{id} is entirely off-screen")))
    }

    fn find_monitor(&self, name: &str) -> Result<SourceInfo> {
        self.list_displays()?
            .into_iter()
            .find(|d| d.kind == SourceKind::Display && d.id == SourceId::Monitor(name.to_owned()).to_string())
            .ok_or_else(|| CaptureError::UnknownSource(SourceId::Monitor(name.to_owned()).to_string()))
    }

    /// A small preview of a source (what is visible on screen), at most
    /// `max_width`×`max_height`. Uses plain GetImage: meant for low rates.
    pub fn thumbnail(&self, id: &SourceId, max_width: u32, max_height: u32) -> Result<Thumbnail> {
        let r = self.source_rect(id)?;
        let image = self
            .conn
            .get_image(
                xproto::ImageFormat::Z_PIXMAP,
                self.root(),
                r.x as i16,
                r.y as i16,
                r.width as u16,
                r.height as u16,
                !0,
            )?
            .reply()?;
        if image.data.len() < r.width as usize * r.height as usize * 4 {
            return Err(x11_err(format!("GetImage returned {} bytes for {}x{}", image.data.len(), r.width, r.height)));
        }
        Ok(Thumbnail::downscale(&image.data, r.width, r.height, r.width as usize * 4, max_width, max_height))
    }

    /// Starts capturing `id`.
    pub fn capture(&self, id: &SourceId) -> Result<X11Capture> {
        X11Capture::new(self.clone(), id)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Rect {
    x: i32,
    y: i32,
    width: u32,
    height: u32,
}

impl Rect {
    fn clip(self, screen_w: u32, screen_h: u32) -> Option<Rect> {
        let x0 = self.x.max(0);
        let y0 = self.y.max(0);
        let x1 = (self.x + self.width as i32).min(screen_w as i32);
        let y1 = (self.y + self.height as i32).min(screen_h as i32);
        (x1 > x0 && y1 > y0).then(|| Rect { x: x0, y: y0, width: (x1 - x0) as u32, height: (y1 - y0) as u32 })
    }

    /// The smallest rectangle covering both.
    fn union(self, other: Option<Rect>) -> Rect {
        let Some(o) = other else { return self };
        let (x0, y0) = (self.x.min(o.x), self.y.min(o.y));
        let x1 = (self.x + self.width as i32).max(o.x + o.width as i32);
        let y1 = (self.y + self.height as i32).max(o.y + o.height as i32);
        Rect { x: x0, y: y0, width: (x1 - x0) as u32, height: (y1 - y0) as u32 }
    }

    fn intersects(&self, other: &Rect) -> bool {
        self.x < other.x + other.width as i32
            && other.x < self.x + self.width as i32
            && self.y < other.y + other.height as i32
            && other.y < self.y + self.height as i32
    }
}

/// Owns one memfd-backed MIT-SHM segment attached to the server.
struct ShmSegment {
    conn: Arc<RustConnection>,
    seg: shm::Seg,
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is plain shared memory; access is synchronised by the ring.
unsafe impl Send for ShmSegment {}
// SAFETY: as above.
unsafe impl Sync for ShmSegment {}

impl Drop for ShmSegment {
    fn drop(&mut self) {
        // Errors here mean the connection is gone, and the server frees the
        // segment with it.
        let _ = self.conn.shm_detach(self.seg);
        let _ = self.conn.flush();
        // SAFETY: ptr/len come from our successful mmap and nothing references
        // the mapping any more (the ring dropped the SlotMemory holding us).
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// Creates a shared-memory segment of `len` bytes known to the X server.
pub fn alloc_shm(conn: &Arc<RustConnection>, len: usize) -> Result<SlotMemory> {
    let len = len.max(1);
    let shm_err = |what: &str| CaptureError::Shm(format!("{what}: {}", std::io::Error::last_os_error()));
    const NAME: &CStr = c"peep-frame";
    // SAFETY: NAME is NUL-terminated; memfd_create has no other preconditions.
    let raw = unsafe { libc::memfd_create(NAME.as_ptr(), libc::MFD_CLOEXEC) };
    if raw < 0 {
        return Err(shm_err("memfd_create"));
    }
    // SAFETY: raw is a fresh fd we own.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    use std::os::fd::AsRawFd;
    // SAFETY: fd is valid; a failing ftruncate is reported.
    if unsafe { libc::ftruncate(fd.as_raw_fd(), len as libc::off_t) } != 0 {
        return Err(shm_err("ftruncate"));
    }
    // SAFETY: mapping a valid fd of at least len bytes, shared, fresh address.
    let ptr = unsafe {
        libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_SHARED, fd.as_raw_fd(), 0)
    };
    if ptr == libc::MAP_FAILED {
        return Err(shm_err("mmap"));
    }
    let ptr = NonNull::new(ptr.cast::<u8>()).ok_or_else(|| shm_err("mmap returned null"))?;
    let seg = conn.generate_id()?;
    let segment = ShmSegment { conn: conn.clone(), seg, ptr, len };
    // The server gets its own copy of the fd; ours closes when `fd` drops.
    conn.shm_attach_fd(seg, fd, false)?
        .check()
        .map_err(|e| CaptureError::Shm(format!("the X server refused the shared-memory segment: {e}")))?;
    // SAFETY: the mapping is valid for len bytes until `segment` drops, which
    // the SlotMemory owns; the X server writes only during ShmGetImage
    // requests the producer makes and waits for while it owns the slot.
    Ok(unsafe { SlotMemory::from_raw(ptr, len, u64::from(seg), Box::new(segment)) })
}

#[derive(Debug)]
enum Target {
    /// A rectangle of the root window (the whole screen or one monitor).
    Root { monitor: Option<String> },
    /// A window, read from its COMPOSITE backing pixmap.
    Window { id: xproto::Window, pixmap: Option<xproto::Pixmap>, border: u16, mapped: bool },
}

#[derive(Debug, Default)]
struct Cursor {
    visible: bool,
    image: Vec<u32>,
    width: u16,
    height: u16,
    xhot: u16,
    yhot: u16,
    /// Position in capture-area coordinates of the last drawn cursor.
    pos: (i32, i32),
    shape_changed: bool,
}

impl Cursor {
    fn rect(&self, pos: (i32, i32)) -> Rect {
        Rect {
            x: pos.0 - i32::from(self.xhot),
            y: pos.1 - i32::from(self.yhot),
            width: self.width.into(),
            height: self.height.into(),
        }
    }
}

/// A running X11 capture of one source.
pub struct X11Capture {
    session: X11Session,
    target: Target,
    /// Capture rectangle in the drawable's coordinates (root: screen coordinates).
    rect: Rect,
    format: PixelFormat,
    /// The hot-path connection: DAMAGE, cursor-shape events, ShmGetImage,
    /// QueryPointer (no allocation per frame).
    wire: Wire,
    damage: Option<damage::Damage>,
    dirty: bool,
    /// The next frame's damage rectangle is unknown (first frame, resizes,
    /// remaps, settings): publish it as "everything may have changed".
    damage_unknown: bool,
    /// Where the cursor was or is drawn, if it moved or changed shape since
    /// the last frame (capture-area coordinates).
    cursor_damage: Option<Rect>,
    cursor: Cursor,
    has_xfixes: bool,
    description: String,
}

impl std::fmt::Debug for X11Capture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("X11Capture").field("target", &self.target).field("rect", &self.rect).finish()
    }
}

impl X11Capture {
    fn new(session: X11Session, id: &SourceId) -> Result<Self> {
        let conn = session.conn.clone();
        if !session.has_extension(shm::X11_EXTENSION_NAME)? {
            return Err(CaptureError::MissingExtension("MIT-SHM"));
        }
        let shm_version = conn.shm_query_version()?.reply()?;
        if (shm_version.major_version, shm_version.minor_version) < (1, 2) {
            return Err(CaptureError::MissingExtension("MIT-SHM 1.2 (file-descriptor passing)"));
        }
        let has_xfixes = session.has_extension(xfixes::X11_EXTENSION_NAME)?;
        if has_xfixes {
            conn.xfixes_query_version(5, 0)?.reply()?;
        }
        let has_damage = has_xfixes && session.has_extension(damage::X11_EXTENSION_NAME)?;
        let info = |name: &'static str| -> Result<Option<(u8, u8)>> {
            Ok(conn.extension_information(name)?.map(|i| (i.major_opcode, i.first_event)))
        };
        let ext = Extensions {
            shm_opcode: info(shm::X11_EXTENSION_NAME)?.ok_or(CaptureError::MissingExtension("MIT-SHM"))?.0,
            damage: if has_damage { info(damage::X11_EXTENSION_NAME)? } else { None },
            xfixes: if has_xfixes { info(xfixes::X11_EXTENSION_NAME)? } else { None },
        };
        let mut wire = Wire::connect(session.display.as_deref(), ext)?;
        let root = session.root();
        let (target, rect, drawable, format, description) = match id {
            SourceId::Screen | SourceId::Monitor(_) => {
                let rect = session.source_rect(id)?;
                // Follow screen size changes (RandR resizes the root window).
                conn.change_window_attributes(
                    root,
                    &xproto::ChangeWindowAttributesAux::new().event_mask(xproto::EventMask::STRUCTURE_NOTIFY),
                )?;
                let monitor = match id {
                    SourceId::Monitor(name) => Some(name.clone()),
                    _ => None,
                };
                let depth = session.screen().root_depth;
                (Target::Root { monitor }, rect, root, format_for_depth(depth)?, id.to_string())
            }
            SourceId::Window(w) => {
                if !session.has_extension(composite::X11_EXTENSION_NAME)? {
                    return Err(CaptureError::MissingExtension("Composite (needed to capture single windows)"));
                }
                conn.composite_query_version(0, 4)?.reply()?;
                let unknown = || CaptureError::UnknownSource(id.to_string());
                let attrs = conn.get_window_attributes(*w)?.reply().map_err(|_| unknown())?;
                let geom = conn.get_geometry(*w)?.reply().map_err(|_| unknown())?;
                if attrs.class == xproto::WindowClass::INPUT_ONLY {
                    return Err(unknown());
                }
                conn.change_window_attributes(
                    *w,
                    &xproto::ChangeWindowAttributesAux::new().event_mask(xproto::EventMask::STRUCTURE_NOTIFY),
                )?
                .check()
                .map_err(|_| unknown())?;
                // Keep the window's contents in an off-screen pixmap. Automatic
                // redirection leaves the screen looking the same.
                conn.composite_redirect_window(*w, composite::Redirect::AUTOMATIC)?;
                let mapped = attrs.map_state == xproto::MapState::VIEWABLE;
                let target = Target::Window { id: *w, pixmap: None, border: geom.border_width, mapped };
                let rect = Rect {
                    x: geom.border_width.into(),
                    y: geom.border_width.into(),
                    width: geom.width.into(),
                    height: geom.height.into(),
                };
                (target, rect, *w, format_for_depth(geom.depth)?, format!("window {w:#x}"))
            }
            SourceId::Synthetic(_) | SourceId::Portal => return Err(CaptureError::UnknownSource(id.to_string())),
        };
        conn.flush()?;
        let damage = if has_damage {
            let d = wire.generate_id()?;
            wire.damage_create(d, drawable)?;
            Some(d)
        } else {
            None
        };
        if has_xfixes {
            wire.select_cursor_input(root)?;
        }
        // Report a bad drawable now rather than as a stray error later.
        wire.sync()?;
        if let Some(e) = wire.take_async_error() {
            return Err(x11_err(format!("setting up change notifications failed: {e:?}")));
        }
        let mut capture = Self {
            session,
            target,
            rect,
            format,
            wire,
            damage,
            dirty: true,
            damage_unknown: true,
            cursor_damage: None,
            cursor: Cursor { visible: has_xfixes, shape_changed: true, ..Cursor::default() },
            has_xfixes,
            description,
        };
        capture.rename_pixmap()?;
        Ok(capture)
    }

    fn gone(&self) -> CaptureError {
        match &self.target {
            Target::Window { id, .. } => CaptureError::SourceGone(format!("window {id:#x} was closed")),
            Target::Root { monitor: Some(name) } => {
                CaptureError::SourceGone(format!("monitor {name} was disconnected"))
            }
            Target::Root { monitor: None } => CaptureError::SourceGone("the screen went away".into()),
        }
    }

    /// (Re)names the window's backing pixmap after a map or resize.
    fn rename_pixmap(&mut self) -> Result<()> {
        let conn = self.session.conn.clone();
        let Target::Window { id, pixmap, mapped, .. } = &mut self.target else { return Ok(()) };
        if let Some(old) = pixmap.take() {
            conn.free_pixmap(old)?;
        }
        if !*mapped {
            return Ok(());
        }
        let p = conn.generate_id()?;
        match conn.composite_name_window_pixmap(*id, p)?.check() {
            Ok(()) => *pixmap = Some(p),
            // Unmapped between our check and now: wait for MapNotify.
            Err(ReplyError::X11Error(e)) if e.error_kind == ErrorKind::Match => *mapped = false,
            Err(ReplyError::X11Error(e)) if e.error_kind == ErrorKind::Window => return Err(self.gone()),
            Err(e) => return Err(e.into()),
        }
        self.mark_all_dirty();
        Ok(())
    }

    /// The next frame may differ anywhere (no damage rectangle for it).
    fn mark_all_dirty(&mut self) {
        self.dirty = true;
        self.damage_unknown = true;
    }

    fn handle_error(&self, e: &X11Error) -> Result<()> {
        match (&self.target, e.error_kind) {
            (Target::Window { id, .. }, ErrorKind::Window | ErrorKind::Drawable) if e.bad_value == *id => {
                Err(self.gone())
            }
            // Errors of requests we did not check (e.g. a free of a pixmap the
            // server already freed with its window) are not fatal.
            _ => {
                tracing::debug!(?e, "X11 error event");
                Ok(())
            }
        }
    }

    /// Applies what the capture connection has seen (damage, cursor shape
    /// changes, errors of requests without replies). Returns whether
    /// anything changed.
    fn apply_wire_events(&mut self) -> Result<bool> {
        let seen = self.wire.take_seen();
        if seen.damage {
            self.dirty = true;
        }
        if seen.cursor_shape {
            self.cursor.shape_changed = true;
        }
        if let Some(e) = self.wire.take_async_error() {
            self.handle_wire_error(&e)?;
        }
        Ok(seen.damage || (seen.cursor_shape && self.cursor.visible))
    }

    fn handle_wire_error(&self, e: &WireError) -> Result<()> {
        // Core error codes: BadWindow 3, BadDrawable 9.
        match &self.target {
            Target::Window { id, .. } if matches!(e.code, 3 | 9) && e.bad_value == *id => Err(self.gone()),
            _ => {
                tracing::debug!(?e, "X11 error on the capture connection");
                Ok(())
            }
        }
    }

    fn drain_events(&mut self) -> Result<()> {
        self.wire.drain()?;
        self.apply_wire_events()?;
        let mut rename = false;
        while let Some(event) = self.session.conn.poll_for_event()? {
            match event {
                Event::DamageNotify(_) => self.dirty = true,
                Event::XfixesCursorNotify(_) => {
                    self.cursor.shape_changed = true;
                }
                Event::Error(e) => self.handle_error(&e)?,
                Event::DestroyNotify(ev) if matches!(self.target, Target::Window { id, .. } if id == ev.window) => {
                    return Err(self.gone());
                }
                Event::UnmapNotify(ev) => {
                    if let Target::Window { id, mapped, .. } = &mut self.target
                        && *id == ev.window
                    {
                        *mapped = false;
                        rename = true;
                    }
                }
                Event::MapNotify(ev) => {
                    if let Target::Window { id, mapped, .. } = &mut self.target
                        && *id == ev.window
                    {
                        *mapped = true;
                        rename = true;
                    }
                }
                Event::ConfigureNotify(ev) => match &mut self.target {
                    Target::Window { id, border, .. } if *id == ev.window => {
                        let size = (u32::from(ev.width), u32::from(ev.height));
                        if size != (self.rect.width, self.rect.height) || *border != ev.border_width {
                            *border = ev.border_width;
                            self.rect = Rect {
                                x: ev.border_width.into(),
                                y: ev.border_width.into(),
                                width: size.0,
                                height: size.1,
                            };
                            rename = true;
                        }
                    }
                    Target::Root { monitor } if ev.window == self.session.root() => {
                        let id = monitor.clone().map_or(SourceId::Screen, SourceId::Monitor);
                        self.rect = self.session.source_rect(&id).map_err(|e| match e {
                            CaptureError::UnknownSource(_) => self.gone(),
                            e => e,
                        })?;
                        self.mark_all_dirty();
                    }
                    _ => {}
                },
                _ => {}
            }
        }
        if rename {
            self.rename_pixmap()?;
        }
        Ok(())
    }

    /// Updates the cursor image and position; marks the frame dirty when the
    /// cursor moved or changed inside the capture area.
    fn update_cursor(&mut self) -> Result<()> {
        let conn = self.session.conn.clone();
        if self.cursor.shape_changed {
            // Where the old shape was drawn must be redrawn.
            self.cursor_damage = Some(self.cursor.rect(self.cursor.pos).union(self.cursor_damage));
            let img = conn.xfixes_get_cursor_image()?.reply()?;
            self.cursor.image.clear();
            self.cursor.image.extend_from_slice(&img.cursor_image);
            (self.cursor.width, self.cursor.height, self.cursor.xhot, self.cursor.yhot) =
                (img.width, img.height, img.xhot, img.yhot);
            self.cursor.shape_changed = false;
            self.cursor_damage = Some(self.cursor.rect(self.cursor.pos).union(self.cursor_damage));
            self.dirty = true;
        }
        let pos = match self.target {
            Target::Root { .. } => match self.wire.query_pointer(self.session.root())? {
                Ok(p) => (i32::from(p.root_x) - self.rect.x, i32::from(p.root_y) - self.rect.y),
                Err(e) => return Err(x11_err(format!("QueryPointer failed: {e:?}"))),
            },
            Target::Window { id, .. } => match self.wire.query_pointer(id)? {
                Ok(p) => (i32::from(p.win_x), i32::from(p.win_y)),
                Err(e) if e.code == 3 => return Err(self.gone()), // BadWindow
                Err(e) => return Err(x11_err(format!("QueryPointer failed: {e:?}"))),
            },
        };
        if pos != self.cursor.pos {
            let area = Rect { x: 0, y: 0, width: self.rect.width, height: self.rect.height };
            if self.cursor.rect(pos).intersects(&area) || self.cursor.rect(self.cursor.pos).intersects(&area) {
                self.dirty = true;
                let moved = self.cursor.rect(pos).union(Some(self.cursor.rect(self.cursor.pos)));
                self.cursor_damage = Some(moved.union(self.cursor_damage));
            }
            self.cursor.pos = pos;
        }
        Ok(())
    }

    fn drawable(&self) -> Option<xproto::Drawable> {
        match &self.target {
            Target::Root { .. } => Some(self.session.root()),
            Target::Window { pixmap, mapped: true, .. } => *pixmap,
            Target::Window { .. } => None,
        }
    }
}

fn format_for_depth(depth: u8) -> Result<PixelFormat> {
    match depth {
        24 => Ok(PixelFormat::Bgrx),
        32 => Ok(PixelFormat::Bgra),
        d => Err(x11_err(format!("unsupported colour depth {d} (Peep captures 24- and 32-bit visuals)"))),
    }
}

/// Alpha-blends a premultiplied ARGB cursor into a BGRx frame.
fn blend_cursor(frame: &mut [u8], width: u32, height: u32, stride_bytes: usize, cursor: &Cursor) {
    let r = cursor.rect(cursor.pos);
    let len = usize::from(cursor.width) * usize::from(cursor.height);
    let Some(image) = cursor.image.get(..len) else { return };
    let overlay = super::cursor::Overlay { argb: image, width: cursor.width.into(), left: r.x, top: r.y };
    super::cursor::blend_premultiplied_argb(frame, width, height, stride_bytes, overlay);
}

impl CaptureBackend for X11Capture {
    fn capture(&mut self, ring: &mut RingProducer, seq: u64, force: bool) -> Result<Tick> {
        self.drain_events()?;
        if self.cursor.visible {
            self.update_cursor()?;
        }
        if self.damage.is_none() {
            self.mark_all_dirty(); // no DAMAGE extension: every tick is a change
        }
        let Some(drawable) = self.drawable() else { return Ok(Tick::Unchanged) };
        if !self.dirty && !force {
            return Ok(Tick::Unchanged);
        }
        let changed = self.dirty;
        if let Some(d) = self.damage {
            // Before the read: changes during or after it raise damage again.
            self.wire.damage_subtract_all(d)?;
        }
        self.dirty = false;
        let Rect { x, y, width, height } = self.rect;
        if width == 0 || height == 0 || width > u32::from(u16::MAX) || height > u32::from(u16::MAX) {
            return Err(CaptureError::InvalidSize { width, height });
        }
        let stride_bytes = width as usize * 4;
        let conn = self.session.conn.clone();
        let mut slot = ring.begin();
        let memory = slot.ensure(stride_bytes * height as usize, |len| alloc_shm(&conn, len))?;
        let seg = memory.key() as shm::Seg;
        let captured_at = Instant::now();
        match self.wire.shm_get_image(drawable, (x as i16, y as i16, width as u16, height as u16), seg)? {
            Ok(()) => {}
            Err(e) => {
                return match &self.target {
                    // The window went away or was unmapped/resized in the meantime:
                    // the next tick's events say which.
                    Target::Window { id, .. } => {
                        if conn.get_window_attributes(*id)?.reply().is_err() {
                            Err(self.gone())
                        } else {
                            self.mark_all_dirty();
                            Ok(Tick::Unchanged)
                        }
                    }
                    Target::Root { .. } => Err(x11_err(format!("ShmGetImage failed: {e:?}"))),
                };
            }
        }
        if self.cursor.visible && !self.cursor.image.is_empty() {
            blend_cursor(memory.as_mut_slice(), width, height, stride_bytes, &self.cursor);
        }
        // Everything DAMAGE reported up to the reply is in this picture.
        let reported = self.wire.take_damage();
        let damage = if std::mem::take(&mut self.damage_unknown) {
            None
        } else {
            // DAMAGE areas are in the drawable's coordinates: the root's
            // for screens and monitors, the window's (= the frame's) for
            // windows.
            let (dx, dy) = match self.target {
                Target::Root { .. } => (i64::from(x), i64::from(y)),
                Target::Window { .. } => (0, 0),
            };
            let clip = |x: i64, y: i64, w: u32, h: u32| DamageRect::clipped(x, y, w.into(), h.into(), width, height);
            let screen = reported
                .map_or(DamageRect::EMPTY, |a| clip(i64::from(a.x) - dx, i64::from(a.y) - dy, a.width, a.height));
            let cursor =
                self.cursor_damage.map_or(DamageRect::EMPTY, |c| clip(c.x.into(), c.y.into(), c.width, c.height));
            Some(screen.union(cursor))
        };
        self.cursor_damage = None;
        slot.publish_with_damage(
            FrameMeta { width, height, stride_bytes, format: self.format, captured_at, seq, changed },
            damage,
        );
        Ok(Tick::Published { changed })
    }

    fn size(&self) -> (u32, u32) {
        (self.rect.width, self.rect.height)
    }

    fn set_cursor(&mut self, visible: bool) {
        self.cursor.visible = visible && self.has_xfixes;
        self.mark_all_dirty();
    }

    fn describe(&self) -> String {
        self.description.clone()
    }

    /// Waits on the capture connection's socket for DAMAGE (or a cursor
    /// shape change, when the cursor is drawn). Structure changes (resizes,
    /// unmaps) arrive on the session's connection and are noticed by the
    /// driver's next poll, at most one frame period later; so are cursor
    /// moves, which X11 does not report to a non-grabbing client without
    /// XInput.
    fn wait_for_change(&mut self, deadline: Instant) -> Result<bool> {
        loop {
            self.wire.drain()?;
            if self.apply_wire_events()? {
                return Ok(true);
            }
            if !self.wire.wait_readable(Some(deadline))? {
                return Ok(false);
            }
        }
    }
}

impl Drop for X11Capture {
    fn drop(&mut self) {
        let conn = &self.session.conn;
        if let Some(d) = self.damage {
            let _ = self.wire.damage_destroy(d);
        }
        if let Target::Window { id, pixmap, .. } = &self.target {
            if let Some(p) = pixmap {
                let _ = conn.free_pixmap(*p);
            }
            let _ = conn.composite_unredirect_window(*id, composite::Redirect::AUTOMATIC);
        }
        let _ = conn.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rect_clipping() {
        let r = Rect { x: -10, y: 5, width: 100, height: 100 };
        assert_eq!(r.clip(50, 50), Some(Rect { x: 0, y: 5, width: 50, height: 45 }));
        assert_eq!(Rect { x: 60, y: 0, width: 10, height: 10 }.clip(50, 50), None);
    }

    #[test]
    fn cursor_blend_is_premultiplied_over() {
        let mut frame = vec![100u8; 4 * 4 * 4];
        let cursor = Cursor {
            visible: true,
            image: vec![0xff00_00ff, 0x8000_0080, 0, 0],
            width: 2,
            height: 2,
            xhot: 0,
            yhot: 0,
            pos: (1, 1),
            shape_changed: false,
        };
        blend_cursor(&mut frame, 4, 4, 16, &cursor);
        let px = |x: usize, y: usize| &frame[y * 16 + x * 4..y * 16 + x * 4 + 3];
        assert_eq!(px(1, 1), &[255, 0, 0]); // opaque blue (B first)
        assert_eq!(px(2, 1), &[177, 49, 49]); // 128 + 100 * 127 / 255, 100 * 127 / 255, …
        assert_eq!(px(1, 2), &[100, 100, 100]); // transparent
        assert_eq!(px(0, 0), &[100, 100, 100]);
    }
}
