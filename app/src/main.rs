//! `peep`: share your screen to a browser link.
#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    match peep::cli::run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("peep: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
