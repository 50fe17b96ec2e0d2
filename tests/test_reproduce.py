"""Two identical runs on one machine agree bit for bit, with the BLAS and FFT threads the scripts
use (2 here): run_train.py twice in fresh processes, then run_eval.py on each."""
import json
import os
import subprocess
import sys

import numpy as np

from tests.data.conftest import write_tiny_dataset

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAIN = ["--preset", "tiny", "--subjects", "S1,S5", "--pretrain-epochs", "2", "--pretrain-batch-size", "8",
         "--epochs", "2", "--batch-size", "8", "-C", "20", "-K", "3", "--no-progress"]


def _run(script, *args, cwd):
    env = dict(os.environ, OPENBLAS_NUM_THREADS="2", OMP_NUM_THREADS="2", MKL_NUM_THREADS="2")
    subprocess.run([sys.executable, os.path.join(ROOT, script), *args], cwd=cwd, env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _log(out):
    return [{k: v for k, v in json.loads(line).items() if not k.startswith("seconds")}
            for line in open(os.path.join(out, "log.jsonl"))]


def test_two_runs_agree_bit_for_bit(tmp_path):
    data = write_tiny_dataset(str(tmp_path / "d.h5"), n_per=6, subjects=("S1", "S5"), actions=("Walking", "Eating"),
                              bank_extra=2)
    outs = [str(tmp_path / f"run{i}") for i in (1, 2)]
    for out in outs:
        _run("run_train.py", "--data", data, "--out", out, *TRAIN, cwd=str(tmp_path))
        _run("run_eval.py", "--run", out, "--subjects", "S1,S5", "--mode", "max,avg,pred", "--no-progress",
             "--train-images", "0", "--json", os.path.join(out, "eval.json"), cwd=str(tmp_path))
    assert _log(outs[0]) == _log(outs[1])
    for name in ("pretrain_model.npz", "model.npz"):
        a, b = (np.load(os.path.join(o, name)) for o in outs)
        for k in a.files:
            if k != "state_json":                  # it names the run directory
                np.testing.assert_array_equal(a[k], b[k], err_msg=f"{name}: {k}")
    results = [json.load(open(os.path.join(o, "eval.json"))) for o in outs]
    for ra, rb in zip(*results):
        assert ra["mpjpe"] == rb["mpjpe"] and ra["pmpjpe"] == rb["pmpjpe"], ra["method"]
