//! The whole attack run on generated graphs (a few epochs of a small model, so each run takes
//! well under a second): the train / defender / evaluation split, the files written, what the
//! triggered evaluation graphs hold for each attack, determinism under a seed, measuring any
//! model against an attack directory, and clear errors for unusable parameters.

use std::collections::BTreeSet;
use std::sync::{Mutex, MutexGuard};

use gcleaner_engine::attacks::{
    count_motifs, evaluate_on_attack, run_attack, run_attack_with_clean_model, split_for_attack, write_attack_dir, AttackConfig,
    AttackDescription, AttackKind, AttackOutcome, Motif, TriggerDescription,
};
use gcleaner_engine::data::json::load_json_dataset;
use gcleaner_engine::data::{synthetic, Dataset, FeatureSpec, Graph};
use gcleaner_engine::models::{Arch, GnnModel};
use gcleaner_engine::progress::NoProgress;

/// Tests that train take turns. The engine already keeps seeded runs apart
/// (`rng::seed_torch`); this only stops parallel trainings from fighting over the two cores'
/// OpenMP threads.
static TORCH_RNG: Mutex<()> = Mutex::new(());

fn lock() -> MutexGuard<'static, ()> {
    TORCH_RNG.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn dataset() -> Dataset {
    synthetic::generate(200, 3)
}

fn config(attack: AttackKind) -> AttackConfig {
    let mut c = AttackConfig::new(attack, Arch::Gin);
    c.hidden = 16;
    c.num_layers = Some(2);
    c.train.epochs = 4;
    c.injection_ratio = 0.1;
    c.defender_fraction = 0.05;
    c.explainer.epochs = 10;
    c.gta.bilevel_epochs = 2;
    c.gta.generator_steps = 3;
    c
}

fn run(attack: AttackKind) -> AttackOutcome {
    run_attack(&dataset(), &config(attack), &mut NoProgress).unwrap()
}

fn canonical(g: &Graph) -> bool {
    g.edges.windows(2).all(|w| w[0] < w[1])
        && g.edges.iter().all(|&(u, v)| u < v && (v as usize) < g.num_nodes)
        && g.validate().is_ok()
}

/// Nodes touched by edges present in one graph but not the other.
fn changed_nodes(a: &Graph, b: &Graph) -> BTreeSet<usize> {
    let ea: BTreeSet<_> = a.edges.iter().copied().collect();
    let eb: BTreeSet<_> = b.edges.iter().copied().collect();
    ea.symmetric_difference(&eb).flat_map(|&(u, v)| [u as usize, v as usize]).collect()
}

#[test]
fn split_is_a_disjoint_partition_with_a_stratified_defender_sample() {
    let ds = dataset();
    let split = split_for_attack(&ds, 0.8, 0.03, 10).unwrap();
    assert_eq!(split.train.len(), 160);
    assert_eq!(split.defender.len(), 6, "round(0.03 * 200)");
    assert_eq!(split.eval.len(), 34);
    let mut all: Vec<usize> = split.train.iter().chain(&split.defender).chain(&split.eval).copied().collect();
    all.sort_unstable();
    assert_eq!(all, (0..200).collect::<Vec<_>>(), "train, defender and eval partition the dataset");
    for class in 0..2 {
        assert!(split.defender.iter().any(|&i| ds.graphs[i].label == class), "class {class} missing");
    }
    assert_eq!(split, split_for_attack(&ds, 0.8, 0.03, 10).unwrap());
    assert_ne!(split.defender, split_for_attack(&ds, 0.8, 0.03, 11).unwrap().defender);

    let err = split_for_attack(&ds, 0.8, 0.2, 10).unwrap_err().to_string();
    assert!(err.contains("defender fraction 0.2") && err.contains("held-out split has only 40"), "{err}");
    assert!(split_for_attack(&ds, 0.8, 0.0, 10).is_err());
}

#[test]
fn sub_ba_writes_every_file_and_measures_both_models() {
    let _torch = lock();
    let ds = dataset();
    let outcome = run(AttackKind::Subgraph);
    let m = &outcome.metrics;
    assert_eq!(m.sizes.n_graphs, 200);
    assert_eq!(m.sizes.n_train, 160);
    assert_eq!(m.sizes.n_poisoned, 16, "round(0.1 * 160)");
    assert_eq!(m.sizes.n_defender, 10, "round(0.05 * 200)");
    assert_eq!(m.sizes.n_defender + m.sizes.n_eval_clean, m.sizes.n_heldout);
    assert_eq!(m.target_class, 1);
    assert!(!m.clean_model_reused);
    for model in [&m.clean_model, &m.backdoored_model] {
        assert!((0.0..=1.0).contains(&model.asr));
        assert!((0.0..=1.0).contains(&model.clean_accuracy));
        assert_eq!(model.per_class_recall.len(), 2);
        assert_eq!(model.n_clean, m.sizes.n_eval_clean);
        assert_eq!(model.n_triggered, m.sizes.n_eval_triggered);
        assert_eq!(model.target_label, 1);
    }

    // The triggered set is the non-target clean evaluation graphs, true labels kept, with the
    // trigger among n random nodes of each.
    let d = &outcome.description;
    let TriggerDescription::Fixed(trigger) = &d.trigger else { panic!("Sub-BA has one trigger") };
    let non_target: Vec<&Graph> = outcome.eval_clean.graphs.iter().filter(|g| g.label != 1).collect();
    assert_eq!(outcome.eval_triggered.len(), non_target.len());
    for (clean, triggered) in non_target.iter().zip(&outcome.eval_triggered.graphs) {
        assert_eq!(triggered.label, clean.label);
        assert_eq!(triggered.num_nodes, clean.num_nodes.max(trigger.num_nodes));
        assert!(canonical(triggered));
        assert!(changed_nodes(clean, triggered).len() <= trigger.num_nodes);
    }
    assert_eq!(d.eval_indices.len(), outcome.eval_clean.len());
    assert_eq!(d.defender_indices.len(), outcome.defender.len());
    assert!(d.poisoned_indices.iter().all(|i| !d.eval_indices.contains(i) && !d.defender_indices.contains(i)));
    assert!(d.poisoned_indices.iter().all(|&i| ds.graphs[i].label != 1));
    assert_eq!(d.dataset.as_deref(), Some("synthetic"));

    let dir = tempfile::tempdir().unwrap();
    write_attack_dir(&outcome, dir.path()).unwrap();
    for file in [
        "model.safetensors",
        "clean_model.safetensors",
        "attack.json",
        "defender_clean.json",
        "eval_clean.json",
        "eval_triggered.json",
        "metrics.json",
    ] {
        assert!(dir.path().join(file).is_file(), "{file} missing");
    }
    assert_eq!(AttackDescription::read(&dir.path().join("attack.json")).unwrap(), outcome.description);
    let defender = load_json_dataset(&dir.path().join("defender_clean.json")).unwrap();
    assert_eq!(defender.graphs, outcome.defender.graphs);
    let triggered = load_json_dataset(&dir.path().join("eval_triggered.json")).unwrap();
    assert_eq!(triggered.graphs, outcome.eval_triggered.graphs);
    assert_eq!(triggered.class_labels, ds.class_labels);
    let metrics: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("metrics.json")).unwrap()).unwrap();
    assert!(metrics["clean_model"]["asr"].is_number());
    assert!(metrics["timings"]["total_s"].as_f64().unwrap() > 0.0);

    // Measuring a saved model against the directory gives the numbers the run reported.
    let device = tch::Device::Cpu;
    let backdoored = GnnModel::load(&dir.path().join("model.safetensors"), None, device).unwrap().model;
    let measured = evaluate_on_attack(&backdoored, dir.path()).unwrap();
    assert_eq!(measured, m.backdoored_model);
    let clean = GnnModel::load(&dir.path().join("clean_model.safetensors"), None, device).unwrap().model;
    assert_eq!(evaluate_on_attack(&clean, dir.path()).unwrap(), m.clean_model);

    let err = evaluate_on_attack(&clean, &dir.path().join("missing")).unwrap_err().to_string();
    assert!(err.contains("missing"), "{err}");

    // The same directory packed as the service receives it: a tar.gz with one top-level folder,
    // and a zip with the files at its root.
    let packed = tempfile::tempdir().unwrap();
    let tgz = packed.path().join("eval.tgz");
    {
        let gz = flate2::write::GzEncoder::new(std::fs::File::create(&tgz).unwrap(), flate2::Compression::fast());
        let mut tar = tar::Builder::new(gz);
        tar.append_dir_all("attack-run", dir.path()).unwrap();
        tar.into_inner().unwrap().finish().unwrap();
    }
    assert_eq!(evaluate_on_attack(&backdoored, &tgz).unwrap(), m.backdoored_model);
    let zip_of = |name: &str, files: &[&str]| {
        let path = packed.path().join(name);
        let mut zip = zip::ZipWriter::new(std::fs::File::create(&path).unwrap());
        for file in files {
            zip.start_file(*file, zip::write::SimpleFileOptions::default()).unwrap();
            std::io::Write::write_all(&mut zip, &std::fs::read(dir.path().join(file)).unwrap()).unwrap();
        }
        zip.finish().unwrap();
        path
    };
    let zip_path = zip_of("eval.zip", &["attack.json", "eval_clean.json", "eval_triggered.json"]);
    assert_eq!(evaluate_on_attack(&clean, &zip_path).unwrap(), m.clean_model);
    let source = gcleaner_engine::attacks::AttackSource::open(&zip_path).unwrap();
    assert!(source.clean_model_path().is_none(), "the zip ships no reference model");
    // An archive without attack.json is named as such.
    let bare = zip_of("bare.zip", &["eval_clean.json"]);
    let err = evaluate_on_attack(&clean, &bare).unwrap_err().to_string();
    assert!(err.contains("attack.json"), "{err}");
}

#[test]
fn a_model_with_another_class_order_is_measured_in_its_own_order() {
    let _torch = lock();
    let ds = dataset();
    let outcome = run(AttackKind::Subgraph);
    let dir = tempfile::tempdir().unwrap();
    write_attack_dir(&outcome, dir.path()).unwrap();
    // Same weights, classes declared in the opposite order: the target is now class 0 and
    // every prediction means the other label, so ASR and accuracy change with it.
    let mut spec = outcome.model.spec().clone();
    spec.class_labels = Some(vec![ds.class_labels[1], ds.class_labels[0]]);
    let path = dir.path().join("model.safetensors");
    let flipped = GnnModel::load(&path, Some(spec), tch::Device::Cpu).unwrap().model;
    let m = evaluate_on_attack(&flipped, dir.path()).unwrap();
    assert_eq!(m.target_label, 0);
    let original = &outcome.metrics.backdoored_model;
    assert!((m.clean_accuracy - (1.0 - original.clean_accuracy)).abs() < 1e-9);
    assert_eq!(m.n_triggered, original.n_triggered);

    let mut spec = outcome.model.spec().clone();
    spec.class_labels = Some(vec![7, 8]);
    let foreign = GnnModel::load(&path, Some(spec), tch::Device::Cpu).unwrap().model;
    let err = evaluate_on_attack(&foreign, dir.path()).unwrap_err().to_string();
    assert!(err.contains("eval_clean.json"), "{err}");
}

#[test]
fn runs_are_deterministic_under_a_seed() {
    let _torch = lock();
    let ds = dataset();
    let a = run_attack(&ds, &config(AttackKind::Subgraph), &mut NoProgress).unwrap();
    let b = run_attack(&ds, &config(AttackKind::Subgraph), &mut NoProgress).unwrap();
    assert_eq!(a.description, b.description);
    assert_eq!(a.eval_triggered, b.eval_triggered);
    assert_eq!(a.defender, b.defender);
    assert_eq!(a.metrics.backdoored_model, b.metrics.backdoored_model);
    assert_eq!(a.metrics.clean_model, b.metrics.clean_model);

    let mut other = config(AttackKind::Subgraph);
    other.seed = 11;
    let c = run_attack(&ds, &other, &mut NoProgress).unwrap();
    assert_ne!(a.description.poisoned_indices, c.description.poisoned_indices);
    assert_ne!(a.description.eval_indices, c.description.eval_indices);
}

#[test]
fn a_reused_clean_model_gives_the_same_attack() {
    let _torch = lock();
    let ds = dataset();
    let first = run(AttackKind::Subgraph);
    let reused = first.clean_model.try_clone().unwrap();
    let second = run_attack_with_clean_model(&ds, &config(AttackKind::Subgraph), Some(reused), &mut NoProgress).unwrap();
    assert!(second.metrics.clean_model_reused);
    assert_eq!(second.metrics.clean_model, first.metrics.clean_model);
    assert_eq!(second.metrics.backdoored_model, first.metrics.backdoored_model);

    let mut wider = config(AttackKind::Subgraph);
    wider.hidden = 32;
    let mismatched = first.clean_model.try_clone().unwrap();
    let err = run_attack_with_clean_model(&ds, &wider, Some(mismatched), &mut NoProgress).err().unwrap().to_string();
    assert!(err.contains("does not match"), "{err}");
}

#[test]
fn motif_ba_plants_the_rarest_training_motif_at_the_highest_degree_nodes() {
    let _torch = lock();
    let ds = dataset();
    let outcome = run(AttackKind::Motif);
    let split = split_for_attack(&ds, 0.8, 0.05, 10).unwrap();
    let rarest = count_motifs(split.train.iter().map(|&i| &ds.graphs[i])).least_frequent();
    assert_eq!(outcome.description.motif, Some(rarest));
    let TriggerDescription::Fixed(trigger) = &outcome.description.trigger else { panic!() };
    assert_eq!(*trigger, rarest.trigger());
    for (clean, triggered) in outcome.eval_clean.graphs.iter().filter(|g| g.label != 1).zip(&outcome.eval_triggered.graphs) {
        let degrees = clean.degrees();
        let mut by_degree: Vec<usize> = (0..clean.num_nodes).collect();
        by_degree.sort_by(|&a, &b| degrees[b].cmp(&degrees[a]).then(a.cmp(&b)));
        let top: BTreeSet<usize> = by_degree[..trigger.num_nodes].iter().copied().collect();
        assert!(changed_nodes(clean, triggered).is_subset(&top));
    }

    let mut forced = config(AttackKind::Motif);
    forced.motif = Some(Motif::M42);
    let star = run_attack(&ds, &forced, &mut NoProgress).unwrap();
    assert_eq!(star.description.motif, Some(Motif::M42));
    assert_eq!(star.metrics.trigger_nodes, 4);
}

#[test]
fn exp_ba_places_the_trigger_where_gnnexplainer_points() {
    let _torch = lock();
    let outcome = run(AttackKind::Exp);
    let d = &outcome.description;
    assert_eq!(d.placement, gcleaner_engine::attacks::PlacementKind::Importance);
    let TriggerDescription::Fixed(trigger) = &d.trigger else { panic!() };
    let n = trigger.num_nodes;
    // Same Erdos-Renyi trigger as Sub-BA, different places.
    let sub = run(AttackKind::Subgraph);
    assert_eq!(sub.description.trigger, d.trigger);
    assert_ne!(sub.eval_triggered.graphs, outcome.eval_triggered.graphs);
    for (clean, triggered) in outcome.eval_clean.graphs.iter().filter(|g| g.label != 1).zip(&outcome.eval_triggered.graphs) {
        assert!(canonical(triggered));
        assert!(changed_nodes(clean, triggered).len() <= n);
    }
}

#[test]
fn bad_parameters_fail_before_training_with_clear_errors() {
    let _torch = lock();
    let ds = dataset();
    let expect_error = |c: AttackConfig, needle: &str| {
        let err = run_attack(&ds, &c, &mut NoProgress).err().expect("must fail").to_string();
        assert!(err.contains(needle), "expected {needle:?} in {err:?}");
    };
    for bad in [0.0, -0.1, 1.5, f64::NAN] {
        let mut c = config(AttackKind::Subgraph);
        c.injection_ratio = bad;
        expect_error(c, "injection ratio must be in (0, 1]");
        let mut c = config(AttackKind::Subgraph);
        c.trigger_ratio = bad;
        expect_error(c, "trigger ratio must be in (0, 1]");
        let mut c = config(AttackKind::Subgraph);
        c.density = bad;
        expect_error(c, "density must be in (0, 1]");
        let mut c = config(AttackKind::Subgraph);
        c.defender_fraction = bad;
        expect_error(c, "defender fraction must be in (0, 1]");
    }
    let mut c = config(AttackKind::Subgraph);
    c.target_label = 7;
    expect_error(c, "target label 7 is not a class");
    let mut c = config(AttackKind::Subgraph);
    c.injection_ratio = 0.9;
    expect_error(c, "training graphs have a class other than the target");
    let mut c = config(AttackKind::Gta);
    c.gta.bilevel_epochs = 10;
    expect_error(c, "at least one epoch per round");
    let mut c = config(AttackKind::Subgraph);
    c.train.epochs = 0;
    expect_error(c, "epochs must be at least 1");

    // A trigger larger than the largest graph.
    let small = Dataset {
        name: "triples".into(),
        graphs: (0..60)
            .map(|i| Graph { num_nodes: 3, edges: vec![(0, 1), (1, 2)], node_labels: None, node_attributes: None, label: i % 2 })
            .collect(),
        class_labels: vec![0, 1],
    };
    let mut c = config(AttackKind::Motif);
    c.motif = Some(Motif::M46);
    let err = run_attack(&small, &c, &mut NoProgress).err().unwrap().to_string();
    assert!(err.contains("4-node trigger is larger than the largest graph") && err.contains("3 nodes"), "{err}");

    let one_class = Dataset {
        name: "one".into(),
        graphs: small.graphs.iter().map(|g| Graph { label: 0, ..g.clone() }).collect(),
        class_labels: vec![0],
    };
    let err = run_attack(&one_class, &config(AttackKind::Subgraph), &mut NoProgress).err().unwrap().to_string();
    assert!(err.contains("at least 2"), "{err}");
    let _ = FeatureSpec::default();
}
