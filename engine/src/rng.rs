//! Seeded randomness. Every random choice in the engine (splits, shuffles, attack positions)
//! goes through a ChaCha generator seeded from the user's seed, so runs are reproducible on any
//! platform; libtorch's own generator is seeded separately with `tch::manual_seed`.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

pub type Rng = ChaCha8Rng;

/// A generator for one purpose, derived from the user's seed and a stream name so that adding a
/// random draw in one place does not shift every other draw.
pub fn rng_for(seed: u64, stream: &str) -> Rng {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in stream.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x100_0000_01b3);
    }
    ChaCha8Rng::seed_from_u64(seed ^ h)
}
