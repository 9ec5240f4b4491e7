"""Model files: reading a gcleaner model's spec, and writing a PyTorch Geometric model."""

from __future__ import annotations

import json
import os
from typing import Any, Union

from safetensors import safe_open

from ._errors import GcleanerError

__all__ = ["export_pyg", "read_spec"]

SPEC_KEY = "gcleaner.spec"


def read_spec(path: Union[str, "os.PathLike[str]"]) -> dict[str, Any]:
    """The model spec embedded in a gcleaner safetensors file (metadata ``gcleaner.spec``)."""
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


def export_pyg(model: Any, path: Union[str, "os.PathLike[str]"], *, pool: str, features: Any) -> dict[str, Any]:
    raise NotImplementedError
