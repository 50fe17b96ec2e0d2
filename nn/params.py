"""A named parameter container (init from layers, copy, line-search trial points) and the atomic
.npz writer and reader that checkpoints use.

Parameters are an ordered mapping {name: array}. Names follow "<layer>.W" / "<layer>.b";
`weight_names` are the weight matrices (".W"), the only ones under weight decay (eq. 12).
`save_npz_atomic` writes through a temporary file and a rename, so a crash never leaves a torn file.
"""
import os
import tempfile

import numpy as np

from . import backend


class Params(dict):
    """{name: array}, insertion-ordered."""

    @classmethod
    def init(cls, layers, rng, dtype=backend.DEFAULT_DTYPE):
        """Initialise every layer's parameters, in layer order, from one numpy Generator."""
        p = cls()
        for layer in layers:
            for name, value in layer.init_params(rng, dtype).items():
                if name in p:
                    raise ValueError(f"duplicate parameter name {name!r}")
                p[name] = value
        return p

    def copy(self):
        return Params((k, v.copy()) for k, v in self.items())

    def zeros_like(self):
        return Params((k, backend.get_array_module(v).zeros_like(v)) for k, v in self.items())

    def astype(self, dtype):
        return Params((k, v.astype(dtype)) for k, v in self.items())

    def to(self, device):
        return Params((k, backend.to_device(v, device)) for k, v in self.items())

    @property
    def weight_names(self):
        return [k for k in self if k.endswith(".W")]

    def size(self):
        return sum(int(v.size) for v in self.values())

    def moved(self, grads, step):
        """New Params p + step * g for the names in grads (a line-search trial point)."""
        out = Params(self)
        for k, g in grads.items():
            out[k] = self[k] + step * g
        return out


def save_npz_atomic(path, arrays):
    """Write arrays to path via a temporary file in the same directory and an atomic rename."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=".npz")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def load_npz(path):
    """{name: array} from an .npz; ValueError naming the file when it is missing or unreadable."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise ValueError(f"{path}: no such file")
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except Exception as err:
        raise ValueError(f"{path}: unreadable parameter file ({type(err).__name__}: {err})") from None
