"""Every kind of bad input is one clear line, exit status 2, and changes nothing on disk (issue 9).

Each row of ``CASES`` builds the bad input in a fresh folder and gives the
command line; the test runs ``normlab`` in-process and checks that

* the exit status is 2,
* the error is one line (``normlab: error: ...``, or argparse's
  ``normlab ...: error: argument --flag: ...`` after its usage lines) that
  matches the row's pattern (file and line where there is one),
* the folder is byte for byte as before: no run directory, no temp file,
  no half-written output, no touched input.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import re
import shutil
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from normlab.cli import main

from test_data_images import make_image_folder, make_official_folder
from test_own_norm import write_norm_package
from test_train_ner import synthetic_sentences, write_four_column


class _RunsCommand:
    """Loaded with plain pickle, this would run a shell command."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


@pytest.fixture(scope="module")
def fx(tmp_path_factory):
    """Good inputs shared by the cases (outside each case's folder): GMB files, images, a trained tagger."""
    root = tmp_path_factory.mktemp("good")
    gmb = [write_four_column(root / f"{n}.txt", synthetic_sentences(k, s))
           for n, k, s in (("train", 32, 0), ("val", 8, 1), ("test", 8, 2))]
    imgs = root / "imgs"
    make_image_folder(imgs)
    norms = write_norm_package(root / "usernorms", "usernorms_bad_input")  # a user's layers, good and bad
    run = root / "nerrun"
    assert main(["ner", "train", "--data", *gmb, "--epochs", "1", "--batch-size", "16", "--eval-every", "0",
                 "--train-eval-size", "8", "--device", "cpu", "--no-progress", "--out", str(run)]) == 0
    return {"gmb": gmb, "imgs": str(imgs), "run": run, "norms": str(norms)}


CASES: list[tuple[str, object, str]] = []


def case(pattern: str):
    """Register ``fn(t, fx) -> argv`` (or ``(argv, stdin_bytes)``, or ``{"argv": ..., "env": {...},
    "syspath": [folder, ...]}``) whose error must match ``pattern``."""
    def add(fn):
        CASES.append((fn.__name__, fn, pattern))
        return fn
    return add


def _ner(t, fx, *more, data=None):
    return ["ner", "train", "--data", *(data or fx["gmb"]), "--no-progress", "--device", "cpu",
            "--out", str(t / "run"), *more]


def _write(path: Path, data) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    (path.write_bytes if isinstance(data, bytes) else path.write_text)(data)
    return str(path)


def _copy_run(t, fx) -> Path:
    d = t / "model"
    shutil.copytree(fx["run"], d)
    return d


# --------------------------------------------------------------------------- ner train: data files

@case(r"expected a GMB data file, got '.*missing\.txt': no such file")
def ner_missing_file(t, fx):
    return _ner(t, fx, data=[str(t / "missing.txt")])


@case(r"empty\.txt, line 1: expected GMB sentences, got an empty file")
def ner_empty_file(t, fx):
    return _ner(t, fx, data=[_write(t / "empty.txt", "")])


@case(r"--data .*: expected a GMB data file, got a folder")
def ner_data_is_a_folder(t, fx):
    (t / "folder").mkdir()
    return _ner(t, fx, data=[str(t / "folder")])


@case(r"bad\.txt, line 2: expected 4 space-separated columns 'token POS word NER', got 3")
def ner_wrong_column_count(t, fx):
    return _ner(t, fx, data=[_write(t / "bad.txt", "paris NNP Paris B-geo\nsaid VBD said\n")])


@case(r"bad\.txt, line 2: expected a BIO tag \(O, B-type or I-type\), got 'X-verb'")
def ner_bad_tag(t, fx):
    return _ner(t, fx, data=[_write(t / "bad.txt", "paris NNP Paris B-geo\nsaid VBD said X-verb\n")])


@case(r"bad\.txt, line 2: expected UTF-8 text, got undecodable byte\(s\) b'\\xff'")
def ner_bad_encoding(t, fx):
    return _ner(t, fx, data=[_write(t / "bad.txt", b"paris NNP Paris B-geo\nsaid VBD s\xffid O\n")])


@case(r"bad\.csv, line 1: expected the CSV header 'Sentence #,Word,POS,Tag'")
def ner_csv_bad_header(t, fx):
    return _ner(t, fx, data=[_write(t / "bad.csv", "Sentence,Word,Tag\nSentence: 1,Paris,B-geo\n")])


@case(r"bad\.csv, line 3: expected 4 comma-separated columns")
def ner_csv_wrong_column_count(t, fx):
    return _ner(t, fx, data=[_write(t / "bad.csv", "Sentence #,Word,POS,Tag\nSentence: 1,Paris,NNP,B-geo\n,said,O\n")])


@case(r"bad\.csv, line 2: expected the first row to start a sentence")
def ner_csv_no_sentence_start(t, fx):
    return _ner(t, fx, data=[_write(t / "bad.csv", "Sentence #,Word,POS,Tag\n,Paris,NNP,B-geo\n")])


@case(r"cut\.zip: (expected a readable GMB file, got a broken one|.*zip)")
def ner_truncated_zip(t, fx):
    z = t / "whole.zip"
    with zipfile.ZipFile(z, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("gmb.txt", Path(fx["gmb"][0]).read_text() * 20)
    data = z.read_bytes()
    z.unlink()
    return _ner(t, fx, data=[_write(t / "cut.zip", data[: len(data) // 2])])


@case(r"two\.zip: expected a zip with a single GMB member .*got 2 members")
def ner_zip_with_two_members(t, fx):
    with zipfile.ZipFile(t / "two.zip", "w") as zf:
        zf.writestr("a.txt", "paris NNP Paris B-geo\n")
        zf.writestr("b.txt", "paris NNP Paris B-geo\n")
    return _ner(t, fx, data=[str(t / "two.zip")])


@case(r"one\.zip: no member 'nope\.txt' in the zip; members: \['a\.txt'\]")
def ner_zip_member_missing(t, fx):
    with zipfile.ZipFile(t / "one.zip", "w") as zf:
        zf.writestr("a.txt", "paris NNP Paris B-geo\n")
    return _ner(t, fx, data=[f"{t / 'one.zip'}:nope.txt"])


@case(r"expected --data to be 1 GMB file or 3 \(train, val, test\), got 2")
def ner_two_data_files(t, fx):
    return _ner(t, fx, data=fx["gmb"][:2])


# --------------------------------------------------------------------------- ner train: numbers

@case(r"argument --lr-decay: expected a finite number, got 'nan'")
def ner_lr_decay_nan(t, fx):
    return _ner(t, fx, "--lr-decay", "nan")


@case(r"argument --lr: expected a finite number, got 'inf'")
def ner_lr_inf(t, fx):
    return _ner(t, fx, "--lr", "inf")


@case(r"argument --momentum: expected a finite number, got '-inf'")
def ner_momentum_minus_inf(t, fx):
    return _ner(t, fx, "--momentum=-inf")


@case(r"argument --clip: invalid float value: 'five'")
def ner_clip_not_a_number(t, fx):
    return _ner(t, fx, "--clip", "five")


@case(r"expected --dropout to be a finite number in \[0, 1\), got 1\.5")
def ner_dropout_out_of_range(t, fx):
    return _ner(t, fx, "--dropout", "1.5")


@case(r"expected --clip to be a finite number > 0, got -1\.0")
def ner_clip_negative(t, fx):
    return _ner(t, fx, "--clip=-1")


@case(r"expected --patience to be an integer >= 0 \(0: never stop early\), got -1")
def ner_patience_negative(t, fx):
    return _ner(t, fx, "--patience=-1")


@case(r"expected --batch-size to be an integer >= 1, got 0")
def ner_batch_size_zero(t, fx):
    return _ner(t, fx, "--batch-size", "0")


@case(r"argument --epochs: invalid int value: 'many'")
def ner_epochs_not_an_integer(t, fx):
    return _ner(t, fx, "--epochs", "many")


@case(r"expected --limit-train to be an integer >= 1, got 0")
def ner_limit_train_zero(t, fx):
    return _ner(t, fx, "--limit-train", "0")


@case(r"expected --eval-every to be an integer >= 0 \(0: once per epoch\), got -5")
def ner_eval_every_negative(t, fx):
    return _ner(t, fx, "--eval-every=-5")


@case(r"expected a device such as auto, cpu, cuda, cuda:1 or mps, got 'banana'")
def ner_unknown_device(t, fx):
    return _ner(t, fx, "--device", "banana")


# --------------------------------------------------------------------------- ner train: GloVe files

@case(r"expected 'glove-6b-50d' or a GloVe text file .*got '.*nope\.txt': no such file")
def glove_missing(t, fx):
    return _ner(t, fx, "--embeddings", str(t / "nope.txt"))


@case(r"glove\.txt, line 2: expected 3 finite floats after the word, got nan \(word 'paris'; 1 such line\(s\)\)")
def glove_nan_value(t, fx):
    return _ner(t, fx, "--embeddings", _write(t / "glove.txt", "the 0.1 0.2 0.3\nparis 0.1 nan 0.3\n"))


@case(r"glove\.txt, line 3: expected 3 finite floats after the word, got inf")
def glove_inf_value(t, fx):
    return _ner(t, fx, "--embeddings", _write(t / "glove.txt", "the 0.1 0.2 0.3\na 1 2 3\nparis inf 0.2 0.3\n"))


@case(r"glove\.txt, line 2: expected a word and 3 floats \(the dimension of the first line\), got 2 values")
def glove_short_line(t, fx):
    return _ner(t, fx, "--embeddings", _write(t / "glove.txt", "the 0.1 0.2 0.3\nparis 0.1 0.2\n"))


@case(r"glove\.txt, line 2: expected 3 floats after the word")
def glove_not_a_float(t, fx):
    return _ner(t, fx, "--embeddings", _write(t / "glove.txt", "the 0.1 0.2 0.3\nparis 0.1 zero 0.3\n"))


@case(r"glove\.txt: expected GloVe vectors 'word f1 f2 \.\.\.' a line, got an empty file")
def glove_empty(t, fx):
    return _ner(t, fx, "--embeddings", _write(t / "glove.txt", "\n\n"))


@case(r"glove\.txt, line 2: expected UTF-8 text, got byte\(s\) b'\\xe9'")
def glove_bad_encoding(t, fx):
    return _ner(t, fx, "--embeddings", _write(t / "glove.txt", b"the 0.1 0.2\ncaf\xe9 0.1 0.2\n"))


@case(r"glove\.zip: expected one GloVe \.txt member, got 2: \['a\.txt', 'b\.txt'\]; name one as")
def glove_zip_with_two_txt(t, fx):
    with zipfile.ZipFile(t / "glove.zip", "w") as zf:
        zf.writestr("a.txt", "the 0.1\n")
        zf.writestr("b.txt", "the 0.1 0.2\n")
    return _ner(t, fx, "--embeddings", str(t / "glove.zip"))


# --------------------------------------------------------------------------- ner train: --out and resuming

@case(r"--out .*taken: expected a folder \(new or holding a run\), got an existing file")
def ner_out_is_a_file(t, fx):
    _write(t / "taken", "my notes")
    return _ner(t, fx)[:-1] + [str(t / "taken")]


@case(r"--out .*notes/run: cannot create the folder: .*notes is a file, not a folder")
def ner_out_under_a_file(t, fx):
    _write(t / "notes", "my notes")
    return _ner(t, fx)[:-1] + [str(t / "notes" / "run")]


@case(r"model already holds a run; pass --resume to continue it or choose another --out")
def ner_out_holds_a_run(t, fx):
    return _ner(t, fx)[:-1] + [str(_copy_run(t, fx))]


@case(r"--resume: settings differ from .*config\.json: --lr: saved 0\.01, now 0\.5; only .*--device.* may change")
def ner_resume_with_other_settings(t, fx):
    d = _copy_run(t, fx)
    (d / "summary.json").unlink()
    return ["ner", "train", "--data", *fx["gmb"], "--epochs", "1", "--batch-size", "16", "--eval-every", "0",
            "--train-eval-size", "8", "--no-progress", "--out", str(d), "--resume", "--lr", "0.5"]


@case(r"--resume: .*nothing holds no config\.json; start the run without --resume")
def ner_resume_without_a_run(t, fx):
    return _ner(t, fx, "--resume")[:-2] + [str(t / "nothing"), "--resume"]


# --------------------------------------------------------------------------- ner tag

@case(r"expected a run directory of `normlab ner train`, got '.*nowhere': no such directory")
def tag_missing_model(t, fx):
    return ["ner", "tag", "--model", str(t / "nowhere"), "Paris"]


@case(r"expected a run directory of `normlab ner train` holding vocab\.json and best\.pt, got '.*' without vocab\.json")
def tag_folder_without_a_model(t, fx):
    (t / "empty").mkdir()
    return ["ner", "tag", "--model", str(t / "empty"), "Paris"]


@case(r"best\.pt: refused: not a valid normlab checkpoint, loading it would run code \(it calls .*system\); "
      r"it was not written by normlab or was tampered with: replace it")
def tag_checkpoint_that_runs_code(t, fx):
    d = _copy_run(t, fx)
    torch.save({"model": _RunsCommand(f"touch {t / 'pwned'}")}, d / "best.pt")
    return ["ner", "tag", "--model", str(d), "Paris"]


@case(r"best\.pt: refused: not a valid normlab checkpoint \(a corrupt, truncated or foreign file: ")
def tag_truncated_checkpoint(t, fx):
    d = _copy_run(t, fx)
    data = (d / "best.pt").read_bytes()
    (d / "best.pt").write_bytes(data[: len(data) // 3])
    return ["ner", "tag", "--model", str(d), "Paris"]


@case(r"best\.pt: refused: its weights do not match the model of .*vocab\.json \(.*missing.*\); "
      r"it belongs to another run or model")
def tag_foreign_checkpoint(t, fx):
    d = _copy_run(t, fx)
    torch.save({"model": torch.nn.Linear(3, 2).state_dict()}, d / "best.pt")
    return ["ner", "tag", "--model", str(d), "Paris"]


@case(r"best\.pt: refused: its weights do not match the model of .*vocab\.json \(.* of another shape")
def tag_vocabulary_does_not_match_checkpoint(t, fx):
    d = _copy_run(t, fx)
    meta = json.loads((d / "vocab.json").read_text())
    meta["words"]["itos"].append("zzz-new-word")
    meta["model"]["num_words"] += 1
    (d / "vocab.json").write_text(json.dumps(meta))
    return ["ner", "tag", "--model", str(d), "Paris"]


@case(r"vocab\.json: line 1: not valid JSON")
def tag_vocabulary_not_json(t, fx):
    d = _copy_run(t, fx)
    (d / "vocab.json").write_text("{not json")
    return ["ner", "tag", "--model", str(d), "Paris"]


@case(r"vocab\.json: expected a normlab NER vocabulary file, got something else")
def tag_vocabulary_of_something_else(t, fx):
    d = _copy_run(t, fx)
    (d / "vocab.json").write_text('{"kind": "resnet"}')
    return ["ner", "tag", "--model", str(d), "Paris"]


@case(r"<stdin>, line 2: expected UTF-8 text, got byte\(s\) b'\\xff'")
def tag_stdin_not_utf8(t, fx):
    return ["ner", "tag", "--model", str(fx["run"])], b"Paris is nice\nZo\xff\n"


@case(r"argument --format: invalid choice: 'xml'")
def tag_unknown_format(t, fx):
    return ["ner", "tag", "--model", str(fx["run"]), "--format", "xml", "Paris"]


# --------------------------------------------------------------------------- resnet train

def _resnet(t, fx, *more, data=None):
    return ["resnet", "train", "--data", data or fx["imgs"], "--compile", "off", "--no-progress",
            "--device", "cpu", "--epochs", "1", "--batch-size", "4", "--out", str(t / "run"), *more]


@case(r"expected 'cifar10', a CIFAR-10 archive or folder, an image folder or its \.zip, got .*nowhere\.zip|"
      r"nowhere\.zip.*no such file")
def resnet_missing_data(t, fx):
    return _resnet(t, fx, data=str(t / "nowhere.zip"))


@case(r"argument --lr: expected a finite number, got 'nan'")
def resnet_lr_nan(t, fx):
    return _resnet(t, fx, "--lr", "nan")


@case(r"argument --weight-decay: expected a finite number, got 'inf'")
def resnet_weight_decay_inf(t, fx):
    return _resnet(t, fx, "--weight-decay", "inf")


@case(r"expected --gn-groups to divide the 16, 32 and 64 channels")
def resnet_bad_gn_groups(t, fx):
    return _resnet(t, fx, "--norm", "gn", "--gn-groups", "5")


@case(r"expected --norm to be one of bn, in, bin, ln, gn, nn, torch_bn, or a 'module:Class' import path of your "
      r"own layer, got 'batchnorm'")
def resnet_unknown_norm(t, fx):
    return _resnet(t, fx, "--norm", "batchnorm")


def _own_norm(t, fx, spec):
    return {"argv": _resnet(t, fx, "--norm", spec), "syspath": [fx["norms"]]}


@case(r"--norm usernorms_nowhere:RMSNorm2d: cannot import module 'usernorms_nowhere' \(no module named "
      r"'usernorms_nowhere' on sys\.path\); install it or put its folder on PYTHONPATH")
def resnet_own_norm_module_not_found(t, fx):
    return _own_norm(t, fx, "usernorms_nowhere:RMSNorm2d")


@case(r"--norm usernorms_bad_input\.broken:X: importing module 'usernorms_bad_input\.broken' failed: "
      r"RuntimeError: the module is broken")
def resnet_own_norm_module_fails_to_import(t, fx):
    return _own_norm(t, fx, "usernorms_bad_input.broken:X")


@case(r"--norm usernorms_bad_input\.layers:RMSNorm: module 'usernorms_bad_input\.layers' has no attribute "
      r"'RMSNorm' \(its nn\.Module classes: .*RMSNorm2d")
def resnet_own_norm_class_missing(t, fx):
    return _own_norm(t, fx, "usernorms_bad_input.layers:RMSNorm")


@case(r"--norm usernorms_bad_input\.layers:NotAModule: expected a torch\.nn\.Module subclass, got a class NotAModule")
def resnet_own_norm_not_a_module(t, fx):
    return _own_norm(t, fx, "usernorms_bad_input.layers:NotAModule")


@case(r"--norm usernorms_bad_input\.layers:TakesDim: expected a class built as TakesDim\(num_channels=C\), "
      r"but it takes \(dim\)")
def resnet_own_norm_without_num_channels(t, fx):
    return _own_norm(t, fx, "usernorms_bad_input.layers:TakesDim")


@case(r"--norm usernorms_bad_input\.layers:HalvesChannels: expected HalvesChannels to keep the activation's "
      r"shape \(2, 16, 4, 4\), got \(2, 8, 4, 4\)")
def resnet_own_norm_changes_the_shape(t, fx):
    return _own_norm(t, fx, "usernorms_bad_input.layers:HalvesChannels")


@case(r"--norm usernorms_bad_input\.layers:FailsForward: FailsForward\(num_channels=16\) failed on a "
      r"\(2, 16, 4, 4\) tensor: RuntimeError: forward is not written yet")
def resnet_own_norm_forward_fails(t, fx):
    return _own_norm(t, fx, "usernorms_bad_input.layers:FailsForward")


@case(r"expected --val-size below the 12 training images, got 12")
def resnet_val_size_too_large(t, fx):
    return _resnet(t, fx, "--val-size", "12")


@case(r"expected --limit-train at most the 8 non-validation training images, got 9")
def resnet_limit_train_too_large(t, fx):
    return _resnet(t, fx, "--val-size", "4", "--limit-train", "9")


@case(r"expected --batch-size at most the 8 training images, got 9")
def resnet_batch_size_too_large(t, fx):
    return _resnet(t, fx, "--val-size", "4", "--batch-size", "9")


@case(r"expected --warmup-epochs below --epochs \(1\), got 1")
def resnet_warmup_too_long(t, fx):
    return _resnet(t, fx, "--warmup-epochs", "1")


@case(r"imgs\.zip: member train/ant/001\.png: cannot decode the image \(UnidentifiedImageError: cannot identify "
      r"image file\); expected a readable")
def resnet_corrupt_image_in_zip(t, fx):
    z = t / "imgs.zip"
    with zipfile.ZipFile(z, "w") as zf:
        for p in sorted(Path(fx["imgs"]).rglob("*.png")):
            rel = p.relative_to(fx["imgs"]).as_posix()
            zf.writestr(rel, b"not a png at all" if rel == "train/ant/001.png" else p.read_bytes())
    return _resnet(t, fx, data=str(z))


@case(r"bad\.zip: member '\.\./evil' points outside the archive's folder")
def resnet_zip_path_traversal(t, fx):
    z = t / "bad.zip"
    with zipfile.ZipFile(z, "w") as zf:
        for p in sorted(Path(fx["imgs"]).rglob("*.png")):
            zf.write(p, p.relative_to(fx["imgs"]).as_posix())
        zf.writestr(zipfile.ZipInfo("../evil"), b"boo")
    return _resnet(t, fx, data=str(z))


@case(r"data_batch_2: refused to load the pickled global (posix|os)\.system")
def resnet_hostile_pickle(t, fx):
    folder, batches = make_official_folder(t / "data")
    tampered = dict(batches["data_batch_2"])
    tampered[b"labels"] = _RunsCommand(f"touch {t / 'pwned'}")
    (folder / "data_batch_2").write_bytes(pickle.dumps(tampered, protocol=2))
    return _resnet(t, fx, data=str(folder))


@case(r"--out .*taken: expected a folder \(new or holding a run\), got an existing file")
def resnet_out_is_a_file(t, fx):
    _write(t / "taken", "x")
    return _resnet(t, fx)[:-1] + [str(t / "taken")]


@case(r"--resume: settings differ from .*config\.json: --lr: saved 0\.2, now 0\.1; only --compile, --device")
def resnet_resume_with_other_settings(t, fx):
    from normlab import files
    from normlab.cli.resnet import config_from_args
    from normlab.cli import build_parser

    argv = _resnet(t, fx)
    saved = files.to_jsonable(config_from_args(build_parser().parse_args(argv + ["--lr", "0.2"])))
    _write(t / "run" / "config.json", json.dumps({"kind": "resnet", "config": saved}))
    torch.save({"model": {}}, t / "run" / "last.pt")
    return argv + ["--resume", "--compile", "auto"]


# --------------------------------------------------------------------------- study and report

@case(r"expected a GMB data file, got '.*missing\.csv': no such file")
def study_missing_data(t, fx):
    return ["study", "ner", "--out", str(t / "s"), "--data", str(t / "missing.csv")]


@case(r"bad\.txt, line 2: expected a BIO tag \(O, B-type or I-type\), got 'X-verb'")
def study_bad_data_line(t, fx):
    bad = _write(t / "bad.txt", "paris NNP Paris B-geo\nsaid VBD said X-verb\n")
    return ["study", "ner", "--out", str(t / "s"), "--data", bad, "--variants", "random"]


@case(r"--out .*taken: expected a folder \(new or holding a run\), got an existing file")
def study_out_is_a_file(t, fx):
    _write(t / "taken", "x")
    return ["study", "ner", "--out", str(t / "taken"), "--data", fx["gmb"][0]]


@case(r"--run-arg: normlab ner train: error: argument --lr: expected a finite number, got 'nan'$")
def study_run_arg_nan(t, fx):
    return ["study", "ner", "--out", str(t / "s"), "--data", *fx["gmb"], "--variants", "random",
            "--run-arg=--lr=nan"]


@case(r"expected --dropout to be a finite number in \[0, 1\), got 2\.0")
def study_run_arg_out_of_range(t, fx):
    return ["study", "ner", "--out", str(t / "s"), "--data", *fx["gmb"], "--variants", "random",
            "--run-arg=--dropout=2"]


@case(r"expected --seeds >= 1, got 0")
def study_zero_seeds(t, fx):
    return ["study", "ner", "--out", str(t / "s"), "--data", *fx["gmb"], "--seeds", "0"]


@case(r"expected variants among random, random50, glove, .*got xx")
def study_unknown_variant(t, fx):
    return ["study", "ner", "--out", str(t / "s"), "--data", *fx["gmb"], "--variants", "xx"]


@case(r"--data .*nowhere: no such file or folder")
def study_resnet_missing_data(t, fx):
    return ["study", "resnet", "--out", str(t / "s"), "--data", str(t / "nowhere")]


@case(r"--embeddings .*glove\.txt: no such file")
def study_missing_embeddings(t, fx):
    return ["study", "ner", "--out", str(t / "s"), "--data", *fx["gmb"], "--embeddings", str(t / "glove.txt")]


@case(r"neither a study\.json nor any run directory under runs/<variant>/seed<S>/")
def report_on_a_folder_that_is_no_study(t, fx):
    (t / "plain").mkdir()
    return ["report", str(t / "plain")]


# --------------------------------------------------------------------------- issue 16: a second adversarial pass

def _vocab(d: Path) -> dict:
    return json.loads((d / "vocab.json").read_text())


@case(r"bad\.csv, line 2: expected UTF-8 text \(the file opens with a UTF-8 byte-order mark\), "
      r"got undecodable byte\(s\) b'\\xfc'")
def ner_csv_bom_then_latin1(t, fx):
    return _ner(t, fx, data=[_write(t / "bad.csv", b"\xef\xbb\xbfSentence #,Word,POS,Tag\nSentence: 1,Z\xfcrich,NNP,B-geo\n")])


@case(r"u16\.csv, line 1: expected the CSV header 'Sentence #,Word,POS,Tag'")
def ner_csv_utf16(t, fx):
    return _ner(t, fx, data=[_write(t / "u16.csv", "Sentence #,Word,POS,Tag\nSentence: 1,Paris,NNP,B-geo\n".encode("utf-16"))])


@case(r"junk\.txt, line \d+: expected UTF-8 text, got undecodable byte")
def ner_binary_junk(t, fx):
    return _ner(t, fx, data=[_write(t / "junk.txt", bytes(range(256)) * 4)])


@case(r"cut\.txt\.gz: expected a readable GMB file, got a broken one")
def ner_truncated_gzip(t, fx):
    import gzip

    data = gzip.compress(Path(fx["gmb"][0]).read_bytes() * 20)
    return _ner(t, fx, data=[_write(t / "cut.txt.gz", data[: len(data) // 2])])


@case(r"--resume: --data .*train\.txt: the file changed since the run started \(now \d+ bytes, SHA-256 \w+; "
      r".*config\.json saved \d+ bytes, SHA-256 \w+\); restore the file")
def ner_resume_on_changed_data(t, fx):
    d = _copy_run(t, fx)
    (d / "summary.json").unlink()  # interrupted after its last checkpoint
    data = [str(shutil.copy(p, t / Path(p).name)) for p in fx["gmb"]]
    cfg = json.loads((d / "config.json").read_text())
    cfg["config"]["data"] = data  # the run as if started on these copies
    (d / "config.json").write_text(json.dumps(cfg))
    with open(data[0], "a") as f:  # then one more sentence in the training file
        f.write("\nrome NNP Rome B-geo\n")
    return ["ner", "train", "--data", *data, "--epochs", "1", "--batch-size", "16", "--eval-every", "0",
            "--train-eval-size", "8", "--no-progress", "--out", str(d), "--resume"]


@case(r"--resume: --data .*imgs\.zip: the file changed since the run started")
def resnet_resume_on_changed_data(t, fx):
    from normlab import files
    from normlab.cli.resnet import config_from_args
    from normlab.cli import build_parser

    z = t / "imgs.zip"
    with zipfile.ZipFile(z, "w") as zf:
        for p in sorted(Path(fx["imgs"]).rglob("*.png")):
            zf.write(p, p.relative_to(fx["imgs"]).as_posix())
    argv = _resnet(t, fx, data=str(z))
    saved = files.to_jsonable(config_from_args(build_parser().parse_args(argv)))
    _write(t / "run" / "config.json", json.dumps({"kind": "resnet", "config": saved,
                                                  "data": {"file": files.file_fingerprint(z)}}))
    torch.save({"model": {}}, t / "run" / "last.pt")
    with zipfile.ZipFile(z, "a") as zf:  # an image added since
        zf.writestr("train/ant/999.png", (Path(fx["imgs"]) / "train/ant/000.png").read_bytes())
    return argv + ["--resume"]


@case(r"vocab\.json: refused: expected a tag list, got an empty one; it was edited or comes from another run")
def tag_vocabulary_with_no_tags(t, fx):
    d = _copy_run(t, fx)
    meta = _vocab(d)
    meta["tags"]["itos"] = []
    (d / "vocab.json").write_text(json.dumps(meta))
    return ["ner", "tag", "--model", str(d), "Paris"]


@case(r"vocab\.json: refused: its tags .* are not the model's tag_names .*\(in that order\)")
def tag_vocabulary_with_reordered_tags(t, fx):
    d = _copy_run(t, fx)
    meta = _vocab(d)
    meta["tags"]["itos"].reverse()
    (d / "vocab.json").write_text(json.dumps(meta))
    return ["ner", "tag", "--model", str(d), "Paris"]


@case(r"vocab\.json: refused: its tags .* are not those the run trained with \(config\.json: ")
def tag_vocabulary_reordered_with_its_model(t, fx):
    d = _copy_run(t, fx)
    meta = _vocab(d)
    meta["tags"]["itos"].reverse()
    meta["model"]["tag_names"].reverse()
    (d / "vocab.json").write_text(json.dumps(meta))
    return ["ner", "tag", "--model", str(d), "Paris"]


@case(r"vocab\.json: refused: expected BIO tags \(O, B-type or I-type\), got 'PERSON'")
def tag_vocabulary_with_a_tag_that_is_not_bio(t, fx):
    d = _copy_run(t, fx)
    meta = _vocab(d)
    meta["tags"]["itos"][-1] = meta["model"]["tag_names"][-1] = "PERSON"
    (d / "vocab.json").write_text(json.dumps(meta))
    return ["ner", "tag", "--model", str(d), "Paris"]


@case(r"vocab\.json: refused: its \d+ words do not match the model's num_words \d+")
def tag_vocabulary_missing_a_word(t, fx):
    d = _copy_run(t, fx)
    meta = _vocab(d)
    meta["words"]["itos"].pop()
    (d / "vocab.json").write_text(json.dumps(meta))
    return ["ner", "tag", "--model", str(d), "Paris"]


@case(r"vocab\.json: expected a normlab NER vocabulary file, got a damaged one")
def tag_vocabulary_with_duplicate_words(t, fx):
    d = _copy_run(t, fx)
    meta = _vocab(d)
    meta["words"]["itos"][-1] = meta["words"]["itos"][-2]
    (d / "vocab.json").write_text(json.dumps(meta))
    return ["ner", "tag", "--model", str(d), "Paris"]


@case(r"best\.pt: refused: not a normlab checkpoint \(expected a dict of weights and state, got list\)")
def tag_checkpoint_that_is_a_list(t, fx):
    d = _copy_run(t, fx)
    torch.save([torch.zeros(2)], d / "best.pt")
    return ["ner", "tag", "--model", str(d), "Paris"]


@case(r"best\.pt: refused: not a normlab checkpoint \(no model weights; keys weights\)")
def tag_checkpoint_without_model_weights(t, fx):
    d = _copy_run(t, fx)
    torch.save({"weights": torch.zeros(2)}, d / "best.pt")
    return ["ner", "tag", "--model", str(d), "Paris"]


@case(r"best\.pt: refused: not a valid normlab checkpoint \(a corrupt, truncated or foreign file")
def tag_empty_checkpoint(t, fx):
    d = _copy_run(t, fx)
    (d / "best.pt").write_bytes(b"")
    return ["ner", "tag", "--model", str(d), "Paris"]


@case(r"expected a run directory of `normlab ner train` holding vocab\.json and best\.pt, got .* without vocab\.json")
def tag_vocabulary_is_a_folder(t, fx):
    d = _copy_run(t, fx)
    (d / "vocab.json").unlink()
    (d / "vocab.json").mkdir()
    return ["ner", "tag", "--model", str(d), "Paris"]


@case(r"glove\.zip: expected a zip with a single GloVe text member .*got 2 members")
def glove_zip_without_txt(t, fx):
    with zipfile.ZipFile(t / "glove.zip", "w") as zf:
        zf.writestr("readme.md", "no vectors here\n")
        zf.writestr("vectors.npy", b"\x93NUMPY")
    return _ner(t, fx, "--embeddings", str(t / "glove.zip"))


@case(r"glove\.txt, line 2: expected a word and 3 floats \(the dimension of the first line\), got 5 values")
def glove_long_line(t, fx):
    return _ner(t, fx, "--embeddings", _write(t / "glove.txt", "the 0.1 0.2 0.3\nparis 0.1 0.2 0.3 0.4 0.5\n"))


@case(r"imgs\.zip: expected at least 2 classes to tell apart \(a folder each under train/ and test/\), got 1: \['ant'\]")
def resnet_a_single_class(t, fx):
    z = t / "imgs.zip"
    with zipfile.ZipFile(z, "w") as zf:
        for p in sorted(Path(fx["imgs"]).rglob("*.png")):
            if p.parent.name == "ant":
                zf.write(p, p.relative_to(fx["imgs"]).as_posix())
    return _resnet(t, fx, data=str(z), )[:-2] + ["--val-size", "1", "--batch-size", "1", "--out", str(t / "run")]


@case(r"imgs\.zip: class folders differ between train/ and test/: only in train: \['ant'\]")
def resnet_class_missing_from_test(t, fx):
    z = t / "imgs.zip"
    with zipfile.ZipFile(z, "w") as zf:
        for p in sorted(Path(fx["imgs"]).rglob("*.png")):
            rel = p.relative_to(fx["imgs"]).as_posix()
            if not rel.startswith("test/ant/"):
                zf.write(p, rel)
    return _resnet(t, fx, data=str(z))


@case(r"imgs\.zip: member train/ant/notes\.txt: not an image file; expected one of")
def resnet_text_file_among_images(t, fx):
    z = t / "imgs.zip"
    with zipfile.ZipFile(z, "w") as zf:
        for p in sorted(Path(fx["imgs"]).rglob("*.png")):
            zf.write(p, p.relative_to(fx["imgs"]).as_posix())
        zf.writestr("train/ant/notes.txt", "hello")
    return _resnet(t, fx, data=str(z))


@case(r"data_batch_1: labels must lie in 0\.\.9, found 0\.\.10")
def resnet_official_label_out_of_range(t, fx):
    folder, batches = make_official_folder(t / "data")
    tampered = dict(batches["data_batch_1"])
    tampered[b"labels"] = [10] + list(tampered[b"labels"])[1:]
    (folder / "data_batch_1").write_bytes(pickle.dumps(tampered, protocol=2))
    return _resnet(t, fx, data=str(folder))


@case(r"--data-dir .*notes: expected a folder to find or download CIFAR-10 in, got a file")
def resnet_data_dir_is_a_file(t, fx):
    return _resnet(t, fx, data="cifar10") + ["--data-dir", _write(t / "notes", "x")]


@case(r"NORMLAB_DATA \(the default --data-dir\) .*notes: expected a folder to find or download CIFAR-10 in, got a file")
def resnet_normlab_data_is_a_file(t, fx):
    return {"argv": _resnet(t, fx, data="cifar10"), "env": {"NORMLAB_DATA": _write(t / "notes", "x")}}


@case(r"--device banana: expected a device such as auto, cpu, cuda, cuda:1 or mps, got 'banana'")
def study_unknown_device(t, fx):
    return ["study", "ner", "--out", str(t / "s"), "--data", *fx["gmb"], "--variants", "random", "--device", "banana"]


@case(r"--device cuda:99: (device 'cuda:99' asked for, but torch\.cuda\.is_available\(\) is False|"
      r"expected a GPU index below)")
def study_device_this_machine_lacks(t, fx):
    return ["study", "ner", "--out", str(t / "s"), "--data", *fx["gmb"], "--variants", "random", "--device", "cuda:99"]


@case(r"--run-arg/--set: expected settings the study does not set itself, got --resume: the study sets it for every run "
      r"\(the study resumes interrupted runs itself")
def study_run_arg_resume(t, fx):
    return ["study", "ner", "--out", str(t / "s"), "--data", *fx["gmb"], "--variants", "random", "--run-arg=--resume"]


@case(r"--run-arg/--set: expected settings the study does not set itself, got --resume")
def study_run_arg_abbreviated_resume(t, fx):
    return ["study", "ner", "--out", str(t / "s"), "--data", *fx["gmb"], "--variants", "random", "--run-arg=--res"]


@case(r"--run-arg/--set: expected settings the study does not set itself, got --seed: .*use the study's --first-seed and --seeds")
def study_run_arg_seed(t, fx):
    return ["study", "ner", "--out", str(t / "s"), "--data", *fx["gmb"], "--variants", "random", "--run-arg=--seed=7"]


@case(r"--run-arg/--set: expected settings the study does not set itself, got --out: .*use the study's --out")
def study_run_arg_out(t, fx):
    return ["study", "ner", "--out", str(t / "s"), "--data", *fx["gmb"], "--variants", "random",
            f"--run-arg=--out={t / 'elsewhere'}"]


@case(r"--run-arg/--set: expected settings the variants do not set, got --word-dim: it would replace --word-dim 50 of "
      r"variant random50")
def study_run_arg_overrides_a_variant(t, fx):
    return ["study", "ner", "--out", str(t / "s"), "--data", *fx["gmb"], "--variants", "random50",
            "--run-arg=--word-dim=20"]


@case(r"--run-arg/--set: expected settings the variants do not set, got --lr: it would replace --lr 0\.1 of variant bn")
def study_resnet_run_arg_overrides_the_lr(t, fx):
    return ["study", "resnet", "--out", str(t / "s"), "--data", fx["imgs"], "--variants", "bn", "--val-size", "4",
            "--run-arg=--lr=0.3"]


@case(r"expected --limit-train at most the 8 non-validation training images, got 100000")
def study_resnet_limit_train_beyond_the_data(t, fx):
    return ["study", "resnet", "--out", str(t / "s"), "--data", fx["imgs"], "--variants", "bn", "--val-size", "4",
            "--limit-train", "100000"]


@case(r"expected --val-size below the 12 training images, got 10000")
def study_resnet_val_size_beyond_the_data(t, fx):
    return ["study", "resnet", "--out", str(t / "s"), "--data", fx["imgs"], "--variants", "bn"]


@case(r"expected --first-seed >= 0, got -3")
def study_negative_first_seed(t, fx):
    return ["study", "ner", "--out", str(t / "s"), "--data", *fx["gmb"], "--first-seed=-3"]


@case(r"expected --jobs >= 1, got 0")
def study_zero_jobs(t, fx):
    return ["study", "ner", "--out", str(t / "s"), "--data", *fx["gmb"], "--jobs", "0"]


@case(r"expected --cpus-per-run >= 1, got 0")
def study_zero_cpus_per_run(t, fx):
    return ["study", "ner", "--out", str(t / "s"), "--data", *fx["gmb"], "--cpus-per-run", "0"]


@case(r"expected --cluster ray with --ray-address, got --cluster local")
def study_ray_address_without_ray(t, fx):
    return ["study", "ner", "--out", str(t / "s"), "--data", *fx["gmb"], "--ray-address", "127.0.0.1:1"]


@case(r"--ray-address 127\.0\.0\.1:1: no Ray cluster answers there \(connection refused\); start one there")
def study_ray_address_where_nothing_answers(t, fx):
    return ["study", "ner", "--out", str(t / "s"), "--data", *fx["gmb"], "--variants", "random",
            "--cluster", "ray", "--ray-address", "127.0.0.1:1"]


@case(r"--ray-address head-node: expected HOST:PORT, the Ray head's address")
def study_ray_address_without_a_port(t, fx):
    return ["study", "ner", "--out", str(t / "s"), "--data", *fx["gmb"], "--variants", "random",
            "--cluster", "ray", "--ray-address", "head-node"]


@case(r"--embeddings .*vectors: expected a file, got a folder")
def study_embeddings_is_a_folder(t, fx):
    (t / "vectors").mkdir()
    return ["study", "ner", "--out", str(t / "s"), "--data", *fx["gmb"], "--variants", "glove",
            "--embeddings", str(t / "vectors")]


@case(r"s holds a study with other settings \(epochs: saved 3, now 1\); rerun with the saved settings")
def study_rerun_with_other_settings(t, fx):
    from normlab.study.settings import StudySettings

    s = StudySettings(kind="ner", out=str(t / "s"), data=fx["gmb"], epochs=3, variants=["random"], budget="full",
                      embeddings="glove-6b-50d")
    _write(t / "s" / "study.json", json.dumps({"kind": "ner", "settings": s.to_dict()}))
    return ["study", "ner", "--out", str(t / "s"), "--data", *fx["gmb"], "--variants", "random", "--epochs", "1",
            "--budget", "full"]


@case(r"expected one study folder with --out, got 2")
def report_two_studies_into_one_folder(t, fx):
    return ["report", str(t / "a"), str(t / "b"), "--out", str(t / "r")]


# --------------------------------------------------------------------------- the test

def _snapshot(root: Path) -> dict[str, bytes | None]:
    return {p.relative_to(root).as_posix(): (p.read_bytes() if p.is_file() else None)
            for p in sorted(root.rglob("*"))}


def run_cli(argv, capsys, monkeypatch, stdin: bytes | None = None) -> tuple[int, str]:
    if stdin is not None:
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin), encoding="latin-1"))
    try:
        code = main(argv)
    except SystemExit as e:  # argparse: usage lines, then one error line
        code = e.code
    return code, capsys.readouterr().err


def test_the_suite_covers_a_hundred_kinds():
    assert len(CASES) >= 100 and len({name for name, _, _ in CASES}) == len(CASES)


@pytest.mark.parametrize("name,build,pattern", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_exit_2_and_leaves_nothing(name, build, pattern, fx, tmp_path, capsys, monkeypatch):
    t = tmp_path / "case"
    t.mkdir()
    built = build(t, fx)
    if isinstance(built, dict):  # {"argv": ..., "env": {...}}: a bad environment variable
        for key, value in built.get("env", {}).items():
            monkeypatch.setenv(key, value)
        for folder in built.get("syspath", []):  # a user's module to import, as PYTHONPATH would
            monkeypatch.syspath_prepend(folder)
        built = built["argv"]
    argv, stdin = built if isinstance(built, tuple) else (built, None)
    before = _snapshot(t)
    good_run = _snapshot(fx["run"])
    code, err = run_cli(argv, capsys, monkeypatch, stdin)
    assert code == 2, err
    lines = err.strip().splitlines()
    assert lines, "no error message"
    last = lines[-1]
    assert re.search(r"^normlab( \w+)*: error: ", last), err
    assert all(line.startswith(("usage:", " ")) for line in lines[:-1]), f"more than one line of error:\n{err}"
    assert re.search(pattern, last), f"{last!r} does not match {pattern!r}"
    assert "Traceback" not in err and "BytesIO" not in err and "weights_only=False" not in err
    assert _snapshot(t) == before  # nothing created, nothing half-written, nothing touched
    assert _snapshot(fx["run"]) == good_run
    assert not list(tmp_path.rglob("pwned"))
