"""`normlab ner train` / `normlab ner tag`: bad input exits 2 with one clear line; tagging in three formats."""

import io
import json

import pytest

from normlab import files
from normlab.cli import main

from test_train_ner import synthetic_sentences, write_four_column


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """A tiny BiLSTM-CRF run trained through the command line."""
    tmp = tmp_path_factory.mktemp("ner_cli")
    files = [write_four_column(tmp / f"{n}.txt", synthetic_sentences(k, s))
             for n, k, s in (("train", 96, 0), ("val", 24, 1), ("test", 24, 2))]
    out = tmp / "run"
    code = main(["ner", "train", "--data", *files, "--char", "--crf", "--epochs", "3", "--batch-size", "16",
                 "--lr", "0.05", "--eval-every", "0", "--no-progress", "--out", str(out)])
    assert code == 0
    return out


def run(argv, capsys, stdin=None, monkeypatch=None):
    if stdin is not None:
        monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_train_prints_the_test_result_and_writes_the_run(trained_run, capsys):
    summary = json.loads((trained_run / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["updates"] == 18
    assert [r["step"] for r in files.read_jsonl(trained_run / "metrics.jsonl")] == [6, 12, 18]


def test_tag_text_format_from_arguments(trained_run, capsys):
    code, out, err = run(["ner", "tag", "--model", str(trained_run), "John Smith visited Paris .",
                          "the officials met"], capsys)
    assert code == 0, err
    lines = out.splitlines()
    assert len(lines) == 2
    pairs = [p.rsplit("/", 1) for p in lines[0].split()]
    assert [w for w, _ in pairs] == ["John", "Smith", "visited", "Paris", "."]
    tags = [t for _, t in pairs]
    assert all(t in {"O", "B-geo", "B-per", "I-per"} for t in tags)


def test_tag_conll_format_from_stdin(trained_run, capsys, monkeypatch):
    code, out, err = run(["ner", "tag", "--model", str(trained_run), "--format", "conll"], capsys,
                         stdin="Angela Merkel met George Bush\nParis said today .\n", monkeypatch=monkeypatch)
    assert code == 0, err
    blocks = out.split("\n\n")
    assert len(blocks) == 2
    first = [line.split(" ") for line in blocks[0].splitlines()]
    assert [w for w, _ in first] == ["Angela", "Merkel", "met", "George", "Bush"]
    assert all(len(x) == 2 for x in first)
    assert [line.split(" ")[0] for line in blocks[1].splitlines()] == ["Paris", "said", "today", "."]


def test_tag_json_format_has_consistent_entities(trained_run, capsys):
    code, out, err = run(["ner", "tag", "--model", str(trained_run), "--format", "json",
                          "George Bush visited Berlin on Monday", "John Smith met Angela Merkel in Cairo ."], capsys)
    assert code == 0, err
    objs = [json.loads(line) for line in out.splitlines()]
    assert len(objs) == 2
    for o in objs:
        assert set(o) == {"words", "tags", "entities"} and len(o["words"]) == len(o["tags"])
        for typ, start, end, text in o["entities"]:
            assert o["tags"][start] in (f"B-{typ}", f"I-{typ}")
            assert text == " ".join(o["words"][start:end])
    # The pattern is easy: after 3 epochs at least one name is found in these sentences.
    assert any(o["entities"] for o in objs)


def test_tag_on_a_folder_without_a_model_is_a_clear_error(tmp_path, capsys):
    code, out, err = run(["ner", "tag", "--model", str(tmp_path), "Paris"], capsys)
    assert code == 2
    assert err.startswith("normlab: error: ") and "vocab.json" in err and str(tmp_path) in err


def test_tag_on_a_missing_folder_is_a_clear_error(tmp_path, capsys):
    code, out, err = run(["ner", "tag", "--model", str(tmp_path / "nope"), "Paris"], capsys)
    assert code == 2 and "no such directory" in err


def test_tag_refuses_a_tampered_checkpoint(trained_run, tmp_path, capsys):
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(trained_run, bad)
    (bad / "best.pt").write_bytes(b"not a checkpoint")
    code, out, err = run(["ner", "tag", "--model", str(bad), "Paris"], capsys)
    assert code == 2 and "not a valid normlab checkpoint" in err


def test_train_on_a_missing_file_exits_2(tmp_path, capsys):
    code, out, err = run(["ner", "train", "--data", str(tmp_path / "missing.csv"), "--out", str(tmp_path / "r"),
                          "--no-progress"], capsys)
    assert code == 2 and "missing.csv" in err and "no such file" in err


def test_train_with_two_data_files_exits_2(tmp_path, capsys):
    a = write_four_column(tmp_path / "a.txt", synthetic_sentences(4, 0))
    code, out, err = run(["ner", "train", "--data", a, a, "--out", str(tmp_path / "r")], capsys)
    assert code == 2 and "expected --data to be 1 GMB file or 3" in err


def test_train_on_a_bad_file_names_the_line(tmp_path, capsys):
    bad = tmp_path / "bad.txt"
    bad.write_text("paris NNP Paris B-geo\nsaid VBD said X-verb\n")
    code, out, err = run(["ner", "train", "--data", str(bad), "--out", str(tmp_path / "r"), "--no-progress"], capsys)
    assert code == 2 and "line 2" in err and "X-verb" in err


@pytest.mark.parametrize("argv", [
    ["ner", "train", "--data", "x.csv", "--epochs", "many"],
    ["ner", "train", "--data", "x.csv", "--bogus"],
    ["ner", "tag", "--model", "x", "--format", "xml"],
    ["ner"],
])
def test_bad_flags_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    assert "error:" in capsys.readouterr().err


def test_train_without_data_or_config_exits_2(capsys):
    assert main(["ner", "train"]) == 2  # --data is required unless --config gives it
    assert "error: expected --data FILE (or --config FILE with the data), got none" in capsys.readouterr().err


def test_help_explains_the_options(capsys):
    with pytest.raises(SystemExit) as e:
        main(["ner", "train", "--help"])
    assert e.value.code == 0
    text = capsys.readouterr().out
    for flag in ("--data", "--embeddings", "--char", "--layer-norm", "--crf", "--no-crf-constraints", "--epochs",
                 "--patience", "--batch-size", "--lr", "--eval-every", "--limit-train", "--seed", "--device",
                 "--out", "--resume", "--no-progress"):
        assert flag in text, flag

