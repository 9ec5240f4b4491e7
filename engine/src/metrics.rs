//! Predictions and the numbers reported about them: accuracy, balanced accuracy, per-class
//! recall, confusion matrices and attack success rate.

use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

use crate::data::batch::GraphBatch;
use crate::data::{FeatureSpec, Graph};
use crate::models::GnnModel;
use crate::{Error, Result};

/// A model's outputs for a set of graphs, in the order of the graphs' dataset indices.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Predictions {
    /// Dataset index of each row.
    pub indices: Vec<usize>,
    pub logits: Vec<Vec<f32>>,
    pub log_probs: Vec<Vec<f32>>,
    pub classes: Vec<usize>,
    /// The graphs' true class indices.
    pub labels: Vec<usize>,
}

/// Runs `model` in evaluation mode over `batches` and returns per-graph outputs sorted by
/// dataset index.
pub fn predict(model: &GnnModel, batches: &[GraphBatch]) -> Result<Predictions> {
    let mut rows: Vec<(usize, Vec<f32>, Vec<f32>, usize)> = Vec::new();
    tch::no_grad(|| -> Result<()> {
        for batch in batches {
            let out = model.forward_t(&batch.input(), false);
            let logits = tensor_rows(&out.logits)?;
            let log_probs = tensor_rows(&out.log_probs)?;
            let labels: Vec<i64> = Vec::<i64>::try_from(batch.labels.to_device(tch::Device::Cpu))?;
            for (((&idx, l), lp), y) in batch.graph_indices.iter().zip(logits).zip(log_probs).zip(labels) {
                rows.push((idx, l, lp, y as usize));
            }
        }
        Ok(())
    })?;
    rows.sort_by_key(|r| r.0);
    let mut p = Predictions {
        indices: Vec::with_capacity(rows.len()),
        logits: Vec::with_capacity(rows.len()),
        log_probs: Vec::with_capacity(rows.len()),
        classes: Vec::with_capacity(rows.len()),
        labels: Vec::with_capacity(rows.len()),
    };
    for (idx, logits, log_probs, label) in rows {
        p.classes.push(argmax(&log_probs));
        p.indices.push(idx);
        p.logits.push(logits);
        p.log_probs.push(log_probs);
        p.labels.push(label);
    }
    Ok(p)
}

/// Evaluation-mode predictions for `graphs` with node features from `features` (which must be
/// as wide as the model's input). `positions[i]` names `graphs[i]` in errors.
pub fn predict_classes(
    model: &GnnModel,
    graphs: &[&Graph],
    positions: &[usize],
    features: &FeatureSpec,
    batch_size: usize,
) -> Result<Vec<usize>> {
    if features.dim() != model.spec().in_features {
        return Err(Error::invalid(format!(
            "features give {} columns but the model expects {}",
            features.dim(),
            model.spec().in_features
        )));
    }
    let mut classes = Vec::with_capacity(graphs.len());
    for (chunk, chunk_positions) in graphs.chunks(batch_size.max(1)).zip(positions.chunks(batch_size.max(1))) {
        let batch = GraphBatch::new(chunk, chunk_positions.to_vec(), features, model.device())?;
        let predicted = tch::no_grad(|| model.forward_t(&batch.input(), false).log_probs.argmax(-1, false).to_kind(Kind::Int64));
        let predicted = Vec::<i64>::try_from(predicted.to_device(tch::Device::Cpu))?;
        classes.extend(predicted.into_iter().map(|c| c as usize));
    }
    Ok(classes)
}

/// The model's own predictions, no defence at inference.
pub fn predict_plain(model: &GnnModel, graphs: &[&Graph], batch_size: usize) -> Result<Vec<usize>> {
    let positions: Vec<usize> = (0..graphs.len()).collect();
    predict_classes(model, graphs, &positions, &model.spec().features, batch_size)
}

fn tensor_rows(t: &Tensor) -> Result<Vec<Vec<f32>>> {
    let t = t.to_device(tch::Device::Cpu).to_kind(Kind::Float).contiguous();
    let cols = t.size()[1] as usize;
    let flat = Vec::<f32>::try_from(t.view([-1]))?;
    Ok(flat.chunks(cols.max(1)).map(<[f32]>::to_vec).collect())
}

fn argmax(row: &[f32]) -> usize {
    // First maximum wins, like torch.argmax; NaN never wins.
    let mut best = 0;
    for (i, &v) in row.iter().enumerate() {
        if v > row[best] || row[best].is_nan() {
            best = i;
        }
    }
    best
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassStats {
    pub class: usize,
    /// Graphs of this class in the evaluated set.
    pub support: usize,
    /// Share of this class's graphs predicted as this class (NaN-free: 0 when support is 0).
    pub recall: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    pub n: usize,
    pub accuracy: f64,
    /// Mean recall over the classes present in the set.
    pub balanced_accuracy: f64,
    pub per_class: Vec<ClassStats>,
    /// `confusion[true][predicted]`.
    pub confusion: Vec<Vec<usize>>,
}

/// Compares predicted classes with true labels.
pub fn evaluate(predicted: &[usize], labels: &[usize], num_classes: usize) -> Evaluation {
    let mut confusion = vec![vec![0usize; num_classes]; num_classes];
    for (&p, &y) in predicted.iter().zip(labels) {
        if y < num_classes && p < num_classes {
            confusion[y][p] += 1;
        }
    }
    let n = predicted.len().min(labels.len());
    let correct: usize = (0..num_classes).map(|c| confusion[c][c]).sum();
    let per_class: Vec<ClassStats> = (0..num_classes)
        .map(|c| {
            let support: usize = confusion[c].iter().sum();
            let recall = if support == 0 { 0.0 } else { confusion[c][c] as f64 / support as f64 };
            ClassStats { class: c, support, recall }
        })
        .collect();
    let present: Vec<&ClassStats> = per_class.iter().filter(|s| s.support > 0).collect();
    let balanced_accuracy =
        if present.is_empty() { 0.0 } else { present.iter().map(|s| s.recall).sum::<f64>() / present.len() as f64 };
    Evaluation { n, accuracy: if n == 0 { 0.0 } else { correct as f64 / n as f64 }, balanced_accuracy, per_class, confusion }
}

/// Attack success rate: the share of triggered graphs whose true label is not `target` that
/// the model assigns to `target`. Returns the rate and the number of graphs it was measured on.
pub fn attack_success_rate(predicted: &[usize], labels: &[usize], target: usize) -> (f64, usize) {
    let (hits, n) = predicted
        .iter()
        .zip(labels)
        .filter(|(_, &y)| y != target)
        .fold((0usize, 0usize), |(h, n), (&p, _)| (h + usize::from(p == target), n + 1));
    (if n == 0 { 0.0 } else { hits as f64 / n as f64 }, n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evaluation_counts_confusion_and_recalls() {
        let predicted = [0, 0, 1, 1, 1, 2];
        let labels = [0, 1, 1, 1, 2, 2];
        let e = evaluate(&predicted, &labels, 3);
        assert_eq!(e.n, 6);
        assert_eq!(e.confusion, vec![vec![1, 0, 0], vec![1, 2, 0], vec![0, 1, 1]]);
        assert!((e.accuracy - 4.0 / 6.0).abs() < 1e-12);
        assert!((e.per_class[1].recall - 2.0 / 3.0).abs() < 1e-12);
        let balanced = (1.0 + 2.0 / 3.0 + 0.5) / 3.0;
        assert!((e.balanced_accuracy - balanced).abs() < 1e-12);
    }

    #[test]
    fn balanced_accuracy_ignores_absent_classes() {
        let e = evaluate(&[1, 1], &[1, 1], 3);
        assert_eq!(e.balanced_accuracy, 1.0);
        assert_eq!(e.per_class[0].support, 0);
    }

    #[test]
    fn attack_success_rate_skips_target_class_graphs() {
        // Graphs already of the target class do not count, whatever they are predicted as.
        let (asr, n) = attack_success_rate(&[1, 1, 0, 1], &[0, 0, 0, 1], 1);
        assert_eq!(n, 3);
        assert!((asr - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(attack_success_rate(&[1], &[1], 1), (0.0, 0));
    }

    #[test]
    fn argmax_takes_first_maximum_and_skips_nan() {
        assert_eq!(argmax(&[0.5, 0.5, 0.1]), 0);
        assert_eq!(argmax(&[f32::NAN, 0.2, 0.3]), 2);
    }
}
