//! The bodies of the encode crate's cargo-fuzz targets (`fuzz/`), kept
//! here so the seed corpora replay as ordinary tests (the app's
//! `tests/fuzz_seeds.rs`) and a target cannot drift from the code it
//! fuzzes.

use crate::avcc::{AvccError, ParameterSets, avcc_nals, avcc_to_annexb, contains_idr};

/// `fuzz/fuzz_targets/avcc.rs`: what a hardware encoder hands over as
/// AVCC (VideoToolbox: length-prefixed NAL units, parameter sets in an
/// `avcC` record) through every parser of `crate::avcc`.
///
/// Input: one byte choosing the NAL length size (1, 2, 4, or an invalid
/// one), two bytes of record length, the `avcC` record, the access unit.
///
/// Invariants: never a panic; an accepted unit converts to exactly its NAL
/// units behind 4-byte start codes, with the record's SPS/PPS in front of
/// an IDR that lacks them; a refused one leaves the output empty.
pub fn avcc(data: &[u8]) {
    let Some((&selector, rest)) = data.split_first() else { return };
    let length_size = [1usize, 2, 4, 3][usize::from(selector % 4)];
    let (record_len, rest) = match rest.split_first_chunk::<2>() {
        Some((len, rest)) => (usize::from(u16::from_be_bytes(*len)), rest),
        None => (0, rest),
    };
    let (record, unit) = rest.split_at(record_len.min(rest.len()));
    let params = match ParameterSets::from_avcc_record(record) {
        Ok((params, record_length_size)) => {
            assert!(matches!(record_length_size, 1 | 2 | 4), "{record_length_size}");
            let (sps, pps) = params.counts();
            assert_eq!(params.is_complete(), sps > 0 && pps > 0);
            params
        }
        Err(_) => ParameterSets::default(),
    };
    let nals: Result<Vec<&[u8]>, AvccError> = match avcc_nals(unit, length_size) {
        Ok(iter) => iter.collect(),
        Err(e) => Err(e),
    };
    let idr = contains_idr(unit, length_size);
    assert_eq!(idr.is_ok(), nals.is_ok());
    let mut out = vec![0xAA; 3];
    match avcc_to_annexb(unit, length_size, &params, &mut out) {
        Ok(au) => {
            let nals = nals.expect("a converted unit parses");
            assert_eq!(au.nal_units, nals.len());
            assert_eq!(au.keyframe, idr.expect("parses"));
            let body: usize = nals.iter().map(|n| 4 + n.len()).sum();
            let inserted = if au.parameter_sets_inserted { params.annexb().len() } else { 0 };
            assert_eq!(out.len(), body + inserted);
            if !out.is_empty() {
                assert_eq!(out[..4], [0, 0, 0, 1]);
            }
        }
        Err(_) => assert!(out.is_empty(), "output left behind on error"),
    }
}

/// A target's body: one input in, a panic only on a broken invariant.
pub type Body = fn(&[u8]);

/// The targets by name (the directory names under `fuzz/seeds/`).
pub const TARGETS: &[(&str, Body)] = &[("avcc", avcc)];
