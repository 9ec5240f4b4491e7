//! What purification promises beyond removing a backdoor: the paper mode's heat-map term really
//! trains the weights (double backward, not a constant), mismatched samples are refused with a
//! message naming the mismatch, and a run is a pure function of its inputs and seed.

use gcleaner_engine::data::batch::make_batches;
use gcleaner_engine::data::{synthetic, Dataset, FeatureSpec, Graph};
use gcleaner_engine::explain::gradcam::heat_maps;
use gcleaner_engine::models::{Arch, GnnModel, ModelSpec, SPEC_FORMAT};
use gcleaner_engine::progress::NoProgress;
use gcleaner_engine::purify::unlearn::UnlearnMode;
use gcleaner_engine::purify::{purify, PurifyConfig};
use gcleaner_engine::train::{train, TrainConfig};
use tch::{Device, Kind, Tensor};

fn spec(features: FeatureSpec, num_classes: usize) -> ModelSpec {
    ModelSpec {
        format: SPEC_FORMAT.into(),
        arch: Arch::Gin,
        in_features: features.dim(),
        hidden: 16,
        num_classes,
        num_layers: 3,
        pooling: Arch::Gin.default_pooling(),
        features,
        class_labels: None,
        pyg: None,
    }
}

/// A small GIN trained for a few epochs on generated graphs.
fn trained_model(ds: &Dataset, seed: u64) -> GnnModel {
    let features = FeatureSpec::OneHotDegree { max_degree: 8 };
    let _torch_seed = gcleaner_engine::rng::seed_torch(seed);
    let mut model = GnnModel::new(spec(features.clone(), 2), Device::Cpu).unwrap();
    let idx: Vec<usize> = (0..ds.len()).collect();
    let batches = make_batches(ds, &idx, 32, &features, Device::Cpu).unwrap();
    let config = TrainConfig { epochs: 5, lr: 0.01, seed, ..TrainConfig::default() };
    train(&mut model, &batches, &config, &mut NoProgress).unwrap();
    model
}

fn quick(seed: u64, mode: UnlearnMode) -> PurifyConfig {
    let mut c = PurifyConfig { seed, force: true, trigger_nodes: Some(3), ..PurifyConfig::default() };
    c.recovery.epochs = 3;
    c.recovery.restarts = 2;
    c.unlearn.mode = mode;
    c.unlearn.epochs = 2;
    c.unlearn.teacher_epochs = Some(2);
    c.unlearn.positions = 2;
    c
}

#[test]
fn the_heat_map_term_has_a_gradient_with_respect_to_every_conv_layer() {
    let ds = synthetic::generate(40, 2);
    let model = trained_model(&ds, 2);
    let idx: Vec<usize> = (0..ds.len()).collect();
    let batch = &make_batches(&ds, &idx, 64, &model.spec().features, Device::Cpu).unwrap()[0];
    let input = batch.input();
    let out = model.forward_t(&input, false);
    let classes = out.logits.argmax(-1, false);
    let maps = heat_maps(&out, &classes, &batch.batch, batch.num_graphs);
    assert_eq!(maps.len(), 3);
    for h in &maps {
        let (lo, hi) = (h.min().double_value(&[]), h.max().double_value(&[]));
        assert!(lo >= 0.0 && hi <= 1.0 + 1e-6 && hi > 0.5, "heat map outside [0, 1]: {lo}..{hi}");
    }
    // Any loss on the heat maps, here their distance to a fixed target pattern.
    let target = Tensor::rand([maps[0].size()[0]], (Kind::Float, Device::Cpu));
    let loss = maps
        .iter()
        .map(|h| (h - &target).square().sum(Kind::Float))
        .fold(Tensor::zeros([], (Kind::Float, Device::Cpu)), |a, b| a + b);
    let weights: Vec<(String, Tensor)> = model
        .var_store()
        .variables()
        .into_iter()
        .filter(|(name, t)| t.requires_grad() && name.starts_with("conv") && name.ends_with("weight"))
        .collect();
    assert!(!weights.is_empty());
    let tensors: Vec<&Tensor> = weights.iter().map(|(_, t)| t).collect();
    let grads = Tensor::run_backward(&[&loss], &tensors, false, false);
    for ((name, _), g) in weights.iter().zip(&grads) {
        assert!(g.defined(), "{name}: no gradient reaches it");
        let norm = g.abs().sum(Kind::Float).double_value(&[]);
        assert!(norm.is_finite() && norm > 0.0, "{name}: gradient norm {norm}");
    }
}

#[test]
fn samples_that_do_not_fit_the_model_are_refused_with_the_reason() {
    let ds = synthetic::generate(30, 4);
    let model = trained_model(&ds, 4);
    let config = quick(4, UnlearnMode::Robust);

    // More classes than the model predicts.
    let mut three = ds.clone();
    three.graphs[0].label = 2;
    three.class_labels = vec![0, 1, 2];
    let err = purify(&model, &three, &config, &mut NoProgress).err().expect("refused").to_string();
    assert!(err.contains("3 classes") && err.contains("predicts 2"), "{err}");

    // Feature width: a model reading 3 node attributes, a sample carrying 2.
    let attrs = FeatureSpec::NodeAttributes { dim: 3 };
    let _torch_seed = gcleaner_engine::rng::seed_torch(4);
    let attr_model = GnnModel::new(spec(attrs, 2), Device::Cpu).unwrap();
    let with_two: Vec<Graph> =
        ds.graphs.iter().map(|g| Graph { node_attributes: Some(vec![0.5; g.num_nodes * 2]), ..g.clone() }).collect();
    let narrow = Dataset { graphs: with_two, ..ds.clone() };
    let err = purify(&attr_model, &narrow, &config, &mut NoProgress).err().expect("refused").to_string();
    assert!(err.contains("clean sample graph 0"), "{err}");

    // No graphs at all.
    let empty = Dataset { graphs: vec![], ..ds.clone() };
    let err = purify(&model, &empty, &config, &mut NoProgress).err().expect("refused").to_string();
    assert!(err.contains("no graphs"), "{err}");
}

fn weights(model: &GnnModel) -> Vec<(String, Vec<f32>)> {
    let mut all: Vec<(String, Vec<f32>)> = model
        .var_store()
        .variables()
        .into_iter()
        .filter(|(_, t)| t.kind() == Kind::Float)
        .map(|(n, t)| (n, Vec::<f32>::try_from(t.reshape([-1])).unwrap()))
        .collect();
    all.sort_by(|a, b| a.0.cmp(&b.0));
    all
}

#[test]
fn purification_is_deterministic_under_a_seed_in_both_modes() {
    let ds = synthetic::generate(60, 6);
    let model = trained_model(&ds, 6);
    for mode in [UnlearnMode::Robust, UnlearnMode::Paper] {
        let config = quick(6, mode);
        let a = purify(&model, &ds, &config, &mut NoProgress).unwrap();
        let b = purify(&model, &ds, &config, &mut NoProgress).unwrap();
        assert_eq!(weights(&a.model), weights(&b.model), "{mode:?}: weights differ");
        let (mut ra, rb) = (a.report, b.report);
        ra.timings = rb.timings.clone();
        assert_eq!(ra, rb, "{mode:?}: reports differ beyond timings");
        // Unlearning did something: the model is not the input.
        assert_ne!(weights(&a.model), weights(&model), "{mode:?}: nothing was unlearned");
    }
    // Another seed gives another run.
    let other = purify(&model, &ds, &quick(7, UnlearnMode::Robust), &mut NoProgress).unwrap();
    let first = purify(&model, &ds, &quick(6, UnlearnMode::Robust), &mut NoProgress).unwrap();
    assert_ne!(weights(&other.model), weights(&first.model));
}

/// Held-out graphs the model gets right.
fn correct(report_accuracy: f64, n: usize) -> i64 {
    (report_accuracy * n as f64).round() as i64
}

#[test]
fn a_harmful_purification_is_reported_graph_by_graph_and_warned_about() {
    let ds = synthetic::generate(80, 8);
    let model = trained_model(&ds, 8);
    let check = |config: &PurifyConfig| {
        let report = purify(&model, &ds, config, &mut NoProgress).unwrap().report;
        let (b, a, change) = (&report.holdout.before, &report.holdout.after, &report.holdout.change);
        let n = report.sample.n_holdout;
        assert_eq!(
            change.lost as i64 - change.gained as i64,
            correct(b.evaluation.accuracy, n) - correct(a.evaluation.accuracy, n),
            "graphs lost minus gained is the change in held-out graphs right"
        );
        assert_eq!(report.warnings.len(), usize::from(change.accuracy_fell));
        report
    };
    // The quick defaults leave the model's answers as they were.
    let gentle = check(&quick(8, UnlearnMode::Robust));
    assert!(!gentle.holdout.change.accuracy_fell, "{:?}", gentle.holdout.change);
    // The paper mode's loss holds no labels: at a step size 1000 times its default, with the
    // collapse guard off, it wrecks the model, and the report says so.
    let mut harmful = quick(8, UnlearnMode::Paper);
    harmful.unlearn.lr = 1.0;
    harmful.unlearn.epochs = 10;
    harmful.unlearn.collapse_drop = 1.0;
    let wrecked = check(&harmful);
    assert!(wrecked.holdout.change.accuracy_fell, "{:?}", wrecked.holdout.change);
    assert!(wrecked.warnings[0].starts_with("held-out accuracy fell"), "{}", wrecked.warnings[0]);
}

#[test]
fn auxiliary_graphs_are_labelled_with_the_models_own_predictions() {
    use gcleaner_engine::purify::pseudo_labels::pseudo_label;
    let ds = synthetic::generate(40, 8);
    let model = trained_model(&ds, 8);
    // Labels from another label space (three classes, 7/8/9): meaningless to the model.
    let mut foreign = ds.clone();
    foreign.class_labels = vec![7, 8, 9];
    for (i, g) in foreign.graphs.iter_mut().enumerate() {
        g.label = i % 3;
    }
    let labelled = pseudo_label(&model, &foreign).unwrap();
    assert_eq!(labelled.class_labels, vec![0, 1]);
    let idx: Vec<usize> = (0..ds.len()).collect();
    let batches = make_batches(&ds, &idx, 64, &model.spec().features, Device::Cpu).unwrap();
    let predicted = gcleaner_engine::metrics::predict(&model, &batches).unwrap().classes;
    let labels: Vec<usize> = labelled.graphs.iter().map(|g| g.label).collect();
    assert_eq!(labels, predicted);
    assert!(labelled.graphs.iter().zip(&ds.graphs).all(|(a, b)| a.edges == b.edges && a.num_nodes == b.num_nodes));

    // Refused as it stands (three classes for a two-class model), accepted with pseudo labels,
    // and the report says which labels were used.
    let config = quick(8, UnlearnMode::Robust);
    assert!(purify(&model, &foreign, &config, &mut NoProgress).is_err());
    let config = PurifyConfig { pseudo_labels: true, ..config };
    let outcome = purify(&model, &foreign, &config, &mut NoProgress).unwrap();
    assert!(outcome.report.config.pseudo_labels);
    let mut counts = vec![0; 2];
    for &l in &labels {
        counts[l] += 1;
    }
    assert_eq!(outcome.report.sample.class_counts, counts);
}

#[test]
fn robust_unlearning_trains_past_its_epochs_until_the_trigger_stops_flipping() {
    use gcleaner_engine::purify::recovery::Pattern;
    use gcleaner_engine::purify::unlearn::{unlearn, UnlearnConfig, UnlearnSet};
    let ds = synthetic::generate(24, 9);
    let features = FeatureSpec::OneHotDegree { max_degree: 8 };
    let _torch_seed = gcleaner_engine::rng::seed_torch(9);
    let model = GnnModel::new(spec(features, 2), Device::Cpu).unwrap();
    // A model that answers class 1 to everything, and a learning rate of 0 that keeps it so:
    // every triggered copy of a class-0 graph goes to the target, epoch after epoch.
    tch::no_grad(|| {
        let vars = model.var_store().variables();
        let _ = vars["fc2.weight"].shallow_clone().fill_(0.0);
        vars["fc2.bias"].shallow_clone().copy_(&Tensor::from_slice(&[-50.0f32, 50.0]));
    });
    let graphs: Vec<&Graph> = ds.graphs.iter().collect();
    let labels: Vec<usize> = (0..graphs.len()).map(|i| i % 2).collect();
    let node_order = graphs.iter().map(|g| (0..g.num_nodes).collect()).collect();
    let train = UnlearnSet { graphs: graphs.clone(), labels, node_order };
    let holdout = UnlearnSet { graphs: Vec::new(), labels: Vec::new(), node_order: Vec::new() };
    let trigger = Pattern { size: 3, edges: vec![(0, 1), (1, 2)], slot_features: None };
    let base = UnlearnConfig {
        epochs: 2,
        max_epochs: 5,
        // Far below any weight's float spacing: the weights never move, so the trigger keeps
        // flipping everything (a rate of 0 is refused as meaningless).
        lr: 1e-30,
        teacher_epochs: Some(0),
        positions: 1,
        collapse_drop: 1.0,
        ..UnlearnConfig::default()
    };
    let run = |config: &UnlearnConfig| {
        let mut m = model.try_clone().unwrap();
        unlearn(&mut m, &train, &holdout, std::slice::from_ref(&trigger), 1, config, 9, &mut NoProgress).unwrap().history
    };
    let history = run(&base);
    assert_eq!(history.len(), 5, "the trigger still flips everything: train to max_epochs");
    assert!(history.iter().all(|h| h.train_flip_rate == 1.0));
    // Converged by the rule (any flip rate allowed): stops at `epochs`.
    assert_eq!(run(&UnlearnConfig { converged_flip_rate: 1.0, ..base.clone() }).len(), 2);
    // The published loss runs its epochs as published.
    assert_eq!(run(&UnlearnConfig { mode: UnlearnMode::Paper, ..base.clone() }).len(), 2);
    // A converged flip rate outside [0, 1] is refused.
    let mut m = model.try_clone().unwrap();
    let bad = UnlearnConfig { converged_flip_rate: 1.5, ..base.clone() };
    assert!(unlearn(&mut m, &train, &holdout, std::slice::from_ref(&trigger), 1, &bad, 9, &mut NoProgress).is_err());
}

#[test]
fn the_mixup_term_holds_the_head_to_the_teacher_between_clean_graphs() {
    use gcleaner_engine::purify::unlearn::{unlearn, UnlearnConfig};
    let ds = synthetic::generate(24, 6);
    let model = trained_model(&ds, 6);
    // No teacher fine-tuning: the teacher is the input model itself.
    let (train, holdout, trigger, base) = short_unlearning(&ds);
    let indices: Vec<usize> = (0..ds.graphs.len()).collect();
    let batch = make_batches(&ds, &indices, indices.len(), &model.spec().features, Device::Cpu).unwrap().remove(0);
    let input_probs = tch::no_grad(|| model.forward_t(&batch.input(), false).log_probs.exp());
    // Each graph paired with the next, mixed half and half.
    let partners = Tensor::from_slice(&indices.iter().map(|&i| ((i + 1) % indices.len()) as i64).collect::<Vec<_>>());
    let midpoint = |t: &Tensor| (t + t.index_select(0, &partners)) * 0.5;
    let teacher_mid = midpoint(&input_probs);
    // Cross-entropy of the purified head at the clean graphs' midpoints against the teacher's.
    let gap = |mixup_weight: f64| {
        let mut m = model.try_clone().unwrap();
        let config = UnlearnConfig { mixup_weight, ..base.clone() };
        unlearn(&mut m, &train, &holdout, std::slice::from_ref(&trigger), 1, &config, 6, &mut NoProgress).unwrap();
        tch::no_grad(|| {
            let embedding = m.forward_t(&batch.input(), false).embedding;
            let log_probs = m.head(&midpoint(&embedding)).log_softmax(-1, Kind::Float);
            -(&teacher_mid * log_probs).sum(Kind::Double).double_value(&[]) / indices.len() as f64
        })
    };
    let free = gap(0.0);
    let mixed = gap(50.0);
    assert!(mixed < free, "mixup left the head's midpoint answers {mixed} from the teacher's, without it {free}");
    let mut m = model.try_clone().unwrap();
    let bad = UnlearnConfig { mixup_weight: f64::NAN, ..base.clone() };
    let err = unlearn(&mut m, &train, &holdout, std::slice::from_ref(&trigger), 1, &bad, 6, &mut NoProgress).unwrap_err();
    assert!(err.to_string().contains("unlearn.mixup_weight"), "{err}");
}

/// Every graph of `ds` as the unlearning set (true labels, nodes in index order), no held-out
/// graphs, a triangle trigger towards class 1, and five quick epochs without teacher fine-tuning.
fn short_unlearning(
    ds: &Dataset,
) -> (
    gcleaner_engine::purify::unlearn::UnlearnSet<'_>,
    gcleaner_engine::purify::unlearn::UnlearnSet<'_>,
    gcleaner_engine::purify::recovery::Pattern,
    gcleaner_engine::purify::unlearn::UnlearnConfig,
) {
    use gcleaner_engine::purify::recovery::Pattern;
    use gcleaner_engine::purify::unlearn::{UnlearnConfig, UnlearnSet};
    let graphs: Vec<&Graph> = ds.graphs.iter().collect();
    let labels: Vec<usize> = graphs.iter().map(|g| g.label).collect();
    let node_order = graphs.iter().map(|g| (0..g.num_nodes).collect()).collect();
    let train = UnlearnSet { graphs, labels, node_order };
    let holdout = UnlearnSet { graphs: Vec::new(), labels: Vec::new(), node_order: Vec::new() };
    let trigger = Pattern { size: 3, edges: vec![(0, 1), (1, 2), (0, 2)], slot_features: None };
    let config = UnlearnConfig {
        epochs: 5,
        max_epochs: 5,
        lr: 0.01,
        teacher_epochs: Some(0),
        positions: 2,
        collapse_drop: 1.0,
        ..UnlearnConfig::default()
    };
    (train, holdout, trigger, config)
}

#[test]
fn a_meaningless_unlearning_setting_is_refused_before_any_recovery() {
    use gcleaner_engine::progress::{Progress, ProgressEvent};
    struct Phases(Vec<String>);
    impl Progress for Phases {
        fn step(&mut self, event: ProgressEvent<'_>) -> bool {
            self.0.push(event.phase.to_string());
            true
        }
    }
    let ds = synthetic::generate(30, 7);
    let model = trained_model(&ds, 7);
    let mut config = quick(7, UnlearnMode::Robust);
    config.unlearn.mixup_weight = -1.0;
    let mut phases = Phases(Vec::new());
    let Err(err) = purify(&model, &ds, &config, &mut phases) else { panic!("a negative mixup weight was accepted") };
    let err = err.to_string();
    assert!(err.contains("unlearn.mixup_weight"), "{err}");
    assert!(phases.0.is_empty(), "work done before the refusal: {:?}", phases.0);
}
