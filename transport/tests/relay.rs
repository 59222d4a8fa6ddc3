//! The relay over real TCP on loopback: a share connected through it, raw
//! WHEP clients, raw (hostile) sharer WebSockets, and the relay restarting.
//! Media is not exercised here (see the app's `relay` scenario tests).

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{Reply, offer, request};
use peep_transport::relay::rooms::{Limits, Rate};
use peep_transport::relay::turn::IceSettings;
use peep_transport::{Relay, RelayClientConfig, RelayConfig, RelayStatus, Secret, Share, ShareConfig};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite;

const TURN_SECRET: &str = "relay-test-secret";

/// A relay on loopback. No ICE servers: the share would wait for them to
/// answer (see [`ice_settings`] for the test that checks them).
fn relay_config() -> RelayConfig {
    RelayConfig { bind: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0), ..RelayConfig::default() }
}

/// STUN and TURN servers to hand out (nothing answers there: the share's
/// answer waits for its gathering timeout).
fn ice_settings(ttl: Duration) -> IceSettings {
    IceSettings {
        stun_urls: vec!["stun:127.0.0.1:3478".into()],
        turn_urls: vec!["turn:127.0.0.1:3478?transport=udp".into()],
        secret: Some(TURN_SECRET.into()),
        ttl,
    }
}

fn relay() -> Relay {
    Relay::start(relay_config()).expect("relay")
}

fn share_via(relay: &Relay, configure: impl FnOnce(&mut ShareConfig)) -> Share {
    let mut config = ShareConfig {
        bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
        port: 0,
        relay: Some(RelayClientConfig { url: relay.public_url().to_owned(), ca_file: None }),
        ..ShareConfig::default()
    };
    configure(&mut config);
    Share::start(config).expect("share through the relay")
}

/// `/r/<room>` of a share's relay link.
fn room_path(share: &Share) -> String {
    let link = share.link();
    link[link.find("/r/").expect("a relay link")..].to_owned()
}

fn post(relay: &Relay, path: &str, extra: &[(&str, &str)]) -> Reply {
    let mut headers = vec![("Content-Type", "application/sdp")];
    headers.extend_from_slice(extra);
    request(relay.local_addr(), "POST", &format!("{path}/whep"), &headers, offer().as_bytes())
}

fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Reads a server-sent event stream in the background, line by line.
fn sse(addr: SocketAddr, path: &str) -> mpsc::Receiver<String> {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: test\r\nAccept: text/event-stream\r\n\r\n").as_bytes())
        .expect("write");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(s).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Waits for an `event: NAME` line and returns the `data:` line after it.
fn next_event(events: &mpsc::Receiver<String>, timeout: Duration) -> Option<(String, String)> {
    let deadline = Instant::now() + timeout;
    let mut name = None;
    while let Ok(line) = events.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
        if let Some(n) = line.strip_prefix("event: ") {
            name = Some(n.to_owned());
        } else if let (Some(n), Some(d)) = (&name, line.strip_prefix("data: ")) {
            return Some((n.clone(), d.to_owned()));
        }
    }
    None
}

/// A hand-driven sharer connection, for protocol abuse.
struct RawSharer {
    ws: tungstenite::WebSocket<tungstenite::stream::MaybeTlsStream<TcpStream>>,
    room: Option<String>,
}

impl RawSharer {
    fn connect(relay: &Relay) -> Self {
        Self::connect_with(relay, &[("Sec-WebSocket-Protocol", "peep-relay.v1")]).expect("websocket")
    }

    fn connect_with(relay: &Relay, headers: &[(&str, &str)]) -> Result<Self, tungstenite::Error> {
        use tungstenite::client::IntoClientRequest as _;
        let mut request = format!("ws://{}/relay/v1", relay.local_addr()).into_client_request()?;
        for (k, v) in headers {
            let name = tungstenite::http::HeaderName::from_bytes(k.as_bytes()).expect("header name");
            request.headers_mut().insert(name, v.parse().expect("header value"));
        }
        let (ws, _) = tungstenite::connect(request)?;
        if let tungstenite::stream::MaybeTlsStream::Plain(s) = ws.get_ref() {
            s.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
        }
        Ok(Self { ws, room: None })
    }

    fn send(&mut self, message: &str) {
        self.ws.send(tungstenite::Message::text(message)).expect("send");
    }

    /// The next JSON message, or `None` when the relay closed the connection.
    fn recv(&mut self) -> Option<Value> {
        loop {
            match self.ws.read() {
                Ok(tungstenite::Message::Text(t)) => return Some(serde_json::from_str(t.as_str()).expect("JSON")),
                Ok(tungstenite::Message::Close(_)) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    }

    fn hello(&mut self) -> Value {
        self.send(r#"{"type":"hello","version":1}"#);
        let welcome = self.recv().expect("welcome");
        assert_eq!(welcome["type"], "welcome", "{welcome}");
        self.room = welcome["room"].as_str().map(str::to_owned);
        welcome
    }
}

#[test]
fn a_whep_player_watches_through_the_relay() {
    let relay =
        Relay::start(RelayConfig { ice: ice_settings(Duration::from_secs(600)), ..relay_config() }).expect("relay");
    let share = share_via(&relay, |_| {});
    let path = room_path(&share);
    assert!(share.link().starts_with(relay.public_url()), "{} vs {}", share.link(), relay.public_url());
    assert_eq!(share.whep_url(), format!("{}/whep", share.link()));
    assert!(matches!(share.relay_status(), Some(RelayStatus::Connected { reconnects: 0, .. })));
    // The viewer page, with ICE servers in its meta tag.
    let page = request(relay.local_addr(), "GET", &path, &[], b"");
    assert_eq!(page.status, 200);
    assert!(page.body.contains("<video") && page.body.contains("peep-ice-servers"), "{}", page.body);
    assert!(page.body.contains("turn:127.0.0.1:3478?transport=udp") && page.body.contains("credential"));
    assert!(page.headers.contains("referrer-policy: no-referrer"));
    // OPTIONS answers with the ICE servers too, before any offer.
    let options = request(relay.local_addr(), "OPTIONS", &format!("{path}/whep"), &[], b"");
    assert_eq!(options.status, 204);
    assert_eq!(options.header("x-peep-admission").as_deref(), Some("none"));
    assert!(options.headers.contains("link: <turn:127.0.0.1:3478?transport=udp>; rel=\"ice-server\"; username=\""));
    assert!(options.headers.contains("link: <stun:127.0.0.1:3478>; rel=\"ice-server\""));
    // WHEP exactly: 201, Location, SDP answer, Link headers.
    let r = post(&relay, &path, &[]);
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.header("content-type").as_deref(), Some("application/sdp"));
    assert!(r.body.starts_with("v=0") && r.body.contains("a=setup:passive"), "{}", r.body);
    let location = r.header("location").expect("Location");
    assert!(location.starts_with(&format!("{path}/whep/")), "{location}");
    let room = path.trim_start_matches("/r/");
    let links: Vec<&str> = r.headers.lines().filter_map(|l| l.strip_prefix("link: ")).collect();
    assert_eq!(links.len(), 2, "{links:?}");
    assert!(links[1].contains("credential=") && !links[1].contains(room), "the room id stays out of TURN user names");
    assert_eq!(share.viewers().len(), 1);
    let viewer = &share.viewers()[0];
    assert_eq!(viewer.remote.ip(), IpAddr::V4(Ipv4Addr::LOCALHOST), "the viewer's address as the relay saw it");
    // DELETE ends the session at the sharer.
    let d = request(relay.local_addr(), "DELETE", &location, &[], b"");
    assert_eq!(d.status, 200, "{}", d.body);
    assert!(share.viewers().is_empty());
    let again = request(relay.local_addr(), "DELETE", &location, &[], b"");
    assert_eq!((again.status, again.body.as_str()), (404, "no such session"));
    let stats: Value =
        serde_json::from_str(&request(relay.local_addr(), "GET", "/relay/stats", &[], b"").body).expect("stats");
    assert_eq!(stats["rooms"], 1);
    assert_eq!(stats["requests_answered"], 3, "{stats}");
    assert!(!stats.to_string().contains(room), "stats name no rooms");
}

#[test]
fn password_throttle_and_limit_use_the_viewers_real_address() {
    let relay = Relay::start(RelayConfig { trust_forwarded_for: true, ..relay_config() }).expect("relay");
    let share = share_via(&relay, |c| {
        c.password = Some(Secret::from("hunter2"));
        c.max_viewers = 1;
    });
    let path = room_path(&share);
    let from = |ip: &'static str| ("X-Forwarded-For", ip);
    let r = post(&relay, &path, &[from("192.0.2.7")]);
    assert_eq!((r.status, r.body.as_str()), (401, "password required"));
    assert!(r.headers.contains("www-authenticate: bearer"), "{}", r.headers);
    for _ in 0..3 {
        let r = post(&relay, &path, &[from("192.0.2.7"), ("Authorization", "Bearer wrong")]);
        assert_eq!((r.status, r.body.as_str()), (401, "wrong password"));
    }
    let locked = post(&relay, &path, &[from("192.0.2.7"), ("Authorization", "Bearer hunter2")]);
    assert_eq!(locked.status, 429, "{}", locked.body);
    assert_eq!(locked.header("retry-after").as_deref(), Some("1"));
    // Another viewer behind the same relay is not locked out: the sharer
    // throttles by the viewer's address, not the relay's.
    let other = post(&relay, &path, &[from("192.0.2.8"), ("Authorization", "Bearer hunter2")]);
    assert_eq!(other.status, 201, "{}", other.body);
    assert_eq!(share.viewers()[0].remote.ip().to_string(), "192.0.2.8");
    let full = post(&relay, &path, &[from("192.0.2.9"), ("Authorization", "Bearer hunter2")]);
    assert_eq!((full.status, full.body.as_str()), (503, "the share is full: too many viewers"));
    // The password never reaches the relay's counters or its Debug output.
    assert!(!format!("{relay:?} {share:?}").contains("hunter2"));
}

#[test]
fn bad_input_gets_clear_errors_and_other_rooms_keep_working() {
    let relay = relay();
    let share = share_via(&relay, |_| {});
    let path = room_path(&share);
    let addr = relay.local_addr();
    let sdp = [("Content-Type", "application/sdp")];
    let unknown = "/r/0123456789abcdef0123456789abcdef";
    type Case<'a> = (&'a str, String, Vec<(&'a str, &'a str)>, Vec<u8>, u16, &'a str);
    let cases: Vec<Case<'_>> = vec![
        ("GET", unknown.into(), vec![], vec![], 404, "invalid"),
        ("GET", "/r/not-a-room".into(), vec![], vec![], 404, "invalid"),
        ("POST", format!("{unknown}/whep"), sdp.to_vec(), offer().into_bytes(), 404, "invalid"),
        ("POST", "/r/XYZ/whep".into(), sdp.to_vec(), offer().into_bytes(), 404, "invalid"),
        ("POST", format!("{path}/whep"), sdp.to_vec(), vec![b'a'; 200 * 1024], 413, ""),
        ("POST", format!("{path}/whep"), sdp.to_vec(), vec![0xff, 0xfe], 400, "not UTF-8"),
        ("POST", format!("{path}/whep"), sdp.to_vec(), b"not sdp".to_vec(), 400, "bad SDP offer"),
        (
            "POST",
            format!("{path}/whep"),
            vec![("Content-Type", "text/plain")],
            offer().into_bytes(),
            415,
            "application/sdp",
        ),
        ("DELETE", format!("{path}/whep/nosuchsession"), vec![], vec![], 404, "no such session"),
        ("DELETE", format!("{path}/whep/..%2F.."), vec![], vec![], 404, "no such session"),
        ("PATCH", format!("{path}/whep/x"), vec![], vec![], 405, "trickle"),
        ("GET", format!("{path}/events/nosuchsession"), vec![], vec![], 404, "no such session"),
        ("GET", "/assets/../../etc/passwd".into(), vec![], vec![], 404, ""),
        ("GET", "/relay/v1".into(), vec![], vec![], 400, ""),
    ];
    for (method, path, headers, body, status, words) in cases {
        let r = request(addr, method, &path, &headers, &body);
        assert_eq!(r.status, status, "{method} {path}: {}", r.body);
        assert!(r.body.contains(words), "{method} {path}: {:?} lacks {words:?}", r.body);
    }
    // Hostile sharer connections.
    let refused = RawSharer::connect_with(
        &relay,
        &[("Sec-WebSocket-Protocol", "peep-relay.v1"), ("Origin", "https://evil.test")],
    );
    assert!(matches!(refused, Err(tungstenite::Error::Http(ref r)) if r.status() == 403), "{:?}", refused.err());
    let refused = RawSharer::connect_with(&relay, &[]);
    assert!(matches!(refused, Err(tungstenite::Error::Http(ref r)) if r.status() == 400), "{:?}", refused.err());
    let mut ws = RawSharer::connect(&relay);
    for (message, words) in
        [("{", "EOF"), (r#"{"type":"launch"}"#, "unknown variant"), (r#"{"type":"ping"}"#, "say hello first")]
    {
        ws.send(message);
        let error = ws.recv().expect("an error message");
        assert_eq!(error["type"], "error");
        assert!(error["message"].as_str().unwrap_or_default().contains(words), "{error}");
    }
    assert!(ws.recv().is_none(), "closed after a message before hello");
    let mut ws = RawSharer::connect(&relay);
    ws.send(r#"{"type":"hello","version":2}"#);
    assert_eq!(ws.recv().expect("error")["code"], "version");
    // The owner secret must own the room.
    let room = path.trim_start_matches("/r/");
    let mut ws = RawSharer::connect(&relay);
    ws.send(&json!({"type": "hello", "version": 1, "room": room, "owner": "ab".repeat(32)}).to_string());
    let error = ws.recv().expect("error");
    assert_eq!(
        (error["code"].as_str(), error["message"].as_str()),
        (Some("wrong_owner"), Some("wrong owner secret for this room"))
    );
    // Oversized message: the connection is closed.
    let mut ws = RawSharer::connect(&relay);
    let _ = ws.ws.send(tungstenite::Message::text("x".repeat(300 * 1024)));
    assert!(ws.recv().is_none(), "oversized message closes the connection");
    // Binary and repeated garbage: errors, then a close.
    let mut ws = RawSharer::connect(&relay);
    ws.hello();
    ws.ws.send(tungstenite::Message::binary(vec![1, 2, 3])).expect("send");
    assert!(ws.recv().expect("error")["message"].as_str().unwrap_or_default().contains("binary"));
    for _ in 0..8 {
        ws.send("[]");
    }
    let mut closed = false;
    for _ in 0..10 {
        if ws.recv().is_none() {
            closed = true;
            break;
        }
    }
    assert!(closed, "too many bad messages close the connection");
    // The real share's room kept working throughout.
    let r = post(&relay, &path, &[]);
    assert_eq!(r.status, 201, "{}", r.body);
    assert!(relay.counters().bad_messages >= 11, "{:?}", relay.counters());
    assert_eq!(relay.counters().refused_wrong_owner, 1);
}

#[test]
fn floods_of_rooms_joins_and_guesses_are_throttled_and_counted() {
    let limits = Limits {
        creates: Rate { per_minute: 6, burst: 3 },
        joins: Rate { per_minute: 60, burst: 5 },
        misses: Rate { per_minute: 60, burst: 4 },
        rooms_per_ip: 100,
        ..Limits::default()
    };
    let relay = Relay::start(RelayConfig { limits, ..relay_config() }).expect("relay");
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut ws = RawSharer::connect(&relay);
        ws.hello();
        held.push(ws);
    }
    let mut ws = RawSharer::connect(&relay);
    ws.send(r#"{"type":"hello","version":1}"#);
    let error = ws.recv().expect("refused");
    assert_eq!(error["code"], "rate_limited", "{error}");
    assert!(error["message"].as_str().unwrap_or_default().contains("try again in"), "{error}");
    // Joins: the room's sharer answers everything it gets with a 400; the
    // flood is cut off before it reaches it.
    let mut sharer = held.remove(0);
    let room = sharer.hello_room();
    let answered = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    {
        let answered = answered.clone();
        std::thread::spawn(move || {
            while let Some(m) = sharer.recv() {
                if m["type"] == "request" {
                    sharer
                        .send(&json!({"type":"response","id":m["id"],"status":400,"body":"bad SDP offer"}).to_string());
                    answered.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
        });
    }
    let mut statuses = Vec::new();
    for _ in 0..8 {
        let r = request(
            relay.local_addr(),
            "POST",
            &format!("/r/{room}/whep"),
            &[("Content-Type", "application/sdp")],
            b"v=0",
        );
        if r.status == 429 {
            assert!(r.header("retry-after").is_some());
        }
        statuses.push(r.status);
    }
    assert_eq!(statuses, vec![400, 400, 400, 400, 400, 429, 429, 429]);
    assert_eq!(answered.load(std::sync::atomic::Ordering::Relaxed), 5, "the throttled ones never reached the sharer");
    // Guessing room ids.
    let mut guesses = Vec::new();
    for i in 0..6 {
        let r = request(relay.local_addr(), "DELETE", &format!("/r/{i:032x}/whep/x"), &[], b"");
        guesses.push(r.status);
    }
    assert_eq!(guesses, vec![404, 404, 404, 404, 429, 429]);
    let stats: Value =
        serde_json::from_str(&request(relay.local_addr(), "GET", "/relay/stats", &[], b"").body).expect("stats");
    assert_eq!(stats["refused_rate_limited"], 1 + 3 + 2, "{stats}");
    assert_eq!(stats["rooms"], 3, "{stats}");
}

impl RawSharer {
    fn hello_room(&self) -> String {
        self.room.clone().expect("said hello")
    }
}

#[test]
fn a_stalled_sharer_costs_only_its_own_room() {
    let limits = Limits {
        request_timeout: Duration::from_millis(800),
        heartbeat_timeout: Duration::from_secs(2),
        ..Limits::default()
    };
    let relay = Relay::start(RelayConfig { limits, ..relay_config() }).expect("relay");
    let healthy = share_via(&relay, |_| {});
    // A sharer that says hello, then neither answers nor sends heartbeats.
    let mut stalled = RawSharer::connect(&relay);
    stalled.hello();
    let room = stalled.hello_room();
    let started = Instant::now();
    let r = post(&relay, &format!("/r/{room}"), &[]);
    assert_eq!((r.status, r.body.as_str()), (504, "the sharer did not answer in time"));
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    // The healthy room answers meanwhile.
    assert_eq!(post(&relay, &room_path(&healthy), &[]).status, 201);
    // No heartbeat: the relay closes the connection; the room waits for its sharer.
    wait_until("the silent sharer is disconnected", Duration::from_secs(10), || {
        relay.counters().connections_silent == 1
    });
    let mut closed = false;
    while let Some(m) = stalled.recv() {
        if m["type"] == "error" {
            assert_eq!(m["code"], "timeout", "{m}");
            closed = true;
        }
    }
    assert!(closed, "told why before the close");
    let r = post(&relay, &format!("/r/{room}"), &[]);
    assert_eq!(r.status, 503, "{}", r.body);
    assert!(r.body.contains("waiting for it to come back"), "{}", r.body);
    assert_eq!(post(&relay, &room_path(&healthy), &[]).status, 201, "still fine");
    assert_eq!(relay.counters().requests_timed_out, 1);
}

#[test]
fn the_sharer_reclaims_its_room_after_a_relay_restart() {
    let first = relay();
    let addr = first.local_addr();
    let share = share_via(&first, |_| {});
    let link = share.link().to_owned();
    let viewer = post(&first, &room_path(&share), &[]);
    assert_eq!(viewer.status, 201);
    first.shutdown();
    wait_until("the share notices", Duration::from_secs(10), || {
        matches!(share.relay_status(), Some(RelayStatus::Reconnecting { .. }))
    });
    assert_eq!(share.viewers().len(), 1, "viewers already connected keep their connection");
    // The same relay comes back (same address, no memory of the room).
    let second = Relay::start(RelayConfig { bind: addr, ..relay_config() }).expect("relay again");
    wait_until("the room is reclaimed", Duration::from_secs(20), || {
        matches!(share.relay_status(), Some(RelayStatus::Connected { reconnects: 1, .. }))
    });
    let Some(RelayStatus::Connected { link: again, .. }) = share.relay_status() else { panic!("connected") };
    assert_eq!(again.expose(), link, "the viewers' link keeps working");
    assert_eq!(second.counters().rooms_reclaimed, 1);
    assert_eq!(post(&second, &room_path(&share), &[]).status, 201, "a viewer that reloads joins again");
}

#[test]
fn a_room_without_its_sharer_expires_and_its_viewers_are_told() {
    let limits = Limits { room_grace: Duration::from_millis(600), ..Limits::default() };
    let relay = Relay::start(RelayConfig { limits, ..relay_config() }).expect("relay");
    let mut sharer = RawSharer::connect(&relay);
    sharer.hello();
    let room = sharer.hello_room();
    // A viewer joins: the raw sharer answers by hand.
    let relay_addr = relay.local_addr();
    let room_for_viewer = room.clone();
    let viewer = std::thread::spawn(move || {
        request(
            relay_addr,
            "POST",
            &format!("/r/{room_for_viewer}/whep"),
            &[("Content-Type", "application/sdp")],
            b"v=0",
        )
    });
    let forwarded = sharer.recv().expect("the offer, forwarded");
    assert_eq!(forwarded["type"], "request");
    assert_eq!(forwarded["method"], "POST");
    assert_eq!(forwarded["client_ip"], "127.0.0.1");
    assert_eq!(forwarded["body"], "v=0");
    sharer.send(
        &json!({"type":"response","id":forwarded["id"],"status":201,"session":"s1","body":"v=0 answer"}).to_string(),
    );
    let r = viewer.join().expect("viewer");
    assert_eq!((r.status, r.body.as_str()), (201, "v=0 answer"));
    assert_eq!(r.header("location"), Some(format!("/r/{room}/whep/s1")));
    let events = sse(relay.local_addr(), &format!("/r/{room}/events/s1"));
    std::thread::sleep(Duration::from_millis(200));
    // The sharer vanishes without a goodbye.
    drop(sharer);
    let (name, words) = next_event(&events, Duration::from_secs(10)).expect("an event");
    assert_eq!(name, "ended");
    assert!(words.contains("the sharer is gone"), "{words}");
    let late = post(&relay, &format!("/r/{room}"), &[]);
    assert_eq!(late.status, 404);
    assert!(late.body.contains("the sharer is gone"), "{}", late.body);
    assert_eq!(relay.counters().rooms_expired, 1);
}

#[test]
fn kicks_and_the_end_reach_pages_through_the_relay() {
    let relay = relay();
    let share = share_via(&relay, |_| {});
    let path = room_path(&share);
    let session =
        |r: &Reply| r.header("location").and_then(|l| l.rsplit('/').next().map(str::to_owned)).expect("session");
    let (a, b) = (post(&relay, &path, &[]), post(&relay, &path, &[]));
    let (a, b) = (session(&a), session(&b));
    let a_events = sse(relay.local_addr(), &format!("{path}/events/{a}"));
    let b_events = sse(relay.local_addr(), &format!("{path}/events/{b}"));
    std::thread::sleep(Duration::from_millis(200));
    assert!(share.kick(&a));
    assert_eq!(next_event(&a_events, Duration::from_secs(5)).map(|e| e.0).as_deref(), Some("kicked"));
    share.shutdown();
    let (name, words) = next_event(&b_events, Duration::from_secs(5)).expect("ended");
    assert_eq!((name.as_str(), words.as_str()), ("ended", "the share has ended"));
    let gone = request(relay.local_addr(), "GET", &path, &[], b"");
    assert_eq!(gone.status, 404, "the room is forgotten at once");
    assert_eq!(relay.counters().rooms_ended, 1);
}

#[test]
fn viewers_wait_to_be_admitted_through_the_relay() {
    let limits = Limits { request_timeout: Duration::from_millis(500), ..Limits::default() };
    let relay = Relay::start(RelayConfig { limits, ..relay_config() }).expect("relay");
    let share = share_via(&relay, |c| c.admit = true);
    let path = room_path(&share);
    let options = request(relay.local_addr(), "OPTIONS", &format!("{path}/whep"), &[], b"");
    assert_eq!(options.header("x-peep-admission").as_deref(), Some("ask"));
    let addr = relay.local_addr();
    let knock = |path: String| {
        std::thread::spawn(move || {
            request(addr, "POST", &format!("{path}/whep"), &[("Content-Type", "application/sdp")], offer().as_bytes())
        })
    };
    let waiting = knock(path.clone());
    wait_until("a knock", Duration::from_secs(5), || share.knocks().len() == 1);
    // Longer than the relay's request timeout: holding extends it.
    std::thread::sleep(Duration::from_millis(1200));
    let k = share.knocks().remove(0);
    assert_eq!(k.remote, IpAddr::V4(Ipv4Addr::LOCALHOST));
    assert!(share.admit(k.id, true));
    assert_eq!(waiting.join().expect("viewer").status, 201);
    let refused = knock(path.clone());
    wait_until("a second knock", Duration::from_secs(5), || share.knocks().len() == 1);
    assert!(share.admit(share.knocks()[0].id, false));
    let r = refused.join().expect("viewer");
    assert_eq!((r.status, r.body.as_str()), (403, "the sharer did not let you in"));
    // Turning admission off lets the waiting in.
    let third = knock(path);
    wait_until("a third knock", Duration::from_secs(5), || share.knocks().len() == 1);
    share.set_admit(false);
    assert_eq!(third.join().expect("viewer").status, 201);
    wait_until("the relay hears of it", Duration::from_secs(5), || {
        request(relay.local_addr(), "OPTIONS", &format!("{}/whep", room_path(&share)), &[], b"")
            .header("x-peep-admission")
            .as_deref()
            == Some("none")
    });
}

#[test]
fn ice_credentials_are_refreshed_before_they_expire() {
    let relay =
        Relay::start(RelayConfig { ice: ice_settings(Duration::from_secs(2)), ..relay_config() }).expect("relay");
    let share = share_via(&relay, |_| {});
    let first = share.ice_expires_unix();
    assert!(first > 0);
    wait_until("fresh credentials", Duration::from_secs(6), || share.ice_expires_unix() > first);
}

fn self_signed(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let key = rcgen::generate_simple_self_signed(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).expect("cert");
    let (cert, key_file) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, key.cert.pem()).expect("write cert");
    std::fs::write(&key_file, key.signing_key.serialize_pem()).expect("write key");
    (cert, key_file)
}

#[test]
fn https_relay_with_a_private_certificate() {
    let dir = std::env::temp_dir().join(format!("peep-relay-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let (cert, key) = self_signed(&dir);
    let relay =
        Relay::start(RelayConfig { tls: Some((cert.clone(), key.clone())), public_url: None, ..relay_config() })
            .expect("relay with TLS");
    assert!(relay.public_url().starts_with("https://127.0.0.1:"), "{}", relay.public_url());
    // Without trusting the certificate, the share says why it cannot connect.
    let err = Share::start(ShareConfig {
        bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
        port: 0,
        relay: Some(RelayClientConfig { url: relay.public_url().to_owned(), ca_file: None }),
        ..ShareConfig::default()
    })
    .expect_err("untrusted certificate");
    assert!(err.to_string().starts_with("relay unreachable:") && err.to_string().contains("certificate"), "{err}");
    let share = share_via(&relay, |c| {
        c.relay = Some(RelayClientConfig { url: relay.public_url().to_owned(), ca_file: Some(cert.clone()) });
    });
    assert!(share.link().starts_with("https://"));
    // A browser's HTTPS request for the page.
    let mut roots = rustls::RootCertStore::empty();
    let pem = std::fs::read(&cert).expect("read cert");
    use rustls_pki_types::pem::PemObject as _;
    for c in rustls_pki_types::CertificateDer::pem_slice_iter(&pem) {
        roots.add(c.expect("cert")).expect("root");
    }
    let config =
        rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
    let name = rustls_pki_types::ServerName::try_from("127.0.0.1").expect("name");
    let mut tls = rustls::ClientConnection::new(std::sync::Arc::new(config), name).expect("client");
    let mut tcp = TcpStream::connect(relay.local_addr()).expect("connect");
    let mut stream = rustls::Stream::new(&mut tls, &mut tcp);
    let path = room_path(&share);
    stream
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").as_bytes())
        .expect("request");
    let mut body = Vec::new();
    let _ = stream.read_to_end(&mut body);
    let text = String::from_utf8_lossy(&body);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("<video"));
    // A plain-HTTP client gets nothing from the TLS port.
    let plain = request(relay.local_addr(), "GET", &path, &[], b"");
    assert_ne!(plain.status, 200);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn connections_per_address_and_idle_connections_are_limited() {
    let relay =
        Relay::start(RelayConfig { connections_per_ip: 3, idle_timeout: Duration::from_millis(700), ..relay_config() })
            .expect("relay");
    let held: Vec<TcpStream> = (0..3).map(|_| TcpStream::connect(relay.local_addr()).expect("connect")).collect();
    std::thread::sleep(Duration::from_millis(100));
    let r = request(relay.local_addr(), "GET", "/relay/stats", &[], b"");
    assert_eq!(r.status, 0, "a fourth connection is closed at once");
    assert_eq!(relay.connections_refused(), 1);
    // Idle (slowloris) connections are closed, freeing their places.
    for mut s in held {
        s.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
        let mut buf = [0u8; 1];
        assert_eq!(s.read(&mut buf).unwrap_or(0), 0, "closed by the relay");
    }
    assert_eq!(request(relay.local_addr(), "GET", "/relay/stats", &[], b"").status, 200);
}

#[test]
fn an_unreachable_relay_is_a_clear_error() {
    let free = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", free.local_addr().expect("addr"));
    drop(free);
    let err = Share::start(ShareConfig {
        bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
        port: 0,
        relay: Some(RelayClientConfig { url, ca_file: None }),
        ..ShareConfig::default()
    })
    .expect_err("nothing listens there");
    assert!(err.to_string().starts_with("relay unreachable:"), "{err}");
    let err = Share::start(ShareConfig {
        bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
        port: 0,
        relay: Some(RelayClientConfig { url: "relay.example.org".into(), ca_file: None }),
        ..ShareConfig::default()
    })
    .expect_err("no scheme");
    assert!(err.to_string().contains("expected https://"), "{err}");
}

#[test]
fn the_builtin_turn_server_allocates_for_minted_credentials_only() {
    use peep_transport::relay::rooms::OwnerSecret;
    use peep_transport::relay::turn::{password, unix_now, username};
    let relay = Relay::start(RelayConfig {
        ice: IceSettings { secret: Some(TURN_SECRET.into()), ttl: Duration::from_secs(600), ..IceSettings::default() },
        builtin_turn: Some(peep_transport::BuiltinTurnConfig {
            listen: "127.0.0.1:0".parse().expect("addr"),
            public_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            ports: (41000, 41099),
            allow_private_peers: false,
        }),
        ..relay_config()
    })
    .expect("relay with TURN");
    let (_, turn_addr) = relay.builtin_turn().expect("built-in TURN");
    let urls = relay.ice_urls();
    assert!(urls.contains(&format!("turn:{turn_addr}?transport=udp")), "{urls:?}");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let tag = OwnerSecret::from_bytes([1; 32]).room().tag();
    let allocate = |user: String, pass: String| {
        rt.block_on(async {
            let conn = std::sync::Arc::new(tokio::net::UdpSocket::bind("127.0.0.1:0").await.expect("bind"));
            let client = turn::client::Client::new(turn::client::ClientConfig {
                stun_serv_addr: turn_addr.to_string(),
                turn_serv_addr: turn_addr.to_string(),
                username: user,
                password: pass,
                realm: String::new(),
                software: String::new(),
                rto_in_ms: 0,
                conn,
                vnet: None,
            })
            .await
            .expect("client");
            client.listen().await.expect("listen");
            let result = tokio::time::timeout(Duration::from_secs(10), client.allocate()).await;
            let _ = client.close().await;
            match result {
                Ok(Ok(relayed)) => Ok(webrtc_util::Conn::local_addr(&relayed).expect("relayed address")),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err("timed out".to_owned()),
            }
        })
    };
    let user = username(unix_now() + 600, &tag, "v1");
    let relayed = allocate(user.clone(), password(&Secret::from(TURN_SECRET), &user).expose().to_owned())
        .expect("an allocation for minted credentials");
    assert!((41000..=41099).contains(&relayed.port()), "{relayed}");
    assert!(allocate(user.clone(), "wrong".into()).is_err(), "a wrong password is refused");
    let expired = username(unix_now() - 1, &tag, "v2");
    let err = allocate(expired.clone(), password(&Secret::from(TURN_SECRET), &expired).expose().to_owned())
        .expect_err("expired credentials are refused");
    assert!(!err.is_empty());
    let (counters, _) = relay.builtin_turn().expect("built-in TURN");
    assert_eq!(counters.allocations.load(std::sync::atomic::Ordering::Relaxed), 1);
    assert!(counters.auth_refused.load(std::sync::atomic::Ordering::Relaxed) >= 1);
}

#[test]
fn a_sharer_that_stops_reading_is_cut_off_and_other_rooms_keep_working() {
    let relay =
        Relay::start(RelayConfig { stall_timeout: Duration::from_millis(500), ..relay_config() }).expect("relay");
    let healthy = share_via(&relay, |_| {});
    let mut stalled = RawSharer::connect(&relay);
    stalled.hello();
    // It keeps talking (pings) but never reads the pongs: the relay's
    // queue and then the socket fill up.
    let pinger = std::thread::spawn(move || {
        for _ in 0..2_000_000 {
            if stalled.ws.send(tungstenite::Message::text(r#"{"type":"ping"}"#)).is_err() {
                return true;
            }
        }
        false
    });
    wait_until("the stalled sharer is cut off", Duration::from_secs(60), || relay.counters().connections_stalled >= 1);
    assert_eq!(post(&relay, &room_path(&healthy), &[]).status, 201, "other rooms keep working");
    assert!(pinger.join().expect("pinger"), "the relay closed the stalled connection");
}
