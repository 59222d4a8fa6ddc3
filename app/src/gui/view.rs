//! Drawing the main window from the [`Model`]. Returns the commands the
//! user's actions produced; sends nothing itself, so tests can drive it.

use std::collections::HashMap;

use eframe::egui::{self, Color32, RichText, Sense, Stroke, Vec2};

use super::model::{Command, Model, Phase};
use crate::presets::QUALITIES;

/// Frame-rate choices.
pub const FPS_CHOICES: [u32; 4] = [10, 15, 30, 60];

/// Source thumbnails by source id.
pub type Thumbnails = HashMap<String, egui::TextureHandle>;

/// Draws the window; returns the commands to send.
pub fn draw(ui: &mut egui::Ui, model: &mut Model, thumbnails: &Thumbnails) -> Vec<Command> {
    let mut commands = Vec::new();
    let ctx = ui.ctx().clone();
    // Keyboard: Ctrl+Enter start/stop, Ctrl+P preview, Ctrl+Q quit.
    if ctx.input_mut(|i| i.consume_key(egui::Modifiers::CTRL, egui::Key::Enter)) {
        commands.extend(if model.phase == Phase::Idle { model.start() } else { model.stop() });
    }
    if model.phase == Phase::Sharing && ctx.input_mut(|i| i.consume_key(egui::Modifiers::CTRL, egui::Key::P)) {
        let open = !model.preview_open;
        commands.extend(model.set_preview(open));
    }
    if ctx.input_mut(|i| i.consume_key(egui::Modifiers::CTRL, egui::Key::Q)) {
        ctx.send_viewport_cmd(egui::ViewportCommand::Close);
    }
    egui::Panel::top("banner").show(ui, |ui| {
        ui.horizontal(|ui| {
            ui.heading("Peep");
            ui.label(match model.phase {
                Phase::Idle => "not sharing",
                Phase::Starting => "starting...",
                Phase::Sharing => "sharing",
                Phase::Stopping => "stopping...",
            });
        });
        if let Some(banner) = model.banner.clone() {
            let colour =
                if banner.error { Color32::from_rgb(0xe0, 0x60, 0x60) } else { Color32::from_rgb(0x80, 0xb0, 0xe0) };
            ui.horizontal_wrapped(|ui| {
                ui.label(RichText::new(&banner.text).color(colour));
                let label = match banner.action {
                    super::model::BannerAction::PickAnotherSource => "Pick another source",
                    super::model::BannerAction::Dismiss => "Dismiss",
                };
                if ui.button(label).clicked() {
                    model.banner_action();
                }
            });
        }
    });
    egui::Panel::left("sources").resizable(true).default_size(260.0).show(ui, |ui| {
        ui.horizontal(|ui| {
            ui.strong("Share");
            if ui.small_button("Refresh").on_hover_text("Refresh").clicked() {
                commands.push(Command::RefreshSources);
            }
        });
        let mut developer = model.settings.developer;
        if ui.checkbox(&mut developer, "Developer: test source").changed() {
            model.set_developer(developer);
        }
        ui.separator();
        let enabled = model.phase == Phase::Idle;
        egui::ScrollArea::vertical().show(ui, |ui| {
            for source in model.visible_sources() {
                let selected = model.selected.as_deref() == Some(source.id.as_str());
                ui.add_enabled_ui(enabled, |ui| {
                    let response = ui
                        .horizontal(|ui| {
                            match thumbnails.get(&source.id) {
                                Some(t) => {
                                    ui.add(egui::Image::new(t).fit_to_exact_size(Vec2::new(96.0, 54.0)));
                                }
                                None => {
                                    ui.add_sized(Vec2::new(96.0, 54.0), egui::Label::new("(no picture)"));
                                }
                            }
                            ui.vertical(|ui| {
                                let name = match &source.app {
                                    Some(app) => format!("{} - {app}", source.name),
                                    None => source.name.clone(),
                                };
                                if ui.selectable_label(selected, name).on_hover_text(&source.id).clicked() {
                                    model.select(&source.id);
                                }
                                ui.small(format!("{}x{}", source.width, source.height));
                            });
                        })
                        .response;
                    if response.interact(Sense::click()).clicked() {
                        model.select(&source.id);
                    }
                });
            }
        });
    });
    egui::CentralPanel::default().show(ui, |ui| {
        settings_row(ui, model, &mut commands);
        publish_row(ui, model, &mut commands);
        ui.separator();
        match model.phase {
            Phase::Idle => {
                let ready = model.selected.is_some();
                if ui.add_enabled(ready, egui::Button::new("Start sharing")).on_hover_text("Ctrl+Enter").clicked() {
                    commands.extend(model.start());
                }
            }
            Phase::Starting => {
                ui.label("Starting...");
            }
            Phase::Stopping => {
                ui.label("Stopping, telling viewers...");
            }
            Phase::Sharing => {
                if ui.button("Stop sharing").on_hover_text("Ctrl+Enter").clicked() {
                    commands.extend(model.stop());
                }
                sharing(ui, model, &mut commands);
            }
        }
    });
    commands
}

fn settings_row(ui: &mut egui::Ui, model: &mut Model, commands: &mut Vec<Command>) {
    ui.horizontal_wrapped(|ui| {
        let label = ui.label("Quality");
        let mut quality = model.settings.quality.clone();
        let combo = egui::ComboBox::from_id_salt("quality").selected_text(&quality).show_ui(ui, |ui| {
            for q in QUALITIES {
                ui.selectable_value(&mut quality, q.name.to_owned(), q.name).on_hover_text(format!(
                    "{}: {}-{} kbps",
                    q.description,
                    q.floor_bps / 1000,
                    q.ceiling_bps / 1000
                ));
            }
        });
        combo.response.labelled_by(label.id);
        commands.extend(model.set_quality(&quality));
        let label = ui.label("Frame rate");
        let mut fps = model.settings.fps;
        let combo = egui::ComboBox::from_id_salt("fps").selected_text(format!("{fps} fps")).show_ui(ui, |ui| {
            for f in FPS_CHOICES {
                ui.selectable_value(&mut fps, f, format!("{f} fps"));
            }
        });
        combo.response.labelled_by(label.id);
        commands.extend(model.set_fps(fps));
        let label = ui.label("Port");
        let mut port = model.settings.port;
        ui.add_enabled(model.phase == Phase::Idle, egui::DragValue::new(&mut port).range(1024..=65535))
            .labelled_by(label.id);
        model.set_port(port);
        let mut password_on = model.settings.password_on;
        if ui.checkbox(&mut password_on, "Password").changed() {
            commands.extend(model.set_password_on(password_on));
        }
        if model.settings.password_on {
            ui.monospace(model.password.expose());
        }
    });
}

/// "Publish to a server" (WHIP): on/off, URL and token. The URL and token
/// are fixed while publishing (switch off, edit, switch on).
fn publish_row(ui: &mut egui::Ui, model: &mut Model, commands: &mut Vec<Command>) {
    ui.horizontal_wrapped(|ui| {
        let mut on = model.publish.on;
        let hint = "Also send one stream to a media server with WHIP (Janus, LiveKit ingress, mediamtx, \
                    OvenMediaEngine, Cloudflare Stream), where any number of people can watch";
        if ui.checkbox(&mut on, "Publish to a server").on_hover_text(hint).changed() {
            commands.extend(model.set_publish_on(on));
        }
        let editable = !model.publish.on;
        let label = ui.label("Server URL");
        let mut url = model.publish.url.expose().to_owned();
        let edit = egui::TextEdit::singleline(&mut url).hint_text("https://.../whip/...").desired_width(300.0);
        if ui.add_enabled(editable, edit).labelled_by(label.id).changed() {
            model.set_publish_url(url);
        }
        let label = ui.label("Token");
        let mut token = model.publish.token.expose().to_owned();
        let edit = egui::TextEdit::singleline(&mut token).password(true).desired_width(140.0);
        if ui.add_enabled(editable, edit).labelled_by(label.id).changed() {
            model.set_publish_token(token);
        }
    });
}

fn publish_status(ui: &mut egui::Ui, s: &super::model::Status) {
    let Some(p) = &s.publish else { return };
    ui.separator();
    ui.strong("Server (WHIP)");
    egui::Grid::new("publish").striped(true).show(ui, |ui| {
        for h in ["server", "state", "bitrate", "RTT", "estimate"] {
            ui.small(h);
        }
        ui.end_row();
        ui.label(&p.server);
        let state = match (p.state, p.retry_in) {
            (peep_transport::PublishState::Reconnecting, Some(d)) => {
                format!("reconnecting in {} s", d.as_secs_f64().ceil() as u64)
            }
            (state, _) => state.word().to_owned(),
        };
        ui.label(state);
        ui.label(format!("{:.0} kbps", s.publish_kbps));
        ui.label(p.rtt.map_or("-".into(), |r| format!("{:.1} ms", r.as_secs_f64() * 1e3)));
        ui.label(format!("{} kbps", p.estimate_bps / 1000));
        ui.end_row();
    });
    if let Some(message) = &p.message {
        ui.label(RichText::new(message).color(Color32::from_rgb(0xe0, 0xa0, 0x60)));
    }
}

fn sharing(ui: &mut egui::Ui, model: &mut Model, commands: &mut Vec<Command>) {
    if let Some(link) = model.link.as_ref().map(|l| l.expose().to_owned()) {
        ui.horizontal(|ui| {
            ui.monospace(&link);
            if ui.button("Copy link").clicked() {
                ui.ctx().copy_text(link.clone());
            }
        });
        qr_code(ui, &link);
    }
    let mut preview = model.preview_open;
    if ui.toggle_value(&mut preview, "Preview what viewers see").on_hover_text("Ctrl+P").changed() {
        commands.extend(model.set_preview(preview));
    }
    let s = model.status.clone();
    ui.label(format!(
        "{:.1} fps{} | {:.0} kbps (target {:.0}) | encode {:.1} ms | dropped {} | skipped for the link {} | unchanged {}",
        s.fps,
        if s.fps_limited_by_link { " (limited by the link)" } else { "" },
        s.kbps,
        s.target_kbps,
        s.encode_ms,
        s.dropped,
        s.dropper_skipped,
        s.skipped
    ));
    ui.horizontal(|ui| {
        for (i, name) in ["fps", "kbps", "encode ms"].iter().enumerate() {
            ui.vertical(|ui| {
                ui.small(*name);
                sparkline(ui, &model.history[i]);
            });
        }
    });
    publish_status(ui, &s);
    ui.separator();
    ui.strong(format!("Viewers ({})", s.viewers.len()));
    egui::Grid::new("viewers").striped(true).show(ui, |ui| {
        for h in ["address", "codec", "state", "RTT", "estimate", "queue", "rtx", "NACK/PLI", "connected", ""] {
            ui.small(h);
        }
        ui.end_row();
        for v in &s.viewers {
            ui.label(v.remote.ip().to_string());
            ui.label(v.codec.name()).on_hover_text(match v.codec {
                peep_transport::VideoCodec::H264 => "H.264: the browser plays H.264",
                _ => "this browser has no H.264: Peep runs a second encoder for it",
            });
            ui.label(format!("{:?}", v.state).to_lowercase());
            ui.label(v.rtt.map_or("-".into(), |r| format!("{:.1} ms", r.as_secs_f64() * 1e3)));
            ui.label(format!("{} kbps", v.estimate_bps / 1000));
            ui.label(format!("{} ms", v.queue_ms));
            ui.label(v.retransmissions.to_string());
            ui.label(format!("{}/{}", v.nacks, v.plis));
            ui.label(format!("{}s", v.connected_for.as_secs()));
            if ui.button("Kick").clicked() {
                commands.push(model.kick(&v.id));
            }
            ui.end_row();
        }
    });
}

fn sparkline(ui: &mut egui::Ui, values: &std::collections::VecDeque<f32>) {
    let (rect, _) = ui.allocate_exact_size(Vec2::new(140.0, 32.0), Sense::hover());
    let painter = ui.painter_at(rect);
    painter.rect_stroke(rect, 2.0, Stroke::new(1.0, Color32::DARK_GRAY), egui::StrokeKind::Inside);
    let max = values.iter().copied().fold(1e-3_f32, f32::max);
    let n = values.len().max(2) - 1;
    let points: Vec<egui::Pos2> = values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            egui::pos2(rect.left() + rect.width() * i as f32 / n as f32, rect.bottom() - rect.height() * (v / max))
        })
        .collect();
    painter.add(egui::Shape::line(points, Stroke::new(1.5, Color32::LIGHT_GREEN)));
}

fn qr_code(ui: &mut egui::Ui, link: &str) {
    let Ok(code) = qrcode::QrCode::new(link.as_bytes()) else { return };
    let width = code.width();
    let module = 3.0;
    let quiet = 4.0 * module;
    let side = width as f32 * module + 2.0 * quiet;
    let (rect, _) = ui.allocate_exact_size(Vec2::splat(side), Sense::hover());
    let painter = ui.painter_at(rect);
    painter.rect_filled(rect, 0.0, Color32::WHITE);
    for (i, colour) in code.to_colors().iter().enumerate() {
        if *colour == qrcode::Color::Dark {
            let (x, y) = ((i % width) as f32, (i / width) as f32);
            let min = rect.min + Vec2::new(quiet + x * module, quiet + y * module);
            painter.rect_filled(egui::Rect::from_min_size(min, Vec2::splat(module)), 0.0, Color32::BLACK);
        }
    }
}
