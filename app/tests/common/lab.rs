//! A network lab: a sender host and a receiver host joined through a middle
//! namespace where `peep_netlab`'s forwarder emulates the link between them
//! (rate, bottleneck queue, delay, loss, outages):
//!
//! ```text
//!  sender ns                 middle ns (forwarder thread)              receiver ns
//!  10.241.N.1/24 ── veth ── [a]  a→b: Link (up)   ──▶ [b] ── veth ── 10.241.N.2/24
//!                                b→a: Link (down) ◀──
//! ```
//!
//! Both hosts are on one subnet; the middle is a transparent bridge (ARP
//! crosses it too). IPv6 is off in all three namespaces (no stray router
//! solicitations on the link), offloads are off on the hosts' interfaces
//! (the forwarder must see wire-sized frames with real checksums), and each
//! host has a default route across the link (Chromium gathers candidates
//! only on its default-route interface). Needs root, iproute2 and ethtool.
//! Only 10.241.0.0/17 is used.

#![allow(dead_code)]

use std::time::Duration;

use peep_netlab::forwarder::{Dir, Forwarder, ForwarderConfig, Sample};
use peep_netlab::link::{Change, LinkConfig, Schedule};

use super::netns::{Link, Netns, run_checked};

/// The emulated path between the two hosts.
pub struct Lab {
    pub sender: Netns,
    pub receiver: Netns,
    pub middle: Netns,
    pub sender_ip: String,
    pub receiver_ip: String,
    forwarder: Option<Forwarder>,
    // Dropped after the forwarder (field order).
    _links: [Link; 2],
}

impl std::fmt::Debug for Lab {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lab").field("sender", &self.sender_ip).field("receiver", &self.receiver_ip).finish()
    }
}

fn disable_ipv6(ns: &Netns) {
    ns.run("sysctl", &["-qw", "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1"], "procps");
}

impl Lab {
    /// Builds the lab on subnet `10.241.{subnet}.0/24` (`subnet` < 128) with
    /// `up` the sender→receiver link and `down` the way back.
    pub fn new(subnet: u8, up: LinkConfig, down: LinkConfig) -> Self {
        assert!(subnet < 128, "the lab's addresses stay inside 10.241.0.0/17");
        let (sender, middle, receiver) = (Netns::new("nls"), Netns::new("nlm"), Netns::new("nlr"));
        let (sender_addr, receiver_addr) = (format!("10.241.{subnet}.1/24"), format!("10.241.{subnet}.2/24"));
        let up_link = Link::new_opt(Some(&sender), Some(&sender_addr), Some(&middle), None);
        let down_link = Link::new_opt(Some(&receiver), Some(&receiver_addr), Some(&middle), None);
        for ns in [&sender, &middle, &receiver] {
            disable_ipv6(ns);
        }
        for (ns, dev) in [(&sender, &up_link.a.dev), (&receiver, &down_link.a.dev)] {
            ns.run(
                "ethtool",
                &["-K", dev, "tx", "off", "sg", "off", "tso", "off", "gso", "off", "gro", "off"],
                "ethtool",
            );
        }
        for dev in [&up_link.b.dev, &down_link.b.dev] {
            middle.ip(&["link", "set", "dev", dev, "promisc", "on"]);
        }
        let (sender_ip, receiver_ip) = (up_link.a.ip().to_owned(), down_link.a.ip().to_owned());
        sender.ip(&["route", "add", "default", "via", &receiver_ip]);
        receiver.ip(&["route", "add", "default", "via", &sender_ip]);
        let forwarder = Forwarder::spawn(ForwarderConfig {
            netns: middle.name.clone(),
            a: up_link.b.dev.clone(),
            b: down_link.b.dev.clone(),
            a_to_b: up,
            b_to_a: down,
            sample_every: Duration::from_millis(100),
        })
        .unwrap_or_else(|e| panic!("starting the link emulator: {e} (needs root)"));
        Self {
            sender,
            receiver,
            middle,
            sender_ip,
            receiver_ip,
            forwarder: Some(forwarder),
            _links: [up_link, down_link],
        }
    }

    fn fwd(&self) -> &Forwarder {
        self.forwarder.as_ref().expect("running until drop")
    }

    /// Changes the sender→receiver link now.
    pub fn up(&self, change: Change) {
        self.fwd().apply(Dir::AToB, change);
    }

    /// Changes the receiver→sender link now.
    pub fn down(&self, change: Change) {
        self.fwd().apply(Dir::BToA, change);
    }

    /// Both directions.
    pub fn both(&self, change: Change) {
        self.up(change);
        self.down(change);
    }

    /// Schedules changes of the sender→receiver link from `anchor`.
    pub fn schedule_up(&self, anchor: std::time::Instant, schedule: Schedule) {
        self.fwd().schedule(Dir::AToB, anchor, schedule);
    }

    /// Schedules changes of the receiver→sender link from `anchor`.
    pub fn schedule_down(&self, anchor: std::time::Instant, schedule: Schedule) {
        self.fwd().schedule(Dir::BToA, anchor, schedule);
    }

    /// The link's figures, one sample per 100 ms.
    pub fn samples(&self) -> Vec<Sample> {
        self.fwd().samples()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Some(f) = self.forwarder.take()
            && let Err(e) = f.stop()
        {
            eprintln!("link emulator ended with: {e}");
        }
    }
}

/// Fails the test with an install hint when ethtool is missing.
pub fn require_lab_tools() {
    run_checked("ethtool", &["--version"], "ethtool");
    run_checked("sysctl", &["--version"], "procps");
}
