//! Wayland capture: the desktop's ScreenCast portal chooses the source
//! ([`super::portal`]), PipeWire 0.10 delivers the frames.
//!
//! * **Threads.** `peep-portal` keeps the portal session (and watches its
//!   `Closed` signal); `peep-pipewire` runs a PipeWire main loop with one
//!   input stream connected to the portal's node over the portal's own
//!   remote (`connect_fd`). The capture thread (the driver) only locks the
//!   shared state and copies.
//! * **One copy.** The loop thread keeps the newest buffer dequeued (returning
//!   older ones to the compositor at once) and never returns it while the
//!   capture thread copies from it, so the pixels go straight from the
//!   compositor's shared memory into the ring's slot. BGRx/BGRA are copied
//!   row by row; RGBx/RGBA have red and blue swapped during that same copy.
//!   The held buffer stays with Peep until a newer one arrives, so keep-alive
//!   and requested frames of a static screen re-copy it.
//! * **Unchanged screens are free.** Compositors send a buffer only when
//!   something changed; no buffer, no frame. Damage regions are requested
//!   (1–16 of them) and, once a producer has been seen to fill them, a
//!   buffer with an empty damage list counts as unchanged.
//! * **Cursor.** Asked for as metadata when the portal offers it (bitmaps up
//!   to 384×384, composited here like X11's cursor), else embedded by the
//!   compositor, else hidden.
//! * **Formats.** Shared memory only (MemFd/MemPtr) in BGRx, BGRA, RGBx or
//!   RGBA; a new size (a window resized, an output mode changed) arrives as
//!   a new format and the slots follow. DMA-BUF is not negotiated yet.
//! * **Endings.** The session's `Closed` signal or the stream losing its node
//!   ends the capture with [`CaptureError::SourceGone`].

use std::io::Cursor;
use std::os::fd::OwnedFd;
use std::ptr::NonNull;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use pipewire as pw;
use pw::spa;
use pw::spa::pod::{ChoiceValue, Object, Pod, Property, PropertyFlags, Value};
use pw::spa::sys as spa_sys;
use pw::spa::utils::{Choice, ChoiceEnum, ChoiceFlags, Fraction, Id, Rectangle};

use super::portal::{self, Chosen, CursorDelivery, PortalRequest, PortalSession};
use super::{CaptureBackend, Tick};
use crate::error::{CaptureError, Result};
use crate::frame::{FrameMeta, PixelFormat};
use crate::ring::{RingProducer, SlotMemory};

/// Largest cursor bitmap accepted as metadata, per side.
pub const MAX_CURSOR_SIDE: u32 = 384;
/// Most damage regions requested per buffer.
pub const MAX_DAMAGE_REGIONS: usize = 16;
/// How long opening waits for the stream to agree on a format.
pub const NEGOTIATION_TIMEOUT: Duration = Duration::from_secs(10);

/// Byte order of the negotiated format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layout {
    Bgrx,
    Bgra,
    Rgbx,
    Rgba,
}

impl Layout {
    fn from_spa(format: spa::param::video::VideoFormat) -> Option<Self> {
        use spa::param::video::VideoFormat as F;
        match format {
            F::BGRx => Some(Self::Bgrx),
            F::BGRA => Some(Self::Bgra),
            F::RGBx => Some(Self::Rgbx),
            F::RGBA => Some(Self::Rgba),
            _ => None,
        }
    }

    fn pixel_format(self) -> PixelFormat {
        match self {
            Self::Bgrx | Self::Rgbx => PixelFormat::Bgrx,
            Self::Bgra | Self::Rgba => PixelFormat::Bgra,
        }
    }

    fn swap_red_blue(self) -> bool {
        matches!(self, Self::Rgbx | Self::Rgba)
    }
}

/// A buffer the loop thread keeps dequeued for the capture thread.
struct Held {
    buffer: NonNull<pw::sys::pw_buffer>,
    /// First byte of the picture in the mapped buffer.
    pixels: NonNull<u8>,
    /// Bytes readable from `pixels`.
    len: usize,
    stride_bytes: usize,
    width: u32,
    height: u32,
    layout: Layout,
    /// When the compositor captured it (from the header's timestamp when it
    /// has one, else when it arrived).
    captured_at: Instant,
}

// SAFETY: `Held` is only reached through `Shared::state`'s mutex. The
// buffer and its mapping stay valid until the loop thread queues the buffer
// back or the stream removes it, which it does only while holding that
// mutex (so never during a copy).
unsafe impl Send for Held {}

/// The cursor as the last metadata described it (premultiplied ARGB).
#[derive(Debug, Default)]
struct CursorState {
    visible: bool,
    position: (i32, i32),
    hotspot: (i32, i32),
    width: u32,
    height: u32,
    image: Vec<u32>,
    /// Where a new bitmap is converted before comparing (no allocation once
    /// it has grown to the largest cursor).
    scratch: Vec<u32>,
}

/// Why the stream ended.
#[derive(Debug, Clone)]
enum Ended {
    Gone(String),
    Failed(String),
}

#[derive(Default)]
struct State {
    held: Option<Held>,
    /// Bumped by every buffer with new pixels or a cursor change.
    generation: u64,
    /// The generation of the last buffer whose pixels changed.
    content_generation: u64,
    /// Negotiated size and layout.
    format: Option<(u32, u32, Layout)>,
    cursor: CursorState,
    /// Whether the producer has filled damage regions at least once (then
    /// an empty list means nothing changed).
    producer_fills_damage: bool,
    ended: Option<Ended>,
    buffers: u64,
}

struct Shared {
    state: Mutex<State>,
    changed: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn end(&self, why: Ended) {
        let mut state = self.lock();
        state.ended.get_or_insert(why);
        drop(state);
        self.changed.notify_all();
    }
}

/// A running portal + PipeWire capture.
pub struct PortalCapture {
    shared: Arc<Shared>,
    quit: pw::channel::Sender<()>,
    loop_thread: Option<JoinHandle<()>>,
    portal: Option<PortalSession>,
    chosen: Chosen,
    restore_token: Option<String>,
    cursor_delivery: CursorDelivery,
    draw_cursor: bool,
    /// Generation of the last published frame.
    seen: Option<u64>,
    /// Content generation of the last published frame.
    seen_content: Option<u64>,
    /// The next frame counts as changed (cursor switched on or off).
    redraw: bool,
    /// Capture time of the last published frame (frame times never go back).
    last_captured_at: Option<Instant>,
}

impl std::fmt::Debug for PortalCapture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PortalCapture")
            .field("chosen", &self.chosen)
            .field("cursor", &self.cursor_delivery)
            .finish_non_exhaustive()
    }
}

impl PortalCapture {
    /// Asks the desktop's portal for a screen or window (its dialog, or no
    /// dialog when `request` carries a valid restore token) and starts
    /// receiving its frames. Blocks while the dialog is open.
    ///
    /// Errors: [`CaptureError::Cancelled`] when the user closes the dialog,
    /// [`CaptureError::PortalUnavailable`] when no portal answers.
    pub fn open(request: &PortalRequest) -> Result<Self> {
        let shared = Arc::new(Shared { state: Mutex::new(State::default()), changed: Condvar::new() });
        let on_closed = {
            let shared = shared.clone();
            Box::new(move || {
                shared.end(Ended::Gone("the desktop ended the screen cast (sharing was stopped there)".into()));
            })
        };
        let started = portal::start(request, on_closed)?;
        // Carries one message (quit); PipeWire's channel wakes the loop.
        let (quit, quit_rx) = pw::channel::channel::<()>();
        // One message: whether the stream connected.
        let (ready_tx, ready_rx) = mpsc::sync_channel(1);
        let loop_thread = {
            let shared = shared.clone();
            let (fd, node_id, cursor) = (started.fd, started.node_id, started.cursor);
            std::thread::Builder::new()
                .name("peep-pipewire".into())
                .spawn(move || run_loop(fd, node_id, cursor, &shared, &ready_tx, quit_rx))
                .map_err(|e| CaptureError::PipeWire(format!("cannot start the PipeWire thread: {e}")))?
        };
        let mut capture = Self {
            shared,
            quit,
            loop_thread: Some(loop_thread),
            portal: Some(started.session),
            chosen: started.chosen,
            restore_token: started.restore_token,
            cursor_delivery: started.cursor,
            draw_cursor: request.cursor,
            seen: None,
            seen_content: None,
            redraw: false,
            last_captured_at: None,
        };
        match ready_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(e),
            Err(_) => return Err(CaptureError::PipeWire("the PipeWire thread ended while connecting".into())),
        }
        capture.wait_for_format(Instant::now() + NEGOTIATION_TIMEOUT)?;
        Ok(capture)
    }

    fn wait_for_format(&mut self, deadline: Instant) -> Result<()> {
        let mut state = self.shared.lock();
        loop {
            if let Some(ended) = &state.ended {
                return Err(ended_error(ended));
            }
            if state.format.is_some() {
                return Ok(());
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(CaptureError::PipeWire(format!(
                    "the screen-cast stream agreed on no format within {} s",
                    NEGOTIATION_TIMEOUT.as_secs()
                )));
            }
            state = self.shared.changed.wait_timeout(state, deadline - now).unwrap_or_else(PoisonError::into_inner).0;
        }
    }

    /// The restore token the portal returned for this share: save it and
    /// pass it in the next [`PortalRequest`] to skip the dialog. Single use.
    pub fn restore_token(&self) -> Option<&str> {
        self.restore_token.as_deref()
    }

    /// What the user chose, as the portal describes it.
    pub fn chosen(&self) -> &Chosen {
        &self.chosen
    }

    /// How the cursor is delivered.
    pub fn cursor_delivery(&self) -> CursorDelivery {
        self.cursor_delivery
    }

    /// Buffers received from the compositor so far.
    pub fn buffers_received(&self) -> u64 {
        self.shared.lock().buffers
    }
}

fn ended_error(ended: &Ended) -> CaptureError {
    match ended {
        Ended::Gone(why) => CaptureError::SourceGone(why.clone()),
        Ended::Failed(why) => CaptureError::PipeWire(why.clone()),
    }
}

impl CaptureBackend for PortalCapture {
    fn capture(&mut self, ring: &mut RingProducer, seq: u64, force: bool) -> Result<Tick> {
        let state = self.shared.lock();
        if let Some(ended) = &state.ended {
            return Err(ended_error(ended));
        }
        let Some(held) = &state.held else { return Ok(Tick::Unchanged) };
        let fresh = self.seen != Some(state.generation);
        if !fresh && !force && !self.redraw {
            return Ok(Tick::Unchanged);
        }
        let draw_cursor = self.draw_cursor && self.cursor_delivery == CursorDelivery::Metadata;
        let cursor_moved = fresh && draw_cursor;
        let changed = self.redraw || self.seen_content != Some(state.content_generation) || cursor_moved;
        if !changed && !force {
            // A buffer arrived but nothing in it changed (empty damage).
            self.seen = Some(state.generation);
            return Ok(Tick::Unchanged);
        }
        let (width, height) = (held.width, held.height);
        let stride_bytes = width as usize * 4;
        let mut slot = ring.begin();
        let memory = slot.ensure(stride_bytes * height as usize, |len| Ok::<_, CaptureError>(SlotMemory::heap(len)))?;
        // SAFETY: see `Held`: the mapping is valid for `len` bytes while we
        // hold the state's lock, and the producer does not write into a
        // buffer it handed to us.
        let src = unsafe { std::slice::from_raw_parts(held.pixels.as_ptr(), held.len) };
        copy_pixels(
            src,
            held.stride_bytes,
            memory.as_mut_slice(),
            stride_bytes,
            width,
            height,
            held.layout.swap_red_blue(),
        );
        let cursor = &state.cursor;
        if draw_cursor && cursor.visible && !cursor.image.is_empty() {
            let overlay = super::cursor::Overlay {
                argb: &cursor.image,
                width: cursor.width,
                left: cursor.position.0 - cursor.hotspot.0,
                top: cursor.position.1 - cursor.hotspot.1,
            };
            super::cursor::blend_premultiplied_argb(memory.as_mut_slice(), width, height, stride_bytes, overlay);
        }
        // A re-sent picture gets the time it is sent (viewers pace by it).
        let captured_at = if changed { held.captured_at } else { Instant::now() };
        let captured_at = self.last_captured_at.map_or(captured_at, |last| captured_at.max(last));
        self.last_captured_at = Some(captured_at);
        let format = held.layout.pixel_format();
        self.seen = Some(state.generation);
        self.seen_content = Some(state.content_generation);
        self.redraw = false;
        drop(state);
        slot.publish(FrameMeta { width, height, stride_bytes, format, captured_at, seq, changed });
        Ok(Tick::Published { changed })
    }

    fn size(&self) -> (u32, u32) {
        let state = self.shared.lock();
        match (&state.held, state.format) {
            (Some(h), _) => (h.width, h.height),
            (None, Some((w, h, _))) => (w, h),
            (None, None) => self.chosen.size.unwrap_or((0, 0)),
        }
    }

    fn set_cursor(&mut self, visible: bool) {
        // Embedded cursors are the compositor's choice, made at selection.
        if self.draw_cursor != visible {
            self.draw_cursor = visible;
            self.redraw = true;
        }
    }

    fn describe(&self) -> String {
        self.chosen.describe()
    }

    fn wait_for_change(&mut self, deadline: Instant) -> Result<bool> {
        let mut state = self.shared.lock();
        loop {
            if state.ended.is_some() || (state.held.is_some() && self.seen != Some(state.generation)) || self.redraw {
                return Ok(true);
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(false);
            }
            state = self.shared.changed.wait_timeout(state, deadline - now).unwrap_or_else(PoisonError::into_inner).0;
        }
    }
}

impl Drop for PortalCapture {
    fn drop(&mut self) {
        // Stop the stream first (it returns the held buffer), then close the
        // portal session.
        let _ = self.quit.send(());
        if let Some(t) = self.loop_thread.take() {
            let _ = t.join();
        }
        self.portal.take();
    }
}

/// Copies `height` rows of `width` pixels, swapping bytes 0 and 2 of each
/// pixel when `swap_red_blue` (RGBx → BGRx). The one copy of a frame.
fn copy_pixels(
    src: &[u8],
    src_stride: usize,
    dst: &mut [u8],
    dst_stride: usize,
    width: u32,
    height: u32,
    swap_red_blue: bool,
) {
    let row_bytes = width as usize * 4;
    for y in 0..height as usize {
        let (Some(s), Some(d)) = (
            src.get(y * src_stride..y * src_stride + row_bytes),
            dst.get_mut(y * dst_stride..y * dst_stride + row_bytes),
        ) else {
            return;
        };
        if swap_red_blue {
            for (d, s) in d.chunks_exact_mut(4).zip(s.chunks_exact(4)) {
                d.copy_from_slice(&[s[2], s[1], s[0], s[3]]);
            }
        } else {
            d.copy_from_slice(s);
        }
    }
}

/// Size of the cursor metadata for a `side`×`side` bitmap.
fn cursor_meta_size(side: u32) -> i32 {
    (size_of::<spa_sys::spa_meta_cursor>() + size_of::<spa_sys::spa_meta_bitmap>() + (side * side * 4) as usize) as i32
}

fn serialize(object: Object) -> Result<Vec<u8>> {
    spa::pod::serialize::PodSerializer::serialize(Cursor::new(Vec::new()), &Value::Object(object))
        .map(|(cursor, _)| cursor.into_inner())
        .map_err(|e| CaptureError::PipeWire(format!("building stream parameters: {e:?}")))
}

fn int_range(default: i32, min: i32, max: i32) -> Value {
    Value::Choice(ChoiceValue::Int(Choice(ChoiceFlags::empty(), ChoiceEnum::Range { default, min, max })))
}

/// What the stream accepts: raw video in four 32-bit layouts, any size.
fn enum_format() -> Result<Vec<u8>> {
    use spa::param::format::{FormatProperties, MediaSubtype, MediaType};
    use spa::param::video::VideoFormat;
    serialize(spa::pod::object!(
        spa::utils::SpaTypes::ObjectParamFormat,
        spa::param::ParamType::EnumFormat,
        spa::pod::property!(FormatProperties::MediaType, Id, MediaType::Video),
        spa::pod::property!(FormatProperties::MediaSubtype, Id, MediaSubtype::Raw),
        spa::pod::property!(
            FormatProperties::VideoFormat,
            Choice,
            Enum,
            Id,
            VideoFormat::BGRx,
            VideoFormat::BGRx,
            VideoFormat::BGRA,
            VideoFormat::RGBx,
            VideoFormat::RGBA,
        ),
        spa::pod::property!(
            FormatProperties::VideoSize,
            Choice,
            Range,
            Rectangle,
            Rectangle { width: 1920, height: 1080 },
            Rectangle { width: 1, height: 1 },
            Rectangle { width: 16384, height: 16384 }
        ),
        spa::pod::property!(
            FormatProperties::VideoFramerate,
            Choice,
            Range,
            Fraction,
            Fraction { num: 0, denom: 1 },
            Fraction { num: 0, denom: 1 },
            Fraction { num: 1000, denom: 1 }
        ),
    ))
}

/// Buffers in shared memory and the metadata Peep uses.
fn buffer_params() -> Result<Vec<Vec<u8>>> {
    let prop = |key: u32, value: Value| Property { key, flags: PropertyFlags::empty(), value };
    let data_types = (1 << spa_sys::SPA_DATA_MemFd) | (1 << spa_sys::SPA_DATA_MemPtr);
    let buffers = Object {
        type_: spa_sys::SPA_TYPE_OBJECT_ParamBuffers,
        id: spa_sys::SPA_PARAM_Buffers,
        properties: vec![
            // One buffer stays with Peep; the compositor keeps writing the others.
            prop(spa_sys::SPA_PARAM_BUFFERS_buffers, int_range(4, 2, 16)),
            prop(
                spa_sys::SPA_PARAM_BUFFERS_dataType,
                Value::Choice(ChoiceValue::Int(Choice(
                    ChoiceFlags::empty(),
                    ChoiceEnum::Flags { default: data_types, flags: vec![] },
                ))),
            ),
        ],
    };
    let meta = |kind: u32, size: Value| Object {
        type_: spa_sys::SPA_TYPE_OBJECT_ParamMeta,
        id: spa_sys::SPA_PARAM_Meta,
        properties: vec![
            prop(spa_sys::SPA_PARAM_META_type, Value::Id(Id(kind))),
            prop(spa_sys::SPA_PARAM_META_size, size),
        ],
    };
    let region = size_of::<spa_sys::spa_meta_region>() as i32;
    Ok(vec![
        serialize(buffers)?,
        serialize(meta(spa_sys::SPA_META_Header, Value::Int(size_of::<spa_sys::spa_meta_header>() as i32)))?,
        // A range: a fixed count that differs from the producer's yields no damage at all.
        serialize(meta(
            spa_sys::SPA_META_VideoDamage,
            int_range(region * MAX_DAMAGE_REGIONS as i32, region, region * MAX_DAMAGE_REGIONS as i32),
        ))?,
        serialize(meta(
            spa_sys::SPA_META_Cursor,
            int_range(cursor_meta_size(MAX_CURSOR_SIDE), cursor_meta_size(1), cursor_meta_size(MAX_CURSOR_SIDE)),
        ))?,
    ])
}

fn pods(bytes: &[Vec<u8>]) -> Vec<&Pod> {
    bytes.iter().filter_map(|b| Pod::from_bytes(b)).collect()
}

/// The body of `peep-pipewire`.
fn run_loop(
    fd: OwnedFd,
    node_id: u32,
    cursor: CursorDelivery,
    shared: &Arc<Shared>,
    ready: &mpsc::SyncSender<Result<()>>,
    quit: pw::channel::Receiver<()>,
) {
    let fail = |what: &str, e: &dyn std::fmt::Display| {
        let _ = ready.send(Err(CaptureError::PipeWire(format!("{what}: {e}"))));
    };
    pw::init();
    let mainloop = match pw::main_loop::MainLoopRc::new(None) {
        Ok(l) => l,
        Err(e) => return fail("creating the main loop", &e),
    };
    let context = match pw::context::ContextRc::new(&mainloop, None) {
        Ok(c) => c,
        Err(e) => return fail("creating the context", &e),
    };
    let core = match context.connect_fd_rc(fd, None) {
        Ok(c) => c,
        Err(e) => return fail("connecting to the portal's PipeWire remote", &e),
    };
    let _core_listener = {
        let shared = shared.clone();
        core.add_listener_local()
            .error(move |id, _seq, res, message| {
                // A broken pipe on the core (id 0) means the connection is
                // gone; other core errors (e.g. about a node that just
                // vanished) are not fatal by themselves.
                if id == pw::core::PW_ID_CORE && res == -libc::EPIPE {
                    shared.end(Ended::Failed(format!("the PipeWire connection failed ({res}): {message}")));
                } else {
                    tracing::debug!(id, res, message, "PipeWire error");
                }
            })
            .register()
    };
    let props = pw::properties::properties! {
        *pw::keys::MEDIA_TYPE => "Video",
        *pw::keys::MEDIA_CATEGORY => "Capture",
        *pw::keys::MEDIA_ROLE => "Screen",
    };
    let stream = match pw::stream::StreamRc::new(core.clone(), "peep-capture", props) {
        Ok(s) => s,
        Err(e) => return fail("creating the stream", &e),
    };
    let params = match buffer_params() {
        Ok(p) => p,
        Err(e) => return fail("stream parameters", &e),
    };
    let _listener = {
        let (on_state, on_param, on_process, on_remove) =
            (shared.clone(), shared.clone(), shared.clone(), shared.clone());
        let mut streamed = false;
        stream
            .add_local_listener::<()>()
            .state_changed(move |_, _, _old, new| match new {
                pw::stream::StreamState::Streaming => streamed = true,
                pw::stream::StreamState::Error(e) => on_state.end(Ended::Failed(format!("the stream failed: {e}"))),
                pw::stream::StreamState::Unconnected if streamed => on_state.end(Ended::Gone(
                    "the screen cast ended (the desktop stopped it, or the shared screen or window went away)".into(),
                )),
                _ => {}
            })
            .param_changed(move |stream, _, id, param| {
                let Some(param) = param else { return };
                if id != spa::param::ParamType::Format.as_raw() {
                    return;
                }
                let mut info = spa::param::video::VideoInfoRaw::default();
                if info.parse(param).is_err() {
                    return;
                }
                let Some(layout) = Layout::from_spa(info.format()) else {
                    on_param
                        .end(Ended::Failed(format!("the compositor chose an unsupported format {:?}", info.format())));
                    return;
                };
                let size = info.size();
                tracing::debug!(width = size.width, height = size.height, ?layout, "screen-cast format");
                on_param.lock().format = Some((size.width, size.height, layout));
                on_param.changed.notify_all();
                if let Err(e) = stream.update_params(&mut pods(&params)) {
                    on_param.end(Ended::Failed(format!("negotiating buffers: {e}")));
                }
            })
            .remove_buffer(move |_, _, buffer| {
                // The stream frees it now (renegotiation, teardown): forget it.
                let mut state = on_remove.lock();
                if state.held.as_ref().is_some_and(|h| h.buffer.as_ptr() == buffer) {
                    state.held = None;
                }
            })
            .process(move |stream, _| on_buffers(stream, &on_process, cursor))
            .register()
    };
    let _listener = match _listener {
        Ok(l) => l,
        Err(e) => return fail("listening to the stream", &e),
    };
    let format = match enum_format() {
        Ok(f) => f,
        Err(e) => return fail("stream format", &e),
    };
    let flags = pw::stream::StreamFlags::AUTOCONNECT
        | pw::stream::StreamFlags::MAP_BUFFERS
        | pw::stream::StreamFlags::DONT_RECONNECT;
    if let Err(e) = stream.connect(spa::utils::Direction::Input, Some(node_id), flags, &mut pods(&[format])) {
        return fail(&format!("connecting to screen-cast node {node_id}"), &e);
    }
    let quitter = mainloop.clone();
    let _quit = quit.attach(mainloop.loop_(), move |()| quitter.quit());
    let _ = ready.send(Ok(()));
    mainloop.run();
    // Forget the held buffer before the stream (which owns it) goes.
    shared.lock().held = None;
    let _ = stream.disconnect();
}

/// The `process` callback: keeps the newest buffer with pixels, returns the
/// rest, records cursor and damage.
fn on_buffers(stream: &pw::stream::Stream, shared: &Shared, cursor: CursorDelivery) {
    let mut state = shared.lock();
    let mut newest: Option<Held> = None;
    let mut content_changed = false;
    let mut cursor_changed = false;
    loop {
        // SAFETY: plain FFI call on the stream we own, on its loop thread.
        let raw = unsafe { stream.dequeue_raw_buffer() };
        let Some(buffer) = NonNull::new(raw) else { break };
        state.buffers += 1;
        // SAFETY: a dequeued pw_buffer points to a valid spa_buffer until queued back.
        let spa_buffer = unsafe { buffer.as_ref().buffer };
        let info = if spa_buffer.is_null() { None } else { read_buffer(spa_buffer, &mut state, cursor) };
        cursor_changed |= info.as_ref().is_some_and(|i| i.cursor_changed);
        match info.and_then(|i| i.held.map(|h| (h, i.damaged))) {
            Some((mut held, damaged)) => {
                held.buffer = buffer;
                content_changed |= damaged;
                if let Some(older) = newest.replace(held) {
                    // SAFETY: a buffer we dequeued and no longer reference.
                    unsafe { stream.queue_raw_buffer(older.buffer.as_ptr()) };
                }
            }
            // SAFETY: as above; nothing of it was kept.
            None => unsafe { stream.queue_raw_buffer(raw) },
        }
    }
    if let Some(held) = newest {
        if let Some(old) = state.held.replace(held) {
            // SAFETY: the lock is held, so the capture thread is not copying from it.
            unsafe { stream.queue_raw_buffer(old.buffer.as_ptr()) };
        }
        state.generation += 1;
        if content_changed || !state.producer_fills_damage {
            state.content_generation = state.generation;
        }
    } else if cursor_changed {
        state.generation += 1;
    } else {
        return;
    }
    drop(state);
    shared.changed.notify_all();
}

struct BufferInfo {
    held: Option<Held>,
    damaged: bool,
    cursor_changed: bool,
}

/// Reads one buffer's metadata and locates its pixels. `None` for a
/// corrupted buffer.
fn read_buffer(spa_buffer: *mut spa_sys::spa_buffer, state: &mut State, cursor: CursorDelivery) -> Option<BufferInfo> {
    // SAFETY: the caller passes a non-null spa_buffer of a dequeued buffer;
    // find_meta returns null or a pointer into that buffer's meta array.
    let header = unsafe { spa_sys::spa_buffer_find_meta(spa_buffer, spa_sys::SPA_META_Header) };
    let mut captured_at = Instant::now();
    if let Some(header) = meta_data::<spa_sys::spa_meta_header>(header) {
        if header.flags & spa_sys::SPA_META_HEADER_FLAG_CORRUPTED != 0 {
            return None;
        }
        captured_at = instant_from_monotonic_ns(header.pts).unwrap_or(captured_at);
    }
    let cursor_changed = cursor == CursorDelivery::Metadata && read_cursor(spa_buffer, &mut state.cursor);
    // SAFETY: as above.
    let damage = unsafe { spa_sys::spa_buffer_find_meta(spa_buffer, spa_sys::SPA_META_VideoDamage) };
    let damaged = match damage_regions(damage) {
        Some(0) => false,
        Some(_) => {
            state.producer_fills_damage = true;
            true
        }
        None => true,
    };
    let held = locate_pixels(spa_buffer, state.format, captured_at);
    Some(BufferInfo { held, damaged, cursor_changed })
}

/// A metadata block's data as `T`, when it is large enough.
fn meta_data<'a, T>(meta: *mut spa_sys::spa_meta) -> Option<&'a T> {
    // SAFETY: `meta` is null or points to a spa_meta of a dequeued buffer.
    let meta = unsafe { meta.as_ref()? };
    if (meta.size as usize) < size_of::<T>() || meta.data.is_null() || !meta.data.cast::<T>().is_aligned() {
        return None;
    }
    // SAFETY: checked non-null, aligned and at least size_of::<T>() bytes.
    Some(unsafe { &*meta.data.cast::<T>() })
}

/// Counts the valid damage regions, `None` when the buffer has no damage metadata.
fn damage_regions(meta: *mut spa_sys::spa_meta) -> Option<usize> {
    // SAFETY: `meta` is null or points to a spa_meta of a dequeued buffer.
    let meta = unsafe { meta.as_ref()? };
    if meta.data.is_null() {
        return None;
    }
    let count = meta.size as usize / size_of::<spa_sys::spa_meta_region>();
    let regions = meta.data.cast::<spa_sys::spa_meta_region>();
    Some(
        (0..count)
            // SAFETY: `count` regions fit in the meta's `size` bytes.
            .map(|i| unsafe { &*regions.add(i) })
            .take_while(|r| r.region.size.width > 0 && r.region.size.height > 0)
            .count(),
    )
}

/// Updates `cursor` from the buffer's cursor metadata; returns whether
/// anything visible changed.
fn read_cursor(spa_buffer: *mut spa_sys::spa_buffer, cursor: &mut CursorState) -> bool {
    // SAFETY: as in `read_buffer`.
    let meta_ptr = unsafe { spa_sys::spa_buffer_find_meta(spa_buffer, spa_sys::SPA_META_Cursor) };
    let Some(meta) = meta_data::<spa_sys::spa_meta_cursor>(meta_ptr) else { return false };
    // SAFETY: meta_data checked the pointer.
    let meta_size = unsafe { (*meta_ptr).size } as usize;
    if meta.id == 0 {
        // No cursor over the stream.
        let changed = cursor.visible;
        cursor.visible = false;
        return changed;
    }
    let mut changed = !cursor.visible || cursor.position != (meta.position.x, meta.position.y);
    cursor.visible = true;
    cursor.position = (meta.position.x, meta.position.y);
    let bitmap_at = meta.bitmap_offset as usize;
    if bitmap_at >= size_of::<spa_sys::spa_meta_cursor>()
        && bitmap_at + size_of::<spa_sys::spa_meta_bitmap>() <= meta_size
    {
        let base = (meta as *const spa_sys::spa_meta_cursor).cast::<u8>();
        // SAFETY: the bitmap header lies within the meta's `size` bytes (checked above).
        let bitmap_ptr = unsafe { base.add(bitmap_at) }.cast::<spa_sys::spa_meta_bitmap>();
        // SAFETY: as above; read unaligned since producers place it at any offset.
        let bitmap = unsafe { bitmap_ptr.read_unaligned() };
        let (w, h) = (bitmap.size.width, bitmap.size.height);
        let stride = bitmap.stride.unsigned_abs() as usize;
        let data_at = bitmap_at + bitmap.offset as usize;
        if bitmap.offset as usize >= size_of::<spa_sys::spa_meta_bitmap>()
            && (1..=MAX_CURSOR_SIDE).contains(&w)
            && (1..=MAX_CURSOR_SIDE).contains(&h)
            && stride >= w as usize * 4
            && data_at + stride * h as usize <= meta_size
        {
            // SAFETY: the pixel rows lie within the meta's `size` bytes (checked above).
            let pixels = unsafe { std::slice::from_raw_parts(base.add(data_at), stride * h as usize) };
            let layout = Layout::from_spa(spa::param::video::VideoFormat::from_raw(bitmap.format));
            if let Some(layout) = layout {
                convert_cursor(pixels, stride, w, h, layout, &mut cursor.scratch);
                let hotspot = (meta.hotspot.x, meta.hotspot.y);
                if cursor.scratch != cursor.image || (w, h, hotspot) != (cursor.width, cursor.height, cursor.hotspot) {
                    std::mem::swap(&mut cursor.scratch, &mut cursor.image);
                    (cursor.width, cursor.height, cursor.hotspot) = (w, h, hotspot);
                    changed = true;
                }
            }
        } else if bitmap.offset == 0 || w == 0 || h == 0 {
            // An empty bitmap: an invisible cursor.
            changed |= !cursor.image.is_empty();
            cursor.image.clear();
        }
    }
    changed
}

/// Converts cursor pixels (premultiplied, in the given byte order) to
/// `0xAARRGGBB` words, reusing `out`'s allocation.
fn convert_cursor(pixels: &[u8], stride: usize, width: u32, height: u32, layout: Layout, out: &mut Vec<u32>) {
    out.clear();
    for row in pixels.chunks(stride).take(height as usize) {
        for p in row.chunks_exact(4).take(width as usize) {
            let (r, g, b, a) = match layout {
                Layout::Bgra => (p[2], p[1], p[0], p[3]),
                Layout::Bgrx => (p[2], p[1], p[0], 255),
                Layout::Rgba => (p[0], p[1], p[2], p[3]),
                Layout::Rgbx => (p[0], p[1], p[2], 255),
            };
            out.push(u32::from(a) << 24 | u32::from(r) << 16 | u32::from(g) << 8 | u32::from(b));
        }
    }
}

/// Finds the picture in the buffer's first data block, checking that
/// `height` rows of `stride` fit in the mapped memory.
fn locate_pixels(
    spa_buffer: *mut spa_sys::spa_buffer,
    format: Option<(u32, u32, Layout)>,
    captured_at: Instant,
) -> Option<Held> {
    let (width, height, layout) = format?;
    // SAFETY: the caller passes a valid spa_buffer; datas has n_datas entries.
    let data = unsafe {
        let b = &*spa_buffer;
        if b.n_datas == 0 || b.datas.is_null() {
            return None;
        }
        &*b.datas
    };
    // SAFETY: chunk is null or points to the data block's chunk.
    let chunk = unsafe { data.chunk.as_ref()? };
    if data.data.is_null() || chunk.size == 0 || chunk.flags & spa_sys::SPA_CHUNK_FLAG_CORRUPTED as i32 != 0 {
        // No pixels (e.g. a cursor-only update) or a damaged picture.
        return None;
    }
    let maxsize = data.maxsize as usize;
    let offset = chunk.offset as usize % maxsize.max(1);
    let row_bytes = width as usize * 4;
    let stride = if chunk.stride > 0 { chunk.stride as usize } else { row_bytes };
    let needed = stride.checked_mul(height.saturating_sub(1) as usize)?.checked_add(row_bytes)?;
    if width == 0 || height == 0 || stride < row_bytes || offset.checked_add(needed)? > maxsize {
        tracing::trace!(width, height, stride, offset, maxsize, "buffer smaller than its format; skipped");
        return None;
    }
    // SAFETY: data.data maps maxsize bytes and offset < maxsize.
    let pixels = NonNull::new(unsafe { data.data.cast::<u8>().add(offset) })?;
    Some(Held {
        buffer: NonNull::dangling(),
        pixels,
        len: maxsize - offset,
        stride_bytes: stride,
        width,
        height,
        layout,
        captured_at,
    })
}

/// Converts a CLOCK_MONOTONIC timestamp (what compositors put in the
/// header) to an `Instant`, if it is recent and not in the future.
fn instant_from_monotonic_ns(pts_ns: i64) -> Option<Instant> {
    if pts_ns <= 0 {
        return None;
    }
    let mut now = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: valid out pointer; CLOCK_MONOTONIC always exists on Linux.
    if unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) } != 0 {
        return None;
    }
    // time_t and c_long are not i64 on every target.
    #[allow(clippy::unnecessary_cast)]
    let now_ns = now.tv_sec as i64 * 1_000_000_000 + now.tv_nsec as i64;
    let age = now_ns.checked_sub(pts_ns)?;
    if !(0..1_000_000_000).contains(&age) {
        return None;
    }
    Instant::now().checked_sub(Duration::from_nanos(age as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rgb_layouts_are_swapped_while_copying() {
        let src = [1u8, 2, 3, 4, 5, 6, 7, 8, 0, 0, 0, 0];
        let mut dst = [0u8; 8];
        copy_pixels(&src, 12, &mut dst, 8, 2, 1, true);
        assert_eq!(dst, [3, 2, 1, 4, 7, 6, 5, 8]);
        copy_pixels(&src, 12, &mut dst, 8, 2, 1, false);
        assert_eq!(dst, [1, 2, 3, 4, 5, 6, 7, 8]);
    }

    #[test]
    fn padded_rows_are_dropped_and_short_sources_do_not_panic() {
        let src: Vec<u8> = (0..24).collect();
        let mut dst = [0u8; 16];
        copy_pixels(&src, 12, &mut dst, 8, 2, 2, false);
        assert_eq!(&dst[8..], &[12, 13, 14, 15, 16, 17, 18, 19]);
        copy_pixels(&src[..10], 12, &mut dst, 8, 2, 2, false);
    }

    #[test]
    fn cursor_bitmaps_become_argb_words() {
        let mut out = Vec::new();
        convert_cursor(&[10, 20, 30, 40, 0, 0, 0, 0], 8, 1, 1, Layout::Rgba, &mut out);
        assert_eq!(out, [0x280a_141e]);
        convert_cursor(&[10, 20, 30, 40], 4, 1, 1, Layout::Bgra, &mut out);
        assert_eq!(out, [0x281e_140a]);
    }

    /// A spa_buffer carrying one metadata block of `bytes`.
    fn with_meta(kind: u32, bytes: &mut [u64], run: impl FnOnce(*mut spa_sys::spa_buffer)) {
        let mut meta =
            spa_sys::spa_meta { type_: kind, size: (bytes.len() * 8) as u32, data: bytes.as_mut_ptr().cast() };
        let mut buffer = spa_sys::spa_buffer { n_metas: 1, n_datas: 0, metas: &mut meta, datas: std::ptr::null_mut() };
        run(&mut buffer);
    }

    /// Cursor metadata laid out as producers write it: cursor, bitmap, pixels.
    fn cursor_meta(words: &mut [u64], id: u32, pos: (i32, i32), hot: (i32, i32), w: u32, h: u32, stride: i32) {
        let base = words.as_mut_ptr().cast::<u8>();
        let cursor_size = size_of::<spa_sys::spa_meta_cursor>();
        let cursor = spa_sys::spa_meta_cursor {
            id,
            flags: 0,
            position: spa_sys::spa_point { x: pos.0, y: pos.1 },
            hotspot: spa_sys::spa_point { x: hot.0, y: hot.1 },
            bitmap_offset: cursor_size as u32,
        };
        let bitmap = spa_sys::spa_meta_bitmap {
            format: spa_sys::SPA_VIDEO_FORMAT_BGRA,
            size: spa_sys::spa_rectangle { width: w, height: h },
            stride,
            offset: size_of::<spa_sys::spa_meta_bitmap>() as u32,
        };
        // SAFETY: the test sizes `words` to hold all of it.
        unsafe {
            base.cast::<spa_sys::spa_meta_cursor>().write(cursor);
            base.add(cursor_size).cast::<spa_sys::spa_meta_bitmap>().write_unaligned(bitmap);
            let at = cursor_size + size_of::<spa_sys::spa_meta_bitmap>();
            let pixels = base.add(at);
            // Only what fits: a bitmap may claim more than its block holds.
            let fit = ((words.len() * 8 - at) / 4).min((w * h) as usize);
            for i in 0..fit {
                // Opaque red (B,G,R,A bytes).
                pixels.add(i * 4).copy_from_nonoverlapping([0u8, 0, 255, 255].as_ptr(), 4);
            }
        }
    }

    #[test]
    fn cursor_metadata_is_read_and_bounds_checked() {
        let mut words = vec![0u64; 64];
        cursor_meta(&mut words, 7, (100, 50), (1, 2), 2, 2, 8);
        let mut cursor = CursorState::default();
        with_meta(spa_sys::SPA_META_Cursor, &mut words, |b| assert!(read_cursor(b, &mut cursor)));
        assert!(cursor.visible);
        assert_eq!((cursor.position, cursor.hotspot, cursor.width, cursor.height), ((100, 50), (1, 2), 2, 2));
        assert_eq!(cursor.image, [0xffff_0000; 4]);
        // The same again: nothing changed.
        with_meta(spa_sys::SPA_META_Cursor, &mut words, |b| assert!(!read_cursor(b, &mut cursor)));
        // A bitmap claiming more rows than the block holds is ignored, not read.
        cursor_meta(&mut words, 7, (101, 50), (0, 0), 64, 64, 256);
        with_meta(spa_sys::SPA_META_Cursor, &mut words, |b| assert!(read_cursor(b, &mut cursor)));
        assert_eq!((cursor.position, cursor.width), ((101, 50), 2), "moved, old image kept");
        // Id 0: no cursor over the stream.
        cursor_meta(&mut words, 0, (0, 0), (0, 0), 2, 2, 8);
        with_meta(spa_sys::SPA_META_Cursor, &mut words, |b| assert!(read_cursor(b, &mut cursor)));
        assert!(!cursor.visible);
    }

    #[test]
    fn damage_regions_are_counted_up_to_the_first_invalid_one() {
        // Three regions of 16 bytes (x, y, w, h as i32/u32), then an empty one.
        let mut words = vec![0u64; 8];
        let regions = words.as_mut_ptr().cast::<spa_sys::spa_meta_region>();
        for i in 0..3 {
            // SAFETY: four regions fit in 64 bytes.
            unsafe {
                (*regions.add(i)).region.size = spa_sys::spa_rectangle { width: 10, height: 10 };
            }
        }
        with_meta(spa_sys::SPA_META_VideoDamage, &mut words, |b| {
            // SAFETY: b is the test's buffer with one meta.
            let meta = unsafe { spa_sys::spa_buffer_find_meta(b, spa_sys::SPA_META_VideoDamage) };
            assert_eq!(damage_regions(meta), Some(3));
        });
        assert_eq!(damage_regions(std::ptr::null_mut()), None, "no damage metadata");
    }

    #[test]
    fn parameters_serialize() {
        assert!(Pod::from_bytes(&enum_format().expect("format")).is_some());
        let params = buffer_params().expect("params");
        assert_eq!(pods(&params).len(), 4);
    }
}
