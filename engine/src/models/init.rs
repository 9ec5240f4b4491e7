//! Parameter initialisers matching the PyTorch / PyTorch Geometric defaults, so a freshly built
//! model trains like its PyG counterpart.

use tch::nn::{self, Init};

/// Glorot (Xavier) uniform, PyG's default for GCN/GAT weights: U(-a, a), a = sqrt(6 / (fan_in + fan_out)).
pub fn glorot(fan_in: i64, fan_out: i64) -> Init {
    let a = (6.0 / (fan_in + fan_out) as f64).sqrt();
    Init::Uniform { lo: -a, up: a }
}

/// `torch.nn.Linear`'s default: Kaiming-uniform weight, U(-1/sqrt(fan_in), 1/sqrt(fan_in)) bias.
pub fn torch_linear(p: nn::Path, in_dim: i64, out_dim: i64) -> nn::Linear {
    nn::linear(p, in_dim, out_dim, Default::default())
}

/// A linear map without bias and with Glorot weights, PyG's `Linear(bias=False)` inside GCN/GAT.
pub fn glorot_linear_no_bias(p: nn::Path, in_dim: i64, out_dim: i64) -> nn::Linear {
    nn::linear(p, in_dim, out_dim, nn::LinearConfig { ws_init: glorot(in_dim, out_dim), bs_init: None, bias: false })
}
