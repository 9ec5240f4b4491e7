//! Backdoor evidence: does a recovered trigger push graphs towards one class far more than
//! that class's share of the model's predictions would explain?
//!
//! The similarity objective alone cannot tell a backdoor from a pattern that merely pushes
//! graphs to the majority class (edge deletion on imbalanced data does that), so every
//! candidate is judged by its conditional flip rate towards a class, normalised by how often the
//! model predicts that class anyway.

use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

use super::null::NullPatches;
use super::recovery::Pattern;
use crate::data::Graph;
use crate::models::GnnModel;
use crate::montage::MontageBatch;
use crate::Result;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TriggerEvidence {
    /// The class whose predicted share rises most when the trigger is added.
    pub target: usize,
    /// Share of the clean sample the model predicts as `target`.
    pub base_share: f64,
    /// Share of triggered graphs predicted as `target`.
    pub triggered_share: f64,
    /// Among triggered graphs whose clean version is not predicted as `target`, the share that
    /// the trigger moves to `target`.
    pub flip_rate: f64,
    /// Flip rate beyond what the base share explains, scaled to [0, 1]:
    /// `max(0, (flip_rate - base_share) / (1 - base_share))`.
    pub score: f64,
    /// Triggered graphs the flip rate was measured on.
    pub n_flip_candidates: usize,
    /// Predicted share of every class, clean and triggered.
    pub clean_shares: Vec<f64>,
    pub triggered_shares: Vec<f64>,
    /// The same copies' flip rate to `target` when their node set is rewritten with natural
    /// patches instead (see [`super::null`]); `None` until measured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub null: Option<NullComparison>,
}

/// The candidate against the per-model null, on the same placed copies.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NullComparison {
    /// Flip rate to the target with natural patches at the candidate's positions.
    pub flip_rate: f64,
    /// The candidate's flip rate minus the null's.
    pub excess: f64,
    /// Standard error of `excess` over the sample graphs (copies of one graph are not
    /// independent, so graphs are the unit).
    pub excess_se: f64,
    /// Sample graphs whose copies were counted.
    pub n_graphs: usize,
    /// Natural patches drawn per copy.
    pub draws: usize,
    /// The score without the null: the flip rate beyond the target's share of the model's
    /// clean predictions, `max(0, (flip_rate - base_share) / (1 - base_share))`.
    pub share_score: f64,
    /// How strongly the sample ties denser pieces of this size to the target (Welch's t, see
    /// [`super::null::density_association`]), and the weight that natural pieces filled (or
    /// thinned) to the candidate's edge count took in the null: the tie in the candidate's
    /// direction over [`ASSOCIATION_T`], between 0 and 1.
    #[serde(default)]
    pub density_association: f64,
    #[serde(default)]
    pub density_weight: f64,
}

/// Welch's t at which the null is made of edge-matched pieces alone (about a two-sided 5%
/// level); below it they are mixed in in proportion, so that a weak tie does not switch the
/// verdict on or off.
pub const ASSOCIATION_T: f64 = 2.0;

impl NullComparison {
    /// Per-copy candidate flips (0/1) and null hit shares of the non-target copies, grouped by
    /// their sample graph.
    pub fn from_copies(copy_graph: &[usize], candidate: &[f64], null: &[f64], draws: usize) -> NullComparison {
        let n = candidate.len().max(1) as f64;
        let flip = candidate.iter().sum::<f64>() / n;
        let null_rate = null.iter().sum::<f64>() / n;
        let mut per_graph: std::collections::BTreeMap<usize, (f64, usize)> = std::collections::BTreeMap::new();
        for ((&g, &c), &z) in copy_graph.iter().zip(candidate).zip(null) {
            let e = per_graph.entry(g).or_insert((0.0, 0));
            e.0 += c - z;
            e.1 += 1;
        }
        let d: Vec<f64> = per_graph.values().map(|(s, k)| s / *k as f64).collect();
        let g = d.len();
        let se = if g > 1 {
            let mean = d.iter().sum::<f64>() / g as f64;
            (d.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (g - 1) as f64 / g as f64).sqrt()
        } else {
            1.0
        };
        NullComparison {
            flip_rate: null_rate,
            excess: flip - null_rate,
            excess_se: se,
            n_graphs: g,
            draws,
            share_score: 0.0,
            density_association: 0.0,
            density_weight: 0.0,
        }
    }

    /// The excess less two standard errors, at least 0: an excess the sample can vouch for. A
    /// sample with few graphs of the other classes (six on AIDS) leaves a wide margin.
    pub fn score(&self) -> f64 {
        (self.excess - 2.0 * self.excess_se).clamp(0.0, 1.0)
    }
}

/// Model predictions for a montaged batch with `trigger` written in (or the clean graphs).
pub fn montage_predictions(model: &GnnModel, batch: &MontageBatch, trigger: Option<&Pattern>) -> Result<Vec<usize>> {
    let device = model.device();
    let predicted = tch::no_grad(|| {
        let inputs = match trigger {
            Some(t) => batch.assemble_fixed(&t.adjacency(device), t.features(device).as_ref()),
            None => batch.assemble_clean(),
        };
        model.forward_t(&inputs.graph_input(batch), false).log_probs
    });
    predicted_classes(&predicted)
}

/// The class each row of log-probabilities `[B, C]` picks, on the host.
pub fn predicted_classes(log_probs: &Tensor) -> Result<Vec<usize>> {
    let predicted = log_probs.argmax(-1, false).to_device(tch::Device::Cpu).to_kind(Kind::Int64);
    Ok(Vec::<i64>::try_from(predicted)?.into_iter().map(|p| p as usize).collect())
}

/// The clean predictions and the placed copies of one trigger size, built once so that many
/// patterns of that size (the census) are measured on exactly the same copies.
pub struct EvidenceProbe {
    num_classes: usize,
    size: usize,
    clean: Vec<usize>,
    copy_clean_pred: Vec<usize>,
    /// The sample graph each copy was placed in.
    copy_graph: Vec<usize>,
    batch: Option<MontageBatch>,
}

impl EvidenceProbe {
    /// Places copies of the clean sample for a trigger of `size` nodes: each graph at every
    /// placement given for it (`placements[g]` is a list of node sets for graph `g`).
    /// [`EvidenceProbe::measure`] then names as target the class whose share rises most,
    /// unless it is given one.
    pub fn new(model: &GnnModel, graphs: &[&Graph], placements: &[Vec<Vec<usize>>], size: usize) -> Result<Self> {
        let clean_batch = MontageBatch::clean(graphs, &vec![0usize; graphs.len()], &model.spec().features, model.device())?;
        let clean = montage_predictions(model, &clean_batch, None)?;
        Self::with_clean_predictions(model, graphs, placements, size, clean)
    }

    /// As [`EvidenceProbe::new`], with the model's predictions on the clean `graphs` already
    /// known (one per graph).
    pub fn with_clean_predictions(
        model: &GnnModel,
        graphs: &[&Graph],
        placements: &[Vec<Vec<usize>>],
        size: usize,
        clean: Vec<usize>,
    ) -> Result<Self> {
        if clean.len() != graphs.len() || placements.len() != graphs.len() {
            return Err(crate::Error::invalid(format!(
                "evidence probe over {} graphs given {} clean predictions and {} placement lists",
                graphs.len(),
                clean.len(),
                placements.len()
            )));
        }
        let spec = model.spec();
        let device = model.device();
        let mut copies: Vec<&Graph> = Vec::new();
        let mut copy_places: Vec<Vec<usize>> = Vec::new();
        let mut copy_clean_pred: Vec<usize> = Vec::new();
        let mut copy_graph: Vec<usize> = Vec::new();
        for (g, sets) in placements.iter().enumerate() {
            // A graph with fewer nodes than the trigger cannot carry it (the montage never adds
            // nodes, while an attacker's injection does): its copies would count as misses of a
            // pattern that was never there. 9 of 50 graphs of a Fingerprint sample have 2 nodes.
            if graphs[g].num_nodes < size {
                continue;
            }
            for nodes in sets {
                copies.push(graphs[g]);
                copy_places.push(nodes.clone());
                copy_clean_pred.push(clean[g]);
                copy_graph.push(g);
            }
        }
        let batch = if copies.is_empty() {
            None
        } else {
            let copy_labels = vec![0usize; copies.len()];
            Some(MontageBatch::build(&copies, &copy_labels, &copy_places, size, &spec.features, device)?)
        };
        Ok(EvidenceProbe { num_classes: spec.num_classes, size, clean, copy_clean_pred, copy_graph, batch })
    }

    /// Replaces the clean predictions (one per sample graph) the flips are counted against, for
    /// a model whose weights changed since the probe was built (the unlearning loop measures
    /// the same placed copies every epoch).
    pub fn set_clean_predictions(&mut self, clean: Vec<usize>) -> Result<()> {
        if clean.len() != self.clean.len() {
            return Err(crate::Error::invalid(format!(
                "evidence probe over {} graphs given {} clean predictions",
                self.clean.len(),
                clean.len()
            )));
        }
        self.copy_clean_pred = self.copy_graph.iter().map(|&g| clean[g]).collect();
        self.clean = clean;
        Ok(())
    }

    /// The evidence for `trigger`, which must have the probe's size.
    pub fn measure(&self, model: &GnnModel, trigger: &Pattern, fixed_target: Option<usize>) -> Result<TriggerEvidence> {
        if trigger.size != self.size {
            return Err(crate::Error::invalid(format!(
                "evidence probe for {}-node triggers given a {}-node one",
                self.size, trigger.size
            )));
        }
        let triggered = self.triggered_predictions(model, trigger)?;
        Ok(self.evidence_for(&triggered, fixed_target))
    }

    /// The model's prediction for every placed copy with `trigger` written in (none when no
    /// sample graph can carry it).
    fn triggered_predictions(&self, model: &GnnModel, trigger: &Pattern) -> Result<Vec<usize>> {
        match &self.batch {
            Some(batch) => montage_predictions(model, batch, Some(trigger)),
            None => Ok(Vec::new()),
        }
    }

    /// The trigger size the copies were placed for.
    pub fn size(&self) -> usize {
        self.size
    }

    /// The sample graph each placed copy came from.
    pub fn copy_graphs(&self) -> &[usize] {
        &self.copy_graph
    }

    /// [`EvidenceProbe::measure`], then the same copies against the per-model null
    /// ([`super::null`]): `draws` natural patches per copy cut from the graphs of the target class
    /// among `graphs` (the probe's sample, labelled by `labels`), and [`TriggerEvidence::score`]
    /// becomes the excess over them. The patches come back too, to be measured again.
    pub fn measure_against_null(
        &self,
        model: &GnnModel,
        trigger: &Pattern,
        graphs: &[&Graph],
        labels: &[usize],
        draws: usize,
        rng: &mut crate::rng::Rng,
    ) -> Result<(TriggerEvidence, NullPatches)> {
        let triggered = self.triggered_predictions(model, trigger)?;
        let mut e = self.evidence_for(&triggered, None);
        let edges = trigger.edges.len();
        let (association, target_mean) = super::null::density_association(graphs, labels, e.target, self.size, 8, rng);
        // The tie counts in the candidate's direction only: denser than the target's pieces
        // where the target's graphs are the denser ones, or sparser where they are sparser.
        let toward = match (edges as f64).total_cmp(&target_mean) {
            std::cmp::Ordering::Greater => association,
            std::cmp::Ordering::Less => -association,
            std::cmp::Ordering::Equal => 0.0,
        };
        let density_weight = (toward / ASSOCIATION_T).clamp(0.0, 1.0);
        let patches =
            NullPatches::draw(self, graphs, labels, e.target, draws, Some((edges, density_weight)), model.device(), rng);
        let hits = patches.hits(model, self)?;
        let (mut groups, mut candidate, mut null) = (Vec::new(), Vec::new(), Vec::new());
        for i in 0..triggered.len() {
            if self.copy_clean_pred[i] != e.target {
                groups.push(self.copy_graph[i]);
                candidate.push(f64::from(u8::from(triggered[i] == e.target)));
                null.push(hits[i]);
            }
        }
        let mut comparison = NullComparison::from_copies(&groups, &candidate, &null, draws);
        comparison.share_score = e.score;
        comparison.density_association = association;
        comparison.density_weight = density_weight;
        e.score = comparison.score();
        e.null = Some(comparison);
        Ok((e, patches))
    }

    /// The share of `patches` that sends the copies the original model did not predict as the
    /// target there, measured on `model` (the null's flip rate, again, on a changed model).
    pub fn null_flip_rate(&self, model: &GnnModel, patches: &NullPatches, target: usize) -> Result<f64> {
        let hits = patches.hits(model, self)?;
        let (sum, n) = hits
            .iter()
            .zip(&self.copy_clean_pred)
            .filter(|(_, &clean)| clean != target)
            .fold((0.0, 0usize), |(s, n), (h, _)| (s + h, n + 1));
        Ok(if n == 0 { 0.0 } else { sum / n as f64 })
    }

    /// The placed copies, batched (`None` when no sample graph can carry the trigger).
    pub fn copies(&self) -> Option<&MontageBatch> {
        self.batch.as_ref()
    }

    /// The evidence given the model's predictions on [`EvidenceProbe::copies`] with a trigger
    /// written in, one per copy.
    pub fn evidence_for(&self, triggered: &[usize], fixed_target: Option<usize>) -> TriggerEvidence {
        evidence_from_predictions(&self.clean, &self.copy_clean_pred, triggered, self.num_classes, fixed_target)
    }
}

/// The evidence computation on predictions alone: `clean` per graph, and per triggered copy its
/// clean graph's prediction and its own.
pub fn evidence_from_predictions(
    clean: &[usize],
    copy_clean: &[usize],
    triggered: &[usize],
    num_classes: usize,
    fixed_target: Option<usize>,
) -> TriggerEvidence {
    let shares = |preds: &[usize]| -> Vec<f64> {
        let mut s = vec![0.0; num_classes];
        for &p in preds {
            s[p] += 1.0;
        }
        let n = preds.len().max(1) as f64;
        s.iter().map(|c| c / n).collect()
    };
    let clean_shares = shares(clean);
    let triggered_shares = shares(triggered);
    let target = fixed_target.unwrap_or_else(|| {
        (0..num_classes)
            .max_by(|&a, &b| {
                (triggered_shares[a] - clean_shares[a]).total_cmp(&(triggered_shares[b] - clean_shares[b])).then(b.cmp(&a))
            })
            .unwrap_or(0)
    });
    let (mut flips, mut candidates) = (0usize, 0usize);
    for (&c, &t) in copy_clean.iter().zip(triggered) {
        if c != target {
            candidates += 1;
            flips += usize::from(t == target);
        }
    }
    let flip_rate = if candidates == 0 { 0.0 } else { flips as f64 / candidates as f64 };
    let base_share = clean_shares[target];
    let score = if base_share >= 1.0 { 0.0 } else { ((flip_rate - base_share) / (1.0 - base_share)).max(0.0) };
    TriggerEvidence {
        target,
        base_share,
        triggered_share: triggered_shares[target],
        flip_rate,
        score,
        n_flip_candidates: candidates,
        clean_shares,
        triggered_shares,
        null: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_is_the_class_that_rises_most_not_the_majority() {
        // Class 0 is the majority both before and after; class 1 rises from 20% to 60%.
        let clean = [0, 0, 0, 0, 1];
        let copy_clean = [0, 0, 0, 0, 1];
        let triggered = [1, 1, 0, 0, 1];
        let e = evidence_from_predictions(&clean, &copy_clean, &triggered, 2, None);
        assert_eq!(e.target, 1);
        assert_eq!(e.n_flip_candidates, 4);
        assert!((e.flip_rate - 0.5).abs() < 1e-12);
        assert!((e.score - (0.5 - 0.2) / 0.8).abs() < 1e-12);
    }

    #[test]
    fn no_change_gives_no_evidence() {
        let preds = [0, 1, 0, 1];
        let e = evidence_from_predictions(&preds, &preds, &preds, 2, None);
        assert_eq!(e.flip_rate, 0.0);
        assert_eq!(e.score, 0.0);
    }
}
