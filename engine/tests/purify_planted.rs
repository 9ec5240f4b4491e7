//! Purification against a backdoor planted in generated graphs: recovery must name the target
//! class, and unlearning must bring the attack success rate down while keeping accuracy.

use gcleaner_engine::attacks::{poison_training_set, triggered_eval_set, AttackParams, Placement, Trigger};
use gcleaner_engine::data::batch::make_batches;
use gcleaner_engine::data::split::train_test_split;
use gcleaner_engine::data::{synthetic, Dataset, FeatureSpec, Graph};
use gcleaner_engine::metrics;
use gcleaner_engine::models::{Arch, GnnModel, ModelSpec, SPEC_FORMAT};
use gcleaner_engine::progress::NoProgress;
use gcleaner_engine::purify::{purify, PurifyConfig};
use gcleaner_engine::train::{train, TrainConfig};
use tch::Device;

const TARGET: usize = 0;

struct Planted {
    model: GnnModel,
    clean_model: GnnModel,
    sample: Dataset,
    eval_clean: Dataset,
    eval_triggered: Dataset,
}

fn trained(ds: &Dataset, indices: &[usize], features: &FeatureSpec, seed: u64) -> GnnModel {
    let spec = ModelSpec {
        format: SPEC_FORMAT.into(),
        arch: Arch::Gin,
        in_features: features.dim(),
        hidden: 32,
        num_classes: 2,
        num_layers: 3,
        pooling: Arch::Gin.default_pooling(),
        features: features.clone(),
        class_labels: Some(ds.class_labels.clone()),
    };
    let _torch_seed = gcleaner_engine::rng::seed_torch(seed);
    let mut model = GnnModel::new(spec, Device::Cpu).unwrap();
    let batches = make_batches(ds, indices, 32, features, Device::Cpu).unwrap();
    let config = TrainConfig { epochs: 40, lr: 0.01, lr_step: 20, seed, ..TrainConfig::default() };
    train(&mut model, &batches, &config, &mut NoProgress).unwrap();
    model
}

fn planted(seed: u64) -> Planted {
    let ds = synthetic::generate(600, seed);
    let features = FeatureSpec::OneHotDegree { max_degree: 8 };
    let (train_idx, held) = train_test_split(ds.len(), 0.7, seed);
    let trigger = Trigger::erdos_renyi(4, 0.8, seed).unwrap();
    let params = AttackParams { target_class: TARGET, injection_ratio: 0.15, trigger_ratio: 0.2, seed };
    let poisoning = poison_training_set(&ds, &train_idx, &trigger, Placement::Random, &params).unwrap();
    let model = trained(&poisoning.dataset, &train_idx, &features, seed);
    let clean_model = trained(&ds, &train_idx, &features, seed);
    let (sample_idx, eval_idx) = held.split_at(60);
    let triggered = triggered_eval_set(&ds, eval_idx, TARGET, &trigger, Placement::Random, seed + 1).unwrap();
    let eval_triggered = Dataset {
        name: "triggered".into(),
        graphs: triggered.into_iter().map(|t| t.graph).collect(),
        class_labels: ds.class_labels.clone(),
    };
    Planted { model, clean_model, sample: ds.subset(sample_idx), eval_clean: ds.subset(eval_idx), eval_triggered }
}

fn classes(model: &GnnModel, graphs: &[Graph]) -> (Vec<usize>, Vec<usize>) {
    let ds = Dataset { name: "eval".into(), graphs: graphs.to_vec(), class_labels: vec![0, 1] };
    let idx: Vec<usize> = (0..ds.len()).collect();
    let batches = make_batches(&ds, &idx, 128, &model.spec().features, Device::Cpu).unwrap();
    let p = metrics::predict(model, &batches).unwrap();
    (p.classes, p.labels)
}

fn asr_and_accuracy(model: &GnnModel, p: &Planted) -> (f64, f64) {
    let (pred, labels) = classes(model, &p.eval_triggered.graphs);
    let (asr, _) = metrics::attack_success_rate(&pred, &labels, TARGET);
    let (pred, labels) = classes(model, &p.eval_clean.graphs);
    (asr, metrics::evaluate(&pred, &labels, 2).accuracy)
}

#[test]
fn purification_finds_the_target_and_removes_a_planted_backdoor() {
    let p = planted(5);
    let (asr_before, acc_before) = asr_and_accuracy(&p.model, &p);
    let (clean_asr, clean_acc) = asr_and_accuracy(&p.clean_model, &p);
    eprintln!("backdoored: ASR {asr_before:.3} ACC {acc_before:.3}; clean model: ASR {clean_asr:.3} ACC {clean_acc:.3}");
    assert!(asr_before > 0.8, "the planted backdoor did not take: ASR {asr_before}");

    let config = PurifyConfig { seed: 5, ..PurifyConfig::default() };
    let outcome = purify(&p.model, &p.sample, &config, &mut NoProgress).unwrap();
    let report = &outcome.report;
    for c in &report.candidates {
        eprintln!(
            "size {} edges {:?} objective {:.4} target {} flip {:.3} score {:.3}",
            c.recovered.trigger.size,
            c.recovered.trigger.edges,
            c.recovered.objective,
            c.evidence.target,
            c.evidence.flip_rate,
            c.evidence.score
        );
    }
    eprintln!("verdict: {}", report.verdict.summary);
    let (asr_after, acc_after) = asr_and_accuracy(&outcome.model, &p);
    eprintln!("purified: ASR {asr_after:.3} ACC {acc_after:.3}; timings {:?}", report.timings);
    assert_eq!(report.verdict.suspected_target, TARGET);
    assert!(report.verdict.backdoor_evidence);
    // The selected trigger is unlearned first, with every other size that points at the same
    // class with evidence.
    assert_eq!(report.unlearned_candidates.first(), Some(&report.selected));
    for (i, c) in report.candidates.iter().enumerate() {
        let with_evidence = c.evidence.target == TARGET && c.evidence.score >= config.evidence_threshold;
        assert_eq!(report.unlearned_candidates.contains(&i), with_evidence || i == report.selected, "candidate {i}");
        // Every census shape is reported, and the one kept (when the census won) is the
        // strongest of them.
        assert_eq!(c.census.len(), c.census_patterns, "candidate {i}");
        if c.source == gcleaner_engine::purify::report::TriggerSource::Census {
            // Census patterns are ranked before the null is measured, by the flip rate beyond
            // the target's share of predictions.
            let best = c.census.iter().map(|e| e.score).fold(0.0, f64::max);
            assert_eq!(c.evidence.null.as_ref().map(|n| n.share_score), Some(best), "candidate {i}");
            assert!(c.census.iter().any(|e| e.edges == c.recovered.trigger.edges), "candidate {i}");
        }
    }
    assert!(asr_after < asr_before / 2.0, "ASR {asr_before} -> {asr_after}");
    assert!(acc_after > acc_before - 0.1, "accuracy {acc_before} -> {acc_after}");
}
