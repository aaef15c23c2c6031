"""Differences over seeds, their 95% intervals, and what a report may conclude from them.

One rule for every "A against B" answer of both studies (``difference``):

- Both sides with n >= 2 seeds: the mean difference with a 95% Welch t-interval
  (unequal variances, degrees of freedom by Welch-Satterthwaite; ``scipy.stats.t``).
  An interval that covers 0 is "no detectable difference".
- A side with n = 1: no interval exists (one run has no spread). The noise
  threshold then comes from the study's own measured seed spread
  (``pooled_spread``: the standard deviation over seeds pooled over every variant
  of the study with two or more seeds, df = sum of (n_i - 1)): a difference within
  t(0.975, df) * s * sqrt(1/n_a + 1/n_b) is not told from seed noise. A study with no
  repeated seeds has no measured spread, and the report says that the difference
  cannot be told from noise, never a number taken from elsewhere.

``combination`` does the same for any linear combination of variant means (the
batch-size question compares changes, differences of differences). ``claim_verdict``
turns an interval into the verdict of the table of claims: reproduced, not reproduced,
or inconclusive at this budget. All numbers here are in points (percentage points).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, Optional, Sequence

from scipy import stats

from normlab.report.common import Measured

LEVEL = 0.95

Direction = Literal["higher", "lower", "none", "unknown"]
ClaimVerdict = Literal["reproduced", "not reproduced", "inconclusive at this budget"]


@dataclass(frozen=True)
class Spread:
    """A study's measured seed spread: the pooled standard deviation (points), its degrees of freedom, and
    the variants it was measured on."""

    sd: float
    df: int
    names: tuple[str, ...]

    def text(self) -> str:
        names = ", ".join(f"`{n}`" for n in self.names)
        return (f"this study's measured seed spread (standard deviation {self.sd:.2f} points pooled over "
                f"{names}; {self.df} degrees of freedom)")


def pooled_spread(items: Sequence[Measured]) -> Optional[Spread]:
    """The pooled standard deviation over seeds of every variant with two or more seeds; None without any."""
    rep = [m for m in items if m.n >= 2]
    if not rep:
        return None
    df = sum(m.n - 1 for m in rep)
    ss = sum((m.n - 1) * m.std ** 2 for m in rep)
    return Spread(round(math.sqrt(ss / df), 6), df, tuple(m.name for m in rep))


def t_quantile(df: float) -> float:
    return float(stats.t.ppf(0.5 + LEVEL / 2, df))


@dataclass(frozen=True)
class Estimate:
    """A linear combination of variant means (points) with its 95% interval when every side has n >= 2,
    else with the noise threshold from the study's spread (when measured)."""

    value: float
    ns: tuple[int, ...]
    lo: Optional[float] = None
    hi: Optional[float] = None
    df: Optional[float] = None
    single: tuple[str, ...] = ()  # the variants with one seed (no interval exists)
    threshold: Optional[float] = None  # with a one-seed side: the 95% noise band from ``spread``
    spread: Optional[Spread] = None

    @property
    def has_interval(self) -> bool:
        return self.lo is not None

    @property
    def direction(self) -> Direction:
        """'higher' / 'lower': the interval (or, without one, the noise band) excludes 0 on that side;
        'none': it covers 0; 'unknown': no interval and no measured spread."""
        if self.has_interval:
            if self.lo > 0:
                return "higher"
            if self.hi < 0:
                return "lower"
            return "none"
        if self.threshold is None:
            return "unknown"
        if abs(self.value) <= self.threshold:
            return "none"
        return "higher" if self.value > 0 else "lower"


def combination(terms: Sequence[tuple[float, Measured]], spread: Optional[Spread] = None) -> Optional[Estimate]:
    """``sum(c * mean)`` over ``terms`` (coefficient, variant) with its 95% Welch interval; None when a term
    has no value."""
    if any(not m.values for _, m in terms):
        return None
    value = round(sum(c * m.mean for c, m in terms), 6)
    ns = tuple(m.n for _, m in terms)
    single = tuple(m.name for _, m in terms if m.n < 2)
    if single:
        threshold = None
        if spread is not None:
            se = spread.sd * math.sqrt(sum(c * c / m.n for c, m in terms))
            threshold = round(t_quantile(spread.df) * se, 6)
        return Estimate(value, ns, single=single, threshold=threshold, spread=spread)
    parts = [c * c * m.std ** 2 / m.n for c, m in terms]
    var = sum(parts)
    if var == 0:  # every seed alike on every side: a point, with the pooled df
        return Estimate(value, ns, value, value, float(sum(n - 1 for n in ns)), spread=spread)
    df = var ** 2 / sum(p * p / (m.n - 1) for p, (_, m) in zip(parts, terms))
    half = t_quantile(df) * math.sqrt(var)
    return Estimate(value, ns, round(value - half, 6), round(value + half, 6), df, spread=spread)


def difference(a: Measured, b: Measured, spread: Optional[Spread] = None) -> Optional[Estimate]:
    """mean(a) - mean(b) with its interval (see ``combination``)."""
    return combination([(1.0, a), (-1.0, b)], spread)


def _ns(ns: Sequence[int]) -> str:
    return "n = " + (" and ".join(str(n) for n in ns) if len(ns) <= 2 else
                     ", ".join(str(n) for n in ns[:-1]) + " and " + str(ns[-1])) + " seeds"


def interval_text(e: Estimate) -> str:
    """'95% interval +0.20 to +1.30 points (Welch t-interval, n = 3 and 3 seeds)', or why none exists."""
    if e.has_interval:
        return (f"95% interval {e.lo:+.2f} to {e.hi:+.2f} points (Welch t-interval, {_ns(e.ns)}, "
                f"{e.df:.1f} degrees of freedom)")
    who = " and ".join(f"`{n}`" for n in e.single)
    noise = f"; seed noise ±{e.threshold:.2f} points" if e.threshold is not None else ""
    return f"no interval exists: {who} {'has' if len(e.single) == 1 else 'have'} one seed (n = 1){noise}"


def noise_text(e: Estimate) -> str:
    """What a one-seed difference can be set against: the study's measured seed noise, or nothing."""
    if e.has_interval:
        return ""
    if e.threshold is None:
        return ("This study has no variant with repeated seeds, so its seed noise is unmeasured and this "
                "difference cannot be told from it.")
    inside = abs(e.value) <= e.threshold
    return (f"Against {e.spread.text()}, seed noise alone moves such a difference by up to ±{e.threshold:.2f} points "
            f"(95%): this one ({e.value:+.2f}) is " + ("within that: no detectable difference." if inside else
                                                      "larger than that."))


def conclusion(e: Estimate, a: str, b: str) -> str:
    d = e.direction
    if d == "higher":
        return f"`{a}` is higher"
    if d == "lower":
        return f"`{a}` is lower"
    if d == "none":
        return "no detectable difference" + (" (the interval covers 0)" if e.has_interval else "")
    return "undetermined (seed noise unmeasured)"


def difference_sentence(a: Measured, b: Measured, what: str, spread: Optional[Spread] = None,
                        noise: bool = True) -> str:
    """'`a` against `b` on test accuracy: 84.00 ± 0.10% against 83.00 ± 0.20%, a difference of +1.00 points,
    95% interval ...: `a` is higher.' (or no detectable difference, or no interval with n = 1, then, with
    ``noise``, what the difference is set against: ``noise_text``; without ``noise``, only the noise band and
    the conclusion from it, for a section that names the seed spread once: ``spread_note``)."""
    gone = [m.name for m in (a, b) if not m.values]
    if gone:
        return (f"Cannot compare `{a.name}` with `{b.name}` on {what}: " + " and ".join(f"`{n}`" for n in gone)
                + f" {'has' if len(gone) == 1 else 'have'} no value.")
    e = difference(a, b, spread)
    head = (f"`{a.name}` against `{b.name}` on {what}: {a.short()} against {b.short()}, a difference of "
            f"{e.value:+.2f} points")
    if e.has_interval:
        return f"{head}, {interval_text(e)}: {conclusion(e, a.name, b.name)}."
    if noise:
        return f"{head}; {interval_text(e)}. {noise_text(e)}"
    return f"{head}; {interval_text(e)}: {conclusion(e, a.name, b.name)}."


def spread_note(spread: Optional[Spread]) -> str:
    """The one sentence that says what the one-seed differences of a section (``difference_sentence`` without
    ``noise``) are judged against."""
    if spread is None:
        return ("A difference with a one-seed side has no interval, and this study has no variant with repeated "
                "seeds: its seed noise is unmeasured, so such a difference cannot be told from it.")
    return (f"A difference with a one-seed side has no interval; it is judged against {spread.text()}: the "
            "seed noise given with it is the 95% band that seed noise alone moves such a difference by, and a "
            "difference within it is no detectable difference.")


def claim_verdict(e: Optional[Estimate], expected: Literal["higher", "lower", "equal"],
                  margin: Optional[float] = None) -> tuple[ClaimVerdict, str]:
    """The verdict on a claim about ``e`` (a difference in points) and why.

    ``higher`` / ``lower``: the claim says the difference is above / below 0: reproduced when the
    95% interval excludes 0 on that side, not reproduced when it excludes 0 on the other side,
    inconclusive when it covers 0. ``equal``: the claim says there is no difference: reproduced when
    the interval lies within +-``margin`` points, not reproduced when it excludes 0, inconclusive
    when it covers 0 but reaches past the margin. Without an interval (a side with one seed, or a
    side missing) the verdict is inconclusive.
    """
    if e is None:
        return "inconclusive at this budget", "a side has no finished run"
    if not e.has_interval:
        return "inconclusive at this budget", interval_text(e)
    if expected == "equal":
        if margin is None:
            raise ValueError("expected a margin for an 'equal' claim, got None")
        if e.lo > 0 or e.hi < 0:
            return "not reproduced", "the interval excludes 0"
        if -margin <= e.lo and e.hi <= margin:
            return "reproduced", f"the interval lies within ±{margin:g} point{'' if margin == 1 else 's'}"
        return "inconclusive at this budget", (f"the interval covers 0 but reaches past ±{margin:g} "
                                               f"point{'' if margin == 1 else 's'}")
    d = e.direction
    if d == "none":
        return "inconclusive at this budget", "the interval covers 0"
    side = "above" if d == "higher" else "below"
    return ("reproduced" if d == expected else "not reproduced"), f"the interval lies {side} 0"


def estimate_cell(e: Optional[Estimate]) -> str:
    """'+0.75 [+0.20, +1.30] (n = 3, 3)' or '+0.75 (no interval: n = 1, 3)' for a table."""
    if e is None:
        return "–"
    ns = ", ".join(str(n) for n in e.ns)
    if e.has_interval:
        return f"{e.value:+.2f} [{e.lo:+.2f}, {e.hi:+.2f}] (n = {ns})"
    return f"{e.value:+.2f} (no interval: n = {ns})"


def reference_sentence(items: Sequence[Measured], ref: Measured, what: str, spread: Optional[Spread] = None,
                       note: bool = True) -> str:
    """Each variant's difference from ``ref`` with its interval (or, with one seed, against the study's seed
    noise), grouped: higher, lower, no detectable difference, undetermined; with ``note``, what the one-seed
    differences are judged against (leave it to the section's ``spread_note`` otherwise)."""
    if not ref.values:
        return f"Cannot set the variants against `{ref.name}`: it has no finished run."
    others = [m for m in items if m.name != ref.name and m.values]
    if not others:
        return f"No other variant to set against `{ref.name}`."
    groups: dict[str, list[str]] = {"higher": [], "lower": [], "none": [], "unknown": []}
    for m in others:
        e = difference(m, ref, spread)
        cell = (f"`{m.name}` {e.value:+.2f} [{e.lo:+.2f}, {e.hi:+.2f}]" if e.has_interval else
                f"`{m.name}` {e.value:+.2f} (one seed: no interval" + (f"; seed noise ±{e.threshold:.2f})"
                                                                       if e.threshold is not None else ")"))
        groups[e.direction].append(cell)
    label = {"higher": f"detectably above `{ref.name}`", "lower": f"detectably below `{ref.name}`",
             "none": "no detectable difference", "unknown": "undetermined (seed noise unmeasured)"}
    parts = [f"{label[k]}: {', '.join(v)}" for k, v in groups.items() if v]
    out = (f"Against `{ref.name}` on {what} (difference in points, with its 95% interval where both sides have "
           f"several seeds): " + "; ".join(parts) + ".")
    if note and any(not difference(m, ref, spread).has_interval for m in others) and spread is not None:
        out += f" One-seed differences are judged against {spread.text()}."
    return out
