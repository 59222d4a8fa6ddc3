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

/// Flags of every headless Chromium here (see shared/FACTS.md).
const BASE_ARGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
    "--disable-features=WebRtcHideLocalIpsWithMdns",
    "--autoplay-policy=no-user-gesture-required",
    "--window-size=1280,800",
];

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

/// How we talk to Chromium: its DevTools WebSocket, or (for a browser in a
/// network namespace, whose loopback we cannot reach) the DevTools pipe on
/// its fds 3 and 4, NUL-separated JSON.
enum Transport {
    Ws(Box<WebSocket<MaybeTlsStream<TcpStream>>>),
    Pipe { input: std::process::ChildStdin, output: BufReader<std::process::ChildStdout> },
}

impl Transport {
    fn send(&mut self, text: String) {
        match self {
            Self::Ws(ws) => ws.send(Message::text(text)).expect("send to DevTools"),
            Self::Pipe { input, .. } => {
                use std::io::Write as _;
                input.write_all(text.as_bytes()).and_then(|()| input.write_all(b"\0")).expect("write to DevTools pipe");
                input.flush().expect("flush DevTools pipe");
            }
        }
    }

    fn recv(&mut self) -> String {
        match self {
            Self::Ws(ws) => loop {
                if let Message::Text(text) = ws.read().expect("read from DevTools") {
                    return text.as_str().to_owned();
                }
            },
            Self::Pipe { output, .. } => {
                let mut message = Vec::new();
                let n = output.read_until(0, &mut message).expect("read from DevTools pipe");
                assert!(n > 0, "Chromium closed its DevTools pipe (did it crash?)");
                message.pop();
                String::from_utf8(message).expect("DevTools UTF-8")
            }
        }
    }
}

/// A running Chromium.
pub struct Browser {
    child: Child,
    transport: Transport,
    next_id: u64,
    profile: std::path::PathBuf,
    /// Open the fake camera so loopback candidates are gathered (see the module docs).
    loopback_shim: bool,
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
        let profile = Self::profile();
        let mut child = Command::new(CHROMIUM)
            .args(BASE_ARGS)
            .args(["--allow-loopback-in-peer-connection", "--remote-debugging-port=0"])
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
        let (ws, _) = tungstenite::connect(url.as_str()).expect("connect to DevTools");
        Self { child, transport: Transport::Ws(Box::new(ws)), next_id: 0, profile, loopback_shim: true }
    }

    fn profile() -> std::path::PathBuf {
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
        profile
    }

    /// Starts headless Chromium inside a network namespace, as a viewer on
    /// another machine: no loopback shim (it has a real interface), DevTools
    /// over a pipe.
    pub fn launch_in(netns: &str, extra_args: &[&str]) -> Self {
        let profile = Self::profile();
        // The shell moves our stdin/stdout pipes to fds 3 and 4, where
        // --remote-debugging-pipe expects them.
        let script = format!("exec {CHROMIUM} \"$@\" --remote-debugging-pipe 3<&0 4>&1 0</dev/null 1>/dev/null");
        let mut child = Command::new("ip")
            .args(["netns", "exec", netns, "sh", "-c", &script, "chromium"])
            .args(BASE_ARGS)
            .args(extra_args)
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("about:blank")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromium in the namespace");
        let input = child.stdin.take().expect("stdin");
        let output = BufReader::new(child.stdout.take().expect("stdout"));
        Self { child, transport: Transport::Pipe { input, output }, next_id: 0, profile, loopback_shim: false }
    }

    /// Sends a CDP command and waits for its result.
    pub fn call(&mut self, session: Option<&str>, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut msg = json!({ "id": id, "method": method, "params": params });
        if let Some(s) = session {
            msg["sessionId"] = json!(s);
        }
        self.transport.send(msg.to_string());
        loop {
            let text = self.transport.recv();
            let v: Value = serde_json::from_str(&text).expect("DevTools JSON");
            if v["id"].as_u64() == Some(id) {
                assert!(v.get("error").is_none(), "{method} failed: {}", v["error"]);
                return v["result"].clone();
            }
        }
    }

    /// Opens a tab at `url` with the loopback shim and the mark reader installed.
    pub fn open(&mut self, url: &str) -> Page {
        // Each viewer in its own window, so none is a hidden background tab.
        let target = self.call(None, "Target.createTarget", json!({ "url": "about:blank", "newWindow": true }));
        let target_id = target["targetId"].as_str().expect("targetId").to_owned();
        let attached = self.call(None, "Target.attachToTarget", json!({ "targetId": target_id, "flatten": true }));
        let session_id = attached["sessionId"].as_str().expect("sessionId").to_owned();
        let page = Page { target_id, session_id };
        let origin = url.split('/').take(3).collect::<Vec<_>>().join("/");
        if self.loopback_shim {
            self.call(
                None,
                "Browser.grantPermissions",
                json!({ "origin": origin, "permissions": ["videoCapture", "audioCapture"] }),
            );
        }
        self.call(Some(&page.session_id), "Page.enable", json!({}));
        self.call(Some(&page.session_id), "Emulation.setFocusEmulationEnabled", json!({ "enabled": true }));
        let shim = if self.loopback_shim { LOOPBACK_SHIM } else { "" };
        self.call(
            Some(&page.session_id),
            "Page.addScriptToEvaluateOnNewDocument",
            json!({ "source": format!("{shim}\n{MARK_READER}") }),
        );
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
        let r = self.call(
            Some(&page.session_id),
            "Runtime.evaluate",
            json!({ "expression": expression, "awaitPromise": true, "returnByValue": true }),
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
