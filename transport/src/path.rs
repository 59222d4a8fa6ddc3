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

/// The selected pair's ICE round-trip time, from the stats report.
pub(crate) fn selected_rtt(report: &RTCStatsReport) -> Option<Duration> {
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
    (pair.current_round_trip_time.is_finite() && pair.current_round_trip_time > 0.0)
        .then(|| Duration::from_secs_f64(pair.current_round_trip_time.min(60.0)))
}

/// The selected candidate pair's path, from the ICE transport (the stats
/// report's candidate entries are not keyed the way its pairs refer to them
/// in rtc 0.21).
async fn selected_path(pc: &dyn webrtc::peer_connection::PeerConnection) -> Option<ViewerPath> {
    let sender = pc.get_senders().await.into_iter().next()?;
    let dtls = sender.transport().await.ok().flatten()?;
    let pair = dtls.ice_transport().get_selected_candidate_pair().await.ok().flatten()?;
    Some(path_of(pair.local().typ, Some(pair.remote().typ)))
}

/// `relay` when either end of the pair is a TURN relay candidate.
pub(crate) fn path_of(local: RTCIceCandidateType, remote: Option<RTCIceCandidateType>) -> ViewerPath {
    if local == RTCIceCandidateType::Relay || remote == Some(RTCIceCandidateType::Relay) {
        ViewerPath::Relay
    } else {
        ViewerPath::Direct
    }
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
            if let Some(path) = selected_path(v.peer.pc.as_ref()).await {
                v.stats.set_path(path);
            }
            let report = v.peer.pc.get_stats(Instant::now(), StatsSelector::None).await;
            if let Some(rtt) = selected_rtt(&report) {
                v.stats.ice_rtt_us.store(u64::try_from(rtt.as_micros()).unwrap_or(u64::MAX), Ordering::Relaxed);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relay_on_either_end_means_relay() {
        use RTCIceCandidateType::{Host, Prflx, Relay, Srflx};
        assert_eq!(path_of(Host, Some(Srflx)), ViewerPath::Direct);
        assert_eq!(path_of(Srflx, None), ViewerPath::Direct);
        assert_eq!(path_of(Relay, Some(Host)), ViewerPath::Relay);
        assert_eq!(path_of(Host, Some(Relay)), ViewerPath::Relay);
        assert_eq!(path_of(Prflx, Some(Relay)), ViewerPath::Relay);
    }
}
