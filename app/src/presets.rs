//! Named quality presets: a bitrate floor and ceiling for congestion control
//! and a resolution policy.

use peep_transport::BitrateRange;

/// A named quality preset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quality {
    /// Name used on the command line and in settings.
    pub name: &'static str,
    /// What it is for.
    pub description: &'static str,
    /// Congestion control never goes below this (bps).
    pub floor_bps: u32,
    /// …nor above this (bps).
    pub ceiling_bps: u32,
    /// Resolution policy: frames taller than this are halved until they
    /// fit; `None` keeps native size (sharpest text).
    pub max_height: Option<u32>,
}

impl Quality {
    /// The bitrate range.
    pub fn range(&self) -> BitrateRange {
        BitrateRange::new(self.floor_bps, self.ceiling_bps)
    }
}

/// The presets, lowest first.
pub const QUALITIES: [Quality; 4] = [
    Quality {
        name: "low",
        description: "slow links, phones on mobile data; at most 720 lines",
        floor_bps: 250_000,
        ceiling_bps: 1_000_000,
        max_height: Some(720),
    },
    Quality {
        name: "balanced",
        description: "a good default on a LAN; at most 1080 lines",
        floor_bps: 800_000,
        ceiling_bps: 4_000_000,
        max_height: Some(1080),
    },
    Quality {
        name: "sharp",
        description: "code and small text at native size",
        floor_bps: 1_500_000,
        ceiling_bps: 8_000_000,
        max_height: None,
    },
    Quality {
        name: "max",
        description: "native size, 4K, fast LAN",
        floor_bps: 3_000_000,
        ceiling_bps: 20_000_000,
        max_height: None,
    },
];

/// The default preset.
pub const DEFAULT_QUALITY: &str = "balanced";

/// Finds a preset by name.
pub fn quality(name: &str) -> Option<Quality> {
    QUALITIES.iter().copied().find(|q| q.name.eq_ignore_ascii_case(name))
}

/// The range for an explicit `--bitrate`: that ceiling, a quarter of it as the floor.
pub fn range_for_bitrate(bps: u32) -> BitrateRange {
    BitrateRange::new(bps / 4, bps)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_are_ordered_and_findable() {
        assert!(QUALITIES.windows(2).all(|w| w[0].ceiling_bps < w[1].ceiling_bps));
        assert!(QUALITIES.iter().all(|q| q.floor_bps < q.ceiling_bps));
        assert_eq!(quality("Sharp").map(|q| q.name), Some("sharp"));
        assert!(quality(DEFAULT_QUALITY).is_some());
        assert!(quality("ultra").is_none());
        assert_eq!(range_for_bitrate(4_000_000), BitrateRange::new(1_000_000, 4_000_000));
    }
}
