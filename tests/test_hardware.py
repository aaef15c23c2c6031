"""The GPU logic of the studies, with faked devices and a faked nvidia-smi (issue 18, items 3, 6, 7)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from normlab import hardware
from normlab.cli.study import default_jobs, gpu_count, resolve_budget
from normlab.files import atomic_write_json
from normlab.study.settings import StudySettings


def _gpus(monkeypatch, n):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: n > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: n)


@pytest.fixture
def fake_nvidia_smi(tmp_path, monkeypatch):
    """An nvidia-smi on PATH that lists two H200s."""
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    exe = bin_ / "nvidia-smi"
    exe.write_text("#!/bin/sh\necho 'GPU 0: NVIDIA H200 (UUID: GPU-1)'\necho 'GPU 1: NVIDIA H200 (UUID: GPU-2)'\n")
    exe.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_}{os.pathsep}{os.environ['PATH']}")
    return exe


@pytest.mark.parametrize("device, visible, expected", [
    ("auto", 8, 8), ("cuda", 8, 8), ("cuda:3", 8, 1), ("cuda:9", 8, 0), ("cpu", 8, 0), ("mps", 8, 0),
    ("auto", 0, 0), ("cuda:0", 0, 0)])
def test_gpu_count_is_the_gpus_the_study_would_use(monkeypatch, device, visible, expected):
    _gpus(monkeypatch, visible)
    assert gpu_count(device) == expected


@pytest.mark.parametrize("device, visible, jobs", [("auto", 8, 32), ("cuda:3", 8, 4), ("auto", 0, 1), ("cpu", 2, 1)])
def test_default_jobs_fill_each_gpu_with_the_measured_number_of_runs(monkeypatch, device, visible, jobs):
    _gpus(monkeypatch, visible)
    assert default_jobs(device) == jobs
    assert hardware.RUNS_PER_GPU == 4 and hardware.SHARING_SPEEDUP[hardware.RUNS_PER_GPU] > 3


def test_a_cpu_torch_on_a_gpu_machine_is_said_not_silently_run_at_the_cpu_budget(monkeypatch, fake_nvidia_smi):
    _gpus(monkeypatch, 0)
    assert hardware.driver_gpu_count() == 2
    said = []
    assert resolve_budget("ner", "auto", "auto", say=said.append).name == "cpu"
    assert said[0].startswith("study: warning: nvidia-smi sees 2 GPU(s) but torch") and "cannot use them" in said[0]
    # with a torch that sees them: no warning, the study's own budget
    _gpus(monkeypatch, 2)
    said.clear()
    assert resolve_budget("ner", "auto", "auto", say=said.append).name == "full" and "warning" not in said[0]


def test_setup_check_exits_3_when_the_driver_sees_gpus_torch_cannot_use(fake_nvidia_smi):
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}  # this torch sees no GPU, whatever the machine has
    r = subprocess.run([sys.executable, "-m", "normlab.hardware"], capture_output=True, text=True, env=env)
    assert r.returncode == 3 and "nvidia-smi: 2 GPU(s)" in r.stdout
    assert r.stderr.startswith("error: nvidia-smi sees 2 GPU(s) but torch") and len(r.stderr.splitlines()) == 1
    env["PATH"] = os.pathsep.join(p for p in env["PATH"].split(os.pathsep) if p != str(fake_nvidia_smi.parent))
    r = subprocess.run([sys.executable, "-m", "normlab.hardware"], capture_output=True, text=True, env=env)
    assert r.returncode == 0 and "nvidia-smi: 0 GPU(s)" in r.stdout


def test_a_failing_nvidia_smi_counts_no_gpu(tmp_path, monkeypatch):
    exe = tmp_path / "nvidia-smi"
    exe.write_text("#!/bin/sh\necho 'NVIDIA-SMI has failed' >&2\nexit 9\n")
    exe.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert hardware.driver_gpu_count() == 0


def test_auto_continues_a_saved_study_at_its_budget(tmp_path, monkeypatch):
    """A study begun at the cpu budget continues at it on a machine where auto would mean full."""
    _gpus(monkeypatch, 1)
    s = StudySettings(kind="ner", out=str(tmp_path), data="g.csv", budget="cpu")
    atomic_write_json(tmp_path / "study.json", {"kind": "ner", "settings": s.to_dict()})
    said = []
    assert resolve_budget("ner", "auto", "auto", say=said.append, out=str(tmp_path)).name == "cpu"
    assert "continuing the study" in said[0]
    assert resolve_budget("ner", "auto", "auto", say=said.append, out=str(tmp_path / "new")).name == "full"
    assert resolve_budget("ner", "full", "auto", say=said.append, out=str(tmp_path)).name == "full"  # named: as asked


def test_the_estimate_times_the_runs_device_and_counts_sharing(monkeypatch):
    """On a GPU machine the estimate times the GPU (not the CPU) and slows each run by the
    measured cost of sharing it."""
    from normlab.study import estimate as E
    from normlab.study.runner import plan

    seen = []

    def fake_select(name):
        return torch.device("cuda")

    monkeypatch.setattr("normlab.train.rundir.select_device", fake_select)
    _gpus(monkeypatch, 1)
    monkeypatch.setattr(E, "resnet_step_seconds", lambda norm, batch, device=None: seen.append(device) or (0.01, 0.01))
    s = StudySettings(kind="resnet", out="nowhere", data="c.zip", epochs=1, jobs=4, variants=["nn"])
    est = E.estimate_study(s, plan(s), threads=1, cold_start=0.0)
    assert seen == [torch.device("cuda")] and est.device == "cuda"
    alone = E.run_seconds(s, plan(s)[0].variant, lambda n, b: (0.01, 0.01))
    k = hardware.RUNS_PER_GPU
    assert est.per_run["nn-seed0"] == pytest.approx(alone * k / hardware.SHARING_SPEEDUP[k])
