"""PyTorch Geometric reference for `make bench`: times GIN training epochs on a TU dataset with the
same architecture, features and hyperparameters as `gcleaner train --arch gin`, and prints one
JSON line with seconds per epoch.

Two loops are timed, because "a PyG loop" can mean either:
  - `loader`: the idiomatic loop, a shuffled torch_geometric DataLoader collating every epoch;
  - `precollated`: batches collated once and visited in a shuffled order each epoch, which is what
    gcleaner does, so the comparison isolates the per-step cost.
"""
import argparse
import json
import random
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn
from torch_geometric.data import Batch, Data
from torch_geometric.loader import DataLoader
from torch_geometric.nn import GINConv, global_add_pool

from tu import read_tu


def load_tu(folder, max_degree):
    """The dataset's graphs as PyG `Data` with one-hot degree features (capped at `max_degree`)
    and labels mapped to class indices in sorted order, as gcleaner maps them."""
    tu_graphs = read_tu(folder)
    classes = sorted({g["label"] for g in tu_graphs})
    graphs = []
    for g in tu_graphs:
        n = g["num_nodes"]
        if g["edges"]:
            e = torch.tensor(g["edges"], dtype=torch.long).t()
            edge_index = torch.cat([e, e.flip(0)], dim=1)
        else:
            edge_index = torch.empty(2, 0, dtype=torch.long)
        deg = torch.zeros(n, dtype=torch.long)
        if edge_index.numel():
            deg.scatter_add_(0, edge_index[0], torch.ones(edge_index.size(1), dtype=torch.long))
        x = F.one_hot(deg.clamp(max=max_degree), max_degree + 1).float()
        graphs.append(Data(x=x, edge_index=edge_index, y=torch.tensor([classes.index(g["label"])])))
    return graphs, len(classes)


class GIN(nn.Module):
    def __init__(self, in_dim, hidden, classes, layers=5):
        super().__init__()
        self.convs = nn.ModuleList()
        self.bns = nn.ModuleList()
        for i in range(layers):
            mlp = nn.Sequential(nn.Linear(in_dim if i == 0 else hidden, hidden), nn.ReLU(), nn.Linear(hidden, hidden))
            self.convs.append(GINConv(mlp))
            self.bns.append(nn.BatchNorm1d(hidden))
        self.fc1 = nn.Linear(hidden, hidden)
        self.fc2 = nn.Linear(hidden, classes)

    def forward(self, x, edge_index, batch):
        return self.head(self.embed(x, edge_index, batch))

    def embed(self, x, edge_index, batch):
        """Pooled graph embeddings, the input of fc1."""
        return global_add_pool(self.blocks(x, edge_index), batch)

    def blocks(self, x, edge_index, start=0, end=None):
        """Node features after blocks start..end (all from start by default), x being the
        input of block start."""
        for conv, bn in list(zip(self.convs, self.bns))[start:end]:
            x = bn(F.relu(conv(x, edge_index)))
        return x

    def head(self, embedding):
        return F.log_softmax(self.fc2(F.relu(self.fc1(embedding))), dim=-1)


def run_epoch(model, opt, batches):
    model.train()
    for b in batches:
        opt.zero_grad()
        loss = F.nll_loss(model(b.x, b.edge_index, b.batch), b.y)
        loss.backward()
        opt.step()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--data", required=True)
    p.add_argument("--max-degree", type=int, required=True)
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=0.005)
    p.add_argument("--split", type=float, default=0.8)
    p.add_argument("--threads", type=int, default=0)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(10)
    random.seed(10)
    graphs, classes = load_tu(args.data, args.max_degree)
    order = list(range(len(graphs)))
    random.shuffle(order)
    train = [graphs[i] for i in order[: int(round(len(graphs) * args.split))]]
    result = {"graphs": len(train), "threads": torch.get_num_threads(), "torch": torch.__version__}
    for variant in ("loader", "precollated"):
        model = GIN(args.max_degree + 1, 64, classes)
        opt = torch.optim.Adam(model.parameters(), lr=args.lr)
        if variant == "loader":
            loader = DataLoader(train, batch_size=args.batch_size, shuffle=True)
            epoch = lambda: run_epoch(model, opt, loader)
        else:
            batches = [Batch.from_data_list(train[i : i + args.batch_size]) for i in range(0, len(train), args.batch_size)]
            def epoch():
                random.shuffle(batches)
                run_epoch(model, opt, batches)
        for _ in range(args.warmup):
            epoch()
        seconds = []
        for _ in range(args.epochs):
            start = time.perf_counter()
            epoch()
            seconds.append(time.perf_counter() - start)
        # The median epoch, as the Rust side reports: robust to bursts of other work.
        result[f"{variant}_seconds_per_epoch"] = statistics.median(seconds)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
