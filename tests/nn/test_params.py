import numpy as np
import pytest

from nn import Conv2D, Linear, Params
from nn.gradcheck import check_gradients, numerical_grad, relative_error
from nn.optim import sgd_step, weight_decay
from nn.params import load_npz, save_npz_atomic


def _params(rng, dtype=np.float64):
    return Params.init([Conv2D("c1", 3, 4, 3), Linear("h1", 10, 6)], rng, dtype)


def test_init_is_deterministic_and_schemes(rng):
    a = _params(np.random.default_rng(5))
    b = _params(np.random.default_rng(5))
    assert list(a) == ["c1.W", "c1.b", "h1.W", "h1.b"]
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    big = Params.init([Linear("h", 1000, 500)], rng)
    assert abs(big["h.W"].std() - np.sqrt(2 / 1000)) < 0.002      # He normal before ReLU
    tanh = Params.init([Linear("g", 1000, 500, activation="tanh")], rng)
    assert np.abs(tanh["g.W"]).max() <= np.sqrt(6 / 1500)          # Glorot uniform bound
    assert big["h.W"].dtype == np.float32 and not big["h.b"].any()


def test_moved_is_a_trial_point_sharing_untouched_blocks(rng):
    p = _params(rng)
    g = {"h1.W": np.ones_like(p["h1.W"])}
    m = p.moved(g, -0.5)
    np.testing.assert_array_equal(m["h1.W"], p["h1.W"] - 0.5)
    assert m["c1.W"] is p["c1.W"]                  # untouched blocks are shared, not copied


def test_save_load_npz_atomic_round_trip(tmp_path, rng):
    p = _params(rng, np.float32)
    path = tmp_path / "ck" / "params.npz"
    save_npz_atomic(path, {**p, "step": np.asarray(7)})
    q = load_npz(path)
    assert list(q) == list(p) + ["step"] and int(q["step"]) == 7
    for k in p:
        np.testing.assert_array_equal(q[k], p[k])
    assert [f.name for f in path.parent.iterdir()] == ["params.npz"]  # no temp file left behind


def test_load_errors_are_one_line(tmp_path):
    with pytest.raises(ValueError, match="no such file"):
        load_npz(tmp_path / "missing.npz")
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="unreadable parameter file"):
        load_npz(bad)


def test_weight_decay_only_on_weights_and_its_gradient(rng):
    p = _params(rng)
    cost, grads = weight_decay(p, 1e-2)
    assert set(grads) == {"c1.W", "h1.W"}
    assert np.isclose(cost, 1e-2 * sum((p[k] ** 2).sum() for k in grads))

    def f():
        return weight_decay(p, 1e-2)[0]
    errors = check_gradients(f, {k: p[k] for k in grads}, grads)
    assert max(errors.values()) < 1e-7


def test_sgd_step_without_momentum(rng):
    p = _params(rng)
    before = p.copy()
    g = {"h1.W": np.ones_like(p["h1.W"])}
    sgd_step(p, g, 0.1)
    np.testing.assert_allclose(p["h1.W"], before["h1.W"] - 0.1)
    np.testing.assert_array_equal(p["c1.W"], before["c1.W"])
    sgd_step(p, g, 0.1)  # no velocity: the second step is the same size as the first
    np.testing.assert_allclose(p["h1.W"], before["h1.W"] - 0.2)


def test_gradcheck_detects_a_wrong_gradient():
    x = np.array([1.0, 2.0, 3.0])

    def f():
        return float((x ** 2).sum())
    assert check_gradients(f, {"x": x}, {"x": 2 * x})["x"] < 1e-8
    assert check_gradients(f, {"x": x}, {"x": 2.1 * x})["x"] > 1e-2
    with pytest.raises(TypeError, match="float64"):
        numerical_grad(f, x.astype(np.float32))
    assert relative_error([1.0], [1.0]) == 0.0
