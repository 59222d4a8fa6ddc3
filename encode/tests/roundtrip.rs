//! Encode synthetic screen content with the real OpenH264, decode it again
//! and compare: quality, marks, keyframes, bitrate control, sizes.

mod common;

use common::{FRAME_30FPS, Source, TestDecoder, nal_types, nal_units, parse_sps, psnr_y};
use peep_capture::marks::read_mark_luma;
use peep_capture::synthetic::Scene;
use peep_encode::{EncodeError, EncodeOutcome, EncodedFrame, Encoder, I420Frame, OpenH264Config, OpenH264Encoder};
use std::time::Duration;

fn encoder(bitrate_bps: u32) -> OpenH264Encoder {
    OpenH264Encoder::new(OpenH264Config { bitrate_bps, ..OpenH264Config::default() }).expect("valid config")
}

fn pts(index: u64) -> Duration {
    FRAME_30FPS * index as u32
}

#[test]
fn every_scene_round_trips_with_good_psnr_and_readable_marks() {
    let (w, h) = (640, 360);
    for scene in Scene::ALL {
        let mut src = Source::new(w, h, scene);
        let mut enc = encoder(1_500_000);
        let mut dec = TestDecoder::new();
        let mut yuv = I420Frame::new(w, h);
        let mut out = EncodedFrame::with_capacity(256 * 1024);
        let mut worst = f64::INFINITY;
        let mut last_counter = None;
        for i in 0..30 {
            src.render_i420(i, &mut yuv);
            let outcome = enc.encode(&yuv, pts(i), &mut out).expect("encode");
            assert_eq!(outcome, EncodeOutcome::Encoded, "{scene:?} frame {i} skipped");
            assert_eq!(out.keyframe, i == 0, "{scene:?} frame {i}");
            assert_eq!((out.width, out.height), (w, h));
            let pic = dec.decode(&out.data).expect("one picture per access unit");
            assert_eq!((pic.width, pic.height), (w as usize, h as usize));
            let p = psnr_y(&yuv, &pic);
            worst = worst.min(p);
            assert!(p >= 35.0, "{scene:?} frame {i}: PSNR-Y {p:.2} dB");
            let mark = read_mark_luma(&pic.y, pic.width, pic.height, pic.stride)
                .unwrap_or_else(|| panic!("{scene:?} frame {i}: mark unreadable"));
            let want = if scene == Scene::Static { 0 } else { i as u32 };
            assert_eq!(mark.counter, want, "{scene:?} frame {i}");
            if scene != Scene::Static {
                assert!(last_counter < Some(mark.counter));
            }
            last_counter = Some(mark.counter);
        }
        println!("{scene:?}: worst PSNR-Y {worst:.2} dB over 30 frames");
    }
}

#[test]
fn sps_is_constrained_baseline_with_bt709_limited_vui() {
    for (w, h) in [(1280, 720), (1920, 1080)] {
        let mut src = Source::new(w, h, Scene::Typing);
        let mut enc = encoder(2_500_000);
        let mut yuv = I420Frame::new(w, h);
        let mut out = EncodedFrame::default();
        src.render_i420(0, &mut yuv);
        let outcome = enc.encode(&yuv, Duration::ZERO, &mut out).expect("encode");
        assert_eq!(outcome, EncodeOutcome::Encoded);
        assert_eq!(&out.data[..5], &[0, 0, 0, 1, 0x67], "Annex-B, SPS first");
        let nals = nal_units(&out.data);
        let types: Vec<u8> = nals.iter().map(|n| n[0] & 0x1f).collect();
        assert_eq!(types, [7, 8, 5], "SPS, PPS, IDR");
        let sps_nal = nals[0];
        let shown: Vec<String> = sps_nal.iter().map(|b| format!("{b:02x}")).collect();
        let sps = parse_sps(sps_nal);
        println!(
            "{w}x{h} SPS NAL ({} bytes): {}\n  {sps:?}, profile-level-id {}",
            sps_nal.len(),
            shown.join(" "),
            sps.profile_level_id()
        );
        assert_eq!(sps.profile_idc, 66, "baseline");
        assert_ne!(sps.constraint_flags & 0x40, 0, "constraint_set1: constrained baseline");
        assert_eq!((sps.width, sps.height), (w, h));
        assert_eq!(sps.video_full_range, Some(false), "limited range");
        assert_eq!(sps.colour, Some((1, 1, 1)), "BT.709 primaries, transfer, matrix");
    }
}

#[test]
fn keyframe_on_request() {
    let (w, h) = (640, 360);
    let mut src = Source::new(w, h, Scene::Typing);
    let mut enc = encoder(1_000_000);
    let mut dec = TestDecoder::new();
    let mut yuv = I420Frame::new(w, h);
    let mut out = EncodedFrame::default();
    let mut idr_frames = Vec::new();
    for i in 0..20 {
        if i == 10 {
            enc.request_keyframe();
        }
        src.render_i420(i, &mut yuv);
        assert_eq!(enc.encode(&yuv, pts(i), &mut out).unwrap(), EncodeOutcome::Encoded);
        let types = nal_types(&out.data);
        assert_eq!(out.keyframe, types.contains(&5), "frame {i}: {types:?}");
        if out.keyframe {
            assert_eq!(types, [7, 8, 5], "SPS and PPS precede every IDR");
            idr_frames.push(i);
        }
        dec.decode(&out.data).expect("picture");
    }
    assert_eq!(idr_frames, [0, 10]);
}

/// Bytes of the P-frames among `frames` frames of moving content.
fn p_frame_bytes(enc: &mut OpenH264Encoder, src: &mut Source, first: u64, frames: u64) -> (usize, u64) {
    let mut yuv = I420Frame::new(src.width, src.height);
    let mut out = EncodedFrame::default();
    let (mut bytes, mut skipped) = (0, 0);
    for i in first..first + frames {
        src.render_i420(i, &mut yuv);
        match enc.encode(&yuv, pts(i), &mut out).unwrap() {
            EncodeOutcome::Encoded if !out.keyframe => bytes += out.data.len(),
            EncodeOutcome::Encoded => {}
            EncodeOutcome::Skipped => skipped += 1,
        }
    }
    (bytes, skipped)
}

#[test]
fn set_bitrate_changes_the_achieved_bitrate() {
    let (w, h) = (640, 360);
    let mut src = Source::new(w, h, Scene::Moving);
    let mut enc = encoder(4_000_000);
    // Settle, then measure 60 frames at each target; the switches happen on a
    // running encoder, downwards and back up.
    p_frame_bytes(&mut enc, &mut src, 0, 10);
    let (high, _) = p_frame_bytes(&mut enc, &mut src, 10, 60);
    enc.set_bitrate(500_000).unwrap();
    p_frame_bytes(&mut enc, &mut src, 70, 10);
    let (low, _) = p_frame_bytes(&mut enc, &mut src, 80, 60);
    enc.set_bitrate(4_000_000).unwrap();
    p_frame_bytes(&mut enc, &mut src, 140, 10);
    let (high_again, _) = p_frame_bytes(&mut enc, &mut src, 150, 60);
    let kbps = |bytes: usize| bytes as f64 * 8.0 / 2.0 / 1000.0; // 60 frames = 2 s
    println!(
        "achieved: 4 Mbps target {:.0} kbps, 500 kbps target {:.0} kbps, back to 4 Mbps {:.0} kbps",
        kbps(high),
        kbps(low),
        kbps(high_again)
    );
    assert!(high > 2 * low, "high {high} B vs low {low} B");
    assert!(high_again > 2 * low, "high again {high_again} B vs low {low} B");
    assert_eq!(enc.config().bitrate_bps, 4_000_000);
}

#[test]
fn run_time_bitrate_survives_a_resolution_change() {
    let mut enc = encoder(4_000_000);
    let mut yuv = I420Frame::new(0, 0);
    let mut out = EncodedFrame::default();
    let mut src = Source::new(640, 360, Scene::Moving);
    for i in 0..5 {
        src.render_i420(i, &mut yuv);
        let _ = enc.encode(&yuv, pts(i), &mut out).unwrap();
    }
    enc.set_bitrate(300_000).unwrap();
    // The new session must start at 300 kbps, not the configured 4 Mbps.
    let mut src = Source::new(800, 448, Scene::Moving);
    let (bytes, _) = p_frame_bytes(&mut enc, &mut src, 5, 60);
    let kbps = bytes as f64 * 8.0 / 2.0 / 1000.0;
    println!("after resize at 300 kbps: {kbps:.0} kbps");
    assert!(kbps < 600.0, "{kbps:.0} kbps");
}

#[test]
fn resolution_change_restarts_with_a_keyframe() {
    let mut dec = TestDecoder::new();
    let mut enc = encoder(1_500_000);
    let mut out = EncodedFrame::default();
    let mut yuv = I420Frame::new(0, 0);
    let mut index = 0;
    for (w, h) in [(640, 360), (800, 600), (641, 359), (640, 360)] {
        let mut src = Source::new(w, h, Scene::Typing);
        for n in 0..5 {
            src.render_i420(index, &mut yuv);
            assert_eq!(enc.encode(&yuv, pts(index), &mut out).unwrap(), EncodeOutcome::Encoded);
            assert_eq!(out.keyframe, n == 0, "{w}x{h} frame {n}");
            let pic = dec.decode(&out.data).expect("picture");
            let coded = ((w + 1) & !1, (h + 1) & !1);
            assert_eq!((pic.width as u32, pic.height as u32), coded);
            assert_eq!((out.width, out.height), coded);
            let p = psnr_y(&yuv, &pic);
            assert!(p >= 35.0, "{w}x{h} frame {n}: {p:.2} dB");
            index += 1;
        }
    }
}

#[test]
fn odd_and_tiny_sizes_are_padded_to_even() {
    for (w, h) in [(1, 1), (2, 2), (3, 5), (17, 9), (1919, 1079)] {
        let mut src = Source::new(w, h, Scene::Scrolling);
        let mut enc = encoder(3_000_000);
        let mut dec = TestDecoder::new();
        let mut yuv = I420Frame::new(w, h);
        let mut out = EncodedFrame::default();
        let mut last = None;
        for i in 0..3 {
            src.render_i420(i, &mut yuv);
            assert_eq!(enc.encode(&yuv, pts(i), &mut out).unwrap(), EncodeOutcome::Encoded);
            let pic = dec.decode(&out.data).expect("picture");
            // Even, and at least 16x16 (OpenH264's minimum).
            let coded = ((w.div_ceil(2) * 2).max(16), (h.div_ceil(2) * 2).max(16));
            assert_eq!((pic.width as u32, pic.height as u32), coded, "{w}x{h}");
            assert_eq!((out.width, out.height), coded, "{w}x{h}");
            let p = psnr_y(&yuv, &pic);
            assert!(p >= 35.0, "{w}x{h} frame {i}: {p:.2} dB");
            if i == 0 {
                let sps = parse_sps(nal_units(&out.data)[0]);
                assert_eq!((sps.width, sps.height), coded, "cropping in the SPS");
                println!("{w}x{h}: coded {coded:?}, first frame PSNR-Y {p:.2} dB");
            }
            last = Some(pic);
        }
        if (w, h) == (1919, 1079) {
            let pic = last.expect("three frames decoded");
            // The mark's block size follows the visible width, not the coded one.
            let mark = read_mark_luma(&pic.y, w as usize, h as usize, pic.stride);
            assert_eq!(mark.map(|m| m.counter), Some(2));
        }
    }
}

#[test]
fn uhd_4k_frames_encode_and_decode() {
    let (w, h) = (3840, 2160);
    let mut src = Source::new(w, h, Scene::Typing);
    let mut enc = encoder(8_000_000);
    let mut dec = TestDecoder::new();
    let mut yuv = I420Frame::new(w, h);
    let mut out = EncodedFrame::default();
    for i in 0..2 {
        src.render_i420(i, &mut yuv);
        assert_eq!(enc.encode(&yuv, pts(i), &mut out).unwrap(), EncodeOutcome::Encoded);
        let pic = dec.decode(&out.data).expect("picture");
        assert_eq!((pic.width, pic.height), (3840, 2160));
        let p = psnr_y(&yuv, &pic);
        assert!(p >= 35.0, "4K frame {i}: {p:.2} dB");
    }
    // Portrait 4K is within level 5.2 too.
    let mut portrait = I420Frame::new(2160, 3840);
    portrait.planes_mut().0.fill(128);
    let outcome = enc.encode(&portrait, pts(2), &mut out).expect("2160x3840 is supported");
    assert_eq!(outcome, EncodeOutcome::Encoded);
    assert_eq!((out.width, out.height), (2160, 3840));
}

#[test]
fn too_large_frames_get_a_clear_error() {
    let mut enc = encoder(8_000_000);
    let mut out = EncodedFrame::default();
    for (w, h) in [(3841, 2160), (3840, 2161), (4096, 2160)] {
        let frame = I420Frame::new(w, h);
        let err = enc.encode(&frame, Duration::ZERO, &mut out).expect_err("too large");
        assert!(matches!(err, EncodeError::FrameTooLarge { .. }), "{w}x{h}: {err:?}");
        let msg = err.to_string();
        assert!(msg.contains(&format!("{w}x{h}")) && msg.contains("3840x2160"), "{msg}");
    }
    // The encoder still works afterwards.
    let (w, h) = (320, 240);
    let mut src = Source::new(w, h, Scene::Static);
    let mut yuv = I420Frame::new(w, h);
    src.render_i420(0, &mut yuv);
    let outcome = enc.encode(&yuv, Duration::ZERO, &mut out).unwrap();
    assert_eq!(outcome, EncodeOutcome::Encoded);
    assert!(out.keyframe);
}

#[test]
fn skipped_frames_carry_no_data() {
    let (w, h) = (640, 360);
    let mut src = Source::new(w, h, Scene::Moving);
    let mut enc =
        OpenH264Encoder::new(OpenH264Config { bitrate_bps: 50_000, skip_frames: true, ..OpenH264Config::default() })
            .unwrap();
    let mut dec = TestDecoder::new();
    let mut yuv = I420Frame::new(w, h);
    let mut out = EncodedFrame::default();
    let (mut encoded, mut skipped) = (0, 0);
    for i in 0..30 {
        src.render_i420(i, &mut yuv);
        match enc.encode(&yuv, pts(i), &mut out).unwrap() {
            EncodeOutcome::Encoded => {
                encoded += 1;
                dec.decode(&out.data).expect("picture");
            }
            EncodeOutcome::Skipped => {
                skipped += 1;
                assert!(out.data.is_empty());
            }
        }
    }
    println!("50 kbps with skipping: {encoded} encoded, {skipped} skipped");
    assert!(skipped > 0 && encoded > 0);
    assert_eq!(enc.frames_skipped(), skipped);
}
