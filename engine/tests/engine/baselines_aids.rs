//! The four baselines against a Sub-BA backdoor on AIDS (GIN, 3% clean sample): prints ASR and
//! clean accuracy before and after each defence. Slow (a backdoored model and ABL's model are
//! trained), so ignored by default:
//!
//!     cargo test --release -p gcleaner-engine --test engine baselines_aids -- --ignored --nocapture
//!
//! Skips with a printed reason when ../shared/datasets/AIDS is absent.

use crate::baselines_support;

use std::path::PathBuf;
use std::time::Instant;

use gcleaner_engine::attacks::{
    poison_training_set, resolve_target_class, triggered_eval_set, AttackParams, Placement, Trigger, DEFAULT_TRIGGER_DENSITY,
};
use gcleaner_engine::baselines::{
    run, AblConfig, BaselineConfig, DefenceKind, DefendedModel, FeatureSource, FinetuneConfig, FinetuneScope, PruneConfig,
    SmoothingConfig, UnlearningObjective,
};
use gcleaner_engine::data::split::train_test_split;
use gcleaner_engine::data::{load_dataset, make_batches, Dataset, FeatureSpec, Graph};
use gcleaner_engine::metrics::{attack_success_rate, evaluate};
use gcleaner_engine::models::{Arch, GnnModel, ModelSpec};
use gcleaner_engine::progress::NoProgress;
use gcleaner_engine::train::{train, TrainConfig};
use tch::Device;

fn aids() -> Option<Dataset> {
    let path = match std::env::var_os("GCLEANER_DATASETS") {
        Some(dir) => PathBuf::from(dir).join("AIDS"),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/datasets/AIDS"),
    };
    if !path.exists() {
        eprintln!("skipped: {} is absent", path.display());
        return None;
    }
    Some(load_dataset(&path).expect("AIDS loads"))
}

struct Scores {
    asr: f64,
    accuracy: f64,
    balanced: f64,
}

fn score(predict: &dyn Fn(&[&Graph]) -> Vec<usize>, clean: &[&Graph], triggered: &[&Graph], target: usize) -> Scores {
    let labels: Vec<usize> = clean.iter().map(|g| g.label).collect();
    let e = evaluate(&predict(clean), &labels, 2);
    let trig_labels: Vec<usize> = triggered.iter().map(|g| g.label).collect();
    let (asr, _) = attack_success_rate(&predict(triggered), &trig_labels, target);
    Scores { asr, accuracy: e.accuracy, balanced: e.balanced_accuracy }
}

#[test]
#[ignore = "slow: trains two GIN models on AIDS"]
fn baselines_against_sub_ba_on_aids() {
    let Some(ds) = aids() else { return };
    baselines_support::single_threaded();
    let seed = std::env::var("GCLEANER_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(10);
    let target = resolve_target_class(&ds, 1).unwrap();
    let (train_idx, test_idx) = train_test_split(ds.len(), 0.8, seed);
    let n_clean = ((ds.len() as f64) * 0.03).round() as usize;
    let (clean_idx, eval_idx) = test_idx.split_at(n_clean);
    let params = AttackParams { target_class: target, injection_ratio: 0.05, trigger_ratio: 0.2, seed };
    let trigger = Trigger::erdos_renyi(params.trigger_size(&ds).unwrap(), DEFAULT_TRIGGER_DENSITY, seed).unwrap();
    let poisoning = poison_training_set(&ds, &train_idx, &trigger, Placement::Random, &params).unwrap();
    let triggered: Vec<Graph> = triggered_eval_set(&ds, eval_idx, target, &trigger, Placement::Random, seed)
        .unwrap()
        .into_iter()
        .map(|g| g.graph)
        .collect();
    let triggered: Vec<&Graph> = triggered.iter().collect();
    let clean_eval: Vec<&Graph> = eval_idx.iter().map(|&i| &ds.graphs[i]).collect();
    let sample = ds.subset(clean_idx);

    let features = FeatureSpec::default_for(&ds);
    let spec = ModelSpec::published(Arch::Gin, features.dim(), 64, 2, features.clone());
    let _torch_seed = gcleaner_engine::rng::seed_torch(seed);
    let mut model = GnnModel::new(spec, Device::Cpu).unwrap();
    let batches = make_batches(&poisoning.dataset, &train_idx, 64, &features, Device::Cpu).unwrap();
    let t = Instant::now();
    let config = TrainConfig { epochs: 100, seed, ..TrainConfig::default() };
    train(&mut model, &batches, &config, &mut NoProgress).unwrap();
    eprintln!("backdoored model trained in {:.0} s", t.elapsed().as_secs_f64());

    let plain = |graphs: &[&Graph]| {
        let b = gcleaner_engine::data::GraphBatch::new(graphs, (0..graphs.len()).collect(), &features, Device::Cpu).unwrap();
        let lp = tch::no_grad(|| model.forward_t(&b.input(), false).log_probs.argmax(-1, false));
        Vec::<i64>::try_from(lp).unwrap().into_iter().map(|c| c as usize).collect::<Vec<_>>()
    };
    let before = score(&plain, &clean_eval, &triggered, target);
    eprintln!(
        "AIDS Sub-BA (trigger {} nodes, {} poisoned, sample {}, eval {} clean / {} triggered)",
        trigger.num_nodes,
        poisoning.poisoned.len(),
        sample.len(),
        clean_eval.len(),
        triggered.len()
    );
    eprintln!("{:<22} {:>6} {:>6} {:>6} {:>7}", "defence", "ASR", "ACC", "BACC", "time s");
    eprintln!("{:<22} {:>6.3} {:>6.3} {:>6.3}", "none", before.asr, before.accuracy, before.balanced);
    assert!(before.asr > 0.5, "the attack did not take: ASR {}", before.asr);

    let mut runs: Vec<(String, BaselineConfig, DefenceKind)> =
        DefenceKind::ALL.iter().map(|&k| (k.name().to_string(), BaselineConfig::default(), k)).collect();
    let variant = |name: &str, config: BaselineConfig, kind| (name.to_string(), config, kind);
    let base = BaselineConfig::default();
    runs.extend([
        variant(
            "finetune (last block)",
            BaselineConfig {
                finetune: FinetuneConfig { scope: FinetuneScope::LastConvAndHead, ..base.finetune.clone() },
                ..base.clone()
            },
            DefenceKind::Finetune,
        ),
        variant(
            "prune (recomputed)",
            BaselineConfig { prune: PruneConfig { features: FeatureSource::Recomputed, ..base.prune.clone() }, ..base.clone() },
            DefenceKind::Prune,
        ),
        variant(
            "smoothing (nodes 0.8)",
            BaselineConfig { smoothing: SmoothingConfig { node_keep: 0.8, ..base.smoothing.clone() }, ..base.clone() },
            DefenceKind::Smoothing,
        ),
        variant(
            "abl (published: GA 5 ep)",
            BaselineConfig {
                abl: AblConfig {
                    unlearning_objective: UnlearningObjective::GradientAscent,
                    unlearning_epochs: 5,
                    ..base.abl.clone()
                },
                ..base.clone()
            },
            DefenceKind::Abl,
        ),
    ]);
    for (name, config, kind) in runs {
        let t = Instant::now();
        let train_set = Some((&poisoning.dataset, train_idx.as_slice()));
        let defended: DefendedModel = run(kind, &model, &sample, train_set, &config, seed, &mut NoProgress).unwrap();
        let predict = |graphs: &[&Graph]| defended.predict(graphs).unwrap();
        let s = score(&predict, &clean_eval, &triggered, target);
        eprintln!("{name:<22} {:>6.3} {:>6.3} {:>6.3} {:>7.1}", s.asr, s.accuracy, s.balanced, t.elapsed().as_secs_f64());
        if let Some(abl) = &defended.report().abl {
            eprintln!(
                "    isolated {} graphs, precision {:.2}; isolated loss per unlearning epoch {:?}",
                abl.isolated.len(),
                abl.isolation_precision(&poisoning.poisoned_indices()),
                abl.unlearning_loss
            );
        }
        assert!((0.0..=1.0).contains(&s.asr) && (0.0..=1.0).contains(&s.accuracy));
    }
}
