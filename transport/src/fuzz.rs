//! The bodies of the cargo-fuzz targets in `fuzz/`, kept here so that the
//! seed corpora replay as ordinary tests (`tests/fuzz_seeds.rs`) and a
//! target cannot drift from the code it fuzzes. Each function feeds one
//! input to a parser of outside input and panics only if an invariant
//! breaks (the parser itself must never panic).

use crate::TransportError;

/// `fuzz/fuzz_targets/offer.rs`: the SDP offer intake yields an offer or a
/// `BadOffer` error, never another error kind or a panic; codec
/// negotiation on an accepted offer picks a codec the offer names, or
/// refuses with a bounded sentence.
pub fn offer(data: &[u8]) {
    use crate::codecs::{DEFAULT_PREFERENCE, choose_codec, no_common_codec_message, offered_codecs};
    match crate::offer::parse_offer(data) {
        Ok(offer) => {
            let offered = offered_codecs(&offer.sdp);
            match choose_codec(&offered, &DEFAULT_PREFERENCE) {
                Some(codec) => assert!(offered.usable(codec), "chose {codec:?}, which the offer does not name"),
                None => assert!(no_common_codec_message(&offered, &DEFAULT_PREFERENCE).len() < 2048),
            }
        }
        Err(TransportError::BadOffer(_)) => {}
        Err(other) => panic!("unexpected error kind: {other}"),
    }
}

/// `fuzz/fuzz_targets/whip.rs`: a WHIP server's answer — 2 bytes of
/// status (big-endian, taken modulo 1000), then `name: value` header lines,
/// an empty line, and the body — through every WHIP response parser:
/// POST interpretation (201/redirect/error), `Link` ICE servers, SDP
/// fragments of ICE restarts, and the answer update. They must never panic,
/// and what they accept must be usable.
pub fn whip(data: &[u8]) {
    use crate::whip::protocol::{
        PostOutcome, ice_restart_fragment, interpret_post, parse_endpoint, parse_link_header, parse_sdp_fragment,
        replace_ice_credentials,
    };
    let status = data.get(..2).map_or(0, |b| u16::from_be_bytes([b[0], b[1]]) % 1000);
    let text = String::from_utf8_lossy(data.get(2..).unwrap_or_default());
    let (head, body) = text.split_once("\n\n").unwrap_or((&text, ""));
    let headers: Vec<(String, String)> = head
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let base = url::Url::parse("https://whip.example/whip/endpoint/secret-key").expect("a constant URL");
    let usable = |u: &url::Url| matches!(u.scheme(), "http" | "https") && u.host_str().is_some();
    match interpret_post(&base, status, &headers, body.as_bytes(), true) {
        Ok(PostOutcome::Created(c)) => {
            assert_eq!(status, 201);
            assert!(usable(&c.resource), "resource {}", c.resource);
            assert!(c.answer.trim_start().starts_with("v=0"));
        }
        Ok(PostOutcome::Redirect(u)) => assert!(matches!(status, 307 | 308) && usable(&u), "redirect {u}"),
        Err(e) => assert!(!e.message.is_empty() && !e.message.contains("secret-key"), "{e}"),
    }
    for (_, value) in &headers {
        for server in parse_link_header(value) {
            let scheme = server.url.split(':').next().unwrap_or("");
            assert!(matches!(scheme.to_ascii_lowercase().as_str(), "stun" | "stuns" | "turn" | "turns"));
        }
    }
    let fragment = parse_sdp_fragment(body.as_bytes());
    let _ = ice_restart_fragment(body);
    if let (Some(ufrag), Some(pwd)) = (fragment.ufrag, fragment.pwd) {
        let updated = replace_ice_credentials(body, &ufrag, &pwd);
        assert_eq!(parse_sdp_fragment(updated.as_bytes()).ufrag.as_deref(), Some(ufrag.as_str()));
    }
    let _ = parse_endpoint(&text);
}

/// `fuzz/fuzz_targets/relay_message.rs`: the relay protocol's parsing, both
/// directions (a hostile sharer against the relay, a hostile relay against
/// the sharer). Every input yields a message or a `BadMessage` error, never
/// a panic; whatever parses survives encoding and parsing again unchanged.
pub fn relay_message(data: &[u8]) {
    use crate::relay::protocol::{encode, parse_relay_message, parse_sharer_message};
    match parse_sharer_message(data) {
        Ok(m) => assert_eq!(parse_sharer_message(encode(&m).as_bytes()).ok(), Some(m), "sharer message round trip"),
        Err(TransportError::BadMessage(_)) => {}
        Err(other) => panic!("unexpected error kind: {other}"),
    }
    match parse_relay_message(data) {
        Ok(m) => assert_eq!(parse_relay_message(encode(&m).as_bytes()).ok(), Some(m), "relay message round trip"),
        Err(TransportError::BadMessage(_)) => {}
        Err(other) => panic!("unexpected error kind: {other}"),
    }
}

/// A target's body: one input in, a panic only on a broken invariant.
pub type Body = fn(&[u8]);

/// The targets by name (the directory names under `fuzz/seeds/`).
pub const TARGETS: &[(&str, Body)] = &[("offer", offer), ("whip", whip), ("relay_message", relay_message)];
