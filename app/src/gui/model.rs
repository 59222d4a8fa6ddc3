//! The GUI's state and decisions, without I/O: the view feeds it user
//! actions and worker events and sends the [`Command`]s it returns.

use std::collections::VecDeque;

use peep_capture::{SourceInfo, SourceKind, Thumbnail};
use peep_transport::{Knock, PublishSnapshot, PublishState, RelayStatus, Secret, ViewerSnapshot, WhipConfig};

use crate::settings::Settings;

/// The id of the synthetic source in the picker.
pub const SYNTHETIC_ID: &str = "synthetic:typing";
/// The id of the portal's choice (Wayland).
pub const PORTAL_ID: &str = "portal";
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

/// On Wayland the desktop's dialog chooses: where that choice stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortalChoice {
    /// Nothing chosen yet (Start opens the dialog, or restores the last
    /// choice without one).
    NotChosen,
    /// The desktop's dialog is open.
    Choosing,
    /// Chosen; the worker keeps the stream open for the live thumbnail.
    Chosen {
        /// What the portal says it is, e.g. `screen 1920x1080`.
        description: String,
    },
}

/// What the GUI asks of the worker.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// List sources (with thumbnails).
    RefreshSources,
    /// Ask the desktop's portal what to share (Wayland). `restore`: let a
    /// saved restore token bring back the last choice without a dialog;
    /// `false` ("Change…") always shows the dialog.
    ChooseSource {
        /// Use the saved restore token.
        restore: bool,
    },
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
        /// Share over the internet through this relay.
        relay: Option<String>,
        /// Ask to join.
        admit: bool,
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
    /// Turn "ask to join" on or off live.
    SetAdmit(bool),
    /// Let a waiting viewer in (`true`) or turn it away.
    Admit(u64, bool),
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
    /// The relay connection, when sharing over the internet.
    pub relay: Option<RelayStatus>,
    /// Viewers waiting to be let in.
    pub knocks: Vec<Knock>,
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
    /// The portal's dialog returned a choice (with a first thumbnail when
    /// the stream delivered a frame in time).
    PortalChosen {
        /// What the portal says was chosen.
        description: String,
        /// A picture from the stream.
        thumbnail: Option<Thumbnail>,
    },
    /// A new live thumbnail of the portal's choice.
    PortalThumbnail(Thumbnail),
    /// The user closed the desktop's dialog without choosing.
    Cancelled,
    /// Asking the portal failed, or the chosen source went away before
    /// sharing started.
    PortalFailed(String),
    /// Live figures (boxed: the largest event by far, sent every 250 ms).
    Status(Box<Status>),
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

/// Start of the banner shown while the relay connection is down (cleared
/// when it is back).
pub const RELAY_LOST: &str = "Relay connection lost";

/// The banner for a failed start, with relay failures in their own words.
fn start_failed_banner(reason: &str) -> Banner {
    let text = if let Some(why) = reason.strip_prefix("relay unreachable: ") {
        format!(
            "Relay unreachable: {why}. Check the relay URL and your connection, or untick \"Over the internet\" to share on this network only."
        )
    } else if let Some(why) = reason.strip_prefix("relay refused: ") {
        format!("Relay refused: {why}.")
    } else {
        format!("Could not start sharing: {reason}")
    };
    Banner { text, action: BannerAction::Dismiss, error: true }
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
    /// `Some` on Wayland, where the desktop's dialog replaces the list.
    pub portal: Option<PortalChoice>,
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
            portal: None,
        }
    }

    /// A model for a Wayland session: the desktop's dialog chooses.
    pub fn with_portal(settings: Settings, password: Secret) -> Self {
        let mut model = Self::new(settings, password);
        model.portal = Some(PortalChoice::NotChosen);
        model.selected = Some(PORTAL_ID.to_owned());
        model
    }

    /// The user pressed "Choose what to share…" (`change: false`) or
    /// "Change…" (`change: true`, always the dialog).
    pub fn choose(&mut self, change: bool) -> Option<Command> {
        if self.phase != Phase::Idle || matches!(self.portal, None | Some(PortalChoice::Choosing)) {
            return None;
        }
        self.portal = Some(PortalChoice::Choosing);
        self.selected = Some(PORTAL_ID.to_owned());
        self.banner = None;
        Some(Command::ChooseSource { restore: !change })
    }

    /// Sources as the picker shows them (the synthetic source only in
    /// developer mode; on Wayland only the portal's choice and that).
    pub fn visible_sources(&self) -> Vec<SourceInfo> {
        let mut list = if self.portal.is_some() {
            vec![SourceInfo {
                id: PORTAL_ID.to_owned(),
                kind: SourceKind::Display,
                name: "Chosen in the desktop's dialog".to_owned(),
                app: None,
                x: 0,
                y: 0,
                width: 0,
                height: 0,
                primary: true,
            }]
        } else {
            self.sources.clone()
        };
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
            if s.id != PORTAL_ID {
                self.settings.last_source_name = Some(s.name);
                self.settings_dirty = true;
            }
            self.selected = Some(s.id);
        }
    }

    /// Turns the developer source on or off.
    pub fn set_developer(&mut self, on: bool) {
        self.settings.developer = on;
        self.settings_dirty = true;
        if !on && self.selected.as_deref() == Some(SYNTHETIC_ID) {
            self.selected = self.portal.is_some().then(|| PORTAL_ID.to_owned());
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
        let relay_url = self.settings.relay_url.trim().to_owned();
        if self.settings.relay_on && relay_url.is_empty() {
            self.banner = Some(Banner {
                text: "Enter the relay's URL (e.g. https://relay.example.org) to share over the internet.".into(),
                action: BannerAction::Dismiss,
                error: false,
            });
            return None;
        }
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
            relay: self.settings.relay_on.then_some(relay_url),
            admit: self.settings.admit,
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

    /// The user ticked or unticked "Over the internet" (next share).
    pub fn set_relay_on(&mut self, on: bool) {
        if self.settings.relay_on != on {
            self.settings.relay_on = on;
            self.settings_dirty = true;
        }
    }

    /// The user edited the relay URL (next share).
    pub fn set_relay_url(&mut self, url: &str) {
        if self.settings.relay_url != url {
            self.settings.relay_url = url.to_owned();
            self.settings_dirty = true;
        }
    }

    /// The user switched "ask to join"; applies live while sharing.
    pub fn set_admit(&mut self, on: bool) -> Option<Command> {
        if self.settings.admit == on {
            return None;
        }
        self.settings.admit = on;
        self.settings_dirty = true;
        if !on {
            self.status.knocks.clear();
        }
        (self.phase == Phase::Sharing).then_some(Command::SetAdmit(on))
    }

    /// The user let a waiting viewer in or turned it away.
    pub fn decide(&mut self, id: u64, admit: bool) -> Command {
        self.status.knocks.retain(|k| k.id != id);
        Command::Admit(id, admit)
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
            // On Wayland "another source" is a new choice in the dialog.
            self.selected = self.portal.is_some().then(|| PORTAL_ID.to_owned());
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
            Event::PortalChosen { description, .. } => {
                self.portal = Some(PortalChoice::Chosen { description });
                self.selected = Some(PORTAL_ID.to_owned());
            }
            Event::PortalThumbnail(_) => {}
            Event::Cancelled => {
                if self.phase == Phase::Starting {
                    self.phase = Phase::Idle;
                }
                if self.portal.is_some() {
                    self.portal = Some(PortalChoice::NotChosen);
                }
                self.banner = Some(Banner {
                    text: "You cancelled the selection; nothing is shared.".into(),
                    action: BannerAction::Dismiss,
                    error: false,
                });
            }
            Event::PortalFailed(reason) => {
                if self.portal.is_some() {
                    self.portal = Some(PortalChoice::NotChosen);
                }
                self.banner = Some(Banner {
                    text: format!("{reason}. Choose again."),
                    action: BannerAction::Dismiss,
                    error: true,
                });
            }
            Event::StartFailed(reason) => {
                self.phase = Phase::Idle;
                self.banner = Some(start_failed_banner(&reason));
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
                self.relay_banner(status.relay.as_ref());
                self.status = *status;
            }
            Event::Stopped(error) => {
                self.phase = Phase::Idle;
                if self.portal.is_some() {
                    // The stream went with the share; the next start restores it.
                    self.portal = Some(PortalChoice::NotChosen);
                }
                self.link = None;
                self.port_in_use = None;
                self.status = Status::default();
                self.preview_open = false;
                self.banner = error.map(|e| {
                    if e.contains("source gone") && self.portal.is_some() {
                        Banner {
                            text: format!("Sharing stopped: {e}. Choose what to share again."),
                            action: BannerAction::PickAnotherSource,
                            error: true,
                        }
                    } else if e.contains("source gone") {
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

impl Model {
    /// Shows, updates or clears the relay banner from the relay's state.
    fn relay_banner(&mut self, relay: Option<&RelayStatus>) {
        let ours =
            self.banner.as_ref().is_some_and(|b| b.text.starts_with(RELAY_LOST) || b.text.starts_with("Relay refused"));
        match relay {
            Some(RelayStatus::Reconnecting { attempt, error, .. }) => {
                self.banner = Some(Banner {
                    text: format!(
                        "{RELAY_LOST} ({error}); reconnecting, attempt {attempt}. Viewers already watching keep watching; the link stays the same."
                    ),
                    action: BannerAction::Dismiss,
                    error: false,
                });
            }
            Some(RelayStatus::Failed(why)) if !ours => {
                let why = why.strip_prefix("relay refused: ").unwrap_or(why);
                self.banner = Some(Banner {
                    text: format!(
                        "Relay refused: {why}. New viewers cannot join; viewers already watching keep watching."
                    ),
                    action: BannerAction::Dismiss,
                    error: true,
                });
            }
            Some(RelayStatus::Connected { .. }) if ours => self.banner = None,
            _ => {}
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
        m.apply(Event::Status(Box::new(Status { publish: Some(failed), ..Status::default() })));
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
        let Some(Command::Start { source, quality, fps, port, password, relay, admit, publish }) = m.start() else {
            panic!("start")
        };
        assert_eq!((source.as_str(), quality.as_str(), fps, port, password), ("monitor:M", "balanced", 30, 8080, None));
        assert_eq!((relay, admit, publish), (None, false, None));
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
            path: None,
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
            m.apply(Event::Status(Box::new(Status {
                viewers: vec![viewer("a"), viewer("b")],
                fps: i as f32,
                ..Status::default()
            })));
        }
        assert_eq!(m.status.viewers.len(), 2);
        assert_eq!(m.history[0].len(), HISTORY, "bounded");
        assert_eq!(m.history[0].back(), Some(&((HISTORY + 9) as f32)));
        assert_eq!(m.kick("a"), Command::Kick("a".into()));
        assert_eq!(m.status.viewers.len(), 1);
    }

    #[test]
    fn wayland_choice_goes_through_the_portal() {
        let mut m = Model::with_portal(Settings::default(), "pw".into());
        assert_eq!(m.selected.as_deref(), Some(PORTAL_ID), "Start works before any choice (the dialog opens then)");
        assert_eq!(m.choose(false), Some(Command::ChooseSource { restore: true }));
        assert_eq!(m.portal, Some(PortalChoice::Choosing));
        assert_eq!(m.choose(false), None, "one dialog at a time");
        m.apply(Event::Cancelled);
        assert_eq!(m.portal, Some(PortalChoice::NotChosen));
        let b = m.banner.clone().expect("banner");
        assert!(!b.error && b.text.contains("cancelled"), "{b:?}");
        let _ = m.choose(false);
        m.apply(Event::PortalChosen { description: "screen 640x480".into(), thumbnail: None });
        assert_eq!(m.portal, Some(PortalChoice::Chosen { description: "screen 640x480".into() }));
        assert_eq!(m.choose(true), Some(Command::ChooseSource { restore: false }), "Change… always asks");
        m.apply(Event::PortalChosen { description: "window".into(), thumbnail: None });
        let Some(Command::Start { source, .. }) = m.start() else { panic!("start") };
        assert_eq!(source, PORTAL_ID);
        assert_eq!(m.choose(true), None, "no new choice while starting");
        m.apply(Event::Started { link: "l".into(), port: 8080 });
        m.apply(Event::Stopped(Some("source gone: the screen cast ended".into())));
        assert_eq!(m.portal, Some(PortalChoice::NotChosen));
        let b = m.banner.clone().expect("banner");
        assert!(b.text.contains("Choose what to share again"), "{b:?}");
        m.banner_action();
        assert_eq!(m.selected.as_deref(), Some(PORTAL_ID));
        // A dialog cancelled at Start leaves the model idle.
        let _ = m.start();
        m.apply(Event::Cancelled);
        assert_eq!(m.phase, Phase::Idle);
    }

    #[test]
    fn over_the_internet_relay_banners_and_admission() {
        let mut m = model();
        m.set_relay_on(true);
        assert_eq!(m.start(), None, "no relay URL yet");
        assert!(m.banner.as_ref().is_some_and(|b| b.text.contains("Enter the relay's URL")));
        m.set_relay_url("https://relay.example.org");
        assert_eq!(m.set_admit(true), None, "idle: remembered");
        let Some(Command::Start { relay, admit, .. }) = m.start() else { panic!("start") };
        assert_eq!((relay.as_deref(), admit), (Some("https://relay.example.org"), true));
        assert!(m.settings_dirty && m.settings.relay_on);
        m.apply(Event::StartFailed("relay unreachable: Connection refused (os error 111)".into()));
        let b = m.banner.clone().expect("banner");
        assert!(b.error && b.text.starts_with("Relay unreachable: Connection refused"), "{b:?}");
        let _ = m.start();
        m.apply(Event::StartFailed("relay refused: too many shares from your address on this relay".into()));
        assert_eq!(
            m.banner.clone().map(|b| b.text),
            Some("Relay refused: too many shares from your address on this relay.".into())
        );
        let _ = m.start();
        m.apply(Event::Started { link: "https://relay.example.org/r/abc".into(), port: 8080 });
        let status = |relay: RelayStatus| Status { relay: Some(relay), ..Status::default() };
        m.apply(Event::Status(Box::new(status(RelayStatus::Reconnecting {
            link: "l".into(),
            attempt: 2,
            error: "connection reset".into(),
        }))));
        let b = m.banner.clone().expect("relay banner");
        assert!(!b.error && b.text.starts_with(RELAY_LOST) && b.text.contains("attempt 2"), "{b:?}");
        m.apply(Event::Status(Box::new(status(RelayStatus::Connected {
            link: "l".into(),
            whep: "w".into(),
            reconnects: 1,
        }))));
        assert_eq!(m.banner, None, "cleared once the room is back");
        m.apply(Event::Status(Box::new(status(RelayStatus::Failed(
            "relay refused: another connection reclaimed this room".into(),
        )))));
        assert!(m.banner.as_ref().is_some_and(|b| b.error && b.text.starts_with("Relay refused: another connection")));
        // Ask to join, live.
        let knock =
            Knock { id: 7, remote: "192.0.2.7".parse().expect("ip"), waiting: std::time::Duration::from_secs(1) };
        m.apply(Event::Status(Box::new(Status { knocks: vec![knock], ..Status::default() })));
        assert_eq!(m.decide(7, true), Command::Admit(7, true));
        assert!(m.status.knocks.is_empty());
        assert_eq!(m.set_admit(false), Some(Command::SetAdmit(false)));
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
