"""Race the NER `crf` run's training step and evaluation against a plain PyTorch loop.

Last measured 2026-11-30 21:25-22:00 UTC on a 2-core AMD EPYC VM (CPU, torch 2.13.0, 1 thread,
shared with two study runs and other jobs, load average 4-10), one process, ``--old-src`` at
a705913 (before the character BiLSTM ran in the fused kernel): 20 updates 3.83 s, before 4.43 s,
the plain loop 7.21 s (0.53x and 0.62x plain; five races gave after/before 0.86-1.01x, median
0.96x); one evaluation (val + 2,000-sentence subsample) 4.03 s, before 4.38 s (0.92x).
``--chars``: the character features 52.2 against 65.0 ms a batch forward+backward (0.80x),
17.2 against 33.1 ms at inference (0.52x); the whole loss 0.91x. Details: benchmarks/README.md, "The NER crf run".

    .venv/bin/python benchmarks/ner.py --data ../shared/data/gmb/ner_dataset.csv.zip [--batches 20]
        [--repeats 5] [--threads 1] [--profile train|eval] [--old-src OLD_CHECKOUT/src] [--chars]

The model of the study's `crf` variant (GloVe 6B 50d, character BiLSTM 25+25, word
BiLSTM 100+100, CRF with BIO constraints) on the full GMB split, batch 128, the batches
of epoch 0 in order. Two races, contenders interleaved, medians of ``--repeats``:

* **training**: ``--batches`` updates of normlab's step (collate, singleton replacement,
  ``BiLSTMTagger.loss``, backward, clip, SGD) against a plain loop of the same model
  (``nn.LSTM`` over packed sequences for the characters of every real word and for the
  words, ``pytorch-crf``'s ``CRF``), scaled to an epoch;
* **evaluation**: ``normlab.train.ner_eval.evaluate`` of the validation split and of the
  2,000-sentence training subsample, what each evaluation of a run costs.

``--old-src`` adds the code of another checkout (imported as ``normlab_old``) to both races,
the same weights: before against after in one process.

``--chars`` instead races only the character BiLSTM over each batch's distinct words, the fused
kernel (``CharFeatures.of_words``) against the step-by-step ``packed_bilstm`` it replaced.

``--profile train|eval`` instead prints a ``torch.profiler`` table of ours (by total
CPU time, top 25 ops) and a cProfile list of the Python functions (top 15).
"""

from __future__ import annotations

import argparse
import dataclasses
import cProfile
import math
import pstats
import time

import numpy as np
import torch
from _race import race  # benchmarks/_race.py: the shared timing loop
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from normlab.data import sentence_batches
from normlab.data.embeddings import embedding_matrix, extend_with_pretrained, load_pretrained
from normlab.data.gmb import build_vocabs, load_splits
from normlab.models.tagger import BiLSTMTagger
from normlab.train import ner, ner_eval


class PlainTagger(nn.Module):
    """The textbook BiLSTM-CRF: nn.LSTM over packed sequences, pytorch-crf's CRF."""

    def __init__(self, pretrained: torch.Tensor, num_chars: int, num_tags: int, hidden: int = 100):
        super().__init__()
        from torchcrf import CRF

        self.word_embed = nn.Embedding.from_pretrained(pretrained.clone(), freeze=False)
        self.char_embed = nn.Embedding(num_chars, 25, padding_idx=0)
        self.char_lstm = nn.LSTM(25, 25, batch_first=True, bidirectional=True)
        self.lstm = nn.LSTM(pretrained.shape[1] + 50, hidden, batch_first=True, bidirectional=True)
        self.dropout = nn.Dropout(0.5)
        self.proj = nn.Linear(2 * hidden, num_tags)
        self.crf = CRF(num_tags, batch_first=True)

    def loss(self, batch: sentence_batches.TaggerBatch) -> torch.Tensor:
        mask = batch.mask
        words = batch.chars[mask]  # shape: (N, L)
        lengths = (words != 0).sum(dim=1).clamp(min=1)
        packed = pack_padded_sequence(self.char_embed(words), lengths, batch_first=True, enforce_sorted=False)
        _, (h_n, _) = self.char_lstm(packed)
        chars = torch.zeros(*mask.shape, 50)
        chars[mask] = torch.cat([h_n[0], h_n[1]], dim=-1)
        x = self.dropout(torch.cat([self.word_embed(batch.words), chars], dim=-1))
        packed = pack_padded_sequence(x, mask.sum(dim=1), batch_first=True, enforce_sorted=False)
        h, _ = pad_packed_sequence(self.lstm(packed)[0], batch_first=True, total_length=mask.shape[1])
        em = self.proj(self.dropout(h))
        return -self.crf(em, batch.tags, mask, reduction="sum")


def load_old(src: str):
    """Another checkout's ``src/normlab``, imported as the package ``normlab_old``."""
    import importlib
    import shutil
    import sys
    import tempfile
    from pathlib import Path

    root = Path(tempfile.mkdtemp())
    shutil.copytree(Path(src) / "normlab", root / "normlab_old")
    for f in (root / "normlab_old").rglob("*.py"):
        f.write_text(f.read_text().replace("from normlab.", "from normlab_old.").replace("import normlab.", "import normlab_old."))
    sys.path.insert(0, str(root))
    return importlib.import_module("normlab_old.models.tagger"), importlib.import_module("normlab_old.train.ner")


def setup(data: str):
    """The crf run's data, vocabularies, GloVe matrix and encoded splits, as ``fit`` builds them."""
    splits = load_splits([data], seed=0)
    vocabs = build_vocabs(splits["train"], more_tags=splits["val"] + splits["test"])
    glove_words, vectors = load_pretrained("glove-6b-50d")
    eval_words = (w for k in ("val", "test") for s in splits[k] for w in s.words)
    vocabs["words"], _ = extend_with_pretrained(vocabs["words"], eval_words, glove_words)
    matrix, _ = embedding_matrix(vocabs["words"], glove_words, vectors, seed=0, source="glove-6b-50d")
    enc = {k: sentence_batches.encode_sentences(splits[k], vocabs) for k in ("train", "val")}
    return vocabs, torch.from_numpy(matrix), enc


def race_chars(model, batches, repeats: int) -> None:
    """The character features of ``batches`` (each batch's distinct words, forward+backward and
    inference), and the whole loss forward+backward: ``CharFeatures.of_words`` against the
    step-by-step ``packed_bilstm`` on the same weights, swapped into the same model."""
    from normlab.models.lstm import packed_bilstm
    from normlab.models.tagger import _directions, _distinct_rows

    chars = model.chars
    words = []
    for b in batches:
        rows = b.chars[b.mask]
        words.append(rows.index_select(0, _distinct_rows(rows)[0]))
    stepwise = lambda w: packed_bilstm(chars.embed(w), (w != 0).sum(dim=1).clamp(min=1), _directions(chars.lstm))[1]  # noqa: E731
    contenders = {"fused": chars.of_words, "stepwise": stepwise}

    def train(fn):
        return lambda: [fn(w).sum().backward() for w in words]

    def infer(fn):
        def go():
            with torch.inference_mode():
                for w in words:
                    fn(w)
        return go

    def loss(fn):
        def go():
            chars.of_words = fn  # what CharFeatures.forward calls
            try:
                for b in batches:
                    model.loss(b, reduction="sum").backward()
            finally:
                del chars.of_words
        return go

    n = len(words)
    print(f"character BiLSTM, {n} batches, {sum(len(w) for w in words) / n:.0f} distinct words a batch, "
          f"median of {repeats}, ms per batch:")
    model.train()
    t = race({k: train(f) for k, f in contenders.items()}, repeats, warmup=1)
    w = race({k: loss(f) for k, f in contenders.items()}, repeats, warmup=1)
    model.eval()
    i = race({k: infer(f) for k, f in contenders.items()}, repeats, warmup=1)
    for k in contenders:
        print(f"  {k:8s} forward+backward {1e3 * t[k] / n:6.1f} ({t[k] / t['stepwise']:.2f}x)   "
              f"inference {1e3 * i[k] / n:6.1f} ({i[k] / i['stepwise']:.2f}x)   "
              f"whole loss forward+backward {1e3 * w[k] / n:6.1f} ({w[k] / w['stepwise']:.2f}x)")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="the GMB corpus (ner_dataset.csv.zip)")
    p.add_argument("--batches", type=int, default=20, help="updates per training sample")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--profile", choices=["train", "eval"], default=None)
    p.add_argument("--skip", choices=["train", "eval"], default=None, help="leave one race out")
    p.add_argument("--chars", action="store_true",
                   help="only race the character BiLSTM (forward+backward over each batch's distinct words): "
                        "the fused kernel against the step-by-step packed_bilstm it replaced")
    p.add_argument("--old-src", default=None, help="also race the code of this checkout's src (before/after)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    vocabs, matrix, enc = setup(args.data)
    print(f"set-up {time.perf_counter() - t0:.1f} s; train {len(enc['train'])}, val {len(enc['val'])} sentences")
    tag_names = list(vocabs["tags"].itos)
    torch.manual_seed(0)
    cfg = ner.NERConfig(data=[args.data], embeddings="glove-6b-50d", char=True, crf=True)
    settings = ner.model_settings(cfg, vocabs, matrix.shape[1])
    ours = BiLSTMTagger(**{**settings, "pretrained": matrix})
    plain = PlainTagger(matrix, len(vocabs["chars"]), len(tag_names))
    batches = sentence_batches.epoch_batches(enc["train"].lengths, 128, 0, 0, True)
    per_epoch = len(batches)
    batches = batches[: args.batches]
    counts = np.bincount(np.concatenate(enc["train"].words), minlength=len(vocabs["words"]))
    singleton = torch.from_numpy(counts == 1)
    unk = vocabs["words"].unk_index

    def train(model, loss_fn):
        opt = torch.optim.SGD(model.parameters(), lr=1e-4)  # small: the weights barely move between samples
        model.train()

        def go():
            for idx in batches:
                batch = sentence_batches.collate(enc["train"], idx, True)
                drop = singleton[batch.words] & (torch.rand(batch.words.shape) < 0.5)
                batch.words = batch.words.masked_fill(drop, unk)
                loss = loss_fn(batch)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                nn.utils.clip_grad_norm_(model.parameters(), 5.0 * len(idx))
                opt.step()
        return go

    train_ours = train(ours, lambda b: ours.loss(b, reduction="sum"))
    sub = np.sort(np.random.default_rng([0, 1]).choice(len(enc["train"]), 2000, replace=False))

    def evaluate():
        ner_eval.evaluate(ours, enc["train"], tag_names, idx=sub)
        ner_eval.evaluate(ours, enc["val"], tag_names)

    trainers = {"normlab": train_ours}
    evaluators = {"normlab": evaluate}
    if args.old_src:
        old_tagger, old_ner = load_old(args.old_src)
        old = old_tagger.BiLSTMTagger(**{**settings, "pretrained": matrix})
        old.load_state_dict(ours.state_dict())
        trainers["before"] = train(old, lambda b: old.loss(b, reduction="sum"))
        # Every field the old Encoded has (an old one without spellings computes characters per batch).
        old_fields = [f.name for f in dataclasses.fields(old_ner.Encoded)]
        old_enc = {k: old_ner.Encoded(**{f: getattr(e, f) for f in old_fields}) for k, e in enc.items()}

        def evaluate_old():
            old_ner.evaluate(old, old_enc["train"], tag_names, idx=sub)
            old_ner.evaluate(old, old_enc["val"], tag_names)
        evaluators["before"] = evaluate_old

    if args.chars:
        race_chars(ours, [sentence_batches.collate(enc["train"], idx, True) for idx in batches], args.repeats)
        return

    if args.profile:
        fn = train_ours if args.profile == "train" else evaluate
        fn()  # warm-up
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU]) as prof:
            fn()
        print(prof.key_averages().table(sort_by="cpu_time_total", row_limit=25))
        pr = cProfile.Profile()
        pr.enable()
        fn()
        pr.disable()
        pstats.Stats(pr).sort_stats("tottime").print_stats(15)
        return

    print(f"{args.threads} thread(s), median of {args.repeats}, torch {torch.__version__}")
    if args.skip != "train":
        t = race({**trainers, "plain": train(plain, plain.loss)}, args.repeats, warmup=1)
        scale = per_epoch / len(batches)
        print(f"training, {len(batches)} updates (x{scale:.2f} = one epoch of {per_epoch}):")
        for name, s in t.items():
            print(f"  {name:8s} {s:7.2f} s  epoch {s * scale:6.1f} s  {s / t['plain']:.2f}x plain")
    if args.skip != "eval":
        t = race(evaluators, args.repeats, warmup=1)
        evals = math.ceil(per_epoch / 100)  # every 100 updates and the epoch's end
        print(f"evaluation of val ({len(enc['val'])}) + train subsample (2000), {evals} per epoch at --eval-every 100:")
        for name, s in t.items():
            print(f"  {name:8s} {s:7.2f} s  epoch {evals * s:6.1f} s  {s / t['normlab']:.2f}x normlab")


if __name__ == "__main__":
    main()
