//! The decisions of the macOS (ScreenCaptureKit) backend, in plain Rust so
//! they compile and are tested on every OS; `super::macos` (macOS only) feeds them what
//! ScreenCaptureKit reports. Nothing here calls into the system.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::source::SourceId;

/// Largest side ScreenCaptureKit is asked for (and the largest sane frame).
pub const MAX_SIDE: u32 = 16384;

/// Windows smaller than this on either side (in points) are not listed.
pub const MIN_WINDOW_SIDE_POINTS: f64 = 40.0;

/// Native pixel size of something `width_points`x`height_points` on a
/// display with `scale` pixels per point (2 on Retina): rounded up, at least
/// 1x1, at most [`MAX_SIDE`].
pub fn pixel_size(width_points: f64, height_points: f64, scale: f64) -> (u32, u32) {
    let scale = if scale.is_finite() && scale > 0.0 { scale } else { 1.0 };
    let side = |points: f64| {
        let pixels = (points * scale - 1e-6).ceil();
        if pixels.is_finite() { pixels.clamp(1.0, f64::from(MAX_SIDE)) as u32 } else { 1 }
    };
    (side(width_points), side(height_points))
}

/// The native pixel size of a captured window, from a frame's
/// `SCStreamFrameInfo`: `content_rect` is where the window sits in the output
/// (points), `content_scale` how much ScreenCaptureKit scaled it to fit the
/// configured output (1 when it fits, < 1 when the window grew past it) and
/// `scale_factor` the display's pixels per point: the window is
/// `content_rect / content_scale` points. `None` for nonsense values.
pub fn window_pixel_size(
    content_width_points: f64,
    content_height_points: f64,
    content_scale: f64,
    scale_factor: f64,
) -> Option<(u32, u32)> {
    let valid = |v: f64| v.is_finite() && v > 0.0;
    if !(valid(content_width_points) && valid(content_height_points) && valid(content_scale) && valid(scale_factor)) {
        return None;
    }
    Some(pixel_size(content_width_points / content_scale, content_height_points / content_scale, scale_factor))
}

/// Decides when to reconfigure a window stream's output size. During a live
/// resize every frame has a new size; reconfiguring costs a round trip to
/// the window server, so a new size is applied at most every `min_interval`
/// (frames in between are scaled or padded by ScreenCaptureKit, which is
/// fine for a moment), and the final size is always applied.
#[derive(Debug, Clone)]
pub struct ResizeTracker {
    configured: (u32, u32),
    wanted: (u32, u32),
    last_change: Option<Instant>,
    min_interval: Duration,
}

impl ResizeTracker {
    /// Tracks a stream configured at `configured` pixels.
    pub fn new(configured: (u32, u32), min_interval: Duration) -> Self {
        Self { configured, wanted: configured, last_change: None, min_interval }
    }

    /// The size the stream is configured for.
    pub fn configured(&self) -> (u32, u32) {
        self.configured
    }

    /// Records the window's size as of a frame (if known) and returns the
    /// size to reconfigure to now, if any. Call it every tick (with `None`
    /// when no frame came) so a pending final size is applied.
    pub fn poll(&mut self, observed: Option<(u32, u32)>, now: Instant) -> Option<(u32, u32)> {
        if let Some(size) = observed {
            self.wanted = size;
        }
        if self.wanted == self.configured {
            return None;
        }
        if self.last_change.is_some_and(|t| now.saturating_duration_since(t) < self.min_interval) {
            return None;
        }
        self.configured = self.wanted;
        self.last_change = Some(now);
        Some(self.configured)
    }

    /// The reconfiguration failed: try again at the next poll.
    pub fn failed(&mut self, previous: (u32, u32)) {
        self.configured = previous;
    }
}

/// A one-slot mailbox between ScreenCaptureKit's output queue and the
/// capture thread. Policy when full: the newest frame replaces the older
/// one, which is released at once (ScreenCaptureKit recycles its surfaces, so
/// holding stale ones would starve its queue).
#[derive(Debug)]
pub struct Mailbox<T> {
    slot: Mutex<Option<T>>,
}

impl<T> Default for Mailbox<T> {
    fn default() -> Self {
        Self { slot: Mutex::new(None) }
    }
}

impl<T> Mailbox<T> {
    /// Stores `item`; returns whether an untaken one was replaced.
    pub fn put(&self, item: T) -> bool {
        let old = self.slot.lock().unwrap_or_else(|e| e.into_inner()).replace(item);
        // Dropped outside the lock (releasing a sample buffer calls into the OS).
        old.is_some()
    }

    /// Takes the newest item, if any.
    pub fn take(&self) -> Option<T> {
        self.slot.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}

/// When to ask the system whether a silent source still exists.
/// ScreenCaptureKit sends nothing while a window is unchanged, and does not
/// always stop the stream when the window closes, so after `quiet` without a
/// frame the backend looks the window up, at most once per `quiet`.
#[derive(Debug, Clone)]
pub struct LivenessCheck {
    quiet: Duration,
    last_sign_of_life: Instant,
    last_check: Option<Instant>,
}

impl LivenessCheck {
    /// A check that considers the source alive at `now`.
    pub fn new(quiet: Duration, now: Instant) -> Self {
        Self { quiet, last_sign_of_life: now, last_check: None }
    }

    /// A frame (of any status) arrived.
    pub fn alive(&mut self, now: Instant) {
        self.last_sign_of_life = now;
    }

    /// Whether to look the source up now; if so, the check is recorded.
    pub fn due(&mut self, now: Instant) -> bool {
        let silent = now.saturating_duration_since(self.last_sign_of_life) >= self.quiet;
        let rested = self.last_check.is_none_or(|t| now.saturating_duration_since(t) >= self.quiet);
        if silent && rested {
            self.last_check = Some(now);
            true
        } else {
            false
        }
    }
}

/// What a source id names on macOS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MacTarget {
    /// The main display (`screen`).
    MainDisplay,
    /// A display by `CGDirectDisplayID` (`monitor:ID`).
    Display(u32),
    /// A window by `CGWindowID` (`window:0xID`).
    Window(u32),
}

impl MacTarget {
    /// Maps a source id; `None` for ids that cannot exist on macOS
    /// (synthetic scenes, non-numeric monitor names).
    pub fn from_source(id: &SourceId) -> Option<Self> {
        match id {
            SourceId::Screen => Some(Self::MainDisplay),
            SourceId::Monitor(name) => name.parse().ok().map(Self::Display),
            SourceId::Window(w) => Some(Self::Window(*w)),
            SourceId::Synthetic(_) | SourceId::Portal => None,
        }
    }

    /// The source id of a display.
    pub fn display_id(display_id: u32) -> SourceId {
        SourceId::Monitor(display_id.to_string())
    }
}

/// Whether a window from `SCShareableContent` is worth listing: a normal
/// (layer 0) on-screen window with an owning application, not tiny, and not
/// one of Peep's own.
pub fn is_listable_window(
    layer: i32,
    on_screen: bool,
    width_points: f64,
    height_points: f64,
    owner_pid: Option<i32>,
    own_pid: i32,
) -> bool {
    layer == 0
        && on_screen
        && width_points >= MIN_WINDOW_SIDE_POINTS
        && height_points >= MIN_WINDOW_SIDE_POINTS
        && owner_pid.is_some_and(|pid| pid != own_pid)
}

/// The name shown for a window: its title, else its application's name,
/// else its id.
pub fn window_name(title: Option<&str>, app: Option<&str>, id: u32) -> String {
    [title, app]
        .into_iter()
        .flatten()
        .map(str::trim)
        .find(|s| !s.is_empty())
        .map_or_else(|| format!("window {id:#x}"), str::to_owned)
}

/// How a stream that ScreenCaptureKit stopped should be reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopKind {
    /// Screen Recording permission is missing or was revoked.
    Permission,
    /// The user stopped sharing from the system's menu-bar control.
    UserStopped,
    /// Anything else: the backend checks whether the source still exists
    /// (gone → "source gone", as on Linux).
    Other,
}

/// Classifies an `SCStreamError` code (`SCStreamErrorCode` in Apple's headers).
pub fn classify_stop(code: Option<i32>) -> StopKind {
    match code {
        // SCStreamErrorUserDeclined, SCStreamErrorMissingEntitlements
        Some(-3801 | -3803) => StopKind::Permission,
        // SCStreamErrorUserStopped
        Some(-3817) => StopKind::UserStopped,
        _ => StopKind::Other,
    }
}

/// The largest size with the aspect ratio of `width`x`height` that fits
/// `max_width`x`max_height` (never upscaled, at least 1x1).
pub fn fit_within(width: u32, height: u32, max_width: u32, max_height: u32) -> (u32, u32) {
    let (w, h) = (f64::from(width.max(1)), f64::from(height.max(1)));
    let scale = (f64::from(max_width.max(1)) / w).min(f64::from(max_height.max(1)) / h).min(1.0);
    (((w * scale).round() as u32).max(1), ((h * scale).round() as u32).max(1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synthetic::Scene;

    #[test]
    fn points_become_native_pixels() {
        assert_eq!(pixel_size(1512.0, 982.0, 2.0), (3024, 1964)); // 14" MacBook Pro, default scaling
        assert_eq!(pixel_size(1920.0, 1080.0, 1.0), (1920, 1080));
        assert_eq!(pixel_size(100.5, 10.25, 2.0), (201, 21));
        assert_eq!(pixel_size(0.0, -5.0, 2.0), (1, 1));
        assert_eq!(pixel_size(1e9, f64::NAN, 2.0), (MAX_SIDE, 1));
        assert_eq!(pixel_size(800.0, 600.0, f64::NAN), (800, 600));
    }

    #[test]
    fn window_size_undoes_the_fit_scaling() {
        // Fits the configured output: content at 1:1.
        assert_eq!(window_pixel_size(600.0, 400.0, 1.0, 2.0), Some((1200, 800)));
        // Grew past it: ScreenCaptureKit shrank it by half to fit.
        assert_eq!(window_pixel_size(600.0, 400.0, 0.5, 2.0), Some((2400, 1600)));
        // Scaled up to fill the output (`scalesToFit`): undone as well.
        assert_eq!(window_pixel_size(600.0, 400.0, 1.5, 1.0), Some((400, 267)));
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            assert_eq!(window_pixel_size(bad, 400.0, 1.0, 2.0), None);
            assert_eq!(window_pixel_size(600.0, 400.0, bad, 2.0), None);
            assert_eq!(window_pixel_size(600.0, 400.0, 1.0, bad), None);
        }
    }

    #[test]
    fn resizes_are_rate_limited_and_the_final_size_always_lands() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let mut r = ResizeTracker::new((800, 600), Duration::from_millis(100));
        assert_eq!(r.poll(Some((800, 600)), ms(0)), None);
        assert_eq!(r.poll(Some((810, 600)), ms(10)), Some((810, 600)));
        // A drag: sizes change every frame, applied at most every 100 ms.
        assert_eq!(r.poll(Some((820, 600)), ms(20)), None);
        assert_eq!(r.poll(Some((830, 600)), ms(60)), None);
        assert_eq!(r.poll(Some((840, 600)), ms(110)), Some((840, 600)));
        assert_eq!(r.poll(Some((900, 650)), ms(150)), None);
        // The drag ended; no more frames, but the last size is applied.
        assert_eq!(r.poll(None, ms(180)), None);
        assert_eq!(r.poll(None, ms(215)), Some((900, 650)));
        assert_eq!(r.poll(None, ms(400)), None);
        assert_eq!(r.configured(), (900, 650));
        // A failed reconfiguration is retried.
        assert_eq!(r.poll(Some((1000, 700)), ms(500)), Some((1000, 700)));
        r.failed((900, 650));
        assert_eq!(r.poll(None, ms(610)), Some((1000, 700)));
    }

    #[test]
    fn mailbox_keeps_only_the_newest() {
        let m = Mailbox::default();
        assert!(!m.put(1));
        assert!(m.put(2));
        assert_eq!(m.take(), Some(2));
        assert_eq!(m.take(), None);
        let m = std::sync::Arc::new(Mailbox::default());
        let writer = {
            let m = m.clone();
            std::thread::Builder::new()
                .name("mailbox-writer".into())
                .spawn(move || {
                    for i in 0..10_000u32 {
                        m.put(i);
                    }
                })
                .expect("spawn")
        };
        let mut last = None;
        while !writer.is_finished() {
            if let Some(v) = m.take() {
                assert!(last.is_none_or(|l| v > l), "went backwards: {last:?} then {v}");
                last = Some(v);
            }
        }
        writer.join().expect("writer");
        if let Some(v) = m.take() {
            last = Some(v);
        }
        assert_eq!(last, Some(9_999), "the final frame is always there to take");
    }

    #[test]
    fn silent_sources_are_checked_at_most_once_per_quiet_period() {
        let t0 = Instant::now();
        let s = |n| t0 + Duration::from_secs(n);
        let mut c = LivenessCheck::new(Duration::from_secs(2), t0);
        assert!(!c.due(s(1)));
        assert!(c.due(s(2)));
        assert!(!c.due(s(3)));
        assert!(c.due(s(4)));
        c.alive(s(5));
        assert!(!c.due(s(6)));
        assert!(c.due(s(7)));
    }

    #[test]
    fn source_ids_map_to_targets() {
        assert_eq!(MacTarget::from_source(&SourceId::Screen), Some(MacTarget::MainDisplay));
        assert_eq!(
            MacTarget::from_source(&SourceId::parse("monitor:69733382").unwrap()),
            Some(MacTarget::Display(69_733_382))
        );
        assert_eq!(MacTarget::from_source(&SourceId::parse("monitor:DP-1").unwrap()), None);
        assert_eq!(MacTarget::from_source(&SourceId::parse("window:0x1a2").unwrap()), Some(MacTarget::Window(0x1a2)));
        assert_eq!(MacTarget::from_source(&SourceId::Synthetic(Scene::Moving)), None);
        let id = MacTarget::display_id(1);
        assert_eq!(SourceId::parse(&id.to_string()).unwrap(), id);
    }

    #[test]
    fn window_listing_rules() {
        assert!(is_listable_window(0, true, 800.0, 600.0, Some(42), 7));
        assert!(!is_listable_window(25, true, 800.0, 600.0, Some(42), 7), "menu bar, dock, overlays");
        assert!(!is_listable_window(0, false, 800.0, 600.0, Some(42), 7), "minimised or hidden");
        assert!(!is_listable_window(0, true, 30.0, 600.0, Some(42), 7), "tiny");
        assert!(!is_listable_window(0, true, 800.0, 600.0, None, 7), "no owner");
        assert!(!is_listable_window(0, true, 800.0, 600.0, Some(7), 7), "our own window");
        assert_eq!(window_name(Some(" Notes "), Some("TextEdit"), 5), "Notes");
        assert_eq!(window_name(Some(""), Some("TextEdit"), 5), "TextEdit");
        assert_eq!(window_name(None, None, 0x2a), "window 0x2a");
    }

    #[test]
    fn stop_codes_are_classified() {
        assert_eq!(classify_stop(Some(-3801)), StopKind::Permission);
        assert_eq!(classify_stop(Some(-3803)), StopKind::Permission);
        assert_eq!(classify_stop(Some(-3817)), StopKind::UserStopped);
        assert_eq!(classify_stop(Some(-3815)), StopKind::Other);
        assert_eq!(classify_stop(None), StopKind::Other);
    }

    #[test]
    fn thumbnails_fit_and_never_upscale() {
        assert_eq!(fit_within(3024, 1964, 320, 180), (277, 180));
        assert_eq!(fit_within(100, 50, 320, 180), (100, 50));
        assert_eq!(fit_within(0, 0, 320, 180), (1, 1));
        assert_eq!(fit_within(5000, 10, 100, 100), (100, 1));
    }
}
