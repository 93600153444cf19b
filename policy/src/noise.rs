//! Noise for differential privacy: an exact discrete Laplace sampler.
//!
//! The sampler is Algorithm 2 of Canonne, Kamath and Steinke, "The Discrete Gaussian for
//! Differential Privacy" (NeurIPS 2020): it draws from the two-sided geometric distribution
//! `P(x) ∝ exp(-|x| / scale)` on the integers using only uniform random integers and exact
//! Bernoulli trials on rationals, so no floating-point arithmetic touches the randomness.
//! Continuous Laplace noise computed in floating point leaks the true value through the gaps
//! of the floating-point grid (Mironov, CCS 2012); integer noise on a lattice does not. A
//! real-valued cell is therefore rounded to a lattice first and the noise is a whole number
//! of lattice steps: the released value is `(round(value / step) + noise) × step`.
//!
//! The crate draws no randomness of its own: callers hand in a [`RandomBits`] (the gateway
//! passes the operating system's generator).

/// A source of uniformly random 64-bit words.
pub trait RandomBits {
    /// The next uniformly random word, or [`RandomnessFailed`] when the source has none.
    fn next_u64(&mut self) -> Result<u64, RandomnessFailed>;
}

/// The random source could not supply a word; no noise is drawn and nothing is released.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RandomnessFailed;

/// A rational scale `numerator / denominator` of a discrete Laplace distribution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scale {
    /// Numerator (> 0).
    pub numerator: u64,
    /// Denominator (> 0).
    pub denominator: u64,
}

/// Fractional bits kept when a real scale becomes a rational one.
const SCALE_FRACTION_BITS: u32 = 16;

impl Scale {
    /// The smallest rational with denominator 2^16 that is at least `scale`: rounding up only
    /// adds noise. `None` when `scale` is not a positive finite number below 2^40.
    pub fn at_least(scale: f64) -> Option<Self> {
        if !(scale.is_finite() && scale > 0.0 && scale < 2f64.powi(40)) {
            return None;
        }
        let denominator = 1u64 << SCALE_FRACTION_BITS;
        let numerator = (scale * denominator as f64).ceil() as u64;
        Some(Self { numerator: numerator.max(1), denominator })
    }

    /// The scale as a real number.
    pub fn value(self) -> f64 {
        self.numerator as f64 / self.denominator as f64
    }
}

/// A uniform integer in `0..bound` (bound > 0), by rejection so that no value is favoured.
fn uniform_below(random: &mut dyn RandomBits, bound: u64) -> Result<u64, RandomnessFailed> {
    debug_assert!(bound > 0);
    let zone = u64::MAX - (u64::MAX % bound);
    loop {
        let word = random.next_u64()?;
        if word < zone {
            return Ok(word % bound);
        }
    }
}

/// True with probability `numerator / denominator` (numerator ≤ denominator).
fn bernoulli(random: &mut dyn RandomBits, numerator: u64, denominator: u64) -> Result<bool, RandomnessFailed> {
    Ok(uniform_below(random, denominator)? < numerator)
}

/// True with probability `exp(-numerator / denominator)` for a ratio in `[0, 1]`
/// (CKS Algorithm 1, first part): the parity of the first failure in a run of trials with
/// falling success odds.
fn bernoulli_exp_at_most_one(
    random: &mut dyn RandomBits,
    numerator: u64,
    denominator: u64,
) -> Result<bool, RandomnessFailed> {
    let mut trial: u64 = 1;
    loop {
        let Some(scaled) = denominator.checked_mul(trial) else { return Ok(trial % 2 == 1) };
        if !bernoulli(random, numerator, scaled)? {
            return Ok(trial % 2 == 1);
        }
        trial += 1;
    }
}

/// True with probability `exp(-numerator / denominator)` for any non-negative ratio.
fn bernoulli_exp(random: &mut dyn RandomBits, numerator: u64, denominator: u64) -> Result<bool, RandomnessFailed> {
    let whole = numerator / denominator;
    for _ in 0..whole {
        if !bernoulli_exp_at_most_one(random, 1, 1)? {
            return Ok(false);
        }
    }
    bernoulli_exp_at_most_one(random, numerator % denominator, denominator)
}

/// One draw from the discrete Laplace distribution with the given scale: `P(x) ∝
/// exp(-|x| / scale)` over the integers (CKS Algorithm 2).
pub fn discrete_laplace(random: &mut dyn RandomBits, scale: Scale) -> Result<i64, RandomnessFailed> {
    // With scale t/s: U uniform in [0, t), accepted with probability exp(-U/t); V geometric
    // with ratio exp(-1); X = U + tV is geometric with ratio exp(-1/t); Y = floor(X / s).
    let (t, s) = (scale.numerator, scale.denominator);
    loop {
        let u = uniform_below(random, t)?;
        if !bernoulli_exp(random, u, t)? {
            continue;
        }
        let mut v: u64 = 0;
        while bernoulli_exp(random, 1, 1)? {
            v += 1;
        }
        let x = u128::from(u) + u128::from(t) * u128::from(v);
        let y = i64::try_from(x / u128::from(s)).unwrap_or(i64::MAX);
        let negative = random.next_u64()? & 1 == 1;
        if negative && y == 0 {
            continue;
        }
        return Ok(if negative { -y } else { y });
    }
}

/// The lattice step for a real-valued cell noised at `scale`: the largest power of two at
/// most `scale / 1024`, so the lattice is much finer than the noise.
pub fn lattice_step(scale: f64) -> f64 {
    2f64.powi((scale / 1024.0).log2().floor().clamp(-60.0, 60.0) as i32)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// xorshift64*: deterministic test randomness (never used outside tests).
    struct TestBits(u64);

    impl RandomBits for TestBits {
        fn next_u64(&mut self) -> Result<u64, RandomnessFailed> {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            Ok(self.0.wrapping_mul(0x2545_f491_4f6c_dd1d))
        }
    }

    #[test]
    fn draws_follow_the_discrete_laplace_distribution() {
        for scale in [0.5, 1.0, 4.0, 25.0] {
            let mut random = TestBits(0x1234_5678 + scale as u64);
            let draws: Vec<i64> = (0..40_000)
                .map(|_| discrete_laplace(&mut random, Scale::at_least(scale).expect("scale")).expect("draw"))
                .collect();
            let q = (-1.0 / scale).exp();
            let p_zero = (1.0 - q) / (1.0 + q);
            let variance = 2.0 * q / (1.0 - q).powi(2);
            let observed_zero = draws.iter().filter(|&&x| x == 0).count() as f64 / draws.len() as f64;
            let mean = draws.iter().sum::<i64>() as f64 / draws.len() as f64;
            let observed_variance = draws.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / draws.len() as f64;
            assert!((observed_zero - p_zero).abs() < 0.01, "scale {scale}: P(0) {observed_zero} vs {p_zero}");
            assert!(mean.abs() < 4.0 * (variance / draws.len() as f64).sqrt() + 0.01, "scale {scale}: mean {mean}");
            assert!(
                (observed_variance / variance - 1.0).abs() < 0.06,
                "scale {scale}: var {observed_variance} vs {variance}"
            );
            let positive = draws.iter().filter(|&&x| x > 0).count() as f64;
            let negative = draws.iter().filter(|&&x| x < 0).count() as f64;
            assert!((positive - negative).abs() / draws.len() as f64 <= 0.02, "scale {scale}: asymmetric");
        }
    }

    #[test]
    fn scales_round_up_and_lattices_are_fine() {
        let scale = Scale::at_least(0.3).expect("scale");
        assert!(scale.value() >= 0.3 && scale.value() < 0.3 + 1e-4);
        assert!(Scale::at_least(0.0).is_none() && Scale::at_least(f64::NAN).is_none());
        assert_eq!(lattice_step(2048.0), 2.0);
        assert!(lattice_step(1.0) <= 1.0 / 1024.0);
    }
}
