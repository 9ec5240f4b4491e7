//! Trigger injection, the one operation every subgraph attack shares: the chosen nodes lose the
//! edges among them and take the trigger's edges instead; edges to the rest of the graph stay.

use super::trigger::Trigger;
use crate::data::Graph;
use crate::{Error, Result};

/// `graph` with `trigger` planted at `positions` (trigger node `i` becomes node `positions[i]`).
///
/// `positions` must hold `trigger.num_nodes` distinct indices below
/// `max(graph.num_nodes, trigger.num_nodes)`. When the graph is smaller than the trigger,
/// nodes `graph.num_nodes..trigger.num_nodes` are appended ([`pad_nodes`]) and every one of them
/// must appear in `positions` (it is the only way the count can add up), so the result always
/// has `max(graph.num_nodes, trigger.num_nodes)` nodes.
///
/// Structural node features (one-hot degree) are computed from the edges at batching time, so
/// they follow the injected structure automatically.
///
/// The graph's class label is kept: relabelling is the poisoner's decision, not injection's.
pub fn inject(graph: &Graph, trigger: &Trigger, positions: &[usize]) -> Result<Graph> {
    let mut injected = pad_nodes(graph, trigger.num_nodes);
    check_positions(graph, trigger, positions, injected.num_nodes)?;

    let mut chosen = vec![false; injected.num_nodes];
    for &p in positions {
        chosen[p] = true;
    }
    injected
        .edges
        .retain(|&(u, v)| !(chosen[u as usize] && chosen[v as usize]));
    for &(a, b) in &trigger.edges {
        let (u, v) = (positions[a as usize] as u32, positions[b as usize] as u32);
        injected.edges.push((u.min(v), u.max(v)));
    }
    injected.canonicalize_edges();
    Ok(injected)
}

/// `graph` grown to `num_nodes` nodes by appending isolated nodes `graph.num_nodes..num_nodes`;
/// an unchanged copy when it already has that many. Edges and the class label are kept.
///
/// Appended nodes take the graph's most common node label (ties to the smallest) and the mean of
/// its node attribute rows: both are values the graph already exhibits, neither needs a random
/// draw (so padding stays a pure function of its inputs), and neither adds a feature signal of
/// its own next to a trigger's structure. A graph with no nodes has no label or attribute row to
/// copy: its new nodes get label 0 and no attributes.
pub fn pad_nodes(graph: &Graph, num_nodes: usize) -> Graph {
    let added = num_nodes.saturating_sub(graph.num_nodes);
    let mut padded = graph.clone();
    if added == 0 {
        return padded;
    }
    if let Some(labels) = padded.node_labels.as_mut() {
        let fill = most_common_label(labels);
        labels.extend(std::iter::repeat_n(fill, added));
    }
    if let Some(attributes) = padded.node_attributes.as_mut() {
        let fill = mean_row(attributes, graph.num_nodes);
        for _ in 0..added {
            attributes.extend_from_slice(&fill);
        }
    }
    padded.num_nodes = num_nodes;
    padded
}

fn check_positions(
    graph: &Graph,
    trigger: &Trigger,
    positions: &[usize],
    num_nodes: usize,
) -> Result<()> {
    if positions.len() != trigger.num_nodes {
        return Err(Error::invalid(format!(
            "a {}-node trigger needs {} positions, got {}",
            trigger.num_nodes,
            trigger.num_nodes,
            positions.len()
        )));
    }
    let mut seen = vec![false; num_nodes];
    for &p in positions {
        if p >= num_nodes {
            return Err(Error::invalid(format!(
                "trigger position {p} is outside a graph of {} nodes (with a {}-node trigger the \
                 injected graph has {num_nodes})",
                graph.num_nodes, trigger.num_nodes
            )));
        }
        if seen[p] {
            return Err(Error::invalid(format!("trigger position {p} is given twice")));
        }
        seen[p] = true;
    }
    if let Some(&(u, v)) = trigger.edges.iter().find(|&&(u, v)| {
        u == v || u as usize >= trigger.num_nodes || v as usize >= trigger.num_nodes
    }) {
        return Err(Error::invalid(format!(
            "trigger edge ({u}, {v}) is not an edge between two of its {} nodes",
            trigger.num_nodes
        )));
    }
    Ok(())
}

fn most_common_label(labels: &[u32]) -> u32 {
    let mut sorted = labels.to_vec();
    sorted.sort_unstable();
    let mut best = (0usize, 0u32);
    let mut i = 0;
    while i < sorted.len() {
        let run = sorted[i..].iter().take_while(|&&l| l == sorted[i]).count();
        if run > best.0 {
            best = (run, sorted[i]);
        }
        i += run;
    }
    best.1
}

fn mean_row(attributes: &[f32], num_nodes: usize) -> Vec<f32> {
    if num_nodes == 0 || attributes.is_empty() {
        return Vec::new();
    }
    let dim = attributes.len() / num_nodes;
    if dim == 0 {
        return Vec::new();
    }
    let mut mean = vec![0.0f64; dim];
    for row in attributes.chunks_exact(dim) {
        for (m, &x) in mean.iter_mut().zip(row) {
            *m += f64::from(x);
        }
    }
    mean.into_iter().map(|m| (m / num_nodes as f64) as f32).collect()
}
