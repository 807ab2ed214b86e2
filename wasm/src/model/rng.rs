//! `SplitMix64`: the one seeded generator behind everything that must repeat for a seed:
//! dropout masks, new-layer initialisation, batch order and data splits. candle's CPU
//! generator cannot be seeded, and a seed must mean the same run on every machine.

/// SplitMix64 (Steele, Lea & Flood 2014): tiny, fast, and good enough for masks and shuffles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SplitMix64(u64);

const GOLDEN_GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

fn mix(state: u64) -> u64 {
    let mut z = state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn unit_f64(bits: u64) -> f64 {
    (bits >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

impl SplitMix64 {
    pub fn new(seed: u64) -> SplitMix64 {
        SplitMix64(seed)
    }

    /// The state, to store in a checkpoint and resume from with [`SplitMix64::new`].
    pub fn state(&self) -> u64 {
        self.0
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(GOLDEN_GAMMA);
        mix(self.0)
    }

    /// Uniform in [0, 1) with 53 bits.
    pub fn next_f64(&mut self) -> f64 {
        unit_f64(self.next_u64())
    }

    /// What the `i`-th [`next_f64`](Self::next_f64) call from here (0-based) returns, without
    /// moving: the state is a counter, so a long stream (a dropout mask) can be drawn across
    /// cores, the same values as one call after another.
    pub fn f64_at(&self, i: u64) -> f64 {
        unit_f64(mix(self.0.wrapping_add(GOLDEN_GAMMA.wrapping_mul(i + 1))))
    }

    /// Moves past `n` values, as `n` calls would.
    pub fn skip(&mut self, n: u64) {
        self.0 = self.0.wrapping_add(GOLDEN_GAMMA.wrapping_mul(n));
    }

    /// Standard normal (Box–Muller).
    pub fn next_normal(&mut self) -> f64 {
        let u1 = self.next_f64().max(f64::MIN_POSITIVE);
        let u2 = self.next_f64();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    /// A number in `0..n` by multiply-shift; the bias (n / 2^64) is far below anything a
    /// shuffle could notice.
    pub fn below(&mut self, n: usize) -> usize {
        ((u128::from(self.next_u64()) * n as u128) >> 64) as usize
    }

    /// Fisher–Yates.
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i + 1);
            items.swap(i, j);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_drawn_out_of_order_are_the_stream_in_order() {
        let start = SplitMix64::new(41);
        let mut sequential = start;
        let drawn: Vec<f64> = (0..100).map(|_| sequential.next_f64()).collect();
        let indexed: Vec<f64> = (0..100).rev().map(|i| start.f64_at(i)).collect();
        assert_eq!(drawn, indexed.into_iter().rev().collect::<Vec<_>>());
        let mut skipped = start;
        skipped.skip(100);
        assert_eq!(skipped, sequential);
    }

    #[test]
    fn matches_the_splitmix64_reference() {
        // First outputs for seed 0 of Vigna's reference splitmix64.c: the generator is pinned.
        let mut rng = SplitMix64::new(0);
        assert_eq!(
            [rng.next_u64(), rng.next_u64(), rng.next_u64()],
            [0xE220_A839_7B1D_CDAF, 0x6E78_9E6A_A1B9_65F4, 0x06C4_5D18_8009_454F]
        );
    }

    #[test]
    fn shuffle_is_a_permutation() {
        let mut rng = SplitMix64::new(123);
        let mut items: Vec<usize> = (0..1000).collect();
        rng.shuffle(&mut items);
        assert_ne!(items, (0..1000).collect::<Vec<_>>());
        items.sort_unstable();
        assert_eq!(items, (0..1000).collect::<Vec<_>>());
    }

    #[test]
    fn normals_have_unit_spread() {
        let mut rng = SplitMix64::new(5);
        let xs: Vec<f64> = (0..20_000).map(|_| rng.next_normal()).collect();
        let mean = xs.iter().sum::<f64>() / xs.len() as f64;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / xs.len() as f64;
        assert!(mean.abs() < 0.03 && (var - 1.0).abs() < 0.05, "mean {mean}, var {var}");
    }
}
