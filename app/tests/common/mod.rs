//! Helpers shared by the app's scenario tests.
#![allow(dead_code)]

pub mod browser;
pub mod firefox;
pub mod internet;
pub mod janus;
pub mod lab;
pub mod load;
pub mod netns;
pub mod scenario;
pub mod whep;

use openh264::decoder::Decoder;
use openh264::formats::YUVSource;
use peep_capture::marks::{FrameMark, read_mark_luma};

/// A decoded frame's size and mark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decoded {
    pub width: usize,
    pub height: usize,
    pub mark: Option<FrameMark>,
}

/// Decodes an Annex-B stream with OpenH264 and reads each frame's mark.
pub fn decode_stream(stream: &[u8]) -> Vec<Decoded> {
    let mut decoder = Decoder::new().expect("OpenH264 decoder");
    let mut out = Vec::new();
    for nal in openh264::nal_units(stream) {
        if let Some(yuv) = decoder.decode(nal).expect("decodable stream") {
            out.push(describe(&yuv));
        }
    }
    for yuv in decoder.flush_remaining().expect("flush") {
        out.push(describe(&yuv));
    }
    out
}

fn describe(yuv: &impl YUVSource) -> Decoded {
    let (width, height) = yuv.dimensions();
    let (y_stride, _, _) = yuv.strides();
    Decoded { width, height, mark: read_mark_luma(yuv.y(), width, height, y_stride) }
}

/// The `peep` binary built for this test run, as on an X11 session (a
/// developer's Wayland session would otherwise choose the portal).
pub fn peep() -> std::process::Command {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_peep"));
    cmd.env_remove("WAYLAND_DISPLAY").env_remove("XDG_SESSION_TYPE");
    cmd
}

/// Fails with an install hint when a tool the test needs is missing.
pub fn require_tool(tool: &str, package: &str) {
    let found = std::process::Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(found, "this test needs `{tool}`: install it with `apt-get install {package}`");
}

/// NAL unit types in an Annex-B stream, in order.
pub fn nal_types(stream: &[u8]) -> Vec<u8> {
    openh264::nal_units(stream)
        .filter_map(|nal| {
            let start = nal.iter().position(|&b| b != 0)?;
            // Skip the start code's final 0x01.
            nal.get(start + 1).map(|h| h & 0x1f)
        })
        .collect()
}
