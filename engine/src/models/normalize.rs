//! Row-wise L2 normalisation, `torch.nn.functional.normalize(x, p=2, dim=1)`.

use tch::Tensor;

pub fn l2_normalize_rows(x: &Tensor) -> Tensor {
    x / x.norm_scalaropt_dim(2.0, [1i64].as_slice(), true).clamp_min(1e-12)
}
