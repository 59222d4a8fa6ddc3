//! `peep`: share your screen to a browser link.
#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
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
