//! What one relay process holds on this machine (numbers, not pass/fail):
//! N rooms, each with a sharer on its own WebSocket, then one viewer's WHEP
//! POST per room forwarded through the relay and answered by the sharer.
//!
//! The relay runs in a child process (this binary, re-executed), so its
//! memory is measured alone (`VmRSS` from /proc); the sharers and viewers
//! are tokio tasks here. Sharers answer at once with a canned SDP answer:
//! this measures the relay's signalling, not WebRTC.
//!
//!     cargo bench -p peep-transport --bench relay [-- ROOMS [CONCURRENCY]]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt as _, StreamExt as _};
use peep_transport::relay::rooms::{Limits, Rate};
use peep_transport::{Relay, RelayConfig};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;

const ROLE: &str = "PEEP_RELAY_BENCH_ROLE";

fn relay_child() {
    let unlimited = Rate { per_minute: 10_000_000, burst: 1_000_000 };
    let relay = Relay::start(RelayConfig {
        bind: "127.0.0.1:0".parse().expect("addr"),
        limits: Limits {
            max_rooms: 1_000_000,
            rooms_per_ip: 1_000_000,
            creates: unlimited,
            joins: unlimited,
            misses: unlimited,
            ..Limits::default()
        },
        connections_per_ip: 1_000_000,
        ..RelayConfig::default()
    })
    .expect("relay");
    println!("{}", relay.local_addr());
    // Until the parent closes our stdin.
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
    relay.shutdown();
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

const ANSWER: &str =
    "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 108\r\na=setup:passive\r\n";

/// A sharer that answers every forwarded request with 201 at once.
async fn sharer(addr: SocketAddr) -> String {
    let mut request = format!("ws://{addr}/relay/v1").into_client_request().expect("request");
    request.headers_mut().insert("sec-websocket-protocol", "peep-relay.v1".parse().expect("header"));
    let (mut ws, _) = tokio_tungstenite::connect_async(request).await.expect("connect");
    ws.send(Message::text(r#"{"type":"hello","version":1}"#)).await.expect("hello");
    let welcome = loop {
        if let Some(Ok(Message::Text(t))) = ws.next().await {
            break t;
        }
    };
    let v: serde_json::Value = serde_json::from_str(welcome.as_str()).expect("welcome");
    let room = v["room"].as_str().expect("room").to_owned();
    tokio::spawn(async move {
        let mut n = 0u64;
        while let Some(Ok(m)) = ws.next().await {
            let Message::Text(t) = m else { continue };
            let v: serde_json::Value = serde_json::from_str(t.as_str()).unwrap_or_default();
            if v["type"] == "request" {
                n += 1;
                let reply = serde_json::json!({"type":"response","id":v["id"],"status":201,"session":format!("s{n}"),"body":ANSWER});
                if ws.send(Message::text(reply.to_string())).await.is_err() {
                    break;
                }
            }
        }
    });
    room
}

/// One viewer's WHEP POST through the relay; returns its round-trip time.
async fn post(addr: SocketAddr, room: &str) -> Duration {
    let body = "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 102\r\n";
    let request = format!(
        "POST /r/{room}/whep HTTP/1.1\r\nHost: bench\r\nContent-Type: application/sdp\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let started = Instant::now();
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    s.write_all(request.as_bytes()).await.expect("write");
    let mut reply = Vec::new();
    let _ = s.read_to_end(&mut reply).await;
    let took = started.elapsed();
    assert!(reply.starts_with(b"HTTP/1.1 201"), "{}", String::from_utf8_lossy(&reply));
    took
}

fn percentile(sorted: &[Duration], q: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

fn main() {
    if std::env::var_os(ROLE).is_some() {
        return relay_child();
    }
    let args: Vec<usize> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let rooms = args.first().copied().unwrap_or(1000);
    let concurrency = args.get(1).copied().unwrap_or(16);
    let mut child = std::process::Command::new(std::env::current_exe().expect("exe"))
        .env(ROLE, "relay")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("relay child");
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.take().expect("stdout")), &mut line)
        .expect("relay address");
    let addr: SocketAddr = line.trim().parse().expect("address");
    let pid = child.id();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    std::thread::sleep(Duration::from_millis(300));
    let idle_kib = rss_kib(pid);
    let started = Instant::now();
    let room_ids: Vec<String> = rt.block_on(async {
        let mut ids = Vec::with_capacity(rooms);
        for chunk in (0..rooms).collect::<Vec<_>>().chunks(50) {
            let tasks: Vec<_> = chunk.iter().map(|_| tokio::spawn(sharer(addr))).collect();
            for t in tasks {
                ids.push(t.await.expect("sharer"));
            }
        }
        ids
    });
    let setup = started.elapsed();
    std::thread::sleep(Duration::from_millis(500));
    let rooms_kib = rss_kib(pid);
    let room_ids = Arc::new(room_ids);
    let started = Instant::now();
    let mut latencies: Vec<Duration> = rt.block_on(async {
        let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let workers: Vec<_> = (0..concurrency)
            .map(|_| {
                let (next, ids) = (next.clone(), room_ids.clone());
                tokio::spawn(async move {
                    let mut out = Vec::new();
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(room) = ids.get(i) else { break };
                        out.push(post(addr, room).await);
                    }
                    out
                })
            })
            .collect();
        let mut all = Vec::new();
        for w in workers {
            all.extend(w.await.expect("worker"));
        }
        all
    });
    let joining = started.elapsed();
    std::thread::sleep(Duration::from_millis(300));
    let joined_kib = rss_kib(pid);
    latencies.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "relay bench: {rooms} rooms (one sharer WebSocket each), one viewer WHEP POST per room, {concurrency} at a time"
    );
    println!("  rooms created in {:.2} s ({:.0} rooms/s)", setup.as_secs_f64(), rooms as f64 / setup.as_secs_f64());
    println!(
        "  relay RSS: idle {:.1} MiB, with {rooms} rooms {:.1} MiB ({:.1} KiB per room), after the joins {:.1} MiB ({:.1} KiB per room)",
        idle_kib as f64 / 1024.0,
        rooms_kib as f64 / 1024.0,
        rooms_kib.saturating_sub(idle_kib) as f64 / rooms as f64,
        joined_kib as f64 / 1024.0,
        joined_kib.saturating_sub(idle_kib) as f64 / rooms as f64,
    );
    println!(
        "  WHEP POST through the relay (viewer → relay → sharer → relay → viewer, new TCP connection each): \
         p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms; {:.0} POSTs/s",
        ms(percentile(&latencies, 0.5)),
        ms(percentile(&latencies, 0.9)),
        ms(percentile(&latencies, 0.99)),
        ms(latencies[latencies.len() - 1]),
        latencies.len() as f64 / joining.as_secs_f64()
    );
    drop(child.stdin.take());
    let _ = child.wait();
}
