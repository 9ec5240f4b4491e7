//! Pieces shared by the research subcommands: device selection, progress bars, and loading a
//! dataset the way a model expects it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use gcleaner_engine::data::{self, Dataset};
use gcleaner_engine::models::{GnnModel, ModelSpec};
use gcleaner_engine::progress::{Progress, ProgressEvent};
use gcleaner_engine::purify::pipeline::{align_labels, parse_device, DeviceError, LabelMismatch};
use indicatif::{ProgressBar, ProgressStyle};
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
