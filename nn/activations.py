"""Element-wise activations. Each keeps only its output y for backward (Chainer's habit).
On CuPy arrays the forward passes are CuPy's element-wise kernels and the backward passes fused
ElementwiseKernels (nn/kernels/ops.py)."""
from . import backend
from .kernels import ops as kernel_ops
from .layer import Layer


class ReLU(Layer):
    def __init__(self, name="relu"):
        self.name = name

    def forward(self, params, x):
        xp = backend.get_array_module(x)
        y = xp.maximum(x, 0)
        return y, {"y": y}

    def backward(self, params, cache, gy):
        if backend.is_gpu_array(gy):
            return kernel_ops.relu_backward(gy, cache["y"]), {}
        return gy * (cache["y"] > 0), {}  # a multiply is several times faster than np.where


class Tanh(Layer):
    def __init__(self, name="tanh"):
        self.name = name

    def forward(self, params, x):
        xp = backend.get_array_module(x)
        y = xp.tanh(x)
        return y, {"y": y}

    def backward(self, params, cache, gy):
        y = cache["y"]
        if backend.is_gpu_array(gy):
            return kernel_ops.tanh_backward(gy, y), {}
        return gy * (1 - y * y), {}


class Identity(Layer):
    """The linear activation (the paper's conv3)."""

    def __init__(self, name="identity"):
        self.name = name

    def forward(self, params, x):
        return x, {}

    def backward(self, params, cache, gy):
        return gy, {}


ACTIVATIONS = {"relu": ReLU, "tanh": Tanh, "linear": Identity}


def make_activation(kind, name):
    if kind not in ACTIVATIONS:
        raise ValueError(f"unknown activation {kind!r} for '{name}': expected one of {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[kind](name)
