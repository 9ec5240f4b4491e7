//! Trigger injection and placement: the injected graph stays a simple canonical graph, holds
//! exactly the trigger among the chosen nodes, keeps every other edge, and grows only when the
//! trigger is larger than the graph.

use gcleaner_engine::attacks::{inject, Motif, Placement, Trigger};
use gcleaner_engine::data::Graph;
use gcleaner_engine::rng::rng_for;
use rand::Rng as _;

fn random_graph(num_nodes: usize, p: f64, seed: u64) -> Graph {
    let mut rng = rng_for(seed, "test-graph");
    let mut edges = Vec::new();
    for u in 0..num_nodes as u32 {
        for v in u + 1..num_nodes as u32 {
            if rng.gen_bool(p) {
                edges.push((u, v));
            }
        }
    }
    Graph {
        num_nodes,
        edges,
        node_labels: Some((0..num_nodes as u32).map(|i| i % 3).collect()),
        node_attributes: Some((0..num_nodes * 2).map(|i| i as f32).collect()),
        label: 0,
    }
}

fn assert_canonical(g: &Graph) {
    for w in g.edges.windows(2) {
        assert!(w[0] < w[1], "edges not sorted/unique: {:?}", w);
    }
    for &(u, v) in &g.edges {
        assert!(u < v, "edge ({u},{v}) not canonical or a self-loop");
        assert!((v as usize) < g.num_nodes, "edge ({u},{v}) out of range");
    }
    if let Some(labels) = &g.node_labels {
        assert_eq!(labels.len(), g.num_nodes);
    }
    if let Some(attrs) = &g.node_attributes {
        assert_eq!(attrs.len() % g.num_nodes.max(1), 0);
    }
}

fn has_edge(g: &Graph, a: usize, b: usize) -> bool {
    let (u, v) = (a.min(b) as u32, a.max(b) as u32);
    g.edges.binary_search(&(u, v)).is_ok()
}

#[test]
fn injection_replaces_exactly_the_edges_among_the_chosen_nodes() {
    let trigger = Trigger::erdos_renyi(5, 0.6, 3).unwrap();
    for seed in 0..20 {
        let graph = random_graph(12, 0.4, seed);
        let positions = Placement::Random.positions(seed as usize, &graph, 5, seed).unwrap();
        let injected = inject(&graph, &trigger, &positions).unwrap();
        assert_canonical(&injected);
        assert_eq!(injected.num_nodes, graph.num_nodes);
        assert_eq!(injected.label, graph.label);
        assert_eq!(injected.node_labels, graph.node_labels);
        assert_eq!(injected.node_attributes, graph.node_attributes);

        let chosen = |x: usize| positions.contains(&x);
        for a in 0..graph.num_nodes {
            for b in a + 1..graph.num_nodes {
                let expected = if chosen(a) && chosen(b) {
                    let ta = positions.iter().position(|&p| p == a).unwrap() as u32;
                    let tb = positions.iter().position(|&p| p == b).unwrap() as u32;
                    trigger.edges.contains(&(ta.min(tb), ta.max(tb)))
                } else {
                    has_edge(&graph, a, b)
                };
                assert_eq!(has_edge(&injected, a, b), expected, "pair ({a},{b}), seed {seed}");
            }
        }
    }
}

#[test]
fn small_graphs_grow_to_the_trigger_size_with_filled_nodes() {
    let graph = Graph {
        num_nodes: 3,
        edges: vec![(0, 1), (1, 2)],
        node_labels: Some(vec![4, 7, 7]),
        node_attributes: Some(vec![1.0, 0.0, 3.0, 2.0, 5.0, 4.0]),
        label: 1,
    };
    let trigger = Motif::M46.trigger();
    for placement in [Placement::Random, Placement::DegreeCentrality] {
        let positions = placement.positions(0, &graph, 4, 9).unwrap();
        assert_eq!(positions.len(), 4);
        assert_eq!(positions[3], 3, "the appended node comes last: {positions:?}");
        let injected = inject(&graph, &trigger, &positions).unwrap();
        assert_canonical(&injected);
        assert_eq!(injected.num_nodes, 4);
        assert_eq!(injected.edges.len(), 6, "a 4-clique over every node");
        assert_eq!(injected.label, 1);
        assert_eq!(injected.node_labels, Some(vec![4, 7, 7, 7]), "most common label fills");
        assert_eq!(injected.node_attributes, Some(vec![1.0, 0.0, 3.0, 2.0, 5.0, 4.0, 3.0, 2.0]), "mean attribute row fills");
    }
}

#[test]
fn node_count_is_the_larger_of_graph_and_trigger() {
    for (graph_nodes, trigger_nodes) in [(1, 2), (2, 2), (2, 5), (6, 3), (4, 4)] {
        let graph = random_graph(graph_nodes, 0.5, graph_nodes as u64);
        let trigger = Trigger::erdos_renyi(trigger_nodes, 0.8, 1).unwrap();
        let positions = Placement::Random.positions(0, &graph, trigger_nodes, 5).unwrap();
        let injected = inject(&graph, &trigger, &positions).unwrap();
        assert_eq!(injected.num_nodes, graph_nodes.max(trigger_nodes));
        assert_eq!(injected.node_labels.as_ref().unwrap().len(), injected.num_nodes);
        assert_eq!(injected.node_attributes.as_ref().unwrap().len(), 2 * injected.num_nodes);
        assert_canonical(&injected);
    }
}

#[test]
fn bad_positions_are_rejected() {
    let graph = random_graph(6, 0.5, 1);
    let trigger = Motif::M32.trigger();
    let cases: [(&[usize], &str); 4] = [
        (&[0, 1], "needs 3 positions"),
        (&[0, 1, 1], "given twice"),
        (&[0, 1, 6], "outside a graph of 6 nodes"),
        (&[0, 1, 2, 3], "needs 3 positions"),
    ];
    for (positions, message) in cases {
        let err = inject(&graph, &trigger, positions).unwrap_err().to_string();
        assert!(err.contains(message), "{positions:?}: {err}");
    }
    // A graph smaller than the trigger must use every appended node.
    let tiny = random_graph(2, 1.0, 1);
    let err = inject(&tiny, &Motif::M46.trigger(), &[0, 1, 2, 5]).unwrap_err().to_string();
    assert!(err.contains("outside"), "{err}");
}

#[test]
fn ranked_placements_pick_the_top_nodes() {
    // A star centred on node 4 with an extra edge 0-1: degrees 2,2,1,1,4,0.
    let graph = Graph {
        num_nodes: 6,
        edges: vec![(0, 1), (0, 4), (1, 4), (2, 4), (3, 4)],
        node_labels: None,
        node_attributes: None,
        label: 0,
    };
    let by_degree = Placement::DegreeCentrality.positions(0, &graph, 3, 0).unwrap();
    assert_eq!(by_degree, vec![4, 0, 1]);

    let scores = vec![vec![0.1, 0.9, 0.5, 0.9, 0.0, 0.3]];
    let by_importance = Placement::Importance(&scores).positions(0, &graph, 3, 0).unwrap();
    assert_eq!(by_importance, vec![1, 3, 2], "highest first, ties to the lower index");

    let short = vec![vec![0.1, 0.2]];
    let err = Placement::Importance(&short).positions(0, &graph, 3, 0).unwrap_err();
    assert!(err.to_string().contains("6 nodes but 2"), "{err}");
    let err = Placement::Importance(&short).positions(1, &graph, 3, 0).unwrap_err();
    assert!(err.to_string().contains("no node importance for graph 1"), "{err}");
    let nan = vec![vec![0.1, f32::NAN, 0.0, 0.0, 0.0, 0.0]];
    assert!(Placement::Importance(&nan).positions(0, &graph, 3, 0).is_err());
}

#[test]
fn random_placement_is_seeded_per_graph() {
    let graph = random_graph(30, 0.2, 4);
    let a = Placement::Random.positions(7, &graph, 6, 42).unwrap();
    let b = Placement::Random.positions(7, &graph, 6, 42).unwrap();
    assert_eq!(a, b);
    let mut sorted = a.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(sorted.len(), 6);
    let other_seed = Placement::Random.positions(7, &graph, 6, 43).unwrap();
    let other_graph = Placement::Random.positions(8, &graph, 6, 42).unwrap();
    assert!(a != other_seed || a != other_graph, "seed and graph index both ignored");
}
