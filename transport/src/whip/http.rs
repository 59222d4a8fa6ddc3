//! The few HTTP requests WHIP needs (POST, PATCH, DELETE), one connection
//! each: hyper's HTTP/1.1 client over TCP, or over TLS 1.3 (rustls with
//! the system's trusted certificates; `SSL_CERT_FILE` / `SSL_CERT_DIR`
//! replace them). WHIP exchanges a handful of requests per session, so
//! there is no connection pool.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::Request;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HOST, HeaderValue};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use url::Url;

use super::protocol::{MAX_RESPONSE_BYTES, WhipError, WhipErrorKind, display_host};
use crate::secret::Secret;

/// How long one request may take, connection included.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// A response, reduced to what WHIP reads.
#[derive(Debug, Clone)]
pub(crate) struct Response {
    pub status: u16,
    /// Header names in lower case; values that are not UTF-8 are left out.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// One request.
pub(crate) struct Call<'a> {
    pub method: hyper::Method,
    pub url: &'a Url,
    pub token: Option<&'a Secret>,
    pub content_type: Option<&'static str>,
    /// Extra headers (e.g. `If-Match`).
    pub extra: Vec<(&'static str, String)>,
    pub body: Bytes,
}

fn network(url: &Url, what: impl std::fmt::Display) -> WhipError {
    WhipError::new(WhipErrorKind::Network, format!("cannot reach the WHIP server at {}: {what}", display_host(url)))
}

fn tls_config() -> Result<Arc<rustls::ClientConfig>, String> {
    static CONFIG: OnceLock<Result<Arc<rustls::ClientConfig>, String>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let mut roots = rustls::RootCertStore::empty();
            let found = rustls_native_certs::load_native_certs();
            let (added, _ignored) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                return Err("no trusted certificates found on this system (install ca-certificates, or point \
                            SSL_CERT_FILE at a PEM file)"
                    .to_owned());
            }
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map_err(|e| e.to_string())?
                .with_root_certificates(roots)
                .with_no_client_auth();
            Ok(Arc::new(config))
        })
        .clone()
}

/// Sends `call` and reads the whole response (at most
/// [`MAX_RESPONSE_BYTES`] of body), within [`REQUEST_TIMEOUT`].
pub(crate) async fn send(call: Call<'_>) -> Result<Response, WhipError> {
    let url = call.url;
    match tokio::time::timeout(REQUEST_TIMEOUT, send_inner(call)).await {
        Ok(r) => r,
        Err(_) => Err(network(url, format!("no answer within {} s", REQUEST_TIMEOUT.as_secs()))),
    }
}

async fn send_inner(call: Call<'_>) -> Result<Response, WhipError> {
    let url = call.url;
    let host = url.host_str().ok_or_else(|| network(url, "the URL has no host"))?;
    let port = url.port_or_known_default().ok_or_else(|| network(url, "the URL has no port"))?;
    // IPv6 literals come bracketed from the URL; the socket wants them bare.
    let connect_host = host.trim_start_matches('[').trim_end_matches(']');
    let tcp = tokio::net::TcpStream::connect((connect_host, port)).await.map_err(|e| network(url, e))?;
    let _ = tcp.set_nodelay(true);
    let mut path = url.path().to_owned();
    if let Some(q) = url.query() {
        path.push('?');
        path.push_str(q);
    }
    let mut request = Request::builder().method(call.method).uri(path);
    let host_header = match url.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.to_owned(),
    };
    request = request.header(HOST, host_header);
    if let Some(t) = call.content_type {
        request = request.header(CONTENT_TYPE, t);
    }
    if let Some(token) = call.token {
        let mut value = HeaderValue::from_str(&format!("Bearer {}", token.expose())).map_err(|_| {
            WhipError::new(WhipErrorKind::BadUrl, "the WHIP token contains characters HTTP cannot carry")
        })?;
        value.set_sensitive(true);
        request = request.header(AUTHORIZATION, value);
    }
    for (name, value) in call.extra {
        request = request.header(name, value);
    }
    let request = request
        .body(Full::new(call.body))
        .map_err(|e| WhipError::new(WhipErrorKind::BadUrl, format!("cannot build the request: {e}")))?;
    if url.scheme() == "https" {
        let config =
            tls_config().map_err(|e| WhipError::new(WhipErrorKind::Tls, format!("HTTPS is not possible: {e}")))?;
        let name = rustls::pki_types::ServerName::try_from(connect_host.to_owned())
            .map_err(|_| network(url, "the host is not a valid TLS server name"))?;
        let tls = tokio_rustls::TlsConnector::from(config).connect(name, tcp).await.map_err(|e| {
            WhipError::new(
                WhipErrorKind::Tls,
                format!(
                    "TLS with the WHIP server at {} failed: {e} (a self-signed or private CA? point SSL_CERT_FILE \
                         at its certificate)",
                    display_host(url)
                ),
            )
        })?;
        exchange(url, tls, request).await
    } else {
        exchange(url, tcp, request).await
    }
}

async fn exchange<I>(url: &Url, io: I, request: Request<Full<Bytes>>) -> Result<Response, WhipError>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(io)).await.map_err(|e| network(url, e))?;
    let driver = tokio::spawn(async move {
        // Ends when the exchange is over or the peer closes; errors surface
        // through send_request below.
        let _ = connection.await;
    });
    let result = async {
        let response = sender.send_request(request).await.map_err(|e| network(url, e))?;
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .filter_map(|(n, v)| Some((n.as_str().to_ascii_lowercase(), v.to_str().ok()?.to_owned())))
            .collect();
        let body = Limited::new(response.into_body(), MAX_RESPONSE_BYTES)
            .collect()
            .await
            .map_err(|e| network(url, format!("reading the answer: {e}")))?
            .to_bytes()
            .to_vec();
        Ok(Response { status, headers, body })
    }
    .await;
    driver.abort();
    result
}
