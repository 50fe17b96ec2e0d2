"""2-D convolution (cross-correlation, as in every deep-learning library) with explicit backward.

Layout. Spatial layers use HWNC: x shaped (H, W, N, C) -- spatial axes first, then batch, then
channels (cuda-convnet's choice, CHWN, is the same idea). Two reasons, both measured in
bench/bench_nn.py: (1) the im2col GEMM, whose rows are output positions (i, j, n), writes HWNC
directly with no transpose; (2) the FFT path transforms axes (0, 1), so each frequency's (N, C)
block is a contiguous matrix and the per-frequency channel mixing is one batched GEMM, again with
no transpose. Weights keep the usual layout W (out_c, in_c, kh, kw), b (out_c,).
`nchw_to_hwnc` / `hwnc_to_nchw` convert at the edges of a network.

Two algorithms compute the same thing:
- "im2col": general (any stride, zero padding). Patches of a block of output rows are copied into
  a matrix `col` (rows: output positions, columns: kh*kw*in_c) and multiplied by the weights in one
  GEMM. The batch is processed in row blocks so `col` stays under `COL_BUDGET_BYTES`; backward
  recomputes `col` per block instead of keeping 1.3 GB of it for conv1 at batch 128.
- "fft" (stride 1 only): correlation theorem. With F >= the padded input size no circular
  wrap-around reaches a valid output, so the result is exact up to rounding (1e-6 relative in
  float32, 1e-14 in float64). Forward, input-gradient and weight-gradient are each one batched
  complex GEMM between transforms; the input's transform is kept for the weight gradient.
"auto" picks per layer shape and pass (forward, weight gradient, input gradient) the algorithm
nn.conv_tune measured faster on this machine; the fixed rule, "fft" for stride 1 on the CPU and
"im2col" otherwise, where it does not measure (CuPy arrays, STRUCTNET_CONV_TUNE=0). The passes may
differ: a backward by fft after an im2col forward transforms the input itself, and either backward
reads the input x every forward cache keeps.
im2col and its adjoint col2im_add take the unpadded input and fold the zero padding in; on the GPU
(CuPy arrays) they are CUDA kernels of the same signature (nn/kernels/conv.cu), the GEMMs go through
cuBLAS, and the blocks are larger (`GPU_COL_BUDGET_BYTES`); `_im2col_device` is the one place that
chooses. The fft algorithm also runs on CuPy arrays (cuFFT), when asked for by name.
"""
import numpy as np

from . import backend, parallel
from .init import init_weight
from .kernels import ops as kernel_ops
from .layer import Layer

COL_BUDGET_BYTES = 64 * 2**20      # bound on one im2col block
SPECTRUM_BUDGET_BYTES = 512 * 2**20  # bound on one FFT block's complex spectra
GPU_COL_BUDGET_BYTES = 1024 * 2**20  # bound on one im2col block on the GPU


def conv_output_size(size, k, s, p):
    """Output length of a convolution/pooling: floor((size + 2p - k) / s) + 1."""
    out = (size + 2 * p - k) // s + 1
    if out <= 0:
        raise ValueError(f"kernel {k} (stride {s}, padding {p}) does not fit an input of size {size}")
    return out


def nchw_to_hwnc(x):
    """(N, C, H, W) -> (H, W, N, C), contiguous."""
    xp = backend.get_array_module(x)
    return xp.ascontiguousarray(x.transpose(2, 3, 0, 1))


def hwnc_to_nchw(x):
    """(H, W, N, C) -> (N, C, H, W), contiguous."""
    xp = backend.get_array_module(x)
    return xp.ascontiguousarray(x.transpose(2, 3, 0, 1))


def pad_hwnc(x, ph, pw):
    """Zero padding of the two spatial axes of an HWNC array."""
    if ph == 0 and pw == 0:
        return x
    xp = backend.get_array_module(x)
    return xp.pad(x, ((ph, ph), (pw, pw), (0, 0), (0, 0)))


def patches(xpad, kh, kw, sy, sx, out_h, out_w):
    """Strided view (out_h, out_w, N, kh, kw, C) of the patches of a padded HWNC array."""
    xp = backend.get_array_module(xpad)
    s_h, s_w, s_n, s_c = xpad.strides
    _, _, n, c = xpad.shape
    return xp.lib.stride_tricks.as_strided(
        xpad, shape=(out_h, out_w, n, kh, kw, c),
        strides=(sy * s_h, sx * s_w, s_n, s_h, s_w, s_c))


def im2col(x, kh, kw, sy, sx, ph, pw, out_w, rows):
    """Patch matrix (len(rows)*out_w*N, kh*kw*C) of the output rows `rows` (a slice) of an unpadded
    input x (H, W, N, C), zero padding (ph, pw) applied on the fly. NumPy; nn.kernels.ops.im2col
    is the CUDA kernel of the same signature."""
    h, w, n, c = x.shape
    top, bottom = rows.start * sy - ph, (rows.stop - 1) * sy + kh - ph  # input rows read, padding included
    if ph == 0 and pw == 0:
        band = x[top:bottom]
    else:  # a zero-padded copy of only the rows this block reads
        band = np.zeros((bottom - top, w + 2 * pw, n, c), dtype=x.dtype)
        lo, hi = max(top, 0), min(bottom, h)
        if lo < hi:
            band[lo - top:hi - top, pw:pw + w] = x[lo:hi]
    view = patches(band, kh, kw, sy, sx, rows.stop - rows.start, out_w)
    return view.reshape(-1, kh * kw * c)  # copies: the view is not contiguous


def col2im_add(gx, gcol, kh, kw, sy, sx, ph, pw, out_w, rows):
    """gx (H, W, N, C) += the input gradient of the patch gradient gcol (len(rows)*out_w*N,
    kh*kw*C) of the output rows `rows` (the adjoint of im2col), in place; gradient that falls on
    the padding is dropped. NumPy; nn.kernels.ops.col2im_add is the CUDA kernel."""
    h, w, n, c = gx.shape
    r0, r1 = rows.start, rows.stop
    g = gcol.reshape(r1 - r0, out_w, n, kh, kw, c)
    for p in range(kh):
        # output rows i in [i0, i1) read input row sy * i + p - ph inside [0, h)
        i0, i1 = max(r0, -((p - ph) // sy)), min(r1, (h - 1 + ph - p) // sy + 1)
        for q in range(kw):
            j0, j1 = max(0, -((q - pw) // sx)), min(out_w, (w - 1 + pw - q) // sx + 1)
            if i0 >= i1 or j0 >= j1:
                continue
            y0, x0 = sy * i0 + p - ph, sx * j0 + q - pw
            gx[y0:y0 + sy * (i1 - i0 - 1) + 1:sy, x0:x0 + sx * (j1 - j0 - 1) + 1:sx] += g[i0 - r0:i1 - r0, j0:j1, :, p, q]


def good_fft_size(n):
    """Smallest m >= n whose prime factors are 2, 3, 5, 7 (all fast in pocketfft and cuFFT)."""
    m = n
    while True:
        r = m
        for f in (2, 3, 5, 7):
            while r % f == 0:
                r //= f
        if r == 1:
            return m
        m += 1


def padded_for_fft(x, size):
    """x (h, w, ...) zero-padded to (size[0], size[1], ...) for the FFT, copied on all cores
    (scipy's own padding is a single-threaded copy; x itself when no padding is needed)."""
    xp = backend.get_array_module(x)
    h, w = x.shape[:2]
    if (h, w) == tuple(size):
        return x
    out = xp.empty(tuple(size) + x.shape[2:], dtype=x.dtype)
    out[h:] = 0

    def rows(r):
        out[r, :w] = x[r]
        out[r, w:] = 0
    parallel.for_blocks(rows, h, out.size, xp)
    return out


def spectral_matmul(a, b):
    """Per-frequency matrix products a[f] @ b[f] (stacked over axis 0). On NumPy the frequencies
    are split over our threads, each with single-threaded BLAS (see nn.parallel)."""
    xp = backend.get_array_module(a)
    if xp is not np:
        return xp.matmul(a, b)
    out = np.empty((a.shape[0], a.shape[1], b.shape[2]), dtype=np.result_type(a, b))
    with parallel.single_threaded_blas():
        parallel.for_blocks(lambda f: np.matmul(a[f], b[f], out=out[f]), a.shape[0], out.size)
    return out


def _im2col_device(xp):
    """(im2col, col2im_add, bytes per im2col block) for arrays of module xp: the NumPy functions
    above or the CUDA kernels of the same signature."""
    if xp is np:
        return im2col, col2im_add, COL_BUDGET_BYTES
    return kernel_ops.im2col, kernel_ops.col2im_add, GPU_COL_BUDGET_BYTES


def _row_blocks(out_h, bytes_per_row, budget):
    step = max(1, budget // max(1, bytes_per_row))
    return [slice(r, min(out_h, r + step)) for r in range(0, out_h, step)]


def _batch_blocks(n, bytes_per_item, budget):
    step = max(1, budget // max(1, bytes_per_item))
    return [slice(s, min(n, s + step)) for s in range(0, n, step)]


class Conv2D(Layer):
    """2-D convolution on HWNC arrays: y[i,j,n,o] = b[o] + sum_{c,p,q} W[o,c,p,q] xpad[sy*i+p, sx*j+q, n, c]."""

    def __init__(self, name, in_c, out_c, ksize, stride=1, pad=0, activation="relu", algorithm="auto"):
        kh, kw = (ksize, ksize) if np.isscalar(ksize) else ksize
        sy, sx = (stride, stride) if np.isscalar(stride) else stride
        ph, pw = (pad, pad) if np.isscalar(pad) else pad
        if algorithm not in ("auto", "im2col", "fft"):
            raise ValueError(f"Conv2D '{name}': unknown algorithm {algorithm!r} (auto, im2col, fft)")
        if algorithm == "fft" and (sy, sx) != (1, 1):
            raise ValueError(f"Conv2D '{name}': the fft algorithm needs stride 1, got {(sy, sx)}")
        self.name, self.in_c, self.out_c = name, in_c, out_c
        self.kh, self.kw, self.sy, self.sx, self.ph, self.pw = kh, kw, sy, sx, ph, pw
        self.activation = activation  # only used to choose the initialisation
        self.algorithm = algorithm
        self.W, self.b = name + ".W", name + ".b"

    def param_shapes(self):
        return {self.W: (self.out_c, self.in_c, self.kh, self.kw), self.b: (self.out_c,)}

    def init_params(self, rng, dtype):
        fan_in = self.in_c * self.kh * self.kw
        fan_out = self.out_c * self.kh * self.kw
        W = init_weight(rng, self.param_shapes()[self.W], fan_in, fan_out, self.activation, dtype)
        return {self.W: W, self.b: np.zeros(self.out_c, dtype)}

    def output_shape(self, h, w):
        return (conv_output_size(h, self.kh, self.sy, self.ph), conv_output_size(w, self.kw, self.sx, self.pw))

    def _check(self, x, W):
        self._check_input(x, 4, "an HWNC input (H, W, N, C)")
        if x.shape[3] != self.in_c or W.shape != (self.out_c, self.in_c, self.kh, self.kw):
            raise ValueError(f"Conv2D '{self.name}': input {tuple(x.shape)} (HWNC) has {x.shape[3]} channels, "
                             f"weights {tuple(W.shape)}; expected {self.in_c} channels and "
                             f"W {(self.out_c, self.in_c, self.kh, self.kw)}")
        backend.check_float(x, f"Conv2D '{self.name}' input")
        if W.dtype != x.dtype:
            raise TypeError(f"Conv2D '{self.name}': input is {x.dtype} but weights are {W.dtype}")
        self.output_shape(x.shape[0], x.shape[1])  # raises when the kernel does not fit

    def forward(self, params, x):
        """x (H, W, N, in_c) -> y (out_h, out_w, N, out_c)."""
        W, b = params[self.W], params[self.b]
        self._check(x, W)
        return self.run_forward(self.resolved_algorithm(backend.get_array_module(x), x.shape, x.dtype), x, W, b)

    def fixed_algorithm(self, xp):
        """The fixed rule: "fft" for stride 1 on the CPU, "im2col" otherwise."""
        return "fft" if xp is np and (self.sy, self.sx) == (1, 1) else "im2col"

    def resolved_algorithm(self, xp, x_shape=None, dtype=None, pass_="forward"):
        """The algorithm of one pass ("forward", "weight_grad" or "input_grad") on an input of
        x_shape (HWNC) and dtype with arrays of module xp: the layer's own, or for "auto" the
        choice of nn.conv_tune (measured, cached); the fixed rule without a shape."""
        if self.algorithm != "auto":
            return self.algorithm
        if x_shape is None:
            return self.fixed_algorithm(xp)
        from . import conv_tune  # not at import: `python -m nn.conv_tune` runs it as __main__
        return conv_tune.choose(self, tuple(x_shape), np.dtype(dtype), pass_, xp)

    def run_forward(self, algorithm, x, W, b):
        """y, cache of the forward by `algorithm`; the cache serves a backward by either algorithm."""
        if algorithm == "fft":
            return self._forward_fft(x, W, b)
        return self._forward_im2col(x, W, b)

    def backward(self, params, cache, gy, need_gx=True):
        """gy (out_h, out_w, N, out_c) -> gx (or None when need_gx is False), {W: gW, b: gb}.
        Each gradient runs by its own resolved algorithm (they may differ from the forward's)."""
        xp = backend.get_array_module(gy)
        x = cache["x"]
        gw_algorithm = self.resolved_algorithm(xp, x.shape, x.dtype, "weight_grad")
        gx_algorithm = self.resolved_algorithm(xp, x.shape, x.dtype, "input_grad") if need_gx else None
        gx, gW = self.run_backward(cache, gy, params[self.W], gx_algorithm, gw_algorithm)
        gb = gy.sum(axis=(0, 1, 2))
        return gx, {self.W: gW, self.b: gb}

    def run_backward(self, cache, gy, W, gx_algorithm, gw_algorithm):
        """(gx, gW): gx by gx_algorithm (None: not computed, gx None), gW by gw_algorithm (None:
        gW None); one pass over the blocks when both use the same algorithm."""
        gx = gW = None
        for algorithm in dict.fromkeys(a for a in (gw_algorithm, gx_algorithm) if a):
            run = self._backward_fft if algorithm == "fft" else self._backward_im2col
            a, w = run(cache, gy, W, want_gx=gx_algorithm == algorithm, want_gW=gw_algorithm == algorithm)
            gx, gW = (a if a is not None else gx), (w if w is not None else gW)
        return gx, gW

    # ---- im2col + GEMM ----------------------------------------------------------------------
    def _weight_matrix(self, W):
        """(out_c, in_c, kh, kw) -> (kh*kw*in_c, out_c), matching im2col's column order."""
        return W.transpose(2, 3, 1, 0).reshape(-1, self.out_c)

    def _im2col_blocks(self, out_h, out_w, n, itemsize, budget):
        return _row_blocks(out_h, out_w * n * self.kh * self.kw * self.in_c * itemsize, budget)

    def _forward_im2col(self, x, W, b):
        xp = backend.get_array_module(x)
        im2col_impl, _, budget = _im2col_device(xp)
        x = xp.ascontiguousarray(x)  # once per call, not once per block in the CUDA launcher
        out_h, out_w = self.output_shape(x.shape[0], x.shape[1])
        n = x.shape[2]
        W2 = self._weight_matrix(W)
        y = xp.empty((out_h, out_w, n, self.out_c), dtype=x.dtype)
        geometry = (self.kh, self.kw, self.sy, self.sx, self.ph, self.pw, out_w)
        for rows in self._im2col_blocks(out_h, out_w, n, x.itemsize, budget):
            xp.matmul(im2col_impl(x, *geometry, rows), W2, out=y[rows].reshape(-1, self.out_c))
        y += b
        return y, {"algorithm": "im2col", "x": x}

    def _backward_im2col(self, cache, gy, W, want_gx, want_gW):
        xp = backend.get_array_module(gy)
        im2col_impl, col2im_impl, budget = _im2col_device(xp)
        x = xp.ascontiguousarray(cache["x"])
        W2 = self._weight_matrix(W)
        out_h, out_w, n, _ = gy.shape
        gW2 = xp.zeros_like(W2) if want_gW else None
        gx = xp.zeros(x.shape, dtype=x.dtype) if want_gx else None
        geometry = (self.kh, self.kw, self.sy, self.sx, self.ph, self.pw, out_w)
        for rows in self._im2col_blocks(out_h, out_w, n, gy.itemsize, budget):
            gy_rows = gy[rows].reshape(-1, self.out_c)
            if want_gW:
                gW2 += im2col_impl(x, *geometry, rows).T @ gy_rows
            if want_gx:
                col2im_impl(gx, gy_rows @ W2.T, *geometry, rows)
        gW = None
        if want_gW:
            gW = xp.ascontiguousarray(gW2.reshape(self.kh, self.kw, self.in_c, self.out_c).transpose(3, 2, 0, 1))
        return gx, gW

    # ---- FFT ----------------------------------------------------------------------------------
    def _fft_plan(self, x_shape, itemsize):
        """(FFT size, frequencies, batch blocks) of an input of x_shape (HWNC)."""
        h, w, n, c = x_shape
        size = (good_fft_size(h + 2 * self.ph), good_fft_size(w + 2 * self.pw))
        nfreq = size[0] * (size[1] // 2 + 1)
        item_bytes = nfreq * (c + self.out_c) * 2 * itemsize
        return size, nfreq, _batch_blocks(n, item_bytes, SPECTRUM_BUDGET_BYTES)

    def _weight_spectrum(self, W, size):
        """W (out_c, in_c, kh, kw) -> its transform (F, in_c, out_c) at FFT size `size`."""
        fft, kw = backend.fft_module(backend.get_array_module(W))
        Wf = fft.rfft2(W.transpose(2, 3, 1, 0), s=size, axes=(0, 1), **kw)
        return Wf.reshape(-1, self.in_c, self.out_c)

    def _input_spectrum(self, x, blk, size):
        """The transform (F, len(blk), C) of the zero-padded input x (H, W, N, C), batch rows blk."""
        fft, kw = backend.fft_module(backend.get_array_module(x))
        xpad = pad_hwnc(x[:, :, blk], self.ph, self.pw)
        X = fft.rfft2(padded_for_fft(xpad, size), axes=(0, 1), **kw)
        return X.reshape(-1, xpad.shape[2], self.in_c)

    def _forward_fft(self, x, W, b):
        xp = backend.get_array_module(x)
        fft, kw = backend.fft_module(xp)
        size, nfreq, blocks = self._fft_plan(x.shape, x.itemsize)
        out_h, out_w = self.output_shape(x.shape[0], x.shape[1])
        n = x.shape[2]
        Wf = self._weight_spectrum(W, size)   # transformed once per call
        Wf_conj = Wf.conj()
        y = xp.empty((out_h, out_w, n, self.out_c), dtype=x.dtype)
        spectra = []
        for blk in blocks:
            X = self._input_spectrum(x, blk, size)
            Y = spectral_matmul(X, Wf_conj)  # correlation theorem: Y = X * conj(W), summed over in_c
            yb = fft.irfft2(Y.reshape(size[0], -1, Y.shape[1], self.out_c), s=size, axes=(0, 1), **kw)
            parallel.for_blocks(lambda r: xp.add(yb[r, :out_w], b, out=y[r, :, blk]), out_h, y.size, xp)
            spectra.append(X)
        return y, {"algorithm": "fft", "x": x, "spectra": spectra, "Wf": Wf}

    def _backward_fft(self, cache, gy, W, want_gx, want_gW):
        """After a forward by either algorithm: the input spectra the fft forward kept, else
        transformed here; the same for the weights' spectrum."""
        xp = backend.get_array_module(gy)
        fft, kw = backend.fft_module(xp)
        x = cache["x"]
        h, w, n, c = x.shape
        hp, wp = h + 2 * self.ph, w + 2 * self.pw
        size, nfreq, blocks = self._fft_plan(x.shape, x.itemsize)
        spectra = cache.get("spectra")
        if want_gx:
            Wf = cache["Wf"] if "Wf" in cache else self._weight_spectrum(W, size)
            Wf_t = Wf.transpose(0, 2, 1)
        gWf = xp.zeros((nfreq, c, self.out_c), dtype=np.result_type(x.dtype, np.complex64)) if want_gW else None
        gxpad = xp.empty((hp, wp, n, c), dtype=gy.dtype) if want_gx else None
        for i, blk in enumerate(blocks):
            GY = fft.rfft2(padded_for_fft(gy[:, :, blk], size), axes=(0, 1), **kw).reshape(nfreq, -1, self.out_c)
            if want_gW:
                X = spectra[i] if spectra is not None else self._input_spectrum(x, blk, size)
                # gW = corr(x, gy) summed over n: X^T conj(GY) = conj(conj(X)^T GY), conjugating the
                # small factors instead of copying the large GY
                gWf += spectral_matmul(X.conj().transpose(0, 2, 1), GY).conj()
            if want_gx:
                GX = spectral_matmul(GY, Wf_t)                       # gx = conv(gy, W), summed over out_c
                gxb = fft.irfft2(GX.reshape(size[0], -1, GX.shape[1], c), s=size, axes=(0, 1), **kw)
                parallel.for_blocks(lambda r: xp.copyto(gxpad[r, :, blk], gxb[r, :wp]), hp, gxpad.size, xp)
        gW = gx = None
        if want_gW:
            gW = fft.irfft2(gWf.reshape(size[0], -1, c, self.out_c), s=size, axes=(0, 1), **kw)
            gW = xp.ascontiguousarray(gW[:self.kh, :self.kw].transpose(3, 2, 0, 1)).astype(gy.dtype, copy=False)
        if want_gx:
            gx = xp.ascontiguousarray(gxpad[self.ph:self.ph + h, self.pw:self.pw + w])
        return gx, gW
