import numpy as np
import pytest
import torch

from normlab import files
from normlab.train import rundir
from normlab.train.metrics import classification_metrics


def test_rng_state_roundtrip_through_weights_only_checkpoint(tmp_path):
    rundir.seed_everything(3)
    rundir.atomic_torch_save({"rng": rundir.rng_state_for_checkpoint()}, tmp_path / "c.pt")
    a = (np.random.rand(), torch.rand(1).item(), __import__("random").random())
    rundir.restore_rng_state(rundir.load_checkpoint(tmp_path / "c.pt")["rng"])
    b = (np.random.rand(), torch.rand(1).item(), __import__("random").random())
    assert a == b


def test_load_checkpoint_refuses_code(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    p = tmp_path / "evil.pt"
    torch.save({"x": Evil()}, p)
    with pytest.raises(ValueError, match="not a valid normlab checkpoint"):
        rundir.load_checkpoint(p)


def test_prepare_run_dir_refuses_overwrite_and_changed_resume(tmp_path):
    out = tmp_path / "run"
    assert rundir.prepare_run_dir(out, {"lr": 0.1}, resume=False) is False
    assert not out.exists()  # nothing is created before the run writes its first file
    files.atomic_write_json(out / files.CONFIG, {"config": {"lr": 0.1, "device": "cpu", "compile": "auto"}})
    rundir.atomic_torch_save({"model": {}}, out / files.LAST)
    with pytest.raises(ValueError, match="already holds a run"):
        rundir.prepare_run_dir(out, {"lr": 0.1}, resume=False)
    with pytest.raises(ValueError, match=r"--resume: settings differ .*--lr: saved 0.1, now 0.2; only --compile, "
                                         r"--device may change on resume"):
        rundir.prepare_run_dir(out, {"lr": 0.2, "device": "cpu", "compile": "auto"}, resume=True)
    # device and compile do not change the result: they may differ on resume
    assert rundir.prepare_run_dir(out, {"lr": 0.1, "device": "cuda", "compile": "off"}, resume=True) is True


def test_a_folder_without_a_checkpoint_starts_afresh(tmp_path):
    """A run interrupted before its first checkpoint is not a run to protect (issue 9, item 2)."""
    out = tmp_path / "run"
    files.atomic_write_json(out / files.CONFIG, {"config": {"lr": 0.1, "compile": "auto"}, "env": {}})
    notes = []
    for resume, cfg in ((False, {"lr": 0.1}), (True, {"lr": 0.1, "compile": "off"}), (True, {"lr": 0.5})):
        assert rundir.prepare_run_dir(out, cfg, resume=resume, note=notes.append) is False
    assert notes == [f"note: {out} holds no checkpoint (a run interrupted before its first one); "
                     f"starting it afresh"] * 3
    # the config.json a study writes before starting a run (no "env": no trainer ran) is no interrupted run
    files.atomic_write_json(out / files.CONFIG, {"kind": "resnet", "config": {"lr": 0.1}})
    notes.clear()
    assert rundir.prepare_run_dir(out, {"lr": 0.1}, resume=False, note=notes.append) is False and notes == []


def test_out_that_cannot_be_a_folder_is_refused(tmp_path):
    f = tmp_path / "file.txt"
    f.write_text("x")
    with pytest.raises(ValueError, match=rf"^--out {f}: expected a folder \(new or holding a run\), got an existing file$"):
        rundir.prepare_run_dir(f, {}, resume=False)
    with pytest.raises(ValueError, match=rf"^--out {f / 'run'}: cannot create the folder: {f} is a file"):
        rundir.prepare_run_dir(f / "run", {}, resume=False)
    assert f.read_text() == "x"


def test_metrics_match_definitions():
    y = [0, 0, 1, 1, 2, 2]
    p = [0, 1, 1, 1, 2, 0]
    m = classification_metrics(y, p)
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["micro_f1"] == pytest.approx(4 / 6)
    # per-class F1: class0 P=1/2 R=1/2 -> .5; class1 P=2/3 R=1 -> .8; class2 P=1 R=1/2 -> 2/3
    assert m["macro_f1"] == pytest.approx((0.5 + 0.8 + 2 / 3) / 3)
    with pytest.raises(ValueError, match="one shape"):
        classification_metrics([0, 1], [0])
