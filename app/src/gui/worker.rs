//! The GUI's worker thread: owns the sharing session and does everything
//! that may block (X11 listing and thumbnails, starting and stopping the
//! share), so the UI thread never waits. Commands come in and events go out
//! over bounded channels.

use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use peep_capture::backend::CaptureBackend;
use peep_capture::platform::PlatformSession;
use peep_capture::{CaptureError, SourceId, SourceKind};
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
/// How often the live thumbnail of the portal's choice is refreshed.
pub const PORTAL_THUMBNAIL_PERIOD: Duration = Duration::from_secs(1);
/// How long closing the window waits for the worker (stopping a share takes
/// well under a second; a desktop dialog can stay open indefinitely).
pub const SHUTDOWN_WAIT: Duration = Duration::from_secs(5);
/// How long a new portal choice may take to deliver its first picture
/// before it is shown without one.
pub const FIRST_PICTURE_WAIT: Duration = Duration::from_secs(2);

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
            // A worker waiting on the desktop's screen-cast dialog cannot be
            // interrupted: give it a moment, then leave it to the process exit.
            let deadline = Instant::now() + SHUTDOWN_WAIT;
            while !t.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            if t.is_finished() {
                let _ = t.join();
            } else {
                tracing::debug!("the worker is still busy (a desktop dialog is open); not waiting for it");
            }
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
    // The portal's choice, kept open for its live thumbnail until sharing starts.
    let mut chosen: Option<portal::Chosen> = None;
    let mut last_status = Instant::now();
    let mut last = (Instant::now(), 0u64, 0u64, 0u64);
    loop {
        match commands.recv_timeout(STATUS_PERIOD) {
            Ok(Command::RefreshSources) => emit(list_sources()),
            Ok(Command::ChooseSource { restore }) => {
                chosen = None;
                match portal::choose(restore) {
                    Ok((c, thumbnail)) => {
                        emit(Event::PortalChosen { description: c.describe(), thumbnail });
                        chosen = Some(c);
                    }
                    Err(CaptureError::Cancelled) => emit(Event::Cancelled),
                    Err(e) => emit(Event::PortalFailed(e.to_string())),
                }
            }
            Ok(Command::Start { source, quality, fps, port, password, relay, admit, publish }) => {
                if let Some(s) = session.take() {
                    let _ = s.stop();
                }
                let held = if source == super::model::PORTAL_ID {
                    chosen.take().map(portal::Chosen::into_backend)
                } else {
                    None
                };
                let options = StartOptions { fps, port, password, relay, admit, held };
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
                    Err(e) if is_cancel(&e) => emit(Event::Cancelled),
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
        if session.is_none()
            && let Some(c) = &mut chosen
            && c.due()
        {
            match c.thumbnail() {
                Ok(Some(t)) => emit(Event::PortalThumbnail(t)),
                Ok(None) => {}
                Err(e) => {
                    chosen = None;
                    emit(Event::PortalFailed(format!("The chosen screen or window went away ({e})")));
                }
            }
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

fn is_cancel(e: &anyhow::Error) -> bool {
    e.chain().any(|c| matches!(c.downcast_ref(), Some(CaptureError::Cancelled)))
}

/// How to start a share, besides the source and preset.
struct StartOptions {
    fps: u32,
    port: u16,
    password: Option<Secret>,
    relay: Option<String>,
    admit: bool,
    /// An already open capture (the portal's choice), used for the first attempt.
    held: Option<Box<dyn CaptureBackend>>,
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
    let StartOptions { fps, port, password, relay, admit, mut held } = options;
    let preset = crate::presets::quality(quality)
        .or_else(|| crate::presets::quality(crate::presets::DEFAULT_QUALITY))
        .expect("the default preset exists");
    let range = preset.range();
    let mut last_error = None;
    for candidate in (0..PORT_ATTEMPTS).filter_map(|i| port.checked_add(i)) {
        let backend = match held.take() {
            Some(b) => b,
            None => crate::sources::open_source(crate::sources::OpenRequest {
                source: Some(source),
                backend: None,
                synthetic_size: (1920, 1080),
                cursor: true,
            })?,
        };
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

/// The portal's choice while not sharing: the open capture and a private
/// ring for its thumbnails.
#[cfg(target_os = "linux")]
mod portal {
    use std::time::Instant;

    use peep_capture::backend::pipewire::PortalCapture;
    use peep_capture::backend::{CaptureBackend, Tick};
    use peep_capture::{CaptureError, RingConsumer, RingProducer, Thumbnail, frame_ring};

    use super::{FIRST_PICTURE_WAIT, PORTAL_THUMBNAIL_PERIOD, THUMBNAIL};

    pub struct Chosen {
        capture: PortalCapture,
        ring: RingProducer,
        frames: RingConsumer,
        seq: u64,
        last: Instant,
    }

    /// Opens the desktop's dialog (or restores the last choice) and waits
    /// briefly for a first picture.
    pub fn choose(restore: bool) -> Result<(Chosen, Option<Thumbnail>), CaptureError> {
        let capture = crate::sources::open_portal(restore, true)?;
        let (ring, frames) = frame_ring();
        let mut chosen = Chosen { capture, ring, frames, seq: 0, last: Instant::now() };
        let deadline = Instant::now() + FIRST_PICTURE_WAIT;
        let mut thumbnail = None;
        while thumbnail.is_none() && Instant::now() < deadline {
            chosen.capture.wait_for_change(deadline)?;
            thumbnail = chosen.grab(true)?;
        }
        Ok((chosen, thumbnail))
    }

    impl Chosen {
        pub fn describe(&self) -> String {
            self.capture.chosen().describe()
        }

        pub fn due(&self) -> bool {
            self.last.elapsed() >= PORTAL_THUMBNAIL_PERIOD
        }

        /// A new thumbnail if the picture changed since the last one.
        pub fn thumbnail(&mut self) -> Result<Option<Thumbnail>, CaptureError> {
            self.last = Instant::now();
            self.grab(false)
        }

        fn grab(&mut self, force: bool) -> Result<Option<Thumbnail>, CaptureError> {
            self.seq += 1;
            if self.capture.capture(&mut self.ring, self.seq, force)? == Tick::Unchanged {
                return Ok(None);
            }
            Ok(self.frames.try_take().map(|f| {
                let m = f.meta();
                Thumbnail::downscale(f.data(), m.width, m.height, m.stride_bytes, THUMBNAIL.0, THUMBNAIL.1)
            }))
        }

        pub fn into_backend(self) -> Box<dyn CaptureBackend> {
            Box::new(self.capture)
        }
    }
}

/// The portal exists only on Linux.
#[cfg(not(target_os = "linux"))]
mod portal {
    use peep_capture::backend::CaptureBackend;
    use peep_capture::{CaptureError, Thumbnail};

    pub enum Chosen {}

    pub fn choose(_restore: bool) -> Result<(Chosen, Option<Thumbnail>), CaptureError> {
        Err(CaptureError::PortalUnavailable("the screen-cast portal exists only on Linux".into()))
    }

    impl Chosen {
        pub fn describe(&self) -> String {
            match *self {}
        }

        pub fn due(&self) -> bool {
            match *self {}
        }

        pub fn thumbnail(&mut self) -> Result<Option<Thumbnail>, CaptureError> {
            match *self {}
        }

        pub fn into_backend(self) -> Box<dyn CaptureBackend> {
            match self {}
        }
    }
}
