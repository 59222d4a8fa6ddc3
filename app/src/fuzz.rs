//! The bodies of the app's cargo-fuzz targets (`fuzz/`), replayed over
//! their seeds by `tests/fuzz_seeds.rs` (with every other crate's).

use crate::settings::{MAX_SOURCE_NAME_CHARS, Settings};

/// `fuzz/fuzz_targets/settings.rs`: a settings file as the app reads it
/// at start-up (`~/.config/peep/settings.json`, which the user or another
/// program may have edited).
///
/// Invariants: never a panic; what loads is in range (frames per second
/// 1–240, a known preset, a bounded source name) and survives a save and
/// a reload unchanged.
pub fn settings(data: &[u8]) {
    let Ok(s) = Settings::from_json(data) else { return };
    assert!((1..=240).contains(&s.fps), "fps {}", s.fps);
    assert!(crate::presets::quality(&s.quality).is_some(), "quality {:?}", s.quality);
    assert!(s.last_source_name.as_ref().is_none_or(|n| n.chars().count() <= MAX_SOURCE_NAME_CHARS));
    assert_eq!(Settings::from_json(&s.to_json()).ok().as_ref(), Some(&s), "round trip");
}

/// A target's body: one input in, a panic only on a broken invariant.
pub type Body = fn(&[u8]);

/// The app's targets by name (the directory names under `fuzz/seeds/`).
pub const TARGETS: &[(&str, Body)] = &[("settings", settings)];

/// Every crate's targets: the transport's, the encoder's and the app's.
pub fn all_targets() -> impl Iterator<Item = &'static (&'static str, Body)> {
    peep_transport::fuzz::TARGETS.iter().chain(peep_encode::fuzz::TARGETS).chain(TARGETS)
}
