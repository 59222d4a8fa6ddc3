//! Churn and soak of one `peep share` (figures; the leak bounds of
//! `tests/load.rs` are checked at the end). The sharer is a child process
//! with `--metrics`; the viewers are light webrtc-rs WHEP clients in this
//! process that complete ICE and DTLS and receive media, on loopback.
//!
//! * **Churn**: CYCLES (default 200) viewer join → media → leave cycles,
//!   four viewers at a time, every other one leaving with a WHEP DELETE and
//!   the others by just closing; RSS, open fds, threads and tokio tasks
//!   every 50 cycles, and after settling against the baseline.
//! * **Soak** (MINUTES, default 0; the run is 30): the share keeps
//!   running with viewers coming and going (two at a time), figures once
//!   a minute, then the same bounds against the baseline.
//!
//!     cargo bench -p peep --bench soak [-- CYCLES [MINUTES]]

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::load::{Figures, SharingPeep, churn};

const CONCURRENCY: usize = 4;
const STEP: usize = 50;

fn main() {
    // `cargo bench` passes `--bench`: keep the numbers only.
    let numbers: Vec<u64> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let cycles = numbers.first().map_or(200, |&n| n as usize);
    let minutes = numbers.get(1).copied().unwrap_or(0);
    let peep = SharingPeep::start(&["--source", "synthetic:moving", "--size", "640x360", "--fps", "15"]);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("viewers")
        .enable_all()
        .build()
        .expect("runtime");
    // Warm-up: pools, caches and lazily started threads reach their size.
    let warm = churn(&rt, &peep, 2 * CONCURRENCY, CONCURRENCY);
    assert!(warm.failures.is_empty(), "warm-up: {:?}", warm.failures);
    let base = peep.settle(Duration::from_secs(20));
    println!("baseline: {base}");

    let started = Instant::now();
    let (mut attempted, mut joined, mut deleted, mut failures) = (0, 0, 0, Vec::new());
    while attempted < cycles {
        let n = STEP.min(cycles - attempted);
        let run = churn(&rt, &peep, n, CONCURRENCY);
        attempted += n;
        joined += run.cycles;
        deleted += run.deleted;
        failures.extend(run.failures);
        println!(
            "{attempted:>5} cycles, {:>4.0} s, peak {} connected: {}",
            started.elapsed().as_secs_f64(),
            run.peak_connected,
            peep.figures()
        );
    }
    let after = peep.settle(Duration::from_secs(20));
    println!(
        "churn: {joined}/{cycles} cycles completed ({deleted} with DELETE) in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    println!("  baseline: {base}");
    println!("  settled:  {after}");
    check(&base, &after);

    if minutes > 0 {
        let soak_start = Instant::now();
        let end = soak_start + Duration::from_secs(minutes * 60);
        let mut next_report = soak_start + Duration::from_secs(60);
        let mut soak_cycles = 0;
        while Instant::now() < end {
            let run = churn(&rt, &peep, 4, 2);
            soak_cycles += run.cycles;
            failures.extend(run.failures);
            if Instant::now() >= next_report {
                let minute = soak_start.elapsed().as_secs() / 60;
                println!("soak minute {minute:>3}: {} ({soak_cycles} viewers so far)", peep.figures());
                next_report += Duration::from_secs(60);
            }
        }
        let soaked = peep.settle(Duration::from_secs(20));
        println!("soak: {minutes} min, {soak_cycles} viewers came and went");
        println!("  settled:  {soaked}");
        check(&base, &soaked);
    }
    println!("failures: {}", failures.len());
    for f in failures.iter().take(10) {
        println!("  {f}");
    }
    assert!(failures.is_empty(), "every viewer joined, got media and left");
    assert!(peep.stop(), "peep share exits cleanly on SIGINT");
}

/// The bounds of `tests/load.rs`: tasks exactly back, at most one fd or
/// thread more, memory within 24 MiB (allocator caches are not leaks).
fn check(base: &Figures, after: &Figures) {
    assert_eq!(after.tasks, base.tasks, "tokio tasks back to baseline");
    assert!(after.fds <= base.fds + 1, "file descriptors: {base} → {after}");
    assert!(after.threads <= base.threads + 1, "threads: {base} → {after}");
    assert!(after.rss_kib <= base.rss_kib + 24 * 1024, "memory: {base} → {after}");
}
