//! Through a relay, secrets (the room id that is the link's secret, the
//! owner secret, the password, TURN credentials) never reach logs or
//! `Debug` output, even with every crate logging at `trace` while the
//! relay, its built-in TURN server and a share behind it serve a viewer.
//! (Every crate but tungstenite, whose frame dumps the relay's users must
//! filter out: [`peep_transport::relay::LOG_REDACTIONS`].) Its own test
//! binary: it installs the global log subscriber.

mod common;

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::time::Duration;

use common::Captured;
use peep_transport::relay::turn::IceSettings;
use peep_transport::{BuiltinTurnConfig, Relay, RelayClientConfig, RelayConfig, Secret, Share, ShareConfig};

const PASSWORD: &str = "correct-horse-relay-staple";
const TURN_SECRET: &str = "turn-secret-never-logged";

/// Status and headers of a request.
fn request(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> (u16, String) {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(20))).expect("timeout");
    let mut head =
        format!("{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).expect("write head");
    s.write_all(body).expect("write body");
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (status, text.split("\r\n\r\n").next().unwrap_or_default().to_owned())
}

/// A real Chromium offer (the offer fuzz target's seed).
fn chromium_offer() -> Vec<u8> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../fuzz/seeds/offer");
    let entry = std::fs::read_dir(dir).expect("fuzz/seeds/offer").flatten().next().expect("a seed offer");
    std::fs::read(entry.path()).expect("read seed")
}

#[test]
fn relay_secrets_stay_out_of_trace_logs_and_debug_output() {
    let captured = Captured::default();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(format!("trace,{}", peep_transport::relay::LOG_REDACTIONS)))
        .with_writer(captured.clone())
        .with_ansi(false)
        .init();

    let relay_config = RelayConfig {
        bind: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0),
        ice: IceSettings { secret: Some(TURN_SECRET.into()), ttl: Duration::from_secs(600), ..IceSettings::default() },
        builtin_turn: Some(BuiltinTurnConfig {
            listen: "127.0.0.1:0".parse().expect("addr"),
            public_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            ports: (42000, 42099),
            allow_private_peers: false,
        }),
        ..RelayConfig::default()
    };
    let relay_debug = format!("{relay_config:?}");
    let relay = Relay::start(relay_config).expect("relay");
    let share_config = ShareConfig {
        bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
        port: 0,
        password: Some(Secret::from(PASSWORD)),
        relay: Some(RelayClientConfig { url: relay.public_url().to_owned(), ca_file: None }),
        ..ShareConfig::default()
    };
    let share_debug = format!("{share_config:?}");
    let share = Share::start(share_config).expect("share through the relay");
    let link = share.link().to_owned();
    let room = link.rsplit('/').next().expect("room").to_owned();
    assert_eq!(room.len(), 32, "a 128-bit room id in hex: {room}");
    let lan_token = share.lan_link().rsplit('/').next().expect("token").to_owned();
    let path = &link[link.find("/r/").expect("path")..];
    let addr = relay.local_addr();

    let (status, head) = request(addr, "OPTIONS", &format!("{path}/whep"), &[], b"");
    assert_eq!(status, 204);
    let credential = head
        .lines()
        .filter_map(|l| l.split("credential=\"").nth(1))
        .map(|rest| rest.split('"').next().unwrap_or_default().to_owned())
        .next()
        .expect("a minted TURN credential in the Link header");
    let offer = chromium_offer();
    let sdp = ("Content-Type", "application/sdp");
    let (wrong, right) = (format!("Bearer not-{PASSWORD}"), format!("Bearer {PASSWORD}"));
    assert_eq!(request(addr, "POST", &format!("{path}/whep"), &[sdp, ("Authorization", &wrong)], &offer).0, 401);
    let (status, head) = request(addr, "POST", &format!("{path}/whep"), &[sdp, ("Authorization", &right)], &offer);
    assert_eq!(status, 201, "{head}");
    let location = head
        .lines()
        .find_map(|l| l.strip_prefix("location: ").or_else(|| l.strip_prefix("Location: ")))
        .expect("Location")
        .to_owned();
    assert_eq!(request(addr, "DELETE", &location, &[], b"").0, 200);

    let debug = [
        relay_debug,
        share_debug,
        format!("{relay:?}"),
        format!("{share:?}"),
        format!("{:?}", share.relay_status()),
        format!("{:?}", relay.counters()),
    ];
    drop(share);
    drop(relay);
    let logs = String::from_utf8_lossy(&captured.0.lock().unwrap_or_else(|e| e.into_inner())).into_owned();
    // Not vacuous: the relay, the forwarded request and the peer connection were logged.
    let lines = logs.lines().count();
    assert!(
        lines >= 10 && logs.contains(" TRACE ") && logs.contains("have-remote-offer"),
        "expected a trace-level log of the requests, got {lines} lines"
    );
    for (what, text) in std::iter::once(("logs", &logs)).chain(debug.iter().map(|d| ("Debug output", d))) {
        for (name, secret) in [
            ("password", PASSWORD),
            ("room id", room.as_str()),
            ("LAN link token", lan_token.as_str()),
            ("TURN secret", TURN_SECRET),
            ("TURN credential", credential.as_str()),
        ] {
            if let Some(at) = text.find(secret) {
                let around = &text[at.saturating_sub(200)..(at + secret.len() + 100).min(text.len())];
                panic!("the {name} appears in the {what}: …{around}…");
            }
        }
        // Owner secrets are 64 hex digits; nothing we log is.
        let hex64 =
            text.as_bytes().windows(64).any(|w| w.iter().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        assert!(!hex64, "a 64-hex-digit string (an owner secret?) appears in the {what}");
    }
}
