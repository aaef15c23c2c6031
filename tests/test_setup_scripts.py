"""scripts/_setup.sh (used by run.sh and test.sh): which torch it installs, with faked pip,
python and nvidia-smi, and that it stops where the driver sees a GPU torch cannot use."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _stub(path: Path, body: str) -> None:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)


def _run(tmp_path, gpus: int, torch_build: str, check_status: int):
    """setup_venv in a folder whose .venv/bin/pip records its arguments and whose python
    says ``torch_build`` and answers the hardware check with ``check_status``."""
    venv = tmp_path / ".venv" / "bin"
    venv.mkdir(parents=True)
    log = tmp_path / "pip.log"
    _stub(venv / "pip", f'echo "$@" >> {log}\n')
    _stub(venv / "python", f'case "$*" in *"+cpu"*) [ "{torch_build}" = cpu ] && exit 0 || exit 1;; '
                           f'*normlab.hardware*) echo "torch ({torch_build})"; exit {check_status};; esac\n')
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    if gpus:
        _stub(bin_ / "nvidia-smi", "".join(f"echo 'GPU {i}: NVIDIA H200 (UUID: x)'\n" for i in range(gpus)))
    env = {**os.environ, "PATH": f"{bin_}{os.pathsep}/usr/bin{os.pathsep}/bin"}
    r = subprocess.run(["bash", "-c", f"set -euo pipefail; source {ROOT / 'scripts' / '_setup.sh'}; setup_venv test"],
                       cwd=tmp_path, env=env, capture_output=True, text=True)
    return r, (log.read_text().splitlines() if log.exists() else [])


def test_no_gpu_installs_the_plain_pin(tmp_path):
    r, pip = _run(tmp_path, gpus=0, torch_build="cpu", check_status=0)
    assert r.returncode == 0 and pip == ["install -q --disable-pip-version-check torch==2.13.0 -e .[test]"]
    assert "setup: torch (cpu)" in r.stdout


def test_a_gpu_replaces_a_cpu_build_with_pypis_cuda_build(tmp_path):
    r, pip = _run(tmp_path, gpus=2, torch_build="cpu", check_status=0)
    assert r.returncode == 0, r.stderr
    assert pip[0].startswith("install -q --disable-pip-version-check --force-reinstall --no-deps --index-url "
                             "https://pypi.org/simple torch==2.13.0")
    assert "--extra-index-url https://pypi.org/simple torch==2.13.0" in pip[1]
    assert "replacing the CPU build" in r.stdout


def test_a_gpu_with_a_cuda_build_keeps_it(tmp_path):
    r, pip = _run(tmp_path, gpus=1, torch_build="cu130", check_status=0)
    assert r.returncode == 0 and len(pip) == 1 and "--force-reinstall" not in pip[0]


@pytest.mark.parametrize("gpus", [1, 0])
def test_the_hardware_checks_failure_stops_the_script(tmp_path, gpus):
    r, _ = _run(tmp_path, gpus=gpus, torch_build="cpu", check_status=3)
    assert r.returncode == 3
