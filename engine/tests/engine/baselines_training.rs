//! The training baselines (fine-tuning, ABL) and the shared entry point: each runs, is
//! deterministic under a seed, does what it claims (fine-tuning leaves BatchNorm statistics
//! alone, ABL isolates planted poisoned graphs), and refuses bad input with a clear error.

use crate::baselines_support;

use baselines_support::{accuracy, fresh_model, spec, trained_model, weights, DEGREE_FEATURES};
use gcleaner_engine::attacks::{poison_training_set, AttackParams, Placement, Poisoning, Trigger};
use gcleaner_engine::baselines::abl::{abl, complementary_cross_entropy, cross_entropy, isolation_count, lowest_loss};
use gcleaner_engine::baselines::finetune::fine_tune;
use gcleaner_engine::baselines::{
    run, AblConfig, BaselineConfig, DefenceKind, FinetuneConfig, FinetuneScope, UnlearningObjective,
};
use gcleaner_engine::data::{synthetic, Dataset, FeatureSpec, Graph};
use gcleaner_engine::progress::{NoProgress, ProgressEvent};
use gcleaner_engine::rng::rng_for;
use gcleaner_engine::Error;
use rand::Rng as _;
use tch::{Kind, Tensor};

fn sample(n: usize, seed: u64) -> Dataset {
    synthetic::generate(n, seed)
}

#[test]
fn fine_tuning_is_deterministic_learns_and_leaves_batch_norm_statistics_alone() {
    let ds = sample(40, 5);
    // An untrained model has something to learn from the sample.
    let model = fresh_model(spec(DEGREE_FEATURES, 3, 2), 4);
    let config = FinetuneConfig::default();
    let (a, report) = fine_tune(&model, &ds, &config, 9, &mut NoProgress).unwrap();
    let (b, again) = fine_tune(&model, &ds, &config, 9, &mut NoProgress).unwrap();
    assert_eq!(weights(&a), weights(&b));
    assert_eq!(report, again);
    assert_eq!(report.epoch_loss.len(), 30);
    assert_eq!(report.n_sample, 40);
    let (first, last) = (report.epoch_loss[0], *report.epoch_loss.last().unwrap());
    assert!(last < 0.8 * first, "loss {first} -> {last}");

    let (before, after) = (weights(&model), weights(&a));
    for ((name, old), (_, new)) in before.iter().zip(&after) {
        if name.contains("running_") || name.contains("num_batches_tracked") {
            assert_eq!(old, new, "{name} changed: BatchNorm must stay in evaluation mode");
        }
    }
    assert_ne!(before, after);
    // The input model is left untouched.
    assert_eq!(before, weights(&model));
}

#[test]
fn fine_tuning_the_last_block_only_freezes_the_rest() {
    let ds = sample(30, 6);
    let model = fresh_model(spec(DEGREE_FEATURES, 3, 2), 4);
    let config = FinetuneConfig { epochs: 5, scope: FinetuneScope::LastConvAndHead, ..FinetuneConfig::default() };
    let (tuned, _) = fine_tune(&model, &ds, &config, 1, &mut NoProgress).unwrap();
    for ((name, old), (_, new)) in weights(&model).iter().zip(&weights(&tuned)) {
        let trainable = name.starts_with("conv3.") || name.starts_with("fc1.") || name.starts_with("fc2.");
        if trainable && !name.contains("eps") {
            assert_ne!(old, new, "{name} should have been trained");
        } else if !trainable {
            assert_eq!(old, new, "{name} should be frozen");
        }
    }
    // The returned model is trainable again everywhere, like any loaded model.
    assert!(tuned.var_store().trainable_variables().iter().all(|t| t.requires_grad()));
}

#[test]
fn fine_tuning_refuses_samples_the_model_cannot_read_and_stops_when_cancelled() {
    let model = fresh_model(spec(FeatureSpec::NodeLabelsOneHot { num_labels: 4 }, 2, 2), 0);
    let config = BaselineConfig::default();
    let mut ds = sample(6, 1);
    let empty = Dataset { graphs: vec![], ..ds.clone() };
    let err = run(DefenceKind::Finetune, &model, &empty, None, &config, 0, &mut NoProgress).unwrap_err();
    assert!(err.to_string().contains("no graphs"), "{err}");

    ds.graphs[3].node_labels = None;
    let err = run(DefenceKind::Finetune, &model, &ds, None, &config, 0, &mut NoProgress).unwrap_err();
    assert!(err.to_string().contains("graph 3") && err.to_string().contains("node labels"), "{err}");

    let mut three = sample(6, 1);
    three.graphs[0].label = 2;
    three.class_labels = vec![0, 1, 2];
    let err = run(DefenceKind::Finetune, &model, &three, None, &config, 0, &mut NoProgress).unwrap_err();
    assert!(err.to_string().contains("3 classes"), "{err}");

    let bad = BaselineConfig { finetune: FinetuneConfig { lr: -1.0, ..FinetuneConfig::default() }, ..config.clone() };
    let err = run(DefenceKind::Finetune, &model, &sample(6, 1), None, &bad, 0, &mut NoProgress).unwrap_err();
    assert!(err.to_string().contains("learning rate"), "{err}");

    let mut steps = 0;
    let mut cancel_after_two = |e: ProgressEvent<'_>| {
        assert_eq!(e.phase, "finetune");
        steps += 1;
        steps < 2
    };
    let err = run(DefenceKind::Finetune, &model, &sample(6, 1), None, &config, 0, &mut cancel_after_two).unwrap_err();
    assert!(matches!(err, Error::Cancelled), "{err}");
    assert_eq!(steps, 2);
}

/// 240 synthetic graphs whose labels are 30% noise, 5% of them (12 class-0 graphs) carrying a
/// 9-clique (nine nodes in the top degree bucket) and relabelled 1. ABL's premise is that the
/// trigger is learnt before the clean task; that holds here, where the trigger is the one
/// pattern that predicts its label perfectly. (Without the label noise the clean task is learnt
/// as fast, and isolation precision over 8 seeds averaged 0.45: see docs/baselines.md.)
fn planted_backdoor() -> (Poisoning, Trigger) {
    let mut ds = sample(240, 21);
    let mut rng = rng_for(21, "label-noise");
    for g in &mut ds.graphs {
        if rng.gen_bool(0.3) {
            g.label = 1 - g.label;
        }
    }
    let train: Vec<usize> = (0..240).collect();
    let clique: Vec<(u32, u32)> = (0..9).flat_map(|u| (u + 1..9).map(move |v| (u, v))).collect();
    let trigger = Trigger::new(9, clique).unwrap();
    let params = AttackParams { target_class: 1, injection_ratio: 0.05, trigger_ratio: 0.2, seed: 3 };
    (poison_training_set(&ds, &train, &trigger, Placement::Random, &params).unwrap(), trigger)
}

fn quick_abl() -> AblConfig {
    AblConfig {
        isolation_epochs: 20,
        isolation_ratio: 0.05,
        training_epochs: 10,
        lr: 0.01,
        unlearning_epochs: 5,
        unlearning_objective: UnlearningObjective::GradientAscent,
        batch_size: 32,
        ..AblConfig::default()
    }
}

#[test]
fn abl_isolates_the_planted_poisoned_graphs_deterministically() {
    let (poisoning, _) = planted_backdoor();
    let poisoned = poisoning.poisoned_indices();
    assert_eq!(poisoned.len(), 12);
    let train: Vec<usize> = (0..240).collect();
    let model = fresh_model(spec(DEGREE_FEATURES, 3, 2), 0);
    let config = quick_abl();
    let (trained, report) = abl(&model, &poisoning.dataset, &train, &config, 7, &mut NoProgress).unwrap();
    assert_eq!(report.isolated.len(), 12);
    assert_eq!(report.n_train, 240);
    let precision = report.isolation_precision(&poisoned);
    eprintln!(
        "isolated {:?} poisoned {:?} losses {:?} median {}",
        report.isolated, poisoned, report.isolated_losses, report.median_loss
    );
    // Over seeds 0..8 this fixture gave 0.75 to 1.0.
    assert!(precision >= 0.6, "isolation precision {precision} (base rate 0.05)");
    assert!(report.isolated_losses.windows(2).all(|w| w[0] <= w[1]));
    assert!(report.isolated_losses.iter().all(|&l| l <= report.median_loss));
    assert_eq!(report.isolation_loss.len(), 20);
    assert_eq!(report.training.len(), 10);
    assert_eq!(report.unlearning_loss.len(), 5);
    // The model is certain of the poisoned graphs it learnt: cross-entropy far below f32's
    // resolution, nothing for gradient ascent to climb, and it stays there.
    assert!(report.unlearning_loss.iter().all(|&l| l < 1e-20), "{:?}", report.unlearning_loss);

    let (again, same) = abl(&model, &poisoning.dataset, &train, &config, 7, &mut NoProgress).unwrap();
    assert_eq!(report, same);
    assert_eq!(weights(&trained), weights(&again));

    // The complementary objective does move them: same isolation, losses rise by orders of
    // magnitude within five epochs.
    let complementary = AblConfig { unlearning_objective: UnlearningObjective::Complementary, ..config };
    let (_, unlearnt) = abl(&model, &poisoning.dataset, &train, &complementary, 7, &mut NoProgress).unwrap();
    assert_eq!(unlearnt.isolated, report.isolated);
    let losses = &unlearnt.unlearning_loss;
    assert!(losses[4] > 1e6 * losses[0].max(1e-300), "{losses:?}");
}

#[test]
fn complementary_cross_entropy_keeps_its_gradient_when_the_model_is_certain() {
    let logits = Tensor::from_slice(&[1.0f32, 2.0, 60.0, 0.0]).view([2, 2]).set_requires_grad(true);
    let labels = Tensor::from_slice(&[0i64, 0]);
    let loss = complementary_cross_entropy(&logits, &labels);
    // -log(1 - p_0): p_0 = sigmoid(-1) for the first row, ~1 for the second (-log(e^-60) = 60).
    let first = -(1.0 - 1.0 / (1.0 + 1f64.exp())).ln();
    assert!((loss.double_value(&[]) - (first + 60.0) / 2.0).abs() < 1e-4, "{loss}");
    loss.backward();
    let grad = logits.grad();
    // d/dl_0 of -log(1 - p_0) is p_0 / ... = 1 for a certain model: halved by the mean.
    assert!((grad.double_value(&[1, 0]) - 0.5).abs() < 1e-4, "{grad}");

    let ce_logits = Tensor::from_slice(&[60.0f32, 0.0]).view([1, 2]).set_requires_grad(true);
    let ce = ce_logits.log_softmax(-1, Kind::Float).nll_loss(&Tensor::from_slice(&[0i64]));
    ce.backward();
    let ce_grad = ce_logits.grad().abs().sum(Kind::Float).double_value(&[]);
    assert!(ce_grad < 1e-20, "cross-entropy saturates: gradient {ce_grad}");
}

#[test]
fn abl_refuses_unusable_training_sets() {
    let (poisoning, _) = planted_backdoor();
    let ds = &poisoning.dataset;
    let model = fresh_model(spec(DEGREE_FEATURES, 2, 2), 0);
    let config = BaselineConfig { abl: quick_abl(), ..BaselineConfig::default() };
    let clean = sample(4, 1);
    let fails = |train: Option<(&Dataset, &[usize])>, config: &BaselineConfig| {
        run(DefenceKind::Abl, &model, &clean, train, config, 0, &mut NoProgress).unwrap_err().to_string()
    };
    assert!(fails(None, &config).contains("poisoned training set"));
    assert!(fails(Some((ds, &[])), &config).contains("no graphs"));
    assert!(fails(Some((ds, &[0, 1, 240])), &config).contains("index 240"));
    assert!(fails(Some((ds, &[0, 1, 1])), &config).contains("given twice"));
    // One graph: isolating at least one leaves nothing to train on.
    assert!(fails(Some((ds, &[5])), &config).contains("train on none"));
    let mut three = ds.clone();
    three.graphs[2].label = 2;
    let err = run(DefenceKind::Abl, &model, &clean, Some((&three, &[0, 1, 2, 3])), &config, 0, &mut NoProgress).unwrap_err();
    assert!(err.to_string().contains("training graph 2 has class 2"), "{err}");
    for abl in [
        AblConfig { isolation_ratio: 1.0, ..quick_abl() },
        AblConfig { gamma: 0.0, ..quick_abl() },
        AblConfig { isolation_epochs: 0, ..quick_abl() },
        AblConfig { unlearning_lr: f64::INFINITY, ..quick_abl() },
    ] {
        let bad = BaselineConfig { abl, ..config.clone() };
        assert!(fails(Some((ds, &[0, 1, 2, 3])), &bad).contains("ABL"));
    }
}

#[test]
fn isolation_takes_the_lowest_losses_with_ties_to_the_smaller_index() {
    assert_eq!(isolation_count(240, 0.01), 2);
    assert_eq!(isolation_count(30, 0.01), 1);
    assert_eq!(lowest_loss(&[10, 11, 12, 13], &[0.5, 0.1, 0.1, 0.05], 3), vec![13, 11, 12]);
    assert_eq!(lowest_loss(&[12, 11], &[0.1, 0.1], 1), vec![11]);
}

#[test]
fn cross_entropy_matches_log_softmax_and_keeps_ordering_when_saturated() {
    for (logits, label) in [(vec![1.0, 2.0, 0.5], 0), (vec![1.0, 2.0, 0.5], 1), (vec![-3.0, 4.0], 0)] {
        let lse = logits.iter().map(|l: &f64| l.exp()).sum::<f64>().ln();
        let expected = lse - logits[label];
        assert!((cross_entropy(&logits, label) - expected).abs() < 1e-12, "{logits:?} {label}");
    }
    // Margins of 30 and 40: both 0 in f32 log-softmax, still ordered here.
    let (a, b) = (cross_entropy(&[30.0, 0.0], 0), cross_entropy(&[40.0, 0.0], 0));
    assert!(a > b && b > 0.0, "{a} {b}");
    assert!((a - (-30f64).exp()).abs() < 1e-20);
    assert_eq!(cross_entropy(&[1.0, 2.0], 5), f64::INFINITY);
}

#[test]
fn every_defence_runs_deterministically_through_the_entry_point() {
    let ds = sample(240, 8);
    let train: Vec<usize> = (0..200).collect();
    let model = trained_model(&ds, &train, spec(DEGREE_FEATURES, 2, 2), 10, 3);
    let clean = sample(30, 77);
    let eval: Vec<&Graph> = ds.graphs[200..].iter().collect();
    let config =
        BaselineConfig { abl: AblConfig { isolation_epochs: 3, training_epochs: 3, ..quick_abl() }, ..BaselineConfig::default() };
    for kind in DefenceKind::ALL {
        let train_set = Some((&ds, train.as_slice()));
        let a = run(kind, &model, &clean, train_set, &config, 5, &mut NoProgress).unwrap();
        let b = run(kind, &model, &clean, train_set, &config, 5, &mut NoProgress).unwrap();
        let predicted = a.predict(&eval).unwrap();
        assert_eq!(predicted.len(), eval.len());
        assert_eq!(predicted, b.predict(&eval).unwrap(), "{kind}");
        assert_eq!(weights(a.model()), weights(b.model()), "{kind}");
        assert_eq!(a.report().defence, kind);
        assert_eq!(a.kind().name().parse::<DefenceKind>().unwrap(), kind);
        let acc = accuracy(&predicted, &eval);
        eprintln!("{kind}: accuracy {acc:.3}");
        // Pruning every edge between nodes of different degree is not expected to keep accuracy.
        assert!(kind == DefenceKind::Prune || acc > 0.8, "{kind}: accuracy {acc}");
        let json = serde_json::to_value(a.report()).unwrap();
        assert_eq!(json["defence"], kind.name());
        if kind == DefenceKind::Abl {
            // ABL trains its own model: the input's weights do not matter, only its spec.
            let untrained = fresh_model(model.spec().clone(), 1234);
            let c = run(kind, &untrained, &clean, train_set, &config, 5, &mut NoProgress).unwrap();
            assert_eq!(weights(a.model()), weights(c.model()));
        }
    }
    assert!("nope".parse::<DefenceKind>().unwrap_err().contains("finetune, prune, smoothing or abl"));
    assert_eq!("randomized-smoothing".parse::<DefenceKind>().unwrap(), DefenceKind::Smoothing);
}
