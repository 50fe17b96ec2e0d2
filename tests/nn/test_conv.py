import numpy as np
import pytest
from hypothesis import given, strategies as st

from nn import Conv2D, Params, hwnc_to_nchw, nchw_to_hwnc
from nn.conv import conv_output_size, good_fft_size

from .helpers import layer_gradcheck, naive_conv_hwnc


@st.composite
def conv_cases(draw, algorithm):
    k = draw(st.integers(1, 4))
    stride = 1 if algorithm == "fft" else draw(st.integers(1, 3))
    pad = draw(st.integers(0, 2))
    h = draw(st.integers(max(1, k - 2 * pad), 9))
    w = draw(st.integers(max(1, k - 2 * pad), 9))
    return dict(k=k, stride=stride, pad=pad, h=h, w=w, n=draw(st.integers(1, 3)),
                in_c=draw(st.integers(1, 3)), out_c=draw(st.integers(1, 3)),
                seed=draw(st.integers(0, 2**16)))


def _make(case, algorithm):
    rng = np.random.default_rng(case["seed"])
    layer = Conv2D("c", case["in_c"], case["out_c"], case["k"], case["stride"], case["pad"], algorithm=algorithm)
    params = Params.init([layer], rng, np.float64)
    params["c.b"] = rng.standard_normal(case["out_c"])
    x = rng.standard_normal((case["h"], case["w"], case["n"], case["in_c"]))
    return layer, params, x, rng


@pytest.mark.parametrize("algorithm", ["im2col", "fft"])
@given(data=st.data())
def test_conv_forward_matches_naive_loop(algorithm, data):
    case = data.draw(conv_cases(algorithm))
    layer, params, x, _ = _make(case, algorithm)
    y, _ = layer.forward(params, x)
    ref = naive_conv_hwnc(x, params["c.W"], params["c.b"], (case["stride"],) * 2, (case["pad"],) * 2)
    assert y.shape == ref.shape
    np.testing.assert_allclose(y, ref, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("algorithm", ["im2col", "fft"])
@given(data=st.data())
def test_conv_gradients_float64(algorithm, data):
    case = data.draw(conv_cases(algorithm))
    layer, params, x, rng = _make(case, algorithm)
    errors = layer_gradcheck(layer, params, x, rng)
    assert max(errors.values()) < 1e-6, errors


def test_conv_algorithms_agree_float32_at_paper_like_shape(rng):
    # conv2-like shape, small batch: FFT and im2col agree to float32 rounding
    x = rng.standard_normal((20, 20, 4, 8)).astype(np.float32)
    a = Conv2D("c", 8, 16, 5, algorithm="im2col")
    f = Conv2D("c", 8, 16, 5, algorithm="fft")
    p = Params.init([a], rng, np.float32)
    ya, ca = a.forward(p, x)
    yf, cf = f.forward(p, x)
    np.testing.assert_allclose(yf, ya, rtol=1e-4, atol=1e-4 * np.abs(ya).max())
    gy = rng.standard_normal(ya.shape).astype(np.float32)
    gxa, ga = a.backward(p, ca, gy)
    gxf, gf = f.backward(p, cf, gy)
    assert gxf.dtype == np.float32 and gf["c.W"].dtype == np.float32
    np.testing.assert_allclose(gxf, gxa, rtol=1e-4, atol=1e-4 * np.abs(gxa).max())
    np.testing.assert_allclose(gf["c.W"], ga["c.W"], rtol=1e-4, atol=1e-4 * np.abs(ga["c.W"]).max())


def test_conv_blocks_do_not_change_results(rng, monkeypatch):
    # a tiny memory budget forces many im2col row blocks and FFT batch blocks
    import nn.conv as conv
    x = rng.standard_normal((9, 8, 5, 2))
    gy = None
    for algorithm in ("im2col", "fft"):
        layer = Conv2D("c", 2, 3, 3, algorithm=algorithm)
        p = Params.init([layer], np.random.default_rng(0), np.float64)
        y0, c0 = layer.forward(p, x)
        gy = rng.standard_normal(y0.shape) if gy is None else gy
        g0 = layer.backward(p, c0, gy)
        monkeypatch.setattr(conv, "COL_BUDGET_BYTES", 1)
        monkeypatch.setattr(conv, "SPECTRUM_BUDGET_BYTES", 1)
        y1, c1 = layer.forward(p, x)
        g1 = layer.backward(p, c1, gy)
        monkeypatch.undo()
        np.testing.assert_allclose(y1, y0, atol=1e-12)
        np.testing.assert_allclose(g1[0], g0[0], atol=1e-12)
        np.testing.assert_allclose(g1[1]["c.W"], g0[1]["c.W"], atol=1e-12)


def test_need_gx_false_skips_input_gradient(rng):
    layer = Conv2D("c", 2, 3, 3)
    p = Params.init([layer], rng, np.float64)
    y, cache = layer.forward(p, rng.standard_normal((6, 6, 2, 2)))
    gx, grads = layer.backward(p, cache, np.ones_like(y), need_gx=False)
    assert gx is None and grads["c.W"].shape == (3, 2, 3, 3)


def test_layout_round_trip(rng):
    x = rng.standard_normal((2, 3, 4, 5))
    h = nchw_to_hwnc(x)
    assert h.shape == (4, 5, 2, 3) and h[1, 2, 1, 0] == x[1, 0, 1, 2]
    np.testing.assert_array_equal(hwnc_to_nchw(h), x)


def test_output_size_and_fft_size():
    assert conv_output_size(112, 9, 1, 0) == 104
    assert conv_output_size(7, 3, 2, 1) == 4
    assert good_fft_size(112) == 112 and good_fft_size(52) == 54 and good_fft_size(11) == 12
    with pytest.raises(ValueError, match="does not fit"):
        conv_output_size(3, 5, 1, 0)


def test_conv_errors_name_layer_and_shapes(rng):
    layer = Conv2D("conv2", 32, 32, 5)
    p = Params.init([layer], rng, np.float32)
    with pytest.raises(ValueError, match=r"conv2.*16 channels"):
        layer.forward(p, np.zeros((20, 20, 2, 16), np.float32))
    with pytest.raises(ValueError, match=r"conv2.*4-D"):
        layer.forward(p, np.zeros((20, 20, 32), np.float32))
    with pytest.raises(ValueError, match="does not fit"):
        layer.forward(p, np.zeros((3, 3, 1, 32), np.float32))
    with pytest.raises(TypeError, match="float32 or float64"):
        layer.forward(p, np.zeros((20, 20, 1, 32), np.int32))
    with pytest.raises(ValueError, match="stride 1"):
        Conv2D("c", 1, 1, 3, stride=2, algorithm="fft")
