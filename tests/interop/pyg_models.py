"""PyTorch Geometric's own model classes as gcleaner runs them (gcleaner.model/v2 specs).

A v2 model is `Classifier` below: a BasicGNN (torch_geometric.nn.models.GIN, GCN, GAT, GraphSAGE)
at `gnn`, global add/mean/max pooling, and a torch_geometric.nn.MLP or torch.nn.Linear at `head`,
then log_softmax. `build_model(spec)` constructs it from a v2 spec alone.

  build --out DIR [--seed S]
      Every architecture with every jk mode (none, last, cat, max), pooling (add, mean, max) and
      head (MLP with batch norm, MLP without, Linear), with other options (norm, out_channels,
      act_first, GIN train_eps, GAT heads/concat, MLP plain_last, one-layer models) varied across
      the cases. Batch-norm weights and running statistics and GIN's eps are randomised so every
      tensor matters. Writes DIR/graphs.json, DIR/<case>.safetensors (spec embedded) and
      DIR/expected.json with PyG's eval- and train-mode log-probabilities, plus files of models
      gcleaner must refuse (DIR/refuse_*.safetensors, listed under "refusals").
  refusals --out DIR
      Only the files of models gcleaner must refuse, and DIR/refusals.json listing them.
  model --spec FILE --out FILE [--seed S]
      A randomly initialised PyG model for a v2 spec (batch-norm statistics randomised), saved
      with the spec embedded.
  check --graphs FILE --results FILE
      FILE lists {"weights": path, "log_probs": [[...]]} computed by gcleaner on the graphs (a
      gcleaner JSON dataset; features "node_attributes"). Each file is loaded into the PyG class
      its embedded spec describes with load_state_dict(strict=True) and its eval
      log-probabilities are compared (max |difference| <= 1e-4). Exit status 1 on failure.
"""
import argparse
import copy
import itertools
import json
import os
import sys

import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn
from torch_geometric.nn import MLP, global_add_pool, global_max_pool, global_mean_pool
from torch_geometric.nn.models import GAT, GCN, GIN, GraphSAGE

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pyg_reference import IN_FEATURES, NUM_CLASSES, batch_tensors, random_graphs  # noqa: E402

TOLERANCE = 1e-4
HIDDEN = 16
GNN_CLASSES = {"GIN": GIN, "GCN": GCN, "GAT": GAT, "GraphSAGE": GraphSAGE}
POOLS = {"add": global_add_pool, "mean": global_mean_pool, "max": global_max_pool}


class Classifier(nn.Module):
    """gnn -> pool -> head -> log_softmax; state_dict keys gnn.* and head.*."""

    def __init__(self, gnn, pool, head):
        super().__init__()
        self.gnn, self.head, self.pool = gnn, head, POOLS[pool]

    def forward(self, x, edge_index, batch, edge_weight=None):
        h = self.gnn(x, edge_index) if edge_weight is None else self.gnn(x, edge_index, edge_weight=edge_weight)
        return F.log_softmax(self.head(self.pool(h, batch, size=int(batch.max()) + 1)), dim=-1)


def build_model(spec):
    """The PyG model a v2 spec describes: its gnn and head entries are constructor arguments."""
    gnn = dict(spec["gnn"])
    cls = GNN_CLASSES[gnn.pop("class")]
    gnn.pop("in_channels", None)
    model_gnn = cls(in_channels=spec["in_features"], **gnn)
    head = dict(spec["head"])
    kind = head.pop("class")
    if kind == "MLP":
        model_head = MLP(**head)
    else:
        width = gnn.get("out_channels") or gnn["hidden_channels"]
        model_head = nn.Linear(head.get("in_features", width), head.get("out_features", spec["num_classes"]),
                               bias=head.get("bias", True))
    return Classifier(model_gnn, spec["pool"], model_head)


def spec_for(arch, jk, pool, head, k):
    """A v2 spec for one case; options other than jk/pool/head vary with the case number k."""
    gnn = {"class": arch, "hidden_channels": HIDDEN, "num_layers": 1 if k % 7 == 3 else 3,
           "out_channels": 12 if k % 3 == 1 else None, "dropout": 0.0, "act": "relu",
           "act_first": k % 5 == 2, "norm": "batch_norm" if k % 2 == 0 else None, "jk": jk}
    if arch == "GIN":
        gnn["train_eps"] = k % 2 == 1
    if arch == "GAT":
        gnn["heads"] = 2
        gnn["concat"] = k % 4 != 3
    width = gnn["out_channels"] or HIDDEN
    if head == "linear":
        head_spec = {"class": "Linear", "in_features": width, "out_features": NUM_CLASSES, "bias": True}
    else:
        head_spec = {"class": "MLP", "channel_list": [width, 10, NUM_CLASSES],
                     "norm": "batch_norm" if head == "mlp_bn" else None, "plain_last": k % 4 != 1}
    return {"format": "gcleaner.model/v2", "in_features": IN_FEATURES, "num_classes": NUM_CLASSES,
            "features": {"kind": "node_attributes", "dim": IN_FEATURES}, "gnn": gnn, "pool": pool,
            "head": head_spec}


def randomise(model, gen):
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm1d):
                module.weight.copy_(torch.rand(module.weight.shape, generator=gen) + 0.5)
                module.bias.copy_(torch.randn(module.bias.shape, generator=gen) * 0.5)
                module.running_mean.copy_(torch.randn(module.running_mean.shape, generator=gen) * 0.5)
                module.running_var.copy_(torch.rand(module.running_var.shape, generator=gen) * 1.5 + 0.5)
                module.num_batches_tracked.fill_(7)
            if hasattr(module, "eps") and isinstance(getattr(module, "eps"), torch.Tensor) and module.eps.numel() == 1:
                module.eps.fill_(0.25)


def save(path, model, spec):
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, path, metadata={"gcleaner.spec": json.dumps(spec)})


def write_refusals(out):
    """PyG models with modules gcleaner cannot run, each saved with a spec that leaves the
    module out (as a user might): loading must refuse them, naming the module."""
    refusals = []

    def refuse(name, model, spec, module):
        path = os.path.join(out, f"refuse_{name}.safetensors")
        save(path, model, spec)
        refusals.append({"name": name, "weights": os.path.basename(path), "module": module})

    base = spec_for("GAT", None, "add", "linear", 0)
    # GATConv with edge features: the spec (wrongly) leaves edge_dim out.
    m = Classifier(GAT(IN_FEATURES, HIDDEN, 3, heads=2, edge_dim=4), "add", nn.Linear(HIDDEN, NUM_CLASSES))
    refuse("gat_edge_dim", m, base, "gnn.convs.0")
    m = Classifier(GAT(IN_FEATURES, HIDDEN, 3, heads=2, v2=True), "add", nn.Linear(HIDDEN, NUM_CLASSES))
    refuse("gatv2", m, base, "gnn.convs.0")
    m = Classifier(GAT(IN_FEATURES, HIDDEN, 3, heads=2, residual=True), "add", nn.Linear(HIDDEN, NUM_CLASSES))
    refuse("gat_residual", m, base, "gnn.convs.0.res")
    gin = spec_for("GIN", "max", "add", "linear", 1)
    m = Classifier(GIN(IN_FEATURES, HIDDEN, 3, out_channels=12, jk="lstm", train_eps=True), "add",
                   nn.Linear(12, NUM_CLASSES))
    refuse("gin_jk_lstm", m, gin, "gnn.jk.att")
    gcn = spec_for("GCN", None, "add", "linear", 1)
    m = Classifier(GCN(IN_FEATURES, HIDDEN, 3, out_channels=12, norm="layer_norm"), "add", nn.Linear(12, NUM_CLASSES))
    refuse("gcn_layer_norm", m, gcn, "gnn.norms.0")
    sage = spec_for("GraphSAGE", None, "add", "mlp_bn", 1)
    head = nn.Sequential(nn.Linear(12, 10), nn.ReLU(), nn.Linear(10, NUM_CLASSES))
    m = Classifier(GraphSAGE(IN_FEATURES, HIDDEN, 3, out_channels=12), "add", head)
    refuse("sage_custom_head", m, sage, "head.0")
    return refusals


def build(args):
    os.makedirs(args.out, exist_ok=True)
    torch.set_num_threads(1)
    gen = torch.Generator().manual_seed(args.seed)
    graphs = random_graphs(gen, args.graphs)
    x, edge_index, batch = batch_tensors(graphs)
    with open(os.path.join(args.out, "graphs.json"), "w") as f:
        json.dump({"format": "gcleaner.graphs/v1", "graphs": graphs}, f)

    cases = []
    combos = itertools.product(GNN_CLASSES, [None, "last", "cat", "max"], ["add", "mean", "max"],
                               ["mlp_bn", "mlp", "linear"])
    for k, (arch, jk, pool, head) in enumerate(combos):
        spec = spec_for(arch, jk, pool, head, k)
        torch.manual_seed(args.seed * 1000 + k)
        model = build_model(spec)
        randomise(model, gen)
        name = f"{arch.lower()}_jk-{jk or 'none'}_{pool}_{head}"
        path = os.path.join(args.out, f"{name}.safetensors")
        save(path, model, spec)
        edge_weight, edge_weights_json = None, None
        if arch == "GCN" and k % 3 == 0:
            per_graph = [(torch.rand(len(g["edges"]), generator=gen) * 1.5 + 0.1).tolist() for g in graphs]
            edge_weights_json = per_graph
            edge_weight = torch.cat([torch.tensor(w + w, dtype=torch.float32) for w in per_graph])
        model.eval()
        with torch.no_grad():
            log_probs = model(x, edge_index, batch, edge_weight)
            train_log_probs = copy.deepcopy(model).train()(x, edge_index, batch, edge_weight)
        options = {"jk": jk or "none", "pool": pool, "head": head, "norm": spec["gnn"]["norm"] or "none",
                   "out_channels": spec["gnn"]["out_channels"], "act_first": spec["gnn"]["act_first"],
                   "num_layers": spec["gnn"]["num_layers"], "edge_weights": edge_weight is not None}
        if arch == "GAT":
            options["concat"] = spec["gnn"]["concat"]
        cases.append({"name": name, "arch": arch, "options": options, "weights": os.path.basename(path),
                      "edge_weights": edge_weights_json, "log_probs": log_probs.tolist(),
                      "train_log_probs": train_log_probs.tolist()})

    refusals = write_refusals(args.out)
    with open(os.path.join(args.out, "expected.json"), "w") as f:
        json.dump({"graphs": "graphs.json", "cases": cases, "refusals": refusals}, f)


def refusals(args):
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "refusals.json"), "w") as f:
        json.dump(write_refusals(args.out), f)


def model(args):
    torch.manual_seed(args.seed)
    with open(args.spec) as f:
        spec = json.load(f)
    m = build_model(spec)
    randomise(m, torch.Generator().manual_seed(args.seed))
    save(args.out, m, spec)


def node_attribute_batch(graphs, spec):
    """The disjoint union as gcleaner batches it: both directions of every edge, features the
    spec's node attributes."""
    features = spec["features"]
    if features["kind"] != "node_attributes":
        raise SystemExit(f"check computes node_attributes features only, not {features['kind']}")
    dim = features["dim"]
    xs, eis, batch, offset = [], [], [], 0
    for gi, g in enumerate(graphs):
        xs.append(torch.tensor(g["node_attributes"], dtype=torch.float32).reshape(g["num_nodes"], dim))
        if g["edges"]:
            e = torch.tensor(g["edges"], dtype=torch.long).t() + offset
            eis.append(torch.cat([e, e.flip(0)], dim=1))
        batch += [gi] * g["num_nodes"]
        offset += g["num_nodes"]
    edge_index = torch.cat(eis, dim=1) if eis else torch.empty(2, 0, dtype=torch.long)
    return torch.cat(xs), edge_index, torch.tensor(batch, dtype=torch.long)


def check(args):
    torch.set_num_threads(1)
    with open(args.graphs) as f:
        graphs = json.load(f)["graphs"]
    with open(args.results) as f:
        results = json.load(f)
    failures = []
    for entry in results:
        path = entry["weights"]
        with safe_open(path, "pt") as f:
            spec = json.loads(f.metadata()["gcleaner.spec"])
        model = build_model(spec)
        try:
            model.load_state_dict(load_file(path), strict=True)
        except RuntimeError as e:
            failures.append(f"{path}: strict load failed: {e}")
            continue
        model.eval()
        x, edge_index, batch = node_attribute_batch(graphs, spec)
        with torch.no_grad():
            got = model(x, edge_index, batch)
        diff = (got - torch.tensor(entry["log_probs"])).abs().max().item()
        print(f"{os.path.basename(path)}: strict load ok, max |diff| {diff:.2e}")
        if not diff <= TOLERANCE:
            failures.append(f"{path}: max |diff| {diff}")
    if failures:
        print("\n".join(failures), file=sys.stderr)
        sys.exit(1)


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build")
    b.add_argument("--out", required=True)
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--graphs", type=int, default=24)
    m = sub.add_parser("model")
    m.add_argument("--spec", required=True)
    m.add_argument("--out", required=True)
    m.add_argument("--seed", type=int, default=0)
    r = sub.add_parser("refusals")
    r.add_argument("--out", required=True)
    c = sub.add_parser("check")
    c.add_argument("--graphs", required=True)
    c.add_argument("--results", required=True)
    args = p.parse_args()
    {"build": build, "model": model, "refusals": refusals, "check": check}[args.command](args)


if __name__ == "__main__":
    main()
