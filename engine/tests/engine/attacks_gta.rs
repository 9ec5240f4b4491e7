//! GTA on generated graphs: every generated trigger is a valid graph (binary symmetric adjacency
//! without self-loops, nodes never added, edges outside the trigger nodes untouched), features
//! are generated only where they do not derive from structure and stay in the data's range, and
//! a run is deterministic under its seed.

use std::collections::BTreeSet;
use std::sync::{Mutex, MutexGuard};

use gcleaner_engine::attacks::{run_attack, AttackConfig, AttackKind, AttackOutcome, TriggerDescription};
use gcleaner_engine::data::{synthetic, Dataset, FeatureSpec, Graph};
use gcleaner_engine::models::Arch;
use gcleaner_engine::progress::NoProgress;

/// Tests that train take turns: the engine already keeps seeded runs apart
/// (`rng::seed_torch`); this only stops parallel trainings from fighting over OpenMP threads.
static TORCH_RNG: Mutex<()> = Mutex::new(());

fn lock() -> MutexGuard<'static, ()> {
    TORCH_RNG.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn dataset() -> Dataset {
    synthetic::generate(160, 5)
}

fn config(features: Option<FeatureSpec>) -> AttackConfig {
    let mut c = AttackConfig::new(AttackKind::Gta, Arch::Gin);
    c.hidden = 16;
    c.num_layers = Some(2);
    c.train.epochs = 6;
    c.injection_ratio = 0.1;
    c.defender_fraction = 0.05;
    c.features = features;
    c.gta.bilevel_epochs = 3;
    c.gta.generator_steps = 4;
    c.gta.generator_batch = 32;
    c
}

fn run(features: Option<FeatureSpec>) -> AttackOutcome {
    run_attack(&dataset(), &config(features), &mut NoProgress).unwrap()
}

/// Checks one triggered graph against its original and its trigger record.
fn check_valid(original: &Graph, triggered: &Graph, positions: &[usize], edges: &[(u32, u32)]) {
    assert_eq!(triggered.num_nodes, original.num_nodes, "GTA never adds nodes");
    assert_eq!(triggered.label, original.label);
    assert!(triggered.validate().is_ok());
    assert!(triggered.edges.windows(2).all(|w| w[0] < w[1]), "sorted, no duplicates");
    assert!(triggered.edges.iter().all(|&(u, v)| u < v), "canonical, no self-loops");
    let chosen: BTreeSet<u32> = positions.iter().map(|&p| p as u32).collect();
    assert_eq!(chosen.len(), positions.len(), "distinct trigger nodes");
    assert!(positions.iter().all(|&p| p < original.num_nodes));
    let inside = |&(u, v): &(u32, u32)| chosen.contains(&u) && chosen.contains(&v);
    let outside_before: Vec<_> = original.edges.iter().filter(|e| !inside(e)).collect();
    let outside_after: Vec<_> = triggered.edges.iter().filter(|e| !inside(e)).collect();
    assert_eq!(outside_before, outside_after, "edges outside the trigger are untouched");
    let inside_after: Vec<(u32, u32)> = triggered.edges.iter().copied().filter(|e| inside(e)).collect();
    assert_eq!(inside_after, edges, "the trigger record is the adjacency among the trigger nodes");
    // Every trigger is a connected subgraph over its nodes.
    let mut reached: BTreeSet<u32> = chosen.iter().take(1).copied().collect();
    loop {
        let grown: BTreeSet<u32> = edges
            .iter()
            .filter(|&&(u, v)| reached.contains(&u) || reached.contains(&v))
            .flat_map(|&(u, v)| [u, v])
            .chain(reached.iter().copied())
            .collect();
        if grown.len() == reached.len() {
            break;
        }
        reached = grown;
    }
    assert_eq!(reached, chosen, "the trigger {edges:?} connects its nodes {positions:?}");
}

#[test]
fn generated_triggers_are_valid_graphs_with_structural_features() {
    let _torch = lock();
    let ds = dataset();
    let outcome = run(None);
    let d = &outcome.description;
    let TriggerDescription::PerGraph { num_nodes, graphs } = &d.trigger else { panic!("GTA triggers are per graph") };
    let n = ((ds.avg_nodes() * 0.2).round() as usize).max(gcleaner_engine::attacks::MIN_TRIGGER_NODES);
    assert_eq!(*num_nodes, n);
    // One record per poisoned graph and per triggered evaluation graph.
    assert_eq!(graphs.len(), d.poisoned_indices.len() + outcome.eval_triggered.len());
    let triggered_eval: Vec<&Graph> = outcome.eval_triggered.graphs.iter().collect();
    let eval_records = &graphs[d.poisoned_indices.len()..];
    for (record, triggered) in eval_records.iter().zip(triggered_eval) {
        let original = &ds.graphs[record.graph_index];
        assert_ne!(original.label, d.params.target_class);
        assert_eq!(record.positions.len(), n.min(original.num_nodes));
        check_valid(original, triggered, &record.positions, &record.edges);
        // One-hot degree features recompute from structure: nothing else is generated.
        assert!(record.node_attributes.is_none() && record.node_labels.is_none());
        assert_eq!(triggered.node_attributes, original.node_attributes);
        assert_eq!(triggered.node_labels, original.node_labels);
    }
    for record in &graphs[..d.poisoned_indices.len()] {
        assert!(d.poisoned_indices.contains(&record.graph_index));
    }
    assert!(outcome.metrics.timings.trigger_s > 0.0);
}

#[test]
fn generated_attributes_stay_in_the_training_range() {
    let _torch = lock();
    let ds = dataset();
    let features = FeatureSpec::Concat {
        parts: vec![FeatureSpec::OneHotDegree { max_degree: 8 }, FeatureSpec::NodeAttributes { dim: synthetic::ATTR_DIM }],
    };
    let outcome = run(Some(features));
    let TriggerDescription::PerGraph { graphs, .. } = &outcome.description.trigger else { panic!() };
    let all: Vec<f32> = ds.graphs.iter().flat_map(|g| g.node_attributes.clone().unwrap()).collect();
    let (lo, hi) = all.iter().fold((f32::MAX, f32::MIN), |(l, h), &v| (l.min(v), h.max(v)));
    let eval_records = &graphs[outcome.description.poisoned_indices.len()..];
    for (record, triggered) in eval_records.iter().zip(&outcome.eval_triggered.graphs) {
        let original = &ds.graphs[record.graph_index];
        check_valid(original, triggered, &record.positions, &record.edges);
        let generated = record.node_attributes.as_ref().expect("attributes are generated");
        assert_eq!(generated.len(), record.positions.len() * synthetic::ATTR_DIM);
        assert!(generated.iter().all(|&v| v >= lo - 1e-5 && v <= hi + 1e-5), "{generated:?} outside [{lo}, {hi}]");
        let attrs = triggered.node_attributes.as_ref().unwrap();
        let before = original.node_attributes.as_ref().unwrap();
        for v in 0..original.num_nodes {
            let row = &attrs[v * 2..v * 2 + 2];
            match record.positions.iter().position(|&p| p == v) {
                Some(slot) => assert_eq!(row, &generated[slot * 2..slot * 2 + 2]),
                None => assert_eq!(row, &before[v * 2..v * 2 + 2], "only trigger nodes change"),
            }
        }
    }
}

#[test]
fn generated_node_labels_are_labels_of_the_alphabet() {
    let _torch = lock();
    let ds = dataset();
    let labels = FeatureSpec::NodeLabelsOneHot { num_labels: synthetic::NUM_NODE_LABELS };
    let outcome = run(Some(labels));
    let TriggerDescription::PerGraph { graphs, .. } = &outcome.description.trigger else { panic!() };
    for (record, triggered) in graphs[outcome.description.poisoned_indices.len()..].iter().zip(&outcome.eval_triggered.graphs) {
        let original = &ds.graphs[record.graph_index];
        check_valid(original, triggered, &record.positions, &record.edges);
        let generated = record.node_labels.as_ref().expect("labels are generated");
        assert!(generated.iter().all(|&l| (l as usize) < synthetic::NUM_NODE_LABELS));
        let node_labels = triggered.node_labels.as_ref().unwrap();
        for (slot, &p) in record.positions.iter().enumerate() {
            assert_eq!(node_labels[p], generated[slot]);
        }
        assert!(record.node_attributes.is_none());
    }
}

#[test]
fn gta_is_deterministic_under_a_seed() {
    let _torch = lock();
    let a = run(None);
    let b = run(None);
    assert_eq!(a.description, b.description);
    assert_eq!(a.eval_triggered, b.eval_triggered);
    assert_eq!(a.metrics.backdoored_model, b.metrics.backdoored_model);
}

#[test]
fn bad_gta_settings_are_refused_before_training() {
    let ds = dataset();
    for (tweak, needle) in [
        ((|c: &mut AttackConfig| c.gta.threshold = 1.0) as fn(&mut AttackConfig), "threshold must be in (0, 1)"),
        (|c| c.gta.threshold = 0.0, "threshold must be in (0, 1)"),
        (|c| c.gta.generator_batch = 0, "one graph per step"),
        (|c| c.gta.generator_steps = 0, "one generator step"),
        (|c| c.gta.generator_lr = f64::NAN, "learning rate must be positive"),
        (|c| c.gta.bilevel_epochs = 7, "at least one epoch per round"),
    ] {
        let mut c = config(None);
        tweak(&mut c);
        let err = run_attack(&ds, &c, &mut NoProgress).err().expect("must fail").to_string();
        assert!(err.contains(needle), "expected {needle:?} in {err:?}");
    }
}
