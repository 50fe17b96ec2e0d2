"""Shared helpers of the nn tests: a scalar objective over a layer, naive references and an nvcc
check of kernel sources."""
import subprocess

import numpy as np

from nn import kernels
from nn.gradcheck import check_gradients


def layer_gradcheck(layer, params, x, rng, forward_kw=None, backward_kw=None, max_probes=60, eps=1e-6):
    """Relative errors of d/dx and d/dparams of f = sum(layer(x) * R) for a fixed random R."""
    forward_kw = forward_kw or {}
    backward_kw = backward_kw or {}
    y, cache = layer.forward(params, x, **forward_kw)
    R = rng.standard_normal(y.shape)
    gy = R.copy()
    gx, grads = layer.backward(params, cache, gy, **backward_kw)
    assert np.array_equal(gy, R), "backward mutated its incoming gradient"

    def f():
        return float((layer.forward(params, x, **forward_kw)[0] * R).sum())

    arrays = {"x": x, **{k: params[k] for k in grads}}
    analytic = {"x": gx, **grads}
    return check_gradients(f, arrays, analytic, eps=eps, max_probes=max_probes, rng=rng)


def naive_conv_hwnc(x, W, b, stride, pad):
    """Direct loop: y[i,j,n,o] = b[o] + sum_{c,p,q} W[o,c,p,q] xpad[s*i+p, s*j+q, n, c]."""
    (sy, sx), (ph, pw) = stride, pad
    xpad = np.pad(x, ((ph, ph), (pw, pw), (0, 0), (0, 0)))
    out_c, in_c, kh, kw = W.shape
    out_h = (xpad.shape[0] - kh) // sy + 1
    out_w = (xpad.shape[1] - kw) // sx + 1
    y = np.zeros((out_h, out_w, x.shape[2], out_c))
    for i in range(out_h):
        for j in range(out_w):
            patch = xpad[sy * i:sy * i + kh, sx * j:sx * j + kw]  # (kh, kw, N, C)
            for o in range(out_c):
                y[i, j, :, o] = b[o] + np.einsum("pqnc,cpq->n", patch, W[o])
    return y


def naive_maxpool_hwnc(x, k):
    out_h, out_w = x.shape[0] // k, x.shape[1] // k
    y = np.zeros((out_h, out_w) + x.shape[2:])
    for i in range(out_h):
        for j in range(out_w):
            y[i, j] = x[k * i:k * i + k, k * j:k * j + k].max(axis=(0, 1))
    return y


def distinct_values(rng, shape, gap=0.05):
    """Entries all at least `gap` apart (no ties under max-pooling, even after a 1e-6 probe)."""
    n = int(np.prod(shape))
    return (rng.permutation(n) * gap - n * gap / 2).reshape(shape) + rng.uniform(0, gap / 10, shape)


def compile_with_nvcc(nvcc, path, tmp_path):
    """nvcc's CompletedProcess for the kernel source at `path` with every float/double
    instantiation of its kernels made explicit (compiles without a GPU)."""
    lines = []
    for name, params in kernels.signatures(path).items():
        for t in kernels.FLOAT_TYPES.values():
            args = ", ".join(p.text.replace("T", t) if p.ctype == "T" else p.text for p in params)
            lines.append(f"template __global__ void {name}<{t}>({args});")
    src = tmp_path / path.name
    src.write_text(kernels.source(path) + "\n" + "\n".join(lines) + "\n")
    return subprocess.run([nvcc, "-std=c++14", "-arch=sm_80", "-c", str(src), "-o", str(tmp_path / "k.o")],
                          capture_output=True, text=True)
