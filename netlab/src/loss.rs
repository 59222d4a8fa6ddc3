//! Loss models: independent random loss and Gilbert–Elliott burst loss,
//! driven by a small seeded generator so every run of a test is the same.

/// How packets are lost on a link (after the bottleneck, so a lost packet
/// still used its share of the link's time, as on a radio link).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Loss {
    /// Nothing is lost.
    None,
    /// Each packet is lost independently with this probability (0.0–1.0).
    Random(f64),
    /// Two-state Gilbert–Elliott model: in the good state packets are lost
    /// with `loss_good`, in the bad state with `loss_bad`; before each packet
    /// the state flips good→bad with `p_good_to_bad` and bad→good with
    /// `p_bad_to_good`. Mean burst length is `1 / p_bad_to_good` packets.
    GilbertElliott {
        /// Probability of entering the bad state, per packet.
        p_good_to_bad: f64,
        /// Probability of leaving the bad state, per packet.
        p_bad_to_good: f64,
        /// Loss probability in the good state.
        loss_good: f64,
        /// Loss probability in the bad state.
        loss_bad: f64,
    },
}

impl Loss {
    /// Long-run fraction of packets lost.
    pub fn mean_rate(&self) -> f64 {
        match *self {
            Loss::None => 0.0,
            Loss::Random(p) => p.clamp(0.0, 1.0),
            Loss::GilbertElliott { p_good_to_bad, p_bad_to_good, loss_good, loss_bad } => {
                let total = p_good_to_bad + p_bad_to_good;
                if total <= 0.0 {
                    return loss_good;
                }
                let bad = p_good_to_bad / total;
                bad * loss_bad + (1.0 - bad) * loss_good
            }
        }
    }
}

/// SplitMix64: tiny, fast and good enough for loss decisions.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && self.next_f64() < p
    }
}

/// A loss model with its state.
#[derive(Debug, Clone)]
pub struct LossState {
    model: Loss,
    bad: bool,
    rng: Rng,
}

impl LossState {
    /// Starts in the good state.
    pub fn new(model: Loss, seed: u64) -> Self {
        Self { model, bad: false, rng: Rng::new(seed) }
    }

    /// Changes the model (the state and the generator carry on).
    pub fn set_model(&mut self, model: Loss) {
        self.model = model;
        if !matches!(model, Loss::GilbertElliott { .. }) {
            self.bad = false;
        }
    }

    /// The model in force.
    pub fn model(&self) -> Loss {
        self.model
    }

    /// Decides the fate of the next packet: `true` means lost.
    pub fn lose_next(&mut self) -> bool {
        match self.model {
            Loss::None => false,
            Loss::Random(p) => self.rng.chance(p),
            Loss::GilbertElliott { p_good_to_bad, p_bad_to_good, loss_good, loss_bad } => {
                let flip = if self.bad { p_bad_to_good } else { p_good_to_bad };
                if self.rng.chance(flip) {
                    self.bad = !self.bad;
                }
                self.rng.chance(if self.bad { loss_bad } else { loss_good })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn losses(model: Loss, n: usize) -> Vec<bool> {
        let mut s = LossState::new(model, 7);
        (0..n).map(|_| s.lose_next()).collect()
    }

    fn mean_run(lost: &[bool]) -> f64 {
        let runs: Vec<usize> = lost.split(|l| !l).map(<[bool]>::len).filter(|&n| n > 0).collect();
        runs.iter().sum::<usize>() as f64 / runs.len().max(1) as f64
    }

    #[test]
    fn random_loss_has_the_configured_rate_and_short_runs() {
        let lost = losses(Loss::Random(0.05), 200_000);
        let rate = lost.iter().filter(|&&l| l).count() as f64 / lost.len() as f64;
        assert!((rate - 0.05).abs() < 0.003, "rate {rate}");
        assert!(mean_run(&lost) < 1.1, "independent losses come one at a time: {}", mean_run(&lost));
        assert!(losses(Loss::None, 10_000).iter().all(|l| !l));
        assert!(losses(Loss::Random(1.0), 10_000).iter().all(|l| *l));
    }

    #[test]
    fn gilbert_elliott_loses_in_bursts_at_its_mean_rate() {
        let model = Loss::GilbertElliott { p_good_to_bad: 0.01, p_bad_to_good: 0.25, loss_good: 0.0, loss_bad: 1.0 };
        let lost = losses(model, 400_000);
        let rate = lost.iter().filter(|&&l| l).count() as f64 / lost.len() as f64;
        assert!((rate - model.mean_rate()).abs() < 0.005, "rate {rate} vs {}", model.mean_rate());
        // Mean burst 1 / 0.25 = 4 packets.
        let run = mean_run(&lost);
        assert!((3.5..4.5).contains(&run), "mean burst {run}");
    }

    #[test]
    fn the_same_seed_gives_the_same_losses() {
        assert_eq!(losses(Loss::Random(0.3), 1000), losses(Loss::Random(0.3), 1000));
    }
}
