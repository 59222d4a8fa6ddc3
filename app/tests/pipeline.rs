//! The pipeline's run-time controls with the real encoder.

use std::time::{Duration, Instant};

use peep::pipeline::{Codecs, Control, Pipeline, PipelineConfig};
use peep_capture::backend::synthetic::SyntheticBackend;
use peep_capture::synthetic::Scene;
use peep_encode::{Codec, OpenH264Config, OpenH264Encoder};

fn pipeline(max_height: Option<u32>) -> Pipeline {
    let source = SyntheticBackend::new(1280, 720, Scene::Typing).expect("source");
    let encoder =
        OpenH264Encoder::new(OpenH264Config { bitrate_bps: 2_000_000, ..OpenH264Config::default() }).expect("encoder");
    Pipeline::start(Box::new(source), Box::new(encoder), PipelineConfig { max_height, ..PipelineConfig::default() })
        .expect("pipeline")
}

#[test]
fn resolution_policy_halves_until_it_fits_and_changes_live() {
    let mut p = pipeline(Some(400));
    let first = p.recv_timeout(Duration::from_secs(5)).expect("running").expect("packet");
    assert_eq!((first.width, first.height), (640, 360), "720 lines halved once to fit 400");
    assert!(first.keyframe);
    assert!(p.control(Control::SetMaxHeight(None)));
    let deadline = Instant::now() + Duration::from_secs(5);
    let native = loop {
        let packet = p.recv_timeout(Duration::from_secs(5)).expect("running").expect("packet");
        if packet.width == 1280 {
            break packet;
        }
        assert!(Instant::now() < deadline, "the policy change never applied");
    };
    assert_eq!(native.height, 720);
    assert!(native.keyframe, "a size change starts with a keyframe");
    p.stop().expect("clean stop");
}

#[test]
fn keyframe_and_bitrate_controls_apply_without_restarting() {
    let mut p = pipeline(None);
    let mut keyframes = 0;
    for i in 0..60 {
        if i == 20 {
            assert!(p.control(Control::Keyframe(Codec::H264)));
            assert!(p.control(Control::SetBitrate(Codec::H264, 500_000)));
        }
        let packet = p.recv_timeout(Duration::from_secs(5)).expect("running").expect("packet");
        keyframes += usize::from(packet.keyframe);
    }
    assert_eq!(keyframes, 2, "the first frame and the requested one");
    p.stop().expect("clean stop");
}

/// Two chains share one capture and one conversion: each captured frame
/// comes out once per codec, H.264 first; the second chain starts on
/// demand (with a keyframe) and stops (its encoder dropped) on demand.
#[test]
fn a_second_codec_starts_and_stops_beside_h264() {
    let source = SyntheticBackend::new(640, 360, Scene::Typing).expect("source");
    let encoder =
        OpenH264Encoder::new(OpenH264Config { bitrate_bps: 1_000_000, ..OpenH264Config::default() }).expect("encoder");
    let made = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let factory = {
        let made = made.clone();
        Box::new(move |codec, bps, fps| {
            made.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            peep::session::live_encoder_for(codec, bps, fps)
        })
    };
    let mut p =
        Pipeline::start_with_factory(Box::new(source), Box::new(encoder), Some(factory), PipelineConfig::default())
            .expect("pipeline");
    let next = |p: &mut Pipeline| p.recv_timeout(Duration::from_secs(5)).expect("running").expect("packet");
    for _ in 0..5 {
        assert_eq!(next(&mut p).codec, Codec::H264);
    }
    assert!(p.control(Control::SetBitrate(Codec::Vp9, 700_000)));
    assert!(p.control(Control::SetCodecs([Codec::H264, Codec::Vp9].into_iter().collect())));
    // Wait for the first VP9 frame: a keyframe.
    let first_vp9 = loop {
        let packet = next(&mut p);
        if packet.codec == Codec::Vp9 {
            break packet;
        }
    };
    assert!(first_vp9.keyframe, "a chain starts with a keyframe");
    assert_eq!((first_vp9.width, first_vp9.height), (640, 360));
    // From now on every capture comes out as H.264 then VP9, same frame.
    let mut last_h264_seq = None;
    let mut vp9 = peep_encode::VpxDecoder::new(peep_encode::VpxCodec::Vp9).expect("decoder");
    vp9.decode(&first_vp9.data).expect("decodable keyframe");
    for _ in 0..20 {
        let packet = next(&mut p);
        match packet.codec {
            Codec::H264 => last_h264_seq = Some(packet.seq),
            Codec::Vp9 => {
                assert_eq!(Some(packet.seq), last_h264_seq, "H.264 goes first, then VP9 of the same capture");
                let picture = vp9.decode(&packet.data).expect("decodable").expect("a picture");
                let mark =
                    peep_capture::marks::read_mark_luma(picture.y, picture.width, picture.height, picture.y_stride);
                assert!(mark.is_some(), "the VP9 picture carries the capture's mark");
            }
            Codec::Vp8 => panic!("no VP8 chain was asked for"),
        }
    }
    let stats = p.stats.clone();
    assert!(stats.codec(Codec::Vp9).active.load(std::sync::atomic::Ordering::Relaxed));
    assert!(p.control(Control::SetCodecs(Codecs::only(Codec::H264))));
    let deadline = Instant::now() + Duration::from_secs(5);
    while stats.codec(Codec::Vp9).active.load(std::sync::atomic::Ordering::Relaxed) {
        next(&mut p);
        assert!(Instant::now() < deadline, "the VP9 chain never stopped");
    }
    for _ in 0..10 {
        assert_eq!(next(&mut p).codec, Codec::H264, "no VP9 after the stop");
    }
    assert_eq!(made.load(std::sync::atomic::Ordering::Relaxed), 1, "one VP9 encoder made");
    assert_eq!(stats.codec(Codec::Vp9).stops.load(std::sync::atomic::Ordering::Relaxed), 1);
    p.stop().expect("clean stop");
}

/// Typing content carries damage rectangles, so the pipeline converts only
/// the damaged rows of each frame into the previous frame's planes. The
/// decoded stream must still show every typed character: each decoded
/// picture is compared with a full conversion of the frame its mark names.
#[test]
fn converting_only_damaged_rows_keeps_the_picture_exact() {
    use peep_capture::marks::read_mark_luma;
    use peep_capture::synthetic::SyntheticScene;
    use peep_encode::{I420Frame, bgra_to_i420, psnr_plane};
    use std::sync::atomic::Ordering;

    let (w, h) = (640u32, 360u32);
    let source = SyntheticBackend::new(w, h, Scene::Typing).expect("source");
    let encoder =
        OpenH264Encoder::new(OpenH264Config { bitrate_bps: 4_000_000, ..OpenH264Config::default() }).expect("encoder");
    let mut p = Pipeline::start(Box::new(source), Box::new(encoder), PipelineConfig::default()).expect("pipeline");
    let mut stream = Vec::new();
    for _ in 0..90 {
        let packet = p.recv_timeout(Duration::from_secs(5)).expect("running").expect("packet");
        stream.extend_from_slice(&packet.data);
    }
    let (converted, taken) =
        (p.stats.rows_converted.load(Ordering::Relaxed), p.stats.rows_taken.load(Ordering::Relaxed));
    p.stop().expect("clean stop");
    println!("rows converted: {converted} of {taken}");
    assert!(converted * 4 < taken, "typing should convert a fraction of the rows: {converted} of {taken}");

    let scene = SyntheticScene::new(w as usize, h as usize, Scene::Typing);
    let mut decoder = openh264::decoder::Decoder::new().expect("decoder");
    let (mut bgra, mut want) = (vec![0u8; (w * h * 4) as usize], I420Frame::new(w, h));
    let mut checked = 0;
    let mut worst = f64::INFINITY;
    for nal in openh264::nal_units(&stream) {
        let Some(yuv) = decoder.decode(nal).expect("decodable") else { continue };
        use openh264::formats::YUVSource;
        let (y_stride, _, _) = yuv.strides();
        let mark = read_mark_luma(yuv.y(), w as usize, h as usize, y_stride).expect("readable mark");
        // The frame as the source drew it, converted in full.
        scene.render(u64::from(mark.counter), &mut bgra, w as usize * 4, mark);
        bgra_to_i420(&bgra, w, h, w as usize * 4, &mut want).expect("convert");
        let db = psnr_plane(yuv.y(), y_stride, want.y(), want.y_stride(), w as usize, h as usize);
        worst = worst.min(db);
        checked += 1;
    }
    println!("{checked} decoded frames, worst luma PSNR against the full conversion {worst:.1} dB");
    assert!(checked >= 80, "{checked} frames decoded");
    // Text at 4 Mbps in 640x360 codes at ≈ 45–50 dB; a stale typed
    // character (rows not converted) costs far more than this allows.
    assert!(worst > 38.0, "worst luma PSNR {worst:.1} dB");
}

/// Moving content for `moving_frames` frames (damage: the whole frame),
/// then still: nothing changes, only forced frames are published.
struct MovingThenStill {
    scene: peep_capture::synthetic::SyntheticScene,
    index: u64,
    moving_frames: u64,
}

impl peep_capture::backend::CaptureBackend for MovingThenStill {
    fn capture(
        &mut self,
        ring: &mut peep_capture::RingProducer,
        seq: u64,
        force: bool,
    ) -> peep_capture::Result<peep_capture::backend::Tick> {
        use peep_capture::backend::Tick;
        use peep_capture::{DamageRect, FrameMeta, PixelFormat};
        let (w, h) = (self.scene.width() as u32, self.scene.height() as u32);
        let changed = self.index < self.moving_frames;
        if !changed && !force {
            return Ok(Tick::Unchanged);
        }
        let shown = self.index.min(self.moving_frames - 1);
        let mut slot = ring.begin();
        let bytes = slot.heap_bytes((w * h * 4) as usize);
        let mark = peep_capture::marks::FrameMark { counter: shown as u32, timestamp_ms: 0 };
        self.scene.render(shown, bytes, w as usize * 4, mark);
        let damage = if changed { DamageRect { x: 0, y: 0, width: w, height: h } } else { DamageRect::EMPTY };
        let meta = FrameMeta {
            width: w,
            height: h,
            stride_bytes: w as usize * 4,
            format: PixelFormat::Bgrx,
            captured_at: Instant::now(),
            seq,
            changed,
        };
        slot.publish_with_damage(meta, Some(damage));
        self.index += 1;
        Ok(Tick::Published { changed })
    }

    fn size(&self) -> (u32, u32) {
        (self.scene.width() as u32, self.scene.height() as u32)
    }

    fn set_cursor(&mut self, _visible: bool) {}

    fn describe(&self) -> String {
        "moving, then still".into()
    }
}

/// Paint-over: motion is coded at whatever the rate control affords; once
/// the picture stops changing, exactly one refinement frame follows (within
/// a second), then nothing but the 1 s keep-alives. The refinement is a
/// P-frame that decodes to a much sharper picture, which the keep-alives
/// keep.
#[test]
fn content_settling_after_motion_gets_exactly_one_refinement_frame() {
    use peep_capture::synthetic::SyntheticScene;
    use peep_encode::{I420Frame, bgra_to_i420, psnr_plane};
    use std::sync::atomic::Ordering;

    let (w, h) = (640u32, 360u32);
    let source =
        MovingThenStill { scene: SyntheticScene::new(640, 360, Scene::Scrolling), index: 0, moving_frames: 45 };
    let encoder =
        OpenH264Encoder::new(OpenH264Config { bitrate_bps: 400_000, ..OpenH264Config::default() }).expect("encoder");
    let mut p = Pipeline::start(Box::new(source), Box::new(encoder), PipelineConfig::default()).expect("pipeline");
    let mut packets = Vec::new();
    let until = Instant::now() + Duration::from_millis(4500);
    while Instant::now() < until {
        if let Some(packet) = p.recv_timeout(Duration::from_millis(100)).expect("running") {
            packets.push((Instant::now(), packet.refinement, packet.keyframe, packet.data.to_vec()));
        }
    }
    assert_eq!(p.stats.refinements.load(Ordering::Relaxed), 1);
    p.stop().expect("clean stop");

    let refinements: Vec<usize> = packets.iter().enumerate().filter(|(_, p)| p.1).map(|(i, _)| i).collect();
    assert_eq!(refinements.len(), 1, "refinement packets: {refinements:?} of {}", packets.len());
    let r = refinements[0];
    assert!(!packets[r].2, "the refinement is not a keyframe");
    // The refinement follows the last moving frame (the ring may have
    // dropped earlier ones on a busy machine, never the newest) within a
    // second; afterwards only keep-alives (≤ 1 per second).
    assert!(r >= 1, "a moving frame before the refinement");
    let settled_after = packets[r].0 - packets[r - 1].0;
    assert!(settled_after < Duration::from_secs(1), "refined {settled_after:?} after the last change");
    let after = packets.len() - r - 1;
    assert!(after <= 4, "{after} packets after the refinement in ≈ 3 s (keep-alives only)");

    // Decode: the refinement is much sharper than the last moving frame.
    let scene = SyntheticScene::new(640, 360, Scene::Scrolling);
    let mut bgra = vec![0u8; (w * h * 4) as usize];
    scene.render(44, &mut bgra, w as usize * 4, peep_capture::marks::FrameMark { counter: 44, timestamp_ms: 0 });
    let mut want = I420Frame::new(w, h);
    bgra_to_i420(&bgra, w, h, w as usize * 4, &mut want).expect("convert");
    let mut decoder = openh264::decoder::Decoder::new().expect("decoder");
    let (mut psnr, mut marks) = (Vec::new(), Vec::new());
    for (_, _, _, data) in &packets {
        use openh264::formats::YUVSource;
        let pic = decoder.decode(data).expect("decodable").expect("a picture per packet");
        let (ys, _, _) = pic.strides();
        psnr.push(psnr_plane(pic.y(), ys, want.y(), want.y_stride(), w as usize, h as usize));
        marks.push(peep_capture::marks::read_mark_luma(pic.y(), w as usize, h as usize, ys).map(|m| m.counter));
    }
    assert_eq!(marks[r - 1], Some(44), "the packet before the refinement is the last moving frame");
    let (psnr, r) = (&psnr[r - 1..], 1);
    println!("luma PSNR: last moving frame {:.1} dB, refinement {:.1} dB", psnr[r - 1], psnr[r]);
    // At 400 kbps the scrolling frames are blurry (≈ 32 dB); one P-frame at
    // QP 20 lifts them by ≈ 8 dB (from ≈ 38 dB, as at usual bitrates, it
    // reaches ≥ 45 dB: peep-encode's refinement test and the mode table).
    assert!(psnr[r] > psnr[r - 1] + 5.0, "{:.1} → {:.1} dB", psnr[r - 1], psnr[r]);
    assert!(psnr[r + 1..].iter().all(|&db| db >= psnr[r] - 0.5), "keep-alives keep the refined picture: {psnr:?}");
}
