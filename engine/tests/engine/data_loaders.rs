//! Every dataset loader on small generated inputs, and every kind of malformed input, checking
//! that the error names the file and the line.

use std::path::{Path, PathBuf};

use gcleaner_engine::data::gin_text::load_gin_text;
use gcleaner_engine::data::json::{load_json_dataset, write_json_dataset};
use gcleaner_engine::data::tu::load_tu_dir;
use gcleaner_engine::data::{load_dataset, Dataset, Graph};
use tempfile::TempDir;

fn write(dir: &Path, name: &str, content: &str) -> PathBuf {
    let path = dir.join(name);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    std::fs::write(&path, content).unwrap();
    path
}

/// A two-graph TU dataset "DS": a triangle (nodes 1-3, listed in both directions, with a
/// self-loop and a duplicate) and an edgeless pair (nodes 4-5). Labels -1 and 1.
fn tu_files() -> Vec<(&'static str, String)> {
    vec![
        ("DS_A.txt", "1, 2\n2, 1\n2, 3\n3, 2\n1, 3\n3, 1\n1, 1\n1, 2\n".into()),
        ("DS_graph_indicator.txt", "1\n1\n1\n2\n2\n".into()),
        ("DS_graph_labels.txt", "1\n-1\n".into()),
        ("DS_node_labels.txt", "0\n3\n1\n2\n0\n".into()),
        ("DS_node_attributes.txt", "0.5, 1\n1.5, 2\n2.5, 3\n3.5, 4\n4.5, 5\n".into()),
        ("DS_edge_labels.txt", "9\n9\n9\n9\n9\n9\n9\n9\n".into()),
    ]
}

fn tu_dir_with(changes: &[(&str, Option<&str>)]) -> TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, content) in tu_files() {
        match changes.iter().find(|(n, _)| *n == name) {
            Some((_, None)) => {}
            Some((_, Some(replacement))) => {
                write(dir.path(), name, replacement);
            }
            None => {
                write(dir.path(), name, &content);
            }
        }
    }
    dir
}

/// Loads a TU folder with one file changed and returns the error text.
fn tu_error(changes: &[(&str, Option<&str>)]) -> String {
    let dir = tu_dir_with(changes);
    match load_tu_dir(dir.path()) {
        Ok(ds) => panic!("expected an error, loaded {} graphs", ds.len()),
        Err(e) => e.to_string(),
    }
}

fn assert_names(err: &str, location: &str, words: &str) {
    assert!(err.contains(location), "error {err:?} should name {location:?}");
    assert!(err.contains(words), "error {err:?} should say {words:?}");
}

#[test]
fn tu_folder_loads_with_canonical_edges_and_remapped_labels() {
    let dir = tu_dir_with(&[]);
    let ds = load_tu_dir(dir.path()).unwrap();
    assert_eq!(ds.name, "DS");
    assert_eq!(ds.len(), 2);
    assert_eq!(ds.class_labels, vec![-1, 1]);
    let (g0, g1) = (&ds.graphs[0], &ds.graphs[1]);
    assert_eq!(g0.num_nodes, 3);
    assert_eq!(g0.edges, vec![(0, 1), (0, 2), (1, 2)]);
    assert_eq!(g0.label, 1);
    assert_eq!(g0.node_labels, Some(vec![0, 3, 1]));
    assert_eq!(g0.node_attributes, Some(vec![0.5, 1.0, 1.5, 2.0, 2.5, 3.0]));
    assert_eq!(g1.num_nodes, 2);
    assert!(g1.edges.is_empty());
    assert_eq!(g1.label, 0);
    assert_eq!(g1.node_labels, Some(vec![2, 0]));
    assert_eq!(g1.attr_dim(), 2);
    assert_eq!(ds.max_degree(), 2);
}

#[test]
fn tu_graph_ids_skipped_by_the_indicator_are_graphs_without_nodes() {
    let dir = tu_dir_with(&[
        ("DS_graph_indicator.txt", Some("1\n1\n1\n3\n3\n")),
        ("DS_graph_labels.txt", Some("0\n1\n0\n")),
        ("DS_A.txt", Some("1, 2\n4, 5\n")),
    ]);
    let ds = load_tu_dir(dir.path()).unwrap();
    assert_eq!(ds.graphs.iter().map(|g| g.num_nodes).collect::<Vec<_>>(), vec![3, 0, 2]);
    assert_eq!(ds.graphs[1].node_labels, Some(vec![]));
    assert_eq!(ds.graphs[1].label, 1);
    assert_eq!(ds.graphs[2].edges, vec![(0, 1)]);
    assert_eq!(ds.graphs[2].node_attributes, Some(vec![3.5, 4.0, 4.5, 5.0]));
}

#[test]
fn tu_optional_files_may_be_absent_and_lines_may_use_spaces_or_crlf() {
    let dir =
        tu_dir_with(&[("DS_node_labels.txt", None), ("DS_node_attributes.txt", None), ("DS_A.txt", Some("1 2\r\n2 3\r\n\r\n"))]);
    let ds = load_tu_dir(dir.path()).unwrap();
    assert_eq!(ds.graphs[0].edges, vec![(0, 1), (1, 2)]);
    assert!(ds.graphs[0].node_labels.is_none() && ds.graphs[0].node_attributes.is_none());
}

#[test]
fn tu_missing_required_files_are_named() {
    for name in ["DS_graph_indicator.txt", "DS_graph_labels.txt"] {
        let err = tu_error(&[(name, None)]);
        assert_names(&err, name, "file not found");
    }
    let dir = tu_dir_with(&[("DS_A.txt", None)]);
    let err = load_tu_dir(dir.path()).unwrap_err().to_string();
    assert!(err.contains("not a TU dataset folder"), "{err}");
}

#[test]
fn tu_malformed_lines_are_reported_with_file_and_line() {
    let cases: &[(&str, &str, &str, &str)] = &[
        ("DS_A.txt", "1, 2\n2, 3, 4\n", "DS_A.txt:2:", "expected 2 columns"),
        ("DS_A.txt", "1, 2\n2, 3\n1, x\n", "DS_A.txt:3:", "node id must be"),
        ("DS_A.txt", "1, 2\n2, 6\n", "DS_A.txt:2:", "node id 6 out of range 1..=5"),
        ("DS_A.txt", "0, 1\n", "DS_A.txt:1:", "out of range"),
        ("DS_A.txt", "1, 2\n3, 4\n", "DS_A.txt:2:", "joins node 3 of graph 1 and node 4 of graph 2"),
        ("DS_A.txt", "1, 2\n1,\n", "DS_A.txt:2:", "empty field"),
        ("DS_A.txt", "1, 2\n\n2, 3\n", "DS_A.txt:2:", "blank line"),
        ("DS_graph_indicator.txt", "1\n1\n2\n1\n2\n", "DS_graph_indicator.txt:4:", "graph id 1 after 2"),
        (
            "DS_graph_indicator.txt",
            "1\n1\n1\n3\n3\n",
            "DS_graph_labels.txt:3:",
            "file ends after 2 graph labels, but graph_indicator implies 3",
        ),
        ("DS_graph_indicator.txt", "1\n1\n1\n2\n9999999\n", "DS_graph_indicator.txt:5:", "limit"),
        ("DS_graph_indicator.txt", "0\n1\n1\n2\n2\n", "DS_graph_indicator.txt:1:", "start at 1"),
        ("DS_graph_indicator.txt", "1\n1\n1\n2\n2, 2\n", "DS_graph_indicator.txt:5:", "expected 1 column"),
        ("DS_graph_indicator.txt", "1\n1\n1\n2\n-2\n", "DS_graph_indicator.txt:5:", "graph id must be"),
        ("DS_graph_labels.txt", "1\n", "DS_graph_labels.txt:2:", "file ends after 1 graph labels"),
        ("DS_graph_labels.txt", "1\n0\n1\n", "DS_graph_labels.txt:3:", "more graph labels"),
        ("DS_graph_labels.txt", "1\nactive\n", "DS_graph_labels.txt:2:", "graph label must be an integer"),
        ("DS_node_labels.txt", "0\n1\n2\n3\n", "DS_node_labels.txt:5:", "file ends after 4 node labels"),
        ("DS_node_labels.txt", "0\n1\n2\n3\n4\n5\n", "DS_node_labels.txt:6:", "more node labels"),
        ("DS_node_labels.txt", "0\n1\n-2\n3\n4\n", "DS_node_labels.txt:3:", "non-negative"),
        ("DS_node_attributes.txt", "1, 1\nnan, 2\n1, 1\n1, 1\n1, 1\n", "DS_node_attributes.txt:2:", "finite"),
        ("DS_node_attributes.txt", "1, 1\n1, 1\n1, inf\n1, 1\n1, 1\n", "DS_node_attributes.txt:3:", "finite"),
        ("DS_node_attributes.txt", "1, 1\n1, 1\n1\n1, 1\n1, 1\n", "DS_node_attributes.txt:3:", "expected 2 columns"),
        ("DS_node_attributes.txt", "1, 1\n1, 1\n", "DS_node_attributes.txt:3:", "file ends after 2 attribute rows"),
    ];
    for (file, content, location, words) in cases {
        let err = tu_error(&[(file, Some(content))]);
        assert_names(&err, location, words);
    }
}

#[test]
fn tu_empty_dataset_and_ambiguous_folders_are_errors() {
    let err = tu_error(&[("DS_graph_indicator.txt", Some("\n"))]);
    assert_names(&err, "DS_graph_indicator.txt", "empty");

    let dir = tu_dir_with(&[]);
    write(dir.path(), "OTHER_A.txt", "1, 2\n");
    let err = load_tu_dir(dir.path()).unwrap_err().to_string();
    assert!(err.contains("DS, OTHER"), "{err}");
}

const GIN_TEXT: &str = "5\n3 1\n0 2 1 2\n1 2 0 2\n0 2 0 1\n\n2 -4\n1 1 1\n1 1 0\n1 7\n2 1 0\n";

#[test]
fn gin_text_reads_to_end_of_file_whatever_the_count_says() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "tiny.txt", GIN_TEXT);
    let ds = load_gin_text(&path).unwrap();
    assert_eq!(ds.name, "tiny");
    assert_eq!(ds.len(), 3, "the header claims 5 graphs but the file holds 3");
    assert_eq!(ds.class_labels, vec![-4, 1, 7]);
    assert_eq!(ds.graphs[0].edges, vec![(0, 1), (0, 2), (1, 2)]);
    assert_eq!(ds.graphs[0].node_labels, Some(vec![0, 1, 0]));
    assert_eq!(ds.graphs[0].label, 1);
    assert_eq!(ds.graphs[1].edges, vec![(0, 1)]);
    assert_eq!(ds.graphs[1].label, 0);
    // A self-loop is dropped.
    assert!(ds.graphs[2].edges.is_empty());
    assert!(ds.graphs[0].node_attributes.is_none());

    let under = write(dir.path(), "under.txt", &GIN_TEXT.replacen('5', "1", 1));
    assert_eq!(load_gin_text(&under).unwrap().len(), 3);
}

#[test]
fn gin_text_keeps_trailing_node_attributes() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "attr.txt", "1\n2 0\n0 1 1 0.5 1.5\n3 1 0 2.5 3.5\n");
    let g = &load_gin_text(&path).unwrap().graphs[0];
    assert_eq!(g.node_attributes, Some(vec![0.5, 1.5, 2.5, 3.5]));
    assert_eq!(g.node_labels, Some(vec![0, 3]));
}

#[test]
fn gin_text_malformed_lines_are_reported_with_file_and_line() {
    let cases: &[(&str, &str, &str)] = &[
        ("1\n3 0\n0 1 1\n0 0\n", "g.txt:5:", "file ends after 2 of the 3 node lines"),
        ("1\n2 0\n0 1 2\n0 0\n", "g.txt:3:", "neighbour index 2 out of range"),
        ("1\n2 0\n0 3 1\n0 0\n", "g.txt:3:", "announces 3 neighbours"),
        ("1\n2 zero\n", "g.txt:2:", "graph label must be an integer"),
        ("1\n2 0 9\n", "g.txt:2:", "graph header"),
        ("1\n2 0\n0\n", "g.txt:3:", "found 1 values"),
        ("1\n2 0\n\n", "g.txt:3:", "found 0 values"),
        ("1\n2 0\n0 1 x\n0 0\n", "g.txt:3:", "neighbour index must be"),
        ("1\n2 0\n-1 0\n0 0\n", "g.txt:3:", "node tag must be a non-negative integer"),
        ("1\n2 0\n0 0 1.0\n0 0\n", "g.txt:4:", "0 attribute values"),
        ("1\n2 0\n0 0 nan\n0 0 1\n", "g.txt:3:", "finite"),
        ("2 0\n", "g.txt:1:", "number of graphs"),
        ("x\n", "g.txt:1:", "graph count"),
    ];
    let dir = tempfile::tempdir().unwrap();
    for (content, location, words) in cases {
        let path = write(dir.path(), "g.txt", content);
        let err = load_gin_text(&path).unwrap_err().to_string();
        assert_names(&err, location, words);
    }
    for content in ["", "\n\n", "3\n"] {
        let path = write(dir.path(), "g.txt", content);
        let err = load_gin_text(&path).unwrap_err().to_string();
        assert_names(&err, "g.txt", "empty");
    }
}

const JSON_DOC: &str = r#"{"format": "gcleaner.graphs/v1", "name": "toy", "class_labels": [1, -1],
"graphs": [
 {"num_nodes": 3, "edges": [[0, 1], [1, 0], [2, 1], [2, 2]], "label": -1,
  "node_labels": [0, 2, 1], "node_attributes": [[0.1, 0.2], [0, 0], [1, 1e3]]},
 {"num_nodes": 2, "edges": [], "label": 1, "node_labels": [0, 0], "node_attributes": [[1, 2], [3, 4]]}
]}"#;

#[test]
fn json_object_loads_with_its_class_order() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "toy.json", JSON_DOC);
    let ds = load_json_dataset(&path).unwrap();
    assert_eq!(ds.name, "toy");
    assert_eq!(ds.class_labels, vec![1, -1]);
    assert_eq!(ds.graphs[0].label, 1);
    assert_eq!(ds.graphs[1].label, 0);
    assert_eq!(ds.graphs[0].edges, vec![(0, 1), (1, 2)]);
    assert_eq!(ds.graphs[0].node_attributes, Some(vec![0.1, 0.2, 0.0, 0.0, 1.0, 1000.0]));
    assert_eq!(ds.graphs[1].node_labels, Some(vec![0, 0]));
}

#[test]
fn json_bare_list_infers_counts_and_sorts_labels() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "list.json",
        r#"[{"edges": [[0, 1]], "label": 5, "node_labels": [1, 1]},
            {"num_nodes": 1, "label": 2},
            {"node_attributes": [[1.5], [2.5], [3.5]], "edges": [[2, 0]], "label": 5}]"#,
    );
    let ds = load_json_dataset(&path).unwrap();
    assert_eq!(ds.name, "list");
    assert_eq!(ds.class_labels, vec![2, 5]);
    assert_eq!(ds.graphs.iter().map(|g| g.num_nodes).collect::<Vec<_>>(), vec![2, 1, 3]);
    assert_eq!(ds.graphs.iter().map(|g| g.label).collect::<Vec<_>>(), vec![1, 0, 1]);
    assert_eq!(ds.graphs[2].edges, vec![(0, 2)]);
}

#[test]
fn json_errors_name_the_file_and_the_graph_line() {
    let graph_at_line_3 = |graph: &str| format!("{{\"graphs\": [\n{{\"num_nodes\": 1, \"label\": 0}},\n{graph}\n]}}");
    let cases: Vec<(String, &str, &str)> = vec![
        (
            graph_at_line_3(r#"{"num_nodes": 2, "edges": [[0, 2]], "label": 1}"#),
            "d.json:3:",
            "graph 1: edge 0 [0, 2] names a node outside 0..2",
        ),
        (graph_at_line_3(r#"{"num_nodes": 2, "label": 1, "colour": 3}"#), "d.json:3:", "unknown field `colour`"),
        (graph_at_line_3(r#"{"num_nodes": 2}"#), "d.json:3:", "missing field `label`"),
        (graph_at_line_3(r#"{"label": 1}"#), "d.json:3:", "num_nodes is missing"),
        (
            graph_at_line_3(r#"{"num_nodes": 3, "label": 1, "node_labels": [0, 1]}"#),
            "d.json:3:",
            "node_labels has 2 entries but the graph has 3 nodes",
        ),
        (graph_at_line_3(r#"{"num_nodes": 2, "label": 1, "node_attributes": [[1, 2], [3]]}"#), "d.json:3:", "row 1 has 1 values"),
        (graph_at_line_3(r#"{"num_nodes": 1, "label": 1, "node_attributes": [[1e39]]}"#), "d.json:3:", "too large for f32"),
        (graph_at_line_3(r#"{"num_nodes": 1, "label": 1, "edges": [[0, -1]]}"#), "d.json:3:", "graph 1"),
        (graph_at_line_3(r#"{"num_nodes": 99999999999, "label": 1}"#), "d.json:3:", "limit"),
        ("{\"graphs\": [\n{\"num_nodes\": 1,\n \"label\": 0,,}]}".into(), "d.json:3:", "key must be a string"),
        (
            graph_at_line_3("{\"num_nodes\": 1,\n\"label\": \"one\"}"),
            "d.json:4:",
            "graph 1: invalid type: string \"one\", expected i64",
        ),
        ("{\"graphs\": [\n{\"num_nodes\": 1, \"label\": 0}\n".into(), "d.json:", "EOF"),
        (
            "{\"class_labels\": [0],\n\"graphs\": [\n{\"num_nodes\": 1, \"label\": 3}]}".into(),
            "d.json:3:",
            "label 3 is not one of class_labels [0]",
        ),
        ("{\"class_labels\": [0, 0], \"graphs\": [{\"num_nodes\": 1, \"label\": 0}]}".into(), "d.json", "lists 0 twice"),
        ("{\"format\": \"other/v9\", \"graphs\": [{\"num_nodes\": 1, \"label\": 0}]}".into(), "d.json", "unsupported format"),
        ("{\"graphs\": []}".into(), "d.json", "empty"),
        ("[]".into(), "d.json", "empty"),
        ("\"graphs\"".into(), "d.json:1:", "expected a JSON object"),
    ];
    let dir = tempfile::tempdir().unwrap();
    for (content, location, words) in &cases {
        let path = write(dir.path(), "d.json", content);
        let err = load_json_dataset(&path).unwrap_err().to_string();
        assert_names(&err, location, words);
        if words.starts_with("graph ") {
            // Positions inside a graph's text would mislead; only the file line is given.
            assert!(!err.contains("column"), "{err}");
        }
    }
}

fn small_dataset() -> Dataset {
    let graphs = vec![
        Graph {
            num_nodes: 3,
            edges: vec![(0, 1), (1, 2)],
            node_labels: Some(vec![4, 0, 1]),
            node_attributes: Some(vec![0.1, -2.5e-7, 3.0, 1.0 / 3.0, f32::MAX, f32::MIN_POSITIVE]),
            label: 0,
        },
        Graph { num_nodes: 1, edges: vec![], node_labels: Some(vec![2]), node_attributes: Some(vec![7.0, 8.0]), label: 1 },
    ];
    Dataset { name: "small \"quoted\"".into(), graphs, class_labels: vec![3, -3] }
}

#[test]
fn json_writer_round_trips_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.json");
    let ds = small_dataset();
    write_json_dataset(&ds, &path).unwrap();
    assert_eq!(load_json_dataset(&path).unwrap(), ds);
    assert_eq!(load_dataset(&path).unwrap(), ds);

    let tu = load_tu_dir(tu_dir_with(&[]).path()).unwrap();
    write_json_dataset(&tu, &path).unwrap();
    assert_eq!(load_json_dataset(&path).unwrap(), tu);

    let mut broken = small_dataset();
    broken.graphs[0].label = 5;
    assert!(write_json_dataset(&broken, &path).is_err());
    let missing_dir = dir.path().join("no/such/dir/out.json");
    let err = write_json_dataset(&ds, &missing_dir).unwrap_err().to_string();
    assert!(err.contains("out.json"), "{err}");
}

#[test]
fn load_dataset_detects_each_format() {
    let root = tempfile::tempdir().unwrap();
    let tu = tu_dir_with(&[]);
    let from_tu = load_dataset(tu.path()).unwrap();
    assert_eq!(from_tu.len(), 2);
    // The *_A.txt file itself stands for its folder.
    assert_eq!(load_dataset(&tu.path().join("DS_A.txt")).unwrap(), from_tu);

    let gin = write(root.path(), "gin/bitcoinish.txt", GIN_TEXT);
    assert_eq!(load_dataset(&gin).unwrap().len(), 3);
    // A folder holding one dataset file (plus documentation) loads that file.
    write(root.path(), "gin/README.txt", "not a dataset");
    assert_eq!(load_dataset(&root.path().join("gin")).unwrap().name, "bitcoinish");

    let json = write(root.path(), "json/data", &format!("\u{feff}{JSON_DOC}"));
    assert_eq!(load_dataset(&json).unwrap().name, "toy", "JSON is recognised by content");

    // A folder holding a TU folder one level down.
    let nested = root.path().join("nested");
    for (name, content) in tu_files() {
        write(&nested, &format!("inner/{name}"), &content);
    }
    assert_eq!(load_dataset(&nested).unwrap(), from_tu);

    write(root.path(), "two/a.json", JSON_DOC);
    write(root.path(), "two/b.txt", GIN_TEXT);
    let err = load_dataset(&root.path().join("two")).unwrap_err().to_string();
    assert!(err.contains("several possible datasets") && err.contains("a.json"), "{err}");

    std::fs::create_dir_all(root.path().join("empty")).unwrap();
    let err = load_dataset(&root.path().join("empty")).unwrap_err().to_string();
    assert!(err.contains("no dataset found"), "{err}");

    let err = load_dataset(Path::new("/dev/null")).unwrap_err().to_string();
    assert!(err.contains("not a regular file"), "{err}");

    let err = load_dataset(&root.path().join("absent")).unwrap_err().to_string();
    assert!(err.contains("absent") && err.contains("not found"), "{err}");
}
