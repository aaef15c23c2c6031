"""The NER study's questions and their answers, each computed from the run directories.

One section per question of the study (SPEC §2):

- pretrained against random embeddings (``glove`` vs ``random50``, the same 50-d; ``random`` is 100-d),
- character features (``glove_char`` vs ``glove``),
- layer norm in the LSTM (``glove_char_ln`` vs ``glove_char``, ``crf_ln`` vs ``crf``),
- CRF against softmax (``crf`` vs ``glove_char``, ``crf_ln`` vs ``glove_char_ln``),
- the CRF's initialization (``crf`` vs ``crf_free``, and the invalid BIO transitions in the test
  predictions of ``crf``, ``crf_free`` and the softmax tagger ``glove_char``).

Every comparison is on the test split's entity F1 (conlleval, via seqeval) with the
token-level micro F1 over entity types (BIO prefix stripped, O left out; the measure
of public NER benchmarks) beside it. The wording is in pure functions of numbers
(``ner_pair_sentences``, ``invalid_transition_sentences``), tested in
``tests/test_report_answers.py``. Older run directories without ``type_micro_f1`` or
``invalid_transitions`` show "n/a".

Where the study's grid has the rescaled-GloVe variants (``grids.NER_RESCALED``: ``glove_small``,
``crf_small``, ...), each question is answered on that setup first, then on GloVe as published.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np

from normlab.report.common import Measured, Section, Verdict
from normlab.report.stats import Estimate, Spread, difference, difference_sentence, pooled_spread
from normlab.report.training import Matched, matched, stop_text
from normlab.report.load import StudyData
from normlab.report.plots import plot_bars
from normlab.report.render import fmt_ints
from normlab.study.grids import GLOVE_6B_50D_STD, NER_RESCALED, RANDOM_50D_STD

ENTITY = "entity F1"
TYPE = "type-token micro F1"
SOFTMAX_TAGGER = "glove_char"  # the softmax tagger with the same inputs as `crf`

PRETRAINED_TITLE = "Pretrained against random embeddings: does GloVe help?"
CHARS_TITLE = "Characters: do character features help?"
LN_TITLE = "Layer norm: does a layer-normalized LSTM help?"
CRF_TITLE = "CRF against softmax: does the CRF layer help?"
INIT_TITLE = "CRF initialization: which one, why, and what does it change?"

# (title, pairs (a, b) compared as "a against b", variants drawn, note)
QUESTIONS = [
    (PRETRAINED_TITLE, [("glove", "random50"), ("glove", "random")], ["random", "random50", "glove"],
     "`random50` has random 50-d word vectors, the dimension of the GloVe 6B vectors used here, so `glove` against "
     "`random50` changes one thing only; `random` is the study's random 100-d run."),
    (CHARS_TITLE, [("glove_char", "glove")], ["glove", "glove_char"],
     "Both use GloVe word vectors; `glove_char` adds the character BiLSTM of Lample et al. (§4.1)."),
    (LN_TITLE, [("glove_char_ln", "glove_char"), ("crf_ln", "crf")], ["glove_char", "glove_char_ln", "crf", "crf_ln"],
     "The layer-normalized LSTM cell normalizes the input and recurrent pre-activations of its gates and its cell "
     "state (Ba et al. 2016); "
     "everything else is the same."),
    (CRF_TITLE, [("crf", "glove_char"), ("crf_ln", "glove_char_ln")], ["glove_char", "crf", "glove_char_ln", "crf_ln"],
     "Same BiLSTM and inputs; the CRF scores whole tag sequences (Lample et al. eq. 1) and decodes with Viterbi, "
     "the softmax tagger picks each tag on its own."),
]


# ----------------------------------------------------------------------------- pure wording


def ner_pair_sentences(a_entity: Measured, b_entity: Measured, a_type: Measured, b_type: Measured,
                       spread_entity: Optional[Spread] = None, spread_type: Optional[Spread] = None,
                       split: str = "test", where: str = "") -> Verdict:
    """'`a` against `b` on test entity F1: ..., a difference of ..., 95% interval ...: ...' and the same for
    type-token micro F1. ``where`` qualifies the checkpoint (", best checkpoint up to update 2,700")."""
    v = Verdict([difference_sentence(a_entity, b_entity, f"{split} {ENTITY}{where}", spread_entity)])
    if not (a_entity.values and b_entity.values):
        return v
    if a_type.values and b_type.values:
        same = spread_type == spread_entity and a_type.n == a_entity.n and b_type.n == b_entity.n
        v.answer.append(difference_sentence(a_type, b_type, f"{split} {TYPE}{where}", spread_type,
                                            noise=not same))
    else:
        v.answer.append(f"{split.capitalize()} {TYPE}: n/a (not recorded by these runs).")
    return v


def pair_verdict(a: str, b: str, test: dict[str, Measured], m: Optional[Matched], spreads: dict) -> Verdict:
    """The answer for ``a`` against ``b``: on test numbers when they compare equal training (``m.equal``,
    or no evaluations to match), else on validation at matched updates with the test numbers for reference.

    ``test``: ``{"a_entity", "b_entity", "a_type", "b_type"}``; ``spreads``: the study's spreads keyed
    ``("test"|"val", "entity_f1"|"type_micro_f1")``."""
    sp = lambda split, key: spreads.get((split, key))
    if m is None or m.equal:
        v = ner_pair_sentences(test["a_entity"], test["b_entity"], test["a_type"], test["b_type"],
                               sp("test", "entity_f1"), sp("test", "type_micro_f1"))
        if m is not None:
            v.answer.append(m.statement([a, b]))
        return v
    where = f", best checkpoint up to {m.unit(m.limit)}"
    v = ner_pair_sentences(m.val[a], m.val[b], m.other.get(a, Measured(a)), m.other.get(b, Measured(b)),
                           sp("val", "entity_f1"), sp("val", "type_micro_f1"), split="validation", where=where)
    v.answer.append(m.statement([a, b]))
    ref = ner_pair_sentences(test["a_entity"], test["b_entity"], test["a_type"], test["b_type"],
                             sp("test", "entity_f1"), sp("test", "type_micro_f1"),
                             where=", each run's own best checkpoint")
    v.answer.append("For reference: " + ref.answer[0])
    return v


def _count(x: Optional[float]) -> str:
    if x is None:
        return "n/a"
    return f"{int(x)}" if float(x).is_integer() else f"{x:.1f}"


def invalid_transition_sentences(counts: dict[str, Optional[float]], constrained: str = "crf",
                                 free: str = "crf_free", softmax: str = SOFTMAX_TAGGER) -> list[str]:
    """What the invalid BIO transitions (an I-x tag not after B-x or I-x) in the test predictions say.

    ``counts[name]``: the count (mean over seeds), None when the runs did not record it or are missing."""
    c, f, s = counts.get(constrained), counts.get(free), counts.get(softmax)
    out = [f"Invalid BIO transitions in the test predictions: `{constrained}` {_count(c)}, `{free}` {_count(f)}, "
           f"the softmax tagger `{softmax}` {_count(s)}."]
    if c is not None:
        out.append(f"With the constraints, `{constrained}` outputs no invalid transition, as it must." if c == 0 else
                   f"`{constrained}` outputs {_count(c)} invalid transitions although its constraints should make "
                   f"that impossible: check its `crf_constraints` setting.")
    if f is not None and s is not None:
        if f < s:
            out.append(f"Unconstrained, the CRF learnt much of the constraint from the data: `{free}` has fewer "
                       f"invalid transitions than `{softmax}` ({_count(f)} against {_count(s)})." if f > 0 else
                       f"Unconstrained, `{free}` learnt the constraint from the data: no invalid transition, against "
                       f"{_count(s)} for `{softmax}`.")
        elif f == s:
            out.append(f"Unconstrained, `{free}` makes as many invalid transitions as `{softmax}` ({_count(f)}).")
        else:
            out.append(f"Unconstrained, `{free}` makes more invalid transitions than `{softmax}` "
                       f"({_count(f)} against {_count(s)}).")
    return out


def crf_init_statement(impossible: float, constrained_names: list[str], free_names: list[str]) -> list[str]:
    """The chosen initialization and why (from ``normlab.models.crf``), naming the runs that use each."""
    runs = ", ".join(f"`{n}`" for n in constrained_names) or "the constrained CRF runs"
    out = [f"Chosen initialization ({runs}): every allowed transition score, and the start and end scores, start "
           f"at 0; the transitions BIO forbids (O → I-x, start → I-x, and B-x or I-x → I-y with y ≠ x) are fixed "
           f"at {impossible:g} by a non-trainable mask added to the trainable scores, so training cannot "
           f"re-enable them.",
           "Why: with these scores the CRF can only output valid BIO paths (Viterbi never takes a "
           f"{impossible:g} step), and with the allowed transitions at 0 it starts as a per-token softmax over the "
           "BiLSTM's scores, growing transition preferences only as the data supports them; no random noise is "
           "needed, since the loss is convex in the transition scores."]
    if free_names:
        one = len(free_names) == 1
        out.append(", ".join(f"`{n}`" for n in free_names)
                   + (" starts every transition at 0 with no mask: it must " if one else
                      " start every transition at 0 with no mask: they must ")
                   + f"learn the BIO constraint from the data, and nothing stops {'it' if one else 'them'} from "
                     "outputting an I-x after O.")
    return out


# ----------------------------------------------------------------------------- sections


def _m(study: StudyData, name: str, key: str, split: str = "test") -> Measured:
    return Measured.of(name, study.values(name, split, key))


def _pct(study: StudyData, name: str, key: str) -> str:
    return _m(study, name, key).short()


def metrics_table(study: StudyData, names: list[str], extra: bool = False):
    header = ["variant", "seeds", "test acc", "test micro F1", "test macro F1", "entity P", "entity R",
              f"test {ENTITY}", f"test {TYPE}", "best step", "stopped"]
    rows = []
    for n in names:
        v = study.get(n)
        if v is None or not v.available:
            rows.append([n, "0", v.missing_reason() if v else "not in this study"] + ["–"] * (len(header) - 3))
            continue
        rows.append([n, str(len(v.finished))] + [_pct(study, n, k) for k in (
            "accuracy", "micro_f1", "macro_f1", "entity_precision", "entity_recall", "entity_f1", "type_micro_f1")]
            + [fmt_ints(v.summary_values("best_step")), ", ".join(stop_text(r, "step") for r in v.finished)])
    return header, rows


def _bars(study: StudyData, names: list[str], path: Path, title: str, labels: Optional[list[str]] = None) -> Path:
    series = {f"test {ENTITY}": [[x * 100 for x in study.values(n, "test", "entity_f1")] for n in names],
              f"test {TYPE}": [[x * 100 for x in study.values(n, "test", "type_micro_f1")] for n in names]}
    return plot_bars(path, labels or names, series, ylabel="%", title=title)


def study_spreads(study: StudyData) -> dict:
    """The study's measured seed spreads of entity F1 and type-token micro F1, on test and validation."""
    return {(split, key): pooled_spread([_m(study, v.name, key, split) for v in study.variants])
            for split in ("test", "val") for key in ("entity_f1", "type_micro_f1")}


def compare_pair(study: StudyData, a: str, b: str, spreads: Optional[dict] = None) -> Verdict:
    """``pair_verdict`` of two variants of the study, matched on validation entity F1 over updates."""
    test = {"a_entity": _m(study, a, "entity_f1"), "b_entity": _m(study, b, "entity_f1"),
            "a_type": _m(study, a, "type_micro_f1"), "b_type": _m(study, b, "type_micro_f1")}
    m = matched(study, [a, b], "val_entity_f1", "val_type_micro_f1", x="step")
    return pair_verdict(a, b, test, m, study_spreads(study) if spreads is None else spreads)


def pair_estimate(study: StudyData, a: str, b: str) -> tuple[Optional[Estimate], str]:
    """The entity-F1 difference ``a`` - ``b`` an answer rests on, and what it is: test numbers when they
    compare equal training, else validation at the best checkpoint up to the last common update."""
    spreads = study_spreads(study)
    m = matched(study, [a, b], "val_entity_f1", x="step")
    if m is None or m.equal:
        return difference(_m(study, a, "entity_f1"), _m(study, b, "entity_f1"), spreads[("test", "entity_f1")]), \
            f"test {ENTITY}"
    return difference(m.val[a], m.val[b], spreads[("val", "entity_f1")]), \
        f"validation {ENTITY} at {m.unit(m.limit)} (unequal stops)"


def rescaled(name: str) -> str:
    """The rescaled-GloVe variant of ``name`` (itself when it has no GloVe)."""
    return NER_RESCALED.get(name, name)


def has_rescaled(study: StudyData) -> bool:
    """Whether the study's grid has every rescaled-GloVe variant (older studies have none)."""
    return all(study.get(n) is not None for n in NER_RESCALED.values())


_RESCALED = (f"GloVe rescaled to the random initialization's spread (std {RANDOM_50D_STD:g}; the `_small` "
             "variants), the fix that \"Why does GloVe not help here?\" tests")
RESCALED_NOTE = f"Two setups: {_RESCALED}, first; then GloVe as published (std {GLOVE_6B_50D_STD:g})."
RESCALED_LATER_NOTE = (f"Two setups: GloVe as published (std {GLOVE_6B_50D_STD:g}) first, while a rescaled run of "
                       f"this question is missing; then {_RESCALED}.")


def rescaled_first(study: StudyData, names: list[str]) -> Optional[bool]:
    """Whether a question on ``names`` leads with the rescaled setup (each of their rescaled variants has a
    finished run); None when the study's grid has no rescaled setup."""
    if not has_rescaled(study):
        return None
    return all(study.get(rescaled(n)).available for n in names)


def setup_note(first: Optional[bool]) -> list[str]:
    return [] if first is None else [RESCALED_NOTE if first else RESCALED_LATER_NOTE]


def with_rescaled(study: StudyData, pairs: list, names: list[str]) -> tuple[list, list[str], list[str]]:
    """The pairs and variants of a question on both setups, and the notes that say so: the rescaled setup
    first once each of its variants has a finished run (until then, GloVe as published)."""
    first = rescaled_first(study, [n for pair in pairs for n in pair])
    if first is None:
        return pairs, names, []
    fixed = [(rescaled(a), rescaled(b)) for a, b in pairs]
    return (fixed + pairs if first else pairs + fixed), list(dict.fromkeys(names + [rescaled(n) for n in names])), \
        setup_note(first)


def pair_section(study: StudyData, out: Path, i: int, title: str, pairs, names, note) -> Section:
    pairs, names, setup = with_rescaled(study, pairs, names)
    fig = _bars(study, names, out / f"report-ner-{i + 1}.png", title.split(":")[0] + ": test entity F1 and "
                                                                                     "type-token micro F1")
    v = Verdict()
    spreads = study_spreads(study)
    for i, (a, b) in enumerate(pairs):  # the first pair is the answer; each further pair one point below it
        part = compare_pair(study, a, b, spreads)
        if i == 0:
            v.answer += part.answer
        else:
            v.points.append(" ".join(part.answer))
        v.caveats += part.caveats
    miss = study.missing_sentence(names)
    if miss:
        v.caveats.insert(0, miss)
    return Section(title, (fig, "test entity F1 (conlleval) and type-token micro F1 per variant: bars are means "
                                "over seeds"), [metrics_table(study, names)], v, [note] + setup)


def _constraints(study: StudyData, name: str) -> Optional[bool]:
    v = study.get(name)
    if v is None:
        return None
    for r in v.runs:
        c = (r.config.get("config") or {}).get("crf_constraints")
        if c is not None and (r.config.get("config") or {}).get("crf"):
            return bool(c)
    return v.settings.get("crf_constraints", True) if v.settings.get("crf") else None


def _mean_or_none(vals: list[float]) -> Optional[float]:
    return float(np.mean(vals)) if vals else None


def init_section(study: StudyData, out: Path) -> Section:
    from normlab.models.crf import IMPOSSIBLE

    setups = [("crf", "crf_free", SOFTMAX_TAGGER)]
    first = rescaled_first(study, list(setups[0]))
    if first is not None:
        setups.insert(0 if first else 1, tuple(rescaled(n) for n in setups[0]))
    names = [n for trio in setups for n in trio]
    counts = {n: _mean_or_none(study.values(n, "test", "invalid_transitions")) for n in names}
    labels = [f"{n}\n({_count(counts[n])} invalid)" for n in names]
    fig = _bars(study, names, out / "report-ner-crf-init.png",
                "CRF initialization: test entity F1 and type-token micro F1", labels)
    rows = []
    for n in names:
        v = study.get(n)
        c = _constraints(study, n)
        head = "CRF" if (v and v.settings.get("crf")) else "softmax"
        rows.append([n, head, "–" if c is None else ("yes" if c else "no"), _count(counts[n]),
                     _count(_mean_or_none(study.values(n, "val", "invalid_transitions"))),
                     _pct(study, n, "entity_f1"), _pct(study, n, "type_micro_f1")])
    said = [invalid_transition_sentences(counts, *trio) for trio in setups]
    v = Verdict([x[0] for x in said])  # the counts; what they mean follows the answer, before the initialization
    for constrained, free, _ in setups:  # one point per setup: does the constraint cost entity F1?
        part = compare_pair(study, constrained, free)
        v.points.append(" ".join(part.answer))
        v.caveats += part.caveats
    miss = study.missing_sentence(names)
    if miss:
        v.caveats.insert(0, miss)
    constrained = [x.name for x in study.variants if _constraints(study, x.name) is True]
    free = [x.name for x in study.variants if _constraints(study, x.name) is False]
    notes = [x for trio in said for x in trio[1:]] + crf_init_statement(IMPOSSIBLE, constrained, free)
    notes += setup_note(first)
    return Section(INIT_TITLE, (fig, "test entity F1 and type-token micro F1 of the constrained CRF, the "
                                     "unconstrained CRF and the softmax tagger; invalid BIO transitions in their "
                                     "test predictions under each name"),
                   [(["variant", "output layer", "BIO constraints", "test invalid transitions",
                      "val invalid transitions", f"test {ENTITY}", f"test {TYPE}"], rows),
                    metrics_table(study, names)], v, notes)


def ner_sections(study: StudyData, out: Path) -> list[Section]:
    secs = [pair_section(study, out, i, *q) for i, q in enumerate(QUESTIONS)]
    secs.append(init_section(study, out))
    return secs


# ----------------------------------------------------------------------------- appendix prose


def ner_curve_sentences(study: StudyData, names: list[str]) -> list[str]:
    best = {}
    for n in names:
        v = study.get(n)
        xs, ys = v.curve("val_micro_f1", "step")
        if len(xs):
            i = int(np.argmax(ys))
            best[n] = (ys[i], xs[i], xs[-1])
    if not best:
        return ["No variant has logged any validation metrics yet."]
    out = ["Best validation micro F1 and the update it was reached at: " + "; ".join(
        f"`{n}` {b[0] * 100:.2f}% at update {b[1]:g} of {b[2]:g}" for n, b in best.items()) + "."]
    gaps = {}
    for n in best:
        v = study.get(n)
        tr, va = v.mean("train", "micro_f1"), v.mean("val", "micro_f1")
        if tr is not None and va is not None:
            gaps[n] = (tr - va) * 100
    if gaps:
        g = max(gaps, key=gaps.get)
        out.append(f"Largest train–val micro F1 gap at the best checkpoint: `{g}` ({gaps[g]:.2f} points).")
    return out


def embeddings_table(study: StudyData) -> tuple[list[str], list[list[str]]]:
    from normlab.report.render import shown_path

    header = ["run", "source", "file", "dimension", "share of vocabulary found", "words found"]
    rows = []
    for r in study.runs:
        if not r.config:
            continue
        e = (r.config.get("data") or {}).get("embeddings") or {}
        share = e.get("share_found")
        f = e.get("file") or e.get("path")
        rows.append([f"{r.variant}/seed{r.seed}", str(e.get("source", "–")), shown_path(f) if f else "–",
                     str(e.get("dim", "–")), f"{float(share) * 100:.2f}%" if share is not None else "–",
                     f"{e['found']} of {e['total']}" if "found" in e and "total" in e else "–"])
    return header, rows
