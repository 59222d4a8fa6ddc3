//! Issue 9's link scenarios (short versions) through the link emulator:
//! `peep share` of an Xvfb screen showing the synthetic scene with clock
//! marks, an emulated link, and real headless Chromium reading `getStats()`
//! and the marks (see common/scenario.rs). Each test asserts the issue's
//! loose safety bounds. Full-length runs, with Chrome's own screen-share
//! sender side by side: `cargo bench -p peep --bench links`.
//!
//! Tests marked `#[ignore = "issue 9 …"]` assert bounds that today's rate
//! control (rtc's GCC) misses; the reason says which and by how much. Run
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
fn t2_rate_steps() {
    scenario(Scenario::t2(Length::Short, SIZE));
}

#[test]
fn t3_five_percent_random_loss() {
    scenario(Scenario::t3(Length::Short, SIZE));
}

#[test]
fn t4_two_second_outage() {
    scenario(Scenario::t4(Length::Short, SIZE));
}

#[test]
fn t5_static_then_full_screen_change() {
    scenario(Scenario::t5(Length::Short, SIZE));
}
