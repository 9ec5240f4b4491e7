//! Row-wise L2 normalisation, `torch.nn.functional.normalize(x, p=2, dim=1)`.

use tch::Tensor;

pub fn l2_normalize_rows(x: &Tensor) -> Tensor {
    x / x.norm_scalaropt_dim(2.0, [1i64].as_slice(), true).clamp_min(1e-12)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::test_support::assert_close;

    #[test]
    fn rows_get_unit_length_and_zero_rows_stay_zero() {
        let x = Tensor::from_slice(&[3.0f32, 4.0, 0.0, 0.0]).view([2, 2]);
        assert_close(&l2_normalize_rows(&x), &[0.6, 0.8, 0.0, 0.0], 1e-7);
    }
}
