//! Issue 9's link scenarios (short versions) through the link emulator:
//! `peep share` of an Xvfb screen showing the synthetic scene with clock
//! marks, an emulated link, and real headless Chromium reading `getStats()`
//! and the marks (see common/scenario.rs). Each test asserts the issue's
//! loose safety bounds. Full-length runs, with Chrome's own screen-share
//! sender side by side: `cargo bench -p peep --bench links`.
//!
//! Tests marked `#[ignore = "issue 9 …"]` assert bounds that today's rate
//! control misses; the reason says which and by how much. Run
//! them with `cargo test -p peep --test links -- --include-ignored`, and
//! remove the `ignore` once they pass (the bandwidth-estimator work).

mod common;

use std::sync::Mutex;

use common::scenario::{Length, Scenario, Sender, assert_checks, run};

/// One scenario at a time: each one is timing, CPU and a browser.
static SERIAL: Mutex<()> = Mutex::new(());

/// 720p keeps CI's cost down; the benchmark runs 1080p.
const SIZE: (u32, u32) = (1280, 720);

fn scenario(s: Scenario) {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let run = run(&s, Sender::Peep);
    assert_checks(&run);
}

#[test]
fn lan_call_is_measured_as_smooth_and_prompt() {
    scenario(Scenario::lan(SIZE));
}

#[test]
fn t1_start_on_1_mbit() {
    scenario(Scenario::t1(Length::Short, SIZE));
}

#[test]
#[ignore = "issue 9: T2 missed by Peep's rate control — 52 % of 2.5 Mbit/s delivered within 10 s of the step up (bound ≥ 80 %), standing queue 288 ms 2 s after the step down (bound < 100 ms)"]
fn t2_rate_steps() {
    scenario(Scenario::t2(Length::Short, SIZE));
}

#[test]
#[ignore = "issue 9: T3 missed by Peep's rate control — 3 freezes in 25 s (bound ≤ 1/min; estimate 92 %, longest gap 359 ms, 0 PLIs pass)"]
fn t3_five_percent_random_loss() {
    scenario(Scenario::t3(Length::Short, SIZE));
}

#[test]
fn t4_two_second_outage() {
    scenario(Scenario::t4(Length::Short, SIZE));
}

#[test]
#[ignore = "issue 9: T5 missed by Peep's rate control — while static the estimate holds 899 kbps against 29 kbps delivered (bound ≤ 1.5×; the change shows after 632 ms, bound < 1 s passes)"]
fn t5_static_then_full_screen_change() {
    scenario(Scenario::t5(Length::Short, SIZE));
}
