//! Fuzzes the relay protocol's parsing, both directions (a hostile sharer
//! against the relay, a hostile relay against the sharer). The body is
//! `peep_transport::fuzz::relay_message`, which the seeds (one real message
//! of each kind) also replay in tests.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| peep_transport::fuzz::relay_message(data));
