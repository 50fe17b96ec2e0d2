"""Launchers of the CUDA kernels, one per operation, each with the NumPy function it must equal.

Every function takes CuPy arrays (the GPU path) or NumPy arrays (the CPU emulation of the same
kernel, for tests; see nn.kernels.emulate), allocates its outputs with the inputs' array module
and returns them. Shapes follow the layers: HWNC for images, (B, J, 3) for poses.
"""
from .. import backend
from . import THREADS_PER_BLOCK, grid_for, launch


def _xp(a):
    return backend.get_array_module(a)


def _contiguous(a):
    return _xp(a).ascontiguousarray(a)


# ---- convolution (nn/conv.py) ------------------------------------------------------------------
def im2col(x, kh, kw, sy, sx, ph, pw, out_w, rows):
    """Patch matrix (len(rows) * out_w * N, kh * kw * C) of the output rows `rows` (a slice) of an
    unpadded HWNC input x (H, W, N, C), zero padding (ph, pw) applied on the fly. Equals
    nn.conv.im2col(pad_hwnc(x, ph, pw), kh, kw, sy, sx, rows)."""
    x = _contiguous(x)
    H, W, N, C = x.shape
    n_rows = rows.stop - rows.start
    col = _xp(x).empty((n_rows * out_w * N, kh * kw * C), dtype=x.dtype)
    launch("conv.cu", "im2col_hwnc", x.dtype, (grid_for(col.size),), (THREADS_PER_BLOCK,),
           x, col, H, W, N, C, kh, kw, sy, sx, ph, pw, out_w, rows.start, n_rows)
    return col


def col2im_add(gx, gcol, kh, kw, sy, sx, ph, pw, out_w, rows):
    """gx (H, W, N, C) += the input gradient of the patch gradient gcol of the output rows `rows`
    (the adjoint of im2col), in place, without atomics."""
    H, W, N, C = gx.shape
    if not gx.flags.c_contiguous:
        raise ValueError("col2im_add: gx must be C-contiguous (it is updated in place)")
    launch("conv.cu", "col2im_hwnc", gx.dtype, (grid_for(gx.size),), (THREADS_PER_BLOCK,),
           _contiguous(gcol), gx, H, W, N, C, kh, kw, sy, sx, ph, pw, out_w, rows.start, rows.stop - rows.start)


# ---- max-pooling (nn/pool.py) ------------------------------------------------------------------
def maxpool_forward(x, k):
    """x (H, W, N, C) -> y (H//k, W//k, N, C), argmax idx (same shape, uint8), as MaxPool2D."""
    x = _contiguous(x)
    H, W, N, C = x.shape
    out_h, out_w = H // k, W // k
    xp = _xp(x)
    y = xp.empty((out_h, out_w, N, C), dtype=x.dtype)
    idx = xp.empty(y.shape, dtype=xp.uint8)
    launch("pool.cu", "maxpool_forward", x.dtype, (grid_for(y.size),), (THREADS_PER_BLOCK,),
           x, y, idx, H, W, N * C, k, out_h, out_w)
    return y, idx


def maxpool_backward(gy, idx, in_shape, k):
    """gy, idx (H//k, W//k, N, C) -> gx (H, W, N, C): gy routed to each window's argmax."""
    gy = _contiguous(gy)
    H, W, N, C = in_shape
    gx = _xp(gy).empty(tuple(in_shape), dtype=gy.dtype)
    launch("pool.cu", "maxpool_backward", gy.dtype, (grid_for(gx.size),), (THREADS_PER_BLOCK,),
           gy, _contiguous(idx), gx, H, W, N * C, k, idx.shape[0], idx.shape[1])
    return gx


# ---- the most-violated search (structlearn/search.py) ------------------------------------------
def _poses(a, dtype, name):
    if a.ndim != 3 or a.shape[2] != 3:
        raise ValueError(f"{name}: expected poses (n, J, 3), got {tuple(a.shape)}")
    return _xp(a).ascontiguousarray(a, dtype=dtype)


def pairwise_mpjpe(a, b, scale=1.0):
    """scale * MPJPE of every pose of a (B, J, 3) against every pose of b (C, J, 3) -> (B, C),
    as data.metrics.pairwise_mpjpe (float32 unless an input is float64)."""
    dtype = backend.result_float_dtype(a, b)
    a, b = _poses(a, dtype, "a"), _poses(b, dtype, "b")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"pairwise_mpjpe: joint counts differ: a {tuple(a.shape)}, b {tuple(b.shape)}")
    out = _xp(a).empty((a.shape[0], b.shape[0]), dtype=dtype)
    launch("search.cu", "pairwise_mpjpe", dtype, (grid_for(out.size),), (THREADS_PER_BLOCK,),
           a, b, out, a.shape[0], b.shape[0], a.shape[1], scale)
    return out


SEARCH_THREADS = 128
CANDIDATES_PER_SLOT = 8


def most_violated(scores, y, cand, scale):
    """Per row b: argmax_c scores[b, c] + scale * MPJPE(y_b, cand_c) (eq. 7), the margins never
    materialised. scores (B, C), y (B, J, 3), cand (C, J, 3) -> (index (B,) int64, margin (B,),
    value (B,)); ties go to the lower index, as numpy.argmax."""
    dtype = scores.dtype
    B, C = scores.shape
    y, cand = _poses(y, dtype, "y"), _poses(cand, dtype, "cand")
    if y.shape[0] != B or cand.shape[0] != C or y.shape[1] != cand.shape[1]:
        raise ValueError(f"most_violated: shapes disagree: scores {tuple(scores.shape)}, y {tuple(y.shape)}, "
                         f"cand {tuple(cand.shape)}")
    xp = _xp(scores)
    blocks_x = max(1, -(-C // (SEARCH_THREADS * CANDIDATES_PER_SLOT)))
    P = blocks_x * SEARCH_THREADS
    part_v = xp.empty((B, P), dtype=dtype)
    part_i = xp.empty((B, P), dtype=xp.int64)
    part_m = xp.empty((B, P), dtype=dtype)
    launch("search.cu", "most_violated_partial", dtype, (blocks_x, min(B, 65535)), (SEARCH_THREADS,),
           _contiguous(scores), y, cand, B, C, y.shape[1], scale, part_v, part_i, part_m)
    index = xp.empty(B, dtype=xp.int64)
    margin, value = xp.empty(B, dtype=dtype), xp.empty(B, dtype=dtype)
    launch("search.cu", "most_violated_reduce", dtype, (grid_for(B, SEARCH_THREADS),), (SEARCH_THREADS,),
           part_v, part_i, part_m, B, P, index, margin, value)
    return index, margin, value


# ---- element-wise backward passes (nn/activations.py), GPU only --------------------------------
def _elementwise(name, inputs, outputs, body):
    cp = backend.cupy()
    key = (name, cp.cuda.Device().id)
    if key not in _ELEMENTWISE:
        _ELEMENTWISE[key] = cp.ElementwiseKernel(inputs, outputs, body, name)
    return _ELEMENTWISE[key]


_ELEMENTWISE = {}


def relu_backward(gy, y):
    """gy * (y > 0) in one pass (two CuPy kernels and a boolean temporary otherwise)."""
    return _elementwise("relu_backward", "T gy, T y", "T gx", "gx = y > (T)0 ? gy : (T)0")(gy, y)


def tanh_backward(gy, y):
    """gy * (1 - y^2) in one pass."""
    return _elementwise("tanh_backward", "T gy, T y", "T gx", "gx = gy * ((T)1 - y * y)")(gy, y)
