//! Running code inside a network namespace from a test process: a thread
//! enters the namespace and runs a closure there; sockets it opens stay in
//! that namespace whichever thread uses them later.

use std::io;

/// Runs `f` on a new thread inside the network namespace `name` and returns its result.
pub fn run_in<R: Send + 'static>(name: &str, f: impl FnOnce() -> R + Send + 'static) -> io::Result<R> {
    spawn_in(name, "netlab-in-netns", f)?.join().map_err(|_| io::Error::other("the namespaced thread panicked"))?
}

/// Starts a named thread inside the network namespace `name` running `f`.
/// The join handle yields `Err` when the namespace could not be entered.
pub fn spawn_in<R: Send + 'static>(
    name: &str,
    thread_name: &str,
    f: impl FnOnce() -> R + Send + 'static,
) -> io::Result<std::thread::JoinHandle<io::Result<R>>> {
    let name = name.to_owned();
    std::thread::Builder::new().name(thread_name.to_owned()).spawn(move || {
        crate::sys::enter_netns(&name)?;
        Ok(f())
    })
}
