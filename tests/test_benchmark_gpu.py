"""benchmarks/gpu.py --device cpu --quick: the GPU check runs end to end in CI, so that it
cannot rot between the rare sessions that have a GPU (it measures nothing on a CPU)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.integration
def test_gpu_check_runs_on_the_cpu_and_writes_its_json(cifar_zip, gmb_csv_zip, tmp_path):
    out = tmp_path / "gpu.json"
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu.py"), "--device", "cpu", "--quick",
                        "--cifar", str(cifar_zip), "--gmb", str(gmb_csv_zip), "--out", str(out),
                        "--max-seconds", "900"], capture_output=True, text=True, timeout=1200, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    d = json.loads(out.read_text())
    assert d["quick"] is True and d["env"]["device"] == "cpu" and d["skipped"] == []
    steps = d["resnet_steps"]
    assert set(steps) == {"torch_bn/b128/eager", "bn/b128/eager", "bn/b8/eager", "bn/b128/compiled_cl"}
    assert all(v["step_ms"] > 0 for v in steps.values()), steps
    assert steps["bn/b128/eager"]["eval_10k_s"] > 0
    fit = d["resnet_fit"]
    assert len(fit["epoch_s"]) == 2 and fit["status"] == "finished" and fit["images"]["train"] == 512
    assert d["ner_epochs"]["char_ln_crf"]["updates"] >= 1
    assert d["sharing"]["K=2"]["speedup"]["b128"] > 0
    # the quick run times three norms only: the estimate says what it misses instead of guessing
    assert "in" in d["estimates"]["resnet"]["missing"] and "one_at_a_time_s" not in d["estimates"]["resnet"]
    assert "--out" not in d["command"] and str(tmp_path) not in d["command"]
    assert "resnet study estimate: not available" in r.stdout


def test_wall_time_never_beats_the_longest_run_when_sharing():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import gpu

    # two 100-s runs, 4 slots with a 2x aggregate speed-up: each run goes at half speed, 200 s
    assert gpu.wall_time([(100, 2.0), (100, 2.0)], 4) == 200
    # many short runs: the work divided by the speed-up
    assert gpu.wall_time([(10, 4.0)] * 40, 4) == 100
    # one alone: its own time
    assert gpu.wall_time([(30, 1.0)], 1) == 30


def test_every_ner_grid_variant_is_timed_by_a_kind_with_its_layer_norm_and_characters():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import gpu
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    from normlab.study.grids import ner_variants

    for v in ner_variants():  # the rescaled GloVe variants included
        flags, names = gpu.NER_KINDS[gpu.ner_kind(v.overrides)]
        assert flags["layer_norm"] == v.overrides["layer_norm"]
        assert flags["char"] == v.overrides["char"]
        assert v.name in names or v.name.removesuffix("_small") in names
