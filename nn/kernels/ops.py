"""Launchers of the CUDA kernels, one per operation, each with the NumPy function it must equal.

Every function takes CuPy arrays (the GPU path) or NumPy arrays (the CPU emulation of the same
kernel, for tests; see nn.kernels.emulate), allocates its outputs with the inputs' array module
and returns them. Spatial arrays are HWNC, as in the layers.
"""
from .. import backend
from . import KERNEL_DIR, THREADS_PER_BLOCK, grid_for, launch

CONV_CU = KERNEL_DIR / "conv.cu"
POOL_CU = KERNEL_DIR / "pool.cu"


def _xp(a):
    return backend.get_array_module(a)


def _contiguous(a):
    return _xp(a).ascontiguousarray(a)


# ---- convolution (nn/conv.py) ------------------------------------------------------------------
def im2col(x, kh, kw, sy, sx, ph, pw, out_w, rows):
    """Patch matrix (len(rows) * out_w * N, kh * kw * C) of the output rows `rows` (a slice) of an
    unpadded HWNC input x (H, W, N, C), zero padding (ph, pw) applied on the fly, as nn.conv.im2col
    (same signature)."""
    x = _contiguous(x)
    H, W, N, C = x.shape
    n_rows = rows.stop - rows.start
    col = _xp(x).empty((n_rows * out_w * N, kh * kw * C), dtype=x.dtype)
    launch(CONV_CU, "im2col_hwnc", x.dtype, (grid_for(col.size),), (THREADS_PER_BLOCK,),
           x, col, H, W, N, C, kh, kw, sy, sx, ph, pw, out_w, rows.start, n_rows)
    return col


def col2im_add(gx, gcol, kh, kw, sy, sx, ph, pw, out_w, rows):
    """gx (H, W, N, C) += the input gradient of the patch gradient gcol of the output rows `rows`
    (the adjoint of im2col), in place, without atomics, as nn.conv.col2im_add (same signature)."""
    H, W, N, C = gx.shape
    if not gx.flags.c_contiguous:
        raise ValueError("col2im_add: gx must be C-contiguous (it is updated in place)")
    launch(CONV_CU, "col2im_hwnc", gx.dtype, (grid_for(gx.size),), (THREADS_PER_BLOCK,),
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
    launch(POOL_CU, "maxpool_forward", x.dtype, (grid_for(y.size),), (THREADS_PER_BLOCK,),
           x, y, idx, H, W, N * C, k, out_h, out_w)
    return y, idx


def maxpool_backward(gy, idx, in_shape, k):
    """gy, idx (H//k, W//k, N, C) -> gx (H, W, N, C): gy routed to each window's argmax."""
    gy = _contiguous(gy)
    H, W, N, C = in_shape
    gx = _xp(gy).empty(tuple(in_shape), dtype=gy.dtype)
    launch(POOL_CU, "maxpool_backward", gy.dtype, (grid_for(gx.size),), (THREADS_PER_BLOCK,),
           gy, _contiguous(idx), gx, H, W, N * C, k, idx.shape[0], idx.shape[1])
    return gx


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
