//! The embedded HTTP server: the viewer page and WHEP signalling.
//!
//! | method | path | answer |
//! |---|---|---|
//! | GET | `/s/{token}` | the viewer page (404 page when the token is wrong) |
//! | GET | `/assets/{file}` | the page's script and style |
//! | POST | `/s/{token}/whep` | `application/sdp` offer → `201 Created`, SDP answer, `Location` |
//! | DELETE | `/s/{token}/whep/{session}` | leave |
//! | PATCH | `/s/{token}/whep/{session}` | `405`: no trickle ICE, offers carry all candidates |
//! | GET | `/s/{token}/events/{session}` | server-sent events: `kicked`, `ended` |
//!
//! Errors are plain-text 4xx with a sentence a person can act on: 400 bad
//! SDP, 422 no video codec in common (the sentence names what the browser
//! offered and what would fix it), 401 password required or wrong (`WWW-Authenticate: Bearer`), 404
//! wrong token or unknown session, 413 body over 64 KiB, 415 wrong content
//! type, 429 too many wrong passwords (`Retry-After`), 503 share full or
//! ending. WHEP routes allow cross-origin use, so any WHEP player can watch.
//! Request paths carry the token and are never logged.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tokio_stream::StreamExt as _;
use tokio_stream::wrappers::WatchStream;

use crate::auth::constant_time_eq;
use crate::hub::{Notice, Shared, lock};

/// Largest accepted request body (an SDP offer is 3–10 KiB).
pub const MAX_BODY_BYTES: usize = 64 * 1024;

pub(crate) const VIEWER_HTML: &str = include_str!("../../assets/viewer/index.html");
const VIEWER_JS: &str = include_str!("../../assets/viewer/viewer.js");
const VIEWER_CSS: &str = include_str!("../../assets/viewer/viewer.css");
pub(crate) const INVALID_HTML: &str = include_str!("../../assets/viewer/invalid.html");

type AppState = Arc<Shared>;

pub(crate) async fn serve(
    listener: tokio::net::TcpListener,
    shared: Arc<Shared>,
    stop: tokio::sync::oneshot::Receiver<()>,
) {
    let app = router(shared);
    let served = axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
        .with_graceful_shutdown(async move {
            let _ = stop.await;
        })
        .await;
    if let Err(e) = served {
        tracing::warn!("HTTP server stopped: {e}");
    }
}

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/s/{token}", get(viewer_page))
        .route("/s/{token}/", get(viewer_page))
        .route("/s/{token}/whep", post(whep_offer).options(preflight))
        .route("/s/{token}/whep/{session}", axum::routing::delete(whep_delete).options(preflight))
        .route("/s/{token}/events/{session}", get(events))
        .route("/assets/{file}", get(asset))
        .fallback(|| async { text(StatusCode::NOT_FOUND, "not found") })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(shared)
}

pub(crate) fn text(status: StatusCode, body: &str) -> Response {
    let mut r = (status, body.to_owned()).into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    r
}

pub(crate) fn cors(mut r: Response) -> Response {
    let h = r.headers_mut();
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    h.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static("Location, Retry-After, Link, X-Peep-Admission"),
    );
    r
}

fn token_ok(shared: &Shared, token: &str) -> bool {
    constant_time_eq(token.as_bytes(), shared.token.expose().as_bytes())
}

pub(crate) fn page(status: StatusCode, content_type: &'static str, body: impl Into<axum::body::Body>) -> Response {
    let mut r = (status, body.into()).into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // The link is the secret: never leak it through Referer.
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'self'; img-src 'self' data:; media-src 'self' blob:; object-src 'none'"),
    );
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    r
}

async fn viewer_page(State(shared): State<AppState>, Path(token): Path<String>) -> Response {
    if token_ok(&shared, &token) {
        page(StatusCode::OK, "text/html; charset=utf-8", VIEWER_HTML)
    } else {
        page(StatusCode::NOT_FOUND, "text/html; charset=utf-8", INVALID_HTML)
    }
}

pub(crate) async fn asset(Path(file): Path<String>) -> Response {
    match file.as_str() {
        "viewer.js" => page(StatusCode::OK, "text/javascript; charset=utf-8", VIEWER_JS),
        "viewer.css" => page(StatusCode::OK, "text/css; charset=utf-8", VIEWER_CSS),
        _ => text(StatusCode::NOT_FOUND, "not found"),
    }
}

async fn preflight(State(shared): State<AppState>) -> Response {
    preflight_response(crate::whep::admission_on(&shared))
}

/// CORS preflight answer; `X-Peep-Admission: ask` tells the viewer page it
/// will wait to be let in.
pub(crate) fn preflight_response(admission: bool) -> Response {
    let mut r = cors(StatusCode::NO_CONTENT.into_response());
    let h = r.headers_mut();
    h.insert("x-peep-admission", HeaderValue::from_static(if admission { "ask" } else { "none" }));
    h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("POST, DELETE, OPTIONS"));
    h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, HeaderValue::from_static("Content-Type, Authorization"));
    h.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("600"));
    r
}

/// The HTTP response for a WHEP outcome; `location` is the session's URL.
fn whep_response(reply: crate::whep::Reply, location: impl FnOnce(&str) -> String) -> Response {
    use crate::whep::Reply;
    match reply {
        Reply::Created { session, answer } => {
            let mut r = (StatusCode::CREATED, answer).into_response();
            let h = r.headers_mut();
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/sdp"));
            if let Ok(v) = HeaderValue::from_str(&location(&session)) {
                h.insert(header::LOCATION, v);
            }
            cors(r)
        }
        Reply::Deleted => cors(StatusCode::OK.into_response()),
        Reply::Refused(refused) => cors(refused_response(&refused)),
    }
}

/// A refusal as plain text with its `Retry-After` and `WWW-Authenticate`.
pub(crate) fn refused_response(refused: &crate::whep::Refused) -> Response {
    let status = StatusCode::from_u16(refused.status).unwrap_or(StatusCode::BAD_REQUEST);
    let mut r = text(status, &refused.message);
    if let Some(secs) = refused.retry_after_s {
        r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    if refused.password_required {
        r.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"peep\""));
    }
    r
}

async fn whep_offer(
    State(shared): State<AppState>,
    Path(token): Path<String>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !token_ok(&shared, &token) {
        shared.stats.offers_refused.fetch_add(1, Ordering::Relaxed);
        return cors(text(StatusCode::NOT_FOUND, "this link is invalid or the share has ended"));
    }
    let header = |name| headers.get(name).and_then(|v: &HeaderValue| v.to_str().ok());
    let request = crate::whep::OfferRequest {
        client,
        content_type: header(header::CONTENT_TYPE),
        authorization: header(header::AUTHORIZATION),
        body: &body,
    };
    let reply = crate::whep::offer(&shared, request, || {}).await;
    whep_response(reply, |session| format!("/s/{token}/whep/{session}"))
}

async fn whep_delete(State(shared): State<AppState>, Path((token, session)): Path<(String, String)>) -> Response {
    if !token_ok(&shared, &token) {
        return cors(text(StatusCode::NOT_FOUND, "this link is invalid or the share has ended"));
    }
    whep_response(crate::whep::delete(&shared, &session).await, |_| String::new())
}

async fn events(State(shared): State<AppState>, Path((token, session)): Path<(String, String)>) -> Response {
    if !token_ok(&shared, &token) {
        return text(StatusCode::NOT_FOUND, "this link is invalid or the share has ended");
    }
    let Some(receiver) = lock(&shared.viewers).get(&session).map(|v| v.notice.subscribe()) else {
        return text(StatusCode::NOT_FOUND, "no such session");
    };
    let stream = WatchStream::new(receiver).filter_map(|notice| match notice {
        Notice::None => None,
        Notice::Kicked => {
            Some(Ok::<_, Infallible>(Event::default().event("kicked").data("you were removed from this share")))
        }
        Notice::Ended => Some(Ok(Event::default().event("ended").data("the share has ended"))),
    });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))).into_response()
}
