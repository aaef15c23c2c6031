"""Named study budgets: what each sets, which one a study takes without --budget, and what it prints."""

import json

import pytest

from normlab.cli import main
from normlab.cli.study import resolve_budget
from normlab.study import grids
from normlab.study.grids import BUDGETS, StudySettings, choose_budget, get_budget


def test_full_budgets_are_the_studys_own_settings():
    assert get_budget("resnet", "full").epochs == 100 and get_budget("resnet", "full").run_args == ()
    assert get_budget("ner", "full").epochs is None  # early stopping ends each run
    assert get_budget("ner", "full").run_args == ()


def test_cpu_budgets_use_the_full_data_and_fewer_epochs_or_a_plateau_rule():
    r, n = get_budget("resnet", "cpu"), get_budget("ner", "cpu")
    assert 0 < r.epochs < 100
    # NER stops on a plateau (a minimum gain per patience window), with a cap no run should reach
    assert n.run_args == ("--patience", "5", "--min-delta", "0.002") and n.epochs == grids.NER_CPU_EPOCHS
    for b in (r, n):
        assert "--limit-train" not in b.run_args and "--val-size" not in b.run_args


@pytest.mark.parametrize("kind", ["resnet", "ner"])
@pytest.mark.parametrize("name", ["full", "cpu"])
def test_every_budget_runs_the_sanity_check_with_three_seeds(kind, name):
    b = get_budget(kind, name)
    s = StudySettings(kind=kind, out="o", data="d", budget=name, sanity_seeds=b.sanity_seeds, epochs=b.epochs)
    s.validate()
    if kind == "resnet":
        assert s.seed_list("torch_bn") == s.seed_list("bn") == [0, 1, 2]
        assert s.seed_list("gn") == [0]
    assert (s.shortened() != []) == (name == "cpu")


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
    assert s.budget == "cpu" and s.epochs == cpu.epochs and s.extra_args[: len(cpu.run_args)] == list(cpu.run_args)
    out = capsys.readouterr().out
    assert "budget 'cpu'" in out and "no GPU found" in out
    assert json.dumps(s.to_dict())  # serializable as study.json
    assert seen["estimate"] is True  # the estimate is on by default ...
    assert main(["study", "ner", "--data", str(data), "--out", str(tmp_path / "s"), "--no-estimate"]) == 0
    assert seen["estimate"] is False  # ... and --no-estimate turns it off


def test_a_short_epochs_override_drops_the_budgets_warm_up(capsys):
    from normlab.cli.study import budget_run_args

    cpu = get_budget("resnet", "cpu")
    assert budget_run_args(cpu, None) == list(cpu.run_args)
    assert budget_run_args(cpu, 5) == list(cpu.run_args)
    short = budget_run_args(cpu, 1)
    assert "--warmup-epochs" not in short and "--label-smoothing" in short
    assert "leaving out the budget's --warmup-epochs 1" in capsys.readouterr().out
