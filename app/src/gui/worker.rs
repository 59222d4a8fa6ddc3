//! The GUI's worker thread: owns the sharing session and does everything
//! that may block (X11 listing and thumbnails, starting and stopping the
//! share), so the UI thread never waits. Commands come in and events go out
//! over bounded channels.

use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use peep_capture::platform::PlatformSession;
use peep_capture::{SourceId, SourceKind};
use peep_transport::{Secret, ShareConfig, TransportError};

use super::model::{Command, Event, Status};
use crate::pipeline::{Control, PipelineConfig};
use crate::session::{PreviewPacket, Session};

/// Commands queued from the UI. Policy when full: the UI drops the command
/// and says so in a banner (it never blocks).
pub const COMMAND_CAPACITY: usize = 32;
/// Events queued to the UI. Policy when full: status updates are dropped
/// (the next one supersedes them); other events wait.
pub const EVENT_CAPACITY: usize = 64;
/// Status update period while sharing.
pub const STATUS_PERIOD: Duration = Duration::from_millis(250);
/// Thumbnail size.
pub const THUMBNAIL: (u32, u32) = (192, 108);
/// Other ports tried when the chosen one is taken.
pub const PORT_ATTEMPTS: u16 = 10;

/// Handles to a running worker.
#[derive(Debug)]
pub struct Worker {
    /// Send commands here (`try_send` only).
    pub commands: Sender<Command>,
    /// Receive events here (`try_recv` only).
    pub events: Receiver<Event>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Worker {
    /// Starts the worker thread. `repaint` wakes the UI when an event is queued.
    pub fn spawn(preview: Sender<PreviewPacket>, repaint: impl Fn() + Send + 'static) -> std::io::Result<Self> {
        let (commands, command_rx) = crossbeam_channel::bounded(COMMAND_CAPACITY);
        let (event_tx, events) = crossbeam_channel::bounded(EVENT_CAPACITY);
        let thread = std::thread::Builder::new()
            .name("peep-gui-worker".into())
            .spawn(move || run(&command_rx, &event_tx, &preview, &repaint))?;
        Ok(Self { commands, events, thread: Some(thread) })
    }

    /// Stops any share (telling viewers) and waits for the thread.
    pub fn shutdown(&mut self) {
        let _ = self.commands.send_timeout(Command::Stop, Duration::from_secs(1));
        // Nobody reads events any more: drop our end so the worker's sends
        // fail at once instead of waiting on a full queue.
        let (_, no_events) = crossbeam_channel::bounded::<Event>(0);
        self.events = no_events;
        let (done, _) = crossbeam_channel::bounded::<Command>(0);
        self.commands = done;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn run(commands: &Receiver<Command>, events: &Sender<Event>, preview: &Sender<PreviewPacket>, repaint: &dyn Fn()) {
    let emit = |event: Event| {
        let sent = match event {
            Event::Status(_) => events.try_send(event).is_ok(),
            other => events.send(other).is_ok(),
        };
        if sent {
            repaint();
        }
    };
    let mut session: Option<Session> = None;
    let mut last_status = Instant::now();
    let mut last = (Instant::now(), 0u64, 0u64, 0u64);
    loop {
        match commands.recv_timeout(STATUS_PERIOD) {
            Ok(Command::RefreshSources) => emit(list_sources()),
            Ok(Command::Start { source, quality, fps, port, password, relay, admit, publish }) => {
                if let Some(s) = session.take() {
                    let _ = s.stop();
                }
                let options = StartOptions { fps, port, password, relay, admit };
                match start(&source, &quality, options) {
                    Ok(s) => {
                        let link = Secret::new(s.share().link());
                        let port = s.share().local_addr().port();
                        // Also on stdout, for scripts and the window test.
                        println!("Link: {}", link.expose());
                        let publish_error = publish.and_then(|c| s.share().start_publish(c).err());
                        session = Some(s);
                        last = (Instant::now(), 0, 0, 0);
                        emit(Event::Started { link, port });
                        if let Some(e) = publish_error {
                            emit(Event::PublishFailed(e.to_string()));
                        }
                    }
                    Err(e) => emit(Event::StartFailed(start_error(&e))),
                }
            }
            Ok(Command::Publish(config)) => {
                if let Some(s) = &session {
                    match config {
                        Some(c) => {
                            if let Err(e) = s.share().start_publish(c) {
                                emit(Event::PublishFailed(e.to_string()));
                            }
                        }
                        None => s.share().stop_publish(),
                    }
                }
            }
            Ok(Command::Stop) => {
                if let Some(s) = session.take() {
                    let error = s.stop().err().map(|e| format!("{e:#}"));
                    emit(Event::Stopped(error));
                }
            }
            Ok(Command::SetQuality(name)) => {
                if let (Some(s), Some(q)) = (&session, crate::presets::quality(&name)) {
                    s.share().set_bitrate_range(q.range());
                    s.control(Control::SetMaxHeight(q.max_height));
                }
            }
            Ok(Command::SetFps(fps)) => {
                if let Some(s) = &session {
                    s.control(Control::SetFps(fps as f32));
                }
            }
            Ok(Command::SetPassword(password)) => {
                if let Some(s) = &session {
                    s.share().set_password(password);
                }
            }
            Ok(Command::SetAdmit(on)) => {
                if let Some(s) = &session {
                    s.share().set_admit(on);
                }
            }
            Ok(Command::Admit(id, let_in)) => {
                if let Some(s) = &session {
                    s.share().admit(id, let_in);
                }
            }
            Ok(Command::Kick(id)) => {
                if let Some(s) = &session {
                    s.share().kick(&id);
                }
            }
            Ok(Command::Preview(open)) => {
                if let Some(s) = &session {
                    s.set_preview(open.then(|| preview.clone()));
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
        if let Some(s) = &session {
            if s.is_finished() {
                let error = session.take().and_then(|s| s.stop().err()).map(|e| format!("{e:#}"));
                emit(Event::Stopped(Some(error.unwrap_or_else(|| "the capture ended".into()))));
            } else if last_status.elapsed() >= STATUS_PERIOD {
                last_status = Instant::now();
                emit(Event::Status(Box::new(status(s, &mut last))));
            }
        }
    }
    if let Some(s) = session.take() {
        let _ = s.stop();
    }
}

fn status(s: &Session, last: &mut (Instant, u64, u64, u64)) -> Status {
    let p = s.pipeline_stats();
    let (frames, bytes) = (p.frames_encoded.load(Relaxed), p.bytes.load(Relaxed));
    let secs = last.0.elapsed().as_secs_f32().max(1e-3);
    let publish = s.share().publish_status();
    let published = publish.as_ref().map_or(0, |p| p.bytes_sent);
    let status = Status {
        publish_kbps: published.saturating_sub(last.3) as f32 * 8.0 / secs / 1e3,
        publish,
        viewers: s.share().viewers(),
        fps: (frames - last.1) as f32 / secs,
        kbps: (bytes - last.2) as f32 * 8.0 / secs / 1e3,
        target_kbps: s.share().stats().target_bps.load(Relaxed) as f32 / 1e3,
        encode_ms: p.encode_time.quantile(0.5).as_secs_f32() * 1e3,
        dropped: p.frames_dropped.load(Relaxed),
        skipped: s.capture_stats().frames_unchanged.load(Relaxed),
        relay: s.share().relay_status(),
        knocks: s.share().knocks(),
        dropper_skipped: p.frames_skipped_budget.load(Relaxed) + p.frames_skipped_backlog.load(Relaxed),
        fps_limited_by_link: p.fps_limited_by_link.load(Relaxed),
    };
    *last = (Instant::now(), frames, bytes, published);
    status
}

fn list_sources() -> Event {
    let session = match PlatformSession::connect() {
        Ok(s) => s,
        Err(e) => return Event::SourcesFailed(e.to_string()),
    };
    let sources: Vec<_> = match session.list_sources() {
        // Peep's own windows (this one, the preview) are not worth sharing.
        Ok(s) => s.into_iter().filter(|s| !(s.app.as_deref() == Some("peep") && s.name.starts_with("Peep"))).collect(),
        Err(e) => return Event::SourcesFailed(e.to_string()),
    };
    let thumbnails = sources
        .iter()
        .filter(|s| s.kind == SourceKind::Window || s.id != "screen" || sources.len() == 1)
        .filter_map(|s| {
            let id = SourceId::parse(&s.id).ok()?;
            let t = session.thumbnail(&id, THUMBNAIL.0, THUMBNAIL.1).ok()?;
            Some((s.id.clone(), t))
        })
        .collect();
    Event::Sources(sources, thumbnails)
}

/// How to start a share, besides the source and preset.
struct StartOptions {
    fps: u32,
    port: u16,
    password: Option<Secret>,
    relay: Option<String>,
    admit: bool,
}

/// A failed start in words; relay failures keep their own words first
/// (the model turns them into their banners).
fn start_error(e: &anyhow::Error) -> String {
    match e.chain().find_map(|c| c.downcast_ref::<TransportError>()) {
        Some(t @ (TransportError::RelayUnreachable(_) | TransportError::RelayRefused(_))) => t.to_string(),
        _ => format!("{e:#}"),
    }
}

fn start(source: &str, quality: &str, options: StartOptions) -> anyhow::Result<Session> {
    let StartOptions { fps, port, password, relay, admit } = options;
    let preset = crate::presets::quality(quality)
        .or_else(|| crate::presets::quality(crate::presets::DEFAULT_QUALITY))
        .expect("the default preset exists");
    let range = preset.range();
    let mut last_error = None;
    for candidate in (0..PORT_ATTEMPTS).filter_map(|i| port.checked_add(i)) {
        let backend = crate::sources::open_source(Some(source), (1920, 1080), true)?;
        let encoder = crate::session::live_encoder(range.clamp(peep_transport::rate::START_BPS), fps as f32)?;
        let config = ShareConfig {
            port: candidate,
            password: password.clone(),
            bitrate: range,
            relay: relay.clone().map(|url| peep_transport::RelayClientConfig { url, ca_file: None }),
            admit,
            ..ShareConfig::default()
        };
        let pipeline = PipelineConfig { fps: fps as f32, max_height: preset.max_height, ..PipelineConfig::default() };
        match Session::start(backend, encoder, pipeline, config) {
            Ok(s) => return Ok(s),
            Err(e) if e.downcast_ref::<TransportError>().is_some_and(|t| matches!(t, TransportError::Bind { .. })) => {
                last_error = Some(e);
            }
            Err(e) => return Err(e),
        }
    }
    Err(last_error.unwrap_or_else(|| anyhow::anyhow!("no free port from {port}")))
}
