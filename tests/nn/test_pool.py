import numpy as np
import pytest
from hypothesis import given, strategies as st

from nn import MaxPool2D

from .helpers import distinct_values, layer_gradcheck, naive_maxpool_hwnc


@given(h=st.integers(2, 9), w=st.integers(2, 9), n=st.integers(1, 3), c=st.integers(1, 3),
       k=st.integers(2, 3), seed=st.integers(0, 2**16))
def test_pool_forward_and_gradients(h, w, n, c, k, seed):
    if h < k or w < k:
        return
    rng = np.random.default_rng(seed)
    x = distinct_values(rng, (h, w, n, c))
    layer = MaxPool2D("p", k)
    y, _ = layer.forward({}, x)
    np.testing.assert_array_equal(y, naive_maxpool_hwnc(x, k))
    errors = layer_gradcheck(layer, {}, x, rng)
    assert errors["x"] < 1e-7, errors


def test_odd_sizes_drop_trailing_row_and_column():
    x = np.arange(5 * 5, dtype=np.float64).reshape(5, 5, 1, 1)
    layer = MaxPool2D("p", 2)
    y, cache = layer.forward({}, x)
    assert y.shape == (2, 2, 1, 1)
    np.testing.assert_array_equal(y[..., 0, 0], [[6, 8], [16, 18]])
    gx, _ = layer.backward({}, cache, np.ones_like(y))
    assert gx[4].sum() == 0 and gx[:, 4].sum() == 0 and gx.sum() == 4


def test_ties_send_gradient_to_first_maximum():
    x = np.zeros((2, 2, 1, 1))
    layer = MaxPool2D("p", 2)
    y, cache = layer.forward({}, x)
    gx, _ = layer.backward({}, cache, np.ones_like(y))
    np.testing.assert_array_equal(gx[..., 0, 0], [[1, 0], [0, 0]])


def test_pool_errors():
    with pytest.raises(ValueError, match="pool1.*does not fit"):
        MaxPool2D("pool1", 2).forward({}, np.zeros((1, 4, 1, 1)))
    with pytest.raises(ValueError, match="pool1.*4-D"):
        MaxPool2D("pool1", 2).forward({}, np.zeros((4, 4)))


@pytest.mark.parametrize("k", [2, 3])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_forward_values_are_forwards_bits(k, dtype):
    """forward_values (no argmax kept, for passes no backward follows) gives forward's y bit for
    bit: ties, signed zeros, NaN and odd sizes included, in parallel row blocks."""
    rng = np.random.default_rng(k)
    x = rng.choice(np.array([-1.0, -0.0, 0.0, 0.5, 2.0, np.nan]), size=(3 * k + 1, 4 * k + 2, 33, 65)).astype(dtype)
    x[:k, :k] = -0.0
    layer = MaxPool2D("p", k)
    y, _ = layer.forward({}, x)
    got = layer.forward_values(x)
    assert got.dtype == y.dtype and got.shape == y.shape
    np.testing.assert_array_equal(got.view(np.uint8), y.view(np.uint8))
