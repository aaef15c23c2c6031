"""Scoring a tagger: token accuracy, micro/macro F1 without ``O``, entity P/R/F1, and more.

``evaluate`` runs the model over encoded sentences, batched by length, and returns:

* ``loss``: the mean per-sentence negative log likelihood;
* token ``accuracy`` over every real token, and ``micro_f1`` / ``macro_f1`` over the tag
  classes with ``O`` left out (with ``O`` in, micro F1 would equal accuracy);
* ``entity_precision`` / ``entity_recall`` / ``entity_f1``: conlleval's spans (``seqeval``'s
  default mode: a span counts when its type and both boundaries match), vectorized here
  (``entity_spans``) and checked against ``seqeval`` by the tests;
* ``type_micro_f1``: token-level micro F1 over entity types, BIO prefix stripped (the
  measure of the public NER-package benchmarks on GMB);
* ``invalid_transitions``: predicted ``I-x`` tags that continue no entity.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import torch

from normlab.data.sentence_batches import Encoded, collate
from normlab.models.tagger import BiLSTMTagger
from normlab.train.metrics import classification_metrics


def _entity_scores(gold: list[list[str]], pred: list[list[str]]) -> dict:
    from seqeval.metrics import f1_score, precision_score, recall_score

    # seqeval's default mode is conlleval's: a span counts when its type and both boundaries match.
    return {
        "entity_precision": float(precision_score(gold, pred, zero_division=0)),
        "entity_recall": float(recall_score(gold, pred, zero_division=0)),
        "entity_f1": float(f1_score(gold, pred, zero_division=0)),
    }


def entity_type(tag: str) -> str:
    """``B-geo`` / ``I-geo`` -> ``geo``; ``O`` stays ``O``."""
    return tag[2:] if tag[:2] in ("B-", "I-") else tag


def type_token_micro_f1(gold: Sequence[str], pred: Sequence[str]) -> float:
    """Token-level micro F1 over entity types, BIO prefix stripped, ``O`` left out.

    The measure of the public NER-package benchmarks on GMB: a token counts as right when
    its type is (``B-geo`` for ``I-geo`` is right). 0.0 when neither side has an entity token.
    """
    from sklearn.metrics import f1_score

    g = [entity_type(t) for t in gold]
    p = [entity_type(t) for t in pred]
    types = sorted((set(g) | set(p)) - {"O"})
    if not types:
        return 0.0
    return float(f1_score(g, p, labels=types, average="micro", zero_division=0))


def invalid_bio_transitions(sentences: Sequence[Sequence[str]]) -> int:
    """How many ``I-x`` tags follow neither ``B-x`` nor ``I-x`` (the sentence start counts as ``O``).

    Such a tag continues an entity that was never opened: a BIO-invalid output.
    """
    bad = 0
    for tags in sentences:
        prev = "O"
        for t in tags:
            if t.startswith("I-") and not (prev[:2] in ("B-", "I-") and prev[2:] == t[2:]):
                bad += 1
            prev = t
    return bad


def token_labels(tag_names: Sequence[str]) -> list[int]:
    """The tag ids scored by micro/macro F1: every tag but ``O``."""
    return [i for i, t in enumerate(tag_names) if t != "O"]


class _TagKinds:
    """Each tag id's BIO prefix (0 ``O``, 1 ``B``, 2 ``I``) and entity type id (-1 for ``O``)."""

    def __init__(self, tag_names: Sequence[str]):
        types = sorted({t[2:] for t in tag_names if t != "O"})
        self.prefix = np.array([0 if t == "O" else 1 if t.startswith("B-") else 2 for t in tag_names], dtype=np.int64)
        self.type = np.array([-1 if t == "O" else types.index(t[2:]) for t in tag_names], dtype=np.int64)

    def read(self, tags: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, ...]:
        """Prefix and type of each of the flat ``tags`` of sentences of ``lengths``, and of the tag
        before each (a sentence starts after an ``O``)."""
        prefix, typ = self.prefix[tags], self.type[tags]
        first = np.zeros(len(tags), dtype=bool)
        first[np.cumsum(lengths)[:-1]] = True
        first[:1] = True
        prev_prefix = np.where(first, 0, np.roll(prefix, 1))
        prev_type = np.where(first, -1, np.roll(typ, 1))
        return prefix, typ, prev_prefix, prev_type


def entity_spans(tags: np.ndarray, lengths: np.ndarray, kinds: _TagKinds) -> np.ndarray:
    """Entity spans of flat tag ids as int64 keys ``(start * (N + 1) + end) * types + type``: conlleval's
    (and ``seqeval``'s default mode's) reading of BIO, vectorized; ``tests/test_train_ner.py`` checks it
    against ``seqeval.metrics.sequence_labeling.get_entities``.

    An entity starts at every ``B-x``, and at an ``I-x`` after ``O``, after a sentence start or after
    another type (IOB1's reading); it runs until the next ``O`` or start.
    """
    prefix, typ, prev_prefix, prev_type = kinds.read(tags, lengths)
    start = (prefix == 1) | ((prefix == 2) & ((prev_prefix == 0) | (prev_type != typ)))
    bounds = np.append(np.flatnonzero((prefix == 0) | start), len(tags))  # where entities end (exclusive)
    starts = np.flatnonzero(start)
    ends = bounds[np.searchsorted(bounds, starts, side="right")] - 1
    n_types = max(int(kinds.type.max()) + 1, 1)
    return (starts * (len(tags) + 1) + ends) * n_types + typ[starts]


def _fast_scores(gold: np.ndarray, pred: np.ndarray, lengths: np.ndarray, tag_names: Sequence[str]) -> dict:
    """Entity P/R/F1 (as ``_entity_scores``), ``type_micro_f1`` and ``invalid_transitions`` from flat tag
    ids of sentences of ``lengths``: the same numbers, without a Python step per token."""
    kinds = _TagKinds(tag_names)
    g, p = entity_spans(gold, lengths, kinds), entity_spans(pred, lengths, kinds)
    tp = len(np.intersect1d(g, p))
    precision = tp / len(p) if len(p) else 0.0
    recall = tp / len(g) if len(g) else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    g_type, p_type = kinds.type[gold], kinds.type[pred]
    right = int(((g_type == p_type) & (g_type >= 0)).sum())
    entity_tokens = int((g_type >= 0).sum() + (p_type >= 0).sum())
    prefix, typ, prev_prefix, prev_type = kinds.read(pred, lengths)
    invalid = (prefix == 2) & ~((prev_prefix > 0) & (prev_type == typ))
    return {"entity_precision": float(precision), "entity_recall": float(recall), "entity_f1": float(f1),
            "type_micro_f1": 2 * right / entity_tokens if entity_tokens else 0.0,
            "invalid_transitions": int(invalid.sum())}


def _char_feature_table(model: BiLSTMTagger, enc: Encoded, idx: np.ndarray, device) -> tuple[torch.Tensor, np.ndarray]:
    """The character features of every distinct written word of sentences ``idx``, each computed
    once: ``(table[U + 1, 2C], row)``; ``row[s]`` is spelling ``s``'s row, the last row is zeros
    (padding). Words are run in chunks of similar length."""
    used = np.unique(np.concatenate([enc.spelling_ids[i] for i in idx]))  # shape: (U,)
    words = enc.spellings[used]  # shape: (U, L)
    lengths = (words != model.chars.pad_index).sum(axis=1)
    order = np.argsort(lengths, kind="stable")
    table = torch.zeros(len(used) + 1, model.chars.out_dim, device=device)
    for s in range(0, len(order), 4096):
        part = order[s: s + 4096]
        chunk = torch.from_numpy(words[part, : max(int(lengths[part].max()), 1)]).to(device)
        table[torch.from_numpy(part).to(device)] = model.chars.of_words(chunk)
    row = np.full(len(enc.spellings), len(used), dtype=np.int64)
    row[used] = np.arange(len(used))
    return table, row


@torch.inference_mode()
def evaluate(model: BiLSTMTagger, enc: Encoded, tag_names: Sequence[str], *, batch_size: int = 512,
             device: torch.device = torch.device("cpu"), idx: Optional[np.ndarray] = None) -> dict:
    """Loss (mean per sentence), token accuracy, micro/macro F1 without O, entity P/R/F1,
    token-level micro F1 over entity types (``type_micro_f1``) and the count of BIO-invalid
    predicted tags (``invalid_transitions``).

    Sentences are batched by length (little padding); each distinct written word's character
    features are computed once for the whole call; decoding is per batch, the masks flatten
    predictions to real tokens only.
    """
    idx = np.arange(len(enc)) if idx is None else np.asarray(idx)
    idx = idx[np.argsort(enc.lengths[idx], kind="stable")]
    was_training = model.training
    model.eval()
    with_chars = model.chars is not None
    table = None
    if with_chars and enc.spelling_ids is not None:
        table, row = _char_feature_table(model, enc, idx, device)
    total_loss, golds, preds = 0.0, [], []
    for s in range(0, len(idx), batch_size):
        ids = idx[s: s + batch_size]
        batch = collate(enc, ids, with_chars and table is None).to(device)
        feats = None
        if table is not None:
            B, T = batch.mask.shape
            rows = np.full((B, T), len(table) - 1, dtype=np.int64)
            for b, i in enumerate(ids):
                rows[b, : enc.lengths[i]] = row[enc.spelling_ids[i]]
            feats = table[torch.from_numpy(rows).to(device)]  # shape: (B, T, 2C)
        em = model.emissions(batch, char_features=feats)
        total_loss += float(model.loss(batch, emissions=em)) * batch.mask.shape[0]
        pred = model.decode(em, batch.mask)
        golds.append(batch.tags[batch.mask].cpu())
        preds.append(pred[batch.mask].cpu())
    model.train(was_training)
    gold = torch.cat(golds).numpy()
    pred = torch.cat(preds).numpy()
    out = classification_metrics(gold, pred, labels=token_labels(tag_names))
    out.update(_fast_scores(gold, pred, enc.lengths[idx], tag_names))
    out["loss"] = total_loss / len(idx)
    return out
