"""normlab.files: atomic writes, JSON lines, and the one layer every package writes through."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from normlab import files



def test_atomic_write_leaves_no_temp_on_failure(tmp_path):
    target = tmp_path / "x.json"
    files.atomic_write_json(target, {"a": 1})

    class Boom:
        pass

    with pytest.raises(TypeError):
        files.atomic_write_json(target, {"a": Boom()})
    assert json.loads(target.read_text()) == {"a": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.json"]


def test_jsonl_ignores_torn_last_line_only(tmp_path):
    p = tmp_path / "m.jsonl"
    files.append_jsonl(p, {"epoch": 1})
    files.append_jsonl(p, {"epoch": 2})
    with open(p, "a") as f:
        f.write('{"epoch": 3')
    assert [r["epoch"] for r in files.read_jsonl(p)] == [1, 2]
    p.write_text('{"epoch": 1}\nnot json\n{"epoch": 2}\n')
    with pytest.raises(ValueError, match="line 2"):
        files.read_jsonl(p)


def test_a_full_disk_is_named_by_the_file(tmp_path, monkeypatch):
    import errno
    import os

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(files.DiskFullError) as e:
        files.atomic_write_text(tmp_path / "x.txt", "x")
    assert e.value.filename == str(tmp_path / "x.txt") and list(tmp_path.iterdir()) == []


def test_to_jsonable_needs_no_torch_and_knows_its_tensors():
    import numpy as np
    import torch

    assert files.to_jsonable({"t": torch.tensor([1.5]), "n": np.int64(3), "nan": float("nan"), "p": Path("a")}) \
        == {"t": [1.5], "n": 3, "nan": None, "p": "a"}
    code = "import sys, normlab.files; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"

# The import direction of every layer (files -> data -> ... -> cli) is tests/test_layers.py's.
