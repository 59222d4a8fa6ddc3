//! Capture backends: one per platform API, chosen at run time.

use std::time::Instant;

use crate::error::Result;
use crate::ring::RingProducer;

#[cfg(target_os = "macos")]
pub mod macos;
pub mod macos_logic;
pub mod synthetic;
#[cfg(target_os = "linux")]
pub mod x11;
#[cfg(target_os = "linux")]
mod x11_wire;

/// What one capture tick did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tick {
    /// A frame was published to the ring.
    Published {
        /// Whether its content changed since the previous frame.
        changed: bool,
    },
    /// Nothing changed and no frame was requested: nothing was published.
    Unchanged,
}

/// A source of frames. The capture driver calls [`CaptureBackend::capture`]
/// once per tick at the requested frame rate.
pub trait CaptureBackend: Send {
    /// Captures one frame into `ring` if the source changed since the last
    /// published frame or `force` is set (a keyframe request or keep-alive).
    /// `seq` numbers the tick.
    fn capture(&mut self, ring: &mut RingProducer, seq: u64, force: bool) -> Result<Tick>;

    /// Current size of the source in pixels.
    fn size(&self) -> (u32, u32);

    /// Whether to draw the mouse cursor into frames.
    fn set_cursor(&mut self, visible: bool);

    /// A short human description, e.g. `window 0x3a00007 "Terminal"`.
    fn describe(&self) -> String;

    /// Blocks until the source signals that it may have changed (X11 DAMAGE,
    /// a new PipeWire buffer) or `deadline` passes, whichever comes first;
    /// returns whether a change was signalled. Lets the driver capture a
    /// change at once instead of on its next tick. Backends without change
    /// notifications sleep until the deadline (the default), so the driver
    /// polls them at its frame rate.
    fn wait_for_change(&mut self, deadline: Instant) -> Result<bool> {
        let now = Instant::now();
        if deadline > now {
            std::thread::sleep(deadline - now);
        }
        Ok(false)
    }
}
