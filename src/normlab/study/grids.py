"""The experiment grids of the two studies: every run the seed asks for, as data.

A study is a list of ``Variant``s (one per row of the report's table) run for
one or more seeds. A variant is a name (also its run folder), a label for
readers, and the config overrides (``ResNetConfig`` / ``NERConfig`` field ->
value) that make it different from its neighbours; ``normlab.study.runs``
merges them with the settings the whole study shares into each run's config.
The built-in grids are written here; a user's own grid is a TOML file of the
same structure (``load_grid``, ``normlab study ... --grid FILE``)::

    [variants.gn_g4]
    label = "GN, 4 groups"
    norm = "gn"
    gn_groups = 4

The grid is data: which runs exist never depends on the installed command.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Optional

Kind = Literal["resnet", "ner"]

RESNET_BASE_BATCH = 128
RESNET_BASE_LR = 0.1
RESNET_SMALL_BATCH = 8
# The variants of the sanity check (our BN against nn.BatchNorm2d): run with several seeds
# in every budget, so that the report can tell their gap from seed noise.
SANITY_VARIANTS = ("torch_bn", "bn")
# A NER variant's ``embeddings``: "random" (no pretrained vectors) or "glove" (the study's
# --embeddings); any other value is a name or path of its own (normlab.data.embeddings).
RANDOM, PRETRAINED = "random", "glove"


@dataclass(frozen=True)
class Variant:
    """One row of a study: a name (also its run folder), a label for readers, its config overrides.

    ``epochs_factor``: the variant trains this many times the study's epochs (a controlled run of
    longer training; every variant of the built-in grids has 1).
    """

    name: str
    label: str
    overrides: dict = field(default_factory=dict, compare=False, hash=False)
    epochs_factor: int = field(default=1, compare=False, hash=False)

    def record(self) -> dict:
        """The variant as study.json's ``grid`` keeps it (older studies also kept an ``args`` list)."""
        longer = {"epochs_factor": self.epochs_factor} if self.epochs_factor != 1 else {}
        return {"name": self.name, "label": self.label, **self.overrides, **longer}


def small_batch_lr(rule: str, base_lr: float = RESNET_BASE_LR, batch_size: int = RESNET_SMALL_BATCH) -> float:
    """Learning rate for the batch-8 runs.

    ``linear`` (the default) is the linear scaling rule of Goyal et al. 2017,
    lr = 0.1 * 8 / 128 = 0.00625, which Wu & He also use when they vary the
    batch size in the GroupNorm paper: the expected update per example stays
    the same, so the batch-8 runs differ from the batch-128 ones in batch size
    only, not in effective step size (at lr 0.1, batch-8 SGD takes 16x as many
    steps of the same size per epoch, and BN at batch 8 tends to blow up).
    ``same`` keeps lr 0.1, the seed's literal wording.
    """
    if rule == "linear":
        return base_lr * batch_size / RESNET_BASE_BATCH
    if rule == "same":
        return base_lr
    raise ValueError(f"expected small-batch lr rule 'linear' or 'same', got {rule!r}")


def resnet_variants(small_batch_rule: str = "linear") -> list[Variant]:
    """torch_bn (reference), the six variants at batch 128, BN and GN at batch 8."""
    out = []
    big = [
        ("torch_bn", "torch_bn: nn.BatchNorm2d (reference)"),
        ("bn", "BN (ours)"),
        ("in", "IN"),
        ("bin", "BIN"),
        ("ln", "LN"),
        ("gn", "GN"),
        ("nn", "NN (no normalization)"),
    ]
    for norm, label in big:
        out.append(Variant(norm, f"{label}, batch {RESNET_BASE_BATCH}",
                           {"norm": norm, "batch_size": RESNET_BASE_BATCH, "lr": RESNET_BASE_LR}))
    lr8 = small_batch_lr(small_batch_rule)
    for norm, label in (("bn", "BN (ours)"), ("gn", "GN")):
        out.append(Variant(f"{norm}_b{RESNET_SMALL_BATCH}", f"{label}, batch {RESNET_SMALL_BATCH}",
                           {"norm": norm, "batch_size": RESNET_SMALL_BATCH, "lr": lr8}))
    return out


def ner_variants() -> list[Variant]:
    """The NER grid: random / GloVe / +chars / +layer norm, softmax and CRF heads.

    ``crf_free`` is the CRF without the BIO constraints on its transitions (the
    other CRF runs start impossible transitions such as O -> I-x at a large
    negative score): it answers what the chosen initialization changed.
    """
    def row(embeddings: str, char: bool = False, layer_norm: bool = False, crf: bool = False, **more) -> dict:
        return {"embeddings": embeddings, **more, "char": char, "layer_norm": layer_norm, "crf": crf}

    glove = _glove_rows(row)
    return [
        Variant("random", "BiLSTM, random 100-d embeddings", row(RANDOM)),
        # GloVe 6B is 50-d here: a random run at 50-d compares pretrained vs random at one dimension.
        Variant("random50", "BiLSTM, random 50-d embeddings", row(RANDOM, word_dim=50)),
        *glove,
    ] + [Variant(NER_RESCALED[v.name], v.label.replace("GloVe", f"GloVe (rescaled to std {RANDOM_50D_STD:g})"),
                 {**v.overrides, "embedding_std": RANDOM_50D_STD}) for v in glove]


# GloVe's spread (element std 0.6441) slows the BiLSTM (docs/results, "Why does GloVe not help here?"):
# every GloVe variant also runs with the vectors rescaled to the random initialization's spread, and
# the report answers each question on both setups. Raw name -> rescaled name.
NER_RESCALED = {"glove": "glove_small", "glove_char": "glove_char_small", "glove_char_ln": "glove_char_ln_small",
                "crf": "crf_small", "crf_ln": "crf_ln_small", "crf_free": "crf_free_small"}


def _glove_rows(row) -> list[Variant]:
    """The raw GloVe variants of the NER grid, in grid order."""
    return [Variant("glove", "BiLSTM, GloVe", row(PRETRAINED)),
            Variant("glove_char", "BiLSTM, GloVe + chars", row(PRETRAINED, char=True)),
            Variant("glove_char_ln", "BiLSTM (layer norm), GloVe + chars",
                    row(PRETRAINED, char=True, layer_norm=True)),
            Variant("crf", "BiLSTM-CRF, GloVe + chars", row(PRETRAINED, char=True, crf=True)),
            Variant("crf_ln", "BiLSTM-CRF (layer norm), GloVe + chars",
                    row(PRETRAINED, char=True, layer_norm=True, crf=True)),
            Variant("crf_free", "BiLSTM-CRF, GloVe + chars, unconstrained transitions",
                    {**row(PRETRAINED, char=True, crf=True), "crf_constraints": False})]


# The anomaly experiments (issue 14): variants of the studies run by the same command, but only when
# named with --variants, never by default (they answer why a result came out as it did, not the
# study's questions). The report reads them when present and says they have not been run otherwise.
RESNET_GN_GROUPS = (2, 4, 16)  # beside the default 8 (normlab.norms.DEFAULT_GN_GROUPS)
RESNET_ANOMALY_LR = 0.05  # one learning-rate point for the batch-independent norms, half the study's 0.1
# GN gains accuracy at batch 8 (16x the updates per epoch): is GN under-trained at batch 128? `gn_long`
# trains GN at batch 128 for this many times the study's epochs.
RESNET_LONG_FACTOR = 2
# Element standard deviations of the initial word vectors (--embedding-std): the random initialization,
# uniform in +-sqrt(3/D), has 1/sqrt(D) (0.1414 at D = 50); GloVe 6B 50-d has 0.6441 (all 400,000
# vectors, measured with normlab.data.embeddings.load_pretrained).
RANDOM_50D_STD = 0.1414
GLOVE_6B_50D_STD = 0.6441
# Coverage: with few training sentences, the pretrained vectors carry words the training set lacks.
NER_FEW_SENTENCES = 3000


def resnet_anomaly_variants() -> list[Variant]:
    """Why do GN, LN and IN trail at this budget? A GN group-size sweep, and lr 0.05 for LN, GN, IN.
    Why does GN gain at batch 8? GN at batch 128 trained ``RESNET_LONG_FACTOR`` times as long."""
    out = []
    for g in RESNET_GN_GROUPS:
        out.append(Variant(f"gn_g{g}", f"GN, {g} groups, batch {RESNET_BASE_BATCH}",
                           {"norm": "gn", "gn_groups": g, "batch_size": RESNET_BASE_BATCH, "lr": RESNET_BASE_LR}))
    tag = f"{RESNET_ANOMALY_LR:g}".replace("0.", "")
    for norm, label in (("ln", "LN"), ("gn", "GN"), ("in", "IN")):
        out.append(Variant(f"{norm}_lr{tag}", f"{label}, batch {RESNET_BASE_BATCH}, lr {RESNET_ANOMALY_LR:g}",
                           {"norm": norm, "batch_size": RESNET_BASE_BATCH, "lr": RESNET_ANOMALY_LR}))
    out.append(Variant("gn_long", f"GN, batch {RESNET_BASE_BATCH}, {RESNET_LONG_FACTOR}x the study's epochs",
                       {"norm": "gn", "batch_size": RESNET_BASE_BATCH, "lr": RESNET_BASE_LR},
                       epochs_factor=RESNET_LONG_FACTOR))
    return out


def ner_anomaly_variants() -> list[Variant]:
    """Why does GloVe not help here? The scale hypothesis both ways (``glove_small``, GloVe at the random
    initialization's spread, is in the grid: ``NER_RESCALED``), and the coverage hypothesis."""
    base = {"char": False, "layer_norm": False, "crf": False}
    return [
        Variant("random50_large", f"BiLSTM, random 50-d embeddings at GloVe's spread (std {GLOVE_6B_50D_STD:g})",
                {"embeddings": RANDOM, "word_dim": 50, "embedding_std": GLOVE_6B_50D_STD, **base}),
        Variant("glove_few", f"BiLSTM, GloVe, {NER_FEW_SENTENCES} training sentences",
                {"embeddings": PRETRAINED, "limit_train": NER_FEW_SENTENCES, **base}),
        Variant("random50_few", f"BiLSTM, random 50-d embeddings, {NER_FEW_SENTENCES} training sentences",
                {"embeddings": RANDOM, "word_dim": 50, "limit_train": NER_FEW_SENTENCES, **base}),
    ]


def anomaly_variants(kind: Kind) -> list[Variant]:
    """The variants run only when named (``--variants``); see ``resnet_anomaly_variants``, ``ner_anomaly_variants``."""
    if kind == "resnet":
        return resnet_anomaly_variants()
    if kind == "ner":
        return ner_anomaly_variants()
    raise ValueError(f"expected study kind 'resnet' or 'ner', got {kind!r}")


def variants_for(kind: Kind, small_batch_rule: str = "linear", anomalies: bool = False,
                 grid_file: Optional[str] = None, add_norms: Optional[dict] = None) -> list[Variant]:
    """The study's grid (run by default); with ``anomalies``, the anomaly variants after it.
    ``grid_file``: a user's grid (TOML, ``load_grid``) instead of the built-in one (it has no anomaly variants).
    ``add_norms``: your own norms, ``{name: "module:Class"}`` (``with_added_norms``)."""
    if grid_file is not None:
        grid, extra = load_grid(kind, grid_file), []
    elif kind == "resnet":
        grid, extra = resnet_variants(small_batch_rule), resnet_anomaly_variants()
    elif kind == "ner":
        grid, extra = ner_variants(), ner_anomaly_variants()
    else:
        raise ValueError(f"expected study kind 'resnet' or 'ner', got {kind!r}")
    if add_norms:
        if kind != "resnet":
            raise ValueError(f"--add-norm: expected a resnet study (a norm layer replaces the ResNet's "
                             f"normalization layers), got a {kind} study")
        grid = with_added_norms(grid, add_norms, taken=[v.name for v in extra])
    return grid + (extra if anomalies else [])


# The config defaults a grid variant without ``batch_size`` / ``lr`` runs at (ResNetConfig's).
_DEFAULT_BATCH, _DEFAULT_LR = RESNET_BASE_BATCH, RESNET_BASE_LR


def with_added_norms(grid: list[Variant], add_norms: dict, taken: list[str] = ()) -> list[Variant]:
    """``grid`` with a variant per added norm (``--add-norm NAME=module:Class``): ``NAME`` at batch 128, right
    after the grid's last batch-128 variant, and ``NAME_b8`` at batch 8, after its last batch-8 variant, where
    the grid has one. Each takes the lr of the grid's first variant at its batch size (0.1 and the
    small-batch rule's in the built-in grid). A name that is no folder name, or that clashes with a variant
    of the grid or with ``taken`` (the anomaly variants), is refused in one line."""
    def at(batch: int) -> list[int]:
        return [i for i, v in enumerate(grid) if v.overrides.get("batch_size", _DEFAULT_BATCH) == batch]

    names = [v.name for v in grid] + list(taken)
    big, small = at(RESNET_BASE_BATCH), at(RESNET_SMALL_BATCH)
    lr_big = grid[big[0]].overrides.get("lr", _DEFAULT_LR) if big else _DEFAULT_LR
    lr_small = grid[small[0]].overrides.get("lr", _DEFAULT_LR) if small else None
    new_big, new_small = [], []
    for name, spec in add_norms.items():
        where = f"--add-norm {name}={spec}"
        if not isinstance(name, str) or not name or not name.replace("_", "").replace("-", "").isalnum():
            raise ValueError(f"{where}: expected a NAME of letters, digits, - and _ (it names the run folder)")
        from normlab.norms.custom import is_norm_spec

        if not is_norm_spec(spec):
            raise ValueError(f"{where}: expected NAME=module:Class, such as rms=mypkg.norms:RMSNorm2d")
        mine = [name] + ([f"{name}_b{RESNET_SMALL_BATCH}"] if small else [])
        clash = [n for n in mine if n in names]
        if clash:
            raise ValueError(f"{where}: the name {clash[0]!r} is taken by a variant of the grid; choose another "
                             f"NAME (taken: {', '.join(names)})")
        names += mine
        new_big.append(Variant(name, f"{name}: {spec}, batch {RESNET_BASE_BATCH}",
                               {"norm": spec, "batch_size": RESNET_BASE_BATCH, "lr": lr_big}))
        if small:
            new_small.append(Variant(mine[1], f"{name}: {spec}, batch {RESNET_SMALL_BATCH}",
                                     {"norm": spec, "batch_size": RESNET_SMALL_BATCH, "lr": lr_small}))
    out = list(grid)
    places = [(big[-1] + 1 if big else len(out), 0, new_big), (small[-1] + 1 if small else len(out), 1, new_small)]
    for pos, _, added in sorted(places, key=lambda p: p[:2], reverse=True):  # the later place first
        out[pos:pos] = added
    return out


def select_variants(kind: Kind, names: Optional[list[str]], small_batch_rule: str = "linear",
                    grid_file: Optional[str] = None, add_norms: Optional[dict] = None) -> list[Variant]:
    """The default grid, or the named variants (the anomaly variants included) in grid order; an unknown
    name lists the valid ones."""
    if not names:
        return variants_for(kind, small_batch_rule, grid_file=grid_file, add_norms=add_norms)
    grid = variants_for(kind, small_batch_rule, anomalies=True, grid_file=grid_file, add_norms=add_norms)
    valid = [v.name for v in grid]
    unknown = [n for n in names if n not in valid]
    if unknown:
        raise ValueError(f"expected variants among {', '.join(valid)}, got {', '.join(unknown)}")
    return [v for v in grid if v.name in names]


# Config fields a variant may not set: the study sets them for every run (data, where the run
# writes, its seed, device and resumption). ``epochs`` too: one cap for the whole study.
STUDY_OWNED = {"out": "--out", "seed": "--seeds and --first-seed", "data": "--data", "data_dir": "--data-dir",
               "val_size": "--val-size", "epochs": "--epochs", "device": "--device", "resume": None}


def config_class(kind: str) -> type:
    """``ResNetConfig`` or ``NERConfig``, the config of one run of study ``kind``."""
    if kind == "resnet":
        from normlab.train.resnet import ResNetConfig

        return ResNetConfig
    if kind == "ner":
        from normlab.train.ner import NERConfig

        return NERConfig
    raise ValueError(f"expected study kind 'resnet' or 'ner', got {kind!r}")


def _fits(value, hint) -> bool:
    """Whether a TOML value fits a config field's annotation (bool is no number; an int is a float)."""
    import types
    import typing

    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Literal:
        return value in args
    if origin in (typing.Union, getattr(types, "UnionType", None)):
        return any(_fits(value, a) for a in args)
    if hint is type(None):
        return value is None
    if origin is list:
        return isinstance(value, list) and all(_fits(v, args[0]) for v in value) if args else isinstance(value, list)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, hint) if isinstance(hint, type) else True


def check_overrides(kind: str, overrides: dict, where: str) -> None:
    """Refuse a key that is no config field of ``kind`` (or one the study sets itself) and a value of
    the wrong type, naming the key and ``where`` (a file and table), in one line."""
    import typing

    cls = config_class(kind)
    hints = typing.get_type_hints(cls)
    for key, value in overrides.items():
        if key not in hints:
            raise ValueError(f"{where}: unknown key {key!r}: expected label or a {cls.__name__} field "
                             f"({', '.join(k for k in hints if k not in STUDY_OWNED)})")
        if key in STUDY_OWNED:
            how = STUDY_OWNED[key] or "rerunning the study"
            raise ValueError(f"{where}: key {key!r}: the study sets it for every run (use {how})")
        if kind == "ner" and key == "embeddings":
            ok = isinstance(value, str)
        else:
            ok = _fits(value, hints[key])
        if not ok:
            raise ValueError(f"{where}: key {key!r}: expected {getattr(hints[key], '__name__', hints[key])}, "
                             f"got {value!r}")
    if kind == "resnet":  # a ResNetConfig checks itself on construction: what the values mean together
        try:
            cls(**overrides)
        except ValueError as e:
            raise ValueError(f"{where}: keys {', '.join(overrides)}: {e}") from None


def load_grid(kind: str, path) -> list[Variant]:
    """The variants of a grid file (TOML): a ``[variants.NAME]`` table each, with an optional
    ``label`` and config overrides. Unknown keys and bad values are refused naming the key and file."""
    try:
        import tomllib
    except ImportError:  # Python < 3.11
        raise ValueError("--grid needs Python 3.11 or later (the standard library's tomllib)") from None
    path = Path(path)
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"{path}: not a TOML file ({e})") from None
    unknown = sorted(set(data) - {"variants"})
    if unknown:
        raise ValueError(f"{path}: unknown key {unknown[0]!r}: expected only [variants.NAME] tables")
    tables = data.get("variants")
    if not isinstance(tables, dict) or not tables:
        raise ValueError(f"{path}: expected at least one [variants.NAME] table, got none")
    out = []
    for name, table in tables.items():
        where = f"{path} [variants.{name}]"
        if not isinstance(table, dict):
            raise ValueError(f"{where}: expected a table of config overrides, got {table!r}")
        if not name.replace("_", "").replace("-", "").isalnum():
            raise ValueError(f"{where}: expected a name of letters, digits, - and _ (it names the run folder)")
        table = dict(table)
        label = table.pop("label", name)
        if not isinstance(label, str):
            raise ValueError(f"{where}: key 'label': expected a string, got {label!r}")
        check_overrides(kind, table, where)
        out.append(Variant(name, label, table))
    return out
