//! A second, private X connection for the capture hot path, with its own
//! request writer and reply reader over fixed buffers: no heap allocation
//! per frame.
//!
//! x11rb's `RustConnection` serialises every request into fresh buffers and
//! reads every reply and event into a fresh `Vec` (≈ 4.5 allocations per
//! captured frame). The hot path needs only four request kinds, all of fixed
//! size with fixed-size (32-byte) replies: `ShmGetImage`, `DamageSubtract`,
//! `QueryPointer` and, for synchronisation, `GetInputFocus`. They are
//! written here by hand into a stack buffer; replies, errors and events are
//! read into one buffer allocated when the connection opens.
//!
//! The connection is set up with x11rb's sans-IO handshake (`Connect`,
//! Xauthority lookup) and its socket code, then never touched by x11rb
//! again. Resources are server-global, so SHM segments and pixmaps created
//! on the main connection are usable here; the DAMAGE object and the XFIXES
//! cursor selection live on this connection so that their events arrive
//! here, where [`Wire::wait_readable`] can wait for them.
//!
//! Byte order: the handshake announces the machine's own byte order, so
//! every field is written and read in native order.

use std::fs::File;
use std::io::{ErrorKind, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd};
use std::time::Instant;

use x11rb::reexports::x11rb_protocol::connect::Connect;
use x11rb::reexports::x11rb_protocol::id_allocator::IdAllocator;
use x11rb::reexports::x11rb_protocol::parse_display::parse_display;
use x11rb::reexports::x11rb_protocol::protocol::xproto::Setup;
use x11rb::reexports::x11rb_protocol::xauth::get_auth;
use x11rb::rust_connection::DefaultStream;

use crate::error::{CaptureError, Result};

/// Largest packet this connection expects (replies here are 32 bytes;
/// anything longer is a protocol surprise reported as an error).
const BUFFER_BYTES: usize = 4096;

const X_QUERY_POINTER: u8 = 38;
const X_GET_INPUT_FOCUS: u8 = 43;
const SHM_GET_IMAGE: u8 = 4;
const DAMAGE_QUERY_VERSION: u8 = 0;
const DAMAGE_CREATE: u8 = 1;
const DAMAGE_DESTROY: u8 = 2;
const DAMAGE_SUBTRACT: u8 = 3;
const XFIXES_QUERY_VERSION: u8 = 0;
const XFIXES_SELECT_CURSOR_INPUT: u8 = 3;

/// Major opcodes and first event codes of the extensions the hot path uses
/// (server-global: read them from any connection).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Extensions {
    pub shm_opcode: u8,
    /// DAMAGE: (major opcode, first event).
    pub damage: Option<(u8, u8)>,
    /// XFIXES: (major opcode, first event).
    pub xfixes: Option<(u8, u8)>,
}

/// An X protocol error received on this connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct WireError {
    pub code: u8,
    pub bad_value: u32,
    pub major: u8,
    pub minor: u16,
    pub sequence: u16,
}

/// Events seen since the flags were last taken.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Seen {
    pub damage: bool,
    pub cursor_shape: bool,
}

/// A damaged area in the drawable's coordinates (X11's signed origin).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Area {
    pub x: i32,
    pub y: i32,
    pub width: u32,
    pub height: u32,
}

impl Area {
    fn union(self, other: Option<Area>) -> Area {
        let Some(o) = other else { return self };
        let (x0, y0) = (self.x.min(o.x), self.y.min(o.y));
        let x1 = (i64::from(self.x) + i64::from(self.width)).max(i64::from(o.x) + i64::from(o.width));
        let y1 = (i64::from(self.y) + i64::from(self.height)).max(i64::from(o.y) + i64::from(o.height));
        Area { x: x0, y: y0, width: (x1 - i64::from(x0)) as u32, height: (y1 - i64::from(y0)) as u32 }
    }
}

/// The `QueryPointer` fields the capture uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Pointer {
    pub root_x: i16,
    pub root_y: i16,
    pub win_x: i16,
    pub win_y: i16,
}

/// The hot-path connection.
pub(crate) struct Wire {
    socket: File,
    ext: Extensions,
    ids: IdAllocator,
    /// Sequence number of the last request sent (16 bits on the wire).
    sequence: u16,
    buf: Box<[u8]>,
    start: usize,
    end: usize,
    seen: Seen,
    /// Bounding box of the damage reported since the last
    /// [`Wire::take_damage`].
    damage: Option<Area>,
    /// The part of it reported after the last DamageSubtract was processed
    /// (so it is still in the server's damage region: the next frame's).
    damage_after_subtract: Option<Area>,
    /// Sequence number of the last DamageSubtract.
    subtract_sequence: u16,
    /// The last error of a request nobody waited for (e.g. DamageSubtract).
    last_async_error: Option<WireError>,
}

impl std::fmt::Debug for Wire {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wire").field("sequence", &self.sequence).field("ext", &self.ext).finish()
    }
}

fn io_err(what: &str, e: impl std::fmt::Display) -> CaptureError {
    CaptureError::X11(format!("capture connection: {what}: {e}"))
}

/// The socket closed or failed under an established connection: the
/// server exited, crashed or was killed.
fn lost(what: &str, e: impl std::fmt::Display) -> CaptureError {
    CaptureError::DisplayLost(format!("capture connection: {what}: {e}"))
}

impl Wire {
    /// Opens a second connection to `display` (`None`: `$DISPLAY`) and
    /// negotiates the DAMAGE and XFIXES versions on it.
    pub fn connect(display: Option<&str>, ext: Extensions) -> Result<Self> {
        let parsed = parse_display(display).map_err(|e| io_err("parsing the display name", e))?;
        let mut last_error = None;
        let mut opened = None;
        for addr in parsed.connect_instruction() {
            match DefaultStream::connect(&addr) {
                Ok(found) => {
                    opened = Some(found);
                    break;
                }
                Err(e) => last_error = Some(e),
            }
        }
        let Some((stream, (family, address))) = opened else {
            return Err(io_err("connecting", last_error.map_or_else(|| "no address to try".into(), |e| e.to_string())));
        };
        // SAFETY: into_raw_fd hands over sole ownership of a valid socket fd.
        let socket = File::from(unsafe { OwnedFd::from_raw_fd(stream.into_raw_fd()) });
        // As x11rb does: without a readable Xauthority entry, try without
        // authorisation (Xvfb and local servers often need none).
        let (auth_name, auth_data) = get_auth(family, &address, parsed.display).ok().flatten().unwrap_or_default();
        let (mut connect, request) = Connect::with_authorization(auth_name, auth_data);
        let mut wire = Self {
            socket,
            ext,
            ids: IdAllocator::new(0, 1).map_err(|e| io_err("ids", e))?,
            sequence: 0,
            buf: vec![0u8; BUFFER_BYTES].into_boxed_slice(),
            start: 0,
            end: 0,
            seen: Seen::default(),
            damage: None,
            damage_after_subtract: None,
            subtract_sequence: 0,
            last_async_error: None,
        };
        wire.write_all(&request)?;
        loop {
            wire.wait_readable(None)?;
            match wire.socket.read(connect.buffer()) {
                Ok(0) => return Err(io_err("handshake", "the X server closed the connection")),
                Ok(n) => {
                    if connect.advance(n) {
                        break;
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(io_err("handshake", e)),
            }
        }
        let setup: Setup = connect.into_setup().map_err(|e| io_err("handshake", e))?;
        wire.ids = IdAllocator::new(setup.resource_id_base, setup.resource_id_mask).map_err(|e| io_err("ids", e))?;
        // Extensions whose requests a client may send only after agreeing
        // on a version.
        if let Some((major, _)) = wire.ext.xfixes {
            let seq = wire.send(&request_u32s(major, XFIXES_QUERY_VERSION, &[5, 0]))?;
            wire.reply(seq)?.map_err(|e| io_err("XFixesQueryVersion", format!("{e:?}")))?;
        }
        if let Some((major, _)) = wire.ext.damage {
            let seq = wire.send(&request_u32s(major, DAMAGE_QUERY_VERSION, &[1, 1]))?;
            wire.reply(seq)?.map_err(|e| io_err("DamageQueryVersion", format!("{e:?}")))?;
        }
        Ok(wire)
    }

    /// The socket, for waiting on it.
    pub fn fd(&self) -> i32 {
        self.socket.as_raw_fd()
    }

    /// A fresh resource id of this connection.
    pub fn generate_id(&mut self) -> Result<u32> {
        self.ids.generate_id().ok_or_else(|| io_err("ids", "resource ids exhausted"))
    }

    /// Takes the events seen since the last call.
    pub fn take_seen(&mut self) -> Seen {
        std::mem::take(&mut self.seen)
    }

    /// Takes the last error of a request nobody waited for.
    pub fn take_async_error(&mut self) -> Option<WireError> {
        self.last_async_error.take()
    }

    /// `DamageCreate` with report level BoundingBox: an event whenever the
    /// bounding box of the damage grows, carrying the box.
    pub fn damage_create(&mut self, damage: u32, drawable: u32) -> Result<()> {
        let (major, _) = self.ext.damage.ok_or_else(|| io_err("damage", "DAMAGE is missing"))?;
        // ReportLevel BoundingBox = 2, in the low byte of the third word.
        self.send(&request_u32s(major, DAMAGE_CREATE, &[damage, drawable, 2]))?;
        Ok(())
    }

    /// The bounding box of the damage reported since the last call, for the
    /// frame whose `ShmGetImage` reply just arrived: everything reported
    /// before that reply is in the picture. Damage reported after the
    /// frame's DamageSubtract stays for the next frame too.
    pub fn take_damage(&mut self) -> Option<Area> {
        std::mem::replace(&mut self.damage, self.damage_after_subtract.take())
    }

    /// `DamageDestroy`.
    pub fn damage_destroy(&mut self, damage: u32) -> Result<()> {
        let (major, _) = self.ext.damage.ok_or_else(|| io_err("damage", "DAMAGE is missing"))?;
        self.send(&request_u32s(major, DAMAGE_DESTROY, &[damage]))?;
        Ok(())
    }

    /// `DamageSubtract(damage, None, None)`: repair everything (no reply).
    pub fn damage_subtract_all(&mut self, damage: u32) -> Result<()> {
        let (major, _) = self.ext.damage.ok_or_else(|| io_err("damage", "DAMAGE is missing"))?;
        self.subtract_sequence = self.send(&request_u32s(major, DAMAGE_SUBTRACT, &[damage, 0, 0]))?;
        self.damage_after_subtract = None;
        Ok(())
    }

    /// `XFixesSelectCursorInput(window, DisplayCursor)`.
    pub fn select_cursor_input(&mut self, window: u32) -> Result<()> {
        let (major, _) = self.ext.xfixes.ok_or_else(|| io_err("xfixes", "XFIXES is missing"))?;
        self.send(&request_u32s(major, XFIXES_SELECT_CURSOR_INPUT, &[window, 1]))?;
        Ok(())
    }

    /// `ShmGetImage` of `ZPixmap`, all planes, into `seg` at offset 0; waits
    /// for the reply (the pixels are in the segment once it arrives).
    pub fn shm_get_image(
        &mut self,
        drawable: u32,
        (x, y, width, height): (i16, i16, u16, u16),
        seg: u32,
    ) -> Result<std::result::Result<(), WireError>> {
        let mut r = [0u8; 32];
        r[0] = self.ext.shm_opcode;
        r[1] = SHM_GET_IMAGE;
        r[2..4].copy_from_slice(&8u16.to_ne_bytes());
        r[4..8].copy_from_slice(&drawable.to_ne_bytes());
        r[8..10].copy_from_slice(&x.to_ne_bytes());
        r[10..12].copy_from_slice(&y.to_ne_bytes());
        r[12..14].copy_from_slice(&width.to_ne_bytes());
        r[14..16].copy_from_slice(&height.to_ne_bytes());
        r[16..20].copy_from_slice(&u32::MAX.to_ne_bytes()); // plane mask
        r[20] = 2; // ZPixmap
        r[24..28].copy_from_slice(&seg.to_ne_bytes());
        // r[28..32]: offset 0
        let seq = self.send(&r)?;
        Ok(self.reply(seq)?.map(|_| ()))
    }

    /// `QueryPointer(window)`.
    pub fn query_pointer(&mut self, window: u32) -> Result<std::result::Result<Pointer, WireError>> {
        let mut r = [0u8; 8];
        r[0] = X_QUERY_POINTER;
        r[2..4].copy_from_slice(&2u16.to_ne_bytes());
        r[4..8].copy_from_slice(&window.to_ne_bytes());
        let seq = self.send(&r)?;
        Ok(self.reply(seq)?.map(|p| {
            let i16_at = |i: usize| i16::from_ne_bytes([p[i], p[i + 1]]);
            Pointer { root_x: i16_at(16), root_y: i16_at(18), win_x: i16_at(20), win_y: i16_at(22) }
        }))
    }

    /// A round trip: every earlier request has been processed and its
    /// events read when this returns.
    pub fn sync(&mut self) -> Result<()> {
        let mut r = [X_GET_INPUT_FOCUS, 0, 0, 0];
        r[2..4].copy_from_slice(&1u16.to_ne_bytes());
        let seq = self.send(&r)?;
        self.reply(seq)?.map_err(|e| io_err("GetInputFocus", format!("{e:?}")))?;
        Ok(())
    }

    /// Reads whatever the server has sent, without blocking: events set
    /// the [`Seen`] flags; errors are kept for [`Wire::take_async_error`].
    pub fn drain(&mut self) -> Result<()> {
        loop {
            let read_any = self.fill(false)?;
            // No reply is outstanding between requests: only events and
            // errors of requests without replies arrive here.
            while self.next_packet()?.is_some() {}
            if !read_any {
                return Ok(());
            }
        }
    }

    /// Waits until the socket is readable or `deadline` passes (`None`:
    /// forever). Returns whether it is readable. Data already buffered
    /// counts as readable.
    pub fn wait_readable(&mut self, deadline: Option<Instant>) -> Result<bool> {
        if self.start < self.end {
            return Ok(true);
        }
        loop {
            let timeout_ms = match deadline {
                None => -1,
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        0
                    } else {
                        // Round up: waking a fraction of a millisecond early
                        // would turn the wait into a spin.
                        (d - now).as_micros().div_ceil(1000).min(i32::MAX as u128) as i32
                    }
                }
            };
            let mut pfd = libc::pollfd { fd: self.fd(), events: libc::POLLIN, revents: 0 };
            // SAFETY: one valid pollfd for the duration of the call.
            let n = unsafe { libc::poll(&mut pfd, 1, timeout_ms) };
            if n < 0 {
                let e = std::io::Error::last_os_error();
                if e.kind() == ErrorKind::Interrupted {
                    continue;
                }
                return Err(io_err("poll", e));
            }
            if n > 0 {
                if pfd.revents & (libc::POLLERR | libc::POLLNVAL) != 0 {
                    return Err(io_err("poll", "socket error"));
                }
                return Ok(true);
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok(false);
            }
        }
    }

    fn send(&mut self, request: &[u8]) -> Result<u16> {
        self.write_all(request)?;
        self.sequence = self.sequence.wrapping_add(1);
        Ok(self.sequence)
    }

    fn write_all(&mut self, mut bytes: &[u8]) -> Result<()> {
        while !bytes.is_empty() {
            match self.socket.write(bytes) {
                Ok(0) => return Err(lost("write", "the X server closed the connection")),
                Ok(n) => bytes = &bytes[n..],
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    // The server is not reading yet (the X server never
                    // blocks writing to a client, so it will): wait.
                    let mut pfd = libc::pollfd { fd: self.fd(), events: libc::POLLOUT, revents: 0 };
                    // SAFETY: one valid pollfd for the duration of the call.
                    unsafe { libc::poll(&mut pfd, 1, 100) };
                }
                Err(e) => return Err(lost("write", e)),
            }
        }
        Ok(())
    }

    /// Reads more bytes into the buffer; with `block`, waits for at least
    /// one. Returns whether anything was read.
    fn fill(&mut self, block: bool) -> Result<bool> {
        if self.start == self.end {
            (self.start, self.end) = (0, 0);
        } else if self.end == self.buf.len() && self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            (self.start, self.end) = (0, self.end - self.start);
        }
        if self.end == self.buf.len() {
            return Err(io_err("read", "packet larger than the capture connection's buffer"));
        }
        loop {
            match self.socket.read(&mut self.buf[self.end..]) {
                Ok(0) => return Err(lost("read", "the X server closed the connection")),
                Ok(n) => {
                    self.end += n;
                    return Ok(true);
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    if !block {
                        return Ok(false);
                    }
                    self.wait_readable(None)?;
                }
                Err(e) => return Err(lost("read", e)),
            }
        }
    }

    /// The next complete packet in the buffer, if any. Events and errors
    /// are recorded here; replies are returned (valid until the next read).
    fn next_packet(&mut self) -> Result<Option<Packet>> {
        let avail = self.end - self.start;
        if avail < 32 {
            return Ok(None);
        }
        let p = &self.buf[self.start..self.end];
        let len = match p[0] {
            1 => 32 + 4 * u32::from_ne_bytes([p[4], p[5], p[6], p[7]]) as usize,
            // GenericEvent (35) carries extra data; nothing here selects one.
            35 => 32 + 4 * u32::from_ne_bytes([p[4], p[5], p[6], p[7]]) as usize,
            _ => 32,
        };
        if len > self.buf.len() {
            return Err(io_err("read", format!("a {len}-byte packet on the capture connection")));
        }
        if avail < len {
            return Ok(None);
        }
        let at = self.start;
        self.start += len;
        let p = &self.buf[at..at + len];
        let sequence = u16::from_ne_bytes([p[2], p[3]]);
        let packet = match p[0] {
            0 => {
                let error = WireError {
                    code: p[1],
                    bad_value: u32::from_ne_bytes([p[4], p[5], p[6], p[7]]),
                    minor: u16::from_ne_bytes([p[8], p[9]]),
                    major: p[10],
                    sequence,
                };
                self.last_async_error = Some(error);
                Packet::Error(error)
            }
            1 => Packet::Reply { sequence, at },
            code => {
                let code = code & 0x7f;
                if self.ext.damage.is_some_and(|(_, first)| code == first) {
                    self.seen.damage = true;
                    // DamageNotify: area (x, y: i16; width, height: u16) at 16.
                    let i16_at = |i: usize| i32::from(i16::from_ne_bytes([p[i], p[i + 1]]));
                    let u16_at = |i: usize| u32::from(u16::from_ne_bytes([p[i], p[i + 1]]));
                    let area = Area { x: i16_at(16), y: i16_at(18), width: u16_at(20), height: u16_at(22) };
                    self.damage = Some(area.union(self.damage));
                    // Processed after the last subtract (sequence numbers wrap).
                    if sequence.wrapping_sub(self.subtract_sequence) < 0x8000 {
                        self.damage_after_subtract = Some(area.union(self.damage_after_subtract));
                    }
                } else if self.ext.xfixes.is_some_and(|(_, first)| code == first.wrapping_add(1)) {
                    self.seen.cursor_shape = true;
                }
                Packet::Event
            }
        };
        Ok(Some(packet))
    }

    /// Waits for the reply (or error) to request `seq`, recording events
    /// and other requests' errors on the way. The 32-byte reply is returned
    /// by value.
    fn reply(&mut self, seq: u16) -> Result<std::result::Result<[u8; 32], WireError>> {
        loop {
            while let Some(packet) = self.next_packet()? {
                match packet {
                    Packet::Reply { sequence, at } if sequence == seq => {
                        // Longer replies: only the fixed part is used.
                        let mut out = [0u8; 32];
                        out.copy_from_slice(&self.buf[at..at + 32]);
                        return Ok(Ok(out));
                    }
                    Packet::Error(e) if e.sequence == seq => {
                        self.last_async_error = None;
                        return Ok(Err(e));
                    }
                    _ => {}
                }
            }
            self.fill(true)?;
        }
    }
}

enum Packet {
    Reply { sequence: u16, at: usize },
    Error(WireError),
    Event,
}

/// An extension request made of 32-bit fields: up to 3 of them (16 bytes).
fn request_u32s(major: u8, minor: u8, fields: &[u32]) -> RequestBuf {
    let mut out = RequestBuf { bytes: [0u8; 16], len: 4 + 4 * fields.len() };
    out.bytes[0] = major;
    out.bytes[1] = minor;
    out.bytes[2..4].copy_from_slice(&((out.len / 4) as u16).to_ne_bytes());
    for (i, f) in fields.iter().enumerate() {
        out.bytes[4 + 4 * i..8 + 4 * i].copy_from_slice(&f.to_ne_bytes());
    }
    out
}

/// A small request on the stack.
struct RequestBuf {
    bytes: [u8; 16],
    len: usize,
}

impl std::ops::Deref for RequestBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extension_requests_carry_their_length_in_words() {
        let r = request_u32s(130, DAMAGE_SUBTRACT, &[0x1234, 0, 0]);
        assert_eq!(r.len(), 16);
        assert_eq!(&r[..2], &[130, 3]);
        assert_eq!(u16::from_ne_bytes([r[2], r[3]]), 4);
        assert_eq!(u32::from_ne_bytes([r[4], r[5], r[6], r[7]]), 0x1234);
        let r = request_u32s(140, DAMAGE_DESTROY, &[7]);
        assert_eq!((r.len(), u16::from_ne_bytes([r[2], r[3]])), (8, 2));
    }
}
