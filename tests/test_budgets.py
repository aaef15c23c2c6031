"""Named study budgets: what each sets, which one a study takes without --budget, and what it prints."""

import json

import pytest

from normlab.cli import main
from normlab.cli.study import resolve_budget
from normlab.study import budgets
from normlab.study.budgets import BUDGETS, budget_of, budget_overrides, choose_budget, from_saved_flags, get_budget
from normlab.study.settings import StudySettings


def test_full_budgets_are_the_studys_own_settings():
    assert get_budget("resnet", "full").epochs == 100 and get_budget("resnet", "full").overrides == {}
    assert get_budget("ner", "full").epochs is None  # early stopping ends each run
    assert get_budget("ner", "full").overrides == {}


def test_cpu_budgets_use_the_full_data_and_fewer_epochs_or_a_plateau_rule():
    r, n = get_budget("resnet", "cpu"), get_budget("ner", "cpu")
    assert 0 < r.epochs < 100
    # NER stops on a plateau (a minimum gain per patience window), with a cap no run should reach
    assert n.overrides == {"patience": 5, "min_delta": 0.002} and n.epochs == budgets.NER_CPU_EPOCHS
    for b in (r, n):
        assert "limit_train" not in b.overrides and "val_size" not in b.overrides


@pytest.mark.parametrize("kind", ["resnet", "ner"])
@pytest.mark.parametrize("name", ["full", "cpu"])
def test_every_budget_runs_the_sanity_check_with_three_seeds(kind, name):
    b = get_budget(kind, name)
    s = StudySettings(kind=kind, out="o", data="d", budget=name, sanity_seeds=b.sanity_seeds, epochs=b.epochs)
    s.validate()
    if kind == "resnet":
        assert s.seed_list("torch_bn") == s.seed_list("bn") == [0, 1, 2]
        assert s.seed_list("gn") == [0]
    # the NER cpu budget trains every run until it plateaus, the study's own "till the learning saturates"
    assert (s.shortened() != []) == (name == "cpu" and kind == "resnet")


def test_only_the_retired_capped_ner_budget_is_a_shortened_study():
    plateau = StudySettings(kind="ner", out="o", data="d", budget="cpu", epochs=budgets.NER_CPU_EPOCHS,
                            overrides={"patience": 5, "min_delta": 0.002})
    capped = StudySettings(kind="ner", out="o", data="d", budget="cpu", epochs=15, overrides={"patience": 3})
    assert budget_of(plateau).saturates and plateau.shortened() == []
    assert not budget_of(capped).saturates
    assert capped.shortened() == ["the 'cpu' budget: " + budget_of(capped).summary,
                                  "at most 15 epochs instead of 50 with early stopping"]


def test_unknown_budget_lists_the_valid_ones():
    with pytest.raises(ValueError, match="expected --budget among full, cpu, got 'gpu'"):
        get_budget("resnet", "gpu")
    with pytest.raises(ValueError, match="--budget"):
        StudySettings(kind="ner", out="o", data="d", budget="x").validate()


@pytest.mark.parametrize("gpus, name", [(0, "cpu"), (1, "full"), (8, "full")])
def test_choose_budget_by_gpu_count(gpus, name):
    got, why = choose_budget(gpus)
    assert got == name
    assert ("GPU" in why) and (("no GPU" in why) == (gpus == 0))


@pytest.mark.parametrize("gpus, name", [(0, "cpu"), (2, "full")])
def test_auto_budget_follows_the_device_count_and_says_why(monkeypatch, gpus, name):
    import torch

    monkeypatch.setattr(torch.cuda, "device_count", lambda: gpus)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: gpus > 0)
    said = []
    b = resolve_budget("resnet", "auto", "auto", say=said.append)
    assert b.name == name
    assert said[0].startswith(f"study: budget '{name}' (") and BUDGETS["resnet"][name].summary in said[1]
    # --device cpu means no GPU whatever the machine has
    assert resolve_budget("resnet", "auto", "cpu", say=said.append).name == "cpu"


def test_study_command_saves_the_budget_and_its_settings(tmp_path, monkeypatch, capsys):
    """The budget's epochs and run arguments land in study.json (so a rerun must match them)."""
    import torch

    import normlab.study.runner as runner

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    seen = {}

    def fake_run_study(settings, **kw):  # the grid itself is tested in test_study.py
        seen["settings"], seen["estimate"] = settings, kw["estimate"]
        return 0

    monkeypatch.setattr(runner, "run_study", fake_run_study)
    monkeypatch.setattr("normlab.study.checks.check_study_inputs", lambda s, backend="local": None)
    data = tmp_path / "gmb.txt"
    data.write_text("a NN a O\n\n")
    assert main(["study", "ner", "--data", str(data), "--out", str(tmp_path / "s")]) == 0
    s = seen["settings"]
    cpu = get_budget("ner", "cpu")
    assert s.budget == "cpu" and s.epochs == cpu.epochs and s.overrides == cpu.overrides
    out = capsys.readouterr().out
    assert "budget 'cpu'" in out and "no GPU found" in out
    assert json.dumps(s.to_dict())  # serializable as study.json
    assert seen["estimate"] is True  # the estimate is on by default ...
    assert main(["study", "ner", "--data", str(data), "--out", str(tmp_path / "s"), "--no-estimate"]) == 0
    assert seen["estimate"] is False  # ... and --no-estimate turns it off


def test_a_short_epochs_override_drops_the_budgets_warm_up():
    cpu = get_budget("resnet", "cpu")
    said = []
    assert budget_overrides(cpu, None, said.append) == cpu.overrides
    assert budget_overrides(cpu, 5, said.append) == cpu.overrides and not said
    short = budget_overrides(cpu, 1, said.append)
    assert "warmup_epochs" not in short and short["label_smoothing"] == 0.1
    assert "leaving out the budget's warmup_epochs 1" in said[0]


def test_budget_of_finds_a_retired_budget_by_its_overrides():
    s = StudySettings(kind="ner", out="o", data="d", budget="cpu", overrides={"patience": 3})
    assert budget_of(s).epochs == 15  # the retired cpu budget the first shipped NER study ran under
    assert budget_of(StudySettings(kind="ner", out="o", data="d", budget="cpu",
                                   overrides=dict(get_budget("ner", "cpu").overrides))) is get_budget("ner", "cpu")


def test_a_study_json_with_flags_is_read_as_its_budgets_overrides():
    """Studies saved before runs were data keep argv lists (extra_args): the budget's flags are
    compared with what each budget saved (not parsed); flags after them are kept apart, unrun."""
    assert from_saved_flags("resnet", "cpu", ["--label-smoothing", "0.1", "--warmup-epochs", "1"]) == (
        {"label_smoothing": 0.1, "warmup_epochs": 1.0}, [])
    assert from_saved_flags("ner", "cpu", ["--patience", "3", "--lr", "0.1"]) == ({"patience": 3}, ["--lr", "0.1"])
    assert from_saved_flags("ner", None, ["--lr", "0.1"]) == ({}, ["--lr", "0.1"])
    s = StudySettings.from_dict({"kind": "ner", "out": "o", "data": "d", "budget": "cpu",
                                 "extra_args": ["--patience", "5", "--min-delta", "0.002"]})
    assert s.overrides == {"patience": 5, "min_delta": 0.002} and s.legacy_run_args == []
