"""run_train.py: bad input gives one line on stderr and a non-zero exit, never a traceback."""
import numpy as np
import pytest

import run_train
from tests.data.conftest import write_tiny_dataset


def _run(argv, capsys):
    code = run_train.main(argv + ["--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    return code, err


def test_bad_flags_exit_2(capsys):
    for argv in (["--epochs", "many"], ["--nonsense"], ["--device", "tpu"], ["--preset", "huge"],
                 ["--pose-embedding", "3layer"], ["--stage", "structnet"]):
        with pytest.raises(SystemExit) as exc:
            run_train.main(argv)
        assert exc.value.code == 2
    assert "--stage structnet needs --pretrained" in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["--subjects", "S1,S2"], "S2"),
    (["--candidates", "0"], "--candidates (C) must be >= 1"),
    (["--dropout", "1.5"], "--dropout"),
    (["--ls-min", "1", "--ls-max", "0.5"], "line-search grid"),
])
def test_bad_settings_are_one_line_errors(argv, message, tmp_path, capsys):
    code, err = _run(argv + ["--out", str(tmp_path / "run")], capsys)
    assert code == 1 and len(err) == 1 and message in err[0] and err[0].startswith("run_train.py: error:")


def test_missing_malformed_and_nan_data(tmp_path, capsys):
    code, err = _run(["--data", str(tmp_path / "none.h5"), "--out", str(tmp_path / "a")], capsys)
    assert code == 1 and len(err) == 1 and "none.h5" in err[0]
    bad = tmp_path / "bad.h5"
    bad.write_bytes(b"not hdf5")
    code, err = _run(["--data", str(bad), "--out", str(tmp_path / "b")], capsys)
    assert code == 1 and len(err) == 1 and "bad.h5" in err[0]
    path = write_tiny_dataset(tmp_path / "tiny.h5", subjects=("S1",))
    code, err = _run(["--data", path, "--subjects", "S5", "--out", str(tmp_path / "c")], capsys)
    assert code == 1 and len(err) == 1 and "S5" in err[0] and "S1" in err[0]  # names what the file holds
    code, err = _run(["--data", path, "--subjects", "S1", "--actions", "Dancing", "--out", str(tmp_path / "d")], capsys)
    assert code == 1 and len(err) == 1 and "Dancing" in err[0]
    import h5py
    with h5py.File(path, "r+") as f:
        f["poses"][0, 3, 1] = np.nan
    code, err = _run(["--data", path, "--subjects", "S1", "--out", str(tmp_path / "e")], capsys)
    assert code == 1 and len(err) == 1 and "poses" in err[0]


def test_unreadable_checkpoint_on_resume(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "checkpoint.npz").write_bytes(b"garbage")
    code, err = _run(["--resume", "--out", str(run)], capsys)
    assert code == 1 and len(err) == 1 and "checkpoint.npz" in err[0] and "unreadable" in err[0]


@pytest.mark.skipif(__import__("nn.backend").backend.available, reason="a GPU is available here")
def test_gpu_without_a_gpu_is_a_one_line_error(tmp_path, capsys):
    path = write_tiny_dataset(tmp_path / "tiny.h5")
    code, err = _run(["--data", path, "--device", "gpu", "--out", str(tmp_path / "run")], capsys)
    assert code == 1 and len(err) == 1 and "the GPU path is unavailable" in err[0], err
