//! A viewer's outgoing video track, per codec.
//!
//! H.264 and VP8 use webrtc's sample track, whose payloaders are right for
//! them. VP9 uses an RTP track fed by Peep's own [`crate::vp9::Vp9Payloader`]
//! (see that module for why), with the same packetizer, sequence numbers
//! and RTP timestamps the sample track would use.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use rtc::media::Sample;
use rtc::media_stream::MediaStreamTrack;
use rtc::rtp::packetizer::{Packetizer, new_packetizer};
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_local::static_sample::TrackLocalStaticSample;
use webrtc::media_stream::track_local::{TrackLocal, TrackLocalEvent};

use crate::codecs::VideoCodec;
use crate::error::{Result, TransportError};
use crate::hub::lock;
use crate::vp9::Vp9Payloader;

/// What webrtc's sample track uses as the largest RTP packet.
const RTP_OUTBOUND_MTU: usize = 1200;
const CLOCK_RATE: u32 = 90_000;

fn webrtc_err(e: impl std::fmt::Display) -> TransportError {
    TransportError::WebRtc(e.to_string())
}

pub(crate) enum ViewerTrack {
    Sample(Arc<TrackLocalStaticSample>),
    Packetized { rtp: Arc<TrackLocalStaticRTP>, packetizer: Mutex<Box<dyn Packetizer>> },
}

impl ViewerTrack {
    /// A track for `codec` sending on `ssrc` (the track's only encoding).
    pub fn new(codec: VideoCodec, now: Instant, track: MediaStreamTrack, ssrc: u32) -> Result<Self> {
        if codec != VideoCodec::Vp9 {
            return Ok(Self::Sample(Arc::new(TrackLocalStaticSample::new(now, track).map_err(webrtc_err)?)));
        }
        let first_picture_id =
            crate::auth::random_hex(2).ok().and_then(|h| u16::from_str_radix(&h, 16).ok()).unwrap_or(1);
        let packetizer = new_packetizer(
            now,
            RTP_OUTBOUND_MTU,
            0, // set per packet once negotiated
            ssrc,
            Box::new(Vp9Payloader::new(first_picture_id)),
            Box::new(rtc::rtp::sequence::new_random_sequencer()),
            CLOCK_RATE,
        );
        Ok(Self::Packetized {
            rtp: Arc::new(TrackLocalStaticRTP::new(track)),
            packetizer: Mutex::new(Box::new(packetizer)),
        })
    }

    /// The track to add to the peer connection.
    pub fn local(&self) -> Arc<dyn TrackLocal> {
        match self {
            Self::Sample(t) => t.clone(),
            Self::Packetized { rtp, .. } => rtp.clone(),
        }
    }

    /// Sends one frame: packetized, RTP time advanced by its duration.
    pub async fn write(&self, ssrc: u32, payload_type: u8, sample: &Sample) -> Result<()> {
        match self {
            Self::Sample(t) => t.sample_writer(ssrc, payload_type).write_sample(sample).await.map_err(webrtc_err),
            Self::Packetized { rtp, packetizer } => {
                let samples = (sample.duration.as_secs_f64() * f64::from(CLOCK_RATE)) as u32;
                let data: &Bytes = &sample.data;
                let packets = lock(packetizer).packetize(sample.timestamp, data, samples).map_err(webrtc_err)?;
                for mut packet in packets {
                    packet.header.payload_type = payload_type;
                    rtp.write_rtp(packet).await.map_err(webrtc_err)?;
                }
                Ok(())
            }
        }
    }

    /// The next event from the connection (RTCP such as PLI/FIR).
    pub async fn poll(&self) -> Option<TrackLocalEvent> {
        match self {
            Self::Sample(t) => t.poll().await,
            Self::Packetized { rtp, .. } => rtp.poll().await,
        }
    }
}
