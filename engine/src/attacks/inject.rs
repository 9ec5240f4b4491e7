//! Trigger injection, the one operation every subgraph attack shares: the chosen nodes lose the
//! edges among them and take the trigger's edges instead; edges to the rest of the graph stay.

use super::trigger::Trigger;
use crate::data::Graph;
use crate::{Error, Result};

/// `graph` with `trigger` planted at `positions` (trigger node `i` becomes node `positions[i]`).
///
/// `positions` must hold `trigger.num_nodes` distinct indices below
/// `max(graph.num_nodes, trigger.num_nodes)`. When the graph is smaller than the trigger,
/// nodes `graph.num_nodes..trigger.num_nodes` are appended and every one of them must appear
/// in `positions` (it is the only way the count can add up), so the result always has
/// `max(graph.num_nodes, trigger.num_nodes)` nodes.
///
/// Appended nodes take the graph's most common node label (ties to the smallest) and the mean of
/// its node attribute rows: both are values the graph already exhibits, neither needs a random
/// draw (so injection stays a pure function of its inputs), and neither adds a feature signal of
/// its own next to the trigger's structure. A graph with no nodes has no label or attribute
/// row to copy: its new nodes get label 0 and no attributes.
/// Structural node features (one-hot degree) are computed from the edges at batching time, so
/// they follow the injected structure automatically.
///
/// The graph's class label is kept: relabelling is the poisoner's decision, not injection's.
pub fn inject(graph: &Graph, trigger: &Trigger, positions: &[usize]) -> Result<Graph> {
    let num_nodes = graph.num_nodes.max(trigger.num_nodes);
    check_positions(graph, trigger, positions, num_nodes)?;

    let mut chosen = vec![false; num_nodes];
    for &p in positions {
        chosen[p] = true;
    }
    let mut edges: Vec<(u32, u32)> =
        graph.edges.iter().copied().filter(|&(u, v)| !(chosen[u as usize] && chosen[v as usize])).collect();
    for &(a, b) in &trigger.edges {
        let (u, v) = (positions[a as usize] as u32, positions[b as usize] as u32);
        edges.push((u.min(v), u.max(v)));
    }

    let added = num_nodes - graph.num_nodes;
    let node_labels = graph.node_labels.as_ref().map(|labels| {
        let fill = most_common_label(labels);
        let mut labels = labels.clone();
        labels.extend(std::iter::repeat_n(fill, added));
        labels
    });
    let node_attributes = graph.node_attributes.as_ref().map(|attributes| {
        let fill = mean_row(attributes, graph.num_nodes);
        let mut attributes = attributes.clone();
        for _ in 0..added {
            attributes.extend_from_slice(&fill);
        }
        attributes
    });

    let mut injected = Graph { num_nodes, edges, node_labels, node_attributes, label: graph.label };
    injected.canonicalize_edges();
    Ok(injected)
}

fn check_positions(graph: &Graph, trigger: &Trigger, positions: &[usize], num_nodes: usize) -> Result<()> {
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
    if let Some(&(u, v)) =
        trigger.edges.iter().find(|&&(u, v)| u == v || u as usize >= trigger.num_nodes || v as usize >= trigger.num_nodes)
    {
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
