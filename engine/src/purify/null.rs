//! The per-model null: how often the same model moves a graph to the suspected target when the
//! candidate's node set is rewritten with a *natural* pattern instead, a connected piece of the
//! same size cut from another clean graph.
//!
//! Rewriting a node set changes a graph whether or not anything was planted: on graphs of 8-15
//! nodes a 4-node rewrite moves many predictions, and on any graph the rewrite removes whatever
//! edges were there. A candidate is evidence of a backdoor only by its excess over that baseline,
//! measured on the very same placed copies, so the size of the rewrite and the positions cancel.

use rand::seq::SliceRandom;
use rand::Rng as _;
use tch::Tensor;

use super::evidence::EvidenceProbe;
use crate::data::Graph;
use crate::models::GnnModel;
use crate::montage::{num_pairs, slot_pairs};
use crate::rng::Rng;
use crate::Result;

/// A connected piece of `size` nodes of `donor` (grown breadth-first from a random node, jumping
/// to a random unvisited node when a component runs out), as edges between its slots
/// `(i, j)`, `i < j`, slots numbered in the order the nodes were taken.
pub fn natural_patch(donor: &Graph, size: usize, rng: &mut Rng) -> Vec<(usize, usize)> {
    let n = donor.num_nodes;
    if n == 0 || size == 0 {
        return Vec::new();
    }
    let mut neighbours: Vec<Vec<usize>> = vec![Vec::new(); n];
    for &(u, v) in &donor.edges {
        let (u, v) = (u as usize, v as usize);
        if u != v && u < n && v < n {
            neighbours[u].push(v);
            neighbours[v].push(u);
        }
    }
    let mut slot_of: Vec<Option<usize>> = vec![None; n];
    let mut taken: Vec<usize> = Vec::with_capacity(size.min(n));
    let mut frontier: std::collections::VecDeque<usize> = std::collections::VecDeque::new();
    while taken.len() < size.min(n) {
        let node = match frontier.pop_front() {
            Some(v) if slot_of[v].is_none() => v,
            Some(_) => continue,
            None => {
                let unvisited: Vec<usize> = (0..n).filter(|&v| slot_of[v].is_none()).collect();
                unvisited[rng.gen_range(0..unvisited.len())]
            }
        };
        slot_of[node] = Some(taken.len());
        taken.push(node);
        let mut next: Vec<usize> = neighbours[node].iter().copied().filter(|&w| slot_of[w].is_none()).collect();
        next.shuffle(rng);
        frontier.extend(next);
    }
    let mut edges: Vec<(usize, usize)> = donor
        .edges
        .iter()
        .filter_map(|&(u, v)| {
            let (a, b) = (slot_of.get(u as usize).copied().flatten()?, slot_of.get(v as usize).copied().flatten()?);
            (a != b).then(|| (a.min(b), a.max(b)))
        })
        .collect();
    edges.sort_unstable();
    edges.dedup();
    edges
}

/// The pattern's 0/1 vector over slot pairs, in [`slot_pairs`] order.
fn pair_vector(size: usize, edges: &[(usize, usize)]) -> Vec<f32> {
    slot_pairs(size).into_iter().map(|p| if edges.binary_search(&p).is_ok() { 1.0 } else { 0.0 }).collect()
}

/// The natural patches of a per-model null, drawn once per placed copy of a probe so that the
/// very same patches can be measured again on a model that is being changed (unlearning).
///
/// Each patch is cut from a random graph of the sample whose label is the target, other than
/// the copy's own: if graphs of that class carry the pattern themselves (one class of a dataset
/// is the denser one), their pieces move graphs there as much as the candidate does, and the
/// candidate shows no excess. A planted trigger is in no clean graph. With a density weight
/// above 0, pieces filled with random edges (or thinned) to the candidate's edge count are
/// mixed in with that weight: see [`density_association`] for when the null must carry the
/// candidate's density.
pub struct NullPatches {
    target: usize,
    /// One `[copies, pairs]` adjacency per draw.
    natural: Vec<Tensor>,
    matched: Vec<Tensor>,
    matched_weight: f64,
}

impl NullPatches {
    /// `draws` patches per placed copy of `probe` for `target`, cut from `graphs` (the probe's
    /// sample, labelled by `labels`); with `matched = Some((edges, weight))` and a weight above
    /// 0, as many again filled to `edges` edges.
    #[allow(clippy::too_many_arguments)]
    pub fn draw(
        probe: &EvidenceProbe,
        graphs: &[&Graph],
        labels: &[usize],
        target: usize,
        draws: usize,
        matched: Option<(usize, f64)>,
        device: tch::Device,
        rng: &mut Rng,
    ) -> NullPatches {
        let natural = draw_patches(probe, graphs, labels, target, draws, None, device, rng);
        let (matched, matched_weight) = match matched {
            Some((edges, weight)) if weight > 0.0 => {
                (draw_patches(probe, graphs, labels, target, draws, Some(edges), device, rng), weight.min(1.0))
            }
            _ => (Vec::new(), 0.0),
        };
        NullPatches { target, natural, matched, matched_weight }
    }

    /// Natural patches drawn per copy.
    pub fn draws(&self) -> usize {
        self.natural.len()
    }

    /// Per placed copy of `probe`, the share of the patches after which `model` predicts the
    /// target (natural and edge-matched shares mixed by the density weight).
    pub fn hits(&self, model: &GnnModel, probe: &EvidenceProbe) -> Result<Vec<f64>> {
        let mut hits = share_of_target(model, probe, &self.natural, self.target)?;
        if self.matched_weight > 0.0 {
            let matched = share_of_target(model, probe, &self.matched, self.target)?;
            for (h, m) in hits.iter_mut().zip(matched) {
                *h = (1.0 - self.matched_weight) * *h + self.matched_weight * m;
            }
        }
        Ok(hits)
    }
}

#[allow(clippy::too_many_arguments)]
fn draw_patches(
    probe: &EvidenceProbe,
    graphs: &[&Graph],
    labels: &[usize],
    target: usize,
    draws: usize,
    match_edges: Option<usize>,
    device: tch::Device,
    rng: &mut Rng,
) -> Vec<Tensor> {
    if probe.copies().is_none() {
        return Vec::new();
    }
    let size = probe.size();
    let copies = probe.copy_graphs();
    let pairs = num_pairs(size);
    let of_target: Vec<usize> = (0..graphs.len()).filter(|&i| labels.get(i) == Some(&target)).collect();
    (0..draws.max(1))
        .map(|_| {
            let mut rows: Vec<f32> = Vec::with_capacity(copies.len() * pairs);
            for &g in copies {
                let donor = donor_for(g, &of_target, graphs.len(), rng);
                let mut piece = natural_patch(graphs[donor], size, rng);
                if let Some(m) = match_edges {
                    match_edge_count(&mut piece, size, m, rng);
                }
                rows.extend(pair_vector(size, &piece));
            }
            Tensor::from_slice(&rows).view([copies.len() as i64, pairs as i64]).to_device(device)
        })
        .collect()
}

/// Per copy, the share of `patches` after which `model` predicts `target`.
fn share_of_target(model: &GnnModel, probe: &EvidenceProbe, patches: &[Tensor], target: usize) -> Result<Vec<f64>> {
    let Some(batch) = probe.copies() else { return Ok(Vec::new()) };
    let mut hits = vec![0.0f64; probe.copy_graphs().len()];
    for adjacency in patches {
        let predicted = tch::no_grad(|| {
            let inputs = batch.assemble_fixed(adjacency, None);
            model.forward_t(&inputs.graph_input(batch), false).log_probs
        });
        for (hit, p) in hits.iter_mut().zip(super::evidence::predicted_classes(&predicted)?) {
            *hit += f64::from(u8::from(p == target));
        }
    }
    let n = patches.len().max(1) as f64;
    Ok(hits.into_iter().map(|h| h / n).collect())
}

/// Adds random slot pairs to `piece` (or removes random edges) until it has `m` edges; the
/// result stays sorted.
fn match_edge_count(piece: &mut Vec<(usize, usize)>, size: usize, m: usize, rng: &mut Rng) {
    let m = m.min(num_pairs(size));
    if piece.len() > m {
        piece.shuffle(rng);
        piece.truncate(m);
    } else if piece.len() < m {
        let mut missing: Vec<(usize, usize)> = slot_pairs(size).into_iter().filter(|p| piece.binary_search(p).is_err()).collect();
        missing.shuffle(rng);
        piece.extend(missing.into_iter().take(m - piece.len()));
    }
    piece.sort_unstable();
}

/// How strongly the clean sample ties denser pieces of `size` nodes to `target`: Welch's t
/// statistic of the mean edge count of `pieces` random pieces per graph, graphs of `target`
/// against the others (positive: the target's graphs are the denser ones), with the target
/// graphs' mean edge count.
///
/// A model trained on such data extrapolates: a pattern denser than any natural piece moves
/// graphs to the denser class whether or not anything was planted (on AIDS a 4-clique sends most
/// large molecules to the class of small ones). When the sample shows that tie and the candidate
/// goes further in its direction, its excess is measured against natural pieces filled to its
/// own edge count; a planted pattern against the data's trend (dense, for the sparser class) is
/// still measured against natural pieces as they are.
pub fn density_association(
    graphs: &[&Graph],
    labels: &[usize],
    target: usize,
    size: usize,
    pieces: usize,
    rng: &mut Rng,
) -> (f64, f64) {
    let (mut inside, mut outside) = (Vec::new(), Vec::new());
    for (g, &label) in graphs.iter().zip(labels) {
        if g.num_nodes < 2 {
            continue;
        }
        let mean = (0..pieces.max(1)).map(|_| natural_patch(g, size, rng).len() as f64).sum::<f64>() / pieces.max(1) as f64;
        if label == target {
            inside.push(mean)
        } else {
            outside.push(mean)
        }
    }
    let stats = |v: &[f64]| {
        let n = v.len() as f64;
        let mean = v.iter().sum::<f64>() / n.max(1.0);
        let var = if v.len() > 1 { v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0) } else { 0.0 };
        (mean, var, n)
    };
    let ((mi, vi, ni), (mo, vo, no)) = (stats(&inside), stats(&outside));
    if inside.is_empty() || outside.is_empty() {
        return (0.0, mi);
    }
    let se = (vi / ni + vo / no).sqrt();
    let t = if se > 0.0 {
        (mi - mo) / se
    } else if mi > mo {
        f64::INFINITY
    } else if mi < mo {
        f64::NEG_INFINITY
    } else {
        0.0
    };
    (t, mi)
}

/// A graph of `donors` other than `own`, else any graph of the `n` other than `own` (its own
/// piece would mostly restore the copy's original edges), else `own`.
fn donor_for(own: usize, donors: &[usize], n: usize, rng: &mut Rng) -> usize {
    let others: Vec<usize> = donors.iter().copied().filter(|&d| d != own).collect();
    if !others.is_empty() {
        return others[rng.gen_range(0..others.len())];
    }
    if n > 1 {
        let d = rng.gen_range(0..n - 1);
        return if d >= own { d + 1 } else { d };
    }
    own
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::rng_for;

    fn path(n: usize) -> Graph {
        Graph {
            num_nodes: n,
            edges: (1..n as u32).map(|v| (v - 1, v)).collect(),
            node_labels: None,
            node_attributes: None,
            label: 0,
        }
    }

    #[test]
    fn a_patch_of_a_path_is_a_connected_path_piece() {
        let mut rng = rng_for(1, "test");
        for size in 1..=6 {
            let edges = natural_patch(&path(10), size, &mut rng);
            // A connected piece of a path with `size` nodes has `size - 1` edges.
            assert_eq!(edges.len(), size - 1, "size {size}: {edges:?}");
            assert!(edges.iter().all(|&(a, b)| a < b && b < size));
        }
    }

    #[test]
    fn donors_are_of_the_target_class_and_never_the_copy_itself() {
        let mut rng = rng_for(4, "test");
        for _ in 0..50 {
            assert!([1, 3].contains(&donor_for(0, &[1, 3], 5, &mut rng)));
            assert_eq!(donor_for(1, &[1, 3], 5, &mut rng), 3);
            // No graph of the class but the copy's own: any other graph.
            assert_ne!(donor_for(2, &[2], 5, &mut rng), 2);
        }
        assert_eq!(donor_for(0, &[], 1, &mut rng), 0);
    }

    #[test]
    fn pieces_are_filled_or_thinned_to_an_edge_count() {
        let mut rng = rng_for(5, "test");
        for (start, m) in [(3usize, 6usize), (5, 2), (4, 4), (0, 10)] {
            let mut piece: Vec<(usize, usize)> = slot_pairs(5).into_iter().take(start).collect();
            match_edge_count(&mut piece, 5, m, &mut rng);
            assert_eq!(piece.len(), m);
            assert!(piece.windows(2).all(|w| w[0] < w[1]) && piece.iter().all(|&(a, b)| a < b && b < 5));
        }
    }

    #[test]
    fn the_denser_class_is_told_apart_from_a_sparser_one() {
        let mut rng = rng_for(6, "test");
        // Paths (class 0) against paths with every second chord (class 1).
        let dense = |n: usize| {
            let mut g = path(n);
            g.edges.extend((2..n as u32).step_by(2).map(|v| (v - 2, v)));
            g.label = 1;
            g
        };
        let graphs: Vec<Graph> = (0..8).map(|i| if i % 2 == 0 { path(12) } else { dense(12) }).collect();
        let refs: Vec<&Graph> = graphs.iter().collect();
        let labels: Vec<usize> = graphs.iter().map(|g| g.label).collect();
        let (t1, mean1) = density_association(&refs, &labels, 1, 5, 8, &mut rng);
        let (t0, mean0) = density_association(&refs, &labels, 0, 5, 8, &mut rng);
        assert!(t1 > 2.0 && t0 < -2.0, "t {t1} {t0}");
        assert!(mean1 > mean0 && (mean0 - 4.0).abs() < 1e-9, "means {mean1} {mean0}");
    }

    #[test]
    fn a_patch_larger_than_a_component_jumps_to_another() {
        // Two disjoint triangles: a 6-node piece takes both, with all six edges.
        let g = Graph {
            num_nodes: 6,
            edges: vec![(0, 1), (1, 2), (0, 2), (3, 4), (4, 5), (3, 5)],
            node_labels: None,
            node_attributes: None,
            label: 0,
        };
        let edges = natural_patch(&g, 6, &mut rng_for(2, "test"));
        assert_eq!(edges.len(), 6);
        // Larger than the graph: every node once.
        assert_eq!(natural_patch(&g, 9, &mut rng_for(3, "test")).len(), 6);
    }
}
