//! [`RembTap`]: reads an SFU's REMB (receiver estimated maximum bitrate)
//! into an atomic, so the rate controller can respect the server's cap
//! (e.g. a Janus room's `bitrate`). Passes every packet on untouched.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use rtc::interceptor::{Interceptor, Packet, StreamInfo, TaggedPacket};
use rtc::rtcp::payload_feedbacks::receiver_estimated_maximum_bitrate::ReceiverEstimatedMaximumBitrate;
use rtc::sansio::Protocol;
use rtc::shared::error::Error as RtcError;

/// Stores the latest REMB bitrate (bps) of incoming RTCP.
pub struct RembTap {
    remb_bps: Arc<AtomicU64>,
    read: VecDeque<TaggedPacket>,
    write: VecDeque<TaggedPacket>,
}

impl RembTap {
    /// A tap writing into `remb_bps` (0 until a REMB arrives).
    pub fn new(remb_bps: Arc<AtomicU64>) -> Self {
        Self { remb_bps, read: VecDeque::new(), write: VecDeque::new() }
    }
}

impl Protocol<TaggedPacket, TaggedPacket, ()> for RembTap {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = RtcError;
    type Time = Instant;

    fn handle_read(&mut self, msg: TaggedPacket) -> Result<(), RtcError> {
        if let Packet::Rtcp(packets) = &msg.message.packet {
            for p in packets {
                if let Some(remb) = p.as_any().downcast_ref::<ReceiverEstimatedMaximumBitrate>()
                    && remb.bitrate.is_finite()
                    && remb.bitrate >= 0.0
                {
                    self.remb_bps.store(remb.bitrate as u64, Ordering::Relaxed);
                }
            }
        }
        self.read.push_back(msg);
        Ok(())
    }

    fn poll_read(&mut self) -> Option<TaggedPacket> {
        self.read.pop_front()
    }

    fn handle_write(&mut self, msg: TaggedPacket) -> Result<(), RtcError> {
        self.write.push_back(msg);
        Ok(())
    }

    fn poll_write(&mut self) -> Option<TaggedPacket> {
        self.write.pop_front()
    }
}

impl Interceptor for RembTap {
    fn bind_local_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_local_stream(&mut self, _info: &StreamInfo) {}
    fn bind_remote_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_remote_stream(&mut self, _info: &StreamInfo) {}
}
