//! VP9 RTP payloading (RFC 9628, flexible mode) that tells receivers what
//! each frame depends on.
//!
//! Why not `rtc`'s own VP9 payloader: it sends every frame with P=0 ("not
//! inter-picture predicted") and no reference list, so a receiver's jitter
//! buffer treats every frame as a keyframe. Measured in Firefox 153 on a
//! local link: every frame counted as a keyframe, 9 frames dropped and 4
//! freezes in 4 s, and 12 of 28 frames showing a corrupt picture (the frame
//! marks did not read back), because a delta frame was decoded after the
//! frame it references had been dropped. Here a keyframe (read from the VP9
//! uncompressed header) goes out with P=0 and every other frame with P=1
//! and one reference: the previous picture (`P_DIFF` = 1). libvpx's
//! real-time single-layer stream references only earlier pictures, so
//! depending on the previous one covers them transitively: a receiver that
//! missed a frame waits for the next keyframe (and asks for one) instead of
//! showing garbage.

use bytes::{BufMut, Bytes, BytesMut};
use rtc::rtp::packetizer::Payloader;

/// Descriptor bytes: I|P|L|F|B|E|V|Z, M + 15-bit picture ID, and for delta
/// frames one P_DIFF|N byte.
const MAX_HEADER_BYTES: usize = 4;

/// Whether a VP9 frame is a keyframe, from its uncompressed header
/// (frame_marker, profile, show_existing_frame, frame_type).
pub fn is_keyframe(frame: &[u8]) -> bool {
    let Some(&b0) = frame.first() else { return false };
    if b0 >> 6 != 0b10 {
        return false; // not a VP9 frame marker
    }
    let profile = ((b0 >> 5) & 1) | (((b0 >> 4) & 1) << 1);
    // Profile 3 has one reserved bit before show_existing_frame.
    let (show_existing, frame_type) =
        if profile == 3 { ((b0 >> 2) & 1, (b0 >> 1) & 1) } else { ((b0 >> 3) & 1, (b0 >> 2) & 1) };
    show_existing == 0 && frame_type == 0
}

/// Flexible-mode VP9 payloader with picture IDs and one reference per
/// delta frame (see the module docs).
#[derive(Debug, Clone)]
pub struct Vp9Payloader {
    picture_id: u16,
}

impl Vp9Payloader {
    /// A payloader whose first picture ID is `first_picture_id` (15 bits;
    /// pick it at random so a reconnecting viewer sees a new sequence).
    pub fn new(first_picture_id: u16) -> Self {
        Self { picture_id: first_picture_id & 0x7fff }
    }
}

impl Payloader for Vp9Payloader {
    fn payload(&mut self, mtu: usize, frame: &Bytes) -> rtc::shared::error::Result<Vec<Bytes>> {
        if frame.is_empty() || mtu <= MAX_HEADER_BYTES {
            return Ok(Vec::new());
        }
        let delta = !is_keyframe(frame);
        let header_len = if delta { 4 } else { 3 };
        let chunk = mtu - header_len;
        let count = frame.len().div_ceil(chunk);
        let mut payloads = Vec::with_capacity(count);
        for (i, part) in frame.chunks(chunk).enumerate() {
            let mut out = BytesMut::with_capacity(header_len + part.len());
            // I=1 (picture ID), F=1 (flexible), P for delta frames.
            let mut first = 0x80 | 0x10;
            if delta {
                first |= 0x40;
            }
            if i == 0 {
                first |= 0x08; // B: beginning of the frame
            }
            if i + 1 == count {
                first |= 0x04; // E: end of the frame
            }
            out.put_u8(first);
            out.put_u16(0x8000 | self.picture_id); // M=1: 15-bit picture ID
            if delta {
                out.put_u8(1 << 1); // P_DIFF = 1, N = 0 (no further reference)
            }
            out.put_slice(part);
            payloads.push(out.freeze());
        }
        self.picture_id = (self.picture_id + 1) & 0x7fff;
        Ok(payloads)
    }

    fn clone_to(&self) -> Box<dyn Payloader> {
        Box::new(self.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtc::rtp::codec::vp9::Vp9Packet;
    use rtc::rtp::packetizer::Depacketizer;

    /// A profile-0 keyframe and delta frame header (as libvpx writes them).
    const KEY: u8 = 0b1000_0010; // marker 10, profile 0, show_existing 0, frame_type 0 (key)
    const DELTA: u8 = 0b1000_0110; // frame_type 1

    #[test]
    fn keyframes_are_read_from_the_uncompressed_header() {
        assert!(is_keyframe(&[KEY, 0x49, 0x83, 0x42]));
        assert!(!is_keyframe(&[DELTA, 0x00]));
        assert!(!is_keyframe(&[0b1000_1000]), "show_existing_frame is not a keyframe");
        assert!(!is_keyframe(&[]));
        assert!(!is_keyframe(&[0x00]), "no frame marker");
        // Profile 1 (low bit set) and profile 3 (one more reserved bit).
        assert!(is_keyframe(&[0b1010_0000]));
        assert!(!is_keyframe(&[0b1010_0100]));
        assert!(is_keyframe(&[0b1011_0000]));
        assert!(!is_keyframe(&[0b1011_0010]));
    }

    fn depacketize(payload: &Bytes) -> (Vp9Packet, Bytes) {
        let mut p = Vp9Packet::default();
        let data = p.depacketize(payload).expect("a valid VP9 descriptor");
        (p, data)
    }

    #[test]
    fn delta_frames_reference_the_previous_picture_and_keyframes_nothing() {
        let mut pay = Vp9Payloader::new(0x7ffe);
        let key = Bytes::from([&[KEY][..], &[7u8; 2500]].concat());
        let parts = pay.payload(1200, &key).expect("payload");
        assert_eq!(parts.len(), 3);
        let mut rebuilt = Vec::new();
        for (i, part) in parts.iter().enumerate() {
            assert!(part.len() <= 1200);
            let (p, data) = depacketize(part);
            assert!(p.i && p.f && !p.p, "keyframe: flexible mode, not inter-predicted");
            assert_eq!((p.b, p.e), (i == 0, i == 2));
            assert_eq!(p.picture_id, 0x7ffe);
            assert!(p.pdiff.is_empty());
            rebuilt.extend_from_slice(&data);
        }
        assert_eq!(rebuilt, key, "the frame survives the round trip");

        for expected_id in [0x7fff, 0] {
            let delta = Bytes::from([&[DELTA][..], &[9u8; 100]].concat());
            let parts = pay.payload(1200, &delta).expect("payload");
            assert_eq!(parts.len(), 1);
            let (p, data) = depacketize(&parts[0]);
            assert!(p.i && p.f && p.p && p.b && p.e);
            assert_eq!(p.picture_id, expected_id, "15-bit picture IDs wrap");
            assert_eq!(p.pdiff, [1], "depends on the previous picture");
            assert_eq!(data, delta);
        }
    }

    #[test]
    fn nothing_to_send_for_empty_frames_or_tiny_mtus() {
        let mut pay = Vp9Payloader::new(1);
        assert!(pay.payload(1200, &Bytes::new()).expect("ok").is_empty());
        assert!(pay.payload(4, &Bytes::from_static(&[KEY, 1, 2])).expect("ok").is_empty());
        let parts = pay.payload(5, &Bytes::from_static(&[DELTA, 1, 2])).expect("ok");
        assert_eq!(parts.len(), 3, "one byte per packet still makes progress");
    }
}
