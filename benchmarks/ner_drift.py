"""How far two float-noise-equal versions of the NER model drift apart in training at study settings.

Last measured 2026-11-30 (2-core AMD EPYC VM, shared, torch 2.13.0) against commit 6e9e390:
after 40 updates the largest parameter difference was 1.9e-3 between the old and the new
code, and 8.9e-4 between the old code at one thread and at two; both grew about tenfold
every 5-10 updates from 2e-7 at update 1. Details: benchmarks/README.md (the NER crf run).

    .venv/bin/python benchmarks/ner_drift.py --data ../shared/data/gmb/ner_dataset.csv.zip \
        --old-src OLD_CHECKOUT/src [--updates 40]

The crf variant (GloVe, characters, CRF), summed loss, lr 0.01, batch 128, clip 5 per
sentence, the batches of epoch 0: three copies from the same weights, each update with the
same dropout draws: this checkout's code at one thread, ``--old-src``'s at one thread and
at two. If the old code drifts from itself (a thread count changes only the rounding) as
fast as from the new code, a different metric after a full run is this chaos, not a change
of computation; ``tests/test_ner_metrics_unchanged.py`` checks the metrics in a stable regime.
"""

from __future__ import annotations

import argparse

import torch
from ner import load_old, setup  # benchmarks/ner.py

from normlab.data import sentence_batches
from normlab.models.tagger import BiLSTMTagger
from normlab.train import ner


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True)
    p.add_argument("--old-src", required=True, help="the src folder of a checkout of the old code")
    p.add_argument("--updates", type=int, default=40)
    args = p.parse_args(argv)
    vocabs, matrix, enc = setup(args.data)
    cfg = ner.NERConfig(data=[args.data], embeddings="glove-6b-50d", char=True, crf=True)
    settings = {**ner.model_settings(cfg, vocabs, matrix.shape[1]), "pretrained": matrix}
    torch.manual_seed(0)
    new = BiLSTMTagger(**settings)
    Old = load_old(args.old_src)[0].BiLSTMTagger
    models = {"new": (new, 1), "old": (Old(**settings), 1), "old2": (Old(**settings), 2)}
    for m, _ in models.values():
        m.load_state_dict(new.state_dict())
    opts = {k: torch.optim.SGD(m.parameters(), lr=0.01) for k, (m, _) in models.items()}
    batches = sentence_batches.epoch_batches(enc["train"].lengths, 128, 0, 0, True)

    def diff(a, b) -> float:
        return max((x - y).abs().max().item() for x, y in zip(a.parameters(), b.parameters()))

    print("update  loss(old)  |param new - old|  |param old@2 threads - old@1|")
    for step in range(args.updates):
        batch = sentence_batches.collate(enc["train"], batches[step], True)
        for k, (m, threads) in models.items():
            torch.set_num_threads(threads)
            torch.manual_seed(1000 + step)  # the same dropout draws in every copy
            loss = m.loss(batch, reduction="sum")
            opts[k].zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(m.parameters(), 5.0 * len(batches[step]))
            opts[k].step()
            if k == "old":
                old_loss = loss.item()
        if step < 3 or step % 5 == 4:
            print(f"{step + 1:6d} {old_loss:10.2f} {diff(new, models['old'][0]):18.2e} "
                  f"{diff(models['old2'][0], models['old'][0]):28.2e}", flush=True)


if __name__ == "__main__":
    main()
