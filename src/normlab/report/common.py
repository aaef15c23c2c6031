"""How the report words a comparison: pure functions of numbers, shared by both studies.

Every sentence the report states about results comes from a function here, in
``stats`` (differences with their 95% intervals over seeds, and the
noise threshold from the study's own seed spread) or in ``answers_resnet`` /
``answers_ner``: each takes numbers (per-seed values as fractions, 0.913 = 91.3%)
and returns text, so that each wording is tested with hand-made numbers for every
sign and tie (``tests/test_report_answers.py``). No threshold here is a constant:
whether a difference is noise is decided by its interval, or, with one seed, by
the seed spread the study measured (``stats``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import numpy as np


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
    """What a section says: the answer (one or two sentences), the points that back it (one bullet each,
    e.g. one per explanation tested) and the caveats that apply."""

    answer: list[str] = field(default_factory=list)
    caveats: list[str] = field(default_factory=list)
    points: list[str] = field(default_factory=list)
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


def cannot(a: Measured, b: Measured, what: str) -> Optional[str]:
    """The sentence for a comparison that lacks a side, else None."""
    gone = [m.name for m in (a, b) if not m.values]
    if not gone:
        return None
    return (f"Cannot compare `{a.name}` with `{b.name}` on {what}: "
            + " and ".join(f"`{n}`" for n in gone) + f" {'has' if len(gone) == 1 else 'have'} no value.")


def ranking(items: Sequence[Measured]) -> list[tuple[int, list[Measured]]]:
    """Competition ranking by mean, best first; variants whose means are equal as shown (two decimals)
    share a rank (1, 2, 2, 4). Variants without values are left out. Whether two ranks differ by more
    than seed noise is for ``stats`` to say."""
    have = sorted((m for m in items if m.values), key=lambda m: -m.mean)
    groups: list[tuple[int, list[Measured]]] = []
    for i, m in enumerate(have):
        if groups and round(groups[-1][1][0].mean, 2) == round(m.mean, 2):
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
        parts.append(f"{rank}. {names}" + (" (equal as shown)" if len(ms) > 1 else ""))
    out = f"Ranked by mean {split} {metric}: " + "; ".join(parts) + "."
    missing = [m.name for m in items if not m.values]
    if missing:
        out += " No value for " + ", ".join(f"`{n}`" for n in missing) + "."
    return out
