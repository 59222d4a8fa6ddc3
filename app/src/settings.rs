//! Settings that persist between runs, by name, in the platform config
//! directory (`~/.config/peep/settings.json` on Linux). Saved when changed;
//! a missing or unreadable file gives first-run defaults.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Longest source name kept (window titles can be anything).
pub const MAX_SOURCE_NAME_CHARS: usize = 512;

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
            Ok(bytes) => Self::from_json(&bytes).unwrap_or_else(|e| {
                tracing::warn!("ignoring unreadable settings file {}: {e}", path.display());
                Self::default()
            }),
            Err(_) => Self::default(),
        }
    }

    /// Parses a settings file's contents; values out of range are brought
    /// back in (see [`Settings::sanitized`]). Missing fields take defaults.
    ///
    /// # Errors
    /// Not JSON, or a field of the wrong type.
    pub fn from_json(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice::<Self>(bytes).map(Self::sanitized)
    }

    /// The file's contents.
    pub fn to_json(&self) -> Vec<u8> {
        // Plain strings, numbers and booleans always serialise.
        serde_json::to_vec_pretty(self).expect("settings serialise")
    }

    /// Brings values an edited or corrupt file may hold back into range:
    /// frames per second 1–240 (0 means the default), a known quality
    /// preset, a source name of at most [`MAX_SOURCE_NAME_CHARS`].
    pub fn sanitized(mut self) -> Self {
        self.fps = match self.fps {
            0 => Self::default().fps,
            fps => fps.min(240),
        };
        if crate::presets::quality(&self.quality).is_none() {
            self.quality = Self::default().quality;
        }
        if let Some(name) = &mut self.last_source_name
            && name.chars().count() > MAX_SOURCE_NAME_CHARS
        {
            *name = name.chars().take(MAX_SOURCE_NAME_CHARS).collect();
        }
        self
    }

    /// Saves settings atomically (write to a temporary file, then rename).
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, self.to_json())?;
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
        std::fs::write(&path, br#"{"fps": 0, "quality": "ultra", "last_source_name": null}"#).expect("write");
        let loaded = Settings::load(&path);
        assert_eq!((loaded.fps, loaded.quality.as_str()), (30, crate::presets::DEFAULT_QUALITY), "out of range");
        std::fs::write(&path, br#"{"fps": 100000}"#).expect("write");
        assert_eq!(Settings::load(&path).fps, 240);
        let _ = std::fs::remove_dir_all(dir);
    }
}
