//! The GUI's whole path for live settings, without a window: the model's
//! commands go to the real worker thread, which applies them to a real
//! share (synthetic source, OpenH264); its status events report what the
//! pipeline actually does.

use std::time::{Duration, Instant};

use peep::gui::model::{Event, Model, SYNTHETIC_ID, Status};
use peep::gui::worker::Worker;
use peep::settings::Settings;

/// Forwards the worker's events into the model until `until` holds for
/// the latest status, or panics after `timeout` with the statuses seen.
fn wait_status(worker: &Worker, model: &mut Model, what: &str, timeout: Duration, until: impl Fn(&Status) -> bool) {
    let deadline = Instant::now() + timeout;
    let mut seen = Vec::new();
    while Instant::now() < deadline {
        if let Ok(event) = worker.events.recv_timeout(Duration::from_millis(100)) {
            if let Event::Status(status) = &event {
                seen.push(status.fps);
                if until(status) {
                    model.apply(event);
                    return;
                }
            }
            model.apply(event);
        }
    }
    panic!("timed out waiting for {what}; fps seen: {seen:?}");
}

#[test]
fn frame_rate_changes_while_sharing_take_effect_within_about_a_second() {
    let (preview_tx, preview_rx) = crossbeam_channel::bounded(8);
    // The preview keeps the pipeline running (a share nobody watches is paused).
    std::thread::spawn(move || while preview_rx.recv().is_ok() {});
    let worker = Worker::spawn(preview_tx, || {}).expect("worker");
    let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("port").port();
    let mut model = Model::new(Settings { developer: true, port, fps: 30, ..Settings::default() }, "pw".into());
    model.apply(Event::Sources(vec![], vec![]));
    model.select(SYNTHETIC_ID);
    let start = model.start().expect("start");
    worker.commands.try_send(start).expect("send");
    let deadline = Instant::now() + Duration::from_secs(20);
    while model.link.is_none() {
        assert!(Instant::now() < deadline, "the share never started: {:?}", model.banner);
        if let Ok(event) = worker.events.recv_timeout(Duration::from_millis(100)) {
            model.apply(event);
        }
    }
    let preview = model.set_preview(true).expect("preview command");
    worker.commands.try_send(preview).expect("send");
    wait_status(&worker, &mut model, "≈ 30 fps", Duration::from_secs(10), |s| s.fps >= 25.0);

    let lower = model.set_fps(15).expect("an fps command");
    worker.commands.try_send(lower).expect("send");
    wait_status(&worker, &mut model, "≈ 15 fps", Duration::from_millis(1500), |s| (12.0..=17.0).contains(&s.fps));

    // Back up: the user's choice applies at once (the link is not limiting).
    let raise = model.set_fps(30).expect("an fps command");
    worker.commands.try_send(raise).expect("send");
    wait_status(&worker, &mut model, "≈ 30 fps again", Duration::from_millis(1500), |s| s.fps >= 25.0);
    let stop = model.stop().expect("stop");
    worker.commands.try_send(stop).expect("send");
}
