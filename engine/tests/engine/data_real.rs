//! The real datasets in ../shared/datasets load with the documented counts. Each test skips,
//! saying why, when its folder is absent (set GCLEANER_DATASETS to look elsewhere).

use std::path::PathBuf;

use gcleaner_engine::data::features::DEFAULT_MAX_DEGREE_CAP;
use gcleaner_engine::data::json::write_json_dataset;
use gcleaner_engine::data::{load_dataset, make_batches, Dataset, FeatureSpec};
use tch::Device;

fn datasets_dir() -> PathBuf {
    match std::env::var_os("GCLEANER_DATASETS") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/datasets"),
    }
}

/// Loads `relative` from the datasets folder, or `None` (with a printed reason) when absent.
fn load(relative: &str) -> Option<Dataset> {
    let path = datasets_dir().join(relative);
    if !path.exists() {
        eprintln!("skipping: {} is absent (shared datasets not available)", path.display());
        return None;
    }
    Some(load_dataset(&path).unwrap_or_else(|e| panic!("{relative} should load: {e}")))
}

fn check_graphs_are_canonical(ds: &Dataset) {
    for (i, g) in ds.graphs.iter().enumerate() {
        g.validate().unwrap_or_else(|e| panic!("{} graph {i}: {e}", ds.name));
        assert!(g.edges.windows(2).all(|w| w[0] < w[1]), "{} graph {i}: edges sorted, unique", ds.name);
        assert!(g.edges.iter().all(|&(u, v)| u < v), "{} graph {i}: u < v", ds.name);
        assert!(g.label < ds.num_classes());
    }
}

#[test]
fn aids() {
    let Some(ds) = load("AIDS") else { return };
    assert_eq!(ds.name, "AIDS");
    assert_eq!(ds.len(), 1110);
    assert_eq!(ds.class_labels, vec![0, 1]);
    assert_eq!(ds.class_counts(), vec![310, 800]);
    assert_eq!(ds.attr_dim(), 4);
    assert!(ds.num_node_labels() > 1);
    check_graphs_are_canonical(&ds);
    let spec = FeatureSpec::default_for(&ds);
    assert_eq!(spec, FeatureSpec::OneHotDegree { max_degree: ds.max_degree() });
    assert!(ds.max_degree() <= 6);
    let both = FeatureSpec::Concat { parts: vec![spec, FeatureSpec::NodeAttributes { dim: 4 }] };
    let indices: Vec<usize> = (0..ds.len()).collect();
    let batches = make_batches(&ds, &indices, 64, &both, Device::Cpu).unwrap();
    assert_eq!(batches.len(), 18);
    let nodes: i64 = batches.iter().map(|b| b.num_nodes()).sum();
    let expected_nodes: usize = ds.graphs.iter().map(|g| g.num_nodes).sum();
    assert_eq!(nodes as usize, expected_nodes);
    let edges: i64 = batches.iter().map(|b| b.num_directed_edges()).sum();
    assert_eq!(edges as usize, 2 * ds.graphs.iter().map(|g| g.edges.len()).sum::<usize>());
}

#[test]
fn mutag_labels_are_remapped_and_round_trip_through_json() {
    let Some(ds) = load("MUTAG") else { return };
    assert_eq!(ds.len(), 188);
    assert_eq!(ds.class_labels, vec![-1, 1]);
    assert_eq!(ds.class_counts(), vec![63, 125]);
    assert_eq!(ds.num_node_labels(), 7);
    check_graphs_are_canonical(&ds);
    // The first MUTAG graph: 17 nodes, 19 bonds.
    assert_eq!((ds.graphs[0].num_nodes, ds.graphs[0].edges.len()), (17, 19));

    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("mutag.json");
    write_json_dataset(&ds, &json).unwrap();
    assert_eq!(load_dataset(&json).unwrap(), ds);
}

#[test]
fn fingerprint_four_classes() {
    let Some(ds) = load("Fingerprint") else { return };
    assert_eq!(ds.len(), 2800);
    assert_eq!(ds.num_classes(), 15);
    assert_eq!(ds.attr_dim(), 2);
    check_graphs_are_canonical(&ds);
    assert!(ds.graphs.iter().any(|g| g.num_nodes > 0 && g.edges.is_empty()), "edgeless graphs");
    // Graph ids the indicator skips are graphs without nodes.
    assert_eq!(ds.graphs.iter().filter(|g| g.num_nodes == 0).count(), 651);
    let nodes: usize = ds.graphs.iter().map(|g| g.num_nodes).sum();
    assert_eq!(nodes, 15167);
    let four = ds.keep_classes(&[0, 2, 4, 5]).unwrap();
    assert_eq!(four.class_counts(), vec![535, 553, 541, 504]);
    assert_eq!(four.len(), 2133);
    assert_eq!(four.class_labels, vec![0, 2, 4, 5]);
}

#[test]
fn nci1() {
    let Some(ds) = load("NCI1") else { return };
    assert_eq!(ds.len(), 4110);
    assert_eq!(ds.class_counts(), vec![2053, 2057]);
    assert!(ds.attr_dim() == 0 && ds.num_node_labels() == 38);
    check_graphs_are_canonical(&ds);
}

#[test]
fn imdb_binary_degree_features_are_capped() {
    let Some(ds) = load("IMDB-BINARY") else { return };
    assert_eq!(ds.len(), 1000);
    assert_eq!(ds.class_counts(), vec![500, 500]);
    assert!(ds.graphs.iter().all(|g| g.node_labels.is_none() && g.node_attributes.is_none()));
    check_graphs_are_canonical(&ds);
    assert_eq!(ds.max_degree(), 135);
    assert_eq!(FeatureSpec::default_for(&ds), FeatureSpec::OneHotDegree { max_degree: DEFAULT_MAX_DEGREE_CAP });
}

#[test]
fn bitcoin_gin_text_tags_are_not_features() {
    let Some(ds) = load("bitcoin/bitcoin.txt") else { return };
    assert_eq!(ds.name, "bitcoin");
    assert_eq!(ds.len(), 1174);
    assert_eq!(ds.class_counts(), vec![845, 329]);
    check_graphs_are_canonical(&ds);
    // Every tag equals its graph's label, which is why default features ignore tags.
    for (i, g) in ds.graphs.iter().enumerate() {
        let label = ds.original_label(i).unwrap();
        assert!(g.node_labels.as_ref().unwrap().iter().all(|&t| i64::from(t) == label));
    }
    assert!(matches!(FeatureSpec::default_for(&ds), FeatureSpec::OneHotDegree { .. }));
    let avg_edges = ds.graphs.iter().map(|g| g.edges.len()).sum::<usize>() as f64 / ds.len() as f64;
    assert!((ds.avg_nodes() - 14.64).abs() < 0.01, "avg nodes {}", ds.avg_nodes());
    assert!((avg_edges - 14.18).abs() < 0.05, "avg edges {avg_edges}");
    // The folder form finds the single file too.
    assert_eq!(load("bitcoin").unwrap(), ds);
}
