//! The bodies of the cargo-fuzz targets in `fuzz/`, kept here so that the
//! seed corpora replay as ordinary tests (`tests/fuzz_seeds.rs`) and a
//! target cannot drift from the code it fuzzes. Each function feeds one
//! input to a parser of outside input and panics only if an invariant
//! breaks (the parser itself must never panic).

use crate::TransportError;

/// `fuzz/fuzz_targets/offer.rs`: the SDP offer intake yields an offer or a
/// `BadOffer` error, never another error kind or a panic.
pub fn offer(data: &[u8]) {
    match crate::offer::parse_offer(data) {
        Ok(_) | Err(TransportError::BadOffer(_)) => {}
        Err(other) => panic!("unexpected error kind: {other}"),
    }
}

/// A target's body: one input in, a panic only on a broken invariant.
pub type Body = fn(&[u8]);

/// The targets by name (the directory names under `fuzz/seeds/`).
pub const TARGETS: &[(&str, Body)] = &[("offer", offer)];
