//! The inference-time baselines: Prune drops exactly the edges between dissimilar nodes, and
//! randomized smoothing votes over seeded subsamples, deterministically and independently of
//! the list a graph is predicted in.

use crate::baselines_support;

use baselines_support::{plain_predict, predict_with_features_of, spec, trained_model, DEGREE_FEATURES};
use gcleaner_engine::baselines::prune::{edge_similarities, prune_graph};
use gcleaner_engine::baselines::smoothing::{majority_vote, samples, smoothed_predictions, subsample, SmoothedPrediction};
use gcleaner_engine::baselines::{run, BaselineConfig, DefenceKind, DefendedModel, FeatureSource, PruneConfig, SmoothingConfig};
use gcleaner_engine::data::{synthetic, FeatureSpec, Graph};
use gcleaner_engine::progress::NoProgress;
use gcleaner_engine::rng::rng_for;
use gcleaner_engine::Result;

/// Six nodes with 2-d attributes; edge similarities worked out by hand in the test.
fn attributed_graph() -> Graph {
    #[rustfmt::skip]
    let attributes = vec![
        1.0, 0.0,   // 0
        1.0, 0.1,   // 1
        0.0, 1.0,   // 2
        -1.0, 0.0,  // 3
        0.0, 0.0,   // 4: a zero vector is similar to nothing
        0.0, 2.0,   // 5: parallel to node 2, twice as long
    ];
    Graph {
        num_nodes: 6,
        edges: vec![(0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 4), (2, 5)],
        node_labels: Some(vec![0, 1, 2, 3, 0, 1]),
        node_attributes: Some(attributes),
        label: 1,
    }
}

#[test]
fn prune_drops_exactly_the_edges_below_the_threshold() {
    let g = attributed_graph();
    let features = FeatureSpec::NodeAttributes { dim: 2 };
    let sims = edge_similarities(&g, &features).unwrap();
    let c12 = 0.1 / (1.01f64).sqrt(); // (1, 0.1) . (0, 1) / (|(1, 0.1)| |(0, 1)|) = 0.0995
    let expected = [1.0 / (1.01f64).sqrt(), 0.0, -1.0, c12, -1.0 / (1.01f64).sqrt(), 0.0, 1.0];
    for (i, (s, e)) in sims.iter().zip(expected).enumerate() {
        assert!((s - e).abs() < 1e-6, "edge {:?}: similarity {s}, expected {e}", g.edges[i]);
    }

    let pruned = prune_graph(&g, &features, 0.1).unwrap();
    assert_eq!(pruned.edges, vec![(0, 1), (2, 5)], "0.0995 < 0.1: edge (1, 2) goes");
    assert_eq!(pruned.num_nodes, 6);
    assert_eq!(pruned.node_labels, g.node_labels);
    assert_eq!(pruned.node_attributes, g.node_attributes);

    let looser = prune_graph(&g, &features, 0.09).unwrap();
    assert_eq!(looser.edges, vec![(0, 1), (1, 2), (2, 5)]);
    assert_eq!(prune_graph(&g, &features, -1.0).unwrap().edges, g.edges, "-1 keeps every edge");
    assert_eq!(prune_graph(&g, &features, 1.0).unwrap().edges, vec![(2, 5)]);
}

#[test]
fn with_one_hot_degrees_prune_keeps_only_edges_between_equal_degrees() {
    // Path 0-1-2-3 (degrees 1 2 2 1) and triangle 4-5-6 with a tail 6-7 (degrees 2 2 3 1).
    let g = Graph {
        num_nodes: 8,
        edges: vec![(0, 1), (1, 2), (2, 3), (4, 5), (4, 6), (5, 6), (6, 7)],
        node_labels: None,
        node_attributes: None,
        label: 0,
    };
    let features = FeatureSpec::OneHotDegree { max_degree: 4 };
    let sims = edge_similarities(&g, &features).unwrap();
    assert_eq!(sims, vec![0.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0]);
    for threshold in [1e-6, 0.1, 0.5, 1.0] {
        assert_eq!(prune_graph(&g, &features, threshold).unwrap().edges, vec![(1, 2), (4, 5)]);
    }
    assert_eq!(prune_graph(&g, &features, 0.0).unwrap().edges, g.edges);
}

fn defended(kind: DefenceKind, model: &gcleaner_engine::models::GnnModel, config: &BaselineConfig, seed: u64) -> DefendedModel {
    let empty = gcleaner_engine::data::Dataset { name: "none".into(), graphs: vec![], class_labels: vec![0, 1] };
    run(kind, model, &empty, None, config, seed, &mut NoProgress).unwrap()
}

#[test]
fn prune_predicts_like_the_model_on_pruned_graphs_under_either_feature_source() {
    let ds = synthetic::generate(120, 3);
    let model = trained_model(&ds, &(0..100).collect::<Vec<_>>(), spec(DEGREE_FEATURES, 2, 2), 15, 1);
    let graphs: Vec<&Graph> = ds.graphs[100..].iter().collect();
    let pruned: Vec<Graph> = graphs.iter().map(|g| prune_graph(g, &DEGREE_FEATURES, 0.1).unwrap()).collect();
    let pruned_refs: Vec<&Graph> = pruned.iter().collect();
    assert!(pruned.iter().zip(&graphs).any(|(p, g)| p.edges.len() < g.edges.len()));

    let recomputed = BaselineConfig {
        prune: PruneConfig { threshold: 0.1, features: FeatureSource::Recomputed },
        ..BaselineConfig::default()
    };
    let predicted = defended(DefenceKind::Prune, &model, &recomputed, 0).predict(&graphs).unwrap();
    assert_eq!(predicted, plain_predict(&model, &pruned_refs, &DEGREE_FEATURES));

    // Original features: the unpruned graphs' degrees propagated over the pruned edges.
    let original = BaselineConfig::default();
    assert_eq!(original.prune.features, FeatureSource::Original);
    let predicted = defended(DefenceKind::Prune, &model, &original, 0).predict(&graphs).unwrap();
    assert_eq!(predicted, predict_with_features_of(&model, &pruned_refs, &graphs));

    // Keeping every edge is no defence at all.
    let keep_all = BaselineConfig { prune: PruneConfig { threshold: -1.0, ..PruneConfig::default() }, ..original };
    let predicted = defended(DefenceKind::Prune, &model, &keep_all, 0).predict(&graphs).unwrap();
    assert_eq!(predicted, plain_predict(&model, &graphs, &DEGREE_FEATURES));
}

#[test]
fn prune_rejects_bad_thresholds_and_unbuildable_graphs() {
    let ds = synthetic::generate(10, 3);
    let model = baselines_support::fresh_model(spec(FeatureSpec::NodeLabelsOneHot { num_labels: 4 }, 2, 2), 0);
    for threshold in [1.5, -1.1, f64::NAN] {
        let config = BaselineConfig { prune: PruneConfig { threshold, ..PruneConfig::default() }, ..BaselineConfig::default() };
        let err = run(DefenceKind::Prune, &model, &ds, None, &config, 0, &mut NoProgress).unwrap_err();
        assert!(err.to_string().contains("prune threshold"), "{err}");
    }
    let defence = defended(DefenceKind::Prune, &model, &BaselineConfig::default(), 0);
    let unlabelled = Graph { node_labels: None, ..ds.graphs[4].clone() };
    let err = defence.predict(&[&ds.graphs[0], &unlabelled]).unwrap_err().to_string();
    assert!(err.contains("graph 1") && err.contains("node labels"), "{err}");
    let broken = Graph { edges: vec![(0, 99)], ..ds.graphs[2].clone() };
    let err = defence.predict(&[&broken]).unwrap_err().to_string();
    assert!(err.contains("graph 0") && err.contains("(0, 99)"), "{err}");
    assert_eq!(defence.predict(&[]).unwrap(), Vec::<usize>::new());
}

#[test]
fn majority_vote_breaks_ties_toward_the_smallest_class() {
    assert_eq!(majority_vote(&[3, 5, 1]), 1);
    assert_eq!(majority_vote(&[2, 2]), 0);
    assert_eq!(majority_vote(&[1, 3, 3]), 1);
    assert_eq!(majority_vote(&[0, 0, 0, 4]), 3);
    assert_eq!(majority_vote(&[0, 0]), 0);
}

fn path(n: u32) -> Graph {
    Graph {
        num_nodes: n as usize,
        edges: (0..n - 1).map(|v| (v, v + 1)).collect(),
        node_labels: Some((0..n).collect()),
        node_attributes: Some((0..n).flat_map(|v| [v as f32, -(v as f32)]).collect()),
        label: 0,
    }
}

#[test]
fn smoothing_votes_count_hand_classified_subsamples() {
    // Path of 11 nodes (10 edges); the classifier says 1 iff at least 9 edges survive, which
    // happens with probability 0.8^10 + 10 * 0.2 * 0.8^9 = 0.376 per subsample.
    let g = path(11);
    let config = SmoothingConfig { samples: 15, edge_keep: 0.8, node_keep: 1.0, features: FeatureSource::Original };
    let mut classify = |subs: &[&Graph], _: &[usize]| -> Result<Vec<usize>> {
        Ok(subs.iter().map(|s| usize::from(s.edges.len() >= 9)).collect())
    };
    let seeds = [gcleaner_engine::baselines::smoothing::graph_seed(5, &g)];
    let votes = smoothed_predictions(&[&g], &seeds, &config, 2, 64, &mut classify).unwrap();
    let by_hand = samples(&g, &config, 5).iter().filter(|s| s.edges.len() >= 9).count();
    assert_eq!(votes, vec![SmoothedPrediction { class: usize::from(by_hand > 7), votes: vec![15 - by_hand, by_hand] }]);

    // Every edge kept: all 15 subsamples are the graph itself, a unanimous vote.
    let keep_all = SmoothingConfig { edge_keep: 1.0, ..config.clone() };
    let votes = smoothed_predictions(&[&g], &seeds, &keep_all, 2, 64, &mut classify).unwrap();
    assert_eq!(votes[0], SmoothedPrediction { class: 1, votes: vec![0, 15] });

    // A 2-2 split goes to class 0.
    let mut calls = 0;
    let mut alternate = |subs: &[&Graph], _: &[usize]| -> Result<Vec<usize>> {
        calls += 1;
        Ok((0..subs.len()).map(|i| (i + 1) % 2).collect())
    };
    let four = SmoothingConfig { samples: 4, ..config.clone() };
    let votes = smoothed_predictions(&[&g], &seeds, &four, 2, 64, &mut alternate).unwrap();
    assert_eq!(votes[0], SmoothedPrediction { class: 0, votes: vec![2, 2] });
    assert_eq!(calls, 1);

    // A classifier naming a class the model does not have is an error, not a panic.
    let mut wild = |subs: &[&Graph], _: &[usize]| -> Result<Vec<usize>> { Ok(vec![7; subs.len()]) };
    assert!(smoothed_predictions(&[&g], &seeds, &config, 2, 64, &mut wild).is_err());
}

#[test]
fn subsamples_keep_nodes_and_edges_at_the_configured_rates() {
    let g = path(41);
    let config = SmoothingConfig { samples: 1, edge_keep: 0.8, node_keep: 0.5, features: FeatureSource::Original };
    let mut rng = rng_for(9, "test");
    let draws: Vec<Graph> = (0..2000).map(|_| subsample(&g, &config, &mut rng)).collect();
    let mean_nodes = draws.iter().map(|s| s.num_nodes).sum::<usize>() as f64 / 2000.0;
    assert!((mean_nodes - 20.5).abs() < 0.5, "mean kept nodes {mean_nodes}");
    // An edge survives when both endpoints and the edge survive: 0.5 * 0.5 * 0.8 of 40 edges.
    let mean_edges = draws.iter().map(|s| s.edges.len()).sum::<usize>() as f64 / 2000.0;
    assert!((mean_edges - 8.0).abs() < 0.4, "mean kept edges {mean_edges}");
    for s in &draws {
        assert!(s.num_nodes >= 1);
        let labels = s.node_labels.as_ref().unwrap();
        let attributes = s.node_attributes.as_ref().unwrap();
        assert_eq!(labels.len(), s.num_nodes);
        assert_eq!(attributes.len(), 2 * s.num_nodes);
        // Node i of the subsample is original node labels[i]: its attributes follow it, and a
        // kept edge joins consecutive original nodes.
        for (i, &original) in labels.iter().enumerate() {
            assert_eq!(attributes[2 * i], original as f32);
        }
        assert!(labels.windows(2).all(|w| w[0] < w[1]));
        for &(u, v) in &s.edges {
            assert!(u < v && (v as usize) < s.num_nodes);
            assert_eq!(labels[v as usize], labels[u as usize] + 1);
        }
    }
    // A graph whose every node is dropped still keeps one.
    let sparse = SmoothingConfig { node_keep: 1e-9, ..config };
    assert_eq!(subsample(&g, &sparse, &mut rng).num_nodes, 1);
}

#[test]
fn smoothing_is_deterministic_and_independent_of_the_list() {
    let ds = synthetic::generate(60, 4);
    let model = trained_model(&ds, &(0..40).collect::<Vec<_>>(), spec(DEGREE_FEATURES, 2, 2), 10, 2);
    let graphs: Vec<&Graph> = ds.graphs[40..].iter().collect();
    let config = BaselineConfig { inference_batch_size: 50, ..BaselineConfig::default() };
    let a = defended(DefenceKind::Smoothing, &model, &config, 11);
    let b = defended(DefenceKind::Smoothing, &model, &config, 11);
    let all = a.predict(&graphs).unwrap();
    assert_eq!(all, b.predict(&graphs).unwrap());
    let reversed: Vec<&Graph> = graphs.iter().rev().copied().collect();
    let mut back = a.predict(&reversed).unwrap();
    back.reverse();
    assert_eq!(all, back);
    for (i, g) in graphs.iter().enumerate().step_by(7) {
        assert_eq!(a.predict(&[g]).unwrap(), vec![all[i]], "graph {i} alone");
    }
    // Another seed draws other subsamples.
    assert_ne!(samples(graphs[0], &config.smoothing, 11), samples(graphs[0], &config.smoothing, 12));

    // Subsamples that keep everything are the graph itself: the model's own predictions.
    for features in [FeatureSource::Original, FeatureSource::Recomputed] {
        let keep_all = BaselineConfig {
            smoothing: SmoothingConfig { samples: 3, edge_keep: 1.0, node_keep: 1.0, features },
            ..config.clone()
        };
        let predicted = defended(DefenceKind::Smoothing, &model, &keep_all, 11).predict(&graphs).unwrap();
        assert_eq!(predicted, plain_predict(&model, &graphs, &DEGREE_FEATURES), "{features:?}");
    }
}

#[test]
fn smoothing_rejects_bad_settings() {
    let model = baselines_support::fresh_model(spec(DEGREE_FEATURES, 2, 2), 0);
    let ds = synthetic::generate(4, 1);
    let bad = [
        SmoothingConfig { samples: 0, ..SmoothingConfig::default() },
        SmoothingConfig { edge_keep: 0.0, ..SmoothingConfig::default() },
        SmoothingConfig { node_keep: 1.5, ..SmoothingConfig::default() },
        SmoothingConfig { edge_keep: f64::NAN, ..SmoothingConfig::default() },
    ];
    for smoothing in bad {
        let config = BaselineConfig { smoothing: smoothing.clone(), ..BaselineConfig::default() };
        let err = run(DefenceKind::Smoothing, &model, &ds, None, &config, 0, &mut NoProgress).unwrap_err();
        assert!(err.to_string().contains("smoothing"), "{smoothing:?}: {err}");
    }
}

#[test]
fn graphs_without_nodes_are_classified_not_refused() {
    // Fingerprint holds node-less graphs; the model sees an all-zero embedding for them.
    let ds = synthetic::generate(20, 5);
    let model = trained_model(&ds, &(0..20).collect::<Vec<_>>(), spec(DEGREE_FEATURES, 2, 2), 3, 1);
    let empty = Graph { num_nodes: 0, edges: vec![], node_labels: None, node_attributes: None, label: 0 };
    let config = BaselineConfig::default();
    for kind in [DefenceKind::Prune, DefenceKind::Smoothing] {
        let defence = defended(kind, &model, &config, 3);
        let alone = defence.predict(&[&empty]).unwrap();
        let mixed = defence.predict(&[&ds.graphs[0], &empty, &ds.graphs[1]]).unwrap();
        assert_eq!(alone.len(), 1);
        assert_eq!(mixed[1], alone[0], "{kind}");
        assert_eq!(alone, plain_predict(&model, &[&empty], &DEGREE_FEATURES), "{kind}");
    }
}
