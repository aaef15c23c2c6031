"""The Groningen Meaning Bank (GMB) NER corpus: reading, splitting, vocabularies.

Two file formats are read, detected from the content (and a ``.csv`` name):

1. Four space-separated columns a line, ``token POS word NER``, one token a
   line and a blank line between sentences (the "cleaned" GMB of the study).
   ``token`` is a normalised form (e.g. stemmed) and is ignored, as is POS;
   ``word`` (the original word, 3rd column) and ``NER`` are kept. UTF-8.
2. The CSV of the widely used "Annotated Corpus for Named Entity Recognition":
   header ``Sentence #,Word,POS,Tag``; a sentence starts on the row whose first
   column is ``Sentence: N``; the other rows leave that column empty. Latin-1,
   as distributed (its bytes 0x85, 0x92, 0x96, ... are really cp1252
   punctuation, but cp1252 leaves five bytes undefined, so latin-1 is the
   encoding that reads every file; the characters only reach the char model);
   UTF-8 when the file opens with a UTF-8 byte-order mark (a CSV saved again by
   a spreadsheet).

Either may be compressed: ``.gz``, or a ``.zip`` with a single data member
(``path.zip:member`` picks one member of a larger archive; ``normlab.data.archives.open_binary``).

Bad input is a ``ValueError`` naming the file, the line and what was expected.

Tags are read as IOB2 (every entity starts with ``B-x``). An ``I-x`` that
starts an entity (after ``O``, after another type, or first in a sentence:
IOB1 files do this) is repaired to ``B-x``, with one warning that counts the
repairs and names the first file and line (``IOBRepairWarning``): left as it
is, the constrained CRF would find such a gold path all but impossible.

Words are kept as written. :func:`normalize_word` gives the form used for the
word lookup (Lample et al. 2016, §4: lower-case, every digit mapped to 0); the
character model sees the original characters.
"""

from __future__ import annotations

import csv
import io
import random
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np

from normlab.data.archives import read_bytes

CSV_HEADER = ("Sentence #", "Word", "POS", "Tag")
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Sentence:
    """One sentence: its original words and their BIO tags (same length)."""

    words: tuple[str, ...]  # original words, as written in the corpus
    tags: tuple[str, ...]  # BIO tags: "O", "B-geo", "I-per", ...

    def __len__(self) -> int:
        return len(self.words)


# ---------------------------------------------------------------------------
# Parsing


def _is_bio(tag: str) -> bool:
    return tag == "O" or (len(tag) > 2 and tag[0] in "BI" and tag[1] == "-")


def _bad_tag(name: str, line: int, tag: str) -> ValueError:
    return ValueError(f"{name}, line {line}: expected a BIO tag (O, B-type or I-type), got {tag!r}")


_FIELD_SEP = re.compile(r"[ \t]+")


def split_lines(text: str) -> list[str]:
    """Lines as the readers cut them: at "\n" only (a trailing "\r" dropped), not at U+0085 or U+2028."""
    lines = [line[:-1] if line.endswith("\r") else line for line in text.split("\n")]
    return lines[:-1] if lines and lines[-1] == "" else lines


def split_words(line: str) -> list[str]:
    """Words as the readers cut them: at spaces and tabs only, not at U+00A0 or other Unicode spaces."""
    line = line.strip(" \t\r")
    return _FIELD_SEP.split(line) if line else []


class IOBRepairWarning(UserWarning):
    """``I-x`` tags that began an entity (IOB1) were rewritten as ``B-x`` (IOB2)."""


class _Repairs:
    """Counts ``I-x`` tags that start an entity (after ``O``, another type or a sentence start)
    and rewrites them as ``B-x``: the usual IOB1 -> IOB2 conversion."""

    def __init__(self, name: str) -> None:
        self.name, self.count, self.first = name, 0, None
        self.prev = "O"

    def new_sentence(self) -> None:
        self.prev = "O"

    def __call__(self, tag: str, line: int) -> str:
        if tag.startswith("I-") and (self.prev == "O" or self.prev[2:] != tag[2:]):
            self.count += 1
            if self.first is None:
                self.first = (line, tag, self.prev)
            tag = "B-" + tag[2:]
        self.prev = tag
        return tag

    def warn(self) -> None:
        if self.count:
            import warnings

            line, tag, prev = self.first
            after = "a sentence start or O" if prev == "O" else prev
            warnings.warn(f"warning: {self.name}, line {line}: {tag} after {after} starts an entity (IOB1); "
                          f"repaired {self.count} such tag(s) to B-x (IOB2)", IOBRepairWarning, stacklevel=3)


def _decode_utf8(data: bytes, name: str, why: str = "") -> str:
    """``data`` as UTF-8, or an error naming the file, the line and the bytes."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise ValueError(
            f"{name}, line {line}: expected UTF-8 text{why}, got undecodable byte(s) "
            f"{data[e.start:e.end]!r} ({e.reason})"
        ) from None


def _parse_columns(data: bytes, name: str) -> list[Sentence]:
    """The four-column format ``token POS word NER``, blank line between sentences."""
    text = _decode_utf8(data[3:] if data.startswith(b"\xef\xbb\xbf") else data, name)
    sentences: list[Sentence] = []
    words: list[str] = []
    tags: list[str] = []
    good_tags: set[str] = set()
    repair = _Repairs(name)
    # Lines end at "\n" only and fields are separated by spaces or tabs only:
    # str.splitlines() and str.split() would also cut at characters such as
    # U+0085 or U+00A0 that can be part of a word.
    for lineno, line in enumerate(text.split("\n"), start=1):
        line = line.strip(" \t\r")
        fields = _FIELD_SEP.split(line) if line else []
        if not fields:  # a blank line ends a sentence
            if words:
                sentences.append(Sentence(tuple(words), tuple(tags)))
                words, tags = [], []
            repair.new_sentence()
            continue
        if len(fields) != 4:
            raise ValueError(
                f"{name}, line {lineno}: expected 4 space-separated columns "
                f"'token POS word NER', got {len(fields)}: {line!r}"
            )
        tag = fields[3]
        if tag not in good_tags:
            if not _is_bio(tag):
                raise _bad_tag(name, lineno, tag)
            good_tags.add(tag)
        words.append(fields[2])
        tags.append(repair(tag, lineno))
    if words:
        sentences.append(Sentence(tuple(words), tuple(tags)))
    repair.warn()
    return sentences


def _parse_csv(data: bytes, name: str) -> list[Sentence]:
    """The CSV form ``Sentence #,Word,POS,Tag`` (latin-1, or UTF-8 when it opens with a byte-order mark)."""
    if data.startswith(b"\xef\xbb\xbf"):  # a UTF-8 BOM: the file says it is UTF-8 (e.g. saved by Excel)
        text = _decode_utf8(data[3:], name, " (the file opens with a UTF-8 byte-order mark)")
    else:
        text = data.decode("latin-1")  # never fails: every byte is a latin-1 character
    reader = csv.reader(io.StringIO(text, newline=""))
    header = next(reader, None)
    if header is None or tuple(h.strip() for h in header) != CSV_HEADER:
        raise ValueError(f"{name}, line 1: expected the CSV header {','.join(CSV_HEADER)!r}, got {header}")
    sentences: list[Sentence] = []
    words: list[str] = []
    tags: list[str] = []
    good_tags: set[str] = set()
    repair = _Repairs(name)
    started = False
    for row in reader:
        if not row:  # blank line (e.g. at the end): no token
            continue
        if len(row) != 4:
            raise ValueError(
                f"{name}, line {reader.line_num}: expected 4 comma-separated columns "
                f"{','.join(CSV_HEADER)!r}, got {len(row)}: {row}"
            )
        first, word, _pos, tag = row
        if first:
            if not first.startswith("Sentence:"):
                raise ValueError(
                    f"{name}, line {reader.line_num}: expected 'Sentence: N' or an empty "
                    f"first column, got {first!r}"
                )
            if words:
                sentences.append(Sentence(tuple(words), tuple(tags)))
                words, tags = [], []
            repair.new_sentence()
            started = True
        elif not started:
            raise ValueError(
                f"{name}, line {reader.line_num}: expected the first row to start a sentence "
                f"('Sentence: 1' in the first column), got an empty first column"
            )
        if tag not in good_tags:
            if not _is_bio(tag):
                raise _bad_tag(name, reader.line_num, tag)
            good_tags.add(tag)
        words.append(word)
        tags.append(repair(tag, reader.line_num))
    if words:
        sentences.append(Sentence(tuple(words), tuple(tags)))
    repair.warn()
    return sentences


def read_gmb(path: str | Path) -> list[Sentence]:
    """Read a GMB file in either format (see the module docstring), maybe zipped or gzipped.

    The CSV form is recognised by its header line (``Sentence #,...``) or by a
    ``.csv`` name (then the header is required); anything else is read as the
    four-column format. Raises ``ValueError`` naming file and line on bad
    input, and on a file with no sentence at all.
    """
    data, name = read_bytes(path, what="GMB")
    if not data.strip():
        raise ValueError(f"{name}, line 1: expected GMB sentences, got an empty file")
    stem = name[: -len(".gz")] if name.lower().endswith(".gz") else name
    head = data.lstrip(b"\xef\xbb\xbf")[:64]
    if head.startswith(b"Sentence #") or stem.lower().endswith(".csv"):
        sentences = _parse_csv(data, name)
    else:
        sentences = _parse_columns(data, name)
    if not sentences:
        raise ValueError(f"{name}: expected at least one sentence, got none")
    return sentences


# ---------------------------------------------------------------------------
# Splits


def _validate_ratios(ratios: Sequence[float]) -> tuple[float, float, float]:
    r = tuple(float(x) for x in ratios)
    if len(r) != 3 or any(x < 0 for x in r) or abs(sum(r) - 1.0) > 1e-6:
        raise ValueError(f"expected 3 non-negative ratios (train, val, test) summing to 1, got {tuple(ratios)}")
    return r  # type: ignore[return-value]


def load_splits(
    paths: str | Path | Sequence[str | Path],
    seed: int = 0,
    ratios: Sequence[float] = (0.6, 0.2, 0.2),
) -> dict[str, list[Sentence]]:
    """Train/val/test sentences from one file (seeded random split) or three (as given).

    One file: its sentences are shuffled with ``random.Random(seed)`` and cut
    at ``round(n * ratios[0])`` and ``round(n * (ratios[0] + ratios[1]))``;
    each split keeps the shuffled order, so its first N sentences are a
    random sample (``--limit-train``). Three files: read as train, val, test;
    ``seed`` and ``ratios`` are unused.
    """
    if isinstance(paths, (str, Path)):
        paths = [paths]
    paths = list(paths)
    r = _validate_ratios(ratios)
    if len(paths) == 3:
        return {split: read_gmb(p) for split, p in zip(SPLITS, paths)}
    if len(paths) != 1:
        raise ValueError(f"expected 1 GMB file (split {r}) or 3 (train, val, test), got {len(paths)}: {paths}")
    sentences = read_gmb(paths[0])
    order = list(range(len(sentences)))
    random.Random(seed).shuffle(order)
    n = len(order)
    a, b = round(n * r[0]), round(n * (r[0] + r[1]))
    return {
        "train": [sentences[i] for i in order[:a]],
        "val": [sentences[i] for i in order[a:b]],
        "test": [sentences[i] for i in order[b:]],
    }


def limit_sentences(sentences: list, n: int | None, seed: int, shuffled: bool) -> list:
    """``--limit-train``: N training sentences drawn at random with ``seed`` (the split seed).

    The split of a single file is already a seeded shuffle, so its first N are
    such a draw; a training file given as is gets shuffled with ``seed`` first.
    Either way the subset is the same for every training ``seed``.
    """
    if not n:
        return sentences
    if shuffled:
        return sentences[:n]
    pick = np.sort(np.random.default_rng(seed).permutation(len(sentences))[:n])
    return [sentences[i] for i in pick]


# ---------------------------------------------------------------------------
# Vocabularies

def normalize_word(word: str) -> str:
    """The word-lookup form of Lample et al. (2016): lower-case, every ASCII digit -> "0"."""
    word = word.lower()
    for digit in "123456789":  # 20x faster than str.translate on long non-ASCII text
        word = word.replace(digit, "0")
    return word


class Vocab:
    """A bijection between strings and ``0..len-1``, JSON-serializable.

    ``index`` maps an unknown string to ``<unk>`` when the vocabulary has one
    and raises ``KeyError`` otherwise (tags: an unknown tag is a bug, not data).
    """

    PAD = "<pad>"
    UNK = "<unk>"

    def __init__(self, itos: Iterable[str]):
        self.itos: list[str] = list(itos)
        if not all(isinstance(s, str) for s in self.itos):
            bad = [type(s).__name__ for s in self.itos if not isinstance(s, str)]
            raise ValueError(f"expected strings, got {bad[:5]}")
        self.stoi: dict[str, int] = {s: i for i, s in enumerate(self.itos)}
        if len(self.stoi) != len(self.itos):
            dup = [s for s, c in Counter(self.itos).items() if c > 1]
            raise ValueError(f"expected distinct entries, got duplicates {dup[:10]}")
        self.unk_index: int | None = self.stoi.get(self.UNK)
        self.pad_index: int | None = self.stoi.get(self.PAD)

    @classmethod
    def build(
        cls,
        items: Iterable[str],
        *,
        min_count: int = 1,
        specials: Sequence[str] = (PAD, UNK),
    ) -> "Vocab":
        """Specials first (in the given order), then every item seen ``min_count`` times or
        more, most frequent first, ties in alphabetical order (deterministic)."""
        return cls.from_counts(Counter(items), min_count=min_count, specials=specials)

    @classmethod
    def from_counts(
        cls,
        counts: Mapping[str, int],
        *,
        min_count: int = 1,
        specials: Sequence[str] = (PAD, UNK),
    ) -> "Vocab":
        """As :meth:`build`, from counts already made."""
        if min_count < 1:
            raise ValueError(f"expected min_count >= 1, got {min_count}")
        kept = [s for s, c in counts.items() if c >= min_count and s not in specials]
        kept.sort(key=lambda s: (-counts[s], s))
        return cls([*specials, *kept])

    def __len__(self) -> int:
        return len(self.itos)

    def __contains__(self, s: object) -> bool:
        return s in self.stoi

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocab) and self.itos == other.itos

    def __repr__(self) -> str:
        return f"Vocab({len(self)} entries: {self.itos[:5]}{' ...' if len(self) > 5 else ''})"

    def index(self, s: str) -> int:
        i = self.stoi.get(s)
        if i is not None:
            return i
        if self.unk_index is None:
            raise KeyError(f"{s!r} is not in the vocabulary, which has no {self.UNK} (entries: {self.itos[:20]})")
        return self.unk_index

    def encode(self, seq: Iterable[str]) -> list[int]:
        return [self.index(s) for s in seq]

    def decode(self, ids: Iterable[int]) -> list[str]:
        return [self.itos[i] for i in ids]

    def to_json(self) -> dict:
        return {"itos": list(self.itos)}

    @classmethod
    def from_json(cls, d: dict) -> "Vocab":
        if not isinstance(d, dict) or not isinstance(d.get("itos"), list):
            raise ValueError(f"expected a dict {{'itos': [str, ...]}}, got {type(d).__name__} {str(d)[:80]}")
        return cls(d["itos"])


def build_vocabs(train: Sequence[Sentence], *, more_tags: Iterable[Sentence] = ()) -> dict[str, Vocab]:
    """The vocabularies of a tagger, from the training sentences only.

    - ``"words"``: ``normalize_word`` forms, ``<pad>`` = 0, ``<unk>`` = 1, then by frequency.
    - ``"chars"``: characters of the original words, ``<pad>`` = 0, ``<unk>`` = 1, then by frequency.
    - ``"tags"``: no specials (padding is masked, never a tag), ``"O"`` first
      then the others sorted, so a tag's index depends only on the tag set.
      ``more_tags`` adds the tags of other sentences (e.g. val and test): the
      label set is not learned, and a tag missing from it would be a KeyError.
    """
    raw: Counter[str] = Counter()
    for s in train:
        raw.update(s.words)
    normalized: Counter[str] = Counter()
    chars: Counter[str] = Counter()
    for w, n in raw.items():  # per distinct word, not per token: 20x fewer calls on GMB
        normalized[normalize_word(w)] += n
        for c in w:
            chars[c] += n
    tag_set = {t for s in train for t in s.tags} | {t for s in more_tags for t in s.tags}
    tags = Vocab(["O"] * ("O" in tag_set) + sorted(tag_set - {"O"}))
    return {"words": Vocab.from_counts(normalized), "chars": Vocab.from_counts(chars), "tags": tags}
