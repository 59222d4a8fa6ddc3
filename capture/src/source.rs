//! Source ids and descriptions shared by every backend.

use crate::error::{CaptureError, Result};
use crate::synthetic::Scene;

/// Which source to capture. The textual form (`peep list`, `--source`) is
/// `screen`, `monitor:NAME`, `window:0xID` (or decimal), `portal`,
/// `synthetic` or `synthetic:SCENE`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SourceId {
    /// The whole X screen (every monitor).
    Screen,
    /// One monitor by its RandR name.
    Monitor(String),
    /// One top-level window.
    Window(u32),
    /// Whatever the user picks in the desktop's screen-cast dialog (the
    /// ScreenCast portal on Wayland).
    Portal,
    /// The synthetic test source.
    Synthetic(Scene),
}

impl SourceId {
    /// Parses the textual form.
    pub fn parse(text: &str) -> Result<Self> {
        let unknown = || CaptureError::UnknownSource(text.to_owned());
        let text = text.trim();
        if text == "screen" {
            return Ok(Self::Screen);
        }
        if text == "portal" {
            return Ok(Self::Portal);
        }
        if text == "synthetic" {
            return Ok(Self::Synthetic(Scene::Moving));
        }
        if let Some(scene) = text.strip_prefix("synthetic:") {
            return Scene::from_name(scene).map(Self::Synthetic).ok_or_else(unknown);
        }
        if let Some(name) = text.strip_prefix("monitor:") {
            return if name.is_empty() { Err(unknown()) } else { Ok(Self::Monitor(name.to_owned())) };
        }
        if let Some(id) = text.strip_prefix("window:") {
            let parsed = match id.strip_prefix("0x").or_else(|| id.strip_prefix("0X")) {
                Some(hex) => u32::from_str_radix(hex, 16),
                None => id.parse(),
            };
            return parsed.map(Self::Window).map_err(|_| unknown());
        }
        Err(unknown())
    }
}

impl std::fmt::Display for SourceId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SourceId::Screen => f.write_str("screen"),
            SourceId::Monitor(name) => write!(f, "monitor:{name}"),
            SourceId::Window(id) => write!(f, "window:{id:#x}"),
            SourceId::Portal => f.write_str("portal"),
            SourceId::Synthetic(scene) => write!(f, "synthetic:{}", scene.name()),
        }
    }
}

/// Kind of a listed source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    /// A display (whole screen or one monitor).
    Display,
    /// A top-level window.
    Window,
}

/// A source as listed to the user.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SourceInfo {
    /// Textual id to pass to `--source`.
    pub id: String,
    /// Display or window.
    pub kind: SourceKind,
    /// Monitor name or window title.
    pub name: String,
    /// Application (WM_CLASS class) for windows.
    pub app: Option<String>,
    /// Position on the screen in pixels.
    pub x: i32,
    /// Position on the screen in pixels.
    pub y: i32,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Whether this is the primary monitor.
    pub primary: bool,
}

/// A small BGRA preview of a source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Thumbnail {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Tightly packed BGRA rows.
    pub bgra: Vec<u8>,
}

impl Thumbnail {
    /// Box-filters a BGRA image down to fit `max_width`×`max_height`, keeping
    /// the aspect ratio (never upscales).
    pub fn downscale(
        src: &[u8],
        width: u32,
        height: u32,
        stride_bytes: usize,
        max_width: u32,
        max_height: u32,
    ) -> Self {
        let scale =
            f64::max(f64::from(width) / f64::from(max_width.max(1)), f64::from(height) / f64::from(max_height.max(1)))
                .max(1.0);
        let out_w = ((f64::from(width) / scale).round() as u32).max(1);
        let out_h = ((f64::from(height) / scale).round() as u32).max(1);
        let mut bgra = Vec::with_capacity(out_w as usize * out_h as usize * 4);
        for oy in 0..out_h {
            let y0 = (u64::from(oy) * u64::from(height) / u64::from(out_h)) as usize;
            let y1 = ((u64::from(oy + 1) * u64::from(height) / u64::from(out_h)) as usize).max(y0 + 1);
            for ox in 0..out_w {
                let x0 = (u64::from(ox) * u64::from(width) / u64::from(out_w)) as usize;
                let x1 = ((u64::from(ox + 1) * u64::from(width) / u64::from(out_w)) as usize).max(x0 + 1);
                let mut sum = [0u32; 4];
                for y in y0..y1 {
                    for x in x0..x1 {
                        let i = y * stride_bytes + x * 4;
                        for c in 0..4 {
                            sum[c] += u32::from(src[i + c]);
                        }
                    }
                }
                let n = ((y1 - y0) * (x1 - x0)) as u32;
                bgra.extend(sum.iter().enumerate().map(|(c, s)| if c == 3 { 255 } else { (s / n) as u8 }));
            }
        }
        Self { width: out_w, height: out_h, bgra }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip() {
        for text in ["screen", "monitor:DP-1", "window:0x3a00007", "portal", "synthetic:typing"] {
            assert_eq!(SourceId::parse(text).expect(text).to_string(), text);
        }
        assert_eq!(SourceId::parse("window:42").expect("decimal"), SourceId::Window(42));
        assert_eq!(SourceId::parse("synthetic").expect("default scene"), SourceId::Synthetic(Scene::Moving));
    }

    #[test]
    fn bad_ids_are_clear_errors() {
        for text in ["", "window:", "window:0xzz", "monitor:", "synthetic:nope", "hdmi"] {
            let err = SourceId::parse(text).expect_err(text);
            assert!(err.to_string().contains("peep list"), "{err}");
        }
    }

    #[test]
    fn thumbnail_keeps_aspect_and_averages() {
        let (w, h) = (400u32, 200u32);
        let src: Vec<u8> =
            (0..w * h).flat_map(|i| if i % 2 == 0 { [0, 0, 0, 255] } else { [200, 100, 50, 255] }).collect();
        let t = Thumbnail::downscale(&src, w, h, w as usize * 4, 100, 100);
        assert_eq!((t.width, t.height), (100, 50));
        assert_eq!(&t.bgra[..4], &[100, 50, 25, 255]);
        let one = Thumbnail::downscale(&[1, 2, 3, 4], 1, 1, 4, 64, 64);
        assert_eq!((one.width, one.height), (1, 1));
    }
}
