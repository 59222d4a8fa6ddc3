//! Intake of a viewer's SDP offer: everything that can be checked before a
//! peer connection exists. The fuzz target `offer` drives this.

use webrtc::peer_connection::RTCSessionDescription;

use crate::error::{Result, TransportError};

/// Longest accepted offer, in bytes (the HTTP layer enforces the same bound).
pub const MAX_OFFER_BYTES: usize = 64 * 1024;

fn bad(reason: impl Into<String>) -> TransportError {
    TransportError::BadOffer(reason.into())
}

/// Checks and parses an offer body: size, UTF-8, a video section, and the
/// SDP grammar. Never panics on any input.
pub fn parse_offer(body: &[u8]) -> Result<RTCSessionDescription> {
    if body.len() > MAX_OFFER_BYTES {
        return Err(bad(format!("{} bytes is over the {MAX_OFFER_BYTES}-byte limit", body.len())));
    }
    let text = std::str::from_utf8(body).map_err(|_| bad("not UTF-8"))?;
    if !text.lines().any(|l| l.starts_with("m=video")) {
        return Err(bad("the offer has no video section"));
    }
    let description = RTCSessionDescription::offer(text.to_owned()).map_err(|e| bad(short(&e.to_string())))?;
    Ok(description)
}

/// webrtc errors can quote whole inputs: keep messages short.
pub(crate) fn short(s: &str) -> String {
    s.chars().take(160).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_what_is_not_an_offer() {
        for (body, why) in
            [(&b"\xff\xfe"[..], "not UTF-8"), (b"v=0\r\n", "no video section"), (b"m=video", "bad SDP offer")]
        {
            let err = parse_offer(body).expect_err("refused").to_string();
            assert!(err.contains(why), "{err}");
        }
        assert!(parse_offer(&vec![b'v'; MAX_OFFER_BYTES + 1]).is_err());
    }
}
