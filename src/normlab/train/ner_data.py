"""The sentences of one NER run: read, split and limited as its config says, encoded once, with
their vocabularies and the initial word vectors (pretrained or random)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional

import numpy as np
import torch

from normlab.data.gmb import Sentence, Vocab, build_vocabs, limit_sentences, load_splits
from normlab.data.sentence_batches import Encoded, encode_sentences

if TYPE_CHECKING:  # (normlab.train.ner imports this module)
    from normlab.models.tagger import BiLSTMTagger
    from normlab.train.ner import NERConfig


@dataclass
class NERData:
    """A run's sentences, encoded once, with their vocabularies."""

    vocabs: dict[str, Vocab]
    enc: dict[str, Encoded]  # train, val, test
    train_sub: np.ndarray  # the training sentences scored at each evaluation (a fixed seeded subsample)
    singleton: torch.Tensor  # (V,) bool: training words seen once, fed as <unk> at random (unk_replace)
    sizes_before_limit: dict[str, int]
    word_dim: int  # of the initial word vectors
    embeddings: dict  # what config.json says of the initial word vectors

    @property
    def tag_names(self) -> list[str]:
        return list(self.vocabs["tags"].itos)


def load_data(cfg: NERConfig) -> tuple[NERData, Optional[torch.Tensor]]:
    """The run's data, and the pretrained word vectors of its vocabulary (None: random ones)."""
    splits, vocabs, sizes_before_limit = read_sentences(cfg)
    num_train_words = len(vocabs["words"])
    pretrained, word_dim, emb_info = initial_vectors(cfg, vocabs, splits)
    enc = {k: encode_sentences(splits[k], vocabs) for k in ("train", "val", "test")}
    n_train = len(splits["train"])
    train_sub = np.sort(np.random.default_rng([cfg.seed, 1]).choice(n_train, min(cfg.train_eval_size, n_train),
                                                                     replace=False))
    counts = np.bincount(np.concatenate(enc["train"].words), minlength=len(vocabs["words"])) \
        if n_train else np.zeros(len(vocabs["words"]), dtype=np.int64)
    singleton = torch.from_numpy(counts == 1)
    singleton[num_train_words:] = False  # words added from the pretrained vectors were never trained on
    return NERData(vocabs, enc, train_sub, singleton, sizes_before_limit, word_dim, emb_info), pretrained


def read_sentences(cfg: NERConfig) -> tuple[dict[str, list[Sentence]], dict[str, Vocab], dict[str, int]]:
    """The three splits (limited as asked), their vocabularies, and each split's size before the limits."""
    splits = load_splits(cfg.data, seed=cfg.split_seed)
    tags_from = splits["val"] + splits["test"]  # the label set, before any limit
    sizes_before_limit = {k: len(v) for k, v in splits.items()}
    splits["train"] = limit_sentences(splits["train"], cfg.limit_train, cfg.split_seed, shuffled=len(cfg.data) == 1)
    for k in ("val", "test"):
        splits[k] = splits[k][: cfg.limit_eval] if cfg.limit_eval else splits[k]
    return splits, build_vocabs(splits["train"], more_tags=tags_from), sizes_before_limit


def initial_vectors(cfg: NERConfig, vocabs: dict[str, Vocab],
                    splits: dict[str, list[Sentence]]) -> tuple[Optional[torch.Tensor], int, dict]:
    """The pretrained word vectors (None: random ones), their dimension, and what config.json says of them.

    The words of the evaluation splits that the pretrained vectors know join ``vocabs["words"]``.
    """
    if not cfg.embeddings:
        return None, cfg.word_dim, {"source": "random", "dim": cfg.word_dim}
    from normlab.data.embeddings import embedding_matrix, extend_with_pretrained, load_pretrained

    glove_words, vectors = load_pretrained(cfg.embeddings)
    eval_words = (w for k in ("val", "test") for s in splits[k] for w in s.words)
    vocabs["words"], n_added = extend_with_pretrained(vocabs["words"], eval_words, glove_words)
    matrix, info = embedding_matrix(vocabs["words"], glove_words, vectors, seed=cfg.seed, source=cfg.embeddings)
    info["added_from_eval_words"] = n_added
    return torch.from_numpy(matrix), matrix.shape[1], info


def rescale_word_vectors(model: BiLSTMTagger, data: NERData, std: float) -> None:
    """Scale every initial word vector but <pad>'s to element standard deviation ``std`` (``embedding_std``);
    the standard deviation before goes into ``data.embeddings``."""
    with torch.no_grad():
        w = model.word_embed.weight
        rows = torch.ones(w.shape[0], dtype=torch.bool)
        pad = data.vocabs["words"].pad_index
        if pad is not None:
            rows[pad] = False
        data.embeddings["std_before_rescaling"] = float(w[rows].std())
        w[rows] *= std / data.embeddings["std_before_rescaling"]
