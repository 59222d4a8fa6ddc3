//! Fuzzes the SDP offer intake: size, UTF-8, video section, SDP grammar.
//! Every input must yield Ok or a BadOffer error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use peep_transport::TransportError;

fuzz_target!(|data: &[u8]| {
    match peep_transport::offer::parse_offer(data) {
        Ok(_) | Err(TransportError::BadOffer(_)) => {}
        Err(other) => panic!("unexpected error kind: {other}"),
    }
});
