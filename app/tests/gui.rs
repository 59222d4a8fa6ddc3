//! The GUI's logic and drawing, driven by egui_kittest without a display.

use eframe::egui::accesskit::Role;
use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use peep::gui::model::{Command, Event, Model, Phase, Status};
use peep::gui::view::{Thumbnails, draw};
use peep::settings::Settings;
use peep_capture::{SourceInfo, SourceKind};
use peep_transport::{VideoCodec, ViewerSnapshot, ViewerState};

type State = (Model, Vec<Command>);

fn source(id: &str, name: &str, primary: bool) -> SourceInfo {
    SourceInfo {
        id: id.into(),
        kind: SourceKind::Display,
        name: name.into(),
        app: None,
        x: 0,
        y: 0,
        width: 1920,
        height: 1080,
        primary,
    }
}

fn harness() -> Harness<'static, State> {
    let mut model = Model::new(Settings::default(), "s3cret".into());
    model.apply(Event::Sources(
        vec![source("screen", "Whole screen", false), source("monitor:DP-1", "DP-1", true)],
        vec![],
    ));
    Harness::builder().with_size([1000.0, 700.0]).build_ui_state(
        |ui, state: &mut State| {
            let commands = draw(ui, &mut state.0, &Thumbnails::new());
            state.1.extend(commands);
        },
        (model, Vec::new()),
    )
}

fn viewer(id: &str, codec: VideoCodec) -> ViewerSnapshot {
    ViewerSnapshot {
        id: id.into(),
        remote: "192.0.2.9:50000".parse().expect("addr"),
        codec,
        state: ViewerState::Connected,
        connected_for: std::time::Duration::from_secs(12),
        rtt: Some(std::time::Duration::from_millis(3)),
        loss: 0.0,
        estimate_bps: 2_500_000,
        bytes_sent: 1,
        frames_sent: 1,
        frames_dropped: 0,
        frames_skipped: 0,
        keyframe_requests: 0,
        queue_ms: 40,
        retransmissions: 7,
        nacks: 3,
        plis: 1,
        probes: 0,
        padding_bytes: 0,
        app_limited: false,
        acked_bps: 0,
        playout_min_ms: 0,
    }
}

#[test]
fn start_share_then_stop() {
    let mut h = harness();
    h.run();
    h.get_by_label("Start sharing").click();
    h.run();
    let Some(Command::Start { source, quality, fps, port, password, publish: None }) = h.state().1.last().cloned()
    else {
        panic!("start command: {:?}", h.state().1)
    };
    assert_eq!((source.as_str(), quality.as_str(), fps, port, password), ("monitor:DP-1", "balanced", 30, 8080, None));
    assert_eq!(h.state().0.phase, Phase::Starting);
    h.state_mut().0.apply(Event::Started { link: "http://192.0.2.1:8080/s/abc".into(), port: 8080 });
    h.run();
    h.get_by_label("http://192.0.2.1:8080/s/abc");
    h.get_by_label("Copy link");
    h.get_by_label("Stop sharing").click();
    h.run();
    assert_eq!(h.state().1.last(), Some(&Command::Stop));
    h.state_mut().0.apply(Event::Stopped(None));
    h.run();
    h.get_by_label("Start sharing");
}

#[test]
fn viewers_are_listed_and_can_be_kicked() {
    let mut h = harness();
    h.run();
    h.get_by_label("Start sharing").click();
    h.run();
    h.state_mut().0.apply(Event::Started { link: "http://x/s/t".into(), port: 8080 });
    h.state_mut().0.apply(Event::Status(Status {
        viewers: vec![viewer("v1", VideoCodec::Vp9)],
        fps: 30.0,
        kbps: 2000.0,
        ..Status::default()
    }));
    h.run();
    h.get_by_label("Viewers (1)");
    h.get_by_label("192.0.2.9");
    h.get_by_label("VP9"); // the viewer's codec
    h.get_by_label("3.0 ms");
    // The send side's figures: queue, retransmissions, NACK/PLI.
    h.get_by_label("40 ms");
    h.get_by_label("7");
    h.get_by_label("3/1");
    h.get_by_label("Kick").click();
    h.run();
    assert_eq!(h.state().1.last(), Some(&Command::Kick("v1".into())));
}

#[test]
fn password_and_error_banner() {
    let mut h = harness();
    h.run();
    h.get_by_label("Password").click();
    h.run();
    h.get_by_label("s3cret");
    assert!(h.state().0.settings.password_on);
    h.get_by_label("Start sharing").click();
    h.run();
    assert!(matches!(h.state().1.last(), Some(Command::Start { password: Some(p), .. }) if p.expose() == "s3cret"));
    h.state_mut().0.apply(Event::Started { link: "http://x/s/t".into(), port: 8080 });
    h.state_mut().0.apply(Event::Stopped(Some("source gone: window 0x3a00007 was closed".into())));
    h.run();
    h.get_by_label_contains("Pick another screen or window");
    h.get_by_label("Pick another source").click();
    h.run();
    assert_eq!(h.state().0.selected, None);
    assert!(h.state().0.banner.is_none());
}

#[test]
fn preset_and_frame_rate_change_live_while_sharing() {
    let mut h = harness();
    h.run();
    h.get_by_label("Start sharing").click();
    h.run();
    h.state_mut().0.apply(Event::Started { link: "http://x/s/t".into(), port: 8080 });
    h.run();
    h.get_by_label("Quality").click();
    h.run();
    h.get_by_label("sharp").click();
    h.run();
    assert_eq!(h.state().1.last(), Some(&Command::SetQuality("sharp".into())));
    h.get_by_label("Frame rate").click();
    h.run();
    h.get_by_label("60 fps").click();
    h.run();
    assert_eq!(h.state().1.last(), Some(&Command::SetFps(60)));
    assert_eq!(h.state().0.phase, Phase::Sharing, "the share keeps running");
}

#[test]
fn publish_to_a_server_with_url_and_token_then_its_state_bitrate_and_rtt_show() {
    use peep_transport::{PublishSnapshot, PublishState};
    let mut h = harness();
    h.run();
    for (role, field, text) in [
        (Role::TextInput, "Server URL", "http://192.0.2.7:7080/whip/endpoint/room1"),
        (Role::PasswordInput, "Token", "t0ken-secret"),
    ] {
        h.get_by_role_and_label(role, field).focus();
        h.run();
        h.get_by_role_and_label(role, field).type_text(text);
        h.run();
    }
    h.get_by_label("Publish to a server").click();
    h.run();
    h.get_by_label("Start sharing").click();
    h.run();
    let Some(Command::Start { publish: Some(config), .. }) = h.state().1.last().cloned() else {
        panic!("start with a publish: {:?}", h.state().1)
    };
    assert_eq!(config.url.expose(), "http://192.0.2.7:7080/whip/endpoint/room1");
    assert_eq!(config.token.as_ref().map(|t| t.expose()), Some("t0ken-secret"));
    h.state_mut().0.apply(Event::Started { link: "http://x/s/t".into(), port: 8080 });
    let publish = PublishSnapshot {
        state: PublishState::Live,
        server: "192.0.2.7:7080".into(),
        message: None,
        live_for: Some(std::time::Duration::from_secs(4)),
        retry_in: None,
        publishes: 1,
        ice_restarts: 0,
        bytes_sent: 500_000,
        frames_sent: 120,
        rtt: Some(std::time::Duration::from_micros(4200)),
        estimate_bps: 2_400_000,
        remb_bps: 0,
        keyframe_requests: 1,
        ice_servers: 0,
    };
    h.state_mut().0.apply(Event::Status(Status { publish: Some(publish), publish_kbps: 1850.0, ..Status::default() }));
    h.run();
    h.get_by_label("Server (WHIP)");
    h.get_by_label("192.0.2.7:7080");
    h.get_by_label("live");
    h.get_by_label("1850 kbps");
    h.get_by_label("4.2 ms");
    h.get_by_label("2400 kbps");
    // Switching it off while sharing stops the publish and keeps the share.
    h.get_by_label("Publish to a server").click();
    h.run();
    assert_eq!(h.state().1.last(), Some(&Command::Publish(None)));
    assert_eq!(h.state().0.phase, Phase::Sharing);
}
