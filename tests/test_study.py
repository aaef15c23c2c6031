"""Study grids and the runner: planning, refusals, and real mini studies (run, kill, resume, report)."""

from __future__ import annotations

import csv
import dataclasses
import fcntl
import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from normlab.files import STUDY_LOCK, atomic_write_json, read_json, read_jsonl
from normlab.study import grids
from normlab.study.grids import select_variants, small_batch_lr, variants_for
from normlab.study.runner import plan, run_state, run_study
from normlab.study.runs import run_command, run_config, write_run_config
from normlab.study.settings import StudySettings

from test_report import check_table_matches_runs, parse_md_table

ROOT = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------- grids


def test_resnet_grid_is_the_seeds_grid():
    g = {v.name: v.overrides for v in grids.resnet_variants("linear")}
    assert list(g) == ["torch_bn", "bn", "in", "bin", "ln", "gn", "nn", "bn_b8", "gn_b8"]
    assert all(s["batch_size"] == 128 and s["lr"] == 0.1 for n, s in g.items() if not n.endswith("_b8"))
    assert g["bn_b8"] == {"norm": "bn", "batch_size": 8, "lr": 0.1 * 8 / 128}
    assert g["gn_b8"]["norm"] == "gn"
    assert {v.name: v.overrides["lr"] for v in grids.resnet_variants("same")}["gn_b8"] == 0.1


def test_small_batch_lr_rules():
    assert small_batch_lr("linear") == pytest.approx(0.00625)
    assert small_batch_lr("same") == 0.1
    with pytest.raises(ValueError, match="expected small-batch lr rule 'linear' or 'same', got 'sqrt'"):
        small_batch_lr("sqrt")


def test_ner_grid_configs(tmp_path):
    v = {x.name: x for x in grids.ner_variants()}
    raw = ["glove", "glove_char", "glove_char_ln", "crf", "crf_ln", "crf_free"]
    assert list(v) == ["random", "random50", *raw, *(f"{n}_small" for n in raw)]
    for n in raw:  # the rescaled setup: each GloVe variant again, at the random initialization's spread
        assert v[f"{n}_small"].overrides == {**v[n].overrides, "embedding_std": grids.RANDOM_50D_STD}
        assert grids.NER_RESCALED[n] == f"{n}_small"
    s = StudySettings(kind="ner", out="o", data="gmb.csv", embeddings="glove.txt")
    cfg = lambda name: run_config(s, v[name], 3, check_files=False)
    assert cfg("random").embeddings is None and cfg("random50").word_dim == 50
    assert cfg("glove").embeddings == "glove.txt"
    assert StudySettings(kind="ner", out="o", data="g").embeddings is None and \
        run_config(StudySettings(kind="ner", out="o", data="g"), v["glove"], 0, check_files=False).embeddings \
        == "glove-6b-50d"
    assert (cfg("crf_ln").char, cfg("crf_ln").layer_norm, cfg("crf_ln").crf) == (True, True, True)
    assert not cfg("glove_char_ln").crf
    assert cfg("crf_free").crf_constraints is False and cfg("crf").crf_constraints is True
    c = cfg("crf")
    assert c.seed == 3 and c.out == str(Path("o/runs/crf/seed3")) and c.data == ["gmb.csv"]


def test_a_run_is_its_config_written_before_it_starts(tmp_path):
    """The study writes the run's config.json (the trainer's format) and starts `train --config` on it."""
    s = StudySettings(kind="ner", out="o", data="gmb.csv", epochs=4)
    v = grids.ner_variants()[5]  # crf
    path = write_run_config(s, v, 1, tmp_path / "run")
    saved = read_json(path)
    assert set(saved) == {"kind", "config"} and saved["kind"] == "ner"
    assert saved["config"]["crf"] is True and saved["config"]["epochs"] == 4 and saved["config"]["seed"] == 1
    assert run_state(tmp_path / "run") == "new"  # written by the study, not started by the trainer
    c = run_command("ner", tmp_path / "run", resume=False)
    assert c[:5] == [sys.executable, "-m", "normlab", "ner", "train"]
    assert c[c.index("--config") + 1] == str(path) and c[c.index("--out") + 1] == str(tmp_path / "run")
    assert "--resume" not in c and run_command("ner", tmp_path / "run", True)[-1] == "--resume"


def test_resnet_config_carries_the_study_settings():
    s = StudySettings(kind="resnet", out="o", data="c.zip", epochs=7, limit_train=256, val_size=128,
                      overrides={"compile": "off"})
    v = {x.name: x for x in grids.resnet_variants()}
    c = run_config(s, v["gn_b8"], 0)
    assert (c.norm, c.batch_size, c.lr) == ("gn", 8, 0.00625)
    assert (c.data, c.epochs, c.limit_train, c.val_size, c.compile) == ("c.zip", 7, 256, 128, "off")
    assert c.n == 2


def test_unknown_variant_lists_the_valid_ones():
    with pytest.raises(ValueError, match="expected variants among torch_bn, bn, in, bin, ln, gn, nn, bn_b8, gn_b8, gn_g2, .*, got bn8"):
        select_variants("resnet", ["bn", "bn8"])
    assert [v.name for v in select_variants("ner", ["crf", "random"])] == ["random", "crf"]


@pytest.mark.parametrize("kw, msg", [
    (dict(kind="resnet"), "expected --data PATH|cifar10 or --data-dir DIR"),
    (dict(kind="ner"), "expected --data FILE"),
    (dict(kind="ner", data=["a", "b"]), "expected one GMB file or three"),
    (dict(kind="resnet", data="x", seeds=0), "expected --seeds >= 1, got 0"),
    (dict(kind="resnet", data="x", jobs=0), "expected --jobs >= 1, got 0"),
    (dict(kind="resnet", data="x", epochs=0), "expected --epochs >= 1, got 0"),
    (dict(kind="resnet", data="x", limit_train=0), "expected --limit-train >= 1, got 0"),
    (dict(kind="img", data="x"), "expected kind 'resnet' or 'ner'"),
])
def test_settings_are_validated(kw, msg):
    with pytest.raises(ValueError, match=msg):
        StudySettings(out="o", **kw).validate()


def test_shortened_reasons():
    assert StudySettings(kind="resnet", out="o", data="x").shortened() == []
    assert StudySettings(kind="resnet", out="o", data="x", epochs=100).shortened() == []
    assert StudySettings(kind="resnet", out="o", data="x", epochs=30, val_size=256).shortened() == [
        "30 epochs instead of 100", "256 validation images instead of 10,000"]
    assert StudySettings(kind="ner", out="o", data="x", limit_train=50).shortened() == [
        "only 50 training sentences, drawn at random (--limit-train)"]


# ----------------------------------------------------------------------------- planning


def test_plan_skips_finished_and_resumes_interrupted(tmp_path):
    s = StudySettings(kind="ner", out=str(tmp_path), data="gmb.csv", seeds=2)
    (tmp_path / "runs/random/seed0").mkdir(parents=True)
    atomic_write_json(tmp_path / "runs/random/seed0/config.json", {"env": {}})
    atomic_write_json(tmp_path / "runs/random/seed0/summary.json", {})
    (tmp_path / "runs/glove/seed1").mkdir(parents=True)
    atomic_write_json(tmp_path / "runs/glove/seed1/config.json", {"env": {}})  # the trainer's: it started
    (tmp_path / "runs/crf/seed0").mkdir(parents=True)  # created, but the run died before its config
    (tmp_path / "runs/crf_ln/seed0").mkdir(parents=True)  # the study's config.json, the trainer never started
    atomic_write_json(tmp_path / "runs/crf_ln/seed0/config.json", {"kind": "ner", "config": {}})
    assert run_state(tmp_path / "runs/random/seed0") == "finished"
    assert run_state(tmp_path / "runs/glove/seed1") == "interrupted"
    assert run_state(tmp_path / "runs/crf/seed0") == "new" and run_state(tmp_path / "runs/crf_ln/seed0") == "new"
    todo = {(t.variant.name, t.seed): t.resume for t in plan(s)}
    assert ("random", 0) not in todo and todo[("random", 1)] is False
    assert todo[("glove", 1)] is True and todo[("glove", 0)] is False and todo[("crf", 0)] is False
    # The grid is data: every variant is planned, whatever the installed command offers.
    assert {v for v, _ in todo} == {v.name for v in grids.ner_variants()} and len(todo) == 2 * 14 - 1


def test_plan_starts_interrupted_runs_then_every_variants_first_seed_before_any_second(tmp_path):
    s = StudySettings(kind="resnet", out=str(tmp_path), data="c.zip", sanity_seeds=3)
    for name, seed, finished in (("torch_bn", 0, True), ("torch_bn", 1, True), ("torch_bn", 2, False),
                                 ("bn", 0, False), ("ln", 0, True)):
        d = tmp_path / f"runs/{name}/seed{seed}"
        d.mkdir(parents=True)
        atomic_write_json(d / "config.json", {"env": {}})
        if finished:
            atomic_write_json(d / "summary.json", {})
    order = [(t.variant.name, t.seed, t.resume) for t in plan(s)]
    assert order == [("bn", 0, True), ("torch_bn", 2, True),
                     ("in", 0, False), ("bin", 0, False), ("gn", 0, False), ("nn", 0, False),
                     ("bn_b8", 0, False), ("gn_b8", 0, False),
                     ("bn", 1, False), ("bn", 2, False)]
    # a fresh study: seed by seed, grid order within a seed
    fresh = StudySettings(kind="ner", out=str(tmp_path / "new"), data="g.csv", seeds=2)
    names = [v.name for v in grids.ner_variants()]
    assert [(t.variant.name, t.seed) for t in plan(fresh)] == [(n, 0) for n in names] + [(n, 1) for n in names]


def test_run_command_names_the_out_folder_and_interpreter_it_is_given():
    c = run_command("ner", Path("/scratch/x"), True, python="py")
    assert c[:3] == ["py", "-m", "normlab"] and c[c.index("--out") + 1] == str(Path("/scratch/x"))
    assert c[-1] == "--resume"


def test_rerun_with_other_settings_is_refused(tmp_path):
    s = StudySettings(kind="ner", out=str(tmp_path), data="gmb.csv", epochs=3)
    atomic_write_json(tmp_path / "study.json", {"kind": "ner", "settings": s.to_dict()})
    s2 = StudySettings(kind="ner", out=str(tmp_path), data="gmb.csv", epochs=4, jobs=2)
    with pytest.raises(ValueError, match="holds a study with other settings \\(epochs: saved 3, now 4\\)"):
        run_study(s2, report=False)
    s3 = StudySettings(kind="resnet", out=str(tmp_path), data="c.zip")
    with pytest.raises(ValueError, match="holds a ner study, not a resnet one"):
        run_study(s3, report=False)


def test_second_study_in_the_same_folder_is_refused(tmp_path):
    fd = os.open(tmp_path / STUDY_LOCK, os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        with pytest.raises(ValueError, match="another study \\(or a run it started\\) is still running"):
            run_study(StudySettings(kind="ner", out=str(tmp_path), data="gmb.csv"), report=False)
    finally:
        os.close(fd)


def _normlab(*args, **kw):
    return subprocess.run([sys.executable, "-m", "normlab", *args], capture_output=True, text=True, cwd=ROOT, **kw)


def test_cli_errors_are_clear(tmp_path, capsys):
    from normlab.cli import main

    assert main(["study", "resnet", "--out", str(tmp_path / "s"), "--variants", "bn", "xx", "--data", "d"]) == 2
    err = capsys.readouterr().err
    assert "expected variants among" in err and "got xx" in err
    assert main(["study", "resnet", "--out", str(tmp_path / "s")]) == 2
    assert "expected --data PATH|cifar10 or --data-dir DIR" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(["study", "ner", "--out", str(tmp_path / "s")])
    assert e.value.code == 2 and "--data" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()
    p = _normlab("study", "ner", "--out", str(tmp_path / "s"), "--data", "g.csv", "--jobs", "0")  # the real command
    assert p.returncode == 2 and p.stderr.strip() == "normlab: error: expected --jobs >= 1, got 0"


# ----------------------------------------------------------------------------- real mini studies


def slice_gmb(src: Path, out: Path, sizes=(96, 32, 32)) -> list[str]:
    """The first sentences of the real GMB CSV as three small files (train, val, test)."""
    with zipfile.ZipFile(src) as z:
        name = next(n for n in z.namelist() if n.endswith(".csv"))
        text = z.read(name).decode("latin-1")
    rows = csv.reader(io.StringIO(text))
    header = next(rows)
    sents: list[list[list[str]]] = []
    for r in rows:
        if r[0].strip():
            if len(sents) == sum(sizes):
                break
            sents.append([])
        sents[-1].append(r)
    paths, start = [], 0
    for part, n in zip(("train", "val", "test"), sizes):
        p = out / f"gmb-{part}.csv"
        with open(p, "w", newline="", encoding="latin-1") as f:
            w = csv.writer(f)
            w.writerow(header)
            for s in sents[start:start + n]:
                w.writerows(s)
        paths.append(str(p))
        start += n
    return paths


def _digest(d: Path) -> dict[str, tuple[int, str]]:
    return {p.name: (p.stat().st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest())
            for p in sorted(d.iterdir()) if p.is_file()}


@pytest.mark.integration
@pytest.mark.timeout(900)
def test_ner_mini_study_killed_and_resumed(tmp_path, gmb_csv_zip):
    """2 variants on a slice of GMB: kill the study mid-run, rerun it, get the whole study and its report."""
    files = slice_gmb(gmb_csv_zip, tmp_path)
    out = tmp_path / "study"
    cmd = [sys.executable, "-m", "normlab", "study", "ner", "--data", *files, "--out", str(out),
           "--variants", "random", "glove", "--epochs", "1", "--budget", "full",
           "--run-arg=--batch-size=16", "--run-arg=--eval-every=2"]
    first, second = out / "runs/random/seed0", out / "runs/glove/seed0"
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    deadline = time.time() + 600
    try:
        while not ((first / "summary.json").exists() and (second / "last.pt").exists()):
            assert proc.poll() is None, f"study ended before it could be killed:\n{proc.stdout.read()}"
            assert time.time() < deadline, "no last.pt within 10 minutes"
            time.sleep(0.1)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # the study and the run it started, as a crash would
        except ProcessLookupError:
            pass
        proc.wait()
    assert not (second / "summary.json").exists(), "killed too late: the second run had already finished"
    before = _digest(first)

    p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    assert "resuming glove-seed0" in p.stdout and "random-seed0" not in p.stdout
    assert "resumed from" in (out / "logs/glove-seed0.log").read_text()
    assert _digest(first) == before  # the finished run was not touched
    s = read_json(second / "summary.json")
    assert s["status"] in ("finished", "early_stopped") and s["updates"] == 6  # 1 epoch of 96/16 updates
    steps = [m["step"] for m in read_jsonl(second / "metrics.jsonl")]
    assert steps == [2, 4, 6]  # an entry every 2 updates: none lost or repeated by the resume
    events = read_jsonl(out / "events.jsonl")
    assert [(e["run"], e["resumed"], e["returncode"]) for e in events] == [("random", False, 0), ("glove", True, 0)]

    md = (out / "report.md").read_text()
    assert "SHORTENED STUDY: at most 1 epoch instead of 50" in md
    assert check_table_matches_runs(out, md) == 2 * 10
    header, rows = parse_md_table(md)
    assert rows["crf"][1] == "missing (not run)"
    header, rows = parse_md_table(md, "run | source")
    emb = dict(zip(header, rows["glove/seed0"]))
    info = read_json(second / "config.json")["data"]["embeddings"]
    assert (emb["source"], emb["dimension"]) == ("glove-6b-50d", "50")
    assert emb["words found"] == f"{info['found']} of {info['total']}"
    assert dict(zip(header, rows["random/seed0"]))["dimension"] == "100"
    assert "data:image/png;base64," in (out / "report.html").read_text()


@pytest.mark.integration
@pytest.mark.timeout(900)
def test_resnet_mini_study_two_jobs(tmp_path, cifar_zip):
    """torch_bn and bn, 1 epoch on a slice of CIFAR-10, two runs at once: the report holds their numbers."""
    from test_report import open_in_chromium

    out = tmp_path / "study"
    p = _normlab("study", "resnet", "--data", str(cifar_zip), "--out", str(out), "--variants", "torch_bn", "bn",
                 "--epochs", "1", "--limit-train", "256", "--val-size", "256", "--jobs", "2",
                 "--budget", "full", "--sanity-seeds", "1", "--run-arg=--compile=off", timeout=800)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    lines = p.stdout.splitlines()
    starts = [i for i, l in enumerate(lines) if "starting" in l]
    ends = [i for i, l in enumerate(lines) if " finished in " in l]
    assert len(starts) == 2 and len(ends) == 2 and max(starts) < min(ends)  # both ran at once
    ncpu = len(os.sched_getaffinity(0))
    for name in ("torch_bn", "bn"):
        cfg = read_json(out / f"runs/{name}/seed0/config.json")
        assert cfg["config"]["norm"] == name and cfg["config"]["epochs"] == 1
        assert cfg["env"]["cpu_threads"] == max(1, ncpu // 2)
    md = (out / "report.md").read_text()
    assert md.splitlines()[2].startswith("> **SHORTENED STUDY: 1 epoch instead of 100; only 256 "
                                         "training images, drawn at random (--limit-train); 256 validation images "
                                         "instead of 10,000")
    assert check_table_matches_runs(out, md) == 2 * 9
    assert parse_md_table(md)[1]["gn_b8"][1] == "missing (not run)"
    ta = read_json(out / "runs/torch_bn/seed0/summary.json")["metrics"]["test"]["accuracy"] * 100
    tb = read_json(out / "runs/bn/seed0/summary.json")["metrics"]["test"]["accuracy"] * 100
    assert f"Test accuracy: `torch_bn` {ta:.2f}% (one seed); `bn` {tb:.2f}% (one seed)." in md
    assert f"`bn` against `torch_bn` on test accuracy: {tb:.2f}% against {ta:.2f}%, a difference of {tb - ta:+.2f} " \
           "points; no interval exists: `bn` and `torch_bn` have one seed (n = 1)" in md
    page = out / "report.html"
    dom = open_in_chromium(page, tmp_path)
    assert f"IMAGES {page.read_text().count('<img ')} LOADED ALL ERRORS 0" in dom
    # a rerun has nothing left to do
    p = _normlab("study", "resnet", "--data", str(cifar_zip), "--out", str(out), "--variants", "torch_bn", "bn",
                 "--epochs", "1", "--limit-train", "256", "--val-size", "256", "--run-arg=--compile=off",
                 "--budget", "full", "--sanity-seeds", "1", "--no-report", timeout=300)
    assert p.returncode == 0 and "every run has finished already" in p.stdout


def test_gpus_come_from_cuda_visible_devices(monkeypatch):
    from normlab.study.local import _gpu_list

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,5")
    assert _gpu_list("auto") == ["2", "5"] and _gpu_list("cuda") == ["2", "5"]
    assert _gpu_list("cpu") == []  # --device cpu: processes on the CPU, no GPU handed out
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert _gpu_list("auto") == []


def test_more_seeds_continue_a_study_and_fewer_keep_the_saved_ones(tmp_path):
    """Seeds only grow: a rerun with --seeds 3 adds seeds 1 and 2 to a 1-seed study (its finished
    runs count), and a later rerun with --seeds 1 neither refuses nor forgets them."""
    s = StudySettings(kind="ner", out=str(tmp_path), data="gmb.csv", seeds=1, variants=["crf"])
    d = tmp_path / "runs/crf/seed0"
    d.mkdir(parents=True)
    atomic_write_json(d / "config.json", {})
    atomic_write_json(d / "summary.json", {})
    atomic_write_json(tmp_path / "study.json", {"kind": "ner", "settings": s.to_dict()})
    more = dataclasses.replace(s, seeds=3)
    assert [(t.variant.name, t.seed) for t in plan(more)] == [("crf", 1), ("crf", 2)]
    for seed in (1, 2):  # as if the rerun had finished them
        atomic_write_json(tmp_path / f"runs/crf/seed{seed}/config.json", {})
        atomic_write_json(tmp_path / f"runs/crf/seed{seed}/summary.json", {})
    assert run_study(more, report=False, estimate=False) == 0
    assert json.loads((tmp_path / "study.json").read_text())["seeds"] == [0, 1, 2]
    assert run_study(s, report=False, estimate=False) == 0  # fewer: accepted, and the saved seeds stay
    saved = json.loads((tmp_path / "study.json").read_text())
    assert saved["seeds"] == [0, 1, 2] and saved["settings"]["seeds"] == 3


def test_anomaly_variants_run_only_when_named_and_join_the_saved_grid(tmp_path):
    """The default grid never plans an anomaly variant; naming one adds it to study.json's grid, and a later
    run of the default grid keeps it there (the report reads it)."""
    s = StudySettings(kind="ner", out=str(tmp_path), data="gmb.csv", variants=["crf", "random50_large"])
    assert [t.variant.name for t in plan(dataclasses.replace(s, variants=None))] == \
        [v.name for v in variants_for("ner")]
    for v in ("crf", "random50_large"):  # as if they had finished
        atomic_write_json(tmp_path / f"runs/{v}/seed0/config.json", {})
        atomic_write_json(tmp_path / f"runs/{v}/seed0/summary.json", {})
    assert run_study(s, report=False, estimate=False) == 0
    saved = json.loads((tmp_path / "study.json").read_text())
    names = [g["name"] for g in saved["grid"]]
    assert names == [v.name for v in variants_for("ner")] + ["random50_large"]
    assert saved["variants_requested"] == ["crf", "random50_large"]
    assert next(g for g in saved["grid"] if g["name"] == "random50_large")["embedding_std"] == 0.6441


def test_a_rerun_from_another_folder_resumes_with_the_saved_paths(tmp_path):
    """Issue 16, finding 10: a rerun from another folder (or with absolute paths) was refused
    ("data: saved 'small.csv', now '../small.csv'"): a relative path is resolved, not compared as text."""
    from test_train_ner import synthetic_sentences, write_four_column

    names = [f"{n}.txt" for n in ("train", "val", "test")]
    (tmp_path / "data").mkdir()
    for name, (k, seed) in zip(names, ((32, 0), (8, 1), (8, 2))):
        write_four_column(tmp_path / "data" / name, synthetic_sentences(k, seed))
    (tmp_path / "a").mkdir()
    args = ["study", "ner", "--variants", "random", "--epochs", "1", "--budget", "full", "--no-estimate",
            "--no-report", "--run-arg=--batch-size=16"]

    def study(cwd, data_dir, out):
        return subprocess.run([sys.executable, "-m", "normlab", *args, "--data", *[f"{data_dir}/{n}" for n in names],
                               "--out", out], cwd=cwd, capture_output=True, text=True, timeout=600)

    p = study(tmp_path / "a", "../data", "s")
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    run = tmp_path / "a/s/runs/random/seed0"
    (run / "summary.json").unlink()  # as if interrupted after its last checkpoint
    p = study(tmp_path, "data", "a/s")  # another folder, the same files
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    assert "resuming random-seed0" in p.stdout and (run / "summary.json").exists()
    assert "resumed from" in (run / "train.log").read_text()
    saved = read_json(tmp_path / "a/s/study.json")
    assert saved["settings"]["data"] == [f"../data/{n}" for n in names] and saved["workdir"] == ".."
    assert str(tmp_path) not in (tmp_path / "a/s/study.json").read_text()  # no absolute path in the study folder
    p = study(tmp_path, str(tmp_path / "data"), str(tmp_path / "a/s"))  # absolute paths
    assert p.returncode == 0 and "every run has finished already" in p.stdout, p.stderr
    (tmp_path / "other").mkdir()
    for n in names:  # equal contents, another file: the study says which
        (tmp_path / "other" / n).write_bytes((tmp_path / "data" / n).read_bytes())
    p = study(tmp_path, "other", "a/s")
    assert p.returncode == 2 and p.stderr.strip().splitlines()[-1].startswith(
        "normlab: error: a/s holds a study with other settings (data: saved ['../data/train.txt', "), p.stderr
