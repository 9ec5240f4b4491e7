//! `make bench`: seconds per GIN training epoch on a TU dataset (default ../shared/datasets/AIDS),
//! with the same architecture, features and hyperparameters as `gcleaner train --arch gin`.
//! Prints one JSON line; bench/gin_epoch.sh compares it with the PyG loop in bench/pyg_gin_epoch.py.
//!
//! Usage: cargo bench -p gcleaner-engine --bench gin_epoch -- [DATASET_DIR] [EPOCHS]

use std::path::PathBuf;
use std::time::Instant;

use gcleaner_engine::data::batch::make_batches;
use gcleaner_engine::data::split::train_test_split;
use gcleaner_engine::data::{load_dataset, FeatureSpec};
use gcleaner_engine::models::{Arch, GnnModel, ModelSpec, SPEC_FORMAT};
use gcleaner_engine::progress::NoProgress;
use gcleaner_engine::train::{train, TrainConfig};

fn main() {
    // As the gcleaner binary does at start-up.
    gcleaner_engine::allocator::tune_for_tensors();
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let path = PathBuf::from(args.first().cloned().unwrap_or_else(|| "../shared/datasets/AIDS".into()));
    let epochs: usize = args.get(1).and_then(|e| e.parse().ok()).unwrap_or(20);
    if !path.exists() {
        eprintln!("skipping: dataset {} not found", path.display());
        return;
    }
    let ds = load_dataset(&path).unwrap_or_else(|e| panic!("{e}"));
    let features = FeatureSpec::default_for(&ds);
    let max_degree = match &features {
        FeatureSpec::OneHotDegree { max_degree } => *max_degree,
        other => panic!("benchmark expects one-hot degree features, got {other:?}"),
    };
    let device = tch::Device::Cpu;
    let (train_idx, _) = train_test_split(ds.len(), 0.8, 10);
    let batch_size = gcleaner_engine::train::DEFAULT_BATCH_SIZE;
    let batches = make_batches(&ds, &train_idx, batch_size, &features, device).expect("batches");
    let spec = ModelSpec {
        format: SPEC_FORMAT.into(),
        arch: Arch::Gin,
        in_features: features.dim(),
        hidden: 64,
        num_classes: ds.num_classes(),
        num_layers: 5,
        pooling: Arch::Gin.default_pooling(),
        features,
        class_labels: None,
    };
    let _torch_seed = gcleaner_engine::rng::seed_torch(10);
    let mut model = GnnModel::new(spec, device).expect("model");
    let warmup = TrainConfig { epochs: 2, ..TrainConfig::default() };
    train(&mut model, &batches, &warmup, &mut NoProgress).expect("warm-up");
    let config = TrainConfig { epochs, ..TrainConfig::default() };
    let start = Instant::now();
    train(&mut model, &batches, &config, &mut NoProgress).expect("train");
    let per_epoch = start.elapsed().as_secs_f64() / epochs as f64;
    println!(
        "{{\"graphs\":{},\"max_degree\":{},\"batch_size\":{},\"lr\":{},\"threads\":{},\"seconds_per_epoch\":{:.6}}}",
        train_idx.len(),
        max_degree,
        batch_size,
        config.lr,
        tch::get_num_threads(),
        per_epoch
    );
}
