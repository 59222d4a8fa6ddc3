//! Fuzzes the RTCP Peep interprets itself (receiver reports → RTT/loss,
//! PLI/FIR/NACK, transport-wide feedback → the estimator, NACKs → the
//! pacer), with time and the wall clock as inputs. The body is
//! `peep_transport::fuzz::rtcp`, which the seeds (RTCP from a real
//! Chromium viewer) also replay in tests.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| peep_transport::fuzz::rtcp(data));
