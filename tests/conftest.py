"""Shared fixtures: where the real data lives, and a per-checkout cache.

The real data sets are read from ``$NORMLAB_TEST_DATA`` or else
``../shared/data`` beside the repository. A missing data set fails the test
that needs it, with the path it looked at: it is never silently skipped.
"""

from __future__ import annotations

import os
from pathlib import Path

# One thread per process: the suite runs training subprocesses side by side on
# small CI machines, where OpenMP threads oversubscribing the cores made steps
# 5-10x slower. Set before torch is imported; subprocesses inherit it.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("NORMLAB_TEST_DATA", ROOT.parent / "shared" / "data"))

# Decoded datasets are cached between test sessions in the checkout (git-ignored).
os.environ.setdefault("NORMLAB_CACHE", str(ROOT / ".cache" / "tests"))


def pytest_collection_modifyitems(config, items):
    """Tests marked ``gpu`` need CUDA: skipped, with the reason, where torch sees no GPU."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (torch.cuda.is_available() is False); "
                                   "run on a GPU machine: pytest -m gpu")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _cpu_unless_marked_gpu(request, monkeypatch):
    """Every test not marked ``gpu`` runs on the CPU, also on a GPU machine: ``device="auto"``
    and the CLI's default then pick the CPU, in this process and in the subprocesses it starts
    (they inherit CUDA_VISIBLE_DEVICES), so the suite asserts the same things everywhere."""
    if "gpu" in request.keywords:
        return
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)


def _need(path: Path) -> Path:
    if not path.exists():
        pytest.fail(f"real test data not found at {path}; set NORMLAB_TEST_DATA to the folder holding it")
    return path


@pytest.fixture(scope="session")
def shared_data() -> Path:
    return _need(SHARED_DATA)


@pytest.fixture(scope="session")
def cifar_zip(shared_data) -> Path:
    return _need(shared_data / "cifar10-jpeg.zip")


@pytest.fixture(scope="session")
def gmb_csv_zip(shared_data) -> Path:
    return _need(shared_data / "gmb" / "ner_dataset.csv.zip")
