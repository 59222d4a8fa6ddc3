//! `peep`: share your screen to a browser link.
#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    // The WebRTC stack logs every unreachable ICE candidate and similar
    // internals; Peep reports what matters in its own words. zbus warns
    // about every portal request object it cannot cache.
    let wanted = std::env::var("PEEP_LOG").unwrap_or_else(|_| {
        "warn,webrtc=off,rtc=off,rtc_ice=off,rtc_interceptor=off,rtc_dtls=off,rtc_srtp=off,rtc_sctp=off,zbus=error"
            .into()
    });
    let filter = peep::relay::log_filter(&wanted);
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(&filter)
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(peep_transport::relay::LOG_REDACTIONS)),
        )
        .with_writer(std::io::stderr)
        .init();
    match peep::cli::run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) if e.chain().any(|c| matches!(c.downcast_ref(), Some(peep_capture::CaptureError::Cancelled))) => {
            // Not a failure to explain: the user said no.
            eprintln!("peep: you cancelled the selection; nothing was shared");
            std::process::ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("peep: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
