//! Interceptors Peep adds to each viewer's RTP/RTCP chain.
//!
//! * [`RtcpTap`], wire-most, reads every incoming RTCP packet into the
//!   viewer's atomic stats: RTT and loss from receiver reports (the `rtc`
//!   0.21 stats leave them at zero), PLI/FIR/NACK counts.
//! * [`KeyframeRequestForwarder`], application-most, marks PLI and FIR for
//!   delivery to the local track, where the viewer task turns them into
//!   coalesced keyframe requests (without it they never leave the chain).
//!
//! Congestion control (estimator, pacer, NACK responder, header extensions)
//! is in `crate::sendside`.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use rtc::interceptor::{Attribute, Interceptor, Packet, StreamInfo, TaggedPacket};
use rtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtcp::receiver_report::ReceiverReport;
use rtc::rtcp::transport_feedbacks::transport_layer_nack::TransportLayerNack;
use rtc::sansio::Protocol;
use rtc::shared::error::Error as RtcError;

use crate::viewer::ViewerStats;

/// Middle 32 bits of the current NTP time (RFC 3550 compact form, 1/65536 s).
fn ntp_compact_now() -> u32 {
    let d = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() + 0x83AA_7E80; // 1900 → 1970
    let frac = (u64::from(d.subsec_nanos()) << 32) / 1_000_000_000;
    (((secs & 0xFFFF) << 16) | (frac >> 16)) as u32
}

/// Longest round-trip time taken from a receiver report, in compact NTP
/// units (1/65536 s): 60 s. Anything longer is a clock that jumped.
const MAX_RTT_NTP: u32 = 60 << 16;

/// A pass-through queue pair: the part every interceptor here shares.
#[derive(Default)]
struct Queues {
    read: VecDeque<TaggedPacket>,
    write: VecDeque<TaggedPacket>,
}

/// Implements `Protocol` and `Interceptor` for a type with a `queues: Queues`
/// field and an `on_read(&mut self, TaggedPacket) -> Option<TaggedPacket>`
/// method: incoming packets go through `on_read` (`None` drops them),
/// outgoing packets pass untouched.
macro_rules! read_side_interceptor {
    ($ty:ty) => {
        impl Protocol<TaggedPacket, TaggedPacket, ()> for $ty {
            type Rout = TaggedPacket;
            type Wout = TaggedPacket;
            type Eout = ();
            type Error = RtcError;
            type Time = Instant;

            fn handle_read(&mut self, msg: TaggedPacket) -> Result<(), RtcError> {
                if let Some(msg) = self.on_read(msg) {
                    self.queues.read.push_back(msg);
                }
                Ok(())
            }

            fn poll_read(&mut self) -> Option<TaggedPacket> {
                self.queues.read.pop_front()
            }

            fn handle_write(&mut self, msg: TaggedPacket) -> Result<(), RtcError> {
                self.queues.write.push_back(msg);
                Ok(())
            }

            fn poll_write(&mut self) -> Option<TaggedPacket> {
                self.queues.write.pop_front()
            }
        }

        impl Interceptor for $ty {
            fn bind_local_stream(&mut self, _info: &StreamInfo) {}
            fn unbind_local_stream(&mut self, _info: &StreamInfo) {}
            fn bind_remote_stream(&mut self, _info: &StreamInfo) {}
            fn unbind_remote_stream(&mut self, _info: &StreamInfo) {}
        }
    };
}

/// Reads incoming RTCP into a viewer's stats; passes everything on.
pub struct RtcpTap {
    stats: Arc<ViewerStats>,
    queues: Queues,
}

impl RtcpTap {
    /// A tap writing into `stats`.
    pub fn new(stats: Arc<ViewerStats>) -> Self {
        Self { stats, queues: Queues::default() }
    }
}

impl RtcpTap {
    fn on_read(&mut self, msg: TaggedPacket) -> Option<TaggedPacket> {
        if let Packet::Rtcp(packets) = &msg.message.packet {
            tap(&self.stats, packets, ntp_compact_now());
        }
        Some(msg)
    }
}

/// Reads one compound RTCP packet into a viewer's stats: PLI/FIR/NACK
/// counts, loss and RTT from receiver reports. `now_ntp` is the current
/// time as compact NTP (an input, so the RTT arithmetic is testable and
/// fuzzable with any clock, e.g. one that jumps).
pub(crate) fn tap(s: &ViewerStats, packets: &[Box<dyn rtc::rtcp::Packet>], now_ntp: u32) {
    for p in packets {
        let any = p.as_any();
        if any.is::<PictureLossIndication>() {
            s.pli.fetch_add(1, Ordering::Relaxed);
        } else if any.is::<FullIntraRequest>() {
            s.fir.fetch_add(1, Ordering::Relaxed);
        } else if any.is::<TransportLayerNack>() {
            s.nack.fetch_add(1, Ordering::Relaxed);
        } else if let Some(rr) = any.downcast_ref::<ReceiverReport>() {
            for block in &rr.reports {
                s.packets_lost.store(u64::from(block.total_lost), Ordering::Relaxed);
                s.fraction_lost_256.store(u32::from(block.fraction_lost), Ordering::Relaxed);
                if block.last_sender_report != 0 {
                    let rtt = now_ntp.wrapping_sub(block.last_sender_report).wrapping_sub(block.delay);
                    // A "negative" RTT (clock jitter, a backward clock
                    // jump) wraps to a huge value, a forward jump of the
                    // wall clock between report and answer gives an absurd
                    // one: ignore both.
                    if rtt <= MAX_RTT_NTP {
                        s.rtt_us.store(u64::from(rtt) * 1_000_000 / 65_536, Ordering::Relaxed);
                    }
                }
            }
        }
    }
}

read_side_interceptor!(RtcpTap);

/// Delivers PLI and FIR to the application; drops other RTCP at the chain's
/// end (as the default terminus would).
#[derive(Default)]
pub struct KeyframeRequestForwarder {
    queues: Queues,
}

impl KeyframeRequestForwarder {
    fn on_read(&mut self, mut msg: TaggedPacket) -> Option<TaggedPacket> {
        if let Packet::Rtcp(packets) = &msg.message.packet {
            let keep: Vec<Box<dyn rtc::rtcp::Packet>> = packets
                .iter()
                .filter(|p| p.as_any().is::<PictureLossIndication>() || p.as_any().is::<FullIntraRequest>())
                .cloned()
                .collect();
            if keep.is_empty() {
                return None;
            }
            msg.message.packet = Packet::Rtcp(keep);
            msg.message.add(Attribute::DeliverToApplication);
        }
        Some(msg)
    }
}
read_side_interceptor!(KeyframeRequestForwarder);

#[cfg(test)]
mod tests {
    use super::*;
    use rtc::rtcp::reception_report::ReceptionReport;

    fn rr(last_sender_report: u32, delay: u32) -> Vec<Box<dyn rtc::rtcp::Packet>> {
        vec![Box::new(ReceiverReport {
            ssrc: 1,
            reports: vec![ReceptionReport {
                ssrc: 2,
                fraction_lost: 64,
                total_lost: 7,
                last_sender_report,
                delay,
                ..Default::default()
            }],
            ..Default::default()
        })]
    }

    #[test]
    fn rtt_comes_from_the_report_and_ignores_clock_jumps() {
        let s = ViewerStats::new();
        // Sent at 1000.0 s, held 0.25 s by the receiver, answered at 1000.5 s: 250 ms.
        let at = |secs: f64| (secs * 65_536.0) as u32;
        tap(&s, &rr(at(1000.0), at(0.25)), at(1000.5));
        assert_eq!(s.rtt_us.load(Ordering::Relaxed), 250_000);
        assert_eq!((s.fraction_lost_256.load(Ordering::Relaxed), s.packets_lost.load(Ordering::Relaxed)), (64, 7));
        // The wall clock jumped an hour forward between report and answer.
        tap(&s, &rr(at(1000.0), at(0.25)), at(4600.5));
        assert_eq!(s.rtt_us.load(Ordering::Relaxed), 250_000, "a forward jump is not an RTT");
        // … or backwards.
        tap(&s, &rr(at(1000.0), at(0.25)), at(900.0));
        assert_eq!(s.rtt_us.load(Ordering::Relaxed), 250_000, "a backward jump is not an RTT");
        // No sender report answered yet: nothing to measure.
        tap(&s, &rr(0, 0), at(1000.0));
        assert_eq!(s.rtt_us.load(Ordering::Relaxed), 250_000);
    }
}
