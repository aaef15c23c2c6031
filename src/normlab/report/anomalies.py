"""Two results the studies did not expect, and the controlled runs that test explanations for them.

- ResNet: "Why do GN, LN and IN trail at this budget?" reads the group-size sweep
  (``gn_g2``, ``gn_g4``, ``gn``'s 8, ``gn_g16``) and the learning-rate point
  (``ln_lr05``, ``gn_lr05``, ``in_lr05`` against the same norms at lr 0.1).
- ResNet: "Why does GN gain accuracy at batch 8?" tests one explanation: GN is under-trained at
  batch 128 after the study's epochs, and batch 8's 16x the updates per epoch train it further.
  It predicts that ``gn_b8`` fits the training set better than ``gn`` (small-batch noise as a
  regularizer would predict a worse fit), and that ``gn_long`` (batch 128, twice the epochs) beats ``gn``.
- NER: "Why does GloVe not help here?" reads the scale pair (``glove_small``: GloVe at
  the random initialization's spread, against ``glove``; ``random50_large``: random
  vectors at GloVe's spread, against ``random50``) and the coverage pair (``glove_few``
  against ``random50_few`` on 3,000 training sentences).

These variants run only when named (``grids.anomaly_variants``); a section whose runs
are absent says so and gives the command that runs them. Each hypothesis gets a verdict
from the intervals of its comparisons (``hypothesis_verdict``): supported, contradicted,
not supported at this budget (no detectable effect), undetermined (a one-seed comparison
and no measured seed spread), or not run.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional, Sequence

from normlab.report.common import Measured, Section, Verdict
from normlab.report.stats import (Estimate, Spread, difference, difference_sentence, pooled_spread, reference_sentence,
                                  spread_note)
from normlab.study.grids import (GLOVE_6B_50D_STD, NER_FEW_SENTENCES, RANDOM_50D_STD, RESNET_ANOMALY_LR,
                                 RESNET_GN_GROUPS, RESNET_LONG_FACTOR)
from normlab.report.load import StudyData

GN_TITLE = "Why do GN, LN and IN trail at this budget?"
GN_BATCH_TITLE = "Why does GN gain accuracy at batch 8?"
GLOVE_TITLE = "Why does GloVe not help here?"

HypothesisVerdict = Literal["supported", "contradicted", "not supported at this budget", "undetermined", "not run"]

# ResNet-14 (n=2): the channels of its three stages.
STAGE_CHANNELS = (16, 32, 64)
DEFAULT_GN_GROUPS = 8


@dataclass(frozen=True)
class Test:
    """One comparison a hypothesis predicts: ``a`` against ``b`` should come out ``expected``."""

    __test__ = False  # not a pytest test class

    a: str
    b: str
    expected: Literal["higher", "lower"]


def hypothesis_verdict(estimates: Sequence[Optional[Estimate]], tests: Sequence[Test]) -> HypothesisVerdict:
    """Supported when every comparison goes the predicted way by more than seed noise; contradicted when
    one goes the other way; not supported when none is contradicted but one shows no detectable
    difference; undetermined when one cannot be told from noise; not run when a side has no run."""
    if not estimates or any(e is None for e in estimates):
        return "not run"
    dirs = [e.direction for e in estimates]
    if any(d not in (t.expected, "none", "unknown") for d, t in zip(dirs, tests)):
        return "contradicted"
    if "unknown" in dirs:
        return "undetermined"
    if all(d == t.expected for d, t in zip(dirs, tests)):
        return "supported"
    return "not supported at this budget"


def _m(study: StudyData, name: str, key: str, split: str = "test") -> Measured:
    return Measured.of(name, study.values(name, split, key))


def _have(study: StudyData, names: Sequence[str]) -> bool:
    return all(study.get(n) is not None and study.get(n).available for n in names)


def _judge(study: StudyData, tests: Sequence[Test], key: str, what: str, spread: Optional[Spread]):
    """(verdict, sentences) of one hypothesis on ``key`` (test split); a one-seed comparison gives its noise band
    and conclusion, and the section says once what the band comes from (``spread_note``).

    With only some of its comparisons run, the verdict is the one those give, marked "so far (k of n
    comparisons run)": a contradiction then already stands, a support may still fall."""
    present = [t for t in tests if _have(study, (t.a, t.b))]
    if not present:
        return "not run", []
    ests = [difference(_m(study, t.a, key), _m(study, t.b, key), spread) for t in present]
    said = [difference_sentence(_m(study, t.a, key), _m(study, t.b, key), what, spread, noise=False) for t in present]
    verdict = hypothesis_verdict(ests, present)
    if len(present) < len(tests):
        verdict = f"{verdict} so far ({len(present)} of {len(tests)} comparisons run)"
    return verdict, said


def _not_run(names: Sequence[str], command: str) -> str:
    return ("Not run in this study: " + ", ".join(f"`{n}`" for n in names)
            + f". {'It runs' if len(names) == 1 else 'They run'} with `{command}`.")


def _verdict_line(label: str, verdict: str) -> str:
    return f"{label}: **{verdict}**."


def _spread_note_if_single(study: StudyData, names: Sequence[str], key: str, spread: Optional[Spread]) -> list[str]:
    """``spread_note`` once, when one of ``names`` that ran has a single seed (its comparisons carry no interval)."""
    if any(_m(study, n, key).n == 1 for n in names if _have(study, (n,))):
        return [spread_note(spread)]
    return []


def _point(label: str, verdict: str, said: Sequence[str]) -> str:
    """One explanation as a bullet: its verdict, then the comparisons behind it."""
    return " ".join([_verdict_line(label, verdict), *said])


# ----------------------------------------------------------------------------- ResNet


def fit_sentences(study: StudyData, slow: Sequence[str] = ("in", "gn", "ln"), ref: Sequence[str] = ("bn", "nn")
                  ) -> list[str]:
    """Whether the trailing norms fit the training set less than ``ref`` (train accuracy at the best
    checkpoint), and whether they overfit more (their train-test gap against ``bn``'s)."""
    train = {n: _m(study, n, "accuracy", "train") for n in (*ref, *slow)}
    test = {n: _m(study, n, "accuracy") for n in train}
    if not all(m.values for m in train.values()) or not all(m.values for m in test.values()):
        return []
    floor = min(train[n].mean for n in ref)
    less = [n for n in slow if train[n].mean < floor]
    out = ["Train accuracy at the best checkpoint: " + ", ".join(f"`{n}` {m.short()}" for n, m in train.items())
           + "; " + (", ".join(f"`{n}`" for n in less) + f" fit{'s' if len(less) == 1 else ''} the training set "
                     "less than " + " and ".join(f"`{n}`" for n in ref) if less else
                     "none of " + ", ".join(f"`{n}`" for n in slow) + " fits the training set less than "
                     + " and ".join(f"`{n}`" for n in ref)) + "."]
    gap = {n: train[n].mean - test[n].mean for n in train}
    more = [n for n in slow if gap[n] > gap["bn"]]
    out.append("Train–test gaps: " + ", ".join(f"`{n}` {gap[n]:.2f}" for n in train) + " points: "
               + (", ".join(f"`{n}`" for n in more) + " overfit more than `bn`." if more else
                  "none of them overfits more than `bn`."))
    return out



def gn_section(study: StudyData, out: Path, command: str) -> Section:
    spread = pooled_spread([_m(study, v.name, "accuracy") for v in study.variants])
    # LN is GN with one group and IN is GN with a group per channel (norms/layernorm.py, instancenorm.py):
    # the study's own `ln` and `in` runs are the sweep's two ends.
    groups = [("ln", 1), ("gn_g2", 2), ("gn_g4", 4), ("gn", DEFAULT_GN_GROUPS), ("gn_g16", 16), ("in", None)]
    assert tuple(g for n, g in groups if n.startswith("gn_g")) == RESNET_GN_GROUPS
    rows = []
    for name, g in groups:
        acc, tr = _m(study, name, "accuracy"), _m(study, name, "accuracy", "train")
        per = " / ".join(str(max(1, c // g)) if g else "1" for c in STAGE_CHANNELS)
        rows.append([f"`{name}`", str(g) if g else "C (one per channel)", per,
                     acc.short() if acc.values else "not run", tr.short() if tr.values else "–"])
    v = Verdict()
    # what the study's own runs show, whatever else was run
    v.answer += fit_sentences(study)
    # group size: each G against the default 8
    size_tests = [Test(n, "gn", "higher") for n, g in groups if n != "gn"]
    present = [t for t in size_tests if _have(study, (t.a, t.b))]
    if present:
        ests = [difference(_m(study, t.a, "accuracy"), _m(study, "gn", "accuracy"), spread) for t in present]
        better = [t.a for t, e in zip(present, ests) if e.direction == "higher"]
        verdict = ("supported" if better else "undetermined" if any(e.direction == "unknown" for e in ests)
                   else "not supported at this budget")
        said = [reference_sentence([_m(study, t.a, "accuracy") for t in present], _m(study, "gn", "accuracy"),
                                   "test accuracy", spread, note=False)]
        v.points.append(_point("Group size (another G fits better than G = 8)", verdict, said))
    else:
        verdict = "not run"
        v.points.append(_point("Group size", "not run", []))
    missing_sizes = [t.a for t in size_tests if t not in present and t.a.startswith("gn_g")]
    # learning rate: each norm at 0.05 against itself at 0.1
    tag = f"{RESNET_ANOMALY_LR:g}".replace("0.", "")
    lr_tests = [Test(f"{n}_lr{tag}", n, "higher") for n in ("ln", "gn", "in")]
    lr_verdict, lr_said = _judge(study, lr_tests, "accuracy", "test accuracy", spread)
    v.points.append(_point(f"Learning rate (lr {RESNET_ANOMALY_LR:g} fits LN, GN and IN better than 0.1)",
                           lr_verdict, lr_said))
    # training length: the trailing norms fit the training set more slowly; does twice the training help GN?
    long_verdict, long_said = _judge(study, [Test("gn_long", "gn", "higher")], "accuracy", "test accuracy", spread)
    if long_said and _have(study, ("gn_long", "bn")):
        long_said.append("Against BN at the study's length: " + difference_sentence(
            _m(study, "gn_long", "accuracy"), _m(study, "bn", "accuracy"), "test accuracy", spread, noise=False))
    v.points.append(_point(f"Training length (GN fits slowly: {RESNET_LONG_FACTOR}x the epochs at batch 128 "
                           "raise it)", long_verdict, long_said))
    v.answer += _spread_note_if_single(study, [n for n, _ in groups] + [t.a for t in lr_tests] + ["gn_long", "bn"],
                                       "accuracy", spread)
    v.answer.insert(0, f"Explanations tested: group size {verdict}; learning rate {lr_verdict}; training length "
                       f"{long_verdict}.")
    notes = []
    missing = missing_sizes + [t.a for t in lr_tests if not _have(study, (t.a,))] + \
        ([] if _have(study, ("gn_long",)) else ["gn_long"])
    if missing:
        notes.append(_not_run(missing, command))
    notes.append(f"Channels per group in the three stages ({' / '.join(map(str, STAGE_CHANNELS))} channels) are "
                 "C / G: G = 8 leaves 2 channels per group in the first stage; Wu & He use G = 32 on 64 or more "
                 "channels and report the group size as the sensitive choice. LN is GN with one group (`ln`) and "
                 "IN is GN with one channel per group (`in`), so the study's own runs of both are the sweep's ends.")
    return Section(GN_TITLE, None, [(["variant", "groups G", "channels per group (stages 1 / 2 / 3)",
                                      "test acc", "train acc"], rows)], v, notes)


def gn_batch_section(study: StudyData, out: Path, command: str) -> Section:
    """Is GN under-trained at batch 128? Its fit at batch 8 and its accuracy after twice the epochs."""
    names = ("gn", "gn_b8", "gn_long", "bn", "bn_b8")
    test = {n: _m(study, n, "accuracy") for n in names}
    train = {n: _m(study, n, "accuracy", "train") for n in names}
    spread = pooled_spread([_m(study, v.name, "accuracy") for v in study.variants])
    train_spread = pooled_spread([_m(study, v.name, "accuracy", "train") for v in study.variants])
    rows = []
    for n in names:
        vr = study.get(n)
        if vr is None or not vr.available:
            rows.append([f"`{n}`", "–", "–", "not run", "–", "–"])
            continue
        cfgs = [r.config.get("config", {}) for r in vr.runs if r.config]
        epochs = sorted({c.get("epochs") for c in cfgs} - {None})
        batch = sorted({c.get("batch_size") for c in cfgs} - {None}) or [vr.settings.get("batch_size")] * (
            vr.settings.get("batch_size") is not None)  # a config without it: the grid's
        rows.append([f"`{n}`", "/".join(map(str, batch)) or "–", "/".join(map(str, epochs)) or "–",
                     test[n].short() if test[n].values else "–", train[n].short() if train[n].values else "–",
                     str(test[n].n)])
    v = Verdict()
    if not (test["gn"].values and test["gn_b8"].values):
        v.answer.append("Explanation tested: under-training at batch 128 **not run** (`gn` and `gn_b8` are needed).")
        return Section(GN_BATCH_TITLE, None, [(_BATCH_HEADER, rows)], v, [])
    v.answer.append(difference_sentence(test["gn_b8"], test["gn"], "test accuracy", spread, noise=False))
    tests = [Test("gn_b8", "gn", "higher"), Test("gn_long", "gn", "higher")]
    ests: list[Optional[Estimate]] = [difference(train["gn_b8"], train["gn"], train_spread)
                                      if train["gn_b8"].values and train["gn"].values else None]
    said = []
    if ests[0] is not None:
        said.append("Fit: " + difference_sentence(train["gn_b8"], train["gn"], "train accuracy at the best checkpoint",
                                                   train_spread))
    if test["gn_long"].values:
        ests.append(difference(test["gn_long"], test["gn"], spread))
        said.append(f"Longer training ({RESNET_LONG_FACTOR}x the epochs at batch 128): "
                    + difference_sentence(test["gn_long"], test["gn"], "test accuracy", spread, noise=False))
        said.append("For reference: " + difference_sentence(test["gn_long"], test["gn_b8"], "test accuracy", spread,
                                                             noise=False))
    else:
        ests.append(None)
    verdict = hypothesis_verdict(ests, tests)
    v.answer.insert(0, f"Explanation tested: GN is under-trained at batch 128 after the study's epochs, and batch "
                       f"8's 16 times as many updates per epoch train it further: **{verdict}**.")
    if train["bn_b8"].values and train["bn"].values:
        said.append("BN for contrast: " + difference_sentence(train["bn_b8"], train["bn"],
                                                              "train accuracy at the best checkpoint", train_spread))
    v.points += said
    v.answer += _spread_note_if_single(study, ("gn", "gn_b8", "gn_long"), "accuracy", spread)
    notes = ["The explanation predicts both comparisons: `gn_b8` fits the training set better than `gn` (small-batch "
             "noise acting as a regularizer would make it fit worse while testing better), and `gn` trained "
             f"{RESNET_LONG_FACTOR} times as long at batch 128 (`gn_long`, the same cosine schedule stretched over "
             "its epochs) beats `gn`. Supported needs both; a one-seed side is judged against the study's measured "
             "seed spread."]
    if not test["gn_long"].values:
        notes.append(_not_run(["gn_long"], command))
    return Section(GN_BATCH_TITLE, None, [(_BATCH_HEADER, rows)], v, notes)


_BATCH_HEADER = ["variant", "batch", "epochs", "test acc", "train acc", "seeds"]


# ----------------------------------------------------------------------------- NER

# What each GloVe explanation predicts (also the rows of the NER validation figure, write.ner_curve_groups).
GLOVE_SCALE_TESTS = (Test("glove_small", "glove", "higher"), Test("random50_large", "random50", "lower"))
GLOVE_COVERAGE_TESTS = (Test("glove_few", "random50_few", "higher"),)


def glove_section(study: StudyData, out: Path, command: str) -> Section:
    spread = pooled_spread([_m(study, v.name, "entity_f1") for v in study.variants])
    v = Verdict()
    if _have(study, ("glove", "random50")):
        tr = {n: _m(study, n, "micro_f1", "train") for n in ("glove", "random50", "random")}
        v.answer.append(difference_sentence(_m(study, "glove", "entity_f1"), _m(study, "random50", "entity_f1"),
                                            "test entity F1", spread, noise=False))
        if all(m.values for m in tr.values()):
            slower = tr["glove"].mean < min(tr["random50"].mean, tr["random"].mean)
            how = "fits the training set less" if slower else "fits the training set at least as well"
            v.answer.append(f"The GloVe run {how} (train micro F1 at the best checkpoint: "
                            + ", ".join(f"`{n}` {m.short()}" for n, m in tr.items()) + ").")
    scale_verdict, scale_said = _judge(study, list(GLOVE_SCALE_TESTS), "entity_f1", "test entity F1", spread)
    v.points.append(_point(f"Scale (GloVe's spread, std {GLOVE_6B_50D_STD:g} against the random "
                           f"initialization's {RANDOM_50D_STD:g}, slows learning: GloVe rescaled down does "
                           f"better, random scaled up does worse)", scale_verdict, scale_said))
    cov_verdict, cov_said = _judge(study, list(GLOVE_COVERAGE_TESTS), "entity_f1", "test entity F1", spread)
    v.points.append(_point(f"Coverage (pretrained vectors help when the training set lacks the words: GloVe "
                           f"beats random 50-d on {NER_FEW_SENTENCES:,} training sentences)", cov_verdict, cov_said))
    v.answer.insert(0, f"Explanations tested: scale {scale_verdict}; coverage {cov_verdict}.")
    v.answer += _spread_note_if_single(study, [n for t in GLOVE_SCALE_TESTS + GLOVE_COVERAGE_TESTS for n in (t.a, t.b)]
                                       + ["glove"], "entity_f1", spread)
    notes = []
    from normlab.report.answers_ner import has_rescaled

    if has_rescaled(study):
        notes.append(f"The study's grid runs every GloVe variant twice: as published and rescaled to std "
                     f"{RANDOM_50D_STD:g} (the `_small` variants, `glove_small` among them); each question above "
                     "is answered on both setups.")
    missing = [n for t in GLOVE_SCALE_TESTS + GLOVE_COVERAGE_TESTS for n in (t.a, t.b) if not _have(study, (n,))]
    if missing:
        notes.append(_not_run(list(dict.fromkeys(missing)), command))
    shares: dict[float, list[str]] = {}
    for r in study.runs:
        share = ((r.config.get("data") or {}).get("embeddings") or {}).get("share_found")
        if share is not None and r.variant not in shares.setdefault(float(share), []):
            shares[float(share)].append(r.variant)
    if shares:
        notes.append("Share of the training vocabulary found in GloVe: "
                     + "; ".join(f"{x * 100:.2f}% ({', '.join(f'`{n}`' for n in names)})"
                                 for x, names in sorted(shares.items()))
                     + " (the rest start as random vectors at the same spread).")
    return Section(GLOVE_TITLE, None, [], v, notes)


def anomaly_command(study: StudyData, names: Sequence[str]) -> str:
    """The study command that runs ``names`` into this study's folder."""
    from dataclasses import replace

    from normlab.report.header import study_command

    if study.settings is not None:
        return study_command(replace(study.settings, variants=list(names)))
    return f"normlab study {study.kind} ... --variants {' '.join(names)}"


def anomaly_sections(study: StudyData, out: Path) -> list[Section]:
    from normlab.study.grids import anomaly_variants

    names = [v.name for v in anomaly_variants(study.kind)]
    if study.kind == "ner":
        names.insert(0, "glove_small")  # in the grid now (grids.NER_RESCALED), still one of the scale test's runs
    command = anomaly_command(study, names)
    if study.kind == "resnet":
        return [gn_section(study, out, command), gn_batch_section(study, out, command)]
    return [glove_section(study, out, command)]
