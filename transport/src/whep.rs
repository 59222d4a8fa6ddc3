//! The share's WHEP request handling, independent of where the request came
//! from: the LAN HTTP server (`server`) and the relay client
//! (`relay::client`) both call these, so the password, its throttle (by the
//! viewer's real address), the viewer limit, "ask to join", "share ending"
//! and the answers' words are the same on both paths.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use crate::admission::ADMISSION_WAIT;
use crate::auth::constant_time_eq;
use crate::hub::{Shared, lock};

/// A WHEP offer as received.
#[derive(Debug, Clone, Copy)]
pub(crate) struct OfferRequest<'a> {
    /// The viewer's address (port 0 when forwarded by a relay).
    pub client: SocketAddr,
    /// `Content-Type`.
    pub content_type: Option<&'a str>,
    /// `Authorization`.
    pub authorization: Option<&'a str>,
    /// The SDP offer.
    pub body: &'a [u8],
}

/// Why a request was refused, in HTTP terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refused {
    pub status: u16,
    pub message: String,
    pub retry_after_s: Option<u32>,
    /// Send `WWW-Authenticate: Bearer`.
    pub password_required: bool,
}

impl Refused {
    fn new(status: u16, message: impl Into<String>) -> Self {
        Self { status, message: message.into(), retry_after_s: None, password_required: false }
    }
}

/// The outcome of a WHEP request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Reply {
    /// 201: the session and the SDP answer.
    Created { session: String, answer: String },
    /// 200: the session ended.
    Deleted,
    /// 4xx/5xx.
    Refused(Refused),
}

/// Whether viewers of this share wait to be admitted.
pub(crate) fn admission_on(shared: &Shared) -> bool {
    lock(&shared.admission).on
}

/// Checks the `Authorization: Bearer` password, with the throttle keyed by
/// the viewer's address.
fn check_password(shared: &Shared, authorization: Option<&str>, client: SocketAddr) -> Result<(), Refused> {
    let Some(expected) = lock(&shared.password).clone() else { return Ok(()) };
    let now = Instant::now();
    if let Err(wait) = lock(&shared.throttle).check(client.ip(), now) {
        shared.stats.passwords_throttled.fetch_add(1, Ordering::Relaxed);
        let secs = wait.as_secs().max(1);
        let mut r = Refused::new(429, format!("too many wrong passwords: try again in {secs} s"));
        r.retry_after_s = Some(u32::try_from(secs).unwrap_or(u32::MAX));
        return Err(r);
    }
    let given = authorization.and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")));
    let unauthorized = |msg: &str| Refused { password_required: true, ..Refused::new(401, msg) };
    match given {
        None => Err(unauthorized("password required")),
        Some(pw) if constant_time_eq(pw.as_bytes(), expected.expose().as_bytes()) => {
            lock(&shared.throttle).success(client.ip());
            Ok(())
        }
        Some(_) => {
            shared.stats.passwords_wrong.fetch_add(1, Ordering::Relaxed);
            lock(&shared.throttle).failure(client.ip(), now);
            Err(unauthorized("wrong password"))
        }
    }
}

/// Withdraws a knock when the waiting request goes away (the HTTP client
/// hung up, the relay timed out, or a decision came).
struct KnockGuard<'a> {
    shared: &'a Shared,
    id: u64,
}

impl Drop for KnockGuard<'_> {
    fn drop(&mut self) {
        lock(&self.shared.admission).withdraw(self.id);
    }
}

/// Waits for the sharer to admit the viewer, if the share asks to join.
/// `on_hold` is called once the viewer waits (the relay client tells the
/// relay to extend its deadline).
async fn admit(shared: &Shared, client: SocketAddr, on_hold: impl FnOnce()) -> Result<(), Refused> {
    let knock = {
        let mut admissions = lock(&shared.admission);
        if !admissions.on {
            return Ok(());
        }
        admissions.knock(client.ip(), Instant::now())
    };
    let Some((id, decided)) = knock else {
        return Err(Refused {
            retry_after_s: Some(5),
            ..Refused::new(503, "too many viewers are waiting to be let in; try again soon")
        });
    };
    let _guard = KnockGuard { shared, id };
    on_hold();
    match tokio::time::timeout(ADMISSION_WAIT, decided).await {
        Ok(Ok(true)) => Ok(()),
        Ok(Ok(false)) => Err(Refused::new(403, "the sharer did not let you in")),
        Ok(Err(_)) if shared.ending.load(Ordering::Acquire) => Err(Refused::new(503, "the share is ending")),
        Ok(Err(_)) | Err(_) => Err(Refused::new(403, "nobody let you in: the sharer did not answer")),
    }
}

/// Handles a WHEP offer: checks, admission, then the peer connection.
pub(crate) async fn offer(shared: &Arc<Shared>, request: OfferRequest<'_>, on_hold: impl FnOnce()) -> Reply {
    let reply = offer_inner(shared, request, on_hold).await;
    if matches!(reply, Reply::Refused(_)) {
        shared.stats.offers_refused.fetch_add(1, Ordering::Relaxed);
    }
    reply
}

async fn offer_inner(shared: &Arc<Shared>, request: OfferRequest<'_>, on_hold: impl FnOnce()) -> Reply {
    let refused = |status: u16, message: &str| Reply::Refused(Refused::new(status, message));
    if shared.ending.load(Ordering::Acquire) {
        return refused(503, "the share is ending");
    }
    let content_type = request.content_type.unwrap_or("").trim().to_ascii_lowercase();
    if !content_type.starts_with("application/sdp") {
        return refused(415, "expected Content-Type: application/sdp");
    }
    if let Err(r) = check_password(shared, request.authorization, request.client) {
        return Reply::Refused(r);
    }
    let offer = match crate::offer::parse_offer(request.body) {
        Ok(offer) => offer,
        Err(e) => return refused(400, &e.to_string()),
    };
    if !shared.reserve_place() {
        return refused(503, "the share is full: too many viewers");
    }
    if let Err(r) = admit(shared, request.client, on_hold).await {
        shared.release_place();
        return Reply::Refused(r);
    }
    if shared.ending.load(Ordering::Acquire) {
        shared.release_place();
        return refused(503, "the share is ending");
    }
    // In its own task: a panic deep in the WebRTC stack on hostile input
    // must not take anything else down.
    let accepted = tokio::spawn(crate::peer::accept_offer(shared.clone(), offer, request.client)).await;
    shared.release_place();
    match accepted {
        Ok(Ok((session, answer))) => Reply::Created { session, answer },
        Ok(Err(crate::TransportError::BadOffer(reason))) => refused(400, &format!("bad SDP offer: {reason}")),
        // A valid offer Peep cannot serve: 422, with the sentence the viewer
        // page shows as it is (and stops retrying on).
        Ok(Err(crate::TransportError::NoCommonCodec(sentence))) => refused(422, &sentence),
        Ok(Err(e)) => {
            tracing::warn!("answering a viewer failed: {e}");
            refused(500, "could not set up the connection")
        }
        Err(_) => {
            tracing::warn!("answering a viewer panicked");
            refused(400, "bad SDP offer")
        }
    }
}

/// Handles a WHEP DELETE: the viewer leaves.
pub(crate) async fn delete(shared: &Shared, session: &str) -> Reply {
    match shared.remove_viewer(session) {
        Some(viewer) => {
            shared.stats.sessions_deleted.fetch_add(1, Ordering::Relaxed);
            viewer.peer.close().await;
            Reply::Deleted
        }
        None => Reply::Refused(Refused::new(404, "no such session")),
    }
}
