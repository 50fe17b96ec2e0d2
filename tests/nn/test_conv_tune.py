"""nn.conv_tune: the per-machine cache of measured choices, the policy, and mixed choices (the
forward by one algorithm, a gradient by the other) against the pure algorithms. No assertion
depends on a timing: the measurements are replaced by fixed answers, except in the one test of
measure()'s contract."""
import json

import numpy as np
import pytest

import nn.conv as conv
from nn import Conv2D, Params, conv_tune, parallel

from .helpers import layer_gradcheck

FAKE = {"forward": "im2col", "weight_grad": "fft", "input_grad": "im2col"}


@pytest.fixture
def tuner(monkeypatch, tmp_path):
    """Tuning on, a fresh cache directory, and measure() answering FAKE (its calls counted)."""
    monkeypatch.setenv("STRUCTNET_CONV_TUNE", "1")
    monkeypatch.setenv("STRUCTNET_CACHE_DIR", str(tmp_path))
    conv_tune.reload()
    conv_tune.set_policy("auto")                                # the opt-in; the default is "fixed"
    calls = []

    def fake_measure(layer, x_shape, dtype, pass_):
        calls.append((conv_tune.cpu_model(), x_shape, pass_))
        return {"algorithm": FAKE[pass_], "ms": {"fft": 1.0, "im2col": 2.0}}
    monkeypatch.setattr(conv_tune, "measure", fake_measure)
    yield calls, tmp_path / "conv_algorithms.json"
    conv_tune.reload()


def _run(layer, x, rng=None):
    """One forward and backward of layer on x (float64); (y, gx, gW) and the forward's cache."""
    rng = np.random.default_rng(0) if rng is None else rng
    p = Params.init([layer], np.random.default_rng(1), x.dtype)
    y, cache = layer.forward(p, x)
    gx, g = layer.backward(p, cache, np.random.default_rng(2).standard_normal(y.shape))
    return (y, gx, g[layer.W]), cache


def test_cache_is_written_read_back_and_keyed_by_machine(tuner, monkeypatch):
    calls, path = tuner
    layer = Conv2D("c", 2, 3, 3)
    x = np.random.default_rng(0).standard_normal((7, 6, 2, 2))
    _, cache = _run(layer, x)
    assert [c[2] for c in calls] == ["forward", "weight_grad", "input_grad"]
    assert cache["algorithm"] == "im2col"                       # FAKE's forward ran
    data = json.loads(path.read_text())
    table = data["machines"][conv_tune.machine_key()]
    key = conv_tune.shape_key(layer, x.shape, x.dtype)
    assert {p: e["algorithm"] for p, e in table[key].items()} == FAKE
    assert f"{parallel.threads()} thread" in conv_tune.machine_key()

    conv_tune.reload()                                          # a new process: read back, not measured
    _run(layer, x)
    assert len(calls) == 3
    assert conv_tune.used() == {key: FAKE}

    monkeypatch.setattr(conv_tune, "cpu_model", lambda: "Other CPU 9000")   # another machine: measured again
    _run(layer, x)
    assert [c[0] for c in calls[3:]] == ["Other CPU 9000"] * 3
    machines = json.loads(path.read_text())["machines"]
    assert len(machines) == 2 and any(m.startswith("Other CPU 9000 |") for m in machines)


@pytest.mark.parametrize("content", [b"{not json", b"\xff\xfe\x00garbage", b'["a list"]',
                                     b'{"format": 99, "machines": {}}'])
def test_corrupt_cache_warns_once_and_measures_again(tuner, capsys, content):
    calls, path = tuner
    path.write_bytes(content)
    layer = Conv2D("c", 2, 3, 3)
    x = np.random.default_rng(0).standard_normal((6, 6, 2, 2))
    _run(layer, x)
    _run(layer, x)
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unreadable convolution algorithm cache" in err and str(path) in err
    assert len(calls) == 3
    assert json.loads(path.read_text())["format"] == conv_tune.CACHE_FORMAT   # rewritten, valid


def test_unwritable_cache_keeps_the_choice_in_memory(tuner, monkeypatch, tmp_path, capsys):
    calls, _ = tuner
    (tmp_path / "a_file").write_text("")
    monkeypatch.setenv("STRUCTNET_CACHE_DIR", str(tmp_path / "a_file" / "below"))
    conv_tune.reload()
    layer = Conv2D("c", 2, 3, 3)
    x = np.random.default_rng(0).standard_normal((6, 6, 2, 2))
    _, cache = _run(layer, x)
    _run(layer, x)
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot write the convolution algorithm cache" in err
    assert len(calls) == 3 and cache["algorithm"] == "im2col"


def test_the_fixed_rule_without_tuning_and_the_policies(tuner, monkeypatch):
    calls, path = tuner
    s1, s2 = Conv2D("c", 2, 3, 3), Conv2D("d", 2, 3, 3, stride=2)
    shape, dt = (8, 8, 2, 2), np.dtype(np.float64)
    monkeypatch.setenv("STRUCTNET_CONV_TUNE", "0")
    assert [s1.resolved_algorithm(np, shape, dt, p) for p in conv_tune.PASSES] == ["fft"] * 3
    monkeypatch.setenv("STRUCTNET_CONV_TUNE", "1")
    assert s2.resolved_algorithm(np, shape, dt, "forward") == "im2col"   # one candidate: nothing to time
    for mode, expected in (("fixed", ("fft", "im2col")), ("fft", ("fft", "im2col")), ("im2col", ("im2col",) * 2)):
        conv_tune.set_policy(mode)
        assert tuple(c.resolved_algorithm(np, shape, dt, "weight_grad") for c in (s1, s2)) == expected
    assert calls == [] and not path.exists()
    conv_tune.set_policy("auto", {conv_tune.shape_key(s1, shape, dt): {"forward": "im2col"}})
    assert s1.resolved_algorithm(np, shape, dt, "forward") == "im2col"     # pinned: not measured
    assert calls == []
    assert s1.resolved_algorithm(np, shape, dt, "weight_grad") == "fft"    # FAKE, measured
    assert conv_tune.record() == {conv_tune.shape_key(s1, shape, dt): {"forward": "im2col", "weight_grad": "fft"}}
    with pytest.raises(ValueError, match="unknown convolution algorithm policy"):
        conv_tune.set_policy("fastest")
    with pytest.raises(ValueError, match="not a record"):
        conv_tune.set_policy("auto", {"k": {"forward": "winograd"}})


def test_measure_times_both_candidates_of_every_pass(monkeypatch):
    layer = Conv2D("c", 3, 4, 3)
    conv_tune.set_policy("auto")
    monkeypatch.setenv("STRUCTNET_CONV_TUNE", "0")      # the passes before the measured one: the fixed rule
    for pass_ in conv_tune.PASSES:
        entry = conv_tune.measure(layer, (9, 9, 4, 3), np.dtype(np.float32), pass_)
        assert set(entry["ms"]) == {"fft", "im2col"} and all(0 <= t < np.inf for t in entry["ms"].values())
        ms = entry["ms"]        # the fixed rule (fft here) stays unless im2col wins by the margin
        assert entry["algorithm"] == ("im2col" if ms["im2col"] < (1 - conv_tune.TUNE_MARGIN) * ms["fft"] else "fft")
    lines = conv_tune.format_table({"k": {"forward": entry}})
    assert len(lines) == 2 and lines[1].split()[1:3] == ["forward", entry["algorithm"]]


def test_command_line_show_tune_clear(tuner, capsys):
    calls, path = tuner
    assert conv_tune.main(["--tune", "tiny", "--batch", "4"]) == 0
    out = capsys.readouterr().out
    assert "conv2 12x12x4x8: forward im2col, weight_grad fft, input_grad im2col" in out
    assert "conv1 28x28x4x3: forward im2col, weight_grad fft\n" in out       # no input gradient for the image
    assert len(calls) == 8 and path.exists()
    conv_tune.main(["--show"])
    out = capsys.readouterr().out
    assert "(this machine)" in out and "HWNC 12x12x4x8 -> 8, k 3x3, s 1x1, p 0x0, float32" in out
    assert out.count("input_grad") == 2
    conv_tune.main(["--clear"])
    assert not path.exists() and "removed" in capsys.readouterr().out


# ---------------------------------------------------------------- mixed choices
MIXES = [  # (forward, weight_grad, input_grad)
    ("im2col", "fft", "fft"), ("fft", "im2col", "im2col"),
    ("im2col", "fft", "im2col"), ("fft", "im2col", "fft"), ("fft", "fft", "im2col"), ("im2col", "im2col", "fft"),
]


@pytest.mark.parametrize("budget", [None, 1])       # 1: many FFT batch blocks and im2col row blocks
@pytest.mark.parametrize("mix", MIXES)
def test_mixed_choices_equal_the_pure_algorithms(mix, budget, monkeypatch, rng):
    if budget:
        monkeypatch.setattr(conv, "SPECTRUM_BUDGET_BYTES", budget)
        monkeypatch.setattr(conv, "COL_BUDGET_BYTES", budget)
    layer = Conv2D("c", 3, 4, 3, pad=1)
    x = rng.standard_normal((9, 7, 5, 3))
    key = conv_tune.shape_key(layer, x.shape, x.dtype)
    pure = {}
    for a in ("im2col", "fft"):
        conv_tune.set_policy(a)
        pure[a], _ = _run(layer, x)
    # which implementation ran for which gradient, to know the mix was taken
    ran = []
    for name in ("_backward_fft", "_backward_im2col"):
        original = getattr(Conv2D, name)

        def spy(self, cache, gy, W, want_gx, want_gW, _original=original, _name=name):
            ran.append((_name[10:], want_gx, want_gW))
            return _original(self, cache, gy, W, want_gx, want_gW)
        monkeypatch.setattr(Conv2D, name, spy)
    conv_tune.set_policy("auto", {key: dict(zip(("forward", "weight_grad", "input_grad"), mix))})
    mixed, cache = _run(layer, x)
    assert cache["algorithm"] == mix[0] and ("spectra" in cache) == (mix[0] == "fft")
    backward = {(a, gx, gw) for a, gx, gw in ran}
    if mix[1] == mix[2]:
        assert backward == {(mix[1], True, True)}
    else:
        assert backward == {(mix[1], False, True), (mix[2], True, False)}
    for i, what in enumerate(("y", "gx", "gW")):
        scale = np.abs(pure["im2col"][i]).max()
        for a in ("im2col", "fft"):
            assert np.abs(mixed[i] - pure[a][i]).max() <= 1e-10 * scale, (what, a)


@pytest.mark.parametrize("mix", MIXES[:2])
def test_mixed_choices_pass_the_finite_difference_check(mix, rng):
    layer = Conv2D("c", 2, 3, 3, pad=1)
    params = Params.init([layer], rng, np.float64)
    params["c.b"] = rng.standard_normal(3)
    x = rng.standard_normal((6, 5, 2, 2))
    conv_tune.set_policy("auto", {conv_tune.shape_key(layer, x.shape, x.dtype):
                                  dict(zip(("forward", "weight_grad", "input_grad"), mix))})
    errors = layer_gradcheck(layer, params, x, rng)
    assert max(errors.values()) < 1e-6, errors
    assert conv_tune.used()[conv_tune.shape_key(layer, x.shape, x.dtype)]["input_grad"] == mix[2]
