//! A headless Debian Firefox ESR driven over WebDriver BiDi (its own remote
//! protocol, `--remote-debugging-port`), for tests that watch a share in
//! the browser most likely to lack H.264.
//!
//! - **Fresh profile, default media settings.** The profile's `user.js`
//!   only keeps Firefox off the network (no updates, telemetry, captive
//!   portal or connectivity checks, remote settings, safe browsing, GMP
//!   downloads) and turns off the remote agent's own "recommended"
//!   preferences, so every media preference is Firefox's default: Debian's
//!   Firefox then offers VP8, VP9 and AV1 for WebRTC, and no H.264. Tests
//!   may add preferences (e.g. `media.webrtc.hw.h264.enabled`).
//! - **In a network namespace.** Firefox skips loopback ICE candidates, so
//!   it runs in its own namespace (`ip netns exec`) joined to the test by a
//!   veth pair; the share listens on the test's end. The namespace has no
//!   other route: nothing Firefox tries can leave the machine.
//! - The BiDi server listens on 127.0.0.1 *inside* that namespace; the
//!   harness opens its TCP connection from a short-lived thread that
//!   entered the namespace (`setns`), then speaks WebSocket over it from
//!   the test's own namespace.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tungstenite::{Message, WebSocket};

use super::netns::Netns;

const FIREFOX: &str = "/usr/bin/firefox-esr";

/// Preferences that keep Firefox off the network, and nothing else.
const OFFLINE_PREFS: &[(&str, &str)] = &[
    // The remote agent would otherwise set ~100 "recommended" preferences.
    ("remote.prefs.recommended", "false"),
    ("app.update.disabledForTesting", "true"),
    ("app.update.auto", "false"),
    ("toolkit.telemetry.enabled", "false"),
    ("toolkit.telemetry.unified", "false"),
    ("toolkit.telemetry.server", "\"\""),
    ("datareporting.healthreport.uploadEnabled", "false"),
    ("datareporting.policy.dataSubmissionEnabled", "false"),
    ("network.captive-portal-service.enabled", "false"),
    ("network.connectivity-service.enabled", "false"),
    ("services.settings.server", "\"\""),
    ("browser.safebrowsing.malware.enabled", "false"),
    ("browser.safebrowsing.phishing.enabled", "false"),
    ("browser.safebrowsing.downloads.enabled", "false"),
    ("extensions.update.enabled", "false"),
    ("extensions.getAddons.cache.enabled", "false"),
    ("media.gmp-manager.updateEnabled", "false"),
    ("browser.search.update", "false"),
    ("network.prefetch-next", "false"),
    ("network.dns.disablePrefetch", "true"),
    ("browser.shell.checkDefaultBrowser", "false"),
    ("browser.startup.homepage_override.mstone", "\"ignore\""),
    ("browser.aboutwelcome.enabled", "false"),
];

/// A running Firefox.
pub struct Firefox {
    child: Child,
    ws: WebSocket<TcpStream>,
    next_id: u64,
    dir: PathBuf,
}

/// One tab (a BiDi top-level browsing context).
#[derive(Debug, Clone)]
pub struct Tab {
    pub context: String,
}

/// Connects to `127.0.0.1:port` inside network namespace `ns`.
fn connect_in_namespace(ns: &str, port: u16) -> TcpStream {
    let path = format!("/run/netns/{ns}");
    std::thread::spawn(move || {
        let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
        // Only this short-lived thread enters the namespace; the socket
        // stays bound to it after the thread ends.
        nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)
            .unwrap_or_else(|e| panic!("setns({path}): {e} (network namespace tests need root)"));
        TcpStream::connect(("127.0.0.1", port)).expect("connect to Firefox's BiDi port")
    })
    .join()
    .expect("namespace connect thread")
}

impl Firefox {
    /// Starts headless Firefox in `ns` with a fresh profile, default media
    /// settings and `extra_prefs` (name, JS value). Fails with an install
    /// hint when Firefox is missing.
    pub fn launch(ns: &Netns, extra_prefs: &[(&str, &str)]) -> Self {
        assert!(
            std::path::Path::new(FIREFOX).exists(),
            "Firefox tests need Debian's Firefox ESR: install it with `apt-get install firefox-esr`"
        );
        let dir = std::env::temp_dir().join(format!(
            "peep-firefox-{}-{}",
            std::process::id(),
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0)
        ));
        let profile = dir.join("profile");
        std::fs::create_dir_all(&profile).expect("profile dir");
        let prefs: String = OFFLINE_PREFS
            .iter()
            .chain(extra_prefs)
            .map(|(name, value)| format!("user_pref(\"{name}\", {value});\n"))
            .collect();
        std::fs::write(profile.join("user.js"), prefs).expect("user.js");
        let mut child = ns
            .command(FIREFOX)
            .args(["--headless", "--no-remote", "--remote-debugging-port", "0", "--profile"])
            .arg(&profile)
            .arg("about:blank")
            .env("HOME", &dir)
            .env("XDG_CACHE_HOME", dir.join("cache"))
            .env("XDG_CONFIG_HOME", dir.join("config"))
            .env("MOZ_CRASHREPORTER_DISABLE", "1")
            .env_remove("DISPLAY")
            .env_remove("WAYLAND_DISPLAY")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start firefox-esr");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut sent = false;
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if !sent && let Some(url) = line.split("WebDriver BiDi listening on ").nth(1) {
                    let _ = tx.send(url.trim().to_owned());
                    sent = true;
                }
                if std::env::var_os("PEEP_FIREFOX_LOG").is_some() {
                    eprintln!("firefox: {line}");
                }
            }
        });
        let url = rx.recv_timeout(Duration::from_secs(60)).expect("Firefox printed its WebDriver BiDi address");
        let port: u16 = url
            .rsplit(':')
            .next()
            .and_then(|p| p.trim_end_matches('/').parse().ok())
            .unwrap_or_else(|| panic!("port in {url}"));
        let stream = connect_in_namespace(&ns.name, port);
        let (ws, _) = tungstenite::client(format!("ws://127.0.0.1:{port}/session"), stream).expect("BiDi WebSocket");
        let mut firefox = Self { child, ws, next_id: 0, dir };
        firefox.call("session.new", json!({ "capabilities": {} }));
        firefox
    }

    /// Sends a BiDi command and waits for its result (events in between are skipped).
    pub fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let msg = json!({ "id": id, "method": method, "params": params });
        self.ws.send(Message::text(msg.to_string())).expect("send to Firefox");
        loop {
            let reply = self.ws.read().expect("read from Firefox");
            let Message::Text(text) = reply else { continue };
            let v: Value = serde_json::from_str(text.as_str()).expect("BiDi JSON");
            if v["id"].as_u64() == Some(id) {
                assert_eq!(v["type"], "success", "{method} failed: {v}");
                return v["result"].clone();
            }
        }
    }

    /// Opens a tab at `url` with the mark reader installed.
    pub fn open(&mut self, url: &str) -> Tab {
        self.open_with(url, "")
    }

    /// Opens a tab at `url`, running `preload` (JS statements) and the mark
    /// reader before the page's own scripts.
    pub fn open_with(&mut self, url: &str, preload: &str) -> Tab {
        let created = self.call("browsingContext.create", json!({ "type": "window" }));
        let tab = Tab { context: created["context"].as_str().expect("context").to_owned() };
        let source = format!("() => {{\n{preload}\n{}\n}}", super::browser::MARK_READER);
        self.call("script.addPreloadScript", json!({ "functionDeclaration": source, "contexts": [tab.context] }));
        self.call("browsingContext.navigate", json!({ "context": tab.context, "url": url, "wait": "complete" }));
        tab
    }

    /// Evaluates `expression` (awaiting promises) and returns its value as JSON.
    pub fn eval(&mut self, tab: &Tab, expression: &str) -> Value {
        let wrapped = format!("(async () => JSON.stringify(await ({expression})))()");
        let r = self.call(
            "script.evaluate",
            json!({
                "expression": wrapped,
                "target": { "context": tab.context },
                "awaitPromise": true,
                "resultOwnership": "none",
            }),
        );
        if r["type"] == "exception" {
            panic!("{expression} threw: {}", r["exceptionDetails"]);
        }
        match r["result"]["value"].as_str() {
            Some(json) => serde_json::from_str(json).expect("JSON from the page"),
            None => Value::Null, // undefined
        }
    }

    /// Waits until `condition` (a JS expression) is truthy, or panics with
    /// the page's state after `timeout`.
    pub fn wait_for(&mut self, tab: &Tab, condition: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if self.eval(tab, &format!("!!({condition})")) == json!(true) {
                return;
            }
            if Instant::now() > deadline {
                let state = self.eval(
                    tab,
                    "({ state: window.peep && peep.state(), text: document.body && document.body.innerText, stats: window.peep && peep.stats() })",
                );
                panic!("timed out waiting for `{condition}`; page: {state}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The page's `peep.stats()`.
    pub fn stats(&mut self, tab: &Tab) -> Value {
        self.eval(tab, "peep.stats()")
    }

    /// The status text the page shows.
    pub fn status_text(&mut self, tab: &Tab) -> String {
        self.eval(tab, "document.getElementById('status-text').textContent").as_str().unwrap_or_default().to_owned()
    }

    /// Reads marks from the playing video every 40 ms for `duration`, in
    /// the page (one round trip); returns the counters seen.
    pub fn read_marks(&mut self, tab: &Tab, duration: Duration) -> Vec<u64> {
        self.sample_marks(tab, duration).into_iter().flatten().collect()
    }

    /// As [`Firefox::read_marks`], keeping the samples whose mark did not
    /// read back (`None`: a corrupt or missing picture).
    pub fn sample_marks(&mut self, tab: &Tab, duration: Duration) -> Vec<Option<u64>> {
        let sampler = format!(
            "new Promise((resolve) => {{
               const out = [], t0 = performance.now();
               const tick = () => {{
                 const m = window.__peepReadMark();
                 out.push(m ? m.counter : null);
                 if (performance.now() - t0 < {ms}) setTimeout(tick, 40); else resolve(out);
               }};
               tick();
             }})",
            ms = duration.as_millis()
        );
        let counters = self.eval(tab, &sampler);
        counters.as_array().map(|a| a.iter().map(Value::as_u64).collect()).unwrap_or_default()
    }

    /// Closes a tab (the page's `pagehide` handler says goodbye).
    pub fn close(&mut self, tab: &Tab) {
        self.call("browsingContext.close", json!({ "context": tab.context, "promptUnload": false }));
    }
}

impl Drop for Firefox {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
