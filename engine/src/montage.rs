//! The trigger montage: a candidate trigger (an adjacency over `n` slots, plus node features for
//! the slots where features do not derive from structure) written into existing graphs at chosen
//! nodes. The chosen nodes' mutual edges are replaced by the trigger's; their edges to the rest
//! of the graph stay. Nodes are never added or dropped, so a triggered graph aligns node by node
//! with its clean original (Grad-CAM heat maps compare them).
//!
//! Everything is differentiable in the trigger: every slot pair becomes an edge carrying the
//! trigger's (straight-through binarised) weight, and degree features are recomputed from the
//! weighted adjacency through a straight-through one-hot, so the forward pass sees a graph that
//! could occur while the backward pass reaches the trigger's continuous values.

use tch::{Device, Kind, Tensor};

use crate::data::{FeatureSpec, Graph};
use crate::models::GraphInput;
use crate::{Error, Result};

/// One leaf of a (possibly concatenated) feature spec and its column offset.
#[derive(Debug, Clone, PartialEq)]
pub struct FeaturePart {
    pub offset: usize,
    pub spec: FeatureSpec,
}

impl FeaturePart {
    pub fn dim(&self) -> usize {
        self.spec.dim()
    }

    /// Structural parts are recomputed from the montaged adjacency; the others are generated.
    pub fn is_structural(&self) -> bool {
        matches!(self.spec, FeatureSpec::OneHotDegree { .. })
    }
}

/// Flattens a feature spec into its leaves with their column offsets.
pub fn feature_parts(spec: &FeatureSpec) -> Vec<FeaturePart> {
    fn walk(spec: &FeatureSpec, offset: &mut usize, out: &mut Vec<FeaturePart>) {
        match spec {
            FeatureSpec::Concat { parts } => parts.iter().for_each(|p| walk(p, offset, out)),
            leaf => {
                out.push(FeaturePart { offset: *offset, spec: leaf.clone() });
                *offset += leaf.dim();
            }
        }
    }
    let mut out = Vec::new();
    walk(spec, &mut 0, &mut out);
    out
}

/// Width of the features a generator must produce per slot (the non-structural parts).
pub fn generated_width(parts: &[FeaturePart]) -> usize {
    parts.iter().filter(|p| !p.is_structural()).map(FeaturePart::dim).sum()
}

/// Number of unordered slot pairs of an `n`-slot trigger.
pub fn num_pairs(n: usize) -> usize {
    n * n.saturating_sub(1) / 2
}

/// The unordered slot pairs `(i, j)`, `i < j`, in the order trigger adjacency vectors use.
pub fn slot_pairs(n: usize) -> Vec<(usize, usize)> {
    let mut pairs = Vec::with_capacity(num_pairs(n));
    for i in 0..n {
        for j in i + 1..n {
            pairs.push((i, j));
        }
    }
    pairs
}

/// A batch of graphs with trigger slots placed, ready to take trigger values.
pub struct MontageBatch {
    pub num_graphs: i64,
    pub num_nodes: i64,
    pub slots: usize,
    pub batch: Tensor,
    pub labels: Tensor,
    /// Features of the untouched graphs `[N, F]`.
    base_x: Tensor,
    /// Directed edges kept from the originals (both directions), `[2, E0]`.
    kept_edges: Tensor,
    /// Global endpoints of every placed slot pair, `[P]` each.
    pair_src: Tensor,
    pair_dst: Tensor,
    /// Flat index `graph * num_pairs(slots) + pair` of every placed pair, `[P]`.
    pair_flat: Tensor,
    /// Flat index `pair` of every placed pair (for a trigger shared by all graphs), `[P]`.
    pair_of: Tensor,
    /// Original adjacency (0/1) among the placed slots, `[P]`.
    pub original_pairs: Tensor,
    /// Global node id of every placed slot, `[S]`.
    slot_nodes: Tensor,
    /// Flat index `graph * slots + slot` of every placed slot, `[S]`.
    slot_flat: Tensor,
    /// Slot index of every placed slot, `[S]`.
    slot_of: Tensor,
    /// Base features at the slots, zero-padded to `slots` rows per graph: `[B, slots * F]`,
    /// the generator's input.
    pub slot_input: Tensor,
    parts: Vec<FeaturePart>,
}

impl MontageBatch {
    /// `graphs` as one batch with no slots placed, for their clean inputs
    /// ([`MontageBatch::assemble_clean`]).
    pub fn clean(graphs: &[&Graph], labels: &[usize], features: &FeatureSpec, device: Device) -> Result<Self> {
        MontageBatch::build(graphs, labels, &vec![Vec::new(); graphs.len()], 2, features, device)
    }

    /// Places an `n`-slot trigger into `graphs`: `placements[b]` lists the nodes of graph `b`
    /// that take slots `0, 1, ...` (at most `n`; graphs smaller than the trigger take a prefix
    /// of it).
    pub fn build(
        graphs: &[&Graph],
        labels: &[usize],
        placements: &[Vec<usize>],
        n: usize,
        features: &FeatureSpec,
        device: Device,
    ) -> Result<Self> {
        if graphs.len() != placements.len() || graphs.len() != labels.len() {
            return Err(Error::invalid("montage: graphs, labels and placements differ in length"));
        }
        if n < 2 {
            return Err(Error::invalid("a trigger needs at least 2 nodes"));
        }
        let f = features.dim();
        let npairs = num_pairs(n);
        let mut x: Vec<f32> = Vec::new();
        let mut batch = Vec::new();
        let (mut kept_src, mut kept_dst) = (Vec::new(), Vec::new());
        let (mut pair_src, mut pair_dst, mut pair_flat, mut pair_of, mut original) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let (mut slot_nodes, mut slot_flat, mut slot_of) = (Vec::new(), Vec::new(), Vec::new());
        let mut slot_input = vec![0f32; graphs.len() * n * f];
        let mut offset = 0i64;
        for (b, (g, nodes)) in graphs.iter().zip(placements).enumerate() {
            if nodes.len() > n || nodes.iter().any(|&v| v >= g.num_nodes) {
                return Err(Error::invalid(format!("montage: bad placement for graph {b}")));
            }
            let gx = features.node_features(g)?;
            let mut slot_of_node = vec![usize::MAX; g.num_nodes];
            for (s, &v) in nodes.iter().enumerate() {
                if slot_of_node[v] != usize::MAX {
                    return Err(Error::invalid(format!("montage: node {v} placed twice in graph {b}")));
                }
                slot_of_node[v] = s;
                slot_nodes.push(offset + v as i64);
                slot_flat.push((b * n + s) as i64);
                slot_of.push(s as i64);
                slot_input[(b * n + s) * f..(b * n + s + 1) * f].copy_from_slice(&gx[v * f..(v + 1) * f]);
            }
            let mut present = std::collections::HashSet::new();
            for &(u, v) in &g.edges {
                let (su, sv) = (slot_of_node[u as usize], slot_of_node[v as usize]);
                if su != usize::MAX && sv != usize::MAX {
                    present.insert((su.min(sv), su.max(sv)));
                } else {
                    let (u, v) = (offset + u as i64, offset + v as i64);
                    kept_src.extend([u, v]);
                    kept_dst.extend([v, u]);
                }
            }
            for (p, (i, j)) in slot_pairs(n).into_iter().enumerate() {
                if j < nodes.len() {
                    pair_src.push(offset + nodes[i] as i64);
                    pair_dst.push(offset + nodes[j] as i64);
                    pair_flat.push((b * npairs + p) as i64);
                    pair_of.push(p as i64);
                    original.push(if present.contains(&(i, j)) { 1f32 } else { 0f32 });
                }
            }
            x.extend_from_slice(&gx);
            batch.extend(std::iter::repeat_n(b as i64, g.num_nodes));
            offset += g.num_nodes as i64;
        }
        let long = |v: Vec<i64>| Tensor::from_slice(&v).to_device(device);
        let kept_edges = if kept_src.is_empty() {
            Tensor::zeros([2, 0], (Kind::Int64, device))
        } else {
            Tensor::stack(&[Tensor::from_slice(&kept_src), Tensor::from_slice(&kept_dst)], 0).to_device(device)
        };
        let labels: Vec<i64> = labels.iter().map(|&l| l as i64).collect();
        Ok(MontageBatch {
            num_graphs: graphs.len() as i64,
            num_nodes: offset,
            slots: n,
            batch: long(batch),
            labels: long(labels),
            base_x: Tensor::from_slice(&x).view([offset, f as i64]).to_device(device),
            kept_edges,
            pair_src: long(pair_src),
            pair_dst: long(pair_dst),
            pair_flat: long(pair_flat),
            pair_of: long(pair_of),
            original_pairs: Tensor::from_slice(&original).to_device(device),
            slot_nodes: long(slot_nodes),
            slot_flat: long(slot_flat),
            slot_of: long(slot_of),
            slot_input: Tensor::from_slice(&slot_input).view([graphs.len() as i64, (n * f) as i64]).to_device(device),
            parts: feature_parts(features),
        })
    }

    /// Model inputs with the trigger written in, differentiable in the trigger.
    ///
    /// `adjacency` is either per graph `[B, num_pairs]` or shared `[num_pairs]`, values in
    /// [0, 1] (binarise before calling for a graph that could occur). `slot_features`, per graph
    /// `[B, slots, G]` or shared `[slots, G]` with `G` = [`generated_width`], replaces the
    /// non-structural features of the slot nodes; `None` keeps the originals.
    ///
    /// Every placed slot pair is an edge carrying its weight (0 for an absent edge, which every
    /// architecture treats as no edge), and degree features go through a straight-through
    /// one-hot of the weighted degree. Where no gradient to the trigger is wanted,
    /// [`MontageBatch::assemble_fixed`] builds the same graphs for less.
    pub fn assemble(&self, adjacency: &Tensor, slot_features: Option<&Tensor>) -> MontageInputs {
        let pair_weight = self.pair_weights(adjacency);
        let device = self.base_x.device();
        let kept = self.kept_edges.size()[1];
        let edge_index = Tensor::cat(
            &[
                self.kept_edges.shallow_clone(),
                Tensor::stack(&[&self.pair_src, &self.pair_dst], 0),
                Tensor::stack(&[&self.pair_dst, &self.pair_src], 0),
            ],
            1,
        );
        let edge_weight =
            Tensor::cat(&[Tensor::ones([kept], (Kind::Float, device)), pair_weight.shallow_clone(), pair_weight], 0);
        let x = self.features(slot_features, |max_degree| {
            let degree = Tensor::zeros([self.num_nodes], (Kind::Float, device)).index_add(0, &edge_index.get(1), &edge_weight);
            straight_through_one_hot(&degree, max_degree)
        });
        MontageInputs { x, edge_index, edge_weight: Some(edge_weight) }
    }

    /// Model inputs with a fixed 0/1 pattern written in (a pair is an edge when its value is at
    /// least 0.5), for forward passes that need no gradient to the trigger: unlearning, evidence,
    /// the census, evaluation. The same graphs as [`MontageBatch::assemble`] gives for the
    /// pattern, without its cost: only the edges present are listed, unweighted (no per-edge
    /// multiply in any layer), and degree features are a plain one-hot.
    pub fn assemble_fixed(&self, adjacency: &Tensor, slot_features: Option<&Tensor>) -> MontageInputs {
        self.assemble_present(&self.pair_weights(adjacency).ge(0.5), slot_features)
    }

    /// Inputs for the clean graphs (the original adjacency among the slots, original features).
    pub fn assemble_clean(&self) -> MontageInputs {
        // `original_pairs` holds one weight per placed pair of every graph, already in pair
        // order; read through `assemble` as a shared `[num_pairs]` pattern it gave every graph
        // the first graph's slot edges, so the "clean" copies were not the clean graphs.
        self.assemble_present(&self.original_pairs.ge(0.5), None)
    }

    /// One weight per placed slot pair, in the batch's pair order, from a shared `[num_pairs]`
    /// or per-graph `[B, num_pairs]` adjacency.
    fn pair_weights(&self, adjacency: &Tensor) -> Tensor {
        if adjacency.dim() == 1 {
            adjacency.index_select(0, &self.pair_of)
        } else {
            adjacency.reshape([-1]).index_select(0, &self.pair_flat)
        }
    }

    /// Unweighted inputs where the placed pairs flagged in `present` (`[P]`, bool) are edges.
    fn assemble_present(&self, present: &Tensor, slot_features: Option<&Tensor>) -> MontageInputs {
        let (src, dst) = (self.pair_src.masked_select(present), self.pair_dst.masked_select(present));
        let edge_index =
            Tensor::cat(&[self.kept_edges.shallow_clone(), Tensor::stack(&[&src, &dst], 0), Tensor::stack(&[&dst, &src], 0)], 1);
        let x = self.features(slot_features, |max_degree| {
            edge_index
                .get(1)
                .bincount::<Tensor>(None, self.num_nodes)
                .clamp_max(max_degree as i64)
                .one_hot(max_degree as i64 + 1)
                .to_kind(Kind::Float)
        });
        MontageInputs { x, edge_index, edge_weight: None }
    }

    /// Node features of the montaged batch: degree parts from `degree_one_hot(max_degree)`,
    /// the other parts from the base features, with the slot nodes' generated ones written in.
    fn features(&self, slot_features: Option<&Tensor>, degree_one_hot: impl Fn(usize) -> Tensor) -> Tensor {
        let generated = slot_features.map(|sf| {
            if sf.dim() == 2 {
                sf.index_select(0, &self.slot_of)
            } else {
                let g = sf.size()[2];
                sf.reshape([-1, g]).index_select(0, &self.slot_flat)
            }
        });
        let mut columns = Vec::with_capacity(self.parts.len());
        let mut generated_offset = 0i64;
        for part in &self.parts {
            let dim = part.dim() as i64;
            match &part.spec {
                FeatureSpec::OneHotDegree { max_degree } => columns.push(degree_one_hot(*max_degree)),
                _ => {
                    let base = self.base_x.narrow(1, part.offset as i64, dim);
                    columns.push(match &generated {
                        Some(gen) => base.index_copy(0, &self.slot_nodes, &gen.narrow(1, generated_offset, dim)),
                        None => base,
                    });
                    generated_offset += dim;
                }
            }
        }
        Tensor::cat(&columns, 1)
    }
}

/// A montaged batch's model inputs.
pub struct MontageInputs {
    /// Node features `[N, F]`.
    pub x: Tensor,
    /// Directed edges `[2, E]`, both directions.
    pub edge_index: Tensor,
    /// Per-edge weights `[E]` where the montage is differentiable; `None`: every edge weighs 1.
    pub edge_weight: Option<Tensor>,
}

impl MontageInputs {
    /// The model input for these tensors on `batch`'s graphs.
    pub fn graph_input<'a>(&'a self, batch: &'a MontageBatch) -> GraphInput<'a> {
        GraphInput {
            x: &self.x,
            edge_index: &self.edge_index,
            edge_weight: self.edge_weight.as_ref(),
            batch: &batch.batch,
            num_graphs: batch.num_graphs,
        }
    }
}

/// One-hot encoding of (integer-valued) degrees with overflow into the last bucket, whose
/// gradient flows to the degree through a soft assignment to nearby buckets.
pub fn straight_through_one_hot(degree: &Tensor, max_degree: usize) -> Tensor {
    let buckets = max_degree as i64 + 1;
    let clamped = degree.clamp(0.0, max_degree as f64);
    let hard = clamped.round().to_kind(Kind::Int64).one_hot(buckets).to_kind(Kind::Float);
    let centres = Tensor::arange(buckets, (Kind::Float, degree.device()));
    // Temperature 0.5: the soft assignment is concentrated on the nearest bucket but still
    // tells the optimiser which way a fractional change in degree would move the encoding.
    let soft = (-(clamped.unsqueeze(1) - centres.unsqueeze(0)).square() / 0.5).softmax(1, Kind::Float);
    &hard + &soft - soft.detach()
}

/// Straight-through binarisation at 0.5: the forward pass sees 0/1, the backward pass the
/// continuous values.
pub fn straight_through_binary(soft: &Tensor) -> Tensor {
    let hard = soft.ge(0.5).to_kind(Kind::Float);
    &hard + soft - soft.detach()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph(num_nodes: usize, edges: &[(u32, u32)]) -> Graph {
        Graph { num_nodes, edges: edges.to_vec(), node_labels: None, node_attributes: None, label: 0 }
    }

    /// Node degrees of an assembled batch (weighted, one direction each way).
    fn degrees(batch: &MontageBatch, inputs: &MontageInputs) -> Vec<f32> {
        let ones = Tensor::ones([inputs.edge_index.size()[1]], (Kind::Float, Device::Cpu));
        let weight = inputs.edge_weight.as_ref().unwrap_or(&ones);
        let d = Tensor::zeros([batch.num_nodes], (Kind::Float, Device::Cpu)).index_add(0, &inputs.edge_index.get(1), weight);
        Vec::<f32>::try_from(d).unwrap()
    }

    #[test]
    fn the_clean_assembly_of_a_placed_batch_is_the_clean_graphs() {
        // Graph 0's slots hold a triangle, graph 1's slots hold no edge at all: a clean copy of
        // graph 1 must not borrow graph 0's slot edges.
        let a = graph(4, &[(0, 1), (0, 2), (1, 2), (2, 3)]);
        let b = graph(5, &[(0, 4), (1, 4), (3, 4)]);
        let features = FeatureSpec::OneHotDegree { max_degree: 4 };
        let placed = MontageBatch::build(&[&a, &b], &[0, 0], &[vec![0, 1, 2], vec![0, 1, 2]], 3, &features, Device::Cpu).unwrap();
        let plain = MontageBatch::build(&[&a, &b], &[0, 0], &[vec![], vec![]], 3, &features, Device::Cpu).unwrap();
        let (placed_in, plain_in) = (placed.assemble_clean(), plain.assemble_clean());
        assert_eq!(degrees(&placed, &placed_in), vec![2.0, 2.0, 3.0, 1.0, 1.0, 1.0, 0.0, 1.0, 3.0]);
        assert_eq!(degrees(&placed, &placed_in), degrees(&plain, &plain_in));
        let diff = (&placed_in.x - &plain_in.x).abs().max().double_value(&[]);
        assert_eq!(diff, 0.0, "node features of the clean copies differ");
        // A shared pattern still goes to every graph's slots.
        let empty = Tensor::zeros([3], (Kind::Float, Device::Cpu));
        assert_eq!(degrees(&placed, &placed.assemble(&empty, None)), vec![0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 0.0, 1.0, 3.0]);
        assert_eq!(degrees(&placed, &placed.assemble_fixed(&empty, None)), vec![0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 0.0, 1.0, 3.0]);
    }

    #[test]
    fn the_fixed_assembly_is_the_weighted_one_for_every_architecture() {
        use crate::models::{Arch, GnnModel, ModelSpec};
        // Degree features plus node labels, so that generated slot features are written too.
        let a = graph(6, &[(0, 1), (1, 2), (2, 3), (3, 4), (4, 5), (0, 5), (1, 4)]);
        let b = graph(5, &[(0, 1), (0, 2), (0, 3), (0, 4)]);
        let (a, b) =
            (Graph { node_labels: Some(vec![0, 1, 2, 0, 1, 2]), ..a }, Graph { node_labels: Some(vec![2, 2, 1, 0, 0]), ..b });
        let features = FeatureSpec::Concat {
            parts: vec![FeatureSpec::OneHotDegree { max_degree: 3 }, FeatureSpec::NodeLabelsOneHot { num_labels: 3 }],
        };
        let batch = MontageBatch::build(&[&a, &b], &[0, 1], &[vec![0, 1, 4], vec![1, 2, 3]], 3, &features, Device::Cpu).unwrap();
        let slot_features = Tensor::from_slice(&[0.0f32, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0]).view([3, 3]);
        // A shared pattern, a per-graph one (as pattern dropout makes), and the clean graphs.
        let shared = Tensor::from_slice(&[1.0f32, 0.0, 1.0]);
        let per_graph = Tensor::from_slice(&[1.0f32, 1.0, 1.0, 0.0, 0.0, 1.0]).view([2, 3]);
        for arch in [Arch::Gin, Arch::Gcn, Arch::Gat, Arch::Sage] {
            let _torch_seed = crate::rng::seed_torch(5);
            let model = GnnModel::new(ModelSpec::published(arch, features.dim(), 8, 2, features.clone()), Device::Cpu).unwrap();
            let logits = |inputs: &MontageInputs| tch::no_grad(|| model.forward_t(&inputs.graph_input(&batch), false).logits);
            // Relative to the logits' size: sum pooling makes them large, and the two inputs
            // sum messages in another order.
            let rel = |a: Tensor, b: Tensor| (&a - &b).abs().max().double_value(&[]) / a.abs().max().double_value(&[]).max(1.0);
            for (adjacency, slots) in [(&shared, Some(&slot_features)), (&per_graph, None)] {
                let (weighted, fixed) = (batch.assemble(adjacency, slots), batch.assemble_fixed(adjacency, slots));
                assert!(fixed.edge_weight.is_none());
                assert!(fixed.edge_index.size()[1] < weighted.edge_index.size()[1], "absent pairs are left out");
                assert_eq!(degrees(&batch, &weighted), degrees(&batch, &fixed));
                // The straight-through one-hot adds and subtracts its soft part: float noise.
                assert!((&weighted.x - &fixed.x).abs().max().double_value(&[]) < 1e-6);
                let diff = rel(logits(&weighted), logits(&fixed));
                assert!(diff < 1e-5, "{arch:?}: logits differ by {diff}");
            }
            let weighted_clean = batch.assemble(&batch.original_pairs.reshape([2, 3]), None);
            let diff = rel(logits(&weighted_clean), logits(&batch.assemble_clean()));
            assert!(diff < 1e-5, "{arch:?}: clean logits differ by {diff}");
        }
    }
}
