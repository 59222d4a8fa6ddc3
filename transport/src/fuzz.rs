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

/// A cursor over fuzz input that runs dry instead of panicking.
struct Input<'a>(&'a [u8]);

impl<'a> Input<'a> {
    fn u8(&mut self) -> Option<u8> {
        let (first, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(*first)
    }

    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_be_bytes([self.u8()?, self.u8()?]))
    }

    fn take(&mut self, n: usize) -> &'a [u8] {
        let (head, tail) = self.0.split_at(n.min(self.0.len()));
        self.0 = tail;
        head
    }
}

/// The token and password of the share `http` fuzzes.
pub const HTTP_TOKEN: &str = "00112233445566778899aabbccddeeff";
/// See [`HTTP_TOKEN`].
pub const HTTP_PASSWORD: &str = "fuzz-password";

/// `fuzz/fuzz_targets/http.rs`: one HTTP request through the viewers'
/// server (the real axum router of a share with a password), as hyper
/// hands it over once the framing is parsed: everything Peep itself reads
/// — the path (token, session), `Content-Type`, `Authorization: Bearer`
/// with the wrong-password throttle, the body (the offer intake), CORS
/// preflights, the event stream, assets.
///
/// Input: a method byte, a path-template byte, the client address's last
/// byte, then text: the path suffix on the first line, `name: value`
/// header lines, an empty line, the body. The share is kept full, so an
/// acceptable offer ends in "full" (503) rather than a peer connection per
/// input.
///
/// Invariants: a status from the documented set (never 500), 401 carries
/// `WWW-Authenticate`, 429 `Retry-After`, and no answer contains the
/// password unless the request's own body did (a bad offer's error quotes
/// the offer back to its sender; found by the fuzzer).
pub fn http(data: &[u8]) {
    let _ = http_status(data);
}

/// [`http`], returning the answer's status (`None`: not a request hyper
/// would pass on).
pub fn http_status(data: &[u8]) -> Option<u16> {
    use axum::body::Body;
    use axum::extract::ConnectInfo;
    use axum::http::{Method, Request, StatusCode};
    use tower::ServiceExt as _;

    static RUNTIME: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    let runtime = RUNTIME
        .get_or_init(|| tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a fuzzing runtime"));
    let mut input = Input(data);
    let method = match input.u8().unwrap_or(0) % 7 {
        0 => Method::GET,
        1 => Method::POST,
        2 => Method::DELETE,
        3 => Method::OPTIONS,
        4 => Method::PATCH,
        5 => Method::PUT,
        _ => Method::HEAD,
    };
    let template = input.u8().unwrap_or(0) % 5;
    let client = std::net::SocketAddr::from(([10, 0, 0, input.u8().unwrap_or(1)], 40_000));
    let text = String::from_utf8_lossy(input.0);
    let (head, body) = text.split_once("\n\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let suffix = lines.next().unwrap_or("");
    let path = match template {
        0 => format!("/s/{HTTP_TOKEN}{suffix}"),
        1 => format!("/s/{HTTP_TOKEN}/whep{suffix}"),
        2 => format!("/s/{HTTP_TOKEN}/events/{suffix}"),
        3 => format!("/assets/{suffix}"),
        _ => suffix.to_owned(),
    };
    let mut request = Request::builder().method(method);
    for (name, value) in lines.filter_map(|l| l.split_once(':')) {
        request = request.header(name.trim(), value.trim());
    }
    // What hyper would refuse (a bad URI, header name or value) never reaches Peep.
    let Ok(mut request) = request.uri(path).body(Body::from(body.to_owned())) else { return None };
    request.extensions_mut().insert(ConnectInfo(client));

    let (requests, _encoder) = crossbeam_channel::bounded(crate::hub::ENCODER_REQUEST_CAPACITY);
    let shared = std::sync::Arc::new(crate::hub::Shared::new(
        crate::Secret::from(HTTP_TOKEN),
        Some(crate::Secret::from(HTTP_PASSWORD)),
        1,
        crate::BitrateRange::new(500_000, 2_000_000),
        requests,
        vec![std::net::IpAddr::from([127, 0, 0, 1])],
        false,
    ));
    // Full: an offer that passes every check is refused before a peer connection.
    shared.pending.store(1, std::sync::atomic::Ordering::Relaxed);
    let Ok(response) = runtime.block_on(crate::server::router(shared).oneshot(request));
    let status = response.status();
    let allowed = [
        StatusCode::OK,
        StatusCode::NO_CONTENT,
        StatusCode::BAD_REQUEST,
        StatusCode::UNAUTHORIZED,
        StatusCode::NOT_FOUND,
        StatusCode::METHOD_NOT_ALLOWED,
        StatusCode::PAYLOAD_TOO_LARGE,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        StatusCode::TOO_MANY_REQUESTS,
        StatusCode::SERVICE_UNAVAILABLE,
    ];
    assert!(allowed.contains(&status), "status {status}");
    let has = |h| response.headers().contains_key(h);
    if status == StatusCode::UNAUTHORIZED {
        assert!(has(axum::http::header::WWW_AUTHENTICATE), "401 without WWW-Authenticate");
    }
    if status == StatusCode::TOO_MANY_REQUESTS {
        assert!(has(axum::http::header::RETRY_AFTER), "429 without Retry-After");
    }
    // Event streams never end by themselves: only read what is ready.
    if status == StatusCode::OK && response.headers().get("content-type").is_some_and(|v| v == "text/event-stream") {
        return Some(status.as_u16());
    }
    let bytes = runtime
        .block_on(http_body_util::BodyExt::collect(response.into_body()))
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    // A bad offer's error quotes the offer, as sent by the same client:
    // the password in an answer is a leak only if the body did not carry it.
    if !body.contains(HTTP_PASSWORD) {
        assert!(!String::from_utf8_lossy(&bytes).contains(HTTP_PASSWORD), "an answer contains the password");
    }
    Some(status.as_u16())
}

/// A media packet of the `rtcp` target's send side.
#[derive(Debug, Clone)]
struct FuzzPacket {
    size: usize,
    end: bool,
    key: bool,
}

impl crate::pacer::Paced for FuzzPacket {
    fn size(&self) -> usize {
        self.size
    }
    fn frame_end(&self) -> bool {
        self.end
    }
    fn keyframe_start(&self) -> bool {
        self.key
    }
}

/// `fuzz/fuzz_targets/rtcp.rs`: a viewer's RTCP as Peep interprets it
/// itself, with time as an input. A script of operations drives one
/// viewer's send side (the estimator and pacer of [`crate::sender`], as
/// `sendside` wires them): let time pass, queue a frame, or receive a
/// compound RTCP packet (parsed by `rtc`), which goes through the RTCP tap
/// (PLI/FIR/NACK counts, loss, RTT — with an NTP clock that the input may
/// make jump), NACKs to the pacer, and transport-wide feedback (resolved
/// against the packets really sent, with `rtc`'s `History`) to the
/// estimator.
///
/// Script: one byte per operation, `op % 5`: 0 time passes (4 ms × the
/// next byte), 1 a frame of 1–32 packets is queued (a keyframe when
/// `op / 5` is odd), 2 an RTCP packet arrives (a 16-bit length, then the
/// bytes), 3 and 4 the wall clock jumps forward or back (a 16-bit amount).
///
/// Invariants: never a panic; the estimate stays finite within its
/// bounds; the queue delay stays finite; the RTT is never absurd.
pub fn rtcp(data: &[u8]) {
    let _ = rtcp_run(data);
}

/// What a [`rtcp`] script did, for tests of the seeds.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RtcpOutcome {
    /// Packets the send side released.
    pub sent: usize,
    /// Packet reports the estimator was fed (from transport feedback).
    pub reports: usize,
    /// Sequence numbers NACKed for the stream.
    pub nacked: usize,
    /// PLIs the tap counted.
    pub pli: u64,
    /// Loss from the last receiver report, 1/256.
    pub fraction_lost_256: u32,
}

/// [`rtcp`], returning what happened.
pub fn rtcp_run(data: &[u8]) -> RtcpOutcome {
    use rtc::interceptor::{History, convert_twcc};
    use rtc::rtcp::transport_feedbacks::transport_layer_cc::TransportLayerCc;
    use rtc::rtcp::transport_feedbacks::transport_layer_nack::TransportLayerNack;
    use std::time::{Duration, Instant};

    use crate::bwe::BweConfig;
    use crate::pacer::Release;
    use crate::sender::SendController;

    const SSRC: u32 = 0x5eed_0001;
    let config = BweConfig { start_bps: 1e6, min_bps: 5e4, max_bps: 6e6 };
    let mut tx: SendController<FuzzPacket> = SendController::new(config);
    tx.start_sequence_at(40_000);
    let stats = crate::viewer::ViewerStats::new();
    let mut history = History::new();
    let mut twcc: u16 = 65_000;
    let start = Instant::now();
    let mut now = start;
    // The wall clock the RTCP tap reads (compact NTP), which may jump.
    let mut ntp: u32 = 1000 << 16;
    let mut outcome = RtcpOutcome::default();
    let mut input = Input(data);
    while let Some(op) = input.u8() {
        match op % 5 {
            0 => {
                let ms = u64::from(input.u8().unwrap_or(0)) * 4;
                now += Duration::from_millis(ms);
                ntp = ntp.wrapping_add((ms << 16) as u32 / 1000);
            }
            1 => {
                let n = 1 + usize::from(input.u8().unwrap_or(0) % 32);
                let key = (op / 5) % 2 == 1;
                for i in 0..n {
                    tx.enqueue(now, FuzzPacket { size: 200 + 40 * i, end: i + 1 == n, key: key && i == 0 });
                }
            }
            2 => {
                let len = usize::from(input.u16().unwrap_or(0));
                let mut raw = input.take(len);
                if let Ok(packets) = rtc::rtcp::packet::unmarshal(&mut raw) {
                    crate::interceptors::tap(&stats, &packets, ntp);
                    for p in &packets {
                        if let Some(nack) = p.as_any().downcast_ref::<TransportLayerNack>()
                            && nack.media_ssrc == SSRC
                        {
                            let seqs: Vec<u16> = nack.nacks.iter().flat_map(|pair| pair.packet_list()).collect();
                            outcome.nacked += seqs.len();
                            tx.on_nack(now, seqs);
                        }
                        if let Some(feedback) = p.as_any().downcast_ref::<TransportLayerCc>() {
                            for ack in convert_twcc(feedback) {
                                history.on_twcc_feedback(now, ack);
                            }
                            let reports = history.take_reports();
                            outcome.reports += reports.len();
                            tx.on_feedback(now, &reports);
                        }
                    }
                }
            }
            // The wall clock jumps (NTP only: `Instant` is monotonic).
            3 => ntp = ntp.wrapping_add(u32::from(input.u16().unwrap_or(0)) << 12),
            _ => ntp = ntp.wrapping_sub(u32::from(input.u16().unwrap_or(0)) << 12),
        }
        tx.handle_timeout(now);
        while let Some(release) = tx.poll_release(now) {
            let (seq, size) = match release {
                Release::Media { packet, seq, .. } | Release::Retransmission { packet, seq } => (seq, packet.size),
                Release::Padding { seq, size, .. } | Release::TailProbe { seq, size } => (seq, size),
            };
            history.add_outgoing(SSRC, seq, true, twcc, size, now);
            twcc = twcc.wrapping_add(1);
            outcome.sent += 1;
        }
        let target = tx.target_bps();
        assert!(target.is_finite() && target >= config.min_bps * 0.999 && target <= config.max_bps * 1.001, "{target}");
        assert!(tx.queue_delay() < Duration::from_secs(24 * 3600), "{:?}", tx.queue_delay());
        let rtt_us = stats.rtt_us.load(std::sync::atomic::Ordering::Relaxed);
        assert!(rtt_us <= 60_000_000, "RTT {rtt_us} µs");
    }
    // Bounded memory however long the script: the history forgets.
    assert!(history.len() <= 100_000, "history of {}", history.len());
    outcome.pli = stats.pli.load(std::sync::atomic::Ordering::Relaxed);
    outcome.fraction_lost_256 = stats.fraction_lost_256.load(std::sync::atomic::Ordering::Relaxed);
    outcome
}

/// A target's body: one input in, a panic only on a broken invariant.
pub type Body = fn(&[u8]);

/// The targets by name (the directory names under `fuzz/seeds/`).
pub const TARGETS: &[(&str, Body)] =
    &[("offer", offer), ("whip", whip), ("relay_message", relay_message), ("http", http), ("rtcp", rtcp)];

#[cfg(test)]
mod tests {
    use super::*;

    fn seed(target: &str, name: &str) -> Vec<u8> {
        let path = format!("{}/../fuzz/seeds/{target}/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    /// The real Chromium requests reach the handlers they are meant for:
    /// the fuzzer starts deep, not at "404".
    #[test]
    fn http_seeds_reach_every_handler() {
        for (name, status) in [
            ("chromium-get-page.bin", 200),
            ("chromium-post-offer.bin", 503),
            ("chromium-post-wrong-password.bin", 401),
            ("chromium-delete.bin", 404),
            ("chromium-get-favicon.bin", 404),
            ("chromium-get-events.bin", 404),
            ("chromium-get-asset.bin", 200),
            ("preflight.bin", 204),
        ] {
            assert_eq!(http_status(&seed("http", name)), Some(status), "{name}");
        }
    }

    /// The RTCP seeds drive the send side: Chromium's transport feedback
    /// resolves against packets really sent, its PLI and loss are read,
    /// NACKs reach the pacer.
    #[test]
    fn rtcp_seeds_drive_the_send_side() {
        let keyframe = rtcp_run(&seed("rtcp", "chromium-keyframe-twcc-rr-pli.bin"));
        assert!(keyframe.sent >= 10 && keyframe.reports > 0 && keyframe.pli == 1, "{keyframe:?}");
        let stream = rtcp_run(&seed("rtcp", "chromium-twcc-stream.bin"));
        assert!(stream.reports >= 10, "{stream:?}");
        let nack = rtcp_run(&seed("rtcp", "nack-built.bin"));
        assert_eq!(nack.nacked, 2 * 3, "{nack:?}");
    }
}
