"""PyTorch Geometric reference for `make bench`: times the robust-mode unlearning epoch
of `gcleaner purify` written as a PyG user would write it, and prints one JSON line.

Input: the directory engine/benches/unlearn_epoch.rs writes with `--sample-out DIR`: the
unlearning and held-out graphs of a 33-graph AIDS sample with their explainer positions, the
trigger, the unlearning configuration (DIR/sample.json) and the backdoored model the engine
unlearns (DIR/model.safetensors, PyG parameter names). Both sides start from the same weights
and graphs; only the random positions and edge dropout draws differ.

One epoch, as the engine's:
  - every unlearning graph at its explainer positions plus `positions` random node sets, new
    sets every epoch; in each copy the trigger's edges are montaged in (edges among the chosen
    nodes removed, the pattern's edges added, each dropped with probability `pattern_dropout`)
    and the one-hot degree features recomputed; copies shuffled into batches of `batch_size`;
  - the frozen teacher's outputs on the clean graphs once per run, looked up per copy; per batch
    the student on the triggered copies and on the clean unlearning graphs (each graph once, each
    copy taking its graph's row, both in one pass through the trained block and the head, as the
    engine does);
    every term on log_softmax(logits / scale), the engine's logit scale (median top-two margin
    on the clean unlearning graphs);
    loss KL(teacher || student) + ce_weight * CE(triggered) (class-balanced, non-target graphs
    weighted up) + ce_weight * CE(clean) (class-balanced) + mixup_weight * the mixup term (each
    clean row's pooled embedding mixed with a random unlearning graph's, soft cross-entropy of
    the head against the teacher's probabilities mixed alike); Adam on the last GINConv, its
    BatchNorm, fc1 and fc2; BatchNorm in eval mode;
  - then the engine's per-epoch monitoring, which its epoch clock includes: predictions on the
    clean unlearning and held-out graphs, the trigger's flip rate on the held-out graphs at
    fixed positions (their montage built once per run, as the engine does), the per-class recall
    drop, and a snapshot of the weights;
  - inputs that stay the same for the whole run (the clean unlearning graphs, the watched clean
    graphs, the held-out triggered copies) go through the frozen first blocks once per run and
    through the trained last block and head per use, as the engine does.

Two montages are timed, because "a PyG loop" can mean either:
  - `per_graph`: each copy becomes its own `Data` object (a transform), collated with
    `Batch.from_data_list`, as a Dataset/DataLoader pipeline does;
  - `batched`: the clean copies are collated with `Batch.from_data_list` and the trigger is
    written into the collated batch with vectorised tensor ops (the faster of the two).
"""
import argparse
import copy
import json
import os
import random
import statistics
import time

import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch_geometric.data import Batch, Data
from torch_geometric.nn import global_add_pool

from pyg_gin_epoch import GIN  # the GIN of the training benchmark: conv -> ReLU -> BatchNorm


def one_hot_degree(edge_index, num_nodes, max_degree):
    # edge_index holds both directions, so the out-degree is the degree
    degree = torch.bincount(edge_index[0], minlength=num_nodes)
    return F.one_hot(degree.clamp(max=max_degree), max_degree + 1).float()


def to_data(graph, max_degree):
    n = graph["num_nodes"]
    pairs = torch.tensor(graph["edges"], dtype=torch.long).reshape(-1, 2).t()
    edge_index = torch.cat([pairs, pairs.flip(0)], dim=1)
    return Data(x=one_hot_degree(edge_index, n, max_degree), edge_index=edge_index,
                y=torch.tensor([graph["label"]]), num_nodes=n)


def load_engine_model(path, model, num_layers):
    """The engine's file names blocks conv1..convL / bn1..bnL; pyg_gin_epoch.GIN lists them."""
    renamed = {}
    for name, value in load_file(path).items():
        for i in range(1, num_layers + 1):
            for old, new in ((f"conv{i}.", f"convs.{i - 1}."), (f"bn{i}.", f"bns.{i - 1}.")):
                if name.startswith(old):
                    name = new + name[len(old):]
        renamed[name] = value
    model.load_state_dict(renamed)


class Unlearning:
    def __init__(self, sample, model, args):
        cfg = sample["config"]
        self.cfg = cfg
        self.max_degree = sample["max_degree"]
        self.target = sample["target"]
        self.classes = sample["num_classes"]
        self.train = [to_data(g, self.max_degree) for g in sample["train"]]
        self.train_positions = [torch.tensor(g["positions"], dtype=torch.long) for g in sample["train"]]
        self.holdout = [to_data(g, self.max_degree) for g in sample["holdout"]]
        size = sample["trigger"]["size"]
        self.size = size
        # slot pairs (i, j), i < j, and which of them the pattern connects
        self.pairs = torch.tensor([(i, j) for i in range(size) for j in range(i + 1, size)], dtype=torch.long)
        edges = {tuple(e) for e in sample["trigger"]["edges"]}
        self.pattern = torch.tensor([tuple(p) in edges for p in self.pairs.tolist()])

        labels = torch.tensor([g["label"] for g in sample["train"]])
        counts = torch.bincount(labels, minlength=self.classes).float()
        present = (counts > 0).sum()
        self.class_w = torch.where(counts > 0, len(labels) / (present * counts.clamp(min=1)), torch.zeros(()))
        is_other = (torch.arange(self.classes) != self.target).float()
        self.trig_w = self.class_w * (1 + cfg["non_target_weight"] * is_other)

        self.student = model
        self.student.eval()  # BatchNorm on its running statistics throughout
        self.train_batch = Batch.from_data_list(self.train)
        self.holdout_batch = Batch.from_data_list(self.holdout)
        # every block but the last is frozen: fixed inputs go through them once
        self.frozen = len(self.student.convs) - 1
        self.train_prefix = self.prefix(self.train_batch.x, self.train_batch.edge_index)
        self.holdout_prefix = self.prefix(self.holdout_batch.x, self.holdout_batch.edge_index)
        self.teacher = self.fine_tuned_teacher()
        self.scale = self.logit_scale() if cfg.get("logit_scaling", True) else 1.0
        self.teacher_scaled = self.scaled(self.teacher_out)
        trainable = [self.student.convs[-1], self.student.bns[-1], self.student.fc1, self.student.fc2]
        for p in self.student.parameters():
            p.requires_grad_(False)
        for module in trainable:
            for p in module.parameters():
                p.requires_grad_(True)
        self.opt = torch.optim.Adam([p for p in self.student.parameters() if p.requires_grad], lr=cfg["lr"])

        # the held-out graphs' fixed placements: explainer positions plus random node sets
        # (graphs smaller than the trigger cannot carry it and are left out, as the engine does)
        self.holdout_places, self.holdout_of_place = [], []
        for h, (g, data) in enumerate(zip(sample["holdout"], self.holdout)):
            if data.num_nodes < size:
                continue
            sets = [torch.tensor(g["positions"], dtype=torch.long)]
            sets += [torch.randperm(data.num_nodes)[:size] for _ in range(cfg["positions"])]
            self.holdout_places += [(data, s) for s in sets]
            self.holdout_of_place += [h] * len(sets)
        self.holdout_of_place = torch.tensor(self.holdout_of_place, dtype=torch.long)
        self.holdout_montages = {}
        self.start_train_recall = self.recall(self.train_batch, self.train_prefix)
        self.start_holdout_recall = self.recall(self.holdout_batch, self.holdout_prefix)

    @torch.no_grad()
    def prefix(self, x, edge_index):
        return self.student.blocks(x, edge_index, 0, self.frozen)

    def from_prefix(self, prefix, edge_index, batch):
        """The student's output given the frozen blocks' output."""
        return self.student.head(global_add_pool(self.student.blocks(prefix, edge_index, self.frozen), batch))

    def fine_tuned_teacher(self):
        teacher = copy.deepcopy(self.student)
        opt = torch.optim.Adam(teacher.parameters(), lr=self.cfg["lr"])
        batch = self.train_batch
        # As the engine: null means the mode's default, the input model itself in robust mode.
        epochs = self.cfg.get("teacher_epochs")
        if epochs is None:
            epochs = 20 if self.cfg.get("mode") == "paper" else 0
        for _ in range(epochs):
            opt.zero_grad()
            F.nll_loss(teacher(batch.x, batch.edge_index, batch.batch), batch.y).backward()
            opt.step()
        for p in teacher.parameters():
            p.requires_grad_(False)
        with torch.no_grad():
            self.teacher_out = teacher(batch.x, batch.edge_index, batch.batch)
        return teacher

    @torch.no_grad()
    def logit_scale(self):
        """The engine's logit scale: the median top-two margin on the clean unlearning graphs
        (the upper median, as the engine takes it), at least 1."""
        b = self.train_batch
        top = self.student(b.x, b.edge_index, b.batch).topk(2, dim=-1).values
        margins = sorted((top[:, 0] - top[:, 1]).tolist())
        return max(1.0, margins[len(margins) // 2])

    def scaled(self, log_probs):
        # The model returns log-probabilities; dividing them by the scale and normalising again
        # equals log_softmax(logits / scale), log_softmax being shift-invariant.
        return F.log_softmax(log_probs / self.scale, dim=-1)

    # --- the two montages -------------------------------------------------------------------

    def kept_pairs(self, count, dropout):
        return self.pattern & (torch.rand(count, len(self.pairs)) >= dropout)

    def montage_per_graph(self, copies, dropout):
        """A triggered `Data` per copy, collated: (clean batch, triggered x, edge_index)."""
        keep = self.kept_pairs(len(copies), dropout)
        triggered = []
        for (data, nodes), kept in zip(copies, keep):
            chosen = torch.zeros(data.num_nodes, dtype=torch.bool)
            chosen[nodes] = True
            ei = data.edge_index
            outside = ei[:, ~(chosen[ei[0]] & chosen[ei[1]])]
            pairs = self.pairs[kept & (self.pairs[:, 1] < len(nodes))]
            added = nodes[pairs].t()
            ei = torch.cat([outside, added, added.flip(0)], dim=1)
            triggered.append(Data(x=one_hot_degree(ei, data.num_nodes, self.max_degree), edge_index=ei,
                                  y=data.y, num_nodes=data.num_nodes))
        clean = Batch.from_data_list([data for data, _ in copies])
        trig = Batch.from_data_list(triggered)
        return clean, trig.x, trig.edge_index

    def montage_batched(self, copies, dropout):
        """The clean copies collated, the trigger written into the collated batch."""
        clean = Batch.from_data_list([data for data, _ in copies])
        slots = torch.full((len(copies), self.size), -1, dtype=torch.long)
        for b, (_, nodes) in enumerate(copies):
            slots[b, : len(nodes)] = nodes
        nodes = torch.where(slots >= 0, slots + clean.ptr[:-1, None], slots)
        chosen = torch.zeros(clean.num_nodes, dtype=torch.bool)
        chosen[nodes[nodes >= 0]] = True
        ei = clean.edge_index
        outside = ei[:, ~(chosen[ei[0]] & chosen[ei[1]])]
        src, dst = nodes[:, self.pairs[:, 0]], nodes[:, self.pairs[:, 1]]
        added_mask = self.kept_pairs(len(copies), dropout) & (dst >= 0)
        added = torch.stack([src[added_mask], dst[added_mask]])
        ei = torch.cat([outside, added, added.flip(0)], dim=1)
        return clean, one_hot_degree(ei, clean.num_nodes, self.max_degree), ei

    # --- one epoch --------------------------------------------------------------------------

    def train_epoch(self, montage):
        cfg = self.cfg
        copies = []
        for g, (data, explained) in enumerate(zip(self.train, self.train_positions)):
            copies.append((data, explained, g))
            copies += [(data, torch.randperm(data.num_nodes)[: self.size], g) for _ in range(cfg["positions"])]
        random.shuffle(copies)
        batches = [copies[i : i + cfg["batch_size"]] for i in range(0, len(copies), cfg["batch_size"])]
        random.shuffle(batches)
        losses = []
        for chunk in batches:
            clean, trig_x, trig_ei = montage([(data, nodes) for data, nodes, _ in chunk], cfg["pattern_dropout"])
            # the frozen teacher's clean outputs, computed once per run (as the engine does)
            rows = torch.tensor([g for _, _, g in chunk])
            teacher = self.teacher_scaled[rows]
            # the clean unlearning graphs and the triggered copies share one pass through the
            # trained block and the head (as the engine does): the copies through the frozen
            # blocks first, then both batches joined as one disjoint union
            b = self.train_batch
            n = b.num_graphs
            trig_prefix = self.prefix(trig_x, trig_ei)
            joined = torch.cat([self.train_prefix, trig_prefix])
            joined_ei = torch.cat([b.edge_index, trig_ei + self.train_prefix.size(0)], 1)
            joined_batch = torch.cat([b.batch, clean.batch + n])
            pooled = global_add_pool(self.student.blocks(joined, joined_ei, self.frozen), joined_batch, size=n + len(chunk))
            logits = self.student.head(pooled)
            embedding = pooled[:n]
            student_clean = self.scaled(logits[:n][rows])
            student_trig = self.scaled(logits[n:])
            loss = (F.kl_div(student_clean, teacher, log_target=True, reduction="batchmean")
                    + cfg["ce_weight"] * F.nll_loss(student_trig, clean.y, weight=self.trig_w)
                    + cfg["ce_weight"] * F.nll_loss(student_clean, clean.y, weight=self.class_w))
            if cfg.get("mixup_weight", 0) > 0:
                # each row's embedding mixed with a random unlearning graph's, the teacher's
                # probabilities mixed alike, soft cross-entropy of the head's answer
                partners = torch.randint(0, embedding.size(0), (len(rows),))
                mix = torch.rand(len(rows), 1)
                mixed = embedding[rows] * mix + embedding[partners] * (1 - mix)
                probs = self.teacher_scaled.exp()
                soft = probs[rows] * mix + probs[partners] * (1 - mix)
                loss = loss - cfg["mixup_weight"] * (soft * self.scaled(self.student.head(mixed))).sum(-1).mean()
            self.opt.zero_grad()
            loss.backward()
            self.opt.step()
            losses.append(loss.item())
        return statistics.mean(losses)

    @torch.no_grad()
    def predict_from(self, prefix, edge_index, batch):
        return self.from_prefix(prefix, edge_index, batch).argmax(-1)

    def recall(self, batch, prefix):
        pred = self.predict_from(prefix, batch.edge_index, batch.batch)
        hits = torch.bincount(batch.y[pred == batch.y], minlength=self.classes).float()
        return hits / torch.bincount(batch.y, minlength=self.classes).clamp(min=1)

    def monitor(self, montage):
        drop = max((self.start_train_recall - self.recall(self.train_batch, self.train_prefix)).max().item(),
                   (self.start_holdout_recall - self.recall(self.holdout_batch, self.holdout_prefix)).max().item())
        h = self.holdout_batch
        clean_pred = self.predict_from(self.holdout_prefix, h.edge_index, h.batch)[self.holdout_of_place]
        if montage not in self.holdout_montages:
            clean, x, ei = montage(self.holdout_places, 0.0)
            self.holdout_montages[montage] = (clean, self.prefix(x, ei), ei)
        clean, prefix, ei = self.holdout_montages[montage]
        trig_pred = self.predict_from(prefix, ei, clean.batch)
        candidates = clean_pred != self.target
        flip = (trig_pred[candidates] == self.target).float().mean().item() if candidates.any() else 0.0
        snapshot = copy.deepcopy(self.student.state_dict())
        return flip, drop, snapshot


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--sample", required=True, help="directory written by unlearn_epoch.rs --sample-out")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--epochs", type=int, default=0, help="default: the engine's unlearning epochs")
    p.add_argument("--variants", default="per_graph,batched", help="montages to time, comma-separated")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    with open(os.path.join(args.sample, "sample.json")) as f:
        sample = json.load(f)
    epochs = args.epochs or sample["config"]["epochs"]
    result = {"threads": torch.get_num_threads(), "torch": torch.__version__,
              "unlearning_graphs": len(sample["train"]), "epochs_timed": epochs - 1}
    for variant in args.variants.split(","):
        if variant not in ("per_graph", "batched"):
            p.error(f"unknown montage {variant!r}: per_graph or batched")
        torch.manual_seed(sample["seed"])
        random.seed(sample["seed"])
        model = GIN(sample["max_degree"] + 1, sample["hidden"], sample["num_classes"], sample["num_layers"])
        load_engine_model(os.path.join(args.sample, "model.safetensors"), model, sample["num_layers"])
        run = Unlearning(sample, model, args)
        montage = run.montage_per_graph if variant == "per_graph" else run.montage_batched
        epoch_s, train_s, losses = [], [], []
        for _ in range(epochs):
            start = time.perf_counter()
            losses.append(run.train_epoch(montage))
            trained = time.perf_counter()
            flip, _, _ = run.monitor(montage)
            end = time.perf_counter()
            epoch_s.append(end - start)
            train_s.append(trained - start)
        # the first epoch is dropped, as on the engine's side
        result[f"{variant}_epochs_s"] = epoch_s[1:]
        result[f"{variant}_epoch_s"] = statistics.median(epoch_s[1:])
        result[f"{variant}_epoch_min_s"] = min(epoch_s[1:])
        result[f"{variant}_train_s"] = statistics.median(train_s[1:])
        result[f"{variant}_loss_first"] = losses[0]
        result[f"{variant}_loss_last"] = losses[-1]
        result[f"{variant}_holdout_flip_last"] = flip
    print(json.dumps(result))


if __name__ == "__main__":
    main()
