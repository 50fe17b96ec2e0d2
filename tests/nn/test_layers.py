import numpy as np
import pytest
from hypothesis import given, strategies as st

from nn import Dropout, Identity, Linear, Params, ReLU, Tanh, make_activation
from nn.plumbing import concat, flatten_hwnc, split, unflatten_hwnc

from .helpers import layer_gradcheck


def away_from_zero(rng, shape, margin=0.1):
    x = rng.standard_normal(shape)
    return np.where(x >= 0, x + margin, x - margin)


@given(n=st.integers(1, 4), d=st.integers(1, 6), seed=st.integers(0, 2**16))
def test_activation_gradients(n, d, seed):
    rng = np.random.default_rng(seed)
    x = away_from_zero(rng, (n, d))  # ReLU's kink stays more than 0.1 away
    for layer in (ReLU(), Tanh(), Identity()):
        errors = layer_gradcheck(layer, {}, x, rng)
        assert errors["x"] < 1e-7, (type(layer).__name__, errors)


def test_activation_forward_values():
    x = np.array([[-2.0, -0.5, 0.0, 0.5, 2.0]])
    np.testing.assert_array_equal(ReLU().forward({}, x)[0], [[0, 0, 0, 0.5, 2]])
    np.testing.assert_allclose(Tanh().forward({}, x)[0], np.tanh(x))
    assert Identity().forward({}, x)[0] is x
    with pytest.raises(ValueError, match="unknown activation 'gelu'"):
        make_activation("gelu", "h1")


@given(n=st.integers(1, 5), din=st.integers(1, 7), dout=st.integers(1, 7), seed=st.integers(0, 2**16))
def test_linear_gradients_and_forward(n, din, dout, seed):
    rng = np.random.default_rng(seed)
    layer = Linear("fc", din, dout)
    p = Params.init([layer], rng, np.float64)
    p["fc.b"] = rng.standard_normal(dout)
    x = rng.standard_normal((n, din))
    y, _ = layer.forward(p, x)
    np.testing.assert_allclose(y, np.einsum("ni,io->no", x, p["fc.W"]) + p["fc.b"])
    errors = layer_gradcheck(layer, p, x, rng)
    assert max(errors.values()) < 1e-7, errors


def test_linear_shape_error_names_layer():
    layer = Linear("h3", 2048, 1024)
    p = Params.init([layer], np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"h3.*\(4, 100\).*\(N, 2048\)"):
        layer.forward(p, np.zeros((4, 100), np.float32))


@given(n=st.integers(1, 5), d=st.integers(1, 9), rate=st.sampled_from([0.0, 0.25, 0.75]), seed=st.integers(0, 2**16))
def test_dropout_gradient_with_fixed_mask(n, d, rate, seed):
    rng = np.random.default_rng(seed)
    layer = Dropout("drop", rate)
    x = rng.standard_normal((n, d))
    mask = layer.make_mask(np.random.default_rng(seed), x.shape, x.dtype)
    errors = layer_gradcheck(layer, {}, x, rng, forward_kw={"train": True, "mask": mask})
    assert errors["x"] < 1e-7


def test_dropout_statistics_and_eval_identity():
    layer = Dropout("drop", 0.75)
    x = np.ones((200, 500))
    y, cache = layer.forward({}, x, train=True, rng=np.random.default_rng(0))
    kept = (y != 0).mean()
    assert abs(kept - 0.25) < 0.01
    assert set(np.unique(y)) == {0.0, 4.0}          # survivors scaled by 1/(1-rate)
    assert abs(y.mean() - 1.0) < 0.03               # expectation preserved
    y_eval, _ = layer.forward({}, x, train=False)
    assert y_eval is x
    gx, _ = layer.backward({}, cache, np.ones_like(x))
    np.testing.assert_array_equal(gx, y)            # backward uses the same mask
    # seedable: the same generator seed gives the same mask
    y2, _ = layer.forward({}, x, train=True, rng=np.random.default_rng(0))
    np.testing.assert_array_equal(y, y2)
    with pytest.raises(ValueError, match="random generator"):
        layer.forward({}, x, train=True)
    with pytest.raises(ValueError, match="rate must be"):
        Dropout("d", 1.0)


@pytest.mark.parametrize("rate", [0.1, 0.3, 0.75])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dropout_mask_keeps_the_first_formulas_values(rate, dtype):
    """The mask is written in place (one float64 draw, no float64 mask); its values are those of the
    first formula, (keep / (1 - rate)).astype(dtype), so runs with dropout keep their figures."""
    mask = Dropout("d", rate).make_mask(np.random.default_rng(3), (64, 300), dtype)
    first = ((np.random.default_rng(3).random((64, 300)) >= rate) / (1.0 - rate)).astype(dtype)
    assert mask.dtype == dtype
    np.testing.assert_array_equal(mask, first)


def test_flatten_and_concat_round_trip(rng):
    x = rng.standard_normal((3, 4, 2, 5))
    y, shape = flatten_hwnc(x)
    assert y.shape == (2, 60)
    np.testing.assert_array_equal(y[1].reshape(3, 4, 5), x[:, :, 1, :])
    np.testing.assert_array_equal(unflatten_hwnc(y, shape), x)
    a, b = rng.standard_normal((2, 3)), rng.standard_normal((2, 4))
    c, sizes = concat([a, b])
    ga, gb = split(c, sizes)
    np.testing.assert_array_equal(ga, a)
    np.testing.assert_array_equal(gb, b)
