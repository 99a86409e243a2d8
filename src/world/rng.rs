//! Per-row random streams: every row of every table draws from its own
//! ChaCha8 stream, seeded by BLAKE3 of `(world seed, table, row)`. A row's
//! content therefore depends only on the seed and its own coordinates, not on
//! how many rows other tables have, nor on threads.

use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};

/// Domain separator of the seed derivation (bump to change every world).
const DOMAIN: &[u8] = b"scir.world.row.v1";

/// A random stream for one row.
pub struct RowRng(ChaCha8Rng);

impl RowRng {
    /// The stream of row `row` of table `table` under world seed `seed`.
    pub fn new(seed: u64, table: &str, row: u64) -> RowRng {
        let mut hasher = blake3::Hasher::new();
        hasher.update(DOMAIN);
        hasher.update(&seed.to_le_bytes());
        hasher.update(&(table.len() as u64).to_le_bytes());
        hasher.update(table.as_bytes());
        hasher.update(&row.to_le_bytes());
        RowRng(ChaCha8Rng::from_seed(*hasher.finalize().as_bytes()))
    }

    /// Uniform integer in `0..n` (unbiased; `n` ≥ 1).
    pub fn below(&mut self, n: usize) -> usize {
        let n = n.max(1) as u64;
        // Reject the top partial block so every residue is equally likely.
        let zone = u64::MAX - (u64::MAX % n);
        loop {
            let x = self.0.next_u64();
            if x < zone {
                return (x % n) as usize;
            }
        }
    }

    /// Uniform integer in `lo..=hi`.
    pub fn between(&mut self, lo: usize, hi: usize) -> usize {
        lo + self.below(hi - lo + 1)
    }

    /// Uniform float in `[0, 1)` with 53 random bits.
    pub fn unit(&mut self) -> f64 {
        const MANTISSA_BITS: u32 = 53;
        (self.0.next_u64() >> (64 - MANTISSA_BITS)) as f64 / (1u64 << MANTISSA_BITS) as f64
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    /// A uniformly chosen element of a non-empty slice.
    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }
}
