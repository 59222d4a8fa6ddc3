//! Test hosts in network namespaces, joined by veth pairs: several
//! machines on one, for tests of what crosses a network (shaped links,
//! NATs, browsers that skip loopback candidates). Needs root and iproute2;
//! everything is removed on drop. Never route to addresses outside the
//! namespaces a test creates. Every host of a test — the sharer included —
//! lives in a namespace the test creates, never in the machine's own: a CI
//! machine's firewall drops what a namespace sends to the machine's own
//! namespace (`Netns::run_in` starts a share inside one).

#![allow(dead_code)]

use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

/// Runs `ip ARGS`, failing the test with a clear message.
pub fn ip(args: &[&str]) {
    run_checked("ip", args, "iproute2");
}

/// Runs a command, failing the test with what to install or what went wrong.
pub fn run_checked(program: &str, args: &[&str], package: &str) -> Output {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("`{program}` failed to start ({e}): install it with `apt-get install {package}`"));
    assert!(
        out.status.success(),
        "{program} {}: {} (network namespace tests need root)",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A unique short name: interface names are limited to 15 bytes.
pub fn unique(tag: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!("{tag}{}x{}", std::process::id() % 100_000, NEXT.fetch_add(1, Ordering::Relaxed))
}

/// A network namespace with `lo` up; deleted on drop.
#[derive(Debug)]
pub struct Netns {
    pub name: String,
}

impl Netns {
    /// Creates a namespace named from `tag` (≤ 4 characters).
    pub fn new(tag: &str) -> Self {
        let name = unique(tag);
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        ip(&["netns", "add", &name]);
        let ns = Self { name };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    /// Runs `ip -n NAME ARGS`.
    pub fn ip(&self, args: &[&str]) {
        let mut all = vec!["-n", self.name.as_str()];
        all.extend_from_slice(args);
        ip(&all);
    }

    /// A command that runs `program` inside this namespace.
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, program]);
        c
    }

    /// Runs `f` on a new thread inside this namespace (sockets it opens
    /// live here) and returns its result.
    pub fn run_in<R: Send + 'static>(&self, f: impl FnOnce() -> R + Send + 'static) -> R {
        peep_netlab::netns::run_in(&self.name, f)
            .unwrap_or_else(|e| panic!("entering network namespace {}: {e} (needs root)", self.name))
    }

    /// Starts a named thread inside this namespace.
    pub fn spawn_in<R: Send + 'static>(
        &self,
        thread: &str,
        f: impl FnOnce() -> R + Send + 'static,
    ) -> std::thread::JoinHandle<std::io::Result<R>> {
        peep_netlab::netns::spawn_in(&self.name, thread, f).expect("spawn a thread")
    }

    /// Runs `program ARGS` inside the namespace, failing the test on error.
    pub fn run(&self, program: &str, args: &[&str], package: &str) -> Output {
        let mut all = vec!["netns", "exec", self.name.as_str(), program];
        all.extend_from_slice(args);
        run_checked("ip", &all, package)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.name]).output();
    }
}

/// One end of a veth pair: which namespace (`None`: the test's own), the
/// interface name and its address with prefix length (`10.0.0.1/30`;
/// empty for an unaddressed end, e.g. a bridge port).
#[derive(Debug, Clone)]
pub struct End {
    pub ns: Option<String>,
    pub dev: String,
    pub addr: String,
}

impl End {
    /// The address without its prefix length.
    pub fn ip(&self) -> &str {
        self.addr.split('/').next().unwrap_or(&self.addr)
    }

    fn ip_cmd(&self, args: &[&str]) {
        let mut all: Vec<&str> = Vec::new();
        if let Some(ns) = &self.ns {
            all.extend_from_slice(&["-n", ns]);
        }
        all.extend_from_slice(args);
        ip(&all);
    }
}

/// A veth pair between two namespaces (`None`: the test's own), addressed
/// and up; the pair goes away when either namespace is deleted, or on drop.
#[derive(Debug)]
pub struct Link {
    pub a: End,
    pub b: End,
}

impl Link {
    /// Joins `a` (address `a_addr`, e.g. `10.9.0.1/30`) to `b`.
    pub fn new(a: Option<&Netns>, a_addr: &str, b: Option<&Netns>, b_addr: &str) -> Self {
        Self::new_opt(a, Some(a_addr), b, Some(b_addr))
    }

    /// Like [`Link::new`], leaving an end without an address where `None`.
    pub fn new_opt(a: Option<&Netns>, a_addr: Option<&str>, b: Option<&Netns>, b_addr: Option<&str>) -> Self {
        let base = unique("pv");
        let (a_dev, b_dev) = (format!("{base}a"), format!("{base}b"));
        ip(&["link", "add", &a_dev, "type", "veth", "peer", "name", &b_dev]);
        let end = |ns: Option<&Netns>, dev: String, addr: Option<&str>| End {
            ns: ns.map(|n| n.name.clone()),
            dev,
            addr: addr.unwrap_or_default().to_owned(),
        };
        let link = Self { a: end(a, a_dev, a_addr), b: end(b, b_dev, b_addr) };
        for e in [&link.a, &link.b] {
            if let Some(ns) = &e.ns {
                ip(&["link", "set", &e.dev, "netns", ns]);
            }
            if !e.addr.is_empty() {
                e.ip_cmd(&["addr", "add", &e.addr, "dev", &e.dev]);
            }
            e.ip_cmd(&["link", "set", &e.dev, "up"]);
        }
        link
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        // Deleting one end deletes the pair; the namespace may be gone already.
        let mut args: Vec<&str> = Vec::new();
        if let Some(ns) = &self.a.ns {
            args.extend_from_slice(&["-n", ns]);
        }
        args.extend_from_slice(&["link", "del", &self.a.dev]);
        let _ = Command::new("ip").args(&args).output();
    }
}
