//! H.264 codec registration and payload-type choice.

use rtc::peer_connection::configuration::media_engine::MIME_TYPE_H264;
use rtc::rtp_transceiver::rtp_sender::{RTCPFeedback, RTCRtpCodec, RTCRtpCodecParameters};

/// Every H.264 profile-level-id Chromium offers to receive (it has no High
/// profile in its receive list). `rtc`'s matcher compares packetization-mode
/// and the profile bytes strictly, so each variant is registered, in both
/// packetization modes.
pub const PROFILE_LEVEL_IDS: [&str; 4] = ["42e01f", "42001f", "4d001f", "f4001f"];

/// The codecs to register, constrained baseline with packetization-mode 1 first.
pub fn h264_codecs() -> Vec<RTCRtpCodecParameters> {
    let mut codecs = Vec::new();
    let mut payload_type = 102u8;
    for plid in PROFILE_LEVEL_IDS {
        for mode in [1, 0] {
            codecs.push(RTCRtpCodecParameters {
                rtp_codec: RTCRtpCodec {
                    mime_type: MIME_TYPE_H264.to_owned(),
                    clock_rate: 90_000,
                    channels: 0,
                    sdp_fmtp_line: format!(
                        "level-asymmetry-allowed=1;packetization-mode={mode};profile-level-id={plid}"
                    ),
                    // nack, nack pli and transport-cc are added by the interceptor
                    // helpers; FIR is ours to declare.
                    rtcp_feedback: vec![RTCPFeedback { typ: "ccm".to_owned(), parameter: "fir".to_owned() }],
                },
                payload_type,
            });
            payload_type += 2;
        }
    }
    codecs
}

/// Picks the payload type to send with from the negotiated codecs: the
/// payloader emits FU-A, so packetization-mode 1 is required when offered;
/// constrained baseline (42e01f) is preferred, as that is what OpenH264 emits.
pub fn choose_payload_type(codecs: &[RTCRtpCodecParameters]) -> Option<u8> {
    let fmtp = |c: &RTCRtpCodecParameters| c.rtp_codec.sdp_fmtp_line.to_ascii_lowercase();
    let h264: Vec<_> = codecs.iter().filter(|c| c.rtp_codec.mime_type.eq_ignore_ascii_case(MIME_TYPE_H264)).collect();
    let mode1 = |c: &&&RTCRtpCodecParameters| fmtp(c).contains("packetization-mode=1");
    h264.iter()
        .filter(mode1)
        .find(|c| fmtp(c).contains("profile-level-id=42e01f"))
        .or_else(|| h264.iter().filter(mode1).find(|c| fmtp(c).contains("profile-level-id=42")))
        .or_else(|| h264.iter().find(mode1))
        .map(|c| c.payload_type)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn codec(pt: u8, fmtp: &str) -> RTCRtpCodecParameters {
        RTCRtpCodecParameters {
            rtp_codec: RTCRtpCodec {
                mime_type: MIME_TYPE_H264.into(),
                clock_rate: 90_000,
                channels: 0,
                sdp_fmtp_line: fmtp.into(),
                rtcp_feedback: vec![],
            },
            payload_type: pt,
        }
    }

    #[test]
    fn registers_every_variant_in_both_modes() {
        let codecs = h264_codecs();
        assert_eq!(codecs.len(), 8);
        for plid in PROFILE_LEVEL_IDS {
            for mode in ["packetization-mode=1", "packetization-mode=0"] {
                assert!(
                    codecs
                        .iter()
                        .any(|c| c.rtp_codec.sdp_fmtp_line.contains(plid) && c.rtp_codec.sdp_fmtp_line.contains(mode))
                );
            }
        }
    }

    #[test]
    fn prefers_constrained_baseline_mode_1_in_the_offerers_order() {
        // Chromium's order: 42001f first.
        let negotiated = [
            codec(102, "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42001f"),
            codec(104, "level-asymmetry-allowed=1;packetization-mode=0;profile-level-id=42001f"),
            codec(108, "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f"),
        ];
        assert_eq!(choose_payload_type(&negotiated), Some(108));
        assert_eq!(choose_payload_type(&negotiated[..2]), Some(102));
        assert_eq!(choose_payload_type(&negotiated[1..2]), None, "mode 0 only: we cannot send FU-A");
        assert_eq!(choose_payload_type(&[]), None);
    }
}
