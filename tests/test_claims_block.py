"""The claims table kept in a hand-written file: `normlab report DIR... --claims-into FILE`."""

import shutil
from pathlib import Path

import pytest

from normlab.cli import main
from normlab.report.claims import BLOCK_BEGIN, BLOCK_END, combined_claims_md, replace_claims_block
from normlab.report.load import load_study

RESULTS = Path(__file__).resolve().parents[1] / "docs" / "results"


def test_the_block_between_the_markers_is_replaced_and_nothing_else():
    text = f"# Title\n\nintro\n{BLOCK_BEGIN}\n| old | table |\n|---|---|\n{BLOCK_END}\n\nafter\n"
    new = replace_claims_block(text, "| new |\n|---|\n", "README.md")
    assert new == f"# Title\n\nintro\n{BLOCK_BEGIN}\n| new |\n|---|\n{BLOCK_END}\n\nafter\n"
    # an empty block, and replacing again gives the same text
    assert replace_claims_block(new, "| new |\n|---|", "README.md") == new
    assert replace_claims_block(text, "", "R.md") == f"# Title\n\nintro\n{BLOCK_BEGIN}\n\n{BLOCK_END}\n\nafter\n"


@pytest.mark.parametrize("text, said", [
    ("no markers at all\n", "found none"),
    (f"{BLOCK_BEGIN}\nx\n", f"`{BLOCK_END}` around the claims table, found none"),
    (f"{BLOCK_BEGIN}\n{BLOCK_END}\n{BLOCK_BEGIN}\n", "found lines 1, 3"),
])
def test_missing_or_repeated_markers_are_named_with_the_file(text, said):
    with pytest.raises(ValueError, match="^docs/x.md: expected one line") as e:
        replace_claims_block(text, "| t |", "docs/x.md")
    assert said in str(e.value)


def test_an_end_marker_before_the_begin_marker_names_its_line():
    with pytest.raises(ValueError, match=r"^x.md:2: the claims block's end line comes before its begin line \(line 4\)"):
        replace_claims_block(f"a\n{BLOCK_END}\nb\n{BLOCK_BEGIN}\n", "| t |", "x.md")


def test_the_shipped_results_readme_holds_the_reports_claims():
    """docs/results/README.md's claims table is the one the shipped runs give (regenerate it with
    `normlab report docs/results/resnet docs/results/ner-plateau --claims-into docs/results/README.md`)."""
    text = (RESULTS / "README.md").read_text()
    studies = [(f"[{name}]({name}/report.md)", load_study(RESULTS / name)) for name in ("resnet", "ner-plateau")]
    assert replace_claims_block(text, combined_claims_md(studies), "README.md") == text


def test_cli_writes_the_block_with_links_relative_to_the_file(tmp_path):
    study = tmp_path / "results" / "ner-plateau"
    shutil.copytree(RESULTS / "ner-plateau", study, ignore=shutil.ignore_patterns("report*"))
    target = tmp_path / "docs" / "CLAIMS.md"
    target.parent.mkdir()
    target.write_text(f"before\n{BLOCK_BEGIN}\n{BLOCK_END}\nafter\n")
    assert main(["report", str(study), "--claims-into", str(target)]) == 0
    text = target.read_text()
    assert text.startswith(f"before\n{BLOCK_BEGIN}\n| study | claim |") and text.endswith(f"{BLOCK_END}\nafter\n")
    assert "| [ner-plateau](../results/ner-plateau/report.md) | A CRF layer helps, on GloVe rescaled |" in text
    assert (study / "report.md").exists()


def test_cli_refuses_a_target_without_markers_before_writing_any_report(tmp_path, capsys):
    study = tmp_path / "ner-plateau"
    shutil.copytree(RESULTS / "ner-plateau", study, ignore=shutil.ignore_patterns("report*"))
    target = tmp_path / "README.md"
    target.write_text("no block here\n")
    assert main(["report", str(study), "--claims-into", str(target)]) != 0
    assert "README.md: expected one line `<!-- normlab claims: begin" in capsys.readouterr().err
    assert main(["report", str(study), "--claims-into", str(tmp_path / "missing.md")]) != 0
    assert "missing.md: no such file for --claims-into" in capsys.readouterr().err
    assert target.read_text() == "no block here\n"
    assert not list(study.glob("report*"))
