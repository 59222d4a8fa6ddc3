//! Test support for Peep: a network link emulator.
//!
//! This kernel has no `sch_netem`, so delay, loss and outages come from
//! here: a [`forwarder::Forwarder`] thread sits in a middle network
//! namespace between two veth interfaces and moves every Ethernet frame
//! across through a [`link::Link`] per direction — a drop-tail bottleneck
//! queue drained at the link rate, random or burst loss ([`loss::Loss`]),
//! outages, and a one-way delay — with rate steps and outages applied live
//! or from a schedule. The link model is sans-IO (time is an input) and
//! unit-tested in simulated time; the forwarder is a thin driver.
//!
//! ```no_run
//! use std::time::Duration;
//! use peep_netlab::forwarder::{Forwarder, ForwarderConfig};
//! use peep_netlab::link::LinkConfig;
//!
//! let fwd = Forwarder::spawn(ForwarderConfig {
//!     netns: "middle".into(),
//!     a: "veth-a".into(),
//!     b: "veth-b".into(),
//!     a_to_b: LinkConfig { rate_bps: Some(1_000_000), delay: Duration::from_millis(25), ..LinkConfig::default() },
//!     b_to_a: LinkConfig { delay: Duration::from_millis(25), ..LinkConfig::default() },
//!     sample_every: Duration::from_millis(100),
//! })?;
//! # drop(fwd);
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! Unsafe code is confined to [`sys`] (AF_PACKET sockets, `ppoll`, `setns`,
//! `sched_setscheduler`), each call with its SAFETY note.

pub mod link;
pub mod loss;

#[cfg(target_os = "linux")]
pub mod forwarder;
#[cfg(target_os = "linux")]
pub mod netns;
#[cfg(target_os = "linux")]
pub mod sys;
