//! `peep`: share your screen to a browser link.
#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("PEEP_LOG").unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .init();
    match peep::cli::run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("peep: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
