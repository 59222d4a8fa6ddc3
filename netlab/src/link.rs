//! One direction of an emulated link, without I/O: a drop-tail bottleneck
//! queue drained at the link rate, then random/burst loss and outages, then
//! a fixed propagation delay. Time is an input; packets are opaque tokens
//! (the driver keeps the bytes).
//!
//! ```text
//! offer ──▶ [drop-tail queue, limit in ms of the current rate] ──▶ serialise at rate_bps
//!        ──▶ outage? loss? (a lost packet still used the link) ──▶ delay line ──▶ poll
//! ```
//!
//! Changes (rate steps, outages, loss, delay) apply at an instant, either at
//! once ([`Link::apply`]) or from a [`Schedule`] whose times are offsets from
//! an anchor; scheduled changes and departures are processed in time order,
//! so a run is exact whatever the driver's wake-up jitter.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::loss::{Loss, LossState};

/// Smallest queue limit: two full-size Ethernet frames, so a link at a very
/// low rate still carries something.
pub const MIN_QUEUE_BYTES: u64 = 2 * 1514;

/// The configuration of one direction.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinkConfig {
    /// Bottleneck rate in bits per second (counting whole Ethernet frames);
    /// `None`: no bottleneck (and no queue).
    pub rate_bps: Option<u64>,
    /// Bottleneck queue limit as time at the current rate (drop-tail).
    pub queue_ms: u32,
    /// One-way propagation delay added after the bottleneck.
    pub delay: Duration,
    /// Loss after the bottleneck.
    pub loss: Loss,
    /// Everything leaving the bottleneck is lost while this is on.
    pub outage: bool,
    /// Seed of the loss generator.
    pub seed: u64,
}

impl Default for LinkConfig {
    fn default() -> Self {
        Self { rate_bps: None, queue_ms: 300, delay: Duration::ZERO, loss: Loss::None, outage: false, seed: 1 }
    }
}

/// A change applied to a running link.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Change {
    /// New bottleneck rate (`None`: unlimited).
    Rate(Option<u64>),
    /// New one-way delay (packets already in flight keep theirs).
    Delay(Duration),
    /// New loss model.
    Loss(Loss),
    /// Outage on or off.
    Outage(bool),
    /// New queue limit in ms at the current rate.
    QueueMs(u32),
}

/// Changes at offsets from an anchor instant.
pub type Schedule = Vec<(Duration, Change)>;

/// Why a packet did not arrive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// The bottleneck queue was full.
    Queue,
    /// The loss model.
    Loss,
    /// An outage.
    Outage,
}

/// What the link does with a packet, as seen by [`Link::poll`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate<T> {
    /// Deliver it now.
    Deliver(T),
    /// It is gone.
    Drop(T, DropReason),
}

/// Counters since the last [`Link::take_interval`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Interval {
    /// Packets offered.
    pub packets_in: u64,
    /// Bytes delivered (whole frames).
    pub bytes_out: u64,
    /// Packets delivered.
    pub packets_out: u64,
    /// Dropped at the full queue.
    pub dropped_queue: u64,
    /// Lost by the loss model.
    pub dropped_loss: u64,
    /// Lost in an outage.
    pub dropped_outage: u64,
    /// Longest time a packet waited in the queue before its serialisation began, µs.
    pub max_queue_delay_us: u64,
    /// Highest rate of a busy period of deliveries measured in the interval,
    /// bps (0: none): what the link demonstrably carried. See [`BUSY_GAP`].
    pub busy_peak_bps: u64,
}

/// Deliveries less than this apart form one busy period. A busy period
/// yields a rate (bytes after its first packet ÷ its span) once it spans
/// [`BUSY_SPAN`] (then every span) or when it ends after at least
/// [`BUSY_MIN_SPAN`] and [`BUSY_MIN_PACKETS`] packets: within it, the
/// bottleneck or the sender set the spacing, so it shows a rate the path
/// carried, whatever the idle time around it (a static screen's keep-alives,
/// a probe burst between them).
pub const BUSY_GAP: Duration = Duration::from_millis(25);
/// See [`BUSY_GAP`].
pub const BUSY_SPAN: Duration = Duration::from_millis(150);
/// See [`BUSY_GAP`].
pub const BUSY_MIN_SPAN: Duration = Duration::from_millis(15);
/// See [`BUSY_GAP`].
pub const BUSY_MIN_PACKETS: u32 = 4;

/// A run of deliveries: (start, last, bytes after the first, packets).
#[derive(Debug, Clone, Copy)]
struct Busy {
    start: Instant,
    last: Instant,
    bytes: u64,
    packets: u32,
}

impl Busy {
    fn rate_bps(&self) -> Option<u64> {
        let span = self.last.saturating_duration_since(self.start);
        (span >= BUSY_MIN_SPAN && self.packets >= BUSY_MIN_PACKETS)
            .then(|| (self.bytes as f64 * 8.0 / span.as_secs_f64()) as u64)
    }
}

#[derive(Debug)]
struct Queued<T> {
    token: T,
    len: u32,
    arrived: Instant,
}

/// One direction of an emulated link.
#[derive(Debug)]
pub struct Link<T> {
    config: LinkConfig,
    loss: LossState,
    queue: VecDeque<Queued<T>>,
    queue_bytes: u64,
    /// When the bottleneck finishes what it is sending.
    link_free_at: Option<Instant>,
    /// Packets past the bottleneck, with their delivery times (in order: the
    /// delay only changes for packets that leave later, and never shrinks
    /// below what is in flight, see `depart`).
    flight: VecDeque<(Instant, T, u32)>,
    /// The finish time of the packet in service, fixed when the rate changed
    /// during its serialisation (it finishes at the rate it started with).
    pinned_finish: Option<Instant>,
    /// The latest time seen, for [`Link::next_wakeup`] while drops wait.
    now: Option<Instant>,
    drops: VecDeque<(T, DropReason)>,
    schedule: VecDeque<(Instant, Change)>,
    interval: Interval,
    busy: Option<Busy>,
}

impl<T> Link<T> {
    /// A link with `config`.
    pub fn new(config: LinkConfig) -> Self {
        Self {
            loss: LossState::new(config.loss, config.seed),
            config,
            queue: VecDeque::new(),
            queue_bytes: 0,
            link_free_at: None,
            flight: VecDeque::new(),
            pinned_finish: None,
            now: None,
            drops: VecDeque::new(),
            schedule: VecDeque::new(),
            interval: Interval::default(),
            busy: None,
        }
    }

    /// The configuration in force.
    pub fn config(&self) -> LinkConfig {
        self.config
    }

    /// Bytes waiting in the bottleneck queue.
    pub fn queue_bytes(&self) -> u64 {
        self.queue_bytes
    }

    /// Time the queue needs to drain at the current rate.
    pub fn queue_delay(&self) -> Duration {
        match self.config.rate_bps {
            Some(rate) if rate > 0 => Duration::from_secs_f64(self.queue_bytes as f64 * 8.0 / rate as f64),
            _ => Duration::ZERO,
        }
    }

    /// Replaces the pending schedule with `schedule`, offsets counted from `anchor`.
    pub fn set_schedule(&mut self, anchor: Instant, schedule: &[(Duration, Change)]) {
        let mut s: Vec<(Instant, Change)> = schedule.iter().map(|&(d, c)| (anchor + d, c)).collect();
        s.sort_by_key(|&(at, _)| at);
        self.schedule = s.into();
    }

    /// Applies `change` at `now` (after everything due before it).
    pub fn apply(&mut self, now: Instant, change: Change) {
        self.advance(now);
        self.change(now, change);
    }

    fn change(&mut self, at: Instant, change: Change) {
        match change {
            Change::Rate(rate) => {
                // The packet being serialised finishes at the old rate; the
                // rest of the queue drains at the new one.
                if let Some((start, finish)) = self.head_finish()
                    && start < at
                {
                    self.pinned_finish = Some(finish);
                }
                self.config.rate_bps = rate;
                if rate.is_none() {
                    self.pinned_finish = None;
                    while let Some(q) = self.queue.pop_front() {
                        self.queue_bytes -= u64::from(q.len);
                        self.depart(at, q);
                    }
                }
            }
            Change::Delay(d) => self.config.delay = d,
            Change::Loss(l) => {
                self.config.loss = l;
                self.loss.set_model(l);
            }
            Change::Outage(on) => self.config.outage = on,
            Change::QueueMs(ms) => self.config.queue_ms = ms,
        }
    }

    fn limit_bytes(&self) -> u64 {
        let rate = self.config.rate_bps.unwrap_or(0);
        (rate * u64::from(self.config.queue_ms) / 8000).max(MIN_QUEUE_BYTES)
    }

    /// A packet of `len` bytes arrives at `now`. Returns it back when the
    /// queue is full (drop-tail); otherwise [`Link::poll`] hands it out later.
    pub fn offer(&mut self, now: Instant, token: T, len: usize) -> Result<(), (T, DropReason)> {
        self.advance(now);
        self.interval.packets_in += 1;
        let len = u32::try_from(len).unwrap_or(u32::MAX);
        let q = Queued { token, len, arrived: now };
        if self.config.rate_bps.is_none() {
            self.depart(now, q);
            return Ok(());
        }
        if self.queue_bytes + u64::from(len) > self.limit_bytes() {
            self.interval.dropped_queue += 1;
            return Err((q.token, DropReason::Queue));
        }
        self.queue_bytes += u64::from(len);
        self.queue.push_back(q);
        self.advance(now);
        Ok(())
    }

    /// When the head of the queue finishes serialisation, if it has begun or can begin.
    fn head_finish(&self) -> Option<(Instant, Instant)> {
        let head = self.queue.front()?;
        let start = self.link_free_at.map_or(head.arrived, |f| f.max(head.arrived));
        if let Some(finish) = self.pinned_finish {
            return Some((start, finish));
        }
        let rate = self.config.rate_bps?;
        let secs = f64::from(head.len) * 8.0 / rate.max(1) as f64;
        Some((start, start + Duration::from_secs_f64(secs)))
    }

    /// Processes departures and scheduled changes due by `now`, in time order.
    fn advance(&mut self, now: Instant) {
        self.now = Some(self.now.map_or(now, |n| n.max(now)));
        loop {
            let departure = self.head_finish().filter(|&(_, finish)| finish <= now);
            let change = self.schedule.front().map(|&(at, _)| at).filter(|&at| at <= now);
            match (departure, change) {
                (Some((start, finish)), Some(at)) if finish <= at => self.serve(start, finish),
                (_, Some(_)) => {
                    let (at, c) = self.schedule.pop_front().expect("a change is due");
                    debug_assert!(at <= now);
                    self.change(at, c);
                }
                (Some((start, finish)), None) => self.serve(start, finish),
                (None, None) => break,
            }
        }
    }

    fn serve(&mut self, start: Instant, finish: Instant) {
        let q = self.queue.pop_front().expect("serve is called with a head");
        self.queue_bytes -= u64::from(q.len);
        self.link_free_at = Some(finish);
        self.pinned_finish = None;
        let waited = start.saturating_duration_since(q.arrived).as_micros() as u64;
        self.interval.max_queue_delay_us = self.interval.max_queue_delay_us.max(waited);
        self.depart(finish, q);
    }

    /// A packet leaves the bottleneck at `at`: an outage or the loss model may take it.
    fn depart(&mut self, at: Instant, q: Queued<T>) {
        if self.config.outage {
            self.interval.dropped_outage += 1;
            self.drops.push_back((q.token, DropReason::Outage));
        } else if self.loss.lose_next() {
            self.interval.dropped_loss += 1;
            self.drops.push_back((q.token, DropReason::Loss));
        } else {
            // Never deliver before a packet already in flight (a delay
            // decrease must not reorder).
            let due = (at + self.config.delay).max(self.flight.back().map_or(at, |f| f.0));
            self.flight.push_back((due, q.token, q.len));
        }
    }

    /// The next packet whose fate is decided by `now`, if any.
    pub fn poll(&mut self, now: Instant) -> Option<Fate<T>> {
        self.advance(now);
        if let Some((token, reason)) = self.drops.pop_front() {
            return Some(Fate::Drop(token, reason));
        }
        if self.flight.front().is_some_and(|f| f.0 <= now) {
            let (due, token, len) = self.flight.pop_front().expect("checked");
            self.interval.packets_out += 1;
            self.interval.bytes_out += u64::from(len);
            self.on_delivered(due, len);
            return Some(Fate::Deliver(token));
        }
        None
    }

    /// Busy-period bookkeeping for [`Interval::busy_peak_bps`] (delivery
    /// times are the model's, exact whatever the driver's jitter).
    fn on_delivered(&mut self, at: Instant, len: u32) {
        let mut sample = None;
        match &mut self.busy {
            Some(b) if at.saturating_duration_since(b.last) <= BUSY_GAP => {
                b.last = at;
                b.bytes += u64::from(len);
                b.packets += 1;
                if at.saturating_duration_since(b.start) >= BUSY_SPAN {
                    sample = b.rate_bps();
                    *b = Busy { start: at, last: at, bytes: 0, packets: 1 };
                }
            }
            b => {
                sample = b.and_then(|b| b.rate_bps());
                *b = Some(Busy { start: at, last: at, bytes: 0, packets: 1 });
            }
        }
        if let Some(bps) = sample {
            self.interval.busy_peak_bps = self.interval.busy_peak_bps.max(bps);
        }
    }

    /// When [`Link::poll`] next has something to do (`None`: nothing pending).
    pub fn next_wakeup(&self) -> Option<Instant> {
        if !self.drops.is_empty() {
            return self.now;
        }
        [self.flight.front().map(|f| f.0), self.head_finish().map(|h| h.1), self.schedule.front().map(|s| s.0)]
            .into_iter()
            .flatten()
            .min()
    }

    /// Counters since the last call.
    pub fn take_interval(&mut self) -> Interval {
        std::mem::take(&mut self.interval)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    type Outcome = (Vec<(usize, Duration)>, Vec<(usize, DropReason)>);

    /// Runs `link` in simulated time: `arrivals` are (time offset, len);
    /// returns (token, delivery offset) for delivered packets and the drops.
    fn simulate(link: &mut Link<usize>, t0: Instant, arrivals: &[(Duration, usize)], until: Duration) -> Outcome {
        let (mut delivered, mut dropped) = (Vec::new(), Vec::new());
        let mut next = 0;
        let mut now = t0;
        loop {
            // Step to the next event: an arrival or the link's wake-up.
            let arrival = arrivals.get(next).map(|a| t0 + a.0);
            let wake = link.next_wakeup();
            let Some(step) = [arrival, wake].into_iter().flatten().min() else { break };
            if step > t0 + until {
                break;
            }
            now = now.max(step);
            if arrival == Some(step) {
                if let Err((tok, why)) = link.offer(now, next, arrivals[next].1) {
                    dropped.push((tok, why));
                }
                next += 1;
            }
            while let Some(f) = link.poll(now) {
                match f {
                    Fate::Deliver(tok) => delivered.push((tok, now - t0)),
                    Fate::Drop(tok, why) => dropped.push((tok, why)),
                }
            }
        }
        (delivered, dropped)
    }

    #[test]
    fn delay_alone_shifts_every_packet() {
        let t0 = Instant::now();
        let mut link = Link::new(LinkConfig { delay: ms(25), ..LinkConfig::default() });
        let arrivals: Vec<_> = (0..10).map(|i| (ms(i * 10), 100)).collect();
        let (delivered, dropped) = simulate(&mut link, t0, &arrivals, ms(1000));
        assert!(dropped.is_empty());
        for (tok, at) in delivered {
            assert_eq!(at, ms(tok as u64 * 10 + 25));
        }
    }

    #[test]
    fn the_bottleneck_serialises_at_its_rate_and_queues() {
        let t0 = Instant::now();
        // 1 Mbit/s: a 1250-byte packet takes 10 ms.
        let mut link =
            Link::new(LinkConfig { rate_bps: Some(1_000_000), queue_ms: 1000, delay: ms(5), ..LinkConfig::default() });
        let arrivals: Vec<_> = (0..50).map(|_| (Duration::ZERO, 1250)).collect();
        let (delivered, dropped) = simulate(&mut link, t0, &arrivals, ms(2000));
        assert!(dropped.is_empty());
        assert_eq!(delivered.len(), 50);
        for (i, (tok, at)) in delivered.iter().enumerate() {
            assert_eq!(*tok, i, "in order");
            let expected = ms(10 * (i as u64 + 1) + 5);
            assert!(at.abs_diff(expected) < Duration::from_micros(2), "packet {i} at {at:?}, expected {expected:?}");
        }
        let iv = link.take_interval();
        assert_eq!(iv.bytes_out, 50 * 1250);
        // The last packet waited 490 ms before its turn.
        assert!(iv.max_queue_delay_us.abs_diff(490_000) < 5, "{}", iv.max_queue_delay_us);
    }

    #[test]
    fn busy_periods_show_the_rate_carried_whatever_the_idle_time_around_them() {
        let t0 = Instant::now();
        let mut link = Link::new(LinkConfig { rate_bps: Some(1_000_000), queue_ms: 1000, ..LinkConfig::default() });
        // A lone small packet every 500 ms (keep-alives): no busy period.
        let mut arrivals: Vec<_> = (0..4).map(|i| (ms(500 * i), 200)).collect();
        let (delivered, _) = simulate(&mut link, t0, &arrivals, ms(2000));
        assert_eq!(delivered.len(), 4);
        assert_eq!(link.take_interval().busy_peak_bps, 0, "single packets show no rate");
        // A burst of 8 packets at once: the link carries it at its 1 Mbit/s,
        // although the interval's average is far lower.
        let mut link = Link::new(LinkConfig { rate_bps: Some(1_000_000), queue_ms: 1000, ..LinkConfig::default() });
        arrivals.extend((0..8).map(|_| (ms(2100), 1250)));
        arrivals.push((ms(3000), 200));
        simulate(&mut link, t0, &arrivals, ms(4000));
        let iv = link.take_interval();
        assert!(iv.busy_peak_bps.abs_diff(1_000_000) < 1000, "{}", iv.busy_peak_bps);
        assert!(iv.bytes_out * 8 / 4 < 40_000, "average {} bps", iv.bytes_out * 8 / 4);
        // Paced below the bottleneck (a packet every 20 ms = 500 kbit/s): that rate.
        let mut link = Link::new(LinkConfig { rate_bps: Some(1_000_000), queue_ms: 1000, ..LinkConfig::default() });
        let paced: Vec<_> = (0..20).map(|i| (ms(20 * i), 1250)).collect();
        simulate(&mut link, t0, &paced, ms(1000));
        let iv = link.take_interval();
        assert!(iv.busy_peak_bps.abs_diff(500_000) < 1000, "{}", iv.busy_peak_bps);
    }

    #[test]
    fn a_full_queue_drops_the_tail() {
        let t0 = Instant::now();
        // 100 ms at 1 Mbit/s = 12,500 bytes = 10 packets of 1250.
        let mut link = Link::new(LinkConfig { rate_bps: Some(1_000_000), queue_ms: 100, ..LinkConfig::default() });
        let arrivals: Vec<_> = (0..30).map(|_| (Duration::ZERO, 1250)).collect();
        let (delivered, dropped) = simulate(&mut link, t0, &arrivals, ms(2000));
        assert_eq!(delivered.len(), 10);
        assert_eq!(dropped.len(), 20);
        assert!(dropped.iter().all(|&(tok, why)| tok >= 10 && why == DropReason::Queue));
        assert_eq!(link.take_interval().dropped_queue, 20);
    }

    #[test]
    fn scheduled_rate_steps_change_the_drain_rate_at_their_instant() {
        let t0 = Instant::now();
        let mut link = Link::new(LinkConfig { rate_bps: Some(1_000_000), queue_ms: 5000, ..LinkConfig::default() });
        // At 100 ms the rate doubles: after that 1250-byte packets take 5 ms.
        link.set_schedule(t0, &[(ms(100), Change::Rate(Some(2_000_000)))]);
        let arrivals: Vec<_> = (0..30).map(|_| (Duration::ZERO, 1250)).collect();
        let (delivered, _) = simulate(&mut link, t0, &arrivals, ms(2000));
        assert_eq!(delivered[9].1, ms(100));
        // Packet 10 started at 100 ms, at the new rate.
        assert!(delivered[10].1.abs_diff(ms(105)) < Duration::from_micros(2), "{:?}", delivered[10].1);
        assert!(delivered[29].1.abs_diff(ms(200)) < Duration::from_micros(2), "{:?}", delivered[29].1);
    }

    #[test]
    fn an_outage_loses_what_leaves_the_bottleneck_during_it() {
        let t0 = Instant::now();
        let mut link = Link::new(LinkConfig { delay: ms(20), ..LinkConfig::default() });
        link.set_schedule(t0, &[(ms(200), Change::Outage(true)), (ms(400), Change::Outage(false))]);
        let arrivals: Vec<_> = (0..60).map(|i| (ms(i * 10), 200)).collect();
        let (delivered, dropped) = simulate(&mut link, t0, &arrivals, ms(2000));
        assert_eq!(dropped.len(), 20, "packets sent in [200, 400) ms are lost");
        assert!(dropped.iter().all(|&(tok, why)| (20..40).contains(&tok) && why == DropReason::Outage));
        assert_eq!(delivered.len(), 40);
        // Packets in flight when the outage began still arrive (they left before it).
        assert!(delivered.iter().any(|&(tok, at)| tok == 19 && at == ms(210)));
    }

    #[test]
    fn random_loss_takes_its_share_after_the_bottleneck() {
        let t0 = Instant::now();
        let mut link = Link::new(LinkConfig { loss: Loss::Random(0.1), seed: 42, ..LinkConfig::default() });
        let arrivals: Vec<_> = (0..20_000).map(|i| (Duration::from_micros(i * 100), 100)).collect();
        let (delivered, dropped) = simulate(&mut link, t0, &arrivals, Duration::from_secs(10));
        let rate = dropped.len() as f64 / 20_000.0;
        assert!((rate - 0.1).abs() < 0.01, "loss {rate}");
        assert_eq!(delivered.len() + dropped.len(), 20_000);
        assert!(dropped.iter().all(|d| d.1 == DropReason::Loss));
    }

    #[test]
    fn removing_the_bottleneck_flushes_the_queue_and_a_delay_cut_never_reorders() {
        let t0 = Instant::now();
        let mut link =
            Link::new(LinkConfig { rate_bps: Some(100_000), queue_ms: 10_000, delay: ms(50), ..LinkConfig::default() });
        let arrivals: Vec<_> = (0..5).map(|_| (Duration::ZERO, 1250)).collect();
        for (i, a) in arrivals.iter().enumerate() {
            link.offer(t0 + a.0, i, a.1).expect("room");
        }
        // 1250 bytes at 100 kbit/s: 100 ms each. At 150 ms: one is out.
        link.apply(t0 + ms(150), Change::Delay(ms(1)));
        link.apply(t0 + ms(150), Change::Rate(None));
        let mut order = Vec::new();
        let mut now = t0 + ms(150);
        while let Some(w) = link.next_wakeup() {
            now = now.max(w);
            while let Some(Fate::Deliver(tok)) = link.poll(now) {
                order.push((tok, now - t0));
            }
        }
        assert_eq!(order.iter().map(|o| o.0).collect::<Vec<_>>(), vec![0, 1, 2, 3, 4]);
        // Packet 0 left at 100 ms with the old 50 ms delay; the rest were
        // flushed at 150 ms with 1 ms but may not overtake it.
        assert_eq!(order[0].1, ms(150));
        assert!(order[1..].iter().all(|o| o.1 == ms(151)), "{order:?}");
    }

    #[test]
    fn queue_delay_reports_the_standing_queue() {
        let t0 = Instant::now();
        let mut link: Link<u32> =
            Link::new(LinkConfig { rate_bps: Some(800_000), queue_ms: 1000, ..LinkConfig::default() });
        for i in 0..10 {
            link.offer(t0, i, 1000).expect("room");
        }
        // 10,000 bytes, the first in service: 9,000 bytes waiting after the first departs.
        assert_eq!(link.queue_delay(), ms(100));
        let _ = link.poll(t0 + ms(10));
        assert_eq!(link.queue_delay(), ms(90));
    }
}
