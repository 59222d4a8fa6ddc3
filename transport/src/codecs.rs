//! Video codecs: what a viewer's offer supports, which one Peep sends it,
//! the codec registration for its peer connection, and the payload type.
//!
//! Negotiation is per viewer and happens before a peer connection exists:
//! [`offered_codecs`] reads the offer's video section, [`choose_codec`]
//! picks the first codec of the share's preference list (H.264 first) the
//! browser can take, and only that codec is registered for the viewer's
//! connection ([`codecs_for`]), so the answer names exactly what the viewer
//! will get. An offer with nothing usable gets [`no_common_codec_message`]
//! instead: a sentence that names what the browser offered and what would
//! fix it.

use rtc::peer_connection::configuration::media_engine::{MIME_TYPE_H264, MIME_TYPE_VP8, MIME_TYPE_VP9};
use rtc::rtp_transceiver::rtp_sender::{RTCPFeedback, RTCRtpCodec, RTCRtpCodecParameters};

/// A video codec Peep can send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub enum VideoCodec {
    /// H.264 constrained baseline, packetization-mode 1.
    #[serde(rename = "H.264")]
    H264,
    /// VP8.
    #[serde(rename = "VP8")]
    Vp8,
    /// VP9 profile 0.
    #[serde(rename = "VP9")]
    Vp9,
}

impl VideoCodec {
    /// Every codec, in the order of [`VideoCodec::index`].
    pub const ALL: [VideoCodec; 3] = [VideoCodec::H264, VideoCodec::Vp8, VideoCodec::Vp9];

    /// Human name: `"H.264"`, `"VP8"`, `"VP9"`.
    pub fn name(self) -> &'static str {
        match self {
            VideoCodec::H264 => "H.264",
            VideoCodec::Vp8 => "VP8",
            VideoCodec::Vp9 => "VP9",
        }
    }

    /// Position in [`VideoCodec::ALL`], for per-codec arrays.
    pub fn index(self) -> usize {
        self as usize
    }

    fn mime_type(self) -> &'static str {
        match self {
            VideoCodec::H264 => MIME_TYPE_H264,
            VideoCodec::Vp8 => MIME_TYPE_VP8,
            VideoCodec::Vp9 => MIME_TYPE_VP9,
        }
    }
}

impl std::fmt::Display for VideoCodec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A set of codecs (e.g. the codecs viewers are watching right now).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct CodecSet(u8);

impl CodecSet {
    /// No codec.
    pub const EMPTY: CodecSet = CodecSet(0);

    /// Adds a codec.
    pub fn insert(&mut self, codec: VideoCodec) {
        self.0 |= 1 << codec.index();
    }

    /// Whether `codec` is in the set.
    pub fn contains(self, codec: VideoCodec) -> bool {
        self.0 & (1 << codec.index()) != 0
    }

    /// Whether the set is empty.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The codecs in the set, in [`VideoCodec::ALL`] order.
    pub fn iter(self) -> impl Iterator<Item = VideoCodec> {
        VideoCodec::ALL.into_iter().filter(move |c| self.contains(*c))
    }
}

impl FromIterator<VideoCodec> for CodecSet {
    fn from_iter<T: IntoIterator<Item = VideoCodec>>(iter: T) -> Self {
        let mut set = CodecSet::EMPTY;
        for c in iter {
            set.insert(c);
        }
        set
    }
}

/// Peep's default order: H.264 (one encode serves most browsers, and it is
/// what the preview shows), then VP9 (measured far better than VP8 on
/// screen content at real-time speed: see `peep_encode::VpxConfig`), then
/// VP8, which every WebRTC browser must implement (RFC 7742).
pub const DEFAULT_PREFERENCE: [VideoCodec; 3] = [VideoCodec::H264, VideoCodec::Vp9, VideoCodec::Vp8];

/// Every H.264 profile-level-id Chromium offers to receive (it has no High
/// profile in its receive list). `rtc`'s matcher compares packetization-mode
/// and the profile bytes strictly, so each variant is registered, in both
/// packetization modes.
pub const PROFILE_LEVEL_IDS: [&str; 4] = ["42e01f", "42001f", "4d001f", "f4001f"];

/// FIR is ours to declare; nack, nack pli and transport-cc are added by the
/// interceptor helpers.
fn feedback() -> Vec<RTCPFeedback> {
    vec![RTCPFeedback { typ: "ccm".to_owned(), parameter: "fir".to_owned() }]
}

/// The H.264 codecs to register, constrained baseline with packetization-mode 1 first.
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
                    rtcp_feedback: feedback(),
                },
                payload_type,
            });
            payload_type += 2;
        }
    }
    codecs
}

/// The codecs to register for a viewer that gets `codec`.
pub fn codecs_for(codec: VideoCodec) -> Vec<RTCRtpCodecParameters> {
    let single = |payload_type, fmtp: &str| {
        vec![RTCRtpCodecParameters {
            rtp_codec: RTCRtpCodec {
                mime_type: codec.mime_type().to_owned(),
                clock_rate: 90_000,
                channels: 0,
                sdp_fmtp_line: fmtp.to_owned(),
                rtcp_feedback: feedback(),
            },
            payload_type,
        }]
    };
    match codec {
        VideoCodec::H264 => h264_codecs(),
        VideoCodec::Vp8 => single(96, ""),
        VideoCodec::Vp9 => single(98, "profile-id=0"),
    }
}

/// What a viewer's offer says it can receive, read from its first video section.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OfferedCodecs {
    /// Distinct codec names as offered (`H264`, `VP9`, `AV1`, …), in the
    /// offer's order, without repair formats (rtx, red, ulpfec, flexfec).
    pub names: Vec<String>,
    usable: CodecSet,
}

impl OfferedCodecs {
    /// Whether Peep can send `codec` to this viewer.
    pub fn usable(&self, codec: VideoCodec) -> bool {
        self.usable.contains(codec)
    }
}

/// Longest codec name kept from an offer (names are echoed in messages).
const MAX_NAME_CHARS: usize = 24;
/// Most distinct names kept from an offer.
const MAX_NAMES: usize = 16;

/// Reads the codecs of the offer's first video section. Never panics; an
/// offer without a video section offers nothing.
pub fn offered_codecs(sdp: &str) -> OfferedCodecs {
    let mut offered = OfferedCodecs::default();
    let mut in_video = false;
    let mut seen_video = false;
    // (payload type, codec name) and (payload type, fmtp) of the section.
    let mut rtpmaps: Vec<(&str, &str)> = Vec::new();
    let mut fmtps: Vec<(&str, &str)> = Vec::new();
    for line in sdp.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("m=") {
            if in_video {
                break; // only the first video section
            }
            in_video = rest.starts_with("video") && !seen_video;
            seen_video |= in_video;
            continue;
        }
        if !in_video {
            continue;
        }
        if let Some(rest) = line.strip_prefix("a=rtpmap:") {
            if let Some((pt, encoding)) = rest.split_once(' ') {
                let name = encoding.split('/').next().unwrap_or("").trim();
                rtpmaps.push((pt, name));
            }
        } else if let Some(rest) = line.strip_prefix("a=fmtp:")
            && let Some((pt, params)) = rest.split_once(' ')
        {
            fmtps.push((pt, params));
        }
    }
    for (pt, name) in rtpmaps {
        let upper = name.to_ascii_uppercase();
        if matches!(upper.as_str(), "RTX" | "RED" | "ULPFEC" | "FLEXFEC-03" | "") {
            continue;
        }
        let fmtp = fmtps.iter().find(|(p, _)| *p == pt).map_or("", |(_, f)| f).to_ascii_lowercase();
        match upper.as_str() {
            "H264" if h264_fmtp_usable(&fmtp) => offered.usable.insert(VideoCodec::H264),
            "VP8" => offered.usable.insert(VideoCodec::Vp8),
            "VP9" if vp9_fmtp_usable(&fmtp) => offered.usable.insert(VideoCodec::Vp9),
            _ => {}
        }
        let shown: String = name.chars().filter(|c| c.is_ascii_graphic()).take(MAX_NAME_CHARS).collect();
        if !shown.is_empty()
            && offered.names.len() < MAX_NAMES
            && !offered.names.iter().any(|n| n.eq_ignore_ascii_case(&shown))
        {
            offered.names.push(shown);
        }
    }
    offered
}

/// H.264 Peep can send: packetization-mode 1 (the payloader emits FU-A) and
/// one of the registered profiles (the level does not matter to the matcher).
fn h264_fmtp_usable(fmtp: &str) -> bool {
    let param = |key: &str| {
        fmtp.split(';').filter_map(|p| p.trim().split_once('=')).find(|(k, _)| k.trim() == key).map(|(_, v)| v.trim())
    };
    let mode1 = param("packetization-mode") == Some("1");
    let profile = param("profile-level-id").unwrap_or("42001f");
    mode1
        && profile.len() == 6
        && profile.get(..4).is_some_and(|head| PROFILE_LEVEL_IDS.iter().any(|p| &p[..4] == head))
}

/// VP9 profile 0 (the default when `profile-id` is absent).
fn vp9_fmtp_usable(fmtp: &str) -> bool {
    !fmtp.contains("profile-id=") || fmtp.contains("profile-id=0")
}

/// The first codec of `preference` the viewer can take.
pub fn choose_codec(offered: &OfferedCodecs, preference: &[VideoCodec]) -> Option<VideoCodec> {
    preference.iter().copied().find(|c| offered.usable(*c))
}

/// The sentence for a viewer whose offer has no codec of `preference`:
/// what it offered, what Peep sends, and what would fix it. The viewer page
/// shows it as it is; WHEP clients get it as the body of a 422.
pub fn no_common_codec_message(offered: &OfferedCodecs, preference: &[VideoCodec]) -> String {
    let ours: Vec<&str> = preference.iter().map(|c| c.name()).collect();
    let ours = join_or(&ours);
    let theirs = if offered.names.is_empty() {
        "no video codecs".to_owned()
    } else {
        let names: Vec<String> = offered
            .names
            .iter()
            .map(|n| {
                if n.eq_ignore_ascii_case("H264") { "H.264 (in a form Peep cannot send)".to_owned() } else { n.clone() }
            })
            .collect();
        format!("the video codecs {}", names.join(", "))
    };
    format!(
        "This browser offered {theirs}, but Peep sends {ours}. Open the link in a browser that plays {ours} \
         over WebRTC (current Firefox, Chrome, Edge or Safari do), or turn {ours} back on in this browser's settings."
    )
}

fn join_or(items: &[&str]) -> String {
    match items {
        [] => "nothing".to_owned(),
        [one] => (*one).to_owned(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
    }
}

/// Picks the payload type to send `codec` with from the negotiated codecs.
/// For H.264 the payloader emits FU-A, so packetization-mode 1 is required;
/// constrained baseline (42e01f) is preferred, as that is what OpenH264 emits.
pub fn choose_payload_type(codec: VideoCodec, codecs: &[RTCRtpCodecParameters]) -> Option<u8> {
    let mime = |c: &&RTCRtpCodecParameters| c.rtp_codec.mime_type.eq_ignore_ascii_case(codec.mime_type());
    if codec != VideoCodec::H264 {
        return codecs.iter().find(mime).map(|c| c.payload_type);
    }
    let fmtp = |c: &RTCRtpCodecParameters| c.rtp_codec.sdp_fmtp_line.to_ascii_lowercase();
    let h264: Vec<_> = codecs.iter().filter(mime).collect();
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
        assert_eq!(codecs_for(VideoCodec::Vp8)[0].rtp_codec.mime_type, MIME_TYPE_VP8);
        assert_eq!(codecs_for(VideoCodec::Vp9)[0].rtp_codec.sdp_fmtp_line, "profile-id=0");
    }

    #[test]
    fn prefers_constrained_baseline_mode_1_in_the_offerers_order() {
        // Chromium's order: 42001f first.
        let negotiated = [
            codec(102, "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42001f"),
            codec(104, "level-asymmetry-allowed=1;packetization-mode=0;profile-level-id=42001f"),
            codec(108, "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f"),
        ];
        let h264 = VideoCodec::H264;
        assert_eq!(choose_payload_type(h264, &negotiated), Some(108));
        assert_eq!(choose_payload_type(h264, &negotiated[..2]), Some(102));
        assert_eq!(choose_payload_type(h264, &negotiated[1..2]), None, "mode 0 only: we cannot send FU-A");
        assert_eq!(choose_payload_type(h264, &[]), None);
        assert_eq!(choose_payload_type(VideoCodec::Vp8, &negotiated), None);
        assert_eq!(choose_payload_type(VideoCodec::Vp8, &codecs_for(VideoCodec::Vp8)), Some(96));
    }

    /// Firefox ESR's default video section (no OpenH264 plugin).
    const FIREFOX_DEFAULT: &str = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 109\r\na=rtpmap:109 opus/48000/2\r\n\
        m=video 9 UDP/TLS/RTP/SAVPF 120 124 121 125 99 100 123 122 119\r\n\
        a=fmtp:120 max-fs=12288;max-fr=60\r\na=fmtp:124 apt=120\r\na=fmtp:121 max-fs=12288;max-fr=60\r\n\
        a=fmtp:125 apt=121\r\na=fmtp:99 profile=0\r\na=fmtp:100 apt=99\r\na=fmtp:119 apt=122\r\n\
        a=rtpmap:120 VP8/90000\r\na=rtpmap:124 rtx/90000\r\na=rtpmap:121 VP9/90000\r\na=rtpmap:125 rtx/90000\r\n\
        a=rtpmap:99 AV1/90000\r\na=rtpmap:100 rtx/90000\r\na=rtpmap:123 ulpfec/90000\r\na=rtpmap:122 red/90000\r\n\
        a=rtpmap:119 rtx/90000\r\n";

    #[test]
    fn reads_what_browsers_offer_and_picks_h264_first() {
        let ff = offered_codecs(FIREFOX_DEFAULT);
        assert_eq!(ff.names, ["VP8", "VP9", "AV1"], "audio and repair formats are not listed");
        assert_eq!(choose_codec(&ff, &DEFAULT_PREFERENCE), Some(VideoCodec::Vp9));
        assert_eq!(choose_codec(&ff, &[VideoCodec::H264, VideoCodec::Vp8]), Some(VideoCodec::Vp8));
        let with_h264 = FIREFOX_DEFAULT.replace(
            "a=rtpmap:120 VP8/90000",
            "a=rtpmap:126 H264/90000\r\na=fmtp:126 profile-level-id=42e01f;level-asymmetry-allowed=1;packetization-mode=1\r\na=rtpmap:120 VP8/90000",
        );
        let offered = offered_codecs(&with_h264);
        assert_eq!(choose_codec(&offered, &DEFAULT_PREFERENCE), Some(VideoCodec::H264));
        assert_eq!(choose_codec(&offered, &[VideoCodec::Vp8]), Some(VideoCodec::Vp8));
        let vp8_only = "m=video 9 x 96\r\na=rtpmap:96 VP8/90000\r\n";
        assert_eq!(choose_codec(&offered_codecs(vp8_only), &DEFAULT_PREFERENCE), Some(VideoCodec::Vp8));
    }

    #[test]
    fn h264_peep_cannot_send_is_not_usable() {
        for fmtp in [
            "profile-level-id=42e01f;packetization-mode=0",
            "profile-level-id=64001f;packetization-mode=1",
            "profile-level-id=zz;packetization-mode=1",
            "profile-level-id=4\u{e9}\u{e9}f;packetization-mode=1",
        ] {
            let sdp = format!("m=video 9 UDP/TLS/RTP/SAVPF 97\r\na=rtpmap:97 H264/90000\r\na=fmtp:97 {fmtp}\r\n");
            let offered = offered_codecs(&sdp);
            assert!(!offered.usable(VideoCodec::H264), "{fmtp}");
            assert_eq!(choose_codec(&offered, &DEFAULT_PREFERENCE), None);
            let msg = no_common_codec_message(&offered, &DEFAULT_PREFERENCE);
            assert!(msg.contains("H.264 (in a form Peep cannot send)"), "{msg}");
        }
        // Level does not matter (the matcher ignores it), profile bytes do.
        let sdp =
            "m=video 9 x 97\r\na=rtpmap:97 H264/90000\r\na=fmtp:97 profile-level-id=42e034;packetization-mode=1\r\n";
        assert!(offered_codecs(sdp).usable(VideoCodec::H264));
        // VP9 profile 2 (10-bit) is not what libvpx is set up for.
        let sdp = "m=video 9 x 98\r\na=rtpmap:98 VP9/90000\r\na=fmtp:98 profile-id=2\r\n";
        assert!(!offered_codecs(sdp).usable(VideoCodec::Vp9));
    }

    #[test]
    fn the_no_common_codec_sentence_names_both_sides() {
        let sdp = "m=video 9 x 99 100\r\na=rtpmap:99 AV1/90000\r\na=rtpmap:100 rtx/90000\r\n";
        let offered = offered_codecs(sdp);
        let msg = no_common_codec_message(&offered, &DEFAULT_PREFERENCE);
        assert_eq!(
            msg,
            "This browser offered the video codecs AV1, but Peep sends H.264, VP9 or VP8. Open the link in a \
             browser that plays H.264, VP9 or VP8 over WebRTC (current Firefox, Chrome, Edge or Safari do), or turn \
             H.264, VP9 or VP8 back on in this browser's settings."
        );
        let none = no_common_codec_message(&offered_codecs("v=0\r\n"), &[VideoCodec::H264]);
        assert!(none.starts_with("This browser offered no video codecs, but Peep sends H.264."), "{none}");
    }

    #[test]
    fn hostile_offers_are_bounded_and_never_panic() {
        let many: String = (0..500).map(|i| format!("a=rtpmap:{i} C{i}/90000\r\n")).collect();
        let offered = offered_codecs(&format!("m=video 9 x\r\n{many}"));
        assert_eq!(offered.names.len(), MAX_NAMES);
        let long = format!("m=video 9 x 1\r\na=rtpmap:1 {}/90000\r\n", "X".repeat(10_000));
        assert_eq!(offered_codecs(&long).names[0].len(), MAX_NAME_CHARS);
        for junk in
            ["", "m=", "m=video", "a=rtpmap:", "a=fmtp:1", "m=video\na=rtpmap:1 \u{0}/", "m=video\r\na=rtpmap:x H264"]
        {
            let o = offered_codecs(junk);
            assert_eq!(choose_codec(&o, &DEFAULT_PREFERENCE), None, "{junk:?}");
        }
        let set: CodecSet = [VideoCodec::Vp8, VideoCodec::H264].into_iter().collect();
        assert_eq!(set.iter().collect::<Vec<_>>(), [VideoCodec::H264, VideoCodec::Vp8]);
        assert!(!set.contains(VideoCodec::Vp9) && !set.is_empty() && CodecSet::EMPTY.is_empty());
    }
}
