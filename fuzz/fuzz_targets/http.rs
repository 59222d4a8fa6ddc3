//! Fuzzes the viewers' HTTP server as Peep itself reads requests: path
//! (token, session), Content-Type, `Authorization: Bearer` with the
//! wrong-password throttle, the offer body, preflights, event streams,
//! assets — through the real router. The body is
//! `peep_transport::fuzz::http`, which the seeds also replay in tests.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| peep_transport::fuzz::http(data));
