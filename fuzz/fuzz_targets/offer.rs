//! Fuzzes the SDP offer intake: size, UTF-8, video section, SDP grammar,
//! and the codec negotiation that reads the offer's video section. Every
//! input must yield Ok or a BadOffer error, never a panic; a chosen codec
//! must be one the offer names, and the refusal sentence stays bounded.
#![no_main]

use libfuzzer_sys::fuzz_target;
use peep_transport::TransportError;
use peep_transport::codecs::{DEFAULT_PREFERENCE, choose_codec, no_common_codec_message, offered_codecs};

fuzz_target!(|data: &[u8]| {
    match peep_transport::offer::parse_offer(data) {
        Ok(offer) => {
            let offered = offered_codecs(&offer.sdp);
            match choose_codec(&offered, &DEFAULT_PREFERENCE) {
                Some(codec) => assert!(offered.usable(codec)),
                None => assert!(no_common_codec_message(&offered, &DEFAULT_PREFERENCE).len() < 2048),
            }
        }
        Err(TransportError::BadOffer(_)) => {}
        Err(other) => panic!("unexpected error kind: {other}"),
    }
    // The negotiation also runs on any text, valid SDP or not.
    let _ = offered_codecs(&String::from_utf8_lossy(data));
});
