//! TU-format dataset folders (the TUDataset collection): `DS_A.txt`, `DS_graph_indicator.txt`
//! and `DS_graph_labels.txt`, optionally `DS_node_labels.txt` and `DS_node_attributes.txt`.
//! Node ids are 1-based across the whole dataset; edge labels and attributes are not used.

use std::path::{Path, PathBuf};

use super::graph::{Dataset, Graph};
use super::limits::{MAX_GRAPHS, MAX_NODES_PER_GRAPH, MAX_TOTAL_NODES};
use super::text::{parse_field, parse_finite, split_fields, LineReader};
use crate::{Error, Result};

const A_SUFFIX: &str = "_A.txt";

/// The dataset prefix of a TU folder (`MUTAG` for `MUTAG/MUTAG_A.txt`), `None` when the folder
/// holds no `*_A.txt`, an error when it holds several.
pub fn tu_prefix(dir: &Path) -> Result<Option<String>> {
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    let mut prefixes = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let name = entry.file_name();
        if let Some(prefix) = name.to_str().and_then(|n| n.strip_suffix(A_SUFFIX)) {
            if !prefix.is_empty() && !prefix.starts_with('.') {
                prefixes.push(prefix.to_string());
            }
        }
    }
    prefixes.sort();
    match prefixes.len() {
        0 => Ok(None),
        1 => Ok(prefixes.pop()),
        _ => Err(Error::file(dir, format!("holds several TU datasets ({}); keep one per folder", prefixes.join(", ")))),
    }
}

/// Loads the TU dataset in `dir`.
pub fn load_tu_dir(dir: &Path) -> Result<Dataset> {
    let prefix = tu_prefix(dir)?.ok_or_else(|| Error::file(dir, "no *_A.txt file here, so this is not a TU dataset folder"))?;
    let part = |suffix: &str| dir.join(format!("{prefix}_{suffix}.txt"));

    let nodes = read_graph_indicator(&required(part("graph_indicator"), &prefix)?)?;
    let num_graphs = nodes.graph_start.len();
    let labels = read_graph_labels(&required(part("graph_labels"), &prefix)?, num_graphs)?;

    let node_labels_path = part("node_labels");
    let node_labels = if node_labels_path.exists() { Some(read_node_labels(&node_labels_path, nodes.count())?) } else { None };
    let attributes_path = part("node_attributes");
    let attributes = if attributes_path.exists() { Some(read_node_attributes(&attributes_path, nodes.count())?) } else { None };

    let mut edges = read_edges(&required(part("A"), &prefix)?, &nodes)?;

    let mut graphs = Vec::with_capacity(num_graphs);
    for (g, graph_edges) in edges.iter_mut().enumerate() {
        let (start, end) = nodes.range(g);
        let mut graph = Graph {
            num_nodes: end - start,
            edges: std::mem::take(graph_edges),
            node_labels: node_labels.as_ref().map(|l| l[start..end].to_vec()),
            node_attributes: attributes.as_ref().map(|(values, dim)| values[start * dim..end * dim].to_vec()),
            label: 0,
        };
        graph.canonicalize_edges();
        graphs.push(graph);
    }
    Dataset::from_original_labels(prefix, graphs, &labels)
}

fn required(path: PathBuf, prefix: &str) -> Result<PathBuf> {
    if path.is_file() {
        Ok(path)
    } else {
        Err(Error::file(
            &path,
            format!(
                "file not found; a TU dataset needs {prefix}_A.txt, {prefix}_graph_indicator.txt \
                 and {prefix}_graph_labels.txt"
            ),
        ))
    }
}

/// Which graph each node belongs to. Nodes of one graph are contiguous, so a graph is the node
/// range `graph_start[g]..graph_start[g + 1]` (empty for a graph id the indicator skips).
struct NodeIndex {
    node_graph: Vec<u32>,
    graph_start: Vec<usize>,
}

impl NodeIndex {
    fn count(&self) -> usize {
        self.node_graph.len()
    }

    fn range(&self, g: usize) -> (usize, usize) {
        let end = self.graph_start.get(g + 1).copied().unwrap_or(self.node_graph.len());
        (self.graph_start[g], end)
    }
}

fn single_field<'a>(path: &Path, no: usize, text: &'a str, what: &str) -> Result<&'a str> {
    let fields = split_fields(text).map_err(|m| Error::parse(path, no, m))?;
    match fields.as_slice() {
        [one] => Ok(one),
        _ => Err(Error::parse(path, no, format!("expected 1 column ({what}), found {}", fields.len()))),
    }
}

fn read_graph_indicator(path: &Path) -> Result<NodeIndex> {
    let mut reader = LineReader::open(path)?;
    let mut index = NodeIndex { node_graph: Vec::new(), graph_start: Vec::new() };
    let mut previous: u64 = 0;
    while let Some((no, text)) = reader.next_record()? {
        let field = single_field(path, no, text, "the graph id of this node")?;
        let id: u64 = parse_field(field, "graph id").map_err(|m| Error::parse(path, no, m))?;
        if id == 0 {
            return Err(Error::parse(path, no, "graph ids start at 1, found 0"));
        }
        if id < previous {
            return Err(Error::parse(
                path,
                no,
                format!(
                    "graph id {id} after {previous}: the nodes of each graph must be contiguous \
                     and graphs in increasing order"
                ),
            ));
        }
        if id > MAX_GRAPHS as u64 {
            return Err(Error::parse(path, no, format!("graph id {id} is over the {MAX_GRAPHS} graphs limit")));
        }
        // Skipped ids are graphs without nodes (TU Fingerprint has 651 of them): each gets an
        // empty node range starting here.
        while previous < id {
            index.graph_start.push(index.node_graph.len());
            previous += 1;
        }
        let graph_size = index.node_graph.len() - index.graph_start[index.graph_start.len() - 1];
        if graph_size >= MAX_NODES_PER_GRAPH {
            return Err(Error::parse(path, no, format!("graph {id} has more than {MAX_NODES_PER_GRAPH} nodes")));
        }
        if index.node_graph.len() >= MAX_TOTAL_NODES {
            return Err(Error::parse(path, no, format!("the dataset has more than {MAX_TOTAL_NODES} nodes")));
        }
        // `previous` is at most MAX_GRAPHS here, far below u32::MAX.
        index.node_graph.push((previous - 1) as u32);
    }
    if index.node_graph.is_empty() {
        return Err(Error::file(path, "no nodes: the dataset is empty"));
    }
    Ok(index)
}

/// A per-item file (one line per node or graph) with more lines than items.
fn too_many(path: &Path, no: usize, expected: usize, what: &str, reference: &str) -> Error {
    Error::parse(path, no, format!("more {what} than expected: {reference} implies {expected}"))
}

/// A per-item file that ends before every item has its line.
fn too_few(path: &Path, reader: &LineReader, got: usize, expected: usize, what: &str, reference: &str) -> Error {
    Error::parse(path, reader.line_no() + 1, format!("file ends after {got} {what}, but {reference} implies {expected}"))
}

fn read_graph_labels(path: &Path, num_graphs: usize) -> Result<Vec<i64>> {
    let reference = "graph_indicator";
    let mut reader = LineReader::open(path)?;
    let mut labels = Vec::with_capacity(num_graphs);
    while let Some((no, text)) = reader.next_record()? {
        if labels.len() == num_graphs {
            return Err(too_many(path, no, num_graphs, "graph labels", reference));
        }
        let field = single_field(path, no, text, "the label of this graph")?;
        labels.push(parse_field::<i64>(field, "graph label").map_err(|m| Error::parse(path, no, m))?);
    }
    if labels.len() < num_graphs {
        return Err(too_few(path, &reader, labels.len(), num_graphs, "graph labels", reference));
    }
    Ok(labels)
}

fn read_node_labels(path: &Path, num_nodes: usize) -> Result<Vec<u32>> {
    let reference = "graph_indicator";
    let mut reader = LineReader::open(path)?;
    let mut labels = Vec::with_capacity(num_nodes);
    while let Some((no, text)) = reader.next_record()? {
        if labels.len() == num_nodes {
            return Err(too_many(path, no, num_nodes, "node labels", reference));
        }
        let field = single_field(path, no, text, "the label of this node")?;
        labels.push(parse_field::<u32>(field, "node label").map_err(|m| Error::parse(path, no, m))?);
    }
    if labels.len() < num_nodes {
        return Err(too_few(path, &reader, labels.len(), num_nodes, "node labels", reference));
    }
    Ok(labels)
}

/// Row-major attribute values and the row width.
fn read_node_attributes(path: &Path, num_nodes: usize) -> Result<(Vec<f32>, usize)> {
    let reference = "graph_indicator";
    let mut reader = LineReader::open(path)?;
    let mut values = Vec::new();
    let mut width = 0usize;
    let mut rows = 0usize;
    while let Some((no, text)) = reader.next_record()? {
        if rows == num_nodes {
            return Err(too_many(path, no, num_nodes, "attribute rows", reference));
        }
        let fields = split_fields(text).map_err(|m| Error::parse(path, no, m))?;
        if rows == 0 {
            width = fields.len();
        } else if fields.len() != width {
            return Err(Error::parse(path, no, format!("expected {width} columns like the first line, found {}", fields.len())));
        }
        for field in fields {
            values.push(parse_finite(field, "node attribute").map_err(|m| Error::parse(path, no, m))?);
        }
        rows += 1;
    }
    if rows < num_nodes {
        return Err(too_few(path, &reader, rows, num_nodes, "attribute rows", reference));
    }
    Ok((values, width))
}

/// Edges of every graph in graph-local node ids, not yet canonical.
fn read_edges(path: &Path, nodes: &NodeIndex) -> Result<Vec<Vec<(u32, u32)>>> {
    let mut reader = LineReader::open(path)?;
    let mut edges = vec![Vec::new(); nodes.graph_start.len()];
    let n = nodes.count() as u64;
    while let Some((no, text)) = reader.next_record()? {
        let fields = split_fields(text).map_err(|m| Error::parse(path, no, m))?;
        let [a, b] = fields.as_slice() else {
            return Err(Error::parse(path, no, format!("expected 2 columns (row, col node ids), found {}", fields.len())));
        };
        let mut ends = [0usize; 2];
        for (end, field) in ends.iter_mut().zip([a, b]) {
            let id: u64 = parse_field(field, "node id").map_err(|m| Error::parse(path, no, m))?;
            if id == 0 || id > n {
                return Err(Error::parse(path, no, format!("node id {id} out of range 1..={n} (node ids are 1-based)")));
            }
            *end = (id - 1) as usize;
        }
        let (gu, gv) = (nodes.node_graph[ends[0]], nodes.node_graph[ends[1]]);
        if gu != gv {
            return Err(Error::parse(
                path,
                no,
                format!("edge joins node {} of graph {} and node {} of graph {}", ends[0] + 1, gu + 1, ends[1] + 1, gv + 1),
            ));
        }
        let start = nodes.graph_start[gu as usize];
        // Local ids are below MAX_NODES_PER_GRAPH, so they fit in u32.
        edges[gu as usize].push(((ends[0] - start) as u32, (ends[1] - start) as u32));
    }
    Ok(edges)
}
