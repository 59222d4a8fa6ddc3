//! Each viewer's media path (`direct` or `relay`) and ICE round-trip time,
//! read once a second from its peer connection's selected candidate pair.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use webrtc::peer_connection::{RTCIceCandidateType, RTCStatsReport, RTCStatsReportEntry, StatsSelector};

use crate::hub::{Shared, lock};
use crate::viewer::{ViewerPath, ViewerState};

/// How often paths are read.
pub const PATH_PERIOD: Duration = Duration::from_secs(1);

/// The selected pair's path and round-trip time, if ICE has selected one.
pub(crate) fn selected_path(report: &RTCStatsReport) -> Option<(ViewerPath, Option<Duration>)> {
    let by_selection =
        report.transport().map(|t| t.selected_candidate_pair_id.as_str()).filter(|id| !id.is_empty()).and_then(|id| {
            match report.get(id) {
                Some(RTCStatsReportEntry::IceCandidatePair(pair)) => Some(pair),
                _ => None,
            }
        });
    let pair = by_selection.or_else(|| {
        report.candidate_pairs().find(|p| {
            p.nominated
                && p.state == rtc::statistics::stats::ice_candidate_pair::RTCStatsIceCandidatePairState::Succeeded
        })
    })?;
    let kind = |id: &str| match report.get(id) {
        Some(RTCStatsReportEntry::LocalCandidate(c) | RTCStatsReportEntry::RemoteCandidate(c)) => {
            Some(c.candidate_type)
        }
        _ => None,
    };
    let (local, remote) = (kind(&pair.local_candidate_id)?, kind(&pair.remote_candidate_id)?);
    let path = if local == RTCIceCandidateType::Relay || remote == RTCIceCandidateType::Relay {
        ViewerPath::Relay
    } else {
        ViewerPath::Direct
    };
    let rtt = (pair.current_round_trip_time.is_finite() && pair.current_round_trip_time > 0.0)
        .then(|| Duration::from_secs_f64(pair.current_round_trip_time.min(60.0)));
    Some((path, rtt))
}

/// Reads every connected viewer's path until the share ends.
pub(crate) async fn watch(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(PATH_PERIOD);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tick.tick().await;
        let viewers: Vec<_> = lock(&shared.viewers)
            .values()
            .filter(|v| matches!(v.stats.state(), ViewerState::Connected | ViewerState::Disconnected))
            .cloned()
            .collect();
        for v in viewers {
            let report = v.peer.pc.get_stats(Instant::now(), StatsSelector::None).await;
            if let Some((path, rtt)) = selected_path(&report) {
                v.stats.set_path(path);
                if let Some(rtt) = rtt {
                    v.stats.ice_rtt_us.store(u64::try_from(rtt.as_micros()).unwrap_or(u64::MAX), Ordering::Relaxed);
                }
            }
        }
    }
}
