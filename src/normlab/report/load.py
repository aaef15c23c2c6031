"""Loading a study folder for its report: ``load_study(root) -> StudyData``.

A study folder holds ``study.json`` (settings and grid; optional) and one run
directory per variant and seed under ``runs/<variant>/seed<S>/`` with
``config.json``, ``metrics.jsonl`` and, once finished, ``summary.json``. The
runner's ``events.jsonl`` gives the wall time of each attempt. Nothing here
draws or words anything: the answers (``answers_resnet``, ``answers_ner``)
and the rendering (``render``) read the ``StudyData`` this returns.

A variant that was not run (or did not finish) is kept with its reason; the
report never fails because part of the grid is missing.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Optional

import numpy as np

from normlab.files import CONFIG, EVENTS, LOGS, METRICS, STUDY, SUMMARY, read_json, read_jsonl
from normlab.study.budgets import RESNET_FULL_EPOCHS
from normlab.study.grids import variants_for
from normlab.study.settings import StudySettings

SPLITS = ("train", "val", "test")



@dataclass
class Run:
    variant: str
    seed: int
    dir: Path
    config: dict
    metrics: list[dict]
    summary: Optional[dict]
    seconds: Optional[float] = None  # wall time of all its attempts
    attempts: int = 0  # attempts known (recorded in events.jsonl, or seen in the run's log)
    unrecorded_seconds: float = 0.0  # own times of the epochs run by attempts events.jsonl lacks (a lower bound)
    unrecorded_attempts: int = 0

    @property
    def status(self) -> str:
        if self.summary is None:
            return "interrupted" if self.config else "not started"
        if self.summary.get("diverged"):
            return "diverged"
        return str(self.summary.get("status", "finished"))

    def metric(self, split: str, name: str) -> Optional[float]:
        if self.summary is None:
            return None
        v = ((self.summary.get("metrics") or {}).get(split) or {}).get(name)
        return None if v is None else float(v)


@dataclass
class VariantResult:
    name: str
    label: str
    runs: list[Run] = field(default_factory=list)
    left_out: Optional[str] = None
    settings: dict = field(default_factory=dict)

    @property
    def finished(self) -> list[Run]:
        return [r for r in self.runs if r.summary is not None]

    def values(self, split: str, name: str) -> list[float]:
        return [v for r in self.finished if (v := r.metric(split, name)) is not None]

    def mean(self, split: str, name: str) -> Optional[float]:
        vals = self.values(split, name)
        return float(np.mean(vals)) if vals else None

    def summary_values(self, key: str) -> list[float]:
        return [float(r.summary[key]) for r in self.finished if r.summary.get(key) is not None]

    def curve(self, key: str, x: str) -> tuple[np.ndarray, np.ndarray]:
        """Mean over seeds of ``key`` against ``x`` (points every seed has).

        The finished seeds when there are any (a seed still running must not cut a
        finished variant's curve short), otherwise the unfinished ones, so that a
        study in progress still shows its curves.
        """
        pool = self.finished or self.runs
        by_x: dict[float, list[float]] = {}
        for r in pool:
            for m in r.metrics:
                v = metric_value(m, key)
                if v is not None and m.get(x) is not None:
                    by_x.setdefault(float(m[x]), []).append(v)
        n = len([r for r in pool if r.metrics])
        xs = sorted(k for k, vs in by_x.items() if len(vs) == n)
        return np.array(xs), np.array([np.mean(by_x[k]) for k in xs])

    @property
    def available(self) -> bool:
        return bool(self.finished)

    def missing_reason(self) -> str:
        if self.left_out:
            return f"left out: {self.left_out}"
        if not self.runs:
            return "missing (not run)"
        return "not finished (" + ", ".join(f"seed {r.seed}: {r.status}" for r in self.runs) + ")"


def metric_value(m: dict, key: str) -> Optional[float]:
    """A metrics.jsonl value; ``a.b`` reaches into a nested dict; errors come from accuracies if absent."""
    cur = m
    for part in key.split("."):
        if not isinstance(cur, dict) or part not in cur:
            cur = None
            break
        cur = cur[part]
    if cur is None and key.endswith("_error"):
        acc = m.get(key[: -len("_error")] + "_accuracy")
        cur = None if acc is None else 1.0 - float(acc)
    if cur is None:
        return None
    v = float(cur)
    return v if math.isfinite(v) else None


@dataclass
class StudyData:
    root: Path
    kind: str
    settings: Optional[StudySettings]
    variants: list[VariantResult]
    shortened: list[str]
    configs_seen: list[dict]
    events: list[dict] = field(default_factory=list)  # the runner's events.jsonl, one line per attempt

    def get(self, name: str) -> Optional[VariantResult]:
        return next((v for v in self.variants if v.name == name), None)

    @property
    def runs(self) -> list[Run]:
        return [r for v in self.variants for r in v.runs]

    def values(self, name: str, split: str, key: str) -> list[float]:
        """Per-seed values of a metric of variant ``name`` (empty when it has no finished run)."""
        v = self.get(name)
        return v.values(split, key) if v else []

    def missing_sentence(self, names: list[str]) -> Optional[str]:
        """'Cannot compare: `x` is missing (not run).' for the variants of ``names`` without a finished run."""
        gone = [n for n in names if self.get(n) is None or not self.get(n).available]
        if not gone:
            return None
        parts = [f"`{n}` is {self.get(n).missing_reason() if self.get(n) else 'not in this study'}" for n in gone]
        return "Cannot compare: " + "; ".join(parts) + "."


def _run_events(events: list[dict]) -> dict[tuple[str, int], list[dict]]:
    out: dict[tuple[str, int], list[dict]] = {}
    for e in events:
        out.setdefault((e["run"], int(e["seed"])), []).append(e)
    return out


def interval_seconds(kind: str, metrics: list[dict]) -> list[tuple[float, float]]:
    """(update, seconds since the previous evaluation) per metrics.jsonl record: ResNet records the time of
    each epoch, NER the run's running total (kept across resumes)."""
    out, prev = [], 0.0
    for m in metrics:
        sec = m.get("seconds")
        if sec is None or m.get("step") is None:
            continue
        if kind == "ner":
            out.append((float(m["step"]), max(0.0, float(sec) - prev)))
            prev = float(sec)
        else:
            out.append((float(m["step"]), float(sec)))
    return out


def first_epoch_seconds(kind: str, metrics: list[dict]) -> Optional[float]:
    """The own time of the run's first epoch (its evaluations included), from metrics.jsonl."""
    parts = [sec for (step, sec), m in zip(interval_seconds(kind, metrics),
                                           [m for m in metrics if m.get("seconds") is not None
                                            and m.get("step") is not None])
             if m.get("epoch") is not None and float(m["epoch"]) <= 1]
    return sum(parts) if parts else None


_RESUMED = re.compile(r"^resumed from .* (?:after epoch (\d+)|at update (\d+))", re.M)


def _log_attempts(log: Path) -> list[str]:
    """The run's log cut into its attempts (each starts with the '$ python -m normlab ...' line)."""
    try:
        text = log.read_text(errors="replace")
    except OSError:
        return []
    return [part for part in re.split(r"^\$ ", text, flags=re.M)[1:]]


def _resume_step(section: str, metrics: list[dict]) -> Optional[float]:
    """The update an attempt resumed from, by the 'resumed from ...' line of its log section."""
    m = _RESUMED.search(section)
    if not m:
        return None
    if m.group(2) is not None:
        return float(m.group(2))
    epoch = int(m.group(1))
    rec = next((r for r in metrics if r.get("epoch") == epoch and r.get("step") is not None), None)
    return None if rec is None else float(rec["step"])


def attempt_times(kind: str, events: list[dict], metrics: list[dict], log: Optional[Path] = None
                  ) -> tuple[float, float, int, int]:
    """(seconds of all attempts, of which not recorded, attempts, of which not recorded) of one run.

    Recorded attempts count with their own wall time. The evaluations that no recorded attempt covers
    were run by attempts that left no line in events.jsonl (a driver killed outright, or a runner older
    than ``record_attempt``); they count with their own times from metrics.jsonl, which leave out those
    attempts' start-up, so the total is a lower bound then. An attempt's span is (from_step, to_step];
    events without it (older runners) start at 0 unless resumed, and a resumed one starts where its
    section of the run's log says it resumed."""
    recorded = sum(float(e.get("seconds") or 0.0) for e in events)
    spans = []
    sections = _log_attempts(log) if log is not None else []
    for i, e in enumerate(sorted(events, key=lambda e: str(e.get("started", "")))):
        if "from_step" in e:
            spans.append((float(e["from_step"] or 0.0), float("inf") if e.get("to_step") is None
                          else float(e["to_step"])))
        elif not e.get("resumed"):
            spans.append((0.0, float("inf")))
        else:  # the recorded attempts are the last ones of the log
            k = len(sections) - len(events) + i
            start = _resume_step(sections[k], metrics) if 0 <= k < len(sections) else None
            spans.append((start if start is not None else 0.0, float("inf")))
    gaps = [(step, sec) for step, sec in interval_seconds(kind, metrics)
            if not any(a < step <= b for a, b in spans)]
    missing = sum(sec for _, sec in gaps)
    if events:
        lost = max(len(sections) - len(events), 1 if gaps else 0)
    else:
        lost = 0
    return recorded + missing, missing, len(events) + lost, lost


def load_study(root: Path) -> StudyData:
    """Read ``study.json`` and every run directory of a study folder."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such study folder")
    study = read_json(root / STUDY) if (root / STUDY).exists() else None
    run_dirs = sorted(p.parent for p in root.glob("runs/*/seed*/" + CONFIG))
    if study is not None:
        kind = study["kind"]
    elif run_dirs:
        kind = read_json(run_dirs[0] / CONFIG).get("kind")
    else:
        raise ValueError(f"{root}: neither a study.json nor any run directory under runs/<variant>/seed<S>/")
    settings = StudySettings.from_dict(study["settings"]) if study else None
    rule = settings.small_batch_lr if settings else "linear"
    grid = study["grid"] if study else [v.record()
                                        for v in variants_for(kind, rule)]
    if settings is not None and study.get("variants_requested"):
        # The study is every variant any of its invocations asked for (``--variants`` may
        # change between them), not the last invocation's list.
        requested = list(study["variants_requested"])
        default = ({g["name"] for g in grid} if settings.grid
                   else {v.name for v in variants_for(kind, rule, add_norms=settings.add_norms)})
        whole = set(requested) == default  # the default grid, no more
        settings = replace(settings, variants=None if whole else requested)
    left_out = (study or {}).get("left_out", {})
    events = read_jsonl(root / EVENTS)
    by_run = _run_events(events)
    variants = []
    names = [g["name"] for g in grid]
    extra = sorted({p.parent.name for p in run_dirs} - set(names))
    for g in grid + [{"name": n, "label": n} for n in extra]:
        vr = VariantResult(g["name"], g.get("label", g["name"]), left_out=left_out.get(g["name"]),
                           settings={k: v for k, v in g.items() if k not in ("name", "label", "args")})
        for d in sorted(root.glob(f"runs/{g['name']}/seed*")):
            m = re.fullmatch(r"seed(\d+)", d.name)
            if not m or not d.is_dir():
                continue
            cfg = read_json(d / CONFIG) if (d / CONFIG).exists() else {}
            if "env" not in cfg:  # written by the study for a run whose trainer has not started it
                cfg = {}
            summ = read_json(d / SUMMARY) if (d / SUMMARY).exists() else None
            run = Run(g["name"], int(m.group(1)), d, cfg, read_jsonl(d / METRICS), summ)
            # every attempt the runner recorded (and the epochs of those it did not), else the run's own
            # total (kept across resumes), else epochs x s/epoch
            mine = by_run.get((g["name"], run.seed), [])
            if mine:
                run.seconds, run.unrecorded_seconds, run.attempts, run.unrecorded_attempts = attempt_times(
                    kind, mine, run.metrics, root / LOGS / f"{g['name']}-seed{run.seed}.log")
            elif summ and summ.get("seconds") is not None:
                run.seconds = float(summ["seconds"])
            if run.seconds is None and summ and summ.get("seconds_per_epoch") and summ.get("epochs_run"):
                run.seconds = float(summ["seconds_per_epoch"]) * float(summ["epochs_run"])
            vr.runs.append(run)
        variants.append(vr)
    configs = [r.config for v in variants for r in v.runs if r.config]
    if settings is not None:
        shortened = settings.shortened()
    else:
        shortened = _shortened_from_configs(kind, configs)
    return StudyData(root, kind, settings, variants, shortened, configs, events)


def _shortened_from_configs(kind: str, configs: list[dict]) -> list[str]:
    why = []
    epochs = {c.get("config", {}).get("epochs") for c in configs} - {None}
    limit = {c.get("config", {}).get("limit_train") for c in configs} - {None}
    if kind == "resnet" and epochs and min(epochs) < RESNET_FULL_EPOCHS:
        why.append(f"{min(epochs)} epochs instead of {RESNET_FULL_EPOCHS}")
    if limit:
        why.append(f"only {min(limit)} training examples, drawn at random (--limit-train)")
    return why


