"""The study's wall-time estimate and its progress lines, with injected step timings."""

import pytest

from normlab.study import estimate as E
from normlab.study.grids import select_variants
from normlab.study.settings import StudySettings
from normlab.study.backends import Progress
from normlab.study.runner import Task
from normlab.study.timefmt import hms


def test_wall_time_packs_runs_onto_slots():
    assert E.wall_time([], 2) == 0
    assert E.wall_time([10, 10, 10], 1) == 30
    assert E.wall_time([10, 10, 10], 2) == 20
    assert E.wall_time([30, 10, 10, 10], 2) == 30  # the long run on one slot, the rest on the other
    assert E.wall_time([5], 4) == 5


def test_resnet_run_seconds_scale_with_epochs_steps_and_evaluation():
    s = StudySettings(kind="resnet", out="o", data="d", epochs=3, limit_train=1280, val_size=512)
    (v,) = select_variants("resnet", ["bn"])
    # 10 steps an epoch at 1 s, 2 eval batches at 0.5 s; final: ceil((1280+512+10000)/256)=47 batches
    secs = E.run_seconds(s, v, timer=lambda norm, bs: (1.0, 0.5))
    assert secs == pytest.approx(3 * (10 * 1.0 + 2 * 0.5) + 47 * 0.5)
    (b8,) = select_variants("resnet", ["bn_b8"])
    calls = []
    E.run_seconds(s, b8, timer=lambda norm, bs: calls.append((norm, bs)) or (1.0, 0.5))
    assert calls == [("bn", 8)]


def test_ner_run_seconds_use_the_epoch_cap_and_eval_every():
    s = StudySettings(kind="ner", out="o", data="d", epochs=2, limit_train=1280, overrides={"eval_every": 5})
    (v,) = select_variants("ner", ["crf"])
    seen = []
    secs = E.run_seconds(s, v, timer=lambda st: seen.append(st) or (1.0, 0.0))
    assert seen[0]["crf"] is True and seen[0]["char"] is True
    assert secs == pytest.approx(2 * 10 * 1.0)  # 10 updates of 128 an epoch, evaluation free here


def test_estimate_times_each_kind_once_and_progress_rescales():
    s = StudySettings(kind="resnet", out="o", data="d", epochs=1, limit_train=1280, val_size=256, jobs=1,
                      sanity_seeds=2)
    tasks = [Task(v, seed, None, False) for v in select_variants("resnet", ["torch_bn", "bn"])
             for seed in s.seed_list(v.name)]
    timed = []
    est = E.estimate_study(s, tasks, threads=1, timer=lambda norm, bs: timed.append(norm) or (1.0, 0.0),
                           cold_start=0.0)
    assert sorted(timed) == ["bn", "torch_bn"]  # two kinds, four runs
    assert set(est.per_run) == {"torch_bn-seed0", "torch_bn-seed1", "bn-seed0", "bn-seed1"}
    assert est.total == pytest.approx(40.0)
    p = Progress(len(est.per_run), est.jobs, est.per_run)
    assert p.left_seconds() == pytest.approx(40.0)
    p.record("torch_bn-seed0", 20.0, ok=True)  # took twice the estimate
    assert p.left_seconds() == pytest.approx(60.0)
    assert p.line().startswith("study: 1/4 done, 0 running, 3 queued; about ")
    p.record("torch_bn-seed1", 10.0, ok=False)  # a failed run leaves the estimate
    assert p.left_seconds() == pytest.approx(2 * 10.0 * (20.0 / 10.0))
    for name in ("bn-seed0", "bn-seed1"):
        p.record(name, 10.0, ok=True)
    assert p.left_seconds() == 0.0 and "left" not in p.line()


def test_progress_without_estimate_uses_the_mean_of_finished_runs():
    p = Progress(4, 2)
    assert p.left_seconds() is None
    p.record("a", 30.0, ok=True)
    assert p.left_seconds() == pytest.approx(30.0 * 2)  # 3 left on 2 slots: 2 waves


@pytest.mark.parametrize("secs, text", [(0, "0 s"), (89, "89 s"), (90, "2 min"), (3500, "58 min"), (3599, "1 h 00 min"),
                                        (3600, "1 h 00 min"), (3 * 3600 + 5 * 60, "3 h 05 min")])
def test_hms(secs, text):
    assert hms(secs) == text


def test_real_step_timings_are_positive():
    train, ev = E.resnet_step_seconds("gn", 8)
    assert train > 0 and ev > 0
    train, ev = E.ner_step_seconds({"embeddings": "glove", "char": True, "crf": True, "layer_norm": True},
                                   batch_size=8, length=6)
    assert train > 0 and ev > 0


def test_cold_first_epoch_is_measured_on_the_studys_finished_runs(tmp_path):
    from normlab.files import append_jsonl, atomic_write_json

    s = StudySettings(kind="resnet", out=str(tmp_path), data="d", epochs=1, jobs=1, variants=["nn"])
    assert E.cold_start_seconds(s, "cpu") == E.COLD_START_SECONDS["cpu"]  # nothing finished: the constant
    assert E.cold_start_seconds(s, "cuda") == E.COLD_START_SECONDS["cuda"]
    for name, firsts in (("bn/seed0", [130.0, 30.0, 31.0, 29.0]), ("gn/seed0", [90.0, 40.0, 40.0]),
                         ("ln/seed0", [500.0, 10.0])):  # two epochs: too few to tell
        d = tmp_path / "runs" / name
        for i, sec in enumerate(firsts):
            append_jsonl(d / "metrics.jsonl", {"epoch": i + 1, "seconds": sec})
        atomic_write_json(d / "summary.json", {})
    append_jsonl(tmp_path / "runs/in/seed0/metrics.jsonl", {"epoch": 1, "seconds": 999.0})  # unfinished
    assert E.cold_start_seconds(s, "cpu") == pytest.approx((100.0 + 50.0) / 2)
    assert E.cold_start_seconds(StudySettings(kind="ner", out=str(tmp_path), data="g"), "cpu") == 0.0
    fresh = Task(select_variants("resnet", ["nn"])[0], 0, None, False)
    resumed = Task(select_variants("resnet", ["bn"])[0], 0, None, True)
    est = E.estimate_study(s, [fresh, resumed], threads=1, timer=lambda norm, bs: (1.0, 0.0))
    alone = E.run_seconds(s, fresh.variant, lambda n, b: (1.0, 0.0))
    assert est.per_run["nn-seed0"] == pytest.approx(alone + 75.0) and est.per_run["bn-seed0"] == pytest.approx(alone)
