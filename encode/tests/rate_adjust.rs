//! The rate-control gain (`OpenH264Config::adjust_rate`,
//! `peep_encode::budget::RateAdjuster`) with real OpenH264 on real screen
//! content: OpenH264 budgets each frame as bitrate ÷ the configured frame
//! rate, so frames arriving at half that rate (a loaded capture) come out
//! at half the target; with the gain on, the output comes up to the target
//! (and the picture is sharper for it), and every frame still decodes.

mod common;

use common::{FRAME_30FPS, Source, TestDecoder, psnr_y};
use peep_capture::synthetic::Scene;
use peep_encode::budget::{MAX_RATE_GAIN, RATE_HIGH};
use peep_encode::{EncodeOutcome, EncodedFrame, Encoder, I420Frame, OpenH264Config, OpenH264Encoder};

/// Encodes `secs` of `scene` arriving at 15 fps, the rate control set for
/// 30, with a target of `bitrate_bps`; returns the delta-frame bitrate and
/// mean PSNR-Y over the second half, and the final gain.
fn run(adjust_rate: bool, scene: Scene, bitrate_bps: u32, secs: u64) -> (f64, f64, f64) {
    let (w, h) = (1280, 720);
    let mut src = Source::new(w, h, scene);
    let mut enc =
        OpenH264Encoder::new(OpenH264Config { bitrate_bps, fps: 30.0, adjust_rate, ..OpenH264Config::default() })
            .expect("encoder");
    let mut dec = TestDecoder::new();
    let mut yuv = I420Frame::new(w, h);
    let mut out = EncodedFrame::default();
    let frames = secs * 15;
    let (mut bits, mut psnr, mut n) = (0.0, 0.0, 0u32);
    for i in 0..frames {
        // Every other frame of the scene, at its time: the screen changes at 30 fps, the capture keeps 15.
        let pts = FRAME_30FPS * 2 * i as u32;
        src.render_i420(2 * i, &mut yuv);
        assert_eq!(enc.encode(&yuv, pts, &mut out).expect("encode"), EncodeOutcome::Encoded);
        let pic = dec.decode(&out.data).expect("every frame decodes");
        if i >= frames / 2 && !out.keyframe {
            bits += out.data.len() as f64 * 8.0;
            psnr += psnr_y(&yuv, &pic);
            n += 1;
        }
    }
    (bits / (f64::from(n) / 15.0), psnr / f64::from(n), enc.rate_gain())
}

#[test]
fn the_gain_brings_an_undershooting_rate_control_up_to_its_target() {
    let target = 1_000_000;
    let (plain_bps, plain_psnr, plain_gain) = run(false, Scene::Moving, target, 8);
    let (adjusted_bps, adjusted_psnr, gain) = run(true, Scene::Moving, target, 8);
    println!(
        "moving 720p at 15 fps (rate control set for 30), target {} kbps: plain {:.0} kbps ({:.1} dB), adjusted {:.0} kbps ({:.1} dB, gain {gain:.2})",
        target / 1000,
        plain_bps / 1e3,
        plain_psnr,
        adjusted_bps / 1e3,
        adjusted_psnr
    );
    assert_eq!(plain_gain, 1.0, "off: the rate control gets the target");
    assert!(plain_bps < 0.7 * f64::from(target), "OpenH264 undershoots here: {plain_bps:.0} bps");
    assert!(gain > 1.0 && gain <= MAX_RATE_GAIN, "gain {gain}");
    assert!(
        adjusted_bps > 1.3 * plain_bps && adjusted_bps <= RATE_HIGH * 1.1 * f64::from(target),
        "adjusted {adjusted_bps:.0} bps vs plain {plain_bps:.0} bps for a {target} bps target"
    );
    assert!(adjusted_psnr > plain_psnr, "the bits show: {adjusted_psnr:.2} dB vs {plain_psnr:.2} dB");
}
