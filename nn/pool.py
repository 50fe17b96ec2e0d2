"""Max-pooling over non-overlapping k x k windows of HWNC arrays (the paper's 2x2 pooling).

Odd sizes: like Theano's `ignore_border=True`, trailing rows/columns that do not fill a whole
window are dropped from the output, and their gradient is zero.
Ties: the first maximum of a window in row-major order (top-left first) is the argmax and alone
receives the gradient, so the backward pass is the exact gradient wherever the max is unique.
Backward keeps only the argmax index of each window (uint8, 0..k*k-1), never recomputes forward.
On CuPy arrays both passes are CUDA kernels (nn/kernels/pool.cu) with the same rules.
"""
import numpy as np

from . import backend, parallel
from .kernels import ops as kernel_ops
from .layer import Layer


class MaxPool2D(Layer):
    def __init__(self, name, ksize=2):
        self.name, self.k = name, ksize

    def output_shape(self, h, w):
        if h < self.k or w < self.k:
            raise ValueError(f"MaxPool2D '{self.name}': window {self.k} does not fit an input of {h}x{w}")
        return h // self.k, w // self.k

    def forward(self, params, x):
        """x (H, W, N, C) -> y (H//k, W//k, N, C)."""
        self._check_input(x, 4, "an HWNC input (H, W, N, C)")
        xp = backend.get_array_module(x)
        k = self.k
        out_h, out_w = self.output_shape(x.shape[0], x.shape[1])
        if xp is not np:
            y, idx = kernel_ops.maxpool_forward(x, k)
            return y, {"idx": idx, "in_shape": x.shape}
        y = xp.empty((out_h, out_w) + x.shape[2:], dtype=x.dtype)
        idx = xp.empty(y.shape, dtype=np.uint8)

        def rows(r):  # output rows r: independent, so blocks of them run on separate threads
            windows = x[k * r.start:k * r.stop, :out_w * k].reshape(r.stop - r.start, k, out_w, k, *x.shape[2:])
            y[r], idx[r] = _tournament_argmax([windows[:, a, :, b] for a in range(k) for b in range(k)])
        parallel.for_blocks(rows, out_h, y.size, xp)
        return y, {"idx": idx, "in_shape": x.shape}

    def forward_values(self, x):
        """forward's y alone, for a pass no backward follows (inference, Algorithm 1's search):
        the same maxima in the same order, without the argmax indices (measured: 4x faster)."""
        self._check_input(x, 4, "an HWNC input (H, W, N, C)")
        xp = backend.get_array_module(x)
        if xp is not np:
            return kernel_ops.maxpool_forward(x, self.k)[0]
        k = self.k
        out_h, out_w = self.output_shape(x.shape[0], x.shape[1])
        y = xp.empty((out_h, out_w) + x.shape[2:], dtype=x.dtype)

        def rows(r):
            windows = x[k * r.start:k * r.stop, :out_w * k].reshape(r.stop - r.start, k, out_w, k, *x.shape[2:])
            _tournament_max([windows[:, a, :, b] for a in range(k) for b in range(k)], y[r])
        parallel.for_blocks(rows, out_h, y.size, xp)
        return y

    def backward(self, params, cache, gy):
        """gy (H//k, W//k, N, C) -> gx (H, W, N, C)."""
        xp = backend.get_array_module(gy)
        k, idx = self.k, cache["idx"]
        if xp is not np:
            return kernel_ops.maxpool_backward(gy, idx, cache["in_shape"], k), {}
        out_h, out_w = idx.shape[:2]
        gx = xp.empty(cache["in_shape"], dtype=gy.dtype)
        gx[out_h * k:] = 0  # the dropped border of odd sizes
        gx[:, out_w * k:] = 0

        def rows(r):
            windows = gx[k * r.start:k * r.stop, :out_w * k].reshape(r.stop - r.start, k, out_w, k, *gx.shape[2:])
            for a in range(k):
                for b in range(k):
                    xp.multiply(gy[r], idx[r] == a * k + b, out=windows[:, a, :, b])
        parallel.for_blocks(rows, out_h, gx.size, xp)
        return gx, {}


def _tournament_max(values, out):
    """_tournament_argmax's maxima alone, written to out: the same pairs in the same order, so the
    same bits (the sign of a zero included)."""
    while len(values) > 2:
        values = [np.maximum(values[a], values[a + 1]) for a in range(0, len(values) - 1, 2)] + \
                 ([values[-1]] if len(values) % 2 else [])
    if len(values) == 2:
        np.maximum(values[0], values[1], out=out)
    else:
        out[...] = values[0]


def _tournament_argmax(values):
    """Elementwise max and argmax over a list of equal-shape arrays, by pairwise rounds.

    The left (earlier) operand wins ties, so the argmax is the first maximum in list order.
    Pairwise rounds touch each element about twice, against k*k times for a sequential scan.
    """
    xp = backend.get_array_module(values[0])
    ids = list(range(len(values)))  # Python ints until a comparison makes them arrays
    while len(values) > 1:
        next_values, next_ids = [], []
        for a in range(0, len(values) - 1, 2):
            right_wins = values[a + 1] > values[a]
            next_values.append(xp.maximum(values[a], values[a + 1]))
            ia, ib = ids[a], ids[a + 1]
            if isinstance(ia, int) and isinstance(ib, int):  # first round: ia + (ib - ia) * right_wins
                chosen = right_wins.view(np.uint8) * np.uint8(ib - ia)
                chosen += np.uint8(ia)
            else:
                chosen = xp.where(right_wins, ib, ia).astype(np.uint8, copy=False)
            next_ids.append(chosen)
        if len(values) % 2:
            next_values.append(values[-1])
            next_ids.append(ids[-1])
        values, ids = next_values, next_ids
    y, idx = values[0], ids[0]
    if isinstance(idx, int):  # a 1x1 window
        return y.copy(), xp.zeros(y.shape, dtype=np.uint8)
    return y, idx
