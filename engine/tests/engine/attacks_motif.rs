//! Motif library and induced motif counting, checked on hand-built graphs and against a
//! brute-force count over every node set.

use std::time::Instant;

use gcleaner_engine::attacks::{count_motifs, count_motifs_in, Motif};
use gcleaner_engine::data::Graph;
use gcleaner_engine::rng::rng_for;
use rand::Rng as _;

fn graph(num_nodes: usize, edges: &[(u32, u32)]) -> Graph {
    let mut g = Graph { num_nodes, edges: edges.to_vec(), node_labels: None, node_attributes: None, label: 0 };
    g.canonicalize_edges();
    g
}

fn counts_of(g: &Graph) -> Vec<(Motif, u64)> {
    count_motifs_in(g).iter().filter(|&(_, c)| c > 0).collect()
}

#[test]
fn each_motif_contains_its_own_induced_subgraphs() {
    use Motif::*;
    let expected: [(Motif, Vec<(Motif, u64)>); 8] = [
        (M31, vec![(M31, 1)]),
        (M32, vec![(M32, 1)]),
        (M41, vec![(M31, 2), (M41, 1)]),
        (M42, vec![(M31, 3), (M42, 1)]),
        (M43, vec![(M31, 4), (M43, 1)]),
        (M44, vec![(M31, 2), (M32, 2), (M44, 1)]),
        (M45, vec![(M31, 2), (M32, 1), (M45, 1)]),
        (M46, vec![(M32, 4), (M46, 1)]),
    ];
    for (motif, counts) in expected {
        let g = graph(motif.num_nodes(), &motif.edges());
        assert_eq!(counts_of(&g), counts, "{motif} ({})", motif.description());
        assert!(motif.trigger().is_connected());
    }
}

#[test]
fn larger_hand_built_graphs() {
    // K5: C(5,3) = 10 triangles, C(5,4) = 5 four-cliques, nothing else induced.
    let k5: Vec<(u32, u32)> = (0..5).flat_map(|u| (u + 1..5).map(move |v| (u, v))).collect();
    assert_eq!(counts_of(&graph(5, &k5)), vec![(Motif::M32, 10), (Motif::M46, 5)]);
    // A 6-cycle: 6 induced 3-paths and 6 induced 4-paths.
    let c6: Vec<(u32, u32)> = (0..6).map(|i| (i, (i + 1) % 6)).collect();
    assert_eq!(counts_of(&graph(6, &c6)), vec![(Motif::M31, 6), (Motif::M41, 6)]);
    // A star with 5 leaves: C(5,2) = 10 open triads and C(5,3) = 10 four-stars.
    let star: Vec<(u32, u32)> = (1..6).map(|i| (0, i)).collect();
    assert_eq!(counts_of(&graph(6, &star)), vec![(Motif::M31, 10), (Motif::M42, 10)]);
    // Isolated nodes and empty graphs contribute nothing.
    assert!(counts_of(&graph(4, &[])).is_empty());
    assert!(counts_of(&graph(0, &[])).is_empty());
    // Disconnected node sets are not motifs: two disjoint edges have no 3- or 4-node motif.
    assert!(counts_of(&graph(4, &[(0, 1), (2, 3)])).is_empty());
}

/// Counts in library order, found by checking every 3- and 4-node set against every motif.
fn brute_force(g: &Graph) -> [u64; 8] {
    let n = g.num_nodes;
    let adjacent = |a: usize, b: usize| g.edges.binary_search(&(a.min(b) as u32, a.max(b) as u32)).is_ok();
    let mut sets: Vec<Vec<usize>> = Vec::new();
    for a in 0..n {
        for b in a + 1..n {
            for c in b + 1..n {
                sets.push(vec![a, b, c]);
                for d in c + 1..n {
                    sets.push(vec![a, b, c, d]);
                }
            }
        }
    }
    let mut counts = [0u64; 8];
    for set in sets {
        let mut edges = Vec::new();
        for i in 0..set.len() {
            for j in i + 1..set.len() {
                if adjacent(set[i], set[j]) {
                    edges.push((i as u32, j as u32));
                }
            }
        }
        let induced = graph(set.len(), &edges);
        for (slot, m) in Motif::ALL.into_iter().enumerate() {
            if is_isomorphic(&induced, &graph(m.num_nodes(), &m.edges())) {
                counts[slot] += 1;
            }
        }
    }
    counts
}

fn is_isomorphic(a: &Graph, b: &Graph) -> bool {
    if a.num_nodes != b.num_nodes || a.edges.len() != b.edges.len() {
        return false;
    }
    let n = a.num_nodes;
    let mut perm: Vec<usize> = (0..n).collect();
    loop {
        let mut mapped: Vec<(u32, u32)> = a
            .edges
            .iter()
            .map(|&(u, v)| {
                let (x, y) = (perm[u as usize] as u32, perm[v as usize] as u32);
                (x.min(y), x.max(y))
            })
            .collect();
        mapped.sort_unstable();
        if mapped == b.edges {
            return true;
        }
        if !next_permutation(&mut perm) {
            return false;
        }
    }
}

fn next_permutation(p: &mut [usize]) -> bool {
    let Some(i) = (1..p.len()).rev().find(|&i| p[i - 1] < p[i]) else { return false };
    let j = (i..p.len()).rev().find(|&j| p[j] > p[i - 1]).unwrap();
    p.swap(i - 1, j);
    p[i..].reverse();
    true
}

fn random_graph(n: usize, p: f64, seed: u64) -> Graph {
    let mut rng = rng_for(seed, "motif-test");
    let mut edges = Vec::new();
    for u in 0..n as u32 {
        for v in u + 1..n as u32 {
            if rng.gen_bool(p) {
                edges.push((u, v));
            }
        }
    }
    graph(n, &edges)
}

#[test]
fn esu_counts_match_brute_force_on_random_graphs() {
    for seed in 0..12 {
        let p = [0.15, 0.3, 0.6][seed as usize % 3];
        let g = random_graph(9, p, seed);
        let counts = count_motifs_in(&g);
        assert_eq!(Motif::ALL.map(|m| counts.get(m)), brute_force(&g), "seed {seed}, p {p}");
    }
}

#[test]
fn least_frequent_motif_and_summing() {
    // Two triangles and one 4-path: M32 = 2, M31 = 2 (from the path), M41 = 1.
    let tri = Motif::M32.trigger();
    let path = Motif::M41.trigger();
    let graphs = vec![graph(3, &tri.edges), graph(3, &tri.edges), graph(4, &path.edges)];
    let counts = count_motifs(&graphs);
    assert_eq!(counts.get(Motif::M32), 2);
    assert_eq!(counts.get(Motif::M31), 2);
    assert_eq!(counts.get(Motif::M41), 1);
    // Several motifs never occur; the first of them in library order wins the tie.
    assert_eq!(counts.least_frequent(), Motif::M42);

    let every_motif: Vec<Graph> = Motif::ALL.iter().map(|m| graph(m.num_nodes(), &m.edges())).collect();
    let counts = count_motifs(&every_motif);
    assert!(Motif::ALL.iter().all(|&m| counts.get(m) >= 1));
    // Each 4-node motif occurs once (its own graph); M31 and M32 occur inside the others too.
    assert_eq!(counts.least_frequent(), Motif::M41);
}

#[test]
fn motif_names_parse() {
    for m in Motif::ALL {
        assert_eq!(m.name().parse::<Motif>().unwrap(), m);
        assert_eq!(m.to_string().to_lowercase().parse::<Motif>().unwrap(), m);
    }
    let err = "M47".parse::<Motif>().unwrap_err().to_string();
    assert!(err.contains("M47") && err.contains("M46"), "{err}");
}

#[test]
fn counting_four_thousand_molecule_sized_graphs_is_fast() {
    let graphs: Vec<Graph> = (0..4000).map(|s| random_graph(30, 0.08, s)).collect();
    let start = Instant::now();
    let counts = count_motifs(&graphs);
    let elapsed = start.elapsed();
    assert!(counts.get(Motif::M31) > 0);
    // Generous bound for a shared 2-core machine; the count takes well under a second there.
    assert!(elapsed.as_secs_f64() < 10.0, "counting took {elapsed:?}");
}
