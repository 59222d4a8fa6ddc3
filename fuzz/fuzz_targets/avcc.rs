//! Fuzzes the AVCC → Annex-B conversion and the avcC record parser
//! (hardware encoder output). The body is `peep_encode::fuzz::avcc`, which
//! the seeds also replay in tests.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| peep_encode::fuzz::avcc(data));
