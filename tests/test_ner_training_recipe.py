"""Lample et al.'s training recipe: summed loss, per-sentence clip, singleton replacement,
GloVe rows for evaluation words; and the two NER measures the report adds."""

import numpy as np
import pytest
import torch

from normlab.data.embeddings import extend_with_pretrained
from normlab.data.gmb import Vocab
from normlab.models.tagger import BiLSTMTagger, TaggerBatch
from normlab.train import ner, ner_eval


@pytest.mark.parametrize("crf", [False, True])
def test_summed_loss_is_batch_size_times_the_mean(crf):
    torch.manual_seed(0)
    model = BiLSTMTagger(num_words=20, num_tags=5, word_dim=6, hidden=4, dropout=0.0, crf=crf,
                         tag_names=["O", "B-a", "I-a", "B-b", "I-b"]).eval()
    words = torch.randint(2, 20, (3, 7))
    mask = torch.arange(7)[None, :] < torch.tensor([7, 4, 1])[:, None]
    batch = TaggerBatch(words=words, mask=mask, chars=None, tags=torch.randint(0, 5, (3, 7)))
    mean = model.loss(batch)
    total = model.loss(batch, reduction="sum")
    assert total.item() == pytest.approx(3 * mean.item(), rel=1e-6)
    with pytest.raises(ValueError, match="reduction"):
        model.loss(batch, reduction="max")


def test_clip_is_per_sentence_with_the_summed_loss():
    cfg = ner.NERConfig.__new__(ner.NERConfig)
    cfg.clip, cfg.loss_reduction = 5.0, "sum"
    assert ner.clip_threshold(cfg, 128) == 640.0
    assert ner.clip_threshold(cfg, 1) == 5.0
    cfg.loss_reduction = "mean"
    assert ner.clip_threshold(cfg, 128) == 5.0


def test_extend_with_pretrained_adds_known_eval_words_after_the_training_words():
    vocab = Vocab(["<pad>", "<unk>", "the", "paris"])
    glove = ["the", "paris", "berlin", "0000", "cairo"]
    out, added = extend_with_pretrained(vocab, ["Berlin", "Zzyzx", "the", "1999", "berlin", "Cairo"], glove)
    assert added == 3
    assert out.itos == ["<pad>", "<unk>", "the", "paris", "berlin", "0000", "cairo"]  # order of appearance
    assert out.index("zzyzx") == out.unk_index  # unknown to GloVe: stays <unk>
    same, none = extend_with_pretrained(vocab, ["the", "Paris", "qqq"], glove)
    assert none == 0 and same is vocab


def test_type_token_micro_f1_strips_prefixes_and_leaves_out_o():
    gold = ["B-geo", "I-geo", "O", "B-per", "O"]
    assert ner_eval.type_token_micro_f1(gold, gold) == 1.0
    # I-geo for B-geo is right at the token level (types match); the per token is missed.
    pred = ["I-geo", "B-geo", "O", "O", "O"]
    # tp 2 (geo, geo), fp 0, fn 1 (per): P 1, R 2/3, F1 0.8
    assert ner_eval.type_token_micro_f1(gold, pred) == pytest.approx(0.8)
    # a predicted entity where gold has O is a false positive: tp 2, fp 1, fn 0: P 2/3, R 1, F1 0.8
    assert ner_eval.type_token_micro_f1(["B-geo", "B-per", "O"], ["B-geo", "B-per", "B-org"]) == pytest.approx(0.8)
    # a wrong type is both: tp 0, fp 1, fn 1
    assert ner_eval.type_token_micro_f1(["B-geo"], ["B-per"]) == 0.0
    assert ner_eval.type_token_micro_f1(["O", "O"], ["O", "O"]) == 0.0
    assert ner_eval.entity_type("B-geo") == "geo" and ner_eval.entity_type("O") == "O"


@pytest.mark.parametrize("tags, bad", [
    (["O", "B-geo", "I-geo", "I-geo"], 0),
    (["I-geo", "O"], 1),  # at the sentence start
    (["O", "I-geo"], 1),  # after O
    (["B-per", "I-geo"], 1),  # after another type
    (["B-geo", "I-geo", "O", "I-geo", "I-per"], 2),
    ([], 0),
])
def test_invalid_bio_transitions(tags, bad):
    assert ner_eval.invalid_bio_transitions([tags]) == bad
    assert ner_eval.invalid_bio_transitions([tags, tags]) == 2 * bad


def test_singleton_replacement_trains_the_unk_row(tmp_path):
    """With unk_replace=1 every singleton is fed as <unk>, so <unk>'s embedding row moves;
    with 0, <unk> never occurs in training and its row stays as initialized."""
    from test_train_ner import tiny_cfg, write_four_column

    sents = [(["Zorbl", "visited", "Paris"], ["B-per", "O", "B-geo"]),
             (["Quix", "visited", "Paris"], ["B-per", "O", "B-geo"])] * 1
    sents += [(["John", "visited", "Paris"], ["B-per", "O", "B-geo"])] * 14
    data = [write_four_column(tmp_path / f"{n}.txt", sents) for n in ("train", "val", "test")]
    rows = {}
    for p in (0.0, 1.0):
        out = tmp_path / f"run{p}"
        ner.fit(tiny_cfg(data, out, unk_replace=p, epochs=1, eval_every=0, crf=False, char=False, dropout=0.0),
                progress=False)
        weights = torch.load(out / "last.pt", weights_only=True)["model"]
        (key,) = [k for k in weights if "embed" in k and "char" not in k]
        rows[p] = weights[key][1]  # <unk>
    # the same seed initializes both runs alike; only the p=1 run trains <unk>
    assert not torch.allclose(rows[0.0], rows[1.0])
