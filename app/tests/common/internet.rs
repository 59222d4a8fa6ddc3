//! A small internet in network namespaces, for tests of sharing across
//! NATs (10.243.0.0/16 plays the public internet, 10.242.0.0/16 the homes):
//!
//! ```text
//!   sharer host 10.242.1.2 ── router A (NAT) 10.243.1.2 ──┐
//!                                                          ├── "internet" 10.243.0.1 (relay, TURN)
//!   viewer host 10.242.2.2 ── router B (NAT) 10.243.2.2 ──┘        │ default route → sink (drops)
//! ```
//!
//! The routers masquerade (endpoint-independent mapping: hole punching
//! works) or masquerade with `--random-fully` (endpoint-dependent,
//! "symmetric": only TURN works), and drop unsolicited inbound UDP like a
//! home router (so a peer's early check does not steal the mapping's
//! port). The internet has a default route into a namespace that drops
//! everything silently: a TURN server's sends towards private addresses
//! vanish instead of failing with "network unreachable" (which makes
//! coturn drop the whole allocation).

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::netns::{Link, Netns, run_checked};

/// The internet's public address (relay, TURN).
pub const PUBLIC_IP: &str = "10.243.0.1";

/// How the home routers translate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NatMode {
    /// Endpoint-independent mapping (a "cone" NAT): peers reach each other.
    Cone,
    /// Endpoint-dependent mapping (`--random-fully`): only TURN works.
    Symmetric,
}

/// A home: a router with a NAT and one host behind it.
#[derive(Debug)]
pub struct Site {
    pub router: Netns,
    pub host: Netns,
    pub wan: Link,
    pub lan: Link,
}

impl Site {
    /// The router's public address (what the other side sees).
    pub fn public_ip(&self) -> &str {
        self.wan.b.ip()
    }

    /// The host's private address.
    pub fn host_ip(&self) -> &str {
        self.lan.b.ip()
    }
}

/// The whole internet; torn down on drop.
#[derive(Debug)]
pub struct Internet {
    pub inet: Netns,
    pub sink: Netns,
    sink_link: Link,
    pub sharer: Site,
    pub viewer: Site,
}

fn sysctl_forward(ns: &Netns) {
    ns.run("sysctl", &["-qw", "net.ipv4.ip_forward=1"], "procps");
}

fn site(inet: &Netns, n: u8, tag: &str) -> Site {
    let router = Netns::new(&format!("{tag}r"));
    let host = Netns::new(&format!("{tag}h"));
    let wan = Link::new(Some(inet), &format!("10.243.{n}.1/24"), Some(&router), &format!("10.243.{n}.2/24"));
    let lan = Link::new(Some(&router), &format!("10.242.{n}.1/24"), Some(&host), &format!("10.242.{n}.2/24"));
    router.ip(&["route", "add", "default", "via", &format!("10.243.{n}.1")]);
    host.ip(&["route", "add", "default", "via", &format!("10.242.{n}.1")]);
    sysctl_forward(&router);
    // A home router drops unsolicited inbound UDP. (Without this, a peer's
    // check arriving before our own outgoing one creates a conntrack entry
    // that makes the NAT pick another port for our flow: hole punching
    // would fail even in "cone" mode.)
    router.run(
        "iptables",
        &["-A", "INPUT", "-i", &wan.b.dev, "-p", "udp", "-m", "conntrack", "--ctstate", "NEW", "-j", "DROP"],
        "iptables",
    );
    Site { router, host, wan, lan }
}

impl Internet {
    /// Builds it (needs root, iproute2, iptables, procps).
    pub fn build() -> Self {
        super::require_tool("iptables", "iptables");
        super::require_tool("sysctl", "procps");
        let inet = Netns::new("inet");
        let sink = Netns::new("sink");
        inet.ip(&["addr", "add", &format!("{PUBLIC_IP}/32"), "dev", "lo"]);
        let sink_link = Link::new(Some(&inet), "10.243.255.1/30", Some(&sink), "10.243.255.2/30");
        inet.ip(&["route", "add", "default", "via", "10.243.255.2"]);
        sysctl_forward(&inet);
        let sharer = site(&inet, 1, "sa");
        let viewer = site(&inet, 2, "va");
        let internet = Self { inet, sink, sink_link, sharer, viewer };
        internet.set_nat(NatMode::Cone);
        internet
    }

    /// Switches both routers' NAT behaviour (new flows only).
    pub fn set_nat(&self, mode: NatMode) {
        for site in [&self.sharer, &self.viewer] {
            site.router.run("iptables", &["-t", "nat", "-F", "POSTROUTING"], "iptables");
            let mut args = vec!["-t", "nat", "-A", "POSTROUTING", "-o", site.wan.b.dev.as_str(), "-j", "MASQUERADE"];
            if mode == NatMode::Symmetric {
                args.push("--random-fully");
            }
            site.router.run("iptables", &args, "iptables");
        }
    }
}

/// A child process whose output is collected; killed on drop.
#[derive(Debug)]
pub struct Proc {
    pub name: String,
    child: Child,
    pub stdout: Arc<Mutex<String>>,
    pub stderr: Arc<Mutex<String>>,
}

fn collect(mut from: impl Read + Send + 'static, into: Arc<Mutex<String>>) {
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = from.read(&mut buf) {
            if n == 0 {
                break;
            }
            into.lock().expect("output").push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
}

impl Proc {
    /// Starts `command` with piped stdin/stdout/stderr.
    pub fn spawn(name: &str, mut command: Command) -> Self {
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name}: {e}"));
        let (stdout, stderr) = (Arc::new(Mutex::new(String::new())), Arc::new(Mutex::new(String::new())));
        collect(child.stdout.take().expect("stdout"), stdout.clone());
        collect(child.stderr.take().expect("stderr"), stderr.clone());
        Self { name: name.to_owned(), child, stdout, stderr }
    }

    /// Waits until `pattern` appears in stdout or stderr; returns that stream's text.
    pub fn wait_for(&mut self, pattern: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            for stream in [&self.stdout, &self.stderr] {
                let text = stream.lock().expect("output").clone();
                if text.contains(pattern) {
                    return text;
                }
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("{} exited ({status}) before printing {pattern:?}:\n{}", self.name, self.output());
            }
            assert!(
                Instant::now() < deadline,
                "{} did not print {pattern:?} within {timeout:?}:\n{}",
                self.name,
                self.output()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits for an output line that `matches`; returns it.
    pub fn wait_for_line(&mut self, timeout: Duration, matches: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let all = format!("{}\n{}", self.stdout.lock().expect("output"), self.stderr.lock().expect("output"));
            if let Some(line) = all.split(['\r', '\n']).find(|l| matches(l)) {
                return line.to_owned();
            }
            assert!(
                Instant::now() < deadline,
                "{}: no matching line within {timeout:?}:\n{}",
                self.name,
                self.output()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Everything it printed so far (status lines split at `\r`).
    pub fn output(&self) -> String {
        format!(
            "--- stdout\n{}\n--- stderr\n{}",
            self.stdout.lock().expect("output"),
            self.stderr.lock().expect("output").replace('\r', "\n")
        )
    }

    /// The last status line (`peep share` rewrites it with `\r`).
    pub fn last_status(&self) -> String {
        let err = self.stderr.lock().expect("output").clone();
        err.rsplit(['\r', '\n']).find(|l| l.starts_with("viewers ")).unwrap_or_default().to_owned()
    }

    /// Types a line on its stdin.
    pub fn type_line(&mut self, line: &str) {
        use std::io::Write as _;
        let stdin = self.child.stdin.as_mut().expect("stdin");
        writeln!(stdin, "{line}").and_then(|()| stdin.flush()).expect("write to stdin");
    }

    /// Sends a signal (`INT`, `TERM`, `KILL`).
    pub fn signal(&self, signal: &str) {
        let _ = Command::new("kill").args([&format!("-{signal}"), &self.child.id().to_string()]).status();
    }

    /// Waits for it to exit.
    pub fn wait(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// coturn, as deployed with a relay: REST-API secret, UDP, listening on
/// the public address.
pub fn coturn(inet: &Netns, secret: &str) -> Proc {
    super::require_tool("turnserver", "coturn");
    let mut c = inet.command("turnserver");
    c.args([
        "-n",
        "--log-file=stdout",
        "--simple-log",
        &format!("--listening-ip={PUBLIC_IP}"),
        &format!("--relay-ip={PUBLIC_IP}"),
        "--listening-port=3478",
        "--min-port=49160",
        "--max-port=49400",
        "--use-auth-secret",
        &format!("--static-auth-secret={secret}"),
        "--realm=peep.test",
        "--fingerprint",
        "--no-tls",
        "--no-dtls",
        "--no-cli",
        "--no-tcp-relay",
    ]);
    c.arg(format!(
        "--pidfile={}",
        std::env::temp_dir().join(format!("peep-coturn-{}.pid", std::process::id())).display()
    ));
    let mut p = Proc::spawn("coturn", c);
    p.wait_for("Total General servers", Duration::from_secs(15));
    p
}

/// Lines of a process's output that contain `needle`.
pub fn lines_with(text: &str, needle: &str) -> Vec<String> {
    BufReader::new(text.as_bytes()).lines().map_while(Result::ok).filter(|l| l.contains(needle)).collect()
}

/// Fails unless running as root (namespaces, iptables).
pub fn require_root() {
    let out = run_checked("id", &["-u"], "coreutils");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "0",
        "the NAT tests need root (network namespaces, iptables)"
    );
}
