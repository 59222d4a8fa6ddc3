//! The driver: a thread in a middle network namespace that moves Ethernet
//! frames between two interfaces through two [`Link`]s (one per direction),
//! with AF_PACKET sockets. It is a transparent bridge: hosts on either side
//! share one subnet and see each other directly (ARP included), only slower,
//! later and lossier.
//!
//! The endpoints' interfaces must have segmentation and checksum offloads
//! off (`ethtool -K DEV tx off tso off gso off gro off`), or the forwarder
//! sees 64 KB "frames" and packets with checksums still to be filled in.

use std::io;
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use crate::link::{Change, Fate, Interval, Link, LinkConfig, Schedule};
use crate::sys::{PacketSocket, enter_netns, poll_readable, set_realtime};

/// Largest frame forwarded: a 1500-byte MTU plus the Ethernet header, with room for a VLAN tag.
pub const MAX_FRAME: usize = 1536;
/// Most frames held at once (queue + in flight, both directions); more are dropped.
pub const MAX_FRAMES_HELD: usize = 32_768;
/// Longest the forwarding thread sleeps, so control messages are seen promptly.
const MAX_SLEEP: Duration = Duration::from_millis(10);

/// A direction through the forwarder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dir {
    /// From interface `a` to interface `b`.
    AToB,
    /// From interface `b` to interface `a`.
    BToA,
}

/// One direction's figures over one sampling interval.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct DirSample {
    /// Counters over the interval.
    pub interval: Interval,
    /// Standing queue at the end of the interval, as time to drain at the current rate.
    pub queue_delay: Duration,
    /// Bottleneck rate in force.
    pub rate_bps: Option<u64>,
    /// Whether an outage was on at the end of the interval.
    pub outage: bool,
}

/// Figures of one sampling interval, both directions.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// End of the interval.
    pub at: Instant,
    /// End of the interval, wall clock in ms since the UNIX epoch (to line
    /// up with browser timestamps).
    pub wall_ms: f64,
    /// Length of the interval.
    pub length: Duration,
    /// `a` → `b`.
    pub a_to_b: DirSample,
    /// `b` → `a`.
    pub b_to_a: DirSample,
    /// Frames larger than [`MAX_FRAME`] seen so far (offloads left on).
    pub oversize: u64,
    /// Frames the kernel refused to send so far.
    pub send_errors: u64,
}

enum Control {
    Apply(Dir, Change),
    Schedule(Dir, Instant, Schedule),
    Stop,
}

/// A running forwarder; stops (and joins its thread) on drop.
#[derive(Debug)]
pub struct Forwarder {
    control: SyncSender<Control>,
    thread: Option<JoinHandle<io::Result<()>>>,
    samples: Arc<Mutex<Vec<Sample>>>,
}

/// What the forwarder is told at start.
#[derive(Debug, Clone)]
pub struct ForwarderConfig {
    /// Network namespace (`ip netns` name) holding both interfaces.
    pub netns: String,
    /// Interface `a`.
    pub a: String,
    /// Interface `b`.
    pub b: String,
    /// The `a` → `b` link.
    pub a_to_b: LinkConfig,
    /// The `b` → `a` link.
    pub b_to_a: LinkConfig,
    /// How often figures are sampled.
    pub sample_every: Duration,
}

fn wall_ms() -> f64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs_f64() * 1e3).unwrap_or(0.0)
}

impl Forwarder {
    /// Starts forwarding; returns once both sockets are open (or with the
    /// reason they could not be).
    pub fn spawn(config: ForwarderConfig) -> io::Result<Self> {
        // Control: bounded, the caller blocks when 64 changes are pending
        // (changes are rare; the thread reads them every ≤ 10 ms).
        let (control, commands) = sync_channel(64);
        let samples = Arc::new(Mutex::new(Vec::new()));
        let (ready_tx, ready) = sync_channel(1);
        let thread = {
            let samples = samples.clone();
            std::thread::Builder::new().name("netlab-forward".into()).spawn(move || {
                let opened = enter_netns(&config.netns)
                    .and_then(|()| Ok((PacketSocket::open(&config.a)?, PacketSocket::open(&config.b)?)));
                let (a, b) = match opened {
                    Ok(s) => {
                        let _ = ready_tx.send(Ok(()));
                        s
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(io::Error::new(e.kind(), e.to_string())));
                        return Err(e);
                    }
                };
                // Best effort: without it the link's timing follows the machine's load.
                let _ = set_realtime(10);
                run(&config, [a, b], &commands, &samples)
            })?
        };
        match ready.recv() {
            Ok(Ok(())) => Ok(Self { control, thread: Some(thread), samples }),
            Ok(Err(e)) => {
                let _ = thread.join();
                Err(e)
            }
            Err(_) => Err(io::Error::other("the forwarding thread ended before starting")),
        }
    }

    /// Applies a change now.
    pub fn apply(&self, dir: Dir, change: Change) {
        let _ = self.control.send(Control::Apply(dir, change));
    }

    /// Replaces `dir`'s pending schedule; offsets count from `anchor`.
    pub fn schedule(&self, dir: Dir, anchor: Instant, schedule: Schedule) {
        let _ = self.control.send(Control::Schedule(dir, anchor, schedule));
    }

    /// Every sample so far.
    pub fn samples(&self) -> Vec<Sample> {
        self.samples.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Stops the thread and returns its result (an I/O error that ended it early).
    pub fn stop(mut self) -> io::Result<()> {
        self.stop_inner()
    }

    fn stop_inner(&mut self) -> io::Result<()> {
        let _ = self.control.send(Control::Stop);
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(r)) => r,
            Some(Err(_)) => Err(io::Error::other("the forwarding thread panicked")),
            None => Ok(()),
        }
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        let _ = self.stop_inner();
    }
}

/// Frame storage: slots recycled through a free list, allocated on first use.
struct Frames {
    slots: Vec<Vec<u8>>,
    lens: Vec<usize>,
    free: Vec<usize>,
}

impl Frames {
    fn take(&mut self) -> Option<usize> {
        if let Some(i) = self.free.pop() {
            return Some(i);
        }
        if self.slots.len() >= MAX_FRAMES_HELD {
            return None;
        }
        self.slots.push(vec![0; MAX_FRAME]);
        self.lens.push(0);
        Some(self.slots.len() - 1)
    }
}

fn run(
    config: &ForwarderConfig,
    sockets: [PacketSocket; 2],
    commands: &Receiver<Control>,
    samples: &Mutex<Vec<Sample>>,
) -> io::Result<()> {
    let mut links: [Link<usize>; 2] = [Link::new(config.a_to_b), Link::new(config.b_to_a)];
    let mut frames = Frames { slots: Vec::new(), lens: Vec::new(), free: Vec::new() };
    let (mut oversize, mut send_errors) = (0u64, 0u64);
    let fds = [sockets[0].raw_fd(), sockets[1].raw_fd()];
    let mut ready = [false; 2];
    let mut last_sample = Instant::now();
    let mut scratch = vec![0u8; 65_536];
    loop {
        loop {
            match commands.try_recv() {
                Ok(Control::Apply(dir, change)) => links[dir as usize].apply(Instant::now(), change),
                Ok(Control::Schedule(dir, anchor, s)) => links[dir as usize].set_schedule(anchor, &s),
                Ok(Control::Stop) | Err(TryRecvError::Disconnected) => return Ok(()),
                Err(TryRecvError::Empty) => break,
            }
        }
        let now = Instant::now();
        // Deliver what is due: link 0 (a→b) sends out of b, link 1 out of a.
        for (i, link) in links.iter_mut().enumerate() {
            let out = &sockets[1 - i];
            while let Some(fate) = link.poll(now) {
                let tok = match fate {
                    Fate::Deliver(tok) => {
                        if out.send(&frames.slots[tok][..frames.lens[tok]]).is_err() {
                            send_errors += 1;
                        }
                        tok
                    }
                    Fate::Drop(tok, _) => tok,
                };
                frames.free.push(tok);
            }
        }
        if now.duration_since(last_sample) >= config.sample_every {
            let dir = |l: &mut Link<usize>| DirSample {
                interval: l.take_interval(),
                queue_delay: l.queue_delay(),
                rate_bps: l.config().rate_bps,
                outage: l.config().outage,
            };
            let sample = Sample {
                at: now,
                wall_ms: wall_ms(),
                length: now - last_sample,
                a_to_b: dir(&mut links[0]),
                b_to_a: dir(&mut links[1]),
                oversize,
                send_errors,
            };
            samples.lock().unwrap_or_else(|e| e.into_inner()).push(sample);
            last_sample = now;
        }
        let wake = links
            .iter()
            .filter_map(Link::next_wakeup)
            .chain([last_sample + config.sample_every, now + MAX_SLEEP])
            .min()
            .unwrap_or(now + MAX_SLEEP);
        poll_readable(&fds, wake.saturating_duration_since(Instant::now()), &mut ready)?;
        let now = Instant::now();
        for i in 0..2 {
            if !ready[i] {
                continue;
            }
            // A bounded batch per wake-up, so one busy side cannot starve the other.
            for _ in 0..256 {
                let Some(tok) = frames.take() else {
                    // Storage full: read and discard (counted as a queue drop by nobody: rare).
                    if sockets[i].recv(&mut scratch)?.is_none() {
                        break;
                    }
                    continue;
                };
                match sockets[i].recv(&mut frames.slots[tok][..])? {
                    None => {
                        frames.free.push(tok);
                        break;
                    }
                    Some(len) if len > MAX_FRAME => {
                        oversize += 1;
                        frames.free.push(tok);
                    }
                    Some(len) => {
                        frames.lens[tok] = len;
                        if let Err((tok, _)) = links[i].offer(now, tok, len) {
                            frames.free.push(tok);
                        }
                    }
                }
            }
        }
    }
}
