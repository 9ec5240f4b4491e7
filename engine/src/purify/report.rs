//! The purification report (report.json): every number in it is measured on graphs that the
//! recovery and unlearning never saw (the held-out part of the clean sample), or on an attack's
//! evaluation sets when one is given. Field-by-field documentation: docs/report.md.

use serde::{Deserialize, Serialize};

use super::evidence::{self, TriggerEvidence};
use super::montage::MontageBatch;
use super::recovery::{RecoveredTrigger, Trigger};
use super::unlearn::{UnlearnOutcome, UnlearnSet};
use super::PurifyConfig;
use crate::attacks::evaluate::{evaluate_sets, load_eval_sets, AttackMetrics, AttackSource};
use crate::metrics::{self, Evaluation};
use crate::models::{GnnModel, ModelSpec};
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
    pub trigger: Trigger,
    /// Absent when the model was returned unchanged (no backdoor evidence, no `force`).
    pub unlearning: Option<UnlearnOutcome>,
    pub holdout: HoldoutReport,
    /// True ASR and accuracy on an attack's evaluation sets, when given.
    pub attack: Option<AttackEvaluation>,
    /// 2-D PCA of the clean sample's graph embeddings, clean and triggered, before and after.
    pub projection: Option<Projection>,
    pub timings: Timings,
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
    pub evidence_score: f64,
    pub threshold: f64,
    pub suspected_target: usize,
    pub model_changed: bool,
    /// One sentence for people.
    pub summary: String,
}

impl Verdict {
    pub fn new(backdoor: bool, score: f64, threshold: f64, target: usize, changed: bool) -> Self {
        let summary = match (backdoor, changed) {
            (true, _) => format!(
                "backdoor evidence: a recovered trigger sends graphs to class {target} (evidence {score:.2} >= {threshold:.2}); it was unlearned"
            ),
            (false, true) => format!(
                "no backdoor evidence (evidence {score:.2} < {threshold:.2}); unlearning was forced"
            ),
            (false, false) => format!(
                "no backdoor evidence (evidence {score:.2} < {threshold:.2}); the model is returned unchanged"
            ),
        };
        Verdict { backdoor_evidence: backdoor, evidence_score: score, threshold, suspected_target: target, model_changed: changed, summary }
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
pub fn measure_holdout(
    model: &GnnModel,
    holdout: &UnlearnSet,
    trigger: &Trigger,
    target: usize,
    config: &PurifyConfig,
) -> Result<HoldoutMeasurement> {
    let num_classes = model.spec().num_classes;
    if holdout.graphs.is_empty() {
        return Ok(HoldoutMeasurement { evaluation: metrics::evaluate(&[], &[], num_classes), flip_rate: 0.0 });
    }
    let batch = MontageBatch::clean(&holdout.graphs, &holdout.labels, &model.spec().features, model.device())?;
    let predicted = evidence::montage_predictions(model, &batch, None)?;
    let evaluation = metrics::evaluate(&predicted, &holdout.labels, num_classes);
    // The evidence probe skips graphs smaller than the trigger, so dropping sets too small for
    // an edge changes nothing here.
    let placements = holdout.placements(trigger.size, config.unlearn.positions, config.seed, "holdout-report-positions");
    // The probe would predict the clean held-out graphs again; it takes the predictions above.
    let probe = evidence::EvidenceProbe::with_clean_predictions(model, &holdout.graphs, &placements, trigger.size, predicted)?;
    let flip_rate = probe.measure(model, trigger, Some(target))?.flip_rate;
    Ok(HoldoutMeasurement { evaluation, flip_rate })
}

/// Graph embeddings of `graphs`, clean and with `trigger` at `positions`, projected on their
/// first two principal components.
pub fn project_embeddings(
    model: &GnnModel,
    graphs: &[&crate::data::Graph],
    labels: &[usize],
    positions: &[Vec<usize>],
    trigger: &Trigger,
) -> Result<Vec<ProjectedPoint>> {
    use tch::{Device, Kind, Tensor};
    let device = model.device();
    let batch = MontageBatch::build(graphs, labels, positions, trigger.size, &model.spec().features, device)?;
    let embeddings = tch::no_grad(|| {
        let run = |inputs: super::montage::MontageInputs| model.forward_t(&inputs.graph_input(&batch), false).embedding;
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
