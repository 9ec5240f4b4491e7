//! The robust mode's loss terms, each on logits divided by the model's own logit scale.

use tch::{Kind, Tensor};

use super::{forward, UnlearnConfig};
use crate::explain::gradcam::heat_maps;
use crate::models::GnnModel;
use crate::montage::MontageBatch;
use crate::rng::Rng;

/// Class weights inversely proportional to class frequency in `labels` (classes absent get 0).
pub(super) fn class_weights(labels: &[usize], num_classes: usize) -> Vec<f64> {
    let mut counts = vec![0usize; num_classes];
    labels.iter().for_each(|&l| counts[l] += 1);
    let present = counts.iter().filter(|&&c| c > 0).count().max(1) as f64;
    counts.iter().map(|&c| if c == 0 { 0.0 } else { labels.len() as f64 / (present * c as f64) }).collect()
}

/// The robust mode's teacher term: KL(teacher || student) on clean graphs, averaged over graphs.
///
/// The published loss compares raw logits, whose scale varies by orders of magnitude between
/// models (sum pooling over one-hot degrees: mean |logit| 3 on a bitcoin GIN, 78 on a
/// Fingerprint GIN with outliers above 10,000). A logit MSE then drowns the cross-entropy terms
/// and its gradient spikes (losses of 8,800 in one epoch on bitcoin, after which the model
/// collapsed to the majority class); the divergence between the two predictive distributions
/// asks the same thing, stay with the teacher on clean graphs, at one scale for every model.
pub(super) fn teacher_divergence(student_log_probs: &Tensor, teacher_log_probs: &Tensor) -> Tensor {
    (teacher_log_probs.exp() * (teacher_log_probs - student_log_probs))
        .sum_dim_intlist([1i64].as_slice(), false, Kind::Float)
        .mean(Kind::Float)
}

/// The mixup term: every row of `rows` (clean unlearning graphs of the batch) is mixed with a
/// random graph of the whole set, embedding and teacher probabilities alike, and the head's
/// answer to the mixed embedding is compared with the mixed probabilities (cross-entropy
/// against soft targets, on logits divided by `scale` like every robust term).
pub(super) fn mixup_divergence(
    model: &GnnModel,
    embedding: &Tensor,
    rows: &Tensor,
    teacher_probs: &Tensor,
    scale: f64,
    rng: &mut impl rand::Rng,
) -> Tensor {
    let device = embedding.device();
    let count = rows.size()[0];
    let graphs = embedding.size()[0];
    let partners: Vec<i64> = (0..count).map(|_| rng.gen_range(0..graphs)).collect();
    let weights: Vec<f32> = (0..count).map(|_| rng.gen::<f32>()).collect();
    let partners = Tensor::from_slice(&partners).to_device(device);
    let weights = Tensor::from_slice(&weights).to_device(device).unsqueeze(1);
    let mix = |t: &Tensor| t.index_select(0, rows) * &weights + t.index_select(0, &partners) * (1.0 - &weights);
    let log_probs = (model.head(&mix(embedding)) / scale).log_softmax(-1, Kind::Float);
    let weighted: Tensor = mix(teacher_probs) * log_probs;
    -weighted.sum_dim_intlist([1i64].as_slice(), false, Kind::Float).mean(Kind::Float)
}

/// The logit scale robust mode divides by: the median margin between the top two logits on
/// the clean graphs, at least 1.
///
/// A sum-pooled GIN on one-hot degrees has logit margins in the hundreds (AIDS) to thousands
/// (Fingerprint), and a backdoored model is at least as sure of a triggered graph. Unscaled, the
/// first epochs' cross-entropy of triggered copies is 200-1,300 per graph, outweighs the teacher
/// term by as much, and the head moves far enough to lose a class's clean recall within two or
/// three epochs (the collapse guard then rolled 5 of 15 AIDS runs back before the backdoor was
/// gone). Divided by the model's own scale, every term is of order one for every model; the
/// argmax, and so every prediction, is unchanged.
pub(super) fn logit_scale(clean_logits: &Tensor) -> f64 {
    let num_classes = clean_logits.size()[1];
    if num_classes < 2 || clean_logits.size()[0] == 0 {
        return 1.0;
    }
    let (top, _) = clean_logits.topk(2, 1, true, true);
    let margins = Vec::<f32>::try_from((top.select(1, 0) - top.select(1, 1)).to_device(tch::Device::Cpu)).unwrap_or_default();
    let mut margins: Vec<f32> = margins.into_iter().filter(|m| m.is_finite()).collect();
    if margins.is_empty() {
        return 1.0;
    }
    margins.sort_by(f32::total_cmp);
    f64::from(margins[margins.len() / 2]).max(1.0)
}

/// Weighted mean negative log-likelihood.
pub(super) fn weighted_nll(log_probs: &Tensor, labels: &Tensor, weights: &Tensor) -> Tensor {
    let nll = -log_probs.gather(1, &labels.unsqueeze(1), false).squeeze_dim(1);
    (nll * weights).sum(Kind::Float) / weights.sum(Kind::Float).clamp_min(1e-8)
}

/// What the robust loss holds fixed for a whole run.
pub(super) struct RobustTerms<'a> {
    pub config: &'a UnlearnConfig,
    pub target: usize,
    /// The model's logit scale ([`logit_scale`]): every term divides logits by it.
    pub scale: f64,
    /// Per class, inverse frequency in the unlearning sample ([`class_weights`]).
    pub class_w: Vec<f64>,
    /// The frozen teacher's scaled log-probabilities and probabilities on the clean
    /// unlearning graphs, one row per graph.
    pub teacher_scaled: &'a Tensor,
    pub teacher_probs: &'a Tensor,
    /// Its own stream, so the mixup weight does not move the placements.
    pub mixup_rng: Rng,
}

/// One robust step's outputs: the triggered copies' logits, and the whole clean unlearning
/// sample's logits and pooled embeddings (one row per graph); `rows` maps each copy to its
/// sample graph, whose label is in `labels` (and `label_tensor`).
pub(super) struct RobustStep<'a> {
    pub triggered_logits: Tensor,
    pub sample_logits: Tensor,
    pub sample_embedding: Tensor,
    pub rows: Tensor,
    pub labels: &'a [usize],
    pub label_tensor: &'a Tensor,
}

impl RobustTerms<'_> {
    /// The robust loss of one step: the teacher's KL on the copies' clean graphs, cross-entropy
    /// of the triggered copies (non-target graphs weighted up) and of their clean graphs, then
    /// the mixup term where its weight is positive.
    pub fn step_loss(&mut self, model: &GnnModel, step: &RobustStep) -> Tensor {
        let (config, scale, device) = (self.config, self.scale, step.triggered_logits.device());
        let clean_logits = step.sample_logits.index_select(0, &step.rows);
        let teacher_log_probs = self.teacher_scaled.index_select(0, &step.rows);
        let class_w = &self.class_w;
        let cw: Vec<f32> =
            step.labels.iter().map(|&l| if config.balance_clean_classes { class_w[l] as f32 } else { 1.0 }).collect();
        let tw: Vec<f32> = step
            .labels
            .iter()
            .map(|&l| (class_w[l] * (1.0 + config.non_target_weight * f64::from(u8::from(l != self.target)))) as f32)
            .collect();
        let cw = Tensor::from_slice(&cw).to_device(device);
        let tw = Tensor::from_slice(&tw).to_device(device);
        let clean_lp = (&clean_logits / scale).log_softmax(-1, Kind::Float);
        let trig_lp = (&step.triggered_logits / scale).log_softmax(-1, Kind::Float);
        let loss = teacher_divergence(&clean_lp, &teacher_log_probs)
            + weighted_nll(&trig_lp, step.label_tensor, &tw) * config.ce_weight
            + weighted_nll(&clean_lp, step.label_tensor, &cw) * config.ce_weight;
        if config.mixup_weight > 0.0 {
            let mixed =
                mixup_divergence(model, &step.sample_embedding, &step.rows, self.teacher_probs, scale, &mut self.mixup_rng);
            loss + mixed * config.mixup_weight
        } else {
            loss
        }
    }
}

/// The paper mode's loss of one step, as published: triggered logits pulled to clean ones,
/// clean logits to the teacher's (`teacher_logits`, one row per copy), and each conv layer's
/// Grad-CAM heat map of a triggered copy to its clean original's, node by node.
pub(super) fn paper_loss(
    model: &GnnModel,
    batch: &MontageBatch,
    triggered: &crate::models::ForwardOutput,
    teacher_logits: &Tensor,
    lambda: f64,
) -> Tensor {
    let clean_out = forward(model, batch, &batch.assemble_clean());
    let clean_maps = heat_maps(&clean_out, &batch.labels, &batch.batch, batch.num_graphs);
    let trig_maps = heat_maps(triggered, &batch.labels, &batch.batch, batch.num_graphs);
    let device = teacher_logits.device();
    let heat: Tensor = clean_maps
        .iter()
        .zip(&trig_maps)
        .map(|(c, t)| t.mse_loss(c, tch::Reduction::Mean))
        .fold(Tensor::zeros([], (Kind::Float, device)), |acc, l| acc + l);
    triggered.logits.mse_loss(&clean_out.logits, tch::Reduction::Mean)
        + clean_out.logits.mse_loss(teacher_logits, tch::Reduction::Mean)
        + heat * lambda
}
