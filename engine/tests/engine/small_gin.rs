//! The small GIN several tests purify: 3 layers of 16, one-hot degree features capped at 8,
//! trained for 5 epochs on the given graphs with a fixed seed.

use gcleaner_engine::data::batch::make_batches;
use gcleaner_engine::data::{Dataset, FeatureSpec};
use gcleaner_engine::models::{Arch, GnnModel, ModelSpec, SPEC_FORMAT};
use gcleaner_engine::progress::NoProgress;
use gcleaner_engine::train::{train, TrainConfig};
use tch::Device;

pub fn trained_small_gin(ds: &Dataset, seed: u64) -> GnnModel {
    let features = FeatureSpec::OneHotDegree { max_degree: 8 };
    let spec = ModelSpec {
        format: SPEC_FORMAT.into(),
        arch: Arch::Gin,
        in_features: features.dim(),
        hidden: 16,
        num_classes: 2,
        num_layers: 3,
        pooling: Arch::Gin.default_pooling(),
        features: features.clone(),
        class_labels: None,
        pyg: None,
    };
    let _torch_seed = gcleaner_engine::rng::seed_torch(seed);
    let mut model = GnnModel::new(spec, Device::Cpu).unwrap();
    let idx: Vec<usize> = (0..ds.len()).collect();
    let batches = make_batches(ds, &idx, 32, &features, Device::Cpu).unwrap();
    train(&mut model, &batches, &TrainConfig { epochs: 5, lr: 0.01, seed, ..TrainConfig::default() }, &mut NoProgress).unwrap();
    model
}
