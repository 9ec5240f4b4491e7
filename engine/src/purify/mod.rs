//! G-Cleaner purification: explain the clean sample, recover a universal trigger for several
//! sizes, judge the candidates by backdoor evidence, unlearn the chosen one, and report
//! before/after numbers measured on held-out clean graphs only.

pub(crate) mod budget;
pub(crate) mod census;
pub(crate) mod config_check;
pub(crate) mod evidence;
pub(crate) mod frozen;
pub(crate) mod generator;
pub mod html;
pub mod null;
pub mod pipeline;
pub mod pseudo_labels;
pub mod recovery;
pub mod report;
pub mod settings;
pub mod unlearn;

use std::time::Instant;

use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

use crate::data::{Dataset, Graph};
use crate::explain::gnnexplainer::{self, GnnExplainerConfig};
use crate::explain::{saliency, ExplainerKind};
use crate::models::GnnModel;
use crate::progress::Progress;
use crate::rng::rng_for;
use crate::{Error, Result};
use evidence::TriggerEvidence;
use recovery::{least_important_nodes, random_placements, recover_size, RecoveredTrigger, RecoveryConfig};
use report::{Candidate, HoldoutReport, PurifyReport, Timings, TriggerSource, Verdict};
use settings::RunMode;
use unlearn::{unlearn_toward, UnlearnConfig, UnlearnMode, UnlearnSet};

/// Every purification setting. Its defaults are the `Default` impls of this and of
/// [`RecoveryConfig`] and [`UnlearnConfig`]: a field missing from a stored config takes its
/// default, and front ends change settings through [`settings::Overrides`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PurifyConfig {
    /// `scan` stops after the verdict: nothing is unlearned and the model is not changed.
    pub mode: RunMode,
    pub recovery: RecoveryConfig,
    pub unlearn: UnlearnConfig,
    pub explainer: ExplainerKind,
    /// Fix the trigger size instead of searching `recovery.sizes`.
    pub trigger_nodes: Option<usize>,
    /// Share of the clean sample held out for before/after measurements.
    pub holdout_fraction: f64,
    /// Evidence score at or above which the model is judged backdoored.
    pub evidence_threshold: f64,
    /// Unlearn even when the evidence says there is no backdoor.
    pub force: bool,
    /// Natural patches drawn per placed copy for the per-model null ([`null`]).
    pub null_draws: usize,
    /// Most edges a batch of placed copies holds (the evidence, the null, an unlearning
    /// epoch): past it, fewer random placements per graph, then fewer graphs for the evidence
    /// ([`budget`]).
    pub copy_edges: usize,
    /// Label every sample graph with the model's own prediction (auxiliary data from another
    /// dataset, whose labels mean nothing to the model).
    pub pseudo_labels: bool,
    pub seed: u64,
}

impl Default for PurifyConfig {
    fn default() -> Self {
        PurifyConfig {
            mode: RunMode::Purify,
            recovery: RecoveryConfig::default(),
            unlearn: UnlearnConfig::default(),
            explainer: ExplainerKind::Saliency,
            trigger_nodes: None,
            holdout_fraction: 0.25,
            evidence_threshold: 0.3,
            force: false,
            null_draws: 4,
            copy_edges: 300_000,
            pseudo_labels: false,
            seed: 10,
        }
    }
}

impl PurifyConfig {
    /// The defaults for auxiliary data (graphs of another dataset, no labels in the model's
    /// label space): pseudo-labels, and [`UnlearnConfig::auxiliary`].
    pub fn auxiliary() -> Self {
        PurifyConfig { pseudo_labels: true, unlearn: UnlearnConfig::auxiliary(), ..PurifyConfig::default() }
    }

    /// Refuses settings that have no meaning, before any work is done: the service checks a
    /// configuration with this when it arrives, and [`purify`] first thing. A refusal is an
    /// [`Error::Setting`] naming the setting's path (see [`config_check`]).
    pub fn validate(&self) -> Result<()> {
        use config_check::{at_least, fraction};
        fraction("holdout_fraction", self.holdout_fraction, false)?;
        // Evidence scores lie in [0, 1]: a threshold above 1 would never find a backdoor.
        fraction("evidence_threshold", self.evidence_threshold, true)?;
        if let Some(n) = self.trigger_nodes {
            at_least("trigger_nodes", n, 2)?;
        }
        if self.force && self.mode == RunMode::Scan {
            return Err(Error::setting("force", "has no meaning with mode scan, which never unlearns"));
        }
        at_least("copy_edges", self.copy_edges, 1)?;
        self.recovery.validate()?;
        self.unlearn.validate()
    }

    /// [`PurifyConfig::auxiliary`] when `pseudo_labels`, else the defaults.
    pub fn defaults_for(pseudo_labels: bool) -> Self {
        if pseudo_labels {
            PurifyConfig::auxiliary()
        } else {
            PurifyConfig::default()
        }
    }
}

/// The purified model and the report about it.
pub struct PurifyOutcome {
    pub model: GnnModel,
    pub report: PurifyReport,
}

/// The candidate to judge and unlearn. The suspected target is the class with the most
/// evidence summed over the searched sizes: a planted trigger sets the backdoor off at several
/// sizes (its sub- and super-patterns), while a pattern that happens to move graphs to another
/// class, such as the majority class of small graphs, shows at one. Of that class's candidates,
/// the strongest evidence; among equals the smaller pattern, then the denser embedding cluster.
fn select_candidate(candidates: &[Candidate]) -> usize {
    let mut per_target: std::collections::BTreeMap<usize, f64> = std::collections::BTreeMap::new();
    for c in candidates {
        *per_target.entry(c.evidence.target).or_default() += c.evidence.score;
    }
    let target = per_target.iter().max_by(|a, b| a.1.total_cmp(b.1).then(b.0.cmp(a.0))).map(|(&t, _)| t);
    (0..candidates.len())
        .filter(|&i| Some(candidates[i].evidence.target) == target)
        .max_by(|&a, &b| {
            let (ca, cb) = (&candidates[a], &candidates[b]);
            ca.evidence
                .score
                .total_cmp(&cb.evidence.score)
                .then(cb.recovered.trigger.size.cmp(&ca.recovered.trigger.size))
                .then(cb.recovered.objective.total_cmp(&ca.recovered.objective))
        })
        .unwrap_or(0)
}

/// The judged pattern's densest cores at the smaller searched sizes, down to half its size (at
/// least 3 nodes), where no unlearned candidate has that size already. An attacker's trigger
/// smaller than the recovered pattern sits inside it (a 12-node trigger in an 18-node pattern of
/// generated graphs), and a model taught to ignore only the whole pattern still answers to the
/// part.
fn dense_cores(trigger: &recovery::Pattern, candidates: &[Candidate], unlearned: &[usize]) -> Vec<recovery::Pattern> {
    let n = trigger.size;
    let mut degree = vec![0usize; n];
    for &(a, b) in &trigger.edges {
        degree[a] += 1;
        degree[b] += 1;
    }
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| degree[b].cmp(&degree[a]).then(a.cmp(&b)));
    let mut sizes: Vec<usize> = candidates.iter().map(|c| c.recovered.trigger.size).collect();
    sizes.sort_unstable();
    sizes.dedup();
    sizes
        .into_iter()
        .filter(|&s| s < n && s >= 3 && 2 * s >= n && !unlearned.iter().any(|&i| candidates[i].recovered.trigger.size == s))
        .filter_map(|s| {
            let slot: std::collections::HashMap<usize, usize> = order[..s].iter().enumerate().map(|(i, &v)| (v, i)).collect();
            let edges: Vec<(usize, usize)> = trigger
                .edges
                .iter()
                .filter_map(|&(a, b)| Some((slot.get(&a).copied()?, slot.get(&b).copied()?)))
                .map(|(a, b)| (a.min(b), a.max(b)))
                .collect();
            (!edges.is_empty() && trigger.slot_features.is_none()).then_some(recovery::Pattern {
                size: s,
                edges,
                slot_features: None,
            })
        })
        .collect()
}

/// The largest searched trigger size is never below this (the largest motif an attack plants).
pub const MIN_SIZE_CAP: usize = 4;

/// Trigger sizes to search: the configured ones, capped near 30% of the average graph size
/// (a trigger that rewrites most of a graph is not a trigger), but never below 4. Motif
/// triggers are 3- and 4-node motifs whatever the graphs' size, and on graphs of 8 nodes
/// (Fingerprint) the 30% cap alone would search up to 2 nodes; a floor of 3 still hid the
/// 4-clique and 4-cycle-with-chord Motif-BA plants there (4 of 5 seeds undetected or
/// mis-targeted, docs/experiments.md).
pub fn candidate_sizes(config: &PurifyConfig, sample: &Dataset) -> Vec<usize> {
    if let Some(n) = config.trigger_nodes {
        return vec![n];
    }
    let avg = sample.avg_nodes();
    let cap = ((avg * 0.3).round() as usize).max(MIN_SIZE_CAP);
    let scaled = config.recovery.size_fractions.iter().map(|f| (f * avg).round() as usize);
    let mut sizes: Vec<usize> = config.recovery.sizes.iter().copied().chain(scaled).filter(|&s| s >= 2 && s <= cap).collect();
    sizes.sort_unstable();
    sizes.dedup();
    if sizes.is_empty() {
        sizes.push(2);
    }
    sizes
}

/// Stratified split of the sample into (unlearning, holdout) indices.
pub fn split_sample(sample: &Dataset, holdout_fraction: f64, seed: u64) -> (Vec<usize>, Vec<usize>) {
    let mut rng = rng_for(seed, "purify-holdout");
    let (mut train, mut holdout) = (Vec::new(), Vec::new());
    for class in 0..sample.num_classes() {
        let mut members: Vec<usize> = (0..sample.len()).filter(|&i| sample.graphs[i].label == class).collect();
        members.shuffle(&mut rng);
        // Keep at least one graph of each class for unlearning.
        let k = ((members.len() as f64 * holdout_fraction).round() as usize).min(members.len().saturating_sub(1));
        holdout.extend_from_slice(&members[..k]);
        train.extend_from_slice(&members[k..]);
    }
    train.sort_unstable();
    holdout.sort_unstable();
    (train, holdout)
}

fn importance(model: &GnnModel, graphs: &[&Graph], kind: ExplainerKind) -> Result<Vec<Vec<f32>>> {
    match kind {
        ExplainerKind::Saliency => saliency::node_importance(model, graphs, &model.spec().features),
        ExplainerKind::GnnExplainer => {
            gnnexplainer::node_importance(model, graphs, &model.spec().features, &GnnExplainerConfig::default())
        }
    }
}

/// Measures every connected pattern of the candidate's size on the candidate's own placed
/// copies and takes the strongest when its evidence beats the generator's pattern (ties keep the
/// generator's; among census patterns, the higher flip rate, then the fewer edges).
fn census_pick(
    model: &GnnModel,
    probe: &evidence::EvidenceProbe,
    candidate: &mut Candidate,
    graphs: &[&Graph],
    labels: &[usize],
    positions: &[Vec<usize>],
    config: &PurifyConfig,
) -> Result<()> {
    let patterns = census::connected_patterns(candidate.recovered.trigger.size);
    if patterns.is_empty() {
        return Ok(());
    }
    candidate.census_patterns = patterns.len();
    candidate.generator_score = Some(candidate.evidence.score);
    let mut best: Option<(recovery::Pattern, TriggerEvidence)> = None;
    for pattern in patterns {
        let e = probe.measure(model, &pattern, None)?;
        candidate.census.push(report::CensusEntry {
            edges: pattern.edges.clone(),
            target: e.target,
            flip_rate: e.flip_rate,
            score: e.score,
        });
        let better =
            best.as_ref().is_none_or(|(_, b)| e.score.total_cmp(&b.score).then(e.flip_rate.total_cmp(&b.flip_rate)).is_gt());
        if better {
            best = Some((pattern, e));
        }
    }
    let (pattern, e) = best.expect("at least one pattern");
    if e.score > candidate.evidence.score {
        let (objective, similarity) =
            recovery::pattern_objective(model, graphs, labels, positions, &pattern, config.recovery.threshold)?;
        candidate.recovered.trigger = pattern;
        candidate.recovered.objective = objective;
        candidate.recovered.mean_similarity = similarity;
        candidate.evidence = e;
        candidate.source = TriggerSource::Census;
    }
    Ok(())
}

/// The probe a candidate was judged on and its null's natural patches, kept to measure the null
/// again while unlearning.
type CandidateNull = (evidence::EvidenceProbe, null::NullPatches);

/// Recovers a trigger for every candidate size and judges each against the per-model null;
/// with each candidate, the probe it was measured on and its null's patches. The generator
/// trains on `scale.recovery_graphs` of the unlearning graphs, and the evidence is measured on
/// `scale.evidence_graphs` of them (all, below the budget).
#[allow(clippy::too_many_arguments)]
fn recover_candidates(
    model: &GnnModel,
    sample: &Dataset,
    train_graphs: &[&Graph],
    train_labels: &[usize],
    train_importance: &[Vec<f32>],
    scale: &budget::WorkScale,
    config: &PurifyConfig,
    progress: &mut dyn Progress,
) -> Result<(Vec<Candidate>, Vec<CandidateNull>)> {
    let pick = |idx: &[usize]| -> (Vec<&Graph>, Vec<usize>, Vec<usize>) {
        (idx.iter().map(|&i| train_graphs[i]).collect(), idx.iter().map(|&i| train_labels[i]).collect(), idx.to_vec())
    };
    let (rec_graphs, rec_labels, rec_idx) =
        pick(&budget::stratified_subset(train_labels, scale.recovery_graphs, config.seed, "recovery-graphs"));
    let (probe_graphs, probe_labels, probe_idx) =
        pick(&budget::stratified_subset(train_labels, scale.evidence_graphs, config.seed, "evidence-graphs"));
    let mut candidates = Vec::new();
    let mut nulls = Vec::new();
    let mut rng = rng_for(config.seed, "evidence-positions");
    let mut null_rng = rng_for(config.seed, "null-patches");
    for size in candidate_sizes(config, sample) {
        let positions = least_important_nodes(train_importance, size);
        let rec_positions: Vec<Vec<usize>> = rec_idx.iter().map(|&i| positions[i].clone()).collect();
        let recovered: RecoveredTrigger =
            recover_size(model, &rec_graphs, &rec_labels, &rec_positions, size, &config.recovery, config.seed, progress)?;
        let count = scale.evidence_placements;
        let random = random_placements(&probe_graphs, size, count, &mut rng);
        let placements: Vec<Vec<Vec<usize>>> = probe_idx
            .iter()
            .enumerate()
            .map(|(k, &g)| {
                let mut sets = vec![positions[g].clone()];
                sets.extend(random[k * count..(k + 1) * count].iter().cloned());
                sets
            })
            .collect();
        let probe = evidence::EvidenceProbe::new(model, &probe_graphs, &placements, size)?;
        let evidence: TriggerEvidence = probe.measure(model, &recovered.trigger, None)?;
        let mut candidate = Candidate {
            recovered,
            evidence,
            source: TriggerSource::Generator,
            generator_score: None,
            census_patterns: 0,
            census: Vec::new(),
        };
        if config.recovery.census {
            census_pick(model, &probe, &mut candidate, &rec_graphs, &rec_labels, &rec_positions, config)?;
        }
        let (evidence, patches) = probe.measure_against_null(
            model,
            &candidate.recovered.trigger,
            &probe_graphs,
            &probe_labels,
            config.null_draws,
            &mut null_rng,
        )?;
        candidate.evidence = evidence;
        candidates.push(candidate);
        nulls.push((probe, patches));
    }
    Ok((candidates, nulls))
}

/// The clean sample's graphs for recovery and unlearning, and those held out to measure.
struct SampleSplit<'s> {
    train_graphs: Vec<&'s Graph>,
    train_labels: Vec<usize>,
    holdout_graphs: Vec<&'s Graph>,
    holdout_labels: Vec<usize>,
}

impl<'s> SampleSplit<'s> {
    /// Splits `sample` as `config` says, refusing a fixed trigger size no graph can carry and a
    /// split that leaves recovery fewer than two graphs.
    fn of(sample: &'s Dataset, config: &PurifyConfig) -> Result<SampleSplit<'s>> {
        if let Some(n) = config.trigger_nodes {
            // Smaller graphs take a prefix of the trigger; one larger than every graph is no trigger.
            let largest = sample.graphs.iter().map(|g| g.num_nodes).max().unwrap_or(0);
            if n > largest {
                return Err(Error::setting(
                    "trigger_nodes",
                    format!("must be at most {largest}, the size of the clean sample's largest graph, got {n}"),
                ));
            }
        }
        let (train_idx, holdout_idx) = split_sample(sample, config.holdout_fraction, config.seed);
        let train_graphs: Vec<&Graph> = train_idx.iter().map(|&i| &sample.graphs[i]).collect();
        let holdout_graphs: Vec<&Graph> = holdout_idx.iter().map(|&i| &sample.graphs[i]).collect();
        if train_graphs.len() < 2 {
            return Err(Error::invalid(format!(
                "the clean sample is too small: {} graph(s) left for recovery after holding out {}",
                train_graphs.len(),
                holdout_graphs.len()
            )));
        }
        Ok(SampleSplit {
            train_labels: train_graphs.iter().map(|g| g.label).collect(),
            holdout_labels: holdout_graphs.iter().map(|g| g.label).collect(),
            train_graphs,
            holdout_graphs,
        })
    }
}

/// The candidates unlearning removes: the judged one first, then (robust mode) every other size
/// that points at the same target with evidence of a backdoor. A pattern containing the
/// attacker's trigger flips at least as many graphs as the trigger itself, so the highest score
/// can belong to a larger pattern whose unlearning does not carry over (a 5-clique for a 4-node
/// trigger on AIDS).
fn candidates_to_unlearn(candidates: &[Candidate], selected: usize, config: &PurifyConfig) -> Vec<usize> {
    let target = candidates[selected].evidence.target;
    let mut chosen = vec![selected];
    if config.unlearn.mode == UnlearnMode::Robust {
        chosen.extend((0..candidates.len()).filter(|&i| {
            let e = &candidates[i].evidence;
            i != selected && e.target == target && e.score >= config.evidence_threshold
        }));
    }
    chosen
}

/// Runs G-Cleaner on `model` with the clean `sample` (already mapped to the model's classes).
pub fn purify(model: &GnnModel, sample: &Dataset, config: &PurifyConfig, progress: &mut dyn Progress) -> Result<PurifyOutcome> {
    let started = Instant::now();
    // A bad setting fails now, not after the recovery.
    config.validate()?;
    let _threads = crate::threads::IntraOpThreads::set(crate::threads::SMALL_GRAPH_THREADS);
    let relabelled;
    let sample = if config.pseudo_labels {
        relabelled = pseudo_labels::pseudo_label(model, sample)?;
        &relabelled
    } else {
        sample
    };
    crate::models::check_sample(model, sample)?;
    let SampleSplit { train_graphs, train_labels, holdout_graphs, holdout_labels } = SampleSplit::of(sample, config)?;

    let t = Instant::now();
    let train_importance = importance(model, &train_graphs, config.explainer)?;
    let holdout_importance =
        if holdout_graphs.is_empty() { Vec::new() } else { importance(model, &holdout_graphs, config.explainer)? };
    let explain_s = t.elapsed().as_secs_f64();

    let t = Instant::now();
    let scale = budget::WorkScale::plan(&train_graphs, config.recovery.batch_edges, config.copy_edges, config.unlearn.positions);
    let (candidates, nulls) =
        recover_candidates(model, sample, &train_graphs, &train_labels, &train_importance, &scale, config, progress)?;
    // Unlearning and the held-out measurements place copies as the budget allows.
    let mut scaled = config.clone();
    scaled.unlearn.positions = scale.unlearning_placements;
    let requested = config;
    let config = &scaled;
    let recovery_s = t.elapsed().as_secs_f64();

    let selected = select_candidate(&candidates);
    let chosen = &candidates[selected];
    let backdoor = chosen.evidence.score >= config.evidence_threshold;
    let trigger = chosen.recovered.trigger.clone();
    let target = chosen.evidence.target;

    let holdout_set = UnlearnSet {
        graphs: holdout_graphs.clone(),
        labels: holdout_labels.clone(),
        node_order: least_important_nodes(&holdout_importance, usize::MAX),
    };
    let (before, predicted_before) = report::measure_holdout(model, &holdout_set, &trigger, target, config)?;

    let t = Instant::now();
    let mut purified = model.try_clone()?;
    let mut unlearned_candidates = Vec::new();
    let outcome = if config.mode == RunMode::Purify && (backdoor || config.force) {
        let train_set = UnlearnSet {
            graphs: train_graphs.clone(),
            labels: train_labels.clone(),
            node_order: least_important_nodes(&train_importance, usize::MAX),
        };
        unlearned_candidates = candidates_to_unlearn(&candidates, selected, config);
        let mut triggers: Vec<_> = unlearned_candidates.iter().map(|&i| candidates[i].recovered.trigger.clone()).collect();
        if config.unlearn.mode == UnlearnMode::Robust {
            triggers.extend(dense_cores(&trigger, &candidates, &unlearned_candidates));
        }
        // Only the excess goes: unlearning has converged once the trigger flips no more of the
        // copies than natural patches do on the model as it is then.
        let (probe, patches) = &nulls[selected];
        let natural = |m: &GnnModel| probe.null_flip_rate(m, patches, target);
        Some(unlearn_toward(
            &mut purified,
            &train_set,
            &holdout_set,
            &triggers,
            target,
            &config.unlearn,
            Some(&natural),
            config.seed,
            progress,
        )?)
    } else {
        None
    };
    let unlearning_s = t.elapsed().as_secs_f64();

    let t = Instant::now();
    let (after, predicted_after) = report::measure_holdout(&purified, &holdout_set, &trigger, target, config)?;
    let change = report::HoldoutChange::between(&predicted_before, &predicted_after, &holdout_labels);
    let holdout = HoldoutReport { before, after, change };
    let train_positions = least_important_nodes(&train_importance, trigger.size);
    let projection = report::Projection {
        before: report::project_embeddings(model, &train_graphs, &train_labels, &train_positions, &trigger)?,
        after: report::project_embeddings(&purified, &train_graphs, &train_labels, &train_positions, &trigger)?,
    };
    let evaluation_s = t.elapsed().as_secs_f64();

    let mut verdict = Verdict::new(chosen, config.evidence_threshold, outcome.is_some());
    if config.mode == RunMode::Scan {
        verdict = verdict.scanned();
    }
    let report = PurifyReport {
        format: report::REPORT_FORMAT.to_string(),
        input_sha256: None,
        spec: model.spec().clone(),
        config: requested.clone(),
        work: Some(scale),
        sample: report::SampleInfo {
            n_total: sample.len(),
            n_unlearning: train_graphs.len(),
            n_holdout: holdout_graphs.len(),
            class_counts: sample.class_counts(),
        },
        verdict,
        candidates,
        selected,
        unlearned_candidates,
        trigger,
        unlearning: outcome,
        warnings: holdout.warnings(),
        holdout,
        attack: None,
        projection: Some(projection),
        timings: Timings { explain_s, recovery_s, unlearning_s, evaluation_s, total_s: started.elapsed().as_secs_f64() },
    };
    Ok(PurifyOutcome { model: purified, report })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_without_meaning_are_refused_and_named() {
        assert!(PurifyConfig::default().validate().is_ok());
        assert!(PurifyConfig::auxiliary().validate().is_ok());
        let refused = |config: PurifyConfig, path: &str| match config.validate().unwrap_err() {
            Error::Setting { path: named, .. } => assert_eq!(named, path),
            other => panic!("{path}: not a setting error: {other}"),
        };
        let d = PurifyConfig::default;
        refused(PurifyConfig { holdout_fraction: 1.0, ..d() }, "holdout_fraction");
        refused(PurifyConfig { evidence_threshold: f64::NAN, ..d() }, "evidence_threshold");
        refused(PurifyConfig { trigger_nodes: Some(1), ..d() }, "trigger_nodes");
        refused(
            PurifyConfig { recovery: RecoveryConfig { sizes: vec![], ..RecoveryConfig::default() }, ..d() },
            "recovery.sizes",
        );
        refused(
            PurifyConfig { recovery: RecoveryConfig { restarts: 0, ..RecoveryConfig::default() }, ..d() },
            "recovery.restarts",
        );
        refused(
            PurifyConfig { recovery: RecoveryConfig { threshold: 1.5, ..RecoveryConfig::default() }, ..d() },
            "recovery.threshold",
        );
        refused(PurifyConfig { unlearn: UnlearnConfig { lr: 0.0, ..UnlearnConfig::default() }, ..d() }, "unlearn.lr");
        refused(
            PurifyConfig { unlearn: UnlearnConfig { batch_size: 0, ..UnlearnConfig::default() }, ..d() },
            "unlearn.batch_size",
        );
    }
    use crate::purify::evidence::TriggerEvidence;
    use crate::purify::recovery::Pattern;

    fn candidate(size: usize, score: f64, objective: f64) -> Candidate {
        Candidate {
            recovered: RecoveredTrigger {
                trigger: Pattern { size, edges: vec![(0, 1)], slot_features: None },
                objective,
                mean_similarity: 0.0,
                restart: 0,
                restart_objectives: vec![objective],
            },
            evidence: TriggerEvidence {
                target: 1,
                base_share: 0.5,
                triggered_share: 0.5,
                flip_rate: score,
                score,
                n_flip_candidates: 10,
                clean_shares: vec![0.5, 0.5],
                triggered_shares: vec![0.5, 0.5],
                null: None,
            },
            source: TriggerSource::Generator,
            generator_score: None,
            census_patterns: 0,
            census: Vec::new(),
        }
    }

    #[test]
    fn the_strongest_excess_is_judged_and_ties_go_to_the_smaller_pattern() {
        let sizes = [candidate(2, 0.1, 0.5), candidate(3, 0.6, 0.4), candidate(4, 0.9, 0.3), candidate(5, 0.9, 0.2)];
        assert_eq!(select_candidate(&sizes), 2);
        let shuffled = [candidate(5, 0.9, 0.2), candidate(4, 0.9, 0.3), candidate(3, 0.6, 0.4)];
        assert_eq!(select_candidate(&shuffled), 1);
        // Equal sizes and scores: the lower objective.
        let tied = [candidate(4, 0.3, 0.5), candidate(4, 0.3, 0.1)];
        assert_eq!(select_candidate(&tied), 1);
    }

    #[test]
    fn the_densest_cores_of_the_judged_pattern_are_unlearned_too() {
        // A 4-clique on slots 0-3 with two pendant slots.
        let mut edges: Vec<(usize, usize)> = vec![(0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3), (0, 4), (1, 5)];
        edges.sort_unstable();
        let pattern = Pattern { size: 6, edges, slot_features: None };
        let candidates = [candidate(2, 0.0, 0.0), candidate(3, 0.0, 0.0), candidate(4, 0.0, 0.0), candidate(6, 0.5, 0.0)];
        let cores = dense_cores(&pattern, &candidates, &[3]);
        let shapes: Vec<(usize, usize)> = cores.iter().map(|t| (t.size, t.edges.len())).collect();
        // Sizes 3 and 4 (not 2: below half the pattern): a triangle and the 4-clique.
        assert_eq!(shapes, [(3, 3), (4, 6)]);
        // A size already unlearned as a candidate of its own is not added again.
        assert_eq!(dense_cores(&pattern, &candidates, &[3, 2]).len(), 1);
    }

    #[test]
    fn the_target_is_the_class_with_evidence_over_the_most_sizes() {
        // One size sends graphs to class 0 strongly; two sizes send them to class 1.
        let mut sizes = [candidate(3, 0.45, 0.4), candidate(4, 0.5, 0.3), candidate(5, 0.65, 0.2)];
        sizes[2].evidence.target = 0;
        assert_eq!(select_candidate(&sizes), 1);
        // Alone, the class-0 pattern would have been chosen.
        sizes[0].evidence.target = 0;
        assert_eq!(select_candidate(&sizes), 2);
    }

    #[test]
    fn small_graphs_are_still_searched_for_four_node_motifs() {
        let graph = |n: usize| Graph {
            num_nodes: n,
            edges: (1..n as u32).map(|v| (v - 1, v)).collect(),
            node_labels: None,
            node_attributes: None,
            label: 0,
        };
        let dataset =
            |n: usize| Dataset { name: "sample".into(), graphs: (0..4).map(|_| graph(n)).collect(), class_labels: vec![0, 1] };
        let sample = dataset(8);
        assert_eq!(candidate_sizes(&PurifyConfig::default(), &sample), vec![2, 3, 4]);
        let large = dataset(20);
        assert_eq!(candidate_sizes(&PurifyConfig::default(), &large), vec![2, 3, 4, 5, 6]);
        // Graphs of 60 nodes: 10%, 20% and 30% of them besides the small sizes.
        assert_eq!(candidate_sizes(&PurifyConfig::default(), &dataset(60)), vec![2, 3, 4, 5, 6, 12, 18]);
        let fixed = PurifyConfig { trigger_nodes: Some(7), ..PurifyConfig::default() };
        assert_eq!(candidate_sizes(&fixed, &sample), vec![7]);
    }
}
