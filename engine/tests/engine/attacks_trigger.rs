//! Trigger construction and the attack.json record.

use std::path::Path;

use gcleaner_engine::attacks::{
    AttackDescription, AttackKind, AttackParams, GraphTrigger, Motif, PlacementKind, Trigger, TriggerDescription,
};

#[test]
fn erdos_renyi_triggers_are_seeded_connected_and_canonical() {
    for n in 2..12 {
        for seed in 0..10 {
            let t = Trigger::erdos_renyi(n, 0.8, seed).unwrap();
            assert_eq!(t, Trigger::erdos_renyi(n, 0.8, seed).unwrap());
            assert_eq!(t.num_nodes, n);
            assert!(t.is_connected(), "n={n} seed={seed}: {:?}", t.edges);
            assert!(t.edges.windows(2).all(|w| w[0] < w[1]));
            assert!(t.edges.iter().all(|&(u, v)| u < v && (v as usize) < n));
        }
    }
    let draws: Vec<Trigger> = (0..10).map(|s| Trigger::erdos_renyi(8, 0.8, s).unwrap()).collect();
    assert!(draws.windows(2).any(|w| w[0] != w[1]), "the seed does not change the trigger");
}

#[test]
fn erdos_renyi_density_shapes_the_trigger() {
    let full = Trigger::erdos_renyi(7, 1.0, 0).unwrap();
    assert_eq!(full.edges.len(), 21);
    // Too sparse to be connected by chance: the components get chained into a tree.
    let sparse = Trigger::erdos_renyi(12, 0.01, 0).unwrap();
    assert!(sparse.is_connected());
    assert!(sparse.edges.len() >= 11);
    // G(n, m): the density is exact (rounded up), never a sparse accident of the draw.
    for seed in 0..50 {
        assert_eq!(Trigger::erdos_renyi(10, 0.8, seed).unwrap().edges.len(), 36);
        assert_eq!(Trigger::erdos_renyi(5, 0.8, seed).unwrap().edges.len(), 8);
        // 3 nodes at 0.8 is always the triangle (G(n, p) gave a path 43% of the time).
        assert_eq!(Trigger::erdos_renyi(3, 0.8, seed).unwrap().edges, vec![(0, 1), (0, 2), (1, 2)]);
    }
}

#[test]
fn bad_triggers_are_rejected() {
    for density in [0.0, -0.1, 1.5, f64::NAN] {
        let err = Trigger::erdos_renyi(4, density, 0).unwrap_err().to_string();
        assert!(err.contains("density"), "{density}: {err}");
    }
    assert!(Trigger::erdos_renyi(1, 0.8, 0).unwrap_err().to_string().contains("at least 2"));
    assert!(Trigger::new(3, vec![]).unwrap_err().to_string().contains("no edges"));
    assert!(Trigger::new(3, vec![(1, 1)]).unwrap_err().to_string().contains("self-loop"));
    assert!(Trigger::new(3, vec![(0, 3)]).unwrap_err().to_string().contains("outside"));
    assert_eq!(Trigger::new(3, vec![(2, 0), (0, 2), (1, 0)]).unwrap().edges, vec![(0, 1), (0, 2)]);
}

#[test]
fn attack_descriptions_round_trip_through_json() {
    let params = AttackParams { target_class: 1, injection_ratio: 0.05, trigger_ratio: 0.2, seed: 10 };
    let mut fixed = AttackDescription::new(
        AttackKind::Motif,
        params.clone(),
        1,
        PlacementKind::DegreeCentrality,
        TriggerDescription::Fixed(Motif::M43.trigger()),
        10,
        vec![3, 8],
    );
    fixed.motif = Some(Motif::M43);
    let json = fixed.to_json().unwrap();
    let value: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(value["format"], "gcleaner.attack/v1");
    assert_eq!(value["attack"], "motif");
    assert_eq!(value["name"], "Motif-BA");
    assert_eq!(value["motif"], "M43");
    assert_eq!(value["placement"], "degree_centrality");
    assert_eq!(value["trigger"]["kind"], "fixed");
    assert_eq!(value["trigger"]["num_nodes"], 4);
    assert_eq!(value["trigger"]["edges"][0], serde_json::json!([0, 1]));
    let back = AttackDescription::from_json(&json, Path::new("attack.json")).unwrap();
    assert_eq!(back, fixed);

    let per_graph = AttackDescription::new(
        AttackKind::Gta,
        params,
        1,
        PlacementKind::Importance,
        TriggerDescription::PerGraph {
            num_nodes: 3,
            graphs: vec![GraphTrigger {
                graph_index: 4,
                positions: vec![5, 0, 2],
                edges: vec![(0, 5), (2, 5)],
                node_attributes: Some(vec![0.5, 0.25, 1.0]),
                node_labels: Some(vec![2, 0, 1]),
            }],
        },
        10,
        vec![4],
    );
    let json = per_graph.to_json().unwrap();
    assert_eq!(AttackDescription::from_json(&json, Path::new("a.json")).unwrap(), per_graph);
    assert_eq!(per_graph.trigger.num_nodes(), 3);

    let wrong = json.replace("gcleaner.attack/v1", "gcleaner.attack/v9");
    let err = AttackDescription::from_json(&wrong, Path::new("a.json")).unwrap_err();
    assert!(err.to_string().contains("a.json"), "{err}");
    let err = AttackDescription::from_json("{\"format\": 3}", Path::new("b.json")).unwrap_err();
    assert!(err.to_string().starts_with("b.json:1:"), "{err}");
}

#[test]
fn attack_kinds_parse_from_cli_and_paper_names() {
    for kind in AttackKind::ALL {
        assert_eq!(kind.as_str().parse::<AttackKind>().unwrap(), kind);
        assert_eq!(kind.paper_name().parse::<AttackKind>().unwrap(), kind);
    }
    assert!("badnet".parse::<AttackKind>().unwrap_err().to_string().contains("badnet"));
}
