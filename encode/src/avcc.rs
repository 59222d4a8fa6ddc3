//! H.264 bitstream plumbing for encoders that emit AVCC (VideoToolbox):
//! length-prefixed NAL units → Annex-B with SPS/PPS before every IDR.
//!
//! VideoToolbox hands out access units as NAL units each preceded by a
//! big-endian length (usually 4 bytes; the size comes with the format
//! description), and keeps SPS/PPS out of band in the format description
//! (`CMVideoFormatDescriptionGetH264ParameterSetAtIndex`, or an `avcC`
//! record). WebRTC and our recordings want Annex-B (`00 00 00 01` start
//! codes) with the parameter sets in band, before every IDR, so a viewer that
//! joins at any keyframe can decode it. Everything here is plain Rust, runs
//! on every OS, and never panics on malformed input: truncated or
//! inconsistent lengths are errors.
//!
//! ```
//! use peep_encode::avcc::{ParameterSets, avcc_to_annexb};
//!
//! let mut params = ParameterSets::default();
//! params.push(&[0x67, 0x42, 0xc0, 0x1f, 0xda])?; // SPS
//! params.push(&[0x68, 0xce, 0x3c, 0x80])?; // PPS
//! let avcc = [0, 0, 0, 3, 0x65, 0x88, 0x84]; // one IDR slice, 4-byte length
//! let mut out = Vec::new();
//! let au = avcc_to_annexb(&avcc, 4, &params, &mut out)?;
//! assert!(au.keyframe && au.parameter_sets_inserted);
//! assert_eq!(
//!     out,
//!     [0, 0, 0, 1, 0x67, 0x42, 0xc0, 0x1f, 0xda, 0, 0, 0, 1, 0x68, 0xce, 0x3c, 0x80, 0, 0, 0, 1, 0x65, 0x88, 0x84]
//! );
//! # Ok::<(), peep_encode::avcc::AvccError>(())
//! ```

/// The Annex-B start code written before every NAL unit.
pub const START_CODE: [u8; 4] = [0, 0, 0, 1];

/// NAL unit types (H.264 table 7-1) this module cares about.
pub mod nal_type {
    /// Coded slice of a non-IDR picture.
    pub const SLICE: u8 = 1;
    /// Coded slice of an IDR picture.
    pub const IDR: u8 = 5;
    /// Supplemental enhancement information.
    pub const SEI: u8 = 6;
    /// Sequence parameter set.
    pub const SPS: u8 = 7;
    /// Picture parameter set.
    pub const PPS: u8 = 8;
    /// Access unit delimiter.
    pub const AUD: u8 = 9;
}

/// The `nal_unit_type` of a NAL unit (its first byte's low five bits).
pub fn nal_unit_type(nal: &[u8]) -> Option<u8> {
    nal.first().map(|b| b & 0x1f)
}

/// Malformed AVCC data or parameter sets.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AvccError {
    /// The NAL length field size is not 1, 2 or 4 bytes.
    #[error("NAL length field of {0} bytes is invalid (must be 1, 2 or 4)")]
    InvalidLengthSize(usize),
    /// The data ends inside a length field.
    #[error("truncated NAL length field at byte {offset}: {remaining} of {length_size} bytes left")]
    TruncatedLength {
        /// Where the length field starts.
        offset: usize,
        /// Bytes left in the buffer.
        remaining: usize,
        /// Size of the length field.
        length_size: usize,
    },
    /// A length field claims more bytes than the buffer holds.
    #[error("NAL unit at byte {offset} claims {claimed} bytes but only {remaining} remain")]
    TruncatedNal {
        /// Where the NAL unit starts (after its length field).
        offset: usize,
        /// The length the field claims.
        claimed: usize,
        /// Bytes left in the buffer.
        remaining: usize,
    },
    /// A length field of zero.
    #[error("empty NAL unit at byte {offset}")]
    EmptyNal {
        /// Where the length field starts.
        offset: usize,
    },
    /// A NAL unit given as a parameter set is neither an SPS nor a PPS.
    #[error("NAL unit of type {0} is not a parameter set (SPS is 7, PPS is 8)")]
    NotAParameterSet(u8),
    /// The access unit holds an IDR slice, but no SPS and PPS are known to
    /// put before it.
    #[error("IDR access unit without SPS/PPS to put before it")]
    MissingParameterSets,
    /// An `avcC` record (AVCDecoderConfigurationRecord) is malformed.
    #[error("malformed avcC record: {0}")]
    BadRecord(&'static str),
}

/// Iterator over the NAL units of AVCC data; see [`avcc_nals`]. Yields
/// `Err` once for malformed data and then stops.
#[derive(Debug, Clone)]
pub struct AvccNals<'a> {
    data: &'a [u8],
    offset: usize,
    length_size: usize,
    failed: bool,
}

/// Walks length-prefixed NAL units. `length_size` is the size of the length
/// fields (VideoToolbox reports it as the "NAL unit header length").
///
/// # Errors
/// [`AvccError::InvalidLengthSize`] at once; the iterator yields
/// [`AvccError::TruncatedLength`], [`AvccError::TruncatedNal`] or
/// [`AvccError::EmptyNal`] for malformed data.
pub fn avcc_nals(data: &[u8], length_size: usize) -> Result<AvccNals<'_>, AvccError> {
    if !matches!(length_size, 1 | 2 | 4) {
        return Err(AvccError::InvalidLengthSize(length_size));
    }
    Ok(AvccNals { data, offset: 0, length_size, failed: false })
}

impl<'a> Iterator for AvccNals<'a> {
    type Item = Result<&'a [u8], AvccError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.offset >= self.data.len() {
            return None;
        }
        let offset = self.offset;
        let rest = &self.data[offset..];
        let result = match rest.get(..self.length_size) {
            None => Err(AvccError::TruncatedLength { offset, remaining: rest.len(), length_size: self.length_size }),
            Some(field) => {
                let claimed = field.iter().fold(0usize, |n, &b| (n << 8) | usize::from(b));
                let body = &rest[self.length_size..];
                if claimed == 0 {
                    Err(AvccError::EmptyNal { offset })
                } else if claimed > body.len() {
                    Err(AvccError::TruncatedNal { offset: offset + self.length_size, claimed, remaining: body.len() })
                } else {
                    self.offset += self.length_size + claimed;
                    Ok(&body[..claimed])
                }
            }
        };
        self.failed = result.is_err();
        Some(result)
    }
}

/// Whether AVCC data contains an IDR slice (validating it on the way).
///
/// # Errors
/// As [`avcc_nals`].
pub fn contains_idr(data: &[u8], length_size: usize) -> Result<bool, AvccError> {
    let mut idr = false;
    for nal in avcc_nals(data, length_size)? {
        idr |= nal_unit_type(nal?) == Some(nal_type::IDR);
    }
    Ok(idr)
}

/// The SPS and PPS of a stream, kept in Annex-B form ready to be put before
/// an IDR. Refilling it ([`clear`](Self::clear) + [`push`](Self::push))
/// reuses its buffer, so keeping it current costs no allocation once warm.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ParameterSets {
    /// `START_CODE`, SPS…, `START_CODE`, PPS… in the order pushed.
    annexb: Vec<u8>,
    sps_count: usize,
    pps_count: usize,
    /// profile_idc, constraint flags, level_idc of the first SPS.
    first_sps_profile: Option<[u8; 3]>,
}

impl ParameterSets {
    /// Forgets every parameter set (keeps the buffer).
    pub fn clear(&mut self) {
        self.annexb.clear();
        self.sps_count = 0;
        self.pps_count = 0;
        self.first_sps_profile = None;
    }

    /// Adds one SPS or PPS NAL unit (no start code, no length prefix), e.g. as
    /// returned by `CMVideoFormatDescriptionGetH264ParameterSetAtIndex`.
    ///
    /// # Errors
    /// [`AvccError::NotAParameterSet`] for other NAL types (nothing is
    /// added); an empty slice counts as type 0.
    pub fn push(&mut self, nal: &[u8]) -> Result<(), AvccError> {
        match nal_unit_type(nal) {
            Some(nal_type::SPS) => {
                self.sps_count += 1;
                if self.first_sps_profile.is_none() {
                    self.first_sps_profile = nal.get(1..4).and_then(|p| p.try_into().ok());
                }
            }
            Some(nal_type::PPS) => self.pps_count += 1,
            other => return Err(AvccError::NotAParameterSet(other.unwrap_or(0))),
        }
        self.annexb.extend_from_slice(&START_CODE);
        self.annexb.extend_from_slice(nal);
        Ok(())
    }

    /// Whether at least one SPS and one PPS are known.
    pub fn is_complete(&self) -> bool {
        self.sps_count > 0 && self.pps_count > 0
    }

    /// Number of SPS and PPS held.
    pub fn counts(&self) -> (usize, usize) {
        (self.sps_count, self.pps_count)
    }

    /// The parameter sets as Annex-B bytes (each with a start code).
    pub fn annexb(&self) -> &[u8] {
        &self.annexb
    }

    /// profile_idc, constraint flags and level_idc of the first SPS: the three
    /// bytes of SDP's `profile-level-id` (e.g. `42 e0 1f` for constrained
    /// baseline level 3.1, `4d 00 1f` for main, `64 …` for high).
    pub fn profile_level_id(&self) -> Option<[u8; 3]> {
        self.first_sps_profile
    }

    /// Parses an `avcC` record (ISO/IEC 14496-15 AVCDecoderConfigurationRecord,
    /// e.g. the `avcC` sample-description extension of a VideoToolbox format
    /// description). Returns the parameter sets and the NAL length-field size.
    /// Trailing bytes (the high-profile chroma/bit-depth extension) are ignored.
    ///
    /// # Errors
    /// [`AvccError::BadRecord`] for a truncated or inconsistent record,
    /// [`AvccError::NotAParameterSet`] if an SPS/PPS entry has the wrong type.
    pub fn from_avcc_record(record: &[u8]) -> Result<(Self, usize), AvccError> {
        let mut r = Reader(record);
        if r.u8().ok_or(AvccError::BadRecord("shorter than its 6-byte header"))? != 1 {
            return Err(AvccError::BadRecord("configurationVersion is not 1"));
        }
        r.take(3).ok_or(AvccError::BadRecord("shorter than its 6-byte header"))?; // profile, compat, level
        let length_size = usize::from(r.u8().ok_or(AvccError::BadRecord("shorter than its 6-byte header"))? & 0b11) + 1;
        if length_size == 3 {
            return Err(AvccError::InvalidLengthSize(3));
        }
        let mut sets = Self::default();
        let sps = r.u8().ok_or(AvccError::BadRecord("shorter than its 6-byte header"))? & 0x1f;
        for _ in 0..sps {
            let nal = r.entry().ok_or(AvccError::BadRecord("truncated SPS entry"))?;
            if nal_unit_type(nal) != Some(nal_type::SPS) {
                return Err(AvccError::NotAParameterSet(nal_unit_type(nal).unwrap_or(0)));
            }
            sets.push(nal)?;
        }
        let pps = r.u8().ok_or(AvccError::BadRecord("missing numOfPictureParameterSets"))?;
        for _ in 0..pps {
            let nal = r.entry().ok_or(AvccError::BadRecord("truncated PPS entry"))?;
            if nal_unit_type(nal) != Some(nal_type::PPS) {
                return Err(AvccError::NotAParameterSet(nal_unit_type(nal).unwrap_or(0)));
            }
            sets.push(nal)?;
        }
        Ok((sets, length_size))
    }
}

/// A cursor over a byte slice that returns `None` instead of panicking.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, tail) = self.0.split_at_checked(n)?;
        self.0 = tail;
        Some(head)
    }

    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }

    /// A 16-bit big-endian length followed by that many bytes (non-empty).
    fn entry(&mut self) -> Option<&'a [u8]> {
        let len = self.take(2).map(|b| usize::from(u16::from_be_bytes([b[0], b[1]])))?;
        if len == 0 {
            return None;
        }
        self.take(len)
    }
}

/// What [`avcc_to_annexb`] found in an access unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AccessUnit {
    /// It contains an IDR slice.
    pub keyframe: bool,
    /// NAL units copied from the input.
    pub nal_units: usize,
    /// The SPS/PPS of [`ParameterSets`] were put in front (IDR without its
    /// own in-band SPS and PPS).
    pub parameter_sets_inserted: bool,
}

/// Converts one AVCC access unit to Annex-B in `out` (cleared first; it grows
/// only if its capacity is too small). If the unit holds an IDR slice and no
/// in-band SPS and PPS, `params` goes in front of it (after an access unit
/// delimiter, if the unit starts with one), so every keyframe is decodable
/// on its own.
///
/// # Errors
/// Malformed AVCC data (see [`avcc_nals`]), or
/// [`AvccError::MissingParameterSets`] for an IDR when `params` is
/// incomplete. `out` is left empty on error.
pub fn avcc_to_annexb(
    avcc: &[u8],
    length_size: usize,
    params: &ParameterSets,
    out: &mut Vec<u8>,
) -> Result<AccessUnit, AvccError> {
    out.clear();
    // Pass 1: validate everything and see what the unit holds, before
    // writing anything.
    let (mut idr, mut sps, mut pps, mut count) = (false, false, false, 0usize);
    for nal in avcc_nals(avcc, length_size)? {
        match nal_unit_type(nal?) {
            Some(nal_type::IDR) => idr = true,
            Some(nal_type::SPS) => sps = true,
            Some(nal_type::PPS) => pps = true,
            _ => {}
        }
        count += 1;
    }
    let insert = idr && !(sps && pps);
    if insert && !params.is_complete() {
        return Err(AvccError::MissingParameterSets);
    }
    // Each length field (≥ 1 byte) becomes a 4-byte start code.
    out.reserve(avcc.len() + count * 3 + if insert { params.annexb().len() } else { 0 });
    // Inserted before the first NAL unit that is not a leading AUD; an IDR
    // slice is such a unit, so this always happens when `insert` is set.
    let mut pending_params = insert;
    for (i, nal) in avcc_nals(avcc, length_size)?.enumerate() {
        let nal = nal?; // validated above
        let leading_aud = i == 0 && nal_unit_type(nal) == Some(nal_type::AUD);
        if pending_params && !leading_aud {
            out.extend_from_slice(params.annexb());
            pending_params = false;
        }
        out.extend_from_slice(&START_CODE);
        out.extend_from_slice(nal);
    }
    Ok(AccessUnit { keyframe: idr, nal_units: count, parameter_sets_inserted: insert })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPS: &[u8] = &[0x67, 0x42, 0xe0, 0x1f, 0xda, 0x01, 0x40];
    const PPS: &[u8] = &[0x68, 0xce, 0x3c, 0x80];
    const IDR: &[u8] = &[0x65, 0x88, 0x84, 0x00, 0x33];
    const P: &[u8] = &[0x41, 0x9a, 0x02];
    const SEI: &[u8] = &[0x06, 0x05, 0x01, 0xff];
    const AUD: &[u8] = &[0x09, 0xf0];

    fn params() -> ParameterSets {
        let mut p = ParameterSets::default();
        p.push(SPS).unwrap();
        p.push(PPS).unwrap();
        p
    }

    /// Length-prefixes `nals` with `length_size`-byte big-endian lengths.
    fn avcc(nals: &[&[u8]], length_size: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for nal in nals {
            let len = (nal.len() as u32).to_be_bytes();
            out.extend_from_slice(&len[4 - length_size..]);
            out.extend_from_slice(nal);
        }
        out
    }

    fn annexb(nals: &[&[u8]]) -> Vec<u8> {
        nals.iter().flat_map(|n| START_CODE.iter().chain(n.iter()).copied()).collect()
    }

    #[test]
    fn idr_gets_sps_pps_in_front_for_every_length_size() {
        for length_size in [1, 2, 4] {
            let mut out = Vec::new();
            let au = avcc_to_annexb(&avcc(&[IDR], length_size), length_size, &params(), &mut out).unwrap();
            assert_eq!(out, annexb(&[SPS, PPS, IDR]), "length size {length_size}");
            assert_eq!(au, AccessUnit { keyframe: true, nal_units: 1, parameter_sets_inserted: true });
        }
    }

    #[test]
    fn p_frames_pass_through_without_parameter_sets() {
        let mut out = vec![0xaa; 3]; // stale content is cleared
        let au = avcc_to_annexb(&avcc(&[SEI, P], 4), 4, &params(), &mut out).unwrap();
        assert_eq!(out, annexb(&[SEI, P]));
        assert!(!au.keyframe && !au.parameter_sets_inserted);
        // P-frames need no parameter sets at all.
        avcc_to_annexb(&avcc(&[P], 4), 4, &ParameterSets::default(), &mut out).unwrap();
        assert_eq!(out, annexb(&[P]));
    }

    #[test]
    fn parameter_sets_go_after_an_access_unit_delimiter_and_before_sei() {
        let mut out = Vec::new();
        avcc_to_annexb(&avcc(&[AUD, SEI, IDR], 4), 4, &params(), &mut out).unwrap();
        assert_eq!(out, annexb(&[AUD, SPS, PPS, SEI, IDR]));
    }

    #[test]
    fn in_band_parameter_sets_are_not_duplicated() {
        let mut out = Vec::new();
        let au = avcc_to_annexb(&avcc(&[SPS, PPS, IDR], 4), 4, &params(), &mut out).unwrap();
        assert_eq!(out, annexb(&[SPS, PPS, IDR]));
        assert!(au.keyframe && !au.parameter_sets_inserted);
    }

    #[test]
    fn idr_without_known_parameter_sets_is_an_error() {
        let mut out = Vec::new();
        let mut only_sps = ParameterSets::default();
        only_sps.push(SPS).unwrap();
        for p in [ParameterSets::default(), only_sps] {
            let err = avcc_to_annexb(&avcc(&[IDR], 4), 4, &p, &mut out).unwrap_err();
            assert_eq!(err, AvccError::MissingParameterSets);
            assert!(out.is_empty());
        }
    }

    #[test]
    fn malformed_input_is_an_error_never_a_panic() {
        let mut out = Vec::new();
        let p = params();
        let cases: [(&[u8], usize, AvccError); 6] = [
            (&[0, 0, 0], 4, AvccError::TruncatedLength { offset: 0, remaining: 3, length_size: 4 }),
            (&[0, 0, 0, 9, 0x65, 1], 4, AvccError::TruncatedNal { offset: 4, claimed: 9, remaining: 2 }),
            (&[0, 0, 0, 0, 0, 0, 0, 1, 0x41], 4, AvccError::EmptyNal { offset: 0 }),
            (&[0, 1, 0x41, 0], 2, AvccError::TruncatedLength { offset: 3, remaining: 1, length_size: 2 }),
            (&[0, 1, 0x41], 3, AvccError::InvalidLengthSize(3)),
            (&[0xff, 0x41], 1, AvccError::TruncatedNal { offset: 1, claimed: 255, remaining: 1 }),
        ];
        for (data, length_size, want) in cases {
            out.extend_from_slice(b"junk");
            assert_eq!(avcc_to_annexb(data, length_size, &p, &mut out), Err(want.clone()), "{data:?}");
            assert!(out.is_empty(), "partial output left for {data:?}");
            assert_eq!(contains_idr(data, length_size), Err(want));
        }
        assert_eq!(avcc_nals(&[], 0).unwrap_err(), AvccError::InvalidLengthSize(0));
        // Empty input is an empty access unit, not an error.
        assert_eq!(avcc_to_annexb(&[], 4, &p, &mut out).unwrap().nal_units, 0);
    }

    #[test]
    fn every_truncation_and_corruption_of_a_valid_unit_is_handled() {
        let good = avcc(&[AUD, SEI, IDR, P], 4);
        let p = params();
        let mut out = Vec::new();
        for cut in 0..good.len() {
            // Ends inside a field or a NAL: an error (or a shorter valid unit
            // when the cut falls exactly between NAL units).
            let _ = avcc_to_annexb(&good[..cut], 4, &p, &mut out);
        }
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..2000 {
            let mut bad = good.clone();
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let i = (seed % bad.len() as u64) as usize;
            bad[i] = (seed >> 32) as u8;
            for length_size in [1, 2, 4] {
                let _ = avcc_to_annexb(&bad, length_size, &p, &mut out);
                let _ = contains_idr(&bad, length_size);
            }
        }
    }

    #[test]
    fn iterator_stops_after_the_first_error() {
        let data = [0, 0, 0, 1, 0x41, 0, 0, 0, 9, 0x41];
        let items: Vec<_> = avcc_nals(&data, 4).unwrap().collect();
        assert_eq!(items.len(), 2);
        assert_eq!(items[0], Ok(&[0x41u8][..]));
        assert!(items[1].is_err());
    }

    #[test]
    fn contains_idr_finds_keyframes() {
        assert!(contains_idr(&avcc(&[SEI, IDR], 4), 4).unwrap());
        assert!(!contains_idr(&avcc(&[SEI, P], 2), 2).unwrap());
    }

    #[test]
    fn parameter_sets_reject_other_nal_types_and_reuse_their_buffer() {
        let mut p = ParameterSets::default();
        assert_eq!(p.push(IDR), Err(AvccError::NotAParameterSet(5)));
        assert_eq!(p.push(&[]), Err(AvccError::NotAParameterSet(0)));
        assert!(!p.is_complete());
        p.push(SPS).unwrap();
        p.push(PPS).unwrap();
        assert!(p.is_complete());
        assert_eq!(p.counts(), (1, 1));
        assert_eq!(p.profile_level_id(), Some([0x42, 0xe0, 0x1f]));
        let ptr = p.annexb().as_ptr();
        p.clear();
        assert_eq!(p.counts(), (0, 0));
        assert_eq!(p.profile_level_id(), None);
        p.push(SPS).unwrap();
        p.push(PPS).unwrap();
        assert_eq!(p.annexb().as_ptr(), ptr, "refilling must not reallocate");
        assert_eq!(p.annexb(), annexb(&[SPS, PPS]));
    }

    fn record(length_size_minus_one: u8, sps: &[&[u8]], pps: &[&[u8]]) -> Vec<u8> {
        let mut r = vec![1, 0x42, 0xe0, 0x1f, 0xfc | length_size_minus_one, 0xe0 | sps.len() as u8];
        for s in sps {
            r.extend_from_slice(&(s.len() as u16).to_be_bytes());
            r.extend_from_slice(s);
        }
        r.push(pps.len() as u8);
        for s in pps {
            r.extend_from_slice(&(s.len() as u16).to_be_bytes());
            r.extend_from_slice(s);
        }
        r
    }

    #[test]
    fn avcc_record_is_parsed() {
        let (p, length_size) = ParameterSets::from_avcc_record(&record(3, &[SPS], &[PPS])).unwrap();
        assert_eq!(length_size, 4);
        assert_eq!(p, params());
        let mut with_ext = record(1, &[SPS], &[PPS, PPS]);
        with_ext.extend_from_slice(&[0xfd, 0xf8, 0xf8, 0]); // high-profile extension: ignored
        let (p, length_size) = ParameterSets::from_avcc_record(&with_ext).unwrap();
        assert_eq!((length_size, p.counts()), (2, (1, 2)));
    }

    #[test]
    fn malformed_avcc_records_are_errors() {
        let good = record(3, &[SPS], &[PPS]);
        for cut in 0..good.len() {
            assert!(ParameterSets::from_avcc_record(&good[..cut]).is_err(), "cut at {cut}");
        }
        let mut version = good.clone();
        version[0] = 0;
        assert_eq!(
            ParameterSets::from_avcc_record(&version),
            Err(AvccError::BadRecord("configurationVersion is not 1"))
        );
        assert_eq!(ParameterSets::from_avcc_record(&record(2, &[SPS], &[PPS])), Err(AvccError::InvalidLengthSize(3)));
        assert_eq!(ParameterSets::from_avcc_record(&record(3, &[PPS], &[PPS])), Err(AvccError::NotAParameterSet(8)));
        assert_eq!(ParameterSets::from_avcc_record(&record(3, &[SPS], &[SPS])), Err(AvccError::NotAParameterSet(7)));
        let mut zero_len = record(3, &[SPS], &[PPS]);
        zero_len[6..8].copy_from_slice(&[0, 0]);
        assert!(ParameterSets::from_avcc_record(&zero_len).is_err());
    }
}
