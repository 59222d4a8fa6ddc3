//! A headless Debian Chromium driven over the DevTools protocol (CDP), for
//! tests that watch a share in a real browser.
//!
//! Chromium gathers no loopback ICE candidate unless the page holds camera
//! permission (see shared/FACTS.md): the harness grants it and, before any
//! page script runs, makes `createOffer` first open a fake camera. That is
//! test plumbing standing in for a second machine on the LAN; the viewer
//! page itself never asks for a camera.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};

const CHROMIUM: &str = "/usr/bin/chromium";

/// JS run in every page before its own scripts (see the module docs).
const LOOPBACK_SHIM: &str = r#"
(() => {
  const original = RTCPeerConnection.prototype.createOffer;
  RTCPeerConnection.prototype.createOffer = async function (...args) {
    if (!window.__peepTestCamera) {
      window.__peepTestCamera = await navigator.mediaDevices.getUserMedia({ video: true });
    }
    return original.apply(this, args);
  };
})();
"#;

/// JS helpers for tests: read Peep's frame marks from the playing video.
pub const MARK_READER: &str = r#"
window.__peepReadMark = () => {
  const v = document.getElementById('video');
  const w = v.videoWidth, h = v.videoHeight;
  if (!w || !h) return null;
  const b = Math.min(32, Math.max(4, Math.floor(w / 64))) & ~1;
  if (34 * b > w || 5 * b > h) return null;
  // Copy only the marked corner: cheap even at 4K.
  const c = window.__peepCanvas || (window.__peepCanvas = document.createElement('canvas'));
  if (c.width !== 34 * b || c.height !== 5 * b) { c.width = 34 * b; c.height = 5 * b; }
  const g = c.getContext('2d', { willReadFrequently: true });
  g.drawImage(v, 0, 0, 34 * b, 5 * b, 0, 0, 34 * b, 5 * b);
  const d = g.getImageData(0, 0, 34 * b, 5 * b).data;
  const stride = 34 * b * 4;
  const q = Math.max(1, Math.floor(b / 4));
  const rows = [0, 0, 0];
  for (let r = 0; r < 3; r++) {
    for (let bit = 0; bit < 32; bit++) {
      const x0 = (bit + 1) * b, y0 = (r + 1) * b;
      let sum = 0, n = 0;
      for (let y = y0 + q; y < y0 + b - q; y++) {
        for (let x = x0 + q; x < x0 + b - q; x++) {
          const i = y * stride + x * 4;
          sum += (d[i] * 77 + d[i + 1] * 150 + d[i + 2] * 29) >> 8;
          n++;
        }
      }
      rows[r] = ((rows[r] << 1) | (sum / n >= 128 ? 1 : 0)) >>> 0;
    }
  }
  const bytes = [rows[0] >>> 24, (rows[0] >>> 16) & 255, (rows[0] >>> 8) & 255, rows[0] & 255,
                 rows[1] >>> 24, (rows[1] >>> 16) & 255, (rows[1] >>> 8) & 255, rows[1] & 255];
  let crc = 0xffff;
  for (const byte of bytes) {
    crc ^= byte << 8;
    for (let i = 0; i < 8; i++) crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
  }
  if ((rows[2] & 0xffff) !== 0xaaaa || (rows[2] >>> 16) !== crc) return null;
  return { counter: rows[0], timestampMs: rows[1] };
};
"#;

/// How to start Chromium.
#[derive(Debug, Default, Clone, Copy)]
pub struct Launch<'a> {
    /// Extra command-line flags.
    pub extra_args: &'a [&'a str],
    /// Run inside this network namespace (`ip netns exec`).
    pub netns: Option<&'a str>,
    /// Run with a window on this X display instead of headless (screen
    /// capture with getDisplayMedia needs it).
    pub display: Option<&'a str>,
}

/// A running Chromium.
pub struct Browser {
    child: Child,
    ws: WebSocket<MaybeTlsStream<TcpStream>>,
    next_id: u64,
    profile: std::path::PathBuf,
}

/// One tab.
#[derive(Debug, Clone)]
pub struct Page {
    pub target_id: String,
    pub session_id: String,
}

impl Browser {
    /// Starts headless Chromium. Fails with an install hint when it is missing.
    pub fn launch() -> Self {
        Self::launch_with(&[])
    }

    /// Starts headless Chromium with extra command-line flags.
    pub fn launch_with(extra_args: &[&str]) -> Self {
        Self::launch_opts(&Launch { extra_args, ..Launch::default() })
    }

    /// Starts Chromium as `launch` says (in a network namespace, with a
    /// window on an X display, …).
    pub fn launch_opts(launch: &Launch<'_>) -> Self {
        let extra_args = launch.extra_args;
        assert!(
            std::path::Path::new(CHROMIUM).exists(),
            "browser tests need Debian's Chromium: install it with `apt-get install chromium`"
        );
        let profile = std::env::temp_dir().join(format!(
            "peep-chromium-{}-{}",
            std::process::id(),
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0)
        ));
        std::fs::create_dir_all(&profile).expect("profile dir");
        let mut command = match launch.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, CHROMIUM]);
                c
            }
            None => Command::new(CHROMIUM),
        };
        match launch.display {
            Some(display) => {
                command.env("DISPLAY", display);
            }
            None => {
                command.arg("--headless");
            }
        }
        let mut child = command
            .args([
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-dev-shm-usage",
                "--allow-loopback-in-peer-connection",
                "--use-fake-ui-for-media-stream",
                "--use-fake-device-for-media-stream",
                "--disable-features=WebRtcHideLocalIpsWithMdns",
                "--autoplay-policy=no-user-gesture-required",
                "--remote-debugging-port=0",
                "--window-size=1280,800",
            ])
            .args(extra_args)
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start chromium");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut sent = false;
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if !sent && let Some(url) = line.strip_prefix("DevTools listening on ") {
                    let _ = tx.send(url.trim().to_owned());
                    sent = true;
                }
            }
        });
        let url = rx.recv_timeout(Duration::from_secs(30)).expect("Chromium printed its DevTools address");
        // DevTools listens on the loopback of Chromium's namespace: connect from there.
        let ws = match launch.netns {
            Some(ns) => peep_netlab::netns::run_in(ns, move || tungstenite::connect(url.as_str()).map(|c| c.0))
                .expect("enter the browser's namespace"),
            None => tungstenite::connect(url.as_str()).map(|c| c.0),
        }
        .expect("connect to DevTools");
        Self { child, ws, next_id: 0, profile }
    }

    /// Sends a CDP command and waits for its result.
    pub fn call(&mut self, session: Option<&str>, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut msg = json!({ "id": id, "method": method, "params": params });
        if let Some(s) = session {
            msg["sessionId"] = json!(s);
        }
        self.ws.send(Message::text(msg.to_string())).expect("send to DevTools");
        loop {
            let reply = self.ws.read().expect("read from DevTools");
            let Message::Text(text) = reply else { continue };
            let v: Value = serde_json::from_str(text.as_str()).expect("DevTools JSON");
            if v["id"].as_u64() == Some(id) {
                assert!(v.get("error").is_none(), "{method} failed: {}", v["error"]);
                return v["result"].clone();
            }
        }
    }

    /// Opens a tab at `url` with the loopback shim and the mark reader installed.
    pub fn open(&mut self, url: &str) -> Page {
        self.open_with_scripts(url, &format!("{LOOPBACK_SHIM}\n{MARK_READER}"), true)
    }

    /// Opens a tab at `url` with `script` run before the page's own scripts
    /// (no camera shim: for hosts in namespaces, whose default-route
    /// interface Chromium gathers without any permission).
    pub fn open_plain(&mut self, url: &str, script: &str) -> Page {
        self.open_with_scripts(url, script, false)
    }

    fn open_with_scripts(&mut self, url: &str, script: &str, grant_camera: bool) -> Page {
        // Each viewer in its own window, so none is a hidden background tab.
        let target = self.call(None, "Target.createTarget", json!({ "url": "about:blank", "newWindow": true }));
        let target_id = target["targetId"].as_str().expect("targetId").to_owned();
        let attached = self.call(None, "Target.attachToTarget", json!({ "targetId": target_id, "flatten": true }));
        let session_id = attached["sessionId"].as_str().expect("sessionId").to_owned();
        let page = Page { target_id, session_id };
        if grant_camera {
            let origin = url.split('/').take(3).collect::<Vec<_>>().join("/");
            self.call(
                None,
                "Browser.grantPermissions",
                json!({ "origin": origin, "permissions": ["videoCapture", "audioCapture"] }),
            );
        }
        self.call(Some(&page.session_id), "Page.enable", json!({}));
        self.call(Some(&page.session_id), "Emulation.setFocusEmulationEnabled", json!({ "enabled": true }));
        self.call(Some(&page.session_id), "Page.addScriptToEvaluateOnNewDocument", json!({ "source": script }));
        self.navigate(&page, url);
        page
    }

    /// Loads `url` in `page` and waits for the document to load.
    pub fn navigate(&mut self, page: &Page, url: &str) {
        self.call(Some(&page.session_id), "Page.navigate", json!({ "url": url }));
        self.wait_for(
            page,
            "document.readyState === 'complete' && location.href !== 'about:blank'",
            Duration::from_secs(10),
        );
    }

    /// Evaluates `expression` (awaiting promises) and returns its value.
    pub fn eval(&mut self, page: &Page, expression: &str) -> Value {
        self.eval_opts(page, expression, false)
    }

    /// Like [`Browser::eval`], as if the user had just clicked (APIs such as
    /// getDisplayMedia want a user gesture).
    pub fn eval_gesture(&mut self, page: &Page, expression: &str) -> Value {
        self.eval_opts(page, expression, true)
    }

    fn eval_opts(&mut self, page: &Page, expression: &str, user_gesture: bool) -> Value {
        let r = self.call(
            Some(&page.session_id),
            "Runtime.evaluate",
            json!({ "expression": expression, "awaitPromise": true, "returnByValue": true, "userGesture": user_gesture }),
        );
        if let Some(ex) = r.get("exceptionDetails") {
            panic!("{expression} threw: {ex}");
        }
        r["result"]["value"].clone()
    }

    /// Waits until `condition` (a JS expression) is truthy, or panics with
    /// the page's state after `timeout`.
    pub fn wait_for(&mut self, page: &Page, condition: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if self.eval(page, &format!("!!({condition})")) == json!(true) {
                return;
            }
            if Instant::now() > deadline {
                let state = self.eval(page, "JSON.stringify({ state: window.peep && peep.state(), text: document.body && document.body.innerText, stats: window.peep && peep.stats() })");
                panic!("timed out waiting for `{condition}`; page: {state}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The page's `peep.stats()`.
    pub fn stats(&mut self, page: &Page) -> Value {
        self.eval(page, "peep.stats()")
    }

    /// The status text the page shows.
    pub fn status_text(&mut self, page: &Page) -> String {
        self.eval(page, "document.getElementById('status-text').textContent").as_str().unwrap_or_default().to_owned()
    }

    /// Closes a tab (the page's `pagehide` handler says goodbye).
    pub fn close(&mut self, page: &Page) {
        self.call(None, "Target.closeTarget", json!({ "targetId": page.target_id }));
    }

    /// Kills the browser without any goodbye (a viewer that vanishes).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Takes a PNG screenshot of `page` into `path`.
    pub fn screenshot(&mut self, page: &Page, path: &std::path::Path) {
        use base64_decode as b64;
        let shot = self.call(Some(&page.session_id), "Page.captureScreenshot", json!({ "format": "png" }));
        let data = shot["data"].as_str().expect("screenshot data");
        std::fs::write(path, b64(data)).expect("write screenshot");
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

/// Standard base64 decoding (for screenshots), small enough to keep here.
fn base64_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0);
    for v in text.bytes().filter_map(value) {
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}
