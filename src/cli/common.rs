//! Pieces shared by the research subcommands: device selection, progress bars, loading a
//! dataset the way a model expects it, and the inputs and recovery options `purify` and `scan`
//! share with the run of the engine's pipeline they both make.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use gcleaner_engine::data::{self, Dataset};
use gcleaner_engine::explain::ExplainerKind;
use gcleaner_engine::models::weights::WeightLimits;
use gcleaner_engine::models::{GnnModel, ModelSpec};
use gcleaner_engine::progress::{Progress, ProgressEvent};
use gcleaner_engine::purify::pipeline::{
    align_labels, parse_device, run_purification, DeviceError, LabelMismatch, PipelineEvents, PurificationJob, PurificationOutput,
};
use gcleaner_engine::purify::settings::{OverrideError, Overrides};
use gcleaner_engine::purify::PurifyConfig;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{json, Value};
use tch::Device;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DeviceArg {
    /// CUDA when a GPU is visible, else CPU.
    Auto,
    Cpu,
    Cuda,
}

impl DeviceArg {
    pub fn resolve(self) -> Result<Device> {
        let name = match self {
            DeviceArg::Auto => "auto",
            DeviceArg::Cpu => "cpu",
            DeviceArg::Cuda => "cuda",
        };
        parse_device(name).map_err(|e| match e {
            DeviceError::NoCuda(_) => anyhow::anyhow!("--device cuda: no CUDA device is visible to libtorch"),
            DeviceError::Unknown(name) => anyhow::anyhow!("--device {name}: unknown device"),
        })
    }
}

/// Loads a dataset, optionally keeping only some of its original classes (Fingerprint-4).
pub fn load_data(path: &Path, keep_classes: Option<&[i64]>) -> Result<Dataset> {
    let ds = data::load_dataset(path)?;
    match keep_classes {
        Some(classes) => Ok(ds.keep_classes(classes)?),
        None => Ok(ds),
    }
}

/// Maps a dataset's classes onto the model's class order (the labels recorded in its spec).
pub fn align_to_model(ds: Dataset, spec: &ModelSpec, data_path: &Path) -> Result<Dataset> {
    align_labels(ds, spec).map_err(|why| anyhow::anyhow!(label_mismatch(data_path, &why)))
}

/// Why the labels of the data at `data_path` do not fit a model, as the CLI says it.
pub fn label_mismatch(data_path: &Path, why: &LabelMismatch) -> String {
    match why {
        LabelMismatch::Labels(e) => format!("{}: labels do not match the model: {e}", data_path.display()),
        LabelMismatch::TooManyClasses { data, model } => {
            format!("{}: {data} classes, but the model predicts {model}", data_path.display())
        }
    }
}

/// The model spec in a JSON file, for weights saved without one.
pub fn read_spec(spec_file: Option<&PathBuf>) -> Result<Option<ModelSpec>> {
    match spec_file {
        Some(p) => {
            let text = std::fs::read_to_string(p).with_context(|| format!("{}", p.display()))?;
            Ok(Some(serde_json::from_str::<ModelSpec>(&text).with_context(|| format!("{}: invalid model spec", p.display()))?))
        }
        None => Ok(None),
    }
}

pub fn load_model(path: &Path, spec_file: Option<&PathBuf>, device: Device) -> Result<GnnModel> {
    let spec = read_spec(spec_file)?;
    let loaded = GnnModel::load(path, spec, device)?;
    if !loaded.ignored_tensors.is_empty() {
        eprintln!(
            "note: {} ignored {} tensor(s) the architecture does not use: {}",
            path.display(),
            loaded.ignored_tensors.len(),
            loaded.ignored_tensors.join(", ")
        );
    }
    Ok(loaded.model)
}

pub fn write_json(path: &Path, value: &impl serde::Serialize) -> Result<()> {
    let text = serde_json::to_string_pretty(value)?;
    std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))
}

/// Draws one progress bar per phase on stderr (hidden when stderr is not a terminal).
pub struct BarProgress {
    bar: Option<ProgressBar>,
    phase: String,
}

impl BarProgress {
    pub fn new() -> Self {
        BarProgress { bar: None, phase: String::new() }
    }
}

impl Progress for BarProgress {
    fn step(&mut self, event: ProgressEvent<'_>) -> bool {
        if self.bar.is_none() || self.phase != event.phase {
            if let Some(old) = self.bar.take() {
                old.finish();
            }
            let bar = ProgressBar::new(event.total as u64);
            bar.set_style(
                ProgressStyle::with_template("{prefix:>12} [{bar:30}] {pos}/{len} {elapsed_precise} {msg}")
                    .expect("static template")
                    .progress_chars("=> "),
            );
            bar.set_prefix(event.phase.to_string());
            bar.enable_steady_tick(Duration::from_millis(250));
            self.bar = Some(bar);
            self.phase = event.phase.to_string();
        }
        if let Some(bar) = &self.bar {
            // A phase can grow (unlearning trains past its epochs until it converges).
            if bar.length() != Some(event.total as u64) {
                bar.set_length(event.total as u64);
            }
            bar.set_position(event.step as u64);
            bar.set_message(event.message);
        }
        true
    }
}

impl Drop for BarProgress {
    fn drop(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish();
        }
    }
}

/// The inputs of a purification or a scan, and the options of the trigger recovery and verdict
/// both run.
#[derive(clap::Args)]
pub struct RecoveryArgs {
    /// The suspect model (.safetensors, spec embedded or given with --spec).
    #[arg(long)]
    pub model: PathBuf,
    /// Model spec JSON, for weights saved without an embedded spec.
    #[arg(long)]
    pub spec: Option<PathBuf>,
    /// The clean labelled sample: TU directory, GIN text file, JSON file, or an archive of one.
    #[arg(long)]
    pub data: PathBuf,
    /// Keep only these original class labels of the sample (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub keep_classes: Option<Vec<i64>>,
    /// Use this many graphs of the data, drawn at random (seeded by --seed); default: all.
    #[arg(long)]
    pub sample_size: Option<usize>,
    /// Label every graph with the model's own prediction instead of its file label: for
    /// auxiliary clean data from another dataset. Automatic when the labels don't fit the model.
    #[arg(long)]
    pub pseudo_labels: bool,
    /// Fix the trigger size (nodes) instead of searching 2-5 nodes and 10%, 20% and 30% of the
    /// sample's average graph.
    #[arg(long)]
    pub trigger_nodes: Option<usize>,
    /// Random trigger positions per graph, besides the explainer's, where the evidence is
    /// measured (and, purifying, re-sampled every unlearning epoch) [default: 10].
    #[arg(long)]
    pub positions: Option<usize>,
    /// Generator training epochs per restart [default: 20].
    #[arg(long)]
    pub recovery_epochs: Option<usize>,
    /// Generator restarts per trigger size (the best is kept) [default: 5].
    #[arg(long)]
    pub restarts: Option<usize>,
    /// Skip the pattern census (every connected pattern of up to 5 nodes, judged by the same
    /// evidence as the generator's): recovery then rests on the generator alone, as published.
    #[arg(long)]
    pub no_census: bool,
    /// Node importance for trigger placement [default: saliency].
    #[arg(long, value_enum)]
    pub explainer: Option<ExplainerArg>,
    /// Share of the sample held out to measure before/after [default: 0.25].
    #[arg(long)]
    pub holdout: Option<f64>,
    /// Evidence score at or above which the model is judged backdoored [default: 0.3]: the
    /// pattern's excess over natural patterns, less two standard errors (docs/method.md).
    #[arg(long)]
    pub threshold: Option<f64>,
    #[arg(long, value_enum, default_value = "auto")]
    pub device: DeviceArg,
    /// Seeds every random choice, and the draw of --sample-size [default: 10].
    #[arg(long)]
    pub seed: Option<u64>,
    /// Set any purification parameter by its path in report.json's `config`, e.g.
    /// `--set unlearn.ce_weight=2` or `--set recovery.sizes=[3,4]` (value in JSON; repeatable;
    /// applied after the other options).
    #[arg(long = "set", value_name = "PATH=VALUE")]
    pub set: Vec<String>,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum ExplainerArg {
    Saliency,
    Gnnexplainer,
}

impl RecoveryArgs {
    /// The settings the options, then `extra` (a subcommand's own options, by config path), then
    /// `--set PATH=VALUE` change, in that order (a `--set` wins over an option), so every field
    /// the report documents can be set and a path or value that does not fit is refused by name.
    pub fn overrides(&self, extra: &[(&str, Option<Value>)]) -> Result<Overrides> {
        let mut overrides = Overrides::new();
        let explainer = self.explainer.map(|e| match e {
            ExplainerArg::Saliency => ExplainerKind::Saliency,
            ExplainerArg::Gnnexplainer => ExplainerKind::GnnExplainer,
        });
        let options: [(&str, Option<Value>); 10] = [
            ("pseudo_labels", self.pseudo_labels.then_some(json!(true))),
            ("trigger_nodes", self.trigger_nodes.map(|n| json!(n))),
            ("holdout_fraction", self.holdout.map(|h| json!(h))),
            ("evidence_threshold", self.threshold.map(|t| json!(t))),
            ("seed", self.seed.map(|s| json!(s))),
            ("explainer", explainer.map(|e| json!(e))),
            ("recovery.epochs", self.recovery_epochs.map(|n| json!(n))),
            ("recovery.restarts", self.restarts.map(|n| json!(n))),
            ("recovery.census", self.no_census.then_some(json!(false))),
            ("unlearn.positions", self.positions.map(|n| json!(n))),
        ];
        for (path, value) in options.iter().chain(extra) {
            if let Some(value) = value {
                overrides.set(path, value.clone()).map_err(|e| anyhow::anyhow!("{e}"))?;
            }
        }
        for item in &self.set {
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
                    anyhow::anyhow!("--set {}: a value does not fit its parameter: {message}", self.set.join(" "))
                }
                other @ OverrideError::NotAnObject { .. } => {
                    anyhow::anyhow!("--set {}: a value does not fit its parameter: {other}", self.set.join(" "))
                }
            })?;
        }
        Ok(overrides)
    }

    /// Runs the engine's pipeline on these inputs with `overrides`: progress bars and notes on
    /// stderr, files into `out_dir` when given. A setting the engine refuses is named by the flag
    /// that sets it.
    pub fn run_pipeline(
        &self,
        overrides: &Overrides,
        attack: Option<&Path>,
        out_dir: Option<&Path>,
    ) -> Result<PurificationOutput> {
        let device = self.device.resolve()?;
        let spec = read_spec(self.spec.as_ref())?;
        let mut sample = load_data(&self.data, self.keep_classes.as_deref())?;
        if let Some(n) = self.sample_size {
            if n < 2 {
                anyhow::bail!("--sample-size must be at least 2, got {n}");
            }
            sample = sample.random_subset(n, self.seed.unwrap_or(PurifyConfig::default().seed));
        }
        let job = PurificationJob {
            model: &self.model,
            spec,
            weight_limits: WeightLimits::default(),
            sample,
            attack,
            device,
            overrides,
            out_dir,
        };
        let mut events = PipelineNotes { bar: BarProgress::new(), data: &self.data };
        run_purification(job, &mut events).map_err(naming_the_flag)
    }
}

/// The CLI's side of a pipeline run: progress bars, notes on stderr, and pseudo-labels when the
/// sample's labels do not fit the model.
struct PipelineNotes<'a> {
    bar: BarProgress,
    data: &'a Path,
}

impl Progress for PipelineNotes<'_> {
    fn step(&mut self, event: ProgressEvent<'_>) -> bool {
        self.bar.step(event)
    }
}

impl PipelineEvents for PipelineNotes<'_> {
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
