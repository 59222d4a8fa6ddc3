//! Sharing over the internet, proven across NATs with real components: a
//! small internet in network namespaces (`common/internet.rs`), `peep relay`
//! and Debian's coturn on its public address, `peep share --relay` behind
//! one home router, headless Chromium behind another.
//!
//! The internet, coturn, the relay and the browser start once for the whole
//! binary (a custom harness, `libtest-mimic`), and the scenarios run one
//! after another against them, switching the routers between cone and
//! symmetric NAT as they need. Needs root, iproute2, iptables, procps,
//! coturn and chromium; a missing one fails the tests with what to install.
//!
//!     cargo test -p peep --test relay [-- SCENARIO]

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::browser::{Browser, Page};
use common::internet::{Internet, NatMode, PUBLIC_IP, Proc, coturn, require_root};
use common::netns::Netns;
use libtest_mimic::{Arguments, Failed, Trial};
use serde_json::Value;

const TURN_SECRET: &str = "peep-test-turn-secret";
const RELAY_PORT: u16 = 8443;
const LIVE: &str = "window.peep && peep.state() === 'live'";

/// What every scenario shares.
struct Fixture {
    internet: Internet,
    _coturn: Proc,
    relay: Proc,
    browser: Browser,
}

/// `peep relay` on the internet's public address, handing out coturn.
fn relay(inet: &Netns, port: u16, secret: &str, extra: &[&str]) -> Proc {
    let mut c = inet.command(env!("CARGO_BIN_EXE_peep"));
    c.args(["relay", "--bind", PUBLIC_IP, "--port", &port.to_string()])
        .args(["--stun-url", &format!("stun:{PUBLIC_IP}:3478")])
        .args(["--turn-url", &format!("turn:{PUBLIC_IP}:3478?transport=udp")])
        .args(["--turn-secret", secret, "--room-grace", "5"])
        .args(extra);
    let mut p = Proc::spawn(&format!("peep relay :{port}"), c);
    p.wait_for("Relay: ", Duration::from_secs(20));
    p
}

/// `peep relay` with its built-in TURN server instead of coturn.
fn builtin_turn_relay(inet: &Netns, port: u16) -> Proc {
    let mut c = inet.command(env!("CARGO_BIN_EXE_peep"));
    c.args(["relay", "--bind", PUBLIC_IP, "--port", &port.to_string(), "--room-grace", "5"])
        .args(["--turn-listen", &format!("{PUBLIC_IP}:3479"), "--turn-ports", "50000-50199"])
        // The test internet's "public" addresses are in 10.243.0.0/16.
        .arg("--turn-allow-private-peers");
    let mut p = Proc::spawn(&format!("peep relay (built-in TURN) :{port}"), c);
    p.wait_for("built-in TURN server on udp", Duration::from_secs(20));
    p.wait_for("Relay: ", Duration::from_secs(20));
    p
}

fn relay_url(port: u16) -> String {
    format!("http://{PUBLIC_IP}:{port}")
}

impl Fixture {
    fn start() -> Self {
        require_root();
        let internet = Internet::build();
        let coturn = coturn(&internet.inet, TURN_SECRET);
        let relay = relay(&internet.inet, RELAY_PORT, TURN_SECRET, &[]);
        let browser = Browser::launch_in(&internet.viewer.host.name, &[]);
        Self { internet, _coturn: coturn, relay, browser }
    }

    /// `peep share --relay` in the sharer's home; returns it and its link.
    fn sharer(&self, relay_port: u16, extra: &[&str]) -> (Proc, String) {
        let mut c = self.internet.sharer.host.command(env!("CARGO_BIN_EXE_peep"));
        c.args(["share", "--source", "synthetic:typing", "--size", "640x360", "--fps", "15", "--port", "0"])
            .args(["--relay", &relay_url(relay_port)])
            .args(extra);
        let mut p = Proc::spawn("peep share", c);
        let out = p.wait_for("Link: ", Duration::from_secs(30));
        let link = out.lines().find_map(|l| l.strip_prefix("Link: ")).expect("a link").trim().to_owned();
        assert!(link.starts_with(&format!("{}/r/", relay_url(relay_port))), "{link}");
        (p, link)
    }

    fn open(&mut self, url: &str) -> Page {
        self.browser.open(url)
    }

    fn wait_live(&mut self, page: &Page) {
        self.browser.wait_for(page, LIVE, Duration::from_secs(40));
        let decoded = self.stats(page)["framesDecoded"].as_u64().unwrap_or(0);
        self.browser.wait_for(page, &format!("peep.stats().framesDecoded > {decoded} + 10"), Duration::from_secs(20));
    }

    fn stats(&mut self, page: &Page) -> Value {
        self.browser.stats(page)
    }

    /// The page's media path once getStats knows it.
    fn page_path(&mut self, page: &Page) -> (String, String) {
        self.browser.wait_for(page, "peep.stats().path", Duration::from_secs(10));
        let s = self.stats(page);
        (
            s["path"].as_str().unwrap_or_default().to_owned(),
            s["localCandidateType"].as_str().unwrap_or_default().to_owned(),
        )
    }

    fn close(&mut self, page: &Page) {
        self.browser.close(page);
    }
}

/// Waits until the sharer's status line says `[PATH …]` for its viewer.
fn sharer_path(sharer: &Proc, path: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if sharer.last_status().contains(&format!("[{path} ")) {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("the sharer never reported a {path} path: {:?}", sharer.last_status());
}

// (a) Both homes behind cone-like NATs: the media goes peer to peer.
fn cone_nats_connect_peer_to_peer(fx: &mut Fixture) {
    fx.internet.set_nat(NatMode::Cone);
    let (sharer, link) = fx.sharer(RELAY_PORT, &[]);
    let page = fx.open(&link);
    fx.wait_live(&page);
    let (path, local) = fx.page_path(&page);
    assert_eq!(path, "direct", "hole punching through two cone NATs (local candidate {local})");
    assert_ne!(local, "relay");
    sharer_path(&sharer, "direct");
    fx.close(&page);
}

// (b) Both behind symmetric NATs: only TURN can work, and it does.
fn symmetric_nats_play_through_coturn(fx: &mut Fixture) {
    fx.internet.set_nat(NatMode::Symmetric);
    let (sharer, link) = fx.sharer(RELAY_PORT, &[]);
    let page = fx.open(&link);
    fx.wait_live(&page);
    let (path, _) = fx.page_path(&page);
    assert_eq!(path, "relay", "two symmetric NATs leave only TURN");
    sharer_path(&sharer, "relay");
    fx.close(&page);
    fx.internet.set_nat(NatMode::Cone);
}

// (c) A viewer that insists on TURN plays: the minted credentials work.
fn relay_only_viewer_plays_with_minted_credentials(fx: &mut Fixture) {
    fx.internet.set_nat(NatMode::Cone);
    let (sharer, link) = fx.sharer(RELAY_PORT, &[]);
    let page = fx.open(&format!("{link}?ice=relay"));
    fx.wait_live(&page);
    let (path, local) = fx.page_path(&page);
    assert_eq!((path.as_str(), local.as_str()), ("relay", "relay"), "iceTransportPolicy 'relay'");
    sharer_path(&sharer, "relay");
    fx.close(&page);
}

// (d) Credentials the TURN server refuses: the page says it cannot connect and why.
fn wrong_turn_credentials_are_explained(fx: &mut Fixture) {
    fx.internet.set_nat(NatMode::Cone);
    let port = RELAY_PORT + 1;
    let _misconfigured = relay(&fx.internet.inet, port, "not-the-coturn-secret", &[]);
    let (_sharer, link) = fx.sharer(port, &[]);
    let page = fx.open(&format!("{link}?ice=relay"));
    fx.browser.wait_for(
        &page,
        "document.getElementById('status-text').textContent.includes('refused its credentials')",
        Duration::from_secs(30),
    );
    let text = fx.browser.status_text(&page);
    assert!(text.starts_with("Cannot connect") && text.contains("401"), "{text}");
    assert_ne!(fx.browser.eval(&page, "peep.state()"), "live");
    fx.close(&page);
}

// (e) The built-in TURN server passes (b) and (c): no coturn involved.
fn builtin_turn_passes_symmetric_nats_and_relay_only(fx: &mut Fixture) {
    let port = RELAY_PORT + 2;
    let _relay = builtin_turn_relay(&fx.internet.inet, port);
    fx.internet.set_nat(NatMode::Symmetric);
    let (sharer, link) = fx.sharer(port, &[]);
    let page = fx.open(&link);
    fx.wait_live(&page);
    assert_eq!(fx.page_path(&page).0, "relay", "two symmetric NATs, through the built-in TURN server");
    sharer_path(&sharer, "relay");
    fx.close(&page);
    fx.internet.set_nat(NatMode::Cone);
    let page = fx.open(&format!("{link}?ice=relay"));
    fx.wait_live(&page);
    assert_eq!(fx.page_path(&page), ("relay".to_owned(), "relay".to_owned()));
    let turn_url = fx.browser.eval(&page, "document.querySelector('meta[name=\"peep-ice-servers\"]').content");
    assert!(turn_url.as_str().unwrap_or_default().contains(":3479?transport=udp"), "the built-in server: {turn_url}");
    fx.close(&page);
}

// (f) The relay restarts mid-share: viewers keep watching, the sharer
// reclaims its room, and a viewer that reloads plays again.
fn relay_restart_keeps_the_link_working(fx: &mut Fixture) {
    fx.internet.set_nat(NatMode::Cone);
    let (mut sharer, link) = fx.sharer(RELAY_PORT, &[]);
    let page = fx.open(&link);
    fx.wait_live(&page);
    fx.relay.signal("TERM");
    assert!(fx.relay.wait(Duration::from_secs(10)).is_some(), "the relay stops on SIGTERM");
    sharer.wait_for("relay: reconnecting", Duration::from_secs(15));
    // Media never went through the relay: the picture keeps moving.
    let decoded = fx.stats(&page)["framesDecoded"].as_u64().unwrap_or(0);
    fx.browser.wait_for(&page, &format!("peep.stats().framesDecoded > {decoded} + 15"), Duration::from_secs(10));
    fx.relay = relay(&fx.internet.inet, RELAY_PORT, TURN_SECRET, &[]);
    sharer.wait_for("room reclaimed 1×", Duration::from_secs(30));
    fx.browser.navigate(&page, &link);
    fx.wait_live(&page);
    fx.close(&page);
}

// (g) The sharer goes away: viewers are told, in words.
fn viewers_are_told_when_the_sharer_is_gone(fx: &mut Fixture) {
    fx.internet.set_nat(NatMode::Cone);
    let (crashing, crashed_link) = fx.sharer(RELAY_PORT, &[]);
    let (stopping, stopped_link) = fx.sharer(RELAY_PORT, &[]);
    let (a, b) = (fx.open(&crashed_link), fx.open(&stopped_link));
    fx.wait_live(&a);
    fx.wait_live(&b);
    // Ctrl-C: the share ends properly and says so at once.
    stopping.signal("INT");
    fx.browser.wait_for(&b, "peep.state() === 'ended'", Duration::from_secs(10));
    assert_eq!(fx.browser.status_text(&b), "The share has ended.");
    // A crash: the relay waits out the grace period (5 s here), then tells.
    crashing.signal("KILL");
    fx.browser.wait_for(
        &a,
        "document.getElementById('status-text').textContent.includes('the sharer is gone')",
        Duration::from_secs(40),
    );
    fx.close(&a);
    fx.close(&b);
}

// (h) Password, "ask to join" and kick through the relay, checked by the
// sharer with the viewer's real (public) address.
fn password_admission_and_kick_through_the_relay(fx: &mut Fixture) {
    fx.internet.set_nat(NatMode::Cone);
    let (mut sharer, link) = fx.sharer(RELAY_PORT, &["--password", "open sesame", "--admit"]);
    let submit = |pw: &str| {
        format!(
            "(() => {{ document.getElementById('password-input').value = {pw:?}; \
             document.getElementById('password').requestSubmit(); return true; }})()"
        )
    };
    let page = fx.open(&link);
    fx.browser.wait_for(&page, "peep.state() === 'password'", Duration::from_secs(20));
    fx.browser.eval(&page, &submit("wrong"));
    fx.browser.wait_for(&page, "peep.state() === 'wrongPassword'", Duration::from_secs(20));
    fx.browser.eval(&page, &submit("open sesame"));
    fx.browser.wait_for(&page, "peep.state() === 'admission'", Duration::from_secs(20));
    assert_eq!(fx.browser.status_text(&page), "Waiting for the sharer to let you in…");
    let viewer_ip = fx.internet.viewer.public_ip().to_owned();
    sharer.wait_for(&format!("viewer #1 from {viewer_ip} asks to join"), Duration::from_secs(10));
    sharer.type_line("a 1");
    fx.wait_live(&page);
    sharer.type_line("v");
    let listed = sharer.wait_for_line(Duration::from_secs(10), |l| l.contains(&viewer_ip) && l.contains("connected"));
    let id = listed.split_whitespace().next().expect("the viewer's id in the list").to_owned();
    sharer.type_line(&format!("k {id}"));
    fx.browser.wait_for(&page, "peep.state() === 'kicked'", Duration::from_secs(10));
    assert_eq!(fx.browser.status_text(&page), "You were removed from this share.");
    // Another viewer is turned away.
    let other = fx.open(&link);
    fx.browser.wait_for(&other, "peep.state() === 'password'", Duration::from_secs(20));
    fx.browser.eval(&other, &submit("open sesame"));
    sharer.wait_for("viewer #2 from", Duration::from_secs(20));
    sharer.type_line("r 2");
    fx.browser.wait_for(&other, "peep.state() === 'refused'", Duration::from_secs(10));
    assert_eq!(fx.browser.status_text(&other), "The sharer did not let you in.");
    fx.close(&page);
    fx.close(&other);
}

type Scenario = fn(&mut Fixture);

fn main() {
    let mut args = Arguments::from_args();
    // One internet, one browser: scenarios take turns.
    args.test_threads = Some(1);
    let fixture: Arc<Mutex<Option<Result<Fixture, String>>>> = Arc::new(Mutex::new(None));
    let scenarios: [(&str, Scenario); 8] = [
        ("a_cone_nats_connect_peer_to_peer", cone_nats_connect_peer_to_peer),
        ("b_symmetric_nats_play_through_coturn", symmetric_nats_play_through_coturn),
        ("c_relay_only_viewer_plays_with_minted_credentials", relay_only_viewer_plays_with_minted_credentials),
        ("d_wrong_turn_credentials_are_explained", wrong_turn_credentials_are_explained),
        ("e_builtin_turn_passes_symmetric_nats_and_relay_only", builtin_turn_passes_symmetric_nats_and_relay_only),
        ("f_relay_restart_keeps_the_link_working", relay_restart_keeps_the_link_working),
        ("g_viewers_are_told_when_the_sharer_is_gone", viewers_are_told_when_the_sharer_is_gone),
        ("h_password_admission_and_kick_through_the_relay", password_admission_and_kick_through_the_relay),
    ];
    let trials = scenarios
        .into_iter()
        .map(|(name, scenario)| {
            let fixture = fixture.clone();
            Trial::test(name, move || {
                let mut guard = fixture.lock().unwrap_or_else(|e| e.into_inner());
                if guard.is_none() {
                    let started = std::panic::catch_unwind(Fixture::start).map_err(|e| panic_text(&e));
                    *guard = Some(started);
                }
                match guard.as_mut() {
                    Some(Ok(fx)) => std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| scenario(fx)))
                        .map_err(|e| Failed::from(panic_text(&e))),
                    Some(Err(e)) => Err(Failed::from(format!("the test internet did not start: {e}"))),
                    None => Err(Failed::from("no fixture")),
                }
            })
        })
        .collect();
    let conclusion = libtest_mimic::run(&args, trials);
    // Tear the internet down (namespaces, coturn, relay, browser).
    drop(fixture.lock().unwrap_or_else(|e| e.into_inner()).take());
    conclusion.exit();
}

fn panic_text(e: &Box<dyn std::any::Any + Send>) -> String {
    e.downcast_ref::<String>()
        .cloned()
        .or_else(|| e.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_default()
}
