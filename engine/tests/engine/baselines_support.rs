//! Shared fixtures of the baseline tests: small GIN models on the synthetic dataset.
#![allow(dead_code)]

use gcleaner_engine::data::{make_batches, Dataset, FeatureSpec, Graph, GraphBatch};
use gcleaner_engine::models::{Arch, GnnModel, GraphInput, ModelSpec};
use gcleaner_engine::progress::NoProgress;
use gcleaner_engine::train::{train, TrainConfig};
use tch::{Device, Kind, Tensor};

pub const DEGREE_FEATURES: FeatureSpec = FeatureSpec::OneHotDegree { max_degree: 8 };

/// A small GIN (`layers` conv blocks, width 16) over `features`.
pub fn spec(features: FeatureSpec, layers: usize, num_classes: usize) -> ModelSpec {
    let mut spec = ModelSpec::published(Arch::Gin, features.dim(), 16, num_classes, features);
    spec.num_layers = layers;
    spec
}

pub fn fresh_model(spec: ModelSpec, seed: u64) -> GnnModel {
    single_threaded();
    let _torch_seed = gcleaner_engine::rng::seed_torch(seed);
    GnnModel::new(spec, Device::Cpu).expect("valid spec")
}

/// These models are tiny: libtorch's worker threads only spin against each other and against
/// the other test binaries on a shared machine.
pub fn single_threaded() {
    tch::set_num_threads(1);
}

/// A model trained with the engine's trainer on `indices` of `ds`.
pub fn trained_model(ds: &Dataset, indices: &[usize], spec: ModelSpec, epochs: usize, seed: u64) -> GnnModel {
    let mut model = fresh_model(spec, seed);
    let batches = make_batches(ds, indices, 32, &model.spec().features.clone(), Device::Cpu).unwrap();
    let config = TrainConfig { epochs, lr: 0.01, lr_step: 50, seed, ..TrainConfig::default() };
    train(&mut model, &batches, &config, &mut NoProgress).unwrap();
    model
}

/// The model's own predictions (evaluation mode) for graphs batched with `features`.
pub fn plain_predict(model: &GnnModel, graphs: &[&Graph], features: &FeatureSpec) -> Vec<usize> {
    let batch = GraphBatch::new(graphs, (0..graphs.len()).collect(), features, Device::Cpu).unwrap();
    classes(&tch::no_grad(|| model.forward_t(&batch.input(), false).log_probs))
}

/// Predictions for `graphs` whose node features come from `feature_graphs` (same node counts)
/// but whose edges come from `graphs`.
pub fn predict_with_features_of(model: &GnnModel, graphs: &[&Graph], feature_graphs: &[&Graph]) -> Vec<usize> {
    let features = &model.spec().features;
    let structure = GraphBatch::new(graphs, (0..graphs.len()).collect(), features, Device::Cpu).unwrap();
    let original = GraphBatch::new(feature_graphs, (0..graphs.len()).collect(), features, Device::Cpu).unwrap();
    let input = GraphInput::new(&original.x, &structure.edge_index, &original.batch, original.num_graphs);
    classes(&tch::no_grad(|| model.forward_t(&input, false).log_probs))
}

fn classes(log_probs: &Tensor) -> Vec<usize> {
    Vec::<i64>::try_from(log_probs.argmax(-1, false).to_kind(Kind::Int64)).unwrap().into_iter().map(|c| c as usize).collect()
}

/// Every variable of the model, by name, as f32 values.
pub fn weights(model: &GnnModel) -> Vec<(String, Vec<f32>)> {
    let mut vars: Vec<(String, Vec<f32>)> = model
        .var_store()
        .variables()
        .into_iter()
        .map(|(name, t)| (name, Vec::<f32>::try_from(t.detach().to_kind(Kind::Float).flatten(0, -1)).unwrap()))
        .collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    vars
}

pub fn accuracy(predicted: &[usize], graphs: &[&Graph]) -> f64 {
    let hits = predicted.iter().zip(graphs).filter(|(&p, g)| p == g.label).count();
    hits as f64 / graphs.len() as f64
}
