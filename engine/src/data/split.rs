//! Seeded train/test splits.

use rand::seq::SliceRandom;

use crate::rng::rng_for;

/// A random split of `0..n` into `round(n * train_fraction)` training indices and the rest, both
/// in shuffled order (so batches cut from them mix classes even when a file lists graphs class
/// by class). The same `(n, train_fraction, seed)` always gives the same split. Fractions
/// outside `[0, 1]` are clamped; NaN counts as 0.
pub fn train_test_split(n: usize, train_fraction: f64, seed: u64) -> (Vec<usize>, Vec<usize>) {
    let fraction = if train_fraction.is_nan() { 0.0 } else { train_fraction.clamp(0.0, 1.0) };
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut rng_for(seed, "train-test-split"));
    let n_train = ((n as f64) * fraction).round() as usize;
    let test = order.split_off(n_train.min(n));
    (order, test)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_is_a_seeded_partition() {
        let (train, test) = train_test_split(188, 0.8, 10);
        assert_eq!(train.len(), 150);
        assert_eq!(test.len(), 38);
        let mut all: Vec<usize> = train.iter().chain(&test).copied().collect();
        all.sort_unstable();
        assert_eq!(all, (0..188).collect::<Vec<_>>());
        assert_eq!(train_test_split(188, 0.8, 10), (train.clone(), test.clone()));
        assert_ne!(train_test_split(188, 0.8, 11).0, train);
        // Shuffled, not sorted: batches cut from it should mix the file's order.
        assert!(train.windows(2).any(|w| w[0] > w[1]));
    }

    #[test]
    fn extreme_fractions_are_clamped() {
        assert_eq!(train_test_split(5, 1.5, 1).0.len(), 5);
        assert_eq!(train_test_split(5, -1.0, 1).1.len(), 5);
        assert_eq!(train_test_split(5, f64::NAN, 1).0.len(), 0);
        assert_eq!(train_test_split(0, 0.5, 1), (vec![], vec![]));
    }
}
