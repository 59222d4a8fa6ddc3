//! "Ask to join": viewers wait until the sharer admits or refuses them.
//!
//! A knock is recorded when a viewer's offer arrives (after its password
//! was checked), and the offer waits until [`Admissions::decide`] or a
//! timeout. The list is bounded; the sharer sees each knock's address and
//! how long it has waited.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

/// How long a viewer waits to be admitted before being told no one answered.
pub const ADMISSION_WAIT: Duration = Duration::from_secs(110);
/// Most viewers waiting at once.
pub const MAX_WAITING: usize = 32;

/// A viewer waiting to be admitted, for display.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Knock {
    /// Number to admit or refuse it by.
    pub id: u64,
    /// The viewer's address (as forwarded by the relay, if relayed).
    pub remote: IpAddr,
    /// How long it has waited.
    pub waiting: Duration,
}

#[derive(Debug)]
struct Waiting {
    id: u64,
    remote: IpAddr,
    since: Instant,
    decide: oneshot::Sender<bool>,
}

/// The knocks of one share.
#[derive(Debug, Default)]
pub struct Admissions {
    /// Whether viewers must be admitted.
    pub on: bool,
    next: u64,
    waiting: Vec<Waiting>,
}

impl Admissions {
    /// Records a knock; the receiver resolves with the sharer's decision.
    /// `None` when too many viewers wait already.
    pub fn knock(&mut self, remote: IpAddr, now: Instant) -> Option<(u64, oneshot::Receiver<bool>)> {
        self.waiting.retain(|w| !w.decide.is_closed());
        if self.waiting.len() >= MAX_WAITING {
            return None;
        }
        self.next += 1;
        let (decide, decided) = oneshot::channel();
        self.waiting.push(Waiting { id: self.next, remote, since: now, decide });
        Some((self.next, decided))
    }

    /// Admits (`true`) or refuses a waiting viewer. False if no such knock.
    pub fn decide(&mut self, id: u64, admit: bool) -> bool {
        match self.waiting.iter().position(|w| w.id == id) {
            Some(i) => self.waiting.remove(i).decide.send(admit).is_ok(),
            None => false,
        }
    }

    /// Forgets a knock (its viewer gave up or timed out).
    pub fn withdraw(&mut self, id: u64) {
        self.waiting.retain(|w| w.id != id);
    }

    /// Refuses everyone waiting (the share ends, or admission is turned off
    /// — then they are admitted instead).
    pub fn decide_all(&mut self, admit: bool) {
        for w in self.waiting.drain(..) {
            let _ = w.decide.send(admit);
        }
    }

    /// The viewers waiting now, oldest first.
    pub fn list(&self, now: Instant) -> Vec<Knock> {
        self.waiting
            .iter()
            .filter(|w| !w.decide.is_closed())
            .map(|w| Knock { id: w.id, remote: w.remote, waiting: now.saturating_duration_since(w.since) })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn knocks_are_decided_once_and_bounded() {
        let t0 = Instant::now();
        let ip: IpAddr = "192.0.2.4".parse().expect("ip");
        let mut a = Admissions::default();
        let (first, mut first_rx) = a.knock(ip, t0).expect("room");
        let (second, second_rx) = a.knock(ip, t0).expect("room");
        assert_eq!(a.list(t0 + Duration::from_secs(2)).len(), 2);
        assert_eq!(a.list(t0 + Duration::from_secs(2))[0].waiting, Duration::from_secs(2));
        assert!(a.decide(first, true));
        assert_eq!(first_rx.try_recv(), Ok(true));
        assert!(!a.decide(first, false), "decided once");
        drop(second_rx);
        assert!(a.list(t0).is_empty(), "a viewer that gave up is not listed");
        assert!(!a.decide(second, true));
        let held: Vec<_> = (0..MAX_WAITING).map(|_| a.knock(ip, t0).expect("room")).collect();
        assert!(a.knock(ip, t0).is_none(), "bounded");
        assert_eq!(held.len(), MAX_WAITING);
        a.decide_all(false);
        assert!(a.list(t0).is_empty());
    }
}
