"""The shipped study folders (docs/results) still load, and their reports regenerate unchanged.

A change to the report code or to the run-directory format that alters a shipped report fails
here: regenerate the reports (`normlab report docs/results/<study>`) and commit them with the
change that explains the difference.
"""

import shutil
from pathlib import Path

import pytest

from normlab.report import write_report

RESULTS = Path(__file__).resolve().parents[1] / "docs" / "results"


@pytest.mark.parametrize("study", ["resnet", "ner", "ner-plateau"])
def test_a_shipped_report_regenerates_byte_identical(study, tmp_path):
    src = RESULTS / study
    dst = tmp_path / study
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("report*"))
    write_report(dst)
    for name in ("report.md", "report.html"):
        new, old = (dst / name).read_text(), (src / name).read_text()
        assert new == old, f"{study}/{name} no longer regenerates identically"
