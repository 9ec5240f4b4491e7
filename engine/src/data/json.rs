//! The gcleaner JSON dataset format, `gcleaner.graphs/v1` (documented in docs/data-formats.md):
//!
//! ```json
//! {"format": "gcleaner.graphs/v1", "name": "MUTAG", "class_labels": [-1, 1],
//!  "graphs": [{"num_nodes": 3, "edges": [[0, 1], [1, 2]], "label": 1,
//!              "node_labels": [0, 2, 1], "node_attributes": [[0.1, 0.2], [0, 0], [1, 1]]}]}
//! ```
//!
//! `label` is the original label; `class_labels` fixes the class order (sorted unique labels
//! when absent). A bare top-level list of graph objects is accepted too.

use std::io::{BufWriter, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::graph::{Dataset, Graph};
use super::limits::{MAX_NODES_PER_GRAPH, MAX_TOTAL_NODES};
use super::text::read_to_string_bounded;
use crate::{Error, Result};

pub const GRAPHS_FORMAT: &str = "gcleaner.graphs/v1";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DocumentIn<'a> {
    #[serde(default)]
    format: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    class_labels: Option<Vec<i64>>,
    #[serde(borrow)]
    graphs: Vec<&'a RawValue>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GraphIn {
    #[serde(default)]
    num_nodes: Option<u64>,
    #[serde(default)]
    edges: Vec<[u64; 2]>,
    label: i64,
    #[serde(default)]
    node_labels: Option<Vec<u32>>,
    #[serde(default)]
    node_attributes: Option<Vec<Vec<f64>>>,
}

#[derive(Serialize)]
struct GraphOut<'a> {
    num_nodes: usize,
    edges: &'a [(u32, u32)],
    label: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    node_labels: Option<&'a [u32]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    node_attributes: Option<Vec<&'a [f32]>>,
}

/// Line numbers of byte offsets into a text, for offsets visited in increasing order.
struct LineCounter<'a> {
    text: &'a str,
    offset: usize,
    line: usize,
}

impl LineCounter<'_> {
    fn line_of(&mut self, offset: usize) -> usize {
        let offset = offset.clamp(self.offset, self.text.len());
        self.line += self.text.as_bytes()[self.offset..offset].iter().filter(|&&b| b == b'\n').count();
        self.offset = offset;
        self.line
    }
}

pub fn load_json_dataset(path: &Path) -> Result<Dataset> {
    let text = read_to_string_bounded(path)?;
    let json_err = |e: serde_json::Error| Error::parse(path, e.line().max(1), e.to_string());

    let first = text.trim_start().chars().next();
    let document: DocumentIn = match first {
        Some('{') => serde_json::from_str(&text).map_err(json_err)?,
        Some('[') => {
            DocumentIn { format: None, name: None, class_labels: None, graphs: serde_json::from_str(&text).map_err(json_err)? }
        }
        _ => {
            return Err(Error::parse(
                path,
                1,
                "expected a JSON object {\"format\": \"gcleaner.graphs/v1\", \"graphs\": [...]} or a list of graphs",
            ))
        }
    };
    if let Some(format) = &document.format {
        if format != GRAPHS_FORMAT {
            return Err(Error::file(path, format!("unsupported format {format:?}; expected {GRAPHS_FORMAT:?}")));
        }
    }
    if let Some(class_labels) = &document.class_labels {
        if let Some((i, l)) = class_labels.iter().enumerate().find(|(i, l)| class_labels[..*i].contains(l)) {
            return Err(Error::file(path, format!("class_labels lists {l} twice (position {i})")));
        }
    }
    if document.graphs.is_empty() {
        return Err(Error::file(path, "no graphs: the dataset is empty"));
    }

    let mut lines = LineCounter { text: &text, offset: 0, line: 1 };
    let mut graphs = Vec::with_capacity(document.graphs.len());
    let mut labels = Vec::with_capacity(document.graphs.len());
    let mut attr_width: Option<usize> = None;
    let mut total_nodes = 0usize;
    for (index, raw) in document.graphs.iter().enumerate() {
        // `raw` borrows from `text`, so its address gives its position in the file.
        let start = lines.line_of((raw.get().as_ptr() as usize).saturating_sub(text.as_ptr() as usize));
        let at = |message: String| Error::parse(path, start, format!("graph {index}: {message}"));
        let g: GraphIn = serde_json::from_str(raw.get()).map_err(|e| {
            // serde's own position is relative to the graph's text: drop it, keep the message.
            let message = e.to_string();
            let suffix = format!(" at line {} column {}", e.line(), e.column());
            let message = message.strip_suffix(&suffix).unwrap_or(&message);
            Error::parse(path, start + e.line().max(1) - 1, format!("graph {index}: {message}"))
        })?;
        let graph = convert_graph(&g, &mut attr_width).map_err(at)?;
        total_nodes += graph.num_nodes;
        if total_nodes > MAX_TOTAL_NODES {
            return Err(at(format!("the dataset has more than {MAX_TOTAL_NODES} nodes")));
        }
        if let Some(class_labels) = &document.class_labels {
            if !class_labels.contains(&g.label) {
                return Err(at(format!("label {} is not one of class_labels {class_labels:?}", g.label)));
            }
        }
        labels.push(g.label);
        graphs.push(graph);
    }

    let name = document
        .name
        .clone()
        .unwrap_or_else(|| path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "dataset".into()));
    let dataset = Dataset::from_original_labels(name, graphs, &labels)?;
    match &document.class_labels {
        Some(class_labels) => dataset.with_class_labels(class_labels),
        None => Ok(dataset),
    }
}

fn convert_graph(g: &GraphIn, attr_width: &mut Option<usize>) -> Result<Graph, String> {
    let implied = g
        .node_labels
        .as_ref()
        .map(|l| ("node_labels", l.len() as u64))
        .into_iter()
        .chain(g.node_attributes.as_ref().map(|a| ("node_attributes", a.len() as u64)));
    let mut num_nodes = g.num_nodes;
    for (field, count) in implied {
        match num_nodes {
            None => num_nodes = Some(count),
            Some(n) if n != count => {
                return Err(format!("{field} has {count} entries but the graph has {n} nodes"));
            }
            Some(_) => {}
        }
    }
    let n = num_nodes.ok_or("num_nodes is missing (and no node_labels or node_attributes give the count)")?;
    if n > MAX_NODES_PER_GRAPH as u64 {
        return Err(format!("{n} nodes is over the {MAX_NODES_PER_GRAPH} limit"));
    }
    let n = n as usize;

    let mut edges = Vec::with_capacity(g.edges.len());
    for (i, &[u, v]) in g.edges.iter().enumerate() {
        if u >= n as u64 || v >= n as u64 {
            return Err(format!("edge {i} [{u}, {v}] names a node outside 0..{n}"));
        }
        edges.push((u as u32, v as u32));
    }

    let node_attributes = match &g.node_attributes {
        None => None,
        Some(rows) => {
            let mut values = Vec::new();
            for (i, row) in rows.iter().enumerate() {
                let width = *attr_width.get_or_insert(row.len());
                if row.len() != width {
                    return Err(format!("node_attributes row {i} has {} values, but earlier rows have {width}", row.len()));
                }
                for &x in row {
                    let x = x as f32;
                    if !x.is_finite() {
                        return Err(format!("node_attributes row {i} holds a value too large for f32"));
                    }
                    values.push(x);
                }
            }
            Some(values)
        }
    };

    let mut graph = Graph { num_nodes: n, edges, node_labels: g.node_labels.clone(), node_attributes, label: 0 };
    graph.canonicalize_edges();
    Ok(graph)
}

/// Writes `ds` in the `gcleaner.graphs/v1` format, one graph per line, with original labels
/// and `class_labels`, so that [`load_json_dataset`] gives back an equal dataset.
pub fn write_json_dataset(ds: &Dataset, path: &Path) -> Result<()> {
    for (i, g) in ds.graphs.iter().enumerate() {
        g.validate().map_err(|e| Error::invalid(format!("graph {i}: {e}")))?;
        if g.label >= ds.class_labels.len() {
            return Err(Error::invalid(format!(
                "graph {i} has class {} but the dataset has {} classes",
                g.label,
                ds.class_labels.len()
            )));
        }
    }
    let file = std::fs::File::create(path).map_err(|e| Error::io(path, e))?;
    let mut out = BufWriter::new(file);
    let io = |e: std::io::Error| Error::io(path, e);
    let ser = |e: serde_json::Error| Error::file(path, e.to_string());

    write!(out, "{{\"format\":{},\"name\":", serde_json::to_string(GRAPHS_FORMAT).map_err(ser)?).map_err(io)?;
    serde_json::to_writer(&mut out, &ds.name).map_err(ser)?;
    write!(out, ",\"class_labels\":").map_err(io)?;
    serde_json::to_writer(&mut out, &ds.class_labels).map_err(ser)?;
    write!(out, ",\"graphs\":[").map_err(io)?;
    for (i, g) in ds.graphs.iter().enumerate() {
        let dim = g.attr_dim();
        let graph = GraphOut {
            num_nodes: g.num_nodes,
            edges: &g.edges,
            label: ds.class_labels[g.label],
            node_labels: g.node_labels.as_deref(),
            node_attributes: g.node_attributes.as_ref().map(|a| {
                if dim == 0 {
                    vec![&a[..0]; g.num_nodes]
                } else {
                    a.chunks(dim).collect()
                }
            }),
        };
        out.write_all(if i == 0 { b"\n" } else { b",\n" }).map_err(io)?;
        serde_json::to_writer(&mut out, &graph).map_err(ser)?;
    }
    out.write_all(b"\n]}\n").map_err(io)?;
    out.flush().map_err(io)?;
    Ok(())
}
