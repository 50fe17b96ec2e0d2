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


def _results(figures, align=30.0, floor=60.0, sweep=None):
    """A run_eval.py --json list with the given all-frames figures {mode: mm}; two actions, the
    first 10 mm below the figure, the second 10 mm above."""
    ctx = {"train_alignment": {"share_30mm": align / 100, "median_mm": 50.0}, "bank_floor": {"mpjpe_all_frames": floor}}
    entry = lambda mode, v, **kw: {"mode": mode, "mpjpe_all_frames": v, "context": ctx,  # noqa: E731
                                   "mpjpe": {"Walking": {"mean": v - 10}, "Eating": {"mean": v + 10}}, **kw}
    out = [entry(m, v) for m, v in figures.items()]
    return out + [entry("avg", v, sweep=True, A_share=share) for share, v in (sweep or {}).items()]


def test_findings_are_the_paired_figures(tmp_path, capsys):
    figures = {  # (variant, seed) -> its all-frames figures
        ("default", 0): dict(max=200.0, avg=150.0, apf=135.0, pred=190.0, hml=180.0),
        ("default", 1): dict(max=220.0, avg=176.0, apf=204.0, pred=200.0, hml=200.0),
        ("lam0", 0): dict(max=210.0, avg=150.0, pred=300.0), ("lam0", 1): dict(max=220.0, avg=176.0, pred=300.0),
        ("1layer", 0): dict(max=205.0, avg=1.0), ("1layer", 1): dict(max=240.0, avg=1.0),
        ("random1", 0): dict(max=215.0, avg=1.0), ("random1", 1): dict(max=230.0, avg=1.0),
        ("raw", 0): dict(max=250.0, avg=1.0), ("raw", 1): dict(max=260.0, avg=1.0)}
    for (variant, seed), f in figures.items():
        (tmp_path / f"{variant}_s{seed}").mkdir()
        sweep = {0.005: f["avg"], 0.01: f["avg"] - seed - 1, 0.05: f["avg"] + 5} if variant == "default" else None
        (tmp_path / f"{variant}_s{seed}" / "results.json").write_text(json.dumps(_results(f, 30.0 + seed, sweep=sweep)))
    assert run_ablations.main(["findings", str(tmp_path)]) == 0
    rows = {line.split(" | ")[0].strip("| "): line for line in capsys.readouterr().out.splitlines() if line.startswith("| ")}
    # 1: avg/max - 1 = -25% and -20%; each action 10 mm either side keeps Avg below Max on both
    assert "-22.5 ± 3.5% (-25.0%, -20.0%); lower on 2/2, 2/2 actions" in rows["1"]
    assert "lowest at 1.00%, 1.00%" in rows["2"] and "161.5 ± 17.7 (1.00%)" in rows["2"]  # 149 and 174
    assert "+3.0 ± 18.3% (-10.0%, +15.9%)" in rows["3"]                   # APF 135/150, 204/176
    assert "Avg -14.3 ± 3.3% (-16.7%, -12.0%), lower on 2/2, 2/2 actions" in rows["4"]
    assert "Avg-APF -11.5 ± 19.1% (-25.0%, +2.0%), lower on 2/2, 0/2 actions" in rows["4"]
    assert "Max +2.5 ± 3.5% (+5.0%, +0.0%), Avg +0.0 ± 0.0%" in rows["5"]  # paired with the same seed's default
    assert "means: 2-layer < 1 layer < 1 random layer < raw pose; the full order in 1 of 2 seeds" in rows["6"]
    assert "30.5 ± 0.7% (median 50.0 ± 0.0 mm)" in rows["Sec. 6"]
    assert "2.72 ± 0.31×" in rows["–"]                                     # 150/60 and 176/60


def test_findings_need_the_default(tmp_path, capsys):
    (tmp_path / "lam0_s0").mkdir()
    (tmp_path / "lam0_s0" / "results.json").write_text(json.dumps(_results({"max": 1.0, "avg": 1.0})))
    assert run_ablations.main(["findings", str(tmp_path)]) == 1
    assert "findings need the default variant" in capsys.readouterr().err
