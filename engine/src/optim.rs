//! Adam over one flat parameter buffer.
//!
//! libtorch's C++ Adam updates parameters one at a time, about ten small kernels each; a GIN has
//! 30-odd parameter tensors, so an optimiser step costs some 300 kernel launches, comparable to
//! the whole forward pass on small graphs. Here every trainable parameter becomes a view into a
//! single buffer, and a step is a dozen kernels over that buffer, whatever the parameter count
//! (on the CPU one loop over it). Callers that compute gradients themselves (the CPU GIN trainer)
//! write them straight into a buffer of the same layout. The arithmetic is PyTorch's Adam (L2 weight decay added to the gradient, bias-corrected
//! moments, eps added after the square root).

use tch::{nn, Kind, Tensor};

use crate::models::host::{f32s, f32s_mut};
use crate::{Error, Result};

pub struct FlatAdam {
    params: Vec<Tensor>,
    /// Where each of `params` lives in `flat`: (offset, length).
    slots: Vec<(i64, i64)>,
    flat: Tensor,
    exp_avg: Tensor,
    exp_avg_sq: Tensor,
    step: i32,
    lr: f64,
    beta1: f64,
    beta2: f64,
    eps: f64,
    weight_decay: f64,
}

impl FlatAdam {
    /// Takes over every trainable variable of `vs`: afterwards each is a view into one buffer.
    pub fn new(vs: &nn::VarStore, lr: f64, weight_decay: f64) -> Result<FlatAdam> {
        FlatAdam::over(vs.trainable_variables(), lr, weight_decay)
    }

    /// Takes over `params` (variables that require gradients), as [`FlatAdam::new`] does a
    /// whole store's: for training part of a model.
    pub fn over(mut params: Vec<Tensor>, lr: f64, weight_decay: f64) -> Result<FlatAdam> {
        if params.is_empty() {
            return Err(Error::invalid("the model has no trainable parameters"));
        }
        let total: i64 = params.iter().map(Tensor::numel).sum::<usize>() as i64;
        let device = params[0].device();
        if params.iter().any(|p| p.kind() != Kind::Float || p.device() != device) {
            return Err(Error::invalid("flat Adam needs f32 parameters on one device"));
        }
        let flat = Tensor::zeros([total], (Kind::Float, device));
        let mut slots = Vec::with_capacity(params.len());
        tch::no_grad(|| {
            let mut offset = 0i64;
            for p in params.iter_mut() {
                let n = p.numel() as i64;
                let mut view = flat.narrow(0, offset, n);
                view.copy_(&p.reshape([-1]));
                p.set_data(&view.view(p.size().as_slice()));
                slots.push((offset, n));
                offset += n;
            }
        });
        Ok(FlatAdam {
            params,
            slots,
            exp_avg: Tensor::zeros([total], (Kind::Float, device)),
            exp_avg_sq: Tensor::zeros([total], (Kind::Float, device)),
            flat,
            step: 0,
            lr,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay,
        })
    }

    pub fn set_lr(&mut self, lr: f64) {
        self.lr = lr;
    }

    /// Length of the flat buffer: every trainable parameter's elements.
    pub fn len(&self) -> i64 {
        self.slots.iter().map(|&(_, n)| n).sum()
    }

    /// Number of parameters trained.
    pub fn slot_count(&self) -> usize {
        self.slots.len()
    }

    /// The (offset, length) of `param` in the flat buffer, for callers that compute gradients
    /// themselves and hand them over whole with [`FlatAdam::step_with_flat_grad`]. `None` if
    /// `param` is not one of the trained parameters (matched by storage, so any handle on the
    /// variable works).
    pub fn slot(&self, param: &Tensor) -> Option<(i64, i64)> {
        let ptr = param.data_ptr();
        self.params.iter().zip(&self.slots).find(|(p, _)| p.data_ptr() == ptr).map(|(_, &s)| s)
    }

    /// A copy of every trained parameter's current values, in one tensor.
    pub fn snapshot(&self) -> Tensor {
        tch::no_grad(|| self.flat.copy())
    }

    /// Overwrites `snapshot` (from [`FlatAdam::snapshot`]) with the current values.
    pub fn snapshot_into(&self, snapshot: &mut Tensor) {
        tch::no_grad(|| snapshot.copy_(&self.flat));
    }

    /// Puts the trained parameters back to `snapshot`'s values (the Adam moments stay).
    pub fn restore(&mut self, snapshot: &Tensor) {
        tch::no_grad(|| self.flat.copy_(snapshot));
    }

    /// Back-propagates `loss` and takes one Adam step.
    ///
    /// The gradients come back from the autograd engine as values rather than being accumulated
    /// into each parameter's `.grad`, which saves zeroing and reading 30-odd gradient tensors
    /// every step; `.grad` stays untouched.
    pub fn backward_step(&mut self, loss: &Tensor) {
        let grads = Tensor::run_backward(&[loss], &self.params, false, false);
        self.step(grads);
    }

    /// One Adam step from a gradient laid out like the flat buffer (see [`FlatAdam::slot`]).
    pub fn step_with_flat_grad(&mut self, grad: &Tensor) {
        assert_eq!(grad.size(), [self.len()], "flat gradient of the wrong length");
        let (start, end) = (grad.data_ptr() as usize, grad.data_ptr() as usize + 4 * grad.numel());
        for own in [&self.flat, &self.exp_avg, &self.exp_avg_sq] {
            let own_start = own.data_ptr() as usize;
            let own_end = own_start + 4 * own.numel();
            assert!(end <= own_start || start >= own_end, "the gradient overlaps the optimizer's buffers");
        }
        tch::no_grad(|| self.update(grad.shallow_clone()));
    }

    fn step(&mut self, grads: Vec<Tensor>) {
        tch::no_grad(|| {
            let flat: Vec<Tensor> = grads
                .into_iter()
                .zip(&self.params)
                .map(|(g, p)| {
                    if g.defined() {
                        g.reshape([-1])
                    } else {
                        // A parameter the loss does not reach.
                        Tensor::zeros([p.numel() as i64], (Kind::Float, p.device()))
                    }
                })
                .collect();
            self.update(Tensor::cat(&flat, 0));
        });
    }

    fn update(&mut self, mut grad: Tensor) {
        self.step += 1;
        if self.flat.device() == tch::Device::Cpu {
            self.update_on_host(&grad);
            return;
        }
        if self.weight_decay != 0.0 {
            grad += &self.flat * self.weight_decay;
        }
        let bias1 = 1.0 - self.beta1.powi(self.step);
        let bias2 = 1.0 - self.beta2.powi(self.step);
        // m += (1 - beta1) (g - m), v = beta2 v + (1 - beta2) g^2, as PyTorch's Adam.
        let _ = self.exp_avg.lerp_(&grad, 1.0 - self.beta1);
        let _ = self.exp_avg_sq.g_mul_scalar_(self.beta2).addcmul_(&(&grad * (1.0 - self.beta2)), &grad);
        let denom = (self.exp_avg_sq.sqrt() / bias2.sqrt()) + self.eps;
        let _ = self.flat.addcdiv_(&(&self.exp_avg * (-self.lr / bias1)), &denom);
    }

    /// The same update as one pass over the four buffers on the CPU: the kernel sequence above
    /// reads and writes them a dozen times, each pass a separate libtorch op.
    fn update_on_host(&mut self, grad: &Tensor) {
        let grad = grad.contiguous();
        let bias1 = 1.0 - self.beta1.powi(self.step);
        let bias2 = 1.0 - self.beta2.powi(self.step);
        let (beta1, beta2, eps) = (self.beta1 as f32, self.beta2 as f32, self.eps as f32);
        let weight_decay = self.weight_decay as f32;
        let step_size = (-self.lr / bias1) as f32;
        let bias2_sqrt = bias2.sqrt() as f32;
        // SAFETY: `flat`, the two moments and `grad` are four separate allocations (a gradient
        // passed in is the caller's own buffer, not a view of `flat`), and nothing else touches
        // them during the loop.
        let (param, m, v, g) =
            unsafe { (f32s_mut(&self.flat), f32s_mut(&self.exp_avg), f32s_mut(&self.exp_avg_sq), f32s(&grad)) };
        for (((p, m), v), &g) in param.iter_mut().zip(m).zip(v).zip(g) {
            let g = if weight_decay != 0.0 { g + *p * weight_decay } else { g };
            *m += (1.0 - beta1) * (g - *m);
            *v = *v * beta2 + (1.0 - beta2) * g * g;
            *p += step_size * *m / (v.sqrt() / bias2_sqrt + eps);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::nn::{Module, OptimizerConfig};
    use tch::Device;

    fn model(vs: &nn::VarStore) -> nn::Sequential {
        nn::seq().add(nn::linear(vs.root() / "a", 3, 4, Default::default())).add_fn(|x| x.tanh()).add(nn::linear(
            vs.root() / "b",
            4,
            2,
            Default::default(),
        ))
    }

    #[test]
    fn matches_libtorch_adam_step_for_step() {
        let _torch_seed = crate::rng::seed_torch(1);
        let vs_ref = nn::VarStore::new(Device::Cpu);
        let net_ref = model(&vs_ref);
        let mut vs_flat = nn::VarStore::new(Device::Cpu);
        let net_flat = model(&vs_flat);
        vs_flat.copy(&vs_ref).unwrap();
        let mut reference = nn::Adam { wd: 0.01, ..Default::default() }.build(&vs_ref, 0.05).unwrap();
        let mut flat = FlatAdam::new(&vs_flat, 0.05, 0.01).unwrap();
        let x = Tensor::randn([8, 3], (Kind::Float, Device::Cpu));
        let y = Tensor::randn([8, 2], (Kind::Float, Device::Cpu));
        for _ in 0..25 {
            reference.backward_step(&net_ref.forward(&x).mse_loss(&y, tch::Reduction::Mean));
            flat.backward_step(&net_flat.forward(&x).mse_loss(&y, tch::Reduction::Mean));
        }
        let (a, b) = (vs_ref.variables(), vs_flat.variables());
        for (name, t) in &a {
            let diff = (t - &b[name]).abs().max().double_value(&[]);
            assert!(diff < 1e-5, "{name}: {diff}");
        }
        // The parameters really moved.
        let start = nn::VarStore::new(Device::Cpu);
        let _ = model(&start);
        assert!(a.values().any(|t| t.abs().sum(Kind::Float).double_value(&[]) > 0.0));
    }

    #[test]
    fn a_restored_snapshot_gives_the_model_back_its_weights_then() {
        let _torch_seed = crate::rng::seed_torch(2);
        let vs = nn::VarStore::new(Device::Cpu);
        let net = model(&vs);
        let mut flat = FlatAdam::new(&vs, 0.1, 0.0).unwrap();
        let x = Tensor::randn([8, 3], (Kind::Float, Device::Cpu));
        let y = Tensor::randn([8, 2], (Kind::Float, Device::Cpu));
        flat.backward_step(&net.forward(&x).mse_loss(&y, tch::Reduction::Mean));
        let kept = tch::no_grad(|| net.forward(&x));
        let mut snapshot = flat.snapshot();
        flat.backward_step(&net.forward(&x).mse_loss(&y, tch::Reduction::Mean));
        flat.snapshot_into(&mut snapshot);
        let kept_later = tch::no_grad(|| net.forward(&x));
        for _ in 0..3 {
            flat.backward_step(&net.forward(&x).mse_loss(&y, tch::Reduction::Mean));
        }
        let moved = tch::no_grad(|| net.forward(&x));
        assert!((&moved - &kept_later).abs().max().double_value(&[]) > 1e-4, "the steps moved the model");
        assert!((&kept - &kept_later).abs().max().double_value(&[]) > 1e-4, "the snapshot was overwritten");
        flat.restore(&snapshot);
        let restored = tch::no_grad(|| net.forward(&x));
        assert_eq!((restored - kept_later).abs().max().double_value(&[]), 0.0);
    }

    #[test]
    fn parameters_stay_usable_after_the_takeover() {
        let vs = nn::VarStore::new(Device::Cpu);
        let net = model(&vs);
        let x = Tensor::randn([2, 3], (Kind::Float, Device::Cpu));
        let before = net.forward(&x);
        let _flat = FlatAdam::new(&vs, 0.1, 0.0).unwrap();
        let after = net.forward(&x);
        assert_eq!((before - after).abs().max().double_value(&[]), 0.0);
    }
}
