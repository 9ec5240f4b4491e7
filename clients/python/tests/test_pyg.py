"""export_pyg: a PyTorch Geometric model trained here, exported, purified by the live service,
downloaded and loaded back into PyG. gcleaner's own predictions (`gcleaner predict`) on the
same graphs check that both sides run the same model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import pytest
from conftest import QUICK_CONFIG, Service

import gcleaner

torch = pytest.importorskip("torch")
pyg_nn = pytest.importorskip("torch_geometric.nn")
from safetensors.torch import load_file  # noqa: E402  (needs torch)
from torch import nn  # noqa: E402
from torch.nn import functional as F  # noqa: E402

MAX_DEGREE = 10
IN_FEATURES = MAX_DEGREE + 1
HIDDEN = 16


def load_graphs(path: Path) -> tuple[Any, Any, Any, Any]:
    """A gcleaner JSON dataset as one PyG batch: one-hot degree features capped at MAX_DEGREE
    (gcleaner's `one_hot_degree`), both directions of each edge, graph ids and labels."""
    doc = json.loads(path.read_text())
    xs, edges, batch, labels, offset = [], [], [], [], 0
    for g, graph in enumerate(doc["graphs"]):
        n = graph["num_nodes"]
        degree = torch.zeros(n, dtype=torch.long)
        for u, v in graph["edges"]:
            degree[u] += 1
            degree[v] += 1
            edges += [(u + offset, v + offset), (v + offset, u + offset)]
        xs.append(F.one_hot(degree.clamp(max=MAX_DEGREE), IN_FEATURES).float())
        batch += [g] * n
        labels.append(graph["label"])
        offset += n
    edge_index = torch.tensor(edges, dtype=torch.long).t().contiguous()
    return torch.cat(xs), edge_index, torch.tensor(batch), torch.tensor(labels)


def train_briefly(model: nn.Module, graphs: tuple[Any, Any, Any, Any], epochs: int = 30) -> None:
    torch.manual_seed(0)
    x, edge_index, batch, y = graphs
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    model.train()
    for _ in range(epochs):
        optimizer.zero_grad()
        F.nll_loss(model(x, edge_index, batch), y).backward()
        optimizer.step()
    model.eval()


def gcleaner_log_probs(service: Service, model: Path, data: Path) -> Any:
    out = json.loads(service.run("predict", "--model", str(model), "--data", str(data), "--json", "--device", "cpu"))
    return torch.tensor([p["log_probs"] for p in out["predictions"]])


def purify_and_load_back(
    service: Service, tmp_path: Path, data: Path, make: Callable[[], nn.Module], pool: str
) -> None:
    graphs = load_graphs(data)
    torch.manual_seed(1)
    model = make()
    train_briefly(model, graphs)
    exported = tmp_path / "exported.safetensors"
    spec = gcleaner.export_pyg(model, exported, pool=pool, features=f"degree:{MAX_DEGREE}")
    assert gcleaner.read_spec(exported) == spec
    with torch.no_grad():
        pyg_before = model(*graphs[:3])
    # gcleaner reads the file as the same model.
    assert torch.allclose(gcleaner_log_probs(service, exported, data), pyg_before, atol=1e-3)

    with gcleaner.Client(service.url, service.token) as client:
        job = client.purify(exported, data, config=QUICK_CONFIG).wait(timeout=180)
        purified = job.download_model(tmp_path / "purified.safetensors")
    assert gcleaner.read_spec(purified)["format"] == spec["format"]

    reloaded = make()
    reloaded.load_state_dict(load_file(str(purified)), strict=True)
    reloaded.eval()
    with torch.no_grad():
        pyg_after = reloaded(*graphs[:3])
    assert torch.isfinite(pyg_after).all()
    assert torch.allclose(gcleaner_log_probs(service, purified, data), pyg_after, atol=1e-3)


class PublishedGin(nn.Module):
    """The published G-Cleaner GIN layout (gcleaner.model/v1): conv{i}, bn{i}, fc1, fc2."""

    def __init__(self, layers: int = 2) -> None:
        super().__init__()
        self.layers = layers
        for i in range(1, layers + 1):
            d = IN_FEATURES if i == 1 else HIDDEN
            mlp = nn.Sequential(nn.Linear(d, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, HIDDEN))
            setattr(self, f"conv{i}", pyg_nn.GINConv(mlp))
            setattr(self, f"bn{i}", nn.BatchNorm1d(HIDDEN))
        self.fc1 = nn.Linear(HIDDEN, HIDDEN)
        self.fc2 = nn.Linear(HIDDEN, 2)

    def forward(self, x: Any, edge_index: Any, batch: Any) -> Any:
        for i in range(1, self.layers + 1):
            x = getattr(self, f"bn{i}")(F.relu(getattr(self, f"conv{i}")(x, edge_index)))
        x = pyg_nn.global_add_pool(x, batch)
        return F.log_softmax(self.fc2(F.relu(self.fc1(x))), dim=-1)


def test_export_pyg_published_layout_round_trip(service: Service, attack: Any, tmp_path: Path) -> None:
    purify_and_load_back(service, tmp_path, attack.clean_sample, PublishedGin, "sum")


def test_export_pyg_refuses_what_gcleaner_cannot_run(tmp_path: Path) -> None:
    with pytest.raises(gcleaner.GcleanerError) as refused:
        gcleaner.export_pyg(nn.Linear(3, 2), tmp_path / "m.safetensors", pool="sum", features="degree:10")
    assert refused.value.code == "invalid_model"
    with pytest.raises(gcleaner.GcleanerError) as refused:
        gcleaner.export_pyg(PublishedGin(), tmp_path / "m.safetensors", pool="sum", features="degree:3")
    assert refused.value.code == "invalid_argument" and "11" in refused.value.detail
    with pytest.raises(gcleaner.GcleanerError) as refused:
        gcleaner.export_pyg(PublishedGin(), tmp_path / "m.safetensors", pool="median", features="degree")
    assert refused.value.code == "invalid_argument"
    assert not (tmp_path / "m.safetensors").exists()


class PygGinMlp(nn.Module):
    """PyG's own classes (gcleaner.model/v2): a BasicGNN GIN, sum pooling and an MLP head."""

    def __init__(self) -> None:
        super().__init__()
        self.gnn = pyg_nn.models.GIN(IN_FEATURES, HIDDEN, num_layers=3, norm="batch_norm")
        self.head = pyg_nn.MLP([HIDDEN, HIDDEN, 2])

    def forward(self, x: Any, edge_index: Any, batch: Any) -> Any:
        x = pyg_nn.global_add_pool(self.gnn(x, edge_index), batch)
        return F.log_softmax(self.head(x), dim=-1)


def test_export_pyg_gin_with_mlp_head_round_trip(service: Service, attack: Any, tmp_path: Path) -> None:
    purify_and_load_back(service, tmp_path, attack.clean_sample, PygGinMlp, "add")


class PygClassifier(nn.Module):
    """A BasicGNN, global pooling and a head, as gcleaner.model/v2 describes them."""

    def __init__(self, gnn: nn.Module, head: nn.Module, pool: Callable[..., Any]) -> None:
        super().__init__()
        self.gnn, self.head, self.pool = gnn, head, pool

    def forward(self, x: Any, edge_index: Any, batch: Any) -> Any:
        return F.log_softmax(self.head(self.pool(self.gnn(x, edge_index), batch)), dim=-1)


VARIANTS = {
    "gcn-jk-cat-linear-max": lambda: (
        PygClassifier(pyg_nn.models.GCN(IN_FEATURES, HIDDEN, 2, out_channels=8, jk="cat"), nn.Linear(8, 2),
                      pyg_nn.global_max_pool), "max"),
    "gat-heads-mlp-mean": lambda: (
        PygClassifier(pyg_nn.models.GAT(IN_FEATURES, HIDDEN, 2, heads=4), pyg_nn.MLP([HIDDEN, 8, 2], norm=None),
                      pyg_nn.global_mean_pool), "mean"),
    "sage-norm-linear-add": lambda: (
        PygClassifier(pyg_nn.models.GraphSAGE(IN_FEATURES, HIDDEN, 3, norm="batch_norm"), nn.Linear(HIDDEN, 2),
                      pyg_nn.global_add_pool), "add"),
}  # fmt: skip


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_export_pyg_writes_what_gcleaner_runs(service: Service, attack: Any, tmp_path: Path, variant: str) -> None:
    graphs = load_graphs(attack.clean_sample)
    torch.manual_seed(2)
    model, pool = VARIANTS[variant]()
    train_briefly(model, graphs, epochs=5)
    path = tmp_path / "model.safetensors"
    gcleaner.export_pyg(model, path, pool=pool, features={"kind": "one_hot_degree", "max_degree": MAX_DEGREE})
    with torch.no_grad():
        expected = model(*graphs[:3])
    assert torch.allclose(gcleaner_log_probs(service, path, attack.clean_sample), expected, atol=1e-3)


def test_an_upload_gcleaner_cannot_run_is_refused_naming_the_module(
    service: Service, attack: Any, tmp_path: Path
) -> None:
    """A file that claims PyG's GIN but carries an edge-feature attention tensor (something no
    layer gcleaner runs has) is refused at submission, naming the module, never mis-run."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    torch.manual_seed(3)
    path = tmp_path / "model.safetensors"
    gcleaner.export_pyg(PygGinMlp(), path, pool="add", features=f"degree:{MAX_DEGREE}")
    with safe_open(str(path), framework="pt") as f:
        metadata = f.metadata()
        tensors = {name: f.get_tensor(name) for name in f.keys()}
    tensors["gnn.convs.1.att_edge"] = torch.zeros(1, 1, HIDDEN)
    tampered = tmp_path / "tampered.safetensors"
    save_file(tensors, str(tampered), metadata=metadata)
    with gcleaner.Client(service.url, service.token) as client:
        with pytest.raises(gcleaner.GcleanerError) as refused:
            client.purify(tampered, attack.clean_sample, config=QUICK_CONFIG)
    assert refused.value.code == "invalid_model"
    assert refused.value.status == 422 or refused.value.status == 400
    assert "gnn.convs.1" in refused.value.detail
