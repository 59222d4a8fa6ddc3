//! The GUI's state and decisions, without I/O: the view feeds it user
//! actions and worker events and sends the [`Command`]s it returns.

use std::collections::VecDeque;

use peep_capture::{SourceInfo, SourceKind, Thumbnail};
use peep_transport::{PublishSnapshot, PublishState, Secret, ViewerSnapshot, WhipConfig};

use crate::settings::Settings;

/// The id of the synthetic source in the picker.
pub const SYNTHETIC_ID: &str = "synthetic:typing";
/// Samples kept for the sparklines (one per status update, ≈ 4 per second).
pub const HISTORY: usize = 120;

/// Where a share is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Not sharing.
    Idle,
    /// Start asked for, waiting for the worker.
    Starting,
    /// Sharing.
    Sharing,
    /// Stop asked for, waiting for the worker.
    Stopping,
}

/// What the GUI asks of the worker.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// List sources (with thumbnails).
    RefreshSources,
    /// Start sharing.
    Start {
        /// Source id.
        source: String,
        /// Quality preset name.
        quality: String,
        /// Frames per second.
        fps: u32,
        /// Preferred port (another is chosen if it is taken).
        port: u16,
        /// Viewer password.
        password: Option<Secret>,
        /// Also publish to this WHIP server.
        publish: Option<WhipConfig>,
    },
    /// Stop sharing.
    Stop,
    /// Change the quality preset live.
    SetQuality(String),
    /// Change the frame rate live.
    SetFps(u32),
    /// Turn the password on (Some) or off (None) live.
    SetPassword(Option<Secret>),
    /// Remove a viewer.
    Kick(String),
    /// Open or close the preview.
    Preview(bool),
    /// Start (Some) or stop (None) publishing to a WHIP server while sharing.
    Publish(Option<WhipConfig>),
}

/// Live figures of a running share.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Status {
    /// Viewers.
    pub viewers: Vec<ViewerSnapshot>,
    /// Encoded frames per second.
    pub fps: f32,
    /// Encoded kbps.
    pub kbps: f32,
    /// Congestion-control target, kbps.
    pub target_kbps: f32,
    /// Median encode time, ms.
    pub encode_ms: f32,
    /// Frames dropped before encoding (ring overwrites).
    pub dropped: u64,
    /// Unchanged ticks skipped.
    pub skipped: u64,
    /// Frames the frame dropper skipped (encoder over budget, or a long send queue).
    pub dropper_skipped: u64,
    /// Whether the link, not the frame-rate setting, limits the frame rate.
    pub fps_limited_by_link: bool,
    /// The WHIP publish, if one runs.
    pub publish: Option<PublishSnapshot>,
    /// What the publish sends, kbps.
    pub publish_kbps: f32,
}

/// What the worker tells the GUI.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// The sources, with small thumbnails by source id.
    Sources(Vec<SourceInfo>, Vec<(String, Thumbnail)>),
    /// Listing failed (e.g. no X server).
    SourcesFailed(String),
    /// Sharing started.
    Started {
        /// The link (it carries the share's token).
        link: Secret,
        /// The port actually used.
        port: u16,
    },
    /// Starting failed.
    StartFailed(String),
    /// Live figures.
    Status(Status),
    /// The share ended; `Some` when it ended on an error.
    Stopped(Option<String>),
    /// The WHIP publish could not start.
    PublishFailed(String),
}

/// "Publish to a server": a WHIP endpoint (RFC 9725) beside the link. The
/// URL and token are not saved (either may carry a stream key).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PublishForm {
    /// Publish while sharing.
    pub on: bool,
    /// The WHIP endpoint URL.
    pub url: Secret,
    /// Its bearer token (may be empty).
    pub token: Secret,
}

impl PublishForm {
    /// The publish to start, or why it cannot start.
    pub fn config(&self) -> Result<WhipConfig, String> {
        peep_transport::whip::protocol::parse_endpoint(self.url.expose()).map_err(|e| e.message)?;
        let token = (!self.token.expose().trim().is_empty()).then(|| Secret::new(self.token.expose().trim()));
        Ok(WhipConfig { url: Secret::new(self.url.expose().trim()), token })
    }
}

/// What a banner offers to do about its problem.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BannerAction {
    /// The shared window went away: choose another source.
    PickAnotherSource,
    /// Dismiss.
    Dismiss,
}

/// An inline message with a way forward.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Banner {
    /// What happened and what to do.
    pub text: String,
    /// The button it offers.
    pub action: BannerAction,
    /// Whether it is an error (red) or information.
    pub error: bool,
}

/// The GUI's state.
#[derive(Debug, Clone)]
pub struct Model {
    /// Share phase.
    pub phase: Phase,
    /// Listed sources.
    pub sources: Vec<SourceInfo>,
    /// Selected source id.
    pub selected: Option<String>,
    /// Persisted settings (quality, fps, port, password on/off, last source).
    pub settings: Settings,
    /// This run's password.
    pub password: Secret,
    /// The link while sharing (it carries the share's token).
    pub link: Option<Secret>,
    /// The port in use while sharing.
    pub port_in_use: Option<u16>,
    /// The inline message, if any.
    pub banner: Option<Banner>,
    /// Latest live figures.
    pub status: Status,
    /// Sparkline history: fps, kbps, encode ms.
    pub history: [VecDeque<f32>; 3],
    /// Whether the preview window is open.
    pub preview_open: bool,
    /// Publishing to a media server.
    pub publish: PublishForm,
    /// Settings changed since the last save.
    pub settings_dirty: bool,
}

impl Model {
    /// A model starting from saved settings, with this run's password.
    pub fn new(settings: Settings, password: Secret) -> Self {
        Self {
            phase: Phase::Idle,
            sources: Vec::new(),
            selected: None,
            settings,
            password,
            link: None,
            port_in_use: None,
            banner: None,
            status: Status::default(),
            history: Default::default(),
            preview_open: false,
            publish: PublishForm::default(),
            settings_dirty: false,
        }
    }

    /// Sources as the picker shows them (the synthetic source only in developer mode).
    pub fn visible_sources(&self) -> Vec<SourceInfo> {
        let mut list = self.sources.clone();
        if self.settings.developer {
            list.push(SourceInfo {
                id: SYNTHETIC_ID.to_owned(),
                kind: SourceKind::Display,
                name: "Synthetic test screen".to_owned(),
                app: None,
                x: 0,
                y: 0,
                width: 1920,
                height: 1080,
                primary: false,
            });
        }
        list
    }

    /// Selects a source.
    pub fn select(&mut self, id: &str) {
        if let Some(s) = self.visible_sources().into_iter().find(|s| s.id == id) {
            self.selected = Some(s.id);
            self.settings.last_source_name = Some(s.name);
            self.settings_dirty = true;
        }
    }

    /// Turns the developer source on or off.
    pub fn set_developer(&mut self, on: bool) {
        self.settings.developer = on;
        self.settings_dirty = true;
        if !on && self.selected.as_deref() == Some(SYNTHETIC_ID) {
            self.selected = None;
        }
    }

    /// The user pressed Start.
    pub fn start(&mut self) -> Option<Command> {
        if self.phase != Phase::Idle {
            return None;
        }
        let Some(source) = self.selected.clone() else {
            self.banner = Some(Banner {
                text: "Pick a screen or window to share.".into(),
                action: BannerAction::Dismiss,
                error: false,
            });
            return None;
        };
        let publish = match self.publish.on.then(|| self.publish.config()) {
            Some(Err(why)) => {
                self.banner = Some(Banner {
                    text: format!("Cannot publish to the server: {why}"),
                    action: BannerAction::Dismiss,
                    error: true,
                });
                return None;
            }
            Some(Ok(config)) => Some(config),
            None => None,
        };
        self.phase = Phase::Starting;
        self.banner = None;
        Some(Command::Start {
            source,
            quality: self.settings.quality.clone(),
            fps: self.settings.fps,
            port: self.settings.port,
            password: self.settings.password_on.then(|| self.password.clone()),
            publish,
        })
    }

    /// The user switched "Publish to a server" on or off; applies live
    /// while sharing. Switching on needs a usable URL.
    pub fn set_publish_on(&mut self, on: bool) -> Option<Command> {
        if self.publish.on == on {
            return None;
        }
        let config = if on {
            match self.publish.config() {
                Ok(c) => Some(c),
                Err(why) => {
                    self.banner = Some(Banner {
                        text: format!("Cannot publish to the server: {why}"),
                        action: BannerAction::Dismiss,
                        error: true,
                    });
                    return None;
                }
            }
        } else {
            None
        };
        self.publish.on = on;
        if !on {
            self.status.publish = None;
        }
        (self.phase == Phase::Sharing).then_some(Command::Publish(config))
    }

    /// The user edited the server URL (used when publishing starts).
    pub fn set_publish_url(&mut self, url: String) {
        self.publish.url = Secret::new(url);
    }

    /// The user edited the token (used when publishing starts).
    pub fn set_publish_token(&mut self, token: String) {
        self.publish.token = Secret::new(token);
    }

    /// The user pressed Stop (or closed the window).
    pub fn stop(&mut self) -> Option<Command> {
        match self.phase {
            Phase::Sharing | Phase::Starting => {
                self.phase = Phase::Stopping;
                Some(Command::Stop)
            }
            Phase::Idle | Phase::Stopping => None,
        }
    }

    /// The user chose a quality preset; applies live while sharing.
    pub fn set_quality(&mut self, name: &str) -> Option<Command> {
        if self.settings.quality == name || crate::presets::quality(name).is_none() {
            return None;
        }
        self.settings.quality = name.to_owned();
        self.settings_dirty = true;
        (self.phase == Phase::Sharing).then(|| Command::SetQuality(name.to_owned()))
    }

    /// The user chose a frame rate; applies live while sharing.
    pub fn set_fps(&mut self, fps: u32) -> Option<Command> {
        if self.settings.fps == fps || fps == 0 {
            return None;
        }
        self.settings.fps = fps;
        self.settings_dirty = true;
        (self.phase == Phase::Sharing).then_some(Command::SetFps(fps))
    }

    /// The user switched the password on or off; applies live while sharing.
    pub fn set_password_on(&mut self, on: bool) -> Option<Command> {
        if self.settings.password_on == on {
            return None;
        }
        self.settings.password_on = on;
        self.settings_dirty = true;
        (self.phase == Phase::Sharing).then(|| Command::SetPassword(on.then(|| self.password.clone())))
    }

    /// The user changed the port (applies to the next share).
    pub fn set_port(&mut self, port: u16) {
        if port != 0 && port != self.settings.port {
            self.settings.port = port;
            self.settings_dirty = true;
        }
    }

    /// The user kicked a viewer.
    pub fn kick(&mut self, id: &str) -> Command {
        self.status.viewers.retain(|v| v.id != id);
        Command::Kick(id.to_owned())
    }

    /// The user opened or closed the preview.
    pub fn set_preview(&mut self, open: bool) -> Option<Command> {
        (self.preview_open != open).then(|| {
            self.preview_open = open;
            Command::Preview(open)
        })
    }

    /// The user pressed a banner's button.
    pub fn banner_action(&mut self) {
        if let Some(b) = self.banner.take()
            && b.action == BannerAction::PickAnotherSource
        {
            self.selected = None;
        }
    }

    /// Applies a worker event.
    pub fn apply(&mut self, event: Event) {
        match event {
            Event::Sources(sources, _) => {
                self.sources = sources;
                let visible = self.visible_sources();
                let still_there = self.selected.as_ref().is_some_and(|id| visible.iter().any(|s| &s.id == id));
                if !still_there {
                    // The remembered source by name, else the primary display.
                    let by_name = self
                        .settings
                        .last_source_name
                        .as_ref()
                        .and_then(|name| visible.iter().find(|s| &s.name == name));
                    let primary = visible.iter().find(|s| s.primary);
                    self.selected = by_name.or(primary).map(|s| s.id.clone());
                }
            }
            Event::SourcesFailed(reason) => {
                self.sources.clear();
                self.banner = Some(Banner {
                    text: format!(
                        "Cannot list screens and windows: {reason}. The test source is available in developer mode."
                    ),
                    action: BannerAction::Dismiss,
                    error: true,
                });
            }
            Event::Started { link, port } => {
                self.phase = Phase::Sharing;
                self.link = Some(link);
                self.port_in_use = Some(port);
                if port != self.settings.port {
                    self.banner = Some(Banner {
                        text: format!("Port {} is in use, so Peep is using port {port}.", self.settings.port),
                        action: BannerAction::Dismiss,
                        error: false,
                    });
                }
            }
            Event::StartFailed(reason) => {
                self.phase = Phase::Idle;
                self.banner = Some(Banner {
                    text: format!("Could not start sharing: {reason}"),
                    action: BannerAction::Dismiss,
                    error: true,
                });
            }
            Event::PublishFailed(reason) => {
                self.publish.on = false;
                self.banner = Some(Banner {
                    text: format!("Publishing to the server failed: {reason}"),
                    action: BannerAction::Dismiss,
                    error: true,
                });
            }
            Event::Status(status) => {
                if let Some(p) = status.publish.as_ref().filter(|p| p.state == PublishState::Failed && self.publish.on)
                {
                    // Given up (wrong token or URL): say why; switching it on again retries.
                    self.publish.on = false;
                    self.banner = Some(Banner {
                        text: format!("Publishing to {} failed: {}", p.server, p.message.as_deref().unwrap_or("?")),
                        action: BannerAction::Dismiss,
                        error: true,
                    });
                }
                for (h, v) in self.history.iter_mut().zip([status.fps, status.kbps, status.encode_ms]) {
                    if h.len() == HISTORY {
                        h.pop_front();
                    }
                    h.push_back(v);
                }
                self.status = status;
            }
            Event::Stopped(error) => {
                self.phase = Phase::Idle;
                self.link = None;
                self.port_in_use = None;
                self.status = Status::default();
                self.preview_open = false;
                self.banner = error.map(|e| {
                    if e.contains("source gone") {
                        Banner {
                            text: format!("Sharing stopped: {e}. Pick another screen or window."),
                            action: BannerAction::PickAnotherSource,
                            error: true,
                        }
                    } else {
                        Banner { text: format!("Sharing stopped: {e}"), action: BannerAction::Dismiss, error: true }
                    }
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(id: &str, name: &str, primary: bool) -> SourceInfo {
        SourceInfo {
            id: id.into(),
            kind: if id.starts_with("window") { SourceKind::Window } else { SourceKind::Display },
            name: name.into(),
            app: None,
            x: 0,
            y: 0,
            width: 800,
            height: 600,
            primary,
        }
    }

    fn model() -> Model {
        let mut m = Model::new(Settings::default(), "pw".into());
        m.apply(Event::Sources(
            vec![
                source("screen", "Whole screen", false),
                source("monitor:M", "M", true),
                source("window:0x5", "Editor", false),
            ],
            vec![],
        ));
        m
    }

    #[test]
    fn secrets_never_show_in_debug_output() {
        let (password, token) = ("pw-0b5cure", "5ec12e7700112233445566778899aabb");
        let link = format!("http://192.0.2.1:8080/s/{token}");
        let mut m = Model::new(Settings { password_on: true, ..Settings::default() }, password.into());
        m.apply(Event::Sources(vec![source("screen", "Whole screen", true)], vec![]));
        let start = m.start().expect("start");
        let started = Event::Started { link: link.as_str().into(), port: 8080 };
        m.apply(started.clone());
        assert_eq!(m.link.as_ref().map(Secret::expose), Some(link.as_str()), "the model does hold the link");
        let set = m.set_password_on(false).into_iter().chain(m.set_password_on(true)).collect::<Vec<_>>();
        assert_eq!(set.len(), 2, "{set:?}");
        for debug in [format!("{m:?}"), format!("{start:?}"), format!("{started:?}"), format!("{set:?}")] {
            assert!(!debug.contains(password) && !debug.contains(token), "a secret in Debug output: {debug}");
        }
    }

    fn publish_snapshot(state: PublishState, message: Option<&str>) -> PublishSnapshot {
        PublishSnapshot {
            state,
            server: "sfu.example:7080".into(),
            message: message.map(Into::into),
            live_for: None,
            retry_in: None,
            publishes: 1,
            ice_restarts: 0,
            bytes_sent: 0,
            frames_sent: 0,
            rtt: None,
            estimate_bps: 0,
            remb_bps: 0,
            keyframe_requests: 0,
            ice_servers: 0,
        }
    }

    #[test]
    fn publish_to_a_server_at_start_and_live() {
        let mut m = model();
        assert_eq!(m.set_publish_on(true), None);
        assert!(!m.publish.on && m.banner.as_ref().is_some_and(|b| b.error), "no URL yet: {:?}", m.banner);
        m.set_publish_url("https://sfu.example/whip/KEY-123 ".into());
        m.set_publish_token("tok-456".into());
        assert_eq!(m.set_publish_on(true), None, "not sharing: remembered for the start");
        assert!(m.publish.on);
        let Some(Command::Start { publish: Some(config), .. }) = m.start() else { panic!("start with publish") };
        assert_eq!(config.url.expose(), "https://sfu.example/whip/KEY-123", "trimmed");
        assert_eq!(config.token.as_ref().map(Secret::expose), Some("tok-456"));
        m.apply(Event::Started { link: "l".into(), port: 8080 });
        assert_eq!(m.set_publish_on(false), Some(Command::Publish(None)), "stopped live");
        let Some(Command::Publish(Some(_))) = m.set_publish_on(true) else { panic!("started live") };
        m.set_publish_token(String::new());
        assert_eq!(m.publish.config().map(|c| c.token), Ok(None), "an empty token sends none");
        let debug = format!("{m:?}");
        assert!(!debug.contains("KEY-123") && !debug.contains("tok-456"), "{debug}");
        // The server refuses: a banner says why, and switching on again retries.
        let failed = publish_snapshot(PublishState::Failed, Some("HTTP 403 Forbidden; check the token"));
        m.apply(Event::Status(Status { publish: Some(failed), ..Status::default() }));
        assert!(!m.publish.on);
        assert!(m.banner.as_ref().is_some_and(|b| b.text.contains("sfu.example:7080") && b.text.contains("403")));
        m.set_publish_url("ftp://nope".into());
        assert_eq!(m.set_publish_on(true), None, "a bad URL is caught before anything is sent");
        assert!(m.banner.as_ref().is_some_and(|b| b.text.contains("http://")), "{:?}", m.banner);
        m.apply(Event::PublishFailed("the WHIP URL is not usable".into()));
        assert!(m.banner.as_ref().is_some_and(|b| b.text.contains("not usable")));
    }

    #[test]
    fn start_stop_state_machine() {
        let mut m = model();
        assert_eq!(m.selected.as_deref(), Some("monitor:M"), "primary display by default");
        assert_eq!(m.stop(), None, "nothing to stop");
        let Some(Command::Start { source, quality, fps, port, password, publish }) = m.start() else { panic!("start") };
        assert_eq!((source.as_str(), quality.as_str(), fps, port, password), ("monitor:M", "balanced", 30, 8080, None));
        assert_eq!(publish, None);
        assert_eq!(m.phase, Phase::Starting);
        assert_eq!(m.start(), None, "no double start");
        m.apply(Event::Started { link: "http://x/s/t".into(), port: 8080 });
        assert_eq!(m.phase, Phase::Sharing);
        assert_eq!(m.link.as_ref().map(Secret::expose), Some("http://x/s/t"));
        assert_eq!(m.stop(), Some(Command::Stop));
        assert_eq!(m.phase, Phase::Stopping);
        m.apply(Event::Stopped(None));
        assert_eq!((m.phase, m.link.clone(), m.banner.clone()), (Phase::Idle, None, None));
    }

    #[test]
    fn presets_apply_live_only_while_sharing() {
        let mut m = model();
        assert_eq!(m.set_quality("sharp"), None, "idle: remembered for the next share");
        assert_eq!(m.settings.quality, "sharp");
        assert_eq!(m.set_quality("nonsense"), None);
        let _ = m.start();
        m.apply(Event::Started { link: "l".into(), port: 8080 });
        assert_eq!(m.set_quality("low"), Some(Command::SetQuality("low".into())));
        assert_eq!(m.set_fps(60), Some(Command::SetFps(60)));
        assert_eq!(m.set_fps(60), None, "unchanged");
        assert_eq!(m.set_password_on(true), Some(Command::SetPassword(Some("pw".into()))));
        assert_eq!(m.set_password_on(false), Some(Command::SetPassword(None)));
        assert!(m.settings_dirty);
    }

    #[test]
    fn error_banners_offer_a_way_forward() {
        let mut m = model();
        m.select("window:0x5");
        let _ = m.start();
        m.apply(Event::Started { link: "l".into(), port: 8081 });
        let b = m.banner.clone().expect("port banner");
        assert!(b.text.contains("Port 8080 is in use") && b.text.contains("8081"), "{b:?}");
        m.apply(Event::Stopped(Some("source gone: window 0x5 was closed".into())));
        let b = m.banner.clone().expect("banner");
        assert_eq!(b.action, BannerAction::PickAnotherSource);
        assert!(b.text.contains("Pick another"), "{b:?}");
        m.banner_action();
        assert_eq!(m.selected, None);
        assert_eq!(m.start(), None, "nothing selected");
        assert!(m.banner.as_ref().is_some_and(|b| b.text.contains("Pick a screen")));
        m.apply(Event::StartFailed("no capture permission".into()));
        assert!(m.banner.as_ref().is_some_and(|b| b.error && b.text.contains("no capture permission")));
    }

    #[test]
    fn viewer_list_and_history_update() {
        let mut m = model();
        let viewer = |id: &str| ViewerSnapshot {
            id: id.into(),
            remote: "127.0.0.1:5".parse().expect("addr"),
            codec: peep_transport::VideoCodec::H264,
            state: peep_transport::ViewerState::Connected,
            connected_for: std::time::Duration::from_secs(3),
            rtt: None,
            loss: 0.0,
            estimate_bps: 1,
            bytes_sent: 2,
            frames_sent: 3,
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
        };
        for i in 0..(HISTORY + 10) {
            m.apply(Event::Status(Status {
                viewers: vec![viewer("a"), viewer("b")],
                fps: i as f32,
                ..Status::default()
            }));
        }
        assert_eq!(m.status.viewers.len(), 2);
        assert_eq!(m.history[0].len(), HISTORY, "bounded");
        assert_eq!(m.history[0].back(), Some(&((HISTORY + 9) as f32)));
        assert_eq!(m.kick("a"), Command::Kick("a".into()));
        assert_eq!(m.status.viewers.len(), 1);
    }

    #[test]
    fn remembered_source_is_found_by_name_and_developer_source_is_hidden() {
        let mut m =
            Model::new(Settings { last_source_name: Some("Editor".into()), ..Settings::default() }, "pw".into());
        m.apply(Event::Sources(vec![source("monitor:M", "M", true), source("window:0x9", "Editor", false)], vec![]));
        assert_eq!(m.selected.as_deref(), Some("window:0x9"), "window ids change between runs; names do not");
        assert!(!m.visible_sources().iter().any(|s| s.id == SYNTHETIC_ID));
        m.set_developer(true);
        m.select(SYNTHETIC_ID);
        assert_eq!(m.selected.as_deref(), Some(SYNTHETIC_ID));
        m.set_developer(false);
        assert_eq!(m.selected, None);
    }
}
