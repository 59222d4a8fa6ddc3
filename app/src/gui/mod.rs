//! The desktop app (eframe/egui): pick a source, start, send the link, see
//! who watches and how the stream does, and preview what viewers see.
//!
//! Threads: the UI thread only draws and exchanges bounded-channel messages
//! with the worker ([`worker`]), which owns the sharing session; the
//! preview decoder ([`preview`]) runs on its own thread while the preview
//! window is open.

pub mod model;
pub mod preview;
pub mod view;
pub mod worker;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use eframe::egui;

use crate::settings::Settings;
use model::{Command, Event, Model, Phase};
use preview::Picture;
use view::Thumbnails;
use worker::Worker;

/// How often sources and thumbnails are refreshed while not sharing.
pub const SOURCE_REFRESH: Duration = Duration::from_secs(5);

/// Whether a display to open a window on exists.
pub fn display_available() -> bool {
    ["DISPLAY", "WAYLAND_DISPLAY"].iter().any(|v| std::env::var_os(v).is_some_and(|s| !s.is_empty()))
}

/// Opens Peep's window and runs until it is closed.
pub fn run() -> anyhow::Result<()> {
    let options = eframe::NativeOptions {
        viewport: egui::ViewportBuilder::default().with_title("Peep").with_inner_size([960.0, 640.0]),
        ..eframe::NativeOptions::default()
    };
    eframe::run_native("Peep", options, Box::new(|cc| Ok(Box::new(PeepApp::new(&cc.egui_ctx)?))))
        .map_err(|e| anyhow::anyhow!("cannot open the window: {e}"))
}

/// The eframe app: the model, the worker and the textures.
pub struct PeepApp {
    model: Model,
    worker: Worker,
    settings_path: Option<PathBuf>,
    thumbnails: Thumbnails,
    picture: Arc<Mutex<Picture>>,
    preview_texture: Option<(u64, egui::TextureHandle)>,
    last_refresh: Instant,
}

impl std::fmt::Debug for PeepApp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeepApp").field("phase", &self.model.phase).finish_non_exhaustive()
    }
}

fn password() -> peep_transport::Secret {
    peep_transport::Secret::new(peep_transport::auth::random_hex(5).unwrap_or_else(|_| "peep-share".into()))
}

impl PeepApp {
    /// Starts the worker and the preview decoder.
    pub fn new(ctx: &egui::Context) -> std::io::Result<Self> {
        let settings_path = Settings::default_path();
        let settings = settings_path.as_deref().map(Settings::load).unwrap_or_default();
        let (preview_tx, preview_rx) = crossbeam_channel::bounded(preview::PREVIEW_QUEUE);
        let picture = Arc::new(Mutex::new(Picture::default()));
        {
            let ctx = ctx.clone();
            preview::spawn(preview_rx, picture.clone(), move || ctx.request_repaint())?;
        }
        let worker = {
            let ctx = ctx.clone();
            Worker::spawn(preview_tx, move || ctx.request_repaint())?
        };
        // On Wayland the desktop's dialog chooses; nothing to list.
        let wayland = crate::sources::Backend::detect() == crate::sources::Backend::Portal;
        let model = if wayland {
            Model::with_portal(settings, password())
        } else {
            let _ = worker.commands.try_send(Command::RefreshSources);
            Model::new(settings, password())
        };
        Ok(Self {
            model,
            worker,
            settings_path,
            thumbnails: Thumbnails::new(),
            picture,
            preview_texture: None,
            last_refresh: Instant::now(),
        })
    }

    fn send(&mut self, command: Command) {
        if self.worker.commands.try_send(command).is_err() {
            self.model.banner = Some(model::Banner {
                text: "Peep is busy; try again in a moment.".into(),
                action: model::BannerAction::Dismiss,
                error: true,
            });
        }
    }

    fn drain_events(&mut self, ctx: &egui::Context) {
        while let Ok(event) = self.worker.events.try_recv() {
            match &event {
                Event::Sources(_, thumbs) => {
                    for (id, t) in thumbs {
                        self.thumbnails.insert(id.clone(), view::texture(ctx, id, t));
                    }
                }
                Event::PortalChosen { thumbnail, .. } => {
                    self.thumbnails.remove(model::PORTAL_ID);
                    if let Some(t) = thumbnail {
                        self.thumbnails.insert(model::PORTAL_ID.into(), view::texture(ctx, model::PORTAL_ID, t));
                    }
                }
                Event::PortalThumbnail(t) => {
                    self.thumbnails.insert(model::PORTAL_ID.into(), view::texture(ctx, model::PORTAL_ID, t));
                }
                _ => {}
            }
            self.model.apply(event);
        }
    }

    fn preview_window(&mut self, ctx: &egui::Context) {
        if !self.model.preview_open {
            return;
        }
        let picture = self.picture.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if picture.generation > 0 && self.preview_texture.as_ref().is_none_or(|(g, _)| *g != picture.generation) {
            let image = egui::ColorImage::from_rgba_unmultiplied([picture.width, picture.height], &picture.rgba);
            let texture = ctx.load_texture("preview", image, egui::TextureOptions::LINEAR);
            self.preview_texture = Some((picture.generation, texture));
        }
        let status = format!(
            "{:.0} kbps | {} | {} frames decoded",
            self.model.status.kbps, self.model.settings.quality, picture.frames_decoded
        );
        let texture = self.preview_texture.as_ref().map(|(_, t)| t.clone());
        let mut close = false;
        ctx.show_viewport_immediate(
            egui::ViewportId::from_hash_of("peep-preview"),
            egui::ViewportBuilder::default()
                .with_title("Peep preview - what viewers see")
                .with_inner_size([800.0, 500.0]),
            |ui, _class| {
                egui::CentralPanel::default().show(ui, |ui| {
                    ui.label(&status);
                    match &texture {
                        Some(t) => {
                            ui.add(egui::Image::new(t).shrink_to_fit());
                        }
                        None => {
                            ui.label("Waiting for the first keyframe...");
                        }
                    }
                });
                if ui.ctx().input(|i| i.viewport().close_requested()) {
                    close = true;
                }
            },
        );
        if close {
            if let Some(c) = self.model.set_preview(false) {
                self.send(c);
            }
            self.preview_texture = None;
        }
    }
}

impl eframe::App for PeepApp {
    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        let ctx = ui.ctx().clone();
        self.drain_events(&ctx);
        if self.model.phase == Phase::Idle
            && self.model.portal.is_none()
            && self.last_refresh.elapsed() >= SOURCE_REFRESH
        {
            self.last_refresh = Instant::now();
            self.send(Command::RefreshSources);
        }
        if ctx.input(|i| i.viewport().close_requested())
            && let Some(stop) = self.model.stop()
        {
            self.send(stop);
        }
        for command in view::draw(ui, &mut self.model, &self.thumbnails) {
            self.send(command);
        }
        self.preview_window(&ctx);
        if self.model.settings_dirty {
            self.model.settings_dirty = false;
            if let Some(path) = &self.settings_path
                && let Err(e) = self.model.settings.save(path)
            {
                tracing::warn!("cannot save settings to {}: {e}", path.display());
            }
        }
        // Repaint on events (the worker wakes us) and for the periodic refresh;
        // an idle window costs nothing in between.
        let next = match (self.model.phase, &self.model.portal) {
            (Phase::Idle, None) => SOURCE_REFRESH,
            (Phase::Idle, Some(_)) => worker::PORTAL_THUMBNAIL_PERIOD,
            _ => worker::STATUS_PERIOD,
        };
        ctx.request_repaint_after(next);
    }

    fn on_exit(&mut self, _gl: Option<&eframe::glow::Context>) {
        // Stop the share and tell viewers before the process ends.
        self.worker.shutdown();
    }
}
