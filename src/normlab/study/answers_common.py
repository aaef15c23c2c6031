"""How the report words a comparison: pure functions of numbers, shared by both studies.

Every sentence the report states about results comes from a function here or in
``answers_resnet`` / ``answers_ner`` that takes numbers (per-seed values as
fractions, 0.913 = 91.3%) and returns text, so that each wording can be tested
with hand-made numbers for every sign and tie (``tests/test_report_answers.py``).

Two thresholds decide the wording; both are in points (percentage points):

- ``TIE_POINTS`` = 0.1: two means closer than this "tie" (and two changes
  closer than this in size are "equally" large). 0.1 points is 10 images of
  CIFAR-10's 10,000 test images, below what any of the studies' questions
  turns on, and it keeps the report from calling a 0.01-point gap a win.
- ``ONE_SEED_NOISE_POINTS`` = 0.5: with one seed per variant the seed spread is
  unknown; the report then warns that a difference under 0.5 points may be
  noise. The seed-to-seed standard deviation of a CIFAR-10 ResNet's test
  accuracy is typically 0.1-0.3 points (He et al. 2016, Table 6: ± 0.16 over
  5 runs of ResNet-110), so 0.5 points is two to three of those; the NER
  study's F1 scores vary by a similar amount between seeds.

With several seeds, a difference is "within the seed spread" when it is no
larger than the largest sample standard deviation (ddof=1) over seeds among the
variants compared.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

TIE_POINTS = 0.1
ONE_SEED_NOISE_POINTS = 0.5


@dataclass(frozen=True)
class Measured:
    """One variant's values of one metric, one per finished seed (fractions)."""

    name: str
    values: tuple[float, ...] = ()

    @classmethod
    def of(cls, name: str, values: Sequence[Optional[float]]) -> "Measured":
        return cls(name, tuple(float(v) for v in values if v is not None))

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> Optional[float]:
        """Mean in points (91.3), None without values."""
        return round(float(np.mean(self.values)) * 100, 6) if self.values else None

    @property
    def std(self) -> Optional[float]:
        """Sample standard deviation in points; None with fewer than two seeds."""
        return round(float(np.std(self.values, ddof=1)) * 100, 6) if self.n > 1 else None

    def short(self) -> str:
        """'91.30%' or '91.30 ± 0.15%' (mean ± std over seeds)."""
        if not self.values:
            return "n/a"
        return f"{self.mean:.2f}%" if self.std is None else f"{self.mean:.2f} ± {self.std:.2f}%"

    def long(self) -> str:
        """'91.30% (one seed)' or '91.30 ± 0.15% over 3 seeds (91.10, 91.40, 91.40)'."""
        if not self.values:
            return "no finished run"
        if self.n == 1:
            return f"{self.mean:.2f}% (one seed)"
        seeds = ", ".join(f"{v * 100:.2f}" for v in self.values)
        return f"{self.short()} over {self.n} seeds ({seeds})"


@dataclass
class Verdict:
    """What a section says: the answer (one or two sentences) and the caveats that apply."""

    answer: list[str] = field(default_factory=list)
    caveats: list[str] = field(default_factory=list)
    key: int = 0  # the answer sentence that carries the verdict ("Answers at a glance" shows it)

    @property
    def headline(self) -> str:
        return self.answer[min(self.key, len(self.answer) - 1)] if self.answer else ""


@dataclass
class Section:
    """One question of a study: its figure (path, caption), tables (header, rows), the verdict,
    and fixed statements (e.g. what a setting is and why) shown after the answer."""

    title: str
    figure: Optional[tuple[Path, str]]
    tables: list[tuple[list[str], list[list[str]]]] = field(default_factory=list)
    verdict: Verdict = field(default_factory=Verdict)
    notes: list[str] = field(default_factory=list)


def diff_points(a: Measured, b: Measured) -> float:
    """mean(a) - mean(b) in points, rounded to 1e-6 so that ties are decided on the shown numbers."""
    return round(a.mean - b.mean, 6)


def is_tie(d: float) -> bool:
    return abs(d) < TIE_POINTS


def seed_spread(*ms: Measured) -> Optional[tuple[float, str]]:
    """The largest standard deviation over seeds among ``ms`` (points) and whose it is; None if no
    variant has two seeds."""
    known = [(m.std, m.name) for m in ms if m.std is not None]
    return max(known) if known else None


def spread_caveat(d: float, *ms: Measured) -> str:
    """Whether a difference of ``d`` points is within the seed spread of ``ms``, or the one-seed warning."""
    size = abs(d)
    spread = seed_spread(*ms)
    if spread is None:
        if size < ONE_SEED_NOISE_POINTS:
            return (f"One seed per variant, so the seed spread is unknown: a difference under "
                    f"{ONE_SEED_NOISE_POINTS:g} points may be noise, and this one ({size:.2f} points) is under that.")
        return (f"One seed per variant, so the seed spread is unknown: a difference under "
                f"{ONE_SEED_NOISE_POINTS:g} points may be noise; this one ({size:.2f} points) is larger.")
    std, whose = spread
    where = "within" if size <= std else "outside"
    return (f"The difference ({size:.2f} points) is {where} the seed spread (the largest standard deviation "
            f"over seeds, `{whose}`'s, is {std:.2f} points).")


def cannot(a: Measured, b: Measured, what: str) -> Optional[str]:
    """The sentence for a comparison that lacks a side, else None."""
    gone = [m.name for m in (a, b) if not m.values]
    if not gone:
        return None
    return (f"Cannot compare `{a.name}` with `{b.name}` on {what}: "
            + " and ".join(f"`{n}`" for n in gone) + f" {'has' if len(gone) == 1 else 'have'} no value.")


def compare_sentence(a: Measured, b: Measured, metric: str, split: str = "test") -> str:
    """'`a` beats `b` by N points on test <metric> (x against y).' / 'tie' / 'trails'."""
    what = f"{split} {metric}"
    miss = cannot(a, b, what)
    if miss:
        return miss
    d = diff_points(a, b)
    if is_tie(d):
        return (f"`{a.name}` and `{b.name}` tie on {what}: {a.short()} and {b.short()} "
                f"(a difference under {TIE_POINTS:g} points).")
    verb = "beats" if d > 0 else "trails"
    return f"`{a.name}` {verb} `{b.name}` by {abs(d):.2f} points on {what} ({a.short()} against {b.short()})."


def compare(a: Measured, b: Measured, metric: str, split: str = "test") -> Verdict:
    """A comparison with its seed caveat (none for a tie or a missing side)."""
    v = Verdict([compare_sentence(a, b, metric, split)])
    if a.values and b.values and not is_tie(diff_points(a, b)):
        v.caveats.append(spread_caveat(diff_points(a, b), a, b))
    return v


def ranking(items: Sequence[Measured]) -> list[tuple[int, list[Measured]]]:
    """Competition ranking by mean, best first; a variant within ``TIE_POINTS`` of the first
    of a group shares its rank (1, 2, 2, 4). Variants without values are left out."""
    have = sorted((m for m in items if m.values), key=lambda m: -m.mean)
    groups: list[tuple[int, list[Measured]]] = []
    for i, m in enumerate(have):
        if groups and is_tie(groups[-1][1][0].mean - m.mean):
            groups[-1][1].append(m)
        else:
            groups.append((i + 1, [m]))
    return groups


def ranking_sentence(items: Sequence[Measured], metric: str, split: str = "test") -> str:
    groups = ranking(items)
    if not groups:
        return f"No variant has a {split} {metric} yet."
    parts = []
    for rank, ms in groups:
        names = " = ".join(f"`{m.name}` {m.short()}" for m in ms)
        parts.append(f"{rank}. {names}" + (f" (tied within {TIE_POINTS:g} points)" if len(ms) > 1 else ""))
    out = f"Ranked by mean {split} {metric}: " + "; ".join(parts) + "."
    missing = [m.name for m in items if not m.values]
    if missing:
        out += " No value for " + ", ".join(f"`{n}`" for n in missing) + "."
    return out


def near_reference_sentence(items: Sequence[Measured], ref: Measured, metric: str) -> str:
    """Which variants lie within the seed spread of ``ref`` (one standard deviation of its seeds),
    or, with one seed of ``ref``, within ``ONE_SEED_NOISE_POINTS`` of it."""
    if not ref.values:
        return f"Cannot say which variants are near `{ref.name}`: it has no finished run."
    others = [m for m in items if m.name != ref.name and m.values]
    if not others:
        return f"No other variant to set against `{ref.name}`."
    if ref.std is not None:
        radius, how = ref.std, f"within the seed spread of `{ref.name}` (one standard deviation, {ref.std:.2f} points)"
    else:
        radius = ONE_SEED_NOISE_POINTS
        how = (f"within {ONE_SEED_NOISE_POINTS:g} points of `{ref.name}` (one seed of `{ref.name}`, so its spread "
               f"is unknown and a gap this small may be noise)")
    near = [m for m in others if abs(diff_points(m, ref)) <= radius]
    far = [m for m in others if abs(diff_points(m, ref)) > radius]
    fmt = lambda ms: ", ".join(f"`{m.name}` ({diff_points(m, ref):+.2f})" for m in ms)
    return (f"On {metric}, " + (fmt(near) if near else "no other variant") + f" {'are' if len(near) > 1 else 'is'} "
            + how + (f"; further away: {fmt(far)} points" if far else "") + ".")
