"""Finite-difference gradient checks in float64 (central differences, relative error).
The arrays may be NumPy or CuPy (the GPU path's checks); errors are computed on the host."""
import numpy as np

from . import backend


def numerical_grad(f, x, eps=1e-6, indices=None):
    """Central-difference gradient of the scalar f() with respect to array x (perturbed in place
    and restored). indices: flat indices to probe (all when None); other entries are left 0."""
    if x.dtype != np.float64:
        raise TypeError(f"gradient checks need float64 arrays, got {x.dtype}")
    g = np.zeros(x.shape)
    flat, gflat = x.reshape(-1), g.reshape(-1)
    if not x.flags.c_contiguous:
        raise ValueError("numerical_grad needs a contiguous array (it perturbs a flat view in place)")
    for i in (range(flat.size) if indices is None else indices):
        old = float(flat[i])
        flat[i] = old + eps
        fp = f()
        flat[i] = old - eps
        fm = f()
        flat[i] = old
        gflat[i] = (fp - fm) / (2 * eps)
    return g


def relative_error(a, b, floor=1e-8):
    """max |a - b| / max(max |a|, max |b|, floor): the error relative to the gradient's scale.

    (An elementwise ratio would flag entries that are zero up to rounding; this does not, and
    still exposes a wrong gradient, which is off by a fraction of the scale.)"""
    a, b = backend.to_numpy(a).astype(np.float64), backend.to_numpy(b).astype(np.float64)
    if a.size == 0:
        return 0.0
    return float(np.abs(a - b).max() / max(np.abs(a).max(), np.abs(b).max(), floor))


def check_gradients(f, arrays, analytic, eps=1e-6, max_probes=None, rng=None):
    """Compare analytic gradients with central differences.

    f: () -> float, reading the arrays in `arrays` ({name: float64 array}, perturbed in place).
    analytic: {name: gradient array}. max_probes: probe at most this many random entries per array.
    Returns {name: max relative error}.
    """
    rng = np.random.default_rng(0) if rng is None else rng
    errors = {}
    for name, x in arrays.items():
        idx = None
        if max_probes is not None and x.size > max_probes:
            idx = rng.choice(x.size, size=max_probes, replace=False)
        num = numerical_grad(f, x, eps, idx)
        ana = backend.to_numpy(analytic[name]).astype(np.float64)
        if idx is not None:
            num, ana = num.reshape(-1)[idx], ana.reshape(-1)[idx]
        errors[name] = relative_error(ana, num)
    return errors
