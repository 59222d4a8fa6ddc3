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
