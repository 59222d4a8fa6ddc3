//! The synthetic backend: [`crate::synthetic::SyntheticScene`] into heap slots.

use std::time::Instant;

use super::{CaptureBackend, Tick};
use crate::error::{CaptureError, Result};
use crate::frame::{FrameMeta, PixelFormat};
use crate::marks::FrameMark;
use crate::ring::RingProducer;
use crate::synthetic::{Scene, SyntheticScene};

/// Renders synthetic frames with marks carrying the frame counter and
/// wall-clock capture time.
#[derive(Debug)]
pub struct SyntheticBackend {
    scene: SyntheticScene,
    index: u64,
    stride_bytes: usize,
    /// Index of the last published frame.
    last_published: Option<u64>,
}

impl SyntheticBackend {
    /// A backend of the given size and scene.
    pub fn new(width: u32, height: u32, scene: Scene) -> Result<Self> {
        if width == 0 || height == 0 || width > 16384 || height > 16384 {
            return Err(CaptureError::InvalidSize { width, height });
        }
        Ok(Self {
            scene: SyntheticScene::new(width as usize, height as usize, scene),
            index: 0,
            stride_bytes: width as usize * 4,
            last_published: None,
        })
    }

    /// Changes the size from the next frame on (like a window resize).
    pub fn resize(&mut self, width: u32, height: u32) -> Result<()> {
        *self = Self { index: self.index, last_published: None, ..Self::new(width, height, self.scene.scene())? };
        Ok(())
    }
}

impl CaptureBackend for SyntheticBackend {
    fn capture(&mut self, ring: &mut RingProducer, seq: u64, force: bool) -> Result<Tick> {
        let changed = self.scene.changed(self.index);
        if !changed && !force {
            self.index += 1;
            return Ok(Tick::Unchanged);
        }
        let height = self.scene.height();
        let mut slot = ring.begin();
        let bytes = slot.heap_bytes(self.stride_bytes * height);
        // The picture is drawn first (an application drawing its window),
        // then "captured": the timestamp is taken when the content is
        // complete, as a real capture would see it.
        self.scene.render_content(self.index, bytes, self.stride_bytes);
        let captured_at = Instant::now();
        self.scene.render_mark(bytes, self.stride_bytes, FrameMark::now(self.index as u32));
        // Damage since the last published frame: known for consecutive
        // frames; unknown after a gap (or the first frame).
        let damage = match self.last_published {
            Some(last) if last + 1 == self.index => self.scene.damage(self.index),
            Some(_) if !self.scene.changed(self.index) => Some(crate::frame::DamageRect::EMPTY),
            _ => None,
        };
        self.last_published = Some(self.index);
        self.index += 1;
        slot.publish_with_damage(
            FrameMeta {
                width: self.scene.width() as u32,
                height: height as u32,
                stride_bytes: self.stride_bytes,
                format: PixelFormat::Bgrx,
                captured_at,
                seq,
                changed,
            },
            damage,
        );
        Ok(Tick::Published { changed })
    }

    fn size(&self) -> (u32, u32) {
        (self.scene.width() as u32, self.scene.height() as u32)
    }

    fn set_cursor(&mut self, _visible: bool) {}

    fn describe(&self) -> String {
        format!("synthetic {} {}x{}", self.scene.scene().name(), self.scene.width(), self.scene.height())
    }
}
