"""Fixtures: the running service (from tests/client/run.sh) and small real models for it.

The suite needs a live `gcleaner serve` with one worker; tests/client/run.sh starts one on a
fresh database and sets GCLEANER_TEST_URL, GCLEANER_TEST_TOKEN, GCLEANER_TEST_TOKEN_2 (another
tenant) and GCLEANER_BIN (the binary, to make sample models and to load purified ones back).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import pytest

import gcleaner

# Small enough to finish in seconds on a CPU; `force` unlearns even without backdoor evidence,
# so the purified model differs from the input.
QUICK_CONFIG: dict[str, Any] = {
    "force": True,
    "trigger_nodes": 3,
    "recovery": {"epochs": 2, "restarts": 1},
    "unlearn": {"epochs": 2, "teacher_epochs": 2, "positions": 2},
}

# Long enough to still be running when a test cancels it; it stops at the next epoch boundary.
LONG_CONFIG: dict[str, Any] = {"force": True, "trigger_nodes": 3, "recovery": {"epochs": 1000, "restarts": 50}}


@dataclass(frozen=True)
class Service:
    url: str
    token: str
    token_2: str
    bin: str

    def run(self, *args: str) -> str:
        """Runs the gcleaner binary; its stdout."""
        done = subprocess.run([self.bin, *args], check=True, capture_output=True, text=True)
        return done.stdout


@dataclass(frozen=True)
class Attack:
    """A backdoored model made by `gcleaner attack`, with what a defender would upload."""

    model: Path
    clean_sample: Path
    eval_archive: Path


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="session")
def service() -> Service:
    names = ["GCLEANER_TEST_URL", "GCLEANER_TEST_TOKEN", "GCLEANER_TEST_TOKEN_2", "GCLEANER_BIN"]
    missing = [n for n in names if not os.environ.get(n)]
    if missing:
        pytest.exit(f"{', '.join(missing)} unset: run these tests through tests/client/run.sh", returncode=2)
    return Service(*(os.environ[n] for n in names))


@pytest.fixture
def client(service: Service) -> Iterator[gcleaner.Client]:
    with gcleaner.Client(service.url, service.token) as c:
        yield c


@pytest.fixture(scope="session")
def attack(service: Service, tmp_path_factory: pytest.TempPathFactory) -> Attack:
    """A Sub-BA backdoor planted into a small GIN on generated graphs (seconds on a CPU)."""
    root = tmp_path_factory.mktemp("attack")
    service.run("synth", "--graphs", "120", "--seed", "5", "--out", str(root / "graphs.json"))
    out = root / "attack"
    service.run(
        "attack", "--data", str(root / "graphs.json"), "--attack", "subgraph", "--arch", "gin",
        "--hidden", "16", "--layers", "2", "--epochs", "3", "--injection-ratio", "0.1",
        "--defender-fraction", "0.15", "--device", "cpu", "--out", str(out),
    )  # fmt: skip
    archive = root / "attack.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(out, arcname="attack")
    return Attack(out / "model.safetensors", out / "defender_clean.json", archive)
