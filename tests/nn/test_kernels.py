"""The CUDA kernels of nn/kernels/*.cu against their NumPy references, run on the CPU through
nn.kernels.emulate (the same source, compiled by the host C++ compiler). This checks the
kernels' index arithmetic, padding, bounds and tie-breaking and the launchers' grids, argument
order and dtypes on machines without a GPU; tests/gpu/ runs them on a device."""
import shutil
import subprocess

import numpy as np
import pytest
from hypothesis import given, strategies as st

from data.metrics import pairwise_mpjpe
from nn import kernels
from nn.conv import col2im_add, conv_output_size, im2col, pad_hwnc
from nn.kernels import emulate, ops
from nn.pool import MaxPool2D

pytestmark = pytest.mark.skipif(emulate.compiler() is None, reason="kernel emulation needs a C++ compiler")
DTYPES = [np.float32, np.float64]
KERNEL_FILES = ["conv.cu", "pool.cu", "search.cu"]


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
    geometry = (g["kh"], g["kw"], g["sy"], g["sx"])
    xpad = pad_hwnc(x, g["ph"], g["pw"])

    col = ops.im2col(x, *geometry, g["ph"], g["pw"], out_w, rows)
    np.testing.assert_array_equal(col, im2col(xpad, *geometry, rows))

    gcol = rng.standard_normal(col.shape).astype(g["dtype"])
    start = rng.standard_normal(x.shape).astype(g["dtype"])   # col2im adds into what is there
    gx = start.copy()
    ops.col2im_add(gx, gcol, *geometry, g["ph"], g["pw"], out_w, rows)
    gxpad = np.zeros_like(xpad)
    col2im_add(gxpad, gcol, *geometry, rows)
    want = start + gxpad[g["ph"]:g["ph"] + g["h"], g["pw"]:g["pw"] + g["w"]]
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


@given(b=st.integers(1, 6), c=st.integers(1, 1100), j=st.integers(1, 17), seed=st.integers(0, 2**16),
       dtype=st.sampled_from(DTYPES))
def test_pairwise_mpjpe_kernel_matches_numpy(b, c, j, seed, dtype):
    rng = np.random.default_rng(seed)
    a, cand = rng.normal(0, 300, (b, j, 3)).astype(dtype), rng.normal(0, 300, (c, j, 3)).astype(dtype)
    np.testing.assert_allclose(ops.pairwise_mpjpe(a, cand, 0.1), 0.1 * pairwise_mpjpe(a, cand),
                               rtol=1e-5 if dtype == np.float32 else 1e-12)


@given(b=st.integers(1, 5), c=st.integers(1, 2500), seed=st.integers(0, 2**16), dtype=st.sampled_from(DTYPES),
       tie=st.booleans())
def test_fused_most_violated_matches_argmax_of_score_plus_margin(b, c, seed, dtype, tie):
    rng = np.random.default_rng(seed)
    y = rng.normal(0, 200, (b, 17, 3)).astype(dtype)
    cand = rng.normal(0, 200, (c, 17, 3)).astype(dtype)
    if tie and c > 3:  # duplicate candidates give exactly equal values: the lower index must win
        cand[c - 1] = cand[c // 2]
        cand[1] = cand[c // 2]
    scale = 0.01
    margins = ops.pairwise_mpjpe(y, cand, scale)  # the same float arithmetic as the fused kernel
    scores = rng.standard_normal((b, c)).astype(dtype)
    if tie and c > 3:
        scores[:, [1, c // 2, c - 1]] = scores[:, [c // 2]] + 100  # the tied triple is the maximum
    idx, margin, value = ops.most_violated(scores, y, cand, scale)
    values = scores + margins
    np.testing.assert_array_equal(idx, values.argmax(axis=1))
    rows = np.arange(b)
    np.testing.assert_array_equal(margin, margins[rows, idx])
    np.testing.assert_array_equal(value, values[rows, idx])


def test_launch_rejects_wrong_arguments():
    x = np.zeros((4, 4, 1, 1), np.float32)
    with pytest.raises(TypeError, match="argument idx must be a C-contiguous uint8 array, got int64"):
        kernels.launch("pool.cu", "maxpool_forward", np.float32, (1,), (32,), x, np.zeros((2, 2, 1, 1), np.float32),
                       np.zeros((2, 2, 1, 1), np.int64), 4, 4, 1, 2, 2, 2)
    with pytest.raises(TypeError, match="expected 9 arguments"):
        kernels.launch("pool.cu", "maxpool_forward", np.float32, (1,), (32,), x)
    with pytest.raises(TypeError, match="float32 or float64"):
        ops.maxpool_forward(x.astype(np.float16), 2)


def test_every_kernel_file_declares_kernels():
    found = {f: sorted(kernels.signatures(f)) for f in KERNEL_FILES}
    assert found == {"conv.cu": ["col2im_hwnc", "im2col_hwnc"], "pool.cu": ["maxpool_backward", "maxpool_forward"],
                     "search.cu": ["most_violated_partial", "most_violated_reduce", "pairwise_mpjpe"]}


NVCC = shutil.which("nvcc")


@pytest.mark.skipif(NVCC is None, reason="nvcc not installed")
@pytest.mark.parametrize("file", KERNEL_FILES)
def test_kernels_compile_with_nvcc(file, tmp_path):
    """The CUDA compiler accepts every instantiation (no GPU needed to compile)."""
    lines = []
    for name, params in kernels.signatures(file).items():
        for t in kernels.FLOAT_TYPES.values():
            args = ", ".join(p.text.replace("T", t) if p.ctype == "T" else p.text for p in params)
            lines.append(f"template __global__ void {name}<{t}>({args});")
    src = tmp_path / file
    src.write_text(kernels.source(file) + "\n" + "\n".join(lines) + "\n")
    done = subprocess.run([NVCC, "-std=c++14", "-arch=sm_80", "-c", str(src), "-o", str(tmp_path / "k.o")],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "warning" not in done.stderr.lower(), done.stderr
