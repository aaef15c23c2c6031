"""The package's import graph follows the data flow: no module imports a layer above its own.

files -> data -> norms -> models -> train -> study -> report -> cli (README "Layout"). Imports
inside functions count too. The one allowed exception: the study runner's call that writes the
report at the end of a study.
"""

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "src" / "normlab"
# the top-level modules and packages of normlab, lowest first; same rank: may import each other
RANKS = {"files": 0, "config": 0, "hardware": 0, "data": 1, "norms": 2, "models": 3, "train": 4, "study": 5,
         "report": 6, "cli": 7, "__main__": 8, "__init__": 8}
ALLOWED = {("study/runner.py", "normlab.report.write"), ("study/runner.py", "normlab.report")}


def _part(module: str) -> str:
    return module.split(".")[1] if module.count(".") >= 1 else "__init__"


def _imports(path: Path):
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module, node.lineno
        elif isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno


def _layer_of(path: Path) -> str:
    rel = path.relative_to(PKG)
    return rel.parts[0].removesuffix(".py") if len(rel.parts) > 1 or rel.stem != "__init__" else "__init__"


def test_every_top_level_part_has_a_rank():
    parts = {p.stem if p.is_file() else p.name for p in PKG.iterdir()
             if (p.is_file() and p.suffix == ".py") or (p.is_dir() and (p / "__init__.py").exists())}
    assert parts <= set(RANKS), f"give these a rank in RANKS: {sorted(parts - set(RANKS))}"


@pytest.mark.parametrize("path", sorted(PKG.rglob("*.py")), ids=lambda p: str(p.relative_to(PKG)))
def test_no_import_runs_back_up_the_flow(path):
    own = _layer_of(path)
    rel = str(path.relative_to(PKG))
    upward = []
    for module, line in _imports(path):
        if not module.startswith("normlab.") or (rel, module) in ALLOWED:
            continue
        target = _part(module)
        if RANKS.get(target, 0) > RANKS[own]:
            upward.append(f"line {line}: {module} ({target} is above {own})")
    assert not upward, f"{rel} imports upward: " + "; ".join(upward)
