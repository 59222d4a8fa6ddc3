//! macOS backend on ScreenCaptureKit (the `screencapturekit` crate, macOS 14+
//! for live reconfiguration and thumbnails).
//!
//! [`MacSession`] offers the same calls as the X11 session the GUI and CLI
//! use on Linux (`list_displays`, `list_windows`, `list_sources`,
//! `primary_display`, `thumbnail`, `capture`), and [`MacCapture`] is a
//! [`CaptureBackend`] like the others.
//!
//! # One copy into the frame ring, not a zero-copy pass-through
//!
//! ScreenCaptureKit delivers IOSurface-backed `CVPixelBuffer`s and can
//! deliver NV12 (`420v`) directly, which VideoToolbox could encode without
//! any copy. This backend nevertheless copies each published BGRA frame
//! once, from ScreenCaptureKit's surface into a [`FrameRing`](crate::ring)
//! slot, exactly like the X11 and synthetic backends, because:
//!
//! - The ring, [`FrameMeta`] and the pipeline carry BGRA bytes, and the
//!   `Encoder` trait takes I420: a pass-through needs an NV12/`CVPixelBuffer`
//!   frame kind in the ring and an encoder entry point taking it — a change
//!   to both crates' shared interfaces, not to a backend.
//! - Holding ScreenCaptureKit's surfaces until the encoder is done would
//!   starve its small surface queue (it stalls or drops frames once all are
//!   out); the copy returns the surface at once.
//! - The copy is one `memcpy` of the locked surface (≈ 8 MB at 1080p, ≈ 24 MB
//!   for a 3024x1964 Retina panel), done only for frames the capture thread
//!   publishes, not for every frame ScreenCaptureKit composites.
//!
//! The VideoToolbox encoder already accepts BGRA and converts it straight
//! into its own pool buffers (`peep_encode::videotoolbox_core`), so the
//! pass-through is a contained follow-up once the ring can carry it.
//!
//! # Behaviour
//!
//! - **One persistent `SCStream` per source**, delivering at most 60 frames
//!   a second into a one-slot [`Mailbox`] (newest wins, older surfaces are
//!   released at once). The capture thread copies the newest frame when the
//!   content changed (ScreenCaptureKit's dirty rectangles) or a frame is
//!   forced; an unchanged screen costs no copy.
//! - **Native pixels**: sizes come in points and are multiplied by the
//!   backing scale factor (2 on Retina).
//! - **Window resizes** (and display mode changes) are read from each
//!   frame's content rectangle and scale, and applied with
//!   `SCStream::update_configuration` (at most every 100 ms during a drag,
//!   the final size always).
//! - **Cursor** drawn by ScreenCaptureKit (on by default).
//! - **Permission**: [`MacSession::connect`] checks Screen Recording
//!   permission first and fails with [`CaptureError::PermissionDenied`], whose
//!   message says where to grant it.
//! - **Closed windows** end the capture with [`CaptureError::SourceGone`], as
//!   on Linux: whether ScreenCaptureKit stops the stream or just goes quiet,
//!   the window is looked up (`CGWindowListCopyWindowInfo`, cheap) once a
//!   stream has been silent for a second.
//! - Peep's own windows are excluded from display captures.

use std::ffi::c_void;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use screencapturekit::cm::{CMSampleBuffer, CMSampleBufferExt, CMSampleBufferSCExt, CMTime, SCFrameStatus};
use screencapturekit::error::{SCError, SCStreamErrorCode};
use screencapturekit::screenshot_manager::SCScreenshotManager;
use screencapturekit::shareable_content::{SCDisplay, SCShareableContent, SCWindow};
use screencapturekit::stream::configuration::{PixelFormat as ScPixelFormat, SCStreamConfiguration};
use screencapturekit::stream::content_filter::SCContentFilter;
use screencapturekit::stream::delegate_trait::SCStreamDelegateTrait;
use screencapturekit::stream::output_type::SCStreamOutputType;
use screencapturekit::stream::sc_stream::SCStream;

use super::macos_logic::{
    LivenessCheck, MacTarget, Mailbox, ResizeTracker, StopKind, classify_stop, fit_within, is_listable_window,
    pixel_size, window_name, window_pixel_size,
};
use super::{CaptureBackend, Tick};
use crate::error::{CaptureError, Result};
use crate::frame::{FrameMeta, PixelFormat};
use crate::ring::RingProducer;
use crate::source::{SourceId, SourceInfo, SourceKind, Thumbnail};

/// `kCVPixelFormatType_32BGRA`.
const BGRA: u32 = u32::from_be_bytes(*b"BGRA");
/// `kCGWindowListOptionIncludingWindow`.
const WINDOW_LIST_INCLUDING_WINDOW: u32 = 1 << 3;
/// ScreenCaptureKit's surface queue: the mailbox and the last published
/// frame hold at most two; the rest keep its pipeline flowing.
const QUEUE_DEPTH: u32 = 5;
/// Upper bound on frames ScreenCaptureKit composites for us per second.
const MAX_FPS: i32 = 60;

#[link(name = "CoreGraphics", kind = "framework")]
unsafe extern "C" {
    fn CGPreflightScreenCaptureAccess() -> bool;
    fn CGRequestScreenCaptureAccess() -> bool;
    fn CGWindowListCopyWindowInfo(option: u32, relative_to_window: u32) -> *const c_void;
}

#[link(name = "CoreFoundation", kind = "framework")]
unsafe extern "C" {
    fn CFArrayGetCount(array: *const c_void) -> isize;
    fn CFRelease(cf: *const c_void);
}

/// Whether this process may record the screen (Screen Recording permission).
pub fn screen_recording_allowed() -> bool {
    // SAFETY: no arguments; CoreGraphics (macOS 10.15+) only reads the
    // privacy database.
    unsafe { CGPreflightScreenCaptureAccess() }
}

/// Fails with [`CaptureError::PermissionDenied`] unless Screen Recording is
/// allowed. The first time, this also adds the app to the list in System
/// Settings and shows the system's prompt; the grant takes effect after the
/// app restarts.
fn check_permission() -> Result<()> {
    if screen_recording_allowed() {
        return Ok(());
    }
    // SAFETY: no arguments; shows the system prompt at most once per app.
    unsafe { CGRequestScreenCaptureAccess() };
    Err(CaptureError::PermissionDenied(None))
}

/// Whether the window server still knows the window (minimised included).
fn window_exists(id: u32) -> bool {
    // SAFETY: plain values in; a +1 CFArray (or null) out, released below.
    let list = unsafe { CGWindowListCopyWindowInfo(WINDOW_LIST_INCLUDING_WINDOW, id) };
    if list.is_null() {
        return false;
    }
    // SAFETY: `list` is the live CFArray just returned; we own one reference.
    unsafe {
        let count = CFArrayGetCount(list);
        CFRelease(list);
        count > 0
    }
}

fn sc_error(context: &str, e: SCError) -> CaptureError {
    let code = e.stream_error_code().map(SCStreamErrorCode::as_raw);
    if matches!(e, SCError::PermissionDenied(_)) || classify_stop(code) == StopKind::Permission {
        CaptureError::PermissionDenied(Some(e.to_string()))
    } else {
        CaptureError::ScreenCaptureKit(format!("{context}: {e}"))
    }
}

fn shareable_content(on_screen_windows_only: bool) -> Result<SCShareableContent> {
    SCShareableContent::create()
        .with_on_screen_windows_only(on_screen_windows_only)
        .with_exclude_desktop_windows(true)
        .get()
        .map_err(|e| sc_error("listing displays and windows", e))
}

/// Native pixel size of what a filter captures, and its scale factor.
fn filter_geometry(filter: &SCContentFilter) -> ((u32, u32), f64) {
    let rect = filter.content_rect();
    let scale = f64::from(filter.point_pixel_scale());
    (pixel_size(rect.size.width, rect.size.height, scale), scale)
}

fn own_pid() -> i32 {
    i32::try_from(std::process::id()).unwrap_or(-1)
}

fn display_filter(content: &SCShareableContent, display: &SCDisplay) -> Result<SCContentFilter> {
    let pid = own_pid();
    let own: Vec<SCWindow> = content
        .windows()
        .into_iter()
        .filter(|w| w.owning_application().is_some_and(|a| a.process_id() == pid))
        .collect();
    let own: Vec<&SCWindow> = own.iter().collect();
    SCContentFilter::create()
        .with_display(display)
        .with_excluding_windows(&own)
        .build()
        .map_err(|e| sc_error("building a display filter", e))
}

/// The main display: the one at the origin of the global coordinate space.
fn is_main(display: &SCDisplay) -> bool {
    let frame = display.frame();
    frame.origin.x == 0.0 && frame.origin.y == 0.0
}

/// What a source resolved to.
struct Resolved {
    target: MacTarget,
    filter: SCContentFilter,
    size: (u32, u32),
    description: String,
}

fn resolve(id: &SourceId) -> Result<Resolved> {
    let unknown = || CaptureError::UnknownSource(id.to_string());
    let target = MacTarget::from_source(id).ok_or_else(unknown)?;
    // Off-screen windows too: a minimised window can be shared and shows up
    // once restored.
    let content = shareable_content(false)?;
    let (filter, description) = match target {
        MacTarget::MainDisplay | MacTarget::Display(_) => {
            let displays = content.displays();
            let display = match target {
                MacTarget::Display(n) => displays.iter().find(|d| d.display_id() == n),
                _ => displays.iter().find(|d| is_main(d)).or(displays.first()),
            }
            .ok_or_else(unknown)?;
            (display_filter(&content, display)?, format!("display {}", display.display_id()))
        }
        MacTarget::Window(w) => {
            let window = content.windows().into_iter().find(|win| win.window_id() == w).ok_or_else(unknown)?;
            let app = window.owning_application().map(|a| a.application_name());
            let name = window_name(window.title().as_deref(), app.as_deref(), w);
            let filter = SCContentFilter::create()
                .with_window(&window)
                .build()
                .map_err(|e| sc_error("building a window filter", e))?;
            (filter, format!("window {w:#x} {name:?}"))
        }
    };
    let (size, _) = filter_geometry(&filter);
    Ok(Resolved { target, filter, size, description })
}

/// Copies a locked BGRA pixel buffer's rows out, tightly packed.
fn read_bgra(sample: &CMSampleBuffer) -> Result<(Vec<u8>, u32, u32)> {
    let pixels = sample.pixel_buffer().ok_or_else(|| CaptureError::ScreenCaptureKit("frame without pixels".into()))?;
    if pixels.pixel_format() != BGRA {
        return Err(CaptureError::ScreenCaptureKit(format!("unexpected pixel format {:#x}", pixels.pixel_format())));
    }
    let guard = pixels
        .lock_read_only()
        .map_err(|code| CaptureError::ScreenCaptureKit(format!("CVPixelBufferLockBaseAddress returned {code}")))?;
    let (w, h, stride) = (guard.width(), guard.height(), guard.bytes_per_row());
    // SAFETY: the guard keeps the buffer locked for reading while the slice
    // is used, and ScreenCaptureKit does not reuse a surface it handed out
    // until the buffer is released.
    let data = unsafe { guard.as_slice() }.ok_or_else(|| CaptureError::ScreenCaptureKit("unreadable frame".into()))?;
    let (Ok(width), Ok(height)) = (u32::try_from(w), u32::try_from(h)) else {
        return Err(CaptureError::InvalidSize { width: u32::MAX, height: u32::MAX });
    };
    if w == 0 || h == 0 || stride < w * 4 || data.len() < stride.saturating_mul(h) {
        return Err(CaptureError::InvalidSize { width, height });
    }
    let bgra = data.chunks(stride).take(h).flat_map(|row| &row[..w * 4]).copied().collect();
    Ok((bgra, width, height))
}

/// A display as listed, with where it sits in the global space.
struct DisplayGeometry {
    info: SourceInfo,
    /// x, y, width, height in points.
    frame_points: (f64, f64, f64, f64),
    /// Pixels per point.
    scale: f64,
}

/// Lists sources and starts captures on macOS; the counterpart of the X11
/// session. Cheap to clone.
#[derive(Debug, Clone)]
pub struct MacSession {
    _private: (),
}

impl MacSession {
    /// Checks Screen Recording permission.
    ///
    /// # Errors
    /// [`CaptureError::PermissionDenied`], saying how to grant it.
    pub fn connect() -> Result<Self> {
        check_permission()?;
        Ok(Self { _private: () })
    }

    /// Displays (the main one flagged primary), at native pixel size.
    ///
    /// There is no whole-desktop source on macOS (ScreenCaptureKit captures
    /// one display per stream); `screen` means the main display.
    ///
    /// # Errors
    /// Permission or ScreenCaptureKit failures.
    pub fn list_displays(&self) -> Result<Vec<SourceInfo>> {
        let content = shareable_content(true)?;
        self.displays_of(&content).map(|displays| displays.into_iter().map(|d| d.info).collect())
    }

    /// Displays with their frames (points) and scale factors.
    fn displays_of(&self, content: &SCShareableContent) -> Result<Vec<DisplayGeometry>> {
        let mut out = Vec::new();
        for (i, display) in content.displays().iter().enumerate() {
            let filter = display_filter(content, display)?;
            let ((width, height), scale) = filter_geometry(&filter);
            let frame = display.frame();
            let primary = is_main(display);
            out.push(DisplayGeometry {
                info: SourceInfo {
                    id: MacTarget::display_id(display.display_id()).to_string(),
                    kind: SourceKind::Display,
                    name: if primary { "Main display".to_owned() } else { format!("Display {}", i + 1) },
                    app: None,
                    x: (frame.origin.x * scale).round() as i32,
                    y: (frame.origin.y * scale).round() as i32,
                    width,
                    height,
                    primary,
                },
                frame_points: (frame.origin.x, frame.origin.y, frame.size.width, frame.size.height),
                scale,
            });
        }
        Ok(out)
    }

    /// The id of the main display (the default source).
    ///
    /// # Errors
    /// Permission or ScreenCaptureKit failures, or no display at all.
    pub fn primary_display(&self) -> Result<SourceId> {
        let displays = self.list_displays()?;
        let primary = displays
            .iter()
            .find(|d| d.primary)
            .or(displays.first())
            .ok_or_else(|| CaptureError::SourceGone("no display is connected".into()))?;
        SourceId::parse(&primary.id)
    }

    /// Normal on-screen windows of other applications, with their
    /// applications' names, at native pixel size.
    ///
    /// # Errors
    /// Permission or ScreenCaptureKit failures.
    pub fn list_windows(&self) -> Result<Vec<SourceInfo>> {
        let content = shareable_content(true)?;
        let displays = self.displays_of(&content)?;
        let pid = own_pid();
        let mut out = Vec::new();
        for window in content.windows() {
            let frame = window.frame();
            let app = window.owning_application();
            if !is_listable_window(
                window.window_layer(),
                window.is_on_screen(),
                frame.size.width,
                frame.size.height,
                app.as_ref().map(|a| a.process_id()),
                pid,
            ) {
                continue;
            }
            // The scale of the display holding the window's centre.
            let (cx, cy) = (frame.origin.x + frame.size.width / 2.0, frame.origin.y + frame.size.height / 2.0);
            let scale = displays
                .iter()
                .find(|d| {
                    let (x, y, w, h) = d.frame_points;
                    cx >= x && cx < x + w && cy >= y && cy < y + h
                })
                .map_or(1.0, |d| d.scale);
            let (width, height) = pixel_size(frame.size.width, frame.size.height, scale);
            let app_name = app.map(|a| a.application_name()).filter(|n| !n.is_empty());
            let id = window.window_id();
            out.push(SourceInfo {
                id: SourceId::Window(id).to_string(),
                kind: SourceKind::Window,
                name: window_name(window.title().as_deref(), app_name.as_deref(), id),
                app: app_name,
                x: (frame.origin.x * scale).round() as i32,
                y: (frame.origin.y * scale).round() as i32,
                width,
                height,
                primary: false,
            });
        }
        Ok(out)
    }

    /// Displays then windows.
    ///
    /// # Errors
    /// Permission or ScreenCaptureKit failures.
    pub fn list_sources(&self) -> Result<Vec<SourceInfo>> {
        let mut all = self.list_displays()?;
        all.extend(self.list_windows()?);
        Ok(all)
    }

    /// A small BGRA preview of a source, at most `max_width`x`max_height`,
    /// taken by ScreenCaptureKit at that size (`SCScreenshotManager`, no
    /// stream; the cursor is left out).
    ///
    /// # Errors
    /// Unknown sources, permission or ScreenCaptureKit failures.
    pub fn thumbnail(&self, id: &SourceId, max_width: u32, max_height: u32) -> Result<Thumbnail> {
        let resolved = resolve(id)?;
        let (w, h) = fit_within(resolved.size.0, resolved.size.1, max_width, max_height);
        let config = SCStreamConfiguration::new()
            .with_width(w)
            .with_height(h)
            .with_pixel_format(ScPixelFormat::BGRA)
            .with_shows_cursor(false);
        let sample = SCScreenshotManager::capture_sample_buffer(&resolved.filter, &config)
            .map_err(|e| sc_error("taking a thumbnail", e))?;
        let (bgra, width, height) = read_bgra(&sample)?;
        Ok(Thumbnail::downscale(&bgra, width, height, width as usize * 4, max_width, max_height))
    }

    /// Starts capturing `id`.
    ///
    /// # Errors
    /// Unknown sources, permission or ScreenCaptureKit failures.
    pub fn capture(&self, id: &SourceId) -> Result<MacCapture> {
        MacCapture::new(resolve(id)?)
    }
}

/// One captured frame waiting for the capture thread.
struct Arrived {
    sample: CMSampleBuffer,
    at: Instant,
    /// Already published once (a forced re-send is stamped with the time of
    /// the re-send instead).
    published: bool,
}

/// State shared with ScreenCaptureKit's output queue and delegate.
#[derive(Default)]
struct Shared {
    frames: Mailbox<Arrived>,
    /// Some frame since the last publish had dirty rectangles.
    dirty: AtomicBool,
    /// Any sample arrived (idle ones included) since the capture thread last looked.
    alive: AtomicBool,
    /// Why ScreenCaptureKit stopped the stream, if it did.
    stopped: Mailbox<SCError>,
}

impl Shared {
    fn on_sample(&self, sample: CMSampleBuffer, kind: SCStreamOutputType) {
        if kind != SCStreamOutputType::Screen {
            return;
        }
        self.alive.store(true, Ordering::Release);
        // Idle, blank, suspended and stopped statuses carry nothing new.
        if !matches!(sample.frame_status(), Some(SCFrameStatus::Complete | SCFrameStatus::Started)) {
            return;
        }
        // ScreenCaptureKit attaches dirty rectangles to every complete frame,
        // empty ones when nothing changed.
        let dirty =
            sample.dirty_rects().is_none_or(|rects| rects.iter().any(|r| r.size.width > 0.0 && r.size.height > 0.0));
        if dirty {
            self.dirty.store(true, Ordering::Release);
        }
        self.frames.put(Arrived { sample, at: Instant::now(), published: false });
    }
}

/// Records why ScreenCaptureKit stopped a stream.
struct StopRecorder(Arc<Shared>);

impl SCStreamDelegateTrait for StopRecorder {
    fn did_stop_with_error(&self, error: SCError) {
        self.0.stopped.put(error);
    }
}

/// A running ScreenCaptureKit capture of one display or window.
pub struct MacCapture {
    stream: SCStream,
    filter: SCContentFilter,
    config: SCStreamConfiguration,
    shared: Arc<Shared>,
    target: MacTarget,
    /// The newest complete frame, kept for forced (unchanged) frames.
    last: Option<Arrived>,
    resize: ResizeTracker,
    liveness: LivenessCheck,
    /// `captured_at` of the last published frame (kept non-decreasing).
    last_captured_at: Option<Instant>,
    size: (u32, u32),
    description: String,
}

impl std::fmt::Debug for MacCapture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MacCapture").field("target", &self.target).field("size", &self.size).finish_non_exhaustive()
    }
}

fn start_stream(filter: &SCContentFilter, config: &SCStreamConfiguration, shared: &Arc<Shared>) -> Result<SCStream> {
    let mut stream = SCStream::new_with_delegate(filter, config, StopRecorder(shared.clone()))
        .map_err(|e| sc_error("creating the stream", e))?;
    let sink = shared.clone();
    stream
        .add_output_handler(
            move |sample: CMSampleBuffer, kind: SCStreamOutputType| sink.on_sample(sample, kind),
            SCStreamOutputType::Screen,
        )
        .map_err(|e| sc_error("adding the frame handler", e))?;
    stream.start_capture().map_err(|e| sc_error("starting the stream", e))?;
    Ok(stream)
}

impl MacCapture {
    fn new(resolved: Resolved) -> Result<Self> {
        check_permission()?;
        let Resolved { target, filter, size, description } = resolved;
        let config = SCStreamConfiguration::new()
            .with_width(size.0)
            .with_height(size.1)
            .with_pixel_format(ScPixelFormat::BGRA)
            .with_shows_cursor(true)
            .with_minimum_frame_interval(&CMTime::new(1, MAX_FPS))
            .with_queue_depth(QUEUE_DEPTH);
        let shared = Arc::new(Shared::default());
        let stream = start_stream(&filter, &config, &shared)?;
        let now = Instant::now();
        Ok(Self {
            stream,
            filter,
            config,
            shared,
            target,
            last: None,
            resize: ResizeTracker::new(size, Duration::from_millis(100)),
            liveness: LivenessCheck::new(Duration::from_secs(1), now),
            last_captured_at: None,
            size,
            description,
        })
    }

    fn gone(&self) -> CaptureError {
        match self.target {
            MacTarget::Window(w) => CaptureError::SourceGone(format!("window {w:#x} was closed")),
            MacTarget::Display(d) => CaptureError::SourceGone(format!("display {d} was disconnected")),
            MacTarget::MainDisplay => CaptureError::SourceGone("the main display went away".into()),
        }
    }

    /// Whether the captured source still exists.
    fn source_exists(&self) -> Result<bool> {
        match self.target {
            MacTarget::Window(w) => Ok(window_exists(w)),
            MacTarget::Display(d) => Ok(shareable_content(true)?.displays().iter().any(|x| x.display_id() == d)),
            MacTarget::MainDisplay => Ok(!shareable_content(true)?.displays().is_empty()),
        }
    }

    /// Turns a stop reported by ScreenCaptureKit into the error to return.
    fn stop_error(&self, error: SCError) -> CaptureError {
        match classify_stop(error.stream_error_code().map(SCStreamErrorCode::as_raw)) {
            StopKind::Permission => CaptureError::PermissionDenied(Some(error.to_string())),
            StopKind::UserStopped => CaptureError::Stopped,
            StopKind::Other => match self.source_exists() {
                Ok(false) => self.gone(),
                _ => CaptureError::ScreenCaptureKit(format!("the stream stopped: {error}")),
            },
        }
    }

    /// Applies a new output size to the running stream.
    fn reconfigure(&mut self, (width, height): (u32, u32)) -> Result<()> {
        self.config.set_width(width).set_height(height);
        match self.stream.update_configuration(&self.config) {
            Ok(()) => {}
            Err(e) => {
                // Before macOS 14 a live update is refused: start a new stream.
                tracing::debug!(error = %e, "updating the stream configuration failed; restarting the stream");
                let _ = self.stream.stop_capture();
                self.stream = start_stream(&self.filter, &self.config, &self.shared)?;
            }
        }
        self.size = (width, height);
        Ok(())
    }

    fn publish(&mut self, ring: &mut RingProducer, seq: u64, changed: bool) -> Result<Tick> {
        let Some(last) = &mut self.last else { return Ok(Tick::Unchanged) };
        let mut captured_at = if last.published { Instant::now() } else { last.at };
        if let Some(previous) = self.last_captured_at {
            captured_at = captured_at.max(previous);
        }
        let pixels =
            last.sample.pixel_buffer().ok_or_else(|| CaptureError::ScreenCaptureKit("frame without pixels".into()))?;
        if pixels.pixel_format() != BGRA {
            return Err(CaptureError::ScreenCaptureKit(format!(
                "unexpected pixel format {:#x}",
                pixels.pixel_format()
            )));
        }
        let guard = pixels
            .lock_read_only()
            .map_err(|code| CaptureError::ScreenCaptureKit(format!("CVPixelBufferLockBaseAddress returned {code}")))?;
        let (w, h, stride_bytes) = (guard.width(), guard.height(), guard.bytes_per_row());
        let (Ok(width), Ok(height)) = (u32::try_from(w), u32::try_from(h)) else {
            return Err(CaptureError::InvalidSize { width: u32::MAX, height: u32::MAX });
        };
        // SAFETY: the guard keeps the buffer locked for reading while the
        // slice is used, and ScreenCaptureKit does not reuse a surface it
        // handed out until the buffer is released (we hold it in `last`).
        let data =
            unsafe { guard.as_slice() }.ok_or_else(|| CaptureError::ScreenCaptureKit("unreadable frame".into()))?;
        let len = stride_bytes.saturating_mul(h);
        if w == 0 || h == 0 || stride_bytes < w * 4 || data.len() < len {
            return Err(CaptureError::InvalidSize { width, height });
        }
        // The one copy: ScreenCaptureKit's surface into the ring slot.
        let mut slot = ring.begin();
        slot.heap_bytes(len).copy_from_slice(&data[..len]);
        slot.publish(FrameMeta { width, height, stride_bytes, format: PixelFormat::Bgra, captured_at, seq, changed });
        last.published = true;
        self.last_captured_at = Some(captured_at);
        Ok(Tick::Published { changed })
    }
}

impl CaptureBackend for MacCapture {
    fn capture(&mut self, ring: &mut RingProducer, seq: u64, force: bool) -> Result<Tick> {
        let now = Instant::now();
        if let Some(error) = self.shared.stopped.take() {
            return Err(self.stop_error(error));
        }
        if self.shared.alive.swap(false, Ordering::AcqRel) {
            self.liveness.alive(now);
        }
        let mut observed = None;
        if let Some(arrived) = self.shared.frames.take() {
            let s = &arrived.sample;
            if let (Some(rect), Some(content_scale), Some(scale)) =
                (s.content_rect(), s.content_scale(), s.scale_factor())
            {
                observed = window_pixel_size(rect.size.width, rect.size.height, content_scale, scale);
            }
            self.last = Some(arrived);
        }
        let previous = self.resize.configured();
        if let Some(size) = self.resize.poll(observed, now) {
            tracing::debug!(?size, source = %self.description, "source resized; updating the stream");
            if let Err(e) = self.reconfigure(size) {
                self.resize.failed(previous);
                return Err(e);
            }
        }
        let changed = self.shared.dirty.swap(false, Ordering::AcqRel);
        if self.last.is_none() || (!changed && !force) {
            if matches!(self.target, MacTarget::Window(_)) && self.liveness.due(now) && !self.source_exists()? {
                return Err(self.gone());
            }
            return Ok(Tick::Unchanged);
        }
        self.publish(ring, seq, changed)
    }

    fn size(&self) -> (u32, u32) {
        self.size
    }

    fn set_cursor(&mut self, visible: bool) {
        self.config.set_shows_cursor(visible);
        if let Err(e) = self.stream.update_configuration(&self.config) {
            // Applied with the next restart or reconfiguration instead.
            tracing::warn!(error = %e, "could not change cursor capture on the running stream");
        }
    }

    fn describe(&self) -> String {
        self.description.clone()
    }
}

impl Drop for MacCapture {
    fn drop(&mut self) {
        // Errors mean the stream already stopped.
        let _ = self.stream.stop_capture();
    }
}
