//! Synthetic screen content for tests, benchmarks and latency measurement.
//!
//! A [`SyntheticScene`] renders a deterministic BGRA frame for any frame index:
//! a page of pseudo-text (glyph-like 5×7 bit patterns, so it has the sharp
//! edges of real text), optionally typed, scrolled or overlaid with a moving
//! box, plus the machine-readable [`crate::marks`] in the top-left corner.
//! Rendering is a pure function of the frame index, so any ring slot can be
//! filled independently.

use crate::marks::{self, FrameMark};

/// What moves on the synthetic screen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scene {
    /// Nothing changes after the first frame (marks included).
    Static,
    /// One character is typed per frame; the marks change.
    Typing,
    /// The text page scrolls by [`SCROLL_PX_PER_FRAME`] pixels per frame.
    Scrolling,
    /// Scrolling text, a moving box and a drifting gradient: everything moves.
    Moving,
}

impl Scene {
    /// All scenes, for benchmarks.
    pub const ALL: [Scene; 4] = [Scene::Static, Scene::Typing, Scene::Scrolling, Scene::Moving];

    /// Parses `static`, `typing`, `scrolling` or `moving`.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.name() == name)
    }

    /// The scene's lowercase name.
    pub fn name(self) -> &'static str {
        match self {
            Scene::Static => "static",
            Scene::Typing => "typing",
            Scene::Scrolling => "scrolling",
            Scene::Moving => "moving",
        }
    }
}

/// Pixels the page scrolls per frame in [`Scene::Scrolling`] and [`Scene::Moving`].
pub const SCROLL_PX_PER_FRAME: usize = 4;
const GLYPH_SCALE: usize = 2;
const CELL_W: usize = 6 * GLYPH_SCALE;
const CELL_H: usize = 9 * GLYPH_SCALE;
const BACKGROUND: [u8; 4] = [0x2b, 0x23, 0x1e, 0xff]; // dark editor theme, BGRA
const INK: [[u8; 4]; 4] =
    [[0xd4, 0xd4, 0xd4, 0xff], [0x9c, 0xdc, 0xfe, 0xff], [0x78, 0xc3, 0xce, 0xff], [0x6a, 0x99, 0x55, 0xff]];

/// Deterministic synthetic screen content of one size and scene.
#[derive(Debug, Clone)]
pub struct SyntheticScene {
    width: usize,
    height: usize,
    scene: Scene,
}

impl SyntheticScene {
    /// A scene of `width`×`height` pixels.
    pub fn new(width: usize, height: usize, scene: Scene) -> Self {
        Self { width, height, scene }
    }

    /// Width in pixels.
    pub fn width(&self) -> usize {
        self.width
    }

    /// Height in pixels.
    pub fn height(&self) -> usize {
        self.height
    }

    /// The scene.
    pub fn scene(&self) -> Scene {
        self.scene
    }

    /// Whether frame `index` differs from frame `index - 1`.
    pub fn changed(&self, index: u64) -> bool {
        index == 0 || self.scene != Scene::Static
    }

    /// Where frame `index` (with its mark) may differ from frame
    /// `index - 1`: the typed character's cell and the mark when typing,
    /// nothing for the static scene, `None` (everything) for scrolling and
    /// moving content and for frame 0.
    pub fn damage(&self, index: u64) -> Option<crate::frame::DamageRect> {
        use crate::frame::DamageRect;
        let (w, h) = (self.width as u32, self.height as u32);
        match self.scene {
            _ if index == 0 => None,
            Scene::Static => Some(DamageRect::EMPTY),
            Scene::Scrolling | Scene::Moving => None,
            Scene::Typing => {
                let (mark_w, mark_h) = marks::mark_area(self.width);
                let mark = DamageRect::clipped(0, 0, mark_w as i64, mark_h as i64, w, h);
                // The character typed in this frame (see `render_content`).
                let typed = 600 + index as usize - 1;
                let (line, col) = (typed / 128, typed % 128);
                let cell = DamageRect::clipped(
                    (col * CELL_W) as i64,
                    (line * CELL_H) as i64,
                    CELL_W as i64,
                    CELL_H as i64,
                    w,
                    h,
                );
                Some(mark.union(cell))
            }
        }
    }

    /// Renders frame `index` into `dst` (BGRA, `stride_bytes` per row), with
    /// `mark` drawn in the top-left corner. [`Scene::Static`] ignores `mark`
    /// after frame 0 and draws the mark of frame 0 (`counter` 0, time 0).
    ///
    /// # Panics
    /// If `dst` is smaller than `stride_bytes * height` or the stride is
    /// shorter than a row: a caller bug.
    pub fn render(&self, index: u64, dst: &mut [u8], stride_bytes: usize, mark: FrameMark) {
        self.render_content(index, dst, stride_bytes);
        self.render_mark(dst, stride_bytes, mark);
    }

    /// Draws the mark only (after [`SyntheticScene::render_content`]), so a
    /// timestamp can be taken once the picture is complete, as a real
    /// capture would see it.
    pub fn render_mark(&self, dst: &mut [u8], stride_bytes: usize, mark: FrameMark) {
        let mark = if self.scene == Scene::Static { FrameMark { counter: 0, timestamp_ms: 0 } } else { mark };
        marks::draw_mark(dst, self.width, self.height, stride_bytes, mark);
    }

    /// Draws frame `index` without the mark.
    ///
    /// # Panics
    /// As [`SyntheticScene::render`].
    pub fn render_content(&self, index: u64, dst: &mut [u8], stride_bytes: usize) {
        let (w, h) = (self.width, self.height);
        assert!(stride_bytes >= w * 4 && dst.len() >= stride_bytes * h, "synthetic frame buffer too small");
        let scroll = match self.scene {
            Scene::Scrolling | Scene::Moving => index as usize * SCROLL_PX_PER_FRAME,
            Scene::Static | Scene::Typing => 0,
        };
        let typed = match self.scene {
            Scene::Typing => 600 + index as usize,
            _ => usize::MAX,
        };
        let gradient = matches!(self.scene, Scene::Moving).then_some(index as usize);
        let cols = w / CELL_W;
        for y in 0..h {
            let row = &mut dst[y * stride_bytes..y * stride_bytes + w * 4];
            let page_y = y + scroll;
            let line = page_y / CELL_H;
            let gy = (page_y % CELL_H) / GLYPH_SCALE;
            fill_background(row, y, gradient);
            if gy >= 7 || line == 0 {
                continue;
            }
            let len = line_len(line).min(cols);
            for col in 0..len {
                let char_index = line * 128 + col;
                if char_index >= typed {
                    break;
                }
                let bits = glyph(line, col);
                if bits == 0 {
                    continue;
                }
                let ink = INK[(line + col / 8) % INK.len()];
                let row_bits = (bits >> (gy * 5)) & 0x1f;
                for gx in 0..5 {
                    if row_bits >> (4 - gx) & 1 == 1 {
                        let x0 = col * CELL_W + gx * GLYPH_SCALE;
                        for px in row[x0 * 4..(x0 + GLYPH_SCALE) * 4].chunks_exact_mut(4) {
                            px.copy_from_slice(&ink);
                        }
                    }
                }
            }
        }
        if self.scene == Scene::Moving {
            self.draw_box(index, dst, stride_bytes);
        }
    }

    fn draw_box(&self, index: u64, dst: &mut [u8], stride_bytes: usize) {
        let (w, h) = (self.width, self.height);
        let side = (w.min(h) / 5).max(1);
        let span_x = w.saturating_sub(side).max(1);
        let span_y = h.saturating_sub(side).max(1);
        let t = index as usize * 7;
        let x0 = bounce(t, span_x);
        let y0 = bounce(t * 3 / 5, span_y);
        let colour = [0x30, 0x90, (index % 256) as u8, 0xff];
        for y in y0..(y0 + side).min(h) {
            for px in dst[y * stride_bytes + x0 * 4..y * stride_bytes + (x0 + side).min(w) * 4].chunks_exact_mut(4) {
                px.copy_from_slice(&colour);
            }
        }
    }
}

fn bounce(t: usize, span: usize) -> usize {
    let p = t % (2 * span);
    if p < span { p } else { 2 * span - p - 1 }
}

fn fill_background(row: &mut [u8], y: usize, gradient: Option<usize>) {
    match gradient {
        None => {
            for px in row.chunks_exact_mut(4) {
                px.copy_from_slice(&BACKGROUND);
            }
        }
        Some(shift) => {
            for (x, px) in row.chunks_exact_mut(4).enumerate() {
                let v = ((x + y + shift * 3) / 8 % 64) as u8;
                px.copy_from_slice(&[BACKGROUND[0] + v / 2, BACKGROUND[1] + v / 3, BACKGROUND[2], 0xff]);
            }
        }
    }
}

fn hash(mut x: u64) -> u64 {
    // splitmix64 finaliser: cheap and well mixed.
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

fn line_len(line: usize) -> usize {
    let h = hash(line as u64);
    if h.is_multiple_of(7) { 0 } else { 8 + (h >> 8) as usize % 90 }
}

/// A 5×7 glyph (35 bits) or 0 for a space.
fn glyph(line: usize, col: usize) -> u64 {
    let indent = (hash(line as u64 ^ 0x55) % 4) as usize * 4;
    if col < indent {
        return 0;
    }
    let h = hash(((line as u64) << 20) ^ col as u64);
    if h.is_multiple_of(6) {
        return 0; // word gap
    }
    // 32 distinct "characters", each a fixed pattern, like a real font.
    let ch = h % 32;
    hash(ch.wrapping_mul(0x1234_5677)) & ((1 << 35) - 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::marks::read_mark_bgra;

    #[test]
    fn every_scene_renders_a_readable_mark() {
        for scene in Scene::ALL {
            let s = SyntheticScene::new(640, 360, scene);
            let mut buf = vec![0u8; 640 * 4 * 360];
            let mark = FrameMark { counter: 42, timestamp_ms: 7 };
            s.render(3, &mut buf, 640 * 4, mark);
            let want = if scene == Scene::Static { FrameMark { counter: 0, timestamp_ms: 0 } } else { mark };
            assert_eq!(read_mark_bgra(&buf, 640, 360, 640 * 4), Some(want), "{scene:?}");
        }
    }

    #[test]
    fn static_frames_are_identical_and_moving_frames_differ() {
        let render = |scene, i| {
            let s = SyntheticScene::new(320, 200, scene);
            let mut buf = vec![0u8; 320 * 4 * 200];
            s.render(i, &mut buf, 320 * 4, FrameMark { counter: i as u32, timestamp_ms: 0 });
            buf
        };
        assert_eq!(render(Scene::Static, 1), render(Scene::Static, 2));
        for scene in [Scene::Typing, Scene::Scrolling, Scene::Moving] {
            assert_ne!(render(scene, 1), render(scene, 2), "{scene:?}");
        }
    }

    #[test]
    fn damage_covers_every_changed_pixel() {
        let (w, h) = (640usize, 360usize);
        for scene in Scene::ALL {
            let s = SyntheticScene::new(w, h, scene);
            let render = |i: u64| {
                let mut buf = vec![0u8; w * 4 * h];
                s.render(i, &mut buf, w * 4, FrameMark { counter: i as u32, timestamp_ms: 1000 + i as u32 });
                buf
            };
            for i in [1u64, 2, 57, 300] {
                let (before, after) = (render(i - 1), render(i));
                let Some(d) = s.damage(i) else { continue };
                let mut changed = 0;
                for y in 0..h {
                    for x in 0..w {
                        let k = (y * w + x) * 4;
                        if before[k..k + 3] != after[k..k + 3] {
                            changed += 1;
                            let inside = (d.x as usize..(d.x + d.width) as usize).contains(&x)
                                && (d.y as usize..(d.y + d.height) as usize).contains(&y);
                            assert!(inside, "{scene:?} frame {i}: pixel ({x}, {y}) changed outside {d:?}");
                        }
                    }
                }
                if scene == Scene::Typing {
                    assert!(changed > 0, "typing changes something");
                    // The mark and the typed cell: a bounding box well short of the frame.
                    assert!(d.width * d.height < (w * h) as u32 / 3, "typing damage is small: {d:?}");
                }
            }
        }
    }

    #[test]
    fn odd_sizes_and_padded_strides_render() {
        for (w, h) in [(1, 1), (3, 5), (1919, 1079)] {
            let s = SyntheticScene::new(w, h, Scene::Moving);
            let stride = w * 4 + 64;
            let mut buf = vec![0u8; stride * h];
            s.render(9, &mut buf, stride, FrameMark { counter: 1, timestamp_ms: 1 });
        }
    }
}
