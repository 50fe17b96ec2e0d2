"""Weight initialisation schemes.

The paper gives no scheme (its convolutions come from pre-training, the rest is "randomly
initialized"), so we use the standard ones for each activation:

- `he_normal`: N(0, 2 / fan_in), for layers followed by ReLU (He et al. 2015);
- `glorot_uniform`: U(-a, a), a = sqrt(6 / (fan_in + fan_out)), for linear and tanh layers
  (Glorot & Bengio 2010);
- biases start at zero.

fan_in of a convolution is in_c * kh * kw, fan_out is out_c * kh * kw.
"""
import numpy as np


def he_normal(rng, shape, fan_in, dtype):
    return (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(dtype)


def glorot_uniform(rng, shape, fan_in, fan_out, dtype):
    a = np.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-a, a, size=shape).astype(dtype)


def init_weight(rng, shape, fan_in, fan_out, activation, dtype):
    """He-normal before ReLU, Glorot-uniform otherwise (linear, tanh)."""
    if activation == "relu":
        return he_normal(rng, shape, fan_in, dtype)
    return glorot_uniform(rng, shape, fan_in, fan_out, dtype)
