//! `gcleaner train`: train a graph classifier on a dataset and save it with its spec.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use gcleaner_engine::data::batch::make_batches;
use gcleaner_engine::data::split::train_test_split;
use gcleaner_engine::data::FeatureSpec;
use gcleaner_engine::metrics;
use gcleaner_engine::models::{Arch, GnnModel, ModelSpec, SPEC_FORMAT};
use gcleaner_engine::train::{train, TrainConfig};
use serde_json::json;

use super::common::{load_data, write_json, BarProgress, DeviceArg};
use super::features_arg::parse_features;

#[derive(clap::Args)]
pub struct TrainArgs {
    /// Dataset: TU directory, GIN text file, JSON file, or a .zip/.tar.gz of one.
    #[arg(long)]
    data: PathBuf,
    /// Architecture: gin, gcn, gat or sage.
    #[arg(long, default_value = "gin")]
    arch: Arch,
    /// Hidden width of every layer.
    #[arg(long, default_value_t = 64)]
    hidden: usize,
    /// Number of message-passing layers (default: the published count, GIN 5, GCN/GAT 3, SAGE 7).
    #[arg(long)]
    layers: Option<usize>,
    /// Node features: degree[:MAX], labels[:N], attributes, or a '+'-joined list
    /// (e.g. labels+degree). Default: one-hot degree capped for the dataset.
    #[arg(long)]
    features: Option<String>,
    #[arg(long, default_value_t = 150)]
    epochs: usize,
    #[arg(long, default_value_t = TrainConfig::default().lr)]
    lr: f64,
    /// Multiply the learning rate by --lr-gamma every this many epochs.
    #[arg(long, default_value_t = TrainConfig::default().lr_step)]
    lr_step: usize,
    #[arg(long, default_value_t = TrainConfig::default().lr_gamma)]
    lr_gamma: f64,
    /// L2 penalty added to the gradient (Adam's weight_decay).
    #[arg(long, default_value_t = TrainConfig::default().weight_decay)]
    weight_decay: f64,
    #[arg(long, default_value_t = gcleaner_engine::train::DEFAULT_BATCH_SIZE)]
    batch_size: usize,
    /// Share of graphs used for training; the rest is the test split.
    #[arg(long, default_value_t = 0.8)]
    split: f64,
    /// Seed for the split, the initial weights and the batch order.
    #[arg(long, default_value_t = 10)]
    seed: u64,
    /// Keep only these original class labels (comma-separated), remapped to 0..K-1.
    #[arg(long, value_delimiter = ',')]
    keep_classes: Option<Vec<i64>>,
    #[arg(long, value_enum, default_value = "auto")]
    device: DeviceArg,
    /// Output directory (created if missing): model.safetensors and metrics.json.
    #[arg(long)]
    out: PathBuf,
}

pub fn run(args: TrainArgs) -> Result<()> {
    let device = args.device.resolve()?;
    if !(args.split > 0.0 && args.split < 1.0) {
        bail!("--split must be strictly between 0 and 1, got {}", args.split);
    }
    if args.batch_size == 0 {
        bail!("--batch-size must be at least 1");
    }
    let ds = load_data(&args.data, args.keep_classes.as_deref())?;
    let features = match &args.features {
        Some(s) => parse_features(s, &ds)?,
        None => FeatureSpec::default_for(&ds),
    };
    let spec = ModelSpec {
        format: SPEC_FORMAT.to_string(),
        arch: args.arch,
        in_features: features.dim(),
        hidden: args.hidden,
        num_classes: ds.num_classes(),
        num_layers: args.layers.unwrap_or_else(|| args.arch.default_layers()),
        pooling: args.arch.default_pooling(),
        features: features.clone(),
        class_labels: Some(ds.class_labels.clone()),
        pyg: None,
    };
    let (train_idx, test_idx) = train_test_split(ds.len(), args.split, args.seed);
    let train_batches = make_batches(&ds, &train_idx, args.batch_size, &features, device)?;
    let test_batches = make_batches(&ds, &test_idx, args.batch_size, &features, device)?;

    let _torch_seed = gcleaner_engine::rng::seed_torch(args.seed);
    let mut model = GnnModel::new(spec, device)?;
    let config = TrainConfig {
        epochs: args.epochs,
        lr: args.lr,
        lr_step: args.lr_step,
        lr_gamma: args.lr_gamma,
        weight_decay: args.weight_decay,
        seed: args.seed,
    };
    let started = Instant::now();
    let history = train(&mut model, &train_batches, &config, &mut BarProgress::new())?;
    let seconds = started.elapsed().as_secs_f64();

    let train_eval = evaluate(&model, &train_batches, ds.num_classes())?;
    let test_eval = evaluate(&model, &test_batches, ds.num_classes())?;
    std::fs::create_dir_all(&args.out).with_context(|| format!("creating {}", args.out.display()))?;
    model.save(&args.out.join("model.safetensors"))?;
    let metrics = json!({
        "dataset": ds.name,
        "arch": args.arch,
        "train_accuracy": train_eval.accuracy,
        "test_accuracy": test_eval.accuracy,
        "test_balanced_accuracy": test_eval.balanced_accuracy,
        "test_per_class": test_eval.per_class,
        "test_confusion": test_eval.confusion,
        "epochs": args.epochs,
        "seconds": seconds,
        "seconds_per_epoch": seconds / args.epochs as f64,
        "seed": args.seed,
        "split": args.split,
        "n_train": train_idx.len(),
        "n_test": test_idx.len(),
        "final_loss": history.last().map(|h| h.loss),
        "device": format!("{device:?}"),
    });
    write_json(&args.out.join("metrics.json"), &metrics)?;
    println!(
        "{}: {} graphs ({} train / {} test), {} epochs in {:.1}s: train accuracy {:.4}, test accuracy {:.4}",
        ds.name,
        ds.len(),
        train_idx.len(),
        test_idx.len(),
        args.epochs,
        seconds,
        train_eval.accuracy,
        test_eval.accuracy
    );
    println!("wrote {}", args.out.join("model.safetensors").display());
    Ok(())
}

fn evaluate(
    model: &GnnModel,
    batches: &[gcleaner_engine::data::batch::GraphBatch],
    num_classes: usize,
) -> Result<metrics::Evaluation> {
    let p = metrics::predict(model, batches)?;
    Ok(metrics::evaluate(&p.classes, &p.labels, num_classes))
}
