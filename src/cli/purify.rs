//! `gcleaner purify`: recover and unlearn a backdoor trigger, write the purified model and the
//! report.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use gcleaner_engine::explain::ExplainerKind;
use gcleaner_engine::models::weights::WeightLimits;
use gcleaner_engine::progress::{Progress, ProgressEvent};
use gcleaner_engine::purify::pipeline::{run_purification, LabelMismatch, PipelineEvents, PurificationJob};
use gcleaner_engine::purify::settings::{OverrideError, Overrides};
use gcleaner_engine::purify::unlearn::UnlearnMode;
use gcleaner_engine::purify::PurifyConfig;
use serde_json::{json, Value};

use super::common::{label_mismatch, load_data, read_spec, BarProgress, DeviceArg};

#[derive(clap::Args)]
pub struct PurifyArgs {
    /// The suspect model (.safetensors, spec embedded or given with --spec).
    #[arg(long)]
    model: PathBuf,
    /// Model spec JSON, for weights saved without an embedded spec.
    #[arg(long)]
    spec: Option<PathBuf>,
    /// The clean labelled sample: TU directory, GIN text file, JSON file, or an archive of one.
    #[arg(long)]
    data: PathBuf,
    /// An attack directory (from `gcleaner attack`), or a zip / tar.gz of one: report the true
    /// ASR and accuracy before and after on its evaluation sets.
    #[arg(long)]
    attack: Option<PathBuf>,
    /// Keep only these original class labels of the sample (comma-separated).
    #[arg(long, value_delimiter = ',')]
    keep_classes: Option<Vec<i64>>,
    /// Use this many graphs of the data, drawn at random (seeded by --seed); default: all.
    #[arg(long)]
    sample_size: Option<usize>,
    /// Label every graph with the model's own prediction instead of its file label: for
    /// auxiliary clean data from another dataset. Automatic when the labels don't fit the model.
    #[arg(long)]
    pseudo_labels: bool,
    /// Unlearning loss: robust or paper (the published loss, for reproduction) [default: robust].
    #[arg(long)]
    mode: Option<UnlearnMode>,
    /// Fix the trigger size (nodes) instead of searching 2-5 nodes and 10%, 20% and 30% of the
    /// sample's average graph.
    #[arg(long)]
    trigger_nodes: Option<usize>,
    /// Random trigger positions per graph, re-sampled every epoch, besides the explainer's
    /// [default: 10].
    #[arg(long)]
    positions: Option<usize>,
    /// Generator training epochs per restart [default: 20].
    #[arg(long)]
    recovery_epochs: Option<usize>,
    /// Generator restarts per trigger size (the best is kept) [default: 5].
    #[arg(long)]
    restarts: Option<usize>,
    /// Skip the pattern census (every connected pattern of up to 5 nodes, judged by the same
    /// evidence as the generator's): recovery then rests on the generator alone, as published.
    #[arg(long)]
    no_census: bool,
    /// Unlearning epochs [default: 30; 15 with pseudo-labels, which also train the head alone].
    /// Robust mode stops earlier, after 3 (unlearn.min_epochs), once the trigger moves no more of
    /// the unlearning copies than natural patterns did, and goes on past them, up to 90 in all,
    /// while it moves more (unlearn.max_epochs)
    #[arg(long)]
    unlearn_epochs: Option<usize>,
    /// Weight of the heat-map term (paper mode) [default: 0.5].
    #[arg(long)]
    lambda: Option<f64>,
    /// Node importance for trigger placement [default: saliency].
    #[arg(long, value_enum)]
    explainer: Option<ExplainerArg>,
    /// Share of the sample held out to measure before/after [default: 0.25].
    #[arg(long)]
    holdout: Option<f64>,
    /// Evidence score at or above which the model is judged backdoored [default: 0.3]: the
    /// pattern's excess over natural patterns, less two standard errors (docs/method.md).
    #[arg(long)]
    threshold: Option<f64>,
    /// Do not keep an unlearning epoch after which a class's recall on the clean sample has fallen
    /// by more than this; the run returns the last epoch that kept every class [default: 0.3].
    #[arg(long)]
    collapse_drop: Option<f64>,
    /// Unlearn even without backdoor evidence.
    #[arg(long)]
    force: bool,
    #[arg(long, value_enum, default_value = "auto")]
    device: DeviceArg,
    /// Seeds every random choice, and the draw of --sample-size [default: 10].
    #[arg(long)]
    seed: Option<u64>,
    /// Set any purification parameter by its path in report.json's `config`, e.g.
    /// `--set unlearn.ce_weight=2` or `--set recovery.sizes=[3,4]` (value in JSON; repeatable;
    /// applied after the other options).
    #[arg(long = "set", value_name = "PATH=VALUE")]
    set: Vec<String>,
    /// Output directory: model.safetensors, report.json, report.html.
    #[arg(long)]
    out: PathBuf,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum ExplainerArg {
    Saliency,
    Gnnexplainer,
}

pub fn run(args: PurifyArgs) -> Result<()> {
    let overrides = overrides(&args)?;
    let device = args.device.resolve()?;
    let spec = read_spec(args.spec.as_ref())?;
    let mut sample = load_data(&args.data, args.keep_classes.as_deref())?;
    if let Some(n) = args.sample_size {
        if n < 2 {
            anyhow::bail!("--sample-size must be at least 2, got {n}");
        }
        sample = sample.random_subset(n, args.seed.unwrap_or(PurifyConfig::default().seed));
    }
    let job = PurificationJob {
        model: &args.model,
        spec,
        weight_limits: WeightLimits::default(),
        sample,
        attack: args.attack.as_deref(),
        device,
        overrides: &overrides,
        out_dir: &args.out,
    };
    let mut events = PurifyEvents { bar: BarProgress::new(), data: &args.data };
    let output = run_purification(job, &mut events).map_err(naming_the_flag)?;
    drop(events);
    let report = output.report;
    println!("{}", report.verdict.summary);
    for warning in &report.warnings {
        eprintln!("warning: {warning}");
    }
    let (b, a) = (&report.holdout.before, &report.holdout.after);
    println!(
        "held-out: accuracy {:.3} -> {:.3}, trigger flip rate {:.3} -> {:.3} ({} graphs)",
        b.evaluation.accuracy, a.evaluation.accuracy, b.flip_rate, a.flip_rate, report.sample.n_holdout
    );
    if let Some(a) = &report.attack {
        println!(
            "attack eval set: ASR {:.3} -> {:.3}, clean accuracy {:.3} -> {:.3}, balanced {:.3} -> {:.3}{}",
            a.before.asr,
            a.after.asr,
            a.before.clean_accuracy,
            a.after.clean_accuracy,
            a.before.balanced_accuracy,
            a.after.balanced_accuracy,
            a.clean_model.as_ref().map(|c| format!(" (never-backdoored model ASR {:.3})", c.asr)).unwrap_or_default()
        );
    }
    println!("wrote {}", args.out.display());
    Ok(())
}

/// The CLI's side of a purification: progress bars, notes on stderr, and pseudo-labels when the
/// sample's labels do not fit the model.
struct PurifyEvents<'a> {
    bar: BarProgress,
    data: &'a Path,
}

impl Progress for PurifyEvents<'_> {
    fn step(&mut self, event: ProgressEvent<'_>) -> bool {
        self.bar.step(event)
    }
}

impl PipelineEvents for PurifyEvents<'_> {
    fn note(&mut self, text: &str) {
        eprintln!("note: {text}");
    }

    fn labels_do_not_fit(&mut self, why: &LabelMismatch) -> gcleaner_engine::Result<()> {
        eprintln!(
            "note: {}; labelling the sample with the model's own predictions (--pseudo-labels)",
            label_mismatch(self.data, why)
        );
        Ok(())
    }
}

/// The settings the options and `--set PATH=VALUE` change, in that order (a `--set` wins over an
/// option), so every field the report documents can be set and a path or value that does not
/// fit is refused by name.
fn overrides(args: &PurifyArgs) -> Result<Overrides> {
    let mut overrides = Overrides::new();
    let explainer = args.explainer.map(|e| match e {
        ExplainerArg::Saliency => ExplainerKind::Saliency,
        ExplainerArg::Gnnexplainer => ExplainerKind::GnnExplainer,
    });
    let options: [(&str, Option<Value>); 15] = [
        ("pseudo_labels", args.pseudo_labels.then_some(json!(true))),
        ("trigger_nodes", args.trigger_nodes.map(|n| json!(n))),
        ("holdout_fraction", args.holdout.map(|h| json!(h))),
        ("evidence_threshold", args.threshold.map(|t| json!(t))),
        ("force", args.force.then_some(json!(true))),
        ("seed", args.seed.map(|s| json!(s))),
        ("explainer", explainer.map(|e| json!(e))),
        ("recovery.epochs", args.recovery_epochs.map(|n| json!(n))),
        ("recovery.restarts", args.restarts.map(|n| json!(n))),
        ("recovery.census", args.no_census.then_some(json!(false))),
        ("unlearn.mode", args.mode.map(|m| json!(m))),
        ("unlearn.positions", args.positions.map(|n| json!(n))),
        ("unlearn.epochs", args.unlearn_epochs.map(|n| json!(n))),
        ("unlearn.lambda", args.lambda.map(|l| json!(l))),
        ("unlearn.collapse_drop", args.collapse_drop.map(|d| json!(d))),
    ];
    for (path, value) in options {
        if let Some(value) = value {
            overrides.set(path, value).map_err(|e| anyhow::anyhow!("{e}"))?;
        }
    }
    for item in &args.set {
        let (path, raw) =
            item.split_once('=').with_context(|| format!("--set {item:?}: expected PATH=VALUE, e.g. unlearn.ce_weight=2"))?;
        let path = path.trim();
        // A bare word that is not JSON (robust, paper) is taken as a string.
        let value = serde_json::from_str(raw.trim()).unwrap_or_else(|_| Value::String(raw.trim().to_string()));
        overrides.set(path, value).map_err(|e| match e {
            OverrideError::Unknown { .. } => {
                anyhow::anyhow!("--set {item:?}: no parameter {path:?} (see docs/report.md, config)")
            }
            OverrideError::Value { message, .. } => {
                anyhow::anyhow!("--set {}: a value does not fit its parameter: {message}", args.set.join(" "))
            }
            other @ OverrideError::NotAnObject { .. } => {
                anyhow::anyhow!("--set {}: a value does not fit its parameter: {other}", args.set.join(" "))
            }
        })?;
    }
    Ok(overrides)
}

/// The flag that sets a configuration path, where there is one.
fn flag_for(path: &str) -> Option<&'static str> {
    Some(match path {
        "holdout_fraction" => "--holdout",
        "evidence_threshold" => "--threshold",
        "trigger_nodes" => "--trigger-nodes",
        "recovery.epochs" => "--recovery-epochs",
        "recovery.restarts" => "--restarts",
        "unlearn.lambda" => "--lambda",
        "unlearn.collapse_drop" => "--collapse-drop",
        _ => return None,
    })
}

/// An engine error about a setting, with the flag (or the `--set` path) that sets it appended.
fn naming_the_flag(err: gcleaner_engine::Error) -> anyhow::Error {
    match &err {
        gcleaner_engine::Error::Setting { path, .. } => match flag_for(path) {
            Some(flag) => anyhow::anyhow!("{err} ({flag})"),
            None => anyhow::anyhow!("{err} (--set {path}=...)"),
        },
        _ => err.into(),
    }
}
