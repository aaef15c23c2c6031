"""One CLI vocabulary and recoverable interruptions (issue 9).

Every option shows its default; interrupted runs can always be rerun; the
outcome is printed once; ``ner tag`` reads and writes UTF-8 and cuts words
as the training reader does; IOB1 tags are repaired with one warning;
``--patience 0`` and ``--limit-train`` mean the same in every command.
"""

from __future__ import annotations

import argparse
import io
import json
import re
import sys
import warnings

import numpy as np
import pytest

from normlab import files
from normlab.cli import build_parser, main
from normlab.data.gmb import limit_sentences
from normlab.models.tagger import BiLSTMTagger
from normlab.train import ner
from normlab.train import resnet as T
from normlab.train.compiled import CompiledModel

from test_data_images import make_image_folder
from test_train_ner import synthetic_sentences, write_four_column


def _commands(parser: argparse.ArgumentParser, prefix=()):
    """(name, parser) of every command with options of its own, e.g. ("ner", "train")."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield prefix, parser
    for a in subs:
        for name, p in a.choices.items():
            yield from _commands(p, prefix + (name,))


def test_every_option_of_every_command_shows_its_default(capsys):
    commands = list(_commands(build_parser()))
    assert {" ".join(c) for c, _ in commands} >= {"resnet train", "ner train", "ner tag", "study resnet",
                                                  "study ner", "report"}
    for name, parser in commands:
        with pytest.raises(SystemExit):
            main([*name, "--help"])
        text = re.sub(r"\s+", "", capsys.readouterr().out)  # argparse wraps lines, also at hyphens
        formatter = parser._get_formatter()
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction) or action.help == argparse.SUPPRESS:
                continue
            if not action.option_strings and action.nargs not in ("*", "?"):
                continue  # a required positional argument has no default
            shown = formatter._expand_help(action)
            assert "default" in shown, f"{' '.join(name)} {action.option_strings or action.dest}: {shown!r}"
            assert re.sub(r"\s+", "", shown) in text, f"{' '.join(name)}: {shown!r} is not in --help"


def test_one_vocabulary_across_commands():
    by_flag: dict[str, set] = {}
    for name, parser in _commands(build_parser()):
        for a in parser._actions:
            for flag in a.option_strings:
                by_flag.setdefault(flag, set()).add((a.metavar, a.type.__name__ if a.type else None))
    # one metavar and one type per flag, whichever command offers it
    for flag in ("--out", "--limit-train", "--epochs", "--batch-size", "--seed", "--device", "--lr", "--data-dir",
                 "--val-size", "--patience", "--lr-scaling"):
        assert len(by_flag.get(flag, ())) <= 1 or flag in ("--lr-scaling",), (flag, by_flag.get(flag))
    assert by_flag["--out"] == {("DIR", None)} and by_flag["--limit-train"] == {("N", "int")}
    # every float option refuses nan and inf
    for name, parser in _commands(build_parser()):
        for a in parser._actions:
            assert a.type is not float, f"{' '.join(name)} {a.option_strings}: use finite_float"
    # the device default is auto everywhere
    devices = {a.default for _, p in _commands(build_parser()) for a in p._actions if "--device" in a.option_strings}
    assert devices == {"auto"}


@pytest.mark.parametrize("command, cls", [(("resnet", "train"), T.ResNetConfig), (("ner", "train"), ner.NERConfig)])
def test_choices_are_the_configs_literals(command, cls):
    """A flag's choices come from its config field's ``Literal[...]``: one list to change, not two."""
    import dataclasses
    import typing

    parser = dict(_commands(build_parser()))[command]
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls)}
    literal = {n: typing.get_args(h) for n, h in hints.items() if typing.get_origin(h) is typing.Literal}
    flagged = {a.dest: a.choices for a in parser._actions if a.dest in literal}
    assert flagged and all(tuple(flagged[n]) == literal[n] for n in flagged), (flagged, literal)
    assert all(a.dest not in fields or a.dest in literal for a in parser._actions if a.choices and a.dest != "norm")


def test_study_lr_scaling_has_the_resnet_name_and_keeps_the_old_one(tmp_path, monkeypatch):
    imgs = tmp_path / "imgs"
    make_image_folder(imgs)
    seen = []
    monkeypatch.setattr("normlab.study.runner.run_study", lambda s, report=True, **kw: seen.append(s.small_batch_lr) or 0)
    base = ["study", "resnet", "--out", str(tmp_path / "s"), "--data", str(imgs), "--variants", "bn_b8",
            "--val-size", "4"]  # the 12 images hold no 10,000 for validation (checked before the first run)
    assert main(base + ["--lr-scaling", "none"]) == 0
    assert main(base + ["--small-batch-lr", "same"]) == 0
    assert main(base) == 0
    assert seen == ["same", "same", "linear"]
    assert not (tmp_path / "s").exists()  # the check before the first run writes nothing


# --------------------------------------------------------------------------- interruptions


@pytest.fixture
def gmb(tmp_path):
    return [write_four_column(tmp_path / f"{n}.txt", synthetic_sentences(k, s))
            for n, k, s in (("train", 32, 0), ("val", 8, 1), ("test", 8, 2))]


def _ner_argv(gmb, out, *more):
    return ["ner", "train", "--data", *gmb, "--epochs", "1", "--batch-size", "16", "--eval-every", "0",
            "--train-eval-size", "8", "--no-progress", "--out", str(out), *more]


def test_ner_run_interrupted_before_its_first_checkpoint_starts_afresh(gmb, tmp_path, capsys, monkeypatch):
    def interrupted(self, batch, emissions=None, reduction="mean"):
        raise KeyboardInterrupt

    out = tmp_path / "run"
    with monkeypatch.context() as m:
        m.setattr(BiLSTMTagger, "loss", interrupted)
        assert main(_ner_argv(gmb, out, "--device", "auto")) == 130
    err = capsys.readouterr().err
    assert err.strip() == f"normlab: interrupted before the first checkpoint; rerun the same command to start {out} afresh"
    assert (out / "config.json").exists() and not (out / "last.pt").exists() and not (out / "summary.json").exists()
    # --resume (here with another --device) and a plain rerun both work: nothing was there to protect
    assert main(_ner_argv(gmb, out, "--resume", "--device", "cpu")) == 0
    err = capsys.readouterr().err
    assert f"note: {out} holds no checkpoint (a run interrupted before its first one); starting it afresh" in err
    assert files.read_json(out / "summary.json")["status"] == "finished"
    assert [r["step"] for r in files.read_jsonl(out / "metrics.jsonl")] == [2]


def test_interrupted_after_a_checkpoint_says_resume(gmb, tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    out.mkdir()
    (out / "last.pt").write_bytes(b"")

    def fit(cfg, progress=True):
        raise KeyboardInterrupt

    monkeypatch.setattr(ner, "fit", fit)
    assert main(_ner_argv(gmb, out)) == 130
    assert capsys.readouterr().err.strip() == f"normlab: interrupted; rerun with --resume to continue from {out / 'last.pt'}"


def test_resnet_interrupted_while_compiling_resumes_with_compile_off(tmp_path, capsys, monkeypatch):
    imgs = tmp_path / "imgs"
    make_image_folder(imgs)
    out = tmp_path / "run"
    argv = ["resnet", "train", "--data", str(imgs), "--val-size", "4", "--epochs", "1", "--batch-size", "4",
            "--device", "cpu", "--no-progress", "--out", str(out)]

    def compiling(self, fn, kind):
        raise KeyboardInterrupt  # Ctrl-C during the first compiled step

    with monkeypatch.context() as m:
        m.setattr(CompiledModel, "guarded", compiling)
        assert main(argv + ["--compile", "auto"]) == 130
    assert "rerun the same command to start" in capsys.readouterr().err
    assert files.read_json(out / "config.json")["config"]["compile"] == "auto" and not (out / "last.pt").exists()
    assert main(argv + ["--compile", "off", "--resume"]) == 0
    assert "starting it afresh" in capsys.readouterr().err
    assert files.read_json(out / "config.json")["config"]["compile"] == "off"
    assert files.read_json(out / "summary.json")["status"] == "finished"


def test_resnet_diverged_in_its_first_epoch_says_so_once_and_names_only_files_it_wrote(tmp_path, capsys):
    """Issue 16, finding 14: "diverged: diverged:" and a list of files naming a best.pt that does not exist."""
    imgs = tmp_path / "imgs"
    make_image_folder(imgs)
    out = tmp_path / "run"
    assert main(["resnet", "train", "--data", str(imgs), "--val-size", "4", "--epochs", "1", "--batch-size", "4",
                 "--norm", "nn", "--lr", "1e30", "--compile", "off", "--device", "cpu", "--no-progress",
                 "--out", str(out)]) == 0  # a diverged run is a result
    captured = capsys.readouterr()
    text = captured.out + captured.err
    assert files.read_json(out / "summary.json")["status"] == "diverged"
    assert "diverged: diverged" not in text and "diverged: the training loss became non-finite" in text
    listed = re.search(r"run directory: .*run \((.*)\)", captured.out).group(1).split(", ")
    assert "best.pt" not in listed and all((out / name).exists() for name in listed)


# --------------------------------------------------------------------------- ner train: outcome, nan, patience, limit


def test_diverging_at_the_first_update_says_there_is_no_checkpoint(gmb, tmp_path, capsys, monkeypatch):
    real = BiLSTMTagger.loss
    monkeypatch.setattr(BiLSTMTagger, "loss", lambda self, b, emissions=None, reduction="mean": real(self, b, emissions, reduction) * float("nan"))
    assert main(_ner_argv(gmb, tmp_path / "r")) == 0  # a diverged run is a result, as for resnet train
    out = capsys.readouterr().out
    summary = files.read_json(tmp_path / "r" / "summary.json")
    assert summary["status"] == "diverged" and summary["metrics"] is None
    assert summary["message"].endswith("at update 1, epoch 1; no checkpoint was written, so the summary metrics are null")
    assert "best checkpoint is kept" not in out and out.count("diverged") == 1


def test_the_outcome_is_printed_once(gmb, tmp_path, capsys):
    assert main(_ner_argv(gmb, tmp_path / "r", "--device", "cpu")) == 0
    out = capsys.readouterr().out
    assert out.count("finished") == 1 and out.count("\ntest: accuracy") == 1


def test_patience_0_never_stops_early(gmb, tmp_path):
    # A vanishing lr: the validation entity F1 cannot improve after the first evaluation.
    kw = dict(data=gmb, epochs=3, batch_size=16, eval_every=0, train_eval_size=8, lr=1e-12, device="cpu")
    never = ner.fit(ner.NERConfig(out=str(tmp_path / "never"), patience=0, **kw), progress=False)
    once = ner.fit(ner.NERConfig(out=str(tmp_path / "once"), patience=1, **kw), progress=False)
    assert never["status"] == "finished" and never["epochs_run"] == 3
    assert once["status"] == "early_stopped" and once["epochs_run"] == 2


def test_limit_train_is_a_seeded_random_subset_with_three_files_too():
    sents = list(range(100))
    a = limit_sentences(sents, 10, seed=0, shuffled=False)
    assert a == limit_sentences(sents, 10, seed=0, shuffled=False) and len(a) == 10 and a != sents[:10]
    assert a != limit_sentences(sents, 10, seed=1, shuffled=False) and a == sorted(a)
    assert limit_sentences(sents, 10, seed=0, shuffled=True) == sents[:10]  # one file: already a seeded shuffle
    assert limit_sentences(sents, None, seed=0, shuffled=False) is sents


# --------------------------------------------------------------------------- IOB1 tags


def test_iob1_tags_are_repaired_with_one_warning(tmp_path, capsys):
    from normlab.data.gmb import IOBRepairWarning, read_gmb

    f = tmp_path / "iob1.txt"
    f.write_text("john NNP John I-per\nsmith NNP Smith I-per\nin IN in O\nparis NNP Paris I-geo\n"
                 "rome NNP Rome I-org\n\nberlin NNP Berlin I-geo\n")
    with pytest.warns(IOBRepairWarning) as w:
        sents = read_gmb(f)
    assert [s.tags for s in sents] == [("B-per", "I-per", "O", "B-geo", "B-org"), ("B-geo",)]
    assert len(w) == 1 and str(w[0].message) == (
        f"warning: {f}, line 1: I-per after a sentence start or O starts an entity (IOB1); "
        f"repaired 4 such tag(s) to B-x (IOB2)")
    # Through the command line: the warning is one line on stderr, once per file read.
    data = [str(f)] + [write_four_column(tmp_path / f"{n}.txt", synthetic_sentences(8, s))
                       for n, s in (("val", 1), ("test", 2))]
    assert main(_ner_argv(data, tmp_path / "r", "--device", "cpu")) == 0
    err = [line for line in capsys.readouterr().err.splitlines() if "IOB" in line]
    assert err == [f"normlab: warning: {f}, line 1: I-per after a sentence start or O starts an entity (IOB1); "
                   f"repaired 4 such tag(s) to B-x (IOB2)"]


# --------------------------------------------------------------------------- ner tag: words, lines, UTF-8


@pytest.fixture
def tagger_run(gmb, tmp_path):
    out = tmp_path / "tagger"
    assert main(_ner_argv(gmb, out, "--device", "cpu")) == 0
    return out


def test_tag_cuts_words_and_lines_like_the_training_reader(tagger_run, capsys, monkeypatch):
    text = "Zoë\u00a0Smith visited\tParis\u2028today .\r\nMore\u0085text here\n"
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(text.encode("utf-8")), encoding="ascii"))
    capsys.readouterr()
    assert main(["ner", "tag", "--model", str(tagger_run), "--format", "json"]) == 0
    out = capsys.readouterr().out
    objs = [json.loads(line) for line in out.split("\n") if line]  # U+2028 stays inside a line
    assert [o["words"] for o in objs] == [["Zoë\u00a0Smith", "visited", "Paris\u2028today", "."],
                                          ["More\u0085text", "here"]]
    assert "Zoë" in out and "\\u00eb" not in out  # UTF-8, not ASCII escapes


def test_tag_arguments_are_one_sentence_each(tagger_run, capsys):
    capsys.readouterr()
    assert main(["ner", "tag", "--model", str(tagger_run), "Zoë\u00a0Smith  in Köln", "a\u2028b"]) == 0
    lines = capsys.readouterr().out.split("\n")[:-1]
    assert [[p.rsplit("/", 1)[0] for p in line.split(" ")] for line in lines] == [["Zoë\u00a0Smith", "in", "Köln"],
                                                                                 ["a\u2028b"]]
