//! The local preview: decodes the actual encoded stream (so the sharer sees
//! what viewers see, compression included) on its own thread, and publishes
//! a picture at most [`PREVIEW_FPS`] times a second. While the preview
//! window is closed the session sends it nothing, so it costs nothing.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use openh264::decoder::Decoder;
use openh264::formats::YUVSource;

use crate::session::PreviewPacket;

/// Pictures per second shown in the preview.
pub const PREVIEW_FPS: f32 = 10.0;
/// Encoded frames queued for the decoder. Policy when full: the session
/// drops the frame for the preview and asks for a keyframe to resynchronise.
pub const PREVIEW_QUEUE: usize = 8;

/// A decoded picture, RGBA.
#[derive(Debug, Clone, Default)]
pub struct Picture {
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// RGBA rows.
    pub rgba: Vec<u8>,
    /// Increases with every new picture.
    pub generation: u64,
    /// Decoded frames so far.
    pub frames_decoded: u64,
}

/// Starts the decoder thread; it ends when the sending side is dropped.
pub fn spawn(
    packets: Receiver<PreviewPacket>,
    picture: Arc<Mutex<Picture>>,
    repaint: impl Fn() + Send + 'static,
) -> std::io::Result<()> {
    std::thread::Builder::new().name("peep-preview".into()).spawn(move || {
        let Ok(mut decoder) = Decoder::new() else {
            tracing::warn!("the preview decoder could not start");
            return;
        };
        let period = Duration::from_secs_f32(1.0 / PREVIEW_FPS);
        let mut last_shown = Instant::now() - period;
        let mut decoded = 0u64;
        for packet in packets.iter() {
            if packet.keyframe {
                // A fresh start after a gap (preview reopened, frames dropped).
                if let Ok(d) = Decoder::new() {
                    decoder = d;
                }
            }
            let Ok(Some(yuv)) = decoder.decode(&packet.data) else { continue };
            decoded += 1;
            if last_shown.elapsed() < period {
                continue;
            }
            last_shown = Instant::now();
            let (w, h) = yuv.dimensions();
            let mut p = picture.lock().unwrap_or_else(|e| e.into_inner());
            p.rgba.resize(w * h * 4, 0);
            yuv.write_rgba8(&mut p.rgba);
            p.width = w;
            p.height = h;
            p.generation += 1;
            p.frames_decoded = decoded;
            drop(p);
            repaint();
        }
    })?;
    Ok(())
}
