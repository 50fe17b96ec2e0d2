"""Inverted dropout with an explicit train/eval argument and a caller-supplied generator.

In training each unit is zeroed with probability `rate` and the survivors are scaled by
1 / (1 - rate), so evaluation is the identity. The mask (with the scale folded in) is the only
state kept for backward. The paper's rate, 75%, is read as the probability of dropping a unit.
"""
import numpy as np

from . import backend
from .layer import Layer


class Dropout(Layer):
    def __init__(self, name, rate):
        if not 0.0 <= rate < 1.0:
            raise ValueError(f"Dropout '{name}': rate must be in [0, 1), got {rate}")
        self.name, self.rate = name, rate

    def make_mask(self, rng, shape, dtype, xp=None):
        """Mask with the scale folded in; rng is a numpy Generator (the mask is moved to the device)."""
        mask = np.empty(shape, dtype)
        np.greater_equal(rng.random(shape), self.rate, out=mask)      # keep: 1, drop: 0, in dtype
        mask *= mask.dtype.type(1.0 / (1.0 - self.rate))              # the values of (keep / (1 - rate)).astype(dtype)
        return mask if xp is None else xp.asarray(mask)

    def forward(self, params, x, train, rng=None, mask=None):
        """x -> x * mask in training (mask drawn from rng unless given), x in evaluation."""
        if not train or self.rate == 0.0:
            return x, {"mask": None}
        if mask is None:
            if rng is None:
                raise ValueError(f"Dropout '{self.name}': training needs a random generator or a mask")
            mask = self.make_mask(rng, x.shape, x.dtype, backend.get_array_module(x))
        if mask.shape != x.shape:
            raise ValueError(f"Dropout '{self.name}': mask {tuple(mask.shape)} does not match input {tuple(x.shape)}")
        return x * mask, {"mask": mask}

    def backward(self, params, cache, gy):
        mask = cache["mask"]
        return (gy if mask is None else gy * mask), {}
