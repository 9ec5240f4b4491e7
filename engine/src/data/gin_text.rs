//! The GIN text format (from the "How Powerful are Graph Neural Networks?" code release):
//! line 1 the number of graphs; per graph a line `n label`, then n lines
//! `tag k nb_1 .. nb_k [attr_1 .. attr_d]` with 0-based neighbour indices within the graph.
//!
//! The graph count on line 1 is not trusted: graphs are read until the end of the file. Tags
//! become [`Graph::node_labels`], but no default feature uses them (in the published
//! bitcoin.txt every tag equals the graph's label, which would leak the answer).

use std::path::Path;

use super::graph::{Dataset, Graph};
use super::limits::{MAX_NODES_PER_GRAPH, MAX_TOTAL_NODES};
use super::text::{parse_field, parse_finite, LineReader};
use crate::{Error, Result};

pub fn load_gin_text(path: &Path) -> Result<Dataset> {
    let mut reader = LineReader::open(path)?;
    let err = |no: usize, m: String| Error::parse(path, no, m);

    let mut saw_count = false;
    let mut graphs = Vec::new();
    let mut labels = Vec::new();
    let mut total_nodes = 0usize;
    // Attribute width, fixed by the first node line; `Some(0)` means no attributes.
    let mut attr_width: Option<usize> = None;

    while let Some((header_no, header)) = reader.next_line()? {
        if header.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = header.split_whitespace().collect();
        if !saw_count {
            // The declared count is informational only (see the module comment).
            if fields.len() != 1 {
                return Err(err(
                    header_no,
                    format!("expected the number of graphs alone on the first line, found {} values", fields.len()),
                ));
            }
            parse_field::<u64>(fields[0], "graph count").map_err(|m| err(header_no, m))?;
            saw_count = true;
            continue;
        }
        let [n_field, label_field] = fields.as_slice() else {
            return Err(err(header_no, format!("expected a graph header `num_nodes label`, found {} values", fields.len())));
        };
        let n: usize = parse_field(n_field, "node count").map_err(|m| err(header_no, m))?;
        let label: i64 = parse_field(label_field, "graph label").map_err(|m| err(header_no, m))?;
        if n > MAX_NODES_PER_GRAPH {
            return Err(err(header_no, format!("graph has {n} nodes, over the {MAX_NODES_PER_GRAPH} limit")));
        }
        total_nodes += n;
        if total_nodes > MAX_TOTAL_NODES {
            return Err(err(header_no, format!("the dataset has more than {MAX_TOTAL_NODES} nodes")));
        }

        let mut edges = Vec::new();
        let mut tags = Vec::with_capacity(n.min(1 << 16));
        let mut attributes = Vec::new();
        for node in 0..n {
            let Some((no, text)) = reader.next_line()? else {
                let eof_line = reader.line_no() + 1;
                return Err(err(
                    eof_line,
                    format!("file ends after {node} of the {n} node lines of the graph whose header is line {header_no}"),
                ));
            };
            let values: Vec<&str> = text.split_whitespace().collect();
            if values.len() < 2 {
                return Err(err(
                    no,
                    format!(
                        "expected a node line `tag k neighbour_1 .. neighbour_k` (node {node} of \
                         the graph at line {header_no}), found {} values",
                        values.len()
                    ),
                ));
            }
            tags.push(parse_field::<u32>(values[0], "node tag").map_err(|m| err(no, m))?);
            let k: usize = parse_field(values[1], "neighbour count").map_err(|m| err(no, m))?;
            let rest = &values[2..];
            if rest.len() < k {
                return Err(err(no, format!("node line announces {k} neighbours but lists only {}", rest.len())));
            }
            for field in &rest[..k] {
                let nb: usize = parse_field(field, "neighbour index").map_err(|m| err(no, m))?;
                if nb >= n {
                    return Err(err(
                        no,
                        format!("neighbour index {nb} out of range 0..{n} (indices are 0-based within the graph)"),
                    ));
                }
                edges.push((node as u32, nb as u32));
            }
            let extra = &rest[k..];
            let width = *attr_width.get_or_insert(extra.len());
            if extra.len() != width {
                return Err(err(
                    no,
                    format!(
                        "node line has {} attribute values after its neighbours, but earlier node lines have {width}",
                        extra.len()
                    ),
                ));
            }
            for field in extra {
                attributes.push(parse_finite(field, "node attribute").map_err(|m| err(no, m))?);
            }
        }
        let mut graph = Graph {
            num_nodes: n,
            edges,
            node_labels: Some(tags),
            node_attributes: (attr_width.unwrap_or(0) > 0).then_some(attributes),
            label: 0,
        };
        graph.canonicalize_edges();
        graphs.push(graph);
        labels.push(label);
    }

    if graphs.is_empty() {
        return Err(Error::file(path, "no graphs: the dataset is empty"));
    }
    let name = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "dataset".to_string());
    Dataset::from_original_labels(name, graphs, &labels)
}
