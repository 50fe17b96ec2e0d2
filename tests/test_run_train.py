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
    (["--actions", "Walking,Dancing"], "unknown action 'Dancing'"),    # found before any data is generated
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


# ---------------------------------------------------------------- requests, resume, writes (issue 13)
TINY = ["--preset", "tiny", "--pretrain-epochs", "1", "--pretrain-batch-size", "8", "--epochs", "1",
        "--batch-size", "8", "-C", "20", "-K", "3", "--checkpoint-every", "2"]


def test_requests_the_data_cannot_serve_fail_before_training(tmp_path, capsys):
    # S5 has no Eating: asked for, it is named with what the file holds (before, training went on
    # with S1 alone, or failed inside the pose normaliser); a batch larger than the selection is
    # found before pre-training, not after it
    path = write_tiny_dataset(tmp_path / "d.h5", subjects=("S1", "S5"), skip={("S5", "Eating")})
    out = tmp_path / "run"
    code, err = _run(["--data", path, "--subjects", "S1,S5", "--actions", "Eating", "--out", str(out), *TINY], capsys)
    assert code == 1 and len(err) == 1, err
    assert "no image of S5 for --actions Eating" in err[0] and "S1 12, S5 0" in err[0] and "S5 has Walking" in err[0]
    for argv, message in ((["--batch-size", "100"], "--batch-size 100 is larger than the 36 selected"),
                          (["--stage", "pretrain", "--pretrain-batch-size", "37"], "--pretrain-batch-size 37")):
        code, err = _run(["--data", path, "--subjects", "S1,S5", "--out", str(out), *TINY, *argv], capsys)
        assert code == 1 and len(err) == 1 and message in err[0] and "S1 24, S5 12" in err[0], err
    assert not out.exists()                                # nothing was started


def test_input_size_sets_the_crop_and_downsampling(tmp_path, capsys):
    """--input-size: the crop fed to conv1, the images box-downsampled as the presets are."""
    from structlearn.network import PRESETS
    assert PRESETS["cpu"].at_input_size(112).downsample == 1 and PRESETS["cpu"].at_input_size(56).downsample == 2
    assert PRESETS["paper"].at_input_size(56) == PRESETS["paper"].with_(input_size=56, downsample=2)
    assert PRESETS["tiny"].at_input_size(28) == PRESETS["tiny"]
    assert PRESETS["cpu"].at_input_size(64).downsample == 1      # 64 of 64 would leave no crop margin
    path = write_tiny_dataset(tmp_path / "d.h5", subjects=("S1", "S5"))
    out = tmp_path / "run"
    for size, message in ((200, "--input-size 200: input size 200: expected 1 to 128"),
                          (12, "--input-size 12: input size 12 is too small for the convolutions")):
        code, err = _run(["--data", path, "--subjects", "S1,S5", "--out", str(out), *TINY, "--input-size", str(size)],
                         capsys)
        assert code == 1 and len(err) == 1 and message in err[0], err
    assert not out.exists()
    code, _ = _run(["--data", path, "--subjects", "S1,S5", "--out", str(out), *TINY, "--input-size", "56",
                    "--stage", "pretrain"], capsys)
    assert code == 0
    import json
    net = json.loads((out / "config.json").read_text())["net"]
    assert (net["input_size"], net["downsample"]) == (56, 2), net
    from structlearn.model import load_model
    assert load_model(str(out / "pretrain_model.npz"))[0].cfg.input_size == 56


def test_resume_refuses_changed_inputs(tmp_path, capsys):
    path = write_tiny_dataset(tmp_path / "d.h5", subjects=("S1", "S5"))
    run, other = tmp_path / "run", tmp_path / "other"
    argv = ["--data", path, "--subjects", "S1,S5", *TINY]
    assert _run(argv + ["--out", str(run), "--stop-after", "3"], capsys)[0] == 0
    ckpt = run / "checkpoint.npz"
    saved = ckpt.read_bytes()
    # the data file regenerated identically (a new mtime, the same content) resumes
    write_tiny_dataset(path, subjects=("S1", "S5"))
    assert _run(argv + ["--out", str(run), "--resume", "--stop-after", "1"], capsys)[0] == 0
    ckpt.write_bytes(saved)
    # other content, or other rows, is refused by name
    for kw, what in ((dict(seed=5), "its content"), (dict(n_per=5), "images: checkpoint 48, now 40")):
        write_tiny_dataset(path, subjects=("S1", "S5"), **kw)
        code, err = _run(argv + ["--out", str(run), "--resume"], capsys)
        assert code == 1 and len(err) == 1 and f"{ckpt} was trained on other data: {path} differs in {what}" in err[0]
    # a model file or a pickle in place of the checkpoint
    write_tiny_dataset(path, subjects=("S1", "S5"))
    assert _run(argv + ["--out", str(other)], capsys)[0] == 0
    for replacement, message in ((other / "model.npz", "a structnet model file, not a training checkpoint"),
                                 (None, "a pickle, not an .npz archive")):
        if replacement:
            ckpt.write_bytes(replacement.read_bytes())
        else:
            import pickle
            ckpt.write_bytes(pickle.dumps({"config": 1}))
        code, err = _run(argv + ["--out", str(run), "--resume"], capsys)
        assert code == 1 and len(err) == 1 and str(ckpt) in err[0] and message in err[0], err
        assert "unsafely" not in err[0] and "KeyError" not in err[0]


def test_write_failures_name_the_file(tmp_path, capsys):
    import os
    import subprocess
    import sys
    path = write_tiny_dataset(tmp_path / "d.h5", subjects=("S1", "S5"))
    argv = ["--data", path, "--subjects", "S1,S5", *TINY, "--no-progress"]
    # a file-size limit of 30 kB (Python ignores SIGXFSZ): the 73 kB checkpoint cannot be written
    out = tmp_path / "limited"
    script = os.path.join(os.path.dirname(run_train.__file__), "run_train.py")
    proc = subprocess.run(["bash", "-c", 'ulimit -f 30 && exec "$@"', "bash", sys.executable, script, *argv,
                           "--out", str(out)], capture_output=True, text=True)
    err = proc.stderr.strip().splitlines()
    assert proc.returncode == 1 and err == [f"run_train.py: error: {out / 'checkpoint.npz'}: File too large"], err
    assert [n for n in os.listdir(out) if n.startswith(".tmp-")] == []
    # the run directory's files in the way: a log that is a folder, a parent that is a file
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "log.jsonl").mkdir()
    (tmp_path / "file").write_text("")
    for out, culprit in ((tmp_path / "a", tmp_path / "a" / "log.jsonl"), (tmp_path / "file" / "run", tmp_path / "file")):
        code, err = _run(argv + ["--out", str(out)], capsys)
        assert code == 1 and len(err) == 1 and str(culprit) in err[0], err


@pytest.mark.parametrize("argv, expected", [
    (["--recipe", "paper"], dict(dropout=0.75, optimizer="linesearch", epochs=24, width=0, synth_scale=1.0)),
    (["--recipe", "long"], dict(dropout=0.0, optimizer="adam", epochs=48, width=512, synth_scale=3.0)),
    (["--recipe", "long", "--epochs", "16"], dict(epochs=16, width=512, synth_scale=3.0)),   # explicit flags win
    ([], dict(dropout=0.0, optimizer="adam", epochs=24, width=0, synth_scale=1.0)),
])
def test_recipes_are_bundles_of_defaults(argv, expected, tmp_path):
    args = run_train.parse_args(run_train.build_parser(), argv + ["--out", str(tmp_path / "r")])
    assert {k: getattr(args, k) for k in expected} == expected
