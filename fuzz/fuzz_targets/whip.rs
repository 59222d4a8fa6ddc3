//! Fuzzes the WHIP client's parsers of server answers: POST responses
//! (201/redirect/errors), Link ICE servers, ICE-restart SDP fragments. The
//! body is `peep_transport::fuzz::whip`, which the seeds (real answers of
//! simple-whip-server + Janus) also replay in tests.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| peep_transport::fuzz::whip(data));
