"""Training the BiLSTM(-CRF) NER tagger: ``fit(NERConfig) -> summary``.

``fit`` reads as prepare (``ner_data``: the sentences; the model; a new run or ``--resume``),
epochs (updates, an evaluation every ``eval_every`` updates and at each epoch's end,
``ner_eval``), finish (the best checkpoint's metrics); the steps both trainers share are in
``normlab.train.loop``. Tagging text with a trained run folder: ``normlab.train.ner_tag``.

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
from typing import Callable, Literal, Optional, get_args, get_origin, get_type_hints

import numpy as np
import torch
from torch import nn

from normlab import files
from normlab.config import dataclass_from_dict, flag
from normlab.data.archives import split_member
from normlab.data.gmb import Vocab
from normlab.data.sentence_batches import collate, epoch_batches
from normlab.models.tagger import BiLSTMTagger
from normlab.train import loop, rundir
from normlab.train.ner_data import NERData, load_data, rescale_word_vectors
from normlab.train.ner_eval import evaluate
from normlab.train.ner_tag import VOCAB
from normlab.train.plots import plot_ner_curves

Status = Literal["finished", "early_stopped", "diverged"]
LossReduction = Literal["sum", "mean"]


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


# ---------------------------------------------------------------------------
# Training


METRIC_KEYS = ("loss", "accuracy", "micro_f1", "macro_f1")
_COLUMNS = [("step", 7, "d"), ("epoch", 6, ".2f"), ("lr", 8, ".5f"), ("tr_loss", 8, ".3f"), ("tr_acc", 7, ".4f"),
            ("tr_miF1", 7, ".4f"), ("tr_maF1", 7, ".4f"), ("va_loss", 8, ".3f"), ("va_acc", 7, ".4f"),
            ("va_miF1", 7, ".4f"), ("va_maF1", 7, ".4f"), ("va_entF1", 8, ".4f"), ("sec", 7, ".0f")]

# The training state of a new run: everything last.pt holds besides weights, optimizer and RNGs.
FRESH_STATE = {"step": 0, "epoch": 0, "batch_in_epoch": 0, "best_score": -1.0, "best_step": None,
               "best_epoch": None, "bad_epochs": 0, "improved_this_epoch": False, "plateau_score": -1.0,
               "train_seconds": 0.0, "seconds": 0.0, "stopped": None, "message": ""}


def _header() -> str:
    return " ".join(f"{n:>{w}}" for n, w, _ in _COLUMNS)


def _row(rec: dict) -> str:
    vals = [rec["step"], rec["epoch"], rec["lr"], rec["train_loss"], rec["train_accuracy"], rec["train_micro_f1"],
            rec["train_macro_f1"], rec["val_loss"], rec["val_accuracy"], rec["val_micro_f1"], rec["val_macro_f1"],
            rec["val_entity_f1"], rec["seconds"]]
    return " ".join(f"{v:>{w}{f}}" for v, (_, w, f) in zip(vals, _COLUMNS))


def _describe(cfg: NERConfig) -> str:
    emb = cfg.embeddings or "random"
    parts = ["BiLSTM", "+LN" if cfg.layer_norm else "", "-CRF" if cfg.crf else "", f", {emb}", ", char" if cfg.char else ""]
    return "".join(parts)


@dataclass
class _Run:
    """One run in training: what the steps of ``fit`` share."""

    cfg: NERConfig
    config: dict  # cfg as saved in config.json and every checkpoint
    out: Path
    device: torch.device
    progress: bool
    log: loop.RunLog
    data: NERData
    model: BiLSTMTagger
    opt: torch.optim.SGD
    st: dict  # the training state (FRESH_STATE's keys)
    start: float = 0.0  # time.perf_counter() when the run started, the time of earlier attempts included

    @property
    def updates_per_epoch(self) -> int:
        return math.ceil(len(self.data.enc["train"]) / self.cfg.batch_size)


def fit(cfg: NERConfig, progress: bool = True, on_update: Optional[Callable[[int], None]] = None) -> dict:
    """Train a tagger as ``cfg`` says, writing the run directory ``cfg.out``; returns the summary.

    ``on_update(step)`` is called after every learning update (tests use it to
    interrupt a run; an exception raised there propagates, leaving last.pt).
    """
    cfg.check_data_files()
    device = rundir.select_device(cfg.device)
    out = Path(cfg.out)
    with loop.locked(out):  # one writer per run folder
        run = _prepare(cfg, out, device, progress)
        while run.st["stopped"] is None and run.st["epoch"] < cfg.epochs:
            _epoch(run, on_update)
        return _finish(run)


# --- prepare


def _prepare(cfg: NERConfig, out: Path, device: torch.device, progress: bool) -> _Run:
    """Data, model and optimizer; a new run writes config.json and vocab.json, a resumed one loads last.pt."""
    from tqdm import tqdm

    config = asdict(cfg)
    resuming = loop.start(out, config, cfg.resume, cfg.data)
    # train.log is made with its first line: bad input found before it leaves no folder behind.
    log = loop.RunLog(out / files.LOG, show=tqdm.write if progress else print)
    rundir.seed_everything(cfg.seed)
    data, pretrained = load_data(cfg)
    settings = model_settings(cfg, data.vocabs, data.word_dim)
    model = BiLSTMTagger(**{**settings, "pretrained": pretrained}).to(device)
    if cfg.embedding_std is not None:  # (a resumed run loads its trained weights over this)
        rescale_word_vectors(model, data, cfg.embedding_std)
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum)
    run = _Run(cfg, config, out, device, progress, log, data, model, opt, dict(FRESH_STATE))
    if resuming:
        _resume(run)
    else:
        vocabs = data.vocabs
        loop.begin(out, _config_record(run), {VOCAB: {
            "kind": "ner", "words": vocabs["words"].to_json(), "chars": vocabs["chars"].to_json(),
            "tags": vocabs["tags"].to_json(), "model": settings}})
        sizes = ", ".join(f"{k} {len(e)}" for k, e in data.enc.items())
        log(f"{_describe(cfg)}: {sizes} sentences; {sum(p.numel() for p in model.parameters()):,} parameters; "
            f"device {device}")
    log(_header())
    run.start = time.perf_counter() - run.st["seconds"]
    return run


def _config_record(run: _Run) -> dict:
    """config.json of a new run: the settings, the environment, the data files and what was read from them."""
    cfg, data = run.cfg, run.data
    return {"kind": "ner", "config": run.config, "env": rundir.environment_info(run.device),
            "data": {"files": [files.file_fingerprint(f) for f in cfg.data], "split_seed": cfg.split_seed,
                     "limit_train": cfg.limit_train, "limit_eval": cfg.limit_eval,
                     "sizes": {k: len(e) for k, e in data.enc.items()},
                     "sizes_before_limit": data.sizes_before_limit,
                     "vocab_sizes": {k: len(v) for k, v in data.vocabs.items()}, "tags": data.tag_names,
                     "embeddings": data.embeddings}}


def _resume(run: _Run) -> None:
    """Continue from last.pt: weights, optimizer, RNGs and training state; the metrics as they were then."""
    st, out = run.st, run.out
    ckpt = loop.resume(out, run.model, run.opt, run.device)
    st.update(ckpt["state"])
    st.setdefault("plateau_score", st["best_score"])  # a checkpoint from before min_delta
    _, lost = rundir.recover(out, ckpt, "step", st["best_step"] == st["step"])
    run.log(f"resumed from {out / files.LAST} at update {st['step']} (epoch {st['epoch']}, "
            f"batch {st['batch_in_epoch']})"
            + (f"; its metrics line, lost by the interruption, recovered from {files.LAST}" if lost else ""))


# --- an epoch


def _epoch(run: _Run, on_update: Optional[Callable[[int], None]]) -> None:
    """Train one epoch (from where an interrupted run left it), evaluating every ``eval_every`` updates and at
    its end; ``st["stopped"]`` says when training stops (diverged, early_stopped)."""
    from tqdm import tqdm

    cfg, st = run.cfg, run.st
    epoch = st["epoch"]
    lr = cfg.lr / (1.0 + cfg.lr_decay * epoch)
    for g in run.opt.param_groups:
        g["lr"] = lr
    batches = epoch_batches(run.data.enc["train"].lengths, cfg.batch_size, cfg.seed, epoch, cfg.bucket)
    bar = tqdm(total=len(batches), initial=st["batch_in_epoch"], desc=f"epoch {epoch + 1}/{cfg.epochs}",
               leave=False, disable=not run.progress, dynamic_ncols=True)
    run.model.train()
    for b in range(st["batch_in_epoch"], len(batches)):
        if not _update(run, batches, b, bar):
            break
        if on_update is not None:
            on_update(st["step"])
        if cfg.eval_every and st["step"] % cfg.eval_every == 0 and b + 1 < len(batches):
            rec, improved = _evaluate(run, lr)
            run.model.train()
            _commit(run, rec, improved)
    bar.close()
    if st["stopped"] is not None:
        run.log(st["message"])
        return
    rec, improved = _evaluate(run, lr)  # the epoch's end
    st.update(epoch=epoch + 1, batch_in_epoch=0)
    st["bad_epochs"] = 0 if st["improved_this_epoch"] else st["bad_epochs"] + 1
    st["improved_this_epoch"] = False
    if loop.out_of_patience(st["bad_epochs"], cfg.patience, st["epoch"], cfg.epochs):
        st["stopped"] = "early_stopped"
        gain = f" by more than {cfg.min_delta:g}" if cfg.min_delta else ""
        st["message"] = (f"early stopped after epoch {st['epoch']}: no better validation entity F1{gain} "
                         f"for {st['bad_epochs']} epochs (best {st['best_score']:.4f} at update {st['best_step']})")
    _commit(run, rec, improved)
    if st["stopped"] == "early_stopped":
        run.log(st["message"])


def _update(run: _Run, batches: list[np.ndarray], b: int, bar) -> bool:
    """One learning update on batch ``b``; False (and ``st["stopped"]``) when the training loss is not finite."""
    cfg, st, device, model = run.cfg, run.st, run.device, run.model
    t0 = time.perf_counter()
    batch = collate(run.data.enc["train"], batches[b], cfg.char)
    unk_id = run.data.vocabs["words"].unk_index
    if cfg.unk_replace > 0 and unk_id is not None:
        drop = run.data.singleton[batch.words] & (torch.rand(batch.words.shape) < cfg.unk_replace)
        batch.words = batch.words.masked_fill(drop, unk_id)
    batch = batch.to(device)
    loss = model.loss(batch, reduction=cfg.loss_reduction)
    # Reading the loss on the host every update stalls a GPU's queue: there, every
    # CHECK_EVERY_GPU updates (and before each evaluation) is enough to stop a diverged run.
    check = ((st["step"] + 1) % loop.check_every(device) == 0
             or (cfg.eval_every and (st["step"] + 1) % cfg.eval_every == 0) or b + 1 == len(batches))
    if check and not torch.isfinite(loss.detach()):
        st["stopped"] = "diverged"
        st["message"] = (f"diverged: non-finite training loss ({loss.detach().item()}) "
                         f"{'at' if device.type == 'cpu' else 'by'} update {st['step'] + 1}, epoch {st['epoch'] + 1}; "
                         + (f"the best checkpoint (update {st['best_step']}) is kept" if st["best_step"] is not None
                            else "no checkpoint was written, so the summary metrics are null"))
        return False
    run.opt.zero_grad(set_to_none=True)
    loss.backward()
    nn.utils.clip_grad_norm_(model.parameters(), clip_threshold(cfg, len(batches[b])))
    run.opt.step()
    st["step"] += 1
    st["batch_in_epoch"] = b + 1
    st["train_seconds"] += time.perf_counter() - t0
    bar.update(1)
    if run.progress and check:  # .item() is a host sync: only for a bar someone sees
        bar.set_postfix(loss=f"{loss.detach().item():.3f}")
    return True


# --- evaluate


def _evaluate(run: _Run, lr: float) -> tuple[dict, bool]:
    """The metrics line of an evaluation now, and whether it is the best so far (the state updated)."""
    cfg, st, data = run.cfg, run.st, run.data
    tr = evaluate(run.model, data.enc["train"], data.tag_names, batch_size=cfg.eval_batch_size, device=run.device,
                  idx=data.train_sub)
    va = evaluate(run.model, data.enc["val"], data.tag_names, batch_size=cfg.eval_batch_size, device=run.device)
    st["seconds"] = time.perf_counter() - run.start
    rec = {"step": st["step"], "epoch": st["epoch"] + st["batch_in_epoch"] / run.updates_per_epoch, "lr": lr,
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


def _commit(run: _Run, rec: dict, improved: bool) -> None:
    """last.pt (with the metrics line), best.pt when improved, the line: see rundir.commit."""
    rundir.commit(run.out, {"model": run.model.state_dict(), "optimizer": run.opt.state_dict(), "state": dict(run.st),
                            "config": run.config, "rng": rundir.rng_state_for_checkpoint()}, rec, improved)
    run.log(_row(rec))


# --- finish


def _finish(run: _Run) -> dict:
    """Curves, then the summary: the best checkpoint's metrics on every split; summary.json is written last."""
    cfg, st, out, data = run.cfg, run.st, run.out, run.data
    status = st["stopped"] or "finished"
    if status == "finished":
        st["message"] = (f"finished {st['epoch']} epochs; best validation entity F1 {st['best_score']:.4f} "
                         f"at update {st['best_step']}")
        run.log(st["message"])
    records = files.read_jsonl(out / files.METRICS)
    if records:
        plot_ner_curves(out / files.CURVES, records, title=_describe(cfg))
    metrics = loop.evaluate_best(out, run.model, run.device, lambda split: evaluate(
        run.model, data.enc[split], data.tag_names, batch_size=cfg.eval_batch_size, device=run.device))
    if metrics is not None:
        run.log("best checkpoint: " + "; ".join(
            f"{s} acc {m['accuracy']:.4f} microF1 {m['micro_f1']:.4f} macroF1 {m['macro_f1']:.4f} "
            f"entityF1 {m['entity_f1']:.4f}" for s, m in metrics.items()))
    epochs_run = st["step"] / run.updates_per_epoch
    return loop.finish(out, {
        "kind": "ner", "status": status, "diverged": status == "diverged", "message": st["message"],
        "best_step": st["best_step"], "best_epoch": st["best_epoch"],
        "best_val_entity_f1": st["best_score"] if st["best_step"] is not None else None,
        "epochs_run": epochs_run, "updates": st["step"],
        "seconds_per_epoch": st["train_seconds"] / epochs_run if epochs_run else None,
        "seconds": time.perf_counter() - run.start, "metrics": metrics,
    })
