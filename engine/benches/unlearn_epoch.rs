//! `make bench`: seconds per robust-mode unlearning epoch on AIDS, and one whole
//! `purify()` (recovery + unlearning) on the same 3% clean sample.
//!
//! The model is a Sub-BA-backdoored GIN of the default spec (one-hot degree features, hidden 64,
//! 5 layers) trained by the engine's attack pipeline, `gcleaner attack`'s defaults (the cost of
//! an epoch does not depend on the weights, but a backdoor makes `purify()` reach its unlearning
//! phase, and a model trained for 40 epochs tripped the collapse guard in the second epoch). The clean
//! sample is the attack's 3% defender sample (33 AIDS graphs), 25% of it held out as `purify()`
//! does. The unlearning epoch is timed on a fixed 4-node trigger (K4 minus one edge) with the
//! default `UnlearnConfig`, one clock reading per "unlearning" progress event; the first epoch
//! is dropped (its interval also holds the teacher's fine-tuning).
//!
//! Prints one JSON line. With `--sample-out DIR` it also writes, for bench/pyg_unlearn_epoch.py,
//! the unlearning set (graphs, labels, explainer positions, trigger, configuration) to
//! DIR/sample.json and the backdoored model to DIR/model.safetensors, so the PyG loop unlearns
//! the same graphs from the same weights, and the defender sample to DIR/defender.json.
//! `--from DIR` reads the model and the defender sample back instead of running the attack
//! (bench/unlearn_epoch.sh alternates rounds of this benchmark and the PyG loop on one model),
//! and `--skip-purify` leaves out the whole-purification timing.
//!
//! Usage: cargo bench -p gcleaner-engine --bench unlearn_epoch -- [DATASET_DIR]
//!        [--sample-out DIR | --from DIR] [--skip-purify] [--train-epochs 150]

use std::path::PathBuf;
use std::time::Instant;

use serde_json::json;
use tch::Device;

use gcleaner_engine::attacks::{run_attack, AttackConfig, AttackKind};
use gcleaner_engine::data::json::write_json_dataset;
use gcleaner_engine::data::{load_dataset, FeatureSpec, Graph};
use gcleaner_engine::explain::saliency;
use gcleaner_engine::models::{Arch, GnnModel};
use gcleaner_engine::progress::{NoProgress, Progress, ProgressEvent};
use gcleaner_engine::purify::recovery::{least_important_nodes, Pattern};
use gcleaner_engine::purify::unlearn::{unlearn, UnlearnConfig, UnlearnSet};
use gcleaner_engine::purify::{purify, PurifyConfig};

/// The clock reading at every unlearning epoch's end.
struct UnlearnClock {
    ends: Vec<Instant>,
}

impl Progress for UnlearnClock {
    fn step(&mut self, event: ProgressEvent<'_>) -> bool {
        if event.phase == "unlearning" {
            self.ends.push(Instant::now());
        }
        true
    }
}

impl UnlearnClock {
    /// Seconds of every epoch after the first.
    fn epochs(&self) -> Vec<f64> {
        self.ends.windows(2).map(|w| (w[1] - w[0]).as_secs_f64()).collect()
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

/// What the PyG loop needs of one graph: its structure, label and explainer positions.
fn graph_json(graph: &Graph, positions: Vec<usize>) -> serde_json::Value {
    json!({ "num_nodes": graph.num_nodes, "edges": graph.edges, "label": graph.label, "positions": positions })
}

/// The command line (see the module documentation).
struct Args {
    path: PathBuf,
    sample_out: Option<PathBuf>,
    from: Option<PathBuf>,
    skip_purify: bool,
    attack: AttackConfig,
}

fn parse_args() -> Args {
    let mut parsed = Args {
        path: PathBuf::from("../shared/datasets/AIDS"),
        sample_out: None,
        from: None,
        skip_purify: false,
        attack: AttackConfig::new(AttackKind::Subgraph, Arch::Gin),
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--sample-out" => parsed.sample_out = args.next().map(PathBuf::from),
            "--from" => parsed.from = args.next().map(PathBuf::from),
            "--skip-purify" => parsed.skip_purify = true,
            "--train-epochs" => parsed.attack.train.epochs = args.next().and_then(|e| e.parse().ok()).expect("--train-epochs N"),
            other if other.starts_with("--") => {} // `--bench`, passed by cargo
            other => parsed.path = PathBuf::from(other),
        }
    }
    parsed
}

/// A backdoored GIN of the default spec and the attack's 3% defender sample: read back from
/// `--from`, or made by the attack pipeline.
struct Subject {
    model: GnnModel,
    sample: gcleaner_engine::data::Dataset,
    target: usize,
    dataset_graphs: Option<u64>,
    backdoored_asr: Option<f64>,
}

fn subject(args: &Args) -> Subject {
    match &args.from {
        Some(dir) => {
            let model = GnnModel::load(&dir.join("model.safetensors"), None, Device::Cpu).unwrap_or_else(|e| panic!("{e}")).model;
            let sample = load_dataset(&dir.join("defender.json")).unwrap_or_else(|e| panic!("{e}"));
            let doc: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(dir.join("sample.json")).expect("sample.json"))
                    .expect("sample.json");
            let target = doc["target"].as_u64().expect("target") as usize;
            Subject {
                model,
                sample,
                target,
                dataset_graphs: doc["dataset_graphs"].as_u64(),
                backdoored_asr: doc["backdoored_asr"].as_f64(),
            }
        }
        None => {
            let ds = load_dataset(&args.path).unwrap_or_else(|e| panic!("{e}"));
            let attacked = run_attack(&ds, &args.attack, &mut NoProgress).unwrap_or_else(|e| panic!("attack: {e}"));
            Subject {
                target: attacked.metrics.target_class,
                backdoored_asr: Some(attacked.metrics.backdoored_model.asr),
                dataset_graphs: Some(ds.len() as u64),
                model: attacked.model,
                sample: attacked.defender,
            }
        }
    }
}

/// Writes what bench/pyg_unlearn_epoch.py needs to unlearn the same graphs from the same weights.
fn write_sample(
    out: &std::path::Path,
    subject: &Subject,
    sets: [&UnlearnSet; 2],
    trigger: &Pattern,
    max_degree: usize,
    config: &UnlearnConfig,
    seed: u64,
) {
    let spec = subject.model.spec();
    let graphs = |s: &UnlearnSet| -> Vec<serde_json::Value> {
        (0..s.graphs.len()).map(|g| graph_json(s.graphs[g], s.explainer_positions(g, trigger.size))).collect()
    };
    let doc = json!({
        "dataset_graphs": subject.dataset_graphs,
        "backdoored_asr": subject.backdoored_asr,
        "max_degree": max_degree,
        "num_classes": spec.num_classes,
        "hidden": spec.hidden,
        "num_layers": spec.num_layers,
        "target": subject.target,
        "trigger": { "size": trigger.size, "edges": trigger.edges },
        "config": config,
        "seed": seed,
        "train": graphs(sets[0]),
        "holdout": graphs(sets[1]),
    });
    std::fs::create_dir_all(out).unwrap_or_else(|e| panic!("{}: {e}", out.display()));
    std::fs::write(out.join("sample.json"), doc.to_string()).unwrap_or_else(|e| panic!("{}: {e}", out.display()));
    subject.model.save(&out.join("model.safetensors")).unwrap_or_else(|e| panic!("{}: {e}", out.display()));
    write_json_dataset(&subject.sample, &out.join("defender.json")).unwrap_or_else(|e| panic!("{}: {e}", out.display()));
}

/// One whole purification at the default configuration: its timings and verdict.
fn time_purify(subject: &Subject, config: &PurifyConfig) -> serde_json::Value {
    let mut purify_clock = UnlearnClock { ends: Vec::new() };
    let t = Instant::now();
    let purified = purify(&subject.model, &subject.sample, config, &mut purify_clock).unwrap_or_else(|e| panic!("purify: {e}"));
    let purify_s = t.elapsed().as_secs_f64();
    let report = &purified.report;
    json!({
        "purify_s": purify_s,
        "purify_timings": report.timings,
        "purify_backdoor_verdict": report.verdict.backdoor_evidence,
        "purify_evidence": report.verdict.evidence_score,
        "purify_unlearned_triggers": report.unlearned_candidates.iter().map(|&i| report.candidates[i].recovered.trigger.size).collect::<Vec<_>>(),
        "purify_unlearn_epoch_s": median(purify_clock.epochs()),
    })
}

fn main() {
    // As the gcleaner binary does at start-up.
    gcleaner_engine::allocator::tune_for_tensors();
    let args = parse_args();
    if args.from.is_none() && !args.path.exists() {
        eprintln!("skipping: dataset {} not found", args.path.display());
        return;
    }
    let t = Instant::now();
    let subject = subject(&args);
    let attack_s = t.elapsed().as_secs_f64();
    let (model, sample, target) = (&subject.model, &subject.sample, subject.target);
    let spec = model.spec().clone();
    let max_degree = match &spec.features {
        FeatureSpec::OneHotDegree { max_degree } => *max_degree,
        other => panic!("benchmark expects one-hot degree features, got {other:?}"),
    };

    // The unlearning set as purify() builds it: the sample less the holdout, nodes ranked by the
    // default explainer (gradient saliency).
    let purify_config = PurifyConfig::default();
    let (train_idx, holdout_idx) =
        gcleaner_engine::purify::split_sample(sample, purify_config.holdout_fraction, purify_config.seed);
    let set = |indices: &[usize]| -> UnlearnSet<'_> {
        let graphs: Vec<&Graph> = indices.iter().map(|&i| &sample.graphs[i]).collect();
        let importance = saliency::node_importance(model, &graphs, &spec.features).expect("saliency");
        UnlearnSet {
            labels: graphs.iter().map(|g| g.label).collect(),
            node_order: least_important_nodes(&importance, usize::MAX),
            graphs,
        }
    };
    let train_set = set(&train_idx);
    let holdout_set = set(&holdout_idx);
    // K4 minus the edge (2, 3).
    let trigger = Pattern { size: 4, edges: vec![(0, 1), (0, 2), (0, 3), (1, 2), (1, 3)], slot_features: None };
    let config = UnlearnConfig::default();
    if let Some(out) = &args.sample_out {
        write_sample(out, &subject, [&train_set, &holdout_set], &trigger, max_degree, &config, purify_config.seed);
    }

    let mut unlearned = model.try_clone().expect("clone");
    let mut clock = UnlearnClock { ends: Vec::with_capacity(config.epochs) };
    // On the threads purify() runs unlearning with.
    let threads = gcleaner_engine::threads::IntraOpThreads::set(gcleaner_engine::threads::SMALL_GRAPH_THREADS);
    let t = Instant::now();
    let outcome = unlearn(
        &mut unlearned,
        &train_set,
        &holdout_set,
        std::slice::from_ref(&trigger),
        target,
        &config,
        purify_config.seed,
        &mut clock,
    )
    .unwrap_or_else(|e| panic!("unlearn: {e}"));
    let unlearn_s = t.elapsed().as_secs_f64();
    drop(threads);
    assert!(
        outcome.rolled_back_to_epoch.is_none(),
        "the collapse guard stopped unlearning after {} epochs (train the model longer): the PyG loop runs all {}",
        outcome.history.len(),
        config.epochs
    );
    let epochs = clock.epochs();

    let mut result = json!({
        "dataset_graphs": subject.dataset_graphs,
        "train_epochs": args.attack.train.epochs,
        "attack_s": attack_s,
        "backdoored_asr": subject.backdoored_asr,
        "sample_graphs": sample.len(),
        "unlearning_graphs": train_set.graphs.len(),
        "holdout_graphs": holdout_set.graphs.len(),
        "copies_per_epoch": train_set.graphs.len() * (config.positions + 1),
        "batch_size": config.batch_size,
        "max_degree": max_degree,
        "threads": gcleaner_engine::threads::SMALL_GRAPH_THREADS,
        "epochs_timed": epochs.len(),
        "unlearn_epoch_s": median(epochs.clone()),
        "unlearn_epoch_min_s": epochs.iter().copied().fold(f64::INFINITY, f64::min),
        "unlearn_epoch_max_s": epochs.iter().copied().fold(0.0, f64::max),
        "unlearn_call_s": unlearn_s,
        "loss_first": outcome.history.first().map(|h| h.loss),
        "loss_last": outcome.history.last().map(|h| h.loss),
        "holdout_flip_last": outcome.history.last().map(|h| h.holdout_flip_rate),
        "epochs_s": epochs,
    });
    if !args.skip_purify {
        let fields = time_purify(&subject, &purify_config);
        result.as_object_mut().expect("object").extend(fields.as_object().expect("object").clone());
    }
    println!("{result}");
}
