"""run_ablations.py: the seeds x variants protocol on a tiny dataset, its mean ± std table, and
its one-line errors."""
import json
import shutil

import numpy as np
import pytest

import run_ablations
from tests.data.conftest import write_tiny_dataset

TINY = ["--preset", "tiny", "--subjects", "S1", "--pretrain-epochs", "1", "--pretrain-batch-size", "8",
        "--epochs", "1", "--batch-size", "8", "--candidates", "20", "--frequent", "2"]


def test_run_then_table(tmp_path, capsys):
    data = write_tiny_dataset(tmp_path / "d.h5", n_per=4, subjects=("S1", "S9"), bank_extra=3)
    out = tmp_path / "abl"
    argv = ["run", "--seeds", "0,1", "--variants", "default,lam0", "--out", str(out), "--eval-flags", "--subjects S9",
            "--", "--data", data, *TINY]
    assert run_ablations.main(argv) == 0
    table = run_ablations.collect(str(out))
    assert sorted(table) == ["default", "lam0"] and sorted(table["default"]) == [0, 1]
    # each figure is the run's own results.json: the seeds differ, and the table is their mean ± std
    runs = table["default"]
    assert set(runs[0]) >= {"max", "avg", "apf", "pred", "hml", "align", "median_mm", "floor"}
    assert runs[0]["max"] != runs[1]["max"]
    m, s = run_ablations.mean_std([runs[0]["max"], runs[1]["max"]])
    printed = capsys.readouterr().out
    assert f"{m:.1f} ± {s:.1f}" in printed and "+ " in printed      # the commands are printed
    with open(out / "default_s1" / "results.json") as f:
        assert run_ablations.summarise(json.load(f))["max"] == runs[1]["max"]
    assert np.isclose(s, abs(runs[0]["max"] - runs[1]["max"]) / np.sqrt(2))
    # a finished variant is not run again; a removed one is
    shutil.rmtree(out / "lam0_s1")
    assert run_ablations.main(argv) == 0
    assert "+ " + " ".join(run_ablations.commands(str(out), "lam0", 1, ["--data", data, *TINY], ["--subjects", "S9"])[0]) in \
        capsys.readouterr().out
    assert run_ablations.main(["table", str(out), "--json", str(tmp_path / "t.json")]) == 0
    assert json.load(open(tmp_path / "t.json"))["lam0"]["1"]["max"] == run_ablations.collect(str(out))["lam0"][1]["max"]


@pytest.mark.parametrize("argv, message", [
    (["run", "--variants", "default,huge"], "unknown huge"),
    (["run", "--seeds", "a"], "--seeds"),
])
def test_bad_flags_exit_2(argv, message, capsys):
    with pytest.raises(SystemExit) as e:
        run_ablations.main(argv)
    assert e.value.code == 2 and message in capsys.readouterr().err


def test_errors_are_one_line(tmp_path, capsys):
    assert run_ablations.main(["table", str(tmp_path)]) == 1
    assert "no <variant>_s<seed>/results.json" in capsys.readouterr().err
    (tmp_path / "lam0_s0").mkdir()
    (tmp_path / "lam0_s0" / "results.json").write_text("[{}]")
    assert run_ablations.main(["table", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "lam0_s0/results.json: unreadable" in err[0]
    # a failing training names its command and log
    code = run_ablations.main(["run", "--seeds", "0", "--variants", "lam0", "--out", str(tmp_path / "x"), "--",
                               "--data", str(tmp_path / "missing.h5")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1 and "failed: " in err[0] and "pretrain_s0.txt" in err[0]
