"""normlab.data.gmb: both GMB formats, their errors, splits, vocabularies; the real corpus."""

from __future__ import annotations

import gzip
import json
import zipfile
from collections import Counter

import pytest

import normlab.data.gmb as gmb_module
from normlab.data.gmb import Sentence, Vocab, build_vocabs, load_splits, normalize_word, read_gmb

COLUMNS = (
    "thousand NNS Thousands O\n"
    "of IN of O\n"
    "london NNP London B-geo\n"
    ". . . O\n"
    "\n"
    "the DT The O\n"
    "new NNP New B-org\n"
    "york NNP York I-org\n"
    "in IN in O\n"
    "2005 CD 2005 B-tim\n"
)
COLUMNS_SENTENCES = [
    Sentence(("Thousands", "of", "London", "."), ("O", "O", "B-geo", "O")),
    Sentence(("The", "New", "York", "in", "2005"), ("O", "B-org", "I-org", "O", "B-tim")),
]

# Quotes and commas inside words, latin-1 bytes (ü, é), and a sentence of one row.
CSV_TEXT = (
    "Sentence #,Word,POS,Tag\n"
    'Sentence: 1,"Hello, world",NN,O\n'
    ',"""",``,O\n'
    ",Zürich,NNP,B-geo\n"
    ",\"1,000\",CD,O\n"
    "Sentence: 2,Café,NNP,B-org\n"
    "Sentence: 3,Bush,NNP,B-per\n"
    ",said,VBD,O\n"
)
CSV_SENTENCES = [
    Sentence(("Hello, world", '"', "Zürich", "1,000"), ("O", "O", "B-geo", "O")),
    Sentence(("Café",), ("B-org",)),
    Sentence(("Bush", "said"), ("B-per", "O")),
]


def write(path, text, encoding="utf-8"):
    path.write_bytes(text.encode(encoding))
    return path


# --- the two formats -------------------------------------------------------


def test_columns_format_splits_sentences_at_blank_lines(tmp_path):
    # Several blank lines and a missing final blank line change nothing.
    text = COLUMNS.replace("\n\n", "\n\n\n  \n")
    assert read_gmb(write(tmp_path / "gmb.txt", text)) == COLUMNS_SENTENCES
    assert read_gmb(write(tmp_path / "gmb2.txt", COLUMNS + "\n")) == COLUMNS_SENTENCES


def test_columns_format_words_may_hold_unicode_spaces_and_line_breaks(tmp_path):
    # NBSP, NEL and LINE SEPARATOR are not separators here; tabs and CRLF are.
    text = "x CD 1\u00a0000 O\r\ny :\tand\u0085so B-art\n\nz NN a\u2028b O\n"
    s = read_gmb(write(tmp_path / "gmb.txt", text))
    assert s == [Sentence(("1\u00a0000", "and\u0085so"), ("O", "B-art")), Sentence(("a\u2028b",), ("O",))]


def test_columns_format_keeps_the_original_word_not_the_token(tmp_path):
    s = read_gmb(write(tmp_path / "gmb.txt", "run VBD Ran O\n"))
    assert s == [Sentence(("Ran",), ("O",))]


def test_csv_format_with_quotes_commas_and_latin1(tmp_path):
    path = write(tmp_path / "ner.csv", CSV_TEXT, encoding="latin-1")
    assert read_gmb(path) == CSV_SENTENCES


def test_csv_with_a_utf8_byte_order_mark_is_read_as_utf8(tmp_path):
    """Issue 16, finding 8: a CSV saved as UTF-8 with a BOM was decoded as latin-1 ('zã¼rich')."""
    path = tmp_path / "ner.csv"
    path.write_bytes(b"\xef\xbb\xbf" + "Sentence #,Word,POS,Tag\nSentence: 1,Z\u00fcrich,NNP,B-geo\n".encode())
    assert read_gmb(path) == [Sentence(("Z\u00fcrich",), ("B-geo",))]
    path.write_bytes(b"\xef\xbb\xbfSentence #,Word,POS,Tag\nSentence: 1,Z\xfcrich,NNP,B-geo\n")  # BOM, then latin-1
    with pytest.raises(ValueError, match=r"ner\.csv, line 2: expected UTF-8 text \(the file opens with a UTF-8 "
                                         r"byte-order mark\), got undecodable byte\(s\) b'\\xfc'"):
        read_gmb(path)


def test_csv_is_recognised_by_header_whatever_the_name(tmp_path):
    path = write(tmp_path / "ner.data", CSV_TEXT, encoding="latin-1")
    assert read_gmb(path) == CSV_SENTENCES


def test_zip_and_gz_inputs(tmp_path):
    csv_bytes = CSV_TEXT.encode("latin-1")
    with zipfile.ZipFile(tmp_path / "ner.zip", "w") as zf:
        zf.writestr("ner_dataset.csv", csv_bytes)
        zf.writestr("__MACOSX/._ner_dataset.csv", b"junk")  # ignored
    assert read_gmb(tmp_path / "ner.zip") == CSV_SENTENCES
    (tmp_path / "gmb.txt.gz").write_bytes(gzip.compress(COLUMNS.encode()))
    assert read_gmb(tmp_path / "gmb.txt.gz") == COLUMNS_SENTENCES
    (tmp_path / "ner.csv.gz").write_bytes(gzip.compress(csv_bytes))
    assert read_gmb(tmp_path / "ner.csv.gz") == CSV_SENTENCES


def test_zip_with_several_members_needs_a_member_name(tmp_path):
    path = tmp_path / "two.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("train.txt", COLUMNS)
        zf.writestr("other.txt", COLUMNS)
    with pytest.raises(ValueError, match=r"two\.zip.*single GMB member.*2 members"):
        read_gmb(path)
    assert read_gmb(f"{path}:train.txt") == COLUMNS_SENTENCES
    with pytest.raises(ValueError, match=r"no member 'nope\.txt'"):
        read_gmb(f"{path}:nope.txt")


def test_broken_archives(tmp_path):
    gz = tmp_path / "cut.txt.gz"
    gz.write_bytes(gzip.compress(COLUMNS.encode())[:-12])  # truncated
    with pytest.raises(ValueError, match=r"cut\.txt\.gz: expected a readable GMB file, got a broken one"):
        read_gmb(gz)
    not_zip = write(tmp_path / "plain.zip", COLUMNS)
    with pytest.raises(ValueError, match=r"plain\.zip: expected a readable GMB file, got a broken one"):
        read_gmb(f"{not_zip}:member.txt")


# --- errors name the file and the line -------------------------------------


@pytest.mark.parametrize(
    "text, line, expected",
    [
        ("a DT A O\nb NN B\n", 2, r"expected 4 space-separated columns.*got 3"),
        ("a DT A O\n\nb NN B O extra\n", 3, r"expected 4 space-separated columns.*got 5"),
        ("a DT A O\nb NN B GEO\n", 2, r"expected a BIO tag.*'GEO'"),
        ("a DT A B-\n", 1, r"expected a BIO tag.*'B-'"),
        ("a DT A X-geo\n", 1, r"expected a BIO tag.*'X-geo'"),
    ],
)
def test_columns_errors_name_file_and_line(tmp_path, text, line, expected):
    path = write(tmp_path / "bad.txt", text)
    with pytest.raises(ValueError, match=rf"bad\.txt, line {line}: {expected}"):
        read_gmb(path)


def test_undecodable_bytes_name_the_line(tmp_path):
    path = tmp_path / "bad.txt"
    path.write_bytes(b"a DT A O\n\nb NN Z\xfcrich B-geo\n")  # latin-1 byte in a UTF-8 file
    with pytest.raises(ValueError, match=r"bad\.txt, line 3: expected UTF-8 text.*\\xfc"):
        read_gmb(path)


@pytest.mark.parametrize("content", [b"", b"\n\n  \n"])
def test_empty_file(tmp_path, content):
    path = tmp_path / "empty.txt"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=r"empty\.txt, line 1: expected GMB sentences, got an empty file"):
        read_gmb(path)


def test_missing_file(tmp_path):
    with pytest.raises(ValueError, match=r"no such file"):
        read_gmb(tmp_path / "nope.csv")


@pytest.mark.parametrize(
    "text, line, expected",
    [
        ("Word,POS,Tag\nx,y,O\n", 1, r"expected the CSV header 'Sentence #,Word,POS,Tag'"),
        ("Sentence #,Word,POS,Tag\nSentence: 1,a,DT,O\n,b,NN\n", 3, r"expected 4 comma-separated columns.*got 3"),
        ("Sentence #,Word,POS,Tag\nSentence: 1,a,DT,O\n,b,NN,B-geo,x\n", 3, r"expected 4 comma-separated.*got 5"),
        ("Sentence #,Word,POS,Tag\nSentence: 1,a,DT,O\n,b,NN,geo\n", 3, r"expected a BIO tag.*'geo'"),
        ("Sentence #,Word,POS,Tag\n,a,DT,O\n", 2, r"expected the first row to start a sentence"),
        ("Sentence #,Word,POS,Tag\nSentence: 1,a,DT,O\n12,b,NN,O\n", 3, r"expected 'Sentence: N'"),
    ],
)
def test_csv_errors_name_file_and_line(tmp_path, text, line, expected):
    path = write(tmp_path / "bad.csv", text, encoding="latin-1")
    with pytest.raises(ValueError, match=rf"bad\.csv, line {line}: {expected}"):
        read_gmb(path)


def test_csv_line_numbers_count_physical_lines(tmp_path):
    # A quoted word spanning two lines: the error on the next row is on line 4.
    text = 'Sentence #,Word,POS,Tag\nSentence: 1,"a\nb",DT,O\n,c,NN,Q\n'
    with pytest.raises(ValueError, match=r"bad\.csv, line 4: expected a BIO tag"):
        read_gmb(write(tmp_path / "bad.csv", text))


def test_error_inside_zip_names_the_member(tmp_path):
    path = tmp_path / "ner.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("ner.txt", "a DT A O\nb NN B Q\n")
    with pytest.raises(ValueError, match=r"ner\.zip:ner\.txt, line 2: expected a BIO tag"):
        read_gmb(path)


def test_csv_with_header_only_has_no_sentences(tmp_path):
    with pytest.raises(ValueError, match=r"only\.csv: expected at least one sentence"):
        read_gmb(write(tmp_path / "only.csv", "Sentence #,Word,POS,Tag\n"))


# --- splits ----------------------------------------------------------------


def many_sentences(tmp_path, n=50):
    lines = []
    for i in range(n):
        lines += [f"w{i} NN W{i} O", f"x NN x{i} B-geo", ""]
    return write(tmp_path / "many.txt", "\n".join(lines))


def test_one_file_is_split_60_20_20_seeded_and_disjoint(tmp_path):
    path = many_sentences(tmp_path)
    splits = load_splits(path, seed=3)
    assert [len(splits[k]) for k in ("train", "val", "test")] == [30, 10, 10]
    everything = read_gmb(path)
    assert Counter(s for k in splits for s in splits[k]) == Counter(everything)  # a partition
    assert load_splits([path], seed=3) == splits
    other = load_splits([path], seed=4)
    assert other["train"] != splits["train"]
    assert set(other["train"]) | set(other["val"]) | set(other["test"]) == set(everything)


def test_split_ratios(tmp_path):
    path = many_sentences(tmp_path)
    splits = load_splits(path, ratios=(0.8, 0.1, 0.1))
    assert [len(splits[k]) for k in ("train", "val", "test")] == [40, 5, 5]
    with pytest.raises(ValueError, match=r"expected 3 non-negative ratios.*sum.*, got \(0\.5, 0\.2, 0\.2\)"):
        load_splits(path, ratios=(0.5, 0.2, 0.2))


def test_three_files_are_taken_as_given(tmp_path):
    a = write(tmp_path / "a.txt", COLUMNS)
    b = write(tmp_path / "b.csv", CSV_TEXT, encoding="latin-1")
    c = write(tmp_path / "c.txt", "x NN X O\n")
    splits = load_splits([a, b, c])
    assert splits == {"train": COLUMNS_SENTENCES, "val": CSV_SENTENCES, "test": [Sentence(("X",), ("O",))]}
    with pytest.raises(ValueError, match=r"expected 1 GMB file .* or 3 \(train, val, test\), got 2"):
        load_splits([a, b])


# --- words and vocabularies ------------------------------------------------


def test_normalize_word():
    assert normalize_word("London") == "london"
    assert normalize_word("1,987.50") == "0,000.00"
    assert normalize_word("B52s") == "b00s"
    assert normalize_word("ÉCOLE") == "école"


def test_vocab_build_order_min_count_and_unk():
    v = Vocab.build(["b", "a", "c", "a", "b", "a", "d"], min_count=1)
    assert v.itos == ["<pad>", "<unk>", "a", "b", "c", "d"]  # by count, ties alphabetical
    assert (v.pad_index, v.unk_index) == (0, 1)
    assert v.index("a") == 2 and v.index("zzz") == 1
    assert v.encode(["d", "nope", "a"]) == [5, 1, 2]
    assert v.decode([2, 3]) == ["a", "b"]
    assert Vocab.build(["b", "a", "c", "a", "b", "a"], min_count=2).itos == ["<pad>", "<unk>", "a", "b"]
    with pytest.raises(ValueError, match="min_count >= 1"):
        Vocab.build(["a"], min_count=0)


def test_vocab_without_unk_raises_keyerror():
    v = Vocab.build(["O", "B-geo"], specials=())
    assert v.unk_index is None and len(v) == 2
    with pytest.raises(KeyError, match=r"'I-xyz' is not in the vocabulary, which has no <unk>"):
        v.index("I-xyz")


def test_vocab_json_round_trip():
    v = Vocab.build(["ß", "a", '"', "a"])
    back = Vocab.from_json(json.loads(json.dumps(v.to_json())))
    assert back == v and back.itos == v.itos and back.index("ß") == v.index("ß")
    assert back.index("never") == v.unk_index
    with pytest.raises(ValueError, match=r"expected a dict \{'itos'"):
        Vocab.from_json({"stoi": {}})
    with pytest.raises(ValueError, match=r"expected distinct entries, got duplicates \['a'\]"):
        Vocab(["a", "b", "a"])


def test_build_vocabs_uses_train_only():
    train = [Sentence(("The", "Berlin", "2005", "berlin"), ("O", "B-geo", "B-tim", "B-geo"))]
    test = [Sentence(("Paris",), ("B-geo",))]
    v = build_vocabs(train)
    words, chars, tags = v["words"], v["chars"], v["tags"]
    assert words.itos[:2] == ["<pad>", "<unk>"]
    assert words.index("berlin") != words.unk_index  # "Berlin" and "berlin" share an entry
    assert "Berlin" not in words and "0000" in words  # normalized forms
    assert words.index(normalize_word(test[0].words[0])) == words.unk_index  # a test-only word is unknown
    assert "B" in chars and "b" in chars and "P" not in chars  # original characters, train only
    assert chars.index("P") == chars.unk_index
    assert tags.itos == ["O", "B-geo", "B-tim"] and tags.pad_index is None
    more = build_vocabs(train, more_tags=[Sentence(("x",), ("I-per",))])
    assert more["tags"].itos == ["O", "B-geo", "B-tim", "I-per"]


# --- the real corpus --------------------------------------------------------

README_TAG_COUNTS = {
    "O": 887_908, "B-geo": 37_644, "B-tim": 20_333, "B-org": 20_143, "I-per": 17_251, "B-per": 16_990,
    "I-org": 16_784, "B-gpe": 15_870, "I-geo": 7_414, "I-tim": 6_528, "B-art": 402, "B-eve": 308,
    "I-art": 297, "I-eve": 253, "B-nat": 201, "I-gpe": 198, "I-nat": 51,
}  # fmt: skip


@pytest.fixture(scope="module")
def gmb(gmb_csv_zip):
    return read_gmb(gmb_csv_zip)


def test_real_gmb_csv_zip_matches_the_readme(gmb):
    assert len(gmb) == 47_959
    assert sum(len(s) for s in gmb) == 1_048_575
    assert all(len(s.words) == len(s.tags) > 0 for s in gmb)
    counts = Counter(t for s in gmb for t in s.tags)
    assert counts == README_TAG_COUNTS
    assert gmb[0].words[:3] == ("Thousands", "of", "demonstrators")


def test_real_gmb_split_and_vocabs(gmb, gmb_csv_zip, monkeypatch):
    # The file was read (and checked) by the fixture: reuse it, and check the
    # split is a partition of those very objects.
    monkeypatch.setattr(gmb_module, "read_gmb", lambda path: gmb if path == gmb_csv_zip else pytest.fail(path))
    splits = load_splits(gmb_csv_zip, seed=0)
    assert [len(splits[k]) for k in ("train", "val", "test")] == [28_775, 9_592, 9_592]
    assert sorted(id(s) for k in splits for s in splits[k]) == sorted(id(s) for s in gmb)
    assert load_splits(gmb_csv_zip, seed=0)["test"] == splits["test"]
    v = build_vocabs(splits["train"], more_tags=splits["val"] + splits["test"])
    assert len(v["tags"]) == 17 and v["tags"].itos[0] == "O"
    train_words = {normalize_word(w) for w in {w for s in splits["train"] for w in s.words}}
    assert len(v["words"]) == len(train_words) + 2
    test_only = {normalize_word(w) for w in {w for s in splits["test"] for w in s.words}} - train_words
    assert test_only and all(v["words"].index(w) == v["words"].unk_index for w in test_only)
