//! Settings that persist between runs, by name, in the platform config
//! directory (`~/.config/peep/settings.json` on Linux). Saved when changed;
//! a missing or unreadable file gives first-run defaults.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// What Peep remembers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// Name of the last shared source (window titles and monitor names
    /// survive restarts; window ids do not).
    pub last_source_name: Option<String>,
    /// Quality preset name.
    pub quality: String,
    /// Frames per second.
    pub fps: u32,
    /// HTTP port.
    pub port: u16,
    /// Whether viewers need a password (the password itself is made anew
    /// each run and never stored).
    pub password_on: bool,
    /// Show the synthetic test source.
    pub developer: bool,
    /// Share over the internet through a relay.
    pub relay_on: bool,
    /// The relay's URL (`https://relay.example.org`).
    pub relay_url: String,
    /// Ask to join: viewers wait until let in.
    pub admit: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            last_source_name: None,
            quality: crate::presets::DEFAULT_QUALITY.to_owned(),
            fps: 30,
            port: 8080,
            password_on: false,
            developer: false,
            relay_on: false,
            relay_url: String::new(),
            admit: false,
        }
    }
}

impl Settings {
    /// The settings file in the platform config directory.
    pub fn default_path() -> Option<PathBuf> {
        directories::ProjectDirs::from("", "", "peep").map(|d| d.config_dir().join("settings.json"))
    }

    /// Loads settings; defaults when the file is missing or unreadable
    /// (a corrupt file is reported and replaced on the next save).
    pub fn load(path: &Path) -> Self {
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                tracing::warn!("ignoring unreadable settings file {}: {e}", path.display());
                Self::default()
            }),
            Err(_) => Self::default(),
        }
    }

    /// Saves settings atomically (write to a temporary file, then rename).
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?)?;
        std::fs::rename(tmp, path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_corrupt_files() {
        let dir = std::env::temp_dir().join(format!("peep-settings-{}", std::process::id()));
        let path = dir.join("sub/settings.json");
        assert_eq!(Settings::load(&path), Settings::default(), "first run");
        let s = Settings {
            last_source_name: Some("Terminal".into()),
            quality: "sharp".into(),
            fps: 60,
            port: 9000,
            password_on: true,
            developer: true,
            relay_on: true,
            relay_url: "https://relay.example.org".into(),
            admit: true,
        };
        s.save(&path).expect("save");
        assert_eq!(Settings::load(&path), s);
        std::fs::write(&path, b"{ not json").expect("write");
        assert_eq!(Settings::load(&path), Settings::default());
        std::fs::write(&path, br#"{"fps": 15}"#).expect("write");
        assert_eq!(Settings::load(&path).fps, 15, "missing fields take defaults");
        let _ = std::fs::remove_dir_all(dir);
    }
}
