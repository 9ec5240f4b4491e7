//! BatchNorm1d with PyTorch's state (`weight`, `bias`, `running_mean`, `running_var`,
//! `num_batches_tracked`) and semantics (momentum 0.1, eps 1e-5, unbiased running variance).

use tch::{nn, Kind, Tensor};

pub const MOMENTUM: f64 = 0.1;
pub const EPS: f64 = 1e-5;

#[derive(Debug)]
pub struct BatchNorm1d {
    pub weight: Tensor,
    pub bias: Tensor,
    pub running_mean: Tensor,
    pub running_var: Tensor,
    /// Kept only so saved files carry PyTorch's full state; with a fixed momentum it never
    /// enters the computation.
    pub num_batches_tracked: Tensor,
}

impl BatchNorm1d {
    pub fn new(p: &nn::Path, dim: i64) -> BatchNorm1d {
        BatchNorm1d {
            weight: p.ones("weight", &[dim]),
            bias: p.zeros("bias", &[dim]),
            running_mean: p.zeros_no_train("running_mean", &[dim]),
            running_var: p.ones_no_train("running_var", &[dim]),
            num_batches_tracked: p.add("num_batches_tracked", Tensor::zeros([], (Kind::Int64, p.device())), false),
        }
    }

    /// Train mode normalises with the batch statistics and updates the running ones in place;
    /// eval mode uses the running statistics.
    ///
    /// PyTorch refuses train mode on a single row (its variance is undefined and would poison
    /// `running_var` with NaN); here such a batch is normalised with the running statistics.
    pub fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        let train = train && x.size()[0] > 1;
        if train {
            tch::no_grad(|| {
                let _ = self.num_batches_tracked.shallow_clone().g_add_scalar_(1);
            });
        }
        x.batch_norm(
            Some(&self.weight),
            Some(&self.bias),
            Some(&self.running_mean),
            Some(&self.running_var),
            train,
            MOMENTUM,
            EPS,
            true,
        )
    }
}

/// The five tensors PyTorch saves for a `BatchNorm1d(dim)` named `prefix`.
pub fn expected_tensors(prefix: &str, dim: usize) -> Vec<super::weights::ExpectedTensor> {
    use super::weights::ExpectedTensor as T;
    vec![
        T::param(&format!("{prefix}.weight"), &[dim]),
        T::param(&format!("{prefix}.bias"), &[dim]),
        T::param(&format!("{prefix}.running_mean"), &[dim]),
        T::running_var(&format!("{prefix}.running_var"), &[dim]),
        T::counter(&format!("{prefix}.num_batches_tracked")),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::test_support::{assert_close, set};
    use tch::Device;

    #[test]
    fn train_mode_uses_batch_statistics_and_updates_running_ones() {
        let vs = nn::VarStore::new(Device::Cpu);
        let bn = BatchNorm1d::new(&(vs.root() / "bn1"), 1);
        set(&bn.weight, &[2.0]);
        set(&bn.bias, &[0.5]);
        let x = Tensor::from_slice(&[1.0f32, 3.0]).view([2, 1]);
        // batch mean 2, biased variance 1 (for normalising), unbiased variance 2 (for running_var)
        let scale = 2.0 / (1.0 + EPS).sqrt();
        assert_close(&bn.forward_t(&x, true), &[0.5 - scale, 0.5 + scale], 1e-6);
        assert_close(&bn.running_mean, &[0.9 * 0.0 + 0.1 * 2.0], 1e-7);
        assert_close(&bn.running_var, &[0.9 * 1.0 + 0.1 * 2.0], 1e-7);
        assert_eq!(bn.num_batches_tracked.int64_value(&[]), 1);
    }

    #[test]
    fn eval_mode_uses_running_statistics_and_changes_nothing() {
        let vs = nn::VarStore::new(Device::Cpu);
        let bn = BatchNorm1d::new(&(vs.root() / "bn1"), 1);
        set(&bn.running_mean, &[1.0]);
        set(&bn.running_var, &[4.0]);
        let x = Tensor::from_slice(&[1.0f32, 5.0]).view([2, 1]);
        assert_close(&bn.forward_t(&x, false), &[0.0, 4.0 / (4.0 + EPS).sqrt()], 1e-6);
        assert_close(&bn.running_mean, &[1.0], 0.0);
        assert_close(&bn.running_var, &[4.0], 0.0);
        assert_eq!(bn.num_batches_tracked.int64_value(&[]), 0);
    }

    #[test]
    fn a_single_row_in_train_mode_leaves_the_running_statistics_finite() {
        let vs = nn::VarStore::new(Device::Cpu);
        let bn = BatchNorm1d::new(&(vs.root() / "bn1"), 2);
        let out = bn.forward_t(&Tensor::from_slice(&[3.0f32, -1.0]).view([1, 2]), true);
        assert_close(&out, &[3.0 / (1.0 + EPS).sqrt(), -1.0 / (1.0 + EPS).sqrt()], 1e-6);
        assert_close(&bn.running_var, &[1.0, 1.0], 0.0);
    }
}
