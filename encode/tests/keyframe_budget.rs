//! Requested keyframes stay within their budget (real OpenH264, real
//! screen content), decode, and the stream continues normally after them;
//! without the budget OpenH264's own keyframes are several times larger.
//! Also the calibration of the size model's prior
//! (`peep_encode::budget::PRIOR_BYTES_PER_PIXEL`): run with `--nocapture`.

mod common;

use common::{FRAME_30FPS, Source, TestDecoder, psnr_y};
use peep_capture::synthetic::Scene;
use peep_encode::budget::{KeyframeBudget, MODEL_REFERENCE_QP, QP_PER_HALVING};
use peep_encode::{EncodeOutcome, EncodedFrame, Encoder, I420Frame, OpenH264Config, OpenH264Encoder};
use std::time::Duration;

fn pts(index: u64) -> Duration {
    FRAME_30FPS * index as u32
}

/// Encodes `frames` frames of `scene`, asking for keyframes at `keyframes`;
/// returns (frame index, bytes, keyframe, QP of budgeted keyframes) per
/// frame and checks every frame decodes.
fn run(
    budgeted: bool,
    (w, h, scene): (u32, u32, Scene),
    bitrate_bps: u32,
    frames: u64,
    keyframes: &[u64],
) -> Vec<(u64, usize, bool, Option<u8>)> {
    let mut src = Source::new(w, h, scene);
    let mut enc = OpenH264Encoder::new(OpenH264Config {
        bitrate_bps,
        fps: 30.0,
        keyframe_budget: budgeted,
        ..OpenH264Config::default()
    })
    .expect("encoder");
    let mut dec = TestDecoder::new();
    let mut yuv = I420Frame::new(w, h);
    let mut out = EncodedFrame::default();
    let mut rows = vec![];
    for i in 0..frames {
        if keyframes.contains(&i) {
            enc.request_keyframe();
        }
        src.render_i420(i, &mut yuv);
        assert_eq!(enc.encode(&yuv, pts(i), &mut out).expect("encode"), EncodeOutcome::Encoded);
        let pic = dec.decode(&out.data).expect("every frame decodes to a picture");
        let p = psnr_y(&yuv, &pic);
        assert!(p > 20.0, "frame {i}: PSNR-Y {p:.1} dB");
        let qp = if out.keyframe && i > 0 { enc.last_keyframe_qp() } else { None };
        rows.push((i, out.data.len(), out.keyframe, qp));
    }
    rows
}

#[test]
fn requested_keyframes_fit_their_budget_and_the_stream_goes_on() {
    let (w, h) = (1280, 720);
    let bitrate = 850_000;
    let budget = KeyframeBudget::budget_bytes(bitrate, 30.0);
    for scene in [Scene::Scrolling, Scene::Typing] {
        let rows = run(true, (w, h, scene), bitrate, 100, &[30, 60, 90]);
        let keys: Vec<_> = rows.iter().filter(|r| r.2 && r.0 > 0).collect();
        println!("{scene:?}: first IDR {} bytes; budget {budget}; requested {keys:?}", rows[0].1);
        assert_eq!(keys.iter().map(|r| r.0).collect::<Vec<_>>(), [30, 60, 90], "keyframes where asked");
        assert!(keys.iter().all(|r| r.3.is_some()), "budgeted keyframes report their QP");
        // The model learns: from the second requested keyframe on, within
        // 1.6 × the budget (screen content varies frame to frame).
        for r in &keys[1..] {
            assert!(r.1 <= budget * 8 / 5, "{scene:?} frame {}: {} bytes for a {budget}-byte budget", r.0, r.1);
        }
        // P frames after a budgeted keyframe: rate control back in charge,
        // no runaway (the next second averages within 2 × the frame budget).
        let after: usize = rows[61..91].iter().map(|r| r.1).sum();
        let per_frame = bitrate as usize / 8 / 30;
        assert!(after / 30 <= 2 * per_frame, "{scene:?}: {} bytes per P frame after a keyframe", after / 30);
    }
}

#[test]
fn without_the_budget_keyframes_are_much_larger() {
    let (w, h) = (1280, 720);
    let bitrate = 850_000;
    let budget = KeyframeBudget::budget_bytes(bitrate, 30.0);
    let rows = run(false, (w, h, Scene::Scrolling), bitrate, 70, &[30, 60]);
    let keys: Vec<_> = rows.iter().filter(|r| r.2 && r.0 > 0).map(|r| r.1).collect();
    println!("unbudgeted requested keyframes {keys:?} vs budget {budget}");
    assert!(keys.iter().all(|b| *b > 2 * budget), "OpenH264's own keyframes: {keys:?}");
}

/// Prints bytes per pixel at the reference QP for the scenes, the figure the
/// prior is set from.
#[test]
fn size_model_calibration() {
    let (w, h) = (1280, 720);
    for scene in [Scene::Scrolling, Scene::Typing, Scene::Moving] {
        for bitrate in [300_000, 850_000, 3_000_000] {
            let rows = run(true, (w, h, scene), bitrate, 45, &[15, 30]);
            for (i, bytes, _, qp) in rows.iter().filter(|r| r.3.is_some()) {
                let qp = f64::from(qp.unwrap_or(0));
                let bpp_ref = *bytes as f64 / f64::from(w * h) * ((qp - MODEL_REFERENCE_QP) / QP_PER_HALVING).exp2();
                println!("{scene:?} {bitrate} frame {i}: {bytes} bytes at QP {qp} → {bpp_ref:.4} B/px at QP 30");
            }
        }
    }
}
