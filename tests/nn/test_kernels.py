"""The CUDA kernels of nn/kernels/*.cu against their NumPy references, run on the CPU through
nn.kernels.emulate (the same source, compiled by the host C++ compiler). This checks the
kernels' index arithmetic, padding, bounds and tie-breaking and the launchers' grids, argument
order and dtypes on machines without a GPU; tests/gpu/ runs them on a device."""
import shutil

import numpy as np
import pytest
from hypothesis import given, strategies as st

from nn import kernels
from nn.conv import col2im_add, conv_output_size, im2col
from nn.kernels import emulate, ops
from nn.pool import MaxPool2D

from .helpers import compile_with_nvcc

pytestmark = pytest.mark.skipif(emulate.compiler() is None, reason="kernel emulation needs a C++ compiler")
DTYPES = [np.float32, np.float64]
KERNEL_FILES = [ops.CONV_CU, ops.POOL_CU]


@st.composite
def conv_geometry(draw):
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    sy, sx = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    ph, pw = draw(st.integers(0, kh - 1)), draw(st.integers(0, kw - 1))
    h, w = draw(st.integers(max(1, kh - 2 * ph), 9)), draw(st.integers(max(1, kw - 2 * pw), 9))
    return dict(h=h, w=w, n=draw(st.integers(1, 3)), c=draw(st.integers(1, 4)), kh=kh, kw=kw, sy=sy, sx=sx,
                ph=ph, pw=pw, seed=draw(st.integers(0, 2**16)), dtype=draw(st.sampled_from(DTYPES)))


@given(conv_geometry(), st.data())
def test_im2col_and_col2im_match_numpy(g, data):
    rng = np.random.default_rng(g["seed"])
    x = rng.standard_normal((g["h"], g["w"], g["n"], g["c"])).astype(g["dtype"])
    out_h = conv_output_size(g["h"], g["kh"], g["sy"], g["ph"])
    out_w = conv_output_size(g["w"], g["kw"], g["sx"], g["pw"])
    r0 = data.draw(st.integers(0, out_h - 1))
    rows = slice(r0, data.draw(st.integers(r0 + 1, out_h)))  # a block of output rows, as Conv2D uses
    geometry = (g["kh"], g["kw"], g["sy"], g["sx"], g["ph"], g["pw"], out_w)

    col = ops.im2col(x, *geometry, rows)
    np.testing.assert_array_equal(col, im2col(x, *geometry, rows))

    gcol = rng.standard_normal(col.shape).astype(g["dtype"])
    start = rng.standard_normal(x.shape).astype(g["dtype"])   # col2im adds into what is there
    gx = start.copy()
    ops.col2im_add(gx, gcol, *geometry, rows)
    added = np.zeros_like(x)
    col2im_add(added, gcol, *geometry, rows)
    want = start + added
    np.testing.assert_allclose(gx, want, rtol=1e-5 if g["dtype"] == np.float32 else 1e-12, atol=1e-5)


@given(h=st.integers(2, 9), w=st.integers(2, 9), n=st.integers(1, 3), c=st.integers(1, 3), k=st.integers(2, 3),
       seed=st.integers(0, 2**16), dtype=st.sampled_from(DTYPES))
def test_maxpool_kernels_match_numpy(h, w, n, c, k, seed, dtype):
    if h < k or w < k:
        return
    rng = np.random.default_rng(seed)
    x = rng.integers(-2, 3, size=(h, w, n, c)).astype(dtype)  # small integers: many ties
    layer = MaxPool2D("p", k)
    y, cache = layer.forward({}, x)
    y_k, idx_k = ops.maxpool_forward(x, k)
    np.testing.assert_array_equal(y_k, y)
    np.testing.assert_array_equal(idx_k, cache["idx"])  # the same (first) argmax on ties
    gy = rng.standard_normal(y.shape).astype(dtype)
    np.testing.assert_array_equal(ops.maxpool_backward(gy, idx_k, x.shape, k), layer.backward({}, cache, gy)[0])


def test_launch_rejects_wrong_arguments():
    x = np.zeros((4, 4, 1, 1), np.float32)
    with pytest.raises(TypeError, match="argument idx must be a C-contiguous uint8 array, got int64"):
        kernels.launch(ops.POOL_CU, "maxpool_forward", np.float32, (1,), (32,), x, np.zeros((2, 2, 1, 1), np.float32),
                       np.zeros((2, 2, 1, 1), np.int64), 4, 4, 1, 2, 2, 2)
    with pytest.raises(TypeError, match="expected 9 arguments"):
        kernels.launch(ops.POOL_CU, "maxpool_forward", np.float32, (1,), (32,), x)
    with pytest.raises(TypeError, match="float32 or float64"):
        ops.maxpool_forward(x.astype(np.float16), 2)


def test_every_kernel_file_declares_kernels():
    found = {f.name: sorted(kernels.signatures(f)) for f in KERNEL_FILES}
    assert found == {"conv.cu": ["col2im_hwnc", "im2col_hwnc"], "pool.cu": ["maxpool_backward", "maxpool_forward"]}


NVCC = shutil.which("nvcc")


@pytest.mark.skipif(NVCC is None, reason="nvcc not installed")
@pytest.mark.parametrize("path", KERNEL_FILES, ids=lambda p: p.name)
def test_kernels_compile_with_nvcc(path, tmp_path):
    """The CUDA compiler accepts every instantiation (no GPU needed to compile)."""
    done = compile_with_nvcc(NVCC, path, tmp_path)
    assert done.returncode == 0, done.stderr
    assert "warning" not in done.stderr.lower(), done.stderr
