//! Helpers shared by the scenario tests: synthetic sources, a decoder, and a
//! tiny H.264 SPS parser.
#![allow(dead_code)] // each test binary uses a different subset

use openh264::decoder::Decoder;
use openh264::formats::YUVSource;
use peep_capture::marks::FrameMark;
use peep_capture::synthetic::{Scene, SyntheticScene};
use peep_encode::{I420Frame, bgra_to_i420};
use std::time::Duration;

/// Frame interval at 30 fps.
pub const FRAME_30FPS: Duration = Duration::from_nanos(33_333_333);

/// The mark drawn into frame `index`.
pub fn mark(index: u64) -> FrameMark {
    FrameMark { counter: index as u32, timestamp_ms: (index * 33) as u32 }
}

/// A synthetic BGRA source with a padded stride, like a capture ring slot.
pub struct Source {
    scene: SyntheticScene,
    pub width: u32,
    pub height: u32,
    pub stride_bytes: usize,
    pub bgra: Vec<u8>,
}

impl Source {
    pub fn new(width: u32, height: u32, scene: Scene) -> Self {
        let stride_bytes = width as usize * 4 + 64;
        Self {
            scene: SyntheticScene::new(width as usize, height as usize, scene),
            width,
            height,
            stride_bytes,
            bgra: vec![0; stride_bytes * height as usize],
        }
    }

    /// Renders frame `index` (with its mark) into `self.bgra`.
    pub fn render(&mut self, index: u64) {
        self.scene.render(index, &mut self.bgra, self.stride_bytes, mark(index));
    }

    /// Renders frame `index` and converts it into `dst`.
    pub fn render_i420(&mut self, index: u64, dst: &mut I420Frame) {
        self.render(index);
        bgra_to_i420(&self.bgra, self.width, self.height, self.stride_bytes, dst).expect("valid synthetic frame");
    }
}

/// The NAL units of an Annex-B stream, without start codes (first byte is
/// the NAL header). Trailing zero bytes of 4-byte start codes may remain at
/// the end of the previous unit, which is harmless for header inspection.
pub fn nal_units(annexb: &[u8]) -> Vec<&[u8]> {
    let mut starts = Vec::new();
    let mut i = 0;
    while i + 3 <= annexb.len() {
        if annexb[i] == 0 && annexb[i + 1] == 0 && annexb[i + 2] == 1 {
            starts.push(i + 3);
            i += 3;
        } else {
            i += 1;
        }
    }
    starts
        .iter()
        .enumerate()
        .map(|(n, &s)| {
            let end = starts.get(n + 1).map_or(annexb.len(), |&next| next - 3);
            &annexb[s..end]
        })
        .collect()
}

/// NAL unit types (5 = IDR slice, 1 = non-IDR slice, 7 = SPS, 8 = PPS).
pub fn nal_types(annexb: &[u8]) -> Vec<u8> {
    nal_units(annexb).iter().map(|n| n[0] & 0x1f).collect()
}

/// A decoded picture's luma, copied out of the decoder.
pub struct DecodedLuma {
    pub width: usize,
    pub height: usize,
    pub stride: usize,
    pub y: Vec<u8>,
}

/// OpenH264's decoder, one access unit at a time.
pub struct TestDecoder(Decoder);

impl TestDecoder {
    pub fn new() -> Self {
        Self(Decoder::new().expect("decoder"))
    }

    /// Decodes one access unit; panics on a decoding error (a test failure).
    pub fn decode(&mut self, access_unit: &[u8]) -> Option<DecodedLuma> {
        let yuv = self.0.decode(access_unit).expect("decodable H.264")?;
        let (width, height) = yuv.dimensions();
        let stride = yuv.strides().0;
        Some(DecodedLuma { width, height, stride, y: yuv.y()[..stride * height].to_vec() })
    }
}

impl Default for TestDecoder {
    fn default() -> Self {
        Self::new()
    }
}

/// PSNR-Y of the visible part of `src` against a decoded picture.
pub fn psnr_y(src: &I420Frame, decoded: &DecodedLuma) -> f64 {
    peep_encode::psnr_plane(
        src.y(),
        src.y_stride(),
        &decoded.y,
        decoded.stride,
        src.width() as usize,
        src.height() as usize,
    )
}

/// The fields of an SPS that matter to a WebRTC receiver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sps {
    pub profile_idc: u8,
    pub constraint_flags: u8,
    pub level_idc: u8,
    pub width: u32,
    pub height: u32,
    pub video_full_range: Option<bool>,
    /// (colour_primaries, transfer_characteristics, matrix_coefficients)
    pub colour: Option<(u8, u8, u8)>,
}

impl Sps {
    /// `profile-level-id` as SDP spells it, e.g. `42c01f`.
    pub fn profile_level_id(&self) -> String {
        format!("{:02x}{:02x}{:02x}", self.profile_idc, self.constraint_flags, self.level_idc)
    }
}

struct Bits {
    rbsp: Vec<u8>,
    pos: usize,
}

impl Bits {
    fn new(nal_payload: &[u8]) -> Self {
        // Strip emulation-prevention bytes (00 00 03 → 00 00).
        let mut rbsp = Vec::with_capacity(nal_payload.len());
        let mut zeros = 0;
        for &b in nal_payload {
            if zeros >= 2 && b == 3 {
                zeros = 0;
                continue;
            }
            zeros = if b == 0 { zeros + 1 } else { 0 };
            rbsp.push(b);
        }
        Self { rbsp, pos: 0 }
    }

    fn bit(&mut self) -> u32 {
        let byte = self.rbsp[self.pos / 8];
        let bit = (byte >> (7 - self.pos % 8)) & 1;
        self.pos += 1;
        u32::from(bit)
    }

    fn bits(&mut self, n: u32) -> u32 {
        (0..n).fold(0, |acc, _| (acc << 1) | self.bit())
    }

    fn ue(&mut self) -> u32 {
        let mut zeros = 0;
        while self.bit() == 0 {
            zeros += 1;
        }
        (1 << zeros) - 1 + self.bits(zeros)
    }

    fn se(&mut self) -> i32 {
        let k = self.ue();
        if k % 2 == 1 { k.div_ceil(2) as i32 } else { -((k / 2) as i32) }
    }
}

/// Parses an SPS NAL unit (header byte included) up to the VUI colour
/// description. Handles what OpenH264 emits (baseline, any POC type).
pub fn parse_sps(nal: &[u8]) -> Sps {
    assert_eq!(nal[0] & 0x1f, 7, "not an SPS");
    let mut r = Bits::new(&nal[1..]);
    let profile_idc = r.bits(8) as u8;
    let constraint_flags = r.bits(8) as u8;
    let level_idc = r.bits(8) as u8;
    r.ue(); // seq_parameter_set_id
    assert!(matches!(profile_idc, 66 | 77 | 88), "high-profile SPS fields not handled (profile_idc {profile_idc})");
    r.ue(); // log2_max_frame_num_minus4
    match r.ue() {
        0 => {
            r.ue();
        }
        1 => {
            r.bit();
            r.se();
            r.se();
            for _ in 0..r.ue() {
                r.se();
            }
        }
        _ => {}
    }
    r.ue(); // max_num_ref_frames
    r.bit(); // gaps_in_frame_num_value_allowed_flag
    let mbs_w = r.ue() + 1;
    let map_units_h = r.ue() + 1;
    let frame_mbs_only = r.bit();
    if frame_mbs_only == 0 {
        r.bit();
    }
    r.bit(); // direct_8x8_inference_flag
    let mut width = mbs_w * 16;
    let mut height = map_units_h * 16 * (2 - frame_mbs_only);
    if r.bit() == 1 {
        // frame cropping, in units of 2 luma samples for 4:2:0 progressive
        let (left, right, top, bottom) = (r.ue(), r.ue(), r.ue(), r.ue());
        width -= 2 * (left + right);
        height -= 2 * (2 - frame_mbs_only) * (top + bottom);
    }
    let mut video_full_range = None;
    let mut colour = None;
    if r.bit() == 1 {
        // VUI
        if r.bit() == 1 && r.bits(8) == 255 {
            r.bits(16);
            r.bits(16);
        }
        if r.bit() == 1 {
            r.bit(); // overscan_appropriate_flag
        }
        if r.bit() == 1 {
            r.bits(3); // video_format
            video_full_range = Some(r.bit() == 1);
            if r.bit() == 1 {
                colour = Some((r.bits(8) as u8, r.bits(8) as u8, r.bits(8) as u8));
            }
        }
    }
    Sps { profile_idc, constraint_flags, level_idc, width, height, video_full_range, colour }
}
