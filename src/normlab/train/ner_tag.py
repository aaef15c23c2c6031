"""A trained tagger's run folder as a model: what ``vocab.json`` holds, loading it, tagging text.

A run folder of ``normlab ner train`` rebuilds its model from ``vocab.json`` (JSON: the
word, char and tag vocabularies and ``BiLSTMTagger``'s keyword arguments, ``model_settings``)
and ``best.pt`` (``weights_only``): loading runs no code from the folder. ``tag`` gives
each sentence's BIO tags, ``entities`` the spans they mark.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch

from normlab import files
from normlab.data.gmb import Vocab
from normlab.data.sentence_batches import collate, encode
from normlab.models.tagger import BiLSTMTagger
from normlab.train import rundir

VOCAB = "vocab.json"


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
