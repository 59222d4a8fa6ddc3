//! The WHIP protocol (RFC 9725) without I/O: what a server's answers mean.
//!
//! Every function here takes the pieces of an HTTP exchange (status,
//! headers, body) as plain values and returns a decision, so the client's
//! behaviour can be tested without a server and fuzzed (`fuzz/fuzz_targets/whip.rs`,
//! body in [`crate::fuzz::whip`]). None of them panics on any input.
//!
//! * [`interpret_post`]: `201 Created` + `Location` + SDP answer, a
//!   redirect (307/308), or an error in words ([`WhipError`]).
//! * [`parse_link_header`]: ICE servers from `Link: <…>; rel="ice-server"`.
//! * [`ice_restart_fragment`] / [`parse_sdp_fragment`] /
//!   [`replace_ice_credentials`]: ICE restart with `PATCH` and an
//!   `application/trickle-ice-sdpfrag` body (RFC 8840).
//! * [`RetryPolicy`]: when to publish again, and when to give up.

use std::fmt;
use std::time::{Duration, Instant};

use url::Url;

use crate::secret::Secret;

/// Largest response body read from a WHIP server (an SDP answer is a few KiB).
pub const MAX_RESPONSE_BYTES: usize = 64 * 1024;
/// Redirects followed for one POST.
pub const MAX_REDIRECTS: usize = 5;
/// Content type of offers and answers.
pub const SDP: &str = "application/sdp";
/// Content type of trickle/ICE-restart bodies.
pub const SDP_FRAGMENT: &str = "application/trickle-ice-sdpfrag";

/// What kind of failure a [`WhipError`] is; decides whether to try again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhipErrorKind {
    /// The URL is not usable (scheme, host).
    BadUrl,
    /// The server refused the credentials (401, 403).
    Auth,
    /// No such endpoint (404, 410).
    NotFound,
    /// The server refused this request for good (400, 405, 406, 415, 422, …).
    Refused,
    /// The server is busy or restarting (409, 429, 503, other 5xx): try later.
    Unavailable,
    /// The server could not be reached, or the connection broke.
    Network,
    /// The server's answer does not follow the protocol.
    Protocol,
    /// The media connection could not be set up or was lost.
    Media,
    /// TLS failed: most often the server's certificate is not trusted here.
    Tls,
}

/// A failed WHIP exchange, in words a person can act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WhipError {
    /// The kind of failure.
    pub kind: WhipErrorKind,
    /// What happened and what to do.
    pub message: String,
    /// The server asked to wait this long (`Retry-After`).
    pub retry_after: Option<Duration>,
}

impl WhipError {
    /// An error of `kind` saying `message`.
    pub fn new(kind: WhipErrorKind, message: impl Into<String>) -> Self {
        Self { kind, message: message.into(), retry_after: None }
    }

    /// Whether trying again later may succeed even before a first success
    /// (the server is down or busy, the network broke).
    pub fn transient(&self) -> bool {
        matches!(self.kind, WhipErrorKind::Unavailable | WhipErrorKind::Network | WhipErrorKind::Media)
    }
}

impl fmt::Display for WhipError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for WhipError {}

/// A STUN or TURN server a WHIP server offered in a `Link` header.
#[derive(Clone, PartialEq, Eq)]
pub struct IceServerLink {
    /// `stun:…`, `turn:…` or `turns:…`.
    pub url: String,
    /// TURN user name.
    pub username: Option<String>,
    /// TURN credential (never printed).
    pub credential: Option<Secret>,
}

impl fmt::Debug for IceServerLink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // TURN URLs can carry credentials in query parameters: print the scheme only.
        let scheme = self.url.split(':').next().unwrap_or("");
        f.debug_struct("IceServerLink")
            .field("scheme", &scheme)
            .field("username", &self.username.as_ref().map(|_| "***"))
            .field("credential", &self.credential)
            .finish()
    }
}

/// A successful publish: the server's answer and where the session lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Created {
    /// The WHIP session's resource URL (for PATCH and DELETE), absolute.
    pub resource: Url,
    /// The SDP answer.
    pub answer: String,
    /// ICE servers the server offered.
    pub ice_servers: Vec<IceServerLink>,
    /// The resource's entity tag, for `If-Match` on PATCH.
    pub etag: Option<String>,
    /// The server said it takes ICE restarts and trickle by PATCH
    /// (`Accept-Patch: application/trickle-ice-sdpfrag`).
    pub accepts_patch: bool,
}

/// What a POST's response means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PostOutcome {
    /// Published.
    Created(Created),
    /// Post the same offer to this URL instead.
    Redirect(Url),
}

/// Checks a WHIP endpoint URL: `http` or `https`, with a host, no
/// credentials in it. The error never quotes the URL (it may carry a key).
pub fn parse_endpoint(url: &str) -> Result<Url, WhipError> {
    let bad = |why: &str| WhipError::new(WhipErrorKind::BadUrl, format!("the WHIP URL is not usable: {why}"));
    let parsed = Url::parse(url.trim()).map_err(|e| bad(&e.to_string()))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(bad("it must start with http:// or https://"));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(bad("it has no host"));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(bad("put credentials in the token (--whip-token), not in the URL"));
    }
    Ok(parsed)
}

/// The part of a URL that is safe to show: `host[:port]`. Paths and
/// queries may carry stream keys (Cloudflare's WHIP URLs do).
pub fn display_host(url: &Url) -> String {
    match (url.host_str(), url.port()) {
        (Some(h), Some(p)) => format!("{h}:{p}"),
        (Some(h), None) => h.to_owned(),
        _ => "?".to_owned(),
    }
}

/// The value of the first header named `name` (ASCII case-insensitive).
pub fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
}

/// Every value of headers named `name`.
fn headers_named<'a>(headers: &'a [(String, String)], name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    headers.iter().filter(move |(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
}

/// A short, printable excerpt of a server's error body: the first line,
/// control characters removed, at most 120 characters.
pub fn body_excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(1024)]);
    let line = text.lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or("");
    let clean: String = line.chars().filter(|c| !c.is_control()).take(120).collect();
    clean
}

/// `Retry-After` in seconds (the HTTP-date form is ignored), at most an hour.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let secs: u64 = value.trim().parse().ok()?;
    Some(Duration::from_secs(secs.min(3600)))
}

fn reason(status: u16) -> &'static str {
    match status {
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        409 => "Conflict",
        410 => "Gone",
        415 => "Unsupported Media Type",
        422 => "Unprocessable Content",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "",
    }
}

/// `HTTP 403 Forbidden: "Unauthorized"` — the status and what the server said.
fn status_words(status: u16, body: &[u8]) -> String {
    let mut s = format!("HTTP {status}");
    let r = reason(status);
    if !r.is_empty() {
        s.push(' ');
        s.push_str(r);
    }
    let excerpt = body_excerpt(body);
    if !excerpt.is_empty() && !excerpt.starts_with('<') {
        s.push_str(&format!(": \"{excerpt}\""));
    }
    s
}

/// Interprets the response to a WHIP POST sent to `request_url`.
/// `sent_token` says whether the request carried a bearer token (it shapes
/// the advice given on 401/403).
pub fn interpret_post(
    request_url: &Url,
    status: u16,
    headers: &[(String, String)],
    body: &[u8],
    sent_token: bool,
) -> Result<PostOutcome, WhipError> {
    let server = display_host(request_url);
    let words = status_words(status, body);
    let err = |kind: WhipErrorKind, message: String| {
        let mut e = WhipError::new(kind, message);
        e.retry_after = header(headers, "retry-after").and_then(parse_retry_after);
        e
    };
    match status {
        201 => {}
        200 | 202..=299 => {
            return Err(err(
                WhipErrorKind::Protocol,
                format!("the WHIP server at {server} answered {words} instead of 201 Created; is this a WHIP URL?"),
            ));
        }
        307 | 308 => {
            let Some(location) = header(headers, "location") else {
                return Err(err(WhipErrorKind::Protocol, format!("{server} redirected ({words}) without a Location")));
            };
            let target = request_url.join(location.trim()).map_err(|_| {
                err(WhipErrorKind::Protocol, format!("{server} redirected ({words}) to an unusable Location"))
            })?;
            if !matches!(target.scheme(), "http" | "https") {
                return Err(err(WhipErrorKind::Protocol, format!("{server} redirected to a non-HTTP URL")));
            }
            return Ok(PostOutcome::Redirect(target));
        }
        300..=399 => {
            return Err(err(
                WhipErrorKind::Refused,
                format!(
                    "{server} answered {words}: WHIP follows only 307/308 redirects (others would lose the offer); \
                     use the URL it points to"
                ),
            ));
        }
        401 | 403 => {
            let advice = if sent_token {
                "check the token (--whip-token)"
            } else {
                "this endpoint may need a token (--whip-token)"
            };
            // simple-whip-server says 403 "Endpoint ID already in use" when
            // someone is already publishing there: say so instead of blaming the token.
            let busy = body_excerpt(body).to_ascii_lowercase().contains("in use");
            let message = if busy {
                format!(
                    "the WHIP server at {server} refused the publish ({words}): someone is already publishing there"
                )
            } else {
                format!("the WHIP server at {server} refused the publish ({words}); {advice}")
            };
            return Err(err(WhipErrorKind::Auth, message));
        }
        404 | 410 => {
            return Err(err(
                WhipErrorKind::NotFound,
                format!("no WHIP endpoint at this URL on {server} ({words}); check the URL"),
            ));
        }
        409 | 429 | 500..=599 => {
            return Err(err(
                WhipErrorKind::Unavailable,
                format!("the WHIP server at {server} is unavailable for now ({words})"),
            ));
        }
        405 | 406 | 415 => {
            return Err(err(
                WhipErrorKind::Refused,
                format!("{server} does not take WHIP publishes at this URL ({words}); check the URL"),
            ));
        }
        _ => {
            return Err(err(
                WhipErrorKind::Refused,
                format!("the WHIP server at {server} refused the offer ({words})"),
            ));
        }
    }
    let Some(location) = header(headers, "location") else {
        return Err(err(
            WhipErrorKind::Protocol,
            format!("the WHIP server at {server} answered 201 without a Location header"),
        ));
    };
    let resource =
        request_url.join(location.trim()).ok().filter(|u| matches!(u.scheme(), "http" | "https")).ok_or_else(|| {
            err(WhipErrorKind::Protocol, format!("the WHIP server at {server} sent an unusable Location"))
        })?;
    let answer = std::str::from_utf8(body)
        .ok()
        .filter(|a| a.trim_start().starts_with("v=0"))
        .ok_or_else(|| err(WhipErrorKind::Protocol, format!("the WHIP server at {server} sent no SDP answer")))?
        .to_owned();
    let ice_servers = headers_named(headers, "link").flat_map(parse_link_header).collect();
    let etag = header(headers, "etag").map(|e| e.trim().to_owned()).filter(|e| !e.is_empty());
    let accepts_patch = headers_named(headers, "accept-patch")
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(SDP_FRAGMENT));
    Ok(PostOutcome::Created(Created { resource, answer, ice_servers, etag, accepts_patch }))
}

/// Splits `s` at `sep` outside double-quoted strings (with `\` escapes).
fn split_unquoted(s: &str, sep: char) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, c) in s.char_indices() {
        if escaped {
            escaped = false;
        } else if quoted && c == '\\' {
            escaped = true;
        } else if c == '"' {
            quoted = !quoted;
        } else if c == sep && !quoted {
            parts.push(&s[start..i]);
            start = i + c.len_utf8();
        }
    }
    parts.push(&s[start..]);
    parts
}

/// A parameter value without its quotes and escapes.
fn unquote(v: &str) -> String {
    let v = v.trim();
    match v.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
        Some(inner) => {
            let mut out = String::with_capacity(inner.len());
            let mut escaped = false;
            for c in inner.chars() {
                if escaped || c != '\\' {
                    out.push(c);
                    escaped = false;
                } else {
                    escaped = true;
                }
            }
            out
        }
        None => v.to_owned(),
    }
}

/// The ICE servers in one `Link` header value (RFC 8288 syntax; RFC 9725
/// §4.6): links with `rel="ice-server"` and a `stun:`, `turn:` or `turns:`
/// target, with `username` and `credential` when given. Other links are
/// ignored.
pub fn parse_link_header(value: &str) -> Vec<IceServerLink> {
    let mut servers = Vec::new();
    for link in split_unquoted(value, ',') {
        let mut params = split_unquoted(link, ';').into_iter();
        let target = params.next().unwrap_or("").trim();
        let Some(url) = target.strip_prefix('<').and_then(|t| t.strip_suffix('>')) else { continue };
        let url = url.trim();
        let scheme = url.split(':').next().unwrap_or("").to_ascii_lowercase();
        if !matches!(scheme.as_str(), "stun" | "stuns" | "turn" | "turns") || url.len() <= scheme.len() + 1 {
            continue;
        }
        let (mut rel, mut username, mut credential) = (false, None, None);
        for p in params {
            let Some((name, v)) = p.split_once('=') else { continue };
            match name.trim().to_ascii_lowercase().as_str() {
                "rel" => rel = unquote(v).split_ascii_whitespace().any(|r| r.eq_ignore_ascii_case("ice-server")),
                "username" => username = Some(unquote(v)),
                "credential" => credential = Some(Secret::new(unquote(v))),
                _ => {}
            }
        }
        if rel {
            servers.push(IceServerLink { url: url.to_owned(), username, credential });
        }
    }
    servers
}

/// The ICE parameters and candidates of an SDP fragment (RFC 8840) or of
/// a whole SDP.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SdpFragment {
    /// `a=ice-ufrag`.
    pub ufrag: Option<String>,
    /// `a=ice-pwd`.
    pub pwd: Option<String>,
    /// `a=candidate:` lines, without the `a=` prefix.
    pub candidates: Vec<String>,
    /// `a=end-of-candidates` was present.
    pub end_of_candidates: bool,
}

/// Reads the ICE lines of an `application/trickle-ice-sdpfrag` body (or of
/// any SDP): the first ufrag and password, every candidate.
pub fn parse_sdp_fragment(body: &[u8]) -> SdpFragment {
    let text = String::from_utf8_lossy(&body[..body.len().min(MAX_RESPONSE_BYTES)]);
    let mut f = SdpFragment::default();
    for line in text.lines().map(str::trim) {
        if let Some(v) = line.strip_prefix("a=ice-ufrag:") {
            f.ufrag.get_or_insert_with(|| v.trim().to_owned());
        } else if let Some(v) = line.strip_prefix("a=ice-pwd:") {
            f.pwd.get_or_insert_with(|| v.trim().to_owned());
        } else if let Some(c) = line.strip_prefix("a=") {
            if c.starts_with("candidate:") {
                f.candidates.push(c.to_owned());
            } else if c == "end-of-candidates" {
                f.end_of_candidates = true;
            }
        }
    }
    f
}

/// The body of an ICE-restart PATCH (RFC 9725 §4.3.2): the new ICE
/// credentials and candidates of `offer` (a whole local SDP), per media
/// section (`m=` and `a=mid` lines kept), CRLF line ends.
pub fn ice_restart_fragment(offer: &str) -> String {
    let mut out = String::new();
    let mut session_level = true;
    let mut ice_options: Option<&str> = None;
    let (mut ufrag, mut pwd): (Option<&str>, Option<&str>) = (None, None);
    for line in offer.lines().map(str::trim_end) {
        if line.starts_with("m=") {
            session_level = false;
        }
        if session_level {
            if line.starts_with("a=ice-options:") {
                ice_options = Some(line);
            } else if line.starts_with("a=ice-ufrag:") {
                ufrag = Some(line);
            } else if line.starts_with("a=ice-pwd:") {
                pwd = Some(line);
            }
        }
    }
    for l in [ice_options, ufrag, pwd].into_iter().flatten() {
        out.push_str(l);
        out.push_str("\r\n");
    }
    session_level = true;
    for line in offer.lines().map(str::trim_end) {
        if line.starts_with("m=") {
            session_level = false;
        }
        if session_level {
            continue;
        }
        let keep = line.starts_with("m=")
            || line.starts_with("a=mid:")
            || line.starts_with("a=ice-ufrag:")
            || line.starts_with("a=ice-pwd:")
            || line.starts_with("a=candidate:")
            || line == "a=end-of-candidates";
        if keep {
            out.push_str(line);
            out.push_str("\r\n");
        }
    }
    out
}

/// `sdp` with every `a=ice-ufrag` / `a=ice-pwd` value replaced: the
/// server's previous answer, updated with the credentials its ICE-restart
/// reply carried. Line ends are CRLF.
pub fn replace_ice_credentials(sdp: &str, ufrag: &str, pwd: &str) -> String {
    let mut out = String::with_capacity(sdp.len());
    for line in sdp.lines().map(str::trim_end) {
        if line.starts_with("a=ice-ufrag:") {
            out.push_str("a=ice-ufrag:");
            out.push_str(ufrag);
        } else if line.starts_with("a=ice-pwd:") {
            out.push_str("a=ice-pwd:");
            out.push_str(pwd);
        } else {
            out.push_str(line);
        }
        out.push_str("\r\n");
    }
    out
}

/// Offers must use CRLF line ends (RFC 8866; some servers refuse LF).
pub fn crlf(sdp: &str) -> String {
    let mut out = String::with_capacity(sdp.len() + 64);
    for line in sdp.lines() {
        out.push_str(line.trim_end_matches('\r'));
        out.push_str("\r\n");
    }
    out
}

/// First retry delay after a failure.
pub const BACKOFF_START: Duration = Duration::from_secs(1);
/// Longest delay between retries.
pub const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// What to do after a failed or lost publish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Publish again at this time.
    At(Instant),
    /// Stop: the failure will not go away by itself.
    GiveUp,
}

/// Decides when to publish again. Pure logic, time as an input.
///
/// Before the first successful publish, a failure that will not go away by
/// itself (wrong token, wrong URL, refused offer) gives up at once, so a
/// typo is reported instead of retried forever. Once a publish has gone
/// live, every failure is retried (the server may be restarting; it may
/// come back with a 503 or even a 404 until its endpoints are set up
/// again), with exponential back-off from [`BACKOFF_START`] to
/// [`BACKOFF_MAX`], or as long as a `Retry-After` asks if that is longer.
/// The back-off starts again from the beginning after each successful
/// publish.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    ever_live: bool,
    next_delay: Duration,
    failures: u32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self { ever_live: false, next_delay: BACKOFF_START, failures: 0 }
    }
}

impl RetryPolicy {
    /// The publish went live.
    pub fn on_live(&mut self) {
        self.ever_live = true;
        self.next_delay = BACKOFF_START;
        self.failures = 0;
    }

    /// A publish attempt failed (or a live one was lost) at `now`.
    pub fn on_failure(&mut self, error: &WhipError, now: Instant) -> Retry {
        self.failures += 1;
        if !self.ever_live && !error.transient() {
            return Retry::GiveUp;
        }
        // Retry-After (at most an hour, see parse_retry_after) may ask for longer.
        let delay = self.next_delay.max(error.retry_after.unwrap_or_default());
        self.next_delay = (self.next_delay * 2).min(BACKOFF_MAX);
        Retry::At(now + delay)
    }

    /// Failures since the last successful publish.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// Whether a publish has gone live at least once.
    pub fn ever_live(&self) -> bool {
        self.ever_live
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(n, v)| ((*n).to_owned(), (*v).to_owned())).collect()
    }

    fn endpoint() -> Url {
        parse_endpoint("http://sfu.example:7080/whip/endpoint/abc").expect("url")
    }

    const ANSWER: &str = "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nt=0 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 102\r\n\
                          a=ice-ufrag:srv1\r\na=ice-pwd:srvpwd1\r\na=mid:0\r\n";

    #[test]
    fn created_with_relative_location_links_and_patch() {
        let headers = h(&[
            ("Location", "/whip/resource/abc"),
            ("Content-Type", "application/sdp"),
            ("ETag", "\"xyz\""),
            ("Accept-Patch", "application/trickle-ice-sdpfrag"),
            (
                "Link",
                "<stun:stun.example.net>; rel=\"ice-server\", <turn:turn.example.net?transport=udp>; \
                 rel=\"ice-server\"; username=\"alice-turn\"; credential=\"pa,ss;word\"; credential-type=\"password\"",
            ),
            ("link", "<https://example.net/help>; rel=\"help\""),
        ]);
        let Ok(PostOutcome::Created(c)) = interpret_post(&endpoint(), 201, &headers, ANSWER.as_bytes(), false) else {
            panic!("created")
        };
        assert_eq!(c.resource.as_str(), "http://sfu.example:7080/whip/resource/abc");
        assert_eq!(c.answer, ANSWER);
        assert_eq!(c.etag.as_deref(), Some("\"xyz\""));
        assert!(c.accepts_patch);
        assert_eq!(c.ice_servers.len(), 2, "{:?}", c.ice_servers);
        assert_eq!(c.ice_servers[0].url, "stun:stun.example.net");
        assert_eq!(c.ice_servers[1].url, "turn:turn.example.net?transport=udp");
        assert_eq!(c.ice_servers[1].username.as_deref(), Some("alice-turn"));
        assert_eq!(c.ice_servers[1].credential.as_ref().map(Secret::expose), Some("pa,ss;word"));
        let debug = format!("{:?}", c.ice_servers);
        assert!(!debug.contains("pa,ss") && !debug.contains("alice"), "{debug}");
    }

    #[test]
    fn a_real_janus_201_parses() {
        // simple-whip-server + Janus 1.1.2's answer, as the fuzz seed keeps it
        // (2 bytes of status, header lines, an empty line, the body).
        let seed = include_bytes!("../../../fuzz/seeds/whip/janus-201-created.bin");
        let text = std::str::from_utf8(&seed[2..]).expect("UTF-8");
        let (head, body) = text.split_once("\n\n").expect("head and body");
        let headers: Vec<(String, String)> = head
            .lines()
            .filter_map(|l| l.split_once(": "))
            .map(|(n, v)| (n.to_ascii_lowercase(), v.to_owned()))
            .collect();
        let url = parse_endpoint("http://10.245.1.2:7080/whip/endpoint/e1").expect("url");
        let Ok(PostOutcome::Created(c)) = interpret_post(&url, 201, &headers, body.as_bytes(), true) else {
            panic!("created")
        };
        assert_eq!(c.resource.as_str(), "http://10.245.1.2:7080/whip/resource/e1");
        assert!(c.accepts_patch && c.etag.is_some() && c.answer.contains("a=ice-ufrag:"));
        assert_eq!(c.ice_servers.len(), 2);
    }

    #[test]
    fn absolute_location_elsewhere_is_kept() {
        let headers = h(&[("location", "https://media.example/session/9")]);
        let Ok(PostOutcome::Created(c)) = interpret_post(&endpoint(), 201, &headers, ANSWER.as_bytes(), true) else {
            panic!("created")
        };
        assert_eq!(c.resource.as_str(), "https://media.example/session/9");
        assert!(!c.accepts_patch && c.etag.is_none() && c.ice_servers.is_empty());
    }

    #[test]
    fn redirects_307_and_308_are_followed_others_explained() {
        for status in [307, 308] {
            let r = interpret_post(&endpoint(), status, &h(&[("Location", "/elsewhere/x")]), b"", false);
            assert_eq!(r, Ok(PostOutcome::Redirect(Url::parse("http://sfu.example:7080/elsewhere/x").expect("url"))));
        }
        let e = interpret_post(&endpoint(), 307, &[], b"", false).expect_err("no location");
        assert_eq!(e.kind, WhipErrorKind::Protocol);
        let e = interpret_post(&endpoint(), 302, &h(&[("Location", "/x")]), b"", false).expect_err("302");
        assert!(e.message.contains("307/308"), "{e}");
        let e = interpret_post(&endpoint(), 307, &h(&[("Location", "file:///etc/passwd")]), b"", false)
            .expect_err("file scheme");
        assert_eq!(e.kind, WhipErrorKind::Protocol);
    }

    #[test]
    fn errors_are_in_words() {
        let e = interpret_post(&endpoint(), 403, &[], b"Unauthorized", true).expect_err("403");
        assert_eq!(e.kind, WhipErrorKind::Auth);
        assert!(e.message.contains("HTTP 403 Forbidden: \"Unauthorized\"") && e.message.contains("check the token"));
        assert!(e.message.contains("sfu.example:7080") && !e.message.contains("/whip/endpoint/abc"), "{e}");
        let e = interpret_post(&endpoint(), 401, &[], b"", false).expect_err("401");
        assert!(e.message.contains("may need a token"), "{e}");
        let e = interpret_post(&endpoint(), 403, &[], b"Endpoint ID already in use", true).expect_err("in use");
        assert!(e.message.contains("already publishing"), "{e}");
        let e = interpret_post(&endpoint(), 404, &[], b"Invalid endpoint ID", false).expect_err("404");
        assert_eq!(e.kind, WhipErrorKind::NotFound);
        assert!(e.message.contains("check the URL"));
        let e = interpret_post(&endpoint(), 503, &h(&[("Retry-After", "7")]), b"Janus unavailable", false)
            .expect_err("503");
        assert!(e.transient() && e.retry_after == Some(Duration::from_secs(7)), "{e:?}");
        assert!(e.message.contains("Janus unavailable"));
        let e = interpret_post(&endpoint(), 415, &[], b"<html>long page</html>", false).expect_err("415");
        assert!(!e.transient() && !e.message.contains("html"), "{e}");
        let e = interpret_post(&endpoint(), 200, &[], ANSWER.as_bytes(), false).expect_err("200");
        assert_eq!(e.kind, WhipErrorKind::Protocol);
        let e = interpret_post(&endpoint(), 201, &[], ANSWER.as_bytes(), false).expect_err("no location");
        assert!(e.message.contains("without a Location"));
        let e = interpret_post(&endpoint(), 201, &h(&[("Location", "/r")]), b"<html>", false).expect_err("no sdp");
        assert!(e.message.contains("no SDP answer"));
        let e = interpret_post(&endpoint(), 500, &[], b"\x1b[31mboom\x07\n second line", false).expect_err("500");
        assert!(e.message.contains("\"[31mboom\"") && !e.message.contains('\x1b'), "{e}");
    }

    #[test]
    fn endpoint_urls_are_checked_without_quoting_them() {
        assert!(parse_endpoint("https://customer-x.cloudflarestream.com/KEY/webRTC/publish").is_ok());
        for (url, why) in [
            ("ftp://host/x", "http:// or https://"),
            ("not a url SECRET", "relative URL"),
            ("http://user:SECRET@host/whip", "token"),
        ] {
            let e = parse_endpoint(url).expect_err(url);
            assert!(e.message.contains(why) && !e.message.contains("SECRET"), "{url}: {e}");
        }
        assert_eq!(display_host(&endpoint()), "sfu.example:7080");
    }

    #[test]
    fn link_headers_tolerate_odd_input() {
        assert!(parse_link_header("").is_empty());
        assert!(parse_link_header("<stun:x>").is_empty(), "no rel");
        assert!(parse_link_header("<http://x>; rel=\"ice-server\"").is_empty(), "not STUN/TURN");
        assert!(parse_link_header("<stun:>; rel=ice-server").is_empty(), "empty target");
        let l = parse_link_header("<stun:a:3478>;rel=ice-server,<turns:b>; rel=\"next ice-server\"; username=u");
        assert_eq!(l.iter().map(|s| s.url.as_str()).collect::<Vec<_>>(), ["stun:a:3478", "turns:b"]);
        let l = parse_link_header("<turn:c>; rel=\"ice-server\"; credential=\"a\\\"b\"; \"unterminated");
        assert_eq!(l.len(), 1);
        assert_eq!(l[0].credential.as_ref().map(Secret::expose), Some("a\"b"));
    }

    #[test]
    fn ice_restart_fragment_and_answer_update() {
        let offer = "v=0\r\no=- 1 2 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\na=ice-options:trickle\r\n\
                     m=video 9 UDP/TLS/RTP/SAVPF 102\r\nc=IN IP4 0.0.0.0\r\na=ice-ufrag:newU\r\na=ice-pwd:newP\r\n\
                     a=mid:0\r\na=rtpmap:102 H264/90000\r\na=candidate:1 1 udp 2130706431 10.0.0.2 5000 typ host\r\n\
                     a=end-of-candidates\r\n";
        let frag = ice_restart_fragment(offer);
        assert_eq!(
            frag,
            "a=ice-options:trickle\r\nm=video 9 UDP/TLS/RTP/SAVPF 102\r\na=ice-ufrag:newU\r\na=ice-pwd:newP\r\n\
             a=mid:0\r\na=candidate:1 1 udp 2130706431 10.0.0.2 5000 typ host\r\na=end-of-candidates\r\n"
        );
        let parsed = parse_sdp_fragment(frag.as_bytes());
        assert_eq!((parsed.ufrag.as_deref(), parsed.pwd.as_deref()), (Some("newU"), Some("newP")));
        assert_eq!(parsed.candidates, ["candidate:1 1 udp 2130706431 10.0.0.2 5000 typ host"]);
        assert!(parsed.end_of_candidates);
        let reply = parse_sdp_fragment(b"a=ice-ufrag:srv2\na=ice-pwd:srvpwd2\n");
        let updated = replace_ice_credentials(ANSWER, "srv2", "srvpwd2");
        assert!(updated.contains("a=ice-ufrag:srv2\r\na=ice-pwd:srvpwd2\r\n") && !updated.contains("srv1"));
        assert_eq!((reply.ufrag.as_deref(), reply.candidates.len()), (Some("srv2"), 0));
        assert_eq!(crlf("v=0\no=x\r\n"), "v=0\r\no=x\r\n");
    }

    #[test]
    fn retry_policy_gives_up_on_typos_and_backs_off_after_going_live() {
        let t0 = Instant::now();
        let auth = WhipError::new(WhipErrorKind::Auth, "nope");
        let down = WhipError::new(WhipErrorKind::Unavailable, "down");
        let mut p = RetryPolicy::default();
        assert_eq!(p.on_failure(&auth, t0), Retry::GiveUp, "a wrong token is not retried");
        let mut p = RetryPolicy::default();
        assert_eq!(p.on_failure(&down, t0), Retry::At(t0 + Duration::from_secs(1)), "a server not up yet is");
        p.on_live();
        let delays: Vec<Duration> = (0..8)
            .map(|_| match p.on_failure(&auth, t0) {
                Retry::At(t) => t - t0,
                Retry::GiveUp => panic!("after going live every failure is retried"),
            })
            .collect();
        let secs: Vec<u64> = delays.iter().map(Duration::as_secs).collect();
        assert_eq!(secs, [1, 2, 4, 8, 16, 30, 30, 30]);
        assert_eq!(p.failures(), 8);
        p.on_live();
        let mut slow = down.clone();
        slow.retry_after = Some(Duration::from_secs(45));
        assert_eq!(p.on_failure(&slow, t0), Retry::At(t0 + Duration::from_secs(45)), "Retry-After is honoured");
        assert_eq!(p.on_failure(&down, t0), Retry::At(t0 + Duration::from_secs(2)));
    }
}
