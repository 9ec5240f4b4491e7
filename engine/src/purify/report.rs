//! The purification report (report.json): every number in it is measured on graphs that the
//! recovery and unlearning never saw (the held-out part of the clean sample), or on an attack's
//! evaluation sets when one is given. Field-by-field documentation: docs/report.md.

use serde::{Deserialize, Serialize};

use super::evidence::{self, TriggerEvidence};
use super::recovery::{Pattern, RecoveredTrigger};
use super::unlearn::{UnlearnOutcome, UnlearnSet};
use super::PurifyConfig;
use crate::attacks::evaluate::{evaluate_sets, load_eval_sets, AttackMetrics, AttackSource};
use crate::metrics::{self, Evaluation};
use crate::models::{GnnModel, ModelSpec};
use crate::montage::MontageBatch;
use crate::Result;

pub const REPORT_FORMAT: &str = "gcleaner.report/v1";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PurifyReport {
    pub format: String,
    /// SHA-256 of the input weights file, when purifying a file.
    pub input_sha256: Option<String>,
    pub spec: ModelSpec,
    pub config: PurifyConfig,
    pub sample: SampleInfo,
    pub verdict: Verdict,
    /// One candidate per trigger size tried.
    pub candidates: Vec<Candidate>,
    /// Index into `candidates` of the trigger that was judged (and unlearned).
    pub selected: usize,
    /// Indices into `candidates` of every trigger that was unlearned, `selected` first (robust
    /// mode adds each other size pointing at the same target with evidence); empty when the
    /// model was returned unchanged.
    #[serde(default)]
    pub unlearned_candidates: Vec<usize>,
    pub trigger: Pattern,
    /// Absent when the model was returned unchanged (no backdoor evidence, no `force`).
    pub unlearning: Option<UnlearnOutcome>,
    pub holdout: HoldoutReport,
    /// True ASR and accuracy on an attack's evaluation sets, when given.
    pub attack: Option<AttackEvaluation>,
    /// 2-D PCA of the clean sample's graph embeddings, clean and triggered, before and after.
    pub projection: Option<Projection>,
    pub timings: Timings,
    /// What the edge budgets left each stage on this sample (absent in reports written before
    /// there were budgets).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub work: Option<super::budget::WorkScale>,
    /// Sentences for people about results to check before using the purified model (empty
    /// when there is nothing to check).
    #[serde(default)]
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProjectedPoint {
    pub x: f64,
    pub y: f64,
    pub triggered: bool,
    pub label: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Projection {
    pub before: Vec<ProjectedPoint>,
    pub after: Vec<ProjectedPoint>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SampleInfo {
    pub n_total: usize,
    pub n_unlearning: usize,
    pub n_holdout: usize,
    pub class_counts: Vec<usize>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Candidate {
    /// The pattern of this size (the generator's, or the census's when its evidence was
    /// stronger; `objective` and `mean_similarity` are always those of `recovered.trigger`).
    pub recovered: RecoveredTrigger,
    pub evidence: TriggerEvidence,
    /// Where `recovered.trigger` came from.
    #[serde(default)]
    pub source: TriggerSource,
    /// Evidence score of the generator's own pattern (differs from `evidence.score` when the
    /// census won).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generator_score: Option<f64>,
    /// Patterns the census measured for this size (0 when it did not run).
    #[serde(default)]
    pub census_patterns: usize,
    /// Every census pattern's evidence, in census order (fewest edges first).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub census: Vec<CensusEntry>,
}

/// One census pattern and how it moved the model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CensusEntry {
    pub edges: Vec<(usize, usize)>,
    pub target: usize,
    pub flip_rate: f64,
    pub score: f64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TriggerSource {
    /// The trigger generator's universal pattern (best restart).
    #[default]
    Generator,
    /// One of the connected patterns of the census.
    Census,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    pub backdoor_evidence: bool,
    /// The excess of the chosen pattern's flip rate over natural patterns', less two standard
    /// errors (see [`TriggerEvidence::score`]).
    pub evidence_score: f64,
    pub threshold: f64,
    pub suspected_target: usize,
    pub model_changed: bool,
    /// The pattern judged: its node and edge count.
    #[serde(default)]
    pub trigger_nodes: usize,
    #[serde(default)]
    pub trigger_edges: usize,
    /// Share of the sample's graphs of other classes that the pattern sends to the target, and
    /// that natural patterns of the same size (pieces of the target class's own graphs) send
    /// there from the same positions; the difference and its standard error.
    #[serde(default)]
    pub flip_rate: f64,
    #[serde(default)]
    pub natural_flip_rate: f64,
    #[serde(default)]
    pub excess: f64,
    #[serde(default)]
    pub excess_se: f64,
    /// One sentence for people.
    pub summary: String,
}

impl Verdict {
    /// The verdict on the judged candidate: a backdoor when its score reaches `threshold`.
    pub fn new(candidate: &Candidate, threshold: f64, changed: bool) -> Self {
        let e = &candidate.evidence;
        let backdoor = e.score >= threshold;
        let (natural, excess, se) = e.null.as_ref().map_or((0.0, e.flip_rate, 0.0), |n| (n.flip_rate, n.excess, n.excess_se));
        let trigger = &candidate.recovered.trigger;
        let mut verdict = Verdict {
            backdoor_evidence: backdoor,
            evidence_score: e.score,
            threshold,
            suspected_target: e.target,
            model_changed: changed,
            trigger_nodes: trigger.size,
            trigger_edges: trigger.edges.len(),
            flip_rate: e.flip_rate,
            natural_flip_rate: natural,
            excess,
            excess_se: se,
            summary: String::new(),
        };
        let found = verdict.finding();
        verdict.summary = match (backdoor, changed) {
            (true, _) => {
                format!("backdoor evidence: {found}; it was unlearned until it moves no more graphs than natural patterns do")
            }
            (false, true) => format!("no backdoor evidence: {found}; unlearning was forced"),
            (false, false) => format!("no backdoor evidence: {found}; the model is returned unchanged"),
        };
        verdict
    }

    /// The verdict of a scan (`mode: scan`): the same judgement, a summary that says nothing was
    /// unlearned.
    pub fn scanned(mut self) -> Self {
        let verdict = if self.backdoor_evidence { "backdoor evidence" } else { "no backdoor evidence" };
        self.summary = format!("{verdict}: {}; scan only, nothing was unlearned", self.finding());
        self
    }

    /// What the judged pattern does, in one clause.
    fn finding(&self) -> String {
        format!(
            "a {}-node, {}-edge pattern sends {:.0}% of the other classes' sample graphs to class {}, natural patterns of \
             its size {:.0}% (excess {:.2} +/- {:.2}, evidence {:.2} {} {:.2})",
            self.trigger_nodes,
            self.trigger_edges,
            self.flip_rate * 100.0,
            self.suspected_target,
            self.natural_flip_rate * 100.0,
            self.excess,
            self.excess_se,
            self.evidence_score,
            if self.backdoor_evidence { ">=" } else { "<" },
            self.threshold
        )
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HoldoutMeasurement {
    pub evaluation: Evaluation,
    /// Conditional flip rate of the recovered trigger towards the suspected target.
    pub flip_rate: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HoldoutReport {
    pub before: HoldoutMeasurement,
    pub after: HoldoutMeasurement,
    #[serde(default)]
    pub change: HoldoutChange,
}

/// Significance at which [`HoldoutChange::accuracy_fell`] is raised.
const ACCURACY_FELL_P: f64 = 0.1;
/// Net held-out graphs lost, at least, before [`HoldoutChange::accuracy_fell`] is raised.
const ACCURACY_FELL_NET: usize = 2;

/// How purification changed the answers on the held-out graphs, graph by graph.
///
/// The held-out part of a 3% sample is a handful of graphs, so a fall in its accuracy may be
/// chance. The graphs whose answer changed tell more than the two accuracies: if purification
/// did not harm the model, a changed answer is as likely to turn right as wrong, and losing
/// `lost` of the `lost + gained` changed graphs has the one-sided sign-test chance `p_value`.
/// The collapse guard cannot catch every harm: it watches the unlearning graphs too, which
/// unlearning fits (on one bitcoin sample, held-out accuracy 0.89 -> 0.44 went unseen by it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HoldoutChange {
    /// Held-out graphs predicted right before purification and wrong after.
    pub lost: usize,
    /// Held-out graphs predicted wrong before and right after.
    pub gained: usize,
    /// The chance of losing at least `lost` of the `lost + gained` changed graphs if each
    /// change were a fair coin (1 when none changed).
    pub p_value: f64,
    /// At least 2 more graphs lost than gained, with `p_value` at most 0.1.
    pub accuracy_fell: bool,
}

impl Default for HoldoutChange {
    fn default() -> Self {
        HoldoutChange { lost: 0, gained: 0, p_value: 1.0, accuracy_fell: false }
    }
}

impl HoldoutReport {
    /// Sentences for the report's `warnings`: held-out accuracy that fell by more than chance.
    pub fn warnings(&self) -> Vec<String> {
        let (before, after, change) = (&self.before, &self.after, &self.change);
        if !change.accuracy_fell {
            return Vec::new();
        }
        vec![format!(
            "held-out accuracy fell from {:.3} to {:.3}: {} held-out graphs were right before purification and wrong after, {} the other way \
             (sign test p = {:.3}); check the purified model on more clean data before using it",
            before.evaluation.accuracy, after.evaluation.accuracy, change.lost, change.gained, change.p_value
        )]
    }
}

impl HoldoutChange {
    /// Compares predictions before and after on graphs with `labels`.
    pub fn between(before: &[usize], after: &[usize], labels: &[usize]) -> Self {
        let (mut lost, mut gained) = (0usize, 0usize);
        for ((&b, &a), &y) in before.iter().zip(after).zip(labels) {
            match (b == y, a == y) {
                (true, false) => lost += 1,
                (false, true) => gained += 1,
                _ => {}
            }
        }
        let p_value = sign_test_upper_tail(lost, lost + gained);
        let accuracy_fell = lost >= gained + ACCURACY_FELL_NET && p_value <= ACCURACY_FELL_P;
        HoldoutChange { lost, gained, p_value, accuracy_fell }
    }
}

/// P(X >= k) for X ~ Binomial(n, 1/2).
fn sign_test_upper_tail(k: usize, n: usize) -> f64 {
    if k == 0 {
        return 1.0;
    }
    // C(n, i) / 2^n built up term by term in floating point: exact enough for any sample a
    // purification holds out, and no overflow for large n.
    let mut term = 0.5f64.powi(n as i32); // C(n, 0) / 2^n
    let mut tail = 0.0;
    for i in 0..=n {
        if i >= k {
            tail += term;
        }
        term *= (n - i) as f64 / (i + 1) as f64;
    }
    tail.min(1.0)
}

/// The input and purified models measured on an attack's evaluation sets (`--attack DIR`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttackEvaluation {
    pub before: AttackMetrics,
    pub after: AttackMetrics,
    /// The attack's never-backdoored reference model on the same sets: the rate at which a clean
    /// model already sends triggered graphs to the target.
    pub clean_model: Option<AttackMetrics>,
}

impl AttackEvaluation {
    /// Measures the input model, the purified one and (when given) the never-backdoored
    /// reference on the evaluation sets of `attack`.
    pub fn measure(
        attack: &AttackSource,
        before: &GnnModel,
        after: &GnnModel,
        clean_model: Option<&GnnModel>,
    ) -> Result<AttackEvaluation> {
        let sets = load_eval_sets(before.spec(), attack.dir())?;
        let measure = |m: &GnnModel| evaluate_sets(m, &sets.clean, &sets.triggered, sets.target_class);
        Ok(AttackEvaluation {
            before: measure(before)?,
            after: measure(after)?,
            // The reference may record its classes in another order: map the sets to it.
            clean_model: clean_model
                .map(|m| {
                    let sets = load_eval_sets(m.spec(), attack.dir())?;
                    evaluate_sets(m, &sets.clean, &sets.triggered, sets.target_class)
                })
                .transpose()?,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Timings {
    pub explain_s: f64,
    pub recovery_s: f64,
    pub unlearning_s: f64,
    pub evaluation_s: f64,
    pub total_s: f64,
}

/// Accuracy and trigger flip rate of `model` on the held-out clean graphs.
/// Also returns the predicted class of every held-out graph.
pub fn measure_holdout(
    model: &GnnModel,
    holdout: &UnlearnSet,
    trigger: &Pattern,
    target: usize,
    config: &PurifyConfig,
) -> Result<(HoldoutMeasurement, Vec<usize>)> {
    let num_classes = model.spec().num_classes;
    if holdout.graphs.is_empty() {
        return Ok((HoldoutMeasurement { evaluation: metrics::evaluate(&[], &[], num_classes), flip_rate: 0.0 }, Vec::new()));
    }
    let batch = MontageBatch::clean(&holdout.graphs, &holdout.labels, &model.spec().features, model.device())?;
    let predicted = evidence::montage_predictions(model, &batch, None)?;
    let evaluation = metrics::evaluate(&predicted, &holdout.labels, num_classes);
    // The evidence probe skips graphs smaller than the trigger, so dropping sets too small for
    // an edge changes nothing here.
    let placements = holdout.placements(trigger.size, config.unlearn.positions, config.seed, "holdout-report-positions");
    // The probe would predict the clean held-out graphs again; it takes the predictions above.
    let probe =
        evidence::EvidenceProbe::with_clean_predictions(model, &holdout.graphs, &placements, trigger.size, predicted.clone())?;
    let flip_rate = probe.measure(model, trigger, Some(target))?.flip_rate;
    Ok((HoldoutMeasurement { evaluation, flip_rate }, predicted))
}

/// Graph embeddings of `graphs`, clean and with `trigger` at `positions`, projected on their
/// first two principal components.
pub fn project_embeddings(
    model: &GnnModel,
    graphs: &[&crate::data::Graph],
    labels: &[usize],
    positions: &[Vec<usize>],
    trigger: &Pattern,
) -> Result<Vec<ProjectedPoint>> {
    use tch::{Device, Kind, Tensor};
    let device = model.device();
    let batch = MontageBatch::build(graphs, labels, positions, trigger.size, &model.spec().features, device)?;
    let embeddings = tch::no_grad(|| {
        let run = |inputs: crate::montage::MontageInputs| model.forward_t(&inputs.graph_input(&batch), false).embedding;
        let clean = run(batch.assemble_clean());
        let triggered = run(batch.assemble_fixed(&trigger.adjacency(device), trigger.features(device).as_ref()));
        Tensor::cat(&[clean, triggered], 0).to_device(Device::Cpu).to_kind(Kind::Double)
    });
    let centred = &embeddings - embeddings.mean_dim([0i64].as_slice(), true, Kind::Double);
    // torch.svd (not linalg_svd): tch cannot pass linalg_svd's optional driver as None on CPU.
    let (_, _, v) = centred.f_svd(true, true)?;
    let components = v.narrow(1, 0, 2.min(v.size()[1]));
    let coords = centred.matmul(&components);
    let cols = coords.size()[1] as usize;
    let flat = Vec::<f64>::try_from(coords.contiguous().view([-1]))?;
    let n = graphs.len();
    Ok((0..2 * n)
        .map(|i| ProjectedPoint {
            x: flat[i * cols],
            y: if cols > 1 { flat[i * cols + 1] } else { 0.0 },
            triggered: i >= n,
            label: labels[i % n],
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sign_test_tail_is_the_binomial_tail() {
        assert_eq!(sign_test_upper_tail(0, 5), 1.0);
        assert_eq!(sign_test_upper_tail(0, 0), 1.0);
        assert!((sign_test_upper_tail(4, 4) - 1.0 / 16.0).abs() < 1e-12);
        // P(X >= 5 | n = 7) = (21 + 7 + 1) / 128
        assert!((sign_test_upper_tail(5, 7) - 29.0 / 128.0).abs() < 1e-12);
        assert!((sign_test_upper_tail(1, 1) - 0.5).abs() < 1e-12);
        // Large samples neither overflow nor leave [0, 1].
        let p = sign_test_upper_tail(600, 1000);
        assert!(p > 0.0 && p < 1e-9, "{p}");
    }

    #[test]
    fn held_out_accuracy_falls_only_when_the_changed_graphs_say_so() {
        let labels = [0, 0, 0, 0, 1, 1, 1, 1, 1];
        // Four graphs lost, none gained: p = 1/16.
        let change = HoldoutChange::between(&labels, &[1, 1, 0, 0, 0, 0, 1, 1, 1], &labels);
        assert_eq!((change.lost, change.gained), (4, 0));
        assert!(change.accuracy_fell);
        // Two lost: p = 1/4, too likely by chance.
        let change = HoldoutChange::between(&labels, &[1, 1, 0, 0, 1, 1, 1, 1, 1], &labels);
        assert_eq!((change.lost, change.gained), (2, 0));
        assert!(!change.accuracy_fell);
        // As many right answers gained as lost: no fall.
        let before = [1, 1, 0, 0, 0, 0, 1, 1, 1];
        let after = [0, 0, 1, 1, 1, 1, 1, 1, 1];
        let change = HoldoutChange::between(&before, &after, &labels);
        assert_eq!((change.lost, change.gained), (2, 4));
        assert!(!change.accuracy_fell);
        // Nothing changed.
        let change = HoldoutChange::between(&labels, &labels, &labels);
        assert_eq!(change, HoldoutChange::default());
    }
}
