//! Gather/scatter primitives for message passing over an edge list. Every model aggregates
//! through these, so one `index_select` and one `index_add` per layer is all a conv costs.

use tch::{Kind, Tensor};

/// Sums the rows of `values` into `num_rows` buckets: row `k` goes to bucket `index[k]`.
/// Buckets that receive nothing are zero.
pub fn scatter_sum(values: &Tensor, index: &Tensor, num_rows: i64) -> Tensor {
    let mut shape = values.size();
    shape[0] = num_rows;
    Tensor::zeros(shape.as_slice(), (values.kind(), values.device())).index_add(0, index, values)
}

/// Softmax of `scores` ([E]) within each group of entries sharing the same `index` value.
///
/// Matches PyTorch Geometric's `softmax`: the group maximum (detached, so it only shifts the
/// exponent for stability) is subtracted and the sum is guarded by 1e-16.
pub fn segment_softmax(scores: &Tensor, index: &Tensor, num_rows: i64) -> Tensor {
    let group_max =
        Tensor::zeros([num_rows], (scores.kind(), scores.device())).index_reduce(0, index, &scores.detach(), "amax", false);
    let exp = (scores - group_max.index_select(0, index)).exp();
    let denominator = scatter_sum(&exp, index, num_rows) + 1e-16;
    exp / denominator.index_select(0, index)
}

/// Softmax of `scores` within groups of equal `index`, each term scaled by its weight before
/// normalising: `w_k exp(s_k) / sum_j w_j exp(s_j)`. At unit weights this is the plain segment
/// softmax; a weight of 0 removes the term from its group exactly.
pub fn weighted_segment_softmax(scores: &Tensor, weights: &Tensor, index: &Tensor, num_rows: i64) -> Tensor {
    let group_max =
        Tensor::zeros([num_rows], (scores.kind(), scores.device())).index_reduce(0, index, &scores.detach(), "amax", false);
    let exp = (scores - group_max.index_select(0, index)).exp() * weights;
    let denominator = scatter_sum(&exp, index, num_rows) + 1e-16;
    exp / denominator.index_select(0, index)
}

/// Number of entries of `index` equal to each of `0..num_rows`, as floats.
pub fn counts(index: &Tensor, num_rows: i64, kind: Kind) -> Tensor {
    let ones = Tensor::ones([index.size()[0]], (kind, index.device()));
    scatter_sum(&ones, index, num_rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::test_support::assert_close;

    #[test]
    fn scatter_sum_adds_rows_into_buckets_and_leaves_empty_ones_zero() {
        let values = Tensor::from_slice(&[1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0]).view([3, 2]);
        let index = Tensor::from_slice(&[2i64, 0, 2]);
        assert_close(&scatter_sum(&values, &index, 4), &[3.0, 4.0, 0.0, 0.0, 6.0, 8.0, 0.0, 0.0], 0.0);
    }

    #[test]
    fn segment_softmax_normalises_within_each_group() {
        let scores = Tensor::from_slice(&[0.0f32, 1.0, 2.0, -300.0, -301.0]);
        let index = Tensor::from_slice(&[0i64, 0, 1, 2, 2]);
        let e = std::f64::consts::E;
        // a group of very negative scores stays well defined because the maximum is subtracted
        assert_close(
            &segment_softmax(&scores, &index, 3),
            &[1.0 / (1.0 + e), e / (1.0 + e), 1.0, e / (e + 1.0), 1.0 / (e + 1.0)],
            1e-6,
        );
    }

    #[test]
    fn counts_counts_occurrences() {
        let index = Tensor::from_slice(&[1i64, 1, 3]);
        assert_close(&counts(&index, 4, Kind::Float), &[0.0, 2.0, 0.0, 1.0], 0.0);
    }
}
