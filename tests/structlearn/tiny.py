"""A tiny StructNet configuration for float64 tests."""
from structlearn.network import NetConfig

TINY = NetConfig(input_size=20, convs=((3, 2), (3, 3), (2, 2)), hidden=6, embed=5, dropout=0.5, detect_grid=2)


def randomize_for_gradcheck(params, rng):
    """Random biases and output heads (zero at initialisation), so every path carries gradient."""
    for k in params:
        if k.endswith(".b"):
            params[k] = 0.1 * rng.standard_normal(params[k].shape)
        if k in ("g7.W", "det.W"):
            params[k] = 0.3 * rng.standard_normal(params[k].shape)
    return params
