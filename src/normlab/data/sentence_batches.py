"""Sentences as id arrays and right-padded batches for the tagger (``normlab.models.tagger``).

Sentences are encoded once (``encode``: word ids of ``normalize_word`` forms, char ids of
the original characters, tag ids), so an epoch does no string work; ``collate`` pads a
batch of them into a ``TaggerBatch``; ``epoch_batches`` draws an epoch's batches from a
permutation seeded by (seed, epoch), so a resumed run sees the same order, bucketed by
length for little padding.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
import torch

from normlab.data.gmb import Sentence, Vocab, normalize_word


@dataclass
class TaggerBatch:
    """A right-padded batch of sentences.

    words: (B, T) word ids (normalized words), anything at padding.
    chars: (B, T, L) character ids of each word's original characters,
        0 (padding) beyond a word's length; ``None`` when no character model.
    mask:  (B, T) bool, True on real tokens; each row is left-aligned and
        has at least one True.
    tags:  (B, T) gold tag ids (any valid id at padding), or ``None``.
    """

    words: torch.Tensor
    mask: torch.Tensor
    chars: Optional[torch.Tensor] = None
    tags: Optional[torch.Tensor] = None

    def to(self, device) -> "TaggerBatch":
        move = lambda t: None if t is None else t.to(device, non_blocking=True)  # noqa: E731
        return TaggerBatch(move(self.words), move(self.mask), move(self.chars), move(self.tags))


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
