//! Purification against a backdoor planted in generated graphs: recovery must name the target
//! class, and unlearning must bring the attack success rate down while keeping accuracy. The
//! verdict is judged against the per-model null, so a trigger of any size is found, while a
//! pattern the data itself ties to a class is not called a backdoor.

use gcleaner_engine::attacks::{poison_training_set, triggered_eval_set, AttackParams, Placement, Trigger};
use gcleaner_engine::data::batch::make_batches;
use gcleaner_engine::data::split::train_test_split;
use gcleaner_engine::data::{synthetic, Dataset, FeatureSpec, Graph};
use gcleaner_engine::metrics;
use gcleaner_engine::models::{Arch, GnnModel, ModelSpec, SPEC_FORMAT};
use gcleaner_engine::progress::NoProgress;
use gcleaner_engine::purify::{purify, PurifyConfig};
use gcleaner_engine::rng::rng_for;
use gcleaner_engine::train::{train, TrainConfig};
use rand::Rng;
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
        pyg: None,
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

/// Graphs of 50-70 nodes in two classes: sparse trees with a few chords (class 0) and the same
/// with a ring of extra chords (class 1): a degree-featured model separates them by density.
fn large_graphs(n: usize, seed: u64) -> Dataset {
    let mut rng = rng_for(seed, "large-graphs");
    let graphs = (0..n)
        .map(|i| {
            let label = i % 2;
            let nodes = rng.gen_range(50..=70u32);
            let mut edges: Vec<(u32, u32)> = (1..nodes).map(|v| (rng.gen_range(0..v), v)).collect();
            let chords = if label == 0 { nodes / 10 } else { nodes / 3 };
            for _ in 0..chords {
                let (a, b) = (rng.gen_range(0..nodes), rng.gen_range(0..nodes));
                if a != b {
                    edges.push((a.min(b), a.max(b)));
                }
            }
            let mut g = Graph { num_nodes: nodes as usize, edges, node_labels: None, node_attributes: None, label };
            g.canonicalize_edges();
            g
        })
        .collect();
    Dataset { name: "large".into(), graphs, class_labels: vec![0, 1] }
}

struct Models {
    backdoored: GnnModel,
    clean: GnnModel,
    sample: Dataset,
    eval_triggered: Dataset,
}

fn backdoored_and_clean(ds: &Dataset, trigger: &Trigger, target: usize, features: &FeatureSpec, seed: u64) -> Models {
    let (train_idx, held) = train_test_split(ds.len(), 0.7, seed);
    let params = AttackParams { target_class: target, injection_ratio: 0.15, trigger_ratio: 0.2, seed };
    let poisoning = poison_training_set(ds, &train_idx, trigger, Placement::Random, &params).unwrap();
    let backdoored = trained(&poisoning.dataset, &train_idx, features, seed);
    let clean = trained(ds, &train_idx, features, seed);
    let (sample_idx, eval_idx) = held.split_at(40);
    let triggered = triggered_eval_set(ds, eval_idx, target, trigger, Placement::Random, seed + 1).unwrap();
    let eval_triggered = Dataset {
        name: "triggered".into(),
        graphs: triggered.into_iter().map(|t| t.graph).collect(),
        class_labels: ds.class_labels.clone(),
    };
    Models { backdoored, clean, sample: ds.subset(sample_idx), eval_triggered }
}

fn asr(model: &GnnModel, triggered: &Dataset, target: usize) -> f64 {
    let idx: Vec<usize> = (0..triggered.len()).collect();
    let batches = make_batches(triggered, &idx, 128, &model.spec().features, Device::Cpu).unwrap();
    let p = metrics::predict(model, &batches).unwrap();
    metrics::attack_success_rate(&p.classes, &p.labels, target).0
}

fn weights(model: &GnnModel) -> Vec<(String, Vec<f32>)> {
    let mut named: Vec<(String, Vec<f32>)> = model
        .var_store()
        .variables()
        .into_iter()
        .map(|(name, t)| (name, Vec::<f32>::try_from(t.flatten(0, -1)).unwrap()))
        .collect();
    named.sort_by(|a, b| a.0.cmp(&b.0));
    named
}

#[test]
fn a_planted_twelve_node_trigger_in_sixty_node_graphs_is_found_and_unlearned() {
    let ds = large_graphs(400, 3);
    let features = FeatureSpec::OneHotDegree { max_degree: 12 };
    let target = 0;
    let trigger = Trigger::erdos_renyi(12, 0.8, 3).unwrap();
    let m = backdoored_and_clean(&ds, &trigger, target, &features, 3);
    let (before, natural) = (asr(&m.backdoored, &m.eval_triggered, target), asr(&m.clean, &m.eval_triggered, target));
    eprintln!("ASR {before:.3}, never-backdoored model {natural:.3}");
    assert!(before > 0.8 && natural < 0.3, "the attack did not take: ASR {before}, never-backdoored {natural}");

    let outcome =
        purify(&m.backdoored, &m.sample, &PurifyConfig { seed: 3, ..PurifyConfig::default() }, &mut NoProgress).unwrap();
    let report = &outcome.report;
    for c in &report.candidates {
        eprintln!(
            "size {} edges {} target {} flip {:.3} score {:.3} null {:?}",
            c.recovered.trigger.size,
            c.recovered.trigger.edges.len(),
            c.evidence.target,
            c.evidence.flip_rate,
            c.evidence.score,
            c.evidence.null
        );
    }
    eprintln!("{}", report.verdict.summary);
    // The sizes searched scale with the graphs: a fifth of 60 nodes is among them.
    assert!(report.candidates.iter().any(|c| c.recovered.trigger.size >= 12), "no large size searched");
    assert!(report.verdict.backdoor_evidence, "{}", report.verdict.summary);
    assert_eq!(report.verdict.suspected_target, target);
    let after = asr(&outcome.model, &m.eval_triggered, target);
    eprintln!("ASR after {after:.3}");
    assert!(after < natural + 0.2, "ASR {before} -> {after} (never-backdoored {natural})");
}

#[test]
fn a_pattern_the_data_ties_to_a_class_is_no_backdoor_and_a_planted_one_is() {
    // Generated graphs whose class 1 is the denser one: a dense pattern sends a never-backdoored
    // model's graphs there. The attacker plants a dense pattern for class 0 instead.
    let ds = synthetic::generate(600, 5);
    let features = FeatureSpec::OneHotDegree { max_degree: 8 };
    let target = 0;
    let trigger = Trigger::erdos_renyi(4, 0.8, 5).unwrap();
    let m = backdoored_and_clean(&ds, &trigger, target, &features, 5);
    let config = PurifyConfig { seed: 5, ..PurifyConfig::default() };

    let clean = purify(&m.clean, &m.sample, &config, &mut NoProgress).unwrap();
    eprintln!("never-backdoored: {}", clean.report.verdict.summary);
    assert!(!clean.report.verdict.backdoor_evidence, "{}", clean.report.verdict.summary);
    assert!(weights(&clean.model) == weights(&m.clean), "a model without evidence must come back unchanged");

    let planted = purify(&m.backdoored, &m.sample, &config, &mut NoProgress).unwrap();
    eprintln!("backdoored: {}", planted.report.verdict.summary);
    assert!(planted.report.verdict.backdoor_evidence, "{}", planted.report.verdict.summary);
    assert_eq!(planted.report.verdict.suspected_target, target);
    // The evidence itself separates them, not only the threshold.
    assert!(
        planted.report.verdict.evidence_score > clean.report.verdict.evidence_score + 0.1,
        "planted {} vs natural {}",
        planted.report.verdict.evidence_score,
        clean.report.verdict.evidence_score
    );
}
