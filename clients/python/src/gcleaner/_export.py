"""Model files: reading a gcleaner model's spec, and writing a PyTorch Geometric model.

gcleaner reads safetensors files whose tensor names are a PyTorch Geometric model's
``state_dict`` names, with a JSON model spec in the metadata under ``gcleaner.spec``
(docs/model-format.md in the gcleaner repository). Two layouts are written here:

``gcleaner.model/v2``
    PyG's own classes: a module with a ``gnn`` attribute, a ``BasicGNN``
    (``torch_geometric.nn.models.GIN``, ``GCN``, ``GAT`` or ``GraphSAGE``), and a ``head``, a
    ``torch_geometric.nn.MLP`` or ``torch.nn.Linear``; the graph embedding is the global pooling
    (``pool``) of the gnn's node features.
``gcleaner.model/v1``
    The published G-Cleaner classifiers: modules ``conv1`` .. ``convN`` (``GINConv``, ``GCNConv``,
    ``GATConv`` or ``SAGEConv``), ``bn1`` .. ``bnN`` for GIN and GraphSAGE, ``fc1`` and ``fc2``.

``torch`` and ``torch_geometric`` are imported only when :func:`export_pyg` is called.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any, Mapping, Optional, Sequence, Union

from safetensors import safe_open

from ._errors import GcleanerError

__all__ = ["export_pyg", "read_spec", "SPEC_KEY"]

#: The safetensors metadata key that holds the model spec.
SPEC_KEY = "gcleaner.spec"

_POOLS = {"add": "add", "sum": "add", "mean": "mean", "max": "max"}


def read_spec(path: Union[str, "os.PathLike[str]"]) -> dict[str, Any]:
    """The model spec embedded in a gcleaner safetensors file (metadata ``gcleaner.spec``).

    Raises:
        GcleanerError: ``invalid_model`` when the file is not safetensors or has no spec,
            ``invalid_spec`` when the spec is not a JSON object.
    """
    try:
        with safe_open(os.fspath(path), framework="numpy") as f:
            metadata = f.metadata() or {}
    except Exception as exc:  # safetensors raises its own error types for a bad header
        raise GcleanerError("invalid_model", f"{path}: not a safetensors file: {exc}") from None
    raw = metadata.get(SPEC_KEY)
    if raw is None:
        raise GcleanerError("invalid_model", f"{path}: no {SPEC_KEY} metadata")
    try:
        spec = json.loads(raw)
    except ValueError as exc:
        raise GcleanerError("invalid_spec", f"{path}: {SPEC_KEY} is not JSON: {exc}") from None
    if not isinstance(spec, dict):
        raise GcleanerError("invalid_spec", f"{path}: {SPEC_KEY} is not a JSON object")
    return spec


def _invalid(detail: str) -> GcleanerError:
    return GcleanerError("invalid_model", detail)


def feature_spec(features: Union[str, Mapping[str, Any]], in_features: int) -> dict[str, Any]:
    """The spec's ``features`` entry, from a mapping (used as is) or the CLI's ``--features``
    syntax: ``degree[:MAX]``, ``labels[:N]``, ``attributes[:D]``, or several joined by ``+``.

    One part may leave its number out; it then gets the columns the others leave of
    ``in_features``. The widths must add up to ``in_features``.
    """
    if isinstance(features, Mapping):
        spec = dict(features)
    elif isinstance(features, str):
        parts: list[dict[str, Any]] = []
        open_part: Optional[int] = None
        for i, text in enumerate(p.strip() for p in features.split("+")):
            name, _, arg = text.partition(":")
            number: Optional[int] = None
            if arg:
                if not arg.isdigit() or int(arg) == 0:
                    raise GcleanerError("invalid_argument", f"features: {name} needs a positive integer, got {arg!r}")
                number = int(arg)
            if name not in ("degree", "labels", "attributes"):
                raise GcleanerError(
                    "invalid_argument", f"features: unknown part {name!r} (expected degree, labels or attributes)"
                )
            if number is None:
                if open_part is not None:
                    raise GcleanerError(
                        "invalid_argument", f"features {features!r}: only one part may leave its width out"
                    )
                open_part = i
            parts.append({"name": name, "number": number})
        known = sum(_width_of(p["name"], p["number"]) for p in parts if p["number"] is not None)
        if open_part is not None:
            rest = in_features - known
            if rest < 1 or (parts[open_part]["name"] == "degree" and rest < 2):
                raise GcleanerError(
                    "invalid_argument",
                    f"features {features!r}: the other parts already take {known} of the model's {in_features} columns",
                )
            name = parts[open_part]["name"]
            parts[open_part]["number"] = rest - 1 if name == "degree" else rest
        built = [_feature_part(p["name"], p["number"]) for p in parts]
        spec = built[0] if len(built) == 1 else {"kind": "concat", "parts": built}
    else:
        raise GcleanerError("invalid_argument", f"features must be a string or a mapping, got {type(features).__name__}")
    width = _spec_width(spec)
    if width != in_features:
        raise GcleanerError(
            "invalid_argument", f"features {json.dumps(spec)} make {width} columns, the model takes {in_features}"
        )
    return spec


def _width_of(name: str, number: int) -> int:
    return number + 1 if name == "degree" else number


def _feature_part(name: str, number: int) -> dict[str, Any]:
    if name == "degree":
        return {"kind": "one_hot_degree", "max_degree": number}
    if name == "labels":
        return {"kind": "node_labels_one_hot", "num_labels": number}
    return {"kind": "node_attributes", "dim": number}


def _spec_width(spec: Mapping[str, Any]) -> int:
    kind = spec.get("kind")
    try:
        if kind == "one_hot_degree":
            return int(spec["max_degree"]) + 1
        if kind == "node_labels_one_hot":
            return int(spec["num_labels"])
        if kind == "node_attributes":
            return int(spec["dim"])
        if kind == "concat":
            return sum(_spec_width(p) for p in spec["parts"])
    except (KeyError, TypeError, ValueError):
        pass
    raise GcleanerError("invalid_argument", f"features: not a feature spec: {json.dumps(spec, default=str)}")


def export_pyg(
    model: Any,
    path: Union[str, "os.PathLike[str]"],
    *,
    pool: str,
    features: Union[str, Mapping[str, Any]],
    class_labels: Optional[Sequence[int]] = None,
    num_layers: Optional[int] = None,
) -> dict[str, Any]:
    """Writes a PyTorch Geometric graph classifier as a gcleaner model file; returns its spec.

    Args:
        model: A ``torch.nn.Module`` with ``gnn`` (a PyG ``GIN``, ``GCN``, ``GAT`` or
            ``GraphSAGE``) and ``head`` (a PyG ``MLP`` or a ``torch.nn.Linear``) for the
            ``gcleaner.model/v2`` layout; or one with ``conv1`` .. ``convN``, ``fc1`` and ``fc2``
            for the published ``gcleaner.model/v1`` layout.
        path: Where to write the safetensors file.
        pool: The global pooling between gnn and head: ``"add"`` (or ``"sum"``), ``"mean"``,
            ``"max"`` (v2 only).
        features: How node features are made from a graph, so that gcleaner computes the same
            ones: a feature spec mapping (``{"kind": "one_hot_degree", "max_degree": 10}``) or
            the CLI's ``--features`` syntax (``"degree:10"``, ``"labels:7+degree"``; a part
            without its width gets what the others leave of the model's input width).
        class_labels: The dataset's original graph label of each class index, when they are not
            ``0 .. C-1`` (MUTAG: ``[-1, 1]``).
        num_layers: v1 only: how many ``conv`` blocks the forward pass uses, when the module
            holds more than it uses (the published GCN); by default every ``conv{i}``.

    The model's tensors are written as they are (float tensors as float32), under their
    ``state_dict`` names, so the purified file loads back with ``load_state_dict(strict=True)``.

    Raises:
        GcleanerError: ``invalid_model`` for a module gcleaner cannot run (its detail names
            what: an activation other than ReLU, an unsupported normalisation, ...),
            ``invalid_argument`` for a bad ``pool`` or ``features``.
    """
    try:
        import torch
    except ImportError:  # pragma: no cover - depends on the environment
        raise GcleanerError(
            "invalid_argument", "export_pyg needs torch and torch_geometric: pip install 'gcleaner[pyg]'"
        ) from None
    from safetensors.torch import save_file

    if pool not in _POOLS:
        raise GcleanerError("invalid_argument", f"pool must be one of add, sum, mean, max; got {pool!r}")
    if not isinstance(model, torch.nn.Module):
        raise GcleanerError("invalid_argument", f"model must be a torch.nn.Module, got {type(model).__name__}")

    prefixes: Optional[tuple[str, ...]]
    if hasattr(model, "gnn") and hasattr(model, "head"):
        spec, prefixes = _spec_v2(model, _POOLS[pool])
    elif hasattr(model, "conv1") and hasattr(model, "fc1") and hasattr(model, "fc2"):
        spec, prefixes = _spec_v1(model, pool, num_layers)
    else:
        raise _invalid(
            f"{type(model).__name__} has neither gnn and head modules (PyG's BasicGNN and an MLP or Linear head) "
            "nor conv1 .. convN, fc1 and fc2 (the published G-Cleaner layout)"
        )
    spec["features"] = feature_spec(features, spec["in_features"])
    if class_labels is not None:
        labels = [int(c) for c in class_labels]
        if len(labels) != spec["num_classes"]:
            raise GcleanerError(
                "invalid_argument", f"class_labels has {len(labels)} entries, the model has {spec['num_classes']} classes"
            )
        spec["class_labels"] = labels

    state = model.state_dict()
    if prefixes is not None:
        stray = sorted(k for k in state if not k.startswith(prefixes))
        if stray:
            raise _invalid(
                f"tensors outside {' and '.join(p.rstrip('.') for p in prefixes)} would not survive purification: "
                + ", ".join(stray[:10])
            )
    tensors = {}
    for name, tensor in state.items():
        t = tensor.detach().cpu()
        if t.is_floating_point() and t.dtype != torch.float32:
            t = t.to(torch.float32)
        # Contiguous private copies: safetensors refuses tensors that share storage.
        tensors[name] = t.contiguous().clone()
    save_file(tensors, os.fspath(path), metadata={SPEC_KEY: json.dumps(spec)})
    return spec


def _spec_v1(model: Any, pool: str, num_layers: Optional[int]) -> tuple[dict[str, Any], Optional[tuple[str, ...]]]:
    from torch_geometric.nn import GATConv, GCNConv, GINConv, SAGEConv

    conv1 = model.conv1
    if isinstance(conv1, GINConv):
        arch, in_features = "gin", conv1.nn[0].in_features
    elif isinstance(conv1, GCNConv):
        arch, in_features = "gcn", conv1.in_channels
    elif isinstance(conv1, GATConv):
        arch, in_features = "gat", conv1.in_channels
    elif isinstance(conv1, SAGEConv):
        arch, in_features = "sage", conv1.in_channels
    else:
        raise _invalid(f"conv1 is a {type(conv1).__name__}; the v1 layout has GINConv, GCNConv, GATConv or SAGEConv")
    if pool == "max":
        raise GcleanerError("invalid_argument", "pool 'max' needs the v2 layout (gnn and head modules)")
    if num_layers is None:
        num_layers = 0
        while hasattr(model, f"conv{num_layers + 1}"):
            num_layers += 1
    names = {k.split(".")[0] for k in model.state_dict()}
    pattern = re.compile(r"(conv|bn)\d+|fc1|fc2")
    unknown = sorted(n for n in names if not pattern.fullmatch(n))
    if unknown:
        raise _invalid(f"modules outside the v1 layout (conv{{i}}, bn{{i}}, fc1, fc2): {', '.join(unknown)}")
    spec = {
        "format": "gcleaner.model/v1",
        "arch": arch,
        "in_features": int(in_features),
        "hidden": int(model.fc1.in_features),
        "num_classes": int(model.fc2.out_features),
        "num_layers": int(num_layers),
        "pooling": "sum" if pool in ("add", "sum") else "mean",
    }
    return spec, None


def _norm_name(module: Any, where: str) -> Optional[str]:
    import torch
    from torch_geometric.nn.norm import BatchNorm

    if module is None or isinstance(module, torch.nn.Identity):
        return None
    if isinstance(module, BatchNorm):
        return "batch_norm"
    raise _invalid(f"{where} is a {type(module).__name__}; gcleaner supports PyG's BatchNorm or no normalisation")


def _check_relu(act: Any, where: str) -> None:
    import torch

    if act is None or isinstance(act, torch.nn.ReLU) or act is torch.relu or act is torch.nn.functional.relu:
        return
    raise _invalid(f"{where} is {act!r}; gcleaner runs ReLU activations only")


def _dropout(value: Any) -> float:
    if hasattr(value, "p"):
        return float(value.p)
    if isinstance(value, (list, tuple)):
        return float(value[0]) if value else 0.0
    return float(value or 0.0)


def _check_conv(gnn_class: str, conv: Any, where: str) -> None:
    """Refuses conv settings that leave no trace in the weights but change what the model
    computes (docs/model-format.md: they cannot be detected from the file, so not accepted)."""
    table: dict[str, dict[str, Any]] = {
        "GIN": {"aggr": "add"},
        "GCN": {"aggr": "add", "improved": False, "add_self_loops": True, "normalize": True},
        "GAT": {"aggr": "add", "add_self_loops": True, "negative_slope": 0.2, "edge_dim": None, "residual": False,
                "fill_value": "mean"},
        "GraphSAGE": {"aggr": "mean", "root_weight": True, "project": False, "normalize": False},
    }  # fmt: skip
    for name, value in table[gnn_class].items():
        actual = getattr(conv, name, value)
        if name == "aggr" and actual == "sum":
            actual = "add"  # two names of one aggregation
        if actual != value:
            raise _invalid(f"{where}.{name} is {actual!r}; gcleaner runs {name}={value!r} only")


def _spec_v2(model: Any, pool: str) -> tuple[dict[str, Any], tuple[str, ...]]:
    import torch
    from torch_geometric.nn import MLP
    from torch_geometric.nn.models import GAT, GCN, GIN, GraphSAGE

    gnn, head = model.gnn, model.head
    classes = [(GIN, "GIN"), (GCN, "GCN"), (GAT, "GAT"), (GraphSAGE, "GraphSAGE")]
    gnn_class = next((name for cls, name in classes if type(gnn) is cls), None)
    if gnn_class is None:
        raise _invalid(f"gnn is a {type(gnn).__name__}; gcleaner supports PyG's GIN, GCN, GAT and GraphSAGE")
    if not isinstance(gnn.in_channels, int) or gnn.in_channels < 1:
        raise _invalid(f"gnn.in_channels is {gnn.in_channels!r}; give the model a fixed input width")
    _check_relu(gnn.act, "gnn.act")
    jk = gnn.jk_mode
    if jk not in (None, "last", "cat", "max"):
        raise _invalid(f"gnn jk={jk!r} is not supported (None, 'last', 'cat' or 'max')")
    # The norm string also reaches GIN's inner MLPs, so it is read from the argument, not from
    # gnn.norms (which hold no norm at all for a one-layer gnn without jk).
    if isinstance(gnn.norm, str):
        if gnn.norm.replace("_", "").lower() != "batchnorm":
            raise _invalid(f"gnn norm={gnn.norm!r}; gcleaner supports 'batch_norm' or None")
        if gnn.norm_kwargs:
            raise _invalid(f"gnn norm_kwargs={gnn.norm_kwargs!r} are not supported")
        norm: Optional[str] = "batch_norm"
    elif any(not isinstance(n, torch.nn.Identity) for n in gnn.norms):
        raise _invalid("gnn was given its normalisation as a module; pass norm='batch_norm' instead")
    else:
        norm = None

    # out_channels as the constructor got it: without jk the last conv maps to it; with jk a
    # final `lin` exists exactly when it was given.
    if jk is None:
        out_channels = gnn.out_channels if gnn.out_channels != gnn.hidden_channels else None
    else:
        out_channels = gnn.out_channels if hasattr(gnn, "lin") else None
    gnn_doc: dict[str, Any] = {
        "class": gnn_class,
        "in_channels": int(gnn.in_channels),
        "hidden_channels": int(gnn.hidden_channels),
        "num_layers": int(gnn.num_layers),
        "out_channels": out_channels,
        "dropout": _dropout(gnn.dropout),
        "act": "relu",
        "act_first": bool(gnn.act_first),
        "norm": norm,
        "jk": jk,
    }
    first = gnn.convs[0]
    if gnn_class == "GAT":
        from torch_geometric.nn import GATConv

        if type(first) is not GATConv:
            raise _invalid(f"gnn's convs are {type(first).__name__}; gcleaner supports GATConv (v2=False)")
    for i, conv in enumerate(gnn.convs):
        _check_conv(gnn_class, conv, f"gnn.convs[{i}]")
    if gnn_class == "GIN":
        gnn_doc["train_eps"] = isinstance(first.eps, torch.nn.Parameter)
    elif gnn_class == "GAT":
        gnn_doc["heads"] = int(first.heads)
        # BasicGNN turns concat off for a conv that maps straight to out_channels.
        only_to_out = len(gnn.convs) == 1 and getattr(gnn, "_is_conv_to_out", False)
        gnn_doc["concat"] = True if only_to_out else bool(first.concat)

    gnn_out = int(gnn.out_channels)
    if isinstance(head, MLP):
        _check_relu(head.act, "head.act")
        channel_list = [int(c) for c in head.channel_list]
        biases = {lin.bias is not None for lin in head.lins}
        if len(biases) != 1:
            raise _invalid("head has biases on some layers only; gcleaner's MLP has them on all or none")
        head_norms = [n for n in head.norms if not isinstance(n, torch.nn.Identity)]
        head_doc: dict[str, Any] = {
            "class": "MLP",
            "channel_list": channel_list,
            "norm": _norm_name(head_norms[0], "head.norms[0]") if head_norms else None,
            "plain_last": bool(head.plain_last),
            "act": "relu",
            "act_first": bool(head.act_first),
            "dropout": _dropout(head.dropout),
            "bias": biases.pop(),
        }
        num_classes = channel_list[-1]
        head_in = channel_list[0]
    elif isinstance(head, torch.nn.Linear):
        head_doc = {
            "class": "Linear",
            "in_features": int(head.in_features),
            "out_features": int(head.out_features),
            "bias": head.bias is not None,
        }
        num_classes = int(head.out_features)
        head_in = int(head.in_features)
    else:
        raise _invalid(f"head is a {type(head).__name__}; gcleaner supports PyG's MLP or torch.nn.Linear")
    if head_in != gnn_out:
        raise _invalid(f"head takes {head_in} channels but gnn returns {gnn_out}")
    spec = {
        "format": "gcleaner.model/v2",
        "in_features": int(gnn.in_channels),
        "num_classes": num_classes,
        "gnn": gnn_doc,
        "pool": pool,
        "head": head_doc,
    }
    return spec, ("gnn.", "head.")
