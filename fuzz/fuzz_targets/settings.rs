//! Fuzzes the settings file the app reads at start-up. The body is
//! `peep::fuzz::settings`, which the seeds also replay in tests.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| peep::fuzz::settings(data));
