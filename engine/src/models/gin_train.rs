//! GIN training steps on the CPU with hand-derived gradients.
//!
//! Through autograd, one step of the published GIN on an AIDS-sized batch (about 600 nodes,
//! hidden 64) is some 250 small libtorch ops, each with its dispatch, autograd bookkeeping and
//! allocation (and a sort of the index inside every `index_add`), and together they cost more than
//! the step's matrix products. Here a step is the 35 matrix products (libtorch's CPU matmul,
//! written into buffers allocated once and straight into the optimizer's flat gradient) plus a
//! few loops over the node features that each do what several ops did: neighbour aggregation over
//! adjacency lists built once per batch, ReLU with BatchNorm and its statistics, pooling,
//! log-softmax with the NLL loss, and the derivatives of each.
//!
//! The arithmetic is that of [`super::gin`], [`super::batch_norm`], [`super::pooling`] and
//! [`super::head`] in train mode (the tests compare gradients and running statistics with
//! autograd's); `crate::train` uses this path only where it applies (a GIN on the CPU with every
//! parameter trained) and autograd everywhere else.

use tch::{Device, Kind, Tensor};

use super::batch_norm::{BatchNorm1d, EPS as BN_EPS, MOMENTUM as BN_MOMENTUM};
use super::host::{f32s, f32s_mut};
use super::{GnnModel, Pooling};
use crate::data::batch::GraphBatch;
use crate::optim::FlatAdam;
use crate::threads::{IntraOpThreads, SMALL_GRAPH_THREADS};
use crate::{Error, Result};

/// For every node, the other end of its edges in one direction: node `i`'s are
/// `neighbours[start[i]..start[i + 1]]`, in edge order.
struct Adjacency {
    start: Vec<usize>,
    neighbours: Vec<usize>,
}

impl Adjacency {
    /// Edge `k` runs `from[k] -> to[k]`; it is listed under `to[k]`.
    fn grouped_by(to: &[usize], from: &[usize], num_nodes: usize) -> Adjacency {
        let mut start = vec![0usize; num_nodes + 1];
        for &t in to {
            start[t + 1] += 1;
        }
        for i in 0..num_nodes {
            start[i + 1] += start[i];
        }
        let mut next = start.clone();
        let mut neighbours = vec![0usize; to.len()];
        for (&t, &f) in to.iter().zip(from) {
            neighbours[next[t]] = f;
            next[t] += 1;
        }
        Adjacency { start, neighbours }
    }

    /// `out_i = (1 + eps) x_i + sum of x_j over i's neighbours`, rows of width `dim`: GIN's
    /// aggregation over incoming edges, and over outgoing ones its derivative.
    fn aggregate(&self, eps: f32, x: &[f32], out: &mut [f32], dim: usize) {
        for (i, row) in out.chunks_exact_mut(dim).enumerate() {
            let own = &x[i * dim..(i + 1) * dim];
            // As autograd's path computes it: x + x * eps.
            for (o, &v) in row.iter_mut().zip(own) {
                *o = v + v * eps;
            }
            for &j in &self.neighbours[self.start[i]..self.start[i + 1]] {
                add_assign(row, &x[j * dim..(j + 1) * dim]);
            }
        }
    }
}

/// A training batch as this trainer reads it, prepared once per `train` call.
struct PreparedBatch {
    /// `[num_nodes, in_features]` node features, contiguous.
    x: Tensor,
    num_nodes: usize,
    num_graphs: usize,
    /// Sources of each node's incoming edges (the forward aggregation).
    incoming: Adjacency,
    /// Targets of each node's outgoing edges (the aggregation's transpose, for gradients).
    outgoing: Adjacency,
    graph_of: Vec<usize>,
    /// Factor of each graph's pooled sum: 1 for sum pooling, 1 / nodes (1 when empty) for mean.
    pool_scale: Vec<f32>,
    labels: Vec<usize>,
}

fn host_indices(t: &Tensor, bound: usize, what: &str) -> Result<Vec<usize>> {
    let values = Vec::<i64>::try_from(t.flatten(0, -1)).map_err(|e| Error::invalid(format!("graph input: {what}: {e}")))?;
    values
        .into_iter()
        .map(|v| {
            usize::try_from(v)
                .ok()
                .filter(|&v| v < bound)
                .ok_or_else(|| Error::invalid(format!("graph input: {what} value {v} is outside 0..{bound}")))
        })
        .collect()
}

impl PreparedBatch {
    fn new(b: &GraphBatch, in_features: usize, num_classes: usize, pooling: Pooling) -> Result<Self> {
        let num_nodes = b.num_nodes() as usize;
        let num_graphs = usize::try_from(b.num_graphs).unwrap_or(0);
        if b.x.size() != [num_nodes as i64, in_features as i64] || b.x.kind() != Kind::Float {
            return Err(Error::invalid(format!(
                "graph input: x has shape {:?}, the model expects [N, {in_features}] f32",
                b.x.size()
            )));
        }
        let sources = host_indices(&b.edge_index.get(0), num_nodes, "edge_index")?;
        let targets = host_indices(&b.edge_index.get(1), num_nodes, "edge_index")?;
        let graph_of = host_indices(&b.batch, num_graphs, "batch")?;
        let labels = host_indices(&b.labels, num_classes, "label")?;
        if graph_of.len() != num_nodes || labels.len() != num_graphs || num_graphs == 0 {
            return Err(Error::invalid("graph input: batch vector or labels of the wrong length"));
        }
        let pool_scale = match pooling {
            Pooling::Sum => vec![1.0; num_graphs],
            Pooling::Mean => {
                let mut counts = vec![0usize; num_graphs];
                for &g in &graph_of {
                    counts[g] += 1;
                }
                counts.into_iter().map(|c| 1.0 / c.max(1) as f32).collect()
            }
            Pooling::Max => return Err(Error::invalid("the CPU GIN trainer pools by sum or mean only")),
        };
        Ok(PreparedBatch {
            x: b.x.contiguous(),
            num_nodes,
            num_graphs,
            incoming: Adjacency::grouped_by(&targets, &sources, num_nodes),
            outgoing: Adjacency::grouped_by(&sources, &targets, num_nodes),
            graph_of,
            pool_scale,
            labels,
        })
    }
}

/// A linear layer's weight and bias (views into the optimizer's flat parameters) and their
/// gradients (views into this trainer's flat gradient).
struct Linear {
    weight: Tensor,
    bias: Tensor,
    grad_weight: Tensor,
    grad_bias: Tensor,
}

impl Linear {
    /// `out = input @ weight^T + bias`.
    fn forward(&self, input: &Tensor, out: &Tensor) {
        let _ = self.bias.addmm_out(out, input, &self.weight.tr());
    }

    /// Weight gradient from the layer's input and output gradient `d_out` (whose column sums,
    /// the bias gradient, the caller has written); `d_input = d_out @ weight` when asked for.
    fn backward(&self, input: &Tensor, d_out: &Tensor, d_input: Option<&Tensor>) {
        let _ = d_out.tr().mm_out(&self.grad_weight, input);
        if let Some(d_input) = d_input {
            let _ = d_out.mm_out(d_input, &self.weight);
        }
    }
}

/// BatchNorm1d's parameters and state, and what the current batch was normalised with.
struct Norm {
    weight: Tensor,
    bias: Tensor,
    running_mean: Tensor,
    running_var: Tensor,
    num_batches_tracked: Tensor,
    grad_weight: Tensor,
    grad_bias: Tensor,
    mean: Vec<f32>,
    inv_std: Vec<f32>,
    /// Whether `mean` and `inv_std` are the batch's own statistics (train mode) or the running
    /// ones (a single-row batch, as [`BatchNorm1d::forward_t`] does).
    batch_statistics: bool,
}

impl Norm {
    /// ReLU on `s` in place, then BatchNorm of it into `y`; updates the running statistics.
    fn relu_forward(&mut self, s: &mut [f32], y: &mut [f32], dim: usize) {
        relu(s);
        let n = s.len() / dim;
        self.batch_statistics = n > 1;
        // SAFETY: the BatchNorm tensors are the model's own variables, separate from the
        // activation buffers, and only this trainer touches them during a step.
        let (weight, bias, running_mean, running_var) =
            unsafe { (f32s(&self.weight), f32s(&self.bias), f32s_mut(&self.running_mean), f32s_mut(&self.running_var)) };
        if self.batch_statistics {
            let mut sums = ColumnSums::new(dim);
            for row in s.chunks_exact(dim) {
                add_assign(sums.row(), row);
            }
            let mean: Vec<f64> = sums.totals().into_iter().map(|sum| sum / n as f64).collect();
            let mean_f32: Vec<f32> = mean.iter().map(|&m| m as f32).collect();
            let mut squares = ColumnSums::new(dim);
            for row in s.chunks_exact(dim) {
                for ((a, &v), &m) in squares.row().iter_mut().zip(row).zip(&mean_f32) {
                    *a += (v - m) * (v - m);
                }
            }
            let squares = squares.totals();
            for c in 0..dim {
                let (m, sq) = (mean[c], squares[c]);
                self.mean[c] = m as f32;
                self.inv_std[c] = (1.0 / (sq / n as f64 + BN_EPS).sqrt()) as f32;
                let unbiased = sq / (n - 1) as f64;
                running_mean[c] = ((1.0 - BN_MOMENTUM) * f64::from(running_mean[c]) + BN_MOMENTUM * m) as f32;
                running_var[c] = ((1.0 - BN_MOMENTUM) * f64::from(running_var[c]) + BN_MOMENTUM * unbiased) as f32;
            }
            tch::no_grad(|| {
                let _ = self.num_batches_tracked.shallow_clone().g_add_scalar_(1);
            });
        } else {
            for c in 0..dim {
                self.mean[c] = running_mean[c];
                self.inv_std[c] = (1.0 / (f64::from(running_var[c]) + BN_EPS).sqrt()) as f32;
            }
        }
        let scale: Vec<f32> = (0..dim).map(|c| self.inv_std[c] * weight[c]).collect();
        let shift: Vec<f32> = (0..dim).map(|c| bias[c] - self.mean[c] * scale[c]).collect();
        for (y_row, s_row) in y.chunks_exact_mut(dim).zip(s.chunks_exact(dim)) {
            for (((o, &v), a), b) in y_row.iter_mut().zip(s_row).zip(&scale).zip(&shift) {
                *o = v * a + b;
            }
        }
    }

    /// Turns `d` from the gradient of the BatchNorm output into that of the ReLU's input (`s`
    /// is the ReLU output), in place; writes the BatchNorm parameters' gradients and returns the
    /// column sums of the result (the preceding bias's gradient) into `d_bias`.
    fn relu_backward(&self, s: &[f32], d: &mut [f32], dim: usize, d_bias: &mut [f32]) {
        let n = s.len() / dim;
        // sum(d) and sum(d (s - mean)) per channel (the latter times inv_std is sum(d xhat)).
        let (mut sum_d, mut sum_d_centred) = (ColumnSums::new(dim), ColumnSums::new(dim));
        for (s_row, d_row) in s.chunks_exact(dim).zip(d.chunks_exact(dim)) {
            add_assign(sum_d.row(), d_row);
            for (((a, &sv), &dv), &m) in sum_d_centred.row().iter_mut().zip(s_row).zip(d_row).zip(&self.mean) {
                *a += dv * (sv - m);
            }
        }
        let (sum_d, sum_d_centred) = (sum_d.totals(), sum_d_centred.totals());
        // SAFETY: the gradient views are disjoint slices of this trainer's flat gradient; the
        // BatchNorm weight is the model's variable; nothing else touches them during a step.
        let (weight, grad_weight, grad_bias) =
            unsafe { (f32s(&self.weight), f32s_mut(&self.grad_weight), f32s_mut(&self.grad_bias)) };
        // Train mode: d_s = w inv_std (d - mean(d) - xhat mean(d xhat)); with running statistics
        // the normalisation is a constant affine map and only d_s = w inv_std d remains. Per
        // channel that is gain d + slope (s - mean) + offset.
        let centre = if self.batch_statistics { 1.0 } else { 0.0 };
        let (mut gain, mut slope, mut offset) = (vec![0f32; dim], vec![0f32; dim], vec![0f32; dim]);
        for c in 0..dim {
            let inv_std = f64::from(self.inv_std[c]);
            let sum_d_xhat = sum_d_centred[c] * inv_std;
            grad_weight[c] = sum_d_xhat as f32;
            grad_bias[c] = sum_d[c] as f32;
            let g = f64::from(weight[c]) * inv_std;
            let mean_d = centre * sum_d[c] / n.max(1) as f64;
            let mean_d_xhat = centre * sum_d_xhat / n.max(1) as f64;
            gain[c] = g as f32;
            slope[c] = (-g * inv_std * mean_d_xhat) as f32;
            offset[c] = (-g * mean_d) as f32;
        }
        let mut column_sums = ColumnSums::new(dim);
        for (s_row, d_row) in s.chunks_exact(dim).zip(d.chunks_exact_mut(dim)) {
            let per_channel = gain.iter().zip(&slope).zip(&offset).zip(&self.mean);
            for (((dv, &sv), (((&a, &b), &o), &m)), sum) in
                d_row.iter_mut().zip(s_row).zip(per_channel).zip(column_sums.row().iter_mut())
            {
                let v = a * *dv + b * (sv - m) + o;
                *dv = if sv > 0.0 { v } else { 0.0 };
                *sum += *dv;
            }
        }
        narrow_into(d_bias, &column_sums.totals());
    }
}

/// ReLU's derivative applied to `d` in place (`out` is the ReLU output), and the column sums of
/// the result (the preceding bias's gradient) into `d_bias`.
fn relu_backward(out: &[f32], d: &mut [f32], dim: usize, d_bias: &mut [f32]) {
    let mut column_sums = ColumnSums::new(dim);
    for (o_row, d_row) in out.chunks_exact(dim).zip(d.chunks_exact_mut(dim)) {
        for ((dv, &o), sum) in d_row.iter_mut().zip(o_row).zip(column_sums.row().iter_mut()) {
            *dv = if o > 0.0 { *dv } else { 0.0 };
            *sum += *dv;
        }
    }
    narrow_into(d_bias, &column_sums.totals());
}

/// Per-column sums over rows of width `dim`. BatchNorm divides by the standard deviation, which
/// amplifies rounding in its statistics and in the sums of its gradient, so totals are kept in
/// f64; each row goes into an f32 partial sum folded into them every `FOLD_ROWS` rows, which
/// keeps the per-element work in f32.
struct ColumnSums {
    totals: Vec<f64>,
    partial: Vec<f32>,
    rows: usize,
}

const FOLD_ROWS: usize = 16;

impl ColumnSums {
    fn new(dim: usize) -> ColumnSums {
        ColumnSums { totals: vec![0.0; dim], partial: vec![0.0; dim], rows: 0 }
    }

    /// The partial sums to add the next row into.
    fn row(&mut self) -> &mut [f32] {
        if self.rows.is_multiple_of(FOLD_ROWS) {
            self.fold();
        }
        self.rows += 1;
        &mut self.partial
    }

    fn fold(&mut self) {
        for (t, p) in self.totals.iter_mut().zip(self.partial.iter_mut()) {
            *t += f64::from(*p);
            *p = 0.0;
        }
    }

    fn totals(mut self) -> Vec<f64> {
        self.fold();
        self.totals
    }
}

fn narrow_into(out: &mut [f32], wide: &[f64]) {
    for (o, &w) in out.iter_mut().zip(wide) {
        *o = w as f32;
    }
}

/// `acc += row`, element by element.
fn add_assign(acc: &mut [f32], row: &[f32]) {
    for (a, &v) in acc.iter_mut().zip(row) {
        *a += v;
    }
}

/// ReLU in place. A select rather than `max`, which would turn NaN into 0 where libtorch keeps it
/// (and the trainer's divergence check relies on seeing it).
fn relu(x: &mut [f32]) {
    for v in x.iter_mut() {
        *v = if *v < 0.0 { 0.0 } else { *v };
    }
}

/// One conv block, `BatchNorm(ReLU(lin2(ReLU(lin1((1 + eps) x + sum of neighbours)))))`, with its
/// activations for the current batch (buffers of the largest batch's node count).
struct Block {
    eps: f32,
    lin1: Linear,
    lin2: Linear,
    norm: Norm,
    /// The aggregated input, lin1's input.
    aggregated: Tensor,
    /// ReLU(lin1), lin2's input.
    hidden: Tensor,
    /// ReLU(lin2), BatchNorm's input.
    activated: Tensor,
    /// The block's output.
    output: Tensor,
}

/// Rows `0..n` of a buffer.
fn rows(buffer: &Tensor, n: usize) -> Tensor {
    buffer.narrow(0, 0, n as i64)
}

/// Trains a GIN on prepared batches: forward, loss and gradients by hand, then the optimizer's
/// step on the flat gradient.
pub struct GinCpuTrainer {
    blocks: Vec<Block>,
    fc1: Linear,
    fc2: Linear,
    hidden: usize,
    num_classes: usize,
    batches: Vec<PreparedBatch>,
    /// Every trained parameter's gradient, laid out as the optimizer's flat buffer.
    grad: Tensor,
    // Buffers of the largest batch's node count.
    d_output: Tensor,
    d_hidden: Tensor,
    d_aggregated: Tensor,
    // Buffers of the largest batch's graph count.
    pooled: Tensor,
    fc1_out: Tensor,
    logits: Tensor,
    d_logits: Tensor,
    d_fc1: Tensor,
    d_pooled: Tensor,
    /// Held for the trainer's lifetime (it lives inside one `train` call, on one thread).
    _threads: IntraOpThreads,
}

impl GinCpuTrainer {
    /// A trainer for `model` over `batches` with `opt`, or `None` where this path does not apply
    /// (not a GIN, not on the CPU, or not every parameter trained by `opt`).
    pub fn new(model: &GnnModel, opt: &FlatAdam, batches: &[GraphBatch]) -> Result<Option<GinCpuTrainer>> {
        let spec = model.spec();
        let Some((gin, head)) = model.gin_parts() else { return Ok(None) };
        if model.device() != Device::Cpu || spec.pooling == Pooling::Max {
            return Ok(None);
        }
        let trained = 6 * gin.convs.len() + 4;
        if opt.slot_count() != trained || model.parameter_names().len() != trained {
            return Ok(None);
        }
        let grad = Tensor::zeros([opt.len()], (Kind::Float, Device::Cpu));
        let grad_view = |param: &Tensor| -> Option<Tensor> {
            let (offset, len) = opt.slot(param)?;
            (param.requires_grad() && param.kind() == Kind::Float && param.is_contiguous())
                .then(|| grad.narrow(0, offset, len).view(param.size().as_slice()))
        };
        let linear = |l: &tch::nn::Linear| -> Option<Linear> {
            let bias = l.bs.as_ref()?;
            Some(Linear {
                weight: l.ws.shallow_clone(),
                bias: bias.shallow_clone(),
                grad_weight: grad_view(&l.ws)?,
                grad_bias: grad_view(bias)?,
            })
        };
        let (h, c) = (spec.hidden, spec.num_classes);
        let prepared =
            batches.iter().map(|b| PreparedBatch::new(b, spec.in_features, c, spec.pooling)).collect::<Result<Vec<_>>>()?;
        let max_nodes = prepared.iter().map(|b| b.num_nodes).max().unwrap_or(0) as i64;
        let max_graphs = prepared.iter().map(|b| b.num_graphs).max().unwrap_or(0) as i64;
        let buffer = |rows: i64, cols: usize| Tensor::zeros([rows, cols as i64], (Kind::Float, Device::Cpu));
        let mut blocks = Vec::with_capacity(gin.convs.len());
        for (i, (conv, bn)) in gin.convs.iter().zip(&gin.bns).enumerate() {
            let in_dim = if i == 0 { spec.in_features } else { h };
            let (Some(lin1), Some(lin2), Some(norm)) = (linear(&conv.lin1), linear(&conv.lin2), norm(bn, &grad_view, h)) else {
                return Ok(None);
            };
            blocks.push(Block {
                eps: conv.eps.double_value(&[0]) as f32,
                lin1,
                lin2,
                norm,
                aggregated: buffer(max_nodes, in_dim),
                hidden: buffer(max_nodes, h),
                activated: buffer(max_nodes, h),
                output: buffer(max_nodes, h),
            });
        }
        let (Some(fc1), Some(fc2)) = (linear(&head.fc1), linear(&head.fc2)) else { return Ok(None) };
        Ok(Some(GinCpuTrainer {
            blocks,
            fc1,
            fc2,
            hidden: h,
            num_classes: c,
            batches: prepared,
            grad,
            d_output: buffer(max_nodes, h),
            d_hidden: buffer(max_nodes, h),
            d_aggregated: buffer(max_nodes, h),
            pooled: buffer(max_graphs, h),
            fc1_out: buffer(max_graphs, h),
            logits: buffer(max_graphs, c),
            d_logits: buffer(max_graphs, c),
            d_fc1: buffer(max_graphs, h),
            d_pooled: buffer(max_graphs, h),
            _threads: IntraOpThreads::set(SMALL_GRAPH_THREADS),
        }))
    }

    /// One training step on batch `index` (of the batches given to [`GinCpuTrainer::new`]):
    /// returns the batch's mean loss and its number of correct predictions.
    pub fn step(&mut self, index: usize, opt: &mut FlatAdam) -> (f64, i64) {
        let out = self.compute_gradients(index);
        opt.step_with_flat_grad(&self.grad);
        out
    }

    /// Forward pass, loss and every parameter's gradient into the flat gradient.
    fn compute_gradients(&mut self, index: usize) -> (f64, i64) {
        tch::no_grad(|| {
            self.forward(index);
            let out = self.loss(index);
            self.backward(index);
            out
        })
    }

    fn forward(&mut self, index: usize) {
        let batch = &self.batches[index];
        let (n, h) = (batch.num_nodes, self.hidden);
        for i in 0..self.blocks.len() {
            let input = if i == 0 { batch.x.shallow_clone() } else { rows(&self.blocks[i - 1].output, n) };
            let block = &mut self.blocks[i];
            let dim = input.size()[1] as usize;
            let aggregated = rows(&block.aggregated, n);
            // SAFETY: every buffer here is a separate allocation (a block's input is the batch's
            // features or the previous block's output), each borrowed once at a time.
            unsafe { batch.incoming.aggregate(block.eps, f32s(&input), f32s_mut(&aggregated), dim) };
            let hidden = rows(&block.hidden, n);
            block.lin1.forward(&aggregated, &hidden);
            unsafe { relu(f32s_mut(&hidden)) };
            let activated = rows(&block.activated, n);
            block.lin2.forward(&hidden, &activated);
            let output = rows(&block.output, n);
            unsafe { block.norm.relu_forward(f32s_mut(&activated), f32s_mut(&output), h) };
        }
        let last = rows(&self.blocks[self.blocks.len() - 1].output, n);
        let pooled = rows(&self.pooled, batch.num_graphs);
        // SAFETY: separate allocations, each borrowed once.
        unsafe {
            let (last, pooled) = (f32s(&last), f32s_mut(&pooled));
            pooled.fill(0.0);
            for (row, &g) in last.chunks_exact(h).zip(&batch.graph_of) {
                add_assign(&mut pooled[g * h..(g + 1) * h], row);
            }
            for (row, &scale) in pooled.chunks_exact_mut(h).zip(&batch.pool_scale) {
                if scale != 1.0 {
                    row.iter_mut().for_each(|p| *p *= scale);
                }
            }
        }
        let fc1_out = rows(&self.fc1_out, batch.num_graphs);
        self.fc1.forward(&pooled, &fc1_out);
        unsafe { relu(f32s_mut(&fc1_out)) };
        self.fc2.forward(&fc1_out, &rows(&self.logits, batch.num_graphs));
    }

    /// Mean NLL of the log-softmax and the gradient of that mean with respect to the logits.
    fn loss(&mut self, index: usize) -> (f64, i64) {
        let batch = &self.batches[index];
        let c = self.num_classes;
        let (logits, d_logits) = (rows(&self.logits, batch.num_graphs), rows(&self.d_logits, batch.num_graphs));
        // SAFETY: separate allocations, each borrowed once.
        let (logits, d_logits) = unsafe { (f32s(&logits), f32s_mut(&d_logits)) };
        let (mut loss, mut correct) = (0f64, 0i64);
        let b = batch.num_graphs as f32;
        for ((row, d_row), &label) in logits.chunks_exact(c).zip(d_logits.chunks_exact_mut(c)).zip(&batch.labels) {
            // The first maximum, as argmax picks it.
            let (mut best, mut max) = (0, f32::NEG_INFINITY);
            for (k, &v) in row.iter().enumerate() {
                if v > max {
                    (best, max) = (k, v);
                }
            }
            let log_sum = max + row.iter().map(|&v| (v - max).exp()).sum::<f32>().ln();
            loss -= f64::from(row[label] - log_sum);
            correct += i64::from(best == label);
            for (k, (d, &v)) in d_row.iter_mut().zip(row).enumerate() {
                let target = if k == label { 1.0 } else { 0.0 };
                *d = ((v - log_sum).exp() - target) / b;
            }
        }
        (loss / batch.num_graphs as f64, correct)
    }

    fn backward(&mut self, index: usize) {
        let batch = &self.batches[index];
        let (n, h, g) = (batch.num_nodes, self.hidden, batch.num_graphs);
        let (pooled, fc1_out, d_logits) = (rows(&self.pooled, g), rows(&self.fc1_out, g), rows(&self.d_logits, g));
        let (d_fc1, d_pooled) = (rows(&self.d_fc1, g), rows(&self.d_pooled, g));
        // SAFETY (every block below): the buffers are separate allocations and the gradient
        // views disjoint slices of `grad`; each is borrowed once at a time, and libtorch only
        // writes a buffer while no slice of it is alive.
        unsafe { column_sums(f32s(&d_logits), f32s_mut(&self.fc2.grad_bias), self.num_classes) };
        self.fc2.backward(&fc1_out, &d_logits, Some(&d_fc1));
        unsafe { relu_backward(f32s(&fc1_out), f32s_mut(&d_fc1), h, f32s_mut(&self.fc1.grad_bias)) };
        self.fc1.backward(&pooled, &d_fc1, Some(&d_pooled));
        let d_output = rows(&self.d_output, n);
        unsafe {
            let (d_pooled, d_out) = (f32s(&d_pooled), f32s_mut(&d_output));
            for (row, &graph) in d_out.chunks_exact_mut(h).zip(&batch.graph_of) {
                let scale = batch.pool_scale[graph];
                for (d, &v) in row.iter_mut().zip(&d_pooled[graph * h..(graph + 1) * h]) {
                    *d = v * scale;
                }
            }
        }
        let d_hidden = rows(&self.d_hidden, n);
        let d_aggregated = rows(&self.d_aggregated, n);
        for i in (0..self.blocks.len()).rev() {
            let block = &self.blocks[i];
            let (hidden, activated, aggregated) = (rows(&block.hidden, n), rows(&block.activated, n), rows(&block.aggregated, n));
            unsafe { block.norm.relu_backward(f32s(&activated), f32s_mut(&d_output), h, f32s_mut(&block.lin2.grad_bias)) };
            block.lin2.backward(&hidden, &d_output, Some(&d_hidden));
            unsafe { relu_backward(f32s(&hidden), f32s_mut(&d_hidden), h, f32s_mut(&block.lin1.grad_bias)) };
            // The first block's input is the data: no gradient needed.
            if i == 0 {
                block.lin1.backward(&aggregated, &d_hidden, None);
            } else {
                block.lin1.backward(&aggregated, &d_hidden, Some(&d_aggregated));
                unsafe { batch.outgoing.aggregate(block.eps, f32s(&d_aggregated), f32s_mut(&d_output), h) };
            }
        }
    }

    /// The flat gradient of the last step (laid out as the optimizer's buffer).
    #[cfg(test)]
    fn gradient(&self) -> &Tensor {
        &self.grad
    }
}

fn norm(bn: &BatchNorm1d, grad_view: &dyn Fn(&Tensor) -> Option<Tensor>, dim: usize) -> Option<Norm> {
    let buffers_ok = [&bn.running_mean, &bn.running_var]
        .iter()
        .all(|t| t.kind() == Kind::Float && t.is_contiguous() && t.size() == [dim as i64]);
    buffers_ok.then_some(())?;
    Some(Norm {
        weight: bn.weight.shallow_clone(),
        bias: bn.bias.shallow_clone(),
        running_mean: bn.running_mean.shallow_clone(),
        running_var: bn.running_var.shallow_clone(),
        num_batches_tracked: bn.num_batches_tracked.shallow_clone(),
        grad_weight: grad_view(&bn.weight)?,
        grad_bias: grad_view(&bn.bias)?,
        mean: vec![0.0; dim],
        inv_std: vec![0.0; dim],
        batch_statistics: false,
    })
}

fn column_sums(x: &[f32], out: &mut [f32], dim: usize) {
    let mut sums = ColumnSums::new(dim);
    for row in x.chunks_exact(dim) {
        add_assign(sums.row(), row);
    }
    narrow_into(out, &sums.totals());
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::data::batch::make_batches;
    use crate::data::graph::Graph;
    use crate::data::{synthetic, FeatureSpec};
    use crate::models::test_support::set;
    use crate::models::{Arch, ModelSpec};

    const MAX_DEGREE: usize = 5;

    fn gin(num_classes: usize, pooling: Pooling) -> GnnModel {
        let features = FeatureSpec::OneHotDegree { max_degree: MAX_DEGREE };
        let mut spec = ModelSpec::published(Arch::Gin, features.dim(), 16, num_classes, features);
        spec.pooling = pooling;
        GnnModel::new(spec, Device::Cpu).expect("model")
    }

    fn batch_of(graphs: &[Graph]) -> GraphBatch {
        let refs: Vec<&Graph> = graphs.iter().collect();
        let features = FeatureSpec::OneHotDegree { max_degree: MAX_DEGREE };
        GraphBatch::new(&refs, (0..graphs.len()).collect(), &features, Device::Cpu).expect("batch")
    }

    fn synthetic_batch(graphs: usize, seed: u64) -> GraphBatch {
        batch_of(&synthetic::generate(graphs, seed).graphs)
    }

    fn graph(num_nodes: usize, edges: &[(u32, u32)], label: usize) -> Graph {
        Graph { num_nodes, edges: edges.to_vec(), node_labels: None, node_attributes: None, label }
    }

    /// Loss, correct count, gradients and the variables afterwards (BatchNorm's running
    /// statistics move) of one train-mode step through autograd, in f32 or f64.
    struct AutogradStep {
        loss: f64,
        correct: i64,
        grads: HashMap<String, Tensor>,
        after: HashMap<String, Tensor>,
    }

    fn autograd_step(model: &GnnModel, batch: &GraphBatch, kind: Kind) -> AutogradStep {
        let vars = model.var_store().variables();
        let names = model.parameter_names();
        let params: Vec<Tensor> = names.iter().map(|n| vars[n].shallow_clone()).collect();
        let x = batch.x.to_kind(kind);
        let input = crate::models::GraphInput::new(&x, &batch.edge_index, &batch.batch, batch.num_graphs);
        let out = model.forward_t(&input, true);
        let loss = out.log_probs.nll_loss(&batch.labels);
        let correct = out.log_probs.argmax(-1, false).eq_tensor(&batch.labels).sum(Kind::Int64);
        let grads = Tensor::run_backward(&[&loss], &params, false, false);
        AutogradStep {
            loss: loss.double_value(&[]),
            correct: correct.int64_value(&[]),
            grads: names.iter().cloned().zip(grads).collect(),
            after: model.var_store().variables(),
        }
    }

    fn max_abs(t: &Tensor) -> f64 {
        t.abs().max().double_value(&[])
    }

    /// Largest difference of `value` from the f64 `reference`.
    fn error(value: &Tensor, reference: &Tensor) -> f64 {
        max_abs(&(value.to_kind(Kind::Double).reshape([-1]) - reference.reshape([-1])))
    }

    /// The hand-derived step gives autograd's loss, predictions, gradients and BatchNorm updates.
    ///
    /// BatchNorm over channels of nearly constant activations divides by a small standard
    /// deviation, so f32 rounding is amplified and two f32 computations can differ by 1e-4
    /// relative. Both are therefore measured against autograd in f64: the hand-derived step must
    /// be about as close to it as libtorch's own f32 autograd is.
    fn assert_matches_autograd(model: GnnModel, batch: &GraphBatch) {
        let copy = model.try_clone().expect("clone");
        let mut double = model.try_clone().expect("clone");
        double.var_store_mut().double();
        let reference = autograd_step(&double, batch, Kind::Double);
        let single = autograd_step(&model, batch, Kind::Float);

        let opt = FlatAdam::new(copy.var_store(), 0.01, 0.0).expect("optimizer");
        let mut trainer = GinCpuTrainer::new(&copy, &opt, std::slice::from_ref(batch))
            .expect("prepared")
            .expect("a CPU GIN with every parameter trained takes the hand-derived path");
        let (loss, correct) = trainer.compute_gradients(0);
        assert!((loss - reference.loss).abs() <= 1e-5 * loss.abs().max(1.0), "loss {loss} vs {}", reference.loss);
        assert_eq!(correct, single.correct);
        assert_eq!(correct, reference.correct);

        // (name, our error, libtorch's error, the reference's largest entry)
        let mut errors = Vec::new();
        let vars = copy.var_store().variables();
        for (name, expected) in &reference.grads {
            let (offset, len) = opt.slot(&vars[name]).expect("slot");
            let ours = trainer.gradient().narrow(0, offset, len);
            errors.push((name, error(&ours, expected), error(&single.grads[name], expected), max_abs(expected)));
        }
        for (name, var) in &vars {
            if !var.requires_grad() {
                let expected = &reference.after[name].to_kind(Kind::Double);
                errors.push((name, error(var, expected), error(&single.after[name], expected), max_abs(expected)));
            }
        }
        // Rounding noise: of libtorch's order over all tensors together, and nowhere far beyond
        // it. Which of the two lands closer varies from case to case (over a few variations of
        // these tests either was up to 4x closer in total); a wrong derivative would be off by
        // the size of the entries themselves, some 1000x more.
        let relative = |e: f64, scale: f64| e / scale.max(1e-3);
        let ours: f64 = errors.iter().map(|&(_, e, _, s)| relative(e, s)).sum();
        let torch: f64 = errors.iter().map(|&(_, _, e, s)| relative(e, s)).sum();
        assert!(ours <= 5.0 * torch + 1e-6, "summed relative error {ours:.3e}, libtorch f32 {torch:.3e}");
        for (name, ours, torch, scale) in errors {
            assert!(
                relative(ours, scale) <= 20.0 * relative(torch, scale) + 1e-5,
                "{name}: {ours:.3e} from the f64 reference, libtorch f32 {torch:.3e} (largest entry {scale:.3e})"
            );
        }
    }

    #[test]
    fn gradients_match_autograd_on_a_batch_of_molecule_sized_graphs() {
        let _torch_seed = crate::rng::seed_torch(4);
        assert_matches_autograd(gin(2, Pooling::Sum), &synthetic_batch(24, 4));
    }

    #[test]
    fn gradients_match_autograd_with_nonzero_eps_mean_pooling_and_three_classes() {
        let _torch_seed = crate::rng::seed_torch(5);
        let model = gin(3, Pooling::Mean);
        let (gin_body, _) = model.gin_parts().expect("gin");
        set(&gin_body.convs[0].eps, &[0.25]);
        set(&gin_body.convs[3].eps, &[-0.5]);
        let mut graphs = synthetic::generate(10, 5).graphs;
        // An isolated node, a graph without edges, an empty graph, and a third class.
        graphs.push(graph(1, &[], 2));
        graphs.push(graph(3, &[], 2));
        graphs.push(graph(0, &[], 1));
        graphs.push(graph(4, &[(0, 1), (1, 2), (2, 3), (3, 0), (0, 2)], 2));
        assert_matches_autograd(model, &batch_of(&graphs));
    }

    #[test]
    fn a_single_node_batch_is_normalised_with_the_running_statistics_as_in_autograd() {
        let _torch_seed = crate::rng::seed_torch(6);
        let model = gin(2, Pooling::Sum);
        let (gin_body, _) = model.gin_parts().expect("gin");
        for bn in &gin_body.bns {
            let h = bn.running_var.size()[0] as usize;
            set(&bn.running_mean, &vec![0.3; h]);
            set(&bn.running_var, &vec![2.0; h]);
        }
        assert_matches_autograd(model, &batch_of(&[graph(1, &[], 1)]));
    }

    #[test]
    fn declines_what_it_does_not_cover() {
        let _torch_seed = crate::rng::seed_torch(7);
        let batches = make_batches(
            &synthetic::generate(8, 7),
            &(0..8).collect::<Vec<_>>(),
            4,
            &FeatureSpec::OneHotDegree { max_degree: MAX_DEGREE },
            Device::Cpu,
        )
        .expect("batches");
        let model = gin(2, Pooling::Sum);
        model.train_only_last_conv_and_head();
        let opt = FlatAdam::new(model.var_store(), 0.01, 0.0).expect("optimizer");
        assert!(GinCpuTrainer::new(&model, &opt, &batches).expect("checked").is_none(), "frozen parameters");

        let features = FeatureSpec::OneHotDegree { max_degree: MAX_DEGREE };
        let spec = ModelSpec::published(Arch::Gcn, features.dim(), 16, 2, features);
        let gcn = GnnModel::new(spec, Device::Cpu).expect("model");
        let opt = FlatAdam::new(gcn.var_store(), 0.01, 0.0).expect("optimizer");
        assert!(GinCpuTrainer::new(&gcn, &opt, &batches).expect("checked").is_none(), "not a GIN");
    }
}
