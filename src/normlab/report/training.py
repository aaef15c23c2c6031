"""How far each run trained, why it stopped, and comparisons at equal training.

Two variants compared on their best checkpoints are compared at equal training
only if neither stopped before the other's best checkpoint: early stopping that
ends one variant's training while the other runs on turns a difference in
stopping into a difference in score. ``matched`` finds the last update (NER) or
epoch (ResNet) that every run of the variants compared reached, and each run's
best checkpoint up to it, chosen on the validation metric its training selects
on (``metrics.jsonl`` has the validation metrics of every evaluation; test
metrics exist only for the final best checkpoint, in ``summary.json``):

- every run's final best checkpoint lies within that limit: the test numbers
  already compare equal training, and the answer uses them;
- otherwise: the answer compares the validation metric of the best checkpoint
  up to the limit, and says that test numbers exist only for each run's own
  (unequally trained) best checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from normlab.report.common import Measured
from normlab.report.load import Run, StudyData, metric_value

STOP_WORDS = {"early_stopped": "plateau", "finished": "cap", "diverged": "diverged"}


def stop_reason(run: Run) -> str:
    """'plateau' (early stopping on validation), 'cap' (the epoch limit), 'diverged', or the run's state."""
    return STOP_WORDS.get(run.status, run.status)


def last_point(run: Run, x: str) -> Optional[float]:
    """The last update (``x="step"``) or epoch (``x="epoch"``) the run reached."""
    if run.summary is not None:
        v = run.summary.get("updates" if x == "step" else "epochs_run")
        if v is not None:
            return float(v)
    xs = [float(m[x]) for m in run.metrics if m.get(x) is not None]
    return max(xs) if xs else None


def stop_text(run: Run, x: str) -> str:
    """'plateau after 2,700 updates', 'cap (20 epochs)', 'diverged at update 30', 'interrupted'."""
    why = stop_reason(run)
    at = last_point(run, x)
    unit = "updates" if x == "step" else "epochs"
    if at is None:
        return why
    n = f"{at:,.0f}" if float(at).is_integer() else f"{at:,.2f}"
    if why == "plateau":
        return f"plateau after {n} {unit}"
    if why == "cap":
        return f"cap ({n} {unit})"
    if why == "diverged":
        return f"diverged after {n} {unit}"
    return f"{why} after {n} {unit}"


def best_up_to(run: Run, key: str, limit: float, x: str) -> Optional[tuple[float, float]]:
    """(x, value) of the best ``key`` among the run's evaluations at ``x <= limit``: the first of equal
    values, as training keeps the first best (it saves on a strict improvement)."""
    best = None
    for m in run.metrics:
        at, v = m.get(x), metric_value(m, key)
        if at is None or v is None or float(at) > limit:
            continue
        if best is None or v > best[1]:
            best = (float(at), v)
    return best


@dataclass
class Matched:
    """The variants of one comparison, cut at the last point every run of them reached."""

    x: str  # "step" or "epoch"
    limit: float
    equal: bool  # every run's final best checkpoint lies within ``limit``: the test numbers compare equal training
    stops: dict[str, list[str]] = field(default_factory=dict)  # variant -> each run's stop_text
    val: dict[str, Measured] = field(default_factory=dict)  # variant -> the selection metric at the matched best
    other: dict[str, Measured] = field(default_factory=dict)  # variant -> ``other_key`` at the same checkpoint
    same_stop: bool = True  # every run stopped at the same point

    def unit(self, n: float) -> str:
        return f"update {n:,.0f}" if self.x == "step" else f"epoch {n:g}"

    def span(self) -> str:
        return f"{self.limit:,.0f} updates" if self.x == "step" else f"{self.limit:g} epochs"

    def statement(self, names: list[str]) -> str:
        """Which comparison the answer makes, and why."""
        stops = "; ".join(f"`{n}` " + ", ".join(self.stops[n]) for n in names)
        if self.same_stop:
            kinds = {t for n in names for t in self.stops[n]}
            if len(kinds) == 1 and sum(len(self.stops[n]) for n in names) > 2:
                return f"Equal training: every run compared stopped at the same point ({kinds.pop()})."
            return f"Equal training: every run compared stopped at the same point ({stops})."
        if self.equal:
            return (f"Equal training: the runs stopped at different points ({stops}), but every run's best "
                    f"checkpoint lies within the first {self.span()}, which all of them reached, so the test "
                    f"numbers compare equal training.")
        return (f"Unequal training ({stops}): compared at each run's best checkpoint up to {self.unit(self.limit)}, "
                f"the last all of them reached, chosen on validation. Test metrics exist only for each run's own "
                f"final best checkpoint, so the test difference is given after unequal training, for reference.")


def matched(study: StudyData, names: list[str], select_key: str, other_key: Optional[str] = None,
            x: str = "step") -> Optional[Matched]:
    """The comparison of ``names`` at equal training (see the module docstring); None when a variant has no
    finished run or no evaluations."""
    runs = {}
    for n in names:
        v = study.get(n)
        if v is None or not v.finished:
            return None
        runs[n] = v.finished
    points = {n: [last_point(r, x) for r in rs] for n, rs in runs.items()}
    if any(p is None for ps in points.values() for p in ps):
        return None
    reached = [p for ps in points.values() for p in ps]
    if not reached:  # no variant named, or none with a run: nothing to compare
        return None
    limit = min(reached)
    m = Matched(x, limit, equal=True, same_stop=len({p for ps in points.values() for p in ps}) == 1)
    for n, rs in runs.items():
        m.stops[n] = [stop_text(r, x) for r in rs]
        vals, others = [], []
        for r in rs:
            cut = best_up_to(r, select_key, limit, x)
            full = best_up_to(r, select_key, float("inf"), x)
            if cut is None:
                return None
            if full is None or full[0] != cut[0]:
                m.equal = False
            vals.append(cut[1])
            if other_key is not None:
                rec = next((r2 for r2 in r.metrics if r2.get(x) is not None and float(r2[x]) == cut[0]), {})
                others.append(metric_value(rec, other_key))
        m.val[n] = Measured.of(n, vals)
        if other_key is not None:
            m.other[n] = Measured.of(n, others)
    return m
