"""The study report, from synthetic run directories written to the run-directory contract."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from normlab.files import atomic_write_json, read_json
from normlab.study.grids import variants_for
from normlab.study.settings import StudySettings
from normlab.report.write import load_study, write_report

SPLITS = ("train", "val", "test")
KEYS3 = (("accuracy", "acc"), ("micro_f1", "micro F1"), ("macro_f1", "macro F1"))
ENV = {"torch": "2.13.0", "python": "3.11", "platform": "Linux-test", "device": "cpu", "cpu_threads": 2,
       "cpu": "x86_64"}


def make_run(root: Path, kind: str, variant: str, seed: int, rng: np.random.Generator, *, epochs: int = 3,
             finished: bool = True, diverged: bool = False, config_extra: dict | None = None,
             old_ner: bool = False) -> Path:
    """A run directory as `normlab resnet|ner train` writes it, with random numbers.

    ``old_ner``: as NER runs wrote it before type_micro_f1 and invalid_transitions were recorded."""
    d = root / "runs" / variant / f"seed{seed}"
    d.mkdir(parents=True)
    cfg = {"epochs": epochs, "seed": seed, "limit_train": None, **(config_extra or {})}
    data = {}
    if kind == "ner":
        data["embeddings"] = ({"source": "random", "dim": 100, "share_found": 0.0} if variant == "random" else
                              {"source": "glove-6b-50d", "dim": 50, "share_found": float(rng.uniform(0.8, 0.95)),
                               "file": "glove_6B_50d_emb.npy"})
    atomic_write_json(d / "config.json", {"kind": kind, "config": cfg, "env": ENV, "data": data})
    with open(d / "metrics.jsonl", "w") as f:
        for e in range(1, epochs + 1):
            if kind == "resnet":
                acc_t, acc_v = rng.uniform(0.3, 0.9, 2)
                q = np.sort(rng.uniform(0, 3, 4))
                rec = {"epoch": e, "step": e * 10, "lr": 0.1, "seconds": 2.0, "train_loss": 1.0,
                       "train_accuracy": acc_t, "train_error": 1 - acc_t, "val_loss": 1.1, "val_accuracy": acc_v,
                       "val_error": 1 - acc_v, "val_micro_f1": acc_v, "val_macro_f1": acc_v - 0.01,
                       "quantiles": dict(zip(("q01", "q20", "q80", "q99"), q.tolist()))}
            else:
                v = rng.uniform(0.3, 0.9, 7)
                rec = {"step": e * 50, "epoch": e, "lr": 0.01, "seconds": 1.0, "train_loss": 0.5,
                       "train_accuracy": v[0], "train_micro_f1": v[1], "train_macro_f1": v[2], "val_loss": 0.6,
                       "val_accuracy": v[3], "val_micro_f1": v[4], "val_macro_f1": v[5], "val_entity_f1": v[6]}
                if not old_ner:
                    rec["val_type_micro_f1"] = v[4]
            f.write(json.dumps({k: float(x) if isinstance(x, np.floating) else x for k, x in rec.items()}) + "\n")
    if finished:
        metrics = {}
        for split in SPLITS:
            m = {k: float(rng.uniform(0.2, 0.99)) for k in ("accuracy", "micro_f1", "macro_f1", "loss")}
            if kind == "ner":
                m.update({k: float(rng.uniform(0.2, 0.9)) for k in ("entity_precision", "entity_recall", "entity_f1")})
                if not old_ner:
                    m["type_micro_f1"] = float(rng.uniform(0.2, 0.9))
                    m["invalid_transitions"] = 0 if variant in ("crf", "crf_ln") else int(rng.integers(0, 500))
            metrics[split] = m
        summary = {"kind": kind, "status": "diverged" if diverged else "finished", "diverged": diverged,
                   "message": "loss became nan at epoch 2" if diverged else "", "best_epoch": int(rng.integers(1, epochs + 1)),
                   "epochs_run": epochs, "seconds_per_epoch": float(rng.uniform(1, 30)), "metrics": metrics}
        if kind == "ner":
            summary.update({"best_step": 50 * summary["best_epoch"], "updates": 50 * epochs})
        atomic_write_json(d / "summary.json", summary)
    return d


def make_study(root: Path, kind: str, names=None, seeds=(0,), seed=0, epochs=3, limit_train=None,
               skip=(), unfinished=(), diverged=()) -> Path:
    rng = np.random.default_rng(seed)
    grid = variants_for(kind)
    settings = StudySettings(kind=kind, out=str(root), seeds=len(seeds), first_seed=seeds[0], epochs=epochs,
                             limit_train=limit_train, data="somewhere")
    atomic_write_json(root / "study.json", {
        "kind": kind, "settings": settings.to_dict(),
        "grid": [v.record() for v in grid],
        "variants_requested": [v.name for v in grid], "seeds": list(seeds), "left_out": {},
        "shortened": settings.shortened()})
    for v in grid:
        if (names and v.name not in names) or v.name in skip:
            continue
        for s in seeds:
            make_run(root, kind, v.name, s, rng, epochs=epochs, finished=v.name not in unfinished,
                     diverged=v.name in diverged)
    return root


def parse_md_table(md: str, first_header: str = "variant | status") -> tuple[list[str], dict[str, list[str]]]:
    """The first Markdown table whose header starts with ``first_header``: header, rows by first cell."""
    lines = md.splitlines()
    start = next(i for i, l in enumerate(lines) if l.startswith(f"| {first_header} |"))
    split = lambda l: [c.strip() for c in re.split(r"(?<!\\)\|", l.strip())[1:-1]]
    header = split(lines[start])
    rows = {}
    for l in lines[start + 2:]:
        if not l.startswith("|"):
            break
        cells = split(l)
        rows[cells[0]] = cells
    return header, rows


def check_table_matches_runs(study_dir: Path, md: str) -> int:
    """Every number of the results table equals the one in the run directories; returns cells checked."""
    header, rows = parse_md_table(md)
    checked = 0
    for vdir in sorted((study_dir / "runs").iterdir()):
        sums = [read_json(p) for p in sorted(vdir.glob("seed*/summary.json"))]
        if not sums:
            continue
        row = dict(zip(header, rows[vdir.name]))
        for split in SPLITS:
            for key, short in KEYS3:
                vals = [s["metrics"][split][key] * 100 for s in sums]
                cell = row[f"{split} {short}"]
                if len(vals) == 1:
                    assert float(cell) == pytest.approx(vals[0], abs=0.005 + 1e-9), (vdir.name, split, key)
                else:
                    mean, std = (float(x) for x in cell.split("±"))
                    assert mean == pytest.approx(np.mean(vals), abs=0.005 + 1e-9)
                    assert std == pytest.approx(np.std(vals, ddof=1), abs=0.005 + 1e-9)
                checked += 1
        for col, key in (("epochs run", "epochs_run"), ("best epoch", "best_epoch"), ("best step", "best_step"),
                         ("updates", "updates")):
            if col in row:
                assert [float(x) for x in row[col].split("/")] == pytest.approx(
                    [s[key] for s in sums], abs=0.005), (vdir.name, col)
        spe = [s["seconds_per_epoch"] for s in sums]
        assert float(row["s/epoch"].split("±")[0]) == pytest.approx(np.mean(spe), abs=0.005 + 1e-9)
        assert row["diverged"] == ("yes" if sums[0]["diverged"] else "no")
        if "test entity F1" in row:
            assert float(row["test entity F1"].split("±")[0]) == pytest.approx(
                np.mean([s["metrics"]["test"]["entity_f1"] * 100 for s in sums]), abs=0.005 + 1e-9)
            checked += 1
    return checked


@pytest.mark.parametrize("kind", ["resnet", "ner"])
def test_tables_hold_exactly_the_numbers_of_the_run_directories(tmp_path, kind):
    root = make_study(tmp_path / kind, kind, diverged=("nn",) if kind == "resnet" else ())
    md_path, html_path = write_report(root)
    md = md_path.read_text()
    n = check_table_matches_runs(root, md)
    assert n == len(variants_for(kind)) * 9 + (len(variants_for(kind)) if kind == "ner" else 0)
    # every plot the Markdown names exists beside it and is inlined in the HTML
    pngs = re.findall(r"!\[[^\]]*\]\(([^)]+\.png)\)", md)
    assert len(pngs) >= 4
    page = html_path.read_text()
    for p in pngs:
        assert (root / p).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert page.count('src="data:image/png;base64,') == len(pngs)
    assert "src=\"report-" not in page  # self-contained: no file references
    if kind == "resnet":
        row = dict(zip(*[parse_md_table(md)[0], parse_md_table(md)[1]["nn"]]))
        assert row["diverged"] == "yes" and row["status"] == "diverged"
        assert "Diverged: `nn`" in md


def test_mean_and_std_over_seeds(tmp_path):
    root = make_study(tmp_path / "s", "resnet", names=["bn", "gn"], seeds=(0, 1, 2))
    md = write_report(root)[0].read_text()
    assert check_table_matches_runs(root, md) == 2 * 9
    header, rows = parse_md_table(md)
    assert "±" in dict(zip(header, rows["bn"]))["test acc"]
    assert dict(zip(header, rows["bn"]))["best epoch"].count("/") == 2


def test_missing_and_unfinished_variants_are_reported_not_fatal(tmp_path):
    root = make_study(tmp_path / "s", "resnet", skip=("torch_bn", "gn_b8"), unfinished=("in",))
    md = write_report(root)[0].read_text()
    header, rows = parse_md_table(md)
    assert rows["torch_bn"][1] == "missing (not run)"
    assert rows["gn_b8"][1] == "missing (not run)"
    assert rows["in"][1].startswith("not finished (seed 0: interrupted")
    assert "INCOMPLETE: 3 of 9 variants" in md
    assert "Cannot compare: `torch_bn` is missing (not run)." in md
    assert "Cannot compare: `gn_b8` is missing (not run)." in md
    check_table_matches_runs(root, md)


def test_ner_missing_crf_free_is_reported(tmp_path):
    root = make_study(tmp_path / "s", "ner", skip=("crf_free",))
    study = read_json(root / "study.json")
    study["left_out"] = {"crf_free": "`normlab ner train` offers no --no-crf-constraints"}
    atomic_write_json(root / "study.json", study)
    md = write_report(root)[0].read_text()
    assert parse_md_table(md)[1]["crf_free"][1] == "left out: `normlab ner train` offers no --no-crf-constraints"
    assert "Cannot compare: `crf_free` is left out" in md
    # the embeddings table names what each run used
    header, rows = parse_md_table(md, "run | source")
    row = dict(zip(header, rows["glove/seed0"]))
    share = read_json(root / "runs/glove/seed0/config.json")["data"]["embeddings"]["share_found"]
    assert row["dimension"] == "50" and row["source"] == "glove-6b-50d"
    assert float(row["share of vocabulary found"].rstrip("%")) == pytest.approx(share * 100, abs=0.005)
    assert dict(zip(header, rows["random/seed0"]))["dimension"] == "100"


def _set_test(root: Path, variant: str, **vals):
    p = root / "runs" / variant / "seed0" / "summary.json"
    s = read_json(p)
    s["metrics"]["test"].update(vals)
    atomic_write_json(p, s)


def _section(md: str, title_start: str) -> str:
    i = md.index("## " + title_start)
    j = md.find("\n## ", i + 3)
    return md[i: j if j > 0 else None]


def test_sentences_follow_the_numbers(tmp_path):
    root = make_study(tmp_path / "s", "resnet")
    _set_test(root, "torch_bn", accuracy=0.903)
    for n, (a, b) in {"bn": (0.90, 0.80), "gn": (0.88, 0.86)}.items():
        _set_test(root, n, accuracy=a)
        _set_test(root, f"{n}_b8", accuracy=b)
    md = write_report(root)[0].read_text()
    sanity = _section(md, "Sanity check")
    assert "Test accuracy: `torch_bn` 90.30% (one seed); `bn` 90.00% (one seed)." in sanity
    assert "`bn` against `torch_bn` on test accuracy: 90.00% against 90.30%, a difference of -0.30 points; no " \
           "interval exists: `bn` and `torch_bn` have one seed (n = 1). This study has no variant with repeated " \
           "seeds, so its seed noise is unmeasured" in sanity
    batch = _section(md, "Batch size")
    assert "`bn`: 90.00% at batch 128, 80.00% at batch 8, a change of -10.00 points (no interval exists" in batch
    assert "Cannot say which is less sensitive to the batch size: one seed per run and no measured seed spread." \
        in batch

    # other numbers, other sentences: three seeds of torch_bn measure the study's seed spread (0.10 points)
    for seed, acc in ((1, 0.902), (2, 0.904)):
        make_run(root, "resnet", "torch_bn", seed, np.random.default_rng(seed))
        d = root / f"runs/torch_bn/seed{seed}"
        s = read_json(d / "summary.json")
        s["metrics"]["test"]["accuracy"] = acc
        atomic_write_json(d / "summary.json", s)
    # both variants improve at batch 8, GN more (the bug of issue 7)
    _set_test(root, "bn", accuracy=0.85)
    _set_test(root, "bn_b8", accuracy=0.86)
    _set_test(root, "gn_b8", accuracy=0.95)
    md2 = write_report(root)[0].read_text()
    batch2 = _section(md2, "Batch size")
    assert "`bn` is less sensitive to the batch size than `gn`: its change (+1.00 points) is smaller in size than " \
           "`gn`'s (+7.00), by 6.00 points" in batch2
    assert "does not bear out Wu & He's claim" in batch2
    assert "GN holds up better" not in md2 and "in GN's favour" not in md2
    assert "| bn | 85.00% | 86.00% | +1.00 (no interval: n = 1, 1) |" in batch2
    # the ranking follows the numbers too
    _set_test(root, "ln", accuracy=0.999)
    md3 = write_report(root)[0].read_text()
    assert "Ranked by mean test accuracy: 1. `ln` 99.90%" in _section(md3, "The six variants")
    # and the one-line answers at the top carry the same verdicts
    glance = _section(md3, "Answers at a glance")
    assert "`bn` is less sensitive to the batch size than `gn`" in glance
    assert "1. `ln` 99.90%" in glance


def test_sanity_gap_is_the_largest_val_error_gap(tmp_path):
    root = make_study(tmp_path / "s", "resnet", names=["torch_bn", "bn"])
    curves = {}
    for n in ("torch_bn", "bn"):
        curves[n] = [1 - r["val_accuracy"] for r in
                     map(json.loads, (root / f"runs/{n}/seed0/metrics.jsonl").read_text().splitlines())]
    gaps = np.abs(np.array(curves["torch_bn"]) - np.array(curves["bn"])) * 100
    md = write_report(root)[0].read_text()
    assert f"{gaps.max():.2f} points, at epoch {int(gaps.argmax()) + 1} " in md


def test_ner_comparisons_follow_the_numbers(tmp_path):
    root = make_study(tmp_path / "s", "ner")
    _set_test(root, "glove", accuracy=0.95, micro_f1=0.80, macro_f1=0.60, entity_f1=0.75, type_micro_f1=0.82)
    _set_test(root, "random50", accuracy=0.94, micro_f1=0.70, macro_f1=0.50, entity_f1=0.65, type_micro_f1=0.70)
    md = write_report(root)[0].read_text()
    sec = _section(md, "Pretrained against random")
    assert "`glove` against `random50` on test entity F1: 75.00% against 65.00%, a difference of +10.00 points" in sec
    assert "`glove` against `random50` on test type-token micro F1: 82.00% against 70.00%, a difference of +12.00" in sec
    _set_test(root, "random50", entity_f1=0.80, type_micro_f1=0.8205)
    sec2 = _section(write_report(root)[0].read_text(), "Pretrained against random")
    assert "`glove` against `random50` on test entity F1: 75.00% against 80.00%, a difference of -5.00 points" in sec2
    assert "on test type-token micro F1: 82.00% against 82.05%, a difference of -0.05 points" in sec2


def test_shortened_banner(tmp_path):
    short = make_study(tmp_path / "short", "resnet", names=["bn"], epochs=3, limit_train=256)
    md = write_report(short)[0].read_text()
    top = md.splitlines()[2]  # right under the title
    assert top.startswith("> **SHORTENED STUDY: 3 epochs instead of 100; only 256 training images, drawn at random")
    assert "SHORTENED STUDY" in write_report(short)[1].read_text().split("<h2>")[0]
    full = make_study(tmp_path / "full", "resnet", names=["bn"], epochs=100)
    assert "SHORTENED" not in write_report(full)[0].read_text()
    ner = make_study(tmp_path / "ner", "ner", names=["crf"], epochs=2)
    assert "SHORTENED STUDY: at most 2 epochs instead of 50" in write_report(ner)[0].read_text()


def test_report_without_study_json_infers_the_kind(tmp_path):
    root = make_study(tmp_path / "s", "ner", names=["glove", "crf"])
    (root / "study.json").unlink()
    md = write_report(root)[0].read_text()
    assert md.startswith("# NER on GMB")
    assert parse_md_table(md)[1]["random"][1] == "missing (not run)"
    check_table_matches_runs(root, md)


def test_report_cli(tmp_path, capsys):
    root = make_study(tmp_path / "s", "resnet", names=["bn", "gn"])
    proc = subprocess.run([sys.executable, "-m", "normlab", "report", str(root), "--out", str(tmp_path / "r")],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "r" / "report.html").exists() and (tmp_path / "r" / "report-sanity.png").exists()
    from normlab.cli import main

    assert main(["report", str(tmp_path / "nope")]) == 2
    assert "no such study folder" in capsys.readouterr().err
    assert main(["report", str(root), str(root), "--out", str(tmp_path / "r")]) == 2
    assert "expected one study folder with --out, got 2" in capsys.readouterr().err


def test_report_of_an_empty_folder_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="neither a study.json nor any run directory"):
        load_study(tmp_path)


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def open_in_chromium(page: Path, tmp_path: Path) -> str:
    """Load ``page`` in headless Chromium; return the DOM after a script has checked every image."""
    if CHROMIUM is None:
        pytest.fail("chromium not found: install the Debian package `chromium` (see scripts/test.sh)")
    probe = tmp_path / "probe.html"  # the page is self-contained, so it can be read from anywhere
    checker = """<script>
    window.addEventListener('load', function () {
      var imgs = Array.from(document.images);
      var ok = imgs.length > 0 && imgs.every(function (i) { return i.complete && i.naturalWidth > 0; });
      var m = document.createElement('div'); m.id = 'probe-result';
      m.textContent = 'IMAGES ' + imgs.length + ' LOADED ' + (ok ? 'ALL' : 'NOT-ALL')
        + ' ERRORS ' + (window.__errors || []).length;
      document.body.appendChild(m);
    });</script>"""
    catcher = "<script>window.__errors=[];window.addEventListener('error',function(e){window.__errors.push(String(e.message||e.type))},true);</script>"
    text = page.read_text().replace("<head>", "<head>" + catcher, 1).replace("</body>", checker + "</body>")
    probe.write_text(text)
    proc = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                           "--disable-component-update", "--disable-sync", "--no-first-run",
                           f"--user-data-dir={tmp_path / 'chrome-profile'}", "--virtual-time-budget=10000",
                           "--dump-dom", probe.as_uri()], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def test_html_opens_in_headless_chromium_and_shows_its_images(tmp_path):
    root = make_study(tmp_path / "s", "resnet", names=["torch_bn", "bn", "gn", "gn_b8"])
    page = write_report(root)[1]
    dom = open_in_chromium(page, tmp_path)
    n_imgs = page.read_text().count("<img ")
    assert f"IMAGES {n_imgs} LOADED ALL ERRORS 0" in dom
    assert "<table>" in dom and "Sanity check" in dom


def test_curves_average_the_finished_seeds_and_an_unfinished_seed_does_not_cut_them_short():
    from normlab.report.load import Run, VariantResult

    def run(seed, epochs, value, finished):
        metrics = [{"epoch": e, "val_error": value + e} for e in range(1, epochs + 1)]
        return Run("bn", seed, Path(f"seed{seed}"), {"config": {}}, metrics, {"metrics": {}} if finished else None)

    v = VariantResult("bn", "BN", [run(0, 5, 0.0, True), run(1, 5, 2.0, True), run(2, 2, 100.0, False)])
    xs, ys = v.curve("val_error", "epoch")
    assert xs.tolist() == [1, 2, 3, 4, 5]  # not cut to the running seed's 2 epochs
    assert ys.tolist() == [2.0, 3.0, 4.0, 5.0, 6.0]  # the mean of the finished seeds only
    # nothing finished yet: the running seeds' common epochs
    w = VariantResult("bn", "BN", [run(0, 3, 0.0, False), run(1, 2, 2.0, False)])
    xs, ys = w.curve("val_error", "epoch")
    assert xs.tolist() == [1, 2] and ys.tolist() == [2.0, 3.0]
