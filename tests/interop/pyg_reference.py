"""PyTorch Geometric reference for gcleaner's models (used by engine/tests/engine/interop_pyg.rs).

Builds the four published G-Cleaner architectures (GIN, GCN, GAT, GraphSAGE) with PyG layers,
saves their weights as safetensors with the gcleaner spec in the metadata, and writes the random
graphs (gcleaner JSON dataset format) and the log-probabilities PyG computes for them.

Cases per architecture:
  <arch>_random   fresh weights; BatchNorm affine weights and running statistics randomised and
                  GIN's eps set non-zero, so every saved tensor matters
  <arch>_trained  a few Adam steps on random labels in train mode (non-trivial running stats);
                  also records one train-mode forward pass (batch statistics)
plus gcn_weighted (GCNConv with per-edge weights), gin_f16 and gcn_bf16 (half-precision files).
The GCN files carry the unused conv4, conv5 and bn1-bn5 of the published checkpoint.

Usage: python pyg_reference.py --out DIR [--seed 0]
Writes DIR/graphs.json, DIR/expected.json and DIR/<case>.safetensors.
"""
import argparse
import copy
import json
import os

import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import nn
from torch_geometric.nn import GATConv, GCNConv, GINConv, SAGEConv, global_add_pool, global_mean_pool

HIDDEN = 64
IN_FEATURES = 7
NUM_CLASSES = 3
LAYERS = {"gin": 5, "gcn": 3, "gat": 3, "sage": 7}
POOLING = {"gin": "sum", "gcn": "sum", "gat": "sum", "sage": "mean"}


class Classifier(nn.Module):
    """conv{i} / bn{i} blocks, pooling, fc1 -> ReLU -> fc2 -> log_softmax, named as published."""

    def __init__(self, arch, in_dim, hidden, classes, layers, unused_extras=False):
        super().__init__()
        self.arch, self.layers = arch, layers
        for i in range(1, layers + 1):
            d = in_dim if i == 1 else hidden
            if arch == "gin":
                conv = GINConv(nn.Sequential(nn.Linear(d, hidden), nn.ReLU(), nn.Linear(hidden, hidden)))
            elif arch == "gcn":
                conv = GCNConv(d, hidden)
            elif arch == "gat":
                conv = GATConv(d, hidden, heads=1)
            else:
                conv = SAGEConv(d, hidden, aggr="mean")
            setattr(self, f"conv{i}", conv)
            if arch in ("gin", "sage"):
                setattr(self, f"bn{i}", nn.BatchNorm1d(hidden))
        if unused_extras:
            # The published GCN checkpoint defines these but its forward never uses them.
            for i in range(layers + 1, 6):
                setattr(self, f"conv{i}", GCNConv(hidden, hidden))
            for i in range(1, 6):
                setattr(self, f"bn{i}", nn.BatchNorm1d(hidden))
        self.fc1 = nn.Linear(hidden, hidden)
        self.fc2 = nn.Linear(hidden, classes)

    def forward(self, x, edge_index, batch, edge_weight=None):
        for i in range(1, self.layers + 1):
            conv = getattr(self, f"conv{i}")
            if self.arch == "gcn":
                x = F.relu(F.normalize(conv(x, edge_index, edge_weight), p=2, dim=1))
            elif self.arch == "gat":
                x = F.relu(F.normalize(conv(x, edge_index), p=2, dim=1))
            else:
                x = getattr(self, f"bn{i}")(F.relu(conv(x, edge_index)))
        pool = global_mean_pool if self.arch == "sage" else global_add_pool
        x = pool(x, batch)
        return F.log_softmax(self.fc2(F.relu(self.fc1(x))), dim=-1)


def random_graphs(gen, count):
    graphs = []
    for g in range(count):
        n = 1 if g == 0 else int(torch.randint(2, 15, (1,), generator=gen))
        edges = set()
        if n > 1:
            p = float(torch.rand(1, generator=gen)) * 0.5 + 0.1
            for u in range(n):
                for v in range(u + 1, n):
                    if float(torch.rand(1, generator=gen)) < p:
                        edges.add((u, v))
        if g == 1:
            edges = set()  # a graph of isolated nodes
        attrs = torch.randn(n, IN_FEATURES, generator=gen)
        graphs.append({
            "num_nodes": n,
            "edges": sorted([list(e) for e in edges]),
            "label": int(torch.randint(0, NUM_CLASSES, (1,), generator=gen)),
            "node_attributes": attrs.tolist(),
        })
    return graphs


def batch_tensors(graphs):
    """Disjoint union: x, edge_index (each graph's edges, then the same edges reversed), batch."""
    xs, eis, batch, offset = [], [], [], 0
    for gi, g in enumerate(graphs):
        xs.append(torch.tensor(g["node_attributes"], dtype=torch.float32).reshape(g["num_nodes"], IN_FEATURES))
        if g["edges"]:
            e = torch.tensor(g["edges"], dtype=torch.long).t() + offset
            eis.append(torch.cat([e, e.flip(0)], dim=1))
        batch += [gi] * g["num_nodes"]
        offset += g["num_nodes"]
    edge_index = torch.cat(eis, dim=1) if eis else torch.empty(2, 0, dtype=torch.long)
    return torch.cat(xs), edge_index, torch.tensor(batch, dtype=torch.long)


def symmetric_edge_weights(graphs, gen):
    """One weight per undirected edge (both directions share it), and the per-directed-edge tensor."""
    per_graph, flat = [], []
    for g in graphs:
        w = (torch.rand(len(g["edges"]), generator=gen) * 1.5 + 0.1).tolist()
        per_graph.append(w)
        flat.append(torch.tensor(w + w, dtype=torch.float32))
    return per_graph, torch.cat(flat) if flat else torch.empty(0)


def spec_for(arch):
    return {
        "format": "gcleaner.model/v1",
        "arch": arch,
        "in_features": IN_FEATURES,
        "hidden": HIDDEN,
        "num_classes": NUM_CLASSES,
        "num_layers": LAYERS[arch],
        "pooling": POOLING[arch],
        "features": {"kind": "node_attributes", "dim": IN_FEATURES},
    }


def randomise_buffers(model, gen):
    with torch.no_grad():
        for name, module in model.named_modules():
            if isinstance(module, nn.BatchNorm1d):
                module.weight.copy_(torch.rand(module.weight.shape, generator=gen) + 0.5)
                module.bias.copy_(torch.randn(module.bias.shape, generator=gen) * 0.5)
                module.running_mean.copy_(torch.randn(module.running_mean.shape, generator=gen) * 0.5)
                module.running_var.copy_(torch.rand(module.running_var.shape, generator=gen) * 1.5 + 0.5)
                module.num_batches_tracked.fill_(7)
            elif isinstance(module, GINConv):
                module.eps.fill_(0.25)


def train_briefly(model, x, edge_index, batch, labels, steps=10):
    opt = torch.optim.Adam(model.parameters(), lr=0.005)
    model.train()
    for _ in range(steps):
        opt.zero_grad()
        F.nll_loss(model(x, edge_index, batch), labels).backward()
        opt.step()


def used_names(arch, state):
    """Names the gcleaner spec uses: everything except the published GCN's unused extras."""
    if arch != "gcn":
        return set(state)
    keep = set()
    for name in state:
        head = name.split(".")[0]
        if head in ("fc1", "fc2") or (head.startswith("conv") and int(head[4:]) <= LAYERS["gcn"]):
            keep.add(name)
    return keep


def write_case(out, cases, name, arch, model, state, x, edge_index, batch, edge_weight=None,
               edge_weights_json=None, train_mode=False):
    spec = spec_for(arch)
    path = os.path.join(out, f"{name}.safetensors")
    save_file({k: v.contiguous() for k, v in state.items()}, path, metadata={"gcleaner.spec": json.dumps(spec)})
    model.eval()
    with torch.no_grad():
        log_probs = model(x, edge_index, batch, edge_weight)
        train_log_probs = None
        if train_mode:
            twin = copy.deepcopy(model).train()
            train_log_probs = twin(x, edge_index, batch, edge_weight).tolist()
    cases.append({
        "name": name,
        "arch": arch,
        "weights": os.path.basename(path),
        "edge_weights": edge_weights_json,
        "log_probs": log_probs.tolist(),
        "train_log_probs": train_log_probs,
        "ignored_tensors": sorted(set(state) - used_names(arch, state)),
    })


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--graphs", type=int, default=24)
    args = p.parse_args()
    os.makedirs(args.out, exist_ok=True)
    torch.set_num_threads(1)
    gen = torch.Generator().manual_seed(args.seed)
    graphs = random_graphs(gen, args.graphs)
    x, edge_index, batch = batch_tensors(graphs)
    labels = torch.tensor([g["label"] for g in graphs], dtype=torch.long)
    with open(os.path.join(args.out, "graphs.json"), "w") as f:
        json.dump({"format": "gcleaner.graphs/v1", "graphs": graphs}, f)

    cases = []
    for k, arch in enumerate(["gin", "gcn", "gat", "sage"]):
        extras = arch == "gcn"
        torch.manual_seed(args.seed * 100 + k)
        model = Classifier(arch, IN_FEATURES, HIDDEN, NUM_CLASSES, LAYERS[arch], unused_extras=extras)
        randomise_buffers(model, gen)
        write_case(args.out, cases, f"{arch}_random", arch, model, model.state_dict(), x, edge_index, batch)

        torch.manual_seed(args.seed * 100 + 50 + k)
        model = Classifier(arch, IN_FEATURES, HIDDEN, NUM_CLASSES, LAYERS[arch], unused_extras=extras)
        train_briefly(model, x, edge_index, batch, labels)
        state = copy.deepcopy(model.state_dict())
        write_case(args.out, cases, f"{arch}_trained", arch, model, state, x, edge_index, batch, train_mode=True)

        if arch == "gcn":
            per_graph, flat = symmetric_edge_weights(graphs, gen)
            write_case(args.out, cases, "gcn_weighted", arch, model, state, x, edge_index, batch,
                       edge_weight=flat, edge_weights_json=per_graph)

        if arch in ("gin", "gcn"):
            # Half-precision files: the reference runs on the same rounded values in f32.
            dtype = torch.float16 if arch == "gin" else torch.bfloat16
            half = {k: (v.to(dtype) if v.is_floating_point() else v) for k, v in state.items()}
            model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in half.items()})
            label = "f16" if dtype == torch.float16 else "bf16"
            write_case(args.out, cases, f"{arch}_{label}", arch, model, half, x, edge_index, batch)

    with open(os.path.join(args.out, "expected.json"), "w") as f:
        json.dump({"graphs": "graphs.json", "cases": cases}, f)


if __name__ == "__main__":
    main()
