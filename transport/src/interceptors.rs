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
            let s = &self.stats;
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
                            let rtt =
                                ntp_compact_now().wrapping_sub(block.last_sender_report).wrapping_sub(block.delay);
                            // A "negative" RTT (clock jitter) wraps to a huge value: ignore it.
                            if rtt < 0x8000_0000 {
                                s.rtt_us.store(u64::from(rtt) * 1_000_000 / 65_536, Ordering::Relaxed);
                            }
                        }
                    }
                }
            }
        }
        Some(msg)
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
