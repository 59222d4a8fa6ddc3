//! The link emulator itself (`peep-netlab` in a middle namespace), checked
//! with UDP through it: one-way delays measured on this process's monotonic
//! clock, loss counts, the bottleneck's rate and queue limit, and a
//! scheduled outage. Needs root, iproute2 and ethtool.

mod common;

use std::net::UdpSocket;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::lab::{Lab, require_lab_tools};
use peep_netlab::link::{Change, LinkConfig};
use peep_netlab::loss::Loss;

/// Timing tests run one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

const PORT: u16 = 9000;
/// UDP payload + UDP/IP/Ethernet headers: the frame size the link counts.
const OVERHEAD: usize = 8 + 20 + 14;

/// Sends `count` datagrams of `size` bytes (sequence number first) from the
/// sender host every `spacing`; returns each datagram's send time and, per
/// sequence number, its arrival time at the receiver (if it arrived).
fn stream(lab: &Lab, count: u32, size: usize, spacing: Duration) -> (Vec<Instant>, Vec<Option<Instant>>) {
    let (to, from) = (format!("{}:{PORT}", lab.receiver_ip), format!("{}:0", lab.sender_ip));
    let bind = format!("{}:{PORT}", lab.receiver_ip);
    let receiver = lab.receiver.spawn_in("udp-recv", move || {
        let socket = UdpSocket::bind(&bind).expect("bind receiver");
        socket.set_read_timeout(Some(Duration::from_millis(700))).expect("timeout");
        let mut arrived = vec![None; count as usize];
        let mut buf = [0u8; 2048];
        while let Ok(n) = socket.recv(&mut buf) {
            let now = Instant::now();
            if n >= 4 {
                let seq = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
                if let Some(slot) = arrived.get_mut(seq as usize) {
                    *slot = Some(now);
                }
            }
        }
        arrived
    });
    std::thread::sleep(Duration::from_millis(100));
    let sent = lab.sender.run_in(move || {
        let socket = UdpSocket::bind(&from).expect("bind sender");
        // ARP first (it crosses the emulated link too).
        socket.send_to(&u32::MAX.to_be_bytes(), &to).expect("send");
        std::thread::sleep(Duration::from_millis(300));
        let mut payload = vec![0u8; size];
        let start = Instant::now();
        let mut sent = Vec::new();
        for seq in 0..count {
            let due = start + spacing * seq;
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            payload[..4].copy_from_slice(&seq.to_be_bytes());
            sent.push(Instant::now());
            socket.send_to(&payload, &to).expect("send");
        }
        sent
    });
    let arrived = receiver.join().expect("receiver thread").expect("enter namespace");
    (sent, arrived)
}

fn up(config: LinkConfig) -> Lab {
    require_lab_tools();
    Lab::new(1, config, LinkConfig::default())
}

#[test]
fn one_way_delay_is_added() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let lab = up(LinkConfig { delay: Duration::from_millis(40), ..LinkConfig::default() });
    let (sent, arrived) = stream(&lab, 50, 200, Duration::from_millis(10));
    let mut delays: Vec<Duration> =
        sent.iter().zip(&arrived).filter_map(|(s, a)| a.map(|a| a.duration_since(*s))).collect();
    assert_eq!(delays.len(), 50, "nothing is lost on a lossless link");
    delays.sort();
    let (min, median) = (delays[0], delays[25]);
    println!("one-way delay with 40 ms configured: min {min:?}, median {median:?}, max {:?}", delays[49]);
    assert!(min >= Duration::from_millis(40), "no packet may arrive before the delay: {min:?}");
    assert!(median < Duration::from_millis(60), "the delay is about what was configured: median {median:?}");
}

#[test]
fn random_loss_takes_its_share() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let lab = up(LinkConfig { loss: Loss::Random(0.10), seed: 9, ..LinkConfig::default() });
    let (_, arrived) = stream(&lab, 1000, 200, Duration::from_micros(1000));
    let lost = arrived.iter().filter(|a| a.is_none()).count();
    println!("10 % random loss: {lost} of 1000 lost");
    // Binomial(1000, 0.1): σ ≈ 9.5; this is ±5σ.
    assert!((50..=150).contains(&lost), "lost {lost} of 1000 at 10 %");
    let counted: u64 = lab.samples().iter().map(|s| s.a_to_b.interval.dropped_loss).sum();
    assert_eq!(counted, lost as u64, "the link's own count agrees with what went missing");
}

#[test]
fn the_bottleneck_delivers_its_rate_and_drops_what_overflows_its_queue() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    // 2 Mbit/s with a queue big enough for the whole burst.
    let lab = up(LinkConfig { rate_bps: Some(2_000_000), queue_ms: 2000, ..LinkConfig::default() });
    let (n, size) = (200u32, 1000usize);
    let (_, arrived) = stream(&lab, n, size, Duration::ZERO);
    let times: Vec<Instant> = arrived.iter().flatten().copied().collect();
    assert_eq!(times.len(), n as usize, "the queue holds the whole burst");
    let span = times[times.len() - 1].duration_since(times[0]).as_secs_f64();
    let rate = f64::from(n - 1) * ((size + OVERHEAD) * 8) as f64 / span;
    println!("2 Mbit/s bottleneck: {:.3} Mbit/s over {span:.3} s", rate / 1e6);
    assert!((1.8e6..=2.2e6).contains(&rate), "delivered {rate:.0} bit/s through a 2 Mbit/s bottleneck");
    drop(lab);

    // A 100 ms queue at 2 Mbit/s holds 25 kB: most of a 200 kB burst is dropped.
    let lab = up(LinkConfig { rate_bps: Some(2_000_000), queue_ms: 100, ..LinkConfig::default() });
    let (_, arrived) = stream(&lab, n, size, Duration::ZERO);
    let delivered = arrived.iter().flatten().count() as u64;
    let dropped: u64 = lab.samples().iter().map(|s| s.a_to_b.interval.dropped_queue).sum();
    println!("100 ms queue: {delivered} of {n} delivered, {dropped} dropped at the queue");
    assert!((20..=60).contains(&delivered), "a 25 kB queue let {delivered} of {n} 1 kB packets through");
    assert_eq!(dropped + delivered, u64::from(n), "every missing packet was a queue drop");
    let max_queue_ms = lab.samples().iter().map(|s| s.a_to_b.interval.max_queue_delay_us).max().unwrap_or(0) / 1000;
    assert!((80..=110).contains(&max_queue_ms), "the longest wait matches the queue limit: {max_queue_ms} ms");
}

#[test]
fn a_scheduled_outage_cuts_the_link_and_rate_steps_apply() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let lab = up(LinkConfig::default());
    // The stream starts ≈ 400 ms after this anchor (receiver start + ARP).
    let anchor = Instant::now();
    lab.schedule_up(
        anchor,
        vec![(Duration::from_millis(1000), Change::Outage(true)), (Duration::from_millis(1500), Change::Outage(false))],
    );
    let (sent, arrived) = stream(&lab, 300, 200, Duration::from_millis(5));
    let (on, off) = (anchor + Duration::from_millis(1000), anchor + Duration::from_millis(1500));
    let margin = Duration::from_millis(5);
    for (i, (s, a)) in sent.iter().zip(&arrived).enumerate() {
        if *s > on + margin && *s + margin < off {
            assert!(a.is_none(), "packet {i} sent during the outage arrived");
        } else if *s + margin < on || *s > off + margin {
            assert!(a.is_some(), "packet {i} sent outside the outage was lost");
        }
    }
    let lost = arrived.iter().filter(|a| a.is_none()).count();
    println!("500 ms outage in a 200 packet/s stream: {lost} lost");
    assert!((95..=105).contains(&lost), "{lost} lost in a 500 ms outage at 200 packets/s");

    // A live rate step: 1 Mbit/s, then 4 Mbit/s.
    lab.up(Change::Rate(Some(1_000_000)));
    lab.up(Change::QueueMs(5000));
    let (_, arrived) = stream(&lab, 100, 1200, Duration::ZERO);
    let t: Vec<Instant> = arrived.iter().flatten().copied().collect();
    let slow = 99.0 * ((1200 + OVERHEAD) * 8) as f64 / t[99].duration_since(t[0]).as_secs_f64();
    lab.up(Change::Rate(Some(4_000_000)));
    let (_, arrived) = stream(&lab, 100, 1200, Duration::ZERO);
    let t: Vec<Instant> = arrived.iter().flatten().copied().collect();
    let fast = 99.0 * ((1200 + OVERHEAD) * 8) as f64 / t[99].duration_since(t[0]).as_secs_f64();
    println!("rate step: {:.2} → {:.2} Mbit/s", slow / 1e6, fast / 1e6);
    assert!((0.9e6..=1.1e6).contains(&slow) && (3.6e6..=4.4e6).contains(&fast), "{slow:.0} then {fast:.0} bit/s");
    assert!(lab.samples().iter().all(|s| s.oversize == 0 && s.send_errors == 0), "offloads off, no send errors");
}
