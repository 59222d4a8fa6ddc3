//! Encode synthetic screen content with libvpx (VP8 and VP9), decode it
//! again with libvpx and compare: quality, marks, keyframes, run-time
//! changes on the running encoder, sizes.

mod common;

use common::{DecodedLuma, FRAME_30FPS, Source, psnr_y};
use peep_capture::marks::read_mark_luma;
use peep_capture::synthetic::Scene;
use peep_encode::{
    Codec, EncodeOutcome, EncodedFrame, Encoder, I420Frame, VpxCodec, VpxConfig, VpxDecoder, VpxEncoder,
};
use std::time::Duration;

const CODECS: [VpxCodec; 2] = [VpxCodec::Vp8, VpxCodec::Vp9];

fn encoder(codec: VpxCodec, bitrate_bps: u32) -> VpxEncoder {
    VpxEncoder::new(VpxConfig { bitrate_bps, ..VpxConfig::for_codec(codec) }).expect("valid config")
}

fn pts(index: u64) -> Duration {
    FRAME_30FPS * index as u32
}

fn decode(dec: &mut VpxDecoder, data: &[u8]) -> DecodedLuma {
    let pic = dec.decode(data).expect("decodable").expect("one picture per frame");
    DecodedLuma { width: pic.width, height: pic.height, stride: pic.y_stride, y: pic.y.to_vec() }
}

#[test]
fn every_scene_round_trips_with_good_psnr_and_readable_marks() {
    let (w, h) = (640, 360);
    for codec in CODECS {
        for scene in Scene::ALL {
            let mut src = Source::new(w, h, scene);
            let mut enc = encoder(codec, 1_500_000);
            assert_eq!(enc.codec(), Codec::from(codec));
            let mut dec = VpxDecoder::new(codec).expect("decoder");
            let mut yuv = I420Frame::new(w, h);
            let mut out = EncodedFrame::with_capacity(256 * 1024);
            let (mut worst, mut bytes) = (f64::INFINITY, 0);
            let mut last_counter = None;
            for i in 0..30 {
                src.render_i420(i, &mut yuv);
                let outcome = enc.encode(&yuv, pts(i), &mut out).expect("encode");
                assert_eq!(outcome, EncodeOutcome::Encoded, "{codec:?} {scene:?} frame {i} skipped");
                assert_eq!(out.keyframe, i == 0, "{codec:?} {scene:?} frame {i}");
                assert_eq!((out.width, out.height), (w, h));
                bytes += out.data.len();
                let pic = decode(&mut dec, &out.data);
                assert_eq!((pic.width, pic.height), (w as usize, h as usize));
                let p = psnr_y(&yuv, &pic);
                worst = worst.min(p);
                assert!(p >= 35.0, "{codec:?} {scene:?} frame {i}: PSNR-Y {p:.2} dB");
                let mark = read_mark_luma(&pic.y, pic.width, pic.height, pic.stride)
                    .unwrap_or_else(|| panic!("{codec:?} {scene:?} frame {i}: mark unreadable"));
                let want = if scene == Scene::Static { 0 } else { i as u32 };
                assert_eq!(mark.counter, want, "{codec:?} {scene:?} frame {i}");
                if scene != Scene::Static {
                    assert!(last_counter < Some(mark.counter));
                }
                last_counter = Some(mark.counter);
            }
            println!("{codec:?} {scene:?}: worst PSNR-Y {worst:.2} dB over 30 frames, {} kbps", bytes * 8 / 1000);
        }
    }
}

#[test]
fn keyframe_on_request_only() {
    let (w, h) = (640, 360);
    for codec in CODECS {
        let mut src = Source::new(w, h, Scene::Typing);
        let mut enc = encoder(codec, 1_000_000);
        let mut dec = VpxDecoder::new(codec).expect("decoder");
        let mut yuv = I420Frame::new(w, h);
        let mut out = EncodedFrame::default();
        let mut keyframes = Vec::new();
        for i in 0..40 {
            if i == 10 || i == 25 {
                enc.request_keyframe();
            }
            src.render_i420(i, &mut yuv);
            assert_eq!(enc.encode(&yuv, pts(i), &mut out).unwrap(), EncodeOutcome::Encoded);
            // The bitstream agrees with the flag: VP8's frame tag and VP9's
            // uncompressed header mark keyframes with a 0 bit.
            let bitstream_key = match codec {
                VpxCodec::Vp8 => out.data[0] & 1 == 0,
                VpxCodec::Vp9 => out.data[0] & 0x04 == 0,
            };
            assert_eq!(out.keyframe, bitstream_key, "{codec:?} frame {i}");
            if out.keyframe {
                keyframes.push(i);
            }
            decode(&mut dec, &out.data);
        }
        assert_eq!(keyframes, [0, 10, 25], "{codec:?}");
    }
}

/// Bytes of the non-keyframes among `frames` frames; and whether any keyframe came.
fn p_frame_bytes(enc: &mut VpxEncoder, src: &mut Source, first: u64, frames: u64) -> (usize, bool) {
    let mut yuv = I420Frame::new(src.width, src.height);
    let mut out = EncodedFrame::default();
    let (mut bytes, mut keyframe) = (0, false);
    for i in first..first + frames {
        src.render_i420(i, &mut yuv);
        if enc.encode(&yuv, pts(i), &mut out).unwrap() == EncodeOutcome::Encoded {
            if out.keyframe {
                keyframe = true;
            } else {
                bytes += out.data.len();
            }
        }
    }
    (bytes, keyframe)
}

#[test]
fn bitrate_and_fps_change_on_the_running_encoder() {
    let (w, h) = (640, 360);
    for codec in CODECS {
        let mut src = Source::new(w, h, Scene::Moving);
        let mut enc = encoder(codec, 4_000_000);
        p_frame_bytes(&mut enc, &mut src, 0, 10);
        let (high, _) = p_frame_bytes(&mut enc, &mut src, 10, 60);
        enc.set_bitrate(500_000).unwrap();
        let (_, k1) = p_frame_bytes(&mut enc, &mut src, 70, 10);
        let (low, k2) = p_frame_bytes(&mut enc, &mut src, 80, 60);
        enc.set_bitrate(4_000_000).unwrap();
        enc.set_fps(15.0).unwrap();
        let (_, k3) = p_frame_bytes(&mut enc, &mut src, 140, 10);
        let (high_again, k4) = p_frame_bytes(&mut enc, &mut src, 150, 60);
        let kbps = |bytes: usize| bytes as f64 * 8.0 / 2.0 / 1000.0; // 60 frames = 2 s
        println!(
            "{codec:?}: 4 Mbps target {:.0} kbps, 500 kbps target {:.0} kbps, back to 4 Mbps {:.0} kbps",
            kbps(high),
            kbps(low),
            kbps(high_again)
        );
        assert!(high > 2 * low, "{codec:?}: high {high} B vs low {low} B");
        assert!(high_again > 2 * low, "{codec:?}: high again {high_again} B vs low {low} B");
        // Not recreated: a new libvpx context would start with a keyframe.
        assert!(!(k1 || k2 || k3 || k4), "{codec:?}: a run-time change produced a keyframe");
        assert_eq!(enc.config().bitrate_bps, 4_000_000);
        assert_eq!(enc.config().fps, 15.0);
    }
}

#[test]
fn size_changes_restart_with_a_keyframe_and_odd_sizes_are_padded() {
    for codec in CODECS {
        let mut dec = VpxDecoder::new(codec).expect("decoder");
        let mut enc = encoder(codec, 3_000_000);
        let mut out = EncodedFrame::default();
        let mut yuv = I420Frame::new(0, 0);
        let mut index = 0;
        for (w, h) in [(640, 360), (800, 600), (641, 359), (17, 9), (2, 2), (640, 360)] {
            let mut src = Source::new(w, h, Scene::Typing);
            for n in 0..4 {
                src.render_i420(index, &mut yuv);
                assert_eq!(enc.encode(&yuv, pts(index), &mut out).unwrap(), EncodeOutcome::Encoded);
                assert_eq!(out.keyframe, n == 0, "{codec:?} {w}x{h} frame {n}");
                let pic = decode(&mut dec, &out.data);
                let coded = (w.div_ceil(2) * 2, h.div_ceil(2) * 2);
                assert_eq!((pic.width as u32, pic.height as u32), coded, "{codec:?} {w}x{h}");
                assert_eq!((out.width, out.height), coded);
                let p = psnr_y(&yuv, &pic);
                assert!(p >= 35.0, "{codec:?} {w}x{h} frame {n}: {p:.2} dB");
                index += 1;
            }
        }
    }
}

#[test]
fn a_lost_frame_does_not_break_the_following_keyframe() {
    // Error resilience as a receiver sees it: frames after a loss may be
    // damaged, but the decoder neither fails for good nor needs resetting —
    // the next keyframe restores a perfect picture.
    let (w, h) = (640, 360);
    for codec in CODECS {
        let mut src = Source::new(w, h, Scene::Typing);
        let mut enc = encoder(codec, 1_500_000);
        let mut dec = VpxDecoder::new(codec).expect("decoder");
        let mut yuv = I420Frame::new(w, h);
        let mut out = EncodedFrame::default();
        for i in 0..20 {
            if i == 15 {
                enc.request_keyframe();
            }
            src.render_i420(i, &mut yuv);
            assert_eq!(enc.encode(&yuv, pts(i), &mut out).unwrap(), EncodeOutcome::Encoded);
            if i == 5 {
                continue; // lost on the way
            }
            let decoded = dec.decode(&out.data).ok().flatten().map(|p| {
                let luma = DecodedLuma { width: p.width, height: p.height, stride: p.y_stride, y: p.y.to_vec() };
                psnr_y(&yuv, &luma)
            });
            if i >= 15 {
                let p = decoded.expect("decodes after the keyframe");
                assert!(p >= 35.0, "{codec:?} frame {i} after the keyframe: {p:.2} dB");
            }
        }
    }
}
