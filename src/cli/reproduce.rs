//! `gcleaner reproduce`: the G-Cleaner paper's comparison table (its Table 3), measured here.
//!
//! For every dataset, seed and attack it backdoors a model (`gcleaner attack`'s pipeline, the
//! clean model shared by the attacks of one dataset and seed), hands each defence the
//! defender's clean sample (ABL: the poisoned training set), and measures the result on the
//! attack's held-out evaluation sets: ASR, clean accuracy, balanced accuracy and the target
//! class's recall, beside the never-backdoored model's. When G-Cleaner is among the defences it
//! also purifies each clean model, to measure how often the verdict calls a clean model
//! backdoored.
//!
//! Every finished cell is written to the JSON file at once, and cells already there are not run
//! again, so a long grid can be stopped and resumed, or spread over machines and merged.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use gcleaner_engine::attacks::evaluate::{evaluate_sets, metrics_from_predictions};
use gcleaner_engine::attacks::{run_attack_with_clean_model, AttackConfig, AttackKind, AttackMetrics, AttackOutcome};
use gcleaner_engine::baselines::{self, BaselineConfig, DefenceKind};
use gcleaner_engine::data::{Dataset, Graph};
use gcleaner_engine::models::{Arch, GnnModel};
use gcleaner_engine::progress::NoProgress;
use gcleaner_engine::purify::unlearn::UnlearnMode;
use gcleaner_engine::purify::{purify, PurifyConfig};
use serde::{Deserialize, Serialize};

use super::common::{load_data, DeviceArg};

#[derive(clap::Args)]
pub struct ReproduceArgs {
    /// Folder holding the datasets: TU folders (AIDS/, MUTAG/, Fingerprint/, IMDB-BINARY/), GIN
    /// text files (bitcoin/bitcoin.txt, COLLAB/COLLAB.txt, ...), or any format `--data` takes.
    #[arg(long)]
    datasets: PathBuf,
    /// Datasets to run (comma-separated): AIDS, MUTAG, bitcoin, Fingerprint (its four largest
    /// classes, "Fingerprint-4"), IMDB-BINARY, COLLAB, PROTEINS, ENZYMES, DD, or any folder or
    /// file name under --datasets (a folder NAME holding NAME.txt is read as that file).
    #[arg(long, value_delimiter = ',', default_value = "AIDS,MUTAG,bitcoin,Fingerprint,IMDB-BINARY,COLLAB,PROTEINS,ENZYMES,DD")]
    dataset: Vec<String>,
    /// Attacks (comma-separated): subgraph, gta, exp, motif.
    #[arg(long, value_delimiter = ',', default_value = "subgraph,gta,exp,motif")]
    attacks: Vec<AttackKind>,
    /// Defences (comma-separated): gcleaner, gcleaner-paper, finetune, prune, smoothing, abl.
    #[arg(long, value_delimiter = ',', default_value = "gcleaner,gcleaner-paper,finetune,prune,smoothing,abl")]
    defenses: Vec<Defense>,
    #[arg(long, default_value = "gin")]
    arch: Arch,
    /// The defender's clean sample as a share of the dataset.
    #[arg(long, default_value_t = 0.03)]
    clean_fraction: f64,
    /// ...but never fewer graphs than this (MUTAG's 3% is six graphs).
    #[arg(long, default_value_t = 19)]
    min_clean_graphs: usize,
    /// Number of seeds, run as first-seed, first-seed + 1, ...
    #[arg(long, default_value_t = 5)]
    seeds: u64,
    #[arg(long, default_value_t = 1)]
    first_seed: u64,
    /// Training epochs of the attacked and clean models.
    #[arg(long, default_value_t = 150)]
    epochs: usize,
    #[arg(long, value_enum, default_value = "auto")]
    device: DeviceArg,
    /// Results file: written after every cell; cells already in it are not run again.
    #[arg(long)]
    json: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Defense {
    Gcleaner,
    GcleanerPaper,
    Finetune,
    Prune,
    Smoothing,
    Abl,
}

impl Defense {
    fn name(self) -> &'static str {
        match self {
            Defense::Gcleaner => "gcleaner",
            Defense::GcleanerPaper => "gcleaner-paper",
            Defense::Finetune => "finetune",
            Defense::Prune => "prune",
            Defense::Smoothing => "smoothing",
            Defense::Abl => "abl",
        }
    }

    fn baseline(self) -> Option<DefenceKind> {
        match self {
            Defense::Gcleaner | Defense::GcleanerPaper => None,
            Defense::Finetune => Some(DefenceKind::Finetune),
            Defense::Prune => Some(DefenceKind::Prune),
            Defense::Smoothing => Some(DefenceKind::Smoothing),
            Defense::Abl => Some(DefenceKind::Abl),
        }
    }
}

impl std::str::FromStr for Defense {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "gcleaner" => Ok(Defense::Gcleaner),
            "gcleaner-paper" => Ok(Defense::GcleanerPaper),
            other => other
                .parse::<DefenceKind>()
                .map(|k| match k {
                    DefenceKind::Finetune => Defense::Finetune,
                    DefenceKind::Prune => Defense::Prune,
                    DefenceKind::Smoothing => Defense::Smoothing,
                    DefenceKind::Abl => Defense::Abl,
                })
                .map_err(|_| {
                    format!("unknown defence {other:?} (expected gcleaner, gcleaner-paper, finetune, prune, smoothing or abl)")
                }),
        }
    }
}

/// One model measured on an attack's evaluation sets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Measured {
    pub asr: f64,
    pub accuracy: f64,
    pub balanced_accuracy: f64,
    /// Recall of the attack's target class on the clean evaluation graphs.
    pub target_recall: f64,
    pub seconds: f64,
    /// G-Cleaner only: the verdict's evidence score, whether it found a backdoor, and the class
    /// it names as the target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evidence: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backdoor_found: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspected_target: Option<usize>,
}

impl Measured {
    fn from_metrics(m: &AttackMetrics, seconds: f64) -> Measured {
        Measured {
            asr: m.asr,
            accuracy: m.clean_accuracy,
            balanced_accuracy: m.balanced_accuracy,
            target_recall: m.per_class_recall.get(m.target_label).copied().unwrap_or(0.0),
            seconds,
            evidence: None,
            backdoor_found: None,
            suspected_target: None,
        }
    }
}

/// One dataset x attack x seed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Cell {
    pub dataset: String,
    pub attack: AttackKind,
    pub seed: u64,
    pub n_clean_sample: usize,
    pub n_eval_clean: usize,
    pub n_eval_triggered: usize,
    pub trigger_nodes: usize,
    /// The attack's target, as a class index of the model.
    #[serde(default)]
    pub target_class: usize,
    pub backdoored: Measured,
    /// The never-backdoored model on the same sets: the ASR a clean model already shows.
    pub clean_model: Measured,
    pub defenses: BTreeMap<String, Measured>,
}

/// G-Cleaner's verdict on a never-backdoored model.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CleanVerdict {
    pub dataset: String,
    pub seed: u64,
    pub evidence: f64,
    pub backdoor_found: bool,
    #[serde(default)]
    pub suspected_target: usize,
    /// Held-out accuracy on the clean sample before and after (unchanged when no backdoor).
    pub accuracy_before: f64,
    pub accuracy_after: f64,
    /// Accuracy and balanced accuracy on the attack's clean evaluation graphs, before and after.
    #[serde(default)]
    pub eval_accuracy_before: f64,
    #[serde(default)]
    pub eval_accuracy_after: f64,
    #[serde(default)]
    pub eval_balanced_before: f64,
    #[serde(default)]
    pub eval_balanced_after: f64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Results {
    pub format: String,
    pub cells: Vec<Cell>,
    pub clean_verdicts: Vec<CleanVerdict>,
}

const RESULTS_FORMAT: &str = "gcleaner.reproduce/v1";

/// A dataset name as the paper uses it, with where it lives and how it is prepared.
struct DatasetSource {
    name: String,
    path: PathBuf,
    keep_classes: Option<Vec<i64>>,
    target_label: i64,
}

fn dataset_source(root: &Path, name: &str) -> DatasetSource {
    let (path, keep, target) = match name {
        // The paper's four classes (L, A, W, R); L is the largest class whose graphs have nodes.
        "Fingerprint" | "Fingerprint-4" => (root.join("Fingerprint"), Some(vec![0, 2, 4, 5]), 0),
        other => {
            // A folder that holds one GIN text file of its own name (bitcoin/bitcoin.txt,
            // COLLAB/COLLAB.txt) is that file.
            let text = root.join(other).join(format!("{other}.txt"));
            (if text.is_file() { text } else { root.join(other) }, None, 1)
        }
    };
    let name = if keep.is_some() { "Fingerprint-4".to_string() } else { name.to_string() };
    DatasetSource { name, path, keep_classes: keep, target_label: target }
}

pub fn run(args: ReproduceArgs) -> Result<()> {
    let device = args.device.resolve()?;
    if args.seeds == 0 || args.attacks.is_empty() || args.defenses.is_empty() {
        bail!("--seeds, --attacks and --defenses must each name at least one");
    }
    if !(args.clean_fraction > 0.0 && args.clean_fraction < 0.5) {
        bail!("--clean-fraction must be in (0, 0.5), got {}", args.clean_fraction);
    }
    // A misspelt or absent dataset fails now, not after hours of the others.
    let sources: Vec<DatasetSource> = args.dataset.iter().map(|name| dataset_source(&args.datasets, name)).collect();
    if let Some(missing) = sources.iter().find(|s| !s.path.exists()) {
        bail!(
            "--dataset {}: {} not found (--datasets names the folder that holds the datasets)",
            missing.name,
            missing.path.display()
        );
    }
    let mut results = read_results(&args.json)?;
    let started = Instant::now();
    for source in &sources {
        let mut ds = load_data(&source.path, source.keep_classes.as_deref())?;
        ds.graphs.retain(|g| g.num_nodes > 0);
        ds.name = source.name.clone();
        let fraction = args.clean_fraction.max(args.min_clean_graphs as f64 / ds.len() as f64);
        for seed in args.first_seed..args.first_seed + args.seeds {
            let mut clean_model: Option<GnnModel> = None;
            for &attack in &args.attacks {
                let have = results.cells.iter().find(|c| c.dataset == source.name && c.attack == attack && c.seed == seed);
                let missing: Vec<Defense> =
                    args.defenses.iter().copied().filter(|d| have.is_none_or(|c| !c.defenses.contains_key(d.name()))).collect();
                if missing.is_empty() {
                    continue;
                }
                let mut config = AttackConfig::new(attack, args.arch);
                config.target_label = source.target_label;
                config.defender_fraction = fraction;
                config.train.epochs = args.epochs;
                config.seed = seed;
                config.device = device;
                let reuse = match &clean_model {
                    Some(m) => Some(m.try_clone()?),
                    None => None,
                };
                let outcome = run_attack_with_clean_model(&ds, &config, reuse, &mut NoProgress)
                    .with_context(|| format!("{} {} seed {seed}", source.name, attack))?;
                let mut cell =
                    match results.cells.iter().position(|c| c.dataset == source.name && c.attack == attack && c.seed == seed) {
                        Some(i) => results.cells.remove(i),
                        None => new_cell(&source.name, attack, seed, &outcome),
                    };
                for defense in missing {
                    let measured = defend(defense, &outcome, seed)
                        .with_context(|| format!("{} {} seed {seed}: {}", source.name, attack, defense.name()))?;
                    eprintln!(
                        "{} {:<8} seed {seed} {:<15} ASR {:.3} ACC {:.3} (before: ASR {:.3} ACC {:.3}; clean model ASR {:.3}) [{:.0}s]",
                        source.name,
                        attack.to_string(),
                        defense.name(),
                        measured.asr,
                        measured.accuracy,
                        cell.backdoored.asr,
                        cell.backdoored.accuracy,
                        cell.clean_model.asr,
                        started.elapsed().as_secs_f64()
                    );
                    cell.defenses.insert(defense.name().to_string(), measured);
                }
                results.cells.push(cell);
                write_results(&args.json, &results)?;
                if args.defenses.contains(&Defense::Gcleaner)
                    && !results.clean_verdicts.iter().any(|v| v.dataset == source.name && v.seed == seed)
                {
                    results.clean_verdicts.push(clean_verdict(&source.name, seed, &outcome)?);
                    write_results(&args.json, &results)?;
                }
                clean_model = Some(outcome.clean_model);
            }
        }
    }
    print_table(&results, &args.defenses);
    Ok(())
}

fn new_cell(dataset: &str, attack: AttackKind, seed: u64, outcome: &AttackOutcome) -> Cell {
    let m = &outcome.metrics;
    Cell {
        dataset: dataset.to_string(),
        attack,
        seed,
        n_clean_sample: outcome.defender.len(),
        n_eval_clean: outcome.eval_clean.len(),
        n_eval_triggered: outcome.eval_triggered.len(),
        trigger_nodes: m.trigger_nodes,
        target_class: m.target_class,
        backdoored: Measured::from_metrics(&m.backdoored_model, m.timings.backdoor_training_s),
        clean_model: Measured::from_metrics(&m.clean_model, m.timings.clean_training_s),
        defenses: BTreeMap::new(),
    }
}

/// Runs one defence against one attack and measures it on the attack's evaluation sets.
fn defend(defense: Defense, outcome: &AttackOutcome, seed: u64) -> Result<Measured> {
    let started = Instant::now();
    let target = outcome.metrics.target_class;
    let (clean, triggered) = (&outcome.eval_clean, &outcome.eval_triggered);
    let (metrics, verdict) = match defense.baseline() {
        None => {
            let mut config = PurifyConfig { seed, ..PurifyConfig::default() };
            if defense == Defense::GcleanerPaper {
                config.unlearn.mode = UnlearnMode::Paper;
            }
            let purified = purify(&outcome.model, &outcome.defender, &config, &mut NoProgress)?;
            let metrics = evaluate_sets(&purified.model, clean, triggered, target)?;
            (metrics, Some(purified.report.verdict))
        }
        Some(kind) => {
            let poisoned = (&outcome.poisoned_dataset, outcome.train_indices.as_slice());
            let defended = baselines::run(
                kind,
                &outcome.model,
                &outcome.defender,
                kind.needs_poisoned_training_set().then_some(poisoned),
                &BaselineConfig::default(),
                seed,
                &mut NoProgress,
            )?;
            let predict = |ds: &Dataset| defended.predict(&ds.graphs.iter().collect::<Vec<&Graph>>());
            let num_classes = outcome.model.spec().num_classes;
            let metrics = metrics_from_predictions(&predict(clean)?, clean, &predict(triggered)?, triggered, target, num_classes);
            (metrics, None)
        }
    };
    let mut measured = Measured::from_metrics(&metrics, started.elapsed().as_secs_f64());
    measured.evidence = verdict.as_ref().map(|v| v.evidence_score);
    measured.backdoor_found = verdict.as_ref().map(|v| v.backdoor_evidence);
    measured.suspected_target = verdict.as_ref().map(|v| v.suspected_target);
    Ok(measured)
}

/// G-Cleaner (robust, defaults) on the never-backdoored model of this dataset and seed.
fn clean_verdict(dataset: &str, seed: u64, outcome: &AttackOutcome) -> Result<CleanVerdict> {
    let config = PurifyConfig { seed, ..PurifyConfig::default() };
    let purified = purify(&outcome.clean_model, &outcome.defender, &config, &mut NoProgress)?;
    let target = outcome.metrics.target_class;
    let before = evaluate_sets(&outcome.clean_model, &outcome.eval_clean, &outcome.eval_triggered, target)?;
    let after = evaluate_sets(&purified.model, &outcome.eval_clean, &outcome.eval_triggered, target)?;
    let v = &purified.report.verdict;
    eprintln!(
        "{dataset} seed {seed} clean model: evidence {:.2} -> {}",
        v.evidence_score,
        if v.backdoor_evidence { "backdoor (false positive)" } else { "no backdoor" }
    );
    Ok(CleanVerdict {
        dataset: dataset.to_string(),
        seed,
        evidence: v.evidence_score,
        backdoor_found: v.backdoor_evidence,
        suspected_target: v.suspected_target,
        accuracy_before: purified.report.holdout.before.evaluation.accuracy,
        accuracy_after: purified.report.holdout.after.evaluation.accuracy,
        eval_accuracy_before: before.clean_accuracy,
        eval_accuracy_after: after.clean_accuracy,
        eval_balanced_before: before.balanced_accuracy,
        eval_balanced_after: after.balanced_accuracy,
    })
}

fn read_results(path: &Path) -> Result<Results> {
    if !path.exists() {
        return Ok(Results { format: RESULTS_FORMAT.into(), ..Results::default() });
    }
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let results: Results =
        serde_json::from_str(&text).with_context(|| format!("{}: not a results file of gcleaner reproduce", path.display()))?;
    if results.format != RESULTS_FORMAT {
        bail!("{}: format {:?}, expected {RESULTS_FORMAT:?}", path.display(), results.format);
    }
    Ok(results)
}

/// Written to a temporary name and renamed, so an interrupted run never leaves half a file.
fn write_results(path: &Path, results: &Results) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let tmp = path.with_extension("json.partial");
    std::fs::write(&tmp, serde_json::to_vec_pretty(results)?).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

fn mean_std(values: &[f64]) -> (f64, f64) {
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let var = if values.len() > 1 { values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0) } else { 0.0 };
    (mean, var.sqrt())
}

fn pct(values: &[f64]) -> String {
    let (m, s) = mean_std(values);
    format!("{:5.1}±{:4.1}", m * 100.0, s * 100.0)
}

/// One line per dataset x attack x model: mean ± std over seeds, in percent, with the excess ASR
/// (ASR minus the never-backdoored model's on the same triggered graphs, at least 0) and the
/// balanced-accuracy change against the backdoored model (mean, and the worst model); then the
/// verdict's record over every model.
fn print_table(results: &Results, defenses: &[Defense]) {
    let mut groups: BTreeMap<(String, String), Vec<&Cell>> = BTreeMap::new();
    for c in &results.cells {
        groups.entry((c.dataset.clone(), c.attack.to_string())).or_default().push(c);
    }
    println!(
        "{:<14} {:<9} {:<15} {:>5} {:>11} {:>11} {:>11} {:>11} {:>12} {:>15}",
        "dataset", "attack", "model", "seeds", "ASR %", "EXCESS %", "ACC %", "BAL ACC %", "TARGET REC %", "BAL CHG (WORST)"
    );
    for ((dataset, attack), cells) in &groups {
        let row = |label: &str, pick: &dyn Fn(&Cell) -> Option<Measured>| {
            let picked: Vec<(&Cell, Measured)> = cells.iter().filter_map(|c| pick(c).map(|m| (*c, m))).collect();
            if picked.is_empty() {
                return;
            }
            let col = |f: &dyn Fn(&Cell, &Measured) -> f64| pct(&picked.iter().map(|(c, m)| f(c, m)).collect::<Vec<_>>());
            let changes: Vec<f64> = picked.iter().map(|(c, m)| m.balanced_accuracy - c.backdoored.balanced_accuracy).collect();
            let worst = changes.iter().copied().fold(f64::INFINITY, f64::min);
            println!(
                "{:<14} {:<9} {:<15} {:>5} {:>11} {:>11} {:>11} {:>11} {:>12} {:>+7.1} ({:>+5.1})",
                dataset,
                attack,
                label,
                picked.len(),
                col(&|_, m| m.asr),
                col(&|c, m| excess_asr(c, m)),
                col(&|_, m| m.accuracy),
                col(&|_, m| m.balanced_accuracy),
                col(&|_, m| m.target_recall),
                mean_std(&changes).0 * 100.0,
                worst * 100.0
            );
        };
        row("clean model", &|c| Some(c.clean_model.clone()));
        row("backdoored", &|c| Some(c.backdoored.clone()));
        for d in defenses {
            row(d.name(), &|c| c.defenses.get(d.name()).cloned());
        }
    }
    if !results.clean_verdicts.is_empty() || results.cells.iter().any(|c| c.defenses.contains_key("gcleaner")) {
        for line in verdict_summary(results) {
            println!("{line}");
        }
    }
}

/// A model's ASR beyond the never-backdoored model's on the same triggered graphs.
pub fn excess_asr(cell: &Cell, measured: &Measured) -> f64 {
    (measured.asr - cell.clean_model.asr).max(0.0)
}

/// Whether a cell's backdoor is real: it sends at least 30 points more of the triggered graphs to
/// the target than the never-backdoored model does.
pub fn real_backdoor(cell: &Cell) -> bool {
    cell.backdoored.asr - cell.clean_model.asr >= 0.30
}

/// Probability that a random positive scores above a random negative (ties count half).
pub fn auroc(positives: &[f64], negatives: &[f64]) -> Option<f64> {
    if positives.is_empty() || negatives.is_empty() {
        return None;
    }
    let wins: f64 = positives
        .iter()
        .flat_map(|p| {
            negatives.iter().map(move |n| {
                if p > n {
                    1.0
                } else if p == n {
                    0.5
                } else {
                    0.0
                }
            })
        })
        .sum();
    Some(wins / (positives.len() * negatives.len()) as f64)
}

/// The verdict over every model G-Cleaner judged: real backdoors found with the right target,
/// never-backdoored models flagged (and what purifying them cost), the evidence AUROC.
fn verdict_summary(results: &Results) -> Vec<String> {
    let judged: Vec<(&Cell, &Measured)> =
        results.cells.iter().filter_map(|c| c.defenses.get("gcleaner").map(|m| (c, m))).collect();
    let real: Vec<&(&Cell, &Measured)> = judged.iter().filter(|(c, _)| real_backdoor(c)).collect();
    let found = real.iter().filter(|(c, m)| m.backdoor_found == Some(true) && m.suspected_target == Some(c.target_class)).count();
    let flagged: Vec<&CleanVerdict> = results.clean_verdicts.iter().filter(|v| v.backdoor_found).collect();
    let worst_cost = flagged.iter().map(|v| v.eval_accuracy_after - v.eval_accuracy_before).fold(f64::INFINITY, f64::min);
    let scores_real: Vec<f64> = real.iter().filter_map(|(_, m)| m.evidence).collect();
    let scores_clean: Vec<f64> = results.clean_verdicts.iter().map(|v| v.evidence).collect();
    let mut lines = vec![
        format!("verdict: {found} of {} real backdoors (ASR at least 30 points above the never-backdoored model's) found with the right target", real.len()),
        format!(
            "verdict: {} of {} never-backdoored models flagged{}",
            flagged.len(),
            results.clean_verdicts.len(),
            if flagged.is_empty() { String::new() } else { format!(" (worst accuracy change of a flagged one {:+.1} points)", worst_cost * 100.0) }
        ),
    ];
    if let Some(a) = auroc(&scores_real, &scores_clean) {
        lines.push(format!("verdict: evidence AUROC, real backdoors against never-backdoored models, {a:.3}"));
    }
    lines
}
