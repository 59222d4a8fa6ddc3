//! Fuzzes the SDP offer intake: size, UTF-8, video section, SDP grammar.
//! Every input must yield Ok or a BadOffer error, never a panic (the body
//! is `peep_transport::fuzz::offer`, which the seeds also replay in tests).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| peep_transport::fuzz::offer(data));
