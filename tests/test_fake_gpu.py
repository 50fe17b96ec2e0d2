"""The `--device gpu` code path run end to end against tests/fake_cupy.py (NumPy posing as CuPy
with CuPy's rules on host/device arrays, kernels through nn.kernels.emulate).

This is not a GPU test: it shows that training and evaluation keep host and device arrays apart,
move results back where the host needs them and launch every kernel with valid arguments, and that
the device path computes what the CPU path computes. tests/gpu/ runs on a real device."""
import json

import numpy as np
import pytest

from data import synth
from nn.kernels import emulate
from structlearn.config import TrainConfig
from structlearn.protocol import EvalConfig, run_evaluation
from structlearn.train import train
from tests.fake_cupy import installed

pytestmark = pytest.mark.skipif(emulate.compiler() is None, reason="kernel emulation needs a C++ compiler")


def test_the_fake_enforces_cupy_rules():
    with installed() as cp:
        x = cp.asarray(np.arange(6.0))
        with pytest.raises(TypeError, match="Implicit conversion"):
            np.asarray(x)
        with pytest.raises(TypeError, match="NumPy array met a device array"):
            x + np.ones(6)
        with pytest.raises(TypeError, match="NumPy array met a device array"):
            cp.concatenate([x, np.ones(2)])
        assert float(x[np.array([2])].sum()) == 2.0 and float(x[1]) == 1.0  # NumPy indices are fine
        assert isinstance(x.get(), np.ndarray)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    d = tmp_path_factory.mktemp("fakegpu")
    path = synth.generate(str(d / "tiny.h5"), scale=4 / synth.FRAMES_PER_SEQUENCE, seed=1, workers=1,
                          subjects=("S1", "S5", "S9"), actions=("Walking", "Sitting"), progress=False)
    return d, path


def _train(path, out, device, **kw):
    cfg = TrainConfig(data=path, out=str(out), preset="tiny", subjects=("S1", "S5"), progress=False,
                      pretrain_epochs=1, pretrain_batch_size=16, epochs=2, batch_size=32, candidates=60,
                      frequent=5, device=device, **kw)
    train(cfg, log=lambda *a: None)
    return [json.loads(line) for line in open(out / "log.jsonl")]


@pytest.mark.parametrize("ls", ["reselect", "fixed"])  # fixed: the fused most-violated kernel, no (B, C) margins
def test_training_and_evaluation_on_the_device_path(tiny, ls):
    d, path = tiny
    kw = {} if ls == "reselect" else {"ls_reselect": False}
    cpu = _train(path, d / f"cpu-{ls}", "cpu", **kw)
    with installed():
        gpu = _train(path, d / f"gpu-{ls}", "gpu", **kw)
    assert [(r["stage"], r["epoch"], r["batch"]) for r in gpu] == [(r["stage"], r["epoch"], r["batch"]) for r in cpu]
    # the same arithmetic up to rounding (the device path convolves by im2col, the CPU by FFT)
    np.testing.assert_allclose([r["cost"] for r in gpu], [r["cost"] for r in cpu], rtol=1e-5)
    if ls == "fixed":
        return
    results = {}
    for device in ("cpu", "gpu"):
        cfg = EvalConfig(run=str(d / f"{device}-{ls}"), data=path, subjects=["S9"], modes=("max", "avg", "pred", "apf"),
                         A=5, train_images=64, device=device, batch_size=32, cache=False, progress=False)
        if device == "gpu":
            with installed():
                results[device] = run_evaluation(cfg, log=lambda *a: None)
        else:
            results[device] = run_evaluation(cfg, log=lambda *a: None)
    for a, b in zip(results["cpu"], results["gpu"]):
        assert a["mode"] == b["mode"]
        assert b["mpjpe_all_frames"] == pytest.approx(a["mpjpe_all_frames"], rel=1e-3), a["mode"]


def test_the_gpu_suite_itself_runs_against_the_fake():
    """Keeps the bodies of tests/gpu/ from rotting on machines without a GPU (NN_FAKE_CUPY=1)."""
    import os
    import subprocess
    import sys
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "gpu", "tests/gpu"],
                          cwd=root, env={**os.environ, "NN_FAKE_CUPY": "1"}, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert " passed" in done.stdout and "skipped" not in done.stdout, done.stdout[-500:]
