//! One purification from files to files, the one `gcleaner purify` and a service job both run:
//! load the model, fit the sample's labels to it, lay the settings over the defaults, purify with
//! libtorch's generator seeded, measure the attack's evaluation sets when there are any, hash the
//! input weights, and write the purified model, report.json and report.html. A scan (settings
//! `mode: scan`) is the same run stopped at the verdict: it writes the reports and no model.

use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use tch::Device;

use super::report::{AttackEvaluation, PurifyReport};
use super::settings::{Overrides, RunMode};
use super::{html, purify};
use crate::attacks::AttackSource;
use crate::data::Dataset;
use crate::models::check_sample_features;
use crate::models::weights::{self, WeightLimits};
use crate::models::{GnnModel, ModelSpec};
use crate::progress::{Progress, ProgressEvent};
use crate::{Error, Result};

/// The purified model's file name in the output directory.
pub const MODEL_FILE: &str = "model.safetensors";
pub const REPORT_FILE: &str = "report.json";
pub const REPORT_HTML_FILE: &str = "report.html";

/// Everything one purification is told.
pub struct PurificationJob<'a> {
    /// The suspect model's weights (safetensors); their SHA-256 goes into the report.
    pub model: &'a Path,
    /// A spec to load the weights with instead of the one embedded in them.
    pub spec: Option<ModelSpec>,
    /// Limits on the weights files read (the model's and the attack's never-backdoored one).
    pub weight_limits: WeightLimits,
    /// The clean sample, labelled as in its file.
    pub sample: Dataset,
    /// An attack directory or archive (`gcleaner attack`): its evaluation sets are measured
    /// before and after, and its never-backdoored model where it ships one.
    pub attack: Option<&'a Path>,
    pub device: Device,
    /// The settings changed from the defaults (the seed among them).
    pub overrides: &'a Overrides,
    /// Where [`MODEL_FILE`], [`REPORT_FILE`] and [`REPORT_HTML_FILE`] are written (created when
    /// missing); `None` writes nothing (a scan whose report is printed).
    pub out_dir: Option<&'a Path>,
}

/// What a purification produced; the same is in the output directory.
pub struct PurificationOutput {
    /// The purified model's file; `None` for a scan, or when no output directory was given.
    pub model: Option<PathBuf>,
    pub report: PurifyReport,
    pub report_html: String,
}

/// What a front end hears while a purification runs, besides progress (which also cancels).
pub trait PipelineEvents: Progress {
    /// Something to tell the user that does not stop the run.
    fn note(&mut self, text: &str);
    /// The sample's labels do not fit the model and pseudo-labels were not asked for: `Ok` to
    /// label every graph with the model's own prediction instead, or the error to stop with.
    fn labels_do_not_fit(&mut self, why: &LabelMismatch) -> Result<()>;
}

/// Why a sample's labels cannot be put in a model's class order.
#[derive(Debug)]
pub enum LabelMismatch {
    /// The file's labels are not among the class labels the model's spec records.
    Labels(Error),
    /// The sample has more classes than the model predicts.
    TooManyClasses { data: usize, model: usize },
}

impl std::fmt::Display for LabelMismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LabelMismatch::Labels(e) => write!(f, "{e}"),
            LabelMismatch::TooManyClasses { data, model } => {
                write!(f, "the data has {data} classes but the model has {model}")
            }
        }
    }
}

/// The dataset with its classes in the model's order (the labels recorded in its spec).
pub fn align_labels(ds: Dataset, spec: &ModelSpec) -> std::result::Result<Dataset, LabelMismatch> {
    let ds = match &spec.class_labels {
        Some(labels) => ds.with_class_labels(labels).map_err(LabelMismatch::Labels)?,
        None => ds,
    };
    if ds.num_classes() > spec.num_classes {
        return Err(LabelMismatch::TooManyClasses { data: ds.num_classes(), model: spec.num_classes });
    }
    Ok(ds)
}

/// Why a device name gives no device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceError {
    /// Not `cpu`, `auto`, `cuda` or `cuda:N`.
    Unknown(String),
    /// libtorch sees no CUDA device of this index.
    NoCuda(usize),
}

/// `cpu`, `auto` (CUDA when libtorch sees a GPU, else the CPU), `cuda` (the first GPU) or
/// `cuda:N`; a GPU libtorch does not see is refused.
pub fn parse_device(name: &str) -> std::result::Result<Device, DeviceError> {
    let device = match name {
        "cpu" => Device::Cpu,
        "auto" => Device::cuda_if_available(),
        "cuda" => Device::Cuda(0),
        other => other
            .strip_prefix("cuda:")
            .and_then(|n| n.parse().ok())
            .map(Device::Cuda)
            .ok_or_else(|| DeviceError::Unknown(other.to_string()))?,
    };
    if let Device::Cuda(i) = device {
        if !tch::Cuda::is_available() || i >= tch::Cuda::device_count() as usize {
            return Err(DeviceError::NoCuda(i));
        }
    }
    Ok(device)
}

/// Runs one purification (see the module's documentation). Errors about a setting are
/// [`Error::Setting`]s naming its path; progress reports `validating` (3 steps: started, model
/// loaded, sample ready) before the purification's own phases, then `evaluating`.
pub fn run_purification<E: PipelineEvents>(job: PurificationJob<'_>, events: &mut E) -> Result<PurificationOutput> {
    step(events, "validating", 0, 3)?;
    let model = load_model(job.model, job.spec, job.device, &job.weight_limits, events)?;
    step(events, "validating", 1, 3)?;
    check_sample_features(&model, &job.sample)?;
    let mut pseudo_labels = job.overrides.pseudo_labels();
    let sample = if pseudo_labels {
        job.sample
    } else {
        match align_labels(job.sample.clone(), model.spec()) {
            Ok(aligned) => aligned,
            Err(why) => {
                events.labels_do_not_fit(&why)?;
                pseudo_labels = true;
                job.sample
            }
        }
    };
    // Auxiliary data starts from its own unlearning defaults (UnlearnConfig::auxiliary).
    let config = job.overrides.apply(pseudo_labels)?;
    step(events, "validating", 2, 3)?;

    let _torch_seed = crate::rng::seed_torch(config.seed);
    let outcome = purify(&model, &sample, &config, events)?;
    step(events, "evaluating", 0, 1)?;
    let mut report = outcome.report;
    if let Some(path) = job.attack {
        let source = AttackSource::open(path)?;
        let reference = match source.clean_model_path() {
            Some(p) => Some(load_model(&p, None, job.device, &job.weight_limits, events)?),
            None => None,
        };
        report.attack = Some(AttackEvaluation::measure(&source, &model, &outcome.model, reference.as_ref())?);
    }
    report.input_sha256 = Some(sha256_hex(job.model)?);

    let report_html = html::render(&report);
    let mut model_path = None;
    if let Some(out_dir) = job.out_dir {
        std::fs::create_dir_all(out_dir).map_err(|e| Error::io(out_dir, e))?;
        // A scan's model is the input unchanged: there is nothing to hand back.
        if config.mode == RunMode::Purify {
            let path = out_dir.join(MODEL_FILE);
            outcome.model.save(&path)?;
            model_path = Some(path);
        }
        let report_path = out_dir.join(REPORT_FILE);
        let text = serde_json::to_string_pretty(&report).map_err(|e| Error::invalid(format!("report: {e}")))?;
        std::fs::write(&report_path, text + "\n").map_err(|e| Error::io(&report_path, e))?;
        let html_path = out_dir.join(REPORT_HTML_FILE);
        std::fs::write(&html_path, &report_html).map_err(|e| Error::io(&html_path, e))?;
    }
    step(events, "evaluating", 1, 1)?;
    Ok(PurificationOutput { model: model_path, report, report_html })
}

/// A progress event of the pipeline's own; `Err(Cancelled)` when the front end says stop.
fn step(events: &mut impl Progress, phase: &str, step: usize, total: usize) -> Result<()> {
    if events.step(ProgressEvent { phase, step, total, message: String::new() }) {
        Ok(())
    } else {
        Err(Error::Cancelled)
    }
}

/// Loads weights, noting the tensors the architecture does not use.
fn load_model(
    path: &Path,
    spec: Option<ModelSpec>,
    device: Device,
    limits: &WeightLimits,
    events: &mut impl PipelineEvents,
) -> Result<GnnModel> {
    let loaded = weights::load(path, spec, device, limits)?;
    if !loaded.ignored_tensors.is_empty() {
        events.note(&format!(
            "{} ignored {} tensor(s) the architecture does not use: {}",
            path.display(),
            loaded.ignored_tensors.len(),
            loaded.ignored_tensors.join(", ")
        ));
    }
    Ok(loaded.model)
}

/// The SHA-256 of a file, in hex.
fn sha256_hex(path: &Path) -> Result<String> {
    let mut file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 16];
    loop {
        let n = file.read(&mut buffer).map_err(|e| Error::io(path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
    }
    Ok(format!("{:x}", hasher.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_parse_and_an_unseen_gpu_is_refused() {
        assert_eq!(parse_device("cpu"), Ok(Device::Cpu));
        assert_eq!(parse_device("tpu"), Err(DeviceError::Unknown("tpu".into())));
        assert_eq!(parse_device("cuda:x"), Err(DeviceError::Unknown("cuda:x".into())));
        match parse_device("cuda:1") {
            Ok(device) => assert_eq!(device, Device::Cuda(1)),
            Err(e) => assert_eq!(e, DeviceError::NoCuda(1)),
        }
        let many = tch::Cuda::device_count() as usize;
        assert_eq!(parse_device(&format!("cuda:{many}")), Err(DeviceError::NoCuda(many)));
    }

    #[test]
    fn labels_are_put_in_the_models_order_or_the_mismatch_named() {
        use crate::models::{Arch, ModelSpec};
        let features = crate::data::FeatureSpec::OneHotDegree { max_degree: 8 };
        let ds = crate::data::synthetic::generate(6, 1);
        let mut spec = ModelSpec::published(Arch::Gin, features.dim(), 8, 2, features);
        assert_eq!(align_labels(ds.clone(), &spec).unwrap().num_classes(), 2);
        spec.num_classes = 1;
        let err = align_labels(ds.clone(), &spec).unwrap_err();
        assert_eq!(err.to_string(), "the data has 2 classes but the model has 1");
        spec.num_classes = 2;
        spec.class_labels = Some(vec![7, 9]);
        assert!(matches!(align_labels(ds, &spec), Err(LabelMismatch::Labels(_))));
    }
}
