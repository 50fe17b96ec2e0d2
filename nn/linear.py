"""Fully connected layer y = x @ W + b, W shaped (in, out) as the paper writes W^T x (eq. 2)."""
import numpy as np

from . import backend
from .init import init_weight
from .layer import Layer


class Linear(Layer):
    def __init__(self, name, in_features, out_features, activation="relu"):
        self.name, self.in_features, self.out_features = name, in_features, out_features
        self.activation = activation  # only used to choose the initialisation
        self.W, self.b = name + ".W", name + ".b"

    def param_shapes(self):
        return {self.W: (self.in_features, self.out_features), self.b: (self.out_features,)}

    def init_params(self, rng, dtype):
        W = init_weight(rng, (self.in_features, self.out_features), self.in_features,
                        self.out_features, self.activation, dtype)
        return {self.W: W, self.b: np.zeros(self.out_features, dtype)}

    def forward(self, params, x):
        """x (N, in) -> y (N, out)."""
        W, b = params[self.W], params[self.b]
        if x.ndim != 2 or x.shape[1] != W.shape[0]:
            raise ValueError(f"Linear '{self.name}': input {tuple(x.shape)} does not match W {tuple(W.shape)}; "
                             f"expected (N, {W.shape[0]})")
        backend.check_float(x, f"Linear '{self.name}' input")
        return x @ W + b, {"x": x}

    def backward(self, params, cache, gy, need_gx=True):
        """gy (N, out) -> gx (N, in) (None when need_gx is False), {W: gW, b: gb}."""
        x = cache["x"]
        gx = gy @ params[self.W].T if need_gx else None
        return gx, {self.W: x.T @ gy, self.b: gy.sum(axis=0)}
