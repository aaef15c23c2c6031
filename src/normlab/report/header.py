"""The lines at the top of a report: hardware, torch, budget, command, wall time, data files.

Everything comes from ``study.json`` and the runs' ``config.json``; paths are
shown relative as recorded, and an absolute one only by its file name
(``render.shown_path``), so that no report names a path of the machine.
"""

from __future__ import annotations

import shlex
from datetime import datetime, timezone
from typing import Optional

from normlab.study.budgets import budget_of
from normlab.study.settings import StudySettings, show_set
from normlab.report.load import StudyData, first_epoch_seconds
from normlab.report.render import fmt_count, shown_path
from normlab.study.timefmt import hms

DEFAULT_EMBEDDINGS = "glove-6b-50d"


def study_command(s: StudySettings) -> str:
    """The ``normlab study`` command that gives these settings (defaults and the budget's own flags left out)."""
    argv = ["normlab", "study", s.kind]
    if s.kind == "resnet":
        if s.data:
            argv += ["--data", shown_path(s.data)]
        if s.data_dir:
            argv += ["--data-dir", shown_path(s.data_dir)]
        if s.val_size is not None:
            argv += ["--val-size", str(s.val_size)]
        if s.small_batch_lr != "linear":
            argv += ["--lr-scaling", "none" if s.small_batch_lr == "same" else s.small_batch_lr]
    else:
        data = s.data if isinstance(s.data, list) else [s.data] if s.data else []
        argv += ["--data", *[shown_path(d) for d in data]]
        if s.embeddings and s.embeddings != DEFAULT_EMBEDDINGS:
            argv += ["--embeddings", shown_path(s.embeddings)]
    argv += ["--out", shown_path(s.out)]
    budget = budget_of(s)
    if budget is not None:
        argv += ["--budget", budget.name]
    if s.epochs is not None and (budget is None or s.epochs != budget.epochs):
        argv += ["--epochs", str(s.epochs)]
    if s.seeds != 1:
        argv += ["--seeds", str(s.seeds)]
    if s.first_seed != 0:
        argv += ["--first-seed", str(s.first_seed)]
    if s.kind == "resnet" and s.sanity_seeds != (budget.sanity_seeds if budget else 1):
        argv += ["--sanity-seeds", str(s.sanity_seeds)]
    if s.limit_train is not None:
        argv += ["--limit-train", str(s.limit_train)]
    if s.jobs != 1:
        argv += ["--jobs", str(s.jobs)]
    if s.device and s.device != "auto":
        argv += ["--device", s.device]
    if s.grid:
        argv += ["--grid", shown_path(s.grid)]
    for name, spec in s.add_norms.items():
        argv += ["--add-norm", f"{name}={spec}"]
    if s.variants:
        argv += ["--variants", *s.variants]
    own = budget.overrides if budget is not None else {}
    for key, value in s.overrides.items():
        if key not in own or own[key] != value:
            argv += ["--set", show_set(key, value)]
    argv += [f"--run-arg={a}" for a in s.legacy_run_args]  # a study from before runs were data
    return " ".join(shlex.quote(a) for a in argv)


def _time(x) -> Optional[datetime]:
    if x is None:
        return None
    try:
        if isinstance(x, (int, float)):
            return datetime.fromtimestamp(float(x), tz=timezone.utc)
        t = datetime.fromisoformat(str(x).replace("Z", "+00:00"))
        return t if t.tzinfo else t.replace(tzinfo=timezone.utc)
    except (ValueError, OverflowError, OSError):
        return None


def longest_run(study: StudyData):
    """The run that took longest over all its attempts (None when no run has a time)."""
    timed = [r for r in study.runs if r.seconds is not None]
    return max(timed, key=lambda r: r.seconds) if timed else None


def wall_time_line(study: StudyData) -> str:
    """Sum over every attempt of every run (``load.attempt_times``), the longest run with its first
    epoch, and the span from the first start to the last finish where the runner recorded them
    (``started`` / ``finished`` in events.jsonl)."""
    times = [r.seconds for r in study.runs if r.seconds is not None]
    attempts = sum(r.attempts for r in study.runs)
    lost = [r for r in study.runs if r.unrecorded_attempts]
    line = f"**Wall time:** {hms(sum(times)) if times else 'unknown'} summed over the runs"
    if attempts:
        line += f" and all their attempts ({attempts} attempts of {len(times)} runs"
        if lost:
            line += (f"; {sum(r.unrecorded_attempts for r in lost)} of them left no line in events.jsonl and count "
                     f"with their epochs' own times, {hms(sum(r.unrecorded_seconds for r in lost))}, which leave out "
                     f"their start-up: a lower bound")
        line += ")"
    top = longest_run(study)
    if top is not None and len(times) > 1:
        first = first_epoch_seconds(study.kind, top.metrics)
        line += (f"; the longest run, `{top.variant}/seed{top.seed}`, took {hms(top.seconds)}"
                 + (f" (its first epoch {hms(first)})" if first is not None else ""))
    starts = [t for e in study.events if (t := _time(e.get("started"))) is not None]
    ends = [t for e in study.events if (t := _time(e.get("finished"))) is not None]
    if starts and ends and max(ends) >= min(starts):
        a, b = min(starts), max(ends)
        line += (f"; {hms((b - a).total_seconds())} from the first start to the last finish "
                 f"({a:%Y-%m-%d %H:%M} to {b:%Y-%m-%d %H:%M} UTC)")
    return line


def stop_line(study: StudyData) -> Optional[str]:
    """How many finished runs stopped on a plateau, at the cap, or diverged."""
    from normlab.report.training import stop_reason

    reasons = [stop_reason(r) for r in study.runs if r.summary is not None]
    if not reasons:
        return None
    counts = {k: reasons.count(k) for k in dict.fromkeys(reasons)}
    words = {"plateau": "on a validation plateau (early stopping)", "cap": "at the epoch cap",
             "diverged": "diverged"}
    return ("**Stopped:** " + "; ".join(f"{n} {words.get(k, k)}" for k, n in counts.items())
            + " (per run: the Runs table)")


def data_files(study: StudyData) -> list[str]:
    """Each data file the runs recorded (``data.file`` for ResNet, ``data.files`` for NER), once."""
    seen: dict[tuple, str] = {}
    for c in study.configs_seen:
        data = c.get("data") or {}
        files = data.get("files") if data.get("files") is not None else data.get("file")
        if isinstance(files, dict):
            files = [files]
        for f in files or []:
            if isinstance(f, str):
                f = {"path": f}
            key = (f.get("path"), f.get("sha256"))
            if key in seen:
                continue
            text = f"`{shown_path(f.get('path', '?'))}`"
            if f.get("bytes") is not None:
                text += f" ({int(f['bytes']):,} bytes, SHA-256 `{f.get('sha256', '?')}`)"
            seen[key] = text
    return list(seen.values())


def header_lines(study: StudyData) -> list[str]:
    envs = [c.get("env", {}) for c in study.configs_seen]
    hw = sorted({(e.get("gpu") or e.get("cpu") or "?") + f" ({e.get('device', '?')}, "
                 f"{e.get('cpu_threads', '?')} CPU thread(s) per run"
                 + (f", {e['cpu_cores']} cores" if e.get("cpu_cores") else "") + ")" for e in envs})
    plat = sorted({e.get("platform", "?") for e in envs})
    torch_v = sorted({e.get("torch", "?") for e in envs})
    epochs = sorted({c.get("config", {}).get("epochs") for c in study.configs_seen} - {None})
    ran = [r.summary.get("epochs_run") for r in study.runs if r.summary and r.summary.get("epochs_run") is not None]
    finished = sum(1 for r in study.runs if r.summary)
    s = study.settings
    grid = sum(len(s.seed_list(v.name)) if s else 1 for v in study.variants if not v.left_out)
    lines = [
        f"**Hardware:** {'; '.join(hw) or 'unknown (no run has started)'}" + (f" — {'; '.join(plat)}" if plat else ""),
        f"**torch:** {', '.join(torch_v) or 'unknown'}",
    ]
    if s is not None and s.budget:
        b = budget_of(s)
        lines.append(f"**Budget:** `{b.name}`: {b.summary} (expected cost: {b.cost})")
    elif s is not None:
        lines.append("**Budget:** none named (settings given one by one)")
    if s is not None:
        lines.append(f"**Command:** `{study_command(s)}`")
    lines.append(f"**Epochs:** at most {', '.join(str(e) for e in epochs) or '?'} per run"
                 + (f"; epochs run {fmt_count(min(ran))}–{fmt_count(max(ran))}" if ran else ""))
    lines.append(wall_time_line(study))
    stopped = stop_line(study)
    if stopped:
        lines.append(stopped)
    seeds = ""
    if s is not None:
        seeds = f", seeds {', '.join(map(str, s.seed_list()))}"
        if s.kind == "resnet" and s.seed_list("bn") != s.seed_list():
            seeds += f" (torch_bn and bn: {', '.join(map(str, s.seed_list('bn')))})"
    lines.append(f"**Runs:** {finished} finished of {grid} in the grid{seeds}")
    files = data_files(study)
    if files:
        lines.append("**Data files:** " + "; ".join(files))
    elif s is not None:
        data = s.data or s.data_dir
        data = ", ".join(shown_path(d) for d in data) if isinstance(data, list) else shown_path(data)
        lines.append(f"**Data:** `{data}`")
    if s is not None and s.kind == "ner" and s.embeddings:
        lines.append(f"**Embeddings:** `{shown_path(s.embeddings)}`")
    return lines
