//! Poisoning the training split and building the triggered evaluation set: counts, labels,
//! determinism under a seed, and clear errors for unusable parameters.

use gcleaner_engine::attacks::{
    poison_training_set, resolve_target_class, select_poisoned, triggered_eval_set, AttackParams, Motif, Placement, Trigger,
    MIN_TRIGGER_NODES,
};
use gcleaner_engine::data::{Dataset, Graph};
use gcleaner_engine::rng::rng_for;
use rand::Rng as _;

/// 200 graphs of 5..=15 nodes, classes alternating 0, 1, 0, 2 (half class 0).
fn dataset() -> Dataset {
    let mut rng = rng_for(7, "poison-test");
    let graphs = (0..200)
        .map(|i| {
            let n = rng.gen_range(5..=15);
            let mut edges = Vec::new();
            for u in 0..n as u32 {
                for v in u + 1..n as u32 {
                    if rng.gen_bool(0.25) {
                        edges.push((u, v));
                    }
                }
            }
            Graph { num_nodes: n, edges, node_labels: Some(vec![1; n]), node_attributes: None, label: [0, 1, 0, 2][i % 4] }
        })
        .collect();
    Dataset { name: "toy".into(), graphs, class_labels: vec![-1, 1, 5] }
}

fn params() -> AttackParams {
    AttackParams { target_class: 1, injection_ratio: 0.1, trigger_ratio: 0.2, seed: 10 }
}

fn train_indices() -> Vec<usize> {
    (0..160).collect()
}

#[test]
fn poisoning_relabels_a_share_of_non_target_training_graphs() {
    let ds = dataset();
    let p = params();
    let n = p.trigger_size(&ds).unwrap();
    assert_eq!(n, ((ds.avg_nodes() * 0.2).round() as usize).max(MIN_TRIGGER_NODES));
    let trigger = Trigger::erdos_renyi(n, 0.8, p.seed).unwrap();
    let result = poison_training_set(&ds, &train_indices(), &trigger, Placement::Random, &p).unwrap();

    let poisoned = result.poisoned_indices();
    assert_eq!(poisoned.len(), 16, "round(0.1 * 160)");
    assert!(poisoned.windows(2).all(|w| w[0] < w[1]));
    for (i, (before, after)) in ds.graphs.iter().zip(&result.dataset.graphs).enumerate() {
        if poisoned.contains(&i) {
            assert!(i < 160, "graph {i} is not a training graph");
            assert_ne!(before.label, 1, "graph {i} already had the target class");
            assert_eq!(after.label, 1);
            assert_eq!(after.num_nodes, before.num_nodes.max(n));
        } else {
            assert_eq!(before, after, "graph {i} was not poisoned but changed");
        }
    }
    for injected in &result.poisoned {
        assert_eq!(injected.graph, result.dataset.graphs[injected.index]);
        assert_eq!(injected.positions.len(), n);
        for &(a, b) in &trigger.edges {
            let (u, v) = (injected.positions[a as usize], injected.positions[b as usize]);
            assert!(injected.graph.edges.contains(&(u.min(v) as u32, u.max(v) as u32)));
        }
    }
}

#[test]
fn poisoning_is_deterministic_under_a_seed() {
    let ds = dataset();
    let trigger = Trigger::erdos_renyi(3, 0.8, 1).unwrap();
    let run = |seed| {
        let p = AttackParams { seed, ..params() };
        poison_training_set(&ds, &train_indices(), &trigger, Placement::Random, &p).unwrap()
    };
    let (a, b, c) = (run(10), run(10), run(11));
    assert_eq!(a.dataset, b.dataset);
    assert_eq!(a.poisoned, b.poisoned);
    assert_ne!(a.poisoned_indices(), c.poisoned_indices());
}

#[test]
fn triggered_eval_set_keeps_true_labels_and_skips_the_target_class() {
    let ds = dataset();
    let held_out: Vec<usize> = (160..200).collect();
    let trigger = Motif::M32.trigger();
    for placement in [Placement::Random, Placement::DegreeCentrality] {
        let set = triggered_eval_set(&ds, &held_out, 1, &trigger, placement, 3).unwrap();
        assert_eq!(set.len(), 30, "the 40 held-out graphs minus the 10 of class 1");
        for injected in &set {
            let original = &ds.graphs[injected.index];
            assert_ne!(original.label, 1);
            assert_eq!(injected.graph.label, original.label);
            assert!(held_out.contains(&injected.index));
        }
        let again = triggered_eval_set(&ds, &held_out, 1, &trigger, placement, 3).unwrap();
        assert_eq!(set, again);
    }
}

#[test]
fn importance_placement_uses_the_given_scores() {
    let ds = dataset();
    // Score = node index: the trigger lands on the last n nodes of every graph.
    let scores: Vec<Vec<f32>> = ds.graphs.iter().map(|g| (0..g.num_nodes).map(|i| i as f32).collect()).collect();
    let trigger = Motif::M42.trigger();
    let set = triggered_eval_set(&ds, &[0, 2, 3], 1, &trigger, Placement::Importance(&scores), 0).unwrap();
    for injected in set {
        let n = ds.graphs[injected.index].num_nodes;
        assert_eq!(injected.positions, vec![n - 1, n - 2, n - 3, n - 4]);
    }
}

#[test]
fn bad_parameters_give_clear_errors() {
    let ds = dataset();
    let train = train_indices();
    let trigger = Motif::M32.trigger();
    let poison = |p: &AttackParams, t: &Trigger, train: &[usize]| {
        poison_training_set(&ds, train, t, Placement::Random, p).unwrap_err().to_string()
    };

    for ratio in [0.0, -0.5, 1.01, f64::NAN] {
        let err = poison(&AttackParams { injection_ratio: ratio, ..params() }, &trigger, &train);
        assert!(err.contains("injection ratio must be in (0, 1]"), "{ratio}: {err}");
        let p = AttackParams { trigger_ratio: ratio, ..params() };
        let err = p.trigger_size(&ds).unwrap_err().to_string();
        assert!(err.contains("trigger ratio must be in (0, 1]"), "{ratio}: {err}");
    }

    let err = poison(&AttackParams { target_class: 3, ..params() }, &trigger, &train);
    assert!(err.contains("target class 3") && err.contains("3 classes"), "{err}");
    let err = resolve_target_class(&ds, 2).unwrap_err().to_string();
    assert!(err.contains("target label 2") && err.contains("[-1, 1, 5]"), "{err}");
    assert_eq!(resolve_target_class(&ds, 5).unwrap(), 2);
    assert_eq!(resolve_target_class(&ds, -1).unwrap(), 0);

    // The largest toy graph has 15 nodes: a 15-node trigger fits, a 16-node one does not.
    let max_nodes = ds.graphs.iter().map(|g| g.num_nodes).max().unwrap();
    assert_eq!(max_nodes, 15);
    let fits = Trigger::erdos_renyi(15, 0.8, 0).unwrap();
    assert!(poison_training_set(&ds, &train, &fits, Placement::Random, &params()).is_ok());
    let too_big = Trigger::erdos_renyi(16, 0.8, 0).unwrap();
    let err = poison(&params(), &too_big, &train);
    assert!(err.contains("16-node trigger is larger than the largest graph"), "{err}");
    let err = triggered_eval_set(&ds, &[0], 1, &too_big, Placement::Random, 0).unwrap_err();
    assert!(err.to_string().contains("larger than the largest graph"), "{err}");
    // trigger_ratio 1.0 asks for an average-sized trigger, which fits; the check is on n.
    assert!(AttackParams { trigger_ratio: 1.0, ..params() }.trigger_size(&ds).is_ok());

    // Only target-class training graphs: nothing to poison.
    let only_target: Vec<usize> = (0..160).filter(|i| i % 4 == 1).collect();
    let err = poison(&params(), &trigger, &only_target);
    assert!(err.contains("nothing to poison"), "{err}");
    let err = poison(&params(), &trigger, &[]);
    assert!(err.contains("nothing to poison"), "{err}");

    // Asking for more poisoned graphs than there are candidates.
    let err = poison(&AttackParams { injection_ratio: 0.9, ..params() }, &trigger, &train);
    assert!(err.contains("asks for 144 poisoned graphs") && err.contains("only 120"), "{err}");

    let err = poison(&params(), &trigger, &[0, 999]);
    assert!(err.contains("training index 999"), "{err}");
}

#[test]
fn selection_is_within_candidates_and_sized_by_the_training_split() {
    let ds = dataset();
    let train = train_indices();
    let chosen = select_poisoned(&ds, &train, 0, 0.05, 4).unwrap();
    assert_eq!(chosen.len(), 8, "round(0.05 * 160)");
    assert!(chosen.iter().all(|&i| ds.graphs[i].label != 0 && i < 160));
    let at_least_one = select_poisoned(&ds, &train[..4], 0, 0.01, 4).unwrap();
    assert_eq!(at_least_one.len(), 1, "a tiny ratio still poisons one graph");
}
