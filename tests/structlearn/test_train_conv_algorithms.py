"""A training run records its convolution algorithms (nn.conv_tune) and a resume repeats them,
whatever the cache says by then. The measurements are fixed answers, never timings."""
import json

import numpy as np
import pytest

import run_train
from data import synth
from nn import conv_tune
from structlearn.checkpoint import load_checkpoint, save_checkpoint
from structlearn.model import load_model
from structlearn.train import train

A = {"forward": "im2col", "weight_grad": "fft", "input_grad": "fft"}
B = {"forward": "fft", "weight_grad": "im2col", "input_grad": "im2col"}


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    d = tmp_path_factory.mktemp("conv_algorithms")
    path = synth.generate(str(d / "tiny.h5"), scale=2 / synth.FRAMES_PER_SEQUENCE, seed=1, workers=1,
                          subjects=("S1", "S5"), actions=("Walking", "Sitting"), rooms="random", progress=False)
    return d, path


@pytest.fixture
def answers(monkeypatch, tmp_path):
    """Tuning on in a fresh cache; measure() answers the dict in answers["now"]."""
    monkeypatch.setenv("STRUCTNET_CONV_TUNE", "1")
    monkeypatch.setenv("STRUCTNET_CACHE_DIR", str(tmp_path / "cache"))
    conv_tune.reload()
    now = {"now": A}
    monkeypatch.setattr(conv_tune, "measure", lambda layer, shape, dtype, p: {"algorithm": now["now"][p], "ms": {}})
    yield now
    conv_tune.reload()


def _cfg(path, out, **kw):
    base = dict(data=path, out=str(out), preset="tiny", subjects=("S1", "S5"), progress=False, pretrain_epochs=1,
                pretrain_batch_size=8, epochs=1, batch_size=16, candidates=40, frequent=5, checkpoint_every=2,
                train_convs=True, optimizer="linesearch", conv_algorithm="auto")
    base.update(kw)
    from structlearn.config import TrainConfig
    return TrainConfig(**base)


def _params(run):
    return load_model(str(run / "model.npz"))[1]


def test_resume_repeats_the_recorded_choices(tiny_data, answers):
    d, path = tiny_data
    lines = []
    train(_cfg(path, d / "straight"), log=lines.append)
    rec = json.loads((d / "straight" / "conv_algorithms.json").read_text())
    assert rec["policy"] == "auto" and rec["layers"]["conv2 12x12x8x8"] == A
    assert rec["layers"]["conv1 28x28x8x3"] == {k: A[k] for k in ("forward", "weight_grad")}
    assert rec["choices"] and all(v.items() <= A.items() for v in rec["choices"].values())
    printed = [line for line in lines if line.startswith("convolution algorithms")]
    assert len(printed) == 1 and "conv2 12x12x8x8: forward im2col, weight_grad fft, input_grad fft" in printed[0]

    conv_tune.clear()
    train(_cfg(path, d / "pieces", stop_after=3), log=lambda *a: None)          # inside pre-training, with A
    recorded = load_checkpoint(d / "pieces" / "checkpoint.npz")[1]["conv_algorithms"]
    assert recorded and all(v.items() <= A.items() for v in recorded.values())
    conv_tune.clear()                                   # from now on the cache says B
    answers["now"] = B
    train(_cfg(path, d / "pieces", stop_after=4, resume=True), log=lambda *a: None)   # into Algorithm 1
    train(_cfg(path, d / "pieces", resume=True), log=lambda *a: None)
    a, b = _params(d / "straight"), _params(d / "pieces")
    for k in a:
        np.testing.assert_array_equal(b[k], a[k], err_msg=k)
    # the control: B gives other parameters, so the equality above is the record's doing
    train(_cfg(path, d / "all-b"), log=lambda *a: None)
    assert any(not np.array_equal(a[k], v) for k, v in _params(d / "all-b").items())


def test_a_checkpoint_without_a_record_resumes_by_the_fixed_rule(tiny_data, answers):
    d, path = tiny_data
    train(_cfg(path, d / "old", stop_after=2), log=lambda *a: None)
    ckpt = d / "old" / "checkpoint.npz"
    params, state, arrays = load_checkpoint(ckpt)
    del state["conv_algorithms"]
    save_checkpoint(ckpt, params, state, arrays)
    lines = []
    train(_cfg(path, d / "old", stop_after=1, resume=True), log=lines.append)
    rec = json.loads((d / "old" / "conv_algorithms.json").read_text())
    assert rec["policy"] == "fixed" and all(v == {p: "fft" for p in v} for v in rec["choices"].values())
    assert any("records none: the fixed rule" in line for line in lines)


def test_the_flag_pins_the_algorithm(tiny_data, answers):
    d, path = tiny_data
    args = run_train.parse_args(run_train.build_parser(), ["--conv-algorithm", "im2col", "--out", str(d / "flag")])
    assert args.conv_algorithm == "im2col"
    train(_cfg(path, d / "flag", conv_algorithm="im2col", stop_after=1), log=lambda *a: None)
    rec = json.loads((d / "flag" / "conv_algorithms.json").read_text())
    assert rec["policy"] == "im2col" and all(set(v.values()) == {"im2col"} for v in rec["choices"].values())


def test_the_default_never_measures(tiny_data, answers, monkeypatch):
    # reproducible by default: with tuning possible, a run of the default config keeps the fixed rule
    d, path = tiny_data
    monkeypatch.setattr(conv_tune, "measure", lambda *a: pytest.fail("measured under the default policy"))
    cfg = _cfg(path, d / "default", stop_after=1)
    cfg.conv_algorithm = run_train.parse_args(run_train.build_parser(), ["--out", str(d / "x")]).conv_algorithm
    train(cfg, log=lambda *a: None)
    rec = json.loads((d / "default" / "conv_algorithms.json").read_text())
    assert rec["policy"] == "fixed" and all(set(v.values()) == {"fft"} for v in rec["choices"].values())
