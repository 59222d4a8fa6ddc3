//! The pipeline's run-time controls with the real encoder.

use std::time::{Duration, Instant};

use peep::pipeline::{Control, Pipeline, PipelineConfig};
use peep_capture::backend::synthetic::SyntheticBackend;
use peep_capture::synthetic::Scene;
use peep_encode::{OpenH264Config, OpenH264Encoder};

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
            assert!(p.control(Control::Keyframe));
            assert!(p.control(Control::SetBitrate(500_000)));
        }
        let packet = p.recv_timeout(Duration::from_secs(5)).expect("running").expect("packet");
        keyframes += usize::from(packet.keyframe);
    }
    assert_eq!(keyframes, 2, "the first frame and the requested one");
    p.stop().expect("clean stop");
}
