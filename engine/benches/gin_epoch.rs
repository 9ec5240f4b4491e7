//! `make bench`: seconds per GIN training epoch on a TU dataset (default ../shared/datasets/AIDS),
//! with the same architecture, features and hyperparameters as `gcleaner train --arch gin`.
//! Prints one JSON line (`threads`: the intra-op threads the GIN trainer runs with); bench/gin_epoch.sh
//! compares it with the PyG loop in bench/pyg_gin_epoch.py.
//!
//! Usage: cargo bench -p gcleaner-engine --bench gin_epoch -- [DATASET_DIR] [EPOCHS]

use std::path::PathBuf;
use std::time::Instant;

use gcleaner_engine::data::batch::make_batches;
use gcleaner_engine::data::split::train_test_split;
use gcleaner_engine::data::{load_dataset, FeatureSpec};
use gcleaner_engine::models::{Arch, GnnModel, ModelSpec, SPEC_FORMAT};
use gcleaner_engine::progress::{NoProgress, Progress, ProgressEvent};
use gcleaner_engine::train::{train, TrainConfig};

/// Records the wall time of every epoch (the trainer reports each one as it ends).
struct EpochClock {
    last: Instant,
    seconds: Vec<f64>,
}

impl Progress for EpochClock {
    fn step(&mut self, _: ProgressEvent<'_>) -> bool {
        let now = Instant::now();
        self.seconds.push((now - self.last).as_secs_f64());
        self.last = now;
        true
    }
}

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
        pyg: None,
    };
    let _torch_seed = gcleaner_engine::rng::seed_torch(10);
    let mut model = GnnModel::new(spec, device).expect("model");
    let warmup = TrainConfig { epochs: 2, ..TrainConfig::default() };
    train(&mut model, &batches, &warmup, &mut NoProgress).expect("warm-up");
    let config = TrainConfig { epochs, ..TrainConfig::default() };
    let mut clock = EpochClock { last: Instant::now(), seconds: Vec::with_capacity(epochs) };
    train(&mut model, &batches, &config, &mut clock).expect("train");
    // The median epoch: on a shared machine a burst of someone else's work inflates a mean.
    let mut seconds = clock.seconds;
    seconds.sort_by(f64::total_cmp);
    let per_epoch = seconds[seconds.len() / 2];
    println!(
        "{{\"graphs\":{},\"max_degree\":{},\"batch_size\":{},\"lr\":{},\"threads\":{},\"seconds_per_epoch\":{:.6}}}",
        train_idx.len(),
        max_degree,
        batch_size,
        config.lr,
        gcleaner_engine::threads::SMALL_GRAPH_THREADS,
        per_epoch
    );
}
