"""normlab.files: atomic writes, JSON lines, and the one layer every package writes through."""

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

from normlab import files

SRC = Path(__file__).resolve().parents[1] / "src" / "normlab"


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


def _normlab_imports(path: Path) -> set[str]:
    """The normlab packages and top-level modules a source file imports (``normlab.train.rundir`` -> ``train``)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        for n in names:
            parts = n.split(".")
            if parts[0] == "normlab" and len(parts) > 1:
                found.add(parts[1])
    return found


@pytest.mark.parametrize("layer, allowed", [
    ("files.py", set()),
    ("data", {"data", "files", "config"}),
    ("models", {"models", "norms", "data", "files", "config"}),
    ("train", {"train", "data", "models", "norms", "files", "config"}),
])
def test_the_lower_layers_import_nothing_above_them(layer, allowed):
    """Data flows one way: files -> data -> models -> train (-> study -> report -> cli)."""
    paths = [SRC / layer] if layer.endswith(".py") else sorted((SRC / layer).glob("*.py"))
    for path in paths:
        above = _normlab_imports(path) - allowed - {path.stem if layer.endswith(".py") else layer}
        assert not above, f"{path.relative_to(SRC)} imports normlab.{', normlab.'.join(sorted(above))}"
