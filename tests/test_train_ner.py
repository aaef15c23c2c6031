"""The NER training loop: run directory, metrics, early stopping, divergence, exact resume."""

import json
import random

import numpy as np
import pytest
import torch

from normlab import files
from normlab.data import sentence_batches
from normlab.data.gmb import build_vocabs, read_gmb
from normlab.models.tagger import BiLSTMTagger
from normlab.train import ner, ner_eval, ner_tag, rundir
from normlab.train.metrics import classification_metrics

PLACES = ["Paris", "London", "Berlin", "Moscow", "Cairo"]
PEOPLE = [("John", "Smith"), ("Angela", "Merkel"), ("George", "Bush")]
FILLER = ["the", "a", "visited", "met", "in", "on", "Monday", "said", "today", "and", "officials", "."]


def synthetic_sentences(n, seed):
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        words, tags = [], []
        for _ in range(rng.randint(3, 9)):
            r = rng.random()
            if r < 0.2:
                words.append(rng.choice(PLACES))
                tags.append("B-geo")
            elif r < 0.35:
                first, last = rng.choice(PEOPLE)
                words += [first, last]
                tags += ["B-per", "I-per"]
            else:
                words.append(rng.choice(FILLER))
                tags.append("O")
        out.append((words, tags))
    return out


def write_four_column(path, sentences):
    lines = []
    for words, tags in sentences:
        lines += [f"{w.lower()} NN {w} {t}" for w, t in zip(words, tags)] + [""]
    path.write_text("\n".join(lines) + "\n")
    return str(path)


@pytest.fixture
def tiny_data(tmp_path):
    return [write_four_column(tmp_path / f"{name}.txt", synthetic_sentences(n, seed))
            for name, n, seed in (("train", 96, 0), ("val", 24, 1), ("test", 24, 2))]


def tiny_cfg(data, out, **kw):
    base = dict(data=data, out=str(out), char=True, crf=True, word_dim=12, hidden=10, char_dim=6, char_hidden=5,
                epochs=2, batch_size=16, lr=0.05, eval_every=4, train_eval_size=40, patience=5)
    base.update(kw)
    return ner.NERConfig(**base)


def test_run_directory_has_every_file_and_key(tiny_data, tmp_path):
    summary = ner.fit(tiny_cfg(tiny_data, tmp_path / "run"), progress=False)
    run = tmp_path / "run"
    for name in ("config.json", "metrics.jsonl", "best.pt", "last.pt", "vocab.json", "summary.json",
                 "curves.png", "train.log"):
        assert (run / name).is_file(), name
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["kind"] == "ner" and cfg["config"]["crf"] is True and cfg["env"]["device"] == "cpu"
    assert cfg["data"]["sizes"] == {"train": 96, "val": 24, "test": 24}
    assert cfg["data"]["embeddings"] == {"source": "random", "dim": 12}
    records = files.read_jsonl(run / "metrics.jsonl")
    # 96 / 16 = 6 updates an epoch: evaluations at 4, 6 (epoch end), 8, 12 (epoch end).
    assert [r["step"] for r in records] == [4, 6, 8, 12]
    keys = {"step", "epoch", "lr", "seconds", "train_loss", "train_accuracy", "train_micro_f1", "train_macro_f1",
            "val_loss", "val_accuracy", "val_micro_f1", "val_macro_f1", "val_entity_f1"}
    assert keys <= set(records[0])
    assert records[1]["epoch"] == 1.0 and records[-1]["epoch"] == 2.0
    assert records[-1]["lr"] == pytest.approx(0.05 / 1.05)
    assert summary == json.loads((run / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["diverged"] is False and summary["updates"] == 12
    assert summary["epochs_run"] == 2 and summary["seconds_per_epoch"] > 0
    best = max(records, key=lambda r: r["val_entity_f1"])
    assert summary["best_step"] == best["step"]
    for split in ("train", "val", "test"):
        assert set(summary["metrics"][split]) == {"accuracy", "micro_f1", "macro_f1", "entity_precision",
                                                  "entity_recall", "entity_f1", "loss", "type_micro_f1",
                                                  "invalid_transitions"}
    assert summary["metrics"]["val"]["entity_f1"] == pytest.approx(best["val_entity_f1"])
    vocab = json.loads((run / "vocab.json").read_text())
    assert vocab["tags"]["itos"][0] == "O" and vocab["model"]["crf"] is True
    # Reloaded without pickles, the tagger reproduces the best checkpoint's val score.
    bundle = ner_tag.load_tagger(run)
    val = read_gmb(tiny_data[1])
    pred = ner_tag.tag(bundle, [list(s.words) for s in val])
    from seqeval.metrics import f1_score
    assert f1_score([list(s.tags) for s in val], pred) == pytest.approx(summary["metrics"]["val"]["entity_f1"])
    with pytest.raises(ValueError, match="already holds a run"):
        ner.fit(tiny_cfg(tiny_data, run), progress=False)


def _comparable(records):
    return [{k: v for k, v in r.items() if "seconds" not in k} for r in records]


def test_resume_after_an_interruption_gives_the_same_run(tiny_data, tmp_path):
    straight = ner.fit(tiny_cfg(tiny_data, tmp_path / "a", epochs=3), progress=False)

    def interrupt(step):
        if step == 7:  # mid-epoch 2: last.pt is from the evaluation at update 6
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        ner.fit(tiny_cfg(tiny_data, tmp_path / "b", epochs=3), progress=False, on_update=interrupt)
    assert not (tmp_path / "b" / "summary.json").exists()
    assert rundir.load_checkpoint(tmp_path / "b" / "last.pt")["state"]["step"] == 6
    resumed = ner.fit(tiny_cfg(tiny_data, tmp_path / "b", epochs=3, resume=True), progress=False)

    a = files.read_jsonl(tmp_path / "a" / "metrics.jsonl")
    b = files.read_jsonl(tmp_path / "b" / "metrics.jsonl")
    assert [r["step"] for r in a] == [r["step"] for r in b] == [4, 6, 8, 12, 16, 18]
    for ra, rb in zip(_comparable(a), _comparable(b)):
        assert ra.keys() == rb.keys()
        for k in ra:
            assert ra[k] == pytest.approx(rb[k], abs=1e-6), k
    for k in ("status", "best_step", "best_epoch", "updates", "epochs_run"):
        assert straight[k] == resumed[k], k
    for split in ("train", "val", "test"):
        for k, v in straight["metrics"][split].items():
            assert resumed["metrics"][split][k] == pytest.approx(v, abs=1e-6), (split, k)
    wa = rundir.load_checkpoint(tmp_path / "a" / "last.pt")["model"]
    wb = rundir.load_checkpoint(tmp_path / "b" / "last.pt")["model"]
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], rtol=0, atol=1e-6)


def test_early_stopping_counts_epochs_without_a_better_val_entity_f1(tiny_data, tmp_path):
    # A learning rate too small to change anything: the first evaluation stays the best.
    summary = ner.fit(tiny_cfg(tiny_data, tmp_path / "r", epochs=6, patience=2, lr=1e-12, eval_every=0),
                      progress=False)
    assert summary["status"] == "early_stopped"
    assert summary["best_step"] == 6 and summary["updates"] == 18  # epochs 2 and 3 brought nothing
    assert "early stopped after epoch 3" in summary["message"]
    assert "early stopped" in (tmp_path / "r" / "train.log").read_text()


def test_min_delta_stops_on_a_plateau_while_best_pt_keeps_following_every_new_best(tiny_data, tmp_path):
    # No gain can exceed 0.99 after the first evaluation: epochs 2 and 3 count as a plateau even if
    # they bring a new best, and training stops after epoch 3; best_step still names the best line.
    out = tmp_path / "r"
    summary = ner.fit(tiny_cfg(tiny_data, out, epochs=6, patience=2, min_delta=0.99, eval_every=0), progress=False)
    assert summary["status"] == "early_stopped" and summary["updates"] == 18
    assert "by more than 0.99" in summary["message"]
    lines = files.read_jsonl(out / "metrics.jsonl")
    scores = [r["val_entity_f1"] for r in lines]
    assert summary["best_step"] == lines[scores.index(max(scores))]["step"]


@pytest.mark.parametrize("bad", [-0.1, 1.0, float("nan"), True])
def test_min_delta_out_of_range_is_refused(bad, tiny_data, tmp_path):
    with pytest.raises(ValueError, match="min-delta"):
        ner.NERConfig(data=tiny_data, out=str(tmp_path / "r"), min_delta=bad)


def test_a_non_finite_loss_stops_the_run_as_diverged_keeping_the_best(tiny_data, tmp_path, monkeypatch):
    calls = {"n": 0}
    real_loss = BiLSTMTagger.loss

    def loss(self, batch, emissions=None, reduction="mean"):
        value = real_loss(self, batch, emissions, reduction)
        if self.training:
            calls["n"] += 1
            if calls["n"] == 6:
                return value * float("nan")
        return value

    monkeypatch.setattr(BiLSTMTagger, "loss", loss)
    summary = ner.fit(tiny_cfg(tiny_data, tmp_path / "r", eval_every=2), progress=False)
    assert summary["status"] == "diverged" and summary["diverged"] is True
    assert summary["updates"] == 5 and "non-finite training loss" in summary["message"]
    assert summary["best_step"] in (2, 4) and summary["metrics"]["test"]["accuracy"] > 0
    assert "diverged" in (tmp_path / "r" / "train.log").read_text()


def test_evaluate_equals_a_per_sentence_reference(tiny_data):
    from seqeval.metrics import f1_score, precision_score, recall_score

    train, val = read_gmb(tiny_data[0]), read_gmb(tiny_data[1])
    vocabs = build_vocabs(train)
    names = vocabs["tags"].itos
    torch.manual_seed(0)
    model = BiLSTMTagger(len(vocabs["words"]), len(names), num_chars=len(vocabs["chars"]), word_dim=8, hidden=6,
                         char_dim=4, char_hidden=3, crf=True, tag_names=names, crf_constraints=False).eval()
    with torch.no_grad():
        model.proj.bias += torch.linspace(0, 2, len(names))  # make some non-O predictions
    enc = sentence_batches.encode_sentences(val, vocabs)
    got = ner_eval.evaluate(model, enc, names, batch_size=5)
    gold, pred, losses = [], [], []
    for i in range(len(val)):
        batch = sentence_batches.collate(enc, [i], with_chars=True)
        pred.append([names[t] for t in model.predict(batch)[0].tolist()])
        gold.append(list(val[i].tags))
        with torch.no_grad():
            losses.append(float(model.loss(batch)))
    flat = lambda seqs: [vocabs["tags"].index(t) for s in seqs for t in s]  # noqa: E731
    want = classification_metrics(flat(gold), flat(pred), labels=[i for i, t in enumerate(names) if t != "O"])
    assert any(t != "O" for s in pred for t in s)
    for k in ("accuracy", "micro_f1", "macro_f1"):
        assert got[k] == pytest.approx(want[k])
    assert got["entity_f1"] == pytest.approx(f1_score(gold, pred))
    assert got["entity_precision"] == pytest.approx(precision_score(gold, pred))
    assert got["entity_recall"] == pytest.approx(recall_score(gold, pred))
    assert got["loss"] == pytest.approx(np.mean(losses), rel=1e-5)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_vectorized_entity_and_token_scores_equal_seqeval_and_the_per_token_functions(seed):
    """Random tags, BIO-invalid ones included (I-x after O, after I-y, first in a sentence)."""
    from seqeval.metrics import f1_score, precision_score, recall_score
    from seqeval.metrics.sequence_labeling import get_entities

    names = ["O", "B-geo", "I-geo", "B-per", "I-per", "B-org", "I-org"]
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, 12, size=60)
    p = np.array([0.5] + [0.5 / 6] * 6)
    gold, pred = rng.choice(7, size=lengths.sum(), p=p), rng.choice(7, size=lengths.sum(), p=p)
    cuts = np.cumsum(lengths)[:-1]
    sents = lambda ids: [[names[t] for t in s] for s in np.split(ids, cuts)]  # noqa: E731
    g, q = sents(gold), sents(pred)
    got = ner_eval._fast_scores(gold, pred, lengths, names)
    assert got["entity_precision"] == pytest.approx(precision_score(g, q), abs=1e-12)
    assert got["entity_recall"] == pytest.approx(recall_score(g, q), abs=1e-12)
    assert got["entity_f1"] == pytest.approx(f1_score(g, q), abs=1e-12)
    assert 0 < got["entity_f1"] < 1
    assert got["type_micro_f1"] == pytest.approx(ner_eval.type_token_micro_f1(sum(g, []), sum(q, [])), abs=1e-12)
    assert got["invalid_transitions"] == ner_eval.invalid_bio_transitions(q) > 0
    # The spans themselves, sentence by sentence, as seqeval reads them.
    kinds = ner_eval._TagKinds(names)
    types = sorted({t[2:] for t in names if t != "O"})
    for ids, s in zip(np.split(gold, cuts)[:10], g[:10]):
        keys = ner_eval.entity_spans(ids, np.array([len(ids)]), kinds)
        want = sorted(((start * (len(ids) + 1) + end) * len(types) + types.index(t)) for t, start, end in get_entities(s))
        assert sorted(keys.tolist()) == want


def test_entities_follow_conlleval_and_end_is_exclusive():
    words = ["President", "Bush", "met", "Angela", "Merkel", "in", "Berlin"]
    tags = ["B-per", "I-per", "O", "I-per", "I-per", "O", "B-geo"]
    assert ner_tag.entities(words, tags) == [["per", 0, 2, "President Bush"], ["per", 3, 5, "Angela Merkel"],
                                         ["geo", 6, 7, "Berlin"]]


def test_epoch_batches_are_a_seeded_partition_with_little_padding():
    lengths = np.random.default_rng(0).integers(1, 60, size=1000)
    a = sentence_batches.epoch_batches(lengths, 32, seed=3, epoch=1, bucket=True)
    assert sorted(np.concatenate(a).tolist()) == list(range(1000))
    b = sentence_batches.epoch_batches(lengths, 32, seed=3, epoch=1, bucket=True)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    c = sentence_batches.epoch_batches(lengths, 32, seed=3, epoch=2, bucket=True)
    assert not all(np.array_equal(x, y) for x, y in zip(a, c))
    pad = lambda bs: sum(lengths[x].max() * len(x) - lengths[x].sum() for x in bs)  # noqa: E731
    plain = sentence_batches.epoch_batches(lengths, 32, seed=3, epoch=1, bucket=False)
    assert sorted(np.concatenate(plain).tolist()) == list(range(1000))
    assert pad(a) < 0.2 * pad(plain)


@pytest.mark.parametrize("change,message", [
    (dict(data=[]), "expected --data to be 1 GMB file or 3"),
    (dict(batch_size=0), "expected --batch-size to be an integer >= 1, got 0"),
    (dict(optimizer="adam"), "expected optimizer in \\('sgd',\\), got 'adam'"),
    (dict(dropout=1.0), "expected --dropout to be a finite number in \\[0, 1\\), got 1.0"),
    (dict(lr=-1.0), "expected --lr to be a finite number > 0, got -1.0"),
    (dict(momentum=1.5), "expected --momentum to be a finite number in \\[0, 1\\), got 1.5"),
    (dict(lr_decay=-0.1), "expected --lr-decay to be a finite number >= 0, got -0.1"),
    (dict(lr_decay=float("nan")), "expected --lr-decay to be a finite number >= 0, got nan"),
    (dict(lr=float("inf")), "expected --lr to be a finite number > 0, got inf"),
    (dict(clip=float("nan")), "expected --clip to be a finite number > 0, got nan"),
    (dict(dropout=float("nan")), "expected --dropout to be a finite number in"),
    (dict(momentum=float("-inf")), "expected --momentum to be a finite number in"),
    (dict(clip=0.0), "expected --clip to be a finite number > 0"),
    (dict(eval_every=-1), "expected --eval-every to be an integer >= 0"),
    (dict(patience=-1), "expected --patience to be an integer >= 0 \\(0: never stop early\\), got -1"),
    (dict(limit_train=0), "expected --limit-train to be an integer >= 1, got 0"),
    (dict(epochs=0), "expected --epochs to be an integer >= 1, got 0"),
    (dict(limit_eval=-3), "expected --limit-eval to be an integer >= 1, got -3"),
])
def test_bad_settings_are_refused_naming_the_setting(tiny_data, tmp_path, change, message):
    with pytest.raises(ValueError, match=message):
        settings = {"data": tiny_data, **change}
        ner.fit(tiny_cfg(settings.pop("data"), tmp_path / "r", **settings), progress=False)
    assert not (tmp_path / "r").exists()


def test_missing_data_file_and_unknown_keys(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.csv"):
        ner.fit(ner.NERConfig(data=[str(tmp_path / "nope.csv")], out=str(tmp_path / "r")), progress=False)
    with pytest.raises(ValueError, match="got unknown hiden"):
        ner.NERConfig.from_dict({"data": ["x"], "hiden": 3})


@pytest.mark.integration
def test_short_bilstm_crf_on_real_gmb_beats_all_o(gmb_csv_zip, tmp_path):
    """2,000 GMB sentences, 2 epochs of BiLSTM-CRF with GloVe 50d and characters.

    Batches of 32 (not the study's 128) so that two epochs give 126 updates: enough to
    leave the all-O solution, whose entity F1 is 0. Val and test are cut to their first
    3,000 sentences to keep the evaluations cheap.
    """
    cfg = ner.NERConfig(data=[str(gmb_csv_zip)], out=str(tmp_path / "run"), embeddings="glove-6b-50d", char=True,
                        crf=True, limit_train=2000, limit_eval=3000, epochs=2, batch_size=32, eval_every=0,
                        train_eval_size=500)
    summary = ner.fit(cfg, progress=False)
    records = files.read_jsonl(tmp_path / "run" / "metrics.jsonl")
    assert len(records) == 2 and records[-1]["step"] == 126
    assert records[-1]["train_loss"] < records[0]["train_loss"]
    assert records[-1]["val_loss"] < records[0]["val_loss"]
    test = summary["metrics"]["test"]
    assert test["entity_f1"] > 0.4, test  # all-O: 0; measured 0.70 (0.46 with the mean loss and momentum 0.9)
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["data"]["sizes"] == {"train": 2000, "val": 3000, "test": 3000}
    assert config["data"]["embeddings"]["dim"] == 50 and config["data"]["embeddings"]["share_found"] > 0.8
