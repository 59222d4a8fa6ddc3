//! A real SFU for the WHIP tests: Debian's Janus 1.1.2 (VideoRoom rooms
//! with `videocodec = "h264"`) and Meetecho's simple-whip-server in front of
//! it, both in a network namespace joined to the test's own namespace by a
//! veth pair (addresses in 10.245.0.0/16). Started once per test binary
//! ([`sfu`]) and torn down when the binary exits; tests take turns (the
//! guard serialises them, as one test restarts Janus).
//!
//! The test side speaks Janus' HTTP API ([`Sfu::publishers`]) and the WHIP
//! server's endpoint API ([`Sfu::endpoint`]); browsers in the namespace load
//! [`Sfu::subscriber_page`], a VideoRoom subscriber on Janus' own
//! JavaScript (Debian `libjs-janus-gateway`).

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::netns::{Link, Netns};

/// Where `.ci/whip-server.sh` installs simple-whip-server (its `src/` and
/// `node_modules/`); `PEEP_WHIP_SERVER_DIR` overrides.
pub const DEFAULT_WHIP_SERVER_DIR: &str = "/var/tmp/peep-whip-server";
/// Static VideoRoom rooms, one per endpoint a test asks for.
pub const ROOMS: std::ops::Range<u32> = 1001..1041;
/// A room whose publishers Janus caps at [`CAPPED_BPS`] (with REMB).
pub const CAPPED_ROOM: u32 = 1099;
/// The capped room's `bitrate`.
pub const CAPPED_BPS: u32 = 400_000;
const JANUS_JS: &str = "/usr/share/javascript/janus-gateway/janus.js";
const ADAPTER_JS: &str = "/usr/share/javascript/webrtc-adapter/adapter.js";
const SUBSCRIBER_HTML: &str = include_str!("janus-subscriber.html");
/// Prefix of this fixture's namespaces (with the owning process id).
const NS_TAG: &str = "pjan";

/// A WHIP endpoint mapped to its own room.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub id: String,
    pub room: u32,
    /// `http://SFU:7080/whip/endpoint/<id>`.
    pub url: String,
}

/// The running SFU.
pub struct Sfu {
    pub ns: Netns,
    pub link: Link,
    pub dir: PathBuf,
    janus: Option<Child>,
    whip: Option<Child>,
    tls_proxy: Option<Child>,
    next_room: AtomicU32,
    janus_starts: u32,
}

static SFU: OnceLock<Mutex<Sfu>> = OnceLock::new();

extern "C" fn tear_down_at_exit() {
    if let Some(sfu) = SFU.get() {
        sfu.lock().unwrap_or_else(|e| e.into_inner()).tear_down();
    }
}

/// The SFU of this test binary, started on first use; tests hold the
/// guard while they use it.
pub fn sfu() -> MutexGuard<'static, Sfu> {
    SFU.get_or_init(|| {
        let sfu = Sfu::start();
        // SAFETY: registers a plain `extern "C" fn()` with libc's atexit;
        // libtest ends the process with `exit`, which runs it once.
        unsafe {
            libc::atexit(tear_down_at_exit);
        }
        Mutex::new(sfu)
    })
    .lock()
    .unwrap_or_else(|e| e.into_inner())
}

/// The directory holding simple-whip-server, or a failure saying how to install it.
pub fn whip_server_dir() -> PathBuf {
    let dir = PathBuf::from(std::env::var("PEEP_WHIP_SERVER_DIR").unwrap_or_else(|_| DEFAULT_WHIP_SERVER_DIR.into()));
    assert!(
        dir.join("src/server.js").is_file() && dir.join("node_modules/express").is_dir(),
        "the WHIP tests need Meetecho's simple-whip-server in {}: run `.ci/whip-server.sh` (Debian package \
         simple-whip-server unpacked, its Node modules from npm)",
        dir.display()
    );
    dir
}

/// A minimal HTTP/1.1 exchange (`Connection: close`), for Janus' and the
/// WHIP server's JSON APIs. Returns the status and the body.
pub fn http(addr: &str, method: &str, path: &str, content_type: &str, body: &str) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: {content_type}\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let chunked = head.lines().any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    Ok((status, if chunked { dechunk(body) } else { body.to_owned() }))
}

/// Decodes a chunked body (sizes in hex, each chunk followed by CRLF).
fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.split(';').next().unwrap_or("").trim(), 16) else { break };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}

fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Deletes namespaces (and their processes) left by earlier runs of this
/// fixture whose test process no longer exists (killed before its atexit ran).
fn remove_leftovers() {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else { return };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let name = line.split_whitespace().next().unwrap_or("");
        let Some(rest) = name.strip_prefix(NS_TAG) else { continue };
        let Some(pid) = rest.split('x').next().and_then(|p| p.parse::<u32>().ok()) else { continue };
        // Names carry pid % 100000; a live process with that pid keeps its namespace.
        if Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        if let Ok(pids) = Command::new("ip").args(["netns", "pids", name]).output() {
            for p in String::from_utf8_lossy(&pids.stdout).split_whitespace() {
                let _ = Command::new("kill").args(["-9", p]).status();
            }
        }
        let _ = Command::new("ip").args(["netns", "del", name]).status();
    }
}

impl Sfu {
    fn start() -> Self {
        super::require_tool("janus", "janus");
        super::require_tool("node", "nodejs");
        for (file, package) in [(JANUS_JS, "libjs-janus-gateway"), (ADAPTER_JS, "libjs-webrtc-adapter")] {
            assert!(
                Path::new(file).is_file(),
                "the WHIP tests need {file}: install it with `apt-get install {package}`"
            );
        }
        let whip_dir = whip_server_dir();
        remove_leftovers();
        let ns = Netns::new(NS_TAG);
        let subnet = 10 + std::process::id() % 240;
        let link = Link::new(None, &format!("10.245.{subnet}.1/24"), Some(&ns), &format!("10.245.{subnet}.2/24"));
        let dir = std::env::temp_dir().join(format!("peep-sfu-{}", ns.name));
        let _ = std::fs::remove_dir_all(&dir);
        for sub in ["conf", "plugins", "transports", "whip/src", "whip/web"] {
            std::fs::create_dir_all(dir.join(sub)).expect("fixture dir");
        }
        let sfu_ip = link.b.ip().to_owned();
        write_janus_config(&dir, &sfu_ip);
        for file in ["server.js", "whip-janus.js"] {
            std::fs::copy(whip_dir.join("src").join(file), dir.join("whip/src").join(file)).expect("copy WHIP server");
        }
        std::os::unix::fs::symlink(whip_dir.join("node_modules"), dir.join("whip/node_modules")).expect("link modules");
        std::fs::write(
            dir.join("whip/src/config.js"),
            format!(
                "module.exports = {{ janus: {{ address: 'ws://{sfu_ip}:8188' }}, port: 7080, rest: '/whip', \
                 allowTrickle: true, strictETags: false, iceServers: [] }};\n"
            ),
        )
        .expect("WHIP config");
        std::fs::write(dir.join("whip/web/janus-subscriber.html"), SUBSCRIBER_HTML).expect("page");
        std::fs::copy(JANUS_JS, dir.join("whip/web/janus.js")).expect("janus.js");
        std::fs::copy(ADAPTER_JS, dir.join("whip/web/adapter.js")).expect("adapter.js");
        let mut sfu = Self {
            ns,
            link,
            dir,
            janus: None,
            whip: None,
            tls_proxy: None,
            next_room: AtomicU32::new(ROOMS.start),
            janus_starts: 0,
        };
        sfu.start_janus();
        let log = std::fs::File::create(sfu.dir.join("whip.log")).expect("log");
        let whip = sfu
            .ns
            .command("node")
            .arg("src/server.js")
            .current_dir(sfu.dir.join("whip"))
            .env("DEBUG", "whip:*")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start simple-whip-server");
        sfu.whip = Some(whip);
        let whip_addr = sfu.whip_addr();
        wait_until("simple-whip-server to answer", Duration::from_secs(20), || {
            http(&whip_addr, "GET", "/whip/endpoints", "text/plain", "").is_ok_and(|(s, _)| s == 200)
        });
        sfu.start_tls_proxy();
        sfu
    }

    /// An HTTPS reverse proxy (Node's https module) in front of the WHIP
    /// server, as deployments put one, with a certificate for the SFU's
    /// address from a test CA (`ca.pem`; trust it with `SSL_CERT_FILE`).
    fn start_tls_proxy(&mut self) {
        let ip = self.sfu_ip().to_owned();
        let d = self.dir.join("tls");
        std::fs::create_dir_all(&d).expect("tls dir");
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
        let openssl = |args: &[&str]| {
            let out = Command::new("openssl").args(args).current_dir(&d).output();
            let out = out.unwrap_or_else(|e| panic!("openssl ({e}): install it with `apt-get install openssl`"));
            assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        };
        let mut ca = vec!["req", "-x509"];
        ca.extend(ec);
        ca.extend(["-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=peep test CA"]);
        ca.extend(["-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign"]);
        openssl(&ca);
        let mut csr = vec!["req"];
        csr.extend(ec);
        csr.extend(["-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=peep test SFU"]);
        openssl(&csr);
        std::fs::write(
            d.join("server.ext"),
            format!("subjectAltName=IP:{ip}\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n"),
        )
        .expect("ext");
        openssl(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-extfile",
            "server.ext",
        ]);
        let proxy = format!(
            "const https = require('https'), http = require('http'), fs = require('fs');\n\
             https.createServer({{ cert: fs.readFileSync('server.pem'), key: fs.readFileSync('server.key') }}, (req, res) => {{\n\
               if (req.url.startsWith('/redirect/')) {{\n\
                 console.log('307 ' + req.method);\n\
                 res.writeHead(307, {{ Location: req.url.slice('/redirect'.length) }});\n\
                 return res.end();\n\
               }}\n\
               const up = http.request({{ host: '{ip}', port: 7080, path: req.url, method: req.method, headers: req.headers }},\n\
                 (r) => {{ res.writeHead(r.statusCode, r.headers); r.pipe(res); }});\n\
               up.on('error', (e) => {{ res.writeHead(502); res.end(String(e)); }});\n\
               req.pipe(up);\n\
             }}).listen(7443, '{ip}', () => console.log('listening'));\n"
        );
        std::fs::write(d.join("proxy.js"), proxy).expect("proxy");
        let log = std::fs::File::create(d.join("proxy.log")).expect("log");
        let child = self
            .ns
            .command("node")
            .arg("proxy.js")
            .current_dir(&d)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start the TLS proxy");
        self.tls_proxy = Some(child);
        let addr = format!("{ip}:7443");
        wait_until("the TLS proxy to listen", Duration::from_secs(10), || TcpStream::connect(&addr).is_ok());
    }

    /// The test CA that signed the TLS proxy's certificate.
    pub fn tls_ca(&self) -> PathBuf {
        self.dir.join("tls/ca.pem")
    }

    /// `endpoint`'s URL through the HTTPS proxy.
    pub fn https_url(&self, endpoint: &Endpoint) -> String {
        format!("https://{}:7443/whip/endpoint/{}", self.sfu_ip(), endpoint.id)
    }

    /// A URL on the HTTPS proxy that answers `307 Temporary Redirect` to
    /// [`Sfu::https_url`] (a relative `Location`), as load balancers do.
    pub fn redirecting_https_url(&self, endpoint: &Endpoint) -> String {
        format!("https://{}:7443/redirect/whip/endpoint/{}", self.sfu_ip(), endpoint.id)
    }

    /// The HTTPS proxy's log (one `307 METHOD` line per redirect).
    pub fn tls_proxy_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("tls/proxy.log")).unwrap_or_default()
    }

    /// The test side's address on the link (bind the sharer here).
    pub fn host_ip(&self) -> &str {
        self.link.a.ip()
    }

    /// The SFU's address.
    pub fn sfu_ip(&self) -> &str {
        self.link.b.ip()
    }

    pub fn janus_addr(&self) -> String {
        format!("{}:8088", self.sfu_ip())
    }

    pub fn whip_addr(&self) -> String {
        format!("{}:7080", self.sfu_ip())
    }

    fn start_janus(&mut self) {
        self.janus_starts += 1;
        let log = std::fs::File::create(self.dir.join(format!("janus-{}.log", self.janus_starts))).expect("log");
        let conf = self.dir.join("conf");
        let child = self
            .ns
            .command("janus")
            .arg("-C")
            .arg(conf.join("janus.jcfg"))
            .arg("-F")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start janus");
        self.janus = Some(child);
        let addr = self.janus_addr();
        wait_until("Janus to answer", Duration::from_secs(20), || {
            http(&addr, "GET", "/janus/info", "text/plain", "").is_ok_and(|(s, _)| s == 200)
        });
    }

    /// Kills Janus (as a crash would) and starts it again with the same rooms.
    pub fn restart_janus(&mut self) {
        if let Some(mut j) = self.janus.take() {
            let _ = j.kill();
            let _ = j.wait();
        }
        self.start_janus();
    }

    /// A new WHIP endpoint on its own room, optionally needing `token`, and
    /// offering `ice_servers` (URIs) in Link headers.
    pub fn endpoint_with(&self, token: Option<&str>, ice_servers: &[&str]) -> Endpoint {
        let room = self.next_room.fetch_add(1, Ordering::Relaxed);
        assert!(ROOMS.contains(&room), "more endpoints than rooms configured");
        self.endpoint_in(room, token, ice_servers)
    }

    /// A WHIP endpoint on [`CAPPED_ROOM`] (once per fixture).
    pub fn capped_endpoint(&self) -> Endpoint {
        self.endpoint_in(CAPPED_ROOM, None, &[])
    }

    fn endpoint_in(&self, room: u32, token: Option<&str>, ice_servers: &[&str]) -> Endpoint {
        let id = format!("peep{room}");
        let mut body = json!({ "id": id, "room": room });
        if let Some(t) = token {
            body["token"] = json!(t);
        }
        if !ice_servers.is_empty() {
            body["iceServers"] = json!(ice_servers.iter().map(|u| json!({ "uri": u })).collect::<Vec<_>>());
        }
        let (status, text) =
            http(&self.whip_addr(), "POST", "/whip/create", "application/json", &body.to_string()).expect("create");
        assert_eq!(status, 200, "creating a WHIP endpoint: {text}");
        Endpoint { url: format!("http://{}/whip/endpoint/{id}", self.whip_addr()), id, room }
    }

    /// [`Sfu::endpoint_with`] without ICE servers.
    pub fn endpoint(&self, token: Option<&str>) -> Endpoint {
        self.endpoint_with(token, &[])
    }

    /// Whether the WHIP server considers `endpoint` published to.
    pub fn endpoint_enabled(&self, endpoint: &Endpoint) -> bool {
        let (_, body) = http(&self.whip_addr(), "GET", "/whip/endpoints", "text/plain", "").expect("endpoints");
        let list: Value = serde_json::from_str(&body).expect("endpoint JSON");
        list.as_array().into_iter().flatten().any(|e| e["id"] == json!(endpoint.id) && e["enabled"] == json!(true))
    }

    /// The WHIP server's log so far.
    pub fn whip_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("whip.log")).unwrap_or_default()
    }

    fn janus(&self, path: &str, body: Value) -> Value {
        let (status, text) =
            http(&self.janus_addr(), "POST", path, "application/json", &body.to_string()).expect("Janus HTTP API");
        assert_eq!(status, 200, "Janus {path}: {text}");
        serde_json::from_str(&text).expect("Janus JSON")
    }

    /// The publishers in `room`, from Janus' own API (`listparticipants`).
    pub fn publishers(&self, room: u32) -> Vec<Value> {
        let session = self.janus("/janus", json!({ "janus": "create", "transaction": "t1" }))["data"]["id"].clone();
        let path = format!("/janus/{session}");
        let handle = self
            .janus(&path, json!({ "janus": "attach", "plugin": "janus.plugin.videoroom", "transaction": "t2" }))["data"]
            ["id"]
            .clone();
        let reply = self.janus(
            &format!("{path}/{handle}"),
            json!({ "janus": "message", "transaction": "t3", "body": { "request": "listparticipants", "room": room } }),
        );
        self.janus(&path, json!({ "janus": "destroy", "transaction": "t4" }));
        reply["plugindata"]["data"]["participants"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| p["publisher"] == json!(true))
            .cloned()
            .collect()
    }

    /// The subscriber page for `room`, to open in a browser inside [`Sfu::ns`].
    pub fn subscriber_page(&self, room: u32) -> String {
        format!(
            "http://{}/janus-subscriber.html?janus=http://{}/janus&room={room}",
            self.whip_addr(),
            self.janus_addr()
        )
    }

    fn tear_down(&mut self) {
        for child in [self.tls_proxy.take(), self.whip.take(), self.janus.take()].into_iter().flatten() {
            let mut child = child;
            let _ = child.kill();
            let _ = child.wait();
        }
        // Netns and Link are never dropped (they live in a static): delete by hand.
        let _ = Command::new("ip").args(["link", "del", &self.link.a.dev]).status();
        let _ = Command::new("ip").args(["netns", "del", &self.ns.name]).status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn write_janus_config(dir: &Path, sfu_ip: &str) {
    let d = dir.display();
    for (sub, lib) in [
        ("plugins", "/usr/lib/x86_64-linux-gnu/janus/plugins/libjanus_videoroom.so"),
        ("transports", "/usr/lib/x86_64-linux-gnu/janus/transports/libjanus_http.so"),
        ("transports", "/usr/lib/x86_64-linux-gnu/janus/transports/libjanus_websockets.so"),
    ] {
        let name = Path::new(lib).file_name().expect("file name");
        std::os::unix::fs::symlink(lib, dir.join(sub).join(name)).expect("link Janus module");
    }
    let files = [
        (
            "janus.jcfg",
            format!(
                "general: {{\n  configs_folder = \"{d}/conf\"\n  plugins_folder = \"{d}/plugins\"\n  \
                 transports_folder = \"{d}/transports\"\n  events_folder = \"{d}/none\"\n  loggers_folder = \"{d}/none\"\n  \
                 debug_level = 4\n  interface = \"{sfu_ip}\"\n  session_timeout = 60\n}}\n\
                 media: {{\n  rtp_port_range = \"20000-20999\"\n}}\nnat: {{\n  nice_debug = false\n}}\n"
            ),
        ),
        (
            "janus.transport.http.jcfg",
            "general: {\n  json = \"plain\"\n  base_path = \"/janus\"\n  http = true\n  port = 8088\n  https = false\n}\n\
             admin: {\n  admin_http = false\n}\n"
                .to_owned(),
        ),
        (
            "janus.transport.websockets.jcfg",
            "general: {\n  json = \"plain\"\n  ws = true\n  ws_port = 8188\n  wss = false\n}\nadmin: {\n  admin_ws = false\n}\n"
                .to_owned(),
        ),
        ("janus.plugin.videoroom.jcfg", {
            // fir_freq = 0: Janus asks the publisher for keyframes only when
            // a subscriber needs one (not on a timer), so the tests see the
            // PLI a new subscriber causes.
            let mut rooms = String::from("general: {\n}\n");
            for (room, bitrate) in ROOMS.map(|r| (r, 0)).chain([(CAPPED_ROOM, CAPPED_BPS)]) {
                rooms.push_str(&format!(
                    "room-{room}: {{\n  description = \"peep {room}\"\n  publishers = 1\n  bitrate = {bitrate}\n  fir_freq = 0\n  \
                     videocodec = \"h264\"\n  audiocodec = \"opus\"\n}}\n"
                ));
            }
            rooms
        }),
    ];
    for (name, text) in files {
        std::fs::write(dir.join("conf").join(name), text).expect("Janus config");
    }
}
