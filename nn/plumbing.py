"""The flatten/concatenate plumbing of a two-branch network (conv2 and conv3 both feed the image
embedding, eq. 2)."""
from . import backend


def flatten_hwnc(x):
    """(H, W, N, C) -> (N, H*W*C), features ordered (h, w, c); returns (y, input shape)."""
    xp = backend.get_array_module(x)
    h, w, n, c = x.shape
    return xp.ascontiguousarray(x.transpose(2, 0, 1, 3)).reshape(n, h * w * c), x.shape


def unflatten_hwnc(gy, shape):
    """Backward of flatten_hwnc: (N, H*W*C) -> (H, W, N, C)."""
    xp = backend.get_array_module(gy)
    h, w, n, c = shape
    return xp.ascontiguousarray(gy.reshape(n, h, w, c).transpose(1, 2, 0, 3))


def concat(xs):
    """Concatenate (N, d_i) blocks along features; returns (y, sizes)."""
    xp = backend.get_array_module(*xs)
    return xp.concatenate(xs, axis=1), [x.shape[1] for x in xs]


def split(gy, sizes):
    """Backward of concat: the gradient blocks (views of gy)."""
    out, start = [], 0
    for d in sizes:
        out.append(gy[:, start:start + d])
        start += d
    return out
