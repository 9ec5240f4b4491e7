//! PyTorch Geometric's `MLP` (`torch_geometric.nn.models.MLP`): per layer Linear -> BatchNorm ->
//! ReLU (ReLU first with `act_first`), the last layer a plain Linear unless `plain_last` is
//! false. Used as GIN's conv network and as a classifier head. Dropout is the identity at
//! inference and is not applied.
//!
//! PyG names: `lins.{i}.weight|bias`, `norms.{i}.module.*` (PyG's `BatchNorm` wraps a
//! `torch.nn.BatchNorm1d` named `module`; without norm the `Identity` layers have no tensors).

use tch::{nn, nn::Module, Tensor};

use super::batch_norm::{self, BatchNorm1d};
use super::pyg_spec::Norm;
use super::weights::ExpectedTensor;

/// ReLU and the optional BatchNorm in PyG's order: norm then ReLU, or ReLU then norm.
pub fn norm_act(x: &Tensor, norm: Option<&BatchNorm1d>, act_first: bool, train: bool) -> Tensor {
    let normed = |t: Tensor| match norm {
        Some(bn) => bn.forward_t(&t, train),
        None => t,
    };
    if act_first {
        normed(x.relu())
    } else {
        normed(x.shallow_clone()).relu()
    }
}

/// A PyG BatchNorm (`{prefix}.module.*`) of width `dim`, when `norm` asks for one.
pub fn pyg_batch_norm(p: &nn::Path, norm: Option<Norm>, dim: i64) -> Option<BatchNorm1d> {
    norm.map(|Norm::BatchNorm| BatchNorm1d::new(&(p / "module"), dim))
}

pub fn pyg_batch_norm_tensors(prefix: &str, norm: Option<Norm>, dim: usize) -> Vec<ExpectedTensor> {
    match norm {
        Some(Norm::BatchNorm) => batch_norm::expected_tensors(&format!("{prefix}.module"), dim),
        None => Vec::new(),
    }
}

/// The layout of one `MLP`.
#[derive(Debug, Clone, Copy)]
pub struct MlpLayout<'a> {
    pub channels: &'a [usize],
    pub norm: Option<Norm>,
    pub plain_last: bool,
    pub act_first: bool,
    pub bias: bool,
}

impl MlpLayout<'_> {
    fn layers(&self) -> usize {
        self.channels.len() - 1
    }

    /// Layers followed by norm and ReLU: all but the last when it is plain.
    fn activated(&self) -> usize {
        if self.plain_last {
            self.layers() - 1
        } else {
            self.layers()
        }
    }

    pub fn expected_tensors(&self, prefix: &str) -> Vec<ExpectedTensor> {
        let mut out = Vec::new();
        for i in 0..self.layers() {
            let (d_in, d_out) = (self.channels[i], self.channels[i + 1]);
            out.push(ExpectedTensor::param(&format!("{prefix}.lins.{i}.weight"), &[d_out, d_in]));
            if self.bias {
                out.push(ExpectedTensor::param(&format!("{prefix}.lins.{i}.bias"), &[d_out]));
            }
        }
        for i in 0..self.activated() {
            out.extend(pyg_batch_norm_tensors(&format!("{prefix}.norms.{i}"), self.norm, self.channels[i + 1]));
        }
        out
    }
}

#[derive(Debug)]
pub struct Mlp {
    pub lins: Vec<nn::Linear>,
    /// One entry per activated layer; `None` where the spec has no norm.
    pub norms: Vec<Option<BatchNorm1d>>,
    pub act_first: bool,
}

impl Mlp {
    /// An MLP at `p` with `torch.nn.Linear`'s default initialisation (PyG's `Linear` draws the
    /// same Kaiming-uniform weights).
    pub fn new(p: &nn::Path, layout: MlpLayout<'_>) -> Mlp {
        let lins = (0..layout.layers())
            .map(|i| {
                let (d_in, d_out) = (layout.channels[i] as i64, layout.channels[i + 1] as i64);
                let config = nn::LinearConfig { bias: layout.bias, ..Default::default() };
                nn::linear(p / "lins" / i, d_in, d_out, config)
            })
            .collect();
        let norms = (0..layout.activated())
            .map(|i| pyg_batch_norm(&(p / "norms" / i), layout.norm, layout.channels[i + 1] as i64))
            .collect();
        Mlp { lins, norms, act_first: layout.act_first }
    }

    pub fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        let mut h = x.shallow_clone();
        for (i, lin) in self.lins.iter().enumerate() {
            h = lin.forward(&h);
            if let Some(norm) = self.norms.get(i) {
                h = norm_act(&h, norm.as_ref(), self.act_first, train);
            }
        }
        h
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::test_support::{assert_close, set};
    use tch::Device;

    fn layout(plain_last: bool, norm: Option<Norm>) -> MlpLayout<'static> {
        MlpLayout { channels: &[1, 1, 1], norm, plain_last, act_first: false, bias: true }
    }

    #[test]
    fn the_last_layer_is_plain_unless_asked_otherwise() {
        let vs = nn::VarStore::new(Device::Cpu);
        for (plain_last, expected) in [(true, -3.0), (false, 0.0)] {
            let mlp = Mlp::new(&(vs.root() / format!("m{plain_last}")), layout(plain_last, None));
            set(&mlp.lins[0].ws, &[2.0]);
            set(mlp.lins[0].bs.as_ref().unwrap(), &[1.0]);
            set(&mlp.lins[1].ws, &[-1.0]);
            set(mlp.lins[1].bs.as_ref().unwrap(), &[0.0]);
            // relu(2 * 1 + 1) = 3, then -3, then relu(-3) = 0 when the last layer is activated
            assert_close(&mlp.forward_t(&Tensor::from_slice(&[1.0f32]).view([1, 1]), false), &[expected], 1e-6);
        }
    }

    #[test]
    fn tensor_names_follow_pyg() {
        let names: Vec<String> =
            layout(true, Some(Norm::BatchNorm)).expected_tensors("head").into_iter().map(|t| t.name).collect();
        assert_eq!(
            names,
            [
                "head.lins.0.weight",
                "head.lins.0.bias",
                "head.lins.1.weight",
                "head.lins.1.bias",
                "head.norms.0.module.weight",
                "head.norms.0.module.bias",
                "head.norms.0.module.running_mean",
                "head.norms.0.module.running_var",
                "head.norms.0.module.num_batches_tracked",
            ]
        );
        let vs = nn::VarStore::new(Device::Cpu);
        let _ = Mlp::new(&(vs.root() / "head"), layout(true, Some(Norm::BatchNorm)));
        let mut built: Vec<String> = vs.variables().into_keys().collect();
        built.sort();
        let mut expected = names.clone();
        expected.sort();
        assert_eq!(built, expected);
    }
}
