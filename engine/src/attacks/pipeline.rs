//! An attack end to end, as `gcleaner attack` runs it: split the dataset, train a clean
//! reference model, build and plant the trigger, train the backdoored model on the poisoned
//! training split, and measure both models on held-out graphs neither was trained on.
//!
//! Split: a seeded 80/20 train/held-out split of the whole dataset. The held-out part is cut
//! into the defender's clean sample (`defender_fraction` of the *whole* dataset, stratified by
//! class) and the evaluation graphs (the rest), so the graphs a purifier learns from are never
//! the graphs its success is measured on.

use std::path::Path;
use std::time::Instant;

use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};
use tch::Device;

use super::description::{AttackDescription, AttackKind, TriggerDescription};
use super::evaluate::{
    evaluate_sets, AttackMetrics, ATTACK_FILE, CLEAN_MODEL_FILE, DEFENDER_FILE, EVAL_CLEAN_FILE, EVAL_TRIGGERED_FILE,
    METRICS_FILE, MODEL_FILE,
};
use super::gta::{gta_attack, GtaConfig};
use super::motif::{count_motifs, Motif, MotifCounts};
use super::placement::{Placement, PlacementKind};
use super::poison::{
    check_ratio, check_trigger_fits, poison_training_set, resolve_target_class, select_poisoned, triggered_eval_set,
    AttackParams, InjectedGraph, DEFAULT_INJECTION_RATIO, DEFAULT_TARGET_LABEL, DEFAULT_TRIGGER_RATIO,
};
use super::trigger::{Trigger, DEFAULT_TRIGGER_DENSITY};
use crate::data::batch::make_batches;
use crate::data::json::write_json_dataset;
use crate::data::split::train_test_split;
use crate::data::{Dataset, FeatureSpec, Graph};
use crate::explain::gnnexplainer::{self, GnnExplainerConfig};
use crate::models::{Arch, GnnModel, ModelSpec, SPEC_FORMAT};
use crate::progress::{Progress, ProgressEvent};
use crate::rng::rng_for;
use crate::train::{train, TrainConfig};
use crate::{Error, Result};

pub const DEFAULT_DEFENDER_FRACTION: f64 = 0.03;
pub const DEFAULT_TRAIN_FRACTION: f64 = 0.8;
pub use crate::train::DEFAULT_BATCH_SIZE;
pub const DEFAULT_HIDDEN: usize = 64;
pub const DEFAULT_SEED: u64 = 10;

/// Everything an attack run is parameterised by.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttackConfig {
    pub attack: AttackKind,
    pub arch: Arch,
    pub hidden: usize,
    /// Message-passing layers; `None`: the architecture's published count.
    pub num_layers: Option<usize>,
    /// Node features; `None`: [`FeatureSpec::default_for`] the dataset (one-hot degree).
    pub features: Option<FeatureSpec>,
    /// The target as the dataset file labels it (MUTAG: -1 or 1).
    pub target_label: i64,
    pub injection_ratio: f64,
    pub trigger_ratio: f64,
    /// Edge probability of the Erdos-Renyi trigger (Sub-BA, Exp-BA).
    pub density: f64,
    /// Motif-BA's trigger; `None`: the least frequent motif of the training graphs.
    pub motif: Option<Motif>,
    /// Size of the defender's clean sample as a share of the whole dataset.
    pub defender_fraction: f64,
    /// Share of the dataset in the training split (the rest is held out).
    pub train_fraction: f64,
    pub batch_size: usize,
    /// Training of both models; its `seed` is replaced by [`AttackConfig::seed`].
    pub train: TrainConfig,
    /// Exp-BA's explainer; its `seed` is replaced by [`AttackConfig::seed`].
    pub explainer: GnnExplainerConfig,
    /// GTA's generators and bi-level schedule.
    pub gta: GtaConfig,
    /// Seeds the split, the trigger, the poisoned graphs, the positions and the models.
    pub seed: u64,
    /// Build both models from this spec instead of `arch`, `hidden`, `num_layers` and
    /// `features` (e.g. a `gcleaner.model/v2` spec of PyG's model classes); its class labels
    /// are the dataset's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<ModelSpec>,
    #[serde(skip, default = "cpu")]
    pub device: Device,
}

fn cpu() -> Device {
    Device::Cpu
}

impl AttackConfig {
    /// The published attacks' defaults for `attack` with `arch`.
    pub fn new(attack: AttackKind, arch: Arch) -> AttackConfig {
        AttackConfig {
            attack,
            arch,
            hidden: DEFAULT_HIDDEN,
            num_layers: None,
            features: None,
            target_label: DEFAULT_TARGET_LABEL,
            injection_ratio: DEFAULT_INJECTION_RATIO,
            trigger_ratio: DEFAULT_TRIGGER_RATIO,
            density: DEFAULT_TRIGGER_DENSITY,
            motif: None,
            defender_fraction: DEFAULT_DEFENDER_FRACTION,
            train_fraction: DEFAULT_TRAIN_FRACTION,
            batch_size: DEFAULT_BATCH_SIZE,
            train: TrainConfig::default(),
            explainer: GnnExplainerConfig::default(),
            gta: GtaConfig::default(),
            seed: DEFAULT_SEED,
            model: None,
            device: Device::Cpu,
        }
    }

    fn train_config(&self) -> TrainConfig {
        TrainConfig { seed: self.seed, ..self.train.clone() }
    }

    /// The spec both models are built with.
    pub fn model_spec(&self, ds: &Dataset) -> ModelSpec {
        if let Some(spec) = &self.model {
            return ModelSpec { class_labels: Some(ds.class_labels.clone()), ..spec.clone() };
        }
        let features = self.features.clone().unwrap_or_else(|| FeatureSpec::default_for(ds));
        ModelSpec {
            format: SPEC_FORMAT.to_string(),
            arch: self.arch,
            in_features: features.dim(),
            hidden: self.hidden,
            num_classes: ds.num_classes(),
            num_layers: self.num_layers.unwrap_or_else(|| self.arch.default_layers()),
            pooling: self.arch.default_pooling(),
            features,
            class_labels: Some(ds.class_labels.clone()),
            pyg: None,
        }
    }

    /// Checks every parameter against `ds` before anything is trained; returns the target's
    /// class index.
    pub fn validate(&self, ds: &Dataset) -> Result<usize> {
        if ds.is_empty() {
            return Err(Error::invalid(format!("dataset {:?} holds no graphs", ds.name)));
        }
        if ds.num_classes() < 2 {
            return Err(Error::invalid(format!(
                "dataset {:?} has {} class(es); a backdoor needs at least 2",
                ds.name,
                ds.num_classes()
            )));
        }
        let target_class = resolve_target_class(ds, self.target_label)?;
        check_ratio("injection ratio", self.injection_ratio)?;
        check_ratio("trigger ratio", self.trigger_ratio)?;
        check_ratio("trigger density", self.density)?;
        check_ratio("defender fraction", self.defender_fraction)?;
        if !(self.train_fraction > 0.0 && self.train_fraction < 1.0) {
            return Err(Error::invalid(format!("train fraction must be strictly between 0 and 1, got {}", self.train_fraction)));
        }
        if self.batch_size == 0 {
            return Err(Error::invalid("batch size must be at least 1"));
        }
        self.train_config().validate()?;
        self.explainer.validate()?;
        if self.attack == AttackKind::Gta {
            self.gta.validate(self.train.epochs)?;
        }
        let spec = self.model_spec(ds);
        spec.validate()?;
        if spec.num_classes != ds.num_classes() {
            return Err(Error::invalid(format!(
                "the model spec has {} classes but dataset {:?} has {}",
                spec.num_classes,
                ds.name,
                ds.num_classes()
            )));
        }
        if let Some(i) = ds.graphs.iter().position(|g| g.num_nodes == 0) {
            return Err(Error::invalid(format!(
                "graph {i} of dataset {:?} has no nodes; drop node-less graphs before attacking",
                ds.name
            )));
        }
        Ok(target_class)
    }
}

/// How the dataset was divided.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttackSplit {
    pub train: Vec<usize>,
    /// The defender's clean sample, sorted.
    pub defender: Vec<usize>,
    /// Clean evaluation graphs, sorted.
    pub eval: Vec<usize>,
}

/// The seeded train / defender / evaluation split: `train_test_split(n, train_fraction, seed)`,
/// then `max(1, round(defender_fraction * n))` held-out graphs for the defender, stratified by
/// class (largest remainders; every class present in the held-out part gets one graph when the
/// sample has room for all of them), the rest for evaluation.
pub fn split_for_attack(ds: &Dataset, train_fraction: f64, defender_fraction: f64, seed: u64) -> Result<AttackSplit> {
    check_ratio("defender fraction", defender_fraction)?;
    let (train, heldout) = train_test_split(ds.len(), train_fraction, seed);
    let wanted = ((defender_fraction * ds.len() as f64).round() as usize).max(1);
    if wanted >= heldout.len() {
        return Err(Error::invalid(format!(
            "defender fraction {defender_fraction} asks for {wanted} of the {} graphs of dataset \
             {:?}, but the held-out split has only {} and must keep some for evaluation",
            ds.len(),
            ds.name,
            heldout.len()
        )));
    }
    let mut by_class: Vec<Vec<usize>> = vec![Vec::new(); ds.num_classes()];
    for &i in &heldout {
        by_class[ds.graphs[i].label].push(i);
    }
    let mut rng = rng_for(seed, "attack/defender-sample");
    for members in &mut by_class {
        members.sort_unstable();
        members.shuffle(&mut rng);
    }
    let quotas = stratified_quotas(&by_class.iter().map(Vec::len).collect::<Vec<_>>(), wanted);
    let mut defender = Vec::with_capacity(wanted);
    let mut eval = Vec::with_capacity(heldout.len() - wanted);
    for (members, quota) in by_class.iter().zip(quotas) {
        defender.extend_from_slice(&members[..quota]);
        eval.extend_from_slice(&members[quota..]);
    }
    defender.sort_unstable();
    eval.sort_unstable();
    Ok(AttackSplit { train, defender, eval })
}

/// Splits `total` items over groups of the given sizes in proportion, by largest remainder,
/// with one item for every non-empty group first when `total` allows.
fn stratified_quotas(sizes: &[usize], total: usize) -> Vec<usize> {
    let available: usize = sizes.iter().sum();
    let total = total.min(available);
    let non_empty = sizes.iter().filter(|&&s| s > 0).count();
    let mut quotas = vec![0usize; sizes.len()];
    let mut left = total;
    if total >= non_empty {
        for (q, &s) in quotas.iter_mut().zip(sizes) {
            if s > 0 {
                *q = 1;
                left -= 1;
            }
        }
    }
    if left == 0 || available == 0 {
        return quotas;
    }
    // Share out the rest in proportion to what each group still has.
    let remaining: Vec<usize> = sizes.iter().zip(&quotas).map(|(&s, &q)| s - q).collect();
    let remaining_total: usize = remaining.iter().sum();
    let mut order: Vec<(usize, f64)> = Vec::with_capacity(sizes.len());
    for (c, &r) in remaining.iter().enumerate() {
        let exact = left as f64 * r as f64 / remaining_total as f64;
        let whole = (exact.floor() as usize).min(r);
        quotas[c] += whole;
        order.push((c, exact - whole as f64));
    }
    let mut assigned: usize = quotas.iter().sum();
    order.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    while assigned < total {
        let mut progressed = false;
        for &(c, _) in &order {
            if assigned < total && quotas[c] < sizes[c] {
                quotas[c] += 1;
                assigned += 1;
                progressed = true;
            }
        }
        if !progressed {
            break;
        }
    }
    quotas
}

/// Measurements of one attack run (metrics.json).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttackRunMetrics {
    pub dataset: String,
    pub attack: AttackKind,
    pub name: String,
    pub arch: Arch,
    pub seed: u64,
    pub epochs: usize,
    /// The target as the dataset labels it, and as a class index.
    pub target_label: i64,
    pub target_class: usize,
    pub trigger_nodes: usize,
    pub sizes: AttackSizes,
    /// The model trained on the unpoisoned training split: its ASR is the rate at which a
    /// never-backdoored model already sends triggered graphs to the target.
    pub clean_model: AttackMetrics,
    pub backdoored_model: AttackMetrics,
    /// Clean accuracy of the clean model minus that of the backdoored one (points of 1.0).
    pub accuracy_drop: f64,
    /// Whether the clean model was given (trained by an earlier run) instead of trained here.
    pub clean_model_reused: bool,
    /// How well each model fits the graphs it was trained on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub training_fit: Option<TrainingFit>,
    pub timings: AttackTimings,
    pub device: String,
}

/// Accuracy of each model on its own training split, and the share of the poisoned training
/// graphs the backdoored model assigns to the target: a backdoor that fits the poisoned graphs
/// but shows a low ASR did not generalise; one that does not even fit them was not learned.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainingFit {
    pub clean_model_accuracy: f64,
    pub backdoored_model_accuracy: f64,
    pub poisoned_fit: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttackSizes {
    pub n_graphs: usize,
    pub n_train: usize,
    pub n_poisoned: usize,
    pub n_heldout: usize,
    pub n_defender: usize,
    pub n_eval_clean: usize,
    pub n_eval_triggered: usize,
}

/// Wall-clock seconds of each phase.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AttackTimings {
    pub clean_training_s: f64,
    /// Building the trigger: motif counting, explanations (Exp-BA), the generators (GTA).
    pub trigger_s: f64,
    pub backdoor_training_s: f64,
    pub evaluation_s: f64,
    pub total_s: f64,
}

/// What an attack run produces.
pub struct AttackOutcome {
    /// Trained on the poisoned training split.
    pub model: GnnModel,
    /// Trained the same way on the unpoisoned training split.
    pub clean_model: GnnModel,
    pub description: AttackDescription,
    /// The defender's clean sample, true labels.
    pub defender: Dataset,
    /// Clean held-out evaluation graphs.
    pub eval_clean: Dataset,
    /// The clean evaluation graphs whose class is not the target, triggered, true labels kept.
    pub eval_triggered: Dataset,
    pub metrics: AttackRunMetrics,
    /// The dataset with the poisoned graphs as the backdoored model was trained on them, and
    /// the training split's indices into it: what a training-time defence (ABL) gets to see.
    pub poisoned_dataset: Dataset,
    pub train_indices: Vec<usize>,
}

/// The backdoor half of an attack: what differs between the four attacks.
pub(crate) struct Backdoor {
    pub model: GnnModel,
    pub trigger: TriggerDescription,
    pub placement: PlacementKind,
    pub poisoned_indices: Vec<usize>,
    pub triggered_eval: Vec<InjectedGraph>,
    pub density: Option<f64>,
    pub motif: Option<Motif>,
    pub trigger_s: f64,
    pub backdoor_training_s: f64,
    /// The dataset with the poisoned graphs as the model was last trained on them.
    pub poisoned_dataset: Dataset,
}

/// Everything the attacks share while they run.
pub(crate) struct AttackContext<'a> {
    pub ds: &'a Dataset,
    pub config: &'a AttackConfig,
    pub params: AttackParams,
    pub spec: ModelSpec,
    pub split: &'a AttackSplit,
    pub clean_model: &'a GnnModel,
    /// Motif-BA's motif, resolved before anything is trained.
    pub motif: Option<Motif>,
}

impl AttackContext<'_> {
    /// Trains a fresh model on the training indices of `ds` (the clean or a poisoned copy).
    pub fn train_model(&self, ds: &Dataset, phase: &str, progress: &mut dyn Progress) -> Result<GnnModel> {
        train_fresh(ds, &self.split.train, self.config, &self.spec, phase, progress)
    }

    /// The held-out evaluation graphs that get a trigger (class not the target).
    pub fn eval_targets(&self) -> Vec<usize> {
        let target = self.params.target_class;
        self.split.eval.iter().copied().filter(|&i| self.ds.graphs[i].label != target).collect()
    }
}

/// A freshly initialised model, the same initial weights for every model of a run.
pub(crate) fn new_model(spec: &ModelSpec, config: &AttackConfig) -> Result<GnnModel> {
    let _torch_seed = crate::rng::seed_torch(config.seed);
    GnnModel::new(spec.clone(), config.device)
}

/// Trains a fresh model on `train_indices` of `ds`.
fn train_fresh(
    ds: &Dataset,
    train_indices: &[usize],
    config: &AttackConfig,
    spec: &ModelSpec,
    phase: &str,
    progress: &mut dyn Progress,
) -> Result<GnnModel> {
    let mut model = new_model(spec, config)?;
    let batches = make_batches(ds, train_indices, config.batch_size, &spec.features, config.device)?;
    train(&mut model, &batches, &config.train_config(), &mut Renamed { inner: progress, phase })?;
    Ok(model)
}

/// Reports a wrapped phase under another name (the training loop always says "training").
pub(crate) struct Renamed<'a, 'b> {
    pub inner: &'a mut dyn Progress,
    pub phase: &'b str,
}

impl Progress for Renamed<'_, '_> {
    fn step(&mut self, event: ProgressEvent<'_>) -> bool {
        self.inner.step(ProgressEvent { phase: self.phase, ..event })
    }
}

/// Runs the attack `config` describes on `ds`, training the clean reference model too.
pub fn run_attack(ds: &Dataset, config: &AttackConfig, progress: &mut dyn Progress) -> Result<AttackOutcome> {
    run_attack_with_clean_model(ds, config, None, progress)
}

/// [`run_attack`], reusing `clean_model` when given: a model trained by an earlier run on the
/// same dataset with the same seed, architecture, features and training settings (its spec is
/// checked; that it saw the same split is the caller's promise). Attacks of one dataset and
/// seed share their clean model, which saves a third of a benchmark sweep.
pub fn run_attack_with_clean_model(
    ds: &Dataset,
    config: &AttackConfig,
    clean_model: Option<GnnModel>,
    progress: &mut dyn Progress,
) -> Result<AttackOutcome> {
    let started = Instant::now();
    let target_class = config.validate(ds)?;
    let spec = config.model_spec(ds);
    let params = AttackParams {
        target_class,
        injection_ratio: config.injection_ratio,
        trigger_ratio: config.trigger_ratio,
        seed: config.seed,
    };
    let split = split_for_attack(ds, config.train_fraction, config.defender_fraction, config.seed)?;
    // Fail on parameters that poisoning would reject before spending minutes on training.
    select_poisoned(ds, &split.train, target_class, config.injection_ratio, config.seed)?;
    let t = Instant::now();
    let motif = resolve_motif(ds, config, &split, &params)?;
    let motif_s = t.elapsed().as_secs_f64();
    if !split.eval.iter().any(|&i| ds.graphs[i].label != target_class) {
        return Err(Error::invalid(format!(
            "no held-out evaluation graph of dataset {:?} has a class other than the target: \
             the attack success rate cannot be measured",
            ds.name
        )));
    }

    let t = Instant::now();
    let clean_model_reused = clean_model.is_some();
    let clean_model = match clean_model {
        Some(model) => checked_clean_model(model, &spec)?,
        None => train_fresh(ds, &split.train, config, &spec, "clean model", progress)?,
    };
    let clean_training_s = t.elapsed().as_secs_f64();

    let ctx = AttackContext { ds, config, params: params.clone(), spec, split: &split, clean_model: &clean_model, motif };
    let mut backdoor = match config.attack {
        AttackKind::Subgraph | AttackKind::Exp | AttackKind::Motif => fixed_trigger_attack(&ctx, progress)?,
        AttackKind::Gta => gta_attack(&ctx, progress)?,
    };

    backdoor.trigger_s += motif_s;

    let t = Instant::now();
    let description = describe(ds, config, params, &split, &mut backdoor);

    let defender = ds.subset(&split.defender);
    let eval_clean = ds.subset(&split.eval);
    let eval_triggered = Dataset {
        name: ds.name.clone(),
        graphs: backdoor.triggered_eval.into_iter().map(|g| g.graph).collect(),
        class_labels: ds.class_labels.clone(),
    };
    let clean_metrics = evaluate_sets(&clean_model, &eval_clean, &eval_triggered, target_class)?;
    let backdoored_metrics = evaluate_sets(&backdoor.model, &eval_clean, &eval_triggered, target_class)?;
    let training_fit = TrainingFit {
        clean_model_accuracy: accuracy_on(&clean_model, &ds.subset(&split.train))?,
        backdoored_model_accuracy: accuracy_on(&backdoor.model, &backdoor.poisoned_dataset.subset(&split.train))?,
        poisoned_fit: accuracy_on(&backdoor.model, &backdoor.poisoned_dataset.subset(&description.poisoned_indices))?,
    };
    let evaluation_s = t.elapsed().as_secs_f64();

    let metrics = AttackRunMetrics {
        dataset: ds.name.clone(),
        attack: config.attack,
        name: config.attack.paper_name().to_string(),
        arch: config.model.as_ref().map_or(config.arch, |spec| spec.arch),
        seed: config.seed,
        epochs: config.train.epochs,
        target_label: config.target_label,
        target_class,
        trigger_nodes: description.trigger.num_nodes(),
        sizes: AttackSizes {
            n_graphs: ds.len(),
            n_train: split.train.len(),
            n_poisoned: description.poisoned_indices.len(),
            n_heldout: split.defender.len() + split.eval.len(),
            n_defender: defender.len(),
            n_eval_clean: eval_clean.len(),
            n_eval_triggered: eval_triggered.len(),
        },
        accuracy_drop: clean_metrics.clean_accuracy - backdoored_metrics.clean_accuracy,
        clean_model: clean_metrics,
        backdoored_model: backdoored_metrics,
        clean_model_reused,
        training_fit: Some(training_fit),
        timings: AttackTimings {
            clean_training_s,
            trigger_s: backdoor.trigger_s,
            backdoor_training_s: backdoor.backdoor_training_s,
            evaluation_s,
            total_s: started.elapsed().as_secs_f64(),
        },
        device: format!("{:?}", config.device),
    };
    Ok(AttackOutcome {
        model: backdoor.model,
        clean_model,
        description,
        defender,
        eval_clean,
        eval_triggered,
        metrics,
        poisoned_dataset: backdoor.poisoned_dataset,
        train_indices: split.train.clone(),
    })
}

/// Motif-BA's motif (the configured one, or the training graphs' least frequent), checked to fit
/// the dataset's graphs; the other attacks check their trigger size instead and have none.
fn resolve_motif(ds: &Dataset, config: &AttackConfig, split: &AttackSplit, params: &AttackParams) -> Result<Option<Motif>> {
    if config.attack != AttackKind::Motif {
        params.trigger_size(ds)?;
        return Ok(None);
    }
    let motif = match config.motif {
        Some(m) => m,
        None => training_motif_counts(ds, &split.train).least_frequent(),
    };
    check_trigger_fits(ds, motif.num_nodes())?;
    Ok(Some(motif))
}

/// A clean model handed in for reuse, refused unless it is the model this attack would train.
fn checked_clean_model(model: GnnModel, spec: &ModelSpec) -> Result<GnnModel> {
    if model.spec() != spec {
        return Err(Error::invalid(format!(
            "the given clean model does not match this attack's model: its spec is {} \
             but this run builds {}",
            model.spec().to_json(),
            spec.to_json()
        )));
    }
    Ok(model)
}

/// The attack file's description of what was planted, where, and on which graphs.
fn describe(
    ds: &Dataset,
    config: &AttackConfig,
    params: AttackParams,
    split: &AttackSplit,
    backdoor: &mut Backdoor,
) -> AttackDescription {
    let mut description = AttackDescription::new(
        config.attack,
        params,
        config.target_label,
        backdoor.placement,
        backdoor.trigger.clone(),
        config.seed,
        std::mem::take(&mut backdoor.poisoned_indices),
    );
    description.density = backdoor.density;
    description.motif = backdoor.motif;
    description.dataset = Some(ds.name.clone());
    description.defender_indices = split.defender.clone();
    description.eval_indices = split.eval.clone();
    description
}

/// Sub-BA, Exp-BA and Motif-BA: one trigger for every graph, planted where the placement says.
fn fixed_trigger_attack(ctx: &AttackContext<'_>, progress: &mut dyn Progress) -> Result<Backdoor> {
    let (ds, config, params) = (ctx.ds, ctx.config, &ctx.params);
    let t = Instant::now();
    let (trigger, density, motif) = match ctx.motif {
        Some(motif) => (motif.trigger(), None, Some(motif)),
        None => {
            let n = params.trigger_size(ds)?;
            (Trigger::erdos_renyi(n, config.density, config.seed)?, Some(config.density), None)
        }
    };
    let importance: Vec<Vec<f32>> = match config.attack {
        AttackKind::Exp => explain_attacked_graphs(ctx, progress)?,
        _ => Vec::new(),
    };
    let placement = match config.attack {
        AttackKind::Subgraph => Placement::Random,
        AttackKind::Exp => Placement::Importance(&importance),
        _ => Placement::DegreeCentrality,
    };
    let trigger_s = t.elapsed().as_secs_f64();

    let t = Instant::now();
    let poisoning = poison_training_set(ds, &ctx.split.train, &trigger, placement, params)?;
    let model = ctx.train_model(&poisoning.dataset, "backdoored model", progress)?;
    let backdoor_training_s = t.elapsed().as_secs_f64();
    let triggered_eval = triggered_eval_set(ds, &ctx.split.eval, params.target_class, &trigger, placement, config.seed)?;
    let poisoned_indices = poisoning.poisoned_indices();
    Ok(Backdoor {
        poisoned_dataset: poisoning.dataset,
        model,
        poisoned_indices,
        trigger: TriggerDescription::Fixed(trigger),
        placement: placement.kind(),
        triggered_eval,
        density,
        motif,
        trigger_s,
        backdoor_training_s,
    })
}

/// Induced motif counts over the training split (Motif-BA picks the rarest).
pub fn training_motif_counts(ds: &Dataset, train: &[usize]) -> MotifCounts {
    count_motifs(train.iter().map(|&i| &ds.graphs[i]))
}

/// Exp-BA's node importance, by GNNExplainer on the clean model, for every graph that will
/// carry the trigger (the poisoned training graphs and the triggered evaluation graphs);
/// other graphs get an empty score vector.
fn explain_attacked_graphs(ctx: &AttackContext<'_>, progress: &mut dyn Progress) -> Result<Vec<Vec<f32>>> {
    let params = &ctx.params;
    let mut attacked = select_poisoned(ctx.ds, &ctx.split.train, params.target_class, params.injection_ratio, params.seed)?;
    attacked.extend(ctx.eval_targets());
    let graphs = graphs_at(ctx.ds, &attacked);
    let explainer = GnnExplainerConfig { seed: ctx.config.seed, ..ctx.config.explainer.clone() };
    let scores = gnnexplainer::node_importance(ctx.clean_model, &graphs, &ctx.spec.features, &explainer)?;
    let mut importance = vec![Vec::new(); ctx.ds.len()];
    for (index, score) in attacked.into_iter().zip(scores) {
        importance[index] = score;
    }
    let keep_going = progress.step(ProgressEvent {
        phase: "explaining",
        step: 1,
        total: 1,
        message: format!("GNNExplainer on {} graphs", graphs.len()),
    });
    if !keep_going {
        return Err(Error::Cancelled);
    }
    Ok(importance)
}

/// Writes an attack's files into `dir` (created if missing): model.safetensors,
/// clean_model.safetensors, attack.json, defender_clean.json, eval_clean.json,
/// eval_triggered.json and metrics.json.
pub fn write_attack_dir(outcome: &AttackOutcome, dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    outcome.model.save(&dir.join(MODEL_FILE))?;
    outcome.clean_model.save(&dir.join(CLEAN_MODEL_FILE))?;
    outcome.description.write(&dir.join(ATTACK_FILE))?;
    write_json_dataset(&outcome.defender, &dir.join(DEFENDER_FILE))?;
    write_json_dataset(&outcome.eval_clean, &dir.join(EVAL_CLEAN_FILE))?;
    write_json_dataset(&outcome.eval_triggered, &dir.join(EVAL_TRIGGERED_FILE))?;
    let path = dir.join(METRICS_FILE);
    let text = serde_json::to_string_pretty(&outcome.metrics)
        .map_err(|e| Error::invalid(format!("cannot serialise attack metrics: {e}")))?;
    std::fs::write(&path, text + "\n").map_err(|e| Error::io(&path, e))
}

/// Accuracy of `model` on every graph of `ds`.
fn accuracy_on(model: &GnnModel, ds: &Dataset) -> Result<f64> {
    if ds.is_empty() {
        return Ok(0.0);
    }
    let indices: Vec<usize> = (0..ds.len()).collect();
    let batches = make_batches(ds, &indices, 256, &model.spec().features, model.device())?;
    let p = crate::metrics::predict(model, &batches)?;
    Ok(crate::metrics::evaluate(&p.classes, &p.labels, model.spec().num_classes).accuracy)
}

/// Graphs of `ds` at `indices`, by reference.
pub(crate) fn graphs_at<'a>(ds: &'a Dataset, indices: &[usize]) -> Vec<&'a Graph> {
    indices.iter().map(|&i| &ds.graphs[i]).collect()
}
