//! A headless Debian Chromium driven over the DevTools protocol (CDP), for
//! tests that watch a share in a real browser.
//!
//! Two set-ups:
//! * [`Browser::launch`] — on this machine's loopback. Chromium gathers no
//!   loopback ICE candidate unless the page holds camera permission (see
//!   shared/FACTS.md): the harness grants it and, before any page script
//!   runs, makes `createOffer` first open a fake camera, and turns off mDNS
//!   hiding of host addresses. That is test plumbing standing in for a
//!   second machine on the LAN; the viewer page itself never asks for a
//!   camera.
//! * [`Browser::launch_in`] — inside a network namespace (a test host),
//!   with Chromium's default WebRTC behaviour: no camera, host addresses
//!   hidden behind mDNS `.local` names, as a real remote viewer's browser.
//!
//! CDP runs over `--remote-debugging-pipe` (fds 3 and 4, NUL-terminated
//! JSON), so the test can drive a browser in any network namespace.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

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

/// JS run in every page: keeps the last SDP offer the page POSTed (to
/// WHEP) in `window.__peepOffer`, so tests can see which candidates the
/// browser revealed.
const OFFER_RECORDER: &str = r#"
(() => {
  const original = window.fetch;
  window.fetch = function (resource, init) {
    if (init && init.method === 'POST' && typeof init.body === 'string') window.__peepOffer = init.body;
    return original.apply(this, arguments);
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

/// JS that records glass-to-glass latency: for every presented frame, its
/// expected display time (wall clock) minus the capture time the synthetic
/// source stamped into it. Results accumulate in `window.__lat` (ms); frames
/// whose mark cannot be read are counted in `window.__latUnread`. Nothing is
/// filtered out, so a regression to seconds shows.
pub const LATENCY_PROBE: &str = r#"
(() => {
  window.__lat = [];
  window.__latUnread = 0;
  const v = document.getElementById('video');
  const cb = (now, meta) => {
    const m = window.__peepReadMark();
    if (m) {
      const shown = performance.timeOrigin + meta.expectedDisplayTime;
      let d = (shown % 4294967296) - m.timestampMs;
      if (d < -2147483648) d += 4294967296;
      window.__lat.push(d);
    } else {
      window.__latUnread += 1;
    }
    v.requestVideoFrameCallback(cb);
  };
  v.requestVideoFrameCallback(cb);
  return true;
})()
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
    to_browser: std::io::PipeWriter,
    from_browser: BufReader<std::io::PipeReader>,
    next_id: u64,
    profile: std::path::PathBuf,
    /// Loopback set-up: grant the camera and install the shim in each page.
    loopback: bool,
}

/// One tab.
#[derive(Debug, Clone)]
pub struct Page {
    pub target_id: String,
    pub session_id: String,
}

impl Browser {
    /// Starts headless Chromium for loopback tests (see the module docs).
    /// Fails with an install hint when it is missing.
    pub fn launch() -> Self {
        Self::launch_with(&[])
    }

    /// [`Browser::launch`] with extra command-line flags.
    pub fn launch_with(extra_args: &[&str]) -> Self {
        let loopback = [
            "--allow-loopback-in-peer-connection",
            "--use-fake-ui-for-media-stream",
            "--use-fake-device-for-media-stream",
            "--disable-features=WebRtcHideLocalIpsWithMdns",
        ];
        let args: Vec<&str> = loopback.iter().chain(extra_args).copied().collect();
        Self::start(&Launch { extra_args: &args, ..Launch::default() }, true)
    }

    /// Starts headless Chromium inside network namespace `netns`, with
    /// Chromium's default WebRTC behaviour (mDNS host candidates, no camera).
    pub fn launch_in(netns: &str, extra_args: &[&str]) -> Self {
        Self::start(&Launch { extra_args, netns: Some(netns), display: None }, false)
    }

    /// Starts Chromium as `launch` says (in a network namespace, with a
    /// window on an X display, …), with its default WebRTC behaviour.
    pub fn launch_opts(launch: &Launch<'_>) -> Self {
        Self::start(launch, false)
    }

    fn start(launch: &Launch<'_>, loopback: bool) -> Self {
        use std::os::fd::AsRawFd;
        use std::os::unix::process::CommandExt;
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
        let (commands_rx, to_browser) = std::io::pipe().expect("pipe");
        let (from_browser, replies_tx) = std::io::pipe().expect("pipe");
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
        command
            .args([
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-dev-shm-usage",
                "--autoplay-policy=no-user-gesture-required",
                "--remote-debugging-pipe",
                "--window-size=1280,800",
            ])
            .args(extra_args)
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let (read_fd, write_fd) = (commands_rx.as_raw_fd(), replies_tx.as_raw_fd());
        // SAFETY: between fork and exec only async-signal-safe calls (fcntl,
        // dup2, close) run; they give the child the two pipe ends Chromium's
        // --remote-debugging-pipe expects as fds 3 (commands) and 4 (replies),
        // without the close-on-exec flag. The ends are first copied above 4:
        // either may itself be fd 3 or 4 (the lowest free numbers), and
        // dup2-ing in place would then clobber the other, or keep
        // close-on-exec (dup2 onto itself changes nothing).
        unsafe {
            command.pre_exec(move || {
                let high = [libc::fcntl(read_fd, libc::F_DUPFD, 10), libc::fcntl(write_fd, libc::F_DUPFD, 10)];
                if high.iter().any(|fd| *fd < 0) {
                    return Err(std::io::Error::last_os_error());
                }
                for (from, to) in [(high[0], 3), (high[1], 4)] {
                    if libc::dup2(from, to) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    libc::close(from);
                }
                Ok(())
            });
        }
        let child = command.spawn().expect("start chromium");
        drop((commands_rx, replies_tx));
        Self { child, to_browser, from_browser: BufReader::new(from_browser), next_id: 0, profile, loopback }
    }

    /// Sends a CDP command and waits for its result.
    pub fn call(&mut self, session: Option<&str>, method: &str, params: Value) -> Value {
        use std::io::Write;
        self.next_id += 1;
        let id = self.next_id;
        let mut msg = json!({ "id": id, "method": method, "params": params });
        if let Some(s) = session {
            msg["sessionId"] = json!(s);
        }
        let mut bytes = msg.to_string().into_bytes();
        bytes.push(0);
        self.to_browser.write_all(&bytes).expect("send to DevTools (did Chromium start?)");
        loop {
            let mut reply = Vec::new();
            let n = self.from_browser.read_until(0, &mut reply).expect("read from DevTools");
            assert!(n > 0 && reply.last() == Some(&0), "Chromium closed its DevTools pipe during {method}");
            reply.pop();
            let v: Value = serde_json::from_slice(&reply).expect("DevTools JSON");
            if v["id"].as_u64() == Some(id) {
                assert!(v.get("error").is_none(), "{method} failed: {}", v["error"]);
                return v["result"].clone();
            }
        }
    }

    /// Opens a tab at `url` with the mark reader (and, on loopback, the
    /// camera shim) installed.
    pub fn open(&mut self, url: &str) -> Page {
        let shim = if self.loopback { LOOPBACK_SHIM } else { "" };
        let loopback = self.loopback;
        self.open_with_scripts(url, &format!("{shim}\n{OFFER_RECORDER}\n{MARK_READER}"), loopback)
    }

    /// Opens a tab at `url` with only `script` installed (no camera grant).
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
