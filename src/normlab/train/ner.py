"""Training and tagging with the BiLSTM(-CRF) NER tagger: ``fit(NERConfig) -> summary``.

One run writes a run directory (see ``normlab.train.rundir``)::

    config.json    {"kind": "ner", "config": every setting, "env": ..., "data": files,
                    split sizes, split seed, embeddings (source, dim, share of words found)}
    metrics.jsonl  an entry every ``eval_every`` updates and at the end of every epoch
    best.pt        the checkpoint with the best validation entity F1
    last.pt        the checkpoint to resume from (written at every evaluation)
    vocab.json     word/char/tag vocabularies and the model settings (JSON, no pickle)
    train.log      the fixed-column table printed during training
    curves.png     accuracy, micro F1 and macro F1 against updates, train and val
    summary.json   metrics of the best checkpoint on train/val/test (written last)

Choices (see docs/ner.md for the reasons):

* Loss: the sentence's negative log likelihood, averaged over the sentences of
  a batch (``BiLSTMTagger.loss``).
* SGD, lr 0.01, momentum 0.9, gradient-norm clipping at 5; the learning rate
  decays per epoch as ``lr / (1 + 0.05 * epoch)`` (Ma & Hovy 2016).
* Model selection and early stopping on validation entity F1 (conlleval
  semantics, ``seqeval``'s default mode); ``patience`` counts epochs without a
  new best.
* Token metrics: accuracy over every real token; micro and macro F1 over the
  tag classes with ``O`` left out (with ``O`` in, micro F1 would equal accuracy).
  Train metrics during training come from a fixed seeded subsample of the
  training set (``train_eval_size`` sentences); summary.json uses all of it.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Literal, Optional, Sequence, get_args, get_origin, get_type_hints

import numpy as np
import torch
from torch import nn

from normlab import files
from normlab.config import dataclass_from_dict, flag
from normlab.data.archives import split_member
from normlab.data.gmb import Sentence, Vocab, build_vocabs, load_splits, normalize_word
from normlab.models.tagger import BiLSTMTagger, TaggerBatch
from normlab.train import rundir
from normlab.train.metrics import classification_metrics

VOCAB = "vocab.json"

Status = Literal["finished", "early_stopped", "diverged"]
LossReduction = Literal["sum", "mean"]


# On a GPU the training loss is checked for divergence every this many updates (a host sync each).
CHECK_EVERY_GPU = 25


@dataclass
class NERConfig:
    """Every setting of one NER run (saved whole in config.json and each checkpoint)."""

    data: list[str] = field(default_factory=list)  # 1 GMB file (split 60/20/20) or 3 (train, val, test)
    out: str = "runs/ner"
    embeddings: Optional[str] = None  # None: random 100-d; "glove-6b-50d" or a GloVe .txt/.txt.gz/.zip
    char: bool = False  # character BiLSTM features (Lample et al. §4.1)
    layer_norm: bool = False  # our LayerNorm LSTM for the word BiLSTM (Ba et al. 2016)
    crf: bool = False  # CRF head instead of per-token softmax
    crf_constraints: bool = True  # forbid BIO-invalid transitions (O->I-x, start->I-x, B-x->I-y)
    word_dim: int = 100  # random embeddings only; pretrained ones bring their own dimension
    # Rescale the initial word vectors (pretrained or random) to this element standard deviation over
    # every row but <pad>; None keeps them as they come (GloVe 6B 50-d: 0.644; random: 1/sqrt(D)).
    embedding_std: Optional[float] = None
    hidden: int = 100  # word BiLSTM units each way (the study's 100)
    char_dim: int = 25
    char_hidden: int = 25
    dropout: float = 0.5
    epochs: int = 50  # an upper bound: "train till learning saturates" is early stopping's job
    patience: int = 5  # epochs without a new best validation entity F1 before stopping; 0: never stop early
    # A plateau: an epoch counts as improving only when its best validation entity F1 beats that of
    # the last improving epoch by more than this (a fraction: 0.002 = 0.2 points). 0: any new best.
    # best.pt still follows every new best; min_delta only decides when training stops.
    min_delta: float = 0.0
    batch_size: int = 128
    optimizer: Literal["sgd"] = "sgd"
    lr: float = 0.01
    # Plain SGD on the *summed* batch loss (``loss_reduction``), as Lample et al.'s per-sentence
    # SGD at lr 0.01: each sentence's gradient enters a step at full weight (docs/ner.md).
    momentum: float = 0.0
    loss_reduction: LossReduction = "sum"  # "mean" divides the step by the batch size
    # Singleton replacement (Lample et al. 2016, §4.3): a training word seen once is fed as
    # <unk> with this probability, so that <unk> is trained for the words it stands for at test time.
    unk_replace: float = 0.5
    lr_decay: float = 0.05  # lr_epoch = lr / (1 + lr_decay * epoch); 0 keeps it constant
    clip: float = 5.0  # gradient norm clipping, per sentence (see ``clip_threshold``)
    eval_every: int = 100  # updates between evaluations (also one at each epoch's end); 0: epoch ends only
    train_eval_size: int = 2000  # training sentences (fixed seeded subsample) evaluated during training
    eval_batch_size: int = 512
    bucket: bool = True  # batches of similar lengths (less padding; still shuffled)
    # use only N training sentences, drawn at random with split_seed (the same N for every seed)
    limit_train: Optional[int] = None
    limit_eval: Optional[int] = None  # use only the first N val and N test sentences (quick looks, tests)
    split_seed: int = 0  # the 60/20/20 split: the same for every run of a study, whatever ``seed``
    seed: int = 0
    device: str = "auto"
    resume: bool = False

    def __post_init__(self) -> None:
        self._validate()

    def _validate(self) -> None:
        """Refuse bad settings by the flag that sets them (``--lr-decay``), nan and inf included.

        The data files are looked for when the run starts (``check_data_files``): a config
        read back from a run folder is valid wherever its files are.
        """
        if isinstance(self.data, (str, Path)):
            self.data = [str(self.data)]
        self.data = [str(p) for p in self.data]
        if len(self.data) not in (1, 3):
            raise ValueError(f"expected --data to be 1 GMB file or 3 (train, val, test), got {len(self.data)}: {self.data}")
        hints = get_type_hints(type(self))
        for name, hint in hints.items():
            if get_origin(hint) is not Literal:
                continue
            allowed = get_args(hint)
            if getattr(self, name) not in allowed:
                raise ValueError(f"expected {name} in {allowed}, got {getattr(self, name)!r}")

        def integer(name: str, low: int, allow_none: bool = False, why: str = "") -> None:
            v = getattr(self, name)
            if v is None and allow_none:
                return
            if not isinstance(v, int) or isinstance(v, bool) or v < low:
                raise ValueError(f"expected {flag(name)} to be an integer >= {low}{why}, got {v!r}")

        def number(name: str, low: float, high: float = math.inf, strict_low: bool = False,
                   strict_high: bool = True) -> None:
            v = getattr(self, name)
            ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
            ok = ok and (v > low if strict_low else v >= low) and (v < high if strict_high else v <= high)
            if not ok:
                where = (f"in {'(' if strict_low else '['}{low:g}, {high:g}{')' if strict_high else ']'}"
                         if math.isfinite(high) else f"{'>' if strict_low else '>='} {low:g}")
                raise ValueError(f"expected {flag(name)} to be a finite number {where}, got {v!r}")

        for name in ("word_dim", "hidden", "char_dim", "char_hidden", "epochs", "batch_size", "train_eval_size",
                     "eval_batch_size"):
            integer(name, 1)
        integer("patience", 0, why=" (0: never stop early)")
        number("min_delta", 0.0, 1.0)
        integer("eval_every", 0, why=" (0: once per epoch)")
        integer("limit_train", 1, allow_none=True)
        integer("limit_eval", 1, allow_none=True)
        integer("split_seed", 0)
        integer("seed", 0)
        number("dropout", 0.0, 1.0)
        number("lr", 0.0, strict_low=True)
        number("momentum", 0.0, 1.0)
        number("unk_replace", 0.0, 1.0, strict_high=False)
        number("lr_decay", 0.0)
        number("clip", 0.0, strict_low=True)
        if self.embedding_std is not None:
            number("embedding_std", 0.0, strict_low=True)
        if self.embeddings is not None and not str(self.embeddings):
            raise ValueError("expected --embeddings to be 'glove-6b-50d' or a path, got ''")
        if not isinstance(self.device, str) or not self.device:
            raise ValueError(f"expected --device to be auto, cpu, cuda, cuda:N or mps, got {self.device!r}")

    @classmethod
    def from_dict(cls, d: dict) -> "NERConfig":
        return dataclass_from_dict(cls, d)

    def check_data_files(self) -> None:
        """Refuse ``data`` files that are missing or folders (``x.zip:member``: the zip)."""
        for p in self.data:
            file, _ = split_member(p)
            if file.is_dir():
                raise ValueError(f"--data {p}: expected a GMB data file, got a folder")
            if not file.is_file():
                raise FileNotFoundError(f"expected a GMB data file, got {p!r}: no such file")


def clip_threshold(cfg: NERConfig, batch_sentences: int) -> float:
    """The gradient-norm clip of one update of ``batch_sentences`` sentences.

    Lample et al. clip each sentence's gradient at 5 and step with lr 0.01 per sentence.
    With the summed loss a batch's gradient is the sum of its sentences' gradients, so the
    matching cap is ``clip`` per sentence: ``clip * batch_sentences`` (a cap of 5 on the whole
    sum would shrink the step of every batch of 128 to at most that of one sentence). With
    ``loss_reduction="mean"`` the gradient is the mean, and ``clip`` applies as it is.
    """
    return cfg.clip * batch_sentences if cfg.loss_reduction == "sum" else cfg.clip


# ---------------------------------------------------------------------------
# Encoding sentences and batching


@dataclass
class Encoded:
    """Sentences as id arrays, encoded once (no per-epoch string work)."""

    words: list[np.ndarray]  # each (n,) int64
    chars: list[np.ndarray]  # each (n, L_s) int64, 0-padded
    tags: list[np.ndarray]  # each (n,) int64 (empty arrays when untagged)
    lengths: np.ndarray  # (S,)
    # Each distinct written word once: its char ids (U, L), 0-padded, and per sentence the
    # row of each of its words ((n,) int64). Evaluation runs the character BiLSTM on these.
    spellings: Optional[np.ndarray] = None
    spelling_ids: Optional[list[np.ndarray]] = None

    def __len__(self) -> int:
        return len(self.words)


def encode(sentences: Sequence[Sequence[str]], vocabs: dict[str, Vocab],
           tags: Optional[Sequence[Sequence[str]]] = None) -> Encoded:
    """Word ids (``normalize_word`` forms), char ids (original characters), tag ids."""
    wv, cv, tv = vocabs["words"], vocabs["chars"], vocabs["tags"]
    pad = cv.pad_index if cv.pad_index is not None else 0
    words, chars, tag_ids, spelling_ids = [], [], [], []
    spelled: dict[str, int] = {}  # written word -> its row in spellings
    for i, sent in enumerate(sentences):
        if len(sent) == 0:
            raise ValueError(f"expected sentences of at least one word, got an empty sentence at index {i}")
        words.append(np.array([wv.index(normalize_word(w)) for w in sent], dtype=np.int64))
        L = max(len(w) for w in sent)
        c = np.full((len(sent), max(L, 1)), pad, dtype=np.int64)
        for j, w in enumerate(sent):
            c[j, : len(w)] = cv.encode(w)
        chars.append(c)
        spelling_ids.append(np.array([spelled.setdefault(w, len(spelled)) for w in sent], dtype=np.int64))
        tag_ids.append(np.array(tv.encode(tags[i]) if tags is not None else [], dtype=np.int64))
    spellings = np.full((len(spelled), max((len(w) for w in spelled), default=1) or 1), pad, dtype=np.int64)
    for w, r in spelled.items():
        spellings[r, : len(w)] = cv.encode(w)
    return Encoded(words, chars, tag_ids, np.array([len(w) for w in words], dtype=np.int64), spellings, spelling_ids)


def encode_sentences(sentences: Sequence[Sentence], vocabs: dict[str, Vocab]) -> Encoded:
    return encode([s.words for s in sentences], vocabs, [s.tags for s in sentences])


def collate(enc: Encoded, idx: Sequence[int], with_chars: bool) -> TaggerBatch:
    """A right-padded ``TaggerBatch`` of the sentences ``idx`` of ``enc``."""
    idx = list(idx)
    lengths = enc.lengths[idx]
    B, T = len(idx), int(lengths.max())
    words = np.zeros((B, T), dtype=np.int64)
    tags = np.zeros((B, T), dtype=np.int64)
    has_tags = all(len(enc.tags[i]) for i in idx)
    chars = None
    if with_chars:
        L = max(enc.chars[i].shape[1] for i in idx)
        chars = np.zeros((B, T, L), dtype=np.int64)
    for b, i in enumerate(idx):
        n = lengths[b]
        words[b, :n] = enc.words[i]
        if has_tags:
            tags[b, :n] = enc.tags[i]
        if with_chars:
            c = enc.chars[i]
            chars[b, :n, : c.shape[1]] = c
    mask = torch.arange(T)[None, :] < torch.from_numpy(lengths)[:, None]  # shape: (B, T)
    return TaggerBatch(
        words=torch.from_numpy(words),
        mask=mask,
        chars=torch.from_numpy(chars) if with_chars else None,
        tags=torch.from_numpy(tags) if has_tags else None,
    )


def epoch_batches(lengths: np.ndarray, batch_size: int, seed: int, epoch: int, bucket: bool) -> list[np.ndarray]:
    """The batches of one epoch: a permutation seeded by (seed, epoch), so a resumed run sees the same order.

    With ``bucket``, each chunk of 32 batches is sorted by length before it is
    cut into batches (little padding), and the batches are then shuffled.
    """
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(len(lengths))
    if not bucket:
        return [order[i: i + batch_size] for i in range(0, len(order), batch_size)]
    chunk = batch_size * 32
    batches = []
    for s in range(0, len(order), chunk):
        part = order[s: s + chunk]
        part = part[np.argsort(lengths[part], kind="stable")]
        batches += [part[i: i + batch_size] for i in range(0, len(part), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


# ---------------------------------------------------------------------------
# Evaluation


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


# ---------------------------------------------------------------------------
# Model building and loading


def model_settings(cfg: NERConfig, vocabs: dict[str, Vocab], word_dim: int) -> dict:
    """The keyword arguments of ``BiLSTMTagger`` (saved in vocab.json to rebuild the model)."""
    return {
        "num_words": len(vocabs["words"]),
        "num_tags": len(vocabs["tags"]),
        "num_chars": len(vocabs["chars"]) if cfg.char else 0,
        "word_dim": word_dim,
        "hidden": cfg.hidden,
        "char_dim": cfg.char_dim,
        "char_hidden": cfg.char_hidden,
        "dropout": cfg.dropout,
        "layer_norm": cfg.layer_norm,
        "crf": cfg.crf,
        "tag_names": list(vocabs["tags"].itos),
        "crf_constraints": cfg.crf_constraints,
    }


@dataclass
class TaggerBundle:
    """What ``tag`` needs: the model (in eval mode), its vocabularies, its device."""

    model: BiLSTMTagger
    vocabs: dict[str, Vocab]
    device: torch.device


def load_tagger(run_dir: str | Path, device: str = "cpu", checkpoint: str = files.BEST) -> TaggerBundle:
    """Load a trained tagger from a run directory without running code from it.

    Settings and vocabularies come from ``vocab.json`` (JSON), weights from
    ``best.pt`` via ``torch.load(weights_only=True)``.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"expected a run directory of `normlab ner train`, got {str(run_dir)!r}: no such directory")
    vocab_path, ckpt_path = run_dir / VOCAB, run_dir / checkpoint
    for p in (vocab_path, ckpt_path):
        if not p.is_file():
            raise ValueError(f"expected a run directory of `normlab ner train` holding {VOCAB} and {checkpoint}, "
                             f"got {str(run_dir)!r} without {p.name}")
    meta = files.read_json(vocab_path)
    if not isinstance(meta, dict) or meta.get("kind") != "ner" or "model" not in meta:
        raise ValueError(f"{vocab_path}: expected a normlab NER vocabulary file, got something else")
    try:
        vocabs = {k: Vocab.from_json(meta.get(k)) for k in ("words", "chars", "tags")}
        model = BiLSTMTagger(**meta["model"])
    except (ValueError, TypeError) as e:
        raise ValueError(f"{vocab_path}: expected a normlab NER vocabulary file, got a damaged one ({e})") from None
    _check_vocabularies(vocabs, meta["model"], vocab_path, run_dir / files.CONFIG)
    dev = rundir.select_device(device)
    state = rundir.load_checkpoint(ckpt_path, map_location=dev)
    rundir.load_weights(model, state, ckpt_path, str(vocab_path))
    model.to(dev).eval()
    return TaggerBundle(model, vocabs, dev)


def _check_vocabularies(vocabs: dict[str, Vocab], model: dict, vocab_path: Path, config_path: Path) -> None:
    """Refuse a ``vocab.json`` whose vocabularies do not fit the model it describes (an edited file).

    The weights only check the sizes in ``model``; a tag list that is empty, reordered or of
    another length would tag every word wrongly (or fail deep inside), so it is compared
    with the model's own tag names, and with the run's ``config.json`` where there is one.
    """
    def refuse(why: str) -> None:
        raise ValueError(f"{vocab_path}: refused: {why}; it was edited or comes from another run: "
                         f"use the vocab.json written with this best.pt")

    tags = vocabs["tags"].itos
    if not tags:
        refuse("expected a tag list, got an empty one")
    bad = [t for t in tags if not (t == "O" or t[:2] in ("B-", "I-") and len(t) > 2)]
    if bad:
        refuse(f"expected BIO tags (O, B-type or I-type), got {bad[0]!r}")
    for key, name in (("num_tags", "tags"), ("num_words", "words")):
        if model.get(key) != len(vocabs[name]):
            refuse(f"its {len(vocabs[name])} {name} do not match the model's {key} {model.get(key)}")
    if model.get("num_chars") and model["num_chars"] != len(vocabs["chars"]):
        refuse(f"its {len(vocabs['chars'])} chars do not match the model's num_chars {model['num_chars']}")
    if model.get("tag_names") is not None and list(model["tag_names"]) != tags:
        refuse(f"its tags {tags[:4]}... are not the model's tag_names {list(model['tag_names'])[:4]}... "
               f"(in that order)")
    try:
        saved = files.read_json(config_path).get("data", {}).get("tags") if config_path.is_file() else None
    except (ValueError, AttributeError):  # a damaged config.json does not stop tagging: vocab.json is the model's
        saved = None
    if isinstance(saved, list) and saved != tags:
        refuse(f"its tags {tags[:4]}... are not those the run trained with ({config_path.name}: {saved[:4]}...)")


def tag(bundle: TaggerBundle, sentences: list[list[str]], batch_size: int = 256) -> list[list[str]]:
    """BIO tags of each sentence (a list of words); an empty sentence gets no tags."""
    keep = [i for i, s in enumerate(sentences) if len(s)]
    out: list[list[str]] = [[] for _ in sentences]
    if not keep:
        return out
    enc = encode([sentences[i] for i in keep], bundle.vocabs)
    names = bundle.vocabs["tags"].itos
    model = bundle.model
    model.eval()
    for s in range(0, len(keep), batch_size):
        rows = list(range(s, min(s + batch_size, len(keep))))
        batch = collate(enc, rows, model.chars is not None).to(bundle.device)
        pred = model.predict(batch).cpu().numpy()
        for b, r in enumerate(rows):
            out[keep[r]] = [names[t] for t in pred[b, : enc.lengths[r]]]
    return out


def entities(words: Sequence[str], tags: Sequence[str]) -> list[list]:
    """Entity spans as ``[type, start, end, text]`` (end exclusive), conlleval's reading of BIO."""
    from seqeval.metrics.sequence_labeling import get_entities

    return [[t, s, e + 1, " ".join(words[s: e + 1])] for t, s, e in get_entities(list(tags))]


# ---------------------------------------------------------------------------
# Training


METRIC_KEYS = ("loss", "accuracy", "micro_f1", "macro_f1")
_COLUMNS = [("step", 7, "d"), ("epoch", 6, ".2f"), ("lr", 8, ".5f"), ("tr_loss", 8, ".3f"), ("tr_acc", 7, ".4f"),
            ("tr_miF1", 7, ".4f"), ("tr_maF1", 7, ".4f"), ("va_loss", 8, ".3f"), ("va_acc", 7, ".4f"),
            ("va_miF1", 7, ".4f"), ("va_maF1", 7, ".4f"), ("va_entF1", 8, ".4f"), ("sec", 7, ".0f")]


def _header() -> str:
    return " ".join(f"{n:>{w}}" for n, w, _ in _COLUMNS)


def _row(rec: dict) -> str:
    vals = [rec["step"], rec["epoch"], rec["lr"], rec["train_loss"], rec["train_accuracy"], rec["train_micro_f1"],
            rec["train_macro_f1"], rec["val_loss"], rec["val_accuracy"], rec["val_micro_f1"], rec["val_macro_f1"],
            rec["val_entity_f1"], rec["seconds"]]
    return " ".join(f"{v:>{w}{f}}" for v, (_, w, f) in zip(vals, _COLUMNS))


def plot_ner_curves(path: Path, records: Sequence[dict], title: Optional[str] = None) -> None:
    """Accuracy, micro F1 and macro F1 (O excluded) against learning updates, train and val: three panels."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(13, 3.8), layout="constrained")
    steps = [r["step"] for r in records]
    for k, (key, label) in enumerate([("accuracy", "token accuracy"), ("micro_f1", "micro F1 (without O)"),
                                      ("macro_f1", "macro F1 (without O)")]):
        ax = fig.add_subplot(1, 3, k + 1)
        for split in ("train", "val"):
            ys = [r.get(f"{split}_{key}") for r in records]
            ys = [float("nan") if y is None or not math.isfinite(y) else y for y in ys]
            ax.plot(steps, ys, marker="o" if len(steps) <= 30 else None, markersize=3, label=split)
        ax.set_xlabel("learning updates")
        ax.set_title(label)
        ax.grid(True, alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    files.atomic_savefig(fig, path, dpi=110)


def limit_sentences(sentences: list, n: Optional[int], seed: int, shuffled: bool) -> list:
    """``--limit-train``: N training sentences drawn at random with ``seed`` (the split seed).

    The split of a single file is already a seeded shuffle, so its first N are
    such a draw; a training file given as is gets shuffled with ``seed`` first.
    Either way the subset is the same for every training ``seed``.
    """
    if not n:
        return sentences
    if shuffled:
        return sentences[:n]
    pick = np.sort(np.random.default_rng(seed).permutation(len(sentences))[:n])
    return [sentences[i] for i in pick]


def _describe(cfg: NERConfig) -> str:
    emb = cfg.embeddings or "random"
    parts = ["BiLSTM", "+LN" if cfg.layer_norm else "", "-CRF" if cfg.crf else "", f", {emb}", ", char" if cfg.char else ""]
    return "".join(parts)


def fit(cfg: NERConfig, progress: bool = True, on_update: Optional[Callable[[int], None]] = None) -> dict:
    """Train a tagger as ``cfg`` says, writing the run directory ``cfg.out``; returns the summary.

    ``on_update(step)`` is called after every learning update (tests use it to
    interrupt a run; an exception raised there propagates, leaving last.pt).
    """
    cfg.check_data_files()
    device = rundir.select_device(cfg.device)
    out = Path(cfg.out)
    rundir.check_out_dir(out)
    rundir.check_not_a_study(out)
    with rundir.RunLock(out):  # one writer per run folder
        return _fit(cfg, out, device, progress, on_update)


def _fit(cfg: NERConfig, out: Path, device: torch.device, progress: bool,
         on_update: Optional[Callable[[int], None]]) -> dict:
    """``fit``'s body, run with the run folder locked."""
    from tqdm import tqdm

    config_dict = asdict(cfg)
    resuming = rundir.prepare_run_dir(out, config_dict, cfg.resume)
    if resuming:
        rundir.check_same_data(out, cfg.data)
    log_file = None  # opened with the first line, so bad input found before it leaves no folder behind

    def log(msg: str) -> None:
        nonlocal log_file
        (tqdm.write if progress else print)(msg)
        if log_file is None:
            out.mkdir(parents=True, exist_ok=True)
            log_file = open(out / files.LOG, "a")
        with files.writing(out / files.LOG):
            log_file.write(msg + "\n")
            log_file.flush()

    try:
        rundir.seed_everything(cfg.seed)
        splits = load_splits(cfg.data, seed=cfg.split_seed)
        vocabs_tags_from = splits["val"] + splits["test"]  # the label set, before any limit
        sizes_before_limit = {k: len(v) for k, v in splits.items()}
        splits["train"] = limit_sentences(splits["train"], cfg.limit_train, cfg.split_seed, shuffled=len(cfg.data) == 1)
        for k in ("val", "test"):
            splits[k] = splits[k][: cfg.limit_eval] if cfg.limit_eval else splits[k]
        train_s = splits["train"]
        vocabs = build_vocabs(train_s, more_tags=vocabs_tags_from)
        tag_names = list(vocabs["tags"].itos)
        num_train_words = len(vocabs["words"])
        if cfg.embeddings:
            from normlab.data.embeddings import embedding_matrix, extend_with_pretrained, load_pretrained

            glove_words, vectors = load_pretrained(cfg.embeddings)
            eval_words = (w for k in ("val", "test") for s in splits[k] for w in s.words)
            vocabs["words"], n_added = extend_with_pretrained(vocabs["words"], eval_words, glove_words)
            matrix, emb_info = embedding_matrix(vocabs["words"], glove_words, vectors, seed=cfg.seed,
                                                source=cfg.embeddings)
            emb_info["added_from_eval_words"] = n_added
            del glove_words, vectors
            pretrained, word_dim = torch.from_numpy(matrix), matrix.shape[1]
        else:
            pretrained, word_dim, emb_info = None, cfg.word_dim, {"source": "random", "dim": cfg.word_dim}
        settings = model_settings(cfg, vocabs, word_dim)
        model = BiLSTMTagger(**{**settings, "pretrained": pretrained}).to(device)
        if cfg.embedding_std is not None:  # (a resumed run loads its trained weights over this)
            with torch.no_grad():
                w = model.word_embed.weight
                rows = torch.ones(w.shape[0], dtype=torch.bool)
                if vocabs["words"].pad_index is not None:
                    rows[vocabs["words"].pad_index] = False
                emb_info["std_before_rescaling"] = float(w[rows].std())
                w[rows] *= cfg.embedding_std / emb_info["std_before_rescaling"]
        enc = {"train": encode_sentences(train_s, vocabs), "val": encode_sentences(splits["val"], vocabs),
               "test": encode_sentences(splits["test"], vocabs)}
        n_sub = min(cfg.train_eval_size, len(train_s))
        train_sub = np.sort(np.random.default_rng([cfg.seed, 1]).choice(len(train_s), n_sub, replace=False))
        opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum)
        # Training words seen once: singleton replacement feeds them as <unk> (unk_replace).
        counts = np.bincount(np.concatenate(enc["train"].words), minlength=len(vocabs["words"])) \
            if len(train_s) else np.zeros(len(vocabs["words"]), dtype=np.int64)
        singleton = torch.from_numpy(counts == 1)
        singleton[num_train_words:] = False
        unk_id = vocabs["words"].unk_index

        if not resuming:
            files.atomic_write_json(out / files.CONFIG, {
                "kind": "ner", "config": config_dict, "env": rundir.environment_info(device),
                "data": {"files": [files.file_fingerprint(f) for f in cfg.data], "split_seed": cfg.split_seed, "limit_train": cfg.limit_train,
                         "limit_eval": cfg.limit_eval,
                         "sizes": {"train": len(train_s), "val": len(splits["val"]), "test": len(splits["test"])},
                         "sizes_before_limit": sizes_before_limit,
                         "vocab_sizes": {k: len(v) for k, v in vocabs.items()}, "tags": tag_names,
                         "embeddings": emb_info}})
            files.atomic_write_json(out / VOCAB, {
                "kind": "ner", "words": vocabs["words"].to_json(), "chars": vocabs["chars"].to_json(),
                "tags": vocabs["tags"].to_json(), "model": settings})
            rundir.start_afresh(out)  # what a run that died before its first checkpoint left

        # Training state (everything last.pt holds besides weights and RNG).
        st = {"step": 0, "epoch": 0, "batch_in_epoch": 0, "best_score": -1.0, "best_step": None,
              "best_epoch": None, "bad_epochs": 0, "improved_this_epoch": False, "plateau_score": -1.0,
              "train_seconds": 0.0,
              "seconds": 0.0, "stopped": None, "message": ""}
        if resuming:
            ck = rundir.load_checkpoint(out / files.LAST, map_location=device)
            rundir.load_weights(model, ck, out / files.LAST, str(out / files.CONFIG))
            opt.load_state_dict(ck["optimizer"])
            st.update(ck["state"])
            st.setdefault("plateau_score", st["best_score"])  # a checkpoint from before min_delta
            rundir.restore_rng_state(ck["rng"])
            _, lost = rundir.recover(out, ck, "step", st["best_step"] == st["step"])
            log(f"resumed from {out / files.LAST} at update {st['step']} (epoch {st['epoch']}, "
                f"batch {st['batch_in_epoch']})"
                + (f"; its metrics line, lost by the interruption, recovered from {files.LAST}" if lost else ""))
        else:
            log(f"{_describe(cfg)}: train {len(train_s)}, val {len(splits['val'])}, test {len(splits['test'])} "
                f"sentences; {sum(p.numel() for p in model.parameters()):,} parameters; device {device}")
        log(_header())

        def commit(rec: dict, improved: bool) -> None:
            """last.pt (with the metrics line), best.pt when improved, the line: see rundir.commit."""
            rundir.commit(out, {"model": model.state_dict(), "optimizer": opt.state_dict(), "state": dict(st),
                                "config": config_dict, "rng": rundir.rng_state_for_checkpoint()}, rec, improved)
            log(_row(rec))

        start = time.perf_counter() - st["seconds"]
        updates_per_epoch = math.ceil(len(train_s) / cfg.batch_size)

        def evaluate_and_record(lr: float) -> tuple[dict, bool]:
            """The metrics line of an evaluation now, and whether it is the best so far (st updated)."""
            tr = evaluate(model, enc["train"], tag_names, batch_size=cfg.eval_batch_size, device=device, idx=train_sub)
            va = evaluate(model, enc["val"], tag_names, batch_size=cfg.eval_batch_size, device=device)
            st["seconds"] = time.perf_counter() - start
            rec = {"step": st["step"], "epoch": st["epoch"] + st["batch_in_epoch"] / updates_per_epoch, "lr": lr,
                   "seconds": st["seconds"], "train_seconds": st["train_seconds"],
                   **{f"train_{k}": tr[k] for k in METRIC_KEYS}, **{f"val_{k}": va[k] for k in METRIC_KEYS},
                   "val_entity_precision": va["entity_precision"], "val_entity_recall": va["entity_recall"],
                   "val_entity_f1": va["entity_f1"], "val_type_micro_f1": va["type_micro_f1"]}
            improved = va["entity_f1"] > st["best_score"]
            if improved:
                st.update(best_score=va["entity_f1"], best_step=st["step"], best_epoch=rec["epoch"])
            if va["entity_f1"] > st["plateau_score"] + cfg.min_delta:  # progress that resets the patience
                st.update(plateau_score=va["entity_f1"], improved_this_epoch=True)
            return rec, improved

        while st["stopped"] is None and st["epoch"] < cfg.epochs:
            epoch = st["epoch"]
            lr = cfg.lr / (1.0 + cfg.lr_decay * epoch)
            for g in opt.param_groups:
                g["lr"] = lr
            batches = epoch_batches(enc["train"].lengths, cfg.batch_size, cfg.seed, epoch, cfg.bucket)
            bar = tqdm(total=len(batches), initial=st["batch_in_epoch"], desc=f"epoch {epoch + 1}/{cfg.epochs}",
                       leave=False, disable=not progress, dynamic_ncols=True)
            model.train()
            for b in range(st["batch_in_epoch"], len(batches)):
                t0 = time.perf_counter()
                batch = collate(enc["train"], batches[b], cfg.char)
                if cfg.unk_replace > 0 and unk_id is not None:
                    drop = singleton[batch.words] & (torch.rand(batch.words.shape) < cfg.unk_replace)
                    batch.words = batch.words.masked_fill(drop, unk_id)
                batch = batch.to(device)
                loss = model.loss(batch, reduction=cfg.loss_reduction)
                # Reading the loss on the host every update stalls a GPU's queue: there, every
                # CHECK_EVERY_GPU updates (and before each evaluation) is enough to stop a diverged run.
                check = (device.type == "cpu" or (st["step"] + 1) % CHECK_EVERY_GPU == 0
                         or (cfg.eval_every and (st["step"] + 1) % cfg.eval_every == 0) or b + 1 == len(batches))
                if check and not torch.isfinite(loss.detach()):
                    st["stopped"] = "diverged"
                    st["message"] = (f"diverged: non-finite training loss ({loss.detach().item()}) "
                                     f"{'at' if device.type == 'cpu' else 'by'} update {st['step'] + 1}, "
                                     f"epoch {epoch + 1}; " + (f"the best checkpoint (update {st['best_step']}) is kept"
                                                               if st["best_step"] is not None else
                                                               "no checkpoint was written, so the summary metrics are null"))
                    break
                opt.zero_grad(set_to_none=True)
                loss.backward()
                nn.utils.clip_grad_norm_(model.parameters(), clip_threshold(cfg, len(batches[b])))
                opt.step()
                st["step"] += 1
                st["batch_in_epoch"] = b + 1
                st["train_seconds"] += time.perf_counter() - t0
                bar.update(1)
                if progress and check:  # .item() is a host sync: only for a bar someone sees
                    bar.set_postfix(loss=f"{loss.detach().item():.3f}")
                if on_update is not None:
                    on_update(st["step"])
                if cfg.eval_every and st["step"] % cfg.eval_every == 0 and b + 1 < len(batches):
                    rec, improved = evaluate_and_record(lr)
                    model.train()
                    commit(rec, improved)
            bar.close()
            if st["stopped"] is not None:
                log(st["message"])
                break
            rec, improved = evaluate_and_record(lr)  # the epoch's end
            st.update(epoch=epoch + 1, batch_in_epoch=0)
            st["bad_epochs"] = 0 if st["improved_this_epoch"] else st["bad_epochs"] + 1
            st["improved_this_epoch"] = False
            if cfg.patience and st["bad_epochs"] >= cfg.patience and st["epoch"] < cfg.epochs:
                st["stopped"] = "early_stopped"
                gain = f" by more than {cfg.min_delta:g}" if cfg.min_delta else ""
                st["message"] = (f"early stopped after epoch {st['epoch']}: no better validation entity F1{gain} "
                                 f"for {st['bad_epochs']} epochs (best {st['best_score']:.4f} at update "
                                 f"{st['best_step']})")
            commit(rec, improved)
            if st["stopped"] == "early_stopped":
                log(st["message"])

        status = st["stopped"] or "finished"
        if status == "finished":
            st["message"] = (f"finished {st['epoch']} epochs; best validation entity F1 {st['best_score']:.4f} "
                             f"at update {st['best_step']}")
            log(st["message"])
        records = files.read_jsonl(out / files.METRICS)
        if records:
            plot_ner_curves(out / files.CURVES, records, title=_describe(cfg))
        metrics = None
        if (out / files.BEST).exists():
            rundir.load_weights(model, rundir.load_checkpoint(out / files.BEST, map_location=device),
                                out / files.BEST, str(out / files.CONFIG))
            metrics = {split: evaluate(model, enc[split], tag_names, batch_size=cfg.eval_batch_size, device=device)
                       for split in ("train", "val", "test")}
            log("best checkpoint: " + "; ".join(
                f"{s} acc {m['accuracy']:.4f} microF1 {m['micro_f1']:.4f} macroF1 {m['macro_f1']:.4f} "
                f"entityF1 {m['entity_f1']:.4f}" for s, m in metrics.items()))
        epochs_run = st["step"] / updates_per_epoch
        summary = {
            "kind": "ner", "status": status, "diverged": status == "diverged", "message": st["message"],
            "best_step": st["best_step"], "best_epoch": st["best_epoch"], "best_val_entity_f1": st["best_score"]
            if st["best_step"] is not None else None, "epochs_run": epochs_run, "updates": st["step"],
            "seconds_per_epoch": st["train_seconds"] / epochs_run if epochs_run else None,
            "seconds": time.perf_counter() - start, "metrics": metrics,
        }
        files.atomic_write_json(out / files.SUMMARY, summary)
        return summary
    finally:
        if log_file is not None:
            log_file.close()
